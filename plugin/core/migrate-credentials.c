/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strescape.h"
#include "strnum.h"
#include "net.h"
#include "read-full.h"
#include "mkdir-parents.h"
#include "safe-memset.h"
#include "migrate-file.h"
#include "migrate-settings.h"
#include "migrate-credentials.h"

#include <stdio.h>
#include <ctype.h>

#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <dirent.h>

#define CREDENTIALS_HEADER "dovecot-migrate credentials 1"
#define CREDENTIALS_MAX_SIZE 65536

const char *migrate_credentials_dir(const char *state_dir)
{
	return t_strconcat(state_dir, "/", MIGRATE_CREDENTIALS_SUBDIR, NULL);
}

/* user names as file names: anything but [A-Za-z0-9@._+-] becomes %XX, so
   that no name can leave the directory or start with a dot */
static void credentials_escape(string_t *dest, const char *name,
				bool leading)
{
	const unsigned char *p;

	for (p = (const unsigned char *)name; *p != '\0'; p++) {
		if (i_isalnum(*p) || *p == '@' || *p == '_' || *p == '+' ||
		    *p == '-' ||
		    (*p == '.' && (!leading || p != (const unsigned char *)name)))
			str_append_c(dest, *p);
		else
			str_printfa(dest, "%%%02X", *p);
	}
}

static const char *credentials_path(const char *dir, const char *user)
{
	string_t *str = t_str_new(128);

	str_append(str, dir);
	str_append_c(str, '/');
	credentials_escape(str, user, TRUE);
	return str_c(str);
}

/* The directory must be ours and closed to everyone else. */
static int credentials_dir_check(const char *dir, bool create,
				 const char **error_r)
{
	struct stat st;

	if (create) {
		/* the parent also holds the domain state that LMTP and
		   dovecot-lda read: only the store itself is closed */
		const char *parent = t_strdup_until(dir, strrchr(dir, '/'));

		if (mkdir_parents(parent, 0755) < 0 && errno != EEXIST) {
			*error_r = t_strdup_printf("mkdir(%s) failed: %m",
						   parent);
			return -1;
		}
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			*error_r = t_strdup_printf("mkdir(%s) failed: %m", dir);
			return -1;
		}
	}
	if (lstat(dir, &st) < 0) {
		if (errno == ENOENT && !create)
			return 0;
		*error_r = t_strdup_printf("stat(%s) failed: %m", dir);
		return -1;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 0077) != 0) {
		*error_r = t_strdup_printf(
			"%s must be a directory owned by uid %ld with mode 0700 "
			"(found uid %ld, mode %04o)", dir, (long)geteuid(),
			(long)st.st_uid, (unsigned int)(st.st_mode & 07777));
		return -1;
	}
	return 1;
}

int migrate_credentials_protect_process(const char **error_r)
{
	const struct rlimit rlim = { .rlim_cur = 0, .rlim_max = 0 };

	/* prctl() itself: restrict_access_set_dumpable() logs its failure
	   instead of returning it */
	if (setrlimit(RLIMIT_CORE, &rlim) < 0) {
		*error_r = t_strdup_printf("setrlimit(RLIMIT_CORE, 0) failed: %m");
		return -1;
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		*error_r = t_strdup_printf("prctl(PR_SET_DUMPABLE, 0) failed: %m");
		return -1;
	}
	return 0;
}

void migrate_credentials_serialize(string_t *dest,
				   const struct migrate_credentials *cred)
{
	str_append(dest, CREDENTIALS_HEADER"\n");
	str_append(dest, "host\t");
	str_append_tabescaped(dest, cred->source_host);
	str_printfa(dest, "\nport\t%u\nuser\t",
		    (unsigned int)cred->source_port);
	str_append_tabescaped(dest, cred->source_user);
	str_append(dest, "\npassword\t");
	str_append_tabescaped(dest, cred->source_password);
	str_append_c(dest, '\n');
	if (cred->source_tls_name != NULL) {
		str_append(dest, "tls_name\t");
		str_append_tabescaped(dest, cred->source_tls_name);
		str_append_c(dest, '\n');
	}
	if (cred->source_protocol != NULL) {
		str_append(dest, "protocol\t");
		str_append_tabescaped(dest, cred->source_protocol);
		str_append_c(dest, '\n');
	}
	if (cred->source_auth != NULL) {
		str_append(dest, "auth\t");
		str_append_tabescaped(dest, cred->source_auth);
		str_append_c(dest, '\n');
	}
}

int migrate_credentials_write(const char *dir, const char *user,
			      const struct migrate_credentials *cred,
			      const char **error_r)
{
	string_t *str;
	int ret;

	if (credentials_dir_check(dir, TRUE, error_r) < 0)
		return -1;
	str = t_str_new(256);
	migrate_credentials_serialize(str, cred);
	ret = migrate_file_replace(credentials_path(dir, user), str_data(str),
				   str_len(str), 0600, (uid_t)-1, (gid_t)-1,
				   error_r);
	safe_memset(str_c_modifiable(str), 0, str_len(str));
	return ret;
}

int migrate_credentials_parse(const char *path, const char *data, pool_t pool,
			      struct migrate_credentials *cred_r,
			      const char **error_r)
{
	const char *const *lines, *const *args, *value;
	enum migrate_source_protocol protocol;
	enum migrate_source_auth auth;
	unsigned int i;
	bool have_host = FALSE, have_user = FALSE, have_password = FALSE;

	i_zero(cred_r);
	lines = t_strsplit(data, "\n");
	if (lines[0] == NULL || strcmp(lines[0], CREDENTIALS_HEADER) != 0) {
		*error_r = t_strdup_printf("%s: not a credentials file", path);
		return -1;
	}
	for (i = 1; lines[i] != NULL; i++) {
		if (lines[i][0] == '\0')
			continue;
		args = t_strsplit_tabescaped(lines[i]);
		if (args[0] == NULL || args[1] == NULL) {
			*error_r = t_strdup_printf("%s:%u: broken line",
						   path, i + 1);
			return -1;
		}
		value = args[1];
		if (strcmp(args[0], "host") == 0) {
			cred_r->source_host = p_strdup(pool, value);
			have_host = TRUE;
		} else if (strcmp(args[0], "port") == 0) {
			if (net_str2port_zero(value, &cred_r->source_port) < 0) {
				*error_r = t_strdup_printf("%s:%u: bad port",
							   path, i + 1);
				return -1;
			}
		} else if (strcmp(args[0], "user") == 0) {
			cred_r->source_user = p_strdup(pool, value);
			have_user = TRUE;
		} else if (strcmp(args[0], "password") == 0) {
			cred_r->source_password = p_strdup(pool, value);
			have_password = TRUE;
		} else if (strcmp(args[0], "tls_name") == 0) {
			cred_r->source_tls_name = p_strdup(pool, value);
		} else if (strcmp(args[0], "protocol") == 0) {
			if (!migrate_source_protocol_parse(value, &protocol)) {
				*error_r = t_strdup_printf(
					"%s:%u: bad protocol", path, i + 1);
				return -1;
			}
			cred_r->source_protocol =
				migrate_source_protocol_to_str(protocol);
		} else if (strcmp(args[0], "auth") == 0) {
			if (!migrate_source_auth_parse(value, &auth)) {
				*error_r = t_strdup_printf(
					"%s:%u: bad auth", path, i + 1);
				return -1;
			}
			cred_r->source_auth = migrate_source_auth_to_str(auth);
		}
		/* unknown keys: written by a newer version, ignored */
	}
	if (!have_host || !have_user || !have_password) {
		*error_r = t_strdup_printf("%s: host, user or password missing",
					   path);
		return -1;
	}
	return 0;
}

int migrate_credentials_read(const char *dir, const char *user, pool_t pool,
			     struct migrate_credentials *cred_r,
			     const char **error_r)
{
	const char *path;
	char *data;
	size_t size;
	int ret, result;

	*error_r = NULL;
	if (credentials_dir_check(dir, FALSE, error_r) <= 0)
		return *error_r == NULL ? 0 : -1;
	path = credentials_path(dir, user);
	if ((ret = migrate_file_read_private(path, CREDENTIALS_MAX_SIZE,
					     &data, &size, error_r)) <= 0)
		return ret;
	if (size > 0 && data[size - 1] != '\n') {
		/* we always end it with a line feed: a file cut short
		   would otherwise give a cut password */
		*error_r = t_strdup_printf("%s: truncated (the last line is "
					   "incomplete)", path);
		result = -1;
	} else {
		result = migrate_credentials_parse(path, data, pool, cred_r,
						   error_r);
	}
	safe_memset(data, 0, size);
	return result < 0 ? -1 : 1;
}

/* A file of a user whose escaped name ends with suffix ("@domain"): the
   store's own, or a temp file a crashed write left, "NAME.tmp.<...>"
   (migrate_file_replace()) or "NAME.tmp" (before unique temp names). */
static bool credentials_name_has_suffix(const char *name, const char *suffix)
{
	size_t suffix_len = strlen(suffix);
	const char *p;

	for (p = name + 1; *p != '\0'; p++) {
		if (strncasecmp(p, suffix, suffix_len) != 0)
			continue;
		if (p[suffix_len] == '\0' || strcmp(p + suffix_len, ".tmp") == 0 ||
		    str_begins(p + suffix_len, ".tmp."))
			return TRUE;
	}
	return FALSE;
}

int migrate_credentials_delete_domain(const char *dir, const char *domain,
				      unsigned int *count_r,
				      const char **error_r)
{
	string_t *suffix = t_str_new(64);
	ARRAY_TYPE(const_string) names;
	const char *name, *path;
	struct dirent *d;
	DIR *dirp;

	*count_r = 0;
	str_append_c(suffix, '@');
	credentials_escape(suffix, domain, FALSE);
	dirp = opendir(dir);
	if (dirp == NULL) {
		if (errno == ENOENT)
			return 0;
		*error_r = t_strdup_printf("opendir(%s) failed: %m", dir);
		return -1;
	}
	/* the files as they are named, temporary ones of a crashed write
	   included: no name is decoded and encoded again */
	t_array_init(&names, 16);
	while ((d = readdir(dirp)) != NULL) {
		if (credentials_name_has_suffix(d->d_name, str_c(suffix))) {
			name = t_strdup(d->d_name);
			array_push_back(&names, &name);
		}
	}
	if (closedir(dirp) < 0) {
		*error_r = t_strdup_printf("closedir(%s) failed: %m", dir);
		return -1;
	}
	array_foreach_elem(&names, name) {
		path = t_strconcat(dir, "/", name, NULL);
		if (unlink(path) < 0 && errno != ENOENT) {
			*error_r = t_strdup_printf("unlink(%s) failed: %m",
						   path);
			return -1;
		}
		(*count_r)++;
	}
	return 0;
}

int migrate_credentials_delete(const char *dir, const char *user,
			       const char **error_r)
{
	const char *path = credentials_path(dir, user);

	if (unlink(path) < 0 && errno != ENOENT) {
		*error_r = t_strdup_printf("unlink(%s) failed: %m", path);
		return -1;
	}
	return 0;
}
