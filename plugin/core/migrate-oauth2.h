#ifndef MIGRATE_OAUTH2_H
#define MIGRATE_OAUTH2_H

/* OAuth2 access tokens for the source's logins (migrate_source_auth =
   xoauth2 or oauthbearer), wherever they come from: what a token command
   printed, and when a token is to be replaced.  Nothing here ever logs or
   quotes a token. */

/* the first line of a token command's output, at most */
#define MIGRATE_OAUTH2_TOKEN_MAX_LEN 16384
/* a token whose lifetime is known nowhere is taken to last this long
   (Microsoft's and Google's access tokens last at least an hour) */
#define MIGRATE_OAUTH2_DEFAULT_LIFETIME_SECS 3600
/* a token is replaced this long before it expires, at most, and at most a
   quarter of its lifetime before */
#define MIGRATE_OAUTH2_REFRESH_MARGIN_SECS 300

struct migrate_oauth2_token {
	/* the access token (never logged) */
	const char *token;
	/* when it was obtained, and when it expires (from the command's
	   second line, else the JWT's exp claim, else the default
	   lifetime) */
	time_t obtained, expires;
	/* TRUE: the expiry was told (a second line or a JWT's exp) */
	bool expiry_known;
};

/* A token command's output: its first line is the token, an optional
   second line the seconds it stays valid (as OAuth2's expires_in).
   Without it, a token that is a JWT expires at its exp claim.  Returns 0,
   or -1 with an error that never quotes the output. */
int migrate_oauth2_command_output_parse(const char *output, time_t now,
					pool_t pool,
					struct migrate_oauth2_token *token_r,
					const char **error_r);

/* A token endpoint's answer (RFC 6749 5.1 and 5.2) with HTTP status
   status: 0 with the token (expiring after its expires_in, else the
   default lifetime), or -1 with an error.  *refused_r is TRUE when the
   endpoint refused the grant with an OAuth2 error (a status 400 or 401
   whose body names it: "invalid_client: AADSTS7000215: ..."), FALSE for
   anything else (a server error, a broken answer).  What the endpoint
   says is escaped and cut at 300 characters. */
int migrate_oauth2_token_response_parse(unsigned int status,
					const void *data, size_t size,
					time_t now, pool_t pool,
					struct migrate_oauth2_token *token_r,
					bool *refused_r, const char **error_r);

/* A form's "name=value" (RFC 6749 appendix B: application/x-www-form-
   urlencoded), appended with '&' when dest is not empty. */
void migrate_oauth2_form_add(string_t *dest, const char *name,
			     const char *value);

/* The exp claim of a token that is a JWT (three base64url parts, the
   second a JSON object), read without verifying the signature: only to
   know when to replace it.  0 when the token is no JWT or has no exp. */
time_t migrate_oauth2_jwt_exp(const char *token);

/* When to obtain the next token: the expiry minus the refresh margin
   (the smaller of MIGRATE_OAUTH2_REFRESH_MARGIN_SECS and a quarter of
   the lifetime). */
time_t migrate_oauth2_refresh_at(const struct migrate_oauth2_token *token);

#endif
