#ifndef MIGRATE_RECORD_H
#define MIGRATE_RECORD_H

/* The outcome of one user's "doveadm migrate -R FD" run: the child writes
   it on FD as one JSON object a line, also when the run fails (a fatal
   error included), and "migrate batch" and "migrate check" read it
   instead of the child's output or log. */
struct migrate_record {
	const char *user;
	/* "ok", "partial" or "failed" */
	const char *result;
	int exit_code;
	/* migrate_error_name() of the run's failure */
	const char *error_code;
	/* why the run failed; NULL when it did not */
	const char *error;
	/* "mirror", "final" or "dry-run"; NULL when the run did not start */
	const char *mode;
	uint64_t folders, copied, updated, deleted, skipped, rejected, bytes;
	/* copies that did not keep their source UID (mail clients download
	   them again) */
	uint64_t uids_changed;
	/* passes the run retried after losing the source */
	uint64_t retries;
	/* what the run warned about, without the "migrate: USER: " that
	   the log line starts with; NULL-terminated (NULL: none) */
	const char *const *warnings;
	/* the destination's storage quota, when the quota plugin is loaded
	   for the user: what is used and, when limited, the limit */
	bool quota_known, quota_limited;
	uint64_t quota_used_kb, quota_limit_kb;
};

/* The record as one JSON line. */
void migrate_record_append(string_t *dest, const struct migrate_record *rec);
/* Parse the first line of data as a record (values allocated from pool);
   user, result and exit_code must be there. */
int migrate_record_parse(const void *data, size_t size, pool_t pool,
			 struct migrate_record *rec_r, const char **error_r);

#endif
