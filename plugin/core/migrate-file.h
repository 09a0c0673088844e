#ifndef MIGRATE_FILE_H
#define MIGRATE_FILE_H

#include <sys/types.h>

/* Replace path with data atomically: written to path.tmp (created anew,
   never through a symlink, 0600 until it gets mode and, unless they are
   (uid_t)-1 / (gid_t)-1, uid and gid), fsync'd and renamed over path.
   On failure the temp file is removed and path is untouched. */
int migrate_file_replace(const char *path, const void *data, size_t size,
			 mode_t mode, uid_t uid, gid_t gid,
			 const char **error_r);

#endif
