#ifndef MIGRATE_DOMAIN_H
#define MIGRATE_DOMAIN_H

#include "net.h"

/* The migration of a domain and its phases, kept in a Dovecot dict
   (migrate_domain_dict; default a file dict under state_dir, a cluster
   points it at a shared dict), so that doveadm, LMTP and dovecot-lda all
   read the same state; a change counts for the next lookup. */

#define MIGRATE_SETTING_DOMAIN_DICT "migrate_domain_dict"

enum migrate_domain_phase {
	MIGRATE_DOMAIN_NONE = 0,
	/* the MX still points at the old provider: local delivery is
	   blocked, syncs mirror */
	MIGRATE_DOMAIN_MIGRATING,
	/* the MX has moved: local delivery is back, syncs are final ones
	   (copy what is new, delete nothing) */
	MIGRATE_DOMAIN_CUTOVER,
	/* closed: no more syncs, the source credentials are gone */
	MIGRATE_DOMAIN_FINISHED,
};

struct migrate_domain {
	const char *name;
	enum migrate_domain_phase phase;
	time_t started, cutover, finished;
	/* as given: host[:port] */
	const char *old_mx;
	/* its addresses, resolved when the migration started */
	const char *old_mx_addrs;
	in_port_t old_mx_port;
	/* the name to verify the certificates of sources given by IP
	   address against, unless a template row names one (domain start
	   --source-tls-name); NULL: none */
	const char *source_tls_name;
	/* how its accounts' sources are read, unless a template row says
	   (domain start --source-protocol: "imap", "pop3" or "auto"); NULL:
	   migrate_source_protocol */
	const char *source_protocol;
	/* the connections batch keeps its accounts to per source host
	   (domain start --max-connections-per-host); 0: batch's default */
	unsigned int max_conns_per_host;
};

/* A source's certificate, pinned by doveadm migrate check --pin: from
   then on every connection of the domain's syncs to that source refuses
   any other certificate, verified or not.  Kept with the domain, one per
   source, apart from the phase (a check may come before domain start). */
struct migrate_domain_pin {
	/* migrate_tls_source_key(): "host:port" */
	const char *source;
	/* migrate_tls_fingerprint_normalize() form */
	const char *sha256;
	time_t when;
	/* of the certificate, for the operator */
	const char *subject, *not_after;
};
ARRAY_DEFINE_TYPE(migrate_domain_pin, struct migrate_domain_pin);

/* One account's last sync, as migrate batch recorded it. */
struct migrate_domain_account {
	const char *user;
	time_t when;
	const char *result;
	int exit_code;
	uint64_t copied, bytes;
	/* how long the sync took */
	unsigned int msecs;
	/* over every sync that copied something: the rate they reached */
	uint64_t total_bytes, total_msecs;
	const char *reason;
	/* where it ran: the backend doveadm sent it to (host:port), or the
	   node that ran batch (its host name); NULL: not recorded */
	const char *node;
};
ARRAY_DEFINE_TYPE(migrate_domain_account, struct migrate_domain_account);

struct migrate_domain_store;

/* The dict URI: the setting's value, or the default under state_dir. */
const char *migrate_domain_dict_uri(const char *setting,
				    const char *state_dir);

int migrate_domain_store_open(const char *uri, const char *base_dir,
			      struct migrate_domain_store **store_r,
			      const char **error_r);
void migrate_domain_store_close(struct migrate_domain_store **store);
/* The current ioloop changed: a dict with connections of its own (proxy:
   the dict service) moves them there. */
void migrate_domain_store_switch_ioloop(struct migrate_domain_store *store);

/* Returns 1 and the domain, 0 when it has never migrated, -1 on error. */
int migrate_domain_lookup(struct migrate_domain_store *store,
			  const char *domain, pool_t pool,
			  struct migrate_domain *domain_r,
			  const char **error_r);
int migrate_domain_save(struct migrate_domain_store *store,
			const struct migrate_domain *domain,
			const char **error_r);
/* Every domain the store knows, sorted by name. */
int migrate_domain_list(struct migrate_domain_store *store, pool_t pool,
			ARRAY_TYPE(const_string) *names_r,
			const char **error_r);

int migrate_domain_account_save(struct migrate_domain_store *store,
				const char *domain,
				const struct migrate_domain_account *account,
				const char **error_r);
int migrate_domain_accounts(struct migrate_domain_store *store,
			    const char *domain, pool_t pool,
			    ARRAY_TYPE(migrate_domain_account) *accounts_r,
			    const char **error_r);

/* Pin a source's certificate for the domain (replacing its pin). */
int migrate_domain_pin_save(struct migrate_domain_store *store,
			    const char *domain,
			    const struct migrate_domain_pin *pin,
			    const char **error_r);
/* The domain's pins, sorted by source; a broken entry is skipped. */
int migrate_domain_pins(struct migrate_domain_store *store,
			const char *domain, pool_t pool,
			ARRAY_TYPE(migrate_domain_pin) *pins_r,
			const char **error_r);
/* The pin of source (migrate_tls_source_key()) among pins, or NULL. */
const struct migrate_domain_pin *
migrate_domain_pin_find(const ARRAY_TYPE(migrate_domain_pin) *pins,
			const char *source);

const char *migrate_domain_phase_to_str(enum migrate_domain_phase phase);
/* "YYYY-MM-DD HH:MM:SS" in local time, "-" for 0. */
const char *migrate_domain_time_str(time_t t);

/* The phase rules: cur is the domain as migrate_domain_lookup() found it
   (phase none: never migrated).  Start (to migrating) takes a domain that
   never migrated, or one that has finished when forced (its credentials
   are gone, and a start is a new migration); cutover only a migrating
   one, finish only one past cutover; each records when (now), and a start
   forgets the times of an earlier migration.  Returns 0 with the domain
   to save in new_r (the caller adds what else changes, e.g. the old MX of
   a start), or -1 with why the change is refused. */
int migrate_domain_transition(const struct migrate_domain *cur,
			      enum migrate_domain_phase to, bool force,
			      time_t now, struct migrate_domain *new_r,
			      const char **error_r);
/* The domain part of a user name, lowercased ("" when there is none). */
const char *migrate_user_domain(const char *user);

#endif
