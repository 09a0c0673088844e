/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
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
	};
	unsigned int i;

	test_begin("migrate name convert");
	for (i = 0; i < N_ELEMENTS(tests); i++) T_BEGIN {
		test_assert_strcmp_idx(
			migrate_name_convert(tests[i].src_vname,
					     tests[i].src_sep,
					     tests[i].src_prefix,
					     tests[i].dest_sep,
					     tests[i].escape_char),
			tests[i].dest_vname, i);
	} T_END;
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
	test_migrate_name_is_selected();
}
