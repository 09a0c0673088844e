/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "istream.h"
#include "str.h"
#include "migrate-text.h"
#include "migrate-csv.h"

#include <csv.h>
#include <fcntl.h>
#include <unistd.h>

/* a template row has a dozen fields; more is not a template */
#define MIGRATE_CSV_MAX_FIELDS 64
/* bounds the memory of one line, and of one record (a quoted field may
   span lines) */
#define MIGRATE_CSV_MAX_LINE (64 * 1024)
#define MIGRATE_CSV_MAX_RECORD (64 * 1024)

struct migrate_csv_reader {
	pool_t pool;
	const char *path;
	struct istream *input;
	struct csv_parser parser;
	bool parser_initialized;

	unsigned int line, record_line;
	size_t record_size;
	bool in_record, record_done, too_many;
	/* after a line or record over the limits: nothing more is read */
	bool stopped;
	ARRAY_TYPE(const_string) fields;
	const char *open_error;
};

static void migrate_csv_field_cb(void *s, size_t len, void *context)
{
	struct migrate_csv_reader *reader = context;
	const char *field;

	if (array_count(&reader->fields) >= MIGRATE_CSV_MAX_FIELDS) {
		reader->too_many = TRUE;
		return;
	}
	field = p_strndup(reader->pool, s, len);
	array_push_back(&reader->fields, &field);
}

static void migrate_csv_record_cb(int c ATTR_UNUSED, void *context)
{
	struct migrate_csv_reader *reader = context;

	reader->record_done = TRUE;
}

struct migrate_csv_reader *migrate_csv_open(const char *path, pool_t pool)
{
	struct migrate_csv_reader *reader;
	int fd;

	reader = p_new(pool, struct migrate_csv_reader, 1);
	reader->pool = pool;
	reader->path = p_strdup(pool, path);
	p_array_init(&reader->fields, pool, 16);
	fd = open(path, O_RDONLY);
	if (fd == -1) {
		reader->open_error = p_strdup_printf(pool, "open(%s) failed: %m",
						     path);
		return reader;
	}
	reader->input = i_stream_create_fd_autoclose(&fd,
						     MIGRATE_CSV_MAX_LINE);
	/* a last line without a line feed counts too */
	i_stream_set_return_partial_line(reader->input, TRUE);
	return reader;
}

static void
migrate_csv_parser_init(struct migrate_csv_reader *reader,
			const char *first_line)
{
	if (csv_init(&reader->parser, CSV_APPEND_NULL) != 0)
		i_fatal_status(FATAL_OUTOFMEM, "csv_init() failed");
	csv_set_delim(&reader->parser,
		      strchr(first_line, ';') != NULL ? ';' : ',');
	reader->parser_initialized = TRUE;
}

static void
migrate_csv_record(struct migrate_csv_reader *reader,
		   struct migrate_csv_record *record_r, const char *error)
{
	i_zero(record_r);
	record_r->line = reader->record_line;
	if (error == NULL && reader->too_many) {
		error = t_strdup_printf("more than %u columns",
					MIGRATE_CSV_MAX_FIELDS);
	}
	if (error != NULL) {
		record_r->error = p_strdup(reader->pool, error);
	} else {
		array_append_zero(&reader->fields);
		record_r->fields = p_memdup(reader->pool,
			array_front(&reader->fields),
			sizeof(const char *) * array_count(&reader->fields));
		record_r->count = array_count(&reader->fields) - 1;
	}
	array_clear(&reader->fields);
	reader->in_record = FALSE;
	reader->record_done = FALSE;
	reader->too_many = FALSE;
	reader->record_size = 0;
}

/* A line or record over the limits: the parser cannot find where the
   next record starts, so this one is the last. */
static void
migrate_csv_stop(struct migrate_csv_reader *reader,
		 struct migrate_csv_record *record_r, const char *what,
		 unsigned int limit)
{
	migrate_csv_record(reader, record_r, t_strdup_printf(
		"the %s is longer than %u bytes; the rest of the file is "
		"not read", what, limit));
	reader->stopped = TRUE;
}

int migrate_csv_next(struct migrate_csv_reader *reader,
		     struct migrate_csv_record *record_r,
		     const char **error_r)
{
	const char *line, *p;
	size_t len;

	if (reader->open_error != NULL) {
		*error_r = reader->open_error;
		return -1;
	}
	if (reader->stopped)
		return 0;
	for (;;) {
		line = i_stream_read_next_line(reader->input);
		if (line == NULL) {
			if (reader->input->stream_errno != ENOBUFS)
				break;
			/* named by its own line, also inside a record */
			reader->record_line = ++reader->line;
			migrate_csv_stop(reader, record_r, "line",
					 MIGRATE_CSV_MAX_LINE);
			return 1;
		}
		reader->line++;
		if (reader->line == 1 && strncmp(line, "\xef\xbb\xbf", 3) == 0)
			line += 3;
		if (!reader->in_record) {
			for (p = line; *p == ' ' || *p == '\t'; p++) ;
			if (*p == '\0' || *p == '#')
				continue;
			if (!reader->parser_initialized)
				migrate_csv_parser_init(reader, line);
			reader->record_line = reader->line;
			reader->in_record = TRUE;
		}
		len = strlen(line);
		reader->record_size += len + 1;
		if (reader->record_size > MIGRATE_CSV_MAX_RECORD) {
			migrate_csv_stop(reader, record_r, "record",
					 MIGRATE_CSV_MAX_RECORD);
			return 1;
		}
		if (csv_parse(&reader->parser, line, len, migrate_csv_field_cb,
			      migrate_csv_record_cb, reader) != len ||
		    csv_parse(&reader->parser, "\n", 1, migrate_csv_field_cb,
			      migrate_csv_record_cb, reader) != 1) {
			migrate_csv_record(reader, record_r, t_strdup_printf(
				"cannot be parsed: %s",
				csv_strerror(csv_error(&reader->parser))));
			return 1;
		}
		if (reader->record_done) {
			migrate_csv_record(reader, record_r, NULL);
			return 1;
		}
	}
	if (reader->input->stream_errno != 0) {
		*error_r = t_strdup_printf("read(%s) failed: %s", reader->path,
					   i_stream_get_error(reader->input));
		return -1;
	}
	if (reader->in_record) {
		(void)csv_fini(&reader->parser, migrate_csv_field_cb,
			       migrate_csv_record_cb, reader);
		migrate_csv_record(reader, record_r,
				   "a quoted field is not closed");
		return 1;
	}
	return 0;
}

void migrate_csv_close(struct migrate_csv_reader **_reader)
{
	struct migrate_csv_reader *reader = *_reader;

	*_reader = NULL;
	if (reader->parser_initialized)
		csv_free(&reader->parser);
	i_stream_unref(&reader->input);
}

void migrate_csv_append_field(string_t *dest, const char *value)
{
	const char *p;
	bool formula;

	if (value == NULL || value[0] == '\0')
		return;
	formula = strchr("=+-@\t\r", value[0]) != NULL;
	value = migrate_text_escape(value);
	if (!formula && strpbrk(value, ",;\"") == NULL) {
		str_append(dest, value);
		return;
	}
	str_append_c(dest, '"');
	if (formula)
		str_append_c(dest, '\'');
	for (p = value; *p != '\0'; p++) {
		if (*p == '"')
			str_append_c(dest, '"');
		str_append_c(dest, *p);
	}
	str_append_c(dest, '"');
}
