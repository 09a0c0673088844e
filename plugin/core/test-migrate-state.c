/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "time-util.h"
#include "unlink-directory.h"
#include "write-full.h"
#include "migrate-state.h"
#include "test-migrate.h"

#include <stdio.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>

static const char *test_root;
static unsigned int test_dir_counter;

/* a fresh directory name for each test, created by migrate_state_open() */
static const char *test_state_dir(void)
{
	return t_strdup_printf("%s/%u/state", test_root, ++test_dir_counter);
}

static struct migrate_state *test_state_open(const char *dir)
{
	struct migrate_state *state;
	const char *error;
	bool locked;

	if (migrate_state_open(dir, &state, &locked, &error) < 0) {
		i_error("migrate_state_open(%s) failed: %s", dir, error);
		return NULL;
	}
	test_assert(!locked);
	return state;
}

static void test_state_flush(struct migrate_state *state)
{
	const char *error;

	if (migrate_state_flush(state, TRUE, &error) < 0) {
		i_error("migrate_state_flush() failed: %s", error);
		test_assert(FALSE);
	}
}

static void test_state_commit(struct migrate_state *state)
{
	const char *error;

	if (migrate_state_commit(state, &error) < 0) {
		i_error("migrate_state_commit() failed: %s", error);
		test_assert(FALSE);
	}
}

static bool test_file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static off_t test_file_size(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -1;
	return st.st_size;
}

static void test_write_file(const char *path, const char *data, bool append)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC),
		  0600);
	if (fd == -1)
		i_fatal("open(%s) failed: %m", path);
	if (write_full(fd, data, strlen(data)) < 0)
		i_fatal("write(%s) failed: %m", path);
	i_close_fd(&fd);
}

static const char *test_read_file(const char *path)
{
	string_t *str = t_str_new(256);
	char buf[1024];
	ssize_t ret;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd == -1)
		i_fatal("open(%s) failed: %m", path);
	while ((ret = read(fd, buf, sizeof(buf))) > 0)
		str_append_data(str, buf, ret);
	if (ret < 0)
		i_fatal("read(%s) failed: %m", path);
	i_close_fd(&fd);
	return str_c(str);
}

static const char *const test_odd_names[] = {
	"INBOX",
	"with space",
	"tab\there",
	"new\nline",
	"cr\rlf\r\n",
	"\001ctrl\001",
	"back\\slash",
	"A\xc3\xa7\xc3\xa3o/Relat\xc3\xb3rios",
	"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	" ",
	"",
};

static void test_migrate_state_names(void)
{
	struct migrate_state *state;
	struct migrate_state_folder *folder, *const *folders;
	const char *dir;
	unsigned int i, count, pass;

	test_begin("migrate state folder names and fields");
	/* pass 0 reloads from the journal, pass 1 from the state file */
	for (pass = 0; pass < 2; pass++) {
		dir = test_state_dir();
		state = test_state_open(dir);
		for (i = 0; i < N_ELEMENTS(test_odd_names); i++) {
			const char *dest = t_strconcat("d:", test_odd_names[i],
						       NULL);

			folder = migrate_state_folder_add(state,
				test_odd_names[i], dest);
			folder->src_uidvalidity = 1000 + i;
			folder->src_uidnext = 2000 + i;
			folder->src_messages = i;
			folder->src_highestmodseq = 0x1000000000ULL + i;
			folder->dest_uidvalidity = (uint32_t)-1 - i;
			folder->dest_uidnext = 3000 + i;
			folder->dest_pending_uidnext = 4000 + i;
			/* temporary memory: update must copy it */
			folder->dest_name = t_strconcat("dest:",
				test_odd_names[i], NULL);
			migrate_state_folder_update(state, folder);
		}
		if (pass == 0)
			test_state_flush(state);
		else
			test_state_commit(state);
		migrate_state_close(&state);
		test_assert(test_file_exists(t_strconcat(dir, "/journal",
							 NULL)) == (pass == 0));

		state = test_state_open(dir);
		folders = array_get(migrate_state_get_folders(state), &count);
		test_assert_idx(count == N_ELEMENTS(test_odd_names), pass);
		for (i = 0; i < count && i < N_ELEMENTS(test_odd_names); i++) {
			folder = folders[i];
			test_assert_idx(folder->id == i + 1, i);
			test_assert_strcmp_idx(folder->src_name,
					       test_odd_names[i], i);
			test_assert_strcmp_idx(folder->dest_name,
				t_strconcat("dest:", test_odd_names[i], NULL),
				i);
			test_assert_idx(folder->src_uidvalidity == 1000 + i, i);
			test_assert_idx(folder->src_uidnext == 2000 + i, i);
			test_assert_idx(folder->src_messages == i, i);
			test_assert_idx(folder->src_highestmodseq ==
					0x1000000000ULL + i, i);
			test_assert_idx(folder->dest_uidvalidity ==
					(uint32_t)-1 - i, i);
			test_assert_idx(folder->dest_uidnext == 3000 + i, i);
			test_assert_idx(folder->dest_pending_uidnext == 4000 + i, i);
			test_assert_idx(array_count(&folder->map) == 0, i);
			test_assert_idx(migrate_state_folder_lookup(state,
				test_odd_names[i]) == folder, i);
		}
		test_assert(migrate_state_folder_lookup(state, "none") == NULL);
		migrate_state_close(&state);
	}
	test_end();
}

static bool test_map_is_sorted(const struct migrate_state_folder *folder)
{
	const struct migrate_uid_map *maps;
	unsigned int i, count;

	maps = array_get(&folder->map, &count);
	for (i = 1; i < count; i++) {
		if (maps[i-1].src_uid >= maps[i].src_uid)
			return FALSE;
	}
	return TRUE;
}

static void test_migrate_state_map(void)
{
	struct migrate_state *state;
	struct migrate_state_folder *folder;
	const struct migrate_uid_map *map;
	const char *dir;
	uint32_t uid;
	unsigned int i;

	test_begin("migrate state map");
	dir = test_state_dir();
	state = test_state_open(dir);
	folder = migrate_state_folder_add(state, "INBOX", "INBOX");
	test_assert(migrate_state_map_lookup(folder, 1) == NULL);
	test_assert(migrate_state_map_lookup_dest(folder, 1) == NULL);

	/* in order */
	for (uid = 10; uid <= 20; uid++)
		migrate_state_map_add(state, folder, uid, uid + 100);
	/* out of order: before, between and after */
	migrate_state_map_add(state, folder, 5, 200);
	migrate_state_map_add(state, folder, 1, 201);
	migrate_state_map_add(state, folder, 30, 202);
	migrate_state_map_add(state, folder, 25, 203);
	migrate_state_map_add(state, folder, 3, 204);
	/* replace */
	migrate_state_map_add(state, folder, 15, 300);
	migrate_state_map_add(state, folder, 30, 301);
	/* remove, also ones that don't exist */
	migrate_state_map_remove(state, folder, 12);
	migrate_state_map_remove(state, folder, 2);
	migrate_state_map_remove(state, folder, 1000);

	for (i = 0; i < 2; i++) {
		test_assert_idx(array_count(&folder->map) == 11 + 5 - 1, i);
		test_assert_idx(test_map_is_sorted(folder), i);
		map = migrate_state_map_lookup(folder, 15);
		test_assert_idx(map != NULL && map->dest_uid == 300, i);
		map = migrate_state_map_lookup(folder, 30);
		test_assert_idx(map != NULL && map->dest_uid == 301, i);
		map = migrate_state_map_lookup(folder, 1);
		test_assert_idx(map != NULL && map->dest_uid == 201, i);
		map = migrate_state_map_lookup(folder, 20);
		test_assert_idx(map != NULL && map->dest_uid == 120, i);
		test_assert_idx(!migrate_state_map_lookup(folder, 12), i);
		test_assert_idx(!migrate_state_map_lookup(folder, 2), i);
		test_assert_idx(!migrate_state_map_lookup(folder, 31), i);
		map = migrate_state_map_lookup_dest(folder, 204);
		test_assert_idx(map != NULL && map->src_uid == 3, i);
		/* replaced and removed */
		test_assert_idx(!migrate_state_map_lookup_dest(folder, 115), i);
		test_assert_idx(!migrate_state_map_lookup_dest(folder, 112), i);

		if (i == 0) {
			/* the same after replaying the journal */
			test_state_flush(state);
			migrate_state_close(&state);
			state = test_state_open(dir);
			folder = migrate_state_folder_lookup(state, "INBOX");
			test_assert(folder != NULL);
			if (folder == NULL)
				break;
		}
	}

	/* clearing, journaled */
	migrate_state_folder_clear_map(state, folder);
	test_assert(array_count(&folder->map) == 0);
	migrate_state_map_add(state, folder, 7, 8);
	test_state_flush(state);
	migrate_state_close(&state);
	state = test_state_open(dir);
	folder = migrate_state_folder_lookup(state, "INBOX");
	test_assert(folder != NULL && array_count(&folder->map) == 1 &&
		    migrate_state_map_lookup(folder, 7) != NULL);
	migrate_state_close(&state);
	test_end();
}

static void test_migrate_state_random_inserts(void)
{
	struct migrate_state *state;
	struct migrate_state_folder *folder;
	const struct migrate_uid_map *map;
	const char *dir;
	unsigned int i, count = 2000;
	uint32_t uid;

	test_begin("migrate state out-of-order inserts");
	dir = test_state_dir();
	state = test_state_open(dir);
	folder = migrate_state_folder_add(state, "a", "a");
	/* 7919 is prime, so this visits every uid in 1..count once */
	for (i = 0; i < count; i++) {
		uid = (i * 7919) % count + 1;
		migrate_state_map_add(state, folder, uid, uid * 2);
	}
	test_assert(array_count(&folder->map) == count);
	test_assert(test_map_is_sorted(folder));
	test_state_commit(state);
	migrate_state_close(&state);

	state = test_state_open(dir);
	folder = migrate_state_folder_lookup(state, "a");
	test_assert(folder != NULL && array_count(&folder->map) == count);
	for (uid = 1; folder != NULL && uid <= count; uid++) {
		map = migrate_state_map_lookup(folder, uid);
		test_assert_idx(map != NULL && map->dest_uid == uid * 2, uid);
	}
	migrate_state_close(&state);
	test_end();
}

static void test_migrate_state_journal(void)
{
	struct migrate_state *state;
	struct migrate_state_folder *folder;
	const char *dir, *journal_path, *state_path;
	off_t size;

	test_begin("migrate state journal replay");
	dir = test_state_dir();
	journal_path = t_strconcat(dir, "/journal", NULL);
	state_path = t_strconcat(dir, "/state", NULL);

	/* crash after flush, before commit */
	state = test_state_open(dir);
	folder = migrate_state_folder_add(state, "Sent", "Sent");
	folder->src_uidvalidity = 42;
	migrate_state_folder_update(state, folder);
	migrate_state_map_add(state, folder, 1, 1);
	migrate_state_map_add(state, folder, 2, 2);
	test_state_flush(state);
	/* not flushed: lost */
	migrate_state_map_add(state, folder, 3, 3);
	(void)migrate_state_folder_add(state, "Lost", "Lost");
	migrate_state_close(&state);
	test_assert(!test_file_exists(state_path));
	test_assert(test_file_exists(journal_path));

	state = test_state_open(dir);
	test_assert(array_count(migrate_state_get_folders(state)) == 1);
	folder = migrate_state_folder_lookup(state, "Sent");
	test_assert(folder != NULL && folder->src_uidvalidity == 42 &&
		    array_count(&folder->map) == 2 &&
		    migrate_state_map_lookup(folder, 3) == NULL);
	test_assert(migrate_state_folder_lookup(state, "Lost") == NULL);
	migrate_state_close(&state);

	/* a torn last line is ignored, and cut off so that the next flush
	   doesn't glue a record to it */
	size = test_file_size(journal_path);
	test_write_file(journal_path, "M\t1\t3\t3\t1", TRUE);
	state = test_state_open(dir);
	test_assert(test_file_size(journal_path) == size);
	folder = migrate_state_folder_lookup(state, "Sent");
	test_assert(folder != NULL && array_count(&folder->map) == 2);
	if (folder != NULL)
		migrate_state_map_add(state, folder, 10, 10);
	test_state_flush(state);
	migrate_state_close(&state);
	state = test_state_open(dir);
	folder = migrate_state_folder_lookup(state, "Sent");
	test_assert(folder != NULL && array_count(&folder->map) == 3 &&
		    migrate_state_map_lookup(folder, 3) == NULL &&
		    migrate_state_map_lookup(folder, 10) != NULL);

	/* commit removes the journal; the next flush starts a new one */
	test_state_commit(state);
	test_assert(!test_file_exists(journal_path));
	test_assert(test_file_exists(state_path));
	test_assert(!test_file_exists(t_strconcat(state_path, ".tmp", NULL)));
	if (folder != NULL)
		migrate_state_map_add(state, folder, 11, 11);
	test_state_flush(state);
	test_assert(strncmp(test_read_file(journal_path),
			    "dovecot-migrate journal 3\n", 26) == 0);
	migrate_state_close(&state);
	state = test_state_open(dir);
	folder = migrate_state_folder_lookup(state, "Sent");
	test_assert(folder != NULL && array_count(&folder->map) == 4);
	migrate_state_close(&state);

	/* a torn header, e.g. a crash right after creating the journal */
	test_write_file(journal_path, "dovecot-migr", FALSE);
	state = test_state_open(dir);
	test_assert(test_file_size(journal_path) == 0);
	folder = migrate_state_folder_lookup(state, "Sent");
	test_assert(folder != NULL && array_count(&folder->map) == 3);
	if (folder != NULL)
		migrate_state_map_add(state, folder, 12, 12);
	test_state_flush(state);
	migrate_state_close(&state);
	state = test_state_open(dir);
	folder = migrate_state_folder_lookup(state, "Sent");
	test_assert(folder != NULL && array_count(&folder->map) == 4);
	migrate_state_close(&state);
	test_end();
}

static void test_migrate_state_journal_order(void)
{
	struct migrate_state *state;
	struct migrate_state_folder *a, *b;
	const char *dir;
	uint32_t uid;

	test_begin("migrate state journal keeps the call order");
	dir = test_state_dir();
	state = test_state_open(dir);
	a = migrate_state_folder_add(state, "a", "a");
	b = migrate_state_folder_add(state, "b", "b");
	/* a run of map_add calls is one record, until another call */
	migrate_state_map_add(state, a, 1, 1);
	a->src_uidnext = 2;
	migrate_state_folder_update(state, a);
	migrate_state_map_add(state, a, 2, 2);
	migrate_state_map_add(state, b, 3, 3);
	migrate_state_map_add(state, a, 3, 3);
	migrate_state_map_remove(state, a, 1);
	migrate_state_map_add(state, a, 4, 4);
	migrate_state_folder_clear_map(state, b);
	migrate_state_map_add(state, a, 5, 5);
	/* and runs continue across flushes */
	test_state_flush(state);
	migrate_state_map_add(state, a, 6, 6);
	test_state_flush(state);
	for (uid = 7; uid <= 9; uid++)
		migrate_state_map_add(state, a, uid, uid);
	test_state_flush(state);
	migrate_state_close(&state);

	state = test_state_open(dir);
	a = migrate_state_folder_lookup(state, "a");
	b = migrate_state_folder_lookup(state, "b");
	test_assert(a != NULL && b != NULL);
	if (a != NULL && b != NULL) {
		test_assert(a->src_uidnext == 2);
		test_assert(array_count(&a->map) == 8);
		test_assert(migrate_state_map_lookup(a, 1) == NULL);
		for (uid = 2; uid <= 9; uid++) {
			test_assert_idx(migrate_state_map_lookup(a, uid),
					uid);
		}
		test_assert(array_count(&b->map) == 0);
	}
	migrate_state_close(&state);
	test_end();
}

static void test_migrate_state_replay_twice(void)
{
	struct migrate_state *state;
	struct migrate_state_folder *a, *b, *c;
	const char *dir, *journal_path, *journal;
	unsigned int i;

	test_begin("migrate state journal replayed over its commit");
	dir = test_state_dir();
	journal_path = t_strconcat(dir, "/journal", NULL);

	state = test_state_open(dir);
	a = migrate_state_folder_add(state, "a", "a");
	b = migrate_state_folder_add(state, "b", "b");
	test_state_commit(state);

	for (i = 1; i <= 10; i++)
		migrate_state_map_add(state, a, i, i);
	migrate_state_map_remove(state, a, 5);
	migrate_state_folder_clear_map(state, b);
	migrate_state_map_add(state, b, 3, 4);
	migrate_state_folder_remove(state, b);
	c = migrate_state_folder_add(state, "c", "c");
	migrate_state_map_add(state, c, 1, 2);
	test_state_flush(state);
	journal = test_read_file(journal_path);

	/* crash between the rename and the unlink of commit */
	test_state_commit(state);
	migrate_state_close(&state);
	test_write_file(journal_path, journal, FALSE);

	state = test_state_open(dir);
	test_assert(array_count(migrate_state_get_folders(state)) == 2);
	a = migrate_state_folder_lookup(state, "a");
	c = migrate_state_folder_lookup(state, "c");
	test_assert(migrate_state_folder_lookup(state, "b") == NULL);
	test_assert(a != NULL && array_count(&a->map) == 9 &&
		    migrate_state_map_lookup(a, 5) == NULL);
	test_assert(c != NULL && c->id == 3 && array_count(&c->map) == 1);
	migrate_state_close(&state);
	test_end();
}

static void test_migrate_state_orphans(void)
{
	struct migrate_state *state;
	struct migrate_state_folder *a;
	ARRAY_TYPE(seq_range) uids;
	const char *dir, *journal_path, *journal;

	test_begin("migrate state orphans");
	dir = test_state_dir();
	journal_path = t_strconcat(dir, "/journal", NULL);
	t_array_init(&uids, 4);

	/* set, replaced, read back from the journal */
	state = test_state_open(dir);
	a = migrate_state_folder_add(state, "a", "a");
	migrate_state_map_add(state, a, 1, 1);
	seq_range_array_add_range(&uids, 1, 5);
	seq_range_array_add(&uids, 9);
	migrate_state_orphans_set(state, a, &uids);
	seq_range_array_remove(&uids, 3);
	migrate_state_orphans_set(state, a, &uids);
	test_state_flush(state);
	migrate_state_close(&state);
	state = test_state_open(dir);
	a = migrate_state_folder_lookup(state, "a");
	test_assert(a != NULL && seq_range_count(&a->orphans) == 5 &&
		    !seq_range_exists(&a->orphans, 3) &&
		    seq_range_exists(&a->orphans, 9));

	/* written by commit, and the journal replayed over it */
	test_state_commit(state);
	migrate_state_close(&state);
	state = test_state_open(dir);
	a = migrate_state_folder_lookup(state, "a");
	test_assert(a != NULL && seq_range_count(&a->orphans) == 5 &&
		    array_count(&a->map) == 1);
	array_clear(&uids);
	seq_range_array_add(&uids, 2);
	migrate_state_orphans_set(state, a, &uids);
	test_state_flush(state);
	journal = test_read_file(journal_path);
	test_state_commit(state);
	migrate_state_close(&state);
	test_write_file(journal_path, journal, FALSE);
	state = test_state_open(dir);
	a = migrate_state_folder_lookup(state, "a");
	test_assert(a != NULL && seq_range_count(&a->orphans) == 1 &&
		    seq_range_exists(&a->orphans, 2));

	/* clearing the map clears them */
	migrate_state_folder_clear_map(state, a);
	test_assert(array_count(&a->orphans) == 0);
	test_state_flush(state);
	migrate_state_close(&state);
	state = test_state_open(dir);
	a = migrate_state_folder_lookup(state, "a");
	test_assert(a != NULL && array_count(&a->orphans) == 0);
	migrate_state_close(&state);
	test_end();
}

static void test_migrate_state_folder_ids(void)
{
	struct migrate_state *state;
	struct migrate_state_folder *folder;
	const char *dir;

	test_begin("migrate state folder ids are not reused");
	dir = test_state_dir();
	state = test_state_open(dir);
	(void)migrate_state_folder_add(state, "a", "a");
	(void)migrate_state_folder_add(state, "b", "b");
	folder = migrate_state_folder_add(state, "c", "c");
	test_assert(folder->id == 3);
	migrate_state_folder_remove(state, folder);
	test_state_commit(state);
	migrate_state_close(&state);

	state = test_state_open(dir);
	test_assert(array_count(migrate_state_get_folders(state)) == 2);
	folder = migrate_state_folder_add(state, "c", "c");
	test_assert(folder->id == 4);
	migrate_state_folder_remove(state, folder);
	test_state_flush(state);
	migrate_state_close(&state);

	/* the journal alone remembers it too */
	state = test_state_open(dir);
	folder = migrate_state_folder_add(state, "d", "d");
	test_assert(folder->id == 5);
	migrate_state_close(&state);
	test_end();
}

static void test_migrate_state_permissions(void)
{
	struct migrate_state *state;
	struct migrate_state_folder *folder;
	const char *dir;
	struct stat st;

	test_begin("migrate state permissions");
	dir = test_state_dir();
	state = test_state_open(dir);
	folder = migrate_state_folder_add(state, "a", "a");
	migrate_state_map_add(state, folder, 1, 1);
	test_state_flush(state);
	test_assert(stat(t_strconcat(dir, "/journal", NULL), &st) == 0 &&
		    (st.st_mode & 0777) == 0600);
	test_state_commit(state);
	test_assert(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
	test_assert(stat(t_strconcat(dir, "/state", NULL), &st) == 0 &&
		    (st.st_mode & 0777) == 0600);
	test_assert(stat(t_strconcat(dir, "/lock", NULL), &st) == 0 &&
		    (st.st_mode & 0777) == 0600);
	migrate_state_close(&state);
	test_end();
}

static void test_migrate_state_pop3_only(void)
{
	struct migrate_state *state;
	const char *dir, *path, *error;
	struct stat st;

	test_begin("migrate state pop3 only");
	dir = test_state_dir();
	path = t_strconcat(dir, "/pop3-only", NULL);
	state = test_state_open(dir);
	test_assert(!migrate_state_is_pop3_only(state));
	test_assert(migrate_state_set_pop3_only(state, &error) == 0);
	test_assert(migrate_state_is_pop3_only(state));
	test_assert(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	/* once is enough: the file is not written again */
	test_assert(unlink(path) == 0);
	test_assert(migrate_state_set_pop3_only(state, &error) == 0);
	test_assert(stat(path, &st) < 0 && errno == ENOENT);
	test_assert(migrate_state_set_pop3_only(state, &error) == 0);
	migrate_state_close(&state);
	/* the next open sees it; the state itself stays empty */
	test_write_file(path, "dovecot-migrate pop3-only 1\n", FALSE);
	state = test_state_open(dir);
	test_assert(migrate_state_is_pop3_only(state));
	test_assert(array_count(migrate_state_get_folders(state)) == 0);
	migrate_state_close(&state);
	test_assert(stat(t_strconcat(dir, "/state", NULL), &st) < 0);
	test_end();
}

static void test_migrate_state_write_errors(void)
{
	struct migrate_state *state;
	struct migrate_state_folder *folder;
	const char *dir, *journal_path, *state_path, *temp_path, *error;

	test_begin("migrate state write errors");
	dir = test_state_dir();
	journal_path = t_strconcat(dir, "/journal", NULL);
	state_path = t_strconcat(dir, "/state", NULL);
	/* the temp file's name begins so */
	temp_path = t_strconcat(state_path, ".tmp.", NULL);
	state = test_state_open(dir);
	folder = migrate_state_folder_add(state, "a", "a");
	migrate_state_map_add(state, folder, 1, 1);

	/* a failed flush keeps the records for the next try */
	if (mkdir(journal_path, 0700) < 0)
		i_fatal("mkdir(%s) failed: %m", journal_path);
	test_assert(migrate_state_flush(state, TRUE, &error) < 0);
	test_assert(strstr(error, journal_path) != NULL);
	if (rmdir(journal_path) < 0)
		i_fatal("rmdir(%s) failed: %m", journal_path);
	test_state_flush(state);
	migrate_state_close(&state);

	state = test_state_open(dir);
	folder = migrate_state_folder_lookup(state, "a");
	test_assert(folder != NULL && array_count(&folder->map) == 1);

	/* a failed commit leaves the journal (a directory where the state
	   file goes: the rename fails) */
	if (mkdir(state_path, 0700) < 0)
		i_fatal("mkdir(%s) failed: %m", state_path);
	test_assert(migrate_state_commit(state, &error) < 0);
	test_assert(strstr(error, temp_path) != NULL);
	test_assert(test_file_exists(journal_path));
	if (rmdir(state_path) < 0)
		i_fatal("rmdir(%s) failed: %m", state_path);
	test_state_commit(state);
	test_assert(!test_file_exists(journal_path));
	migrate_state_close(&state);

	state = test_state_open(dir);
	folder = migrate_state_folder_lookup(state, "a");
	test_assert(folder != NULL && array_count(&folder->map) == 1);
	migrate_state_close(&state);
	test_end();
}

static void test_migrate_state_lock(void)
{
	struct migrate_state *state, *state2;
	const char *dir, *error;
	bool locked;

	test_begin("migrate state lock");
	dir = test_state_dir();
	state = test_state_open(dir);
	test_assert(migrate_state_open(dir, &state2, &locked, &error) < 0);
	test_assert(locked);
	test_assert(state2 == NULL);
	test_assert(strstr(error, "State is locked by another process")
		    != NULL);
	test_assert(strstr(error, dir) != NULL);
	migrate_state_close(&state);
	test_assert(state == NULL);

	state2 = test_state_open(dir);
	test_assert(state2 != NULL);
	migrate_state_close(&state2);
	test_end();
}

static const struct {
	/* NULL: leave the file missing */
	const char *state, *journal;
	/* NULL: must succeed */
	const char *error;
} test_corrupt_files[] = {
	/* must fail */
	{ "dovecot-migrate state 1\nN\t2\nbad record\n", NULL,
	  "state line 3: Invalid record type" },
	{ "dovecot-migrate state 4\n", NULL,
	  "state line 1: Unsupported version 4" },
	{ "dovecot-migrate state 3\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "O\t1\t4294967295\t2\n", NULL, "state line 3: Orphans run overflows" },
	{ "dovecot-migrate state 3\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "O\t1\t5\n", NULL, "state line 3: Orphans record has 3 fields" },
	{ "dovecot-migrate state 3\nP\t1\n", NULL,
	  "state line 2: Invalid record type: 'P'" },
	{ "dovecot-migrate state\n", NULL, "state line 1: Invalid header" },
	{ "dovecot-migrate state x\n", NULL, "state line 1: Invalid version" },
	{ "dovecot-migrate journal 1\n", NULL, "state line 1: Invalid header" },
	{ "", NULL, "state line 1: Missing header" },
	{ "dovecot-migrate state 1\nN\t2", NULL,
	  "state line 2: Truncated line" },
	{ "dovecot-migrate state 1\nF\t1\ta\tb\t1\t2\t3\t4\t5\n", NULL,
	  "state line 2: Folder record has 9 fields" },
	{ "dovecot-migrate state 1\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t7\t8\n", NULL,
	  "state line 2: Too many fields" },
	{ "dovecot-migrate state 1\nF\t0\ta\tb\t1\t2\t3\t4\t5\t6\t0\n", NULL,
	  "state line 2: Invalid folder id" },
	{ "dovecot-migrate state 1\nF\t1\ta\tb\t1\t2\t-3\t4\t5\t6\t0\n", NULL,
	  "state line 2: Invalid number" },
	{ "dovecot-migrate state 1\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "F\t1\tc\td\t1\t2\t3\t4\t5\t6\t0\n", NULL,
	  "state line 3: Duplicate folder id" },
	{ "dovecot-migrate state 1\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "M\t2\t1\t1\t1\n", NULL, "state line 3: Unknown folder id" },
	{ "dovecot-migrate state 1\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "M\t1\t0\t1\t1\n", NULL, "state line 3: Invalid source UID" },
	{ "dovecot-migrate state 1\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "M\t1\t1\t1\t0\n", NULL, "state line 3: Invalid count" },
	{ "dovecot-migrate state 1\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "M\t1\t4294967295\t1\t2\n", NULL, "state line 3: Map run overflows" },
	{ "dovecot-migrate state 1\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "M\t1\t1\t1\n", NULL, "state line 3: Map record has 4 fields" },
	{ "dovecot-migrate state 1\nR\t1\n", NULL,
	  "state line 2: Invalid record type: 'R'" },
	{ NULL, "dovecot-migrate journal 4\n",
	  "journal line 1: Unsupported version 4" },
	{ "dovecot-migrate state 2\nL\t2\tARCHIVE/2019\n", NULL,
	  "state line 2: Location 2 out of order" },
	{ "dovecot-migrate state 2\nL\t1\tA\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "M\t1\t1\t1\t1\t2\n", NULL, "state line 4: Unknown location 2" },
	{ NULL, "dovecot-migrate state 1\n", "journal line 1: Invalid header" },
	{ NULL, "dovecot-migrate journal 1\nM\t1\t1\t1\t1\n",
	  "journal line 2: Unknown folder id" },
	{ NULL, "dovecot-migrate journal 1\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "X\t1\n", "journal line 3: Record has 2 fields, expected 3" },
	{ NULL, "dovecot-migrate journal 1\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "N\t5\n" "M\t1\t1\t1\t1", "journal line 3: Invalid record type" },
	/* a bad complete line before a torn one */
	{ NULL, "dovecot-migrate journal 1\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "Q\nM\t1", "journal line 3: Invalid record type" },

	/* must succeed */
	{ NULL, NULL, NULL },
	{ NULL, "", NULL },
	{ NULL, "dovecot-migrate journal 1\n", NULL },
	{ NULL, "dovecot-migrate journal 1\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "M\t1\t1\t1\t1\nM\t1\t", NULL },
	/* records of a folder removed before */
	{ "dovecot-migrate state 1\nN\t3\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n",
	  "dovecot-migrate journal 1\nM\t2\t1\t1\t1\nX\t2\t1\nC\t2\nR\t2\n",
	  NULL },
	/* version 2, a moved run */
	{ "dovecot-migrate state 2\nL\t1\tA\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "M\t1\t1\t1\t1\t1\n", NULL, NULL },
	/* version 3, orphans */
	{ "dovecot-migrate state 3\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\n"
	  "O\t1\t3\t2\n", "dovecot-migrate journal 3\nP\t1\nO\t1\t4\t1\n",
	  NULL },
	/* CRLF line endings */
	{ "dovecot-migrate state 1\r\nF\t1\ta\tb\t1\t2\t3\t4\t5\t6\t0\r\n", NULL,
	  NULL },
};

static void test_migrate_state_locations(void)
{
	struct migrate_state *state;
	struct migrate_state_folder *folder;
	const struct migrate_uid_map *map;
	const char *dir, *state_path;
	unsigned int loc, loc2, round;
	uint32_t uid;

	test_begin("migrate state locations (archived copies)");
	dir = test_state_dir();
	state_path = t_strconcat(dir, "/state", NULL);
	state = test_state_open(dir);
	folder = migrate_state_folder_add(state, "INBOX", "INBOX");
	migrate_state_folder_update(state, folder);
	for (uid = 1; uid <= 10; uid++)
		migrate_state_map_add(state, folder, uid, uid);
	loc = migrate_state_location(state, "ARCHIVE/2019");
	loc2 = migrate_state_location(state, "ARCHIVE/2020");
	test_assert(loc == 1 && loc2 == 2);
	test_assert(migrate_state_location(state, "ARCHIVE/2019") == loc);
	/* 2..4 moved to 2019 as 1..3, 6 to 2020 as 1 */
	for (uid = 2; uid <= 4; uid++)
		migrate_state_map_move(state, folder, uid, loc, uid - 1);
	migrate_state_map_move(state, folder, 6, loc2, 1);
	/* the own destination's UID 2 is gone; 1 is still there */
	test_assert(migrate_state_map_lookup_dest(folder, 2) == NULL);
	test_assert(migrate_state_map_lookup_dest(folder, 1) != NULL);
	test_state_flush(state);
	migrate_state_close(&state);

	/* from the journal, then from the committed state */
	for (round = 0; round < 2; round++) {
		state = test_state_open(dir);
		folder = migrate_state_folder_lookup(state, "INBOX");
		test_assert_idx(folder != NULL &&
				array_count(&folder->map) == 10, round);
		if (folder == NULL)
			break;
		test_assert_idx(strcmp(migrate_state_location_name(state, 1),
				       "ARCHIVE/2019") == 0, round);
		test_assert_idx(strcmp(migrate_state_location_name(state, 2),
				       "ARCHIVE/2020") == 0, round);
		map = migrate_state_map_lookup(folder, 3);
		test_assert_idx(map != NULL && map->dest_loc == 1 &&
				map->dest_uid == 2, round);
		map = migrate_state_map_lookup(folder, 6);
		test_assert_idx(map != NULL && map->dest_loc == 2 &&
				map->dest_uid == 1, round);
		map = migrate_state_map_lookup(folder, 5);
		test_assert_idx(map != NULL && map->dest_loc == 0 &&
				map->dest_uid == 5, round);
		test_state_commit(state);
		migrate_state_close(&state);
	}
	test_assert(strstr(test_read_file(state_path),
			   "L\t1\tARCHIVE/2019\n") != NULL);
	test_assert(strstr(test_read_file(state_path),
			   "M\t1\t2\t1\t3\t1\n") != NULL);
	test_end();
}

static void test_migrate_state_corrupt(void)
{
	struct migrate_state *state;
	const char *dir, *error;
	unsigned int i;
	bool locked;
	int ret;

	test_begin("migrate state corrupt files");
	for (i = 0; i < N_ELEMENTS(test_corrupt_files); i++) {
		dir = test_state_dir();
		/* create the directory */
		state = test_state_open(dir);
		migrate_state_close(&state);

		if (test_corrupt_files[i].state != NULL) {
			test_write_file(t_strconcat(dir, "/state", NULL),
					test_corrupt_files[i].state, FALSE);
		}
		if (test_corrupt_files[i].journal != NULL) {
			test_write_file(t_strconcat(dir, "/journal", NULL),
					test_corrupt_files[i].journal, FALSE);
		}
		error = NULL;
		ret = migrate_state_open(dir, &state, &locked, &error);
		test_assert_idx(!locked, i);
		if (test_corrupt_files[i].error == NULL) {
			test_assert_idx(ret == 0, i);
			if (ret < 0)
				i_error("unexpected: %s", error);
			migrate_state_close(&state);
			continue;
		}
		test_assert_idx(ret < 0 && state == NULL, i);
		if (ret == 0) {
			migrate_state_close(&state);
			continue;
		}
		/* "<dir>/state line 3: ..." */
		test_assert_idx(str_begins(error, dir), i);
		if (strstr(error, test_corrupt_files[i].error) == NULL) {
			i_error("expected '%s', got '%s'",
				test_corrupt_files[i].error, error);
			test_assert_idx(FALSE, i);
		}
	}
	test_end();
}

static long long test_usecs_since(const struct timeval *start)
{
	struct timeval now;

	i_gettimeofday(&now);
	return timeval_diff_usecs(&now, start);
}

static bool test_running_on_valgrind(void)
{
	const char *preload = getenv("LD_PRELOAD");

	return preload != NULL && strstr(preload, "vgpreload") != NULL;
}

/* Commit a state with one big map and load it again, timed (but not
   under valgrind, which is ~50 times slower). */
static void test_migrate_state_large_timed(const char *name, uint32_t count,
					   uint32_t src_step,
					   off_t max_state_size,
					   long long max_usecs)
{
	struct migrate_state *state;
	struct migrate_state_folder *folder;
	const struct migrate_uid_map *map;
	struct timeval start;
	const char *dir, *state_path;
	long long commit_usecs, load_usecs;
	uint32_t i, src_uid;

	dir = test_state_dir();
	state_path = t_strconcat(dir, "/state", NULL);
	state = test_state_open(dir);
	folder = migrate_state_folder_add(state, name, name);
	for (i = 1; i <= count; i++) {
		/* runs of 1000 */
		src_uid = i * src_step + i / 1000;
		migrate_state_map_add(state, folder, src_uid, i);
		if (i == count / 2) {
			/* half of it replayed from the journal */
			test_state_flush(state);
			migrate_state_close(&state);
			state = test_state_open(dir);
			folder = migrate_state_folder_lookup(state, name);
		}
	}
	test_state_flush(state);

	i_gettimeofday(&start);
	test_state_commit(state);
	commit_usecs = test_usecs_since(&start);
	migrate_state_close(&state);
	test_assert(test_file_size(state_path) <= max_state_size);

	i_gettimeofday(&start);
	state = test_state_open(dir);
	load_usecs = test_usecs_since(&start);

	if (!test_running_on_valgrind()) {
		test_assert(commit_usecs < max_usecs);
		test_assert(load_usecs < max_usecs);
	}

	folder = migrate_state_folder_lookup(state, name);
	test_assert(folder != NULL && array_count(&folder->map) == count);
	for (i = 1; folder != NULL && i <= count; i += 997) {
		map = migrate_state_map_lookup(folder, i * src_step + i / 1000);
		test_assert_idx(map != NULL && map->dest_uid == i, i);
	}
	migrate_state_close(&state);
}

static void test_migrate_state_large(void)
{
	struct migrate_state *state;
	struct migrate_state_folder *folder;
	const char *dir, *state_path, *journal_path;
	uint32_t uid;

	test_begin("migrate state large map");

	/* 100k sequential entries: one line in the journal and the state */
	dir = test_state_dir();
	state_path = t_strconcat(dir, "/state", NULL);
	journal_path = t_strconcat(dir, "/journal", NULL);
	state = test_state_open(dir);
	folder = migrate_state_folder_add(state, "INBOX", "INBOX");
	for (uid = 1; uid <= 100000; uid++)
		migrate_state_map_add(state, folder, uid, uid + 10);
	test_state_flush(state);
	test_assert(test_file_size(journal_path) < 200);
	test_state_commit(state);
	test_assert(test_file_size(state_path) < 200);
	migrate_state_close(&state);

	/* 500k entries in runs of 1000: 500 lines, milliseconds */
	test_migrate_state_large_timed("runs", 500000, 1, 64 * 1024, 250000);
	/* 500k entries that don't compress at all, the worst case: 10 MB,
	   and the commit's fsync() depends on the disk */
	test_migrate_state_large_timed("sparse", 500000, 2, 16 * 1024 * 1024,
				       2000000);
	test_end();
}

/* migrate_state_open_folders(): the folders and the POP3-only mark of a
   state another process holds locked, without its maps; a torn journal
   line is left for the next full open to cut */
static void test_migrate_state_open_folders(void)
{
	struct migrate_state *state, *peek;
	struct migrate_state_folder *folder;
	const char *dir, *journal_path, *error;
	off_t size;

	test_begin("migrate state open folders only");
	dir = test_state_dir();
	journal_path = t_strconcat(dir, "/journal", NULL);

	/* missing: empty */
	test_assert(migrate_state_open_folders(dir, &peek, &error) == 0);
	if (peek != NULL) {
		test_assert(array_count(migrate_state_get_folders(peek)) == 0);
		migrate_state_close(&peek);
	}

	state = test_state_open(dir);
	folder = migrate_state_folder_add(state, "INBOX", "INBOX");
	migrate_state_map_add(state, folder, 1, 1);
	migrate_state_map_add(state, folder, 2, 2);
	migrate_state_map_add(state, folder, 5, 3);
	(void)migrate_state_folder_add(state, "Sent", "Sent");
	test_state_commit(state);
	folder = migrate_state_folder_add(state, "Later", "Later");
	migrate_state_map_add(state, folder, 7, 7);
	test_state_flush(state);
	size = test_file_size(journal_path);
	test_write_file(journal_path, "M\t3\t8\t8\t1", TRUE);

	/* the state stays locked by the full open above */
	test_assert(migrate_state_open_folders(dir, &peek, &error) == 0);
	if (peek != NULL) {
		test_assert(array_count(migrate_state_get_folders(peek)) == 3);
		folder = migrate_state_folder_lookup(peek, "INBOX");
		test_assert(folder != NULL && array_count(&folder->map) == 0);
		folder = migrate_state_folder_lookup(peek, "Later");
		test_assert(folder != NULL && array_count(&folder->map) == 0);
		test_assert(!migrate_state_is_pop3_only(peek));
		migrate_state_close(&peek);
	}
	/* the torn line is still there: only a full open cuts it */
	test_assert(test_file_size(journal_path) > size);
	migrate_state_close(&state);
	state = test_state_open(dir);
	test_assert(test_file_size(journal_path) == size);
	folder = migrate_state_folder_lookup(state, "INBOX");
	test_assert(folder != NULL && array_count(&folder->map) == 3);
	test_assert(migrate_state_set_pop3_only(state, &error) == 0);
	migrate_state_close(&state);
	test_assert(migrate_state_open_folders(dir, &peek, &error) == 0);
	if (peek != NULL) {
		test_assert(migrate_state_is_pop3_only(peek));
		migrate_state_close(&peek);
	}
	test_end();
}

void test_migrate_state(void)
{
	char template[] = "/tmp/test-migrate-state.XXXXXX";
	const char *error;

	if (mkdtemp(template) == NULL)
		i_fatal("mkdtemp(%s) failed: %m", template);
	test_root = template;
	test_dir_counter = 0;

	T_BEGIN {
		test_migrate_state_names();
		test_migrate_state_map();
		test_migrate_state_random_inserts();
		test_migrate_state_journal();
		test_migrate_state_journal_order();
		test_migrate_state_replay_twice();
		test_migrate_state_orphans();
		test_migrate_state_folder_ids();
		test_migrate_state_permissions();
		test_migrate_state_pop3_only();
		test_migrate_state_write_errors();
		test_migrate_state_lock();
		test_migrate_state_corrupt();
		test_migrate_state_locations();
		test_migrate_state_large();
		test_migrate_state_open_folders();
	} T_END;

	if (unlink_directory(template, UNLINK_DIRECTORY_FLAG_RMDIR,
			     &error) < 0)
		i_error("unlink_directory(%s) failed: %s", template, error);
	test_root = NULL;
}
