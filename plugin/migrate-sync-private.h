#ifndef MIGRATE_SYNC_PRIVATE_H
#define MIGRATE_SYNC_PRIVATE_H

/* The sync engine's shared context, for its parts:
   migrate-sync.c         the run: folders in order, errors, progress
   migrate-sync-tree.c    the source's folder tree: listing, names,
                          subscriptions, renames
   migrate-sync-mailbox.c one folder: status, destination scan, flag pass,
                          archived copies, completion
   migrate-sync-import.c  the copy: plan, fetch, save, commit, rematch
   migrate-sync-gmail.c   Gmail's labels and views
   migrate-sync-pop3.c    the source's POP3 UIDLs for the copies of INBOX
   migrate-sync-delete.c  what the source proved gone
   migrate-sync-worker.c  both ends of the worker protocol */

#include "hash.h"
#include "seq-range-array.h"
#include "mail-storage.h"
#include "migrate-settings.h"
#include "migrate-names.h"
#include "migrate-state.h"
#include "migrate-source.h"
#include "migrate-dest.h"
#include "migrate-sync.h"

/* a folder may always lose this many messages, whatever
   migrate_max_delete_percent says of the folder (the limit of the whole
   account still holds) */
#define MIGRATE_SYNC_FOLDER_DELETE_MIN 10

struct mail_namespace;
struct mail_search_context;
struct mailbox_header_lookup_ctx;
struct sync_gmail_copy;

struct migrate_sync_folder {
	const char *src_name;
	const char *dest_name;
	bool subscribed;
	bool selected;

	struct migrate_state_folder *state;
	struct mailbox_status src_status;

	/* deletions planned for the end of the run */
	ARRAY_TYPE(seq_range) delete_src_uids;
	/* messages of a previous UIDVALIDITY, not matched to the new one */
	ARRAY_TYPE(seq_range) delete_orphan_dest_uids;
	/* destination messages without our GUID saved in a batch that a
	   crash interrupted: ours if their content matches a source message */
	ARRAY_TYPE(seq_range) recover_dest_uids;
	/* a worker copies this folder's messages, this many */
	bool delegated;
	unsigned int delegated_count;
	/* the worker's answer: its copies of these source UIDs got the
	   destination UIDs from worker_map_first on, one after the other
	   (0: it did not say) */
	uint32_t worker_map_first;
	ARRAY_TYPE(seq_range) worker_map_src;
	/* the source UIDs this run set out to copy: once the copy is over,
	   each is mapped, left out or gone from the source */
	ARRAY_TYPE(seq_range) copying_uids;
	/* messages left out by this run: the folder is not complete */
	unsigned int rejected;
	/* messages the source no longer had when we fetched them: the
	   folder is not complete until a run sees them gone */
	unsigned int skipped;
	/* a second look found messages that the pass did not see: their
	   copies stay and the folder is not complete */
	bool deletes_unconfirmed;
	/* delete_src_uids were found gone by our own connection's UID
	   SEARCH in an EXAMINE of this run (the listing of the changes):
	   that was the second look */
	bool deletes_confirmed;
	/* Gmail's All Mail: copied into our Archive, only the messages
	   that carry no label */
	bool gmail_all;
	/* a copy in it did not keep its source UID (counted once) */
	bool uid_changed;
};

ARRAY_DEFINE_TYPE(migrate_sync_folder_p, struct migrate_sync_folder *);

/* what this process does in the run */
enum sync_role {
	/* it owns the account's state: lists the source, plans, copies
	   (itself or through workers), deletes, commits the state */
	SYNC_ROLE_OWNER = 0,
	/* a worker process: copies the folders its owner hands it and
	   answers with what it did; it has no state */
	SYNC_ROLE_WORKER,
};

struct migrate_sync_ctx {
	pool_t pool;
	enum migrate_sync_mode mode;
	enum sync_role role;
	/* change nothing, count what a real run would do */
	bool dry_run;
	struct event *event;
	struct mail_user *dest_user;
	struct migrate_source *source;
	struct mail_namespace *src_ns;
	char src_sep;
	const char *src_prefix;
	/* how source names become ours (migrate-names.h) */
	struct migrate_name_params name_params;
	const struct migrate_settings *set;
	/* fdatasync the state: never more durable than the mail itself */
	bool state_fsync;
	const struct migrate_sync_options *opts;
	struct migrate_sync_stats *stats;
	struct migrate_state *state;

	ARRAY(struct migrate_sync_folder) folders;
	/* every name the source listed, selected or not */
	HASH_TABLE(const char *, void *) src_names;
	ARRAY(struct migrate_state_folder *) gone_folders;

	struct migrate_failure failure;
	/* of stats->messages_rejected, whole folders */
	unsigned int folders_rejected;

	struct timeval start, folder_start;
	unsigned int folder_idx;
	/* the folders in the order they are synced (folder_idx counts
	   them), and whether the next one's listing was asked for while
	   the current one was copied */
	ARRAY(struct migrate_sync_folder *) order;
	bool next_listing_asked;
	/* the next folders new to this run, listed ahead (in their order),
	   and the copies asked for ahead of their turn (of some of them) */
	ARRAY(struct migrate_sync_folder *) next_new_folders;
	ARRAY(struct sync_copy_ahead *) copy_aheads;
	const char *progress_folder;
	unsigned int progress_done, progress_total;

	/* in a worker: the owner reads our answers here */
	int worker_out_fd;
	/* in a worker: the source UIDs our commits saved, in order, and the
	   destination UIDs they got from worker_map_first on, while they
	   follow each other (worker_map_broken once they do not) */
	uint32_t worker_map_first, worker_map_next;
	ARRAY_TYPE(seq_range) worker_map_src;
	bool worker_map_broken;
	/* times the migrate_debug_kill step was reached */
	unsigned int debug_kill_seen;

	/* the source is Gmail: a message is in every folder of its labels
	   (with the same X-GM-MSGID, which imapc gives as the GUID) */
	bool gmail;
	/* GUID -> every source folder and UID it is in, built when a first
	   folder has something to copy */
	HASH_TABLE(const char *, struct sync_gmail_copy *) gmail_guids;
	bool gmail_guids_failed;
	struct timeval last_worker_progress;
};

/* saves not committed yet */
/* A source message to copy: what its save needs besides its body */
struct migrate_sync_msg {
	uint32_t uid;
	enum mail_flags flags;
	const char *const *keywords;
	/* its RFC822.SIZE (0: not known) */
	uoff_t size;
	/* its folder, as the source storage names it */
	const char *mailbox;
	/* the source storage's view of it (NULL: our own connection's
	   listing described it, the storage has not opened the folder) */
	struct mail *mail;
};

struct migrate_sync_batch {
	struct mailbox_transaction_context *t;
	uoff_t bytes;
	/* the source UIDs saved in this batch, in save order */
	ARRAY(uint32_t) src_uids;
};

/* migrate-sync.c */
void migrate_sync_ctx_init(struct migrate_sync_ctx *ctx, enum sync_role role,
			   struct mail_user *dest_user,
			   struct migrate_source *source,
			   const struct migrate_settings *set,
			   const struct migrate_sync_options *opts,
			   struct migrate_sync_stats *stats);
/* migrate_debug_kill: die at this step */
void migrate_sync_kill_point(struct migrate_sync_ctx *ctx, const char *step);
/* Keep the failure that decides the run's exit code (and log it). */
void migrate_sync_set_error(struct migrate_sync_ctx *ctx,
			    enum migrate_error code, const char *error);
void migrate_sync_set_dest_error(struct migrate_sync_ctx *ctx,
				 struct mailbox *box, const char *what);
void migrate_sync_set_source_error(struct migrate_sync_ctx *ctx,
				   struct mailbox *box, const char *what);
/* A message left out, with why (logged, counted, reported). */
void migrate_sync_reject(struct migrate_sync_ctx *ctx,
			 struct migrate_sync_folder *f, uint32_t uid,
			 uoff_t size, const char *reason);
/* A whole folder left out (uid 0 in the report). */
void migrate_sync_reject_folder(struct migrate_sync_ctx *ctx,
				const char *folder, const char *reason);
/* Whether the source was given up (migrate_source_check()): then the run
   stops talking to it. */
bool migrate_sync_source_given_up(struct migrate_sync_ctx *ctx);
/* At the end of a run or job: a source given up is the failure, whatever
   failed after it (it failed because of it). */
void migrate_sync_given_up_failure(struct migrate_sync_ctx *ctx);
/* Tell opts->progress_callback (or a worker's owner) where the run is. */
void migrate_sync_progress(struct migrate_sync_ctx *ctx);
struct mailbox *
migrate_sync_dest_alloc(struct migrate_sync_ctx *ctx, const char *name);
/* UIDs for a log line: the IMAP set, cut after 200 characters */
const char *migrate_sync_uids_str(const ARRAY_TYPE(seq_range) *uids);

/* migrate-sync-tree.c */
/* List the source's folders, give each its destination name. */
int migrate_sync_tree_list(struct migrate_sync_ctx *ctx);
/* Folders of the state the source no longer lists: renamed (renamed
   here too) or gone (ctx->gone_folders). */
void migrate_sync_tree_find_gone(struct migrate_sync_ctx *ctx);
/* Subscribe here to what the user had subscribed at the source. */
void migrate_sync_tree_subscribe(struct migrate_sync_ctx *ctx);

/* migrate-sync-mailbox.c */
int migrate_sync_mailbox_status(struct migrate_sync_ctx *ctx,
				struct migrate_sync_folder *f);
/* The listings of the next folders (those the owner will list itself), up
   to MIGRATE_SYNC_LISTINGS_AHEAD of them and as many as it takes to reach
   MIGRATE_SYNC_LISTINGS_AHEAD_MESSAGES, are asked for behind the current
   folder's (once per folder): each is in when the folder before it is
   copied, and that folder's first messages can be asked for then. */
#define MIGRATE_SYNC_LISTINGS_AHEAD 4
#define MIGRATE_SYNC_LISTINGS_AHEAD_MESSAGES 50000
void migrate_sync_list_next_ahead(struct migrate_sync_ctx *ctx);
int migrate_sync_mailbox(struct migrate_sync_ctx *ctx,
			 struct migrate_sync_folder *f);
/* After the copy: map what reached the destination since the last scan,
   and record the folder as complete unless deletions are pending. */
int migrate_sync_mailbox_finish(struct migrate_sync_ctx *ctx,
				struct migrate_sync_folder *f,
				struct mailbox *dbox);
/* The same without dbox, when the copies are mapped already (a worker
   said which UIDs they got, and nothing else arrived meanwhile). */
int migrate_sync_mailbox_finish_mapped(struct migrate_sync_ctx *ctx,
				       struct migrate_sync_folder *f);
void migrate_sync_mailbox_set_complete(struct migrate_sync_ctx *ctx,
				       struct migrate_sync_folder *f);
/* A pass that gives our copies of f's messages in dbox (NULL in a dry
   run without a destination folder yet) the source's flags and keywords
   (counted only, in a dry run).  _msg() returns FALSE when uid has no
   copy here (never copied, or deleted here behind our back: its mapping
   is dropped), so it is to be copied. */
struct migrate_sync_flags_pass *
migrate_sync_flags_pass_init(struct migrate_sync_ctx *ctx,
			     struct migrate_sync_folder *f,
			     struct mailbox *dbox);
bool migrate_sync_flags_pass_msg(struct migrate_sync_flags_pass *pass,
				 uint32_t uid, enum mail_flags flags,
				 const char *const *keywords);
int migrate_sync_flags_pass_finish(struct migrate_sync_flags_pass **pass);

/* migrate-sync-listed.c */
/* Whether f can be synced from our own connection's listing: a mirror
   with nothing to find again from earlier runs. */
bool migrate_sync_listing_possible(struct migrate_sync_ctx *ctx,
				   const struct migrate_sync_folder *f);
/* The HIGHESTMODSEQ f's changes are listed from; 0 when they cannot be
   (never synced completely: f is listed whole; a source without
   HIGHESTMODSEQ, or one whose HIGHESTMODSEQ did not grow: the storage
   lists f). */
uint64_t migrate_sync_listing_changedsince(const struct migrate_sync_folder *f);
/* Sync f from our own connection's listing (asked for with
   migrate_source_sizes_ask()): 1 when the folder is done (or a worker
   has it), 0 when there is no such listing (the storage lists the
   folder), -1 on error.  empty: a folder listed whole whose STATUS
   counted no message, for which nothing was asked. */
int migrate_sync_listed(struct migrate_sync_ctx *ctx,
			struct migrate_sync_folder *f, struct mailbox *dbox,
			bool empty);

/* Copy copy_uids of f (recorded as what this run set out to copy): by a
   worker when may_delegate and one is idle (*delegated_r: its answer
   finishes the folder), else here with migrate_sync_import(). */
int migrate_sync_mailbox_copy(struct migrate_sync_ctx *ctx,
			      struct migrate_sync_folder *f,
			      struct mailbox *sbox, struct mailbox *dbox,
			      const ARRAY_TYPE(seq_range) *copy_uids,
			      bool may_delegate, bool *delegated_r);
/* The source storage's folder src_name, opened (NULL on failure, with
   the error set). */
struct mailbox *
migrate_sync_source_open(struct migrate_sync_ctx *ctx, const char *src_name);

/* migrate-sync-import.c */
/* Returns TRUE and the source UID when guid is one that we gave to a copy
   of this folder's current UIDVALIDITY. */
bool migrate_sync_guid_parse(const struct migrate_state_folder *state,
			     const char *guid, uint32_t *src_uid_r);
/* keywords without those box refuses */
const char *const *
migrate_sync_valid_keywords(struct mailbox *box, const char *const *keywords);
struct mail_keywords *
migrate_sync_keywords(struct migrate_sync_ctx *ctx, struct mailbox *dbox,
		      const char *const *keywords);
/* Copy copy_uids of f from sbox into dbox.  sbox may be NULL: then the
   copy takes the messages' flags and sizes from our own connection's
   listing of the folder (migrate_source_listing()) when it has them all,
   and the storage opens the folder only when it must (the listing does
   not have them all, or our own connection fails to bring a body). */
int migrate_sync_import(struct migrate_sync_ctx *ctx,
			struct migrate_sync_folder *f, struct mailbox *sbox,
			struct mailbox *dbox,
			const ARRAY_TYPE(seq_range) *copy_uids);
/* Drop the copies asked for ahead that no folder took (the run's
   folders are done). */
void migrate_sync_import_ahead_drop(struct migrate_sync_ctx *ctx);
/* A dry run: what the copy would do, from the sizes only. */
int migrate_sync_import_dry_run(struct migrate_sync_ctx *ctx,
				struct mailbox *sbox,
				const ARRAY_TYPE(seq_range) *uids);
/* msg described by the source storage's mail */
void migrate_sync_msg_from_mail(struct migrate_sync_msg *msg_r,
				struct mail *mail);
/* Save msg's body from input into the batch (committed when full). */
int migrate_sync_import_save(struct migrate_sync_ctx *ctx,
			     struct migrate_sync_folder *f,
			     struct mailbox *dbox,
			     struct migrate_sync_batch *batch,
			     const struct migrate_sync_msg *msg,
			     struct istream *input, time_t received);
int migrate_sync_import_commit(struct migrate_sync_ctx *ctx,
			       struct migrate_sync_folder *f,
			       struct mailbox *dbox,
			       struct migrate_sync_batch *batch);
/* migrate-sync-pop3.c: keep the source's POP3 UIDLs with the copies of
   INBOX (migrate_source_pop3) */
void migrate_sync_pop3(struct migrate_sync_ctx *ctx);
/* ... and a source with POP3 only: its INBOX, by UIDL */
void migrate_sync_pop3_only(struct migrate_sync_ctx *ctx);
/* Of uids (the copies' UIDs in the source's POP3 order), those out of
   order: all but the longest run kept in order. */
unsigned int migrate_sync_pop3_out_of_order(const ARRAY_TYPE(uint32_t) *uids);
/* 0 when the source's protocol fits how the account was migrated so
   far; else -1 with the run's error set (MIGRATE_ERROR_CONFIG). */
int migrate_sync_protocol_check(struct migrate_sync_ctx *ctx);
/* Find copies made earlier among candidates (destination UIDs) by
   content. */
const char *migrate_sync_mail_match_key(struct mail *mail, bool *weak_r);
/* Keys (content keys, header hashes) and what each stands for; the value
   of a key two messages share when it must match nothing */
HASH_TABLE_DEFINE_TYPE(migrate_sync_keys, const char *, void *);
#define MIGRATE_SYNC_KEY_AMBIGUOUS POINTER_CAST(0)
/* Add key (with value) to keys; seen again, a weak key becomes ambiguous
   and a strong one keeps its first value (copies of one message). */
void migrate_sync_key_add(pool_t pool, HASH_TABLE_TYPE(migrate_sync_keys) keys,
			  const char *key, bool weak, void *value);
/* Record that src_uid was copied to dest_uid, counting a copy that lost
   its source UID or UIDVALIDITY. */
void migrate_sync_map_copy(struct migrate_sync_ctx *ctx,
			   struct migrate_sync_folder *f,
			   uint32_t src_uid, uint32_t dest_uid);
/* Count messages copies that would lose their source UIDs (a dry run). */
void migrate_sync_count_uid_changed(struct migrate_sync_ctx *ctx,
				    struct migrate_sync_folder *f,
				    unsigned int messages);
int migrate_sync_import_rematch(struct migrate_sync_ctx *ctx,
				struct migrate_sync_folder *f,
				struct mailbox *sbox, struct mailbox *dbox,
				ARRAY_TYPE(seq_range) *copy_uids,
				ARRAY_TYPE(seq_range) *candidates,
				const char *what);

/* migrate-sync-gmail.c */
bool migrate_sync_gmail_detect(struct migrate_sync_ctx *ctx);
void migrate_sync_gmail_select(struct migrate_sync_ctx *ctx,
			       ARRAY_TYPE(const_string) *special_uses);
const char *migrate_sync_gmail_strip_prefix(const char *name, char sep);
int migrate_sync_gmail_import(struct migrate_sync_ctx *ctx,
			      struct migrate_sync_folder *f,
			      struct mailbox *sbox, struct mailbox *dbox,
			      ARRAY_TYPE(seq_range) *copy_uids);
void migrate_sync_gmail_deinit(struct migrate_sync_ctx *ctx);

/* migrate-sync-delete.c */
/* Delete what the run proved gone from the source. */
void migrate_sync_delete(struct migrate_sync_ctx *ctx);
/* Expunge the given destination UIDs (all copied by us). */
int migrate_sync_expunge(struct migrate_sync_ctx *ctx, struct mailbox *dbox,
			 const ARRAY_TYPE(seq_range) *dest_uids);
/* Expunge the copies of these map entries that were moved elsewhere. */
int migrate_sync_expunge_moved(struct migrate_sync_ctx *ctx,
			       const ARRAY_TYPE(migrate_uid_map) *maps);

/* migrate-sync-worker.c */
void migrate_sync_worker_send_progress(struct migrate_sync_ctx *ctx);
/* Whether a worker would take a folder of count messages to copy now,
   once taken folders went to idle workers before it */
bool migrate_sync_worker_would_take(struct migrate_sync_ctx *ctx,
				    unsigned int count, unsigned int taken);
/* Give the copy to an idle worker: TRUE when one took it. */
bool migrate_sync_worker_delegate(struct migrate_sync_ctx *ctx,
				  struct migrate_sync_folder *f,
				  struct mailbox *dbox,
				  const ARRAY_TYPE(seq_range) *copy_uids,
				  unsigned int count, unsigned int all_count);
/* Take the answers of the workers that are done; with wait, of all. */
void migrate_sync_worker_collect(struct migrate_sync_ctx *ctx, bool wait);

#endif
