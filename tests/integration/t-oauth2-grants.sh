#!/bin/bash
# t-oauth2-grants.sh - the OAuth2 grants of issue 19, with real parts: the
# tests' own HTTPS token endpoint (tools/tokenserver.py, a CA of its own,
# tests/lib/rig-oauth2.sh) and a private Dovecot source whose oauth2 passdb
# takes its tokens (rig_start_source --oauth2-app).  Microsoft's
# client-credentials grant (migrate_source_oauth2_client_id, a root-only
# secret file) and Google's service account (its JSON key file): the
# copies, the secrets kept out of everything, the grant's refusals named
# (77, one attempt), check, and a token that expires mid-copy.

. "$(dirname "$0")/../lib/rig.sh"
. "$(dirname "$0")/../lib/rig-oauth2.sh"
rig_init t-oauth2-grants

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Src!grant5pw'
DEST_PW='Dest!pass1'
MS_SECRET='Ms~Cl13nt.S3cr3t_x'

rig_start_source src --oauth2-app || exit 1
rig_start_dest dest || exit 1
[ "$RIG_HAVE_PLUGIN" = 1 ] && [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ] ||
	rig_die "the migrate modules are not built"
rig_secret "$MS_SECRET" "the client secret"
rig_start_tokenserver tok --source src --ttl 900 \
	--ms-tenant contoso --ms-client-id app-1 --ms-client-secret "$MS_SECRET" \
	--google-client-email migrator@proj.iam.gserviceaccount.com || exit 1
# a second endpoint whose service account may read alice's mail only,
# and a third whose tokens live 6 s
rig_start_tokenserver tok2 --source src --ttl 900 \
	--google-client-email narrow@proj.iam.gserviceaccount.com --google-allowed-user alice || exit 1
rig_start_tokenserver tok3 --source src --ttl 6 \
	--ms-tenant contoso --ms-client-id app-1 --ms-client-secret "$MS_SECRET" || exit 1
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
for u in alice bob; do
	rig_add_user src "$u" "$SRC_PW"
done
tap_run "gen-corpus seeds alice" "$PY" "$T/gen-corpus.py" --port "$(rig_port src)" \
	--user alice --password-env SRC_IMAP_PASSWORD --seed 21 --messages 80
tap_run "gen-corpus seeds bob" "$PY" "$T/gen-corpus.py" --port "$(rig_port src)" \
	--user bob --password-env SRC_IMAP_PASSWORD --seed 22 --messages 30

# the destination trusts the token endpoint's CA (lib-http takes Dovecot's
# TLS client settings)
cat "$(rig_tokenserver_ca tok)" "$(rig_tokenserver_ca tok2)" "$(rig_tokenserver_ca tok3)" >"$RIG/cas.pem"
rig_conf_add dest "ssl_client_ca_file = $RIG/cas.pem"
rig_dest_plugin_set dest migrate_source_host 127.0.0.1
rig_dest_plugin_set dest migrate_source_port "$(rig_port src)"
rig_dest_plugin_set dest migrate_source_ssl no
rig_dest_plugin_set dest migrate_source_auth xoauth2

# the secret, in a file only root reads
SECRET_FILE=$RIG/ms-secret
printf '%s\n' "$MS_SECRET" >"$SECRET_FILE"
chmod 600 "$SECRET_FILE"
rig_secret_input "$SECRET_FILE"
SA_FILE=$RIG/google-sa.json
cp "$(rig_tokenserver_google_key tok)" "$SA_FILE"
chown root:root "$SA_FILE"
chmod 600 "$SA_FILE"
rig_secret_input "$SA_FILE"

ms_user() {   # ms_user DEST SOURCE_USER [more userdb fields]
	rig_add_user dest "$1@example.com" "$DEST_PW" "userdb_migrate_source_user=$2" \
		"userdb_migrate_source_oauth2_client_id=app-1" \
		"userdb_migrate_source_oauth2_client_secret_file=$SECRET_FILE" \
		"userdb_migrate_source_oauth2_token_url=$(rig_tokenserver_ms_url tok)" "${@:3}"
}
g_user() {   # g_user DEST SOURCE_USER [more userdb fields]
	rig_add_user dest "$1@example.com" "$DEST_PW" "userdb_migrate_source_user=$2" \
		"userdb_migrate_source_oauth2_service_account_file=$SA_FILE" "${@:3}"
}
compare() {   # compare DEST_USER SOURCE_USER
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user "$2" \
		--dest-port "$(rig_port dest)" --dest-user "$1@example.com"
}
declare -A MIG
migrate() {   # migrate USER (USER@example.com, or a full address)
	local u=$1
	[[ $u == *@* ]] || u=$u@example.com
	rig_migrate_user dest "$u" "${@:2}"
}
SRC_LOG=$(rig_log src)
logins() { grep -c "Login: user=<$1>, method=XOAUTH2," "$SRC_LOG"; }
refused() { grep -c "method=XOAUTH2, .*auth failed\|Disconnected: .*method=XOAUTH2," "$SRC_LOG"; }
requests() { rig_tokenserver_requests tok "$@"; }

# --- Microsoft: client credentials, one token for every mailbox -----------------
ms_user ma alice
ms_user mb bob
before=$(logins alice)
migrate ma -o plugin/migrate_workers=2
tap_is "$MIG_RC/${MIG[result]}" "0/ok" "client credentials: the app token logs in, exit 0"
tap_run "checker: alice's copy equals the source" compare ma alice
n=$(( $(logins alice) - before ))
tap_run "... XOAUTH2 logins as alice: $n" test "$n" -ge 2
n=$(requests client_credentials ok)
tap_run "... one token request per process (the account's and its worker's): $n" \
	test "$n" -ge 1 -a "$n" -le 2
migrate mb -o plugin/migrate_workers=1
tap_is "$MIG_RC/${MIG[result]}" "0/ok" "... the same grant reads bob's mailbox"
tap_run "checker: bob's copy equals the source" compare mb bob

# a batch: one app token for all its accounts (doveadm migrate's cache,
# root's alone), and none asked for while it is fresh
ms_user mc1 alice
ms_user mc2 bob
TMPL_MS=$RIG/ms.csv
{
	echo "source_host,source_user,source_password,dest_host,dest_user,dest_password,source_auth"
	echo "127.0.0.1:$(rig_port src),alice,,mx,mc1@example.com,$DEST_PW,xoauth2"
	echo "127.0.0.1:$(rig_port src),bob,,mx,mc2@example.com,$DEST_PW,xoauth2"
} >"$TMPL_MS"
rig_secret_input "$TMPL_MS"
# (the runs above filled the cache: empty it)
rm -rf "$RIG/dest/state/migrate/oauth2-tokens"
before=$(requests client_credentials)
rc=0
rig_doveadm dest migrate batch -j 2 --retries 0 "$TMPL_MS" >"$RIG/bms.out" 2>&1 || rc=$?
tap_is "$rc/$(( $(requests client_credentials) - before ))" "0/1" \
	"batch of 2 accounts: exit 0, one app token asked for both"
tap_run "checker: bob's copy equals the source" compare mc2 bob
cache=$(ls "$RIG"/dest/state/migrate/oauth2-tokens/ 2>/dev/null | grep -v lock | head -n1)
tap_is "$(stat -c '%U %a' "$RIG/dest/state/migrate/oauth2-tokens/$cache" 2>&1)" "root 600" \
	"... kept in a file only root reads"
before=$(requests client_credentials)
rig_add_user dest "mc3@example.com" "$DEST_PW" userdb_migrate_source_user=alice \
	"userdb_migrate_source_oauth2_client_id=app-1" \
	"userdb_migrate_source_oauth2_client_secret_file=$SECRET_FILE" \
	"userdb_migrate_source_oauth2_token_url=$(rig_tokenserver_ms_url tok)"
migrate mc3 -o plugin/migrate_workers=2
tap_is "$MIG_RC/$(( $(requests client_credentials) - before ))" "0/0" \
	"a later run of another account (and its worker) takes the same token: none asked for"

# refused: a wrong secret is the grant's error, a refused login (77), once
BAD_FILE=$RIG/ms-secret-bad
printf 'not-the-secret\n' >"$BAD_FILE"
chmod 600 "$BAD_FILE"
ms_user mbad alice "userdb_migrate_source_oauth2_client_secret_file=$BAD_FILE"
before=$(requests client_credentials invalid_client)
migrate mbad -o plugin/migrate_retries=3 -o plugin/migrate_workers=1
tap_is "$MIG_RC" 77 "a wrong client secret: exit 77 (a refused login)"
tap_like "... naming the grant's error" \
	'refused the client-credentials grant for alice: HTTP 401: invalid_client: AADSTS7000215' \
	"$(cat "$MIG_OUT")"
tap_is "$(( $(requests client_credentials invalid_client) - before ))" 1 "... asked once, not retried"
# a secret file others may read: refused before anything (78)
OPEN_FILE=$RIG/ms-secret-open
printf '%s\n' "$MS_SECRET" >"$OPEN_FILE"
chmod 644 "$OPEN_FILE"
rig_secret_input "$OPEN_FILE"
ms_user mopen alice "userdb_migrate_source_oauth2_client_secret_file=$OPEN_FILE"
before=$(requests client_credentials)
migrate mopen
tap_is "$MIG_RC" 78 "a secret file others may read: exit 78"
tap_like "... named" 'migrate_source_oauth2_client_secret_file: .*ms-secret-open must be a file only its owner' \
	"$(cat "$MIG_OUT")"
tap_is "$(( $(requests client_credentials) - before ))" 0 "... and the endpoint was not asked"

# --- Google: a service account, one token per mailbox ---------------------------
g_user ga alice
before=$(logins alice)
migrate ga -o plugin/migrate_workers=2
tap_is "$MIG_RC/${MIG[result]}" "0/ok" "service account: the token for alice logs in, exit 0"
tap_run "checker: alice's copy equals the source" compare ga alice
n=$(requests jwt_bearer ok)
tap_run "... the endpoint took our RS256 assertion: $n tokens" test "$n" -ge 1
# a user the service account may not impersonate (another endpoint whose
# account may read alice's mail only): the grant's error, 77, once
SA2_FILE=$RIG/google-sa2.json
cp "$(rig_tokenserver_google_key tok2)" "$SA2_FILE"
chown root:root "$SA2_FILE"
chmod 600 "$SA2_FILE"
rig_secret_input "$SA2_FILE"
g_user gb bob "userdb_migrate_source_oauth2_service_account_file=$SA2_FILE"
migrate gb -o plugin/migrate_retries=3 -o plugin/migrate_workers=1
tap_is "$MIG_RC" 77 "a mailbox the service account may not read: exit 77"
tap_like "... naming the grant's error" \
	'refused the service-account grant for bob: HTTP 40[01]: unauthorized_client' "$(cat "$MIG_OUT")"
tap_is "$(rig_tokenserver_requests tok2 jwt_bearer unauthorized_client)" 1 "... asked once"
g_user gc alice "userdb_migrate_source_oauth2_service_account_file=$SA2_FILE"
migrate gc -o plugin/migrate_workers=1
tap_is "$MIG_RC/${MIG[result]}" "0/ok" "... while alice's is read"

# --- check: a refused grant fails its row only --------------------------------------
TMPL=$RIG/grants.csv
{
	echo "source_host,source_user,source_password,dest_host,dest_user,dest_password,source_auth"
	echo "127.0.0.1:$(rig_port src),alice,,mx,ma@example.com,$DEST_PW,xoauth2"
	echo "127.0.0.1:$(rig_port src),bob,,mx,gb@example.com,$DEST_PW,xoauth2"
} >"$TMPL"
rig_secret_input "$TMPL"
rc=0
rig_doveadm dest migrate check "$TMPL" >"$RIG/check.out" 2>&1 || rc=$?
tap_run "check: the refused row fails the check: exit $rc" test "$rc" -ne 0
tap_like "... ma@example.com: ok" 'ma@example.com[^\n]*ok' "$(cat "$RIG/check.out")"
tap_like "... gb@example.com: the grant's error" 'gb@example.com.*unauthorized_client' "$(cat "$RIG/check.out")"

# --- a token that expires in the middle of the copy ---------------------------------
# the endpoint's tokens live 6 s; our connection (behind the fault proxy)
# stalls for 9 s and is cut; its next login takes a new token
"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user bob --password-env SRC_IMAP_PASSWORD \
	--seed 23 --messages 250 >/dev/null 2>&1 || tap_fail "gen-corpus: more of bob's mail"
PPORT=$(rig_free_port)
echo '{"connections": {"2": {"action": "stall", "after_bytes": 200000, "secs": 9, "then": "close"}}}' >"$RIG/plan.json"
"$PY" "$T/faultproxy.py" --port "$PPORT" --target-port "$(rig_port src)" --plan "$RIG/plan.json" \
	--log "$RIG/proxy.log" --pidfile "$RIG/proxy.pid" --daemon || rig_die "faultproxy did not start"
rig_on_exit 'kill "$(cat "$RIG/proxy.pid")" 2>/dev/null'
ms_user me bob "userdb_migrate_source_port=$PPORT" \
	"userdb_migrate_source_oauth2_token_url=$(rig_tokenserver_ms_url tok3)"
failed=$(refused)
migrate me -o plugin/migrate_workers=1 -o plugin/migrate_retry_delay=1s
tap_is "$MIG_RC/${MIG[result]}" "0/ok" "a token that expires mid-copy: exit 0"
tap_run "checker: the copy equals the source, nothing twice" compare me bob
tap_like "... the connection was stalled" '"event": *"stall"' "$(cat "$RIG/proxy.log")"
n=$(rig_tokenserver_requests tok3 client_credentials ok)
tap_run "... the token was renewed: $n tokens" test "$n" -ge 2
tap_is "$(( $(refused) - failed ))" 0 "... and no login was refused"

# --- a pinned source (check --pin) and the grant's HTTPS ----------------------------
# the source over STARTTLS with a certificate of its own, pinned for
# pin.test; the service-account grant asks the endpoint (another
# certificate) while the source's pin is held: the endpoint's connection
# is not held to it
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=127.0.0.1" \
	-addext "subjectAltName=IP:127.0.0.1" -keyout "$RIG/src-key.pem" \
	-out "$RIG/src-cert.pem" 2>/dev/null || rig_die "openssl failed"
rig_conf_add src "ssl = yes
ssl_cert = <$RIG/src-cert.pem
ssl_key = <$RIG/src-key.pem" || rig_die "TLS for the source"
rig_add_user dest "gp@pin.test" "$DEST_PW" userdb_migrate_source_user=alice \
	"userdb_migrate_source_oauth2_service_account_file=$SA_FILE" \
	userdb_migrate_source_ssl=starttls userdb_migrate_source_ssl_verify=no
PIN_TMPL=$RIG/pin.csv
{
	echo "source_host,source_user,source_password,dest_host,dest_user,dest_password,source_auth"
	echo "127.0.0.1:$(rig_port src),alice,,mx,gp@pin.test,$DEST_PW,xoauth2"
} >"$PIN_TMPL"
rig_secret_input "$PIN_TMPL"
rc=0
rig_doveadm dest migrate check --pin "$PIN_TMPL" >"$RIG/pin.out" 2>&1 || rc=$?
tap_is "$rc" 0 "check --pin of the TLS source, over the service-account grant"
tap_like "... pinned" "source 127.0.0.1:$(rig_port src): pinned SHA-256 [0-9A-F:]+ for pin.test" "$(cat "$RIG/pin.out")"
migrate gp@pin.test -o plugin/migrate_workers=1
tap_is "$MIG_RC/${MIG[result]}" "0/ok" "a sync of the pinned source: the grant's HTTPS is not held to the pin, exit 0"

# --- nothing of the secrets anywhere ------------------------------------------------
tap_is "$(grep -c -F "$MS_SECRET" "$(rig_tokenserver_log tok)" "$RIG"/mig.* "$(rig_log dest)" 2>/dev/null | awk -F: '{ s += $NF } END { print s + 0 }')" \
	0 "the client secret is in no log and no output"
tap_is "$(grep -l 'PRIVATE KEY' "$RIG"/mig.* "$(rig_log dest)" 2>/dev/null | wc -l)" 0 \
	"the service account's key is in no log and no output"

tap_done
