/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "strnum.h"
#include "module-dir.h"
#include "sql-api.h"
#include "migrate-accounts.h"
#include "doveadm-migrate.h"

/* The SQL store of doveadm migrate accounts, through Dovecot's lib-sql
   (the driver module of the auth process, e.g. driver_pgsql), into the
   table of conf.d/dovecot-migrate-accounts.sql that the queries of
   conf.d/dovecot-migrate-accounts-sql.conf.ext read. */

struct accounts_sql_row {
	struct migrate_account_stored stored;
};

struct accounts_sql_lookup {
	HASH_TABLE(const char *, struct accounts_sql_row *) rows;
};

static struct module *accounts_sql_modules;

static const struct migrate_account_stored *
accounts_sql_lookup(const char *user, void *context)
{
	struct accounts_sql_lookup *ctx = context;
	struct accounts_sql_row *row;

	row = hash_table_lookup(ctx->rows, user);
	return row == NULL ? NULL : &row->stored;
}

/* The domain's rows, as the lookup of migrate_accounts_plan() wants
   them. */
static int
accounts_sql_read(struct sql_db *db, const char *domain, pool_t pool,
		  struct accounts_sql_lookup *lookup, const char **error_r)
{
	struct migrate_account acc;
	struct accounts_sql_row *row;
	struct sql_statement *stmt;
	struct sql_result *result;
	unsigned int type;
	int ret;

	stmt = sql_statement_init(db, "SELECT username, password, quota_mib, "
		"account_type, full_name, language, time_zone, date_format "
		"FROM migrate_accounts WHERE domain = ?");
	sql_statement_bind_str(stmt, 0, domain);
	result = sql_statement_query_s(&stmt);
	while ((ret = sql_result_next_row(result)) > 0) {
		i_zero(&acc);
		acc.user = p_strdup(pool, sql_result_get_field_value(result, 0));
		if (str_to_uint64(sql_result_get_field_value(result, 2),
				  &acc.quota_mib) < 0 ||
		    str_to_uint(sql_result_get_field_value(result, 3),
				&type) < 0) {
			*error_r = t_strdup_printf("Invalid row for %s",
						   acc.user);
			sql_result_unref(result);
			return -1;
		}
		acc.type = type;
		acc.full_name = sql_result_get_field_value(result, 4);
		acc.language = sql_result_get_field_value(result, 5);
		acc.time_zone = sql_result_get_field_value(result, 6);
		acc.date_format = sql_result_get_field_value(result, 7);
		if (acc.date_format == NULL)
			acc.date_format = "";
		row = p_new(pool, struct accounts_sql_row, 1);
		row->stored.password = p_strdup(pool,
			sql_result_get_field_value(result, 1));
		row->stored.tail = p_strdup(pool, migrate_account_tail(&acc));
		hash_table_update(lookup->rows, acc.user, row);
	}
	if (ret < 0) {
		*error_r = t_strdup_printf("SELECT failed: %s",
					   sql_result_get_error(result));
		sql_result_unref(result);
		return -1;
	}
	sql_result_unref(result);
	return 0;
}

/* A statement of the account's row: bound values, never SQL text of
   ours (the driver quotes them, or the database binds them). */
static void
accounts_sql_write(struct sql_db *db, struct sql_transaction_context *trans,
		   const struct migrate_account_report *report)
{
	const struct migrate_account *acc = report->account;
	struct sql_statement *stmt;

	if (report->result != MIGRATE_ACCOUNT_CREATED) {
		/* updated: the row is written anew */
		stmt = sql_statement_init(db,
			"DELETE FROM migrate_accounts WHERE username = ?");
		sql_statement_bind_str(stmt, 0, acc->user);
		sql_update_stmt(trans, &stmt);
	}
	stmt = sql_statement_init(db, "INSERT INTO migrate_accounts "
		"(username, password, domain, quota_mib, account_type, "
		"full_name, language, time_zone, date_format) "
		"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
	sql_statement_bind_str(stmt, 0, acc->user);
	sql_statement_bind_str(stmt, 1, report->stored_password);
	sql_statement_bind_str(stmt, 2, strchr(acc->user, '@') + 1);
	sql_statement_bind_int64(stmt, 3, (int64_t)acc->quota_mib);
	sql_statement_bind_int64(stmt, 4, acc->type);
	sql_statement_bind_str(stmt, 5, acc->full_name);
	sql_statement_bind_str(stmt, 6, acc->language);
	sql_statement_bind_str(stmt, 7, acc->time_zone);
	sql_statement_bind_str(stmt, 8, acc->date_format);
	sql_update_stmt(trans, &stmt);
}

int migrate_accounts_sql_apply(const char *driver, const char *connect,
			       const struct migrate_accounts *accounts,
			       const struct migrate_accounts_hasher *hasher,
			       bool update, bool dry_run, pool_t pool,
			       ARRAY_TYPE(migrate_account_report) *reports,
			       const char **error_r)
{
	struct module_dir_load_settings mod_set = {
		.abi_version = DOVECOT_ABI_VERSION,
		.require_init_funcs = TRUE,
	};
	struct sql_settings set = {
		.driver = driver,
		.connect_string = connect,
	};
	struct accounts_sql_lookup lookup;
	const struct migrate_account_report *report;
	struct sql_transaction_context *trans;
	struct sql_db *db;
	bool changed = FALSE;
	int ret = 0;

	sql_drivers_init();
	sql_drivers_register_all();
	accounts_sql_modules = module_dir_load_missing(accounts_sql_modules,
		MIGRATE_MODULEDIR, t_strconcat("driver_", driver, NULL),
		&mod_set);
	module_dir_init(accounts_sql_modules);
	if (sql_init_full(&set, &db, error_r) < 0)
		return -1;
	if (sql_connect(db) < 0) {
		*error_r = "Connecting failed";
		sql_unref(&db);
		return -1;
	}

	i_zero(&lookup);
	hash_table_create(&lookup.rows, pool, 0, str_hash, strcmp);
	if (accounts_sql_read(db, accounts->domain, pool, &lookup,
			      error_r) < 0 ||
	    migrate_accounts_plan(accounts, accounts_sql_lookup, &lookup,
				  hasher, update, dry_run, pool, reports,
				  error_r) < 0) {
		ret = -1;
	} else if (!dry_run) {
		/* one transaction: all rows or none */
		trans = sql_transaction_begin(db);
		array_foreach(reports, report) {
			if (report->stored_password == NULL)
				continue;
			changed = TRUE;
			accounts_sql_write(db, trans, report);
		}
		if (!changed)
			sql_transaction_rollback(&trans);
		else if (sql_transaction_commit_s(&trans, error_r) < 0)
			ret = -1;
	}
	hash_table_destroy(&lookup.rows);
	sql_unref(&db);
	return ret;
}
