#ifndef MIGRATE_FETCH_H
#define MIGRATE_FETCH_H

/* Reads large messages from the source in bounded pieces over a connection
   of our own (lib-imap-client): UID FETCH BODY.PEEK[]<offset.length>,
   several pieces in flight, written to a temporary file.  imapc storage in
   Dovecot 2.3.19 reads a whole BODY[] literal into memory (about three
   times its size); with this, memory stays bounded whatever the size. */

struct mail_user;
struct migrate_settings;
struct migrate_fetcher;

/* messages larger than this are read in pieces; with migrate_prefetch (50)
   messages read ahead by imapc, each held in memory whole, this bounds the
   read-ahead to about 25 MB */
#define MIGRATE_FETCH_LARGE_SIZE (512*1024)
/* what the source storage may fetch ahead at once (messages up to
   MIGRATE_FETCH_LARGE_SIZE, each held whole in memory) */
#define MIGRATE_PREFETCH_BYTES (8*1024*1024)
#define MIGRATE_FETCH_PIECE_SIZE (1024*1024)
#define MIGRATE_FETCH_PIECES_IN_FLIGHT 4

/* ssl_user gives the TLS client settings (CA file or directory);
   dns_base_dir is migrate_source.resolver_dir or NULL. */
struct migrate_fetcher *
migrate_fetcher_init(const struct migrate_settings *set,
		     struct mail_user *ssl_user, const char *dns_base_dir,
		     struct event *event_parent);
void migrate_fetcher_deinit(struct migrate_fetcher **fetcher);

/* Fetch source message uid from mailbox (its name as the source storage
   shows it: UTF-8, the source's separator).  size (RFC822.SIZE) only sizes
   the first window of pieces: reading goes on until a piece comes back
   short.  The returned stream reads a temporary file that is gone when the
   stream is.  Returns -1 with *expunged_r when the source no longer has
   the message, with *refused_r when it answered NO (it will not give this
   message), and otherwise for errors of the connection. */
int migrate_fetcher_fetch(struct migrate_fetcher *fetcher,
			  const char *mailbox, uint32_t uid, uoff_t size,
			  struct istream **input_r, bool *expunged_r,
			  bool *refused_r, const char **error_r);

/* The source's folder names as its LIST gives them (UTF-8), without the
   case folding of INBOX that Dovecot applies to its own names. */
int migrate_fetcher_list(struct migrate_fetcher *fetcher, pool_t pool,
			 ARRAY_TYPE(const_string) *names,
			 const char **error_r);

/* Which of uids mailbox has now, by UID SEARCH in a new EXAMINE of it
   (a second look, before deleting their copies).  present gets them; it
   is filled while replies arrive, so not on the data stack. */
int migrate_fetcher_uids_present(struct migrate_fetcher *fetcher,
				 const char *mailbox,
				 const ARRAY_TYPE(seq_range) *uids,
				 ARRAY_TYPE(seq_range) *present,
				 const char **error_r);
/* The RFC822.SIZE of one message (for a report when the source's storage
   could not tell it). */
int migrate_fetcher_size(struct migrate_fetcher *fetcher, const char *mailbox,
			 uint32_t uid, uoff_t *size_r, const char **error_r);
/* Whether the source's LIST shows mailbox (UTF-8) by this exact name. */
int migrate_fetcher_mailbox_exists(struct migrate_fetcher *fetcher,
				   const char *mailbox, bool *exists_r,
				   const char **error_r);

#endif
