/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "time-util.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "mail-storage-service.h"
#include "mailbox-list-iter.h"
#include "imapc-settings.h"
#include "migrate-settings.h"
#include "migrate-resolver.h"
#include "migrate-source.h"

#define MIGRATE_PROGRESS_TTY_MSECS 1000
#define MIGRATE_PROGRESS_LOG_MSECS 15000

bool migrate_progress_due(struct timeval *last, bool tty, bool force)
{
	struct timeval now;

	i_gettimeofday(&now);
	if (!force && timeval_diff_msecs(&now, last) <
	    (tty ? MIGRATE_PROGRESS_TTY_MSECS : MIGRATE_PROGRESS_LOG_MSECS))
		return FALSE;
	*last = now;
	return TRUE;
}

static bool migrate_error_is_tls(const char *errstr)
{
	return strstr(errstr, "certificate") != NULL ||
		strstr(errstr, "SSL") != NULL ||
		strstr(errstr, "STARTTLS") != NULL;
}

enum migrate_error migrate_error_from_dest(struct mailbox *box,
					   const char *what,
					   const char **error_r)
{
	enum mail_error error;
	const char *errstr;

	errstr = mailbox_get_last_internal_error(box, &error);
	*error_r = t_strdup_printf("%s %s failed: %s", what,
				   mailbox_get_vname(box), errstr);
	return error == MAIL_ERROR_NOQUOTA ?
		MIGRATE_ERROR_DEST_QUOTA : MIGRATE_ERROR_FAILED;
}

enum migrate_error migrate_error_from_source(enum mail_error error,
					     const char *errstr)
{
	if (errstr != NULL &&
	    strstr(errstr, "[AUTHENTICATIONFAILED]") != NULL)
		return MIGRATE_ERROR_SOURCE_AUTH;
	if (errstr != NULL && migrate_error_is_tls(errstr))
		return MIGRATE_ERROR_SOURCE_TLS;
	switch (error) {
	case MAIL_ERROR_PERM:
		return MIGRATE_ERROR_SOURCE_AUTH;
	case MAIL_ERROR_NOTFOUND:
	case MAIL_ERROR_EXPUNGED:
	case MAIL_ERROR_PARAMS:
	case MAIL_ERROR_NOTPOSSIBLE:
	case MAIL_ERROR_EXISTS:
	case MAIL_ERROR_CONVERSION:
	case MAIL_ERROR_INVALIDDATA:
		return MIGRATE_ERROR_FAILED;
	default:
		/* connection problems, timeouts and anything unknown:
		   a retry may succeed */
		return MIGRATE_ERROR_SOURCE_TEMP;
	}
}

/* imapc logs why a connection failed (TLS handshake, disconnection,
   timeout), but reports only "Disconnected from server" or "Internal
   error occurred" to its caller.  While a source is in use, its error log
   lines are watched: during the login the first TLS one is kept, and
   always the last one, to name the cause of a failure. */
static failure_callback_t *source_orig_error_handler;
static unsigned int source_watchers;
static bool source_capturing_tls;
static char *source_tls_error;
static char *source_last_error;

static void
source_error_handler(const struct failure_context *ctx, const char *format,
		     va_list args)
{
	const char *line;
	va_list args2;

	VA_COPY(args2, args);
	line = t_strdup_vprintf(format, args2);
	va_end(args2);
	/* imapc's own lines: "imapc(host:port): ..." (the prefix is in the
	   message or in the context) */
	if (strstr(line, "imapc(") != NULL ||
	    (ctx->log_prefix != NULL && strstr(ctx->log_prefix, "imapc(") != NULL)) {
		i_free(source_last_error);
		source_last_error = i_strdup(line);
	}
	if (source_capturing_tls && source_tls_error == NULL &&
	    (strstr(line, "certificate") != NULL ||
	     strstr(line, "SSL") != NULL ||
	     strstr(line, "STARTTLS") != NULL))
		source_tls_error = i_strdup(line);
	source_orig_error_handler(ctx, format, args);
}

static void source_watch_errors(bool watch)
{
	failure_callback_t *fatal, *error, *info, *debug;

	if (watch) {
		if (source_watchers++ > 0)
			return;
		i_get_failure_handlers(&fatal, &error, &info, &debug);
		source_orig_error_handler = error;
		i_set_error_handler(source_error_handler);
	} else {
		i_assert(source_watchers > 0);
		if (--source_watchers > 0)
			return;
		i_set_error_handler(source_orig_error_handler);
		i_free(source_last_error);
	}
}

static void source_capture_tls_errors(bool capture)
{
	source_capturing_tls = capture;
	if (!capture)
		i_free(source_tls_error);
}

const char *migrate_source_explain_error(const char *error)
{
	if (source_last_error == NULL ||
	    strstr(error, MAIL_ERRSTR_CRITICAL_MSG) == NULL)
		return error;
	/* the generic error says nothing: the line imapc logged does */
	return t_strdup_printf("%s (%s)", error, source_last_error);
}

static const char *const *
migrate_source_userdb_fields(const struct migrate_settings *set,
			     const char *home, const char *resolver_dir)
{
	ARRAY_TYPE(const_string) fields;

	t_array_init(&fields, 16);
#define ADD(str) array_push_back(&fields, &(const char *){ (str) })
	ADD("mail=imapc:");
	/* imapc keeps nothing on disk; the home only avoids a chdir error */
	ADD(t_strconcat("home=", home, NULL));
	ADD("mail_plugins=");
	if (resolver_dir == NULL)
		ADD(t_strconcat("imapc_host=", set->source_host, NULL));
	else {
		/* connect to the IP, verify the certificate against the
		   name: imapc resolves the name through our resolver */
		ADD(t_strconcat("imapc_host=", set->source_ssl_hostname, NULL));
		ADD(t_strconcat("base_dir=", resolver_dir, NULL));
	}
	ADD(t_strdup_printf("imapc_port=%u", set->source_port));
	ADD(t_strconcat("imapc_user=", set->source_user, NULL));
	if (set->source_master_user != NULL) {
		ADD(t_strconcat("imapc_master_user=",
				set->source_master_user, NULL));
	}
	ADD(t_strconcat("imapc_ssl=", migrate_ssl_mode_to_str(set->source_ssl),
			NULL));
	ADD(set->source_ssl_verify ? "imapc_ssl_verify=yes" :
	    "imapc_ssl_verify=no");
	ADD("imapc_features=rfc822.size fetch-headers modseq");
	ADD(t_strdup_printf("imapc_cmd_timeout=%us",
			    set->source_timeout_secs));
	/* imapc 2.3.19 reconnects without delay and without counting, a
	   loop against a server that keeps failing; a failed run is re-run
	   instead, and resumes where it stopped */
	ADD("imapc_connection_retry_count=0");
	/* a rawlog would contain the LOGIN command */
	ADD("imapc_rawlog_dir=");
	ADD(t_strdup_printf("mail_prefetch_count=%u", set->prefetch));
	array_append_zero(&fields);
#undef ADD
	return array_front(&fields);
}

static int
migrate_source_user_init(struct mail_storage_service_ctx *service_ctx,
			 struct mail_storage_service_user *dest_service_user,
			 struct mail_user *dest_user,
			 const struct migrate_settings *set,
			 const char *resolver_dir, struct mail_user **src_user_r,
			 enum migrate_error *error_code_r, const char **error_r)
{
	struct mail_storage_service_input input;
	struct mail_storage_service_user *service_user;
	struct mail_user *user;
	struct imapc_settings *imapc_set;
	struct mailbox_list_iterate_context *iter;
	enum mail_error mail_error;
	const char *home, *error;
	int ret;

	i_assert(set->source_host != NULL && set->source_password != NULL);

	i_zero(&input);
	input.module = "mail";
	input.service = "doveadm";
	input.username = dest_user->username;
	input.no_userdb_lookup = TRUE;
	if (mail_user_get_home(dest_user, &home) <= 0)
		home = "/";
	input.userdb_fields = migrate_source_userdb_fields(set, home,
							   resolver_dir);
	input.flags_override_add = MAIL_STORAGE_SERVICE_FLAG_NO_NAMESPACES |
		MAIL_STORAGE_SERVICE_FLAG_NO_RESTRICT_ACCESS |
		MAIL_STORAGE_SERVICE_FLAG_NO_PLUGINS;

	mail_storage_service_io_deactivate_user(dest_service_user);
	ret = mail_storage_service_lookup_next(service_ctx, &input,
					       &service_user, &user, &error);
	if (ret <= 0) {
		mail_storage_service_io_activate_user(dest_service_user);
		*error_code_r = MIGRATE_ERROR_CONFIG;
		*error_r = t_strdup_printf(
			"Source user initialization failed: %s",
			ret == 0 ? "User not found" : error);
		return -1;
	}
	/* the password is set only now, after the settings were parsed and
	   possibly logged */
	imapc_set = (void *)mail_user_set_get_driver_settings(user->set_info,
						      user->set, "imapc");
	i_assert(imapc_set != NULL);
	imapc_set->imapc_password = p_strdup(user->pool, set->source_password);

	source_capture_tls_errors(TRUE);
	ret = mail_namespaces_init_location(user, "imapc:", &error);
	if (ret < 0 && source_tls_error != NULL)
		error = t_strdup_printf("imapc: %s", source_tls_error);
	source_capture_tls_errors(FALSE);
	mail_storage_service_io_deactivate_user(service_user);
	mail_storage_service_user_unref(&service_user);
	mail_storage_service_io_activate_user(dest_service_user);
	if (ret < 0) {
		/* imapc logs in while the namespace is created */
		*error_code_r = !str_begins(error, "imapc:") ?
			MIGRATE_ERROR_CONFIG :
			migrate_error_from_source(MAIL_ERROR_TEMP, error);
		*error_r = t_strdup_printf(
			"Source namespace initialization failed: %s", error);
		mail_user_deinit(&user);
		return -1;
	}

	/* log in now, so that a refused login is told apart from later
	   failures */
	iter = mailbox_list_iter_init(user->namespaces->list, "",
				      MAILBOX_LIST_ITER_RETURN_NO_FLAGS);
	while (mailbox_list_iter_next(iter) != NULL) ;
	if (mailbox_list_iter_deinit(&iter) < 0) {
		error = mailbox_list_get_last_internal_error(
			user->namespaces->list, &mail_error);
		*error_code_r = migrate_error_from_source(mail_error, error);
		*error_r = t_strdup_printf("Source %s:%u: %s",
			set->source_host, set->source_port, error);
		mail_user_deinit(&user);
		return -1;
	}
	*src_user_r = user;
	return 0;
}

int migrate_source_init(struct mail_storage_service_ctx *service_ctx,
			struct mail_storage_service_user *dest_service_user,
			struct mail_user *dest_user,
			const struct migrate_settings *set,
			struct migrate_source **source_r,
			enum migrate_error *error_code_r,
			const char **error_r)
{
	struct migrate_source *source;
	const char *resolver_dir = NULL, *error;

	source = i_new(struct migrate_source, 1);
	source_watch_errors(TRUE);
	source->watching = TRUE;
	if (set->source_ssl_hostname != NULL &&
	    migrate_resolver_start(set->source_ssl_hostname,
				   set->source_host, &source->resolver,
				   &resolver_dir, &error) < 0) {
		*error_code_r = MIGRATE_ERROR_TEMP;
		*error_r = t_strdup_printf("Resolver for %s failed: %s",
			MIGRATE_SETTING_SOURCE_SSL_HOSTNAME, error);
		migrate_source_deinit(&source);
		return -1;
	}
	source->resolver_dir = i_strdup(resolver_dir);
	if (migrate_source_user_init(service_ctx, dest_service_user,
				     dest_user, set, resolver_dir,
				     &source->user, error_code_r,
				     error_r) < 0) {
		migrate_source_deinit(&source);
		return -1;
	}
	*source_r = source;
	return 0;
}

void migrate_source_deinit(struct migrate_source **_source)
{
	struct migrate_source *source = *_source;

	*_source = NULL;
	if (source->user != NULL)
		mail_user_deinit(&source->user);
	migrate_resolver_stop(&source->resolver);
	if (source->watching)
		source_watch_errors(FALSE);
	i_free(source->resolver_dir);
	i_free(source);
}
