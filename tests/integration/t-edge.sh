#!/bin/bash
# t-edge.sh - a Courier-style source ('.' separator, INBOX. prefix) with
# Portuguese and Spanish folder names, include/exclude, refused keywords,
# an unreachable source, a destination over quota, and debug logging that
# must not show the password.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-edge

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Edge;pass=1'
DEST_PW='Edge!dest2'

rig_start_source src --sep . --prefix INBOX. || exit 1
rig_start_dest dest || exit 1
for u in dave erin frank; do
	rig_add_user src "$u" "$SRC_PW"
done
rig_add_user dest dave@example.com "$DEST_PW" userdb_migrate_source_user=dave \
	userdb_migrate_exclude=INBOX.Junk*
rig_add_user dest erin@example.com "$DEST_PW" userdb_migrate_source_user=erin
rig_add_user dest frank@example.com "$DEST_PW" userdb_migrate_source_user=frank \
	userdb_quota_rule=*:storage=2M
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
rig_migrate_source dest src "$SRC_PW"

simap() { local u=$1; shift; rig_imap src "$u" "$SRC_PW" "$@"; }
dimap() { local u=$1; shift; rig_imap dest "$u@example.com" "$DEST_PW" "$@"; }
compare() {
	local u=$1
	shift
	"$PY" "$T/imap-compare.py" \
		--src-port "$(rig_port src)" --src-user "$u" \
		--dest-port "$(rig_port dest)" --dest-user "$u@example.com" "$@"
}
migrate() {
	MIG_OUT=$RIG/out.$1.$RANDOM
	MIG_RC=0
	rig_doveadm dest -f tab "${@:2}" >"$MIG_OUT" 2>&1 || MIG_RC=$?
	MIG_ROW=$(grep -A1 -m1 $'^user\tresult' "$MIG_OUT" | tail -n 1)
}
field() { cut -f"$1" <<<"$MIG_ROW"; }   # 8 copied, 14 flags_dropped

# --- Courier-style source, localized special folders ------------------------
tap_run "gen-corpus seeds a Courier-style INBOX. namespace" \
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user dave \
	--password-env SRC_IMAP_PASSWORD --seed 3 --messages 400 --max-size 1M
simap dave rename-folder INBOX.Sent 'INBOX.Itens Enviados' >/dev/null
simap dave rename-folder INBOX.Trash INBOX.Papelera >/dev/null
simap dave rename-folder INBOX.Drafts INBOX.Rascunhos >/dev/null
printf 'From: a@example.org\r\nSubject: one more\r\n\r\nOne more message.\r\n' >"$RIG/slash.eml"
tap_like "source uses INBOX. and '.'" $'INBOX\\.Work\\.Projects' "$(simap dave list)"

migrate dave migrate -u dave@example.com
tap_is "$MIG_RC" 0 "migrating from a Courier-style source exits 0"
dlist=$(dimap dave list)
if grep -qx Sent <<<"$dlist" && grep -qx Trash <<<"$dlist" &&
   grep -qx Drafts <<<"$dlist" && ! grep -qx -e 'Itens Enviados' -e Papelera \
	-e Rascunhos <<<"$dlist"; then
	tap_ok "Itens Enviados became Sent, Papelera Trash, Rascunhos Drafts"
else
	tap_fail "Itens Enviados became Sent, Papelera Trash, Rascunhos Drafts"
	tap_diag "$dlist"
fi
tap_like "nested folders use our separator" $'(^|\n)Work/Projects/2021(\n|$)' "$dlist"
if grep -qx 'Junk' <<<"$dlist"; then
	tap_fail "excluded INBOX.Junk was copied"
else
	tap_ok "excluded INBOX.Junk is not copied"
fi
tap_run "checker: equal through the prefix, separator and name mapping" \
	compare dave --map 'INBOX.Itens Enviados=Sent' --map 'INBOX.Papelera=Trash' \
	--map 'INBOX.Rascunhos=Drafts' --ignore-src-folder 'INBOX.Junk' \
	--escape-char _ --no-special-use
tap_diag "$(tail -n 2 <<<"$TAP_OUT")"

# --- special-use mapping off, and an include pattern -----------------------------
rig_add_user dest dora@example.com "$DEST_PW" userdb_migrate_source_user=dave \
	userdb_migrate_special_use=no "userdb_migrate_include=INBOX.Itens*"
migrate dora migrate -u dora@example.com
tap_is "$MIG_RC" 0 "a run with special-use mapping off and an include pattern exits 0"
dlist=$(dimap dora list)
if grep -qx 'Itens Enviados' <<<"$dlist" && ! grep -qx -e Sent -e Work <<<"$dlist"; then
	tap_ok "only the included folder is copied, under its own name"
else
	tap_fail "only the included folder is copied, under its own name"
	tap_diag "$dlist"
fi

# --- usage --------------------------------------------------------------------------
migrate dora migrate -u dora@example.com unexpected-argument
tap_is "$MIG_RC" 64 "an unexpected argument is a usage error (64)"

# --- debug logging shows no password ---------------------------------------------
simap dave append INBOX "$RIG/slash.eml" >/dev/null
migrate dave -D migrate -u dave@example.com
tap_is "$MIG_RC" 0 "a run with doveadm -D exits 0"
if grep -qFf <(printf '%s\n' "$SRC_PW" 'Edge;pass') "$MIG_OUT"; then
	tap_fail "debug output contains the source password"
else
	tap_ok "debug output ($(wc -l <"$MIG_OUT") lines) has no password"
fi
tap_like "the migrate category logs its named events" \
	'migrate: Synced INBOX(.|\n)*migrate: Finished: ' "$(cat "$MIG_OUT")"

# --- a keyword the destination refuses is dropped, the message kept ---------------
for i in 1 2 3; do
	printf 'From: k@example.org\r\nSubject: kw %s\r\n\r\nKeyword test %s\r\n' "$i" "$i" >"$RIG/kw$i.eml"
done
simap erin append --flags '\Seen a-much-too-long-keyword' INBOX "$RIG"/kw{1..3}.eml >/dev/null
rig_conf_add dest "mail_max_keyword_length = 12"
migrate erin migrate -u erin@example.com
tap_is "$MIG_RC" 0 "a refused keyword does not fail the run"
tap_is "$(field 8)/$(field 14)" 3/3 "3 messages copied, 3 keywords dropped and counted"
tap_like "the rest of the flags are kept" '\\Seen' "$(dimap erin fetch-hash INBOX)"
tap_run "checker: the messages are all there (flags aside)" compare erin --no-flags

# --- an admin (master) login at the source ----------------------------------------
printf 'admin:{PLAIN}Admin!pw9\n' >"$RIG/masters"
rig_secret 'Admin!pw9' "master user admin"
rig_secret_input "$RIG/masters"
chgrp dovecot "$RIG/masters" 2>/dev/null
chmod 640 "$RIG/masters"
rig_conf_add src "auth_master_user_separator = *
passdb {
  driver = passwd-file
  args = $RIG/masters
  master = yes
}"
rig_add_user dest ivan@example.com "$DEST_PW" userdb_migrate_source_user=erin \
	userdb_migrate_source_master_user=admin \
	"userdb_migrate_source_password_file=$(rig_password_file admin 'Admin!pw9')"
MIG_OUT=$RIG/out.ivan
MIG_RC=0
rig_doveadm dest -f tab migrate -u ivan@example.com >"$MIG_OUT" 2>&1 || MIG_RC=$?
tap_is "$MIG_RC" 0 "a master login (admin acting as erin) migrates erin's mail"
MIG_RC=0
rig_doveadm dest -o plugin/migrate_source_master_user= migrate \
	-u ivan@example.com >"$MIG_OUT.plain" 2>&1 || MIG_RC=$?
tap_is "$MIG_RC" 77 "control: the admin's password is not erin's (plain login refused)"
tap_is "$(rig_imap dest ivan@example.com "$DEST_PW" count INBOX)" 3 \
	"erin's 3 messages arrived through the master login"

# --- unreachable source --------------------------------------------------------------
closed=$(rig_free_port)
migrate erin -o "plugin/migrate_source_port=$closed" -o plugin/migrate_retries=0 \
	migrate -u erin@example.com
tap_is "$MIG_RC" 75 "an unreachable source exits 75 (tempfail)"
# retried with backoff (1 s, then 2 s), then given up
migrate erin -o "plugin/migrate_source_port=$closed" -o plugin/migrate_retries=2 \
	-o plugin/migrate_retry_delay=1s migrate -u erin@example.com
tap_is "$MIG_RC" 75 "an unreachable source, retried twice: still exits 75"
tap_like "the retries back off: 1 s, then 2 s" \
	'Retry 1 of 2 in 1 s.*Retry 2 of 2 in 2 s.*Giving up after 2 retries' \
	"$(tr '\n' ' ' <"$MIG_OUT")"
tap_is "$(field 19)" 2 "the summary counts 2 retries"

# --- destination over quota ------------------------------------------------------------
"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user frank \
	--password-env SRC_IMAP_PASSWORD --seed 5 --messages 300 --max-size 512K >/dev/null
migrate frank migrate -u frank@example.com
tap_is "$MIG_RC" 73 "a destination over quota exits 73"
tap_like "the error says quota" '[Qq]uota' "$(cat "$MIG_OUT")"
copied_before=$(dimap frank list | while read -r f; do dimap frank count "$f"; done |
	awk '{ s += $1 } END { print s + 0 }')
tap_like "what fitted was kept ($copied_before messages)" '^[1-9][0-9]*$' "$copied_before"
rig_add_user dest frank@example.com "$DEST_PW" userdb_migrate_source_user=frank \
	userdb_quota_rule=*:storage=1G
migrate frank migrate -u frank@example.com
tap_is "$MIG_RC" 0 "with more quota the re-run completes"
tap_is "$(field 8)" "$((300 - copied_before))" "the re-run copies only what was missing"
tap_run "checker: equal after the quota was raised" compare frank

tap_done
