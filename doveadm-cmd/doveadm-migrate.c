/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strnum.h"
#include "master-service-private.h"
#include "migrate-file.h"
#include "doveadm-migrate.h"

#include <unistd.h>
#include <limits.h>

const char *doveadm_migrate_plugin_version = DOVECOT_ABI_VERSION;

void migrate_cmd_failed(struct migrate_cmd_context *ctx,
			enum migrate_error error)
{
	ctx->ctx.exit_code = migrate_exit_code_merge(ctx->ctx.exit_code,
				migrate_error_to_exit_code(error));
}

const char *migrate_cmd_doveadm_path(void)
{
	char buf[PATH_MAX];
	const char *base;
	ssize_t len;

	len = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (len <= 0)
		return "/usr/bin/doveadm";
	buf[len] = '\0';
	/* a doveadm server (the command came through the doveadm
	   protocol) is no command line tool */
	base = strrchr(buf, '/');
	if (base != NULL && strcmp(base + 1, "doveadm-server") == 0)
		return "/usr/bin/doveadm";
	return t_strdup(buf);
}

void migrate_cmd_child_argv_init(ARRAY_TYPE(const_string) *argv)
{
	const char *arg, *const *override;

	t_array_init(argv, 16);
	array_push_back(argv, (arg = "doveadm", &arg));
	/* the child reads its settings where we read ours: from the path
	   we were given (-c, or by the master process), else as a doveadm
	   started without -c does, from the running Dovecot's config
	   socket (with -c and the default file, every child would run
	   doveconf on a file the running Dovecot need not have started
	   with).  Settings doveconf gave us in our environment are the
	   child's as well. */
	if (master_service->config_path_changed_with_param ||
	    master_service->config_path_from_master) {
		array_push_back(argv, (arg = "-c", &arg));
		arg = master_service_get_config_path(master_service);
		array_push_back(argv, &arg);
	}
	/* our -o settings hold for the child as well */
	if (array_is_created(&master_service->config_overrides)) {
		array_foreach(&master_service->config_overrides, override) {
			array_push_back(argv, (arg = "-o", &arg));
			array_push_back(argv, override);
		}
	}
}

bool migrate_cmd_param_int64(const struct doveadm_cmd_context *cctx,
			     const char *name, int64_t *value_r)
{
	const char *value;

	if (!doveadm_cmd_param_str(cctx, name, &value))
		return FALSE;
	if (str_to_int64(value, value_r) < 0) {
		i_fatal_status(EX_USAGE, "%s: --%s: not a number: %s",
			       cctx->cmd->name, name, value);
	}
	return TRUE;
}

void migrate_cmd_protect_secrets(const char *cmd_name)
{
	const char *error;

	if (migrate_credentials_protect_process(&error) < 0)
		i_fatal_status(EX_TEMPFAIL, "%s: %s", cmd_name, error);
}

int migrate_cmd_write_report(const char *cmd_name, const char *path,
			     const string_t *data)
{
	const char *error;

	/* user names, folder names and errors of the customer's accounts:
	   for root only */
	if (migrate_file_replace(path, str_data(data), str_len(data), 0600,
				 (uid_t)-1, (gid_t)-1, &error) < 0) {
		i_error("%s: %s", cmd_name, error);
		return -1;
	}
	return 0;
}

const char *migrate_cmd_plugin_setting(const char *name)
{
	const char *const *envs;
	unsigned int i, count;

	if (!array_is_created(&doveadm_settings->plugin_envs))
		return NULL;
	envs = array_get(&doveadm_settings->plugin_envs, &count);
	for (i = 0; i + 1 < count; i += 2) {
		if (strcmp(envs[i], name) == 0)
			return envs[i + 1][0] == '\0' ? NULL : envs[i + 1];
	}
	return NULL;
}

void doveadm_migrate_plugin_init(struct module *module ATTR_UNUSED)
{
	migrate_cmd_domain_settings_register();
	/* "migrate sync" before "migrate": doveadm takes the first name
	   that the arguments fully match */
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_sync);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_batch);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_check);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_domain_start);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_domain_cutover);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_domain_finish);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_domain_status);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_worker);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_archive);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_index);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_prepare);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate_accounts);
	doveadm_cmd_register_ver2(&doveadm_cmd_migrate);
}

void doveadm_migrate_plugin_deinit(void)
{
}
