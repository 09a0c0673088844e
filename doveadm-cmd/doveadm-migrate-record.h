#ifndef DOVEADM_MIGRATE_RECORD_H
#define DOVEADM_MIGRATE_RECORD_H

#include "migrate-error.h"
#include "migrate-record.h"

struct mail_user;
struct migrate_sync_stats;

/* The child's side of the result record (migrate-record.h).  From init
   on, the warnings and errors the process logs are also kept for the
   record of the user whose run is under way (username: -u's, or NULL
   until the first run begins), and a fatal error writes that user's
   record before the process ends.  fd -1: the record is printed, one
   field (the command came from a doveadm client, which writes it on its
   own fd). */
void migrate_record_writer_init(int fd, const char *username);
/* A user's run begins: what was kept for the one before is dropped. */
void migrate_record_user_begin(const char *username);
/* The user's run ended: write its record, with the destination's quota
   (quota plugin API).  error NULL with a failure: the last error logged;
   source_protocol "imap" or "pop3" (NULL: the run did not get to its
   source); tls NULL when the run did not get to its source's settings. */
void migrate_record_user_finish(struct mail_user *user,
				enum migrate_error error_code,
				const char *error, const char *mode,
				const struct migrate_sync_stats *stats,
				const char *source_protocol,
				const struct migrate_record_tls *tls);
/* The user's run went to a doveadm server, whose record was relayed:
   none of ours is wanted. */
void migrate_record_user_relayed(void);
/* A user whose run began but wrote no record (its user lookup failed...)
   gets a failed one with exit_code and the last error logged. */
void migrate_record_writer_deinit(int exit_code);

#endif
