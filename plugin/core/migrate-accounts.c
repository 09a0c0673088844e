/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "strnum.h"
#include "unichar.h"
#include "istream.h"
#include "file-lock.h"
#include "sleep.h"
#include "time-util.h"
#include "migrate-table.h"
#include "migrate-file.h"
#include "migrate-template.h"
#include "migrate-accounts.h"

#include <ctype.h>
#include <stdio.h>
#include <fcntl.h>
#include <grp.h>
#include <unistd.h>
#include <sys/stat.h>

/* the guide: the template is worth it from about 15 accounts */
#define MIGRATE_ACCOUNTS_FEW 15
#define MIGRATE_ACCOUNTS_MAX_QUOTA_GB 1000000
#define MIGRATE_ACCOUNTS_LOCK_TIMEOUT_SECS 30

/* the header's names as migrate_table_name_key() makes them; the guide's
   Portuguese ones with and without accents */
static const struct migrate_table_column
accounts_columns[MIGRATE_ACCOUNTS_COLUMN_COUNT] = {
	{ "username", MIGRATE_TABLE_ALIASES("username", "user", "usuario",
					    "usu\xc3\xa1rio") },
	{ "domain", MIGRATE_TABLE_ALIASES("domain", "dominio",
					  "dom\xc3\xadnio") },
	{ "password", MIGRATE_TABLE_ALIASES("password", "senha") },
	{ "quota", MIGRATE_TABLE_ALIASES("quota", "quotagb", "cota",
					 "cotagb") },
	{ "type", MIGRATE_TABLE_ALIASES("type", "tipo", "accounttype",
					"tipodeconta") },
	{ "full name", MIGRATE_TABLE_ALIASES("fullname", "name",
					     "nomecompleto", "nome") },
	{ "language", MIGRATE_TABLE_ALIASES("language", "idioma", "lang") },
	{ "time zone", MIGRATE_TABLE_ALIASES("timezone", "fusohorario",
					     "fusohor\xc3\xa1rio", "tz") },
	{ "date format", MIGRATE_TABLE_ALIASES("dateformat", "formatodedata",
					       "formatodata") },
};

#define ACCOUNTS_COLUMN_NAMES "username, domain, password, quota, type, " \
	"full name, language, time zone, date format"

struct accounts_reader {
	struct migrate_accounts *accounts;
	struct migrate_table *table;
	const char *zoneinfo_dir;
};

static bool
accounts_header(struct accounts_reader *r,
		const struct migrate_csv_record *rec)
{
	unsigned int i;
	int column;
	bool twice, ok = TRUE;

	/* a file without its header row starts with an account: its values
	   (a password among them) are no column names to show */
	for (i = 0; i < rec->count; i++) {
		if (migrate_table_column_by_name(r->table, rec->fields[i]) >= 0)
			break;
	}
	if (i == rec->count) {
		migrate_table_error(r->table, rec->line, -1,
			"the first row is not a header: it names none of the "
			"columns (expected: "ACCOUNTS_COLUMN_NAMES")");
		return FALSE;
	}

	for (i = 0; i < rec->count; i++) {
		column = migrate_table_header_add(r->table, rec->fields[i],
						  &twice);
		if (column < 0) {
			migrate_table_note(r->table, rec->line,
				"column %u (%s) is not one of ours: ignored",
				i + 1, migrate_template_value_str(rec->fields[i], FALSE));
		} else if (twice) {
			migrate_table_error(r->table, rec->line, column,
					    "named twice in the header");
			ok = FALSE;
		}
	}
	for (i = 0; i < MIGRATE_ACCOUNTS_COLUMN_COUNT; i++) {
		if (!migrate_table_has_column(r->table, i) &&
		    i != MIGRATE_ACCOUNTS_DATE_FORMAT) {
			migrate_table_error(r->table, rec->line, -1,
				"the header has no column %s (expected: "
				ACCOUNTS_COLUMN_NAMES")",
				accounts_columns[i].name);
			ok = FALSE;
		}
	}
	return ok;
}

static bool user_valid(const char *user)
{
	const char *p;

	if (*user == '\0' || strlen(user) > 64 || *user == '.' ||
	    user[strlen(user) - 1] == '.' || strstr(user, "..") != NULL)
		return FALSE;
	for (p = user; *p != '\0'; p++) {
		if (!i_isalnum(*p) && strchr("._+-", *p) == NULL)
			return FALSE;
	}
	return TRUE;
}

static bool domain_valid(const char *domain)
{
	const char *const *labels;

	if (*domain == '\0' || strlen(domain) > 253 ||
	    strchr(domain, '.') == NULL)
		return FALSE;
	for (labels = t_strsplit(domain, "."); *labels != NULL; labels++) {
		const char *p = *labels;
		size_t len = strlen(p);

		if (len == 0 || len > 63 || p[0] == '-' || p[len - 1] == '-')
			return FALSE;
		for (; *p != '\0'; p++) {
			if (!i_isalnum(*p) && *p != '-')
				return FALSE;
		}
	}
	return TRUE;
}

/* "2", "2.5" or "2,5" GB in whole MiB, rounded */
static bool quota_parse(const char *value, uint64_t *mib_r)
{
	uint64_t whole = 0, frac = 0, scale = 1;
	const char *p = value;

	if (!i_isdigit(*p))
		return FALSE;
	for (; i_isdigit(*p); p++) {
		whole = whole * 10 + (*p - '0');
		if (whole > MIGRATE_ACCOUNTS_MAX_QUOTA_GB)
			return FALSE;
	}
	if (*p == '.' || *p == ',') {
		p++;
		if (!i_isdigit(*p))
			return FALSE;
		for (; i_isdigit(*p); p++) {
			if (scale < 1000000) {
				frac = frac * 10 + (*p - '0');
				scale *= 10;
			}
		}
	}
	if (*p != '\0')
		return FALSE;
	*mib_r = whole * 1024 + (frac * 1024 + scale / 2) / scale;
	return *mib_r > 0;
}

/* letters (accented Latin ones too), digits, space, apostrophe, dot, @
   and hyphen */
static bool full_name_valid(const char *name)
{
	const unsigned char *p = (const unsigned char *)name;
	unichar_t chr;
	int len;

	if (*name == '\0' || !uni_utf8_str_is_valid(name))
		return FALSE;
	while (*p != '\0') {
		len = uni_utf8_get_char((const char *)p, &chr);
		if (len <= 0)
			return FALSE;
		p += len;
		if (chr < 0x80) {
			if (!i_isalnum(chr) && strchr(" '.@-", (int)chr) == NULL)
				return FALSE;
		} else if (!((chr >= 0xc0 && chr <= 0x24f && chr != 0xd7 &&
			      chr != 0xf7) || chr == 0x2019)) {
			return FALSE;
		}
	}
	return TRUE;
}

static bool language_valid(const char *tag)
{
	const char *const *parts = t_strsplit(tag, "-_");
	unsigned int i;
	size_t len;

	for (i = 0; parts[i] != NULL; i++) {
		len = strlen(parts[i]);
		if (i == 0 ? (len < 2 || len > 3) : (len < 1 || len > 8))
			return FALSE;
		for (const char *p = parts[i]; *p != '\0'; p++) {
			if (i == 0 ? !i_isalpha(*p) : !i_isalnum(*p))
				return FALSE;
		}
	}
	return i > 0;
}

static bool time_zone_valid(const char *zoneinfo_dir, const char *tz)
{
	const char *const *parts;
	struct stat st;
	const char *p;

	if (*tz == '\0' || *tz == '/')
		return FALSE;
	for (p = tz; *p != '\0'; p++) {
		if (!i_isalnum(*p) && strchr("/_+-", *p) == NULL)
			return FALSE;
	}
	for (parts = t_strsplit(tz, "/"); *parts != NULL; parts++) {
		if ((*parts)[0] == '\0' || (*parts)[0] == '.')
			return FALSE;
	}
	return stat(t_strconcat(zoneinfo_dir, "/", tz, NULL), &st) == 0 &&
		S_ISREG(st.st_mode);
}

static bool date_format_valid(const char *format)
{
	const char *p;

	if (strlen(format) > 32)
		return FALSE;
	for (p = format; *p != '\0'; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return FALSE;
	}
	return TRUE;
}

/* The row's user name, domain and password, into acc. */
static void
accounts_row_identity(struct migrate_table *table, unsigned int line,
		      const char *const *value, struct migrate_account *acc)
{
	const char *reason, *local;

	if (value[MIGRATE_ACCOUNTS_USERNAME] != NULL) {
		local = t_str_lcase(value[MIGRATE_ACCOUNTS_USERNAME]);
		if (strchr(local, '@') != NULL) {
			migrate_table_error(table, line,
				MIGRATE_ACCOUNTS_USERNAME,
				"only the part before the @");
		} else if (!user_valid(local)) {
			migrate_table_error(table, line,
				MIGRATE_ACCOUNTS_USERNAME,
				"invalid user name %s (letters, digits "
				"and . _ + - only, no leading, trailing or "
				"double dot, at most 64)",
				migrate_template_value_str(local, TRUE));
		}
		acc->user = local;
	}
	if (value[MIGRATE_ACCOUNTS_DOMAIN] != NULL) {
		const char *domain =
			t_str_lcase(value[MIGRATE_ACCOUNTS_DOMAIN]);

		if (domain[0] == '@')
			domain++;
		if (!domain_valid(domain)) {
			migrate_table_error(table, line,
				MIGRATE_ACCOUNTS_DOMAIN,
				"invalid domain %s",
				migrate_template_value_str(domain, TRUE));
		}
		acc->user = t_strconcat(acc->user == NULL ? "" : acc->user, "@",
				       domain, NULL);
	}
	acc->password = value[MIGRATE_ACCOUNTS_PASSWORD];
	if (acc->password != NULL &&
	    !migrate_password_policy_check(acc->password, &reason)) {
		migrate_table_error(table, line, MIGRATE_ACCOUNTS_PASSWORD,
			"the password has %s (policy: at least 8 characters, "
			"a lowercase and an uppercase letter, a digit and a "
			"special character)", reason);
	}
}

/* The row's quota, type and the user's profile, into acc. */
static void
accounts_row_profile(struct accounts_reader *r, unsigned int line,
		     const char *const *value, struct migrate_account *acc)
{
	struct migrate_table *table = r->table;

	if (value[MIGRATE_ACCOUNTS_QUOTA] != NULL &&
	    !quota_parse(value[MIGRATE_ACCOUNTS_QUOTA], &acc->quota_mib)) {
		migrate_table_error(table, line, MIGRATE_ACCOUNTS_QUOTA,
			"%s is not a positive number of GB (e.g. 5 or 2.5)",
			migrate_template_value_str(value[MIGRATE_ACCOUNTS_QUOTA], TRUE));
	}
	if (value[MIGRATE_ACCOUNTS_TYPE] != NULL) {
		if (strcmp(value[MIGRATE_ACCOUNTS_TYPE], "0") == 0)
			acc->type = 0;
		else if (strcmp(value[MIGRATE_ACCOUNTS_TYPE], "1") == 0)
			acc->type = 1;
		else {
			migrate_table_error(table, line, MIGRATE_ACCOUNTS_TYPE,
				"%s is not 0 (basic) or 1 (sync)",
				migrate_template_value_str(value[MIGRATE_ACCOUNTS_TYPE],
							   TRUE));
		}
	}
	acc->full_name = value[MIGRATE_ACCOUNTS_FULL_NAME];
	if (acc->full_name != NULL && !full_name_valid(acc->full_name)) {
		migrate_table_error(table, line, MIGRATE_ACCOUNTS_FULL_NAME,
			"%s has a character other than letters, digits, "
			"space, apostrophe, dot, @ and hyphen",
			migrate_template_value_str(acc->full_name, TRUE));
	}
	acc->language = value[MIGRATE_ACCOUNTS_LANGUAGE];
	if (acc->language != NULL && !language_valid(acc->language)) {
		migrate_table_error(table, line, MIGRATE_ACCOUNTS_LANGUAGE,
			"%s is not a language tag (e.g. pt-br)",
			migrate_template_value_str(acc->language, TRUE));
	}
	acc->time_zone = value[MIGRATE_ACCOUNTS_TIME_ZONE];
	if (acc->time_zone != NULL &&
	    !time_zone_valid(r->zoneinfo_dir, acc->time_zone)) {
		migrate_table_error(table, line, MIGRATE_ACCOUNTS_TIME_ZONE,
			"%s is not a time zone of %s (e.g. "
			"America/Sao_Paulo)", migrate_template_value_str(acc->time_zone, TRUE),
			r->zoneinfo_dir);
	}
	acc->date_format = value[MIGRATE_ACCOUNTS_DATE_FORMAT];
	if (!date_format_valid(acc->date_format)) {
		migrate_table_error(table, line, MIGRATE_ACCOUNTS_DATE_FORMAT,
			"%s has a space or control character, or is longer "
			"than 32", migrate_template_value_str(acc->date_format, TRUE));
	}
}

static void
accounts_row(struct accounts_reader *r, const struct migrate_csv_record *rec)
{
	struct migrate_accounts *accounts = r->accounts;
	struct migrate_table *table = r->table;
	const char *value[MIGRATE_ACCOUNTS_COLUMN_COUNT];
	struct migrate_account acc;
	unsigned int i, line = rec->line;
	unsigned int errors = migrate_table_error_count(table);

	if (!migrate_table_values(table, rec, value)) {
		migrate_table_error(table, line, -1,
				    "%u fields, the header has %u", rec->count,
				    migrate_table_header_count(table));
		return;
	}
	for (i = 0; i < MIGRATE_ACCOUNTS_COLUMN_COUNT; i++) {
		if (value[i] == NULL)
			value[i] = "";
		if (value[i][0] == '\0' && i != MIGRATE_ACCOUNTS_DATE_FORMAT) {
			migrate_table_error(table, line, i, "empty");
			value[i] = NULL;
		}
	}
	i_zero(&acc);
	acc.line = line;
	accounts_row_identity(table, line, value, &acc);
	accounts_row_profile(r, line, value, &acc);
	if (migrate_table_error_count(table) != errors)
		return;
	acc.user = p_strdup(accounts->pool, acc.user);
	acc.password = p_strdup(accounts->pool, acc.password);
	acc.full_name = p_strdup(accounts->pool, acc.full_name);
	acc.language = p_strdup(accounts->pool, acc.language);
	acc.time_zone = p_strdup(accounts->pool, acc.time_zone);
	acc.date_format = p_strdup(accounts->pool, acc.date_format);
	array_push_back(&accounts->accounts, &acc);
}

static const char *account_domain(const struct migrate_account *acc)
{
	return strchr(acc->user, '@') + 1;
}

/* One domain per file (the majority's; the others are named), each user
   once. */
static void accounts_check_rows(struct accounts_reader *r)
{
	struct migrate_accounts *accounts = r->accounts;
	HASH_TABLE(const char *, const struct migrate_account *) users;
	const struct migrate_account *acc, *first;
	ARRAY_TYPE(const_string) domains;
	const char *domain, *best = NULL;

	t_array_init(&domains, array_count(&accounts->accounts) + 1);
	hash_table_create(&users, pool_datastack_create(), 0, str_hash,
			  strcmp);
	array_foreach(&accounts->accounts, acc) {
		domain = account_domain(acc);
		array_push_back(&domains, &domain);
		first = hash_table_lookup(users, acc->user);
		if (first != NULL) {
			migrate_table_error(r->table, acc->line,
				MIGRATE_ACCOUNTS_USERNAME,
				"%s is already on line %u", acc->user,
				first->line);
		} else {
			hash_table_insert(users, acc->user, acc);
		}
	}
	if (array_count(&domains) > 0) {
		best = array_idx_elem(&domains, migrate_majority_index(
			array_front(&domains), array_count(&domains)));
	}
	accounts->domain = p_strdup(accounts->pool, best);
	array_foreach(&accounts->accounts, acc) {
		if (best != NULL && strcmp(account_domain(acc), best) != 0) {
			migrate_table_error(r->table, acc->line,
				MIGRATE_ACCOUNTS_DOMAIN,
				"%s: one domain per file, and most rows are "
				"for %s", account_domain(acc), best);
		}
	}
	hash_table_destroy(&users);
}

int migrate_accounts_read(const char *path, const char *zoneinfo_dir,
			  struct migrate_accounts **accounts_r,
			  const char **error_r)
{
	struct migrate_accounts *accounts;
	const struct migrate_csv_record *rec;
	struct accounts_reader r;
	bool header = FALSE, header_ok = FALSE;
	int ret;

	pool_t pool = pool_alloconly_create("migrate accounts", 8192);
	accounts = p_new(pool, struct migrate_accounts, 1);
	accounts->pool = pool;
	accounts->path = p_strdup(pool, path);
	p_array_init(&accounts->accounts, pool, 64);
	p_array_init(&accounts->errors, pool, 8);
	p_array_init(&accounts->notes, pool, 4);
	i_zero(&r);
	r.accounts = accounts;
	r.zoneinfo_dir = zoneinfo_dir;
	r.table = migrate_table_open(path, accounts_columns,
				     N_ELEMENTS(accounts_columns), pool);

	while ((ret = migrate_table_next(r.table, &rec, error_r)) > 0) T_BEGIN {
		if (!header) {
			header = TRUE;
			header_ok = accounts_header(&r, rec);
		} else if (header_ok) {
			accounts_row(&r, rec);
		}
	} T_END;
	if (ret < 0) {
		*error_r = t_strdup(*error_r);
		migrate_table_close(&r.table, &accounts->errors,
				    &accounts->notes);
		pool_unref(&pool);
		return -1;
	}
	if (!header) {
		migrate_table_error(r.table, 1, -1,
				    "no header row and no accounts");
	}
	T_BEGIN {
		accounts_check_rows(&r);
	} T_END;
	if (header_ok && array_count(&accounts->accounts) <
	    MIGRATE_ACCOUNTS_FEW) {
		migrate_table_note(r.table, 0, "%u accounts: the template is "
			"meant for %u or more (fewer are quicker to create by "
			"hand)", array_count(&accounts->accounts),
			MIGRATE_ACCOUNTS_FEW);
	}
	migrate_table_close(&r.table, &accounts->errors, &accounts->notes);
	*accounts_r = accounts;
	return 0;
}

void migrate_accounts_free(struct migrate_accounts **_accounts)
{
	struct migrate_accounts *accounts = *_accounts;

	*_accounts = NULL;
	pool_unref(&accounts->pool);
}

/* <the passwd-file store> */

const char *migrate_account_result_name(enum migrate_account_result result)
{
	switch (result) {
	case MIGRATE_ACCOUNT_CREATED:
		return "created";
	case MIGRATE_ACCOUNT_UNCHANGED:
		return "unchanged";
	case MIGRATE_ACCOUNT_UPDATED:
		return "updated";
	case MIGRATE_ACCOUNT_SKIPPED:
		return "skipped";
	case MIGRATE_ACCOUNT_FAILED:
		return "failed";
	case MIGRATE_ACCOUNT_UNVERIFIED:
		return "unverified";
	}
	i_unreached();
}

/* " userdb_KEY=VALUE" with VALUE as the mail process must get it.  %
   is expanded twice on the way: by the passwd-file userdb (where %w is
   the login password) and then, the key being no setting of Dovecot's,
   as a plugin setting of the mail process (where an unknown variable
   such as %m or %Y fails every login and delivery).  Each % is therefore
   stored as %%%%: the userdb answers %%, the plugin setting holds %. */
static void
account_extra_field(string_t *str, const char *key, const char *value)
{
	str_printfa(str, " userdb_%s=", key);
	for (; *value != '\0'; value++) {
		if (*value == '%')
			str_append(str, "%%%%");
		else
			str_append_c(str, *value);
	}
}

/* The userdb extra fields of an account (split on spaces by passwd-file:
   no value has one). */
static const char *account_extra_fields(const struct migrate_account *acc)
{
	string_t *str = t_str_new(128);

	str_printfa(str, "userdb_quota_rule=*:storage=%"PRIu64"M",
		    acc->quota_mib);
	str_printfa(str, " userdb_account_type=%u", acc->type);
	account_extra_field(str, "language", acc->language);
	account_extra_field(str, "time_zone", acc->time_zone);
	if (acc->date_format[0] != '\0')
		account_extra_field(str, "date_format", acc->date_format);
	return str_c(str);
}

/* Everything after the password: uid:gid:gecos:home:shell:extra fields.
   The full name is the GECOS field (a comment for Dovecot). */
const char *migrate_account_tail(const struct migrate_account *acc)
{
	return t_strdup_printf(":::%s:::%s", acc->full_name,
			       account_extra_fields(acc));
}

/* A tail ":uid:gid:gecos:home:shell:extra fields": field n (0 = uid),
   the last one with the rest of the line. */
static const char *tail_field(const char *tail, unsigned int n)
{
	const char *p = tail;
	unsigned int i;

	for (i = 0; i <= n; i++) {
		p = strchr(p, ':');
		if (p == NULL)
			return "";
		p++;
	}
	return n == 5 ? p : t_strcut(p, ':');
}

/* What differs between the stored tail and ours, by field name. */
static const char *
account_tail_diff(const char *old_tail, const char *new_tail)
{
	ARRAY_TYPE(const_string) diffs;
	const char *const *old_x, *const *new_x, *name;
	unsigned int i;

	t_array_init(&diffs, 4);
	if (strcmp(tail_field(old_tail, 2), tail_field(new_tail, 2)) != 0) {
		name = "full name";
		array_push_back(&diffs, &name);
	}
	/* the extra fields as key=value sets */
	old_x = t_strsplit_spaces(tail_field(old_tail, 5), " ");
	new_x = t_strsplit_spaces(tail_field(new_tail, 5), " ");
	for (i = 0; new_x[i] != NULL; i++) {
		if (!str_array_find(old_x, new_x[i])) {
			name = t_strcut(new_x[i], '=');
			if (str_begins(name, "userdb_"))
				name += 7;
			array_push_back(&diffs, &name);
		}
	}
	if (array_count(&diffs) == 0) {
		name = "other fields";
		array_push_back(&diffs, &name);
	}
	array_append_zero(&diffs);
	return t_strarray_join(array_front(&diffs), ", ");
}

struct passwd_file_line {
	const char *user;
	/* the whole line */
	const char *line;
};
ARRAY_DEFINE_TYPE(passwd_file_line, struct passwd_file_line);

static int
passwd_file_read(const char *path, pool_t pool,
		 ARRAY_TYPE(passwd_file_line) *lines, struct stat *st_r,
		 bool *exists_r, const char **error_r)
{
	struct passwd_file_line *l;
	struct istream *input;
	const char *line;
	int fd;

	*exists_r = FALSE;
	fd = open(path, O_RDONLY);
	if (fd == -1) {
		if (errno == ENOENT)
			return 0;
		*error_r = t_strdup_printf("open(%s) failed: %m", path);
		return -1;
	}
	if (fstat(fd, st_r) < 0) {
		*error_r = t_strdup_printf("fstat(%s) failed: %m", path);
		i_close_fd(&fd);
		return -1;
	}
	*exists_r = TRUE;
	input = i_stream_create_fd_autoclose(&fd, 1024*1024);
	while ((line = i_stream_read_next_line(input)) != NULL) {
		l = array_append_space(lines);
		l->line = p_strdup(pool, line);
		l->user = p_strdup(pool, t_strcut(line, ':'));
	}
	if (input->stream_errno != 0) {
		*error_r = t_strdup_printf("read(%s) failed: %s", path,
					   i_stream_get_error(input));
		i_stream_unref(&input);
		return -1;
	}
	i_stream_unref(&input);
	return 0;
}

static int
passwd_file_write(const char *path, const struct stat *old_st, bool exists,
		  const ARRAY_TYPE(passwd_file_line) *lines,
		  const char **error_r)
{
	const struct passwd_file_line *l;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	mode_t mode = 0600;
	struct group *grp;
	string_t *str;

	/* as the old file was, or root:dovecot 0640 for the auth process */
	if (exists) {
		uid = old_st->st_uid;
		gid = old_st->st_gid;
		mode = old_st->st_mode & 07777;
	} else if ((grp = getgrnam("dovecot")) != NULL) {
		gid = grp->gr_gid;
		mode = 0640;
	}
	str = t_str_new(4096);
	array_foreach(lines, l) {
		str_append(str, l->line);
		str_append_c(str, '\n');
	}
	return migrate_file_replace(path, str_data(str), str_len(str), mode,
				    uid, gid, error_r);
}

/* Dovecot's passwd-file checks the file's mtime and size at most once a
   second: until the second of our write has passed, a lookup may still
   be answered from the old file. */
static void passwd_file_wait_next_second(void)
{
	struct timeval now;

	i_gettimeofday(&now);
	i_sleep_msecs((1000000 - now.tv_usec) / 1000 + 1);
}

int migrate_accounts_plan(const struct migrate_accounts *accounts,
			  migrate_account_lookup_t *lookup, void *context,
			  const struct migrate_accounts_hasher *hasher,
			  bool update, bool dry_run, pool_t pool,
			  ARRAY_TYPE(migrate_account_report) *reports,
			  const char **error_r)
{
	const struct migrate_account_stored *old;
	struct migrate_account_report *report;
	const struct migrate_account *acc;
	const char *tail, *hash;
	int ret;

	array_foreach(&accounts->accounts, acc) {
		report = array_append_space(reports);
		report->account = acc;
		tail = migrate_account_tail(acc);
		old = lookup(acc->user, context);
		if (old == NULL) {
			report->result = MIGRATE_ACCOUNT_CREATED;
			if (dry_run)
				continue;
			hash = hasher->hash(acc->password, error_r);
			if (hash == NULL)
				return -1;
			report->stored_password = p_strdup(pool, hash);
			continue;
		}
		ret = hasher->verify(acc->password, old->password, error_r);
		if (ret < 0)
			return -1;
		if (ret > 0 && strcmp(old->tail, tail) == 0) {
			report->result = MIGRATE_ACCOUNT_UNCHANGED;
			continue;
		}
		report->reason = p_strdup_printf(pool, "differs: %s%s%s",
			ret == 0 ? "password" : "",
			ret == 0 && strcmp(old->tail, tail) != 0 ? ", " : "",
			strcmp(old->tail, tail) == 0 ? "" :
			account_tail_diff(old->tail, tail));
		if (!update) {
			report->result = MIGRATE_ACCOUNT_SKIPPED;
			continue;
		}
		report->result = MIGRATE_ACCOUNT_UPDATED;
		if (dry_run)
			continue;
		/* the hash stays when the password still matches */
		hash = ret > 0 ? old->password :
			hasher->hash(acc->password, error_r);
		if (hash == NULL)
			return -1;
		report->stored_password = p_strdup(pool, hash);
	}
	return 0;
}

struct passwd_file_lookup {
	HASH_TABLE(const char *, void *) by_user;
	ARRAY_TYPE(passwd_file_line) *lines;
	struct migrate_account_stored stored;
};

static const struct migrate_account_stored *
passwd_file_lookup(const char *user, void *context)
{
	struct passwd_file_lookup *ctx = context;
	const struct passwd_file_line *l;
	const char *line, *p;
	unsigned int i;

	i = POINTER_CAST_TO(hash_table_lookup(ctx->by_user, user),
			    unsigned int);
	if (i == 0)
		return NULL;
	l = array_idx(ctx->lines, i - 1);
	/* user:password:tail */
	line = l->line + strlen(user) + 1;
	p = strchr(line, ':');
	ctx->stored.password = p == NULL ? line : t_strdup_until(line, p);
	ctx->stored.tail = p == NULL ? "" : p;
	return &ctx->stored;
}

static int
passwd_file_apply_locked(const char *path,
			 const struct migrate_accounts *accounts,
			 const struct migrate_accounts_hasher *hasher,
			 bool update, bool dry_run, pool_t pool,
			 ARRAY_TYPE(migrate_account_report) *reports,
			 const char **error_r)
{
	ARRAY_TYPE(passwd_file_line) lines;
	struct passwd_file_lookup lookup;
	const struct migrate_account_report *report;
	struct passwd_file_line *l;
	const char *line;
	struct stat st;
	bool exists, changed = FALSE;
	unsigned int i;

	i_zero(&st);
	i_zero(&lookup);
	t_array_init(&lines, 64);
	if (passwd_file_read(path, pool_datastack_create(), &lines, &st,
			     &exists, error_r) < 0)
		return -1;
	hash_table_create(&lookup.by_user, pool_datastack_create(), 0,
			  str_hash, strcmp);
	for (i = 0; i < array_count(&lines); i++) {
		l = array_idx_modifiable(&lines, i);
		hash_table_update(lookup.by_user, l->user, POINTER_CAST(i + 1));
	}
	lookup.lines = &lines;
	if (migrate_accounts_plan(accounts, passwd_file_lookup, &lookup,
				  hasher, update, dry_run, pool, reports,
				  error_r) < 0)
		return -1;
	array_foreach(reports, report) {
		if (report->stored_password == NULL)
			continue;
		line = t_strconcat(report->account->user, ":",
				   report->stored_password,
				   migrate_account_tail(report->account), NULL);
		i = POINTER_CAST_TO(hash_table_lookup(lookup.by_user,
						      report->account->user),
				    unsigned int);
		if (i == 0) {
			l = array_append_space(&lines);
			l->user = report->account->user;
		} else {
			l = array_idx_modifiable(&lines, i - 1);
		}
		l->line = line;
		changed = TRUE;
	}
	if (!changed || dry_run)
		return 0;
	if (passwd_file_write(path, &st, exists, &lines, error_r) < 0)
		return -1;
	passwd_file_wait_next_second();
	return 0;
}

int migrate_accounts_passwd_file_apply(const char *path,
				       const struct migrate_accounts *accounts,
				       const struct migrate_accounts_hasher *hasher,
				       bool update, bool dry_run, pool_t pool,
				       ARRAY_TYPE(migrate_account_report) *reports,
				       const char **error_r)
{
	const char *lock_path = t_strconcat(path, ".lock", NULL);
	struct file_lock_settings lock_set = {
		.lock_method = FILE_LOCK_METHOD_FLOCK,
	};
	struct file_lock *lock;
	int fd, ret;

	fd = open(lock_path, O_RDWR | O_CREAT, 0600);
	if (fd == -1) {
		*error_r = t_strdup_printf("open(%s) failed: %m", lock_path);
		return -1;
	}
	ret = file_wait_lock(fd, lock_path, F_WRLCK, &lock_set,
			     MIGRATE_ACCOUNTS_LOCK_TIMEOUT_SECS, &lock,
			     error_r);
	if (ret <= 0) {
		if (ret == 0)
			*error_r = t_strdup_printf("%s is locked", path);
		i_close_fd(&fd);
		return -1;
	}
	T_BEGIN {
		ret = passwd_file_apply_locked(path, accounts, hasher, update,
					       dry_run, pool, reports,
					       error_r);
		if (ret < 0)
			*error_r = p_strdup(pool, *error_r);
	} T_END;
	file_lock_free(&lock);
	i_close_fd(&fd);
	return ret;
}
