/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The accounts "migrate batch" runs at a time when -j is not given
   (migrate-jobs.h): from the CPUs and the round trip to the template's
   first source, timed on one connection that never logs in. */

#include "lib.h"
#include "ioloop.h"
#include "net.h"
#include "time-util.h"
#include "write-full.h"
#include "migrate-jobs.h"
#include "migrate-settings.h"
#include "migrate-template.h"
#include "migrate-dest.h"
#include "doveadm-migrate.h"
#include "doveadm-migrate-spawn.h"

#include <poll.h>
#include <unistd.h>
#include <sys/socket.h>

/* the whole measurement: connect, greeting and NOOP */
#define MIGRATE_SPAWN_RTT_TIMEOUT_MSECS 2000

static int
spawn_rtt_wait(int fd, short events, const struct timeval *deadline,
	       const char **error_r)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	struct timeval now;
	long long msecs;
	int ret;

	for (;;) {
		i_gettimeofday(&now);
		msecs = timeval_diff_msecs(deadline, &now);
		if (msecs <= 0) {
			*error_r = "timed out";
			return -1;
		}
		ret = poll(&pfd, 1, (int)msecs);
		if (ret > 0)
			return 0;
		if (ret < 0 && errno != EINTR) {
			*error_r = t_strdup_printf("poll() failed: %m");
			return -1;
		}
	}
}

/* Reads up to the end of a line; first_r: its first character. */
static int
spawn_rtt_read_line(int fd, const struct timeval *deadline, char *first_r,
		    const char **error_r)
{
	char buf[1024];
	ssize_t ret;
	bool first = TRUE;

	for (;;) {
		if (spawn_rtt_wait(fd, POLLIN, deadline, error_r) < 0)
			return -1;
		ret = net_receive(fd, buf, sizeof(buf));
		if (ret < 0) {
			*error_r = ret == -2 ? "disconnected" :
				t_strdup_printf("read() failed: %m");
			return -1;
		}
		if (ret > 0 && first) {
			*first_r = buf[0];
			first = FALSE;
		}
		if (memchr(buf, '\n', ret) != NULL)
			return 0;
	}
}

/* Log out; the connection is closed once the server closed it
   (migrate_spawn_rtt_close_start()): a close with its answer still unread
   would reset the connection. */
static bool spawn_rtt_logout(int fd, const char *bye)
{
	return write_full(fd, bye, strlen(bye)) == 0 &&
		shutdown(fd, SHUT_WR) == 0;
}

static void spawn_rtt_close(struct migrate_spawn *spawn)
{
	io_remove(&spawn->rtt_io);
	timeout_remove(&spawn->rtt_to);
	i_close_fd(&spawn->rtt_fd);
}

static void spawn_rtt_input(struct migrate_spawn *spawn)
{
	char buf[1024];

	if (net_receive(spawn->rtt_fd, buf, sizeof(buf)) != 0)
		spawn_rtt_close(spawn);
}

void migrate_spawn_rtt_close_start(struct migrate_spawn *spawn)
{
	if (spawn->rtt_fd == -1)
		return;
	spawn->rtt_io = io_add(spawn->rtt_fd, IO_READ, spawn_rtt_input, spawn);
	spawn->rtt_to = timeout_add(MIGRATE_SPAWN_RTT_TIMEOUT_MSECS,
				    spawn_rtt_close, spawn);
}

void migrate_spawn_rtt_close_end(struct migrate_spawn *spawn)
{
	if (spawn->rtt_fd != -1)
		spawn_rtt_close(spawn);
}

/* the round trip to ip:port in microseconds: a NOOP after the greeting
   (IMAP "* OK", POP3 "+OK"), or with implicit TLS the TCP connect; after
   a NOOP, *fd_r is the connection, logging out (else -1) */
static int
spawn_rtt_measure(const struct ip_addr *ip, in_port_t port,
		  bool implicit_tls, long long *usecs_r, int *fd_r,
		  const char **error_r)
{
	struct timeval start, deadline, sent, now;
	const char *noop, *bye;
	char first = '\0';
	int fd, err, ret = -1;

	i_gettimeofday(&start);
	deadline = start;
	timeval_add_msecs(&deadline, MIGRATE_SPAWN_RTT_TIMEOUT_MSECS);
	fd = net_connect_ip(ip, port, NULL);
	if (fd < 0) {
		*error_r = t_strdup_printf("connect() failed: %m");
		return -1;
	}
	if (spawn_rtt_wait(fd, POLLOUT, &deadline, error_r) < 0)
		;
	else if ((err = net_geterror(fd)) != 0)
		*error_r = t_strdup_printf("connect() failed: %s",
					   strerror(err));
	else if (implicit_tls) {
		/* the TLS handshake would be next: the connect is the
		   round trip */
		i_gettimeofday(&now);
		*usecs_r = timeval_diff_usecs(&now, &start);
		ret = 0;
	} else if (spawn_rtt_read_line(fd, &deadline, &first, error_r) == 0) {
		noop = first == '+' ? "NOOP\r\n" : "R NOOP\r\n";
		bye = first == '+' ? "QUIT\r\n" : "R LOGOUT\r\n";
		i_gettimeofday(&sent);
		if (write_full(fd, noop, strlen(noop)) < 0)
			*error_r = t_strdup_printf("write() failed: %m");
		else if (spawn_rtt_read_line(fd, &deadline, &first,
					     error_r) == 0) {
			i_gettimeofday(&now);
			*usecs_r = timeval_diff_usecs(&now, &sent);
			if (spawn_rtt_logout(fd, bye)) {
				*fd_r = fd;
				return 0;
			}
			ret = 0;
		}
	}
	i_close_fd(&fd);
	return ret;
}

static const char *spawn_setting_lookup(const char *key,
					void *context ATTR_UNUSED)
{
	return migrate_cmd_plugin_setting(key);
}

/* The round trip in ms to the first row's source, on its port or the
   one the settings give it. */
static int
spawn_source_rtt(const struct migrate_template_row *row,
		 unsigned int *rtt_msecs_r, int *fd_r, const char **error_r)
{
	const struct migrate_settings *set;
	struct ip_addr *ips;
	unsigned int ips_count;
	in_port_t port;
	bool pop3;
	long long usecs;
	int ret;

	/* no user: "/" only resolves a relative state dir, never used */
	if (migrate_settings_read(pool_datastack_create(),
				  spawn_setting_lookup, NULL, "", "/",
				  FALSE, &set, error_r) < 0)
		return -1;
	pop3 = null_strcmp(row->source_protocol, "pop3") == 0 ||
		(row->source_protocol == NULL &&
		 set->source_protocol == MIGRATE_SOURCE_PROTOCOL_POP3);
	port = row->source_port != 0 ? row->source_port :
		pop3 ? set->source_pop3_port : set->source_port;
	ret = net_gethostbyname(row->source_host, &ips, &ips_count);
	if (ret != 0) {
		*error_r = t_strdup_printf("%s: %s", row->source_host,
					   net_gethosterror(ret));
		return -1;
	}
	if (spawn_rtt_measure(&ips[0], port,
			      set->source_ssl == MIGRATE_SSL_IMAPS,
			      &usecs, fd_r, error_r) < 0) {
		*error_r = t_strdup_printf("%s port %u: %s", row->source_host,
					   port, *error_r);
		return -1;
	}
	/* to the nearest ms */
	*rtt_msecs_r = (unsigned int)((usecs + 500) / 1000);
	return 0;
}

static const char *spawn_jobs_reason_text(enum migrate_jobs_reason reason)
{
	switch (reason) {
	case MIGRATE_JOBS_REASON_CPUS:
		return "twice the CPUs";
	case MIGRATE_JOBS_REASON_RTT:
		return "raised for the source's round trip";
	case MIGRATE_JOBS_REASON_ACCOUNTS:
		return "no more than the accounts";
	case MIGRATE_JOBS_REASON_MAX:
		return "the default's maximum";
	}
	i_unreached();
}

void migrate_spawn_choose_jobs(struct migrate_spawn *spawn)
{
	struct migrate_spawn_account *const *acct;
	unsigned int cpus, accounts, rtt_msecs = 0;
	enum migrate_jobs_reason reason;
	const char *reason_str, *why, *rtt_str, *error;
	struct event *event;
	long ncpus;
	bool measured = FALSE;

	accounts = array_count(&spawn->accounts);
	ncpus = sysconf(_SC_NPROCESSORS_ONLN);
	cpus = ncpus < 1 ? 1 : (unsigned int)ncpus;
	event = event_create(NULL);
	event_add_category(event, &event_category_migrate);
	event_set_name(event, "migrate_batch_jobs");
	event_add_int(event, "cpus", cpus);
	event_add_int(event, "accounts", accounts);
	if (spawn->set.jobs_given) {
		reason_str = "given";
		why = "given";
	} else {
		if (accounts == 0)
			rtt_str = "not measured: no accounts";
		else {
			acct = array_front(&spawn->accounts);
			if (spawn_source_rtt((*acct)->row, &rtt_msecs,
					     &spawn->rtt_fd, &error) == 0) {
				measured = TRUE;
				rtt_str = t_strdup_printf("%u ms", rtt_msecs);
				event_add_int(event, "rtt_msecs", rtt_msecs);
			} else {
				rtt_str = t_strconcat("not measured: ",
						      error, NULL);
			}
		}
		spawn->set.jobs = migrate_jobs_default(cpus,
			measured ? (int)I_MIN(rtt_msecs, INT_MAX) : -1,
			accounts, &reason);
		reason_str = migrate_jobs_reason_str(reason);
		why = t_strdup_printf("%s; %u CPUs, source round trip %s, "
				      "%u account%s",
				      spawn_jobs_reason_text(reason), cpus,
				      rtt_str, accounts,
				      accounts == 1 ? "" : "s");
	}
	/* the jobs above are one machine's: with backends, each its own */
	migrate_spawn_backends_jobs(spawn, spawn->set.jobs, &why);
	event_add_int(event, "jobs", spawn->set.jobs);
	event_add_int(event, "backends", array_count(&spawn->backends));
	event_add_str(event, "reason", reason_str);
	e_info(event, "%s: %u account%s at a time (-j %u: %s)",
	       spawn->cmd_name, spawn->set.jobs,
	       spawn->set.jobs == 1 ? "" : "s", spawn->set.jobs, why);
	event_unref(&event);
}
