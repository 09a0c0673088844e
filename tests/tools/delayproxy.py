#!/usr/bin/python3
"""delayproxy.py - a TCP proxy that puts a network's round trip between a
client and a server, for the benchmark.

  delayproxy.py --port P --target-port T [--target-host 127.0.0.1]
                --rtt-ms N [--bandwidth-mbit M] --log FILE
                [--label-file F] [--trace] [--pidfile F] [--daemon]

Listens on 127.0.0.1:P and forwards every connection to the target, one
asyncio loop for all connections (no threads).

Delay: it streams.  Each direction of a connection keeps the chunks it
read in arrival order and releases each one at its arrival time plus
RTT/2, whatever is still waiting before it; nothing sleeps, so a burst
of chunks arrives RTT/2 late as a burst, and a command/reply round trip
costs RTT.  The connection to the target is opened 1.5 x RTT after the
client's connection was accepted: a TCP handshake costs a round trip
before connect() returns and the server accepts half a round trip later,
so the server's greeting reaches the client 2 x RTT after it connected,
as across a real network; what the client sends meanwhile waits.  There
is no TCP window: a direction buffers up to 32 MB, then stops reading
until the backlog drains.

Bandwidth (--bandwidth-mbit M, per direction; default none): a chunk is
cut into 16 KB segments, and each segment leaves the sender's side of the
link once the link has carried the ones before it at M Mbit/s (a token
bucket holding one segment), then travels RTT/2 like any other.

Round trips the client waited for, counted per connection: a client
burst starts when data arrive from the client while none of its earlier
data is still held back on its way to the server; the burst counts as a
waited round trip when the proxy has released server data to the client
since the previous burst started (the client had an answer in hand
before it spoke again; the greeting counts as an answer).  A client that
writes its commands together, or writes the next before the last one
reached the server, makes one burst of them.  With --rtt-ms 0 nothing is
held back, so each write after an answer counts: the counts are meant
for RTT > 0.

Log (--log): one JSON object a line, with "t" (Unix time, float):
  {"event": "listen", "rtt_ms": N, "bandwidth_mbit": M|null}
  {"conn": 3, "event": "open", "label": L|null}
      label: the contents of --label-file (stripped) when the connection
      was accepted, so that a benchmark names the run it is timing
  {"conn": 3, "event": "close", "label": L, "open_t": T0,
   "round_trips": R, "c2s": bytes, "s2c": bytes,
   "c2s_chunks": n, "s2c_chunks": n, "error": "..." (only on one),
   "s2c_per_10ms": [bytes, ...] (with --trace: released to the client in
   each 10 ms since the accept)}
  {"conn": 3, "event": "wait", "n": 5, "at": S, "burst": "UID FETCH ..."}
      with --trace, each waited round trip: S seconds after the accept,
      what the burst begins with: an IMAP command's first line (its first
      40 and last 37 bytes when longer than 80) when its verb is one that
      carries no secret (SELECT, FETCH, STATUS, LIST, ...), else only the
      verb (LOGIN, AUTHENTICATE, APPEND, ...), or "?" for anything else
      (the content of a literal, a continuation: a password may be one)
  {"conn": 9, "event": "connect_failed", "error": "..."}
  {"event": "summary", "connections": N, "open": K, "round_trips": R}
      on SIGUSR1 and at exit (SIGTERM/SIGINT)
"""

import argparse
import asyncio
import collections
import os
import re
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import rigimap  # noqa: E402 (after the line above)

# IMAP verbs whose command line may be traced whole, and those traced by
# name only; anything else is traced as "?"
TRACE_WHOLE = {b"SELECT", b"EXAMINE", b"STATUS", b"LIST", b"LSUB", b"FETCH",
               b"UID", b"SEARCH", b"NOOP", b"CAPABILITY", b"ENABLE", b"ID",
               b"LOGOUT", b"NAMESPACE", b"CLOSE", b"UNSELECT", b"IDLE",
               b"GETQUOTAROOT", b"CHECK", b"EXPUNGE", b"STORE"}
TRACE_VERB = {b"LOGIN", b"AUTHENTICATE", b"STARTTLS", b"APPEND", b"CREATE",
              b"DELETE", b"RENAME", b"SUBSCRIBE", b"UNSUBSCRIBE", b"COPY",
              b"MOVE", b"COMPRESS", b"GETMETADATA", b"SETMETADATA"}
LITERAL_END = re.compile(rb"\{\d+\}\r?\n$")
HIGH_WATER = 32 << 20       # bytes held per direction before reading stops
SEGMENT = 16 << 10          # a rate-capped chunk goes out in these pieces
READ_SIZE = 1 << 20          # bytes a read may return
EARLY = 1e-4                # a timer may fire this much before its time


def burst_summary(data, in_literal):
    """What a client burst starts with, without secrets: in_literal when
    the client's last line announced a literal (this is its content)"""
    line = data.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    words = line.split(b" ", 2)
    if in_literal or len(words) < 2 or not words[0].isalnum():
        return "?"
    verb = words[1].upper()
    if verb not in TRACE_WHOLE:
        return verb.decode("ascii") if verb in TRACE_VERB else "?"
    cmd = line[len(words[0]) + 1:]
    if len(cmd) > 80:               # keep the fetch items at the end
        cmd = cmd[:40] + b"..." + cmd[-37:]
    return cmd.decode("ascii", "replace")


class Direction:
    """One direction of a connection: chunks wait in arrival order for
    their release time, then go out in that order; None is the EOF."""

    def __init__(self, conn, delay, rate):
        self.conn = conn
        self.delay = delay
        self.rate = rate            # bytes per second, 0 for no cap
        self.queue = collections.deque()
        self.held = 0               # bytes in queue
        self.link_free = 0.0        # when the link has sent what it has
        self.timer = None
        self.src = None             # transport read from
        self.dst = None             # transport written to, once connected
        self.paused = False
        self.bytes = 0
        self.chunks = 0
        self.eof_done = False

    def in_flight(self):
        return bool(self.queue)

    def feed(self, data):
        loop = self.conn.loop
        now = loop.time()
        was_empty = not self.queue
        if data is None:
            self.queue.append((max(now, self.link_free) + self.delay, None))
        else:
            self.bytes += len(data)
            self.chunks += 1
            self.held += len(data)
            if not self.rate:
                self.queue.append((now + self.delay, data))
            else:
                view = memoryview(data)
                for i in range(0, len(data), SEGMENT):
                    seg = bytes(view[i:i + SEGMENT])
                    self.link_free = max(self.link_free, now) + len(seg) / self.rate
                    self.queue.append((self.link_free + self.delay, seg))
        if was_empty:
            self.flush()
        self.flow()

    def fire(self):
        self.timer = None
        self.flush()

    def flush(self):
        """Write what is due; arm the timer for the next chunk."""
        if self.dst is None or self.timer is not None:
            return
        loop = self.conn.loop
        now = loop.time() + EARLY
        while self.queue and self.queue[0][0] <= now:
            _release, data = self.queue.popleft()
            if data is None:
                self.eof_done = True
                if not self.dst.is_closing() and self.dst.can_write_eof():
                    try:
                        self.dst.write_eof()
                    except OSError:
                        # the peer is gone already (a reset): nothing to
                        # half-close, and the connection still ends here
                        pass
                self.conn.check_done()
                return
            self.held -= len(data)
            if not self.dst.is_closing():
                self.dst.write(data)
            self.conn.released(self, len(data))
        if self.queue:
            self.timer = loop.call_at(self.queue[0][0], self.fire)
        self.flow()

    def flow(self):
        """Stop reading the source while too much waits to be written."""
        if self.src is None:
            return
        backlog = self.held
        if self.dst is not None:
            backlog += self.dst.get_write_buffer_size()
        if backlog > HIGH_WATER and not self.paused:
            self.paused = True
            self.src.pause_reading()
        elif backlog <= HIGH_WATER // 2 and self.paused:
            self.paused = False
            if not self.src.is_closing():
                self.src.resume_reading()

    def close(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Side(asyncio.Protocol):
    """The protocol of one socket: what it reads feeds `into`, whose
    backlog it may also be holding up (`out`)."""

    def __init__(self, conn, into, out, made=None):
        self.conn = conn
        self.into = into
        self.out = out
        self.made = made
        self.eof = False

    def connection_made(self, transport):
        transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # fewer, larger reads (asyncio's selector transport reads 256 KB)
        transport.max_size = READ_SIZE
        if self.made is not None:
            self.made(transport)

    def data_received(self, data):
        self.conn.received(self.into, data)

    def eof_received(self):
        if not self.eof:
            self.eof = True
            self.into.feed(None)
        return True                 # keep writing the other way

    def connection_lost(self, exc):
        if exc is not None and self.conn.error is None:
            self.conn.error = str(exc)
        if not self.eof:
            self.eof = True
            self.into.feed(None)
        # nothing more can be written here
        self.out.eof_done = True
        self.out.queue.clear()
        self.out.held = 0
        self.out.close()
        self.conn.check_done()

    def pause_writing(self):
        pass

    def resume_writing(self):
        self.out.flow()


class Conn:
    def __init__(self, proxy, no, label):
        self.proxy = proxy
        self.loop = proxy.loop
        self.no = no
        self.label = label
        self.open_t = time.time()
        delay = proxy.rtt / 2.0
        self.c2s = Direction(self, delay, proxy.rate)
        self.s2c = Direction(self, delay, proxy.rate)
        self.client = None
        self.server = None
        self.round_trips = 0
        self.answered = False       # server data released since the burst
        self.c2s_tail = b""         # the client's last bytes (for --trace)
        self.s2c_bins = {}          # with --trace: 10 ms bin -> bytes released
        self.error = None
        self.done = False

    def client_protocol(self):
        return Side(self, self.c2s, self.s2c, self.accepted)

    def accepted(self, transport):
        self.client = transport
        self.c2s.src = transport
        self.s2c.dst = transport
        self.loop.call_later(1.5 * self.proxy.rtt,
                             lambda: self.loop.create_task(self.connect()))

    async def connect(self):
        a = self.proxy.args
        try:
            transport, _ = await self.loop.create_connection(
                lambda: Side(self, self.s2c, self.c2s),
                a.target_host, a.target_port)
        except OSError as exc:
            self.proxy.log(conn=self.no, event="connect_failed", error=str(exc))
            self.error = str(exc)
            self.client.close()
            return
        self.server = transport
        self.s2c.src = transport
        self.c2s.dst = transport
        if self.c2s.eof_done:       # the client is gone already
            transport.close()
            return
        self.c2s.flush()

    def received(self, direction, data):
        if direction is self.c2s and not self.c2s.in_flight():
            # a new client burst: it waited when an answer came first
            if self.answered:
                self.round_trips += 1
                if self.proxy.args.trace:
                    self.proxy.log(conn=self.no, event="wait", n=self.round_trips,
                                   at=round(time.time() - self.open_t, 4),
                                   burst=burst_summary(
                                       data, LITERAL_END.search(self.c2s_tail)))
            self.answered = False
        if direction is self.c2s and self.proxy.args.trace:
            self.c2s_tail = (self.c2s_tail + data[-24:])[-24:]
        direction.feed(data)

    def released(self, direction, size):
        if direction is self.s2c:
            self.answered = True
            if self.proxy.args.trace:
                b = int((time.time() - self.open_t) * 100)
                self.s2c_bins[b] = self.s2c_bins.get(b, 0) + size

    def check_done(self):
        if self.done or not (self.c2s.eof_done and self.s2c.eof_done):
            return
        self.done = True
        for d in (self.c2s, self.s2c):
            d.close()
        for t in (self.client, self.server):
            if t is not None:
                t.close()
        self.proxy.closed(self)


class Proxy:
    def __init__(self, args, loop):
        self.args = args
        self.loop = loop
        self.rtt = args.rtt_ms / 1000.0
        self.rate = (args.bandwidth_mbit * 1e6 / 8) if args.bandwidth_mbit else 0
        self.log = rigimap.JsonLog(args.log, 4)
        self.conns = 0
        self.open = 0
        self.round_trips = 0

    def label(self):
        if not self.args.label_file:
            return None
        try:
            with open(self.args.label_file, encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError:
            return None

    def protocol(self):
        self.conns += 1
        self.open += 1
        conn = Conn(self, self.conns, self.label())
        self.log(conn=conn.no, event="open", label=conn.label)
        return conn.client_protocol()

    def closed(self, conn):
        self.open -= 1
        self.round_trips += conn.round_trips
        rec = dict(conn=conn.no, event="close", label=conn.label,
                   open_t=round(conn.open_t, 4), round_trips=conn.round_trips,
                   c2s=conn.c2s.bytes, s2c=conn.s2c.bytes,
                   c2s_chunks=conn.c2s.chunks, s2c_chunks=conn.s2c.chunks)
        if conn.error:
            rec["error"] = conn.error
        if self.args.trace and conn.s2c_bins:
            # bytes released to the client per 10 ms since the accept
            last = max(conn.s2c_bins)
            rec["s2c_per_10ms"] = [conn.s2c_bins.get(i, 0) for i in range(last + 1)]
        self.log(**rec)

    def summary(self):
        self.log(event="summary", connections=self.conns, open=self.open,
                 round_trips=self.round_trips)


def main():
    ap = argparse.ArgumentParser(description="streaming TCP delay proxy")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--target-host", default="127.0.0.1")
    ap.add_argument("--rtt-ms", type=float, required=True)
    ap.add_argument("--bandwidth-mbit", type=float, default=0)
    ap.add_argument("--log", required=True)
    ap.add_argument("--label-file")
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--pidfile")
    ap.add_argument("--daemon", action="store_true")
    args = ap.parse_args()
    if args.rtt_ms < 0 or args.bandwidth_mbit < 0:
        ap.error("--rtt-ms and --bandwidth-mbit must not be negative")
    for a in ("log", "label_file", "pidfile"):
        if getattr(args, a):
            setattr(args, a, os.path.abspath(getattr(args, a)))
    rigimap.raise_nofile_limit()
    lsock = rigimap.serve_listen(args.port, 512, args.daemon, args.pidfile)
    loop = asyncio.new_event_loop()
    proxy = Proxy(args, loop)
    proxy.log(event="listen", rtt_ms=args.rtt_ms,
              bandwidth_mbit=args.bandwidth_mbit or None)

    def on_exit():
        proxy.summary()
        os._exit(0)
    loop.add_signal_handler(signal.SIGTERM, on_exit)
    loop.add_signal_handler(signal.SIGINT, on_exit)
    loop.add_signal_handler(signal.SIGUSR1, proxy.summary)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    loop.run_until_complete(loop.create_server(proxy.protocol, sock=lsock))
    loop.run_forever()


if __name__ == "__main__":
    main()
