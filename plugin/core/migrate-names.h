#ifndef MIGRATE_NAMES_H
#define MIGRATE_NAMES_H

/* Folder name mapping between the source server and us.  Works on vnames
   (UTF-8; modified UTF-7 is already decoded by the storage layer). */

enum migrate_special_use {
	MIGRATE_SPECIAL_NONE = 0,
	MIGRATE_SPECIAL_SENT,
	MIGRATE_SPECIAL_TRASH,
	MIGRATE_SPECIAL_DRAFTS,
	MIGRATE_SPECIAL_JUNK,
	MIGRATE_SPECIAL_ARCHIVE,

	MIGRATE_SPECIAL_COUNT
};

/* "\\Sent" etc. for an IMAP SPECIAL-USE flag, NULL for NONE. */
const char *migrate_special_use_flag(enum migrate_special_use use);
/* Parse a space-separated SPECIAL-USE list (e.g. "\\HasNoChildren \\Sent");
   the first recognised one wins. */
enum migrate_special_use migrate_special_use_parse(const char *flags);
/* Recognise well-known names (English, Portuguese, Spanish, and the usual
   server-specific ones: "Sent Items", "Deleted Messages", "Itens Enviados",
   "Lixeira", "Elementos enviados", "Correo no deseado", "Spam", ...).
   Case-insensitive, accents optional ("Lixo Eletronico" matches too). The
   name is a single hierarchy level, not a path. */
enum migrate_special_use migrate_special_use_from_name(const char *name);

/* Convert a source vname into a destination vname:
   - strip src_prefix (e.g. "INBOX." on Courier-style servers) when the
     name starts with it ("INBOX" itself stays "INBOX"); matching of the
     "INBOX" component is case-insensitive;
   - split on src_sep, and inside each component replace dest_sep (which
     would otherwise create hierarchy) by escape_char;
   - join with dest_sep.
   src_prefix may be "" or NULL.  It is stripped only as whole hierarchy
   levels ("INBOX" works like "INBOX.") and never when nothing would be
   left ("INBOX." becomes "INBOX/_").  A leading INBOX level, in any case, becomes
   "INBOX".  Dovecot refuses leading, trailing and adjacent separators, so
   each empty level becomes one escape_char: ".a" -> "_/a", "a." -> "a/_",
   "a..b" -> "a/_/b".  "" stays "".  escape_char must not be '\0' or
   dest_sep.  Allocated from the data stack. */
const char *migrate_name_convert(const char *src_vname, char src_sep,
				 const char *src_prefix, char dest_sep,
				 char escape_char);

/* Space-separated wildcard patterns ('*' and '?', matching across
   hierarchy levels; "INBOX" case-insensitively).  A name is selected when
   include is empty or matches, and exclude does not match.  include and
   exclude may be NULL.  The INBOX level is recognised when followed by '/'
   or '.' (the separator isn't known here). */
bool migrate_name_is_selected(const char *name, const char *include,
			      const char *exclude);

#endif
