/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* One app token for all the accounts of a domain: Microsoft's
   client-credentials grant gives a token that reads every mailbox the
   application may read, so the accounts' runs share it.  Before the
   user's privileges are taken, each run looks in a cache only root can
   read (<state_dir>/migrate/oauth2-tokens/, a file per token URL,
   client id and scope, 0600), under a lock that makes the runs of a
   batch that start together wait for the first one's request (the
   secret is part of the file's name, hashed: another secret never gets
   this one's token); a token
   that is not fresh (migrate_oauth2_refresh_at()) is replaced by a new
   one, asked for as root.  The run and its workers start with it and
   renew it themselves should they outlive it.  A grant the endpoint
   refuses is the run's error, not asked for again; any other failure
   here is silent: the run then asks for its own token, and reports
   what fails. */

#include "lib.h"
#include "str.h"
#include "hex-binary.h"
#include "sha2.h"
#include "ioloop.h"
#include "strnum.h"
#include "safe-memset.h"
#include "mkdir-parents.h"
#include "iostream-ssl.h"
#include "master-service.h"
#include "master-service-settings.h"
#include "master-service-ssl-settings.h"
#include "mail-storage-service.h"
#include "migrate-file.h"
#include "migrate-oauth2.h"
#include "migrate-settings.h"
#include "migrate-source.h"
#include "doveadm-migrate.h"

#include <fcntl.h>
#include <unistd.h>
#include <sys/file.h>

#define OAUTH2_CACHE_SUBDIR "migrate/oauth2-tokens"

/* one file per endpoint, client, scope and secret (a token another
   secret got is not this one's) */
static const char *
oauth2_cache_path(const char *state_dir, const struct migrate_settings *set,
		  const char *secret)
{
	unsigned char digest[SHA256_RESULTLEN];
	const char *key;

	key = t_strdup_printf("%s\t%s\t%s\t%s", set->source_oauth2_token_url,
			      set->source_oauth2_client_id,
			      set->source_oauth2_scope, secret);
	sha256_get_digest(key, strlen(key), digest);
	safe_memset((void *)key, 0, strlen(key));
	return t_strdup_printf("%s/%s/%s", state_dir, OAUTH2_CACHE_SUBDIR,
			       binary_to_hex(digest, sizeof(digest)));
}

/* "token\nobtained\nexpires\n", in a file only root reads */
static bool
oauth2_cache_read(const char *path, pool_t pool,
		  struct migrate_oauth2_token *token_r)
{
	const char *const *lines, *error;
	char *data;
	size_t size;
	bool ret = FALSE;

	if (migrate_file_read_private(path, MIGRATE_OAUTH2_TOKEN_MAX_LEN + 64,
				      &data, &size, &error) <= 0)
		return FALSE;
	lines = t_strsplit(data, "\n");
	i_zero(token_r);
	if (str_array_length(lines) >= 3 && lines[0][0] != '\0' &&
	    str_to_time(lines[1], &token_r->obtained) == 0 &&
	    str_to_time(lines[2], &token_r->expires) == 0) {
		token_r->token = p_strdup(pool, lines[0]);
		token_r->expiry_known = TRUE;
		ret = TRUE;
	}
	safe_memset(data, 0, size);
	safe_memset((void *)lines[0], 0, strlen(lines[0]));
	return ret;
}

void migrate_cmd_oauth2_app_token(struct migrate_cmd_context *ctx,
				  struct mail_storage_service_user *service_user,
				  const struct migrate_settings *set)
{
	const struct master_service_settings *mset =
		master_service_settings_get(master_service);
	const struct master_service_ssl_settings *ssl_set;
	struct ssl_iostream_settings ssl_ioset;
	struct migrate_settings grant_set;
	struct migrate_oauth2_token token;
	enum migrate_error code;
	const char *path, *error;
	string_t *str;
	int fd;

	ctx->oauth2_token = NULL;
	ctx->oauth2_token_error = NULL;
	if (set->source_oauth2_grant != MIGRATE_OAUTH2_GRANT_CLIENT_CREDENTIALS ||
	    ctx->oauth2_secret == NULL)
		return;
	path = oauth2_cache_path(mset->state_dir, set, ctx->oauth2_secret);
	if (mkdir_parents(t_strdup_printf("%s/%s", mset->state_dir,
					  OAUTH2_CACHE_SUBDIR), 0700) < 0 &&
	    errno != EEXIST)
		return;
	fd = open(t_strconcat(path, ".lock", NULL),
		  O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
	if (fd == -1)
		return;
	if (flock(fd, LOCK_EX) < 0) {
		i_close_fd(&fd);
		return;
	}
	io_loop_time_refresh();
	if (!oauth2_cache_read(path, ctx->ctx.pool, &token) ||
	    ioloop_time >= migrate_oauth2_refresh_at(&token)) {
		grant_set = *set;
		grant_set.source_oauth2_secret = ctx->oauth2_secret;
		ssl_set = mail_storage_service_user_get_ssl_settings(service_user);
		i_zero(&ssl_ioset);
		master_service_ssl_client_settings_to_iostream_set(ssl_set,
			pool_datastack_create(), &ssl_ioset);
		if (migrate_grant_request(&grant_set, &ssl_ioset, NULL, NULL,
				set->source_user, ctx->ctx.pool, &token,
				&code, &error) < 0) {
			/* refused: the run says so without asking again;
			   anything else: the run asks itself */
			if (code == MIGRATE_ERROR_SOURCE_AUTH) {
				ctx->oauth2_token_error =
					p_strdup(ctx->ctx.pool, error);
				ctx->oauth2_token_error_code = code;
			}
			i_close_fd(&fd);
			return;
		}
		str = t_str_new(256);
		str_printfa(str, "%s\n%ld\n%ld\n", token.token,
			    (long)token.obtained, (long)token.expires);
		(void)migrate_file_replace(path, str_data(str), str_len(str),
					   0600, (uid_t)-1, (gid_t)-1, &error);
		safe_memset(str_c_modifiable(str), 0, str_len(str));
	}
	i_close_fd(&fd);
	ctx->oauth2_token = token.token;
	ctx->oauth2_token_obtained = token.obtained;
	ctx->oauth2_token_expires = token.expires;
}
