#!/bin/bash
# t-continuity.sh - mail clients keep their caches: a folder the migration
# creates has the source's UIDVALIDITY and every message its source UID,
# large messages amid small ones included, copied by a worker, and new mail
# of later mirror runs keeps its UID too.  Proven with a real client:
# mbsync (isync) keeps a local Maildir copy of the account at the old
# server; the same channel, store and sync state pointed at us after the
# migration fetches only what is new and changes nothing.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-continuity

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Cont!src7'
DEST_PW='Cont!dst7'

rig_start_source src || exit 1
rig_start_dest dest || exit 1
rig_add_user src cy "$SRC_PW"
rig_add_user dest cy@example.com "$DEST_PW" userdb_migrate_source_user=cy
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
rig_migrate_source dest src "$SRC_PW"

compare() {
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user cy \
		--dest-port "$(rig_port dest)" --dest-user cy@example.com "$@"
}
large_message() {   # SUBJECT KB
	printf 'From: large@example.org\r\nSubject: %s\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n' "$1"
	head -c $(($2 * 1024)) /dev/urandom | base64 -w 76 | sed 's/$/\r/'
}

# mbsync_conf HOST-INSTANCE USER PASSWORD-FILE: one channel "cont" between
# the account and a local Maildir store with its own sync state; pointing
# the same channel at another server keeps the store and the state
command -v mbsync >/dev/null ||
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		isync >/dev/null 2>&1 || rig_die "the client test needs Debian's isync (mbsync)"
MB=$RIG/mbsync
mkdir -p "$MB/store"
mbsync_conf() {
	cat >"$MB/mbsyncrc" <<-EOF
	IMAPAccount acct
	Host 127.0.0.1
	Port $(rig_port "$1")
	User $2
	PassCmd "cat $3"
	SSLType None
	AuthMechs LOGIN

	IMAPStore far
	Account acct

	MaildirStore near
	Path $MB/store/
	Inbox $MB/store/INBOX
	SubFolders Verbatim

	Channel cont
	Far :far:
	Near :near:
	Patterns * "!Old Stuff"
	Create Near
	Expunge None
	Sync All
	SyncState *
	EOF
}
# mbsync_run LABEL TEXT: sync the channel (ok when mbsync exits 0), then
# MB_NEW: messages the local store got (files with a name it did not have;
# mbsync keeps a message's file and renames only its flag suffix, so a
# message downloaded again is a new name), MB_GONE: names it lost,
# MB_FLAGS: files whose flags changed
mbsync_inventory() {
	(cd "$MB/store" && find . -type f \( -path '*/cur/*' -o -path '*/new/*' \) |
		sed 's|/new/|/cur/|' | sort)
}
mbsync_run() {
	local rc=0
	mbsync_inventory >"$MB/before"
	mbsync -c "$MB/mbsyncrc" -V cont >"$MB/$1.log" 2>&1 || rc=$?
	tap_is "$rc" 0 "$2"
	[ "$rc" = 0 ] || tap_diag "$(tail -n 20 "$MB/$1.log")"
	mbsync_inventory >"$MB/after"
	sed 's/:2,.*//' "$MB/before" | sort -u >"$MB/before.names"
	sed 's/:2,.*//' "$MB/after" | sort -u >"$MB/after.names"
	MB_NEW=$(comm -13 "$MB/before.names" "$MB/after.names" | wc -l)
	MB_GONE=$(comm -23 "$MB/before.names" "$MB/after.names" | wc -l)
	MB_FLAGS=$(( $(comm -13 "$MB/before" "$MB/after" | wc -l) - MB_NEW ))
}
MB_SRC_PW=$(rig_password_file mbsync-src "$SRC_PW")
MB_DEST_PW=$(rig_password_file mbsync-dest "$DEST_PW")
chown root "$MB_SRC_PW" "$MB_DEST_PW"

# 3,000 messages, INBOX about 1,200 of them; messages above the piece-wise
# threshold (1 MB) amid the small ones, in INBOX and elsewhere
"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user cy \
	--password-env SRC_IMAP_PASSWORD --seed 17 --messages 3000 --max-size 1500K \
	--connections 2 >/dev/null || rig_die "gen-corpus"
for i in 1 2 3; do
	large_message "large $i" $((2000 + 200 * i)) >"$RIG/large$i.eml"
	rig_imap src cy "$SRC_PW" append INBOX "$RIG/large$i.eml" >/dev/null
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user cy \
		--password-env SRC_IMAP_PASSWORD --seed $((30 + i)) --messages 150 \
		--max-size 20K --connections 1 >/dev/null || rig_die "gen-corpus"
done
inbox=$(rig_imap src cy "$SRC_PW" count INBOX)
tap_diag "source INBOX: $inbox messages"

# a mail client keeps a copy of the account, as it has it at the old server
mbsync_conf src cy "$MB_SRC_PW"
mbsync_run src1 "mbsync syncs its local store from the source"
MB_FIRST=$MB_NEW

# before the migration the user logged in here once (INBOX exists, empty,
# with a UIDVALIDITY of its own), and "Old Stuff" already holds a message
# delivered here: its copies cannot keep their UIDs, and the dry run says
# so before anything is copied
declare -A MIG
rig_imap dest cy@example.com "$DEST_PW" count INBOX >/dev/null
printf 'From: local@example.com\r\nSubject: here first\r\n\r\nlocal\r\n' >"$RIG/local.eml"
rig_imap dest cy@example.com "$DEST_PW" append --create 'Old Stuff' "$RIG/local.eml" >/dev/null
old_stuff=$(rig_imap src cy "$SRC_PW" count 'Old Stuff')
rc=0
rig_doveadm dest -f tab migrate -n -u cy@example.com >"$RIG/dry.log" 2>&1 || rc=$?
rig_summary "$RIG/dry.log"
tap_is "$rc/${MIG[uids_changed]}/${MIG[folders_uids_changed]}" "0/$old_stuff/1" \
	"a dry run says which copies would lose their UIDs: Old Stuff's $old_stuff, in 1 folder"

rc=0
rig_doveadm dest -f tab migrate -w 2 -u cy@example.com >"$RIG/run1.log" 2>&1 || rc=$?
rig_summary "$RIG/run1.log"
tap_is "$rc" 0 "the first run, with a worker, exits 0"
tap_is "${MIG[uids_changed]}/${MIG[folders_uids_changed]}" "$old_stuff/1" \
	"the summary counts the copies that lost their UIDs (Old Stuff's) and their folder"
tap_like "... and so does report.json" "\"uids_changed\":$old_stuff,\"folders_uids_changed\":1" \
	"$(cat "$(rig_home dest cy@example.com)/.migrate/report.json")"
tap_run "checker: every other folder has the source's UIDVALIDITY and every message its source UID (INBOX too, though it existed)" \
	compare --check-uids --ignore-src-folder 'Old Stuff' --ignore-dest-folder 'Old Stuff'
tap_run "checker: Old Stuff is a mirror too, with the local message" \
	compare --allow-extra-dest-uid 'Old Stuff:1'
tap_diag "$(tail -n 1 <<<"$TAP_OUT")"
tap_like "mbsync had fetched all the messages of the account ($MB_FIRST and Old Stuff's $old_stuff)" \
	"messages $((MB_FIRST + old_stuff)) src" "$(tail -n 1 <<<"$TAP_OUT")"

# new mail, a large message among it, copied by the next mirror run: the
# destination's UIDNEXT is the source's, so the new UIDs are kept as well
large_message "large 4" 2300 >"$RIG/large4.eml"
"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user cy \
	--password-env SRC_IMAP_PASSWORD --seed 40 --messages 40 --max-size 20K \
	--connections 1 >/dev/null || rig_die "gen-corpus"
rig_imap src cy "$SRC_PW" append INBOX "$RIG/large4.eml" >/dev/null
rig_imap src cy "$SRC_PW" append Work "$RIG/large1.eml" >/dev/null
rc=0
rig_doveadm dest -f tab migrate -w 2 -u cy@example.com >"$RIG/run2.log" 2>&1 || rc=$?
tap_is "$rc" 0 "the mirror run with new mail exits 0"
rig_summary "$RIG/run2.log"
new_old_stuff=$(( $(rig_imap src cy "$SRC_PW" count 'Old Stuff') - old_stuff ))
tap_is "${MIG[uids_changed]}" "$new_old_stuff" "... and counts as lost only the UIDs of Old Stuff's $new_old_stuff new ones"
tap_run "checker: the new messages kept their source UIDs too" \
	compare --check-uids --ignore-src-folder 'Old Stuff' --ignore-dest-folder 'Old Stuff' 

# the same client, store and state, pointed at us after the switch: it
# finds its cache valid and transfers nothing in either direction (Old
# Stuff, whose UIDs the summary said were lost, is left out of its channel)
mbsync_conf dest cy@example.com "$MB_DEST_PW"
# (what came after the client's last sync at the old server is not there
# yet: it arrives now, and nothing else)
mbsync_run dest1 "mbsync, switched to the destination, syncs"
tap_is "$MB_NEW/$MB_GONE/$MB_FLAGS" "$((42 - new_old_stuff))/0/0" \
	"... and fetches only the messages that arrived after its last sync, changes nothing"
if grep -qi 'UIDVALIDITY' "$MB/dest1.log"; then
	tap_fail "... without finding a changed UIDVALIDITY"
	tap_diag "$(grep -i UIDVALIDITY "$MB/dest1.log" | head -n 5)"
else
	tap_ok "... without finding a changed UIDVALIDITY"
fi

# later mirror runs: new mail and changed flags; the client transfers
# exactly those
before_old_stuff=$(rig_imap src cy "$SRC_PW" count 'Old Stuff')
"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user cy \
	--password-env SRC_IMAP_PASSWORD --seed 41 --messages 10 --max-size 20K \
	--connections 1 >/dev/null || rig_die "gen-corpus"
rig_imap src cy "$SRC_PW" set-flags INBOX --first 5 --mode add --flags '\Flagged' >/dev/null
rc=0
rig_doveadm dest -f tab migrate -u cy@example.com >"$RIG/run3.log" 2>&1 || rc=$?
tap_is "$rc" 0 "a mirror run with 10 new messages and 5 flagged exits 0"
mbsync_run dest2 "mbsync syncs again"
new_old_stuff=$(( $(rig_imap src cy "$SRC_PW" count 'Old Stuff') - before_old_stuff ))
tap_is "$MB_NEW/$MB_GONE/$((MB_FLAGS <= 5))" "$((10 - new_old_stuff))/0/1" \
	"... and fetches only the new messages (and at most the 5 changed flags: $MB_FLAGS)"
mbsync_run dest3 "mbsync once more"
tap_is "$MB_NEW/$MB_GONE/$MB_FLAGS" "0/0/0" "... then nothing"
tap_run "checker: mbsync changed nothing at the destination" \
	compare --check-uids --ignore-src-folder 'Old Stuff' --ignore-dest-folder 'Old Stuff' 

tap_done
