/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "strnum.h"
#include "istream.h"
#include "json-parser.h"
#include "migrate-json.h"

void migrate_json_init(struct migrate_json *json, string_t *dest)
{
	i_zero(json);
	json->dest = dest;
}

/* the comma, the line break and the key in front of a value */
static void migrate_json_value_begin(struct migrate_json *json,
				     const char *key)
{
	if (json->have_value[json->depth])
		str_append_c(json->dest, ',');
	json->have_value[json->depth] = TRUE;
	if (json->newline) {
		str_append_c(json->dest, '\n');
		json->newline = FALSE;
	}
	if (key != NULL) {
		str_append_c(json->dest, '"');
		json_append_escaped(json->dest, key);
		str_append(json->dest, "\":");
	}
}

static void migrate_json_open(struct migrate_json *json, const char *key,
			      char c)
{
	migrate_json_value_begin(json, key);
	str_append_c(json->dest, c);
	json->depth++;
	i_assert(json->depth < MIGRATE_JSON_MAX_DEPTH);
	json->have_value[json->depth] = FALSE;
}

static void migrate_json_close(struct migrate_json *json, char c)
{
	i_assert(json->depth > 0);
	if (json->newline) {
		str_append_c(json->dest, '\n');
		json->newline = FALSE;
	}
	str_append_c(json->dest, c);
	json->depth--;
}

void migrate_json_object_begin(struct migrate_json *json, const char *key)
{
	migrate_json_open(json, key, '{');
}

void migrate_json_object_end(struct migrate_json *json)
{
	migrate_json_close(json, '}');
}

void migrate_json_array_begin(struct migrate_json *json, const char *key)
{
	migrate_json_open(json, key, '[');
}

void migrate_json_array_end(struct migrate_json *json)
{
	migrate_json_close(json, ']');
}

void migrate_json_string(struct migrate_json *json, const char *key,
			 const char *value)
{
	if (value == NULL) {
		migrate_json_null(json, key);
		return;
	}
	migrate_json_value_begin(json, key);
	str_append_c(json->dest, '"');
	json_append_escaped(json->dest, value);
	str_append_c(json->dest, '"');
}

void migrate_json_uint(struct migrate_json *json, const char *key,
		       uint64_t value)
{
	migrate_json_value_begin(json, key);
	str_printfa(json->dest, "%"PRIu64, value);
}

void migrate_json_int(struct migrate_json *json, const char *key,
		      int64_t value)
{
	migrate_json_value_begin(json, key);
	str_printfa(json->dest, "%"PRId64, value);
}

void migrate_json_bool(struct migrate_json *json, const char *key,
		       bool value)
{
	migrate_json_value_begin(json, key);
	str_append(json->dest, value ? "true" : "false");
}

void migrate_json_null(struct migrate_json *json, const char *key)
{
	migrate_json_value_begin(json, key);
	str_append(json->dest, "null");
}

void migrate_json_double(struct migrate_json *json, const char *key,
			 double value, unsigned int decimals)
{
	migrate_json_value_begin(json, key);
	str_printfa(json->dest, "%.*f", (int)decimals, value);
}

void migrate_json_newline(struct migrate_json *json)
{
	json->newline = TRUE;
}

int migrate_json_parse(const void *data, size_t size,
		       struct json_tree **tree_r, const char **error_r)
{
	struct istream *input;
	struct json_parser *parser;
	struct json_tree *tree;
	enum json_type type;
	const char *value, *error, *tree_error = NULL;

	input = i_stream_create_from_data(data, size);
	parser = json_parser_init(input);
	tree = json_tree_init();
	while (json_parse_next(parser, &type, &value) > 0) {
		if (json_tree_append(tree, type, value) < 0) {
			tree_error = "unexpected structure";
			break;
		}
	}
	if (json_parser_deinit(&parser, &error) == 0)
		error = tree_error;
	i_stream_unref(&input);
	if (error != NULL) {
		json_tree_deinit(&tree);
		*error_r = t_strdup_printf("Invalid JSON: %s", error);
		return -1;
	}
	*tree_r = tree;
	return 0;
}

const char *migrate_json_node_str(const struct json_tree_node *node,
				  const char *key)
{
	node = json_tree_find_key(node, key);
	if (node == NULL || node->value_type == JSON_TYPE_OBJECT ||
	    node->value_type == JSON_TYPE_ARRAY ||
	    node->value_type == JSON_TYPE_NULL)
		return NULL;
	return json_tree_get_value_str(node);
}

uint64_t migrate_json_node_uint(const struct json_tree_node *node,
				const char *key)
{
	const char *value = migrate_json_node_str(node, key);
	uint64_t num;

	if (value == NULL || str_to_uint64(value, &num) < 0)
		return 0;
	return num;
}
