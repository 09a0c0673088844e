/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "unichar.h"
#include "wildcard-match.h"
#include "imap-utf7.h"
#include "migrate-names.h"

#include <ctype.h>

#define MIGRATE_INBOX_NAME "INBOX"
#define MIGRATE_INBOX_NAME_LEN 5

/* what migrate_name_convert() escapes wherever it is ('~' only at the
   start of a name, where Dovecot refuses it) */
#define MIGRATE_NAME_ESCAPED_CHARS "~*%"
/* escape_char, this, two hex digits: one byte */
#define MIGRATE_NAME_ESCAPE_MARK 'x'

struct migrate_special_name {
	const char *name;
	enum migrate_special_use use;
};

static const char *const migrate_special_use_flags[MIGRATE_SPECIAL_COUNT] = {
	[MIGRATE_SPECIAL_NONE] = NULL,
	[MIGRATE_SPECIAL_SENT] = "\\Sent",
	[MIGRATE_SPECIAL_TRASH] = "\\Trash",
	[MIGRATE_SPECIAL_DRAFTS] = "\\Drafts",
	[MIGRATE_SPECIAL_JUNK] = "\\Junk",
	[MIGRATE_SPECIAL_ARCHIVE] = "\\Archive",
};

/* Compared after migrate_special_name_fold() of the folder name: case,
   accents and extra whitespace don't matter, so "Itens Excluidos" also
   matches "itens  excluídos".  Keep the entries accent-free. */
static const struct migrate_special_name migrate_special_names[] = {
	/* English and the usual server defaults (Outlook/Exchange, Apple,
	   Gmail, Courier, Zimbra...) */
	{ "Sent", MIGRATE_SPECIAL_SENT },
	{ "Sent Items", MIGRATE_SPECIAL_SENT },
	{ "Sent Messages", MIGRATE_SPECIAL_SENT },
	{ "Sent Mail", MIGRATE_SPECIAL_SENT },
	{ "Trash", MIGRATE_SPECIAL_TRASH },
	{ "Deleted Items", MIGRATE_SPECIAL_TRASH },
	{ "Deleted Messages", MIGRATE_SPECIAL_TRASH },
	{ "Bin", MIGRATE_SPECIAL_TRASH },
	{ "Drafts", MIGRATE_SPECIAL_DRAFTS },
	{ "Draft", MIGRATE_SPECIAL_DRAFTS },
	{ "Junk", MIGRATE_SPECIAL_JUNK },
	{ "Spam", MIGRATE_SPECIAL_JUNK },
	{ "Junk E-mail", MIGRATE_SPECIAL_JUNK },
	{ "Junk Email", MIGRATE_SPECIAL_JUNK },
	{ "Bulk Mail", MIGRATE_SPECIAL_JUNK },
	{ "Archive", MIGRATE_SPECIAL_ARCHIVE },
	{ "Archives", MIGRATE_SPECIAL_ARCHIVE },

	/* Portuguese (pt-BR and pt-PT) */
	{ "Enviados", MIGRATE_SPECIAL_SENT },
	{ "Itens Enviados", MIGRATE_SPECIAL_SENT },
	{ "Mensagens Enviadas", MIGRATE_SPECIAL_SENT },
	{ "Enviadas", MIGRATE_SPECIAL_SENT },
	{ "Lixeira", MIGRATE_SPECIAL_TRASH },
	{ "Lixo", MIGRATE_SPECIAL_TRASH },
	{ "Itens Excluidos", MIGRATE_SPECIAL_TRASH },
	{ "Itens Eliminados", MIGRATE_SPECIAL_TRASH },
	{ "Rascunhos", MIGRATE_SPECIAL_DRAFTS },
	{ "Rascunho", MIGRATE_SPECIAL_DRAFTS },
	{ "Lixo Eletronico", MIGRATE_SPECIAL_JUNK },
	{ "Lixo Electronico", MIGRATE_SPECIAL_JUNK },
	{ "Arquivo", MIGRATE_SPECIAL_ARCHIVE },
	{ "Arquivos", MIGRATE_SPECIAL_ARCHIVE },

	/* Spanish */
	{ "Elementos enviados", MIGRATE_SPECIAL_SENT },
	{ "Correo enviado", MIGRATE_SPECIAL_SENT },
	{ "Papelera", MIGRATE_SPECIAL_TRASH },
	{ "Elementos eliminados", MIGRATE_SPECIAL_TRASH },
	{ "Eliminados", MIGRATE_SPECIAL_TRASH },
	{ "Borradores", MIGRATE_SPECIAL_DRAFTS },
	{ "Borrador", MIGRATE_SPECIAL_DRAFTS },
	{ "Correo no deseado", MIGRATE_SPECIAL_JUNK },
	{ "Correo basura", MIGRATE_SPECIAL_JUNK },
	{ "Archivo", MIGRATE_SPECIAL_ARCHIVE },
	{ "Archivos", MIGRATE_SPECIAL_ARCHIVE },
};

const char *migrate_special_use_flag(enum migrate_special_use use)
{
	i_assert(use < MIGRATE_SPECIAL_COUNT);
	return migrate_special_use_flags[use];
}

static enum migrate_special_use
migrate_special_use_parse_flag(const char *flag)
{
	enum migrate_special_use use;

	for (use = MIGRATE_SPECIAL_NONE + 1; use < MIGRATE_SPECIAL_COUNT;
	     use++) {
		if (strcasecmp(flag, migrate_special_use_flags[use]) == 0)
			return use;
	}
	return MIGRATE_SPECIAL_NONE;
}

enum migrate_special_use migrate_special_use_parse(const char *flags)
{
	enum migrate_special_use use = MIGRATE_SPECIAL_NONE;

	T_BEGIN {
		const char *const *flagp;

		for (flagp = t_strsplit_spaces(flags, " ");
		     *flagp != NULL && use == MIGRATE_SPECIAL_NONE; flagp++)
			use = migrate_special_use_parse_flag(*flagp);
	} T_END;
	return use;
}

static bool migrate_is_space(unichar_t chr)
{
	return chr == ' ' || chr == '\t' || chr == '\r' || chr == '\n' ||
		chr == 0xa0;
}

/* Titlecase, strip accents, drop surrounding whitespace and collapse
   internal whitespace to one space. */
static const char *migrate_special_name_fold(const char *name)
{
	string_t *decomposed, *folded;
	const unsigned char *p, *end;
	unichar_t chr;
	bool space = FALSE;
	int len;

	/* "í" becomes "I" followed by U+0301 COMBINING ACUTE ACCENT; a name
	   that already arrived decomposed (NFD, e.g. from macOS) gives the
	   same.  Invalid UTF-8 becomes U+FFFD, which matches nothing. */
	decomposed = t_str_new(64);
	(void)uni_utf8_to_decomposed_titlecase(name, strlen(name), decomposed);

	folded = t_str_new(str_len(decomposed));
	p = str_data(decomposed);
	end = p + str_len(decomposed);
	while (p < end) {
		len = uni_utf8_get_char_n(p, end - p, &chr);
		i_assert(len > 0);
		p += len;

		if (chr >= 0x300 && chr <= 0x36f) {
			/* combining diacritical mark */
			continue;
		}
		if (migrate_is_space(chr)) {
			space = TRUE;
			continue;
		}
		if (space && str_len(folded) > 0)
			str_append_c(folded, ' ');
		space = FALSE;
		uni_ucs4_to_utf8_c(chr, folded);
	}
	return str_c(folded);
}

enum migrate_special_use migrate_special_use_from_name(const char *name)
{
	enum migrate_special_use use = MIGRATE_SPECIAL_NONE;
	unsigned int i;

	T_BEGIN {
		const char *folded = migrate_special_name_fold(name);

		/* titlecase is uppercase for the ASCII the table uses */
		for (i = 0; i < N_ELEMENTS(migrate_special_names); i++) {
			const char *known = migrate_special_names[i].name;

			if (strcasecmp(folded, known) == 0) {
				use = migrate_special_names[i].use;
				break;
			}
		}
	} T_END;
	return use;
}

/* Returns TRUE if name begins with the INBOX component, in any case. */
static bool migrate_name_has_inbox(const char *name, char sep)
{
	if (strncasecmp(name, MIGRATE_INBOX_NAME, MIGRATE_INBOX_NAME_LEN) != 0)
		return FALSE;
	return name[MIGRATE_INBOX_NAME_LEN] == '\0' ||
		(sep != '\0' && name[MIGRATE_INBOX_NAME_LEN] == sep);
}

static const char *
migrate_name_strip_prefix(const char *name, char sep, const char *prefix)
{
	size_t prefix_len = strlen(prefix);
	const char *rest;

	if (migrate_name_has_inbox(prefix, sep)) {
		if (!migrate_name_has_inbox(name, sep) ||
		    strncmp(name + MIGRATE_INBOX_NAME_LEN,
			    prefix + MIGRATE_INBOX_NAME_LEN,
			    prefix_len - MIGRATE_INBOX_NAME_LEN) != 0)
			return name;
	} else if (strncmp(name, prefix, prefix_len) != 0) {
		return name;
	}
	rest = name + prefix_len;

	/* strip only whole hierarchy levels: prefix "INBOX" works like
	   "INBOX.", and doesn't make "INBOXES" into "ES" */
	if (prefix[prefix_len - 1] != sep) {
		if (sep == '\0' || *rest != sep)
			return name;
		rest++;
	}
	/* the prefix itself (e.g. "INBOX" for "INBOX.") stays */
	return *rest == '\0' ? name : rest;
}

bool migrate_name_escape_char_is_valid(char c)
{
	return c > ' ' && c < 0x7f && !i_isalnum(c) &&
		strchr(MIGRATE_NAME_ESCAPED_CHARS "/.", c) == NULL;
}

/* level (len bytes) with the source client's <escape><hex><hex> turned
   back into the bytes they stand for */
static const char *
migrate_name_unescape_source(const char *level, size_t len, char escape_char)
{
	const char *p;
	unsigned char chr;
	string_t *raw;

	level = t_strndup(level, len);
	if (escape_char == '\0' || strchr(level, escape_char) == NULL)
		return level;
	raw = t_str_new(len);
	for (p = level; *p != '\0'; p++) {
		if (*p == escape_char && p[1] != '\0' &&
		    imap_escaped_utf8_hex_to_char(p + 1, &chr) == 0 &&
		    chr != '\0') {
			str_append_c(raw, chr);
			p += 2;
		} else {
			str_append_c(raw, *p);
		}
	}
	return str_c(raw);
}

static bool migrate_name_is_escape_at(const char *p, char escape_char)
{
	return p[0] == escape_char && p[1] == MIGRATE_NAME_ESCAPE_MARK &&
		i_isxdigit(p[2]) && i_isxdigit(p[3]);
}

static bool
migrate_name_char_is_unsafe(const struct migrate_name_params *params,
			    const char *p, bool name_start)
{
	unsigned char c = *p;

	if (c < 0x20 || c == 0x7f)
		return TRUE;
	if (strchr(MIGRATE_NAME_ESCAPED_CHARS, c) != NULL)
		return c != '~' || name_start;
	if (params->dest_unsafe_chars != NULL &&
	    strchr(params->dest_unsafe_chars, c) != NULL)
		return TRUE;
	return migrate_name_is_escape_at(p, params->escape_char);
}

static void
migrate_name_append_escaped(string_t *dest, char escape_char,
			    unsigned char c)
{
	str_printfa(dest, "%c%c%02x", escape_char, MIGRATE_NAME_ESCAPE_MARK, c);
}

/* One level of the source's name, with its source escapes undone, as a
   level of ours (see migrate_name_convert()). */
static void
migrate_name_append_level(string_t *dest,
			  const struct migrate_name_params *params,
			  const char *level, bool name_start)
{
	size_t start = str_len(dest), n = strlen(level), pos = 0;
	unichar_t chr;
	int len;

	if (n == 0) {
		str_append_c(dest, params->escape_char);
		return;
	}
	while (pos < n) {
		len = uni_utf8_get_char_n(level + pos, n - pos, &chr);
		if (len <= 0) {
			/* no valid UTF-8 */
			migrate_name_append_escaped(dest, params->escape_char,
						    level[pos++]);
		} else if (len > 1) {
			str_append_data(dest, level + pos, len);
			pos += len;
		} else if (level[pos] == params->dest_sep) {
			str_append_c(dest, params->escape_char);
			pos++;
		} else if (migrate_name_char_is_unsafe(params, level + pos,
						       name_start && pos == 0)) {
			migrate_name_append_escaped(dest, params->escape_char,
						    level[pos++]);
		} else {
			str_append_c(dest, level[pos++]);
		}
	}
	/* "." and ".." are this directory and its parent to a file system */
	if (strcmp(str_c(dest) + start, ".") == 0 ||
	    strcmp(str_c(dest) + start, "..") == 0) {
		str_truncate(dest, start);
		migrate_name_append_escaped(dest, params->escape_char, '.');
		if (n == 2)
			str_append_c(dest, '.');
	}
}

const char *migrate_name_convert(const char *src_vname,
				 const struct migrate_name_params *params)
{
	const char *name = src_vname, *level_end;
	bool name_start = TRUE;
	string_t *dest;

	i_assert(params->dest_sep != '\0');
	i_assert(migrate_name_escape_char_is_valid(params->escape_char));
	i_assert(params->escape_char != params->dest_sep);

	if (*src_vname == '\0')
		return "";
	if (params->src_prefix != NULL && params->src_prefix[0] != '\0') {
		name = migrate_name_strip_prefix(src_vname, params->src_sep,
						 params->src_prefix);
	}

	dest = t_str_new(strlen(name) + 16);
	if (migrate_name_has_inbox(name, params->src_sep)) {
		/* INBOX is case-insensitive: use one spelling */
		str_append(dest, MIGRATE_INBOX_NAME);
		name += MIGRATE_INBOX_NAME_LEN;
		if (*name == '\0')
			return str_c(dest);
		/* the separator after it */
		name++;
		str_append_c(dest, params->dest_sep);
		name_start = FALSE;
	}
	for (;;) {
		level_end = params->src_sep == '\0' ? NULL :
			strchr(name, params->src_sep);
		if (level_end == NULL)
			level_end = name + strlen(name);
		migrate_name_append_level(dest, params,
			migrate_name_unescape_source(name, level_end - name,
						     params->src_escape_char),
			name_start);
		if (*level_end == '\0')
			break;
		str_append_c(dest, params->dest_sep);
		name = level_end + 1;
		name_start = FALSE;
	}
	return str_c(dest);
}

/* "inbox", "Inbox/x" and "inbox.x" become "INBOX", "INBOX/x", "INBOX.x".
   The separator isn't known here, so both usual ones are accepted; in a
   pattern, so is a wildcard ("inbox*"). */
static const char *
migrate_name_normalize_inbox(const char *name, bool pattern)
{
	char next;

	if (strncasecmp(name, MIGRATE_INBOX_NAME,
			MIGRATE_INBOX_NAME_LEN) != 0 ||
	    strncmp(name, MIGRATE_INBOX_NAME, MIGRATE_INBOX_NAME_LEN) == 0)
		return name;
	next = name[MIGRATE_INBOX_NAME_LEN];
	if (next != '\0' && next != '/' && next != '.' &&
	    (!pattern || (next != '*' && next != '?')))
		return name;
	return t_strconcat(MIGRATE_INBOX_NAME,
			   name + MIGRATE_INBOX_NAME_LEN, NULL);
}

/* Returns 1 if name matches one of the patterns, 0 if not, -1 if there
   are no patterns. */
static int migrate_name_match(const char *name, const char *patterns)
{
	const char *const *patternp, *pattern;
	int ret = -1;

	if (patterns == NULL)
		return -1;
	for (patternp = t_strsplit_spaces(patterns, " \t");
	     *patternp != NULL; patternp++) {
		pattern = migrate_name_normalize_inbox(*patternp, TRUE);
		if (wildcard_match(name, pattern))
			return 1;
		ret = 0;
	}
	return ret;
}

bool migrate_name_is_selected(const char *name, const char *include,
			      const char *exclude)
{
	bool selected;

	T_BEGIN {
		name = migrate_name_normalize_inbox(name, FALSE);
		selected = migrate_name_match(name, include) != 0 &&
			migrate_name_match(name, exclude) != 1;
	} T_END;
	return selected;
}
