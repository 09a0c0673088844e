/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The connections of a batch's accounts to each source host, held under
   the host's limit (--max-connections-per-host): hosting providers allow
   10-20 connections per client IP, Gmail 15 per account, and refuse or
   throttle the rest.  Each running account holds what its run may open:
   with -j above 1 its one process, 2 (the storage's connection and our
   own); alone, the whole limit, which its workers stay under
   (migrate_source_max_connections).  An account whose host is full
   waits; the others go on.

   When the source pushes back anyway (a run fails on "too many
   connections", [UNAVAILABLE], [THROTTLED], "server busy"...), its host's
   limit is halved (at most once a second: runs that fail together are
   one signal; half of what was open then, if less); the accounts it
   pushed back run again after a pause that doubles while the pushing
   goes on (0.5 s up to a minute; back to 0.5 s after a window without),
   as no attempt: the source's limit is not the account's failure.  The
   others start as the lowered limit allows.  Each window of successful runs (as many as the
   limit holds accounts) raises the limit by one connection again, up to
   --max-connections-per-host: additive increase, multiplicative
   decrease. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "time-util.h"
#include "migrate-json.h"
#include "migrate-error.h"
#include "migrate-settings.h"
#include "migrate-template.h"
#include "migrate-dest.h"
#include "doveadm-migrate-spawn.h"

#include <sysexits.h>

#define SPAWN_HOST_MIN_BACKOFF_MSECS 500
#define SPAWN_HOST_MAX_BACKOFF_MSECS (60*1000)

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
	host->limit = host->max_limit = host->min_limit =
		spawn->set.max_conns_per_host;
	array_push_back(&spawn->hosts, &host);
	return host;
}

void migrate_spawn_hosts_assign(struct migrate_spawn *spawn)
{
	struct migrate_spawn_account *acct;
	const char *name;

	array_foreach_elem(&spawn->accounts, acct) {
		name = acct->row->source_port == 0 ? acct->row->source_host :
			t_strdup_printf("%s:%u", acct->row->source_host,
					acct->row->source_port);
		acct->host = spawn_host_get(spawn, name);
	}
}

void migrate_spawn_hosts_set_limit(struct migrate_spawn *spawn,
				   unsigned int limit)
{
	struct migrate_spawn_host *host;

	spawn->set.max_conns_per_host = limit;
	array_foreach_elem(&spawn->hosts, host)
		host->limit = host->max_limit = host->min_limit = limit;
}

/* What the account's run may open: see above. */
static unsigned int spawn_host_need(const struct migrate_spawn_account *acct)
{
	const struct migrate_spawn_host *host = acct->host;

	if (host->limit == 0)
		return 0;
	if (acct->spawn->set.jobs > 1)
		return I_MIN(MIGRATE_SOURCE_CONNS_PER_PROCESS, host->limit);
	return host->limit;
}

bool migrate_spawn_host_take(struct migrate_spawn_account *acct)
{
	struct migrate_spawn_host *host = acct->host;
	unsigned int need = spawn_host_need(acct);
	struct timeval now;

	/* a pushed-back account waits for the pause; the others for room
	   under the lowered limit only */
	i_gettimeofday(&now);
	if ((host->conns > 0 && host->conns + need > host->limit) ||
	    (acct->pushbacks > 0 &&
	     timeval_cmp(&now, &host->paused_until) < 0)) {
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
	acct->last_host_conns = acct->host_conns;
	acct->host_conns = 0;
}

void migrate_spawn_hosts_log(struct migrate_spawn *spawn)
{
	struct migrate_spawn_host *host;

	array_foreach_elem(&spawn->hosts, host) {
		if (host->limit == 0)
			continue;
		i_info("%s: source %s: at most %u connections allowed; "
		       "%u accounts at once at most (%u connections), %u "
		       "waited for room; pushed back %u times, the limit "
		       "went down to %u, ended at %u", spawn->cmd_name,
		       host->name, host->max_limit, host->max_running,
		       host->max_conns, host->waits, host->pushbacks,
		       host->min_limit, host->limit);
	}
}

/* The source pushed back on acct's run, which held acct_conns. */
static void
spawn_host_decrease(struct migrate_spawn_account *acct,
		    unsigned int acct_conns, const struct timeval *now)
{
	struct migrate_spawn_host *host = acct->host;
	unsigned int need = MIGRATE_SOURCE_CONNS_PER_PROCESS;
	const char *reason;
	struct event *event;

	host->pushbacks++;
	host->successes = 0;
	/* multiplicative decrease, once for the runs that fail together */
	if (timeval_diff_msecs(now, &host->last_decrease) < 1000 &&
	    host->decreases > 0)
		return;
	/* half of what was open when the source said no (this run's
	   included), not more than half the limit */
	host->limit = I_MAX(I_MIN(host->limit, host->conns + acct_conns) / 2,
			    need);
	host->min_limit = I_MIN(host->min_limit, host->limit);
	host->decreases++;
	host->last_decrease = *now;
	host->backoff_msecs = host->backoff_msecs == 0 ?
		SPAWN_HOST_MIN_BACKOFF_MSECS :
		I_MIN(host->backoff_msecs * 2, SPAWN_HOST_MAX_BACKOFF_MSECS);
	host->paused_until = *now;
	timeval_add_msecs(&host->paused_until, host->backoff_msecs);
	reason = acct->reason != NULL ? acct->reason :
		"connections refused, the account made do with fewer";
	event = event_create(NULL);
	event_add_category(event, &event_category_migrate);
	event_set_name(event, "migrate_batch_pushback");
	event_add_str(event, "host", host->name);
	event_add_int(event, "limit", host->limit);
	event_add_int(event, "max_connections", host->max_limit);
	event_add_int(event, "pause_msecs", host->backoff_msecs);
	event_add_str(event, "reason", reason);
	e_warning(event, "%s: source %s pushed back (%s): now at most %u "
		  "connections, pushed-back accounts again in %u.%u s",
		  acct->spawn->cmd_name, host->name, reason, host->limit,
		  host->backoff_msecs / 1000,
		  host->backoff_msecs % 1000 / 100);
	event_unref(&event);
}

bool migrate_spawn_host_ended(struct migrate_spawn_account *acct,
			      int exit_code, struct timeval *retry_at_r)
{
	struct migrate_spawn_host *host = acct->host;
	unsigned int need = MIGRATE_SOURCE_CONNS_PER_PROCESS;
	/* released already (migrate_spawn_host_release()) */
	unsigned int acct_conns = acct->last_host_conns;
	struct timeval now;
	bool pushed;

	if (host->max_limit == 0)
		return FALSE;
	i_gettimeofday(&now);
	pushed = migrate_error_is_pushback(acct->reason) ||
		acct->rec.source_pushbacks > 0;
	if (exit_code == 0 && pushed) {
		/* it made do with fewer connections than it asked for:
		   fewer for the next ones */
		spawn_host_decrease(acct, acct_conns, &now);
		return FALSE;
	}
	if (exit_code == 0) {
		/* additive increase: one connection more after a window of
		   successes (as many as the limit holds accounts), and the
		   pause back to its start */
		if (++host->successes >= I_MAX(host->limit / need, 1)) {
			host->successes = 0;
			host->backoff_msecs = 0;
			if (host->limit < host->max_limit)
				host->limit++;
		}
		return FALSE;
	}
	if (exit_code != EX_TEMPFAIL || !pushed ||
	    acct->pushbacks >= MIGRATE_SPAWN_MAX_PUSHBACKS)
		return FALSE;

	acct->pushbacks++;
	spawn_host_decrease(acct, acct_conns, &now);
	*retry_at_r = host->paused_until;
	if (timeval_cmp(retry_at_r, &now) < 0)
		*retry_at_r = now;
	return TRUE;
}

void migrate_spawn_hosts_progress(struct migrate_spawn *spawn, string_t *dest)
{
	struct migrate_spawn_host *host;

	array_foreach_elem(&spawn->hosts, host) {
		if (host->limit < host->max_limit || host->waits > 0) {
			str_printfa(dest, ", %s: %u/%u conns, %u waits",
				    host->name, host->limit, host->max_limit,
				    host->waits);
		}
	}
}

void migrate_spawn_hosts_json(struct migrate_spawn *spawn,
			      struct migrate_json *json)
{
	struct migrate_spawn_host *host;

	migrate_json_array_begin(json, "source_hosts");
	array_foreach_elem(&spawn->hosts, host) {
		migrate_json_newline(json);
		migrate_json_object_begin(json, NULL);
		migrate_json_string(json, "host", host->name);
		migrate_json_uint(json, "max_connections", host->max_limit);
		migrate_json_uint(json, "limit", host->limit);
		migrate_json_uint(json, "min_limit", host->min_limit);
		migrate_json_uint(json, "most_connections", host->max_conns);
		migrate_json_uint(json, "most_accounts", host->max_running);
		migrate_json_uint(json, "waits", host->waits);
		migrate_json_uint(json, "pushbacks", host->pushbacks);
		migrate_json_uint(json, "decreases", host->decreases);
		migrate_json_object_end(json);
	}
	migrate_json_newline(json);
	migrate_json_array_end(json);
}
