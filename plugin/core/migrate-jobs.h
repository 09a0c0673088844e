#ifndef MIGRATE_JOBS_H
#define MIGRATE_JOBS_H

/* How many accounts "doveadm migrate batch" runs at a time when -j is not
   given.  An account's run is CPU work (reading, parsing and saving its
   messages) and waiting for the source's answers (a few round trips per
   folder, however small the folder).  On loopback or a LAN the CPUs are
   the limit: two accounts per CPU keep them busy while one of the two
   waits.  Over a network with a round trip of RTT ms a small account
   spends most of its time waiting, so more accounts in flight fill the
   line: per CPU, one more for every MIGRATE_JOBS_RTT_MSECS of round
   trip.  Never more than the accounts, never more than
   MIGRATE_JOBS_DEFAULT_MAX (each account holds connections to the
   source, and the old server may limit them per client address). */

/* -j given explicitly: 1..MIGRATE_JOBS_MAX */
#define MIGRATE_JOBS_MAX 64
/* the most the default chooses */
#define MIGRATE_JOBS_DEFAULT_MAX 32
/* the default without a round trip: per CPU, and at most */
#define MIGRATE_JOBS_PER_CPU 2
#define MIGRATE_JOBS_CPU_MAX 16
/* per CPU, one more account at a time for every this many ms of the
   source's round trip */
#define MIGRATE_JOBS_RTT_MSECS 2

enum migrate_jobs_reason {
	/* twice the CPUs, at most MIGRATE_JOBS_CPU_MAX: no round trip
	   measured, or one too short to matter */
	MIGRATE_JOBS_REASON_CPUS,
	/* raised for the source's round trip */
	MIGRATE_JOBS_REASON_RTT,
	/* bounded by the number of accounts */
	MIGRATE_JOBS_REASON_ACCOUNTS,
	/* bounded by MIGRATE_JOBS_DEFAULT_MAX */
	MIGRATE_JOBS_REASON_MAX,
};

/* The accounts to run at a time for cpus CPUs (0: unknown, taken as 1),
   a round trip to the source of rtt_msecs (negative: not measured) and
   accounts accounts (0: no bound); at least 1. */
unsigned int migrate_jobs_default(unsigned int cpus, int rtt_msecs,
				  unsigned int accounts,
				  enum migrate_jobs_reason *reason_r);
/* "cpus", "rtt", "accounts", "max": for the log and the event */
const char *migrate_jobs_reason_str(enum migrate_jobs_reason reason);

#endif
