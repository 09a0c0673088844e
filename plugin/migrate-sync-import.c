/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "istream.h"
#include "time-util.h"
#include "mail-storage-private.h"
#include "migrate-text.h"
#include "migrate-sync-private.h"

#include <stdio.h>
#include <stdlib.h>

/* destination GUIDs of copied messages encode where they came from, so
   that a message saved just before a crash is found again instead of
   being copied twice: magic, state folder id, source UIDVALIDITY, UID */
#define MIGRATE_GUID_MAGIC 0x6d677274U

static const char *
sync_dest_guid(const struct migrate_state_folder *state, uint32_t uid)
{
	return t_strdup_printf("%08x%08x%08x%08x", MIGRATE_GUID_MAGIC,
			       state->id, state->src_uidvalidity, uid);
}

/* Returns TRUE and the source UID when guid is one that we gave to a copy
   of this folder's current UIDVALIDITY. */
bool
migrate_sync_guid_parse(const struct migrate_state_folder *state,
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

/* keywords without those box refuses */
const char *const *
migrate_sync_valid_keywords(struct mailbox *box, const char *const *keywords)
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

struct mail_keywords *
migrate_sync_keywords(struct migrate_sync_ctx *ctx, struct mailbox *dbox,
	      const char *const *keywords)
{
	const char *const *valid, *error;
	unsigned int i;

	if (keywords[0] == NULL)
		return NULL;
	/* a keyword the destination refuses is dropped, never the mail.
	   Filtered here: 2.3.19's mailbox_keywords_create_valid() drops
	   every keyword of a message when one of them is invalid. */
	valid = migrate_sync_valid_keywords(dbox, keywords);
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

void migrate_sync_count_uid_changed(struct migrate_sync_ctx *ctx,
				    struct migrate_sync_folder *f,
				    unsigned int messages)
{
	if (messages == 0)
		return;
	ctx->stats->messages_uid_changed += messages;
	if (!f->uid_changed) {
		f->uid_changed = TRUE;
		ctx->stats->folders_uid_changed++;
	}
}

/* A mail client that cached the source folder knows a message by its UID
   under the folder's UIDVALIDITY: with either changed, it downloads the
   message again. */
void migrate_sync_map_copy(struct migrate_sync_ctx *ctx,
			   struct migrate_sync_folder *f,
			   uint32_t src_uid, uint32_t dest_uid)
{
	struct migrate_state_folder *state = f->state;

	migrate_state_map_add(ctx->state, state, src_uid, dest_uid);
	if (dest_uid != src_uid ||
	    state->dest_uidvalidity != state->src_uidvalidity)
		migrate_sync_count_uid_changed(ctx, f, 1);
}

/* Map the batch's source UIDs to the UIDs the commit assigned. */
static int
sync_copy_map_saved(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		    struct mailbox *dbox, const struct migrate_sync_batch *batch,
		    const struct mail_transaction_commit_changes *changes)
{
	struct migrate_state_folder *state = f->state;
	ARRAY_TYPE(uint32_t) dest_uids;
	const uint32_t *src_uids, *dest_uid;
	unsigned int i, count;
	const char *error;

	src_uids = array_get(&batch->src_uids, &count);
	t_array_init(&dest_uids, count);
	if (migrate_dest_saved_uids(dbox, changes, count, &dest_uids,
				    &error) < 0) {
		migrate_sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
		return -1;
	}
	for (i = 0; i < count; i++) {
		dest_uid = array_idx(&dest_uids, i);
		migrate_sync_map_copy(ctx, f, src_uids[i], *dest_uid);
		if (*dest_uid >= state->dest_uidnext)
			state->dest_uidnext = *dest_uid + 1;
	}
	return 0;
}

/* A worker's batch: the UIDs it got, for the owner while they follow the
   ones before. */
static void
sync_worker_map_saved(struct migrate_sync_ctx *ctx, struct mailbox *dbox,
		      const struct migrate_sync_batch *batch,
		      const struct mail_transaction_commit_changes *changes)
{
	ARRAY_TYPE(uint32_t) dest_uids;
	const uint32_t *src_uids, *dest;
	const struct seq_range *last;
	unsigned int i, count;
	const char *error;

	src_uids = array_get(&batch->src_uids, &count);
	if (ctx->worker_map_broken || count == 0)
		return;
	t_array_init(&dest_uids, count);
	if (migrate_dest_saved_uids(dbox, changes, count, &dest_uids,
				    &error) < 0) {
		ctx->worker_map_broken = TRUE;
		return;
	}
	if (!array_is_created(&ctx->worker_map_src))
		p_array_init(&ctx->worker_map_src, ctx->pool, 8);
	dest = array_front(&dest_uids);
	for (i = 0; i < count; i++) {
		if (ctx->worker_map_first == 0)
			ctx->worker_map_first = ctx->worker_map_next = dest[i];
		last = array_count(&ctx->worker_map_src) == 0 ? NULL :
			array_back(&ctx->worker_map_src);
		if (dest[i] != ctx->worker_map_next ||
		    (last != NULL && last->seq2 >= src_uids[i])) {
			/* something else got a UID in between, or not in
			   source UID order: the owner reads them back */
			ctx->worker_map_broken = TRUE;
			return;
		}
		ctx->worker_map_next++;
		seq_range_array_add(&ctx->worker_map_src, src_uids[i]);
	}
}

int
migrate_sync_import_commit(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		 struct mailbox *dbox, struct migrate_sync_batch *batch)
{
	struct mail_transaction_commit_changes changes;
	const char *error;
	int ret = 0;

	if (batch->t == NULL)
		return 0;
	if (ctx->role == SYNC_ROLE_WORKER) {
		/* a worker: the owner maps the copies, from the UIDs we
		   tell it or by their GUIDs */
		if (mailbox_transaction_commit_get_changes(&batch->t,
							   &changes) < 0) {
			migrate_sync_set_dest_error(ctx, dbox, "Saving to");
			ret = -1;
		} else {
			sync_worker_map_saved(ctx, dbox, batch, &changes);
			pool_unref(&changes.pool);
		}
		migrate_sync_kill_point(ctx, "commit");
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
			migrate_sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
			mailbox_transaction_rollback(&batch->t);
			return -1;
		}
	}
	if (mailbox_transaction_commit_get_changes(&batch->t, &changes) < 0) {
		migrate_sync_set_dest_error(ctx, dbox, "Saving to");
		ret = -1;
	} else {
		migrate_sync_kill_point(ctx, "commit");
		/* the UIDs the saves got, in save order; rescanning the
		   folder instead (as crash recovery does, by GUID) would
		   read a Maildir's whole cur/ after every batch */
		ret = sync_copy_map_saved(ctx, f, dbox, batch, &changes);
		pool_unref(&changes.pool);
	}
	batch->bytes = 0;
	array_clear(&batch->src_uids);
	if (ret == 0 && array_count(&f->recover_dest_uids) == 0)
		f->state->dest_pending_uidnext = 0;
	migrate_state_folder_update(ctx->state, f->state);
	if (migrate_state_flush(ctx->state, ctx->state_fsync, &error) < 0) {
		migrate_sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
		ret = -1;
	}
	migrate_sync_kill_point(ctx, "state");
	return ret;
}

#define MIGRATE_SAVE_BLOCK_SIZE (128*1024)


void migrate_sync_msg_from_mail(struct migrate_sync_msg *msg_r,
				struct mail *mail)
{
	i_zero(msg_r);
	msg_r->uid = mail->uid;
	msg_r->mailbox = mailbox_get_vname(mail->box);
	msg_r->mail = mail;
	msg_r->flags = mail_get_flags(mail) & MAIL_FLAGS_NONRECENT;
	msg_r->keywords = mail_get_keywords(mail);
}

/* msg's size for a report: what the listing or the storage says, else
   what our own connection says now (0: nobody could tell) */
static uoff_t
sync_msg_size(struct migrate_sync_ctx *ctx, const struct migrate_sync_msg *msg)
{
	const char *error;
	uoff_t size;

	if (msg->size != 0)
		return msg->size;
	if (msg->mail != NULL && mail_get_virtual_size(msg->mail, &size) == 0)
		return size;
	/* the storage's FETCH failed as a whole: ask for the size alone, on
	   our own connection */
	if (migrate_source_message_size(ctx->source, msg->mailbox, msg->uid,
					&size, &error) < 0)
		return 0;
	return size;
}

/* The source could not give msg: 0 when it is gone (skipped), 2 when
   the source refuses this one message (left out and reported, the run
   goes on), -1 when the failure is the connection's or the server's. */
static int
sync_copy_source_failed(struct migrate_sync_ctx *ctx,
			struct migrate_sync_folder *f,
			const struct migrate_sync_msg *msg,
			enum mail_error error, const char *errstr)
{
	enum migrate_error code;

	if (error == MAIL_ERROR_EXPUNGED)
		return 0;
	/* the storage's error buffer changes with its next call */
	errstr = t_strdup(errstr);
	if (!migrate_source_refuses_message(error, errstr, &code)) {
		migrate_sync_set_error(ctx, code, t_strdup_printf(
			"Source: Fetching UID %u of %s failed: %s",
			msg->uid, msg->mailbox,
			migrate_source_explain(ctx->source, errstr)));
		return -1;
	}
	migrate_sync_reject(ctx, f, msg->uid, sync_msg_size(ctx, msg),
		    t_strconcat("the source refused to give it: ", errstr,
				NULL));
	return 2;
}

/* Where a message's body comes from */
enum sync_body_from {
	/* the source storage, fetched ahead with its chunk */
	SYNC_BODY_STORAGE,
	/* our own connection, asked for with its chunk (the storage when it
	   did not come) */
	SYNC_BODY_AHEAD,
	/* our own connection in pieces (a large message) */
	SYNC_BODY_PIECES,
};

static int
sync_copy_storage_input(struct migrate_sync_ctx *ctx,
			struct migrate_sync_folder *f,
			const struct migrate_sync_msg *msg,
			struct istream **input_r, time_t *received_r)
{
	struct mail *smail = msg->mail;
	enum mail_error error;
	const char *errstr;

	if (smail == NULL) {
		/* the storage has not opened the folder: it takes over */
		return 3;
	}
	if (mail_get_received_date(smail, received_r) < 0 ||
	    mail_get_stream(smail, NULL, NULL, input_r) < 0) {
		errstr = mailbox_get_last_internal_error(smail->box, &error);
		return sync_copy_source_failed(ctx, f, msg, error, errstr);
	}
	i_stream_ref(*input_r);
	return 1;
}

/* Returns 1 with the message's body, 0 when the source no longer has it,
   2 when the source refuses it (reported), 3 when our own connection
   failed to bring the chunk it is in, or the storage is needed and has
   not opened the folder (nothing done: the storage is to fetch it and
   the rest), -1 on error.  A large message (size: its planned
   RFC822.SIZE) is read in pieces with its INTERNALDATE. */
static int
sync_copy_get_input(struct migrate_sync_ctx *ctx,
		    struct migrate_sync_folder *f,
		    const struct migrate_sync_msg *msg,
		    enum sync_body_from from, uoff_t size,
		    struct istream **input_r, time_t *received_r)
{
	enum mail_error error;
	const char *errstr;
	bool expunged, refused;
	int ret;

	if (from == SYNC_BODY_PIECES && size == 0 &&
	    (msg->mail == NULL ||
	     mail_get_virtual_size(msg->mail, &size) < 0))
		from = SYNC_BODY_STORAGE;
	if (from == SYNC_BODY_AHEAD) {
		ret = migrate_source_body(ctx->source, msg->mailbox, msg->uid,
					  input_r, received_r);
		if (ret > 0)
			return 1;
		if (ret < 0) {
			/* the storage takes over from this message on */
			return 3;
		}
	}
	if (from != SYNC_BODY_PIECES)
		return sync_copy_storage_input(ctx, f, msg, input_r,
					       received_r);
	if (migrate_source_fetch_large(ctx->source, msg->mailbox, msg->uid,
				       size, input_r, received_r,
				       &expunged, &refused, &errstr) < 0) {
		return sync_copy_source_failed(ctx, f, msg,
			expunged ? MAIL_ERROR_EXPUNGED :
			refused ? MAIL_ERROR_PARAMS : MAIL_ERROR_TEMP, errstr);
	}
	/* without the storage's view, a server that did not send the
	   INTERNALDATE leaves the date of the save */
	if (*received_r == (time_t)-1 && msg->mail != NULL &&
	    mail_get_received_date(msg->mail, received_r) < 0) {
		i_stream_unref(input_r);
		errstr = mailbox_get_last_internal_error(msg->mail->box,
							 &error);
		return sync_copy_source_failed(ctx, f, msg, error, errstr);
	}
	return 1;
}

/* 0 when msg was copied, left out or found gone, 1 when our own
   connection failed to bring it or the storage must (nothing done), -1
   on error. */
static int
sync_copy_one(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	      struct mailbox *dbox, struct migrate_sync_batch *batch,
	      const struct migrate_sync_msg *msg, enum sync_body_from from,
	      uoff_t size)
{
	struct istream *input;
	time_t received;
	int ret;

	ret = sync_copy_get_input(ctx, f, msg, from, size, &input,
				  &received);
	if (ret == 3)
		return 1;
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
	ret = migrate_sync_import_save(ctx, f, dbox, batch, msg, input,
				       received);
	i_stream_unref(&input);
	return ret;
}

/* Saving msg failed: a message the destination refuses as such (too
   large, invalid) is left out and reported, and the run goes on (0); any
   other failure stops the folder (-1). */
static int
sync_save_failed(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		 struct mailbox *dbox, const struct migrate_sync_msg *msg,
		 struct istream *input)
{
	enum mail_error error;
	const char *errstr;
	uoff_t size = msg->size;

	errstr = t_strdup(mailbox_get_last_internal_error(dbox, &error));
	switch (error) {
	case MAIL_ERROR_LIMIT:
	case MAIL_ERROR_PARAMS:
	case MAIL_ERROR_INVALIDDATA:
	case MAIL_ERROR_CONVERSION:
		break;
	default:
		migrate_sync_set_dest_error(ctx, dbox, "Saving to");
		return -1;
	}
	if (msg->mail != NULL && mail_get_virtual_size(msg->mail, &size) < 0)
		size = 0;
	if (size == 0)
		size = input->v_offset;
	migrate_sync_reject(ctx, f, msg->uid, size,
		    t_strconcat("the destination refused it: ", errstr, NULL));
	ctx->progress_done++;
	return 0;
}

int
migrate_sync_import_save(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	      struct mailbox *dbox, struct migrate_sync_batch *batch,
	      const struct migrate_sync_msg *msg, struct istream *input,
	      time_t received)
{
	struct mail_save_context *save;
	struct mail_keywords *kw;

	if (batch->t == NULL) {
		migrate_dest_cache_prepare(dbox);
		batch->t = mailbox_transaction_begin(dbox,
			MAILBOX_TRANSACTION_FLAG_EXTERNAL |
			MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS, __func__);
	}
	save = mailbox_save_alloc(batch->t);
	kw = migrate_sync_keywords(ctx, dbox, msg->keywords);
	mailbox_save_set_flags(save, msg->flags & MAIL_FLAGS_NONRECENT, kw);
	if (kw != NULL)
		mailbox_keywords_unref(&kw);
	mailbox_save_set_received_date(save, received, 0);
	mailbox_save_set_guid(save, sync_dest_guid(f->state, msg->uid));
	if (f->state->dest_uidvalidity == f->state->src_uidvalidity)
		mailbox_save_set_uid(save, msg->uid);

	/* the streams the save path stacks on input inherit its buffer
	   size: larger blocks, fewer write()s to the new mail file */
	i_stream_set_max_buffer_size(input, MIGRATE_SAVE_BLOCK_SIZE);
	switch (migrate_dest_save_stream(&save, input)) {
	case MIGRATE_DEST_SAVE_OK:
		break;
	case MIGRATE_DEST_SAVE_FAILED:
		return sync_save_failed(ctx, f, dbox, msg, input);
	case MIGRATE_DEST_SAVE_INPUT_FAILED:
		if (msg->mail != NULL) {
			migrate_sync_set_source_error(ctx, msg->mail->box,
				t_strdup_printf("Reading UID %u of", msg->uid));
		} else {
			/* our own connection's bodies are read from memory
			   or a temporary file */
			migrate_sync_set_error(ctx, MIGRATE_ERROR_TEMP,
				t_strdup_printf("Reading UID %u of %s failed: %s",
					msg->uid, msg->mailbox,
					i_stream_get_error(input)));
		}
		return -1;
	}
	migrate_sync_kill_point(ctx, "save");
	array_push_back(&batch->src_uids, &msg->uid);
	batch->bytes += input->v_offset;
	ctx->stats->messages_copied++;
	ctx->stats->bytes_copied += input->v_offset;
	ctx->progress_done++;
	migrate_sync_progress(ctx);
	if (array_count(&batch->src_uids) >= ctx->set->batch_messages ||
	    batch->bytes >= ctx->set->batch_size)
		return migrate_sync_import_commit(ctx, f, dbox, batch);
	return 0;
}

/* The plan of a folder's copy, in ascending UID order (so that every
   message can keep its source UID): the small messages in chunks, each
   fetched ahead as a whole through the source storage, and the large
   ones, each read in pieces over our own connection where its UID comes
   between two small ones.  The next large one is always on its way
   meanwhile. */
struct sync_copy_large {
	uint32_t uid;
	uoff_t size;
};

struct sync_copy_plan {
	pool_t pool;
	ARRAY(ARRAY_TYPE(seq_range)) chunks;
	ARRAY(struct sync_copy_large) large;
	/* the next large one to copy */
	unsigned int large_idx;
	/* the chunk being filled while planning, and its messages (its
	   bytes are chunk_bytes' last) */
	ARRAY_TYPE(seq_range) *cur_chunk;
	unsigned int cur_count;
	/* the bytes of each chunk */
	ARRAY(uoff_t) chunk_bytes;
	/* chunks asked for over our own connection so far (0 with FALSE
	   ahead: the source storage fetches them) */
	unsigned int chunks_asked;
	bool ahead;
	/* large messages asked for so far */
	unsigned int larges_asked;
	/* bytes asked for, and bytes whose copy has begun, of the small
	   messages (over our own connection) and of the large ones: what is
	   on its way or waits to be saved is the difference */
	uoff_t small_asked, small_begun, large_asked, large_begun;

	/* the source folder, as the storage names it */
	const char *mailbox;
	/* the source storage's folder (opened here when own_sbox) */
	struct mailbox *sbox;
	bool own_sbox;
	/* our own connection's listing, when it describes the messages
	   (their flags and sizes): the storage opens the folder only when
	   it must take over */
	const struct migrate_source_listing *listed;
};

/* What is asked for ahead of the message being saved, in the order the
   messages are saved, is bounded in bytes: it must cover what is saved
   during a round trip to the source, or the line idles while the next
   request travels (saving runs at 200-400 MB/s: 24 MB keeps up at 50 ms).
   The small messages' bodies arrive in memory, so they have a bound of
   their own (the chunk being saved comes on top); the large ones are
   written to temporary files as they come. */
#define MIGRATE_SYNC_AHEAD_WINDOW (24*1024*1024)
#define MIGRATE_SYNC_AHEAD_SMALL_WINDOW (12*1024*1024)
/* a small message's body larger than this is not taken from our own
   connection (a broken or hostile server): the storage is asked */
#define MIGRATE_SYNC_AHEAD_MAX_SIZE (4 * MIGRATE_SOURCE_LARGE_SIZE)

/* A plan on the data stack, or in pool. */
static void sync_plan_init(struct sync_copy_plan *plan, pool_t pool)
{
	i_zero(plan);
	plan->pool = pool != NULL ? pool : pool_datastack_create();
	p_array_init(&plan->chunks, plan->pool, 8);
	p_array_init(&plan->chunk_bytes, plan->pool, 8);
	p_array_init(&plan->large, plan->pool, 8);
}

/* A next folder's copy, asked for while the one before it is saved (its
   listing came ahead): no round trip is waited for between two folders.
   Its plan is that of every message of its listing (a folder new to this
   run) but those its copy will leave out; the copy takes over the chunks
   it planned alike. */
struct sync_copy_ahead {
	pool_t pool;
	struct migrate_sync_folder *f;
	struct sync_copy_plan plan;
};

static ARRAY_TYPE(seq_range) *sync_plan_chunk(struct sync_copy_plan *plan)
{
	ARRAY_TYPE(seq_range) *chunk;

	chunk = array_append_space(&plan->chunks);
	p_array_init(chunk, plan->pool, 8);
	array_append_zero(&plan->chunk_bytes);
	return chunk;
}

/* how many messages' sizes are asked for at once when a copy is planned */
#define MIGRATE_SYNC_SIZES_AHEAD 500

struct sync_size_cap {
	uoff_t max;
	/* why a larger one is left out */
	const char *reason;
	/* the free quota is the bound: a larger message ends the copy as a
	   full quota does (make room, re-run), it is not left out */
	bool quota;
	uint32_t quota_uid;
	uoff_t quota_size;
};

static void sync_copy_cap(struct migrate_sync_ctx *ctx,
			  struct sync_size_cap *cap_r)
{
	struct migrate_dest_quota quota;
	uint64_t free_bytes;

	i_zero(cap_r);
	cap_r->max = migrate_dest_max_message_size(ctx->dest_user, ctx->set,
						   &cap_r->reason);
	if (!migrate_dest_quota_get(ctx->dest_user, &quota) || !quota.limited)
		return;
	free_bytes = quota.limit_kb <= quota.used_kb ? 0 :
		(quota.limit_kb - quota.used_kb) * 1024;
	if (free_bytes < cap_r->max) {
		cap_r->max = free_bytes;
		cap_r->quota = TRUE;
	}
}

/* Add a message to the plan: messages larger than MIGRATE_SOURCE_LARGE_SIZE
   are read in pieces, the rest go in chunks of at most migrate_prefetch
   messages and MIGRATE_SOURCE_PREFETCH_BYTES, so the source streams
   without a pause per message and memory stays bounded by the chunk.
   With cap, a message larger than cap->max is left out (or ends the
   plan, when the quota is the bound: returns FALSE). */
static bool
sync_plan_add(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	      struct sync_copy_plan *plan, struct sync_size_cap *cap,
	      uint32_t uid, uoff_t size, uoff_t *bytes_r)
{
	struct sync_copy_large *large;

	if (cap != NULL && size > cap->max) {
		if (cap->quota) {
			cap->quota_uid = uid;
			cap->quota_size = size;
			return FALSE;
		}
		migrate_sync_reject(ctx, f, uid, size, cap->reason);
		ctx->progress_done++;
		return TRUE;
	}
	*bytes_r += size;
	if (size > I_MIN(MIGRATE_SOURCE_LARGE_SIZE,
			 ctx->set->source_max_line_length / 2)) {
		large = array_append_space(&plan->large);
		large->uid = uid;
		large->size = size;
		return TRUE;
	}
	if (plan->cur_chunk == NULL ||
	    plan->cur_count >= I_MAX(ctx->set->prefetch, 1) ||
	    array_idx_elem(&plan->chunk_bytes,
			   array_count(&plan->chunk_bytes) - 1) + size >
	    MIGRATE_SOURCE_PREFETCH_BYTES) {
		plan->cur_chunk = sync_plan_chunk(plan);
		plan->cur_count = 0;
	}
	seq_range_array_add(plan->cur_chunk, uid);
	plan->cur_count++;
	*array_back_modifiable(&plan->chunk_bytes) += size;
	return TRUE;
}

static int sync_source_size_cmp(const void *key, const void *elem)
{
	const uint32_t *uid = key;
	const struct migrate_source_size *size = elem;

	return *uid < size->uid ? -1 : (*uid > size->uid ? 1 : 0);
}

static const struct migrate_source_size *
sync_source_size_find(const ARRAY_TYPE(migrate_source_size) *sizes,
		      uint32_t uid)
{
	const struct migrate_source_size *arr;
	unsigned int count;

	arr = array_get(sizes, &count);
	return count == 0 ? NULL :
		bsearch(&uid, arr, count, sizeof(*arr), sync_source_size_cmp);
}

/* The source storage's folder, opened now if it was not (NULL on
   failure, with the error set). */
static struct mailbox *
sync_plan_storage(struct migrate_sync_ctx *ctx, struct sync_copy_plan *plan)
{
	if (plan->sbox == NULL) {
		plan->sbox = migrate_sync_source_open(ctx, plan->mailbox);
		plan->own_sbox = plan->sbox != NULL;
	}
	return plan->sbox;
}

static int sync_source_flags_cmp(const void *key, const void *elem)
{
	const uint32_t *uid = key;
	const struct migrate_source_flags *flags = elem;

	return *uid < flags->uid ? -1 : (*uid > flags->uid ? 1 : 0);
}

/* uid as our own connection's listing describes it: FALSE when it does
   not (the storage must look). */
static bool
sync_plan_msg(const struct sync_copy_plan *plan, uint32_t uid,
	      struct migrate_sync_msg *msg_r)
{
	const struct migrate_source_flags *arr, *flags;
	const struct migrate_source_size *size;
	unsigned int count;

	arr = array_get(&plan->listed->flags, &count);
	flags = count == 0 ? NULL :
		bsearch(&uid, arr, count, sizeof(*arr), sync_source_flags_cmp);
	size = sync_source_size_find(&plan->listed->sizes, uid);
	if (flags == NULL || size == NULL)
		return FALSE;
	i_zero(msg_r);
	msg_r->uid = uid;
	msg_r->flags = flags->flags;
	msg_r->keywords = flags->keywords;
	msg_r->size = size->size;
	msg_r->mailbox = plan->mailbox;
	return TRUE;
}

/* The plan from the sizes our own connection brought while the folder
   was opened; FALSE (nothing planned) when it has not every UID. */
static bool
sync_plan_copy_ahead(struct migrate_sync_ctx *ctx,
		     struct migrate_sync_folder *f,
		     const ARRAY_TYPE(seq_range) *uids,
		     struct sync_size_cap *cap, struct sync_copy_plan *plan,
		     uoff_t *bytes_r)
{
	const ARRAY_TYPE(migrate_source_size) *sizes;
	const struct migrate_source_size *size;
	struct seq_range_iter iter;
	unsigned int n = 0;
	uint32_t uid;

	if (migrate_source_sizes(ctx->source, plan->mailbox, &sizes) < 0)
		return FALSE;
	/* every UID first: a plan is all or nothing */
	seq_range_array_iter_init(&iter, uids);
	while (seq_range_array_iter_nth(&iter, n++, &uid)) {
		if (sync_source_size_find(sizes, uid) == NULL)
			return FALSE;
	}
	n = 0;
	seq_range_array_iter_init(&iter, uids);
	while (seq_range_array_iter_nth(&iter, n++, &uid)) {
		size = sync_source_size_find(sizes, uid);
		if (!sync_plan_add(ctx, f, plan, cap, uid, size->size,
				   bytes_r))
			break;
	}
	return TRUE;
}

/* Plans the copy of uids from their sizes (RFC822.SIZE, no bodies): those
   our own connection brought, else the storage's.  *bytes_r is the size
   of them all (what a dry run reports). */
static int
sync_plan_copy(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	       const ARRAY_TYPE(seq_range) *uids,
	       struct sync_size_cap *cap, struct sync_copy_plan *plan,
	       uoff_t *bytes_r)
{
	struct mailbox_transaction_context *st;
	struct mail_search_context *search_ctx;
	struct mailbox *sbox;
	uoff_t size;
	struct mail *smail;
	int ret = 0;

	*bytes_r = 0;
	if (sync_plan_copy_ahead(ctx, f, uids, cap, plan, bytes_r))
		return 0;
	/* the listing does not have them all (messages copied before, an
	   older listing): the storage's view of them */
	plan->listed = NULL;
	if ((sbox = sync_plan_storage(ctx, plan)) == NULL)
		return -1;
	st = mailbox_transaction_begin(sbox, 0, __func__);
	search_ctx = migrate_search_uids(st, uids, MAIL_FETCH_VIRTUAL_SIZE, NULL);
	/* sizes only: many more at a time than bodies (mail_prefetch_count),
	   a round trip per MIGRATE_SYNC_SIZES_AHEAD messages */
	if (search_ctx->max_mails < MIGRATE_SYNC_SIZES_AHEAD)
		search_ctx->max_mails = MIGRATE_SYNC_SIZES_AHEAD;
	while (mailbox_search_next(search_ctx, &smail)) {
		if (mail_get_virtual_size(smail, &size) < 0)
			size = 0;
		if (!sync_plan_add(ctx, f, plan, cap, smail->uid, size,
				   bytes_r))
			break;
	}
	if (mailbox_search_deinit(&search_ctx) < 0) {
		migrate_sync_set_source_error(ctx, sbox, "Fetching sizes of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	return ret;
}

/* A dry run: what the copy would do, from the sizes only. */
int
migrate_sync_import_dry_run(struct migrate_sync_ctx *ctx, struct mailbox *sbox,
		  const ARRAY_TYPE(seq_range) *uids)
{
	struct sync_copy_plan plan;
	uoff_t bytes;
	int ret;

	sync_plan_init(&plan, NULL);
	plan.sbox = sbox;
	plan.mailbox = mailbox_get_vname(sbox);
	ret = sync_plan_copy(ctx, NULL, uids, NULL, &plan, &bytes);
	ctx->stats->messages_copied += seq_range_count(uids);
	ctx->stats->bytes_copied += bytes;
	return ret;
}

static uint32_t
sync_plan_chunk_first_uid(const struct sync_copy_plan *plan, unsigned int idx)
{
	const ARRAY_TYPE(seq_range) *chunk = array_idx(&plan->chunks, idx);
	const struct seq_range *range = array_front(chunk);

	return range->seq1;
}

static void
sync_copy_ask_chunk(struct migrate_sync_ctx *ctx, struct sync_copy_plan *plan)
{
	unsigned int idx = plan->chunks_asked++;
	bool asked;

	asked = !ctx->dry_run &&
		migrate_source_bodies_ask(ctx->source, plan->mailbox,
					  array_idx(&plan->chunks, idx),
					  MIGRATE_SYNC_AHEAD_MAX_SIZE);
	/* the first one tells whether the source has our own connection */
	if (idx == 0)
		plan->ahead = asked;
	if (plan->ahead)
		plan->small_asked += array_idx_elem(&plan->chunk_bytes, idx);
}

/* Every message of the plan is asked for over our own connection */
static bool sync_plan_all_asked(const struct sync_copy_plan *plan)
{
	return plan->larges_asked >= array_count(&plan->large) &&
		(array_count(&plan->chunks) == 0 ||
		 (plan->ahead &&
		  plan->chunks_asked >= array_count(&plan->chunks)));
}

/* The bytes of plan asked for whose copy has not begun: of the small
   messages, and of all */
static void
sync_plan_ahead_bytes(const struct sync_copy_plan *plan, uoff_t *small_r,
		      uoff_t *all_r)
{
	*small_r = plan->small_asked -
		I_MIN(plan->small_begun, plan->small_asked);
	*all_r = *small_r + plan->large_asked -
		I_MIN(plan->large_begun, plan->large_asked);
}

/* Ask for what is saved next, in the order it is saved: the chunks of
   small messages over our own connection (where the source has it), the
   large ones in pieces.  Everything up to the need_chunks'th chunk and
   the need_larges'th large message (those whose copy begins now) is
   asked for, then more while the windows are not full (with the bytes
   another plan has ahead, other_small and other_all, in them). */
static void
sync_plan_ask(struct migrate_sync_ctx *ctx, struct sync_copy_plan *plan,
	      unsigned int need_chunks, unsigned int need_larges,
	      uoff_t other_small, uoff_t other_all)
{
	unsigned int nchunks = array_count(&plan->chunks);
	unsigned int nlarges = array_count(&plan->large);
	const struct sync_copy_large *large;
	uoff_t small_ahead, all_ahead;
	bool chunks, larges, chunk_next;

	for (;;) {
		chunks = plan->chunks_asked < nchunks &&
			(plan->ahead || plan->chunks_asked == 0);
		larges = plan->larges_asked < nlarges;
		if (!chunks && !larges)
			break;
		large = larges ? array_idx(&plan->large, plan->larges_asked) :
			NULL;
		chunk_next = chunks && (large == NULL ||
			sync_plan_chunk_first_uid(plan, plan->chunks_asked) <
			large->uid);
		sync_plan_ahead_bytes(plan, &small_ahead, &all_ahead);
		small_ahead += other_small;
		all_ahead += other_all;
		if ((!chunks || plan->chunks_asked >= need_chunks) &&
		    (!larges || plan->larges_asked >= need_larges) &&
		    (all_ahead >= MIGRATE_SYNC_AHEAD_WINDOW ||
		     (chunk_next &&
		      small_ahead >= MIGRATE_SYNC_AHEAD_SMALL_WINDOW)))
			break;
		if (chunk_next) {
			sync_copy_ask_chunk(ctx, plan);
			continue;
		}
		plan->larges_asked++;
		migrate_source_prefetch_large(ctx->source, plan->mailbox,
					      large->uid, large->size);
		plan->large_asked += large->size;
	}
}

/* The plan of g's copy, to be asked for ahead (struct sync_copy_ahead).
   NULL until its listing is in, and near the quota. */
static struct sync_copy_ahead *
sync_copy_ahead_plan(struct migrate_sync_ctx *ctx,
		     struct migrate_sync_folder *g)
{
	struct sync_copy_ahead *ahead;
	const struct migrate_source_listing *listing;
	const struct migrate_source_size *size;
	struct sync_size_cap cap;
	ARRAY_TYPE(seq_range) uids;
	uoff_t bytes;
	pool_t pool;

	if (migrate_source_listing_peek(ctx->source, g->src_name,
					&listing) <= 0 ||
	    listing->changes || array_count(&listing->sizes) == 0)
		return NULL;
	/* a message its copy will leave out is never downloaded, and near
	   the quota only the copy itself knows what still fits */
	sync_copy_cap(ctx, &cap);
	if (cap.quota)
		return NULL;
	t_array_init(&uids, 16);
	array_foreach(&listing->sizes, size) {
		if (size->size <= cap.max)
			seq_range_array_add(&uids, size->uid);
	}
	if (array_count(&uids) == 0)
		return NULL;
	pool = pool_alloconly_create("migrate copy ahead", 1024);
	ahead = p_new(pool, struct sync_copy_ahead, 1);
	ahead->pool = pool;
	ahead->f = g;
	sync_plan_init(&ahead->plan, pool);
	ahead->plan.mailbox = p_strdup(pool, g->src_name);
	if (!sync_plan_copy_ahead(ctx, g, &uids, NULL, &ahead->plan, &bytes)) {
		pool_unref(&pool);
		return NULL;
	}
	return ahead;
}

/* The copies of the next folders asked for, in their order, as far as
   the windows leave room beside cur's (each once its listing is in: they
   were asked for ahead). */
static void
sync_copy_ask_next(struct migrate_sync_ctx *ctx,
		   const struct sync_copy_plan *cur)
{
	struct sync_copy_ahead *ahead, *const *aheads;
	struct migrate_sync_folder *const *next;
	uoff_t small, all, plan_small, plan_all;
	unsigned int i, j, count, next_count;

	/* with Gmail, a message of several labels is downloaded once:
	   which ones, only its folder's turn tells */
	if (ctx->gmail || !array_is_created(&ctx->next_new_folders))
		return;
	if (!array_is_created(&ctx->copy_aheads))
		i_array_init(&ctx->copy_aheads, 4);
	sync_plan_ahead_bytes(cur, &small, &all);
	/* those planned already first, then the next folders after them */
	aheads = array_get(&ctx->copy_aheads, &count);
	next = array_get(&ctx->next_new_folders, &next_count);
	i = 0;
	if (count > 0) {
		while (i < next_count && next[i] != aheads[count - 1]->f)
			i++;
		/* the last one planned is not among the next ones any more:
		   nothing new until its turn */
		i = i < next_count ? i + 1 : next_count;
	}
	for (j = 0;; j++) {
		if (all >= MIGRATE_SYNC_AHEAD_WINDOW ||
		    small >= MIGRATE_SYNC_AHEAD_SMALL_WINDOW)
			break;
		if (j < array_count(&ctx->copy_aheads))
			ahead = array_idx_elem(&ctx->copy_aheads, j);
		else if (i < next_count &&
			 (ahead = sync_copy_ahead_plan(ctx, next[i++])) != NULL)
			array_push_back(&ctx->copy_aheads, &ahead);
		else
			break;
		sync_plan_ask(ctx, &ahead->plan, 0, 0, small, all);
		sync_plan_ahead_bytes(&ahead->plan, &plan_small, &plan_all);
		small += plan_small;
		all += plan_all;
		if (!sync_plan_all_asked(&ahead->plan))
			break;
	}
}

/* The copy asked for ahead of f, taken over by plan as far as it planned
   alike; the rest of it dropped. */
static void
sync_copy_ahead_take_one(struct migrate_sync_ctx *ctx,
			 struct sync_copy_ahead *ahead,
			 struct migrate_sync_folder *f,
			 struct sync_copy_plan *plan)
{
	const ARRAY_TYPE(seq_range) *chunk;
	unsigned int i, n = 0;

	while (plan != NULL && ahead->f == f && ahead->plan.ahead &&
	       n < ahead->plan.chunks_asked && n < array_count(&plan->chunks)) {
		chunk = array_idx(&ahead->plan.chunks, n);
		if (!array_cmp(array_idx(&plan->chunks, n), chunk))
			break;
		if (migrate_source_bodies_failed(ctx->source,
						 ahead->plan.mailbox, chunk)) {
			/* our own connection was lost: they are asked for
			   again (it connects again), not taken over by the
			   storage */
			e_warning(event_create_passthrough(ctx->event)->
				  set_name("migrate_source_reask")->
				  add_str("mailbox", f->dest_name)->event(),
				  "%s: our own connection to the source did not "
				  "bring the messages asked for ahead (%s): they "
				  "are asked for again",
				  migrate_text_escape(f->dest_name),
				  migrate_text_escape(
					migrate_source_bodies_error(ctx->source)));
			break;
		}
		n++;
	}
	if (n > 0) {
		plan->ahead = TRUE;
		plan->chunks_asked = n;
		for (i = 0; i < n; i++)
			plan->small_asked += array_idx_elem(&plan->chunk_bytes, i);
	}
	/* what is on its way for the rest is dropped as it comes */
	for (i = n; ahead->plan.ahead && i < ahead->plan.chunks_asked; i++) {
		migrate_source_bodies_finish(ctx->source, ahead->plan.mailbox,
			array_idx(&ahead->plan.chunks, i));
	}
	pool_unref(&ahead->pool);
}

/* g's turn has come (or is past) */
static bool
sync_folder_turn_came(struct migrate_sync_ctx *ctx,
		      const struct migrate_sync_folder *g)
{
	struct migrate_sync_folder *const *order;
	unsigned int i, count;

	order = array_get(&ctx->order, &count);
	for (i = 0; i < ctx->folder_idx && i < count; i++) {
		if (order[i] == g)
			return TRUE;
	}
	return FALSE;
}

/* The copy asked for ahead of f taken over by plan (NULL: dropped), and
   those of the folders before it dropped (their turn is past: a worker
   took them, or they needed no copy).  f NULL drops them all. */
static void
sync_copy_ahead_take(struct migrate_sync_ctx *ctx,
		     struct migrate_sync_folder *f,
		     struct sync_copy_plan *plan)
{
	struct sync_copy_ahead *ahead;

	if (!array_is_created(&ctx->copy_aheads))
		return;
	while (array_count(&ctx->copy_aheads) > 0) {
		ahead = array_idx_elem(&ctx->copy_aheads, 0);
		if (f != NULL && ahead->f != f &&
		    !sync_folder_turn_came(ctx, ahead->f))
			break;
		array_pop_front(&ctx->copy_aheads);
		if (f != NULL && ahead->f == f) {
			sync_copy_ahead_take_one(ctx, ahead, f, plan);
			break;
		}
		sync_copy_ahead_take_one(ctx, ahead, NULL, NULL);
	}
}

void migrate_sync_import_ahead_drop(struct migrate_sync_ctx *ctx)
{
	sync_copy_ahead_take(ctx, NULL, NULL);
	if (array_is_created(&ctx->copy_aheads))
		array_free(&ctx->copy_aheads);
	if (array_is_created(&ctx->next_new_folders))
		array_free(&ctx->next_new_folders);
}

/* Ask for plan's next messages; once they are all asked for, the next
   folders' listings, and the next folder's first messages. */
static void
sync_copy_ask_window(struct migrate_sync_ctx *ctx, struct sync_copy_plan *plan,
		     unsigned int need_chunks, unsigned int need_larges)
{
	sync_plan_ask(ctx, plan, need_chunks, need_larges, 0, 0);
	if (sync_plan_all_asked(plan)) {
		migrate_sync_list_next_ahead(ctx);
		T_BEGIN {
			sync_copy_ask_next(ctx, plan);
		} T_END;
	}
}

static void
sync_copy_gone(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f)
{
	ctx->stats->messages_skipped++;
	f->skipped++;
	ctx->progress_done++;
}

/* Copy the large messages whose UIDs are below limit. */
static int
sync_copy_large_before(struct migrate_sync_ctx *ctx,
		       struct migrate_sync_folder *f, struct mailbox *dbox,
		       struct migrate_sync_batch *batch,
		       struct sync_copy_plan *plan, uint32_t limit)
{
	const struct sync_copy_large *large;
	struct mailbox_transaction_context *st = NULL;
	struct migrate_sync_msg msg;
	struct mail *lmail = NULL;
	int ret = 0;

	if (plan->large_idx >= array_count(&plan->large))
		return 0;
	large = array_idx(&plan->large, plan->large_idx);
	if (large->uid >= limit)
		return 0;
	if (plan->listed == NULL) {
		st = mailbox_transaction_begin(plan->sbox, 0, __func__);
		/* the flags only: the storage has them already */
		lmail = mail_alloc(st, MAIL_FETCH_FLAGS, NULL);
	}
	while (ret == 0 && plan->large_idx < array_count(&plan->large)) {
		large = array_idx(&plan->large, plan->large_idx);
		if (large->uid >= limit)
			break;
		/* it is on its way (or starts now), and the next ones
		   follow it at once */
		sync_copy_ask_window(ctx, plan, 0, plan->large_idx + 1);
		plan->large_begun += large->size;
		plan->large_idx++;
		if (lmail != NULL && mail_set_uid(lmail, large->uid))
			migrate_sync_msg_from_mail(&msg, lmail);
		else if (lmail != NULL || !sync_plan_msg(plan, large->uid, &msg)) {
			/* gone since it was planned */
			sync_copy_gone(ctx, f);
			continue;
		}
		T_BEGIN {
			ret = sync_copy_one(ctx, f, dbox, batch, &msg,
					    SYNC_BODY_PIECES, large->size);
		} T_END;
	}
	if (lmail != NULL) {
		mail_free(&lmail);
		(void)mailbox_transaction_commit(&st);
	}
	return ret;
}

/* No more chunks over our own connection: those asked for from the
   first_idx'th on are dropped as they come. */
static void
sync_copy_ahead_stop(struct migrate_sync_ctx *ctx, struct sync_copy_plan *plan,
		     unsigned int first_idx)
{
	unsigned int i;

	if (!plan->ahead)
		return;
	for (i = first_idx; i < plan->chunks_asked; i++) {
		migrate_source_bodies_finish(ctx->source, plan->mailbox,
					     array_idx(&plan->chunks, i));
	}
	plan->ahead = FALSE;
}

/* Copy uids as our own connection's listing describes them, their bodies
   from its chunks.  Returns 1 with *resume_uid_r when a body must come
   from the storage from that UID on, else 0 or -1. */
static int
sync_copy_uids_listed(struct migrate_sync_ctx *ctx,
		      struct migrate_sync_folder *f, struct mailbox *dbox,
		      struct migrate_sync_batch *batch,
		      struct sync_copy_plan *plan,
		      const ARRAY_TYPE(seq_range) *uids,
		      uint32_t *resume_uid_r)
{
	struct migrate_sync_msg msg;
	struct seq_range_iter iter;
	unsigned int n = 0;
	uint32_t uid;
	int ret = 0;

	seq_range_array_iter_init(&iter, uids);
	while (ret == 0 && seq_range_array_iter_nth(&iter, n++, &uid)) {
		ret = sync_copy_large_before(ctx, f, dbox, batch, plan, uid);
		if (ret != 0)
			break;
		if (!sync_plan_msg(plan, uid, &msg)) {
			ret = 1;
			break;
		}
		/* the window moves on by this message: what follows it (and
		   the next folder's first messages) is asked for while it is
		   saved */
		plan->small_begun += msg.size;
		sync_copy_ask_window(ctx, plan, 0, 0);
		T_BEGIN {
			ret = sync_copy_one(ctx, f, dbox, batch, &msg,
					    SYNC_BODY_AHEAD, 0);
		} T_END;
	}
	if (ret > 0)
		*resume_uid_r = uid;
	return ret;
}

/* Copy the small messages uids (and the large ones among them), their
   bodies from our own connection with ahead, else from the storage.
   Returns 1 with *resume_uid_r when our own connection failed to bring
   the chunk from that UID on (the storage is to take over), else 0 or
   -1. */
static int
sync_copy_uids(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	       struct mailbox *dbox, struct migrate_sync_batch *batch,
	       struct sync_copy_plan *plan,
	       const ARRAY_TYPE(seq_range) *uids, bool ahead,
	       uint32_t *resume_uid_r)
{
	struct mailbox_transaction_context *st;
	struct mail_search_context *search_ctx;
	struct migrate_sync_msg msg;
	struct mailbox *sbox;
	struct mail *smail;
	int ret = 0;

	if (ahead && plan->listed != NULL) {
		return sync_copy_uids_listed(ctx, f, dbox, batch, plan, uids,
					     resume_uid_r);
	}
	if ((sbox = sync_plan_storage(ctx, plan)) == NULL)
		return -1;
	st = mailbox_transaction_begin(sbox, 0, __func__);
	/* over our own connection: the flags only (the storage has them
	   already) */
	search_ctx = migrate_search_uids(st, uids, MAIL_FETCH_FLAGS |
		(ahead ? 0 : MAIL_FETCH_RECEIVED_DATE |
		 MAIL_FETCH_STREAM_HEADER | MAIL_FETCH_STREAM_BODY), NULL);
	while (mailbox_search_next(search_ctx, &smail)) {
		ret = sync_copy_large_before(ctx, f, dbox, batch, plan,
					     smail->uid);
		if (ret == 0) T_BEGIN {
			migrate_sync_msg_from_mail(&msg, smail);
			ret = sync_copy_one(ctx, f, dbox, batch, &msg,
				ahead ? SYNC_BODY_AHEAD : SYNC_BODY_STORAGE,
				0);
		} T_END;
		if (ret != 0) {
			*resume_uid_r = smail->uid;
			break;
		}
	}
	if (mailbox_search_deinit(&search_ctx) < 0 && ret == 0) {
		migrate_sync_set_source_error(ctx, sbox, "Fetching messages of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	return ret;
}

/* Copy a chunk of small messages (the idx'th), and the large ones among
   them. */
static int
sync_copy_chunk(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		struct mailbox *dbox, struct migrate_sync_batch *batch,
		struct sync_copy_plan *plan, unsigned int idx)
{
	const ARRAY_TYPE(seq_range) *uids = array_idx(&plan->chunks, idx);
	ARRAY_TYPE(seq_range) rest;
	uint32_t resume_uid = 0;
	int ret;

	sync_copy_ask_window(ctx, plan, idx + 1, 0);
	/* begun as a whole, or message by message from the listing */
	if (plan->ahead && plan->listed == NULL)
		plan->small_begun += array_idx_elem(&plan->chunk_bytes, idx);
	ret = sync_copy_uids(ctx, f, dbox, batch, plan, uids, plan->ahead,
			     &resume_uid);
	if (plan->ahead)
		migrate_source_bodies_finish(ctx->source, plan->mailbox, uids);
	if (ret <= 0)
		return ret;
	/* our own connection failed: the storage fetches the rest of this
	   folder (chunks asked for already are dropped as they come) */
	e_warning(event_create_passthrough(ctx->event)->
		  set_name("migrate_source_takeover")->
		  add_str("mailbox", f->dest_name)->
		  add_int("uid", resume_uid)->event(),
		  "%s: our own connection to the source did not bring UID %u "
		  "and after (%s): the source storage fetches them",
		  migrate_text_escape(f->dest_name), resume_uid,
		  migrate_text_escape(migrate_source_bodies_error(ctx->source)));
	sync_copy_ahead_stop(ctx, plan, idx + 1);
	t_array_init(&rest, array_count(uids));
	array_append_array(&rest, uids);
	if (resume_uid > 1)
		seq_range_array_remove_range(&rest, 1, resume_uid - 1);
	ret = sync_copy_uids(ctx, f, dbox, batch, plan, &rest, FALSE,
			     &resume_uid);
	return ret > 0 ? -1 : ret;
}

static int
sync_copy_plan_run(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		   struct mailbox *dbox, struct migrate_sync_batch *batch,
		   struct sync_copy_plan *plan)
{
	unsigned int i, count = array_count(&plan->chunks);

	for (i = 0; i < count; i++) {
		if (sync_copy_chunk(ctx, f, dbox, batch, plan, i) < 0) {
			sync_copy_ahead_stop(ctx, plan, i + 1);
			return -1;
		}
	}
	return sync_copy_large_before(ctx, f, dbox, batch, plan,
				      (uint32_t)-1);
}

int
migrate_sync_import(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		 struct mailbox *sbox, struct mailbox *dbox,
		 const ARRAY_TYPE(seq_range) *copy_uids)
{
	struct sync_copy_plan plan;
	struct migrate_sync_batch batch;
	struct sync_size_cap cap;
	uoff_t bytes;
	int ret;

	i_zero(&batch);
	/* not on the data stack: saves happen in their own stack frames */
	i_array_init(&batch.src_uids, 64);
	i_gettimeofday(&ctx->folder_start);
	ctx->progress_folder = f->dest_name;
	ctx->progress_done = 0;
	ctx->progress_total = seq_range_count(copy_uids);

	sync_plan_init(&plan, NULL);
	plan.sbox = sbox;
	plan.mailbox = f->src_name;
	if (sbox == NULL &&
	    migrate_source_listing(ctx->source, f->src_name,
				   &plan.listed) < 0)
		plan.listed = NULL;
	sync_copy_cap(ctx, &cap);
	ret = sync_plan_copy(ctx, f, copy_uids, &cap, &plan, &bytes);
	sync_copy_ahead_take(ctx, f, ret == 0 ? &plan : NULL);
	if (ret == 0)
		ret = sync_copy_plan_run(ctx, f, dbox, &batch, &plan);
	/* keep what was saved completely, even after a failure */
	if (migrate_sync_import_commit(ctx, f, dbox, &batch) < 0)
		ret = -1;
	if (cap.quota_uid != 0) {
		/* never downloaded: it would not fit */
		migrate_sync_set_error(ctx, MIGRATE_ERROR_DEST_QUOTA,
			t_strdup_printf("Saving to %s: UID %u (%"PRIuUOFF_T
				" bytes) does not fit into the quota left "
				"(%"PRIuUOFF_T" bytes): Quota exceeded",
				f->dest_name, cap.quota_uid, cap.quota_size,
				cap.max));
		ret = -1;
	}
	array_free(&batch.src_uids);
	if (plan.own_sbox)
		mailbox_free(&plan.sbox);
	return ret;
}

/* The content key of a message: INTERNALDATE, size and Message-ID.
   *weak_r is TRUE when it has no Message-ID: then two different messages
   of the same date and size share it. */
const char *migrate_sync_mail_match_key(struct mail *mail, bool *weak_r)
{
	const char *message_id;
	time_t received;
	uoff_t size;

	*weak_r = FALSE;
	if (mail_get_received_date(mail, &received) < 0 ||
	    mail_get_virtual_size(mail, &size) < 0)
		return NULL;
	if (mail_get_first_header(mail, "Message-ID", &message_id) <= 0 ||
	    message_id[0] == '\0') {
		message_id = "";
		*weak_r = TRUE;
	}
	return t_strdup_printf("%lld %"PRIuUOFF_T" %s",
			       (long long)received, size, message_id);
}

void migrate_sync_key_add(pool_t pool, HASH_TABLE_TYPE(migrate_sync_keys) keys,
			  const char *key, bool weak, void *value)
{
	const char *orig_key;
	void *orig_value;

	if (!hash_table_lookup_full(keys, key, &orig_key, &orig_value)) {
		orig_key = p_strdup(pool, key);
		hash_table_insert(keys, orig_key, value);
	} else if (weak)
		hash_table_update(keys, orig_key, MIGRATE_SYNC_KEY_AMBIGUOUS);
}

struct rematch_source {
	uint32_t uid;
	const char *key;
	enum mail_flags flags;
	const char *const *keywords;
};
ARRAY_DEFINE_TYPE(rematch_source, struct rematch_source);

/* The content keys of the candidates (destination UIDs), into keys. */
static int
rematch_read_dest(struct migrate_sync_ctx *ctx, struct mailbox *dbox,
		  struct mailbox_transaction_context *dt,
		  const ARRAY_TYPE(seq_range) *candidates, pool_t pool,
		  HASH_TABLE_TYPE(migrate_sync_keys) keys)
{
	static const char *const match_headers[] = { "Message-ID", NULL };
	struct mailbox_header_lookup_ctx *headers;
	struct mail_search_context *search_ctx;
	struct mail *mail;
	const char *key;
	bool weak;

	headers = mailbox_header_lookup_init(dbox, match_headers);
	search_ctx = migrate_search_uids(dt, candidates,
		MAIL_FETCH_RECEIVED_DATE | MAIL_FETCH_VIRTUAL_SIZE, headers);
	mailbox_header_lookup_unref(&headers);
	while (mailbox_search_next(search_ctx, &mail)) T_BEGIN {
		key = migrate_sync_mail_match_key(mail, &weak);
		if (key != NULL) {
			migrate_sync_key_add(pool, keys, key, weak,
					POINTER_CAST(mail->uid));
		}
	} T_END;
	if (mailbox_search_deinit(&search_ctx) < 0) {
		migrate_sync_set_dest_error(ctx, dbox, "Reading");
		return -1;
	}
	return 0;
}

/* The content keys of the source messages in copy_uids, into sources;
   keys counts them (a weak key twice is ambiguous). */
static int
rematch_read_source(struct migrate_sync_ctx *ctx, struct mailbox *sbox,
		    const ARRAY_TYPE(seq_range) *copy_uids, pool_t pool,
		    HASH_TABLE_TYPE(migrate_sync_keys) keys,
		    ARRAY_TYPE(rematch_source) *sources)
{
	static const char *const match_headers[] = { "Message-ID", NULL };
	struct mailbox_header_lookup_ctx *headers;
	struct mailbox_transaction_context *st;
	struct mail_search_context *search_ctx;
	struct rematch_source *src;
	struct mail *mail;
	const char *key;
	bool weak;
	int ret = 0;

	headers = mailbox_header_lookup_init(sbox, match_headers);
	st = mailbox_transaction_begin(sbox, 0, __func__);
	search_ctx = migrate_search_uids(st, copy_uids,
		MAIL_FETCH_FLAGS | MAIL_FETCH_RECEIVED_DATE |
		MAIL_FETCH_VIRTUAL_SIZE, headers);
	mailbox_header_lookup_unref(&headers);
	while (mailbox_search_next(search_ctx, &mail)) T_BEGIN {
		key = migrate_sync_mail_match_key(mail, &weak);
		if (key != NULL) {
			src = array_append_space(sources);
			src->uid = mail->uid;
			src->key = p_strdup(pool, key);
			src->flags = mail_get_flags(mail) & MAIL_FLAGS_NONRECENT;
			src->keywords = p_strarray_dup(pool,
				mail_get_keywords(mail));
			migrate_sync_key_add(pool, keys, key, weak,
					POINTER_CAST(1));
		}
	} T_END;
	if (mailbox_search_deinit(&search_ctx) < 0) {
		migrate_sync_set_source_error(ctx, sbox, "Fetching headers of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	return ret;
}

/* Find copies made earlier among candidates (destination UIDs) by content
   (INTERNALDATE, size, Message-ID): after a UIDVALIDITY change, and after
   a crash that lost the GUIDs of a batch.  Matched candidates are mapped
   and removed from copy_uids and candidates.  A key without a Message-ID
   that two source messages or two candidates share matches nothing: those
   messages are copied again rather than risk taking one for the other. */
int
migrate_sync_import_rematch(struct migrate_sync_ctx *ctx,
		    struct migrate_sync_folder *f, struct mailbox *sbox,
		    struct mailbox *dbox, ARRAY_TYPE(seq_range) *copy_uids,
		    ARRAY_TYPE(seq_range) *candidates, const char *what)
{
	HASH_TABLE_TYPE(migrate_sync_keys) dest_keys;
	HASH_TABLE_TYPE(migrate_sync_keys) src_keys;
	ARRAY_TYPE(rematch_source) sources;
	const struct rematch_source *src;
	struct mailbox_transaction_context *dt;
	struct mail *dmail;
	struct mail_keywords *kw;
	void *value;
	uint32_t dest_uid;
	unsigned int matched = 0;
	pool_t pool;
	int ret = 0;

	if (mailbox_sync(dbox, 0) < 0) {
		migrate_sync_set_dest_error(ctx, dbox, "Opening");
		return -1;
	}
	pool = pool_alloconly_create("migrate rematch", 4096);
	hash_table_create(&dest_keys, pool, 0, str_hash, strcmp);
	hash_table_create(&src_keys, pool, 0, str_hash, strcmp);
	p_array_init(&sources, pool, 64);
	dt = mailbox_transaction_begin(dbox, 0, __func__);
	if (rematch_read_dest(ctx, dbox, dt, candidates, pool, dest_keys) < 0 ||
	    rematch_read_source(ctx, sbox, copy_uids, pool, src_keys,
				&sources) < 0)
		ret = -1;

	dmail = mail_alloc(dt, MAIL_FETCH_FLAGS, NULL);
	array_foreach(&sources, src) {
		if (ret < 0)
			break;
		if (hash_table_lookup(src_keys, src->key) == MIGRATE_SYNC_KEY_AMBIGUOUS ||
		    (value = hash_table_lookup(dest_keys, src->key)) == NULL)
			continue;
		dest_uid = POINTER_CAST_TO(value, uint32_t);
		hash_table_remove(dest_keys, src->key);
		if (!mail_set_uid(dmail, dest_uid))
			continue;
		migrate_sync_map_copy(ctx, f, src->uid, dest_uid);
		seq_range_array_remove(copy_uids, src->uid);
		seq_range_array_remove(candidates, dest_uid);
		mail_update_flags(dmail, MODIFY_REPLACE, src->flags);
		kw = mailbox_keywords_create_valid(dbox,
			migrate_sync_valid_keywords(dbox, src->keywords));
		mail_update_keywords(dmail, MODIFY_REPLACE, kw);
		mailbox_keywords_unref(&kw);
		matched++;
	}
	mail_free(&dmail);
	if (mailbox_transaction_commit(&dt) < 0 ||
	    mailbox_sync(dbox, 0) < 0) {
		migrate_sync_set_dest_error(ctx, dbox, "Updating flags in");
		ret = -1;
	}
	e_info(ctx->event, "%s: %u %s found again, %u to copy",
	       migrate_text_escape(f->dest_name), matched, what,
	       seq_range_count(copy_uids));
	ctx->stats->messages_recovered += matched;
	hash_table_destroy(&dest_keys);
	hash_table_destroy(&src_keys);
	pool_unref(&pool);
	return ret;
}
