/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The outcome of "migrate batch" and "migrate check" over all accounts:
   the exit code, and the per-account JSON and CSV reports. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "migrate-csv.h"
#include "migrate-json.h"
#include "migrate-template.h"
#include "doveadm-migrate.h"
#include "doveadm-migrate-spawn.h"

int migrate_spawn_exit_code(const struct migrate_spawn *spawn)
{
	struct migrate_spawn_account *acct;
	int exit_code = 0;

	array_foreach_elem(&spawn->accounts, acct)
		exit_code = migrate_exit_code_merge(exit_code, acct->exit_code);
	return exit_code;
}

/* the counts of the reports, in their order */
static void
migrate_spawn_report_counts(const struct migrate_spawn_account *acct,
			    uint64_t counts_r[9])
{
	counts_r[0] = acct->rec.folders;
	counts_r[1] = migrate_spawn_account_copied(acct);
	counts_r[2] = acct->rec.updated;
	counts_r[3] = acct->rec.deleted;
	counts_r[4] = acct->rec.skipped;
	counts_r[5] = acct->rec.rejected;
	counts_r[6] = migrate_spawn_account_bytes(acct);
	counts_r[7] = acct->earlier_uids_changed + acct->rec.uids_changed;
	/* the last attempt's look at the order */
	counts_r[8] = acct->rec.pop3_order_differs;
}
static const char *const migrate_spawn_report_fields[] = {
	"folders", "copied", "updated", "deleted", "skipped", "rejected",
	"bytes", "uids_changed", "pop3_order_differs",
};

static int migrate_spawn_write_json(struct migrate_spawn *spawn,
				    const char *path)
{
	struct migrate_spawn_account *acct;
	string_t *str = t_str_new(1024);
	struct migrate_json json;
	uint64_t counts[N_ELEMENTS(migrate_spawn_report_fields)];
	unsigned int i;

	migrate_json_init(&json, str);
	migrate_json_object_begin(&json, NULL);
	migrate_json_string(&json, "template", spawn->tmpl->path);
	migrate_json_bool(&json, "dry_run", spawn->set.dry_run);
	migrate_json_array_begin(&json, "accounts");
	array_foreach_elem(&spawn->accounts, acct) {
		migrate_json_newline(&json);
		migrate_json_object_begin(&json, NULL);
		migrate_json_string(&json, "user", acct->user);
		migrate_json_uint(&json, "line", acct->row->line);
		migrate_json_string(&json, "source_host", acct->row->source_host);
		migrate_json_string(&json, "source_user", acct->row->source_user);
		/* where doveadm sent its command (doveadm_port), NULL: here */
		migrate_json_string(&json, "backend", acct->backend == NULL ?
				    NULL : acct->backend->name);
		migrate_json_string(&json, "status",
				    acct->exit_code == 0 ? "ok" : "failed");
		migrate_json_string(&json, "class", acct->result == NULL ?
				    "not run" : acct->result);
		migrate_json_int(&json, "exit_code", acct->exit_code);
		migrate_json_uint(&json, "attempts", acct->attempts);
		migrate_json_uint(&json, "source_retries", acct->source_retries);
		migrate_json_uint(&json, "pushbacks", acct->pushbacks);
		migrate_json_string(&json, "source_protocol",
				    acct->rec.source_protocol);
		migrate_spawn_report_counts(acct, counts);
		for (i = 0; i < N_ELEMENTS(counts); i++) {
			migrate_json_uint(&json, migrate_spawn_report_fields[i],
					  counts[i]);
		}
		migrate_json_array_begin(&json, "warnings");
		for (i = 0; acct->rec.warnings != NULL &&
			    acct->rec.warnings[i] != NULL; i++)
			migrate_json_string(&json, NULL, acct->rec.warnings[i]);
		migrate_json_array_end(&json);
		migrate_json_double(&json, "seconds", acct->secs, 3);
		migrate_json_string(&json, "reason", acct->reason);
		/* how the source was reached: no TLS or no verification is
		   in "insecure" */
		migrate_record_tls_append(&json, "tls", &acct->rec.tls);
		migrate_json_object_end(&json);
	}
	migrate_json_newline(&json);
	migrate_json_array_end(&json);
	migrate_json_uint(&json, "accounts_total",
			  array_count(&spawn->accounts));
	migrate_json_uint(&json, "accounts_failed", spawn->failed);
	migrate_json_uint(&json, "bytes", spawn->bytes);
	migrate_spawn_hosts_json(spawn, &json);
	migrate_json_object_end(&json);
	str_append_c(str, '\n');
	return migrate_cmd_write_report(spawn->cmd_name, path, str);
}

/* the CSV report's columns of the source's TLS, each after a comma */
static void migrate_spawn_csv_tls(string_t *str,
				  const struct migrate_record_tls *tls)
{
	str_append_c(str, ',');
	migrate_csv_append_field(str, tls->mode);
	str_append_c(str, ',');
	if (tls->mode != NULL)
		str_append(str, tls->verify ? "yes" : "no");
	str_append_c(str, ',');
	migrate_csv_append_field(str, tls->name);
	str_append_c(str, ',');
	migrate_csv_append_field(str, tls->insecure);
	str_append_c(str, ',');
	migrate_csv_append_field(str, tls->cert.sha256);
}

static int migrate_spawn_write_csv(struct migrate_spawn *spawn,
				   const char *path)
{
	struct migrate_spawn_account *acct;
	string_t *str = t_str_new(1024);
	uint64_t counts[N_ELEMENTS(migrate_spawn_report_fields)];
	unsigned int i;

	str_append(str, "user,line,source_host,source_user,status,class,"
		   "exit_code,attempts,source_retries,folders,copied,updated,"
		   "deleted,skipped,rejected,bytes,uids_changed,"
		   "pop3_order_differs,seconds,reason,"
		   "warnings,tls,tls_verify,tls_name,tls_insecure,cert_sha256,"
		   "source_protocol\r\n");
	array_foreach_elem(&spawn->accounts, acct) {
		migrate_csv_append_field(str, acct->user);
		str_printfa(str, ",%u,", acct->row->line);
		migrate_csv_append_field(str, acct->row->source_host);
		str_append_c(str, ',');
		migrate_csv_append_field(str, acct->row->source_user);
		str_printfa(str, ",%s,", acct->exit_code == 0 ? "ok" : "failed");
		migrate_csv_append_field(str, acct->result == NULL ?
				       "not run" : acct->result);
		str_printfa(str, ",%d,%u,%u", acct->exit_code, acct->attempts,
			    acct->source_retries);
		migrate_spawn_report_counts(acct, counts);
		for (i = 0; i < N_ELEMENTS(counts); i++)
			str_printfa(str, ",%"PRIu64, counts[i]);
		str_printfa(str, ",%.3f,", acct->secs);
		migrate_csv_append_field(str, acct->reason);
		str_append_c(str, ',');
		migrate_csv_append_field(str, acct->rec.warnings == NULL ? "" :
				       t_strarray_join(acct->rec.warnings, "; "));
		migrate_spawn_csv_tls(str, &acct->rec.tls);
		str_append_c(str, ',');
		migrate_csv_append_field(str, acct->rec.source_protocol);
		str_append(str, "\r\n");
	}
	return migrate_cmd_write_report(spawn->cmd_name, path, str);
}

int migrate_spawn_write_reports(struct migrate_spawn *spawn,
				const char *json_path, const char *csv_path)
{
	int ret = 0;

	if (json_path != NULL && migrate_spawn_write_json(spawn, json_path) < 0)
		ret = -1;
	if (csv_path != NULL && migrate_spawn_write_csv(spawn, csv_path) < 0)
		ret = -1;
	return ret;
}
