/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The backends that run the batch's accounts (doveadm-migrate-spawn.h).
   With doveadm_port set, doveadm itself sends each child's command to
   the backend the passdb names for its user (proxy=y host=..., as a
   Dovecot proxy or director has it), over the doveadm protocol, with the
   source credentials as the command's input.  Here the same passdb
   fields are looked up once per account: to keep each backend to its
   share of the jobs, to say which backend ran what, and to warn when the
   credentials would cross a network in clear. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strnum.h"
#include "net.h"
#include "auth-master.h"
#include "migrate-jobs.h"
#include "doveadm-settings.h"
#include "doveadm-migrate-spawn.h"

static struct migrate_spawn_backend *
spawn_backend_get(struct migrate_spawn *spawn, const char *name)
{
	struct migrate_spawn_backend *backend;

	array_foreach_elem(&spawn->backends, backend) {
		if (strcmp(backend->name, name) == 0)
			return backend;
	}
	backend = p_new(spawn->pool, struct migrate_spawn_backend, 1);
	backend->name = p_strdup(spawn->pool, name);
	array_push_back(&spawn->backends, &backend);
	return backend;
}

static bool spawn_host_is_loopback(const char *host)
{
	struct ip_addr ip;

	if (strcmp(host, "localhost") == 0)
		return TRUE;
	if (net_addr2ip(host, &ip) < 0)
		return FALSE;
	if (IPADDR_IS_V4(&ip))
		return (ntohl(ip.u.ip4.s_addr) >> 24) == 127;
	return net_ip_compare(&ip, &net_ip6_loopback);
}

/* The passdb's answer for the user as doveadm reads it
   (doveadm-mail-server.c): proxied with a host, on the passdb's port or
   doveadm_port, with TLS when doveadm_ssl or the passdb's ssl/starttls
   say so.  NULL name: the user's mail is on this node. */
static void
spawn_backend_fields(const char *const *fields, const char **name_r,
		     const char **host_r, bool *tls_r)
{
	const char *host = NULL, *hostip = NULL;
	in_port_t port = doveadm_settings->doveadm_port;
	bool proxy = FALSE;

	*tls_r = strcmp(doveadm_settings->doveadm_ssl, "ssl") == 0 ||
		strcmp(doveadm_settings->doveadm_ssl, "starttls") == 0;
	for (; *fields != NULL; fields++) {
		const char *field = *fields;

		if (str_begins(field, "proxy") &&
		    (field[5] == '\0' || field[5] == '='))
			proxy = TRUE;
		else if (str_begins(field, "host="))
			host = field + 5;
		else if (str_begins(field, "hostip="))
			hostip = field + 7;
		else if (str_begins(field, "port=")) {
			if (net_str2port(field + 5, &port) < 0)
				port = 0;
		} else if (str_begins(field, "ssl=") ||
			   str_begins(field, "starttls="))
			*tls_r = TRUE;
	}
	if (!proxy || host == NULL) {
		*name_r = *host_r = NULL;
		return;
	}
	*host_r = hostip != NULL ? hostip : host;
	*name_r = t_strdup_printf("%s:%u", host, port);
}

int migrate_spawn_backends_assign(struct migrate_spawn *spawn,
				  struct auth_master_connection *conn)
{
	struct migrate_spawn_account *acct;
	struct migrate_spawn_backend *backend;
	struct auth_user_info info;
	const char *const *fields, *name, *host;
	pool_t pool;
	bool tls;
	int ret, result = 0;

	/* no doveadm_port: every command runs here */
	if (doveadm_settings->doveadm_port == 0)
		return 0;

	i_zero(&info);
	info.service = "doveadm";
	pool = pool_alloconly_create("migrate passdb lookup", 1024);
	array_foreach_elem(&spawn->accounts, acct) T_BEGIN {
		p_clear(pool);
		ret = auth_master_pass_lookup(conn, acct->user, &info, pool,
					      &fields);
		if (ret < 0) {
			i_error("%s: passdb lookup of %s failed (to see which "
				"backend has it, because doveadm_port is "
				"set)%s%s", spawn->cmd_name, acct->user,
				fields != NULL && fields[0] != NULL ? ": " : "",
				fields != NULL && fields[0] != NULL ?
				fields[0] : "");
			result = -1;
		} else if (ret > 0) {
			spawn_backend_fields(fields, &name, &host, &tls);
			if (name != NULL) {
				backend = spawn_backend_get(spawn, name);
				if (backend->accounts == 0) {
					backend->tls = tls;
					backend->loopback =
						spawn_host_is_loopback(host);
				}
				backend->accounts++;
				acct->backend = backend;
			}
		}
	} T_END;
	pool_unref(&pool);

	array_foreach_elem(&spawn->backends, backend) {
		if (backend->tls || backend->loopback)
			continue;
		/* the source passwords go to it as the commands' input */
		i_warning("%s: backend %s: the source credentials of its %u "
			  "account%s go there over the doveadm protocol in "
			  "plaintext (doveadm_ssl = no): set doveadm_ssl = ssl "
			  "(or starttls) with the backends' doveadm listeners "
			  "on TLS, or keep the doveadm port on a private "
			  "network", spawn->cmd_name, backend->name,
			  backend->accounts, backend->accounts == 1 ? "" : "s");
	}
	return result;
}

void migrate_spawn_backends_jobs(struct migrate_spawn *spawn,
				 unsigned int node_jobs, const char **why)
{
	unsigned int count = array_count(&spawn->backends);
	unsigned int accounts = array_count(&spawn->accounts);

	if (count == 0)
		return;
	if (spawn->set.jobs_per_backend == 0)
		spawn->set.jobs_per_backend = node_jobs;
	if (!spawn->set.jobs_given) {
		/* each backend its share: the jobs this node would run
		   alone, at most one per account */
		spawn->set.jobs = I_MIN(I_MAX(accounts, 1),
			I_MIN(spawn->set.jobs_per_backend * count,
			      MIGRATE_JOBS_MAX));
	}
	*why = t_strdup_printf("%s; %u backend%s (doveadm_port %u), at most "
			       "%u on each", *why, count,
			       count == 1 ? "" : "s",
			       doveadm_settings->doveadm_port,
			       spawn->set.jobs_per_backend);
}

bool migrate_spawn_backend_take(struct migrate_spawn_account *acct)
{
	struct migrate_spawn_backend *backend = acct->backend;

	if (backend == NULL)
		return TRUE;
	if (acct->spawn->set.jobs_per_backend > 0 &&
	    backend->running >= acct->spawn->set.jobs_per_backend)
		return FALSE;
	backend->running++;
	backend->max_running = I_MAX(backend->max_running, backend->running);
	return TRUE;
}

void migrate_spawn_backend_release(struct migrate_spawn_account *acct)
{
	struct migrate_spawn_backend *backend = acct->backend;

	if (backend == NULL)
		return;
	i_assert(backend->running > 0);
	backend->running--;
}

void migrate_spawn_backends_log(struct migrate_spawn *spawn)
{
	struct migrate_spawn_backend *backend;

	array_foreach_elem(&spawn->backends, backend) {
		i_info("%s: backend %s: %u account%s, at most %u at once%s",
		       spawn->cmd_name, backend->name, backend->accounts,
		       backend->accounts == 1 ? "" : "s",
		       backend->max_running,
		       backend->tls ? ", doveadm protocol over TLS" : "");
	}
}
