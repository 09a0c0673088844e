/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

/* The OAuth2 grants that give the source's access token without a
   command: Microsoft's client-credentials grant (RFC 6749 4.4: the
   application's id and secret; one token reads every mailbox the app may
   read) and Google's service account with domain-wide delegation
   (RFC 7523: a JWT naming the mailbox, signed RS256 with the service
   account's key; one token per mailbox).  One POST to the token
   endpoint over HTTPS (lib-http, the destination user's TLS client
   settings: ssl_client_ca_*), answered as RFC 6749 5.1/5.2 say. */

#include "lib.h"
#include "array.h"
#include "buffer.h"
#include "base64.h"
#include "str.h"
#include "ioloop.h"
#include "istream.h"
#include "safe-memset.h"
#include "iostream-ssl.h"
#include "http-client.h"
#include "http-response.h"
#include "json-tree.h"
#include "mail-user.h"
#include "migrate-json.h"
#include "migrate-oauth2.h"
#include "migrate-settings.h"
#include "migrate-source-private.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

/* the token endpoint's answer, at most */
#define GRANT_MAX_RESPONSE_SIZE (64*1024)
#define GRANT_TIMEOUT_MSECS (30*1000)
/* an assertion's lifetime: Google takes at most an hour */
#define GRANT_ASSERTION_SECS 3600

struct grant_http {
	buffer_t *body;
	struct istream *payload;
	struct io *io;
	unsigned int status;
	char *error;
	bool too_large;
};

static void grant_payload_finish(struct grant_http *gh)
{
	io_remove(&gh->io);
	i_stream_unref(&gh->payload);
}

static void grant_payload_input(struct grant_http *gh)
{
	const unsigned char *data;
	size_t size;
	int ret;

	while ((ret = i_stream_read_more(gh->payload, &data, &size)) > 0) {
		if (gh->body->used + size > GRANT_MAX_RESPONSE_SIZE) {
			gh->too_large = TRUE;
			grant_payload_finish(gh);
			return;
		}
		buffer_append(gh->body, data, size);
		i_stream_skip(gh->payload, size);
	}
	if (ret == 0)
		return;
	if (gh->payload->stream_errno != 0) {
		gh->error = i_strdup_printf("reading the answer failed: %s",
			i_stream_get_error(gh->payload));
	}
	grant_payload_finish(gh);
}

static void
grant_response(const struct http_response *response, struct grant_http *gh)
{
	gh->status = response->status;
	if (response->status >= HTTP_CLIENT_REQUEST_ERROR_ABORTED) {
		/* lib-http's own: no answer */
		gh->error = i_strdup(response->reason);
		return;
	}
	if (response->payload == NULL)
		return;
	gh->payload = response->payload;
	i_stream_ref(gh->payload);
	gh->io = io_add_istream(gh->payload, grant_payload_input, gh);
	grant_payload_input(gh);
}

/* POSTs form to url; the answer's status and body. */
static int
grant_post(const struct ssl_iostream_settings *ssl_set, struct event *event,
	   struct migrate_source_tls *tls, const char *url,
	   const string_t *form, struct grant_http *gh, const char **error_r)
{
	struct http_client_settings hset;
	struct http_client *client;
	struct http_client_request *req;

	i_zero(&hset);
	hset.ssl = ssl_set;
	hset.user_agent = "dovecot-migrate";
	hset.max_attempts = 2;
	hset.max_redirects = 0;
	hset.request_timeout_msecs = GRANT_TIMEOUT_MSECS;
	hset.request_absolute_timeout_msecs = GRANT_TIMEOUT_MSECS * 2;
	hset.connect_timeout_msecs = GRANT_TIMEOUT_MSECS / 3;
	hset.event_parent = event;
	client = http_client_init_private(&hset);

	req = http_client_request_url_str(client, "POST", url,
					  grant_response, gh);
	http_client_request_add_header(req, "Content-Type",
				       "application/x-www-form-urlencoded");
	http_client_request_add_header(req, "Accept", "application/json");
	http_client_request_set_payload_data(req, str_data(form),
					     str_len(form));
	/* not a connection to the source: not held to its pin */
	migrate_source_tls_suspend(tls, TRUE);
	http_client_request_submit(req);
	http_client_wait(client);
	http_client_deinit(&client);
	migrate_source_tls_suspend(tls, FALSE);

	if (gh->error != NULL) {
		*error_r = t_strdup(gh->error);
		return -1;
	}
	if (gh->too_large) {
		*error_r = t_strdup_printf("HTTP %u, and an answer over %u "
			"bytes", gh->status, GRANT_MAX_RESPONSE_SIZE);
		return -1;
	}
	return 0;
}

static void b64url_json(string_t *dest, const string_t *json)
{
	base64url_encode(BASE64_ENCODE_FLAG_NO_PADDING, SIZE_MAX,
			 str_data(json), str_len(json), dest);
}

/* RS256: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 3.3) of input. */
static int
grant_sign_rs256(const char *pem, const string_t *input, string_t *dest,
		 const char **error_r)
{
	EVP_PKEY *key = NULL;
	EVP_MD_CTX *md = NULL;
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	BIO *bio;
	int ret = -1;

	bio = BIO_new_mem_buf(pem, -1);
	if (bio != NULL)
		key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (key == NULL || EVP_PKEY_base_id(key) != EVP_PKEY_RSA) {
		*error_r = "its private_key is no RSA key in PEM";
		EVP_PKEY_free(key);
		return -1;
	}
	md = EVP_MD_CTX_new();
	if (md != NULL &&
	    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
	    EVP_DigestSign(md, NULL, &sig_len, str_data(input),
			   str_len(input)) == 1) {
		sig = i_malloc(sig_len);
		if (EVP_DigestSign(md, sig, &sig_len, str_data(input),
				   str_len(input)) == 1) {
			base64url_encode(BASE64_ENCODE_FLAG_NO_PADDING,
					 SIZE_MAX, sig, sig_len, dest);
			ret = 0;
		}
	}
	if (ret < 0)
		*error_r = "signing with its private_key failed";
	i_free(sig);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(key);
	return ret;
}

/* The service account's key file: the JWT assertion for user, and where
   to send it (the setting, else the file's token_uri). */
static int
grant_service_account_form(const struct migrate_settings *set,
			   const char *user, string_t *form,
			   const char **url_r, const char **error_r)
{
	struct json_tree *tree;
	const struct json_tree_node *root;
	const char *email, *key, *key_id, *token_uri, *error;
	struct migrate_json json;
	string_t *header, *claims, *jwt, *input;
	int ret = -1;

	if (migrate_json_parse(set->source_oauth2_secret,
			       strlen(set->source_oauth2_secret), &tree,
			       &error) < 0) {
		*error_r = t_strdup_printf("%s: not a JSON key file (%s)",
			MIGRATE_SETTING_SOURCE_OAUTH2_SERVICE_ACCOUNT_FILE,
			error);
		return -1;
	}
	root = json_tree_root(tree);
	email = migrate_json_node_str(root, "client_email");
	key = migrate_json_node_str(root, "private_key");
	key_id = migrate_json_node_str(root, "private_key_id");
	token_uri = migrate_json_node_str(root, "token_uri");
	*url_r = set->source_oauth2_token_url != NULL ?
		set->source_oauth2_token_url : t_strdup(token_uri);
	if (email == NULL || key == NULL) {
		*error_r = t_strdup_printf("%s: no client_email or "
			"private_key: not a service account's key",
			MIGRATE_SETTING_SOURCE_OAUTH2_SERVICE_ACCOUNT_FILE);
	} else if (*url_r == NULL || !str_begins(*url_r, "https://")) {
		*error_r = t_strdup_printf("%s: its token_uri is no https:// "
			"URL (or set %s)",
			MIGRATE_SETTING_SOURCE_OAUTH2_SERVICE_ACCOUNT_FILE,
			MIGRATE_SETTING_SOURCE_OAUTH2_TOKEN_URL);
	} else {
		header = t_str_new(128);
		migrate_json_init(&json, header);
		migrate_json_object_begin(&json, NULL);
		migrate_json_string(&json, "alg", "RS256");
		migrate_json_string(&json, "typ", "JWT");
		if (key_id != NULL)
			migrate_json_string(&json, "kid", key_id);
		migrate_json_object_end(&json);
		claims = t_str_new(256);
		migrate_json_init(&json, claims);
		migrate_json_object_begin(&json, NULL);
		migrate_json_string(&json, "iss", email);
		migrate_json_string(&json, "sub", user);
		migrate_json_string(&json, "scope", set->source_oauth2_scope);
		migrate_json_string(&json, "aud", *url_r);
		migrate_json_int(&json, "iat", ioloop_time);
		migrate_json_int(&json, "exp",
				 ioloop_time + GRANT_ASSERTION_SECS);
		migrate_json_object_end(&json);

		jwt = t_str_new(1024);
		b64url_json(jwt, header);
		str_append_c(jwt, '.');
		b64url_json(jwt, claims);
		input = t_str_new(str_len(jwt));
		str_append_str(input, jwt);
		str_append_c(jwt, '.');
		if (grant_sign_rs256(key, input, jwt, &error) < 0) {
			*error_r = t_strdup_printf("%s: %s",
				MIGRATE_SETTING_SOURCE_OAUTH2_SERVICE_ACCOUNT_FILE,
				error);
		} else {
			migrate_oauth2_form_add(form, "grant_type",
				"urn:ietf:params:oauth:grant-type:jwt-bearer");
			migrate_oauth2_form_add(form, "assertion", str_c(jwt));
			ret = 0;
		}
		safe_memset(str_c_modifiable(jwt), 0, str_len(jwt));
	}
	if (key != NULL)
		safe_memset((void *)key, 0, strlen(key));
	json_tree_deinit(&tree);
	return ret;
}

int migrate_source_grant_obtain(struct migrate_source *source,
				const char *user, pool_t pool,
				struct migrate_oauth2_token *token_r,
				enum migrate_error *code_r,
				const char **error_r)
{
	struct ssl_iostream_settings ssl_set;

	i_zero(&ssl_set);
	mail_user_init_ssl_client_settings(source->dest_user, &ssl_set);
	return migrate_grant_request(source->set, &ssl_set, source->event,
				     source->tls, user, pool, token_r,
				     code_r, error_r);
}

int migrate_grant_request(const struct migrate_settings *set,
			  const struct ssl_iostream_settings *ssl_set,
			  struct event *event, struct migrate_source_tls *tls,
			  const char *user, pool_t pool,
			  struct migrate_oauth2_token *token_r,
			  enum migrate_error *code_r, const char **error_r)
{
	struct grant_http gh;
	const char *url, *error, *what;
	string_t *form;
	bool refused;
	int ret;

	*code_r = MIGRATE_ERROR_CONFIG;
	if (set->source_oauth2_secret == NULL) {
		*error_r = t_strdup_printf("The secret of the OAuth2 grant "
			"was not read (%s or %s: doveadm migrate reads it as "
			"root)", MIGRATE_SETTING_SOURCE_OAUTH2_CLIENT_SECRET_FILE,
			MIGRATE_SETTING_SOURCE_OAUTH2_SERVICE_ACCOUNT_FILE);
		return -1;
	}
	form = t_str_new(2048);
	if (set->source_oauth2_grant == MIGRATE_OAUTH2_GRANT_SERVICE_ACCOUNT) {
		what = "the service-account grant";
		if (grant_service_account_form(set, user, form, &url,
					       error_r) < 0)
			return -1;
	} else {
		i_assert(set->source_oauth2_grant ==
			 MIGRATE_OAUTH2_GRANT_CLIENT_CREDENTIALS);
		what = "the client-credentials grant";
		url = set->source_oauth2_token_url;
		migrate_oauth2_form_add(form, "grant_type",
					"client_credentials");
		migrate_oauth2_form_add(form, "client_id",
					set->source_oauth2_client_id);
		migrate_oauth2_form_add(form, "client_secret",
					set->source_oauth2_secret);
		migrate_oauth2_form_add(form, "scope",
					set->source_oauth2_scope);
	}

	i_zero(&gh);
	gh.body = buffer_create_dynamic(default_pool, 1024);
	ret = grant_post(ssl_set, event, tls, url, form, &gh, &error);
	safe_memset(str_c_modifiable(form), 0, str_len(form));
	io_loop_time_refresh();
	if (ret == 0) {
		ret = migrate_oauth2_token_response_parse(gh.status,
			gh.body->data, gh.body->used, ioloop_time, pool,
			token_r, &refused, &error);
	} else {
		refused = FALSE;
	}
	safe_memset(buffer_get_modifiable_data(gh.body, NULL), 0,
		    gh.body->used);
	buffer_free(&gh.body);
	i_free(gh.error);
	if (ret < 0) {
		/* the grant refused: as a refused login, never tried again
		   in this run */
		*code_r = refused ? MIGRATE_ERROR_SOURCE_AUTH :
			MIGRATE_ERROR_TEMP;
		*error_r = t_strdup_printf("The token endpoint %s %s %s for "
			"%s: %s", url, refused ? "refused" : "failed", what,
			user, error);
		return -1;
	}
	return 0;
}
