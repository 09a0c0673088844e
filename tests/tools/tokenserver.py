#!/usr/bin/python3
"""tokenserver.py - an HTTPS OAuth2 token endpoint of the tests' own.

  tokenserver.py --port P --cert CERT.pem --key KEY.pem
                 --hs256-key-file F --log F [--pidfile F] [--daemon]
                 [--ttl SECONDS] [--skew SECONDS] [--exit-when-gone PATH]
                 [--ms-tenant T ... --ms-client-id C --ms-client-secret-file F
                  [--ms-scope S] [--ms-audience A]]
                 [--google-client-email E --google-public-key PUB.pem
                  [--google-allowed-user U ...] [--google-audience URL ...]]

Listens on 127.0.0.1:P with TLS (CERT.pem: the server certificate, with
its chain; the tests make it with a CA of their own, tests/lib/
rig-oauth2.sh), one thread per connection, HTTP/1.1 with keep-alive.  It
stands in for two providers' token endpoints:

Microsoft identity platform, client-credentials grant (an app-only token,
as Exchange Online's IMAP takes with the IMAP.AccessAsApp permission):
  POST /<tenant>/oauth2/v2.0/token
  grant_type=client_credentials&client_id=C&client_secret=S
  &scope=https://outlook.office365.com/.default
  (the client may authenticate with HTTP Basic instead: client_secret_basic)
  200 {"token_type":"Bearer","expires_in":N,"ext_expires_in":N,
       "access_token":"..."}
  errors as Azure AD words them ({"error","error_description":
  "AADSTSnnnn: ...","error_codes":[n],"timestamp","trace_id",
  "correlation_id","error_uri"}): unknown tenant 400 invalid_request
  (AADSTS90002); a grant_type other than client_credentials 400
  unsupported_grant_type (70003); unknown client_id 400 unauthorized_client
  (700016); missing secret 401 invalid_client (7000218); wrong secret 401
  invalid_client (7000215); missing scope 400 invalid_request (90014);
  another scope 400 invalid_scope (1002012); a missing parameter 400
  invalid_request (900144).
  The access token names no user: its claims are aud (--ms-audience,
  default https://outlook.office365.com), iss, tid, appid, sub (= the
  client id), scope "IMAP.AccessAsApp" (Microsoft's app tokens carry the
  app role in an array, "roles": an array claim made the auth process of
  Debian's Dovecot 2.3.19.1 crash (SIGSEGV) in some claim layouts, and it
  cannot match one anyway), ver, iat, nbf, exp.  One token serves every
  mailbox: a source started with rig_start_source --oauth2-app
  (tests/lib/rig.sh) accepts it for any user (a second oauth2 passdb
  there: scope = IMAP.AccessAsApp, client_id = the audience, a constant
  username_format; see rig__oauth2_conf).  It has no "azp" claim on
  purpose (Dovecot would look the signing key up under the azp's name).

Google OAuth2, service account with domain-wide delegation (RFC 7523):
  POST /token
  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT
  The assertion is RS256-signed with the service account's private key
  (its public key: --google-public-key, a PEM "PUBLIC KEY"); claims iss
  (= --google-client-email), sub (the mailbox to impersonate; required
  here), scope (space-separated, must hold https://mail.google.com/),
  aud (the token URL: https://127.0.0.1:P/token or https://localhost:P/
  token, or the --google-audience values), iat and exp (exp - iat <= 3600,
  exp not passed, iat not more than --skew seconds, default 60, ahead).
  The signature is verified here with Python's pow() (RSASSA-PKCS1-v1_5
  with SHA-256, RFC 8017 8.2.2; the key's DER parsed by the few lines of
  ASN.1 below): no openssl process per request, no temporary files.
  200 {"access_token":"...","expires_in":N,"token_type":"Bearer"}: a token
  for that one user (claims sub = the user, email, scope, iss, iat, nbf,
  exp).  Errors as Google words them: a bad signature or another alg 400
  invalid_grant "Invalid JWT Signature."; unknown iss 400 invalid_grant
  "Invalid grant: account not found"; bad times 400 invalid_grant
  "Invalid JWT: Token must be a short-lived token (60 minutes) and in a
  reasonable timeframe. ..."; wrong aud 400 invalid_grant "Invalid JWT:
  Failed audience check. ..."; no sub, a malformed JWT 400 invalid_grant;
  no scope 400 invalid_scope; a user not in the --google-allowed-user
  list (when one is given; without, every user is allowed) or a scope
  without https://mail.google.com/ 401 unauthorized_client "Client is
  unauthorized to retrieve access tokens using this method, or client not
  authorized for any of the scopes requested." (401 as Google answers it);
  another grant_type 400 unsupported_grant_type; a missing parameter 400
  invalid_request.

Both: access tokens are HS256 JWTs (header {"alg":"HS256","typ":"JWT"},
as tools/oauth2-token.py makes them) signed with the bytes of
--hs256-key-file, the key a rig --oauth2 source validates with
($RIG/SRC/oauth2.key); exp = now + --ttl (default 3600), which is also
expires_in.  A request body over 64 KiB is refused with 413 (in answer
to "Expect: 100-continue" before it is sent; else the rest, up to 8 MiB,
is read and dropped after the reply, so that closing the connection
does not reset it under the client's feet); parameters given twice are 400 invalid_request; a body that is not
application/x-www-form-urlencoded is 400 invalid_request; chunked bodies
are read (bounded the same way).  Unknown paths 404, other methods 405.

GET /stats: {"requests": {"client_credentials": N, "jwt_bearer": N,
"other": N}, "issued": {...}, "errors": {...}} (counts since the start).

--log: one line per request (and per failed TLS handshake):
  <UTC time> <peer> POST <path> grant=<client_credentials|jwt_bearer|
  other> status=<HTTP status> result=<ok|error code> [tenant=T]
  [client_id=C] [iss=E] [sub=U] n=<that grant's request count>
("other": another or no grant_type, or a body that was not read; GET
/stats and other methods are logged with grant=- and not counted).
Never a secret, an assertion or an access token, nor the query string;
a client_id or iss only when it is the configured one (else "unknown"),
tenant= only when it is known (an unknown one is in the path), sub only
from an assertion whose signature verified.  The tests count requests
with rig_tokenserver_requests (grep -c ' grant=client_credentials ' LOG).
--exit-when-gone PATH: exit once PATH is gone (checked every second): the
rig passes its directory, so a server whose test was killed (and whose
rig was then removed by run-tests.sh) does not linger.
The pidfile is written once the socket listens (with --daemon by the
parent, holding the child's pid, before the parent exits).  SIGTERM stops
it.  Exits 2 on usage errors and when it cannot listen (the message names
the errno: "Address already in use" makes the rig try another port).
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rigimap  # noqa: E402  (serve_listen: bind, daemonize, pidfile)

MAX_BODY = 64 * 1024
# what is read and dropped of a refused body before hanging up
DRAIN_MAX = 8 * 1024 * 1024
MS_PATH_SUFFIX = "/oauth2/v2.0/token"
GRANT_CC = "client_credentials"
GRANT_JWT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"
GOOGLE_UNAUTHORIZED = ("Client is unauthorized to retrieve access tokens using "
                       "this method, or client not authorized for any of the "
                       "scopes requested.")
GOOGLE_TIMES = ("Invalid JWT: Token must be a short-lived token (60 minutes) and "
                "in a reasonable timeframe. Check your iat and exp values in the "
                "JWT claim.")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    if not isinstance(text, str) or any(c in text for c in "=+/ \t\r\n"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hs256_jwt(key, claims):
    """the token format of tools/oauth2-token.py, with any claims"""
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     b64url(json.dumps(claims, separators=(",", ":")).encode()))
    sig = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


# --- RSA (RS256) signature verification ----------------------------------------

def der_read(data, pos):
    """(tag, content, next position) of the DER element at pos"""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:pos + length], pos + length


def der_children(content):
    out, pos = [], 0
    while pos < len(content):
        tag, value, pos = der_read(content, pos)
        out.append((tag, value))
    return out


RSA_OID = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1


def rsa_public_key(pem_text):
    """(n, e) of a PEM "PUBLIC KEY" (SubjectPublicKeyInfo) or "RSA PUBLIC
    KEY" (PKCS#1)"""
    lines = [l.strip() for l in pem_text.strip().splitlines()]
    if not lines or not lines[0].startswith("-----BEGIN ") or not lines[-1].startswith("-----END "):
        raise ValueError("not a PEM file")
    kind = lines[0][len("-----BEGIN "):].rstrip("-")
    der = base64.b64decode("".join(lines[1:-1]), validate=True)
    tag, body, _ = der_read(der, 0)
    if tag != 0x30:
        raise ValueError("not a DER SEQUENCE")
    if kind == "PUBLIC KEY":
        parts = der_children(body)
        if len(parts) != 2 or parts[0][0] != 0x30 or parts[1][0] != 0x03:
            raise ValueError("not a SubjectPublicKeyInfo")
        alg = der_children(parts[0][1])
        if not alg or alg[0] != (0x06, RSA_OID):
            raise ValueError("not an RSA key")
        bits = parts[1][1]
        if not bits or bits[0] != 0:
            raise ValueError("bad BIT STRING")
        tag, body, _ = der_read(bits[1:], 0)
        if tag != 0x30:
            raise ValueError("bad RSAPublicKey")
    elif kind != "RSA PUBLIC KEY":
        raise ValueError("PEM type %s is not a public key" % kind)
    ints = der_children(body)
    if len(ints) != 2 or ints[0][0] != 0x02 or ints[1][0] != 0x02:
        raise ValueError("bad RSAPublicKey")
    n = int.from_bytes(ints[0][1], "big")
    e = int.from_bytes(ints[1][1], "big")
    if n.bit_length() < 1024 or e < 3:
        raise ValueError("RSA key too small")
    return n, e


# DigestInfo prefix of SHA-256 (RFC 8017 9.2, note 1)
SHA256_DIGESTINFO = bytes.fromhex("3031300d060960864801650304020105000420")


def rs256_verify(key, message, signature):
    """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 8.2.2)"""
    n, e = key
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    em = pow(s, e, n).to_bytes(k, "big")
    t = SHA256_DIGESTINFO + hashlib.sha256(message).digest()
    if k < len(t) + 11:
        return False
    expected = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return hmac.compare_digest(em, expected)


# --- the server ----------------------------------------------------------------

class OAuthError(Exception):
    """an error reply: HTTP status, the error code (logged), the JSON body;
    close: the body was not (all) read, hang up after the reply; drain:
    what is left of it, ("length", bytes) or ("chunked", bytes left of
    the current chunk), read and dropped after the reply"""
    def __init__(self, status, error, body, close=False, drain=None):
        super().__init__(error)
        self.status, self.error, self.body, self.close = status, error, body, close
        self.drain = drain


def too_large(drain):
    return OAuthError(413, "request_too_large", {"error": "invalid_request",
                      "error_description": "request body over %d bytes" % MAX_BODY},
                      True, drain)


def log_value(v, limit=80):
    """a value for the log: printable, no spaces, bounded"""
    v = "".join(c if 0x21 <= ord(c) < 0x7F else "?" for c in str(v))
    return v[:limit] + ("..." if len(v) > limit else "")


class TokenServer:
    def __init__(self, args):
        self.args = args
        self.port = args.port
        self.ttl = args.ttl
        self.skew = args.skew
        with open(args.hs256_key_file, "rb") as f:
            self.hs256_key = f.read()
        if not self.hs256_key:
            raise ValueError("%s is empty" % args.hs256_key_file)
        self.ms_tenants = [t.lower() for t in (args.ms_tenant or [])]
        self.ms_client_id = args.ms_client_id
        self.ms_secret = None
        if args.ms_client_secret_file:
            with open(args.ms_client_secret_file, "rb") as f:
                self.ms_secret = f.read().rstrip(b"\r\n")
            if not self.ms_secret:
                raise ValueError("%s is empty" % args.ms_client_secret_file)
        self.ms_scope = args.ms_scope
        self.ms_audience = args.ms_audience
        self.g_email = args.google_client_email
        self.g_key = None
        if args.google_public_key:
            with open(args.google_public_key) as f:
                self.g_key = rsa_public_key(f.read())
        self.g_users = set(u.lower() for u in (args.google_allowed_user or []))
        self.g_audiences = args.google_audience or [
            "https://127.0.0.1:%d/token" % self.port, "https://localhost:%d/token" % self.port]
        self.lock = threading.Lock()
        self.stats = {k: {"client_credentials": 0, "jwt_bearer": 0, "other": 0}
                      for k in ("requests", "issued", "errors")}
        self.logf = open(args.log, "a", buffering=1) if args.log else None
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self.tls.load_cert_chain(args.cert, args.key)

    def log(self, line):
        if self.logf is None:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.lock:
            self.logf.write("%s %s\n" % (stamp, line))

    def count(self, grant, ok):
        key = grant if grant in ("client_credentials", "jwt_bearer") else "other"
        with self.lock:
            self.stats["requests"][key] += 1
            self.stats["issued" if ok else "errors"][key] += 1
            return self.stats["requests"][key]

    def stats_json(self):
        with self.lock:
            return json.loads(json.dumps(self.stats))

    # --- Microsoft -------------------------------------------------------------
    def ms_error(self, status, error, code, text):
        now = time.gmtime()
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", now)
        desc = "AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s" % (
            code, text, trace, corr, stamp)
        body = {"error": error, "error_description": desc, "error_codes": [code],
                "timestamp": stamp, "trace_id": trace, "correlation_id": corr,
                "error_uri": "https://login.microsoftonline.com/error?code=%d" % code}
        return OAuthError(status, error, body)

    def ms_secret_ok(self, secret, basic):
        """compared in constant time; an HTTP Basic one (RFC 6749 2.3.1:
        form-urlencoded before base64) also as it came, for clients that
        do not encode it"""
        ok = hmac.compare_digest(secret.encode("utf-8", "surrogateescape"), self.ms_secret)
        if basic and not ok:
            raw = basic[2].encode("utf-8", "surrogateescape")
            ok = hmac.compare_digest(raw, self.ms_secret)
        return ok

    def ms_token(self, tenant, form, basic, info):
        if tenant.lower() not in self.ms_tenants or not self.ms_client_id:
            raise self.ms_error(400, "invalid_request", 90002,
                                "Tenant '%s' not found. Check to make sure you have the "
                                "correct tenant ID and are signing into the correct cloud."
                                % log_value(tenant, 100))
        info["tenant"] = tenant
        grant = form.get("grant_type")
        if grant is None:
            raise self.ms_error(400, "invalid_request", 900144,
                                "The request body must contain the following parameter: "
                                "'grant_type'.")
        if grant != GRANT_CC:
            raise self.ms_error(400, "unsupported_grant_type", 70003,
                                "The app requested an unsupported grant type '%s'."
                                % log_value(grant, 100))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if basic is not None:
            if secret is not None or (client_id is not None and client_id != basic[0]):
                raise self.ms_error(400, "invalid_request", 50027,
                                    "The request uses more than one client authentication "
                                    "method.")
            client_id, secret = basic[0], basic[1]
        if client_id is None:
            raise self.ms_error(400, "invalid_request", 900144,
                                "The request body must contain the following parameter: "
                                "'client_id'.")
        if client_id != self.ms_client_id:
            info["client_id"] = "unknown"
            raise self.ms_error(400, "unauthorized_client", 700016,
                                "Application with identifier '%s' was not found in the "
                                "directory '%s'. This can happen if the application has not "
                                "been installed by the administrator of the tenant."
                                % (log_value(client_id, 100), tenant))
        info["client_id"] = client_id
        if not secret:
            raise self.ms_error(401, "invalid_client", 7000218,
                                "The request body must contain the following parameter: "
                                "'client_assertion' or 'client_secret'.")
        if not self.ms_secret_ok(secret, basic):
            raise self.ms_error(401, "invalid_client", 7000215,
                                "Invalid client secret provided. Ensure the secret being "
                                "sent in the request is the client secret value, not the "
                                "client secret ID, for a secret added to app '%s'." % client_id)
        scope = form.get("scope")
        if scope is None:
            raise self.ms_error(400, "invalid_request", 90014,
                                "The required field 'scope' is missing from the credential. "
                                "Ensure that you have all the necessary parameters for the "
                                "login request.")
        if scope.split() != [self.ms_scope]:
            raise self.ms_error(400, "invalid_scope", 1002012,
                                "The provided value for scope %s is not valid. Client "
                                "credential flows must have a scope value with /.default "
                                "suffixed to the resource identifier (application ID URI)."
                                % log_value(scope, 200))
        now = int(time.time())
        claims = {"aud": self.ms_audience, "iss": "https://sts.windows.net/%s/" % tenant,
                  "iat": now, "nbf": now, "exp": now + self.ttl,
                  "appid": client_id, "tid": tenant, "sub": client_id,
                  "scope": "IMAP.AccessAsApp", "ver": "1.0"}
        return {"token_type": "Bearer", "expires_in": self.ttl, "ext_expires_in": self.ttl,
                "access_token": hs256_jwt(self.hs256_key, claims)}

    # --- Google ----------------------------------------------------------------
    def g_error(self, status, error, description):
        return OAuthError(status, error, {"error": error, "error_description": description})

    def google_token(self, form, info):
        grant = form.get("grant_type")
        if grant is None:
            raise self.g_error(400, "invalid_request", "Missing required parameter: grant_type")
        if grant != GRANT_JWT:
            raise self.g_error(400, "unsupported_grant_type",
                               "Invalid grant_type: %s" % log_value(grant, 100))
        assertion = form.get("assertion")
        if not assertion:
            raise self.g_error(400, "invalid_request", "Missing required parameter: assertion")
        if self.g_key is None or not self.g_email:
            raise self.g_error(400, "invalid_grant", "Invalid grant: account not found")
        try:
            h64, c64, s64 = assertion.split(".")
            header = json.loads(b64url_decode(h64))
            claims = json.loads(b64url_decode(c64))
            sig = b64url_decode(s64)
            if not isinstance(header, dict) or not isinstance(claims, dict):
                raise ValueError("not JSON objects")
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise self.g_error(400, "invalid_grant", "Invalid JWT: Token is malformed.")
        iss = claims.get("iss")
        if iss != self.g_email:
            info["iss"] = "unknown"
            raise self.g_error(400, "invalid_grant", "Invalid grant: account not found")
        info["iss"] = iss
        if header.get("alg") != "RS256" or not rs256_verify(
                self.g_key, (h64 + "." + c64).encode("ascii"), sig):
            raise self.g_error(400, "invalid_grant", "Invalid JWT Signature.")
        sub = claims.get("sub")
        if isinstance(sub, str):
            info["sub"] = sub
        iat, exp = claims.get("iat"), claims.get("exp")
        now = int(time.time())
        if (not isinstance(iat, int) or not isinstance(exp, int) or isinstance(iat, bool)
                or isinstance(exp, bool) or exp <= iat or exp - iat > 3600
                or iat > now + self.skew or exp < now - self.skew):
            raise self.g_error(400, "invalid_grant", GOOGLE_TIMES)
        if claims.get("aud") not in self.g_audiences:
            raise self.g_error(400, "invalid_grant",
                               "Invalid JWT: Failed audience check. The right audience is %s"
                               % self.g_audiences[0])
        if not isinstance(sub, str) or not sub:
            raise self.g_error(400, "invalid_grant",
                               "Invalid JWT: this test server needs the 'sub' claim (the "
                               "mailbox to impersonate).")
        scope = claims.get("scope")
        if not isinstance(scope, str) or not scope.split():
            raise self.g_error(400, "invalid_scope", "Empty or missing scope not allowed.")
        if GOOGLE_MAIL_SCOPE not in scope.split():
            raise self.g_error(401, "unauthorized_client", GOOGLE_UNAUTHORIZED)
        if self.g_users and sub.lower() not in self.g_users:
            raise self.g_error(401, "unauthorized_client", GOOGLE_UNAUTHORIZED)
        claims_out = {"sub": sub, "email": sub, "scope": " ".join(scope.split()),
                      "iss": "https://accounts.google.com",
                      "iat": now, "nbf": now, "exp": now + self.ttl}
        return {"access_token": hs256_jwt(self.hs256_key, claims_out),
                "expires_in": self.ttl, "token_type": "Bearer"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rig-tokenserver/1"
    timeout = 20

    def __init__(self, sock, peer, ts):
        self.ts = ts
        super().__init__(sock, peer, None)

    def log_message(self, fmt, *args):  # our own log only
        pass

    def send_json(self, status, obj, close=False):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Pragma", "no-cache")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def path_only(self):
        return urllib.parse.urlsplit(self.path).path

    def logline(self, grant, status, result, info, n):
        parts = ["%s %s %s" % (self.client_address[0], self.command,
                               log_value(self.path_only(), 120)),
                 "grant=%s" % grant, "status=%d" % status, "result=%s" % log_value(result)]
        for k in ("tenant", "client_id", "iss", "sub"):
            if k in info:
                parts.append("%s=%s" % (k, log_value(info[k])))
        parts.append("n=%s" % n)
        self.ts.log(" ".join(parts))

    def read_body(self):
        """the body (bytes), or an OAuthError"""
        te = self.headers.get("Transfer-Encoding", "").strip().lower()
        if te and te != "identity":
            if te != "chunked":
                raise OAuthError(501, "invalid_request", {"error": "invalid_request",
                             "error_description": "unsupported Transfer-Encoding"}, True)
            return self.read_chunked()
        cl = self.headers.get("Content-Length")
        if cl is None:
            raise OAuthError(411, "invalid_request", {"error": "invalid_request",
                             "error_description": "Content-Length required"}, True)
        try:
            length = int(cl.strip())
            if length < 0:
                raise ValueError
        except ValueError:
            raise OAuthError(400, "invalid_request", {"error": "invalid_request",
                             "error_description": "bad Content-Length"}, True)
        if length > MAX_BODY:
            raise too_large(("length", length))
        data = self.rfile.read(length)
        if len(data) != length:
            raise OAuthError(400, "invalid_request", {"error": "invalid_request",
                             "error_description": "truncated body"}, True)
        return data

    def read_chunked(self):
        data = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size < 0:
                    raise ValueError
            except ValueError:
                raise OAuthError(400, "invalid_request", {"error": "invalid_request",
                                 "error_description": "bad chunk"}, True)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(data)
            if len(data) + size > MAX_BODY:
                raise too_large(("chunked", size))
            data += self.rfile.read(size)
            self.rfile.readline(1024)

    def drain(self, how):
        """read and drop what is left of a refused body (at most DRAIN_MAX
        bytes; 2 s without data ends it), so that our close does not reset
        the connection before the client has read the reply"""
        kind, n = how
        budget = DRAIN_MAX
        try:
            self.connection.settimeout(2)
            while budget > 0:
                if kind == "chunked":
                    n += 2  # the chunk's CRLF
                n = min(n, budget)
                budget -= n
                while n > 0:
                    d = self.rfile.read(min(n, 65536))
                    if not d:
                        return
                    n -= len(d)
                if kind != "chunked":
                    return
                n = int(self.rfile.readline(1024).split(b";", 1)[0].strip(), 16)
                if n <= 0:
                    return
        except (OSError, ValueError):
            pass

    def refuse(self, e, grant, info):
        """count, log and send the error reply of OAuthError e"""
        n = self.ts.count(grant, False)
        self.logline(grant, e.status, e.error, info, n)
        self.send_json(e.status, e.body, close=e.close)
        if e.drain is not None:
            self.wfile.flush()
            self.drain(e.drain)

    def handle_expect_100(self):
        """a body that is too large is refused before the client sends it"""
        try:
            length = int(self.headers.get("Content-Length", "0").strip())
        except ValueError:
            length = 0
        if length > MAX_BODY:
            self.refuse(too_large(("length", length)), "other", {})
            return False
        return super().handle_expect_100()

    def parse_form(self, body):
        ctype = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise OAuthError(400, "invalid_request", {"error": "invalid_request",
                             "error_description": "the body must be "
                             "application/x-www-form-urlencoded"})
        try:
            pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                           strict_parsing=bool(body), errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise OAuthError(400, "invalid_request", {"error": "invalid_request",
                             "error_description": "malformed form body"})
        form = {}
        for k, v in pairs:
            if k in form:
                raise OAuthError(400, "invalid_request", {"error": "invalid_request",
                                 "error_description": "parameter %s given twice"
                                 % log_value(k, 40)})
            form[k] = v
        return form

    def basic_auth(self):
        auth = self.headers.get("Authorization")
        if auth is None:
            return None
        scheme, _, cred = auth.strip().partition(" ")
        try:
            if scheme.lower() != "basic":
                raise ValueError
            user, sep, pw = base64.b64decode(cred.strip(), validate=True).decode("utf-8").partition(":")
            if not sep:
                raise ValueError
            return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(pw), pw
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise OAuthError(401, "invalid_client", {"error": "invalid_client",
                             "error_description": "malformed Authorization header"})

    def do_POST(self):
        path = self.path_only()
        info = {}
        if path == "/token":
            kind = "google"
        elif path.endswith(MS_PATH_SUFFIX) and path.count("/") == 4 and len(path) > len(MS_PATH_SUFFIX) + 1:
            kind = "ms"
        else:
            kind = None
        grant = "other"
        try:
            body = self.read_body()
            if kind is None:
                raise OAuthError(404, "not_found", {"error": "not_found",
                                 "error_description": "no token endpoint at this path"})
            form = self.parse_form(body)
            g = form.get("grant_type")
            grant = ("client_credentials" if g == GRANT_CC else
                     "jwt_bearer" if g == GRANT_JWT else "other")
            if kind == "ms":
                reply = self.ts.ms_token(path[1:-len(MS_PATH_SUFFIX)], form,
                                         self.basic_auth(), info)
            else:
                reply = self.ts.google_token(form, info)
        except OAuthError as e:
            self.refuse(e, grant, info)
            return
        n = self.ts.count(grant, True)
        self.logline(grant, 200, "ok", info, n)
        self.send_json(200, reply)

    def do_GET(self):
        if self.path_only() == "/stats":
            self.ts.log("%s GET /stats grant=- status=200 result=ok n=-" % self.client_address[0])
            self.send_json(200, self.ts.stats_json())
            return
        self.ts.log("%s GET %s grant=- status=405 result=method_not_allowed n=-"
                    % (self.client_address[0], log_value(self.path_only(), 120)))
        self.send_json(405, {"error": "invalid_request",
                             "error_description": "use POST"})

    def other_method(self):
        self.ts.log("%s %s %s grant=- status=405 result=method_not_allowed n=-"
                    % (self.client_address[0], log_value(self.command, 10),
                       log_value(self.path_only(), 120)))
        self.send_json(405, {"error": "invalid_request", "error_description": "use POST"},
                       close=True)

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = other_method


def serve_conn(ts, sock, peer):
    try:
        sock.settimeout(20)
        try:
            conn = ts.tls.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            ts.log("%s TLS handshake failed: %s" % (peer[0], log_value(exc, 200)))
            sock.close()
            return
        try:
            Handler(conn, peer, ts)
        except (ssl.SSLError, OSError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass
    except Exception as exc:  # a thread must not die silently
        ts.log("%s internal error: %s" % (peer[0], log_value(repr(exc), 200)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--hs256-key-file", required=True)
    ap.add_argument("--log")
    ap.add_argument("--pidfile")
    ap.add_argument("--daemon", action="store_true")
    ap.add_argument("--ttl", type=int, default=3600)
    ap.add_argument("--skew", type=int, default=60)
    ap.add_argument("--exit-when-gone")
    ap.add_argument("--ms-tenant", action="append")
    ap.add_argument("--ms-client-id")
    ap.add_argument("--ms-client-secret-file")
    ap.add_argument("--ms-scope", default="https://outlook.office365.com/.default")
    ap.add_argument("--ms-audience", default="https://outlook.office365.com")
    ap.add_argument("--google-client-email")
    ap.add_argument("--google-public-key")
    ap.add_argument("--google-allowed-user", action="append")
    ap.add_argument("--google-audience", action="append")
    args = ap.parse_args()
    if args.ttl < 1:
        ap.error("--ttl must be positive")
    if bool(args.ms_client_id) != bool(args.ms_client_secret_file) or \
            bool(args.ms_client_id) != bool(args.ms_tenant):
        ap.error("--ms-tenant, --ms-client-id and --ms-client-secret-file go together")
    if bool(args.google_client_email) != bool(args.google_public_key):
        ap.error("--google-client-email and --google-public-key go together")
    for a in ("log", "pidfile", "cert", "key", "hs256_key_file", "ms_client_secret_file",
              "google_public_key"):
        if getattr(args, a):
            setattr(args, a, os.path.abspath(getattr(args, a)))
    try:
        ts = TokenServer(args)
    except (OSError, ValueError, ssl.SSLError) as exc:
        rigimap.die("%s" % exc)
    lsock = rigimap.serve_listen(args.port, 128, args.daemon, args.pidfile)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    ts.log("listening on 127.0.0.1:%d (ttl %ds)" % (args.port, args.ttl))
    if args.exit_when_gone:
        def watch(path):
            while os.path.exists(path):
                time.sleep(1)
            os._exit(0)
        threading.Thread(target=watch, args=(os.path.abspath(args.exit_when_gone),),
                         daemon=True).start()
    rigimap.accept_forever(lsock, lambda c, peer: serve_conn(ts, c, peer), ts.log)


if __name__ == "__main__":
    main()
