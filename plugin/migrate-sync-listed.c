/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* A folder synced from our own connection's listing of it (sizes and
   flags; with CONDSTORE and ESEARCH only what changed since the last
   complete sync) instead of the source storage's, whose SELECT fetches
   every message's flags. */

#include "lib.h"
#include "array.h"
#include "mail-storage.h"
#include "migrate-text.h"
#include "migrate-sync-private.h"

/* Whether f can be synced from our own connection's listing instead of
   the storage's (whose SELECT lists every message's flags): a mirror with
   nothing to find again from earlier runs, of a new folder or one synced
   from scratch (the whole listing), or of a folder synced completely
   before on a source with HIGHESTMODSEQ (what changed since then). */
bool migrate_sync_listing_possible(struct migrate_sync_ctx *ctx,
				   const struct migrate_sync_folder *f)
{
	return ctx->mode == MIGRATE_SYNC_MODE_MIRROR && !ctx->dry_run &&
		!ctx->gmail && ctx->opts->maxage_days == 0 &&
		array_count(&f->recover_dest_uids) == 0 &&
		array_count(&f->delete_orphan_dest_uids) == 0;
}

/* The HIGHESTMODSEQ that f's changes are listed from (0: f is listed
   whole). */
uint64_t migrate_sync_listing_changedsince(const struct migrate_sync_folder *f)
{
	const struct migrate_state_folder *state = f->state;

	/* a HIGHESTMODSEQ that did not grow (a server restored from a
	   backup, say) proves nothing about what changed */
	return state->src_uidnext > 1 && state->src_highestmodseq != 0 &&
		f->src_status.highest_modseq > state->src_highestmodseq ?
		state->src_highestmodseq : 0;
}

/* The copies of f's messages below first_uid: those the source no
   longer has are to be deleted, those deleted here behind our back (or
   never copied) are to be copied.  The map and the UIDs the source still
   has are both in UID order: each is walked once, so that a changed
   folder of 80,000 messages is not looked up 80,000 times.  A run of
   copies (consecutive source and destination UIDs, in the folder itself)
   is looked up at the destination as one range: whole when the range
   holds as many messages (UIDs are unique); else each copy of it is. */
static void
sync_changes_presence(struct migrate_sync_ctx *ctx,
		      struct migrate_sync_folder *f, struct mailbox *dbox,
		      const struct migrate_source_listing *listing,
		      ARRAY_TYPE(seq_range) *copy_uids)
{
	struct migrate_state_folder *state = f->state;
	const struct migrate_uid_map *maps;
	const struct seq_range *present, *range;
	ARRAY_TYPE(uint32_t) lost;
	unsigned int i, j, k, start, count, present_count;
	uint32_t uid, seq1, seq2;
	const uint32_t *lost_uid;

	t_array_init(&lost, 8);
	maps = array_get(&state->map, &count);
	present = array_get(&listing->present, &present_count);
	i = j = 0;
	while (i < count && maps[i].src_uid < listing->first_uid) {
		while (j < present_count && present[j].seq2 < maps[i].src_uid)
			j++;
		if (j == present_count || present[j].seq1 > maps[i].src_uid) {
			seq_range_array_add(&f->delete_src_uids,
					    maps[i].src_uid);
			i++;
			continue;
		}
		if (maps[i].dest_loc != 0) {
			i++;
			continue;
		}
		start = i;
		for (i++; i < count && maps[i].src_uid < listing->first_uid &&
			  maps[i].src_uid <= present[j].seq2 &&
			  maps[i].src_uid == maps[i-1].src_uid + 1 &&
			  maps[i].dest_uid == maps[i-1].dest_uid + 1 &&
			  maps[i].dest_loc == 0; i++) ;
		mailbox_get_seq_range(dbox, maps[start].dest_uid,
				      maps[i-1].dest_uid, &seq1, &seq2);
		if (seq1 != 0 && seq2 - seq1 == i - 1 - start)
			continue;
		for (k = start; k < i; k++) {
			mailbox_get_seq_range(dbox, maps[k].dest_uid,
					      maps[k].dest_uid, &seq1, &seq2);
			if (seq1 == 0)
				array_push_back(&lost, &maps[k].src_uid);
		}
	}
	/* deleted at the destination behind our back: the mirror copies
	   them again */
	array_foreach(&lost, lost_uid)
		migrate_state_map_remove(ctx->state, state, *lost_uid);
	maps = array_get(&state->map, &count);
	i = 0;
	array_foreach(&listing->present, range) {
		for (uid = range->seq1;; uid++) {
			while (i < count && maps[i].src_uid < uid)
				i++;
			if (i == count || maps[i].src_uid != uid)
				seq_range_array_add(copy_uids, uid);
			if (uid == range->seq2)
				break;
		}
	}
}

/* The flags of the copies the listing has flags for; with the whole
   folder listed, also what is gone.  Returns how many messages' flags
   were looked at, or -1. */
static int
sync_listed_flags(struct migrate_sync_ctx *ctx, struct migrate_sync_folder *f,
		  struct mailbox *dbox,
		  const struct migrate_source_listing *listing)
{
	const struct migrate_source_flags *flags;
	const struct migrate_source_size *size;
	const struct migrate_uid_map *map;
	struct migrate_sync_flags_pass *pass;
	ARRAY_TYPE(seq_range) present;
	unsigned int count = 0;

	pass = migrate_sync_flags_pass_init(ctx, f, dbox);
	array_foreach(&listing->flags, flags) {
		if (listing->changes &&
		    (flags->uid >= listing->first_uid ||
		     !seq_range_exists(&listing->present, flags->uid)))
			continue;
		(void)migrate_sync_flags_pass_msg(pass, flags->uid,
						  flags->flags, flags->keywords);
		count++;
	}
	if (migrate_sync_flags_pass_finish(&pass) < 0)
		return -1;
	if (listing->changes)
		return count;
	/* the whole folder: what we copied and it does not list is gone */
	t_array_init(&present, 64);
	array_foreach(&listing->sizes, size)
		seq_range_array_add(&present, size->uid);
	array_foreach(&f->state->map, map) {
		if (!seq_range_exists(&present, map->src_uid))
			seq_range_array_add(&f->delete_src_uids, map->src_uid);
	}
	return count;
}

/* a re-run's new messages go to a worker from this many on: below, a
   worker would log in and open the folder before it copies */
#define MIGRATE_SYNC_CHANGES_WORKER_MIN 1000

static void
sync_listed_log_changes(struct migrate_sync_ctx *ctx,
			const struct migrate_sync_folder *f, int flags_count,
			const ARRAY_TYPE(seq_range) *copy_uids)
{
	e_debug(event_create_passthrough(ctx->event)->
		set_name("migrate_folder_changes")->
		add_str("mailbox", f->dest_name)->
		add_int("changedsince", f->state->src_highestmodseq)->
		add_int("flags_changed", flags_count)->
		add_int("gone", seq_range_count(&f->delete_src_uids))->
		add_int("to_copy", seq_range_count(copy_uids))->event(),
		"%s: listed the changes since HIGHESTMODSEQ %"PRIu64": %d "
		"messages' flags changed, %u gone, %u to copy",
		migrate_text_escape(f->dest_name), f->state->src_highestmodseq,
		flags_count, seq_range_count(&f->delete_src_uids),
		seq_range_count(copy_uids));
}

/* Sync f from our own connection's listing: the whole folder, or what
   changed since the last complete sync (the changed flags, the UIDs still
   there and what is new).  Returns 1 when the folder is done (or a
   worker has it), 0 when there is no such listing (the storage lists the
   folder), -1 on error.  With empty, a folder listed whole whose STATUS
   counted no message: nothing was asked for, there is nothing to list. */
int migrate_sync_listed(struct migrate_sync_ctx *ctx,
			struct migrate_sync_folder *f, struct mailbox *dbox,
			bool empty)
{
	const struct migrate_source_listing *listing;
	struct migrate_source_listing empty_listing;
	const struct migrate_source_size *size;
	ARRAY_TYPE(seq_range) copy_uids;
	bool delegated = FALSE;
	int ret = 0, flags_count;

	if (empty) {
		i_zero(&empty_listing);
		empty_listing.first_uid = 1;
		t_array_init(&empty_listing.sizes, 1);
		t_array_init(&empty_listing.flags, 1);
		t_array_init(&empty_listing.present, 1);
		listing = &empty_listing;
	} else if (migrate_source_listing(ctx->source, f->src_name,
					  &listing) < 0 ||
		   (listing->first_uid > 1 && !listing->changes))
		return 0;
	f->state->dest_pending_uidnext = 0;
	t_array_init(&copy_uids, 64);
	if ((flags_count = sync_listed_flags(ctx, f, dbox, listing)) < 0)
		return -1;
	if (listing->changes) {
		sync_changes_presence(ctx, f, dbox, listing, &copy_uids);
		/* the UIDs it still has came from a UID SEARCH on our own
		   connection, in an EXAMINE of this run: a second look */
		f->deletes_confirmed = TRUE;
	}
	array_foreach(&listing->sizes, size) {
		if (migrate_state_map_lookup(f->state, size->uid) == NULL)
			seq_range_array_add(&copy_uids, size->uid);
	}
	if (listing->changes)
		sync_listed_log_changes(ctx, f, flags_count, &copy_uids);
	if (array_count(&copy_uids) > 0) {
		/* the storage opens the folder only for what the listing
		   does not have */
		ret = migrate_sync_mailbox_copy(ctx, f, NULL, dbox, &copy_uids,
			!listing->changes || seq_range_count(&copy_uids) >=
			MIGRATE_SYNC_CHANGES_WORKER_MIN, &delegated);
	}
	if (ret == 0 && !delegated)
		ret = migrate_sync_mailbox_finish(ctx, f, dbox);
	return ret < 0 ? -1 : 1;
}
