#!/usr/bin/python3
"""faultproxy.py - a TCP proxy that breaks IMAP connections on purpose.

  faultproxy.py --port P --target-port T [--target-host 127.0.0.1]
                --plan FILE.json --log FILE [--pidfile F] [--daemon]

Listens on 127.0.0.1:P and forwards every connection to the target.
Connections are numbered from 1 since the proxy started, in accept order.
The plan is re-read at every new connection when its mtime changed (a
broken plan keeps the old one, logged as "plan_error").  The pidfile is
written once the socket listens (with --daemon by the parent, with the
child's pid).  One thread per connection (poll on its two sockets); the
soft fd limit is raised to the hard one.

Plan (JSON; every key optional):
  { "latency_ms": 0,
        every chunk read from either side waits this long before it is
        forwarded (a command/reply round trip costs about 2x); chunks of
        one connection are forwarded in order, so big transfers slow down
        too
    "connections": {
      "3": {"action": "cut_in_literal", "literal": 2, "bytes": 1000},
          after forwarding exactly `bytes` bytes of the server's 2nd
          literal (counted on this connection, 1-based), close both
          sides (FIN).  A literal of at most `bytes` bytes does not count:
          the cut moves to the next literal longer than `bytes` (the log
          says which).  No such literal: no fault.
      "4": {"action": "reset", "after_bytes": 5000},
          after exactly 5000 server->client bytes, RST to the client
          (SO_LINGER 0) and close the server side
      "7": {"action": "cut", "after_bytes": 5000},
          the same with FIN to both
      "5": {"action": "stall", "after_bytes": 5000, "secs": 60,
            "then": "continue"},
          after 5000 server->client bytes forward nothing in either
          direction for secs (data waits in the kernel buffers), then
          continue ("then": "close": close both sides with FIN instead)
      "6": {"action": "refuse"},
          accept and close at once (FIN), never connecting to the target
      "8": {"action": "pass"}    no fault, also not a random one
    },
    "random": {"seed": 7, "p": 0.2, "actions": ["cut_in_literal", "reset"],
               "max_faults": 40, "min_bytes": 2000, "max_bytes": 200000,
               "max_literal": 3},
        a connection without an entry in "connections" gets a fault with
        probability p while fewer than max_faults faults were planned
        (counted when the connection opens, so the count is deterministic
        whatever the timing).  The choice depends only on seed and the
        connection number.  reset/cut/stall: after_bytes uniform in
        [min_bytes, max_bytes] (default 10 x min_bytes; stall secs from
        "stall_secs", default 5).  cut_in_literal: the literal number
        uniform in 1..max_literal (default 3) among the literals that
        start after min_bytes server->client bytes, cut at an offset
        uniform inside it (the proxy learns its size from {N}).
  }

Literal detection (server->client only): a line ending in "{N}\\r\\n"
(also "~{N}" and "{N+}") announces N bytes of literal; those bytes are
not parsed as lines, chunk boundaries anywhere are fine, and the line
continues after the literal.

Log (--log): one JSON object a line, with "t" (Unix time, float):
  {"conn": 3, "event": "open", "fault": {...planned action...} | null}
  {"conn": 3, "event": "cut_in_literal", "literal": 2, "literal_size": N,
   "bytes": 1000, "stream_bytes": S}   bytes = literal bytes forwarded,
                                       stream_bytes = server->client total
  {"conn": 4, "event": "reset", "bytes": 5000}
  {"conn": 7, "event": "cut", "bytes": 5000}
  {"conn": 5, "event": "stall", "bytes": 5000, "secs": 60}
  {"conn": 5, "event": "stall_end", "then": "continue"}
  {"conn": 6, "event": "refuse"}
  {"conn": 3, "event": "close", "s2c": bytes, "c2s": bytes,
   "literals": number of literals seen, "fault": true|false}
  {"conn": 9, "event": "connect_failed", "error": "..."}
  {"event": "plan_error", "error": "..."}
  {"event": "summary", "connections": N, "faults": M, "open": K}
      on SIGUSR1 and at exit (SIGTERM/SIGINT)
"""

import argparse
import json
import os
import random
import re
import select
import signal
import socket
import struct
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import rigimap  # noqa: E402 (after the line above)

LIT_RE = re.compile(rb"~?\{(\d+)\+?\}\r?\n$")


class Proxy:
    def __init__(self, args):
        self.args = args
        self.log = rigimap.JsonLog(args.log)
        self.lock = threading.Lock()
        self.conns = 0
        self.faults = 0
        self.planned = 0
        self.open = 0
        self.plan = {}
        self.mtime = None
        self.load_plan()

    def load_plan(self):
        try:
            mt = os.stat(self.args.plan).st_mtime_ns
        except OSError as exc:
            if self.mtime is None and not self.plan:
                self.log(event="plan_error", error=str(exc))
            return
        if mt == self.mtime:
            return
        try:
            with open(self.args.plan, encoding="utf-8") as f:
                plan = json.load(f)
            if not isinstance(plan, dict):
                raise ValueError("the plan is not an object")
            self.plan, self.mtime = plan, mt
        except (OSError, ValueError) as exc:
            self.log(event="plan_error", error=str(exc))

    def new_conn(self):
        """(number, fault dict or None)"""
        with self.lock:
            self.load_plan()
            self.conns += 1
            self.open += 1
            no = self.conns
            entry = (self.plan.get("connections") or {}).get(str(no))
            if entry is not None:
                if entry.get("action", "pass") == "pass":
                    return no, None
                return no, dict(entry)
            rnd = self.plan.get("random")
            if not rnd or self.planned >= int(rnd.get("max_faults", 1 << 30)):
                return no, None
            rng = random.Random(int(rnd.get("seed", 0)) * 1000003 + no)
            if rng.random() >= float(rnd.get("p", 0)):
                return no, None
            actions = rnd.get("actions") or ["cut_in_literal", "reset"]
            action = rng.choice(actions)
            lo = int(rnd.get("min_bytes", 0))
            hi = int(rnd.get("max_bytes", max(10 * lo, lo + 1)))
            fault = {"action": action, "random": True}
            if action == "cut_in_literal":
                fault["literal"] = rng.randint(1, int(rnd.get("max_literal", 3)))
                fault["min_bytes"] = lo
                fault["offset_fraction"] = rng.random()
            elif action in ("reset", "cut", "stall"):
                fault["after_bytes"] = rng.randint(lo, hi)
                if action == "stall":
                    fault["secs"] = float(rnd.get("stall_secs", 5))
            elif action != "refuse":
                return no, None
            self.planned += 1
            return no, fault

    def fault_done(self):
        with self.lock:
            self.faults += 1

    def closed(self):
        with self.lock:
            self.open -= 1

    def summary(self):
        with self.lock:
            self.log(event="summary", connections=self.conns, faults=self.faults,
                     open=self.open)


class Conn:
    def __init__(self, proxy, client, no, fault):
        self.p = proxy
        self.client = client
        self.server = None
        self.no = no
        self.fault = fault
        self.s2c = 0
        self.c2s = 0
        # literal tracking (server -> client)
        self.line_tail = b""
        self.lit_left = 0
        self.lit_no = 0          # literals seen so far
        self.lit_size = 0
        self.faulted = False
        self.cut_target = None   # (literal no, bytes) once known

    def log(self, **kw):
        self.p.log(conn=self.no, **kw)

    # -- how much of `data` may go out before the fault, and which fault
    def scan(self, data):
        """Advance the parser over data; returns (n, event) where n bytes
        may be forwarded and event is None or a fault dict to execute
        after forwarding them."""
        f = self.fault
        action = f["action"] if f and not self.faulted else None
        if action in ("reset", "cut", "stall"):
            limit = int(f.get("after_bytes", 0)) - self.s2c
            if limit < len(data):
                n = max(limit, 0)
                self._parse(data[:n])
                return n, f
            self._parse(data)
            return len(data), None
        if action != "cut_in_literal":
            self._parse(data)
            return len(data), None
        # cut_in_literal: walk literal by literal
        pos = 0
        while pos < len(data):
            if self.lit_left > 0:
                take = min(self.lit_left, len(data) - pos)
                if self.cut_target is not None and self.cut_target[0] == self.lit_no:
                    done = self.lit_size - self.lit_left
                    want = self.cut_target[1] - done
                    if want < take:
                        self.lit_left -= want
                        pos += want
                        return pos, f
                self.lit_left -= take
                pos += take
                continue
            i = data.find(b"\n", pos)
            if i < 0:
                self.line_tail = (self.line_tail + data[pos:])[-40:]
                return len(data), None
            line = self.line_tail + data[pos:i + 1]
            self.line_tail = b""
            pos = i + 1
            m = LIT_RE.search(line[-40:])
            if m:
                self.start_literal(int(m.group(1)), self.s2c + pos)
        return len(data), None

    def start_literal(self, size, stream_pos):
        self.lit_no += 1
        self.lit_size = size
        self.lit_left = size
        f = self.fault
        if not f or self.faulted or f["action"] != "cut_in_literal" or self.cut_target is not None:
            return
        if f.get("random"):
            if stream_pos < f.get("min_bytes", 0) or size < 2:
                return
            self.random_seen = getattr(self, "random_seen", 0) + 1
            if self.random_seen < f["literal"]:
                return
            self.cut_target = (self.lit_no, int(size * f["offset_fraction"]))
            return
        want = int(f.get("bytes", 0))
        if self.lit_no >= int(f.get("literal", 1)) and size > want:
            self.cut_target = (self.lit_no, want)

    def _parse(self, data):
        """the literal parser without fault handling"""
        pos = 0
        while pos < len(data):
            if self.lit_left > 0:
                take = min(self.lit_left, len(data) - pos)
                self.lit_left -= take
                pos += take
                continue
            i = data.find(b"\n", pos)
            if i < 0:
                self.line_tail = (self.line_tail + data[pos:])[-40:]
                return
            line = self.line_tail + data[pos:i + 1]
            self.line_tail = b""
            pos = i + 1
            m = LIT_RE.search(line[-40:])
            if m:
                self.lit_no += 1
                self.lit_size = self.lit_left = int(m.group(1))

    # -- running
    def close_all(self, rst=False):
        if rst:
            try:
                self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            except OSError:
                pass
        for sk in (self.client, self.server):
            if sk is None:
                continue
            if not (rst and sk is self.client):
                try:
                    sk.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            try:
                sk.close()
            except OSError:
                pass

    def run(self):
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - log, never kill the proxy
            self.log(event="error", error="%s: %s" % (type(exc).__name__, exc))
            self.close_all()
        finally:
            self.log(event="close", s2c=self.s2c, c2s=self.c2s, literals=self.lit_no,
                     fault=self.faulted)
            self.p.closed()

    def _run(self):
        f = self.fault
        self.log(event="open", fault=f)
        if f and f["action"] == "refuse":
            self.faulted = True
            self.p.fault_done()
            self.log(event="refuse")
            self.close_all()
            return
        try:
            self.server = socket.create_connection((self.p.args.target_host,
                                                   self.p.args.target_port), timeout=10)
            self.server.settimeout(None)
        except OSError as exc:
            self.log(event="connect_failed", error=str(exc))
            self.close_all()
            return
        for sk in (self.client, self.server):
            sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        poll = select.poll()
        fds = {self.client.fileno(): "c", self.server.fileno(): "s"}
        for fd in fds:
            poll.register(fd, select.POLLIN)
        open_dirs = {"c", "s"}
        while open_dirs:
            for fd, _ev in poll.poll():
                side = fds[fd]
                src = self.client if side == "c" else self.server
                dst = self.server if side == "c" else self.client
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    poll.unregister(fd)
                    open_dirs.discard(side)
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    continue
                lat = self.p.plan.get("latency_ms", 0)
                if lat:
                    time.sleep(lat / 1000.0)
                if side == "c":
                    if not self.send(dst, data):
                        open_dirs.clear()
                        break
                    self.c2s += len(data)
                    continue
                while data:
                    n, fault = self.scan(data)
                    if n and not self.send(dst, data[:n]):
                        open_dirs.clear()
                        break
                    self.s2c += n
                    data = data[n:]
                    if fault is None:
                        break
                    if not self.do_fault(fault):
                        return
        self.close_all()

    def send(self, sk, data):
        try:
            sk.sendall(data)
            return True
        except OSError:
            return False

    def do_fault(self, f):
        """execute; False when the connection is gone"""
        self.faulted = True
        self.p.fault_done()
        a = f["action"]
        if a == "cut_in_literal":
            self.log(event="cut_in_literal", literal=self.lit_no, literal_size=self.lit_size,
                     bytes=self.lit_size - self.lit_left, stream_bytes=self.s2c,
                     planned_literal=f.get("literal"), random=bool(f.get("random")))
            self.close_all()
            return False
        if a == "reset":
            self.log(event="reset", bytes=self.s2c, random=bool(f.get("random")))
            self.close_all(rst=True)
            return False
        if a == "cut":
            self.log(event="cut", bytes=self.s2c, random=bool(f.get("random")))
            self.close_all()
            return False
        if a == "stall":
            secs = float(f.get("secs", 5))
            self.log(event="stall", bytes=self.s2c, secs=secs)
            time.sleep(secs)
            then = f.get("then", "continue")
            self.log(event="stall_end", then=then)
            if then == "close":
                self.close_all()
                return False
            return True
        self.log(event="error", error="unknown action %s" % a)
        return True


def main():
    ap = argparse.ArgumentParser(description="TCP fault proxy for the tests")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--target-host", default="127.0.0.1")
    ap.add_argument("--plan", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--pidfile")
    ap.add_argument("--daemon", action="store_true")
    args = ap.parse_args()
    for a in ("plan", "log", "pidfile"):
        if getattr(args, a):
            setattr(args, a, os.path.abspath(getattr(args, a)))
    rigimap.raise_nofile_limit()
    threading.stack_size(256 * 1024)
    proxy = Proxy(args)
    lsock = rigimap.serve_listen(args.port, 512, args.daemon, args.pidfile)

    def on_exit(*_):
        proxy.summary()
        os._exit(0)
    signal.signal(signal.SIGTERM, on_exit)
    signal.signal(signal.SIGINT, on_exit)
    signal.signal(signal.SIGUSR1, lambda *_: proxy.summary())
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    while True:
        try:
            c, _peer = lsock.accept()
        except OSError as exc:
            proxy.log(event="accept_failed", error=str(exc))
            time.sleep(0.1)
            continue
        no, fault = proxy.new_conn()
        conn = Conn(proxy, c, no, fault)
        try:
            threading.Thread(target=conn.run, daemon=True).start()
        except RuntimeError as exc:
            proxy.log(conn=no, event="error", error="no thread: %s" % exc)
            c.close()
            proxy.closed()


if __name__ == "__main__":
    main()
