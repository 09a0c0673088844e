/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "migrate-csv.h"
#include "migrate-table.h"

#include <ctype.h>

struct migrate_table_problem {
	unsigned int line, seq;
	const char *text;
};

struct migrate_table {
	pool_t pool;
	const char *path;
	const struct migrate_table_column *columns;
	unsigned int column_count;
	struct migrate_csv_reader *csv;
	struct migrate_csv_record rec;

	/* the header's number of fields */
	unsigned int header_count;
	/* column -> its header field, or -1 */
	int *fields;

	ARRAY(struct migrate_table_problem) problems;
	ARRAY_TYPE(const_string) notes;
};

struct migrate_table *
migrate_table_open(const char *path, const struct migrate_table_column *columns,
		   unsigned int column_count, pool_t pool)
{
	struct migrate_table *table;
	unsigned int i;

	table = p_new(pool, struct migrate_table, 1);
	table->pool = pool;
	table->path = p_strdup(pool, path);
	table->columns = columns;
	table->column_count = column_count;
	table->csv = migrate_csv_open(path, pool);
	table->fields = p_new(pool, int, column_count);
	for (i = 0; i < column_count; i++)
		table->fields[i] = -1;
	p_array_init(&table->problems, pool, 8);
	p_array_init(&table->notes, pool, 4);
	return table;
}

int migrate_table_next(struct migrate_table *table,
		       const struct migrate_csv_record **rec_r,
		       const char **error_r)
{
	int ret;

	while ((ret = migrate_csv_next(table->csv, &table->rec, error_r)) > 0) {
		if (table->rec.error == NULL) {
			*rec_r = &table->rec;
			return 1;
		}
		migrate_table_error(table, table->rec.line, -1, "%s",
				    table->rec.error);
	}
	return ret;
}

static int migrate_table_problem_cmp(const struct migrate_table_problem *a,
				     const struct migrate_table_problem *b)
{
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	return a->seq < b->seq ? -1 : (a->seq > b->seq ? 1 : 0);
}

void migrate_table_close(struct migrate_table **_table,
			 ARRAY_TYPE(const_string) *errors,
			 ARRAY_TYPE(const_string) *notes)
{
	struct migrate_table *table = *_table;
	const struct migrate_table_problem *problem;

	*_table = NULL;
	migrate_csv_close(&table->csv);
	array_sort(&table->problems, migrate_table_problem_cmp);
	array_foreach(&table->problems, problem)
		array_push_back(errors, &problem->text);
	array_append_array(notes, &table->notes);
}

/* "FILE:LINE: ", or "FILE: " without a line */
static void
migrate_table_prefix(struct migrate_table *table, string_t *str,
		     unsigned int line)
{
	str_append(str, table->path);
	if (line > 0)
		str_printfa(str, ":%u", line);
	str_append(str, ": ");
}

void migrate_table_error(struct migrate_table *table, unsigned int line,
			 int column, const char *fmt, ...)
{
	struct migrate_table_problem *problem;
	string_t *str = t_str_new(128);
	va_list args;

	i_assert(column < (int)table->column_count);

	migrate_table_prefix(table, str, line);
	if (column >= 0) {
		/* where the file has it: a header may order the columns */
		str_printfa(str, "column %d (%s): ",
			    table->header_count > 0 &&
			    table->fields[column] >= 0 ?
			    table->fields[column] + 1 : column + 1,
			    table->columns[column].name);
	}
	va_start(args, fmt);
	str_vprintfa(str, fmt, args);
	va_end(args);

	problem = array_append_space(&table->problems);
	problem->line = line;
	problem->seq = array_count(&table->problems);
	problem->text = p_strdup(table->pool, str_c(str));
}

unsigned int migrate_table_error_count(const struct migrate_table *table)
{
	return array_count(&table->problems);
}

void migrate_table_note(struct migrate_table *table, unsigned int line,
			const char *fmt, ...)
{
	string_t *str = t_str_new(128);
	const char *text;
	va_list args;

	migrate_table_prefix(table, str, line);
	va_start(args, fmt);
	str_vprintfa(str, fmt, args);
	va_end(args);
	text = p_strdup(table->pool, str_c(str));
	array_push_back(&table->notes, &text);
}

const char *migrate_table_name_key(const char *name)
{
	string_t *key = t_str_new(32);

	for (; *name != '\0'; name++) {
		if (*name == ' ' || *name == '_' || *name == '-' ||
		    *name == '(' || *name == ')')
			continue;
		str_append_c(key, i_tolower(*name));
	}
	return str_c(key);
}

int migrate_table_column_by_name(const struct migrate_table *table,
				 const char *name)
{
	const char *key = migrate_table_name_key(name);
	const char *const *alias;
	unsigned int i;

	for (i = 0; i < table->column_count; i++) {
		for (alias = table->columns[i].aliases; *alias != NULL;
		     alias++) {
			if (strcmp(key, *alias) == 0)
				return (int)i;
		}
	}
	return -1;
}

int migrate_table_header_add(struct migrate_table *table, const char *name,
			     bool *twice_r)
{
	int column = migrate_table_column_by_name(table, name);

	*twice_r = column >= 0 && table->fields[column] >= 0;
	if (column >= 0 && !*twice_r)
		table->fields[column] = (int)table->header_count;
	table->header_count++;
	return column;
}

bool migrate_table_has_column(const struct migrate_table *table,
			      unsigned int column)
{
	i_assert(column < table->column_count);
	return table->fields[column] >= 0;
}

unsigned int migrate_table_header_count(const struct migrate_table *table)
{
	return table->header_count;
}

bool migrate_table_values(const struct migrate_table *table,
			  const struct migrate_csv_record *rec,
			  const char **values)
{
	unsigned int i;

	if (rec->count != table->header_count)
		return FALSE;
	for (i = 0; i < table->column_count; i++) {
		values[i] = table->fields[i] < 0 ? NULL :
			rec->fields[table->fields[i]];
	}
	return TRUE;
}
