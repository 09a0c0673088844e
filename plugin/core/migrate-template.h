#ifndef MIGRATE_TEMPLATE_H
#define MIGRATE_TEMPLATE_H

#include "net.h"

/* The customer's sync template: one account per line, in imapsync's batch
   format

     source_host;source_user;source_password;dest_host;dest_user;dest_password

   (an optional 7th column of per-line imapsync extras is ignored with a
   note), or a CSV file whose first row names the columns (',' or ';').
   Quoting as in CSV, so a password may hold any character; UTF-8 with or
   without BOM, CRLF or LF, '#' comment lines and blank lines.  A source
   host may carry a port: "host:993", "[2001:db8::1]:143".  A file with a
   header may add a tls_name column: the name to verify the certificate
   of a source given by IP address against (migrate-tls.h); and a
   source_protocol column: imap, pop3 or auto (migrate_source_protocol for
   this account; empty: the setting's); and a source_auth column:
   password, xoauth2 or oauthbearer (migrate_source_auth for this account;
   empty: the setting's).  A row with xoauth2 or oauthbearer may leave its
   source_password empty: the token then comes from
   migrate_source_oauth2_token_command.

   Nothing in an error or a note ever quotes a password.  The header and
   the problems are migrate-table.h's. */

enum migrate_template_column {
	MIGRATE_TEMPLATE_SOURCE_HOST = 0,
	MIGRATE_TEMPLATE_SOURCE_USER,
	MIGRATE_TEMPLATE_SOURCE_PASSWORD,
	MIGRATE_TEMPLATE_DEST_HOST,
	MIGRATE_TEMPLATE_DEST_USER,
	MIGRATE_TEMPLATE_DEST_PASSWORD,
	/* the columns every row has: imapsync's */
	MIGRATE_TEMPLATE_REQUIRED_COUNT,

	/* optional, and only in a file with a header */
	MIGRATE_TEMPLATE_SOURCE_TLS_NAME = MIGRATE_TEMPLATE_REQUIRED_COUNT,
	MIGRATE_TEMPLATE_SOURCE_PROTOCOL,
	MIGRATE_TEMPLATE_SOURCE_AUTH,

	MIGRATE_TEMPLATE_COLUMN_COUNT
};

struct migrate_template_row {
	/* the line the row starts on (1-based) */
	unsigned int line;
	const char *source_host;
	/* 0 = not given */
	in_port_t source_port;
	const char *source_user;
	const char *source_password;
	const char *dest_host;
	const char *dest_user;
	const char *dest_password;
	/* the certificate name of a source_host given by IP address; NULL
	   when not given */
	const char *source_tls_name;
	/* "imap", "pop3" or "auto" (migrate_source_protocol_to_str()); NULL
	   when not given */
	const char *source_protocol;
	/* "password", "xoauth2" or "oauthbearer"
	   (migrate_source_auth_to_str()); NULL when not given */
	const char *source_auth;
};
ARRAY_DEFINE_TYPE(migrate_template_row, struct migrate_template_row);

struct migrate_template {
	pool_t pool;
	const char *path;
	ARRAY_TYPE(migrate_template_row) rows;
	/* "FILE:LINE: column N (name): problem", sorted by line */
	ARRAY_TYPE(const_string) errors;
	/* warnings that do not stop the file, same form */
	ARRAY_TYPE(const_string) notes;
	/* the destination domain of every row ("" when the users have none) */
	const char *dest_domain;
};

/* Reads and checks the whole file: per row, then across rows (one
   destination domain, no account twice, the destination password
   policy).  Returns -1 when the file cannot be read; otherwise 0, with
   the problems in (*tmpl_r)->errors (the file is valid when that is
   empty). */
int migrate_template_read(const char *path, struct migrate_template **tmpl_r,
			  const char **error_r);
void migrate_template_free(struct migrate_template **tmpl);

/* The index in values where the value most of them hold reached its
   count (the odd ones out are the ones to report).  count > 0. */
unsigned int migrate_majority_index(const char *const *values,
				    unsigned int count);

/* The destination password policy of the customer guide: at least 8
   characters, with a lowercase and an uppercase letter, a digit and a
   special character (letters and digits are ASCII ones; any other
   character is special).  Returns FALSE with what is missing. */
bool migrate_password_policy_check(const char *password,
				   const char **reason_r);

/* A value of a template's row for a problem's text: its control
   characters escaped, in single quotes when quote is TRUE; but "a value
   that may be a password (not shown)" when it meets the password policy,
   whatever its column: in a row whose values are under other columns
   than the header says, a password can be anywhere.  A password column's
   value is never given to it. */
const char *migrate_template_value_str(const char *value, bool quote);

#endif
