#!/usr/bin/python3
"""oauth2-token.py - an OAuth2 access token (a JWT) for the tests' sources.

  oauth2-token.py --key-file F --sub USER [--ttl SECONDS] [--alg HS256]
                  [--kid KID] [--bad-signature]

Prints a JSON Web Token signed with HMAC (HS256/HS384/HS512) with the
key in F (its bytes as they are), with the claims sub, iat, nbf and exp
(now + ttl; a negative ttl makes one that expired).  A rig source started
with --oauth2 validates it locally (Dovecot's oauth2 passdb,
introspection_mode = local): the key is the same file's, the user the
sub claim.  --bad-signature signs with another key.  The token goes to
stdout only: it is a credential.
"""
import argparse
import base64
import hashlib
import hmac
import json
import sys
import time

ALGS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def token(key, sub, ttl, alg="HS256", kid=None, now=None):
    now = int(time.time()) if now is None else now
    header = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    claims = {"sub": sub, "iat": now, "nbf": now, "exp": now + ttl}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     b64url(json.dumps(claims, separators=(",", ":")).encode()))
    sig = hmac.new(key, signing_input.encode("ascii"), ALGS[alg]).digest()
    return signing_input + "." + b64url(sig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--sub", required=True)
    ap.add_argument("--ttl", type=int, default=300)
    ap.add_argument("--alg", choices=sorted(ALGS), default="HS256")
    ap.add_argument("--kid")
    ap.add_argument("--bad-signature", action="store_true")
    args = ap.parse_args()
    with open(args.key_file, "rb") as f:
        key = f.read()
    if args.bad_signature:
        key = hashlib.sha256(b"not the key" + key).digest()
    print(token(key, args.sub, args.ttl, args.alg, args.kid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
