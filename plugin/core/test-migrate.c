/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "test-migrate.h"

int main(void)
{
	static void (*const test_functions[])(void) = {
		test_migrate_error,
		test_migrate_json,
		test_migrate_names,
		test_migrate_record,
		test_migrate_settings,
		test_migrate_state,
		test_migrate_template,
		NULL
	};
	return test_run(test_functions);
}
