/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "write-full.h"
#include "migrate-file.h"

#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

int migrate_file_replace(const char *path, const void *data, size_t size,
			 mode_t mode, uid_t uid, gid_t gid,
			 const char **error_r)
{
	const char *temp_path = t_strconcat(path, ".tmp", NULL);
	int fd, ret = 0;

	/* a temp file left by a crash */
	i_unlink_if_exists(temp_path);
	fd = open(temp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
	if (fd == -1) {
		*error_r = t_strdup_printf("open(%s) failed: %m", temp_path);
		return -1;
	}
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
	    fchown(fd, uid, gid) < 0) {
		*error_r = t_strdup_printf("fchown(%s) failed: %m", temp_path);
		ret = -1;
	} else if (fchmod(fd, mode) < 0) {
		*error_r = t_strdup_printf("fchmod(%s) failed: %m", temp_path);
		ret = -1;
	} else if (write_full(fd, data, size) < 0) {
		*error_r = t_strdup_printf("write(%s) failed: %m", temp_path);
		ret = -1;
	} else if (fsync(fd) < 0) {
		*error_r = t_strdup_printf("fsync(%s) failed: %m", temp_path);
		ret = -1;
	}
	if (close(fd) < 0 && ret == 0) {
		*error_r = t_strdup_printf("close(%s) failed: %m", temp_path);
		ret = -1;
	}
	if (ret == 0 && rename(temp_path, path) < 0) {
		*error_r = t_strdup_printf("rename(%s, %s) failed: %m",
					   temp_path, path);
		ret = -1;
	}
	if (ret < 0)
		i_unlink_if_exists(temp_path);
	return ret;
}
