/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "buffer.h"
#include "base64.h"
#include "strnum.h"
#include "str.h"
#include "json-tree.h"
#include "migrate-json.h"
#include "migrate-text.h"
#include "migrate-oauth2.h"

#include <ctype.h>

/* a lifetime beyond this is no lifetime (a second line that is
   something else) */
#define OAUTH2_MAX_LIFETIME_SECS (366*24*3600)

static bool oauth2_token_valid(const char *token, size_t len)
{
	size_t i;

	/* RFC 6750's b64token, and whatever else a provider prints that is
	   visible ASCII: nothing that would break a SASL message */
	for (i = 0; i < len; i++) {
		if (token[i] <= ' ' || token[i] >= 0x7f)
			return FALSE;
	}
	return len > 0;
}

time_t migrate_oauth2_jwt_exp(const char *token)
{
	const char *p1, *p2;
	struct json_tree *tree;
	const char *error;
	buffer_t *payload;
	uint64_t exp = 0;

	p1 = strchr(token, '.');
	if (p1 == NULL)
		return 0;
	p2 = strchr(p1 + 1, '.');
	if (p2 == NULL || strchr(p2 + 1, '.') != NULL ||
	    p2 - p1 - 1 > MIGRATE_OAUTH2_TOKEN_MAX_LEN)
		return 0;
	payload = t_buffer_create(p2 - p1);
	if (base64url_decode(BASE64_DECODE_FLAG_IGNORE_PADDING, p1 + 1,
			     p2 - p1 - 1, payload) < 0)
		return 0;
	if (migrate_json_parse(payload->data, payload->used, &tree,
			       &error) < 0)
		return 0;
	exp = migrate_json_node_uint(json_tree_root(tree), "exp");
	json_tree_deinit(&tree);
	return exp > (uint64_t)INT32_MAX * 2 ? 0 : (time_t)exp;
}

int migrate_oauth2_command_output_parse(const char *output, time_t now,
					pool_t pool,
					struct migrate_oauth2_token *token_r,
					const char **error_r)
{
	const char *p, *line2, *end;
	size_t len;
	unsigned int secs;
	time_t exp;

	i_zero(token_r);
	p = strchr(output, '\n');
	len = p == NULL ? strlen(output) : (size_t)(p - output);
	if (len > 0 && output[len - 1] == '\r')
		len--;
	if (len == 0) {
		*error_r = "Its first line is empty: no token";
		return -1;
	}
	if (len > MIGRATE_OAUTH2_TOKEN_MAX_LEN) {
		*error_r = t_strdup_printf("Its first line is longer than %u "
			"bytes: no token", MIGRATE_OAUTH2_TOKEN_MAX_LEN);
		return -1;
	}
	if (!oauth2_token_valid(output, len)) {
		*error_r = "Its first line has spaces or characters that are "
			"not printable ASCII: no token";
		return -1;
	}
	token_r->token = p_strndup(pool, output, len);
	token_r->obtained = now;

	line2 = p == NULL ? "" : p + 1;
	end = strchr(line2, '\n');
	line2 = end == NULL ? line2 : t_strdup_until(line2, end);
	len = strlen(line2);
	if (len > 0 && line2[len - 1] == '\r')
		line2 = t_strndup(line2, len - 1);
	if (line2[0] != '\0') {
		if (str_to_uint(line2, &secs) < 0 || secs == 0 ||
		    secs > OAUTH2_MAX_LIFETIME_SECS) {
			*error_r = t_strdup_printf("Its second line is not "
				"the token's lifetime in seconds (1..%u)",
				OAUTH2_MAX_LIFETIME_SECS);
			return -1;
		}
		token_r->expires = now + secs;
		token_r->expiry_known = TRUE;
		return 0;
	}
	exp = migrate_oauth2_jwt_exp(token_r->token);
	if (exp != 0) {
		token_r->expires = exp;
		token_r->expiry_known = TRUE;
	} else {
		token_r->expires = now + MIGRATE_OAUTH2_DEFAULT_LIFETIME_SECS;
	}
	return 0;
}

time_t migrate_oauth2_refresh_at(const struct migrate_oauth2_token *token)
{
	time_t lifetime = token->expires - token->obtained;
	time_t margin = lifetime <= 0 ? 0 : lifetime / 4;

	if (margin > MIGRATE_OAUTH2_REFRESH_MARGIN_SECS)
		margin = MIGRATE_OAUTH2_REFRESH_MARGIN_SECS;
	return token->expires - margin;
}

/* what an endpoint says, made safe and short for an error */
static const char *oauth2_said(const char *text)
{
	if (strlen(text) > 300)
		text = t_strconcat(t_strndup(text, 300), "...", NULL);
	return migrate_text_escape(text);
}

int migrate_oauth2_token_response_parse(unsigned int status,
					const void *data, size_t size,
					time_t now, pool_t pool,
					struct migrate_oauth2_token *token_r,
					bool *refused_r, const char **error_r)
{
	const struct json_tree_node *root;
	struct json_tree *tree;
	const char *token, *error, *description, *expires, *parse_error;
	unsigned int secs = 0;
	int ret = -1;

	i_zero(token_r);
	*refused_r = FALSE;
	if (migrate_json_parse(data, size, &tree, &parse_error) < 0) {
		*error_r = t_strdup_printf("HTTP %u, and no JSON object in "
			"the answer (%s)", status, parse_error);
		return -1;
	}
	root = json_tree_root(tree);
	token = migrate_json_node_str(root, "access_token");
	error = migrate_json_node_str(root, "error");
	description = migrate_json_node_str(root, "error_description");
	/* a number, or (Azure AD v1) a string of one */
	expires = migrate_json_node_str(root, "expires_in");
	if (expires != NULL) {
		if (str_to_uint(expires, &secs) < 0)
			secs = 0;
	} else {
		uint64_t num = migrate_json_node_uint(root, "expires_in");

		secs = num > OAUTH2_MAX_LIFETIME_SECS ? 0 : (unsigned int)num;
	}

	if (status / 100 == 2 && token != NULL) {
		if (!oauth2_token_valid(token, strlen(token)) ||
		    strlen(token) > MIGRATE_OAUTH2_TOKEN_MAX_LEN) {
			*error_r = t_strdup_printf("HTTP %u, and the "
				"access_token is no token (spaces, characters "
				"that are not printable ASCII, or over %u "
				"bytes)", status, MIGRATE_OAUTH2_TOKEN_MAX_LEN);
		} else {
			token_r->token = p_strdup(pool, token);
			token_r->obtained = now;
			token_r->expiry_known = secs > 0;
			token_r->expires = now + (secs > 0 ? secs :
				MIGRATE_OAUTH2_DEFAULT_LIFETIME_SECS);
			ret = 0;
		}
	} else if (error != NULL) {
		*refused_r = status == 400 || status == 401;
		*error_r = t_strdup_printf("HTTP %u: %s%s%s", status,
			oauth2_said(error), description == NULL ? "" : ": ",
			description == NULL ? "" : oauth2_said(description));
	} else {
		*error_r = t_strdup_printf("HTTP %u, and the answer has "
			"neither an access_token nor an error", status);
	}
	json_tree_deinit(&tree);
	return ret;
}

void migrate_oauth2_form_add(string_t *dest, const char *name,
			     const char *value)
{
	const unsigned char *p;

	if (str_len(dest) > 0)
		str_append_c(dest, '&');
	str_append(dest, name);
	str_append_c(dest, '=');
	for (p = (const unsigned char *)value; *p != '\0'; p++) {
		if (i_isalnum(*p) || *p == '-' || *p == '.' || *p == '_' ||
		    *p == '~')
			str_append_c(dest, *p);
		else if (*p == ' ')
			str_append_c(dest, '+');
		else
			str_printfa(dest, "%%%02X", *p);
	}
}
