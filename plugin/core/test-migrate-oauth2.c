/* Copyright (c) 2026 dovecot-migrate authors, see the included COPYING file */

#include "lib.h"
#include "str.h"
#include "base64.h"
#include "test-common.h"
#include "migrate-oauth2.h"
#include "test-migrate.h"

/* header.payload.signature, the payload's JSON as given */
static const char *test_jwt(const char *payload_json)
{
	string_t *str = t_str_new(128);

	str_append(str, "eyJhbGciOiJIUzI1NiJ9.");
	base64url_encode(BASE64_ENCODE_FLAG_NO_PADDING, SIZE_MAX,
			 payload_json, strlen(payload_json), str);
	str_append(str, ".c2ln");
	return str_c(str);
}

static void test_oauth2_output_parse(void)
{
	struct migrate_oauth2_token token;
	const char *error, *jwt;

	test_begin("oauth2 token command output");
	test_assert(migrate_oauth2_command_output_parse("ya29.a0Af-x_y~+/=\n",
		1000, pool_datastack_create(), &token, &error) == 0);
	test_assert_strcmp(token.token, "ya29.a0Af-x_y~+/=");
	test_assert(token.obtained == 1000 && !token.expiry_known);
	test_assert(token.expires == 1000 + MIGRATE_OAUTH2_DEFAULT_LIFETIME_SECS);

	/* the lifetime on the second line; CRLF; no final newline */
	test_assert(migrate_oauth2_command_output_parse("tok\r\n120\r\n",
		1000, pool_datastack_create(), &token, &error) == 0);
	test_assert_strcmp(token.token, "tok");
	test_assert(token.expires == 1120 && token.expiry_known);
	test_assert(migrate_oauth2_command_output_parse("tok", 5,
		pool_datastack_create(), &token, &error) == 0);
	test_assert_strcmp(token.token, "tok");
	/* an empty second line, then anything */
	test_assert(migrate_oauth2_command_output_parse("tok\n\nmore\n", 5,
		pool_datastack_create(), &token, &error) == 0);
	test_assert(!token.expiry_known);

	/* a JWT's exp, unless a second line says otherwise */
	jwt = test_jwt("{\"sub\":\"a\",\"exp\":4000}");
	test_assert(migrate_oauth2_command_output_parse(jwt, 1000,
		pool_datastack_create(), &token, &error) == 0);
	test_assert(token.expires == 4000 && token.expiry_known);
	test_assert(migrate_oauth2_command_output_parse(
		t_strconcat(jwt, "\n60\n", NULL), 1000,
		pool_datastack_create(), &token, &error) == 0);
	test_assert(token.expires == 1060);

	/* no token: the errors never quote the output */
	test_assert(migrate_oauth2_command_output_parse("", 0,
		pool_datastack_create(), &token, &error) < 0);
	test_assert(strstr(error, "empty") != NULL);
	test_assert(migrate_oauth2_command_output_parse("\nsecret\n", 0,
		pool_datastack_create(), &token, &error) < 0);
	test_assert(migrate_oauth2_command_output_parse("Bearer secret\n",
		0, pool_datastack_create(), &token, &error) < 0);
	test_assert(strstr(error, "secret") == NULL);
	test_assert(migrate_oauth2_command_output_parse("s\xc3\xa9\n", 0,
		pool_datastack_create(), &token, &error) < 0);
	test_assert(migrate_oauth2_command_output_parse("tok\n3599s\n", 0,
		pool_datastack_create(), &token, &error) < 0);
	test_assert(strstr(error, "second line") != NULL);
	test_assert(migrate_oauth2_command_output_parse("tok\n0\n", 0,
		pool_datastack_create(), &token, &error) < 0);
	test_end();
}

static void test_oauth2_jwt_exp(void)
{
	test_begin("oauth2 JWT exp");
	test_assert(migrate_oauth2_jwt_exp(test_jwt("{\"exp\":1700000000}")) ==
		    1700000000);
	test_assert(migrate_oauth2_jwt_exp(test_jwt("{\"sub\":\"x\"}")) == 0);
	test_assert(migrate_oauth2_jwt_exp(test_jwt("{\"exp\":\"soon\"}")) == 0);
	test_assert(migrate_oauth2_jwt_exp(test_jwt("[1,2]")) == 0);
	test_assert(migrate_oauth2_jwt_exp(test_jwt("not json")) == 0);
	test_assert(migrate_oauth2_jwt_exp("opaque-token") == 0);
	test_assert(migrate_oauth2_jwt_exp("a.b") == 0);
	test_assert(migrate_oauth2_jwt_exp("a.b.c.d") == 0);
	test_assert(migrate_oauth2_jwt_exp("a.!!!.c") == 0);
	test_end();
}

static void test_oauth2_refresh_at(void)
{
	struct migrate_oauth2_token token = {
		.token = "t", .obtained = 1000, .expires = 1000 + 3600
	};

	test_begin("oauth2 refresh time");
	/* an hour: five minutes before */
	test_assert(migrate_oauth2_refresh_at(&token) == 1000 + 3600 - 300);
	/* twelve seconds: three before */
	token.expires = 1012;
	test_assert(migrate_oauth2_refresh_at(&token) == 1009);
	/* expired when obtained (a JWT's exp in the past): now */
	token.expires = 900;
	test_assert(migrate_oauth2_refresh_at(&token) == 900);
	test_end();
}

static void test_oauth2_token_response(void)
{
	struct migrate_oauth2_token token;
	const char *error, *body;
	bool refused;

	test_begin("oauth2 token endpoint answers");
	body = "{\"token_type\":\"Bearer\",\"expires_in\":3599,"
		"\"ext_expires_in\":3599,\"access_token\":\"eyJ0.eyJ1.c2ln\"}";
	test_assert(migrate_oauth2_token_response_parse(200, body,
		strlen(body), 100, pool_datastack_create(), &token, &refused,
		&error) == 0);
	test_assert_strcmp(token.token, "eyJ0.eyJ1.c2ln");
	test_assert(token.expires == 3699 && token.expiry_known);
	/* Azure AD v1: a string */
	body = "{\"access_token\":\"t\",\"expires_in\":\"60\"}";
	test_assert(migrate_oauth2_token_response_parse(200, body,
		strlen(body), 100, pool_datastack_create(), &token, &refused,
		&error) == 0);
	test_assert(token.expires == 160);

	/* refused: the grant's error, named */
	body = "{\"error\":\"invalid_client\",\"error_description\":"
		"\"AADSTS7000215: Invalid client secret provided.\\u001b[2J\","
		"\"error_codes\":[7000215]}";
	test_assert(migrate_oauth2_token_response_parse(401, body,
		strlen(body), 100, pool_datastack_create(), &token, &refused,
		&error) < 0);
	test_assert(refused);
	test_assert_strcmp(error, "HTTP 401: invalid_client: AADSTS7000215: "
			   "Invalid client secret provided.\\x1b[2J");
	body = "{\"error\":\"unauthorized_client\"}";
	test_assert(migrate_oauth2_token_response_parse(400, body,
		strlen(body), 100, pool_datastack_create(), &token, &refused,
		&error) < 0);
	test_assert(refused);
	test_assert_strcmp(error, "HTTP 400: unauthorized_client");
	/* not refused: a server's trouble, a broken answer */
	body = "{\"error\":\"temporarily_unavailable\"}";
	test_assert(migrate_oauth2_token_response_parse(503, body,
		strlen(body), 100, pool_datastack_create(), &token, &refused,
		&error) < 0);
	test_assert(!refused);
	body = "<html>Bad gateway</html>";
	test_assert(migrate_oauth2_token_response_parse(502, body,
		strlen(body), 100, pool_datastack_create(), &token, &refused,
		&error) < 0);
	test_assert(!refused && str_begins(error, "HTTP 502, and no JSON"));
	body = "{\"access_token\":\"has space\"}";
	test_assert(migrate_oauth2_token_response_parse(200, body,
		strlen(body), 100, pool_datastack_create(), &token, &refused,
		&error) < 0);
	test_assert(strstr(error, "has space") == NULL);
	test_end();
}

static void test_oauth2_form(void)
{
	string_t *str = t_str_new(64);

	test_begin("oauth2 form encoding");
	migrate_oauth2_form_add(str, "grant_type", "client_credentials");
	migrate_oauth2_form_add(str, "client_secret", "a+b/c=d&e f~");
	migrate_oauth2_form_add(str, "scope",
				"https://outlook.office365.com/.default");
	test_assert_strcmp(str_c(str), "grant_type=client_credentials"
		"&client_secret=a%2Bb%2Fc%3Dd%26e+f~"
		"&scope=https%3A%2F%2Foutlook.office365.com%2F.default");
	test_end();
}

void test_migrate_oauth2(void)
{
	test_oauth2_token_response();
	test_oauth2_form();
	test_oauth2_output_parse();
	test_oauth2_jwt_exp();
	test_oauth2_refresh_at();
}
