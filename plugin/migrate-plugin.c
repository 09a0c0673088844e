/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "module-context.h"
#include "mail-user.h"
#include "mail-storage-hooks.h"
#include "migrate-settings.h"
#include "migrate-plugin.h"

#define MIGRATE_USER_CONTEXT(obj) \
	MODULE_CONTEXT(obj, migrate_user_module)

struct migrate_user {
	union mail_user_module_context module_ctx;
	const struct migrate_settings *set;
};

const char *migrate_plugin_version = DOVECOT_ABI_VERSION;

static MODULE_CONTEXT_DEFINE_INIT(migrate_user_module,
				  &mail_user_module_register);

static void migrate_mail_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct migrate_user *muser;
	const struct migrate_settings *set = NULL;
	const char *error;

	/* fail loudly on a bad setting, never disable silently; doveadm
	   migrate reports it itself, with its own exit code, and other
	   doveadm commands keep working for the admin who fixes it */
	if (migrate_user_settings_read(user, FALSE, &set, &error) < 0 &&
	    strcmp(user->service, "doveadm") != 0) {
		user->error = p_strdup_printf(user->pool,
			"migrate: Invalid settings: %s", error);
		return;
	}
	if (set == NULL)
		return;
	muser = p_new(user->pool, struct migrate_user, 1);
	muser->module_ctx.super = *v;
	user->vlast = &muser->module_ctx.super;
	muser->set = set;
	MODULE_CONTEXT_SET(user, migrate_user_module, muser);
}

static struct mail_storage_hooks migrate_mail_storage_hooks = {
	.mail_user_created = migrate_mail_user_created,
};

void migrate_plugin_init(struct module *module)
{
	mail_storage_hooks_add(module, &migrate_mail_storage_hooks);
}

void migrate_plugin_deinit(void)
{
	mail_storage_hooks_remove(&migrate_mail_storage_hooks);
}
