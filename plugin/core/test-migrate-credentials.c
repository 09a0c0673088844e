/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "test-migrate.h"
#include "migrate-credentials.h"

#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <sys/resource.h>

static const char *test_store_dir(const char *name)
{
	return t_strconcat(test_migrate_dir(), "/", name,
			   "/" MIGRATE_CREDENTIALS_SUBDIR, NULL);
}

/* every byte but NUL, then more UTF-8 */
static const char *test_odd_password(void)
{
	string_t *str = t_str_new(300);
	unsigned int c;

	for (c = 1; c < 256; c++)
		str_append_c(str, c);
	str_append(str, "\xc3\xa7\xc3\xa3 \xe2\x82\xac \\t \"x\" 'y' ;,=[]");
	return str_c(str);
}

static void test_credentials_store(void)
{
	const char *dir = test_store_dir("store");
	struct migrate_credentials cred, cred2;
	const char *error, *path;
	unsigned int count;
	struct stat st;
	pool_t pool = pool_alloconly_create("test", 1024);

	test_begin("credentials: store and load");
	i_zero(&cred);
	cred.source_host = "imap.old.example";
	cred.source_port = 993;
	cred.source_user = "ana";
	cred.source_password = test_odd_password();
	test_assert(migrate_credentials_read(dir, "ana@example.com", pool,
					     &cred2, &error) == 0);
	test_assert(migrate_credentials_write(dir, "ana@example.com", &cred,
					      &error) == 0);
	test_assert(migrate_credentials_read(dir, "ana@example.com", pool,
					     &cred2, &error) == 1);
	test_assert_strcmp(cred2.source_host, "imap.old.example");
	test_assert(cred2.source_port == 993);
	test_assert_strcmp(cred2.source_user, "ana");
	test_assert_strcmp(cred2.source_password, cred.source_password);
	test_assert(cred2.source_auth == NULL);
	/* only the owner can enter or read */
	path = t_strconcat(dir, "/ana@example.com", NULL);
	test_assert(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
	test_assert(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0700);
	/* a second write replaces the file */
	cred.source_port = 0;
	cred.source_auth = "oauthbearer";
	test_assert(migrate_credentials_write(dir, "ana@example.com", &cred,
					      &error) == 0);
	test_assert(migrate_credentials_read(dir, "ana@example.com", pool,
					     &cred2, &error) == 1);
	test_assert(cred2.source_port == 0);
	test_assert_strcmp(cred2.source_auth, "oauthbearer");
	test_assert(access(t_strconcat(path, ".tmp", NULL), F_OK) < 0);
	test_end();

	test_begin("credentials: file names and permissions");
	/* a name can't leave the directory */
	test_assert(migrate_credentials_write(dir, "../x", &cred, &error) == 0);
	test_assert(access(t_strconcat(dir, "/../x", NULL), F_OK) < 0);
	test_assert(access(t_strconcat(dir, "/%2E.%2Fx", NULL), F_OK) == 0);
	/* readable by others: refused */
	test_assert(chmod(path, 0644) == 0);
	test_assert(migrate_credentials_read(dir, "ana@example.com", pool,
					     &cred2, &error) < 0);
	test_assert(strstr(error, "0600") != NULL);
	test_assert(chmod(path, 0600) == 0);
	test_assert(chmod(dir, 0755) == 0);
	test_assert(migrate_credentials_read(dir, "ana@example.com", pool,
					     &cred2, &error) < 0);
	test_assert(strstr(error, "0700") != NULL);
	test_assert(chmod(dir, 0700) == 0);
	test_assert(migrate_credentials_delete(dir, "ana@example.com",
					       &error) == 0);
	test_assert(migrate_credentials_read(dir, "ana@example.com", pool,
					     &cred2, &error) == 0);
	test_assert(migrate_credentials_delete(dir, "ana@example.com",
					       &error) == 0);
	test_end();

	test_begin("credentials: a domain's files");
	/* names that needed escaping included */
	test_assert(migrate_credentials_write(dir, "a b@example.com", &cred,
					      &error) == 0);
	test_assert(migrate_credentials_write(dir, "c@Example.COM", &cred,
					      &error) == 0);
	test_assert(migrate_credentials_write(dir, "d@other.example", &cred,
					      &error) == 0);
	/* temp files of writes that crashed, of this version and of the
	   one before (a fixed ".tmp"); the other domain's stays */
	(void)test_migrate_write("store/" MIGRATE_CREDENTIALS_SUBDIR
				 "/e@example.com.tmp.host.123.0a1b", "");
	(void)test_migrate_write("store/" MIGRATE_CREDENTIALS_SUBDIR
				 "/f@example.com.tmp", "");
	(void)test_migrate_write("store/" MIGRATE_CREDENTIALS_SUBDIR
				 "/g.tmp.x@EXAMPLE.com.tmp.h.1.2", "");
	(void)test_migrate_write("store/" MIGRATE_CREDENTIALS_SUBDIR
				 "/d@other.example.tmp.host.123.0a1b", "");
	test_assert(migrate_credentials_delete_domain(dir, "example.com",
						      &count, &error) == 0);
	test_assert(count == 5);
	test_assert(access(t_strconcat(dir, "/d@other.example.tmp.host.123."
				       "0a1b", NULL), F_OK) == 0);
	test_assert(migrate_credentials_read(dir, "a b@example.com", pool,
					     &cred2, &error) == 0);
	test_assert(migrate_credentials_read(dir, "c@Example.COM", pool,
					     &cred2, &error) == 0);
	test_assert(migrate_credentials_read(dir, "d@other.example", pool,
					     &cred2, &error) == 1);
	test_end();
	pool_unref(&pool);
}

/* must fail: a file of the store as it was found, and the error after
   "FILE" */
static const struct {
	const char *contents, *error;
} test_credentials_fail_rows[] = {
	{ "", ": not a credentials file" },
	{ "dovecot-migrate credentials 2\nhost\th\nport\t0\nuser\tu\n"
	  "password\tSecret!pw1\n", ": not a credentials file" },
	{ "<html>Secret!pw1</html>\n", ": not a credentials file" },
	/* cut short: at a line, inside the password */
	{ "dovecot-migrate credentials 1\nhost\th\nport\t0\nuser\tu\n",
	  ": host, user or password missing" },
	{ "dovecot-migrate credentials 1\nhost\th\nport\t0\nuser\tu\n"
	  "password\tSecret!p", ": truncated (the last line is incomplete)" },
	{ "dovecot-migrate credentials 1\nhost\th\nport\t0\nuser\tu\n"
	  "passwo", ": truncated (the last line is incomplete)" },
	/* corrupted */
	{ "dovecot-migrate credentials 1\nhost\th\nport\t0\nuser\tu\n"
	  "Secret!pw1\n", ":5: broken line" },
	{ "dovecot-migrate credentials 1\nhost\th\nport\t99999\nuser\tu\n"
	  "password\tSecret!pw1\n", ":3: bad port" },
	{ "dovecot-migrate credentials 1\nhost\th\nport\t0\nuser\tu\n"
	  "password\tSecret!pw1\nprotocol\tsmtp\n", ":6: bad protocol" },
};

static void test_credentials_must_fail(void)
{
	const char *dir = test_store_dir("corrupt");
	struct migrate_credentials cred;
	const char *error, *path;
	unsigned int i;
	pool_t pool = pool_alloconly_create("test", 1024);

	test_begin("credentials: must-fail files");
	/* the directory as the store makes it */
	i_zero(&cred);
	cred.source_host = cred.source_user = "x";
	cred.source_password = "Secret!pw1";
	if (migrate_credentials_write(dir, "ana@example.com", &cred,
				      &error) < 0)
		i_fatal("migrate_credentials_write() failed: %s", error);
	path = t_strconcat(dir, "/ana@example.com", NULL);
	for (i = 0; i < N_ELEMENTS(test_credentials_fail_rows); i++) T_BEGIN {
		(void)test_migrate_write(
			"corrupt/" MIGRATE_CREDENTIALS_SUBDIR "/ana@example.com",
			test_credentials_fail_rows[i].contents);
		test_assert_idx(migrate_credentials_read(dir,
			"ana@example.com", pool, &cred, &error) < 0, i);
		test_assert_strcmp_idx(error, t_strconcat(path,
			test_credentials_fail_rows[i].error, NULL), i);
		test_assert_idx(strstr(error, "Secret") == NULL, i);
	} T_END;
	test_end();
	pool_unref(&pool);
}

static void test_credentials_parse(void)
{
	struct migrate_credentials cred, cred2;
	const char *error;
	string_t *str = t_str_new(512);
	pool_t pool = pool_alloconly_create("test", 1024);

	test_begin("credentials: the -K form");
	i_zero(&cred);
	cred.source_host = "2001:db8::1";
	cred.source_port = 143;
	cred.source_user = "user\twith\ttabs";
	cred.source_password = test_odd_password();
	migrate_credentials_serialize(str, &cred);
	test_assert(migrate_credentials_parse("stdin", str_c(str), pool,
					      &cred2, &error) == 0);
	test_assert_strcmp(cred2.source_host, cred.source_host);
	test_assert(cred2.source_port == 143);
	test_assert_strcmp(cred2.source_user, cred.source_user);
	test_assert_strcmp(cred2.source_password, cred.source_password);
	/* no protocol: the file of an older version, or a row without one */
	test_assert(strstr(str_c(str), "protocol") == NULL);
	test_assert(cred2.source_protocol == NULL);
	cred.source_protocol = "pop3";
	str_truncate(str, 0);
	migrate_credentials_serialize(str, &cred);
	test_assert(migrate_credentials_parse("stdin", str_c(str), pool,
					      &cred2, &error) == 0);
	test_assert_strcmp(cred2.source_protocol, "pop3");
	test_assert(migrate_credentials_parse("stdin",
		"dovecot-migrate credentials 1\nhost\th\nuser\tu\n"
		"password\tp\nprotocol\tAUTO\n", pool, &cred2, &error) == 0);
	test_assert_strcmp(cred2.source_protocol, "auto");
	/* what an operator types needs no line feed at the end, and keys
	   of a newer version are ignored */
	test_assert(migrate_credentials_parse("stdin",
		"dovecot-migrate credentials 1\nhost\th\nnew\tx\nuser\tu\n"
		"password\tp", pool, &cred2, &error) == 0);
	test_assert_strcmp(cred2.source_password, "p");
	test_assert(migrate_credentials_parse("stdin", "host\th\n", pool,
					      &cred2, &error) < 0);
	test_assert_strcmp(error, "stdin: not a credentials file");
	test_end();
	pool_unref(&pool);
}

/* in a child of its own: the test process stays as it was */
static void test_credentials_protect_process(void)
{
	struct rlimit rlim;
	const char *error;
	pid_t pid;
	int status, ret;

	test_begin("credentials: a process holding them dumps no core");
	pid = fork();
	if (pid < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0) {
		/* 1: failed, 2: still dumpable, 3: a core limit left */
		ret = 0;
		if (migrate_credentials_protect_process(&error) < 0)
			ret = 1;
		else if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
			ret = 2;
		else if (getrlimit(RLIMIT_CORE, &rlim) < 0 ||
			 rlim.rlim_cur != 0 || rlim.rlim_max != 0)
			ret = 3;
		_exit(ret);
	}
	test_assert(waitpid(pid, &status, 0) == pid);
	test_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	test_end();
}

void test_migrate_credentials(void)
{
	test_credentials_protect_process();
	test_credentials_store();
	test_credentials_must_fail();
	test_credentials_parse();
}
