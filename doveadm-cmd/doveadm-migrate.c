/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "doveadm-migrate.h"

const char *doveadm_migrate_plugin_version = DOVECOT_ABI_VERSION;

void migrate_cmd_failed(struct migrate_cmd_context *ctx,
			enum migrate_error error)
{
	int exit_code = migrate_error_to_exit_code(error);

	if (ctx->ctx.exit_code == 0 || exit_code == EX_TEMPFAIL)
		ctx->ctx.exit_code = exit_code;
}

void doveadm_migrate_plugin_init(struct module *module ATTR_UNUSED)
{
	/* "migrate sync" before "migrate": doveadm takes the first name
	   that the arguments fully match */
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_sync);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_batch);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_check);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_domain_start);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_domain_cutover);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_domain_finish);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_domain_status);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate);
}

void doveadm_migrate_plugin_deinit(void)
{
}
