/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "module-context.h"
#include "mail-user.h"
#include "migrate-settings.h"
#include "migrate-plugin.h"

#define MIGRATE_USER_CONTEXT(obj) \
	MODULE_CONTEXT(obj, migrate_user_module)

/* a user's migrate settings, read when first asked for */
struct migrate_user {
	union mail_user_module_context module_ctx;
	const struct migrate_settings *set;
	/* why they could not be read */
	const char *error;
};

static MODULE_CONTEXT_DEFINE_INIT(migrate_user_module,
				  &mail_user_module_register);

static const char *migrate_user_lookup(const char *key, void *context)
{
	struct mail_user *user = context;

	return mail_user_plugin_getenv(user, key);
}

static struct migrate_user *migrate_user_get(struct mail_user *user)
{
	struct migrate_user *muser = MIGRATE_USER_CONTEXT(user);
	const char *home, *error;

	if (muser != NULL)
		return muser;
	muser = p_new(user->pool, struct migrate_user, 1);
	if (mail_user_get_home(user, &home) <= 0)
		home = NULL;
	if (migrate_settings_read(user->pool, migrate_user_lookup, user,
				  user->username, home, FALSE, &muser->set,
				  &error) < 0)
		muser->error = p_strdup(user->pool, error);
	MODULE_CONTEXT_SET(user, migrate_user_module, muser);
	return muser;
}

int migrate_user_settings_read(struct mail_user *user, bool require_source,
			       const struct migrate_settings **set_r,
			       const char **error_r)
{
	struct migrate_user *muser = migrate_user_get(user);

	if (muser->error != NULL) {
		*error_r = muser->error;
		return -1;
	}
	if (require_source && muser->set->source_host == NULL) {
		*error_r = MIGRATE_SETTING_SOURCE_HOST" is not set";
		return -1;
	}
	if (require_source &&
	    migrate_settings_check_auth(muser->set, FALSE, error_r) < 0)
		return -1;
	*set_r = muser->set;
	return 0;
}
