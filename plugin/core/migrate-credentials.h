#ifndef MIGRATE_CREDENTIALS_H
#define MIGRATE_CREDENTIALS_H

#include "net.h"

/* The source credentials of the sync template, kept for the later
   "doveadm migrate -u USER" runs of the same accounts: one file per
   destination user in a directory only its owner (root) can enter, each
   file 0600, written atomically.  Removed when the domain's migration is
   finished. */

#define MIGRATE_CREDENTIALS_SUBDIR "migrate/credentials"

struct migrate_credentials {
	const char *source_host;
	/* 0 = migrate_source_port */
	in_port_t source_port;
	const char *source_user;
	const char *source_password;
	/* the template row's certificate name for a source_host given by
	   IP address; NULL: none (migrate-tls.h) */
	const char *source_tls_name;
	/* the template row's migrate_source_protocol ("imap", "pop3",
	   "auto"); NULL: none */
	const char *source_protocol;
	/* the template row's migrate_source_auth ("password", "xoauth2",
	   "oauthbearer"); NULL: none.  With an OAuth2 mechanism an empty
	   source_password takes the token command's token. */
	const char *source_auth;
};

/* For a process that is going to hold passwords (source credentials,
   the passwords of a template): no core dump (RLIMIT_CORE 0, the hard
   limit too, which a process without privileges cannot raise again) and
   not dumpable (no ptrace and no /proc/PID/mem by other processes of its
   uid).  Call it again after a change of user, which may make the
   process dumpable again.  Returns -1 with why when either fails. */
int migrate_credentials_protect_process(const char **error_r);

/* The file format, also what "doveadm migrate -K" reads on stdin. */
void migrate_credentials_serialize(string_t *dest,
				   const struct migrate_credentials *cred);
/* path only names the data in errors. */
int migrate_credentials_parse(const char *path, const char *data, pool_t pool,
			      struct migrate_credentials *cred_r,
			      const char **error_r);

/* The store under Dovecot's state_dir. */
const char *migrate_credentials_dir(const char *state_dir);

int migrate_credentials_write(const char *dir, const char *user,
			      const struct migrate_credentials *cred,
			      const char **error_r);
/* Returns 1 with the credentials (allocated from pool), 0 when the store
   has none for the user, -1 on error (also when the file or directory
   could be read by anyone but its owner). */
int migrate_credentials_read(const char *dir, const char *user, pool_t pool,
			     struct migrate_credentials *cred_r,
			     const char **error_r);
/* Every file of the users @domain (case-insensitive); *count_r is how
   many.  Returns 0 also when there was nothing to delete. */
int migrate_credentials_delete_domain(const char *dir, const char *domain,
				      unsigned int *count_r,
				      const char **error_r);
/* Returns 0 also when there was nothing to delete. */
int migrate_credentials_delete(const char *dir, const char *user,
			       const char **error_r);

#endif
