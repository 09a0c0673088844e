/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strescape.h"
#include "strnum.h"
#include "write-full.h"
#include "time-util.h"
#include "imap-util.h"
#include "imap-seqset.h"
#include "mail-storage.h"
#include "migrate-workers.h"
#include "migrate-sync-private.h"

/* how often a worker tells its owner how far it is */
#define MIGRATE_WORKER_PROGRESS_MSECS 500
/* how long a worker may take to answer once the source was given up */
#define MIGRATE_WORKER_GIVE_UP_MSECS (10*1000)
/* a folder with fewer messages to copy is not worth a worker's job */
#define MIGRATE_WORKER_MIN_MESSAGES 20

/* The report of a job as one field: a line per item, tab-separated */
static void
sync_worker_report_append(string_t *answer,
			  const struct migrate_sync_ctx *ctx,
			  const struct migrate_sync_report *report,
			  const ARRAY_TYPE(seq_range) *absent)
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
	if (array_count(absent) > 0) {
		/* UIDs of the job that the folder does not have */
		str_append(str, "A\t");
		imap_write_seq_range(str, absent);
		str_append_c(str, '\n');
	}
	if (ctx->worker_map_first != 0 && !ctx->worker_map_broken) {
		/* the UIDs our copies got: from the first on, in the order
		   of these source UIDs */
		str_printfa(str, "M\t%u\t", ctx->worker_map_first);
		imap_write_seq_range(str, &ctx->worker_map_src);
		str_append_c(str, '\n');
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
		} else if (strcmp(args[0], "A") == 0 &&
			   str_array_length(args) == 2 &&
			   array_is_created(&f->copying_uids)) {
			ARRAY_TYPE(seq_range) absent;

			t_array_init(&absent, 8);
			if (imap_seq_set_parse(args[1], &absent) == 0) {
				seq_range_array_remove_seq_range(
					&f->copying_uids, &absent);
			}
		} else if (strcmp(args[0], "M") == 0 &&
			   str_array_length(args) == 3 &&
			   str_to_uint(args[1], &uid) == 0 && uid != 0) {
			p_array_init(&f->worker_map_src, ctx->pool, 8);
			if (imap_seq_set_parse(args[2], &f->worker_map_src) == 0)
				f->worker_map_first = uid;
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

/* A worker's progress goes to its owner, who shows it. */
void migrate_sync_worker_send_progress(struct migrate_sync_ctx *ctx)
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

/* <worker processes> */

bool migrate_sync_worker_would_take(struct migrate_sync_ctx *ctx,
				    unsigned int count, unsigned int taken)
{
	/* with Gmail, a message in several labels is downloaded once: that
	   needs one process to know what is copied */
	return !ctx->gmail && ctx->opts->workers != NULL &&
		count >= MIGRATE_WORKER_MIN_MESSAGES &&
		migrate_workers_idle(ctx->opts->workers) > taken;
}

/* Give the copy to an idle worker, when there is one and the copy is
   worth it (count: the messages it copies).  all_count is 0 for UIDs
   seen here, else the messages of a folder not looked at here (the job
   is every UID below its UIDNEXT).  Returns TRUE when a worker took
   it. */
bool
migrate_sync_worker_delegate(struct migrate_sync_ctx *ctx,
		     struct migrate_sync_folder *f, struct mailbox *dbox,
		     const ARRAY_TYPE(seq_range) *copy_uids,
		     unsigned int count, unsigned int all_count)
{
	struct migrate_state_folder *state = f->state;
	struct mailbox_status status;
	const char *error;
	string_t *line;

	if (!migrate_sync_worker_would_take(ctx, count, 0))
		return FALSE;
	/* the worker's commits are recovered like our own batches when we
	   crash before we have mapped them */
	mailbox_get_open_status(dbox, STATUS_UIDNEXT, &status);
	state->dest_pending_uidnext = status.uidnext;
	migrate_state_folder_update(ctx->state, state);
	if (migrate_state_flush(ctx->state, ctx->state_fsync, &error) < 0) {
		migrate_sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
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
	/* the worker ends at our deadline, with what it saved committed */
	str_printfa(line, "\t%ld", (long)migrate_source_get_deadline(ctx->source));
	/* a folder not looked at here: the messages its STATUS counted,
	   which the worker must see before it may call the other UIDs of
	   the job gaps */
	str_printfa(line, "\t%u", all_count);
	if (!migrate_workers_submit(ctx->opts->workers, str_c(line), f))
		return FALSE;
	f->delegated = TRUE;
	f->delegated_count = count;
	e_debug(ctx->event, "%s: a worker copies %u messages",
		f->dest_name, count);
	return TRUE;
}

/* The worker's copies mapped from the UIDs it said they got: only when
   they follow the UIDNEXT recorded before the job without a gap (nothing
   else arrived meanwhile) and there are as many as it copied. */
static bool
sync_worker_map_copies(struct migrate_sync_ctx *ctx,
		       struct migrate_sync_folder *f, unsigned int copied)
{
	struct migrate_state_folder *state = f->state;
	struct seq_range_iter iter;
	unsigned int n = 0;
	uint32_t src_uid, dest_uid;

	if (f->worker_map_first == 0 ||
	    f->worker_map_first != state->dest_pending_uidnext ||
	    f->worker_map_first < state->dest_uidnext ||
	    seq_range_count(&f->worker_map_src) != copied)
		return FALSE;
	seq_range_array_iter_init(&iter, &f->worker_map_src);
	while (seq_range_array_iter_nth(&iter, n++, &src_uid)) {
		/* a second copy is for the scan to see */
		if (migrate_state_map_lookup(state, src_uid) != NULL)
			return FALSE;
	}
	dest_uid = f->worker_map_first;
	n = 0;
	while (seq_range_array_iter_nth(&iter, n++, &src_uid))
		migrate_sync_map_copy(ctx, f, src_uid, dest_uid++);
	state->dest_uidnext = dest_uid;
	state->dest_pending_uidnext = 0;
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
		migrate_sync_set_error(ctx, MIGRATE_ERROR_TEMP, t_strdup_printf(
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
		migrate_sync_set_error(ctx, code <= MIGRATE_ERROR_FAILED ||
			       code > MIGRATE_ERROR_TEMP ?
			       MIGRATE_ERROR_FAILED : code, t_strdup_printf(
			       "%s: %s", f->dest_name, args[6]));
		return;
	}
	if (sync_worker_map_copies(ctx, f, copied)) {
		/* the folder is not opened: with a worker's tens of
		   thousands of new files, Maildir's sync of them is the
		   largest memory of the run */
		(void)migrate_sync_mailbox_finish_mapped(ctx, f);
	} else {
		/* every copy it made carries our GUID: anything else that
		   arrived meanwhile is foreign */
		f->state->dest_pending_uidnext = 0;
		dbox = migrate_sync_dest_alloc(ctx, f->dest_name);
		(void)migrate_sync_mailbox_finish(ctx, f, dbox);
		mailbox_free(&dbox);
	}
	if (migrate_state_flush(ctx->state, ctx->state_fsync, &error) < 0)
		migrate_sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
	e_debug(event_create_passthrough(ctx->event)->
		set_name("migrate_mailbox_synced")->
		add_str("mailbox", f->dest_name)->
		add_str("source_mailbox", f->src_name)->
		event(), "Synced %s (worker)", f->dest_name);
}

/* The source was given up (the account's deadline) while workers copy:
   they were given the same deadline and answer with what they saved
   committed; one that has not answered MIGRATE_WORKER_GIVE_UP_MSECS
   later is killed (the next run finds its copies by their GUIDs).
   Returns TRUE once the source is given up. */
static bool
sync_worker_give_up(struct migrate_sync_ctx *ctx, struct timeval *given_up)
{
	struct timeval now;

	if (!migrate_sync_source_given_up(ctx))
		return FALSE;
	i_gettimeofday(&now);
	if (given_up->tv_sec == 0)
		*given_up = now;
	else if (timeval_diff_msecs(&now, given_up) >
		 MIGRATE_WORKER_GIVE_UP_MSECS)
		migrate_workers_kill_busy(ctx->opts->workers);
	return TRUE;
}

/* Take the answers of the workers that are done; with wait, of all of
   them, showing their progress meanwhile. */
void migrate_sync_worker_collect(struct migrate_sync_ctx *ctx, bool wait)
{
	struct migrate_workers *workers = ctx->opts->workers;
	struct migrate_sync_folder *f;
	struct timeval given_up = { 0, 0 };
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
		if (sync_worker_give_up(ctx, &given_up))
			continue;
		array_foreach_modifiable(&ctx->folders, f) {
			if (!f->delegated)
				continue;
			ctx->progress_folder = f->dest_name;
			ctx->progress_done =
				migrate_workers_progress(workers, f);
			ctx->progress_total = f->delegated_count;
			migrate_sync_progress(ctx);
			break;
		}
	}
}

/* <the worker's side> */

/* One COPY job: <state folder id> <source UIDVALIDITY> <destination
   UIDVALIDITY> <source folder> <destination folder> <UID set> <the
   owner's deadline, 0 for none>.  The answer
   is DONE|FAIL <copied> <bytes> <skipped> <flags dropped>, for FAIL
   <error code> <error>, then the job's report (messages left out,
   keywords dropped, the UIDs the copies got; see
   sync_worker_report_append()). */
static void
sync_worker_answer(int out_fd, const struct migrate_sync_ctx *ctx,
		   const struct migrate_sync_stats *stats,
		   const struct migrate_failure *failure,
		   const struct migrate_sync_report *report,
		   const ARRAY_TYPE(seq_range) *absent)
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
		sync_worker_report_append(answer, ctx, report, absent);
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
	sync_worker_answer(out_fd, NULL, &stats, &failure, NULL, NULL);
}

/* The UIDs of the job that the folder has, as of its EXAMINE: a job for
   a folder the owner did not look at is all UIDs below its UIDNEXT.  The
   others are told to the owner, who then does not miss them. */
static int
sync_worker_present(struct migrate_sync_ctx *ctx, struct mailbox *sbox,
		    unsigned int all_count, ARRAY_TYPE(seq_range) *uids,
		    ARRAY_TYPE(seq_range) *absent)
{
	struct mailbox_transaction_context *st;
	struct mail_search_context *search_ctx;
	ARRAY_TYPE(seq_range) present;
	struct mail *smail;
	int ret = 0;

	t_array_init(&present, 16);
	st = mailbox_transaction_begin(sbox, 0, __func__);
	search_ctx = migrate_search_uids(st, uids, 0, NULL);
	while (mailbox_search_next(search_ctx, &smail))
		seq_range_array_add(&present, smail->uid);
	if (mailbox_search_deinit(&search_ctx) < 0) {
		migrate_sync_set_source_error(ctx, sbox, "Searching");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	if (ret < 0)
		return -1;
	if (all_count == 0 || seq_range_count(&present) < all_count) {
		/* UIDs the owner saw, or fewer messages than the folder's
		   STATUS counted: what this session does not see is not
		   known to be gone, and the owner says so */
		return 0;
	}
	array_append_array(absent, uids);
	seq_range_array_remove_seq_range(absent, &present);
	array_clear(uids);
	array_append_array(uids, &present);
	return 0;
}

/* As sync_worker_present(), from our own connection's listing of the
   folder (its sizes and flags): FALSE when there is none, and the storage
   opens the folder. */
static bool
sync_worker_listed(struct migrate_sync_ctx *ctx, const char *mailbox,
		   unsigned int all_count, ARRAY_TYPE(seq_range) *uids,
		   ARRAY_TYPE(seq_range) *absent)
{
	const struct migrate_source_listing *listing;
	const struct migrate_source_size *size;
	const struct seq_range *first;
	ARRAY_TYPE(seq_range) present;

	if (array_count(uids) == 0 ||
	    migrate_source_listing(ctx->source, mailbox, &listing) < 0)
		return FALSE;
	first = array_front(uids);
	if (listing->first_uid > first->seq1)
		return FALSE;
	t_array_init(&present, 16);
	array_foreach(&listing->sizes, size) {
		if (seq_range_exists(uids, size->uid))
			seq_range_array_add(&present, size->uid);
	}
	if (all_count == 0 || seq_range_count(&present) < all_count)
		return TRUE;
	array_append_array(absent, uids);
	seq_range_array_remove_seq_range(absent, &present);
	array_clear(uids);
	array_append_array(uids, &present);
	return TRUE;
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
	ARRAY_TYPE(seq_range) uids, absent;
	struct mailbox *sbox, *dbox;
	const char *const *args;
	unsigned int all_count = 0;
	long deadline;

	i_zero(&stats);
	i_zero(&state);
	i_zero(&f);
	i_zero(&opts);
	opts.report = migrate_sync_report_init();
	migrate_sync_ctx_init(&ctx, SYNC_ROLE_WORKER, dest_user, source, set,
			      &opts, &stats);
	ctx.worker_out_fd = out_fd;

	t_array_init(&uids, 16);
	t_array_init(&absent, 4);
	args = t_strsplit_tabescaped(line);
	if (str_array_length(args) != 9 || strcmp(args[0], "COPY") != 0 ||
	    str_to_uint(args[1], &state.id) < 0 ||
	    str_to_uint32(args[2], &state.src_uidvalidity) < 0 ||
	    str_to_uint32(args[3], &state.dest_uidvalidity) < 0 ||
	    imap_seq_set_parse(args[6], &uids) < 0 ||
	    str_to_long(args[7], &deadline) < 0 ||
	    str_to_uint(args[8], &all_count) < 0) {
		migrate_sync_set_error(&ctx, MIGRATE_ERROR_FAILED,
			       "Invalid job from the owner process");
	} else {
		migrate_source_set_deadline(source, (time_t)deadline);
		f.src_name = state.src_name = args[4];
		f.dest_name = state.dest_name = args[5];
		f.state = &state;
		sbox = mailbox_alloc(ctx.src_ns->list, f.src_name,
				     MAILBOX_FLAG_READONLY);
		dbox = migrate_sync_dest_alloc(&ctx, f.dest_name);
		if (array_count(&uids) > 0) {
			const struct seq_range *first = array_front(&uids);

			migrate_source_sizes_ask(source, f.src_name,
						 first->seq1, 0);
		}
		if (mailbox_sync(dbox, 0) < 0)
			migrate_sync_set_dest_error(&ctx, dbox, "Opening");
		else if (sync_worker_listed(&ctx, f.src_name, all_count,
					    &uids, &absent)) {
			/* the storage opens the folder only if it must
			   take over */
			(void)migrate_sync_import(&ctx, &f, NULL, dbox, &uids);
		} else if (mailbox_sync(sbox, 0) < 0)
			migrate_sync_set_source_error(&ctx, sbox, "Opening");
		else if (sync_worker_present(&ctx, sbox, all_count, &uids,
					     &absent) == 0)
			(void)migrate_sync_import(&ctx, &f, sbox, dbox, &uids);
		mailbox_free(&sbox);
		mailbox_free(&dbox);
	}

	migrate_sync_given_up_failure(&ctx);
	failure_code = ctx.failure.code;
	sync_worker_answer(out_fd, &ctx, &stats, &ctx.failure, opts.report,
			   &absent);
	migrate_sync_report_deinit(&opts.report);
	event_unref(&ctx.event);
	pool_unref(&ctx.pool);
	return failure_code;
}
