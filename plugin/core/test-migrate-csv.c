/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "test-migrate.h"
#include "migrate-text.h"
#include "migrate-csv.h"

#define BIG (64 * 1024)

/* The file's records, one a line: "LINE:field|field|..." (a line feed in
   a field as "\n"), "LINE!error" for a record that cannot be parsed, and
   "read: error" when the file cannot be read. */
static const char *test_csv_records(const char *path)
{
	pool_t pool = pool_alloconly_create("test csv", 1024);
	struct migrate_csv_reader *reader;
	struct migrate_csv_record rec;
	string_t *str = t_str_new(256);
	const char *error, *p;
	unsigned int i;
	int ret;

	reader = migrate_csv_open(path, pool);
	while ((ret = migrate_csv_next(reader, &rec, &error)) > 0) {
		if (str_len(str) > 0)
			str_append_c(str, '\n');
		if (rec.error != NULL) {
			str_printfa(str, "%u!%s", rec.line, rec.error);
			continue;
		}
		str_printfa(str, "%u:", rec.line);
		for (i = 0; i < rec.count; i++) {
			if (i > 0)
				str_append_c(str, '|');
			for (p = rec.fields[i]; *p != '\0'; p++) {
				if (*p == '\n')
					str_append(str, "\\n");
				else
					str_append_c(str, *p);
			}
		}
	}
	if (ret < 0)
		str_printfa(str, "read: %s", error);
	migrate_csv_close(&reader);
	pool_unref(&pool);
	return str_c(str);
}

static const struct {
	const char *contents, *records;
} test_csv_rows[] = {
	{ "a,b,c\n", "1:a|b|c" },
	/* ';' when the first record has one, else ',' */
	{ "a;b,c\nd;e\n", "1:a|b,c\n2:d|e" },
	{ "a,b\nc;d,e\n", "1:a|b\n2:c;d|e" },
	{ "a,,\n,b,\n", "1:a||\n2:|b|" },
	/* quotes: the separator, doubled quotes, line breaks; the lines
	   after a record of two lines are numbered on */
	{ "\"a;b\";\"say \"\"hi\"\"\";\"\"\n", "1:a;b|say \"hi\"|" },
	{ "a,\"x\ny\"\nb,c\n", "1:a|x\\ny\n3:b|c" },
	{ "a,\"x\n# y\"\n", "1:a|x\\n# y" },
	/* BOM, CRLF (also inside quotes), no line feed at the end */
	{ "\xef\xbb\xbf" "a,b\n", "1:a|b" },
	{ "a,b\r\nc,\"d\r\ne\"\r\n", "1:a|b\n2:c|d\\ne" },
	{ "a,b\nc,d", "1:a|b\n2:c|d" },
	{ "Jo\xc3\xa3o;\xc3\x81vila\n", "1:Jo\xc3\xa3o|\xc3\x81vila" },
	/* comments and blank lines */
	{ "# c,d\n\n  # indented\n\t\na,b\n\n#x\nc,d\n", "5:a|b\n8:c|d" },
	{ "", "" },
	{ "# a\n\n", "" },

	/* must fail */
	{ "a,b\nc,\"d\ne,f\n", "1:a|b\n2!a quoted field is not closed" },
};

static void test_csv_table(void)
{
	const char *path;
	unsigned int i;

	test_begin("csv: quotes, separators, BOM, CRLF, comments");
	for (i = 0; i < N_ELEMENTS(test_csv_rows); i++) T_BEGIN {
		path = test_migrate_write("t.csv", test_csv_rows[i].contents);
		test_assert_strcmp_idx(test_csv_records(path),
				       test_csv_rows[i].records, i);
	} T_END;
	test_end();
}

/* the record that ends the reading */
static const char *test_csv_stopped(unsigned int line, const char *what)
{
	return t_strdup_printf("%u!the %s is longer than %u bytes; the rest "
			       "of the file is not read", line, what, BIG);
}

static void test_csv_bounds(void)
{
	string_t *str = t_str_new(BIG * 2);
	const char *path, *expected;
	unsigned int i;

	test_begin("csv: 64 fields, not 65");
	for (i = 0; i < 64; i++)
		str_append(str, i == 0 ? "f" : ",f");
	str_append(str, "\na,b\n");
	path = test_migrate_write("t.csv", str_c(str));
	test_assert(str_begins(test_csv_records(path), "1:f|f|"));
	str_truncate(str, 0);
	str_append(str, "a,b\n");
	for (i = 0; i < 65; i++)
		str_append(str, i == 0 ? "f" : ",f");
	str_append(str, "\nc,d\n");
	path = test_migrate_write("t.csv", str_c(str));
	test_assert_strcmp(test_csv_records(path),
			   "1:a|b\n2!more than 64 columns\n3:c|d");
	test_end();

	test_begin("csv: a field just under the limit");
	str_truncate(str, 0);
	str_append(str, "a,");
	for (i = 0; i < BIG - 8; i++)
		str_append_c(str, 'x');
	str_append(str, "\nb,c\n");
	path = test_migrate_write("t.csv", str_c(str));
	expected = test_csv_records(path);
	test_assert(str_begins(expected, "1:a|xxx"));
	test_assert(strstr(expected, "x\n2:b|c") != NULL);
	test_end();

	test_begin("csv: a line over the limit, named by its line");
	str_truncate(str, 0);
	str_append(str, "a,b\n# c\nd,");
	for (i = 0; i < BIG; i++)
		str_append_c(str, 'x');
	str_append(str, "\ne,f\n");
	path = test_migrate_write("t.csv", str_c(str));
	test_assert_strcmp(test_csv_records(path),
			   t_strconcat("1:a|b\n", test_csv_stopped(3, "line"),
				       NULL));
	test_end();

	test_begin("csv: a record over the limit, named by its first line");
	str_truncate(str, 0);
	str_append(str, "a,b\nc,\"");
	for (i = 0; i < BIG / 100 + 1; i++) {
		str_append(str, t_strdup_printf("%0100d", 0));
		str_append_c(str, '\n');
	}
	str_append(str, "\"\ne,f\n");
	path = test_migrate_write("t.csv", str_c(str));
	test_assert_strcmp(test_csv_records(path),
			   t_strconcat("1:a|b\n", test_csv_stopped(2, "record"),
				       NULL));
	test_end();
}

static void test_csv_unreadable(void)
{
	const char *path, *records;

	test_begin("csv: a file that cannot be opened");
	path = t_strconcat(test_migrate_dir(), "/nonexistent.csv", NULL);
	records = test_csv_records(path);
	test_assert(str_begins(records, "read: open("));
	test_assert(strstr(records, "nonexistent.csv") != NULL);
	test_assert(strstr(records, "No such file") != NULL);
	test_end();
}

/* a cell as we write it: a formula never starts one */
static const struct {
	const char *value, *cell;
} test_csv_cells[] = {
	{ NULL, "" },
	{ "", "" },
	{ "INBOX", "INBOX" },
	{ "a,b", "\"a,b\"" },
	{ "a;b", "\"a;b\"" },
	{ "say \"hi\"", "\"say \"\"hi\"\"\"" },
	{ "1-2=3", "1-2=3" },
	{ "a\x1b[31mb", "a\\x1b[31mb" },
	{ "a\r\nb", "a\\x0d\\x0ab" },
	/* neutralised: "'" in front, quoted */
	{ "=1+2", "\"'=1+2\"" },
	{ "=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\"" },
	{ "+1", "\"'+1\"" },
	{ "-2", "\"'-2\"" },
	{ "@SUM(A1)", "\"'@SUM(A1)\"" },
	{ "\t=1", "\"'\\x09=1\"" },
	{ "\r=1", "\"'\\x0d=1\"" },
	{ "=cmd|' /C calc'!A0", "\"'=cmd|' /C calc'!A0\"" },
};

static void test_csv_write(void)
{
	string_t *str = t_str_new(128);
	const char *path, *expected;
	unsigned int i;

	test_begin("csv: cells we write");
	for (i = 0; i < N_ELEMENTS(test_csv_cells); i++) {
		str_truncate(str, 0);
		migrate_csv_append_field(str, test_csv_cells[i].value);
		test_assert_strcmp_idx(str_c(str), test_csv_cells[i].cell, i);
	}
	test_end();

	/* as a report: a header row, so that ',' is the separator */
	test_begin("csv: cells we write read back as they were written");
	for (i = 2; i < N_ELEMENTS(test_csv_cells); i++) T_BEGIN {
		str_truncate(str, 0);
		str_append(str, "h,i,j\r\nx,");
		migrate_csv_append_field(str, test_csv_cells[i].value);
		str_append(str, ",y\r\n");
		path = test_migrate_write("w.csv", str_c(str));
		expected = migrate_text_escape(test_csv_cells[i].value);
		if (strchr("=+-@\t\r", test_csv_cells[i].value[0]) != NULL)
			expected = t_strconcat("'", expected, NULL);
		test_assert_strcmp_idx(test_csv_records(path),
			t_strconcat("1:h|i|j\n2:x|", expected, "|y", NULL), i);
	} T_END;
	test_end();
}

void test_migrate_csv(void)
{
	test_csv_table();
	test_csv_bounds();
	test_csv_unreadable();
	test_csv_write();
}
