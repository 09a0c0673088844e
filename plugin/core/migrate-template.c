/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "net.h"
#include "hash.h"
#include "unichar.h"
#include "safe-memset.h"
#include "migrate-text.h"
#include "migrate-table.h"
#include "migrate-tls.h"
#include "migrate-settings.h"
#include "migrate-template.h"

#include <ctype.h>

/* with imapsync's own names for the same columns */
static const struct migrate_table_column
template_columns[MIGRATE_TEMPLATE_COLUMN_COUNT] = {
	{ "source_host", MIGRATE_TABLE_ALIASES("sourcehost", "host1") },
	{ "source_user", MIGRATE_TABLE_ALIASES("sourceuser", "user1") },
	{ "source_password", MIGRATE_TABLE_ALIASES("sourcepassword", "password1") },
	{ "dest_host", MIGRATE_TABLE_ALIASES("desthost", "host2") },
	{ "dest_user", MIGRATE_TABLE_ALIASES("destuser", "user2") },
	{ "dest_password", MIGRATE_TABLE_ALIASES("destpassword", "password2") },
	{ "tls_name", MIGRATE_TABLE_ALIASES("tlsname", "sourcetlsname",
		"certificatename", "certname", "sslhostname",
		"nomedocertificado", "nometls") },
	{ "source_protocol", MIGRATE_TABLE_ALIASES("sourceprotocol",
		"protocol", "protocol1", "protocolo", "protocolodeorigem") },
	{ "source_auth", MIGRATE_TABLE_ALIASES("sourceauth", "auth",
		"authmech", "authmech1", "authmechanism", "autenticacao") },
};

struct template_reader {
	struct migrate_template *tmpl;
	struct migrate_table *table;
	bool header_checked, have_header;
	bool extras_noted;
};

/* The first row: a header when any of its fields names a column. */
static bool
template_header(struct template_reader *r,
		const struct migrate_csv_record *rec)
{
	unsigned int i;
	int column;
	bool twice;

	for (i = 0; i < rec->count; i++) {
		if (migrate_table_column_by_name(r->table, rec->fields[i]) >= 0)
			break;
	}
	if (i == rec->count)
		return FALSE;

	for (i = 0; i < rec->count; i++) {
		column = migrate_table_header_add(r->table, rec->fields[i],
						  &twice);
		if (column < 0) {
			migrate_table_note(r->table, rec->line,
				"header column %u (%s) is not one we know; "
				"ignored", i + 1,
				migrate_template_value_str(rec->fields[i], FALSE));
		} else if (twice) {
			migrate_table_error(r->table, rec->line, -1,
				"header column %u (%s) names %s twice", i + 1,
				migrate_template_value_str(rec->fields[i], FALSE),
				template_columns[column].name);
		}
	}
	for (i = 0; i < MIGRATE_TEMPLATE_REQUIRED_COUNT; i++) {
		if (!migrate_table_has_column(r->table, i)) {
			migrate_table_error(r->table, rec->line, -1,
				"the header has no %s column",
				template_columns[i].name);
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

/* The row's certificate name (none when empty): a host name, for a
   source given by IP address (a host name is verified itself). */
static bool
template_tls_name(struct template_reader *r, unsigned int line,
		  const char *value, const char *source_host,
		  const char **name_r)
{
	*name_r = NULL;
	if (value == NULL || value[0] == '\0')
		return TRUE;
	if (!migrate_tls_name_valid(value)) {
		migrate_table_error(r->table, line,
				    MIGRATE_TEMPLATE_SOURCE_TLS_NAME,
				    "not a host name");
		return FALSE;
	}
	if (source_host != NULL && !migrate_tls_host_is_ip(source_host)) {
		migrate_table_error(r->table, line,
				    MIGRATE_TEMPLATE_SOURCE_TLS_NAME,
				    "is only for a source_host given by IP "
				    "address (%s is verified as itself)",
				    source_host);
		return FALSE;
	}
	*name_r = p_strdup(r->tmpl->pool, value);
	return TRUE;
}

/* The row's protocol (none when empty): imap, pop3 or auto. */
static bool
template_protocol(struct template_reader *r, unsigned int line,
		  const char *value, const char **protocol_r)
{
	enum migrate_source_protocol protocol;

	*protocol_r = NULL;
	if (value == NULL || value[0] == '\0')
		return TRUE;
	if (!migrate_source_protocol_parse(value, &protocol)) {
		migrate_table_error(r->table, line,
				    MIGRATE_TEMPLATE_SOURCE_PROTOCOL,
				    "%s is not imap, pop3 or auto",
				    migrate_template_value_str(value, TRUE));
		return FALSE;
	}
	*protocol_r = migrate_source_protocol_to_str(protocol);
	return TRUE;
}

/* The row's login (none when empty): password, xoauth2 or oauthbearer. */
static bool
template_auth(struct template_reader *r, unsigned int line,
	      const char *value, const char **auth_r)
{
	enum migrate_source_auth auth;

	*auth_r = NULL;
	if (value == NULL || value[0] == '\0')
		return TRUE;
	if (!migrate_source_auth_parse(value, &auth)) {
		migrate_table_error(r->table, line,
				    MIGRATE_TEMPLATE_SOURCE_AUTH,
				    "%s is not password, xoauth2 or oauthbearer",
				    migrate_template_value_str(value, TRUE));
		return FALSE;
	}
	*auth_r = migrate_source_auth_to_str(auth);
	return TRUE;
}

/* Whether the row logs in with an OAuth2 token (its source_password may
   be empty: the token command gives it). */
static bool template_row_uses_token(const char *const *values)
{
	const char *value = values[MIGRATE_TEMPLATE_SOURCE_AUTH];
	enum migrate_source_auth auth;

	return value != NULL && migrate_source_auth_parse(value, &auth) &&
		auth != MIGRATE_SOURCE_AUTH_PASSWORD;
}

/* The row's values in column order (NULL: a column the file lacks);
   FALSE (reported) when the row has the wrong number of fields. */
static bool
template_row_values(struct template_reader *r,
		    const struct migrate_csv_record *rec, const char **values)
{
	unsigned int i, line = rec->line;

	if (r->have_header) {
		if (!migrate_table_values(r->table, rec, values)) {
			migrate_table_error(r->table, line, -1,
				"%u columns, but the header has %u",
				rec->count,
				migrate_table_header_count(r->table));
			return FALSE;
		}
		return TRUE;
	}
	if (rec->count < MIGRATE_TEMPLATE_REQUIRED_COUNT ||
	    rec->count > MIGRATE_TEMPLATE_REQUIRED_COUNT + 1) {
		migrate_table_error(r->table, line, -1,
			"%u columns, expected %u (source_host;"
			"source_user;source_password;dest_host;"
			"dest_user;dest_password)", rec->count,
			MIGRATE_TEMPLATE_REQUIRED_COUNT);
		return FALSE;
	}
	if (rec->count > MIGRATE_TEMPLATE_REQUIRED_COUNT && !r->extras_noted) {
		migrate_table_note(r->table, line,
			"column 7 (imapsync options) is ignored, here "
			"and on the lines after");
		r->extras_noted = TRUE;
	}
	for (i = 0; i < MIGRATE_TEMPLATE_REQUIRED_COUNT; i++)
		values[i] = rec->fields[i];
	for (; i < MIGRATE_TEMPLATE_COLUMN_COUNT; i++)
		values[i] = NULL;
	return TRUE;
}

/* Check the row's values into row; FALSE (reported) when one is bad. */
static bool
template_row_fill(struct template_reader *r, unsigned int line,
		  const char *const *values, struct migrate_template_row *row)
{
	const char *host, *error;
	bool ok = TRUE;

	if (!template_parse_host(values[MIGRATE_TEMPLATE_SOURCE_HOST],
				 &host, &row->source_port, &error)) {
		migrate_table_error(r->table, line,
				    MIGRATE_TEMPLATE_SOURCE_HOST, "%s", error);
		ok = FALSE;
	} else {
		row->source_host = p_strdup(r->tmpl->pool, host);
	}
	if (!template_parse_host(values[MIGRATE_TEMPLATE_DEST_HOST],
				 &host, &(in_port_t){ 0 }, &error)) {
		migrate_table_error(r->table, line,
				    MIGRATE_TEMPLATE_DEST_HOST, "%s", error);
		ok = FALSE;
	}
	row->dest_host = values[MIGRATE_TEMPLATE_DEST_HOST];
	row->source_user = values[MIGRATE_TEMPLATE_SOURCE_USER];
	row->dest_user = values[MIGRATE_TEMPLATE_DEST_USER];
	row->source_password = values[MIGRATE_TEMPLATE_SOURCE_PASSWORD];
	row->dest_password = values[MIGRATE_TEMPLATE_DEST_PASSWORD];
	if (!template_tls_name(r, line, values[MIGRATE_TEMPLATE_SOURCE_TLS_NAME],
			       row->source_host, &row->source_tls_name))
		ok = FALSE;
	if (!template_protocol(r, line,
			       values[MIGRATE_TEMPLATE_SOURCE_PROTOCOL],
			       &row->source_protocol))
		ok = FALSE;
	if (!template_auth(r, line, values[MIGRATE_TEMPLATE_SOURCE_AUTH],
			   &row->source_auth))
		ok = FALSE;
	if (!template_user_valid(row->source_user)) {
		migrate_table_error(r->table, line,
				    MIGRATE_TEMPLATE_SOURCE_USER,
				    "contains control characters");
		ok = FALSE;
	}
	if (!template_user_valid(row->dest_user) ||
	    strpbrk(row->dest_user, " \t/") != NULL) {
		migrate_table_error(r->table, line,
				    MIGRATE_TEMPLATE_DEST_USER,
				    "is not a valid user name");
		ok = FALSE;
	}
	return ok;
}

static void
template_row(struct template_reader *r, const struct migrate_csv_record *rec)
{
	const char *values[MIGRATE_TEMPLATE_COLUMN_COUNT];
	struct migrate_template_row row;
	unsigned int i, line = rec->line;
	bool ok = TRUE;

	if (!r->header_checked) {
		r->header_checked = TRUE;
		r->have_header = template_header(r, rec);
		if (r->have_header)
			return;
	}
	if (!template_row_values(r, rec, values))
		return;
	for (i = 0; i < MIGRATE_TEMPLATE_REQUIRED_COUNT; i++) {
		if (i == MIGRATE_TEMPLATE_SOURCE_PASSWORD &&
		    values[i] != NULL && template_row_uses_token(values))
			continue;
		if (values[i] == NULL || values[i][0] == '\0') {
			migrate_table_error(r->table, line, (int)i, "is empty");
			ok = FALSE;
		}
	}
	if (!ok)
		return;

	i_zero(&row);
	row.line = line;
	if (template_row_fill(r, line, values, &row))
		array_push_back(&r->tmpl->rows, &row);
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

const char *migrate_template_value_str(const char *value, bool quote)
{
	const char *reason;

	if (migrate_password_policy_check(value, &reason))
		return "a value that may be a password (not shown)";
	value = migrate_text_escape(value);
	return quote ? t_strdup_printf("'%s'", value) : value;
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

static void
template_cross_check(struct migrate_template *tmpl,
		     struct migrate_table *table)
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
			migrate_table_error(table, row->line,
				MIGRATE_TEMPLATE_DEST_USER,
				"domain %s differs from '%s' of line %u "
				"(one domain per file)",
				migrate_template_value_str(domain, TRUE),
				tmpl->dest_domain, main_row->line);
		}

		key = p_strdup(tmpl->pool, t_str_lcase(row->dest_user));
		value = hash_table_lookup(dest_users, key);
		if (value != NULL) {
			migrate_table_error(table, row->line,
				MIGRATE_TEMPLATE_DEST_USER,
				"%s is also on line %u",
				migrate_template_value_str(row->dest_user, FALSE),
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
			migrate_table_error(table, row->line,
				MIGRATE_TEMPLATE_SOURCE_USER,
				"%s at %s is also on line %u",
				migrate_template_value_str(row->source_user, FALSE),
				row->source_host,
				POINTER_CAST_TO(value, unsigned int));
		} else {
			hash_table_insert(sources, key,
					  POINTER_CAST(row->line));
		}

		if (!migrate_password_policy_check(row->dest_password,
						   &reason)) {
			migrate_table_error(table, row->line,
				MIGRATE_TEMPLATE_DEST_PASSWORD,
				"does not meet the password policy: %s",
				reason);
		}
	} T_END;
	hash_table_destroy(&dest_users);
	hash_table_destroy(&sources);
}

int migrate_template_read(const char *path, struct migrate_template **tmpl_r,
			  const char **error_r)
{
	struct migrate_template *tmpl;
	const struct migrate_csv_record *rec;
	struct template_reader r;
	pool_t pool;
	int ret;

	pool = pool_alloconly_create("migrate template", 4096);
	tmpl = p_new(pool, struct migrate_template, 1);
	tmpl->pool = pool;
	tmpl->path = p_strdup(pool, path);
	tmpl->dest_domain = "";
	p_array_init(&tmpl->rows, pool, 32);
	p_array_init(&tmpl->errors, pool, 8);
	p_array_init(&tmpl->notes, pool, 4);

	i_zero(&r);
	r.tmpl = tmpl;
	r.table = migrate_table_open(path, template_columns,
				     N_ELEMENTS(template_columns), pool);
	while ((ret = migrate_table_next(r.table, &rec, error_r)) > 0) T_BEGIN {
		template_row(&r, rec);
	} T_END;
	if (ret < 0) {
		*error_r = t_strdup(*error_r);
		migrate_table_close(&r.table, &tmpl->errors, &tmpl->notes);
		pool_unref(&pool);
		return -1;
	}
	if (array_count(&tmpl->rows) == 0 &&
	    migrate_table_error_count(r.table) == 0)
		migrate_table_error(r.table, 0, -1, "no accounts");
	template_cross_check(tmpl, r.table);
	migrate_table_close(&r.table, &tmpl->errors, &tmpl->notes);
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
