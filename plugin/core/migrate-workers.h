#ifndef MIGRATE_WORKERS_H
#define MIGRATE_WORKERS_H

/* Worker processes that copy whole folders for one account while the
   process that owns the account's state goes on with the others.  A worker
   is "doveadm migrate worker -u USER", started by the owner as root; it
   reads one job per line on its stdin and answers on its stdout:

     owner -> worker   CRED <credentials>        first line, or NOCRED
                       COPY <job fields...>       see migrate-sync.c
     worker -> owner   P <messages done>          now and then during a job
                       DONE <result fields...>    the job's last line
                       FAIL <result fields...>

   End of stdin ends the worker.  Only the owner writes the state: the
   worker's copies carry the GUIDs that tell the owner which source message
   each one is (the owner's crash recovery reads the same GUIDs). */

struct migrate_workers;

struct migrate_workers *migrate_workers_create(void);
/* Close every worker's stdin (so that it exits) and wait for them. */
void migrate_workers_destroy(struct migrate_workers **workers);

/* Prepare a worker: path run with argv, its stdin and stdout pipes to us,
   its stderr ours.  Only a fork now: the exec comes with the first job,
   which is preceded by first_line. */
int migrate_workers_spawn(struct migrate_workers *workers, const char *path,
			  const char *const *argv, const char *first_line,
			  const char **error_r);
/* Start the workers not started yet, and have them log in to the source
   (MIGRATE_WORKER_LOGIN_LINE), before any job: for a run that will give
   them jobs (its first), so that they are ready when it does. */
void migrate_workers_wake(struct migrate_workers *workers);
#define MIGRATE_WORKER_LOGIN_LINE "LOGIN"
unsigned int migrate_workers_count(const struct migrate_workers *workers);
/* Workers alive and without a job. */
unsigned int migrate_workers_idle(const struct migrate_workers *workers);
/* Jobs given and not yet answered. */
unsigned int migrate_workers_running(const struct migrate_workers *workers);

/* Give the job line (without LF) to an idle worker, with context to find it
   again.  Returns FALSE when no worker is idle or the write failed (the
   worker is then dropped). */
bool migrate_workers_submit(struct migrate_workers *workers,
			    const char *line, void *context);

/* The answer of a job: returns 1 with its context and last line (DONE or
   FAIL ..., or NULL when the worker died without answering); 0 when no job
   has ended (only without block; with block, waits at most timeout_msecs,
   then returns 0); -1 when no job is running. */
int migrate_workers_next_result(struct migrate_workers *workers, bool block,
				unsigned int timeout_msecs,
				void **context_r, const char **line_r);

/* Kill the workers that have a job (SIGKILL: what they saved is found
   by its GUIDs, as after a crash); their answers come as deaths. */
void migrate_workers_kill_busy(struct migrate_workers *workers);

/* The messages done so far by the running job of context, from its P
   lines. */
unsigned int migrate_workers_progress(const struct migrate_workers *workers,
				      const void *context);

#endif
