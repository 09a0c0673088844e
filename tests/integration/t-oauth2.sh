#!/bin/bash
# t-oauth2.sh - a source that takes OAuth2 access tokens (issue 19): a
# private Dovecot whose oauth2 passdb validates HS256 tokens locally
# (rig_start_source --oauth2); doveadm migrate logs in with
# migrate_source_auth = xoauth2 or oauthbearer and the token as the source
# password, on the storage's connection and on its own.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-oauth2

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Src!oauth2pw'
DEST_PW='Dest!pass1'

rig_start_source src --oauth2 || exit 1
rig_start_dest dest || exit 1
[ "$RIG_HAVE_PLUGIN" = 1 ] && [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ] ||
	rig_die "the migrate modules are not built"
rig_add_user src alice "$SRC_PW"
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
tap_run "gen-corpus seeds the source (over a password login)" \
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user alice \
	--password-env SRC_IMAP_PASSWORD --seed 11 --messages 120 \
	--manifest "$RIG/manifest"

rig_dest_plugin_set dest migrate_source_host 127.0.0.1
rig_dest_plugin_set dest migrate_source_port "$(rig_port src)"
rig_dest_plugin_set dest migrate_source_ssl no
# each destination account reads alice's mailbox with its own token
token_user() {   # token_user USER AUTH TTL
	local token
	token=$(rig_oauth2_token src alice "$3")
	rig_add_user dest "$1@example.com" "$DEST_PW" userdb_migrate_source_user=alice \
		"userdb_migrate_source_auth=$2" \
		"userdb_migrate_source_password_file=$(rig_password_file "$1-token" "$token")"
}
token_user xo xoauth2 900
token_user ob oauthbearer 900
token_user old xoauth2 -60

compare() {   # compare DEST_USER [SOURCE_USER]
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user "${2:-alice}" \
		--dest-port "$(rig_port dest)" --dest-user "$1@example.com"
}
declare -A MIG
migrate() { rig_migrate_user dest "$1@example.com" "${@:2}"; }
SRC_LOG=$(rig_log src)
logins() {   # logins METHOD: alice's logins with it so far
	grep -c "Login: user=<alice>, method=$1," "$SRC_LOG"
}

for mech in XOAUTH2:xo OAUTHBEARER:ob; do
	m=${mech%%:*} u=${mech#*:}
	before=$(logins "$m") plain=$(logins PLAIN)
	migrate "$u"
	n=$(( $(logins "$m") - before )) plain=$(( $(logins PLAIN) - plain ))
	tap_is "$MIG_RC/${MIG[result]}" "0/ok" "$m: the token logs in, exit 0"
	tap_run "checker: $m copy equals the source" compare "$u"
	tap_run "... over the storage's connection and ours, and a worker's: $n $m logins" \
		test "$n" -ge 2
	tap_is "$plain" 0 "... and no password login"
done

# an expired token: refused, exit 77, once (never retried; imapc hangs up
# on the server's XOAUTH2 error challenge)
refused() { grep -c 'Disconnected: .*method=XOAUTH2,' "$SRC_LOG"; }
failed=$(refused)
migrate old -o plugin/migrate_retries=3
tap_is "$MIG_RC" 77 "an expired token is a refused login: exit 77"
tap_is "$(( $(refused) - failed ))" 1 "... after one attempt, not retried"

# --- the token command (migrate_source_oauth2_token_command) ----------------------
# it mints a token for its last argument, logs its arguments (never a
# token) and says nothing of the lifetime: the JWT's exp tells it
TOKDIR=$RIG/tokcmd
mkdir -p "$TOKDIR"
cp "$RIG/src/oauth2.key" "$TOKDIR/key"
# the mail user runs it: a copy of the minting tool, where it can read it
# (a checkout may sit under a directory only root enters)
cp "$T/oauth2-token.py" "$TOKDIR/"
: >"$TOKDIR/calls"
echo 900 >"$TOKDIR/ttl"
cat >"$TOKDIR/get-token" <<EOF
#!/bin/sh
echo "\$*" >>"$TOKDIR/calls"
id -un >>"$TOKDIR/uids"
exec "$PY" "$TOKDIR/oauth2-token.py" --key-file "$TOKDIR/key" --sub "\$1" --ttl "\$(cat "$TOKDIR/ttl")"
EOF
chmod 755 "$TOKDIR/get-token"
# the mail user runs it
chmod 777 "$TOKDIR"
chmod 644 "$TOKDIR/key" "$TOKDIR/ttl" "$TOKDIR/oauth2-token.py"
: >"$TOKDIR/uids"
chmod 666 "$TOKDIR/calls" "$TOKDIR/uids"
calls() { wc -l <"$TOKDIR/calls"; }
rig_add_user dest "tc@example.com" "$DEST_PW" userdb_migrate_source_user=alice \
	userdb_migrate_source_auth=xoauth2 \
	"userdb_migrate_source_oauth2_token_command=$TOKDIR/get-token"
before=$(logins XOAUTH2)
migrate tc -o plugin/migrate_workers=2
tap_is "$MIG_RC/${MIG[result]}" "0/ok" "a token command gives the token: exit 0"
tap_run "checker: the copy equals the source" compare tc
tap_is "$(sort -u "$TOKDIR/calls")" "alice" "... run with the source user as its only argument"
tap_is "$(sort -u "$TOKDIR/uids")" "${RIG_MAIL_USER:-nobody}" "... as the mail user, not root"
n=$(calls)
tap_run "... once per process (the owner and its worker): $n runs" test "$n" -ge 1 -a "$n" -le 2
n=$(( $(logins XOAUTH2) - before ))
tap_run "... its token logged in: $n XOAUTH2 logins" test "$n" -ge 2

# a command that fails, and one that prints no token: exit 75, named
printf '#!/bin/sh\necho "invalid_grant: AADSTS50173" >&2\nexit 1\n' >"$TOKDIR/fail"
printf '#!/bin/sh\necho\n' >"$TOKDIR/empty"
chmod 755 "$TOKDIR/fail" "$TOKDIR/empty"
migrate tc -o "plugin/migrate_source_oauth2_token_command=$TOKDIR/fail"
tap_is "$MIG_RC" 75 "a token command that fails: exit 75"
tap_like "... named, with its error output" 'invalid_grant: AADSTS50173(.|\n)*token command for alice.*it failed' "$(cat "$MIG_OUT")"
migrate tc -o "plugin/migrate_source_oauth2_token_command=$TOKDIR/empty"
tap_like "a token command that prints no token: named" \
	'token command for alice .migrate_source_oauth2_token_command.: Its first line is empty' "$(cat "$MIG_OUT")"
migrate tc -o "plugin/migrate_source_oauth2_token_command=$TOKDIR/nonexistent"
tap_is "$MIG_RC" 78 "a token command that is not there: exit 78"

# A token that expires in the middle of the copy: it lives 6 s, and our
# connection stalls for 9 s, then is cut; its next login (and every later
# one) takes a new token, obtained before the old one expired.
"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user alice --password-env SRC_IMAP_PASSWORD \
	--seed 12 --messages 300 >/dev/null 2>&1 ||
	tap_fail "gen-corpus: more mail for the long copy"
PPORT=$(rig_free_port)
PLAN=$RIG/plan.json
echo '{"connections": {"2": {"action": "stall", "after_bytes": 200000, "secs": 9, "then": "close"}}}' >"$PLAN"
"$PY" "$T/faultproxy.py" --port "$PPORT" --target-port "$(rig_port src)" --plan "$PLAN" \
	--log "$RIG/proxy.log" --pidfile "$RIG/proxy.pid" --daemon || rig_die "faultproxy did not start"
rig_on_exit 'kill "$(cat "$RIG/proxy.pid")" 2>/dev/null'
echo 6 >"$TOKDIR/ttl"
rig_add_user dest "te@example.com" "$DEST_PW" userdb_migrate_source_user=alice \
	userdb_migrate_source_auth=xoauth2 userdb_migrate_source_port="$PPORT" \
	"userdb_migrate_source_oauth2_token_command=$TOKDIR/get-token"
: >"$TOKDIR/calls"
failed=$(refused)
migrate te -o plugin/migrate_workers=1 -o plugin/migrate_retry_delay=1s \
	-o plugin/migrate_batch_messages=20
tap_is "$MIG_RC/${MIG[result]}" "0/ok" "a token that expires mid-copy: exit 0"
tap_run "checker: the copy equals the source, nothing twice" compare te
tap_like "... the connection was stalled and cut" '"event": *"stall"' "$(cat "$RIG/proxy.log")"
n=$(calls)
tap_run "... the token was replaced: $n tokens" test "$n" -ge 2
tap_is "$(( $(refused) - failed ))" 0 "... and no login was refused"
tap_is "$(grep -c 'leaked' "$MIG_OUT")" 0 "... nothing of the kept token leaked at the end"

# --- a sync template: a source_auth column, an empty password ---------------------
echo 900 >"$TOKDIR/ttl"
rig_dest_plugin_set dest migrate_source_oauth2_token_command "$TOKDIR/get-token"
rig_add_user dest "tb1@example.com" "$DEST_PW"
rig_add_user dest "tb2@example.com" "$DEST_PW"
rig_add_user src bob "$SRC_PW"
"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user bob --password-env SRC_IMAP_PASSWORD \
	--seed 13 --messages 40 >/dev/null 2>&1 || tap_fail "gen-corpus: bob's mail"
TMPL=$RIG/oauth2.csv
{
	echo "source_host,source_user,source_password,dest_host,dest_user,dest_password,source_auth"
	echo "127.0.0.1:$(rig_port src),alice,,mx,tb1@example.com,$DEST_PW,XOAUTH2"
	echo "127.0.0.1:$(rig_port src),bob,$SRC_PW,mx,tb2@example.com,$DEST_PW,"
} >"$TMPL"
rig_secret_input "$TMPL"
: >"$TOKDIR/calls"
rc=0
rig_doveadm dest migrate check "$TMPL" >"$RIG/check.out" 2>&1 || rc=$?
tap_is "$rc" 0 "check: the token row and the password row log in: exit 0"
tap_is "$(grep -c . "$TOKDIR/calls")" 1 "... the token command ran for the token row only"
rc=0
rig_doveadm dest migrate batch --retries 0 "$TMPL" >"$RIG/batch.out" 2>&1 || rc=$?
tap_is "$rc" 0 "batch: both rows migrated: exit 0"
tap_run "checker: the token row's copy equals the source" compare tb1
tap_run "checker: the password row's copy equals the source" compare tb2 bob
# a later run reads the row's login from the credential store
before=$(logins XOAUTH2)
migrate tb1 -o plugin/migrate_workers=1
tap_is "$MIG_RC/$(( $(logins XOAUTH2) - before ))" "0/2" \
	"migrate -u of the token row: XOAUTH2 again, from the stored credentials"
# check names a token command that fails, row by row
printf '#!/bin/sh\necho "unauthorized_client" >&2\nexit 1\n' >"$TOKDIR/deny"
chmod 755 "$TOKDIR/deny"
rig_dest_plugin_set dest migrate_source_oauth2_token_command "$TOKDIR/deny"
rc=0
rig_doveadm dest migrate check "$TMPL" >"$RIG/check2.out" 2>&1 || rc=$?
tap_run "check: a token command that fails fails its row: exit $rc" test "$rc" -ne 0
tap_like "... naming the command" 'tb1@example.com.*token command for alice' "$(cat "$RIG/check2.out")"
tap_like "... the password row is still ok" 'tb2@example.com.*ok' "$(cat "$RIG/check2.out")"
rig_dest_plugin_set dest migrate_source_oauth2_token_command "$TOKDIR/get-token"

# Dovecot's POP3 client has USER/PASS only
migrate xo -o plugin/migrate_source_protocol=pop3
tap_is "$MIG_RC" 78 "migrate_source_auth = xoauth2 with POP3: exit 78"
tap_like "... the error names both settings" \
	'migrate_source_auth = xoauth2 works over IMAP only' "$(cat "$MIG_OUT")"

tap_done
