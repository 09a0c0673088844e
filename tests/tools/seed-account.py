#!/usr/bin/python3
"""seed-account.py - one fixed mail account, seeded the same way on any IMAP
server; and a snapshot of an account to compare accounts with each other.

  seed-account.py --port P --user U [--password-env VAR] seed [--extra LABEL=NAME]...
  seed-account.py --port P --user U [--password-env VAR] snapshot
                  [--rename NAME=LABEL]... [--system-flags] [--no-dates]
                  [--rename NAME=LABEL]...

seed: creates the folders below under the server's personal namespace
(prefix and separator from NAMESPACE / LIST "" "") and APPENDs a fixed set of
messages (same bytes, flags and INTERNALDATEs on every server):

  INBOX                       plain, multipart/alternative, 8-bit body
  Old Projects                (parent, with messages)
  Old Projects/Q1 2024        a multipart/mixed with a ~2 MB attachment
  Relatórios                  non-ASCII (Latin)
  Área de Trabalho/Notas      non-ASCII parent and child
  日本語の資料                 CJK
  a_b                         the destination's escape character

Flags used: \\Seen \\Answered \\Flagged \\Draft $Forwarded and the keywords
ProjectX, $Label1; INTERNALDATEs from 2009 to 2025 in several zones.
--extra LABEL=NAME creates NAME (a full name as the server shows it, e.g.
"INBOX.Inbox") with two messages of its own, derived from LABEL (the same
LABEL gives the same messages on every server): for folders only some
servers allow, such as the ones that collide when migrated.

snapshot: one line per message, sorted: FOLDER<TAB>sha256(BODY[])<TAB>
FLAGS<TAB>INTERNALDATE (UTC); \\Recent is left out.  --rename NAME=LABEL
prints folder NAME as LABEL (a renamed collision folder); --system-flags
leaves keywords out, --no-dates prints "-" for the date (to compare with a
server that keeps neither).
"""

import argparse
import hashlib
import sys
import time

sys.dont_write_bytecode = True
import rigimap  # noqa: E402
from rigimap import ToolError, check, qmailbox  # noqa: E402

BIG_SIZE = 2 * 1024 * 1024


def crlf(text):
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def plain(n, subject, body, frm="alice@example.org"):
    return crlf("From: %s\nTo: carol@example.com\nSubject: %s\n"
                "Message-ID: <seed-%s@example.org>\nDate: Mon, 1 Jan 2018 10:00:00 +0000\n"
                "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n%s\n"
                % (frm, subject, n, body))


def eightbit(n):
    return crlf("From: =?UTF-8?Q?Jos=C3=A9_Gon=C3=A7alves?= <jose@example.org>\n"
                "To: carol@example.com\n"
                "Subject: =?UTF-8?B?UmVsYXTDs3JpbyBkZSBtYXLDp28=?=\n"
                "Message-ID: <seed-%s@example.org>\nDate: Tue, 2 Mar 2021 08:00:00 -0300\n"
                "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                "Content-Transfer-Encoding: 8bit\n\n"
                "Olá, segue o relatório de março.\nÁrea de Trabalho — 日本語の資料\n" % n)


def alternative(n):
    return crlf("From: news@example.net\nTo: carol@example.com\nSubject: Newsletter %s\n"
                "Message-ID: <seed-%s@example.org>\nDate: Wed, 3 Apr 2019 12:00:00 +0200\n"
                "MIME-Version: 1.0\n"
                "Content-Type: multipart/alternative; boundary=\"alt-%s\"\n\n"
                "This is a multi-part message in MIME format.\n"
                "--alt-%s\nContent-Type: text/plain; charset=us-ascii\n\nPlain part %s.\n"
                "--alt-%s\nContent-Type: text/html; charset=us-ascii\n\n"
                "<html><body><p>HTML part %s.</p></body></html>\n"
                "--alt-%s--\n" % (n, n, n, n, n, n, n, n))


def mixed(n, attachment_bytes, name="report.bin"):
    import base64
    b64 = base64.encodebytes(attachment_bytes).decode("ascii")
    return crlf("From: bob@example.org\nTo: carol@example.com\nSubject: Attachment %s\n"
                "Message-ID: <seed-%s@example.org>\nDate: Thu, 4 Jan 2024 09:30:00 +0000\n"
                "MIME-Version: 1.0\n"
                "Content-Type: multipart/mixed; boundary=\"mix-%s\"\n\n"
                "--mix-%s\nContent-Type: multipart/alternative; boundary=\"inner-%s\"\n\n"
                "--inner-%s\nContent-Type: text/plain; charset=us-ascii\n\nSee attached.\n"
                "--inner-%s\nContent-Type: text/html; charset=us-ascii\n\n<p>See attached.</p>\n"
                "--inner-%s--\n"
                "--mix-%s\nContent-Type: application/octet-stream; name=\"%s\"\n"
                "Content-Disposition: attachment; filename=\"%s\"\n"
                "Content-Transfer-Encoding: base64\n\n%s"
                "--mix-%s--\n" % (n, n, n, n, n, n, n, n, n, name, name, b64, n))


def pseudo_random_bytes(label, size):
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(("%s/%d" % (label, counter)).encode()).digest()
        counter += 1
    return bytes(out[:size])


# (folder components, [(message, flags, INTERNALDATE)])
def corpus():
    big = mixed("big", pseudo_random_bytes("big", BIG_SIZE * 3 // 4), "archive.bin")
    return [
        ((), [
            (plain(1, "Welcome", "First message."), r"\Seen", "15-Mar-2009 08:15:00 +0000"),
            (plain(2, "Re: Lunch", "Sure."), r"\Seen \Answered", "01-Jul-2012 13:00:00 -0300"),
            (plain(3, "Important", "Flagged."), r"\Flagged", "29-Feb-2016 23:59:59 +0530"),
            (plain(4, "Unfinished", "Draft text."), r"\Draft \Seen", "31-Dec-2019 12:00:00 +0100"),
            (plain(5, "Fwd: invoice", "Forwarded."), r"\Seen $Forwarded", "10-Oct-2020 10:10:10 +0000"),
            (plain(6, "Labels", "Keywords."), r"\Seen ProjectX $Label1", "05-May-2023 05:05:05 -0700"),
            (plain(7, "Unread", "Not seen yet."), "", "01-Jan-2025 00:00:00 +0000"),
            (alternative(8), r"\Seen \Flagged $Forwarded", "03-Apr-2019 12:00:00 +0200"),
            (eightbit(9), r"\Seen \Answered ProjectX", "02-Mar-2021 08:00:00 -0300"),
        ]),
        (("Old Projects",), [
            (plain(10, "Kickoff", "Old project kickoff."), r"\Seen", "20-Jan-2014 09:00:00 +0000"),
            (mixed(11, pseudo_random_bytes("small", 3000)), r"\Seen \Answered", "04-Jan-2024 09:30:00 +0000"),
        ]),
        (("Old Projects", "Q1 2024"), [
            (big, r"\Seen \Flagged", "15-Feb-2024 16:45:00 +0000"),
            (plain(12, "Q1 numbers", "Numbers."), "ProjectX", "31-Mar-2024 18:00:00 +0000"),
        ]),
        (("Relatórios",), [
            (plain(13, "Relatorio anual", "Anual."), r"\Seen", "12-Dec-2022 10:00:00 +0000"),
            (eightbit(14), r"\Seen $Label1", "02-Mar-2021 08:00:00 -0300"),
        ]),
        (("Área de Trabalho",), [
            (plain(15, "Desk", "On the desk."), r"\Answered", "07-Jun-2017 07:00:00 +0000"),
        ]),
        (("Área de Trabalho", "Notas"), [
            (plain(16, "Nota 1", "Nota."), r"\Seen \Draft", "08-Aug-2018 08:08:08 +0000"),
        ]),
        (("日本語の資料",), [
            (plain(17, "Shiryou", "Documents."), r"\Seen", "09-Sep-2011 09:09:09 +0900"),
            (alternative(18), "", "10-Nov-2015 11:11:11 +0900"),
        ]),
        (("a_b",), [
            (plain(19, "underscore", "In a_b."), r"\Seen", "11-Nov-2011 11:11:11 +0000"),
        ]),
    ]


def extra_messages(label):
    return [
        (plain("x1-" + label, "Extra %s" % label, "Only in %s." % label),
         r"\Seen", "06-Jun-2013 06:06:06 +0000"),
        (plain("x2-" + label, "Extra 2 %s" % label, "Second in %s." % label),
         r"\Flagged", "07-Jul-2022 07:07:07 +0000"),
    ]


def create(conn, name):
    typ, data = conn._simple_command("CREATE", qmailbox(name))
    if typ != "OK":
        text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        if "ALREADYEXISTS" not in text.upper() and "exist" not in text.lower():
            raise ToolError("CREATE %s: %s %s" % (name, typ, text))


def append(conn, name, msgs, keep_flags):
    """APPEND msgs to the (new) folder, then set the flags with STORE on
    the messages where the server dropped APPEND's flags (GNU mailutils'
    maildir does); returns how many needed that."""
    for msg, flags, date in msgs:
        rigimap.append_one(conn, name, keep_flags(flags), date, msg)
    check(conn.select(qmailbox(name)), "SELECT %s" % name)
    data = check(conn.fetch("1:*", "(FLAGS)"), "FETCH FLAGS")
    got = {seq: sorted(rigimap.astr(f) for f in (it.get("FLAGS") or [])
                       if rigimap.astr(f).lower() != "\\recent")
           for seq, it in rigimap.fetch_items(data)}
    fixed = 0
    for seq, (_msg, flags, _date) in enumerate(msgs, 1):
        want = sorted(keep_flags(flags).split())
        if got.get(seq) != want:
            check(conn.store(str(seq), "FLAGS.SILENT", "(%s)" % " ".join(want)), "STORE")
            fixed += 1
    conn.close()
    return fixed


def keywords_allowed(conn):
    """False when the server only keeps system flags (PERMANENTFLAGS
    without \\*, as GNU mailutils' imap4d): keywords are then left out of
    the seed, which would otherwise fail (its APPEND answers BAD)."""
    check(conn.select("INBOX"), "SELECT INBOX")
    ok = any(b"\\*" in r for r in conn.untagged_responses.get("OK", [])
             if b"PERMANENTFLAGS" in r.upper())
    conn.close()
    return ok


def system_flags(flags):
    return " ".join(f for f in flags.split() if f.startswith("\\"))


def cmd_seed(conn, args):
    prefix, sep = rigimap.personal_prefix(conn)
    sep = sep or rigimap.hierarchy_sep(conn) or "/"
    prefix = prefix or ""
    stored = 0
    keep_flags = lambda flags: flags  # noqa: E731
    if not keywords_allowed(conn):
        print("the server keeps no keywords: seeding system flags only")
        keep_flags = system_flags
    for comps, msgs in corpus():
        name = "INBOX" if not comps else prefix + sep.join(comps)
        if comps:
            create(conn, name)
        stored += append(conn, name, msgs, keep_flags)
    for spec in args.extra:
        label, _, name = spec.partition("=")
        create(conn, name)
        stored += append(conn, name, extra_messages(label), keep_flags)
    if stored:
        print("the server dropped APPEND's flags: set by STORE on %d messages" % stored)
    print("seeded with prefix %r, separator %r" % (prefix, sep))


def cmd_snapshot(conn, args):
    rename = dict(r.split("=", 1) for r in args.rename)
    rows = []
    for mb in rigimap.list_mailboxes(conn, "*"):
        if not mb.selectable:
            continue
        check(conn.select(qmailbox(mb.name), readonly=True), "SELECT %s" % mb.name)
        data = check(conn.uid("SEARCH", "ALL"), "UID SEARCH")
        uids = [x for d in data if d for x in d.split()]
        folder = rename.get(mb.name, mb.name)
        for i in range(0, len(uids), 100):
            chunk = b",".join(uids[i:i + 100]).decode()
            data = check(conn.uid("FETCH", chunk, "(FLAGS INTERNALDATE BODY.PEEK[])"), "FETCH")
            for _seq, it in rigimap.fetch_items(data):
                if "BODY[]" not in it:
                    continue
                flags = sorted(rigimap.astr(f) for f in (it.get("FLAGS") or [])
                               if rigimap.astr(f).lower() != "\\recent")
                if args.system_flags:
                    flags = [f for f in flags if f.startswith("\\")]
                date = "-" if args.no_dates else \
                    rigimap.fmt_utc(rigimap.parse_imap_date(it["INTERNALDATE"]))
                rows.append("%s\t%s\t%s\t%s" % (
                    folder, hashlib.sha256(it["BODY[]"] or b"").hexdigest(),
                    " ".join(flags), date))
        conn.close()
    for r in sorted(rows):
        print(r)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    rigimap.add_conn_args(ap)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("seed")
    p.add_argument("--extra", action="append", default=[])
    p.set_defaults(fn=cmd_seed)
    p = sub.add_parser("snapshot")
    p.add_argument("--rename", action="append", default=[])
    p.add_argument("--system-flags", action="store_true", help="leave keywords out")
    p.add_argument("--no-dates", action="store_true", help='print "-" as the date')
    p.set_defaults(fn=cmd_snapshot)
    args = ap.parse_args()
    try:
        conn = rigimap.connect_args(args)
        args.fn(conn, args)
        conn.logout()
    except ToolError as exc:
        rigimap.die("seed-account.py: %s" % exc)


if __name__ == "__main__":
    main()
