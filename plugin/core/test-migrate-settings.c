/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "test-migrate.h"

#include <sys/stat.h>
#include "migrate-settings.h"

/* NULL-terminated "key", "value" pairs */
static const char *test_lookup(const char *key, void *context)
{
	const char *const *pairs = context;

	for (; pairs[0] != NULL; pairs += 2) {
		if (strcmp(pairs[0], key) == 0)
			return pairs[1];
	}
	return NULL;
}

static void test_migrate_settings_defaults(void)
{
	const char *const pairs[] = {
		"migrate_source_host", "192.0.2.10",
		"migrate_source_password", "s3cret!",
		NULL
	};
	const struct migrate_settings *set;
	const char *error;
	pool_t pool = pool_alloconly_create("test", 1024);

	test_begin("migrate settings defaults");
	test_assert(migrate_settings_read(pool, test_lookup, (void *)pairs,
					  "alice@example.com", "/home/alice",
					  TRUE, &set, &error) == 0);
	test_assert_strcmp(set->source_host, "192.0.2.10");
	test_assert(set->source_port == 143);
	test_assert(set->source_ssl == MIGRATE_SSL_STARTTLS);
	test_assert(set->source_ssl_verify);
	test_assert_strcmp(set->source_user, "alice@example.com");
	test_assert_strcmp(set->source_password, "s3cret!");
	test_assert_strcmp(set->state_dir, "/home/alice/.migrate");
	test_assert(set->special_use);
	test_assert(set->max_delete_percent == MIGRATE_DEFAULT_MAX_DELETE_PERCENT);
	test_assert(set->batch_size == MIGRATE_DEFAULT_BATCH_SIZE);
	test_assert(set->retries == MIGRATE_DEFAULT_RETRIES);
	test_assert(set->retry_delay_secs == MIGRATE_DEFAULT_RETRY_DELAY_SECS);
	test_assert(set->gmail == MIGRATE_GMAIL_AUTO);
	test_assert(set->debug_kill_step == NULL);
	test_assert(set->source_max_line_length ==
		    MIGRATE_DEFAULT_SOURCE_MAX_LINE_LENGTH);
	test_assert(set->max_message_size == MIGRATE_DEFAULT_MAX_MESSAGE_SIZE);
	test_assert(set->account_timeout_secs ==
		    MIGRATE_DEFAULT_ACCOUNT_TIMEOUT_SECS);
	test_assert(set->min_rate == MIGRATE_DEFAULT_MIN_RATE);
	test_assert(set->max_folders == MIGRATE_DEFAULT_MAX_FOLDERS);
	test_assert(set->source_protocol == MIGRATE_SOURCE_PROTOCOL_IMAP);
	pool_unref(&pool);
	test_end();
}

static void test_migrate_settings_values(void)
{
	const char *const pairs[] = {
		"migrate_source_host", "imap.old.example",
		"migrate_source_ssl", "imaps",
		"migrate_source_user", "bob",
		"migrate_source_password", "x",
		"migrate_source_timeout", "30s",
		"migrate_batch_size", "8M",
		"migrate_special_use", "no",
		"migrate_state_dir", "/var/lib/migrate/bob",
		"migrate_retries", "0",
		"migrate_retry_delay", "2 mins",
		"migrate_gmail", "yes",
		"migrate_debug_kill", "commit:3",
		"migrate_source_max_line_length", "1M",
		"migrate_max_message_size", "20M",
		"migrate_account_timeout", "10s",
		"migrate_min_rate", "0",
		"migrate_max_folders", "50",
		"migrate_source_protocol", "Auto",
		NULL
	};
	const struct migrate_settings *set;
	const char *error;
	pool_t pool = pool_alloconly_create("test", 1024);

	test_begin("migrate settings values");
	test_assert(migrate_settings_read(pool, test_lookup, (void *)pairs,
					  "bob@example.com", NULL, TRUE,
					  &set, &error) == 0);
	test_assert(set->source_port == 993);
	test_assert(set->source_ssl == MIGRATE_SSL_IMAPS);
	test_assert_strcmp(set->source_user, "bob");
	test_assert(set->source_timeout_secs == 30);
	test_assert(set->batch_size == 8*1024*1024);
	test_assert(!set->special_use);
	test_assert_strcmp(set->state_dir, "/var/lib/migrate/bob");
	test_assert(set->retries == 0);
	test_assert(set->retry_delay_secs == 120);
	test_assert(set->gmail == MIGRATE_GMAIL_YES);
	test_assert_strcmp(set->debug_kill_step, "commit");
	test_assert(set->debug_kill_count == 3);
	test_assert(set->source_max_line_length == 1024*1024);
	test_assert(set->max_message_size == 20*1024*1024);
	test_assert(set->account_timeout_secs == 10);
	test_assert(set->min_rate == 0);
	test_assert(set->max_folders == 50);
	test_assert(set->source_protocol == MIGRATE_SOURCE_PROTOCOL_AUTO);
	pool_unref(&pool);
	test_end();
}

static void test_migrate_settings_invalid(void)
{
	static const struct {
		const char *key, *value, *error_substr;
	} tests[] = {
		{ "migrate_source_ssl", "yes", "migrate_source_ssl" },
		{ "migrate_source_port", "0", "migrate_source_port" },
		{ "migrate_source_port", "70000", "migrate_source_port" },
		{ "migrate_source_port", "12ab", "migrate_source_port" },
		{ "migrate_source_ssl_verify", "maybe", "migrate_source_ssl_verify" },
		{ "migrate_max_delete_percent", "101", "migrate_max_delete_percent" },
		{ "migrate_batch_messages", "0", "migrate_batch_messages" },
		{ "migrate_batch_size", "lots", "migrate_batch_size" },
		{ "migrate_source_timeout", "soon", "migrate_source_timeout" },
		{ "migrate_escape_char", "ab", "migrate_escape_char" },
		/* escapes end in hex digits, and it must not need one */
		{ "migrate_escape_char", "x", "migrate_escape_char" },
		{ "migrate_escape_char", "~", "migrate_escape_char" },
		{ "migrate_escape_char", "/", "migrate_escape_char" },
		{ "migrate_retries", "101", "migrate_retries" },
		{ "migrate_retry_delay", "later", "migrate_retry_delay" },
		{ "migrate_gmail", "maybe", "migrate_gmail" },
		{ "migrate_debug_kill", "save:0", "migrate_debug_kill" },
		{ "migrate_debug_kill", "save:x", "migrate_debug_kill" },
		{ "migrate_source_max_line_length", "lots",
		  "migrate_source_max_line_length" },
		{ "migrate_source_max_line_length", "1k",
		  "migrate_source_max_line_length" },
		{ "migrate_max_message_size", "0", "migrate_max_message_size" },
		{ "migrate_max_message_size", "big", "migrate_max_message_size" },
		{ "migrate_account_timeout", "forever", "migrate_account_timeout" },
		{ "migrate_min_rate", "fast", "migrate_min_rate" },
		{ "migrate_max_folders", "0", "migrate_max_folders" },
		{ "migrate_max_folders", "2000000", "migrate_max_folders" },
		{ "migrate_max_folders", "many", "migrate_max_folders" },
		{ "migrate_source_pop3", "maybe", "migrate_source_pop3" },
		{ "migrate_source_protocol", "smtp", "migrate_source_protocol" },
		{ "migrate_source_pop3_port", "0", "migrate_source_pop3_port" },
		{ "migrate_source_auth", "kerberos", "migrate_source_auth" },
		{ "migrate_source_oauth2_token_command", "get-token",
		  "migrate_source_oauth2_token_command must start with an "
		  "absolute path" },
		{ "migrate_source_oauth2_token_url", "http://login.example/t",
		  "migrate_source_oauth2_token_url must be an https:// URL" },
		{ "migrate_source_oauth2_service_account_file", "sa.json",
		  "migrate_source_oauth2_service_account_file must be an "
		  "absolute path" },
		{ "migrate_source_oauth2_client_id", "c1",
		  "The client-credentials grant needs" },
	};
	const struct migrate_settings *set;
	const char *error;
	unsigned int i;

	test_begin("migrate settings invalid");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		const char *const pairs[] = {
			"migrate_source_host", "h",
			tests[i].key, tests[i].value,
			"migrate_source_password", "pw",
			NULL
		};
		pool_t pool = pool_alloconly_create("test", 1024);

		error = NULL;
		test_assert_idx(migrate_settings_read(pool, test_lookup,
			(void *)pairs, "u", "/home/u", TRUE, &set,
			&error) < 0, i);
		test_assert_idx(error != NULL &&
				strstr(error, tests[i].error_substr) != NULL, i);
		pool_unref(&pool);
	}
	test_end();
}

static void test_migrate_settings_source_protocol(void)
{
	static const struct {
		const char *value;
		bool valid;
		enum migrate_source_protocol protocol;
	} tests[] = {
		{ "imap", TRUE, MIGRATE_SOURCE_PROTOCOL_IMAP },
		{ "POP3", TRUE, MIGRATE_SOURCE_PROTOCOL_POP3 },
		{ "auto", TRUE, MIGRATE_SOURCE_PROTOCOL_AUTO },
		{ "", FALSE, 0 },
		{ "pop", FALSE, 0 },
		{ "imaps", FALSE, 0 },
	};
	enum migrate_source_protocol protocol;
	unsigned int i;

	test_begin("migrate settings source protocol");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		test_assert_idx(migrate_source_protocol_parse(tests[i].value,
			&protocol) == tests[i].valid, i);
		if (tests[i].valid) {
			test_assert_idx(protocol == tests[i].protocol, i);
			test_assert_idx(strcasecmp(
				migrate_source_protocol_to_str(protocol),
				tests[i].value) == 0, i);
		}
	}
	test_end();
}

static void test_migrate_settings_required(void)
{
	const char *const no_host[] = { "migrate_source_password", "x", NULL };
	const char *const no_password[] = { "migrate_source_host", "h", NULL };
	const char *const both[] = {
		"migrate_source_host", "h",
		"migrate_source_password", "x",
		"migrate_source_password_file", "/etc/hostname",
		NULL
	};
	const struct migrate_settings *set;
	const char *error;
	pool_t pool = pool_alloconly_create("test", 1024);

	test_begin("migrate settings required");
	test_assert(migrate_settings_read(pool, test_lookup, (void *)no_host,
		"u", "/h", TRUE, &set, &error) < 0);
	test_assert(strstr(error, "migrate_source_host") != NULL);
	test_assert(migrate_settings_read(pool, test_lookup,
		(void *)no_password, "u", "/h", TRUE, &set, &error) < 0);
	test_assert(strstr(error, "migrate_source_password") != NULL);
	/* not required: a user that is not migrating */
	test_assert(migrate_settings_read(pool, test_lookup,
		(void *)no_password, "u", "/h", FALSE, &set, &error) == 0);
	test_assert(migrate_settings_read(pool, test_lookup, (void *)both,
		"u", "/h", TRUE, &set, &error) < 0);
	test_assert(strstr(error, "mutually exclusive") != NULL);
	/* a password never appears in an error */
	test_assert(strstr(error, "x") == NULL || strstr(error, "=x") == NULL);
	pool_unref(&pool);
	test_end();
}

static void test_migrate_settings_token_command(void)
{
	const char *const command[] = {
		"migrate_source_host", "h",
		"migrate_source_auth", "XOAUTH2",
		"migrate_source_oauth2_token_command", "/usr/bin/tok --x",
		NULL
	};
	const char *const no_command[] = {
		"migrate_source_host", "h",
		"migrate_source_auth", "oauthbearer",
		NULL
	};
	const char *const password_auth[] = {
		"migrate_source_host", "h",
		"migrate_source_oauth2_token_command", "/usr/bin/tok",
		NULL
	};
	const struct migrate_settings *set;
	const char *error;
	pool_t pool = pool_alloconly_create("test", 1024);

	const char *const two[] = {
		"migrate_source_host", "h",
		"migrate_source_auth", "xoauth2",
		"migrate_source_oauth2_token_command", "/usr/bin/tok",
		"migrate_source_oauth2_service_account_file", "/etc/sa.json",
		NULL
	};
	const char *const client[] = {
		"migrate_source_host", "h",
		"migrate_source_auth", "xoauth2",
		"migrate_source_oauth2_client_id", "c1",
		"migrate_source_oauth2_client_secret_file", "/etc/secret",
		"migrate_source_oauth2_token_url", "https://login.example/t/token",
		NULL
	};
	const char *const google[] = {
		"migrate_source_host", "h",
		"migrate_source_auth", "xoauth2",
		"migrate_source_oauth2_service_account_file", "/etc/sa.json",
		NULL
	};

	test_begin("migrate settings token command");
	test_assert(migrate_settings_read(pool, test_lookup, (void *)two,
		"u", "/h", TRUE, &set, &error) < 0);
	test_assert(str_begins(error, "Only one of"));
	test_assert(migrate_settings_read(pool, test_lookup, (void *)client,
		"u", "/h", TRUE, &set, &error) == 0);
	test_assert(set->source_oauth2_grant ==
		    MIGRATE_OAUTH2_GRANT_CLIENT_CREDENTIALS);
	test_assert_strcmp(set->source_oauth2_scope,
			   "https://outlook.office365.com/.default");
	test_assert(migrate_settings_read(pool, test_lookup, (void *)google,
		"u", "/h", TRUE, &set, &error) == 0);
	test_assert(set->source_oauth2_grant ==
		    MIGRATE_OAUTH2_GRANT_SERVICE_ACCOUNT);
	test_assert_strcmp(set->source_oauth2_scope, "https://mail.google.com/");
	/* a token command stands for the password */
	test_assert(migrate_settings_read(pool, test_lookup, (void *)command,
		"u", "/h", TRUE, &set, &error) == 0);
	test_assert(set->source_auth == MIGRATE_SOURCE_AUTH_XOAUTH2);
	test_assert_strcmp(set->source_oauth2_token_command,
			   "/usr/bin/tok --x");
	test_assert(set->source_password == NULL);
	test_assert(migrate_settings_read(pool, test_lookup,
		(void *)no_command, "u", "/h", TRUE, &set, &error) < 0);
	test_assert_strcmp(error, "migrate_source_auth = oauthbearer: "
		"neither a token (migrate_source_password, "
		"migrate_source_password_file) nor where to get one "
		"(migrate_source_oauth2_token_command, "
		"migrate_source_oauth2_client_id, "
		"migrate_source_oauth2_service_account_file) is set");
	/* ... only with an OAuth2 mechanism */
	test_assert(migrate_settings_read(pool, test_lookup,
		(void *)password_auth, "u", "/h", TRUE, &set, &error) < 0);
	test_assert(strstr(error, "Neither migrate_source_password") != NULL);
	pool_unref(&pool);
	test_end();
}

static void test_migrate_settings_oauth2_secret(void)
{
	const char *path = test_migrate_write("secret", "s3cr3t~x\nmore\n");
	const char *sa = test_migrate_write("sa.json", "{\"type\":1}\n");
	const char *empty = test_migrate_write("empty", "\n");
	const char *client[] = {
		"migrate_source_oauth2_client_secret_file", path, NULL
	};
	const char *google[] = {
		"migrate_source_oauth2_service_account_file", sa, NULL
	};
	const char *none[] = { NULL };
	const char *secret, *error;

	test_begin("migrate settings oauth2 secret files");
	test_assert(chmod(path, 0600) == 0 && chmod(sa, 0400) == 0 &&
		    chmod(empty, 0600) == 0);
	test_assert(migrate_settings_read_oauth2_secret(test_lookup,
		(void *)client, pool_datastack_create(), &secret, &error) == 0);
	test_assert_strcmp(secret, "s3cr3t~x");
	test_assert(migrate_settings_read_oauth2_secret(test_lookup,
		(void *)google, pool_datastack_create(), &secret, &error) == 0);
	test_assert_strcmp(secret, "{\"type\":1}\n");
	test_assert(migrate_settings_read_oauth2_secret(test_lookup,
		(void *)none, pool_datastack_create(), &secret, &error) == 0);
	test_assert(secret == NULL);
	/* readable by others: refused, the secret not shown */
	test_assert(chmod(path, 0640) == 0);
	test_assert(migrate_settings_read_oauth2_secret(test_lookup,
		(void *)client, pool_datastack_create(), &secret, &error) < 0);
	test_assert(strstr(error, "only its owner") != NULL &&
		    strstr(error, "s3cr3t") == NULL);
	client[1] = empty;
	test_assert(migrate_settings_read_oauth2_secret(test_lookup,
		(void *)client, pool_datastack_create(), &secret, &error) < 0);
	test_assert(strstr(error, "is empty") != NULL);
	test_end();
}

static void test_migrate_settings_password_file(void)
{
	const char *path = test_migrate_write("pw", "f1le!pw\nsecond line\n");
	const char *empty = test_migrate_write("pw-empty", "");
	const char *pairs[] = {
		"migrate_source_host", "h",
		"migrate_source_password_file", "/nonexistent/pw",
		NULL
	};
	const struct migrate_settings *set;
	struct migrate_settings *set_copy;
	const char *error;
	pool_t pool = pool_alloconly_create("test", 1024);

	test_begin("migrate settings password file");
	/* read only when asked for: a missing file is no error yet, and
	   counts as a password that is set */
	test_assert(migrate_settings_read(pool, test_lookup, (void *)pairs,
		"u", "/h", TRUE, &set, &error) == 0);
	test_assert(set->source_password == NULL);
	test_assert_strcmp(set->source_password_file, "/nonexistent/pw");
	set_copy = p_new(pool, struct migrate_settings, 1);
	*set_copy = *set;
	test_assert(migrate_settings_read_password_file(pool, set_copy,
							&error) < 0);
	test_assert(strstr(error, "migrate_source_password_file") != NULL);
	test_assert(set_copy->source_password == NULL);

	pairs[3] = empty;
	test_assert(migrate_settings_read(pool, test_lookup, (void *)pairs,
		"u", "/h", TRUE, &set, &error) == 0);
	*set_copy = *set;
	test_assert(migrate_settings_read_password_file(pool, set_copy,
							&error) < 0);
	test_assert(strstr(error, "No password in file") != NULL);

	pairs[3] = path;
	test_assert(migrate_settings_read(pool, test_lookup, (void *)pairs,
		"u", "/h", TRUE, &set, &error) == 0);
	*set_copy = *set;
	test_assert(migrate_settings_read_password_file(pool, set_copy,
							&error) == 0);
	test_assert_strcmp(set_copy->source_password, "f1le!pw");
	pool_unref(&pool);
	test_end();
}

void test_migrate_settings(void)
{
	test_migrate_settings_defaults();
	test_migrate_settings_values();
	test_migrate_settings_invalid();
	test_migrate_settings_source_protocol();
	test_migrate_settings_required();
	test_migrate_settings_token_command();
	test_migrate_settings_oauth2_secret();
	test_migrate_settings_password_file();
}
