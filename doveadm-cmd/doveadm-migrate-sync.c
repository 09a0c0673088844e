/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "mail-user.h"
#include "array.h"
#include "str.h"
#include "strnum.h"
#include "strescape.h"
#include "safe-memset.h"
#include "safe-mkstemp.h"
#include "randgen.h"
#include "migrate-json.h"
#include "migrate-file.h"
#include "istream.h"
#include "ostream.h"
#include "master-service.h"
#include "master-service-settings.h"
#include "mail-storage-service.h"
#include "doveadm-print.h"
#include "doveadm-settings.h"
#include "migrate-plugin.h"
#include "migrate-settings.h"
#include "migrate-tls.h"
#include "migrate-sync.h"
#include "migrate-workers.h"
#include "doveadm-migrate-record.h"
#include "doveadm-migrate.h"
#include "doveadm-migrate-progress.h"

#include <unistd.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <sys/prctl.h>

/* -K: a few hundred bytes; the credential file's own bound */
#define MIGRATE_CREDENTIALS_INPUT_MAX 65536

/* How a run reads its source: the settings of its passes (the user's,
   with the protocol migrate_sync_choose_protocol() picks for the pass),
   and for the summary and the reports the protocol ("imap" or "pop3"
   once a pass tried, "-" when the run did not get that far) and, when
   migrate_source_protocol = auto chose it, why. */
struct migrate_cmd_protocol {
	struct migrate_settings pass_set;
	const char *name;
	const char *why;
};

/* One summary row per user, failed ones included. */
static void
cmd_migrate_sync_print(struct mail_user *user, const char *result,
		       const struct migrate_sync_stats *stats,
		       const char *mode, const char *protocol)
{
	doveadm_print(user->username);
	doveadm_print(result);
	doveadm_print_num(stats->folders);
	doveadm_print_num(stats->folders_unchanged);
	doveadm_print_num(stats->folders_created);
	doveadm_print_num(stats->folders_renamed);
	doveadm_print_num(stats->folders_deleted);
	doveadm_print_num(stats->messages_copied);
	doveadm_print_num(stats->messages_updated);
	doveadm_print_num(stats->messages_deleted);
	doveadm_print_num(stats->messages_skipped);
	doveadm_print_num(stats->messages_foreign);
	doveadm_print_num(stats->messages_recovered);
	doveadm_print_num(stats->flags_dropped);
	doveadm_print_num(stats->deletes_withheld);
	doveadm_print_num(stats->bytes_copied);
	doveadm_print(t_strdup_printf("%u.%03u", stats->total_msecs / 1000,
				      stats->total_msecs % 1000));
	doveadm_print(mode);
	doveadm_print_num(stats->retries);
	doveadm_print_num(stats->messages_rejected);
	doveadm_print_num(stats->messages_uid_changed);
	doveadm_print_num(stats->folders_uid_changed);
	doveadm_print_num(stats->messages_pop3_uidl);
	doveadm_print_num(stats->messages_pop3_unmatched);
	doveadm_print_num(stats->messages_pop3_order_differs);
	doveadm_print(protocol);
}

/* migrate_source_protocol: the template row's, else the domain's, else
   the setting. */
static int
migrate_cmd_settings_protocol(struct migrate_cmd_context *ctx,
			      struct migrate_settings *set,
			      const char **error_r)
{
	const struct migrate_credentials *cred = ctx->credentials;
	const char *value = cred != NULL && cred->source_protocol != NULL ?
		cred->source_protocol : ctx->domain_protocol;

	/* the credentials' was checked when they were read */
	if (value != NULL &&
	    !migrate_source_protocol_parse(value, &set->source_protocol)) {
		*error_r = t_strdup_printf("The source protocol of domain %s "
			"is not imap, pop3 or auto: %s (doveadm migrate "
			"domain start --source-protocol)", ctx->domain, value);
		return -1;
	}
	return 0;
}

/* The user's settings; the template's source account, when there is one,
   replaces the configured one.  Otherwise the configured password file is
   read here, as the mail user: a sync is what needs it.  The certificate
   name of a source given by IP address is the template row's, else the
   domain's, else migrate_source_ssl_hostname for the configured host
   (migrate_tls_name_choose()); the pin is the domain's for the source;
   the protocol as migrate_cmd_settings_protocol() says. */
static int
migrate_cmd_settings(struct migrate_cmd_context *ctx, struct mail_user *user,
		     const struct migrate_settings **set_r,
		     const char **error_r)
{
	const struct migrate_credentials *cred = ctx->credentials;
	const struct migrate_domain_pin *pin;
	const struct migrate_settings *set;
	struct migrate_settings *new_set;

	if (migrate_user_settings_read(user, cred == NULL, &set, error_r) < 0)
		return -1;
	new_set = p_new(user->pool, struct migrate_settings, 1);
	*new_set = *set;
	if (cred == NULL) {
		if (migrate_settings_read_password_file(user->pool, new_set,
							error_r) < 0)
			return -1;
	} else {
		new_set->source_host = p_strdup(user->pool, cred->source_host);
		if (cred->source_port != 0)
			new_set->source_port = cred->source_port;
		new_set->source_user = p_strdup(user->pool, cred->source_user);
		new_set->source_password = p_strdup(user->pool,
						    cred->source_password);
		/* the credentials' was checked when they were read */
		if (cred->source_auth != NULL) {
			(void)migrate_source_auth_parse(cred->source_auth,
						&new_set->source_auth);
		}
	}
	/* a certificate name only where there is a certificate */
	new_set->source_ssl_hostname = set->source_ssl == MIGRATE_SSL_NO ?
		NULL : p_strdup(user->pool,
		migrate_tls_name_choose(new_set->source_host,
			cred == NULL ? NULL : cred->source_tls_name,
			ctx->domain_tls_name, set->source_host,
			set->source_ssl_hostname));
	pin = new_set->source_host == NULL ? NULL :
		migrate_domain_pin_find(&ctx->domain_pins,
			migrate_tls_source_key(new_set->source_host,
					       new_set->source_port));
	if (pin != NULL)
		new_set->source_ssl_pin = p_strdup(user->pool, pin->sha256);
	if (migrate_cmd_settings_protocol(ctx, new_set, error_r) < 0)
		return -1;
	new_set->source_oauth2_secret = ctx->oauth2_secret;
	new_set->source_oauth2_initial_token = ctx->oauth2_token;
	new_set->source_oauth2_initial_obtained = ctx->oauth2_token_obtained;
	new_set->source_oauth2_initial_expires = ctx->oauth2_token_expires;
	new_set->source_oauth2_initial_error = ctx->oauth2_token_error;
	new_set->source_oauth2_initial_error_code = ctx->oauth2_token_error_code;
	/* a template row's login: a password, or a token (given, or the
	   token command's) */
	if (cred != NULL &&
	    migrate_settings_check_auth(new_set, FALSE, error_r) < 0)
		return -1;
	*set_r = new_set;
	return 0;
}

static int
cmd_migrate_sync_read_store(struct migrate_cmd_context *ctx,
			    const char *username, const char **error_r);
static void
cmd_migrate_sync_start_workers(struct migrate_cmd_context *ctx,
			       struct mail_storage_service_user *service_user,
			       const char *username);

/* The user's domain: its phase, its certificate name for sources given by
   IP address and its pins (as root). */
static int
cmd_migrate_sync_read_domain(struct migrate_cmd_context *ctx,
			     const char *username, const char **error_r)
{
	struct migrate_domain_store *store = NULL;
	struct migrate_domain domain;
	const char *error;
	int ret = 0;

	ctx->domain = p_strdup(ctx->ctx.pool, migrate_user_domain(username));
	ctx->domain_phase = MIGRATE_DOMAIN_NONE;
	ctx->domain_tls_name = NULL;
	ctx->domain_protocol = NULL;
	array_clear(&ctx->domain_pins);
	if (ctx->domain[0] == '\0')
		return 0;

	if (migrate_cmd_domain_store_open(&store, &error) < 0 ||
	    (ret = migrate_domain_lookup(store, ctx->domain, ctx->ctx.pool,
					 &domain, &error)) < 0 ||
	    migrate_domain_pins(store, ctx->domain, ctx->ctx.pool,
				&ctx->domain_pins, &error) < 0) {
		migrate_domain_store_close(&store);
		*error_r = t_strdup_printf("migrate: %s: %s", username, error);
		return -1;
	}
	migrate_domain_store_close(&store);
	if (ret > 0) {
		ctx->domain_phase = domain.phase;
		ctx->domain_tls_name = domain.source_tls_name;
		ctx->domain_protocol = domain.source_protocol;
	}
	return 0;
}

static const char *migrate_cmd_user_set_lookup(const char *key, void *context);

/* The OAuth2 grant's secret file, which only root may read (as root). */
static int
cmd_migrate_sync_read_oauth2_secret(struct migrate_cmd_context *ctx,
				    struct mail_storage_service_user *service_user,
				    const char *username, const char **error_r)
{
	const struct mail_user_settings *user_set =
		mail_storage_service_user_get_set(service_user)[0];
	const char *error;

	ctx->oauth2_secret = NULL;
	if (migrate_settings_read_oauth2_secret(migrate_cmd_user_set_lookup,
			(void *)user_set, ctx->ctx.pool, &ctx->oauth2_secret,
			&error) < 0) {
		*error_r = t_strdup_printf("migrate: %s: %s", username, error);
		ctx->ctx.exit_code = EX_CONFIG;
		return -1;
	}
	return 0;
}

/* The client-credentials grant's token the domain's accounts share, when
   this account logs in with it (as root). */
static void
cmd_migrate_sync_app_token(struct migrate_cmd_context *ctx,
			   struct mail_storage_service_user *service_user,
			   const char *username)
{
	const struct mail_user_settings *user_set =
		mail_storage_service_user_get_set(service_user)[0];
	const struct migrate_credentials *cred = ctx->credentials;
	const struct migrate_settings *set;
	enum migrate_source_auth auth;
	const char *password, *error;

	ctx->oauth2_token = NULL;
	ctx->oauth2_token_error = NULL;
	if (ctx->oauth2_secret == NULL ||
	    migrate_settings_read(pool_datastack_create(),
				  migrate_cmd_user_set_lookup, (void *)user_set,
				  username, "/", FALSE, &set, &error) < 0)
		return;
	auth = set->source_auth;
	password = set->source_password;
	if (cred != NULL) {
		password = cred->source_password;
		if (cred->source_auth != NULL)
			(void)migrate_source_auth_parse(cred->source_auth, &auth);
	}
	if (auth == MIGRATE_SOURCE_AUTH_PASSWORD ||
	    (password != NULL && password[0] != '\0'))
		return;
	migrate_cmd_oauth2_app_token(ctx, service_user, set);
}

/* As root, before the user's privileges are taken: the domain's phase, the
   template's credentials for this user when the credential store has
   them, and the worker processes. */
static int cmd_migrate_sync_prerun(struct doveadm_mail_cmd_context *_ctx,
				   struct mail_storage_service_user *service_user,
				   const char **error_r)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);
	const struct mail_storage_service_input *input =
		mail_storage_service_user_get_input(service_user);

	migrate_record_user_begin(input->username);
	if (ctx->source_connections > 0 &&
	    mail_storage_service_user_set_setting(service_user,
			"plugin/"MIGRATE_SETTING_SOURCE_MAX_CONNECTIONS,
			dec2str(ctx->source_connections), error_r) < 0)
		return -1;
	if (cmd_migrate_sync_read_domain(ctx, input->username, error_r) < 0)
		return -1;

	if (!ctx->credentials_stdin) {
		if (cmd_migrate_sync_read_store(ctx, input->username,
						error_r) < 0)
			return -1;
	}
	if (cmd_migrate_sync_read_oauth2_secret(ctx, service_user,
						input->username, error_r) < 0)
		return -1;
	cmd_migrate_sync_app_token(ctx, service_user, input->username);
	cmd_migrate_sync_start_workers(ctx, service_user, input->username);
	return 0;
}

/* The template's credentials for this user, when the credential store
   has them (as root). */
static int
cmd_migrate_sync_read_store(struct migrate_cmd_context *ctx,
			    const char *username, const char **error_r)
{
	const struct master_service_settings *mset =
		master_service_settings_get(master_service);
	struct migrate_credentials cred;
	const char *error;
	int ret;

	ctx->credentials = NULL;
	ret = migrate_credentials_read(migrate_credentials_dir(mset->state_dir),
				       username, ctx->ctx.pool, &cred, &error);
	if (ret < 0) {
		*error_r = t_strdup_printf("migrate: %s: Credential store: %s",
					   username, error);
		return -1;
	}
	if (ret > 0) {
		ctx->credentials = p_new(ctx->ctx.pool,
					 struct migrate_credentials, 1);
		*ctx->credentials = cred;
	}
	return 0;
}

static const char *migrate_cmd_user_set_lookup(const char *key, void *context)
{
	const struct mail_user_settings *user_set = context;

	return mail_user_set_plugin_getenv(user_set, key);
}

/* For a worker's first line: the domain's certificate name and pins,
   "TLS" <name> <count> (<source> <sha256>)..., each field followed by a
   tab. */
static void
cmd_migrate_worker_tls_append(string_t *dest,
			      const struct migrate_cmd_context *ctx)
{
	const struct migrate_domain_pin *pin;

	str_append(dest, "TLS\t");
	if (ctx->domain_tls_name != NULL)
		str_append_tabescaped(dest, ctx->domain_tls_name);
	str_printfa(dest, "\t%u\t", array_count(&ctx->domain_pins));
	array_foreach(&ctx->domain_pins, pin) {
		str_append_tabescaped(dest, pin->source);
		str_append_c(dest, '\t');
		str_append_tabescaped(dest, pin->sha256);
		str_append_c(dest, '\t');
	}
}

/* The next tab-separated field of *line, unescaped; *line moves past it. */
static const char *cmd_migrate_line_field(const char **line)
{
	const char *p = strchr(*line, '\t'), *field;

	if (p == NULL) {
		field = *line;
		*line += strlen(*line);
	} else {
		field = t_strdup_until(*line, p);
		*line = p + 1;
	}
	return t_str_tabunescape(field);
}

/* The worker's side of cmd_migrate_worker_tls_append(). */
static int
cmd_migrate_worker_tls_read(struct migrate_cmd_context *ctx,
			    const char **line)
{
	struct migrate_domain_pin *pin;
	unsigned int i, count;
	const char *name;

	if (!str_begins(*line, "TLS\t"))
		return -1;
	*line += 4;
	name = cmd_migrate_line_field(line);
	ctx->domain_tls_name = name[0] == '\0' ? NULL :
		p_strdup(ctx->ctx.pool, name);
	if (str_to_uint(cmd_migrate_line_field(line), &count) < 0)
		return -1;
	for (i = 0; i < count; i++) {
		pin = array_append_space(&ctx->domain_pins);
		pin->source = p_strdup(ctx->ctx.pool,
				       cmd_migrate_line_field(line));
		pin->sha256 = p_strdup(ctx->ctx.pool,
				       cmd_migrate_line_field(line));
	}
	return 0;
}

/* As root: the user's worker processes (migrate-workers.h), which copy
   large folders while this process goes on with the others.  Without
   them (a failure to start one included) this process copies
   everything. */
static void
cmd_migrate_sync_start_workers(struct migrate_cmd_context *ctx,
			       struct mail_storage_service_user *service_user,
			       const char *username)
{
	const struct mail_user_settings *user_set =
		mail_storage_service_user_get_set(service_user)[0];
	ARRAY_TYPE(const_string) argv;
	unsigned int i, count = ctx->workers_count;
	const char *arg, *error;
	string_t *first_line;

	if (ctx->workers != NULL)
		migrate_workers_destroy(&ctx->workers);
	if (migrate_settings_read_workers(migrate_cmd_user_set_lookup,
					  (void *)user_set, &count,
					  &error) < 0) {
		/* the settings check names it again, with the user */
		count = 1;
	}
	if (count <= 1 || ctx->dry_run ||
	    ctx->domain_phase == MIGRATE_DOMAIN_FINISHED)
		return;

	/* our PID: a worker whose owner is gone stops (see below) */
	first_line = t_str_new(256);
	str_printfa(first_line, "%ld\t", (long)getpid());
	cmd_migrate_worker_tls_append(first_line, ctx);
	if (ctx->oauth2_secret != NULL) {
		str_append(first_line, "OAUTH2\t");
		str_append_tabescaped(first_line, ctx->oauth2_secret);
		str_append_c(first_line, '\t');
	}
	if (ctx->oauth2_token != NULL) {
		str_append(first_line, "OAUTH2TOKEN\t");
		str_append_tabescaped(first_line, ctx->oauth2_token);
		str_printfa(first_line, "\t%ld\t%ld\t",
			    (long)ctx->oauth2_token_obtained,
			    (long)ctx->oauth2_token_expires);
	}
	if (ctx->credentials == NULL)
		str_append(first_line, "NOCRED");
	else {
		string_t *blob = t_str_new(256);

		migrate_credentials_serialize(blob, ctx->credentials);
		str_append(first_line, "CRED\t");
		str_append_tabescaped(first_line, str_c(blob));
		safe_memset(str_c_modifiable(blob), 0, str_len(blob));
	}
	migrate_cmd_child_argv_init(&argv);
	array_push_back(&argv, (arg = "migrate", &arg));
	array_push_back(&argv, (arg = "worker", &arg));
	array_push_back(&argv, (arg = "-u", &arg));
	array_push_back(&argv, &username);
	array_append_zero(&argv);

	ctx->workers = migrate_workers_create();
	for (i = 1; i < count; i++) {
		if (migrate_workers_spawn(ctx->workers,
					  migrate_cmd_doveadm_path(),
					  array_front(&argv),
					  str_c(first_line), &error) < 0) {
			i_warning("migrate: %s: Starting a worker: %s",
				  username, error);
			break;
		}
	}
	safe_memset(str_c_modifiable(first_line), 0, str_len(first_line));
}

/* -K: the source credentials, on stdin, or from the doveadm client that
   sent us the command (which got them on its stdin): doveadm's command
   input, which its doveadm protocol carries along with a command it
   sends to the user's backend. */
static void cmd_migrate_sync_read_credentials(struct migrate_cmd_context *ctx)
{
	struct istream *input;
	const unsigned char *data;
	size_t i, size;
	string_t *text;
	const char *error;
	int ret;

	doveadm_mail_get_input(&ctx->ctx);
	input = ctx->ctx.cmd_input;
	i_stream_set_max_buffer_size(input, MIGRATE_CREDENTIALS_INPUT_MAX);
	while ((ret = i_stream_read(input)) > 0) ;
	data = i_stream_get_data(input, &size);
	if (input->stream_errno != 0)
		i_fatal_status(EX_TEMPFAIL, "migrate: read(%s) failed: %s",
			       i_stream_get_name(input),
			       i_stream_get_error(input));
	if (ret == -2)
		i_fatal_status(EX_USAGE, "migrate: %s: credentials too large",
			       i_stream_get_name(input));
	if (size == 0) {
		/* the node that sent the command has none for the user
		   (cmd_migrate_sync_next_user()): ours, or the settings */
		ctx->credentials_stdin = FALSE;
		return;
	}
	/* the doveadm protocol's dot encoding ends its lines with CRLF; the
	   credentials escape every CR of their own */
	text = t_str_new(size + 1);
	for (i = 0; i < size; i++) {
		if (data[i] != '\r')
			str_append_c(text, data[i]);
	}
	ctx->credentials = p_new(ctx->ctx.pool, struct migrate_credentials, 1);
	ret = migrate_credentials_parse(i_stream_get_name(input), str_c(text),
					ctx->ctx.pool, ctx->credentials,
					&error);
	safe_memset(str_c_modifiable(text), 0, str_len(text));
	if (ret < 0)
		i_fatal_status(EX_USAGE, "migrate: %s", error);
	/* from the start again, for the doveadm server it may go to */
	i_stream_seek(input, 0);
}

/* -A, -F or a -u mask, run where doveadm sends users' commands to their
   backends (doveadm_port, -S): each command carries the user's
   credentials from this node's store as its input, with -K among its
   options, so that the store of the node that runs the command is the
   one that counts (as batch sends them); an empty input says none are
   stored here (the backend then looks in its own).  A user doveadm runs
   here reads the store itself, as always.  doveadm has one input for all
   the commands it sends, and sends a command queued for a busy
   connection later, with whatever input is current then: so each user's
   command is done before the next one's input is set (the users one
   after the other, as doveadm runs them without backends). */
static int cmd_migrate_sync_next_user(struct doveadm_mail_cmd_context *_ctx,
				      const char **username_r)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);
	const struct master_service_settings *mset =
		master_service_settings_get(master_service);
	struct migrate_credentials cred;
	string_t *blob;
	const char *error;
	uid_t euid;
	int ret;

	doveadm_mail_server_flush();
	if ((ret = ctx->next_user(_ctx, username_r)) <= 0)
		return ret;
	/* a user run here before dropped privileges until its next lookup */
	euid = geteuid();
	if (euid != 0 && seteuid(0) < 0)
		i_fatal("migrate: seteuid(0) failed: %m");
	ret = migrate_credentials_read(migrate_credentials_dir(mset->state_dir),
				       *username_r, pool_datastack_create(),
				       &cred, &error);
	if (euid != 0 && seteuid(euid) < 0)
		i_fatal("migrate: seteuid(%s) failed: %m", dec2str(euid));
	if (ret < 0) {
		i_error("migrate: %s: Credential store: %s", *username_r, error);
		ret = 0;
	}
	blob = t_str_new(256);
	if (ret > 0)
		migrate_credentials_serialize(blob, &cred);
	i_stream_unref(&_ctx->cmd_input);
	_ctx->cmd_input = i_stream_create_copy_from_data(str_data(blob),
							 str_len(blob));
	safe_memset(str_c_modifiable(blob), 0, str_len(blob));
	return 1;
}

static void cmd_migrate_sync_send_credentials(struct migrate_cmd_context *ctx)
{
	const char *const *args = ctx->ctx.full_args;
	ARRAY_TYPE(const_string) new_args;
	const char *arg = "-K";

	if (ctx->ctx.iterate_single_user || ctx->credentials_stdin ||
	    ctx->ctx.cctx->conn_type != DOVEADM_CONNECTION_TYPE_CLI ||
	    (doveadm_settings->doveadm_port == 0 &&
	     doveadm_settings->doveadm_worker_count == 0))
		return;
	p_array_init(&new_args, ctx->ctx.pool, 16);
	array_push_back(&new_args, &arg);
	for (; *args != NULL; args++) {
		/* doveadm sends -F with an empty file name, which the
		   backend then fails to open: the user it sends the command
		   for is the one */
		if (strcmp(args[0], "-F") == 0 && args[1] != NULL) {
			args++;
			continue;
		}
		if (strcmp(args[0], "--") == 0) {
			for (; *args != NULL; args++)
				array_push_back(&new_args, args);
			break;
		}
		array_push_back(&new_args, args);
	}
	array_append_zero(&new_args);
	ctx->ctx.full_args = array_front(&new_args);
	ctx->next_user = ctx->ctx.v.get_next_user;
	ctx->ctx.v.get_next_user = cmd_migrate_sync_next_user;
}

/* The credentials' bytes that doveadm's input stream kept. */
static void cmd_migrate_sync_wipe_credentials(struct migrate_cmd_context *ctx)
{
	struct istream *input = ctx->ctx.cmd_input;
	const unsigned char *data;
	size_t size;

	if (input == NULL || !ctx->credentials_stdin)
		return;
	i_stream_seek(input, 0);
	while (i_stream_read(input) > 0) ;
	data = i_stream_get_data(input, &size);
	safe_memset((void *)data, 0, size);
}

/* -R run by doveadm itself (not a doveadm server): what it prints is the
   record a doveadm server sent back for the user, when doveadm sent the
   command there (doveadm_port and the passdb's proxy fields, or -S):
   it goes to the record's fd as it is, without a title line. */
static void cmd_migrate_sync_record_output(struct migrate_cmd_context *ctx)
{
	doveadm_print_hide_titles = TRUE;
	if (doveadm_print_ostream != NULL)
		o_stream_unref(&doveadm_print_ostream);
	doveadm_print_ostream = o_stream_create_fd(ctx->record_fd, 0);
	o_stream_set_no_error_handling(doveadm_print_ostream, TRUE);
	o_stream_cork(doveadm_print_ostream);
}

static bool
cmd_migrate_sync_report_unchanged(const char *path, const string_t *data)
{
	char buf[4096];
	ssize_t ret;
	bool equal;
	int fd;

	if (str_len(data) > sizeof(buf))
		return FALSE;
	fd = open(path, O_RDONLY);
	if (fd == -1)
		return FALSE;
	ret = read(fd, buf, sizeof(buf));
	equal = ret == (ssize_t)str_len(data) &&
		memcmp(buf, str_data(data), ret) == 0;
	i_close_fd(&fd);
	return equal;
}

/* The result column of the summary row, and of the reports. */
static const char *cmd_migrate_sync_result(enum migrate_error error_code)
{
	return error_code == MIGRATE_ERROR_NONE ? "ok" :
		error_code == MIGRATE_ERROR_REJECTED ? "partial" : "failed";
}

/* report.json's counts and lists of a run that had something to report
   besides its TLS */
static void
cmd_migrate_sync_report_findings(struct migrate_json *json,
				 const struct migrate_sync_report *report,
				 const struct migrate_sync_stats *stats)
{
	const struct migrate_sync_rejected *rej;
	const struct migrate_sync_dropped_keyword *kw;
	const struct migrate_sync_retry *retry;

	migrate_json_uint(json, "copied", stats->messages_copied);
	migrate_json_uint(json, "updated", stats->messages_updated);
	migrate_json_uint(json, "deleted", stats->messages_deleted);
	migrate_json_uint(json, "skipped", stats->messages_skipped);
	migrate_json_uint(json, "rejected", stats->messages_rejected);
	migrate_json_uint(json, "flags_dropped", stats->flags_dropped);
	migrate_json_uint(json, "bytes", stats->bytes_copied);
	migrate_json_uint(json, "uids_changed", stats->messages_uid_changed);
	migrate_json_uint(json, "folders_uids_changed",
			  stats->folders_uid_changed);
	migrate_json_uint(json, "pop3_uidls", stats->messages_pop3_uidl);
	migrate_json_uint(json, "pop3_unmatched",
			  stats->messages_pop3_unmatched);
	migrate_json_uint(json, "pop3_order_differs",
			  stats->messages_pop3_order_differs);
	migrate_json_newline(json);
	migrate_json_array_begin(json, "retries");
	array_foreach(&report->retries, retry) {
		migrate_json_newline(json);
		migrate_json_object_begin(json, NULL);
		migrate_json_uint(json, "delay_secs", retry->delay_secs);
		migrate_json_string(json, "error", retry->error);
		migrate_json_object_end(json);
	}
	migrate_json_array_end(json);
	migrate_json_newline(json);
	migrate_json_array_begin(json, "rejected_messages");
	array_foreach(&report->rejected, rej) {
		migrate_json_newline(json);
		migrate_json_object_begin(json, NULL);
		migrate_json_string(json, "folder", rej->folder);
		migrate_json_uint(json, "uid", rej->uid);
		migrate_json_uint(json, "size", rej->size);
		migrate_json_string(json, "reason", rej->reason);
		migrate_json_object_end(json);
	}
	migrate_json_array_end(json);
	migrate_json_newline(json);
	migrate_json_object_begin(json, "dropped_keywords");
	array_foreach(&report->dropped_keywords, kw) {
		migrate_json_newline(json);
		migrate_json_uint(json, kw->keyword, kw->count);
	}
	migrate_json_object_end(json);
	migrate_json_newline(json);
}

/* <state_dir>/report.json: the last run's result with what the summary
   row cannot hold (each message left out, each keyword dropped, each
   retry) and how it reached its source, when it has any of them, failed,
   or reached its source without TLS or without verifying its
   certificate; a clean run removes it.  A run whose only finding is its
   TLS records no counts, so that an unchanged re-run writes nothing.
   Written as the mail user, like the state. */
static void
cmd_migrate_sync_write_report(struct migrate_cmd_context *ctx,
			      struct mail_user *user,
			      const struct migrate_settings *set,
			      const struct migrate_sync_report *report,
			      const struct migrate_sync_stats *stats,
			      const struct migrate_record_tls *tls,
			      const struct migrate_cmd_protocol *protocol,
			      enum migrate_error error_code, const char *error)
{
	string_t *str = t_str_new(1024);
	struct migrate_json json;
	const char *path, *errstr;
	bool findings, auto_pop3;

	if (access(set->state_dir, F_OK) < 0) {
		/* the run failed before anything was recorded */
		return;
	}
	path = t_strconcat(set->state_dir, "/report.json", NULL);
	findings = error_code != MIGRATE_ERROR_NONE ||
		array_count(&report->retries) > 0 ||
		array_count(&report->dropped_keywords) > 0 ||
		stats->messages_uid_changed > 0 ||
		stats->messages_pop3_order_differs > 0;
	/* auto reading a source over POP3 only is on record */
	auto_pop3 = protocol->why != NULL &&
		strcmp(protocol->name, "pop3") == 0;
	if (!findings && tls->insecure == NULL && !auto_pop3) {
		/* nothing to report: a clean run leaves no report behind
		   (and an unchanged re-run writes nothing) */
		i_unlink_if_exists(path);
		return;
	}

	migrate_json_init(&json, str);
	migrate_json_object_begin(&json, NULL);
	migrate_json_string(&json, "user", user->username);
	migrate_json_string(&json, "mode",
			    ctx->domain_phase == MIGRATE_DOMAIN_CUTOVER ?
			    "final" : "mirror");
	migrate_json_string(&json, "result", cmd_migrate_sync_result(error_code));
	migrate_json_int(&json, "exit_code",
			 migrate_error_to_exit_code(error_code));
	migrate_json_string(&json, "error", error);
	migrate_json_string(&json, "source_protocol", protocol->name);
	migrate_json_string(&json, "source_protocol_why", protocol->why);
	migrate_json_newline(&json);
	if (findings)
		cmd_migrate_sync_report_findings(&json, report, stats);
	migrate_record_tls_append(&json, "tls", tls);
	migrate_json_object_end(&json);
	str_append_c(str, '\n');

	if (cmd_migrate_sync_report_unchanged(path, str)) {
		/* an unchanged re-run writes nothing */
		return;
	}
	if (migrate_file_replace(path, str_data(str), str_len(str), 0600,
				 (uid_t)-1, (gid_t)-1, &errstr) < 0)
		i_error("migrate: %s: %s", user->username, errstr);
}

/* When the account's run must end (migrate_account_timeout), 0 never. */
static time_t cmd_migrate_sync_deadline(const struct migrate_settings *set)
{
	return set->account_timeout_secs == 0 ? 0 :
		time(NULL) + set->account_timeout_secs;
}

/* Whether to try again after a pass lost the source, and after how long
   (waited here); FALSE: give up with this pass' error. */
static bool
cmd_migrate_sync_retry(struct migrate_cmd_context *ctx, struct mail_user *user,
		       const struct migrate_settings *set,
		       struct migrate_sync_report *report,
		       struct migrate_sync_stats *stats, time_t deadline,
		       unsigned int *delay, const char *error)
{
	unsigned int sleep_secs;

	/* a dry run is a quick look: it does not wait */
	if (ctx->dry_run)
		return FALSE;
	if (stats->retries >= set->retries) {
		if (set->retries > 0) {
			i_error("migrate: %s: Giving up after %u retr%s: %s",
				user->username, stats->retries,
				stats->retries == 1 ? "y" : "ies", error);
		}
		return FALSE;
	}
	/* a little jitter keeps the accounts of a batch that lost the
	   server together from coming back together */
	sleep_secs = *delay + i_rand_limit(*delay / 4 + 1);
	if (deadline != 0 && time(NULL) + sleep_secs >= deadline) {
		i_error("migrate: %s: Giving up: a retry would start after "
			"%s: %s", user->username,
			MIGRATE_SETTING_ACCOUNT_TIMEOUT, error);
		return FALSE;
	}
	stats->retries++;
	e_warning(event_create_passthrough(user->event)->
		  set_name("migrate_retry")->
		  add_int("retry", stats->retries)->
		  add_int("retries", set->retries)->
		  add_int("delay_secs", sleep_secs)->
		  add_str("error", error)->event(),
		  "migrate: %s: Retry %u of %u in %u s, going on from what "
		  "is copied: %s", user->username, stats->retries,
		  set->retries, sleep_secs, error);
	array_push_back(&report->retries, &((struct migrate_sync_retry){
		.delay_secs = sleep_secs,
		.error = p_strdup(report->pool, error)
	}));
	if (sleep_secs > 0)
		sleep(sleep_secs);
	*delay = I_MIN(*delay * 2, MIGRATE_MAX_RETRY_DELAY_SECS);
	return TRUE;
}

static void
cmd_migrate_sync_options(struct migrate_cmd_context *ctx,
			 struct migrate_sync_report *report,
			 struct migrate_cmd_progress *progress,
			 struct migrate_sync_options *opts_r)
{
	i_zero(opts_r);
	opts_r->dry_run = ctx->dry_run;
	opts_r->force = ctx->force;
	if (!ctx->quiet) {
		migrate_cmd_progress_init(progress);
		opts_r->progress_callback = migrate_cmd_progress_show;
		opts_r->progress_context = progress;
	}
	opts_r->mode = ctx->domain_phase == MIGRATE_DOMAIN_CUTOVER ?
		MIGRATE_SYNC_MODE_FINAL : MIGRATE_SYNC_MODE_MIRROR;
	opts_r->maxage_days = ctx->maxage_days;
	opts_r->workers = ctx->workers;
	opts_r->report = report;
}

/* The pass' source, read with the protocol migrate_sync_choose_protocol()
   picks from the account's state (its settings are pass_set's, a copy of
   set with that protocol); protocol_r says how it is read and why. */
static int
cmd_migrate_sync_source_init(struct migrate_cmd_context *ctx,
			     struct mail_user *user,
			     const struct migrate_settings *set,
			     time_t deadline,
			     struct migrate_cmd_protocol *protocol_r,
			     struct migrate_source_peer *peer,
			     struct migrate_source **source_r,
			     enum migrate_error *error_code_r,
			     const char **error_r)
{
	struct doveadm_mail_cmd_context *_ctx = &ctx->ctx;
	enum migrate_source_protocol protocol;
	const char *why;
	int ret;

	if (migrate_sync_choose_protocol(set, &protocol, &why, error_r) < 0) {
		protocol_r->name = migrate_source_protocol_to_str(protocol);
		*error_code_r = MIGRATE_ERROR_CONFIG;
		return -1;
	}
	protocol_r->pass_set = *set;
	protocol_r->pass_set.source_protocol = protocol;
	ret = migrate_source_init(_ctx->storage_service,
				  _ctx->cur_service_user, user,
				  &protocol_r->pass_set, 0, deadline, peer,
				  source_r, error_code_r, error_r);
	protocol_r->name = peer->pop3_only ? "pop3" : "imap";
	protocol_r->why = peer->protocol_why != NULL ? peer->protocol_why :
		why != NULL ? p_strdup(user->pool, why) : NULL;
	return ret;
}

/* Sync passes until one succeeds, fails for good, or the retries for a
   lost source run out.  Each pass starts with a new connection and goes
   on from what the state says is copied. */
static enum migrate_error
cmd_migrate_sync_passes(struct migrate_cmd_context *ctx,
			struct mail_user *user,
			const struct migrate_settings *set,
			struct migrate_sync_report *report,
			struct migrate_sync_stats *stats,
			struct migrate_source_peer *peer,
			struct migrate_cmd_protocol *protocol,
			const char **error_r)
{
	struct migrate_sync_options opts;
	struct migrate_cmd_progress progress;
	struct migrate_sync_stats pass;
	struct migrate_source *source;
	enum migrate_error error_code;
	unsigned int delay = set->retry_delay_secs;
	time_t deadline = cmd_migrate_sync_deadline(set);
	const char *error;

	cmd_migrate_sync_options(ctx, report, &progress, &opts);
	for (;;) {
		i_zero(&pass);
		/* a pass tries again what the last one left out */
		array_clear(&report->rejected);
		if (cmd_migrate_sync_source_init(ctx, user, set, deadline,
						 protocol, peer, &source,
						 &error_code, &error) < 0)
			i_error("migrate: %s: %s", user->username, error);
		else {
			/* the engine logs its own errors */
			if (migrate_sync_run(user, source, &protocol->pass_set,
					     &opts, &pass, &error_code,
					     &error) == 0)
				error_code = MIGRATE_ERROR_NONE;
			if (!ctx->quiet)
				migrate_cmd_progress_finish(&progress);
			/* our own connection's handshakes too */
			migrate_source_get_peer(source, peer);
			migrate_source_deinit(&source);
		}
		migrate_sync_stats_add(stats, &pass);
		*error_r = error_code == MIGRATE_ERROR_NONE ? NULL :
			p_strdup(report->pool, error);
		if (error_code != MIGRATE_ERROR_SOURCE_TEMP ||
		    !cmd_migrate_sync_retry(ctx, user, set, report, stats,
					    deadline, &delay, error))
			return error_code;
	}
}

/* How the run reaches its source, for the record and report.json; a
   connection without TLS, or whose certificate is not verified, is
   warned about in every run. */
static void
cmd_migrate_sync_tls_begin(struct mail_user *user,
			   const struct migrate_settings *set,
			   struct migrate_record_tls *tls_r)
{
	i_zero(tls_r);
	tls_r->host = set->source_host;
	tls_r->port = set->source_port;
	tls_r->mode = migrate_ssl_mode_to_str(set->source_ssl);
	tls_r->pin = set->source_ssl_pin;
	if (set->source_ssl != MIGRATE_SSL_NO) {
		/* without TLS nothing is verified, as nothing */
		tls_r->verify = set->source_ssl_verify;
		tls_r->name = set->source_ssl_hostname;
	}
	if (set->source_ssl == MIGRATE_SSL_NO) {
		tls_r->insecure = MIGRATE_SETTING_SOURCE_SSL" = no";
		i_warning("migrate: %s: The source %s:%u is read without TLS "
			  "(%s): the password and the mail cross the network "
			  "in clear", user->username, set->source_host,
			  set->source_port, tls_r->insecure);
	} else if (!set->source_ssl_verify) {
		tls_r->insecure = MIGRATE_SETTING_SOURCE_SSL_VERIFY" = no";
		i_warning("migrate: %s: The certificate of the source %s:%u "
			  "is not verified (%s): %s", user->username,
			  set->source_host, set->source_port, tls_r->insecure,
			  set->source_ssl_pin != NULL ?
			  t_strdup_printf("only the pinned one (SHA-256 %s) "
					  "is accepted", set->source_ssl_pin) :
			  "anyone on the way could pose as it and read the "
			  "password; pin it with doveadm migrate check --pin");
	}
}

/* Large messages are put together in a file in mail_temp_dir: one the
   account's processes cannot create files in is a settings error, said
   before the source is contacted (a run would fail at its first large
   message, and its retries at theirs).  A full one is not: the run says
   so when it happens (75). */
static int
cmd_migrate_sync_check_temp_dir(struct mail_user *user, const char **error_r)
{
	string_t *path = t_str_new(128);
	int fd;

	mail_user_set_get_temp_prefix(path, user->set);
	fd = safe_mkstemp_hostpid(path, 0600, (uid_t)-1, (gid_t)-1);
	if (fd != -1) {
		i_unlink(str_c(path));
		i_close_fd(&fd);
		return 0;
	}
	switch (errno) {
	case EACCES:
	case EPERM:
	case EROFS:
	case ENOENT:
	case ENOTDIR:
		*error_r = t_strdup_printf("mail_temp_dir=%s: the account's "
			"processes (uid %s) cannot create files there: %s",
			user->set->mail_temp_dir, dec2str(geteuid()),
			strerror(errno));
		return -1;
	default:
		return 0;
	}
}

static int cmd_migrate_sync_run(struct doveadm_mail_cmd_context *_ctx,
				struct mail_user *user)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);
	const struct migrate_settings *set;
	struct migrate_sync_stats stats;
	struct migrate_sync_report *report;
	struct migrate_source_peer peer;
	struct migrate_record_tls tls, *tlsp = NULL;
	struct migrate_cmd_protocol protocol;
	enum migrate_error error_code;
	const char *mode, *error = NULL;

	/* the change of user may have made us dumpable again */
	migrate_cmd_protect_secrets("migrate");
	i_zero(&stats);
	i_zero(&peer);
	i_zero(&protocol);
	protocol.name = "-";
	if (ctx->domain_phase == MIGRATE_DOMAIN_FINISHED) {
		error = t_strdup_printf("The migration of %s is finished; "
					"nothing is synced any more",
					ctx->domain);
	} else if (ctx->domain_phase == MIGRATE_DOMAIN_CUTOVER &&
		   ctx->mirror) {
		error = t_strdup_printf("%s is past cutover: a mirror sync "
			"could delete mail delivered here since. Run without "
			"--mirror for the final sync, which copies what is new "
			"and deletes nothing", ctx->domain);
	} else if (ctx->maxage_days > 0 &&
		   ctx->domain_phase != MIGRATE_DOMAIN_CUTOVER) {
		error = t_strdup_printf("--maxage is only for the final sync, "
			"after doveadm migrate domain cutover %s",
			ctx->domain[0] == '\0' ? "DOMAIN" : ctx->domain);
	} else if (migrate_cmd_settings(ctx, user, &set, &error) < 0) {
		error = t_strdup_printf("Invalid settings: %s", error);
	} else if (cmd_migrate_sync_check_temp_dir(user, &error) < 0) {
		error = t_strdup_printf("Invalid settings: %s", error);
	}
	if (error != NULL) {
		i_error("migrate: %s: %s", user->username, error);
		error_code = MIGRATE_ERROR_CONFIG;
	} else {
		cmd_migrate_sync_tls_begin(user, set, &tls);
		tlsp = &tls;
		report = migrate_sync_report_init();
		protocol.name = migrate_source_protocol_to_str(
			set->source_protocol);
		error_code = cmd_migrate_sync_passes(ctx, user, set, report,
						     &stats, &peer, &protocol,
						     &error);
		tls.cert = peer.cert;
		tls.pin_mismatch = peer.pin_mismatch;
		if (!ctx->dry_run) {
			cmd_migrate_sync_write_report(ctx, user, set, report,
						      &stats, &tls, &protocol,
						      error_code, error);
		}
		/* it lives in the report's pool */
		error = t_strdup(error);
		migrate_sync_report_deinit(&report);
	}
	if (ctx->workers != NULL)
		migrate_workers_destroy(&ctx->workers);
	mode = ctx->dry_run ? "dry-run" :
		ctx->domain_phase == MIGRATE_DOMAIN_CUTOVER ? "final" : "mirror";
	if (ctx->record_fd == -1 && !ctx->record_print) {
		cmd_migrate_sync_print(user,
				       cmd_migrate_sync_result(error_code),
				       &stats, mode, protocol.name);
	}
	migrate_record_user_finish(user, error_code, error, mode, &stats,
				   tlsp == NULL ? NULL : protocol.name, tlsp);
	if (error_code != MIGRATE_ERROR_NONE) {
		migrate_cmd_failed(ctx, error_code);
		return -1;
	}
	return 0;
}

static void cmd_migrate_sync_init(struct doveadm_mail_cmd_context *_ctx,
				  const char *const args[])
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);
	static const char *const fields[] = {
		"user", "result", "folders", "unchanged", "created",
		"renamed", "folders_deleted", "copied", "updated", "deleted",
		"skipped", "foreign", "recovered", "flags_dropped",
		"deletes_withheld",
		"bytes", "seconds", "mode", "retries", "rejected",
		"uids_changed", "folders_uids_changed", "pop3_uidls",
		"pop3_unmatched", "pop3_order_differs", "source_protocol",
	};
	unsigned int i;

	if (args[0] != NULL)
		doveadm_mail_help_name("migrate sync");
	if (ctx->record_fd != -1 || ctx->record_print) {
		migrate_record_writer_init(ctx->record_fd, _ctx->cctx->username);
		if (!ctx->record_print)
			cmd_migrate_sync_record_output(ctx);
		/* the record is the row */
		doveadm_print_header_simple("record");
	} else {
		for (i = 0; i < N_ELEMENTS(fields); i++)
			doveadm_print_header_simple(fields[i]);
	}
	if (ctx->credentials_stdin)
		cmd_migrate_sync_read_credentials(ctx);
	else
		cmd_migrate_sync_send_credentials(ctx);
}

/* optarg, 1..max; else a usage error naming the option */
static unsigned int
cmd_migrate_sync_arg_count(const char *option, const char *arg,
			   unsigned int max)
{
	unsigned int value;

	if (str_to_uint(arg, &value) < 0 || value < 1 || value > max)
		i_fatal_status(EX_USAGE, "migrate: %s: 1..%u: %s",
			       option, max, arg);
	return value;
}

static bool cmd_migrate_sync_parse_arg(struct doveadm_mail_cmd_context *_ctx,
				       int c)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);

	switch (c) {
	case 'n':
		ctx->dry_run = TRUE;
		break;
	case 'f':
		ctx->force = TRUE;
		break;
	case 'q':
		ctx->quiet = TRUE;
		break;
	case 'M':
		ctx->mirror = TRUE;
		break;
	case 'a':
		if (str_to_uint(optarg, &ctx->maxage_days) < 0 ||
		    ctx->maxage_days == 0 || ctx->maxage_days > 36500)
			i_fatal_status(EX_USAGE, "migrate: --maxage: a number "
				       "of days, 1 or more: %s", optarg);
		break;
	case 'K':
		ctx->credentials_stdin = TRUE;
		break;
	case 'R':
		if (_ctx->cctx->conn_type != DOVEADM_CONNECTION_TYPE_CLI) {
			/* our fds are not the client's */
			ctx->record_print = TRUE;
			break;
		}
		if (str_to_int(optarg, &ctx->record_fd) < 0 ||
		    ctx->record_fd < 0 || fcntl(ctx->record_fd, F_GETFD) < 0)
			i_fatal_status(EX_USAGE, "migrate: -R: not an open file "
				       "descriptor: %s", optarg);
		break;
	case 'C':
		ctx->source_connections = cmd_migrate_sync_arg_count("-C",
			optarg, MIGRATE_MAX_SOURCE_CONNECTIONS);
		break;
	case 'w':
		ctx->workers_count = cmd_migrate_sync_arg_count("--workers",
			optarg, MIGRATE_MAX_WORKERS);
		break;
	default:
		return FALSE;
	}
	return TRUE;
}

static void cmd_migrate_sync_deinit(struct doveadm_mail_cmd_context *_ctx)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);

	/* a user whose run never came */
	if (ctx->workers != NULL)
		migrate_workers_destroy(&ctx->workers);
	cmd_migrate_sync_wipe_credentials(ctx);
	if (ctx->record_fd != -1 && doveadm_print_ostream != NULL &&
	    doveadm_print_ostream->offset +
	    o_stream_get_buffer_used_size(doveadm_print_ostream) > 0) {
		/* the run went to a doveadm server, which sent its record */
		migrate_record_user_relayed();
	}
	/* doveadm's own codes (an unknown user, a failed lookup) are
	   documented too; anything else is not ours to exit with */
	_ctx->exit_code = migrate_exit_code_normalize(_ctx->exit_code);
	migrate_record_writer_deinit(_ctx->exit_code != 0 ? _ctx->exit_code :
				     doveadm_exit_code);
}

static struct doveadm_mail_cmd_context *cmd_migrate_sync_alloc(void)
{
	struct migrate_cmd_context *ctx;

	/* the source passwords: from stdin (-K), the credential store or
	   the settings */
	migrate_cmd_protect_secrets("migrate");
	ctx = doveadm_mail_cmd_alloc(struct migrate_cmd_context);
	p_array_init(&ctx->domain_pins, ctx->ctx.pool, 4);
	ctx->ctx.getopt_args = "nfqKMa:w:R:C:";
	ctx->record_fd = -1;
	ctx->ctx.v.parse_arg = cmd_migrate_sync_parse_arg;
	ctx->ctx.v.init = cmd_migrate_sync_init;
	ctx->ctx.v.prerun = cmd_migrate_sync_prerun;
	ctx->ctx.v.run = cmd_migrate_sync_run;
	ctx->ctx.v.deinit = cmd_migrate_sync_deinit;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TAB);
	return &ctx->ctx;
}

#define MIGRATE_SYNC_PARAMS \
DOVEADM_CMD_PARAMS_START \
DOVEADM_CMD_MAIL_COMMON \
DOVEADM_CMD_PARAM('n', "dry-run", CMD_PARAM_BOOL, 0) \
DOVEADM_CMD_PARAM('f', "force", CMD_PARAM_BOOL, 0) \
DOVEADM_CMD_PARAM('q', "quiet", CMD_PARAM_BOOL, 0) \
DOVEADM_CMD_PARAM('M', "mirror", CMD_PARAM_BOOL, 0) \
DOVEADM_CMD_PARAM('a', "maxage", CMD_PARAM_STR, 0) \
DOVEADM_CMD_PARAM('w', "workers", CMD_PARAM_STR, 0) \
DOVEADM_CMD_PARAM('K', "credentials-stdin", CMD_PARAM_BOOL, CMD_PARAM_FLAG_DO_NOT_EXPOSE) \
DOVEADM_CMD_PARAM('R', "result-fd", CMD_PARAM_STR, CMD_PARAM_FLAG_DO_NOT_EXPOSE) \
DOVEADM_CMD_PARAM('C', "source-connections", CMD_PARAM_STR, CMD_PARAM_FLAG_DO_NOT_EXPOSE) \
DOVEADM_CMD_PARAMS_END

struct doveadm_cmd_ver2 doveadm_cmd_migrate_sync = {
	.name = "migrate sync",
	.mail_cmd = cmd_migrate_sync_alloc,
	.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX "[-n] [-f] [-q] [--mirror] [--maxage <days>] [-w <workers>]",
MIGRATE_SYNC_PARAMS
};

struct doveadm_cmd_ver2 doveadm_cmd_migrate = {
	.name = "migrate",
	.mail_cmd = cmd_migrate_sync_alloc,
	.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX "[-n] [-f] [-q] [--mirror] [--maxage <days>] [-w <workers>]",
MIGRATE_SYNC_PARAMS
};

/* The jobs, one a line, until the owner closes our stdin.  A job that
   lost the source leaves it to the next job to connect again (the owner
   decides whether the run retries). */
static int
cmd_migrate_worker_jobs(struct doveadm_mail_cmd_context *_ctx,
			struct mail_user *user,
			const struct migrate_settings *set,
			struct istream *input)
{
	struct migrate_source *source = NULL;
	enum migrate_error error_code;
	/* from its first job on; the owner stops waiting for it at its own
	   deadline, and it dies with the owner */
	time_t deadline = cmd_migrate_sync_deadline(set);
	const char *line, *error;

	while ((line = i_stream_read_next_line(input)) != NULL) T_BEGIN {
		if (source == NULL &&
		    migrate_source_init(_ctx->storage_service,
					_ctx->cur_service_user, user, set,
					MIGRATE_SOURCE_INIT_FLAG_WORKER,
					deadline, NULL, &source,
					&error_code, &error) < 0) {
			i_error("migrate worker: %s", error);
			migrate_sync_worker_fail(STDOUT_FILENO, error_code,
						 error);
		} else if (strcmp(line, MIGRATE_WORKER_LOGIN_LINE) == 0) {
			/* woken before any job: the source was initialized
			   above (the storage logged in, our own connection
			   connects), no answer */
		} else if (migrate_sync_worker_job(user, source, set, line,
						   STDOUT_FILENO) ==
			   MIGRATE_ERROR_SOURCE_TEMP)
			migrate_source_deinit(&source);
	} T_END;
	if (source != NULL)
		migrate_source_deinit(&source);
	if (input->stream_errno != 0) {
		i_error("migrate worker: read(stdin) failed: %s",
			i_stream_get_error(input));
		return -1;
	}
	return 0;
}

/* "doveadm migrate worker -u USER": started by "doveadm migrate" for its
   user, never by hand.  The first line of stdin is the owner's PID, the
   domain's certificate name and pins (cmd_migrate_worker_tls_append())
   the OAuth2 grant's secret when there is one (OAUTH2 <escaped>), and the
   source credentials (<pid> TLS ... [OAUTH2 ...] CRED <escaped
   credentials>, or ... NOCRED), then one job per line. */
static int cmd_migrate_worker_run(struct doveadm_mail_cmd_context *_ctx,
				  struct mail_user *user)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);
	const struct migrate_settings *set;
	struct migrate_settings worker_set;
	struct migrate_credentials cred;
	struct istream *input;
	const char *first_line, *line, *p, *error;
	long owner_pid;
	int ret = -1;

	/* the change of user may have made us dumpable again */
	migrate_cmd_protect_secrets("migrate worker");
	/* a job line lists UIDs: a fragmented folder makes it long */
	input = i_stream_create_fd(STDIN_FILENO, 16*1024*1024);
	line = first_line = i_stream_read_next_line(input);
	if (line == NULL) {
		/* the owner had nothing for us */
		i_stream_unref(&input);
		return 0;
	}
	/* the owner alone records what we copy: when it dies, a later run
	   must not find us still copying.  The signal is set only now, as
	   the change of user clears it; an owner already gone has changed
	   our parent. */
	p = strchr(line, '\t');
	if (p == NULL || str_to_long(t_strdup_until(line, p), &owner_pid) < 0) {
		i_error("migrate worker: Invalid first line from the owner");
		i_stream_unref(&input);
		_ctx->exit_code = EX_USAGE;
		return -1;
	}
	line = p + 1;
	if (cmd_migrate_worker_tls_read(ctx, &line) < 0) {
		i_error("migrate worker: Invalid first line from the owner");
		i_stream_unref(&input);
		_ctx->exit_code = EX_SOFTWARE;
		return -1;
	}
	ctx->oauth2_secret = NULL;
	ctx->oauth2_token = NULL;
	if (str_begins(line, "OAUTH2\t")) {
		line += 7;
		ctx->oauth2_secret = p_strdup(_ctx->pool,
					      cmd_migrate_line_field(&line));
	}
	if (str_begins(line, "OAUTH2TOKEN\t")) {
		line += 12;
		ctx->oauth2_token = p_strdup(_ctx->pool,
					     cmd_migrate_line_field(&line));
		if (str_to_time(cmd_migrate_line_field(&line),
				&ctx->oauth2_token_obtained) < 0 ||
		    str_to_time(cmd_migrate_line_field(&line),
				&ctx->oauth2_token_expires) < 0)
			ctx->oauth2_token = NULL;
	}
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		i_error("migrate worker: prctl(PR_SET_PDEATHSIG) failed: %m");
	if ((long)getppid() != owner_pid) {
		i_error("migrate worker: The owner process is gone");
		i_stream_unref(&input);
		_ctx->exit_code = EX_TEMPFAIL;
		return -1;
	}
	ctx->credentials = NULL;
	if (str_begins(line, "CRED\t")) {
		if (migrate_credentials_parse("owner", t_str_tabunescape(line + 5),
					      _ctx->pool, &cred, &error) < 0) {
			i_error("migrate worker: %s", error);
			i_stream_unref(&input);
			_ctx->exit_code = EX_USAGE;
			return -1;
		}
		ctx->credentials = &cred;
	}
	/* the secrets are in the line no more */
	safe_memset((void *)first_line, 0, strlen(first_line));
	if (migrate_cmd_settings(ctx, user, &set, &error) < 0)
		i_error("migrate worker: Invalid settings: %s", error);
	else {
		/* its jobs are folders the owner read over IMAP */
		worker_set = *set;
		worker_set.source_protocol = MIGRATE_SOURCE_PROTOCOL_IMAP;
		ret = cmd_migrate_worker_jobs(_ctx, user, &worker_set, input);
	}
	if (ctx->credentials != NULL)
		safe_memset((void *)cred.source_password, 0,
			    strlen(cred.source_password));
	i_stream_unref(&input);
	if (ret < 0)
		_ctx->exit_code = EX_TEMPFAIL;
	return ret;
}

static struct doveadm_mail_cmd_context *cmd_migrate_worker_alloc(void)
{
	struct migrate_cmd_context *ctx;

	migrate_cmd_protect_secrets("migrate worker");
	ctx = doveadm_mail_cmd_alloc(struct migrate_cmd_context);
	p_array_init(&ctx->domain_pins, ctx->ctx.pool, 4);
	ctx->ctx.v.run = cmd_migrate_worker_run;
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 doveadm_cmd_migrate_worker = {
	.name = "migrate worker",
	.mail_cmd = cmd_migrate_worker_alloc,
	.usage = "-u <user> (started by doveadm migrate, not by hand)",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAMS_END
};
