/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "mkdir-parents.h"
#include "test-migrate.h"
#include "migrate-accounts.h"

#include <sys/stat.h>

#define HEADER "username,domain,password,quota,type,full name,language," \
	"time zone,date format\n"
#define OK_ROW "ok01,cliente.example,Good!pass1,1,0,Ana Lima,pt-br," \
	"America/Sao_Paulo,dd/mm/aaaa\n"
#define POLICY "(policy: at least 8 characters, a lowercase and an " \
	"uppercase letter, a digit and a special character)"
#define USER_RULE "(letters, digits and . _ + - only, no leading, " \
	"trailing or double dot, at most 64)"

/* a time zone database of our own: the system's may be missing */
static const char *test_zoneinfo_dir(void)
{
	const char *dir = t_strconcat(test_migrate_dir(), "/zoneinfo", NULL);

	if (mkdir_parents(t_strconcat(dir, "/America", NULL), 0700) < 0 &&
	    errno != EEXIST)
		i_fatal("mkdir_parents(%s) failed: %m", dir);
	(void)test_migrate_write("zoneinfo/America/Sao_Paulo", "TZif");
	(void)test_migrate_write("zoneinfo/UTC", "TZif");
	return dir;
}

static struct migrate_accounts *
test_accounts_read(const char *name, const char *contents)
{
	struct migrate_accounts *accounts;
	const char *path, *error;

	path = test_migrate_write(name, contents);
	if (migrate_accounts_read(path, test_zoneinfo_dir(), &accounts,
				  &error) < 0)
		i_fatal("migrate_accounts_read(%s) failed: %s", path, error);
	return accounts;
}

static void test_accounts_valid(void)
{
	struct migrate_accounts *accounts;
	const struct migrate_account *acc;
	unsigned int count;

	test_begin("accounts: a pt-BR spreadsheet");
	accounts = test_accounts_read("contas.csv",
		"\xef\xbb\xbf"
		"Usu\xc3\xa1rio;Dom\xc3\xadnio;Senha;Cota (GB);Tipo;Nome completo;"
		"Idioma;Fuso hor\xc3\xa1rio;Formato de data;Observa\xc3\xa7\xc3\xb5" "es\r\n"
		"Ana.Lima;@Cliente.Example;\"Senha,01;Forte!x\";2,5;1;"
		"\"Jo\xc3\xa3o d'\xc3\x81vila\";pt-BR;America/Sao_Paulo;"
		"dd/mm/aaaa;x\r\n"
		"bob;cliente.example;Senha!02x;0.5;0;Bob;en;UTC;;\r\n"
		"carl;cliente.example;Senha!03x;5;0;Carl;pt;UTC;;\r\n");
	test_assert(array_count(&accounts->errors) == 0);
	test_assert_strcmp(accounts->domain, "cliente.example");
	acc = array_get(&accounts->accounts, &count);
	test_assert(count == 3);
	if (count == 3) {
		test_assert(acc[0].line == 2);
		test_assert_strcmp(acc[0].user, "ana.lima@cliente.example");
		test_assert_strcmp(acc[0].password, "Senha,01;Forte!x");
		test_assert(acc[0].quota_mib == 2560);
		test_assert(acc[0].type == 1);
		test_assert_strcmp(acc[0].full_name,
				   "Jo\xc3\xa3o d'\xc3\x81vila");
		test_assert_strcmp(acc[0].language, "pt-BR");
		test_assert_strcmp(acc[0].time_zone, "America/Sao_Paulo");
		test_assert_strcmp(acc[0].date_format, "dd/mm/aaaa");
		test_assert(acc[1].quota_mib == 512);
		test_assert_strcmp(acc[1].date_format, "");
		test_assert(acc[2].quota_mib == 5120);
	}
	/* the unknown column, and fewer rows than the template is for */
	test_assert(array_count(&accounts->notes) == 2);
	if (array_count(&accounts->notes) == 2) {
		test_assert_strcmp(array_idx_elem(&accounts->notes, 0),
			t_strconcat(accounts->path, ":1: column 10 "
				    "(Observa\xc3\xa7\xc3\xb5" "es) is not one "
				    "of ours: ignored", NULL));
		test_assert_strcmp(array_idx_elem(&accounts->notes, 1),
			t_strconcat(accounts->path, ": 3 accounts: the "
				    "template is meant for 15 or more (fewer "
				    "are quicker to create by hand)", NULL));
	}
	migrate_accounts_free(&accounts);

	/* the date format column is optional */
	accounts = test_accounts_read("nodate.csv",
		"username,domain,password,quota,type,full name,language,"
		"time zone\n"
		"solo,cliente.example,Solo!pass1,1,0,Solo,en,UTC\n");
	test_assert(array_count(&accounts->errors) == 0);
	test_assert(array_count(&accounts->accounts) == 1);
	if (array_count(&accounts->accounts) == 1) {
		acc = array_idx(&accounts->accounts, 0);
		test_assert_strcmp(acc->date_format, "");
	}
	migrate_accounts_free(&accounts);
	test_end();
}

/* must fail: each file has exactly this one problem, after "FILE" */
static const struct {
	const char *contents, *error;
} test_accounts_fail_rows[] = {
	/* the password policy */
	{ HEADER "bad02,cliente.example,Sh!1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 3 (password): the password has fewer than 8 "
	  "characters "POLICY },
	{ HEADER "bad03,cliente.example,nouppercase!1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 3 (password): the password has no uppercase letter "
	  POLICY },
	{ HEADER "bad03,cliente.example,NOLOWER!1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 3 (password): the password has no lowercase letter "
	  POLICY },
	{ HEADER "bad03,cliente.example,No!digits,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 3 (password): the password has no digit "POLICY },
	{ HEADER "bad03,cliente.example,NoSpecial1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 3 (password): the password has no special character "
	  POLICY },
	/* the full name */
	{ HEADER "bad04,cliente.example,Good!pass1,1,0,Ana <boss>,pt-br,UTC,x\n",
	  ":2: column 6 (full name): 'Ana <boss>' has a character other than "
	  "letters, digits, space, apostrophe, dot, @ and hyphen" },
	{ HEADER "bad04,cliente.example,Good!pass1,1,0,Ana\xc3\x97,pt-br,UTC,x\n",
	  ":2: column 6 (full name): 'Ana\xc3\x97' has a character other than "
	  "letters, digits, space, apostrophe, dot, @ and hyphen" },
	{ HEADER "bad04,cliente.example,Good!pass1,1,0,Ana\xc3,pt-br,UTC,x\n",
	  ":2: column 6 (full name): 'Ana\xc3' has a character other than "
	  "letters, digits, space, apostrophe, dot, @ and hyphen" },
	/* one domain per file, each user once */
	{ HEADER OK_ROW
	  "ok02,cliente.example,Good!pass1,1,0,Ana,pt-br,UTC,x\n"
	  "bad05,outro.example,Good!pass1,1,0,Ana,pt-br,UTC,x\n",
	  ":4: column 2 (domain): outro.example: one domain per file, and "
	  "most rows are for cliente.example" },
	{ HEADER OK_ROW "OK01,cliente.example,Good!pass1,1,0,Ana,pt-br,UTC,x\n",
	  ":3: column 1 (username): ok01@cliente.example is already on "
	  "line 2" },
	/* user names */
	{ HEADER "bad 06,cliente.example,Good!pass1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 1 (username): invalid user name 'bad 06' "USER_RULE },
	{ HEADER ".bad,cliente.example,Good!pass1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 1 (username): invalid user name '.bad' "USER_RULE },
	{ HEADER "bad.,cliente.example,Good!pass1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 1 (username): invalid user name 'bad.' "USER_RULE },
	{ HEADER "b..d,cliente.example,Good!pass1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 1 (username): invalid user name 'b..d' "USER_RULE },
	{ HEADER "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  ",cliente.example,Good!pass1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 1 (username): invalid user name 'aaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' "USER_RULE },
	{ HEADER "ana@cliente.example,cliente.example,Good!pass1,1,0,Ana,pt-br,"
	  "UTC,x\n",
	  ":2: column 1 (username): only the part before the @" },
	/* domains */
	{ HEADER "bad,localhost,Good!pass1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 2 (domain): invalid domain 'localhost'" },
	{ HEADER "bad,-cliente.example,Good!pass1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 2 (domain): invalid domain '-cliente.example'" },
	{ HEADER "bad,cli_ente.example,Good!pass1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 2 (domain): invalid domain 'cli_ente.example'" },
	{ HEADER "bad,cliente..example,Good!pass1,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 2 (domain): invalid domain 'cliente..example'" },
	/* quota: positive GB */
	{ HEADER "bad07,cliente.example,Good!pass1,-2,0,Ana,pt-br,UTC,x\n",
	  ":2: column 4 (quota): '-2' is not a positive number of GB (e.g. 5 "
	  "or 2.5)" },
	{ HEADER "bad08,cliente.example,Good!pass1,0,0,Ana,pt-br,UTC,x\n",
	  ":2: column 4 (quota): '0' is not a positive number of GB (e.g. 5 "
	  "or 2.5)" },
	{ HEADER "bad08,cliente.example,Good!pass1,2.,0,Ana,pt-br,UTC,x\n",
	  ":2: column 4 (quota): '2.' is not a positive number of GB (e.g. 5 "
	  "or 2.5)" },
	{ HEADER "bad08,cliente.example,Good!pass1,5GB,0,Ana,pt-br,UTC,x\n",
	  ":2: column 4 (quota): '5GB' is not a positive number of GB (e.g. "
	  "5 or 2.5)" },
	{ HEADER "bad08,cliente.example,Good!pass1,1000001,0,Ana,pt-br,UTC,x\n",
	  ":2: column 4 (quota): '1000001' is not a positive number of GB "
	  "(e.g. 5 or 2.5)" },
	/* type */
	{ HEADER "bad09,cliente.example,Good!pass1,1,2,Ana,pt-br,UTC,x\n",
	  ":2: column 5 (type): '2' is not 0 (basic) or 1 (sync)" },
	/* language */
	{ HEADER "bad10,cliente.example,Good!pass1,1,0,Ana,portugues do brasil,"
	  "UTC,x\n",
	  ":2: column 7 (language): 'portugues do brasil' is not a language "
	  "tag (e.g. pt-br)" },
	{ HEADER "bad10,cliente.example,Good!pass1,1,0,Ana,p,UTC,x\n",
	  ":2: column 7 (language): 'p' is not a language tag (e.g. pt-br)" },
	{ HEADER "bad10,cliente.example,Good!pass1,1,0,Ana,pt-,UTC,x\n",
	  ":2: column 7 (language): 'pt-' is not a language tag (e.g. "
	  "pt-br)" },
	/* time zone: one of the database's files, and only that */
	{ HEADER "bad11,cliente.example,Good!pass1,1,0,Ana,pt-br,"
	  "America/Atlantis,x\n",
	  ":2: column 8 (time zone): 'America/Atlantis' is not a time zone of "
	  "@ZONEINFO@ (e.g. America/Sao_Paulo)" },
	{ HEADER "bad11,cliente.example,Good!pass1,1,0,Ana,pt-br,America,x\n",
	  ":2: column 8 (time zone): 'America' is not a time zone of @ZONEINFO@ (e.g. "
	  "America/Sao_Paulo)" },
	{ HEADER "bad11,cliente.example,Good!pass1,1,0,Ana,pt-br,"
	  "America/../UTC,x\n",
	  ":2: column 8 (time zone): 'America/../UTC' is not a time zone of "
	  "@ZONEINFO@ (e.g. America/Sao_Paulo)" },
	{ HEADER "bad11,cliente.example,Good!pass1,1,0,Ana,pt-br,/UTC,x\n",
	  ":2: column 8 (time zone): '/UTC' is not a time zone of @ZONEINFO@ (e.g. "
	  "America/Sao_Paulo)" },
	/* date format */
	{ HEADER "bad12,cliente.example,Good!pass1,1,0,Ana,pt-br,UTC,dd mm\n",
	  ":2: column 9 (date format): 'dd mm' has a space or control "
	  "character, or is longer than 32" },
	{ HEADER "bad12,cliente.example,Good!pass1,1,0,Ana,pt-br,UTC,"
	  "dddddddddddddddddddddddddddddddddd\n",
	  ":2: column 9 (date format): 'dddddddddddddddddddddddddddddddddd' "
	  "has a space or control character, or is longer than 32" },
	/* empty values: all but the date format are required */
	{ HEADER "bad,cliente.example,Good!pass1,,0,Ana,pt-br,UTC,x\n",
	  ":2: column 4 (quota): empty" },
	{ HEADER "bad,cliente.example,,1,0,Ana,pt-br,UTC,x\n",
	  ":2: column 3 (password): empty" },
	/* the file's shape */
	{ HEADER OK_ROW "bad13,cliente.example,Good!pass1,1,0\n",
	  ":3: 5 fields, the header has 9" },
	{ HEADER OK_ROW "bad14,cliente.example,\"Good!pass1,1,0,Ana,pt-br,UTC,x\n",
	  ":3: a quoted field is not closed" },
	{ "", ":1: no header row and no accounts" },
	{ "username,domain,password,type,full name,language,time zone\n"
	  "a,cliente.example,Good!pass1,0,Ana,pt-br,UTC\n",
	  ":1: the header has no column quota (expected: username, domain, "
	  "password, quota, type, full name, language, time zone, date "
	  "format)" },
	{ "user,usuario,domain,password,quota,type,full name,language,"
	  "time zone\n",
	  ":1: column 1 (username): named twice in the header" },
};

/* with the zoneinfo directory for "@ZONEINFO@" */
static const char *test_expand(const char *text)
{
	const char *p = strstr(text, "@ZONEINFO@");

	if (p == NULL)
		return text;
	return t_strconcat(t_strdup_until(text, p), test_zoneinfo_dir(),
			   p + strlen("@ZONEINFO@"), NULL);
}

static void test_accounts_must_fail(void)
{
	struct migrate_accounts *accounts;
	const char *msg;
	unsigned int i;

	test_begin("accounts: must-fail rows");
	for (i = 0; i < N_ELEMENTS(test_accounts_fail_rows); i++) T_BEGIN {
		accounts = test_accounts_read(t_strdup_printf("fail%u.csv", i),
			test_accounts_fail_rows[i].contents);
		test_migrate_assert_one_error(&accounts->errors,
			accounts->path,
			test_expand(test_accounts_fail_rows[i].error), i);
		/* a password never shows */
		array_foreach_elem(&accounts->errors, msg) {
			test_assert_idx(strstr(msg, "Good!pass1") == NULL, i);
			test_assert_idx(strstr(msg, "ass1") == NULL, i);
		}
		migrate_accounts_free(&accounts);
	} T_END;
	test_end();
}

/* no problem shows a password, wherever it is in the row */
static void test_accounts_secret_values(void)
{
	struct migrate_accounts *accounts;
	const char *msg;

	test_begin("accounts: a password under another column is not shown");
	/* no header: the first row would name the columns with its values */
	accounts = test_accounts_read("noheader.csv", OK_ROW OK_ROW);
	test_migrate_assert_one_error(&accounts->errors, accounts->path,
		":1: the first row is not a header: it names none of the "
		"columns (expected: username, domain, password, quota, type, "
		"full name, language, time zone, date format)", 0);
	array_foreach_elem(&accounts->notes, msg)
		test_assert(strstr(msg, "ass1") == NULL);
	migrate_accounts_free(&accounts);

	/* the header's columns in another order than the values' */
	accounts = test_accounts_read("misaligned.csv",
		"username,domain,quota,password,type,full name,language,"
		"time zone,date format\n" OK_ROW);
	test_assert(array_count(&accounts->errors) == 2);
	if (array_count(&accounts->errors) == 2) {
		test_assert_strcmp(array_idx_elem(&accounts->errors, 1),
			t_strconcat(accounts->path, ":2: column 3 (quota): a "
				    "value that may be a password (not shown) "
				    "is not a positive number of GB (e.g. 5 or "
				    "2.5)", NULL));
	}
	array_foreach_elem(&accounts->errors, msg)
		test_assert(strstr(msg, "ass1") == NULL);
	migrate_accounts_free(&accounts);
	test_end();
}

static void test_accounts_sorted(void)
{
	struct migrate_accounts *accounts;
	const char *const *errors;
	unsigned int count;

	test_begin("accounts: problems sorted by line");
	/* the duplicate of line 3 is found after the rows are read */
	accounts = test_accounts_read("sorted.csv", HEADER OK_ROW
		"ok01,cliente.example,Good!pass1,1,0,Ana,pt-br,UTC,x\n"
		"bad,cliente.example,Good!pass1,0,0,Ana,pt-br,UTC,x\n");
	errors = array_get(&accounts->errors, &count);
	test_assert(count == 2);
	if (count == 2) {
		test_assert(strstr(errors[0], ":3: column 1 (username)") != NULL);
		test_assert(strstr(errors[1], ":4: column 4 (quota)") != NULL);
	}
	migrate_accounts_free(&accounts);
	test_end();
}

static void test_accounts_unreadable(void)
{
	struct migrate_accounts *accounts = NULL;
	const char *error;

	test_begin("accounts: unreadable file");
	test_assert(migrate_accounts_read(t_strconcat(test_migrate_dir(),
		"/nonexistent.csv", NULL), test_zoneinfo_dir(), &accounts,
		&error) < 0);
	test_assert(strstr(error, "nonexistent.csv") != NULL);
	test_assert(accounts == NULL);
	test_end();
}

static void test_accounts_tail_escaped(void)
{
	struct migrate_account acc = {
		.user = "ana@cliente.example",
		.quota_mib = 2560,
		.type = 1,
		.full_name = "Ana Lima",
		.language = "pt-br",
		.time_zone = "America/Sao_Paulo",
		.date_format = "%d/%m/%Y",
	};

	test_begin("accounts: % in a userdb field is stored as %%%%");
	/* the passwd-file userdb expands it once (%w: the password), the
	   mail process's plugin settings once more */
	test_assert_strcmp(migrate_account_tail(&acc),
		":::Ana Lima:::userdb_quota_rule=*:storage=2560M "
		"userdb_account_type=1 userdb_language=pt-br "
		"userdb_time_zone=America/Sao_Paulo "
		"userdb_date_format=%%%%d/%%%%m/%%%%Y");
	acc.date_format = "%w";
	test_assert(strstr(migrate_account_tail(&acc),
			   " userdb_date_format=%%%%w") != NULL);
	acc.date_format = "";
	test_assert(strstr(migrate_account_tail(&acc), "date_format") == NULL);
	test_assert_strcmp(migrate_account_result_name(MIGRATE_ACCOUNT_FAILED),
			   "failed");
	test_assert_strcmp(migrate_account_result_name(
		MIGRATE_ACCOUNT_UNVERIFIED), "unverified");
	test_end();
}

void test_migrate_accounts(void)
{
	test_accounts_valid();
	test_accounts_tail_escaped();
	test_accounts_must_fail();
	test_accounts_secret_values();
	test_accounts_sorted();
	test_accounts_unreadable();
}
