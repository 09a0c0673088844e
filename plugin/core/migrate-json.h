#ifndef MIGRATE_JSON_H
#define MIGRATE_JSON_H

#include "json-tree.h"

/* The one JSON writer of every report and record this project writes: on
   a string, with Dovecot's json_append_escaped() for every string and key.
   Objects and arrays nest; commas come by themselves.  key is the member's
   name inside an object and NULL elsewhere (array elements, the root). */
#define MIGRATE_JSON_MAX_DEPTH 8

struct migrate_json {
	string_t *dest;
	unsigned int depth;
	/* per open level: a value was written at it (the next needs a comma) */
	bool have_value[MIGRATE_JSON_MAX_DEPTH];
	bool newline;
};

void migrate_json_init(struct migrate_json *json, string_t *dest);

void migrate_json_object_begin(struct migrate_json *json, const char *key);
void migrate_json_object_end(struct migrate_json *json);
void migrate_json_array_begin(struct migrate_json *json, const char *key);
void migrate_json_array_end(struct migrate_json *json);

/* NULL value writes null */
void migrate_json_string(struct migrate_json *json, const char *key,
			 const char *value);
void migrate_json_uint(struct migrate_json *json, const char *key,
		       uint64_t value);
void migrate_json_int(struct migrate_json *json, const char *key,
		      int64_t value);
void migrate_json_bool(struct migrate_json *json, const char *key,
		       bool value);
void migrate_json_null(struct migrate_json *json, const char *key);
/* value with that many digits after the point */
void migrate_json_double(struct migrate_json *json, const char *key,
			 double value, unsigned int decimals);

/* The next value, or the end of the open object or array, starts on a new
   line (after its comma): the reports keep one account a line, so that
   grep counts them. */
void migrate_json_newline(struct migrate_json *json);

/* Parse data, one JSON object, into a tree (free with json_tree_deinit()).
   Returns 0, or -1 with error_r when it is not a valid object. */
int migrate_json_parse(const void *data, size_t size,
		       struct json_tree **tree_r, const char **error_r);
/* A member of an object node, as a string; NULL when it is missing, null,
   an object or an array. */
const char *migrate_json_node_str(const struct json_tree_node *node,
				  const char *key);
/* A member that is an unsigned number; 0 when it is missing or not one. */
uint64_t migrate_json_node_uint(const struct json_tree_node *node,
				const char *key);

#endif
