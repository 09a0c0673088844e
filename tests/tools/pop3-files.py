#!/usr/bin/python3
"""pop3-files.py - a POP3 server whose INBOX is a list of files, in an
order of the test's choosing.

  pop3-files.py --port P --user U --password-env VAR --ready FILE MSG...

Listens on 127.0.0.1:P; a client that logs in as U with the password in
$VAR (USER/PASS) sees the files MSG... as its messages, numbered in the
order given, each with its file name (without directory) as its UIDL.
The files are read once, at start.  Commands: CAPA, USER, PASS, STAT,
LIST, UIDL, RETR, TOP, NOOP, RSET, QUIT (DELE is refused: nothing
changes).  One thread per connection.  FILE is created once the socket
listens.  What a real server whose POP3 order is not its IMAP UID order
shows (Courier does it at times): the test appends the same files over
IMAP in another order.
"""

import argparse
import os
import socket
import threading


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-env", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("messages", nargs="+")
    return ap.parse_args()


def crlf(data):
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def multiline(lines):
    out = []
    for line in lines:
        out.append(b"." + line if line.startswith(b".") else line)
    return b"\r\n".join(out + [b".", b""])


class Session:
    def __init__(self, conn, args, password, messages):
        self.f = conn.makefile("rwb")
        self.args = args
        self.password = password
        self.messages = messages
        self.user = None
        self.authed = False

    def send(self, data):
        self.f.write(data)
        self.f.flush()

    def msg(self, arg):
        try:
            n = int(arg)
        except (TypeError, ValueError):
            return None
        if 1 <= n <= len(self.messages):
            return n
        return None

    def run(self):
        self.send(b"+OK pop3-files ready\r\n")
        while True:
            line = self.f.readline()
            if not line:
                return
            words = line.decode("utf-8", "replace").strip().split(" ")
            cmd, args = words[0].upper(), words[1:]
            if cmd == "QUIT":
                self.send(b"+OK bye\r\n")
                return
            self.command(cmd, args)

    def command(self, cmd, args):
        if cmd == "CAPA":
            self.send(b"+OK\r\n" + multiline([b"USER", b"UIDL", b"TOP"]))
        elif cmd == "USER" and args:
            self.user = args[0]
            self.send(b"+OK\r\n")
        elif cmd == "PASS":
            if self.user == self.args.user and " ".join(args) == self.password:
                self.authed = True
                self.send(b"+OK logged in\r\n")
            else:
                self.send(b"-ERR [AUTH] authentication failed\r\n")
        elif not self.authed:
            self.send(b"-ERR log in first\r\n")
        elif cmd in ("NOOP", "RSET"):
            self.send(b"+OK\r\n")
        elif cmd == "STAT":
            size = sum(len(m[1]) for m in self.messages)
            self.send(b"+OK %d %d\r\n" % (len(self.messages), size))
        elif cmd in ("LIST", "UIDL"):
            self.listing(cmd, args)
        elif cmd in ("RETR", "TOP"):
            self.retrieve(cmd, args)
        else:
            self.send(b"-ERR not here\r\n")

    def listing(self, cmd, args):
        def item(n):
            name, data = self.messages[n - 1]
            value = str(len(data)) if cmd == "LIST" else name
            return b"%d %s" % (n, value.encode())
        if args:
            n = self.msg(args[0])
            self.send(b"+OK " + item(n) + b"\r\n" if n else b"-ERR no such message\r\n")
        else:
            self.send(b"+OK\r\n" + multiline(
                [item(n) for n in range(1, len(self.messages) + 1)]))

    def retrieve(self, cmd, args):
        n = self.msg(args[0]) if args else None
        if n is None:
            self.send(b"-ERR no such message\r\n")
            return
        data = self.messages[n - 1][1]
        if cmd == "TOP":
            body_lines = int(args[1]) if len(args) > 1 else 0
            head, sep, body = data.partition(b"\r\n\r\n")
            body = b"\r\n".join(body.split(b"\r\n")[:body_lines])
            data = head + sep + body if body_lines > 0 else head + sep
        if data.endswith(b"\r\n"):
            data = data[:-2]
        self.send(b"+OK\r\n" + multiline(data.split(b"\r\n")))


def main():
    args = parse_args()
    password = os.environ[args.password_env]
    messages = []
    for path in args.messages:
        with open(path, "rb") as f:
            messages.append((os.path.basename(path), crlf(f.read())))
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(16)
    open(args.ready, "w").close()

    def serve(conn):
        with conn:
            try:
                Session(conn, args, password, messages).run()
            except OSError:
                pass

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
