/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "migrate-error.h"

#include <sysexits.h>

void migrate_failure_set(struct migrate_failure *failure, pool_t pool,
			 struct event *event, enum migrate_error code,
			 const char *error)
{
	e_error(event, "%s", error);
	if (code >= failure->code) {
		failure->error = p_strdup(pool, error);
		failure->code = code;
	}
}

int migrate_error_to_exit_code(enum migrate_error error)
{
	switch (error) {
	case MIGRATE_ERROR_NONE:
		return 0;
	case MIGRATE_ERROR_REJECTED:
		return EX_DATAERR;
	case MIGRATE_ERROR_FAILED:
		return EX_SOFTWARE;
	case MIGRATE_ERROR_CONFIG:
		return EX_CONFIG;
	case MIGRATE_ERROR_SOURCE_AUTH:
		return EX_NOPERM;
	case MIGRATE_ERROR_SOURCE_TLS:
		return EX_PROTOCOL;
	case MIGRATE_ERROR_DEST_QUOTA:
		return EX_CANTCREAT;
	case MIGRATE_ERROR_DELETE_LIMIT:
		return EX_DATAERR;
	case MIGRATE_ERROR_SOURCE_TEMP:
	case MIGRATE_ERROR_TEMP:
		return EX_TEMPFAIL;
	}
	i_unreached();
}
