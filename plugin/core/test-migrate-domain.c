/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "test-migrate.h"
#include "migrate-domain.h"

#define T0 1700000000
#define NOW (T0 + 86400)

/* the domain as the store has it, in each phase */
static const struct migrate_domain test_domains[] = {
	{ .name = "example.com", .phase = MIGRATE_DOMAIN_NONE },
	{ .name = "example.com", .phase = MIGRATE_DOMAIN_MIGRATING,
	  .started = T0, .old_mx = "mx.old", .old_mx_addrs = "192.0.2.1",
	  .old_mx_port = 25 },
	{ .name = "example.com", .phase = MIGRATE_DOMAIN_CUTOVER,
	  .started = T0, .cutover = T0 + 60, .old_mx = "mx.old",
	  .old_mx_addrs = "192.0.2.1", .old_mx_port = 25 },
	{ .name = "example.com", .phase = MIGRATE_DOMAIN_FINISHED,
	  .started = T0, .cutover = T0 + 60, .finished = T0 + 120,
	  .old_mx = "mx.old", .old_mx_addrs = "192.0.2.1",
	  .old_mx_port = 25 },
};

/* from the phase of test_domains[from] to the phase to (forced or not):
   NULL when allowed, else why not ("%T" the start time) */
static const struct {
	enum migrate_domain_phase from, to;
	const char *error;
	bool force;
} test_transitions[] = {
	/* start; a finished domain only when forced */
	{ MIGRATE_DOMAIN_NONE, MIGRATE_DOMAIN_MIGRATING, NULL, FALSE },
	{ MIGRATE_DOMAIN_FINISHED, MIGRATE_DOMAIN_MIGRATING, NULL, TRUE },
	{ MIGRATE_DOMAIN_FINISHED, MIGRATE_DOMAIN_MIGRATING,
	  "example.com is finished (its source credentials are deleted): "
	  "starting it again needs --force", FALSE },
	{ MIGRATE_DOMAIN_MIGRATING, MIGRATE_DOMAIN_MIGRATING,
	  "example.com is already in phase migrating (since %T)", FALSE },
	{ MIGRATE_DOMAIN_MIGRATING, MIGRATE_DOMAIN_MIGRATING,
	  "example.com is already in phase migrating (since %T)", TRUE },
	{ MIGRATE_DOMAIN_CUTOVER, MIGRATE_DOMAIN_MIGRATING,
	  "example.com is already in phase cutover (since %T)", FALSE },
	{ MIGRATE_DOMAIN_CUTOVER, MIGRATE_DOMAIN_MIGRATING,
	  "example.com is already in phase cutover (since %T)", TRUE },
	/* cutover */
	{ MIGRATE_DOMAIN_MIGRATING, MIGRATE_DOMAIN_CUTOVER, NULL, FALSE },
	{ MIGRATE_DOMAIN_NONE, MIGRATE_DOMAIN_CUTOVER,
	  "example.com is unknown, not migrating", FALSE },
	{ MIGRATE_DOMAIN_CUTOVER, MIGRATE_DOMAIN_CUTOVER,
	  "example.com is cutover, not migrating", FALSE },
	{ MIGRATE_DOMAIN_FINISHED, MIGRATE_DOMAIN_CUTOVER,
	  "example.com is finished, not migrating", FALSE },
	/* finish */
	{ MIGRATE_DOMAIN_CUTOVER, MIGRATE_DOMAIN_FINISHED, NULL, FALSE },
	{ MIGRATE_DOMAIN_NONE, MIGRATE_DOMAIN_FINISHED,
	  "example.com is unknown; finish comes after cutover", FALSE },
	{ MIGRATE_DOMAIN_MIGRATING, MIGRATE_DOMAIN_FINISHED,
	  "example.com is migrating; finish comes after cutover", FALSE },
	{ MIGRATE_DOMAIN_FINISHED, MIGRATE_DOMAIN_FINISHED,
	  "example.com is finished; finish comes after cutover", FALSE },
	/* back to nothing */
	{ MIGRATE_DOMAIN_MIGRATING, MIGRATE_DOMAIN_NONE,
	  "example.com: a migration cannot be undone", FALSE },
};

static void test_domain_transitions(void)
{
	const struct migrate_domain *cur;
	struct migrate_domain domain;
	const char *error, *expected, *p;
	unsigned int i;
	int ret;

	test_begin("domain: phase changes");
	for (i = 0; i < N_ELEMENTS(test_transitions); i++) T_BEGIN {
		cur = &test_domains[test_transitions[i].from];
		error = NULL;
		ret = migrate_domain_transition(cur, test_transitions[i].to,
						test_transitions[i].force,
						NOW, &domain, &error);
		expected = test_transitions[i].error;
		if (expected == NULL) {
			test_assert_idx(ret == 0, i);
			test_assert_idx(domain.phase ==
					test_transitions[i].to, i);
			test_assert_strcmp_idx(domain.name, cur->name, i);
		} else {
			test_assert_idx(ret < 0, i);
			p = strstr(expected, "%T");
			if (p != NULL) {
				expected = t_strconcat(
					t_strdup_until(expected, p),
					migrate_domain_time_str(T0), p + 2,
					NULL);
			}
			test_assert_strcmp_idx(error, expected, i);
		}
	} T_END;
	test_end();
}

static void test_domain_times(void)
{
	struct migrate_domain domain;
	const char *error;

	test_begin("domain: each phase records when");
	/* a start forgets the times of the last migration */
	test_assert(migrate_domain_transition(
		&test_domains[MIGRATE_DOMAIN_FINISHED],
		MIGRATE_DOMAIN_MIGRATING, TRUE, NOW, &domain, &error) == 0);
	test_assert(domain.started == NOW && domain.cutover == 0 &&
		    domain.finished == 0);
	/* the others keep what was before */
	test_assert(migrate_domain_transition(
		&test_domains[MIGRATE_DOMAIN_MIGRATING],
		MIGRATE_DOMAIN_CUTOVER, FALSE, NOW, &domain, &error) == 0);
	test_assert(domain.started == T0 && domain.cutover == NOW &&
		    domain.finished == 0);
	test_assert_strcmp(domain.old_mx_addrs, "192.0.2.1");
	test_assert(migrate_domain_transition(
		&test_domains[MIGRATE_DOMAIN_CUTOVER],
		MIGRATE_DOMAIN_FINISHED, FALSE, NOW, &domain, &error) == 0);
	test_assert(domain.started == T0 && domain.cutover == T0 + 60 &&
		    domain.finished == NOW);
	/* the domain may be the result too */
	domain = test_domains[MIGRATE_DOMAIN_MIGRATING];
	test_assert(migrate_domain_transition(&domain,
		MIGRATE_DOMAIN_CUTOVER, FALSE, NOW, &domain, &error) == 0);
	test_assert(domain.phase == MIGRATE_DOMAIN_CUTOVER);
	domain = test_domains[MIGRATE_DOMAIN_MIGRATING];
	test_assert(migrate_domain_transition(&domain,
		MIGRATE_DOMAIN_FINISHED, FALSE, NOW, &domain, &error) < 0);
	test_assert(domain.phase == MIGRATE_DOMAIN_MIGRATING);
	test_assert_strcmp(migrate_domain_time_str(0), "-");
	test_end();
}

static void test_domain_source_protocol(void)
{
	const char *uri = t_strdup_printf("file:%s/domains-protocol",
					  test_migrate_dir());
	struct migrate_domain_store *store;
	struct migrate_domain domain, found;
	const char *error;

	test_begin("domain: the protocol of its sources, its connection limit");
	test_assert(migrate_domain_store_open(uri, test_migrate_dir(), &store,
					      &error) == 0);
	domain = test_domains[MIGRATE_DOMAIN_MIGRATING];
	test_assert(migrate_domain_save(store, &domain, &error) == 0);
	test_assert(migrate_domain_lookup(store, "example.com",
		pool_datastack_create(), &found, &error) == 1);
	test_assert(found.source_protocol == NULL);
	test_assert(found.max_conns_per_host == 0);
	domain.source_protocol = "pop3";
	domain.max_conns_per_host = 6;
	test_assert(migrate_domain_save(store, &domain, &error) == 0);
	test_assert(migrate_domain_lookup(store, "example.com",
		pool_datastack_create(), &found, &error) == 1);
	test_assert_strcmp(found.source_protocol, "pop3");
	test_assert(found.max_conns_per_host == 6);
	/* kept by the later phases */
	test_assert(migrate_domain_transition(&found, MIGRATE_DOMAIN_CUTOVER,
		FALSE, NOW, &domain, &error) == 0);
	test_assert_strcmp(domain.source_protocol, "pop3");
	test_assert(domain.max_conns_per_host == 6);
	migrate_domain_store_close(&store);
	test_end();
}

static void test_domain_account_node(void)
{
	const char *uri = t_strdup_printf("file:%s/domains-node",
					  test_migrate_dir());
	struct migrate_domain_store *store;
	struct migrate_domain_account account;
	ARRAY_TYPE(migrate_domain_account) accounts;
	const struct migrate_domain_account *found;
	const char *error;

	test_begin("domain: where an account ran, with its result");
	test_assert(migrate_domain_store_open(uri, test_migrate_dir(), &store,
					      &error) == 0);
	i_zero(&account);
	account.user = "alice@example.com";
	account.when = T0;
	account.result = "ok";
	account.copied = 3;
	account.node = "10.0.0.2:24245";
	test_assert(migrate_domain_account_save(store, "example.com",
						&account, &error) == 0);
	account.user = "bob@example.com";
	account.node = NULL;
	test_assert(migrate_domain_account_save(store, "example.com",
						&account, &error) == 0);
	t_array_init(&accounts, 4);
	test_assert(migrate_domain_accounts(store, "example.com",
		pool_datastack_create(), &accounts, &error) == 0);
	test_assert(array_count(&accounts) == 2);
	array_foreach(&accounts, found) {
		if (strcmp(found->user, "alice@example.com") == 0)
			test_assert_strcmp(found->node, "10.0.0.2:24245");
		else
			test_assert(found->node == NULL);
	}
	migrate_domain_store_close(&store);
	test_end();
}

void test_migrate_domain(void)
{
	test_domain_transitions();
	test_domain_times();
	test_domain_source_protocol();
	test_domain_account_node();
}
