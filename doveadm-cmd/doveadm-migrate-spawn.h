#ifndef DOVEADM_MIGRATE_SPAWN_H
#define DOVEADM_MIGRATE_SPAWN_H

#include "doveadm-migrate-record.h"

/* What "migrate batch" and "migrate check" share: the sync template,
   checked as a whole before anything runs; every account as its own
   "doveadm migrate -u USER" child with the source credentials on its
   stdin, -j at a time, a temporary failure retried with backoff; each
   child's outcome from its result record (doveadm-migrate-record.h),
   never from its output or its log; the per-account JSON and CSV
   reports. */

struct doveadm_cmd_context;
struct migrate_template;
struct migrate_template_row;
struct migrate_credentials;
struct migrate_spawn;

enum migrate_spawn_state {
	MIGRATE_SPAWN_PENDING,
	MIGRATE_SPAWN_RUNNING,
	MIGRATE_SPAWN_RETRY_WAIT,
	MIGRATE_SPAWN_DONE,
};

/* A source host of the batch's rows (doveadm-migrate-spawn-hosts.c). */
struct migrate_spawn_host {
	/* "host" or "host:port", as the rows give it */
	const char *name;
	/* connections allowed at once (0: no bound), and those the running
	   accounts hold */
	unsigned int limit, conns;
	unsigned int running;
	/* the most at once; the accounts that waited for room */
	unsigned int max_conns, max_running, waits;
	/* --max-connections-per-host: what limit grows back to */
	unsigned int max_limit;
	/* the source pushed back (too many connections, throttled, busy):
	   limit halved, no account starts before paused_until; the pause
	   doubles while it goes on (backoff_msecs), and the successes since
	   the last change raise limit again, one account a window */
	unsigned int decreases, pushbacks, backoff_msecs, successes;
	struct timeval paused_until, last_decrease;
	/* the smallest limit it came down to */
	unsigned int min_limit;
};
ARRAY_DEFINE_TYPE(migrate_spawn_host, struct migrate_spawn_host *);

/* A backend that doveadm sends accounts to (doveadm_port and the
   passdb's proxy fields; doveadm-migrate-spawn-backends.c). */
struct migrate_spawn_backend {
	/* "host:port" */
	const char *name;
	unsigned int accounts, running, max_running;
	/* the doveadm protocol goes there over TLS; it is on loopback */
	bool tls, loopback;
};
ARRAY_DEFINE_TYPE(migrate_spawn_backend, struct migrate_spawn_backend *);

struct migrate_spawn_account {
	struct migrate_spawn *spawn;
	const struct migrate_template_row *row;
	/* as the userdb spells it */
	const char *user;
	/* its source host, and the connections its running child holds
	   there */
	struct migrate_spawn_host *host;
	unsigned int host_conns, last_host_conns;
	/* the backend doveadm sends its child's command to; NULL: here */
	struct migrate_spawn_backend *backend;
	bool host_waited;
	/* runs the source pushed back, which count as no attempt */
	unsigned int pushbacks;
	enum migrate_spawn_state state;
	unsigned int attempts;
	/* the children's own retries (after a lost source), all attempts */
	unsigned int source_retries;
	/* what the earlier attempts copied (a later one goes on from it) */
	uint64_t earlier_copied, earlier_bytes, earlier_uids_changed;

	/* the running child */
	pid_t pid;
	int fd_record, fd_err;
	struct io *io_record, *io_err;
	/* its record, and the end of its log for the operator */
	string_t *record, *err;
	bool exited;
	int wait_status;
	struct timeout *to_retry;
	struct timeval start, retry_at;

	/* the outcome */
	int exit_code;
	const char *result, *reason;
	/* the last attempt's record; all zero when it wrote none */
	struct migrate_record rec;
	double secs;
};
ARRAY_DEFINE_TYPE(migrate_spawn_account, struct migrate_spawn_account *);

struct migrate_spawn_vfuncs {
	/* The account's outcome is final (no retry follows), before it is
	   counted and logged: the verb may change it or record it. */
	void (*finished)(struct migrate_spawn_account *acct, void *context);
	/* the log line of an account that ended well */
	const char *(*ok_line)(const struct migrate_spawn_account *acct);
	/* the run's own ioloop became the current one, or went (what
	   "finished" uses may have to follow: a dict's connection) */
	void (*ioloop_switched)(void *context);
};

struct migrate_spawn_settings {
	unsigned int jobs, retries, retry_delay_secs;
	/* --max-connections-per-host, and whether it was given (else the
	   domain's, when it has one, is set later:
	   migrate_spawn_hosts_set_limit()) */
	unsigned int max_conns_per_host;
	bool max_conns_given;
	/* -j was given: it stays as it is */
	bool jobs_given;
	/* --jobs-per-backend: at most that many accounts at once on each
	   backend (0: -j's share, migrate_spawn_backends_jobs()) */
	unsigned int jobs_per_backend;
	/* batch -n: every child is a dry run, and the reports say so */
	bool dry_run;
	/* check: every child is a dry run too */
	bool preflight;
};

struct migrate_spawn {
	pool_t pool;
	/* "migrate batch" or "migrate check", for messages */
	const char *cmd_name;
	struct migrate_spawn_settings set;
	const struct migrate_spawn_vfuncs *v;
	void *context;

	struct migrate_template *tmpl;
	ARRAY_TYPE(migrate_spawn_account) accounts;
	ARRAY_TYPE(migrate_spawn_host) hosts;
	ARRAY_TYPE(migrate_spawn_backend) backends;
	/* accounts finished and failed; what they copied */
	unsigned int done, failed;
	uint64_t bytes, messages;

	/* the round trip's connection, logging out while the accounts run
	   (doveadm-migrate-spawn-jobs.c), -1 when none */
	int rtt_fd;
	struct io *rtt_io;
	struct timeout *rtt_to;

	/* private to doveadm-migrate-spawn.c */
	struct ioloop *ioloop;
	struct child_wait *child_wait;
	const char *doveadm_path;
	unsigned int next, running;
	bool tty, progress_printed;
	struct timeval start;
	struct timeout *to_progress;
};

/* The parameters both verbs have (doveadm-cmd.h): -j, --json, --csv,
   which migrate_spawn_params() reads, and the template. */
#define MIGRATE_SPAWN_PARAMS \
DOVEADM_CMD_PARAM('j', "jobs", CMD_PARAM_STR, 0) \
DOVEADM_CMD_PARAM('\0', "max-connections-per-host", CMD_PARAM_STR, 0) \
DOVEADM_CMD_PARAM('\0', "jobs-per-backend", CMD_PARAM_STR, 0) \
DOVEADM_CMD_PARAM('\0', "json", CMD_PARAM_STR, 0) \
DOVEADM_CMD_PARAM('\0', "csv", CMD_PARAM_STR, 0) \
DOVEADM_CMD_PARAM('\0', "template", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)

/* -j, --max-connections-per-host, --json and --csv, common to both verbs
   (exits on a bad value).  Without -j, jobs is twice the CPUs, at most
   16 (migrate-jobs.h); without --max-connections-per-host,
   MIGRATE_SPAWN_DEFAULT_MAX_CONNS_PER_HOST (0: no bound). */
#define MIGRATE_SPAWN_DEFAULT_MAX_CONNS_PER_HOST 16
void migrate_spawn_params(struct doveadm_cmd_context *cctx,
			  const char *cmd_name,
			  struct migrate_spawn_settings *set,
			  const char **json_path_r, const char **csv_path_r);

struct migrate_spawn *
migrate_spawn_init(const char *cmd_name,
		   const struct migrate_spawn_settings *set,
		   const struct migrate_spawn_vfuncs *v, void *context);
void migrate_spawn_deinit(struct migrate_spawn **spawn);

/* Read the template at path and check it: the file, then its destination
   users against the userdb (canonical names from there).  Returns 0 when
   all of it is valid; otherwise, with every problem logged, the exit code
   (and nothing must be changed). */
int migrate_spawn_read_template(struct migrate_spawn *spawn,
				const char *path);
/* batch: unless -j was given, set the jobs by migrate_jobs_default()
   from the CPUs, the accounts and the round trip to the first account's
   source, timed on one connection that never logs in (a NOOP after the
   greeting; with implicit TLS the TCP connect); either way log them and
   why, also as the event migrate_batch_jobs. */
void migrate_spawn_choose_jobs(struct migrate_spawn *spawn);
/* The measurement's connection sent its LOGOUT: it is closed once the
   server closed it (or after a while), in the ioloop that runs the
   accounts, between these two. */
void migrate_spawn_rtt_close_start(struct migrate_spawn *spawn);
void migrate_spawn_rtt_close_end(struct migrate_spawn *spawn);
/* doveadm-migrate-spawn-hosts.c: each account's source host; whether its
   child may start now (then it holds its connections until released);
   the hosts' summary lines. */
void migrate_spawn_hosts_assign(struct migrate_spawn *spawn);
bool migrate_spawn_host_take(struct migrate_spawn_account *acct);
void migrate_spawn_host_release(struct migrate_spawn_account *acct);
void migrate_spawn_hosts_log(struct migrate_spawn *spawn);
/* Before the run: every host's limit (the domain's). */
void migrate_spawn_hosts_set_limit(struct migrate_spawn *spawn,
				   unsigned int limit);
/* The account's run ended: ok, or a temporary failure.  Returns TRUE
   when the source pushed back (its error says so: too many connections,
   throttled, busy...) and the account is to run again once its host
   allows, as no attempt (at most MIGRATE_SPAWN_MAX_PUSHBACKS times);
   *retry_at_r then says when. */
bool migrate_spawn_host_ended(struct migrate_spawn_account *acct,
			      int exit_code, struct timeval *retry_at_r);
/* ", HOST: limit L/M" for each host below its limit (the live line) */
void migrate_spawn_hosts_progress(struct migrate_spawn *spawn, string_t *dest);
struct migrate_json;
void migrate_spawn_hosts_json(struct migrate_spawn *spawn,
			      struct migrate_json *json);
#define MIGRATE_SPAWN_MAX_PUSHBACKS 20

/* doveadm-migrate-spawn-backends.c: with doveadm_port set, each
   account's backend from the passdb (as doveadm finds it, through conn:
   auth-userdb), warning about
   backends the credentials would reach in plaintext beyond loopback;
   -1 when a lookup failed. */
struct auth_master_connection;
int migrate_spawn_backends_assign(struct migrate_spawn *spawn,
				  struct auth_master_connection *conn);
/* With backends: unless --jobs-per-backend was given, each runs
   node_jobs at once (what -j this node chose for itself), and unless -j
   was given, all of them together as many; *why (the reason -j gives)
   says so. */
void migrate_spawn_backends_jobs(struct migrate_spawn *spawn,
				 unsigned int node_jobs, const char **why);
bool migrate_spawn_backend_take(struct migrate_spawn_account *acct);
void migrate_spawn_backend_release(struct migrate_spawn_account *acct);
void migrate_spawn_backends_log(struct migrate_spawn *spawn);

/* Run every account until each is done. */
void migrate_spawn_run(struct migrate_spawn *spawn);
/* The exit code over all accounts (migrate_exit_code_merge()). */
int migrate_spawn_exit_code(const struct migrate_spawn *spawn);
/* --json and --csv (NULL: not asked for); -1 when one failed (logged). */
int migrate_spawn_write_reports(struct migrate_spawn *spawn,
				const char *json_path, const char *csv_path);

/* The account's counts over all its attempts. */
uint64_t migrate_spawn_account_copied(const struct migrate_spawn_account *acct);
uint64_t migrate_spawn_account_bytes(const struct migrate_spawn_account *acct);
/* What the operator reads for an exit code: "ok", "over quota"... */
const char *migrate_spawn_exit_class(int exit_code);
/* The row's source account, pointing into the row. */
void migrate_spawn_row_credentials(const struct migrate_template_row *row,
				   struct migrate_credentials *cred_r);

#endif
