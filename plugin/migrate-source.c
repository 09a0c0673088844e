/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "ioloop.h"
#include "str.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "mail-storage-service.h"
#include "mailbox-list-private.h"
#include "imapc-settings.h"
#include "imapc-storage.h"
#include "migrate-settings.h"
#include "migrate-source-private.h"

void migrate_source_userdb_server(ARRAY_TYPE(const_string) *fields,
				 const char *driver,
				 const struct migrate_settings *set,
				 const char *home, const char *resolver_dir,
				 unsigned int port, const char *ssl_mode)
{
#define ADD(str) array_push_back(fields, &(const char *){ (str) })
	ADD(t_strdup_printf("mail=%s:", driver));
	/* nothing is kept on disk; the home only avoids a chdir error */
	ADD(t_strconcat("home=", home, NULL));
	ADD("mail_plugins=");
	if (resolver_dir == NULL) {
		ADD(t_strdup_printf("%s_host=%s", driver, set->source_host));
	} else {
		/* connect to the IP, verify the certificate against the
		   name: the client resolves the name through our resolver */
		ADD(t_strdup_printf("%s_host=%s", driver,
				    set->source_ssl_hostname));
		ADD(t_strconcat("base_dir=", resolver_dir, NULL));
	}
	ADD(t_strdup_printf("%s_port=%u", driver, port));
	ADD(t_strdup_printf("%s_user=%s", driver, set->source_user));
	if (set->source_master_user != NULL) {
		ADD(t_strdup_printf("%s_master_user=%s", driver,
				    set->source_master_user));
	}
	ADD(t_strdup_printf("%s_ssl=%s", driver, ssl_mode));
	ADD(t_strdup_printf("%s_ssl_verify=%s", driver,
			    set->source_ssl_verify ? "yes" : "no"));
	/* a rawlog would contain the password */
	ADD(t_strdup_printf("%s_rawlog_dir=", driver));
#undef ADD
}

static const char *const *
migrate_source_userdb_fields(const struct migrate_settings *set,
			     const char *home, const char *resolver_dir)
{
	ARRAY_TYPE(const_string) fields;

	t_array_init(&fields, 16);
	migrate_source_userdb_server(&fields, "imapc", set, home, resolver_dir,
		set->source_port, migrate_ssl_mode_to_str(set->source_ssl));
#define ADD(str) array_push_back(&fields, &(const char *){ (str) })
	ADD("imapc_features=rfc822.size fetch-headers modseq");
	ADD(t_strdup_printf("imapc_cmd_timeout=%us",
			    set->source_timeout_secs));
	/* a reply's line (not its literals) is held in memory whole */
	ADD(t_strdup_printf("imapc_max_line_length=%"PRIuUOFF_T,
			    set->source_max_line_length));
	/* imapc 2.3.19 reconnects without delay and without counting, a
	   loop against a server that keeps failing; a failed run is re-run
	   instead, and resumes where it stopped */
	ADD("imapc_connection_retry_count=0");
	ADD(t_strdup_printf("mail_prefetch_count=%u", set->prefetch));
	array_append_zero(&fields);
#undef ADD
	return array_front(&fields);
}

/* Why the login failed: imapc's error says only "Disconnected" when TLS
   failed, and the cause was logged (or refused by our pin). */
static const char *
source_login_error(struct migrate_source *source, const char *error)
{
	const char *pin_error = migrate_source_tls_pin_error(source->tls);

	if (pin_error != NULL)
		return t_strdup_printf("imapc: %s", pin_error);
	if (source->tls_error != NULL)
		return t_strdup_printf("imapc: %s", source->tls_error);
	return error;
}

/* A certificate refused for not naming a source given by IP address
   (Dovecot: "... doesn't match expected host name"): the operator needs
   to know where the name goes. */
static const char *
source_tls_name_hint(const struct migrate_settings *set,
		     enum migrate_error code, const char *error)
{
	if (code != MIGRATE_ERROR_SOURCE_TLS ||
	    set->source_ssl_hostname != NULL ||
	    !migrate_tls_host_is_ip(set->source_host) ||
	    strstr(error, "host name") == NULL)
		return "";
	return t_strdup_printf(" (the source is given by IP address: name "
		"the host name its certificate carries with doveadm migrate "
		"domain start --source-tls-name, a tls_name column in the "
		"template or %s)", MIGRATE_SETTING_SOURCE_SSL_HOSTNAME);
}

const char *migrate_source_home(struct migrate_source *source)
{
	const char *home;

	if (mail_user_get_home(source->dest_user, &home) <= 0)
		home = "/";
	return home;
}

int migrate_source_service_lookup(struct migrate_source *source,
				  struct mail_storage_service_ctx *service_ctx,
				  struct mail_storage_service_user *dest_service_user,
				  const char *const *userdb_fields,
				  struct mail_storage_service_user **service_user_r,
				  struct mail_user **user_r, const char **error_r)
{
	struct mail_storage_service_input input;
	/* a doveadm server (and doveadm -A or -F) drops the privileges only
	   temporarily: the lookup switches back to root to read the
	   settings, and the source user (no access restrictions) would
	   leave the rest of the run as root, creating the destination's
	   files as root */
	uid_t euid = geteuid();
	const char *error;
	int ret;

	i_zero(&input);
	input.module = "mail";
	input.service = "doveadm";
	input.username = source->dest_user->username;
	input.no_userdb_lookup = TRUE;
	input.userdb_fields = userdb_fields;
	input.flags_override_add = MAIL_STORAGE_SERVICE_FLAG_NO_NAMESPACES |
		MAIL_STORAGE_SERVICE_FLAG_NO_RESTRICT_ACCESS |
		MAIL_STORAGE_SERVICE_FLAG_NO_PLUGINS;

	mail_storage_service_io_deactivate_user(dest_service_user);
	ret = mail_storage_service_lookup_next(service_ctx, &input,
					       service_user_r, user_r, &error);
	if (geteuid() != euid && seteuid(euid) < 0)
		i_fatal("migrate: seteuid(%s) failed: %m", dec2str(euid));
	if (ret <= 0) {
		mail_storage_service_io_activate_user(dest_service_user);
		*error_r = ret == 0 ? "User not found" : error;
		return -1;
	}
	return 0;
}

void migrate_source_service_done(struct mail_storage_service_user **service_user,
				 struct mail_storage_service_user *dest_service_user)
{
	mail_storage_service_io_deactivate_user(*service_user);
	mail_storage_service_user_unref(service_user);
	mail_storage_service_io_activate_user(dest_service_user);
}

static struct migrate_source_conn *source_conn(struct migrate_source *source);

/* the source whose user migrate_source_user_init() creates */
static struct migrate_source *source_user_creating;

/* The source's storage is created once its login is accepted: our own
   connection opens now, while the storage still waits for the hierarchy
   separator's LIST and then lists the folders, and it logs in meanwhile
   (migrate_source_conn_start()).  Never after a refused login: ours
   would try the same password again. */
static void source_storage_created(struct mail_storage *storage)
{
	struct migrate_source *source = source_user_creating;
	struct imapc_storage *istorage = (struct imapc_storage *)storage;

	if (source == NULL || strcmp(storage->name, IMAPC_STORAGE_NAME) != 0 ||
	    istorage->client == NULL || !istorage->client->auth_returned ||
	    istorage->client->auth_failed_state != IMAPC_COMMAND_STATE_OK)
		return;
	migrate_source_conn_start(source_conn(source));
}

static struct mail_storage_hooks source_storage_hooks = {
	.mail_storage_created = source_storage_created,
};

/* the ioloop current while the source's namespace is created, and whether
   our connection was opened ahead from it */
static struct ioloop *source_ahead_ioloop;
static bool source_ahead_done;

/* The storage's imapc client opens its TCP connection and then waits for
   its login in an ioloop of its own: the first switch away from the
   ioloop the namespace is created in.  Ours opens now, second as the
   source sees them (per-connection limits and quirks are the storage's
   first), and stays in that outer ioloop, which does not run meanwhile:
   its greeting waits, and it logs in only once the storage's login is
   accepted (source_storage_created()), so a refused password is never
   sent twice.  It saves the round trips of a TCP handshake and a
   greeting before our first command. */
static void source_connect_ahead_switched(struct ioloop *prev_ioloop)
{
	struct migrate_source *source = source_user_creating;
	struct ioloop *ioloop = current_ioloop;

	if (source_ahead_done || source == NULL ||
	    prev_ioloop != source_ahead_ioloop || ioloop == prev_ioloop)
		return;
	source_ahead_done = TRUE;
	io_loop_set_current(prev_ioloop);
	migrate_source_conn_connect(source_conn(source));
	io_loop_set_current(ioloop);
}

static int
source_namespaces_init(struct migrate_source *source, struct mail_user *user,
		       const char **error_r)
{
	int ret;

	/* under a bound on the connections to the source (batch's per
	   host), a connection opens only once it is known to be of use: a
	   login the source refuses for too many connections then costs
	   one, not two */
	if (source->set->source_max_connections != 0)
		return mail_namespaces_init_location(user, "imapc:", error_r);

	source_ahead_ioloop = current_ioloop;
	source_ahead_done = FALSE;
	io_loop_add_switch_callback(source_connect_ahead_switched);
	ret = mail_namespaces_init_location(user, "imapc:", error_r);
	io_loop_remove_switch_callback(source_connect_ahead_switched);
	source_ahead_ioloop = NULL;
	if (ret < 0 && source->conn != NULL &&
	    !migrate_source_conn_started(source->conn)) {
		/* the storage's login failed: ours never logs in */
		migrate_source_conn_deinit(&source->conn);
	}
	return ret;
}

static int
migrate_source_user_init(struct migrate_source *source,
			 struct mail_storage_service_ctx *service_ctx,
			 struct mail_storage_service_user *dest_service_user,
			 enum migrate_error *error_code_r, const char **error_r)
{
	const struct migrate_settings *set = source->set;
	struct mail_storage_service_user *service_user;
	struct mail_user *user;
	struct imapc_settings *imapc_set;
	struct mailbox_list_iterate_context *iter;
	enum mail_error mail_error;
	const char *error;
	int ret;

	i_assert(set->source_host != NULL);

	source->password = set->source_password;
	if (set->source_auth != MIGRATE_SOURCE_AUTH_PASSWORD &&
	    (source->password == NULL || source->password[0] == '\0')) {
		/* no token given: the token command's */
		if (migrate_source_token_init(source, &source->password,
					      error_code_r, error_r) < 0)
			return -1;
		source->token_registered = TRUE;
	}
	i_assert(source->password != NULL);

	/* the user's hooks are chosen when it is created */
	source_user_creating = source;
	mail_storage_hooks_add_internal(&source_storage_hooks);
	ret = migrate_source_service_lookup(source, service_ctx,
			dest_service_user,
			migrate_source_userdb_fields(set,
				migrate_source_home(source),
				source->resolver_dir),
			&service_user, &user, &error);
	mail_storage_hooks_remove_internal(&source_storage_hooks);
	if (ret < 0) {
		source_user_creating = NULL;
		*error_code_r = MIGRATE_ERROR_CONFIG;
		*error_r = t_strdup_printf(
			"Source user initialization failed: %s", error);
		return -1;
	}
	/* the password is set only now, after the settings were parsed and
	   possibly logged */
	imapc_set = (void *)mail_user_set_get_driver_settings(user->set_info,
						      user->set, "imapc");
	i_assert(imapc_set != NULL);
	imapc_set->imapc_password = p_strdup(user->pool, source->password);
	if (set->source_auth != MIGRATE_SOURCE_AUTH_PASSWORD) {
		/* the password is the access token */
		imapc_set->imapc_sasl_mechanisms =
			migrate_source_auth_mechanism(set->source_auth);
	}

	migrate_source_capture_tls(source, TRUE);
	ret = source_namespaces_init(source, user, &error);
	source_user_creating = NULL;
	if (ret < 0)
		error = source_login_error(source, error);
	migrate_source_capture_tls(source, FALSE);
	migrate_source_service_done(&service_user, dest_service_user);
	if (ret < 0) {
		/* imapc logs in while the namespace is created */
		*error_code_r = !str_begins(error, "imapc:") ?
			MIGRATE_ERROR_CONFIG :
			migrate_source_login_error_code(error);
		*error_r = t_strdup_printf(
			"Source namespace initialization failed: %s%s", error,
			source_tls_name_hint(set, *error_code_r, error));
		mail_user_deinit(&user);
		return -1;
	}

	/* log in now, so that a refused login is told apart from later
	   failures; the folders it lists are counted (a worker's login is
	   enough: the owner listed them) */
	migrate_source_guard_watch(source->guard, user);
	/* opened when the storage was created, unless its login came
	   later */
	migrate_source_conn_start(source_conn(source));
	if ((source->flags & MIGRATE_SOURCE_INIT_FLAG_WORKER) != 0) {
		source->user = user;
		return 0;
	}
	migrate_source_guard_count_folders(source->guard, TRUE);
	iter = mailbox_list_iter_init(user->namespaces->list, "",
				      MAILBOX_LIST_ITER_RETURN_NO_FLAGS);
	migrate_source_guard_count_folders(source->guard, FALSE);
	while (mailbox_list_iter_next(iter) != NULL) ;
	/* what it listed is kept for the folder tree (no LIST of its own);
	   after a failure nothing is (a new LIST would replace its error) */
	if (!iter->failed) {
		source->list_hold = mailbox_list_iter_init(
			user->namespaces->list, "",
			MAILBOX_LIST_ITER_RETURN_NO_FLAGS);
	}
	if (mailbox_list_iter_deinit(&iter) < 0) {
		error = mailbox_list_get_last_internal_error(
			user->namespaces->list, &mail_error);
		if (migrate_source_tls_pin_error(source->tls) != NULL)
			error = migrate_source_tls_pin_error(source->tls);
		*error_code_r = migrate_source_error_code(mail_error, error);
		*error_r = t_strdup_printf("Source %s:%u: %s",
			set->source_host, set->source_port,
			migrate_source_explain(source, error));
		migrate_source_release_listing(source);
		mail_user_deinit(&user);
		return -1;
	}
	source->user = user;
	return 0;
}

void migrate_source_password_changed(struct migrate_source *source,
				     const char *password)
{
	source->password = password;
	if (source->user != NULL && !source->user_borrowed)
		migrate_source_user_password_changed(source->user, password);
	if (source->conn != NULL)
		migrate_source_conn_password_changed(source->conn, password);
}

void migrate_source_release_listing(struct migrate_source *source)
{
	if (source->list_hold != NULL)
		(void)mailbox_list_iter_deinit(&source->list_hold);
}

static void source_imapc_deinit(struct migrate_source *source)
{
	/* both connections' LOGOUTs, neither waited for: each connection
	   closes once its LOGOUT is written */
	if (source->conn != NULL)
		migrate_source_conn_logout(source->conn);
	if (source->user != NULL && !source->user_borrowed)
		migrate_source_guard_logout_storage(source->user);
}

/* After the source user is gone: its LOGOUT too is bounded. */
static void source_imapc_deinit_post(struct migrate_source *source)
{
	if (source->conn != NULL)
		migrate_source_conn_deinit(&source->conn);
	migrate_resolver_stop(&source->resolver);
	if (source->guard != NULL)
		migrate_source_guard_deinit(&source->guard);
}

/* Our own connection, opened when first needed. */
static struct migrate_source_conn *source_conn(struct migrate_source *source)
{
	if (source->conn == NULL) {
		source->conn = migrate_source_conn_init(source->set,
			source->password, source->dest_user, source->resolver_dir,
			source->guard, source->event);
		if ((source->flags & MIGRATE_SOURCE_INIT_FLAG_WORKER) == 0)
			migrate_source_conn_want_listing(source->conn);
	}
	return source->conn;
}

/* A failure of our own connection: one that refused the source's
   certificate for its pin says so (and counts as a TLS failure). */
static int source_conn_result(struct migrate_source *source, int ret,
			      const char **error_r)
{
	if (ret < 0 && migrate_source_tls_pin_error(source->tls) != NULL)
		*error_r = migrate_source_tls_pin_error(source->tls);
	return ret;
}

static int
source_imapc_fetch_large(struct migrate_source *source, const char *mailbox,
			 uint32_t uid, uoff_t size, struct istream **input_r,
			 time_t *received_r, bool *expunged_r,
			 bool *refused_r, const char **error_r)
{
	return source_conn_result(source,
		migrate_source_conn_fetch(source_conn(source), mailbox, uid,
					  size, input_r, received_r,
					  expunged_r, refused_r, error_r),
		error_r);
}

static void
source_imapc_sizes_ask(struct migrate_source *source, const char *mailbox,
		       uint32_t first_uid, uint64_t changedsince)
{
	migrate_source_conn_sizes_ask(source_conn(source), mailbox, first_uid,
				      changedsince);
}

static int
source_imapc_listing(struct migrate_source *source, const char *mailbox,
		     bool wait, const struct migrate_source_listing **listing_r)
{
	return migrate_source_conn_listing(source_conn(source), mailbox, wait,
					   listing_r);
}

static void
source_imapc_bodies_ask(struct migrate_source *source, const char *mailbox,
			const ARRAY_TYPE(seq_range) *uids, uoff_t max_size)
{
	migrate_source_conn_bodies_ask(source_conn(source), mailbox, uids,
				       max_size);
}

static int
source_imapc_body(struct migrate_source *source, const char *mailbox,
		  uint32_t uid, struct istream **input_r, time_t *received_r)
{
	return migrate_source_conn_body(source_conn(source), mailbox, uid,
					input_r, received_r);
}

static void
source_imapc_bodies_finish(struct migrate_source *source, const char *mailbox,
			   const ARRAY_TYPE(seq_range) *uids)
{
	migrate_source_conn_bodies_finish(source_conn(source), mailbox, uids);
}

static bool
source_imapc_bodies_failed(struct migrate_source *source, const char *mailbox,
			   const ARRAY_TYPE(seq_range) *uids)
{
	return migrate_source_conn_bodies_failed(source_conn(source), mailbox,
						 uids);
}

static void
source_imapc_prefetch_large(struct migrate_source *source, const char *mailbox,
			    uint32_t uid, uoff_t size)
{
	migrate_source_conn_prefetch(source_conn(source), mailbox, uid, size);
}

static int
source_imapc_list_names(struct migrate_source *source, pool_t pool,
			ARRAY_TYPE(const_string) *names, const char **error_r)
{
	return source_conn_result(source,
		migrate_source_conn_list(source_conn(source), pool, names,
					 error_r), error_r);
}

static int
source_imapc_status(struct migrate_source *source,
		    struct migrate_source_status *items, unsigned int count,
		    const char **error_r)
{
	return source_conn_result(source,
		migrate_source_conn_status(source_conn(source), items, count,
					   error_r), error_r);
}

static int
source_imapc_uids_present(struct migrate_source *source, const char *mailbox,
			  const ARRAY_TYPE(seq_range) *uids,
			  ARRAY_TYPE(seq_range) *present,
			  uint32_t *uidvalidity_r, const char **error_r)
{
	return source_conn_result(source,
		migrate_source_conn_uids_present(source_conn(source), mailbox,
						 uids, present, uidvalidity_r,
						 error_r),
		error_r);
}

static int
source_imapc_message_size(struct migrate_source *source, const char *mailbox,
			  uint32_t uid, uoff_t *size_r, const char **error_r)
{
	return source_conn_result(source,
		migrate_source_conn_size(source_conn(source), mailbox, uid,
					 size_r, error_r), error_r);
}

static int
source_imapc_mailbox_exists(struct migrate_source *source,
			    const char *mailbox, bool *exists_r,
			    const char **error_r)
{
	return source_conn_result(source,
		migrate_source_conn_mailbox_exists(source_conn(source),
						   mailbox, exists_r, error_r),
		error_r);
}

static bool
source_imapc_subscribed(struct migrate_source *source,
			const char *const *mailboxes, unsigned int count,
			bool *subscribed_r)
{
	return migrate_source_conn_subscribed(source_conn(source), mailboxes,
					      count, subscribed_r);
}

static const struct migrate_source_vfuncs source_imapc_vfuncs = {
	.deinit = source_imapc_deinit,
	.deinit_post = source_imapc_deinit_post,
	.fetch_large = source_imapc_fetch_large,
	.prefetch_large = source_imapc_prefetch_large,
	.sizes_ask = source_imapc_sizes_ask,
	.listing = source_imapc_listing,
	.bodies_ask = source_imapc_bodies_ask,
	.body = source_imapc_body,
	.bodies_finish = source_imapc_bodies_finish,
	.bodies_failed = source_imapc_bodies_failed,
	.list_names = source_imapc_list_names,
	.uids_present = source_imapc_uids_present,
	.message_size = source_imapc_message_size,
	.mailbox_exists = source_imapc_mailbox_exists,
	.status = source_imapc_status,
	.subscribed = source_imapc_subscribed,
};

static struct migrate_source *
source_alloc(struct mail_user *dest_user, const struct migrate_settings *set,
	     const struct migrate_source_vfuncs *v)
{
	struct migrate_source *source;

	source = i_new(struct migrate_source, 1);
	source->v = *v;
	source->dest_user = dest_user;
	source->set = set;
	source->event = event_create(dest_user->event);
	event_set_append_log_prefix(source->event, "migrate: ");
	migrate_source_log_init(source);
	return source;
}

/* No IMAP: the POP3 user alone, logged in when first used. */
static int
source_init_pop3_only(struct migrate_source *source,
		      enum migrate_error *error_code_r, const char **error_r)
{
	source->pop3_only = TRUE;
	if (migrate_source_pop3_init(source, source->service_ctx,
				     source->dest_service_user, error_r) < 0) {
		*error_code_r = MIGRATE_ERROR_CONFIG;
		return -1;
	}
	return 0;
}

/* Logged in over IMAP, and the POP3 user of migrate_source_pop3.  With
   migrate_source_protocol = auto, the failures to connect are kept. */
static int
source_init_imap(struct migrate_source *source,
		 enum migrate_error *error_code_r, const char **error_r)
{
	const struct migrate_settings *set = source->set;
	int ret;

	source->capturing_connect =
		set->source_protocol == MIGRATE_SOURCE_PROTOCOL_AUTO;
	ret = migrate_source_user_init(source, source->service_ctx,
				       source->dest_service_user,
				       error_code_r, error_r);
	source->capturing_connect = FALSE;
	if (ret < 0) {
		/* given up while logging in: that is the cause */
		(void)migrate_source_check(source, error_code_r, error_r);
		return -1;
	}
	if (set->source_pop3 != MIGRATE_POP3_NO &&
	    migrate_source_pop3_init(source, source->service_ctx,
				     source->dest_service_user, error_r) < 0) {
		*error_code_r = MIGRATE_ERROR_CONFIG;
		return -1;
	}
	return 0;
}

static int
source_init_connect(struct migrate_source *source,
		    struct mail_storage_service_ctx *service_ctx,
		    struct mail_storage_service_user *dest_service_user,
		    enum migrate_error *error_code_r, const char **error_r)
{
	const struct migrate_settings *set = source->set;
	const char *resolver_dir = NULL, *error;

	if (set->source_ssl == MIGRATE_SSL_NO && set->source_ssl_pin != NULL) {
		/* no certificate is not the pinned one */
		*error_code_r = MIGRATE_ERROR_SOURCE_TLS;
		*error_r = t_strdup_printf("The certificate of the source "
			"%s:%u is pinned (SHA-256 %s), but %s = no would read "
			"it without TLS", set->source_host, set->source_port,
			set->source_ssl_pin, MIGRATE_SETTING_SOURCE_SSL);
		return -1;
	}
	if (set->source_ssl != MIGRATE_SSL_NO &&
	    migrate_source_tls_init(source, set->source_ssl_pin, &error) < 0) {
		*error_code_r = MIGRATE_ERROR_FAILED;
		*error_r = t_strdup_printf("TLS: %s", error);
		return -1;
	}
	if (set->source_ssl_hostname != NULL &&
	    migrate_resolver_start(set->source_ssl_hostname,
				   set->source_host, &source->resolver,
				   &resolver_dir, &error) < 0) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = t_strdup_printf("Resolver for %s failed: %s",
			MIGRATE_SETTING_SOURCE_SSL_HOSTNAME, error);
		return -1;
	}
	source->resolver_dir = i_strdup(resolver_dir);
	source->service_ctx = service_ctx;
	source->dest_service_user = dest_service_user;
	if (set->source_protocol == MIGRATE_SOURCE_PROTOCOL_POP3)
		return source_init_pop3_only(source, error_code_r, error_r);
	if (source_init_imap(source, error_code_r, error_r) == 0) {
		if (set->source_protocol == MIGRATE_SOURCE_PROTOCOL_AUTO) {
			source->protocol_why = i_strdup_printf(
				"%s = auto: its IMAP port answered",
				MIGRATE_SETTING_SOURCE_PROTOCOL);
		}
		return 0;
	}
	if (set->source_protocol != MIGRATE_SOURCE_PROTOCOL_AUTO ||
	    *error_code_r != MIGRATE_ERROR_SOURCE_TEMP ||
	    !source->connect_refused || source->connect_failed)
		return -1;
	/* nothing listens on its IMAP port: a source with POP3 only */
	source->protocol_why = i_strdup_printf(
		"%s = auto: its IMAP port %s:%u refused the connection",
		MIGRATE_SETTING_SOURCE_PROTOCOL, set->source_host,
		set->source_port);
	e_info(event_create_passthrough(source->event)->
	       set_name("migrate_source_pop3_only")->
	       add_str("reason", source->protocol_why)->event(),
	       "Reading the source over POP3 only (port %u): %s",
	       set->source_pop3_port, source->protocol_why);
	return source_init_pop3_only(source, error_code_r, error_r);
}

bool migrate_source_has_pop3(struct migrate_source *source)
{
	return source->pop3_user != NULL;
}

bool migrate_source_is_pop3_only(struct migrate_source *source)
{
	return source->pop3_only;
}

int migrate_source_pop3_reconnect(struct migrate_source *source,
				  const char **error_r)
{
	migrate_source_pop3_deinit(source);
	return migrate_source_pop3_init(source, source->service_ctx,
					source->dest_service_user, error_r);
}

int migrate_source_init(struct mail_storage_service_ctx *service_ctx,
			struct mail_storage_service_user *dest_service_user,
			struct mail_user *dest_user,
			const struct migrate_settings *set,
			enum migrate_source_init_flags flags, time_t deadline,
			struct migrate_source_peer *peer_r,
			struct migrate_source **source_r,
			enum migrate_error *error_code_r,
			const char **error_r)
{
	struct migrate_source *source;
	int ret;

	source = source_alloc(dest_user, set, &source_imapc_vfuncs);
	source->flags = flags;
	/* from the start: the login is bounded too */
	source->guard = migrate_source_guard_init(set, deadline);
	ret = source_init_connect(source, service_ctx, dest_service_user,
				  error_code_r, error_r);
	if (peer_r != NULL)
		migrate_source_get_peer(source, peer_r);
	if (ret < 0) {
		migrate_source_deinit(&source);
		return -1;
	}
	*source_r = source;
	return 0;
}

const char *migrate_source_pin_error(struct migrate_source *source)
{
	return migrate_source_tls_pin_error(source->tls);
}

void migrate_source_get_peer(struct migrate_source *source,
			     struct migrate_source_peer *peer_r)
{
	migrate_source_tls_get_peer(source->tls, source->dest_user->pool,
				    peer_r);
	peer_r->pop3_only = source->pop3_only;
	peer_r->protocol_why = p_strdup(source->dest_user->pool,
					source->protocol_why);
}

struct migrate_source *
migrate_source_init_local(struct mail_user *dest_user,
			  const struct migrate_settings *set,
			  struct mail_user *src_user)
{
	struct migrate_source *source;

	source = source_alloc(dest_user, set, &migrate_source_local_vfuncs);
	source->user = src_user;
	source->user_borrowed = TRUE;
	return source;
}

void migrate_source_deinit(struct migrate_source **_source)
{
	struct migrate_source *source = *_source;

	*_source = NULL;
	migrate_source_release_listing(source);
	source->v.deinit(source);
	migrate_source_pop3_deinit(source);
	if (source->user != NULL && !source->user_borrowed)
		mail_user_deinit(&source->user);
	if (source->v.deinit_post != NULL)
		source->v.deinit_post(source);
	/* after every connection is closed */
	if (source->token_registered)
		migrate_source_token_deinit(source);
	migrate_source_tls_deinit(&source->tls);
	migrate_source_log_deinit(source);
	event_unref(&source->event);
	i_free(source->protocol_why);
	i_free(source->resolver_dir);
	i_free(source);
}

struct mail_namespace *
migrate_source_get_namespace(struct migrate_source *source)
{
	return source->user->namespaces;
}

int migrate_source_fetch_large(struct migrate_source *source,
			       const char *mailbox, uint32_t uid, uoff_t size,
			       struct istream **input_r, time_t *received_r,
			       bool *expunged_r, bool *refused_r,
			       const char **error_r)
{
	*expunged_r = *refused_r = FALSE;
	*received_r = (time_t)-1;
	return source->v.fetch_large(source, mailbox, uid, size, input_r,
				     received_r, expunged_r, refused_r,
				     error_r);
}

void migrate_source_sizes_ask(struct migrate_source *source,
			      const char *mailbox, uint32_t first_uid,
			      uint64_t changedsince)
{
	if (source->v.sizes_ask != NULL)
		source->v.sizes_ask(source, mailbox, first_uid, changedsince);
}

int migrate_source_listing(struct migrate_source *source, const char *mailbox,
			   const struct migrate_source_listing **listing_r)
{
	if (source->v.listing == NULL)
		return -1;
	return source->v.listing(source, mailbox, TRUE, listing_r) < 0 ?
		-1 : 0;
}

int migrate_source_listing_peek(struct migrate_source *source,
				const char *mailbox,
				const struct migrate_source_listing **listing_r)
{
	if (source->v.listing == NULL)
		return -1;
	return source->v.listing(source, mailbox, FALSE, listing_r);
}

int migrate_source_sizes(struct migrate_source *source, const char *mailbox,
			 const ARRAY_TYPE(migrate_source_size) **sizes_r)
{
	const struct migrate_source_listing *listing;

	if (migrate_source_listing(source, mailbox, &listing) < 0)
		return -1;
	*sizes_r = &listing->sizes;
	return 0;
}

bool migrate_source_bodies_ask(struct migrate_source *source,
			       const char *mailbox,
			       const ARRAY_TYPE(seq_range) *uids,
			       uoff_t max_size)
{
	if (source->v.bodies_ask == NULL)
		return FALSE;
	source->v.bodies_ask(source, mailbox, uids, max_size);
	return TRUE;
}

int migrate_source_body(struct migrate_source *source, const char *mailbox,
			uint32_t uid, struct istream **input_r,
			time_t *received_r)
{
	if (source->v.body == NULL)
		return 0;
	return source->v.body(source, mailbox, uid, input_r, received_r);
}

const char *migrate_source_bodies_error(struct migrate_source *source)
{
	return source->conn == NULL ? "not connected" :
		migrate_source_conn_bodies_error(source->conn);
}

void migrate_source_bodies_finish(struct migrate_source *source,
				  const char *mailbox,
				  const ARRAY_TYPE(seq_range) *uids)
{
	if (source->v.bodies_finish != NULL)
		source->v.bodies_finish(source, mailbox, uids);
}

bool migrate_source_bodies_failed(struct migrate_source *source,
				  const char *mailbox,
				  const ARRAY_TYPE(seq_range) *uids)
{
	return source->v.bodies_failed == NULL ||
		source->v.bodies_failed(source, mailbox, uids);
}

void migrate_source_prefetch_large(struct migrate_source *source,
				   const char *mailbox, uint32_t uid,
				   uoff_t size)
{
	if (source->v.prefetch_large != NULL)
		source->v.prefetch_large(source, mailbox, uid, size);
}

int migrate_source_list_names(struct migrate_source *source, pool_t pool,
			      ARRAY_TYPE(const_string) *names,
			      const char **error_r)
{
	return source->v.list_names(source, pool, names, error_r);
}

int migrate_source_uids_present(struct migrate_source *source,
				const char *mailbox,
				const ARRAY_TYPE(seq_range) *uids,
				ARRAY_TYPE(seq_range) *present,
				uint32_t *uidvalidity_r, const char **error_r)
{
	*uidvalidity_r = 0;
	return source->v.uids_present(source, mailbox, uids, present,
				      uidvalidity_r, error_r);
}

int migrate_source_message_size(struct migrate_source *source,
				const char *mailbox, uint32_t uid,
				uoff_t *size_r, const char **error_r)
{
	return source->v.message_size(source, mailbox, uid, size_r, error_r);
}

int migrate_source_status(struct migrate_source *source,
			  struct migrate_source_status *items,
			  unsigned int count, const char **error_r)
{
	if (source->v.status == NULL) {
		*error_r = "not supported";
		return -1;
	}
	return source->v.status(source, items, count, error_r);
}

bool migrate_source_subscribed(struct migrate_source *source,
			       const char *const *mailboxes,
			       unsigned int count, bool *subscribed_r)
{
	if (source->v.subscribed == NULL)
		return FALSE;
	return source->v.subscribed(source, mailboxes, count, subscribed_r);
}

int migrate_source_mailbox_exists(struct migrate_source *source,
				  const char *mailbox, bool *exists_r,
				  const char **error_r)
{
	*exists_r = FALSE;
	return source->v.mailbox_exists(source, mailbox, exists_r, error_r);
}

int migrate_source_check(struct migrate_source *source,
			 enum migrate_error *code_r, const char **error_r)
{
	if (source->guard == NULL)
		return 0;
	return migrate_source_guard_check(source->guard, code_r, error_r);
}

void migrate_source_count_folders(struct migrate_source *source, bool count)
{
	if (source->guard != NULL)
		migrate_source_guard_count_folders(source->guard, count);
}

time_t migrate_source_get_deadline(struct migrate_source *source)
{
	return source->guard == NULL ? 0 :
		migrate_source_guard_get_deadline(source->guard);
}

void migrate_source_set_deadline(struct migrate_source *source,
				 time_t deadline)
{
	if (source->guard != NULL)
		migrate_source_guard_set_deadline(source->guard, deadline);
}
