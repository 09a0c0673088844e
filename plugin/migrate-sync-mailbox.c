/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "str.h"
#include "imap-util.h"
#include "mail-storage.h"
#include "migrate-text.h"
#include "migrate-sync-private.h"

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
		migrate_sync_set_dest_error(ctx, dbox, "Syncing");
		return -1;
	}
	mailbox_get_open_status(dbox, STATUS_UIDNEXT, &status);
	if (status.uidnext <= state->dest_uidnext)
		return 0;

	t_array_init(&new_uids, 1);
	seq_range_array_add_range(&new_uids, I_MAX(state->dest_uidnext, 1),
				  status.uidnext - 1);
	t = mailbox_transaction_begin(dbox, 0, __func__);
	search_ctx = migrate_search_uids(t, &new_uids, MAIL_FETCH_GUID, NULL);
	while (mailbox_search_next(search_ctx, &mail)) {
		if (mail_get_special(mail, MAIL_FETCH_GUID, &guid) < 0) {
			if (mailbox_get_last_mail_error(dbox) ==
			    MAIL_ERROR_EXPUNGED)
				continue;
			migrate_sync_set_dest_error(ctx, dbox, "Reading GUIDs of");
			ret = -1;
			break;
		}
		if (!migrate_sync_guid_parse(state, guid, &src_uid)) {
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
				  "source UID %u",
				  migrate_text_escape(f->dest_name), mail->uid,
				  src_uid);
			continue;
		}
		migrate_sync_map_copy(ctx, f, src_uid, mail->uid);
	}
	if (mailbox_search_deinit(&search_ctx) < 0 && ret == 0) {
		migrate_sync_set_dest_error(ctx, dbox, "Searching");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&t);
	if (ret == 0)
		state->dest_uidnext = status.uidnext;
	return ret;
}

/* Give dbox the source folder's UIDVALIDITY, so that its messages can keep
   their UIDs. */
static void
sync_dest_keep_uidvalidity(struct migrate_sync_ctx *ctx,
			   struct migrate_sync_folder *f, struct mailbox *dbox)
{
	struct mailbox_update update;

	i_zero(&update);
	update.uid_validity = f->src_status.uidvalidity;
	if (mailbox_update(dbox, &update) < 0) {
		e_debug(ctx->event, "Keeping UIDVALIDITY of %s failed: %s",
			f->dest_name, mailbox_get_last_internal_error(dbox, NULL));
	}
}

static int
sync_dest_open(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	       struct mailbox **dbox_r)
{
	struct migrate_state_folder *state = f->state;
	struct mailbox *dbox;
	struct mailbox_status status;
	enum mail_error error;

	dbox = migrate_sync_dest_alloc(ctx, f->dest_name);
	if (mailbox_create(dbox, NULL, FALSE) == 0) {
		migrate_sync_kill_point(ctx, "create");
		ctx->stats->folders_created++;
		e_debug(ctx->event, "Created %s", f->dest_name);
		/* keep the source's UIDs when nobody else uses the box */
		sync_dest_keep_uidvalidity(ctx, f, dbox);
	} else {
		(void)mailbox_get_last_internal_error(dbox, &error);
		if (error != MAIL_ERROR_EXISTS) {
			migrate_sync_set_dest_error(ctx, dbox, "Creating");
			mailbox_free(&dbox);
			return -1;
		}
	}
	if (mailbox_sync(dbox, 0) < 0) {
		migrate_sync_set_dest_error(ctx, dbox, "Opening");
		mailbox_free(&dbox);
		return -1;
	}
	mailbox_get_open_status(dbox, STATUS_UIDVALIDITY | STATUS_MESSAGES,
				&status);
	if (state->dest_uidvalidity == 0 && status.messages == 0 &&
	    status.uidvalidity != f->src_status.uidvalidity) {
		/* there already but empty, as INBOX is once the user logged
		   in: nothing refers to its UIDVALIDITY yet */
		sync_dest_keep_uidvalidity(ctx, f, dbox);
		if (mailbox_sync(dbox, 0) < 0) {
			migrate_sync_set_dest_error(ctx, dbox, "Opening");
			mailbox_free(&dbox);
			return -1;
		}
		mailbox_get_open_status(dbox, STATUS_UIDVALIDITY, &status);
	}
	if (state->dest_uidvalidity != status.uidvalidity) {
		if (state->dest_uidvalidity != 0) {
			e_warning(ctx->event, "%s was recreated at the "
				  "destination: copying it again",
				  migrate_text_escape(f->dest_name));
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
	return migrate_sync_dest_alloc(ctx,
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
			migrate_sync_set_dest_error(ctx, l->box, "Opening");
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
			migrate_sync_set_dest_error(ctx, l->box, "Updating flags in");
			ret = -1;
		}
		mailbox_free(&l->box);
	}
	array_clear(locs);
	return ret;
}

/* The final sync's pass over the source: what is new goes to copy_uids;
   nothing else changes, nothing is deleted. */
static int
sync_folder_final_pass(struct migrate_sync_ctx *ctx,
		       struct migrate_sync_folder *f, struct mailbox *sbox,
		       ARRAY_TYPE(seq_range) *copy_uids)
{
	struct mailbox_transaction_context *st;
	struct mail_search_context *search_ctx;
	const struct migrate_uid_map *map;
	struct mail *smail;
	int ret = 0;

	st = mailbox_transaction_begin(sbox, 0, __func__);
	search_ctx = migrate_search_all(st, MAIL_FETCH_FLAGS |
		(ctx->opts->maxage_days > 0 ? MAIL_FETCH_RECEIVED_DATE : 0));
	while (mailbox_search_next(search_ctx, &smail)) {
		map = migrate_state_map_lookup(f->state, smail->uid);
		if (sync_final_wanted(ctx, f->state, smail, map))
			seq_range_array_add(copy_uids, smail->uid);
	}
	if (mailbox_search_deinit(&search_ctx) < 0) {
		migrate_sync_set_source_error(ctx, sbox, "Fetching flags of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	return ret;
}

struct migrate_sync_flags_pass {
	struct migrate_sync_ctx *ctx;
	struct migrate_sync_folder *f;
	struct mailbox *dbox;
	struct mailbox_transaction_context *dt;
	struct mail *dmail;
	ARRAY_TYPE(sync_location) locs;
	/* FALSE in a dry run: only counted */
	bool update;
};

struct migrate_sync_flags_pass *
migrate_sync_flags_pass_init(struct migrate_sync_ctx *ctx,
			     struct migrate_sync_folder *f,
			     struct mailbox *dbox)
{
	struct migrate_sync_flags_pass *pass;

	pass = t_new(struct migrate_sync_flags_pass, 1);
	pass->ctx = ctx;
	pass->f = f;
	pass->dbox = dbox;
	pass->update = !ctx->dry_run;
	if (dbox != NULL) {
		/* not EXTERNAL: that would mark the changes as already in
		   the mail files */
		pass->dt = mailbox_transaction_begin(dbox, 0, __func__);
		pass->dmail = mail_alloc(pass->dt, MAIL_FETCH_FLAGS, NULL);
	}
	t_array_init(&pass->locs, 4);
	return pass;
}

bool migrate_sync_flags_pass_msg(struct migrate_sync_flags_pass *pass,
				 uint32_t uid, enum mail_flags flags,
				 const char *const *keywords)
{
	struct migrate_sync_ctx *ctx = pass->ctx;
	const struct migrate_uid_map *map;
	struct mail_keywords *kw;
	struct mail *tmail;
	bool skip;

	map = migrate_state_map_lookup(pass->f->state, uid);
	if (map == NULL || pass->dmail == NULL)
		return FALSE;
	tmail = pass->dmail;
	if (map->dest_loc != 0) {
		/* archived: the copy lives in a year folder now */
		tmail = sync_location_mail(ctx, &pass->locs, map->dest_loc,
					   &skip);
		if (skip)
			return TRUE;
	}
	if (tmail == NULL || !mail_set_uid(tmail, map->dest_uid)) {
		/* deleted at the destination behind our back: the mirror
		   copies it again */
		migrate_state_map_remove(ctx->state, pass->f->state, uid);
		return FALSE;
	}
	flags &= MAIL_FLAGS_NONRECENT;
	/* a keyword the destination refuses is not a difference: it was
	   dropped when the message was copied */
	if (sync_flags_equal(flags,
			     migrate_sync_valid_keywords(tmail->box, keywords),
			     mail_get_flags(tmail), mail_get_keywords(tmail)))
		return TRUE;
	ctx->stats->messages_updated++;
	if (!pass->update)
		return TRUE;
	mail_update_flags(tmail, MODIFY_REPLACE, flags);
	kw = migrate_sync_keywords(ctx, tmail->box, keywords);
	if (kw == NULL) {
		kw = mailbox_keywords_create_valid(tmail->box,
			(const char *const[]){ NULL });
	}
	mail_update_keywords(tmail, MODIFY_REPLACE, kw);
	mailbox_keywords_unref(&kw);
	return TRUE;
}

int migrate_sync_flags_pass_finish(struct migrate_sync_flags_pass **_pass)
{
	struct migrate_sync_flags_pass *pass = *_pass;

	struct migrate_sync_ctx *ctx = pass->ctx;
	int ret = 0;

	*_pass = NULL;
	if (sync_locations_finish(ctx, &pass->locs, pass->update) < 0)
		ret = -1;
	if (pass->dt == NULL)
		return ret;
	mail_free(&pass->dmail);
	/* the sync applies the changes to the mail files */
	if (mailbox_transaction_commit(&pass->dt) < 0 ||
	    mailbox_sync(pass->dbox, 0) < 0) {
		migrate_sync_set_dest_error(ctx, pass->dbox, "Updating flags in");
		ret = -1;
	}
	migrate_sync_kill_point(ctx, "flags");
	return ret;
}

/* The mirror's pass over the source: update the flags of our copies
   (only count them in a dry run), find what is to be copied (copy_uids)
   and what is gone (f->delete_src_uids).  dbox is NULL when the dry run
   found no destination folder yet. */
static int
sync_folder_mirror_pass(struct migrate_sync_ctx *ctx,
			struct migrate_sync_folder *f, struct mailbox *sbox,
			struct mailbox *dbox, ARRAY_TYPE(seq_range) *copy_uids)
{
	struct migrate_state_folder *state = f->state;
	struct mailbox_transaction_context *st;
	struct mail_search_context *search_ctx;
	struct migrate_sync_flags_pass *pass;
	const struct migrate_uid_map *map;
	ARRAY_TYPE(seq_range) seen;
	struct mail *smail;
	int ret = 0;

	pass = migrate_sync_flags_pass_init(ctx, f, dbox);
	t_array_init(&seen, 64);
	st = mailbox_transaction_begin(sbox, 0, __func__);
	search_ctx = migrate_search_all(st, MAIL_FETCH_FLAGS);
	while (mailbox_search_next(search_ctx, &smail)) {
		seq_range_array_add(&seen, smail->uid);
		if (!migrate_sync_flags_pass_msg(pass, smail->uid,
						 mail_get_flags(smail),
						 mail_get_keywords(smail)))
			seq_range_array_add(copy_uids, smail->uid);
	}
	if (mailbox_search_deinit(&search_ctx) < 0) {
		migrate_sync_set_source_error(ctx, sbox, "Fetching flags of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	if (migrate_sync_flags_pass_finish(&pass) < 0 || ret < 0)
		return -1;

	/* what we copied and the source no longer lists is gone */
	array_foreach(&state->map, map) {
		if (!seq_range_exists(&seen, map->src_uid))
			seq_range_array_add(&f->delete_src_uids, map->src_uid);
	}
	return 0;
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
		migrate_sync_set_source_error(ctx, sbox, "Fetching sizes of");
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
		array_count(&state->orphans) == 0 &&
		state->src_uidvalidity == status->uidvalidity &&
		state->src_uidnext == status->uidnext &&
		state->src_messages == status->messages &&
		status->highest_modseq != 0 &&
		state->src_highestmodseq == status->highest_modseq;
}

int
migrate_sync_mailbox_status(struct migrate_sync_ctx *ctx,
		   struct migrate_sync_folder *f)
{
	const enum mailbox_status_items items = STATUS_UIDVALIDITY |
		STATUS_UIDNEXT | STATUS_MESSAGES | STATUS_HIGHESTMODSEQ;
	struct mailbox *sbox;
	int ret = 0;

	sbox = mailbox_alloc(ctx->src_ns->list, f->src_name,
			     MAILBOX_FLAG_READONLY);

	if (mailbox_get_status(sbox, items, &f->src_status) < 0) {
		migrate_sync_set_source_error(ctx, sbox, "STATUS of");
		ret = -1;
	} else if (f->src_status.uidvalidity == 0) {
		/* a STATUS reply imapc could not use (mailutils' imap4d
		   does not quote a name with a space in it): EXAMINE
		   tells the same */
		if (mailbox_sync(sbox, 0) < 0) {
			migrate_sync_set_source_error(ctx, sbox, "Opening");
			ret = -1;
		} else {
			mailbox_get_open_status(sbox, items, &f->src_status);
		}
		if (ret == 0 && f->src_status.uidvalidity == 0) {
			/* never skip a folder in silence */
			migrate_sync_set_error(ctx, MIGRATE_ERROR_FAILED,
				t_strdup_printf("Source: %s has no UIDVALIDITY",
						f->src_name));
			ret = -1;
		}
	}
	mailbox_free(&sbox);
	return ret;
}

static void
sync_mailbox_uidvalidity_changed(struct migrate_sync_ctx *ctx,
				struct migrate_sync_folder *f)
{
	struct migrate_state_folder *state = f->state;
	const struct migrate_uid_map *map;
	ARRAY_TYPE(seq_range) orphans;

	e_warning(ctx->event, "Source UIDVALIDITY of %s changed (%u -> %u): "
		  "its messages are matched again by content",
		  migrate_text_escape(f->src_name), state->src_uidvalidity,
		  f->src_status.uidvalidity);
	/* the copies of the old UIDVALIDITY stay, as the folder's orphans,
	   until a run matches them or proves them gone; the new UIDs are
	   copied anew.  Archived copies stay where they are, foreign from
	   now on. */
	t_array_init(&orphans, 16);
	array_append_array(&orphans, &state->orphans);
	array_foreach(&state->map, map) {
		if (map->dest_loc == 0)
			seq_range_array_add(&orphans, map->dest_uid);
	}
	migrate_state_folder_clear_map(ctx->state, state);
	migrate_state_orphans_set(ctx->state, state, &orphans);
}

/* Record the source status taken before reading the folder: what changed
   since then is seen by the next run. */
void
migrate_sync_mailbox_set_complete(struct migrate_sync_ctx *ctx,
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

	migrate_sync_set_error(ctx, MIGRATE_ERROR_TEMP, t_strdup_printf(
		"%s: %u of %u messages were neither copied, left out nor "
		"gone from the source (UIDs %s, %u left out, %u gone): the "
		"next run copies them", f->dest_name,
		count - f->rejected - f->skipped, wanted,
		migrate_sync_uids_str(&missing), f->rejected, f->skipped));
	return -1;
}

/* After the copy: map what reached the destination since the last scan,
   and record the folder as complete unless deletions are pending. */
int
migrate_sync_mailbox_finish(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		   struct mailbox *dbox)
{
	struct migrate_state_folder *state = f->state;
	struct mailbox_status dstatus;

	if (mailbox_get_status(dbox, STATUS_UIDNEXT, &dstatus) < 0) {
		migrate_sync_set_dest_error(ctx, dbox, "Opening");
		return -1;
	}
	if (dstatus.uidnext > state->dest_uidnext &&
	    sync_scan_new_dest(ctx, f, dbox) < 0)
		return -1;
	return migrate_sync_mailbox_finish_mapped(ctx, f);
}

int migrate_sync_mailbox_finish_mapped(struct migrate_sync_ctx *ctx,
				       struct migrate_sync_folder *f)
{
	struct migrate_state_folder *state = f->state;

	if (sync_folder_check_copied(ctx, f) < 0) {
		migrate_state_folder_update(ctx->state, state);
		return -1;
	}
	/* with deletions pending, the folder is complete only once they are
	   made */
	if (array_count(&f->delete_src_uids) == 0 &&
	    array_count(&f->delete_orphan_dest_uids) == 0)
		migrate_sync_mailbox_set_complete(ctx, f);
	else
		migrate_state_folder_update(ctx->state, state);
	migrate_sync_kill_point(ctx, "finish");
	return 0;
}

int migrate_sync_mailbox_copy(struct migrate_sync_ctx *ctx,
			      struct migrate_sync_folder *f,
			      struct mailbox *sbox, struct mailbox *dbox,
			      const ARRAY_TYPE(seq_range) *copy_uids,
			      bool may_delegate, bool *delegated_r)
{
	*delegated_r = FALSE;
	p_array_init(&f->copying_uids, ctx->pool, array_count(copy_uids));
	array_append_array(&f->copying_uids, copy_uids);
	if (may_delegate &&
	    migrate_sync_worker_delegate(ctx, f, dbox, copy_uids,
					 seq_range_count(copy_uids), 0)) {
		/* the worker's answer finishes the folder */
		*delegated_r = TRUE;
		return 0;
	}
	return migrate_sync_import(ctx, f, sbox, dbox, copy_uids);
}

static int
sync_folder_pass(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		 struct mailbox *sbox, struct mailbox *dbox,
		 ARRAY_TYPE(seq_range) *copy_uids)
{
	switch (ctx->mode) {
	case MIGRATE_SYNC_MODE_MIRROR:
		return sync_folder_mirror_pass(ctx, f, sbox, dbox, copy_uids);
	case MIGRATE_SYNC_MODE_FINAL:
		return sync_folder_final_pass(ctx, f, sbox, copy_uids);
	}
	i_unreached();
}

struct mailbox *
migrate_sync_source_open(struct migrate_sync_ctx *ctx, const char *src_name)
{
	struct mailbox *sbox;

	sbox = mailbox_alloc(ctx->src_ns->list, src_name,
			     MAILBOX_FLAG_READONLY);
	if (mailbox_sync(sbox, 0) < 0) {
		migrate_sync_set_source_error(ctx, sbox, "Opening");
		mailbox_free(&sbox);
		return NULL;
	}
	return sbox;
}

/* What a real run would copy without its source UID: a folder here
   already, with mail (or after a change of the source's UIDVALIDITY),
   takes new UIDs for everything; otherwise what is below its UIDNEXT.
   copy_uids is NULL for a folder the run has not seen yet (all of it). */
static void
sync_dry_run_uid_changed(struct migrate_sync_ctx *ctx,
			 struct migrate_sync_folder *f,
			 const ARRAY_TYPE(seq_range) *copy_uids)
{
	struct mailbox_status status;
	struct mailbox *dbox;
	enum mailbox_existence existence;
	const struct seq_range *range;
	unsigned int lost = 0;

	dbox = migrate_sync_dest_alloc(ctx, f->dest_name);
	if (mailbox_exists(dbox, FALSE, &existence) < 0 ||
	    existence != MAILBOX_EXISTENCE_SELECT ||
	    mailbox_get_status(dbox, STATUS_UIDVALIDITY | STATUS_UIDNEXT |
			       STATUS_MESSAGES, &status) < 0) {
		/* created by the run, with the source's UIDVALIDITY */
		mailbox_free(&dbox);
		return;
	}
	mailbox_free(&dbox);
	if (copy_uids == NULL) {
		if (status.messages > 0)
			lost = f->src_status.messages;
	} else if (status.uidvalidity != f->src_status.uidvalidity) {
		lost = seq_range_count(copy_uids);
	} else {
		array_foreach(copy_uids, range) {
			if (range->seq1 < status.uidnext) {
				lost += I_MIN(range->seq2, status.uidnext - 1) -
					range->seq1 + 1;
			}
		}
	}
	migrate_sync_count_uid_changed(ctx, f, lost);
}

/* A dry run of one folder: what a real run would create, copy, update
   and delete, changing nothing here. */
static int
sync_folder_dry_run(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f)
{
	struct migrate_state_folder *state = f->state;
	struct mailbox *sbox, *dbox;
	ARRAY_TYPE(seq_range) copy_uids;
	int ret;

	if (state == NULL) {
		/* new: all of it would be copied */
		ctx->stats->folders_created++;
		ctx->stats->messages_copied += f->src_status.messages;
		sync_dry_run_uid_changed(ctx, f, NULL);
		return sync_folder_count_bytes(ctx, f);
	}
	state->src_uidvalidity = f->src_status.uidvalidity;
	dbox = migrate_sync_dest_alloc(ctx, f->dest_name);
	if (mailbox_open(dbox) < 0)
		mailbox_free(&dbox);
	if ((sbox = migrate_sync_source_open(ctx, f->src_name)) == NULL)
		ret = -1;
	else {
		t_array_init(&copy_uids, 64);
		ret = sync_folder_pass(ctx, f, sbox, dbox, &copy_uids);
		if (ret == 0 && array_count(&copy_uids) > 0)
			ret = migrate_sync_import_dry_run(ctx, sbox, &copy_uids);
		if (ret == 0)
			sync_dry_run_uid_changed(ctx, f, &copy_uids);
		mailbox_free(&sbox);
	}
	if (dbox != NULL)
		mailbox_free(&dbox);
	return ret;
}

/* Before the copy: find again what earlier runs copied but did not
   record (a crash, a new UIDVALIDITY), and what Gmail has here already. */
static int
sync_folder_find_copies(struct migrate_sync_ctx *ctx,
			struct migrate_sync_folder *f, struct mailbox *sbox,
			struct mailbox *dbox, ARRAY_TYPE(seq_range) *copy_uids)
{
	int ret = 0;

	if (array_count(copy_uids) > 0 &&
	    array_count(&f->recover_dest_uids) > 0) {
		ret = migrate_sync_import_rematch(ctx, f, sbox, dbox,
			copy_uids, &f->recover_dest_uids,
			"copies of an interrupted batch");
	}
	if (ret < 0)
		return -1;
	/* what is left did not come from us */
	ctx->stats->messages_foreign += seq_range_count(&f->recover_dest_uids);
	array_clear(&f->recover_dest_uids);
	f->state->dest_pending_uidnext = 0;
	if (array_count(copy_uids) > 0 &&
	    array_count(&f->delete_orphan_dest_uids) > 0) {
		ret = migrate_sync_import_rematch(ctx, f, sbox, dbox, copy_uids,
			&f->delete_orphan_dest_uids,
			"messages of the old UIDVALIDITY");
		/* the matched ones are copies of the new UIDVALIDITY now */
		migrate_state_orphans_set(ctx->state, f->state,
					  &f->delete_orphan_dest_uids);
		if (ret < 0)
			return -1;
	}
	if (ctx->gmail && array_count(copy_uids) > 0)
		return migrate_sync_gmail_import(ctx, f, sbox, dbox, copy_uids);
	return 0;
}

/* Sync one folder: flags, then the copy (here or by a worker). */
/* A folder met for the first time whose destination folder is empty:
   every message is copied, so a worker can take it without this process
   opening it first (two round trips to the source saved here; the
   worker tells which UIDs below UIDNEXT the folder does not have). */
static bool
sync_folder_delegate_new(struct migrate_sync_ctx *ctx,
			 struct migrate_sync_folder *f, struct mailbox *dbox)
{
	ARRAY_TYPE(seq_range) copy_uids;
	struct mailbox_status status;

	if (f->src_status.messages == 0 || f->src_status.uidnext <= 1)
		return FALSE;
	mailbox_get_open_status(dbox, STATUS_MESSAGES, &status);
	if (status.messages != 0)
		return FALSE;
	t_array_init(&copy_uids, 1);
	seq_range_array_add_range(&copy_uids, 1, f->src_status.uidnext - 1);
	p_array_init(&f->copying_uids, ctx->pool, 1);
	array_append_array(&f->copying_uids, &copy_uids);
	if (migrate_sync_worker_delegate(ctx, f, dbox, &copy_uids,
					 f->src_status.messages,
					 f->src_status.messages))
		return TRUE;
	array_clear(&f->copying_uids);
	return FALSE;
}

/* What our own connection lists of f: its messages from first_uid on
   (and with changedsince, what changed below it); listed when that
   describes the folder (else the storage lists its flags), ask when
   there is something to ask for.  from_scratch: f is new, or its
   UIDVALIDITY changed; possible: a listing can describe it. */
struct sync_listing_params {
	uint32_t first_uid;
	uint64_t changedsince;
	bool listed, ask;
	/* listed whole, and its STATUS counted no message: nothing to ask */
	bool empty;
};

static void
sync_listing_params(struct migrate_sync_ctx *ctx,
		    const struct migrate_sync_folder *f, bool from_scratch,
		    bool possible, struct sync_listing_params *params_r)
{
	i_zero(params_r);
	params_r->first_uid = from_scratch || f->state->src_uidnext == 0 ?
		1 : f->state->src_uidnext;
	params_r->listed = possible;
	if (params_r->listed && params_r->first_uid > 1)
		params_r->changedsince = migrate_sync_listing_changedsince(f);
	params_r->listed = params_r->listed &&
		(params_r->first_uid == 1 || params_r->changedsince != 0);
	params_r->empty = params_r->listed && params_r->first_uid == 1 &&
		f->src_status.messages == 0;
	params_r->ask = !ctx->dry_run && !params_r->empty &&
		(f->src_status.uidnext > params_r->first_uid ||
		 params_r->changedsince != 0);
}

void migrate_sync_list_next_ahead(struct migrate_sync_ctx *ctx)
{
	struct migrate_sync_folder *const *order, *g;
	struct sync_listing_params params;
	unsigned int i, count, delegated = 0, listed = 0, messages = 0;
	bool uidvalidity_changed;

	if (ctx->role != SYNC_ROLE_OWNER || ctx->next_listing_asked ||
	    ctx->dry_run || !array_is_created(&ctx->order))
		return;
	ctx->next_listing_asked = TRUE;
	/* folder_idx counts the current one: the next is at its index */
	order = array_get(&ctx->order, &count);
	for (i = ctx->folder_idx; i < count; i++) {
		g = order[i];
		if (!g->selected || g->src_status.uidvalidity == 0)
			continue;
		if (g->state != NULL && ctx->opts->maxage_days == 0 &&
		    sync_folder_unchanged(g))
			continue;
		if (g->state == NULL &&
		    migrate_sync_worker_would_take(ctx,
						   g->src_status.messages,
						   delegated)) {
			/* an idle worker lists it: the next one may be
			   ours */
			delegated++;
			continue;
		}
		/* as sync_folder_apply() will see it (what earlier runs
		   left to find again: the storage lists it) */
		uidvalidity_changed = g->state != NULL &&
			g->state->src_uidvalidity != g->src_status.uidvalidity;
		sync_listing_params(ctx, g,
			g->state == NULL || uidvalidity_changed,
			!uidvalidity_changed &&
			migrate_sync_listing_possible(ctx, g) &&
			(g->state == NULL ||
			 array_count(&g->state->orphans) == 0), &params);
		if (params.ask) {
			migrate_source_sizes_ask(ctx->source, g->src_name,
						 params.first_uid,
						 params.changedsince);
		}
		/* a folder new to this run has every message of its listing
		   to copy: its first ones are asked for before its turn, once
		   its listing is in (sync_copy_ask_next()) */
		if (g->state == NULL && params.ask) {
			if (!array_is_created(&ctx->next_new_folders))
				i_array_init(&ctx->next_new_folders, 4);
			array_push_back(&ctx->next_new_folders, &g);
		}
		/* a few folders ahead (a listing is held in memory whole):
		   each is in before the folder before it is copied */
		messages += g->src_status.messages;
		if (++listed == MIGRATE_SYNC_LISTINGS_AHEAD ||
		    messages >= MIGRATE_SYNC_LISTINGS_AHEAD_MESSAGES)
			return;
	}
}

static int
sync_folder_apply(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f)
{
	struct migrate_state_folder *state = f->state;
	struct sync_listing_params params;
	struct mailbox *sbox, *dbox;
	ARRAY_TYPE(seq_range) copy_uids;
	bool new_state = state == NULL, uidvalidity_changed = FALSE;
	bool delegated = FALSE;
	int ret;

	if (state == NULL) {
		state = f->state = migrate_state_folder_add(ctx->state,
			f->src_name, f->dest_name);
		state->src_uidvalidity = f->src_status.uidvalidity;
		migrate_state_folder_update(ctx->state, state);
	} else if (state->src_uidvalidity != f->src_status.uidvalidity) {
		sync_mailbox_uidvalidity_changed(ctx, f);
		state->src_uidvalidity = f->src_status.uidvalidity;
		uidvalidity_changed = TRUE;
	}

	if (sync_dest_open(ctx, f, &dbox) < 0)
		return -1;
	/* what earlier runs could not match or prove gone is looked at
	   again */
	array_append_array(&f->delete_orphan_dest_uids, &state->orphans);
	if (sync_scan_new_dest(ctx, f, dbox) < 0) {
		mailbox_free(&dbox);
		return -1;
	}
	if (new_state && sync_folder_delegate_new(ctx, f, dbox)) {
		/* the worker's answer finishes the folder */
		mailbox_free(&dbox);
		return 0;
	}
	/* our own connection lists the folder (unless it did while the
	   folder before was copied), whole or what changed since its last
	   HIGHESTMODSEQ; where it cannot, it brings the sizes of what is new
	   while the storage opens the folder and lists its flags */
	sync_listing_params(ctx, f, new_state || uidvalidity_changed,
			    !uidvalidity_changed &&
			    migrate_sync_listing_possible(ctx, f), &params);
	if (params.ask) {
		migrate_source_sizes_ask(ctx->source, f->src_name,
					 params.first_uid,
					 params.changedsince);
		/* the next folders' right behind it: they are in when this
		   one is copied */
		migrate_sync_list_next_ahead(ctx);
	}
	if (params.listed &&
	    (ret = migrate_sync_listed(ctx, f, dbox, params.empty)) != 0) {
		mailbox_free(&dbox);
		return ret < 0 ? -1 : 0;
	}
	if ((sbox = migrate_sync_source_open(ctx, f->src_name)) == NULL) {
		mailbox_free(&dbox);
		return -1;
	}
	t_array_init(&copy_uids, 64);
	ret = sync_folder_pass(ctx, f, sbox, dbox, &copy_uids);
	if (ret == 0)
		ret = sync_folder_find_copies(ctx, f, sbox, dbox, &copy_uids);
	if (ret == 0 && array_count(&copy_uids) > 0) {
		ret = migrate_sync_mailbox_copy(ctx, f, sbox, dbox, &copy_uids,
						TRUE, &delegated);
	}
	mailbox_free(&sbox);
	if (ret == 0 && !delegated)
		ret = migrate_sync_mailbox_finish(ctx, f, dbox);
	mailbox_free(&dbox);
	return ret;
}

int migrate_sync_mailbox(struct migrate_sync_ctx *ctx,
			 struct migrate_sync_folder *f)
{
	/* --maxage looks at every message in its window again */
	if (f->state != NULL && ctx->opts->maxage_days == 0 &&
	    sync_folder_unchanged(f)) {
		/* nothing changed at the source since the last complete
		   sync: no SELECT, nothing downloaded */
		ctx->stats->folders_unchanged++;
		return 0;
	}
	return ctx->dry_run ? sync_folder_dry_run(ctx, f) :
		sync_folder_apply(ctx, f);
}
