/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The source's INBOX as its POP3 server shows it: each message's UIDL and
   a hash of its header, read with Dovecot's pop3c storage as a mail user
   of its own beside the imapc one (same host, user, password and TLS
   mode).  The engine matches the hashes with its copies', so that the
   POP3 server here answers UIDL as the old one did and clients that leave
   mail on the server download nothing twice. */

#include "lib.h"
#include "array.h"
#include "hex-binary.h"
#include "sha1.h"
#include "hash-method.h"
#include "istream.h"
#include "istream-crlf.h"
#include "message-size.h"
#include "message-header-hash.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "mail-search-build.h"
#include "mail-storage-service.h"
#include "pop3c-settings.h"
#include "migrate-settings.h"
#include "migrate-source-private.h"

static const char *migrate_pop3_ssl_mode(enum migrate_ssl_mode mode)
{
	switch (mode) {
	case MIGRATE_SSL_NO:
		return "no";
	case MIGRATE_SSL_IMAPS:
		return "pop3s";
	case MIGRATE_SSL_STARTTLS:
		return "starttls";
	}
	i_unreached();
}

static const char *const *
source_pop3_userdb_fields(const struct migrate_settings *set,
			  const char *home, const char *resolver_dir)
{
	ARRAY_TYPE(const_string) fields;

	t_array_init(&fields, 12);
	migrate_source_userdb_server(&fields, "pop3c", set, home, resolver_dir,
		set->source_pop3_port, migrate_pop3_ssl_mode(set->source_ssl));
	array_append_zero(&fields);
	return array_front(&fields);
}

int migrate_source_pop3_init(struct migrate_source *source,
			     struct mail_storage_service_ctx *service_ctx,
			     struct mail_storage_service_user *dest_service_user,
			     const char **error_r)
{
	const struct migrate_settings *set = source->set;
	struct mail_storage_service_user *service_user;
	struct pop3c_settings *pop3c_set;
	struct mail_user *user;
	const char *error;
	int ret;

	if (migrate_source_service_lookup(source, service_ctx,
			dest_service_user,
			source_pop3_userdb_fields(set,
				migrate_source_home(source),
				source->resolver_dir),
			&service_user, &user, &error) < 0) {
		*error_r = t_strdup_printf("POP3 user initialization failed: %s",
					   error);
		return -1;
	}
	/* the password only now, after the settings were parsed */
	pop3c_set = (void *)mail_user_set_get_driver_settings(user->set_info,
							user->set, "pop3c");
	i_assert(pop3c_set != NULL);
	pop3c_set->pop3c_password = p_strdup(user->pool, set->source_password);
	ret = mail_namespaces_init_location(user, "pop3c:", &error);
	migrate_source_service_done(&service_user, dest_service_user);
	if (ret < 0) {
		*error_r = t_strdup_printf("POP3 namespace initialization "
					   "failed: %s", error);
		mail_user_deinit(&user);
		return -1;
	}
	source->pop3_user = user;
	return 0;
}

void migrate_source_pop3_deinit(struct migrate_source *source)
{
	if (source->pop3_user != NULL)
		mail_user_deinit(&source->pop3_user);
}

int migrate_mail_header_hash(struct mail *mail, const char **hash_r)
{
	struct message_header_hash_context hctx;
	struct message_size hdr_size;
	struct sha1_ctxt sha1;
	unsigned char digest[SHA1_RESULTLEN];
	struct istream *input, *lf_input;
	const unsigned char *data;
	size_t size;
	int ret = 0;

	if (mail_get_hdr_stream(mail, &hdr_size, &input) < 0)
		return -1;
	i_zero(&hctx);
	sha1_init(&sha1);
	input = i_stream_create_limit(input, hdr_size.physical_size);
	/* the same bytes whether stored with CRLF (the source) or LF
	   (Maildir here) */
	lf_input = i_stream_create_lf(input);
	i_stream_unref(&input);
	input = lf_input;
	while (i_stream_read_more(input, &data, &size) > 0) {
		/* the newest hash: it ignores what servers are known to
		   change between their IMAP and POP3 views (spaces, 8-bit
		   bytes) */
		message_header_hash_more(&hctx, &hash_method_sha1, &sha1,
					 MESSAGE_HEADER_HASH_MAX_VERSION,
					 data, size);
		i_stream_skip(input, size);
	}
	if (input->stream_errno != 0)
		ret = -1;
	i_stream_unref(&input);
	if (ret < 0)
		return -1;
	sha1_result(&sha1, digest);
	*hash_r = binary_to_hex(digest, sizeof(digest));
	return 0;
}

/* The POP3 INBOX, logged in; NULL with *code_r and *error_r. */
static struct mailbox *
source_pop3_open(struct migrate_source *source, enum migrate_error *code_r,
		 const char **error_r)
{
	enum mail_error mail_error;
	struct mailbox *box;

	i_assert(source->pop3_user != NULL);
	*code_r = MIGRATE_ERROR_TEMP;
	box = mailbox_alloc(source->pop3_user->namespaces->list, "INBOX",
			    MAILBOX_FLAG_READONLY);
	if (mailbox_sync(box, 0) < 0) {
		/* pop3c: a refused login is MAIL_ERROR_PARAMS with the
		   server's reply, [IN-USE] is MAIL_ERROR_INUSE */
		*error_r = t_strdup_printf("POP3: %s",
			mailbox_get_last_internal_error(box, &mail_error));
		if (mail_error == MAIL_ERROR_PARAMS)
			*code_r = MIGRATE_ERROR_SOURCE_AUTH;
		mailbox_free(&box);
		return NULL;
	}
	return box;
}

int migrate_source_pop3_read(struct migrate_source *source,
			     migrate_source_pop3_want_t *want,
			     migrate_source_pop3_copy_t *copy, void *context,
			     enum migrate_error *code_r, const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct mail_search_context *search_ctx;
	struct mail_search_args *search_args;
	struct mailbox *box;
	struct mail *mail;
	const char *uidl;
	int ret = 0;

	if ((box = source_pop3_open(source, code_r, error_r)) == NULL)
		return -1;
	t = mailbox_transaction_begin(box, 0, __func__);
	search_args = mail_search_build_init();
	mail_search_build_add_all(search_args);
	search_ctx = mailbox_search_init(t, search_args, NULL, 0, NULL);
	mail_search_args_unref(&search_args);
	while (ret == 0 && mailbox_search_next(search_ctx, &mail)) T_BEGIN {
		if (mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND,
				     &uidl) < 0) {
			*error_r = t_strdup_printf("POP3: message %u: %s",
				mail->seq,
				mailbox_get_last_internal_error(box, NULL));
			ret = -1;
		} else if (uidl[0] != '\0' && want(uidl, context) &&
			   copy(mail, uidl, mail->seq, context) < 0) {
			*code_r = MIGRATE_ERROR_NONE;
			ret = -1;
		}
	} T_END;
	if (mailbox_search_deinit(&search_ctx) < 0 && ret == 0) {
		*error_r = t_strdup_printf("POP3: %s",
			mailbox_get_last_internal_error(box, NULL));
		ret = -1;
	}
	(void)mailbox_transaction_commit(&t);
	mailbox_free(&box);
	return ret;
}

struct source_pop3_messages {
	pool_t pool;
	migrate_source_pop3_want_t *want;
	void *context;
	ARRAY_TYPE(migrate_source_pop3_message) *msgs;
	const char *error;
};

static bool source_pop3_messages_want(const char *uidl, void *context)
{
	struct source_pop3_messages *m = context;

	return m->want(uidl, m->context);
}

static int
source_pop3_messages_add(struct mail *mail, const char *uidl,
			 uint32_t pop3_seq, void *context)
{
	struct source_pop3_messages *m = context;
	struct migrate_source_pop3_message *msg;
	const char *hash;

	if (migrate_mail_header_hash(mail, &hash) < 0) {
		m->error = p_strdup_printf(m->pool, "POP3: message %u: %s",
			pop3_seq, mailbox_get_last_internal_error(mail->box,
								  NULL));
		return -1;
	}
	msg = array_append_space(m->msgs);
	msg->seq = pop3_seq;
	msg->uidl = p_strdup(m->pool, uidl);
	msg->hdr_hash = p_strdup(m->pool, hash);
	return 0;
}

int migrate_source_pop3_messages(struct migrate_source *source, pool_t pool,
				 migrate_source_pop3_want_t *want,
				 void *context,
				 ARRAY_TYPE(migrate_source_pop3_message) *msgs,
				 enum migrate_error *code_r,
				 const char **error_r)
{
	struct source_pop3_messages m = {
		.pool = pool,
		.want = want,
		.context = context,
		.msgs = msgs,
	};

	if (migrate_source_pop3_read(source, source_pop3_messages_want,
				     source_pop3_messages_add, &m,
				     code_r, error_r) < 0) {
		if (*code_r == MIGRATE_ERROR_NONE) {
			*code_r = MIGRATE_ERROR_TEMP;
			*error_r = m.error;
		}
		return -1;
	}
	return 0;
}
