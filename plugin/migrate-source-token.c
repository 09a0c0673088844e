/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "array.h"
#include "buffer.h"
#include "ioloop.h"
#include "time-util.h"
#include "ostream.h"
#include "safe-memset.h"
#include "program-client.h"
#include "mail-user.h"
#include "imapc-client-private.h"
#include "migrate-oauth2.h"
#include "migrate-settings.h"
#include "migrate-source-private.h"

#include <unistd.h>

/* the token command's whole run, at most, and without output */
#define TOKEN_COMMAND_TIMEOUT_MSECS (30*1000)

/* The OAuth2 access token of this process' source logins, from
   migrate_source_oauth2_token_command or a grant
   (migrate-source-grant.c): obtained once, kept for every
   source of the process (a retry's too) and replaced before it expires,
   in every imapc client already made, so that a login after a lost
   connection takes the new one.  The timer that replaces it follows
   whichever ioloop runs: imapc runs its own while it waits. */
struct source_token {
	enum migrate_oauth2_grant grant;
	/* what the token is for: the grant, its settings, the user */
	char *key;
	/* the token command, the source user */
	char *command, *user;
	/* i_malloc()ed, cleared when replaced */
	char *token;
	struct migrate_oauth2_token info;
	struct timeout *to;
	/* after a failed renewal: the next try */
	time_t retry_at;
	ARRAY(struct migrate_source *) sources;
	unsigned int refreshes;
};

static struct source_token *source_token = NULL;

static void source_token_refresh(struct source_token *st);

static void source_token_ioloop_switched(struct ioloop *prev_ioloop ATTR_UNUSED)
{
	if (source_token != NULL && source_token->to != NULL)
		source_token->to = io_loop_move_timeout(&source_token->to);
}

static void source_token_timer_set(struct source_token *st)
{
	time_t at = st->retry_at != 0 ? st->retry_at :
		migrate_oauth2_refresh_at(&st->info);
	long long msecs = ((long long)at - ioloop_time) * 1000;

	timeout_remove(&st->to);
	if (array_count(&st->sources) == 0)
		return;
	if (msecs < 1000)
		msecs = 1000;
	if (msecs > INT_MAX)
		msecs = INT_MAX;
	st->to = timeout_add((unsigned int)msecs, source_token_refresh, st);
}

/* Runs the command; its first lines in output (bounded: a command that
   writes more stops with a timeout). */
static int
source_token_run(struct source_token *st, struct event *event,
		 buffer_t *output, enum migrate_error *code_r,
		 const char **error_r)
{
	const char *const *words = t_strsplit_spaces(st->command, " ");
	struct program_client_settings pset;
	struct program_client *pclient;
	ARRAY_TYPE(const_string) args;
	enum program_client_exit_status status;
	struct ostream *output_stream;
	unsigned int i;

	if (access(words[0], X_OK) < 0) {
		*code_r = MIGRATE_ERROR_CONFIG;
		*error_r = t_strdup_printf("%s: access(%s, X_OK) failed: %m",
			MIGRATE_SETTING_SOURCE_OAUTH2_TOKEN_COMMAND, words[0]);
		return -1;
	}
	/* the source user is its last argument; the token is never one */
	t_array_init(&args, 8);
	for (i = 1; words[i] != NULL; i++)
		array_push_back(&args, &words[i]);
	array_push_back(&args, (const char *const *)&st->user);
	array_append_zero(&args);

	i_zero(&pset);
	pset.input_idle_timeout_msecs = TOKEN_COMMAND_TIMEOUT_MSECS;
	restrict_access_init(&pset.restrict_set);
	pset.allow_root = TRUE;
	pset.event = event;
	pclient = program_client_local_create(words[0], array_front(&args),
					      &pset);
	program_client_set_env(pclient, "PATH",
			       "/usr/local/bin:/usr/bin:/bin");
	output_stream = o_stream_create_buffer(output);
	o_stream_set_max_buffer_size(output_stream,
				     MIGRATE_OAUTH2_TOKEN_MAX_LEN + 64);
	program_client_set_output(pclient, output_stream);
	status = program_client_run(pclient);
	program_client_destroy(&pclient);
	o_stream_unref(&output_stream);

	switch (status) {
	case PROGRAM_CLIENT_EXIT_STATUS_SUCCESS:
		return 0;
	case PROGRAM_CLIENT_EXIT_STATUS_FAILURE:
		*error_r = "it failed (its error output is in the log)";
		break;
	case PROGRAM_CLIENT_EXIT_STATUS_INTERNAL_FAILURE:
		*error_r = t_strdup_printf("it could not be run, or printed "
			"nothing or too much within %u s",
			TOKEN_COMMAND_TIMEOUT_MSECS / 1000);
		break;
	}
	*code_r = MIGRATE_ERROR_TEMP;
	return -1;
}

/* st's token replaced by info's (a copy; the old one cleared), or
   dropped (NULL). */
static void
source_token_set(struct source_token *st,
		 const struct migrate_oauth2_token *info)
{
	if (st->token != NULL)
		safe_memset(st->token, 0, strlen(st->token));
	i_free(st->token);
	if (info != NULL) {
		st->token = i_strdup(info->token);
		st->info = *info;
		st->info.token = st->token;
	}
}

/* The command's token. */
static int
source_token_command(struct source_token *st, struct event *event,
		     struct migrate_oauth2_token *info_r,
		     enum migrate_error *code_r, const char **error_r)
{
	buffer_t *output;
	const char *error;
	int ret;

	output = buffer_create_dynamic(default_pool, 512);
	ret = source_token_run(st, event, output, code_r, &error);
	io_loop_time_refresh();
	if (ret == 0) {
		buffer_append_c(output, '\0');
		if (migrate_oauth2_command_output_parse(output->data,
				ioloop_time, pool_datastack_create(), info_r,
				&error) < 0) {
			*code_r = MIGRATE_ERROR_TEMP;
			ret = -1;
		}
	}
	if (ret < 0) {
		*error_r = t_strdup_printf("The OAuth2 token command for %s "
			"(%s): %s", st->user,
			MIGRATE_SETTING_SOURCE_OAUTH2_TOKEN_COMMAND, error);
	}
	safe_memset(buffer_get_modifiable_data(output, NULL), 0,
		    output->used);
	buffer_free(&output);
	return ret;
}

/* A new token for st->user; the old one stays on failure. */
static int
source_token_obtain(struct source_token *st, struct migrate_source *source,
		    enum migrate_error *code_r, const char **error_r)
{
	struct migrate_oauth2_token info;
	struct timeval start, end;
	int ret;

	i_gettimeofday(&start);
	if (st->grant == MIGRATE_OAUTH2_GRANT_COMMAND) {
		ret = source_token_command(st, source->event, &info, code_r,
					   error_r);
	} else {
		ret = migrate_source_grant_obtain(source, st->user,
			pool_datastack_create(), &info, code_r, error_r);
	}
	i_gettimeofday(&end);
	if (ret < 0)
		return -1;

	source_token_set(st, &info);
	st->retry_at = 0;
	safe_memset((void *)info.token, 0, strlen(info.token));
	e_debug(event_create_passthrough(source->event)->
		set_name("migrate_source_oauth2_token")->
		add_str("source_user", st->user)->
		add_str("grant", st->grant == MIGRATE_OAUTH2_GRANT_COMMAND ?
			"command" : st->grant ==
			MIGRATE_OAUTH2_GRANT_CLIENT_CREDENTIALS ?
			"client_credentials" : "service_account")->
		add_int("lifetime_secs", info.expires - info.obtained)->
		add_int("expiry_known", info.expiry_known ? 1 : 0)->
		add_int("refresh", st->refreshes)->
		add_int("duration_msecs",
			timeval_diff_msecs(&end, &start))->event(),
		"OAuth2 token for %s obtained, valid %ld s%s",
		st->user, (long)(info.expires - info.obtained),
		info.expiry_known ? "" : " (assumed: its lifetime was not "
		"told and the token is no JWT)");
	return 0;
}

static void source_token_refresh(struct source_token *st)
{
	struct migrate_source *source = array_idx_elem(&st->sources, 0);
	enum migrate_error code;
	const char *error;
	time_t left;

	timeout_remove(&st->to);
	st->refreshes++;
	if (source_token_obtain(st, source, &code, &error) < 0) {
		/* the old token may still be good for a while: tried again
		   within half of what is left, between 5 s and a minute */
		e_warning(source->event, "%s", error);
		left = st->info.expires - ioloop_time;
		st->retry_at = ioloop_time +
			I_MAX(5, I_MIN(60, left / 2));
	} else {
		array_foreach_elem(&st->sources, source)
			migrate_source_password_changed(source, st->token);
	}
	source_token_timer_set(st);
}

static void source_token_free(struct source_token **_st)
{
	struct source_token *st = *_st;

	*_st = NULL;
	timeout_remove(&st->to);
	source_token_set(st, NULL);
	i_free(st->key);
	i_free(st->command);
	i_free(st->user);
	array_free(&st->sources);
	i_free(st);
}

void migrate_source_token_cache_free(void)
{
	if (source_token != NULL) {
		i_assert(array_count(&source_token->sources) == 0);
		source_token_free(&source_token);
	}
}

/* The client-credentials grant's token doveadm migrate handed over
   (migrate_settings.source_oauth2_initial_token), while it is fresh. */
static bool
source_token_seed(struct source_token *st, const struct migrate_settings *set)
{
	struct migrate_oauth2_token info;

	if (st->grant != MIGRATE_OAUTH2_GRANT_CLIENT_CREDENTIALS ||
	    set->source_oauth2_initial_token == NULL)
		return FALSE;
	i_zero(&info);
	info.token = set->source_oauth2_initial_token;
	info.obtained = set->source_oauth2_initial_obtained;
	info.expires = set->source_oauth2_initial_expires;
	info.expiry_known = TRUE;
	if (ioloop_time >= migrate_oauth2_refresh_at(&info))
		return FALSE;
	source_token_set(st, &info);
	return TRUE;
}

static const char *source_token_key(const struct migrate_settings *set)
{
	return t_strdup_printf("%d\t%s\t%s\t%s\t%s\t%s",
		set->source_oauth2_grant,
		set->source_oauth2_token_command == NULL ? "" :
		set->source_oauth2_token_command,
		set->source_oauth2_token_url == NULL ? "" :
		set->source_oauth2_token_url,
		set->source_oauth2_client_id == NULL ? "" :
		set->source_oauth2_client_id,
		set->source_oauth2_scope == NULL ? "" :
		set->source_oauth2_scope, set->source_user);
}

int migrate_source_token_init(struct migrate_source *source,
			      const char **token_r,
			      enum migrate_error *code_r, const char **error_r)
{
	const struct migrate_settings *set = source->set;
	struct source_token *st = source_token;
	const char *key = source_token_key(set);

	i_assert(set->source_oauth2_grant != MIGRATE_OAUTH2_GRANT_NONE);
	if (set->source_oauth2_initial_error != NULL) {
		/* doveadm migrate asked for the domain's token already, and
		   was refused: not asked again */
		*code_r = set->source_oauth2_initial_error_code;
		*error_r = set->source_oauth2_initial_error;
		return -1;
	}
	if (st != NULL && strcmp(st->key, key) != 0) {
		i_assert(array_count(&st->sources) == 0);
		source_token_free(&source_token);
		st = NULL;
	}
	if (st == NULL) {
		st = i_new(struct source_token, 1);
		st->grant = set->source_oauth2_grant;
		st->key = i_strdup(key);
		st->command = i_strdup(set->source_oauth2_token_command);
		st->user = i_strdup(set->source_user);
		i_array_init(&st->sources, 2);
		if (source_token_seed(st, set)) {
			/* the domain's, from doveadm migrate's cache */
		} else if (source_token_obtain(st, source, code_r,
					       error_r) < 0) {
			source_token_free(&st);
			return -1;
		}
		source_token = st;
	} else if (ioloop_time >= migrate_oauth2_refresh_at(&st->info) &&
		   source_token_obtain(st, source, code_r, error_r) < 0) {
		return -1;
	}
	if (array_count(&st->sources) == 0)
		io_loop_add_switch_callback(source_token_ioloop_switched);
	array_push_back(&st->sources, &source);
	source_token_timer_set(st);
	*token_r = st->token;
	return 0;
}

void migrate_source_token_deinit(struct migrate_source *source)
{
	struct source_token *st = source_token;
	struct migrate_source *const *sources;
	unsigned int i, count;

	if (st == NULL)
		return;
	sources = array_get(&st->sources, &count);
	for (i = 0; i < count; i++) {
		if (sources[i] == source) {
			array_delete(&st->sources, i, 1);
			break;
		}
	}
	if (array_count(&st->sources) == 0) {
		timeout_remove(&st->to);
		io_loop_remove_switch_callback(source_token_ioloop_switched);
	}
}

/* A new password (token) in the imapc client of the source user's
   storage (the one its namespaces share). */
void migrate_source_user_password_changed(struct mail_user *user,
					  const char *password)
{
	struct imapc_client *client = migrate_source_user_imapc_client(user);

	if (client != NULL)
		migrate_source_imapc_password_set(client, password);
}

void migrate_source_imapc_password_set(struct imapc_client *client,
				       const char *password)
{
	if (client->set.password != NULL) {
		safe_memset((void *)client->set.password, 0,
			    strlen(client->set.password));
	}
	client->set.password = p_strdup(client->pool, password);
}
