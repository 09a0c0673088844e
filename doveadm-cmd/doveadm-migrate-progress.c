/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "time-util.h"
#include "doveadm-migrate-progress.h"

#include <stdio.h>
#include <unistd.h>

#define MIGRATE_PROGRESS_TTY_MSECS 1000
#define MIGRATE_PROGRESS_LOG_MSECS 15000

void migrate_cmd_progress_init(struct migrate_cmd_progress *progress)
{
	i_zero(progress);
	i_gettimeofday(&progress->last);
	progress->tty = isatty(STDERR_FILENO) != 0;
}

static bool
progress_due(struct migrate_cmd_progress *ctx, bool force)
{
	struct timeval now;

	i_gettimeofday(&now);
	if (!force && timeval_diff_msecs(&now, &ctx->last) <
	    (ctx->tty ? MIGRATE_PROGRESS_TTY_MSECS : MIGRATE_PROGRESS_LOG_MSECS))
		return FALSE;
	ctx->last = now;
	return TRUE;
}

static void
progress_show_sync(const struct migrate_progress *p,
		   struct migrate_cmd_progress *ctx)
{
	long long eta_secs = -1;
	double mb, rate;

	mb = p->bytes / (1024.0*1024.0);
	rate = p->elapsed_msecs == 0 ? 0 : mb * 1000.0 / p->elapsed_msecs;
	/* the folder's remaining messages at the folder's rate so far */
	if (p->done > 0 && p->total >= p->done) {
		eta_secs = (long long)p->folder_msecs *
			(p->total - p->done) / p->done / 1000;
	}
	fprintf(stderr, "%smigrate: [%u/%u] %s: %u/%u messages, ETA %s; "
		"total %u copied, %.1f MB, %.1f MB/s, %u s%s",
		ctx->tty ? "\r\033[K" : "",
		p->folder_idx, p->folder_count, p->folder, p->done, p->total,
		eta_secs < 0 ? "?" : t_strdup_printf("%llds", eta_secs),
		p->copied, mb, rate, p->elapsed_msecs / 1000,
		ctx->tty ? "" : "\n");
}

void migrate_cmd_progress_show(const struct migrate_progress *p,
			       void *context)
{
	struct migrate_cmd_progress *ctx = context;

	if (!progress_due(ctx, p->folder_done))
		return;
	if (strcmp(p->what, "sync") == 0)
		progress_show_sync(p, ctx);
	else {
		fprintf(stderr, "%smigrate %s: %s: %u/%u messages, %u s%s",
			ctx->tty ? "\r\033[K" : "", p->what, p->folder,
			p->done, p->total, p->elapsed_msecs / 1000,
			ctx->tty ? "" : "\n");
	}
	ctx->printed = TRUE;
}

void migrate_cmd_progress_finish(struct migrate_cmd_progress *progress)
{
	if (progress->printed && progress->tty)
		fputc('\n', stderr);
	progress->printed = FALSE;
}
