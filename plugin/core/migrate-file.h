#ifndef MIGRATE_FILE_H
#define MIGRATE_FILE_H

#include <sys/types.h>

/* Replacing a file so that a crash leaves either the old or the new one,
   whole: the new contents go to a temp file of a name of its own,
   path.tmp.<host>.<pid>.<random> (Dovecot's safe_mkstemp_hostpid():
   created anew with O_EXCL, so never through a symlink; 0600 until it
   gets mode and, unless they are (uid_t)-1 / (gid_t)-1, uid and gid),
   which is fsync'd and renamed over path, and the directory is fsync'd.
   Once finish returns, the new file is what a crash leaves, so the caller
   may remove what it replaces (the state's journal).  On failure the temp
   file is removed and path is untouched.  Temp files of path that a
   process of this host left when it died are removed at begin. */

struct migrate_file_replace;

int migrate_file_replace_begin(const char *path, mode_t mode, uid_t uid,
			       gid_t gid, struct migrate_file_replace **rep_r,
			       const char **error_r);
/* The new contents go here; write errors are reported by finish. */
struct ostream *migrate_file_replace_output(struct migrate_file_replace *rep);
int migrate_file_replace_finish(struct migrate_file_replace **rep,
				const char **error_r);
/* Removes the temp file; path stays as it was. */
void migrate_file_replace_abort(struct migrate_file_replace **rep);

/* The whole of it, for contents in memory. */
int migrate_file_replace(const char *path, const void *data, size_t size,
			 mode_t mode, uid_t uid, gid_t gid,
			 const char **error_r);

/* The whole of path, a regular file that only its owner, the caller
   (geteuid()), can read, of at most max_size bytes: NUL-terminated in
   *data_r, from the data stack (it may hold a secret: clear it after
   use).  Never through a symlink.  Returns 1, 0 when the file does not
   exist, -1 with an error naming path. */
int migrate_file_read_private(const char *path, size_t max_size,
			      char **data_r, size_t *size_r,
			      const char **error_r);

#endif
