/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "module-context.h"
#include "mail-user.h"
#include "mail-storage-hooks.h"
#include "master-service.h"
#include "master-service-settings.h"
#include "migrate-settings.h"
#include "migrate-domain.h"
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

/* dovecot-lda: while the recipient's domain migrates, its mail belongs to
   the old provider (still its MX); storing it here would put it where the
   next mirror sync treats it as foreign.  Defer: dovecot-lda exits 75 and
   the MTA keeps the mail queued (or sends it on to the old MX).  A lookup
   error delivers as if the domain did not migrate, logged. */
static void migrate_lda_check(struct mail_user *user)
{
	const char *domain = migrate_user_domain(user->username);
	struct migrate_domain_store *store;
	struct migrate_domain dom;
	struct event *event;
	const char *error;
	int ret;

	if (domain[0] == '\0')
		return;
	if (migrate_domain_store_open(migrate_domain_dict_uri(
			mail_user_plugin_getenv(user, MIGRATE_SETTING_DOMAIN_DICT),
			master_service_settings_get(master_service)->state_dir),
			user->set->base_dir, &store, &error) < 0) {
		e_error(user->event, "migrate: %s", error);
		return;
	}
	ret = migrate_domain_lookup(store, domain, pool_datastack_create(),
				    &dom, &error);
	migrate_domain_store_close(&store);
	if (ret < 0) {
		e_error(user->event, "migrate: Domain lookup failed, "
			"delivering: %s", error);
		return;
	}
	if (ret == 0 || dom.phase != MIGRATE_DOMAIN_MIGRATING)
		return;

	event = event_create(user->event);
	event_set_name(event, "migrate_delivery_blocked");
	event_add_str(event, "domain", domain);
	event_add_str(event, "action", "deferred");
	event_add_str(event, "result", "tempfail");
	e_info(event, "migrate: Delivery deferred: %s is migrating, its MX "
	       "is still %s", domain, dom.old_mx);
	event_unref(&event);
	user->error = p_strdup_printf(user->pool,
		"migrate: %s is being migrated; its mail goes to the old "
		"provider (%s) until cutover", domain, dom.old_mx);
}

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
	if (strcmp(user->service, "lda") == 0) T_BEGIN {
		migrate_lda_check(user);
	} T_END;
	if (set == NULL || user->error != NULL)
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
