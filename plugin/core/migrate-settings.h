#ifndef MIGRATE_SETTINGS_H
#define MIGRATE_SETTINGS_H

/* Every setting of the migrate plugin, read once per user from the plugin
   settings (userdb extra fields and -o plugin/... override them).  Needs no
   mail user: values come through a lookup callback. */

#define MIGRATE_SETTING_SOURCE_HOST "migrate_source_host"
#define MIGRATE_SETTING_SOURCE_PORT "migrate_source_port"
#define MIGRATE_SETTING_SOURCE_SSL "migrate_source_ssl"
#define MIGRATE_SETTING_SOURCE_SSL_VERIFY "migrate_source_ssl_verify"
#define MIGRATE_SETTING_SOURCE_SSL_HOSTNAME "migrate_source_ssl_hostname"
#define MIGRATE_SETTING_SOURCE_USER "migrate_source_user"
#define MIGRATE_SETTING_SOURCE_MASTER_USER "migrate_source_master_user"
#define MIGRATE_SETTING_SOURCE_PASSWORD "migrate_source_password"
#define MIGRATE_SETTING_SOURCE_PASSWORD_FILE "migrate_source_password_file"
#define MIGRATE_SETTING_SOURCE_PREFIX "migrate_source_prefix"
#define MIGRATE_SETTING_SOURCE_TIMEOUT "migrate_source_timeout"
#define MIGRATE_SETTING_RETRIES "migrate_retries"
#define MIGRATE_SETTING_RETRY_DELAY "migrate_retry_delay"
#define MIGRATE_SETTING_INCLUDE "migrate_include"
#define MIGRATE_SETTING_EXCLUDE "migrate_exclude"
#define MIGRATE_SETTING_SPECIAL_USE "migrate_special_use"
#define MIGRATE_SETTING_SUBSCRIPTIONS "migrate_subscriptions"
#define MIGRATE_SETTING_MAX_DELETE_PERCENT "migrate_max_delete_percent"
#define MIGRATE_SETTING_BATCH_MESSAGES "migrate_batch_messages"
#define MIGRATE_SETTING_BATCH_SIZE "migrate_batch_size"
#define MIGRATE_SETTING_PREFETCH "migrate_prefetch"
#define MIGRATE_SETTING_STATE_DIR "migrate_state_dir"
#define MIGRATE_SETTING_ESCAPE_CHAR "migrate_escape_char"
#define MIGRATE_SETTING_FSYNC "migrate_fsync"
#define MIGRATE_SETTING_WORKERS "migrate_workers"
#define MIGRATE_SETTING_SOURCE_MAX_CONNECTIONS "migrate_source_max_connections"
#define MIGRATE_SETTING_GMAIL "migrate_gmail"
#define MIGRATE_SETTING_DEBUG_KILL "migrate_debug_kill"
#define MIGRATE_SETTING_ARCHIVE_THRESHOLD "migrate_archive_threshold"
#define MIGRATE_SETTING_ARCHIVE_INBOX "migrate_archive_inbox"
#define MIGRATE_SETTING_ARCHIVE_SENT "migrate_archive_sent"
#define MIGRATE_SETTING_SOURCE_MAX_LINE_LENGTH "migrate_source_max_line_length"
#define MIGRATE_SETTING_MAX_MESSAGE_SIZE "migrate_max_message_size"
#define MIGRATE_SETTING_ACCOUNT_TIMEOUT "migrate_account_timeout"
#define MIGRATE_SETTING_MIN_RATE "migrate_min_rate"
#define MIGRATE_SETTING_MAX_FOLDERS "migrate_max_folders"
#define MIGRATE_SETTING_SOURCE_POP3 "migrate_source_pop3"
#define MIGRATE_SETTING_SOURCE_PROTOCOL "migrate_source_protocol"
#define MIGRATE_SETTING_SOURCE_POP3_PORT "migrate_source_pop3_port"
#define MIGRATE_SETTING_SOURCE_AUTH "migrate_source_auth"
#define MIGRATE_SETTING_SOURCE_OAUTH2_TOKEN_COMMAND "migrate_source_oauth2_token_command"
#define MIGRATE_SETTING_SOURCE_OAUTH2_TOKEN_URL "migrate_source_oauth2_token_url"
#define MIGRATE_SETTING_SOURCE_OAUTH2_CLIENT_ID "migrate_source_oauth2_client_id"
#define MIGRATE_SETTING_SOURCE_OAUTH2_CLIENT_SECRET_FILE "migrate_source_oauth2_client_secret_file"
#define MIGRATE_SETTING_SOURCE_OAUTH2_SERVICE_ACCOUNT_FILE "migrate_source_oauth2_service_account_file"
#define MIGRATE_SETTING_SOURCE_OAUTH2_SCOPE "migrate_source_oauth2_scope"

#define MIGRATE_DEFAULT_OAUTH2_SCOPE_CLIENT_CREDENTIALS \
	"https://outlook.office365.com/.default"
#define MIGRATE_DEFAULT_OAUTH2_SCOPE_SERVICE_ACCOUNT "https://mail.google.com/"

#define MIGRATE_DEFAULT_SOURCE_SSL MIGRATE_SSL_STARTTLS
#define MIGRATE_DEFAULT_SOURCE_TIMEOUT_SECS (5*60)
/* a run that loses the source retries this many times, after
   migrate_retry_delay, doubled each time up to MIGRATE_MAX_RETRY_DELAY_SECS */
#define MIGRATE_DEFAULT_RETRIES 3
#define MIGRATE_DEFAULT_RETRY_DELAY_SECS 10
#define MIGRATE_MAX_RETRY_DELAY_SECS (5*60)
#define MIGRATE_DEFAULT_SPECIAL_USE TRUE
#define MIGRATE_DEFAULT_SUBSCRIPTIONS TRUE
#define MIGRATE_DEFAULT_MAX_DELETE_PERCENT 30
#define MIGRATE_DEFAULT_BATCH_MESSAGES 500
#define MIGRATE_DEFAULT_BATCH_SIZE (64*1024*1024)
#define MIGRATE_DEFAULT_PREFETCH 200
/* relative to the user's home */
#define MIGRATE_DEFAULT_STATE_DIR ".migrate"
#define MIGRATE_DEFAULT_ESCAPE_CHAR '_'
#define MIGRATE_DEFAULT_FSYNC TRUE
/* processes copying one account's folders at once, this one included */
#define MIGRATE_DEFAULT_WORKERS 2
/* the connections each process of a run opens to the source: the imapc
   storage's and our own (migrate_source_max_connections, batch's
   per-host limit) */
#define MIGRATE_SOURCE_CONNS_PER_PROCESS 2
#define MIGRATE_MAX_WORKERS 16
/* migrate_source_max_connections at most */
#define MIGRATE_MAX_SOURCE_CONNECTIONS 10000
/* INBOX and Sent with more messages than this are archived */
#define MIGRATE_DEFAULT_ARCHIVE_THRESHOLD 10000
#define MIGRATE_ARCHIVE_YEAR_VAR "%{year}"
/* '/' separates levels, whatever the namespace's separator */
#define MIGRATE_DEFAULT_ARCHIVE_INBOX "ARCHIVE/%{year}"
#define MIGRATE_DEFAULT_ARCHIVE_SENT "ARCHIVE/Sent/%{year}"

/* bounds against a source that misbehaves: a line of a reply (literals
   are not lines), one message, one account's run, the rate while we
   wait for the source, the folders of one LIST */
#define MIGRATE_DEFAULT_SOURCE_MAX_LINE_LENGTH (8*1024*1024)
#define MIGRATE_MIN_SOURCE_MAX_LINE_LENGTH (64*1024)
#define MIGRATE_DEFAULT_MAX_MESSAGE_SIZE (100*1024*1024)
#define MIGRATE_DEFAULT_ACCOUNT_TIMEOUT_SECS (12*60*60)
#define MIGRATE_DEFAULT_MIN_RATE 1024
#define MIGRATE_DEFAULT_MAX_FOLDERS 10000
#define MIGRATE_MAX_MAX_FOLDERS 1000000

enum migrate_pop3_mode {
	/* the source's POP3 server is not read */
	MIGRATE_POP3_NO = 0,
	/* it is read; failing to read it fails the run (75) */
	MIGRATE_POP3_YES,
	/* it is read when it answers; when it does not, the run goes on
	   without UIDLs (logged) */
	MIGRATE_POP3_AUTO,
};

/* how the source is read (migrate_source_protocol) */
enum migrate_source_protocol {
	MIGRATE_SOURCE_PROTOCOL_IMAP = 0,
	/* the source has POP3 only: its INBOX is copied from the POP3
	   server, by UIDL */
	MIGRATE_SOURCE_PROTOCOL_POP3,
	/* IMAP, unless the account was migrated over POP3 only before, or
	   (an account never migrated) the IMAP port refuses connections:
	   then POP3 only */
	MIGRATE_SOURCE_PROTOCOL_AUTO,
};

enum migrate_gmail_mode {
	/* when the source lists [Gmail]/ or [Google Mail]/ folders */
	MIGRATE_GMAIL_AUTO = 0,
	MIGRATE_GMAIL_YES,
	MIGRATE_GMAIL_NO,
};

/* how the source is logged in to: the password, or an OAuth2 access token
   given as the password with SASL XOAUTH2 or OAUTHBEARER */
enum migrate_source_auth {
	MIGRATE_SOURCE_AUTH_PASSWORD = 0,
	MIGRATE_SOURCE_AUTH_XOAUTH2,
	MIGRATE_SOURCE_AUTH_OAUTHBEARER,
};

/* where the access token comes from when no source password gives it */
enum migrate_oauth2_grant {
	MIGRATE_OAUTH2_GRANT_NONE = 0,
	/* migrate_source_oauth2_token_command */
	MIGRATE_OAUTH2_GRANT_COMMAND,
	/* Microsoft's client-credentials grant: client id and secret, one
	   token for every mailbox */
	MIGRATE_OAUTH2_GRANT_CLIENT_CREDENTIALS,
	/* Google's service account with domain-wide delegation: a JWT
	   assertion signed with its key, one token per mailbox */
	MIGRATE_OAUTH2_GRANT_SERVICE_ACCOUNT,
};

enum migrate_ssl_mode {
	MIGRATE_SSL_NO,
	MIGRATE_SSL_IMAPS,
	MIGRATE_SSL_STARTTLS,
};

struct migrate_settings {
	const char *source_host;
	unsigned int source_port;
	enum migrate_ssl_mode source_ssl;
	bool source_ssl_verify;
	/* the name the server's certificate is verified against while
	   connecting to source_host, an IP address; NULL = source_host */
	const char *source_ssl_hostname;
	/* not a setting: the certificate pinned for the source (doveadm
	   migrate check --pin, kept with the domain), whose SHA-256 every
	   connection to it must show, verified or not; NULL: none */
	const char *source_ssl_pin;
	const char *source_user;
	const char *source_master_user;
	/* migrate_source_password, or after
	   migrate_settings_read_password_file() the first line of
	   source_password_file; never logged */
	const char *source_password;
	/* migrate_source_password_file, not read by migrate_settings_read() */
	const char *source_password_file;
	const char *source_prefix;
	unsigned int source_timeout_secs;
	/* read the INBOX's POP3 UIDLs from the source's POP3 server (same
	   host, user, password and TLS mode: pop3s for imaps, STLS for
	   starttls) and keep them with the copies */
	enum migrate_pop3_mode source_pop3;
	/* imap, pop3 (the source has POP3 only: its INBOX is copied from
	   the POP3 server at migrate_source_pop3_port, by UIDL) or auto */
	enum migrate_source_protocol source_protocol;
	unsigned int source_pop3_port;
	/* the SASL mechanism of the logins; with xoauth2 or oauthbearer
	   source_password is an access token */
	enum migrate_source_auth source_auth;
	/* with xoauth2 or oauthbearer and no source_password: the command
	   (an absolute path and its arguments, split at spaces) that prints
	   the access token, run with the source user as its last argument */
	const char *source_oauth2_token_command;
	/* which of the token's sources is set (at most one) */
	enum migrate_oauth2_grant source_oauth2_grant;
	/* the grants': the endpoint (for the service account: its key
	   file's token_uri when unset), the client id, the scope (the
	   grant's default when unset), the root-only files of the secret */
	const char *source_oauth2_token_url;
	const char *source_oauth2_client_id;
	const char *source_oauth2_scope;
	const char *source_oauth2_client_secret_file;
	const char *source_oauth2_service_account_file;
	/* not a setting: the client secret, or the service account's JSON
	   key, read from its file by doveadm migrate as root; never
	   logged */
	const char *source_oauth2_secret;
	/* not a setting: the client-credentials grant's token as doveadm
	   migrate found it in its cache or obtained it as root (shared by
	   the accounts of the domain), when and until when; NULL: none */
	const char *source_oauth2_initial_token;
	time_t source_oauth2_initial_obtained, source_oauth2_initial_expires;
	/* ... or why the grant failed there (and its code, an enum
	   migrate_error): the run does not ask again */
	const char *source_oauth2_initial_error;
	int source_oauth2_initial_error_code;
	/* retries of a run that lost the source, and the first delay */
	unsigned int retries;
	unsigned int retry_delay_secs;

	const char *include;
	const char *exclude;
	bool special_use;
	/* Gmail's labels: see migrate-sync.c */
	enum migrate_gmail_mode gmail;
	bool subscriptions;
	unsigned int max_delete_percent;

	unsigned int batch_messages;
	uoff_t batch_size;
	unsigned int prefetch;
	const char *state_dir;
	char escape_char;
	bool fsync;
	/* read by doveadm migrate as root, before the user exists; here so
	   that a bad value is reported like any other */
	unsigned int workers;
	/* the connections one account's run may open to the source, 0: no
	   bound (2 per process: the storage's and our own; 1: the storage's
	   alone, in one process) */
	unsigned int source_max_connections;
	/* for crash tests: SIGKILL ourselves the debug_kill_count'th time
	   the run reaches step debug_kill_step (NULL: never) */
	const char *debug_kill_step;
	unsigned int debug_kill_count;

	/* doveadm migrate archive */
	unsigned int archive_threshold;
	const char *archive_inbox;
	const char *archive_sent;

	/* bounds against a hostile or broken source */
	uoff_t source_max_line_length;
	/* messages larger than this are left out (never 0) */
	uoff_t max_message_size;
	/* the whole run of one account, 0 = no deadline */
	unsigned int account_timeout_secs;
	/* bytes per second while waiting for the source, measured over
	   each source_timeout_secs of waiting; 0 = not checked */
	uoff_t min_rate;
	unsigned int max_folders;
};

/* Returns the value of a plugin setting, or NULL when unset. */
typedef const char *migrate_settings_lookup_t(const char *key, void *context);

/* Parse all settings.  default_user is used when migrate_source_user is
   unset, home resolves a relative state dir.  Fails with an error naming
   the setting on any bad value; an unset source host or password is an
   error only when require_source is TRUE.  The password file is not
   opened here (see below). */
int migrate_settings_read(pool_t pool, migrate_settings_lookup_t *lookup,
			  void *context, const char *default_user,
			  const char *home, bool require_source,
			  const struct migrate_settings **set_r,
			  const char **error_r);

/* Sets set->source_password to the first line of
   set->source_password_file, read now with the caller's privileges; does
   nothing when no file is set.  Only a sync needs the password: whatever
   else reads the settings never opens the file, so a file that only the
   mail user (or only root) can read breaks nothing but syncs. */
int migrate_settings_read_password_file(pool_t pool,
					struct migrate_settings *set,
					const char **error_r);

/* The secret of the OAuth2 grant that is set: the first line of
   migrate_source_oauth2_client_secret_file, or the whole of
   migrate_source_oauth2_service_account_file (a JSON key), read now with
   the caller's privileges (doveadm migrate: as root, before the user
   exists).  The file must be one only its owner, the caller, can read.
   *secret_r is NULL when neither is set. */
int migrate_settings_read_oauth2_secret(migrate_settings_lookup_t *lookup,
					void *context, pool_t pool,
					const char **secret_r,
					const char **error_r);
/* migrate_workers alone, by the rules of migrate_settings_read(), bounded
   by migrate_source_max_connections (two connections a process): for
   doveadm, which starts the workers before the user exists.  workers_r
   may hold -w's number already (0: none). */
int migrate_settings_read_workers(migrate_settings_lookup_t *lookup,
				  void *context, unsigned int *workers_r,
				  const char **error_r);
const char *migrate_ssl_mode_to_str(enum migrate_ssl_mode mode);
/* "imap", "pop3", "auto", and back (case-insensitive; FALSE for anything
   else): the setting's values, also those of a template row's
   source_protocol and of doveadm migrate domain start --source-protocol */
const char *
migrate_source_protocol_to_str(enum migrate_source_protocol protocol);
/* Whether the source can be logged in to as set: a password (or a token)
   or, with an OAuth2 mechanism, a token command (not checked with
   protocol_only); and OAuth2 over IMAP only.  The error names the
   settings. */
int migrate_settings_check_auth(const struct migrate_settings *set,
				bool protocol_only, const char **error_r);
/* "password", "xoauth2", "oauthbearer", and back (case-insensitive): the
   setting's values, also those of a template row's source_auth */
const char *migrate_source_auth_to_str(enum migrate_source_auth auth);
bool migrate_source_auth_parse(const char *value,
			       enum migrate_source_auth *auth_r);
/* The SASL mechanism of migrate_source_auth ("" for the password: imapc
   chooses, LOGIN or AUTHENTICATE PLAIN) */
const char *migrate_source_auth_mechanism(enum migrate_source_auth auth);
bool migrate_source_protocol_parse(const char *value,
				   enum migrate_source_protocol *protocol_r);

#endif
