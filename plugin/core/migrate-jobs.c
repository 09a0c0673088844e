/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "migrate-jobs.h"

unsigned int migrate_jobs_default(unsigned int cpus, int rtt_msecs,
				  unsigned int accounts,
				  enum migrate_jobs_reason *reason_r)
{
	unsigned int jobs, max = MIGRATE_JOBS_DEFAULT_MAX;
	unsigned int per_cpu = MIGRATE_JOBS_PER_CPU;

	if (cpus == 0)
		cpus = 1;
	*reason_r = MIGRATE_JOBS_REASON_CPUS;
	if (rtt_msecs >= MIGRATE_JOBS_RTT_MSECS) {
		/* a small account mostly waits for the source: more of them
		   in flight fill the line */
		per_cpu += (unsigned int)rtt_msecs / MIGRATE_JOBS_RTT_MSECS;
		*reason_r = MIGRATE_JOBS_REASON_RTT;
	} else {
		max = MIGRATE_JOBS_CPU_MAX;
	}
	/* per_cpu is at most 2 + INT_MAX/4: bound before multiplying */
	jobs = cpus >= max || per_cpu >= max ? max : cpus * per_cpu;
	if (jobs >= max) {
		jobs = max;
		if (*reason_r == MIGRATE_JOBS_REASON_RTT)
			*reason_r = MIGRATE_JOBS_REASON_MAX;
	}
	if (accounts > 0 && jobs > accounts) {
		jobs = accounts;
		*reason_r = MIGRATE_JOBS_REASON_ACCOUNTS;
	}
	return jobs;
}

const char *migrate_jobs_reason_str(enum migrate_jobs_reason reason)
{
	switch (reason) {
	case MIGRATE_JOBS_REASON_CPUS:
		return "cpus";
	case MIGRATE_JOBS_REASON_RTT:
		return "rtt";
	case MIGRATE_JOBS_REASON_ACCOUNTS:
		return "accounts";
	case MIGRATE_JOBS_REASON_MAX:
		return "max";
	}
	i_unreached();
}
