#ifndef MIGRATE_ERROR_H
#define MIGRATE_ERROR_H

/* Why a run failed, in the order of precedence used for the exit code:
   a temporary failure wins over the others (it may go away by itself). */
enum migrate_error {
	MIGRATE_ERROR_NONE = 0,
	/* the run finished, but left out messages the destination or the
	   source refused (each one reported) */
	MIGRATE_ERROR_REJECTED,
	/* something failed that is not one of the below */
	MIGRATE_ERROR_FAILED,
	/* bad settings */
	MIGRATE_ERROR_CONFIG,
	/* the source refused the login */
	MIGRATE_ERROR_SOURCE_AUTH,
	/* TLS to the source failed: certificate not trusted, wrong name,
	   no TLS offered */
	MIGRATE_ERROR_SOURCE_TLS,
	/* the destination is over quota */
	MIGRATE_ERROR_DEST_QUOTA,
	/* too much would be deleted: refused without --force */
	MIGRATE_ERROR_DELETE_LIMIT,
	/* the source was unreachable, dropped the connection, timed out or
	   asked us to slow down: the run retries by itself */
	MIGRATE_ERROR_SOURCE_TEMP,
	/* lock held, a worker died, the retries ran out: re-run later */
	MIGRATE_ERROR_TEMP,
};

/* The sysexits code doveadm should exit with. */
int migrate_error_to_exit_code(enum migrate_error error);

/* The failure of a run that decides its exit code: of all errors, the
   one that matters most (a temporary failure wins). */
struct migrate_failure {
	enum migrate_error code;
	/* NULL while code is MIGRATE_ERROR_NONE */
	const char *error;
};
/* Log error to event and keep it (copied from pool) when it matters at
   least as much as the one kept so far. */
void migrate_failure_set(struct migrate_failure *failure, pool_t pool,
			 struct event *event, enum migrate_error code,
			 const char *error);

#endif
