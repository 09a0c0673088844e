/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "mailbox-list-iter.h"
#include "migrate-text.h"
#include "migrate-names.h"
#include "migrate-sync-private.h"

#include <limits.h>

/* room under PATH_MAX for what a folder's directory holds: "cur/" and a
   Maildir file name */
#define SYNC_DEST_FILE_ROOM (4 + NAME_MAX + 1)

HASH_TABLE_DEFINE_TYPE(migrate_names, const char *, const char *);

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

static const char *
sync_map_name(struct migrate_sync_ctx *ctx, const char *src_name,
	      const char *special_use_flags, bool map_special_use)
{
	struct mail_namespace *ns =
		mail_namespace_find_inbox(ctx->dest_user->namespaces);
	char dest_sep = mail_namespace_get_sep(ns);
	const char *name, *top, *rest, *p;
	enum migrate_special_use use;

	name = migrate_name_convert(src_name, &ctx->name_params);
	if (ctx->gmail)
		name = migrate_sync_gmail_strip_prefix(name, dest_sep);
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

/* The destination's rules for names, once the source's prefix is known.
   An escape character that separates folders here would make hierarchy
   out of escapes: a configuration error. */
static int sync_name_params_init(struct migrate_sync_ctx *ctx)
{
	struct mail_namespace *ns =
		mail_namespace_find_inbox(ctx->dest_user->namespaces);
	struct migrate_name_params *params = &ctx->name_params;
	char list_sep = mailbox_list_get_hierarchy_sep(ns->list);
	string_t *unsafe = str_new(ctx->pool, 4);

	i_zero(params);
	params->src_sep = ctx->src_sep;
	params->src_prefix = ctx->src_prefix;
	params->src_escape_char =
		mailbox_list_get_settings(ctx->src_ns->list)->vname_escape_char;
	params->dest_sep = mail_namespace_get_sep(ns);
	/* Dovecot refuses the storage's own separator inside a name when
	   the namespace uses another one (Maildir++ under '/'), and '/'
	   wherever it separates no directories */
	if (list_sep != params->dest_sep)
		str_append_c(unsafe, list_sep);
	if (list_sep != '/' && params->dest_sep != '/')
		str_append_c(unsafe, '/');
	params->dest_unsafe_chars = str_c(unsafe);
	params->escape_char = ctx->set->escape_char;
	if (params->escape_char == params->dest_sep ||
	    strchr(params->dest_unsafe_chars, params->escape_char) != NULL) {
		migrate_sync_set_error(ctx, MIGRATE_ERROR_CONFIG,
			t_strdup_printf("%s: '%c' separates folders here",
					MIGRATE_SETTING_ESCAPE_CHAR,
					params->escape_char));
		return -1;
	}
	return 0;
}

/* Why the file system refuses a folder at path (NULL: it does not): no
   directory name over NAME_MAX (Maildir++ keeps every level of a name
   in one), and room left under PATH_MAX for the files inside. */
static const char *sync_dest_path_refused(const char *path)
{
	const char *const *parts;
	size_t len = strlen(path);

	if (len + SYNC_DEST_FILE_ROOM >= PATH_MAX) {
		return t_strdup_printf("Mailbox name too long for the file "
			"system: a path of %zu bytes (at most %d)", len,
			PATH_MAX - SYNC_DEST_FILE_ROOM - 1);
	}
	for (parts = t_strsplit(path, "/"); *parts != NULL; parts++) {
		if (strlen(*parts) > NAME_MAX) {
			return t_strdup_printf("Mailbox name too long for the "
				"file system: a directory name of %zu bytes "
				"(at most %d)", strlen(*parts), NAME_MAX);
		}
	}
	return NULL;
}

/* Why the destination cannot hold a new folder of this name (NULL: it
   can): Dovecot's rules for a new name, and the file system's for the
   directories the folder gets. */
static const char *
sync_dest_name_refused(struct migrate_sync_ctx *ctx, const char *name)
{
	static const enum mailbox_list_path_type path_types[] = {
		MAILBOX_LIST_PATH_TYPE_MAILBOX,
		MAILBOX_LIST_PATH_TYPE_CONTROL,
		MAILBOX_LIST_PATH_TYPE_INDEX,
	};
	struct mailbox *box;
	const char *path, *reason = NULL;
	unsigned int i;

	if (strcmp(name, "INBOX") == 0)
		return NULL;
	box = migrate_sync_dest_alloc(ctx, name);
	if (mailbox_verify_create_name(box) < 0)
		reason = t_strdup(mailbox_get_last_error(box, NULL));
	for (i = 0; reason == NULL && i < N_ELEMENTS(path_types); i++) {
		if (mailbox_list_get_path(mailbox_get_namespace(box)->list,
					  mailbox_get_name(box),
					  path_types[i], &path) > 0)
			reason = sync_dest_path_refused(path);
	}
	mailbox_free(&box);
	return reason;
}

/* A name the state recorded stays while the destination accepts it or
   has it (a folder is never renamed under the user's feet); one it
   neither accepts nor has was never created (an earlier version tried
   and failed), and the folder gets a name anew. */
static bool
sync_state_name_usable(struct migrate_sync_ctx *ctx, const char *name)
{
	enum mailbox_existence existence;
	struct mailbox *box;
	const char *reason;
	bool usable;

	if ((reason = sync_dest_name_refused(ctx, name)) == NULL)
		return TRUE;
	box = migrate_sync_dest_alloc(ctx, name);
	usable = mailbox_exists(box, FALSE, &existence) == 0 &&
		existence != MAILBOX_EXISTENCE_NONE;
	mailbox_free(&box);
	if (!usable) {
		e_info(ctx->event, "%s was never created here (%s): giving "
		       "its source folder a name anew", name, reason);
	}
	return usable;
}

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
	if (migrate_source_list_names(ctx->source, ctx->pool, &names,
				 &error) < 0) {
		e_warning(ctx->event, "Source: Checking the case of INBOX's "
			  "children failed: %s", migrate_text_escape(error));
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
		migrate_sync_reject_folder(ctx, name, t_strdup_printf(
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
	enum migrate_error code;
	const char *error;

	if (mailbox_list_iter_deinit(iter) == 0)
		return 0;
	code = migrate_source_list_error(ctx->source, what, &error);
	migrate_sync_set_error(ctx, code, error);
	return -1;
}

/* The subscriptions of the folders listed, as the source told along the
   way (a LIST with RETURN (SUBSCRIBED)), without a listing of their own */
static bool sync_subscriptions_known(struct migrate_sync_ctx *ctx)
{
	struct migrate_sync_folder *f;
	ARRAY_TYPE(const_string) names;
	bool *subscribed;
	unsigned int i, count = array_count(&ctx->folders);

	t_array_init(&names, count + 1);
	array_foreach_modifiable(&ctx->folders, f)
		array_push_back(&names, &f->src_name);
	subscribed = t_new(bool, count + 1);
	if (!migrate_source_subscribed(ctx->source, array_front(&names),
				       count, subscribed))
		return FALSE;
	i = 0;
	array_foreach_modifiable(&ctx->folders, f)
		f->subscribed = subscribed[i++];
	return TRUE;
}

static int sync_list_source_subscriptions(struct migrate_sync_ctx *ctx)
{
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	struct migrate_sync_folder *f;

	if (!ctx->set->subscriptions)
		return 0;
	if (sync_subscriptions_known(ctx))
		return 0;
	migrate_source_count_folders(ctx->source, TRUE);
	iter = mailbox_list_iter_init(ctx->src_ns->list, "*",
				      MAILBOX_LIST_ITER_SELECT_SUBSCRIBED |
				      MAILBOX_LIST_ITER_RETURN_NO_FLAGS);
	migrate_source_count_folders(ctx->source, FALSE);
	while ((info = mailbox_list_iter_next(iter)) != NULL) {
		f = sync_folder_find(ctx, info->vname);
		if (f != NULL)
			f->subscribed = TRUE;
	}
	return sync_source_list_deinit(ctx, &iter, "subscriptions");
}

/* Subscribe here to what the user had subscribed at the source; never
   unsubscribe (the user may have subscribed here on purpose). */
void migrate_sync_tree_subscribe(struct migrate_sync_ctx *ctx)
{
	struct mail_namespace *ns;
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	const struct migrate_sync_folder *f;
	struct mailbox *box;
	HASH_TABLE(const char *, void *) subscribed;

	if (!ctx->set->subscriptions || ctx->dry_run)
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
			migrate_sync_kill_point(ctx, "subscribe");
		else {
			const char *error =
				mailbox_get_last_internal_error(box, NULL);

			e_warning(ctx->event, "Subscribing %s failed: %s",
				  migrate_text_escape(f->dest_name),
				  migrate_text_escape(error));
		}
		mailbox_free(&box);
	}
	hash_table_destroy(&subscribed);
}

static void
sync_assign_dest_name(struct migrate_sync_ctx *ctx,
		      HASH_TABLE_TYPE(migrate_names) dest_names,
		      struct migrate_sync_folder *f, const char *dest_name)
{
	const char *base = dest_name, *other, *reason;
	unsigned int suffix = 2;

	other = hash_table_lookup(dest_names, dest_name);
	if (other != NULL) {
		/* two source folders must never be merged into one */
		do {
			dest_name = t_strdup_printf("%s%c%u", base,
				ctx->set->escape_char, suffix++);
		} while (hash_table_lookup(dest_names, dest_name) != NULL);
		e_warning(ctx->event, "Source folders %s and %s both map to "
			  "%s: copying %s to %s", migrate_text_escape(other),
			  migrate_text_escape(f->src_name),
			  migrate_text_escape(base),
			  migrate_text_escape(f->src_name),
			  migrate_text_escape(dest_name));
	}
	reason = sync_dest_name_refused(ctx, dest_name);
	if (reason != NULL) {
		/* what the destination cannot hold is left out, the rest of
		   the account is copied (a folder not selected is not
		   copied anyway) */
		if (f->selected) {
			migrate_sync_reject_folder(ctx, f->src_name,
				t_strdup_printf("The destination refuses the "
						"name %s: %s", dest_name,
						reason));
		}
		f->selected = FALSE;
		return;
	}
	f->dest_name = p_strdup(ctx->pool, dest_name);
	hash_table_insert(dest_names, f->dest_name, f->src_name);
}

/* Record the new names of folders whose recorded name was never created
   here. */
static void
sync_state_rename(struct migrate_sync_ctx *ctx,
		  const ARRAY_TYPE(migrate_sync_folder_p) *renamed)
{
	struct migrate_sync_folder *f;
	struct migrate_state_folder *state;

	if (ctx->dry_run)
		return;
	array_foreach_elem(renamed, f) {
		if (f->dest_name == NULL)
			continue;
		state = migrate_state_folder_lookup(ctx->state, f->src_name);
		state->dest_name = f->dest_name;
		migrate_state_folder_update(ctx->state, state);
	}
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
	ARRAY_TYPE(migrate_sync_folder_p) renamed;
	struct migrate_sync_folder *f;
	const char *plain, *mapped;
	unsigned int i, n = array_count(&ctx->folders);

	hash_table_create(&dest_names, ctx->pool, 0, str_hash, strcmp);
	t_array_init(&mapped_names, n);
	t_array_init(&renamed, 4);
	for (i = 0; i < n; i++) {
		const struct migrate_state_folder *state;

		f = array_idx_modifiable(&ctx->folders, i);
		state = migrate_state_folder_lookup(ctx->state, f->src_name);
		if (state == NULL ||
		    hash_table_lookup(dest_names, state->dest_name) != NULL)
			continue;
		if (!sync_state_name_usable(ctx, state->dest_name)) {
			array_push_back(&renamed, &f);
			continue;
		}
		f->dest_name = p_strdup(ctx->pool, state->dest_name);
		hash_table_insert(dest_names, f->dest_name, f->src_name);
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
			       migrate_text_escape(f->src_name),
			       migrate_text_escape(mapped));
			mapped = sync_map_name(ctx, f->src_name, NULL, FALSE);
		}
		sync_assign_dest_name(ctx, dest_names, f, mapped);
	}
	sync_state_rename(ctx, &renamed);
}

/* <renames and deletions> */

int migrate_sync_tree_list(struct migrate_sync_ctx *ctx)
{
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	struct migrate_sync_folder *f;
	ARRAY_TYPE(const_string) special_uses;
	const char *name;

	ctx->src_sep = mail_namespace_get_sep(ctx->src_ns);
	p_array_init(&ctx->folders, ctx->pool, 32);
	p_array_init(&special_uses, ctx->pool, 32);
	hash_table_create(&ctx->src_names, ctx->pool, 0, str_hash, strcmp);

	/* a source listing more than migrate_max_folders is given up while
	   it lists them, not read to its end */
	migrate_source_count_folders(ctx->source, TRUE);
	iter = mailbox_list_iter_init(ctx->src_ns->list, "*",
				      MAILBOX_LIST_ITER_RETURN_SPECIALUSE);
	migrate_source_count_folders(ctx->source, FALSE);
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
	/* listed from what the login listed: imapc lists them again when
	   next asked */
	migrate_source_release_listing(ctx->source);
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
	if (sync_name_params_init(ctx) < 0)
		return -1;
	sync_check_inbox_case(ctx);
	ctx->gmail = migrate_sync_gmail_detect(ctx);
	if (ctx->gmail) {
		e_debug(ctx->event, "The source is Gmail");
		migrate_sync_gmail_select(ctx, &special_uses);
	}

	sync_assign_dest_names(ctx, &special_uses);
	return 0;
}

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

/* mapped messages compared by content before a rename is believed */
#define MIGRATE_SYNC_RENAME_SAMPLE 5

HASH_TABLE_DEFINE_TYPE(rename_keys, void *, const char *);

/* The content keys of the sample's source UIDs in the folder f, into
   keys (UID -> key); a UID the source no longer has is not there. */
static int
sync_rename_read_source(struct migrate_sync_ctx *ctx,
			const struct migrate_sync_folder *f,
			const ARRAY_TYPE(seq_range) *uids, pool_t pool,
			HASH_TABLE_TYPE(rename_keys) keys)
{
	static const char *const match_headers[] = { "Message-ID", NULL };
	struct mailbox_header_lookup_ctx *headers;
	struct mailbox_transaction_context *t;
	struct mail_search_context *search_ctx;
	struct mailbox *sbox;
	struct mail *mail;
	const char *key;
	bool weak;
	int ret = 0;

	sbox = mailbox_alloc(ctx->src_ns->list, f->src_name,
			     MAILBOX_FLAG_READONLY);
	if (mailbox_sync(sbox, 0) < 0) {
		migrate_sync_set_source_error(ctx, sbox, "Opening");
		mailbox_free(&sbox);
		return -1;
	}
	headers = mailbox_header_lookup_init(sbox, match_headers);
	t = mailbox_transaction_begin(sbox, 0, __func__);
	search_ctx = migrate_search_uids(t, uids, MAIL_FETCH_RECEIVED_DATE |
					 MAIL_FETCH_VIRTUAL_SIZE, headers);
	mailbox_header_lookup_unref(&headers);
	while (mailbox_search_next(search_ctx, &mail)) T_BEGIN {
		key = migrate_sync_mail_match_key(mail, &weak);
		if (key != NULL) {
			key = p_strdup(pool, key);
			hash_table_update(keys, POINTER_CAST(mail->uid), key);
		}
	} T_END;
	if (mailbox_search_deinit(&search_ctx) < 0) {
		migrate_sync_set_source_error(ctx, sbox, "Fetching headers of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&t);
	mailbox_free(&sbox);
	return ret;
}

/* The destination folder that holds the copies of state: its own name,
   or the new name when a rename of its parent already carried it there. */
static struct mailbox *
sync_rename_open_dest(struct migrate_sync_ctx *ctx,
		      const struct migrate_state_folder *state,
		      const struct migrate_sync_folder *f, uint32_t loc)
{
	struct mailbox *dbox;

	if (loc != 0) {
		dbox = migrate_sync_dest_alloc(ctx,
			migrate_state_location_name(ctx->state, loc));
	} else {
		dbox = migrate_sync_dest_alloc(ctx, state->dest_name);
		if (mailbox_sync(dbox, 0) == 0)
			return dbox;
		mailbox_free(&dbox);
		dbox = migrate_sync_dest_alloc(ctx, f->dest_name);
	}
	if (mailbox_sync(dbox, 0) < 0)
		mailbox_free(&dbox);
	return dbox;
}

/* Compare one mapped copy with its source's key: 1 equal, 0 different,
   -1 when the copy is not there to compare. */
static int
sync_rename_compare(struct migrate_sync_ctx *ctx,
		    const struct migrate_state_folder *state,
		    const struct migrate_sync_folder *f,
		    const struct migrate_uid_map *map, const char *src_key)
{
	static const char *const match_headers[] = { "Message-ID", NULL };
	struct mailbox_header_lookup_ctx *headers;
	struct mailbox_transaction_context *t;
	struct mailbox *dbox;
	struct mail *mail;
	const char *key = NULL;
	bool weak;

	dbox = sync_rename_open_dest(ctx, state, f, map->dest_loc);
	if (dbox == NULL)
		return -1;
	headers = mailbox_header_lookup_init(dbox, match_headers);
	t = mailbox_transaction_begin(dbox, 0, __func__);
	mail = mail_alloc(t, MAIL_FETCH_RECEIVED_DATE |
			  MAIL_FETCH_VIRTUAL_SIZE, headers);
	mailbox_header_lookup_unref(&headers);
	if (mail_set_uid(mail, map->dest_uid))
		key = migrate_sync_mail_match_key(mail, &weak);
	mail_free(&mail);
	(void)mailbox_transaction_commit(&t);
	mailbox_free(&dbox);
	if (key == NULL)
		return -1;
	return strcmp(key, src_key) == 0 ? 1 : 0;
}

/* A folder the source no longer lists and a new one with its UIDVALIDITY
   are one folder renamed only when the new one still holds what we
   copied: a sample of the mapped messages, spread over the map, must be
   there at their UIDs with the same content (a server may reuse a
   UIDVALIDITY for another folder).  Returns 1 when proven, 0 when not
   (the old folder is then gone and the new one new), -1 when the source
   could not be read. */
static int
sync_rename_proven(struct migrate_sync_ctx *ctx,
		   const struct migrate_state_folder *state,
		   const struct migrate_sync_folder *f)
{
	HASH_TABLE_TYPE(rename_keys) keys;
	const struct migrate_uid_map *maps, *map;
	ARRAY_TYPE(seq_range) uids;
	const char *src_key;
	unsigned int i, count, samples, matched = 0, differ = 0;
	pool_t pool;
	int ret;

	maps = array_get(&state->map, &count);
	if (count == 0)
		return 0;
	samples = I_MIN(count, MIGRATE_SYNC_RENAME_SAMPLE);
	t_array_init(&uids, samples);
	for (i = 0; i < samples; i++)
		seq_range_array_add(&uids, maps[i * count / samples].src_uid);

	pool = pool_alloconly_create("migrate rename sample", 1024);
	hash_table_create_direct(&keys, pool, 0);
	ret = sync_rename_read_source(ctx, f, &uids, pool, keys);
	for (i = 0; ret == 0 && i < samples; i++) {
		map = &maps[i * count / samples];
		src_key = hash_table_lookup(keys, POINTER_CAST(map->src_uid));
		if (src_key == NULL)
			continue;
		switch (sync_rename_compare(ctx, state, f, map, src_key)) {
		case 1:
			matched++;
			break;
		case 0:
			differ++;
			break;
		}
	}
	hash_table_destroy(&keys);
	pool_unref(&pool);
	if (ret < 0)
		return -1;
	if (matched == 0 || differ > 0) {
		e_warning(ctx->event, "Source folder %s has the UIDVALIDITY "
			  "%s had, but not its messages (%u of %u compared "
			  "differ): a new folder, not a rename", f->src_name,
			  state->src_name, differ, matched + differ);
		return 0;
	}
	return 1;
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
	box = migrate_sync_dest_alloc(ctx, state->dest_name);
	dest_box = migrate_sync_dest_alloc(ctx, f->dest_name);
	if (mailbox_exists(box, FALSE, &old_exists) < 0 ||
	    mailbox_exists(dest_box, FALSE, &new_exists) < 0) {
		migrate_sync_set_dest_error(ctx, box, "Looking up");
		ret = -1;
	} else if (old_exists == MAILBOX_EXISTENCE_NONE &&
		   new_exists == MAILBOX_EXISTENCE_SELECT) {
		/* renamed already, by a run that stopped before it could
		   record it */
	} else if (mailbox_rename(box, dest_box) < 0) {
		migrate_sync_set_dest_error(ctx, box, "Renaming");
		ret = -1;
	} else {
		migrate_sync_kill_point(ctx, "rename");
	}
	mailbox_free(&box);
	mailbox_free(&dest_box);
	return ret;
}

void migrate_sync_tree_find_gone(struct migrate_sync_ctx *ctx)
{
	const ARRAY_TYPE(migrate_state_folder) *sfolders;
	struct migrate_state_folder *const *sfp, *state;
	struct migrate_sync_folder *f;
	const char *error;
	int proven = 0;

	p_array_init(&ctx->gone_folders, ctx->pool, 8);
	sfolders = migrate_state_get_folders(ctx->state);
	array_foreach(sfolders, sfp) {
		state = *sfp;
		if (hash_table_lookup(ctx->src_names, state->src_name) != NULL)
			continue;
		/* not listed: renamed (same UIDVALIDITY under a new name
		   that we do not know yet) or gone */
		f = sync_find_renamed(ctx, state);
		if (f != NULL) T_BEGIN {
			proven = sync_rename_proven(ctx, state, f);
		} T_END;
		if (f != NULL && proven < 0) {
			/* neither a rename nor gone until the source tells */
			f->selected = FALSE;
			continue;
		}
		if (f == NULL || proven == 0) {
			array_push_back(&ctx->gone_folders, &state);
			continue;
		}
		e_info(ctx->event, "Source folder %s was renamed to %s",
		       migrate_text_escape(state->src_name),
		       migrate_text_escape(f->src_name));
		ctx->stats->folders_renamed++;
		if (ctx->dry_run) {
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
			migrate_sync_set_error(ctx, MIGRATE_ERROR_FAILED, error);
	}
}
