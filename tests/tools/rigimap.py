"""Shared IMAP helpers of the test tools (Python 3 stdlib only).

- modified UTF-7 (RFC 3501 section 5.1.3), which imaplib does not do;
- a parser for the untagged data imaplib hands back (atoms, quoted
  strings, literals, NIL, parenthesised lists);
- connecting with a password taken from an environment variable or a file,
  never from the command line;
- LIST with hierarchy separator and attributes, NAMESPACE, MULTIAPPEND;
- for the test servers and proxies: the listening socket, the accept
  loop, the open files limit and a JSON-lines log.

Imported by imaptool.py, gen-corpus.py and imap-compare.py, which find it
in their own directory (sys.path[0]).
"""

import base64
import imaplib
import json
import os
import re
import resource
import socket
import sys
import threading
import time

# imaplib refuses lines over 1 MB by default; a LIST or FETCH line is
# nowhere near that, but be generous for odd servers
imaplib._MAXLINE = 16 * 1024 * 1024


class ToolError(Exception):
    """An error the tools report in one line and exit 2 for."""


# ---------------------------------------------------------------------------
# modified UTF-7

def mutf7_encode(name):
    """Encode a (Unicode) mailbox name into modified UTF-7."""
    out = []
    pending = []

    def flush():
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=")
            out.append("&" + b64.replace("/", ",") + "-")
            del pending[:]

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(name):
    """Decode a modified UTF-7 mailbox name; ValueError when malformed."""
    if isinstance(name, bytes):
        name = name.decode("ascii")
    out = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch != "&":
            if not 0x20 <= ord(ch) <= 0x7e:
                raise ValueError("non-ASCII character in mUTF-7 name %r" % name)
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise ValueError("unterminated shift in mUTF-7 name %r" % name)
        if end == i + 1:
            out.append("&")
        else:
            b64 = name[i + 1:end].replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            try:
                raw = base64.b64decode(b64, validate=True)
                out.append(raw.decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ValueError("bad mUTF-7 name %r: %s" % (name, exc))
        i = end + 1
    return "".join(out)


def quote(value):
    """An IMAP quoted string (ASCII only: encode names with mUTF-7 first)."""
    if isinstance(value, bytes):
        value = value.decode("ascii")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def qmailbox(name):
    """A Unicode mailbox name as an IMAP argument."""
    return quote(mutf7_encode(name))


# ---------------------------------------------------------------------------
# parsing imaplib's untagged data

class Literal(bytes):
    """Marks a literal inside a response's segment list."""


def split_responses(data):
    """Group imaplib untagged data into responses.

    imaplib stores a response that carries literals as (text, literal)
    tuples followed by the trailing text as bytes; a response without
    literals is a single bytes item.  Returns a list of segment lists."""
    responses = []
    cur = []
    for item in data or []:
        if item is None:
            continue
        if isinstance(item, tuple):
            cur.append(bytes(item[0]))
            cur.append(Literal(item[1]))
        else:
            cur.append(bytes(item))
            responses.append(cur)
            cur = []
    if cur:
        responses.append(cur)
    return responses


_ATOM_END = b" ()[]{}\"\r\n"
_LIT_RE = re.compile(rb"\{(\d+)\+?\}$")


class _Reader:
    def __init__(self, segments):
        self.segs = segments
        self.si = 0
        self.pos = 0

    def _text(self):
        while self.si < len(self.segs):
            seg = self.segs[self.si]
            if isinstance(seg, Literal):
                raise ToolError("unexpected literal in response")
            if self.pos < len(seg):
                return seg
            self.si += 1
            self.pos = 0
            # a literal must follow {n} directly; reaching one here means
            # the text segment before it did not end in {n}
            if self.si < len(self.segs) and isinstance(self.segs[self.si], Literal):
                raise ToolError("literal without {n} marker")
        return None

    def at_end(self):
        self.skip_sp()
        return self._text() is None

    def skip_sp(self):
        while True:
            seg = self._text()
            if seg is None:
                return
            while self.pos < len(seg) and seg[self.pos:self.pos + 1] in (b" ", b"\r", b"\n"):
                self.pos += 1
            if self.pos < len(seg):
                return

    def value(self):
        self.skip_sp()
        seg = self._text()
        if seg is None:
            raise ToolError("response ended early")
        c = seg[self.pos:self.pos + 1]
        if c == b"(":
            self.pos += 1
            items = []
            while True:
                self.skip_sp()
                seg = self._text()
                if seg is None:
                    raise ToolError("unterminated list")
                if seg[self.pos:self.pos + 1] == b")":
                    self.pos += 1
                    return items
                items.append(self.value())
        if c == b'"':
            out = bytearray()
            i = self.pos + 1
            while i < len(seg):
                ch = seg[i:i + 1]
                if ch == b"\\":
                    out += seg[i + 1:i + 2]
                    i += 2
                    continue
                if ch == b'"':
                    self.pos = i + 1
                    return bytes(out)
                out += ch
                i += 1
            raise ToolError("unterminated quoted string")
        if c == b"{":
            m = _LIT_RE.match(seg, self.pos)
            if m is None or m.end() != len(seg):
                raise ToolError("bad literal marker")
            self.si += 1
            self.pos = 0
            if self.si >= len(self.segs) or not isinstance(self.segs[self.si], Literal):
                raise ToolError("literal missing")
            lit = bytes(self.segs[self.si])
            self.si += 1
            return lit
        # atom, possibly with a [section] part (BODY[], BODY[HEADER])
        i = self.pos
        depth = 0
        while i < len(seg):
            ch = seg[i:i + 1]
            if ch == b"[":
                depth += 1
            elif ch == b"]":
                depth -= 1
            elif depth == 0 and ch in (b" ", b"(", b")", b"{", b'"', b"\r", b"\n"):
                break
            i += 1
        atom = seg[self.pos:i].decode("latin-1")
        self.pos = i
        if atom == "":
            raise ToolError("empty atom at %r" % seg[self.pos:self.pos + 20])
        if atom.upper() == "NIL":
            return None
        return atom


def parse_response(segments):
    """Parse one response (segment list) into a list of values: atoms are
    str, quoted strings and literals bytes, NIL None, lists Python lists."""
    r = _Reader(segments)
    out = []
    while not r.at_end():
        out.append(r.value())
    return out


def parse_untagged(data):
    return [parse_response(segs) for segs in split_responses(data)]


def astr(value):
    """A str from an atom/string value."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


# ---------------------------------------------------------------------------
# connecting

def add_conn_args(parser, prefix="", label=""):
    """--host/--port/--user/--password-env/--password-file (with prefix)."""
    p = "--" + prefix
    d = prefix.replace("-", "_")
    parser.add_argument(p + "host", dest=d + "host", default="127.0.0.1",
                        help="IMAP server %s(default 127.0.0.1)" % label)
    parser.add_argument(p + "port", dest=d + "port", type=int, default=143)
    parser.add_argument(p + "user", dest=d + "user", required=True)
    parser.add_argument(p + "password-env", dest=d + "password_env",
                        default="IMAP_PASSWORD",
                        help="environment variable holding the password "
                             "(default IMAP_PASSWORD)")
    parser.add_argument(p + "password-file", dest=d + "password_file",
                        help="file holding the password (first line)")


def get_password(env_name, file_name):
    if file_name:
        try:
            with open(file_name, "r", encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as exc:
            raise ToolError("cannot read password file: %s" % exc)
    pw = os.environ.get(env_name)
    if pw is None:
        raise ToolError("password variable %s is not set" % env_name)
    return pw


def connect(host, port, user, password, timeout=120, retries=0):
    """Log in; returns an imaplib.IMAP4.  Retries connection refusals
    (an instance that is still starting) `retries` times."""
    attempt = 0
    while True:
        try:
            conn = imaplib.IMAP4(host, port, timeout=timeout)
            break
        except (ConnectionRefusedError, socket.timeout) as exc:
            if attempt >= retries:
                raise ToolError("cannot connect to %s:%d: %s" % (host, port, exc))
            attempt += 1
            time.sleep(0.2)
        except OSError as exc:
            raise ToolError("cannot connect to %s:%d: %s" % (host, port, exc))
    try:
        if password.isascii() and user.isascii():
            conn.login(user, password)
        else:
            # LOGIN takes no 8-bit quoted strings; SASL PLAIN is UTF-8
            blob = b"\0" + user.encode() + b"\0" + password.encode()
            conn.authenticate("PLAIN", lambda _challenge: blob)
    except imaplib.IMAP4.error as exc:
        raise ToolError("login as %s at %s:%d failed: %s" % (user, host, port, exc))
    return conn


def connect_args(args, prefix=""):
    d = prefix.replace("-", "_")
    pw = get_password(getattr(args, d + "password_env"),
                      getattr(args, d + "password_file"))
    return connect(getattr(args, d + "host"), getattr(args, d + "port"),
                   getattr(args, d + "user"), pw)


def check(result, what):
    typ, data = result
    if typ != "OK":
        raise ToolError("%s failed: %s %s" % (what, typ, b" ".join(
            d if isinstance(d, bytes) else b"" for d in data).decode("utf-8", "replace")))
    return data


def capabilities(conn):
    """The capabilities now (after login they differ from the greeting's)."""
    data = check(conn.capability(), "CAPABILITY")
    if data and isinstance(data[-1], bytes):
        return set(data[-1].decode("ascii", "replace").upper().split())
    return set(c.upper() for c in conn.capabilities)


# ---------------------------------------------------------------------------
# mailbox listing

class MailboxInfo:
    __slots__ = ("name", "raw", "sep", "flags")

    def __init__(self, name, raw, sep, flags):
        self.name = name      # decoded (Unicode) full name
        self.raw = raw        # as sent by the server (mUTF-7)
        self.sep = sep        # hierarchy separator or None
        self.flags = flags    # list of str, e.g. ["\\HasNoChildren", "\\Sent"]

    def has(self, flag):
        return flag.lower() in (f.lower() for f in self.flags)

    @property
    def selectable(self):
        return not (self.has("\\Noselect") or self.has("\\NonExistent"))

    def special_use(self):
        for f in self.flags:
            if f.lower() in ("\\sent", "\\trash", "\\drafts", "\\junk",
                             "\\archive", "\\all", "\\flagged"):
                return f
        return None


def list_mailboxes(conn, pattern="*", reference="", subscribed=False):
    """LIST (or LSUB) -> [MailboxInfo].  Servers with SPECIAL-USE
    (RFC 6154) include \\Sent etc. in plain LIST replies."""
    cmd = "LSUB" if subscribed else "LIST"
    data = check(conn._simple_command(cmd, quote(reference),
                                      quote(mutf7_encode(pattern))), cmd)
    data = conn._untagged_response("OK", data, cmd)[1]
    out = []
    for resp in parse_untagged(data):
        if len(resp) < 3:
            continue
        flags, sep, raw = resp[0], resp[1], resp[2]
        raw = astr(raw)
        try:
            name = mutf7_decode(raw)
        except ValueError:
            name = raw
        out.append(MailboxInfo(name, raw, astr(sep),
                               [astr(f) for f in (flags or [])]))
    return out


def hierarchy_sep(conn):
    data = check(conn._simple_command("LIST", '""', '""'), "LIST")
    data = conn._untagged_response("OK", data, "LIST")[1]
    for resp in parse_untagged(data):
        if len(resp) >= 2:
            return astr(resp[1])
    return None


def personal_prefix(conn):
    """(prefix, sep) of the first personal namespace, or (None, None)
    when the server has no NAMESPACE."""
    if "NAMESPACE" not in capabilities(conn):
        return None, None
    typ, data = conn.namespace()
    if typ != "OK" or not data or data[0] is None:
        return None, None
    resp = parse_untagged(data)
    if not resp or not resp[0] or not resp[0][0]:
        return "", None
    first = resp[0][0][0]
    return mutf7_decode(astr(first[0]) or ""), astr(first[1])


# ---------------------------------------------------------------------------
# writing

def multiappend(conn, mailbox, items):
    """Append [(flags_str, date_str, message_bytes)] in one MULTIAPPEND
    command with LITERAL+ (no continuation round trips).  The caller makes
    sure the server has both capabilities."""
    tag = conn._new_tag()
    parts = [tag, b" APPEND ", qmailbox(mailbox).encode("ascii")]
    for flags, date, msg in items:
        parts.append((" (%s) %s {%d+}\r\n" % (flags, quote(date), len(msg))).encode("ascii"))
        parts.append(msg)
    parts.append(b"\r\n")
    conn.send(b"".join(parts))
    typ, data = conn._command_complete("APPEND", tag)
    if typ != "OK":
        raise ToolError("APPEND to %s failed: %s %r" % (mailbox, typ, data))


def append_one(conn, mailbox, flags, date, msg):
    """Plain APPEND (flags like '\\Seen $Forwarded', date an IMAP
    date-time string or None)."""
    typ, data = conn.append(qmailbox(mailbox), "(%s)" % flags if flags else None,
                            quote(date) if date else None, msg)
    if typ != "OK":
        raise ToolError("APPEND to %s failed: %s %r" % (mailbox, typ, data))


def imap_date(epoch, tzoffset_min=0):
    """An IMAP date-time string ("02-Jan-2013 04:05:06 -0300")."""
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
              "Sep", "Oct", "Nov", "Dec"]
    t = time.gmtime(epoch + tzoffset_min * 60)
    sign = "+" if tzoffset_min >= 0 else "-"
    off = abs(tzoffset_min)
    return "%02d-%s-%04d %02d:%02d:%02d %s%02d%02d" % (
        t.tm_mday, months[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min,
        t.tm_sec, sign, off // 60, off % 60)


_DATE_RE = re.compile(r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$")
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}


def parse_imap_date(value):
    """INTERNALDATE string -> UTC epoch seconds."""
    import calendar
    m = _DATE_RE.match(astr(value))
    if not m:
        raise ToolError("bad INTERNALDATE %r" % value)
    day, mon, year, hh, mm, ss, sign, oh, om = m.groups()
    t = calendar.timegm((int(year), _MONTHS[mon.lower()], int(day),
                         int(hh), int(mm), int(ss), 0, 0, 0))
    off = (int(oh) * 60 + int(om)) * 60
    return t - off if sign == "+" else t + off


def fmt_utc(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def fetch_items(data):
    """Parse FETCH untagged data into (seq, dict item->value) pairs."""
    out = []
    for resp in parse_untagged(data):
        if len(resp) < 2 or not isinstance(resp[1], list):
            continue
        try:
            seq = int(resp[0])
        except (TypeError, ValueError):
            continue
        items = {}
        lst = resp[1]
        for i in range(0, len(lst) - 1, 2):
            items[astr(lst[i]).upper()] = lst[i + 1]
        out.append((seq, items))
    return out


def die(msg, code=2):
    sys.stderr.write("%s: %s\n" % (os.path.basename(sys.argv[0]), msg))
    sys.exit(code)


def serve_listen(port, backlog, daemon, pidfile):
    """A listening socket on 127.0.0.1:port for the test servers.  With
    daemon, fork: the parent writes the child's pid to pidfile (once the
    socket listens, so "the pidfile exists" means "the port answers") and
    exits; the child detaches from the terminal.  Without, our own pid
    goes to pidfile.  Returns the socket (in the child)."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        lsock.bind(("127.0.0.1", port))
    except OSError as exc:
        die("cannot listen on port %d: %s" % (port, exc))
    lsock.listen(backlog)
    pid = os.fork() if daemon else 0
    if daemon and pid == 0:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):
            os.dup2(devnull, fd)
        return lsock
    if pidfile:
        with open(pidfile + ".tmp", "w") as f:
            f.write("%d\n" % (pid or os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
    if daemon:
        os._exit(0)
    return lsock


def raise_nofile_limit():
    """The soft limit of open files up to the hard one: a proxy holds two
    descriptors per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def accept_forever(lsock, serve, log):
    """Each connection to lsock served by serve(sock, peer) in a thread
    of its own; a failed accept is logged with log(text) and retried."""
    while True:
        try:
            c, peer = lsock.accept()
        except InterruptedError:
            continue
        except OSError as exc:
            log("accept failed: %s" % exc)
            time.sleep(0.1)
            continue
        threading.Thread(target=serve, args=(c, peer), daemon=True).start()


class JsonLog:
    """A log of one JSON object a line, its keys sorted, with the time "t"
    (digits after the point); safe across threads."""

    def __init__(self, path, digits=3):
        self.f = open(path, "a", encoding="utf-8", buffering=1)
        self.digits = digits
        self.lock = threading.Lock()

    def __call__(self, **kw):
        kw["t"] = round(time.time(), self.digits)
        line = json.dumps(kw, sort_keys=True)
        with self.lock:
            self.f.write(line + "\n")
