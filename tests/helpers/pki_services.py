#!/usr/bin/env python3
"""pki_services.py - the test PKI's online services on 127.0.0.1, for tests.

One process, two listening ports (the ones tests/pki/mkpki.sh wrote into the
certificates' AIA and CDP extensions, DIR/pki.env):

  HTTP port   GET  /NAME.crl, /NAME.cer    the PKI's CRLs and CA certificates
              POST /tsa                    RFC 3161 TSA: `openssl ts -reply` with
                                           the PKI's TSA key and certificate
              POST /tsa/MODE               the same TSA misbehaving on request:
                                           bad-nonce, bad-imprint (the answer is
                                           for a changed request), rejection
                                           (status 2), garbage (not DER), huge
                                           (more than any client limit)
              GET  /status/NNN, /huge, /redirect-ftp   for the fetch tests
  OCSP port   POST /ocsp (any path)        OCSP: `openssl ocsp -index` with the
                                           issuing CA's database and its
                                           delegated responder
              POST /ocsp/bad-nonce         the answer echoes another nonce

Every answer is produced by the openssl command-line tool from the PKI's own
files, so what the tests check is judged against OpenSSL, not against this
script. Requests are served one at a time (the TSA serial file is shared).

usage: pki_services.py --pki DIR --http-port P --ocsp-port Q --work DIR
           [--ready FILE]
"""
import argparse
import http.server
import os
import re
import subprocess
import sys
import threading

MAX_BODY = 64 * 1024
LOCK = threading.Lock()
ARGS = None


def der_children(buf, off, end):
    """(tag, header_start, content_start, content_end) of each TLV in buf[off:end]."""
    out = []
    while off < end:
        tag = buf[off]
        first = buf[off + 1]
        if first < 0x80:
            length, hdr = first, 2
        else:
            n = first & 0x7F
            length = int.from_bytes(buf[off + 2:off + 2 + n], "big")
            hdr = 2 + n
        out.append((tag, off, off + hdr, off + hdr + length))
        off += hdr + length
    return out


def mutate_query(query, what):
    """Flip the last byte of the nonce or of the hashed message of a TimeStampReq."""
    buf = bytearray(query)
    top = der_children(buf, 0, len(buf))[0]
    kids = der_children(buf, top[2], top[3])
    if what == "imprint":
        imprint = kids[1]
        hashed = der_children(buf, imprint[2], imprint[3])[1]
        buf[hashed[3] - 1] ^= 0x01
    else:
        nonces = [k for k in kids[2:] if k[0] == 0x02]
        if not nonces:
            return bytes(buf)
        buf[nonces[0][3] - 1] ^= 0x01
    return bytes(buf)


OCSP_NONCE_OID = bytes.fromhex("06092b0601050507300102")


def mutate_ocsp_nonce(request):
    """Flip the last byte of the nonce extension's value in an OCSPRequest."""
    buf = bytearray(request)
    i = buf.find(OCSP_NONCE_OID)
    if i < 0:
        return bytes(buf)
    tag, _, _, end = der_children(buf, i + len(OCSP_NONCE_OID), len(buf))[0]
    if tag == 0x04:
        buf[end - 1] ^= 0x01
    return bytes(buf)


def run(cmd, data):
    with LOCK:
        p = subprocess.run(cmd, input=data, capture_output=True, cwd=ARGS.work,
                           timeout=30, check=False)
    if p.returncode != 0:
        sys.stderr.write("pki_services: %s failed: %s\n" %
                         (cmd[1], p.stderr.decode(errors="replace")[-500:]))
        return None
    return p.stdout


def ts_config(path):
    pki = ARGS.pki
    with open(path, "w", encoding="ascii") as f:
        f.write(f"""[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
serial              = {ARGS.work}/tsaserial
crypto_device       = builtin
signer_cert         = {pki}/tsa.pem
signer_key          = {pki}/tsa.key
signer_digest       = sha256
default_policy      = 1.3.6.1.4.1.99999.1.1
other_policies      = 1.3.6.1.4.1.99999.1.2
digests             = sha256, sha384, sha512
accuracy            = secs:1
ordering            = no
tsa_name            = no
ess_cert_id_chain   = no
ess_cert_id_alg     = sha256
""")
    with open(f"{ARGS.work}/tsaserial", "w", encoding="ascii") as f:
        f.write("01\n")


def tsa_reply(query, mode):
    if mode == "garbage":
        return b"this is not a TimeStampResp"
    if mode == "huge":
        return b"\x30" * (1024 * 1024)
    if mode == "bad-nonce":
        query = mutate_query(query, "nonce")
    elif mode == "bad-imprint":
        query = mutate_query(query, "imprint")
    elif mode not in ("", "rejection"):
        return None
    # one file per request thread: concurrent requests must not swap queries
    qfile = f"{ARGS.work}/query-{threading.get_ident()}.der"
    with open(qfile, "wb") as f:
        f.write(query)
    if mode == "rejection":
        # a syntactically valid refusal: PKIStatusInfo { rejection(2) },
        # PKIFreeText "test TSA refuses", failInfo badRequest
        text = b"test TSA refuses"
        free = b"\x0c" + bytes([len(text)]) + text
        status = b"\x02\x01\x02" + b"\x30" + bytes([len(free)]) + free + b"\x03\x02\x02\x04"
        si = b"\x30" + bytes([len(status)]) + status
        return b"\x30" + bytes([len(si)]) + si
    return run(["openssl", "ts", "-reply", "-config", f"{ARGS.work}/ts.cnf",
                "-queryfile", qfile, "-out", "/dev/stdout"], None)


def ocsp_reply(request):
    rfile = f"{ARGS.work}/ocsp-req.der"
    with open(rfile, "wb") as f:
        f.write(request)
    pki = ARGS.pki
    return run(["openssl", "ocsp", "-index", f"{pki}/index.txt",
                "-CA", f"{pki}/issuing-ca.pem", "-rsigner", f"{pki}/ocsp.pem",
                "-rkey", f"{pki}/ocsp.key", "-reqin", rfile,
                "-respout", "/dev/stdout", "-nmin", "60"], None)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one line per request, no bodies
        sys.stderr.write("pki_services: %s %s\n" % (self.address_string(), fmt % args))

    def answer(self, code, body=b"", ctype="application/octet-stream", extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def is_ocsp_port(self):
        return self.server.server_address[1] == ARGS.ocsp_port

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        m = re.fullmatch(r"/status/(\d{3})", path)
        if m:
            return self.answer(int(m.group(1)), b"status\n", "text/plain")
        if path == "/huge":
            return self.answer(200, b"x" * (8 * 1024 * 1024))
        if path == "/redirect-ftp":
            return self.answer(302, b"", extra={"Location": "ftp://127.0.0.1/x.crl"})
        if path == "/redirect-crl":
            return self.answer(302, b"", extra={"Location": "/issuing-ca.crl"})
        m = re.fullmatch(r"/([A-Za-z0-9_.-]+\.(crl|cer))", path)
        if self.is_ocsp_port() or not m or ".." in path:
            return self.answer(404, b"not found\n", "text/plain")
        try:
            with open(os.path.join(ARGS.pki, m.group(1)), "rb") as f:
                body = f.read()
        except OSError:
            return self.answer(404, b"not found\n", "text/plain")
        ctype = "application/pkix-crl" if m.group(2) == "crl" else "application/pkix-cert"
        return self.answer(200, body, ctype)

    def do_POST(self):
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY:
            return self.answer(413, b"too large\n", "text/plain")
        body = self.rfile.read(n)
        ctype = self.headers.get("Content-Type", "")
        if self.is_ocsp_port():
            if ctype != "application/ocsp-request":
                return self.answer(415, b"want application/ocsp-request\n", "text/plain")
            if self.path.rstrip("/").endswith("/bad-nonce"):
                body = mutate_ocsp_nonce(body)
            out = ocsp_reply(body)
            if out is None:
                return self.answer(500, b"ocsp failed\n", "text/plain")
            return self.answer(200, out, "application/ocsp-response")
        m = re.fullmatch(r"/tsa(?:/([a-z-]+))?", self.path)
        if not m:
            return self.answer(404, b"not found\n", "text/plain")
        if ctype != "application/timestamp-query":
            return self.answer(415, b"want application/timestamp-query\n", "text/plain")
        out = tsa_reply(body, m.group(1) or "")
        if out is None:
            return self.answer(400, b"bad request\n", "text/plain")
        return self.answer(200, out, "application/timestamp-reply")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--pki", required=True)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--ocsp-port", type=int, required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--ready")
    ARGS = ap.parse_args()
    ARGS.pki = os.path.abspath(ARGS.pki)
    ARGS.work = os.path.abspath(ARGS.work)
    os.makedirs(ARGS.work, exist_ok=True)
    ts_config(f"{ARGS.work}/ts.cnf")
    servers = []
    try:
        for port in (ARGS.http_port, ARGS.ocsp_port):
            srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
            srv.daemon_threads = True
            servers.append(srv)
    except OSError as e:
        sys.stderr.write(f"pki_services: cannot listen on 127.0.0.1:{port}: {e}\n")
        return 1
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    if ARGS.ready:
        with open(ARGS.ready, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
    try:
        threads[0].join()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
