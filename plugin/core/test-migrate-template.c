/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "test-migrate.h"
#include "migrate-template.h"

static struct migrate_template *test_read(const char *name,
					  const char *contents)
{
	struct migrate_template *tmpl;
	const char *path, *error;

	path = test_migrate_write(name, contents);
	test_assert(migrate_template_read(path, &tmpl, &error) == 0);
	return tmpl;
}

/* TRUE when some error contains all the given substrings */
static bool test_has_error(const struct migrate_template *tmpl,
			   const char *a, const char *b)
{
	const char *msg;

	array_foreach_elem(&tmpl->errors, msg) {
		if (strstr(msg, a) != NULL && (b == NULL || strstr(msg, b) != NULL))
			return TRUE;
	}
	return FALSE;
}

static void test_template_imapsync(void)
{
	struct migrate_template *tmpl;
	const struct migrate_template_row *rows;
	unsigned int count;

	test_begin("template: imapsync lines, comments, BOM, CRLF, quoting");
	tmpl = test_read("a.txt",
		"\xef\xbb\xbf# customer template\r\n"
		"\r\n"
		"10.0.0.1;ana@old.example;Pw;d.example;ana@example.com;Str0ng!pass\r\n"
		"  # indented comment\n"
		"[2001:db8::5]:993;bob;\"a;b,[=+(){}\"\"ç\";mx;bob@example.com;Str0ng!pass\n"
		"old.example:143;carl;x;mx;carl@example.com;Str0ng!pass;--nofoldersizes\n");
	test_assert(array_count(&tmpl->errors) == 0);
	rows = array_get(&tmpl->rows, &count);
	test_assert(count == 3);
	if (count == 3) {
		test_assert(rows[0].line == 3);
		test_assert_strcmp(rows[0].source_host, "10.0.0.1");
		test_assert(rows[0].source_port == 0);
		test_assert_strcmp(rows[0].source_user, "ana@old.example");
		test_assert_strcmp(rows[0].dest_user, "ana@example.com");
		test_assert(rows[1].line == 5);
		test_assert_strcmp(rows[1].source_host, "2001:db8::5");
		test_assert(rows[1].source_port == 993);
		test_assert_strcmp(rows[1].source_password, "a;b,[=+(){}\"ç");
		test_assert_strcmp(rows[2].source_host, "old.example");
		test_assert(rows[2].source_port == 143);
	}
	/* the 7th column is noted, not an error */
	test_assert(array_count(&tmpl->notes) == 1);
	test_assert_strcmp(tmpl->dest_domain, "example.com");
	migrate_template_free(&tmpl);
	test_end();
}

static void test_template_header(void)
{
	struct migrate_template *tmpl;
	const struct migrate_template_row *rows;
	unsigned int count;

	test_begin("template: header row, ',' separated, any column order");
	tmpl = test_read("h.csv",
		"dest_user,source_user,source_host,source_password,dest_host,dest_password,notes\n"
		"ana@example.com,ana,imap.old,\"p,w\",mx,Str0ng!pass,first\n"
		"bob@example.com,bob,imap.old,pw2,mx,\"Str0ng!pass\",\n");
	test_assert(array_count(&tmpl->errors) == 0);
	rows = array_get(&tmpl->rows, &count);
	test_assert(count == 2);
	if (count == 2) {
		test_assert(rows[0].line == 2);
		test_assert_strcmp(rows[0].source_user, "ana");
		test_assert_strcmp(rows[0].source_password, "p,w");
		test_assert_strcmp(rows[1].dest_user, "bob@example.com");
	}
	/* the unknown "notes" column */
	test_assert(array_count(&tmpl->notes) == 1);
	migrate_template_free(&tmpl);

	tmpl = test_read("h2.csv",
		"host1;user1;password1;host2;user2\n"
		"a;b;c;d;e@x\n");
	test_assert(test_has_error(tmpl, ":1: ", "no dest_password column"));
	migrate_template_free(&tmpl);
	test_end();
}

static void test_template_tls_name(void)
{
	struct migrate_template *tmpl;
	const struct migrate_template_row *rows;
	unsigned int count;

	test_begin("template: the optional tls_name column");
	tmpl = test_read("tls.csv",
		"source_host;source_user;source_password;dest_host;dest_user;"
		"dest_password;TLS Name\n"
		"192.0.2.1:993;ana;pw;mx;ana@example.com;Str0ng!pass;"
		"imap.old.example\n"
		"[2001:db8::5];bob;pw;mx;bob@example.com;Str0ng!pass;\n"
		"imap.old;carl;pw;mx;carl@example.com;Str0ng!pass;\n");
	test_assert(array_count(&tmpl->errors) == 0);
	test_assert(array_count(&tmpl->notes) == 0);
	rows = array_get(&tmpl->rows, &count);
	test_assert(count == 3);
	if (count == 3) {
		test_assert_strcmp(rows[0].source_tls_name, "imap.old.example");
		test_assert(rows[1].source_tls_name == NULL);
		test_assert(rows[2].source_tls_name == NULL);
	}
	migrate_template_free(&tmpl);

	/* optional: the files without it have no name */
	tmpl = test_read("notls.txt",
		"h;ana;pw;mx;ana@example.com;Str0ng!pass\n");
	test_assert(array_count(&tmpl->errors) == 0);
	rows = array_get(&tmpl->rows, &count);
	test_assert(count == 1 && rows[0].source_tls_name == NULL);
	migrate_template_free(&tmpl);
	test_end();
}

static void test_template_source_protocol(void)
{
	struct migrate_template *tmpl;
	const struct migrate_template_row *rows;
	unsigned int count;

	test_begin("template: the optional source_protocol column");
	tmpl = test_read("proto.csv",
		"host1,user1,password1,host2,user2,password2,Protocolo\n"
		"h,ana,pw,mx,ana@example.com,Str0ng!pass,POP3\n"
		"h,bob,pw,mx,bob@example.com,Str0ng!pass,imap\n"
		"h,carl,pw,mx,carl@example.com,Str0ng!pass,\n"
		"h,dora,pw,mx,dora@example.com,Str0ng!pass,auto\n");
	test_assert(array_count(&tmpl->errors) == 0);
	test_assert(array_count(&tmpl->notes) == 0);
	rows = array_get(&tmpl->rows, &count);
	test_assert(count == 4);
	if (count == 4) {
		test_assert_strcmp(rows[0].source_protocol, "pop3");
		test_assert_strcmp(rows[1].source_protocol, "imap");
		test_assert(rows[2].source_protocol == NULL);
		test_assert_strcmp(rows[3].source_protocol, "auto");
	}
	migrate_template_free(&tmpl);

	/* a bad value is the row's problem, named with its column */
	tmpl = test_read("badproto.csv",
		"source_host;source_user;source_password;dest_host;dest_user;"
		"dest_password;source_protocol\n"
		"h;ana;pw;mx;ana@example.com;Str0ng!pass;pop3\n"
		"h;bob;pw;mx;bob@example.com;Str0ng!pass;smtp\n");
	test_assert(array_count(&tmpl->errors) == 1);
	test_assert(test_has_error(tmpl, "badproto.csv:3: column 7 "
		"(source_protocol): 'smtp' is not imap, pop3 or auto", NULL));
	test_assert(array_count(&tmpl->rows) == 1);
	migrate_template_free(&tmpl);

	/* optional: the files without it leave it to the setting */
	tmpl = test_read("noproto.txt",
		"h;ana;pw;mx;ana@example.com;Str0ng!pass\n");
	rows = array_get(&tmpl->rows, &count);
	test_assert(count == 1 && rows[0].source_protocol == NULL);
	migrate_template_free(&tmpl);
	test_end();
}

static void test_template_source_auth(void)
{
	struct migrate_template *tmpl;
	const struct migrate_template_row *rows;
	unsigned int count;

	test_begin("template: the optional source_auth column");
	/* an OAuth2 row may leave its password empty, no other may */
	tmpl = test_read("auth.csv",
		"source_host,source_user,source_password,dest_host,dest_user,"
		"dest_password,source_auth\n"
		"h,ana,,mx,ana@example.com,Str0ng!pass,XOAUTH2\n"
		"h,bob,tok,mx,bob@example.com,Str0ng!pass,oauthbearer\n"
		"h,carl,pw,mx,carl@example.com,Str0ng!pass,\n"
		"h,dora,,mx,dora@example.com,Str0ng!pass,password\n"
		"h,eve,,mx,eve@example.com,Str0ng!pass,kerberos\n");
	test_assert(array_count(&tmpl->errors) == 2);
	test_assert(test_has_error(tmpl, "auth.csv:5: column 3 "
		"(source_password): is empty", NULL));
	test_assert(test_has_error(tmpl, "auth.csv:6: column 3 "
		"(source_password): is empty", NULL));
	rows = array_get(&tmpl->rows, &count);
	test_assert(count == 3);
	if (count == 3) {
		test_assert_strcmp(rows[0].source_auth, "xoauth2");
		test_assert_strcmp(rows[0].source_password, "");
		test_assert_strcmp(rows[1].source_auth, "oauthbearer");
		test_assert(rows[2].source_auth == NULL);
	}
	migrate_template_free(&tmpl);

	tmpl = test_read("badauth.csv",
		"source_host,source_user,source_password,dest_host,dest_user,"
		"dest_password,authmech1\n"
		"h,eve,pw,mx,eve@example.com,Str0ng!pass,kerberos\n");
	test_assert(test_has_error(tmpl, "badauth.csv:2: column 7 "
		"(source_auth): 'kerberos' is not password, xoauth2 or "
		"oauthbearer", NULL));
	migrate_template_free(&tmpl);
	test_end();
}

static void test_template_errors(void)
{
	struct migrate_template *tmpl;
	const char *msg;

	test_begin("template: every problem with its line and column");
	tmpl = test_read("bad.txt",
		"h;ana;pw;mx;ana@example.com;Str0ng!pass\n"
		"h;bob;pw;mx;bob@example.com\n"
		"h;;pw;mx;carl@example.com;Str0ng!pass\n"
		"h;dan;pw;mx;dan@other.example;Str0ng!pass\n"
		"h;eve;pw;mx;ana@example.com;Str0ng!pass\n"
		"h;ana;pw;mx;fay@example.com;Str0ng!pass\n"
		"h;gus;pw;mx;gus@example.com;weakpass\n"
		"h:99999;hal;pw;mx;hal@example.com;Str0ng!pass\n"
		"h;ivy;\"open;mx;ivy@example.com;Str0ng!pass\n");
	test_assert(test_has_error(tmpl, "bad.txt:2: 5 columns", NULL));
	test_assert(test_has_error(tmpl, "bad.txt:3: column 2 (source_user)", "empty"));
	test_assert(test_has_error(tmpl, "bad.txt:4: column 5 (dest_user)", "other.example"));
	test_assert(test_has_error(tmpl, "bad.txt:5: column 5 (dest_user)", "line 1"));
	test_assert(test_has_error(tmpl, "bad.txt:6: column 2 (source_user)", "line 1"));
	test_assert(test_has_error(tmpl, "bad.txt:7: column 6 (dest_password)", "policy"));
	test_assert(test_has_error(tmpl, "bad.txt:8: column 1 (source_host)", "port"));
	test_assert(test_has_error(tmpl, "bad.txt:9: ", "not closed"));
	/* sorted by line */
	test_assert(array_count(&tmpl->errors) == 8);
	if (array_count(&tmpl->errors) > 0)
		test_assert(strstr(array_idx_elem(&tmpl->errors, 0), ":2:") != NULL);
	/* no password in any message */
	array_foreach_elem(&tmpl->errors, msg) {
		test_assert(strstr(msg, "Str0ng") == NULL);
		test_assert(strstr(msg, "weakpass") == NULL);
	}
	migrate_template_free(&tmpl);

	tmpl = test_read("empty.txt", "# nothing\n\n");
	test_assert(test_has_error(tmpl, "no accounts", NULL));
	migrate_template_free(&tmpl);
	test_end();
}

#define OK_ROW "h;ana;pw;mx;ana@example.com;Str0ng!pass\n"
#define HEADER "source_host,source_user,source_password,dest_host,dest_user,dest_password\n"

/* must fail: each file has exactly this one problem, after "FILE" */
static const struct {
	const char *contents, *error;
} test_template_fail_rows[] = {
	/* the imapsync form: 6 columns, or 7 with imapsync's options */
	{ "h;ana;pw;mx;ana@example.com\n",
	  ":1: 5 columns, expected 6 (source_host;source_user;"
	  "source_password;dest_host;dest_user;dest_password)" },
	{ "h;ana;pw;mx;ana@example.com;Str0ng!pass;--opt;x\n",
	  ":1: 8 columns, expected 6 (source_host;source_user;"
	  "source_password;dest_host;dest_user;dest_password)" },
	{ ";ana;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 1 (source_host): is empty" },
	{ "h;;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 2 (source_user): is empty" },
	{ "h;ana;;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 3 (source_password): is empty" },
	{ "h;ana;pw;;ana@example.com;Str0ng!pass\n",
	  ":1: column 4 (dest_host): is empty" },
	{ "h;ana;pw;mx;;Str0ng!pass\n",
	  ":1: column 5 (dest_user): is empty" },
	{ "h;ana;pw;mx;ana@example.com;\n",
	  ":1: column 6 (dest_password): is empty" },
	/* hosts */
	{ "[2001:db8::1;ana;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 1 (source_host): '[' without ']'" },
	{ "[2001:db8::1]x;ana;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 1 (source_host): unexpected text after ']'" },
	{ "2001:db8::1;ana;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 1 (source_host): an IPv6 address needs [brackets]" },
	{ ":143;ana;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 1 (source_host): no host name" },
	{ "[]:143;ana;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 1 (source_host): no host name" },
	{ "imap/old;ana;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 1 (source_host): not a host name or address" },
	{ "ana@imap;ana;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 1 (source_host): not a host name or address" },
	{ "imap old;ana;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 1 (source_host): not a host name or address" },
	{ "h:99999;ana;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 1 (source_host): not a valid port" },
	{ "h:0;ana;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 1 (source_host): not a valid port" },
	{ "h:imaps;ana;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 1 (source_host): not a valid port" },
	{ "h;ana;pw;mx\\1;ana@example.com;Str0ng!pass\n",
	  ":1: column 4 (dest_host): not a host name or address" },
	/* users */
	{ "h;an\001a;pw;mx;ana@example.com;Str0ng!pass\n",
	  ":1: column 2 (source_user): contains control characters" },
	{ "h;ana;pw;mx;ana b@example.com;Str0ng!pass\n",
	  ":1: column 5 (dest_user): is not a valid user name" },
	{ "h;ana;pw;mx;ana/b@example.com;Str0ng!pass\n",
	  ":1: column 5 (dest_user): is not a valid user name" },
	{ "h;ana;pw;mx;ana\tb@example.com;Str0ng!pass\n",
	  ":1: column 5 (dest_user): is not a valid user name" },
	/* across rows: one domain, each account once */
	{ OK_ROW "h;bob;pw;mx;bob@example.com;Str0ng!pass\n"
	  "h;old2;pw;mx;u02@other.example;Str0ng!pass\n",
	  ":3: column 5 (dest_user): domain 'other.example' differs from "
	  "'example.com' of line 2 (one domain per file)" },
	{ OK_ROW "h;bob;pw;mx;ANA@example.com;Str0ng!pass\n",
	  ":2: column 5 (dest_user): ANA@example.com is also on line 1" },
	{ "127.0.0.1:1143;old5;pw;mx;u05@example.com;Str0ng!pass\n"
	  "127.0.0.1:1143;old5;pw;mx;u06@example.com;Str0ng!pass\n",
	  ":2: column 2 (source_user): old5 at 127.0.0.1 is also on line 1" },
	/* the destination password policy */
	{ "h;weak;pw;mx;weak@example.com;weakpass\n",
	  ":1: column 6 (dest_password): does not meet the password policy: "
	  "no uppercase letter" },
	{ "h;weak;pw;mx;weak@example.com;Sh0rt!\n",
	  ":1: column 6 (dest_password): does not meet the password policy: "
	  "fewer than 8 characters" },
	/* the file */
	{ OK_ROW "h;ivy;\"open;mx;ivy@example.com;Str0ng!pass\n",
	  ":2: a quoted field is not closed" },
	{ "# nothing\n\n", ": no accounts" },
	/* with a header */
	{ "host1;user1;password1;host2;user2\n",
	  ":1: the header has no dest_password column" },
	{ "source_host,host1,source_user,source_password,dest_host,dest_user,"
	  "dest_password\nh,h,ana,pw,mx,ana@example.com,Str0ng!pass\n",
	  ":1: header column 2 (host1) names source_host twice" },
	{ HEADER "h,ana,pw,mx,ana@example.com\n",
	  ":2: 5 columns, but the header has 6" },
	{ HEADER "h,ana,pw,mx,ana@example.com,Str0ng!pass,x\n",
	  ":2: 7 columns, but the header has 6" },
	{ HEADER "h,ana,pw,mx,ana@example.com,\n",
	  ":2: column 6 (dest_password): is empty" },
	/* the certificate name of a source given by IP address */
	{ "source_host,source_user,source_password,dest_host,dest_user,"
	  "dest_password,TLS name\n"
	  "imap.old,ana,pw,mx,ana@example.com,Str0ng!pass,imap.old.example\n",
	  ":2: column 7 (tls_name): is only for a source_host given by IP "
	  "address (imap.old is verified as itself)" },
	{ "source_host,source_user,source_password,dest_host,dest_user,"
	  "dest_password,tls_name\n"
	  "192.0.2.1,ana,pw,mx,ana@example.com,Str0ng!pass,192.0.2.2\n",
	  ":2: column 7 (tls_name): not a host name" },
};

static void test_template_must_fail(void)
{
	struct migrate_template *tmpl;
	unsigned int i;

	test_begin("template: must-fail rows");
	for (i = 0; i < N_ELEMENTS(test_template_fail_rows); i++) T_BEGIN {
		tmpl = test_read(t_strdup_printf("fail%u.txt", i),
				 test_template_fail_rows[i].contents);
		test_migrate_assert_one_error(&tmpl->errors, tmpl->path,
			test_template_fail_rows[i].error, i);
		migrate_template_free(&tmpl);
	} T_END;
	test_end();
}

/* no problem shows a password, wherever it is in the row */
static void test_template_secret_values(void)
{
	struct migrate_template *tmpl;
	const char *msg;

	test_begin("template: a password under another column is not shown");
	/* source_password and dest_user swapped in the header, twice */
	tmpl = test_read("misaligned.txt",
		"source_host,source_user,dest_user,dest_host,source_password,"
		"dest_password\n"
		"h,ana,0ld!Secret,mx,ana@example.com,Str0ng!pass\n"
		"h,bob,0ld!Secret,mx,bob@example.com,Str0ng!pass\n");
	test_migrate_assert_one_error(&tmpl->errors, tmpl->path,
		":3: column 3 (dest_user): a value that may be a password (not "
		"shown) is also on line 2", 0);
	array_foreach_elem(&tmpl->errors, msg)
		test_assert(strstr(msg, "Secret") == NULL);
	migrate_template_free(&tmpl);
	test_end();
}

static void test_template_bounds(void)
{
	struct migrate_template *tmpl;
	string_t *str = t_str_new(70000);
	unsigned int i;

	test_begin("template: a line over the CSV reader's limit");
	str_append(str, OK_ROW "h;bob;");
	for (i = 0; i < 70000; i++)
		str_append_c(str, 'x');
	str_append(str, ";mx;bob@example.com;Str0ng!pass\n" OK_ROW);
	tmpl = test_read("long.txt", str_c(str));
	test_assert(array_count(&tmpl->errors) == 1);
	if (array_count(&tmpl->errors) == 1) {
		test_assert_strcmp(array_idx_elem(&tmpl->errors, 0),
			t_strconcat(tmpl->path, ":2: the line is longer than "
				    "65536 bytes; the rest of the file is not "
				    "read", NULL));
	}
	migrate_template_free(&tmpl);
	test_end();
}

static void test_template_missing(void)
{
	struct migrate_template *tmpl = NULL;
	const char *error;

	test_begin("template: unreadable file");
	test_assert(migrate_template_read(t_strconcat(test_migrate_dir(),
		"/nonexistent", NULL), &tmpl, &error) < 0);
	test_assert(strstr(error, "nonexistent") != NULL);
	test_assert(tmpl == NULL);
	test_end();
}

static void test_password_policy(void)
{
	const char *reason;

	test_begin("destination password policy");
	test_assert(migrate_password_policy_check("Str0ng!pass", &reason));
	test_assert(migrate_password_policy_check("ação2024X", &reason));
	test_assert(!migrate_password_policy_check("S0!a", &reason));
	test_assert_strcmp(reason, "fewer than 8 characters");
	test_assert(!migrate_password_policy_check("STR0NG!PASS", &reason));
	test_assert_strcmp(reason, "no lowercase letter");
	test_assert(!migrate_password_policy_check("str0ng!pass", &reason));
	test_assert_strcmp(reason, "no uppercase letter");
	test_assert(!migrate_password_policy_check("Strong!pass", &reason));
	test_assert_strcmp(reason, "no digit");
	test_assert(!migrate_password_policy_check("Str0ngpass", &reason));
	test_assert_strcmp(reason, "no special character");
	test_end();
}

void test_migrate_template(void)
{
	test_template_imapsync();
	test_template_header();
	test_template_tls_name();
	test_template_source_protocol();
	test_template_source_auth();
	test_template_errors();
	test_template_must_fail();
	test_template_secret_values();
	test_template_bounds();
	test_template_missing();
	test_password_policy();
}
