/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "migrate-text.h"

/* the bytes of a control character at p: 1 (C0, DEL), 2 (C1 in UTF-8),
   0 for none */
static unsigned int migrate_text_control_len(const unsigned char *p)
{
	if (p[0] < 0x20 || p[0] == 0x7f)
		return 1;
	if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
		return 2;
	return 0;
}

void migrate_text_append_escaped(string_t *dest, const char *text)
{
	const unsigned char *p = (const unsigned char *)text;
	unsigned int i, len;

	while (*p != '\0') {
		len = migrate_text_control_len(p);
		if (len == 0) {
			str_append_c(dest, *p++);
			continue;
		}
		for (i = 0; i < len; i++)
			str_printfa(dest, "\\x%02x", *p++);
	}
}

const char *migrate_text_escape(const char *text)
{
	const unsigned char *p;
	string_t *str;

	if (text == NULL)
		return NULL;
	for (p = (const unsigned char *)text; *p != '\0'; p++) {
		if (migrate_text_control_len(p) > 0)
			break;
	}
	if (*p == '\0')
		return text;
	str = t_str_new(strlen(text) + 16);
	migrate_text_append_escaped(str, text);
	return str_c(str);
}
