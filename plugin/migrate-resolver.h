#ifndef MIGRATE_RESOLVER_H
#define MIGRATE_RESOLVER_H

/* A private resolver that answers one host name with one IP address, in
   Dovecot's dns-client protocol.  It lets imapc connect to the IP address
   an admin gave while verifying the server's certificate against the host
   name: imapc resolves its imapc_host through base_dir/dns-client when that
   socket path is set.  The answering process is a child that dies with us. */

struct migrate_resolver;

/* Start answering name with ip.  *base_dir_r is the directory holding the
   "dns-client" socket. */
int migrate_resolver_start(const char *name, const char *ip,
			   struct migrate_resolver **resolver_r,
			   const char **base_dir_r, const char **error_r);
void migrate_resolver_stop(struct migrate_resolver **resolver);

#endif
