/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strnum.h"
#include "migrate-json.h"
#include "migrate-record.h"

void migrate_record_tls_append(struct migrate_json *json, const char *key,
			       const struct migrate_record_tls *tls)
{
	if (tls->mode == NULL) {
		migrate_json_null(json, key);
		return;
	}
	migrate_json_object_begin(json, key);
	migrate_json_string(json, "host", tls->host);
	migrate_json_uint(json, "port", tls->port);
	migrate_json_string(json, "mode", tls->mode);
	migrate_json_bool(json, "verify", tls->verify);
	migrate_json_string(json, "name", tls->name);
	migrate_json_string(json, "pin", tls->pin);
	migrate_json_bool(json, "pin_mismatch", tls->pin_mismatch);
	migrate_json_string(json, "insecure", tls->insecure);
	if (tls->cert.sha256 == NULL)
		migrate_json_null(json, "certificate");
	else {
		migrate_json_object_begin(json, "certificate");
		migrate_json_string(json, "subject", tls->cert.subject);
		migrate_json_string(json, "issuer", tls->cert.issuer);
		migrate_json_string(json, "not_after", tls->cert.not_after);
		migrate_json_string(json, "sha256", tls->cert.sha256);
		migrate_json_object_end(json);
	}
	migrate_json_object_end(json);
}

static void
migrate_record_tls_parse(const struct json_tree_node *root, pool_t pool,
			 struct migrate_record_tls *tls_r)
{
	const struct json_tree_node *node, *cert;

	node = json_tree_find_key(root, "tls");
	if (node == NULL || node->value_type != JSON_TYPE_OBJECT)
		return;
	tls_r->host = p_strdup(pool, migrate_json_node_str(node, "host"));
	tls_r->port = (unsigned int)I_MIN(migrate_json_node_uint(node, "port"),
					  UINT_MAX);
	tls_r->mode = p_strdup(pool, migrate_json_node_str(node, "mode"));
	tls_r->verify = null_strcmp(migrate_json_node_str(node, "verify"),
				    "true") == 0;
	tls_r->name = p_strdup(pool, migrate_json_node_str(node, "name"));
	tls_r->pin = p_strdup(pool, migrate_json_node_str(node, "pin"));
	tls_r->pin_mismatch = null_strcmp(
		migrate_json_node_str(node, "pin_mismatch"), "true") == 0;
	tls_r->insecure = p_strdup(pool,
		migrate_json_node_str(node, "insecure"));
	cert = json_tree_find_key(node, "certificate");
	if (cert == NULL || cert->value_type != JSON_TYPE_OBJECT)
		return;
	tls_r->cert.subject = p_strdup(pool,
		migrate_json_node_str(cert, "subject"));
	tls_r->cert.issuer = p_strdup(pool,
		migrate_json_node_str(cert, "issuer"));
	tls_r->cert.not_after = p_strdup(pool,
		migrate_json_node_str(cert, "not_after"));
	tls_r->cert.sha256 = p_strdup(pool,
		migrate_json_node_str(cert, "sha256"));
}

void migrate_record_append(string_t *dest, const struct migrate_record *rec)
{
	struct migrate_json json;
	unsigned int i;

	migrate_json_init(&json, dest);
	migrate_json_object_begin(&json, NULL);
	migrate_json_string(&json, "user", rec->user);
	migrate_json_string(&json, "result", rec->result);
	migrate_json_int(&json, "exit_code", rec->exit_code);
	migrate_json_string(&json, "error_code", rec->error_code);
	migrate_json_string(&json, "error", rec->error);
	migrate_json_string(&json, "mode", rec->mode);
	migrate_json_uint(&json, "folders", rec->folders);
	migrate_json_uint(&json, "copied", rec->copied);
	migrate_json_uint(&json, "updated", rec->updated);
	migrate_json_uint(&json, "deleted", rec->deleted);
	migrate_json_uint(&json, "skipped", rec->skipped);
	migrate_json_uint(&json, "rejected", rec->rejected);
	migrate_json_uint(&json, "bytes", rec->bytes);
	migrate_json_uint(&json, "uids_changed", rec->uids_changed);
	migrate_json_uint(&json, "pop3_order_differs", rec->pop3_order_differs);
	migrate_json_string(&json, "source_protocol", rec->source_protocol);
	migrate_json_uint(&json, "retries", rec->retries);
	migrate_json_uint(&json, "source_pushbacks", rec->source_pushbacks);
	migrate_json_array_begin(&json, "warnings");
	for (i = 0; rec->warnings != NULL && rec->warnings[i] != NULL; i++)
		migrate_json_string(&json, NULL, rec->warnings[i]);
	migrate_json_array_end(&json);
	if (!rec->quota_known)
		migrate_json_null(&json, "quota");
	else {
		migrate_json_object_begin(&json, "quota");
		migrate_json_uint(&json, "used_kb", rec->quota_used_kb);
		if (rec->quota_limited)
			migrate_json_uint(&json, "limit_kb", rec->quota_limit_kb);
		else
			migrate_json_null(&json, "limit_kb");
		migrate_json_object_end(&json);
	}
	migrate_record_tls_append(&json, "tls", &rec->tls);
	migrate_json_object_end(&json);
	str_append_c(dest, '\n');
}

int migrate_record_parse(const void *data, size_t size, pool_t pool,
			 struct migrate_record *rec_r, const char **error_r)
{
	const struct json_tree_node *root, *node;
	ARRAY_TYPE(const_string) warnings;
	struct json_tree *tree;
	const unsigned char *nl;
	const char *value;

	i_zero(rec_r);
	nl = memchr(data, '\n', size);
	if (nl != NULL)
		size = nl - (const unsigned char *)data;
	if (migrate_json_parse(data, size, &tree, error_r) < 0)
		return -1;
	root = json_tree_root(tree);
	rec_r->user = p_strdup(pool, migrate_json_node_str(root, "user"));
	rec_r->result = p_strdup(pool, migrate_json_node_str(root, "result"));
	value = migrate_json_node_str(root, "exit_code");
	if (rec_r->user == NULL || rec_r->result == NULL || value == NULL ||
	    str_to_int(value, &rec_r->exit_code) < 0) {
		json_tree_deinit(&tree);
		*error_r = "user, result or exit_code missing";
		return -1;
	}
	rec_r->error_code = p_strdup(pool,
		migrate_json_node_str(root, "error_code"));
	rec_r->error = p_strdup(pool, migrate_json_node_str(root, "error"));
	rec_r->mode = p_strdup(pool, migrate_json_node_str(root, "mode"));
	rec_r->folders = migrate_json_node_uint(root, "folders");
	rec_r->copied = migrate_json_node_uint(root, "copied");
	rec_r->updated = migrate_json_node_uint(root, "updated");
	rec_r->deleted = migrate_json_node_uint(root, "deleted");
	rec_r->skipped = migrate_json_node_uint(root, "skipped");
	rec_r->rejected = migrate_json_node_uint(root, "rejected");
	rec_r->bytes = migrate_json_node_uint(root, "bytes");
	rec_r->uids_changed = migrate_json_node_uint(root, "uids_changed");
	rec_r->pop3_order_differs =
		migrate_json_node_uint(root, "pop3_order_differs");
	rec_r->source_protocol = p_strdup(pool,
		migrate_json_node_str(root, "source_protocol"));
	rec_r->retries = migrate_json_node_uint(root, "retries");
	rec_r->source_pushbacks =
		migrate_json_node_uint(root, "source_pushbacks");

	p_array_init(&warnings, pool, 4);
	node = json_tree_find_key(root, "warnings");
	if (node != NULL && node->value_type == JSON_TYPE_ARRAY) {
		for (node = json_tree_get_child(node); node != NULL;
		     node = node->next) {
			if (node->value_type != JSON_TYPE_STRING)
				continue;
			value = p_strdup(pool, json_tree_get_value_str(node));
			array_push_back(&warnings, &value);
		}
	}
	array_append_zero(&warnings);
	rec_r->warnings = array_front(&warnings);

	node = json_tree_find_key(root, "quota");
	if (node != NULL && node->value_type == JSON_TYPE_OBJECT) {
		rec_r->quota_known = TRUE;
		rec_r->quota_used_kb = migrate_json_node_uint(node, "used_kb");
		rec_r->quota_limited =
			migrate_json_node_str(node, "limit_kb") != NULL;
		rec_r->quota_limit_kb = migrate_json_node_uint(node, "limit_kb");
	}
	migrate_record_tls_parse(root, pool, &rec_r->tls);
	json_tree_deinit(&tree);
	return 0;
}
