#!/usr/bin/env python3
"""secret-scan.py - look for the test passwords where none may be

The integration tests register every password they use (tests/lib/rig.sh:
rig_secret, and rig_add_user / rig_password_file / rig_foreign_add_user do
it themselves) in a registry file that tests/run-tests.sh keeps in a
root-only directory.  This tool finds them again:

  secret-scan.py files DIR --registry R --findings F [--stats S] [--test NAME]
      every regular file under DIR (no symlinks followed) except the inputs
      the test declared in DIR/.secret-inputs (paths relative to DIR, a
      directory covers what is below it); appends "files NAME N HITS SECONDS"
      to S
  secret-scan.py paths --registry R --findings F --kind KIND PATH...
      the given files (test outputs, core files); prints how many
  secret-scan.py sample OUT --runner PID --rigs FILE [--interval 0.1]
      until SIGTERM: every distinct /proc/*/cmdline seen, as "1 HEX" when
      the process belongs to this run (PID, the runner, or a process whose
      command line names one of the rig directories listed in FILE, such
      as a daemonized Dovecot master, is among it and its ancestors), as
      "0 HEX" else (another run on the same host, whose tests use the same
      passwords); in OUT (0600); "#ticks N" and "#seen N" lines at the end
  secret-scan.py cmdlines SAMPLES --registry R --findings F
      the sampled command lines of this run; prints "LINES TICKS FOREIGN"
      (FOREIGN: lines of other processes that hold a secret, not findings)

Registry lines: TEST <TAB> LABEL <TAB> HEX(password).  A secret is named
by "TEST#INDEX (LABEL)", never printed.  Secrets shorter than MIN_LEN bytes
are not looked for (they match ordinary words: "wrong"); "registry" prints
how many were skipped.

Each secret is looked for as its bytes, as the JSON / IMAP-quoted form
(backslash before " and \\; JSON's \\uXXXX for non-ASCII) and base64
encoded at each of the three byte alignments (what a rawlog or a debug log
would show of AUTHENTICATE PLAIN, "\\0user\\0password", whatever the user
name): the part of the encoding that depends on the password only, when
it is at least 8 characters long.

Findings lines: KIND <TAB> WHERE <TAB> SECRET <TAB> FORM.  Files are found
by GNU grep -F (fast on the mail stores) with the patterns in a 0600 file
next to the registry, then each hit file is read to name the secret.
"""

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

MIN_LEN = 6
B64_MIN = 8


def load_registry(path):
    """[(id, bytes)] of the distinct secrets, and how many were too short"""
    secrets, seen, short = [], set(), 0
    count = {}
    try:
        lines = open(path, "rb").read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        test, label, hexpw = parts
        count[test] = count.get(test, 0) + 1
        try:
            pw = bytes.fromhex(hexpw)
        except ValueError:
            continue
        if pw in seen:
            continue
        seen.add(pw)
        if len(pw) < MIN_LEN:
            short += 1
            continue
        secrets.append(("%s#%d (%s)" % (test, count[test], label), pw))
    return secrets, short


def forms(pw):
    """[(form name, bytes)] to look for"""
    out = [("plain", pw)]
    try:
        text = pw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        esc = text.replace("\\", "\\\\").replace('"', '\\"').encode()
        if esc != pw:
            out.append(("escaped", esc))
        js = json.dumps(text)[1:-1].encode()
        if js not in (pw, esc):
            out.append(("json", js))
    for k in range(3):
        data = b"\0" * k + pw
        enc = base64.b64encode(data)
        start = 1 if k else 0
        frag = enc[4 * start:4 * (len(data) // 3)]
        if len(frag) >= B64_MIN:
            out.append(("base64", frag))
    return out


def patterns(secrets):
    """[(secret id, form, bytes)]"""
    return [(sid, name, b) for sid, pw in secrets for name, b in forms(pw)]


def identify(data, pats):
    """{(secret id, form)} found in data"""
    return {(sid, name) for sid, name, b in pats if b in data}


def add_findings(path, rows):
    if not rows:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        for row in rows:
            f.write("\t".join(row) + "\n")


def grep_hits(pats, targets, recursive, tmpdir):
    """files among targets (or below them) that hold any pattern"""
    if not pats or not targets:
        return []
    fd, patfile = tempfile.mkstemp(dir=tmpdir, prefix=".pat.")
    try:
        with os.fdopen(fd, "wb") as f:
            for _, _, b in pats:
                f.write(b + b"\n")
        cmd = ["grep", "-lZaF", "-D", "skip", "-f", patfile]
        if recursive:
            cmd.append("-r")
        cmd += ["--"] + targets
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           env=dict(os.environ, LC_ALL="C"))
        return [p.decode("utf-8", "surrogateescape") for p in r.stdout.split(b"\0") if p]
    finally:
        os.unlink(patfile)


def read_inputs(root):
    try:
        lines = open(os.path.join(root, ".secret-inputs"), encoding="utf-8",
                     errors="surrogateescape").read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        p = os.path.normpath(os.path.join(root, line))
        out.append(p)
    return out


def is_input(path, inputs):
    for p in inputs:
        if path == p or path.startswith(p.rstrip("/") + "/"):
            return True
    return False


def cmd_files(args):
    t0 = time.monotonic()
    root = os.path.normpath(args.dir)
    test = args.test or os.path.basename(root)
    secrets, _ = load_registry(args.registry)
    pats = patterns(secrets)
    inputs = read_inputs(root)
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            if os.path.isfile(p) and not os.path.islink(p) and not is_input(p, inputs):
                n += 1
    rows = []
    for p in grep_hits(pats, [root], True, os.path.dirname(args.registry)):
        if is_input(p, inputs):
            continue
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError:
            continue
        for sid, form in sorted(identify(data, pats)):
            rows.append(("file", "%s: %s" % (test, os.path.relpath(p, root)), sid, form))
    add_findings(args.findings, rows)
    if args.stats:
        with open(args.stats, "a") as f:
            f.write("files %s %d %d %.2f\n" % (test, n, len(rows), time.monotonic() - t0))
    print(n)


def cmd_paths(args):
    secrets, _ = load_registry(args.registry)
    pats = patterns(secrets)
    files = [p for p in args.paths if os.path.isfile(p)]
    rows = []
    for p in grep_hits(pats, files, False, os.path.dirname(args.registry)):
        with open(p, "rb") as f:
            lines = f.read().split(b"\n")
        for sid, form in sorted(identify(b"\n".join(lines), pats)):
            where = [str(i + 1) for i, l in enumerate(lines)
                     if any(b in l for s, nm, b in pats if s == sid and nm == form)]
            rows.append((args.kind, "%s line %s" % (p, ",".join(where[:5]) or "?"), sid, form))
    add_findings(args.findings, rows)
    print(len(files))


def read_proc(path):
    # os.open/os.read: half the CPU of open() per process
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    c = b""
    try:
        while True:
            d = os.read(fd, 65536)
            if not d:
                break
            c += d
    except OSError:
        pass
    finally:
        os.close(fd)
    return c


class Ownership:
    """is a process part of this run: the runner or one of our rigs' daemons
    among it and its ancestors"""

    def __init__(self, runner, rigs_file):
        self.runner = str(runner)
        self.rigs_file = rigs_file
        self.rigs = []
        self.mtime = None

    def refresh(self):
        try:
            m = os.stat(self.rigs_file).st_mtime_ns
        except OSError:
            return
        if m != self.mtime:
            self.mtime = m
            with open(self.rigs_file, "rb") as f:
                self.rigs = [l.rstrip(b"/") + b"/" for l in f.read().split(b"\n") if l.strip()]

    def ours(self, pid, cmdline):
        for _ in range(64):
            if pid == self.runner:
                return True
            if any(r in cmdline for r in self.rigs):
                return True
            stat = read_proc("/proc/%s/stat" % pid)
            if not stat:
                return False
            try:
                pid = stat[stat.rindex(b")") + 2:].split()[1].decode()
            except (ValueError, IndexError):
                return False
            if pid in ("0", "1"):
                return False
            cmdline = read_proc("/proc/%s/cmdline" % pid) or b""
        return False


def cmd_sample(args):
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    me = str(os.getpid())
    own = Ownership(args.runner, args.rigs)
    seen, known = set(), {}
    ticks = 0
    fd = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    out = os.fdopen(fd, "w")
    while not stop:
        ticks += 1
        new = []
        own.refresh()
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid == me:
                continue
            c = read_proc("/proc/" + pid + "/cmdline")
            if not c:
                continue
            # a process' ownership is asked once per command line it shows
            # (a few reads up its ancestors)
            flag = known.get((pid, c))
            if flag is None:
                flag = known[(pid, c)] = b"1" if own.ours(pid, c) else b"0"
            if (flag, c) not in seen:
                seen.add((flag, c))
                new.append(flag.decode() + " " + c.hex())
        if new:
            out.write("\n".join(new) + "\n")
            out.flush()
        time.sleep(args.interval)
    out.write("#ticks %d\n#seen %d\n" % (ticks, len(seen)))
    out.close()


def cmd_cmdlines(args):
    secrets, _ = load_registry(args.registry)
    pats = patterns(secrets)
    lines, ticks, foreign, rows = 0, 0, 0, []
    try:
        src = open(args.samples, encoding="ascii").read().splitlines()
    except FileNotFoundError:
        src = []
    for line in src:
        if line.startswith("#ticks "):
            ticks = int(line.split()[1])
            continue
        if line.startswith("#"):
            continue
        flag, _, hexc = line.partition(" ")
        c = bytes.fromhex(hexc)
        if flag != "1":
            if identify(c, pats):
                foreign += 1
            continue
        lines += 1
        for sid, form in sorted(identify(c, pats)):
            # the command line with every secret masked
            masked = c
            for s, nm, b in pats:
                masked = masked.replace(b, ("<%s>" % s.split(" ")[0]).encode())
            shown = masked.replace(b"\0", b" ").decode("utf-8", "replace").strip()
            rows.append(("cmdline", shown[:200], sid, form))
    add_findings(args.findings, rows)
    print(lines, ticks, foreign)


def cmd_registry(args):
    secrets, short = load_registry(args.registry)
    print(len(secrets), short)


def main():
    import argparse
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("files")
    p.add_argument("dir")
    p.add_argument("--registry", required=True)
    p.add_argument("--findings", required=True)
    p.add_argument("--stats")
    p.add_argument("--test")
    p.set_defaults(func=cmd_files)
    p = sub.add_parser("paths")
    p.add_argument("paths", nargs="*")
    p.add_argument("--registry", required=True)
    p.add_argument("--findings", required=True)
    p.add_argument("--kind", required=True)
    p.set_defaults(func=cmd_paths)
    p = sub.add_parser("sample")
    p.add_argument("out")
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--runner", required=True)
    p.add_argument("--rigs", required=True)
    p.set_defaults(func=cmd_sample)
    p = sub.add_parser("cmdlines")
    p.add_argument("samples")
    p.add_argument("--registry", required=True)
    p.add_argument("--findings", required=True)
    p.set_defaults(func=cmd_cmdlines)
    p = sub.add_parser("registry")
    p.add_argument("--registry", required=True)
    p.set_defaults(func=cmd_registry)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
