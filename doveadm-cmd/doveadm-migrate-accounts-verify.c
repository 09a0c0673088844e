/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "net.h"
#include "master-service.h"
#include "auth-master.h"
#include "mail-storage-service.h"
#include "doveadm-settings.h"
#include "doveadm-migrate.h"

/* doveadm migrate accounts, after the store: every account the store now
   holds as the template says is looked up through the running Dovecot's
   auth, as doveadm user does (the userdb lookup, then the mail user's
   settings, where the userdb fields become plugin settings). */

/* as an IMAP login looks the user up.  One service only: the settings of
   another one are read into doveadm's own settings (replacing them under
   the storage service's feet). */
#define ACCOUNTS_VERIFY_SERVICE "imap"

static bool accounts_verify_wanted(enum migrate_account_result result)
{
	return result == MIGRATE_ACCOUNT_CREATED ||
		result == MIGRATE_ACCOUNT_UPDATED ||
		result == MIGRATE_ACCOUNT_UNCHANGED;
}

/* what the row was, for the reason of a failed or unverified one */
static const char *
accounts_verify_was(const struct migrate_account_report *report)
{
	const char *name = migrate_account_result_name(report->result);

	if (report->reason == NULL)
		return name;
	return t_strdup_printf("%s (%s)", name, report->reason);
}

/* auth-userdb takes connections: auth is running (a full backlog still
   means it is) */
static int accounts_auth_running(const char *path, const char **error_r)
{
	int fd;

	fd = net_connect_unix(path);
	if (fd == -1 && errno != EAGAIN) {
		*error_r = t_strdup_printf("connect(%s) failed: %m", path);
		return -1;
	}
	i_close_fd(&fd);
	return 0;
}

/* The auth cache (auth_cache_size) may hold an answer from before the
   write: "unknown user" for a new account, the old password and fields
   for an updated one.  The whole cache is flushed, as doveadm auth cache
   flush does: a user's own entries would not do, since Dovecot 2.3 keys
   the userdb entries of a userdb with default_fields by the user name and
   those fields run together, which a flush by name does not match. */
static void
accounts_cache_flush(const ARRAY_TYPE(migrate_account_report) *reports)
{
	const struct migrate_account_report *report;
	struct auth_master_connection *conn;
	unsigned int count;
	bool written = FALSE;

	array_foreach(reports, report) {
		if (report->result == MIGRATE_ACCOUNT_CREATED ||
		    report->result == MIGRATE_ACCOUNT_UPDATED)
			written = TRUE;
	}
	if (!written)
		return;
	conn = auth_master_init(t_strconcat(doveadm_settings->base_dir,
					    "/auth-master", NULL), 0);
	if (auth_master_cache_flush(conn, NULL, &count) < 0) {
		i_warning("migrate accounts: Flushing Dovecot's auth cache "
			  "failed: logins may see the old entries until "
			  "auth_cache_ttl has passed");
	}
	auth_master_deinit(&conn);
}

/* One account: 1 when the lookup works, 0 when the user is unknown, -1
   with the reason. */
static int
accounts_verify_user(struct mail_storage_service_ctx *storage,
		     const char *user, const char **error_r)
{
	struct mail_storage_service_input input;
	struct mail_storage_service_user *service_user;
	struct mail_user *mail_user;
	int ret;

	i_zero(&input);
	input.module = "mail";
	input.service = ACCOUNTS_VERIFY_SERVICE;
	input.username = user;
	ret = mail_storage_service_lookup_next(storage, &input, &service_user,
					       &mail_user, error_r);
	if (ret <= 0)
		return ret == 0 ? 0 : -1;
	mail_user_deinit(&mail_user);
	mail_storage_service_user_unref(&service_user);
	return 1;
}

static void
accounts_verify_all(ARRAY_TYPE(migrate_account_report) *reports,
		    const char *store_hint, pool_t pool)
{
	struct mail_storage_service_ctx *storage;
	struct migrate_account_report *report;
	const char *error;
	int ret;

	storage = mail_storage_service_init(master_service, NULL,
		MAIL_STORAGE_SERVICE_FLAG_USERDB_LOOKUP |
		MAIL_STORAGE_SERVICE_FLAG_NO_CHDIR |
		MAIL_STORAGE_SERVICE_FLAG_NO_LOG_INIT |
		MAIL_STORAGE_SERVICE_FLAG_NO_PLUGINS |
		MAIL_STORAGE_SERVICE_FLAG_NO_NAMESPACES |
		MAIL_STORAGE_SERVICE_FLAG_NO_RESTRICT_ACCESS);
	mail_storage_service_set_auth_conn(storage,
		auth_master_init(doveadm_settings->auth_socket_path, 0));
	array_foreach_modifiable(reports, report) T_BEGIN {
		if (accounts_verify_wanted(report->result) &&
		    (ret = accounts_verify_user(storage, report->account->user,
						&error)) <= 0) {
			if (ret == 0)
				error = t_strconcat("unknown user ",
						    store_hint, NULL);
			report->reason = p_strdup_printf(pool,
				"%s, but Dovecot cannot look it up: %s",
				accounts_verify_was(report), error);
			report->result = MIGRATE_ACCOUNT_FAILED;
		}
	} T_END;
	mail_storage_service_deinit(&storage);
}

int migrate_accounts_verify(ARRAY_TYPE(migrate_account_report) *reports,
			    const char *store_hint, pool_t pool,
			    const char **error_r)
{
	struct migrate_account_report *report;
	const char *error;

	if (accounts_auth_running(doveadm_settings->auth_socket_path,
				  &error) < 0) {
		*error_r = t_strdup_printf("Dovecot's auth is not running (%s)",
					   error);
		array_foreach_modifiable(reports, report) {
			if (!accounts_verify_wanted(report->result))
				continue;
			report->reason = p_strdup_printf(pool,
				"%s, not looked up: Dovecot's auth is not "
				"running", accounts_verify_was(report));
			report->result = MIGRATE_ACCOUNT_UNVERIFIED;
		}
		return -1;
	}
	accounts_cache_flush(reports);
	accounts_verify_all(reports, store_hint, pool);
	return 0;
}
