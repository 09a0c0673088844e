#!/usr/bin/python3
"""Helpers of tests/bench/run-bench.sh (Python 3 stdlib only).

Subcommands:
  time --out JSON --log FILE [--timeout S] -- CMD ARGS...
        run CMD (output to FILE), then write its wall seconds, CPU seconds
        (user+sys) and peak RSS (MB) of the command, measured by
        GNU time(1) to JSON; exits with CMD's status (124 on timeout).
  ceiling --port P --user U --password-file F [--json OUT]
        the fastest possible read of an account: one IMAP connection; after
        LIST every folder's EXAMINE + UID FETCH 1:* BODY.PEEK[] and the
        LOGOUT in one write, literal bodies read in big chunks and
        discarded.  Prints/writes the counts.
  probe --port P --user U --password-file F [--count N] [--json OUT]
        N sequential NOOPs, timed (the round trip through a delay proxy).
  proxy-stats --log PROXYLOG --label L [--wait S] [--out JSON]
        connections, waited round trips and bytes of the connections that
        tools/delayproxy.py opened under label L (waits up to S seconds
        for the last ones to close).
  mbsync-check --port P --user U --password-file F --maildir DIR --inbox DIR
        [--json OUT]
        compares a source account (IMAP: per folder count, RFC822.SIZE sum,
        flags, keywords) with the Maildir tree mbsync wrote.
  report --results JSONL --meta JSON --out JSON
        turns the per-run records (one a line, several rounds of a tool
        and phase allowed) into the table of medians and the ratios the
        issue's targets use (stdout) and the JSON file.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tools"))
from rigimap import mutf7_decode  # noqa: E402

CHUNK = 1 << 20


# ---------------------------------------------------------------------------
# time

def cmd_time(a):
    """CPU and peak RSS come from GNU time's wait4() of the command, not
    from our own getrusage(RUSAGE_CHILDREN): Linux keeps a process's
    ru_maxrss across execve, so a child forked by this Python process
    would report at least the interpreter's RSS.  time(1) is small and
    forks the command itself."""
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    tfile = a.out + ".time"
    start = time.monotonic()
    timed_out = False
    with open(a.log, "ab") as log:
        # own process group: a timeout kills the whole command
        p = subprocess.Popen(["/usr/bin/time", "-o", tfile,
                              "-f", "%e %U %S %M", "--"] + cmd,
                             stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        # Popen.wait(timeout) polls with sleeps of up to 50 ms, which
        # rounded every wall time up to the next poll: wait in waitpid()
        # and let a timer kill the command instead
        killed = []

        def kill():
            killed.append(True)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        timer = threading.Timer(a.timeout, kill)
        timer.start()
        rc = p.wait()
        timer.cancel()
        if killed:
            timed_out = True
            rc = 124
    wall = time.monotonic() - start
    rec = {"wall_s": round(wall, 3), "cpu_s": None, "peak_rss_mb": None,
           "rc": rc, "timed_out": timed_out}
    try:
        with open(tfile) as f:
            # time(1) prints "Command exited with non-zero status N" first
            fields = f.read().split("\n")[-2].split()
        rec["cpu_s"] = round(float(fields[1]) + float(fields[2]), 3)
        rec["peak_rss_mb"] = round(int(fields[3]) / 1024.0, 1)
    except (OSError, IndexError, ValueError):
        pass
    with open(a.out, "w") as f:
        json.dump(rec, f)
    return rc


# ---------------------------------------------------------------------------
# a minimal raw IMAP client

LITERAL_RE = re.compile(rb"\{(\d+)\+?\}\r\n$")


class RawImap:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb", buffering=CHUNK)
        self.n = 0
        self.literal_bytes = 0
        self.readline()                     # greeting

    def readline(self):
        line = self.rf.readline()
        if not line:
            raise SystemExit("bench-tool: connection closed by the server")
        return line

    def tag(self):
        self.n += 1
        return b"b%d" % self.n

    def send(self, data):
        self.sock.sendall(data)

    def read_until(self, tag, keep_literals=False):
        """Untagged lines up to TAG's completion (literals inline when kept,
        else skipped and counted); raises on NO/BAD."""
        lines = []
        while True:
            line = self.readline()
            full = line
            while True:
                m = LITERAL_RE.search(line)
                if not m:
                    break
                n = int(m.group(1))
                self.literal_bytes += n
                if keep_literals:
                    full += self.rf.read(n)
                else:
                    while n > 0:            # discard in big chunks
                        got = len(self.rf.read(min(n, CHUNK)))
                        if not got:
                            raise SystemExit("bench-tool: short literal")
                        n -= got
                line = self.readline()
                full += line
            if full.startswith(tag + b" "):
                if not full[len(tag) + 1:].startswith(b"OK"):
                    raise SystemExit("bench-tool: server said %r" % full)
                return lines
            lines.append(full)

    def command(self, text, keep_literals=True):
        t = self.tag()
        self.send(t + b" " + text + b"\r\n")
        return self.read_until(t, keep_literals)

    def login(self, user, password):
        def q(s):
            return b'"' + s.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        self.command(b"LOGIN " + q(user) + b" " + q(password))

    def folders(self):
        """Selectable folders: (raw name as the server sends it, quoted
        form to send back)."""
        out = []
        for line in self.command(b'LIST "" "*"'):
            m = re.match(rb'\* LIST \(([^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (.*)\r\n$',
                         line, re.S)
            if not m:
                continue
            attrs = m.group(1).lower()
            if b"\\noselect" in attrs or b"\\nonexistent" in attrs:
                continue
            name = m.group(2)
            lit = re.match(rb"\{\d+\}\r\n(.*)", name, re.S)
            if lit:
                raw = lit.group(1)
            elif name.startswith(b'"'):
                raw = re.sub(rb"\\(.)", rb"\1", name[1:-1])
            else:
                raw = name
            quoted = b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
            out.append((raw, quoted))
        return out


def connect(a):
    with open(a.password_file) as f:
        password = f.readline().rstrip("\n")
    c = RawImap(a.host, a.port)
    c.login(a.user, password)
    return c


def exists_of(lines):
    for line in lines:
        m = re.match(rb"\* (\d+) EXISTS", line)
        if m:
            return int(m.group(1))
    return 0


# ---------------------------------------------------------------------------
# ceiling

def cmd_ceiling(a):
    """After LIST, every folder's EXAMINE + UID FETCH and the LOGOUT go
    out in one write: the client waits for the greeting, LOGIN and LIST
    and for nothing else, at any round-trip time."""
    start = time.monotonic()
    c = connect(a)
    batch = []
    out = b""
    for raw, quoted in c.folders():
        t1, t2 = c.tag(), c.tag()
        out += (t1 + b" EXAMINE " + quoted + b"\r\n" +
                t2 + b" UID FETCH 1:* BODY.PEEK[]\r\n")
        batch.append((t1, t2))
    logout = c.tag()
    c.send(out + logout + b" LOGOUT\r\n")
    messages = 0
    for t1, t2 in batch:
        sel = c.read_until(t1, keep_literals=True)
        got = c.read_until(t2, keep_literals=False)
        if exists_of(sel):
            messages += sum(1 for line in got if b" FETCH " in line[:40])
    c.read_until(logout)
    rec = {"folders": len(batch), "messages": messages,
           "bytes": c.literal_bytes, "wall_s": round(time.monotonic() - start, 3)}
    print(json.dumps(rec))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rec, f)
    return 0


# ---------------------------------------------------------------------------
# probe

def cmd_probe(a):
    """COUNT sequential NOOPs, each sent when the last one's reply is in:
    through tools/delayproxy.py each costs one round trip, and the proxy
    counts COUNT + 2 waited round trips (LOGIN, the NOOPs, LOGOUT)."""
    start = time.monotonic()
    c = connect(a)
    login_s = time.monotonic() - start
    times = []
    for _ in range(a.count):
        t = time.monotonic()
        c.command(b"NOOP")
        times.append(time.monotonic() - t)
    c.command(b"LOGOUT")
    times.sort()
    rec = {"noops": a.count, "login_s": round(login_s, 4),
           "noop_ms_median": round(1000 * times[len(times) // 2], 2),
           "noop_ms_min": round(1000 * times[0], 2),
           "noop_ms_max": round(1000 * times[-1], 2)}
    print(json.dumps(rec))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rec, f)
    return 0


# ---------------------------------------------------------------------------
# proxy-stats

def proxy_conns(path, label):
    """(connections opened under label, their close records)"""
    opened, closed = set(), []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("label") != label or "conn" not in r:
                    continue
                if r.get("event") == "open":
                    opened.add(r["conn"])
                elif r.get("event") == "close":
                    closed.append(r)
    except OSError:
        pass
    return opened, closed


def cmd_proxy_stats(a):
    """Sums the proxy's close records of one label, once every connection
    opened under it has closed (at most --wait seconds)."""
    deadline = time.monotonic() + a.wait
    while True:
        opened, closed = proxy_conns(a.log, a.label)
        if len(closed) >= len(opened) or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    rec = {"connections": len(opened),
           "connections_unclosed": len(opened) - len(closed),
           "round_trips": sum(r["round_trips"] for r in closed),
           "round_trips_per_connection": sorted(
               (r["round_trips"] for r in closed), reverse=True),
           "c2s_bytes": sum(r["c2s"] for r in closed),
           "s2c_bytes": sum(r["s2c"] for r in closed)}
    text = json.dumps(rec)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        print(text)
    return 0


# ---------------------------------------------------------------------------
# mbsync-check

FLAG_LETTERS = {"\\draft": "D", "\\flagged": "F", "\\answered": "R",
                "\\seen": "S"}


def source_folders(a):
    """{utf8 name: {"count", "bytes", "flags": {letter: n}, "keywords": n}}"""
    c = connect(a)
    res = {}
    for raw, quoted in c.folders():
        exists = exists_of(c.command(b"EXAMINE " + quoted))
        st = {"count": 0, "bytes": 0, "flags": {}, "with_keywords": 0}
        fetched = c.command(b"FETCH 1:* (RFC822.SIZE FLAGS)") if exists else []
        for line in fetched:
            m = re.search(rb"RFC822\.SIZE (\d+)", line)
            f = re.search(rb"FLAGS \(([^)]*)\)", line)
            if not m:
                continue
            st["count"] += 1
            st["bytes"] += int(m.group(1))
            kw = False
            for flag in (f.group(1).decode().split() if f else []):
                letter = FLAG_LETTERS.get(flag.lower())
                if letter:
                    st["flags"][letter] = st["flags"].get(letter, 0) + 1
                elif not flag.startswith("\\"):
                    kw = True
            st["with_keywords"] += kw
        name = raw.decode("ascii", "replace")
        try:
            name = mutf7_decode(name)
        except ValueError:
            pass
        res[name] = st
    c.command(b"LOGOUT")
    return res


def maildir_stats(path):
    """count, bytes as on the wire (the X-TUID line mbsync adds removed, LF
    line ends counted as CRLF), flag counts, X-TUID headers seen."""
    st = {"count": 0, "bytes": 0, "file_bytes": 0, "flags": {},
          "x_tuid": 0, "trashed": 0}
    for sub in ("cur", "new"):
        d = os.path.join(path, sub)
        if not os.path.isdir(d):
            continue
        for fn in os.listdir(d):
            info = fn.rsplit(":2,", 1)[1] if ":2," in fn else ""
            if "T" in info:                 # flagged deleted, not expunged
                st["trashed"] += 1
                continue
            with open(os.path.join(d, fn), "rb") as f:
                data = f.read()
            st["count"] += 1
            st["file_bytes"] += len(data)
            hdr_end = data.find(b"\n\n")
            m = re.search(rb"(?m)^X-TUID: [^\n]*\n", data[:hdr_end + 1]
                          if hdr_end >= 0 else data)
            if m:
                st["x_tuid"] += 1
                data = data[:m.start()] + data[m.end():]
            st["bytes"] += len(data) + data.count(b"\n") - data.count(b"\r\n")
            for letter in info:
                if letter in "DFRS":
                    st["flags"][letter] = st["flags"].get(letter, 0) + 1
    return st


def cmd_mbsync_check(a):
    src = source_folders(a)
    folders = {}
    for name, s in sorted(src.items()):
        if name.upper() == "INBOX":
            path = a.inbox
        else:
            # mbsync 1.4 keeps the IMAP (modified UTF-7) names on disk;
            # accept the UTF-8 spelling too
            from rigimap import mutf7_encode
            path = os.path.join(a.maildir, mutf7_encode(name))
            if not os.path.isdir(path):
                path = os.path.join(a.maildir, name)
        d = maildir_stats(path) if os.path.isdir(path) else None
        folders[name] = {
            "source": s, "maildir": d,
            "count_equal": bool(d) and d["count"] == s["count"],
            "bytes_equal": bool(d) and d["bytes"] == s["bytes"],
            "flags_equal": bool(d) and d["flags"] == s["flags"],
        }
    tot = lambda key: all(f[key] for f in folders.values())
    rec = {
        "counts_equal": tot("count_equal"),
        "sizes_equal": tot("bytes_equal"),
        "flags_equal": tot("flags_equal"),
        "source_messages": sum(f["source"]["count"] for f in folders.values()),
        "maildir_messages": sum((f["maildir"] or {}).get("count", 0)
                                for f in folders.values()),
        "messages_with_keywords_at_source":
            sum(f["source"]["with_keywords"] for f in folders.values()),
        "keywords_kept": False,     # Maildir flags of mbsync 1.4: DFRS only
        "x_tuid_headers_added": sum((f["maildir"] or {}).get("x_tuid", 0)
                                    for f in folders.values()),
        "folders": folders,
    }
    rec["verdict"] = ("COUNTS+SIZES EQUAL" if rec["counts_equal"] and
                      rec["sizes_equal"] else "DIFFERENT")
    print("mbsync-check: %s (%d/%d messages, flags %s; adds X-TUID header "
          "(%d), keywords not kept (%d messages had some))" % (
              rec["verdict"], rec["maildir_messages"], rec["source_messages"],
              "equal" if rec["flags_equal"] else "DIFFERENT",
              rec["x_tuid_headers_added"],
              rec["messages_with_keywords_at_source"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rec, f, indent=1)
    return 0 if rec["verdict"] != "DIFFERENT" else 1


# ---------------------------------------------------------------------------
# report

TOOLS = ["migrate", "dsync-default", "dsync-pf1000", "dsync-tuned", "mbsync",
         "ceiling"]
SHORT = {"dsync-default": "dsD", "dsync-pf1000": "ds1k", "dsync-tuned": "dsT",
         "mbsync": "mbs", "ceiling": "ceil"}
PHASES = ["a-full", "a-fsync", "b-noop", "c-changes", "d-new", "e-batch"]


def median(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2.0


def aggregate(runs):
    """{(tool, phase): row}: medians over the rounds, the verdict of the
    round that was checked, the worst exit status"""
    groups = {}
    for r in runs:
        groups.setdefault((r["tool"], r["phase"]), []).append(r)
    rows = {}
    for key, rs in groups.items():
        proxy = [r.get("proxy") or {} for r in rs]
        row = {"tool": key[0], "phase": key[1], "rounds": len(rs),
               "wall_s_rounds": [r.get("wall_s") for r in rs],
               "rc": next((r["rc"] for r in rs if r.get("rc") != 0), 0),
               "faithful": next((r["faithful"] for r in reversed(rs)
                                 if r.get("faithful") not in (None, "-")), None)}
        for k in ("wall_s", "cpu_s", "peak_rss_mb"):
            row[k] = median(r.get(k) for r in rs)
        for k in ("round_trips", "connections"):
            row[k] = median(p.get(k) for p in proxy)
        if rs[-1].get("jobs"):
            row["jobs"] = rs[-1]["jobs"]
        if proxy[-1]:
            row["round_trips_per_connection"] = \
                proxy[-1].get("round_trips_per_connection")
        rows[key] = row
    return rows


def add_ratios(rows, corpus_mb, batch_mb):
    for (tool, phase), r in rows.items():
        mb = {"a-full": corpus_mb, "a-fsync": corpus_mb,
              "e-batch": batch_mb}.get(phase)
        if mb and r["wall_s"]:
            r["mb_per_s"] = round(mb / r["wall_s"], 1)
        mig = rows.get(("migrate", phase))
        r["migrate_ratio"] = None
        if mig and tool != "migrate" and r["wall_s"] and mig["wall_s"] and \
                mig["rc"] == 0 and r["rc"] == 0:
            r["migrate_ratio"] = round(mig["wall_s"] / r["wall_s"], 2)
    # migrate's row: migrate wall / each other tool's wall
    for (tool, phase), r in rows.items():
        if tool == "migrate":
            r["ratio_vs"] = {t: rows[(t, phase)]["migrate_ratio"]
                             for t in TOOLS[1:] if (t, phase) in rows}


def targets(rows, rtt_ms):
    """The ratios issue 18 sets targets on: at RTT > 0 its own, on
    loopback those it keeps from before; [{target, value, op, limit, met}]"""
    def wall(tool, phase):
        r = rows.get((tool, phase))
        return r["wall_s"] if r and r["rc"] == 0 else None

    def ratio(a, b):
        return round(a / b, 2) if a and b else None
    out = []

    def add(name, value, limit, op="<="):
        met = None if value is None else (value <= limit if op == "<=" else
                                          value < limit)
        out.append({"target": name, "value": value, "op": op, "limit": limit,
                    "met": met})
    mig = wall("migrate", "a-full")
    add("full copy: migrate / ceiling", ratio(mig, wall("ceiling", "a-full")), 2.0)
    if rtt_ms:
        peers = [w for w in (wall("mbsync", "a-full"),
                             wall("dsync-pf1000", "a-full")) if w]
        add("full copy: migrate / min(mbsync, dsync-pf1000)",
            ratio(mig, min(peers) if peers else None), round(1 / 1.5, 2))
        for phase, what in (("b-noop", "unchanged"), ("c-changes", "changes")):
            add("%s re-run: migrate / mbsync" % what,
                ratio(wall("migrate", phase), wall("mbsync", phase)), 0.5)
    else:
        add("full copy: migrate / mbsync",
            ratio(mig, wall("mbsync", "a-full")), 1.0, "<")
        add("full copy: migrate / dsync-tuned",
            ratio(mig, wall("dsync-tuned", "a-full")), 0.4)
    # point 3: a re-run after 100 new messages, against the unchanged one
    if wall("migrate", "d-new"):
        add("100 new re-run: migrate / its unchanged re-run",
            ratio(wall("migrate", "d-new"), wall("migrate", "b-noop")), 2.0)
    rss = [r["peak_rss_mb"] for (t, p), r in rows.items()
           if t == "migrate" and r["peak_rss_mb"] is not None and p != "e-batch"]
    add("migrate peak RSS, MB (one account)",
        round(max(rss), 1) if rss else None, 40, "<")
    return out


def print_table(rows):
    def fmt(v, spec="%.2f"):
        return "-" if v is None else spec % v
    others = [t for t in TOOLS[1:] if any(k[0] == t for k in rows)]
    ratio_head = "migrate/ " + " ".join("%5s" % SHORT[t] for t in others)
    head = ("%-13s %-9s %8s %7s %7s %6s %5s %4s  %-*s %s" %
            ("tool", "phase", "wall s", "cpu s", "peak MB", "MB/s", "RTs",
             "conn", len(ratio_head), ratio_head, "faithful?"))
    print(head)
    print("-" * len(head))
    for phase in PHASES:
        for tool in TOOLS:
            r = rows.get((tool, phase))
            if not r:
                continue
            rv = r.get("ratio_vs", {})
            ratios = ("        " + " ".join("%5s" % fmt(rv.get(t)) for t in others)
                      if tool == "migrate"
                      else "%*s" % (len(ratio_head), fmt(r.get("migrate_ratio"))))
            status = "" if r["rc"] == 0 else " FAILED rc=%s" % r["rc"]
            print("%-13s %-9s %8s %7s %7s %6s %5s %4s  %s %s%s" % (
                tool, phase, fmt(r["wall_s"]), fmt(r["cpu_s"]),
                fmt(r["peak_rss_mb"], "%.1f"), fmt(r.get("mb_per_s"), "%.1f"),
                fmt(r["round_trips"], "%d"), fmt(r["connections"], "%d"),
                ratios, r["faithful"] or "", status))
    print("\nratios: doveadm migrate's wall time / the other tool's, same phase "
          "(< 1: migrate is faster); " +
          ", ".join("%s %s" % (SHORT[t], t) for t in others) + ".\n"
          "RTs: round trips the client waited for, counted at the delay proxy "
          "(tools/delayproxy.py), conn: its connections.")


def cmd_report(a):
    with open(a.meta) as f:
        meta = json.load(f)
    runs = []
    with open(a.results) as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    rows = aggregate(runs)
    corpus_mb = meta["corpus"]["bytes"] / 1e6
    batch_mb = meta.get("batch", {}).get("bytes", 0) / 1e6
    add_ratios(rows, corpus_mb, batch_mb)
    print_table(rows)
    rounds = max((r["rounds"] for r in rows.values()), default=0)
    print("wall, cpu, peak, RTs: medians over %d round(s); cpu/peak are the "
          "client process(es)\nonly (peak: the largest single process)." % rounds)
    print("corpus: %d messages, %.1f MB; the source was loaded in %.1f s" % (
        meta["corpus"]["messages"], corpus_mb, meta["corpus"]["load_s"]))
    if batch_mb:
        b = meta["batch"]
        jobs = b.get("jobs")
        if isinstance(jobs, dict):
            jobs = ", ".join("%s %s" % (t, jobs[t]) for t in TOOLS if t in jobs)
        print("e-batch: %d accounts, %d messages, %.1f MB, at a time: %s" % (
            b["accounts"], b["messages"], batch_mb, jobs or "-"))
    print("filesystem of the mail: %s" % meta.get("filesystem"))
    print("doveadm's settings (migrate, dsync): %s" % {
        "socket": "the running instance's config socket (no -c)",
        "file": "-c dovecot.conf (doveconf run by each process)"}.get(
            meta.get("doveadm_config"), "-c dovecot.conf"))
    if meta.get("source_format", "maildir") != "maildir":
        print("the source's mail: %s" % meta["source_format"])
    if meta.get("dest_format", "maildir") != "maildir":
        print("the destinations' mail: %s" % meta["dest_format"])
    net = meta.get("network") or {}
    if net.get("proxy"):
        probe = net.get("probe") or {}
        print("network: every tool through tools/delayproxy.py, RTT %s ms, "
              "bandwidth %s; a NOOP took %s ms (median of %s), %s waited "
              "round trips counted for them" % (
                  net["rtt_ms"], "%s Mbit/s" % net["bandwidth_mbit"]
                  if net.get("bandwidth_mbit") else "not capped",
                  probe.get("noop_ms_median"), probe.get("noops"),
                  (probe.get("proxy") or {}).get("round_trips")))
    tg = targets(rows, net.get("rtt_ms"))
    print("\ntargets of issue 18 (%s):" % (
        "at RTT %s ms" % net["rtt_ms"] if net.get("rtt_ms") else
        "on loopback, kept from before"))
    for t in tg:
        print("  %-48s %8s  (target %s %s)%s" % (
            t["target"], "-" if t["value"] is None else t["value"], t["op"],
            t["limit"], {True: " met", False: " MISSED", None: ""}[t["met"]]))
    noop = rows.get(("migrate", "b-noop"))
    if noop and noop["round_trips"] is not None:
        print("  (migrate's unchanged re-run waited for %d round trips; the "
              "issue wants a number\n  that does not grow with the folders)"
              % noop["round_trips"])
    out = dict(meta)
    out["rows"] = [rows[k] for k in sorted(rows, key=lambda k: (
        PHASES.index(k[1]) if k[1] in PHASES else 99,
        TOOLS.index(k[0]) if k[0] in TOOLS else 99))]
    out["targets"] = tg
    out["runs"] = runs
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    print("json: %s" % a.out)
    return 0


def main():
    p = argparse.ArgumentParser(description="run-bench.sh helpers")
    sub = p.add_subparsers(dest="sub", required=True)
    t = sub.add_parser("time")
    t.add_argument("--out", required=True)
    t.add_argument("--log", required=True)
    t.add_argument("--timeout", type=float, default=1800)
    t.add_argument("cmd", nargs=argparse.REMAINDER)
    for name in ("ceiling", "mbsync-check", "probe"):
        s = sub.add_parser(name)
        s.add_argument("--host", default="127.0.0.1")
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--user", required=True)
        s.add_argument("--password-file", required=True)
        s.add_argument("--json")
        if name == "mbsync-check":
            s.add_argument("--maildir", required=True)
            s.add_argument("--inbox", required=True)
        if name == "probe":
            s.add_argument("--count", type=int, default=10)
    ps = sub.add_parser("proxy-stats")
    ps.add_argument("--log", required=True)
    ps.add_argument("--label", required=True)
    ps.add_argument("--wait", type=float, default=5)
    ps.add_argument("--out")
    r = sub.add_parser("report")
    r.add_argument("--results", required=True)
    r.add_argument("--meta", required=True)
    r.add_argument("--out", required=True)
    a = p.parse_args()
    return {"time": cmd_time, "ceiling": cmd_ceiling, "probe": cmd_probe,
            "proxy-stats": cmd_proxy_stats, "mbsync-check": cmd_mbsync_check,
            "report": cmd_report}[a.sub](a)


if __name__ == "__main__":
    sys.exit(main())
