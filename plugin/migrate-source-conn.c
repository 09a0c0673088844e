/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "buffer.h"
#include "strnum.h"
#include "seq-range-array.h"
#include "istream.h"
#include "safe-mkstemp.h"
#include "write-full.h"
#include "imap-arg.h"
#include "imap-utf7.h"
#include "imap-quote.h"
#include "imap-util.h"
#include "imap-seqset.h"
#include "imap-date.h"
#include "ioloop.h"
#include "imapc-client-private.h"
#include "imapc-connection.h"
#include "mail-user.h"
#include "migrate-settings.h"
#include "migrate-source-private.h"

#include <unistd.h>

/* A message of a chunk, as it arrived (in memory: lib-imap-client 2.3.19
   never spools a FETCH reply's literal to a file, see conn_literal_fd()) */
struct conn_body {
	uint32_t uid;
	time_t received;
	buffer_t *data;
};

/* Small messages asked for in one FETCH (migrate_source_conn_bodies_ask()) */
struct conn_chunk {
	struct migrate_source_conn *conn;
	pool_t pool;
	char *mailbox;
	ARRAY_TYPE(seq_range) uids;
	ARRAY(struct conn_body) bodies;
	/* a body larger than this is not kept, nor bodies past max_bytes
	   together (a broken or hostile server) */
	uoff_t max_size, max_bytes, bytes;
	/* bodies taken so far (they arrive in UID order, mostly) */
	unsigned int next_idx;
	bool done, failed, finished;
};

static void conn_chunk_free(struct conn_chunk **_chunk);
static bool
conn_sizes_reply(struct migrate_source_conn *conn, const struct imap_arg *list,
		 unsigned int count, uint32_t uid);

/* A folder's messages from a UID on (RFC822.SIZE, FLAGS), and with
   changes the flags changed below it and the UIDs it has there, asked
   for ahead (migrate_source_conn_sizes_ask()) */
struct conn_sizes {
	struct migrate_source_conn *conn;
	char *mailbox;
	uint64_t changedsince;
	pool_t pool;
	struct migrate_source_listing listing;
	/* the EXAMINE its folder's replies come after (by its serial): what
	   came before it was the folder selected before */
	unsigned int examine_serial;
	/* its commands not answered yet */
	unsigned int cmds_pending;
	/* the UID SEARCH's ESEARCH reply came (without it nothing says which
	   UIDs the folder still has) */
	bool got_esearch;
	bool done, failed, sorted;
};
static void conn_sizes_free(struct conn_sizes **_sizes);

/* A large message read in pieces into a temporary file, asked for ahead
   of its reading (migrate_source_conn_prefetch()) */
struct conn_large {
	struct migrate_source_conn *conn;
	char *mailbox;
	uint32_t uid;
	/* the temporary file, and where reading it ends at the latest */
	int fd;
	uoff_t end;
	/* the pieces (by index) in, the end of the data, and where the
	   first short piece ended the message */
	ARRAY_TYPE(seq_range) got_pieces;
	uoff_t max_end, short_end;
	bool have_short;
	/* its RFC822.SIZE, and where the next window starts */
	uoff_t size_hint, next_offset;
	/* its piece commands not answered yet */
	unsigned int pieces_pending;
	/* its INTERNALDATE ((time_t)-1: not given) */
	time_t received;
	/* a piece came back shorter than asked: the end of the message */
	bool eof;
	bool got_piece;
	bool failed, expunged, refused;
	/* it sent more than it said the message has */
	bool oversized;
	/* taken by its reader or abandoned: what still comes is dropped,
	   and it goes when nothing more does */
	bool dropped;
	char *error;
};

/* A folder as the listing asked for at our login told it */
struct conn_listed {
	struct mailbox_status status;
	bool has_status;
	bool subscribed;
};

/* LIST "" "*" RETURN (SUBSCRIBED STATUS (...)), sent as soon as our login
   is accepted where the source has LIST-STATUS: it answers while the
   storage still lists the folders, and the folders' STATUS and the
   subscriptions are then known without a round trip of their own */
struct conn_ahead {
	pool_t pool;
	/* UTF-8 name -> what was listed */
	HASH_TABLE(char *, struct conn_listed *) folders;
	unsigned int count;
	bool done;
	/* failed, or listed more than migrate_max_folders: not used */
	bool unusable;
};

struct migrate_source_conn {
	struct event *event;
	struct migrate_source_guard *guard;
	struct imapc_client *client;
	/* the folder selected (or being selected), as far as the commands
	   sent say: the client itself never knows, so that it never waits
	   for an EXAMINE before it sends what follows */
	char *selected;
	/* logged in, and not lost since */
	bool logged_in;

	/* large messages asked for, oldest first; one taken or abandoned
	   stays until its pieces are answered */
	ARRAY(struct conn_large *) larges;
	/* migrate_source_conn_fetch() waits for this one */
	struct conn_large *awaited_large;
	unsigned int pending;
	bool failed;
	char *error;
	char *temp_prefix;

	/* LIST replies go here while migrate_source_conn_list() runs */
	pool_t list_pool;
	ARRAY_TYPE(const_string) *list_names;
	/* SEARCH replies go here while migrate_source_conn_uids_present() runs */
	ARRAY_TYPE(seq_range) *search_uids;
	/* the UIDVALIDITY the last EXAMINE reported (0: none) */
	uint32_t uidvalidity;
	/* the listings of folders, oldest first: the one in use and the
	   next folders' asked for ahead (MIGRATE_SOURCE_CONN_LISTINGS in
	   all) */
	ARRAY(struct conn_sizes *) listings;
	/* stop running when this one is done */
	struct conn_sizes *awaited_sizes;
	/* EXAMINEs sent, and answered (they are answered in order) */
	unsigned int examines_sent, examines_done;
	/* an EXAMINE failed: nothing that comes for the commands
	   outstanding can be trusted to be their folder's (a server may
	   keep the folder selected before, against RFC 3501, as a
	   throttling front end that refuses the EXAMINE without passing it
	   on does, and such a front end answers out of order), so what
	   they asked for fails and their data are dropped, until the
	   connection has nothing outstanding */
	bool poisoned;
	/* why the last chunk that failed as a whole failed */
	char *chunk_error;
	/* chunks of small messages asked for, oldest first */
	ARRAY(struct conn_chunk *) chunks;
	/* stop running when this chunk is done or awaited_uid arrived */
	struct conn_chunk *awaited_chunk;
	uint32_t awaited_uid;
	/* STATUS replies go here while migrate_source_conn_status() runs */
	struct migrate_source_status *status_items;
	unsigned int status_count;
	/* migrate_source_conn_size(): the UID asked for, and its RFC822.SIZE */
	uint32_t size_uid;
	uoff_t size;
	bool got_size;
	bool logout_sent, logout_sent_async;
	/* migrate_source_conn_connect() opened the TCP connection */
	bool connected;
	/* migrate_source_conn_start() let it log in */
	bool started;
	/* it logs in while the storage lists (conns_early) */
	bool early;
	/* why our login was refused: what is asked afterwards fails at
	   once */
	char *login_error;
	/* the listing asked for at our login, NULL if none was */
	struct conn_ahead *ahead;
	unsigned int max_folders;
	/* ask it (the folders' STATUS and subscriptions are wanted) */
	bool want_ahead;
};

/* Our connections logging in while the storage lists the folders.  Each
   imapc client runs an ioloop of its own while it waits, so ours would
   not even read the greeting before it is first run, after the storage's
   LIST and LSUB.  Until then its connection follows the ioloop that
   runs: all it can do there is read the greeting and the login's reply,
   whose callbacks only note the state (nothing else is asked of it
   before conn_claim()). */
static ARRAY(struct migrate_source_conn *) conns_early;

static void conn_pieces_stop(struct conn_large *large);
static struct conn_ahead *conn_ahead_wait(struct migrate_source_conn *conn);
static void conn_ahead_free(struct conn_ahead **_ahead);

static void conn_set_error(struct migrate_source_conn *conn,
			      const char *error)
{
	if (conn->error == NULL)
		conn->error = i_strdup(error);
	conn->failed = TRUE;
}

static void large_set_error(struct conn_large *large, const char *error)
{
	if (large->error == NULL)
		large->error = i_strdup(error);
	large->failed = TRUE;
}

/* Write the piece imapc put into fd at offset in our file.  Only a piece
   read whole may end the message: a failed read or write fails it, never
   truncates it. */
static int
conn_piece_file(struct conn_large *large, const struct imap_arg *arg,
		int fd, uoff_t offset, uoff_t *size_r)
{
	unsigned char buf[IO_BLOCK_SIZE];
	uoff_t size, piece = 0;
	ssize_t ret;

	if (!imap_arg_get_literal_size(arg, &size)) {
		large_set_error(large, "Invalid literal in FETCH reply");
		return -1;
	}
	if (lseek(fd, 0, SEEK_SET) < 0) {
		large_set_error(large, t_strdup_printf("lseek(literal) failed: %m"));
		return -1;
	}
	while ((ret = read(fd, buf, sizeof(buf))) > 0) {
		if (pwrite_full(large->fd, buf, ret, offset + piece) < 0) {
			large_set_error(large, t_strdup_printf(
				"pwrite(temp file) failed: %m"));
			return -1;
		}
		piece += ret;
	}
	if (ret < 0) {
		large_set_error(large, t_strdup_printf(
			"read(literal) failed: %m"));
		return -1;
	}
	if (piece != size) {
		large_set_error(large, t_strdup_printf(
			"UID %u: the literal at %"PRIuUOFF_T" has %"PRIuUOFF_T
			" of its %"PRIuUOFF_T" bytes", large->uid, offset,
			piece, size));
		return -1;
	}
	*size_r = piece;
	return 0;
}

/* A piece that takes the message past its end: the source sends more
   than it said the message has (a broken or hostile server may do so
   for ever).  The message is left out. */
static bool conn_piece_past_end(struct conn_large *large)
{
	if (large->max_end <= large->end)
		return FALSE;
	large->oversized = large->refused = TRUE;
	large_set_error(large, t_strdup_printf(
		"it sent more than %"PRIuUOFF_T" bytes, twice its RFC822.SIZE "
		"and a piece (a broken or hostile server)", large->end));
	return TRUE;
}

/* The message is read when a piece came back short and every piece
   before it is in (the server may answer a window's pieces in any
   order: Dovecot runs pipelined FETCHes in parallel). */
static void conn_piece_check_eof(struct conn_large *large)
{
	ARRAY_TYPE(seq_range) want;
	uint32_t last;

	if (!large->have_short)
		return;
	if (large->max_end > large->short_end) {
		large_set_error(large, t_strdup_printf(
			"UID %u: data past the end a short piece gave "
			"(%"PRIuUOFF_T")", large->uid, large->short_end));
		return;
	}
	last = large->short_end == 0 ? 0 :
		(large->short_end - 1) / MIGRATE_SOURCE_PIECE_SIZE;
	t_array_init(&want, 1);
	seq_range_array_add_range(&want, 0, last);
	seq_range_array_remove_seq_range(&want, &large->got_pieces);
	if (array_count(&want) == 0)
		large->eof = TRUE;
}

static void
conn_piece(struct conn_large *large, const struct imap_arg *arg,
	      const struct imapc_untagged_reply *reply, uoff_t offset)
{
	const char *data;
	uoff_t size, end;
	uint32_t idx = offset / MIGRATE_SOURCE_PIECE_SIZE;

	if (offset % MIGRATE_SOURCE_PIECE_SIZE != 0 ||
	    seq_range_exists(&large->got_pieces, idx)) {
		large_set_error(large, t_strdup_printf(
			"UID %u: a piece at offset %"PRIuUOFF_T" not asked "
			"for", large->uid, offset));
		return;
	}
	if (arg->type == IMAP_ARG_LITERAL_SIZE) {
		/* imapc put the literal into a file */
		if (reply->file_args_count == 0) {
			large_set_error(large, "Literal without its file");
			return;
		}
		if (conn_piece_file(large, arg, reply->file_args[0].fd,
				    offset, &size) < 0)
			return;
	} else if (!imap_arg_get_nstring(arg, &data)) {
		large_set_error(large, "Invalid BODY[] in FETCH reply");
		return;
	} else {
		/* NIL or "" past the end */
		size = data == NULL ? 0 : arg->str_len;
		if (size > 0 && pwrite_full(large->fd, data, size, offset) < 0) {
			large_set_error(large, t_strdup_printf(
				"pwrite(temp file) failed: %m"));
			return;
		}
	}
	seq_range_array_add(&large->got_pieces, idx);
	end = offset + size;
	if (size > 0 && end > large->max_end)
		large->max_end = end;
	if (size < MIGRATE_SOURCE_PIECE_SIZE &&
	    (!large->have_short || end < large->short_end)) {
		large->have_short = TRUE;
		large->short_end = end;
	}
	if (!conn_piece_past_end(large))
		conn_piece_check_eof(large);
	conn_pieces_stop(large);
}

/* A folder name as the source sent it (modified UTF-7), in UTF-8; when it
   is not valid UTF-7, the name as sent follows what was decoded */
static const char *conn_name_utf8(const char *name)
{
	string_t *utf8 = t_str_new(128);

	if (imap_utf7_to_utf8(name, utf8) < 0)
		str_append(utf8, name);
	return str_c(utf8);
}

static bool conn_ahead_listing(struct migrate_source_conn *conn)
{
	return conn->ahead != NULL && !conn->ahead->done;
}

static struct conn_listed *
conn_ahead_find(struct migrate_source_conn *conn, const char *name)
{
	if (!conn_ahead_listing(conn) || conn->ahead->unusable)
		return NULL;
	return hash_table_lookup(conn->ahead->folders, name);
}

/* "* LIST (attributes) sep name" of the listing asked for at our login */
static void
conn_ahead_list(struct migrate_source_conn *conn,
		const struct imapc_untagged_reply *reply, const char *name)
{
	struct conn_ahead *ahead = conn->ahead;
	const struct imap_arg *attrs;
	struct conn_listed *listed;
	const char *attr;
	char *key;
	bool subscribed = FALSE;

	if (!conn_ahead_listing(conn) || ahead->unusable)
		return;
	if (++ahead->count > conn->max_folders) {
		/* no more kept: the storage's listing says what is wrong */
		ahead->unusable = TRUE;
		hash_table_clear(ahead->folders, FALSE);
		p_clear(ahead->pool);
		return;
	}
	if (imap_arg_get_list(&reply->args[0], &attrs)) {
		for (; attrs->type != IMAP_ARG_EOL; attrs++) {
			if (imap_arg_get_atom(attrs, &attr) &&
			    strcasecmp(attr, "\\Subscribed") == 0)
				subscribed = TRUE;
		}
	}
	name = conn_name_utf8(name);
	listed = hash_table_lookup(ahead->folders, name);
	if (listed == NULL) {
		key = p_strdup(ahead->pool, name);
		listed = p_new(ahead->pool, struct conn_listed, 1);
		hash_table_insert(ahead->folders, key, listed);
	}
	listed->subscribed = subscribed;
}

static void
conn_untagged_list(struct migrate_source_conn *conn,
		      const struct imapc_untagged_reply *reply)
{
	const char *name;

	/* (attributes) separator name */
	if (!imap_arg_get_astring(&reply->args[2], &name))
		return;
	if (conn->list_names == NULL) {
		conn_ahead_list(conn, reply, name);
		return;
	}
	migrate_source_guard_folder(conn->guard);
	name = p_strdup(conn->list_pool, conn_name_utf8(name));
	array_push_back(conn->list_names, &name);
}

/* A STATUS reply's (MESSAGES n UIDNEXT n ...) into status */
static void
conn_status_parse(const struct imap_arg *list, unsigned int count,
		  struct mailbox_status *status)
{
	const char *key, *value;
	unsigned int i;
	uint32_t num;
	uint64_t num64;

	for (i = 0; i + 1 < count; i += 2) {
		if (!imap_arg_get_atom(&list[i], &key) ||
		    !imap_arg_get_atom(&list[i+1], &value))
			continue;
		if (strcasecmp(key, "HIGHESTMODSEQ") == 0) {
			if (str_to_uint64(value, &num64) == 0)
				status->highest_modseq = num64;
			continue;
		}
		if (str_to_uint32(value, &num) < 0)
			continue;
		if (strcasecmp(key, "MESSAGES") == 0)
			status->messages = num;
		else if (strcasecmp(key, "UIDNEXT") == 0)
			status->uidnext = num;
		else if (strcasecmp(key, "UIDVALIDITY") == 0)
			status->uidvalidity = num;
	}
}

static bool conn_status_complete(const struct mailbox_status *status)
{
	return status->uidvalidity != 0 && status->uidnext != 0;
}

/* "* STATUS name (MESSAGES n UIDNEXT n ...)": the folder asked for by that
   name gets the values; a reply for a name nobody asked for is ignored */
static void
conn_untagged_status(struct migrate_source_conn *conn,
		     const struct imapc_untagged_reply *reply)
{
	struct migrate_source_status *item = NULL;
	struct conn_listed *listed;
	const struct imap_arg *list;
	const char *name;
	unsigned int i, count;

	if (!imap_arg_get_astring(&reply->args[0], &name) ||
	    !imap_arg_get_list_full(&reply->args[1], &list, &count))
		return;
	name = conn_name_utf8(name);
	if (conn->status_items == NULL) {
		/* the listing's, asked for at our login */
		listed = conn_ahead_find(conn, name);
		if (listed != NULL) {
			conn_status_parse(list, count, &listed->status);
			listed->has_status =
				conn_status_complete(&listed->status);
		}
		return;
	}
	for (i = 0; i < conn->status_count; i++) {
		if (strcmp(conn->status_items[i].mailbox, name) == 0) {
			item = &conn->status_items[i];
			break;
		}
	}
	if (item == NULL)
		return;
	conn_status_parse(list, count, &item->status);
	item->found = conn_status_complete(&item->status);
}

/* The temporary file the client spooled the literal arg (list's idx'th
   item) to, -1 when it is in memory.  (lib-imap-client 2.3.19 never
   spools a FETCH reply's literal: its check for a BODY[] literal looks one
   item past the list's end.  Its bodies arrive in memory, which is why
   large messages are read in pieces.) */
static int
conn_literal_fd(const struct imapc_untagged_reply *reply,
		const struct imap_arg *list, unsigned int idx)
{
	unsigned int i;

	for (i = 0; i < reply->file_args_count; i++) {
		if (reply->file_args[i].parent_arg == list - 1 &&
		    reply->file_args[i].list_idx == idx)
			return reply->file_args[i].fd;
	}
	return reply->file_args_count == 1 ? reply->file_args[0].fd : -1;
}

static bool
conn_literal_read(const struct imap_arg *arg,
		  const struct imapc_untagged_reply *reply,
		  const struct imap_arg *list, unsigned int idx,
		  uoff_t max_size, buffer_t *dest)
{
	unsigned char buf[IO_BLOCK_SIZE];
	const char *data;
	uoff_t size, done = 0;
	ssize_t ret;
	int fd;

	if (arg->type != IMAP_ARG_LITERAL_SIZE) {
		if (!imap_arg_get_nstring(arg, &data))
			return FALSE;
		if (data == NULL || arg->str_len > max_size)
			return FALSE;
		buffer_append(dest, data, arg->str_len);
		return TRUE;
	}
	if (!imap_arg_get_literal_size(arg, &size) || size > max_size)
		return FALSE;
	fd = conn_literal_fd(reply, list, idx);
	if (fd == -1 || lseek(fd, 0, SEEK_SET) < 0)
		return FALSE;
	while (done < size) {
		ret = read(fd, buf, I_MIN(sizeof(buf), size - done));
		if (ret <= 0)
			return FALSE;
		buffer_append(dest, buf, ret);
		done += ret;
	}
	return TRUE;
}

static bool conn_chunk_has_body(struct conn_chunk *chunk, uint32_t uid)
{
	const struct conn_body *body;

	array_foreach(&chunk->bodies, body) {
		if (body->uid == uid)
			return TRUE;
	}
	return FALSE;
}

/* The body at list[idx] copied into body.  FALSE when it is larger than
   the chunk may keep, or unreadable. */
static bool
conn_chunk_body_read(struct conn_chunk *chunk,
		     const struct imapc_untagged_reply *reply,
		     const struct imap_arg *list, unsigned int idx,
		     struct conn_body *body)
{
	const struct imap_arg *arg = &list[idx];
	uoff_t max_size;

	max_size = I_MIN(chunk->max_size, chunk->max_bytes - chunk->bytes);
	/* the body's own size (and its NUL): one allocation, not a doubling
	   copy per power of two */
	body->data = buffer_create_dynamic(default_pool,
		arg->type == IMAP_ARG_LITERAL_SIZE ||
		arg->str_len > max_size ? 4096 : arg->str_len + 1);
	if (!conn_literal_read(arg, reply, list, idx, max_size, body->data)) {
		buffer_free(&body->data);
		return FALSE;
	}
	chunk->bytes += body->data->used;
	return TRUE;
}

/* A FETCH reply with the whole BODY[] of a message of a chunk being
   received: kept.  Returns FALSE when it is not one. */
static bool
conn_chunk_body(struct migrate_source_conn *conn,
		const struct imapc_untagged_reply *reply,
		const struct imap_arg *list, unsigned int count, uint32_t uid)
{
	struct conn_chunk *chunk = NULL, *const *chunkp;
	struct conn_body body;
	const char *key, *date;
	unsigned int i, body_idx = 0;
	int tz;

	/* the server may interleave the replies of pipelined FETCHes (and
	   ends one folder's before it selects the next) */
	array_foreach(&conn->chunks, chunkp) {
		if (!(*chunkp)->done &&
		    seq_range_exists(&(*chunkp)->uids, uid)) {
			chunk = *chunkp;
			break;
		}
	}
	if (chunk == NULL)
		return FALSE;
	i_zero(&body);
	body.uid = uid;
	body.received = (time_t)-1;
	for (i = 0; i + 1 < count; i += 2) {
		if (!imap_arg_get_atom(&list[i], &key))
			continue;
		if (strcasecmp(key, "INTERNALDATE") == 0) {
			if (!imap_arg_get_astring(&list[i+1], &date) ||
			    !imap_parse_datetime(date, &body.received, &tz))
				body.received = (time_t)-1;
		} else if (strcasecmp(key, "BODY[]") == 0)
			body_idx = i + 1;
	}
	if (body_idx == 0)
		return FALSE;
	if (chunk->finished || body.received == (time_t)-1 ||
	    conn_chunk_has_body(chunk, uid))
		return TRUE;
	if (!conn_chunk_body_read(chunk, reply, list, body_idx, &body)) {
		/* the storage is asked for it, and says what is wrong */
		return TRUE;
	}
	array_push_back(&chunk->bodies, &body);
	if (conn->awaited_uid == uid)
		imapc_client_stop(conn->client);
	return TRUE;
}

static const char *const conn_no_keywords[] = { NULL };

/* The flags of a FETCH reply's FLAGS list, into the listing. */
static void
conn_sizes_flags(struct conn_sizes *sizes, uint32_t uid,
		 const struct imap_arg *arg)
{
	struct migrate_source_flags *item;
	const struct imap_arg *list;
	ARRAY_TYPE(const_string) keywords;
	const char *atom;

	if (!imap_arg_get_list(arg, &list))
		return;
	item = array_append_space(&sizes->listing.flags);
	item->uid = uid;
	t_array_init(&keywords, 4);
	for (; list->type != IMAP_ARG_EOL; list++) {
		if (!imap_arg_get_atom(list, &atom))
			continue;
		if (atom[0] == '\\') {
			item->flags |= imap_parse_system_flag(atom) &
				MAIL_FLAGS_NONRECENT;
		} else {
			atom = p_strdup(sizes->pool, atom);
			array_push_back(&keywords, &atom);
		}
	}
	if (array_count(&keywords) == 0) {
		/* most messages: nothing allocated per message but the
		   item (a folder's listing is held whole) */
		item->keywords = conn_no_keywords;
		return;
	}
	array_append_zero(&keywords);
	item->keywords = p_memdup(sizes->pool, array_front(&keywords),
				  sizeof(const char *) *
				  array_count(&keywords));
}

/* The listing the replies now coming are for: the oldest not done whose
   folder is selected by now */
static struct conn_sizes *conn_sizes_receiving(struct migrate_source_conn *conn)
{
	struct conn_sizes *sizes;

	array_foreach_elem(&conn->listings, sizes) {
		if (!sizes->done)
			return conn->examines_done >= sizes->examine_serial ?
				sizes : NULL;
	}
	return NULL;
}

/* A FETCH reply without a body while a folder is listed: its size (from
   the listing's first UID on) and flags kept.  Returns FALSE when it is
   not one. */
static bool
conn_sizes_reply(struct migrate_source_conn *conn, const struct imap_arg *list,
		 unsigned int count, uint32_t uid)
{
	struct conn_sizes *sizes = conn_sizes_receiving(conn);
	struct migrate_source_size *size;
	const struct imap_arg *flags = NULL;
	const char *key;
	unsigned int i;
	uoff_t value;
	bool have_size = FALSE;

	if (sizes == NULL)
		return FALSE;
	for (i = 0; i + 1 < count; i += 2) {
		if (!imap_arg_get_atom(&list[i], &key))
			continue;
		if (strncasecmp(key, "BODY[", 5) == 0)
			return FALSE;
		if (strcasecmp(key, "RFC822.SIZE") == 0 &&
		    str_to_uoff(imap_arg_as_astring(&list[i+1]), &value) == 0)
			have_size = TRUE;
		else if (strcasecmp(key, "FLAGS") == 0)
			flags = &list[i+1];
	}
	if (!have_size && flags == NULL)
		return FALSE;
	if (have_size && uid < sizes->listing.first_uid) {
		/* "n:*" gives the last message even when it is below n:
		   not a change */
		return TRUE;
	}
	if (have_size) {
		size = array_append_space(&sizes->listing.sizes);
		size->uid = uid;
		size->size = value;
	}
	if (flags != NULL) T_BEGIN {
		conn_sizes_flags(sizes, uid, flags);
	} T_END;
	return TRUE;
}

/* An ESEARCH reply while a folder is listed: the UIDs it has below the
   listing's first UID. */
static void
conn_sizes_esearch(struct migrate_source_conn *conn,
		   const struct imapc_untagged_reply *reply)
{
	struct conn_sizes *sizes = conn_sizes_receiving(conn);
	const struct imap_arg *arg;
	const char *atom, *set;

	if (sizes == NULL || !sizes->listing.changes)
		return;
	sizes->got_esearch = TRUE;
	for (arg = reply->args; arg->type != IMAP_ARG_EOL; arg++) {
		if (!imap_arg_get_atom(arg, &atom) ||
		    strcasecmp(atom, "ALL") != 0 ||
		    !imap_arg_get_atom(&arg[1], &set))
			continue;
		if (imap_seq_set_parse(set, &sizes->listing.present) < 0)
			sizes->failed = TRUE;
		break;
	}
}

/* The large message a FETCH reply for uid is for: the oldest asked for
   that still waits for pieces (replies come in the order of the
   commands; a folder's end before the next folder's EXAMINE). */
static struct conn_large *
conn_large_replying(struct migrate_source_conn *conn, uint32_t uid)
{
	struct conn_large *large;

	array_foreach_elem(&conn->larges, large) {
		if (large->uid == uid && large->pieces_pending > 0)
			return large;
	}
	return NULL;
}

/* A FETCH reply for a large message: its INTERNALDATE and
   pieces. */
static void
conn_untagged_pieces(struct conn_large *large,
		     const struct imapc_untagged_reply *reply,
		     const struct imap_arg *list, unsigned int count)
{
	const char *key, *date, *p;
	unsigned int i;
	uoff_t offset;
	int tz;

	for (i = 0; i + 1 < count; i += 2) {
		if (!imap_arg_get_atom(&list[i], &key))
			continue;
		if (strcasecmp(key, "INTERNALDATE") == 0) {
			if (!imap_arg_get_astring(&list[i+1], &date) ||
			    !imap_parse_datetime(date, &large->received, &tz))
				large->received = (time_t)-1;
			continue;
		}
		if (strncasecmp(key, "BODY[]<", 7) != 0)
			continue;
		p = strchr(key + 7, '>');
		if (p == NULL || str_to_uoff(t_strdup_until(key + 7, p),
					     &offset) < 0) {
			large_set_error(large, t_strdup_printf(
				"Invalid FETCH item %s", key));
			return;
		}
		large->got_piece = TRUE;
		if (large->eof || large->oversized) {
			/* pieces sent past the end in the same window */
			continue;
		}
		conn_piece(large, &list[i+1], reply, offset);
	}
}

static void
conn_untagged(const struct imapc_untagged_reply *reply, void *context)
{
	struct migrate_source_conn *conn = context;
	const struct imap_arg *list;
	struct conn_large *large;
	const char *key;
	unsigned int i, count;
	uint32_t uid = 0;

	if (strcasecmp(reply->name, "LIST") == 0 &&
	    imap_arg_get_list(&reply->args[0], &list) &&
	    reply->args[1].type != IMAP_ARG_EOL &&
	    reply->args[2].type != IMAP_ARG_EOL) {
		conn_untagged_list(conn, reply);
		return;
	}

	if (strcasecmp(reply->name, "STATUS") == 0 &&
	    (conn->status_items != NULL || conn_ahead_listing(conn))) {
		conn_untagged_status(conn, reply);
		return;
	}

	/* after a failed EXAMINE: maybe another folder's */
	if (conn->poisoned)
		return;
	if (reply->resp_text_key != NULL &&
	    strcasecmp(reply->resp_text_key, "UIDVALIDITY") == 0) {
		if (str_to_uint32(reply->resp_text_value,
				  &conn->uidvalidity) < 0)
			conn->uidvalidity = 0;
		return;
	}

	if (strcasecmp(reply->name, "ESEARCH") == 0) {
		conn_sizes_esearch(conn, reply);
		return;
	}
	if (strcasecmp(reply->name, "SEARCH") == 0 &&
	    conn->search_uids != NULL) {
		const struct imap_arg *arg;
		const char *atom;

		for (arg = reply->args; arg->type != IMAP_ARG_EOL; arg++) {
			if (imap_arg_get_atom(arg, &atom) &&
			    str_to_uint32(atom, &uid) == 0 && uid != 0)
				seq_range_array_add(conn->search_uids, uid);
		}
		return;
	}

	if (strcasecmp(reply->name, "FETCH") != 0 ||
	    (array_count(&conn->larges) == 0 && conn->size_uid == 0 &&
	     array_count(&conn->listings) == 0 &&
	     array_count(&conn->chunks) == 0) ||
	    !imap_arg_get_list_full(reply->args, &list, &count))
		return;
	for (i = 0; i + 1 < count; i += 2) {
		if (imap_arg_get_atom(&list[i], &key) &&
		    strcasecmp(key, "UID") == 0) {
			if (str_to_uint32(imap_arg_as_astring(&list[i+1]),
					  &uid) < 0)
				uid = 0;
		}
	}
	if (uid != 0 && uid == conn->size_uid) {
		for (i = 0; i + 1 < count; i += 2) {
			if (imap_arg_get_atom(&list[i], &key) &&
			    strcasecmp(key, "RFC822.SIZE") == 0 &&
			    str_to_uoff(imap_arg_as_astring(&list[i+1]),
					&conn->size) == 0)
				conn->got_size = TRUE;
		}
		return;
	}
	if (uid != 0 && conn_sizes_reply(conn, list, count, uid))
		return;
	if (uid != 0 && conn_chunk_body(conn, reply, list, count, uid))
		return;
	if (uid != 0 && (large = conn_large_replying(conn, uid)) != NULL &&
	    !large->dropped)
		conn_untagged_pieces(large, reply, list, count);
}

/* Every command's reply: a connection lost (or dropped after a BAD) has
   nothing selected, and a new one logs in again. */
static void
conn_reply_seen(struct migrate_source_conn *conn,
		const struct imapc_command_reply *reply)
{
	if (reply->state == IMAPC_COMMAND_STATE_DISCONNECTED ||
	    reply->state == IMAPC_COMMAND_STATE_BAD) {
		conn->logged_in = FALSE;
		i_free(conn->selected);
	}
}

static void
conn_reply_check(struct migrate_source_conn *conn,
		 const struct imapc_command_reply *reply)
{
	if (reply->state != IMAPC_COMMAND_STATE_OK) {
		conn_set_error(conn, t_strdup_printf("%s: %s",
			imapc_command_state_names[reply->state],
			reply->text_full));
	}
}

static void
large_reply_check(struct conn_large *large,
		  const struct imapc_command_reply *reply)
{
	if (reply->state == IMAPC_COMMAND_STATE_NO &&
	    null_strcmp(reply->resp_text_key, "EXPUNGEISSUED") == 0) {
		/* expunged by another session meanwhile */
		large->expunged = TRUE;
		large_set_error(large, reply->text_full);
	} else if (reply->state == IMAPC_COMMAND_STATE_NO) {
		/* the server will not give this message (an expunged one
		   gives an OK without it) */
		large->refused = TRUE;
		large_set_error(large, reply->text_full);
	} else if (reply->state != IMAPC_COMMAND_STATE_OK) {
		large_set_error(large, t_strdup_printf("%s: %s",
			imapc_command_state_names[reply->state],
			reply->text_full));
	}
}

static void
conn_cmd_callback(const struct imapc_command_reply *reply, void *context)
{
	struct migrate_source_conn *conn = context;

	i_assert(conn->pending > 0);
	conn_reply_seen(conn, reply);
	conn_reply_check(conn, reply);
	if (--conn->pending == 0)
		imapc_client_stop(conn->client);
}

static void conn_large_free(struct conn_large **_large)
{
	struct conn_large *large = *_large;

	*_large = NULL;
	array_free(&large->got_pieces);
	i_close_fd(&large->fd);
	i_free(large->mailbox);
	i_free(large->error);
	i_free(large);
}

/* Those taken or abandoned whose pieces are all answered go. */
static void conn_larges_prune(struct migrate_source_conn *conn)
{
	struct conn_large *large;
	unsigned int i;

	for (i = 0; i < array_count(&conn->larges); ) {
		large = array_idx_elem(&conn->larges, i);
		if (large->dropped && large->pieces_pending == 0) {
			array_delete(&conn->larges, i, 1);
			conn_large_free(&large);
		} else {
			i++;
		}
	}
}

/* The message is read to its end or failed, or its window is answered:
   whoever waits for it goes on. */
static void conn_pieces_stop(struct conn_large *large)
{
	if (large->conn->awaited_large == large &&
	    (large->eof || large->failed || large->pieces_pending == 0))
		imapc_client_stop(large->conn->client);
}

static void
conn_piece_callback(const struct imapc_command_reply *reply, void *context)
{
	struct conn_large *large = context;
	struct migrate_source_conn *conn = large->conn;

	i_assert(conn->pending > 0);
	conn_reply_seen(conn, reply);
	i_assert(large->pieces_pending > 0);
	large->pieces_pending--;
	if (!large->dropped) {
		large_reply_check(large, reply);
		if (conn->poisoned && !large->eof)
			large_set_error(large, "an EXAMINE before it failed");
		conn_pieces_stop(large);
	} else if (large->pieces_pending == 0) {
		/* past the end of a message already read, or abandoned */
		conn_larges_prune(conn);
	}
	if (--conn->pending == 0)
		imapc_client_stop(conn->client);
}

/* An EXAMINE failed: what is outstanding fails (an empty listing would
   say the folder has no messages, a large message without pieces that
   it is gone; a chunk's missing bodies are asked for again as any). */
static void conn_poison(struct migrate_source_conn *conn, const char *error)
{
	struct conn_sizes *sizes;
	struct conn_large *large;
	struct conn_chunk *chunk;

	conn->poisoned = TRUE;
	array_foreach_elem(&conn->listings, sizes) {
		if (!sizes->done)
			sizes->failed = TRUE;
	}
	array_foreach_elem(&conn->larges, large) {
		if (!large->eof && !large->dropped)
			large_set_error(large, error);
	}
	array_foreach_elem(&conn->chunks, chunk) {
		if (!chunk->done && !chunk->failed) {
			chunk->failed = TRUE;
			i_free(conn->chunk_error);
			conn->chunk_error = i_strdup(error);
		}
	}
}

static void
conn_examine_callback(const struct imapc_command_reply *reply, void *context)
{
	struct migrate_source_conn *conn = context;

	conn->examines_done++;
	if (reply->state == IMAPC_COMMAND_STATE_NO ||
	    reply->state == IMAPC_COMMAND_STATE_BAD) {
		/* EXAMINEd again when next used */
		i_free(conn->selected);
		T_BEGIN {
			conn_poison(conn, t_strdup_printf("EXAMINE failed: %s",
							  reply->text_full));
		} T_END;
	}
	conn_cmd_callback(reply, context);
}

static void conn_ioloop_changed(struct migrate_source_conn *conn)
{
	struct imapc_client_connection *cconn;

	array_foreach_elem(&conn->client->conns, cconn)
		imapc_connection_ioloop_changed(cconn->conn);
}

static void conns_early_ioloop_switched(struct ioloop *prev_ioloop ATTR_UNUSED)
{
	struct migrate_source_conn *conn;

	array_foreach_elem(&conns_early, conn)
		conn_ioloop_changed(conn);
}

/* The connection is ours from now on: it stays in the ioloop that is
   current (the engine's, outside any client's run) until a run of its
   own client moves it */
static void conn_claim(struct migrate_source_conn *conn)
{
	struct migrate_source_conn *const *connp;

	if (!conn->early)
		return;
	conn->early = FALSE;
	array_foreach(&conns_early, connp) {
		if (*connp == conn) {
			array_delete(&conns_early,
				     array_foreach_idx(&conns_early, connp), 1);
			break;
		}
	}
	if (array_count(&conns_early) == 0) {
		io_loop_remove_switch_callback(conns_early_ioloop_switched);
		array_free(&conns_early);
	}
	conn_ioloop_changed(conn);
}

/* Send cmd_str; its callback is called with context, and is counted in
   conn->pending */
static void
conn_cmd_send(struct migrate_source_conn *conn,
	      imapc_command_callback_t *callback, void *context,
	      const char *cmd_str)
{
	struct imapc_command *cmd;

	conn_claim(conn);
	/* nothing outstanding: what comes now is for what is sent now */
	if (conn->pending == 0)
		conn->poisoned = FALSE;
	conn->pending++;
	cmd = imapc_client_cmd(conn->client, callback, context);
	imapc_command_send(cmd, cmd_str);
}

/* Run until a callback stops the client.  After our login was refused,
   what was asked since fails instead, as the refused login failed what
   waited for it: a run would have lib-imap-client connect and log in
   again, and a refused login is never retried. */
static void conn_client_run(struct migrate_source_conn *conn)
{
	struct imapc_client_connection *cconn;

	if (conn->login_error == NULL) {
		imapc_client_run(conn->client);
		return;
	}
	array_foreach_elem(&conn->client->conns, cconn)
		imapc_connection_abort_commands(cconn->conn, NULL, FALSE);
}

/* The capabilities, once logged in (waits for the login); -1 after our
   login was refused (a run would log in again) */
static int
conn_get_capabilities(struct migrate_source_conn *conn,
		      enum imapc_capability *caps_r)
{
	conn_claim(conn);
	if (conn->login_error != NULL)
		return -1;
	return imapc_client_get_capabilities(conn->client, caps_r);
}

static void
conn_send_full(struct migrate_source_conn *conn, const char *cmd_str,
	       imapc_command_callback_t *callback)
{
	conn_cmd_send(conn, callback, conn, cmd_str);
}

static void
conn_send(struct migrate_source_conn *conn, const char *cmd_str)
{
	conn_send_full(conn, cmd_str, conn_cmd_callback);
}

static void conn_run(struct migrate_source_conn *conn)
{
	if (conn->pending > 0)
		conn_client_run(conn);
}

static void
conn_state_changed(void *context, enum imapc_state_change_event event,
		   const char *error)
{
	struct migrate_source_conn *conn = context;

	conn->logged_in = event == IMAPC_STATE_CHANGE_AUTH_OK;
	/* a new connection's socket */
	migrate_source_guard_sockets_changed(conn->guard);
	if (event == IMAPC_STATE_CHANGE_AUTH_FAILED && conn->login_error == NULL)
		conn->login_error = i_strdup(error);
}

struct migrate_source_conn *
migrate_source_conn_init(const struct migrate_settings *set,
			 const char *password, struct mail_user *ssl_user, const char *dns_base_dir,
		     struct migrate_source_guard *guard,
		     struct event *event_parent)
{
	struct migrate_source_conn *conn;
	struct imapc_client_settings cset;
	string_t *temp_prefix;

	conn = i_new(struct migrate_source_conn, 1);
	i_array_init(&conn->chunks, 4);
	i_array_init(&conn->larges, 4);
	i_array_init(&conn->listings, 2);
	conn->guard = guard;
	conn->max_folders = set->max_folders;
	conn->event = event_create(event_parent);
	temp_prefix = t_str_new(128);
	mail_user_set_get_temp_prefix(temp_prefix, ssl_user->set);
	conn->temp_prefix = i_strdup(str_c(temp_prefix));

	i_zero(&cset);
	/* with a resolver, the host name is verified and resolved by it */
	cset.host = set->source_ssl_hostname != NULL && dns_base_dir != NULL ?
		set->source_ssl_hostname : set->source_host;
	cset.port = set->source_port;
	cset.username = set->source_user;
	cset.master_user = set->source_master_user == NULL ? "" :
		set->source_master_user;
	cset.password = password;
	cset.sasl_mechanisms = migrate_source_auth_mechanism(set->source_auth);
	cset.max_idle_time = IMAPC_DEFAULT_MAX_IDLE_TIME;
	/* no ID command: imapc sends it before the login, which some
	   servers (mailutils' imap4d) refuse although they offer ID */
	cset.session_id_prefix = NULL;
	cset.dns_client_socket_path = dns_base_dir == NULL ? "" :
		t_strconcat(dns_base_dir, "/dns-client", NULL);
	cset.temp_path_prefix = conn->temp_prefix;
	mail_user_init_ssl_client_settings(ssl_user, &cset.ssl_set);
	if (!set->source_ssl_verify)
		cset.ssl_set.allow_invalid_cert = TRUE;
	switch (set->source_ssl) {
	case MIGRATE_SSL_NO:
		cset.ssl_mode = IMAPC_CLIENT_SSL_MODE_NONE;
		break;
	case MIGRATE_SSL_IMAPS:
		cset.ssl_mode = IMAPC_CLIENT_SSL_MODE_IMMEDIATE;
		break;
	case MIGRATE_SSL_STARTTLS:
		cset.ssl_mode = IMAPC_CLIENT_SSL_MODE_STARTTLS;
		break;
	}
	/* never a rawlog: it would contain the password */
	cset.rawlog_dir = "";
	cset.connect_timeout_msecs = IMAPC_DEFAULT_CONNECT_TIMEOUT_MSECS;
	cset.connect_retry_count = 0;
	cset.cmd_timeout_msecs = set->source_timeout_secs * 1000;
	/* a reply's line (not its literals) is held in memory whole */
	cset.max_line_length = set->source_max_line_length;

	conn->client = imapc_client_init(&cset, conn->event);
	imapc_client_register_untagged(conn->client, conn_untagged,
				       conn);
	imapc_client_register_state_change_callback(conn->client,
						    conn_state_changed, conn);
	return conn;
}

static void
conn_logout_callback(const struct imapc_command_reply *reply ATTR_UNUSED,
		     void *context)
{
	struct migrate_source_conn *conn = context;

	i_assert(conn->pending > 0);
	if (--conn->pending == 0)
		imapc_client_stop(conn->client);
}

void migrate_source_conn_logout(struct migrate_source_conn *conn)
{
	struct imapc_command *cmd;

	conn_claim(conn);
	if (conn->logout_sent)
		return;
	conn->logout_sent = TRUE;
	/* what was asked for ahead and not taken is answered first: the
	   client never sends its LOGOUT while a mailbox it closed is still
	   being selected */
	conn_run(conn);
	if (!conn->logged_in) {
		/* not logged in, or lost: the client logs out what is left
		   (a new command would connect again) */
		return;
	}
	/* not waited for here: its reply comes while the storage logs out */
	conn->logout_sent_async = TRUE;
	cmd = imapc_client_cmd(conn->client, conn_logout_callback, conn);
	imapc_command_set_flags(cmd, IMAPC_COMMAND_FLAG_PRELOGIN |
				IMAPC_COMMAND_FLAG_LOGOUT);
	conn->pending++;
	imapc_command_send(cmd, "LOGOUT");
}

void migrate_source_conn_deinit(struct migrate_source_conn **_conn)
{
	struct migrate_source_conn *conn = *_conn;
	struct conn_chunk **chunkp;
	struct conn_large **largep;
	struct conn_sizes **sizesp;

	*_conn = NULL;
	migrate_source_conn_logout(conn);
	if (conn->logout_sent_async || !conn->logged_in) {
		/* the server has our LOGOUT (answered while the storage
		   logged out): close without reading the reply, which
		   lib-imap-client would log as an unexpected disconnection.
		   Never logged in (opened ahead and never used, or lost):
		   nothing to log out of */
		imapc_client_disconnect(conn->client);
	} else {
		imapc_client_logout(conn->client);
	}
	imapc_client_deinit(&conn->client);
	array_foreach_modifiable(&conn->chunks, chunkp)
		conn_chunk_free(chunkp);
	array_free(&conn->chunks);
	array_foreach_modifiable(&conn->larges, largep)
		conn_large_free(largep);
	array_free(&conn->larges);
	event_unref(&conn->event);
	i_free(conn->temp_prefix);
	i_free(conn->selected);
	i_free(conn->chunk_error);
	array_foreach_modifiable(&conn->listings, sizesp)
		conn_sizes_free(sizesp);
	array_free(&conn->listings);
	conn_ahead_free(&conn->ahead);
	i_free(conn->error);
	i_free(conn->login_error);
	i_free(conn);
}

static void conn_larges_drop(struct migrate_source_conn *conn,
			     const char *keep_mailbox);
static int
conn_select_async(struct migrate_source_conn *conn, const char *mailbox,
		  const char **error_r);

static int
conn_select(struct migrate_source_conn *conn, const char *mailbox,
	       const char **error_r)
{
	conn_larges_drop(conn, NULL);
	if (conn->selected != NULL &&
	    strcmp(conn->selected, mailbox) == 0)
		return 0;
	conn->failed = FALSE;
	i_free(conn->error);
	if (conn_select_async(conn, mailbox, error_r) < 0)
		return -1;
	conn_run(conn);
	if (conn->failed) {
		i_free(conn->selected);
		*error_r = t_strdup_printf("EXAMINE %s failed: %s", mailbox,
					   conn->error);
		return -1;
	}
	return 0;
}

/* EXAMINE mailbox, unless it is selected (or being selected) already,
   without waiting: the commands after it wait for it in the client, and
   its failure fails them. */
static int
conn_select_async(struct migrate_source_conn *conn, const char *mailbox,
		  const char **error_r)
{
	string_t *name, *cmd;

	if (conn->selected != NULL &&
	    strcmp(conn->selected, mailbox) == 0)
		return 0;
	i_free(conn->selected);
	name = t_str_new(128);
	if (imap_utf8_to_utf7(mailbox, name) < 0) {
		*error_r = t_strdup_printf("Invalid mailbox name %s", mailbox);
		return -1;
	}
	cmd = t_str_new(128);
	str_append(cmd, "EXAMINE ");
	imap_append_quoted(cmd, str_c(name));
	conn->uidvalidity = 0;
	conn->examines_sent++;
	/* not a SELECT to the client, which would wait for its reply before
	   it sends anything else: it is pipelined with the commands around
	   it.  Should it fail, the server answers what follows with BAD (no
	   mailbox selected) and the client drops the connection: those
	   commands fail, and the storage takes over.  A server that answers
	   them from the folder selected before gets its replies dropped
	   (poisoned). */
	conn_send_full(conn, str_c(cmd), conn_examine_callback);
	conn->selected = i_strdup(mailbox);
	return 0;
}

/* Send the next window of pieces of large. */
static void conn_fetch_window(struct conn_large *large)
{
	struct migrate_source_conn *conn = large->conn;
	const char *error;
	unsigned int i;

	/* the next folders may have been selected since the last window
	   (their listings are asked for ahead): a UID is only this
	   message's in its own folder */
	if (conn_select_async(conn, large->mailbox, &error) < 0) {
		large_set_error(large, error);
		return;
	}
	/* a few pieces in flight: the round trip is paid once per window,
	   memory is a piece (each is written to the file as it comes) */
	migrate_source_guard_nodelay(conn->guard);
	for (i = 0; i < MIGRATE_SOURCE_PIECES_IN_FLIGHT &&
		    (i == 0 || large->next_offset < large->size_hint); i++) {
		/* the first piece with the INTERNALDATE: the storage is not
		   asked for it */
		large->pieces_pending++;
		conn_cmd_send(conn, conn_piece_callback, large, t_strdup_printf(
			"UID FETCH %u (%sBODY.PEEK[]<%"PRIuUOFF_T".%u>)",
			large->uid,
			large->next_offset == 0 ? "INTERNALDATE " : "",
			large->next_offset, MIGRATE_SOURCE_PIECE_SIZE));
		large->next_offset += MIGRATE_SOURCE_PIECE_SIZE;
	}
}

/* Forget a large message: what still comes for it is dropped. */
static void conn_large_drop(struct conn_large *large)
{
	large->dropped = TRUE;
	i_close_fd(&large->fd);
}

/* Forget the large messages asked for (but those of keep_mailbox). */
static void
conn_larges_drop(struct migrate_source_conn *conn, const char *keep_mailbox)
{
	struct conn_large *large;

	array_foreach_elem(&conn->larges, large) {
		if (keep_mailbox == NULL ||
		    strcmp(large->mailbox, keep_mailbox) != 0)
			conn_large_drop(large);
	}
	conn_larges_prune(conn);
}

/* The large message uid of mailbox asked for and not yet taken */
static struct conn_large *
conn_large_find(struct migrate_source_conn *conn, const char *mailbox,
		uint32_t uid)
{
	struct conn_large *large;

	array_foreach_elem(&conn->larges, large) {
		if (!large->dropped && large->uid == uid &&
		    strcmp(large->mailbox, mailbox) == 0)
			return large;
	}
	return NULL;
}

/* Start reading uid of mailbox into a new temp file: its first window of
   pieces is sent, nothing is waited for. */
static struct conn_large *
conn_fetch_start(struct migrate_source_conn *conn, const char *mailbox,
		 uint32_t uid, uoff_t size, const char **error_r)
{
	struct conn_large *large;
	string_t *path;
	int fd;

	/* one folder's at a time: a reply is told from another by its UID */
	conn_larges_drop(conn, mailbox);
	if (conn_select_async(conn, mailbox, error_r) < 0)
		return NULL;

	path = t_str_new(128);
	str_append(path, conn->temp_prefix);
	fd = safe_mkstemp_hostpid(path, 0600, (uid_t)-1, (gid_t)-1);
	if (fd == -1) {
		*error_r = t_strdup_printf("safe_mkstemp(%s) failed: %m",
					   str_c(path));
		return NULL;
	}
	/* nobody else ever sees the file */
	i_unlink(str_c(path));

	large = i_new(struct conn_large, 1);
	large->conn = conn;
	large->mailbox = i_strdup(mailbox);
	large->uid = uid;
	large->fd = fd;
	large->size_hint = size;
	i_array_init(&large->got_pieces, 4);
	large->received = (time_t)-1;
	/* RFC822.SIZE is only a hint (some servers get it wrong): read until
	   a piece comes back short, but not for ever */
	large->end = 2 * size + MIGRATE_SOURCE_PIECE_SIZE;
	array_push_back(&conn->larges, &large);
	conn_fetch_window(large);
	return large;
}

void migrate_source_conn_prefetch(struct migrate_source_conn *conn,
				  const char *mailbox, uint32_t uid,
				  uoff_t size)
{
	struct conn_large *large;
	unsigned int count = 0;
	const char *error;

	if ((large = conn_large_find(conn, mailbox, uid)) != NULL) {
		if (!large->failed)
			return;
		/* asked for ahead of its folder's turn, and lost with our
		   connection: asked for again */
		conn_large_drop(large);
		conn_larges_prune(conn);
	}
	array_foreach_elem(&conn->larges, large) {
		if (!large->dropped) {
			if (strcmp(large->mailbox, mailbox) != 0) {
				/* another folder's are still read */
				return;
			}
			count++;
		}
	}
	if (count >= MIGRATE_SOURCE_LARGE_AHEAD)
		return;
	/* a failure is seen when it is read */
	(void)conn_fetch_start(conn, mailbox, uid, size, &error);
}

int migrate_source_conn_fetch(struct migrate_source_conn *conn,
			  const char *mailbox, uint32_t uid, uoff_t size,
			  struct istream **input_r, time_t *received_r,
			  bool *expunged_r, bool *refused_r,
			  const char **error_r)
{
	struct conn_large *large, *earlier;

	*expunged_r = FALSE;
	*refused_r = FALSE;
	/* one asked for ahead is read as it was asked for (a lost
	   connection fails it: it is not asked for again here) */
	large = conn_large_find(conn, mailbox, uid);
	if (large == NULL) {
		large = conn_fetch_start(conn, mailbox, uid, size, error_r);
		if (large == NULL)
			return -1;
	}
	/* those asked for before it are not read any more */
	array_foreach_elem(&conn->larges, earlier) {
		if (earlier == large)
			break;
		conn_large_drop(earlier);
	}
	for (;;) {
		/* until this message is read or its window answered, not
		   until the chunks and pieces asked for after it are */
		if (!large->eof && !large->failed &&
		    large->pieces_pending > 0) {
			conn->awaited_large = large;
			conn_client_run(conn);
			conn->awaited_large = NULL;
		}
		if (!large->got_piece && !large->failed &&
		    large->pieces_pending == 0) {
			/* UID FETCH of a UID that is gone answers OK with
			   nothing */
			large->expunged = TRUE;
			large_set_error(large, t_strdup_printf(
				"UID %u is gone", uid));
		}
		if (large->eof || large->failed)
			break;
		if (large->pieces_pending == 0)
			conn_fetch_window(large);
	}
	large->dropped = TRUE;
	if (large->failed) {
		/* the EXAMINE may have been what failed: again next time */
		i_free(conn->selected);
		*expunged_r = large->expunged;
		*refused_r = large->refused;
		*error_r = t_strdup(large->error);
		i_close_fd(&large->fd);
		conn_larges_prune(conn);
		return -1;
	}
	*received_r = large->received;
	*input_r = i_stream_create_fd_autoclose(&large->fd,
						MIGRATE_SOURCE_LARGE_READ_SIZE);
	i_stream_set_init_buffer_size(*input_r, MIGRATE_SOURCE_LARGE_READ_SIZE);
	i_stream_set_name(*input_r, t_strdup_printf("%s UID %u", mailbox, uid));
	conn_larges_prune(conn);
	return 0;
}

/* Run a LIST command, its names (UTF-8) into names */
static int
conn_list_cmd(struct migrate_source_conn *conn, pool_t pool,
		 ARRAY_TYPE(const_string) *names, const char *cmd_str,
		 const char **error_r)
{
	conn_larges_drop(conn, NULL);
	/* its replies are not this command's */
	if (conn_ahead_listing(conn))
		(void)conn_ahead_wait(conn);
	conn->list_pool = pool;
	conn->list_names = names;
	conn->failed = FALSE;
	i_free(conn->error);
	/* not a mailbox command: nothing needs to be selected */
	conn_cmd_send(conn, conn_cmd_callback, conn, cmd_str);
	migrate_source_guard_count_folders(conn->guard, TRUE);
	conn_run(conn);
	migrate_source_guard_count_folders(conn->guard, FALSE);
	conn->list_names = NULL;
	if (conn->failed) {
		*error_r = t_strdup_printf("%s failed: %s", cmd_str,
					   conn->error);
		return -1;
	}
	return 0;
}

int migrate_source_conn_list(struct migrate_source_conn *conn, pool_t pool,
			 ARRAY_TYPE(const_string) *names,
			 const char **error_r)
{
	return conn_list_cmd(conn, pool, names, "LIST \"\" \"*\"",
				error_r);
}

/* UID SEARCH commands of at most this many ranges each: a line length
   every server takes */
#define MIGRATE_SOURCE_SEARCH_RANGES 200

int migrate_source_conn_uids_present(struct migrate_source_conn *conn,
				 const char *mailbox,
				 const ARRAY_TYPE(seq_range) *uids,
				 ARRAY_TYPE(seq_range) *present,
				 uint32_t *uidvalidity_r,
				 const char **error_r)
{
	const struct seq_range *range;
	ARRAY_TYPE(seq_range) part;
	unsigned int i, count;
	string_t *cmd;

	/* a view of its own, as of now: EXAMINE again */
	i_free(conn->selected);
	if (conn_select(conn, mailbox, error_r) < 0)
		return -1;
	conn->search_uids = present;
	conn->failed = FALSE;
	i_free(conn->error);
	range = array_get(uids, &count);
	t_array_init(&part, MIGRATE_SOURCE_SEARCH_RANGES);
	cmd = t_str_new(1024);
	for (i = 0; i < count; i += MIGRATE_SOURCE_SEARCH_RANGES) {
		array_clear(&part);
		array_append(&part, range + i,
			     I_MIN(count - i, MIGRATE_SOURCE_SEARCH_RANGES));
		str_truncate(cmd, 0);
		str_append(cmd, "UID SEARCH UID ");
		imap_write_seq_range(cmd, &part);
		conn_send(conn, str_c(cmd));
	}
	conn_run(conn);
	conn->search_uids = NULL;
	if (conn->failed) {
		*error_r = t_strdup_printf("UID SEARCH in %s failed: %s",
					   mailbox, conn->error);
		return -1;
	}
	/* a server may answer with UIDs around the ones asked for */
	seq_range_array_intersect(present, uids);
	*uidvalidity_r = conn->uidvalidity;
	return 0;
}

int migrate_source_conn_mailbox_exists(struct migrate_source_conn *conn,
				   const char *mailbox, bool *exists_r,
				   const char **error_r)
{
	ARRAY_TYPE(const_string) names;
	const char *const *namep;
	string_t *name, *cmd;
	pool_t pool;
	int ret;

	*exists_r = FALSE;
	name = t_str_new(128);
	if (imap_utf8_to_utf7(mailbox, name) < 0) {
		*error_r = t_strdup_printf("Invalid mailbox name %s", mailbox);
		return -1;
	}
	cmd = t_str_new(128);
	str_append(cmd, "LIST \"\" ");
	imap_append_quoted(cmd, str_c(name));
	/* not the data stack: the replies are handled in frames of their
	   own */
	pool = pool_alloconly_create("migrate conn list", 1024);
	p_array_init(&names, pool, 4);
	ret = conn_list_cmd(conn, pool, &names, str_c(cmd), error_r);
	if (ret == 0) {
		/* a name with % or * in it is a pattern: the exact name only */
		array_foreach(&names, namep) {
			if (strcmp(*namep, mailbox) == 0)
				*exists_r = TRUE;
		}
	}
	pool_unref(&pool);
	return ret;
}

int migrate_source_conn_size(struct migrate_source_conn *conn, const char *mailbox,
			 uint32_t uid, uoff_t *size_r, const char **error_r)
{
	if (conn_select(conn, mailbox, error_r) < 0)
		return -1;
	conn->size_uid = uid;
	conn->got_size = FALSE;
	conn->failed = FALSE;
	i_free(conn->error);
	conn_send(conn, t_strdup_printf("UID FETCH %u (RFC822.SIZE)", uid));
	conn_run(conn);
	conn->size_uid = 0;
	if (conn->failed) {
		*error_r = t_strdup(conn->error);
		return -1;
	}
	if (!conn->got_size) {
		*error_r = t_strdup_printf("UID %u is gone", uid);
		return -1;
	}
	*size_r = conn->size;
	return 0;
}

static void
conn_ahead_callback(const struct imapc_command_reply *reply, void *context)
{
	struct migrate_source_conn *conn = context;

	conn_reply_seen(conn, reply);
	conn->ahead->done = TRUE;
	if (reply->state != IMAPC_COMMAND_STATE_OK) {
		e_debug(conn->event, "The listing with STATUS failed: %s",
			reply->text_full);
		conn->ahead->unusable = TRUE;
	}
	i_assert(conn->pending > 0);
	if (--conn->pending == 0)
		imapc_client_stop(conn->client);
}

/* Where the login's reply names LIST-STATUS (LIST-EXTENDED with it), the
   folders' STATUS and subscriptions are asked for at once, in one LIST */
static void
conn_ahead_send(struct migrate_source_conn *conn,
		const struct imapc_command_reply *reply)
{
	struct imapc_command *cmd;
	const char *const *caps;
	pool_t pool;

	if (!conn->want_ahead || conn->ahead != NULL || conn->max_folders == 0 ||
	    reply->resp_text_key == NULL ||
	    strcasecmp(reply->resp_text_key, "CAPABILITY") != 0 ||
	    reply->resp_text_value == NULL)
		return;
	caps = t_strsplit_spaces(reply->resp_text_value, " ");
	if (!str_array_icase_find(caps, "LIST-STATUS") ||
	    !str_array_icase_find(caps, "LIST-EXTENDED"))
		return;
	pool = pool_alloconly_create("migrate source listing", 2048);
	conn->ahead = i_new(struct conn_ahead, 1);
	conn->ahead->pool = pool;
	hash_table_create(&conn->ahead->folders, default_pool, 0,
			  str_hash, strcmp);
	conn->pending++;
	cmd = imapc_client_cmd(conn->client, conn_ahead_callback, conn);
	imapc_command_send(cmd, str_array_icase_find(caps, "CONDSTORE") ?
		"LIST \"\" \"*\" RETURN (SUBSCRIBED STATUS "
		"(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))" :
		"LIST \"\" \"*\" RETURN (SUBSCRIBED STATUS "
		"(MESSAGES UIDNEXT UIDVALIDITY))");
}

static void conn_ahead_free(struct conn_ahead **_ahead)
{
	struct conn_ahead *ahead = *_ahead;

	if (ahead == NULL)
		return;
	*_ahead = NULL;
	hash_table_destroy(&ahead->folders);
	pool_unref(&ahead->pool);
	i_free(ahead);
}

/* The listing asked for at our login, once answered; NULL when there is
   none to use (none asked for, or it failed or listed too many) */
static struct conn_ahead *conn_ahead_wait(struct migrate_source_conn *conn)
{
	enum imapc_capability caps;

	/* logs in: the listing is asked for then */
	if (conn_get_capabilities(conn, &caps) < 0 || conn->ahead == NULL)
		return NULL;
	if (!conn->ahead->done)
		conn_run(conn);
	if (!conn->ahead->done || conn->ahead->unusable)
		return NULL;
	return conn->ahead;
}

static void
conn_login_callback(const struct imapc_command_reply *reply, void *context)
{
	struct migrate_source_conn *conn = context;

	/* a failed login fails the commands waiting for it, which say so */
	if (reply->state == IMAPC_COMMAND_STATE_OK)
		conn_ahead_send(conn, reply);
}

bool migrate_source_conn_subscribed(struct migrate_source_conn *conn,
				    const char *const *mailboxes,
				    unsigned int count, bool *subscribed_r)
{
	struct conn_ahead *ahead = conn_ahead_wait(conn);
	const struct conn_listed *listed;
	unsigned int i;

	if (ahead == NULL)
		return FALSE;
	for (i = 0; i < count; i++) {
		listed = hash_table_lookup(ahead->folders, mailboxes[i]);
		if (listed == NULL)
			return FALSE;
		subscribed_r[i] = listed->subscribed;
	}
	return TRUE;
}

void migrate_source_conn_password_changed(struct migrate_source_conn *conn,
					  const char *password)
{
	migrate_source_imapc_password_set(conn->client, password);
}

void migrate_source_conn_connect(struct migrate_source_conn *conn)
{
	if (conn->connected)
		return;
	conn->connected = TRUE;
	imapc_client_set_login_callback(conn->client, conn_login_callback,
					conn);
	imapc_client_login(conn->client);
}

void migrate_source_conn_start(struct migrate_source_conn *conn)
{
	if (conn->started)
		return;
	conn->started = TRUE;
	/* nothing is waited for: the greeting is read and our login sent in
	   whichever ioloop runs (conns_early), while the storage lists the
	   folders */
	migrate_source_conn_connect(conn);
	if (!array_is_created(&conns_early)) {
		i_array_init(&conns_early, 2);
		io_loop_add_switch_callback(conns_early_ioloop_switched);
	}
	array_push_back(&conns_early, &conn);
	conn->early = TRUE;
	/* connected ahead: from the ioloop it waited in */
	conn_ioloop_changed(conn);
}

void migrate_source_conn_want_listing(struct migrate_source_conn *conn)
{
	conn->want_ahead = TRUE;
}

bool migrate_source_conn_started(const struct migrate_source_conn *conn)
{
	return conn->started;
}

struct conn_status_cmd {
	struct migrate_source_conn *conn;
	struct migrate_source_status *item;
};

static void
conn_status_callback(const struct imapc_command_reply *reply, void *context)
{
	struct conn_status_cmd *scmd = context;
	struct migrate_source_conn *conn = scmd->conn;

	conn_reply_seen(conn, reply);
	/* a folder STATUS refuses is looked at the slow way, which tells
	   why */
	if (reply->state != IMAPC_COMMAND_STATE_OK)
		scmd->item->found = FALSE;
	if (reply->state == IMAPC_COMMAND_STATE_DISCONNECTED)
		conn_set_error(conn, reply->text_full);
	i_assert(conn->pending > 0);
	if (--conn->pending == 0)
		imapc_client_stop(conn->client);
}

int migrate_source_conn_status(struct migrate_source_conn *conn,
			       struct migrate_source_status *items,
			       unsigned int count, const char **error_r)
{
	struct conn_ahead *ahead;
	const struct conn_listed *listed;
	unsigned int left;
	struct conn_status_cmd *scmds;
	enum imapc_capability caps;
	string_t *name, *str;
	const char *items_str;
	unsigned int i;

	conn_larges_drop(conn, NULL);
	for (i = 0; i < count; i++) {
		i_zero(&items[i].status);
		items[i].found = FALSE;
	}
	ahead = conn_ahead_wait(conn);
	if (ahead != NULL) {
		/* what the listing at our login told */
		left = 0;
		for (i = 0; i < count; i++) {
			listed = hash_table_lookup(ahead->folders,
						   items[i].mailbox);
			if (listed != NULL && listed->has_status) {
				items[i].status = listed->status;
				items[i].found = TRUE;
			} else {
				left++;
			}
		}
		if (left == 0)
			return 0;
	}
	/* logs in: HIGHESTMODSEQ only where the source has CONDSTORE */
	if (conn_get_capabilities(conn, &caps) < 0) {
		*error_r = "Not connected";
		return -1;
	}
	items_str = (caps & IMAPC_CAPABILITY_CONDSTORE) != 0 ?
		" (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)" :
		" (MESSAGES UIDNEXT UIDVALIDITY)";
	conn->status_items = items;
	conn->status_count = count;
	conn->failed = FALSE;
	i_free(conn->error);
	scmds = t_new(struct conn_status_cmd, count);
	migrate_source_guard_nodelay(conn->guard);
	name = t_str_new(128);
	str = t_str_new(256);
	/* all at once: one round trip for every folder */
	for (i = 0; i < count; i++) {
		if (items[i].found)
			continue;
		str_truncate(name, 0);
		if (imap_utf8_to_utf7(items[i].mailbox, name) < 0)
			continue;
		str_truncate(str, 0);
		str_append(str, "STATUS ");
		imap_append_quoted(str, str_c(name));
		str_append(str, items_str);
		scmds[i].conn = conn;
		scmds[i].item = &items[i];
		conn_cmd_send(conn, conn_status_callback, &scmds[i],
			      str_c(str));
	}
	conn_run(conn);
	conn->status_items = NULL;
	conn->status_count = 0;
	if (conn->failed) {
		*error_r = t_strdup_printf("STATUS failed: %s", conn->error);
		return -1;
	}
	return 0;
}

static void conn_chunk_free(struct conn_chunk **_chunk)
{
	struct conn_chunk *chunk = *_chunk;
	struct conn_body *body;

	*_chunk = NULL;
	array_foreach_modifiable(&chunk->bodies, body)
		buffer_free(&body->data);
	pool_unref(&chunk->pool);
}

/* Chunks that are done and finished by their reader go. */
static void conn_chunks_prune(struct migrate_source_conn *conn)
{
	struct conn_chunk *chunk;

	while (array_count(&conn->chunks) > 0) {
		chunk = array_idx_elem(&conn->chunks, 0);
		if (!chunk->done || !chunk->finished)
			break;
		array_pop_front(&conn->chunks);
		conn_chunk_free(&chunk);
	}
}

static void
conn_chunk_callback(const struct imapc_command_reply *reply, void *context)
{
	struct conn_chunk *chunk = context;
	struct migrate_source_conn *conn = chunk->conn;

	conn_reply_seen(conn, reply);
	chunk->done = TRUE;
	/* the messages that did not come are asked for through the storage,
	   which tells why */
	if (conn->poisoned && reply->state == IMAPC_COMMAND_STATE_OK) {
		chunk->failed = TRUE;
		if (conn->chunk_error == NULL) {
			conn->chunk_error = i_strdup(
				"an EXAMINE before it failed");
		}
	} else if (reply->state != IMAPC_COMMAND_STATE_OK) {
		chunk->failed = TRUE;
		i_free(conn->chunk_error);
		conn->chunk_error = i_strdup_printf("%s: %s",
			imapc_command_state_names[reply->state],
			reply->text_full);
	}
	i_assert(conn->pending > 0);
	if (--conn->pending == 0 || conn->awaited_chunk == chunk)
		imapc_client_stop(conn->client);
}

void migrate_source_conn_bodies_ask(struct migrate_source_conn *conn,
				    const char *mailbox,
				    const ARRAY_TYPE(seq_range) *uids,
				    uoff_t max_size)
{
	struct conn_chunk *chunk;
	const char *error;
	string_t *str;
	pool_t pool;

	pool = pool_alloconly_create("migrate conn chunk", 1024);
	chunk = p_new(pool, struct conn_chunk, 1);
	chunk->pool = pool;
	chunk->conn = conn;
	chunk->mailbox = p_strdup(pool, mailbox);
	chunk->max_size = max_size;
	/* twice what a chunk is planned to hold at most */
	chunk->max_bytes = 2 * MIGRATE_SOURCE_PREFETCH_BYTES;
	p_array_init(&chunk->uids, pool, array_count(uids));
	array_append_array(&chunk->uids, uids);
	p_array_init(&chunk->bodies, pool, seq_range_count(uids));
	array_push_back(&conn->chunks, &chunk);

	if (conn_select_async(conn, mailbox, &error) < 0) {
		chunk->done = chunk->failed = TRUE;
		return;
	}
	str = t_str_new(256);
	str_append(str, "UID FETCH ");
	imap_write_seq_range(str, uids);
	str_append(str, " (UID INTERNALDATE BODY.PEEK[])");
	migrate_source_guard_nodelay(conn->guard);
	conn_cmd_send(conn, conn_chunk_callback, chunk, str_c(str));
}

/* The chunk that has uid of mailbox, not yet finished */
static struct conn_chunk *
conn_chunk_find(struct migrate_source_conn *conn, const char *mailbox,
		uint32_t uid)
{
	struct conn_chunk *const *chunkp;

	array_foreach(&conn->chunks, chunkp) {
		if (!(*chunkp)->finished &&
		    strcmp((*chunkp)->mailbox, mailbox) == 0 &&
		    seq_range_exists(&(*chunkp)->uids, uid))
			return *chunkp;
	}
	return NULL;
}

static struct conn_body *
conn_chunk_body_find(struct conn_chunk *chunk, uint32_t uid)
{
	struct conn_body *bodies;
	unsigned int i, count;

	bodies = array_get_modifiable(&chunk->bodies, &count);
	for (i = chunk->next_idx; i < count; i++) {
		if (bodies[i].uid == uid) {
			chunk->next_idx = i + 1;
			return &bodies[i];
		}
	}
	for (i = 0; i < chunk->next_idx && i < count; i++) {
		if (bodies[i].uid == uid)
			return &bodies[i];
	}
	return NULL;
}

static void conn_body_stream_destroy(buffer_t *data)
{
	buffer_free(&data);
}

int migrate_source_conn_body(struct migrate_source_conn *conn,
			     const char *mailbox, uint32_t uid,
			     struct istream **input_r, time_t *received_r)
{
	struct conn_chunk *chunk;
	struct conn_body *body;
	buffer_t *data;

	chunk = conn_chunk_find(conn, mailbox, uid);
	if (chunk == NULL)
		return 0;
	while ((body = conn_chunk_body_find(chunk, uid)) == NULL &&
	       !chunk->done && conn->pending > 0) {
		conn->awaited_chunk = chunk;
		conn->awaited_uid = uid;
		conn_client_run(conn);
		conn->awaited_chunk = NULL;
		conn->awaited_uid = 0;
	}
	if (body == NULL || body->data == NULL) {
		/* a chunk the server did not answer as a whole (NO, or the
		   connection was lost) */
		return chunk->failed ? -1 : 0;
	}
	*received_r = body->received;
	data = body->data;
	body->data = NULL;
	*input_r = i_stream_create_from_data(data->data, data->used);
	i_stream_add_destroy_callback(*input_r, conn_body_stream_destroy,
				      data);
	i_stream_set_name(*input_r, t_strdup_printf("%s UID %u", mailbox, uid));
	return 1;
}

void migrate_source_conn_bodies_finish(struct migrate_source_conn *conn,
				       const char *mailbox,
				       const ARRAY_TYPE(seq_range) *uids)
{
	struct conn_chunk *const *chunkp;
	struct conn_body *body;

	array_foreach(&conn->chunks, chunkp) {
		if ((*chunkp)->finished ||
		    strcmp((*chunkp)->mailbox, mailbox) != 0 ||
		    array_cmp(&(*chunkp)->uids, uids) == FALSE)
			continue;
		(*chunkp)->finished = TRUE;
		/* what was not taken goes now; what is still on its way is
		   dropped on arrival */
		array_foreach_modifiable(&(*chunkp)->bodies, body)
			buffer_free(&body->data);
		break;
	}
	conn_chunks_prune(conn);
}

bool migrate_source_conn_bodies_failed(struct migrate_source_conn *conn,
				       const char *mailbox,
				       const ARRAY_TYPE(seq_range) *uids)
{
	struct conn_chunk *chunk;

	array_foreach_elem(&conn->chunks, chunk) {
		if (!chunk->finished &&
		    strcmp(chunk->mailbox, mailbox) == 0 &&
		    array_cmp(&chunk->uids, uids))
			return chunk->failed;
	}
	return TRUE;
}

const char *migrate_source_conn_bodies_error(struct migrate_source_conn *conn)
{
	return conn->chunk_error == NULL ? "unknown error" : conn->chunk_error;
}

static void conn_sizes_free(struct conn_sizes **_sizes)
{
	struct conn_sizes *sizes = *_sizes;

	if (sizes == NULL)
		return;
	*_sizes = NULL;
	pool_unref(&sizes->pool);
}

static void
conn_sizes_callback(const struct imapc_command_reply *reply, void *context)
{
	struct conn_sizes *sizes = context;
	struct migrate_source_conn *conn = sizes->conn;

	i_assert(sizes->cmds_pending > 0);
	conn_reply_seen(conn, reply);
	if (reply->state != IMAPC_COMMAND_STATE_OK || conn->poisoned)
		sizes->failed = TRUE;
	if (--sizes->cmds_pending == 0)
		sizes->done = TRUE;
	i_assert(conn->pending > 0);
	if (--conn->pending == 0 ||
	    (conn->awaited_sizes == sizes && sizes->done))
		imapc_client_stop(conn->client);
}

static void
conn_sizes_send(struct conn_sizes *sizes, const char *cmd_str)
{
	struct migrate_source_conn *conn = sizes->conn;

	sizes->cmds_pending++;
	conn_cmd_send(conn, conn_sizes_callback, sizes, cmd_str);
}

static int
conn_size_cmp(const struct migrate_source_size *s1,
	      const struct migrate_source_size *s2)
{
	return s1->uid < s2->uid ? -1 : (s1->uid > s2->uid ? 1 : 0);
}

static int
conn_flags_cmp(const struct migrate_source_flags *f1,
	       const struct migrate_source_flags *f2)
{
	return f1->uid < f2->uid ? -1 : (f1->uid > f2->uid ? 1 : 0);
}

/* Until the listing is in. */
static void conn_sizes_wait(struct conn_sizes *sizes)
{
	struct migrate_source_conn *conn = sizes->conn;

	while (!sizes->done && conn->pending > 0) {
		conn->awaited_sizes = sizes;
		conn_client_run(conn);
		conn->awaited_sizes = NULL;
	}
}

/* The newest listing of mailbox asked for */
static struct conn_sizes *
conn_sizes_find(struct migrate_source_conn *conn, const char *mailbox)
{
	struct conn_sizes *const *sizesp;
	unsigned int count;

	sizesp = array_get(&conn->listings, &count);
	while (count-- > 0) {
		if (strcmp(sizesp[count]->mailbox, mailbox) == 0)
			return sizesp[count];
	}
	return NULL;
}

void migrate_source_conn_sizes_ask(struct migrate_source_conn *conn,
				   const char *mailbox, uint32_t first_uid,
				   uint64_t changedsince)
{
	struct conn_sizes *sizes;
	enum imapc_capability caps, need;
	const char *error;
	pool_t pool;

	first_uid = I_MAX(first_uid, 1);
	sizes = conn_sizes_find(conn, mailbox);
	if (sizes != NULL && !sizes->failed &&
	    sizes->listing.first_uid == first_uid &&
	    sizes->changedsince == changedsince) {
		/* asked for ahead already */
		return;
	}
	/* a few are kept: the oldest goes (its replies came first) */
	while (array_count(&conn->listings) >= MIGRATE_SOURCE_CONN_LISTINGS) {
		sizes = array_idx_elem(&conn->listings, 0);
		conn_sizes_wait(sizes);
		array_pop_front(&conn->listings);
		conn_sizes_free(&sizes);
	}
	if (conn_select_async(conn, mailbox, &error) < 0)
		return;
	pool = pool_alloconly_create("migrate conn listing", 4096);
	sizes = p_new(pool, struct conn_sizes, 1);
	sizes->pool = pool;
	sizes->conn = conn;
	sizes->mailbox = p_strdup(pool, mailbox);
	sizes->changedsince = changedsince;
	/* the folder's replies come after its EXAMINE (this one's, or the
	   one sent before when it is selected already) */
	sizes->examine_serial = conn->examines_sent;
	sizes->listing.first_uid = first_uid;
	p_array_init(&sizes->listing.sizes, pool, 64);
	p_array_init(&sizes->listing.flags, pool, 64);
	p_array_init(&sizes->listing.present, pool, 16);
	array_push_back(&conn->listings, &sizes);
	need = IMAPC_CAPABILITY_CONDSTORE | IMAPC_CAPABILITY_ESEARCH;
	if (changedsince != 0 && first_uid > 1 &&
	    conn_get_capabilities(conn, &caps) == 0 &&
	    (caps & need) == need)
		sizes->listing.changes = TRUE;
	migrate_source_guard_nodelay(conn->guard);
	conn_sizes_send(sizes, t_strdup_printf(
		"UID FETCH %u:* (UID RFC822.SIZE FLAGS)", first_uid));
	if (!sizes->listing.changes)
		return;
	/* what changed below it, and what is gone (the UIDs it still
	   has, as ranges) */
	conn_sizes_send(sizes, t_strdup_printf(
		"UID FETCH 1:%u (UID FLAGS) (CHANGEDSINCE %"PRIu64")",
		first_uid - 1, changedsince));
	conn_sizes_send(sizes, t_strdup_printf(
		"UID SEARCH RETURN (ALL) UID 1:%u", first_uid - 1));
}

int migrate_source_conn_listing(struct migrate_source_conn *conn,
				const char *mailbox, bool wait,
				const struct migrate_source_listing **listing_r)
{
	struct conn_sizes *sizes;

	sizes = conn_sizes_find(conn, mailbox);
	if (sizes == NULL)
		return -1;
	if (!wait && !sizes->done && !sizes->failed && conn->pending > 0)
		return 0;
	conn_sizes_wait(sizes);
	if (!sizes->done || sizes->failed ||
	    (sizes->listing.changes && !sizes->got_esearch))
		return -1;
	if (!sizes->sorted) {
		array_sort(&sizes->listing.sizes, conn_size_cmp);
		array_sort(&sizes->listing.flags, conn_flags_cmp);
		sizes->sorted = TRUE;
	}
	*listing_r = &sizes->listing;
	return 1;
}
