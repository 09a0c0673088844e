/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "seq-range-array.h"
#include "time-util.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "mail-search-build.h"
#include "mailbox-list-iter.h"
#include "migrate-settings.h"
#include "migrate-state.h"
#include "migrate-prepare.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* moves per commit: the year folders first, then the state, then the
   expunges in INBOX/Sent */
#define MIGRATE_ARCHIVE_BATCH 1000

struct archive_dest_src {
	uint32_t dest_uid;
	uint32_t src_uid;
};

struct archive_target {
	int year;
	const char *name;
	struct mailbox *box;
	struct mailbox_transaction_context *t;
	/* the state's location id, 0 without a state folder */
	unsigned int loc;
	/* GUIDs already in the folder -> their UIDs */
	HASH_TABLE(const char *, void *) guids;
	/* per copy in this batch, in save order: the source UID of the
	   state's map entry, or 0 for a message we did not copy */
	ARRAY(uint32_t) pending_src;
};

struct prepare_ctx {
	pool_t pool;
	struct mail_user *user;
	const struct migrate_settings *set;
	const struct migrate_prepare_options *opts;
	struct event *event;
	struct migrate_state *state;
	bool state_fsync;
	int current_year;
	char sep;
	const char *prefix;

	struct migrate_failure failure;

	struct timeval start;
};

struct archive_folder {
	struct prepare_ctx *ctx;
	struct migrate_archive_stats *stats;
	struct mailbox *box;
	const char *vname;
	const char *pattern;
	struct migrate_state_folder *sf;
	/* the state folder's copies still here, by destination UID */
	ARRAY(struct archive_dest_src) by_dest;
	ARRAY(struct archive_target *) targets;
	/* moved in this batch, expunged after the commits */
	ARRAY_TYPE(seq_range) expunge_uids;
	unsigned int done, total;
};

static void
prepare_set_error(struct prepare_ctx *ctx, enum migrate_error code,
		  const char *error)
{
	migrate_failure_set(&ctx->failure, ctx->pool, ctx->event, code, error);
}

static void
prepare_set_box_error(struct prepare_ctx *ctx, struct mailbox *box,
		      const char *what)
{
	enum migrate_error code;
	const char *error;

	code = migrate_dest_error(box, what, &error);
	prepare_set_error(ctx, code, error);
}

static void
prepare_progress(struct prepare_ctx *ctx, const char *what,
		 const char *vname, unsigned int done, unsigned int total,
		 bool folder_done)
{
	struct migrate_progress progress;
	struct timeval now;

	if (ctx->opts->progress_callback == NULL)
		return;
	i_gettimeofday(&now);
	i_zero(&progress);
	progress.what = what;
	progress.folder = vname;
	progress.done = done;
	progress.total = total;
	progress.elapsed_msecs = timeval_diff_msecs(&now, &ctx->start);
	progress.folder_done = folder_done;
	ctx->opts->progress_callback(&progress, ctx->opts->progress_context);
}

static void prepare_init(struct prepare_ctx *ctx, struct mail_user *user,
			 const struct migrate_prepare_options *opts,
			 const char *name)
{
	struct mail_namespace *ns;

	i_zero(ctx);
	ctx->pool = pool_alloconly_create(name, 4096);
	ctx->user = user;
	ctx->opts = opts;
	ctx->event = event_create(user->event);
	event_add_category(ctx->event, &event_category_migrate);
	event_set_append_log_prefix(ctx->event, t_strdup_printf("%s: ", name));
	i_gettimeofday(&ctx->start);
	ns = mail_namespace_find_inbox(user->namespaces);
	ctx->sep = mail_namespace_get_sep(ns);
	ctx->prefix = ns->prefix;
}

/* Ends the run: returns its milliseconds. */
static unsigned int prepare_deinit(struct prepare_ctx *ctx)
{
	struct timeval end;

	if (ctx->state != NULL)
		migrate_state_close(&ctx->state);
	i_gettimeofday(&end);
	return timeval_diff_msecs(&end, &ctx->start);
}

/* After the run's summary event: its failure, and the context freed. */
static int
prepare_free(struct prepare_ctx *ctx, enum migrate_error *error_code_r,
	     const char **error_r)
{
	*error_code_r = ctx->failure.code;
	*error_r = t_strdup(ctx->failure.error);
	event_unref(&ctx->event);
	pool_unref(&ctx->pool);
	return *error_code_r == MIGRATE_ERROR_NONE ? 0 : -1;
}

/* <archive> */

/* The year folder's name: the pattern's levels joined with our separator,
   under the INBOX namespace's prefix. */
static const char *
archive_target_name(struct prepare_ctx *ctx, const char *pattern)
{
	const char *const *levels;
	string_t *name;

	name = t_str_new(64);
	str_append(name, ctx->prefix);
	levels = t_strsplit(pattern, "/");
	for (; *levels != NULL; levels++) {
		if (str_len(name) > strlen(ctx->prefix))
			str_append_c(name, ctx->sep);
		str_append(name, *levels);
	}
	return str_c(name);
}

/* Create name and its parents (subscribed), like a user would see them. */
static int
archive_create_folders(struct prepare_ctx *ctx, struct archive_folder *af,
		       const char *name)
{
	struct mail_namespace *ns;
	struct mailbox *box;
	enum mail_error error;
	const char *p, *level;
	size_t start = strlen(ctx->prefix);
	int ret = 0;

	ns = mail_namespace_find(ctx->user->namespaces, name);
	for (p = name + start;; p++) {
		if (*p != ctx->sep && *p != '\0')
			continue;
		level = t_strdup_until(name, p);
		box = mailbox_alloc(ns->list, level, 0);
		if (mailbox_create(box, NULL, FALSE) == 0) {
			af->stats->folders_created++;
			e_debug(ctx->event, "Created %s", level);
		} else {
			(void)mailbox_get_last_internal_error(box, &error);
			if (error != MAIL_ERROR_EXISTS) {
				prepare_set_box_error(ctx, box, "Creating");
				ret = -1;
			}
		}
		if (ret == 0 && mailbox_set_subscribed(box, TRUE) < 0) {
			prepare_set_box_error(ctx, box, "Subscribing");
			ret = -1;
		}
		mailbox_free(&box);
		if (ret < 0 || *p == '\0')
			break;
	}
	return ret;
}

/* What an interrupted run already copied there: its GUIDs. */
static int
archive_target_load_guids(struct prepare_ctx *ctx, struct archive_target *tg)
{
	struct mailbox_transaction_context *t;
	struct mail_search_context *search;
	struct mail *mail;
	const char *guid;
	int ret = 0;

	t = mailbox_transaction_begin(tg->box, 0, __func__);
	search = migrate_search_all(t, MAIL_FETCH_GUID);
	while (mailbox_search_next(search, &mail)) {
		if (mail_get_special(mail, MAIL_FETCH_GUID, &guid) < 0 ||
		    guid[0] == '\0')
			continue;
		guid = p_strdup(ctx->pool, guid);
		hash_table_update(tg->guids, guid, POINTER_CAST(mail->uid));
	}
	if (mailbox_search_deinit(&search) < 0) {
		prepare_set_box_error(ctx, tg->box, "Reading GUIDs of");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&t);
	return ret;
}

static struct archive_target *
archive_get_target(struct archive_folder *af, int year)
{
	struct prepare_ctx *ctx = af->ctx;
	struct archive_target *tg;
	struct mail_namespace *ns;
	const char *name;

	array_foreach_elem(&af->targets, tg) {
		if (tg->year == year)
			return tg;
	}
	T_BEGIN {
		const char *p = strstr(af->pattern, MIGRATE_ARCHIVE_YEAR_VAR);

		i_assert(p != NULL);
		name = p_strdup(ctx->pool, archive_target_name(ctx,
			t_strdup_printf("%s%d%s",
				t_strdup_until(af->pattern, p), year,
				p + strlen(MIGRATE_ARCHIVE_YEAR_VAR))));
	} T_END;
	tg = p_new(ctx->pool, struct archive_target, 1);
	tg->year = year;
	tg->name = name;
	hash_table_create(&tg->guids, ctx->pool, 0, str_hash, strcmp);
	i_array_init(&tg->pending_src, 64);
	array_push_back(&af->targets, &tg);
	if (ctx->opts->dry_run)
		return tg;

	if (archive_create_folders(ctx, af, name) < 0)
		return NULL;
	ns = mail_namespace_find(ctx->user->namespaces, name);
	tg->box = mailbox_alloc(ns->list, name, 0);
	if (mailbox_sync(tg->box, 0) < 0) {
		prepare_set_box_error(ctx, tg->box, "Opening");
		return NULL;
	}
	if (archive_target_load_guids(ctx, tg) < 0)
		return NULL;
	if (af->sf != NULL)
		tg->loc = migrate_state_location(ctx->state, name);
	return tg;
}

static const struct archive_dest_src *
archive_lookup_src(struct archive_folder *af, uint32_t dest_uid)
{
	const struct archive_dest_src *items;
	unsigned int left = 0, right, idx;

	items = array_get(&af->by_dest, &right);
	while (left < right) {
		idx = (left + right) / 2;
		if (items[idx].dest_uid < dest_uid)
			left = idx + 1;
		else if (items[idx].dest_uid > dest_uid)
			right = idx;
		else
			return &items[idx];
	}
	return NULL;
}

static int archive_dest_src_cmp(const struct archive_dest_src *a,
				const struct archive_dest_src *b)
{
	if (a->dest_uid < b->dest_uid)
		return -1;
	return a->dest_uid > b->dest_uid ? 1 : 0;
}

/* Commit the year folders, record where the copies went, then expunge
   them here.  A crash in between leaves a message in both places: the
   next run finds its GUID in the year folder and only expunges it. */
static int archive_checkpoint(struct archive_folder *af)
{
	struct prepare_ctx *ctx = af->ctx;
	struct mail_transaction_commit_changes changes;
	struct mailbox_transaction_context *t;
	struct archive_target *tg;
	struct seq_range_iter iter;
	ARRAY_TYPE(uint32_t) dest_uids;
	const uint32_t *src_uids;
	unsigned int i, count, n;
	struct mail *mail;
	const char *error;
	uint32_t uid;
	int ret = 0;

	array_foreach_elem(&af->targets, tg) {
		if (tg->t == NULL)
			continue;
		if (mailbox_transaction_commit_get_changes(&tg->t,
							   &changes) < 0) {
			prepare_set_box_error(ctx, tg->box, "Copying to");
			array_clear(&tg->pending_src);
			ret = -1;
			continue;
		}
		src_uids = array_get(&tg->pending_src, &count);
		t_array_init(&dest_uids, count);
		if (migrate_dest_saved_uids(tg->box, &changes, count,
					    &dest_uids, &error) < 0) {
			prepare_set_error(ctx, MIGRATE_ERROR_FAILED, error);
			ret = -1;
		} else if (af->sf != NULL) {
			for (i = 0; i < count; i++) {
				if (src_uids[i] == 0)
					continue;
				migrate_state_map_move(ctx->state, af->sf,
					src_uids[i], tg->loc,
					*array_idx(&dest_uids, i));
			}
		}
		pool_unref(&changes.pool);
		array_clear(&tg->pending_src);
	}
	if (ret < 0) {
		/* expunge nothing: what was copied is found by GUID next
		   time */
		array_clear(&af->expunge_uids);
		return -1;
	}
	if (migrate_state_flush(ctx->state, ctx->state_fsync, &error) < 0) {
		prepare_set_error(ctx, MIGRATE_ERROR_FAILED, error);
		array_clear(&af->expunge_uids);
		return -1;
	}

	t = mailbox_transaction_begin(af->box, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	n = 0;
	seq_range_array_iter_init(&iter, &af->expunge_uids);
	while (seq_range_array_iter_nth(&iter, n++, &uid)) {
		if (mail_set_uid(mail, uid))
			mail_expunge(mail);
	}
	mail_free(&mail);
	if (mailbox_transaction_commit(&t) < 0) {
		prepare_set_box_error(ctx, af->box, "Expunging from");
		ret = -1;
	}
	array_clear(&af->expunge_uids);
	return ret;
}

static int
archive_one(struct archive_folder *af, struct mail *mail, int year)
{
	struct prepare_ctx *ctx = af->ctx;
	const struct archive_dest_src *ds;
	struct mail_save_context *save;
	struct archive_target *tg;
	const char *guid;
	uint32_t src_uid;
	void *value;

	tg = archive_get_target(af, year);
	if (tg == NULL)
		return -1;
	if (ctx->opts->dry_run) {
		af->stats->messages_moved++;
		return 0;
	}
	if (mail_get_special(mail, MAIL_FETCH_GUID, &guid) < 0)
		guid = "";
	ds = archive_lookup_src(af, mail->uid);
	src_uid = ds == NULL ? 0 : ds->src_uid;

	if (guid[0] != '\0' &&
	    hash_table_lookup_full(tg->guids, guid, &guid, &value)) {
		/* copied there by an interrupted run */
		if (src_uid != 0) {
			migrate_state_map_move(ctx->state, af->sf, src_uid,
				tg->loc, POINTER_CAST_TO(value, uint32_t));
		}
		seq_range_array_add(&af->expunge_uids, mail->uid);
		af->stats->messages_recovered++;
		return 0;
	}
	if (tg->t == NULL) {
		tg->t = mailbox_transaction_begin(tg->box,
			MAILBOX_TRANSACTION_FLAG_EXTERNAL |
			MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS, __func__);
	}
	save = mailbox_save_alloc(tg->t);
	mailbox_save_copy_flags(save, mail);
	if (mailbox_copy(&save, mail) < 0) {
		prepare_set_box_error(ctx, tg->box, "Copying to");
		return -1;
	}
	array_push_back(&tg->pending_src, &src_uid);
	seq_range_array_add(&af->expunge_uids, mail->uid);
	af->stats->messages_moved++;
	return 0;
}

static int archive_folder_run(struct archive_folder *af)
{
	struct prepare_ctx *ctx = af->ctx;
	struct mailbox_transaction_context *t;
	struct mail_search_context *search;
	const struct migrate_uid_map *map;
	struct archive_target *tg;
	struct mail *mail;
	struct tm *tm;
	time_t received;
	unsigned int batch = 0;
	int ret = 0;

	i_array_init(&af->by_dest, 64);
	if (af->sf != NULL) {
		array_foreach(&af->sf->map, map) {
			if (map->dest_loc != 0)
				continue;
			struct archive_dest_src *ds =
				array_append_space(&af->by_dest);
			ds->dest_uid = map->dest_uid;
			ds->src_uid = map->src_uid;
		}
		array_sort(&af->by_dest, archive_dest_src_cmp);
	}
	i_array_init(&af->targets, 16);
	i_array_init(&af->expunge_uids, 64);

	t = mailbox_transaction_begin(af->box, 0, __func__);
	search = migrate_search_all(t, MAIL_FETCH_RECEIVED_DATE |
				    MAIL_FETCH_GUID);
	while (ret == 0 && mailbox_search_next(search, &mail)) T_BEGIN {
		af->done++;
		if (mail_get_received_date(mail, &received) < 0) {
			prepare_set_box_error(ctx, af->box, "Reading dates of");
			ret = -1;
		} else if ((tm = localtime(&received)) != NULL &&
			   tm->tm_year + 1900 < ctx->current_year) {
			ret = archive_one(af, mail, tm->tm_year + 1900);
			if (ret == 0 && !ctx->opts->dry_run &&
			    ++batch >= MIGRATE_ARCHIVE_BATCH) {
				ret = archive_checkpoint(af);
				batch = 0;
			}
		}
		prepare_progress(ctx, "archive", af->vname, af->done,
				 af->total, FALSE);
	} T_END;
	if (mailbox_search_deinit(&search) < 0 && ret == 0) {
		prepare_set_box_error(ctx, af->box, "Searching");
		ret = -1;
	}
	(void)mailbox_transaction_commit(&t);
	if (!ctx->opts->dry_run && archive_checkpoint(af) < 0)
		ret = -1;
	prepare_progress(ctx, "archive", af->vname, af->done, af->total,
			 TRUE);

	array_foreach_elem(&af->targets, tg) {
		if (tg->t != NULL)
			mailbox_transaction_rollback(&tg->t);
		if (tg->box != NULL)
			mailbox_free(&tg->box);
		hash_table_destroy(&tg->guids);
		array_free(&tg->pending_src);
	}
	array_free(&af->targets);
	array_free(&af->expunge_uids);
	array_free(&af->by_dest);
	return ret;
}

static struct migrate_state_folder *
archive_state_folder(struct prepare_ctx *ctx, const char *vname)
{
	struct migrate_state_folder *sf;

	array_foreach_elem(migrate_state_get_folders(ctx->state), sf) {
		if (strcmp(sf->dest_name, vname) == 0)
			return sf;
	}
	return NULL;
}

static void
archive_folder(struct prepare_ctx *ctx, struct migrate_archive_stats *stats,
	       const char *vname, const char *pattern)
{
	struct archive_folder af;
	struct mail_namespace *ns;
	struct mailbox_status status;

	i_zero(&af);
	af.ctx = ctx;
	af.stats = stats;
	af.vname = vname;
	af.pattern = pattern;
	ns = mail_namespace_find(ctx->user->namespaces, vname);
	af.box = mailbox_alloc(ns->list, vname, 0);
	if (mailbox_sync(af.box, 0) < 0 ||
	    mailbox_get_status(af.box, STATUS_MESSAGES, &status) < 0) {
		prepare_set_box_error(ctx, af.box, "Opening");
		mailbox_free(&af.box);
		return;
	}
	stats->folders_checked++;
	if (status.messages <= ctx->set->archive_threshold) {
		e_info(ctx->event, "%s: %u messages, not more than "
		       "migrate_archive_threshold (%u): left as it is",
		       vname, status.messages, ctx->set->archive_threshold);
		mailbox_free(&af.box);
		return;
	}
	stats->folders_archived++;
	af.total = status.messages;
	af.sf = archive_state_folder(ctx, vname);
	(void)archive_folder_run(&af);
	mailbox_free(&af.box);
}

/* The special-use \Sent folder, whatever its name; NULL without one. */
static const char *archive_find_sent(struct prepare_ctx *ctx)
{
	static const char *const patterns[] = { "*", NULL };
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	const char *sent = NULL;

	iter = mailbox_list_iter_init_namespaces(ctx->user->namespaces,
		patterns, MAIL_NAMESPACE_TYPE_PRIVATE,
		MAILBOX_LIST_ITER_SELECT_SPECIALUSE |
		MAILBOX_LIST_ITER_RETURN_SPECIALUSE);
	while ((info = mailbox_list_iter_next(iter)) != NULL) {
		if (sent == NULL && info->special_use != NULL &&
		    str_array_icase_find(t_strsplit_spaces(info->special_use,
							   " "), "\\Sent"))
			sent = p_strdup(ctx->pool, info->vname);
	}
	if (mailbox_list_iter_deinit(&iter) < 0) {
		prepare_set_error(ctx, MIGRATE_ERROR_FAILED,
				  "Listing the special-use folders failed");
	}
	return sent;
}

int migrate_archive_run(struct mail_user *user,
			const struct migrate_settings *set,
			const struct migrate_prepare_options *opts,
			struct migrate_archive_stats *stats_r,
			enum migrate_error *error_code_r, const char **error_r)
{
	struct prepare_ctx ctx;
	struct mail_namespace *ns;
	const char *error, *sent;
	struct tm *tm;
	time_t now;
	bool locked;

	i_zero(stats_r);
	prepare_init(&ctx, user, opts, "archive");
	ctx.set = set;
	ctx.state_fsync = migrate_dest_state_fsync(user, set);
	now = time(NULL);
	tm = localtime(&now);
	ctx.current_year = tm->tm_year + 1900;

	/* the state follows the moved copies; a sync running now would
	   race us, its lock keeps us out */
	if (migrate_state_open(set->state_dir, &ctx.state, &locked,
			       &error) < 0) {
		prepare_set_error(&ctx, locked ? MIGRATE_ERROR_TEMP :
				  MIGRATE_ERROR_FAILED, error);
	} else {
		ns = mail_namespace_find_inbox(user->namespaces);
		archive_folder(&ctx, stats_r,
			       t_strconcat(ns->prefix, "INBOX", NULL),
			       set->archive_inbox);
		sent = archive_find_sent(&ctx);
		if (sent == NULL)
			e_info(ctx.event, "No special-use \\Sent folder");
		else
			archive_folder(&ctx, stats_r, sent, set->archive_sent);
		if (!opts->dry_run &&
		    migrate_state_commit(ctx.state, &error) < 0)
			prepare_set_error(&ctx, MIGRATE_ERROR_FAILED, error);
	}
	stats_r->total_msecs = prepare_deinit(&ctx);
	e_info(event_create_passthrough(ctx.event)->
	       set_name("migrate_archive_finished")->
	       add_int("folders_archived", stats_r->folders_archived)->
	       add_int("folders_created", stats_r->folders_created)->
	       add_int("messages_moved", stats_r->messages_moved)->
	       add_int("messages_recovered", stats_r->messages_recovered)->
	       add_str("error", ctx.failure.error)->event(),
	       "%s: %u of %u folders archived, %u messages moved%s, "
	       "%u folders created in %u.%03u s",
	       ctx.failure.code == MIGRATE_ERROR_NONE ? "Finished" : "Failed",
	       stats_r->folders_archived, stats_r->folders_checked,
	       stats_r->messages_moved, opts->dry_run ? " (dry run)" : "",
	       stats_r->folders_created, stats_r->total_msecs / 1000,
	       stats_r->total_msecs % 1000);
	return prepare_free(&ctx, error_code_r, error_r);
}

/* <index> */

/* What doveadm index does for one folder: precache what is not indexed
   yet; the fts plugin indexes it on the way. */
static int
index_folder(struct prepare_ctx *ctx, struct migrate_index_stats *stats,
	     struct mailbox *box)
{
	struct mailbox_status status;
	struct mailbox_metadata metadata;
	struct mailbox_transaction_context *t;
	struct mail_search_args *args;
	struct mail_search_context *search;
	struct mail *mail;
	unsigned int done = 0, total;
	int ret = 0;

	if (mailbox_sync(box, 0) < 0 ||
	    mailbox_get_metadata(box, MAILBOX_METADATA_PRECACHE_FIELDS,
				 &metadata) < 0 ||
	    mailbox_get_status(box, STATUS_MESSAGES | STATUS_LAST_CACHED_SEQ,
			       &status) < 0) {
		prepare_set_box_error(ctx, box, "Opening");
		return -1;
	}
	stats->folders++;
	if (status.last_cached_seq + 1 > status.messages)
		return 0;
	total = status.messages - status.last_cached_seq;

	t = mailbox_transaction_begin(box,
		MAILBOX_TRANSACTION_FLAG_NO_CACHE_DEC, __func__);
	args = mail_search_build_init();
	mail_search_build_add_seqset(args, status.last_cached_seq + 1,
				     status.messages);
	search = mailbox_search_init(t, args, NULL,
				     metadata.precache_fields, NULL);
	mail_search_args_unref(&args);
	while (mailbox_search_next(search, &mail)) {
		if (mail_precache(mail) < 0) {
			prepare_set_box_error(ctx, box, t_strdup_printf(
				"Indexing UID %u of", mail->uid));
			ret = -1;
			break;
		}
		stats->messages_indexed++;
		prepare_progress(ctx, "index", mailbox_get_vname(box),
				 ++done, total, FALSE);
	}
	if (mailbox_search_deinit(&search) < 0 && ret == 0) {
		prepare_set_box_error(ctx, box, "Searching");
		ret = -1;
	}
	if (mailbox_transaction_commit(&t) < 0 && ret == 0) {
		prepare_set_box_error(ctx, box, "Committing the index of");
		ret = -1;
	}
	prepare_progress(ctx, "index", mailbox_get_vname(box), done, total,
			 TRUE);
	return ret;
}

int migrate_index_run(struct mail_user *user,
		      const struct migrate_prepare_options *opts,
		      struct migrate_index_stats *stats_r,
		      enum migrate_error *error_code_r, const char **error_r)
{
	static const char *const patterns[] = { "*", NULL };
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	struct prepare_ctx ctx;
	struct mailbox *box;
	const char *fts;

	i_zero(stats_r);
	prepare_init(&ctx, user, opts, "index");
	fts = mail_user_plugin_getenv(user, "fts");
	if (fts == NULL || fts[0] == '\0') {
		prepare_set_error(&ctx, MIGRATE_ERROR_CONFIG,
			"No full-text search configured: load the fts plugin "
			"and a backend (mail_plugins = $mail_plugins fts "
			"fts_xapian, plugin { fts = xapian }, see "
			"90-migrate.conf)");
	} else {
		iter = mailbox_list_iter_init_namespaces(user->namespaces,
			patterns, MAIL_NAMESPACE_TYPE_PRIVATE,
			MAILBOX_LIST_ITER_NO_AUTO_BOXES |
			MAILBOX_LIST_ITER_RETURN_NO_FLAGS);
		while ((info = mailbox_list_iter_next(iter)) != NULL) {
			if ((info->flags & (MAILBOX_NOSELECT |
					    MAILBOX_NONEXISTENT)) != 0)
				continue;
			box = mailbox_alloc(info->ns->list, info->vname,
					    MAILBOX_FLAG_IGNORE_ACLS);
			T_BEGIN {
				(void)index_folder(&ctx, stats_r, box);
			} T_END;
			mailbox_free(&box);
		}
		if (mailbox_list_iter_deinit(&iter) < 0) {
			prepare_set_error(&ctx, MIGRATE_ERROR_FAILED,
					  "Listing the folders failed");
		}
	}
	stats_r->total_msecs = prepare_deinit(&ctx);
	e_info(event_create_passthrough(ctx.event)->
	       set_name("migrate_index_finished")->
	       add_int("folders", stats_r->folders)->
	       add_int("messages_indexed", stats_r->messages_indexed)->
	       add_str("error", ctx.failure.error)->event(),
	       "%s: %u folders, %u messages indexed in %u.%03u s",
	       ctx.failure.code == MIGRATE_ERROR_NONE ? "Finished" : "Failed",
	       stats_r->folders, stats_r->messages_indexed,
	       stats_r->total_msecs / 1000, stats_r->total_msecs % 1000);
	return prepare_free(&ctx, error_code_r, error_r);
}
