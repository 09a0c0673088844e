/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "mail-user.h"
#include "mail-storage-service.h"
#include "doveadm-print.h"
#include "migrate-plugin.h"
#include "migrate-settings.h"
#include "migrate-sync.h"
#include "doveadm-migrate.h"

/* One summary row per user, failed ones included. */
static void
cmd_migrate_sync_print(struct mail_user *user, const char *result,
		       const struct migrate_sync_stats *stats)
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
}

static int cmd_migrate_sync_run(struct doveadm_mail_cmd_context *_ctx,
				struct mail_user *user)
{
	struct migrate_cmd_context *ctx =
		container_of(_ctx, struct migrate_cmd_context, ctx);
	const struct migrate_settings *set;
	struct migrate_sync_options opts;
	struct migrate_sync_stats stats;
	struct migrate_source *source;
	enum migrate_error error_code;
	const char *error;

	i_zero(&stats);
	if (migrate_user_settings_read(user, TRUE, &set, &error) < 0) {
		i_error("migrate: %s: Invalid settings: %s",
			user->username, error);
		error_code = MIGRATE_ERROR_CONFIG;
	} else if (migrate_source_init(_ctx->storage_service,
				       _ctx->cur_service_user, user, set,
				       &source, &error_code, &error) < 0) {
		i_error("migrate: %s: %s", user->username, error);
	} else {
		i_zero(&opts);
		opts.dry_run = ctx->dry_run;
		opts.force = ctx->force;
		opts.progress = TRUE;
		/* the engine logs its own errors */
		if (migrate_sync_run(user, source, set, &opts, &stats,
				     &error_code, &error) == 0)
			error_code = MIGRATE_ERROR_NONE;
		migrate_source_deinit(&source);
	}
	cmd_migrate_sync_print(user, error_code == MIGRATE_ERROR_NONE ?
			       "ok" : "failed", &stats);
	if (error_code != MIGRATE_ERROR_NONE) {
		migrate_cmd_failed(ctx, error_code);
		return -1;
	}
	return 0;
}

static void cmd_migrate_sync_init(struct doveadm_mail_cmd_context *_ctx ATTR_UNUSED,
				  const char *const args[])
{
	static const char *const fields[] = {
		"user", "result", "folders", "unchanged", "created",
		"renamed", "folders_deleted", "copied", "updated", "deleted",
		"skipped", "foreign", "recovered", "flags_dropped",
		"deletes_withheld",
		"bytes", "seconds",
	};
	unsigned int i;

	if (args[0] != NULL)
		doveadm_mail_help_name("migrate sync");
	for (i = 0; i < N_ELEMENTS(fields); i++)
		doveadm_print_header_simple(fields[i]);
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
	default:
		return FALSE;
	}
	return TRUE;
}

static struct doveadm_mail_cmd_context *cmd_migrate_sync_alloc(void)
{
	struct migrate_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct migrate_cmd_context);
	ctx->ctx.getopt_args = "nf";
	ctx->ctx.v.parse_arg = cmd_migrate_sync_parse_arg;
	ctx->ctx.v.init = cmd_migrate_sync_init;
	ctx->ctx.v.run = cmd_migrate_sync_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TAB);
	return &ctx->ctx;
}

#define MIGRATE_SYNC_PARAMS \
DOVEADM_CMD_PARAMS_START \
DOVEADM_CMD_MAIL_COMMON \
DOVEADM_CMD_PARAM('n', "dry-run", CMD_PARAM_BOOL, 0) \
DOVEADM_CMD_PARAM('f', "force", CMD_PARAM_BOOL, 0) \
DOVEADM_CMD_PARAMS_END

struct doveadm_cmd_ver2 doveadm_cmd_migrate_sync = {
	.name = "migrate sync",
	.mail_cmd = cmd_migrate_sync_alloc,
	.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX "[-n] [-f]",
MIGRATE_SYNC_PARAMS
};

struct doveadm_cmd_ver2 doveadm_cmd_migrate = {
	.name = "migrate",
	.mail_cmd = cmd_migrate_sync_alloc,
	.usage = DOVEADM_CMD_MAIL_USAGE_PREFIX "[-n] [-f]",
MIGRATE_SYNC_PARAMS
};
