/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* doveadm migrate batch TEMPLATE: the whole sync template.  The file is
   checked first (every problem with its line and column, then the
   destination users against the userdb); nothing moves unless all of it
   is valid.  The source credentials go to the root-only credential store
   for later "doveadm migrate -u USER" runs.  Then every account runs as its
   own "doveadm migrate -u USER" child process, -j at a time, with the
   credentials on its stdin (never in argv, the environment or a file it
   could leak); temporary failures are retried with backoff
   (doveadm-migrate-spawn.h).  At the end: a table, and JSON/CSV reports
   on request; each account's outcome is recorded for "doveadm migrate
   domain status". */

#include "lib.h"
#include "hostpid.h"
#include "array.h"
#include "hash.h"
#include "ioloop.h"
#include "master-service.h"
#include "master-service-settings.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "migrate-template.h"
#include "migrate-credentials.h"
#include "doveadm-migrate.h"
#include "doveadm-migrate-spawn.h"

#define BATCH_DEFAULT_RETRIES 3
#define BATCH_DEFAULT_RETRY_DELAY_SECS 30

struct batch_context {
	const char *cmd_name;
	/* where each account's last result is recorded for
	   "doveadm migrate domain status" (NULL: not recorded) */
	struct migrate_domain_store *domain_store;
	/* the records found there before this run: user -> record */
	HASH_TABLE(const char *, struct migrate_domain_account *) recorded;
};

static void batch_load_recorded(struct batch_context *bctx, pool_t pool,
				const char *domain)
{
	ARRAY_TYPE(migrate_domain_account) accounts;
	struct migrate_domain_account *account;
	const char *error;

	p_array_init(&accounts, pool, 16);
	if (migrate_domain_accounts(bctx->domain_store, domain, pool,
				    &accounts, &error) < 0) {
		i_warning("%s: %s", bctx->cmd_name, error);
		return;
	}
	hash_table_create(&bctx->recorded, pool, 0, str_hash, strcmp);
	array_foreach_modifiable(&accounts, account)
		hash_table_update(bctx->recorded, account->user, account);
}

/* the account's outcome, for "doveadm migrate domain status" */
static void batch_account_finished(struct migrate_spawn_account *acct,
				   void *context)
{
	struct batch_context *bctx = context;
	struct migrate_domain_account account;
	const struct migrate_domain_account *prev;
	const char *error;

	if (bctx->domain_store == NULL)
		return;
	i_zero(&account);
	account.user = acct->user;
	account.when = ioloop_time;
	account.result = acct->result;
	account.exit_code = acct->exit_code;
	account.copied = migrate_spawn_account_copied(acct);
	account.bytes = migrate_spawn_account_bytes(acct);
	account.msecs = (unsigned int)(acct->secs * 1000);
	account.reason = acct->reason;
	account.node = acct->backend != NULL ? acct->backend->name :
		my_hostname;
	if (hash_table_is_created(bctx->recorded)) {
		prev = hash_table_lookup(bctx->recorded, acct->user);
		if (prev != NULL) {
			account.total_bytes = prev->total_bytes;
			account.total_msecs = prev->total_msecs;
		}
	}
	if (acct->exit_code == 0 && account.bytes > 0) {
		account.total_bytes += account.bytes;
		account.total_msecs += account.msecs;
	}
	if (migrate_domain_account_save(bctx->domain_store,
					migrate_user_domain(acct->user),
					&account, &error) < 0) {
		i_warning("%s: %s: Not recorded for domain status: %s",
			  bctx->cmd_name, acct->user, error);
	}
}

static const char *batch_ok_line(const struct migrate_spawn_account *acct)
{
	return t_strdup_printf("%s: ok, %"PRIu64" copied, %"PRIu64
		" updated, %"PRIu64" deleted, %.1f MB in %.1f s", acct->user,
		migrate_spawn_account_copied(acct), acct->rec.updated,
		acct->rec.deleted, migrate_spawn_account_bytes(acct) / 1e6,
		acct->secs);
}

static void batch_ioloop_switched(void *context)
{
	struct batch_context *bctx = context;

	if (bctx->domain_store != NULL)
		migrate_domain_store_switch_ioloop(bctx->domain_store);
}

static const struct migrate_spawn_vfuncs batch_vfuncs = {
	.finished = batch_account_finished,
	.ok_line = batch_ok_line,
	.ioloop_switched = batch_ioloop_switched,
};

static void batch_print_table(struct migrate_spawn *spawn)
{
	static const char *const headers[] = {
		"user", "source", "result", "attempts", "folders", "copied",
		"updated", "deleted", "bytes", "seconds", "reason",
	};
	struct migrate_spawn_account *acct;
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(headers); i++)
		doveadm_print_header_simple(headers[i]);
	array_foreach_elem(&spawn->accounts, acct) T_BEGIN {
		doveadm_print(acct->user);
		doveadm_print(t_strdup_printf("%s@%s", acct->row->source_user,
					      acct->row->source_host));
		doveadm_print(acct->result == NULL ? "not run" : acct->result);
		doveadm_print_num(acct->attempts);
		doveadm_print_num(acct->rec.folders);
		doveadm_print_num(migrate_spawn_account_copied(acct));
		doveadm_print_num(acct->rec.updated);
		doveadm_print_num(acct->rec.deleted);
		doveadm_print_num(migrate_spawn_account_bytes(acct));
		doveadm_print(t_strdup_printf("%.1f", acct->secs));
		doveadm_print(acct->reason == NULL ? "" : acct->reason);
	} T_END;
}

/* The template's domain, before anything is stored: a finished one is
   refused (its credentials were deleted on purpose), and a phase that
   cannot be read is a temporary failure.  The store stays open to
   record the results, unless this is a dry run.  Returns the exit code. */
static int batch_open_domain(struct batch_context *bctx,
			     struct migrate_spawn *spawn)
{
	const char *domain_name = spawn->tmpl->dest_domain;
	struct migrate_domain domain;
	const char *error;
	int ret;

	if (migrate_cmd_domain_store_open(&bctx->domain_store, &error) < 0 ||
	    (ret = migrate_domain_lookup(bctx->domain_store, domain_name,
					 spawn->pool, &domain, &error)) < 0) {
		i_error("%s: %s: Cannot read the domain's phase: %s",
			spawn->cmd_name, domain_name, error);
		migrate_domain_store_close(&bctx->domain_store);
		return EX_TEMPFAIL;
	}
	if (ret > 0 && domain.phase == MIGRATE_DOMAIN_FINISHED) {
		i_error("%s: %s is finished (since %s): its accounts are not "
			"synced and no credentials are stored; "
			"\"doveadm migrate domain start --force\" migrates it "
			"again", spawn->cmd_name, domain_name,
			migrate_domain_time_str(domain.finished));
		migrate_domain_store_close(&bctx->domain_store);
		return EX_CONFIG;
	}
	if (ret > 0 && domain.max_conns_per_host != 0 &&
	    !spawn->set.max_conns_given) {
		/* domain start --max-connections-per-host */
		migrate_spawn_hosts_set_limit(spawn,
					      domain.max_conns_per_host);
	}
	if (spawn->set.dry_run)
		migrate_domain_store_close(&bctx->domain_store);
	else
		batch_load_recorded(bctx, spawn->pool, domain_name);
	return 0;
}

/* the template's source accounts, for later runs of single accounts */
static int batch_store_credentials(struct migrate_spawn *spawn)
{
	const struct master_service_settings *mset =
		master_service_settings_get(master_service);
	const char *dir = migrate_credentials_dir(mset->state_dir);
	struct migrate_spawn_account *acct;
	struct migrate_credentials cred;
	const char *error;

	array_foreach_elem(&spawn->accounts, acct) {
		migrate_spawn_row_credentials(acct->row, &cred);
		if (migrate_credentials_write(dir, acct->user, &cred,
					      &error) < 0) {
			i_error("%s: Credential store: %s", spawn->cmd_name,
				error);
			return -1;
		}
	}
	return 0;
}

static void batch_params(struct doveadm_cmd_context *cctx, const char *name,
			 struct migrate_spawn_settings *set)
{
	int64_t num;

	(void)doveadm_cmd_param_bool(cctx, "dry-run", &set->dry_run);
	set->retries = BATCH_DEFAULT_RETRIES;
	if (migrate_cmd_param_int64(cctx, "retries", &num)) {
		if (num < 0 || num > 20)
			i_fatal_status(EX_USAGE, "%s: --retries must be 0..20",
				       name);
		set->retries = num;
	}
	set->retry_delay_secs = BATCH_DEFAULT_RETRY_DELAY_SECS;
	if (migrate_cmd_param_int64(cctx, "retry-delay", &num)) {
		if (num < 0 || num > 3600)
			i_fatal_status(EX_USAGE, "%s: --retry-delay must be "
				       "0..3600 seconds", name);
		set->retry_delay_secs = num;
	}
}

static void cmd_migrate_batch(struct doveadm_cmd_context *cctx)
{
	const char *name = cctx->cmd->name;
	struct migrate_spawn_settings set;
	struct batch_context bctx;
	struct migrate_spawn *spawn;
	const char *path, *json_path, *csv_path;
	int exit_code;

	if (!doveadm_cmd_param_str(cctx, "template", &path))
		help_ver2(cctx->cmd);
	migrate_cmd_protect_secrets(name);
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	i_zero(&set);
	migrate_spawn_params(cctx, name, &set, &json_path, &csv_path);
	batch_params(cctx, name, &set);
	i_zero(&bctx);
	bctx.cmd_name = name;
	spawn = migrate_spawn_init(name, &set, &batch_vfuncs, &bctx);

	exit_code = migrate_spawn_read_template(spawn, path);
	if (exit_code == 0)
		exit_code = batch_open_domain(&bctx, spawn);
	if (exit_code == 0 && !set.dry_run &&
	    batch_store_credentials(spawn) < 0)
		exit_code = EX_TEMPFAIL;
	if (exit_code == 0)
		migrate_spawn_choose_jobs(spawn);
	if (exit_code != 0) {
		migrate_domain_store_close(&bctx.domain_store);
		if (hash_table_is_created(bctx.recorded))
			hash_table_destroy(&bctx.recorded);
		doveadm_exit_code = exit_code;
		migrate_spawn_deinit(&spawn);
		return;
	}
	migrate_spawn_run(spawn);
	migrate_domain_store_close(&bctx.domain_store);
	if (hash_table_is_created(bctx.recorded))
		hash_table_destroy(&bctx.recorded);

	batch_print_table(spawn);
	exit_code = migrate_spawn_exit_code(spawn);
	if (migrate_spawn_write_reports(spawn, json_path, csv_path) < 0 &&
	    exit_code == 0)
		exit_code = EX_CANTCREAT;
	i_info("%s: %s: %u accounts, %u ok, %u failed, %.1f MB", name, path,
	       array_count(&spawn->accounts),
	       array_count(&spawn->accounts) - spawn->failed, spawn->failed,
	       spawn->bytes / 1e6);
	doveadm_exit_code = exit_code;
	migrate_spawn_deinit(&spawn);
}

struct doveadm_cmd_ver2 doveadm_cmd_migrate_batch = {
	.name = "migrate batch",
	.cmd = cmd_migrate_batch,
	.usage = "[-n] [-j <jobs>] [--max-connections-per-host <n>] [--retries <n>] [--retry-delay <secs>] "
		 "[--json <file>] [--csv <file>] <template>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('n', "dry-run", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('\0', "retries", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "retry-delay", CMD_PARAM_STR, 0)
MIGRATE_SPAWN_PARAMS
DOVEADM_CMD_PARAMS_END
};
