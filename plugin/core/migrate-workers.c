/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "strnum.h"
#include "fd-util.h"
#include "write-full.h"
#include "safe-memset.h"
#include "istream.h"
#include "migrate-workers.h"

#include <unistd.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <sysexits.h>

/* a progress line or an answer; longer lines are a broken worker */
#define MIGRATE_WORKER_MAX_LINE (64 * 1024)

struct migrate_worker {
	pid_t pid;
	int to_fd, from_fd;
	struct istream *input;

	/* not yet written: the worker has not started */
	char *first_line;
	void *context;
	unsigned int progress;
	bool busy:1;
	bool dead:1;
};

struct migrate_workers {
	ARRAY(struct migrate_worker) workers;
};

struct migrate_workers *migrate_workers_create(void)
{
	struct migrate_workers *workers;

	workers = i_new(struct migrate_workers, 1);
	i_array_init(&workers->workers, 4);
	return workers;
}

/* it holds the source credentials */
static void migrate_worker_forget_first_line(struct migrate_worker *worker)
{
	if (worker->first_line == NULL)
		return;
	safe_memset(worker->first_line, 0, strlen(worker->first_line));
	i_free(worker->first_line);
}

static void migrate_worker_close(struct migrate_worker *worker)
{
	migrate_worker_forget_first_line(worker);
	i_stream_destroy(&worker->input);
	i_close_fd(&worker->to_fd);
	i_close_fd(&worker->from_fd);
	worker->dead = TRUE;
}

void migrate_workers_destroy(struct migrate_workers **_workers)
{
	struct migrate_workers *workers = *_workers;
	struct migrate_worker *worker;
	int status;

	*_workers = NULL;
	array_foreach_modifiable(&workers->workers, worker) {
		if (!worker->dead)
			migrate_worker_close(worker);
	}
	/* EOF on stdin ends a worker (or one that never started); one
	   still busy finishes its job first */
	array_foreach_modifiable(&workers->workers, worker) {
		while (waitpid(worker->pid, &status, 0) < 0 && errno == EINTR) ;
	}
	array_free(&workers->workers);
	i_free(workers);
}

/* The forked child waits, without reading, until the owner writes to its
   stdin: then it becomes the worker (exec); at EOF with nothing written, it
   exits.  Until then it costs a fork and no CPU, so an account whose
   folders need no copying pays nothing for its workers. */
static void ATTR_NORETURN
migrate_worker_wait_exec(int fd_in, const char *path, const char *const *argv)
{
	static const int signals[] = {
		SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD,
		SIGALRM,
	};
	struct pollfd pfd;
	unsigned int i;
	int avail = 0;

	/* the owner's handlers write to the owner's signal pipe */
	for (i = 0; i < N_ELEMENTS(signals); i++)
		(void)signal(signals[i], SIG_DFL);
	pfd.fd = fd_in;
	pfd.events = POLLIN;
	while (poll(&pfd, 1, -1) < 0) {
		if (errno != EINTR)
			_exit(EX_TEMPFAIL);
	}
	if (ioctl(fd_in, FIONREAD, &avail) < 0 || avail <= 0)
		_exit(0);
	if (dup2(fd_in, STDIN_FILENO) < 0)
		_exit(EX_TEMPFAIL);
	execv(path, (char **)argv);
	i_error("migrate: execv(%s) failed: %m", path);
	_exit(EX_TEMPFAIL);
}

int migrate_workers_spawn(struct migrate_workers *workers, const char *path,
			  const char *const *argv, const char *first_line,
			  const char **error_r)
{
	struct migrate_worker *worker;
	int fd_in[2] = { -1, -1 }, fd_out[2] = { -1, -1 };
	pid_t pid;

	if (pipe(fd_in) < 0 || pipe(fd_out) < 0) {
		*error_r = t_strdup_printf("pipe() failed: %m");
		i_close_fd(&fd_in[0]); i_close_fd(&fd_in[1]);
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		*error_r = t_strdup_printf("fork() failed: %m");
		i_close_fd(&fd_in[0]); i_close_fd(&fd_in[1]);
		i_close_fd(&fd_out[0]); i_close_fd(&fd_out[1]);
		return -1;
	}
	if (pid == 0) {
		if (dup2(fd_out[1], STDOUT_FILENO) < 0)
			_exit(EX_TEMPFAIL);
		(void)close(fd_in[1]);
		(void)close(fd_out[0]); (void)close(fd_out[1]);
		/* the other workers' pipes are close-on-exec */
		migrate_worker_wait_exec(fd_in[0], path, argv);
	}
	i_close_fd(&fd_in[0]);
	i_close_fd(&fd_out[1]);
	fd_close_on_exec(fd_in[1], TRUE);
	fd_close_on_exec(fd_out[0], TRUE);
	fd_set_nonblock(fd_out[0], TRUE);

	worker = array_append_space(&workers->workers);
	worker->pid = pid;
	worker->to_fd = fd_in[1];
	worker->from_fd = fd_out[0];
	worker->input = i_stream_create_fd(worker->from_fd,
					   MIGRATE_WORKER_MAX_LINE);
	worker->first_line = i_strdup(first_line);
	return 0;
}

unsigned int migrate_workers_count(const struct migrate_workers *workers)
{
	const struct migrate_worker *worker;
	unsigned int count = 0;

	array_foreach(&workers->workers, worker) {
		if (!worker->dead)
			count++;
	}
	return count;
}

unsigned int migrate_workers_idle(const struct migrate_workers *workers)
{
	const struct migrate_worker *worker;
	unsigned int count = 0;

	array_foreach(&workers->workers, worker) {
		if (!worker->dead && !worker->busy)
			count++;
	}
	return count;
}

unsigned int migrate_workers_running(const struct migrate_workers *workers)
{
	const struct migrate_worker *worker;
	unsigned int count = 0;

	array_foreach(&workers->workers, worker) {
		if (worker->busy)
			count++;
	}
	return count;
}

/* Write line (and LF) to the worker's stdin, preceded by its first line
   when it has not started yet.  FALSE when the write failed: the worker
   is dropped. */
static bool migrate_worker_write(struct migrate_worker *worker, const char *line)
{
	const char *text;
	int ret;

	if (worker->first_line != NULL) {
		text = t_strconcat(worker->first_line, "\n", line, "\n", NULL);
		migrate_worker_forget_first_line(worker);
	} else {
		text = t_strconcat(line, "\n", NULL);
	}
	ret = write_full(worker->to_fd, text, strlen(text));
	safe_memset((void *)text, 0, strlen(text));
	if (ret < 0) {
		i_error("migrate: write(worker %ld stdin) failed: %m",
			(long)worker->pid);
		migrate_worker_close(worker);
		return FALSE;
	}
	return TRUE;
}

void migrate_workers_wake(struct migrate_workers *workers)
{
	struct migrate_worker *worker;

	array_foreach_modifiable(&workers->workers, worker) {
		if (!worker->dead && worker->first_line != NULL)
			(void)migrate_worker_write(worker,
						   MIGRATE_WORKER_LOGIN_LINE);
	}
}

bool migrate_workers_submit(struct migrate_workers *workers,
			    const char *line, void *context)
{
	struct migrate_worker *worker;

	array_foreach_modifiable(&workers->workers, worker) {
		if (worker->dead || worker->busy)
			continue;
		/* the first job starts the worker; an idle worker waits on
		   its stdin: a long line blocks only until it has read it */
		if (!migrate_worker_write(worker, line))
			continue;
		worker->busy = TRUE;
		worker->context = context;
		worker->progress = 0;
		return TRUE;
	}
	return FALSE;
}

/* Returns TRUE when the worker's job ended: *line_r is its answer, or NULL
   when the worker died. */
static bool
migrate_worker_read(struct migrate_worker *worker, const char **line_r)
{
	const char *line;
	unsigned int num;
	ssize_t ret;

	for (;;) {
		while ((line = i_stream_next_line(worker->input)) != NULL) {
			if (str_begins(line, "P\t")) {
				if (str_to_uint(line + 2, &num) == 0)
					worker->progress = num;
				continue;
			}
			*line_r = t_strdup(line);
			worker->busy = FALSE;
			return TRUE;
		}
		ret = i_stream_read(worker->input);
		if (ret > 0)
			continue;
		if (ret == 0)
			return FALSE;
		/* EOF, an error or a line that is too long */
		if (ret == -2) {
			i_error("migrate: worker %ld: line too long",
				(long)worker->pid);
		}
		migrate_worker_close(worker);
		worker->busy = FALSE;
		*line_r = NULL;
		return TRUE;
	}
}

int migrate_workers_next_result(struct migrate_workers *workers, bool block,
				unsigned int timeout_msecs,
				void **context_r, const char **line_r)
{
	struct migrate_worker *worker;
	ARRAY(struct pollfd) fds;
	struct pollfd *pfd;
	bool waited = FALSE;

	for (;;) {
		bool running = FALSE;

		array_foreach_modifiable(&workers->workers, worker) {
			if (!worker->busy)
				continue;
			running = TRUE;
			if (migrate_worker_read(worker, line_r)) {
				*context_r = worker->context;
				worker->context = NULL;
				return 1;
			}
		}
		if (!running)
			return -1;
		if (!block || waited)
			return 0;

		t_array_init(&fds, 4);
		array_foreach_modifiable(&workers->workers, worker) {
			if (!worker->busy)
				continue;
			pfd = array_append_space(&fds);
			pfd->fd = worker->from_fd;
			pfd->events = POLLIN;
		}
		if (poll(array_front_modifiable(&fds), array_count(&fds),
			 (int)timeout_msecs) < 0 && errno != EINTR)
			i_fatal_status(EX_TEMPFAIL, "poll() failed: %m");
		waited = TRUE;
	}
}

void migrate_workers_kill_busy(struct migrate_workers *workers)
{
	struct migrate_worker *worker;

	array_foreach_modifiable(&workers->workers, worker) {
		if (worker->busy && !worker->dead)
			(void)kill(worker->pid, SIGKILL);
	}
}

unsigned int migrate_workers_progress(const struct migrate_workers *workers,
				      const void *context)
{
	const struct migrate_worker *worker;

	array_foreach(&workers->workers, worker) {
		if (worker->busy && worker->context == context)
			return worker->progress;
	}
	return 0;
}
