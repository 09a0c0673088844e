/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "hash.h"
#include "str.h"
#include "strescape.h"
#include "strnum.h"
#include "write-full.h"
#include "istream.h"
#include "seq-range-array.h"
#include "time-util.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "mail-search-build.h"
#include "mailbox-list-iter.h"
#include "imap-util.h"
#include "imap-seqset.h"
#include "migrate-fetch.h"
#include "migrate-names.h"
#include "migrate-settings.h"
#include "migrate-state.h"
#include "migrate-sync.h"
#include "migrate-workers.h"

#include <stdio.h>
#include <signal.h>
#include <unistd.h>

/* destination GUIDs of copied messages encode where they came from, so
   that a message saved just before a crash is found again instead of
   being copied twice: magic, state folder id, source UIDVALIDITY, UID */
#define MIGRATE_GUID_MAGIC 0x6d677274U

/* how often a worker tells its owner how far it is */
#define MIGRATE_WORKER_PROGRESS_MSECS 500
/* a folder with fewer messages to copy is not worth a worker's job */
#define MIGRATE_WORKER_MIN_MESSAGES 100

static struct event_category event_category_migrate = {
	.name = "migrate",
};

HASH_TABLE_DEFINE_TYPE(migrate_names, const char *, const char *);

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
	/* Gmail's All Mail: copied into our Archive, only the messages
	   that carry no label */
	bool gmail_all;
};

/* Gmail: where a message (by X-GM-MSGID) is at the source */
struct sync_gmail_copy {
	struct migrate_sync_folder *f;
	uint32_t uid;
	struct sync_gmail_copy *next;
};

struct migrate_sync_ctx {
	pool_t pool;
	struct event *event;
	struct mail_user *dest_user, *src_user;
	struct migrate_source *source;
	struct migrate_fetcher *fetcher;
	struct mail_namespace *src_ns;
	char src_sep;
	const char *src_prefix;
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

	struct timeval start, last_progress, folder_start;
	bool progress_tty, progress_printed;
	unsigned int folder_idx;
	const char *progress_folder;
	unsigned int progress_done, progress_total;

	/* in a worker: the owner reads our answers here, else -1 */
	int worker_out_fd;
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

struct migrate_sync_report *migrate_sync_report_init(void)
{
	struct migrate_sync_report *report;
	pool_t pool;

	pool = pool_alloconly_create("migrate sync report", 1024);
	report = p_new(pool, struct migrate_sync_report, 1);
	report->pool = pool;
	p_array_init(&report->rejected, pool, 4);
	p_array_init(&report->dropped_keywords, pool, 4);
	p_array_init(&report->retries, pool, 2);
	return report;
}

void migrate_sync_report_deinit(struct migrate_sync_report **_report)
{
	struct migrate_sync_report *report = *_report;

	*_report = NULL;
	pool_unref(&report->pool);
}

void migrate_sync_report_rejected(struct migrate_sync_report *report,
				  const char *folder, uint32_t uid,
				  uoff_t size, const char *reason)
{
	struct migrate_sync_rejected *rej;

	rej = array_append_space(&report->rejected);
	rej->folder = p_strdup(report->pool, folder);
	rej->uid = uid;
	rej->size = size;
	rej->reason = p_strdup(report->pool, reason);
}

void migrate_sync_report_keyword(struct migrate_sync_report *report,
				 const char *keyword, unsigned int count)
{
	struct migrate_sync_dropped_keyword *kw;

	array_foreach_modifiable(&report->dropped_keywords, kw) {
		if (strcmp(kw->keyword, keyword) == 0) {
			kw->count += count;
			return;
		}
	}
	kw = array_append_space(&report->dropped_keywords);
	kw->keyword = p_strdup(report->pool, keyword);
	kw->count = count;
}

/* Our own connection to the source (large messages, raw LIST, second
   looks), opened when first needed. */
static struct migrate_fetcher *sync_fetcher(struct migrate_sync_ctx *ctx)
{
	if (ctx->fetcher == NULL) {
		ctx->fetcher = migrate_fetcher_init(ctx->set, ctx->dest_user,
			ctx->source->resolver_dir, ctx->event);
	}
	return ctx->fetcher;
}

/* A message left out, with why; the run goes on. */
static void
sync_reject(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	    uint32_t uid, uoff_t size, const char *reason)
{
	const char *folder = f->src_name;

	f->rejected++;
	ctx->stats->messages_rejected++;
	e_warning(event_create_passthrough(ctx->event)->
		  set_name("migrate_message_rejected")->
		  add_str("folder", folder)->add_int("uid", uid)->
		  add_int("size", size)->add_str("reason", reason)->event(),
		  "%s: Leaving out UID %u (%"PRIuUOFF_T" bytes): %s",
		  folder, uid, size, reason);
	if (ctx->opts->report != NULL) {
		migrate_sync_report_rejected(ctx->opts->report, folder, uid,
					     size, reason);
	}
}

/* The report of a job as one field: a line per item, tab-separated */
static void
sync_worker_report_append(string_t *answer,
			  const struct migrate_sync_report *report)
{
	const struct migrate_sync_rejected *rej;
	const struct migrate_sync_dropped_keyword *kw;
	string_t *str = t_str_new(128);

	array_foreach(&report->rejected, rej) {
		str_append(str, "R\t");
		str_append_tabescaped(str, rej->folder);
		str_printfa(str, "\t%u\t%"PRIuUOFF_T"\t", rej->uid,
			    rej->size);
		str_append_tabescaped(str, rej->reason);
		str_append_c(str, '\n');
	}
	array_foreach(&report->dropped_keywords, kw) {
		str_append(str, "K\t");
		str_append_tabescaped(str, kw->keyword);
		str_printfa(str, "\t%u\n", kw->count);
	}
	str_append_c(answer, '\t');
	str_append_tabescaped(answer, str_c(str));
}

/* The owner's side: add a job's report field to ours. */
static void
sync_worker_report_merge(struct migrate_sync_ctx *ctx,
			 struct migrate_sync_folder *f, const char *field)
{
	const char *const *lines, *const *args;
	unsigned int uid, count;
	uoff_t size;

	lines = t_strsplit(field, "\n");
	for (; *lines != NULL; lines++) {
		args = t_strsplit_tabescaped(*lines);
		if (args[0] == NULL)
			continue;
		if (strcmp(args[0], "R") == 0 &&
		    str_array_length(args) == 5 &&
		    str_to_uint(args[2], &uid) == 0 &&
		    str_to_uoff(args[3], &size) == 0) {
			ctx->stats->messages_rejected++;
			f->rejected++;
			if (ctx->opts->report != NULL) {
				migrate_sync_report_rejected(ctx->opts->report,
					args[1], uid, size, args[4]);
			}
		} else if (strcmp(args[0], "K") == 0 &&
			   str_array_length(args) == 3 &&
			   str_to_uint(args[2], &count) == 0) {
			if (ctx->opts->report != NULL) {
				migrate_sync_report_keyword(ctx->opts->report,
							    args[1], count);
			}
		}
	}
}

/* migrate_debug_kill: die here, as a crash or kill -9 would, to test that
   the next run completes with nothing lost and nothing twice.  The steps,
   in the order a run reaches them: list, create, save, commit, state,
   flags, finish, rename, expunge, delete-folder, subscribe,
   state-commit (a worker: save, commit). */
static void sync_kill_point(struct migrate_sync_ctx *ctx, const char *step)
{
	if (ctx->set->debug_kill_step == NULL ||
	    strcmp(ctx->set->debug_kill_step, step) != 0 ||
	    ++ctx->debug_kill_seen < ctx->set->debug_kill_count)
		return;
	e_warning(ctx->event, "%s: killing this process at step %s (%u)",
		  MIGRATE_SETTING_DEBUG_KILL, step, ctx->debug_kill_seen);
	(void)kill(getpid(), SIGKILL);
}

/* A whole folder left out (uid 0 in the report); the run goes on. */
static void
sync_reject_folder(struct migrate_sync_ctx *ctx, const char *folder,
		   const char *reason)
{
	ctx->stats->messages_rejected++;
	e_warning(event_create_passthrough(ctx->event)->
		  set_name("migrate_folder_rejected")->
		  add_str("folder", folder)->add_str("reason", reason)->event(),
		  "Leaving out folder %s: %s", folder, reason);
	if (ctx->opts->report != NULL) {
		migrate_sync_report_rejected(ctx->opts->report, folder, 0, 0,
					     reason);
	}
}

static void
sync_set_error(struct migrate_sync_ctx *ctx, enum migrate_error code,
	       const char *error)
{
	migrate_failure_set(&ctx->failure, ctx->pool, ctx->event, code, error);
}

static void
sync_set_dest_error(struct migrate_sync_ctx *ctx, struct mailbox *box,
		    const char *what)
{
	enum migrate_error code;
	const char *error;

	code = migrate_error_from_dest(box, what, &error);
	sync_set_error(ctx, code, error);
}

static void
sync_set_source_error(struct migrate_sync_ctx *ctx, struct mailbox *box,
		      const char *what)
{
	enum mail_error error;
	const char *errstr;

	errstr = mailbox_get_last_internal_error(box, &error);
	sync_set_error(ctx, migrate_error_from_source(error, errstr),
		       t_strdup_printf("Source: %s %s failed: %s", what,
				       mailbox_get_vname(box),
				       migrate_source_explain_error(errstr)));
}

/* A worker's progress goes to its owner, who shows it. */
static void sync_worker_progress(struct migrate_sync_ctx *ctx)
{
	struct timeval now;
	const char *line;

	i_gettimeofday(&now);
	if (timeval_diff_msecs(&now, &ctx->last_worker_progress) <
	    MIGRATE_WORKER_PROGRESS_MSECS)
		return;
	ctx->last_worker_progress = now;
	line = t_strdup_printf("P\t%u\n", ctx->progress_done);
	/* the owner reads it when it next looks; a lost line is no loss */
	(void)write_full(ctx->worker_out_fd, line, strlen(line));
}

static void sync_progress(struct migrate_sync_ctx *ctx, bool force)
{
	struct timeval now;
	long long msecs, folder_msecs, eta_secs = -1;
	double mb, rate;

	if (ctx->worker_out_fd != -1) {
		sync_worker_progress(ctx);
		return;
	}
	if (!ctx->opts->progress ||
	    !migrate_progress_due(&ctx->last_progress, ctx->progress_tty,
				  force))
		return;
	now = ctx->last_progress;
	msecs = timeval_diff_msecs(&now, &ctx->start);
	mb = ctx->stats->bytes_copied / (1024.0*1024.0);
	rate = msecs == 0 ? 0 : mb * 1000.0 / msecs;
	/* the folder's remaining messages at the folder's rate so far */
	folder_msecs = timeval_diff_msecs(&now, &ctx->folder_start);
	if (ctx->progress_done > 0 && ctx->progress_total >= ctx->progress_done) {
		eta_secs = folder_msecs *
			(long long)(ctx->progress_total - ctx->progress_done) /
			ctx->progress_done / 1000;
	}
	fprintf(stderr, "%smigrate: [%u/%u] %s: %u/%u messages, ETA %s; "
		"total %u copied, %.1f MB, %.1f MB/s, %lld s%s",
		ctx->progress_tty ? "\r\033[K" : "",
		ctx->folder_idx, array_count(&ctx->folders),
		ctx->progress_folder, ctx->progress_done,
		ctx->progress_total,
		eta_secs < 0 ? "?" : t_strdup_printf("%llds", eta_secs),
		ctx->stats->messages_copied, mb, rate,
		msecs / 1000, ctx->progress_tty ? "" : "\n");
	ctx->progress_printed = TRUE;
}

/* Search the messages with the given UIDs. */
static struct mail_search_context *
sync_search_uids(struct mailbox_transaction_context *t,
		 const ARRAY_TYPE(seq_range) *uids,
		 enum mail_fetch_field wanted_fields,
		 struct mailbox_header_lookup_ctx *wanted_headers)
{
	struct mail_search_args *search_args;
	struct mail_search_arg *sarg;
	struct mail_search_context *search_ctx;

	search_args = mail_search_build_init();
	sarg = mail_search_build_add(search_args, SEARCH_UIDSET);
	p_array_init(&sarg->value.seqset, search_args->pool,
		     array_count(uids));
	array_append_array(&sarg->value.seqset, uids);
	search_ctx = mailbox_search_init(t, search_args, NULL,
					 wanted_fields, wanted_headers);
	mail_search_args_unref(&search_args);
	return search_ctx;
}

static const char *
sync_dest_guid(const struct migrate_state_folder *state, uint32_t uid)
{
	return t_strdup_printf("%08x%08x%08x%08x", MIGRATE_GUID_MAGIC,
			       state->id, state->src_uidvalidity, uid);
}

/* Returns TRUE and the source UID when guid is one that we gave to a copy
   of this folder's current UIDVALIDITY. */
static bool
sync_dest_guid_parse(const struct migrate_state_folder *state,
		     const char *guid, uint32_t *src_uid_r)
{
	unsigned int magic, id, uidvalidity, uid;

	if (strlen(guid) != 32 ||
	    sscanf(guid, "%8x%8x%8x%8x", &magic, &id, &uidvalidity,
		   &uid) != 4)
		return FALSE;
	if (magic != MIGRATE_GUID_MAGIC || id != state->id ||
	    uidvalidity != state->src_uidvalidity || uid == 0)
		return FALSE;
	*src_uid_r = uid;
	return TRUE;
}

/* <folder names> */

static const char *
sync_dest_special_name(struct migrate_sync_ctx *ctx,
		       enum migrate_special_use use)
{
	static const char *const default_names[MIGRATE_SPECIAL_COUNT] = {
		[MIGRATE_SPECIAL_SENT] = "Sent",
		[MIGRATE_SPECIAL_TRASH] = "Trash",
		[MIGRATE_SPECIAL_DRAFTS] = "Drafts",
		[MIGRATE_SPECIAL_JUNK] = "Junk",
		[MIGRATE_SPECIAL_ARCHIVE] = "Archive",
	};
	struct mail_namespace *ns =
		mail_namespace_find_inbox(ctx->dest_user->namespaces);
	const char *flag = migrate_special_use_flag(use);
	struct mailbox_settings *const *boxp;

	/* the mailbox the destination configured for this SPECIAL-USE */
	if (array_is_created(&ns->set->mailboxes)) {
		array_foreach(&ns->set->mailboxes, boxp) {
			const char *const *uses =
				t_strsplit_spaces((*boxp)->special_use, " ");
			if (str_array_icase_find(uses, flag))
				return t_strconcat(ns->prefix, (*boxp)->name,
						   NULL);
		}
	}
	return t_strconcat(ns->prefix, default_names[use], NULL);
}

/* <Gmail> */

static const char *const sync_gmail_prefixes[] = {
	"[Gmail]", "[Google Mail]", NULL
};

/* "[Gmail]/Sent Mail" -> "Sent Mail" */
static const char *sync_gmail_strip_prefix(const char *name, char sep)
{
	unsigned int i;
	size_t len;

	for (i = 0; sync_gmail_prefixes[i] != NULL; i++) {
		len = strlen(sync_gmail_prefixes[i]);
		if (strncmp(name, sync_gmail_prefixes[i], len) == 0 &&
		    name[len] == sep && name[len + 1] != '\0')
			return name + len + 1;
	}
	return name;
}

static bool sync_gmail_detect(struct migrate_sync_ctx *ctx)
{
	const struct migrate_sync_folder *f;

	switch (ctx->set->gmail) {
	case MIGRATE_GMAIL_YES:
		return TRUE;
	case MIGRATE_GMAIL_NO:
		return FALSE;
	case MIGRATE_GMAIL_AUTO:
		break;
	}
	array_foreach(&ctx->folders, f) {
		if (strcmp(sync_gmail_strip_prefix(f->src_name, ctx->src_sep),
			   f->src_name) != 0)
			return TRUE;
	}
	return FALSE;
}

/* Gmail shows labels as folders, and "folders" that are views: All Mail
   (every message), Important and Starred (by a flag).  The views are not
   copied as folders; from All Mail only what has no label goes to our
   Archive (archived mail would be lost otherwise).  special_uses[i] is
   the folder's SPECIAL-USE, changed to \Archive for All Mail. */
static void
sync_gmail_select(struct migrate_sync_ctx *ctx,
		  ARRAY_TYPE(const_string) *special_uses)
{
	struct migrate_sync_folder *f;
	const char *su, *tail;
	unsigned int i, n = array_count(&ctx->folders);

	for (i = 0; i < n; i++) {
		f = array_idx_modifiable(&ctx->folders, i);
		su = array_idx_elem(special_uses, i);
		tail = sync_gmail_strip_prefix(f->src_name, ctx->src_sep);
		if (tail == f->src_name)
			tail = "";
		if ((su != NULL && strstr(su, "\\All") != NULL) ||
		    strcasecmp(tail, "All Mail") == 0) {
			f->gmail_all = TRUE;
			array_idx_set(special_uses, i,
				      &(const char *){ "\\Archive" });
		} else if ((su != NULL && (strstr(su, "\\Important") != NULL ||
					   strstr(su, "\\Flagged") != NULL)) ||
			   strcasecmp(tail, "Important") == 0 ||
			   strcasecmp(tail, "Starred") == 0) {
			if (f->selected) {
				e_info(ctx->event, "Gmail: not copying %s, "
				       "a view of messages in other folders",
				       f->src_name);
			}
			f->selected = FALSE;
		}
	}
}

/* Every selected folder's messages by GUID (X-GM-MSGID): one UID FETCH
   of the GUIDs per folder, once a run. */
static int sync_gmail_index(struct migrate_sync_ctx *ctx)
{
	struct migrate_sync_folder *f;
	struct mailbox *box;
	struct mailbox_transaction_context *t;
	struct mail_search_args *search_args;
	struct mail_search_context *search_ctx;
	struct sync_gmail_copy *copy, *first;
	struct mail *mail;
	const char *guid;
	int ret = 0;

	if (hash_table_is_created(ctx->gmail_guids))
		return ctx->gmail_guids_failed ? -1 : 0;
	hash_table_create(&ctx->gmail_guids, ctx->pool, 0, str_hash, strcmp);
	array_foreach_modifiable(&ctx->folders, f) {
		if (!f->selected || f->src_status.uidvalidity == 0)
			continue;
		box = mailbox_alloc(ctx->src_ns->list, f->src_name,
				    MAILBOX_FLAG_READONLY);
		if (mailbox_sync(box, 0) < 0) {
			sync_set_source_error(ctx, box, "Opening");
			mailbox_free(&box);
			ret = -1;
			break;
		}
		t = mailbox_transaction_begin(box, 0, __func__);
		search_args = mail_search_build_init();
		mail_search_build_add_all(search_args);
		search_ctx = mailbox_search_init(t, search_args, NULL,
						 MAIL_FETCH_GUID, NULL);
		mail_search_args_unref(&search_args);
		while (mailbox_search_next(search_ctx, &mail)) {
			if (mail_get_special(mail, MAIL_FETCH_GUID, &guid) < 0 ||
			    guid[0] == '\0')
				continue;
			copy = p_new(ctx->pool, struct sync_gmail_copy, 1);
			copy->f = f;
			copy->uid = mail->uid;
			first = hash_table_lookup(ctx->gmail_guids, guid);
			if (first == NULL) {
				const char *key = p_strdup(ctx->pool, guid);

				hash_table_insert(ctx->gmail_guids, key, copy);
			} else {
				copy->next = first->next;
				first->next = copy;
			}
		}
		if (mailbox_search_deinit(&search_ctx) < 0) {
			sync_set_source_error(ctx, box, "Listing the GUIDs of");
			ret = -1;
		}
		(void)mailbox_transaction_commit(&t);
		mailbox_free(&box);
		if (ret < 0)
			break;
	}
	ctx->gmail_guids_failed = ret < 0;
	return ret;
}

/* A copy of the message with guid that is already here, in another
   folder's destination: its folder and UID there. */
static bool
sync_gmail_find_local(struct migrate_sync_ctx *ctx,
		      struct migrate_sync_folder *f, const char *guid,
		      struct migrate_sync_folder **f_r, uint32_t *dest_uid_r)
{
	struct sync_gmail_copy *copy;
	const struct migrate_uid_map *map;

	copy = hash_table_lookup(ctx->gmail_guids, guid);
	for (; copy != NULL; copy = copy->next) {
		if (copy->f == f || copy->f->state == NULL ||
		    copy->f->delegated)
			continue;
		map = migrate_state_map_lookup(copy->f->state, copy->uid);
		if (map != NULL && map->dest_loc == 0) {
			*f_r = copy->f;
			*dest_uid_r = map->dest_uid;
			return TRUE;
		}
	}
	return FALSE;
}

/* Whether the message with guid is in any other folder than All Mail */
static bool
sync_gmail_has_label(struct migrate_sync_ctx *ctx, const char *guid)
{
	struct sync_gmail_copy *copy;

	copy = hash_table_lookup(ctx->gmail_guids, guid);
	for (; copy != NULL; copy = copy->next) {
		if (!copy->f->gmail_all)
			return TRUE;
	}
	return FALSE;
}

static const char *
sync_map_name(struct migrate_sync_ctx *ctx, const char *src_name,
	      const char *special_use_flags, bool map_special_use)
{
	struct mail_namespace *ns =
		mail_namespace_find_inbox(ctx->dest_user->namespaces);
	char dest_sep = mail_namespace_get_sep(ns);
	const char *name, *top, *rest, *p;
	enum migrate_special_use use;

	name = migrate_name_convert(src_name, ctx->src_sep, ctx->src_prefix,
				    dest_sep, ctx->set->escape_char);
	if (ctx->gmail)
		name = sync_gmail_strip_prefix(name, dest_sep);
	if (strcasecmp(name, "INBOX") == 0)
		return "INBOX";
	if (map_special_use) {
		p = strchr(name, dest_sep);
		top = p == NULL ? name : t_strdup_until(name, p);
		rest = p == NULL ? "" : p;
		use = p == NULL && special_use_flags != NULL ?
			migrate_special_use_parse(special_use_flags) :
			MIGRATE_SPECIAL_NONE;
		if (use == MIGRATE_SPECIAL_NONE)
			use = migrate_special_use_from_name(top);
		if (use != MIGRATE_SPECIAL_NONE) {
			name = t_strconcat(sync_dest_special_name(ctx, use),
					   rest, NULL);
		}
	}
	if (ns->prefix_len > 0 && strncmp(name, "INBOX", 5) != 0)
		name = t_strconcat(ns->prefix, name, NULL);
	return name;
}

static const char *sync_detect_prefix(struct migrate_sync_ctx *ctx)
{
	const struct migrate_sync_folder *f;
	const char *prefix;
	size_t len;
	bool any = FALSE;

	if (ctx->set->source_prefix[0] != '\0')
		return ctx->set->source_prefix;
	/* Courier-style servers put every folder under "INBOX." */
	prefix = t_strdup_printf("INBOX%c", ctx->src_sep);
	len = strlen(prefix);
	array_foreach(&ctx->folders, f) {
		if (strcasecmp(f->src_name, "INBOX") == 0)
			continue;
		if (strncasecmp(f->src_name, prefix, len) != 0)
			return "";
		any = TRUE;
	}
	return any && ctx->src_sep == '.' ? prefix : "";
}

static void
sync_assign_dest_names(struct migrate_sync_ctx *ctx,
		       const ARRAY_TYPE(const_string) *special_uses);

/* Dovecot folds the case of INBOX in names: a source with both
   "INBOX/x" and "inbox/x" (mailutils, Cyrus with some settings) shows
   them to us as one folder.  The source's own LIST tells them apart; the
   second cannot be read through imapc, so it is left out and reported,
   never merged into the first. */
static void sync_check_inbox_case(struct migrate_sync_ctx *ctx)
{
	const struct migrate_sync_folder *f;
	ARRAY_TYPE(const_string) names;
	const char *name, *error;
	bool children = FALSE;

	array_foreach(&ctx->folders, f) {
		if (strncmp(f->src_name, "INBOX", 5) == 0 &&
		    f->src_name[5] == ctx->src_sep)
			children = TRUE;
	}
	if (!children)
		return;
	p_array_init(&names, ctx->pool, 32);
	if (migrate_fetcher_list(sync_fetcher(ctx), ctx->pool, &names,
				 &error) < 0) {
		e_warning(ctx->event, "Source: Checking the case of INBOX's "
			  "children failed: %s", error);
		return;
	}
	array_foreach_elem(&names, name) {
		if (strncasecmp(name, "INBOX", 5) != 0 ||
		    name[5] != ctx->src_sep || strncmp(name, "INBOX", 5) == 0)
			continue;
		if (!array_lsearch(&names, &(const char *){
				t_strconcat("INBOX", name + 5, NULL) },
				i_strcmp_p))
			continue;
		sync_reject_folder(ctx, name, t_strdup_printf(
			"Dovecot's IMAP client cannot tell it from INBOX%s "
			"(INBOX is case-insensitive to Dovecot)", name + 5));
	}
}

static struct migrate_sync_folder *
sync_folder_find(struct migrate_sync_ctx *ctx, const char *src_name)
{
	struct migrate_sync_folder *f;

	array_foreach_modifiable(&ctx->folders, f) {
		if (strcmp(f->src_name, src_name) == 0)
			return f;
	}
	return NULL;
}

/* A LIST that fails authorises nothing: the run stops before any
   deletion. */
static int
sync_source_list_deinit(struct migrate_sync_ctx *ctx,
			struct mailbox_list_iterate_context **iter,
			const char *what)
{
	enum mail_error error;
	const char *errstr;

	if (mailbox_list_iter_deinit(iter) == 0)
		return 0;
	errstr = mailbox_list_get_last_internal_error(ctx->src_ns->list,
						      &error);
	sync_set_error(ctx, migrate_error_from_source(error, errstr),
		t_strdup_printf("Source: Listing %s failed: %s", what,
				migrate_source_explain_error(errstr)));
	return -1;
}

static int sync_list_source_subscriptions(struct migrate_sync_ctx *ctx)
{
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	struct migrate_sync_folder *f;

	if (!ctx->set->subscriptions)
		return 0;
	iter = mailbox_list_iter_init(ctx->src_ns->list, "*",
				      MAILBOX_LIST_ITER_SELECT_SUBSCRIBED |
				      MAILBOX_LIST_ITER_RETURN_NO_FLAGS);
	while ((info = mailbox_list_iter_next(iter)) != NULL) {
		f = sync_folder_find(ctx, info->vname);
		if (f != NULL)
			f->subscribed = TRUE;
	}
	return sync_source_list_deinit(ctx, &iter, "subscriptions");
}

/* Subscribe here to what the user had subscribed at the source; never
   unsubscribe (the user may have subscribed here on purpose). */
static void sync_subscriptions(struct migrate_sync_ctx *ctx)
{
	struct mail_namespace *ns;
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	const struct migrate_sync_folder *f;
	struct mailbox *box;
	HASH_TABLE(const char *, void *) subscribed;

	if (!ctx->set->subscriptions || ctx->opts->dry_run)
		return;
	hash_table_create(&subscribed, ctx->pool, 0, str_hash, strcmp);
	iter = mailbox_list_iter_init_namespaces(ctx->dest_user->namespaces,
		(const char *const[]){ "*", NULL },
		MAIL_NAMESPACE_TYPE_PRIVATE,
		MAILBOX_LIST_ITER_SELECT_SUBSCRIBED |
		MAILBOX_LIST_ITER_RETURN_NO_FLAGS);
	while ((info = mailbox_list_iter_next(iter)) != NULL) {
		const char *name = p_strdup(ctx->pool, info->vname);

		hash_table_update(subscribed, name, POINTER_CAST(1));
	}
	if (mailbox_list_iter_deinit(&iter) < 0)
		e_warning(ctx->event, "Listing subscriptions failed");

	array_foreach(&ctx->folders, f) {
		if (!f->subscribed || !f->selected || f->dest_name == NULL ||
		    hash_table_lookup(subscribed, f->dest_name) != NULL)
			continue;
		ns = mail_namespace_find(ctx->dest_user->namespaces,
					 f->dest_name);
		box = mailbox_alloc(ns->list, f->dest_name, 0);
		if (mailbox_set_subscribed(box, TRUE) == 0)
			sync_kill_point(ctx, "subscribe");
		else {
			e_warning(ctx->event, "Subscribing %s failed: %s",
				  f->dest_name,
				  mailbox_get_last_internal_error(box, NULL));
		}
		mailbox_free(&box);
	}
	hash_table_destroy(&subscribed);
}

static int sync_list_source(struct migrate_sync_ctx *ctx)
{
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	struct migrate_sync_folder *f;
	ARRAY_TYPE(const_string) special_uses;
	const char *name;

	ctx->src_ns = ctx->src_user->namespaces;
	ctx->src_sep = mail_namespace_get_sep(ctx->src_ns);
	p_array_init(&ctx->folders, ctx->pool, 32);
	p_array_init(&special_uses, ctx->pool, 32);
	hash_table_create(&ctx->src_names, ctx->pool, 0, str_hash, strcmp);

	iter = mailbox_list_iter_init(ctx->src_ns->list, "*",
				      MAILBOX_LIST_ITER_RETURN_SPECIALUSE);
	while ((info = mailbox_list_iter_next(iter)) != NULL) {
		name = p_strdup(ctx->pool, info->vname);
		hash_table_update(ctx->src_names, name, POINTER_CAST(1));
		if ((info->flags & (MAILBOX_NOSELECT |
				    MAILBOX_NONEXISTENT)) != 0)
			continue;
		f = array_append_space(&ctx->folders);
		f->src_name = name;
		f->selected = migrate_name_is_selected(name,
			ctx->set->include, ctx->set->exclude);
		array_push_back(&special_uses, &(const char *){
			p_strdup(ctx->pool, info->special_use) });
	}
	if (sync_source_list_deinit(ctx, &iter, "folders") < 0)
		return -1;
	if (sync_list_source_subscriptions(ctx) < 0)
		return -1;
	if (hash_table_lookup(ctx->src_names, (const char *)"INBOX") == NULL) {
		/* some servers do not list INBOX with "*" */
		f = array_append_space(&ctx->folders);
		f->src_name = "INBOX";
		f->selected = migrate_name_is_selected("INBOX",
			ctx->set->include, ctx->set->exclude);
		array_push_back(&special_uses, &(const char *){ NULL });
		hash_table_update(ctx->src_names, (const char *)"INBOX",
				  POINTER_CAST(1));
	}
	ctx->src_prefix = p_strdup(ctx->pool, sync_detect_prefix(ctx));
	sync_check_inbox_case(ctx);
	ctx->gmail = sync_gmail_detect(ctx);
	if (ctx->gmail) {
		e_debug(ctx->event, "The source is Gmail");
		sync_gmail_select(ctx, &special_uses);
	}

	sync_assign_dest_names(ctx, &special_uses);
	return 0;
}

static void
sync_assign_dest_name(struct migrate_sync_ctx *ctx,
		      HASH_TABLE_TYPE(migrate_names) dest_names,
		      struct migrate_sync_folder *f, const char *dest_name)
{
	const char *base = dest_name, *other;
	unsigned int suffix = 2;

	other = hash_table_lookup(dest_names, dest_name);
	if (other != NULL) {
		/* two source folders must never be merged into one */
		do {
			dest_name = t_strdup_printf("%s%c%u", base,
				ctx->set->escape_char, suffix++);
		} while (hash_table_lookup(dest_names, dest_name) != NULL);
		e_warning(ctx->event, "Source folders %s and %s both map to "
			  "%s: copying %s to %s", other, f->src_name, base,
			  f->src_name, dest_name);
	}
	f->dest_name = p_strdup(ctx->pool, dest_name);
	hash_table_insert(dest_names, f->dest_name, f->src_name);
}

/* Give every source folder its destination name.  A folder copied before
   keeps its name.  A name the source uses literally wins over a special-use
   mapping onto it: with both "Sent" and "Itens Enviados" at the source,
   "Sent" stays "Sent". */
static void
sync_assign_dest_names(struct migrate_sync_ctx *ctx,
		       const ARRAY_TYPE(const_string) *special_uses)
{
	HASH_TABLE_TYPE(migrate_names) dest_names;
	ARRAY_TYPE(const_string) mapped_names;
	struct migrate_sync_folder *f;
	const char *plain, *mapped;
	unsigned int i, n = array_count(&ctx->folders);

	hash_table_create(&dest_names, ctx->pool, 0, str_hash, strcmp);
	t_array_init(&mapped_names, n);
	for (i = 0; i < n; i++) {
		const struct migrate_state_folder *state;

		f = array_idx_modifiable(&ctx->folders, i);
		state = migrate_state_folder_lookup(ctx->state, f->src_name);
		if (state != NULL &&
		    hash_table_lookup(dest_names, state->dest_name) == NULL) {
			f->dest_name = p_strdup(ctx->pool, state->dest_name);
			hash_table_insert(dest_names, f->dest_name,
					  f->src_name);
		}
	}
	for (i = 0; i < n; i++) {
		f = array_idx_modifiable(&ctx->folders, i);
		if (f->dest_name != NULL) {
			array_push_back(&mapped_names,
					&(const char *){ NULL });
			continue;
		}
		plain = sync_map_name(ctx, f->src_name, NULL, FALSE);
		mapped = !ctx->set->special_use ? plain :
			sync_map_name(ctx, f->src_name,
				      array_idx_elem(special_uses, i), TRUE);
		if (strcmp(plain, mapped) == 0) {
			sync_assign_dest_name(ctx, dest_names, f, plain);
			mapped = NULL;
		}
		array_push_back(&mapped_names, &mapped);
	}
	for (i = 0; i < n; i++) {
		mapped = array_idx_elem(&mapped_names, i);
		if (mapped == NULL)
			continue;
		f = array_idx_modifiable(&ctx->folders, i);
		if (hash_table_lookup(dest_names, mapped) != NULL) {
			e_info(ctx->event, "Not mapping %s onto %s: the source "
			       "has a folder of that name too",
			       f->src_name, mapped);
			mapped = sync_map_name(ctx, f->src_name, NULL, FALSE);
		}
		sync_assign_dest_name(ctx, dest_names, f, mapped);
	}
}

/* <destination mailboxes> */

static struct mailbox *
sync_dest_alloc(struct migrate_sync_ctx *ctx, const char *name)
{
	struct mail_namespace *ns;

	ns = mail_namespace_find(ctx->dest_user->namespaces, name);
	return mailbox_alloc(ns->list, name, 0);
}

/* Record every destination message from state->dest_uidnext on: ours (by
   GUID) are mapped, the rest are foreign. */
static int
sync_scan_new_dest(struct migrate_sync_ctx *ctx,
		   struct migrate_sync_folder *f, struct mailbox *dbox)
{
	struct migrate_state_folder *state = f->state;
	struct mailbox_transaction_context *t;
	struct mail_search_context *search_ctx;
	ARRAY_TYPE(seq_range) new_uids;
	struct mailbox_status status;
	struct mail *mail;
	const char *guid;
	enum mailbox_sync_flags sync_flags = 0;
	uint32_t src_uid;
	int ret = 0;

	if (state->dest_pending_uidnext != 0) {
		/* a batch was interrupted: a Maildir commit killed after it
		   wrote dovecot-uidlist and the directories' mtimes to the
		   index, but before the appends, leaves messages that only a
		   full resync shows (and saving with their UIDs would then
		   clash with them) */
		sync_flags |= MAILBOX_SYNC_FLAG_FORCE_RESYNC |
			MAILBOX_SYNC_FLAG_FIX_INCONSISTENT;
	}
	if (mailbox_sync(dbox, sync_flags) < 0) {
		sync_set_dest_error(ctx, dbox, "Syncing");
		return -1;
	}
	mailbox_get_open_status(dbox, STATUS_UIDNEXT, &status);
	if (status.uidnext <= state->dest_uidnext)
		return 0;

	t_array_init(&new_uids, 1);
	seq_range_array_add_range(&new_uids, I_MAX(state->dest_uidnext, 1),
				  status.uidnext - 1);
	t = mailbox_transaction_begin(dbox, 0, __func__);
	search_ctx = sync_search_uids(t, &new_uids, MAIL_FETCH_GUID, NULL);
	while (mailbox_search_next(search_ctx, &mail)) {
		if (mail_get_special(mail, MAIL_FETCH_GUID, &guid) < 0) {
			if (mailbox_get_last_mail_error(dbox) ==
			    MAIL_ERROR_EXPUNGED)
				continue;
			sync_set_dest_error(ctx, dbox, "Reading GUIDs of");
			ret = -1;
			break;
		}
		if (!sync_dest_guid_parse(state, guid, &src_uid)) {
			if (state->dest_pending_uidnext != 0 &&
			    mail->uid >= state->dest_pending_uidnext)
				seq_range_array_add(&f->recover_dest_uids,
						    mail->uid);
			else
				ctx->stats->messages_foreign++;
			continue;
		}
		if (migrate_state_map_lookup(state, src_uid) != NULL) {
			/* a second copy of one source message can only come
			   from a bug: keep the first, leave this one */
			e_warning(ctx->event, "%s: UID %u is a second copy of "
				  "source UID %u", f->dest_name, mail->uid,
				  src_uid);
			continue;
		}
		migrate_state_map_add(ctx->state, state, src_uid, mail->uid);
	}
	if (mailbox_search_deinit(&search_ctx) < 0 && ret == 0) {
		sync_set_dest_error(ctx, dbox, "Searching");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&t);
	if (ret == 0)
		state->dest_uidnext = status.uidnext;
	return ret;
}

static int
sync_dest_open(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	       struct mailbox **dbox_r)
{
	struct migrate_state_folder *state = f->state;
	struct mailbox *dbox;
	struct mailbox_status status;
	struct mailbox_update update;
	enum mail_error error;

	dbox = sync_dest_alloc(ctx, f->dest_name);
	if (mailbox_create(dbox, NULL, FALSE) == 0) {
		sync_kill_point(ctx, "create");
		ctx->stats->folders_created++;
		e_debug(ctx->event, "Created %s", f->dest_name);
		/* keep the source's UIDs when nobody else uses the box */
		i_zero(&update);
		update.uid_validity = f->src_status.uidvalidity;
		if (mailbox_update(dbox, &update) < 0) {
			e_debug(ctx->event, "Keeping UIDVALIDITY of %s failed: %s",
				f->dest_name,
				mailbox_get_last_internal_error(dbox, NULL));
		}
	} else {
		(void)mailbox_get_last_internal_error(dbox, &error);
		if (error != MAIL_ERROR_EXISTS) {
			sync_set_dest_error(ctx, dbox, "Creating");
			mailbox_free(&dbox);
			return -1;
		}
	}
	if (mailbox_sync(dbox, 0) < 0) {
		sync_set_dest_error(ctx, dbox, "Opening");
		mailbox_free(&dbox);
		return -1;
	}
	mailbox_get_open_status(dbox, STATUS_UIDVALIDITY, &status);
	if (state->dest_uidvalidity != status.uidvalidity) {
		if (state->dest_uidvalidity != 0) {
			e_warning(ctx->event, "%s was recreated at the "
				  "destination: copying it again",
				  f->dest_name);
		}
		migrate_state_folder_clear_map(ctx->state, state);
		state->dest_uidvalidity = status.uidvalidity;
		state->dest_uidnext = 0;
	}
	*dbox_r = dbox;
	return 0;
}

/* <source messages> */

static bool
sync_flags_equal(enum mail_flags flags1, const char *const *keywords1,
		 enum mail_flags flags2, const char *const *keywords2)
{
	unsigned int i, count1 = str_array_length(keywords1);

	if ((flags1 & MAIL_FLAGS_NONRECENT) != (flags2 & MAIL_FLAGS_NONRECENT))
		return FALSE;
	if (count1 != str_array_length(keywords2))
		return FALSE;
	for (i = 0; i < count1; i++) {
		if (!str_array_find(keywords2, keywords1[i]))
			return FALSE;
	}
	return TRUE;
}

/* keywords without those box refuses */
static const char *const *
sync_valid_keywords(struct mailbox *box, const char *const *keywords)
{
	ARRAY_TYPE(const_string) valid;
	const char *error;
	unsigned int i;

	for (i = 0; keywords[i] != NULL; i++) {
		if (!mailbox_keyword_is_valid(box, keywords[i], &error))
			break;
	}
	if (keywords[i] == NULL)
		return keywords;
	t_array_init(&valid, 8);
	for (i = 0; keywords[i] != NULL; i++) {
		if (mailbox_keyword_is_valid(box, keywords[i], &error))
			array_push_back(&valid, &keywords[i]);
	}
	array_append_zero(&valid);
	return array_front(&valid);
}

static struct mail_keywords *
sync_keywords(struct migrate_sync_ctx *ctx, struct mailbox *dbox,
	      const char *const *keywords)
{
	const char *const *valid, *error;
	unsigned int i;

	if (keywords[0] == NULL)
		return NULL;
	/* a keyword the destination refuses is dropped, never the mail.
	   Filtered here: 2.3.19's mailbox_keywords_create_valid() drops
	   every keyword of a message when one of them is invalid. */
	valid = sync_valid_keywords(dbox, keywords);
	if (valid != keywords) {
		ctx->stats->flags_dropped += str_array_length(keywords) -
			str_array_length(valid);
		for (i = 0; keywords[i] != NULL; i++) {
			if (mailbox_keyword_is_valid(dbox, keywords[i],
						     &error))
				continue;
			e_debug(ctx->event, "%s: Dropping keyword %s: %s",
				mailbox_get_vname(dbox), keywords[i], error);
			if (ctx->opts->report != NULL) {
				migrate_sync_report_keyword(ctx->opts->report,
							    keywords[i], 1);
			}
		}
	}
	return mailbox_keywords_create_valid(dbox, valid);
}

/* Pass over the source metadata: update flags of mapped messages, find
   what is to be copied and what is gone. */
/* The final sync copies a message only when it is new: never copied
   before (whether or not it is still here: the user may have deleted it)
   and above the folder's high-water mark of the last complete sync, or
   with --maxage, received within the window. */
static bool
sync_final_wanted(struct migrate_sync_ctx *ctx,
		  const struct migrate_state_folder *state, struct mail *smail,
		  const struct migrate_uid_map *map)
{
	time_t received;

	if (map != NULL)
		return FALSE;
	if (ctx->opts->maxage_days == 0)
		return state->src_uidnext == 0 || smail->uid >= state->src_uidnext;
	if (mail_get_received_date(smail, &received) < 0)
		return TRUE;
	return received >= ioloop_time -
		(time_t)ctx->opts->maxage_days * 24 * 3600;
}

/* <archived copies> */

static int
sync_expunge_dest(struct migrate_sync_ctx *ctx, struct mailbox *dbox,
		  const ARRAY_TYPE(seq_range) *dest_uids);

/* A destination folder that copies were moved to (doveadm migrate
   archive), open while a pass over a folder looks at them. */
struct sync_location {
	unsigned int loc;
	struct mailbox *box;
	struct mailbox_transaction_context *t;
	struct mail *mail;
	/* it could not be opened: leave its copies alone this time */
	bool failed;
};
ARRAY_DEFINE_TYPE(sync_location, struct sync_location);

static struct mailbox *
sync_location_alloc(struct migrate_sync_ctx *ctx, unsigned int loc)
{
	return sync_dest_alloc(ctx,
		migrate_state_location_name(ctx->state, loc));
}

/* The mail of location loc's folder, NULL when the folder is gone (its
   copies count as deleted here); *skip_r when it could not be opened. */
static struct mail *
sync_location_mail(struct migrate_sync_ctx *ctx,
		   ARRAY_TYPE(sync_location) *locs, unsigned int loc,
		   bool *skip_r)
{
	struct sync_location *l;
	enum mail_error error;

	*skip_r = FALSE;
	array_foreach_modifiable(locs, l) {
		if (l->loc == loc) {
			*skip_r = l->failed;
			return l->mail;
		}
	}
	l = array_append_space(locs);
	l->loc = loc;
	l->box = sync_location_alloc(ctx, loc);
	if (mailbox_sync(l->box, 0) < 0) {
		(void)mailbox_get_last_internal_error(l->box, &error);
		if (error != MAIL_ERROR_NOTFOUND) {
			sync_set_dest_error(ctx, l->box, "Opening");
			l->failed = TRUE;
			*skip_r = TRUE;
		}
		return NULL;
	}
	/* not EXTERNAL: the flag changes go to the mail files */
	l->t = mailbox_transaction_begin(l->box, 0, __func__);
	l->mail = mail_alloc(l->t, MAIL_FETCH_FLAGS, NULL);
	return l->mail;
}

static int
sync_locations_finish(struct migrate_sync_ctx *ctx,
		      ARRAY_TYPE(sync_location) *locs, bool commit)
{
	struct sync_location *l;
	int ret = 0;

	array_foreach_modifiable(locs, l) {
		if (l->mail != NULL)
			mail_free(&l->mail);
		if (l->t != NULL && !commit)
			mailbox_transaction_rollback(&l->t);
		else if (l->t != NULL &&
			 (mailbox_transaction_commit(&l->t) < 0 ||
			  mailbox_sync(l->box, 0) < 0)) {
			sync_set_dest_error(ctx, l->box, "Updating flags in");
			ret = -1;
		}
		mailbox_free(&l->box);
	}
	array_clear(locs);
	return ret;
}

/* Expunge the copies of these map entries that were moved elsewhere,
   folder by folder.  A folder that is gone has nothing left to delete. */
static int
sync_expunge_moved(struct migrate_sync_ctx *ctx,
		   const ARRAY_TYPE(migrate_uid_map) *maps)
{
	const struct migrate_uid_map *map;
	ARRAY_TYPE(seq_range) uids;
	struct mailbox *box;
	enum mailbox_existence existence;
	unsigned int loc, done_loc = 0;
	int ret = 0;

	t_array_init(&uids, 16);
	/* few locations, usually one per year: a pass per location */
	for (;;) {
		loc = 0;
		array_foreach(maps, map) {
			if (map->dest_loc > done_loc &&
			    (loc == 0 || map->dest_loc < loc))
				loc = map->dest_loc;
		}
		if (loc == 0)
			break;
		array_clear(&uids);
		array_foreach(maps, map) {
			if (map->dest_loc == loc)
				seq_range_array_add(&uids, map->dest_uid);
		}
		box = sync_location_alloc(ctx, loc);
		if (mailbox_exists(box, FALSE, &existence) < 0) {
			sync_set_dest_error(ctx, box, "Looking up");
			ret = -1;
		} else if (existence == MAILBOX_EXISTENCE_SELECT &&
			   sync_expunge_dest(ctx, box, &uids) < 0) {
			ret = -1;
		}
		mailbox_free(&box);
		done_loc = loc;
	}
	return ret;
}

static int
sync_folder_metadata(struct migrate_sync_ctx *ctx,
		     struct migrate_sync_folder *f, struct mailbox *sbox,
		     struct mailbox *dbox, ARRAY_TYPE(seq_range) *copy_uids)
{
	struct migrate_state_folder *state = f->state;
	struct mailbox_transaction_context *st, *dt = NULL;
	struct mail_search_args *search_args;
	struct mail_search_context *search_ctx;
	struct mail *smail, *dmail = NULL, *tmail;
	const struct migrate_uid_map *map;
	ARRAY_TYPE(sync_location) locs;
	ARRAY_TYPE(seq_range) seen;
	bool skip;
	enum mail_flags flags;
	const char *const *keywords;
	struct mail_keywords *kw;
	int ret = 0;

	if (dbox != NULL) {
		/* not EXTERNAL: that would mark the changes as already in
		   the mail files */
		dt = mailbox_transaction_begin(dbox, 0, __func__);
		dmail = mail_alloc(dt, MAIL_FETCH_FLAGS, NULL);
	}
	t_array_init(&seen, 64);
	t_array_init(&locs, 4);
	search_args = mail_search_build_init();
	mail_search_build_add_all(search_args);
	st = mailbox_transaction_begin(sbox, 0, __func__);
	search_ctx = mailbox_search_init(st, search_args, NULL,
					 MAIL_FETCH_FLAGS |
					 (ctx->opts->maxage_days > 0 ?
					  MAIL_FETCH_RECEIVED_DATE : 0), NULL);
	mail_search_args_unref(&search_args);
	while (mailbox_search_next(search_ctx, &smail)) {
		seq_range_array_add(&seen, smail->uid);
		map = migrate_state_map_lookup(state, smail->uid);
		if (ctx->opts->final) {
			if (sync_final_wanted(ctx, state, smail, map))
				seq_range_array_add(copy_uids, smail->uid);
			continue;
		}
		tmail = dmail;
		if (map != NULL && dmail != NULL && map->dest_loc != 0) {
			/* archived: the copy lives in a year folder now */
			tmail = sync_location_mail(ctx, &locs, map->dest_loc,
						   &skip);
			if (skip)
				continue;
		}
		if (map != NULL && dmail != NULL &&
		    (tmail == NULL || !mail_set_uid(tmail, map->dest_uid))) {
			/* deleted at the destination behind our back: the
			   mirror copies it again */
			migrate_state_map_remove(ctx->state, state, smail->uid);
			map = NULL;
		}
		if (map == NULL || dmail == NULL) {
			seq_range_array_add(copy_uids, smail->uid);
			continue;
		}
		flags = mail_get_flags(smail) & MAIL_FLAGS_NONRECENT;
		keywords = mail_get_keywords(smail);
		/* a keyword the destination refuses is not a difference:
		   it was dropped when the message was copied */
		if (sync_flags_equal(flags,
				     sync_valid_keywords(tmail->box, keywords),
				     mail_get_flags(tmail),
				     mail_get_keywords(tmail)))
			continue;
		ctx->stats->messages_updated++;
		if (ctx->opts->dry_run)
			continue;
		mail_update_flags(tmail, MODIFY_REPLACE, flags);
		kw = sync_keywords(ctx, tmail->box, keywords);
		if (kw == NULL) {
			kw = mailbox_keywords_create_valid(tmail->box,
				(const char *const[]){ NULL });
		}
		mail_update_keywords(tmail, MODIFY_REPLACE, kw);
		mailbox_keywords_unref(&kw);
	}
	if (sync_locations_finish(ctx, &locs, !ctx->opts->dry_run) < 0)
		ret = -1;
	if (mailbox_search_deinit(&search_ctx) < 0) {
		sync_set_source_error(ctx, sbox, "Fetching flags of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	if (dt != NULL) {
		mail_free(&dmail);
		/* the sync applies the changes to the mail files */
		if (mailbox_transaction_commit(&dt) < 0 ||
		    mailbox_sync(dbox, 0) < 0) {
			sync_set_dest_error(ctx, dbox, "Updating flags in");
			ret = -1;
		}
		sync_kill_point(ctx, "flags");
	}
	if (ret < 0)
		return -1;
	if (ctx->opts->final) {
		/* the final sync deletes nothing */
		return 0;
	}

	/* what we copied and the source no longer lists is gone */
	array_foreach(&state->map, map) {
		if (!seq_range_exists(&seen, map->src_uid))
			seq_range_array_add(&f->delete_src_uids, map->src_uid);
	}
	return 0;
}

struct sync_copy_batch {
	struct mailbox_transaction_context *t;
	uoff_t bytes;
	/* the source UIDs saved in this batch, in save order */
	ARRAY(uint32_t) src_uids;
};

/* Map the batch's source UIDs to the UIDs the commit assigned. */
static int
sync_copy_map_saved(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		    const struct sync_copy_batch *batch,
		    const struct mail_transaction_commit_changes *changes)
{
	struct migrate_state_folder *state = f->state;
	struct seq_range_iter iter;
	const uint32_t *src_uids;
	unsigned int i, count, n = 0;
	uint32_t dest_uid;

	src_uids = array_get(&batch->src_uids, &count);
	if (seq_range_count(&changes->saved_uids) != count) {
		sync_set_error(ctx, MIGRATE_ERROR_FAILED, t_strdup_printf(
			"%s: the commit returned %u UIDs for %u saved messages",
			f->dest_name, seq_range_count(&changes->saved_uids),
			count));
		return -1;
	}
	seq_range_array_iter_init(&iter, &changes->saved_uids);
	for (i = 0; i < count; i++) {
		if (!seq_range_array_iter_nth(&iter, n++, &dest_uid))
			i_unreached();
		migrate_state_map_add(ctx->state, state, src_uids[i], dest_uid);
		if (dest_uid >= state->dest_uidnext)
			state->dest_uidnext = dest_uid + 1;
	}
	return 0;
}

static int
sync_copy_commit(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		 struct mailbox *dbox, struct sync_copy_batch *batch)
{
	struct mail_transaction_commit_changes changes;
	const char *error;
	int ret = 0;

	if (batch->t == NULL)
		return 0;
	if (ctx->state == NULL) {
		/* a worker: the owner maps the copies by their GUIDs */
		if (mailbox_transaction_commit(&batch->t) < 0) {
			sync_set_dest_error(ctx, dbox, "Saving to");
			ret = -1;
		}
		sync_kill_point(ctx, "commit");
		batch->bytes = 0;
		array_clear(&batch->src_uids);
		return ret;
	}
	if (f->state->dest_pending_uidnext == 0) {
		/* recorded durably before the commit, see
		   migrate_state_folder.dest_pending_uidnext */
		struct mailbox_status status;

		/* the open status does not move with our commits */
		mailbox_get_open_status(dbox, STATUS_UIDNEXT, &status);
		f->state->dest_pending_uidnext =
			I_MAX(status.uidnext, f->state->dest_uidnext);
		migrate_state_folder_update(ctx->state, f->state);
		if (migrate_state_flush(ctx->state, ctx->state_fsync,
					&error) < 0) {
			sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
			mailbox_transaction_rollback(&batch->t);
			return -1;
		}
	}
	if (mailbox_transaction_commit_get_changes(&batch->t, &changes) < 0) {
		sync_set_dest_error(ctx, dbox, "Saving to");
		ret = -1;
	} else {
		sync_kill_point(ctx, "commit");
		/* the UIDs the saves got, in save order; rescanning the
		   folder instead (as crash recovery does, by GUID) would
		   read a Maildir's whole cur/ after every batch */
		ret = sync_copy_map_saved(ctx, f, batch, &changes);
		pool_unref(&changes.pool);
	}
	batch->bytes = 0;
	array_clear(&batch->src_uids);
	if (ret == 0 && array_count(&f->recover_dest_uids) == 0)
		f->state->dest_pending_uidnext = 0;
	migrate_state_folder_update(ctx->state, f->state);
	if (migrate_state_flush(ctx->state, ctx->state_fsync, &error) < 0) {
		sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
		ret = -1;
	}
	sync_kill_point(ctx, "state");
	return ret;
}

#define MIGRATE_SAVE_BLOCK_SIZE (128*1024)

static int
sync_save_one(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	      struct mailbox *dbox, struct sync_copy_batch *batch,
	      struct mail *smail, struct istream *input, time_t received);

/* Whether a source's refusal to give a message is temporary: it asks us
   to slow down or has a passing problem (Gmail, Exchange, Yahoo:
   NO [THROTTLED] / [LIMIT] / [UNAVAILABLE] ..., or only words to that
   effect).  imapc keeps the response code only in the text of its
   "didn't send" error, and drops it elsewhere: so the text decides. */
static bool sync_source_refusal_temporary(const char *errstr)
{
	static const char *const temporary[] = {
		"[throttled]", "[limit]", "[unavailable]", "[serverbug]",
		"[overquota]", "[inuse]", "throttl", "rate limit",
		"slow down", "too many", "try again", "temporar", NULL
	};
	const char *lerr = t_str_lcase(errstr);
	unsigned int i;

	for (i = 0; temporary[i] != NULL; i++) {
		if (strstr(lerr, temporary[i]) != NULL)
			return TRUE;
	}
	return FALSE;
}

/* The source could not give smail: 0 when it is gone (skipped), 2 when
   the source refuses this one message (left out and reported, the run
   goes on), -1 when the failure is the connection's or the server's. */
static int
sync_copy_source_failed(struct migrate_sync_ctx *ctx,
			struct migrate_sync_folder *f, struct mail *smail,
			enum mail_error error, const char *errstr)
{
	enum migrate_error code;
	uoff_t size;

	if (error == MAIL_ERROR_EXPUNGED)
		return 0;
	/* the storage's error buffer changes with its next call */
	errstr = t_strdup(errstr);
	if (strstr(errstr, "(FETCH replied: ") != NULL) {
		/* imapc: the server answered the FETCH without the message
		   (NO, or OK without it): a refusal, unless it says it is
		   temporary */
		code = sync_source_refusal_temporary(errstr) ?
			MIGRATE_ERROR_SOURCE_TEMP : MIGRATE_ERROR_FAILED;
	} else if (sync_source_refusal_temporary(errstr))
		code = MIGRATE_ERROR_SOURCE_TEMP;
	else
		code = migrate_error_from_source(error, errstr);
	if (code != MIGRATE_ERROR_FAILED) {
		sync_set_error(ctx, code, t_strdup_printf(
			"Source: Fetching UID %u of %s failed: %s",
			smail->uid, mailbox_get_vname(smail->box),
			migrate_source_explain_error(errstr)));
		return -1;
	}
	if (mail_get_virtual_size(smail, &size) < 0) {
		/* the storage's FETCH failed as a whole: ask for the size
		   alone, on our own connection */
		const char *size_error;

		if (migrate_fetcher_size(sync_fetcher(ctx),
					 mailbox_get_vname(smail->box),
					 smail->uid, &size, &size_error) < 0)
			size = 0;
	}
	sync_reject(ctx, f, smail->uid, size,
		    t_strconcat("the source refused to give it: ", errstr,
				NULL));
	return 2;
}

/* Returns 1 with the message's body, 0 when the source no longer has it,
   2 when the source refuses it (reported), -1 on error.  A large message
   is read in pieces, the rest through the source storage (prefetched). */
static int
sync_copy_get_input(struct migrate_sync_ctx *ctx,
		    struct migrate_sync_folder *f, struct mail *smail,
		    bool large, struct istream **input_r, time_t *received_r)
{
	enum mail_error error;
	const char *errstr;
	uoff_t size;
	bool expunged, refused;

	if (mail_get_received_date(smail, received_r) < 0 ||
	    (large && mail_get_virtual_size(smail, &size) < 0) ||
	    (!large && mail_get_stream(smail, NULL, NULL, input_r) < 0)) {
		errstr = mailbox_get_last_internal_error(smail->box, &error);
		return sync_copy_source_failed(ctx, f, smail, error, errstr);
	}
	if (!large) {
		i_stream_ref(*input_r);
		return 1;
	}
	if (migrate_fetcher_fetch(sync_fetcher(ctx),
				  mailbox_get_vname(smail->box),
				  smail->uid, size, input_r, &expunged,
				  &refused, &errstr) < 0) {
		return sync_copy_source_failed(ctx, f, smail,
			expunged ? MAIL_ERROR_EXPUNGED :
			refused ? MAIL_ERROR_PARAMS : MAIL_ERROR_TEMP, errstr);
	}
	return 1;
}

static int
sync_copy_one(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	      struct mailbox *dbox, struct sync_copy_batch *batch,
	      struct mail *smail, bool large)
{
	struct istream *input;
	time_t received;
	int ret;

	ret = sync_copy_get_input(ctx, f, smail, large, &input, &received);
	if (ret != 1) {
		if (ret == 0) {
			ctx->stats->messages_skipped++;
			f->skipped++;
		}
		if (ret >= 0) {
			ctx->progress_done++;
			ret = 0;
		}
		return ret;
	}
	ret = sync_save_one(ctx, f, dbox, batch, smail, input, received);
	i_stream_unref(&input);
	return ret;
}

/* Saving smail failed: a message the destination refuses as such (too
   large, invalid) is left out and reported, and the run goes on (0); any
   other failure stops the folder (-1). */
static int
sync_save_failed(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		 struct mailbox *dbox, struct mail *smail,
		 struct istream *input)
{
	enum mail_error error;
	const char *errstr;
	uoff_t size;

	errstr = t_strdup(mailbox_get_last_internal_error(dbox, &error));
	switch (error) {
	case MAIL_ERROR_LIMIT:
	case MAIL_ERROR_PARAMS:
	case MAIL_ERROR_INVALIDDATA:
	case MAIL_ERROR_CONVERSION:
		break;
	default:
		sync_set_dest_error(ctx, dbox, "Saving to");
		return -1;
	}
	if (mail_get_virtual_size(smail, &size) < 0)
		size = input->v_offset;
	sync_reject(ctx, f, smail->uid, size,
		    t_strconcat("the destination refused it: ", errstr, NULL));
	ctx->progress_done++;
	return 0;
}

static int
sync_save_one(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	      struct mailbox *dbox, struct sync_copy_batch *batch,
	      struct mail *smail, struct istream *input, time_t received)
{
	struct mail_save_context *save;
	struct mail_keywords *kw;
	ssize_t rret;
	int ret = 0;

	if (batch->t == NULL) {
		batch->t = mailbox_transaction_begin(dbox,
			MAILBOX_TRANSACTION_FLAG_EXTERNAL |
			MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS, __func__);
	}
	save = mailbox_save_alloc(batch->t);
	kw = sync_keywords(ctx, dbox, mail_get_keywords(smail));
	mailbox_save_set_flags(save, mail_get_flags(smail) &
			       MAIL_FLAGS_NONRECENT, kw);
	if (kw != NULL)
		mailbox_keywords_unref(&kw);
	mailbox_save_set_received_date(save, received, 0);
	mailbox_save_set_guid(save, sync_dest_guid(f->state, smail->uid));
	if (f->state->dest_uidvalidity == f->state->src_uidvalidity)
		mailbox_save_set_uid(save, smail->uid);

	/* the streams the save path stacks on input inherit its buffer
	   size: larger blocks, fewer write()s to the new mail file */
	i_stream_set_max_buffer_size(input, MIGRATE_SAVE_BLOCK_SIZE);
	if (mailbox_save_begin(&save, input) < 0)
		return sync_save_failed(ctx, f, dbox, smail, input);
	do {
		if (mailbox_save_continue(save) < 0) {
			ret = -1;
			break;
		}
	} while ((rret = i_stream_read(input)) > 0 || rret == -2);

	if (input->stream_errno != 0) {
		/* never save a partial message */
		mailbox_save_cancel(&save);
		sync_set_source_error(ctx, smail->box, t_strdup_printf(
			"Reading UID %u of", smail->uid));
		return -1;
	}
	if (ret < 0) {
		mailbox_save_cancel(&save);
		return sync_save_failed(ctx, f, dbox, smail, input);
	}
	if (mailbox_save_finish(&save) < 0)
		return sync_save_failed(ctx, f, dbox, smail, input);
	sync_kill_point(ctx, "save");
	array_push_back(&batch->src_uids, &smail->uid);
	batch->bytes += input->v_offset;
	ctx->stats->messages_copied++;
	ctx->stats->bytes_copied += input->v_offset;
	ctx->progress_done++;
	sync_progress(ctx, FALSE);
	if (array_count(&batch->src_uids) >= ctx->set->batch_messages ||
	    batch->bytes >= ctx->set->batch_size)
		return sync_copy_commit(ctx, f, dbox, batch);
	return 0;
}

ARRAY_DEFINE_TYPE(seq_range_array, ARRAY_TYPE(seq_range));

/* Plans the copy from the sizes (RFC822.SIZE, no bodies): messages larger
   than MIGRATE_FETCH_LARGE_SIZE go to large_uids (read in pieces), the
   rest into chunks of at most migrate_prefetch messages and
   MIGRATE_PREFETCH_BYTES.  Each chunk is fetched ahead as a whole, so
   the source streams without a pause per message and memory stays
   bounded by the chunk.  *bytes_r is the size of them all (what a dry
   run reports). */
static int
sync_plan_copy(struct migrate_sync_ctx *ctx, struct mailbox *sbox,
	       const ARRAY_TYPE(seq_range) *uids,
	       ARRAY_TYPE(seq_range_array) *chunks,
	       ARRAY_TYPE(seq_range) *large_uids, uoff_t *bytes_r)
{
	struct mailbox_transaction_context *st;
	struct mail_search_context *search_ctx;
	ARRAY_TYPE(seq_range) *chunk = NULL;
	unsigned int chunk_count = 0;
	uoff_t size, chunk_bytes = 0;
	struct mail *smail;
	int ret = 0;

	*bytes_r = 0;
	st = mailbox_transaction_begin(sbox, 0, __func__);
	search_ctx = sync_search_uids(st, uids, MAIL_FETCH_VIRTUAL_SIZE, NULL);
	while (mailbox_search_next(search_ctx, &smail)) {
		if (mail_get_virtual_size(smail, &size) < 0)
			size = 0;
		*bytes_r += size;
		if (size > MIGRATE_FETCH_LARGE_SIZE) {
			seq_range_array_add(large_uids, smail->uid);
			continue;
		}
		if (chunk == NULL || chunk_count >= I_MAX(ctx->set->prefetch, 1) ||
		    chunk_bytes + size > MIGRATE_PREFETCH_BYTES) {
			chunk = array_append_space(chunks);
			t_array_init(chunk, 8);
			chunk_count = 0;
			chunk_bytes = 0;
		}
		seq_range_array_add(chunk, smail->uid);
		chunk_count++;
		chunk_bytes += size;
	}
	if (mailbox_search_deinit(&search_ctx) < 0) {
		sync_set_source_error(ctx, sbox, "Fetching sizes of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	return ret;
}

/* A dry run: what the copy would do, from the sizes only. */
static int
sync_dry_run_copy(struct migrate_sync_ctx *ctx, struct mailbox *sbox,
		  const ARRAY_TYPE(seq_range) *uids)
{
	ARRAY_TYPE(seq_range_array) chunks;
	ARRAY_TYPE(seq_range) large_uids;
	uoff_t bytes;
	int ret;

	t_array_init(&chunks, 8);
	t_array_init(&large_uids, 8);
	ret = sync_plan_copy(ctx, sbox, uids, &chunks, &large_uids, &bytes);
	ctx->stats->messages_copied += seq_range_count(uids);
	ctx->stats->bytes_copied += bytes;
	return ret;
}

static int
sync_copy_uids(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	       struct mailbox *sbox, struct mailbox *dbox,
	       struct sync_copy_batch *batch,
	       const ARRAY_TYPE(seq_range) *uids, bool large)
{
	struct mailbox_transaction_context *st;
	struct mail_search_context *search_ctx;
	struct mail *smail;
	int ret = 0;

	if (array_count(uids) == 0)
		return 0;
	st = mailbox_transaction_begin(sbox, 0, __func__);
	/* large ones: the metadata only, the body comes in pieces */
	search_ctx = sync_search_uids(st, uids,
		MAIL_FETCH_FLAGS | MAIL_FETCH_RECEIVED_DATE |
		(large ? MAIL_FETCH_VIRTUAL_SIZE :
		 MAIL_FETCH_STREAM_HEADER | MAIL_FETCH_STREAM_BODY), NULL);
	while (mailbox_search_next(search_ctx, &smail)) {
		T_BEGIN {
			ret = sync_copy_one(ctx, f, dbox, batch, smail, large);
		} T_END;
		if (ret < 0)
			break;
	}
	if (mailbox_search_deinit(&search_ctx) < 0 && ret == 0) {
		sync_set_source_error(ctx, sbox, "Fetching messages of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	return ret;
}

static int
sync_folder_copy(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		 struct mailbox *sbox, struct mailbox *dbox,
		 const ARRAY_TYPE(seq_range) *copy_uids)
{
	ARRAY_TYPE(seq_range_array) chunks;
	ARRAY_TYPE(seq_range) large_uids, *chunk;
	struct sync_copy_batch batch;
	uoff_t bytes;
	int ret;

	i_zero(&batch);
	/* not on the data stack: saves happen in their own stack frames */
	i_array_init(&batch.src_uids, 64);
	i_gettimeofday(&ctx->folder_start);
	ctx->progress_folder = f->dest_name;
	ctx->progress_done = 0;
	ctx->progress_total = seq_range_count(copy_uids);

	t_array_init(&chunks, 8);
	t_array_init(&large_uids, 8);
	ret = sync_plan_copy(ctx, sbox, copy_uids, &chunks, &large_uids,
			     &bytes);
	if (ret == 0) {
		array_foreach_modifiable(&chunks, chunk) {
			ret = sync_copy_uids(ctx, f, sbox, dbox, &batch, chunk,
					     FALSE);
			if (ret < 0)
				break;
		}
	}
	if (ret == 0) {
		ret = sync_copy_uids(ctx, f, sbox, dbox, &batch, &large_uids,
				     TRUE);
	}
	/* keep what was saved completely, even after a failure */
	if (sync_copy_commit(ctx, f, dbox, &batch) < 0)
		ret = -1;
	array_free(&batch.src_uids);
	return ret;
}

/* <Gmail: a message in several labels is downloaded once> */

struct sync_gmail_local {
	uint32_t uid;
	struct migrate_sync_folder *f;
	uint32_t dest_uid;
};
ARRAY_DEFINE_TYPE(sync_gmail_local, struct sync_gmail_local);

/* Copy the locals (source UIDs of f whose message is already here, in
   another label's folder) from those copies instead of the source.
   Those that cannot be read here go back to copy_uids. */
static int
sync_gmail_copy_local(struct migrate_sync_ctx *ctx,
		      struct migrate_sync_folder *f, struct mailbox *sbox,
		      struct mailbox *dbox,
		      const ARRAY_TYPE(sync_gmail_local) *locals,
		      ARRAY_TYPE(seq_range) *copy_uids)
{
	const struct sync_gmail_local *local;
	struct sync_copy_batch batch;
	struct mailbox_transaction_context *st, *lt = NULL;
	struct mail_search_context *search_ctx;
	struct migrate_sync_folder *cur_f = NULL;
	struct mailbox *lbox = NULL;
	struct mail *smail, *lmail = NULL;
	ARRAY_TYPE(seq_range) uids;
	struct istream *input;
	unsigned int i = 0, count, done = 0;
	time_t received;
	int ret = 0;

	local = array_get(locals, &count);
	t_array_init(&uids, count);
	for (i = 0; i < count; i++)
		seq_range_array_add(&uids, local[i].uid);
	i_zero(&batch);
	i_array_init(&batch.src_uids, 64);
	st = mailbox_transaction_begin(sbox, 0, __func__);
	search_ctx = sync_search_uids(st, &uids, MAIL_FETCH_FLAGS |
				      MAIL_FETCH_RECEIVED_DATE, NULL);
	i = 0;
	while (ret == 0 && mailbox_search_next(search_ctx, &smail)) {
		while (i < count && local[i].uid < smail->uid)
			i++;
		if (i == count || local[i].uid != smail->uid)
			continue;
		if (local[i].f != cur_f) {
			if (lbox != NULL) {
				mail_free(&lmail);
				(void)mailbox_transaction_commit(&lt);
				mailbox_free(&lbox);
			}
			cur_f = local[i].f;
			lbox = sync_dest_alloc(ctx, cur_f->dest_name);
			if (mailbox_sync(lbox, 0) < 0) {
				/* download them instead */
				mailbox_free(&lbox);
				seq_range_array_add(copy_uids, smail->uid);
				cur_f = NULL;
				continue;
			}
			lt = mailbox_transaction_begin(lbox, 0, __func__);
			lmail = mail_alloc(lt, MAIL_FETCH_STREAM_HEADER |
					   MAIL_FETCH_STREAM_BODY, NULL);
		}
		if (!mail_set_uid(lmail, local[i].dest_uid) ||
		    mail_get_received_date(smail, &received) < 0 ||
		    mail_get_stream(lmail, NULL, NULL, &input) < 0) {
			/* not here after all: download it */
			seq_range_array_add(copy_uids, smail->uid);
			continue;
		}
		i_stream_ref(input);
		T_BEGIN {
			ret = sync_save_one(ctx, f, dbox, &batch, smail, input,
					    received);
		} T_END;
		i_stream_unref(&input);
		done++;
	}
	if (lbox != NULL) {
		mail_free(&lmail);
		(void)mailbox_transaction_commit(&lt);
		mailbox_free(&lbox);
	}
	if (mailbox_search_deinit(&search_ctx) < 0 && ret == 0) {
		sync_set_source_error(ctx, sbox, "Fetching flags of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	if (sync_copy_commit(ctx, f, dbox, &batch) < 0)
		ret = -1;
	array_free(&batch.src_uids);
	if (done > 0) {
		e_info(ctx->event, "%s: %u messages copied from their other "
		       "labels here, not downloaded again", f->dest_name,
		       done);
	}
	return ret;
}

/* Before copying f's copy_uids from a Gmail source: leave out of All Mail
   what has a label (it is copied with the label), and copy locally what
   another label's folder already has here. */
static int
sync_gmail_folder_copy(struct migrate_sync_ctx *ctx,
		       struct migrate_sync_folder *f, struct mailbox *sbox,
		       struct mailbox *dbox, ARRAY_TYPE(seq_range) *copy_uids)
{
	ARRAY_TYPE(sync_gmail_local) locals;
	struct sync_gmail_local *local;
	struct mailbox_transaction_context *st;
	struct mail_search_context *search_ctx;
	struct migrate_sync_folder *other;
	struct mail *smail;
	const char *guid;
	unsigned int labelled = 0;
	uint32_t dest_uid;
	int ret = 0;

	if (sync_gmail_index(ctx) < 0)
		return -1;
	t_array_init(&locals, 16);
	st = mailbox_transaction_begin(sbox, 0, __func__);
	search_ctx = sync_search_uids(st, copy_uids, MAIL_FETCH_GUID, NULL);
	while (mailbox_search_next(search_ctx, &smail)) {
		if (mail_get_special(smail, MAIL_FETCH_GUID, &guid) < 0 ||
		    guid[0] == '\0')
			continue;
		if (f->gmail_all && sync_gmail_has_label(ctx, guid)) {
			seq_range_array_remove(copy_uids, smail->uid);
			labelled++;
		} else if (sync_gmail_find_local(ctx, f, guid, &other,
						 &dest_uid)) {
			seq_range_array_remove(copy_uids, smail->uid);
			local = array_append_space(&locals);
			local->uid = smail->uid;
			local->f = other;
			local->dest_uid = dest_uid;
		}
	}
	if (mailbox_search_deinit(&search_ctx) < 0) {
		sync_set_source_error(ctx, sbox, "Fetching the GUIDs of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	if (labelled > 0) {
		e_debug(ctx->event, "%s: %u messages of %s have labels: "
			"copied with them", f->dest_name, labelled,
			f->src_name);
	}
	if (ret == 0 && array_count(&locals) > 0)
		ret = sync_gmail_copy_local(ctx, f, sbox, dbox, &locals,
					    copy_uids);
	return ret;
}

/* A dry run over a new folder: what the copy would download, from the
   sizes only. */
static int
sync_folder_count_bytes(struct migrate_sync_ctx *ctx,
			const struct migrate_sync_folder *f)
{
	struct mailbox *sbox;
	struct mailbox_metadata metadata;
	int ret = 0;

	if (f->src_status.messages == 0)
		return 0;
	sbox = mailbox_alloc(ctx->src_ns->list, f->src_name,
			     MAILBOX_FLAG_READONLY);
	if (mailbox_get_metadata(sbox, MAILBOX_METADATA_VIRTUAL_SIZE,
				 &metadata) < 0) {
		sync_set_source_error(ctx, sbox, "Fetching sizes of");
		ret = -1;
	} else {
		ctx->stats->bytes_copied += metadata.virtual_size;
	}
	mailbox_free(&sbox);
	return ret;
}

static bool
sync_folder_unchanged(const struct migrate_sync_folder *f)
{
	const struct migrate_state_folder *state = f->state;
	const struct mailbox_status *status = &f->src_status;

	return state->src_uidnext != 0 &&
		state->src_uidvalidity == status->uidvalidity &&
		state->src_uidnext == status->uidnext &&
		state->src_messages == status->messages &&
		status->highest_modseq != 0 &&
		state->src_highestmodseq == status->highest_modseq;
}

static int
sync_folder_status(struct migrate_sync_ctx *ctx,
		   struct migrate_sync_folder *f)
{
	const enum mailbox_status_items items = STATUS_UIDVALIDITY |
		STATUS_UIDNEXT | STATUS_MESSAGES | STATUS_HIGHESTMODSEQ;
	struct mailbox *sbox;
	int ret = 0;

	sbox = mailbox_alloc(ctx->src_ns->list, f->src_name,
			     MAILBOX_FLAG_READONLY);

	if (mailbox_get_status(sbox, items, &f->src_status) < 0) {
		sync_set_source_error(ctx, sbox, "STATUS of");
		ret = -1;
	} else if (f->src_status.uidvalidity == 0) {
		/* a STATUS reply imapc could not use (mailutils' imap4d
		   does not quote a name with a space in it): EXAMINE
		   tells the same */
		if (mailbox_sync(sbox, 0) < 0) {
			sync_set_source_error(ctx, sbox, "Opening");
			ret = -1;
		} else {
			mailbox_get_open_status(sbox, items, &f->src_status);
		}
		if (ret == 0 && f->src_status.uidvalidity == 0) {
			/* never skip a folder in silence */
			sync_set_error(ctx, MIGRATE_ERROR_FAILED,
				t_strdup_printf("Source: %s has no UIDVALIDITY",
						f->src_name));
			ret = -1;
		}
	}
	mailbox_free(&sbox);
	return ret;
}

static void
sync_folder_uidvalidity_changed(struct migrate_sync_ctx *ctx,
				struct migrate_sync_folder *f)
{
	struct migrate_state_folder *state = f->state;
	const struct migrate_uid_map *map;

	e_warning(ctx->event, "Source UIDVALIDITY of %s changed (%u -> %u): "
		  "its messages are matched again by content",
		  f->src_name, state->src_uidvalidity,
		  f->src_status.uidvalidity);
	/* the copies of the old UIDVALIDITY stay until the run proves them
	   gone; the new UIDs are copied anew.  Archived copies stay where
	   they are, foreign from now on. */
	array_foreach(&state->map, map) {
		if (map->dest_loc == 0) {
			seq_range_array_add(&f->delete_orphan_dest_uids,
					    map->dest_uid);
		}
	}
	migrate_state_folder_clear_map(ctx->state, state);
}

/* Record the source status taken before reading the folder: what changed
   since then is seen by the next run. */
static void
sync_folder_set_complete(struct migrate_sync_ctx *ctx,
			 struct migrate_sync_folder *f)
{
	struct migrate_state_folder *state = f->state;

	if (f->rejected > 0 || f->skipped > 0 || f->deletes_unconfirmed) {
		/* what was left out is tried again by the next run, and what
		   seemed gone is looked for again: a source that said so by
		   mistake would otherwise lose it for good, as the folder's
		   STATUS would still match */
		migrate_state_folder_update(ctx->state, state);
		return;
	}
	state->src_uidnext = f->src_status.uidnext;
	state->src_messages = f->src_status.messages;
	state->src_highestmodseq = f->src_status.highest_modseq;
	migrate_state_folder_update(ctx->state, state);
}

/* UIDs for a log line: the IMAP set, cut after 200 characters */
static const char *sync_uids_str(const ARRAY_TYPE(seq_range) *uids)
{
	string_t *str = t_str_new(128);

	imap_write_seq_range(str, uids);
	if (str_len(str) > 200) {
		str_truncate(str, 200);
		str_append(str, "...");
	}
	return str_c(str);
}

/* Every message the copy set out to copy must now be mapped, left out
   (reported) or gone from the source (skipped).  Anything else is a loss
   that nothing else would notice: the folder is then not complete, the
   run fails and the next run copies what is missing. */
static int
sync_folder_check_copied(struct migrate_sync_ctx *ctx,
			 struct migrate_sync_folder *f)
{
	const struct seq_range *range;
	ARRAY_TYPE(seq_range) missing;
	unsigned int count, wanted;
	uint32_t uid;

	if (!array_is_created(&f->copying_uids) ||
	    array_count(&f->copying_uids) == 0)
		return 0;
	wanted = seq_range_count(&f->copying_uids);
	t_array_init(&missing, 8);
	array_foreach(&f->copying_uids, range) {
		for (uid = range->seq1; uid <= range->seq2; uid++) {
			if (migrate_state_map_lookup(f->state, uid) == NULL)
				seq_range_array_add(&missing, uid);
			if (uid == (uint32_t)-1)
				break;
		}
	}
	array_clear(&f->copying_uids);
	count = seq_range_count(&missing);
	if (count <= f->rejected + f->skipped)
		return 0;

	sync_set_error(ctx, MIGRATE_ERROR_TEMP, t_strdup_printf(
		"%s: %u of %u messages were neither copied, left out nor "
		"gone from the source (UIDs %s, %u left out, %u gone): the "
		"next run copies them", f->dest_name,
		count - f->rejected - f->skipped, wanted,
		sync_uids_str(&missing), f->rejected, f->skipped));
	return -1;
}

/* After the copy: map what reached the destination since the last scan,
   and record the folder as complete unless deletions are pending. */
static int
sync_folder_finish(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		   struct mailbox *dbox)
{
	struct migrate_state_folder *state = f->state;
	struct mailbox_status dstatus;

	if (mailbox_get_status(dbox, STATUS_UIDNEXT, &dstatus) < 0) {
		sync_set_dest_error(ctx, dbox, "Opening");
		return -1;
	}
	if (dstatus.uidnext > state->dest_uidnext &&
	    sync_scan_new_dest(ctx, f, dbox) < 0)
		return -1;
	if (sync_folder_check_copied(ctx, f) < 0) {
		migrate_state_folder_update(ctx->state, state);
		return -1;
	}
	/* with deletions pending, the folder is complete only once they are
	   made */
	if (array_count(&f->delete_src_uids) == 0 &&
	    array_count(&f->delete_orphan_dest_uids) == 0)
		sync_folder_set_complete(ctx, f);
	else
		migrate_state_folder_update(ctx->state, state);
	sync_kill_point(ctx, "finish");
	return 0;
}

static const char *sync_mail_match_key(struct mail *mail)
{
	const char *message_id;
	time_t received;
	uoff_t size;

	if (mail_get_received_date(mail, &received) < 0 ||
	    mail_get_virtual_size(mail, &size) < 0)
		return NULL;
	if (mail_get_first_header(mail, "Message-ID", &message_id) <= 0)
		message_id = "";
	return t_strdup_printf("%lld %"PRIuUOFF_T" %s",
			       (long long)received, size, message_id);
}

/* Find copies made earlier among candidates (destination UIDs) by content
   (INTERNALDATE, size, Message-ID): after a UIDVALIDITY change, and after
   a crash that lost the GUIDs of a batch.  Matched candidates are mapped
   and removed from copy_uids and candidates. */
static int
sync_folder_rematch(struct migrate_sync_ctx *ctx,
		    struct migrate_sync_folder *f, struct mailbox *sbox,
		    struct mailbox *dbox, ARRAY_TYPE(seq_range) *copy_uids,
		    ARRAY_TYPE(seq_range) *candidates, const char *what)
{
	static const char *const match_headers[] = { "Message-ID", NULL };
	HASH_TABLE(const char *, void *) orphans;
	struct mailbox_header_lookup_ctx *headers;
	struct mailbox_transaction_context *st, *dt;
	struct mail_search_context *search_ctx;
	struct mail *mail, *dmail;
	struct mail_keywords *kw;
	const char *key;
	void *value;
	uint32_t dest_uid;
	unsigned int matched = 0;
	pool_t pool;
	int ret = 0;

	pool = pool_alloconly_create("migrate rematch", 4096);
	hash_table_create(&orphans, pool, 0, str_hash, strcmp);
	if (mailbox_sync(dbox, 0) < 0) {
		sync_set_dest_error(ctx, dbox, "Opening");
		pool_unref(&pool);
		return -1;
	}
	headers = mailbox_header_lookup_init(dbox, match_headers);
	dt = mailbox_transaction_begin(dbox, 0, __func__);
	search_ctx = sync_search_uids(dt, candidates,
		MAIL_FETCH_RECEIVED_DATE | MAIL_FETCH_VIRTUAL_SIZE, headers);
	mailbox_header_lookup_unref(&headers);
	while (mailbox_search_next(search_ctx, &mail)) T_BEGIN {
		key = sync_mail_match_key(mail);
		if (key != NULL && !hash_table_lookup_full(orphans, key,
							   &key, &value)) {
			const char *pkey = p_strdup(pool, key);

			hash_table_insert(orphans, pkey,
					  POINTER_CAST(mail->uid));
		}
	} T_END;
	if (mailbox_search_deinit(&search_ctx) < 0) {
		sync_set_dest_error(ctx, dbox, "Reading");
		ret = -1;
	}

	headers = mailbox_header_lookup_init(sbox, match_headers);
	st = mailbox_transaction_begin(sbox, 0, __func__);
	search_ctx = sync_search_uids(st, copy_uids,
		MAIL_FETCH_FLAGS | MAIL_FETCH_RECEIVED_DATE |
		MAIL_FETCH_VIRTUAL_SIZE, headers);
	mailbox_header_lookup_unref(&headers);
	dmail = mail_alloc(dt, MAIL_FETCH_FLAGS, NULL);
	while (ret == 0 && mailbox_search_next(search_ctx, &mail)) T_BEGIN {
		key = sync_mail_match_key(mail);
		if (key != NULL &&
		    hash_table_lookup_full(orphans, key, &key, &value)) {
			dest_uid = POINTER_CAST_TO(value, uint32_t);
			hash_table_remove(orphans, key);
			if (mail_set_uid(dmail, dest_uid)) {
				migrate_state_map_add(ctx->state, f->state,
						      mail->uid, dest_uid);
				seq_range_array_remove(copy_uids, mail->uid);
				seq_range_array_remove(candidates, dest_uid);
				mail_update_flags(dmail, MODIFY_REPLACE,
					mail_get_flags(mail) &
					MAIL_FLAGS_NONRECENT);
				kw = mailbox_keywords_create_valid(dbox,
					sync_valid_keywords(dbox,
						mail_get_keywords(mail)));
				mail_update_keywords(dmail, MODIFY_REPLACE, kw);
				mailbox_keywords_unref(&kw);
				matched++;
			}
		}
	} T_END;
	mail_free(&dmail);
	if (mailbox_search_deinit(&search_ctx) < 0 && ret == 0) {
		sync_set_source_error(ctx, sbox, "Fetching headers of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	if (mailbox_transaction_commit(&dt) < 0 ||
	    mailbox_sync(dbox, 0) < 0) {
		sync_set_dest_error(ctx, dbox, "Updating flags in");
		ret = -1;
	}
	e_info(ctx->event, "%s: %u %s found again, %u to copy",
	       f->dest_name, matched, what, seq_range_count(copy_uids));
	ctx->stats->messages_recovered += matched;
	hash_table_destroy(&orphans);
	pool_unref(&pool);
	return ret;
}

static bool
sync_folder_delegate(struct migrate_sync_ctx *ctx,
		     struct migrate_sync_folder *f, struct mailbox *dbox,
		     const ARRAY_TYPE(seq_range) *copy_uids);

static int
sync_folder(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f)
{
	struct migrate_state_folder *state = f->state;
	struct mailbox *sbox, *dbox = NULL;
	ARRAY_TYPE(seq_range) copy_uids;
	int ret = 0;

	/* --maxage looks at every message in its window again */
	if (state != NULL && ctx->opts->maxage_days == 0 &&
	    sync_folder_unchanged(f)) {
		/* nothing changed at the source since the last complete
		   sync: no SELECT, nothing downloaded */
		ctx->stats->folders_unchanged++;
		return 0;
	}
	if (ctx->opts->dry_run && state == NULL) {
		ctx->stats->folders_created++;
		ctx->stats->messages_copied += f->src_status.messages;
		return sync_folder_count_bytes(ctx, f);
	}
	if (state == NULL) {
		state = f->state = migrate_state_folder_add(ctx->state,
			f->src_name, f->dest_name);
		state->src_uidvalidity = f->src_status.uidvalidity;
		migrate_state_folder_update(ctx->state, state);
	} else if (state->src_uidvalidity != f->src_status.uidvalidity) {
		if (!ctx->opts->dry_run)
			sync_folder_uidvalidity_changed(ctx, f);
		state->src_uidvalidity = f->src_status.uidvalidity;
	}

	if (!ctx->opts->dry_run) {
		if (sync_dest_open(ctx, f, &dbox) < 0)
			return -1;
		if (sync_scan_new_dest(ctx, f, dbox) < 0) {
			mailbox_free(&dbox);
			return -1;
		}
	} else {
		dbox = sync_dest_alloc(ctx, f->dest_name);
		if (mailbox_open(dbox) < 0)
			mailbox_free(&dbox);
	}

	sbox = mailbox_alloc(ctx->src_ns->list, f->src_name,
			     MAILBOX_FLAG_READONLY);
	if (mailbox_sync(sbox, 0) < 0) {
		sync_set_source_error(ctx, sbox, "Opening");
		ret = -1;
	}
	t_array_init(&copy_uids, 64);
	if (ret == 0) {
		ret = sync_folder_metadata(ctx, f, sbox, dbox, &copy_uids);
	}
	if (ret == 0 && array_count(&copy_uids) > 0 &&
	    array_count(&f->recover_dest_uids) > 0 && !ctx->opts->dry_run) {
		ret = sync_folder_rematch(ctx, f, sbox, dbox, &copy_uids,
			&f->recover_dest_uids,
			"copies of an interrupted batch");
	}
	if (ret == 0 && !ctx->opts->dry_run) {
		/* what is left did not come from us */
		ctx->stats->messages_foreign +=
			seq_range_count(&f->recover_dest_uids);
		array_clear(&f->recover_dest_uids);
		state->dest_pending_uidnext = 0;
	}
	if (ret == 0 && array_count(&copy_uids) > 0 &&
	    array_count(&f->delete_orphan_dest_uids) > 0 &&
	    !ctx->opts->dry_run) {
		ret = sync_folder_rematch(ctx, f, sbox, dbox, &copy_uids,
			&f->delete_orphan_dest_uids,
			"messages of the old UIDVALIDITY");
	}
	if (ret == 0 && ctx->gmail && array_count(&copy_uids) > 0 &&
	    !ctx->opts->dry_run)
		ret = sync_gmail_folder_copy(ctx, f, sbox, dbox, &copy_uids);
	if (ret == 0 && array_count(&copy_uids) > 0 && !ctx->opts->dry_run) {
		p_array_init(&f->copying_uids, ctx->pool,
			     array_count(&copy_uids));
		array_append_array(&f->copying_uids, &copy_uids);
	}
	if (ret == 0 && array_count(&copy_uids) > 0) {
		if (ctx->opts->dry_run)
			ret = sync_dry_run_copy(ctx, sbox, &copy_uids);
		else if (sync_folder_delegate(ctx, f, dbox, &copy_uids)) {
			/* sync_worker_done() finishes the folder */
			mailbox_free(&sbox);
			mailbox_free(&dbox);
			return 0;
		} else {
			ret = sync_folder_copy(ctx, f, sbox, dbox, &copy_uids);
		}
	}
	mailbox_free(&sbox);

	if (ret == 0 && !ctx->opts->dry_run)
		ret = sync_folder_finish(ctx, f, dbox);
	if (dbox != NULL)
		mailbox_free(&dbox);
	return ret;
}

/* <worker processes> */

/* Give the copy to an idle worker, when there is one and the copy is
   worth it.  Returns TRUE when a worker took it. */
static bool
sync_folder_delegate(struct migrate_sync_ctx *ctx,
		     struct migrate_sync_folder *f, struct mailbox *dbox,
		     const ARRAY_TYPE(seq_range) *copy_uids)
{
	struct migrate_state_folder *state = f->state;
	struct mailbox_status status;
	unsigned int count = seq_range_count(copy_uids);
	const char *error;
	string_t *line;

	if (ctx->gmail) {
		/* a message in several labels is downloaded once: that
		   needs one process to know what is copied */
		return FALSE;
	}
	if (ctx->opts->workers == NULL ||
	    count < MIGRATE_WORKER_MIN_MESSAGES ||
	    migrate_workers_idle(ctx->opts->workers) == 0)
		return FALSE;
	/* the worker's commits are recovered like our own batches when we
	   crash before we have mapped them */
	mailbox_get_open_status(dbox, STATUS_UIDNEXT, &status);
	state->dest_pending_uidnext = status.uidnext;
	migrate_state_folder_update(ctx->state, state);
	if (migrate_state_flush(ctx->state, ctx->state_fsync, &error) < 0) {
		sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
		return FALSE;
	}

	line = t_str_new(256);
	str_printfa(line, "COPY\t%u\t%u\t%u\t", state->id,
		    state->src_uidvalidity, state->dest_uidvalidity);
	str_append_tabescaped(line, f->src_name);
	str_append_c(line, '\t');
	str_append_tabescaped(line, f->dest_name);
	str_append_c(line, '\t');
	imap_write_seq_range(line, copy_uids);
	if (!migrate_workers_submit(ctx->opts->workers, str_c(line), f))
		return FALSE;
	f->delegated = TRUE;
	f->delegated_count = count;
	e_debug(ctx->event, "%s: a worker copies %u messages",
		f->dest_name, count);
	return TRUE;
}

/* A worker's answer for folder f (NULL: the worker died). */
static void
sync_worker_done(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		 const char *line)
{
	const char *const *args = NULL;
	unsigned int copied, skipped, dropped, code = MIGRATE_ERROR_FAILED;
	unsigned int report_idx;
	struct mailbox *dbox;
	const char *error;
	uoff_t bytes;
	bool done;

	f->delegated = FALSE;
	if (line != NULL)
		args = t_strsplit_tabescaped(line);
	if (args == NULL || str_array_length(args) < 5 ||
	    str_to_uint(args[1], &copied) < 0 ||
	    str_to_uoff(args[2], &bytes) < 0 ||
	    str_to_uint(args[3], &skipped) < 0 ||
	    str_to_uint(args[4], &dropped) < 0 ||
	    (strcmp(args[0], "DONE") != 0 &&
	     (strcmp(args[0], "FAIL") != 0 || str_array_length(args) < 7 ||
	      str_to_uint(args[5], &code) < 0))) {
		/* what it saved is found by GUID next time */
		sync_set_error(ctx, MIGRATE_ERROR_TEMP, t_strdup_printf(
			"%s: The worker copying it %s", f->dest_name,
			line == NULL ? "exited without an answer" :
			"gave an invalid answer"));
		return;
	}
	ctx->stats->messages_copied += copied;
	ctx->stats->bytes_copied += bytes;
	ctx->stats->messages_skipped += skipped;
	ctx->stats->flags_dropped += dropped;
	f->skipped += skipped;
	done = strcmp(args[0], "DONE") == 0;
	report_idx = done ? 5 : 7;
	if (str_array_length(args) > report_idx)
		sync_worker_report_merge(ctx, f, args[report_idx]);
	if (!done) {
		/* the worker has logged it; what it saved is found by GUID
		   next time (dest_pending_uidnext stays) */
		sync_set_error(ctx, code <= MIGRATE_ERROR_FAILED ||
			       code > MIGRATE_ERROR_TEMP ?
			       MIGRATE_ERROR_FAILED : code, t_strdup_printf(
			       "%s: %s", f->dest_name, args[6]));
		return;
	}
	/* every copy it made carries our GUID: anything else that arrived
	   meanwhile is foreign */
	f->state->dest_pending_uidnext = 0;
	dbox = sync_dest_alloc(ctx, f->dest_name);
	(void)sync_folder_finish(ctx, f, dbox);
	mailbox_free(&dbox);
	if (migrate_state_flush(ctx->state, ctx->state_fsync, &error) < 0)
		sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
	e_debug(event_create_passthrough(ctx->event)->
		set_name("migrate_mailbox_synced")->
		add_str("mailbox", f->dest_name)->
		add_str("source_mailbox", f->src_name)->
		event(), "Synced %s (worker)", f->dest_name);
}

/* Take the answers of the workers that are done; with wait, of all of
   them, showing their progress meanwhile. */
static void sync_collect_workers(struct migrate_sync_ctx *ctx, bool wait)
{
	struct migrate_workers *workers = ctx->opts->workers;
	struct migrate_sync_folder *f;
	const char *line;
	void *context;
	int ret;

	if (workers == NULL)
		return;
	while ((ret = migrate_workers_next_result(workers, wait,
			MIGRATE_WORKER_PROGRESS_MSECS, &context, &line)) >= 0) {
		if (ret > 0) {
			T_BEGIN {
				sync_worker_done(ctx, context, line);
			} T_END;
			continue;
		}
		if (!wait)
			break;
		array_foreach_modifiable(&ctx->folders, f) {
			if (!f->delegated)
				continue;
			ctx->progress_folder = f->dest_name;
			ctx->progress_done =
				migrate_workers_progress(workers, f);
			ctx->progress_total = f->delegated_count;
			sync_progress(ctx, FALSE);
			break;
		}
	}
}

/* <renames and deletions> */

static struct migrate_sync_folder *
sync_find_renamed(struct migrate_sync_ctx *ctx,
		  const struct migrate_state_folder *state)
{
	struct migrate_sync_folder *f;

	array_foreach_modifiable(&ctx->folders, f) {
		if (f->state == NULL && f->selected &&
		    f->src_status.uidvalidity != 0 &&
		    f->src_status.uidvalidity == state->src_uidvalidity &&
		    migrate_state_folder_lookup(ctx->state,
						f->src_name) == NULL)
			return f;
	}
	return NULL;
}

static int
sync_rename_dest(struct migrate_sync_ctx *ctx,
		 const struct migrate_state_folder *state,
		 const struct migrate_sync_folder *f)
{
	struct mailbox *box, *dest_box;
	enum mailbox_existence old_exists, new_exists;
	int ret = 0;

	if (strcmp(state->dest_name, f->dest_name) == 0)
		return 0;
	box = sync_dest_alloc(ctx, state->dest_name);
	dest_box = sync_dest_alloc(ctx, f->dest_name);
	if (mailbox_exists(box, FALSE, &old_exists) < 0 ||
	    mailbox_exists(dest_box, FALSE, &new_exists) < 0) {
		sync_set_dest_error(ctx, box, "Looking up");
		ret = -1;
	} else if (old_exists == MAILBOX_EXISTENCE_NONE &&
		   new_exists == MAILBOX_EXISTENCE_SELECT) {
		/* renamed already, by a run that stopped before it could
		   record it */
	} else if (mailbox_rename(box, dest_box) < 0) {
		sync_set_dest_error(ctx, box, "Renaming");
		ret = -1;
	} else {
		sync_kill_point(ctx, "rename");
	}
	mailbox_free(&box);
	mailbox_free(&dest_box);
	return ret;
}

static void sync_find_gone_and_renamed(struct migrate_sync_ctx *ctx)
{
	const ARRAY_TYPE(migrate_state_folder) *sfolders;
	struct migrate_state_folder *const *sfp, *state;
	struct migrate_sync_folder *f;
	const char *error;

	p_array_init(&ctx->gone_folders, ctx->pool, 8);
	sfolders = migrate_state_get_folders(ctx->state);
	array_foreach(sfolders, sfp) {
		state = *sfp;
		if (hash_table_lookup(ctx->src_names, state->src_name) != NULL)
			continue;
		/* not listed: renamed (same UIDVALIDITY under a new name
		   that we do not know yet) or gone */
		f = sync_find_renamed(ctx, state);
		if (f == NULL) {
			array_push_back(&ctx->gone_folders, &state);
			continue;
		}
		e_info(ctx->event, "Source folder %s was renamed to %s",
		       state->src_name, f->src_name);
		ctx->stats->folders_renamed++;
		if (ctx->opts->dry_run) {
			f->state = state;
			continue;
		}
		if (sync_rename_dest(ctx, state, f) < 0) {
			/* never copy the folder again under its new name */
			f->selected = FALSE;
			continue;
		}
		state->src_name = p_strdup(ctx->pool, f->src_name);
		state->dest_name = p_strdup(ctx->pool, f->dest_name);
		migrate_state_folder_update(ctx->state, state);
		f->state = state;
		/* a crash now must not find the folder renamed but the state
		   not */
		if (migrate_state_flush(ctx->state, ctx->state_fsync, &error) < 0)
			sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
	}
}

static unsigned int sync_count_deletions(struct migrate_sync_ctx *ctx)
{
	struct migrate_state_folder *const *sfp;
	const struct migrate_sync_folder *f;
	unsigned int count = 0;

	array_foreach(&ctx->folders, f) {
		count += seq_range_count(&f->delete_src_uids);
		count += seq_range_count(&f->delete_orphan_dest_uids);
	}
	array_foreach(&ctx->gone_folders, sfp)
		count += array_count(&(*sfp)->map);
	return count;
}

static unsigned int sync_count_copied(struct migrate_sync_ctx *ctx)
{
	struct migrate_state_folder *const *sfp;
	unsigned int count = 0;

	array_foreach(migrate_state_get_folders(ctx->state), sfp)
		count += array_count(&(*sfp)->map);
	return count;
}

/* Expunge the given destination UIDs (all copied by us). */
static int
sync_expunge_dest(struct migrate_sync_ctx *ctx, struct mailbox *dbox,
		  const ARRAY_TYPE(seq_range) *dest_uids)
{
	struct mailbox_transaction_context *t;
	struct seq_range_iter iter;
	struct mail *mail;
	unsigned int n = 0;
	uint32_t uid;

	if (mailbox_sync(dbox, 0) < 0) {
		sync_set_dest_error(ctx, dbox, "Opening");
		return -1;
	}
	t = mailbox_transaction_begin(dbox, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	seq_range_array_iter_init(&iter, dest_uids);
	while (seq_range_array_iter_nth(&iter, n++, &uid)) {
		if (mail_set_uid(mail, uid)) {
			mail_expunge(mail);
			ctx->stats->messages_deleted++;
		}
	}
	mail_free(&mail);
	/* the sync removes the expunged files */
	if (mailbox_transaction_commit(&t) < 0 ||
	    mailbox_sync(dbox, 0) < 0) {
		sync_set_dest_error(ctx, dbox, "Expunging from");
		return -1;
	}
	sync_kill_point(ctx, "expunge");
	return 0;
}

static int
sync_delete_in_folder(struct migrate_sync_ctx *ctx,
		      struct migrate_sync_folder *f)
{
	struct migrate_state_folder *state = f->state;
	const struct migrate_uid_map *map;
	ARRAY_TYPE(migrate_uid_map) moved;
	ARRAY_TYPE(seq_range) dest_uids;
	struct seq_range_iter iter;
	struct mailbox *dbox;
	unsigned int n = 0;
	uint32_t src_uid;
	int ret;

	t_array_init(&dest_uids, 16);
	t_array_init(&moved, 4);
	seq_range_array_iter_init(&iter, &f->delete_src_uids);
	while (seq_range_array_iter_nth(&iter, n++, &src_uid)) {
		map = migrate_state_map_lookup(state, src_uid);
		if (map == NULL)
			;
		else if (map->dest_loc != 0)
			array_push_back(&moved, map);
		else
			seq_range_array_add(&dest_uids, map->dest_uid);
	}
	seq_range_array_merge(&dest_uids, &f->delete_orphan_dest_uids);

	dbox = sync_dest_alloc(ctx, state->dest_name);
	ret = sync_expunge_dest(ctx, dbox, &dest_uids);
	mailbox_free(&dbox);
	if (sync_expunge_moved(ctx, &moved) < 0)
		ret = -1;
	if (ret < 0)
		return -1;
	n = 0;
	seq_range_array_iter_init(&iter, &f->delete_src_uids);
	while (seq_range_array_iter_nth(&iter, n++, &src_uid))
		migrate_state_map_remove(ctx->state, state, src_uid);
	sync_folder_set_complete(ctx, f);
	return 0;
}

static int
sync_delete_folder(struct migrate_sync_ctx *ctx,
		   struct migrate_state_folder *state)
{
	ARRAY_TYPE(seq_range) dest_uids;
	const struct migrate_uid_map *map;
	struct mailbox *dbox;
	struct mailbox_status status;
	enum mailbox_existence existence;
	int ret = 0;

	/* its archived copies are gone from the source as well */
	if (sync_expunge_moved(ctx, &state->map) < 0)
		return -1;
	dbox = sync_dest_alloc(ctx, state->dest_name);
	if (mailbox_exists(dbox, FALSE, &existence) < 0 ||
	    existence != MAILBOX_EXISTENCE_SELECT) {
		mailbox_free(&dbox);
		migrate_state_folder_remove(ctx->state, state);
		return 0;
	}
	t_array_init(&dest_uids, 16);
	array_foreach(&state->map, map) {
		if (map->dest_loc == 0)
			seq_range_array_add(&dest_uids, map->dest_uid);
	}
	if (sync_expunge_dest(ctx, dbox, &dest_uids) < 0)
		ret = -1;
	else if (mailbox_get_status(dbox, STATUS_MESSAGES, &status) == 0 &&
		 status.messages == 0) {
		/* only when nothing foreign is left in it; a folder with
		   children stays as their parent */
		if (mailbox_delete_empty(dbox) == 0) {
			sync_kill_point(ctx, "delete-folder");
			ctx->stats->folders_deleted++;
			e_debug(ctx->event, "Deleted %s", state->dest_name);
		}
	}
	mailbox_free(&dbox);
	if (ret == 0)
		migrate_state_folder_remove(ctx->state, state);
	return ret;
}

/* Before deleting copies because the pass did not see their source
   messages, look again on a connection of our own: a message the source
   shows there, or a folder its LIST still gives, keeps its copies (a
   server whose sessions disagree, a listing cut short).  Returns how many
   deletions are withheld. */
static unsigned int sync_confirm_deletions(struct migrate_sync_ctx *ctx)
{
	struct migrate_sync_folder *f;
	struct migrate_state_folder *state;
	ARRAY_TYPE(seq_range) present;
	unsigned int i, n, withheld = 0;
	const char *error;
	bool exists;

	i_array_init(&present, 8);
	array_foreach_modifiable(&ctx->folders, f) {
		if (f->state == NULL || array_count(&f->delete_src_uids) == 0)
			continue;
		array_clear(&present);
		n = seq_range_count(&f->delete_src_uids);
		if (migrate_fetcher_uids_present(sync_fetcher(ctx),
						 f->src_name,
						 &f->delete_src_uids,
						 &present, &error) < 0) {
			e_warning(ctx->event, "%s: Not deleting %u messages: "
				  "the source could not confirm that they are "
				  "gone: %s", f->dest_name, n,
				  migrate_source_explain_error(error));
			array_clear(&f->delete_src_uids);
			f->deletes_unconfirmed = TRUE;
			withheld += n;
			continue;
		}
		if (array_count(&present) == 0)
			continue;
		n = seq_range_count(&present);
		e_warning(event_create_passthrough(ctx->event)->
			  set_name("migrate_deletes_unconfirmed")->
			  add_str("folder", f->src_name)->
			  add_int("messages", n)->event(),
			  "%s: Not deleting %u messages: the source still has "
			  "them on a second look (UIDs %s)", f->dest_name, n,
			  sync_uids_str(&present));
		seq_range_array_remove_seq_range(&f->delete_src_uids,
						 &present);
		f->deletes_unconfirmed = TRUE;
		withheld += n;
	}
	array_free(&present);

	for (i = 0; i < array_count(&ctx->gone_folders); ) {
		state = array_idx_elem(&ctx->gone_folders, i);
		if (migrate_fetcher_mailbox_exists(sync_fetcher(ctx),
						   state->src_name, &exists,
						   &error) < 0) {
			e_warning(ctx->event, "%s: Not deleting the folder: "
				  "the source could not confirm that it is "
				  "gone: %s", state->dest_name,
				  migrate_source_explain_error(error));
		} else if (exists) {
			e_warning(event_create_passthrough(ctx->event)->
				  set_name("migrate_deletes_unconfirmed")->
				  add_str("folder", state->src_name)->
				  add_int("messages", array_count(&state->map))->
				  event(),
				  "%s: Not deleting the folder: the source "
				  "still lists %s on a second look",
				  state->dest_name, state->src_name);
		} else {
			i++;
			continue;
		}
		withheld += array_count(&state->map);
		array_delete(&ctx->gone_folders, i, 1);
	}
	return withheld;
}

static void sync_deletions(struct migrate_sync_ctx *ctx)
{
	struct migrate_state_folder *const *sfp;
	struct migrate_sync_folder *f;
	unsigned int planned, copied;
	const char *error;

	planned = sync_count_deletions(ctx);
	if (ctx->opts->final) {
		/* after cutover nothing is deleted here; folders the source
		   no longer has stay too */
		ctx->stats->deletes_withheld = planned;
		return;
	}
	if (planned == 0)
		return;
	if (ctx->failure.code != MIGRATE_ERROR_NONE) {
		/* only a complete, successful view of the source proves
		   anything gone */
		ctx->stats->deletes_withheld = planned;
		e_warning(ctx->event, "Not deleting %u messages: the source "
			  "was not read completely", planned);
		return;
	}
	copied = sync_count_copied(ctx);
	if (!ctx->opts->force && copied > 0 &&
	    (unsigned long long)planned * 100 >
	    (unsigned long long)copied * ctx->set->max_delete_percent) {
		ctx->stats->deletes_withheld = planned;
		sync_set_error(ctx, MIGRATE_ERROR_DELETE_LIMIT, t_strdup_printf(
			"Refusing to delete %u of %u copied messages (more "
			"than %s=%u%%): check the source, then re-run with "
			"--force", planned, copied,
			MIGRATE_SETTING_MAX_DELETE_PERCENT,
			ctx->set->max_delete_percent));
		return;
	}
	ctx->stats->deletes_withheld += sync_confirm_deletions(ctx);
	if (ctx->opts->dry_run) {
		/* what a real run would delete, after the second look */
		ctx->stats->messages_deleted += sync_count_deletions(ctx);
		ctx->stats->folders_deleted += array_count(&ctx->gone_folders);
		return;
	}
	array_foreach_modifiable(&ctx->folders, f) {
		if (f->state == NULL ||
		    (array_count(&f->delete_src_uids) == 0 &&
		     array_count(&f->delete_orphan_dest_uids) == 0))
			continue;
		T_BEGIN {
			(void)sync_delete_in_folder(ctx, f);
		} T_END;
	}
	array_foreach(&ctx->gone_folders, sfp) T_BEGIN {
		(void)sync_delete_folder(ctx, *sfp);
	} T_END;
	if (migrate_state_flush(ctx->state, ctx->state_fsync, &error) < 0)
		sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
}

static int
sync_folder_cmp_size_desc(struct migrate_sync_folder *const *f1,
			  struct migrate_sync_folder *const *f2)
{
	if ((*f1)->src_status.messages > (*f2)->src_status.messages)
		return -1;
	if ((*f1)->src_status.messages < (*f2)->src_status.messages)
		return 1;
	return 0;
}

static void sync_run_folders(struct migrate_sync_ctx *ctx)
{
	ARRAY(struct migrate_sync_folder *) order;
	struct migrate_sync_folder *f;
	const char *error;

	array_foreach_modifiable(&ctx->folders, f) {
		p_array_init(&f->delete_src_uids, ctx->pool, 4);
		p_array_init(&f->delete_orphan_dest_uids, ctx->pool, 4);
		p_array_init(&f->recover_dest_uids, ctx->pool, 4);
		if (!f->selected)
			continue;
		f->state = migrate_state_folder_lookup(ctx->state,
						       f->src_name);
		(void)sync_folder_status(ctx, f);
	}
	sync_find_gone_and_renamed(ctx);

	/* with workers, the largest folders first: they start on them while
	   we go on with the rest */
	t_array_init(&order, array_count(&ctx->folders));
	array_foreach_modifiable(&ctx->folders, f)
		array_push_back(&order, &f);
	if (ctx->opts->workers != NULL)
		array_sort(&order, sync_folder_cmp_size_desc);

	array_foreach_elem(&order, f) {
		ctx->folder_idx++;
		if (!f->selected || f->src_status.uidvalidity == 0)
			continue;
		sync_collect_workers(ctx, FALSE);
		ctx->stats->folders++;
		ctx->progress_folder = f->dest_name;
		ctx->progress_done = ctx->progress_total = 0;
		T_BEGIN {
			(void)sync_folder(ctx, f);
		} T_END;
		if (!ctx->opts->dry_run &&
		    migrate_state_flush(ctx->state, ctx->state_fsync,
					&error) < 0)
			sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
		if (f->state != NULL && !f->delegated) {
			e_debug(event_create_passthrough(ctx->event)->
				set_name("migrate_mailbox_synced")->
				add_str("mailbox", f->dest_name)->
				add_str("source_mailbox", f->src_name)->
				event(), "Synced %s", f->dest_name);
		}
	}
	sync_collect_workers(ctx, TRUE);
}

void migrate_sync_stats_add(struct migrate_sync_stats *dest,
			    const struct migrate_sync_stats *src)
{
	dest->folders = src->folders;
	dest->folders_unchanged = src->folders_unchanged;
	dest->folders_created += src->folders_created;
	dest->folders_renamed += src->folders_renamed;
	dest->folders_deleted += src->folders_deleted;
	dest->messages_copied += src->messages_copied;
	dest->messages_updated += src->messages_updated;
	dest->messages_deleted += src->messages_deleted;
	dest->messages_skipped += src->messages_skipped;
	dest->messages_rejected = src->messages_rejected;
	dest->messages_foreign = src->messages_foreign;
	dest->messages_recovered += src->messages_recovered;
	dest->flags_dropped += src->flags_dropped;
	dest->bytes_copied += src->bytes_copied;
	dest->deletes_withheld = src->deletes_withheld;
	dest->retries += src->retries;
	dest->total_msecs += src->total_msecs;
}

int migrate_sync_run(struct mail_user *dest_user,
		     struct migrate_source *source,
		     const struct migrate_settings *set,
		     const struct migrate_sync_options *opts,
		     struct migrate_sync_stats *stats_r,
		     enum migrate_error *error_code_r, const char **error_r)
{
	struct migrate_sync_ctx ctx;
	struct timeval end;
	const char *error;
	bool locked;

	i_zero(stats_r);
	i_zero(&ctx);
	ctx.pool = pool_alloconly_create("migrate sync", 4096);
	ctx.dest_user = dest_user;
	ctx.source = source;
	ctx.src_user = source->user;
	ctx.set = set;
	ctx.state_fsync = set->fsync &&
		mail_user_set_get_storage_set(dest_user)->parsed_fsync_mode !=
		FSYNC_MODE_NEVER;
	ctx.opts = opts;
	ctx.stats = stats_r;
	ctx.event = event_create(dest_user->event);
	event_add_category(ctx.event, &event_category_migrate);
	event_set_append_log_prefix(ctx.event, "migrate: ");
	i_gettimeofday(&ctx.start);
	ctx.last_progress = ctx.start;
	ctx.progress_tty = isatty(STDERR_FILENO) != 0;
	ctx.worker_out_fd = -1;

	if (migrate_state_open(set->state_dir, &ctx.state, &locked,
			       &error) < 0) {
		sync_set_error(&ctx, locked ? MIGRATE_ERROR_TEMP :
			       MIGRATE_ERROR_FAILED, error);
	} else if (sync_list_source(&ctx) == 0) {
		sync_kill_point(&ctx, "list");
		sync_run_folders(&ctx);
		sync_deletions(&ctx);
		sync_subscriptions(&ctx);
		sync_kill_point(&ctx, "state-commit");
		if (!opts->dry_run &&
		    migrate_state_commit(ctx.state, &error) < 0)
			sync_set_error(&ctx, MIGRATE_ERROR_FAILED, error);
	}
	if (stats_r->messages_rejected > 0 &&
	    ctx.failure.code == MIGRATE_ERROR_NONE) {
		/* each one was logged with its reason */
		ctx.failure.code = MIGRATE_ERROR_REJECTED;
		ctx.failure.error = p_strdup_printf(ctx.pool,
			"%u message%s left out (refused by the destination "
			"or the source)", stats_r->messages_rejected,
			stats_r->messages_rejected == 1 ? "" : "s");
		e_warning(ctx.event, "%s", ctx.failure.error);
	}
	if (ctx.progress_printed && ctx.progress_tty)
		fputc('\n', stderr);
	if (ctx.fetcher != NULL)
		migrate_fetcher_deinit(&ctx.fetcher);
	if (ctx.state != NULL)
		migrate_state_close(&ctx.state);
	if (hash_table_is_created(ctx.src_names))
		hash_table_destroy(&ctx.src_names);
	if (hash_table_is_created(ctx.gmail_guids))
		hash_table_destroy(&ctx.gmail_guids);

	i_gettimeofday(&end);
	stats_r->total_msecs = timeval_diff_msecs(&end, &ctx.start);
	e_info(event_create_passthrough(ctx.event)->
	       set_name("migrate_account_finished")->
	       add_int("folders", stats_r->folders)->
	       add_int("messages_copied", stats_r->messages_copied)->
	       add_int("messages_updated", stats_r->messages_updated)->
	       add_int("messages_deleted", stats_r->messages_deleted)->
	       add_int("bytes", stats_r->bytes_copied)->
	       add_str("error", ctx.failure.error)->event(),
	       "%s: %u folders, %u copied, %u updated, %u deleted, "
	       "%"PRIuUOFF_T" bytes in %u.%03u s",
	       ctx.failure.code <= MIGRATE_ERROR_REJECTED ? "Finished" :
	       "Failed",
	       stats_r->folders, stats_r->messages_copied,
	       stats_r->messages_updated, stats_r->messages_deleted,
	       stats_r->bytes_copied, stats_r->total_msecs / 1000,
	       stats_r->total_msecs % 1000);

	*error_code_r = ctx.failure.code;
	*error_r = t_strdup(ctx.failure.error);
	event_unref(&ctx.event);
	pool_unref(&ctx.pool);
	return ctx.failure.code == MIGRATE_ERROR_NONE ? 0 : -1;
}

/* <the worker's side> */

/* One COPY job: <state folder id> <source UIDVALIDITY> <destination
   UIDVALIDITY> <source folder> <destination folder> <UID set>.  The answer
   is DONE|FAIL <copied> <bytes> <skipped> <flags dropped>, for FAIL
   <error code> <error>, then the job's report (messages left out,
   keywords dropped; see sync_worker_report_append()). */
static void
sync_worker_answer(int out_fd, const struct migrate_sync_stats *stats,
		   const struct migrate_failure *failure,
		   const struct migrate_sync_report *report)
{
	string_t *answer = t_str_new(128);

	str_printfa(answer, "%s\t%u\t%"PRIuUOFF_T"\t%u\t%u",
		    failure->code == MIGRATE_ERROR_NONE ? "DONE" : "FAIL",
		    stats->messages_copied, stats->bytes_copied,
		    stats->messages_skipped, stats->flags_dropped);
	if (failure->code != MIGRATE_ERROR_NONE) {
		str_printfa(answer, "\t%u\t", (unsigned int)failure->code);
		str_append_tabescaped(answer, failure->error);
	}
	if (report != NULL)
		sync_worker_report_append(answer, report);
	str_append_c(answer, '\n');
	if (write_full(out_fd, str_data(answer), str_len(answer)) < 0)
		i_error("migrate worker: write(stdout) failed: %m");
}

void migrate_sync_worker_fail(int out_fd, enum migrate_error code,
			      const char *error)
{
	struct migrate_sync_stats stats;
	struct migrate_failure failure = { .code = code, .error = error };

	i_zero(&stats);
	sync_worker_answer(out_fd, &stats, &failure, NULL);
}

enum migrate_error
migrate_sync_worker_job(struct mail_user *dest_user,
			struct migrate_source *source,
			const struct migrate_settings *set,
			const char *line, int out_fd)
{
	struct migrate_sync_options opts;
	enum migrate_error failure_code;
	struct migrate_sync_ctx ctx;
	struct migrate_sync_stats stats;
	struct migrate_state_folder state;
	struct migrate_sync_folder f;
	ARRAY_TYPE(seq_range) uids;
	struct mailbox *sbox, *dbox;
	const char *const *args;

	i_zero(&ctx);
	i_zero(&stats);
	i_zero(&state);
	i_zero(&f);
	ctx.pool = pool_alloconly_create("migrate worker job", 1024);
	ctx.dest_user = dest_user;
	ctx.source = source;
	ctx.src_user = source->user;
	ctx.src_ns = ctx.src_user->namespaces;
	ctx.set = set;
	i_zero(&opts);
	opts.report = migrate_sync_report_init();
	ctx.opts = &opts;
	ctx.stats = &stats;
	ctx.worker_out_fd = out_fd;
	ctx.event = event_create(dest_user->event);
	event_add_category(ctx.event, &event_category_migrate);
	event_set_append_log_prefix(ctx.event, "migrate worker: ");
	i_gettimeofday(&ctx.start);

	t_array_init(&uids, 16);
	args = t_strsplit_tabescaped(line);
	if (str_array_length(args) != 7 || strcmp(args[0], "COPY") != 0 ||
	    str_to_uint(args[1], &state.id) < 0 ||
	    str_to_uint32(args[2], &state.src_uidvalidity) < 0 ||
	    str_to_uint32(args[3], &state.dest_uidvalidity) < 0 ||
	    imap_seq_set_parse(args[6], &uids) < 0) {
		sync_set_error(&ctx, MIGRATE_ERROR_FAILED,
			       "Invalid job from the owner process");
	} else {
		f.src_name = state.src_name = args[4];
		f.dest_name = state.dest_name = args[5];
		f.state = &state;
		sbox = mailbox_alloc(ctx.src_ns->list, f.src_name,
				     MAILBOX_FLAG_READONLY);
		dbox = sync_dest_alloc(&ctx, f.dest_name);
		if (mailbox_sync(sbox, 0) < 0)
			sync_set_source_error(&ctx, sbox, "Opening");
		else if (mailbox_sync(dbox, 0) < 0)
			sync_set_dest_error(&ctx, dbox, "Opening");
		else
			(void)sync_folder_copy(&ctx, &f, sbox, dbox, &uids);
		mailbox_free(&sbox);
		mailbox_free(&dbox);
	}
	if (ctx.fetcher != NULL)
		migrate_fetcher_deinit(&ctx.fetcher);

	failure_code = ctx.failure.code;
	sync_worker_answer(out_fd, &stats, &ctx.failure, opts.report);
	migrate_sync_report_deinit(&opts.report);
	event_unref(&ctx.event);
	pool_unref(&ctx.pool);
	return failure_code;
}

