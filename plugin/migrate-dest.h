#ifndef MIGRATE_DEST_H
#define MIGRATE_DEST_H

/* Our side of a migration, shared by the sync engine and archive/index:
   the destination's errors, the state's fsync rule, the UIDs of a commit,
   UID searches, and progress reports. */

#include "seq-range-array.h"
#include "mail-storage.h"
#include "migrate-error.h"

struct mail_user;
struct migrate_settings;

extern struct event_category event_category_migrate;

/* Where a long run is, for whoever shows it (doveadm-cmd draws it); the
   engine never writes to a terminal itself. */
struct migrate_progress {
	/* "sync", "archive", "index" */
	const char *what;
	/* the folder being worked on; its position and the folder count
	   when known (else 0) */
	const char *folder;
	unsigned int folder_idx, folder_count;
	/* its messages done and to do, and the time spent on it */
	unsigned int done, total;
	unsigned int folder_msecs;
	/* the whole run so far */
	unsigned int copied;
	uoff_t bytes;
	unsigned int elapsed_msecs;
	/* the folder is done: worth showing even right after another */
	bool folder_done;
};
/* Called often (after every message): the callback decides when to
   show something. */
typedef void migrate_progress_callback_t(const struct migrate_progress *progress,
					 void *context);

/* A failed operation ("Saving to", ...) on a destination mailbox: its
   error code (a full quota or file system is MIGRATE_ERROR_DEST_QUOTA)
   and message. */
enum migrate_error migrate_dest_error(struct mailbox *box, const char *what,
				      const char **error_r);

/* Whether the state is fdatasync()ed: never more durable than the mail
   itself (migrate_fsync and the user's mail_fsync). */
bool migrate_dest_state_fsync(struct mail_user *user,
			      const struct migrate_settings *set);

/* The largest message the destination takes from the source (by its
   RFC822.SIZE): migrate_max_message_size, or quota_max_mail_size when
   that is set and smaller.  *reason_r is why a larger one is left out,
   as reports give it. */
uoff_t migrate_dest_max_message_size(struct mail_user *user,
				     const struct migrate_settings *set,
				     const char **reason_r);

/* The user's storage quota, through the quota plugin's API: the first
   quota root with a storage resource.  Unknown (FALSE) when the user has
   no quota plugin. */
struct migrate_dest_quota {
	bool limited;
	uint64_t used_kb, limit_kb;
};
bool migrate_dest_quota_get(struct mail_user *user,
			    struct migrate_dest_quota *quota_r);

/* The UIDs a commit gave to its count saves, in save order, into
   dest_uids.  Fails when the commit did not return one UID per save. */
int migrate_dest_saved_uids(struct mailbox *box,
			    const struct mail_transaction_commit_changes *changes,
			    unsigned int count, ARRAY_TYPE(uint32_t) *dest_uids,
			    const char **error_r);

/* Search every message of the transaction's mailbox. */
struct mail_search_context *
migrate_search_all(struct mailbox_transaction_context *t,
		   enum mail_fetch_field wanted_fields);
/* Search the messages with the given UIDs. */
struct mail_search_context *
migrate_search_uids(struct mailbox_transaction_context *t,
			 const ARRAY_TYPE(seq_range) *uids,
			 enum mail_fetch_field wanted_fields,
			 struct mailbox_header_lookup_ctx *wanted_headers);

/* Before saving into box: its cache file, empty, where it has none.
   Dovecot 2.3 tries to open a missing dovecot.index.cache again for
   every message it saves (twice in a new Maildir folder); once the file
   exists it is opened once.  Failing only costs those opens. */
void migrate_dest_cache_prepare(struct mailbox *box);

enum migrate_dest_save_result {
	MIGRATE_DEST_SAVE_OK,
	/* the destination failed (its error is the mailbox's) */
	MIGRATE_DEST_SAVE_FAILED,
	/* reading input failed: nothing is saved */
	MIGRATE_DEST_SAVE_INPUT_FAILED,
};
/* Save input whole with *save (consumed), or nothing of it. */
enum migrate_dest_save_result
migrate_dest_save_stream(struct mail_save_context **save,
			 struct istream *input);

#endif
