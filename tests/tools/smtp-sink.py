#!/usr/bin/python3
"""A small SMTP server that keeps what it receives (a stand-in old MX).

  smtp-sink.py --port P --dir DIR [--host 127.0.0.1] [--pidfile F]

Speaks enough SMTP for an MTA or Dovecot's LMTP proxy: EHLO/HELO, MAIL,
RCPT, DATA, RSET, NOOP, QUIT, with pipelining.  Every message accepted is
written to DIR/N.eml (the data, dot-unstuffed) and DIR/N.env (the envelope:
"from ADDR" and one "rcpt ADDR" line each).  Runs until killed.
"""

import argparse
import os
import socketserver
import threading

COUNTER_LOCK = threading.Lock()
COUNTER = [0]


class Handler(socketserver.StreamRequestHandler):
    def send(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        self.send("220 smtp-sink ESMTP")
        sender, rcpts = None, []
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.send("250-smtp-sink")
                self.send("250-PIPELINING")
                self.send("250-8BITMIME")
                self.send("250 SMTPUTF8")
            elif verb == "HELO":
                self.send("250 smtp-sink")
            elif verb == "MAIL":
                sender, rcpts = cmd[10:].strip(), []
                self.send("250 2.1.0 Ok")
            elif verb == "RCPT":
                rcpts.append(cmd[8:].strip())
                self.send("250 2.1.5 Ok")
            elif verb == "DATA":
                if sender is None or not rcpts:
                    self.send("503 5.5.1 Need MAIL and RCPT")
                    continue
                self.send("354 End data with <CR><LF>.<CR><LF>")
                data = []
                while True:
                    dline = self.rfile.readline(1 << 20)
                    if not dline:
                        return
                    if dline in (b".\r\n", b".\n"):
                        break
                    if dline.startswith(b"."):
                        dline = dline[1:]
                    data.append(dline)
                with COUNTER_LOCK:
                    COUNTER[0] += 1
                    n = COUNTER[0]
                base = os.path.join(self.server.dir, "%d" % n)
                with open(base + ".eml", "wb") as f:
                    f.write(b"".join(data))
                with open(base + ".env", "w") as f:
                    f.write("from %s\n" % sender)
                    for r in rcpts:
                        f.write("rcpt %s\n" % r)
                self.send("250 2.0.0 Ok: queued as %d" % n)
                sender, rcpts = None, []
            elif verb == "RSET":
                sender, rcpts = None, []
                self.send("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.send("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye")
                return
            else:
                self.send("502 5.5.2 Command not recognized")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--pidfile")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    server = Server((a.host, a.port), Handler)
    server.dir = a.dir
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    server.serve_forever()


if __name__ == "__main__":
    main()
