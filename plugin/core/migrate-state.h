#ifndef MIGRATE_STATE_H
#define MIGRATE_STATE_H

#include "seq-range-array.h"

/* Durable per-user migration state, the isync way: a versioned state file
   plus an append-only journal, committed by write-new, fsync, rename and
   unlink.  Needs no mail user: it is plain files under a directory.

   The state remembers, per source folder, the source UIDVALIDITY that the
   progress refers to, what the source looked like when the folder was last
   synced completely (UIDNEXT, HIGHESTMODSEQ, message count), and which
   destination UID each copied source UID became.  Only messages listed in
   the map were copied by us; anything else at the destination is foreign
   and is never deleted. */

struct migrate_state;

struct migrate_uid_map {
	uint32_t src_uid;
	uint32_t dest_uid;
	/* 0: dest_uid is in the folder's own destination; else the copy was
	   moved (doveadm migrate archive) to this location, see
	   migrate_state_location_name() */
	uint32_t dest_loc;
};
ARRAY_DEFINE_TYPE(migrate_uid_map, struct migrate_uid_map);

struct migrate_state_folder {
	/* unique within the state, never reused */
	unsigned int id;
	/* source mailbox vname (UTF-8, source hierarchy separator) */
	const char *src_name;
	/* destination mailbox vname (UTF-8) */
	const char *dest_name;

	uint32_t src_uidvalidity;
	/* source status at the end of the last complete sync of this folder;
	   src_uidnext == 0 means the folder was never synced completely */
	uint32_t src_uidnext;
	uint32_t src_messages;
	uint64_t src_highestmodseq;

	uint32_t dest_uidvalidity;
	/* every destination UID below this has been examined (copied by us
	   and mapped, or known to be foreign) */
	uint32_t dest_uidnext;
	/* non-zero while a batch of saves may be committed but not yet
	   recorded: the destination's UIDNEXT before the batch.  A crash in
	   between can leave copies whose GUID the storage lost (Maildir moves
	   the files before it writes dovecot-uidlist): from this UID on,
	   unknown messages are matched by content before anything is copied */
	uint32_t dest_pending_uidnext;

	/* sorted by src_uid, unique src_uid and dest_uid */
	ARRAY_TYPE(migrate_uid_map) map;
	/* destination UIDs (in the folder's own destination) of copies made
	   under an earlier source UIDVALIDITY that no message of the current
	   one has been matched to yet: they are matched by content or, once
	   a second look proves them gone, deleted; until then they stay.
	   Change them only with migrate_state_orphans_set(). */
	ARRAY_TYPE(seq_range) orphans;
};
ARRAY_DEFINE_TYPE(migrate_state_folder, struct migrate_state_folder *);

/* Lock and load the state kept in dir (created 0700 if missing): reads the
   state file, then replays the journal (a torn last journal line from a
   crash is ignored).  A missing state is an empty state.  Returns 0 on
   success, -1 with error_r on failure (a corrupt file: the error names the
   file and line).  When another process holds the lock, returns -1 with
   *locked_r = TRUE.  The lock is flock() on dir/lock, so a second open in
   the same process is refused as well. */
int migrate_state_open(const char *dir, struct migrate_state **state_r,
		       bool *locked_r, const char **error_r);
/* The state's folders (F records) and its POP3-only mark, without
   locking it and without the copies' UIDs (nothing is expanded per
   message): enough to know whether and how the account was migrated,
   at a fraction of a full open's cost on a large mailbox.  Such a state
   is never flushed nor committed.  A missing state is an empty one. */
int migrate_state_open_folders(const char *dir, struct migrate_state **state_r,
			       const char **error_r);
/* Release the lock and free memory.  Unflushed journal lines are lost. */
void migrate_state_close(struct migrate_state **state);

/* Whether the account was migrated over POP3 only (migrate_source_protocol
   pop3, or auto choosing it): its copies are known by the POP3 UIDLs they
   carry, not by this state, whose folders stay empty, so an IMAP run would
   copy its mail again.  Kept in dir/pop3-only, apart from the state file
   and its journal. */
bool migrate_state_is_pop3_only(struct migrate_state *state);
/* Record that, before the first copy: written as migrate_file_replace()
   writes (0600; a crash leaves it whole or not at all).  Nothing to do
   when it is recorded already. */
int migrate_state_set_pop3_only(struct migrate_state *state,
				const char **error_r);

/* All folders, in the order they were added. */
const ARRAY_TYPE(migrate_state_folder) *
migrate_state_get_folders(struct migrate_state *state);
struct migrate_state_folder *
migrate_state_folder_lookup(struct migrate_state *state, const char *src_name);
/* Add a new folder with an empty map.  The caller sets the fields and
   calls migrate_state_folder_update(). */
struct migrate_state_folder *
migrate_state_folder_add(struct migrate_state *state, const char *src_name,
			 const char *dest_name);
/* Journal the folder's current header fields (names, uidvalidities,
   uidnext, messages, highestmodseq).  Changed names are copied, so the
   caller may set them from temporary memory. */
void migrate_state_folder_update(struct migrate_state *state,
				 struct migrate_state_folder *folder);
/* Forget the folder and its map (journaled).  The pointer is invalid
   afterwards. */
void migrate_state_folder_remove(struct migrate_state *state,
				 struct migrate_state_folder *folder);
/* Drop the whole map and the orphans (journaled), e.g. after a
   UIDVALIDITY change. */
void migrate_state_folder_clear_map(struct migrate_state *state,
				    struct migrate_state_folder *folder);

/* Replace the folder's orphans with uids (journaled). */
void migrate_state_orphans_set(struct migrate_state *state,
			       struct migrate_state_folder *folder,
			       const ARRAY_TYPE(seq_range) *uids);

/* Record that src_uid was copied to dest_uid (journaled).  Replaces an
   existing entry for src_uid.  Both UIDs are non-zero.  Ascending src_uid
   is O(1); consecutive calls with both UIDs +1 share one journal line. */
void migrate_state_map_add(struct migrate_state *state,
			   struct migrate_state_folder *folder,
			   uint32_t src_uid, uint32_t dest_uid);
/* Record that the copy of src_uid moved to location loc, as dest_uid
   there (journaled). */
void migrate_state_map_move(struct migrate_state *state,
			    struct migrate_state_folder *folder,
			    uint32_t src_uid, unsigned int loc,
			    uint32_t dest_uid);
/* The id of the location (a destination folder copies were moved to),
   added (journaled) when new.  Ids start at 1. */
unsigned int migrate_state_location(struct migrate_state *state,
				    const char *dest_name);
const char *migrate_state_location_name(struct migrate_state *state,
					unsigned int loc);
/* Forget src_uid (journaled).  No-op if it is not mapped. */
void migrate_state_map_remove(struct migrate_state *state,
			      struct migrate_state_folder *folder,
			      uint32_t src_uid);
/* Binary search; NULL if src_uid is not mapped. */
const struct migrate_uid_map *
migrate_state_map_lookup(const struct migrate_state_folder *folder,
			 uint32_t src_uid);
/* Reverse lookup among the copies still in the folder's own destination
   (linear is fine, used only in recovery). */
const struct migrate_uid_map *
migrate_state_map_lookup_dest(const struct migrate_state_folder *folder,
			      uint32_t dest_uid);

/* Append the buffered journal lines to the journal file and fdatasync it
   (fsync only when fsync is TRUE). */
int migrate_state_flush(struct migrate_state *state, bool fsync,
			const char **error_r);
/* Write the whole state to a new file, fsync, rename it over the state
   file and fsync the directory (migrate_file_replace_*()), then unlink
   the journal. */
int migrate_state_commit(struct migrate_state *state, const char **error_r);

#endif
