/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "istream.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "migrate-text.h"
#include "migrate-sync-private.h"

/* Gmail: where a message (by X-GM-MSGID) is at the source */
struct sync_gmail_copy {
	struct migrate_sync_folder *f;
	uint32_t uid;
	struct sync_gmail_copy *next;
};

/* <Gmail> */

static const char *const sync_gmail_prefixes[] = {
	"[Gmail]", "[Google Mail]", NULL
};

/* "[Gmail]/Sent Mail" -> "Sent Mail" */
const char *migrate_sync_gmail_strip_prefix(const char *name, char sep)
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

bool migrate_sync_gmail_detect(struct migrate_sync_ctx *ctx)
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
		if (strcmp(migrate_sync_gmail_strip_prefix(f->src_name, ctx->src_sep),
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
void
migrate_sync_gmail_select(struct migrate_sync_ctx *ctx,
		  ARRAY_TYPE(const_string) *special_uses)
{
	struct migrate_sync_folder *f;
	const char *su, *tail;
	unsigned int i, n = array_count(&ctx->folders);

	for (i = 0; i < n; i++) {
		f = array_idx_modifiable(&ctx->folders, i);
		su = array_idx_elem(special_uses, i);
		tail = migrate_sync_gmail_strip_prefix(f->src_name, ctx->src_sep);
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
				       migrate_text_escape(f->src_name));
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
			migrate_sync_set_source_error(ctx, box, "Opening");
			mailbox_free(&box);
			ret = -1;
			break;
		}
		t = mailbox_transaction_begin(box, 0, __func__);
		search_ctx = migrate_search_all(t, MAIL_FETCH_GUID);
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
			migrate_sync_set_source_error(ctx, box, "Listing the GUIDs of");
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
	struct migrate_sync_batch batch;
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
	search_ctx = migrate_search_uids(st, &uids, MAIL_FETCH_FLAGS |
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
			lbox = migrate_sync_dest_alloc(ctx, cur_f->dest_name);
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
			struct migrate_sync_msg msg;

			migrate_sync_msg_from_mail(&msg, smail);
			ret = migrate_sync_import_save(ctx, f, dbox, &batch,
						       &msg, input, received);
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
		migrate_sync_set_source_error(ctx, sbox, "Fetching flags of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&st);
	if (migrate_sync_import_commit(ctx, f, dbox, &batch) < 0)
		ret = -1;
	array_free(&batch.src_uids);
	if (done > 0) {
		e_info(ctx->event, "%s: %u messages copied from their other "
		       "labels here, not downloaded again",
		       migrate_text_escape(f->dest_name), done);
	}
	return ret;
}

/* Before copying f's copy_uids from a Gmail source: leave out of All Mail
   what has a label (it is copied with the label), and copy locally what
   another label's folder already has here. */
int
migrate_sync_gmail_import(struct migrate_sync_ctx *ctx,
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
	search_ctx = migrate_search_uids(st, copy_uids, MAIL_FETCH_GUID, NULL);
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
		migrate_sync_set_source_error(ctx, sbox, "Fetching the GUIDs of");
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

void migrate_sync_gmail_deinit(struct migrate_sync_ctx *ctx)
{
	if (hash_table_is_created(ctx->gmail_guids))
		hash_table_destroy(&ctx->gmail_guids);
}
