#!/bin/bash
# t-limitproxy.sh - self-test of tools/limitproxy.py, a provider's limits
# in front of a real Dovecot source: connections over --max-conns per IP
# are refused (greeting BYE, or NO at LOGIN/AUTHENTICATE) and never reach
# the server, freed slots admit new ones, the stats count what reached the
# server; a command rate answers NO [THROTTLED] (never to APPEND, never
# inside a server response, literals passed through unparsed both ways) or
# delays; BYE under load hits the planned number of connections.  Python's
# imaplib and raw sockets are the clients.

. "$(dirname "$0")/../lib/rig.sh"
rig_init t-limitproxy

PY=$RIG_PY
T=$RIG_TOOLS
PW='Limit!src7'
export IMAP_PASSWORD=$PW

rig_start_source src || exit 1
rig_add_user src lim "$PW"
SPORT=$(rig_port src)

tap_run "seed-account seeds the source" \
	"$PY" "$T/seed-account.py" --port "$SPORT" --user lim seed
# and 8 messages of 1 MB in INBOX: a response longer than the socket buffers
"$PY" - "$RIG/big" <<-'EOF'
	import os, sys
	os.mkdir(sys.argv[1])
	for n in range(8):
	    body = b"".join(b"m%d line %06d of a big one\r\n" % (n, i) for i in range(36000))
	    with open("%s/%d.eml" % (sys.argv[1], n), "wb") as f:
	        f.write(b"From: b@example.org\r\nSubject: big %d\r\n\r\n" % n + body)
	EOF
n0=$(rig_imap src lim "$PW" count INBOX)
tap_run "8 big messages appended to INBOX" rig_imap src lim "$PW" append INBOX "$RIG"/big/*.eml
tap_is "$(rig_imap src lim "$PW" count INBOX)" $((n0 + 8)) "... INBOX has them"

# --- the proxy -----------------------------------------------------------------
# proxy_start NAME ARGS...: limitproxy in front of the source, port in
# $PPORT; $RIG/NAME.log, NAME.stats, NAME.pid
proxy_start() { rig_start_limitproxy "$1" "$SPORT" "${@:2}"; }
# the pid of proxy NAME when it runs (checked against its command line)
proxy_pid() {
	local pid
	pid=$(cat "$RIG/$1.pid" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "limitproxy.py --port" || return 1
	echo "$pid"
}
# SIGTERM (it writes its stats), wait until it is gone
proxy_stop() {
	local pid i
	pid=$(proxy_pid "$1") || return 0
	kill -TERM "$pid"
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
}
proxy_stop_all() {
	local f
	for f in "$RIG"/*.pid; do
		[ -e "$f" ] && proxy_stop "$(basename "$f" .pid)"
	done
}
rig_on_exit proxy_stop_all
# pstat NAME KEY: a value of the stats file
pstat() {
	"$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
		"$RIG/$1.stats" "$2"
}
# events NAME EVENT: how many lines of that event the log has
events() {
	grep -c "\"event\": \"$2\"" "$RIG/$1.log"
}
logins() {
	grep -c 'imap-login: Info: Login: user=<lim>,' "$(rig_log src)"
}
# new_logins N0 WANT: the logins since there were N0 (Dovecot's log
# process writes them a little later: waits up to 3 s for WANT, then a
# moment for more)
new_logins() {
	local i
	for ((i = 0; i < 30; i++)); do
		[ $(($(logins) - $1)) -ge "$2" ] && break
		sleep 0.1
	done
	sleep 0.2
	echo $(($(logins) - $1))
}

# --- the clients -----------------------------------------------------------------
cat >"$RIG/client.py" <<-'EOF'
	import hashlib, imaplib, json, os, re, select, socket, sys, time
	PW = os.environ["IMAP_PASSWORD"]
	mode, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]

	def closes():
	    n = 0
	    with open(log) as f:
	        for line in f:
	            if json.loads(line).get("event") == "close":
	                n += 1
	    return n

	def wait_closes(n):
	    deadline = time.time() + 10
	    while closes() < n and time.time() < deadline:
	        time.sleep(0.02)

	def conn(auth="login"):
	    """(result, IMAP4 or None): ok / bye / no, with the server's text"""
	    try:
	        c = imaplib.IMAP4("127.0.0.1", port, timeout=10)
	    except imaplib.IMAP4.error as e:
	        return "bye(%s)" % e, None
	    try:
	        if auth == "login":
	            c.login("lim", PW)
	        else:
	            ir = ("\0lim\0" + PW).encode()
	            c.authenticate("PLAIN", lambda _: ir)
	    except imaplib.IMAP4.error as e:
	        return "no(%s)" % e, None
	    typ, _ = c.select("INBOX")
	    typ2, _ = c.fetch("1:*", "(FLAGS)")
	    return ("ok" if typ == typ2 == "OK" else "fail"), c

	def kind(res):
	    return res.split("(")[0]

	def raw_lines(s, until):
	    """lines from a raw socket up to the one starting with until"""
	    out, buf = [], b""
	    s.settimeout(10)
	    while True:
	        while b"\n" not in buf:
	            d = s.recv(65536)
	            if not d:
	                return out + [buf]
	            buf += d
	        line, buf = buf.split(b"\n", 1)
	        out.append(line + b"\n")
	        if line.startswith(until):
	            return out

	if mode in ("conns", "conns-login"):
	    first = []
	    held = []
	    for i in range(5):
	        res, c = conn("authenticate" if i == 4 else "login")
	        first.append(res)
	        if c:
	            held.append(c)
	    print("first:", " ".join(kind(r) for r in first))
	    for r in first:
	        if kind(r) != "ok":
	            print("refusal:", r)
	    # the proxy's open count must drop before a slot is free
	    before = closes()
	    for c in held[:2]:
	        c.logout()
	    wait_closes(before + 2)
	    after = []
	    for i in range(3):
	        res, c = conn()
	        after.append(kind(res))
	        if c:
	            held.append(c)
	    print("after:", " ".join(after))
	    if mode == "conns-login":
	        # LOGIN with literals, {N+} and {N}, on a refused connection
	        s = socket.create_connection(("127.0.0.1", port), timeout=10)
	        greet = s.recv(1000)
	        s.sendall(b"a0 CAPABILITY\r\na1 LOGIN {3+}\r\nlim {8+}\r\nnotapass\r\n")
	        got = b"".join(raw_lines(s, b"a1 "))
	        print("literal+ login:", repr(greet[:6]), repr(got.splitlines()[-1]))
	        s.close()
	        s = socket.create_connection(("127.0.0.1", port), timeout=10)
	        s.recv(1000)
	        s.sendall(b"b1 LOGIN {3}\r\n")
	        cont = s.recv(100)
	        s.sendall(b"lim {8}\r\n")
	        cont2 = s.recv(100)
	        s.sendall(b"notapass\r\n")
	        got = b"".join(raw_lines(s, b"b1 "))
	        print("sync login:", repr(cont), repr(cont2), repr(got.splitlines()[-1]))
	        s.close()
	    for c in held[2:]:
	        c.logout()

	elif mode == "throttle":
	    c = imaplib.IMAP4("127.0.0.1", port, timeout=10)
	    c.login("lim", PW)
	    while True:
	        typ, data = c.select("INBOX")
	        if typ == "OK":
	            break
	        time.sleep(1)
	    ok = no = 0
	    other = []
	    for i in range(30):
	        typ, data = c.noop() if i % 2 else c.fetch("1", "(FLAGS)")
	        if typ == "OK":
	            ok += 1
	        elif typ == "NO" and b"[THROTTLED]" in data[-1]:
	            no += 1
	        else:
	            other.append((typ, data))
	    print("burst: %d ok %d throttled %r" % (ok, no, other))
	    # out of tokens: an APPEND (synchronizing literal whose content looks
	    # like commands, 1 MB) is delayed, never refused
	    body = b"".join(b"y%d NOOP line %06d of the big one\r\n" % (i % 7, i) for i in range(30000))
	    big = b"From: a@example.org\r\nSubject: big\r\n\r\ny1 NOOP\r\n" + body
	    typ, data = c.append("INBOX", None, None, big)
	    print("append:", typ, data)
	    # a synchronizing literal the server refuses before its "+"
	    typ, data = c.append("Nosuchfolder", None, None, b"Subject: x\r\n\r\nx\r\n")
	    print("append refused:", typ, data)
	    typ, data = c.noop()
	    print("noop after:", typ)
	    # LITERAL+ through the parser: its content is not parsed as commands
	    lit = b"Subject: lit\r\n\r\nz1 NOOP\r\nz2 FETCH 1 (FLAGS)\r\n"
	    c.send(b"x1 APPEND INBOX {%d+}\r\n" % len(lit) + lit + b"\r\n")
	    lines = []
	    while True:
	        line = c.readline()
	        lines.append(line)
	        if line.startswith(b"x1 ") or not line:
	            break
	    print("literal+ append:", lines[-1].startswith(b"x1 OK [APPENDUID "),
	          "stray:", [l for l in lines if l[:3] in (b"z1 ", b"z2 ")])
	    # a full bucket later: commands pass again
	    time.sleep(1.3)
	    typ, data = c.fetch("1", "(FLAGS)")
	    print("after a pause:", typ)
	    # pipelined: a big FETCH answered while the NOOPs behind it are
	    # refused; the refusals must come between responses, the literals
	    # arrive whole
	    time.sleep(1.3)
	    # (the NOOPs go once the response started: the proxy is in the
	    # middle of it, as the client's receive buffer is pinned small:
	    # no autotuning up to tcp_rmem's maximum, the whole response)
	    s = c.sock
	    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
	    f = c.file
	    s.sendall(b"p0 UID FETCH 1:* (BODY.PEEK[])\r\n")
	    got = {}
	    tagged = {}
	    inside = 0                           # refusals before p0's end
	    sent = False
	    while len(tagged) < 11:
	        line = f.readline()
	        if not line:
	            break
	        if not sent:
	            s.sendall(b"".join(b"p%d NOOP\r\n" % i for i in range(1, 11)))
	            sent = True
	        m = re.match(rb"^\* \d+ FETCH \(UID (\d+) BODY\[\] \{(\d+)\}\r\n$", line)
	        if m:
	            got[int(m.group(1))] = hashlib.sha256(f.read(int(m.group(2)))).hexdigest()
	            f.readline()                 # ")"
	            continue
	        m = re.match(rb"^(p\d+) (OK|NO|BAD)", line)
	        if m:
	            tagged[m.group(1)] = m.group(2) + (b" THROTTLED" if b"[THROTTLED]" in line else b"")
	            if b"[THROTTLED]" in line and b"p0" not in tagged:
	                inside += 1
	    print("pipelined:", tagged.get(b"p0"), sum(1 for v in tagged.values() if v == b"NO THROTTLED"),
	          "throttled,", len(got), "messages,", inside, "refusals inside the FETCH response")
	    # the same bodies straight from the server
	    d = imaplib.IMAP4("127.0.0.1", int(sys.argv[4]), timeout=10)
	    d.login("lim", PW)
	    d.select("INBOX", readonly=True)
	    _, data = d.uid("FETCH", "1:*", "(BODY.PEEK[])")
	    direct = {}
	    for item in data:
	        if isinstance(item, tuple):
	            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
	            direct[uid] = hashlib.sha256(item[1]).hexdigest()
	    print("bodies equal:", got == direct and len(direct) > 0)
	    d.logout()
	    c.logout()

	elif mode == "delay":
	    start = time.time()
	    c = imaplib.IMAP4("127.0.0.1", port, timeout=10)
	    c.login("lim", PW)
	    res = [c.noop()[0] for _ in range(12)]
	    print("delay: %s in %.2f s" % (" ".join(sorted(set(res))), time.time() - start))
	    c.logout()

	elif mode == "byes":
	    held = []
	    for i in range(5):
	        c = imaplib.IMAP4("127.0.0.1", port, timeout=10)
	        c.login("lim", PW)
	        held.append(c)
	    time.sleep(0.5)
	    out = []
	    for c in held:
	        r, _, _ = select.select([c.sock], [], [], 0)
	        if r:
	            line = c.readline()
	            eof = c.readline() == b""
	            out.append("bye" if line == b"* BYE [UNAVAILABLE] Server busy\r\n" and eof
	                       else "junk(%r)" % line)
	        else:
	            typ, _ = c.noop()
	            out.append(typ.lower())
	            c.logout()
	    print("byes:", " ".join(out))
	EOF
client() {
	"$PY" "$RIG/client.py" "$@"
}

# --- 1. --max-conns 3, refused with a greeting BYE -------------------------------
proxy_start conns --max-conns 3
n0=$(logins)
out=$(client conns "$PPORT" "$RIG/conns.log" 2>&1)
tap_like "5 at once: 3 log in and work, 2 get the greeting BYE" $'first: ok ok ok bye bye\n' "$out"
tap_like "... BYE [UNAVAILABLE] Too many connections from your IP" \
	"refusal: bye\\(b'\\* BYE \\[UNAVAILABLE\\] Too many connections from your IP, try again later'\\)" "$out"
tap_like "after 2 logged out, 2 new ones log in, the next is refused" $'after: ok ok bye' "$out"
tap_is "$(new_logins "$n0" 5)" 5 "the server saw the 5 admitted logins only"
pid=$(proxy_pid conns)
kill -USR1 "$pid"
for ((i = 0; i < 50; i++)); do
	[ "$(events conns summary)" -ge 1 ] && break
	sleep 0.1
done
tap_is "$(events conns summary)" 1 "SIGUSR1 writes a summary"
tap_is "$(pstat conns max_concurrent)" 3 "stats: max_concurrent 3"
tap_like "stats: max_concurrent_all counts the refused ones too" '^[45]$' "$(pstat conns max_concurrent_all)"
tap_is "$(pstat conns refused)/$(pstat conns forwarded)/$(pstat conns connections)/$(pstat conns open)" \
	"3/5/8/0" "stats: 3 refused, 5 forwarded of 8, none open"
tap_is "$(events conns refuse)" 3 "the log has the 3 refusals"
tap_is "$("$PY" -c 'import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
print(max(e["open_ip"] for e in ev if e["event"] == "open"))' "$RIG/conns.log")" \
	3 "the open events never count more than 3"
proxy_stop conns

# --- 2. --refuse-style login --------------------------------------------------------
proxy_start login --max-conns 3 --refuse-style login
n0=$(logins)
out=$(client conns-login "$PPORT" "$RIG/login.log" 2>&1)
tap_like "login style: the 4th and 5th are greeted, then refused" $'first: ok ok ok no no\n' "$out"
tap_like "... LOGIN gets NO [UNAVAILABLE] Too many simultaneous connections" \
	"refusal: no\\(b'\\[UNAVAILABLE\\] Too many simultaneous connections'\\)" "$out"
tap_is "$(grep -cE "^refusal: no\(b?'?\[UNAVAILABLE\] Too many simultaneous connections" <<<"$out")" 2 \
	"... AUTHENTICATE PLAIN too"
tap_like "... freed slots admit new ones" $'after: ok ok no' "$out"
tap_like "... a LOGIN with LITERAL+ literals is refused after them" \
	"literal\\+ login: b'\\* OK \\[' b'a1 NO \\[UNAVAILABLE\\] Too many simultaneous connections'" "$out"
tap_like "... and one with synchronizing literals after '+ OK'" \
	"sync login: b'\\+ OK\\\\r\\\\n' b'\\+ OK\\\\r\\\\n' b'b1 NO \\[UNAVAILABLE\\]" "$out"
tap_is "$(new_logins "$n0" 5)" 5 "the server saw the 5 admitted logins only"
proxy_stop login
tap_is "$(pstat login max_concurrent)/$(pstat login refused)" 3/5 "stats: max_concurrent 3, 5 refused"
tap_is "$(events login refuse_login)" 5 "the log has 5 refused logins"

# --- 3. --max-commands-per-sec 5 --throttle-reply ------------------------------------
proxy_start throttle --max-commands-per-sec 5 --throttle-reply
out=$(client throttle "$PPORT" "$RIG/throttle.log" "$SPORT" 2>&1)
tap_diag "$(grep -E '^(burst|pipelined):' <<<"$out")"
tap_like "a burst of 30 FETCH/NOOP: some pass, the rest get NO [THROTTLED]" \
	'burst: ([1-9]|1[0-9]) ok ([1-9][0-9]?) throttled \[\]' "$out"
tap_like "an APPEND of 1 MB without tokens is delayed, not refused" $'append: OK \\[b\'\\[APPENDUID' "$out"
tap_like "a synchronizing literal refused before its '+' (TRYCREATE)" \
	"append refused: NO \\[b.\\[TRYCREATE\\]" "$out"
tap_like "... the next command is parsed as one" $'noop after: (OK|NO)\n' "$out"
tap_like "a LITERAL+ APPEND: its content is not taken for commands" \
	"literal\\+ append: True stray: \\[\\]" "$out"
tap_like "after a pause a FETCH succeeds" $'after a pause: OK' "$out"
tap_like "pipelined big FETCH + 10 NOOPs: the FETCH completes, NOOPs throttled" \
	'pipelined: b.OK. ([1-9]|10) throttled, [1-9][0-9]* messages' "$out"
tap_like "... some of them while the FETCH response streams" \
	'pipelined: .* [1-9][0-9]* refusals inside the FETCH response' "$out"
tap_like "... landing between responses: the bodies equal the server's" \
	'bodies equal: True' "$out"
proxy_stop throttle
th=$(pstat throttle throttled)
tap_is "$th" "$(events throttle throttle)" "stats: throttled = the log's throttle events ($th)"
tap_like "... and the delayed APPENDs are counted" '^[1-9]' "$(pstat throttle delayed)"
# (the password from a file descriptor: never on a command line)
no_password() { ! grep -lF -f <(printf '%s\n' "$PW") "$RIG"/*.log "$RIG"/*.stats; }
tap_run "no password in the proxy logs and stats" no_password

# --- 4. delaying instead: 10 a second, burst 2 --------------------------------------
proxy_start delay --max-commands-per-sec 10 --burst 2
out=$(client delay "$PPORT" "$RIG/delay.log" 2>&1)
tap_diag "$out"
secs=$(sed -n 's/^delay: OK in \([0-9.]*\) s$/\1/p' <<<"$out")
tap_like "14 commands at 10/s, burst 2: all OK after >= 1 s" '^[1-4]\.[0-9]+$' "$secs"
proxy_stop delay
tap_is "$(pstat delay throttled)" 0 "stats: nothing refused"
tap_like "stats: delayed >= 10, delayed_secs over 0.5" '^1[0-9] ([1-9]|0\.[5-9])' \
	"$(pstat delay delayed) $(pstat delay delayed_secs)"

# --- 5. --bye-under-load 2 --max-byes 2 ----------------------------------------------
proxy_start byes --bye-under-load 2 --max-byes 2 --seed 3
out=$(client byes "$PPORT" "$RIG/byes.log" 2>&1)
tap_diag "$out"
tap_is "$(grep -o 'bye' <<<"${out#byes:}" | wc -l)" 2 "5 connections over 2: 2 get BYE [UNAVAILABLE] Server busy"
tap_like "... the others still work" '^byes: ((bye|ok) ?){5}$' "$out"
proxy_stop byes
tap_is "$(pstat byes byes)/$(events byes bye)/$(events byes bye_planned)" 2/2/2 \
	"stats and log count the 2 BYEs"
tap_like "stats: max_concurrent 3 (4 if a BYE was slower than the next login)" '^[34]$' \
	"$(pstat byes max_concurrent)"

tap_done
