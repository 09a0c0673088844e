/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "migrate-jobs.h"
#include "test-migrate.h"

void test_migrate_jobs(void)
{
	static const struct {
		unsigned int cpus;
		int rtt_msecs;
		unsigned int accounts, jobs;
		enum migrate_jobs_reason reason;
	} tests[] = {
		/* not measured, or loopback: twice the CPUs, at most 16 */
		{ 2, -1, 0, 4, MIGRATE_JOBS_REASON_CPUS },
		{ 2, -1, 20, 4, MIGRATE_JOBS_REASON_CPUS },
		{ 2, 0, 20, 4, MIGRATE_JOBS_REASON_CPUS },
		{ 0, -1, 20, 2, MIGRATE_JOBS_REASON_CPUS },
		{ 1, 0, 20, 2, MIGRATE_JOBS_REASON_CPUS },
		{ 8, 0, 100, 16, MIGRATE_JOBS_REASON_CPUS },
		{ 64, 0, 100, 16, MIGRATE_JOBS_REASON_CPUS },
		{ 2, MIGRATE_JOBS_RTT_MSECS - 1, 20, 4,
		  MIGRATE_JOBS_REASON_CPUS },
		/* the round trip raises it, one per CPU per
		   MIGRATE_JOBS_RTT_MSECS */
		{ 2, MIGRATE_JOBS_RTT_MSECS, 100, 6, MIGRATE_JOBS_REASON_RTT },
		{ 2, 5 * MIGRATE_JOBS_RTT_MSECS, 100, 14,
		  MIGRATE_JOBS_REASON_RTT },
		{ 1, 12 * MIGRATE_JOBS_RTT_MSECS, 100, 14,
		  MIGRATE_JOBS_REASON_RTT },
		/* at most MIGRATE_JOBS_DEFAULT_MAX */
		{ 2, 50 * MIGRATE_JOBS_RTT_MSECS, 100,
		  MIGRATE_JOBS_DEFAULT_MAX, MIGRATE_JOBS_REASON_MAX },
		{ 16, MIGRATE_JOBS_RTT_MSECS, 100, MIGRATE_JOBS_DEFAULT_MAX,
		  MIGRATE_JOBS_REASON_MAX },
		{ 1000, INT_MAX, 0, MIGRATE_JOBS_DEFAULT_MAX,
		  MIGRATE_JOBS_REASON_MAX },
		{ UINT_MAX, INT_MAX, 0, MIGRATE_JOBS_DEFAULT_MAX,
		  MIGRATE_JOBS_REASON_MAX },
		{ UINT_MAX, 0, 0, MIGRATE_JOBS_CPU_MAX,
		  MIGRATE_JOBS_REASON_CPUS },
		/* never more than the accounts */
		{ 2, 0, 3, 3, MIGRATE_JOBS_REASON_ACCOUNTS },
		{ 2, -1, 1, 1, MIGRATE_JOBS_REASON_ACCOUNTS },
		{ 2, 50 * MIGRATE_JOBS_RTT_MSECS, 20, 20,
		  MIGRATE_JOBS_REASON_ACCOUNTS },
		{ 2, 5 * MIGRATE_JOBS_RTT_MSECS, 14, 14,
		  MIGRATE_JOBS_REASON_RTT },
	};
	enum migrate_jobs_reason reason;
	unsigned int i, jobs;

	test_begin("migrate jobs default");
	for (i = 0; i < N_ELEMENTS(tests); i++) {
		jobs = migrate_jobs_default(tests[i].cpus, tests[i].rtt_msecs,
					    tests[i].accounts, &reason);
		test_assert_idx(jobs == tests[i].jobs, i);
		test_assert_idx(reason == tests[i].reason, i);
		test_assert_idx(jobs >= 1 && jobs <= MIGRATE_JOBS_MAX, i);
	}
	test_assert_strcmp(migrate_jobs_reason_str(MIGRATE_JOBS_REASON_RTT),
			   "rtt");
	test_assert_strcmp(migrate_jobs_reason_str(
		MIGRATE_JOBS_REASON_ACCOUNTS), "accounts");
	test_end();
}
