/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "ostream.h"
#include "test-migrate.h"
#include "migrate-file.h"

#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

static const char *test_file_read(const char *path)
{
	char buf[256];
	ssize_t ret;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd == -1)
		return NULL;
	ret = read(fd, buf, sizeof(buf) - 1);
	i_close_fd(&fd);
	return ret < 0 ? NULL : t_strndup(buf, ret);
}

static void test_file_replace(void)
{
	const char *path = t_strconcat(test_migrate_dir(), "/replaced", NULL);
	const char *temp_path = t_strconcat(path, ".tmp", NULL);
	struct migrate_file_replace *rep;
	const char *error;
	struct stat st;

	test_begin("file: replace");
	test_assert(migrate_file_replace(path, "one\n", 4, 0640, (uid_t)-1,
					 (gid_t)-1, &error) == 0);
	test_assert_strcmp(test_file_read(path), "one\n");
	test_assert(stat(path, &st) == 0 && (st.st_mode & 07777) == 0640);
	test_assert(access(temp_path, F_OK) < 0);

	/* a temp file left by a crash, even a symlink, is replaced */
	test_assert(symlink(path, temp_path) == 0);
	test_assert(migrate_file_replace_begin(path, 0600, (uid_t)-1,
					       (gid_t)-1, &rep, &error) == 0);
	o_stream_nsend_str(migrate_file_replace_output(rep), "two\n");
	/* nothing changes before finish */
	test_assert_strcmp(test_file_read(path), "one\n");
	test_assert(migrate_file_replace_finish(&rep, &error) == 0);
	test_assert(rep == NULL);
	test_assert_strcmp(test_file_read(path), "two\n");
	test_assert(lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    (st.st_mode & 07777) == 0600);
	test_assert(access(temp_path, F_OK) < 0);

	/* abort: the old file stays */
	test_assert(migrate_file_replace_begin(path, 0600, (uid_t)-1,
					       (gid_t)-1, &rep, &error) == 0);
	o_stream_nsend_str(migrate_file_replace_output(rep), "three\n");
	migrate_file_replace_abort(&rep);
	test_assert_strcmp(test_file_read(path), "two\n");
	test_assert(access(temp_path, F_OK) < 0);
	test_end();
}

static void test_file_replace_fails(void)
{
	const char *path = t_strconcat(test_migrate_dir(), "/failing", NULL);
	const char *temp_path = t_strconcat(path, ".tmp", NULL);
	const char *error;

	test_begin("file: a failed replace changes nothing");
	/* rename() over a directory fails */
	test_assert(mkdir(path, 0700) == 0);
	test_assert(migrate_file_replace(path, "x", 1, 0600, (uid_t)-1,
					 (gid_t)-1, &error) < 0);
	test_assert(str_begins(error, "rename("));
	test_assert(access(temp_path, F_OK) < 0);
	test_assert(rmdir(path) == 0);
	/* the temp file cannot be made */
	test_assert(mkdir(temp_path, 0700) == 0);
	test_assert(migrate_file_replace(path, "x", 1, 0600, (uid_t)-1,
					 (gid_t)-1, &error) < 0);
	test_assert(strstr(error, temp_path) != NULL);
	test_assert(access(path, F_OK) < 0);
	test_assert(rmdir(temp_path) == 0);
	test_end();
}

void test_migrate_file(void)
{
	test_file_replace();
	test_file_replace_fails();
}
