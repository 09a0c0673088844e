#!/bin/bash
# t-large.sh - memory stays bounded whatever the message size: a 60 MB
# message (80 MB encoded) and several above the piece-wise threshold copy
# byte-exact, with doveadm's peak RSS far below the message size.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-large

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Large!src1'
DEST_PW='Large!dst1'

rig_start_source src || exit 1
rig_start_dest dest || exit 1
rig_add_user src lea "$SRC_PW"
rig_add_user dest lea@example.com "$DEST_PW" userdb_migrate_source_user=lea
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW
rig_migrate_source dest src "$SRC_PW"

big_message() {
	local mb=$1
	printf 'From: big@example.org\r\nSubject: %s MB\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n' "$mb"
	head -c $((mb * 1024 * 1024)) /dev/urandom | base64 -w 76 | sed 's/$/\r/'
}
for mb in 5 9 60; do
	big_message "$mb" >"$RIG/big$mb.eml"
done
rig_imap src lea "$SRC_PW" append --create --flags '\Seen $Forwarded' Big \
	"$RIG/big5.eml" "$RIG/big60.eml" >/dev/null
rig_imap src lea "$SRC_PW" append --flags '\Flagged' INBOX "$RIG/big9.eml" >/dev/null
"$PY" "$T/gen-corpus.py" --port "$(rig_port src)" --user lea \
	--password-env SRC_IMAP_PASSWORD --seed 21 --messages 300 --max-size 2M >/dev/null

# peak RSS of the whole doveadm run, from the kernel's accounting
rc=0
rss_kb=$(rig_doveadm_rss "$RIG/run.log" dest migrate -u lea@example.com) || rc=$?
tap_is "$rc" 0 "the account with a 60 MB message migrates"
tap_diag "peak RSS ${rss_kb} kB"
if [ "${rss_kb:-999999}" -lt 40960 ]; then
	tap_ok "peak RSS ${rss_kb} kB stays below 40 MB (the largest message is 80 MB)"
else
	tap_fail "peak RSS ${rss_kb} kB: memory grows with the message size"
fi
tap_run "checker: the large messages arrived byte-exact with flags and dates" \
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user lea \
	--dest-port "$(rig_port dest)" --dest-user lea@example.com
tap_diag "$(tail -n 1 <<<"$TAP_OUT")"

# one more large message and one gone at the source
big_message 6 >"$RIG/big6.eml"
rig_imap src lea "$SRC_PW" append Big "$RIG/big6.eml" >/dev/null
rig_imap src lea "$SRC_PW" expunge Big --first 1 >/dev/null
rc=0
rig_doveadm dest migrate -u lea@example.com >"$RIG/run2.log" 2>&1 || rc=$?
tap_is "$rc" 0 "the re-run with one more large message exits 0"
tap_run "checker: equal again" \
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user lea \
	--dest-port "$(rig_port dest)" --dest-user lea@example.com

# after a run that failed for want of space: every message U has here is
# byte-identical to one at the source
saved_whole() {
	local u=$1
	rig_imap src "$u" "$SRC_PW" fetch-hash INBOX | awk '{ print $2 }' | sort >"$RIG/$u.src"
	rig_imap dest "$u@example.com" "$DEST_PW" fetch-hash INBOX 2>/dev/null |
		awk '{ print $2 }' | sort >"$RIG/$u.dest"
	tap_is "$(comm -13 "$RIG/$u.src" "$RIG/$u.dest" | wc -l)" 0 \
		"... and every message it saved is byte-identical to its source ($(wc -l <"$RIG/$u.dest") saved)"
}
# with space again: the next run of U exits 0 and leaves a mirror
rerun_equal() {
	local u=$1 rc=0
	rig_doveadm dest migrate -u "$u@example.com" >"$RIG/$u.rerun.log" 2>&1 || rc=$?
	tap_is "$rc" 0 "$2, the next run exits 0"
	tap_run "checker: equal" \
		"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user "$u" \
		--dest-port "$(rig_port dest)" --dest-user "$u@example.com"
}

# --- a full temporary directory never gives a truncated copy -----------------------
# the pieces of a large message go to a file in mail_temp_dir: on a 3 MB
# tmpfs a 6 MB message cannot fit.  The run fails; what it saved is whole;
# the next run, with space, completes the mirror.
rig_add_user src tom "$SRC_PW"
rig_add_user dest tom@example.com "$DEST_PW" userdb_migrate_source_user=tom
rig_imap src tom "$SRC_PW" append INBOX "$RIG/big6.eml" >/dev/null
for i in 1 2 3 4 5; do
	printf 'From: small@example.org\r\nSubject: small %s\r\n\r\nsmall %s\r\n' "$i" "$i" >"$RIG/small$i.eml"
done
rig_imap src tom "$SRC_PW" append INBOX "$RIG"/small[1-5].eml >/dev/null
SMALL=$RIG/smalltmp
mkdir -p "$SMALL"
mount -t tmpfs -o size=3m,mode=1777 tmpfs "$SMALL" || rig_die "mount tmpfs"
rig_on_exit 'umount "$SMALL" 2>/dev/null'
rc=0
rig_doveadm dest -o "mail_temp_dir=$SMALL" -o plugin/migrate_retries=0 \
	migrate -u tom@example.com >"$RIG/full.log" 2>&1 || rc=$?
tap_is "$rc" 75 "a full mail_temp_dir fails the run (75)"
tap_like "... saying why" 'write\(temp file\) failed: No space left on device' "$(cat "$RIG/full.log")"
saved_whole tom
umount "$SMALL"
rerun_equal tom "with space"

# --- a mail_temp_dir the account cannot create files in: a settings error ---
# (root's directory, 0755: the mail user cannot write there) said at once,
# before the source is contacted, not after a pass and its retries
ROTMP=$RIG/rotmp
mkdir -p "$ROTMP"
chmod 0755 "$ROTMP"
tom_logins() { grep -c 'imap-login: .*Login: user=<tom>' "$(rig_log src)"; }
n_login=$(tom_logins)
start=$SECONDS
rc=0
rig_doveadm dest -o "mail_temp_dir=$ROTMP" migrate -u tom@example.com >"$RIG/rotmp.log" 2>&1 || rc=$?
secs=$((SECONDS - start))
tap_is "$rc" 78 "a mail_temp_dir the account cannot write to: 78 (settings)"
tap_like "... naming it and why" \
	"mail_temp_dir=$ROTMP: the account's processes \\(uid [0-9]+\\) cannot create files there: Permission denied" \
	"$(cat "$RIG/rotmp.log")"
tap_is "$(tom_logins)" "$n_login" "... before logging in to the source"
tap_like "... at once ($secs s)" '^[0-5]$' "$secs"

# --- a full destination file system never gives a truncated copy -------------------
# ulf's mail on a 4 MB tmpfs, 6 MB and 9 MB messages and small ones to
# copy: the run fails, every message it saved is whole, and once the file
# system grows the next run completes the mirror
rig_add_user src ulf "$SRC_PW"
rig_add_user dest ulf@example.com "$DEST_PW" userdb_migrate_source_user=ulf
rig_imap src ulf "$SRC_PW" append INBOX "$RIG"/small[1-5].eml "$RIG/big6.eml" "$RIG/big9.eml" >/dev/null
ULF=$(rig_home dest ulf@example.com)
mkdir -p "$ULF"
mount -t tmpfs -o size=4m,mode=0777 tmpfs "$ULF" || rig_die "mount tmpfs"
rig_on_exit 'umount "$ULF" 2>/dev/null'
rc=0
rig_doveadm dest -o plugin/migrate_retries=0 migrate -u ulf@example.com >"$RIG/dfull.log" 2>&1 || rc=$?
tap_is "$rc" 73 "a full destination file system fails the run (73, as a full quota)"
saved_whole ulf
mount -o remount,size=64m "$ULF"
rerun_equal ulf "once it grows"

# --- a large message's later pieces come from its own folder ---------------
# a message over one window of pieces (4 MB) in a folder copied before
# others: the next folders are listed ahead (their EXAMINE sent) while its
# pieces still come, so each later window selects its folder again.  kai's
# Mm has the 9 MB message among small ones, INBOX and Aa small messages
# with the same UIDs; one process (-w 1) copies them (Mm first).
rig_add_user src kai "$SRC_PW"
rig_add_user dest kai@example.com "$DEST_PW" userdb_migrate_source_user=kai
rig_imap src kai "$SRC_PW" append --create Mm "$RIG/small1.eml" "$RIG/big9.eml" "$RIG"/small[2-5].eml >/dev/null
for mb in INBOX Aa; do
	rig_imap src kai "$SRC_PW" append --create "$mb" "$RIG"/small[1-3].eml >/dev/null
done
rc=0
rig_doveadm dest migrate -w 1 -u kai@example.com >"$RIG/kai.log" 2>&1 || rc=$?
tap_is "$rc" 0 "a 9 MB message before two more folders: exit 0"
tap_run "checker: its later pieces came from its own folder (equal)" \
	"$PY" "$T/imap-compare.py" --src-port "$(rig_port src)" --src-user kai \
	--dest-port "$(rig_port dest)" --dest-user kai@example.com

tap_done
