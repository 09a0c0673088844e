#!/usr/bin/env python3
"""gen-years.py - seed IMAP folders with many small messages spread evenly
over several years (for doveadm migrate archive).

  gen-years.py --port P --user U [--password-env VAR] \\
      --folder INBOX:12000 --folder Sent:11000 \\
      [--first-year 2019] [--last-year 2026] [--seed S] \\
      [--needle WORD --needle-folder INBOX --needle-index N]

Messages are ~600 bytes, in date order per folder (UTC noon of evenly
spaced days, the last year up to yesterday), with flags \\Seen on most,
\\Flagged on every 7th, the keyword $Forwarded on every 11th, and a unique
Message-ID.  With --needle, message N of that folder (0-based) carries
WORD in its body and no other message does (for full-text search tests).
Prints "gen-years: N messages" when done."""

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rigimap  # noqa: E402

WORDS = ("meeting report invoice project schedule budget review draft "
         "contract shipment proposal summary agenda minutes update").split()


def day_epochs(count, first_year, last_year):
    start = time.mktime((first_year, 1, 1, 12, 0, 0, 0, 0, 0)) - time.timezone
    end = time.time() - 86400
    last_end = time.mktime((last_year, 12, 31, 12, 0, 0, 0, 0, 0)) - time.timezone
    end = min(end, last_end)
    if count == 1:
        return [int(start)]
    step = (end - start) / (count - 1)
    return [int(start + i * step) for i in range(count)]


def message(folder, i, epoch, rng, needle):
    body = " ".join(rng.choice(WORDS) for _ in range(60))
    if needle:
        body += " " + needle
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch))
    text = ("From: Someone <someone@example.org>\r\n"
            "To: user@example.com\r\n"
            "Subject: %s %d\r\n"
            "Date: %s\r\n"
            "Message-ID: <%s.%d.years@example.org>\r\n"
            "\r\n%s\r\n") % (folder, i, date, folder.replace(" ", "_"), i, body)
    return text.encode("ascii")


def flags_for(i):
    flags = []
    if i % 5 != 0:
        flags.append("\\Seen")
    if i % 7 == 0:
        flags.append("\\Flagged")
    if i % 11 == 0:
        flags.append("$Forwarded")
    return " ".join(flags)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-env", default="IMAP_PASSWORD")
    ap.add_argument("--password-file")
    ap.add_argument("--folder", action="append", required=True,
                    help="NAME:COUNT (repeatable)")
    ap.add_argument("--first-year", type=int, default=2019)
    ap.add_argument("--last-year", type=int, default=time.gmtime().tm_year)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--needle")
    ap.add_argument("--needle-folder", default="INBOX")
    ap.add_argument("--needle-index", type=int, default=0)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()

    conn = rigimap.connect_args(args)
    total = 0
    for spec in args.folder:
        name, _, count = spec.rpartition(":")
        count = int(count)
        if name != "INBOX":
            typ, _ = conn.create(rigimap.qmailbox(name))
        rng = random.Random("%d:%s" % (args.seed, name))
        batch = []
        for i, epoch in enumerate(day_epochs(count, args.first_year,
                                             args.last_year)):
            needle = (args.needle if args.needle and
                      name == args.needle_folder and
                      i == args.needle_index else None)
            batch.append((flags_for(i), rigimap.imap_date(epoch),
                          message(name, i, epoch, rng, needle)))
            if len(batch) >= args.batch:
                rigimap.multiappend(conn, name, batch)
                total += len(batch)
                batch = []
        if batch:
            rigimap.multiappend(conn, name, batch)
            total += len(batch)
    conn.logout()
    print("gen-years: %d messages" % total)


if __name__ == "__main__":
    main()
