/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "mail-user.h"
#include "mail-storage-settings.h"
#include "mail-search-build.h"
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
