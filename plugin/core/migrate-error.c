/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "migrate-text.h"
#include "migrate-error.h"

#include <sysexits.h>

void migrate_failure_set(struct migrate_failure *failure, pool_t pool,
			 struct event *event, enum migrate_error code,
			 const char *error)
{
	/* it quotes folder names and the source's replies, and goes on to
	   the log, the record and the reports */
	error = migrate_text_escape(error);
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
		return EX_TEMPFAIL;
	case MIGRATE_ERROR_DELETE_LIMIT:
	case MIGRATE_ERROR_SOURCE_LIMIT:
		return EX_DATAERR;
	case MIGRATE_ERROR_DEST_QUOTA:
		return EX_CANTCREAT;
	case MIGRATE_ERROR_SOURCE_TLS:
		return EX_PROTOCOL;
	case MIGRATE_ERROR_SOURCE_AUTH:
		return EX_NOPERM;
	case MIGRATE_ERROR_CONFIG:
		return EX_CONFIG;
	case MIGRATE_ERROR_SOURCE_TEMP:
	case MIGRATE_ERROR_TEMP:
		return EX_TEMPFAIL;
	}
	i_unreached();
}

int migrate_exit_code_normalize(int exit_code)
{
	switch (exit_code) {
	case 0:
	case EX_USAGE:
	case EX_DATAERR:
	case EX_NOINPUT:
	case EX_NOUSER:
	case EX_CANTCREAT:
	case EX_TEMPFAIL:
	case EX_PROTOCOL:
	case EX_NOPERM:
	case EX_CONFIG:
		return exit_code;
	default:
		return EX_TEMPFAIL;
	}
}

const char *migrate_error_name(enum migrate_error error)
{
	switch (error) {
	case MIGRATE_ERROR_NONE:
		return "none";
	case MIGRATE_ERROR_REJECTED:
		return "rejected";
	case MIGRATE_ERROR_FAILED:
		return "failed";
	case MIGRATE_ERROR_DELETE_LIMIT:
		return "delete_limit";
	case MIGRATE_ERROR_SOURCE_LIMIT:
		return "source_limit";
	case MIGRATE_ERROR_DEST_QUOTA:
		return "dest_quota";
	case MIGRATE_ERROR_SOURCE_TLS:
		return "source_tls";
	case MIGRATE_ERROR_SOURCE_AUTH:
		return "source_auth";
	case MIGRATE_ERROR_CONFIG:
		return "config";
	case MIGRATE_ERROR_SOURCE_TEMP:
		return "source_temp";
	case MIGRATE_ERROR_TEMP:
		return "temp";
	}
	i_unreached();
}

/* the latest class in the order that exits with exit_code */
static enum migrate_error migrate_exit_code_rank(int exit_code)
{
	enum migrate_error error;

	if (exit_code == 0)
		return MIGRATE_ERROR_NONE;
	for (error = MIGRATE_ERROR_TEMP; error > MIGRATE_ERROR_NONE; error--) {
		if (migrate_error_to_exit_code(error) == exit_code)
			return error;
	}
	return MIGRATE_ERROR_FAILED;
}

int migrate_exit_code_merge(int cur, int next)
{
	return migrate_exit_code_rank(next) > migrate_exit_code_rank(cur) ?
		next : cur;
}

bool migrate_error_is_pushback(const char *text)
{
	static const char *const words[] = {
		"[unavailable]", "[throttled]", "[limit]", "too many",
		"busy", "throttl", "rate limit", "slow down", "try again",
		"maximum number of connections", NULL
	};
	const char *ltext;
	unsigned int i;

	if (text == NULL)
		return FALSE;
	ltext = t_str_lcase(text);
	for (i = 0; words[i] != NULL; i++) {
		if (strstr(ltext, words[i]) != NULL)
			return TRUE;
	}
	return FALSE;
}
