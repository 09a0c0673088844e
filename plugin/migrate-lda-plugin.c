/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "mail-user.h"
#include "mail-storage-hooks.h"
#include "master-service.h"
#include "master-service-settings.h"
#include "migrate-domain.h"

/* dovecot-lda only: defer the mail of a domain that is migrating.  LMTP
   needs no code of ours: it relays such recipients to the old MX through
   Dovecot's own LMTP proxy.  Of the migrate settings this reads only
   migrate_domain_dict; the engine (the "migrate" plugin) is not needed. */

const char *migrate_lda_plugin_version = DOVECOT_ABI_VERSION;
const char migrate_lda_plugin_binary_dependency[] = "lda";

void migrate_lda_plugin_init(struct module *module);
void migrate_lda_plugin_deinit(void);

static void
migrate_lda_defer(struct mail_user *user, const char *domain,
		  const struct migrate_domain *dom)
{
	struct event *event;

	event = event_create(user->event);
	event_set_name(event, "migrate_delivery_blocked");
	event_add_str(event, "domain", domain);
	event_add_str(event, "action", "deferred");
	event_add_str(event, "result", "tempfail");
	e_info(event, "migrate: Delivery deferred: %s is migrating, its MX "
	       "is still %s", domain, dom->old_mx);
	event_unref(&event);
	user->error = p_strdup_printf(user->pool,
		"migrate: %s is being migrated; its mail goes to the old "
		"provider (%s) until cutover", domain, dom->old_mx);
}

/* dovecot-lda: while the recipient's domain migrates, its mail belongs to
   the old provider (still its MX); storing it here would put it where the
   next mirror sync treats it as foreign.  Defer: dovecot-lda exits 75 and
   the MTA keeps the mail queued (or sends it on to the old MX).  A bad
   migrate_domain_dict defers too (never a delivery as if it were not
   there); a failed lookup delivers as if the domain did not migrate,
   logged. */
static void migrate_lda_check(struct mail_user *user)
{
	const char *domain = migrate_user_domain(user->username);
	struct migrate_domain_store *store;
	struct migrate_domain dom;
	const char *error;
	int ret;

	if (domain[0] == '\0')
		return;
	if (migrate_domain_store_open(migrate_domain_dict_uri(
			mail_user_plugin_getenv(user, MIGRATE_SETTING_DOMAIN_DICT),
			master_service_settings_get(master_service)->state_dir),
			user->set->base_dir, &store, &error) < 0) {
		user->error = p_strdup_printf(user->pool,
			"migrate: Invalid settings: %s", error);
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
	if (ret > 0 && dom.phase == MIGRATE_DOMAIN_MIGRATING)
		migrate_lda_defer(user, domain, &dom);
}

static void migrate_lda_mail_user_created(struct mail_user *user)
{
	T_BEGIN {
		migrate_lda_check(user);
	} T_END;
}

static struct mail_storage_hooks migrate_lda_mail_storage_hooks = {
	.mail_user_created = migrate_lda_mail_user_created,
};

void migrate_lda_plugin_init(struct module *module)
{
	mail_storage_hooks_add(module, &migrate_lda_mail_storage_hooks);
}

void migrate_lda_plugin_deinit(void)
{
	mail_storage_hooks_remove(&migrate_lda_mail_storage_hooks);
}
