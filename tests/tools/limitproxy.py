#!/usr/bin/python3
"""limitproxy.py - a TCP proxy in front of a real IMAP server that enforces
a hosting provider's limits: connections per IP, a command rate, BYE under
load.  It counts what reached the server, for the tests to assert on.

  limitproxy.py --port P --target-port T [--target-host 127.0.0.1]
                --log FILE [--stats FILE] [--pidfile F] [--daemon]
                [--max-conns N] [--refuse-style bye|login]
                [--max-commands-per-sec R] [--burst B] [--rate-scope ip|conn]
                [--throttle-reply]
                [--bye-under-load K] [--max-byes M] [--seed S]

Listens on 127.0.0.1:P and forwards every admitted connection to the
target.  Connections are numbered from 1 in accept order (refused ones
too).  One thread per connection (poll on its two sockets and a wake-up
pipe); the soft fd limit is raised to the hard one.  The pidfile is
written once the socket listens (with --daemon by the parent, with the
child's pid).

Connection limit (--max-conns N, default 0: none), per client IP: an IP
may have N connections forwarded to the server at once.  A connection is
"forwarded" from its accept until the proxy has closed it (the server
closed: the client is closed at once; the client closed: the server is
half-closed and drained first).  The N+1st connection of an IP is never
forwarded, it is refused:
  bye    (default) answered "* BYE [UNAVAILABLE] Too many connections
         from your IP, try again later" in place of the greeting, then
         closed (after reading what the client sends, up to 2 s, so that
         the BYE is not lost to a reset)
  login  as Gmail and Exchange do: the proxy itself greets ("* OK
         [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE
         LITERAL+ AUTH=PLAIN AUTH=LOGIN] IMAP server ready."), answers
         CAPABILITY, NOOP and ID, LOGOUT with a BYE, other commands with
         BAD (10 of them: BYE), and the LOGIN or AUTHENTICATE command
         (after one "+ " round when there is no SASL initial response)
         with "TAG NO [UNAVAILABLE] Too many simultaneous connections",
         then closes.  Literals ({N}: "+ OK" first; {N+}) are read and
         dropped.  60 s idle: "* BYE Disconnected for inactivity."
A refused connection does not count against the limit (it never reaches
the server), not even while a login-style one is still talking.

Command rate (--max-commands-per-sec R, default 0: none): a token bucket
per client IP (all of an IP's connections share it, as providers count;
--rate-scope conn: one bucket per connection), R tokens a second, holding
at most --burst B (default max(1, R)); it starts full.  Each client
command costs a token; a command is a line at a command's start of the
form "TAG VERB ..." (a SASL response, IDLE's DONE and the rest of a
command after a literal are not commands and pass at once).  The client's
stream is parsed line by line; literals ({N}, {N+}, ~{N}) are passed
through unparsed: {N+} at once, {N} once the server answered "+" (a
tagged reply to the command instead cancels the literal).
  without --throttle-reply: a command without a token waits until its
         turn (tokens are reserved: the bucket goes negative, so waiting
         commands go out in order, R a second); what the client sends
         after it waits behind it, the server's data keep flowing.
  --throttle-reply: a command without a token whose verb is one of
         NOOP CHECK FETCH SEARCH SELECT EXAMINE STATUS LIST LSUB XLIST
         NAMESPACE GETQUOTA GETQUOTAROOT GETMETADATA, UID FETCH,
         UID SEARCH, and whose first line announces no literal, is not
         forwarded: the proxy answers "TAG NO [THROTTLED] Request is
         throttled. Suggested Backoff Time: 1000 milliseconds" (costs no
         token).  Any other command (LOGIN, AUTHENTICATE, APPEND, STORE,
         COPY, EXPUNGE, LOGOUT, ...) is delayed as above, never refused.
         (A refused SELECT leaves the server's previous mailbox selected
         while the client, per RFC 3501, assumes none is.)
Replies of the proxy's own (NO, BYE) go to the client only between two
complete server responses (never inside a line or literal).

The connection count drops when the proxy has closed both sockets, a
moment after the client closed its end: a client that closes and at once
reconnects may find its old connection still counted, and be refused, as
at a real provider.  Plain IMAP only: after STARTTLS or COMPRESS the
stream cannot be parsed (the rig's sources offer neither).

BYE under load (--bye-under-load K, default none): whenever a connection
is forwarded and its IP then has more than K forwarded connections, one
of that IP's other connections (chosen with random.Random(--seed) among
those not already picked, ordered by number; the new one only when there
is no other) gets "* BYE [UNAVAILABLE] Server busy" at its next response
boundary and is closed, at most --max-byes M times (default unlimited).

Log (--log): one JSON object a line, with "t" (Unix time, float); client
lines are never logged, only command names ("UID FETCH"; "?" when not an
IMAP verb):
  {"event": "listen", "port": P, "target_port": T, ...the limits...}
  {"conn": 3, "event": "open", "ip": "127.0.0.1", "open": k, "open_ip": k_ip,
   "open_all": a}  a forwarded connection; open = forwarded connections
                   now (all IPs), open_ip = of its IP, open_all = also the
                   refused ones still being answered
  {"conn": 4, "event": "refuse", "ip": ..., "style": "bye"|"login",
   "open_ip": k_ip, "open_all": a}
  {"conn": 4, "event": "refuse_login", "cmd": "LOGIN"|"AUTHENTICATE"}
  {"conn": 4, "event": "refused_close", "reason": "..."}
  {"conn": 3, "event": "throttle", "cmd": "UID FETCH", "s2c": bytes}
                   answered NO (s2c: bytes sent to the client so far)
  {"conn": 3, "event": "delay", "cmd": "APPEND", "secs": 0.2}
  {"conn": 3, "event": "bye_planned", "trigger": 7, "open_ip": k_ip}
  {"conn": 3, "event": "bye"}                                BYE sent
  {"conn": 3, "event": "close", "open": k, "open_ip": k_ip, "secs": S,
   "commands": n, "throttled": n, "delayed": n, "delayed_secs": s,
   "c2s": bytes, "s2c": bytes, "bye": true|false}
  {"conn": 9, "event": "connect_failed", "error": "..."}
  {"conn": 3, "event": "error", "error": "..."}
  {"event": "summary", ...the stats...}    on SIGUSR1 and at exit

Stats (--stats FILE, JSON, replaced atomically): written at every
connection open/refusal/close/BYE and, exact, on SIGUSR1 and at exit
(SIGTERM/SIGINT):
  {"max_concurrent": forwarded connections open at once (all IPs),
   "max_concurrent_all": the same counting the refused ones,
   "max_concurrent_per_ip": {"127.0.0.1": k},
   "connections": accepted, "forwarded": n, "refused": n,
   "commands": client commands seen (forwarded connections),
   "throttled": commands answered NO [THROTTLED],
   "delayed": commands delayed, "delayed_secs": their total wait,
   "byes": BYEs sent under load, "open": k, "open_all": a,
   "connect_failed": n, "t": Unix time}
"""

import argparse
import json
import os
import random
import re
import select
import signal
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import rigimap  # noqa: E402 (after the line above)

# a literal announced at the end of a line (either direction)
LIT_RE = re.compile(rb"~?\{(\d+)(\+?)\}\r?\n$")
# the start of a client command: tag, verb, and the word after it (UID X)
CMD_RE = re.compile(rb"^([^\s(){%*\"\\\]+]{1,64}) ([A-Za-z][A-Za-z0-9]{0,31})"
                    rb"(?: ([A-Za-z]{1,32}))?")
REFUSABLE = {"NOOP", "CHECK", "FETCH", "SEARCH", "SELECT", "EXAMINE", "STATUS",
             "LIST", "LSUB", "XLIST", "NAMESPACE", "GETQUOTA", "GETQUOTAROOT",
             "GETMETADATA", "UID FETCH", "UID SEARCH"}
LINE_MAX = 1 << 20          # a first line longer than this is not parsed
CBUF_MAX = 1 << 20          # client bytes held while a command waits
DRAIN_SECS = 10             # after the client's EOF: wait this for the server
REFUSED_IDLE = 60           # a login-style refused connection's idle timeout

BYE_REFUSE = b"* BYE [UNAVAILABLE] Too many connections from your IP, try again later\r\n"
BYE_BUSY = b"* BYE [UNAVAILABLE] Server busy\r\n"
NO_THROTTLED = b" NO [THROTTLED] Request is throttled. Suggested Backoff Time: 1000 milliseconds\r\n"
NO_LOGIN = b" NO [UNAVAILABLE] Too many simultaneous connections\r\n"
FAKE_CAPS = b"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN"


def cmd_name(m):
    """'UID FETCH' / 'SELECT' from a CMD_RE match"""
    verb = m.group(2).upper().decode("ascii")
    if verb == "UID" and m.group(3):
        return "UID " + m.group(3).upper().decode("ascii")
    return verb


class Bucket:
    """Token bucket; tokens may go negative (reservations)."""

    def __init__(self, rate, burst):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = time.monotonic()

    def _refill(self, now):
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def try_take(self, now):
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def reserve(self, now):
        """take a token, possibly one not there yet: seconds to wait"""
        self._refill(now)
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Proxy:
    def __init__(self, args):
        self.args = args
        self.log = rigimap.JsonLog(args.log)
        self.lock = threading.RLock()    # write_stats inside the others
        self.rng = random.Random(args.seed)
        self.buckets = {}
        self.bucket_lock = threading.Lock()
        self.ip_conns = {}      # ip -> {conn no: Conn} (forwarded, open)
        self.open = 0           # forwarded, all IPs
        self.open_all = 0       # also refused ones being answered
        self.s = dict(max_concurrent=0, max_concurrent_all=0, max_concurrent_per_ip={},
                      connections=0, forwarded=0, refused=0, commands=0, throttled=0,
                      delayed=0, delayed_secs=0.0, byes=0, connect_failed=0)
        self.byes_planned = 0

    # -- admission
    def new_conn(self, client, ip):
        """a Conn (forwarded) or a Refused for an accepted socket"""
        with self.lock:
            s = self.s
            s["connections"] += 1
            no = s["connections"]
            self.open_all += 1
            s["max_concurrent_all"] = max(s["max_concurrent_all"], self.open_all)
            conns = self.ip_conns.setdefault(ip, {})
            if self.args.max_conns and len(conns) >= self.args.max_conns:
                s["refused"] += 1
                self.log(conn=no, event="refuse", ip=ip, style=self.args.refuse_style,
                         open_ip=len(conns), open_all=self.open_all)
                self.write_stats()
                return Refused(self, client, no, ip)
            conn = Conn(self, client, no, ip)
            conns[no] = conn
            s["forwarded"] += 1
            self.open += 1
            s["max_concurrent"] = max(s["max_concurrent"], self.open)
            per = s["max_concurrent_per_ip"]
            per[ip] = max(per.get(ip, 0), len(conns))
            self.log(conn=no, event="open", ip=ip, open=self.open, open_ip=len(conns),
                     open_all=self.open_all)
            k = self.args.bye_under_load
            if k is not None and len(conns) > k and self.byes_planned < self.args.max_byes:
                cands = [c for n, c in sorted(conns.items()) if n != no and not c.bye_req]
                if not cands:
                    cands = [conn]
                victim = self.rng.choice(cands)
                self.byes_planned += 1
                self.log(conn=victim.no, event="bye_planned", trigger=no, open_ip=len(conns))
                victim.request_bye()
            self.write_stats()
            return conn

    def closed(self, conn, forwarded):
        with self.lock:
            self.open_all -= 1
            if not forwarded:
                self.write_stats()
                return
            self.open -= 1
            conns = self.ip_conns.get(conn.ip, {})
            conns.pop(conn.no, None)
            self.log(conn=conn.no, event="close", open=self.open, open_ip=len(conns),
                     secs=round(time.monotonic() - conn.start, 3), commands=conn.commands,
                     throttled=conn.throttled, delayed=conn.delayed,
                     delayed_secs=round(conn.delayed_secs, 3), c2s=conn.c2s, s2c=conn.s2c,
                     bye=conn.bye_sent)
            self.write_stats()

    def count(self, key, n=1):
        with self.lock:
            self.s[key] += n

    def bye_sent(self, conn):
        with self.lock:
            self.s["byes"] += 1
            self.log(conn=conn.no, event="bye")
            self.write_stats()

    def bucket(self, conn):
        key = conn.ip if self.args.rate_scope == "ip" else conn.no
        with self.bucket_lock:
            b = self.buckets.get(key)
            if b is None:
                b = self.buckets[key] = Bucket(self.args.max_commands_per_sec, self.args.burst)
            return b

    # -- accounting output
    def stats(self):
        with self.lock:
            d = dict(self.s)
            d["max_concurrent_per_ip"] = dict(self.s["max_concurrent_per_ip"])
            d["delayed_secs"] = round(d["delayed_secs"], 3)
            d["open"] = self.open
            d["open_all"] = self.open_all
            d["t"] = round(time.time(), 3)
            return d

    def write_stats(self):
        if not self.args.stats:
            return
        with self.lock:
            tmp = "%s.tmp" % self.args.stats
            try:
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(self.stats(), f, sort_keys=True)
                    f.write("\n")
                os.rename(tmp, self.args.stats)
            except OSError as exc:
                self.log(event="error", error="stats: %s" % exc)

    def summary(self):
        with self.lock:
            self.write_stats()
            self.log(event="summary", **self.stats())


class Refused:
    """A connection over the limit: answered by the proxy, closed."""

    def __init__(self, proxy, client, no, ip):
        self.p = proxy
        self.client = client
        self.no = no
        self.ip = ip
        self.buf = bytearray()

    def run(self):
        try:
            if self.p.args.refuse_style == "login":
                reason = self.fake_session()
            else:
                self.client.sendall(BYE_REFUSE)
                reason = "bye"
            self.linger()
        except OSError as exc:
            reason = "error: %s" % exc
        except Exception as exc:  # noqa: BLE001 - log, never kill the proxy
            reason = "error: %s: %s" % (type(exc).__name__, exc)
        finally:
            try:
                self.client.close()
            except OSError:
                pass
            self.p.log(conn=self.no, event="refused_close", reason=reason)
            self.p.closed(self, False)

    def linger(self):
        """FIN, then read until the client closes (2 s at most): closing
        with unread data would reset, and the client could lose our BYE"""
        try:
            self.client.shutdown(socket.SHUT_WR)
            self.client.settimeout(0.2)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                try:
                    if not self.client.recv(65536):
                        return
                except socket.timeout:
                    continue
        except OSError:
            pass

    def readline(self):
        """one line (with its CRLF) or None at EOF / timeout"""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > LINE_MAX:
                return None
            data = self.client.recv(65536)
            if not data:
                return None
            self.buf += data

    def skip(self, n):
        while n > 0:
            if not self.buf:
                data = self.client.recv(65536)
                if not data:
                    return False
                self.buf += data
            k = min(n, len(self.buf))
            del self.buf[:k]
            n -= k
        return True

    def read_command(self):
        """the first line of the next command (literals read and dropped),
        None at EOF"""
        first = None
        while True:
            line = self.readline()
            if line is None:
                return None
            if first is None:
                first = line
            m = LIT_RE.search(line[-40:])
            if not m:
                return first
            if not m.group(2):
                self.client.sendall(b"+ OK\r\n")
            if not self.skip(int(m.group(1))):
                return None

    def fake_session(self):
        c = self.client
        c.settimeout(REFUSED_IDLE)
        c.sendall(b"* OK [CAPABILITY " + FAKE_CAPS + b"] IMAP server ready.\r\n")
        bad = 0
        try:
            while True:
                line = self.read_command()
                if line is None:
                    return "eof"
                m = CMD_RE.match(line)
                if not m:
                    c.sendall(b"* BAD Error in IMAP command received by server.\r\n")
                    bad += 1
                else:
                    tag, name = m.group(1), cmd_name(m)
                    if name == "CAPABILITY":
                        c.sendall(b"* CAPABILITY " + FAKE_CAPS + b"\r\n" + tag
                                  + b" OK Pre-login capabilities listed, post-login"
                                    b" capabilities have more.\r\n")
                        continue
                    if name == "NOOP":
                        c.sendall(tag + b" OK NOOP completed.\r\n")
                        continue
                    if name == "ID":
                        c.sendall(b"* ID NIL\r\n" + tag + b" OK ID completed.\r\n")
                        continue
                    if name == "LOGOUT":
                        c.sendall(b"* BYE Logging out\r\n" + tag + b" OK Logout completed.\r\n")
                        return "logout"
                    if name in ("LOGIN", "AUTHENTICATE"):
                        words = line.rstrip(b"\r\n").split(b" ")
                        if name == "AUTHENTICATE" and len(words) < 4:
                            # no initial response: one SASL round first
                            c.sendall(b"+ \r\n")
                            if self.readline() is None:
                                return "eof"
                        c.sendall(tag + NO_LOGIN)
                        self.p.log(conn=self.no, event="refuse_login", cmd=name)
                        return "refused " + name
                    c.sendall(tag + b" BAD Error in IMAP command received by server.\r\n")
                    bad += 1
                if bad >= 10:
                    c.sendall(b"* BYE Too many invalid IMAP commands.\r\n")
                    return "bad commands"
        except socket.timeout:
            c.sendall(b"* BYE Disconnected for inactivity.\r\n")
            return "idle"


class Conn:
    """A forwarded connection."""

    def __init__(self, proxy, client, no, ip):
        self.p = proxy
        self.client = client
        self.server = None
        self.no = no
        self.ip = ip
        self.start = time.monotonic()
        self.c2s = 0
        self.s2c = 0
        self.commands = 0
        self.throttled = 0
        self.delayed = 0
        self.delayed_secs = 0.0
        self.bye_req = False
        self.bye_sent = False
        self.wake_r, self.wake_w = os.pipe()
        # client -> server
        self.cbuf = bytearray()
        self.c_lit_left = 0         # literal bytes still to pass through
        self.in_cmd = False         # inside a command, after a literal
        self.c_tail = b""           # end of a partly forwarded line
        self.cur_tag = None         # tag of the command being forwarded
        self.await_cont = None      # (tag, size): a {N} literal waits for "+"
        self.release_at = None      # the waiting command's turn (monotonic)
        self.client_eof = False
        # server -> client
        self.s_lit_left = 0
        self.s_mid = False          # inside a response (line or literal)
        self.s_head = b""           # start of the current line
        self.s_tail = b""           # end of the current line
        self.s_cont = False         # the line continues after a literal
        self.inject = []            # (bytes, close after) for the client
        self.done = False

    def log(self, **kw):
        self.p.log(conn=self.no, **kw)

    def request_bye(self):
        """from any thread"""
        self.bye_req = True
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    # -- sockets
    def to_client(self, data):
        try:
            self.client.sendall(data)
            self.s2c += len(data)
            return True
        except OSError:
            return False

    def to_server(self, data):
        try:
            self.server.sendall(data)
            self.c2s += len(data)
            return True
        except OSError:
            return False

    def close_all(self):
        for sk in (self.client, self.server):
            if sk is None:
                continue
            try:
                sk.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sk.close()
            except OSError:
                pass
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.done = True

    # -- server -> client
    def s_boundary(self):
        return not self.s_mid and self.s_lit_left == 0

    def s_parse(self, data, stop):
        """advance the response parser over data; with stop, only up to
        the first response boundary: returns the bytes consumed"""
        pos = 0
        n = len(data)
        while pos < n:
            if self.s_lit_left:
                take = min(self.s_lit_left, n - pos)
                self.s_lit_left -= take
                pos += take
                if not self.s_lit_left:
                    self.s_cont = True
                    self.s_head = b""
                continue
            i = data.find(b"\n", pos)
            if i < 0:
                chunk = data[pos:]
                if len(self.s_head) < 80:
                    self.s_head += chunk[:80 - len(self.s_head)]
                self.s_tail = (self.s_tail + chunk)[-40:]
                self.s_mid = True
                return n
            chunk = data[pos:i + 1]
            head = (self.s_head + chunk)[:80]
            tail = (self.s_tail + chunk)[-40:]
            cont = self.s_cont
            self.s_head = self.s_tail = b""
            self.s_cont = False
            pos = i + 1
            m = LIT_RE.search(tail)
            if m:
                self.s_lit_left = int(m.group(1))
                self.s_mid = True
                if not self.s_lit_left:
                    self.s_cont = True
                continue
            self.s_mid = False
            if not cont:
                self.server_line(head)
            if stop:
                return pos
        return n

    def server_line(self, head):
        """a complete server line (its first bytes): resolves a
        synchronizing literal the client announced"""
        if self.await_cont is None:
            return
        tag, size = self.await_cont
        if head.startswith(b"+"):
            self.await_cont = None
            self.c_lit_left = size
        elif tag is not None and head.startswith(tag + b" "):
            # the command was answered (refused) before its literal
            self.await_cont = None
            self.in_cmd = False

    def from_server(self, data):
        """False when the connection is to close"""
        while data:
            if self.inject and self.s_boundary():
                if not self.flush_inject():
                    return False
            if not self.inject:
                self.s_parse(data, False)
                return self.to_client(data)
            n = self.s_parse(data, True)
            if not self.to_client(data[:n]):
                return False
            data = data[n:]
        return True

    def flush_inject(self):
        """send the proxy's own replies; False when one closes"""
        while self.inject:
            data, close = self.inject.pop(0)
            if not self.to_client(data):
                return False
            if close:
                self.bye_sent = True
                self.p.bye_sent(self)
                return False
        return True

    # -- client -> server
    def admit(self, line):
        """'go', 'wait' or 'refuse' for a complete line at a command's start"""
        if self.release_at is not None:      # reserved earlier: its turn?
            if time.monotonic() >= self.release_at:
                self.release_at = None
                return "go"
            return "wait"
        m = CMD_RE.match(line)
        if not m:
            self.cur_tag = None
            return "go"                      # SASL response, DONE, junk
        self.cur_tag = m.group(1)
        self.commands += 1
        self.p.count("commands")
        a = self.p.args
        if not a.max_commands_per_sec:
            return "go"
        name = cmd_name(m)
        bucket = self.p.bucket(self)
        now = time.monotonic()
        with self.p.bucket_lock:
            if a.throttle_reply and name in REFUSABLE and not LIT_RE.search(line[-40:]):
                if bucket.try_take(now):
                    return "go"
                self.throttled += 1
                self.p.count("throttled")
                self.log(event="throttle", cmd=name, s2c=self.s2c)
                self.inject.append((self.cur_tag + NO_THROTTLED, False))
                return "refuse"
            wait = bucket.reserve(now)
        if wait <= 0:
            return "go"
        self.release_at = now + wait
        self.delayed += 1
        self.delayed_secs += wait
        self.p.count("delayed")
        self.p.count("delayed_secs", wait)
        self.log(event="delay", cmd=name, secs=round(wait, 3))
        return "wait"

    def after_line(self, line):
        """a line (or the end of one) went to the server: literal state"""
        m = LIT_RE.search(line[-40:])
        if not m:
            self.in_cmd = False
            return
        self.in_cmd = True
        size = int(m.group(1))
        if m.group(2):
            self.c_lit_left = size
        else:
            self.await_cont = (self.cur_tag, size)

    def pump_c2s(self):
        """forward what may go; False when the server is gone"""
        while self.cbuf:
            if self.c_lit_left:
                n = min(self.c_lit_left, len(self.cbuf))
                if not self.to_server(bytes(self.cbuf[:n])):
                    return False
                del self.cbuf[:n]
                self.c_lit_left -= n
                continue
            if self.await_cont is not None:
                return True
            i = self.cbuf.find(b"\n")
            if self.in_cmd:
                # the rest of a command line after a literal
                if i < 0:
                    self.c_tail = (self.c_tail + bytes(self.cbuf))[-40:]
                    ok = self.to_server(bytes(self.cbuf))
                    del self.cbuf[:]
                    return ok
                part = bytes(self.cbuf[:i + 1])
                if not self.to_server(part):
                    return False
                del self.cbuf[:i + 1]
                tail = (self.c_tail + part)[-40:]
                self.c_tail = b""
                self.after_line(tail)
                continue
            if i < 0:
                if len(self.cbuf) < LINE_MAX:
                    return True
                # an overlong first line: pass it unparsed
                self.in_cmd = True
                self.cur_tag = None
                continue
            line = bytes(self.cbuf[:i + 1])
            verdict = self.admit(line)
            if verdict == "wait":
                return True
            del self.cbuf[:i + 1]
            if verdict == "refuse":
                continue
            if not self.to_server(line):
                return False
            self.after_line(line)
        return True

    # -- running
    def run(self):
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - log, never kill the proxy
            self.log(event="error", error="%s: %s" % (type(exc).__name__, exc))
        finally:
            if not self.done:
                self.close_all()
            self.p.closed(self, True)

    def _run(self):
        a = self.p.args
        try:
            self.server = socket.create_connection((a.target_host, a.target_port), timeout=10)
            self.server.settimeout(None)
        except OSError as exc:
            self.log(event="connect_failed", error=str(exc))
            self.p.count("connect_failed")
            self.server = None
            self.close_all()
            return
        for sk in (self.client, self.server):
            sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cfd, sfd = self.client.fileno(), self.server.fileno()
        server_open = True
        drain_until = None
        poll = select.poll()
        while True:
            if self.bye_req and not self.bye_sent and not any(c for _d, c in self.inject):
                self.inject.append((BYE_BUSY, True))
            if self.inject and self.s_boundary():
                if not self.flush_inject():
                    break
            if not self.pump_c2s():
                break
            if self.inject and self.s_boundary():
                if not self.flush_inject():
                    break
            # the client is gone: what it sent went (or cannot go: a
            # partial line, a literal the server did not ask for yet)
            if self.client_eof and self.release_at is None and drain_until is None:
                try:
                    self.server.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                drain_until = time.monotonic() + DRAIN_SECS
            now = time.monotonic()
            timeout = None
            if self.release_at is not None:
                timeout = max(0.0, self.release_at - now)
            if drain_until is not None:
                left = max(0.0, drain_until - now)
                if left == 0:
                    break
                timeout = left if timeout is None else min(timeout, left)
            poll = select.poll()
            poll.register(self.wake_r, select.POLLIN)
            if server_open:
                poll.register(sfd, select.POLLIN)
            if not self.client_eof and len(self.cbuf) < CBUF_MAX:
                poll.register(cfd, select.POLLIN)
            events = poll.poll(None if timeout is None else int(timeout * 1000) + 1)
            stop = False
            for fd, _ev in events:
                if fd == self.wake_r:
                    try:
                        os.read(self.wake_r, 64)
                    except OSError:
                        pass
                    continue
                if fd == sfd:
                    try:
                        data = self.server.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        # the server closed: so does the connection
                        server_open = False
                        if self.inject:
                            self.flush_inject()
                        stop = True
                        break
                    if not self.from_server(data):
                        stop = True
                        break
                    continue
                try:
                    data = self.client.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.client_eof = True
                    continue
                self.cbuf += data
            if stop:
                break
        self.close_all()


def main():
    ap = argparse.ArgumentParser(description="IMAP proxy with a provider's limits")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--target-host", default="127.0.0.1")
    ap.add_argument("--log", required=True)
    ap.add_argument("--stats")
    ap.add_argument("--pidfile")
    ap.add_argument("--daemon", action="store_true")
    ap.add_argument("--max-conns", type=int, default=0)
    ap.add_argument("--refuse-style", choices=("bye", "login"), default="bye")
    ap.add_argument("--max-commands-per-sec", type=float, default=0)
    ap.add_argument("--burst", type=float)
    ap.add_argument("--rate-scope", choices=("ip", "conn"), default="ip")
    ap.add_argument("--throttle-reply", action="store_true")
    ap.add_argument("--bye-under-load", type=int)
    ap.add_argument("--max-byes", type=int, default=1 << 30)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.max_conns < 0 or args.max_commands_per_sec < 0:
        ap.error("--max-conns and --max-commands-per-sec must not be negative")
    if args.burst is None:
        args.burst = max(1.0, args.max_commands_per_sec)
    if args.burst < 1:
        ap.error("--burst must be at least 1")
    if args.bye_under_load is not None and args.bye_under_load < 0:
        ap.error("--bye-under-load must not be negative")
    for a in ("log", "stats", "pidfile"):
        if getattr(args, a):
            setattr(args, a, os.path.abspath(getattr(args, a)))
    rigimap.raise_nofile_limit()
    threading.stack_size(256 * 1024)
    lsock = rigimap.serve_listen(args.port, 512, args.daemon, args.pidfile)
    proxy = Proxy(args)
    proxy.log(event="listen", port=args.port, target_port=args.target_port,
              max_conns=args.max_conns, refuse_style=args.refuse_style,
              max_commands_per_sec=args.max_commands_per_sec, burst=args.burst,
              rate_scope=args.rate_scope, throttle_reply=args.throttle_reply,
              bye_under_load=args.bye_under_load, max_byes=args.max_byes, seed=args.seed)
    proxy.write_stats()

    # the signals go to a thread of their own (blocked everywhere else,
    # inherited by the threads started later): a handler in the main
    # thread could interrupt it while it holds a lock the summary needs
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    sigs = {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)

    def on_signals():
        while True:
            sig = signal.sigwait(sigs)
            proxy.summary()
            if sig != signal.SIGUSR1:
                os._exit(0)
    threading.Thread(target=on_signals, daemon=True).start()
    while True:
        try:
            c, peer = lsock.accept()
        except OSError as exc:
            proxy.log(event="accept_failed", error=str(exc))
            time.sleep(0.1)
            continue
        conn = proxy.new_conn(c, peer[0])
        try:
            threading.Thread(target=conn.run, daemon=True).start()
        except RuntimeError as exc:
            proxy.log(conn=conn.no, event="error", error="no thread: %s" % exc)
            forwarded = isinstance(conn, Conn)
            if forwarded:
                conn.close_all()
            else:
                c.close()
            proxy.closed(conn, forwarded)


if __name__ == "__main__":
    main()
