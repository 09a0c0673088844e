/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The bounds of a source that misbehaves, on purpose or by accident,
   beyond the one imapc keeps itself (a reply's line, literals included:
   2.3.19's imapc reads every literal into memory as part of its line, so
   migrate_source_max_line_length bounds them too).  imapc's command
   timeout restarts with every byte: the guard looks at the source's
   connections once a second and gives the source up when the account's
   deadline passed or when it sends slower than migrate_min_rate while we
   wait for it; it also counts the folders the source lists, up to
   migrate_max_folders.  Giving up shuts the source's sockets down: what
   waits on them fails at once, the engine stops talking to the source,
   and what it copied stays.

   The look comes from a POSIX timer's signal, handled by lib-signals in
   whatever ioloop runs (LIBSIG_FLAG_IOLOOP_AUTOMOVE): imapc runs an
   ioloop of its own for every command, where a timeout of ours would
   never fire.  An ioloop runs (nearly) only while the run waits for the
   source, so the ticks also measure how long it waited.  Linux only:
   /proc/self/fd names the sockets, TCP_INFO counts their bytes. */

#include "lib.h"
#include "array.h"
#include "strnum.h"
#include "time-util.h"
#include "net.h"
#include "lib-signals.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mailbox-list-private.h"
#include "imapc-client-private.h"
#include "imapc-connection.h"
#include "imapc-storage.h"
#include "imapc-list.h"
#include "migrate-settings.h"
#include "migrate-source-private.h"

#include <dirent.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <linux/tcp.h>

#define GUARD_TICK_MSECS 1000
/* a longer gap between ticks was spent outside an ioloop (saving,
   waiting for a worker): not waiting for the source */
#define GUARD_MAX_TICK_GAP_MSECS (2*GUARD_TICK_MSECS)
#define GUARD_SIGNAL (SIGRTMIN + 4)

ARRAY_DEFINE_TYPE(guard_ino, ino_t);

struct guard_socket {
	ino_t ino;
	uint64_t bytes;
};

/* a socket of the source, as the last look at /proc/self/fd found it */
struct guard_fd {
	int fd;
	ino_t ino;
};

/* what a look at /proc/self/fd does with each socket of the source */
enum guard_scan_action {
	/* count the bytes it received */
	GUARD_SCAN_COUNT,
	/* shut it down: the source is given up */
	GUARD_SCAN_SHUT_DOWN,
	/* send what is written without waiting for Nagle's algorithm */
	GUARD_SCAN_NODELAY,
};

/* what one look at /proc/self/fd found */
struct guard_scan {
	unsigned int sockets;
	/* received since the last look, on sockets TCP_INFO counts */
	uint64_t new_bytes;
};

struct migrate_source_guard {
	/* the imapc list's module context: its LIST replies are counted */
	union mailbox_list_module_context module_ctx;

	const struct migrate_settings *set;
	/* the source's IMAP port, and its POP3 port (0: not read) */
	in_port_t port, pop3_port;
	time_t deadline;

	timer_t timer;
	bool timer_created;

	struct timeval last_tick;
	unsigned int window_msecs;
	uint64_t window_bytes;
	ARRAY(struct guard_socket) sockets;
	/* the source's sockets for TCP_NODELAY, valid while each fd still
	   is the socket it was (its inode) and none was opened since */
	ARRAY(struct guard_fd) nodelay_fds;
	bool nodelay_fds_known;

	bool counting_folders;
	unsigned int folders;

	/* given up: why */
	enum migrate_error code;
	char *error;
};

static MODULE_CONTEXT_DEFINE_INIT(migrate_source_list_module,
				  &mailbox_list_module_register);

static bool guard_is_source_socket(struct migrate_source_guard *guard, int fd)
{
	struct ip_addr ip;
	in_port_t port;

	/* a unix socket has no port: 0 */
	return net_getpeername(fd, &ip, &port) == 0 &&
		(ip.family == AF_INET || ip.family == AF_INET6) &&
		(port == guard->port ||
		 (guard->pop3_port != 0 && port == guard->pop3_port));
}

/* Bytes this socket received since the last look (0 when TCP_INFO
   cannot tell). */
static uint64_t
guard_socket_new_bytes(struct migrate_source_guard *guard, int fd,
		       ARRAY_TYPE(guard_ino) *seen)
{
	struct tcp_info info;
	socklen_t len = sizeof(info);
	struct guard_socket *sock;
	struct stat st;
	uint64_t diff;

	if (fstat(fd, &st) < 0)
		return 0;
	array_push_back(seen, &st.st_ino);
	i_zero(&info);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_received) +
	    sizeof(info.tcpi_bytes_received))
		return 0;
	array_foreach_modifiable(&guard->sockets, sock) {
		if (sock->ino == st.st_ino) {
			diff = info.tcpi_bytes_received - sock->bytes;
			sock->bytes = info.tcpi_bytes_received;
			return diff;
		}
	}
	sock = array_append_space(&guard->sockets);
	sock->ino = st.st_ino;
	sock->bytes = info.tcpi_bytes_received;
	return info.tcpi_bytes_received;
}

static int guard_ino_cmp(const ino_t *ino1, const ino_t *ino2)
{
	return *ino1 < *ino2 ? -1 : (*ino1 > *ino2 ? 1 : 0);
}

/* forget the sockets that are gone */
static void
guard_sockets_prune(struct migrate_source_guard *guard,
		    const ARRAY_TYPE(guard_ino) *seen)
{
	const struct guard_socket *socks;
	unsigned int i, count;

	socks = array_get(&guard->sockets, &count);
	for (i = count; i > 0; i--) {
		if (!array_lsearch(seen, &socks[i-1].ino, guard_ino_cmp)) {
			array_delete(&guard->sockets, i-1, 1);
			socks = array_get(&guard->sockets, &count);
		}
	}
}

static void
guard_scan_fd(struct migrate_source_guard *guard, int fd,
	      enum guard_scan_action action, ARRAY_TYPE(guard_ino) *seen,
	      struct guard_scan *scan)
{
	char path[64], target[64];
	ssize_t ret;

	i_snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ret = readlink(path, target, sizeof(target) - 1);
	if (ret <= 0)
		return;
	target[ret] = '\0';
	if (!str_begins(target, "socket:") ||
	    !guard_is_source_socket(guard, fd))
		return;
	scan->sockets++;
	switch (action) {
	case GUARD_SCAN_COUNT:
		scan->new_bytes += guard_socket_new_bytes(guard, fd, seen);
		break;
	case GUARD_SCAN_SHUT_DOWN:
		(void)shutdown(fd, SHUT_RDWR);
		break;
	case GUARD_SCAN_NODELAY: {
		struct guard_fd *gfd;
		struct stat st;

		(void)net_set_tcp_nodelay(fd, TRUE);
		if (fstat(fd, &st) == 0) {
			gfd = array_append_space(&guard->nodelay_fds);
			gfd->fd = fd;
			gfd->ino = st.st_ino;
		}
		break;
	}
	}
}

/* One look at the process' sockets of the source, doing action with
   each. */
static void
guard_scan(struct migrate_source_guard *guard, enum guard_scan_action action,
	   struct guard_scan *scan_r)
{
	ARRAY_TYPE(guard_ino) seen;
	struct dirent *d;
	DIR *dir;
	int fd;

	i_zero(scan_r);
	dir = opendir("/proc/self/fd");
	if (dir == NULL)
		return;
	t_array_init(&seen, 8);
	while ((d = readdir(dir)) != NULL) {
		if (str_to_int(d->d_name, &fd) < 0 || fd == dirfd(dir))
			continue;
		guard_scan_fd(guard, fd, action, &seen, scan_r);
	}
	(void)closedir(dir);
	if (action == GUARD_SCAN_COUNT)
		guard_sockets_prune(guard, &seen);
}

/* TCP_NODELAY for the sockets the last look found; FALSE when one of
   them is no longer the socket it was */
static bool guard_nodelay_known(struct migrate_source_guard *guard)
{
	const struct guard_fd *gfd;
	struct stat st;

	if (!guard->nodelay_fds_known)
		return FALSE;
	array_foreach(&guard->nodelay_fds, gfd) {
		if (fstat(gfd->fd, &st) < 0 || !S_ISSOCK(st.st_mode) ||
		    st.st_ino != gfd->ino)
			return FALSE;
		(void)net_set_tcp_nodelay(gfd->fd, TRUE);
	}
	return TRUE;
}

void migrate_source_guard_nodelay(struct migrate_source_guard *guard)
{
	struct guard_scan scan;

	/* called before every pipelined command: a look at /proc/self/fd
	   (a readlink() for every open file) only when a socket changed */
	if (guard_nodelay_known(guard))
		return;
	array_clear(&guard->nodelay_fds);
	guard_scan(guard, GUARD_SCAN_NODELAY, &scan);
	guard->nodelay_fds_known = TRUE;
}

void migrate_source_guard_sockets_changed(struct migrate_source_guard *guard)
{
	guard->nodelay_fds_known = FALSE;
}

void migrate_source_guard_trip(struct migrate_source_guard *guard,
			       enum migrate_error code, const char *error)
{
	struct guard_scan scan;

	if (guard->error != NULL)
		return;
	guard->code = code;
	guard->error = i_strdup(error);
	T_BEGIN {
		guard_scan(guard, GUARD_SCAN_SHUT_DOWN, &scan);
	} T_END;
}

static bool guard_deadline_passed(struct migrate_source_guard *guard)
{
	if (guard->deadline == 0 || time(NULL) < guard->deadline)
		return FALSE;
	migrate_source_guard_trip(guard, MIGRATE_ERROR_TEMP, t_strdup_printf(
		"Source: The account's run took longer than %s (%u s): given "
		"up, what is copied is kept", MIGRATE_SETTING_ACCOUNT_TIMEOUT,
		guard->set->account_timeout_secs));
	return TRUE;
}

/* The rate while waiting, over each source_timeout_secs of waiting. */
static void
guard_check_rate(struct migrate_source_guard *guard,
		 const struct guard_scan *scan)
{
	struct timeval now;
	long long gap;
	uint64_t rate;

	i_gettimeofday(&now);
	gap = timeval_diff_msecs(&now, &guard->last_tick);
	guard->last_tick = now;
	if (scan->sockets == 0 || guard->set->min_rate == 0)
		return;
	guard->window_msecs += I_MIN(I_MAX(gap, 0), GUARD_MAX_TICK_GAP_MSECS);
	guard->window_bytes += scan->new_bytes;
	if (guard->window_msecs < guard->set->source_timeout_secs * 1000U)
		return;
	rate = guard->window_bytes * 1000 / guard->window_msecs;
	if (rate < guard->set->min_rate) {
		migrate_source_guard_trip(guard, MIGRATE_ERROR_SOURCE_TEMP,
			t_strdup_printf("Source: It sent %"PRIu64" bytes in %u s "
				"of waiting, less than %s (%"PRIuUOFF_T" bytes/s)",
				guard->window_bytes, guard->window_msecs / 1000,
				MIGRATE_SETTING_MIN_RATE, guard->set->min_rate));
	}
	guard->window_msecs = 0;
	guard->window_bytes = 0;
}

static void guard_tick(const siginfo_t *si ATTR_UNUSED, void *context)
{
	struct migrate_source_guard *guard = context;
	struct guard_scan scan;

	T_BEGIN {
		if (guard->error != NULL) {
			/* given up: what imapc connects again is closed */
			guard_scan(guard, GUARD_SCAN_SHUT_DOWN, &scan);
		} else if (!guard_deadline_passed(guard)) {
			guard_scan(guard, GUARD_SCAN_COUNT, &scan);
			guard_check_rate(guard, &scan);
		}
	} T_END;
}

static void guard_timer_start(struct migrate_source_guard *guard)
{
	struct sigevent sev;
	struct itimerspec its;

	lib_signals_set_handler(GUARD_SIGNAL, LIBSIG_FLAGS_SAFE |
				LIBSIG_FLAG_IOLOOP_AUTOMOVE, guard_tick, guard);
	i_zero(&sev);
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = GUARD_SIGNAL;
	if (timer_create(CLOCK_MONOTONIC, &sev, &guard->timer) < 0) {
		i_error("migrate: timer_create() failed: %m");
		return;
	}
	guard->timer_created = TRUE;
	i_zero(&its);
	its.it_value.tv_sec = GUARD_TICK_MSECS / 1000;
	its.it_value.tv_nsec = (GUARD_TICK_MSECS % 1000) * 1000000L;
	its.it_interval = its.it_value;
	if (timer_settime(guard->timer, 0, &its, NULL) < 0)
		i_error("migrate: timer_settime() failed: %m");
}

struct migrate_source_guard *
migrate_source_guard_init(const struct migrate_settings *set, time_t deadline)
{
	struct migrate_source_guard *guard;

	guard = i_new(struct migrate_source_guard, 1);
	guard->set = set;
	guard->port = set->source_port;
	if (set->source_pop3 != MIGRATE_POP3_NO ||
	    set->source_protocol != MIGRATE_SOURCE_PROTOCOL_IMAP)
		guard->pop3_port = set->source_pop3_port;
	guard->deadline = deadline;
	i_array_init(&guard->sockets, 4);
	i_array_init(&guard->nodelay_fds, 4);
	i_gettimeofday(&guard->last_tick);
	guard_timer_start(guard);
	return guard;
}

void migrate_source_guard_deinit(struct migrate_source_guard **_guard)
{
	struct migrate_source_guard *guard = *_guard;

	*_guard = NULL;
	if (guard->timer_created)
		(void)timer_delete(guard->timer);
	lib_signals_unset_handler(GUARD_SIGNAL, guard_tick, guard);
	array_free(&guard->sockets);
	array_free(&guard->nodelay_fds);
	i_free(guard->error);
	i_free(guard);
}

int migrate_source_guard_check(struct migrate_source_guard *guard,
			       enum migrate_error *code_r,
			       const char **error_r)
{
	if (guard->error == NULL) T_BEGIN {
		(void)guard_deadline_passed(guard);
	} T_END;
	if (guard->error == NULL)
		return 0;
	*code_r = guard->code;
	*error_r = t_strdup(guard->error);
	return -1;
}

time_t migrate_source_guard_get_deadline(struct migrate_source_guard *guard)
{
	return guard->deadline;
}

void migrate_source_guard_set_deadline(struct migrate_source_guard *guard,
				       time_t deadline)
{
	if (deadline != 0 && (guard->deadline == 0 || deadline < guard->deadline))
		guard->deadline = deadline;
}

void migrate_source_guard_count_folders(struct migrate_source_guard *guard,
					bool count)
{
	guard->counting_folders = count;
	guard->folders = 0;
}

void migrate_source_guard_folder(struct migrate_source_guard *guard)
{
	if (!guard->counting_folders ||
	    ++guard->folders <= guard->set->max_folders)
		return;
	migrate_source_guard_trip(guard, MIGRATE_ERROR_SOURCE_LIMIT,
		t_strdup_printf("Source: It lists more than %u folders (%s): "
			"nothing is synced; raise %s for this account if they "
			"are real", guard->set->max_folders,
			MIGRATE_SETTING_MAX_FOLDERS,
			MIGRATE_SETTING_MAX_FOLDERS));
	guard->counting_folders = FALSE;
}

static void
guard_untagged_list(const struct imapc_untagged_reply *reply ATTR_UNUSED,
		    struct imapc_storage_client *client)
{
	struct migrate_source_guard *guard;

	if (client->_list == NULL)
		return;
	guard = MODULE_CONTEXT(&client->_list->list,
			       migrate_source_list_module);
	if (guard != NULL)
		migrate_source_guard_folder(guard);
}

void migrate_source_guard_watch(struct migrate_source_guard *guard,
				struct mail_user *user)
{
	struct mailbox_list *list = user->namespaces->list;
	struct imapc_mailbox_list *ilist;

	if (strcmp(list->name, MAILBOX_LIST_NAME_IMAPC) != 0)
		return;
	ilist = (struct imapc_mailbox_list *)list;
	MODULE_CONTEXT_SET(list, migrate_source_list_module, guard);
	imapc_storage_client_register_untagged(ilist->client, "LIST",
					       guard_untagged_list);
	imapc_storage_client_register_untagged(ilist->client, "LSUB",
					       guard_untagged_list);
}

static void
guard_logout_callback(const struct imapc_command_reply *reply ATTR_UNUSED,
		      void *context ATTR_UNUSED)
{
}

struct imapc_client *migrate_source_user_imapc_client(struct mail_user *user)
{
	struct mailbox_list *list = user->namespaces->list;

	if (strcmp(list->name, MAILBOX_LIST_NAME_IMAPC) != 0)
		return NULL;
	return ((struct imapc_mailbox_list *)list)->client->client;
}

void migrate_source_guard_logout_storage(struct mail_user *user)
{
	struct imapc_client *client = migrate_source_user_imapc_client(user);
	struct imapc_client_connection *conn;
	struct imapc_command *cmd;

	if (client == NULL)
		return;
	array_foreach_elem(&client->conns, conn) {
		/* never a new connection (a login) only to log out */
		if (imapc_connection_get_state(conn->conn) !=
		    IMAPC_CONNECTION_STATE_DONE)
			continue;
		imapc_connection_set_no_reconnect(conn->conn);
		cmd = imapc_connection_cmd(conn->conn, guard_logout_callback,
					   NULL);
		imapc_command_set_flags(cmd, IMAPC_COMMAND_FLAG_PRELOGIN |
					IMAPC_COMMAND_FLAG_LOGOUT);
		imapc_command_send(cmd, "LOGOUT");
	}
	imapc_client_disconnect(client);
}
