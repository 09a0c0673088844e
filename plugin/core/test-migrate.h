#ifndef TEST_MIGRATE_H
#define TEST_MIGRATE_H

#include "test-common.h"

/* A directory for the tests' files, created at the first call and
   removed after the tests. */
const char *test_migrate_dir(void);
/* Writes contents to name in test_migrate_dir(); returns its path. */
const char *test_migrate_write(const char *name, const char *contents);

/* A must-fail row of a template reader: errors holds exactly one, path
   followed by expected. */
void test_migrate_assert_one_error(const ARRAY_TYPE(const_string) *errors,
				   const char *path, const char *expected,
				   unsigned int idx);

void test_migrate_csv(void);
void test_migrate_text(void);
void test_migrate_file(void);
void test_migrate_error(void);
void test_migrate_json(void);
void test_migrate_names(void);
void test_migrate_oauth2(void);
void test_migrate_record(void);
void test_migrate_settings(void);
void test_migrate_state(void);
void test_migrate_template(void);
void test_migrate_accounts(void);
void test_migrate_credentials(void);
void test_migrate_domain(void);
void test_migrate_tls(void);
void test_migrate_jobs(void);

#endif
