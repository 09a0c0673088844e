#!/usr/bin/python3
"""gen-corpus.py - seed one IMAP account with a deterministic test corpus.

  gen-corpus.py --host H --port P --user U [--password-env VAR | --password-file F]
                [--seed S] [--messages N] [--max-size 3M] [--connections 2]
                [--manifest FILE] [--prefix auto|STR] [--no-subscribe]
  gen-corpus.py --dry-run [--seed S] [--messages N] ...   (no server: prints
                the manifest, to check reproducibility)

The same --seed/--messages/--max-size/--since/--until give byte-identical
messages, flags, INTERNALDATEs and per-folder order (hence UIDs on a fresh
account).  Folders: INBOX, Work, Work/Projects, Work/Projects/2021,
Relatórios, Ação/Caixa (its parent Ação is not created: a \\Noselect
parent on servers that have them), 日本語, "Old Stuff", "Family & Friends",
Sent, Drafts, Trash, Junk, Archive, Archive/2013 and an empty "Empty";
names are built with the server's separator and personal namespace prefix
(INBOX. on Courier-style servers).  Sizes are mostly 1-16 KB, some up to
300 KB, about 1% large (up to --max-size); MIME with base64 attachments,
quoted-printable and 8-bit UTF-8 bodies.  Flags: \\Seen \\Flagged \\Answered
\\Draft and the keywords $Forwarded $Junk project-x Important-2 (never
\\Deleted).  Loading uses MULTIAPPEND with LITERAL+ (one command per batch)
over several connections, one folder per connection at a time.

The manifest has one line per message, sorted:
  FOLDER<TAB>SHA256<TAB>SIZE<TAB>INTERNALDATE(UTC)<TAB>FLAGS
"""

import argparse
import base64
import binascii
import calendar
import hashlib
import imaplib
import random
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import rigimap  # noqa: E402 (after the line above)
from rigimap import ToolError

# (components, weight, kind)
FOLDERS = [
    (("INBOX",), 40, "inbox"),
    (("Work",), 6, "work"),
    (("Work", "Projects"), 4, "work"),
    (("Work", "Projects", "2021"), 4, "work"),
    (("Relatórios",), 4, "plain"),
    (("Ação", "Caixa"), 3, "plain"),
    (("日本語",), 2, "plain"),
    (("Old Stuff",), 3, "plain"),
    (("Family & Friends",), 2, "plain"),
    (("Sent",), 10, "sent"),
    (("Drafts",), 2, "drafts"),
    (("Trash",), 3, "plain"),
    (("Junk",), 3, "junk"),
    (("Archive",), 8, "archive"),
    (("Archive", "2013"), 3, "archive"),
    (("Empty",), 0, "plain"),
]
# parents that are deliberately not created
IMPLICIT_PARENTS = [("Ação",)]

WORDS = ("the of and to in is that for it as was with be by on not he this are "
         "or his from at which but have an they you were her she there been one "
         "all we their has would when if so no will more about can said up out "
         "report meeting budget schedule server mailbox migration quarterly "
         "invoice project deadline review draft attached please thanks regards "
         "relatório reunião orçamento ação caixa informação próxima semana "
         "obrigado atenciosamente você também então já não é está série "
         "contract delivery timeline customer support release version update").split()
JAPANESE = ["日本語のテキストです。", "会議は明日の午前十時からです。",
            "添付ファイルをご確認ください。", "よろしくお願いいたします。",
            "メールサーバーの移行について", "東京は今日晴れです。"]
NAMES = [("Alice Example", "alice@example.com"), ("Bob Builder", "bob@example.org"),
         ("João Silva", "joao@exemplo.com.br"), ("Maria Conceição", "maria@exemplo.pt"),
         ("山田太郎", "yamada@example.jp"), ("Carol O'Neil", "carol@example.net"),
         ("Dave", "dave@example.com"), ("Support Team", "support@vendor.example")]
SUBJECTS = ["Quarterly report", "Meeting tomorrow", "Re: budget", "Fwd: invoice 2013-04",
            "Relatório mensal de ação", "Reunião às 10h", "会議のお知らせ",
            "Server migration plan", "Your order has shipped", "Lunch?",
            "Draft: proposal", "Project X status", "Photos from the weekend",
            "A rather long subject line that goes on and on to make sure folding "
            "of long header lines is exercised by the corpus generator"]
TZ_OFFSETS = [0, -180, 60, 540, -300, 330]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def parse_size(s):
    s = s.strip().upper()
    mult = 1
    for suf, m in (("K", 1024), ("M", 1024 ** 2), ("G", 1024 ** 3)):
        if s.endswith(suf) or s.endswith(suf + "B"):
            s = s[:s.index(suf)]
            mult = m
            break
    return int(float(s) * mult)


def parse_day(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%d"))


def rfc5322_date(epoch, tz):
    t = time.gmtime(epoch + tz * 60)
    sign = "+" if tz >= 0 else "-"
    return "%s, %02d %s %04d %02d:%02d:%02d %s%02d%02d" % (
        DAYS[t.tm_wday], t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year,
        t.tm_hour, t.tm_min, t.tm_sec, sign, abs(tz) // 60, abs(tz) % 60)


def encoded_words(text):
    """RFC 2047 B-encoding for non-ASCII header text, in short words."""
    if all(ord(c) < 128 for c in text):
        return text
    words = []
    chunk = ""
    for c in text:
        if len((chunk + c).encode("utf-8")) > 30:
            words.append(chunk)
            chunk = ""
        chunk += c
    if chunk:
        words.append(chunk)
    return "\r\n ".join("=?UTF-8?B?%s?=" % base64.b64encode(w.encode("utf-8")).decode("ascii")
                        for w in words)


def fold(name, value):
    """Fold an ASCII header at spaces to lines of at most 78 characters."""
    line = name + ": "
    out = []
    for word in value.split(" "):
        if len(line) + len(word) > 76 and line.strip() and not line.endswith(": "):
            out.append(line.rstrip(" "))
            line = " "
        line += word + " "
    out.append(line.rstrip(" "))
    return "\r\n".join(out)


def address(rng):
    name, addr = NAMES[rng.randrange(len(NAMES))]
    if all(ord(c) < 128 for c in name):
        if "'" in name:
            return '"%s" <%s>' % (name, addr)
        return "%s <%s>" % (name, addr)
    return "%s <%s>" % (encoded_words(name), addr)


_POOLS = {}


def sentence_pool(seed, utf8):
    """1024 sentences per seed, drawn once: picking from a pool is much
    cheaper than drawing every word."""
    key = (seed, utf8)
    if key not in _POOLS:
        rng = random.Random("corpus-sentences:%d:%d" % (seed, utf8))
        words = WORDS if utf8 else [w for w in WORDS if all(ord(c) < 128 for c in w)]
        pool = []
        for _ in range(1024):
            if utf8 and rng.random() < 0.2:
                pool.append(JAPANESE[rng.randrange(len(JAPANESE))])
                continue
            s = " ".join(words[rng.randrange(len(words))] for _ in range(rng.randrange(5, 14)))
            pool.append(s[0].upper() + s[1:] + ".")
        _POOLS[key] = pool
    return _POOLS[key]


def text_body(rng, size, utf8, seed):
    """Paragraphs of about `size` bytes, as a list of lines (no CRLF):
    whole sentences per line, lines of 60-150 characters."""
    pool = sentence_pool(seed, utf8)
    lines = []
    total = 0
    while total < size:
        line = ""
        for _ in range(rng.randrange(2, 9)):
            s = pool[rng.getrandbits(10)]
            if line and len(line) > 60:
                lines.append(line)
                total += len(line.encode("utf-8")) + 2
                line = s
            else:
                line = (line + " " + s) if line else s
        lines.append(line)
        total += len(line.encode("utf-8")) + 4
        lines.append("")
    return lines


def qp_lines(lines):
    text = "\n".join(lines).encode("utf-8")
    return binascii.b2a_qp(text, istext=True).decode("ascii").split("\n")


def b64_lines(data):
    enc = base64.b64encode(data).decode("ascii")
    return [enc[i:i + 76] for i in range(0, len(enc), 76)]


def make_message(seed, index, target, folder_kind, epoch, tz):
    """One RFC 5322 message of roughly `target` bytes, as CRLF bytes."""
    rng = random.Random("corpus:%d:%d" % (seed, index))
    sender = address(rng)
    rcpt = address(rng)
    if folder_kind == "sent":
        sender, rcpt = "Corpus User <user@corpus.example>", sender
    subject = SUBJECTS[rng.randrange(len(SUBJECTS))]
    msgid = "<%d.%d.%s@corpus.example>" % (seed, index, hashlib.sha1(
        ("%d/%d" % (seed, index)).encode()).hexdigest()[:12])
    date = rfc5322_date(epoch - rng.randrange(0, 3600), tz)

    hdr = []
    if folder_kind not in ("sent", "drafts"):
        hdr.append("Return-Path: <%s>" % sender.split("<")[-1].rstrip(">"))
        hdr.append(fold("Received", "from mx%d.example.net (mx%d.example.net [192.0.2.%d]) "
                        "by mail.corpus.example with ESMTPS id %08x; %s" % (
                            index % 7, index % 7, index % 250 + 1,
                            rng.getrandbits(32), rfc5322_date(epoch, tz))))
    hdr.append("Date: " + date)
    hdr.append("From: " + sender)
    hdr.append("To: " + rcpt)
    if rng.random() < 0.2:
        hdr.append("Cc: " + address(rng))
    if all(ord(c) < 128 for c in subject):
        hdr.append(fold("Subject", subject))
    else:
        hdr.append("Subject: " + encoded_words(subject))
    hdr.append("Message-ID: " + msgid)
    if subject.startswith("Re:") or rng.random() < 0.1:
        ref = "<%d.%d.ref@corpus.example>" % (seed, rng.randrange(1000000))
        hdr.append("In-Reply-To: " + ref)
        hdr.append("References: " + ref)
    hdr.append("X-Corpus-Index: %d" % index)
    hdr.append("MIME-Version: 1.0")

    head_len = sum(len(h) + 2 for h in hdr) + 200
    room = max(target - head_len + 150, 200)
    r = rng.random()
    body = []
    if room > 24 * 1024 or r < 0.25:
        # multipart/mixed: text + base64 attachment(s)
        boundary = "=_corpus_%d_%08x" % (index, rng.getrandbits(32))
        hdr.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
        text_size = min(room // 4, rng.randrange(300, 3000))
        body.append("This is a multi-part message in MIME format.")
        body.append("")
        body.append("--" + boundary)
        body.append("Content-Type: text/plain; charset=utf-8")
        body.append("Content-Transfer-Encoding: 8bit")
        body.append("")
        body.extend(text_body(rng, text_size, True, seed))
        left = room - text_size
        nparts = 1 if left < 100000 else rng.randrange(1, 3)
        for p in range(nparts):
            raw_size = max((left // nparts) * 3 // 4 - 300, 16)
            kind = rng.randrange(3)
            body.append("--" + boundary)
            if kind == 0:
                body.append('Content-Type: application/pdf; name="report-%d.pdf"' % p)
                body.append('Content-Disposition: attachment; filename="report-%d.pdf"' % p)
            elif kind == 1:
                body.append("Content-Type: application/octet-stream")
                body.append("Content-Disposition: attachment;")
                body.append(" filename*=UTF-8''relat%C3%B3rio-" + "%d.bin" % p)
            else:
                body.append('Content-Type: image/png; name="foto %d.png"' % p)
                body.append('Content-Disposition: inline; filename="foto %d.png"' % p)
            body.append("Content-Transfer-Encoding: base64")
            body.append("")
            body.extend(b64_lines(rng.randbytes(raw_size)))
        body.append("--" + boundary + "--")
        body.append("")
    elif r < 0.45:
        boundary = "=_alt_%d_%08x" % (index, rng.getrandbits(32))
        hdr.append('Content-Type: multipart/alternative; boundary="%s"' % boundary)
        lines = text_body(rng, room // 3, True, seed)
        body.append("--" + boundary)
        body.append("Content-Type: text/plain; charset=utf-8")
        body.append("Content-Transfer-Encoding: quoted-printable")
        body.append("")
        body.extend(qp_lines(lines))
        body.append("--" + boundary)
        body.append("Content-Type: text/html; charset=utf-8")
        body.append("Content-Transfer-Encoding: 8bit")
        body.append("")
        body.append("<html><body>")
        for l in lines:
            body.append("<p>%s</p>" % l.replace("&", "&amp;").replace("<", "&lt;") if l else "<br>")
        body.append("</body></html>")
        body.append("--" + boundary + "--")
    elif r < 0.7:
        hdr.append("Content-Type: text/plain; charset=utf-8")
        hdr.append("Content-Transfer-Encoding: 8bit")
        body.extend(text_body(rng, room, True, seed))
    else:
        hdr.append("Content-Type: text/plain; charset=us-ascii")
        hdr.append("Content-Transfer-Encoding: 7bit")
        body.extend(text_body(rng, room, False, seed))
        if rng.random() < 0.3:
            # a line starting with a dot and one "From " line
            body.append(".a line starting with a dot")
            body.append("From here on, nothing changes.")
    return ("\r\n".join(hdr) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode("utf-8")


def flags_for(rng, kind):
    f = []
    seen = {"sent": 1.0, "archive": 1.0, "drafts": 0.3, "junk": 0.4}.get(kind, 0.75)
    if rng.random() < 0.12 and kind in ("inbox", "work", "archive"):
        f.append("\\Answered")
    if rng.random() < 0.08:
        f.append("\\Flagged")
    if kind == "drafts":
        f.append("\\Draft")
    if rng.random() < seen:
        f.append("\\Seen")
    if rng.random() < 0.05:
        f.append("$Forwarded")
    if kind == "junk" or rng.random() < 0.01:
        f.append("$Junk")
    if rng.random() < (0.3 if kind == "work" else 0.04):
        f.append("project-x")
    if rng.random() < 0.03:
        f.append("Important-2")
    return " ".join(f)


def plan(args):
    """The corpus: {folder components: [(flags, date_str, bytes)]}, in
    append order, plus the stats."""
    rng = random.Random("corpus-plan:%d" % args.seed)
    n = args.messages
    since, until = parse_day(args.since), parse_day(args.until)
    weights = [w for _, w, _ in FOLDERS]
    nonempty = [i for i, w in enumerate(weights) if w > 0]
    assign = []
    for i in range(n):
        if i < len(nonempty):
            assign.append(nonempty[i])
        else:
            assign.append(rng.choices(range(len(FOLDERS)), weights=weights)[0])
    forced_large = 7 if n >= 50 else -1
    metas = []
    for i in range(n):
        r = rng.random()
        if i == forced_large:
            size = args.max_size
        elif r < 0.84:
            size = int(1024 * 16 ** rng.random())
        elif r < 0.99:
            size = int(16 * 1024 * (300 / 16.0) ** rng.random())
        else:
            size = int(300 * 1024 * (max(args.max_size, 300 * 1024) / (300 * 1024.0)) ** rng.random())
        size = min(size, args.max_size)
        epoch = rng.randrange(since, until)
        tz = TZ_OFFSETS[rng.randrange(len(TZ_OFFSETS))]
        metas.append((i, assign[i], size, epoch, tz))
    per_folder = {}
    for fi in range(len(FOLDERS)):
        per_folder[fi] = []
    # mostly in date order per folder, as real mailboxes are
    for meta in sorted(metas, key=lambda m: (m[1], m[3], m[0])):
        per_folder[meta[1]].append(meta)
    return per_folder


def build(args, meta):
    """(flags, INTERNALDATE string, message bytes) of one planned message."""
    i, fi, size, epoch, tz = meta
    kind = FOLDERS[fi][2]
    frng = random.Random("corpus-flags:%d:%d" % (args.seed, i))
    msg = make_message(args.seed, i, size, kind, epoch, tz)
    # headers and MIME overhead: keep the promise of --max-size
    if len(msg) > args.max_size:
        msg = make_message(args.seed, i, size - (len(msg) - args.max_size) - 64, kind, epoch, tz)
    return flags_for(frng, kind), rigimap.imap_date(epoch, tz), msg


def server_name(components, sep, prefix):
    if components == ("INBOX",):
        return "INBOX"
    return prefix + sep.join(components)


def manifest_line(name, item):
    flags, date, msg = item
    return "%s\t%s\t%d\t%s\t%s" % (
        name, hashlib.sha256(msg).hexdigest(), len(msg),
        rigimap.fmt_utc(rigimap.parse_imap_date(date)),
        " ".join(sorted(flags.split())))


def load_folders(args, password, jobs, caps, shared):
    """One connection appending the folders of `jobs`, in order; messages
    are generated here, batch by batch, so memory stays bounded."""
    try:
        conn = rigimap.connect(args.host, args.port, args.user, password)
        use_multi = "MULTIAPPEND" in caps and "LITERAL+" in caps
        for name, metas in jobs:
            batch = []
            batch_bytes = 0
            for meta in metas:
                item = build(args, meta)
                line = manifest_line(name, item)
                if use_multi:
                    batch.append(item)
                    batch_bytes += len(item[2])
                    if len(batch) >= args.batch_count or batch_bytes >= args.batch_bytes:
                        rigimap.multiappend(conn, name, batch)
                        batch, batch_bytes = [], 0
                else:
                    rigimap.append_one(conn, name, item[0], item[1], item[2])
                with shared["lock"]:
                    shared["count"] += 1
                    shared["bytes"] += len(item[2])
                    shared["manifest"].append(line)
            if batch:
                rigimap.multiappend(conn, name, batch)
        conn.logout()
    except (ToolError, imaplib.IMAP4.error, OSError) as exc:
        with shared["lock"]:
            shared["errors"].append(str(exc))


def main():
    ap = argparse.ArgumentParser(description="seed an IMAP account with a deterministic corpus",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=143)
    ap.add_argument("--user")
    ap.add_argument("--password-env", default="IMAP_PASSWORD")
    ap.add_argument("--password-file")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--messages", type=int, default=300, help="total number of messages")
    ap.add_argument("--max-size", type=parse_size, default=parse_size("3M"),
                    help="largest message (default 3M)")
    ap.add_argument("--since", default="2012-01-01", help="earliest INTERNALDATE (UTC day)")
    ap.add_argument("--until", default="2026-01-01",
                    help="latest INTERNALDATE (UTC day; fixed so runs are reproducible)")
    ap.add_argument("--prefix", default="auto",
                    help="personal namespace prefix (auto: from NAMESPACE)")
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--batch-count", type=int, default=200)
    ap.add_argument("--batch-bytes", type=parse_size, default=parse_size("8M"))
    ap.add_argument("--no-subscribe", action="store_true")
    ap.add_argument("--manifest", help="write the manifest to this file")
    ap.add_argument("--dry-run", action="store_true",
                    help="no server: print the manifest (separator /, no prefix)")
    args = ap.parse_args()
    try:
        sys.stdout.reconfigure(encoding="utf-8")
    except AttributeError:
        pass
    if args.messages < 0 or args.max_size < 1024:
        rigimap.die("bad --messages or --max-size")

    t0 = time.time()
    per_folder = plan(args)

    if args.dry_run:
        lines = []
        nbytes = 0
        for fi, metas in per_folder.items():
            name = server_name(FOLDERS[fi][0], "/", "")
            for meta in metas:
                item = build(args, meta)
                nbytes += len(item[2])
                lines.append(manifest_line(name, item))
        out = "\n".join(sorted(lines)) + "\n"
        sys.stdout.write(out)
        if args.manifest:
            with open(args.manifest, "w", encoding="utf-8") as f:
                f.write(out)
        sys.stderr.write("corpus: %d messages, %d bytes, manifest sha256 %s\n" % (
            len(lines), nbytes, hashlib.sha256(out.encode("utf-8")).hexdigest()[:16]))
        return 0

    if not args.user:
        rigimap.die("--user is required")
    try:
        password = rigimap.get_password(args.password_env, args.password_file)
        conn = rigimap.connect(args.host, args.port, args.user, password, retries=10)
        caps = rigimap.capabilities(conn)
        sep = rigimap.hierarchy_sep(conn) or "/"
        if args.prefix == "auto":
            prefix, _ = rigimap.personal_prefix(conn)
            prefix = prefix or ""
        else:
            prefix = args.prefix
        names = {}
        for fi, (comps, _, _) in enumerate(FOLDERS):
            names[fi] = server_name(comps, sep, prefix)
        # parents first (sorted by depth), except the implicit ones
        existing = set(mb.name for mb in rigimap.list_mailboxes(conn))
        for fi in sorted(names, key=lambda k: len(FOLDERS[k][0])):
            comps = FOLDERS[fi][0]
            for depth in range(1, len(comps)):
                parent = comps[:depth]
                pname = server_name(parent, sep, prefix)
                if parent in IMPLICIT_PARENTS or pname in existing:
                    continue
                if parent in [f[0] for f in FOLDERS]:
                    continue
                rigimap.check(conn._simple_command("CREATE", rigimap.qmailbox(pname)), "CREATE " + pname)
                existing.add(pname)
            name = names[fi]
            if name != "INBOX" and name not in existing:
                rigimap.check(conn._simple_command("CREATE", rigimap.qmailbox(name)), "CREATE " + name)
                existing.add(name)
            if not args.no_subscribe:
                rigimap.check(conn._simple_command("SUBSCRIBE", rigimap.qmailbox(name)), "SUBSCRIBE " + name)
        conn.logout()

        # spread folders over the connections, biggest first
        nconn = max(1, args.connections)
        jobs = [[] for _ in range(nconn)]
        load = [0] * nconn
        for fi in sorted(per_folder, key=lambda k: (-sum(m[2] + 2000 for m in per_folder[k]), k)):
            if not per_folder[fi]:
                continue
            j = load.index(min(load))
            jobs[j].append((names[fi], per_folder[fi]))
            load[j] += sum(m[2] + 2000 for m in per_folder[fi])
        shared = {"lock": threading.Lock(), "errors": [], "count": 0, "bytes": 0,
                  "manifest": []}
        threads = [threading.Thread(target=load_folders,
                                    args=(args, password, jobs[j], caps, shared))
                   for j in range(nconn) if jobs[j]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if shared["errors"]:
            raise ToolError("; ".join(shared["errors"]))
    except (ToolError, imaplib.IMAP4.error, OSError) as exc:
        rigimap.die(str(exc))

    if args.manifest:
        with open(args.manifest, "w", encoding="utf-8") as f:
            f.write("\n".join(sorted(shared["manifest"])) + "\n")
    sys.stderr.write("gen-corpus: %d messages (%.1f MB) in %d folders for %s in %.1f s\n" % (
        shared["count"], shared["bytes"] / 1048576.0, len(FOLDERS), args.user,
        time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
