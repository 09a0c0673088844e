/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "mail-user.h"
#include "migrate-settings.h"
#include "migrate-plugin.h"

static const char *migrate_user_lookup(const char *key, void *context)
{
	struct mail_user *user = context;

	return mail_user_plugin_getenv(user, key);
}

int migrate_user_settings_read(struct mail_user *user, bool require_source,
			       const struct migrate_settings **set_r,
			       const char **error_r)
{
	const char *home;

	if (mail_user_get_home(user, &home) <= 0)
		home = NULL;
	return migrate_settings_read(user->pool, migrate_user_lookup, user,
				     user->username, home, require_source,
				     set_r, error_r);
}
