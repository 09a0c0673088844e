/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "istream.h"
#include "ostream.h"
#include "safe-mkstemp.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "mailbox-list-iter.h"
#include "migrate-dest.h"
#include "migrate-source-private.h"

#include <unistd.h>

/* A source on this server's storage (migrate_source_init_local()): what
   the remote source does over its own connection, done through the
   source user's storage. */

static void source_local_deinit(struct migrate_source *source ATTR_UNUSED)
{
}

static struct mailbox *
source_local_open(struct migrate_source *source, const char *mailbox,
		  const char **error_r)
{
	struct mailbox *box;

	box = mailbox_alloc(source->user->namespaces->list, mailbox,
			    MAILBOX_FLAG_READONLY);
	if (mailbox_sync(box, 0) < 0) {
		*error_r = t_strdup_printf("Opening %s failed: %s", mailbox,
			mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&box);
		return NULL;
	}
	return box;
}

/* Copy input into a temporary file of our own: the stream must outlive
   the mailbox it came from. */
static int
source_local_copy_temp(struct migrate_source *source, struct istream *input,
		       struct istream **input_r, const char **error_r)
{
	struct ostream *output;
	string_t *path = t_str_new(128);
	int fd, ret = 0;

	mail_user_set_get_temp_prefix(path, source->dest_user->set);
	fd = safe_mkstemp_hostpid(path, 0600, (uid_t)-1, (gid_t)-1);
	if (fd == -1) {
		*error_r = t_strdup_printf("safe_mkstemp(%s) failed: %m",
					   str_c(path));
		return -1;
	}
	i_unlink(str_c(path));
	output = o_stream_create_fd(fd, IO_BLOCK_SIZE);
	if (o_stream_send_istream(output, input) != OSTREAM_SEND_ISTREAM_RESULT_FINISHED ||
	    o_stream_finish(output) < 0) {
		*error_r = t_strdup_printf("Copying to %s failed: %s",
			str_c(path), input->stream_errno != 0 ?
			i_stream_get_error(input) : o_stream_get_error(output));
		ret = -1;
	}
	o_stream_destroy(&output);
	if (ret < 0) {
		i_close_fd(&fd);
		return -1;
	}
	*input_r = i_stream_create_fd_autoclose(&fd, IO_BLOCK_SIZE);
	return 0;
}

static int
source_local_fetch_large(struct migrate_source *source, const char *mailbox,
			 uint32_t uid, uoff_t size ATTR_UNUSED,
			 struct istream **input_r,
			 time_t *received_r ATTR_UNUSED, bool *expunged_r,
			 bool *refused_r ATTR_UNUSED, const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct mailbox *box;
	struct mail *mail;
	struct istream *input;
	int ret = -1;

	if ((box = source_local_open(source, mailbox, error_r)) == NULL)
		return -1;
	t = mailbox_transaction_begin(box, 0, __func__);
	mail = mail_alloc(t, MAIL_FETCH_STREAM_HEADER |
			  MAIL_FETCH_STREAM_BODY, NULL);
	if (!mail_set_uid(mail, uid)) {
		*expunged_r = TRUE;
		*error_r = t_strdup_printf("UID %u is gone", uid);
	} else if (mail_get_stream(mail, NULL, NULL, &input) < 0) {
		*expunged_r = mailbox_get_last_mail_error(box) ==
			MAIL_ERROR_EXPUNGED;
		*error_r = mailbox_get_last_internal_error(box, NULL);
	} else {
		ret = source_local_copy_temp(source, input, input_r, error_r);
	}
	mail_free(&mail);
	(void)mailbox_transaction_commit(&t);
	mailbox_free(&box);
	return ret;
}

static int
source_local_list_names(struct migrate_source *source, pool_t pool,
			ARRAY_TYPE(const_string) *names, const char **error_r)
{
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	const char *name;

	iter = mailbox_list_iter_init(source->user->namespaces->list, "*",
				      MAILBOX_LIST_ITER_RETURN_NO_FLAGS);
	while ((info = mailbox_list_iter_next(iter)) != NULL) {
		name = p_strdup(pool, info->vname);
		array_push_back(names, &name);
	}
	if (mailbox_list_iter_deinit(&iter) < 0) {
		*error_r = mailbox_list_get_last_internal_error(
			source->user->namespaces->list, NULL);
		return -1;
	}
	return 0;
}

static int
source_local_uids_present(struct migrate_source *source, const char *mailbox,
			  const ARRAY_TYPE(seq_range) *uids,
			  ARRAY_TYPE(seq_range) *present,
			  uint32_t *uidvalidity_r, const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct mail_search_context *search_ctx;
	struct mailbox_status status;
	struct mailbox *box;
	struct mail *mail;
	int ret = 0;

	if ((box = source_local_open(source, mailbox, error_r)) == NULL)
		return -1;
	mailbox_get_open_status(box, STATUS_UIDVALIDITY, &status);
	*uidvalidity_r = status.uidvalidity;
	t = mailbox_transaction_begin(box, 0, __func__);
	search_ctx = migrate_search_uids(t, uids, 0, NULL);
	while (mailbox_search_next(search_ctx, &mail))
		seq_range_array_add(present, mail->uid);
	if (mailbox_search_deinit(&search_ctx) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		ret = -1;
	}
	(void)mailbox_transaction_commit(&t);
	mailbox_free(&box);
	return ret;
}

static int
source_local_message_size(struct migrate_source *source, const char *mailbox,
			  uint32_t uid, uoff_t *size_r, const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct mailbox *box;
	struct mail *mail;
	int ret = 0;

	if ((box = source_local_open(source, mailbox, error_r)) == NULL)
		return -1;
	t = mailbox_transaction_begin(box, 0, __func__);
	mail = mail_alloc(t, MAIL_FETCH_VIRTUAL_SIZE, NULL);
	if (!mail_set_uid(mail, uid)) {
		*error_r = t_strdup_printf("UID %u is gone", uid);
		ret = -1;
	} else if (mail_get_virtual_size(mail, size_r) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		ret = -1;
	}
	mail_free(&mail);
	(void)mailbox_transaction_commit(&t);
	mailbox_free(&box);
	return ret;
}

static int
source_local_mailbox_exists(struct migrate_source *source,
			    const char *mailbox, bool *exists_r,
			    const char **error_r)
{
	enum mailbox_existence existence;
	struct mailbox *box;
	int ret = 0;

	box = mailbox_alloc(source->user->namespaces->list, mailbox,
			    MAILBOX_FLAG_READONLY);
	if (mailbox_exists(box, FALSE, &existence) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		ret = -1;
	} else {
		*exists_r = existence != MAILBOX_EXISTENCE_NONE;
	}
	mailbox_free(&box);
	return ret;
}

const struct migrate_source_vfuncs migrate_source_local_vfuncs = {
	.deinit = source_local_deinit,
	.fetch_large = source_local_fetch_large,
	.list_names = source_local_list_names,
	.uids_present = source_local_uids_present,
	.message_size = source_local_message_size,
	.mailbox_exists = source_local_mailbox_exists,
};
