/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strnum.h"
#include "migrate-csv.h"
#include "migrate-json.h"
#include "istream.h"
#include "password-scheme.h"
#include "doveadm-print.h"
#include "migrate-settings.h"
#include "migrate-accounts.h"
#include "migrate-error.h"
#include "doveadm-migrate.h"

#include <stdio.h>

/* doveadm migrate accounts [-n] [--update] [--json F] [--csv F] TEMPLATE:
   the customer's accounts template into the passwd-file that Dovecot's
   passdb and userdb read. */

/* exported by /usr/bin/doveadm, not by doveadm-server: referenced weakly,
   so that this module still loads there */
#pragma weak password_schemes_init
#pragma weak password_schemes_deinit
#pragma weak password_generate_encoded
#pragma weak password_get_scheme
#pragma weak password_decode
#pragma weak password_verify

#define MIGRATE_SETTING_ACCOUNTS_PASSWD_FILE "migrate_accounts_passwd_file"
#define MIGRATE_SETTING_ACCOUNTS_SCHEME "migrate_accounts_scheme"
#define MIGRATE_SETTING_ACCOUNTS_SQL "migrate_accounts_sql"
#define MIGRATE_DEFAULT_ACCOUNTS_PASSWD_FILE "/etc/dovecot/users"
#define MIGRATE_DEFAULT_ACCOUNTS_SCHEME "ARGON2ID"
#define MIGRATE_ZONEINFO_DIR "/usr/share/zoneinfo"

static const char *accounts_scheme;

/* driver and connect of a dovecot-sql.conf.ext file: the one the sql
   passdb and userdb of these accounts read */
static int
accounts_sql_conf(const char *path, const char **driver_r,
		  const char **connect_r, const char **error_r)
{
	struct istream *input;
	const char *line, *key, *value, *p;

	*driver_r = *connect_r = NULL;
	input = i_stream_create_file(path, 4096);
	while ((line = i_stream_read_next_line(input)) != NULL) {
		while (*line == ' ' || *line == '\t') line++;
		if (*line == '#' || *line == '\0' ||
		    (p = strchr(line, '=')) == NULL)
			continue;
		key = t_strcut(t_strdup_until(line, p), ' ');
		key = t_strcut(key, '\t');
		value = p + 1;
		while (*value == ' ' || *value == '\t') value++;
		if (value[0] == '"' && strlen(value) >= 2 &&
		    value[strlen(value) - 1] == '"')
			value = t_strndup(value + 1, strlen(value) - 2);
		if (strcmp(key, "driver") == 0)
			*driver_r = t_strdup(value);
		else if (strcmp(key, "connect") == 0)
			*connect_r = t_strdup(value);
	}
	if (input->stream_errno != 0) {
		*error_r = t_strdup_printf("read(%s) failed: %s", path,
					   i_stream_get_error(input));
		i_stream_unref(&input);
		return -1;
	}
	i_stream_unref(&input);
	if (*driver_r == NULL || *connect_r == NULL) {
		*error_r = t_strdup_printf("%s: no driver or connect", path);
		return -1;
	}
	return 0;
}

static const char *accounts_hash(const char *password, const char **error_r)
{
	const struct password_generate_params params = { .user = "" };
	const char *hash;

	if (!password_generate_encoded(password, &params, accounts_scheme,
				       &hash)) {
		*error_r = t_strdup_printf("Hashing with %s failed",
					   accounts_scheme);
		return NULL;
	}
	return t_strdup_printf("{%s}%s", accounts_scheme, hash);
}

static int accounts_verify(const char *password, const char *stored,
			   const char **error_r)
{
	const struct password_generate_params params = { .user = "" };
	const unsigned char *raw;
	const char *scheme;
	size_t size;
	int ret;

	scheme = password_get_scheme(&stored);
	if (scheme == NULL)
		return 0;
	ret = password_decode(stored, scheme, &raw, &size, error_r);
	if (ret <= 0)
		return 0;
	ret = password_verify(password, &params, scheme, raw, size, error_r);
	return ret < 0 ? -1 : ret;
}

static const struct migrate_accounts_hasher accounts_hasher = {
	.hash = accounts_hash,
	.verify = accounts_verify,
};

static int
accounts_write_json(const char *cmd_name, const struct migrate_accounts *acc,
		    const ARRAY_TYPE(migrate_account_report) *reports,
		    const char *path)
{
	const struct migrate_account_report *r;
	string_t *str = t_str_new(4096);
	struct migrate_json json;

	migrate_json_init(&json, str);
	migrate_json_object_begin(&json, NULL);
	migrate_json_string(&json, "template", acc->path);
	migrate_json_array_begin(&json, "accounts");
	array_foreach(reports, r) {
		migrate_json_newline(&json);
		migrate_json_object_begin(&json, NULL);
		migrate_json_string(&json, "user", r->account->user);
		migrate_json_uint(&json, "line", r->account->line);
		migrate_json_string(&json, "result",
				    migrate_account_result_name(r->result));
		if (r->reason != NULL)
			migrate_json_string(&json, "reason", r->reason);
		migrate_json_uint(&json, "quota_mib", r->account->quota_mib);
		migrate_json_uint(&json, "type", r->account->type);
		migrate_json_object_end(&json);
	}
	migrate_json_newline(&json);
	migrate_json_array_end(&json);
	migrate_json_object_end(&json);
	str_append_c(str, '\n');
	return migrate_cmd_write_report(cmd_name, path, str);
}

static int
accounts_write_csv(const char *cmd_name,
		   const ARRAY_TYPE(migrate_account_report) *reports,
		   const char *path)
{
	const struct migrate_account_report *r;
	string_t *str = t_str_new(4096);

	str_append(str, "user,line,result,reason\r\n");
	array_foreach(reports, r) {
		migrate_csv_append_field(str, r->account->user);
		str_printfa(str, ",%u,%s,", r->account->line,
			    migrate_account_result_name(r->result));
		migrate_csv_append_field(str, r->reason);
		str_append(str, "\r\n");
	}
	return migrate_cmd_write_report(cmd_name, path, str);
}

/* A file with problems: the report lists them, "invalid" with the line
   and the reason, and no account. */
static int
accounts_write_invalid(const char *cmd_name,
		       const struct migrate_accounts *accounts, bool json,
		       const char *path)
{
	string_t *str = t_str_new(4096);
	struct migrate_json jw;
	const char *msg, *reason;
	unsigned int line;

	if (json) {
		migrate_json_init(&jw, str);
		migrate_json_object_begin(&jw, NULL);
		migrate_json_string(&jw, "template", accounts->path);
		migrate_json_string(&jw, "result", "invalid");
		migrate_json_array_begin(&jw, "problems");
	} else {
		str_append(str, "user,line,result,reason\r\n");
	}
	array_foreach_elem(&accounts->errors, msg) {
		/* "PATH:LINE: reason" */
		reason = msg + strlen(accounts->path) + 1;
		if (str_parse_uint(reason, &line, &reason) < 0)
			line = 0;
		if (*reason == ':')
			reason++;
		if (*reason == ' ')
			reason++;
		if (json) {
			migrate_json_newline(&jw);
			migrate_json_object_begin(&jw, NULL);
			migrate_json_uint(&jw, "line", line);
			migrate_json_string(&jw, "result", "invalid");
			migrate_json_string(&jw, "reason", reason);
			migrate_json_object_end(&jw);
		} else {
			str_printfa(str, ",%u,invalid,", line);
			migrate_csv_append_field(str, reason);
			str_append(str, "\r\n");
		}
	}
	if (json) {
		migrate_json_newline(&jw);
		migrate_json_array_end(&jw);
		migrate_json_object_end(&jw);
		str_append_c(str, '\n');
	}
	return migrate_cmd_write_report(cmd_name, path, str);
}

/* The table on stdout and the summary; returns the exit code of the
   rows: 65 when a row failed, 75 when rows are unverified (the store is
   written: a re-run once Dovecot runs looks them up). */
static int
accounts_print(const char *name, const char *store, bool dry_run,
	       const ARRAY_TYPE(migrate_account_report) *reports)
{
	unsigned int counts[MIGRATE_ACCOUNT_RESULT_COUNT] = { 0, };
	const struct migrate_account_report *r;
	int exit_code = 0;

	doveadm_print_header_simple("user");
	doveadm_print_header_simple("line");
	doveadm_print_header_simple("result");
	doveadm_print_header_simple("reason");
	array_foreach(reports, r) {
		counts[r->result]++;
		doveadm_print(r->account->user);
		doveadm_print_num(r->account->line);
		doveadm_print(migrate_account_result_name(r->result));
		doveadm_print(r->reason == NULL ? "" : r->reason);
	}
	i_info("%s: %s%s: %u created, %u unchanged, %u updated, "
	       "%u skipped (exists with other values; --update rewrites), "
	       "%u failed (Dovecot cannot look them up), %u unverified",
	       name, store, dry_run ? " (dry run)" : "",
	       counts[MIGRATE_ACCOUNT_CREATED],
	       counts[MIGRATE_ACCOUNT_UNCHANGED],
	       counts[MIGRATE_ACCOUNT_UPDATED],
	       counts[MIGRATE_ACCOUNT_SKIPPED],
	       counts[MIGRATE_ACCOUNT_FAILED],
	       counts[MIGRATE_ACCOUNT_UNVERIFIED]);
	if (counts[MIGRATE_ACCOUNT_FAILED] > 0)
		exit_code = migrate_exit_code_merge(exit_code, EX_DATAERR);
	if (counts[MIGRATE_ACCOUNT_UNVERIFIED] > 0)
		exit_code = migrate_exit_code_merge(exit_code, EX_TEMPFAIL);
	return exit_code;
}

/* 2. the store, 3. the lookups of what it holds, then the output */
static void
accounts_apply(const char *name, const char *store, const char *sql_conf,
	       const char *driver, const char *connect,
	       const struct migrate_accounts *accounts, bool update,
	       bool dry_run, const char *json_path, const char *csv_path)
{
	ARRAY_TYPE(migrate_account_report) reports;
	const char *error, *hint;
	pool_t pool;

	pool = pool_alloconly_create("migrate accounts report", 4096);
	p_array_init(&reports, pool, array_count(&accounts->accounts));
	if ((sql_conf != NULL ?
	     migrate_accounts_sql_apply(driver, connect, accounts,
					&accounts_hasher, update, dry_run,
					pool, &reports, &error) :
	     migrate_accounts_passwd_file_apply(store, accounts,
						&accounts_hasher, update,
						dry_run, pool, &reports,
						&error)) < 0) {
		i_error("%s: %s: %s (nothing was changed)", name, store, error);
		doveadm_exit_code = EX_TEMPFAIL;
		pool_unref(&pool);
		return;
	}
	hint = sql_conf != NULL ?
		t_strdup_printf("(does the userdb read the table of %s = %s, "
				"and does auth_username_chars allow the "
				"name?)", MIGRATE_SETTING_ACCOUNTS_SQL,
				sql_conf) :
		t_strdup_printf("(does the userdb read %s = %s, and does "
				"auth_username_chars allow the name?)",
				MIGRATE_SETTING_ACCOUNTS_PASSWD_FILE, store);
	if (!dry_run &&
	    migrate_accounts_verify(&reports, hint, pool, &error) < 0) {
		i_warning("%s: %s: the accounts are written, but not looked "
			  "up (unverified); run the same template again once "
			  "Dovecot runs", name, error);
	}
	doveadm_exit_code = accounts_print(name, store, dry_run, &reports);
	if ((json_path != NULL &&
	     accounts_write_json(name, accounts, &reports, json_path) < 0) ||
	    (csv_path != NULL &&
	     accounts_write_csv(name, &reports, csv_path) < 0))
		doveadm_exit_code = EX_CANTCREAT;
	pool_unref(&pool);
}

static void cmd_migrate_accounts(struct doveadm_cmd_context *cctx)
{
	const char *name = cctx->cmd->name;
	const char *path, *store, *json_path = NULL, *csv_path = NULL;
	const char *error, *msg, *sql_conf, *driver = NULL, *connect = NULL;
	struct migrate_accounts *accounts;
	bool dry_run = FALSE, update = FALSE;

	if (!doveadm_cmd_param_str(cctx, "template", &path))
		help_ver2(cctx->cmd);
	migrate_cmd_protect_secrets(name);
	(void)doveadm_cmd_param_bool(cctx, "dry-run", &dry_run);
	(void)doveadm_cmd_param_bool(cctx, "update", &update);
	(void)doveadm_cmd_param_str(cctx, "json", &json_path);
	(void)doveadm_cmd_param_str(cctx, "csv", &csv_path);
	store = migrate_cmd_plugin_setting(MIGRATE_SETTING_ACCOUNTS_PASSWD_FILE);
	if (store == NULL)
		store = MIGRATE_DEFAULT_ACCOUNTS_PASSWD_FILE;
	sql_conf = migrate_cmd_plugin_setting(MIGRATE_SETTING_ACCOUNTS_SQL);
	if (sql_conf != NULL) {
		if (accounts_sql_conf(sql_conf, &driver, &connect,
				      &error) < 0)
			i_fatal_status(EX_CONFIG, "%s: %s: %s", name,
				       MIGRATE_SETTING_ACCOUNTS_SQL, error);
		store = t_strdup_printf("%s (%s)", sql_conf, driver);
	}
	accounts_scheme = migrate_cmd_plugin_setting(
		MIGRATE_SETTING_ACCOUNTS_SCHEME);
	if (accounts_scheme == NULL)
		accounts_scheme = MIGRATE_DEFAULT_ACCOUNTS_SCHEME;
	if (password_generate_encoded == NULL || password_verify == NULL) {
		i_fatal_status(EX_USAGE, "%s: needs the doveadm binary's "
			       "password schemes (run /usr/bin/doveadm, not "
			       "doveadm-server)", name);
	}
	password_schemes_init();
	if (strcasecmp(accounts_scheme, "ARGON2ID") != 0 &&
	    strcasecmp(accounts_scheme, "SHA512-CRYPT") != 0 &&
	    strcasecmp(accounts_scheme, "BLF-CRYPT") != 0) {
		i_fatal_status(EX_CONFIG, "%s: %s = %s: use ARGON2ID, "
			       "SHA512-CRYPT or BLF-CRYPT", name,
			       MIGRATE_SETTING_ACCOUNTS_SCHEME, accounts_scheme);
	}
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);

	/* 1. the whole file, before anything is written */
	if (migrate_accounts_read(path, MIGRATE_ZONEINFO_DIR, &accounts,
				  &error) < 0) {
		i_error("%s: %s", name, error);
		doveadm_exit_code = EX_NOINPUT;
		password_schemes_deinit();
		return;
	}
	array_foreach_elem(&accounts->notes, msg)
		i_warning("%s: %s", name, msg);
	if (array_count(&accounts->errors) > 0) {
		array_foreach_elem(&accounts->errors, msg)
			i_error("%s", msg);
		i_error("%s: %u problems in %s: nothing was created", name,
			array_count(&accounts->errors), path);
		doveadm_exit_code = EX_DATAERR;
		if ((json_path != NULL &&
		     accounts_write_invalid(name, accounts, TRUE,
					    json_path) < 0) ||
		    (csv_path != NULL &&
		     accounts_write_invalid(name, accounts, FALSE,
					    csv_path) < 0))
			doveadm_exit_code = EX_CANTCREAT;
	} else {
		accounts_apply(name, store, sql_conf, driver, connect,
			       accounts, update, dry_run, json_path, csv_path);
	}
	migrate_accounts_free(&accounts);
	password_schemes_deinit();
}

struct doveadm_cmd_ver2 doveadm_cmd_migrate_accounts = {
	.name = "migrate accounts",
	.cmd = cmd_migrate_accounts,
	.usage = "[-n] [--update] [--json <file>] [--csv <file>] <template>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('n', "dry-run", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('U', "update", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('\0', "json", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "csv", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "template", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};
