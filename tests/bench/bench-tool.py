#!/usr/bin/python3
"""Helpers of tests/bench/run-bench.sh (Python 3 stdlib only).

Subcommands:
  time --out JSON --log FILE [--timeout S] -- CMD ARGS...
        run CMD (output to FILE), then write its wall seconds, CPU seconds
        (user+sys) and peak RSS (MB) of the command, measured by
        GNU time(1) to JSON; exits with CMD's status (124 on timeout).
  ceiling --port P --user U --password-file F [--json OUT]
        the fastest possible read of an account: one IMAP connection, per
        folder SELECT + UID FETCH 1:* BODY.PEEK[] sent together, literal
        bodies read in big chunks and discarded.  Prints/writes the counts.
  mbsync-check --port P --user U --password-file F --maildir DIR --inbox DIR
        [--json OUT]
        compares a source account (IMAP: per folder count, RFC822.SIZE sum,
        flags, keywords) with the Maildir tree mbsync wrote.
  report --results TSV --meta JSON --out JSON
        turns the per-run records into the table (stdout) and the JSON file.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
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
        try:
            rc = p.wait(timeout=a.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
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
    start = time.monotonic()
    c = connect(a)
    folders = messages = 0
    for raw, quoted in c.folders():
        folders += 1
        # SELECT and the FETCH in one write: no round trip between them
        t1, t2 = c.tag(), c.tag()
        c.send(t1 + b" EXAMINE " + quoted + b"\r\n" +
               t2 + b" UID FETCH 1:* BODY.PEEK[]\r\n")
        sel = c.read_until(t1, keep_literals=True)
        got = c.read_until(t2, keep_literals=False)
        if exists_of(sel):
            messages += sum(1 for line in got if b" FETCH " in line[:40])
    c.command(b"LOGOUT")
    rec = {"folders": folders, "messages": messages,
           "bytes": c.literal_bytes, "wall_s": round(time.monotonic() - start, 3)}
    print(json.dumps(rec))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rec, f)
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

TOOLS = ["migrate", "dsync-default", "dsync-tuned", "mbsync", "ceiling"]
PHASES = ["a-full", "a-fsync", "b-noop", "c-changes", "e-batch"]


def cmd_report(a):
    with open(a.meta) as f:
        meta = json.load(f)
    runs = []
    with open(a.results) as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    by = {(r["tool"], r["phase"]): r for r in runs}
    corpus_mb = meta["corpus"]["bytes"] / 1e6
    batch_mb = meta.get("batch", {}).get("bytes", 0) / 1e6
    for r in runs:
        mb = {"a-full": corpus_mb, "a-fsync": corpus_mb,
              "e-batch": batch_mb}.get(r["phase"])
        if mb and r.get("wall_s"):
            r["mb_per_s"] = round(mb / r["wall_s"], 1)
        mig = by.get(("migrate", r["phase"]))
        r["migrate_ratio"] = None
        if mig and r["tool"] != "migrate" and r.get("wall_s") and \
                mig.get("rc") == 0 and r.get("rc") == 0:
            r["migrate_ratio"] = round(mig["wall_s"] / r["wall_s"], 2)
    # the ratios of migrate's row: migrate wall / other tool's wall
    for (tool, phase), r in by.items():
        if tool != "migrate":
            continue
        r["ratio_vs"] = {t: by[(t, phase)]["migrate_ratio"]
                         for t in TOOLS[1:] if (t, phase) in by}

    def fmt(v, spec="%.2f"):
        return "-" if v is None else spec % v

    head = ("%-13s %-9s %8s %8s %8s %7s  %-27s %s" %
            ("tool", "phase", "wall s", "cpu s", "peak MB", "MB/s",
             "migrate/ dsD  dsT  mbs  ceil", "faithful?"))
    print(head)
    print("-" * len(head))
    for phase in PHASES:
        for tool in TOOLS:
            r = by.get((tool, phase))
            if not r:
                continue
            rv = r.get("ratio_vs", {})
            ratios = ("%5s %5s %5s %5s" % tuple(fmt(rv.get(t)) for t in TOOLS[1:])
                      if tool == "migrate" else "%11s" % fmt(r.get("migrate_ratio")))
            status = "" if r.get("rc") == 0 else " FAILED rc=%s" % r.get("rc")
            print("%-13s %-9s %8s %8s %8s %7s  %-27s %s%s" % (
                tool, phase, fmt(r.get("wall_s")), fmt(r.get("cpu_s")),
                fmt(r.get("peak_rss_mb"), "%.1f"),
                fmt(r.get("mb_per_s"), "%.1f"), ratios,
                r.get("faithful") or "", status))
    print("\nratios: doveadm migrate's wall time / the other tool's, same phase "
          "(< 1: migrate is faster);\ndsD dsync-default, dsT dsync-tuned, mbs "
          "mbsync, ceil ceiling; the other tools' rows show migrate/that tool.\n"
          "corpus: %d messages, %.1f MB; cpu/peak are the client process(es) "
          "only; the source was loaded in %.1f s" % (
              meta["corpus"]["messages"], corpus_mb, meta["corpus"]["load_s"]))
    if batch_mb:
        b = meta["batch"]
        print("e-batch: %d accounts, %d messages, %.1f MB, %d at a time; "
              "peak MB is the largest single process" % (
                  b["accounts"], b["messages"], batch_mb, b["jobs"]))
    print("filesystem of the mail: %s" % meta.get("filesystem"))
    if meta.get("latency_ms_each_way"):
        print("every tool through a proxy adding %d ms per chunk each way"
              % meta["latency_ms_each_way"])
    out = dict(meta)
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
    for name in ("ceiling", "mbsync-check"):
        s = sub.add_parser(name)
        s.add_argument("--host", default="127.0.0.1")
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--user", required=True)
        s.add_argument("--password-file", required=True)
        s.add_argument("--json")
        if name == "mbsync-check":
            s.add_argument("--maildir", required=True)
            s.add_argument("--inbox", required=True)
    r = sub.add_parser("report")
    r.add_argument("--results", required=True)
    r.add_argument("--meta", required=True)
    r.add_argument("--out", required=True)
    a = p.parse_args()
    return {"time": cmd_time, "ceiling": cmd_ceiling,
            "mbsync-check": cmd_mbsync_check, "report": cmd_report}[a.sub](a)


if __name__ == "__main__":
    sys.exit(main())
