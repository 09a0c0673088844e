#ifndef MIGRATE_SOURCE_H
#define MIGRATE_SOURCE_H

#include "mail-error.h"
#include "migrate-error.h"

struct mailbox;
struct mail_user;
struct mail_storage_service_ctx;
struct mail_storage_service_user;
struct migrate_settings;

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
