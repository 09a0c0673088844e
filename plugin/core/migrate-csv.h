#ifndef MIGRATE_CSV_H
#define MIGRATE_CSV_H

/* A customer's spreadsheet export, record by record, with libcsv: ',' or
   ';' (whichever the first record uses; pt-BR spreadsheets write ';'),
   quoted fields (which may hold the separator, quotes and line breaks),
   UTF-8 with or without BOM, CRLF or LF, '#' comment lines and blank
   lines skipped.  Bounded: more than 64 fields is an error of the record;
   a line or a record (a quoted field may span lines) over 64 KiB is an
   error of its line, and the last record read. */

struct migrate_csv_reader;

struct migrate_csv_record {
	/* the line the record starts on (1-based) */
	unsigned int line;
	const char *const *fields;
	unsigned int count;
	/* set instead of the fields when the record cannot be parsed */
	const char *error;
};

/* Fields are allocated from pool.  A file that cannot be opened is
   reported by migrate_csv_next(). */
struct migrate_csv_reader *migrate_csv_open(const char *path, pool_t pool);
/* Returns 1 with the next record, 0 at the end of the file, -1 when the
   file cannot be read (error_r). */
int migrate_csv_next(struct migrate_csv_reader *reader,
		     struct migrate_csv_record *record_r,
		     const char **error_r);
void migrate_csv_close(struct migrate_csv_reader **reader);

/* One text cell of a CSV file we write (a report, to be opened in a
   spreadsheet): control characters escaped (migrate-text.h); a value a
   spreadsheet would take for a formula (one starting with '=', '+', '-',
   '@', a tab or a CR) neutralised the OWASP way, with a "'" in front and
   quoted; any other value quoted when it holds ',', ';' or '"'.  NULL is
   an empty cell.  Every text cell goes through here; the numbers the tool
   counts are written as numbers and never do. */
void migrate_csv_append_field(string_t *dest, const char *value);

#endif
