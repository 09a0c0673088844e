#ifndef MIGRATE_TEXT_H
#define MIGRATE_TEXT_H

/* Text from outside (a source's folder names and replies, template
   values) made safe to show in a log line, a table or a report: control
   characters (C0, DEL, and C1 written as UTF-8) become "\xNN", byte by
   byte (ESC is "\x1b", U+009B is "\xc2\x9b"), so that no name can move a
   terminal's cursor, forge a log line or hide in one.  Everything else,
   backslashes included, stays as it is: the text is for people to read,
   not to be decoded again.  Dovecot's str_sanitize() writes '?' instead,
   which would make two different names look the same. */

void migrate_text_append_escaped(string_t *dest, const char *text);
/* text itself when it has nothing to escape (NULL stays NULL), else the
   escaped copy from the data stack. */
const char *migrate_text_escape(const char *text);

#endif
