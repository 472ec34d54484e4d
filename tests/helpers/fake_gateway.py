#!/usr/bin/env python3
"""fake_gateway.py - a scripted qes.v1 gateway for testing qes-agent alone.

The real gateway (qesd) is tested with the agent in tests/integration/
e2e_sign.sh. This one exists to drive the agent into the corners that a real
server reaches only by accident: every close code, a server that falls
silent, a challenge for the wrong host, a malformed message, cancels at any
moment, a burst of jobs for one token. It speaks qes.v1 as docs/protocol.md
says, verifies the agent's auth signature and every signature value the
agent returns (against the certificate in the agent's own inventory), and
records every message it receives.

Two TLS 1.3 listeners on 127.0.0.1 (the agent dials "localhost"; with
--tls12-only they speak TLS 1.2 and nothing else, which the agent refuses):
  HTTPS (control and enrollment), port written to STATE/https.port
    POST /v1/devices/enroll            {code, public_key, agent_version, os[, name]}
    POST /ctl/send                     a message object; "id" and "v" added
    POST /ctl/sign                     {job_id, credential, scheme, md, digests_hex,
                                        title?, description?, timeout_s?}
    POST /ctl/close                    {code, reason}
    POST /ctl/revoke                   close 4002, refuse the device from now on
    POST /ctl/config                   {server_name?, heartbeat_s?, silent?, accept?}
    GET  /ctl/state                    sessions, live, counters
  WSS /v1/agent (sub-protocol qes.v1), port written to STATE/wss.port
Every message received is appended to STATE/received.jsonl (sign_result
entries get "verified": true/false); events to STATE/events.log.
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import secrets
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import websockets
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def lp(b):
    return struct.pack(">I", len(b)) + b


def new_id():
    return b64u(secrets.token_bytes(16))


def verification_code(md, digests):
    h = hashlib.sha256()
    h.update(lp(b"qes.v1-verification-code") + lp(md.encode()) + struct.pack(">I", len(digests)))
    for d in digests:
        h.update(lp(d))
    return "%04d" % (int.from_bytes(h.digest()[:8], "big") % 10000)


MDS = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


class Gateway:
    def __init__(self, args):
        self.args = args
        self.state = args.state
        self.server_name = args.server_name
        self.heartbeat_s = args.heartbeat
        self.silent = False          # stop answering after auth (no auth_ok)
        self.accept = True           # answer hello at all
        self.devices = {}            # device_id -> public key
        self.revoked = set()
        self.codes = set(args.code)
        self.ws = None               # the live connection
        self.live = False
        self.sessions = 0
        self.hellos = 0
        self.inventory = None        # last report
        self.jobs = {}               # job_id -> (scheme, md, digests, credential)
        self.loop = None
        self.lock = threading.Lock()

    def event(self, text):
        with open(os.path.join(self.state, "events.log"), "a") as f:
            f.write("%.3f %s\n" % (time.time(), text))

    def record(self, msg):
        with open(os.path.join(self.state, "received.jsonl"), "a") as f:
            f.write(json.dumps(msg) + "\n")

    # ---- verification of what the agent signs ----
    def cert_for(self, credential):
        if self.inventory is None:
            return None
        for t in self.inventory.get("tokens", []):
            for c in t.get("certificates", []):
                if c.get("credential") == credential and c.get("certificate"):
                    return x509.load_der_x509_certificate(unb64u(c["certificate"]))
        return None

    def verify(self, job_id, sigs):
        job = self.jobs.get(job_id)
        if job is None:
            return False
        scheme, md, digests, credential = job
        cert = self.cert_for(credential)
        if cert is None or len(sigs) != len(digests):
            return False
        pub = cert.public_key()
        h = MDS[md]()
        try:
            for d, s in zip(digests, sigs):
                s = unb64u(s)
                if scheme == "ecdsa":
                    pub.verify(s, d, ec.ECDSA(utils.Prehashed(h)))
                elif scheme == "rsa-pss":
                    pub.verify(s, d, padding.PSS(mgf=padding.MGF1(MDS[md]()),
                               salt_length=h.digest_size), utils.Prehashed(h))
                else:
                    pub.verify(s, d, padding.PKCS1v15(), utils.Prehashed(h))
        except InvalidSignature:
            return False
        return True

    # ---- the WebSocket side ----
    async def send(self, ws, msg):
        msg = dict(msg)
        msg.setdefault("id", new_id())
        msg.setdefault("v", 1)
        await ws.send(json.dumps(msg, separators=(",", ":")))

    async def handler(self, ws, path):
        if path != "/v1/agent":
            await ws.close(4000, "protocol_error: wrong path")
            return
        self.event("connected")
        try:
            await self.session(ws)
        except websockets.ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            self.event("closed %s %s" % (ws.close_code, ws.close_reason))
            if self.ws is ws:
                self.ws = None
                self.live = False

    async def session(self, ws):
        hello = json.loads(await ws.recv())
        self.record(hello)
        self.hellos += 1
        if hello.get("type") != "hello":
            await ws.close(4000, "protocol_error: expected hello")
            return
        if not self.accept:
            self.event("ignoring hello")
            await asyncio.sleep(3600)
        device = hello["device_id"]
        nonce = secrets.token_bytes(32)
        session_id = "ses_" + secrets.token_hex(8)
        await self.send(ws, {"type": "challenge", "nonce": b64u(nonce),
                             "server_name": self.server_name, "session_id": session_id})
        auth = json.loads(await ws.recv())
        self.record(auth)
        if auth.get("type") != "auth" or auth.get("device_id") != device:
            await ws.close(4000, "protocol_error: expected auth")
            return
        if device in self.revoked:
            await ws.close(4002, "device_revoked")
            return
        pub = self.devices.get(device)
        tbs = (lp(b"qes.v1-auth") + lp(nonce) + lp(device.encode()) +
               lp(self.server_name.encode()) + lp(session_id.encode()))
        try:
            if pub is None:
                raise InvalidSignature()
            pub.verify(unb64u(auth["signature"]), tbs, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            self.event("auth failed")
            await ws.close(4001, "auth_failed")
            return
        if self.silent:
            self.event("silent after auth")
            await asyncio.sleep(3600)
        if self.ws is not None:
            old = self.ws
            self.ws = None
            await old.close(4003, "replaced")
        self.ws = ws
        self.live = True
        self.sessions += 1
        self.event("live %s" % session_id)
        await self.send(ws, {"type": "auth_ok", "session_id": session_id,
                             "heartbeat_s": self.heartbeat_s})
        async for text in ws:
            msg = json.loads(text)
            if msg.get("type") == "inventory":
                self.inventory = msg["report"]
            if msg.get("type") == "sign_result" and msg.get("status") == "ok":
                msg["verified"] = self.verify(msg["job_id"], msg["signatures"])
            if msg.get("type") == "ping":
                await self.send(ws, {"type": "pong", "ref_id": msg["id"], "ts": msg["ts"]})
            self.record(msg)

    # ---- control, from the HTTP thread ----
    def run_on_loop(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def ctl_send(self, msg):
        ws = self.ws
        if ws is None:
            return False
        self.run_on_loop(self.send(ws, msg))
        return True

    def ctl_sign(self, req):
        md = req.get("md", "sha256")
        digests = [bytes.fromhex(h) for h in req["digests_hex"]]
        self.jobs[req["job_id"]] = (req["scheme"], md, digests, req["credential"])
        msg = {"type": "sign", "job_id": req["job_id"], "credential": req["credential"],
               "scheme": req["scheme"], "md": md, "digests": [b64u(d) for d in digests],
               "requester": {"tenant": req.get("tenant", "Test Tenant"),
                             "application": req.get("application", "fake gateway")},
               "title": req.get("title", "Test document"),
               "description": req.get("description", ""),
               "verification_code": req.get("verification_code",
                                            verification_code(md, digests)),
               "timeout_s": req.get("timeout_s", 60)}
        return self.ctl_send(msg)

    def ctl_close(self, code, reason):
        ws = self.ws
        if ws is None:
            return False
        self.run_on_loop(ws.close(code, reason))
        return True


def make_http(gw):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, status, obj, ctype="application/json"):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            n = int(self.headers.get("Content-Length", "0"))
            return json.loads(self.rfile.read(n) or b"{}")

        def do_GET(self):
            if self.path == "/ctl/state":
                self.reply(200, {"live": gw.live, "sessions": gw.sessions,
                                 "hellos": gw.hellos, "devices": list(gw.devices)})
            else:
                self.reply(404, {"title": "not found"})

        def do_POST(self):
            b = self.body()
            if self.path == "/v1/devices/enroll":
                if b.get("code") not in gw.codes:
                    self.reply(410, {"type": "https://qes.example/problems/enrollment_code_invalid",
                                     "title": "enrollment code used, expired or unknown",
                                     "status": 410}, "application/problem+json")
                    return
                gw.codes.discard(b["code"])
                dev = "dev_" + secrets.token_hex(6)
                gw.devices[dev] = serialization.load_der_public_key(unb64u(b["public_key"]))
                gw.event("enrolled %s os=%s" % (dev, b.get("os")))
                self.reply(201, {"device_id": dev, "tenant_id": "ten_fake",
                                 "server_name": gw.server_name})
            elif self.path == "/ctl/send":
                self.reply(200 if gw.ctl_send(b) else 409, {})
            elif self.path == "/ctl/sign":
                self.reply(200 if gw.ctl_sign(b) else 409, {})
            elif self.path == "/ctl/close":
                self.reply(200 if gw.ctl_close(b["code"], b.get("reason", "")) else 409, {})
            elif self.path == "/ctl/revoke":
                for d in list(gw.devices):
                    gw.revoked.add(d)
                gw.ctl_close(4002, "device_revoked")
                self.reply(200, {})
            elif self.path == "/ctl/config":
                for k in ("server_name", "heartbeat_s", "silent", "accept"):
                    if k in b:
                        setattr(gw, k, b[k])
                self.reply(200, {})
            else:
                self.reply(404, {"title": "not found"})
    return H


def tls_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if args.tls12_only:     # a server the agent must refuse
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(args.cert, args.key)
    return ctx


async def main_async(gw, args):
    gw.loop = asyncio.get_running_loop()
    server = await websockets.serve(gw.handler, "127.0.0.1", 0, ssl=tls_context(args),
                                    subprotocols=["qes.v1"], max_size=1 << 20,
                                    ping_interval=None)
    port = server.sockets[0].getsockname()[1]
    with open(os.path.join(args.state, "wss.port"), "w") as f:
        f.write("%d\n" % port)
    await asyncio.Future()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--server-name", default="localhost")
    p.add_argument("--heartbeat", type=int, default=20)
    p.add_argument("--code", action="append", default=[])
    p.add_argument("--tls12-only", action="store_true")
    args = p.parse_args()
    gw = Gateway(args)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_http(gw))
    httpd.socket = tls_context(args).wrap_socket(httpd.socket, server_side=True)
    with open(os.path.join(args.state, "https.port"), "w") as f:
        f.write("%d\n" % httpd.server_address[1])
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    asyncio.run(main_async(gw, args))


if __name__ == "__main__":
    sys.exit(main())
