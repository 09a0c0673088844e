#!/usr/bin/python3
"""Deliver one message (stdin) to one or more recipients over LMTP.

  lmtp-deliver.py --socket PATH | --host H --port P
                  --rcpt USER [--rcpt USER ...] [--from ADDR] < message

Prints the server's reply to each RCPT TO and, per accepted recipient, to
DATA (LMTP answers DATA once per recipient), as "RCPT <user>: <reply>" and
"DATA <user>: <reply>".  Exit status: 0 all delivered, 75 any temporary
failure (4xx) and no permanent one, 1 any permanent failure (5xx),
2 protocol or connection error.  Line endings are normalised to CRLF and
dot-stuffing is done here.
"""

import argparse
import socket
import sys


class LmtpError(Exception):
    pass


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.f = sock.makefile("rb")

    def reply(self):
        lines = []
        while True:
            line = self.f.readline(8192)
            if not line:
                raise LmtpError("connection closed by server")
            line = line.rstrip(b"\r\n").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit():
                raise LmtpError("bad reply line %r" % line)
            lines.append(line)
            if len(line) == 3 or line[3] == " ":
                return int(line[:3]), " | ".join(lines)

    def cmd(self, text):
        self.sock.sendall(text.encode("utf-8") + b"\r\n")
        return self.reply()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--socket", help="LMTP unix socket")
    ap.add_argument("--host")
    ap.add_argument("--port", type=int, default=24)
    ap.add_argument("--rcpt", action="append", required=True)
    ap.add_argument("--from", dest="sender", default="")
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()

    data = sys.stdin.buffer.read()
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    body = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)

    try:
        if args.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(args.timeout)
            sock.connect(args.socket)
        elif args.host:
            sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
        else:
            ap.error("--socket or --host is required")
        c = Conn(sock)
        code, text = c.reply()
        if code != 220:
            raise LmtpError("greeting: " + text)
        code, text = c.cmd("LHLO rig.test")
        if code != 250:
            raise LmtpError("LHLO: " + text)
        code, text = c.cmd("MAIL FROM:<%s>" % args.sender)
        if code != 250:
            print("MAIL: " + text)
            return 75 if code // 100 == 4 else 1
        accepted = []
        temp = perm = False
        for r in args.rcpt:
            code, text = c.cmd("RCPT TO:<%s>" % r)
            print("RCPT %s: %s" % (r, text))
            if code // 100 == 2:
                accepted.append(r)
            elif code // 100 == 4:
                temp = True
            else:
                perm = True
        if accepted:
            code, text = c.cmd("DATA")
            if code != 354:
                raise LmtpError("DATA: " + text)
            sock.sendall(body + b".\r\n")
            for r in accepted:
                code, text = c.reply()
                print("DATA %s: %s" % (r, text))
                if code // 100 == 4:
                    temp = True
                elif code // 100 != 2:
                    perm = True
        try:
            c.cmd("QUIT")
        except (OSError, LmtpError):
            pass
        sock.close()
    except (OSError, LmtpError) as exc:
        sys.stderr.write("lmtp-deliver: %s\n" % exc)
        return 2
    if perm:
        return 1
    if temp:
        return 75
    return 0


if __name__ == "__main__":
    sys.exit(main())
