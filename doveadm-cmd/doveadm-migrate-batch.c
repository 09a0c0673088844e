/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* doveadm migrate batch TEMPLATE: the whole sync template.  The file is
   checked first (every problem with its line and column, then the
   destination users against the userdb); nothing moves unless all of it
   is valid.  The source credentials go to the root-only credential store
   for later "doveadm migrate -u USER" runs.  Then every account runs as its
   own "doveadm migrate -u USER" child process, -j at a time, with the
   credentials on its stdin (never in argv, the environment or a file it
   could leak); temporary failures are retried with backoff.  At the end:
   a table, and JSON/CSV reports on request. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "hash.h"
#include "ioloop.h"
#include "fd-util.h"
#include "time-util.h"
#include "strescape.h"
#include "write-full.h"
#include "safe-memset.h"
#include "child-wait.h"
#include "json-parser.h"
#include "auth-master.h"
#include "master-service.h"
#include "master-service-settings.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "migrate-source.h"
#include "migrate-template.h"
#include "migrate-credentials.h"
#include "doveadm-migrate.h"

#include <stdio.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/wait.h>

#define BATCH_DEFAULT_RETRIES 3
#define BATCH_DEFAULT_RETRY_DELAY_SECS 30
#define BATCH_MAX_JOBS 64
#define BATCH_DEFAULT_RATE_MBPS 20
/* what is kept of a child's stderr for the reason of a failure */
#define BATCH_ERR_TAIL_MAX 4096
#define BATCH_OUT_MAX (64*1024)

enum batch_state {
	BATCH_PENDING,
	BATCH_RUNNING,
	BATCH_RETRY_WAIT,
	/* check: the next step is due */
	BATCH_NEXT_STEP,
	BATCH_DONE,
};

struct batch_ctx;

struct batch_account {
	struct batch_ctx *ctx;
	const struct migrate_template_row *row;
	/* as the userdb spells it */
	const char *user;
	enum batch_state state;
	unsigned int attempts;
	/* the children's own retries (after a lost source), all attempts */
	unsigned int source_retries;
	/* what the earlier attempts copied (a later one goes on from it) */
	uint64_t earlier_copied, earlier_bytes;

	pid_t pid;
	int fd_out, fd_err;
	struct io *io_out, *io_err;
	string_t *out, *err;
	bool exited;
	int wait_status;
	struct timeout *to_retry;
	struct timeval start, retry_at;

	/* the outcome */
	int exit_code;
	const char *result, *reason;
	/* the child's summary row: header name -> value */
	const char *const *out_header, *const *out_row;
	double secs;

	/* what the child warned about */
	const char *const *warnings;
	/* check: 0 = the dry-run sync, 1 = doveadm quota get */
	unsigned int step;
	bool quota_known, quota_limited;
	uint64_t quota_used_kb, quota_limit_kb;
};

struct batch_ctx {
	pool_t pool;
	struct ioloop *ioloop;
	struct migrate_template *tmpl;
	ARRAY(struct batch_account *) accounts;
	struct child_wait *child_wait;

	const char *doveadm_path;
	/* "migrate batch" or "migrate check" */
	const char *name;
	unsigned int jobs, retries, retry_delay_secs;
	/* check: the copy rate the time estimate assumes, and whether it
	   was measured by the domain's earlier syncs */
	double rate_mbps;
	bool rate_measured;
	bool dry_run, check, tty;
	uint64_t messages;

	unsigned int next, running, done, failed;
	uint64_t bytes;
	struct timeval start;
	struct timeout *to_progress;
	bool progress_printed;
	/* where each account's last result is recorded for
	   "doveadm migrate domain status" (NULL: not recorded) */
	struct migrate_domain_store *domain_store;
	/* the records found there before this run: user -> record */
	HASH_TABLE(const char *, struct migrate_domain_account *) recorded;
};

/* "migrate batch" or "migrate check", for messages */
static const char *batch_cmd_name = "migrate batch";

static void batch_fill(struct batch_ctx *ctx);

static const char *batch_field(const struct batch_account *acct,
			       const char *name)
{
	unsigned int i;

	if (acct->out_header == NULL || acct->out_row == NULL)
		return NULL;
	for (i = 0; acct->out_header[i] != NULL; i++) {
		if (strcmp(acct->out_header[i], name) == 0)
			return str_array_length(acct->out_row) > i ?
				acct->out_row[i] : NULL;
	}
	return NULL;
}

static uint64_t batch_field_num(const struct batch_account *acct,
				const char *name)
{
	const char *value = batch_field(acct, name);
	uint64_t num;

	if (value == NULL || str_to_uint64(value, &num) < 0)
		return 0;
	return num;
}

/* A count of the whole account: what the earlier attempts copied is added
   to the last one's. */
static uint64_t batch_account_num(const struct batch_account *acct,
				  const char *name)
{
	uint64_t num = batch_field_num(acct, name);

	if (strcmp(name, "copied") == 0)
		num += acct->earlier_copied;
	else if (strcmp(name, "bytes") == 0)
		num += acct->earlier_bytes;
	return num;
}

/* What the operator should read for an exit code. */
static const char *batch_exit_class(int exit_code)
{
	switch (exit_code) {
	case 0:
		return "ok";
	case EX_DATAERR:
		return "delete limit";
	case EX_CANTCREAT:
		return "over quota";
	case EX_TEMPFAIL:
		return "temporary failure";
	case EX_PROTOCOL:
		return "TLS failure";
	case EX_NOPERM:
		return "login refused";
	case EX_CONFIG:
		return "configuration";
	case EX_NOUSER:
		return "unknown user";
	default:
		return "failed";
	}
}

/* Higher is more serious; a temporary failure is the least serious. */
static int batch_exit_severity(int exit_code)
{
	switch (exit_code) {
	case 0:
		return 0;
	case EX_TEMPFAIL:
		return 1;
	case EX_DATAERR:
		return 2;
	case EX_CANTCREAT:
		return 3;
	case EX_PROTOCOL:
		return 4;
	case EX_NOPERM:
		return 5;
	case EX_NOUSER:
		return 6;
	case EX_CONFIG:
		return 7;
	default:
		return 8;
	}
}

/* A child's log line without its log prefix, or NULL when it is not of
   the given level ("Error: ", "Warning: "...). */
static const char *
batch_log_text(const struct batch_account *acct, const char *line,
	       const char *level)
{
	const char *p = strstr(line, level);

	if (p == NULL)
		return NULL;
	p += strlen(level);
	if (str_begins(p, "migrate: "))
		p += 9;
	if (str_begins(p, acct->user) &&
	    str_begins(p + strlen(acct->user), ": "))
		p += strlen(acct->user) + 2;
	return p;
}

/* The last error the child logged. */
static const char *batch_reason(const struct batch_account *acct)
{
	const char *const *lines, *text;
	unsigned int i;

	lines = t_strsplit(str_c(acct->err), "\n");
	for (i = str_array_length(lines); i > 0; i--) {
		if ((text = batch_log_text(acct, lines[i - 1], "Error: ")) != NULL ||
		    (text = batch_log_text(acct, lines[i - 1], "Fatal: ")) != NULL)
			return text;
	}
	return NULL;
}

/* The warnings the child logged (the last BATCH_ERR_TAIL_MAX bytes). */
static const char *const *batch_warnings(struct batch_account *acct)
{
	ARRAY_TYPE(const_string) warnings;
	const char *const *lines, *text;
	unsigned int i;

	p_array_init(&warnings, acct->ctx->pool, 4);
	lines = t_strsplit(str_c(acct->err), "\n");
	for (i = 0; lines[i] != NULL; i++) {
		text = batch_log_text(acct, lines[i], "Warning: ");
		if (text != NULL) {
			text = p_strdup(acct->ctx->pool, text);
			array_push_back(&warnings, &text);
		}
	}
	array_append_zero(&warnings);
	return array_front(&warnings);
}

static void batch_progress(struct batch_ctx *ctx, bool final)
{
	struct timeval now;
	long long msecs;
	unsigned int total = array_count(&ctx->accounts);
	double mb = ctx->bytes / 1e6;
	double rate;
	const char *eta = "?";

	i_gettimeofday(&now);
	msecs = timeval_diff_msecs(&now, &ctx->start);
	rate = msecs <= 0 ? 0 : mb / (msecs / 1000.0);
	if (ctx->done > 0 && ctx->done < total) {
		eta = t_strdup_printf("%llds", (long long)
			(msecs / 1000.0 / ctx->done * (total - ctx->done)));
	}
	fprintf(stderr, "\r\033[K%s: %u/%u accounts done, %u running, "
		"%u failed, %.1f MB, %.1f MB/s, ETA %s%s", batch_cmd_name,
		ctx->done, total,
		ctx->running, ctx->failed, mb, rate, eta, final ? "\n" : "");
	fflush(stderr);
	ctx->progress_printed = !final;
}

static void batch_progress_timeout(struct batch_ctx *ctx)
{
	batch_progress(ctx, FALSE);
}

static void batch_log_account(struct batch_account *acct)
{
	struct batch_ctx *ctx = acct->ctx;
	const char *line;

	if (acct->exit_code == 0 && ctx->check) {
		line = t_strdup_printf("%s: ok, %"PRIu64" messages, %.1f MB "
			"to copy%s%s", acct->user,
			batch_account_num(acct, "copied"),
			batch_account_num(acct, "bytes") / 1e6,
			acct->reason == NULL ? "" : "; ",
			acct->reason == NULL ? "" : acct->reason);
	} else if (acct->exit_code == 0) {
		line = t_strdup_printf("%s: ok, %"PRIu64" copied, %"PRIu64
			" updated, %"PRIu64" deleted, %.1f MB in %.1f s",
			acct->user, batch_account_num(acct, "copied"),
			batch_field_num(acct, "updated"),
			batch_field_num(acct, "deleted"),
			batch_account_num(acct, "bytes") / 1e6, acct->secs);
	} else {
		line = t_strdup_printf("%s: %s (exit %d, %u attempt%s)%s%s",
			acct->user, acct->result, acct->exit_code,
			acct->attempts, acct->attempts == 1 ? "" : "s",
			acct->reason == NULL ? "" : ": ",
			acct->reason == NULL ? "" : acct->reason);
	}
	if (ctx->progress_printed)
		fprintf(stderr, "\r\033[K");
	if (acct->exit_code == 0)
		i_info("%s: %s", batch_cmd_name, line);
	else
		i_error("%s: %s", batch_cmd_name, line);
}

static void batch_load_recorded(struct batch_ctx *ctx)
{
	ARRAY_TYPE(migrate_domain_account) accounts;
	struct migrate_domain_account *account;
	const char *error;

	p_array_init(&accounts, ctx->pool, 16);
	if (migrate_domain_accounts(ctx->domain_store, ctx->tmpl->dest_domain,
				    ctx->pool, &accounts, &error) < 0) {
		i_warning("%s: %s", batch_cmd_name, error);
		return;
	}
	hash_table_create(&ctx->recorded, ctx->pool, 0, str_hash, strcmp);
	array_foreach_modifiable(&accounts, account)
		hash_table_update(ctx->recorded, account->user, account);
}

static void batch_record_account(struct batch_account *acct)
{
	struct batch_ctx *ctx = acct->ctx;
	struct migrate_domain_account account;
	const char *error;

	i_zero(&account);
	account.user = acct->user;
	account.when = ioloop_time;
	account.result = acct->result;
	account.exit_code = acct->exit_code;
	account.copied = batch_account_num(acct, "copied");
	account.bytes = batch_account_num(acct, "bytes");
	account.msecs = (unsigned int)(acct->secs * 1000);
	account.reason = acct->reason;
	if (hash_table_is_created(ctx->recorded)) {
		const struct migrate_domain_account *prev =
			hash_table_lookup(ctx->recorded, acct->user);

		if (prev != NULL) {
			account.total_bytes = prev->total_bytes;
			account.total_msecs = prev->total_msecs;
		}
	}
	if (acct->exit_code == 0 && account.bytes > 0) {
		account.total_bytes += account.bytes;
		account.total_msecs += account.msecs;
	}
	if (migrate_domain_account_save(ctx->domain_store,
					migrate_user_domain(acct->user),
					&account, &error) < 0) {
		i_warning("%s: %s: Not recorded for domain status: %s",
			  batch_cmd_name, acct->user, error);
	}
}

static void batch_account_done(struct batch_account *acct)
{
	struct batch_ctx *ctx = acct->ctx;

	acct->state = BATCH_DONE;
	ctx->done++;
	if (acct->exit_code != 0)
		ctx->failed++;
	ctx->bytes += batch_account_num(acct, "bytes");
	ctx->messages += batch_account_num(acct, "copied");
	batch_log_account(acct);
	if (ctx->domain_store != NULL)
		batch_record_account(acct);
}

/* "doveadm quota get" finished: will what the dry run counted fit? */
static void batch_check_quota_finish(struct batch_account *acct,
				     int exit_code)
{
	const char *const *lines, *const *fields;
	uint64_t need_kb, free_kb;
	unsigned int i;

	lines = t_strsplit(str_c(acct->out), "\n");
	for (i = 0; exit_code == 0 && lines[i] != NULL; i++) {
		fields = t_strsplit_tabescaped(lines[i]);
		if (str_array_length(fields) < 4 ||
		    strcmp(fields[1], "STORAGE") != 0)
			continue;
		if (str_to_uint64(fields[2], &acct->quota_used_kb) < 0)
			continue;
		acct->quota_known = TRUE;
		acct->quota_limited =
			str_to_uint64(fields[3], &acct->quota_limit_kb) == 0;
		break;
	}
	if (!acct->quota_known) {
		/* no quota plugin for this user: nothing to compare */
		acct->reason = "destination quota unknown";
	} else if (acct->quota_limited) {
		need_kb = (batch_account_num(acct, "bytes") + 1023) / 1024;
		free_kb = acct->quota_limit_kb > acct->quota_used_kb ?
			acct->quota_limit_kb - acct->quota_used_kb : 0;
		if (need_kb > free_kb) {
			acct->exit_code = EX_CANTCREAT;
			acct->result = batch_exit_class(EX_CANTCREAT);
			acct->reason = p_strdup_printf(acct->ctx->pool,
				"will not fit: needs %.1f MB, %.1f MB free of "
				"the %.1f MB quota (%.1f MB more needed)",
				need_kb / 1024.0, free_kb / 1024.0,
				acct->quota_limit_kb / 1024.0,
				(need_kb - free_kb) / 1024.0);
		}
	}
	batch_account_done(acct);
}

static void batch_retry_timeout(struct batch_account *acct)
{
	timeout_remove(&acct->to_retry);
	batch_fill(acct->ctx);
}

static void batch_account_finish(struct batch_account *acct)
{
	struct batch_ctx *ctx = acct->ctx;
	const char *const *lines;
	struct timeval now;
	int exit_code;


	ctx->running--;
	i_gettimeofday(&now);
	if (WIFEXITED(acct->wait_status))
		exit_code = WEXITSTATUS(acct->wait_status);
	else
		exit_code = EX_SOFTWARE;
	if (acct->step == 1) {
		batch_check_quota_finish(acct, exit_code);
		return;
	}
	acct->secs = timeval_diff_msecs(&now, &acct->start) / 1000.0;

	if (!ctx->dry_run && !ctx->check) {
		/* the summary row is the last attempt's */
		acct->earlier_copied += batch_field_num(acct, "copied");
		acct->earlier_bytes += batch_field_num(acct, "bytes");
	}
	acct->out_header = acct->out_row = NULL;
	lines = t_strsplit(str_c(acct->out), "\n");
	if (str_array_length(lines) >= 2) {
		acct->out_header = (const char *const *)
			p_strsplit_tabescaped(ctx->pool, lines[0]);
		acct->out_row = (const char *const *)
			p_strsplit_tabescaped(ctx->pool, lines[1]);
	}
	acct->source_retries += batch_field_num(acct, "retries");
	acct->exit_code = exit_code;
	acct->result = exit_code == EX_DATAERR &&
		batch_field_num(acct, "rejected") > 0 ?
		"messages left out" : batch_exit_class(exit_code);
	/* an account that ended well has no reason, even when errors were
	   logged on the way (a retried pass) */
	acct->reason = exit_code == 0 ? NULL :
		p_strdup(ctx->pool, batch_reason(acct));
	acct->warnings = batch_warnings(acct);
	if (!WIFEXITED(acct->wait_status)) {
		acct->reason = p_strdup_printf(ctx->pool,
			"killed by signal %d", WTERMSIG(acct->wait_status));
	}

	if (exit_code == EX_TEMPFAIL && acct->attempts <= ctx->retries) {
		unsigned int delay = ctx->retry_delay_secs <<
			(acct->attempts - 1);

		i_warning("%s: %s: temporary failure%s%s; "
			  "retrying in %u s (attempt %u of %u)", batch_cmd_name,
			  acct->user, acct->reason == NULL ? "" : ": ",
			  acct->reason == NULL ? "" : acct->reason, delay,
			  acct->attempts + 1, ctx->retries + 1);
		acct->state = BATCH_RETRY_WAIT;
		acct->retry_at = now;
		acct->retry_at.tv_sec += delay;
		acct->to_retry = timeout_add(delay * 1000,
					     batch_retry_timeout, acct);
		return;
	}
	if (ctx->check && exit_code == 0) {
		/* the source is fine; now the destination's quota */
		acct->step = 1;
		acct->state = BATCH_NEXT_STEP;
		return;
	}
	batch_account_done(acct);
}

static void batch_account_check_done(struct batch_account *acct)
{
	if (acct->exited && acct->io_out == NULL && acct->io_err == NULL) {
		T_BEGIN {
			batch_account_finish(acct);
		} T_END;
		batch_fill(acct->ctx);
	}
}

static void batch_read(struct batch_account *acct, int *fd, struct io **io,
		       string_t *dest, size_t max)
{
	char buf[4096];
	ssize_t ret;

	while ((ret = read(*fd, buf, sizeof(buf))) > 0) {
		if (str_len(dest) + ret > max) {
			/* keep the end: the summary row and the last
			   errors are there */
			str_delete(dest, 0, I_MIN(str_len(dest),
						  str_len(dest) + ret - max));
		}
		str_append_data(dest, buf, ret);
	}
	if (ret == 0 || (ret < 0 && errno != EAGAIN && errno != EINTR)) {
		io_remove(io);
		i_close_fd(fd);
		batch_account_check_done(acct);
	}
}

static void batch_read_out(struct batch_account *acct)
{
	batch_read(acct, &acct->fd_out, &acct->io_out, acct->out,
		   BATCH_OUT_MAX);
}

static void batch_read_err(struct batch_account *acct)
{
	batch_read(acct, &acct->fd_err, &acct->io_err, acct->err,
		   BATCH_ERR_TAIL_MAX);
}

static void batch_child_exited(const struct child_wait_status *status,
			       struct batch_ctx *ctx)
{
	struct batch_account *acct;

	array_foreach_elem(&ctx->accounts, acct) {
		if (acct->state == BATCH_RUNNING && acct->pid == status->pid &&
		    !acct->exited) {
			acct->exited = TRUE;
			acct->wait_status = status->status;
			batch_account_check_done(acct);
			return;
		}
	}
}

static void
batch_row_credentials(const struct migrate_template_row *row,
		      struct migrate_credentials *cred_r)
{
	i_zero(cred_r);
	cred_r->source_host = row->source_host;
	cred_r->source_port = row->source_port;
	cred_r->source_user = row->source_user;
	cred_r->source_password = row->source_password;
}

static int batch_spawn(struct batch_account *acct)
{
	struct batch_ctx *ctx = acct->ctx;
	struct migrate_credentials cred;
	ARRAY_TYPE(const_string) argv;
	const char *arg;
	int fd_in[2] = { -1, -1 }, fd_out[2] = { -1, -1 };
	int fd_err[2] = { -1, -1 };
	string_t *blob;
	pid_t pid;

	if (pipe(fd_in) < 0 || pipe(fd_out) < 0 || pipe(fd_err) < 0) {
		i_error("%s: pipe() failed: %m", batch_cmd_name);
		for (unsigned int i = 0; i < 2; i++) {
			i_close_fd(&fd_in[i]);
			i_close_fd(&fd_out[i]);
			i_close_fd(&fd_err[i]);
		}
		return -1;
	}
	migrate_cmd_child_argv_init(&argv);
	array_push_back(&argv, (arg = "-f", &arg));
	array_push_back(&argv, (arg = DOVEADM_PRINT_TYPE_TAB, &arg));
	if (acct->step == 0) {
		array_push_back(&argv, (arg = "migrate", &arg));
		array_push_back(&argv, (arg = "-q", &arg));
		array_push_back(&argv, (arg = "-K", &arg));
		if (ctx->dry_run || ctx->check)
			array_push_back(&argv, (arg = "-n", &arg));
		if (ctx->jobs > 1) {
			/* the accounts in parallel use the CPUs already */
			array_push_back(&argv, (arg = "-w", &arg));
			array_push_back(&argv, (arg = "1", &arg));
		}
	} else {
		array_push_back(&argv, (arg = "quota", &arg));
		array_push_back(&argv, (arg = "get", &arg));
	}
	array_push_back(&argv, (arg = "-u", &arg));
	array_push_back(&argv, &acct->user);
	array_append_zero(&argv);

	pid = fork();
	if (pid < 0) {
		i_error("%s: fork() failed: %m", batch_cmd_name);
		i_close_fd(&fd_in[0]); i_close_fd(&fd_in[1]);
		i_close_fd(&fd_out[0]); i_close_fd(&fd_out[1]);
		i_close_fd(&fd_err[0]); i_close_fd(&fd_err[1]);
		return -1;
	}
	if (pid == 0) {
		if (dup2(fd_in[0], STDIN_FILENO) < 0 ||
		    dup2(fd_out[1], STDOUT_FILENO) < 0 ||
		    dup2(fd_err[1], STDERR_FILENO) < 0)
			i_fatal("dup2() failed: %m");
		for (int i = 0; i < 2; i++) {
			if (fd_in[i] > STDERR_FILENO) (void)close(fd_in[i]);
			if (fd_out[i] > STDERR_FILENO) (void)close(fd_out[i]);
			if (fd_err[i] > STDERR_FILENO) (void)close(fd_err[i]);
		}
		execv(ctx->doveadm_path,
		      (char **)array_front_modifiable(&argv));
		i_fatal("execv(%s) failed: %m", ctx->doveadm_path);
	}
	i_close_fd(&fd_in[0]);
	i_close_fd(&fd_out[1]);
	i_close_fd(&fd_err[1]);

	/* the sync reads its source credentials on stdin; a few hundred
	   bytes, which the pipe takes without blocking */
	if (acct->step == 0) {
		batch_row_credentials(acct->row, &cred);
		blob = t_str_new(256);
		migrate_credentials_serialize(blob, &cred);
		if (write_full(fd_in[1], str_data(blob), str_len(blob)) < 0) {
			i_error("%s: %s: write(child stdin) failed: %m",
				batch_cmd_name, acct->user);
		}
		safe_memset(str_c_modifiable(blob), 0, str_len(blob));
	}
	i_close_fd(&fd_in[1]);

	acct->pid = pid;
	acct->exited = FALSE;
	if (acct->step == 0)
		acct->attempts++;
	acct->state = BATCH_RUNNING;
	i_gettimeofday(&acct->start);
	acct->fd_out = fd_out[0];
	acct->fd_err = fd_err[0];
	fd_set_nonblock(acct->fd_out, TRUE);
	fd_set_nonblock(acct->fd_err, TRUE);
	fd_close_on_exec(acct->fd_out, TRUE);
	fd_close_on_exec(acct->fd_err, TRUE);
	str_truncate(acct->out, 0);
	str_truncate(acct->err, 0);
	acct->io_out = io_add(acct->fd_out, IO_READ, batch_read_out, acct);
	acct->io_err = io_add(acct->fd_err, IO_READ, batch_read_err, acct);
	child_wait_add_pid(ctx->child_wait, pid);
	ctx->running++;
	return 0;
}

/* Starts accounts while there is room; stops the loop when all are done. */
static void batch_fill(struct batch_ctx *ctx)
{
	struct batch_account *const *accounts, *acct;
	struct timeval now;
	unsigned int i, count;

	i_gettimeofday(&now);
	accounts = array_get(&ctx->accounts, &count);
	/* next steps and retries first: they waited their turn */
	for (i = 0; i < count && ctx->running < ctx->jobs; i++) {
		acct = accounts[i];
		if (acct->state == BATCH_NEXT_STEP) {
			if (batch_spawn(acct) < 0) {
				acct->reason = "could not start doveadm";
				batch_account_done(acct);
			}
			continue;
		}
		if (acct->state != BATCH_RETRY_WAIT ||
		    timeval_cmp(&acct->retry_at, &now) > 0)
			continue;
		timeout_remove(&acct->to_retry);
		if (batch_spawn(acct) < 0) {
			/* keeps its last failure */
			acct->state = BATCH_DONE;
			ctx->done++;
			ctx->failed++;
			batch_log_account(acct);
		}
	}
	while (ctx->next < count && ctx->running < ctx->jobs) {
		acct = accounts[ctx->next++];
		T_BEGIN {
			if (batch_spawn(acct) < 0) {
				acct->state = BATCH_DONE;
				acct->exit_code = EX_OSERR;
				acct->result = "failed";
				acct->reason = "could not start doveadm";
				ctx->done++;
				ctx->failed++;
			}
		} T_END;
	}
	if (ctx->done == count)
		io_loop_stop(ctx->ioloop);
}

/* Canonical names from the userdb; a user it does not know is an error
   of the file. */
static int batch_check_users(struct batch_ctx *ctx, unsigned int *problems_r)
{
	const struct master_service_settings *mset =
		master_service_settings_get(master_service);
	struct auth_master_connection *conn;
	struct auth_user_info info;
	struct batch_account *acct;
	const char *username, *const *fields;
	int ret, result = 0;

	*problems_r = 0;
	conn = auth_master_init(t_strconcat(mset->base_dir, "/auth-userdb",
					    NULL), 0);
	i_zero(&info);
	info.service = "doveadm";
	array_foreach_elem(&ctx->accounts, acct) T_BEGIN {
		ret = auth_master_user_lookup(conn, acct->row->dest_user, &info,
					      ctx->pool, &username, &fields);
		if (ret > 0) {
			acct->user = username;
		} else if (ret == 0) {
			i_error("%s:%u: column %d (dest_user): %s does not exist "
				"in the userdb", ctx->tmpl->path,
				acct->row->line,
				MIGRATE_TEMPLATE_DEST_USER + 1,
				acct->row->dest_user);
			(*problems_r)++;
		} else {
			i_error("%s: userdb lookup of %s failed%s%s", batch_cmd_name,
				acct->row->dest_user,
				fields != NULL && fields[0] != NULL ? ": " : "",
				fields != NULL && fields[0] != NULL ?
				fields[0] : "");
			result = -1;
		}
	} T_END;
	auth_master_deinit(&conn);
	return result;
}

static const char *const batch_report_fields[] = {
	"folders", "copied", "updated", "deleted", "skipped", "rejected",
	"bytes",
};

static int batch_write_json(struct batch_ctx *ctx, const char *path)
{
	struct batch_account *acct;
	string_t *str = t_str_new(1024);
	unsigned int i;
	bool first = TRUE;

	str_append(str, "{\"template\":\"");
	json_append_escaped(str, ctx->tmpl->path);
	str_printfa(str, "\",\"dry_run\":%s,\"accounts\":[",
		    ctx->dry_run ? "true" : "false");
	array_foreach_elem(&ctx->accounts, acct) {
		if (!first)
			str_append_c(str, ',');
		first = FALSE;
		str_append(str, "\n{\"user\":\"");
		json_append_escaped(str, acct->user);
		str_printfa(str, "\",\"line\":%u,\"source_host\":\"",
			    acct->row->line);
		json_append_escaped(str, acct->row->source_host);
		str_append(str, "\",\"source_user\":\"");
		json_append_escaped(str, acct->row->source_user);
		str_append(str, "\",\"status\":\"");
		json_append_escaped(str, acct->exit_code == 0 ? "ok" : "failed");
		str_append(str, "\",\"class\":\"");
		json_append_escaped(str, acct->result == NULL ? "not run" :
				    acct->result);
		str_printfa(str, "\",\"exit_code\":%d,\"attempts\":%u,"
			    "\"source_retries\":%u", acct->exit_code,
			    acct->attempts, acct->source_retries);
		for (i = 0; i < N_ELEMENTS(batch_report_fields); i++) {
			str_printfa(str, ",\"%s\":%"PRIu64,
				    batch_report_fields[i],
				    batch_account_num(acct,
						      batch_report_fields[i]));
		}
		str_append(str, ",\"warnings\":[");
		for (i = 0; acct->warnings != NULL && acct->warnings[i] != NULL; i++) {
			str_append(str, i == 0 ? "\"" : ",\"");
			json_append_escaped(str, acct->warnings[i]);
			str_append_c(str, '"');
		}
		str_printfa(str, "],\"seconds\":%.3f,\"reason\":", acct->secs);
		if (acct->reason == NULL)
			str_append(str, "null");
		else {
			str_append_c(str, '"');
			json_append_escaped(str, acct->reason);
			str_append_c(str, '"');
		}
		str_append_c(str, '}');
	}
	str_printfa(str, "\n],\"accounts_total\":%u,\"accounts_failed\":%u,"
		    "\"bytes\":%"PRIu64"}\n", array_count(&ctx->accounts),
		    ctx->failed, ctx->bytes);
	return migrate_cmd_write_report(batch_cmd_name, path, str);
}

static int batch_write_csv(struct batch_ctx *ctx, const char *path)
{
	struct batch_account *acct;
	string_t *str = t_str_new(1024);
	unsigned int i;

	str_append(str, "user,line,source_host,source_user,status,class,"
		   "exit_code,attempts,source_retries,folders,copied,updated,"
		   "deleted,skipped,rejected,bytes,seconds,reason,warnings\r\n");
	array_foreach_elem(&ctx->accounts, acct) {
		migrate_cmd_csv_append(str, acct->user);
		str_printfa(str, ",%u,", acct->row->line);
		migrate_cmd_csv_append(str, acct->row->source_host);
		str_append_c(str, ',');
		migrate_cmd_csv_append(str, acct->row->source_user);
		str_printfa(str, ",%s,", acct->exit_code == 0 ? "ok" : "failed");
		migrate_cmd_csv_append(str, acct->result == NULL ? "not run" : acct->result);
		str_printfa(str, ",%d,%u,%u", acct->exit_code, acct->attempts,
			    acct->source_retries);
		for (i = 0; i < N_ELEMENTS(batch_report_fields); i++) {
			str_printfa(str, ",%"PRIu64, batch_account_num(acct,
					batch_report_fields[i]));
		}
		str_printfa(str, ",%.3f,", acct->secs);
		migrate_cmd_csv_append(str, acct->reason);
		str_append_c(str, ',');
		migrate_cmd_csv_append(str, acct->warnings == NULL ? "" :
			   t_strarray_join(acct->warnings, "; "));
		str_append(str, "\r\n");
	}
	return migrate_cmd_write_report(batch_cmd_name, path, str);
}

/* The rate the domain's recorded syncs reached, one account after
   another; the default when none copied anything yet. */
static void batch_measured_rate(struct batch_ctx *ctx)
{
	ARRAY_TYPE(migrate_domain_account) accounts;
	const struct migrate_domain_account *account;
	struct migrate_domain_store *store;
	uint64_t bytes = 0, msecs = 0;
	const char *error;

	ctx->rate_mbps = BATCH_DEFAULT_RATE_MBPS;
	if (migrate_cmd_domain_store_open(&store, &error) < 0)
		return;
	t_array_init(&accounts, 16);
	if (migrate_domain_accounts(store, ctx->tmpl->dest_domain,
				    pool_datastack_create(), &accounts,
				    &error) == 0) {
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

static const char *batch_duration(double secs)
{
	if (secs < 120)
		return t_strdup_printf("%.0f s", secs);
	if (secs < 2 * 3600)
		return t_strdup_printf("%.0f min", secs / 60);
	return t_strdup_printf("%.1f h", secs / 3600);
}

static void batch_print_check_table(struct batch_ctx *ctx)
{
	static const char *const headers[] = {
		"user", "source", "result", "folders", "messages", "MB",
		"quota_free_MB", "reason",
	};
	struct batch_account *acct;
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(headers); i++)
		doveadm_print_header_simple(headers[i]);
	array_foreach_elem(&ctx->accounts, acct) T_BEGIN {
		doveadm_print(acct->user);
		doveadm_print(t_strdup_printf("%s@%s", acct->row->source_user,
					      acct->row->source_host));
		doveadm_print(acct->result == NULL ? "not run" : acct->result);
		doveadm_print_num(batch_field_num(acct, "folders"));
		doveadm_print_num(batch_account_num(acct, "copied"));
		doveadm_print(t_strdup_printf("%.1f",
			batch_account_num(acct, "bytes") / 1e6));
		if (!acct->quota_known)
			doveadm_print("?");
		else if (!acct->quota_limited)
			doveadm_print("unlimited");
		else {
			doveadm_print(t_strdup_printf("%.1f",
				acct->quota_limit_kb < acct->quota_used_kb ? 0 :
				(acct->quota_limit_kb - acct->quota_used_kb) /
				1024.0));
		}
		doveadm_print(acct->reason == NULL ? "" : acct->reason);
	} T_END;
}

static void batch_print_table(struct batch_ctx *ctx)
{
	static const char *const headers[] = {
		"user", "source", "result", "attempts", "folders", "copied",
		"updated", "deleted", "bytes", "seconds", "reason",
	};
	struct batch_account *acct;
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(headers); i++)
		doveadm_print_header_simple(headers[i]);
	array_foreach_elem(&ctx->accounts, acct) T_BEGIN {
		doveadm_print(acct->user);
		doveadm_print(t_strdup_printf("%s@%s", acct->row->source_user,
					      acct->row->source_host));
		doveadm_print(acct->result == NULL ? "not run" : acct->result);
		doveadm_print_num(acct->attempts);
		doveadm_print_num(batch_field_num(acct, "folders"));
		doveadm_print_num(batch_account_num(acct, "copied"));
		doveadm_print_num(batch_field_num(acct, "updated"));
		doveadm_print_num(batch_field_num(acct, "deleted"));
		doveadm_print_num(batch_account_num(acct, "bytes"));
		doveadm_print(t_strdup_printf("%.1f", acct->secs));
		doveadm_print(acct->reason == NULL ? "" : acct->reason);
	} T_END;
}

static int batch_store_credentials(struct batch_ctx *ctx)
{
	const struct master_service_settings *mset =
		master_service_settings_get(master_service);
	const char *dir = migrate_credentials_dir(mset->state_dir);
	struct migrate_credentials cred;
	struct batch_account *acct;
	const char *error;

	array_foreach_elem(&ctx->accounts, acct) {
		batch_row_credentials(acct->row, &cred);
		if (migrate_credentials_write(dir, acct->user, &cred,
					      &error) < 0) {
			i_error("%s: Credential store: %s", batch_cmd_name, error);
			return -1;
		}
	}
	return 0;
}

static void batch_run(struct doveadm_cmd_context *cctx, bool check)
{
	struct batch_ctx *ctx;
	struct batch_account *acct;
	const struct migrate_template_row *row;
	const char *path, *json_path = NULL, *csv_path = NULL, *error, *msg;
	unsigned int problems;
	int64_t num;
	int exit_code = 0;
	long cpus;

	if (!doveadm_cmd_param_str(cctx, "template", &path))
		help_ver2(cctx->cmd);
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	batch_cmd_name = cctx->cmd->name;

	pool_t pool = pool_alloconly_create("migrate batch", 8192);
	ctx = p_new(pool, struct batch_ctx, 1);
	ctx->pool = pool;
	ctx->check = check;
	ctx->rate_mbps = 0;
	if (doveadm_cmd_param_int64(cctx, "rate", &num)) {
		if (num < 1)
			i_fatal_status(EX_USAGE, "%s: --rate must be at least "
				       "1 MB/s", batch_cmd_name);
		ctx->rate_mbps = num;
	}
	(void)doveadm_cmd_param_bool(cctx, "dry-run", &ctx->dry_run);
	(void)doveadm_cmd_param_str(cctx, "json", &json_path);
	(void)doveadm_cmd_param_str(cctx, "csv", &csv_path);
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	ctx->jobs = cpus < 1 ? 2 : (unsigned int)I_MIN(cpus * 2, 16);
	if (doveadm_cmd_param_int64(cctx, "jobs", &num)) {
		if (num < 1 || num > BATCH_MAX_JOBS)
			i_fatal_status(EX_USAGE, "%s: -j must be "
				       "1..%u", batch_cmd_name, BATCH_MAX_JOBS);
		ctx->jobs = num;
	}
	/* a check reports a temporary failure at once */
	ctx->retries = check ? 0 : BATCH_DEFAULT_RETRIES;
	if (doveadm_cmd_param_int64(cctx, "retries", &num)) {
		if (num < 0 || num > 20)
			i_fatal_status(EX_USAGE, "%s: --retries "
				       "must be 0..20", batch_cmd_name);
		ctx->retries = num;
	}
	ctx->retry_delay_secs = BATCH_DEFAULT_RETRY_DELAY_SECS;
	if (doveadm_cmd_param_int64(cctx, "retry-delay", &num)) {
		if (num < 0 || num > 3600)
			i_fatal_status(EX_USAGE, "%s: --retry-delay "
				       "must be 0..3600 seconds", batch_cmd_name);
		ctx->retry_delay_secs = num;
	}
	ctx->tty = isatty(STDERR_FILENO) == 1;
	ctx->doveadm_path = migrate_cmd_doveadm_path();

	/* 1. the file */
	if (migrate_template_read(path, &ctx->tmpl, &error) < 0) {
		i_error("%s: %s", batch_cmd_name, error);
		doveadm_exit_code = EX_NOINPUT;
		pool_unref(&ctx->pool);
		return;
	}
	array_foreach_elem(&ctx->tmpl->notes, msg)
		i_warning("%s", msg);
	array_foreach_elem(&ctx->tmpl->errors, msg)
		i_error("%s", msg);
	problems = array_count(&ctx->tmpl->errors);

	p_array_init(&ctx->accounts, ctx->pool, array_count(&ctx->tmpl->rows));
	array_foreach(&ctx->tmpl->rows, row) {
		acct = p_new(ctx->pool, struct batch_account, 1);
		acct->ctx = ctx;
		acct->row = row;
		acct->user = row->dest_user;
		acct->fd_out = acct->fd_err = -1;
		acct->out = str_new(ctx->pool, 256);
		acct->err = str_new(ctx->pool, 256);
		array_push_back(&ctx->accounts, &acct);
	}

	/* 2. the destination users */
	if (problems == 0) {
		unsigned int user_problems;

		if (batch_check_users(ctx, &user_problems) < 0) {
			i_error("%s: %s: cannot check the "
				"destination users; nothing was changed", batch_cmd_name, path);
			doveadm_exit_code = EX_TEMPFAIL;
			goto out;
		}
		problems += user_problems;
	}
	if (problems > 0) {
		i_error("%s: %s: %u problem%s; nothing was changed", batch_cmd_name,
			path, problems, problems == 1 ? "" : "s");
		doveadm_exit_code = EX_DATAERR;
		goto out;
	}

	/* 3. the credential store, for later runs of single accounts */
	if (!ctx->dry_run && !ctx->check && batch_store_credentials(ctx) < 0) {
		doveadm_exit_code = EX_TEMPFAIL;
		goto out;
	}

	/* 4. the accounts */
	if (!ctx->dry_run && !ctx->check &&
	    migrate_cmd_domain_store_open(&ctx->domain_store, &error) < 0) {
		i_warning("%s: Results are not recorded for domain status: %s",
			  batch_cmd_name, error);
		ctx->domain_store = NULL;
	} else if (ctx->domain_store != NULL) {
		batch_load_recorded(ctx);
	}
	ctx->ioloop = io_loop_create();
	child_wait_init();
	ctx->child_wait = child_wait_new(batch_child_exited, ctx);
	i_gettimeofday(&ctx->start);
	if (ctx->tty) {
		ctx->to_progress = timeout_add(1000, batch_progress_timeout,
					       ctx);
	}
	batch_fill(ctx);
	if (ctx->done < array_count(&ctx->accounts))
		io_loop_run(ctx->ioloop);
	timeout_remove(&ctx->to_progress);
	if (ctx->tty)
		batch_progress(ctx, TRUE);
	child_wait_free(&ctx->child_wait);
	child_wait_deinit();
	io_loop_destroy(&ctx->ioloop);
	migrate_domain_store_close(&ctx->domain_store);
	if (hash_table_is_created(ctx->recorded))
		hash_table_destroy(&ctx->recorded);

	/* 5. the outcome */
	if (ctx->check)
		batch_print_check_table(ctx);
	else
		batch_print_table(ctx);
	array_foreach_elem(&ctx->accounts, acct) {
		if (batch_exit_severity(acct->exit_code) >
		    batch_exit_severity(exit_code))
			exit_code = acct->exit_code;
	}
	if (json_path != NULL && batch_write_json(ctx, json_path) < 0 &&
	    exit_code == 0)
		exit_code = EX_CANTCREAT;
	if (csv_path != NULL && batch_write_csv(ctx, csv_path) < 0 &&
	    exit_code == 0)
		exit_code = EX_CANTCREAT;
	if (ctx->check) {
		if (ctx->rate_mbps == 0)
			batch_measured_rate(ctx);
		i_info("%s: %s: %u accounts, %u ok, %u failing; %"PRIu64
		       " messages, %.2f GB to copy; about %s at %.1f MB/s%s",
		       batch_cmd_name, path, array_count(&ctx->accounts),
		       array_count(&ctx->accounts) - ctx->failed, ctx->failed,
		       ctx->messages, ctx->bytes / 1e9,
		       batch_duration(ctx->bytes / 1e6 / ctx->rate_mbps),
		       ctx->rate_mbps, ctx->rate_measured ?
		       " (measured by this domain's syncs so far)" :
		       " (assumed: no sync measured yet; see --rate)");
	} else {
		i_info("%s: %s: %u accounts, %u ok, %u failed, %.1f MB",
		       batch_cmd_name, path, array_count(&ctx->accounts),
		       array_count(&ctx->accounts) - ctx->failed, ctx->failed,
		       ctx->bytes / 1e6);
	}
	doveadm_exit_code = exit_code;
out:
	migrate_template_free(&ctx->tmpl);
	pool_unref(&ctx->pool);
}

static void cmd_migrate_batch(struct doveadm_cmd_context *cctx)
{
	batch_run(cctx, FALSE);
}

static void cmd_migrate_check(struct doveadm_cmd_context *cctx)
{
	batch_run(cctx, TRUE);
}

struct doveadm_cmd_ver2 doveadm_cmd_migrate_check = {
	.name = "migrate check",
	.cmd = cmd_migrate_check,
	.usage = "[-j <jobs>] [--rate <MB/s>] [--json <file>] [--csv <file>] "
		 "<template>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('j', "jobs", CMD_PARAM_INT64, 0)
DOVEADM_CMD_PARAM('\0', "rate", CMD_PARAM_INT64, 0)
DOVEADM_CMD_PARAM('\0', "json", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "csv", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "template", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_migrate_batch = {
	.name = "migrate batch",
	.cmd = cmd_migrate_batch,
	.usage = "[-n] [-j <jobs>] [--retries <n>] [--retry-delay <secs>] "
		 "[--json <file>] [--csv <file>] <template>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('n', "dry-run", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('j', "jobs", CMD_PARAM_INT64, 0)
DOVEADM_CMD_PARAM('\0', "retries", CMD_PARAM_INT64, 0)
DOVEADM_CMD_PARAM('\0', "retry-delay", CMD_PARAM_INT64, 0)
DOVEADM_CMD_PARAM('\0', "json", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "csv", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "template", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};
