/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "migrate-json.h"
#include "test-migrate.h"

static void test_migrate_json_write(void)
{
	string_t *str = t_str_new(256);
	struct migrate_json json;

	test_begin("migrate json writer");
	migrate_json_init(&json, str);
	migrate_json_object_begin(&json, NULL);
	migrate_json_string(&json, "user", "a\"b\\c\n\x01");
	migrate_json_string(&json, "error", NULL);
	migrate_json_uint(&json, "bytes", 18446744073709551615ULL);
	migrate_json_int(&json, "code", -1);
	migrate_json_bool(&json, "dry_run", TRUE);
	migrate_json_double(&json, "seconds", 1.5, 3);
	migrate_json_array_begin(&json, "warnings");
	migrate_json_string(&json, NULL, "ç");
	migrate_json_string(&json, NULL, "x");
	migrate_json_array_end(&json);
	migrate_json_object_begin(&json, "k\"w");
	migrate_json_object_end(&json);
	migrate_json_array_begin(&json, "empty");
	migrate_json_array_end(&json);
	migrate_json_object_end(&json);
	test_assert_strcmp(str_c(str),
		"{\"user\":\"a\\\"b\\\\c\\n\\u0001\",\"error\":null,"
		"\"bytes\":18446744073709551615,\"code\":-1,\"dry_run\":true,"
		"\"seconds\":1.500,\"warnings\":[\"ç\",\"x\"],\"k\\\"w\":{},"
		"\"empty\":[]}");
	test_end();
}

static void test_migrate_json_newline(void)
{
	string_t *str = t_str_new(256);
	struct migrate_json json;
	unsigned int i;

	test_begin("migrate json line breaks");
	/* the batch report's layout: one account a line */
	migrate_json_init(&json, str);
	migrate_json_object_begin(&json, NULL);
	migrate_json_array_begin(&json, "accounts");
	for (i = 0; i < 2; i++) {
		migrate_json_newline(&json);
		migrate_json_object_begin(&json, NULL);
		migrate_json_uint(&json, "n", i);
		migrate_json_object_end(&json);
	}
	migrate_json_newline(&json);
	migrate_json_array_end(&json);
	migrate_json_newline(&json);
	migrate_json_uint(&json, "total", 2);
	migrate_json_object_end(&json);
	test_assert_strcmp(str_c(str), "{\"accounts\":[\n{\"n\":0},\n{\"n\":1}\n],"
			   "\n\"total\":2}");

	str_truncate(str, 0);
	migrate_json_init(&json, str);
	migrate_json_object_begin(&json, NULL);
	migrate_json_array_begin(&json, "none");
	migrate_json_newline(&json);
	migrate_json_array_end(&json);
	migrate_json_object_end(&json);
	test_assert_strcmp(str_c(str), "{\"none\":[\n]}");
	test_end();
}

static void test_migrate_json_parse(void)
{
	static const char *const invalid[] = {
		"", "{", "{\"a\":}", "[1,2]", "{\"a\":1}x", "{\"a\" 1}",
	};
	const char *data = "{\"user\":\"u\\u00e7@x\",\"n\":42,\"neg\":-1,"
		"\"nul\":null,\"o\":{\"a\":\"b\"},\"l\":[\"x\",\"y\"]}\n";
	const struct json_tree_node *root, *node;
	struct json_tree *tree;
	const char *error;
	unsigned int i;

	test_begin("migrate json parse");
	test_assert(migrate_json_parse(data, strlen(data), &tree, &error) == 0);
	root = json_tree_root(tree);
	test_assert_strcmp(migrate_json_node_str(root, "user"), "uç@x");
	test_assert(migrate_json_node_uint(root, "n") == 42);
	test_assert(migrate_json_node_uint(root, "neg") == 0);
	test_assert(migrate_json_node_str(root, "nul") == NULL);
	test_assert(migrate_json_node_str(root, "o") == NULL);
	test_assert(migrate_json_node_str(root, "missing") == NULL);
	node = json_tree_find_key(root, "o");
	test_assert(node != NULL &&
		    strcmp(migrate_json_node_str(node, "a"), "b") == 0);
	node = json_tree_find_key(root, "l");
	test_assert(node != NULL && node->value_type == JSON_TYPE_ARRAY);
	node = json_tree_get_child(node);
	test_assert(node != NULL &&
		    strcmp(json_tree_get_value_str(node), "x") == 0 &&
		    node->next != NULL && node->next->next == NULL);
	json_tree_deinit(&tree);

	for (i = 0; i < N_ELEMENTS(invalid); i++) {
		test_assert_idx(migrate_json_parse(invalid[i], strlen(invalid[i]),
						   &tree, &error) < 0, i);
	}
	test_end();
}

void test_migrate_json(void)
{
	test_migrate_json_write();
	test_migrate_json_newline();
	test_migrate_json_parse();
}
