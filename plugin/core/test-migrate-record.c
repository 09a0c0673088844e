/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "migrate-record.h"
#include "test-migrate.h"

static void test_migrate_record_roundtrip(void)
{
	static const char *const warnings[] = {
		"Source folders \"A/b\" and A_b both map to A_b",
		"Retry 1 of 3 in 10 s: Disconnected\nfrom server",
		NULL
	};
	struct migrate_record rec, parsed;
	string_t *str = t_str_new(512);
	const char *error;
	pool_t pool = pool_datastack_create();

	test_begin("migrate record round trip");
	i_zero(&rec);
	rec.user = "ana@example.com";
	rec.result = "partial";
	rec.exit_code = 65;
	rec.error_code = "rejected";
	rec.error = "2 messages left out: \"Straße\"";
	rec.mode = "mirror";
	rec.folders = 16;
	rec.copied = 44;
	rec.updated = 1;
	rec.deleted = 2;
	rec.skipped = 3;
	rec.rejected = 2;
	rec.bytes = 5000000000ULL;
	rec.retries = 1;
	rec.source_pushbacks = 3;
	rec.source_protocol = "pop3";
	rec.pop3_order_differs = 2;
	rec.warnings = warnings;
	rec.quota_known = TRUE;
	rec.quota_limited = TRUE;
	rec.quota_used_kb = 69;
	rec.quota_limit_kb = 100;
	migrate_record_append(str, &rec);
	/* one line, so that several users' records can follow each other */
	test_assert(strchr(str_c(str), '\n') == str_c(str) + str_len(str) - 1);
	/* what follows the first line is not read */
	str_append(str, "{not json\n");
	test_assert(migrate_record_parse(str_data(str), str_len(str), pool,
					 &parsed, &error) == 0);
	test_assert_strcmp(parsed.user, rec.user);
	test_assert_strcmp(parsed.result, rec.result);
	test_assert(parsed.exit_code == 65);
	test_assert_strcmp(parsed.error_code, rec.error_code);
	test_assert_strcmp(parsed.error, rec.error);
	test_assert_strcmp(parsed.mode, rec.mode);
	test_assert(parsed.folders == 16 && parsed.copied == 44 &&
		    parsed.updated == 1 && parsed.deleted == 2 &&
		    parsed.skipped == 3 && parsed.rejected == 2 &&
		    parsed.bytes == 5000000000ULL && parsed.retries == 1);
	test_assert(parsed.source_pushbacks == 3);
	test_assert_strcmp(parsed.source_protocol, "pop3");
	test_assert(parsed.pop3_order_differs == 2);
	test_assert(str_array_length(parsed.warnings) == 2);
	test_assert_strcmp(parsed.warnings[0], warnings[0]);
	test_assert_strcmp(parsed.warnings[1], warnings[1]);
	test_assert(parsed.quota_known && parsed.quota_limited &&
		    parsed.quota_used_kb == 69 && parsed.quota_limit_kb == 100);

	/* a failure without counts, quota or warnings */
	str_truncate(str, 0);
	i_zero(&rec);
	rec.user = "x@example.com";
	rec.result = "failed";
	rec.exit_code = 75;
	migrate_record_append(str, &rec);
	test_assert(migrate_record_parse(str_data(str), str_len(str), pool,
					 &parsed, &error) == 0);
	test_assert(parsed.error == NULL && parsed.mode == NULL &&
		    parsed.source_protocol == NULL &&
		    parsed.exit_code == 75 && parsed.copied == 0 &&
		    !parsed.quota_known && parsed.warnings[0] == NULL);

	/* an unlimited quota */
	str_truncate(str, 0);
	rec.quota_known = TRUE;
	rec.quota_used_kb = 7;
	migrate_record_append(str, &rec);
	test_assert(migrate_record_parse(str_data(str), str_len(str), pool,
					 &parsed, &error) == 0);
	test_assert(parsed.quota_known && !parsed.quota_limited &&
		    parsed.quota_used_kb == 7);
	test_end();
}

static void test_migrate_record_invalid(void)
{
	static const char *const invalid[] = {
		"",
		"\n",
		"{\"user\":\"u\",\"result\":\"ok\"}",
		"{\"user\":\"u\",\"exit_code\":0}",
		"{\"result\":\"ok\",\"exit_code\":0}",
		"{\"user\":\"u\",\"result\":\"ok\",\"exit_code\":\"x\"}",
		"{\"user\":\"u\",\"result\":\"ok\",\"exit_code\":0",
	};
	struct migrate_record rec;
	const char *error;
	unsigned int i;

	test_begin("migrate record invalid");
	for (i = 0; i < N_ELEMENTS(invalid); i++) {
		test_assert_idx(migrate_record_parse(invalid[i],
			strlen(invalid[i]), pool_datastack_create(),
			&rec, &error) < 0, i);
	}
	test_end();
}

static void test_migrate_record_tls(void)
{
	struct migrate_record rec, parsed;
	string_t *str = t_str_new(512);
	const char *error;
	pool_t pool = pool_datastack_create();

	test_begin("migrate record: the source's TLS");
	i_zero(&rec);
	rec.user = "ana@example.com";
	rec.result = "failed";
	rec.exit_code = 76;
	rec.tls.host = "192.0.2.1";
	rec.tls.port = 993;
	rec.tls.mode = "imaps";
	rec.tls.verify = FALSE;
	rec.tls.name = "imap.old.example";
	rec.tls.pin = "AA:BB";
	rec.tls.pin_mismatch = TRUE;
	rec.tls.insecure = "migrate_source_ssl_verify = no";
	rec.tls.cert.subject = "CN=imap.old.example";
	rec.tls.cert.issuer = "CN=Test CA,O=\"Quoted\"";
	rec.tls.cert.not_after = "2030-01-01 00:00:00 UTC";
	rec.tls.cert.sha256 = "CC:DD";
	migrate_record_append(str, &rec);
	test_assert(migrate_record_parse(str_data(str), str_len(str), pool,
					 &parsed, &error) == 0);
	test_assert_strcmp(parsed.tls.host, "192.0.2.1");
	test_assert(parsed.tls.port == 993);
	test_assert_strcmp(parsed.tls.mode, "imaps");
	test_assert(!parsed.tls.verify && parsed.tls.pin_mismatch);
	test_assert_strcmp(parsed.tls.name, "imap.old.example");
	test_assert_strcmp(parsed.tls.pin, "AA:BB");
	test_assert_strcmp(parsed.tls.insecure, rec.tls.insecure);
	test_assert_strcmp(parsed.tls.cert.subject, rec.tls.cert.subject);
	test_assert_strcmp(parsed.tls.cert.issuer, rec.tls.cert.issuer);
	test_assert_strcmp(parsed.tls.cert.not_after, rec.tls.cert.not_after);
	test_assert_strcmp(parsed.tls.cert.sha256, "CC:DD");

	/* verified, no certificate seen; and a run that did not get there */
	str_truncate(str, 0);
	i_zero(&rec.tls.cert);
	rec.tls.verify = TRUE;
	rec.tls.insecure = NULL;
	migrate_record_append(str, &rec);
	test_assert(migrate_record_parse(str_data(str), str_len(str), pool,
					 &parsed, &error) == 0);
	test_assert(parsed.tls.verify && parsed.tls.insecure == NULL &&
		    parsed.tls.cert.sha256 == NULL);
	str_truncate(str, 0);
	i_zero(&rec.tls);
	migrate_record_append(str, &rec);
	test_assert(strstr(str_c(str), "\"tls\":null") != NULL);
	test_assert(migrate_record_parse(str_data(str), str_len(str), pool,
					 &parsed, &error) == 0);
	test_assert(parsed.tls.mode == NULL && parsed.tls.host == NULL);
	test_end();
}

void test_migrate_record(void)
{
	test_migrate_record_roundtrip();
	test_migrate_record_invalid();
	test_migrate_record_tls();
}
