#ifndef DOVEADM_MIGRATE_H
#define DOVEADM_MIGRATE_H

#include "doveadm-mail.h"
#include "migrate-source.h"
#include "migrate-credentials.h"

/* the base of every migrate verb */
struct migrate_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	bool dry_run;
	bool force;
	bool quiet;
	/* -K: the source credentials came on stdin (from migrate batch) */
	bool credentials_stdin;
	/* from stdin, or the credential store for the current user */
	struct migrate_credentials *credentials;
};

extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_sync;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_batch;
extern struct doveadm_cmd_ver2 doveadm_cmd_migrate_check;

/* Record the failure of one user: the exit code follows the error that
   matters most over all users (a temporary failure wins). */
void migrate_cmd_failed(struct migrate_cmd_context *ctx,
			enum migrate_error error);

void doveadm_migrate_plugin_init(struct module *module);
void doveadm_migrate_plugin_deinit(void);

#endif
