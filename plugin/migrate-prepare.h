#ifndef MIGRATE_PREPARE_H
#define MIGRATE_PREPARE_H

#include "migrate-dest.h"

struct mail_user;
struct migrate_settings;

/* Before cutover: big INBOX and Sent folders are split into per-year
   folders (archive), and every folder is full-text indexed (index). */

struct migrate_prepare_options {
	/* archive: report what would move, change nothing */
	bool dry_run;
	/* told where the run is, or NULL */
	migrate_progress_callback_t *progress_callback;
	void *progress_context;
};

struct migrate_archive_stats {
	/* INBOX and Sent looked at, and those above the threshold */
	unsigned int folders_checked;
	unsigned int folders_archived;
	/* year folders created */
	unsigned int folders_created;
	unsigned int messages_moved;
	/* found already in their year folder (an interrupted run): only
	   removed from INBOX/Sent */
	unsigned int messages_recovered;
	unsigned int total_msecs;
};

struct migrate_index_stats {
	unsigned int folders;
	/* messages that were not indexed yet */
	unsigned int messages_indexed;
	unsigned int total_msecs;
};

/* Move every message of INBOX and of the special-use Sent folder from
   before the current year (by INTERNALDATE, local time) into a folder per
   year (migrate_archive_inbox / _sent), when the folder has more than
   migrate_archive_threshold messages.  Flags, keywords, dates and GUIDs
   are kept; the per-user migration state follows the moved copies, so
   later syncs neither copy them back nor lose track of them.  Safe to
   interrupt and to repeat. */
int migrate_archive_run(struct mail_user *user,
			const struct migrate_settings *set,
			const struct migrate_prepare_options *opts,
			struct migrate_archive_stats *stats_r,
			enum migrate_error *error_code_r, const char **error_r);

/* Index every folder of every namespace through the mail plugins (fts),
   the way doveadm index does: precache the messages not indexed yet. */
int migrate_index_run(struct mail_user *user,
		      const struct migrate_prepare_options *opts,
		      struct migrate_index_stats *stats_r,
		      enum migrate_error *error_code_r, const char **error_r);

#endif
