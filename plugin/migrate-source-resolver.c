/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "net.h"
#include "str.h"
#include "strescape.h"
#include "write-full.h"
#include "migrate-source-private.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define MIGRATE_RESOLVER_SOCKET "dns-client"
/* getaddrinfo()'s EAI_NONAME, as the dns-client protocol reports it */
#define MIGRATE_RESOLVER_NONAME -2

struct migrate_resolver {
	pid_t pid;
	char *dir, *socket_path;
};

static void
resolver_answer(int fd, const char *name, const char *ip)
{
	static const char handshake[] = "VERSION\tdns\t1\t0\n";
	char buf[1024];
	size_t used = 0;
	ssize_t ret;
	char *line, *nl;

	if (write_full(fd, handshake, sizeof(handshake) - 1) < 0)
		return;
	for (;;) {
		ret = read(fd, buf + used, sizeof(buf) - 1 - used);
		if (ret <= 0)
			return;
		used += ret;
		buf[used] = '\0';
		while ((nl = strchr(buf, '\n')) != NULL) {
			const char *reply;

			*nl = '\0';
			line = buf;
			if (strncmp(line, "IP\t", 3) == 0) {
				reply = strcasecmp(line + 3, name) == 0 ?
					t_strdup_printf("0\t%s\n", ip) :
					t_strdup_printf("%d\tUnknown host\n",
						MIGRATE_RESOLVER_NONAME);
				if (write_full(fd, reply, strlen(reply)) < 0)
					return;
			}
			used -= nl + 1 - buf;
			memmove(buf, nl + 1, used + 1);
		}
		if (used == sizeof(buf) - 1)
			return;
	}
}

static void ATTR_NORETURN
resolver_child(int listen_fd, const char *name, const char *ip)
{
	int fd;

	/* die with the parent, whatever happens to it */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (;;) {
		fd = accept(listen_fd, NULL, NULL);
		if (fd < 0)
			continue;
		T_BEGIN {
			resolver_answer(fd, name, ip);
		} T_END;
		(void)close(fd);
	}
}

int migrate_resolver_start(const char *name, const char *ip,
			   struct migrate_resolver **resolver_r,
			   const char **base_dir_r, const char **error_r)
{
	struct migrate_resolver *resolver;
	char template[] = "/tmp/dovecot-migrate.XXXXXX";
	int fd;
	pid_t pid;

	if (mkdtemp(template) == NULL) {
		*error_r = t_strdup_printf("mkdtemp(%s) failed: %m", template);
		return -1;
	}
	resolver = i_new(struct migrate_resolver, 1);
	resolver->dir = i_strdup(template);
	resolver->socket_path = i_strconcat(template, "/",
					    MIGRATE_RESOLVER_SOCKET, NULL);
	fd = net_listen_unix(resolver->socket_path, 16);
	if (fd == -1) {
		*error_r = t_strdup_printf("net_listen_unix(%s) failed: %m",
					   resolver->socket_path);
		migrate_resolver_stop(&resolver);
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		*error_r = t_strdup_printf("fork() failed: %m");
		i_close_fd(&fd);
		migrate_resolver_stop(&resolver);
		return -1;
	}
	if (pid == 0)
		resolver_child(fd, name, ip);
	i_close_fd(&fd);
	resolver->pid = pid;
	*resolver_r = resolver;
	*base_dir_r = t_strdup(resolver->dir);
	return 0;
}

void migrate_resolver_stop(struct migrate_resolver **_resolver)
{
	struct migrate_resolver *resolver = *_resolver;

	if (resolver == NULL)
		return;
	*_resolver = NULL;
	if (resolver->pid > 0) {
		(void)kill(resolver->pid, SIGKILL);
		(void)waitpid(resolver->pid, NULL, 0);
	}
	if (unlink(resolver->socket_path) < 0 && errno != ENOENT)
		i_error("unlink(%s) failed: %m", resolver->socket_path);
	if (rmdir(resolver->dir) < 0 && errno != ENOENT)
		i_error("rmdir(%s) failed: %m", resolver->dir);
	i_free(resolver->socket_path);
	i_free(resolver->dir);
	i_free(resolver);
}
