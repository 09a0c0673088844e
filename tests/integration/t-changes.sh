#!/bin/bash
# t-changes.sh - a re-run costs what changed, not the folder: on a source
# with CONDSTORE and ESEARCH (Dovecot), a folder synced completely before
# is listed over our own connection from its last HIGHESTMODSEQ
# (UID FETCH ... (CHANGEDSINCE n), UID SEARCH RETURN (ALL)): new messages,
# changed flags and keywords, deletions, and copies deleted here behind
# our back all come out as a full listing would have them.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-changes

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Chg!src3'
DEST_PW='Chg!dst3'

rig_start_source src || exit 1
rig_start_dest dest || exit 1
rig_add_user src ch "$SRC_PW"
rig_add_user dest ch@example.com "$DEST_PW" userdb_migrate_source_user=ch
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
rig_migrate_source dest src "$SRC_PW"

compare() {
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user ch \
		--dest-port "$(rig_port dest)" --dest-user ch@example.com "$@"
}
src() { rig_imap src ch "$SRC_PW" "$@"; }
dest() { rig_imap dest ch@example.com "$DEST_PW" "$@"; }
# the Nth UID (1-based) of FOLDER at instance FN (src or dest)
nth_uid() { "$1" uids "$2" | tr ' ' '\n' | grep . | sed -n "$3p"; }

"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user ch \
	--password-env SRC_IMAP_PASSWORD --seed 41 --messages 400 --max-size 30K \
	--connections 1 >/dev/null || rig_die "gen-corpus"
for i in 1 2 3; do
	printf 'From: a@example.org\r\nSubject: flags %s\r\n\r\nbody %s\r\n' "$i" "$i" >"$RIG/f$i.eml"
	src append --create Notes "$RIG/f$i.eml" >/dev/null
done

rc=0
rig_doveadm dest migrate -u ch@example.com >"$RIG/run1.log" 2>&1 || rc=$?
tap_is "$rc" 0 "the first run exits 0"
tap_run "checker: the destination mirrors the source" compare

# at the source: 3 flag and keyword changes, 2 expunged and 5 new in
# INBOX, 2 flag changes alone in Notes; here: one copy in INBOX deleted
# behind our back
u1=$(nth_uid src INBOX 1) u2=$(nth_uid src INBOX 2) u3=$(nth_uid src INBOX 3)
g1=$(nth_uid src INBOX 10) g2=$(nth_uid src INBOX 11)
src set-flags INBOX --uids "$u1,$u2,$u3" --mode add --flags '\Flagged $Work' ||
	rig_die "set-flags"
src expunge INBOX --uids "$g1,$g2" || rig_die "expunge"
n1=$(nth_uid src Notes 1) n2=$(nth_uid src Notes 2)
src set-flags Notes --uids "$n1,$n2" --mode replace --flags '\Seen \Answered' ||
	rig_die "set-flags Notes"
for i in 1 2 3 4 5; do
	printf 'From: b@example.org\r\nSubject: new %s\r\n\r\nnew body %s\r\n' "$i" "$i" >"$RIG/n$i.eml"
	src append INBOX "$RIG/n$i.eml" >/dev/null
done
lost=$(nth_uid dest INBOX 20)
dest expunge INBOX --uids "$lost" || rig_die "expunge at the destination"
src_inbox=$(src count INBOX)

rc=0
rig_doveadm dest -D migrate -u ch@example.com >"$RIG/run2.log" 2>&1 || rc=$?
tap_is "$rc" 0 "the re-run exits 0"
tap_like "INBOX is listed from its HIGHESTMODSEQ: 3 flag changes, 2 gone, 5 new and 1 lost here to copy" \
	"INBOX: listed the changes since HIGHESTMODSEQ [0-9]+: 3 messages' flags changed, 2 gone, 6 to copy" \
	"$(cat "$RIG/run2.log")"
tap_like "Notes too: 2 flag changes, nothing to copy or delete" \
	"Notes: listed the changes since HIGHESTMODSEQ [0-9]+: 2 messages' flags changed, 0 gone, 0 to copy" \
	"$(cat "$RIG/run2.log")"
tap_is "$(grep -c 'listed the changes since' "$RIG/run2.log")" 2 \
	"no other folder is listed at all (unchanged since the last run)"
tap_is "$(grep -c 'Not deleting' "$RIG/run2.log")" 0 \
	"the deletions are made (the listing's UID SEARCH was their second look)"
tap_is "$(dest count INBOX)" "$src_inbox" "INBOX has as many messages here as at the source"
tap_is "$(grep -c ': Error: ' "$RIG/run1.log" "$RIG/run2.log" | cut -d: -f2 | tr '\n' ' ')" "0 0 " \
	"neither run logs an error (both connections log out as expected)"
tap_run "checker: the destination mirrors the source again (flags, keywords, contents)" compare

# a second re-run finds nothing to do
rc=0
rig_doveadm dest -D migrate -u ch@example.com >"$RIG/run3.log" 2>&1 || rc=$?
tap_is "$rc/$(grep -c 'listed the changes since' "$RIG/run3.log")" "0/0" \
	"a third run exits 0 and lists no folder: every one is unchanged"

tap_done
