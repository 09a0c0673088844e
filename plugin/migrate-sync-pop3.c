/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* POP3 continuity: the source's POP3 UIDLs kept with our copies of its
   INBOX (migrate_source_pop3), so that the POP3 server here answers UIDL
   as the old one did and a client that leaves mail on the server
   downloads nothing twice.  A POP3 message and a copy are one message
   when their header hashes match, and only when exactly one of each has
   that hash: anything else is counted and reported, never guessed.  Only
   copies without a UIDL are looked at, so a re-run reads the headers of
   new POP3 messages only. */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "mail-storage.h"
#include "migrate-text.h"
#include "migrate-sync-private.h"

/* a hash two messages share, on either side */
#define SYNC_POP3_AMBIGUOUS POINTER_CAST(0)

HASH_TABLE_DEFINE_TYPE(sync_pop3_str, const char *, void *);

struct sync_pop3_ctx {
	pool_t pool;
	/* the UIDLs our copies carry already */
	HASH_TABLE_TYPE(sync_pop3_str) known;
	/* header hash -> the UID of our copy without a UIDL */
	HASH_TABLE_TYPE(sync_pop3_str) copies;
	/* header hash -> POP3 messages (count) */
	HASH_TABLE_TYPE(sync_pop3_str) pop3_count;
};

static bool sync_pop3_want(const char *uidl, void *context)
{
	struct sync_pop3_ctx *pctx = context;

	return hash_table_lookup(pctx->known, uidl) == NULL;
}

static void
sync_pop3_add(struct sync_pop3_ctx *pctx,
	      HASH_TABLE_TYPE(sync_pop3_str) table, const char *key,
	      void *value)
{
	const char *orig_key;
	void *orig_value;

	if (!hash_table_lookup_full(table, key, &orig_key, &orig_value)) {
		orig_key = p_strdup(pctx->pool, key);
		hash_table_insert(table, orig_key, value);
	} else {
		hash_table_update(table, orig_key, SYNC_POP3_AMBIGUOUS);
	}
}

/* Our copies in dbox: the UIDLs they carry, and the header hashes of
   those without one. */
static int
sync_pop3_read_copies(struct migrate_sync_ctx *ctx,
		      const struct migrate_state_folder *state,
		      struct mailbox *dbox, struct sync_pop3_ctx *pctx)
{
	const struct migrate_uid_map *map;
	struct mailbox_transaction_context *t;
	struct mail_search_context *search_ctx;
	ARRAY_TYPE(seq_range) ours;
	struct mail *mail;
	const char *uidl, *hash;
	int ret = 0;

	t_array_init(&ours, 16);
	array_foreach(&state->map, map) {
		if (map->dest_loc == 0)
			seq_range_array_add(&ours, map->dest_uid);
	}
	if (array_count(&ours) == 0)
		return 0;
	t = mailbox_transaction_begin(dbox, 0, __func__);
	search_ctx = migrate_search_uids(t, &ours, MAIL_FETCH_UIDL_BACKEND,
					 NULL);
	while (ret == 0 && mailbox_search_next(search_ctx, &mail)) T_BEGIN {
		if (mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND,
				     &uidl) < 0)
			ret = -1;
		else if (uidl[0] != '\0')
			sync_pop3_add(pctx, pctx->known, uidl, POINTER_CAST(1));
		else if (migrate_mail_header_hash(mail, &hash) < 0)
			ret = -1;
		else {
			sync_pop3_add(pctx, pctx->copies, hash,
				      POINTER_CAST(mail->uid));
		}
	} T_END;
	if (mailbox_search_deinit(&search_ctx) < 0)
		ret = -1;
	(void)mailbox_transaction_commit(&t);
	if (ret < 0)
		migrate_sync_set_dest_error(ctx, dbox, "Reading headers of");
	return ret;
}

/* Give each copy the UIDL of the one POP3 message whose header it shares.
   Returns the POP3 messages left without a copy. */
static unsigned int
sync_pop3_assign(struct migrate_sync_ctx *ctx, struct mailbox *dbox,
		 struct sync_pop3_ctx *pctx,
		 const ARRAY_TYPE(migrate_source_pop3_message) *msgs)
{
	const struct migrate_source_pop3_message *msg;
	struct mailbox_transaction_context *t;
	struct mail *mail;
	unsigned int unmatched = 0;
	void *value;

	array_foreach(msgs, msg) {
		sync_pop3_add(pctx, pctx->pop3_count, msg->hdr_hash,
			      POINTER_CAST(1));
	}
	t = mailbox_transaction_begin(dbox, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	array_foreach(msgs, msg) {
		value = hash_table_lookup(pctx->copies, msg->hdr_hash);
		if (value == NULL || value == SYNC_POP3_AMBIGUOUS ||
		    hash_table_lookup(pctx->pop3_count, msg->hdr_hash) ==
		    SYNC_POP3_AMBIGUOUS ||
		    !mail_set_uid(mail, POINTER_CAST_TO(value, uint32_t))) {
			unmatched++;
			continue;
		}
		mail_update_pop3_uidl(mail, msg->uidl);
		ctx->stats->messages_pop3_uidl++;
	}
	mail_free(&mail);
	if (mailbox_transaction_commit(&t) < 0) {
		migrate_sync_set_dest_error(ctx, dbox, "Saving POP3 UIDLs in");
		ctx->stats->messages_pop3_uidl = 0;
	}
	return unmatched;
}

static void
sync_pop3_folder(struct migrate_sync_ctx *ctx,
		 const struct migrate_state_folder *state)
{
	struct sync_pop3_ctx pctx;
	ARRAY_TYPE(migrate_source_pop3_message) msgs;
	struct mailbox *dbox;
	unsigned int unmatched;
	enum migrate_error code;
	const char *error;

	i_zero(&pctx);
	pctx.pool = pool_alloconly_create("migrate pop3", 4096);
	hash_table_create(&pctx.known, pctx.pool, 0, str_hash, strcmp);
	hash_table_create(&pctx.copies, pctx.pool, 0, str_hash, strcmp);
	hash_table_create(&pctx.pop3_count, pctx.pool, 0, str_hash, strcmp);
	p_array_init(&msgs, pctx.pool, 64);

	dbox = migrate_sync_dest_alloc(ctx, state->dest_name);
	if (mailbox_sync(dbox, 0) < 0)
		migrate_sync_set_dest_error(ctx, dbox, "Opening");
	else if (sync_pop3_read_copies(ctx, state, dbox, &pctx) < 0 ||
		 hash_table_count(pctx.copies) == 0)
		;
	else if (migrate_source_pop3_messages(ctx->source, pctx.pool,
					      sync_pop3_want, &pctx, &msgs,
					      &code, &error) < 0) {
		if (ctx->set->source_pop3 == MIGRATE_POP3_YES)
			migrate_sync_set_error(ctx, code, error);
		else {
			/* auto: a source without POP3 */
			e_info(ctx->event, "Not keeping POP3 UIDLs: the "
			       "source's POP3 server cannot be read: %s",
			       migrate_text_escape(error));
		}
	}
	else {
		unmatched = sync_pop3_assign(ctx, dbox, &pctx, &msgs);
		ctx->stats->messages_pop3_unmatched += unmatched;
		if (unmatched > 0) {
			e_warning(event_create_passthrough(ctx->event)->
				  set_name("migrate_pop3_unmatched")->
				  add_int("messages", unmatched)->event(),
				  "%u POP3 messages of INBOX match no copy "
				  "or more than one (by header): their copies "
				  "get UIDLs of this server", unmatched);
		}
	}
	mailbox_free(&dbox);
	hash_table_destroy(&pctx.known);
	hash_table_destroy(&pctx.copies);
	hash_table_destroy(&pctx.pop3_count);
	pool_unref(&pctx.pool);
}

void migrate_sync_pop3(struct migrate_sync_ctx *ctx)
{
	const struct migrate_state_folder *state;

	if (ctx->dry_run || !migrate_source_has_pop3(ctx->source))
		return;
	state = migrate_state_folder_lookup(ctx->state, "INBOX");
	if (state == NULL)
		return;
	T_BEGIN {
		sync_pop3_folder(ctx, state);
	} T_END;
}
