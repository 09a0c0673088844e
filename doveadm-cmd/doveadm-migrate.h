#ifndef DOVEADM_MIGRATE_H
#define DOVEADM_MIGRATE_H

#include "doveadm-mail.h"
#include "migrate-source.h"
#include "migrate-credentials.h"
#include "migrate-domain.h"
#include "migrate-accounts.h"

struct migrate_workers;

/* the base of every migrate verb */
struct migrate_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	bool dry_run;
	bool force;
	bool quiet;
	/* -K: the source credentials came on stdin (from migrate batch) */
	bool credentials_stdin;
	/* from stdin, or the credential store for the current user */
	struct migrate_credentials *credentials;
	/* --mirror: refuse to run the final sync instead */
	bool mirror;
	/* --maxage for the final sync */
	unsigned int maxage_days;
	/* the current user's domain: its phase, looked up as root */
	const char *domain;
	enum migrate_domain_phase domain_phase;
	/* its certificate name for sources given by IP address and its
	   pinned certificates (migrate-domain.h); a worker has them from
	   its owner */
	const char *domain_tls_name;
	ARRAY_TYPE(migrate_domain_pin) domain_pins;
	/* how its sources are read (domain start --source-protocol), NULL:
	   migrate_source_protocol */
	const char *domain_protocol;
	/* the OAuth2 grant's secret (migrate_settings_read_oauth2_secret()),
	   read as root; NULL: none */
	const char *oauth2_secret;
	/* the client-credentials grant's token shared by the domain's
	   accounts (doveadm-migrate-oauth2.c); NULL: none */
	const char *oauth2_token;
	time_t oauth2_token_obtained, oauth2_token_expires;
	/* the endpoint refused the grant: why, and the code */
	const char *oauth2_token_error;
	int oauth2_token_error_code;
	/* -R: the file descriptor for each user's result record
	   (doveadm-migrate-record.h), -1 without */
	int record_fd;
	/* -R given to a doveadm server (the command came through the
	   doveadm protocol, from a proxy or "doveadm -S"): the record is
	   the one printed field, which the client writes on its -R */
	bool record_print;
	/* -C: the source connections this run may hold
	   (migrate_source_max_connections, from batch's limit per host);
	   0: the setting's */
	unsigned int source_connections;
	/* -w: worker processes per account (1 = none, 0 = not given) */
	unsigned int workers_count;
	/* started as root in prerun, for the current user */
	struct migrate_workers *workers;
	/* -A, -F or a -u mask with doveadm sending users' commands to
	   their backends: doveadm's own next-user function, which ours
	   wraps to give each command the user's stored credentials */
	int (*next_user)(struct doveadm_mail_cmd_context *ctx,
			 const char **username_r);
};

extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_sync;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_batch;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_check;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_domain_start;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_domain_cutover;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_domain_finish;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_domain_status;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_worker;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_archive;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_index;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_prepare;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_accounts;

/* The domain store from doveadm's configuration (migrate_domain_dict);
   the default file is created 0640 root:<mail_gid> (0600 without one). */
int migrate_cmd_domain_store_open(struct migrate_domain_store **store_r,
				  const char **error_r);
/* From the module's init, before doveadm reads its settings: the mail
   settings the domain store needs (mail_gid). */
void migrate_cmd_domain_settings_register(void);

/* Record the failure of one user: the exit code follows the error that
   matters most over all users (migrate_exit_code_merge()). */
void migrate_cmd_failed(struct migrate_cmd_context *ctx,
			enum migrate_error error);

/* This doveadm binary, to run children. */
const char *migrate_cmd_doveadm_path(void);
/* A child doveadm's argv up to the command: "doveadm -c <our config>"
   and our -o settings. */
void migrate_cmd_child_argv_init(ARRAY_TYPE(const_string) *argv);

/* A number parameter (declared CMD_PARAM_STR: doveadm leaves a
   CMD_PARAM_INT64 unset when its value is not a number, so a typo such
   as "--retries 3x" was ignored).  FALSE when it is not given; exits 64
   when it is given and is not a number. */
bool migrate_cmd_param_int64(const struct doveadm_cmd_context *cctx,
			     const char *name, int64_t *value_r);

/* Early in a verb that reads passwords (a template, the credential store,
   -K), and again after a change of user: no core dump, not dumpable
   (migrate_credentials_protect_process()); exits 70 when that fails. */
void migrate_cmd_protect_secrets(const char *cmd_name);
/* Write a report file atomically, 0600 (it names the customer's accounts
   and folders); logs the error. */
int migrate_cmd_write_report(const char *cmd_name, const char *path,
			     const string_t *data);
struct migrate_accounts;
struct migrate_accounts_hasher;
/* doveadm migrate accounts' SQL store (driver e.g. "pgsql"). */
int migrate_accounts_sql_apply(const char *driver, const char *connect,
			       const struct migrate_accounts *accounts,
			       const struct migrate_accounts_hasher *hasher,
			       bool update, bool dry_run, pool_t pool,
			       ARRAY_TYPE(migrate_account_report) *reports,
			       const char **error_r);
/* After a store: look up through the running Dovecot's auth, as doveadm
   user does (for the imap service), every account the store now
   holds as the template says (created, updated, unchanged), flushing the
   auth cache of those written first.  A failing lookup makes the row
   MIGRATE_ACCOUNT_FAILED with the reason (store_hint added to "unknown
   user": what the userdb should read).  Returns 0, or -1 when auth is not
   running: those rows are then MIGRATE_ACCOUNT_UNVERIFIED, and error_r
   says why. */
int migrate_accounts_verify(ARRAY_TYPE(migrate_account_report) *reports,
			    const char *store_hint, pool_t pool,
			    const char **error_r);

/* A plugin {} setting of doveadm's configuration, NULL when unset. */
const char *migrate_cmd_plugin_setting(const char *name);

void doveadm_migrate_plugin_init(struct module *module);
void doveadm_migrate_plugin_deinit(void);

/* doveadm-migrate-oauth2.c: as root, the domain's app token of the
   client-credentials grant set names, from the cache or asked for now
   (ctx->oauth2_token; NULL on any failure: the run asks itself). */
struct mail_storage_service_user;
struct migrate_settings;
void migrate_cmd_oauth2_app_token(struct migrate_cmd_context *ctx,
				  struct mail_storage_service_user *service_user,
				  const struct migrate_settings *set);

#endif
