/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "migrate-error.h"
#include "test-migrate.h"

#include <sysexits.h>

static void test_migrate_exit_code_merge(void)
{
	/* the documented order, what matters most first */
	static const int order[] = {
		EX_TEMPFAIL, EX_CONFIG, EX_NOPERM, EX_PROTOCOL, EX_CANTCREAT,
		EX_DATAERR, EX_SOFTWARE, 0,
	};
	static const struct {
		int cur, next, result;
	} ties[] = {
		/* codes without a class rank as a failure without one: the
		   first met stays */
		{ EX_SOFTWARE, EX_NOUSER, EX_SOFTWARE },
		{ EX_NOUSER, EX_SOFTWARE, EX_NOUSER },
		{ EX_OSERR, EX_DATAERR, EX_DATAERR },
		{ EX_NOUSER, 0, EX_NOUSER },
		{ 0, EX_NOUSER, EX_NOUSER },
	};
	unsigned int i, j;

	test_begin("migrate exit code precedence");
	for (i = 0; i < N_ELEMENTS(order); i++) {
		for (j = 0; j < N_ELEMENTS(order); j++) {
			int winner = order[I_MIN(i, j)];

			test_assert_idx(migrate_exit_code_merge(order[i],
				order[j]) == winner, i * 100 + j);
		}
	}
	for (i = 0; i < N_ELEMENTS(ties); i++) {
		test_assert_idx(migrate_exit_code_merge(ties[i].cur,
			ties[i].next) == ties[i].result, i);
	}
	test_end();
}

static void test_migrate_error_order(void)
{
	enum migrate_error error;
	int exit_code = 0;

	test_begin("migrate error order follows the exit code precedence");
	/* each class wins over the ones before it, also as an exit code
	   (but the two classes of 65 around the classless failure) */
	for (error = MIGRATE_ERROR_NONE; error <= MIGRATE_ERROR_TEMP; error++) {
		int next = migrate_error_to_exit_code(error);

		if (error == MIGRATE_ERROR_FAILED)
			continue;
		test_assert_idx(migrate_exit_code_merge(exit_code, next) == next,
				error);
		exit_code = next;
		test_assert_idx(migrate_error_name(error)[0] != '\0', error);
	}
	test_assert_strcmp(migrate_error_name(MIGRATE_ERROR_SOURCE_AUTH),
			   "source_auth");
	test_assert_strcmp(migrate_error_name(MIGRATE_ERROR_SOURCE_LIMIT),
			   "source_limit");
	test_assert(migrate_error_to_exit_code(MIGRATE_ERROR_SOURCE_LIMIT) ==
		    EX_DATAERR);
	test_end();
}

static void test_migrate_exit_code_normalize(void)
{
	/* README, "Output and exit codes" */
	static const int documented[] = {
		0, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_NOUSER, EX_CANTCREAT,
		EX_TEMPFAIL, EX_PROTOCOL, EX_NOPERM, EX_CONFIG,
	};
	/* doveadm's and Dovecot's other codes, a crash as the shell sees
	   it: nothing partial was kept, a re-run goes on */
	static const int others[] = {
		1, EX_NOHOST, EX_SOFTWARE, EX_OSERR, EX_IOERR, 83, 89, 134, 137,
	};
	enum migrate_error error;
	unsigned int i;

	test_begin("migrate exit codes are the documented ones");
	for (i = 0; i < N_ELEMENTS(documented); i++) {
		test_assert_idx(migrate_exit_code_normalize(documented[i]) ==
				documented[i], i);
	}
	for (i = 0; i < N_ELEMENTS(others); i++) {
		test_assert_idx(migrate_exit_code_normalize(others[i]) ==
				EX_TEMPFAIL, i);
	}
	/* every class of failure exits with a documented code */
	for (error = MIGRATE_ERROR_NONE; error <= MIGRATE_ERROR_TEMP; error++) {
		int code = migrate_error_to_exit_code(error);

		test_assert_idx(migrate_exit_code_normalize(code) == code,
				error);
	}
	/* an unexpected error of the destination or of this tool: progress
	   is kept, a re-run goes on; within a run it ranks last */
	test_assert(migrate_error_to_exit_code(MIGRATE_ERROR_FAILED) ==
		    EX_TEMPFAIL);
	test_end();
}

static void test_migrate_failure_escaped(void)
{
	struct migrate_failure failure;
	pool_t pool = pool_alloconly_create("test failure", 256);
	struct event *event = event_create(NULL);

	test_begin("migrate failure: a source's text is escaped");
	i_zero(&failure);
	/* a folder name or a server's reply with control characters */
	test_expect_error_string("Fetching UID 1 of a\\x1b[2Jb failed: "
				 "NO x\\x0aError: forged");
	migrate_failure_set(&failure, pool, event, MIGRATE_ERROR_FAILED,
			    "Fetching UID 1 of a\x1b[2Jb failed: "
			    "NO x\nError: forged");
	test_expect_no_more_errors();
	test_assert_strcmp(failure.error, "Fetching UID 1 of a\\x1b[2Jb "
			   "failed: NO x\\x0aError: forged");
	test_end();
	event_unref(&event);
	pool_unref(&pool);
}

static void test_migrate_error_pushback(void)
{
	test_begin("migrate error: the source pushing back");
	test_assert(migrate_error_is_pushback("Login to h failed: "
		"Authentication failed: [UNAVAILABLE] Too many simultaneous "
		"connections"));
	test_assert(migrate_error_is_pushback("Opening Sent failed: Request "
		"is throttled. Suggested Backoff Time: 1000 milliseconds"));
	test_assert(migrate_error_is_pushback("NO [LIMIT] UID FETCH Rate "
		"limit hit."));
	test_assert(migrate_error_is_pushback("* BYE [UNAVAILABLE] Server busy"));
	test_assert(!migrate_error_is_pushback("Authentication failed: "
		"[AUTHENTICATIONFAILED] Invalid credentials"));
	test_assert(!migrate_error_is_pushback("Disconnected from server"));
	test_assert(!migrate_error_is_pushback(NULL));
	test_end();
}

void test_migrate_error(void)
{
	test_migrate_error_pushback();
	test_migrate_exit_code_merge();
	test_migrate_error_order();
	test_migrate_exit_code_normalize();
	test_migrate_failure_escaped();
}
