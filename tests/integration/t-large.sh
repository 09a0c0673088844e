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
rss_kb=$("$PY" -c '
import resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    rc = subprocess.call(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)' "$RIG/run.log" unshare -m -- sh -c \
	'mount --bind "$1" /usr/lib/dovecot/modules/doveadm && exec doveadm -c "$2" migrate -u lea@example.com' \
	sh "$RIG/mods/doveadm" "$(rig_conf dest)") || rc=$?
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

tap_done
