#ifndef TEST_MIGRATE_H
#define TEST_MIGRATE_H

#include "test-common.h"

void test_migrate_error(void);
void test_migrate_json(void);
void test_migrate_names(void);
void test_migrate_record(void);
void test_migrate_settings(void);
void test_migrate_state(void);
void test_migrate_template(void);

#endif
