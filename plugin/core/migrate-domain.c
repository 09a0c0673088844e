/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strescape.h"
#include "strnum.h"
#include "time-util.h"
#include "dict.h"
#include "migrate-json.h"
#include "migrate-tls.h"
#include "migrate-domain.h"

#define DOMAIN_KEY_PREFIX DICT_PATH_SHARED"migrate/domain/"
#define ACCOUNT_KEY_PREFIX DICT_PATH_SHARED"migrate/account/"
#define PIN_KEY_PREFIX DICT_PATH_SHARED"migrate/pin/"
/* what a dict passdb answers to LMTP's lookup of a migrating domain's
   recipient: Dovecot's own LMTP proxy then relays it to the old MX */
#define RELAY_KEY_PREFIX DICT_PATH_SHARED"migrate/relay/lmtp/"

struct migrate_domain_store {
	struct dict *dict;
	struct dict_op_settings opset;
};

static const char *const phase_names[] = {
	"none", "migrating", "cutover", "finished",
};

const char *migrate_domain_phase_to_str(enum migrate_domain_phase phase)
{
	i_assert(phase < N_ELEMENTS(phase_names));
	return phase_names[phase];
}

const char *migrate_domain_time_str(time_t t)
{
	return t == 0 ? "-" : t_strflocaltime("%Y-%m-%d %H:%M:%S", t);
}

/* "unknown" for a domain that never migrated */
static const char *phase_or_unknown(const struct migrate_domain *domain)
{
	return domain->phase == MIGRATE_DOMAIN_NONE ? "unknown" :
		migrate_domain_phase_to_str(domain->phase);
}

int migrate_domain_transition(const struct migrate_domain *cur,
			      enum migrate_domain_phase to, bool force,
			      time_t now, struct migrate_domain *new_r,
			      const char **error_r)
{
	struct migrate_domain domain = *cur;

	switch (to) {
	case MIGRATE_DOMAIN_NONE:
		*error_r = t_strdup_printf("%s: a migration cannot be undone",
					   cur->name);
		return -1;
	case MIGRATE_DOMAIN_MIGRATING:
		/* a finished domain may migrate again (e.g. from a second
		   provider), but not by mistake; a running migration is not
		   restarted */
		if (cur->phase == MIGRATE_DOMAIN_FINISHED && !force) {
			*error_r = t_strdup_printf("%s is finished (its source "
				"credentials are deleted): starting it again "
				"needs --force", cur->name);
			return -1;
		}
		if (cur->phase != MIGRATE_DOMAIN_NONE &&
		    cur->phase != MIGRATE_DOMAIN_FINISHED) {
			*error_r = t_strdup_printf(
				"%s is already in phase %s (since %s)",
				cur->name, phase_or_unknown(cur),
				migrate_domain_time_str(cur->started));
			return -1;
		}
		domain.started = now;
		domain.cutover = domain.finished = 0;
		break;
	case MIGRATE_DOMAIN_CUTOVER:
		if (cur->phase != MIGRATE_DOMAIN_MIGRATING) {
			*error_r = t_strdup_printf("%s is %s, not migrating",
				cur->name, phase_or_unknown(cur));
			return -1;
		}
		domain.cutover = now;
		break;
	case MIGRATE_DOMAIN_FINISHED:
		if (cur->phase != MIGRATE_DOMAIN_CUTOVER) {
			*error_r = t_strdup_printf(
				"%s is %s; finish comes after cutover",
				cur->name, phase_or_unknown(cur));
			return -1;
		}
		domain.finished = now;
		break;
	}
	domain.phase = to;
	*new_r = domain;
	return 0;
}

static bool phase_from_str(const char *str, enum migrate_domain_phase *phase_r)
{
	unsigned int i;

	for (i = 0; i < N_ELEMENTS(phase_names); i++) {
		if (strcmp(str, phase_names[i]) == 0) {
			*phase_r = i;
			return TRUE;
		}
	}
	return FALSE;
}

const char *migrate_user_domain(const char *user)
{
	const char *p = strrchr(user, '@');

	return p == NULL ? "" : t_str_lcase(p + 1);
}

const char *migrate_domain_dict_uri(const char *setting, const char *state_dir)
{
	if (setting != NULL && setting[0] != '\0')
		return setting;
	return t_strdup_printf("file:%s/migrate/domains", state_dir);
}

int migrate_domain_store_open(const char *uri, const char *base_dir,
			      struct migrate_domain_store **store_r,
			      const char **error_r)
{
	struct migrate_domain_store *store;
	struct dict_settings set;
	struct dict *dict;
	const char *error;

	i_zero(&set);
	set.base_dir = base_dir;
	dict_drivers_register_builtin();
	if (dict_init(uri, &set, &dict, &error) < 0) {
		*error_r = t_strdup_printf("%s=%s: %s",
			MIGRATE_SETTING_DOMAIN_DICT, uri, error);
		dict_drivers_unregister_builtin();
		return -1;
	}
	store = i_new(struct migrate_domain_store, 1);
	store->dict = dict;
	*store_r = store;
	return 0;
}

void migrate_domain_store_switch_ioloop(struct migrate_domain_store *store)
{
	(void)dict_switch_ioloop(store->dict);
}

void migrate_domain_store_close(struct migrate_domain_store **_store)
{
	struct migrate_domain_store *store = *_store;

	if (store == NULL)
		return;
	*_store = NULL;
	dict_deinit(&store->dict);
	dict_drivers_unregister_builtin();
	i_free(store);
}

static void append_field(string_t *str, const char *key, const char *value)
{
	if (value == NULL)
		return;
	if (str_len(str) > 0)
		str_append_c(str, '\t');
	str_append(str, key);
	str_append_c(str, '=');
	str_append_tabescaped(str, value);
}

static const char *time_str(time_t t)
{
	return t == 0 ? NULL : dec2str(t);
}

static const char *field_value(const char *const *fields, const char *key)
{
	size_t len = strlen(key);

	for (; *fields != NULL; fields++) {
		if (strncmp(*fields, key, len) == 0 && (*fields)[len] == '=')
			return *fields + len + 1;
	}
	return NULL;
}

static time_t field_time(const char *const *fields, const char *key)
{
	const char *value = field_value(fields, key);
	time_t t;

	if (value == NULL || str_to_time(value, &t) < 0)
		return 0;
	return t;
}

/* 0 when missing or not a number */
static uint64_t field_uint64(const char *const *fields, const char *key)
{
	const char *value = field_value(fields, key);
	uint64_t num;

	if (value == NULL || str_to_uint64(value, &num) < 0)
		return 0;
	return num;
}

static int
store_lookup(struct migrate_domain_store *store, const char *key,
	     const char *const **fields_r, const char **error_r)
{
	const char *value, *error = NULL;
	int ret;

	ret = dict_lookup(store->dict, &store->opset, pool_datastack_create(),
			  key, &value, &error);
	if (ret < 0) {
		*error_r = t_strdup_printf("dict lookup of %s failed: %s",
					   key, error);
		return -1;
	}
	if (ret == 0)
		return 0;
	*fields_r = t_strsplit_tabescaped(value);
	return 1;
}

static int
store_set(struct migrate_domain_store *store, const char *key,
	  const char *value, const char **error_r)
{
	struct dict_transaction_context *trans;
	const char *error;

	trans = dict_transaction_begin(store->dict, &store->opset);
	dict_set(trans, key, value);
	if (dict_transaction_commit(&trans, &error) < 0) {
		*error_r = t_strdup_printf("dict write of %s failed: %s",
					   key, error);
		return -1;
	}
	return 0;
}

int migrate_domain_lookup(struct migrate_domain_store *store,
			  const char *domain, pool_t pool,
			  struct migrate_domain *domain_r,
			  const char **error_r)
{
	const char *const *fields, *value;
	in_port_t port;
	int ret;

	i_zero(domain_r);
	domain_r->name = p_strdup(pool, t_str_lcase(domain));
	ret = store_lookup(store, t_strconcat(DOMAIN_KEY_PREFIX,
		dict_escape_string(domain_r->name), NULL), &fields, error_r);
	if (ret <= 0)
		return ret;
	value = field_value(fields, "phase");
	if (value == NULL || !phase_from_str(value, &domain_r->phase)) {
		*error_r = t_strdup_printf("domain %s: broken record in the "
					   "dict", domain);
		return -1;
	}
	domain_r->started = field_time(fields, "started");
	domain_r->cutover = field_time(fields, "cutover");
	domain_r->finished = field_time(fields, "finished");
	domain_r->old_mx = p_strdup(pool, field_value(fields, "old_mx"));
	domain_r->old_mx_addrs = p_strdup(pool,
		field_value(fields, "old_mx_addrs"));
	value = field_value(fields, "old_mx_port");
	if (value != NULL && net_str2port(value, &port) == 0)
		domain_r->old_mx_port = port;
	domain_r->source_tls_name = p_strdup(pool,
		field_value(fields, "source_tls_name"));
	/* checked by the syncs that use it: delivery does not */
	domain_r->source_protocol = p_strdup(pool,
		field_value(fields, "source_protocol"));
	value = field_value(fields, "max_connections_per_host");
	if (value == NULL ||
	    str_to_uint(value, &domain_r->max_conns_per_host) < 0)
		domain_r->max_conns_per_host = 0;
	return 1;
}

/* {"proxy":"y","host":IP,"port":N,"protocol":"smtp","nopassword":"y"}
   for the first address of the old MX */
static const char *relay_json(const struct migrate_domain *domain)
{
	string_t *str = t_str_new(128);
	struct migrate_json json;

	migrate_json_init(&json, str);
	migrate_json_object_begin(&json, NULL);
	migrate_json_string(&json, "proxy", "y");
	migrate_json_string(&json, "host", t_strcut(domain->old_mx_addrs, ' '));
	migrate_json_string(&json, "port", dec2str(domain->old_mx_port == 0 ?
						   25 : domain->old_mx_port));
	migrate_json_string(&json, "protocol", "smtp");
	/* nopassword: this entry answers only LMTP's lookups (the key has
	   the service), which check no password */
	migrate_json_string(&json, "nopassword", "y");
	migrate_json_object_end(&json);
	return str_c(str);
}

int migrate_domain_save(struct migrate_domain_store *store,
			const struct migrate_domain *domain,
			const char **error_r)
{
	struct dict_transaction_context *trans;
	const char *key, *relay_key, *error;
	string_t *str = t_str_new(128);

	append_field(str, "phase", migrate_domain_phase_to_str(domain->phase));
	append_field(str, "started", time_str(domain->started));
	append_field(str, "cutover", time_str(domain->cutover));
	append_field(str, "finished", time_str(domain->finished));
	append_field(str, "old_mx", domain->old_mx);
	append_field(str, "old_mx_addrs", domain->old_mx_addrs);
	if (domain->old_mx_port != 0)
		append_field(str, "old_mx_port", dec2str(domain->old_mx_port));
	append_field(str, "source_tls_name", domain->source_tls_name);
	append_field(str, "source_protocol", domain->source_protocol);
	if (domain->max_conns_per_host != 0) {
		append_field(str, "max_connections_per_host",
			     dec2str(domain->max_conns_per_host));
	}
	key = t_strconcat(DOMAIN_KEY_PREFIX, dict_escape_string(domain->name),
			  NULL);
	relay_key = t_strconcat(RELAY_KEY_PREFIX,
				dict_escape_string(domain->name), NULL);

	/* the phase and the relay change together */
	trans = dict_transaction_begin(store->dict, &store->opset);
	dict_set(trans, key, str_c(str));
	if (domain->phase == MIGRATE_DOMAIN_MIGRATING &&
	    domain->old_mx_addrs != NULL && domain->old_mx_addrs[0] != '\0')
		dict_set(trans, relay_key, relay_json(domain));
	else
		dict_unset(trans, relay_key);
	if (dict_transaction_commit(&trans, &error) < 0) {
		*error_r = t_strdup_printf("dict write of %s failed: %s",
					   key, error);
		return -1;
	}
	return 0;
}

static int
store_iterate(struct migrate_domain_store *store, const char *prefix,
	      pool_t pool, ARRAY_TYPE(const_string) *keys_r,
	      ARRAY_TYPE(const_string) *values_r, const char **error_r)
{
	struct dict_iterate_context *iter;
	const char *key, *value, *error;

	iter = dict_iterate_init(store->dict, &store->opset, prefix,
				 DICT_ITERATE_FLAG_RECURSE |
				 DICT_ITERATE_FLAG_SORT_BY_KEY);
	while (dict_iterate(iter, &key, &value)) {
		key = p_strdup(pool, dict_unescape_string(key + strlen(prefix)));
		array_push_back(keys_r, &key);
		if (values_r != NULL) {
			value = p_strdup(pool, value);
			array_push_back(values_r, &value);
		}
	}
	if (dict_iterate_deinit(&iter, &error) < 0) {
		*error_r = t_strdup_printf("dict iteration of %s failed: %s",
					   prefix, error);
		return -1;
	}
	return 0;
}

int migrate_domain_list(struct migrate_domain_store *store, pool_t pool,
			ARRAY_TYPE(const_string) *names_r,
			const char **error_r)
{
	return store_iterate(store, DOMAIN_KEY_PREFIX, pool, names_r, NULL,
			     error_r);
}

/* where a domain's entries of one kind (ACCOUNT_KEY_PREFIX,
   PIN_KEY_PREFIX) are: the kind's prefix, the domain, '/' */
static const char *domain_prefix(const char *kind, const char *domain)
{
	return t_strconcat(kind, dict_escape_string(t_str_lcase(domain)), "/",
			   NULL);
}

/* set a domain's entry of one kind, by its name */
static int
domain_entry_set(struct migrate_domain_store *store, const char *kind,
		 const char *domain, const char *name, const char *value,
		 const char **error_r)
{
	return store_set(store, t_strconcat(domain_prefix(kind, domain),
		dict_escape_string(name), NULL), value, error_r);
}

struct store_entry {
	/* after the prefix, unescaped */
	const char *key;
	const char *const *fields;
};
ARRAY_DEFINE_TYPE(store_entry, struct store_entry);

/* Every entry under prefix with its fields, on the data stack. */
static int
store_entries(struct migrate_domain_store *store, const char *prefix,
	      ARRAY_TYPE(store_entry) *entries_r, const char **error_r)
{
	ARRAY_TYPE(const_string) keys, values;
	struct store_entry *entry;
	unsigned int i, count;

	t_array_init(&keys, 16);
	t_array_init(&values, 16);
	if (store_iterate(store, prefix, pool_datastack_create(), &keys,
			  &values, error_r) < 0)
		return -1;
	count = array_count(&keys);
	t_array_init(entries_r, count + 1);
	for (i = 0; i < count; i++) {
		entry = array_append_space(entries_r);
		entry->key = array_idx_elem(&keys, i);
		entry->fields = t_strsplit_tabescaped(
			array_idx_elem(&values, i));
	}
	return 0;
}

int migrate_domain_pin_save(struct migrate_domain_store *store,
			    const char *domain,
			    const struct migrate_domain_pin *pin,
			    const char **error_r)
{
	string_t *str = t_str_new(128);

	append_field(str, "sha256", pin->sha256);
	append_field(str, "when", time_str(pin->when));
	append_field(str, "subject", pin->subject);
	append_field(str, "not_after", pin->not_after);
	return domain_entry_set(store, PIN_KEY_PREFIX, domain, pin->source,
				str_c(str), error_r);
}

int migrate_domain_pins(struct migrate_domain_store *store,
			const char *domain, pool_t pool,
			ARRAY_TYPE(migrate_domain_pin) *pins_r,
			const char **error_r)
{
	ARRAY_TYPE(store_entry) entries;
	const struct store_entry *entry;
	struct migrate_domain_pin *pin;
	const char *sha256;

	if (store_entries(store, domain_prefix(PIN_KEY_PREFIX, domain),
			  &entries, error_r) < 0)
		return -1;
	array_foreach(&entries, entry) {
		sha256 = field_value(entry->fields, "sha256");
		if (sha256 == NULL ||
		    (sha256 = migrate_tls_fingerprint_normalize(sha256)) == NULL)
			continue;
		pin = array_append_space(pins_r);
		pin->source = p_strdup(pool, entry->key);
		pin->sha256 = p_strdup(pool, sha256);
		pin->when = field_time(entry->fields, "when");
		pin->subject = p_strdup(pool,
			field_value(entry->fields, "subject"));
		pin->not_after = p_strdup(pool,
			field_value(entry->fields, "not_after"));
	}
	return 0;
}

const struct migrate_domain_pin *
migrate_domain_pin_find(const ARRAY_TYPE(migrate_domain_pin) *pins,
			const char *source)
{
	const struct migrate_domain_pin *pin;

	array_foreach(pins, pin) {
		if (strcmp(pin->source, source) == 0)
			return pin;
	}
	return NULL;
}

int migrate_domain_account_save(struct migrate_domain_store *store,
				const char *domain,
				const struct migrate_domain_account *account,
				const char **error_r)
{
	string_t *str = t_str_new(128);

	append_field(str, "when", time_str(account->when));
	append_field(str, "result", account->result);
	append_field(str, "exit_code", dec2str(account->exit_code));
	append_field(str, "copied", dec2str(account->copied));
	append_field(str, "bytes", dec2str(account->bytes));
	append_field(str, "msecs", dec2str(account->msecs));
	append_field(str, "total_bytes", dec2str(account->total_bytes));
	append_field(str, "total_msecs", dec2str(account->total_msecs));
	append_field(str, "reason", account->reason);
	append_field(str, "node", account->node);
	return domain_entry_set(store, ACCOUNT_KEY_PREFIX, domain,
				account->user, str_c(str), error_r);
}

int migrate_domain_accounts(struct migrate_domain_store *store,
			    const char *domain, pool_t pool,
			    ARRAY_TYPE(migrate_domain_account) *accounts_r,
			    const char **error_r)
{
	ARRAY_TYPE(store_entry) entries;
	const struct store_entry *entry;
	struct migrate_domain_account *account;
	const char *const *fields, *value;
	int exit_code;

	if (store_entries(store, domain_prefix(ACCOUNT_KEY_PREFIX, domain),
			  &entries, error_r) < 0)
		return -1;
	array_foreach(&entries, entry) {
		fields = entry->fields;
		account = array_append_space(accounts_r);
		account->user = p_strdup(pool, entry->key);
		account->when = field_time(fields, "when");
		account->result = p_strdup(pool, field_value(fields, "result"));
		value = field_value(fields, "exit_code");
		if (value != NULL && str_to_int(value, &exit_code) == 0)
			account->exit_code = exit_code;
		account->copied = field_uint64(fields, "copied");
		account->bytes = field_uint64(fields, "bytes");
		account->msecs = (unsigned int)I_MIN(
			field_uint64(fields, "msecs"), UINT_MAX);
		account->total_bytes = field_uint64(fields, "total_bytes");
		account->total_msecs = field_uint64(fields, "total_msecs");
		account->reason = p_strdup(pool, field_value(fields, "reason"));
		account->node = p_strdup(pool, field_value(fields, "node"));
	}
	return 0;
}
