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

compare() {
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user alice \
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

# Dovecot's POP3 client has USER/PASS only
migrate xo -o plugin/migrate_source_protocol=pop3
tap_is "$MIG_RC" 78 "migrate_source_auth = xoauth2 with POP3: exit 78"
tap_like "... the error names both settings" \
	'migrate_source_auth = xoauth2 works over IMAP only' "$(cat "$MIG_OUT")"

tap_done
