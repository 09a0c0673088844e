#ifndef MIGRATE_SYNC_H
#define MIGRATE_SYNC_H

#include "migrate-settings.h"
#include "migrate-source.h"
#include "migrate-dest.h"

struct mail_user;
struct migrate_settings;
struct migrate_workers;

/* A message the run left out: the destination refused to store it, or
   the source refused to give it. */
struct migrate_sync_rejected {
	const char *folder;
	uint32_t uid;
	uoff_t size;
	const char *reason;
};

struct migrate_sync_dropped_keyword {
	const char *keyword;
	/* messages that lost it */
	unsigned int count;
};

struct migrate_sync_retry {
	unsigned int delay_secs;
	const char *error;
};

/* What an operator needs besides the counts, for the report file: every
   message left out, every keyword dropped, every retry. */
struct migrate_sync_report {
	pool_t pool;
	ARRAY(struct migrate_sync_rejected) rejected;
	ARRAY(struct migrate_sync_dropped_keyword) dropped_keywords;
	ARRAY(struct migrate_sync_retry) retries;
};

struct migrate_sync_report *migrate_sync_report_init(void);
void migrate_sync_report_deinit(struct migrate_sync_report **report);
void migrate_sync_report_rejected(struct migrate_sync_report *report,
				  const char *folder, uint32_t uid,
				  uoff_t size, const char *reason);
void migrate_sync_report_keyword(struct migrate_sync_report *report,
				 const char *keyword, unsigned int count);

enum migrate_sync_mode {
	/* the syncs before cutover: the destination becomes an exact mirror
	   of the source (copy what is new, update flags, delete copies of
	   what the source proves gone) */
	MIGRATE_SYNC_MODE_MIRROR = 0,
	/* the final sync after cutover: copy only what reached the source
	   since the last complete sync (above each folder's UID high-water
	   mark, and never copied before); never delete, never change
	   flags, never copy again what the user deleted here */
	MIGRATE_SYNC_MODE_FINAL,
};

struct migrate_sync_options {
	enum migrate_sync_mode mode;
	/* report what would be done, change nothing */
	bool dry_run;
	/* delete even when more than migrate_max_delete_percent of the
	   account would go */
	bool force;
	/* told where the run is, or NULL */
	migrate_progress_callback_t *progress_callback;
	void *progress_context;
	/* final sync: instead of the high-water marks, every message whose
	   INTERNALDATE is within this many days, still never copied twice */
	unsigned int maxage_days;
	/* worker processes (migrate-workers.h) that copy folders of this
	   account in parallel, or NULL */
	struct migrate_workers *workers;
	/* filled when not NULL */
	struct migrate_sync_report *report;
};

struct migrate_sync_stats {
	unsigned int folders;
	unsigned int folders_unchanged;
	unsigned int folders_created;
	unsigned int folders_renamed;
	unsigned int folders_deleted;

	unsigned int messages_copied;
	unsigned int messages_updated;
	unsigned int messages_deleted;
	/* gone from the source between listing and fetching */
	unsigned int messages_skipped;
	/* left out: refused by the destination or by the source (listed in
	   the report) */
	unsigned int messages_rejected;
	/* foreign messages at the destination, left alone */
	unsigned int messages_foreign;
	/* copied earlier but only now found in the destination (crash
	   between commit and state write) */
	unsigned int messages_recovered;
	unsigned int flags_dropped;
	uoff_t bytes_copied;
	/* planned deletions that were not made (limit or errors) */
	unsigned int deletes_withheld;
	/* copies that did not keep their source UID and UIDVALIDITY (a mail
	   client's cache of the source does not know them: it downloads them
	   again), and the folders that have any */
	unsigned int messages_uid_changed;
	unsigned int folders_uid_changed;
	/* copies of INBOX given the source's POP3 UIDL by this run, and
	   POP3 messages that matched no copy (migrate_source_pop3) */
	unsigned int messages_pop3_uidl;
	unsigned int messages_pop3_unmatched;
	/* copies of INBOX with a source UIDL that the POP3 server here lists
	   out of the source's POP3 order (all but the longest run kept in
	   order), counted by a run that gives UIDLs (migrate_source_pop3) */
	unsigned int messages_pop3_order_differs;
	/* times the run lost the source and went on after a pause */
	unsigned int retries;
	unsigned int total_msecs;
};

/* Add the counts of one pass (src) to the run's (dest): messages and
   bytes add up, the folder counts are those of the last pass. */
void migrate_sync_stats_add(struct migrate_sync_stats *dest,
			    const struct migrate_sync_stats *src);

/* Which protocol an account's run reads its source with, before it
   connects: set->source_protocol, but with auto the account's state
   decides when it has one (IMAP for an account migrated over IMAP, POP3
   for one migrated over POP3 only; *why_r says so); otherwise auto stays,
   for migrate_source_init() to try IMAP.  Returns -1 with *error_r
   (MIGRATE_ERROR_CONFIG) when set->source_protocol would read the account
   in the other way than it was migrated: it would copy its mail again.
   A state directory that is not there (an account never migrated:
   nothing is created for it here) or a state that cannot be opened now
   (locked) decides nothing: the run reports the latter. */
int migrate_sync_choose_protocol(const struct migrate_settings *set,
				 enum migrate_source_protocol *protocol_r,
				 const char **why_r, const char **error_r);

/* Mirror every selected folder of the source into dest_user.  Returns 0 on
   complete success, -1 otherwise with *error_code_r and *error_r of the
   failure that decides the exit code.  Stats are filled either way. */
int migrate_sync_run(struct mail_user *dest_user,
		     struct migrate_source *source,
		     const struct migrate_settings *set,
		     const struct migrate_sync_options *opts,
		     struct migrate_sync_stats *stats_r,
		     enum migrate_error *error_code_r, const char **error_r);

/* The worker's side of migrate-workers.h: do one job line of the owner
   and answer on out_fd.  Returns the job's failure code
   (MIGRATE_ERROR_NONE when done). */
enum migrate_error
migrate_sync_worker_job(struct mail_user *dest_user,
			struct migrate_source *source,
			const struct migrate_settings *set,
			const char *line, int out_fd);
/* Answer a job with a failure without doing it (no source). */
void migrate_sync_worker_fail(int out_fd, enum migrate_error code,
			      const char *error);

#endif
