/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "time-util.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "imap-util.h"
#include "migrate-text.h"
#include "migrate-workers.h"
#include "migrate-sync-private.h"

#include <signal.h>
#include <unistd.h>

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

/* A message left out, with why; the run goes on. */
void
migrate_sync_reject(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
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
		  migrate_text_escape(folder), uid, size,
		  migrate_text_escape(reason));
	if (ctx->opts->report != NULL) {
		migrate_sync_report_rejected(ctx->opts->report, folder, uid,
					     size, reason);
	}
}

/* migrate_debug_kill: die here, as a crash or kill -9 would, to test that
   the next run completes with nothing lost and nothing twice.  The steps,
   in the order a run reaches them: list, create, save, commit, state,
   flags, finish, rename, expunge, delete-folder, subscribe,
   state-commit (a worker: save, commit). */
void migrate_sync_kill_point(struct migrate_sync_ctx *ctx, const char *step)
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
void
migrate_sync_reject_folder(struct migrate_sync_ctx *ctx, const char *folder,
		   const char *reason)
{
	ctx->stats->messages_rejected++;
	ctx->folders_rejected++;
	e_warning(event_create_passthrough(ctx->event)->
		  set_name("migrate_folder_rejected")->
		  add_str("folder", folder)->add_str("reason", reason)->event(),
		  "Leaving out folder %s: %s", migrate_text_escape(folder),
		  migrate_text_escape(reason));
	if (ctx->opts->report != NULL) {
		migrate_sync_report_rejected(ctx->opts->report, folder, 0, 0,
					     reason);
	}
}

void
migrate_sync_set_error(struct migrate_sync_ctx *ctx, enum migrate_error code,
	       const char *error)
{
	migrate_failure_set(&ctx->failure, ctx->pool, ctx->event, code, error);
}

void
migrate_sync_set_dest_error(struct migrate_sync_ctx *ctx, struct mailbox *box,
		    const char *what)
{
	enum migrate_error code;
	const char *error;

	code = migrate_dest_error(box, what, &error);
	migrate_sync_set_error(ctx, code, error);
}

void
migrate_sync_set_source_error(struct migrate_sync_ctx *ctx, struct mailbox *box,
		      const char *what)
{
	enum migrate_error code;
	const char *error;

	code = migrate_source_mailbox_error(ctx->source, box, what, &error);
	migrate_sync_set_error(ctx, code, error);
}

bool migrate_sync_source_given_up(struct migrate_sync_ctx *ctx)
{
	enum migrate_error code;
	const char *error;

	return migrate_source_check(ctx->source, &code, &error) < 0;
}

void migrate_sync_given_up_failure(struct migrate_sync_ctx *ctx)
{
	enum migrate_error code;
	const char *error;

	if (migrate_source_check(ctx->source, &code, &error) == 0)
		return;
	if (null_strcmp(ctx->failure.error, error) != 0)
		e_error(ctx->event, "%s", error);
	ctx->failure.code = code;
	ctx->failure.error = p_strdup(ctx->pool, error);
}

void migrate_sync_progress(struct migrate_sync_ctx *ctx)
{
	struct migrate_progress progress;
	struct timeval now;

	if (ctx->role == SYNC_ROLE_WORKER) {
		/* its owner shows it */
		migrate_sync_worker_send_progress(ctx);
		return;
	}
	if (ctx->opts->progress_callback == NULL)
		return;
	i_gettimeofday(&now);
	i_zero(&progress);
	progress.what = "sync";
	progress.folder = ctx->progress_folder;
	progress.folder_idx = ctx->folder_idx;
	progress.folder_count = array_count(&ctx->folders);
	progress.done = ctx->progress_done;
	progress.total = ctx->progress_total;
	progress.folder_msecs = timeval_diff_msecs(&now, &ctx->folder_start);
	progress.copied = ctx->stats->messages_copied;
	progress.bytes = ctx->stats->bytes_copied;
	progress.elapsed_msecs = timeval_diff_msecs(&now, &ctx->start);
	ctx->opts->progress_callback(&progress, ctx->opts->progress_context);
}

struct mailbox *
migrate_sync_dest_alloc(struct migrate_sync_ctx *ctx, const char *name)
{
	struct mail_namespace *ns;

	ns = mail_namespace_find(ctx->dest_user->namespaces, name);
	return mailbox_alloc(ns->list, name, 0);
}

/* UIDs for a log line: the IMAP set, cut after 200 characters */
const char *migrate_sync_uids_str(const ARRAY_TYPE(seq_range) *uids)
{
	string_t *str = t_str_new(128);

	imap_write_seq_range(str, uids);
	if (str_len(str) > 200) {
		str_truncate(str, 200);
		str_append(str, "...");
	}
	return str_c(str);
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

/* The STATUS of every folder: all in one round trip where the source
   allows it, a folder at a time (through the storage) for the rest. */
static void sync_folders_status(struct migrate_sync_ctx *ctx)
{
	ARRAY(struct migrate_source_status) items;
	struct migrate_source_status *item;
	struct migrate_sync_folder *f;
	const char *error;
	bool all = FALSE;

	t_array_init(&items, array_count(&ctx->folders));
	array_foreach_modifiable(&ctx->folders, f) {
		if (!f->selected)
			continue;
		item = array_append_space(&items);
		item->mailbox = f->src_name;
	}
	if (array_count(&items) > 1 &&
	    migrate_source_status(ctx->source, array_front_modifiable(&items),
				  array_count(&items), &error) == 0)
		all = TRUE;
	item = array_front_modifiable(&items);
	array_foreach_modifiable(&ctx->folders, f) {
		if (!f->selected)
			continue;
		if (all && item->found)
			f->src_status = item->status;
		else if (!migrate_sync_source_given_up(ctx))
			(void)migrate_sync_mailbox_status(ctx, f);
		item++;
	}
}

static void sync_run_folders(struct migrate_sync_ctx *ctx)
{
	struct migrate_sync_folder *f;
	const char *error;

	array_foreach_modifiable(&ctx->folders, f) {
		p_array_init(&f->delete_src_uids, ctx->pool, 4);
		p_array_init(&f->delete_orphan_dest_uids, ctx->pool, 4);
		p_array_init(&f->recover_dest_uids, ctx->pool, 4);
		if (f->selected)
			f->state = migrate_state_folder_lookup(ctx->state,
							       f->src_name);
	}
	sync_folders_status(ctx);
	migrate_sync_tree_find_gone(ctx);

	/* with workers, the largest folders first: they start on them while
	   we go on with the rest */
	t_array_init(&ctx->order, array_count(&ctx->folders));
	array_foreach_modifiable(&ctx->folders, f)
		array_push_back(&ctx->order, &f);
	if (ctx->opts->workers != NULL)
		array_sort(&ctx->order, sync_folder_cmp_size_desc);

	array_foreach_elem(&ctx->order, f) {
		ctx->folder_idx++;
		ctx->next_listing_asked = FALSE;
		if (array_is_created(&ctx->next_new_folders))
			array_clear(&ctx->next_new_folders);
		if (migrate_sync_source_given_up(ctx))
			break;
		if (!f->selected || f->src_status.uidvalidity == 0)
			continue;
		migrate_sync_worker_collect(ctx, FALSE);
		ctx->stats->folders++;
		ctx->progress_folder = f->dest_name;
		ctx->progress_done = ctx->progress_total = 0;
		T_BEGIN {
			(void)migrate_sync_mailbox(ctx, f);
		} T_END;
		if (!ctx->dry_run &&
		    migrate_state_flush(ctx->state, ctx->state_fsync,
					&error) < 0)
			migrate_sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
		if (f->state != NULL && !f->delegated) {
			e_debug(event_create_passthrough(ctx->event)->
				set_name("migrate_mailbox_synced")->
				add_str("mailbox", f->dest_name)->
				add_str("source_mailbox", f->src_name)->
				event(), "Synced %s", f->dest_name);
		}
	}
	migrate_sync_import_ahead_drop(ctx);
	migrate_sync_worker_collect(ctx, TRUE);
	i_zero(&ctx->order);
}

void migrate_sync_ctx_init(struct migrate_sync_ctx *ctx, enum sync_role role,
			   struct mail_user *dest_user,
			   struct migrate_source *source,
			   const struct migrate_settings *set,
			   const struct migrate_sync_options *opts,
			   struct migrate_sync_stats *stats)
{
	i_zero(ctx);
	ctx->role = role;
	ctx->pool = pool_alloconly_create(role == SYNC_ROLE_OWNER ?
		"migrate sync" : "migrate worker job", 4096);
	ctx->dest_user = dest_user;
	ctx->source = source;
	/* a source with POP3 only has no namespace of its folders */
	ctx->src_ns = migrate_source_is_pop3_only(source) ? NULL :
		migrate_source_get_namespace(source);
	ctx->set = set;
	ctx->opts = opts;
	ctx->mode = opts->mode;
	ctx->dry_run = opts->dry_run;
	ctx->stats = stats;
	ctx->event = event_create(dest_user->event);
	event_add_category(ctx->event, &event_category_migrate);
	event_set_append_log_prefix(ctx->event, role == SYNC_ROLE_OWNER ?
				    "migrate: " : "migrate worker: ");
	i_gettimeofday(&ctx->start);
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
	dest->messages_uid_changed += src->messages_uid_changed;
	dest->folders_uid_changed += src->folders_uid_changed;
	dest->messages_pop3_uidl += src->messages_pop3_uidl;
	dest->messages_pop3_unmatched = src->messages_pop3_unmatched;
	dest->messages_pop3_order_differs = src->messages_pop3_order_differs;
	dest->retries += src->retries;
	dest->total_msecs += src->total_msecs;
}

/* "2 messages", "1 folder", "1 folder and 2 messages" */
static const char *sync_rejected_str(const struct migrate_sync_ctx *ctx)
{
	unsigned int folders = ctx->folders_rejected;
	unsigned int messages = ctx->stats->messages_rejected - folders;
	const char *msgs = t_strdup_printf("%u message%s", messages,
					   messages == 1 ? "" : "s");

	if (folders == 0)
		return msgs;
	return t_strdup_printf("%u folder%s%s%s", folders,
			       folders == 1 ? "" : "s",
			       messages == 0 ? "" : " and ",
			       messages == 0 ? "" : msgs);
}

/* A connection that met another certificate than the pinned one read
   nothing (the storage took over on its own connection, with the pinned
   one), but the run fails all the same: someone may be in the middle. */
static void sync_check_pin(struct migrate_sync_ctx *ctx)
{
	const char *error = migrate_source_pin_error(ctx->source);

	/* a failure for that reason already says where it happened */
	if (error != NULL && ctx->failure.code != MIGRATE_ERROR_SOURCE_TLS)
		migrate_sync_set_error(ctx, MIGRATE_ERROR_SOURCE_TLS, error);
}

static void sync_run_account(struct migrate_sync_ctx *ctx)
{
	const char *error;

	migrate_sync_kill_point(ctx, "list");
	sync_run_folders(ctx);
	migrate_sync_pop3(ctx);
	migrate_sync_delete(ctx);
	migrate_sync_tree_subscribe(ctx);
	migrate_sync_kill_point(ctx, "state-commit");
	if (!ctx->dry_run && migrate_state_commit(ctx->state, &error) < 0)
		migrate_sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
}

/* The first run of an account gives its workers the largest folders: they
   log in now, while the folders are listed (a re-run wakes a worker only
   when it has a job for it). */
static void sync_run_wake_workers(struct migrate_sync_ctx *ctx)
{
	if (ctx->opts->workers != NULL && !ctx->dry_run &&
	    array_count(migrate_state_get_folders(ctx->state)) == 0)
		migrate_workers_wake(ctx->opts->workers);
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
	migrate_sync_ctx_init(&ctx, SYNC_ROLE_OWNER, dest_user, source, set,
			      opts, stats_r);
	ctx.state_fsync = migrate_dest_state_fsync(dest_user, set);

	if (migrate_state_open(set->state_dir, &ctx.state, &locked,
			       &error) < 0) {
		migrate_sync_set_error(&ctx, locked ? MIGRATE_ERROR_TEMP :
			       MIGRATE_ERROR_FAILED, error);
	} else if (migrate_source_is_pop3_only(source)) {
		/* the copies' UIDLs are its state: the state is only
		   locked */
		migrate_sync_pop3_only(&ctx);
	} else {
		sync_run_wake_workers(&ctx);
		if (migrate_sync_protocol_check(&ctx) == 0 &&
		    migrate_sync_tree_list(&ctx) == 0)
			sync_run_account(&ctx);
	}
	migrate_sync_given_up_failure(&ctx);
	sync_check_pin(&ctx);
	if (stats_r->messages_rejected > 0 &&
	    ctx.failure.code == MIGRATE_ERROR_NONE) {
		/* each one was logged with its reason */
		ctx.failure.code = MIGRATE_ERROR_REJECTED;
		ctx.failure.error = p_strdup_printf(ctx.pool,
			"%s left out (refused by the destination or the "
			"source)", sync_rejected_str(&ctx));
		e_warning(ctx.event, "%s", ctx.failure.error);
	}
	if (ctx.state != NULL)
		migrate_state_close(&ctx.state);
	if (hash_table_is_created(ctx.src_names))
		hash_table_destroy(&ctx.src_names);
	migrate_sync_gmail_deinit(&ctx);

	i_gettimeofday(&end);
	stats_r->total_msecs = timeval_diff_msecs(&end, &ctx.start);
	e_info(event_create_passthrough(ctx.event)->
	       set_name("migrate_account_finished")->
	       add_int("folders", stats_r->folders)->
	       add_int("messages_copied", stats_r->messages_copied)->
	       add_int("messages_updated", stats_r->messages_updated)->
	       add_int("messages_deleted", stats_r->messages_deleted)->
	       add_int("bytes", stats_r->bytes_copied)->
	       add_int("messages_uid_changed", stats_r->messages_uid_changed)->
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
