/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "strnum.h"
#include "settings-parser.h"
#include "istream.h"
#include "net.h"
#include "buffer.h"
#include "safe-memset.h"
#include "migrate-file.h"
#include "migrate-names.h"
#include "migrate-settings.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

struct migrate_settings_reader {
	migrate_settings_lookup_t *lookup;
	void *context;
	const char *error;
};

static const char *
reader_get(struct migrate_settings_reader *r, const char *key)
{
	const char *value = r->lookup(key, r->context);

	return value == NULL || value[0] == '\0' ? NULL : value;
}

static int
reader_bool(struct migrate_settings_reader *r, const char *key,
	    bool default_value, bool *value_r)
{
	const char *value = reader_get(r, key);

	if (value == NULL) {
		*value_r = default_value;
		return 0;
	}
	if (strcasecmp(value, "yes") == 0 || strcmp(value, "1") == 0)
		*value_r = TRUE;
	else if (strcasecmp(value, "no") == 0 || strcmp(value, "0") == 0)
		*value_r = FALSE;
	else {
		r->error = t_strdup_printf(
			"%s: Invalid boolean '%s' (use yes or no)", key, value);
		return -1;
	}
	return 0;
}

/* a folder name pattern with '/' between levels and %{year} in it */
static int
reader_archive_pattern(struct migrate_settings_reader *r, const char *key,
		       const char *default_value, pool_t pool,
		       const char **value_r)
{
	const char *value = reader_get(r, key);

	if (value == NULL)
		value = default_value;
	if (strstr(value, MIGRATE_ARCHIVE_YEAR_VAR) == NULL) {
		r->error = t_strdup_printf("%s: '%s' has no %s", key, value,
					   MIGRATE_ARCHIVE_YEAR_VAR);
		return -1;
	}
	if (value[0] == '/' || value[strlen(value) - 1] == '/' ||
	    strstr(value, "//") != NULL) {
		r->error = t_strdup_printf("%s: '%s' has an empty level",
					   key, value);
		return -1;
	}
	*value_r = p_strdup(pool, value);
	return 0;
}

static int
reader_uint(struct migrate_settings_reader *r, const char *key,
	    unsigned int default_value, unsigned int min, unsigned int max,
	    unsigned int *value_r)
{
	const char *value = reader_get(r, key);

	if (value == NULL) {
		*value_r = default_value;
		return 0;
	}
	if (str_to_uint(value, value_r) < 0 || *value_r < min ||
	    *value_r > max) {
		r->error = t_strdup_printf(
			"%s: Invalid number '%s' (must be %u..%u)",
			key, value, min, max);
		return -1;
	}
	return 0;
}

static int
read_password_file(const char *path, const char **password_r,
		   const char **error_r)
{
	struct istream *input;
	const char *line;
	int fd, ret = 0;

	fd = open(path, O_RDONLY);
	if (fd == -1) {
		*error_r = t_strdup_printf("%s: open(%s) failed: %m",
			MIGRATE_SETTING_SOURCE_PASSWORD_FILE, path);
		return -1;
	}
	input = i_stream_create_fd_autoclose(&fd, 1024);
	line = i_stream_read_next_line(input);
	if (line == NULL || line[0] == '\0') {
		*error_r = t_strdup_printf("%s: %s: %s",
			MIGRATE_SETTING_SOURCE_PASSWORD_FILE, path,
			input->stream_errno != 0 ?
			i_stream_get_error(input) : "No password in file");
		ret = -1;
	} else {
		*password_r = t_strdup(line);
	}
	i_stream_destroy(&input);
	return ret;
}

static int
reader_time(struct migrate_settings_reader *r, const char *key,
	    unsigned int default_secs, unsigned int *secs_r)
{
	const char *value = reader_get(r, key), *error;

	if (value == NULL) {
		*secs_r = default_secs;
		return 0;
	}
	if (settings_get_time(value, secs_r, &error) < 0) {
		r->error = t_strdup_printf("%s: %s", key, error);
		return -1;
	}
	return 0;
}

/* A size ("8M"), at least min_value. */
static int
reader_size(struct migrate_settings_reader *r, const char *key,
	    uoff_t default_value, uoff_t min_value, uoff_t *value_r)
{
	const char *value = reader_get(r, key), *error;

	if (value == NULL) {
		*value_r = default_value;
		return 0;
	}
	if (settings_get_size(value, value_r, &error) < 0) {
		r->error = t_strdup_printf("%s: %s", key, error);
		return -1;
	}
	if (*value_r < min_value) {
		r->error = t_strdup_printf(
			"%s: '%s' is less than the minimum %"PRIuUOFF_T" bytes",
			key, value, min_value);
		return -1;
	}
	return 0;
}

/* One of names (index = the enum's value); NULL value: default_idx. */
static int
reader_enum(struct migrate_settings_reader *r, const char *key,
	    const char *const *names, unsigned int default_idx,
	    const char *valid, unsigned int *idx_r)
{
	const char *value = reader_get(r, key);
	unsigned int i;

	if (value == NULL) {
		*idx_r = default_idx;
		return 0;
	}
	for (i = 0; names[i] != NULL; i++) {
		if (strcasecmp(value, names[i]) == 0) {
			*idx_r = i;
			return 0;
		}
	}
	r->error = t_strdup_printf("%s: Invalid value '%s' (use %s)",
				   key, value, valid);
	return -1;
}

static int
settings_read_password(pool_t pool, struct migrate_settings_reader *r,
		       struct migrate_settings *set)
{
	const char *value, *password_file;

	value = reader_get(r, MIGRATE_SETTING_SOURCE_PASSWORD);
	password_file = reader_get(r, MIGRATE_SETTING_SOURCE_PASSWORD_FILE);
	if (value != NULL && password_file != NULL) {
		r->error = MIGRATE_SETTING_SOURCE_PASSWORD" and "
			MIGRATE_SETTING_SOURCE_PASSWORD_FILE
			" are mutually exclusive";
		return -1;
	}
	set->source_password = p_strdup(pool, value);
	set->source_password_file = p_strdup(pool, password_file);
	return 0;
}

static const char *const source_protocol_names[] = {
	[MIGRATE_SOURCE_PROTOCOL_IMAP] = "imap",
	[MIGRATE_SOURCE_PROTOCOL_POP3] = "pop3",
	[MIGRATE_SOURCE_PROTOCOL_AUTO] = "auto",
	NULL
};

const char *
migrate_source_protocol_to_str(enum migrate_source_protocol protocol)
{
	i_assert(protocol < N_ELEMENTS(source_protocol_names) - 1);
	return source_protocol_names[protocol];
}

bool migrate_source_protocol_parse(const char *value,
				   enum migrate_source_protocol *protocol_r)
{
	unsigned int i;

	for (i = 0; source_protocol_names[i] != NULL; i++) {
		if (strcasecmp(value, source_protocol_names[i]) == 0) {
			*protocol_r = i;
			return TRUE;
		}
	}
	return FALSE;
}

static const char *const source_auth_names[] = {
	[MIGRATE_SOURCE_AUTH_PASSWORD] = "password",
	[MIGRATE_SOURCE_AUTH_XOAUTH2] = "xoauth2",
	[MIGRATE_SOURCE_AUTH_OAUTHBEARER] = "oauthbearer",
	NULL
};

const char *migrate_source_auth_to_str(enum migrate_source_auth auth)
{
	i_assert(auth < N_ELEMENTS(source_auth_names) - 1);
	return source_auth_names[auth];
}

bool migrate_source_auth_parse(const char *value,
			       enum migrate_source_auth *auth_r)
{
	unsigned int i;

	for (i = 0; source_auth_names[i] != NULL; i++) {
		if (strcasecmp(value, source_auth_names[i]) == 0) {
			*auth_r = i;
			return TRUE;
		}
	}
	return FALSE;
}

int migrate_settings_check_auth(const struct migrate_settings *set,
				bool protocol_only, const char **error_r)
{
	bool token = set->source_auth != MIGRATE_SOURCE_AUTH_PASSWORD;

	if (token && (set->source_protocol != MIGRATE_SOURCE_PROTOCOL_IMAP ||
		      set->source_pop3 != MIGRATE_POP3_NO)) {
		/* Dovecot's POP3 client logs in with USER/PASS only */
		*error_r = t_strdup_printf("%s = %s works over IMAP only "
			"(%s = imap, %s = no)", MIGRATE_SETTING_SOURCE_AUTH,
			source_auth_names[set->source_auth],
			MIGRATE_SETTING_SOURCE_PROTOCOL,
			MIGRATE_SETTING_SOURCE_POP3);
		return -1;
	}
	if (protocol_only)
		return 0;
	if ((set->source_password == NULL ||
	     set->source_password[0] == '\0') &&
	    set->source_password_file == NULL &&
	    (!token ||
	     set->source_oauth2_grant == MIGRATE_OAUTH2_GRANT_NONE)) {
		*error_r = token ? t_strdup_printf("%s = %s: neither a token "
			"(%s, %s) nor where to get one (%s, %s, %s) is set",
			MIGRATE_SETTING_SOURCE_AUTH,
			source_auth_names[set->source_auth],
			MIGRATE_SETTING_SOURCE_PASSWORD,
			MIGRATE_SETTING_SOURCE_PASSWORD_FILE,
			MIGRATE_SETTING_SOURCE_OAUTH2_TOKEN_COMMAND,
			MIGRATE_SETTING_SOURCE_OAUTH2_CLIENT_ID,
			MIGRATE_SETTING_SOURCE_OAUTH2_SERVICE_ACCOUNT_FILE) :
			"Neither "MIGRATE_SETTING_SOURCE_PASSWORD" nor "
			MIGRATE_SETTING_SOURCE_PASSWORD_FILE" is set";
		return -1;
	}
	return 0;
}

const char *migrate_source_auth_mechanism(enum migrate_source_auth auth)
{
	switch (auth) {
	case MIGRATE_SOURCE_AUTH_PASSWORD:
		break;
	case MIGRATE_SOURCE_AUTH_XOAUTH2:
		return "XOAUTH2";
	case MIGRATE_SOURCE_AUTH_OAUTHBEARER:
		return "OAUTHBEARER";
	}
	return "";
}

static int
settings_absolute_path(struct migrate_settings_reader *r, const char *key,
		       pool_t pool, const char **path_r)
{
	const char *value = reader_get(r, key);

	if (value != NULL && value[0] != '/') {
		r->error = t_strdup_printf("%s must be an absolute path: %s",
					   key, value);
		return -1;
	}
	*path_r = p_strdup(pool, value);
	return 0;
}

/* The token's source, when no password gives it: a command, or one of
   the grants; never two. */
static int
settings_read_oauth2_grant(pool_t pool, struct migrate_settings_reader *r,
			   struct migrate_settings *set)
{
	const char *url;
	unsigned int count = 0;

	if (settings_absolute_path(r,
			MIGRATE_SETTING_SOURCE_OAUTH2_CLIENT_SECRET_FILE, pool,
			&set->source_oauth2_client_secret_file) < 0 ||
	    settings_absolute_path(r,
			MIGRATE_SETTING_SOURCE_OAUTH2_SERVICE_ACCOUNT_FILE, pool,
			&set->source_oauth2_service_account_file) < 0)
		return -1;
	set->source_oauth2_client_id = p_strdup(pool,
		reader_get(r, MIGRATE_SETTING_SOURCE_OAUTH2_CLIENT_ID));
	url = reader_get(r, MIGRATE_SETTING_SOURCE_OAUTH2_TOKEN_URL);
	if (url != NULL && !str_begins(url, "https://")) {
		/* the client secret and the tokens cross it */
		r->error = t_strdup_printf("%s must be an https:// URL: %s",
			MIGRATE_SETTING_SOURCE_OAUTH2_TOKEN_URL, url);
		return -1;
	}
	set->source_oauth2_token_url = p_strdup(pool, url);

	if (set->source_oauth2_token_command != NULL) {
		set->source_oauth2_grant = MIGRATE_OAUTH2_GRANT_COMMAND;
		count++;
	}
	if (set->source_oauth2_client_id != NULL ||
	    set->source_oauth2_client_secret_file != NULL) {
		set->source_oauth2_grant =
			MIGRATE_OAUTH2_GRANT_CLIENT_CREDENTIALS;
		count++;
	}
	if (set->source_oauth2_service_account_file != NULL) {
		set->source_oauth2_grant = MIGRATE_OAUTH2_GRANT_SERVICE_ACCOUNT;
		count++;
	}
	if (count > 1) {
		r->error = "Only one of "
			MIGRATE_SETTING_SOURCE_OAUTH2_TOKEN_COMMAND", "
			MIGRATE_SETTING_SOURCE_OAUTH2_CLIENT_ID" (with "
			MIGRATE_SETTING_SOURCE_OAUTH2_CLIENT_SECRET_FILE") and "
			MIGRATE_SETTING_SOURCE_OAUTH2_SERVICE_ACCOUNT_FILE
			" may give the token";
		return -1;
	}
	switch (set->source_oauth2_grant) {
	case MIGRATE_OAUTH2_GRANT_NONE:
	case MIGRATE_OAUTH2_GRANT_COMMAND:
		break;
	case MIGRATE_OAUTH2_GRANT_CLIENT_CREDENTIALS:
		if (set->source_oauth2_client_id == NULL ||
		    set->source_oauth2_client_secret_file == NULL ||
		    set->source_oauth2_token_url == NULL) {
			r->error = "The client-credentials grant needs "
				MIGRATE_SETTING_SOURCE_OAUTH2_CLIENT_ID", "
				MIGRATE_SETTING_SOURCE_OAUTH2_CLIENT_SECRET_FILE
				" and "MIGRATE_SETTING_SOURCE_OAUTH2_TOKEN_URL;
			return -1;
		}
		break;
	case MIGRATE_OAUTH2_GRANT_SERVICE_ACCOUNT:
		break;
	}
	set->source_oauth2_scope = p_strdup(pool,
		reader_get(r, MIGRATE_SETTING_SOURCE_OAUTH2_SCOPE));
	if (set->source_oauth2_scope == NULL) {
		set->source_oauth2_scope =
			set->source_oauth2_grant ==
			MIGRATE_OAUTH2_GRANT_SERVICE_ACCOUNT ?
			MIGRATE_DEFAULT_OAUTH2_SCOPE_SERVICE_ACCOUNT :
			MIGRATE_DEFAULT_OAUTH2_SCOPE_CLIENT_CREDENTIALS;
	}
	return 0;
}

/* The old server: where, how, as whom. */
static int
settings_read_source(pool_t pool, struct migrate_settings_reader *r,
		     const char *default_user, bool require_source,
		     struct migrate_settings *set)
{
	static const char *const ssl_names[] = {
		[MIGRATE_SSL_NO] = "no",
		[MIGRATE_SSL_IMAPS] = "imaps",
		[MIGRATE_SSL_STARTTLS] = "starttls",
		NULL
	};
	static const char *const pop3_names[] = {
		[MIGRATE_POP3_NO] = "no",
		[MIGRATE_POP3_YES] = "yes",
		[MIGRATE_POP3_AUTO] = "auto",
		NULL
	};
	const char *value;
	unsigned int num;
	struct ip_addr ip;

	set->source_host = p_strdup(pool,
		reader_get(r, MIGRATE_SETTING_SOURCE_HOST));
	if (set->source_host == NULL && require_source) {
		r->error = MIGRATE_SETTING_SOURCE_HOST" is not set";
		return -1;
	}
	if (reader_enum(r, MIGRATE_SETTING_SOURCE_SSL, ssl_names,
			MIGRATE_DEFAULT_SOURCE_SSL, "imaps, starttls or no",
			&num) < 0)
		return -1;
	set->source_ssl = num;
	if (reader_bool(r, MIGRATE_SETTING_SOURCE_SSL_VERIFY, TRUE,
			&set->source_ssl_verify) < 0)
		return -1;

	set->source_ssl_hostname = p_strdup(pool,
		reader_get(r, MIGRATE_SETTING_SOURCE_SSL_HOSTNAME));
	if (set->source_ssl_hostname != NULL && set->source_host != NULL &&
	    net_addr2ip(set->source_host, &ip) < 0) {
		r->error = t_strdup_printf(
			"%s is set, so %s must be an IP address, not '%s'",
			MIGRATE_SETTING_SOURCE_SSL_HOSTNAME,
			MIGRATE_SETTING_SOURCE_HOST, set->source_host);
		return -1;
	}
	if (reader_uint(r, MIGRATE_SETTING_SOURCE_PORT,
			set->source_ssl == MIGRATE_SSL_IMAPS ? 993 : 143,
			1, 65535, &num) < 0)
		return -1;
	set->source_port = num;

	value = reader_get(r, MIGRATE_SETTING_SOURCE_USER);
	set->source_user = p_strdup(pool, value != NULL ? value : default_user);
	set->source_master_user = p_strdup(pool,
		reader_get(r, MIGRATE_SETTING_SOURCE_MASTER_USER));
	if (settings_read_password(pool, r, set) < 0)
		return -1;
	value = reader_get(r, MIGRATE_SETTING_SOURCE_PREFIX);
	set->source_prefix = p_strdup(pool, value != NULL ? value : "");
	if (reader_enum(r, MIGRATE_SETTING_SOURCE_POP3, pop3_names,
			MIGRATE_POP3_NO, "no, yes or auto", &num) < 0)
		return -1;
	set->source_pop3 = num;
	if (reader_enum(r, MIGRATE_SETTING_SOURCE_PROTOCOL,
			source_protocol_names, MIGRATE_SOURCE_PROTOCOL_IMAP,
			"imap, pop3 or auto", &num) < 0)
		return -1;
	set->source_protocol = num;
	if (reader_uint(r, MIGRATE_SETTING_SOURCE_POP3_PORT,
			set->source_ssl == MIGRATE_SSL_IMAPS ? 995 : 110,
			1, 65535, &set->source_pop3_port) < 0)
		return -1;
	if (reader_enum(r, MIGRATE_SETTING_SOURCE_AUTH, source_auth_names,
			MIGRATE_SOURCE_AUTH_PASSWORD,
			"password, xoauth2 or oauthbearer", &num) < 0)
		return -1;
	set->source_auth = num;
	value = reader_get(r, MIGRATE_SETTING_SOURCE_OAUTH2_TOKEN_COMMAND);
	if (value != NULL && value[0] != '/') {
		r->error = t_strdup_printf("%s must start with an absolute "
			"path: %s", MIGRATE_SETTING_SOURCE_OAUTH2_TOKEN_COMMAND,
			value);
		return -1;
	}
	set->source_oauth2_token_command = p_strdup(pool, value);
	if (settings_read_oauth2_grant(pool, r, set) < 0)
		return -1;
	if (migrate_settings_check_auth(set, !require_source, &r->error) < 0)
		return -1;
	return reader_time(r, MIGRATE_SETTING_SOURCE_TIMEOUT,
			   MIGRATE_DEFAULT_SOURCE_TIMEOUT_SECS,
			   &set->source_timeout_secs);
}

static int
settings_read_debug_kill(pool_t pool, struct migrate_settings_reader *r,
			 struct migrate_settings *set)
{
	const char *value, *p;

	value = reader_get(r, MIGRATE_SETTING_DEBUG_KILL);
	if (value == NULL)
		return 0;
	p = strchr(value, ':');
	set->debug_kill_count = 1;
	if (p != NULL && (str_to_uint(p + 1, &set->debug_kill_count) < 0 ||
			  set->debug_kill_count == 0)) {
		r->error = t_strdup_printf(
			"%s: Invalid count in '%s' (STEP[:N], N >= 1)",
			MIGRATE_SETTING_DEBUG_KILL, value);
		return -1;
	}
	set->debug_kill_step = p_strdup(pool, p == NULL ? value :
					t_strdup_until(value, p));
	return 0;
}

/* What a run copies and how: retries, folders, batches, workers. */
static int
settings_read_run(pool_t pool, struct migrate_settings_reader *r,
		  struct migrate_settings *set)
{
	static const char *const gmail_names[] = {
		[MIGRATE_GMAIL_AUTO] = "auto",
		[MIGRATE_GMAIL_YES] = "yes",
		[MIGRATE_GMAIL_NO] = "no",
		NULL
	};
	const char *value, *error;
	unsigned int num;

	if (reader_time(r, MIGRATE_SETTING_RETRY_DELAY,
			MIGRATE_DEFAULT_RETRY_DELAY_SECS,
			&set->retry_delay_secs) < 0 ||
	    reader_uint(r, MIGRATE_SETTING_RETRIES, MIGRATE_DEFAULT_RETRIES,
			0, 100, &set->retries) < 0 ||
	    settings_read_debug_kill(pool, r, set) < 0 ||
	    reader_enum(r, MIGRATE_SETTING_GMAIL, gmail_names,
			MIGRATE_GMAIL_AUTO, "auto, yes or no", &num) < 0)
		return -1;
	set->gmail = num;

	set->include = p_strdup(pool, reader_get(r, MIGRATE_SETTING_INCLUDE));
	set->exclude = p_strdup(pool, reader_get(r, MIGRATE_SETTING_EXCLUDE));
	if (reader_bool(r, MIGRATE_SETTING_SPECIAL_USE,
			MIGRATE_DEFAULT_SPECIAL_USE, &set->special_use) < 0 ||
	    reader_bool(r, MIGRATE_SETTING_SUBSCRIPTIONS,
			MIGRATE_DEFAULT_SUBSCRIPTIONS, &set->subscriptions) < 0 ||
	    reader_bool(r, MIGRATE_SETTING_FSYNC, MIGRATE_DEFAULT_FSYNC,
			&set->fsync) < 0)
		return -1;
	if (reader_uint(r, MIGRATE_SETTING_MAX_DELETE_PERCENT,
			MIGRATE_DEFAULT_MAX_DELETE_PERCENT, 0, 100,
			&set->max_delete_percent) < 0 ||
	    reader_uint(r, MIGRATE_SETTING_BATCH_MESSAGES,
			MIGRATE_DEFAULT_BATCH_MESSAGES, 1, 1000000,
			&set->batch_messages) < 0 ||
	    reader_uint(r, MIGRATE_SETTING_PREFETCH,
			MIGRATE_DEFAULT_PREFETCH, 0, 10000,
			&set->prefetch) < 0 ||
	    reader_uint(r, MIGRATE_SETTING_WORKERS,
			MIGRATE_DEFAULT_WORKERS, 1, MIGRATE_MAX_WORKERS,
			&set->workers) < 0 ||
	    reader_uint(r, MIGRATE_SETTING_SOURCE_MAX_CONNECTIONS, 0, 0,
			MIGRATE_MAX_SOURCE_CONNECTIONS,
			&set->source_max_connections) < 0)
		return -1;

	value = reader_get(r, MIGRATE_SETTING_BATCH_SIZE);
	if (value == NULL)
		set->batch_size = MIGRATE_DEFAULT_BATCH_SIZE;
	else if (settings_get_size(value, &set->batch_size, &error) < 0 ||
		 set->batch_size == 0) {
		r->error = t_strdup_printf("%s: %s",
			MIGRATE_SETTING_BATCH_SIZE,
			set->batch_size == 0 ? "Must not be 0" : error);
		return -1;
	}
	return 0;
}

/* Our side: the state, archive folders, names. */
static int
settings_read_local(pool_t pool, struct migrate_settings_reader *r,
		    const char *home, struct migrate_settings *set)
{
	const char *value;

	value = reader_get(r, MIGRATE_SETTING_STATE_DIR);
	if (value == NULL)
		value = MIGRATE_DEFAULT_STATE_DIR;
	if (value[0] != '/') {
		if (home == NULL || home[0] == '\0') {
			r->error = t_strdup_printf(
				"%s: Relative path '%s' but the user has no home",
				MIGRATE_SETTING_STATE_DIR, value);
			return -1;
		}
		value = t_strconcat(home, "/", value, NULL);
	}
	set->state_dir = p_strdup(pool, value);

	if (reader_uint(r, MIGRATE_SETTING_ARCHIVE_THRESHOLD,
			MIGRATE_DEFAULT_ARCHIVE_THRESHOLD, 0, 100000000,
			&set->archive_threshold) < 0 ||
	    reader_archive_pattern(r, MIGRATE_SETTING_ARCHIVE_INBOX,
				   MIGRATE_DEFAULT_ARCHIVE_INBOX, pool,
				   &set->archive_inbox) < 0 ||
	    reader_archive_pattern(r, MIGRATE_SETTING_ARCHIVE_SENT,
				   MIGRATE_DEFAULT_ARCHIVE_SENT, pool,
				   &set->archive_sent) < 0)
		return -1;

	value = reader_get(r, MIGRATE_SETTING_ESCAPE_CHAR);
	if (value == NULL)
		set->escape_char = MIGRATE_DEFAULT_ESCAPE_CHAR;
	else if (strlen(value) != 1 ||
		 !migrate_name_escape_char_is_valid(value[0])) {
		r->error = t_strdup_printf(
			"%s: Must be a single printable ASCII character, "
			"no letter, digit, space or one of ~*%%/.",
			MIGRATE_SETTING_ESCAPE_CHAR);
		return -1;
	} else {
		set->escape_char = value[0];
	}
	return 0;
}

/* Bounds against a source that misbehaves. */
static int
settings_read_bounds(struct migrate_settings_reader *r,
		     struct migrate_settings *set)
{
	return reader_size(r, MIGRATE_SETTING_SOURCE_MAX_LINE_LENGTH,
			   MIGRATE_DEFAULT_SOURCE_MAX_LINE_LENGTH,
			   MIGRATE_MIN_SOURCE_MAX_LINE_LENGTH,
			   &set->source_max_line_length) < 0 ||
		reader_size(r, MIGRATE_SETTING_MAX_MESSAGE_SIZE,
			    MIGRATE_DEFAULT_MAX_MESSAGE_SIZE, 1,
			    &set->max_message_size) < 0 ||
		reader_time(r, MIGRATE_SETTING_ACCOUNT_TIMEOUT,
			    MIGRATE_DEFAULT_ACCOUNT_TIMEOUT_SECS,
			    &set->account_timeout_secs) < 0 ||
		reader_size(r, MIGRATE_SETTING_MIN_RATE,
			    MIGRATE_DEFAULT_MIN_RATE, 0, &set->min_rate) < 0 ||
		reader_uint(r, MIGRATE_SETTING_MAX_FOLDERS,
			    MIGRATE_DEFAULT_MAX_FOLDERS, 1,
			    MIGRATE_MAX_MAX_FOLDERS, &set->max_folders) < 0 ?
		-1 : 0;
}

int migrate_settings_read(pool_t pool, migrate_settings_lookup_t *lookup,
			  void *context, const char *default_user,
			  const char *home, bool require_source,
			  const struct migrate_settings **set_r,
			  const char **error_r)
{
	struct migrate_settings_reader r = {
		.lookup = lookup,
		.context = context,
	};
	struct migrate_settings *set;

	set = p_new(pool, struct migrate_settings, 1);
	if (settings_read_source(pool, &r, default_user, require_source,
				 set) < 0 ||
	    settings_read_run(pool, &r, set) < 0 ||
	    settings_read_local(pool, &r, home, set) < 0 ||
	    settings_read_bounds(&r, set) < 0) {
		*error_r = r.error;
		return -1;
	}
	*set_r = set;
	return 0;
}

int migrate_settings_read_password_file(pool_t pool,
					struct migrate_settings *set,
					const char **error_r)
{
	const char *password;

	if (set->source_password_file == NULL)
		return 0;
	if (read_password_file(set->source_password_file, &password,
			       error_r) < 0)
		return -1;
	set->source_password = p_strdup(pool, password);
	return 0;
}

/* the whole of a secret file, at most */
#define OAUTH2_SECRET_MAX_SIZE (64*1024)

static int
read_secret_file(const char *key, const char *path, bool first_line,
		 pool_t pool, const char **secret_r, const char **error_r)
{
	const char *error;
	char *data, *end;
	size_t size;
	int ret;

	ret = migrate_file_read_private(path, OAUTH2_SECRET_MAX_SIZE, &data,
					&size, &error);
	if (ret <= 0) {
		*error_r = t_strdup_printf("%s: %s", key, ret < 0 ? error :
			t_strdup_printf("open(%s) failed: %s", path,
					strerror(ENOENT)));
		return -1;
	}
	if (first_line && (end = strpbrk(data, "\r\n")) != NULL)
		*end = '\0';
	*secret_r = data[0] == '\0' ? NULL : p_strdup(pool, data);
	safe_memset(data, 0, size);
	if (*secret_r == NULL) {
		*error_r = t_strdup_printf("%s: %s is empty", key, path);
		return -1;
	}
	return 0;
}

int migrate_settings_read_oauth2_secret(migrate_settings_lookup_t *lookup,
					void *context, pool_t pool,
					const char **secret_r,
					const char **error_r)
{
	const char *path;

	*secret_r = NULL;
	path = lookup(MIGRATE_SETTING_SOURCE_OAUTH2_SERVICE_ACCOUNT_FILE,
		      context);
	if (path != NULL && path[0] == '/') {
		return read_secret_file(
			MIGRATE_SETTING_SOURCE_OAUTH2_SERVICE_ACCOUNT_FILE,
			path, FALSE, pool, secret_r, error_r);
	}
	path = lookup(MIGRATE_SETTING_SOURCE_OAUTH2_CLIENT_SECRET_FILE,
		      context);
	if (path != NULL && path[0] == '/') {
		return read_secret_file(
			MIGRATE_SETTING_SOURCE_OAUTH2_CLIENT_SECRET_FILE,
			path, TRUE, pool, secret_r, error_r);
	}
	return 0;
}

int migrate_settings_read_workers(migrate_settings_lookup_t *lookup,
				  void *context, unsigned int *workers_r,
				  const char **error_r)
{
	struct migrate_settings_reader r = {
		.lookup = lookup,
		.context = context,
	};
	unsigned int max_conns, max_workers;

	if ((*workers_r == 0 &&
	     reader_uint(&r, MIGRATE_SETTING_WORKERS, MIGRATE_DEFAULT_WORKERS,
			 1, MIGRATE_MAX_WORKERS, workers_r) < 0) ||
	    reader_uint(&r, MIGRATE_SETTING_SOURCE_MAX_CONNECTIONS, 0, 0,
			MIGRATE_MAX_SOURCE_CONNECTIONS, &max_conns) < 0) {
		*error_r = r.error;
		return -1;
	}
	/* each process: the storage's connection and our own */
	max_workers = I_MAX(max_conns / MIGRATE_SOURCE_CONNS_PER_PROCESS, 1);
	if (max_conns > 0 && *workers_r > max_workers)
		*workers_r = max_workers;
	return 0;
}

const char *migrate_ssl_mode_to_str(enum migrate_ssl_mode mode)
{
	switch (mode) {
	case MIGRATE_SSL_NO:
		return "no";
	case MIGRATE_SSL_IMAPS:
		return "imaps";
	case MIGRATE_SSL_STARTTLS:
		return "starttls";
	}
	i_unreached();
}
