#!/bin/bash
# t-rig.sh - self-test of the rig and the tools with stock Dovecot only:
# seed a source, copy it with Dovecot's own dsync over imapc, and check that
# imap-compare finds the copy equal, and finds each kind of difference.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-rig

PY=$RIG_PY
T=$RIG_TOOLS
N=300

rig_start_source src || exit 1
rig_start_dest dest || exit 1
rig_add_user src alice 'src secret'
rig_add_user dest alice 'dest secret' userdb_quota_rule=*:storage=500M
export SRC_IMAP_PASSWORD='src secret' DEST_IMAP_PASSWORD='dest secret'

exits_1() {
	local rc=0
	"$@" || rc=$?
	[ $rc = 1 ]
}

doveadm_lists_migrate() {
	rig_doveadm dest help 2>&1 | grep -q '^ *migrate'
}

compare() {
	"$PY" "$T/imap-compare.py" \
		--src-port "$(rig_port src)" --src-user alice \
		--dest-port "$(rig_port dest)" --dest-user alice "$@"
}

# --- seeding --------------------------------------------------------------
tap_run "gen-corpus seeds $N messages" \
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user alice \
	--password-env SRC_IMAP_PASSWORD --seed 42 --messages $N --manifest "$RIG/manifest"
tap_diag "$TAP_OUT"
total=0
while read -r folder; do
	n=$(rig_imap src alice 'src secret' count "$folder")
	want=$(awk -F '\t' -v f="$folder" '$1 == f' "$RIG/manifest" | wc -l)
	[ "$n" = "$want" ] || tap_diag "folder $folder: $n messages, manifest says $want"
	total=$((total + n))
done < <(rig_imap src alice 'src secret' list | grep -v '^Ação$')
tap_is "$total" "$N" "source folders hold the manifest's messages"

"$PY" "$T/gen-corpus.py" --dry-run --seed 42 --messages $N >"$RIG/dry" 2>/dev/null
tap_run "the corpus is reproducible (dry run = loaded manifest)" cmp "$RIG/dry" "$RIG/manifest"

list=$(rig_imap src alice 'src secret' list --long)
tap_like "source has nested, non-ASCII and special-use folders" \
	$'\\\\Sent\t/\tSent' "$list"
tap_like "source lists Ação/Caixa and 日本語 decoded" $'Ação/Caixa\n(.*\n)*.*日本語|日本語(.*\n)*.*Ação/Caixa' "$list"
caps=$(rig_imap src alice 'src secret' capability)
tap_like "source advertises CONDSTORE, SPECIAL-USE, MULTIAPPEND" \
	'CONDSTORE.*MULTIAPPEND.*SPECIAL-USE' "$caps"

# --- copy with dsync over imapc ------------------------------------------
# the imapc password comes from a 0600 file read by the config parser
printf '%s' 'src secret' >"$RIG/imapc.secret"
chmod 600 "$RIG/imapc.secret"
rig_secret_input "$RIG/imapc.secret"
rig_conf_add dest "imapc_host = 127.0.0.1
imapc_port = $(rig_port src)
imapc_user = alice
imapc_password = <$RIG/imapc.secret
imapc_features = rfc822.size fetch-headers modseq"
start=${EPOCHREALTIME/./}
tap_run "dsync backup -R over imapc copies the account" \
	rig_doveadm dest backup -R -u alice imapc:
tap_diag "dsync took $(((${EPOCHREALTIME/./} - start) / 1000)) ms"

tap_run "imap-compare: source and copy are equal" compare
tap_diag "$(printf '%s\n' "$TAP_OUT" | tail -n 1)"
tap_run "imap-compare --check-uids --subscriptions: dsync kept UIDs" \
	compare --check-uids --subscriptions -q
dlist=$(rig_imap dest alice 'dest secret' list --long)
tap_like "destination has the special-use folders" $'\\\\Junk\t/\tJunk' "$dlist"

# --- the checker must be able to fail -------------------------------------
printf 'From: rig@example.com\r\nTo: alice@example.com\r\nSubject: local\r\nMessage-ID: <local.1@rig.test>\r\n\r\ndelivered locally\r\n' >"$RIG/local.eml"
last=$(rig_imap dest alice 'dest secret' uids INBOX | tail -n 1)
tap_run "LMTP delivery into the destination" rig_deliver dest alice "$RIG/local.eml"
TAP_EXPECT_RC=1 tap_run_fails "imap-compare reports the delivered message as extra" compare
tap_like "... as 'extra' in INBOX" 'INBOX: extra [0-9a-f]{12} dest uid' "$TAP_OUT"
uid=$(rig_imap dest alice 'dest secret' uids INBOX | tail -n 1)
tap_run "--allow-extra-dest-uid INBOX:$uid tolerates it" compare --allow-extra-dest-uid "INBOX:$uid"
hash=$(rig_imap dest alice 'dest secret' fetch-hash INBOX --uids "$uid" | awk '{print $2}')
tap_run "--allow-extra-dest-hash tolerates it" compare --allow-extra-dest-hash "${hash:0:16}"
TAP_EXPECT_RC=1 tap_run_fails "an unrelated allowed hash does not" compare --allow-extra-dest-hash 0123456789abcdef
# (only the delivered one: when delivery failed, "last" is a copied message)
[ "$uid" != "$last" ] && rig_imap dest alice 'dest secret' expunge INBOX --uids "$uid"

rig_imap src alice 'src secret' set-flags "Relatórios" --first 1 --mode add --flags '\Flagged $Forwarded'
TAP_EXPECT_RC=1 tap_run_fails "a flag change at the source makes them differ" compare
tap_like "... reported as 'differs' with the flags" \
	'Relatórios: differs [0-9a-f]{12} src uid 1, dest uid 1: flags .*\$Forwarded.*\\Flagged' "$TAP_OUT"
tap_like "... and counted in the summary" 'DIFFERENT:.*1 differ' "$TAP_OUT"
rig_imap src alice 'src secret' set-flags "Relatórios" --first 1 --mode remove --flags '\Flagged $Forwarded'
tap_run "undoing the flag change makes them equal again" compare -q

rig_imap dest alice 'dest secret' expunge "Work/Projects/2021" --first 2
TAP_EXPECT_RC=1 tap_run_fails "expunged destination messages are missing" compare
tap_like "... two of them, in Work/Projects/2021" 'messages [0-9]+ src / [0-9]+ dest \(2 missing' "$TAP_OUT"
rig_imap dest alice 'dest secret' rename-folder "日本語" "Nihongo"
TAP_EXPECT_RC=1 tap_run_fails "a renamed folder is missing and extra" compare
tap_like "... by its decoded names" 'missing folder: 日本語.*' "$TAP_OUT"
tap_like "... and the extra one" 'extra folder: Nihongo' "$TAP_OUT"
tap_run "--map '日本語=Nihongo' pairs them again (the 2 expunged still differ)" \
	exits_1 compare --map '日本語=Nihongo'
tap_like "... with no folder differences" 'folders [0-9]+ compared \(0 missing, 0 extra' "$TAP_OUT"
DEST_IMAP_PASSWORD=wrong TAP_EXPECT_RC=2 tap_run_fails "a wrong password is an error (exit 2)" \
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" \
	--src-user alice --dest-port "$(rig_port dest)" --dest-user alice

# --- destination plumbing ---------------------------------------------------
tap_run "doveadm (through the private mount namespace) sees the userdb" \
	rig_doveadm dest user alice
tap_like "... with the quota_rule userdb field" 'quota_rule[[:space:]]+\*:storage=500M' "$TAP_OUT"
tap_run "doveadm quota get works on the destination" rig_doveadm dest quota get -u alice
rig_dest_plugin_set dest migrate_rig_test 'a value'
tap_is "$(doveconf -c "$(rig_conf dest)" -h plugin/migrate_rig_test)" "a value" \
	"rig_dest_plugin_set reaches the plugin {} block"
rig_dest_plugin_set dest migrate_rig_test 'another value'
tap_is "$(doveconf -c "$(rig_conf dest)" -h plugin/migrate_rig_test)" "another value" \
	"... and the last value wins"
TAP_EXPECT_RC=1 tap_run_fails "LMTP rejects an unknown user (5xx)" rig_deliver dest nobody-here "$RIG/local.eml"
if [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ]; then
	tap_run "our doveadm module is visible to doveadm" doveadm_lists_migrate
fi

# --- Courier-style source: '.' separator, INBOX. prefix ---------------------
rig_start_source cour --sep . --prefix INBOX. || exit 1
rig_add_user cour bob 'bob pw'
rig_add_user src carol 'carol pw'
# passwords in the environment (env VAR=... would show them in its argv)
IMAP_PASSWORD='bob pw' tap_run "gen-corpus seeds a Courier-style account" \
	"$PY" "$T/gen-corpus.py" --port "$(rig_port cour)" \
	--user bob --seed 7 --messages 60
clist=$(rig_imap cour bob 'bob pw' list)
tap_like "imaptool lists INBOX.Work.Projects.2021" $'(^|\n)INBOX\\.Work\\.Projects\\.2021(\n|$)' "$clist"
tap_like "imaptool lists INBOX.Relatórios decoded" $'(^|\n)INBOX\\.Relatórios(\n|$)' "$clist"
tap_like "imaptool lists INBOX.Ação.Caixa" $'(^|\n)INBOX\\.Ação\\.Caixa(\n|$)' "$clist"
IMAP_PASSWORD='carol pw' tap_run "the same corpus into a '/' account" \
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" \
	--user carol --seed 7 --messages 60
SRC_IMAP_PASSWORD='bob pw' DEST_IMAP_PASSWORD='carol pw' \
	tap_run "imap-compare maps INBOX. and '.' to '/' (Courier vs Dovecot)" \
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port cour)" --src-user bob \
	--dest-port "$(rig_port src)" --dest-user carol --subscriptions
tap_like "... over all 16 folders" 'folders 16 compared' "$TAP_OUT"

# --- an OAuth2 source -------------------------------------------------------
# Dovecot's own oauth2 passdb, validating the tokens of tools/oauth2-token.py
# locally: the stand-in for Microsoft 365's and Google's IMAP logins.
rig_start_source oa --oauth2 || exit 1
rig_add_user oa dave 'dave pw'
# oauth_login MECH USER: logs in with $TOKEN (from the environment, never
# an argument), prints OK and the folders, or NO and the reason
oauth_login() { rig_oauth2_login oa "$@"; }
tap_like "oauth2 source: XOAUTH2 with a valid token logs in" \
	"^OK .*INBOX" "$(TOKEN=$(rig_oauth2_token oa dave) oauth_login XOAUTH2 dave)"
tap_like "... OAUTHBEARER too" "^OK .*INBOX" \
	"$(TOKEN=$(rig_oauth2_token oa dave) oauth_login OAUTHBEARER dave)"
tap_like "... a token that expired is refused" "^NO .*AUTHENTICATIONFAILED" \
	"$(TOKEN=$(rig_oauth2_token oa dave -60) oauth_login XOAUTH2 dave)"
tap_like "... a token signed with another key is refused" "^NO .*AUTHENTICATIONFAILED" \
	"$(TOKEN=$(rig_oauth2_token oa dave 300 --bad-signature) oauth_login XOAUTH2 dave)"
tap_like "... another user's token is refused" "^NO .*AUTHENTICATIONFAILED" \
	"$(TOKEN=$(rig_oauth2_token oa erin) oauth_login XOAUTH2 dave)"
tap_like "... the password still logs in" $'(^|\n)INBOX(\n|$)' \
	"$(rig_imap oa dave 'dave pw' list)"

tap_done
