#ifndef MIGRATE_ACCOUNTS_H
#define MIGRATE_ACCOUNTS_H

/* The customer's accounts template (doveadm migrate accounts): a header
   row naming the columns (English or the guide's Portuguese names), then
   one account per row:

     username  local part, before the @
     domain    one per file
     password  the destination password policy (never printed)
     quota     GB, decimals allowed ("2.5" or "2,5")
     type      0 = basic, 1 = sync
     full name letters (accented too), digits, space, ' . @ -
     language  a language tag, e.g. pt-br
     time zone one of the system's tz database, e.g. America/Sao_Paulo
     date format as given, without spaces (optional column)

   Every problem is "FILE:LINE: column N (name): problem".  The header and
   the problems are migrate-table.h's. */

enum migrate_accounts_column {
	MIGRATE_ACCOUNTS_USERNAME = 0,
	MIGRATE_ACCOUNTS_DOMAIN,
	MIGRATE_ACCOUNTS_PASSWORD,
	MIGRATE_ACCOUNTS_QUOTA,
	MIGRATE_ACCOUNTS_TYPE,
	MIGRATE_ACCOUNTS_FULL_NAME,
	MIGRATE_ACCOUNTS_LANGUAGE,
	MIGRATE_ACCOUNTS_TIME_ZONE,
	MIGRATE_ACCOUNTS_DATE_FORMAT,

	MIGRATE_ACCOUNTS_COLUMN_COUNT
};

struct migrate_account {
	unsigned int line;
	/* local@domain, lowercase */
	const char *user;
	const char *password;
	/* whole MiB */
	uint64_t quota_mib;
	unsigned int type;
	const char *full_name;
	const char *language;
	const char *time_zone;
	/* "" when the template has no such column */
	const char *date_format;
};
ARRAY_DEFINE_TYPE(migrate_account, struct migrate_account);

struct migrate_accounts {
	pool_t pool;
	const char *path;
	const char *domain;
	ARRAY_TYPE(migrate_account) accounts;
	/* sorted by line; the file is valid when errors is empty */
	ARRAY_TYPE(const_string) errors;
	ARRAY_TYPE(const_string) notes;
};

/* Reads and checks the whole file.  Time zones are looked up under
   zoneinfo_dir (/usr/share/zoneinfo).  Returns -1 when the file cannot be
   read, else 0 with the problems in errors. */
int migrate_accounts_read(const char *path, const char *zoneinfo_dir,
			  struct migrate_accounts **accounts_r,
			  const char **error_r);
void migrate_accounts_free(struct migrate_accounts **accounts);

/* The passwd-file store. */

enum migrate_account_result {
	MIGRATE_ACCOUNT_CREATED,
	MIGRATE_ACCOUNT_UNCHANGED,
	MIGRATE_ACCOUNT_UPDATED,
	/* exists with other values, and no update was asked for */
	MIGRATE_ACCOUNT_SKIPPED,
	/* in the store as the template says, but Dovecot's auth cannot look
	   it up (set after the store by the caller) */
	MIGRATE_ACCOUNT_FAILED,
	/* in the store as the template says, not looked up: Dovecot's auth
	   is not running */
	MIGRATE_ACCOUNT_UNVERIFIED,
};
#define MIGRATE_ACCOUNT_RESULT_COUNT (MIGRATE_ACCOUNT_UNVERIFIED + 1)
const char *migrate_account_result_name(enum migrate_account_result result);

struct migrate_accounts_hasher {
	/* Returns the stored form ("{SCHEME}...") of password, or NULL with
	   error_r. */
	const char *(*hash)(const char *password, const char **error_r);
	/* Returns 1 when stored (as hash() wrote it) is password's, 0 when
	   not, -1 on error. */
	int (*verify)(const char *password, const char *stored,
		      const char **error_r);
};

struct migrate_account_report {
	const struct migrate_account *account;
	enum migrate_account_result result;
	/* what differs, for updated and skipped */
	const char *reason;
	/* created and updated (not in a dry run): the password to store,
	   the old hash when the password did not change */
	const char *stored_password;
};
ARRAY_DEFINE_TYPE(migrate_account_report, struct migrate_account_report);

/* The account as a passwd-file line after its password:
   ":uid:gid:full name:home:shell:userdb extra fields", each % of a value
   stored as %%%% (the userdb and then the mail process's plugin settings
   expand it).  Stores compare these to tell what changed. */
const char *migrate_account_tail(const struct migrate_account *acc);

/* What a store has for a user: the stored password ("{SCHEME}...") and
   the account's migrate_account_tail() as stored. */
struct migrate_account_stored {
	const char *password;
	const char *tail;
};
/* NULL when the store has no such user. */
typedef const struct migrate_account_stored *
migrate_account_lookup_t(const char *user, void *context);

/* Decide per account what a store must do: a report each, with
   stored_password for what must be written.  Hashes only what is new or
   changed. */
int migrate_accounts_plan(const struct migrate_accounts *accounts,
			  migrate_account_lookup_t *lookup, void *context,
			  const struct migrate_accounts_hasher *hasher,
			  bool update, bool dry_run, pool_t pool,
			  ARRAY_TYPE(migrate_account_report) *reports,
			  const char **error_r);

/* Bring the passwd-file at path in line with the accounts: new ones are
   appended, an existing one with the same values is left byte for byte
   (its hash kept when the password still matches), one with other values
   is rewritten only with update.  Other lines stay as they are.  The file
   is replaced atomically under path.lock, and not written at all when
   nothing changes (or with dry_run).  After a write it returns only once
   the second of the write has passed: Dovecot's passwd-file stats the
   file at most once a second, so lookups from then on see the new file,
   and a later write has another mtime.  Returns 0 with a report per
   account, -1 with error_r (nothing written). */
int migrate_accounts_passwd_file_apply(const char *path,
				       const struct migrate_accounts *accounts,
				       const struct migrate_accounts_hasher *hasher,
				       bool update, bool dry_run,
				       pool_t pool,
				       ARRAY_TYPE(migrate_account_report) *reports,
				       const char **error_r);

#endif
