/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The accounts of a sync template, each run as its own child process
   (doveadm-migrate-spawn.h), for "migrate batch" and "migrate check". */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "ioloop.h"
#include "fd-util.h"
#include "time-util.h"
#include "write-full.h"
#include "safe-memset.h"
#include "child-wait.h"
#include "auth-master.h"
#include "master-service.h"
#include "master-service-settings.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "migrate-template.h"
#include "migrate-text.h"
#include "migrate-credentials.h"
#include "migrate-jobs.h"
#include "migrate-settings.h"
#include "doveadm-migrate.h"
#include "doveadm-migrate-spawn.h"

#include <stdio.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/wait.h>

#define MIGRATE_SPAWN_MAX_JOBS MIGRATE_JOBS_MAX
/* the child's file descriptor for its result record (-R) */
#define MIGRATE_SPAWN_RECORD_FD 3
/* a record larger than this is not one */
#define MIGRATE_SPAWN_RECORD_MAX (1024*1024)
/* what is kept of a child's log, for the operator when it wrote no
   record */
#define MIGRATE_SPAWN_ERR_TAIL_MAX 4096

static void migrate_spawn_fill(struct migrate_spawn *spawn);

void migrate_spawn_params(struct doveadm_cmd_context *cctx,
			  const char *cmd_name,
			  struct migrate_spawn_settings *set,
			  const char **json_path_r, const char **csv_path_r)
{
	enum migrate_jobs_reason reason;
	long cpus;
	int64_t num;

	*json_path_r = *csv_path_r = NULL;
	(void)doveadm_cmd_param_str(cctx, "json", json_path_r);
	(void)doveadm_cmd_param_str(cctx, "csv", csv_path_r);
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	set->jobs = migrate_jobs_default(cpus < 1 ? 1 : cpus, -1, 0, &reason);
	if (migrate_cmd_param_int64(cctx, "jobs", &num)) {
		if (num < 1 || num > MIGRATE_SPAWN_MAX_JOBS)
			i_fatal_status(EX_USAGE, "%s: -j must be 1..%u",
				       cmd_name, MIGRATE_SPAWN_MAX_JOBS);
		set->jobs = num;
		set->jobs_given = TRUE;
	}
	set->max_conns_per_host = MIGRATE_SPAWN_DEFAULT_MAX_CONNS_PER_HOST;
	if (migrate_cmd_param_int64(cctx, "max-connections-per-host", &num)) {
		/* an account needs the storage's connection and ours */
		if (num != 0 && (num < 2 || num > 10000)) {
			i_fatal_status(EX_USAGE, "%s: --max-connections-per-host "
				"must be 0 (no bound) or 2..10000", cmd_name);
		}
		set->max_conns_per_host = num;
		set->max_conns_given = TRUE;
	}
	if (migrate_cmd_param_int64(cctx, "jobs-per-backend", &num)) {
		if (num < 1 || num > MIGRATE_SPAWN_MAX_JOBS)
			i_fatal_status(EX_USAGE, "%s: --jobs-per-backend must "
				       "be 1..%u", cmd_name,
				       MIGRATE_SPAWN_MAX_JOBS);
		set->jobs_per_backend = num;
	}
}

struct migrate_spawn *
migrate_spawn_init(const char *cmd_name,
		   const struct migrate_spawn_settings *set,
		   const struct migrate_spawn_vfuncs *v, void *context)
{
	struct migrate_spawn *spawn;
	pool_t pool;

	pool = pool_alloconly_create("migrate spawn", 8192);
	spawn = p_new(pool, struct migrate_spawn, 1);
	spawn->rtt_fd = -1;
	spawn->pool = pool;
	spawn->cmd_name = p_strdup(pool, cmd_name);
	spawn->set = *set;
	spawn->v = v;
	spawn->context = context;
	spawn->tty = isatty(STDERR_FILENO) == 1;
	spawn->doveadm_path = p_strdup(pool, migrate_cmd_doveadm_path());
	p_array_init(&spawn->accounts, pool, 16);
	p_array_init(&spawn->hosts, pool, 4);
	p_array_init(&spawn->backends, pool, 4);
	return spawn;
}

void migrate_spawn_deinit(struct migrate_spawn **_spawn)
{
	struct migrate_spawn *spawn = *_spawn;

	*_spawn = NULL;
	migrate_spawn_rtt_close_end(spawn);
	if (spawn->tmpl != NULL)
		migrate_template_free(&spawn->tmpl);
	pool_unref(&spawn->pool);
}

uint64_t migrate_spawn_account_copied(const struct migrate_spawn_account *acct)
{
	return acct->earlier_copied + acct->rec.copied;
}

uint64_t migrate_spawn_account_bytes(const struct migrate_spawn_account *acct)
{
	return acct->earlier_bytes + acct->rec.bytes;
}

const char *migrate_spawn_exit_class(int exit_code)
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

/* The class of an account's exit code, told apart where 65 means more
   than one thing. */
static const char *
migrate_spawn_account_class(const struct migrate_spawn_account *acct,
			    int exit_code)
{
	if (exit_code == EX_DATAERR && acct->rec.rejected > 0)
		return "messages left out";
	if (exit_code == EX_DATAERR &&
	    null_strcmp(acct->rec.error_code,
			migrate_error_name(MIGRATE_ERROR_SOURCE_LIMIT)) == 0)
		return "source limit";
	/* an unexpected error exits 75 too, but is no passing problem of
	   the source */
	if (exit_code == EX_TEMPFAIL &&
	    null_strcmp(acct->rec.error_code, "failed") == 0)
		return "failed";
	return migrate_spawn_exit_class(exit_code);
}

void migrate_spawn_row_credentials(const struct migrate_template_row *row,
				   struct migrate_credentials *cred_r)
{
	i_zero(cred_r);
	cred_r->source_host = row->source_host;
	cred_r->source_port = row->source_port;
	cred_r->source_user = row->source_user;
	cred_r->source_password = row->source_password;
	cred_r->source_tls_name = row->source_tls_name;
	cred_r->source_protocol = row->source_protocol;
	cred_r->source_auth = row->source_auth;
}

static void migrate_spawn_progress(struct migrate_spawn *spawn, bool final)
{
	unsigned int total = array_count(&spawn->accounts);
	double mb = spawn->bytes / 1e6, rate;
	const char *eta = "?";
	string_t *hosts = t_str_new(64);
	struct timeval now;
	long long msecs;

	i_gettimeofday(&now);
	msecs = timeval_diff_msecs(&now, &spawn->start);
	rate = msecs <= 0 ? 0 : mb / (msecs / 1000.0);
	if (spawn->done > 0 && spawn->done < total) {
		eta = t_strdup_printf("%llds", (long long)
			(msecs / 1000.0 / spawn->done * (total - spawn->done)));
	}
	migrate_spawn_hosts_progress(spawn, hosts);
	fprintf(stderr, "\r\033[K%s: %u/%u accounts done, %u running, "
		"%u failed, %.1f MB, %.1f MB/s, ETA %s%s%s", spawn->cmd_name,
		spawn->done, total, spawn->running, spawn->failed, mb, rate,
		eta, str_c(hosts), final ? "\n" : "");
	fflush(stderr);
	spawn->progress_printed = !final;
}

static void migrate_spawn_progress_timeout(struct migrate_spawn *spawn)
{
	migrate_spawn_progress(spawn, FALSE);
}

static void migrate_spawn_log_account(struct migrate_spawn_account *acct)
{
	struct migrate_spawn *spawn = acct->spawn;
	const char *line;

	if (acct->exit_code == 0)
		line = spawn->v->ok_line(acct);
	else {
		line = t_strdup_printf("%s: %s (exit %d, %u attempt%s)%s%s",
			acct->user, acct->result, acct->exit_code,
			acct->attempts, acct->attempts == 1 ? "" : "s",
			acct->reason == NULL ? "" : ": ",
			acct->reason == NULL ? "" : acct->reason);
	}
	if (spawn->progress_printed)
		fprintf(stderr, "\r\033[K");
	if (acct->exit_code == 0)
		i_info("%s: %s", spawn->cmd_name, line);
	else
		i_error("%s: %s", spawn->cmd_name, line);
}

static void migrate_spawn_account_done(struct migrate_spawn_account *acct)
{
	struct migrate_spawn *spawn = acct->spawn;

	if (spawn->v->finished != NULL)
		spawn->v->finished(acct, spawn->context);
	acct->state = MIGRATE_SPAWN_DONE;
	spawn->done++;
	if (acct->exit_code != 0)
		spawn->failed++;
	spawn->bytes += migrate_spawn_account_bytes(acct);
	spawn->messages += migrate_spawn_account_copied(acct);
	migrate_spawn_log_account(acct);
}

static void migrate_spawn_retry_timeout(struct migrate_spawn_account *acct)
{
	timeout_remove(&acct->to_retry);
	migrate_spawn_fill(acct->spawn);
}

/* The account's timer: a look at it again at *at. */
static void migrate_spawn_retry_timer(struct migrate_spawn_account *acct,
				      const struct timeval *at,
				      const struct timeval *now)
{
	long long msecs = timeval_diff_msecs(at, now);

	timeout_remove(&acct->to_retry);
	acct->to_retry = timeout_add((unsigned int)I_MAX(msecs, 0) + 1,
				     migrate_spawn_retry_timeout, acct);
}

/* An account due to run again that its host does not take now: a look
   again when the host's pause ends, or in a second. */
static void migrate_spawn_retry_later(struct migrate_spawn_account *acct,
				      const struct timeval *now)
{
	struct timeval at = *now;

	timeval_add_msecs(&at, 1000);
	if (timeval_cmp(&acct->host->paused_until, now) > 0 &&
	    timeval_cmp(&acct->host->paused_until, &at) < 0)
		at = acct->host->paused_until;
	migrate_spawn_retry_timer(acct, &at, now);
}

/* a child's log as lines to show: each one's control characters
   escaped, the line breaks kept */
static const char *migrate_spawn_log_lines(const char *log)
{
	const char *const *lines = t_strsplit(log, "\n");
	string_t *str = t_str_new(strlen(log) + 64);

	for (; *lines != NULL; lines++) {
		if (str_len(str) > 0)
			str_append_c(str, '\n');
		migrate_text_append_escaped(str, *lines);
	}
	return str_c(str);
}

/* The child's record; FALSE when it wrote none (the operator gets its
   log instead).  how: "exited with N", "was killed by signal N". */
static bool migrate_spawn_read_record(struct migrate_spawn_account *acct,
				      const char *how)
{
	struct migrate_spawn *spawn = acct->spawn;
	const char *error = NULL;

	if (str_len(acct->record) > 0 &&
	    migrate_record_parse(str_data(acct->record),
				 str_len(acct->record), spawn->pool,
				 &acct->rec, &error) == 0)
		return TRUE;
	i_zero(&acct->rec);
	i_error("%s: %s: doveadm migrate %s without its result%s%s; "
		"its log ends with:\n%s", spawn->cmd_name, acct->user, how,
		error == NULL ? "" : ": ", error == NULL ? "" : error,
		migrate_spawn_log_lines(str_c(acct->err)));
	return FALSE;
}

static void migrate_spawn_finish(struct migrate_spawn_account *acct)
{
	struct migrate_spawn *spawn = acct->spawn;
	struct timeval now, retry_at;
	unsigned int delay;
	const char *how;
	int exit_code;

	spawn->running--;
	migrate_spawn_host_release(acct);
	migrate_spawn_backend_release(acct);
	i_gettimeofday(&now);
	acct->secs = timeval_diff_msecs(&now, &acct->start) / 1000.0;
	if (WIFEXITED(acct->wait_status)) {
		exit_code = WEXITSTATUS(acct->wait_status);
		how = t_strdup_printf("exited with %d", exit_code);
		/* Dovecot's fatal errors (89...) are not ours to pass on:
		   what stopped the child kept what it had done */
		exit_code = migrate_exit_code_normalize(exit_code);
	} else {
		exit_code = EX_TEMPFAIL;
		how = t_strdup_printf("was killed by signal %d",
				      WTERMSIG(acct->wait_status));
	}

	if (!spawn->set.dry_run && !spawn->set.preflight) {
		/* the record is the last attempt's */
		acct->earlier_copied += acct->rec.copied;
		acct->earlier_bytes += acct->rec.bytes;
		acct->earlier_uids_changed += acct->rec.uids_changed;
	}
	if (migrate_spawn_read_record(acct, how)) {
		/* an account that ended well has no reason, even when
		   errors were logged on the way (a retried pass) */
		acct->reason = exit_code == 0 ? NULL : p_strdup(spawn->pool,
			migrate_text_escape(acct->rec.error));
	} else {
		acct->reason = p_strdup_printf(spawn->pool,
			"doveadm migrate %s without its result", how);
		/* no result is no success */
		if (exit_code == 0)
			exit_code = EX_TEMPFAIL;
	}
	if (!WIFEXITED(acct->wait_status)) {
		acct->reason = p_strdup_printf(spawn->pool,
			"killed by signal %d", WTERMSIG(acct->wait_status));
	}
	acct->source_retries += acct->rec.retries;
	acct->exit_code = exit_code;
	acct->result = migrate_spawn_account_class(acct, exit_code);

	if (migrate_spawn_host_ended(acct, exit_code, &retry_at)) {
		/* the source's limit, not the account's failure: again
		   once its host allows, as no attempt */
		acct->attempts--;
		acct->state = MIGRATE_SPAWN_RETRY_WAIT;
		acct->retry_at = retry_at;
		migrate_spawn_retry_timer(acct, &acct->retry_at, &now);
		return;
	}
	if (exit_code == EX_TEMPFAIL && acct->attempts <= spawn->set.retries) {
		delay = spawn->set.retry_delay_secs << (acct->attempts - 1);
		i_warning("%s: %s: temporary failure%s%s; retrying in %u s "
			  "(attempt %u of %u)", spawn->cmd_name, acct->user,
			  acct->reason == NULL ? "" : ": ",
			  acct->reason == NULL ? "" : acct->reason, delay,
			  acct->attempts + 1, spawn->set.retries + 1);
		acct->state = MIGRATE_SPAWN_RETRY_WAIT;
		acct->retry_at = now;
		acct->retry_at.tv_sec += delay;
		migrate_spawn_retry_timer(acct, &acct->retry_at, &now);
		return;
	}
	migrate_spawn_account_done(acct);
}

static void migrate_spawn_check_done(struct migrate_spawn_account *acct)
{
	if (acct->exited && acct->io_record == NULL && acct->io_err == NULL) {
		T_BEGIN {
			migrate_spawn_finish(acct);
		} T_END;
		migrate_spawn_fill(acct->spawn);
	}
}

/* Read what the child wrote on fd into dest until EOF; keep_end: when
   more than max comes, keep its end (a log), else stop adding (a record
   that long is invalid anyway). */
static void migrate_spawn_read(struct migrate_spawn_account *acct, int *fd,
			       struct io **io, string_t *dest, size_t max,
			       bool keep_end)
{
	char buf[4096];
	ssize_t ret;

	while ((ret = read(*fd, buf, sizeof(buf))) > 0) {
		if (str_len(dest) + ret <= max)
			str_append_data(dest, buf, ret);
		else if (keep_end) {
			str_delete(dest, 0, I_MIN(str_len(dest),
						  str_len(dest) + ret - max));
			str_append_data(dest, buf, I_MIN((size_t)ret, max));
		}
	}
	if (ret == 0 || (ret < 0 && errno != EAGAIN && errno != EINTR)) {
		io_remove(io);
		i_close_fd(fd);
		migrate_spawn_check_done(acct);
	}
}

static void migrate_spawn_read_record_fd(struct migrate_spawn_account *acct)
{
	migrate_spawn_read(acct, &acct->fd_record, &acct->io_record,
			   acct->record, MIGRATE_SPAWN_RECORD_MAX, FALSE);
}

static void migrate_spawn_read_err(struct migrate_spawn_account *acct)
{
	migrate_spawn_read(acct, &acct->fd_err, &acct->io_err, acct->err,
			   MIGRATE_SPAWN_ERR_TAIL_MAX, TRUE);
}

static void migrate_spawn_child_exited(const struct child_wait_status *status,
				       struct migrate_spawn *spawn)
{
	struct migrate_spawn_account *acct;

	array_foreach_elem(&spawn->accounts, acct) {
		if (acct->state == MIGRATE_SPAWN_RUNNING &&
		    acct->pid == status->pid && !acct->exited) {
			acct->exited = TRUE;
			acct->wait_status = status->status;
			migrate_spawn_check_done(acct);
			return;
		}
	}
}

/* In the child: stdin, stderr and the record from the pipes, stdout to
   /dev/null (it has only the child's table: the record says it all). */
static void ATTR_NORETURN
migrate_spawn_exec(struct migrate_spawn *spawn, const char *const *argv,
		   int fds[][2], unsigned int count)
{
	int fd_null = open("/dev/null", O_WRONLY);
	unsigned int i;

	if (fd_null == -1 || dup2(fds[0][0], STDIN_FILENO) < 0 ||
	    dup2(fd_null, STDOUT_FILENO) < 0 ||
	    dup2(fds[1][1], STDERR_FILENO) < 0 ||
	    (fds[2][1] != MIGRATE_SPAWN_RECORD_FD &&
	     dup2(fds[2][1], MIGRATE_SPAWN_RECORD_FD) < 0))
		i_fatal("dup2() failed: %m");
	/* the child sees the end of its stdin only when no one else holds
	   the pipe open */
	for (i = 0; i < count * 2; i++) {
		int fd = fds[i / 2][i % 2];

		if (fd > STDERR_FILENO && fd != MIGRATE_SPAWN_RECORD_FD)
			(void)close(fd);
	}
	if (fd_null > STDERR_FILENO && fd_null != MIGRATE_SPAWN_RECORD_FD)
		(void)close(fd_null);
	execv(spawn->doveadm_path, (char **)argv);
	i_fatal("execv(%s) failed: %m", spawn->doveadm_path);
}

static void migrate_spawn_close_pipes(int fds[][2], unsigned int count)
{
	unsigned int i;

	for (i = 0; i < count; i++) {
		i_close_fd(&fds[i][0]);
		i_close_fd(&fds[i][1]);
	}
}

static int migrate_spawn_child(struct migrate_spawn_account *acct)
{
	struct migrate_spawn *spawn = acct->spawn;
	struct migrate_credentials cred;
	ARRAY_TYPE(const_string) argv;
	/* stdin, stderr, record */
	int fds[3][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 } };
	const char *arg;
	string_t *blob;
	unsigned int i;
	pid_t pid;

	for (i = 0; i < N_ELEMENTS(fds); i++) {
		if (pipe(fds[i]) < 0) {
			i_error("%s: pipe() failed: %m", spawn->cmd_name);
			migrate_spawn_close_pipes(fds, N_ELEMENTS(fds));
			return -1;
		}
	}
	migrate_cmd_child_argv_init(&argv);
	array_push_back(&argv, (arg = "migrate", &arg));
	array_push_back(&argv, (arg = "-q", &arg));
	array_push_back(&argv, (arg = "-K", &arg));
	array_push_back(&argv, (arg = "-R", &arg));
	arg = dec2str(MIGRATE_SPAWN_RECORD_FD);
	array_push_back(&argv, &arg);
	if (acct->host_conns > 0) {
		/* an option, not -o: it goes along when doveadm sends the
		   command to the user's backend */
		array_push_back(&argv, (arg = "-C", &arg));
		arg = dec2str(acct->host_conns);
		array_push_back(&argv, &arg);
	}
	if (spawn->set.dry_run || spawn->set.preflight)
		array_push_back(&argv, (arg = "-n", &arg));
	if (spawn->set.jobs > 1) {
		/* the accounts in parallel use the CPUs already */
		array_push_back(&argv, (arg = "-w", &arg));
		array_push_back(&argv, (arg = "1", &arg));
	}
	array_push_back(&argv, (arg = "-u", &arg));
	array_push_back(&argv, &acct->user);
	array_append_zero(&argv);

	pid = fork();
	if (pid < 0) {
		i_error("%s: fork() failed: %m", spawn->cmd_name);
		migrate_spawn_close_pipes(fds, N_ELEMENTS(fds));
		return -1;
	}
	if (pid == 0) {
		migrate_spawn_exec(spawn, array_front(&argv), fds,
				   N_ELEMENTS(fds));
	}
	i_close_fd(&fds[0][0]);
	i_close_fd(&fds[1][1]);
	i_close_fd(&fds[2][1]);

	/* the source credentials on its stdin: a few hundred bytes, which
	   the pipe takes without blocking */
	migrate_spawn_row_credentials(acct->row, &cred);
	blob = t_str_new(256);
	migrate_credentials_serialize(blob, &cred);
	if (write_full(fds[0][1], str_data(blob), str_len(blob)) < 0) {
		i_error("%s: %s: write(child stdin) failed: %m",
			spawn->cmd_name, acct->user);
	}
	safe_memset(str_c_modifiable(blob), 0, str_len(blob));
	i_close_fd(&fds[0][1]);

	acct->pid = pid;
	acct->exited = FALSE;
	acct->attempts++;
	acct->state = MIGRATE_SPAWN_RUNNING;
	i_gettimeofday(&acct->start);
	acct->fd_err = fds[1][0];
	acct->fd_record = fds[2][0];
	fd_set_nonblock(acct->fd_err, TRUE);
	fd_set_nonblock(acct->fd_record, TRUE);
	fd_close_on_exec(acct->fd_err, TRUE);
	fd_close_on_exec(acct->fd_record, TRUE);
	str_truncate(acct->err, 0);
	str_truncate(acct->record, 0);
	acct->io_err = io_add(acct->fd_err, IO_READ,
			      migrate_spawn_read_err, acct);
	acct->io_record = io_add(acct->fd_record, IO_READ,
				 migrate_spawn_read_record_fd, acct);
	child_wait_add_pid(spawn->child_wait, pid);
	spawn->running++;
	return 0;
}

/* Starts accounts while there is room; stops the loop when all are done. */
static void migrate_spawn_fill(struct migrate_spawn *spawn)
{
	struct migrate_spawn_account *const *accounts, *acct;
	struct timeval now;
	unsigned int i, count;

	i_gettimeofday(&now);
	accounts = array_get(&spawn->accounts, &count);
	/* retries first: they waited their turn */
	for (i = 0; i < count && spawn->running < spawn->set.jobs; i++) {
		acct = accounts[i];
		if (acct->state != MIGRATE_SPAWN_RETRY_WAIT)
			continue;
		if (timeval_cmp(&acct->retry_at, &now) > 0) {
			/* its timer may run a little before the time (it
			   counts from the ioloop's last look at the clock) */
			if (acct->to_retry == NULL) {
				migrate_spawn_retry_timer(acct,
					&acct->retry_at, &now);
			}
			continue;
		}
		/* a backend that is full: the end of one of its runs
		   fills again */
		if (!migrate_spawn_backend_take(acct))
			continue;
		if (!migrate_spawn_host_take(acct)) {
			migrate_spawn_backend_release(acct);
			/* its host paused again since, or is full: again
			   when that may have changed (nothing else may be
			   left to wake the loop) */
			if (acct->to_retry == NULL)
				migrate_spawn_retry_later(acct, &now);
			continue;
		}
		timeout_remove(&acct->to_retry);
		T_BEGIN {
			/* keeps its last failure when it cannot start */
			if (migrate_spawn_child(acct) < 0) {
				migrate_spawn_host_release(acct);
				migrate_spawn_backend_release(acct);
				migrate_spawn_account_done(acct);
			}
		} T_END;
	}
	/* then in the file's order, past the accounts whose source host
	   is full */
	for (i = spawn->next; i < count &&
		     spawn->running < spawn->set.jobs; i++) {
		acct = accounts[i];
		if (acct->state != MIGRATE_SPAWN_PENDING)
			continue;
		if (!migrate_spawn_backend_take(acct))
			continue;
		if (!migrate_spawn_host_take(acct)) {
			migrate_spawn_backend_release(acct);
			continue;
		}
		T_BEGIN {
			if (migrate_spawn_child(acct) < 0) {
				migrate_spawn_host_release(acct);
				migrate_spawn_backend_release(acct);
				acct->exit_code = EX_TEMPFAIL;
				acct->result = "failed";
				acct->reason = "could not start doveadm";
				migrate_spawn_account_done(acct);
			}
		} T_END;
	}
	/* the first account not started yet */
	while (spawn->next < count &&
	       accounts[spawn->next]->state != MIGRATE_SPAWN_PENDING)
		spawn->next++;
	if (spawn->done == count)
		io_loop_stop(spawn->ioloop);
}

/* Canonical names from the userdb; a user it does not know is an error
   of the file. */
static int migrate_spawn_check_users(struct migrate_spawn *spawn,
				     struct auth_master_connection *conn,
				     unsigned int *problems_r)
{
	struct migrate_spawn_account *acct;
	struct auth_user_info info;
	const char *username, *const *fields;
	int ret, result = 0;

	*problems_r = 0;
	i_zero(&info);
	info.service = "doveadm";
	array_foreach_elem(&spawn->accounts, acct) T_BEGIN {
		ret = auth_master_user_lookup(conn, acct->row->dest_user, &info,
					      spawn->pool, &username, &fields);
		if (ret > 0) {
			acct->user = username;
		} else if (ret == 0) {
			i_error("%s:%u: column %d (dest_user): %s does not exist "
				"in the userdb", spawn->tmpl->path,
				acct->row->line, MIGRATE_TEMPLATE_DEST_USER + 1,
				migrate_template_value_str(
					acct->row->dest_user, FALSE));
			(*problems_r)++;
		} else {
			i_error("%s: userdb lookup of %s failed%s%s",
				spawn->cmd_name, migrate_template_value_str(
					acct->row->dest_user, FALSE),
				fields != NULL && fields[0] != NULL ? ": " : "",
				fields != NULL && fields[0] != NULL ?
				fields[0] : "");
			result = -1;
		}
	} T_END;
	return result;
}

int migrate_spawn_read_template(struct migrate_spawn *spawn,
				const char *path)
{
	const struct master_service_settings *mset =
		master_service_settings_get(master_service);
	const struct migrate_template_row *row;
	struct migrate_spawn_account *acct;
	struct auth_master_connection *conn;
	unsigned int problems, user_problems;
	const char *error, *msg;
	int ret;

	/* 1. the file */
	if (migrate_template_read(path, &spawn->tmpl, &error) < 0) {
		i_error("%s: %s", spawn->cmd_name, error);
		return EX_NOINPUT;
	}
	array_foreach_elem(&spawn->tmpl->notes, msg)
		i_warning("%s", msg);
	array_foreach_elem(&spawn->tmpl->errors, msg)
		i_error("%s", msg);
	problems = array_count(&spawn->tmpl->errors);

	array_foreach(&spawn->tmpl->rows, row) {
		acct = p_new(spawn->pool, struct migrate_spawn_account, 1);
		acct->spawn = spawn;
		acct->row = row;
		acct->user = row->dest_user;
		acct->fd_record = acct->fd_err = -1;
		acct->record = str_new(spawn->pool, 1024);
		acct->err = str_new(spawn->pool, 256);
		array_push_back(&spawn->accounts, &acct);
	}

	migrate_spawn_hosts_assign(spawn);

	/* 2. the destination users, and their backends (doveadm_port) */
	if (problems == 0) {
		conn = auth_master_init(t_strconcat(mset->base_dir,
						    "/auth-userdb", NULL), 0);
		ret = migrate_spawn_check_users(spawn, conn, &user_problems);
		if (ret < 0) {
			i_error("%s: %s: cannot check the destination users; "
				"nothing was changed", spawn->cmd_name, path);
		} else if (user_problems == 0 &&
			   migrate_spawn_backends_assign(spawn, conn) < 0) {
			i_error("%s: %s: cannot tell the accounts' backends; "
				"nothing was changed", spawn->cmd_name, path);
			ret = -1;
		}
		auth_master_deinit(&conn);
		if (ret < 0)
			return EX_TEMPFAIL;
		problems += user_problems;
	}
	if (problems > 0) {
		i_error("%s: %s: %u problem%s; nothing was changed",
			spawn->cmd_name, path, problems,
			problems == 1 ? "" : "s");
		return EX_DATAERR;
	}
	return 0;
}

void migrate_spawn_run(struct migrate_spawn *spawn)
{
	struct ioloop *prev_ioloop = current_ioloop;

	spawn->ioloop = io_loop_create();
	if (spawn->v->ioloop_switched != NULL)
		spawn->v->ioloop_switched(spawn->context);
	migrate_spawn_rtt_close_start(spawn);
	child_wait_init();
	spawn->child_wait = child_wait_new(migrate_spawn_child_exited, spawn);
	i_gettimeofday(&spawn->start);
	if (spawn->tty) {
		spawn->to_progress = timeout_add(1000,
			migrate_spawn_progress_timeout, spawn);
	}
	migrate_spawn_fill(spawn);
	if (spawn->done < array_count(&spawn->accounts))
		io_loop_run(spawn->ioloop);
	timeout_remove(&spawn->to_progress);
	if (spawn->tty)
		migrate_spawn_progress(spawn, TRUE);
	migrate_spawn_hosts_log(spawn);
	migrate_spawn_backends_log(spawn);
	child_wait_free(&spawn->child_wait);
	child_wait_deinit();
	migrate_spawn_rtt_close_end(spawn);
	if (spawn->v->ioloop_switched != NULL) {
		/* back where it came from, before ours goes */
		io_loop_set_current(prev_ioloop);
		spawn->v->ioloop_switched(spawn->context);
		io_loop_set_current(spawn->ioloop);
	}
	io_loop_destroy(&spawn->ioloop);
}
