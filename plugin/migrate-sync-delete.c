/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "mail-storage.h"
#include "migrate-text.h"
#include "migrate-sync-private.h"

/* Expunge the copies of these map entries that were moved elsewhere,
   folder by folder.  A folder that is gone has nothing left to delete. */
int
migrate_sync_expunge_moved(struct migrate_sync_ctx *ctx,
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
		box = migrate_sync_dest_alloc(ctx,
			migrate_state_location_name(ctx->state, loc));
		if (mailbox_exists(box, FALSE, &existence) < 0) {
			migrate_sync_set_dest_error(ctx, box, "Looking up");
			ret = -1;
		} else if (existence == MAILBOX_EXISTENCE_SELECT &&
			   migrate_sync_expunge(ctx, box, &uids) < 0) {
			ret = -1;
		}
		mailbox_free(&box);
		done_loc = loc;
	}
	return ret;
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
int
migrate_sync_expunge(struct migrate_sync_ctx *ctx, struct mailbox *dbox,
		  const ARRAY_TYPE(seq_range) *dest_uids)
{
	struct mailbox_transaction_context *t;
	struct seq_range_iter iter;
	struct mail *mail;
	unsigned int n = 0;
	uint32_t uid;

	if (mailbox_sync(dbox, 0) < 0) {
		migrate_sync_set_dest_error(ctx, dbox, "Opening");
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
		migrate_sync_set_dest_error(ctx, dbox, "Expunging from");
		return -1;
	}
	migrate_sync_kill_point(ctx, "expunge");
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

	dbox = migrate_sync_dest_alloc(ctx, state->dest_name);
	ret = migrate_sync_expunge(ctx, dbox, &dest_uids);
	mailbox_free(&dbox);
	if (migrate_sync_expunge_moved(ctx, &moved) < 0)
		ret = -1;
	if (ret < 0)
		return -1;
	n = 0;
	seq_range_array_iter_init(&iter, &f->delete_src_uids);
	while (seq_range_array_iter_nth(&iter, n++, &src_uid))
		migrate_state_map_remove(ctx->state, state, src_uid);
	if (array_count(&f->delete_orphan_dest_uids) > 0) {
		ARRAY_TYPE(seq_range) left;

		t_array_init(&left, 4);
		array_append_array(&left, &state->orphans);
		seq_range_array_remove_seq_range(&left,
						 &f->delete_orphan_dest_uids);
		migrate_state_orphans_set(ctx->state, state, &left);
	}
	migrate_sync_mailbox_set_complete(ctx, f);
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
	if (migrate_sync_expunge_moved(ctx, &state->map) < 0)
		return -1;
	dbox = migrate_sync_dest_alloc(ctx, state->dest_name);
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
	if (migrate_sync_expunge(ctx, dbox, &dest_uids) < 0)
		ret = -1;
	else if (mailbox_get_status(dbox, STATUS_MESSAGES, &status) == 0 &&
		 status.messages == 0) {
		/* only when nothing foreign is left in it; a folder with
		   children stays as their parent */
		if (mailbox_delete_empty(dbox) == 0) {
			migrate_sync_kill_point(ctx, "delete-folder");
			ctx->stats->folders_deleted++;
			e_debug(ctx->event, "Deleted %s", state->dest_name);
		}
	}
	mailbox_free(&dbox);
	if (ret == 0)
		migrate_state_folder_remove(ctx->state, state);
	return ret;
}

static void
sync_withhold(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
	      ARRAY_TYPE(seq_range) *uids, unsigned int *withheld,
	      const char *why)
{
	unsigned int n = seq_range_count(uids);

	e_warning(event_create_passthrough(ctx->event)->
		  set_name("migrate_deletes_unconfirmed")->
		  add_str("folder", f->src_name)->
		  add_int("messages", n)->event(),
		  "%s: Not deleting %u messages: %s",
		  migrate_text_escape(f->dest_name), n, why);
	array_clear(uids);
	f->deletes_unconfirmed = TRUE;
	*withheld += n;
}

/* The copies of an earlier UIDVALIDITY that no message of the new one
   matched go only when a second session sees the new UIDVALIDITY too: a
   server whose sessions disagree about it proves nothing. */
static void
sync_confirm_orphans(struct migrate_sync_ctx *ctx,
		     struct migrate_sync_folder *f, unsigned int *withheld)
{
	ARRAY_TYPE(seq_range) none, present;
	uint32_t uidvalidity;
	const char *error;

	t_array_init(&none, 1);
	t_array_init(&present, 1);
	if (migrate_source_uids_present(ctx->source, f->src_name, &none,
					&present, &uidvalidity, &error) < 0) {
		sync_withhold(ctx, f, &f->delete_orphan_dest_uids, withheld,
			t_strdup_printf("copies of an earlier UIDVALIDITY, and "
				"the source could not confirm the new one: %s",
				migrate_source_explain(ctx->source, error)));
	} else if (uidvalidity != f->src_status.uidvalidity) {
		sync_withhold(ctx, f, &f->delete_orphan_dest_uids, withheld,
			t_strdup_printf("copies of an earlier UIDVALIDITY, and "
				"a second look sees UIDVALIDITY %u, not %u",
				uidvalidity, f->src_status.uidvalidity));
	}
}

/* Before deleting copies because the pass did not see their source
   messages, look again on a connection of our own: a message the source
   shows there, or a folder its LIST still gives, keeps its copies (a
   server whose sessions disagree, a listing cut short).  Returns how many
   deletions are withheld. */
static void
sync_confirm_messages(struct migrate_sync_ctx *ctx,
		      struct migrate_sync_folder *f,
		      ARRAY_TYPE(seq_range) *present, unsigned int *withheld)
{
	uint32_t uidvalidity;
	const char *error;
	unsigned int n;

	array_clear(present);
	if (migrate_source_uids_present(ctx->source, f->src_name,
					&f->delete_src_uids, present,
					&uidvalidity, &error) < 0) {
		sync_withhold(ctx, f, &f->delete_src_uids, withheld,
			t_strdup_printf("the source could not confirm that "
				"they are gone: %s", migrate_text_escape(
					migrate_source_explain(ctx->source,
							       error))));
		return;
	}
	if (uidvalidity != 0 && uidvalidity != f->src_status.uidvalidity) {
		/* its UIDs mean other messages there */
		sync_withhold(ctx, f, &f->delete_src_uids, withheld,
			t_strdup_printf("a second look sees UIDVALIDITY %u, "
					"not %u", uidvalidity,
					f->src_status.uidvalidity));
		return;
	}
	if (array_count(present) == 0)
		return;
	n = seq_range_count(present);
	e_warning(event_create_passthrough(ctx->event)->
		  set_name("migrate_deletes_unconfirmed")->
		  add_str("folder", f->src_name)->
		  add_int("messages", n)->event(),
		  "%s: Not deleting %u messages: the source still has "
		  "them on a second look (UIDs %s)",
		  migrate_text_escape(f->dest_name), n,
		  migrate_sync_uids_str(present));
	seq_range_array_remove_seq_range(&f->delete_src_uids, present);
	f->deletes_unconfirmed = TRUE;
	*withheld += n;
}

/* The folders the listing did not show go only when the source's LIST
   of each name on our own connection agrees.  Returns how many copies
   are withheld. */
static unsigned int sync_confirm_gone_folders(struct migrate_sync_ctx *ctx)
{
	struct migrate_state_folder *state;
	unsigned int i, withheld = 0;
	const char *error;
	bool exists;

	for (i = 0; i < array_count(&ctx->gone_folders); ) {
		state = array_idx_elem(&ctx->gone_folders, i);
		if (migrate_source_mailbox_exists(ctx->source,
						   state->src_name, &exists,
						   &error) < 0) {
			e_warning(ctx->event, "%s: Not deleting the folder: "
				  "the source could not confirm that it is "
				  "gone: %s",
				  migrate_text_escape(state->dest_name),
				  migrate_text_escape(migrate_source_explain(
					ctx->source, error)));
		} else if (exists) {
			e_warning(event_create_passthrough(ctx->event)->
				  set_name("migrate_deletes_unconfirmed")->
				  add_str("folder", state->src_name)->
				  add_int("messages", array_count(&state->map))->
				  event(),
				  "%s: Not deleting the folder: the source "
				  "still lists %s on a second look",
				  migrate_text_escape(state->dest_name),
				  migrate_text_escape(state->src_name));
		} else {
			i++;
			continue;
		}
		withheld += array_count(&state->map);
		array_delete(&ctx->gone_folders, i, 1);
	}
	return withheld;
}

static unsigned int sync_confirm_deletions(struct migrate_sync_ctx *ctx)
{
	struct migrate_sync_folder *f;
	ARRAY_TYPE(seq_range) present;
	unsigned int withheld = 0;

	i_array_init(&present, 8);
	array_foreach_modifiable(&ctx->folders, f) {
		if (f->state == NULL)
			continue;
		T_BEGIN {
			if (array_count(&f->delete_orphan_dest_uids) > 0)
				sync_confirm_orphans(ctx, f, &withheld);
			if (array_count(&f->delete_src_uids) > 0 &&
			    !f->deletes_confirmed)
				sync_confirm_messages(ctx, f, &present,
						      &withheld);
		} T_END;
	}
	array_free(&present);
	return withheld + sync_confirm_gone_folders(ctx);
}

/* The deletion limit per folder as well: many large folders must not
   hide a small one emptied by mistake.  A folder may always lose up to
   MIGRATE_SYNC_FOLDER_DELETE_MIN messages.  Returns how many deletions
   are withheld. */
static unsigned int sync_check_folder_limits(struct migrate_sync_ctx *ctx)
{
	struct migrate_sync_folder *f;
	unsigned int planned, copies, withheld = 0;

	array_foreach_modifiable(&ctx->folders, f) {
		if (f->state == NULL)
			continue;
		planned = seq_range_count(&f->delete_src_uids) +
			seq_range_count(&f->delete_orphan_dest_uids);
		copies = array_count(&f->state->map) +
			seq_range_count(&f->delete_orphan_dest_uids);
		if (planned <= MIGRATE_SYNC_FOLDER_DELETE_MIN ||
		    (unsigned long long)planned * 100 <=
		    (unsigned long long)copies * ctx->set->max_delete_percent)
			continue;
		migrate_sync_set_error(ctx, MIGRATE_ERROR_DELETE_LIMIT,
			t_strdup_printf("%s: Refusing to delete %u of its %u "
				"copies (more than %s=%u%% of the folder): "
				"check the source, then re-run with --force",
				f->dest_name, planned, copies,
				MIGRATE_SETTING_MAX_DELETE_PERCENT,
				ctx->set->max_delete_percent));
		array_clear(&f->delete_src_uids);
		array_clear(&f->delete_orphan_dest_uids);
		f->deletes_unconfirmed = TRUE;
		withheld += planned;
	}
	return withheld;
}

void migrate_sync_delete(struct migrate_sync_ctx *ctx)
{
	struct migrate_state_folder *const *sfp;
	struct migrate_sync_folder *f;
	unsigned int planned, copied;
	const char *error;

	planned = sync_count_deletions(ctx);
	if (ctx->mode == MIGRATE_SYNC_MODE_FINAL) {
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
		migrate_sync_set_error(ctx, MIGRATE_ERROR_DELETE_LIMIT, t_strdup_printf(
			"Refusing to delete %u of %u copied messages (more "
			"than %s=%u%%): check the source, then re-run with "
			"--force", planned, copied,
			MIGRATE_SETTING_MAX_DELETE_PERCENT,
			ctx->set->max_delete_percent));
		return;
	}
	ctx->stats->deletes_withheld += sync_confirm_deletions(ctx);
	if (!ctx->opts->force)
		ctx->stats->deletes_withheld += sync_check_folder_limits(ctx);
	if (ctx->dry_run) {
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
		migrate_sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
}
