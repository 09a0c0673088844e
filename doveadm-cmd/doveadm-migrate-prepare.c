/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "mail-user.h"
#include "doveadm-print.h"
#include "migrate-plugin.h"
#include "migrate-settings.h"
#include "migrate-prepare.h"
#include "doveadm-migrate.h"
#include "doveadm-migrate-progress.h"

/* doveadm migrate archive | index | prepare: before cutover, big INBOX and
   Sent folders get per-year folders and everything gets full-text
   indexed.  -d DOMAIN runs them for every user of the domain (the
   userdb's user iteration, as -u '*@DOMAIN' would). */

enum prepare_steps {
	PREPARE_ARCHIVE = 0x01,
	PREPARE_INDEX = 0x02,
};

struct prepare_cmd_context {
	struct migrate_cmd_context mctx;
	enum prepare_steps steps;
};

static void
prepare_print(struct mail_user *user, enum migrate_error error,
	      enum prepare_steps steps,
	      const struct migrate_archive_stats *astats,
	      const struct migrate_index_stats *istats)
{
	doveadm_print(user->username);
	doveadm_print(error == MIGRATE_ERROR_NONE ? "ok" : "failed");
	if ((steps & PREPARE_ARCHIVE) != 0) {
		doveadm_print_num(astats->folders_archived);
		doveadm_print_num(astats->folders_created);
		doveadm_print_num(astats->messages_moved);
		doveadm_print_num(astats->messages_recovered);
	}
	if ((steps & PREPARE_INDEX) != 0) {
		doveadm_print_num(istats->folders);
		doveadm_print_num(istats->messages_indexed);
	}
	doveadm_print(t_strdup_printf("%u.%03u",
		(astats->total_msecs + istats->total_msecs) / 1000,
		(astats->total_msecs + istats->total_msecs) % 1000));
}

static int cmd_migrate_prepare_run(struct doveadm_mail_cmd_context *_ctx,
				   struct mail_user *user)
{
	struct prepare_cmd_context *ctx =
		container_of(_ctx, struct prepare_cmd_context, mctx.ctx);
	const struct migrate_settings *set;
	struct migrate_prepare_options opts;
	struct migrate_cmd_progress progress;
	struct migrate_archive_stats astats;
	struct migrate_index_stats istats;
	enum migrate_error error_code = MIGRATE_ERROR_NONE;
	const char *error;

	i_zero(&opts);
	i_zero(&astats);
	i_zero(&istats);
	opts.dry_run = ctx->mctx.dry_run;
	if (!ctx->mctx.quiet) {
		migrate_cmd_progress_init(&progress);
		opts.progress_callback = migrate_cmd_progress_show;
		opts.progress_context = &progress;
	}
	if ((ctx->steps & PREPARE_ARCHIVE) != 0) {
		if (migrate_user_settings_read(user, FALSE, &set,
					       &error) < 0) {
			i_error("migrate archive: %s: Invalid settings: %s",
				user->username, error);
			error_code = MIGRATE_ERROR_CONFIG;
		} else {
			(void)migrate_archive_run(user, set, &opts, &astats,
						  &error_code, &error);
		}
	}
	/* an index of folders about to be reorganised would be redone */
	if ((ctx->steps & PREPARE_INDEX) != 0 &&
	    error_code == MIGRATE_ERROR_NONE && !opts.dry_run)
		(void)migrate_index_run(user, &opts, &istats, &error_code,
					&error);
	if (!ctx->mctx.quiet)
		migrate_cmd_progress_finish(&progress);
	prepare_print(user, error_code, ctx->steps, &astats, &istats);
	if (error_code != MIGRATE_ERROR_NONE) {
		migrate_cmd_failed(&ctx->mctx, error_code);
		return -1;
	}
	return 0;
}

static void cmd_migrate_prepare_init(struct doveadm_mail_cmd_context *_ctx,
				     const char *const args[])
{
	struct prepare_cmd_context *ctx =
		container_of(_ctx, struct prepare_cmd_context, mctx.ctx);

	if (args[0] != NULL)
		i_fatal_status(EX_USAGE, "migrate: Unexpected argument: %s",
			       args[0]);
	doveadm_print_header_simple("user");
	doveadm_print_header_simple("result");
	if ((ctx->steps & PREPARE_ARCHIVE) != 0) {
		doveadm_print_header_simple("archived");
		doveadm_print_header_simple("created");
		doveadm_print_header_simple("moved");
		doveadm_print_header_simple("recovered");
	}
	if ((ctx->steps & PREPARE_INDEX) != 0) {
		doveadm_print_header_simple("folders");
		doveadm_print_header_simple("indexed");
	}
	doveadm_print_header_simple("seconds");
}

static bool
cmd_migrate_prepare_parse_arg(struct doveadm_mail_cmd_context *_ctx, int c)
{
	struct prepare_cmd_context *ctx =
		container_of(_ctx, struct prepare_cmd_context, mctx.ctx);

	switch (c) {
	case 'n':
		if ((ctx->steps & PREPARE_ARCHIVE) == 0)
			return FALSE;
		ctx->mctx.dry_run = TRUE;
		break;
	case 'q':
		ctx->mctx.quiet = TRUE;
		break;
	case 'd':
		/* turned into -u '*@DOMAIN' before we get here */
		break;
	default:
		return FALSE;
	}
	return TRUE;
}

static struct doveadm_mail_cmd_context *
cmd_migrate_prepare_alloc_steps(enum prepare_steps steps)
{
	struct prepare_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct prepare_cmd_context);
	ctx->steps = steps;
	ctx->mctx.ctx.getopt_args = "nqd:";
	ctx->mctx.ctx.v.parse_arg = cmd_migrate_prepare_parse_arg;
	ctx->mctx.ctx.v.init = cmd_migrate_prepare_init;
	ctx->mctx.ctx.v.run = cmd_migrate_prepare_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->mctx.ctx;
}

static struct doveadm_mail_cmd_context *cmd_migrate_archive_alloc(void)
{
	return cmd_migrate_prepare_alloc_steps(PREPARE_ARCHIVE);
}

static struct doveadm_mail_cmd_context *cmd_migrate_index_alloc(void)
{
	return cmd_migrate_prepare_alloc_steps(PREPARE_INDEX);
}

static struct doveadm_mail_cmd_context *cmd_migrate_prepare_alloc(void)
{
	return cmd_migrate_prepare_alloc_steps(PREPARE_ARCHIVE | PREPARE_INDEX);
}

/* -d DOMAIN: every user of the domain, through doveadm's own user
   iteration with the mask *@DOMAIN. */
static void cmd_migrate_prepare_cmd(struct doveadm_cmd_context *cctx)
{
	struct doveadm_cmd_param *argv =
		(struct doveadm_cmd_param *)cctx->argv;
	const char *domain;
	int i;

	/* a doveadm client that ran -d sends each user of the domain to
	   its backend with -d and the user's mask: the user it names is the
	   one */
	if (cctx->conn_type != DOVEADM_CONNECTION_TYPE_CLI) {
		doveadm_cmd_ver2_to_mail_cmd_wrapper(cctx);
		return;
	}
	if (doveadm_cmd_param_str(cctx, "domain", &domain)) {
		if (domain[0] == '\0' || strpbrk(domain, "@*?") != NULL)
			i_fatal_status(EX_USAGE, "%s: -d: Invalid domain: %s",
				       cctx->cmd->name, domain);
		for (i = 0; i < cctx->argc; i++) {
			if (strcmp(argv[i].name, "user") != 0)
				continue;
			if (argv[i].value_set)
				i_fatal_status(EX_USAGE, "%s: -d goes without "
					       "-u", cctx->cmd->name);
			/* used only within the wrapper call below: the data
			   stack frame we are called in outlives it (and a
			   long-lived doveadm server frees it afterwards) */
			argv[i].value.v_string =
				t_strconcat("*@", domain, NULL);
			argv[i].value_set = TRUE;
		}
	}
	doveadm_cmd_ver2_to_mail_cmd_wrapper(cctx);
}

#define PREPARE_USAGE "[-q] -u <user> | -d <domain> | -A | -F <file>"

struct doveadm_cmd_ver2 doveadm_cmd_migrate_archive = {
	.name = "migrate archive",
	.mail_cmd = cmd_migrate_archive_alloc,
	.cmd = cmd_migrate_prepare_cmd,
	.usage = "[-n] " PREPARE_USAGE,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('n', "dry-run", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('q', "quiet", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('d', "domain", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_migrate_index = {
	.name = "migrate index",
	.mail_cmd = cmd_migrate_index_alloc,
	.cmd = cmd_migrate_prepare_cmd,
	.usage = PREPARE_USAGE,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('q', "quiet", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('d', "domain", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_migrate_prepare = {
	.name = "migrate prepare",
	.mail_cmd = cmd_migrate_prepare_alloc,
	.cmd = cmd_migrate_prepare_cmd,
	.usage = PREPARE_USAGE,
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_MAIL_COMMON
DOVEADM_CMD_PARAM('q', "quiet", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('d', "domain", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAMS_END
};
