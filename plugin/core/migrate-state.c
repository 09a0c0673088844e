/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "str.h"
#include "strescape.h"
#include "strnum.h"
#include "bsearch-insert-pos.h"
#include "fd-util.h"
#include "file-lock.h"
#include "mkdir-parents.h"
#include "write-full.h"
#include "istream.h"
#include "ostream.h"
#include "migrate-file.h"
#include "migrate-state.h"

#include <stdio.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>

/* Both files are text: a version header line, then one record per line.
   Fields are separated by TAB (shown as spaces below); folder names are
   escaped with str_append_tabescaped(), so they may contain anything:

     dovecot-migrate state 1
     N <next folder id>
     F <id> <src_name> <dest_name> <src_uidvalidity> <src_uidnext>
       <src_messages> <src_highestmodseq> <dest_uidvalidity> <dest_uidnext>
       <dest_pending_uidnext>
     L <location id> <dest_name>
     M <id> <src_uid> <dest_uid> <count> [<location id>]
     O <id> <dest_uid> <count>

   "M" is a run: src_uid+i was copied to dest_uid+i for i < count, so a
   folder copied in UID order takes one line no matter its size.  With a
   location, the copies have moved to that destination folder (doveadm
   migrate archive), dest_uid being their UID there.  The state lists the
   locations, then each folder's F and its M runs in src_uid order.
   "O" adds dest_uid..dest_uid+count-1 to the folder's orphans (copies of
   an earlier source UIDVALIDITY not matched or deleted yet); a folder's O
   records follow its M runs.  Version 1 files (no locations) and 2 (no
   orphans) are read as well.

   The journal ("dovecot-migrate journal 1") uses the same F and M
   records, each a replay of one mutating call, plus:

     R <id>             folder removed
     C <id>             map and orphans cleared
     P <id>             orphans cleared (O records follow with the new set)
     X <id> <src_uid>   map entry removed

   Every record overwrites (F, M) or deletes (R, C, X) something, so
   replaying a journal over a state that already contains it gives the
   same state.  That happens when commit crashes between renaming the new
   state and unlinking the journal. */

#define MIGRATE_STATE_FNAME "state"
#define MIGRATE_STATE_JOURNAL_FNAME "journal"
#define MIGRATE_STATE_LOCK_FNAME "lock"
/* the account was migrated over POP3 only (migrate_state_is_pop3_only()) */
#define MIGRATE_STATE_POP3_ONLY_FNAME "pop3-only"
#define MIGRATE_STATE_POP3_ONLY_CONTENTS "dovecot-migrate pop3-only 1\n"

#define MIGRATE_STATE_HEADER "dovecot-migrate state"
#define MIGRATE_STATE_JOURNAL_HEADER "dovecot-migrate journal"
#define MIGRATE_STATE_VERSION 3
#define MIGRATE_STATE_MIN_VERSION 1

/* bounds the memory used for one line; two escaped folder names fit */
#define MIGRATE_STATE_MAX_LINE_SIZE (64 * 1024)
#define MIGRATE_STATE_MAX_FIELDS 11

#define MIGRATE_STATE_FILE_MODE 0600
#define MIGRATE_STATE_DIR_MODE 0700

struct migrate_state_folder_private {
	struct migrate_state_folder folder;
	/* our own copies of the names: folder_update() copies names that the
	   caller replaced, so callers may set them from temporary memory */
	const char *src_name, *dest_name;
};

struct migrate_state {
	pool_t pool;
	const char *dir, *state_path, *journal_path, *lock_path;
	const char *pop3_only_path;
	bool pop3_only;
	/* opened with migrate_state_open_folders(): no lock, no maps */
	bool folders_only;

	int lock_fd;
	struct file_lock *lock;

	ARRAY_TYPE(migrate_state_folder) folders;
	/* destination names of the locations, id - 1 indexes */
	ARRAY_TYPE(const_string) locations;
	HASH_TABLE(void *, struct migrate_state_folder *) folders_by_id;
	unsigned int next_folder_id;

	/* journal records not yet flushed */
	string_t *journal;
	/* while journal_run_open, the journal ends with an "M" run starting
	   at journal_run_pos, which the next map_add can extend */
	size_t journal_run_pos;
	unsigned int journal_run_folder_id;
	uint32_t journal_run_src_uid, journal_run_dest_uid;
	uint32_t journal_run_count, journal_run_loc;
	bool journal_run_open:1;
};

struct migrate_state_reader {
	struct migrate_state *state;
	/* journal records may refer to folders that were already removed */
	bool journal;
};

static int
migrate_uid_map_cmp(const uint32_t *src_uid, const struct migrate_uid_map *map)
{
	if (*src_uid < map->src_uid)
		return -1;
	if (*src_uid > map->src_uid)
		return 1;
	return 0;
}

static struct migrate_state_folder *
migrate_state_folder_lookup_id(struct migrate_state *state, unsigned int id)
{
	return hash_table_lookup(state->folders_by_id, POINTER_CAST(id));
}

static struct migrate_state_folder *
migrate_state_folder_new(struct migrate_state *state, unsigned int id,
			 const char *src_name, const char *dest_name)
{
	struct migrate_state_folder_private *priv;
	struct migrate_state_folder *folder;

	i_assert(id != 0);

	priv = p_new(state->pool, struct migrate_state_folder_private, 1);
	priv->src_name = p_strdup(state->pool, src_name);
	priv->dest_name = p_strdup(state->pool, dest_name);

	folder = &priv->folder;
	folder->id = id;
	folder->src_name = priv->src_name;
	folder->dest_name = priv->dest_name;
	/* the maps can grow large and one at a time: keep them out of the
	   alloconly pool so that growing and freeing them returns memory */
	i_array_init(&folder->map, 16);
	i_array_init(&folder->orphans, 4);

	array_push_back(&state->folders, &folder);
	hash_table_insert(state->folders_by_id, POINTER_CAST(id), folder);
	if (id >= state->next_folder_id)
		state->next_folder_id = id + 1;
	return folder;
}

static void
migrate_state_folder_set_names(struct migrate_state *state,
			       struct migrate_state_folder *folder,
			       const char *src_name, const char *dest_name)
{
	struct migrate_state_folder_private *priv =
		container_of(folder, struct migrate_state_folder_private,
			     folder);

	if (strcmp(priv->src_name, src_name) != 0)
		priv->src_name = p_strdup(state->pool, src_name);
	if (strcmp(priv->dest_name, dest_name) != 0)
		priv->dest_name = p_strdup(state->pool, dest_name);
	folder->src_name = priv->src_name;
	folder->dest_name = priv->dest_name;
}

static void
migrate_state_folder_free(struct migrate_state *state,
			  struct migrate_state_folder *folder)
{
	struct migrate_state_folder *const *folders;
	unsigned int i, count;

	hash_table_remove(state->folders_by_id, POINTER_CAST(folder->id));
	folders = array_get(&state->folders, &count);
	for (i = 0; i < count; i++) {
		if (folders[i] == folder) {
			array_delete(&state->folders, i, 1);
			break;
		}
	}
	array_free(&folder->map);
	array_free(&folder->orphans);
	/* the folder itself stays in the pool until close */
}

static void
migrate_state_map_set(struct migrate_state_folder *folder,
		      uint32_t src_uid, uint32_t dest_uid, uint32_t loc)
{
	struct migrate_uid_map *maps, new_map;
	unsigned int count, idx;

	new_map.src_uid = src_uid;
	new_map.dest_uid = dest_uid;
	new_map.dest_loc = loc;

	maps = array_get_modifiable(&folder->map, &count);
	if (count == 0 || maps[count-1].src_uid < src_uid) {
		/* the usual case: messages are copied in UID order */
		array_push_back(&folder->map, &new_map);
	} else if (bsearch_insert_pos(&src_uid, maps, count, sizeof(*maps),
				      migrate_uid_map_cmp, &idx)) {
		maps[idx].dest_uid = dest_uid;
		maps[idx].dest_loc = loc;
	} else {
		array_insert(&folder->map, idx, &new_map, 1);
	}
}

static void
migrate_state_map_unset(struct migrate_state_folder *folder, uint32_t src_uid)
{
	const struct migrate_uid_map *maps;
	unsigned int count, idx;

	maps = array_get(&folder->map, &count);
	if (bsearch_insert_pos(&src_uid, maps, count, sizeof(*maps),
			       migrate_uid_map_cmp, &idx))
		array_delete(&folder->map, idx, 1);
}

/* records */

static void
migrate_state_append_folder(string_t *dest,
			    const struct migrate_state_folder *folder)
{
	str_printfa(dest, "F\t%u\t", folder->id);
	str_append_tabescaped(dest, folder->src_name);
	str_append_c(dest, '\t');
	str_append_tabescaped(dest, folder->dest_name);
	str_printfa(dest, "\t%u\t%u\t%u\t%"PRIu64"\t%u\t%u\t%u\n",
		    folder->src_uidvalidity, folder->src_uidnext,
		    folder->src_messages, folder->src_highestmodseq,
		    folder->dest_uidvalidity, folder->dest_uidnext,
		    folder->dest_pending_uidnext);
}

static void
migrate_state_append_run(string_t *dest, unsigned int folder_id,
			 uint32_t src_uid, uint32_t dest_uid, uint32_t count,
			 uint32_t loc)
{
	str_printfa(dest, "M\t%u\t%u\t%u\t%u", folder_id, src_uid,
		    dest_uid, count);
	if (loc != 0)
		str_printfa(dest, "\t%u", loc);
	str_append_c(dest, '\n');
}

static void
migrate_state_append_orphans(string_t *dest,
			     const struct migrate_state_folder *folder)
{
	const struct seq_range *range;

	array_foreach(&folder->orphans, range) {
		str_printfa(dest, "O\t%u\t%u\t%u\n", folder->id, range->seq1,
			    range->seq2 - range->seq1 + 1);
	}
}

static void
migrate_state_append_location(string_t *dest, unsigned int loc,
			      const char *name)
{
	str_printfa(dest, "L\t%u\t", loc);
	str_append_tabescaped(dest, name);
	str_append_c(dest, '\n');
}

static unsigned int
migrate_state_split_line(char *line, char *args[MIGRATE_STATE_MAX_FIELDS])
{
	unsigned int count = 0;

	/* split in place: this runs for every line of a large state, so
	   don't allocate per line */
	args[count++] = line;
	for (; *line != '\0'; line++) {
		if (*line != '\t')
			continue;
		if (count == MIGRATE_STATE_MAX_FIELDS)
			return MIGRATE_STATE_MAX_FIELDS + 1;
		*line = '\0';
		args[count++] = line + 1;
	}
	return count;
}

static int
migrate_state_parse_uid(const char *str, const char *name, uint32_t *uid_r,
			const char **error_r)
{
	if (str_to_uint32(str, uid_r) < 0 || *uid_r == 0) {
		*error_r = t_strdup_printf("Invalid %s: '%s'", name, str);
		return -1;
	}
	return 0;
}

static int
migrate_state_parse_folder_id(struct migrate_state_reader *ctx,
			      const char *str,
			      struct migrate_state_folder **folder_r,
			      const char **error_r)
{
	struct migrate_state *state = ctx->state;
	unsigned int id;

	if (str_to_uint(str, &id) < 0 || id == 0) {
		*error_r = t_strdup_printf("Invalid folder id: '%s'", str);
		return -1;
	}
	*folder_r = migrate_state_folder_lookup_id(state, id);
	if (*folder_r != NULL)
		return 0;
	if (ctx->journal && id < state->next_folder_id) {
		/* removed before: skip the record */
		return 0;
	}
	*error_r = t_strdup_printf("Unknown folder id: %u", id);
	return -1;
}

static int
migrate_state_parse_folder(struct migrate_state_reader *ctx,
			   char *const *args, unsigned int count,
			   const char **error_r)
{
	struct migrate_state *state = ctx->state;
	struct migrate_state_folder *folder, tmp;
	const char *src_name, *dest_name;

	if (count != 11) {
		*error_r = t_strdup_printf(
			"Folder record has %u fields, expected 11", count);
		return -1;
	}
	i_zero(&tmp);
	if (str_to_uint(args[1], &tmp.id) < 0 || tmp.id == 0) {
		*error_r = t_strdup_printf("Invalid folder id: '%s'", args[1]);
		return -1;
	}
	src_name = str_tabunescape(args[2]);
	dest_name = str_tabunescape(args[3]);
	if (str_to_uint32(args[4], &tmp.src_uidvalidity) < 0 ||
	    str_to_uint32(args[5], &tmp.src_uidnext) < 0 ||
	    str_to_uint32(args[6], &tmp.src_messages) < 0 ||
	    str_to_uint64(args[7], &tmp.src_highestmodseq) < 0 ||
	    str_to_uint32(args[8], &tmp.dest_uidvalidity) < 0 ||
	    str_to_uint32(args[9], &tmp.dest_uidnext) < 0 ||
	    str_to_uint32(args[10], &tmp.dest_pending_uidnext) < 0) {
		*error_r = "Invalid number in folder record";
		return -1;
	}

	folder = migrate_state_folder_lookup_id(state, tmp.id);
	if (folder == NULL)
		folder = migrate_state_folder_new(state, tmp.id,
						  src_name, dest_name);
	else if (!ctx->journal) {
		*error_r = t_strdup_printf("Duplicate folder id: %u", tmp.id);
		return -1;
	} else {
		migrate_state_folder_set_names(state, folder,
					       src_name, dest_name);
	}
	folder->src_uidvalidity = tmp.src_uidvalidity;
	folder->src_uidnext = tmp.src_uidnext;
	folder->src_messages = tmp.src_messages;
	folder->src_highestmodseq = tmp.src_highestmodseq;
	folder->dest_uidvalidity = tmp.dest_uidvalidity;
	folder->dest_uidnext = tmp.dest_uidnext;
	folder->dest_pending_uidnext = tmp.dest_pending_uidnext;
	return 0;
}

static int
migrate_state_parse_run(struct migrate_state_reader *ctx,
			char *const *args, unsigned int count,
			const char **error_r)
{
	struct migrate_state_folder *folder;
	uint32_t src_uid, dest_uid, run_count, loc = 0, i;

	if (count != 5 && count != 6) {
		*error_r = t_strdup_printf(
			"Map record has %u fields, expected 5 or 6", count);
		return -1;
	}
	if (count == 6) {
		if (migrate_state_parse_uid(args[5], "location", &loc,
					    error_r) < 0)
			return -1;
		if (loc > array_count(&ctx->state->locations)) {
			*error_r = t_strdup_printf("Unknown location %u", loc);
			return -1;
		}
	}
	if (migrate_state_parse_folder_id(ctx, args[1], &folder, error_r) < 0 ||
	    migrate_state_parse_uid(args[2], "source UID", &src_uid,
				    error_r) < 0 ||
	    migrate_state_parse_uid(args[3], "destination UID", &dest_uid,
				    error_r) < 0 ||
	    migrate_state_parse_uid(args[4], "count", &run_count,
				    error_r) < 0)
		return -1;
	if (src_uid > (uint32_t)-1 - (run_count - 1) ||
	    dest_uid > (uint32_t)-1 - (run_count - 1)) {
		*error_r = "Map run overflows UID range";
		return -1;
	}
	if (folder == NULL)
		return 0;
	for (i = 0; i < run_count; i++)
		migrate_state_map_set(folder, src_uid + i, dest_uid + i, loc);
	return 0;
}

static int
migrate_state_parse_orphans(struct migrate_state_reader *ctx,
			    char *const *args, unsigned int count,
			    const char **error_r)
{
	struct migrate_state_folder *folder;
	uint32_t dest_uid, run_count;

	if (count != 4) {
		*error_r = t_strdup_printf(
			"Orphans record has %u fields, expected 4", count);
		return -1;
	}
	if (migrate_state_parse_folder_id(ctx, args[1], &folder, error_r) < 0 ||
	    migrate_state_parse_uid(args[2], "destination UID", &dest_uid,
				    error_r) < 0 ||
	    migrate_state_parse_uid(args[3], "count", &run_count,
				    error_r) < 0)
		return -1;
	if (dest_uid > (uint32_t)-1 - (run_count - 1)) {
		*error_r = "Orphans run overflows UID range";
		return -1;
	}
	if (folder != NULL) {
		seq_range_array_add_range(&folder->orphans, dest_uid,
					  dest_uid + (run_count - 1));
	}
	return 0;
}

static int
migrate_state_parse_location(struct migrate_state_reader *ctx,
			     char *const *args, unsigned int count,
			     const char **error_r)
{
	struct migrate_state *state = ctx->state;
	const char *name;
	uint32_t loc;

	if (count != 3) {
		*error_r = t_strdup_printf(
			"Location record has %u fields, expected 3", count);
		return -1;
	}
	if (migrate_state_parse_uid(args[1], "location", &loc, error_r) < 0)
		return -1;
	if (loc != array_count(&state->locations) + 1) {
		if (ctx->journal && loc <= array_count(&state->locations)) {
			/* replayed over a state that has it already */
			return 0;
		}
		*error_r = t_strdup_printf("Location %u out of order", loc);
		return -1;
	}
	name = p_strdup(state->pool, t_str_tabunescape(args[2]));
	array_push_back(&state->locations, &name);
	return 0;
}

static int
migrate_state_parse_record(struct migrate_state_reader *ctx, char *line,
			   const char **error_r)
{
	struct migrate_state *state = ctx->state;
	struct migrate_state_folder *folder;
	char *args[MIGRATE_STATE_MAX_FIELDS];
	unsigned int count, id;
	uint32_t src_uid;

	count = migrate_state_split_line(line, args);
	if (count > MIGRATE_STATE_MAX_FIELDS) {
		*error_r = "Too many fields";
		return -1;
	}
	if (args[0][0] == '\0' || args[0][1] != '\0') {
		*error_r = t_strdup_printf("Invalid record type: '%s'",
					   args[0]);
		return -1;
	}

	switch (args[0][0]) {
	case 'F':
		return migrate_state_parse_folder(ctx, args, count, error_r);
	case 'M':
		if (state->folders_only)
			return 0;
		return migrate_state_parse_run(ctx, args, count, error_r);
	case 'L':
		return migrate_state_parse_location(ctx, args, count, error_r);
	case 'O':
		if (state->folders_only)
			return 0;
		return migrate_state_parse_orphans(ctx, args, count, error_r);
	case 'N':
		if (ctx->journal)
			break;
		if (count != 2 || str_to_uint(args[1], &id) < 0 || id == 0) {
			*error_r = "Invalid next folder id record";
			return -1;
		}
		if (id > state->next_folder_id)
			state->next_folder_id = id;
		return 0;
	case 'R':
	case 'C':
	case 'P':
		if (!ctx->journal)
			break;
		if (count != 2) {
			*error_r = t_strdup_printf(
				"Record has %u fields, expected 2", count);
			return -1;
		}
		if (migrate_state_parse_folder_id(ctx, args[1], &folder,
						  error_r) < 0)
			return -1;
		if (folder == NULL)
			;
		else if (args[0][0] == 'R')
			migrate_state_folder_free(state, folder);
		else {
			if (args[0][0] == 'C')
				array_clear(&folder->map);
			array_clear(&folder->orphans);
		}
		return 0;
	case 'X':
		if (!ctx->journal)
			break;
		if (state->folders_only)
			return 0;
		if (count != 3) {
			*error_r = t_strdup_printf(
				"Record has %u fields, expected 3", count);
			return -1;
		}
		if (migrate_state_parse_folder_id(ctx, args[1], &folder,
						  error_r) < 0 ||
		    migrate_state_parse_uid(args[2], "source UID", &src_uid,
					    error_r) < 0)
			return -1;
		if (folder != NULL)
			migrate_state_map_unset(folder, src_uid);
		return 0;
	}
	*error_r = t_strdup_printf("Invalid record type: '%s'", args[0]);
	return -1;
}

static int
migrate_state_parse_header(const char *line, const char *expected,
			   const char **error_r)
{
	const char *p;
	unsigned int version;

	if (!str_begins(line, expected) || line[strlen(expected)] != ' ') {
		*error_r = t_strdup_printf("Invalid header, expected '%s %d'",
					   expected, MIGRATE_STATE_VERSION);
		return -1;
	}
	p = line + strlen(expected) + 1;
	if (str_to_uint(p, &version) < 0) {
		*error_r = t_strdup_printf("Invalid version: '%s'", p);
		return -1;
	}
	if (version < MIGRATE_STATE_MIN_VERSION ||
	    version > MIGRATE_STATE_VERSION) {
		*error_r = t_strdup_printf(
			"Unsupported version %u (expected %d)",
			version, MIGRATE_STATE_VERSION);
		return -1;
	}
	return 0;
}

/* Read the state file (journal=FALSE) or replay the journal.  A journal's
   torn last line sets *valid_size_r to the size without it. */
static int
migrate_state_read(struct migrate_state *state, const char *path,
		   bool journal, uoff_t *valid_size_r, const char **error_r)
{
	struct migrate_state_reader ctx;
	struct istream *input;
	const char *error;
	char *line;
	unsigned int line_num = 0;
	int fd, ret = 0;

	*valid_size_r = (uoff_t)-1;

	fd = open(path, O_RDONLY);
	if (fd == -1) {
		if (errno == ENOENT)
			return 0;
		*error_r = t_strdup_printf("open(%s) failed: %m", path);
		return -1;
	}

	i_zero(&ctx);
	ctx.state = state;
	ctx.journal = journal;

	input = i_stream_create_fd_autoclose(&fd, MIGRATE_STATE_MAX_LINE_SIZE);
	while ((line = i_stream_read_next_line(input)) != NULL) {
		line_num++;
		if (line_num == 1) {
			ret = migrate_state_parse_header(line,
				journal ? MIGRATE_STATE_JOURNAL_HEADER :
				MIGRATE_STATE_HEADER, &error);
		} else {
			ret = migrate_state_parse_record(&ctx, line, &error);
		}
		if (ret < 0) {
			*error_r = t_strdup_printf("%s line %u: %s",
						   path, line_num, error);
			break;
		}
	}
	if (ret < 0)
		;
	else if (input->stream_errno == ENOBUFS) {
		*error_r = t_strdup_printf("%s line %u: Line too long",
					   path, line_num + 1);
		ret = -1;
	} else if (input->stream_errno != 0) {
		*error_r = t_strdup_printf("read(%s) failed: %s", path,
					   i_stream_get_error(input));
		ret = -1;
	} else if (i_stream_get_data_size(input) > 0) {
		if (journal) {
			/* crashed while appending: the records before it
			   were complete, this one never happened */
			*valid_size_r = input->v_offset;
		} else {
			*error_r = t_strdup_printf(
				"%s line %u: Truncated line", path,
				line_num + 1);
			ret = -1;
		}
	} else if (line_num == 0 && !journal) {
		/* commit always writes the header; the journal can be empty
		   after a crash right after it was created */
		*error_r = t_strdup_printf("%s line 1: Missing header", path);
		ret = -1;
	}
	i_stream_destroy(&input);
	return ret;
}

static int migrate_state_load(struct migrate_state *state,
			      const char **error_r)
{
	uoff_t valid_size;

	if (migrate_state_read(state, state->state_path, FALSE,
			       &valid_size, error_r) < 0)
		return -1;
	if (migrate_state_read(state, state->journal_path, TRUE,
			       &valid_size, error_r) < 0)
		return -1;
	if (valid_size != (uoff_t)-1 && !state->folders_only) {
		/* drop the torn line, or the next flush would glue a record
		   to it */
		if (truncate(state->journal_path, valid_size) < 0) {
			*error_r = t_strdup_printf("truncate(%s) failed: %m",
						   state->journal_path);
			return -1;
		}
	}
	return 0;
}

/* dir/pop3-only: whether it is there */
static int migrate_state_load_pop3_only(struct migrate_state *state,
					const char **error_r)
{
	struct stat st;

	if (stat(state->pop3_only_path, &st) == 0) {
		state->pop3_only = TRUE;
		return 0;
	}
	if (errno == ENOENT)
		return 0;
	*error_r = t_strdup_printf("stat(%s) failed: %m",
				   state->pop3_only_path);
	return -1;
}

static int migrate_state_lock(struct migrate_state *state, bool *locked_r,
			      const char **error_r)
{
	struct file_lock_settings lock_set = {
		/* flock() rather than fcntl(): it also refuses a second open
		   in the same process */
		.lock_method = FILE_LOCK_METHOD_FLOCK,
	};
	const char *error;
	int ret;

	state->lock_fd = open(state->lock_path, O_RDWR | O_CREAT,
			      MIGRATE_STATE_FILE_MODE);
	if (state->lock_fd == -1) {
		*error_r = t_strdup_printf("open(%s) failed: %m",
					   state->lock_path);
		return -1;
	}
	ret = file_try_lock(state->lock_fd, state->lock_path, F_WRLCK,
			    &lock_set, &state->lock, &error);
	if (ret < 0) {
		*error_r = t_strdup_printf("Failed to lock state: %s", error);
		return -1;
	}
	if (ret == 0) {
		*error_r = t_strdup_printf(
			"State is locked by another process: %s",
			state->lock_path);
		*locked_r = TRUE;
		return -1;
	}
	return 0;
}

static struct migrate_state *migrate_state_alloc(const char *dir)
{
	struct migrate_state *state;
	pool_t pool;

	pool = pool_alloconly_create("migrate state", 1024);
	state = p_new(pool, struct migrate_state, 1);
	state->pool = pool;
	state->lock_fd = -1;
	state->dir = p_strdup(pool, dir);
	state->state_path = p_strconcat(pool, dir, "/",
					MIGRATE_STATE_FNAME, NULL);
	state->journal_path = p_strconcat(pool, dir, "/",
					  MIGRATE_STATE_JOURNAL_FNAME, NULL);
	state->lock_path = p_strconcat(pool, dir, "/",
				       MIGRATE_STATE_LOCK_FNAME, NULL);
	state->pop3_only_path = p_strconcat(pool, dir, "/",
					    MIGRATE_STATE_POP3_ONLY_FNAME,
					    NULL);
	state->next_folder_id = 1;
	p_array_init(&state->folders, pool, 16);
	p_array_init(&state->locations, pool, 4);
	hash_table_create_direct(&state->folders_by_id, default_pool, 0);
	state->journal = str_new(default_pool, 1024);
	return state;
}

int migrate_state_open(const char *dir, struct migrate_state **state_r,
		       bool *locked_r, const char **error_r)
{
	struct migrate_state *state;

	*state_r = NULL;
	*locked_r = FALSE;

	if (mkdir_parents(dir, MIGRATE_STATE_DIR_MODE) < 0 &&
	    errno != EEXIST) {
		*error_r = t_strdup_printf("mkdir(%s) failed: %m", dir);
		return -1;
	}

	state = migrate_state_alloc(dir);
	if (migrate_state_lock(state, locked_r, error_r) < 0 ||
	    migrate_state_load(state, error_r) < 0 ||
	    migrate_state_load_pop3_only(state, error_r) < 0) {
		migrate_state_close(&state);
		return -1;
	}
	*state_r = state;
	return 0;
}

int migrate_state_open_folders(const char *dir, struct migrate_state **state_r,
			       const char **error_r)
{
	struct migrate_state *state;

	*state_r = NULL;
	state = migrate_state_alloc(dir);
	state->folders_only = TRUE;
	if (migrate_state_load(state, error_r) < 0 ||
	    migrate_state_load_pop3_only(state, error_r) < 0) {
		migrate_state_close(&state);
		return -1;
	}
	*state_r = state;
	return 0;
}

void migrate_state_close(struct migrate_state **_state)
{
	struct migrate_state *state = *_state;
	struct migrate_state_folder *folder;

	if (state == NULL)
		return;
	*_state = NULL;

	array_foreach_elem(&state->folders, folder)
		array_free(&folder->map);
	hash_table_destroy(&state->folders_by_id);
	str_free(&state->journal);
	if (state->lock != NULL)
		file_unlock(&state->lock);
	i_close_fd(&state->lock_fd);
	pool_unref(&state->pool);
}

const ARRAY_TYPE(migrate_state_folder) *
migrate_state_get_folders(struct migrate_state *state)
{
	return &state->folders;
}

bool migrate_state_is_pop3_only(struct migrate_state *state)
{
	return state->pop3_only;
}

int migrate_state_set_pop3_only(struct migrate_state *state,
				const char **error_r)
{
	if (state->pop3_only)
		return 0;
	if (migrate_file_replace(state->pop3_only_path,
				 MIGRATE_STATE_POP3_ONLY_CONTENTS,
				 strlen(MIGRATE_STATE_POP3_ONLY_CONTENTS),
				 MIGRATE_STATE_FILE_MODE, (uid_t)-1,
				 (gid_t)-1, error_r) < 0)
		return -1;
	state->pop3_only = TRUE;
	return 0;
}

struct migrate_state_folder *
migrate_state_folder_lookup(struct migrate_state *state, const char *src_name)
{
	struct migrate_state_folder *folder;

	array_foreach_elem(&state->folders, folder) {
		if (strcmp(folder->src_name, src_name) == 0)
			return folder;
	}
	return NULL;
}

static void migrate_state_journal_end_run(struct migrate_state *state)
{
	state->journal_run_open = FALSE;
}

struct migrate_state_folder *
migrate_state_folder_add(struct migrate_state *state, const char *src_name,
			 const char *dest_name)
{
	struct migrate_state_folder *folder;

	folder = migrate_state_folder_new(state, state->next_folder_id,
					  src_name, dest_name);
	/* journal it now: map records may follow before the caller's
	   folder_update() */
	migrate_state_journal_end_run(state);
	migrate_state_append_folder(state->journal, folder);
	return folder;
}

void migrate_state_folder_update(struct migrate_state *state,
				 struct migrate_state_folder *folder)
{
	migrate_state_folder_set_names(state, folder, folder->src_name,
				       folder->dest_name);
	migrate_state_journal_end_run(state);
	migrate_state_append_folder(state->journal, folder);
}

void migrate_state_folder_remove(struct migrate_state *state,
				 struct migrate_state_folder *folder)
{
	migrate_state_journal_end_run(state);
	str_printfa(state->journal, "R\t%u\n", folder->id);
	migrate_state_folder_free(state, folder);
}

void migrate_state_folder_clear_map(struct migrate_state *state,
				    struct migrate_state_folder *folder)
{
	migrate_state_journal_end_run(state);
	str_printfa(state->journal, "C\t%u\n", folder->id);
	array_clear(&folder->map);
	array_clear(&folder->orphans);
}

void migrate_state_orphans_set(struct migrate_state *state,
			       struct migrate_state_folder *folder,
			       const ARRAY_TYPE(seq_range) *uids)
{
	if (&folder->orphans != uids) {
		array_clear(&folder->orphans);
		array_append_array(&folder->orphans, uids);
	}
	migrate_state_journal_end_run(state);
	str_printfa(state->journal, "P\t%u\n", folder->id);
	migrate_state_append_orphans(state->journal, folder);
}

static void
migrate_state_map_add_loc(struct migrate_state *state,
			  struct migrate_state_folder *folder,
			  uint32_t src_uid, uint32_t dest_uid, uint32_t loc);

void migrate_state_map_add(struct migrate_state *state,
			   struct migrate_state_folder *folder,
			   uint32_t src_uid, uint32_t dest_uid)
{
	migrate_state_map_add_loc(state, folder, src_uid, dest_uid, 0);
}

void migrate_state_map_move(struct migrate_state *state,
			    struct migrate_state_folder *folder,
			    uint32_t src_uid, unsigned int loc,
			    uint32_t dest_uid)
{
	i_assert(loc != 0 && loc <= array_count(&state->locations));
	migrate_state_map_add_loc(state, folder, src_uid, dest_uid, loc);
}

static void
migrate_state_map_add_loc(struct migrate_state *state,
			  struct migrate_state_folder *folder,
			  uint32_t src_uid, uint32_t dest_uid, uint32_t loc)
{
	uint32_t run_count;

	i_assert(src_uid != 0 && dest_uid != 0);

	migrate_state_map_set(folder, src_uid, dest_uid, loc);

	run_count = state->journal_run_count;
	if (state->journal_run_open &&
	    state->journal_run_folder_id == folder->id &&
	    state->journal_run_loc == loc &&
	    state->journal_run_src_uid + run_count == src_uid &&
	    state->journal_run_dest_uid + run_count == dest_uid) {
		/* continues the last run: rewrite its line */
		state->journal_run_count++;
		str_truncate(state->journal, state->journal_run_pos);
	} else {
		state->journal_run_open = TRUE;
		state->journal_run_pos = str_len(state->journal);
		state->journal_run_folder_id = folder->id;
		state->journal_run_src_uid = src_uid;
		state->journal_run_dest_uid = dest_uid;
		state->journal_run_count = 1;
		state->journal_run_loc = loc;
	}
	migrate_state_append_run(state->journal, folder->id,
				 state->journal_run_src_uid,
				 state->journal_run_dest_uid,
				 state->journal_run_count, loc);
}

unsigned int migrate_state_location(struct migrate_state *state,
				    const char *dest_name)
{
	const char *const *names;
	unsigned int i, count;

	names = array_get(&state->locations, &count);
	for (i = 0; i < count; i++) {
		if (strcmp(names[i], dest_name) == 0)
			return i + 1;
	}
	dest_name = p_strdup(state->pool, dest_name);
	array_push_back(&state->locations, &dest_name);
	migrate_state_journal_end_run(state);
	migrate_state_append_location(state->journal, count + 1, dest_name);
	return count + 1;
}

const char *migrate_state_location_name(struct migrate_state *state,
					unsigned int loc)
{
	i_assert(loc != 0 && loc <= array_count(&state->locations));
	return array_idx_elem(&state->locations, loc - 1);
}

void migrate_state_map_remove(struct migrate_state *state,
			      struct migrate_state_folder *folder,
			      uint32_t src_uid)
{
	if (migrate_state_map_lookup(folder, src_uid) == NULL)
		return;
	migrate_state_journal_end_run(state);
	str_printfa(state->journal, "X\t%u\t%u\n", folder->id, src_uid);
	migrate_state_map_unset(folder, src_uid);
}

const struct migrate_uid_map *
migrate_state_map_lookup(const struct migrate_state_folder *folder,
			 uint32_t src_uid)
{
	const struct migrate_uid_map *maps;
	unsigned int count, idx;

	maps = array_get(&folder->map, &count);
	if (!bsearch_insert_pos(&src_uid, maps, count, sizeof(*maps),
				migrate_uid_map_cmp, &idx))
		return NULL;
	return &maps[idx];
}

const struct migrate_uid_map *
migrate_state_map_lookup_dest(const struct migrate_state_folder *folder,
			      uint32_t dest_uid)
{
	const struct migrate_uid_map *map;

	array_foreach(&folder->map, map) {
		if (map->dest_uid == dest_uid && map->dest_loc == 0)
			return map;
	}
	return NULL;
}

int migrate_state_flush(struct migrate_state *state, bool fsync,
			const char **error_r)
{
	struct stat st;
	int fd, ret = 0;

	i_assert(!state->folders_only);
	if (str_len(state->journal) == 0)
		return 0;

	fd = open(state->journal_path, O_WRONLY | O_APPEND | O_CREAT,
		  MIGRATE_STATE_FILE_MODE);
	if (fd == -1) {
		*error_r = t_strdup_printf("open(%s) failed: %m",
					   state->journal_path);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		*error_r = t_strdup_printf("fstat(%s) failed: %m",
					   state->journal_path);
		i_close_fd(&fd);
		return -1;
	}
	if (st.st_size == 0) {
		const char *hdr = t_strdup_printf("%s %d\n",
			MIGRATE_STATE_JOURNAL_HEADER, MIGRATE_STATE_VERSION);
		ret = write_full(fd, hdr, strlen(hdr));
	}
	if (ret == 0)
		ret = write_full(fd, str_data(state->journal),
				 str_len(state->journal));
	if (ret < 0) {
		*error_r = t_strdup_printf("write(%s) failed: %m",
					   state->journal_path);
	} else if (fsync && fdatasync(fd) < 0) {
		*error_r = t_strdup_printf("fdatasync(%s) failed: %m",
					   state->journal_path);
		ret = -1;
	}
	if (ret < 0) {
		/* take back a partial append, so that the records stay
		   buffered for a retry instead of half on disk */
		if (ftruncate(fd, st.st_size) < 0) {
			*error_r = t_strdup_printf(
				"%s (and ftruncate() failed: %m)", *error_r);
		}
		i_close_fd(&fd);
		return -1;
	}
	if (close(fd) < 0) {
		*error_r = t_strdup_printf("close(%s) failed: %m",
					   state->journal_path);
		return -1;
	}
	str_truncate(state->journal, 0);
	migrate_state_journal_end_run(state);
	return 0;
}

static void
migrate_state_write(struct migrate_state *state, struct ostream *output)
{
	struct migrate_state_folder *folder;
	const struct migrate_uid_map *maps;
	const char *const *names;
	unsigned int i, start, count;
	string_t *str;

	str = t_str_new(256);
	str_printfa(str, "%s %d\nN\t%u\n", MIGRATE_STATE_HEADER,
		    MIGRATE_STATE_VERSION, state->next_folder_id);
	names = array_get(&state->locations, &count);
	for (i = 0; i < count; i++)
		migrate_state_append_location(str, i + 1, names[i]);
	o_stream_nsend(output, str_data(str), str_len(str));

	array_foreach_elem(&state->folders, folder) {
		str_truncate(str, 0);
		migrate_state_append_folder(str, folder);
		o_stream_nsend(output, str_data(str), str_len(str));

		maps = array_get(&folder->map, &count);
		for (start = 0; start < count; start = i) {
			for (i = start + 1; i < count; i++) {
				if (maps[i].src_uid != maps[i-1].src_uid + 1 ||
				    maps[i].dest_uid != maps[i-1].dest_uid + 1 ||
				    maps[i].dest_loc != maps[i-1].dest_loc)
					break;
			}
			str_truncate(str, 0);
			migrate_state_append_run(str, folder->id,
						 maps[start].src_uid,
						 maps[start].dest_uid,
						 i - start, maps[start].dest_loc);
			o_stream_nsend(output, str_data(str), str_len(str));
		}
		str_truncate(str, 0);
		migrate_state_append_orphans(str, folder);
		o_stream_nsend(output, str_data(str), str_len(str));
	}
}

int migrate_state_commit(struct migrate_state *state, const char **error_r)
{
	struct migrate_file_replace *rep;
	struct stat st;

	i_assert(!state->folders_only);
	/* an unchanged state is not rewritten: a re-run that finds nothing
	   to do writes nothing */
	if (str_len(state->journal) == 0 &&
	    stat(state->journal_path, &st) < 0 && errno == ENOENT &&
	    stat(state->state_path, &st) == 0)
		return 0;

	/* The crash-safe order: write the new state, fsync it, rename it
	   over the old one and fsync the directory (migrate-file.h), and
	   only then unlink the journal.  A crash before the rename leaves
	   the old state and the journal; one after it, the new state and a
	   journal whose records it already holds (replayed, they change
	   nothing). */
	if (migrate_file_replace_begin(state->state_path,
				       MIGRATE_STATE_FILE_MODE, (uid_t)-1,
				       (gid_t)-1, &rep, error_r) < 0)
		return -1;
	T_BEGIN {
		migrate_state_write(state, migrate_file_replace_output(rep));
	} T_END;
	if (migrate_file_replace_finish(&rep, error_r) < 0)
		return -1;
	if (unlink(state->journal_path) < 0 && errno != ENOENT) {
		*error_r = t_strdup_printf("unlink(%s) failed: %m",
					   state->journal_path);
		return -1;
	}
	str_truncate(state->journal, 0);
	migrate_state_journal_end_run(state);
	return 0;
}
