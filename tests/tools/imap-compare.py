#!/usr/bin/python3
"""imap-compare.py - compare two IMAP accounts folder by folder, message by message.

  imap-compare.py --src-host H --src-port P --src-user U [--src-password-env VAR]
                  --dest-host H --dest-port P --dest-user U [--dest-password-env VAR]
                  [options]

Folders: every selectable source folder is mapped to a destination name
(INBOX stays INBOX; the source namespace prefix is stripped, the name is
split on the source separator and joined with the destination's; --map
pairs win, and also map the children of SRC) and must exist there;
selectable destination folders nothing maps to are extra.  A destination
folder that only corresponds to a \\Noselect source parent is tolerated
when empty.  When a source folder carries a SPECIAL-USE attribute the
destination folder must carry the same one.

Messages: per folder, the multiset of messages identified by the sha256 of
BODY[] is compared, each with its flags (\\Recent ignored) and INTERNALDATE
(as an instant; time zones may differ).  Bodies are fetched with
UID FETCH in chunks (bounded count and bytes), so thousands of messages
are fine and memory stays small.

Output: one line per difference (folder, kind, hash prefix, UIDs, detail),
at most --max-report per folder, then a summary line starting with
"imap-compare: EQUAL" or "imap-compare: DIFFERENT".
Exit status: 0 equal, 1 different, 2 error.

Options:
  --src-prefix auto|STR   source personal namespace prefix (auto: NAMESPACE;
                          e.g. "INBOX." on Courier-style servers)
  --dest-prefix auto|STR
  --src-sep auto|C / --dest-sep auto|C   hierarchy separators (auto: LIST "" "")
  --map 'SRC=DEST'        folder pair (full names as each server shows them,
                          e.g. 'INBOX.Sent Items=Sent'); repeatable
  --escape-char C         destination separator characters inside a source
                          name component become C (as the migration does)
  --ignore-src-folder PAT / --ignore-dest-folder PAT   fnmatch patterns
                          (e.g. 'Trash*'); repeatable
  --allow-extra-dest-uid [FOLDER:]UID   a known extra destination message
                          (FOLDER defaults to INBOX); repeatable
  --allow-extra-dest-hash HEX           extra messages with this sha256
                          (prefix of at least 8 hex digits); repeatable
  --allow-extra-dest      tolerate any extra destination message
  --check-uids            matched messages must have the same UID and the
                          folders the same UIDVALIDITY
  --subscriptions         compare the (mapped) subscription lists too
  --no-flags / --no-dates / --no-special-use   skip those checks
  --ignore-keyword-case   compare keywords case-insensitively
  --max-report N          difference lines per folder (default 20)
  --chunk-bytes SIZE / --chunk-count N   UID FETCH chunk bounds (8M / 500)
  -q                      only the summary line
"""

import argparse
import concurrent.futures
import fnmatch
import hashlib
import imaplib
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import rigimap  # noqa: E402 (after the line above)
from rigimap import ToolError, check, qmailbox


def parse_size(s):
    s = s.strip().upper()
    for suf, m in (("K", 1024), ("M", 1024 ** 2), ("G", 1024 ** 3)):
        if s.endswith(suf):
            return int(float(s[:-1]) * m)
    return int(s)


class Msg:
    __slots__ = ("uid", "size", "flags", "date", "hash")

    def __init__(self, uid, size, flags, date):
        self.uid = uid
        self.size = size
        self.flags = flags
        self.date = date
        self.hash = None


class Side:
    """One logged-in account."""

    def __init__(self, args, which):
        self.which = which
        self.args = args
        pfx = which + "_"
        pw = rigimap.get_password(getattr(args, pfx + "password_env"),
                                  getattr(args, pfx + "password_file"))
        self.label = "%s %s@%s:%d" % (which, getattr(args, pfx + "user"),
                                      getattr(args, pfx + "host"), getattr(args, pfx + "port"))
        self.conn = rigimap.connect(getattr(args, pfx + "host"), getattr(args, pfx + "port"),
                                    getattr(args, pfx + "user"), pw, retries=10)
        sep = getattr(args, pfx + "sep")
        self.sep = rigimap.hierarchy_sep(self.conn) if sep == "auto" else sep
        prefix = getattr(args, pfx + "prefix")
        if prefix == "auto":
            prefix, _ = rigimap.personal_prefix(self.conn)
        self.prefix = prefix or ""
        self.mailboxes = rigimap.list_mailboxes(self.conn)
        self.subscribed = None
        if args.subscriptions:
            self.subscribed = set(m.name for m in rigimap.list_mailboxes(self.conn, subscribed=True))

    def messages(self, name, chunk_bytes, chunk_count):
        """(uidvalidity, [Msg]) of folder `name`, with hashes."""
        conn = self.conn
        typ, data = conn.select(qmailbox(name), readonly=True)
        if typ != "OK":
            raise ToolError("%s: cannot select %s: %s" % (self.label, name, data))
        uv = conn.untagged_responses.get("UIDVALIDITY", [None])[-1]
        exists = int(data[0] or 0)
        msgs = {}
        if exists:
            data = check(conn.uid("FETCH", "1:*", "(UID RFC822.SIZE FLAGS INTERNALDATE)"),
                         "%s: UID FETCH %s" % (self.label, name))
            for _seq, it in rigimap.fetch_items(data):
                if "UID" not in it or "INTERNALDATE" not in it:
                    continue
                uid = int(it["UID"])
                flags = frozenset(rigimap.astr(f) for f in (it.get("FLAGS") or [])
                                  if rigimap.astr(f).lower() != "\\recent")
                msgs[uid] = Msg(uid, int(it.get("RFC822.SIZE") or 0), flags,
                                rigimap.parse_imap_date(it["INTERNALDATE"]))
        uids = sorted(msgs)
        i = 0
        while i < len(uids):
            chunk = []
            nbytes = 0
            while i < len(uids) and len(chunk) < chunk_count and (
                    not chunk or nbytes + msgs[uids[i]].size <= chunk_bytes):
                chunk.append(uids[i])
                nbytes += msgs[uids[i]].size
                i += 1
            data = check(conn.uid("FETCH", ",".join(str(u) for u in chunk), "(BODY.PEEK[])"),
                         "%s: UID FETCH %s" % (self.label, name))
            for _seq, it in rigimap.fetch_items(data):
                if "UID" in it and "BODY[]" in it and int(it["UID"]) in msgs:
                    msgs[int(it["UID"])].hash = hashlib.sha256(it["BODY[]"] or b"").hexdigest()
            del data
        missing = [u for u in uids if msgs[u].hash is None]
        if missing:
            # expunged meanwhile, or a server that did not send the body
            raise ToolError("%s: no body for UIDs %s of %s" % (
                self.label, ",".join(map(str, missing[:10])), name))
        conn.close()
        return (int(uv) if uv else None), [msgs[u] for u in uids]

    def logout(self):
        try:
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def is_inbox(name):
    return name.upper() == "INBOX"


def map_name(args, src, dest, name):
    """Destination name of source folder `name`."""
    if is_inbox(name):
        return "INBOX"
    for s, d in args.map_pairs:
        if name == s:
            return d
        if src.sep and name.startswith(s + src.sep):
            rest = name[len(s) + 1:]
            return d + (dest.sep or "/") + convert(args, src, dest, rest)
    rel = name
    p = src.prefix
    if p and (name.startswith(p) or
              # the INBOX part of a prefix is case-insensitive
              (p[:5].upper() == "INBOX" and name[:5].upper() == "INBOX" and
               name[5:].startswith(p[5:]))):
        rel = name[len(p):]
    if is_inbox(rel):
        return "INBOX"
    return dest.prefix + convert(args, src, dest, rel)


def convert(args, src, dest, rel):
    parts = rel.split(src.sep) if src.sep else [rel]
    dsep = dest.sep or "/"
    if args.escape_char is not None:
        parts = [p.replace(dsep, args.escape_char) for p in parts]
    return dsep.join(parts)


def matches_any(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def norm_flags(args, flags):
    if args.ignore_keyword_case:
        return frozenset(f.lower() for f in flags)
    # system flags are case-insensitive by definition
    return frozenset(f.capitalize() if f.startswith("\\") else f for f in flags)


def fmt_flags(flags):
    return " ".join(sorted(flags)) or "-"


class Report:
    def __init__(self, args):
        self.args = args
        self.counts = {"missing_folder": 0, "extra_folder": 0, "special_use": 0,
                       "missing": 0, "extra": 0, "extra_allowed": 0, "differ": 0,
                       "uid": 0, "uidvalidity": 0, "subscription": 0}
        self.folder_lines = 0

    def line(self, text):
        if not self.args.quiet:
            print(text)

    def folder_diff(self, text):
        if not self.args.quiet:
            if self.folder_lines < self.args.max_report:
                print(text)
            elif self.folder_lines == self.args.max_report:
                print("  ... (more differences in this folder)")
        self.folder_lines += 1


def compare_folder(args, rep, dname, sname, s_msgs, d_msgs, allowed_uids):
    keyed = args.check_uids
    groups = {}
    for m in s_msgs:
        groups.setdefault(m.hash, ([], []))[0].append(m)
    for m in d_msgs:
        groups.setdefault(m.hash, ([], []))[1].append(m)

    def key(m):
        return (norm_flags(args, m.flags) if not args.no_flags else None,
                m.date if not args.no_dates else None,
                m.uid if keyed else None)

    for h in sorted(groups):
        s_list, d_list = groups[h]
        s_rest = []
        d_rest = list(d_list)
        for m in s_list:
            k = key(m)
            for j, dm in enumerate(d_rest):
                if key(dm) == k:
                    del d_rest[j]
                    break
            else:
                s_rest.append(m)
        # same body, different metadata
        while s_rest and d_rest:
            sm, dm = s_rest.pop(0), d_rest.pop(0)
            what = []
            if not args.no_flags and norm_flags(args, sm.flags) != norm_flags(args, dm.flags):
                what.append("flags %s -> %s" % (fmt_flags(sm.flags), fmt_flags(dm.flags)))
            if not args.no_dates and sm.date != dm.date:
                what.append("date %s -> %s" % (rigimap.fmt_utc(sm.date), rigimap.fmt_utc(dm.date)))
            if keyed and sm.uid != dm.uid:
                what.append("uid %d -> %d" % (sm.uid, dm.uid))
                rep.counts["uid"] += 1
            rep.counts["differ"] += 1
            rep.folder_diff("  %s: differs %s src uid %d, dest uid %d: %s" % (
                dname, h[:12], sm.uid, dm.uid, "; ".join(what)))
        for sm in s_rest:
            rep.counts["missing"] += 1
            rep.folder_diff("  %s: missing %s src uid %d (%d bytes; %s; %s)" % (
                dname, h[:12], sm.uid, sm.size, fmt_flags(sm.flags), rigimap.fmt_utc(sm.date)))
        for dm in d_rest:
            allowed = (args.allow_extra_dest or dm.uid in allowed_uids or
                       any(h.startswith(p) for p in args.allow_hashes))
            if allowed:
                rep.counts["extra_allowed"] += 1
                rep.folder_diff("  %s: extra (allowed) %s dest uid %d" % (dname, h[:12], dm.uid))
            else:
                rep.counts["extra"] += 1
                rep.folder_diff("  %s: extra %s dest uid %d (%d bytes; %s; %s)" % (
                    dname, h[:12], dm.uid, dm.size, fmt_flags(dm.flags),
                    rigimap.fmt_utc(dm.date)))


def run(args):
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        fs = ex.submit(Side, args, "src")
        fd = ex.submit(Side, args, "dest")
        src, dest = fs.result(), fd.result()
    rep = Report(args)

    src_sel = [m for m in src.mailboxes if m.selectable and not matches_any(m.name, args.ignore_src)]
    src_noselect = [m for m in src.mailboxes if not m.selectable]
    dest_sel = {m.name: m for m in dest.mailboxes
                if m.selectable and not matches_any(m.name, args.ignore_dest)}
    # dest names are case-sensitive except INBOX
    if "INBOX" not in dest_sel:
        for n in list(dest_sel):
            if is_inbox(n):
                dest_sel["INBOX"] = dest_sel.pop(n)

    pairs = []
    seen = {}
    for m in src_sel:
        d = map_name(args, src, dest, m.name)
        if d in seen:
            raise ToolError("source folders %r and %r both map to %r" % (seen[d], m.name, d))
        seen[d] = m.name
        pairs.append((m, d))
    noselect_mapped = set(map_name(args, src, dest, m.name) for m in src_noselect)

    allowed_uids = {}
    for spec in args.allow_extra_dest_uid:
        folder, _, uid = spec.rpartition(":")
        allowed_uids.setdefault(folder or "INBOX", set()).add(int(uid))

    total_src = total_dest = 0
    compared = 0
    for m, d in sorted(pairs, key=lambda p: p[1]):
        dm = dest_sel.get(d)
        if dm is None:
            if matches_any(d, args.ignore_dest):
                continue
            rep.counts["missing_folder"] += 1
            rep.line("missing folder: %s (source %s)" % (d, m.name))
            continue
        if not args.no_special_use:
            su = m.special_use()
            if su and (dm.special_use() or "").lower() != su.lower():
                rep.counts["special_use"] += 1
                rep.line("special-use: %s is %s at the source, %s at the destination" % (
                    d, su, dm.special_use() or "none"))
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            fs = ex.submit(src.messages, m.name, args.chunk_bytes, args.chunk_count)
            fd = ex.submit(dest.messages, d, args.chunk_bytes, args.chunk_count)
            (s_uv, s_msgs), (d_uv, d_msgs) = fs.result(), fd.result()
        total_src += len(s_msgs)
        total_dest += len(d_msgs)
        compared += 1
        rep.folder_lines = 0
        if args.check_uids and s_uv != d_uv:
            rep.counts["uidvalidity"] += 1
            rep.line("  %s: UIDVALIDITY %s -> %s" % (d, s_uv, d_uv))
        compare_folder(args, rep, d, m.name, s_msgs, d_msgs, allowed_uids.get(d, set()))

    mapped = set(d for _, d in pairs)
    for name in sorted(dest_sel):
        if name in mapped:
            continue
        if name in noselect_mapped:
            typ, data = dest.conn.select(qmailbox(name), readonly=True)
            if typ == "OK" and int(data[0] or 0) == 0:
                dest.conn.close()
                continue
        rep.counts["extra_folder"] += 1
        rep.line("extra folder: %s" % name)

    if args.subscriptions:
        want = set()
        for n in src.subscribed:
            if not matches_any(n, args.ignore_src):
                want.add(map_name(args, src, dest, n))
        have = set(n for n in dest.subscribed if not matches_any(n, args.ignore_dest))
        for n in sorted(want - have):
            rep.counts["subscription"] += 1
            rep.line("not subscribed: %s" % n)
        for n in sorted(have - want):
            rep.counts["subscription"] += 1
            rep.line("extra subscription: %s" % n)

    src.logout()
    dest.logout()
    c = rep.counts
    bad = sum(v for k, v in c.items() if k != "extra_allowed")
    detail = ("folders %d compared (%d missing, %d extra, %d special-use); "
              "messages %d src / %d dest (%d missing, %d extra, %d extra allowed, %d differ)" % (
                  compared, c["missing_folder"], c["extra_folder"], c["special_use"],
                  total_src, total_dest, c["missing"], c["extra"], c["extra_allowed"], c["differ"]))
    if args.check_uids:
        detail += "; uid %d, uidvalidity %d" % (c["uid"], c["uidvalidity"])
    if args.subscriptions:
        detail += "; subscriptions %d" % c["subscription"]
    print("imap-compare: %s: %s; %.1f s" % ("EQUAL" if bad == 0 else "DIFFERENT", detail,
                                          time.time() - t0))
    return 0 if bad == 0 else 1


def main():
    ap = argparse.ArgumentParser(description="compare two IMAP accounts",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    rigimap.add_conn_args(ap, "src-", "of the source ")
    rigimap.add_conn_args(ap, "dest-", "of the destination ")
    ap.set_defaults(src_password_env="SRC_IMAP_PASSWORD", dest_password_env="DEST_IMAP_PASSWORD")
    ap.add_argument("--src-prefix", default="auto")
    ap.add_argument("--dest-prefix", default="auto")
    ap.add_argument("--src-sep", default="auto")
    ap.add_argument("--dest-sep", default="auto")
    ap.add_argument("--map", action="append", default=[])
    ap.add_argument("--escape-char")
    ap.add_argument("--ignore-src-folder", dest="ignore_src", action="append", default=[])
    ap.add_argument("--ignore-dest-folder", dest="ignore_dest", action="append", default=[])
    ap.add_argument("--allow-extra-dest-uid", action="append", default=[])
    ap.add_argument("--allow-extra-dest-hash", dest="allow_hashes", action="append", default=[])
    ap.add_argument("--allow-extra-dest", action="store_true")
    ap.add_argument("--check-uids", action="store_true")
    ap.add_argument("--subscriptions", action="store_true")
    ap.add_argument("--no-flags", action="store_true")
    ap.add_argument("--no-dates", action="store_true")
    ap.add_argument("--no-special-use", action="store_true")
    ap.add_argument("--ignore-keyword-case", action="store_true")
    ap.add_argument("--max-report", type=int, default=20)
    ap.add_argument("--chunk-bytes", type=parse_size, default=parse_size("8M"))
    ap.add_argument("--chunk-count", type=int, default=500)
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    try:
        sys.stdout.reconfigure(encoding="utf-8", line_buffering=True)
    except AttributeError:
        pass
    args.map_pairs = []
    for m in args.map:
        if "=" not in m:
            rigimap.die("--map wants SRC=DEST, got %r" % m)
        s, d = m.split("=", 1)
        args.map_pairs.append((s, d))
    for h in args.allow_hashes:
        if len(h) < 8 or any(c not in "0123456789abcdef" for c in h.lower()):
            rigimap.die("--allow-extra-dest-hash wants at least 8 hex digits, got %r" % h)
    args.allow_hashes = [h.lower() for h in args.allow_hashes]
    for spec in args.allow_extra_dest_uid:
        if not spec.rpartition(":")[2].isdigit():
            rigimap.die("--allow-extra-dest-uid wants [FOLDER:]UID, got %r" % spec)
    if args.escape_char is not None and len(args.escape_char) != 1:
        rigimap.die("--escape-char wants one character")
    try:
        return run(args)
    except (ToolError, imaplib.IMAP4.error, OSError) as exc:
        print("imap-compare: ERROR: %s" % exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
