/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The child's side of the result record (doveadm-migrate-record.h):
   "doveadm migrate -R FD" writes one per user, on FD; run by a doveadm
   server, it prints it instead (the one field of its row), which the
   doveadm client that sent the command writes on its own FD. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "fd-util.h"
#include "write-full.h"
#include "mail-user.h"
#include "doveadm-print.h"
#include "migrate-sync.h"
#include "doveadm-migrate-record.h"

#include <unistd.h>
#include <sysexits.h>

/* a run that warns about every folder must not make a huge record */
#define MIGRATE_RECORD_MAX_WARNINGS 100

struct migrate_record_writer {
	pool_t pool;
	/* -1: printed (doveadm_print()) */
	int fd;
	/* the process that writes: a fork (a worker before its exec)
	   does not */
	pid_t pid;

	/* the user whose run is under way, and what it logged */
	char *user;
	bool user_written;
	ARRAY_TYPE(const_string) warnings;
	unsigned int warnings_dropped;
	/* the lines of the source pushing back */
	unsigned int pushbacks;
	/* reused: a run may log an error per message */
	string_t *last_error;
	/* per run: the kept messages are allocated from it */
	pool_t user_pool;

	failure_callback_t *prev_error_handler;
	failure_callback_t *prev_fatal_handler ATTR_NORETURN;
};

static struct migrate_record_writer *record_writer;

/* What a log message says after its log type, without the prefixes that
   only say that this is the migrate command and its user: the text the
   operator reads after "Warning: migrate: USER: ". */
static const char *
migrate_record_log_text(struct migrate_record_writer *writer,
			const struct failure_context *ctx,
			const char *format, va_list args)
{
	string_t *str = t_str_new(256);
	const char *text;
	size_t len;

	/* the prefixes appended after the log type: an imapc connection's,
	   the engine's "migrate: " */
	if (ctx->log_prefix != NULL && ctx->log_prefix_type_pos > 0)
		str_append(str, ctx->log_prefix + ctx->log_prefix_type_pos);
	str_vprintfa(str, format, args);
	text = str_c(str);
	if (str_begins(text, "migrate: "))
		text += strlen("migrate: ");
	if (writer->user != NULL) {
		len = strlen(writer->user);
		if (strncmp(text, writer->user, len) == 0 &&
		    str_begins(text + len, ": "))
			text += len + 2;
	}
	return text;
}

static void
migrate_record_catch(struct migrate_record_writer *writer,
		     const struct failure_context *ctx,
		     const char *format, va_list args)
{
	const char *text;

	if (ctx->type != LOG_TYPE_WARNING && ctx->type != LOG_TYPE_ERROR)
		return;
	text = migrate_record_log_text(writer, ctx, format, args);
	if (migrate_error_is_pushback(text))
		writer->pushbacks++;
	if (ctx->type == LOG_TYPE_ERROR) {
		str_truncate(writer->last_error, 0);
		str_append(writer->last_error, text);
	} else if (array_count(&writer->warnings) <
		   MIGRATE_RECORD_MAX_WARNINGS) {
		text = p_strdup(writer->user_pool, text);
		array_push_back(&writer->warnings, &text);
	} else {
		writer->warnings_dropped++;
	}
}

static void
migrate_record_error_handler(const struct failure_context *ctx,
			     const char *format, va_list args)
{
	struct migrate_record_writer *writer = record_writer;
	int old_errno = errno;
	va_list args_copy;

	VA_COPY(args_copy, args);
	T_BEGIN {
		migrate_record_catch(writer, ctx, format, args_copy);
	} T_END;
	va_end(args_copy);
	errno = old_errno;
	writer->prev_error_handler(ctx, format, args);
}

/* The record of the user under way: what it logged, and the counts and
   quota when the run got that far. */
static void
migrate_record_write(struct migrate_record_writer *writer,
		     struct migrate_record *rec)
{
	string_t *str = t_str_new(1024);
	const char *more;

	i_assert(writer->user != NULL);
	if (writer->user_written || writer->pid != getpid())
		return;
	writer->user_written = TRUE;
	rec->user = writer->user;
	rec->source_pushbacks = writer->pushbacks;
	if (rec->error == NULL && rec->exit_code != 0 &&
	    str_len(writer->last_error) > 0)
		rec->error = str_c(writer->last_error);
	if (writer->warnings_dropped > 0) {
		more = t_strdup_printf("(%u more warnings)",
				       writer->warnings_dropped);
		array_push_back(&writer->warnings, &more);
	}
	array_append_zero(&writer->warnings);
	rec->warnings = array_front(&writer->warnings);
	migrate_record_append(str, rec);
	array_pop_back(&writer->warnings);
	if (writer->fd == -1) {
		/* one line: the client's tab formatter ends the row */
		if (str_len(str) > 0 && str_data(str)[str_len(str) - 1] == '\n')
			str_truncate(str, str_len(str) - 1);
		doveadm_print(str_c(str));
		doveadm_print_flush();
	} else if (write_full(writer->fd, str_data(str), str_len(str)) < 0) {
		/* the parent counts a missing record as a failure */
		i_error("migrate: write(result fd %d) failed: %m", writer->fd);
	}
}

static void ATTR_NORETURN
migrate_record_fatal_handler(const struct failure_context *ctx,
			     const char *format, va_list args)
{
	struct migrate_record_writer *writer = record_writer;
	struct migrate_record rec;
	va_list args_copy;

	if (ctx->type == LOG_TYPE_FATAL && writer->user != NULL) T_BEGIN {
		i_zero(&rec);
		rec.result = "failed";
		rec.exit_code = migrate_exit_code_normalize(ctx->exit_status);
		rec.error_code = migrate_error_name(MIGRATE_ERROR_FAILED);
		VA_COPY(args_copy, args);
		rec.error = migrate_record_log_text(writer, ctx, format,
						    args_copy);
		va_end(args_copy);
		migrate_record_write(writer, &rec);
	} T_END;
	writer->prev_fatal_handler(ctx, format, args);
}

void migrate_record_writer_init(int fd, const char *username)
{
	struct migrate_record_writer *writer;
	failure_callback_t *fatal_handler, *info_handler, *debug_handler;
	pool_t pool;

	i_assert(record_writer == NULL);
	pool = pool_alloconly_create("migrate record writer", 1024);
	writer = p_new(pool, struct migrate_record_writer, 1);
	writer->pool = pool;
	writer->fd = fd;
	writer->pid = getpid();
	writer->last_error = str_new(default_pool, 256);
	/* the workers it starts must not hold it open */
	if (fd != -1)
		fd_close_on_exec(fd, TRUE);
	record_writer = writer;
	migrate_record_user_begin(username);

	i_get_failure_handlers(&fatal_handler, &writer->prev_error_handler,
			       &info_handler, &debug_handler);
	/* it does not return, whatever its type says */
	writer->prev_fatal_handler =
		(typeof(writer->prev_fatal_handler))fatal_handler;
	i_set_error_handler(migrate_record_error_handler);
	i_set_fatal_handler(migrate_record_fatal_handler);
}

void migrate_record_user_begin(const char *username)
{
	struct migrate_record_writer *writer = record_writer;

	if (writer == NULL)
		return;
	if (writer->user != NULL && !writer->user_written &&
	    null_strcmp(writer->user, username) == 0) {
		/* -u's user: keep what its lookup logged */
		return;
	}
	pool_unref(&writer->user_pool);
	writer->user_pool = pool_alloconly_create("migrate record user", 1024);
	writer->user = p_strdup(writer->user_pool, username);
	writer->user_written = FALSE;
	p_array_init(&writer->warnings, writer->user_pool, 8);
	writer->warnings_dropped = 0;
	writer->pushbacks = 0;
	str_truncate(writer->last_error, 0);
}

/* The destination's quota, when the user has the quota plugin. */
static void migrate_record_quota(struct mail_user *user,
				 struct migrate_record *rec)
{
	struct migrate_dest_quota quota;

	if (!migrate_dest_quota_get(user, &quota))
		return;
	rec->quota_known = TRUE;
	rec->quota_limited = quota.limited;
	rec->quota_used_kb = quota.used_kb;
	rec->quota_limit_kb = quota.limit_kb;
}

void migrate_record_user_finish(struct mail_user *user,
				enum migrate_error error_code,
				const char *error, const char *mode,
				const struct migrate_sync_stats *stats,
				const char *source_protocol,
				const struct migrate_record_tls *tls)
{
	struct migrate_record rec;

	if (record_writer == NULL)
		return;
	i_zero(&rec);
	rec.result = error_code == MIGRATE_ERROR_NONE ? "ok" :
		error_code == MIGRATE_ERROR_REJECTED ? "partial" : "failed";
	rec.exit_code = migrate_error_to_exit_code(error_code);
	rec.error_code = migrate_error_name(error_code);
	rec.error = error_code == MIGRATE_ERROR_NONE ? NULL : error;
	rec.mode = mode;
	rec.folders = stats->folders;
	rec.copied = stats->messages_copied;
	rec.updated = stats->messages_updated;
	rec.deleted = stats->messages_deleted;
	rec.skipped = stats->messages_skipped;
	rec.rejected = stats->messages_rejected;
	rec.uids_changed = stats->messages_uid_changed;
	rec.pop3_order_differs = stats->messages_pop3_order_differs;
	rec.source_protocol = source_protocol;
	rec.bytes = stats->bytes_copied;
	rec.retries = stats->retries;
	if (tls != NULL)
		rec.tls = *tls;
	migrate_record_quota(user, &rec);
	migrate_record_write(record_writer, &rec);
}

void migrate_record_user_relayed(void)
{
	if (record_writer != NULL && record_writer->user != NULL)
		record_writer->user_written = TRUE;
}

void migrate_record_writer_deinit(int exit_code)
{
	struct migrate_record_writer *writer = record_writer;
	struct migrate_record rec;

	if (writer == NULL)
		return;
	if (writer->user != NULL && !writer->user_written) T_BEGIN {
		i_zero(&rec);
		rec.result = "failed";
		rec.exit_code = exit_code != 0 ?
			migrate_exit_code_normalize(exit_code) : EX_TEMPFAIL;
		rec.error_code = migrate_error_name(MIGRATE_ERROR_FAILED);
		migrate_record_write(writer, &rec);
	} T_END;
	i_set_error_handler(writer->prev_error_handler);
	i_set_fatal_handler(writer->prev_fatal_handler);
	record_writer = NULL;
	str_free(&writer->last_error);
	pool_unref(&writer->user_pool);
	pool_unref(&writer->pool);
}
