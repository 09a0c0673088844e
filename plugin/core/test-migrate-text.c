/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "test-migrate.h"
#include "migrate-text.h"

static const struct {
	const char *text, *escaped;
} test_text_rows[] = {
	{ "", "" },
	{ "INBOX", "INBOX" },
	/* printable ASCII, backslashes and UTF-8 stay */
	{ "a\\b \"c\" ~d", "a\\b \"c\" ~d" },
	{ "Lixo Eletr\xc3\xb4nico", "Lixo Eletr\xc3\xb4nico" },
	/* C0 and DEL */
	{ "a\x1b[31mb", "a\\x1b[31mb" },
	{ "line\nWarning: forged", "line\\x0aWarning: forged" },
	{ "a\r\tb\x7f", "a\\x0d\\x09b\\x7f" },
	{ "\x01", "\\x01" },
	/* C1 in UTF-8: U+0080, U+009B (CSI); U+00A0 is no control */
	{ "a\xc2\x80" "b\xc2\x9b" "c", "a\\xc2\\x80b\\xc2\\x9bc" },
	{ "\xc2\xa0", "\xc2\xa0" },
	/* a lone 0xc2 at the end is no C1 */
	{ "a\xc2", "a\xc2" },
};

static void test_text_escape(void)
{
	const char *text;
	unsigned int i;

	test_begin("text: control characters escaped");
	for (i = 0; i < N_ELEMENTS(test_text_rows); i++) {
		test_assert_strcmp_idx(migrate_text_escape(test_text_rows[i].text),
				       test_text_rows[i].escaped, i);
	}
	/* nothing to escape: the same pointer, NULL stays NULL */
	text = "INBOX";
	test_assert(migrate_text_escape(text) == text);
	test_assert(migrate_text_escape(NULL) == NULL);
	/* escaping twice changes nothing more */
	text = migrate_text_escape("a\x1b" "b");
	test_assert(migrate_text_escape(text) == text);
	test_end();
}

void test_migrate_text(void)
{
	test_text_escape();
}
