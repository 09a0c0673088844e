/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strnum.h"
#include "net.h"
#include "hash.h"
#include "istream.h"
#include "unichar.h"
#include "safe-memset.h"
#include "migrate-csv.h"
#include "migrate-template.h"

#include <ctype.h>

static const char *const column_names[MIGRATE_TEMPLATE_COLUMN_COUNT] = {
	"source_host", "source_user", "source_password",
	"dest_host", "dest_user", "dest_password",
};
/* imapsync's own names for the same columns */
static const char *const column_aliases[MIGRATE_TEMPLATE_COLUMN_COUNT] = {
	"host1", "user1", "password1", "host2", "user2", "password2",
};

struct migrate_template_iter {
	pool_t pool;
	const char *path;
	struct migrate_csv_reader *csv;

	bool header_checked;
	bool extras_noted;
	/* header mode: file column -> our column, or -1 */
	ARRAY(int) header_map;
	unsigned int header_columns;

	/* the row being parsed */
	unsigned int row_line;
	ARRAY_TYPE(const_string) fields;
	/* completed rows, oldest first, waiting for _next() */
	ARRAY(struct migrate_template_row) ready;
	ARRAY_TYPE(const_string) pending_errors, pending_notes;
	bool eof;
	const char *read_error;
};

/* "FILE:LINE: column N (name): problem", or without the column when
   column < 0, appended to dest */
static void ATTR_FORMAT(6, 0)
template_vmsg(pool_t pool, ARRAY_TYPE(const_string) *dest, const char *path,
	      unsigned int line, int column, const char *fmt, va_list args)
{
	const char *msg = t_strdup_vprintf(fmt, args);

	if (column >= 0) {
		msg = p_strdup_printf(pool, "%s:%u: column %d (%s): %s",
				      path, line, column + 1,
				      column_names[column], msg);
	} else {
		msg = p_strdup_printf(pool, "%s:%u: %s", path, line, msg);
	}
	array_push_back(dest, &msg);
}

static void ATTR_FORMAT(4, 5)
template_error(struct migrate_template_iter *iter, unsigned int line,
	       int column, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	template_vmsg(iter->pool, &iter->pending_errors, iter->path, line,
		      column, fmt, args);
	va_end(args);
}

static bool column_by_name(const char *name, int *column_r)
{
	unsigned int i;

	for (i = 0; i < MIGRATE_TEMPLATE_COLUMN_COUNT; i++) {
		if (strcasecmp(name, column_names[i]) == 0 ||
		    strcasecmp(name, column_aliases[i]) == 0) {
			*column_r = (int)i;
			return TRUE;
		}
	}
	return FALSE;
}

/* The first row: a header when any of its fields names a column. */
static bool template_check_header(struct migrate_template_iter *iter)
{
	const char *const *fields;
	unsigned int i, count, found = 0;
	bool seen[MIGRATE_TEMPLATE_COLUMN_COUNT] = { FALSE, };
	int column;

	fields = array_get(&iter->fields, &count);
	for (i = 0; i < count; i++) {
		if (column_by_name(fields[i], &column))
			found++;
	}
	if (found == 0)
		return FALSE;

	p_array_init(&iter->header_map, iter->pool, count);
	iter->header_columns = count;
	for (i = 0; i < count; i++) {
		if (!column_by_name(fields[i], &column)) {
			const char *note = p_strdup_printf(iter->pool,
				"%s:%u: header column %u (%s) is not one we "
				"know; ignored", iter->path, iter->row_line,
				i + 1, fields[i]);
			array_push_back(&iter->pending_notes, &note);
			column = -1;
		} else if (seen[column]) {
			template_error(iter, iter->row_line, -1,
				"header column %u (%s) names %s twice",
				i + 1, fields[i], column_names[column]);
			column = -1;
		} else {
			seen[column] = TRUE;
		}
		array_push_back(&iter->header_map, &column);
	}
	for (i = 0; i < MIGRATE_TEMPLATE_COLUMN_COUNT; i++) {
		if (!seen[i]) {
			template_error(iter, iter->row_line, -1,
				"the header has no %s column", column_names[i]);
		}
	}
	return TRUE;
}

/* "host", "host:port", "[v6addr]" or "[v6addr]:port" */
static bool
template_parse_host(const char *value, const char **host_r,
		    in_port_t *port_r, const char **error_r)
{
	const char *p, *port_str = NULL;

	*port_r = 0;
	if (value[0] == '[') {
		p = strchr(value, ']');
		if (p == NULL) {
			*error_r = "'[' without ']'";
			return FALSE;
		}
		*host_r = t_strdup_until(value + 1, p);
		if (p[1] == ':')
			port_str = p + 2;
		else if (p[1] != '\0') {
			*error_r = "unexpected text after ']'";
			return FALSE;
		}
	} else {
		p = strchr(value, ':');
		if (p != NULL && strchr(p + 1, ':') != NULL) {
			*error_r = "an IPv6 address needs [brackets]";
			return FALSE;
		}
		if (p != NULL) {
			*host_r = t_strdup_until(value, p);
			port_str = p + 1;
		} else {
			*host_r = value;
		}
	}
	if (**host_r == '\0') {
		*error_r = "no host name";
		return FALSE;
	}
	for (p = *host_r; *p != '\0'; p++) {
		if (*p <= ' ' || *p == '/' || *p == '\\' || *p == '@') {
			*error_r = "not a host name or address";
			return FALSE;
		}
	}
	if (port_str != NULL &&
	    (net_str2port(port_str, port_r) < 0 || *port_r == 0)) {
		*error_r = "not a valid port";
		return FALSE;
	}
	return TRUE;
}

static bool template_user_valid(const char *user)
{
	for (; *user != '\0'; user++) {
		if ((unsigned char)*user < ' ' || *user == 0x7f)
			return FALSE;
	}
	return TRUE;
}

/* One complete row of fields: checked and turned into a row, or errors. */
static void template_finish_row(struct migrate_template_iter *iter)
{
	const char *const *fields, *values[MIGRATE_TEMPLATE_COLUMN_COUNT];
	struct migrate_template_row row;
	const char *host, *error;
	unsigned int i, count, line = iter->row_line;
	bool ok = TRUE;

	fields = array_get(&iter->fields, &count);
	if (!iter->header_checked) {
		iter->header_checked = TRUE;
		if (template_check_header(iter))
			return;
	}

	i_zero(&values);
	if (array_is_created(&iter->header_map)) {
		const int *map = array_front(&iter->header_map);

		if (count != iter->header_columns) {
			template_error(iter, line, -1,
				"%u columns, but the header has %u",
				count, iter->header_columns);
			return;
		}
		for (i = 0; i < count; i++) {
			if (map[i] >= 0)
				values[map[i]] = fields[i];
		}
	} else {
		if (count < MIGRATE_TEMPLATE_COLUMN_COUNT ||
		    count > MIGRATE_TEMPLATE_COLUMN_COUNT + 1) {
			template_error(iter, line, -1,
				"%u columns, expected %u (source_host;"
				"source_user;source_password;dest_host;"
				"dest_user;dest_password)", count,
				MIGRATE_TEMPLATE_COLUMN_COUNT);
			return;
		}
		if (count > MIGRATE_TEMPLATE_COLUMN_COUNT &&
		    !iter->extras_noted) {
			const char *note = p_strdup_printf(iter->pool,
				"%s:%u: column 7 (imapsync options) is "
				"ignored, here and on the lines after",
				iter->path, line);
			array_push_back(&iter->pending_notes, &note);
			iter->extras_noted = TRUE;
		}
		for (i = 0; i < MIGRATE_TEMPLATE_COLUMN_COUNT; i++)
			values[i] = fields[i];
	}

	for (i = 0; i < MIGRATE_TEMPLATE_COLUMN_COUNT; i++) {
		if (values[i] == NULL || values[i][0] == '\0') {
			template_error(iter, line, (int)i, "is empty");
			ok = FALSE;
		}
	}
	if (!ok)
		return;

	i_zero(&row);
	row.line = line;
	if (!template_parse_host(values[MIGRATE_TEMPLATE_SOURCE_HOST],
				 &host, &row.source_port, &error)) {
		template_error(iter, line, MIGRATE_TEMPLATE_SOURCE_HOST,
			       "%s", error);
		ok = FALSE;
	} else {
		row.source_host = p_strdup(iter->pool, host);
	}
	if (!template_parse_host(values[MIGRATE_TEMPLATE_DEST_HOST],
				 &host, &(in_port_t){ 0 }, &error)) {
		template_error(iter, line, MIGRATE_TEMPLATE_DEST_HOST,
			       "%s", error);
		ok = FALSE;
	}
	row.dest_host = values[MIGRATE_TEMPLATE_DEST_HOST];
	row.source_user = values[MIGRATE_TEMPLATE_SOURCE_USER];
	row.dest_user = values[MIGRATE_TEMPLATE_DEST_USER];
	row.source_password = values[MIGRATE_TEMPLATE_SOURCE_PASSWORD];
	row.dest_password = values[MIGRATE_TEMPLATE_DEST_PASSWORD];
	if (!template_user_valid(row.source_user)) {
		template_error(iter, line, MIGRATE_TEMPLATE_SOURCE_USER,
			       "contains control characters");
		ok = FALSE;
	}
	if (!template_user_valid(row.dest_user) ||
	    strpbrk(row.dest_user, " \t/") != NULL) {
		template_error(iter, line, MIGRATE_TEMPLATE_DEST_USER,
			       "is not a valid user name");
		ok = FALSE;
	}
	if (ok)
		array_push_back(&iter->ready, &row);
}

struct migrate_template_iter *
migrate_template_iter_init(const char *path, pool_t pool)
{
	struct migrate_template_iter *iter;

	iter = p_new(pool, struct migrate_template_iter, 1);
	iter->pool = pool;
	iter->path = p_strdup(pool, path);
	iter->csv = migrate_csv_open(path, pool);
	p_array_init(&iter->fields, pool, MIGRATE_TEMPLATE_COLUMN_COUNT + 1);
	p_array_init(&iter->ready, pool, 4);
	p_array_init(&iter->pending_errors, pool, 4);
	p_array_init(&iter->pending_notes, pool, 2);
	return iter;
}

/* Takes the next record; FALSE at the end of the file. */
static bool template_read_record(struct migrate_template_iter *iter)
{
	struct migrate_csv_record rec;
	const char *error;
	int ret;

	ret = migrate_csv_next(iter->csv, &rec, &error);
	if (ret <= 0) {
		if (ret < 0)
			iter->read_error = p_strdup(iter->pool, error);
		return FALSE;
	}
	iter->row_line = rec.line;
	if (rec.error != NULL) {
		template_error(iter, rec.line, -1, "%s", rec.error);
		return TRUE;
	}
	array_clear(&iter->fields);
	array_append(&iter->fields, rec.fields, rec.count);
	template_finish_row(iter);
	return TRUE;
}

bool migrate_template_iter_next(struct migrate_template_iter *iter,
				struct migrate_template_row *row_r,
				ARRAY_TYPE(const_string) *errors,
				ARRAY_TYPE(const_string) *notes)
{
	bool ret = FALSE;

	while (array_count(&iter->ready) == 0 && !iter->eof) {
		T_BEGIN {
			if (!template_read_record(iter))
				iter->eof = TRUE;
		} T_END;
	}
	array_append_array(errors, &iter->pending_errors);
	array_append_array(notes, &iter->pending_notes);
	array_clear(&iter->pending_errors);
	array_clear(&iter->pending_notes);
	if (array_count(&iter->ready) > 0) {
		*row_r = *array_front(&iter->ready);
		array_pop_front(&iter->ready);
		ret = TRUE;
	}
	return ret;
}

int migrate_template_iter_deinit(struct migrate_template_iter **_iter,
				 const char **error_r)
{
	struct migrate_template_iter *iter = *_iter;
	int ret = 0;

	*_iter = NULL;
	if (iter->read_error != NULL) {
		*error_r = iter->read_error;
		ret = -1;
	}
	migrate_csv_close(&iter->csv);
	return ret;
}

bool migrate_password_policy_check(const char *password,
				   const char **reason_r)
{
	bool lower = FALSE, upper = FALSE, digit = FALSE, special = FALSE;
	unsigned int chars;
	const char *p;

	chars = uni_utf8_strlen(password);
	for (p = password; *p != '\0'; p++) {
		if (i_islower(*p))
			lower = TRUE;
		else if (i_isupper(*p))
			upper = TRUE;
		else if (i_isdigit(*p))
			digit = TRUE;
		else
			special = TRUE;
	}
	if (chars < 8)
		*reason_r = "fewer than 8 characters";
	else if (!lower)
		*reason_r = "no lowercase letter";
	else if (!upper)
		*reason_r = "no uppercase letter";
	else if (!digit)
		*reason_r = "no digit";
	else if (!special)
		*reason_r = "no special character";
	else
		return TRUE;
	return FALSE;
}

static const char *user_domain(const char *user)
{
	const char *p = strrchr(user, '@');

	return p == NULL ? "" : t_str_lcase(p + 1);
}

unsigned int migrate_majority_index(const char *const *values,
				    unsigned int count)
{
	HASH_TABLE(const char *, void *) counts;
	unsigned int i, n, best = 0, best_n = 0;

	i_assert(count > 0);
	hash_table_create(&counts, pool_datastack_create(), 0, str_hash,
			  strcmp);
	for (i = 0; i < count; i++) {
		n = POINTER_CAST_TO(hash_table_lookup(counts, values[i]),
				    unsigned int) + 1;
		hash_table_update(counts, values[i], POINTER_CAST(n));
		if (n > best_n) {
			best_n = n;
			best = i;
		}
	}
	hash_table_destroy(&counts);
	return best;
}

/* The row where the domain most rows have became the most common: the
   odd rows out are the ones to fix. */
static const struct migrate_template_row *
template_main_domain(struct migrate_template *tmpl)
{
	const struct migrate_template_row *rows;
	ARRAY_TYPE(const_string) domains;
	unsigned int i, count;

	rows = array_get(&tmpl->rows, &count);
	if (count == 0)
		return NULL;
	t_array_init(&domains, count);
	for (i = 0; i < count; i++) {
		const char *domain = user_domain(rows[i].dest_user);

		array_push_back(&domains, &domain);
	}
	return &rows[migrate_majority_index(array_front(&domains), count)];
}

static void ATTR_FORMAT(4, 5)
template_add_error(struct migrate_template *tmpl, unsigned int line,
		   int column, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	template_vmsg(tmpl->pool, &tmpl->errors, tmpl->path, line, column,
		      fmt, args);
	va_end(args);
}

static void
template_cross_check(struct migrate_template *tmpl)
{
	HASH_TABLE(const char *, void *) dest_users, sources;
	const struct migrate_template_row *row, *main_row;
	const char *domain, *key, *reason;
	void *value;

	main_row = template_main_domain(tmpl);
	if (main_row != NULL) {
		tmpl->dest_domain = p_strdup(tmpl->pool,
					     user_domain(main_row->dest_user));
	}
	hash_table_create(&dest_users, tmpl->pool, 0, str_hash, strcmp);
	hash_table_create(&sources, tmpl->pool, 0, str_hash, strcmp);
	array_foreach(&tmpl->rows, row) T_BEGIN {
		domain = user_domain(row->dest_user);
		if (strcmp(domain, tmpl->dest_domain) != 0) {
			template_add_error(tmpl, row->line,
				MIGRATE_TEMPLATE_DEST_USER,
				"domain '%s' differs from '%s' of line %u "
				"(one domain per file)", domain,
				tmpl->dest_domain, main_row->line);
		}

		key = p_strdup(tmpl->pool, t_str_lcase(row->dest_user));
		value = hash_table_lookup(dest_users, key);
		if (value != NULL) {
			template_add_error(tmpl, row->line,
				MIGRATE_TEMPLATE_DEST_USER,
				"%s is also on line %u", row->dest_user,
				POINTER_CAST_TO(value, unsigned int));
		} else {
			hash_table_insert(dest_users, key,
					  POINTER_CAST(row->line));
		}

		key = p_strdup_printf(tmpl->pool, "%s:%u\t%s",
				      t_str_lcase(row->source_host),
				      row->source_port, row->source_user);
		value = hash_table_lookup(sources, key);
		if (value != NULL) {
			template_add_error(tmpl, row->line,
				MIGRATE_TEMPLATE_SOURCE_USER,
				"%s at %s is also on line %u",
				row->source_user, row->source_host,
				POINTER_CAST_TO(value, unsigned int));
		} else {
			hash_table_insert(sources, key,
					  POINTER_CAST(row->line));
		}

		if (!migrate_password_policy_check(row->dest_password,
						   &reason)) {
			template_add_error(tmpl, row->line,
				MIGRATE_TEMPLATE_DEST_PASSWORD,
				"does not meet the password policy: %s",
				reason);
		}
	} T_END;
	hash_table_destroy(&dest_users);
	hash_table_destroy(&sources);
}

struct template_msg {
	unsigned int line, seq;
	const char *text;
};

static int template_msg_cmp(const struct template_msg *a,
			    const struct template_msg *b)
{
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	return a->seq < b->seq ? -1 : (a->seq > b->seq ? 1 : 0);
}

/* errors sorted by line, so that the operator reads the file top down */
static void template_sort_errors(struct migrate_template *tmpl)
{
	ARRAY(struct template_msg) msgs;
	struct template_msg *msg;
	const char *const *errors, *p;
	size_t prefix_len = strlen(tmpl->path) + 1;
	unsigned int i, count;

	errors = array_get(&tmpl->errors, &count);
	t_array_init(&msgs, count + 1);
	for (i = 0; i < count; i++) {
		msg = array_append_space(&msgs);
		msg->seq = i;
		msg->text = errors[i];
		p = errors[i] + prefix_len;
		if (strncmp(errors[i], tmpl->path, prefix_len - 1) != 0 ||
		    str_parse_uint(p, &msg->line, &p) < 0)
			msg->line = 0;
	}
	array_sort(&msgs, template_msg_cmp);
	array_clear(&tmpl->errors);
	array_foreach_modifiable(&msgs, msg)
		array_push_back(&tmpl->errors, &msg->text);
}

int migrate_template_read(const char *path, struct migrate_template **tmpl_r,
			  const char **error_r)
{
	struct migrate_template *tmpl;
	struct migrate_template_iter *iter;
	struct migrate_template_row row;
	const char *error;
	pool_t pool;

	pool = pool_alloconly_create("migrate template", 4096);
	tmpl = p_new(pool, struct migrate_template, 1);
	tmpl->pool = pool;
	tmpl->path = p_strdup(pool, path);
	tmpl->dest_domain = "";
	p_array_init(&tmpl->rows, pool, 32);
	p_array_init(&tmpl->errors, pool, 8);
	p_array_init(&tmpl->notes, pool, 4);

	iter = migrate_template_iter_init(path, pool);
	while (migrate_template_iter_next(iter, &row, &tmpl->errors,
					  &tmpl->notes))
		array_push_back(&tmpl->rows, &row);
	if (migrate_template_iter_deinit(&iter, &error) < 0) {
		*error_r = t_strdup(error);
		pool_unref(&pool);
		return -1;
	}
	if (array_count(&tmpl->rows) == 0 && array_count(&tmpl->errors) == 0) {
		const char *msg = p_strdup_printf(pool, "%s: no accounts",
						  path);
		array_push_back(&tmpl->errors, &msg);
	}
	template_cross_check(tmpl);
	T_BEGIN {
		template_sort_errors(tmpl);
	} T_END;
	*tmpl_r = tmpl;
	return 0;
}

void migrate_template_free(struct migrate_template **_tmpl)
{
	struct migrate_template *tmpl = *_tmpl;

	struct migrate_template_row *row;

	if (tmpl == NULL)
		return;
	*_tmpl = NULL;
	array_foreach_modifiable(&tmpl->rows, row) {
		safe_memset((void *)row->source_password, 0,
			    strlen(row->source_password));
		safe_memset((void *)row->dest_password, 0,
			    strlen(row->dest_password));
	}
	pool_unref(&tmpl->pool);
}
