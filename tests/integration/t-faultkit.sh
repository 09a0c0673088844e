#!/bin/bash
# t-faultkit.sh - the fault tools do what they claim: tools/quirkyimap.py
# (a scripted source: exact data, size lies, unreadable messages,
# throttling, BYE, a changed UIDVALIDITY, Dovecot's imapc and the real
# migration talking to it) and tools/faultproxy.py (cuts inside a literal,
# resets, refusals, stalls, latency and random faults in front of a real
# Dovecot source).

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-faultkit

PY=$RIG_PY
T=$RIG_TOOLS
QPW='Quirk;pw"1'
SRC_PW='Fault!src7'
DEST_PW='Fault!dest3'
export QUIRKY_PASSWORD=$QPW

rig_start_source src || exit 1
rig_start_dest dest || exit 1
# the migration's password file serves both sources: same password
rig_migrate_source dest src "$QPW"
rig_add_user src fuser "$QPW"

Q=$RIG/quirky
mkdir -p "$Q"
QPORT=$(rig_free_port)
QLOG=$Q/quirky.log

# --- the scenario's messages -----------------------------------------------------
printf 'From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: one\r\nMessage-ID: <1@q>\r\n\r\nFirst message.\r\n' >"$Q/m1.eml"
printf 'From: c@example.org\nSubject: nul and bare LF\n\nbefore\0after\nbare LF line\r\nend\r\n' >"$Q/m3.eml"
printf 'From: d@example.org\r\nSubject: size lie\r\n\r\nThe size is a lie.\r\n' >"$Q/m4.eml"
printf 'From: e@example.org\r\nSubject: unreadable\r\n\r\nNobody can read this.\r\n' >"$Q/m7.eml"
printf 'From: f@example.org\r\nSubject: Gr\xc3\xb6\xc3\x9fe\r\n\r\nIn a non-ASCII folder.\r\n' >"$Q/m2.eml"
printf 'From: g@example.org\r\nSubject: sent\r\n\r\nSent by me.\r\n' >"$Q/m5.eml"

# mkscen UIDVALIDITY FETCH_NO(0|1) CAPS_JSON QUIRKS_JSON: the scenario, replaced
# atomically (the server re-reads it when its mtime changes)
CAPS_FULL='["IMAP4rev1","LITERAL+","SASL-IR","AUTH=PLAIN","SPECIAL-USE","UIDPLUS","CONDSTORE","ID","NAMESPACE","ENABLE","UNSELECT","IDLE","X-GM-EXT-1"]'
CAPS_MIN='["IMAP4rev1","AUTH=PLAIN"]'
mkscen() {
	"$PY" - "$Q/scenario.json" "$@" <<-'EOF'
	import json, os, sys
	path, uidv, fetch_no, caps, quirks = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], sys.argv[5]
	inbox = [
	    {"uid": 1, "file": "m1.eml", "flags": ["\\Seen", "$Forwarded"],
	     "internaldate": "01-Jan-2020 10:00:00 +0000", "modseq": 2, "gm_msgid": 1001,
	     "gm_labels": ["\\Inbox", "Work"]},
	    {"uid": 3, "file": "m3.eml", "flags": ["\\Flagged"],
	     "internaldate": "15-Mar-2021 23:30:00 -0300", "modseq": 4},
	    {"uid": 4, "file": "m4.eml", "internaldate": "02-Feb-2022 08:00:00 +0100",
	     "modseq": 6, "size_lie": 100},
	    {"uid": 7, "file": "m7.eml", "internaldate": "03-Mar-2023 12:00:00 +0000",
	     "modseq": 5, "fetch_no": fetch_no},
	]
	sc = {"user": "quser", "capabilities": json.loads(caps), "separator": "/",
	      "prefix": "", "quirks": json.loads(quirks),
	      "folders": [
	          {"name": "INBOX", "uidvalidity": uidv, "messages": inbox},
	          {"name": "Gesendet", "uidvalidity": 5, "special_use": "\\Sent",
	           "messages": [{"uid": 5, "file": "m5.eml", "flags": ["\\Seen"],
	                         "internaldate": "04-Apr-2020 04:04:04 +0000"}]},
	          {"name": "Parent", "attributes": ["\\Noselect"]},
	          {"name": "Parent/Gr\u00f6\u00dfe", "uidvalidity": 9, "subscribed": False,
	           "messages": [{"uid": 2, "file": "m2.eml", "flags": ["\\Answered", "Work"],
	                         "internaldate": "05-May-2020 05:05:05 +0000"}]}]}
	with open(path + ".tmp", "w") as f:
	    json.dump(sc, f, indent=1)
	os.rename(path + ".tmp", path)
	EOF
}
mkscen 11 1 "$CAPS_FULL" '{}'
"$PY" "$T/quirkyimap.py" --port "$QPORT" --scenario "$Q/scenario.json" --log "$QLOG" \
	--pidfile "$Q/pid" --daemon || exit 1
rig_on_exit 'kill "$(cat "$Q/pid")" 2>/dev/null'

qimap() { IMAP_PASSWORD=$QPW "$PY" "$T/imaptool.py" --port "$QPORT" --user quser "$@"; }
last_conn() { grep -o '^conn [0-9]* open' "$QLOG" | tail -n 1 | cut -d' ' -f2; }

# qraw PORT [--plain] CMD...: one session, commands one at a time (logged
# in first); prints every reply line, literals as {N}<sha256 prefix>, and
# EOF when the server closed
cat >"$RIG/qraw.py" <<-'EOF'
	import base64, hashlib, os, re, socket, sys
	port = int(sys.argv[1]); args = sys.argv[2:]
	plain = args[:1] == ["--plain"]
	if plain:
	    args = args[1:]
	pw = os.environ["QUIRKY_PASSWORD"]
	s = socket.create_connection(("127.0.0.1", port), timeout=20)
	f = s.makefile("rb")
	def reply(tag):
	    while True:
	        line = f.readline()
	        if not line:
	            print("EOF"); sys.exit(0)
	        out = line
	        m = re.search(rb"\{(\d+)\}\r\n$", line)
	        while m:
	            lit = f.read(int(m.group(1)))
	            rest = f.readline()
	            out = out[:m.start()] + b"{%d}<%s>" % (len(lit), hashlib.sha256(lit).hexdigest()[:16].encode()) + rest
	            m = re.search(rb"\{(\d+)\}\r\n$", rest)
	        print(out.decode("utf-8", "replace").rstrip("\r\n"))
	        if tag is None or out.startswith(tag.encode() + b" "):
	            return
	reply(None)
	q = lambda v: '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
	if plain:
	    blob = base64.b64encode(b"\0quser\0" + pw.encode()).decode()
	    s.sendall(("L AUTHENTICATE PLAIN %s\r\n" % blob).encode())
	else:
	    s.sendall(("L LOGIN quser %s\r\n" % q(pw)).encode())
	reply("L")
	for i, c in enumerate(args):
	    tag = "c%d" % i
	    s.sendall(("%s %s\r\n" % (tag, c)).encode())
	    reply(tag)
	EOF
qraw() { "$PY" "$RIG/qraw.py" "$@"; }

# expected fetch-hash lines, from the files
exp_hash() {   # FILE UID DATE(UTC) FLAGS
	printf '%s %s %s %s %s\n' "$2" "$(sha256sum <"$Q/$1" | cut -d' ' -f1)" \
		"$(stat -c %s "$Q/$1")" "$3" "$4"
}

# --- (a) quirkyimap: exactly the scenario's data -----------------------------------
tap_is "$(qimap list --long)" "\\HasNoChildren	/	INBOX
\\HasNoChildren \\Sent	/	Gesendet
\\Noselect \\HasChildren	/	Parent
\\HasNoChildren	/	Parent/Größe" "LIST shows the folders, the Noselect parent, \\Sent, the UTF-8 name"
tap_is "$(qimap list --subscribed | tr '\n' ,)" "INBOX,Gesendet,Parent," "LSUB leaves out the unsubscribed folder"
tap_like "the non-ASCII name is modified UTF-7 on the wire" \
	'"Parent/Gr&APYA3w-e"' "$(qraw "$QPORT" 'LIST "" "Parent/*"')"
tap_is "$(qimap status INBOX)" "MESSAGES 4 UIDNEXT 8 UIDVALIDITY 11 UNSEEN 3 HIGHESTMODSEQ 6" \
	"STATUS INBOX gives the scenario's counters"
tap_is "$(qimap status 'Parent/Größe')" "MESSAGES 1 UIDNEXT 3 UIDVALIDITY 9 UNSEEN 1 HIGHESTMODSEQ 1" \
	"STATUS of the non-ASCII folder"
tap_run_fails "the Noselect parent cannot be examined" qimap uids Parent

tap_run "control: m3.eml has NUL bytes and bare LF" "$PY" -c 'import re, sys
b = open(sys.argv[1], "rb").read()
sys.exit(0 if b"\0" in b and re.search(rb"[^\r]\n", b) else 1)' "$Q/m3.eml"
tap_is "$(qimap fetch-hash INBOX --uids 1:4)" "$(exp_hash m1.eml 1 '2020-01-01 10:00:00Z' '$Forwarded \Seen'
exp_hash m3.eml 3 '2021-03-16 02:30:00Z' '\Flagged'
exp_hash m4.eml 4 '2022-02-02 07:00:00Z' '')" \
	"fetch-hash: bodies (NUL and bare LF verbatim), dates and flags as in the scenario"
tap_is "$(qimap fetch-hash 'Parent/Größe')" "$(exp_hash m2.eml 2 '2020-05-05 05:05:05Z' 'Work \Answered')" \
	"fetch-hash of the non-ASCII folder"
qimap fetch INBOX 3 >"$RIG/m3.got"
tap_run "BODY[] of the NUL/bare-LF message is byte for byte the file" cmp "$RIG/m3.got" "$Q/m3.eml"

out=$(qraw "$QPORT" 'EXAMINE INBOX' 'UID FETCH 4 (RFC822.SIZE)' 'UID FETCH 1 (RFC822.SIZE)')
tap_like "size_lie: RFC822.SIZE of UID 4 is the lie (100)" 'FETCH \(UID 4 RFC822\.SIZE 100\)' "$out"
tap_like "RFC822.SIZE of UID 1 is its real size" "FETCH \\(UID 1 RFC822\\.SIZE $(stat -c %s "$Q/m1.eml")\\)" "$out"

tap_run_fails "fetch_no: fetch-hash of all of INBOX gets a NO" qimap fetch-hash INBOX
tap_like "... and says so" 'NO Some messages could not be FETCHed' "$TAP_OUT"
out=$(qraw "$QPORT" 'EXAMINE INBOX' 'UID FETCH 7 (UID FLAGS RFC822.SIZE INTERNALDATE)' \
	'UID FETCH 7 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])' 'UID FETCH 1:7 (BODY.PEEK[])')
tap_like "fetch_no: items other than the body are OK" $'\\* 4 FETCH \\(UID 7 FLAGS \\(\\) RFC822.SIZE [0-9]+ INTERNALDATE[^\n]*\nc1 OK' "$out"
tap_like "fetch_no: a header fetch is NO" $'\nc2 NO ' "$out"
tap_like "fetch_no: the others' bodies come, then NO" \
	$'\\* 1 FETCH \\(UID 1 BODY\\[\\] [^\n]*\n\\* 2 FETCH[^\n]*\n\\* 3 FETCH[^\n]*\nc3 NO ' "$out"

out=$(qraw "$QPORT" 'EXAMINE INBOX' 'UID FETCH 1 (X-GM-MSGID X-GM-LABELS MODSEQ)' \
	'UID FETCH 1:* (FLAGS) (CHANGEDSINCE 4)' 'UID SEARCH MODSEQ 5' 'FETCH 1 (BODY.PEEK[]<6.4>)' 'XYZZY' \
	'UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject Message-ID)])')
tap_like "Gmail items and MODSEQ" 'X-GM-MSGID 1001 X-GM-LABELS \(\\Inbox "Work"\) MODSEQ \(2\)' "$out"
tap_like "CHANGEDSINCE 4 gives UIDs 4 and 7 only, with MODSEQ" \
	$'c1 [^\n]*\n\\* 3 FETCH \\(UID 4 FLAGS \\(\\) MODSEQ \\(6\\)\\)\n\\* 4 FETCH \\(UID 7 FLAGS \\(\\) MODSEQ \\(5\\)\\)\nc2 ' "$out"
tap_like "SEARCH MODSEQ 5 gives 4 7 (MODSEQ 6)" '\* SEARCH 4 7 \(MODSEQ 6\)' "$out"
tap_like "a partial fetch names its origin" "BODY\\[\\]<6> \\{4\\}<$(head -c 10 "$Q/m1.eml" | tail -c 4 | sha256sum | cut -c1-16)>" "$out"
tap_like "an unknown command is BAD" $'\nc5 BAD ' "$out"
tap_like "HEADER.FIELDS gives those fields" \
	"BODY\\[HEADER.FIELDS \\(Subject Message-ID\\)\\] \\{[0-9]+\\}<$(printf 'Subject: one\r\nMessage-ID: <1@q>\r\n\r\n' | sha256sum | cut -c1-16)>" "$out"

# capabilities drive behaviour
mkscen 11 1 "$CAPS_MIN" '{}'
out=$(qraw "$QPORT" 'EXAMINE INBOX' 'UID FETCH 1 (MODSEQ)' 'UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)' \
	'STATUS INBOX (HIGHESTMODSEQ)' 'NAMESPACE' 'LIST "" "*"' 'ID NIL')
tap_like "without CONDSTORE: FETCH MODSEQ, CHANGEDSINCE and STATUS HIGHESTMODSEQ are BAD" \
	$'\nc1 BAD [^\n]*\nc2 BAD [^\n]*\nc3 BAD ' "$out"
if grep -q 'HIGHESTMODSEQ [0-9]' <<<"$out" || grep -q '\\Sent' <<<"$out"; then
	tap_fail "without CONDSTORE/SPECIAL-USE no HIGHESTMODSEQ and no \\Sent"
	tap_diag "$out"
else
	tap_ok "without CONDSTORE/SPECIAL-USE no HIGHESTMODSEQ and no \\Sent"
fi
tap_like "without NAMESPACE and ID those are BAD" $'c4 BAD [^\n]*\n(.*\n)*c6 BAD ' "$out"
mkscen 11 1 "$CAPS_FULL" '{}'

# throttling: every 2nd UID FETCH (counted from the scenario's load)
mkscen 11 1 "$CAPS_FULL" '{"throttle": {"every": 2, "commands": ["UID FETCH"]}}'
out=$(qraw "$QPORT" 'EXAMINE INBOX' 'UID FETCH 1 (FLAGS)' 'UID FETCH 1 (FLAGS)' 'UID FETCH 1 (FLAGS)' \
	'UID FETCH 1 (FLAGS)' 'FETCH 1 (FLAGS)' 'FETCH 1 (FLAGS)')
tap_is "$(grep -Eo '^c[0-9] (OK|NO \[THROTTLED\])' <<<"$out" | tr '\n' ,)" \
	"c0 OK,c1 OK,c2 NO [THROTTLED],c3 OK,c4 NO [THROTTLED],c5 OK,c6 OK," \
	"throttle: every 2nd UID FETCH is NO [THROTTLED], its retry and FETCH work"
n=$(last_conn)
tap_is "$(grep -c "^conn $n throttled" "$QLOG")" 2 "the log shows the 2 throttled commands"

# BYE after 2 FETCH responses on the next connection only
n=$(($(last_conn) + 1))
mkscen 11 1 "$CAPS_FULL" "{\"bye_after_fetch_responses\": 2, \"bye_connections\": [$n]}"
out=$(qraw "$QPORT" 'EXAMINE INBOX' 'UID FETCH 1:* (FLAGS)' 'NOOP')
tap_like "BYE after 2 FETCH responses, then the connection closes" \
	$'\\* 1 FETCH[^\n]*\n\\* 2 FETCH[^\n]*\n\\* BYE [^\n]*\nEOF$' "$out"
tap_like "the log says bye on connection $n" "conn $n bye" "$(cat "$QLOG")"
out=$(qraw "$QPORT" 'EXAMINE INBOX' 'UID FETCH 1:* (FLAGS)')
tap_like "the next connection is not in bye_connections: all 4 FETCH and OK" \
	$'\\* 4 FETCH[^\n]*\nc1 OK' "$out"

# the log: body lines, no password (also not through AUTHENTICATE PLAIN)
mkscen 11 1 "$CAPS_FULL" '{}'
qraw "$QPORT" --plain 'EXAMINE INBOX' 'UID FETCH 3 (BODY.PEEK[])' >"$RIG/plain.out"
tap_like "AUTHENTICATE PLAIN with SASL-IR logs in" $'\nL OK ' "$(cat "$RIG/plain.out")"
n=$(last_conn)
tap_is "$(grep -c "^conn $n body INBOX 3 $(stat -c %s "$Q/m3.eml")\$" "$QLOG")" 1 \
	"the log has one body line for that download"
blob=$(printf '\0quser\0%s' "$QPW" | base64 -w0)
if grep -qFf <(printf '%s\n' "$QPW" "$blob" 'Quirk;pw') "$QLOG"; then
	tap_fail "the server log has no password"
else
	tap_ok "the server log ($(wc -l <"$QLOG") lines) has no password"
fi
IMAP_PASSWORD=wrong TAP_EXPECT_RC=2 tap_run_fails "a wrong password is refused" \
	"$PY" "$T/imaptool.py" --port "$QPORT" --user quser count INBOX

# a changed UIDVALIDITY is seen by the next connection
mkscen 12 1 "$CAPS_FULL" '{}'
tap_like "the next connection sees UIDVALIDITY 12" 'UIDVALIDITY 12 ' "$(qimap status INBOX)"

# --- (a2) Dovecot's imapc (the real migration) against quirkyimap -----------------------
# expected at the destination: Dovecot's IMAP output turns bare LF into
# CRLF and NUL into 0x80 (maildir keeps LF line ends)
dovecot_view() {   # FILE -> fetch-hash sha and size as Dovecot's IMAP shows it
	"$PY" -c 'import hashlib, re, sys
b = open(sys.argv[1], "rb").read()
b = re.sub(rb"(?<!\r)\n", b"\r\n", b).replace(b"\0", b"\x80")
print(hashlib.sha256(b).hexdigest(), len(b))' "$1"
}
mkscen 11 0 "$CAPS_FULL" '{}'
rig_add_user dest q1@example.com "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=$QPORT"
first=$(($(last_conn) + 1))
MIG_RC=0
rig_doveadm dest -f tab migrate -u q1@example.com >"$RIG/mig1.out" 2>&1 || MIG_RC=$?
tap_is "$MIG_RC" 0 "doveadm migrate from quirkyimap (all capabilities) exits 0"
[ "$MIG_RC" = 0 ] || tap_diag "$(tail -n 20 "$RIG/mig1.out")"
dimap() { local u=$1; shift; rig_imap dest "$u" "$DEST_PW" "$@"; }
dl=$(dimap q1@example.com list | LC_ALL=C sort | tr '\n' ,)
tap_is "$dl" "INBOX,Parent,Parent/Größe,Sent," "folders: \\Sent Gesendet became Sent, the UTF-8 folder kept"
want=""
for u in 1 3 4 7; do
	want+="$u $(dovecot_view "$Q/m$u.eml")"$'\n'
done
got=$(dimap q1@example.com fetch-hash INBOX | cut -d' ' -f1-3)
tap_is "$got" "${want%$'\n'}" "INBOX: all 4 bodies arrived (Dovecot's view of NUL/bare LF)"
tap_is "$(dimap q1@example.com fetch-hash INBOX | cut -d' ' -f4- | tr '\n' '|')" \
	"2020-01-01 10:00:00Z \$Forwarded \\Seen|2021-03-16 02:30:00Z \\Flagged|2022-02-02 07:00:00Z |2023-03-03 12:00:00Z |" \
	"INBOX: dates and flags arrived"
tap_is "$(dimap q1@example.com fetch-hash 'Parent/Größe' | cut -d' ' -f2,3,6-)" \
	"$(dovecot_view "$Q/m2.eml") Work \\Answered" "Parent/Größe arrived with its keyword"
imapc_log=$(awk -v f="$first" '$1 == "conn" && $2 >= f' "$QLOG")
if grep -qE '^conn [0-9]+ > [^ ]+ BAD' <<<"$imapc_log"; then
	tap_fail "imapc got no BAD from quirkyimap"
	tap_diag "$(grep -B1 -E '> [^ ]+ BAD' <<<"$imapc_log" | head -n 10)"
else
	tap_ok "imapc got no BAD from quirkyimap ($(grep -c ' < ' <<<"$imapc_log") commands)"
fi
# new folders are listed over our own connection (sizes and flags in one
# FETCH), not through imapc's SELECT and FLAGS MODSEQ listing
tap_like "the folders were listed over our connection (UID FETCH 1:* (UID RFC822.SIZE FLAGS))" \
	'UID FETCH 1:\* \(UID RFC822.SIZE FLAGS\)' "$imapc_log"
if grep -qE 'UID FETCH 1:\* \(FLAGS MODSEQ\)' <<<"$imapc_log"; then
	tap_fail "imapc did not list a folder's flags (no FLAGS MODSEQ listing)"
else
	tap_ok "imapc did not list a folder's flags (no FLAGS MODSEQ listing)"
fi
tap_diag "imapc's commands:" "$(grep ' < ' <<<"$imapc_log" | sed -E 's/^conn [0-9]+ < [^ ]+ //' | sort | uniq -c | sort -rn | head -n 12)"

# the unreadable message: the NO reaches imapc
mkscen 11 1 "$CAPS_FULL" '{}'
rig_add_user dest q3@example.com "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=$QPORT"
first=$(($(last_conn) + 1))
MIG_RC=0
rig_doveadm dest -f tab migrate -u q3@example.com >"$RIG/mig3.out" 2>&1 || MIG_RC=$?
tap_like "imapc's body fetch of UID 7 got the NO" \
	'> [^ ]+ NO Some messages could not be FETCHed' "$(awk -v f="$first" '$1 == "conn" && $2 >= f' "$QLOG")"
tap_diag "with one unreadable message migrate exits $MIG_RC, INBOX has $(dimap q3@example.com count INBOX) of 4"

# a minimal source: no LITERAL+, SPECIAL-USE, CONDSTORE, UIDPLUS, NAMESPACE, ID
mkscen 11 0 "$CAPS_MIN" '{}'
rig_add_user dest q2@example.com "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=$QPORT"
first=$(($(last_conn) + 1))
MIG_RC=0
rig_doveadm dest -f tab migrate -u q2@example.com >"$RIG/mig2.out" 2>&1 || MIG_RC=$?
tap_is "$MIG_RC" 0 "doveadm migrate from a minimal IMAP4rev1 source exits 0"
[ "$MIG_RC" = 0 ] || tap_diag "$(tail -n 20 "$RIG/mig2.out")"
tap_is "$(dimap q2@example.com list | LC_ALL=C sort | tr '\n' ,)" "Gesendet,INBOX,Parent,Parent/Größe," \
	"without SPECIAL-USE Gesendet keeps its name"
tap_is "$(dimap q2@example.com fetch-hash INBOX | cut -d' ' -f1-3)" "${want%$'\n'}" \
	"all 4 INBOX bodies arrived from the minimal source"
imapc_log=$(awk -v f="$first" '$1 == "conn" && $2 >= f' "$QLOG")
if grep -qE '> [^ ]+ BAD' <<<"$imapc_log" || grep -qE ' < .*(MODSEQ|CHANGEDSINCE|UID EXPUNGE)' <<<"$imapc_log"; then
	tap_fail "imapc kept to IMAP4rev1 (no BAD, no MODSEQ)"
	tap_diag "$(grep -E 'BAD|MODSEQ' <<<"$imapc_log" | head -n 10)"
else
	tap_ok "imapc kept to IMAP4rev1 (no BAD, no MODSEQ)"
fi

# a message over 1 MB goes through the migration's own piece fetcher
# (BODY.PEEK[]<o.l>); RFC822.SIZE lies in both directions
"$PY" -c 'import sys
sys.stdout.buffer.write(b"Subject: big\r\n\r\n" + b"".join(b"line %07d %s\r\n" % (j, b"y" * 60) for j in range(33000)))' >"$Q/big.eml"
printf 'Subject: small, claims large\r\n\r\nsmall\r\n' >"$Q/claims-large.eml"
cat >"$Q/scenario.json.tmp" <<-EOF
	{"user": "quser", "capabilities": $CAPS_FULL, "folders": [{"name": "INBOX", "uidvalidity": 3,
	 "messages": [{"uid": 1, "file": "big.eml"},
	              {"uid": 2, "file": "claims-large.eml", "size_lie": 2600000},
	              {"uid": 3, "file": "big.eml", "size_lie": 1000}]}]}
EOF
mv "$Q/scenario.json.tmp" "$Q/scenario.json"
rig_add_user dest q4@example.com "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=$QPORT"
first=$(($(last_conn) + 1))
MIG_RC=0
rig_doveadm dest -f tab migrate -u q4@example.com >"$RIG/mig4.out" 2>&1 || MIG_RC=$?
tap_is "$MIG_RC" 0 "migrate of a 2.4 MB message and two size lies exits 0"
big=$(sha256sum <"$Q/big.eml" | cut -d' ' -f1)
tap_is "$(dimap q4@example.com fetch-hash INBOX | cut -d' ' -f1-2 | tr '\n' ,)" \
	"1 $big,2 $(sha256sum <"$Q/claims-large.eml" | cut -d' ' -f1),3 $big," \
	"all 3 arrived whole despite the lies"
imapc_log=$(awk -v f="$first" '$1 == "conn" && $2 >= f' "$QLOG")
tap_like "the piece fetcher read UID 1 in 1 MB pieces" \
	'UID FETCH 1 \(BODY\.PEEK\[\]<1048576\.1048576>\)' "$imapc_log"
tap_is "$(grep -E '^conn [0-9]+ body INBOX 1 ' <<<"$imapc_log" | cut -d' ' -f6 | tr '\n' ,)" \
	"1048576,1048576,$(($(stat -c %s "$Q/big.eml") - 2097152))," "the server logged the three partial body literals"

# bodies far larger than their RFC822.SIZE, all in one chunk: our own
# connection keeps at most 16 MB of a chunk's bodies (the storage is
# asked for the rest), so memory does not follow the lie
"$PY" -c 'import sys
sys.stdout.buffer.write(b"Subject: liar\r\n\r\n" + b"".join(b"line %07d %s\r\n" % (j, b"z" * 60) for j in range(17000)))' >"$Q/liar.eml"
"$PY" - "$Q" "$CAPS_FULL" <<-'PYEOF2'
	import json, sys
	q, caps = sys.argv[1], json.loads(sys.argv[2])
	msgs = [{"uid": i, "file": "liar.eml", "size_lie": 1000} for i in range(1, 41)]
	json.dump({"user": "quser", "capabilities": caps,
	           "folders": [{"name": "INBOX", "uidvalidity": 4, "messages": msgs}]},
	          open(q + "/scenario.json.tmp", "w"))
	PYEOF2
mv "$Q/scenario.json.tmp" "$Q/scenario.json"
rig_add_user dest q5@example.com "$DEST_PW" userdb_migrate_source_user=quser \
	"userdb_migrate_source_port=$QPORT"
rc=0
rss_kb=$(rig_doveadm_rss "$RIG/mig5.out" dest migrate -w 1 -u q5@example.com) || rc=$?
tap_is "$rc" 0 "40 messages of 1.2 MB that claim 1,000 bytes each: exit 0"
tap_is "$(dimap q5@example.com count INBOX)" 40 "all 40 arrived"
tap_diag "peak RSS ${rss_kb} kB for 48 MB of bodies in one planned chunk"
if [ "${rss_kb:-999999}" -lt 61440 ]; then
	tap_ok "peak RSS ${rss_kb} kB stays below 60 MB (the chunk's bodies are 48 MB)"
else
	tap_fail "peak RSS ${rss_kb} kB: memory follows the sizes the source lies about"
fi

# --- (b) faultproxy in front of a Dovecot source ------------------------------------------
for i in 1 2 3 4; do
	"$PY" -c 'import sys
n = int(sys.argv[1])
sys.stdout.buffer.write(b"From: big@example.org\r\nSubject: big %d\r\n\r\n" % n +
    b"".join(b"line %06d of message %d %s\r\n" % (j, n, b"x" * 40) for j in range(3200)))' "$i" >"$RIG/big$i.eml"
	rig_imap_append src fuser "$QPW" INBOX "$RIG/big$i.eml" >/dev/null
done
tap_like "4 messages of about 200 KB at the source" '^4$' "$(rig_imap src fuser "$QPW" count INBOX)"
SPORT=$(rig_port src)
PPORT=$(rig_free_port)
PLOG=$RIG/proxy.log
PLAN=$RIG/plan.json
cat >"$PLAN" <<-'EOF'
	{ "connections": {
	    "2": {"action": "cut_in_literal", "literal": 2, "bytes": 1000},
	    "3": {"action": "cut_in_literal", "literal": 2, "bytes": 1000},
	    "4": {"action": "reset", "after_bytes": 5000},
	    "5": {"action": "reset", "after_bytes": 5000},
	    "6": {"action": "refuse"},
	    "7": {"action": "refuse"},
	    "8": {"action": "stall", "after_bytes": 3000, "secs": 2}
	} }
EOF
"$PY" "$T/faultproxy.py" --port "$PPORT" --target-port "$SPORT" --plan "$PLAN" --log "$PLOG" \
	--pidfile "$RIG/proxy.pid" --daemon || exit 1
rig_on_exit 'kill "$(cat "$RIG/proxy.pid")" 2>/dev/null'

pimap() { IMAP_PASSWORD=$QPW "$PY" "$T/imaptool.py" --port "$PPORT" --user fuser "$@"; }
# rawfetch PORT: log in, fetch all bodies, LOGOUT, all pipelined; read to
# the end; prints "bytes=N end=eof|reset lits=START,START..."
cat >"$RIG/rawfetch.py" <<-'EOF'
	import os, re, socket, sys
	s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
	pw = os.environ["QUIRKY_PASSWORD"].replace("\\", "\\\\").replace('"', '\\"')
	s.sendall(('a LOGIN fuser "%s"\r\nb EXAMINE INBOX\r\nc UID FETCH 1:* (BODY.PEEK[])\r\nd LOGOUT\r\n' % pw).encode())
	data = b""; end = "eof"
	try:
	    while True:
	        d = s.recv(65536)
	        if not d:
	            break
	        data += d
	except ConnectionResetError:
	    end = "reset"
	starts = []; pos = 0
	while True:
	    i = data.find(b"\n", pos)
	    if i < 0:
	        break
	    m = re.search(rb"\{(\d+)\}\r\n$", data[pos:i + 1])
	    pos = i + 1
	    if m:
	        starts.append(pos)
	        pos += int(m.group(1))
	print("bytes=%d end=%s lits=%s" % (len(data), end, ",".join(map(str, starts))))
	EOF
rawfetch() { "$PY" "$RIG/rawfetch.py" "$@"; }
pev() {   # CONN EVENT: that log line
	grep "\"conn\": $1, " "$PLOG" | grep "\"event\": \"$2\"" | head -n 1
}

direct=$(rig_imap src fuser "$QPW" fetch-hash INBOX)
tap_is "$(pimap fetch-hash INBOX)" "$direct" "conn 1 (no plan entry) passes through: fetch-hash equals the direct one"
TAP_EXPECT_RC=2 tap_run_fails "conn 2: a fetch through cut_in_literal fails" pimap fetch-hash INBOX
tap_like "conn 2: the log shows the cut 1000 bytes into literal 2 of a 200 KB literal" \
	'"bytes": 1000, "conn": 2, "event": "cut_in_literal", "literal": 2, "literal_size": 2[0-9]{5},' "$(pev 2 cut_in_literal)"
r=$(rawfetch "$PPORT")
read -r got_bytes got_end got_lits <<<"$r"
got_bytes=${got_bytes#bytes=}
lit2=$(cut -s -d, -f2 <<<"${got_lits#lits=}")
tap_is "$got_end $((got_bytes - ${lit2:-0}))" "end=eof 1000" \
	"conn 3: the client got exactly 1000 bytes of literal 2, then FIN ($r)"
tap_like "conn 3: logged stream position equals what the client got" "\"stream_bytes\": $got_bytes," "$(pev 3 cut_in_literal)"
TAP_EXPECT_RC=2 tap_run_fails "conn 4: a fetch through reset fails" pimap fetch-hash INBOX
tap_like "conn 4: reset after 5000 bytes logged" '"bytes": 5000, "conn": 4, "event": "reset"' "$(pev 4 reset)"
tap_like "conn 5: the client sees a reset, not EOF" 'end=reset' "$(rawfetch "$PPORT")"
TAP_EXPECT_RC=2 tap_run_fails "conn 6: a refused connection fails" pimap count INBOX
tap_is "$(rawfetch "$PPORT")" "bytes=0 end=eof lits=" "conn 7: refuse closes at once, no byte"
tap_like "conn 6: refuse logged" '"event": "refuse"' "$(pev 6 refuse)"
t0=$EPOCHREALTIME
h=$(pimap fetch-hash INBOX)
t1=$EPOCHREALTIME
tap_is "$h" "$direct" "conn 8: a stalled connection continues and gets everything"
tap_like "conn 8: it took at least the 2 s stall" '^[2-9]|^[1-9][0-9]' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
tap_like "conn 8: stall logged" '"bytes": 3000, "conn": 8, "event": "stall"' "$(pev 8 stall)"
tap_is "$(pimap fetch-hash INBOX)" "$direct" "conn 9 (no plan entry) passes through"

# latency: a count INBOX is 5 round trips (greeting, LOGIN, CAPABILITY,
# STATUS, LOGOUT), each chunk held 150 ms per direction
t0=$EPOCHREALTIME
rig_imap src fuser "$QPW" count INBOX >/dev/null
t1=$EPOCHREALTIME
direct_t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
printf '{"latency_ms": 150}\n' >"$PLAN"
t0=$EPOCHREALTIME
tap_run "conn 10: count INBOX through latency_ms 150" pimap count INBOX
t1=$EPOCHREALTIME
lat_t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
tap_like "conn 10: latency adds measurable delay (${lat_t}s, direct ${direct_t}s, at least 1.0s)" \
	'^yes$' "$(awk -v t="$lat_t" 'BEGIN { print (t >= 1.0) ? "yes" : "no" }')"

# random faults: p 1, at most 2, resets only: conns 11 and 12 fail, 13 not
printf '{"random": {"seed": 3, "p": 1.0, "actions": ["reset"], "max_faults": 2, "min_bytes": 2000, "max_bytes": 50000}}\n' >"$PLAN"
rc=""
for i in 11 12 13; do
	pimap fetch-hash INBOX >/dev/null 2>&1
	rc+="$? "
done
tap_is "$rc" "2 2 0 " "random: the first 2 connections are reset, then max_faults stops it"
tap_like "random: conn 11 was reset between 2000 and 50000 bytes" \
	'"bytes": ([2-9][0-9]{3}|[1-4][0-9]{4}), "conn": 11, "event": "reset", "random": true' "$(pev 11 reset)"
kill -USR1 "$(cat "$RIG/proxy.pid")"
for _ in $(seq 50); do grep -q summary "$PLOG" && break; sleep 0.1; done
tap_like "the summary counts 13 connections and 9 faults" \
	'"connections": 13, "event": "summary", "faults": 9, "open": 0' "$(grep summary "$PLOG" | tail -n 1)"

tap_done
