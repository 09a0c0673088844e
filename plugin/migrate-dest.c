/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "istream.h"
#include "array.h"
#include "mail-user.h"
#include "mail-storage-private.h"
#include "mail-storage-settings.h"
#include "mail-index.h"
#include "mail-cache.h"
#include "mail-search-build.h"
#include "module-dir.h"
#include "settings-parser.h"
#include "mail-storage-service.h"
#include "quota.h"
#include "migrate-settings.h"
#include "migrate-dest.h"

struct event_category event_category_migrate = {
	.name = "migrate",
};

enum migrate_error migrate_dest_error(struct mailbox *box, const char *what,
				      const char **error_r)
{
	enum mail_error error;
	const char *errstr;

	errstr = mailbox_get_last_internal_error(box, &error);
	*error_r = t_strdup_printf("%s %s failed: %s", what,
				   mailbox_get_vname(box), errstr);
	/* a full file system is no quota to Dovecot 2.3.19 (an internal
	   error with the errno's text), but the same to the admin: room
	   must be made before a re-run can go on */
	if (error == MAIL_ERROR_NOQUOTA ||
	    strstr(errstr, "No space left on device") != NULL ||
	    strstr(errstr, "Disk quota exceeded") != NULL)
		return MIGRATE_ERROR_DEST_QUOTA;
	return MIGRATE_ERROR_FAILED;
}

bool migrate_dest_state_fsync(struct mail_user *user,
			      const struct migrate_settings *set)
{
	return set->fsync &&
		mail_user_set_get_storage_set(user)->parsed_fsync_mode !=
		FSYNC_MODE_NEVER;
}

uoff_t migrate_dest_max_message_size(struct mail_user *user,
				     const struct migrate_settings *set,
				     const char **reason_r)
{
	const char *value, *error;
	uoff_t quota_max;

	*reason_r = t_strdup_printf("larger than %s (%"PRIuUOFF_T" bytes)",
				    MIGRATE_SETTING_MAX_MESSAGE_SIZE,
				    set->max_message_size);
	/* the quota plugin's own limit: the same words as its refusal */
	value = mail_user_plugin_getenv(user, "quota_max_mail_size");
	if (value == NULL || settings_get_size(value, &quota_max, &error) < 0 ||
	    quota_max == 0 || quota_max >= set->max_message_size)
		return set->max_message_size;
	*reason_r = t_strdup_printf("the destination refused it: Mail size is "
		"larger than the maximum size allowed by server configuration "
		"(quota_max_mail_size, %"PRIuUOFF_T" bytes)", quota_max);
	return quota_max;
}

/* The quota plugin is loaded only when mail_plugins has it, so its
   functions are looked up in the loaded module, not linked. */
bool migrate_dest_quota_get(struct mail_user *user,
			    struct migrate_dest_quota *quota_r)
{
	typeof(quota_root_iter_init_user) *iter_init;
	typeof(quota_root_iter_next) *iter_next;
	typeof(quota_root_iter_deinit) *iter_deinit;
	typeof(quota_get_resource) *get_resource;
	struct quota_root_iter *iter;
	struct quota_root *root;
	enum quota_get_result ret;
	struct module *module;
	uint64_t value, limit;
	const char *error;
	bool known = FALSE;

	i_zero(quota_r);
	module = module_dir_find(mail_storage_service_modules, "quota");
	if (module == NULL || !mail_user_is_plugin_loaded(user, module))
		return FALSE;
	iter_init = module_get_symbol(module, "quota_root_iter_init_user");
	iter_next = module_get_symbol(module, "quota_root_iter_next");
	iter_deinit = module_get_symbol(module, "quota_root_iter_deinit");
	get_resource = module_get_symbol(module, "quota_get_resource");
	if (iter_init == NULL || iter_next == NULL || iter_deinit == NULL ||
	    get_resource == NULL)
		return FALSE;

	iter = iter_init(user);
	while (!known && (root = iter_next(iter)) != NULL) {
		ret = get_resource(root, "", QUOTA_NAME_STORAGE_KILOBYTES,
				   &value, &limit, &error);
		if (ret == QUOTA_GET_RESULT_LIMITED ||
		    ret == QUOTA_GET_RESULT_UNLIMITED) {
			known = TRUE;
			quota_r->limited = ret == QUOTA_GET_RESULT_LIMITED;
			quota_r->used_kb = value;
			quota_r->limit_kb = quota_r->limited ? limit : 0;
		}
	}
	iter_deinit(&iter);
	return known;
}

void migrate_dest_cache_prepare(struct mailbox *box)
{
	if (box->cache == NULL || mail_index_is_in_memory(box->index) ||
	    mail_cache_exists(box->cache))
		return;
	/* 0: there is none (-1: an error, which the save meets again) */
	if (mail_cache_open_and_verify(box->cache) != 0)
		return;
	/* purge_file_seq 0: only created when it does not exist */
	(void)mail_cache_purge(box->cache, 0, "migrate: saving");
}

int migrate_dest_saved_uids(struct mailbox *box,
			    const struct mail_transaction_commit_changes *changes,
			    unsigned int count, ARRAY_TYPE(uint32_t) *dest_uids,
			    const char **error_r)
{
	struct seq_range_iter iter;
	unsigned int i;
	uint32_t uid;

	if (seq_range_count(&changes->saved_uids) != count) {
		*error_r = t_strdup_printf(
			"%s: the commit returned %u UIDs for %u saved messages",
			mailbox_get_vname(box),
			seq_range_count(&changes->saved_uids), count);
		return -1;
	}
	seq_range_array_iter_init(&iter, &changes->saved_uids);
	for (i = 0; i < count; i++) {
		if (!seq_range_array_iter_nth(&iter, i, &uid))
			i_unreached();
		array_push_back(dest_uids, &uid);
	}
	return 0;
}

struct mail_search_context *
migrate_search_all(struct mailbox_transaction_context *t,
		   enum mail_fetch_field wanted_fields)
{
	struct mail_search_args *search_args;
	struct mail_search_context *search_ctx;

	search_args = mail_search_build_init();
	mail_search_build_add_all(search_args);
	search_ctx = mailbox_search_init(t, search_args, NULL,
					 wanted_fields, NULL);
	mail_search_args_unref(&search_args);
	return search_ctx;
}

struct mail_search_context *
migrate_search_uids(struct mailbox_transaction_context *t,
			 const ARRAY_TYPE(seq_range) *uids,
			 enum mail_fetch_field wanted_fields,
			 struct mailbox_header_lookup_ctx *wanted_headers)
{
	struct mail_search_args *search_args;
	struct mail_search_arg *sarg;
	struct mail_search_context *search_ctx;

	search_args = mail_search_build_init();
	sarg = mail_search_build_add(search_args, SEARCH_UIDSET);
	p_array_init(&sarg->value.seqset, search_args->pool,
		     array_count(uids));
	array_append_array(&sarg->value.seqset, uids);
	search_ctx = mailbox_search_init(t, search_args, NULL,
					 wanted_fields, wanted_headers);
	mail_search_args_unref(&search_args);
	return search_ctx;
}

enum migrate_dest_save_result
migrate_dest_save_stream(struct mail_save_context **_save,
			 struct istream *input)
{
	struct mail_save_context *save = *_save;
	ssize_t rret;
	int ret = 0;

	*_save = NULL;
	if (mailbox_save_begin(&save, input) < 0)
		return MIGRATE_DEST_SAVE_FAILED;
	do {
		if (mailbox_save_continue(save) < 0) {
			ret = -1;
			break;
		}
	} while ((rret = i_stream_read(input)) > 0 || rret == -2);
	if (input->stream_errno != 0) {
		/* never save a partial message */
		mailbox_save_cancel(&save);
		return MIGRATE_DEST_SAVE_INPUT_FAILED;
	}
	if (ret < 0) {
		mailbox_save_cancel(&save);
		return MIGRATE_DEST_SAVE_FAILED;
	}
	if (mailbox_save_finish(&save) < 0)
		return MIGRATE_DEST_SAVE_FAILED;
	return MIGRATE_DEST_SAVE_OK;
}
