/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* doveadm migrate domain start|cutover|finish|status: the phases of a
   domain's migration, in the domain dict that doveadm, LMTP and
   dovecot-lda read. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "ioloop.h"
#include "net.h"
#include "mkdir-parents.h"
#include "strnum.h"
#include "ipwd.h"
#include "settings-parser.h"
#include "master-service.h"
#include "master-service-settings.h"
#include "doveadm.h"
#include "doveadm-cmd.h"
#include "doveadm-print.h"
#include "doveadm-settings.h"
#include "migrate-domain.h"
#include "migrate-settings.h"
#include "migrate-tls.h"
#include "migrate-text.h"
#include "migrate-credentials.h"
#include "doveadm-migrate.h"

#include <fcntl.h>

/* mail_gid of doveadm's configuration (doveadm's own settings do not
   have it): the group the mail processes run as */
struct migrate_cmd_mail_settings {
	const char *mail_gid;
};
static const struct setting_define migrate_cmd_mail_setting_defines[] = {
	SETTING_DEFINE_STRUCT_STR("mail_gid", mail_gid,
				  struct migrate_cmd_mail_settings),
	SETTING_DEFINE_LIST_END
};
static const struct migrate_cmd_mail_settings
migrate_cmd_mail_default_settings = {
	.mail_gid = "",
};
static const struct setting_parser_info migrate_cmd_mail_setting_parser_info = {
	.module_name = "mail",
	.defines = migrate_cmd_mail_setting_defines,
	.defaults = &migrate_cmd_mail_default_settings,
	.type_offset = SIZE_MAX,
	.struct_size = sizeof(struct migrate_cmd_mail_settings),
	.parent_offset = SIZE_MAX,
};

void migrate_cmd_domain_settings_register(void)
{
	doveadm_setting_roots_add(&migrate_cmd_mail_setting_parser_info);
}

/* mail_gid as a gid, (gid_t)-1 when it is unset or unknown */
static gid_t migrate_cmd_mail_gid(void)
{
	const struct migrate_cmd_mail_settings *set =
		doveadm_setting_roots_get_settings(
			&migrate_cmd_mail_setting_parser_info);
	struct group grp;
	gid_t gid;

	/* NULL when the settings were read before the module was loaded */
	if (set == NULL || set->mail_gid[0] == '\0')
		return (gid_t)-1;
	if (str_to_gid(set->mail_gid, &gid) == 0)
		return gid;
	if (i_getgrnam(set->mail_gid, &grp) <= 0) {
		i_warning("migrate: mail_gid %s: no such group", set->mail_gid);
		return (gid_t)-1;
	}
	return grp.gr_gid;
}

/* The default file dict holds the accounts' results besides the phases:
   root writes it, the mail processes' group reads it (dovecot-lda looks
   the phase up as the mail user), no one else.  Dovecot's file dict keeps
   the mode and group of the file it replaces, so it is made right once,
   before the dict first writes it. */
static int migrate_cmd_domain_dict_create(const char *path,
					  const char **error_r)
{
	gid_t gid;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
	if (fd == -1) {
		/* EACCES: not root, and then not writing it either */
		if (errno == EEXIST || errno == EACCES)
			return 0;
		*error_r = t_strdup_printf("open(%s) failed: %m", path);
		return -1;
	}
	gid = migrate_cmd_mail_gid();
	if (gid == (gid_t)-1) {
		i_warning("migrate: %s: created 0600 (mail_gid is not set): "
			  "dovecot-lda with migrate_lda cannot read it until "
			  "it is given the mail processes' group and mode 0640",
			  path);
	} else if (fchown(fd, (uid_t)-1, gid) < 0 || fchmod(fd, 0640) < 0) {
		*error_r = t_strdup_printf("fchown/fchmod(%s) failed: %m",
					   path);
		i_close_fd(&fd);
		i_unlink(path);
		return -1;
	}
	i_close_fd(&fd);
	return 0;
}

int migrate_cmd_domain_store_open(struct migrate_domain_store **store_r,
				  const char **error_r)
{
	const struct master_service_settings *mset =
		master_service_settings_get(master_service);
	const char *setting =
		migrate_cmd_plugin_setting(MIGRATE_SETTING_DOMAIN_DICT);

	if (setting == NULL) {
		/* the default file dict lives in a directory of ours */
		const char *dir = t_strconcat(mset->state_dir, "/migrate", NULL);

		if (mkdir_parents(dir, 0755) < 0 && errno != EEXIST &&
		    errno != EACCES) {
			*error_r = t_strdup_printf("mkdir(%s) failed: %m", dir);
			return -1;
		}
		if (migrate_cmd_domain_dict_create(
			t_strconcat(dir, "/domains", NULL), error_r) < 0)
			return -1;
	}
	return migrate_domain_store_open(
		migrate_domain_dict_uri(setting, mset->state_dir),
		mset->base_dir, store_r, error_r);
}

/* Opens the store and looks the domain up (phase none when it never
   migrated); exits on errors. */
static struct migrate_domain_store *
domain_cmd_init(struct doveadm_cmd_context *cctx,
		struct migrate_domain *domain)
{
	struct migrate_domain_store *store;
	const char *name, *error;
	int ret;

	if (!doveadm_cmd_param_str(cctx, "domain", &name) || name[0] == '\0' ||
	    strchr(name, '@') != NULL || strchr(name, '/') != NULL)
		help_ver2(cctx->cmd);
	if (migrate_cmd_domain_store_open(&store, &error) < 0)
		i_fatal_status(EX_CONFIG, "%s: %s", cctx->cmd->name, error);
	ret = migrate_domain_lookup(store, name, pool_datastack_create(),
				    domain, &error);
	if (ret < 0) {
		migrate_domain_store_close(&store);
		i_fatal_status(EX_TEMPFAIL, "%s: %s", cctx->cmd->name, error);
	}
	return store;
}

/* The phase change of the command (--force: start a finished domain
   again), or exit with why it is refused. */
static void
domain_cmd_transition(struct doveadm_cmd_context *cctx,
		      struct migrate_domain_store **store,
		      struct migrate_domain *domain,
		      enum migrate_domain_phase to)
{
	const char *error;
	bool force = FALSE;

	(void)doveadm_cmd_param_bool(cctx, "force", &force);
	if (migrate_domain_transition(domain, to, force, ioloop_time, domain,
				      &error) < 0) {
		migrate_domain_store_close(store);
		i_fatal_status(EX_USAGE, "%s: %s", cctx->cmd->name, error);
	}
}

static void domain_cmd_save(struct doveadm_cmd_context *cctx,
			    struct migrate_domain_store **store,
			    const struct migrate_domain *domain)
{
	const char *error;

	if (migrate_domain_save(*store, domain, &error) < 0) {
		i_error("%s: %s", cctx->cmd->name, error);
		doveadm_exit_code = EX_TEMPFAIL;
	} else {
		i_info("%s: %s is now in phase %s", cctx->cmd->name,
		       domain->name, migrate_domain_phase_to_str(domain->phase));
	}
	migrate_domain_store_close(store);
}

/* host[:port] -> its addresses, resolved now: Dovecot does no MX lookup
   when it relays, and the name may stop answering after the cutover */
static int
domain_resolve_mx(const char *value, const char **host_r, in_port_t *port_r,
		  const char **addrs_r, const char **error_r)
{
	struct ip_addr *ips;
	unsigned int i, count;
	const char *host;
	string_t *str;
	int ret;

	if (net_str2hostport(value, 25, &host, port_r) < 0 || *port_r == 0) {
		*error_r = t_strdup_printf("--old-mx %s: not host[:port]",
					   value);
		return -1;
	}
	ret = net_gethostbyname(host, &ips, &count);
	if (ret != 0) {
		*error_r = t_strdup_printf("--old-mx %s: cannot resolve %s: %s",
					   value, host, net_gethosterror(ret));
		return -1;
	}
	str = t_str_new(64);
	for (i = 0; i < count; i++) {
		if (i > 0)
			str_append_c(str, ' ');
		str_append(str, net_ip2addr(&ips[i]));
	}
	*host_r = host;
	*addrs_r = str_c(str);
	return 0;
}

static void cmd_migrate_domain_start(struct doveadm_cmd_context *cctx)
{
	struct migrate_domain_store *store;
	struct migrate_domain domain;
	const char *old_mx, *tls_name = NULL, *protocol_str = NULL;
	const char *host, *addrs, *error;
	enum migrate_source_protocol protocol;
	in_port_t port;
	int64_t max_conns = 0;

	if (!doveadm_cmd_param_str(cctx, "old-mx", &old_mx))
		help_ver2(cctx->cmd);
	if (doveadm_cmd_param_str(cctx, "source-tls-name", &tls_name) &&
	    !migrate_tls_name_valid(tls_name)) {
		i_fatal_status(EX_USAGE, "%s: --source-tls-name %s: not a host "
			       "name (the name in the old server's "
			       "certificate)", cctx->cmd->name, tls_name);
	}
	if (doveadm_cmd_param_str(cctx, "source-protocol", &protocol_str)) {
		if (!migrate_source_protocol_parse(protocol_str, &protocol)) {
			i_fatal_status(EX_USAGE, "%s: --source-protocol %s: "
				       "not imap, pop3 or auto",
				       cctx->cmd->name, protocol_str);
		}
		protocol_str = migrate_source_protocol_to_str(protocol);
	}
	if (migrate_cmd_param_int64(cctx, "max-connections-per-host",
				    &max_conns) &&
	    max_conns != 0 && (max_conns < 2 || max_conns > 10000)) {
		i_fatal_status(EX_USAGE, "%s: --max-connections-per-host "
			       "must be 0 (batch's default) or 2..10000",
			       cctx->cmd->name);
	}
	store = domain_cmd_init(cctx, &domain);
	domain_cmd_transition(cctx, &store, &domain, MIGRATE_DOMAIN_MIGRATING);
	if (domain_resolve_mx(old_mx, &host, &port, &addrs, &error) < 0) {
		migrate_domain_store_close(&store);
		i_fatal_status(EX_USAGE, "%s: %s", cctx->cmd->name, error);
	}
	domain.old_mx = old_mx;
	domain.old_mx_addrs = addrs;
	domain.old_mx_port = port;
	/* a new migration may come from another provider */
	domain.source_tls_name = tls_name;
	domain.source_protocol = protocol_str;
	domain.max_conns_per_host = max_conns;
	domain_cmd_save(cctx, &store, &domain);
	if (tls_name != NULL) {
		i_info("%s: %s: the certificates of sources given by IP "
		       "address are verified as %s", cctx->cmd->name,
		       domain.name, tls_name);
	}
	if (protocol_str != NULL) {
		i_info("%s: %s: its accounts' sources are read with %s = %s, "
		       "unless a template row says otherwise",
		       cctx->cmd->name, domain.name,
		       MIGRATE_SETTING_SOURCE_PROTOCOL, protocol_str);
	}
}

static void cmd_migrate_domain_cutover(struct doveadm_cmd_context *cctx)
{
	struct migrate_domain_store *store;
	struct migrate_domain domain;

	store = domain_cmd_init(cctx, &domain);
	/* one write: the syncs see the final phase (no deletions) at the
	   same moment that delivery sees the domain as ours again */
	domain_cmd_transition(cctx, &store, &domain, MIGRATE_DOMAIN_CUTOVER);
	domain_cmd_save(cctx, &store, &domain);
}

static void cmd_migrate_domain_finish(struct doveadm_cmd_context *cctx)
{
	struct migrate_domain_store *store;
	struct migrate_domain domain;
	const char *error;
	unsigned int count;

	store = domain_cmd_init(cctx, &domain);
	domain_cmd_transition(cctx, &store, &domain, MIGRATE_DOMAIN_FINISHED);
	if (migrate_credentials_delete_domain(
		migrate_credentials_dir(
			master_service_settings_get(master_service)->state_dir),
		domain.name, &count, &error) < 0) {
		migrate_domain_store_close(&store);
		i_fatal_status(EX_TEMPFAIL, "%s: %s", cctx->cmd->name, error);
	}
	i_info("%s: %s: deleted the stored source credentials of %u "
	       "account%s", cctx->cmd->name, domain.name, count,
	       count == 1 ? "" : "s");
	domain_cmd_save(cctx, &store, &domain);
}

static void
domain_status_print(const struct migrate_domain *domain,
		    const ARRAY_TYPE(migrate_domain_account) *accounts)
{
	const struct migrate_domain_account *account;
	unsigned int ok = 0;

	array_foreach(accounts, account) {
		if (account->exit_code == 0)
			ok++;
	}
	doveadm_print(domain->name);
	doveadm_print(migrate_domain_phase_to_str(domain->phase));
	doveadm_print(migrate_domain_time_str(domain->started));
	doveadm_print(migrate_domain_time_str(domain->cutover));
	doveadm_print(migrate_domain_time_str(domain->finished));
	doveadm_print(domain->old_mx == NULL ? "-" :
		      t_strdup_printf("%s (%s)", domain->old_mx,
				      domain->old_mx_addrs));
	doveadm_print_num(array_count(accounts));
	doveadm_print_num(ok);
	doveadm_print_num(array_count(accounts) - ok);
}

/* the certificate name for sources given by IP, and the pins */
static void
domain_status_tls(struct doveadm_cmd_context *cctx,
		  struct migrate_domain_store *store,
		  const struct migrate_domain *domain)
{
	ARRAY_TYPE(migrate_domain_pin) pins;
	const struct migrate_domain_pin *pin;
	const char *error;

	if (domain->source_tls_name != NULL) {
		i_info("%s: %s: sources given by IP address are verified as "
		       "%s", cctx->cmd->name, domain->name,
		       domain->source_tls_name);
	}
	if (domain->source_protocol != NULL) {
		i_info("%s: %s: sources are read with %s = %s",
		       cctx->cmd->name, domain->name,
		       MIGRATE_SETTING_SOURCE_PROTOCOL,
		       domain->source_protocol);
	}
	if (domain->max_conns_per_host != 0) {
		i_info("%s: %s: batch keeps at most %u connections per "
		       "source host", cctx->cmd->name, domain->name,
		       domain->max_conns_per_host);
	}
	t_array_init(&pins, 4);
	if (migrate_domain_pins(store, domain->name, pool_datastack_create(),
				&pins, &error) < 0) {
		i_error("%s: %s", cctx->cmd->name, error);
		doveadm_exit_code = EX_TEMPFAIL;
		return;
	}
	array_foreach(&pins, pin) {
		i_info("%s: %s: source %s pinned to SHA-256 %s (subject %s, "
		       "expires %s) since %s", cctx->cmd->name, domain->name,
		       pin->source, pin->sha256,
		       pin->subject == NULL ? "-" : pin->subject,
		       pin->not_after == NULL ? "-" : pin->not_after,
		       migrate_domain_time_str(pin->when));
	}
}

/* "domain status DOMAIN": a row per account, the phase and the TLS
   name and pins logged. */
static void
domain_status_one(struct doveadm_cmd_context *cctx,
		  struct migrate_domain_store *store, const char *name)
{
	static const char *const account_headers[] = {
		"domain", "phase", "user", "last_sync", "result", "copied",
		"bytes", "node", "reason",
	};
	struct migrate_domain domain;
	ARRAY_TYPE(migrate_domain_account) accounts;
	const struct migrate_domain_account *account;
	const char *error;
	unsigned int i;
	int ret;

	ret = migrate_domain_lookup(store, name, pool_datastack_create(),
				    &domain, &error);
	t_array_init(&accounts, 16);
	if (ret > 0 &&
	    migrate_domain_accounts(store, domain.name, pool_datastack_create(),
				    &accounts, &error) < 0)
		ret = -1;
	if (ret < 0) {
		migrate_domain_store_close(&store);
		i_fatal_status(EX_TEMPFAIL, "%s: %s", cctx->cmd->name, error);
	}
	if (ret == 0) {
		i_error("%s: %s has never been migrated", cctx->cmd->name, name);
		doveadm_exit_code = EX_NOUSER;
		return;
	}
	for (i = 0; i < N_ELEMENTS(account_headers); i++)
		doveadm_print_header_simple(account_headers[i]);
	array_foreach(&accounts, account) {
		doveadm_print(domain.name);
		doveadm_print(migrate_domain_phase_to_str(domain.phase));
		doveadm_print(account->user);
		doveadm_print(migrate_domain_time_str(account->when));
		doveadm_print(account->result == NULL ? "-" : account->result);
		doveadm_print_num(account->copied);
		doveadm_print_num(account->bytes);
		doveadm_print(account->node == NULL ? "-" : account->node);
		/* recorded by an older version, maybe as it came */
		doveadm_print(account->reason == NULL ? "" :
			      migrate_text_escape(account->reason));
	}
	i_info("%s: %s: phase %s since %s, old MX %s (%s), %u accounts",
	       cctx->cmd->name, domain.name,
	       migrate_domain_phase_to_str(domain.phase),
	       migrate_domain_time_str(domain.phase == MIGRATE_DOMAIN_FINISHED ?
			domain.finished :
			domain.phase == MIGRATE_DOMAIN_CUTOVER ?
			domain.cutover : domain.started),
	       domain.old_mx == NULL ? "-" : domain.old_mx,
	       domain.old_mx_addrs == NULL ? "-" : domain.old_mx_addrs,
	       array_count(&accounts));
	domain_status_tls(cctx, store, &domain);
}

/* "domain status": a row per domain. */
static void
domain_status_all(struct doveadm_cmd_context *cctx,
		  struct migrate_domain_store *store)
{
	static const char *const domain_headers[] = {
		"domain", "phase", "started", "cutover", "finished", "old_mx",
		"accounts", "ok", "failed",
	};
	struct migrate_domain domain;
	ARRAY_TYPE(const_string) names;
	ARRAY_TYPE(migrate_domain_account) accounts;
	const char *name, *error;
	unsigned int i;

	t_array_init(&names, 8);
	if (migrate_domain_list(store, pool_datastack_create(), &names,
				&error) < 0) {
		migrate_domain_store_close(&store);
		i_fatal_status(EX_TEMPFAIL, "%s: %s", cctx->cmd->name, error);
	}
	for (i = 0; i < N_ELEMENTS(domain_headers); i++)
		doveadm_print_header_simple(domain_headers[i]);
	array_foreach_elem(&names, name) T_BEGIN {
		t_array_init(&accounts, 16);
		if (migrate_domain_lookup(store, name, pool_datastack_create(),
					  &domain, &error) <= 0 ||
		    migrate_domain_accounts(store, name,
					    pool_datastack_create(), &accounts,
					    &error) < 0) {
			i_error("%s: %s: %s", cctx->cmd->name, name, error);
			doveadm_exit_code = EX_TEMPFAIL;
		} else {
			domain_status_print(&domain, &accounts);
		}
	} T_END;
}

static void cmd_migrate_domain_status(struct doveadm_cmd_context *cctx)
{
	struct migrate_domain_store *store;
	const char *name, *error;

	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	if (migrate_cmd_domain_store_open(&store, &error) < 0)
		i_fatal_status(EX_CONFIG, "%s: %s", cctx->cmd->name, error);
	if (doveadm_cmd_param_str(cctx, "domain", &name))
		domain_status_one(cctx, store, name);
	else
		domain_status_all(cctx, store);
	migrate_domain_store_close(&store);
}

struct doveadm_cmd_ver2 doveadm_cmd_migrate_domain_start = {
	.name = "migrate domain start",
	.cmd = cmd_migrate_domain_start,
	.usage = "[--force] --old-mx <host>[:<port>] [--source-tls-name <name>] [--source-protocol imap|pop3|auto] [--max-connections-per-host <n>] <domain>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('f', "force", CMD_PARAM_BOOL, 0)
DOVEADM_CMD_PARAM('\0', "old-mx", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "source-tls-name", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "source-protocol", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "max-connections-per-host", CMD_PARAM_STR, 0)
DOVEADM_CMD_PARAM('\0', "domain", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_migrate_domain_cutover = {
	.name = "migrate domain cutover",
	.cmd = cmd_migrate_domain_cutover,
	.usage = "<domain>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "domain", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_migrate_domain_finish = {
	.name = "migrate domain finish",
	.cmd = cmd_migrate_domain_finish,
	.usage = "<domain>",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "domain", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};

struct doveadm_cmd_ver2 doveadm_cmd_migrate_domain_status = {
	.name = "migrate domain status",
	.cmd = cmd_migrate_domain_status,
	.usage = "[<domain>]",
DOVEADM_CMD_PARAMS_START
DOVEADM_CMD_PARAM('\0', "domain", CMD_PARAM_STR, CMD_PARAM_FLAG_POSITIONAL)
DOVEADM_CMD_PARAMS_END
};
