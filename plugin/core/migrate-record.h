#ifndef MIGRATE_RECORD_H
#define MIGRATE_RECORD_H

#include "migrate-tls.h"

struct migrate_json;

/* How the run reached its source. */
struct migrate_record_tls {
	/* where it connected; NULL when the run did not get that far */
	const char *host;
	unsigned int port;
	/* migrate_source_ssl: "no", "imaps" or "starttls" */
	const char *mode;
	/* migrate_source_ssl_verify */
	bool verify;
	/* the name the certificate was verified against, NULL: host */
	const char *name;
	/* the certificate pinned for the source, NULL: none */
	const char *pin;
	/* why the connection is not safe ("migrate_source_ssl = no",
	   "migrate_source_ssl_verify = no"), warned about in every run;
	   NULL when it is */
	const char *insecure;
	/* the certificate the source showed (sha256 NULL: none), and
	   whether it was refused for not being the pinned one */
	struct migrate_tls_cert cert;
	bool pin_mismatch;
};

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
	/* copies of INBOX that the POP3 server here lists out of the
	   source's POP3 order (migrate_source_pop3) */
	uint64_t pop3_order_differs;
	/* how the source was read: "imap" or "pop3" (NULL: the run did not
	   get that far) */
	const char *source_protocol;
	/* passes the run retried after losing the source */
	uint64_t retries;
	/* lines the run logged of the source pushing back: too many
	   connections, throttled, busy (migrate_error_is_pushback()) */
	uint64_t source_pushbacks;
	/* what the run warned about, without the "migrate: USER: " that
	   the log line starts with; NULL-terminated (NULL: none) */
	const char *const *warnings;
	/* the destination's storage quota, when the quota plugin is loaded
	   for the user: what is used and, when limited, the limit */
	bool quota_known, quota_limited;
	uint64_t quota_used_kb, quota_limit_kb;
	struct migrate_record_tls tls;
};

/* The "tls" object of a record, also of report.json and the batch
   reports (an object key; NULL in an array). */
void migrate_record_tls_append(struct migrate_json *json, const char *key,
			       const struct migrate_record_tls *tls);

/* The record as one JSON line. */
void migrate_record_append(string_t *dest, const struct migrate_record *rec);
/* Parse the first line of data as a record (values allocated from pool);
   user, result and exit_code must be there. */
int migrate_record_parse(const void *data, size_t size, pool_t pool,
			 struct migrate_record *rec_r, const char **error_r);

#endif
