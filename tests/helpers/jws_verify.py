#!/usr/bin/python3
"""jws_verify.py - judge a JAdES signature with python3-jwcrypto (Debian).

    jws_verify.py JWS_FILE CERT_PEM [--payload FILE] [--expect-payload FILE]
                  [--alg ALG] [--level B-B|B-T|B-LT] [--out-dir DIR]

Verifies the JWS (compact or JSON) with the public key of CERT_PEM and checks
the JAdES header: alg (== --alg when given), x5t#S256 is the SHA-256 of the
certificate, x5c[0] is the certificate, sigT is "YYYY-MM-DDThh:mm:ssZ" and
crit is ["sigT"] (registered with jwcrypto as a header this verifier
understands, so crit is honoured, not ignored). A detached payload
(RFC 7515 appendix F) is put back from --payload before verifying.

For B-T and above (the JSON serialisation's etsiU) it decodes the etsiU
elements (base64url JSON objects), requires sigTst and writes
DIR/sigtst.tst (the RFC 3161 token) and DIR/sigtst.data (the base64url
signature value, which is what TS 119 182-1 says the imprint covers), so
the caller can run `openssl ts -verify -data`. B-LT requires xVals and
rVals. Exit 0 when everything holds, 1 with a reason otherwise.
"""
import argparse
import base64
import hashlib
import json
import os
import re
import sys

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from jwcrypto import jwk, jws
from jwcrypto.common import base64url_decode, base64url_encode


def die(msg):
    print("jws_verify: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("jws")
    ap.add_argument("cert")
    ap.add_argument("--payload")
    ap.add_argument("--expect-payload")
    ap.add_argument("--alg")
    ap.add_argument("--level", default="B-B")
    ap.add_argument("--out-dir")
    a = ap.parse_args()

    text = open(a.jws, encoding="ascii").read().strip()
    pem = open(a.cert, "rb").read()
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(Encoding.DER)
    key = jwk.JWK.from_pem(pem)

    is_json = text.startswith("{")
    if a.payload is not None:
        b64p = base64url_encode(open(a.payload, "rb").read())
        if is_json:
            obj = json.loads(text)
            if "payload" in obj:
                die("detached JWS carries a payload")
            obj["payload"] = b64p
            text = json.dumps(obj)
        else:
            parts = text.split(".")
            if len(parts) != 3 or parts[1] != "":
                die("detached compact JWS must be header..signature")
            text = parts[0] + "." + b64p + "." + parts[2]

    registry = {"sigT": jws.JWSEHeaderParameter("Claimed signing time", False, True, None)}
    sig = jws.JWS(header_registry=registry)
    sig.deserialize(text)
    try:
        sig.verify(key)
    except jws.InvalidJWSSignature as e:
        die("signature does not verify: %s %s" % (e, sig.verifylog))

    if is_json:
        obj = json.loads(text)
        protected = json.loads(base64url_decode(obj["protected"]))
        unprotected = obj.get("header", {})
        sig_b64u = obj["signature"]
    else:
        h, _, sig_b64u = text.split(".")
        protected = json.loads(base64url_decode(h))
        unprotected = {}

    if a.alg and protected.get("alg") != a.alg:
        die("alg %r, expected %r" % (protected.get("alg"), a.alg))
    if protected.get("x5t#S256") != base64url_encode(hashlib.sha256(der).digest()):
        die("x5t#S256 does not match the certificate")
    x5c = protected.get("x5c", [])
    if not x5c or base64.b64decode(x5c[0]) != der:
        die("x5c[0] is not the certificate")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", protected.get("sigT", "")):
        die("sigT missing or not YYYY-MM-DDThh:mm:ssZ")
    if protected.get("crit") != ["sigT"]:
        die("crit is %r, expected ['sigT']" % protected.get("crit"))
    if a.expect_payload is not None and sig.payload != open(a.expect_payload, "rb").read():
        die("payload differs")

    if a.level in ("B-T", "B-LT", "B-LTA"):
        elems = {}
        for e in unprotected.get("etsiU", []):
            o = json.loads(base64url_decode(e))
            if len(o) != 1:
                die("etsiU element with %d members" % len(o))
            elems.update(o)
        if "sigTst" not in elems:
            die("no sigTst in etsiU")
        tok = base64.b64decode(elems["sigTst"]["tstTokens"][0]["val"])
        if a.out_dir:
            with open(os.path.join(a.out_dir, "sigtst.tst"), "wb") as f:
                f.write(tok)
            with open(os.path.join(a.out_dir, "sigtst.data"), "wb") as f:
                f.write(sig_b64u.encode("ascii"))
        if a.level != "B-T":
            if "xVals" not in elems or "rVals" not in elems:
                die("B-LT without xVals and rVals")
            for item in elems["xVals"]:
                x509.load_der_x509_certificate(base64.b64decode(item["x509Cert"]["val"]))
            for item in elems["rVals"].get("crlVals", []):
                x509.load_der_x509_crl(base64.b64decode(item["val"]))
    print("jws_verify: OK %s %s" % (protected["alg"], "json" if is_json else "compact"))


if __name__ == "__main__":
    main()
