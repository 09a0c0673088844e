#ifndef MIGRATE_ERROR_H
#define MIGRATE_ERROR_H

/* Why a run failed, in the one order of precedence used everywhere: for
   the failure of a run (migrate_failure_set()) and for the exit code over
   several users or accounts (migrate_exit_code_merge()).  What matters
   more comes later: a temporary failure wins over the others (re-running
   may be all it takes, and a re-run shows what else is left), then the
   classes that need the admin, the most fundamental first; a failure
   without a class ranks below them all.  REJECTED, FAILED and TEMP keep
   their places at the ends: code compares against them. */
enum migrate_error {
	MIGRATE_ERROR_NONE = 0,
	/* the run finished, but left out messages the destination or the
	   source refused (each one reported) */
	MIGRATE_ERROR_REJECTED,
	/* something failed that is not one of the below: an unexpected
	   error of the destination's storage or of this tool.  Progress is
	   kept and nothing partial is, so it exits as a temporary failure
	   (as doveadm's own commands do for a storage's internal error),
	   but ranks below every other class within a run */
	MIGRATE_ERROR_FAILED,
	/* too much would be deleted: refused without --force */
	MIGRATE_ERROR_DELETE_LIMIT,
	/* the source is beyond a bound an admin must raise first: more
	   folders than migrate_max_folders */
	MIGRATE_ERROR_SOURCE_LIMIT,
	/* the destination is over quota */
	MIGRATE_ERROR_DEST_QUOTA,
	/* TLS to the source failed: certificate not trusted, wrong name,
	   no TLS offered */
	MIGRATE_ERROR_SOURCE_TLS,
	/* the source refused the login */
	MIGRATE_ERROR_SOURCE_AUTH,
	/* bad settings */
	MIGRATE_ERROR_CONFIG,
	/* the source was unreachable, dropped the connection, timed out or
	   asked us to slow down: the run retries by itself */
	MIGRATE_ERROR_SOURCE_TEMP,
	/* lock held, a worker died, the retries ran out: re-run later */
	MIGRATE_ERROR_TEMP,
};

/* The sysexits code doveadm should exit with. */
int migrate_error_to_exit_code(enum migrate_error error);
/* exit_code when it is one of the documented codes (README, "Output and
   exit codes": 0, 64, 65, 66, 67, 73, 75, 76, 77, 78), else EX_TEMPFAIL:
   what ended a process otherwise (a crash, a fatal error, a child that
   could not start) kept what it had done and left nothing partial, so a
   re-run goes on. */
int migrate_exit_code_normalize(int exit_code);
/* Whether a source's words (an error, a refusal, a BYE) push back: too
   many connections, throttled, busy, unavailable, a rate limit
   (providers' words: Gmail, Exchange, Yahoo, Dovecot's own). */
bool migrate_error_is_pushback(const char *text);
/* The error's name in reports: "none", "rejected", "source_auth"... */
const char *migrate_error_name(enum migrate_error error);

/* Of two exit codes, the one to exit with: the one whose class comes
   later in enum migrate_error (65 ranks as the delete limit, 75 as a
   temporary failure; a code no class maps to, such as 64, 66 or 67, as
   MIGRATE_ERROR_FAILED); cur on a tie.  0 is no failure. */
int migrate_exit_code_merge(int cur, int next);

/* The failure of a run that decides its exit code: of all errors, the
   one that matters most (a temporary failure wins). */
struct migrate_failure {
	enum migrate_error code;
	/* NULL while code is MIGRATE_ERROR_NONE */
	const char *error;
};
/* Log error to event and keep it (copied from pool) when it matters at
   least as much as the one kept so far; its control characters escaped
   (migrate_text_escape()) in both. */
void migrate_failure_set(struct migrate_failure *failure, pool_t pool,
			 struct event *event, enum migrate_error code,
			 const char *error);

#endif
