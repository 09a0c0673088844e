#ifndef MIGRATE_SOURCE_PRIVATE_H
#define MIGRATE_SOURCE_PRIVATE_H

/* The parts of the source (migrate-source.h):
   migrate-source.c          the source as a mail user on imapc storage
   migrate-source-conn.c     our own connection (lib-imap-client)
   migrate-source-resolver.c the private resolver
   migrate-source-tls.c      the certificate of each TLS connection, and
                             its pin
   migrate-source-error.c    what its failures mean, and their causes
   migrate-source-guard.c    its bounds: deadline, rate, folders */

#include "migrate-source.h"

/* large messages are read in pieces of this size, this many in flight */
#define MIGRATE_SOURCE_PIECE_SIZE (1024*1024)
#define MIGRATE_SOURCE_PIECES_IN_FLIGHT 4
/* a large message's temporary file is read back in blocks of this size
   (IO_BLOCK_SIZE took a pread() per 8 kB) */
#define MIGRATE_SOURCE_LARGE_READ_SIZE (128*1024)
/* large messages of a folder asked for ahead of their reading (in
   temporary files as they come: memory does not grow with them) */
#define MIGRATE_SOURCE_LARGE_AHEAD 32
/* listings kept by our own connection: the folder's being copied, the
   one before it, and the next folders' asked for ahead (up to
   MIGRATE_SYNC_LISTINGS_AHEAD) */
#define MIGRATE_SOURCE_CONN_LISTINGS 6

struct migrate_source_conn;
struct migrate_source_guard;
struct migrate_resolver;
struct migrate_source_tls;

/* What the source does besides its storage: over our own connection for
   a remote server, through the storage for a local one. */
struct migrate_source_vfuncs {
	void (*deinit)(struct migrate_source *source);
	/* after the source user is deinitialized (may be NULL) */
	void (*deinit_post)(struct migrate_source *source);
	int (*fetch_large)(struct migrate_source *source, const char *mailbox,
			   uint32_t uid, uoff_t size, struct istream **input_r,
			   time_t *received_r, bool *expunged_r,
			   bool *refused_r, const char **error_r);
	/* NULL: the sizes come through the storage */
	void (*sizes_ask)(struct migrate_source *source, const char *mailbox,
			  uint32_t first_uid, uint64_t changedsince);
	int (*listing)(struct migrate_source *source, const char *mailbox,
		       bool wait,
		       const struct migrate_source_listing **listing_r);
	/* NULL: small messages come through the storage */
	void (*bodies_ask)(struct migrate_source *source, const char *mailbox,
			   const ARRAY_TYPE(seq_range) *uids,
			   uoff_t max_size);
	int (*body)(struct migrate_source *source, const char *mailbox,
		    uint32_t uid, struct istream **input_r,
		    time_t *received_r);
	void (*bodies_finish)(struct migrate_source *source,
			      const char *mailbox,
			      const ARRAY_TYPE(seq_range) *uids);
	bool (*bodies_failed)(struct migrate_source *source,
			      const char *mailbox,
			      const ARRAY_TYPE(seq_range) *uids);
	/* NULL: nothing ahead */
	void (*prefetch_large)(struct migrate_source *source,
			       const char *mailbox, uint32_t uid, uoff_t size);
	int (*list_names)(struct migrate_source *source, pool_t pool,
			  ARRAY_TYPE(const_string) *names,
			  const char **error_r);
	int (*uids_present)(struct migrate_source *source,
			    const char *mailbox,
			    const ARRAY_TYPE(seq_range) *uids,
			    ARRAY_TYPE(seq_range) *present,
			    uint32_t *uidvalidity_r, const char **error_r);
	int (*message_size)(struct migrate_source *source, const char *mailbox,
			    uint32_t uid, uoff_t *size_r,
			    const char **error_r);
	int (*mailbox_exists)(struct migrate_source *source,
			      const char *mailbox, bool *exists_r,
			      const char **error_r);
	/* NULL: a folder at a time through the storage */
	int (*status)(struct migrate_source *source,
		      struct migrate_source_status *items,
		      unsigned int count, const char **error_r);
	/* optional: see migrate_source_subscribed() */
	bool (*subscribed)(struct migrate_source *source,
			   const char *const *mailboxes, unsigned int count,
			   bool *subscribed_r);
};

struct migrate_source {
	struct migrate_source_vfuncs v;
	/* the destination user whose source this is: its settings, its TLS
	   client settings and temp dir */
	struct mail_user *dest_user;
	const struct migrate_settings *set;
	/* parent of our connection's events */
	struct event *event;

	enum migrate_source_init_flags flags;
	/* the source as a mail user on imapc storage (or a local one) */
	struct mail_user *user;
	/* an iterator kept open from the login's listing until the folder
	   tree is listed: imapc keeps the folders it listed while one is
	   open, and lists them once, not twice */
	struct mailbox_list_iterate_context *list_hold;
	/* the user is the caller's: not ours to free */
	bool user_borrowed;
	/* our own connection, NULL until first needed */
	struct migrate_source_conn *conn;
	/* the bounds of a remote source (NULL for a local one) */
	struct migrate_source_guard *guard;

	struct migrate_resolver *resolver;
	/* base_dir whose dns-client socket the resolver answers, or NULL */
	char *resolver_dir;
	/* the certificates of the TLS connections, NULL without TLS */
	struct migrate_source_tls *tls;
	/* the source's POP3 server as a mail user on pop3c storage, with
	   migrate_source_pop3 or for a source read over POP3 only */
	struct mail_user *pop3_user;
	/* read over POP3 only: no IMAP user */
	bool pop3_only;
	/* with migrate_source_protocol = auto: why IMAP or POP3 */
	char *protocol_why;
	/* to make the POP3 user again: a new session for a second look */
	struct mail_storage_service_ctx *service_ctx;
	struct mail_storage_service_user *dest_service_user;

	/* what the logins give: the source password, or the OAuth2 token
	   (the token command's, migrate-source-token.c) */
	const char *password;
	bool token_registered;

	/* the last line imapc logged at warning level or above */
	char *last_error;
	/* while logging in: the first TLS failure imapc logged */
	bool capturing_tls;
	char *tls_error;
	/* while logging in over IMAP with migrate_source_protocol = auto:
	   whether a connection to an address of the source was refused,
	   and whether one failed otherwise (a timeout...) */
	bool capturing_connect;
	bool connect_refused, connect_failed;
};

/* migrate-source-token.c: the access token of migrate_source_oauth2_token_
   command, obtained for the first source of the process and kept fresh
   for every source registered until its deinit. */
int migrate_source_token_init(struct migrate_source *source,
			      const char **token_r,
			      enum migrate_error *code_r, const char **error_r);
void migrate_source_token_deinit(struct migrate_source *source);
/* migrate-source-grant.c: a token of the grant the settings name (a
   client-credentials or a service-account grant) for user; refused by
   the endpoint: MIGRATE_ERROR_SOURCE_AUTH, named. */
struct migrate_oauth2_token;
int migrate_source_grant_obtain(struct migrate_source *source,
				const char *user, pool_t pool,
				struct migrate_oauth2_token *token_r,
				enum migrate_error *code_r,
				const char **error_r);
/* A new password in the imapc client of the source user's storage. */
void migrate_source_user_password_changed(struct mail_user *user,
					  const char *password);
struct imapc_client;
/* migrate-source-guard.c: the imapc client of the source user's storage
   (its namespaces share it); NULL when it is no imapc user. */
struct imapc_client *migrate_source_user_imapc_client(struct mail_user *user);
void migrate_source_imapc_password_set(struct imapc_client *client,
				       const char *password);
/* migrate-source.c: the token was replaced */
void migrate_source_password_changed(struct migrate_source *source,
				     const char *password);

/* migrate-source-local.c */
extern const struct migrate_source_vfuncs migrate_source_local_vfuncs;

/* migrate-source-error.c: keep the lines imapc logs while the source
   exists (last_error, tls_error). */
void migrate_source_log_init(struct migrate_source *source);
void migrate_source_capture_tls(struct migrate_source *source, bool capture);
void migrate_source_log_deinit(struct migrate_source *source);
/* What a failed login ("imapc: Login to HOST failed: REASON") means. */
enum migrate_error migrate_source_login_error_code(const char *error);

/* migrate-source-guard.c: the bounds of a remote source (see there).
   deadline is the account's (0: none). */
struct migrate_source_guard *
migrate_source_guard_init(const struct migrate_settings *set, time_t deadline);
void migrate_source_guard_deinit(struct migrate_source_guard **guard);
/* Watch the folders the source user's storage lists. */
void migrate_source_guard_watch(struct migrate_source_guard *guard,
				struct mail_user *user);
/* The LOGOUT of user's imapc storage, sent without waiting for its reply:
   the connection closes once it is written (the storage's own logout,
   later, has nothing left to wait for). */
void migrate_source_guard_logout_storage(struct mail_user *user);
/* Give the source up: its sockets are shut down, and every later check
   fails with code and error. */
void migrate_source_guard_trip(struct migrate_source_guard *guard,
			       enum migrate_error code, const char *error);
/* 0, or -1 with why the source was given up (the deadline is checked
   here too). */
int migrate_source_guard_check(struct migrate_source_guard *guard,
			       enum migrate_error *code_r,
			       const char **error_r);
time_t migrate_source_guard_get_deadline(struct migrate_source_guard *guard);
/* deadline, when it is earlier than the guard's (0: none) */
void migrate_source_guard_set_deadline(struct migrate_source_guard *guard,
				       time_t deadline);
/* Count the folders listed from now on (count) or stop counting; one
   more folder listed (a LIST or LSUB reply).  More than
   migrate_max_folders gives the source up. */
void migrate_source_guard_count_folders(struct migrate_source_guard *guard,
					bool count);
void migrate_source_guard_folder(struct migrate_source_guard *guard);
/* Commands written from now on leave at once, several in one packet,
   not after the reply to the one before (Nagle's algorithm, which
   Dovecot's output streams turn on again after each cork): for every
   socket of the source, TCP_NODELAY until the stream's next uncork. */
void migrate_source_guard_nodelay(struct migrate_source_guard *guard);
/* A connection to the source was opened or closed: the next
   migrate_source_guard_nodelay() looks for the sockets again. */
void migrate_source_guard_sockets_changed(struct migrate_source_guard *guard);

/* migrate-source-conn.c */
struct migrate_source_conn *
migrate_source_conn_init(const struct migrate_settings *set,
			 const char *password,
			 struct mail_user *ssl_user, const char *dns_base_dir,
			 struct migrate_source_guard *guard,
			 struct event *event_parent);
/* Send LOGOUT (after what is on its way), without waiting for it. */
void migrate_source_conn_logout(struct migrate_source_conn *conn);
/* LOGOUT (waited for) and free. */
void migrate_source_conn_deinit(struct migrate_source_conn **conn);
/* Open the TCP connection now, in the ioloop that is current, which must
   not run before migrate_source_conn_start(): the greeting waits, and no
   login is sent meanwhile. */
void migrate_source_conn_connect(struct migrate_source_conn *conn);
/* Connect now (unless connected ahead), without waiting for anything;
   the greeting is read and the login sent in whichever ioloop runs. */
void migrate_source_conn_start(struct migrate_source_conn *conn);
/* At its login, ask for the listing with the folders' STATUS and
   subscriptions (where the source has LIST-STATUS): the owner wants
   them, a worker does not. */
void migrate_source_conn_want_listing(struct migrate_source_conn *conn);
/* Whether each mailbox (UTF-8) is subscribed, as the listing asked for at
   our login told (waits for it); FALSE if it did not tell all of them. */
bool migrate_source_conn_subscribed(struct migrate_source_conn *conn,
				    const char *const *mailboxes,
				    unsigned int count, bool *subscribed_r);
/* Whether migrate_source_conn_start() was called. */
bool migrate_source_conn_started(const struct migrate_source_conn *conn);
/* The password (token) of the next logins. */
void migrate_source_conn_password_changed(struct migrate_source_conn *conn,
					  const char *password);
int migrate_source_conn_fetch(struct migrate_source_conn *conn,
			      const char *mailbox, uint32_t uid, uoff_t size,
			      struct istream **input_r, time_t *received_r,
			      bool *expunged_r, bool *refused_r,
			      const char **error_r);
/* Start reading a large message that migrate_source_conn_fetch() will be
   asked for, without waiting: nothing when MIGRATE_SOURCE_LARGE_AHEAD are
   on their way, or another folder's. */
void migrate_source_conn_prefetch(struct migrate_source_conn *conn,
				  const char *mailbox, uint32_t uid,
				  uoff_t size);
/* Ask for the bodies and INTERNALDATEs of the small messages uids of
   mailbox in one FETCH, without waiting: several such chunks stay in
   flight while the caller saves.  A body larger than max_size is not
   kept. */
void migrate_source_conn_bodies_ask(struct migrate_source_conn *conn,
				    const char *mailbox,
				    const ARRAY_TYPE(seq_range) *uids,
				    uoff_t max_size);
/* 1 with the body of uid (asked for with its chunk), waiting for it as
   long as its chunk is on its way; 0 when it did not come (the caller
   asks the storage, which tells why); -1 when the chunk failed as a
   whole (NO, or the connection was lost). */
int migrate_source_conn_body(struct migrate_source_conn *conn,
			     const char *mailbox, uint32_t uid,
			     struct istream **input_r, time_t *received_r);
/* Why the last chunk that failed as a whole failed. */
const char *migrate_source_conn_bodies_error(struct migrate_source_conn *conn);
/* Ask for the RFC822.SIZEs and FLAGS of mailbox's messages from first_uid
   on, and with changedsince (a source with CONDSTORE and ESEARCH) what
   changed below it, without waiting (one folder at a time). */
void migrate_source_conn_sizes_ask(struct migrate_source_conn *conn,
				   const char *mailbox, uint32_t first_uid,
				   uint64_t changedsince);
/* What was asked for mailbox (1), waiting for it, or without wait 0
   while it is on its way; -1 when it was not asked for or the server did
   not give it. */
int migrate_source_conn_listing(struct migrate_source_conn *conn,
				const char *mailbox, bool wait,
				const struct migrate_source_listing **listing_r);
/* The caller is done with the chunk of uids: what it did not take is
   freed. */
void migrate_source_conn_bodies_finish(struct migrate_source_conn *conn,
				       const char *mailbox,
				       const ARRAY_TYPE(seq_range) *uids);
bool migrate_source_conn_bodies_failed(struct migrate_source_conn *conn,
				       const char *mailbox,
				       const ARRAY_TYPE(seq_range) *uids);
int migrate_source_conn_list(struct migrate_source_conn *conn, pool_t pool,
			     ARRAY_TYPE(const_string) *names,
			     const char **error_r);
int migrate_source_conn_uids_present(struct migrate_source_conn *conn,
				     const char *mailbox,
				     const ARRAY_TYPE(seq_range) *uids,
				     ARRAY_TYPE(seq_range) *present,
				     uint32_t *uidvalidity_r,
				     const char **error_r);
int migrate_source_conn_size(struct migrate_source_conn *conn,
			     const char *mailbox, uint32_t uid,
			     uoff_t *size_r, const char **error_r);
int migrate_source_conn_mailbox_exists(struct migrate_source_conn *conn,
				       const char *mailbox, bool *exists_r,
				       const char **error_r);
int migrate_source_conn_status(struct migrate_source_conn *conn,
			       struct migrate_source_status *items,
			       unsigned int count, const char **error_r);

/* migrate-source-tls.c: from now until deinit, every TLS connection of
   this process is a connection to this source: its certificate is
   recorded and, with pin (migrate_tls_fingerprint_normalize() form),
   any other certificate ends the handshake, even with
   migrate_source_ssl_verify=no.  source->tls is set also when it fails. */
int migrate_source_tls_init(struct migrate_source *source, const char *pin,
			    const char **error_r);
void migrate_source_tls_deinit(struct migrate_source_tls **tls);
/* While a connection that is not to the source is made (suspend), its
   certificate is neither recorded nor held to the pin. */
void migrate_source_tls_suspend(struct migrate_source_tls *tls,
				bool suspend);
/* The last certificate seen (tls may be NULL: none), strings from pool. */
void migrate_source_tls_get_peer(const struct migrate_source_tls *tls,
				 pool_t pool, struct migrate_source_peer *peer_r);
/* Why a connection was refused for its pin, or NULL when none was. */
const char *migrate_source_tls_pin_error(const struct migrate_source_tls *tls);

/* migrate-source-resolver.c: a resolver that answers one host name with
   one IP address, in Dovecot's dns-client protocol: imapc resolves its
   imapc_host through base_dir/dns-client when that socket path is set.
   The answering process is a child that dies with us.  *base_dir_r is
   the directory holding the "dns-client" socket. */
int migrate_resolver_start(const char *name, const char *ip,
			   struct migrate_resolver **resolver_r,
			   const char **base_dir_r, const char **error_r);
void migrate_resolver_stop(struct migrate_resolver **resolver);

/* The dest user's home, for the source users' settings ("/" if none). */
const char *migrate_source_home(struct migrate_source *source);
/* A mail user for the source with these userdb fields (no namespaces, no
   plugins), its I/O active instead of dest_service_user's until
   migrate_source_service_done(). */
int migrate_source_service_lookup(struct migrate_source *source,
				  struct mail_storage_service_ctx *service_ctx,
				  struct mail_storage_service_user *dest_service_user,
				  const char *const *userdb_fields,
				  struct mail_storage_service_user **service_user_r,
				  struct mail_user **user_r, const char **error_r);
void migrate_source_service_done(struct mail_storage_service_user **service_user,
				 struct mail_storage_service_user *dest_service_user);

/* Add the userdb fields that point Dovecot's client storage driver
   ("imapc", "pop3c") at the source server: host (or the certificate name
   with our resolver), port, user, master user, TLS, no rawlog. */
void migrate_source_userdb_server(ARRAY_TYPE(const_string) *fields,
				 const char *driver,
				 const struct migrate_settings *set,
				 const char *home, const char *resolver_dir,
				 unsigned int port, const char *ssl_mode);

/* migrate-source-pop3.c: the POP3 user, created after the imapc one */
int migrate_source_pop3_init(struct migrate_source *source,
			     struct mail_storage_service_ctx *service_ctx,
			     struct mail_storage_service_user *dest_service_user,
			     const char **error_r);
void migrate_source_pop3_deinit(struct migrate_source *source);

#endif
