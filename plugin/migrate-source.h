#ifndef MIGRATE_SOURCE_H
#define MIGRATE_SOURCE_H

/* The old provider's IMAP server: everything that talks to it is behind
   this header.
   - The source as a mail user on imapc storage: the login, its folders
     and subscriptions, and a folder's messages where our own connection
     cannot list or bring them (imapc's SELECT fetches every message's
     flags, and it has one command in flight).
   - A connection of our own (lib-imap-client), connected when the
     folders are listed, with many commands in flight: the STATUS of all
     folders, a folder's listing (sizes and flags; with CONDSTORE and
     ESEARCH only what changed), small messages' bodies in chunks ahead,
     large messages in bounded pieces (imapc reads a whole BODY[] literal
     into memory, about three times its size), the raw LIST and second
     looks before deleting.
   - A private resolver, so that imapc can connect to the IP address the
     admin gave while verifying the certificate against the host name.
   - What the source's failures mean (enum migrate_error), with the cause
     its connections logged when the storage only says "Internal error".
   - Bounds against a hostile or broken source: the line length of both
     connections, the account's deadline, a minimum rate, the folders it
     may list (migrate_source_check()). */

#include "mail-error.h"
#include "mail-storage.h"
#include "seq-range-array.h"
#include "migrate-error.h"
#include "migrate-tls.h"

struct istream;
struct mailbox;
struct mail_namespace;
struct mail_user;
struct mail_storage_service_ctx;
struct mail_storage_service_user;
struct migrate_settings;
struct mail;
struct migrate_source;

/* messages larger than this (by RFC822.SIZE; and than half of
   migrate_source_max_line_length: the client reads a literal as part of
   its line) are read in pieces over our own connection; smaller ones in
   chunks of at most migrate_prefetch messages and
   MIGRATE_SOURCE_PREFETCH_BYTES, fetched ahead, in memory */
#define MIGRATE_SOURCE_LARGE_SIZE (1024*1024)
#define MIGRATE_SOURCE_PREFETCH_BYTES (8*1024*1024)

/* What the source's TLS showed: the last certificate (sha256 NULL when
   none), and whether a connection was refused for not showing the
   pinned one; and how it is read. */
struct migrate_source_peer {
	struct migrate_tls_cert cert;
	bool pin_mismatch;
	/* the source is read over POP3 only (migrate_source_protocol = pop3,
	   or auto choosing it) */
	bool pop3_only;
	/* with migrate_source_protocol = auto: why the source is read over
	   IMAP or POP3 only; NULL otherwise */
	const char *protocol_why;
};

/* Log in to the source of dest_user (its migrate settings).  The
   password goes straight into the imapc settings: it is never a userdb
   field, so even mail_debug does not log it.  A refused login is
   reported here as MIGRATE_ERROR_SOURCE_AUTH; a certificate that is not
   set->source_ssl_pin as MIGRATE_ERROR_SOURCE_TLS.  With
   set->source_protocol pop3 only the POP3 user is made (logged in when
   first used); with auto, a source whose IMAP port refuses the connection
   (on every address tried, and nothing else failed) is read over POP3
   only, logged (event migrate_source_pop3_only); a login refused, a
   timeout or a TLS failure never is.  From now until deinit
   the source is bounded (migrate_source_check()); deadline is when the
   account's run must end (0: never).  peer_r (may be NULL) is filled
   whether the login succeeds or not, its strings from dest_user's pool. */
enum migrate_source_init_flags {
	/* a worker process: the owner listed the folders, its login is not
	   followed by a listing of its own */
	MIGRATE_SOURCE_INIT_FLAG_WORKER = 0x01,
};
int migrate_source_init(struct mail_storage_service_ctx *service_ctx,
			struct mail_storage_service_user *dest_service_user,
			struct mail_user *dest_user,
			const struct migrate_settings *set,
			enum migrate_source_init_flags flags, time_t deadline,
			struct migrate_source_peer *peer_r,
			struct migrate_source **source_r,
			enum migrate_error *error_code_r,
			const char **error_r);
/* What the source's TLS connections showed so far (as for
   migrate_source_init()). */
void migrate_source_get_peer(struct migrate_source *source,
			     struct migrate_source_peer *peer_r);
/* NULL, or why a connection to the source was refused: its certificate
   was not the pinned one (set->source_ssl_pin). */
const char *migrate_source_pin_error(struct migrate_source *source);
/* A source that is a mail user of this server, read through its storage:
   the engine on real storage without an IMAP server (unit tests).
   src_user stays the caller's and must outlive the source. */
struct migrate_source *
migrate_source_init_local(struct mail_user *dest_user,
			  const struct migrate_settings *set,
			  struct mail_user *src_user);
void migrate_source_deinit(struct migrate_source **source);

/* 0 while the source may be talked to, -1 with why it was given up:
   the account's deadline passed (migrate_account_timeout,
   MIGRATE_ERROR_TEMP), it sent slower than migrate_min_rate while we
   waited (MIGRATE_ERROR_SOURCE_TEMP, a retry may do better), or it
   listed more folders than migrate_max_folders
   (MIGRATE_ERROR_SOURCE_LIMIT).
   Once given up, the source's connections are shut down: whatever
   waited on them failed, and the run must stop talking to it (a new
   command would connect again, and be cut within a second). */
int migrate_source_check(struct migrate_source *source,
			 enum migrate_error *code_r, const char **error_r);
/* When the account's run must end (0: never); a worker takes its
   owner's, when that is earlier than its own. */
time_t migrate_source_get_deadline(struct migrate_source *source);
void migrate_source_set_deadline(struct migrate_source *source,
				 time_t deadline);
/* Count the folders the source lists (LIST and LSUB replies) from now
   on, or stop counting.  More than migrate_max_folders gives the source
   up and ends the listing. */
void migrate_source_count_folders(struct migrate_source *source, bool count);

/* The folders the login listed are not needed any more (the folder tree is
   listed): imapc lists them again when next asked.  A worker's login lists
   nothing (MIGRATE_SOURCE_INIT_FLAG_WORKER), so nothing is kept there. */
void migrate_source_release_listing(struct migrate_source *source);

/* The source's folders, as the source storage shows them (UTF-8 names,
   the source's separator). */
struct mail_namespace *
migrate_source_get_namespace(struct migrate_source *source);

/* Fetch message uid of mailbox (its name as the source storage shows it)
   in pieces, into a temporary file.  size (RFC822.SIZE) is only a hint
   (some servers get it wrong): reading goes on until a piece comes back
   short, but ends at twice size and a piece.  The returned stream reads a
   file that is gone when the stream is.  Returns -1 with *expunged_r when
   the source no longer has the message, with *refused_r when it answered
   NO or sent more than that (it will not give this message), and
   otherwise for errors of the connection. */
int migrate_source_fetch_large(struct migrate_source *source,
			       const char *mailbox, uint32_t uid, uoff_t size,
			       struct istream **input_r, time_t *received_r,
			       bool *expunged_r, bool *refused_r,
			       const char **error_r);
/* The RFC822.SIZEs and flags of a folder's messages from first_uid on,
   asked for over our own connection while the storage opens the folder
   (nothing for a source without one), and taken when the copy is
   planned: sorted by UID; -1 when they were not asked for or did not
   come (ask the storage).  With changedsince (the HIGHESTMODSEQ of the
   folder's last complete sync) on a source with CONDSTORE and ESEARCH,
   also what changed below first_uid: the flags changed since then
   (CHANGEDSINCE) and the UIDs still there (changes is TRUE then), so
   that a re-run costs what changed, not the folder. */
struct migrate_source_size {
	uint32_t uid;
	uoff_t size;
};
ARRAY_DEFINE_TYPE(migrate_source_size, struct migrate_source_size);
struct migrate_source_flags {
	uint32_t uid;
	enum mail_flags flags;
	const char *const *keywords;
};
ARRAY_DEFINE_TYPE(migrate_source_flags, struct migrate_source_flags);
struct migrate_source_listing {
	uint32_t first_uid;
	/* from first_uid on */
	ARRAY_TYPE(migrate_source_size) sizes;
	/* from first_uid on, and (with changes) those below it whose flags
	   changed; a UID may be there twice (the server told twice) */
	ARRAY_TYPE(migrate_source_flags) flags;
	/* with changes: the UIDs below first_uid the folder has */
	ARRAY_TYPE(seq_range) present;
	bool changes;
};
void migrate_source_sizes_ask(struct migrate_source *source,
			      const char *mailbox, uint32_t first_uid,
			      uint64_t changedsince);
int migrate_source_listing(struct migrate_source *source, const char *mailbox,
			   const struct migrate_source_listing **listing_r);
/* The same without waiting: 1 when it is here, 0 while it is on its
   way, -1 as above. */
int migrate_source_listing_peek(struct migrate_source *source,
				const char *mailbox,
				const struct migrate_source_listing **listing_r);
/* The sizes of the listing. */
int migrate_source_sizes(struct migrate_source *source, const char *mailbox,
			 const ARRAY_TYPE(migrate_source_size) **sizes_r);
/* Small messages over our own connection, a chunk at a time, several
   chunks in flight while the caller saves: ask for the bodies (and
   INTERNALDATEs) of uids of mailbox (FALSE: this source cannot, use the
   storage), take each with migrate_source_body() (1; 0 when it did not
   come: the storage is asked for it, and tells why; -1 when the chunk
   failed as a whole: the storage is asked for the rest), and say when
   done with the chunk.  A body larger than max_size is not kept. */
bool migrate_source_bodies_ask(struct migrate_source *source,
			       const char *mailbox,
			       const ARRAY_TYPE(seq_range) *uids,
			       uoff_t max_size);
int migrate_source_body(struct migrate_source *source, const char *mailbox,
			uint32_t uid, struct istream **input_r,
			time_t *received_r);
void migrate_source_bodies_finish(struct migrate_source *source,
				  const char *mailbox,
				  const ARRAY_TYPE(seq_range) *uids);
/* The chunk of uids asked for failed as a whole (its connection was lost):
   it is of no use any more (TRUE as well when it was not asked for). */
bool migrate_source_bodies_failed(struct migrate_source *source,
				  const char *mailbox,
				  const ARRAY_TYPE(seq_range) *uids);
/* Why the last chunk that failed as a whole failed. */
const char *migrate_source_bodies_error(struct migrate_source *source);
/* A large message that migrate_source_fetch_large() will be asked for
   (the next ones of a folder, in the order they are read): its first
   pieces are asked for now, and arrive while other work is done (no
   round trip is waited for when it is read).  Those asked for before the
   one read are dropped. */
void migrate_source_prefetch_large(struct migrate_source *source,
				   const char *mailbox, uint32_t uid,
				   uoff_t size);
/* The source's folder names as its LIST gives them (UTF-8), without the
   case folding of INBOX that Dovecot applies to its own names. */
int migrate_source_list_names(struct migrate_source *source, pool_t pool,
			      ARRAY_TYPE(const_string) *names,
			      const char **error_r);
/* Which of uids mailbox has now, by UID SEARCH in a new EXAMINE of it
   (a second look, before deleting their copies), and the UIDVALIDITY that
   view has (0 when the server did not tell).  uids may be empty.  present
   is filled while replies arrive, so not on the data stack. */
int migrate_source_uids_present(struct migrate_source *source,
				const char *mailbox,
				const ARRAY_TYPE(seq_range) *uids,
				ARRAY_TYPE(seq_range) *present,
				uint32_t *uidvalidity_r, const char **error_r);
/* The RFC822.SIZE of one message (for a report when the source storage
   could not tell it). */
int migrate_source_message_size(struct migrate_source *source,
				const char *mailbox, uint32_t uid,
				uoff_t *size_r, const char **error_r);
/* The STATUS of many folders in one round trip (all commands pipelined
   over our own connection).  mailbox (UTF-8) is the caller's; found is
   TRUE for those whose reply gave UIDVALIDITY and UIDNEXT, and only
   those have status (MESSAGES, UIDNEXT, UIDVALIDITY, HIGHESTMODSEQ where
   the source has CONDSTORE).  -1 when it cannot be done this way (a
   local source, a failed connection): ask through the storage. */
struct migrate_source_status {
	const char *mailbox;
	struct mailbox_status status;
	bool found;
};
int migrate_source_status(struct migrate_source *source,
			  struct migrate_source_status *items,
			  unsigned int count, const char **error_r);
/* Whether each of the mailboxes (UTF-8) is subscribed at the source, as a
   listing the source gave along the way told; FALSE when none told about
   all of them (the subscriptions are to be listed then). */
bool migrate_source_subscribed(struct migrate_source *source,
			       const char *const *mailboxes,
			       unsigned int count, bool *subscribed_r);
/* Whether the source's LIST shows mailbox (UTF-8) by this exact name. */
int migrate_source_mailbox_exists(struct migrate_source *source,
				  const char *mailbox, bool *exists_r,
				  const char **error_r);

/* What a storage error of the source means. */
enum migrate_error migrate_source_error_code(enum mail_error error,
					     const char *errstr);
/* The last error of a source mailbox operation ("Opening", ...): its
   code and "Source: <what> <mailbox> failed: <cause>". */
enum migrate_error
migrate_source_mailbox_error(struct migrate_source *source,
			     struct mailbox *box, const char *what,
			     const char **error_r);
/* The last error of listing the source's folders or subscriptions. */
enum migrate_error
migrate_source_list_error(struct migrate_source *source, const char *what,
			  const char **error_r);
/* A failure to fetch one message (not "gone"): TRUE when the source
   refuses to give this one message (leave it out, go on), FALSE with
   *code_r when it is the connection's or the server's failure. */
bool migrate_source_refuses_message(enum mail_error error, const char *errstr,
				    enum migrate_error *code_r);
/* error, with the cause the source's connections logged when error is
   only Dovecot's generic "Internal error occurred". */
const char *migrate_source_explain(struct migrate_source *source,
				   const char *error);

/* The source's INBOX as its POP3 server shows it (migrate_source_pop3):
   a message's number, UIDL and header hash (migrate_mail_header_hash()). */
struct migrate_source_pop3_message {
	uint32_t seq;
	const char *uidl;
	const char *hdr_hash;
};
ARRAY_DEFINE_TYPE(migrate_source_pop3_message,
		  struct migrate_source_pop3_message);
/* Whether a POP3 message of this UIDL is wanted (its header is read). */
typedef bool migrate_source_pop3_want_t(const char *uidl, void *context);

/* Whether the source reads POP3 too (migrate_source_pop3 = yes). */
bool migrate_source_has_pop3(struct migrate_source *source);
/* Whether the source is read over POP3 only (migrate_source_protocol =
   pop3, or auto choosing it): no IMAP user, migrate_source_get_namespace()
   must not be called. */
bool migrate_source_is_pop3_only(struct migrate_source *source);
/* A new POP3 session (a POP3 session is a snapshot): for a second look. */
int migrate_source_pop3_reconnect(struct migrate_source *source,
				  const char **error_r);
/* Called for each POP3 message that migrate_source_pop3_read() reads
   whole: mail is positioned on it (its stream is the message). */
typedef int migrate_source_pop3_copy_t(struct mail *mail, const char *uidl,
				       uint32_t pop3_seq, void *context);
/* Each message of the POP3 INBOX whose UIDL want() wants, whole, to
   copy(); want() sees every UIDL.  Errors as for
   migrate_source_pop3_messages(); copy() failing stops with -1 and
   *code_r MIGRATE_ERROR_NONE (the caller has its error). */
int migrate_source_pop3_read(struct migrate_source *source,
			     migrate_source_pop3_want_t *want,
			     migrate_source_pop3_copy_t *copy, void *context,
			     enum migrate_error *code_r, const char **error_r);
/* The POP3 messages of the source's INBOX that want() wants, in POP3
   order, into msgs (strings from pool).  A login the POP3 server refuses
   is MIGRATE_ERROR_SOURCE_AUTH (never retried), anything else
   MIGRATE_ERROR_TEMP. */
int migrate_source_pop3_messages(struct migrate_source *source, pool_t pool,
				 migrate_source_pop3_want_t *want,
				 void *context,
				 ARRAY_TYPE(migrate_source_pop3_message) *msgs,
				 enum migrate_error *code_r,
				 const char **error_r);
/* A hash of mail's header that the IMAP and the POP3 view of one message
   share (Dovecot's message_header_hash, newest version, SHA-1, hex). */
int migrate_mail_header_hash(struct mail *mail, const char **hash_r);

/* At the module's unload: the OAuth2 token the process kept (none is in
   use then). */
void migrate_source_token_cache_free(void);

/* migrate-source-grant.c: a token of the OAuth2 grant set names (a
   client-credentials or a service-account grant) for user, asked over
   HTTPS with ssl_set; tls: the source's certificate check to keep out of
   it (NULL: none).  Refused by the endpoint: MIGRATE_ERROR_SOURCE_AUTH,
   named. */
struct ssl_iostream_settings;
struct migrate_source_tls;
struct migrate_oauth2_token;
int migrate_grant_request(const struct migrate_settings *set,
			  const struct ssl_iostream_settings *ssl_set,
			  struct event *event, struct migrate_source_tls *tls,
			  const char *user, pool_t pool,
			  struct migrate_oauth2_token *token_r,
			  enum migrate_error *code_r, const char **error_r);

#endif
