/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "mail-storage.h"
#include "mailbox-list.h"
#include "mail-namespace.h"
#include "migrate-settings.h"
#include "migrate-text.h"
#include "migrate-source-private.h"

static bool source_error_is_tls(const char *errstr)
{
	return strstr(errstr, "certificate") != NULL ||
		strstr(errstr, "SSL") != NULL ||
		strstr(errstr, "STARTTLS") != NULL;
}

enum migrate_error migrate_source_error_code(enum mail_error error,
					     const char *errstr)
{
	if (errstr != NULL &&
	    strstr(errstr, "[AUTHENTICATIONFAILED]") != NULL)
		return MIGRATE_ERROR_SOURCE_AUTH;
	if (errstr != NULL && source_error_is_tls(errstr))
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

enum migrate_error
migrate_source_mailbox_error(struct migrate_source *source,
			     struct mailbox *box, const char *what,
			     const char **error_r)
{
	enum migrate_error code;
	enum mail_error error;
	const char *errstr;

	/* the source was given up: that is why it failed */
	if (migrate_source_check(source, &code, error_r) < 0)
		return code;
	errstr = mailbox_get_last_internal_error(box, &error);
	*error_r = t_strdup_printf("Source: %s %s failed: %s", what,
				   mailbox_get_vname(box),
				   migrate_source_explain(source, errstr));
	return migrate_source_error_code(error, errstr);
}

enum migrate_error
migrate_source_list_error(struct migrate_source *source, const char *what,
			  const char **error_r)
{
	enum migrate_error code;
	enum mail_error error;
	const char *errstr;

	if (migrate_source_check(source, &code, error_r) < 0)
		return code;
	errstr = mailbox_list_get_last_internal_error(
		source->user->namespaces->list, &error);
	*error_r = t_strdup_printf("Source: Listing %s failed: %s", what,
				   migrate_source_explain(source, errstr));
	return migrate_source_error_code(error, errstr);
}

/* The login failed: imapc's "imapc: Login to HOST failed: REASON", where
   REASON is the server's answer to LOGIN or AUTHENTICATE, or "Disconnected
   from server" when the connection failed.  A server that says no (NO or
   BAD without a code, as Courier does, or [AUTHENTICATIONFAILED],
   [AUTHORIZATIONFAILED], [EXPIRED] or any code that is not a passing
   problem) has refused this login: trying again only counts against the
   account at the old provider, which may lock it or ban us. */
static bool source_refusal_temporary(const char *errstr);

enum migrate_error migrate_source_login_error_code(const char *error)
{
	const char *reason = strstr(error, " failed: ");

	reason = reason == NULL ? error : reason + strlen(" failed: ");
	if (source_error_is_tls(reason))
		return MIGRATE_ERROR_SOURCE_TLS;
	if (strcmp(reason, "Disconnected from server") == 0 ||
	    source_refusal_temporary(reason))
		return MIGRATE_ERROR_SOURCE_TEMP;
	return MIGRATE_ERROR_SOURCE_AUTH;
}

/* Whether a source's refusal to give a message is temporary: it asks us
   to slow down or has a passing problem (Gmail, Exchange, Yahoo:
   NO [THROTTLED] / [LIMIT] / [UNAVAILABLE] ..., or only words to that
   effect).  imapc keeps the response code only in the text of its
   "didn't send" error, and drops it elsewhere: so the text decides. */
static bool source_refusal_temporary(const char *errstr)
{
	static const char *const temporary[] = {
		"[serverbug]", "[overquota]", "[inuse]", "temporar", NULL
	};
	const char *lerr = t_str_lcase(errstr);
	unsigned int i;

	if (migrate_error_is_pushback(errstr))
		return TRUE;
	for (i = 0; temporary[i] != NULL; i++) {
		if (strstr(lerr, temporary[i]) != NULL)
			return TRUE;
	}
	return FALSE;
}

bool migrate_source_refuses_message(enum mail_error error, const char *errstr,
				    enum migrate_error *code_r)
{
	if (strstr(errstr, "(FETCH replied: ") != NULL) {
		/* imapc: the server answered the FETCH without the message
		   (NO, or OK without it): a refusal, unless it says it is
		   temporary */
		*code_r = source_refusal_temporary(errstr) ?
			MIGRATE_ERROR_SOURCE_TEMP : MIGRATE_ERROR_FAILED;
	} else if (source_refusal_temporary(errstr))
		*code_r = MIGRATE_ERROR_SOURCE_TEMP;
	else
		*code_r = migrate_source_error_code(error, errstr);
	return *code_r == MIGRATE_ERROR_FAILED;
}

/* imapc logs why a connection failed (TLS handshake, disconnection,
   timeout), but reports only "Disconnected from server" or "Internal
   error occurred" to its caller.  In 2.3.19 it logs with i_error() and
   i_warning(), not through events, so the process' error handler is the
   only place that sees those lines.  While any source exists, one handler
   of ours sits in front of the one it found: it passes every line on
   unchanged and keeps imapc's lines for the sources (during the login the
   first TLS one, and always the last one).  It is removed with the last
   source, unless something installed another handler after it: then it
   stays in that handler's chain, passing lines on, and keeps nothing. */
static struct {
	failure_callback_t *orig_handler;
	ARRAY(struct migrate_source *) sources;
} source_log;

static void ATTR_FORMAT(2, 3)
source_log_pass(const struct failure_context *ctx, const char *format, ...)
{
	va_list args;

	va_start(args, format);
	source_log.orig_handler(ctx, format, args);
	va_end(args);
}

/* imapc's "imapc(...): connect(IP, PORT) failed: Connection refused -
   trying the next IP" (or "- disconnecting" after the last address),
   "connect(...) timed out after N seconds", and before it "net_connect_ip
   (IP:PORT) failed: ..." for an address it could not even try */
static void source_connect_failure(struct migrate_source *source,
				   const char *line)
{
	if (strstr(line, "connect(") == NULL)
		return;
	if (strstr(line, t_strconcat("failed: ", strerror(ECONNREFUSED),
				     NULL)) != NULL)
		source->connect_refused = TRUE;
	else
		source->connect_failed = TRUE;
}

static void
source_error_handler(const struct failure_context *ctx, const char *format,
		     va_list args)
{
	struct migrate_source *source;
	const char *line, *escaped;
	bool passed = FALSE;
	va_list args2;

	if (array_is_created(&source_log.sources) &&
	    array_count(&source_log.sources) > 0) T_BEGIN {
		VA_COPY(args2, args);
		line = t_strdup_vprintf(format, args2);
		va_end(args2);
		array_foreach_elem(&source_log.sources, source) {
			/* imapc's own lines: "imapc(host:port): ..." (the
			   prefix is in the message or in the context) */
			if (strstr(line, "imapc(") != NULL ||
			    (ctx->log_prefix != NULL &&
			     strstr(ctx->log_prefix, "imapc(") != NULL)) {
				i_free(source->last_error);
				source->last_error = i_strdup(line);
			}
			if (source->capturing_tls && source->tls_error == NULL &&
			    source_error_is_tls(line))
				source->tls_error = i_strdup(line);
			if (source->capturing_connect)
				source_connect_failure(source, line);
		}
		/* the source's folder names and replies in Dovecot's own
		   lines: no control character reaches the log */
		escaped = migrate_text_escape(line);
		if (escaped != line) {
			source_log_pass(ctx, "%s", escaped);
			passed = TRUE;
		}
	} T_END;
	if (!passed)
		source_log.orig_handler(ctx, format, args);
}

void migrate_source_log_init(struct migrate_source *source)
{
	failure_callback_t *fatal, *error, *info, *debug;

	if (!array_is_created(&source_log.sources))
		i_array_init(&source_log.sources, 2);
	i_get_failure_handlers(&fatal, &error, &info, &debug);
	if (error != source_error_handler) {
		source_log.orig_handler = error;
		i_set_error_handler(source_error_handler);
	}
	array_push_back(&source_log.sources, &source);
}

void migrate_source_capture_tls(struct migrate_source *source, bool capture)
{
	source->capturing_tls = capture;
	if (!capture)
		i_free(source->tls_error);
}

void migrate_source_log_deinit(struct migrate_source *source)
{
	failure_callback_t *fatal, *error, *info, *debug;
	struct migrate_source *const *sources;
	unsigned int i, count;

	sources = array_get(&source_log.sources, &count);
	for (i = 0; i < count; i++) {
		if (sources[i] == source) {
			array_delete(&source_log.sources, i, 1);
			break;
		}
	}
	i_free(source->last_error);
	i_free(source->tls_error);
	if (array_count(&source_log.sources) > 0)
		return;
	i_get_failure_handlers(&fatal, &error, &info, &debug);
	if (error == source_error_handler)
		i_set_error_handler(source_log.orig_handler);
	array_free(&source_log.sources);
}

const char *migrate_source_explain(struct migrate_source *source,
				   const char *error)
{
	if (source->last_error == NULL ||
	    strstr(error, MAIL_ERRSTR_CRITICAL_MSG) == NULL)
		return error;
	/* the generic error says nothing: the line imapc logged does */
	if (strstr(source->last_error, "too large input") != NULL ||
	    strstr(source->last_error, "line too large") != NULL) {
		return t_strdup_printf("%s (%s: a reply's line is longer than "
			"%s, %"PRIuUOFF_T" bytes)", error, source->last_error,
			MIGRATE_SETTING_SOURCE_MAX_LINE_LENGTH,
			source->set->source_max_line_length);
	}
	return t_strdup_printf("%s (%s)", error, source->last_error);
}
