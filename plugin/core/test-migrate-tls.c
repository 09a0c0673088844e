/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "test-migrate.h"
#include "migrate-tls.h"
#include "migrate-domain.h"
#include "migrate-credentials.h"

#define TEST_SHA256 "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:" \
	"00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"

static void test_tls_name_valid(void)
{
	static const struct {
		const char *name;
		bool valid;
	} tests[] = {
		{ "imap.old-provider.example", TRUE },
		{ "mail", TRUE },
		{ "a1.b2.c3", TRUE },
		{ "", FALSE },
		{ "192.0.2.1", FALSE },
		{ "2001:db8::1", FALSE },
		{ "-imap.example", FALSE },
		{ "imap-.example", FALSE },
		{ "imap..example", FALSE },
		{ "imap.example.", FALSE },
		{ "*.example.com", FALSE },
		{ "imap example", FALSE },
		{ "imap_old.example", FALSE },
		{ "imap.ex/ample", FALSE },
	};
	string_t *label;
	unsigned int i;

	test_begin("tls: certificate names");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		test_assert_idx(migrate_tls_name_valid(tests[i].name) ==
				tests[i].valid, i);
	}
	/* a label has at most 63 characters */
	label = t_str_new(64);
	for (i = 0; i < 63; i++)
		str_append_c(label, 'a');
	test_assert(migrate_tls_name_valid(t_strconcat(
		str_c(label), ".example", NULL)));
	str_append_c(label, 'a');
	test_assert(!migrate_tls_name_valid(t_strconcat(
		str_c(label), ".example", NULL)));
	test_end();
}

static void test_tls_name_choose(void)
{
	static const struct {
		const char *host, *row, *domain, *set_host, *set_name;
		const char *result;
	} tests[] = {
		/* the row wins, then the domain, then the setting */
		{ "192.0.2.1", "row.example", "dom.example", "192.0.2.1",
		  "set.example", "row.example" },
		{ "192.0.2.1", NULL, "dom.example", "192.0.2.1",
		  "set.example", "dom.example" },
		{ "192.0.2.1", "", "", "192.0.2.1", "set.example",
		  "set.example" },
		/* the setting only for its own host */
		{ "192.0.2.9", NULL, NULL, "192.0.2.1", "set.example", NULL },
		{ "192.0.2.9", NULL, "dom.example", "192.0.2.1",
		  "set.example", "dom.example" },
		{ "2001:db8::5", "row.example", NULL, NULL, NULL,
		  "row.example" },
		/* a host name is verified as itself */
		{ "imap.old.example", "row.example", "dom.example",
		  "imap.old.example", "set.example", NULL },
		{ NULL, NULL, "dom.example", NULL, NULL, NULL },
	};
	unsigned int i;

	test_begin("tls: which certificate name a source is verified as");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		test_assert_strcmp_idx(migrate_tls_name_choose(tests[i].host,
			tests[i].row, tests[i].domain, tests[i].set_host,
			tests[i].set_name), tests[i].result, i);
	}
	test_end();
}

static void test_tls_fingerprint(void)
{
	test_begin("tls: fingerprints");
	test_assert_strcmp(migrate_tls_fingerprint_normalize(TEST_SHA256),
			   TEST_SHA256);
	test_assert_strcmp(migrate_tls_fingerprint_normalize(
		"00112233445566778899aabbccddeeff"
		"00112233445566778899AABBCCDDEEFF"), TEST_SHA256);
	test_assert(migrate_tls_fingerprint_normalize("") == NULL);
	test_assert(migrate_tls_fingerprint_normalize("00:11") == NULL);
	test_assert(migrate_tls_fingerprint_normalize(
		TEST_SHA256":00") == NULL);
	test_assert(migrate_tls_fingerprint_normalize(
		":"TEST_SHA256) == NULL);
	test_assert(migrate_tls_fingerprint_normalize(
		TEST_SHA256":") == NULL);
	test_assert(migrate_tls_fingerprint_normalize(
		"00::11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
		"00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF") == NULL);
	test_assert(migrate_tls_fingerprint_normalize(
		"0:011:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
		"00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF") == NULL);
	test_assert(migrate_tls_fingerprint_normalize(
		"G0:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
		"00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF") == NULL);
	test_assert_strcmp(migrate_tls_source_key("IMAP.Old.example", 993),
			   "imap.old.example:993");
	test_assert_strcmp(migrate_tls_source_key("2001:DB8::5", 143),
			   "[2001:db8::5]:143");
	test_end();
}

static void test_tls_domain_pins(void)
{
	const char *uri = t_strdup_printf("file:%s/domains",
					  test_migrate_dir());
	ARRAY_TYPE(migrate_domain_pin) pins;
	struct migrate_domain_store *store;
	struct migrate_domain domain, found;
	struct migrate_domain_pin pin;
	const char *error;

	test_begin("tls: the domain's certificate name and pins");
	test_assert(migrate_domain_store_open(uri, test_migrate_dir(), &store,
					      &error) == 0);
	i_zero(&domain);
	domain.name = "example.com";
	domain.phase = MIGRATE_DOMAIN_MIGRATING;
	domain.source_tls_name = "imap.old.example";
	test_assert(migrate_domain_save(store, &domain, &error) == 0);
	test_assert(migrate_domain_lookup(store, "Example.COM",
		pool_datastack_create(), &found, &error) == 1);
	test_assert_strcmp(found.source_tls_name, "imap.old.example");

	i_zero(&pin);
	pin.source = "[2001:db8::5]:993";
	pin.sha256 = TEST_SHA256;
	pin.when = 1700000000;
	pin.subject = "CN=imap.old.example";
	pin.not_after = "2030-01-01 00:00:00 UTC";
	test_assert(migrate_domain_pin_save(store, "example.com", &pin,
					    &error) == 0);
	pin.source = "192.0.2.1:143";
	test_assert(migrate_domain_pin_save(store, "example.com", &pin,
					    &error) == 0);
	/* a pin again replaces it */
	pin.sha256 = "FF:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
		"00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";
	test_assert(migrate_domain_pin_save(store, "example.com", &pin,
					    &error) == 0);
	t_array_init(&pins, 4);
	test_assert(migrate_domain_pins(store, "EXAMPLE.com",
		pool_datastack_create(), &pins, &error) == 0);
	test_assert(array_count(&pins) == 2);
	test_assert(migrate_domain_pin_find(&pins, "192.0.2.1:143") != NULL &&
		    strcmp(migrate_domain_pin_find(&pins, "192.0.2.1:143")->
			   sha256, pin.sha256) == 0);
	test_assert(migrate_domain_pin_find(&pins, "[2001:db8::5]:993") != NULL &&
		    strcmp(migrate_domain_pin_find(&pins, "[2001:db8::5]:993")->
			   subject, "CN=imap.old.example") == 0);
	test_assert(migrate_domain_pin_find(&pins, "192.0.2.1:993") == NULL);
	/* another domain has none */
	array_clear(&pins);
	test_assert(migrate_domain_pins(store, "example.net",
		pool_datastack_create(), &pins, &error) == 0);
	test_assert(array_count(&pins) == 0);
	migrate_domain_store_close(&store);
	test_end();
}

static void test_tls_credentials(void)
{
	struct migrate_credentials cred, parsed;
	string_t *str = t_str_new(256);
	const char *error;

	test_begin("tls: a template row's certificate name in the credentials");
	i_zero(&cred);
	cred.source_host = "192.0.2.1";
	cred.source_user = "ana";
	cred.source_password = "pw";
	migrate_credentials_serialize(str, &cred);
	test_assert(strstr(str_c(str), "tls_name") == NULL);
	test_assert(migrate_credentials_parse("x", str_c(str),
		pool_datastack_create(), &parsed, &error) == 0);
	test_assert(parsed.source_tls_name == NULL);
	cred.source_tls_name = "imap.old.example";
	str_truncate(str, 0);
	migrate_credentials_serialize(str, &cred);
	test_assert(migrate_credentials_parse("x", str_c(str),
		pool_datastack_create(), &parsed, &error) == 0);
	test_assert_strcmp(parsed.source_tls_name, "imap.old.example");
	test_end();
}

void test_migrate_tls(void)
{
	test_tls_name_valid();
	test_tls_name_choose();
	test_tls_fingerprint();
	test_tls_domain_pins();
	test_tls_credentials();
}
