/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The sync engine on real storage (lib-test and Dovecot's
   test-mail-storage-common): a source user (sdbox) and a destination user
   (Maildir) in ./.test-home, the source read through its storage
   (migrate_source_init_local()) instead of an IMAP server. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "ioloop.h"
#include "istream.h"
#include "unlink-directory.h"
#include "master-service.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage-service.h"
#include "mail-search-build.h"
#include "test-common.h"
#include "test-mail-storage-common.h"
#include "migrate-settings.h"
#include "migrate-state.h"
#include "migrate-source.h"
#include "migrate-sync.h"
#include "migrate-sync-private.h"

#include <unistd.h>

struct test_sync {
	struct test_mail_storage_ctx *storage;
	struct mail_user *src_user;
	struct mail_storage_service_user *src_service_user;
	struct mail_user *dest_user;
	const struct migrate_settings *set;
	pool_t pool;
	unsigned int msg_seq;
};

static struct test_sync t;

/* NULL-terminated "key", "value" pairs */
static const char *test_lookup(const char *key, void *context)
{
	const char *const *pairs = context;

	for (; pairs != NULL && pairs[0] != NULL; pairs += 2) {
		if (strcmp(pairs[0], key) == 0)
			return pairs[1];
	}
	return NULL;
}

static void test_sync_init(const char *const *settings)
{
	struct test_mail_storage_settings src_set = {
		.username = "src", .driver = "sdbox", .hierarchy_sep = "/",
	};
	struct test_mail_storage_settings dest_set = {
		.username = "dest", .driver = "maildir", .hierarchy_sep = "/",
	};
	const char *home, *error;

	i_zero(&t);
	t.pool = pool_alloconly_create("test sync", 1024);
	t.storage = test_mail_storage_init();
	test_mail_storage_init_user(t.storage, &src_set);
	t.src_user = t.storage->user;
	t.src_service_user = t.storage->service_user;
	test_mail_storage_init_user(t.storage, &dest_set);
	t.dest_user = t.storage->user;
	if (mail_user_get_home(t.dest_user, &home) <= 0)
		i_unreached();
	if (migrate_settings_read(t.pool, test_lookup, (void *)settings,
				  "dest", home, FALSE, &t.set, &error) < 0)
		i_fatal("settings: %s", error);
}

static void test_sync_deinit(void)
{
	test_mail_storage_deinit_user(t.storage);
	mail_user_deinit(&t.src_user);
	mail_storage_service_user_unref(&t.src_service_user);
	test_mail_storage_deinit(&t.storage);
	pool_unref(&t.pool);
}

static struct mailbox *
test_box(struct mail_user *user, const char *name, bool create)
{
	struct mailbox *box;

	box = mailbox_alloc(user->namespaces->list, name, 0);
	if (create && mailbox_create(box, NULL, FALSE) < 0 &&
	    mailbox_get_last_mail_error(box) != MAIL_ERROR_EXISTS)
		i_fatal("create %s: %s", name, mailbox_get_last_error(box, NULL));
	if (mailbox_sync(box, 0) < 0)
		i_fatal("sync %s: %s", name, mailbox_get_last_error(box, NULL));
	return box;
}

/* Append count messages to the source folder; a body of body_size
   bytes when not 0. */
static void test_src_append(const char *name, unsigned int count,
			    size_t body_size)
{
	struct mailbox *box = test_box(t.src_user, name, TRUE);
	struct mailbox_transaction_context *trans;
	struct mail_save_context *save;
	struct istream *input;
	string_t *msg;
	unsigned int i;

	trans = mailbox_transaction_begin(box,
		MAILBOX_TRANSACTION_FLAG_EXTERNAL, __func__);
	for (i = 0; i < count; i++) {
		t.msg_seq++;
		msg = t_str_new(256 + body_size);
		str_printfa(msg, "From: sender@example.com\r\n"
			    "Message-ID: <m%u@test.example>\r\n"
			    "Subject: message %u\r\n\r\n", t.msg_seq,
			    t.msg_seq);
		if (body_size == 0)
			str_printfa(msg, "body %u\r\n", t.msg_seq);
		while (str_len(msg) < body_size)
			str_append(msg, "0123456789abcdefghijklmnopqrstuvwxyz\r\n");
		input = i_stream_create_from_data(str_data(msg), str_len(msg));
		save = mailbox_save_alloc(trans);
		mailbox_save_set_flags(save, t.msg_seq % 2 == 0 ?
				       MAIL_SEEN : 0, NULL);
		mailbox_save_set_received_date(save,
			1600000000 + t.msg_seq * 3600, 0);
		if (mailbox_save_begin(&save, input) < 0)
			i_fatal("save: %s", mailbox_get_last_error(box, NULL));
		while (i_stream_read(input) > 0) {
			if (mailbox_save_continue(save) < 0)
				i_fatal("save: %s", mailbox_get_last_error(box, NULL));
		}
		if (mailbox_save_finish(&save) < 0)
			i_fatal("save: %s", mailbox_get_last_error(box, NULL));
		i_stream_unref(&input);
	}
	if (mailbox_transaction_commit(&trans) < 0)
		i_fatal("commit: %s", mailbox_get_last_error(box, NULL));
	mailbox_free(&box);
}

/* Expunge these UIDs of a folder. */
static void
test_expunge(struct mail_user *user, const char *name,
	     const uint32_t *uids, unsigned int count)
{
	struct mailbox *box = test_box(user, name, FALSE);
	struct mailbox_transaction_context *trans;
	struct mail *mail;
	unsigned int i;

	trans = mailbox_transaction_begin(box, 0, __func__);
	mail = mail_alloc(trans, 0, NULL);
	for (i = 0; i < count; i++) {
		if (mail_set_uid(mail, uids[i]))
			mail_expunge(mail);
	}
	mail_free(&mail);
	if (mailbox_transaction_commit(&trans) < 0 || mailbox_sync(box, 0) < 0)
		i_fatal("expunge: %s", mailbox_get_last_error(box, NULL));
	mailbox_free(&box);
}

/* The folder's UIDs as an IMAP set ("" when it does not exist). */
static const char *test_uids(struct mail_user *user, const char *name)
{
	struct mailbox *box;
	struct mailbox_transaction_context *trans;
	struct mail_search_args *args;
	struct mail_search_context *search;
	struct mail *mail;
	string_t *str = t_str_new(64);

	box = mailbox_alloc(user->namespaces->list, name, 0);
	if (mailbox_sync(box, 0) < 0) {
		mailbox_free(&box);
		return "";
	}
	trans = mailbox_transaction_begin(box, 0, __func__);
	args = mail_search_build_init();
	mail_search_build_add_all(args);
	search = mailbox_search_init(trans, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	while (mailbox_search_next(search, &mail))
		str_printfa(str, "%s%u", str_len(str) == 0 ? "" : ",", mail->uid);
	(void)mailbox_search_deinit(&search);
	(void)mailbox_transaction_commit(&trans);
	mailbox_free(&box);
	return str_c(str);
}

/* Whether the message of uid is byte for byte the same on both sides. */
static bool test_same_body(const char *name, uint32_t uid)
{
	struct mail_user *users[2] = { t.src_user, t.dest_user };
	string_t *bodies[2];
	struct mailbox *box;
	struct mailbox_transaction_context *trans;
	struct mail *mail;
	struct istream *input;
	const unsigned char *data;
	size_t size;
	unsigned int i;

	for (i = 0; i < 2; i++) {
		bodies[i] = t_str_new(1024);
		box = test_box(users[i], name, FALSE);
		trans = mailbox_transaction_begin(box, 0, __func__);
		mail = mail_alloc(trans, 0, NULL);
		if (mail_set_uid(mail, uid) &&
		    mail_get_stream(mail, NULL, NULL, &input) == 0) {
			while (i_stream_read_more(input, &data, &size) > 0) {
				str_append_data(bodies[i], data, size);
				i_stream_skip(input, size);
			}
		}
		mail_free(&mail);
		(void)mailbox_transaction_commit(&trans);
		mailbox_free(&box);
	}
	return str_len(bodies[0]) > 0 && str_equals(bodies[0], bodies[1]);
}

static int
test_sync_run(enum migrate_sync_mode mode, bool dry_run, bool force,
	      struct migrate_sync_stats *stats_r,
	      enum migrate_error *code_r)
{
	struct migrate_sync_options opts;
	struct migrate_source *source;
	const char *error;
	int ret;

	i_zero(&opts);
	opts.mode = mode;
	opts.dry_run = dry_run;
	opts.force = force;
	source = migrate_source_init_local(t.dest_user, t.set, t.src_user);
	ret = migrate_sync_run(t.dest_user, source, t.set, &opts, stats_r,
			       code_r, &error);
	migrate_source_deinit(&source);
	return ret;
}

static void test_state_dir_copy(const char *from, const char *to)
{
	const char *error;

	if (unlink_directory(to, UNLINK_DIRECTORY_FLAG_RMDIR, &error) < 0 &&
	    errno != ENOENT)
		i_fatal("%s", error);
	if (system(t_strdup_printf("cp -a '%s' '%s'", from, to)) != 0)
		i_fatal("cp -a %s %s failed", from, to);
}

static void test_migrate_sync_copy(void)
{
	struct migrate_sync_stats stats;
	enum migrate_error code;

	test_begin("sync: a first copy, then an unchanged re-run");
	test_sync_init(NULL);
	test_src_append("INBOX", 5, 0);
	test_src_append("Work/Projects", 3, 0);
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) == 0);
	test_assert(code == MIGRATE_ERROR_NONE);
	test_assert(stats.messages_copied == 8);
	test_assert(stats.messages_deleted == 0);
	/* the source's UIDs are kept */
	test_assert_strcmp(test_uids(t.dest_user, "INBOX"), "1,2,3,4,5");
	test_assert_strcmp(test_uids(t.dest_user, "Work/Projects"), "1,2,3");
	test_assert(test_same_body("INBOX", 4));

	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) == 0);
	test_assert(stats.messages_copied == 0);
	test_assert(stats.messages_updated == 0);
	test_assert(stats.folders_unchanged == stats.folders);
	test_sync_deinit();
	test_end();
}

static void test_migrate_sync_dry_run(void)
{
	struct migrate_sync_stats stats;
	enum migrate_error code;

	test_begin("sync: a dry run counts and changes nothing");
	test_sync_init(NULL);
	test_src_append("INBOX", 2, 0);
	test_src_append("Archive", 3, 0);
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, TRUE, FALSE,
				  &stats, &code) == 0);
	test_assert(stats.messages_copied == 5);
	test_assert(stats.bytes_copied > 0);
	test_assert_strcmp(test_uids(t.dest_user, "Archive"), "");
	test_assert_strcmp(test_uids(t.dest_user, "INBOX"), "");
	test_sync_deinit();
	test_end();
}

static void test_migrate_sync_crash_resume(void)
{
	struct migrate_sync_stats stats;
	enum migrate_error code;
	const char *state_dir, *saved;

	test_begin("sync: resume after the saves but before the state");
	test_sync_init(NULL);
	state_dir = t.set->state_dir;
	saved = t_strconcat(state_dir, ".saved", NULL);
	test_src_append("INBOX", 4, 0);
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) == 0);
	test_assert(stats.messages_copied == 4);
	/* the state as it was before the next copy */
	test_state_dir_copy(state_dir, saved);
	test_src_append("INBOX", 3, 0);
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) == 0);
	test_assert(stats.messages_copied == 3);
	/* a crash lost what the state learned of the 3 copies */
	test_state_dir_copy(saved, state_dir);
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) == 0);
	test_assert(stats.messages_copied == 0);
	test_assert(stats.messages_foreign == 0);
	test_assert_strcmp(test_uids(t.dest_user, "INBOX"),
			   "1,2,3,4,5,6,7");
	/* and the state knows them now: nothing more to do */
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) == 0);
	test_assert(stats.messages_copied == 0);
	test_assert(stats.messages_deleted == 0);
	test_sync_deinit();
	test_end();
}

static uint32_t test_uidvalidity(struct mail_user *user, const char *name)
{
	struct mailbox *box = test_box(user, name, FALSE);
	struct mailbox_status status;

	mailbox_get_open_status(box, STATUS_UIDVALIDITY, &status);
	mailbox_free(&box);
	return status.uidvalidity;
}

/* The recorded destination name of a folder (NULL: none). */
static const char *test_state_dest_name(const char *src_name)
{
	struct migrate_state *state;
	struct migrate_state_folder *folder;
	const char *name = NULL, *error;
	bool locked;

	if (migrate_state_open(t.set->state_dir, &state, &locked, &error) < 0)
		i_fatal("state: %s", error);
	folder = migrate_state_folder_lookup(state, src_name);
	if (folder != NULL)
		name = t_strdup(folder->dest_name);
	migrate_state_close(&state);
	return name;
}

static void test_migrate_sync_state_bad_name(void)
{
	struct migrate_sync_stats stats;
	struct migrate_state *state;
	struct migrate_state_folder *folder;
	enum migrate_error code;
	const char *error;
	bool locked;

	test_begin("sync: a recorded name never created here is replaced");
	test_sync_init(NULL);
	test_src_append("INBOX", 1, 0);
	test_src_append("Work", 2, 0);
	/* an earlier version recorded a name that Dovecot then refused
	   to create ("Creating Wo\001rk failed: Control characters not
	   allowed in new mailbox names") */
	if (migrate_state_open(t.set->state_dir, &state, &locked,
			       &error) < 0)
		i_fatal("state: %s", error);
	folder = migrate_state_folder_add(state, "Work", "Wo\001rk");
	folder->src_uidvalidity = test_uidvalidity(t.src_user, "Work");
	migrate_state_folder_update(state, folder);
	if (migrate_state_commit(state, &error) < 0)
		i_fatal("state: %s", error);
	migrate_state_close(&state);

	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) == 0);
	test_assert(code == MIGRATE_ERROR_NONE);
	test_assert(stats.messages_copied == 3);
	test_assert_strcmp(test_uids(t.dest_user, "Work"), "1,2");
	test_assert_strcmp(test_state_dest_name("Work"), "Work");
	/* and it stays */
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) == 0);
	test_assert(stats.messages_copied == 0);
	test_assert(stats.folders_created == 0);
	test_sync_deinit();
	test_end();
}

static void test_migrate_sync_final(void)
{
	struct migrate_sync_stats stats;
	enum migrate_error code;
	const uint32_t user_deleted[] = { 2 }, src_gone[] = { 3 };

	test_begin("sync: the final sync copies only what is new");
	test_sync_init(NULL);
	test_src_append("INBOX", 5, 0);
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) == 0);
	/* after cutover: the user deletes one here, the old server loses
	   one and receives two */
	test_expunge(t.dest_user, "INBOX", user_deleted, 1);
	test_expunge(t.src_user, "INBOX", src_gone, 1);
	test_src_append("INBOX", 2, 0);
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_FINAL, FALSE, FALSE,
				  &stats, &code) == 0);
	test_assert(stats.messages_copied == 2);
	test_assert(stats.messages_deleted == 0);
	test_assert_strcmp(test_uids(t.dest_user, "INBOX"), "1,3,4,5,6,7");
	/* again: nothing */
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_FINAL, FALSE, FALSE,
				  &stats, &code) == 0);
	test_assert(stats.messages_copied == 0);
	test_sync_deinit();
	test_end();
}

static void test_migrate_sync_delete_budget(void)
{
	static const char *const settings[] = {
		"migrate_max_delete_percent", "20", NULL
	};
	const uint32_t gone[] = { 1, 2, 3, 4, 5 };
	struct migrate_sync_stats stats;
	enum migrate_error code;

	test_begin("sync: deletions beyond the budget need force");
	test_sync_init(settings);
	test_src_append("INBOX", 10, 0);
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) == 0);
	test_expunge(t.src_user, "INBOX", gone, N_ELEMENTS(gone));
	test_expect_error_string("Refusing to delete 5 of 10 copied messages");
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) < 0);
	test_assert(code == MIGRATE_ERROR_DELETE_LIMIT);
	test_assert(stats.messages_deleted == 0);
	test_assert(stats.deletes_withheld == 5);
	test_assert_strcmp(test_uids(t.dest_user, "INBOX"),
			   "1,2,3,4,5,6,7,8,9,10");
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, TRUE,
				  &stats, &code) == 0);
	test_assert(stats.messages_deleted == 5);
	test_assert_strcmp(test_uids(t.dest_user, "INBOX"), "6,7,8,9,10");
	test_sync_deinit();
	test_end();
}

static void test_migrate_sync_large(void)
{
	struct migrate_sync_stats stats;
	enum migrate_error code;

	test_begin("sync: a large message is read in pieces, byte for byte");
	test_sync_init(NULL);
	test_src_append("INBOX", 1, 0);
	test_src_append("INBOX", 1, MIGRATE_SOURCE_LARGE_SIZE + 100000);
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) == 0);
	test_assert(stats.messages_copied == 2);
	test_assert(stats.bytes_copied > MIGRATE_SOURCE_LARGE_SIZE);
	test_assert(test_same_body("INBOX", 2));
	test_sync_deinit();
	test_end();
}

static void test_migrate_sync_max_message_size(void)
{
	static const char *const settings[] = {
		"migrate_max_message_size", "2000", NULL
	};
	struct migrate_sync_stats stats;
	enum migrate_error code;

	test_begin("sync: a message over migrate_max_message_size is left out");
	test_sync_init(settings);
	test_src_append("INBOX", 2, 0);
	test_src_append("INBOX", 1, 5000);
	/* the message left out, and the run's summary of it */
	test_expect_errors(2);
	test_assert(test_sync_run(MIGRATE_SYNC_MODE_MIRROR, FALSE, FALSE,
				  &stats, &code) < 0);
	test_assert(code == MIGRATE_ERROR_REJECTED);
	test_assert(stats.messages_copied == 2);
	test_assert(stats.messages_rejected == 1);
	test_assert_strcmp(test_uids(t.dest_user, "INBOX"), "1,2");
	test_sync_deinit();
	test_end();
}

static void test_migrate_sync_pop3_out_of_order(void)
{
	static const struct {
		uint32_t uids[8];
		unsigned int count, out_of_order;
	} tests[] = {
		{ { 0 }, 0, 0 },
		{ { 7 }, 1, 0 },
		{ { 1, 2, 3, 9 }, 4, 0 },
		/* two swapped: one is out of order */
		{ { 1, 3, 2, 4 }, 4, 1 },
		/* the last one first */
		{ { 5, 1, 2, 3, 4 }, 5, 1 },
		{ { 4, 3, 2, 1 }, 4, 3 },
		/* the longest run is not the one that starts first */
		{ { 10, 11, 1, 2, 3, 12 }, 6, 2 },
		{ { 2, 1, 4, 3, 6, 5 }, 6, 3 },
	};
	ARRAY_TYPE(uint32_t) uids;
	unsigned int i;

	test_begin("sync: POP3 order, messages out of it");
	for (i = 0; i < N_ELEMENTS(tests); i++) T_BEGIN {
		t_array_init(&uids, 8);
		array_append(&uids, tests[i].uids, tests[i].count);
		test_assert_idx(migrate_sync_pop3_out_of_order(&uids) ==
				tests[i].out_of_order, i);
	} T_END;
	test_end();
}

int main(int argc, char **argv)
{
	static void (*const test_functions[])(void) = {
		test_migrate_sync_copy,
		test_migrate_sync_dry_run,
		test_migrate_sync_crash_resume,
		test_migrate_sync_final,
		test_migrate_sync_state_bad_name,
		test_migrate_sync_delete_budget,
		test_migrate_sync_large,
		test_migrate_sync_max_message_size,
		test_migrate_sync_pop3_out_of_order,
		NULL
	};
	int ret;

	master_service = master_service_init("test-migrate-sync",
					     MASTER_SERVICE_FLAG_STANDALONE |
					     MASTER_SERVICE_FLAG_DONT_SEND_STATS |
					     MASTER_SERVICE_FLAG_NO_CONFIG_SETTINGS |
					     MASTER_SERVICE_FLAG_NO_SSL_INIT |
					     MASTER_SERVICE_FLAG_NO_INIT_DATASTACK_FRAME,
					     &argc, &argv, "");
	ret = test_run(test_functions);
	master_service_deinit(&master_service);
	return ret;
}
