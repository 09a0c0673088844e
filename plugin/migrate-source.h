#ifndef MIGRATE_SOURCE_H
#define MIGRATE_SOURCE_H

#include "mail-error.h"

struct mailbox;
struct mail_user;
struct mail_storage_service_ctx;
struct mail_storage_service_user;
struct migrate_settings;

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

/* Progress lines: on a terminal a line redrawn every second, in a log a
   line now and then.  Returns TRUE (and moves *last) when one is due. */
bool migrate_progress_due(struct timeval *last, bool tty, bool force);
/* A failed operation ("Saving to", ...) on a destination mailbox: its
   error code (a full quota is MIGRATE_ERROR_DEST_QUOTA) and message. */
enum migrate_error migrate_error_from_dest(struct mailbox *box,
					   const char *what,
					   const char **error_r);
/* error, with the cause imapc logged when error is only Dovecot's generic
   "Internal error occurred" (while a source is in use). */
const char *migrate_source_explain_error(const char *error);
/* Classify a storage error of the source. */
enum migrate_error migrate_error_from_source(enum mail_error error,
					     const char *errstr);

struct migrate_source {
	/* the source as a mail user on imapc storage */
	struct mail_user *user;
	struct migrate_resolver *resolver;
	/* base_dir whose dns-client socket the resolver answers, or NULL */
	char *resolver_dir;
	/* its error log lines are watched (migrate_source_explain_error()) */
	bool watching;
};

/* Create a mail user for reading the remote source over imapc, from the
   destination user's migrate settings.  The password goes straight into
   the imapc settings: it is never a userdb field, so even mail_debug
   does not log it.  The source is logged in to at once, so a refused
   login is reported here as MIGRATE_ERROR_SOURCE_AUTH. */
int migrate_source_init(struct mail_storage_service_ctx *service_ctx,
			struct mail_storage_service_user *dest_service_user,
			struct mail_user *dest_user,
			const struct migrate_settings *set,
			struct migrate_source **source_r,
			enum migrate_error *error_code_r,
			const char **error_r);
void migrate_source_deinit(struct migrate_source **source);

#endif
