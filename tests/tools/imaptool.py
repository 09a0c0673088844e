#!/usr/bin/python3
"""imaptool.py - small IMAP client for the integration tests.

Common options (before the subcommand):
  --host H (127.0.0.1) --port P (143) --user U
  --password-env VAR (default IMAP_PASSWORD) | --password-file FILE

Folder names are given and printed in UTF-8 (full names, with the
server's separator and namespace prefix, e.g. "INBOX.Work" on a
Courier-style server); modified UTF-7 is handled here.

Subcommands:
  capability                       capabilities after login, one line
  list [--subscribed] [--long] [PATTERN]
                                   folder names (--long: attributes TAB
                                   separator TAB name)
  create FOLDER [--special-use \\Sent]
  subscribe FOLDER [--unsubscribe]
  delete-folder FOLDER
  rename-folder OLD NEW
  count FOLDER                     number of messages
  status FOLDER                    MESSAGES UIDNEXT UIDVALIDITY UNSEEN
                                   [HIGHESTMODSEQ]
  uids FOLDER                      the UIDs, one a line
  append [--create] [--flags F] [--date D] FOLDER FILE...   (- = stdin)
                                   prints the APPENDUID uid when given
  expunge FOLDER (--uids SET | --first N | --all)
  set-flags FOLDER (--uids SET | --first N | --all) --flags F
                  [--mode replace|add|remove]
  fetch-hash FOLDER [--uids SET]   "UID SHA256 SIZE INTERNALDATE(UTC) FLAGS"
  fetch FOLDER UID                 the raw message on stdout

Exit status: 0 ok, 1 the server said NO, 2 usage/connection errors.
"""

import argparse
import hashlib
import imaplib
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import rigimap  # noqa: E402 (after the line above)
from rigimap import ToolError, check, qmailbox, quote


def select(conn, folder, readonly=False):
    typ, data = conn.select(qmailbox(folder), readonly=readonly)
    if typ != "OK":
        raise NoError("cannot select %s: %s" % (folder, data))
    return int(data[0] or 0)


class NoError(Exception):
    """The server refused (exit 1)."""


def simple(conn, cmd, *args):
    typ, data = conn._simple_command(cmd, *args)
    if typ != "OK":
        raise NoError("%s %s: %s %s" % (cmd, " ".join(args), typ,
                                       b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")))
    return data


def uid_list(conn):
    data = check(conn.uid("SEARCH", "ALL"), "UID SEARCH")
    out = []
    for d in data:
        if d:
            out.extend(int(x) for x in d.split())
    return sorted(out)


def uid_set(uids):
    """Compress a sorted UID list into an IMAP set (1:5,7)."""
    parts = []
    start = prev = None
    for u in uids:
        if start is None:
            start = prev = u
        elif u == prev + 1:
            prev = u
        else:
            parts.append("%d" % start if start == prev else "%d:%d" % (start, prev))
            start = prev = u
    if start is not None:
        parts.append("%d" % start if start == prev else "%d:%d" % (start, prev))
    return ",".join(parts)


def target_set(conn, args):
    if args.uids:
        return args.uids
    uids = uid_list(conn)
    if args.first is not None:
        uids = uids[:args.first]
    return uid_set(uids)


def cmd_capability(conn, args):
    print(" ".join(sorted(rigimap.capabilities(conn))))


def cmd_list(conn, args):
    for mb in rigimap.list_mailboxes(conn, args.pattern, subscribed=args.subscribed):
        if args.long:
            print("%s\t%s\t%s" % (" ".join(mb.flags), mb.sep or "NIL", mb.name))
        else:
            print(mb.name)


def cmd_create(conn, args):
    if args.special_use:
        simple(conn, "CREATE", qmailbox(args.folder), "(USE (%s))" % args.special_use)
    else:
        simple(conn, "CREATE", qmailbox(args.folder))


def cmd_subscribe(conn, args):
    simple(conn, "UNSUBSCRIBE" if args.unsubscribe else "SUBSCRIBE", qmailbox(args.folder))


def cmd_delete(conn, args):
    simple(conn, "DELETE", qmailbox(args.folder))


def cmd_rename(conn, args):
    simple(conn, "RENAME", qmailbox(args.old), qmailbox(args.new))


def status(conn, folder):
    caps = rigimap.capabilities(conn)
    items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"]
    if "CONDSTORE" in caps:
        items.append("HIGHESTMODSEQ")
    data = simple(conn, "STATUS", qmailbox(folder), "(%s)" % " ".join(items))
    data = conn._untagged_response("OK", data, "STATUS")[1]
    for resp in rigimap.parse_untagged(data):
        if len(resp) >= 2 and isinstance(resp[1], list):
            lst = resp[1]
            return [(rigimap.astr(lst[i]).upper(), rigimap.astr(lst[i + 1]))
                    for i in range(0, len(lst) - 1, 2)]
    raise ToolError("no STATUS reply for %s" % folder)


def cmd_count(conn, args):
    print(dict(status(conn, args.folder))["MESSAGES"])


def cmd_status(conn, args):
    print(" ".join("%s %s" % kv for kv in status(conn, args.folder)))


def cmd_uids(conn, args):
    select(conn, args.folder, readonly=True)
    for u in uid_list(conn):
        print(u)


def cmd_append(conn, args):
    if args.create:
        typ, _ = conn._simple_command("CREATE", qmailbox(args.folder))
        # NO [ALREADYEXISTS] is fine
    flags = args.flags.strip() if args.flags else ""
    for fn in args.files:
        if fn == "-":
            msg = sys.stdin.buffer.read()
        else:
            with open(fn, "rb") as f:
                msg = f.read()
        typ, data = conn.append(qmailbox(args.folder), "(%s)" % flags if flags else None,
                                quote(args.date) if args.date else None, msg)
        if typ != "OK":
            raise NoError("APPEND %s: %s" % (args.folder, data))
        text = data[0].decode("utf-8", "replace") if data and data[0] else ""
        if "[APPENDUID " in text.upper():
            print(text.split("]")[0].split()[-1])


def cmd_expunge(conn, args):
    select(conn, args.folder)
    s = target_set(conn, args)
    if not s:
        return
    check(conn.uid("STORE", s, "+FLAGS.SILENT", r"(\Deleted)"), "UID STORE")
    if "UIDPLUS" in rigimap.capabilities(conn):
        check(conn.uid("EXPUNGE", s), "UID EXPUNGE")
    else:
        check(conn.expunge(), "EXPUNGE")


def cmd_set_flags(conn, args):
    select(conn, args.folder)
    s = target_set(conn, args)
    if not s:
        return
    op = {"replace": "FLAGS.SILENT", "add": "+FLAGS.SILENT", "remove": "-FLAGS.SILENT"}[args.mode]
    check(conn.uid("STORE", s, op, "(%s)" % args.flags.strip()), "UID STORE")


def fetch_chunks(conn, uids, items, max_count=500):
    for i in range(0, len(uids), max_count):
        chunk = uids[i:i + max_count]
        data = check(conn.uid("FETCH", uid_set(chunk), items), "UID FETCH")
        for _seq, it in rigimap.fetch_items(data):
            yield it


def cmd_fetch_hash(conn, args):
    select(conn, args.folder, readonly=True)
    if args.uids:
        data = check(conn.uid("SEARCH", "UID", args.uids), "UID SEARCH")
        uids = sorted(int(x) for d in data if d for x in d.split())
    else:
        uids = uid_list(conn)
    rows = []
    for it in fetch_chunks(conn, uids, "(UID FLAGS INTERNALDATE BODY.PEEK[])", 200):
        if "UID" not in it or "BODY[]" not in it:
            continue
        body = it["BODY[]"] or b""
        flags = sorted(rigimap.astr(f) for f in (it.get("FLAGS") or [])
                       if rigimap.astr(f).lower() != "\\recent")
        rows.append((int(it["UID"]), hashlib.sha256(body).hexdigest(), len(body),
                     rigimap.fmt_utc(rigimap.parse_imap_date(it["INTERNALDATE"])),
                     " ".join(flags)))
    for r in sorted(rows):
        print("%d %s %d %s %s" % r)


def cmd_fetch(conn, args):
    select(conn, args.folder, readonly=True)
    data = check(conn.uid("FETCH", str(args.uid), "(BODY.PEEK[])"), "UID FETCH")
    for _seq, it in rigimap.fetch_items(data):
        if it.get("UID") == str(args.uid) and "BODY[]" in it:
            sys.stdout.buffer.write(it["BODY[]"] or b"")
            return
    raise NoError("no message with UID %d in %s" % (args.uid, args.folder))


def main():
    ap = argparse.ArgumentParser(description="IMAP helper for the tests",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    rigimap.add_conn_args(ap)
    sub = ap.add_subparsers(dest="cmd", required=True)

    sub.add_parser("capability").set_defaults(fn=cmd_capability)

    p = sub.add_parser("list")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--subscribed", action="store_true")
    p.add_argument("--long", action="store_true")
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("create")
    p.add_argument("folder")
    p.add_argument("--special-use")
    p.set_defaults(fn=cmd_create)

    p = sub.add_parser("subscribe")
    p.add_argument("folder")
    p.add_argument("--unsubscribe", action="store_true")
    p.set_defaults(fn=cmd_subscribe)

    p = sub.add_parser("delete-folder")
    p.add_argument("folder")
    p.set_defaults(fn=cmd_delete)

    p = sub.add_parser("rename-folder")
    p.add_argument("old")
    p.add_argument("new")
    p.set_defaults(fn=cmd_rename)

    for name, fn in (("count", cmd_count), ("status", cmd_status), ("uids", cmd_uids)):
        p = sub.add_parser(name)
        p.add_argument("folder")
        p.set_defaults(fn=fn)

    p = sub.add_parser("append")
    p.add_argument("folder")
    p.add_argument("files", nargs="+")
    p.add_argument("--flags", default="")
    p.add_argument("--date", help='INTERNALDATE, e.g. "01-Jan-2013 10:00:00 +0000"')
    p.add_argument("--create", action="store_true", help="create the folder first")
    p.set_defaults(fn=cmd_append)

    for name, fn in (("expunge", cmd_expunge), ("set-flags", cmd_set_flags)):
        p = sub.add_parser(name)
        p.add_argument("folder")
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--uids", help="UID set, e.g. 1:3,7")
        g.add_argument("--first", type=int, help="the first N messages")
        g.add_argument("--all", action="store_true")
        if name == "set-flags":
            p.add_argument("--flags", required=True)
            p.add_argument("--mode", choices=("replace", "add", "remove"), default="replace")
        p.set_defaults(fn=fn)

    p = sub.add_parser("fetch-hash")
    p.add_argument("folder")
    p.add_argument("--uids")
    p.set_defaults(fn=cmd_fetch_hash)

    p = sub.add_parser("fetch")
    p.add_argument("folder")
    p.add_argument("uid", type=int)
    p.set_defaults(fn=cmd_fetch)

    args = ap.parse_args()
    try:
        sys.stdout.reconfigure(encoding="utf-8")
    except AttributeError:
        pass
    try:
        conn = rigimap.connect_args(args)
        try:
            args.fn(conn, args)
        finally:
            try:
                conn.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
    except NoError as exc:
        rigimap.die(str(exc), 1)
    except (ToolError, imaplib.IMAP4.error, OSError) as exc:
        rigimap.die(str(exc), 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
