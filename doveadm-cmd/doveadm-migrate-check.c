/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* doveadm migrate check TEMPLATE: the pre-flight of a sync template.  The
   file is checked as batch checks it; then every account runs as a dry run
   of its own (doveadm-migrate-spawn.h), which logs in at the source,
   counts what the first (or next) sync would copy and reports the
   destination's quota in its result record.  An account whose mail would
   not fit is named with what it needs.  Each source's certificate, as
   the accounts' connections saw it, is shown, and with --pin kept with
   the domain (migrate-domain.h); nothing else is stored, nothing is
   copied. */

#include "lib.h"
#include "array.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "ioloop.h"
#include "migrate-template.h"
#include "migrate-tls.h"
#include "doveadm-migrate.h"
#include "doveadm-migrate-spawn.h"

#define CHECK_DEFAULT_RATE_MBPS 20

/* A source as the accounts' records show it. */
struct check_source {
	/* migrate_tls_source_key() */
	const char *key;
	/* the first record that reached it, with its certificate when one
	   was seen */
	const struct migrate_record_tls *tls;
	/* another account saw another certificate */
	const char *other_sha256;
};
ARRAY_DEFINE_TYPE(check_source, struct check_source);

struct check_context {
	pool_t pool;
	/* the copy rate the time estimate assumes, and whether the
	   domain's earlier syncs measured it */
	double rate_mbps;
	bool rate_measured;
};

/* the dry run went well: will what it counted fit? */
static void check_account_finished(struct migrate_spawn_account *acct,
				   void *context)
{
	struct check_context *ctx = context;
	const struct migrate_record *rec = &acct->rec;
	uint64_t need_kb, free_kb;

	if (acct->exit_code != 0)
		return;
	if (!rec->quota_known) {
		/* no quota plugin for this user: nothing to compare */
		acct->reason = "destination quota unknown";
		return;
	}
	if (!rec->quota_limited)
		return;
	need_kb = (migrate_spawn_account_bytes(acct) + 1023) / 1024;
	free_kb = rec->quota_limit_kb > rec->quota_used_kb ?
		rec->quota_limit_kb - rec->quota_used_kb : 0;
	if (need_kb > free_kb) {
		acct->exit_code = EX_CANTCREAT;
		acct->result = migrate_spawn_exit_class(EX_CANTCREAT);
		acct->reason = p_strdup_printf(ctx->pool,
			"will not fit: needs %.1f MB, %.1f MB free of the "
			"%.1f MB quota (%.1f MB more needed)",
			need_kb / 1024.0, free_kb / 1024.0,
			rec->quota_limit_kb / 1024.0,
			(need_kb - free_kb) / 1024.0);
	}
}

static const char *check_ok_line(const struct migrate_spawn_account *acct)
{
	return t_strdup_printf("%s: ok, %"PRIu64" messages, %.1f MB to copy"
		"%s%s", acct->user, migrate_spawn_account_copied(acct),
		migrate_spawn_account_bytes(acct) / 1e6,
		acct->reason == NULL ? "" : "; ",
		acct->reason == NULL ? "" : acct->reason);
}

static const struct migrate_spawn_vfuncs check_vfuncs = {
	.finished = check_account_finished,
	.ok_line = check_ok_line,
};

/* The rate the domain's recorded syncs reached, one account after
   another; the default when none copied anything yet. */
static void check_measured_rate(struct check_context *ctx,
				const char *domain)
{
	ARRAY_TYPE(migrate_domain_account) accounts;
	const struct migrate_domain_account *account;
	struct migrate_domain_store *store;
	uint64_t bytes = 0, msecs = 0;
	const char *error;

	ctx->rate_mbps = CHECK_DEFAULT_RATE_MBPS;
	if (migrate_cmd_domain_store_open(&store, &error) < 0)
		return;
	t_array_init(&accounts, 16);
	if (migrate_domain_accounts(store, domain, pool_datastack_create(),
				    &accounts, &error) == 0) {
		array_foreach(&accounts, account) {
			bytes += account->total_bytes;
			msecs += account->total_msecs;
		}
	}
	migrate_domain_store_close(&store);
	if (bytes >= 1000000 && msecs > 0) {
		ctx->rate_mbps = bytes / 1e6 / (msecs / 1000.0);
		ctx->rate_measured = TRUE;
	}
}

static const char *check_duration(double secs)
{
	if (secs < 120)
		return t_strdup_printf("%.0f s", secs);
	if (secs < 2 * 3600)
		return t_strdup_printf("%.0f min", secs / 60);
	return t_strdup_printf("%.1f h", secs / 3600);
}

static void check_print_table(struct migrate_spawn *spawn)
{
	static const char *const headers[] = {
		"user", "source", "result", "folders", "messages", "MB",
		"quota_free_MB", "reason",
	};
	const struct migrate_record *rec;
	struct migrate_spawn_account *acct;
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(headers); i++)
		doveadm_print_header_simple(headers[i]);
	array_foreach_elem(&spawn->accounts, acct) T_BEGIN {
		rec = &acct->rec;
		doveadm_print(acct->user);
		doveadm_print(t_strdup_printf("%s@%s", acct->row->source_user,
					      acct->row->source_host));
		doveadm_print(acct->result == NULL ? "not run" : acct->result);
		doveadm_print_num(rec->folders);
		doveadm_print_num(migrate_spawn_account_copied(acct));
		doveadm_print(t_strdup_printf("%.1f",
			migrate_spawn_account_bytes(acct) / 1e6));
		if (!rec->quota_known)
			doveadm_print("?");
		else if (!rec->quota_limited)
			doveadm_print("unlimited");
		else {
			doveadm_print(t_strdup_printf("%.1f",
				rec->quota_limit_kb < rec->quota_used_kb ? 0 :
				(rec->quota_limit_kb - rec->quota_used_kb) /
				1024.0));
		}
		doveadm_print(acct->reason == NULL ? "" : acct->reason);
	} T_END;
}

static struct check_source *
check_source_find(ARRAY_TYPE(check_source) *sources, const char *key)
{
	struct check_source *src;

	array_foreach_modifiable(sources, src) {
		if (strcmp(src->key, key) == 0)
			return src;
	}
	return NULL;
}

/* the sources of the accounts' records, one each */
static void
check_sources_collect(struct migrate_spawn *spawn,
		      ARRAY_TYPE(check_source) *sources)
{
	struct migrate_spawn_account *acct;
	const struct migrate_record_tls *tls;
	struct check_source *src;
	const char *key;

	array_foreach_elem(&spawn->accounts, acct) {
		tls = &acct->rec.tls;
		if (tls->mode == NULL || tls->host == NULL)
			continue;
		key = p_strdup(spawn->pool,
			       migrate_tls_source_key(tls->host, tls->port));
		src = check_source_find(sources, key);
		if (src == NULL) {
			src = array_append_space(sources);
			src->key = key;
			src->tls = tls;
		} else if (src->tls->cert.sha256 == NULL) {
			src->tls = tls;
		} else if (tls->cert.sha256 != NULL &&
			   strcmp(tls->cert.sha256,
				  src->tls->cert.sha256) != 0) {
			src->other_sha256 = tls->cert.sha256;
		}
	}
}

/* One line per source: its TLS and the certificate it showed. */
static void
check_source_print(const char *name, const struct check_source *src)
{
	const struct migrate_record_tls *tls = src->tls;
	const struct migrate_tls_cert *cert = &tls->cert;
	const char *how, *pin = "";

	if (strcmp(tls->mode, "no") == 0) {
		i_warning("%s: source %s: no TLS (migrate_source_ssl = no): "
			  "the password crosses the network in clear", name,
			  src->key);
		return;
	}
	how = t_strdup_printf("%s, %s%s", tls->mode,
		tls->verify ? "verified" : "NOT verified",
		tls->name == NULL ? "" : t_strconcat(" as ", tls->name, NULL));
	if (cert->sha256 == NULL) {
		i_info("%s: source %s (%s): no certificate seen", name,
		       src->key, how);
		return;
	}
	if (tls->pin != NULL) {
		pin = strcmp(tls->pin, cert->sha256) == 0 ? "; pinned" :
			t_strdup_printf("; NOT the pinned one (SHA-256 %s)",
					tls->pin);
	}
	i_info("%s: source %s (%s): certificate subject %s, issuer %s, "
	       "expires %s, SHA-256 %s%s", name, src->key, how, cert->subject,
	       cert->issuer, cert->not_after, cert->sha256, pin);
	if (src->other_sha256 != NULL) {
		i_error("%s: source %s: another account saw another "
			"certificate (SHA-256 %s)", name, src->key,
			src->other_sha256);
	}
}

/* --pin: each source's certificate, kept with the domain.  Returns the
   exit code of what could not be pinned (0: all). */
static int check_sources_pin(const char *name, const char *domain,
			     const ARRAY_TYPE(check_source) *sources)
{
	const struct check_source *src;
	struct migrate_domain_store *store;
	struct migrate_domain_pin pin;
	const char *error;
	int exit_code = 0;

	if (domain[0] == '\0') {
		i_error("%s: --pin: the template's users have no domain to "
			"keep the pins with", name);
		return EX_USAGE;
	}
	if (migrate_cmd_domain_store_open(&store, &error) < 0) {
		i_error("%s: --pin: %s", name, error);
		return EX_TEMPFAIL;
	}
	array_foreach(sources, src) {
		if (src->tls->cert.sha256 == NULL || src->other_sha256 != NULL) {
			i_error("%s: source %s: not pinned: %s", name, src->key,
				src->other_sha256 != NULL ?
				"the accounts saw different certificates" :
				"no certificate seen");
			exit_code = migrate_exit_code_merge(exit_code,
							    EX_PROTOCOL);
			continue;
		}
		i_zero(&pin);
		pin.source = src->key;
		pin.sha256 = src->tls->cert.sha256;
		pin.when = ioloop_time;
		pin.subject = src->tls->cert.subject;
		pin.not_after = src->tls->cert.not_after;
		if (migrate_domain_pin_save(store, domain, &pin, &error) < 0) {
			i_error("%s: --pin: %s", name, error);
			exit_code = migrate_exit_code_merge(exit_code,
							    EX_TEMPFAIL);
			continue;
		}
		i_info("%s: source %s: pinned SHA-256 %s for %s: from now on "
		       "any other certificate is refused", name, src->key,
		       pin.sha256, domain);
	}
	migrate_domain_store_close(&store);
	return exit_code;
}

/* Each source's certificate; with --pin, pinned. */
static int check_sources(struct migrate_spawn *spawn, bool pin)
{
	ARRAY_TYPE(check_source) sources;
	const struct check_source *src;

	t_array_init(&sources, 4);
	check_sources_collect(spawn, &sources);
	array_foreach(&sources, src)
		check_source_print(spawn->cmd_name, src);
	if (!pin)
		return 0;
	array_foreach(&sources, src) {
		if (strcmp(src->tls->mode, "no") == 0) {
			i_error("%s: source %s: not pinned: read without TLS",
				spawn->cmd_name, src->key);
			return EX_PROTOCOL;
		}
	}
	return check_sources_pin(spawn->cmd_name, spawn->tmpl->dest_domain,
				 &sources);
}

static void cmd_migrate_check(struct doveadm_cmd_context *cctx)
{
	const char *name = cctx->cmd->name;
	struct migrate_spawn_settings set;
	struct check_context ctx;
	struct migrate_spawn *spawn;
	const char *path, *json_path, *csv_path;
	unsigned int total;
	int64_t num;
	int exit_code, pin_exit_code;
	bool pin = FALSE;

	if (!doveadm_cmd_param_str(cctx, "template", &path))
		help_ver2(cctx->cmd);
	(void)doveadm_cmd_param_bool(cctx, "pin", &pin);
	migrate_cmd_protect_secrets(name);
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	i_zero(&ctx);
	if (migrate_cmd_param_int64(cctx, "rate", &num)) {
		if (num < 1)
			i_fatal_status(EX_USAGE, "%s: --rate must be at least "
				       "1 MB/s", name);
		ctx.rate_mbps = num;
	}
	i_zero(&set);
	migrate_spawn_params(cctx, name, &set, &json_path, &csv_path);
	set.preflight = TRUE;
	/* a check reports a temporary failure at once */
	set.retries = 0;
	spawn = migrate_spawn_init(name, &set, &check_vfuncs, &ctx);
	ctx.pool = spawn->pool;

	exit_code = migrate_spawn_read_template(spawn, path);
	if (exit_code != 0) {
		doveadm_exit_code = exit_code;
		migrate_spawn_deinit(&spawn);
		return;
	}
	migrate_spawn_run(spawn);

	check_print_table(spawn);
	exit_code = migrate_spawn_exit_code(spawn);
	T_BEGIN {
		pin_exit_code = check_sources(spawn, pin);
	} T_END;
	exit_code = migrate_exit_code_merge(exit_code, pin_exit_code);
	if (migrate_spawn_write_reports(spawn, json_path, csv_path) < 0 &&
	    exit_code == 0)
		exit_code = EX_CANTCREAT;
	if (ctx.rate_mbps == 0)
		check_measured_rate(&ctx, spawn->tmpl->dest_domain);
	total = array_count(&spawn->accounts);
	i_info("%s: %s: %u accounts, %u ok, %u failing; %"PRIu64" messages, "
	       "%.2f GB to copy; about %s at %.1f MB/s%s", name, path, total,
	       total - spawn->failed, spawn->failed, spawn->messages,
	       spawn->bytes / 1e9,
	       check_duration(spawn->bytes / 1e6 / ctx.rate_mbps),
	       ctx.rate_mbps, ctx.rate_measured ?
	       " (measured by this domain's syncs so far)" :
	       " (assumed: no sync measured yet; see --rate)");
	doveadm_exit_code = exit_code;
	migrate_spawn_deinit(&spawn);
}

struct doveadm_cmd_ver2 doveadm_cmd_migrate_check = {
	.name = "migrate check",
	.cmd = cmd_migrate_check,
	.usage = "[-j <jobs>] [--max-connections-per-host <n>] [--rate <MB/s>] [--pin] [--json <file>] "
		 "[--csv <file>] <template>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "rate", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "pin", CMD_PARAM_BOOL, 0)
MIGRATE_SPAWN_PARAMS
DOVEADM_CMD_PARAMS_END
};
