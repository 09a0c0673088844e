/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "unlink-directory.h"
#include "write-full.h"
#include "test-migrate.h"

#include <stdlib.h>
#include <unistd.h>
#include <fcntl.h>

static const char *test_dir = NULL;

const char *test_migrate_dir(void)
{
	static char template[] = "/tmp/test-migrate.XXXXXX";

	if (test_dir == NULL) {
		if (mkdtemp(template) == NULL)
			i_fatal("mkdtemp(%s) failed: %m", template);
		test_dir = template;
	}
	return test_dir;
}

const char *test_migrate_write(const char *name, const char *contents)
{
	const char *path = t_strconcat(test_migrate_dir(), "/", name, NULL);
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd == -1)
		i_fatal("open(%s) failed: %m", path);
	if (write_full(fd, contents, strlen(contents)) < 0)
		i_fatal("write(%s) failed: %m", path);
	i_close_fd(&fd);
	return path;
}

void test_migrate_assert_one_error(const ARRAY_TYPE(const_string) *errors,
				   const char *path, const char *expected,
				   unsigned int idx)
{
	test_assert_idx(array_count(errors) == 1, idx);
	if (array_count(errors) > 0) {
		test_assert_strcmp_idx(array_idx_elem(errors, 0),
				       t_strconcat(path, expected, NULL), idx);
	}
}

/* the last of the test functions */
static void test_migrate_cleanup(void)
{
	const char *error;

	if (test_dir != NULL &&
	    unlink_directory(test_dir, UNLINK_DIRECTORY_FLAG_RMDIR,
			     &error) < 0)
		i_error("unlink_directory(%s) failed: %s", test_dir, error);
	test_dir = NULL;
}

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_migrate_text,
		test_migrate_csv,
		test_migrate_file,
		test_migrate_error,
		test_migrate_json,
		test_migrate_names,
		test_migrate_oauth2,
		test_migrate_record,
		test_migrate_settings,
		test_migrate_state,
		test_migrate_template,
		test_migrate_accounts,
		test_migrate_credentials,
		test_migrate_domain,
		test_migrate_tls,
		test_migrate_jobs,
		test_migrate_cleanup,
		NULL
	};
	return test_run(test_functions);
}
