#!/usr/bin/python3
"""quirkyimap.py - a small scripted, read-only IMAP4rev1 server for the tests.

  quirkyimap.py --port P --scenario FILE.json [--log FILE] [--pidfile F]
                [--daemon] [--password-file F]
                [--tls-cert CERT.pem --tls-key KEY.pem]

Listens on 127.0.0.1:P, one thread per connection.  The password is never
in the scenario or on the command line: it comes from the environment
variable QUIRKY_PASSWORD or from --password-file (first line).  The
pidfile is written once the socket listens (with --daemon by the parent,
holding the child's pid, before the parent exits), so "wait for the
pidfile" means "the port answers".

The scenario is re-read at every new connection when its mtime changed;
a connection keeps the snapshot it started with.  A test changes the
source between runs by rewriting the file (new messages, expunged ones,
changed flags, a changed UIDVALIDITY).

Scenario (JSON):
  { "user": "u",
    "capabilities": ["IMAP4rev1", "LITERAL+", "SPECIAL-USE", "UIDPLUS",
                     "CONDSTORE", "ID", "NAMESPACE", "X-GM-EXT-1",
                     "STARTTLS", "AUTH=PLAIN", "SASL-IR", "ENABLE",
                     "UNSELECT", "IDLE", "LIST-EXTENDED", "LIST-STATUS"],
        advertised exactly (in the greeting, CAPABILITY and the LOGIN OK;
        STARTTLS only before TLS, AUTH=/SASL-IR/STARTTLS only before
        login), and behaviour follows: a command or item of an extension
        that is not advertised is BAD (ID, ENABLE, NAMESPACE, UNSELECT,
        IDLE, UID EXPUNGE, AUTHENTICATE without AUTH=PLAIN, an initial
        response without SASL-IR, LIST selection/RETURN options without
        LIST-EXTENDED / SPECIAL-USE, STATUS HIGHESTMODSEQ, FETCH MODSEQ
        and CHANGEDSINCE, SEARCH MODSEQ without CONDSTORE, X-GM-* without
        X-GM-EXT-1); without SPECIAL-USE LIST shows no \\Sent etc.
    "separator": "/",  "prefix": "",        (the personal namespace)
    "permanentflags": ["\\Seen", "\\*"],    (optional; default the five
                                             system flags and \\*)
    "folders": [
      { "name": "INBOX",             UTF-8; modified UTF-7 on the wire
        "wire_b64": "Y2Fm6Q==",       optional: the name's exact bytes on
                                     the wire instead (raw 8-bit or
                                     control characters, invalid mUTF-7:
                                     what a broken server sends; a
                                     literal when not printable ASCII)
        "uidvalidity": 1,
        "uidnext": 10,               optional (default highest UID + 1)
        "highestmodseq": 7,          optional (default highest modseq, >= 1)
        "special_use": "\\Sent",     optional
        "attributes": ["\\Noselect"],  optional; \\Noselect folders
                                     cannot be selected/examined/STATUSed
        "subscribed": true,          optional (default true)
        "hidden_on_connections": [3],  optional: on those connections
                                     the folder is not there at all
        "uidvalidity_on_connections": {"4": 7},  optional: on those
                                     connections the folder has that
                                     UIDVALIDITY (same messages): a
                                     cluster whose sessions disagree
        "messages": [
          { "uid": 1,
            "file": "m1.eml" (relative to the scenario file)
              | "body": "text with \\r\\n" | "body_b64": "...",
            "flags": ["\\Seen", "$Forwarded", "Straße"],
            "internaldate": "01-Jan-2020 10:00:00 +0000",
            "modseq": 5,             (default 1)
            "gm_msgid": 123, "gm_thrid": 1, "gm_labels": ["\\Inbox", "Work"],
            "size_lie": 100,         RFC822.SIZE reported instead of the
                                     real size
            "hidden_on_connections": [2]  on those connections (numbers
                                     as for bye_connections) the message
                                     does not exist at all: a cluster
                                     whose sessions see different views
            "fetch_no": true         a FETCH asking for this message's
                                     body (BODY[...], BODY.PEEK[...],
                                     RFC822*, BINARY) answers the whole
                                     command NO (the other messages'
                                     items are sent); other items are OK
          } ] } ],
    "quirks": {
      "throttle": {"every": N, "commands": ["UID FETCH"], "max": M,
                   "text": "..."},
          every Nth matching command (counted over all connections since
          the scenario was (re)loaded; names as "UID FETCH", "SELECT", "LOGIN"...; missing
          "commands" = every command) answers
          "NO [THROTTLED] Too many commands, slow down"; as N > 1, the
          retry of the same command works; with "max", only the first M
          times (a client's back-off grows with each one: imapc doubles
          its delay before every later command, up to 16 s)
      "bye_after_fetch_responses": N, "bye_connections": [1, 2],
          on those connection numbers (1-based since server start; missing
          = every connection) after N untagged FETCH responses were sent,
          send "* BYE Connection reset by quirk" and close
      "pieces_reversed": true
          partial body FETCHes (BODY.PEEK[]<o.n>) that a client pipelined
          (the next one is already read when one is done) are answered
          last first, each with its tagged reply: as Dovecot may answer
          pipelined FETCHes it runs in parallel
      "bye_after_body_responses": N
          the same, counting only the FETCH responses that carry a body:
          whichever connection a client reads bodies on dies N bodies in
          (bye_connections applies too)
      "fetch_no_text": "Some messages could not be FETCHed (Failure)",
      "login_fail": "auth" | "courier" | "authorization" | "expired" | "unavailable",
          every login answers NO [AUTHENTICATIONFAILED] / NO without a code
          (Courier's "Login failed.") / NO [AUTHORIZATIONFAILED] /
          NO [EXPIRED] / NO [UNAVAILABLE]
      "login_fail_after": N, the first N logins since the scenario was
          (re)loaded work, every later one answers
          NO [AUTHENTICATIONFAILED]: a provider that refuses a second
          session (with "login_fail", every login fails)
      "fetch_delay_ms": N,   sleep before each body literal
      "greeting_delay_ms": N,
      hostile servers (each one endless, until the client closes):
      "list_endless_line": true,  LIST with a * pattern answers a
          "* LIST" line that never ends
      "list_literal_4g": true,    ... a "* LIST" whose name is a literal
          announced as 4 GB ({4294967296}), then endless bytes
      "fetch_literal_4g": true,   a FETCH of a message's body (BODY[...],
          RFC822...) sends its literal as {4294967296}, then endless bytes
      "endless_pieces": true,     BODY[]<offset.length> always answers
          length bytes, past the end of the message, for ever
      "drip_ms": N,               after the login's OK, every byte the
          server sends comes N ms after the one before
      "drip_from_uid": U,         ... only from the first body literal of
          a message with UID U or above on (with drip_ms)
      "esearch_silent": true,     UID SEARCH RETURN (ALL) (with ESEARCH
          among the capabilities) answers OK without its ESEARCH reply
      "extra_folders": N          LIST and LSUB with a * pattern list N
          more folders ("Extra000001"...) that do not exist otherwise
    },
    "tls_certs": {"3": {"cert": "other.pem", "key": "other.key"}}
        STARTTLS on those connection numbers (as for bye_connections)
        shows this certificate instead of --tls-cert (files relative to
        the scenario file): a man in the middle of some connections
  }
Bodies are bytes (NUL bytes and bare LF go out verbatim in a literal of
the exact length).  The server is read-only: SELECT works (READ-WRITE
reported only as in a normal server) but STORE, APPEND, COPY, MOVE,
EXPUNGE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE answer NO [CANNOT].
Supported otherwise: CAPABILITY, NOOP, LOGOUT, STARTTLS, LOGIN,
AUTHENTICATE PLAIN (SASL-IR or continuation), ID, ENABLE, NAMESPACE, LIST
(LIST "" "", * and %, LIST-EXTENDED selection options SUBSCRIBED and
RETURN (SPECIAL-USE SUBSCRIBED CHILDREN STATUS (...))), LSUB, STATUS,
SELECT/EXAMINE (CONDSTORE parameter), CHECK, CLOSE, UNSELECT, IDLE/DONE,
FETCH/UID FETCH (sequence sets with *, items UID FLAGS INTERNALDATE
RFC822.SIZE RFC822 RFC822.HEADER RFC822.TEXT BODY[section]<o.l> and
BODY.PEEK (sections "", HEADER, TEXT, HEADER.FIELDS[.NOT] (...), MIME, 1)
ENVELOPE BODY BODYSTRUCTURE MODSEQ X-GM-MSGID X-GM-THRID X-GM-LABELS,
macros ALL FAST FULL, modifier (CHANGEDSINCE n)), SEARCH/UID SEARCH (ALL,
sequence sets, UID set, flag keys, KEYWORD, NOT, OR, (...), LARGER,
SMALLER, BEFORE/ON/SINCE, MODSEQ, X-GM-MSGID, CHARSET).

Log (--log, one line per event, the password never appears):
  conn N open PEER
  conn N < TAG COMMAND ARGS      (literals shown as {n}; LOGIN and
                                  AUTHENTICATE arguments as <redacted>;
                                  long lines cut at 400 characters)
  conn N > TAG OK|NO|BAD TEXT    tagged replies
  conn N body FOLDER UID BYTES   a literal with the message or its TEXT
                                  (BODY[], BODY[]<o.l>, RFC822, BODY[TEXT],
                                  BODY[1]) was sent
  conn N header FOLDER UID BYTES a header literal (HEADER, HEADER.FIELDS,
                                  RFC822.HEADER, MIME) was sent
                                  (FOLDER is UTF-8 and may contain spaces:
                                  UID and BYTES are the last two fields)
  conn N throttled TAG
  conn N bye                      the BYE quirk closed the connection
  conn N tls                      STARTTLS done
  conn N login USER ok|failed
  conn N close
  scenario reloaded FILE / scenario error TEXT (the old one stays)
"""

import argparse
import base64
import calendar
import copy
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time

sys.dont_write_bytecode = True
import rigimap  # noqa: E402
from rigimap import mutf7_decode, mutf7_encode  # noqa: E402

SYSTEM_FLAGS = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
SPECIAL_USE = {"\\all", "\\archive", "\\drafts", "\\flagged", "\\junk",
               "\\sent", "\\trash", "\\important"}
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
          "Oct", "Nov", "Dec"]


class Bad(Exception):
    """Answer the command BAD."""


class No(Exception):
    """Answer the command NO."""


class Closed(Exception):
    """The connection is gone (or we closed it)."""


# ---------------------------------------------------------------------------
# logging

class Log:
    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8", errors="backslashreplace",
                      buffering=1) if path else None
        self.lock = threading.Lock()

    def __call__(self, line):
        if self.f is None:
            return
        with self.lock:
            self.f.write(line.replace("\n", "\\n").replace("\r", "\\r") + "\n")


# ---------------------------------------------------------------------------
# scenario

class Message:
    __slots__ = ("uid", "body", "flags", "date", "modseq", "gm_msgid",
                 "gm_thrid", "gm_labels", "size_lie", "fetch_no", "hidden_on")


class Folder:
    __slots__ = ("name", "wire", "uidvalidity", "uidnext", "hms", "special",
                 "attrs", "subscribed", "messages", "hidden_on", "uv_on")


def parse_date(s):
    m = re.match(r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-]\d{4})$", s)
    if not m or m.group(2).capitalize() not in MONTHS:
        raise ValueError("bad internaldate %r" % s)
    return s.strip().rjust(26)


def date_epoch(s):
    return rigimap.parse_imap_date(s)


class Scenario:
    def __init__(self, path):
        self.path = path
        base = os.path.dirname(os.path.abspath(path))
        with open(path, "r", encoding="utf-8") as f:
            d = json.load(f)
        self.user = d.get("user", "user")
        self.caps = [str(c) for c in d.get("capabilities", ["IMAP4rev1"])]
        self.capset = set(c.upper() for c in self.caps)
        self.sep = d.get("separator", "/")
        self.prefix = d.get("prefix", "")
        self.permflags = d.get("permanentflags")
        self.quirks = d.get("quirks", {}) or {}
        self.tls_certs = {}
        for no, c in (d.get("tls_certs", {}) or {}).items():
            self.tls_certs[int(no)] = (os.path.join(base, c["cert"]),
                                       os.path.join(base, c["key"]))
        self.folders = []
        seen = set()
        for fd in d.get("folders", []):
            fo = Folder()
            fo.name = fd["name"]
            if fo.name.upper() == "INBOX":
                fo.name = "INBOX"
            if fo.name in seen:
                raise ValueError("folder %s twice" % fo.name)
            seen.add(fo.name)
            if "wire_b64" in fd:
                fo.wire = base64.b64decode(fd["wire_b64"]).decode(
                    "utf-8", "surrogateescape")
            else:
                fo.wire = mutf7_encode(fo.name)
            fo.uidvalidity = int(fd.get("uidvalidity", 1))
            fo.special = fd.get("special_use")
            fo.attrs = list(fd.get("attributes", []))
            fo.subscribed = bool(fd.get("subscribed", True))
            fo.hidden_on = [int(n) for n in fd.get("hidden_on_connections", [])]
            fo.uv_on = {int(n): int(v) for n, v in
                        fd.get("uidvalidity_on_connections", {}).items()}
            msgs = []
            for md in fd.get("messages", []):
                m = Message()
                m.uid = int(md["uid"])
                if "file" in md:
                    with open(os.path.join(base, md["file"]), "rb") as bf:
                        m.body = bf.read()
                elif "body_b64" in md:
                    m.body = base64.b64decode(md["body_b64"])
                else:
                    m.body = md.get("body", "").encode("utf-8")
                m.flags = list(md.get("flags", []))
                m.date = parse_date(md.get("internaldate", "01-Jan-2020 00:00:00 +0000"))
                m.modseq = int(md.get("modseq", 1))
                m.gm_msgid = md.get("gm_msgid")
                m.gm_thrid = md.get("gm_thrid", m.gm_msgid)
                m.gm_labels = md.get("gm_labels", [])
                m.size_lie = md.get("size_lie")
                m.fetch_no = bool(md.get("fetch_no", False))
                m.hidden_on = [int(n) for n in md.get("hidden_on_connections", [])]
                msgs.append(m)
            msgs.sort(key=lambda x: x.uid)
            for a, b in zip(msgs, msgs[1:]):
                if a.uid == b.uid:
                    raise ValueError("UID %d twice in %s" % (a.uid, fo.name))
            fo.messages = msgs
            top = msgs[-1].uid if msgs else 0
            fo.uidnext = int(fd.get("uidnext", top + 1))
            fo.hms = int(fd.get("highestmodseq", max([1] + [x.modseq for x in msgs])))
            self.folders.append(fo)

    def has(self, cap):
        return cap.upper() in self.capset

    def view_for(self, conn_no):
        """The scenario as connection conn_no sees it: without the folders
        and messages hidden on it (a shallow copy; the shared one is not
        changed)."""
        if not any(conn_no in fo.hidden_on or conn_no in fo.uv_on or
                   any(conn_no in m.hidden_on for m in fo.messages)
                   for fo in self.folders):
            return self
        view = copy.copy(self)
        view.folders = []
        for fo in self.folders:
            if conn_no in fo.hidden_on:
                continue
            nf = Folder()
            for slot in Folder.__slots__:
                setattr(nf, slot, getattr(fo, slot))
            nf.messages = [m for m in fo.messages if conn_no not in m.hidden_on]
            nf.uidvalidity = fo.uv_on.get(conn_no, fo.uidvalidity)
            view.folders.append(nf)
        return view

    def find(self, wire_name):
        """Folder by its wire (mUTF-7) name; INBOX case-insensitive."""
        if wire_name.upper() == "INBOX":
            wire_name = "INBOX"
        for fo in self.folders:
            if fo.wire == wire_name:
                return fo
        return None


class Server:
    def __init__(self, args, password):
        self.args = args
        self.password = password
        self.log = Log(args.log)
        self.lock = threading.Lock()
        self.conn_no = 0
        self.throttle_count = 0
        self.login_count = 0
        self.scenario = None
        self.mtime = None
        self.tls = None
        if args.tls_cert:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(args.tls_cert, args.tls_key)
        self.load()

    def tls_context(self, no, sc):
        """The TLS context for connection no: the scenario's for it, or
        --tls-cert's."""
        files = sc.tls_certs.get(no)
        if files is None:
            return self.tls
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(files[0], files[1])
        return ctx

    def load(self):
        """The current scenario (re-read when its mtime changed)."""
        with self.lock:
            try:
                mt = os.stat(self.args.scenario).st_mtime_ns
            except OSError as exc:
                if self.scenario is None:
                    raise
                self.log("scenario error %s" % exc)
                return self.scenario
            if mt != self.mtime:
                try:
                    sc = Scenario(self.args.scenario)
                    if self.scenario is not None:
                        self.log("scenario reloaded %s" % self.args.scenario)
                    self.scenario, self.mtime = sc, mt
                    self.throttle_count = 0
                    self.login_count = 0
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    if self.scenario is None:
                        raise
                    self.log("scenario error %s" % exc)
            return self.scenario

    def next_conn(self):
        with self.lock:
            self.conn_no += 1
            return self.conn_no

    def throttle(self, cmdname):
        th = self.scenario_quirk("throttle")
        if not th:
            return False
        cmds = [c.upper() for c in th.get("commands", [])]
        if cmds and cmdname not in cmds:
            return False
        every = int(th.get("every", 0))
        if every <= 0:
            return False
        limit = int(th.get("max", 0))
        with self.lock:
            self.throttle_count += 1
            if limit > 0 and self.throttle_count > limit * every:
                return False
            return self.throttle_count % every == 0

    def login_allowed(self):
        """FALSE once login_fail_after logins were let in."""
        after = self.scenario_quirk("login_fail_after")
        if after is None:
            return True
        with self.lock:
            self.login_count += 1
            return self.login_count <= int(after)

    def scenario_quirk(self, name):
        return self.scenario.quirks.get(name)


# ---------------------------------------------------------------------------
# command parsing

class Atom(str):
    pass


class Lit(bytes):
    pass


def tokenize(data):
    """data: list of segments (bytes lines, Lit literals) of one command,
    the lines without CRLF.  Returns the tokens: Atom (may contain a
    [...] part with spaces and parentheses), bytes (quoted string), Lit,
    list (parenthesised)."""
    stack = [[]]
    for seg in data:
        if isinstance(seg, Lit):
            stack[-1].append(seg)
            continue
        i = 0
        n = len(seg)
        while i < n:
            c = seg[i:i + 1]
            if c == b" ":
                i += 1
            elif c == b"(":
                stack.append([])
                i += 1
            elif c == b")":
                if len(stack) < 2:
                    raise Bad("unbalanced )")
                lst = stack.pop()
                stack[-1].append(lst)
                i += 1
            elif c == b'"':
                out = bytearray()
                i += 1
                while True:
                    if i >= n:
                        raise Bad("unterminated quoted string")
                    ch = seg[i:i + 1]
                    if ch == b"\\":
                        nx = seg[i + 1:i + 2]
                        if nx not in (b"\\", b'"'):
                            raise Bad("bad escape in quoted string")
                        out += nx
                        i += 2
                    elif ch == b'"':
                        i += 1
                        break
                    else:
                        out += ch
                        i += 1
                stack[-1].append(bytes(out))
            elif c == b"{":
                # literal marker: the literal itself is the next segment
                m = re.match(rb"\{(\d+)(\+?)\}$", seg[i:])
                if not m:
                    raise Bad("bad literal")
                i = n
            else:
                j = i
                depth = 0
                while j < n:
                    ch = seg[j:j + 1]
                    if ch == b"[":
                        depth += 1
                    elif ch == b"]":
                        depth -= 1
                    elif depth == 0 and ch in (b" ", b"(", b")", b'"', b"{"):
                        break
                    elif ch in (b"\x00",) or ch[0] < 0x20 or ch[0] == 0x7f:
                        raise Bad("control character in atom")
                    j += 1
                if depth != 0:
                    raise Bad("unbalanced [")
                stack[-1].append(Atom(seg[i:j].decode("utf-8", "surrogateescape")))
                i = j
    if len(stack) != 1:
        raise Bad("unbalanced (")
    return stack[0]


def s(tok):
    """astring -> str"""
    if isinstance(tok, list) or tok is None:
        raise Bad("string expected")
    if isinstance(tok, bytes):
        return tok.decode("utf-8", "surrogateescape")
    return str(tok)


def seqset(tok, maxval, is_uid=False):
    """Parse a sequence set -> predicate over numbers; maxval for '*'."""
    text = s(tok)
    ranges = []
    for part in text.split(","):
        m = re.match(r"^(\d+|\*)(?::(\d+|\*))?$", part)
        if not m:
            raise Bad("invalid sequence set %r" % text)
        a = maxval if m.group(1) == "*" else int(m.group(1))
        b = a if m.group(2) is None else (maxval if m.group(2) == "*" else int(m.group(2)))
        if (m.group(1) != "*" and a == 0) or (m.group(2) not in (None, "*") and b == 0):
            raise Bad("invalid sequence set %r (0)" % text)
        if a > b:
            a, b = b, a
        ranges.append((a, b))
    return lambda x: any(a <= x <= b for a, b in ranges)


def qstr(v):
    """An IMAP string: quoted when possible, else a literal (bytes)."""
    if isinstance(v, str):
        v = v.encode("utf-8", "surrogateescape")
    if all(0x20 <= c < 0x7f for c in v) and len(v) < 1000:
        return b'"' + v.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(v) + v


def nstr(v):
    return b"NIL" if v is None else qstr(v)


# ---------------------------------------------------------------------------
# message helpers

def split_header(body):
    """(header incl. the blank line, text)"""
    i = body.find(b"\r\n\r\n")
    j = body.find(b"\n\n")
    cands = [(i, 4), (j, 2)]
    cands = [c for c in cands if c[0] >= 0]
    if not cands:
        return body, b""
    pos, ln = min(cands)
    return body[:pos + ln], body[pos + ln:]


def header_fields(header):
    """[(name_lower, raw bytes of the field incl. continuation lines)]"""
    out = []
    for line in re.split(rb"(?<=\n)", header):
        if line in (b"", b"\r\n", b"\n"):
            continue
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + line)
        else:
            name = line.split(b":", 1)[0].strip().lower()
            out.append((name, line))
    return out


def field_value(header, name):
    for n, raw in header_fields(header):
        if n == name:
            v = raw.split(b":", 1)[1] if b":" in raw else b""
            return re.sub(rb"\r?\n[ \t]", b" ", v).strip()
    return None


def count_lines(b):
    return b.count(b"\n")


def bodystructure(m, extended):
    hdr, text = split_header(m.body)
    base = b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" %d %d' % (
        len(text), count_lines(text))
    if extended:
        base += b" NIL NIL NIL NIL"
    return base + b")"


def envelope(m):
    hdr, _ = split_header(m.body)

    def addr(name):
        v = field_value(hdr, name)
        if v is None:
            return b"NIL"
        mm = re.search(rb"<?([^<>\s@]+)@([^<>\s]+?)>?$", v)
        if not mm:
            return b"NIL"
        disp = v[:mm.start()].strip().strip(b'"').strip() or None
        return b"((" + nstr(disp) + b" NIL " + qstr(mm.group(1)) + b" " + qstr(mm.group(2)) + b"))"

    def ns(name):
        return nstr(field_value(hdr, name))
    frm = addr(b"from")
    sender = addr(b"sender")
    if sender == b"NIL":
        sender = frm
    reply = addr(b"reply-to")
    if reply == b"NIL":
        reply = frm
    return b"(" + b" ".join([ns(b"date"), ns(b"subject"), frm, sender, reply,
                              addr(b"to"), addr(b"cc"), addr(b"bcc"),
                              ns(b"in-reply-to"), ns(b"message-id")]) + b")"


def flag_list(flags):
    out = []
    for f in flags:
        if f.startswith("\\"):
            out.append(f.encode("utf-8"))
        elif re.match(r"^[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|}~]+$", f):
            out.append(f.encode("utf-8"))
        else:
            # a real server would refuse such a keyword; send it as it
            # would be stored (8-bit), for tests of broken sources
            out.append(f.encode("utf-8"))
    return b"(" + b" ".join(out) + b")"


# ---------------------------------------------------------------------------
# one connection

class Session:
    def __init__(self, server, sock, no, peer):
        self.srv = server
        self.sock = sock
        self.no = no
        self.buf = b""
        self.sc = server.load().view_for(no)
        self.authed = False
        self.tls = False
        self.box = None          # selected Folder
        self.readonly = True
        self.fetch_responses = 0
        self.body_responses = 0
        self.holding = False
        self.hold_cur = []
        self.held = []
        self.drip_ms = 0
        self.log = server.log
        self.log("conn %d open %s:%d" % (no, peer[0], peer[1]))

    # -- I/O
    def recv_more(self):
        try:
            d = self.sock.recv(65536)
        except (OSError, ssl.SSLError):
            raise Closed()
        if not d:
            raise Closed()
        self.buf += d

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = self.buf[:i + 1]
                self.buf = self.buf[i + 1:]
                if len(line) > 1000000:
                    raise Closed()
                return line.rstrip(b"\r\n") if line.endswith(b"\r\n") else line[:-1]
            if len(self.buf) > 1000000:
                self.send(b"* BYE line too long\r\n")
                raise Closed()
            self.recv_more()

    def readbytes(self, n):
        while len(self.buf) < n:
            self.recv_more()
        d = self.buf[:n]
        self.buf = self.buf[n:]
        return d

    def send(self, data):
        if self.holding:
            self.hold_cur.append(data)
            return
        try:
            if self.drip_ms:
                for i in range(len(data)):
                    self.sock.sendall(data[i:i + 1])
                    time.sleep(self.drip_ms / 1000.0)
            else:
                self.sock.sendall(data)
        except (OSError, ssl.SSLError):
            raise Closed()

    def send_endless(self, head, filler=b"x"):
        """head, then filler bytes until the client goes away"""
        self.log("conn %d endless %s" % (self.no, head[:60].decode("utf-8", "replace")))
        block = filler * (65536 // len(filler))
        self.send(head)
        while True:
            self.send(block)

    def caps(self):
        out = []
        for c in self.sc.caps:
            u = c.upper()
            if u == "STARTTLS" and (self.tls or self.authed):
                continue
            if (u.startswith("AUTH=") or u in ("SASL-IR", "LOGINDISABLED")) and self.authed:
                continue
            out.append(c)
        return " ".join(out)

    # -- reading one command (line + literals)
    def read_command(self):
        segs = []
        line = self.readline()
        total = 0
        while True:
            segs.append(line)
            m = re.search(rb"\{(\d+)(\+?)\}$", line)
            if not m:
                break
            n = int(m.group(1))
            total += n
            if total > 50 * 1024 * 1024:
                self.send(b"* BYE literal too big\r\n")
                raise Closed()
            if m.group(2):
                if not self.sc.has("LITERAL+"):
                    # a non-synchronizing literal without LITERAL+:
                    # read it anyway, but the command is BAD
                    segs.append(Lit(self.readbytes(n)))
                    raise Bad("LITERAL+ not supported")
            else:
                self.send(b"+ OK\r\n")
            segs.append(Lit(self.readbytes(n)))
            line = self.readline()
        return segs

    def logcmd(self, segs):
        parts = []
        for sg in segs:
            if isinstance(sg, Lit):
                continue
            parts.append(sg.decode("utf-8", "replace"))
        text = " ".join(parts)
        words = text.split(" ", 3)
        if len(words) >= 2:
            cmd = words[1].upper()
            if cmd in ("LOGIN", "AUTHENTICATE"):
                text = "%s %s <redacted>" % (words[0], words[1])
        if len(text) > 400:
            text = text[:400] + "..."
        self.log("conn %d < %s" % (self.no, text))

    def tagged(self, tag, status, text):
        self.log("conn %d > %s %s %s" % (self.no, tag, status, text))
        self.send(("%s %s %s\r\n" % (tag, status, text)).encode("utf-8"))

    # -- main loop
    def run(self):
        try:
            q = self.sc.quirks
            if q.get("greeting_delay_ms"):
                time.sleep(q["greeting_delay_ms"] / 1000.0)
            self.send(("* OK [CAPABILITY %s] quirkyimap ready.\r\n" % self.caps()).encode())
            while True:
                tag = "*"
                try:
                    segs = self.read_command()
                    self.logcmd(segs)
                    first = segs[0]
                    m = re.match(rb"^([!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|~]+) ([A-Za-z]+)(?: |$)", first)
                    if not m:
                        tag = first.split(b" ", 1)[0].decode("utf-8", "replace") or "*"
                        if not re.match(r"^[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|~]+$", tag):
                            tag = "*"
                        raise Bad("Error in IMAP command received by server.")
                    tag = m.group(1).decode()
                    cmd = m.group(2).decode().upper()
                    rest = [first[m.end():]] + segs[1:]
                    toks = tokenize(rest)
                    if cmd == "UID":
                        if not toks or not isinstance(toks[0], Atom):
                            raise Bad("UID needs a command")
                        sub = toks[0].upper()
                        toks = toks[1:]
                        name = "UID " + sub
                    else:
                        sub = None
                        name = cmd
                    if self.srv.throttle(name):
                        self.log("conn %d throttled %s" % (self.no, tag))
                        th = q.get("throttle") or {}
                        self.tagged(tag, "NO", th.get("text", "[THROTTLED] Too many commands, slow down"))
                        continue
                    was_authed = self.authed
                    piece = q.get("pieces_reversed") and b"BODY.PEEK[]<" in first
                    if piece:
                        self.holding = True
                    try:
                        text = self.dispatch(tag, cmd, sub, toks)
                        if text is None:
                            return
                        if text is not _SENT:
                            self.tagged(tag, "OK", text)
                    finally:
                        if piece:
                            self.hold_piece()
                    if text is _SENT:
                        continue
                    if self.authed and not was_authed and q.get("drip_ms") and \
                            not q.get("drip_from_uid"):
                        self.log("conn %d drip" % self.no)
                        self.drip_ms = int(q["drip_ms"])
                except Bad as exc:
                    self.tagged(tag, "BAD", str(exc))
                except No as exc:
                    self.tagged(tag, "NO", str(exc))
        except Closed:
            pass
        finally:
            self.log("conn %d close" % self.no)
            try:
                self.sock.close()
            except OSError:
                pass

    def hold_piece(self):
        """the answer of a partial body FETCH is held while the next
        command, already read, is one too; then all go, last first"""
        self.holding = False
        self.held.append(b"".join(self.hold_cur))
        self.hold_cur = []
        nl = self.buf.find(b"\n")
        if nl >= 0 and b"BODY.PEEK[]<" in self.buf[:nl]:
            return
        if len(self.held) > 1:
            self.log("conn %d pieces reversed %d" % (self.no, len(self.held)))
        units, self.held = self.held, []
        for unit in reversed(units):
            self.send(unit)

    def need_auth(self):
        if not self.authed:
            raise Bad("Command not allowed before login")

    def need_box(self):
        self.need_auth()
        if self.box is None:
            raise Bad("No mailbox selected")

    def need_cap(self, cap):
        if not self.sc.has(cap):
            raise Bad("Unknown command (%s not advertised)" % cap)

    def dispatch(self, tag, cmd, sub, t):
        if cmd == "CAPABILITY":
            self.noargs(t)
            self.send(("* CAPABILITY %s\r\n" % self.caps()).encode())
            return "Capability completed."
        if cmd == "NOOP" or cmd == "CHECK":
            self.noargs(t)
            if cmd == "CHECK":
                self.need_box()
            return "%s completed." % cmd.capitalize()
        if cmd == "LOGOUT":
            self.noargs(t)
            self.send(b"* BYE Logging out\r\n")
            self.tagged(tag, "OK", "Logout completed.")
            return None
        if cmd == "STARTTLS":
            return self.cmd_starttls(tag, t)
        if cmd == "LOGIN":
            return self.cmd_login(t)
        if cmd == "AUTHENTICATE":
            return self.cmd_authenticate(t)
        if cmd == "ID":
            self.need_cap("ID")
            if len(t) != 1:
                raise Bad("ID takes one argument")
            self.send(b'* ID ("name" "quirkyimap")\r\n')
            return "ID completed."
        if cmd == "ENABLE":
            self.need_cap("ENABLE")
            self.need_auth()
            if not t:
                raise Bad("ENABLE needs arguments")
            en = [s(x) for x in t if s(x).upper() in ("CONDSTORE", "QRESYNC") and self.sc.has(s(x))]
            self.send(("* ENABLED%s\r\n" % "".join(" " + e for e in en)).encode())
            return "Enabled."
        if cmd == "NAMESPACE":
            self.need_cap("NAMESPACE")
            self.need_auth()
            self.noargs(t)
            self.send(b"* NAMESPACE ((" + qstr(mutf7_encode(self.sc.prefix)) + b" " +
                      qstr(self.sc.sep) + b")) NIL NIL\r\n")
            return "Namespace completed."
        if cmd in ("LIST", "LSUB"):
            self.need_auth()
            return self.cmd_list(cmd, t)
        if cmd == "STATUS":
            self.need_auth()
            return self.cmd_status(t)
        if cmd in ("SELECT", "EXAMINE"):
            self.need_auth()
            return self.cmd_select(cmd, t)
        if cmd == "CLOSE":
            self.need_box()
            self.noargs(t)
            self.box = None
            return "Close completed."
        if cmd == "UNSELECT":
            self.need_cap("UNSELECT")
            self.need_box()
            self.noargs(t)
            self.box = None
            return "Unselect completed."
        if cmd == "IDLE":
            self.need_cap("IDLE")
            self.need_auth()
            self.noargs(t)
            self.send(b"+ idling\r\n")
            line = self.readline()
            if line.upper() != b"DONE":
                raise Bad("Expected DONE.")
            return "Idle completed."
        if cmd == "FETCH" or (cmd == "UID" and sub == "FETCH"):
            self.need_box()
            return self.cmd_fetch(t, cmd == "UID")
        if cmd == "SEARCH" or (cmd == "UID" and sub == "SEARCH"):
            self.need_box()
            return self.cmd_search(t, cmd == "UID", tag)
        if cmd == "UID":
            if sub == "EXPUNGE":
                self.need_cap("UIDPLUS")
            if sub in ("STORE", "COPY", "MOVE", "EXPUNGE"):
                self.need_box()
                raise No("[CANNOT] This server is read-only")
            raise Bad("Unknown UID command %s" % sub)
        if cmd in ("STORE", "COPY", "MOVE", "EXPUNGE"):
            self.need_box()
            raise No("[CANNOT] This server is read-only")
        if cmd in ("APPEND", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE"):
            self.need_auth()
            raise No("[CANNOT] This server is read-only")
        raise Bad("Unknown command.")

    def noargs(self, t):
        if t:
            raise Bad("No arguments expected")

    # -- authentication
    def cmd_starttls(self, tag, t):
        self.noargs(t)
        if not self.sc.has("STARTTLS") or self.tls or self.authed:
            raise Bad("STARTTLS not available")
        if self.srv.tls is None:
            raise No("[UNAVAILABLE] No certificate configured")
        if self.buf:
            raise Bad("Pipelined data after STARTTLS")
        self.tagged(tag, "OK", "Begin TLS negotiation now.")
        try:
            self.sock = self.srv.tls_context(self.no, self.sc).wrap_socket(
                self.sock, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self.log("conn %d tls failed %s" % (self.no, exc))
            raise Closed()
        self.tls = True
        self.log("conn %d tls" % self.no)
        return _SENT

    def check_login(self, user, password):
        lf = self.sc.quirks.get("login_fail")
        if lf == "unavailable":
            raise No("[UNAVAILABLE] Temporary authentication failure")
        ok = (lf is None and user == self.sc.user and self.srv.password is not None
              and password == self.srv.password and self.srv.login_allowed())
        self.log("conn %d login %s %s" % (self.no, user, "ok" if ok else "failed"))
        if not ok:
            # how servers say no: Courier without a code, others with
            # one of RFC 5530's
            raise No({"courier": "Login failed.",
                      "authorization": "[AUTHORIZATIONFAILED] Not authorized.",
                      "expired": "[EXPIRED] Password expired."}.get(
                          lf, "[AUTHENTICATIONFAILED] Authentication failed."))
        self.authed = True
        return "[CAPABILITY %s] Logged in" % self.caps()

    def cmd_login(self, t):
        if self.authed:
            raise Bad("Already logged in")
        if len(t) != 2 or any(isinstance(x, list) for x in t):
            raise Bad("LOGIN takes user and password")
        return self.check_login(s(t[0]), s(t[1]))

    def cmd_authenticate(self, t):
        if self.authed:
            raise Bad("Already logged in")
        if not t or len(t) > 2:
            raise Bad("AUTHENTICATE takes a mechanism")
        mech = s(t[0]).upper()
        if mech != "PLAIN" or not self.sc.has("AUTH=PLAIN"):
            raise No("Unsupported authentication mechanism.")
        if len(t) == 2:
            if not self.sc.has("SASL-IR"):
                raise Bad("Initial response without SASL-IR")
            resp = s(t[1])
        else:
            self.send(b"+ \r\n")
            resp = self.readline().decode("ascii", "replace")
        if resp == "*":
            raise Bad("Authentication aborted")
        if resp == "=":
            resp = ""
        try:
            blob = base64.b64decode(resp, validate=True)
        except ValueError:
            raise Bad("Invalid base64 data in continued response")
        parts = blob.split(b"\0")
        if len(parts) != 3:
            raise No("[AUTHENTICATIONFAILED] Authentication failed.")
        authz, user, pw = (p.decode("utf-8", "replace") for p in parts)
        if authz and authz != user:
            raise No("[AUTHENTICATIONFAILED] Authentication failed.")
        return self.check_login(user, pw)

    # -- listing
    def visible_tree(self):
        """[(wire name, attrs list, Folder or None)] incl. implied parents
        (\\NonExistent in this tree; LIST only shows them where RFC 3501
        says: for % patterns)"""
        sep = self.sc.sep
        names = {}
        for fo in self.sc.folders:
            names[fo.wire] = fo
        out = {}
        for fo in self.sc.folders:
            out[fo.wire] = fo
            if sep:
                parts = fo.wire.split(sep)
                for i in range(1, len(parts)):
                    p = sep.join(parts[:i])
                    if p not in out and p not in names:
                        out[p] = None
        return out

    def attrs_for(self, wire, fo, tree, want_special, want_children=True):
        sep = self.sc.sep
        attrs = []
        if fo is None:
            attrs.append("\\NonExistent")
        else:
            attrs.extend(fo.attrs)
        if want_children:
            kids = any(n.startswith(wire + sep) for n in tree) if sep else False
            attrs.append("\\HasChildren" if kids else "\\HasNoChildren")
        if want_special and fo is not None and fo.special:
            attrs.append(fo.special)
        return attrs

    def match_re(self, pattern):
        sep = re.escape(self.sc.sep) if self.sc.sep else ""
        rx = ""
        for ch in pattern:
            if ch == "*":
                rx += ".*"
            elif ch == "%":
                rx += "[^%s]*" % sep if sep else ".*"
            else:
                rx += re.escape(ch)
        return re.compile("^" + rx + "$", re.DOTALL)

    def cmd_list(self, cmd, t):
        sel_opts = []
        ret_opts = []
        ret_status = None
        extended = False
        if cmd == "LIST" and t and isinstance(t[0], list):
            if not self.sc.has("LIST-EXTENDED"):
                raise Bad("LIST selection options need LIST-EXTENDED")
            sel_opts = [s(x).upper() for x in t[0]]
            for o in sel_opts:
                if o not in ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"):
                    raise Bad("Unknown LIST selection option %s" % o)
            if "SPECIAL-USE" in sel_opts and not self.sc.has("SPECIAL-USE"):
                raise Bad("SPECIAL-USE not supported")
            t = t[1:]
            extended = True
        if len(t) < 2:
            raise Bad("%s needs reference and pattern" % cmd)
        ref = s(t[0])
        pats = t[1]
        if isinstance(pats, list):
            if cmd != "LIST" or not self.sc.has("LIST-EXTENDED"):
                raise Bad("Multiple patterns need LIST-EXTENDED")
            pats = [s(p) for p in pats]
        else:
            pats = [s(pats)]
        rest = t[2:]
        if rest:
            if cmd != "LIST" or len(rest) != 2 or not isinstance(rest[0], Atom) \
                    or rest[0].upper() != "RETURN" or not isinstance(rest[1], list):
                raise Bad("Invalid LIST arguments")
            r = rest[1]
            i = 0
            while i < len(r):
                o = s(r[i]).upper()
                if o == "SPECIAL-USE":
                    if not self.sc.has("SPECIAL-USE"):
                        raise Bad("RETURN (SPECIAL-USE) needs SPECIAL-USE")
                elif o in ("SUBSCRIBED", "CHILDREN"):
                    if not self.sc.has("LIST-EXTENDED"):
                        raise Bad("RETURN options need LIST-EXTENDED")
                elif o == "STATUS":
                    if not self.sc.has("LIST-STATUS") or i + 1 >= len(r) or not isinstance(r[i + 1], list):
                        raise Bad("RETURN STATUS needs LIST-STATUS and items")
                    ret_status = [s(x).upper() for x in r[i + 1]]
                    i += 1
                else:
                    raise Bad("Unknown RETURN option %s" % o)
                ret_opts.append(o)
                i += 1
            extended = True
        sep = self.sc.sep
        if cmd == "LIST" and pats == [""]:
            self.send(b"* LIST (\\Noselect) " + (qstr(sep) if sep else b"NIL") + b' ""\r\n')
            return "List completed."
        q = self.sc.quirks
        if any("*" in (ref + p) for p in pats):
            if q.get("list_endless_line"):
                self.send_endless(b"* LIST (\\HasNoChildren) " + qstr(sep) + b" ", b"Endless")
            if q.get("list_literal_4g"):
                self.send_endless(b"* LIST (\\HasNoChildren) " + qstr(sep) + b" {4294967296}\r\n")
        tree = self.visible_tree()
        want_special = self.sc.has("SPECIAL-USE") and (
            not extended or "SPECIAL-USE" in ret_opts or "SPECIAL-USE" in sel_opts)
        lines = []
        for wire in sorted(tree, key=lambda w: (w != "INBOX", w)):
            fo = tree[wire]
            matched = False
            for p in pats:
                full = ref + p
                name_cmp = wire
                rx = self.match_re(full if not full.upper().startswith("INBOX") or wire != "INBOX"
                                   else "INBOX" + full[5:])
                if rx.match(name_cmp):
                    matched = True
            if not matched:
                continue
            subscribed = fo is not None and fo.subscribed
            if cmd == "LSUB" or "SUBSCRIBED" in sel_opts:
                if not subscribed:
                    continue
            if fo is None:
                # an implied parent: only listed by a % match in plain
                # LIST (as \Noselect), never by *
                if cmd == "LSUB" or extended or all("%" not in (ref + p) for p in pats):
                    continue
                attrs = ["\\Noselect", "\\HasChildren"]
            else:
                attrs = self.attrs_for(wire, fo, tree, want_special)
                if cmd == "LSUB":
                    attrs = [a for a in attrs if a.lower() not in ("\\haschildren", "\\hasnochildren")
                             and a.lower() not in SPECIAL_USE]
            if "SUBSCRIBED" in ret_opts or "SUBSCRIBED" in sel_opts:
                if subscribed:
                    attrs.append("\\Subscribed")
            lines.append(("* %s (%s) " % (cmd, " ".join(attrs))).encode() +
                         (qstr(sep) if sep else b"NIL") + b" " + qstr(wire) + b"\r\n")
            if ret_status and fo is not None and "\\NOSELECT" not in (a.upper() for a in fo.attrs):
                lines.append(self.status_line(fo, ret_status))
        self.send(b"".join(lines))
        if q.get("extra_folders") and any("*" in (ref + p) for p in pats):
            self.send_extra_folders(cmd, sep, int(q["extra_folders"]))
        return "%s completed." % cmd.capitalize()

    def send_extra_folders(self, cmd, sep, n):
        self.log("conn %d extra folders %d" % (self.no, n))
        for start in range(1, n + 1, 10000):
            self.send(b"".join(
                ("* %s (\\HasNoChildren) " % cmd).encode() + qstr(sep) +
                b' "Extra%06d"\r\n' % i for i in range(start, min(n, start + 9999) + 1)))

    def folder_arg(self, tok):
        wire = s(tok)
        # a folder whose wire name is raw (wire_b64) is found as it is
        fo = self.sc.find(wire)
        if fo is None:
            try:
                mutf7_decode(wire)
            except ValueError:
                raise No("[CANNOT] Invalid mailbox name")
            raise No("[NONEXISTENT] Mailbox doesn't exist: %s" % wire)
        if any(a.upper() in ("\\NOSELECT", "\\NONEXISTENT") for a in fo.attrs):
            raise No("[CANNOT] Mailbox isn't selectable: %s" % wire)
        return fo

    def status_line(self, fo, items):
        out = []
        for it in items:
            if it == "MESSAGES":
                v = len(fo.messages)
            elif it == "RECENT":
                v = 0
            elif it == "UIDNEXT":
                v = fo.uidnext
            elif it == "UIDVALIDITY":
                v = fo.uidvalidity
            elif it == "UNSEEN":
                v = sum(1 for m in fo.messages if "\\seen" not in (f.lower() for f in m.flags))
            elif it == "HIGHESTMODSEQ" and self.sc.has("CONDSTORE"):
                v = fo.hms
            elif it == "SIZE" and self.sc.has("STATUS=SIZE"):
                v = sum(len(m.body) for m in fo.messages)
            else:
                raise Bad("Invalid STATUS item %s" % it)
            out.append("%s %d" % (it, v))
        return b"* STATUS " + qstr(fo.wire) + (" (%s)\r\n" % " ".join(out)).encode()

    def cmd_status(self, t):
        if len(t) != 2 or not isinstance(t[1], list):
            raise Bad("STATUS needs mailbox and items")
        items = [s(x).upper() for x in t[1]]
        line = self.status_line(self.folder_arg(t[0]), items)
        self.send(line)
        return "Status completed."

    def cmd_select(self, cmd, t):
        self.box = None
        if not t:
            raise Bad("%s needs a mailbox" % cmd)
        if len(t) == 2:
            if not isinstance(t[1], list) or [s(x).upper() for x in t[1]] not in (["CONDSTORE"],) \
                    or not self.sc.has("CONDSTORE"):
                raise Bad("Invalid %s parameters" % cmd)
        elif len(t) != 1:
            raise Bad("Invalid %s arguments" % cmd)
        fo = self.folder_arg(t[0])
        kws = []
        for m in fo.messages:
            for f in m.flags:
                if not f.startswith("\\") and f not in kws:
                    kws.append(f)
        flags = SYSTEM_FLAGS + kws
        perm = self.sc.permflags
        if perm is None:
            perm = SYSTEM_FLAGS + kws + ["\\*"]
        out = [b"* FLAGS " + flag_list(flags) + b"\r\n",
               b"* OK [PERMANENTFLAGS " + flag_list([] if cmd == "EXAMINE" else perm) + b"] Flags permitted.\r\n",
               b"* %d EXISTS\r\n" % len(fo.messages),
               b"* 0 RECENT\r\n",
               b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % fo.uidvalidity,
               b"* OK [UIDNEXT %d] Predicted next UID\r\n" % fo.uidnext]
        if self.sc.has("CONDSTORE"):
            out.append(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % fo.hms)
        self.send(b"".join(out))
        self.box = fo
        self.readonly = cmd == "EXAMINE"
        return "[%s] %s completed." % ("READ-ONLY" if self.readonly else "READ-WRITE",
                                         cmd.capitalize())

    # -- FETCH
    def resolve_set(self, tok, is_uid):
        msgs = self.box.messages
        if is_uid:
            top = msgs[-1].uid if msgs else 0
            pred = seqset(tok, top, True)
            return [(i + 1, m) for i, m in enumerate(msgs) if pred(m.uid)]
        text = s(tok)
        pred = seqset(tok, len(msgs))
        if not msgs and text != "*" and "*" not in text:
            raise Bad("Invalid messageset (no messages)")
        for part in text.replace(":", ",").split(","):
            if part != "*" and int(part) > len(msgs):
                raise Bad("Invalid messageset")
        return [(i + 1, m) for i, m in enumerate(msgs) if pred(i + 1)]

    def parse_items(self, tok):
        if isinstance(tok, list):
            items = [s(x) for x in tok]
        else:
            a = s(tok).upper()
            macros = {"ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
                      "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
                      "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]}
            items = macros.get(a, [s(tok)])
        if not items:
            raise Bad("Empty FETCH item list")
        out = []
        for it in items:
            u = it.upper()
            if u in ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "RFC822",
                     "RFC822.HEADER", "RFC822.TEXT", "ENVELOPE", "BODY", "BODYSTRUCTURE"):
                out.append((u, None, None, False))
                continue
            if u == "MODSEQ":
                if not self.sc.has("CONDSTORE"):
                    raise Bad("Unknown FETCH item MODSEQ")
                out.append((u, None, None, False))
                continue
            if u in ("X-GM-MSGID", "X-GM-THRID", "X-GM-LABELS"):
                if not self.sc.has("X-GM-EXT-1"):
                    raise Bad("Unknown FETCH item %s" % u)
                out.append((u, None, None, False))
                continue
            m = re.match(r"^(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)\[(.*)\](?:<(\d+)(?:\.(\d+))?>)?$", it, re.I | re.S)
            if not m:
                raise Bad("Invalid FETCH item %s" % it)
            kind = m.group(1).upper()
            if kind.startswith("BINARY") and not self.sc.has("BINARY"):
                raise Bad("Unknown FETCH item %s" % it)
            if m.group(3) is not None and m.group(4) is None:
                raise Bad("Partial needs offset.length")
            if m.group(4) is not None and int(m.group(4)) == 0:
                raise Bad("Partial length 0")
            section = m.group(2)
            self.check_section(section)
            partial = (int(m.group(3)), int(m.group(4))) if m.group(3) is not None else None
            out.append((kind, section, partial, True))
        return out

    def check_section(self, section):
        u = section.upper()
        if u in ("", "HEADER", "TEXT", "MIME", "1", "1.MIME"):
            if u == "MIME":
                raise Bad("Invalid section MIME")
            return
        m = re.match(r"^(?:1\.)?HEADER\.FIELDS(\.NOT)? \((.+)\)$", section, re.I | re.S)
        if m:
            for f in m.group(2).split():
                if not re.match(r"^[!-9;-~]+$", f):
                    raise Bad("Invalid header field name %s" % f)
            return
        if re.match(r"^\d+(\.\d+)*(\.(HEADER|TEXT|MIME))?$", u):
            return
        raise Bad("Invalid section %s" % section)

    def section_data(self, m, section):
        """(bytes or None, is_body)"""
        hdr, text = split_header(m.body)
        u = section.upper()
        if u == "":
            return m.body, True
        if u == "HEADER":
            return hdr, False
        if u in ("TEXT", "1"):
            return text, True
        if u == "1.MIME":
            return b"", False
        mm = re.match(r"^HEADER\.FIELDS(\.NOT)? \((.+)\)$", section, re.I | re.S)
        if mm:
            names = set(f.lower().encode() for f in mm.group(2).split())
            out = b"".join(raw for n, raw in header_fields(hdr)
                           if (n in names) != bool(mm.group(1)))
            return out + b"\r\n", False
        return None, True

    def cmd_fetch(self, t, is_uid):
        if len(t) not in (2, 3):
            raise Bad("FETCH needs a set and items")
        changedsince = None
        if len(t) == 3:
            mod = t[2]
            if not isinstance(mod, list) or len(mod) != 2 or s(mod[0]).upper() != "CHANGEDSINCE":
                raise Bad("Invalid FETCH modifier")
            if not self.sc.has("CONDSTORE"):
                raise Bad("CHANGEDSINCE needs CONDSTORE")
            try:
                changedsince = int(s(mod[1]))
            except ValueError:
                raise Bad("Invalid CHANGEDSINCE value")
        items = self.parse_items(t[1])
        names = [i[0] for i in items]
        if is_uid and "UID" not in names:
            items.insert(0, ("UID", None, None, False))
        if changedsince is not None and "MODSEQ" not in names:
            items.append(("MODSEQ", None, None, False))
        wants_body = any(i[3] or i[0] in ("RFC822", "RFC822.HEADER", "RFC822.TEXT") for i in items)
        sel = self.resolve_set(t[0], is_uid)
        failed = False
        q = self.sc.quirks
        bye_conns = q.get("bye_connections")
        if q.get("bye_after_body_responses") is not None:
            bye_n = q["bye_after_body_responses"]
            counted = lambda: self.body_responses
        else:
            bye_n = q.get("bye_after_fetch_responses")
            counted = lambda: self.fetch_responses
        bye_here = bye_n is not None and (bye_conns is None or self.no in bye_conns)
        if q.get("bye_after_body_responses") is not None and not wants_body:
            bye_here = False
        for seq, m in sel:
            if changedsince is not None and m.modseq <= changedsince:
                continue
            if wants_body and m.fetch_no:
                failed = True
                continue
            parts = []
            for kind, section, partial, _ in items:
                parts.append(self.fetch_item(m, kind, section, partial))
            if bye_here and counted() >= bye_n:
                self.log("conn %d bye" % self.no)
                self.send(b"* BYE Connection reset by quirk\r\n")
                raise Closed()
            data = b"* %d FETCH (" % seq + b" ".join(p[0] for p in parts) + b")\r\n"
            self.send(data)
            self.fetch_responses += 1
            if wants_body:
                self.body_responses += 1
            for _, kindlog, n in (p for p in parts if p[1]):
                self.log("conn %d %s %s %d %d" % (self.no, kindlog, self.box.name, m.uid, n))
        if bye_here and counted() >= bye_n and sel:
            self.log("conn %d bye" % self.no)
            self.send(b"* BYE Connection reset by quirk\r\n")
            raise Closed()
        if failed:
            raise No(q.get("fetch_no_text", "Some messages could not be FETCHed (Failure)"))
        return "Fetch completed."

    def fetch_item(self, m, kind, section, partial):
        """(bytes, log kind or None, literal size)"""
        def lit(name, data, logkind):
            d = self.sc.quirks.get("fetch_delay_ms")
            if d:
                time.sleep(d / 1000.0)
            q = self.sc.quirks
            if logkind == "body" and q.get("drip_from_uid") and m.uid >= int(q["drip_from_uid"]) \
                    and not self.drip_ms:
                self.log("conn %d drip" % self.no)
                self.drip_ms = int(q.get("drip_ms", 1000))
            if logkind == "body" and q.get("fetch_literal_4g"):
                self.send_endless(b"* 1 FETCH (UID %d " % m.uid + name + b" {4294967296}\r\n")
            return (name + b" {%d}\r\n" % len(data) + data, logkind, len(data))
        if kind == "UID":
            return (b"UID %d" % m.uid, None, 0)
        if kind == "FLAGS":
            return (b"FLAGS " + flag_list(m.flags), None, 0)
        if kind == "INTERNALDATE":
            return (b'INTERNALDATE "' + m.date.encode() + b'"', None, 0)
        if kind == "RFC822.SIZE":
            return (b"RFC822.SIZE %d" % (m.size_lie if m.size_lie is not None else len(m.body)), None, 0)
        if kind == "MODSEQ":
            return (b"MODSEQ (%d)" % m.modseq, None, 0)
        if kind == "X-GM-MSGID":
            return (b"X-GM-MSGID %d" % int(m.gm_msgid or 0), None, 0)
        if kind == "X-GM-THRID":
            return (b"X-GM-THRID %d" % int(m.gm_thrid or 0), None, 0)
        if kind == "X-GM-LABELS":
            labs = []
            for lb in m.gm_labels:
                labs.append(lb.encode() if lb.startswith("\\") else qstr(mutf7_encode(lb)))
            return (b"X-GM-LABELS (" + b" ".join(labs) + b")", None, 0)
        if kind == "ENVELOPE":
            return (b"ENVELOPE " + envelope(m), None, 0)
        if kind == "BODY" and section is None:
            return (b"BODY " + bodystructure(m, False), None, 0)
        if kind == "BODYSTRUCTURE":
            return (b"BODYSTRUCTURE " + bodystructure(m, True), None, 0)
        hdr, text = split_header(m.body)
        if kind == "RFC822":
            return lit(b"RFC822", m.body, "body")
        if kind == "RFC822.HEADER":
            return lit(b"RFC822.HEADER", hdr, "header")
        if kind == "RFC822.TEXT":
            return lit(b"RFC822.TEXT", text, "body")
        data, is_body = self.section_data(m, section)
        name = (b"BINARY" if kind.startswith("BINARY") else b"BODY") + b"[" + section.encode() + b"]"
        if kind == "BINARY.SIZE":
            return (b"BINARY.SIZE[" + section.encode() + b"] %d" % len(data or b""), None, 0)
        if data is None:
            return (name + b" NIL", None, 0)
        if partial is not None:
            off, ln = partial
            if self.sc.quirks.get("endless_pieces") and is_body:
                # as much as asked for, past the end, for ever
                data = (data * (ln // max(len(data), 1) + 2))[:ln]
            else:
                data = data[off:off + ln]
            name += b"<%d>" % off
        return lit(name, data, "body" if is_body else "header")

    # -- SEARCH
    def cmd_search(self, t, is_uid, tag=""):
        ret_all = False
        if t and isinstance(t[0], Atom) and t[0].upper() == "RETURN":
            if not self.sc.has("ESEARCH"):
                raise Bad("ESEARCH not supported")
            if len(t) < 2 or not isinstance(t[1], list) or \
                    [s(x).upper() for x in t[1]] not in ([], ["ALL"]):
                raise Bad("Only RETURN (ALL) is supported")
            ret_all = True
            t = t[2:]
        if t and isinstance(t[0], Atom) and t[0].upper() == "CHARSET":
            if len(t) < 2 or s(t[1]).upper() not in ("UTF-8", "US-ASCII"):
                raise No("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset")
            t = t[2:]
        if not t:
            raise Bad("Missing search criteria")
        msgs = self.box.messages
        pos = [0]
        used_modseq = [False]

        def crit(toks, i):
            """-> (predicate(seq, m), next index)"""
            if i >= len(toks):
                raise Bad("Missing search argument")
            tok = toks[i]
            if isinstance(tok, list):
                preds = []
                j = 0
                while j < len(tok):
                    p, j = crit(tok, j)
                    preds.append(p)
                if not preds:
                    raise Bad("Empty search list")
                return (lambda q, m, ps=preds: all(p(q, m) for p in ps)), i + 1
            k = s(tok).upper()

            def arg(n=1):
                if i + n >= len(toks):
                    raise Bad("Missing argument to %s" % k)
                return toks[i + n]

            def hasflag(f):
                return lambda q, m: f.lower() in (x.lower() for x in m.flags)
            simple_flags = {"ANSWERED": "\\Answered", "DELETED": "\\Deleted",
                            "DRAFT": "\\Draft", "FLAGGED": "\\Flagged", "SEEN": "\\Seen"}
            if k == "ALL":
                return (lambda q, m: True), i + 1
            if k in simple_flags:
                return hasflag(simple_flags[k]), i + 1
            if k.startswith("UN") and k[2:] in simple_flags:
                p = hasflag(simple_flags[k[2:]])
                return (lambda q, m: not p(q, m)), i + 1
            if k in ("RECENT", "NEW"):
                return (lambda q, m: False), i + 1
            if k == "OLD":
                return (lambda q, m: True), i + 1
            if k in ("KEYWORD", "UNKEYWORD"):
                p = hasflag(s(arg()))
                if k == "KEYWORD":
                    return p, i + 2
                return (lambda q, m: not p(q, m)), i + 2
            if k == "NOT":
                p, j = crit(toks, i + 1)
                return (lambda q, m: not p(q, m)), j
            if k == "OR":
                p1, j = crit(toks, i + 1)
                p2, j = crit(toks, j)
                return (lambda q, m: p1(q, m) or p2(q, m)), j
            if k == "UID":
                top = msgs[-1].uid if msgs else 0
                pr = seqset(arg(), top)
                return (lambda q, m: pr(m.uid)), i + 2
            if k in ("LARGER", "SMALLER"):
                n = int(s(arg()))
                if k == "LARGER":
                    return (lambda q, m: len(m.body) > n), i + 2
                return (lambda q, m: len(m.body) < n), i + 2
            if k in ("BEFORE", "ON", "SINCE"):
                mm = re.match(r"^(\d{1,2})-([A-Za-z]{3})-(\d{4})$", s(arg()))
                if not mm or mm.group(2).capitalize() not in MONTHS:
                    raise Bad("Invalid date")
                day = calendar.timegm((int(mm.group(3)), MONTHS.index(mm.group(2).capitalize()) + 1,
                                       int(mm.group(1)), 0, 0, 0, 0, 0, 0))

                def mday(m):
                    e = date_epoch(m.date)
                    # the date in the message's own zone
                    off = m.date.strip()[-5:]
                    sec = (int(off[1:3]) * 60 + int(off[3:5])) * 60 * (1 if off[0] == "+" else -1)
                    lt = time.gmtime(e + sec)
                    return calendar.timegm((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, 0))
                if k == "BEFORE":
                    return (lambda q, m: mday(m) < day), i + 2
                if k == "ON":
                    return (lambda q, m: mday(m) == day), i + 2
                return (lambda q, m: mday(m) >= day), i + 2
            if k == "MODSEQ":
                if not self.sc.has("CONDSTORE"):
                    raise Bad("Unknown search key MODSEQ")
                used_modseq[0] = True
                j = i + 1
                if j + 2 < len(toks) + 0 and isinstance(toks[j], bytes):
                    j += 2  # entry name and type
                if j >= len(toks):
                    raise Bad("Missing MODSEQ value")
                n = int(s(toks[j]))
                return (lambda q, m: m.modseq >= n), j + 1
            if k == "X-GM-MSGID" and self.sc.has("X-GM-EXT-1"):
                n = int(s(arg()))
                return (lambda q, m: int(m.gm_msgid or 0) == n), i + 2
            if re.match(r"^[0-9*][0-9*:,]*$", k):
                pr = seqset(tok, len(msgs))
                return (lambda q, m: pr(q)), i + 1
            raise Bad("Unknown search key %s" % k)

        preds = []
        i = 0
        while i < len(t):
            p, i = crit(t, i)
            preds.append(p)
        hits = [(q, m) for q, m in ((n + 1, mm) for n, mm in enumerate(msgs))
                if all(p(q, m) for p in preds)]
        if ret_all:
            if self.sc.quirks.get("esearch_silent"):
                # OK without the ESEARCH reply
                self.log("conn %d esearch silent" % self.no)
                return "Search completed."
            line = b'* ESEARCH (TAG "%s")' % tag.encode() + (b" UID" if is_uid else b"")
            if hits:
                line += b" ALL " + ",".join(
                    str(m.uid if is_uid else q) for q, m in hits).encode()
            self.send(line + b"\r\n")
            return "Search completed."
        line = b"* SEARCH"
        for q, m in hits:
            line += b" %d" % (m.uid if is_uid else q)
        if used_modseq[0] and hits:
            line += b" (MODSEQ %d)" % max(m.modseq for _, m in hits)
        self.send(line + b"\r\n")
        return "Search completed."


_SENT = object()  # dispatch() result: the tagged reply was sent already


def serve_conn(server, sock, peer):
    Session(server, sock, server.next_conn(), peer).run()


def main():
    ap = argparse.ArgumentParser(description="scripted IMAP server for the tests",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--log")
    ap.add_argument("--pidfile")
    ap.add_argument("--daemon", action="store_true")
    ap.add_argument("--password-file")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
    else:
        password = os.environ.get("QUIRKY_PASSWORD")
        if password is None:
            ap.error("QUIRKY_PASSWORD is not set (or give --password-file)")
    args.scenario = os.path.abspath(args.scenario)
    for a in ("log", "pidfile", "tls_cert", "tls_key"):
        if getattr(args, a):
            setattr(args, a, os.path.abspath(getattr(args, a)))
    try:
        server = Server(args, password)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        rigimap.die("scenario %s: %s" % (args.scenario, exc))
    lsock = rigimap.serve_listen(args.port, 128, args.daemon, args.pidfile)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    rigimap.accept_forever(lsock, lambda c, peer: serve_conn(server, c, peer),
                           server.log)


if __name__ == "__main__":
    main()
