/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "strnum.h"
#include "hostpid.h"
#include "ostream.h"
#include "safe-mkstemp.h"
#include "read-full.h"
#include "safe-memset.h"
#include "migrate-file.h"

#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>

struct migrate_file_replace {
	char *path, *temp_path;
	int fd;
	struct ostream *output;
};

static void migrate_file_replace_free(struct migrate_file_replace **_rep)
{
	struct migrate_file_replace *rep = *_rep;

	*_rep = NULL;
	o_stream_destroy(&rep->output);
	i_close_fd(&rep->fd);
	i_free(rep->path);
	i_free(rep->temp_path);
	i_free(rep);
}

/* a failure: the temp file goes, error_r gets why it could not */
static void
migrate_file_replace_fail(struct migrate_file_replace **_rep,
			  const char **error_r)
{
	struct migrate_file_replace *rep = *_rep;

	if (unlink(rep->temp_path) < 0 && errno != ENOENT) {
		*error_r = t_strdup_printf("%s (and unlink(%s) failed: %m)",
					   *error_r, rep->temp_path);
	}
	migrate_file_replace_free(_rep);
}

/* Temp files of path that a writer on this host left when it died (a
   crash, kill -9): the PID in their name is no process any more.  A
   living writer's file, or another host's, is not touched. */
static void migrate_file_remove_stale(const char *path)
{
	const char *p = strrchr(path, '/');
	const char *dir = p == NULL ? "." :
		p == path ? "/" : t_strdup_until(path, p);
	const char *prefix = t_strconcat(p == NULL ? path : p + 1, ".tmp.",
					 my_hostname, ".", NULL);
	size_t prefix_len = strlen(prefix);
	const char *end;
	unsigned int pid;
	struct dirent *d;
	DIR *dirp;

	dirp = opendir(dir);
	if (dirp == NULL)
		return;
	while ((d = readdir(dirp)) != NULL) {
		if (strncmp(d->d_name, prefix, prefix_len) != 0 ||
		    str_parse_uint(d->d_name + prefix_len, &pid, &end) < 0 ||
		    *end != '.' || pid == 0 || (pid_t)pid == getpid())
			continue;
		if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
			i_unlink_if_exists(t_strconcat(dir, "/", d->d_name,
						       NULL));
		}
	}
	(void)closedir(dirp);
}

int migrate_file_replace_begin(const char *path, mode_t mode, uid_t uid,
			       gid_t gid, struct migrate_file_replace **rep_r,
			       const char **error_r)
{
	struct migrate_file_replace *rep;
	string_t *temp_path = t_str_new(256);
	int fd;

	migrate_file_remove_stale(path);
	/* a name of its own: two writers never share a temp file, and no
	   one can put a symlink where it will be (O_EXCL) */
	str_printfa(temp_path, "%s.tmp.", path);
	fd = safe_mkstemp_hostpid(temp_path, 0600, (uid_t)-1, (gid_t)-1);
	if (fd == -1) {
		*error_r = t_strdup_printf("safe_mkstemp(%s) failed: %m",
					   str_c(temp_path));
		return -1;
	}
	rep = i_new(struct migrate_file_replace, 1);
	rep->path = i_strdup(path);
	rep->temp_path = i_strdup(str_c(temp_path));
	rep->fd = fd;
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
	    fchown(fd, uid, gid) < 0) {
		*error_r = t_strdup_printf("fchown(%s) failed: %m",
					   rep->temp_path);
		migrate_file_replace_fail(&rep, error_r);
		return -1;
	}
	if (fchmod(fd, mode) < 0) {
		*error_r = t_strdup_printf("fchmod(%s) failed: %m",
					   rep->temp_path);
		migrate_file_replace_fail(&rep, error_r);
		return -1;
	}
	rep->output = o_stream_create_fd_file(fd, 0, FALSE);
	o_stream_cork(rep->output);
	*rep_r = rep;
	return 0;
}

struct ostream *migrate_file_replace_output(struct migrate_file_replace *rep)
{
	return rep->output;
}

/* the rename must reach the disk before the caller removes what the new
   file replaces */
static int migrate_file_fsync_dir(const char *path, const char **error_r)
{
	const char *p = strrchr(path, '/');
	const char *dir = p == NULL ? "." :
		p == path ? "/" : t_strdup_until(path, p);
	int fd;

	fd = open(dir, O_RDONLY);
	if (fd == -1) {
		*error_r = t_strdup_printf("open(%s) failed: %m", dir);
		return -1;
	}
	if (fsync(fd) < 0 && errno != EINVAL) {
		/* EINVAL: the filesystem can't fsync directories */
		*error_r = t_strdup_printf("fsync(%s) failed: %m", dir);
		i_close_fd(&fd);
		return -1;
	}
	i_close_fd(&fd);
	return 0;
}

int migrate_file_replace_finish(struct migrate_file_replace **_rep,
				const char **error_r)
{
	struct migrate_file_replace *rep = *_rep;
	int ret;

	/* 1. the whole new file on disk */
	if (o_stream_finish(rep->output) < 0) {
		*error_r = t_strdup_printf("write(%s) failed: %s",
					   rep->temp_path,
					   o_stream_get_error(rep->output));
		migrate_file_replace_fail(_rep, error_r);
		return -1;
	}
	o_stream_destroy(&rep->output);
	if (fsync(rep->fd) < 0) {
		*error_r = t_strdup_printf("fsync(%s) failed: %m",
					   rep->temp_path);
		migrate_file_replace_fail(_rep, error_r);
		return -1;
	}
	ret = close(rep->fd);
	rep->fd = -1;
	if (ret < 0) {
		*error_r = t_strdup_printf("close(%s) failed: %m",
					   rep->temp_path);
		migrate_file_replace_fail(_rep, error_r);
		return -1;
	}
	/* 2. in its place at once */
	if (rename(rep->temp_path, rep->path) < 0) {
		*error_r = t_strdup_printf("rename(%s, %s) failed: %m",
					   rep->temp_path, rep->path);
		migrate_file_replace_fail(_rep, error_r);
		return -1;
	}
	/* 3. and the rename durable */
	ret = migrate_file_fsync_dir(rep->path, error_r);
	migrate_file_replace_free(_rep);
	return ret;
}

void migrate_file_replace_abort(struct migrate_file_replace **_rep)
{
	struct migrate_file_replace *rep = *_rep;

	o_stream_abort(rep->output);
	i_unlink_if_exists(rep->temp_path);
	migrate_file_replace_free(_rep);
}

int migrate_file_replace(const char *path, const void *data, size_t size,
			 mode_t mode, uid_t uid, gid_t gid,
			 const char **error_r)
{
	struct migrate_file_replace *rep;

	if (migrate_file_replace_begin(path, mode, uid, gid, &rep,
				       error_r) < 0)
		return -1;
	o_stream_nsend(rep->output, data, size);
	return migrate_file_replace_finish(&rep, error_r);
}

int migrate_file_read_private(const char *path, size_t max_size,
			      char **data_r, size_t *size_r,
			      const char **error_r)
{
	struct stat st;
	char *data;
	ssize_t ret;
	int fd;

	fd = open(path, O_RDONLY | O_NOFOLLOW);
	if (fd == -1) {
		if (errno == ENOENT)
			return 0;
		*error_r = t_strdup_printf("open(%s) failed: %m", path);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		*error_r = t_strdup_printf("fstat(%s) failed: %m", path);
		i_close_fd(&fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 0077) != 0) {
		*error_r = t_strdup_printf("%s must be a file only its owner "
			"(uid %ld) can read, mode 0600 or less (it is uid %ld, "
			"mode %04o)", path,
			(long)geteuid(), (long)st.st_uid,
			(unsigned int)(st.st_mode & 07777));
		i_close_fd(&fd);
		return -1;
	}
	if ((uoff_t)st.st_size > max_size) {
		*error_r = t_strdup_printf("%s is larger than %zu bytes "
					   "(%lld)", path, max_size,
					   (long long)st.st_size);
		i_close_fd(&fd);
		return -1;
	}
	data = t_malloc0(st.st_size + 1);
	ret = st.st_size == 0 ? 1 : pread_full(fd, data, st.st_size, 0);
	i_close_fd(&fd);
	if (ret <= 0) {
		*error_r = ret < 0 ?
			t_strdup_printf("read(%s) failed: %m", path) :
			t_strdup_printf("read(%s): file shrank", path);
		safe_memset(data, 0, st.st_size);
		return -1;
	}
	*data_r = data;
	*size_r = st.st_size;
	return 1;
}
