/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "imap-utf7.h"
#include "migrate-names.h"
#include "test-migrate.h"

static void test_migrate_special_use_flags(void)
{
	static const struct {
		const char *flags;
		enum migrate_special_use use;
	} tests[] = {
		{ "\\Sent", MIGRATE_SPECIAL_SENT },
		{ "\\Trash", MIGRATE_SPECIAL_TRASH },
		{ "\\Drafts", MIGRATE_SPECIAL_DRAFTS },
		{ "\\Junk", MIGRATE_SPECIAL_JUNK },
		{ "\\Archive", MIGRATE_SPECIAL_ARCHIVE },
		{ "\\sent", MIGRATE_SPECIAL_SENT },
		{ "\\JUNK", MIGRATE_SPECIAL_JUNK },
		{ "\\HasNoChildren \\Sent", MIGRATE_SPECIAL_SENT },
		{ "  \\HasChildren   \\Drafts  ", MIGRATE_SPECIAL_DRAFTS },
		/* the first one wins */
		{ "\\Trash \\Junk", MIGRATE_SPECIAL_TRASH },
		{ "\\All \\Junk", MIGRATE_SPECIAL_JUNK },

		/* none of ours */
		{ "", MIGRATE_SPECIAL_NONE },
		{ " ", MIGRATE_SPECIAL_NONE },
		{ "\\All", MIGRATE_SPECIAL_NONE },
		{ "\\Flagged", MIGRATE_SPECIAL_NONE },
		{ "\\Important", MIGRATE_SPECIAL_NONE },
		{ "\\HasNoChildren \\Noselect", MIGRATE_SPECIAL_NONE },
		{ "Sent", MIGRATE_SPECIAL_NONE },
		{ "\\Sentx", MIGRATE_SPECIAL_NONE },
		{ "\\\\Sent", MIGRATE_SPECIAL_NONE },
	};
	enum migrate_special_use use;
	unsigned int i;

	test_begin("migrate special-use flags");
	test_assert(migrate_special_use_flag(MIGRATE_SPECIAL_NONE) == NULL);
	for (use = MIGRATE_SPECIAL_NONE + 1; use < MIGRATE_SPECIAL_COUNT;
	     use++) {
		const char *flag = migrate_special_use_flag(use);

		test_assert_idx(flag != NULL && flag[0] == '\\', use);
		test_assert_idx(migrate_special_use_parse(flag) == use, use);
	}
	test_assert_strcmp(migrate_special_use_flag(MIGRATE_SPECIAL_JUNK),
			   "\\Junk");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		test_assert_idx(migrate_special_use_parse(tests[i].flags) ==
				tests[i].use, i);
	}
	test_end();
}

static void test_migrate_special_use_from_name(void)
{
	static const struct {
		const char *name;
		enum migrate_special_use use;
	} tests[] = {
		{ "Sent", MIGRATE_SPECIAL_SENT },
		{ "Sent Items", MIGRATE_SPECIAL_SENT },
		{ "Sent Messages", MIGRATE_SPECIAL_SENT },
		{ "Sent Mail", MIGRATE_SPECIAL_SENT },
		{ "Enviados", MIGRATE_SPECIAL_SENT },
		{ "Itens Enviados", MIGRATE_SPECIAL_SENT },
		{ "Mensagens Enviadas", MIGRATE_SPECIAL_SENT },
		{ "Elementos enviados", MIGRATE_SPECIAL_SENT },
		{ "Enviadas", MIGRATE_SPECIAL_SENT },
		{ "Correo enviado", MIGRATE_SPECIAL_SENT },
		{ "Trash", MIGRATE_SPECIAL_TRASH },
		{ "Deleted Items", MIGRATE_SPECIAL_TRASH },
		{ "Deleted Messages", MIGRATE_SPECIAL_TRASH },
		{ "Bin", MIGRATE_SPECIAL_TRASH },
		{ "Lixeira", MIGRATE_SPECIAL_TRASH },
		{ "Lixo", MIGRATE_SPECIAL_TRASH },
		{ "Itens Excluidos", MIGRATE_SPECIAL_TRASH },
		{ "Itens Exclu\xc3\xad""dos", MIGRATE_SPECIAL_TRASH },
		{ "Papelera", MIGRATE_SPECIAL_TRASH },
		{ "Elementos eliminados", MIGRATE_SPECIAL_TRASH },
		{ "Eliminados", MIGRATE_SPECIAL_TRASH },
		{ "Drafts", MIGRATE_SPECIAL_DRAFTS },
		{ "Draft", MIGRATE_SPECIAL_DRAFTS },
		{ "Rascunhos", MIGRATE_SPECIAL_DRAFTS },
		{ "Rascunho", MIGRATE_SPECIAL_DRAFTS },
		{ "Borradores", MIGRATE_SPECIAL_DRAFTS },
		{ "Borrador", MIGRATE_SPECIAL_DRAFTS },
		{ "Junk", MIGRATE_SPECIAL_JUNK },
		{ "Spam", MIGRATE_SPECIAL_JUNK },
		{ "Junk E-mail", MIGRATE_SPECIAL_JUNK },
		{ "Junk Email", MIGRATE_SPECIAL_JUNK },
		{ "Bulk Mail", MIGRATE_SPECIAL_JUNK },
		{ "Lixo Eletr\xc3\xb4nico", MIGRATE_SPECIAL_JUNK },
		{ "Lixo Eletronico", MIGRATE_SPECIAL_JUNK },
		{ "Correo no deseado", MIGRATE_SPECIAL_JUNK },
		{ "Correo basura", MIGRATE_SPECIAL_JUNK },
		{ "Archive", MIGRATE_SPECIAL_ARCHIVE },
		{ "Archives", MIGRATE_SPECIAL_ARCHIVE },
		{ "Arquivo", MIGRATE_SPECIAL_ARCHIVE },
		{ "Arquivos", MIGRATE_SPECIAL_ARCHIVE },
		{ "Archivo", MIGRATE_SPECIAL_ARCHIVE },
		{ "Archivos", MIGRATE_SPECIAL_ARCHIVE },

		/* case, accents and whitespace don't matter */
		{ "SENT ITEMS", MIGRATE_SPECIAL_SENT },
		{ "sent items", MIGRATE_SPECIAL_SENT },
		{ "  Sent \t Items  ", MIGRATE_SPECIAL_SENT },
		{ "\tTrash\n", MIGRATE_SPECIAL_TRASH },
		{ "ITENS EXCLU\xc3\x8d""DOS", MIGRATE_SPECIAL_TRASH },
		{ "lixo eletr\xc3\x94nico", MIGRATE_SPECIAL_JUNK },
		/* decomposed (NFD): "o" + U+0302 COMBINING CIRCUMFLEX */
		{ "Lixo Eletro\xcc\x82nico", MIGRATE_SPECIAL_JUNK },
		{ "P\xc3\xa1pel\xc3\xa9r\xc3\xa0", MIGRATE_SPECIAL_TRASH },
		{ "Borr\xc3\xa4""dores", MIGRATE_SPECIAL_DRAFTS },
		{ "Ar\xc3\xa7hivo", MIGRATE_SPECIAL_ARCHIVE },
		{ "Elementos Enviados", MIGRATE_SPECIAL_SENT },

		/* not well-known */
		{ "", MIGRATE_SPECIAL_NONE },
		{ "   ", MIGRATE_SPECIAL_NONE },
		{ "INBOX", MIGRATE_SPECIAL_NONE },
		{ "Sent2", MIGRATE_SPECIAL_NONE },
		{ "SentItems", MIGRATE_SPECIAL_NONE },
		{ "My Sent", MIGRATE_SPECIAL_NONE },
		{ "INBOX.Sent", MIGRATE_SPECIAL_NONE },
		{ "Sent/Old", MIGRATE_SPECIAL_NONE },
		{ "Flagged", MIGRATE_SPECIAL_NONE },
		{ "Important", MIGRATE_SPECIAL_NONE },
		{ "All Mail", MIGRATE_SPECIAL_NONE },
		{ "Lixo Eletr\xc3\xb4nicos", MIGRATE_SPECIAL_NONE },
		/* invalid UTF-8 */
		{ "Sent\xff", MIGRATE_SPECIAL_NONE },
		{ "\xc3", MIGRATE_SPECIAL_NONE },
	};
	unsigned int i;

	test_begin("migrate special-use from name");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		test_assert_idx(migrate_special_use_from_name(tests[i].name) ==
				tests[i].use, i);
	}
	test_end();
}

static void test_migrate_name_convert(void)
{
	static const struct {
		const char *src_vname;
		char src_sep;
		const char *src_prefix;
		char dest_sep, escape_char;
		const char *dest_vname;
	} tests[] = {
		{ "INBOX.Sent", '.', "INBOX.", '/', '_', "Sent" },
		{ "INBOX", '.', "INBOX.", '/', '_', "INBOX" },
		{ "INBOX.a/b.c", '.', "INBOX.", '/', '_', "a_b/c" },
		{ "Work/2020", '/', "", '/', '_', "Work/2020" },
		{ "inbox.x", '.', "INBOX.", '/', '_', "x" },
		{ "Inbox.x.y", '.', "INBOX.", '/', '_', "x/y" },
		{ "A\xc3\xa7\xc3\xa3o.Relat\xc3\xb3rios", '.', NULL, '/', '_',
		  "A\xc3\xa7\xc3\xa3o/Relat\xc3\xb3rios" },

		/* INBOX itself, in any case, is always "INBOX" */
		{ "inbox", '.', "INBOX.", '/', '_', "INBOX" },
		{ "inbox", '/', NULL, '/', '_', "INBOX" },
		{ "Inbox/Sub", '/', "", '.', '_', "INBOX.Sub" },
		{ "INBOXES", '.', NULL, '/', '_', "INBOXES" },
		{ "INBOXES.x", '.', "INBOX.", '/', '_', "INBOXES/x" },
		/* a prefix without its separator strips whole levels only */
		{ "INBOX.Sent", '.', "INBOX", '/', '_', "Sent" },
		{ "INBOX", '.', "INBOX", '/', '_', "INBOX" },
		/* the prefix alone: not stripped */
		{ "INBOX.", '.', "INBOX.", '/', '_', "INBOX/_" },
		/* not under the prefix */
		{ "Sent", '.', "INBOX.", '/', '_', "Sent" },
		{ "Public.x", '.', "INBOX.", '/', '_', "Public/x" },
		/* other prefixes are case-sensitive */
		{ "Shared.x", '.', "Shared.", '/', '_', "x" },
		{ "shared.x", '.', "Shared.", '/', '_', "shared/x" },

		/* the destination separator is escaped inside a level */
		{ "a/b", '.', NULL, '/', '_', "a_b" },
		{ "a.b/c", '/', NULL, '.', '-', "a-b.c" },
		{ "a.b", '.', NULL, '.', '_', "a.b" },
		/* empty levels become escape_char: Dovecot refuses leading,
		   trailing and adjacent separators */
		{ "a..b", '.', NULL, '/', '_', "a/_/b" },
		{ ".a", '.', NULL, '/', '_', "_/a" },
		{ "a.", '.', NULL, '/', '_', "a/_" },
		{ ".", '.', NULL, '/', '_', "_/_" },
		{ "INBOX..x", '.', "INBOX.", '/', '_', "_/x" },
		{ "", '.', "INBOX.", '/', '_', "" },
		/* no hierarchy at the source */
		{ "a.b/c", '\0', NULL, '/', '_', "a.b_c" },
		/* characters IMAP clients cannot ask for or Dovecot refuses
		   become escape_char 'x' <hex><hex> */
		{ "a*b", '/', NULL, '/', '_', "a_x2ab" },
		{ "100%", '/', NULL, '/', '_', "100_x25" },
		{ "ctl\001x\177", '/', NULL, '/', '_', "ctl_x01x_x7f" },
		{ "tab\tnl\n", '/', NULL, '/', '_', "tab_x09nl_x0a" },
		{ "a*b", '/', NULL, '/', '-', "a-x2ab" },
		/* '~' only where a name begins */
		{ "~tilde", '/', NULL, '/', '_', "_x7etilde" },
		{ "~", '/', NULL, '/', '_', "_x7e" },
		{ "INBOX.~tilde", '.', "INBOX.", '/', '_', "_x7etilde" },
		{ "a~b/~c", '/', NULL, '/', '_', "a~b/~c" },
		{ "INBOX/~x", '/', NULL, '/', '_', "INBOX/~x" },
		/* bytes that are no UTF-8 */
		{ "caf\xe9", '/', NULL, '/', '_', "caf_xe9" },
		{ "\xc3", '/', NULL, '/', '_', "_xc3" },
		/* "." and ".." are no folder names to a file system */
		{ ".", '/', NULL, '/', '_', "_x2e" },
		{ "a/../b", '/', NULL, '/', '_', "a/_x2e./b" },
		{ "a/.../.x", '/', NULL, '/', '_', "a/.../.x" },
		/* escape_char stays, unless it would read as an escape */
		{ "a_b_2020", '/', NULL, '/', '_', "a_b_2020" },
		{ "_x41", '/', NULL, '/', '_', "_x5fx41" },
		{ "_x4", '/', NULL, '/', '_', "_x4" },
		{ "_xg1", '/', NULL, '/', '_', "_xg1" },
		{ "__x2a", '/', NULL, '/', '_', "__x5fx2a" },
	};
	static const struct {
		const char *src_vname;
		char src_sep, src_escape_char;
		char dest_sep;
		const char *dest_unsafe_chars;
		const char *dest_vname;
	} escape_tests[] = {
		/* Dovecot's imapc shows a source's '~' as "~7e", a control
		   character as "~01", raw 8-bit bytes each as "~XX" */
		{ "INBOX.~7etilde", '.', '~', '/', NULL, "_x7etilde" },
		{ "INBOX.a~7eb", '.', '~', '/', NULL, "a~b" },
		{ "INBOX.Sub.~7esub", '.', '~', '/', NULL, "Sub/~sub" },
		{ "ctl~01x", '.', '~', '/', NULL, "ctl_x01x" },
		{ "caf~c3~a9", '.', '~', '/', NULL, "caf\xc3\xa9" },
		{ "caf~e9", '.', '~', '/', NULL, "caf_xe9" },
		{ "a~2fb.c", '.', '~', '/', NULL, "a_b/c" },
		{ "a~zz", '.', '~', '/', NULL, "a~zz" },
		{ "a~7", '.', '~', '/', NULL, "a~7" },
		{ "a~00b", '.', '~', '/', NULL, "a~00b" },
		/* the destination's storage separator ('.' for Maildir++
		   under a '/' namespace, '/' under a '.' one) */
		{ "v1.2/x", '/', '\0', '/', ".", "v1_x2e2/x" },
		{ "a/b.c", '.', '\0', '.', "/", "a_x2fb.c" },
		{ "Rel\xc3\xb3rios", '/', '\0', '/', ".",
		  "Rel\xc3\xb3rios" },
	};
	struct migrate_name_params params;
	unsigned int i;

	test_begin("migrate name convert");
	for (i = 0; i < N_ELEMENTS(tests); i++) T_BEGIN {
		i_zero(&params);
		params.src_sep = tests[i].src_sep;
		params.src_prefix = tests[i].src_prefix;
		params.dest_sep = tests[i].dest_sep;
		params.escape_char = tests[i].escape_char;
		test_assert_strcmp_idx(migrate_name_convert(tests[i].src_vname,
							    &params),
				       tests[i].dest_vname, i);
	} T_END;
	for (i = 0; i < N_ELEMENTS(escape_tests); i++) T_BEGIN {
		i_zero(&params);
		params.src_sep = escape_tests[i].src_sep;
		params.src_prefix = "INBOX.";
		params.src_escape_char = escape_tests[i].src_escape_char;
		params.dest_sep = escape_tests[i].dest_sep;
		params.dest_unsafe_chars = escape_tests[i].dest_unsafe_chars;
		params.escape_char = '_';
		test_assert_strcmp_idx(
			migrate_name_convert(escape_tests[i].src_vname,
					     &params),
			escape_tests[i].dest_vname, 100 + i);
	} T_END;
	test_end();
}

/* Every escape of a converted name reads back as the byte of the source's
   name it stands for, and nothing else reads as an escape. */
static const char *test_name_unescape(const char *name)
{
	string_t *str = t_str_new(64);
	unsigned char chr;

	for (; *name != '\0'; name++) {
		if (name[0] == '_' && name[1] == 'x' && name[2] != '\0' &&
		    imap_escaped_utf8_hex_to_char(name + 2, &chr) == 0) {
			str_append_c(str, chr);
			name += 3;
		} else {
			str_append_c(str, *name);
		}
	}
	return str_c(str);
}

static void test_migrate_name_convert_reversible(void)
{
	static const char *const names[] = {
		"~tilde", "a*b%c", "ctl\001x", "_x41", "__x2a", "_x_x41",
		"x_", "_", "a_2f", "caf\xe9", ".", "..", "_x7e~", "a~b",
	};
	struct migrate_name_params params = {
		.src_sep = '/', .dest_sep = '/', .dest_unsafe_chars = ".",
		.escape_char = '_',
	};
	unsigned int i;

	test_begin("migrate name convert is reversible");
	for (i = 0; i < N_ELEMENTS(names); i++) T_BEGIN {
		test_assert_strcmp_idx(test_name_unescape(
			migrate_name_convert(names[i], &params)), names[i], i);
	} T_END;
	test_end();
}

static void test_migrate_name_escape_char(void)
{
	static const char valid[] = "_-+=#!@^,;";
	static const char invalid[] = "aZ09~*%/. \t\177";
	unsigned int i;

	test_begin("migrate name escape char");
	for (i = 0; valid[i] != '\0'; i++)
		test_assert_idx(migrate_name_escape_char_is_valid(valid[i]), i);
	for (i = 0; invalid[i] != '\0'; i++)
		test_assert_idx(!migrate_name_escape_char_is_valid(invalid[i]), i);
	test_end();
}

static void test_migrate_name_is_selected(void)
{
	static const struct {
		const char *name, *include, *exclude;
		bool selected;
	} tests[] = {
		/* empty include selects everything */
		{ "INBOX", NULL, NULL, TRUE },
		{ "Anything/at/all", "", NULL, TRUE },
		{ "x", "   ", "", TRUE },
		/* include */
		{ "INBOX", "INBOX", NULL, TRUE },
		{ "Sent", "INBOX", NULL, FALSE },
		{ "Work/2020", "Work/*", NULL, TRUE },
		{ "Work", "Work/*", NULL, FALSE },
		{ "Work/2020/Q1", "Work/*", NULL, TRUE },
		{ "Work/2020", "Work/20?0", NULL, TRUE },
		{ "Work/2020", "Work/?", NULL, FALSE },
		/* names are case-sensitive ... */
		{ "work/2020", "Work/*", NULL, FALSE },
		/* ... except INBOX */
		{ "inbox", "INBOX", NULL, TRUE },
		{ "INBOX", "inbox", NULL, TRUE },
		{ "Inbox/Sub", "INBOX/*", NULL, TRUE },
		{ "INBOX.Sub", "inbox.*", NULL, TRUE },
		{ "Inboxes", "INBOX*", NULL, FALSE },
		{ "INBOX", "inbox*", NULL, TRUE },
		{ "inbox/x", "Inbox?x", NULL, TRUE },
		{ "Inboxes", "inbox*", NULL, FALSE },
		/* multiple patterns */
		{ "Sent", "INBOX Sent Drafts", NULL, TRUE },
		{ "Drafts", "  INBOX  Sent\tDrafts  ", NULL, TRUE },
		{ "Trash", "INBOX Sent Drafts", NULL, FALSE },
		/* exclude wins */
		{ "Trash", NULL, "Trash", FALSE },
		{ "Trash", "*", "Trash", FALSE },
		{ "Trash/Old", "*", "Trash Trash/*", FALSE },
		{ "Trashy", "*", "Trash Trash/*", TRUE },
		{ "INBOX", "INBOX", "inbox", FALSE },
		{ "Junk", "", "Spam Junk", FALSE },
		{ "Archive/2019", "Archive/*", "*/2019", FALSE },
		{ "Archive/2020", "Archive/*", "*/2019", TRUE },
		{ "Sent", "Sent", "   ", TRUE },
	};
	unsigned int i;

	test_begin("migrate name selection");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		test_assert_idx(migrate_name_is_selected(tests[i].name,
							 tests[i].include,
							 tests[i].exclude) ==
				tests[i].selected, i);
	}
	test_end();
}

void test_migrate_names(void)
{
	test_migrate_special_use_flags();
	test_migrate_special_use_from_name();
	test_migrate_name_convert();
	test_migrate_name_convert_reversible();
	test_migrate_name_escape_char();
	test_migrate_name_is_selected();
}
