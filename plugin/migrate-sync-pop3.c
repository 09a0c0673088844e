/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* POP3 continuity: the source's POP3 UIDLs kept with our copies of its
   INBOX (migrate_source_pop3), so that the POP3 server here answers UIDL
   as the old one did and a client that leaves mail on the server
   downloads nothing twice.  A POP3 message and a copy are one message
   when their header hashes match, and only when exactly one of each has
   that hash: anything else is counted and reported, never guessed.  Only
   copies without a UIDL are looked at, so a re-run reads the headers of
   new POP3 messages only.

   The POP3 order cannot be given to a message once it is saved, and the
   POP3 server here lists INBOX in UID order: a run that gives UIDLs also
   compares the source's POP3 order of all copies that carry one with
   their UID order, and counts those out of order (all of them but the
   longest run kept in order). */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "sort.h"
#include "bsearch-insert-pos.h"
#include "istream.h"
#include "mail-storage.h"
#include "migrate-text.h"
#include "migrate-sync-private.h"

#include <sys/stat.h>

struct sync_pop3_ctx {
	pool_t pool;
	/* the UIDLs our copies carry already -> the copy's UID */
	HASH_TABLE_TYPE(migrate_sync_keys) known;
	/* every UIDL of the source's INBOX, in POP3 order */
	ARRAY_TYPE(const_string) order;
	/* header hash -> the UID of our copy without a UIDL */
	HASH_TABLE_TYPE(migrate_sync_keys) copies;
	/* header hash -> POP3 messages (count) */
	HASH_TABLE_TYPE(migrate_sync_keys) pop3_count;
};

static bool sync_pop3_want(const char *uidl, void *context)
{
	struct sync_pop3_ctx *pctx = context;

	uidl = p_strdup(pctx->pool, uidl);
	array_push_back(&pctx->order, &uidl);
	return hash_table_lookup(pctx->known, uidl) == NULL;
}

unsigned int migrate_sync_pop3_out_of_order(const ARRAY_TYPE(uint32_t) *uids)
{
	ARRAY_TYPE(uint32_t) tails;
	unsigned int idx;
	uint32_t uid;

	/* tails[i]: the least last UID of a run in order of i+1 messages
	   (patience sorting) */
	t_array_init(&tails, array_count(uids) + 1);
	array_foreach_elem(uids, uid) {
		if (array_bsearch_insert_pos(&tails, &uid, uint32_cmp, &idx)) {
			/* the same UID twice makes no run longer */
			continue;
		}
		if (idx == array_count(&tails))
			array_push_back(&tails, &uid);
		else
			array_idx_set(&tails, idx, &uid);
	}
	return array_count(uids) - array_count(&tails);
}

/* The copies with a source UIDL, in the source's POP3 order: how many our
   POP3 server lists out of that order. */
static unsigned int sync_pop3_order_differs(struct sync_pop3_ctx *pctx)
{
	ARRAY_TYPE(uint32_t) uids;
	const char *uidl;
	void *value;
	uint32_t uid;

	t_array_init(&uids, array_count(&pctx->order) + 1);
	array_foreach_elem(&pctx->order, uidl) {
		value = hash_table_lookup(pctx->known, uidl);
		if (value != NULL) {
			uid = POINTER_CAST_TO(value, uint32_t);
			array_push_back(&uids, &uid);
		}
	}
	return migrate_sync_pop3_out_of_order(&uids);
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
			migrate_sync_key_add(pctx->pool, pctx->known, uidl,
					     TRUE, POINTER_CAST(mail->uid));
		else if (migrate_mail_header_hash(mail, &hash) < 0)
			ret = -1;
		else {
			migrate_sync_key_add(pctx->pool, pctx->copies, hash,
					     TRUE, POINTER_CAST(mail->uid));
		}
	} T_END;
	if (mailbox_search_deinit(&search_ctx) < 0)
		ret = -1;
	(void)mailbox_transaction_commit(&t);
	if (ret < 0)
		migrate_sync_set_dest_error(ctx, dbox, "Reading headers of");
	return ret;
}

/* Give each copy the UIDL of the one POP3 message whose header it shares;
   *unmatched_r: the POP3 messages left without a copy. */
static int
sync_pop3_assign(struct migrate_sync_ctx *ctx, struct mailbox *dbox,
		 struct sync_pop3_ctx *pctx,
		 const ARRAY_TYPE(migrate_source_pop3_message) *msgs,
		 unsigned int *unmatched_r)
{
	const struct migrate_source_pop3_message *msg;
	struct mailbox_transaction_context *t;
	struct mail *mail;
	unsigned int unmatched = 0;
	void *value;

	array_foreach(msgs, msg) {
		migrate_sync_key_add(pctx->pool, pctx->pop3_count,
				     msg->hdr_hash, TRUE, POINTER_CAST(1));
	}
	t = mailbox_transaction_begin(dbox, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	array_foreach(msgs, msg) {
		value = hash_table_lookup(pctx->copies, msg->hdr_hash);
		if (value == NULL || value == MIGRATE_SYNC_KEY_AMBIGUOUS ||
		    hash_table_lookup(pctx->pop3_count, msg->hdr_hash) ==
		    MIGRATE_SYNC_KEY_AMBIGUOUS ||
		    !mail_set_uid(mail, POINTER_CAST_TO(value, uint32_t))) {
			unmatched++;
			continue;
		}
		mail_update_pop3_uidl(mail, msg->uidl);
		migrate_sync_key_add(pctx->pool, pctx->known, msg->uidl, TRUE,
				     POINTER_CAST(mail->uid));
		ctx->stats->messages_pop3_uidl++;
	}
	mail_free(&mail);
	if (mailbox_transaction_commit(&t) < 0) {
		migrate_sync_set_dest_error(ctx, dbox, "Saving POP3 UIDLs in");
		ctx->stats->messages_pop3_uidl = 0;
		return -1;
	}
	*unmatched_r = unmatched;
	return 0;
}

/* What the matching left: POP3 messages without a copy, copies out of
   the source's POP3 order. */
static void
sync_pop3_report(struct migrate_sync_ctx *ctx, struct sync_pop3_ctx *pctx,
		 unsigned int unmatched)
{
	unsigned int differs;

	ctx->stats->messages_pop3_unmatched += unmatched;
	if (unmatched > 0) {
		e_warning(event_create_passthrough(ctx->event)->
			  set_name("migrate_pop3_unmatched")->
			  add_int("messages", unmatched)->event(),
			  "%u POP3 messages of INBOX match no copy or more "
			  "than one (by header): their copies get UIDLs of "
			  "this server", unmatched);
	}
	differs = sync_pop3_order_differs(pctx);
	ctx->stats->messages_pop3_order_differs = differs;
	if (differs > 0) {
		e_warning(event_create_passthrough(ctx->event)->
			  set_name("migrate_pop3_order_differs")->
			  add_int("messages", differs)->event(),
			  "%u copies of INBOX are listed by POP3 here out of "
			  "the source's POP3 order (its order cannot be kept: "
			  "ours is the UID order)", differs);
	}
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
	p_array_init(&pctx.order, pctx.pool, 64);
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
	else if (sync_pop3_assign(ctx, dbox, &pctx, &msgs, &unmatched) == 0)
		sync_pop3_report(ctx, &pctx, unmatched);
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

/* <a source with POP3 only> */

/* A source without IMAP (migrate_source_protocol = pop3): its INBOX is
   copied from the POP3 server, each copy carrying its UIDL and POP3 order,
   so that the UIDLs are the state: a message whose UIDL no copy has is
   copied, a copy whose UIDL the source no longer lists, twice (a second
   session looks again), is deleted by a mirror run.  POP3 has no flags
   and no INTERNALDATE (the received date is parsed from the message). */
struct sync_pop3_only {
	struct migrate_sync_ctx *ctx;
	pool_t pool;
	struct mailbox *dbox;
	struct mailbox_transaction_context *dt;
	unsigned int batch_count;
	/* UIDL -> the UID of our copy */
	HASH_TABLE_TYPE(migrate_sync_keys) copies;
	/* the UIDLs the source listed */
	HASH_TABLE_TYPE(migrate_sync_keys) listed;
};

static void pop3_only_list(struct sync_pop3_only *p, const char *uidl)
{
	migrate_sync_key_add(p->pool, p->listed, uidl, FALSE, POINTER_CAST(1));
}

static bool pop3_only_want(const char *uidl, void *context)
{
	struct sync_pop3_only *p = context;

	pop3_only_list(p, uidl);
	return hash_table_lookup(p->copies, uidl) == NULL;
}

static bool pop3_only_list_only(const char *uidl, void *context)
{
	pop3_only_list(context, uidl);
	return FALSE;
}

static int pop3_only_commit(struct sync_pop3_only *p)
{
	if (p->dt == NULL)
		return 0;
	p->batch_count = 0;
	if (mailbox_transaction_commit(&p->dt) < 0) {
		migrate_sync_set_dest_error(p->ctx, p->dbox, "Saving to");
		return -1;
	}
	return 0;
}

static int
pop3_only_copy(struct mail *mail, const char *uidl, uint32_t pop3_seq,
	       void *context)
{
	struct sync_pop3_only *p = context;
	struct migrate_sync_ctx *ctx = p->ctx;
	struct mail_save_context *save;
	struct istream *input;
	time_t received;

	if (ctx->dry_run) {
		ctx->stats->messages_copied++;
		return 0;
	}
	if (mail_get_stream(mail, NULL, NULL, &input) < 0) {
		migrate_sync_set_source_error(ctx, mail->box, t_strdup_printf(
			"Reading POP3 message %u of", pop3_seq));
		return -1;
	}
	if (p->dt == NULL) {
		p->dt = mailbox_transaction_begin(p->dbox,
			MAILBOX_TRANSACTION_FLAG_EXTERNAL, __func__);
	}
	save = mailbox_save_alloc(p->dt);
	if (mail_get_received_date(mail, &received) == 0 &&
	    received != (time_t)-1)
		mailbox_save_set_received_date(save, received, 0);
	mailbox_save_set_pop3_uidl(save, uidl);
	mailbox_save_set_pop3_order(save, pop3_seq);
	switch (migrate_dest_save_stream(&save, input)) {
	case MIGRATE_DEST_SAVE_OK:
		break;
	case MIGRATE_DEST_SAVE_FAILED:
		migrate_sync_set_dest_error(ctx, p->dbox, "Saving to");
		return -1;
	case MIGRATE_DEST_SAVE_INPUT_FAILED:
		migrate_sync_set_source_error(ctx, mail->box, t_strdup_printf(
			"Reading POP3 message %u of", pop3_seq));
		return -1;
	}
	ctx->stats->messages_copied++;
	ctx->stats->messages_pop3_uidl++;
	ctx->stats->bytes_copied += input->v_offset;
	if (++p->batch_count >= ctx->set->batch_messages)
		return pop3_only_commit(p);
	return 0;
}

/* Our copies in INBOX: those with a UIDL. */
static int pop3_only_read_copies(struct sync_pop3_only *p)
{
	struct mailbox_transaction_context *t;
	struct mail_search_context *search_ctx;
	struct mail *mail;
	const char *uidl;
	int ret = 0;

	t = mailbox_transaction_begin(p->dbox, 0, __func__);
	search_ctx = migrate_search_all(t, MAIL_FETCH_UIDL_BACKEND);
	while (ret == 0 && mailbox_search_next(search_ctx, &mail)) {
		if (mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND, &uidl) < 0)
			ret = -1;
		else if (uidl[0] == '\0')
			p->ctx->stats->messages_foreign++;
		else {
			migrate_sync_key_add(p->pool, p->copies, uidl, FALSE,
					     POINTER_CAST(mail->uid));
		}
	}
	if (mailbox_search_deinit(&search_ctx) < 0)
		ret = -1;
	(void)mailbox_transaction_commit(&t);
	if (ret < 0)
		migrate_sync_set_dest_error(p->ctx, p->dbox, "Reading");
	return ret;
}

/* The copies whose UIDL the source did not list, into uids. */
static void
pop3_only_gone(struct sync_pop3_only *p, ARRAY_TYPE(seq_range) *uids)
{
	struct hash_iterate_context *iter;
	const char *uidl;
	void *value;

	iter = hash_table_iterate_init(p->copies);
	while (hash_table_iterate(iter, p->copies, &uidl, &value)) {
		if (hash_table_lookup(p->listed, uidl) == NULL) {
			seq_range_array_add(uids,
					    POINTER_CAST_TO(value, uint32_t));
		}
	}
	hash_table_iterate_deinit(&iter);
}

/* The mirror's deletions: within migrate_max_delete_percent, and only of
   what a second POP3 session does not list either. */
static void pop3_only_delete(struct sync_pop3_only *p)
{
	struct migrate_sync_ctx *ctx = p->ctx;
	ARRAY_TYPE(seq_range) gone;
	enum migrate_error code;
	unsigned int planned, copies;
	const char *error;

	t_array_init(&gone, 8);
	pop3_only_gone(p, &gone);
	if ((planned = seq_range_count(&gone)) == 0)
		return;
	copies = hash_table_count(p->copies);
	if (!ctx->opts->force &&
	    (unsigned long long)planned * 100 >
	    (unsigned long long)copies * ctx->set->max_delete_percent) {
		ctx->stats->deletes_withheld = planned;
		migrate_sync_set_error(ctx, MIGRATE_ERROR_DELETE_LIMIT,
			t_strdup_printf("Refusing to delete %u of %u copied "
				"messages (more than %s=%u%%): check the "
				"source, then re-run with --force", planned,
				copies, MIGRATE_SETTING_MAX_DELETE_PERCENT,
				ctx->set->max_delete_percent));
		return;
	}
	hash_table_clear(p->listed, FALSE);
	if (migrate_source_pop3_reconnect(ctx->source, &error) < 0 ||
	    migrate_source_pop3_read(ctx->source, pop3_only_list_only,
				     NULL, p, &code, &error) < 0) {
		ctx->stats->deletes_withheld = planned;
		e_warning(ctx->event, "INBOX: Not deleting %u messages: the "
			  "source could not confirm that they are gone: %s",
			  planned, migrate_text_escape(error));
		return;
	}
	array_clear(&gone);
	pop3_only_gone(p, &gone);
	ctx->stats->deletes_withheld = planned - seq_range_count(&gone);
	if (ctx->dry_run)
		ctx->stats->messages_deleted += seq_range_count(&gone);
	else if (array_count(&gone) > 0)
		(void)migrate_sync_expunge(ctx, p->dbox, &gone);
}

static int pop3_only_open_dest(struct sync_pop3_only *p)
{
	enum mail_error error;

	p->dbox = migrate_sync_dest_alloc(p->ctx, "INBOX");
	if (mailbox_create(p->dbox, NULL, FALSE) < 0) {
		(void)mailbox_get_last_internal_error(p->dbox, &error);
		if (error != MAIL_ERROR_EXISTS) {
			migrate_sync_set_dest_error(p->ctx, p->dbox,
						    "Creating");
			return -1;
		}
	}
	if (mailbox_sync(p->dbox, 0) < 0) {
		migrate_sync_set_dest_error(p->ctx, p->dbox, "Opening");
		return -1;
	}
	return 0;
}

/* Why protocol cannot read the account whose state this is: over IMAP
   one migrated over POP3 only, over POP3 one migrated over IMAP (each
   would copy its mail again); NULL when it can. */
static const char *
sync_protocol_conflict(const struct migrate_settings *set,
		       struct migrate_state *state,
		       enum migrate_source_protocol protocol)
{
	const char *setting = t_strdup_printf("%s = %s",
		MIGRATE_SETTING_SOURCE_PROTOCOL,
		migrate_source_protocol_to_str(set->source_protocol));

	if (protocol != MIGRATE_SOURCE_PROTOCOL_POP3 &&
	    migrate_state_is_pop3_only(state)) {
		/* its copies are not in the state: IMAP would copy them
		   again */
		return t_strdup_printf("%s, but this account was migrated "
			"over POP3 only before (%s): an IMAP run would copy "
			"its mail again", setting, set->state_dir);
	}
	if (protocol == MIGRATE_SOURCE_PROTOCOL_POP3 &&
	    array_count(migrate_state_get_folders(state)) > 0) {
		/* its copies have no UIDLs: POP3 would copy them again */
		return t_strdup_printf("%s, but this account was migrated "
			"over IMAP before (%s): its copies would be made "
			"again", setting, set->state_dir);
	}
	return NULL;
}

int migrate_sync_protocol_check(struct migrate_sync_ctx *ctx)
{
	const char *error;

	error = sync_protocol_conflict(ctx->set, ctx->state,
		migrate_source_is_pop3_only(ctx->source) ?
		MIGRATE_SOURCE_PROTOCOL_POP3 : MIGRATE_SOURCE_PROTOCOL_IMAP);
	if (error == NULL)
		return 0;
	migrate_sync_set_error(ctx, MIGRATE_ERROR_CONFIG, error);
	return -1;
}

int migrate_sync_choose_protocol(const struct migrate_settings *set,
				 enum migrate_source_protocol *protocol_r,
				 const char **why_r, const char **error_r)
{
	struct migrate_state *state;
	struct stat st;
	const char *error;
	int ret = 0;

	*protocol_r = set->source_protocol;
	*why_r = NULL;
	/* an account never migrated has nothing to decide by: nothing is
	   made for it (its home included) before the source is reached */
	if (stat(set->state_dir, &st) < 0 ||
	    migrate_state_open_folders(set->state_dir, &state, &error) < 0)
		return 0;
	if (set->source_protocol != MIGRATE_SOURCE_PROTOCOL_AUTO) {
		*error_r = sync_protocol_conflict(set, state,
						  set->source_protocol);
		ret = *error_r == NULL ? 0 : -1;
	} else if (migrate_state_is_pop3_only(state)) {
		*protocol_r = MIGRATE_SOURCE_PROTOCOL_POP3;
		*why_r = t_strdup_printf("%s = auto: migrated over POP3 only "
			"before", MIGRATE_SETTING_SOURCE_PROTOCOL);
	} else if (array_count(migrate_state_get_folders(state)) > 0) {
		*protocol_r = MIGRATE_SOURCE_PROTOCOL_IMAP;
		*why_r = t_strdup_printf("%s = auto: migrated over IMAP "
			"before", MIGRATE_SETTING_SOURCE_PROTOCOL);
	}
	migrate_state_close(&state);
	return ret;
}

void migrate_sync_pop3_only(struct migrate_sync_ctx *ctx)
{
	struct sync_pop3_only p;
	enum migrate_error code;
	const char *error;

	if (migrate_sync_protocol_check(ctx) < 0)
		return;
	if (!ctx->dry_run &&
	    migrate_state_set_pop3_only(ctx->state, &error) < 0) {
		/* before the first copy: no later IMAP run may copy it
		   again */
		migrate_sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
		return;
	}
	i_zero(&p);
	p.ctx = ctx;
	p.pool = pool_alloconly_create("migrate pop3 only", 4096);
	hash_table_create(&p.copies, p.pool, 0, str_hash, strcmp);
	hash_table_create(&p.listed, p.pool, 0, str_hash, strcmp);
	ctx->stats->folders = 1;
	if (pop3_only_open_dest(&p) == 0 && pop3_only_read_copies(&p) == 0) {
		if (migrate_source_pop3_read(ctx->source, pop3_only_want,
					     pop3_only_copy, &p, &code,
					     &error) < 0 &&
		    code != MIGRATE_ERROR_NONE)
			migrate_sync_set_error(ctx, code, error);
		/* keep what was saved whole, even after a failure */
		(void)pop3_only_commit(&p);
		if (ctx->failure.code == MIGRATE_ERROR_NONE &&
		    ctx->mode == MIGRATE_SYNC_MODE_MIRROR) T_BEGIN {
			pop3_only_delete(&p);
		} T_END;
	}
	if (p.dt != NULL)
		mailbox_transaction_rollback(&p.dt);
	if (p.dbox != NULL)
		mailbox_free(&p.dbox);
	hash_table_destroy(&p.copies);
	hash_table_destroy(&p.listed);
	pool_unref(&p.pool);
}
