#!/bin/bash
# t-faults.sh - a real Dovecot source behind tools/faultproxy.py: cuts in
# the middle of a literal (imapc's connection and the piece fetcher's),
# resets, a stall beyond migrate_source_timeout and added latency make the
# run retry with backoff, resume from what is copied and finish equal;
# with the retries exhausted the run exits 75, keeps what it copied and
# saved no partial message.  Then 60 accounts (make soak: 200,
# T_FAULTS_ACCOUNTS) in one batch through random faults: all converge and
# the report accounts for every retry.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-faults

PY=$RIG_PY
T=$RIG_TOOLS
SRC_PW='Faults!src5'
DEST_PW='Faults!dst5'
export SRC_IMAP_PASSWORD=$SRC_PW DEST_IMAP_PASSWORD=$DEST_PW

rig_start_source src || exit 1
rig_start_dest dest || exit 1
[ "$RIG_HAVE_PLUGIN" = 1 ] && [ "$RIG_HAVE_DOVEADM_MODULE" = 1 ] ||
	rig_die "the migrate modules are not built"

# --- the proxy between the destination and the source ------------------------------
SPORT=$(rig_port src)
PPORT=$(rig_free_port)
PLAN=$RIG/plan.json
PLOG=$RIG/proxy.log
echo '{}' >"$PLAN"
"$PY" "$T/faultproxy.py" --port "$PPORT" --target-port "$SPORT" --plan "$PLAN" --log "$PLOG" \
	--pidfile "$RIG/proxy.pid" --daemon || rig_die "faultproxy did not start"
rig_on_exit 'kill "$(cat "$RIG/proxy.pid")" 2>/dev/null'
rig_migrate_source dest src "$SRC_PW"
rig_dest_plugin_set dest migrate_source_port "$PPORT"
# small save batches and prefetch chunks: a fault comes after some commits
rig_dest_plugin_set dest migrate_batch_messages 10
rig_dest_plugin_set dest migrate_prefetch 10

# the plan is re-read when its mtime changes: give each version its own
PLAN_BASE=$(date +%s)
PLAN_N=0
plan() {
	printf '%s\n' "$1" >"$PLAN.tmp"
	PLAN_N=$((PLAN_N + 1))
	touch -d "@$((PLAN_BASE + PLAN_N))" "$PLAN.tmp"
	mv "$PLAN.tmp" "$PLAN"
}
# connections the proxy has accepted so far
conns() { grep -c '"event": "open"' "$PLOG"; }

# --- one source account: INBOX (small messages), Work (flags), Big (> 1 MB)
rig_add_user src fsrc "$SRC_PW"
M=$RIG/msgs
mkdir -p "$M"
"$PY" - "$M" <<-'EOF'
	import os, random, sys
	d = sys.argv[1]
	def gen(pre, seed, n, lo, hi):
	    rng = random.Random(seed)
	    for i in range(1, n + 1):
	        size = rng.randint(lo, hi)
	        head = ("From: sender%d@example.org\r\nTo: user@example.com\r\nSubject: %s %d\r\n"
	                "Message-ID: <%s.%d@faults>\r\n\r\n" % (i, pre, i, pre, i)).encode()
	        body = bytearray()
	        j = 0
	        while len(head) + len(body) < size:
	            body += b"%s line %06d %016x\r\n" % (pre.encode(), j, rng.getrandbits(64))
	            j += 1
	        with open(os.path.join(d, "%s.%03d.eml" % (pre, i)), "wb") as f:
	            f.write(head + bytes(body))
	gen("inbox", 1, 60, 2000, 30000)
	gen("work", 2, 20, 1000, 10000)
	gen("big", 3, 2, 2500000, 2700000)
EOF
simap() { rig_imap src fsrc "$SRC_PW" "$@"; }
simap append INBOX "$M"/inbox.0[0-3]*.eml >/dev/null
simap append --flags '\Seen' INBOX "$M"/inbox.0[4-6]*.eml >/dev/null
simap append --create --flags '\Flagged $Forwarded' Work "$M"/work.*.eml >/dev/null
simap append --create --date '02-Mar-2019 08:00:00 +0100' Big "$M"/big.*.eml >/dev/null
NMSG=82
tap_is "$(( $(simap count INBOX) + $(simap count Work) + $(simap count Big) ))" "$NMSG" \
	"the source account has $NMSG messages (2 of 1.5-1.7 MB)"

# migrate U [doveadm args]: MIG_RC, MIG_OUT, MIG_SECS, MIG[field] from the summary
declare -A MIG
MIG_N=0
migrate() {
	local u=$1 t0
	shift
	MIG_N=$((MIG_N + 1))
	MIG_OUT=$RIG/mig.$MIG_N.$u
	MIG_RC=0
	t0=$EPOCHREALTIME
	rig_doveadm dest -f tab "$@" migrate -w 1 -u "$u@example.com" >"$MIG_OUT" 2>&1 || MIG_RC=$?
	MIG_SECS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	rig_summary "$MIG_OUT"
}
duser() { rig_add_user dest "$1@example.com" "$DEST_PW" userdb_migrate_source_user=fsrc; }
report() { cat "$(rig_home dest "$1@example.com")/.migrate/report.json" 2>/dev/null; }
compare() {
	"$PY" "$T/imap-compare.py" --src-port "$SPORT" --src-user fsrc \
		--dest-port "$(rig_port dest)" --dest-user "$1@example.com" "${@:2}"
}
# the proxy log's lines of connections FIRST.. (an event, optionally)
plog_from() { "$PY" - "$PLOG" "$1" "${2:-}" <<-'EOF'
	import json, sys
	for line in open(sys.argv[1]):
	    e = json.loads(line)
	    if e.get("conn", 0) >= int(sys.argv[2]) and (not sys.argv[3] or e["event"] == sys.argv[3]):
	        print(line.rstrip())
	EOF
}

# --- calibration: the same copy without faults -----------------------------------
duser c0
first=$(($(conns) + 1))
migrate c0
tap_is "$MIG_RC/${MIG[copied]}/${MIG[retries]}" "0/$NMSG/0" "without faults: exit 0, $NMSG copied, no retry"
# wait until the proxy logged the close of every connection from FIRST on
settle() {
	local i
	for i in $(seq 100); do
		[ "$(plog_from "$1" close | wc -l)" -ge $(($(conns) - $1 + 1)) ] && return 0
		sleep 0.05
	done
}
# s2c bytes / literals of connections FIRST..[LAST]
s2c_from() { plog_from "$1" close | "$PY" -c 'import json, sys
last = int(sys.argv[1]) if sys.argv[1] else 1 << 30
print(sum(e["s2c"] for e in map(json.loads, sys.stdin) if e["conn"] <= last))' "${2:-}"; }
lits_of() { plog_from "$1" close | "$PY" -c 'import json, sys
print(sum(e["literals"] for e in map(json.loads, sys.stdin) if e["conn"] == int(sys.argv[1])))' "$1"; }
settle "$first"
FULL_S2C=$(s2c_from "$first")
FULL_LITS=$(( $(lits_of "$first") + $(lits_of $((first + 1))) ))
IMAPC_S2C=$(s2c_from "$first" "$first")
tap_is "$(conns)" $((first + 1)) "a full copy uses two connections: imapc's (folders, flags, sizes) and ours (bodies, pieces)"
tap_is "$(lits_of "$first")" 0 "imapc's connection carries no message: the bodies come over ours"
tap_diag "full copy: $FULL_S2C bytes from the source, $FULL_LITS literals, ${MIG_SECS}s"

# source hashes (sorted) and the check that every destination message is
# one of them, none twice
for f in INBOX Work Big; do simap fetch-hash "$f"; done | cut -d' ' -f2 | sort >"$RIG/src.hashes"
dest_hashes() {
	local f
	for f in INBOX Work Big; do
		rig_imap dest "$1@example.com" "$DEST_PW" fetch-hash "$f" 2>/dev/null
	done | cut -d' ' -f2 | sort
}
# no_partial U: prints "N messages, M not at the source, D twice"
no_partial() {
	dest_hashes "$1" >"$RIG/dest.$1.hashes"
	printf '%d messages, %d not at the source, %d twice\n' "$(wc -l <"$RIG/dest.$1.hashes")" \
		"$(comm -13 "$RIG/src.hashes" "$RIG/dest.$1.hashes" | wc -l)" \
		"$(uniq -d "$RIG/dest.$1.hashes" | wc -l)"
}

# --- 1. single faults: retried with backoff, resumed, equal ---------------------------
# fault_case U PLAN [doveadm args]: a fresh destination user U, the plan
# (@1: the run's first connection, imapc's; @2: the second, the piece
# fetcher's), the run with a 1 s retry delay; FIRST is @1
fault_case() {
	local u=$1 p=$2
	shift 2
	duser "$u"
	FIRST=$(($(conns) + 1))
	p=${p//@1/$FIRST}
	p=${p//@2/$((FIRST + 1))}
	p=${p//@3/$((FIRST + 2))}
	plan "$p"
	migrate "$u" -o plugin/migrate_retry_delay=1s "$@"
	settle "$FIRST"
	plan '{}'
}
# fault_event CONN EVENT: the proxy's log line of that fault
fault_event() { plog_from "$1" "$2" | grep -m1 "\"conn\": $1,"; }
# retry_reads CONN: bytes and literals the source sent on the connections
# opened after the fault on CONN and the 1 s retry delay: what the retries
# read (not what the failed pass went on with meanwhile: our connection
# comes back for the folders after the one that failed)
retry_reads() { plog_from "$1" | "$PY" -c 'import json, sys
ev = [json.loads(l) for l in sys.stdin]
fc = int(sys.argv[1])
t = min(e["t"] for e in ev if e["conn"] == fc and e["event"] in
        ("cut_in_literal", "reset", "cut", "stall", "refuse"))
later = {e["conn"] for e in ev if e["event"] == "open" and e["t"] >= t + 0.9}
print(sum(e["s2c"] for e in ev if e["event"] == "close" and e["conn"] in later),
      sum(e["literals"] for e in ev if e["event"] == "close" and e["conn"] in later))' "$1"; }
# report U PYTHON-EXPR(r): a value from U's report.json
rjson() {
	report "$1" | "$PY" -c 'import json, sys; r = json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}
# check_case U TEXT RETRIES DELAYS(space-separated) FAULTED_CONN [early]:
# the run retried, resumed and finished equal; "early": the fault came
# while the folders were listed, before any message (imapc's connection
# carries nothing else), so the retries read one full copy, not less
check_case() {
	local u=$1 text=$2 nret=$3 delays=$4 fconn=$5 early=${6:-} after lits min
	tap_is "$MIG_RC ${MIG[result]} ${MIG[retries]} ${MIG[rejected]}" "0 ok $nret 0" \
		"$text: exit 0, result ok, $nret retr$([ "$nret" = 1 ] && echo y || echo ies), nothing rejected"
	[ "$MIG_RC" = 0 ] || tap_diag "$(tail -n 15 "$MIG_OUT")"
	tap_is "${MIG[copied]}" "$NMSG" "$text: $NMSG copied over all passes: none copied twice"
	tap_is "$(rjson "$u" '" ".join(str(x["delay_secs"]) for x in r["retries"])')" "$delays" \
		"$text: report.json lists the retries with their delays ($delays s: doubling, no jitter at 1 s)"
	tap_diag "$text: retry errors: $(rjson "$u" '" | ".join(x["error"] for x in r["retries"])')"
	min=0
	for d in $delays; do min=$((min + d)); done
	tap_like "$text: the run took at least the $min s of delays (${MIG_SECS}s)" '^yes$' \
		"$(awk -v t="$MIG_SECS" -v m="$min" 'BEGIN { print (t >= m) ? "yes" : "no" }')"
	read -r after lits <<<"$(retry_reads "$fconn")"
	if [ -n "$early" ]; then
		tap_like "$text: the retries read $after bytes in $lits literals: one full copy ($FULL_S2C in $FULL_LITS), nothing twice" \
			'^yes$' "$(awk -v a="$after" -v f="$FULL_S2C" -v l="$lits" -v fl="$FULL_LITS" \
				'BEGIN { print (a <= f * 1.05 && l <= fl + 4) ? "yes" : "no" }')"
	elif [ "$after" -lt "$FULL_S2C" ] && [ "$lits" -lt $((FULL_LITS + 4)) ]; then
		tap_ok "$text: the retries read $after bytes in $lits literals, less than a full copy's $FULL_S2C in $((FULL_LITS + 4))"
	else
		tap_fail "$text: the retries read $after bytes in $lits literals, not less than a full copy's $FULL_S2C in $((FULL_LITS + 4))"
	fi
	tap_run "$text: imap-compare: equal" compare "$u"
}

# takeover_case U TEXT: our connection failed in the middle of a chunk of
# bodies; the source storage fetched the rest of the folder on imapc's
# connection, in the same pass, and said so
takeover_case() {
	local u=$1 text=$2
	tap_is "$MIG_RC ${MIG[result]} ${MIG[copied]} ${MIG[rejected]}" "0 ok $NMSG 0" \
		"$text: exit 0, result ok, $NMSG copied, nothing rejected"
	[ "$MIG_RC" = 0 ] || tap_diag "$(tail -n 15 "$MIG_OUT")"
	# (where the cut lands in INBOX's first messages, asked for while
	# the folder before it was copied, they are asked for again)
	tap_like "$text: the storage took over (or our connection asked again), with a warning naming the folder" \
		'INBOX: our own connection to the source did not bring (UID [0-9]+ and after \(.*\): the source storage fetches them|the messages asked for ahead \(.*\): they are asked for again)' \
		"$(cat "$MIG_OUT")"
	tap_run "$text: imap-compare: equal" compare "$u"
}

# (a) our connection is closed 1000 bytes into the 40th body
fault_case ca '{"connections": {"@2": {"action": "cut_in_literal", "literal": 40, "bytes": 1000}}}'
tap_like "cut in a body on our connection: the proxy cut literal 40 after 1000 bytes" \
	'"bytes": 1000, .*"event": "cut_in_literal", "literal": 40,' "$(fault_event $((FIRST + 1)) cut_in_literal)"
takeover_case ca "cut in a body on our connection"
tap_like "cut in a body on our connection: the retry count is 0 or 1 (the large messages' connection comes back)" \
	'^[01]$' "${MIG[retries]}"

# (b) the piece fetcher's connection is closed 300000 bytes into the first
# piece of the second large message
fault_case cb '{"connections": {"@2": {"action": "cut_in_literal", "literal": 4, "bytes": 300000}}}'
tap_like "cut in the piece fetcher's literal: the proxy cut a 1 MB piece after 300000 bytes" \
	'"bytes": 300000, .*"event": "cut_in_literal", "literal": [0-9]+, "literal_size": 1048576,' \
	"$(fault_event $((FIRST + 1)) cut_in_literal)"
check_case cb "cut in the piece fetcher's literal" 1 1 $((FIRST + 1))

# (c) imapc's connection gets a RST halfway, and the first connection of
# the retry is refused: a second retry, after twice the delay
(
	for _ in $(seq 400); do
		if fault_event "$((MIG_N * 1000))" x >/dev/null 2>&1; then :; fi
		n=$(plog_from 0 reset | wc -l)
		if [ "$n" -gt 0 ]; then
			PLAN_N=$((PLAN_N + 1))
			plan "{\"connections\": {\"$(($(conns) + 1))\": {\"action\": \"refuse\"}}}"
			exit 0
		fi
		sleep 0.05
	done
) &
WATCH=$!
fault_case cc "{\"connections\": {\"@1\": {\"action\": \"reset\", \"after_bytes\": $((IMAPC_S2C / 2))}}}"
wait "$WATCH"
PLAN_N=$((PLAN_N + 1))
tap_like "reset: the proxy reset imapc's connection after $((IMAPC_S2C / 2)) bytes" \
	"\"bytes\": $((IMAPC_S2C / 2)), .*\"event\": \"reset\"" "$(fault_event "$FIRST" reset)"
tap_like "reset: the retry's connection was refused" '"event": "refuse"' "$(plog_from "$FIRST" refuse)"
check_case cc "reset, then refused" 2 "1 2" "$FIRST" early

# (d) imapc's connection stalls for longer than migrate_source_timeout (3 s)
# (without the minimum rate, which would give the source up at the same
# time), once it is logged in: near the end of its listing, before the
# LOGOUT's reply (about 70 bytes)
fault_case cd "{\"connections\": {\"@1\": {\"action\": \"stall\", \"after_bytes\": $((IMAPC_S2C - 150)), \"secs\": 6, \"then\": \"close\"}}}" \
	-o plugin/migrate_source_timeout=3s -o plugin/migrate_min_rate=0
tap_like "stall: the proxy stalled imapc's connection" '"event": "stall"' "$(fault_event "$FIRST" stall)"
check_case cd "stall beyond the timeout" 1 1 "$FIRST" early
tap_like "stall: the run waited for the 3 s timeout and the 1 s delay (${MIG_SECS}s)" '^yes$' \
	"$(awk -v t="$MIG_SECS" 'BEGIN { print (t >= 4) ? "yes" : "no" }')"
# (which command it is depends on where half of imapc's bytes fall: its
# connection carries no bodies now)
tap_like "stall: imapc logged the command timeout" "Command '[0-9]+ [A-Z][^']*' timed out - disconnecting" "$(cat "$MIG_OUT")"
# the retry's recorded cause names what imapc logged (Dovecot's own error
# is only "Internal error occurred")
tap_like "stall: report.json names the timeout or disconnection as the retry's cause" \
	'timed out|[Dd]isconnect' "$(rjson cd 'r["retries"][0]["error"]')"

# (e) 20 ms latency on every chunk, and a cut in our connection's 50th body
fault_case ce '{"latency_ms": 20, "connections": {"@2": {"action": "cut_in_literal", "literal": 50, "bytes": 500}}}'
tap_like "latency: the proxy cut literal 50" '"event": "cut_in_literal", "literal": 50,' "$(fault_event $((FIRST + 1)) cut_in_literal)"
takeover_case ce "latency and a cut"
tap_diag "latency: the run took ${MIG_SECS}s"

# --- 2. retries exhausted in the middle of a literal: exit 75, no partial message ---
# exhausted U TEXT PLAN: no retries; the copied messages are kept, each is
# whole (its sha256 is a source message's), none twice; the re-run
# completes, copying only the rest
exhausted() {
	local u=$1 text=$2 p=$3 kept
	fault_case "$u" "$p" -o plugin/migrate_retries=0
	tap_is "$MIG_RC ${MIG[result]} ${MIG[retries]}" "75 failed 0" "$text, no retries: exit 75, result failed"
	tap_like "$text: the proxy's cut landed" '"event": "cut_in_literal"' "$(plog_from "$FIRST" cut_in_literal)"
	kept=$(no_partial "$u")
	tap_like "$text: every message kept is whole and once ($kept)" '^[1-9][0-9]* messages, 0 not at the source, 0 twice$' "$kept"
	kept=${kept%% *}
	if [ "$kept" -lt "$NMSG" ]; then
		tap_ok "$text: the run stopped mid-copy ($kept of $NMSG kept)"
	else
		tap_fail "$text: the run did not stop mid-copy ($kept of $NMSG)"
	fi
	migrate "$u"
	tap_is "$MIG_RC ${MIG[result]} ${MIG[copied]}" "0 ok $((NMSG - kept))" \
		"$text: the re-run completes, copying only the $((NMSG - kept)) missing"
	tap_run "$text: imap-compare after the re-run: equal" compare "$u"
}
# (our connection's second, @3, is cut too: the 30th literal may be one of
# the next folder's, asked for ahead, which the next connection asks for
# again)
exhausted fa "cut in a body on both connections" \
	'{"connections": {"@2": {"action": "cut_in_literal", "literal": 30, "bytes": 1000}, "@3": {"action": "cut_in_literal", "literal": 1, "bytes": 1000}, "@1": {"action": "cut_in_literal", "literal": 5, "bytes": 1000}}}'
exhausted fb "cut in a piece of a large message" \
	'{"connections": {"@2": {"action": "cut_in_literal", "literal": 2, "bytes": 200000}}}'

# --- 3. many accounts in one batch through random faults --------------------------
# 60: the random plan (seed 8) has both kinds of fault among their
# connections, several of each
NACC=${T_FAULTS_ACCOUNTS:-60}
# the source accounts are written straight into their Maildirs (Dovecot
# indexes them on first access: far faster than an APPEND session each):
# INBOX with 5-20 messages of 0.5-6 KB, half of them also a Work folder;
# system flags in the file names, INTERNALDATE from the mtime
"$PY" - "$RIG/src/mail" "$NACC" >"$RIG/seed.counts" <<-'EOF'
	import os, random, sys
	base, n = sys.argv[1], int(sys.argv[2])
	rng = random.Random(2026)
	for a in range(1, n + 1):
	    user = "old%03d" % a
	    md = os.path.join(base, user, "Maildir")
	    folders = {"": rng.randint(5, 20)}
	    if a % 2:
	        folders[".Work"] = rng.randint(1, 6)
	    total = 0
	    for folder, count in folders.items():
	        d = os.path.join(md, folder) if folder else md
	        for sub in ("cur", "new", "tmp"):
	            os.makedirs(os.path.join(d, sub), exist_ok=True)
	        if folder:
	            open(os.path.join(d, "maildirfolder"), "w").close()
	        for i in range(count):
	            body = ("From: s%d@example.org\r\nTo: %s@example.com\r\nSubject: %s%s %d\r\n"
	                    "Message-ID: <%s.%s.%d@faults>\r\n\r\n" % (i, user, user, folder, i, user, folder, i)).encode()
	            size = rng.randint(500, 6000)
	            line = 0
	            while len(body) < size:
	                body += b"line %05d %016x of %s\r\n" % (line, rng.getrandbits(64), user.encode())
	                line += 1
	            flags = "".join(f for f in "FRS" if rng.random() < 0.3)
	            date = 1500000000 + rng.randrange(200000000)
	            name = "%d.M%dP%d.rig,S=%d:2,%s" % (date, a * 100 + i, i, len(body), flags)
	            p = os.path.join(d, "cur", name)
	            with open(p, "wb") as f:
	                f.write(body)
	            os.utime(p, (date, date))
	            total += 1
	    print(user, total)
	EOF
chown -R "${RIG_MAIL_USER:-nobody}:${RIG_MAIL_GROUP:-nogroup}" "$RIG/src/mail"
# users: written at once (rig_add_user waits a second per user for
# Dovecot to notice the change)
src_pw() { printf 'Old!pw%03d' "$1"; }
for i in $(seq 1 "$NACC"); do
	printf 'old%03d:{PLAIN}%s::::::\n' "$i" "$(src_pw "$i")" >>"$(rig_users_file src)"
	printf 'u%03d@example.com:{PLAIN}%s::::::\n' "$i" "$DEST_PW" >>"$(rig_users_file dest)"
done
touch -d "@$(($(date +%s) + 1))" "$(rig_users_file src)" "$(rig_users_file dest)"
sleep 1.1
TOTAL_MSGS=$(awk '{ s += $2 } END { print s }' "$RIG/seed.counts")
tap_is "$(rig_imap src old002 "$(src_pw 2)" count INBOX)" "$(awk '$1 == "old002" { print $2 }' "$RIG/seed.counts")" \
	"the seeded Maildirs are read by the source ($NACC accounts, $TOTAL_MSGS messages)"

TEMPLATE=$RIG/template.csv
{
	echo 'source_host,source_user,source_password,dest_host,dest_user,dest_password'
	for i in $(seq 1 "$NACC"); do
		printf '127.0.0.1:%s,old%03d,%s,mx.example.com,u%03d@example.com,Str0ng!dest\n' \
			"$PPORT" "$i" "$(src_pw "$i")" "$i"
	done
} >"$TEMPLATE"
# the template is the batch's input: it holds the passwords (the source
# ones are registered by rig_add_user)
rig_secret 'Str0ng!dest' "template dest_password"
rig_secret_input "$TEMPLATE"
# random faults from the next connection on: each connection gets a cut
# inside a literal or a RST with probability 0.2, at most 40; a RST comes
# after 2000-60000 bytes (a connection imapc opens only to log out, ~600
# bytes,
# never gets one)
BFIRST=$(($(conns) + 1))
plan '{"random": {"seed": 8, "p": 0.2, "actions": ["cut_in_literal", "reset"], "max_faults": 40,
	"min_bytes": 2000, "max_bytes": 60000, "max_literal": 3}}'
t0=$SECONDS
BATCH_RC=0
rig_doveadm dest -o plugin/migrate_retry_delay=1s migrate batch -j 4 --retries 3 --retry-delay 1 \
	--json "$RIG/batch.json" --csv "$RIG/batch.csv" "$TEMPLATE" >"$RIG/batch.out" 2>"$RIG/batch.err" ||
	BATCH_RC=$?
BATCH_SECS=$((SECONDS - t0))
settle "$BFIRST"
plan '{}'
tap_is "$BATCH_RC" 0 "batch of $NACC accounts through random faults exits 0 (${BATCH_SECS}s)"
[ "$BATCH_RC" = 0 ] || tap_diag "$(tail -n 15 "$RIG/batch.err")"

# every account ok, each copied exactly what its source has
"$PY" - "$RIG/batch.json" "$RIG/seed.counts" >"$RIG/batch.check" <<-'EOF'
	import json, sys
	accts = json.load(open(sys.argv[1]))["accounts"]
	seeded = dict(l.split() for l in open(sys.argv[2]))
	bad = [a["user"] for a in accts if a["status"] != "ok"]
	wrong = [(a["user"], a["copied"]) for a in accts if a["copied"] != int(seeded[a["source_user"]])]
	retries = sum(a["source_retries"] for a in accts)
	outer = sum(a["attempts"] - 1 for a in accts)
	# the warnings are the last attempt's: compare where there was one
	logged = sum(1 for a in accts if a["attempts"] == 1
	             for w in a["warnings"] if w.startswith("Retry "))
	single = sum(a["source_retries"] for a in accts if a["attempts"] == 1)
	with_reason = sum(1 for a in accts if a["status"] == "ok" and a["reason"] is not None)
	# our connection failing mid-folder is not a retry: the storage takes
	# over in the same pass, with one warning (the last attempt's only)
	takeovers = sum(1 for a in accts for w in a["warnings"]
	                if "the source storage fetches them" in w)
	# the next folder's messages asked for ahead and lost with our
	# connection are asked for again (counted by the second check only:
	# the fault that lost them may have cost a takeover too)
	reasks = sum(1 for a in accts for w in a["warnings"]
	             if "they are asked for again" in w)
	print(len(accts), len(bad), len(wrong), retries, outer,
	      sum(1 for a in accts if a["source_retries"] or a["attempts"] > 1), logged,
	      with_reason, single, takeovers, reasks)
	print("not ok:", " ".join(bad[:10]), "wrong copied:", wrong[:10])
	EOF
read -r n_acct n_bad n_wrong src_retries outer_retries n_retried n_logged n_reason n_single n_takeover n_reask <"$RIG/batch.check"
tap_is "$n_acct $n_bad" "$NACC 0" "the JSON report has all $NACC accounts, every one ok"
[ "$n_bad" = 0 ] || tap_diag "$(tail -n 1 "$RIG/batch.check")"
tap_is "$n_wrong" 0 "each account copied exactly its source's message count (nothing twice, nothing missing)"
tap_is "$n_reason" 0 "no ok account carries a failure reason (its retries are in source_retries and warnings)"
tap_is "$(grep -c ',ok,ok,' "$RIG/batch.csv")" "$NACC" "the CSV report has $NACC rows ok"

# imap-compare of every account (4 at a time)
DPORT=$(rig_port dest)
cmp_one() {
	SRC_IMAP_PASSWORD=$(src_pw "$1") "$PY" "$T/imap-compare.py" -q --src-port "$SPORT" \
		--src-user "$(printf old%03d "$1")" --dest-port "$DPORT" \
		--dest-user "$(printf u%03d@example.com "$1")" >"$RIG/cmp.$1" 2>&1 ||
		echo "u$1: $(tail -n 1 "$RIG/cmp.$1")"
}
export -f cmp_one src_pw
export PY T SPORT DPORT RIG
t0=$SECONDS
cmp_bad=$(seq 1 "$NACC" | xargs -P 4 -I{} bash -c 'cmp_one {}')
tap_is "$cmp_bad" "" "imap-compare: all $NACC accounts equal to their sources ($((SECONDS - t0))s)"

# "the report accounts for every retry".  A pass that failed is in the
# report: one retried inside the run is in source_retries; the last failed
# pass of a run that gave up (exit 75) is one of the batch's attempts; and
# a fault on our own connection mid-folder, which the source storage takes
# over in the same pass, is a warning (the last attempt's warnings only:
# a lower bound).  So an account's failed passes are source_retries +
# attempts - 1 + takeovers, and R, their sum, is what the report claims.
# Which of the three a fault becomes depends on where it lands (most are
# takeovers now that bodies come over our connection), so R > 0 is asked
# of the sum only.  What the faults must give:
# - R <= the faults the proxy log shows landed: no retry without a fault
#   (nothing else fails here);
# - not R >= the faults: after a cut the pass goes on with its other
#   folders on a connection imapc opens by itself (seen: 9-14 more bodies
#   fetched there, the folder that failed is left to the retry), so a
#   second fault can land on a pass that has already failed; and a RST may
#   land in the LOGOUT reply of a pass that succeeded.  The proxy log cannot tell those apart (it knows no user),
#   the source's log can: per source account, in the order the sessions
#   ended, a session killed mid-way ("Connection closed", not "Logged
#   out") that does not directly follow another killed one starts a failed
#   pass.  Per account those failures <= its failed passes in the report
#   (a fault during LOGIN has no such session: a lower bound).
read -r f_cut f_reset f_planned n_conns <<<"$(plog_from "$BFIRST" | "$PY" -c 'import json, sys
ev = [json.loads(l) for l in sys.stdin]
print(sum(e["event"] == "cut_in_literal" for e in ev), sum(e["event"] == "reset" for e in ev),
      sum(1 for e in ev if e["event"] == "open" and e["fault"]), sum(e["event"] == "open" for e in ev))')"
R=$((src_retries + outer_retries + n_takeover))
read -r killed starts short <<<"$("$PY" - "$(rig_log src)" "$RIG/batch.json" <<-'EOF'
	import json, re, sys
	seq = {}
	for line in open(sys.argv[1], errors="replace"):
	    m = re.search(r"imap\((old\d+)\)<[^:]*: Info: Disconnected: (.*)", line)
	    if m:
	        seq.setdefault(m.group(1), []).append(not m.group(2).startswith("Logged out"))
	# a failed pass is a retry, or the storage taking over from our
	# connection in the same pass (a warning of the last attempt)
	acct = {a["source_user"]: a["source_retries"] + a["attempts"] - 1 +
	        sum(1 for w in a["warnings"] if "the source storage fetches them" in w or
	            "they are asked for again" in w)
	        for a in json.load(open(sys.argv[2]))["accounts"]}
	killed = starts = 0
	short = []
	for u, s in seq.items():
	    k = sum(s)
	    st = sum(1 for i, x in enumerate(s) if x and (i == 0 or not s[i - 1]))
	    killed += k
	    starts += st
	    if st > acct.get(u, 0):
	        short.append("%s:%d>%d" % (u, st, acct.get(u, 0)))
	print(killed, starts, ",".join(short) or "-")
	EOF
)"
tap_diag "batch: $n_conns connections, $f_planned faults planned, $((f_cut + f_reset)) landed ($f_cut cuts in a literal, $f_reset resets);" \
	"  the source saw $killed sessions killed, starting $starts failed passes;" \
	"  failed passes in the report: $src_retries retries inside the runs + $outer_retries batch attempts + $n_takeover takeovers = $R, over $n_retried accounts retried;" \
	"  and $n_reask times messages asked for ahead were asked for again; ${BATCH_SECS}s"
if [ "$R" -le $((f_cut + f_reset)) ] && [ "$R" -gt 0 ]; then
	tap_ok "every failed pass in the report had a fault: 0 < $R failed passes <= $((f_cut + f_reset)) faults landed"
else
	tap_fail "every failed pass in the report had a fault: 0 < $R failed passes <= $((f_cut + f_reset)) faults landed"
fi
tap_is "$short" "-" "every account's report counts each failed pass the source saw ($starts <= $R + $n_reask asked again)"
if [ "$f_cut" -gt 0 ] && [ "$f_reset" -gt 0 ]; then
	tap_ok "both kinds of random fault landed ($f_cut cuts, $f_reset resets)"
else
	tap_fail "both kinds of random fault landed ($f_cut cuts, $f_reset resets)"
fi
tap_is "$n_logged" "$n_single" "each retry inside a run is among its account's warnings (accounts run once: $n_single retries)"

tap_done
