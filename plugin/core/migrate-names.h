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

/* How migrate_name_convert() maps names. */
struct migrate_name_params {
	/* the source's hierarchy separator ('\0': none) and namespace prefix
	   to strip (e.g. "INBOX." on Courier-style servers; NULL or "") */
	char src_sep;
	const char *src_prefix;
	/* the character with which the source's client escaped bytes of a
	   name as <char><hex><hex> (Dovecot's imapc: '~', so "~7e" is '~');
	   '\0': none */
	char src_escape_char;
	/* the destination's hierarchy separator, and other characters it
	   cannot hold inside a level (its storage's own separator; NULL:
	   none) */
	char dest_sep;
	const char *dest_unsafe_chars;
	/* migrate_escape_char: see migrate_name_escape_char_is_valid() */
	char escape_char;
};

/* Convert a source vname into a destination vname:
   - strip src_prefix when the name starts with it ("INBOX" itself stays
     "INBOX"); matching of the "INBOX" component is case-insensitive.  It
     is stripped only as whole hierarchy levels ("INBOX" works like
     "INBOX.") and never when nothing would be left ("INBOX." becomes
     "INBOX/_").  A leading INBOX level, in any case, becomes "INBOX";
   - split on src_sep; in each level, undo the source client's escapes,
     then:
     - dest_sep becomes escape_char ("a/b" -> "a_b"; two such names may
       meet: the caller keeps them apart);
     - a byte the destination cannot hold or IMAP clients cannot ask for
       becomes escape_char 'x' and two lower-case hex digits: '*', '%',
       control characters, dest_unsafe_chars, bytes that are no valid
       UTF-8, a '~' that begins the name ("~a" -> "_x7ea"), the first dot
       of a level "." or "..", and escape_char itself where 'x' and two
       hex digits follow it ("_x41" -> "_x5fx41"), so that the escapes
       can be read back: every escape_char 'x' <hex> <hex> of the result
       is one byte of the source's name;
     - an empty level becomes one escape_char (Dovecot refuses leading,
       trailing and adjacent separators: ".a" -> "_/a", "a..b" ->
       "a/_/b");
   - join with dest_sep.
   "" stays "".  escape_char must pass migrate_name_escape_char_is_valid()
   and be neither dest_sep nor one of dest_unsafe_chars.  Allocated from
   the data stack. */
const char *migrate_name_convert(const char *src_vname,
				 const struct migrate_name_params *params);
/* Whether c can be migrate_escape_char: printable ASCII, no letter or
   digit (escapes end in hex digits), none of the characters it escapes
   ("~*%") and no usual separator ("/."). */
bool migrate_name_escape_char_is_valid(char c);

/* Space-separated wildcard patterns ('*' and '?', matching across
   hierarchy levels; "INBOX" case-insensitively).  A name is selected when
   include is empty or matches, and exclude does not match.  include and
   exclude may be NULL.  The INBOX level is recognised when followed by '/'
   or '.' (the separator isn't known here). */
bool migrate_name_is_selected(const char *name, const char *include,
			      const char *exclude);

#endif
