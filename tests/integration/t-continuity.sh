#!/bin/bash
# t-continuity.sh - mail clients keep their caches: a folder the migration
# creates has the source's UIDVALIDITY and every message its source UID,
# large messages amid small ones included, copied by a worker, and new mail
# of later mirror runs keeps its UID too.

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

# 3,000 messages, INBOX about 1,200 of them; messages above the piece-wise
# threshold (512 kB) amid the small ones, in INBOX and elsewhere
"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user cy \
	--password-env SRC_IMAP_PASSWORD --seed 17 --messages 3000 --max-size 1500K \
	--connections 2 >/dev/null || rig_die "gen-corpus"
for i in 1 2 3; do
	large_message "large $i" $((600 + 200 * i)) >"$RIG/large$i.eml"
	rig_imap src cy "$SRC_PW" append INBOX "$RIG/large$i.eml" >/dev/null
	"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user cy \
		--password-env SRC_IMAP_PASSWORD --seed $((30 + i)) --messages 150 \
		--max-size 20K --connections 1 >/dev/null || rig_die "gen-corpus"
done
inbox=$(rig_imap src cy "$SRC_PW" count INBOX)
tap_diag "source INBOX: $inbox messages"

rc=0
rig_doveadm dest -f tab migrate -w 2 -u cy@example.com >"$RIG/run1.log" 2>&1 || rc=$?
tap_is "$rc" 0 "the first run, with a worker, exits 0"
tap_run "checker: every folder has the source's UIDVALIDITY and every message its source UID" \
	compare --check-uids
tap_diag "$(tail -n 1 <<<"$TAP_OUT")"

# new mail, a large message among it, copied by the next mirror run: the
# destination's UIDNEXT is the source's, so the new UIDs are kept as well
large_message "large 4" 700 >"$RIG/large4.eml"
"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user cy \
	--password-env SRC_IMAP_PASSWORD --seed 40 --messages 40 --max-size 20K \
	--connections 1 >/dev/null || rig_die "gen-corpus"
rig_imap src cy "$SRC_PW" append INBOX "$RIG/large4.eml" >/dev/null
rig_imap src cy "$SRC_PW" append Work "$RIG/large1.eml" >/dev/null
rc=0
rig_doveadm dest -f tab migrate -w 2 -u cy@example.com >"$RIG/run2.log" 2>&1 || rc=$?
tap_is "$rc" 0 "the mirror run with new mail exits 0"
tap_run "checker: the new messages kept their source UIDs too" compare --check-uids

tap_done
