/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "hostpid.h"
#include "ostream.h"
#include "test-migrate.h"
#include "migrate-file.h"

#include <fcntl.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

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

/* the names in test_migrate_dir() that start with prefix, sorted and
   joined with " " */
static const char *test_file_names(const char *prefix)
{
	ARRAY_TYPE(const_string) names;
	struct dirent *d;
	const char *name;
	DIR *dirp;

	t_array_init(&names, 8);
	dirp = opendir(test_migrate_dir());
	if (dirp == NULL)
		i_fatal("opendir(%s) failed: %m", test_migrate_dir());
	while ((d = readdir(dirp)) != NULL) {
		if (str_begins(d->d_name, prefix)) {
			name = t_strdup(d->d_name);
			array_push_back(&names, &name);
		}
	}
	(void)closedir(dirp);
	array_sort(&names, i_strcmp_p);
	array_append_zero(&names);
	return t_strarray_join(array_front(&names), " ");
}

static void test_file_replace(void)
{
	const char *path = t_strconcat(test_migrate_dir(), "/replaced", NULL);
	struct migrate_file_replace *rep;
	const char *error;
	struct stat st;

	test_begin("file: replace");
	test_assert(migrate_file_replace(path, "one\n", 4, 0640, (uid_t)-1,
					 (gid_t)-1, &error) == 0);
	test_assert_strcmp(test_file_read(path), "one\n");
	test_assert(stat(path, &st) == 0 && (st.st_mode & 07777) == 0640);
	test_assert_strcmp(test_file_names("replaced"), "replaced");

	/* the fixed name of old, even a symlink there, is left alone */
	test_assert(symlink(path, t_strconcat(path, ".tmp", NULL)) == 0);
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
	test_assert_strcmp(test_file_names("replaced"),
			   "replaced replaced.tmp");
	test_assert(unlink(t_strconcat(path, ".tmp", NULL)) == 0);

	/* abort: the old file stays, the temp file goes */
	test_assert(migrate_file_replace_begin(path, 0600, (uid_t)-1,
					       (gid_t)-1, &rep, &error) == 0);
	o_stream_nsend_str(migrate_file_replace_output(rep), "three\n");
	migrate_file_replace_abort(&rep);
	test_assert_strcmp(test_file_read(path), "two\n");
	test_assert_strcmp(test_file_names("replaced"), "replaced");
	test_end();
}

static void test_file_replace_unique(void)
{
	const char *path = t_strconcat(test_migrate_dir(), "/shared", NULL);
	const char *prefix = t_strdup_printf("shared.tmp.%s.%s.", my_hostname,
					     my_pid);
	struct migrate_file_replace *rep1, *rep2;
	const char *names, *error;

	test_begin("file: two writers, two temp files of their own");
	test_assert(migrate_file_replace_begin(path, 0600, (uid_t)-1,
					       (gid_t)-1, &rep1, &error) == 0);
	test_assert(migrate_file_replace_begin(path, 0600, (uid_t)-1,
					       (gid_t)-1, &rep2, &error) == 0);
	/* path.tmp.<host>.<pid>.<random>, one each */
	names = test_file_names("shared");
	test_assert(strlen(names) > 2 * strlen(prefix));
	test_assert(str_begins(names, prefix));
	test_assert(strstr(names, t_strconcat(" ", prefix, NULL)) != NULL);
	o_stream_nsend_str(migrate_file_replace_output(rep1), "one\n");
	o_stream_nsend_str(migrate_file_replace_output(rep2), "two\n");
	test_assert(migrate_file_replace_finish(&rep2, &error) == 0);
	test_assert(migrate_file_replace_finish(&rep1, &error) == 0);
	test_assert_strcmp(test_file_read(path), "one\n");
	test_assert_strcmp(test_file_names("shared"), "shared");
	test_end();
}

static void test_file_replace_stale(void)
{
	const char *path = t_strconcat(test_migrate_dir(), "/stale", NULL);
	const char *dead, *alive, *other, *names, *error;
	pid_t pid;
	int status;

	test_begin("file: temp files of dead writers are removed");
	/* a PID that is no process any more */
	pid = fork();
	if (pid < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0)
		_exit(0);
	test_assert(waitpid(pid, &status, 0) == pid);
	dead = t_strdup_printf("stale.tmp.%s.%ld.0a1b", my_hostname,
			       (long)pid);
	alive = t_strdup_printf("stale.tmp.%s.%s.0a1b", my_hostname, my_pid);
	other = "stale.tmp.other-host.1.0a1b";
	(void)test_migrate_write(dead, "");
	(void)test_migrate_write(alive, "");
	(void)test_migrate_write(other, "");
	test_assert(migrate_file_replace(path, "x", 1, 0600, (uid_t)-1,
					 (gid_t)-1, &error) == 0);
	/* a living writer's (our own) and another host's stay */
	names = test_file_names("stale");
	test_assert(strstr(names, dead) == NULL);
	test_assert(strstr(names, alive) != NULL);
	test_assert(strstr(names, other) != NULL);
	test_assert(strlen(names) == strlen("stale  ") + strlen(alive) +
		    strlen(other));
	test_end();
}

static void test_file_replace_fails(void)
{
	const char *path = t_strconcat(test_migrate_dir(), "/failing", NULL);
	const char *error;

	test_begin("file: a failed replace changes nothing");
	/* rename() over a directory fails; the temp file goes */
	test_assert(mkdir(path, 0700) == 0);
	test_assert(migrate_file_replace(path, "x", 1, 0600, (uid_t)-1,
					 (gid_t)-1, &error) < 0);
	test_assert(str_begins(error, "rename("));
	test_assert_strcmp(test_file_names("failing"), "failing");
	test_assert(rmdir(path) == 0);
	/* the temp file cannot be made: the error names it */
	path = t_strconcat(test_migrate_dir(), "/missing/failing", NULL);
	test_assert(migrate_file_replace(path, "x", 1, 0600, (uid_t)-1,
					 (gid_t)-1, &error) < 0);
	test_assert(strstr(error, t_strconcat(path, ".tmp.", NULL)) != NULL);
	test_assert(access(path, F_OK) < 0);
	test_end();
}

void test_migrate_file(void)
{
	test_file_replace();
	test_file_replace_unique();
	test_file_replace_stale();
	test_file_replace_fails();
}
