/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The connections of a batch's accounts to each source host, held under
   the host's limit (--max-connections-per-host): hosting providers allow
   10-20 connections per client IP, Gmail 15 per account, and refuse or
   throttle the rest.  Each running account holds what its run may open:
   with -j above 1 its one process, 2 (the storage's connection and our
   own); alone, the whole limit, which its workers stay under
   (migrate_source_max_connections).  An account whose host is full
   waits; the others go on. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "migrate-template.h"
#include "doveadm-migrate-spawn.h"

/* one process of an account: the storage's connection and our own */
#define SPAWN_HOST_CONNS_PER_PROCESS 2

static struct migrate_spawn_host *
spawn_host_get(struct migrate_spawn *spawn, const char *name)
{
	struct migrate_spawn_host *host;

	array_foreach_elem(&spawn->hosts, host) {
		if (strcasecmp(host->name, name) == 0)
			return host;
	}
	host = p_new(spawn->pool, struct migrate_spawn_host, 1);
	host->name = p_strdup(spawn->pool, name);
	host->limit = spawn->set.max_conns_per_host;
	array_push_back(&spawn->hosts, &host);
	return host;
}

void migrate_spawn_hosts_assign(struct migrate_spawn *spawn)
{
	struct migrate_spawn_account *acct;
	const char *name;

	p_array_init(&spawn->hosts, spawn->pool, 4);
	array_foreach_elem(&spawn->accounts, acct) {
		name = acct->row->source_port == 0 ? acct->row->source_host :
			t_strdup_printf("%s:%u", acct->row->source_host,
					acct->row->source_port);
		acct->host = spawn_host_get(spawn, name);
	}
}

/* What the account's run may open: see above. */
static unsigned int spawn_host_need(const struct migrate_spawn_account *acct)
{
	const struct migrate_spawn_host *host = acct->host;

	if (host->limit == 0)
		return 0;
	if (acct->spawn->set.jobs > 1)
		return I_MIN(SPAWN_HOST_CONNS_PER_PROCESS, host->limit);
	return host->limit;
}

bool migrate_spawn_host_take(struct migrate_spawn_account *acct)
{
	struct migrate_spawn_host *host = acct->host;
	unsigned int need = spawn_host_need(acct);

	if (host->conns > 0 && host->conns + need > host->limit) {
		if (!acct->host_waited) {
			acct->host_waited = TRUE;
			host->waits++;
		}
		return FALSE;
	}
	acct->host_conns = need;
	host->conns += need;
	host->running++;
	host->max_conns = I_MAX(host->max_conns, host->conns);
	host->max_running = I_MAX(host->max_running, host->running);
	return TRUE;
}

void migrate_spawn_host_release(struct migrate_spawn_account *acct)
{
	struct migrate_spawn_host *host = acct->host;

	i_assert(host->conns >= acct->host_conns && host->running > 0);
	host->conns -= acct->host_conns;
	host->running--;
	acct->host_conns = 0;
}

void migrate_spawn_hosts_log(struct migrate_spawn *spawn)
{
	struct migrate_spawn_host *host;

	array_foreach_elem(&spawn->hosts, host) {
		if (host->limit == 0)
			continue;
		i_info("%s: source %s: at most %u connection%s allowed; "
		       "%u accounts at once at most (%u connections), %u "
		       "waited for room", spawn->cmd_name, host->name,
		       host->limit, host->limit == 1 ? "" : "s",
		       host->max_running, host->max_conns, host->waits);
	}
}
