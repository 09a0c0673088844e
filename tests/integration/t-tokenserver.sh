#!/bin/bash
# t-tokenserver.sh - the tests' own OAuth2 token endpoint (issue 19):
# tools/tokenserver.py over HTTPS with a test CA (tests/lib/rig-oauth2.sh).
# Its Microsoft-style client-credentials grant gives one app token that a
# rig_start_source --oauth2-app source takes for every user; its
# Google-style service-account grant (an RS256 assertion, signed here with
# the openssl CLI) gives a token for the one user it names.  curl is the
# client (--cacert the test CA, never -k; secrets and assertions from
# files or stdin, never on a command line); python's imaplib logs in with
# the tokens (AUTHENTICATE XOAUTH2 / OAUTHBEARER, the token from the
# environment).  The tokens and assertions are registered secrets: under
# run-tests.sh they must turn up in no file, log or command line.

. "$(dirname "$0")/../lib/rig.sh"
. "$(dirname "$0")/../lib/rig-oauth2.sh"
rig_init t-tokenserver

PY=$RIG_PY
TENANT=8f2c6a1e-5b7d-4e3a-9c1f-2d4b6e8a0c13
CLIENT_ID=3b9e7d21-6c4f-4a8e-b2d5-7f1a9c3e5b80
MS_SECRET='Rig8Q~tokenserver.Secret_t3st-42'
SA=migrate@rig-project.iam.gserviceaccount.com
MS_SCOPE=https://outlook.office365.com/.default
JWT_GRANT=urn:ietf:params:oauth:grant-type:jwt-bearer

rig_start_source src --oauth2-app || exit 1
for u in alice bob carol; do
	rig_add_user src "$u" "Pw-$u-t0kenserver"
done
rig_start_tokenserver ts --source src --ms-tenant "$TENANT" --ms-client-id "$CLIENT_ID" \
	--ms-client-secret "$MS_SECRET" --google-client-email "$SA" \
	--google-allowed-user alice --google-allowed-user bob || exit 1
CA=$(rig_tokenserver_ca ts)
URL=$(rig_tokenserver_url ts)
MS_URL=$(rig_tokenserver_ms_url ts)
G_URL=$(rig_tokenserver_google_url ts)
LOG=$(rig_tokenserver_log ts)
SECRET_FILE=$RIG/ts/ms-client-secret
printf '%s' 'Rig8Q~not.the.secret_99' >"$RIG/wrong-secret"

# post URL [curl args]: a POST (the test CA, no -k); the body, then the
# HTTP status on a line of its own
post() {
	local url=$1
	shift
	curl -sS --cacert "$CA" -w '\n%{http_code}' "$@" "$url"
}
# ms_grant SECRET_FILE [curl args]: the client-credentials grant
ms_grant() {
	local f=$1
	shift
	post "$MS_URL" --data-urlencode grant_type=client_credentials \
		--data-urlencode "client_id=$CLIENT_ID" --data-urlencode "client_secret@$f" \
		--data-urlencode "scope=$MS_SCOPE" "$@"
}
# google_grant: the assertion on stdin to the jwt-bearer grant
google_grant() {
	post "$G_URL" --data-urlencode "grant_type=$JWT_GRANT" --data-urlencode assertion@-
}
# summary: a reply (post's output, on stdin) as "STATUS key=value ...",
# the token only as "jwt", Azure AD's description only its first line
summary() {
	"$PY" -c '
import json, sys
body, _, status = sys.stdin.read().rpartition("\n")
try:
    d = json.loads(body)
except ValueError:
    print(status, "not-json")
    sys.exit()
out = [status]
for k in sorted(d):
    v = d[k]
    if k == "access_token":
        v = "jwt" if isinstance(v, str) and v.count(".") == 2 else "bad"
    elif k == "error_description":
        v = v.split("\r\n")[0]
    elif k in ("trace_id", "correlation_id", "timestamp", "error_uri"):
        continue
    out.append("%s=%s" % (k, json.dumps(v, separators=(",", ":")) if not isinstance(v, str) else v))
print(" ".join(out))'
}
# token_of: the access token of a reply on stdin
token_of() {
	"$PY" -c 'import json, sys; print(json.loads(sys.stdin.read().rpartition("\n")[0])["access_token"])'
}
# claims: the claims of $TOKEN, JSON with sorted keys, exp - iat as "ttl"
# and without the times
claims() {
	"$PY" -c '
import base64, json, os
p = os.environ["TOKEN"].split(".")[1]
c = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
c["ttl"] = c["exp"] - c["iat"]
for k in ("iat", "nbf", "exp"):
    c.pop(k, None)
print(json.dumps(c, sort_keys=True, separators=(",", ":")))'
}
# oauth_login MECH USER: logs in to src with $TOKEN, prints OK or NO and
# the reason
oauth_login() { rig_oauth2_login src "$@"; }

# --- TLS ----------------------------------------------------------------------
tap_run "the token server answers over TLS, verified with the test CA" \
	curl -sS --cacert "$CA" -o /dev/null "$URL/stats"
TAP_EXPECT_RC=60 tap_run_fails "... curl without the test CA refuses its certificate (60)" \
	curl -sS -o /dev/null "$URL/stats"
tap_run "... the certificate names localhost too" \
	curl -sS --cacert "$CA" -o /dev/null "https://localhost:$(rig_port ts)/stats"
tap_run "... openssl verifies it as a TLS server certificate of the CA" \
	openssl verify -purpose sslserver -CAfile "$CA" "$RIG/ts/server.pem"

# --- Microsoft: client credentials, one token for every mailbox ---------------
R=$(ms_grant "$SECRET_FILE")
tap_is "$(printf '%s' "$R" | summary)" \
	"200 access_token=jwt expires_in=3600 ext_expires_in=3600 token_type=Bearer" \
	"client credentials: 200, a Bearer token for 3600 s, as Microsoft answers"
APP=$(printf '%s' "$R" | token_of)
rig_secret "$APP" "app token"
tap_is "$(TOKEN=$APP claims)" \
	"{\"appid\":\"$CLIENT_ID\",\"aud\":\"https://outlook.office365.com\",\"iss\":\"https://sts.windows.net/$TENANT/\",\"scope\":\"IMAP.AccessAsApp\",\"sub\":\"$CLIENT_ID\",\"tid\":\"$TENANT\",\"ttl\":3600,\"ver\":\"1.0\"}" \
	"... the token names the app, not a user"
tap_like "the app token logs in as alice (XOAUTH2)" "^OK .*INBOX" \
	"$(TOKEN=$APP oauth_login XOAUTH2 alice)"
tap_like "... and as bob" "^OK .*INBOX" "$(TOKEN=$APP oauth_login XOAUTH2 bob)"
tap_like "... and as carol (OAUTHBEARER)" "^OK .*INBOX" \
	"$(TOKEN=$APP oauth_login OAUTHBEARER carol)"
tap_is "$(rig_tokenserver_requests ts client_credentials)" 1 \
	"1 client-credentials request for 3 accounts"
tap_like "... logged with status, tenant and client id" \
	" POST /$TENANT/oauth2/v2.0/token grant=client_credentials status=200 result=ok tenant=$TENANT client_id=$CLIENT_ID n=1\$" \
	"$(grep ' grant=client_credentials ' "$LOG")"

tap_like "a wrong secret: 401 invalid_client (AADSTS7000215)" \
	"^401 error=invalid_client error_codes=\[7000215\] error_description=AADSTS7000215: Invalid client secret provided" \
	"$(ms_grant "$RIG/wrong-secret" | summary)"
tap_like "no secret: 401 invalid_client (AADSTS7000218)" \
	"^401 error=invalid_client error_codes=\[7000218\]" \
	"$(post "$MS_URL" --data-urlencode grant_type=client_credentials \
		--data-urlencode "client_id=$CLIENT_ID" --data-urlencode "scope=$MS_SCOPE" | summary)"
tap_like "the secret in HTTP Basic (client_secret_basic) works too" \
	"^200 access_token=jwt " \
	"$(post "$MS_URL" -K <(printf 'user = "%s:%s"\n' "$CLIENT_ID" "$MS_SECRET") \
		--data-urlencode grant_type=client_credentials \
		--data-urlencode "scope=$MS_SCOPE" | summary)"
tap_like "an unknown tenant: 400 invalid_request (AADSTS90002)" \
	"^400 error=invalid_request error_codes=\[90002\] error_description=AADSTS90002: Tenant 'contoso.example' not found" \
	"$(MS_URL=$(rig_tokenserver_ms_url ts contoso.example) ms_grant "$SECRET_FILE" | summary)"
tap_like "an unknown client id: 400 unauthorized_client (AADSTS700016)" \
	"^400 error=unauthorized_client error_codes=\[700016\]" \
	"$(post "$MS_URL" --data-urlencode grant_type=client_credentials \
		--data-urlencode client_id=00000000-0000-0000-0000-000000000000 \
		--data-urlencode "client_secret@$SECRET_FILE" --data-urlencode "scope=$MS_SCOPE" | summary)"
tap_like "another scope: 400 invalid_scope" "^400 error=invalid_scope error_codes=\[1002012\]" \
	"$(post "$MS_URL" --data-urlencode grant_type=client_credentials \
		--data-urlencode "client_id=$CLIENT_ID" --data-urlencode "client_secret@$SECRET_FILE" \
		--data-urlencode scope=https://graph.microsoft.com/.default | summary)"
tap_like "grant_type=password: 400 unsupported_grant_type" \
	"^400 error=unsupported_grant_type error_codes=\[70003\]" \
	"$(post "$MS_URL" --data-urlencode grant_type=password \
		--data-urlencode "client_id=$CLIENT_ID" --data-urlencode "client_secret@$SECRET_FILE" \
		--data-urlencode "scope=$MS_SCOPE" | summary)"
tap_like "a parameter given twice: 400 invalid_request" "^400 error=invalid_request " \
	"$(ms_grant "$SECRET_FILE" --data-urlencode "scope=$MS_SCOPE" | summary)"
tap_like "a body over 64 KiB: 413" "^413 " \
	"$(head -c 70000 /dev/zero | tr '\0' a | post "$MS_URL" --data-binary @- | summary)"
tap_is "$(rig_tokenserver_requests ts client_credentials ok)" 2 \
	"2 client-credentials tokens issued, the plain and the Basic one"

# --- Google: a service account impersonates one user --------------------------
tap_is "$("$PY" -c '
import json, os, stat, sys
f = sys.argv[1]
k = json.load(open(f))
print(oct(stat.S_IMODE(os.stat(f).st_mode)), k["type"], k["client_email"], k["token_uri"],
      k["private_key"].startswith("-----BEGIN PRIVATE KEY-----\n"), len(k["private_key_id"]))' \
	"$(rig_tokenserver_google_key ts)")" "0o600 service_account $SA $G_URL True 40" \
	"the service-account key file: 0600, Google's format, token_uri the server"
A=$(rig_google_assertion ts alice)
rig_secret "$A" "assertion alice"
R=$(printf '%s' "$A" | google_grant)
tap_is "$(printf '%s' "$R" | summary)" "200 access_token=jwt expires_in=3600 token_type=Bearer" \
	"jwt-bearer grant: 200, a Bearer token for 3600 s, as Google answers"
GTOK=$(printf '%s' "$R" | token_of)
rig_secret "$GTOK" "alice's token"
tap_is "$(TOKEN=$GTOK claims)" \
	'{"email":"alice","iss":"https://accounts.google.com","scope":"https://mail.google.com/","sub":"alice","ttl":3600}' \
	"... a token for alice"
tap_like "alice's token logs in as alice (XOAUTH2)" "^OK .*INBOX" \
	"$(TOKEN=$GTOK oauth_login XOAUTH2 alice)"
tap_like "... not as bob" "^NO .*AUTHENTICATIONFAILED" "$(TOKEN=$GTOK oauth_login XOAUTH2 bob)"
# (a success resets Dovecot's auth penalty of the failure: 2 s)
tap_like "... and as alice again (OAUTHBEARER)" "^OK .*INBOX" \
	"$(TOKEN=$GTOK oauth_login OAUTHBEARER alice)"
tap_like "... logged with iss and sub" \
	" POST /token grant=jwt_bearer status=200 result=ok iss=$SA sub=alice n=1\$" \
	"$(grep ' grant=jwt_bearer ' "$LOG")"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$RIG/other-key.pem" 2>/dev/null ||
	rig_die "openssl genpkey failed"
rig_secret_input "$RIG/other-key.pem"
# g_case TEXT REGEX [rig_google_assertion args]: the grant with such an
# assertion answers as REGEX says
g_case() {
	local text=$1 re=$2 a
	shift 2
	a=$(rig_google_assertion ts "$@")
	rig_secret "$a" "assertion: $text"
	tap_like "$text" "$re" "$(printf '%s' "$a" | google_grant | summary)"
}
g_case "signed with another key: 400 invalid_grant" \
	"^400 error=invalid_grant error_description=Invalid JWT Signature\.\$" alice --key "$RIG/other-key.pem"
B=$(rig_google_assertion ts bob)
rig_secret "$B" "assertion bob"
tap_like "alice's signature over bob's claims: 400 invalid_grant" \
	"^400 error=invalid_grant error_description=Invalid JWT Signature\.\$" \
	"$(b=${B#*.} && printf '%s.%s.%s' "${A%%.*}" "${b%%.*}" "${A##*.}" | google_grant | summary)"
g_case "a user not allowed: 401 unauthorized_client" \
	"^401 error=unauthorized_client error_description=Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested\.\$" \
	carol
g_case "a scope without https://mail.google.com/: 401 unauthorized_client" \
	"^401 error=unauthorized_client " alice --scope https://www.googleapis.com/auth/calendar
g_case "no scope: 400 invalid_scope" "^400 error=invalid_scope " alice --scope ''
g_case "an expired assertion: 400 invalid_grant" \
	"^400 error=invalid_grant error_description=Invalid JWT: Token must be a short-lived token" \
	alice --iat $(($(date +%s) - 7200)) --ttl 3600
g_case "an assertion for over an hour: 400 invalid_grant" \
	"^400 error=invalid_grant error_description=Invalid JWT: Token must be a short-lived token" \
	alice --ttl 3700
g_case "an assertion from the future: 400 invalid_grant" \
	"^400 error=invalid_grant error_description=Invalid JWT: Token must be a short-lived token" \
	alice --iat $(($(date +%s) + 600))
g_case "another audience: 400 invalid_grant" \
	"^400 error=invalid_grant error_description=Invalid JWT: Failed audience check" \
	alice --aud https://oauth2.example.com/token
g_case "another service account: 400 invalid_grant" \
	"^400 error=invalid_grant error_description=Invalid grant: account not found\$" \
	alice --iss other@rig-project.iam.gserviceaccount.com
g_case "no sub: 400 invalid_grant" "^400 error=invalid_grant " alice --no-sub
tap_like "a malformed assertion: 400 invalid_grant" "^400 error=invalid_grant " \
	"$(printf 'not.a.jwt' | google_grant | summary)"
tap_like "grant_type=client_credentials at /token: 400 unsupported_grant_type" \
	"^400 error=unsupported_grant_type " \
	"$(post "$G_URL" --data-urlencode grant_type=client_credentials | summary)"
tap_is "$(rig_tokenserver_requests ts jwt_bearer ok)/$(rig_tokenserver_requests ts jwt_bearer)" \
	"1/13" "1 of 13 jwt-bearer requests issued a token"

# --- counts and the log ---------------------------------------------------------
S=$(curl -sS --cacert "$CA" "$URL/stats")
tap_is "$(printf '%s' "$S" | "$PY" -c 'import json, sys; d = json.load(sys.stdin)["requests"]; print(d["client_credentials"], d["jwt_bearer"], d["other"])')" \
	"$(rig_tokenserver_requests ts client_credentials) $(rig_tokenserver_requests ts jwt_bearer) $(rig_tokenserver_requests ts other)" \
	"GET /stats counts what the log lists"
tap_is "$(grep -c ' POST ' "$LOG")" 24 "one log line per token request (24)"
leaks=$(grep -cF -f <(printf '%s\n' "$MS_SECRET" 'Rig8Q~not.the.secret_99' "$APP" "$GTOK" "$A" "$B" \
	"${APP##*.}" "${GTOK##*.}" "${A##*.}") "$LOG")
tap_is "$leaks" 0 "the log has no secret, token, assertion or signature"

# --- token lifetime ---------------------------------------------------------------
rig_start_tokenserver ts2 --source src --ttl 2 --ms-tenant "$TENANT" --ms-client-id "$CLIENT_ID" \
	--ms-client-secret "$MS_SECRET" || exit 1
R=$(MS_URL=$(rig_tokenserver_ms_url ts2) CA=$(rig_tokenserver_ca ts2) ms_grant "$RIG/ts2/ms-client-secret")
issued=$(date +%s.%N)
SHORT=$(printf '%s' "$R" | token_of)
rig_secret "$SHORT" "2 s token"
tap_like "--ttl 2: expires_in 2" "^200 access_token=jwt expires_in=2 ext_expires_in=2 " \
	"$(printf '%s' "$R" | summary)"
tap_like "... the token logs in at once" "^OK .*INBOX" "$(TOKEN=$SHORT oauth_login XOAUTH2 alice)"
sleep "$("$PY" -c 'import sys, time; print(max(0, float(sys.argv[1]) + 3 - time.time()))' "$issued")"
tap_like "... and is refused 3 s later" "^NO .*AUTHENTICATIONFAILED" \
	"$(TOKEN=$SHORT oauth_login XOAUTH2 alice)"
rig_stop_tokenserver ts2
tap_run_fails "rig_stop_tokenserver stops it" \
	curl -sS --cacert "$(rig_tokenserver_ca ts2)" -o /dev/null "$(rig_tokenserver_url ts2)/stats"

# --- Dovecot's own HTTP client ------------------------------------------------------
# lib-http with TLS, as the plugin will use it: the oauth2 passdb's
# password grant (after the passwd-file passdb refused the password) posts
# to the server, trusting the test CA, and gets its JSON error back
GRANT_PW='Grant-pw!t0kenserver'
rig_secret "$GRANT_PW" "password sent to the password grant"
cat >"$RIG/src/grant.conf.ext" <<EOF
grant_url = $MS_URL
use_grant_password = yes
client_id = $CLIENT_ID
client_secret = not-the-secret
tls_ca_cert_file = $CA
username_attribute = sub
introspection_mode = local
local_validation_key_dict = fs:posix:prefix=$RIG/src/oauth2-keys/
EOF
chgrp dovecot "$RIG/src/grant.conf.ext"
chmod 640 "$RIG/src/grant.conf.ext"
before=$(rig_tokenserver_requests ts other unsupported_grant_type)
rig_conf_add src "passdb {
  driver = oauth2
  mechanisms = plain
  args = $RIG/src/grant.conf.ext
}" || rig_die "rig_conf_add failed"
tap_run_fails "Dovecot's password grant to the server: the login fails" \
	rig_imap src alice "$GRANT_PW" capability
tap_is "$(($(rig_tokenserver_requests ts other unsupported_grant_type) - before))" 1 \
	"... after 1 request over TLS, verified with the test CA (lib-http)"
tap_like "... Dovecot read the server's JSON error" \
	"Password grant failed: unsupported_grant_type" "$(grep 'oauth2 failed' "$(rig_log src)")"

tap_done
