#ifndef MIGRATE_TABLE_H
#define MIGRATE_TABLE_H

#include "migrate-csv.h"

/* A customer's spreadsheet (migrate-csv.h) read against a set of columns:
   a header row whose names map to the columns, each row's values by
   column, and every problem kept as "FILE:LINE: column N (name): problem"
   and handed out sorted by line, so that the operator reads the file top
   down.  The sync template and the accounts template readers add their
   columns and their rules; the texts of their problems stay theirs. */

struct migrate_table_column {
	/* the name problems show */
	const char *name;
	/* the names a header may give it, NULL-terminated, written as
	   migrate_table_name_key() makes them */
	const char *const *aliases;
};
#define MIGRATE_TABLE_ALIASES(...) \
	((const char *const []){ __VA_ARGS__, NULL })

struct migrate_table;

/* The columns are kept by reference, messages are allocated from pool.
   A file that cannot be opened is reported by migrate_table_next(). */
struct migrate_table *
migrate_table_open(const char *path, const struct migrate_table_column *columns,
		   unsigned int column_count, pool_t pool);
/* Returns 1 with the next record, 0 at the end of the file, -1 when the
   file cannot be read (error_r).  A record that cannot be parsed is a
   problem of its line and is skipped. */
int migrate_table_next(struct migrate_table *table,
		       const struct migrate_csv_record **rec_r,
		       const char **error_r);
/* Appends the problems, sorted by line (those without one first), then
   in the order they were found, to errors, and the notes in their order
   to notes. */
void migrate_table_close(struct migrate_table **table,
			 ARRAY_TYPE(const_string) *errors,
			 ARRAY_TYPE(const_string) *notes);

/* "FILE:LINE: column N (name): problem" for one of our columns,
   "FILE:LINE: problem" when column is -1, "FILE: problem" when line is
   also 0.  Never put a password into one. */
void migrate_table_error(struct migrate_table *table, unsigned int line,
			 int column, const char *fmt, ...) ATTR_FORMAT(4, 5);
unsigned int migrate_table_error_count(const struct migrate_table *table);
/* A warning that does not stop the file: "FILE:LINE: text", or
   "FILE: text" when line is 0. */
void migrate_table_note(struct migrate_table *table, unsigned int line,
			const char *fmt, ...) ATTR_FORMAT(3, 4);

/* A header name compared with the aliases: lowercase, without spaces,
   '_', '-', '(' and ')' ("Full name (optional)" -> "fullnameoptional"). */
const char *migrate_table_name_key(const char *name);
/* The column that name means, or -1. */
int migrate_table_column_by_name(const struct migrate_table *table,
				 const char *name);
/* Takes name as the header's next field.  Returns the column it means,
   or -1 when it means none (the field's values are ignored); a column
   named a second time is ignored there too (*twice_r). */
int migrate_table_header_add(struct migrate_table *table, const char *name,
			     bool *twice_r);
bool migrate_table_has_column(const struct migrate_table *table,
			      unsigned int column);
/* The header's number of fields (0 before migrate_table_header_add()). */
unsigned int migrate_table_header_count(const struct migrate_table *table);
/* The record's values by column into values[column_count], NULL for a
   column that the header does not have.  Returns FALSE when the record's
   number of fields is not the header's. */
bool migrate_table_values(const struct migrate_table *table,
			  const struct migrate_csv_record *rec,
			  const char **values);

#endif
