#!/usr/bin/python3
"""qes-bench-sessions.py - the load generator of bench/sessions.sh: many
enrolled devices, each holding one authenticated qes.v1 session to one qesd.

Run by bench/sessions.sh, which starts qesd and makes the API key; by hand:

  qes-bench-sessions.py enroll --server https://localhost:PORT --ca CA.pem \
      --count N --keys KEYS.jsonl            (API key in $QES_API_KEY)
  qes-bench-sessions.py hold --server https://localhost:PORT --ca CA.pem \
      --keys KEYS.jsonl --qesd-pid PID [--procs P] [--hold-s S]

enroll   N devices through the real API, as `qes-agent enroll` does: for
         each, POST /v1/enrollments (API key, scope devices) for a one-time
         code, a fresh ECDSA P-256 device key, and POST /v1/devices/enroll
         {code, public_key: base64url DER SubjectPublicKeyInfo, agent_version,
         os, name}. The device ids and private keys go to KEYS (mode 0600,
         JSON lines; the keys are throw-away and never leave the file).
hold     opens one session per device in KEYS (docs/protocol.md section 3):
         TLS 1.3 to wss://HOST/v1/agent with sub-protocol qes.v1, hello,
         challenge (server_name checked against the host dialled), auth with
         the device key over qes_proto_auth_tbs' bytes, auth_ok, and an
         empty inventory, as an agent without tokens sends it. It keeps them
         open and idle for --hold-s seconds (the transport answers qesd's
         WebSocket pings and sends its own every heartbeat_s; an app-level
         `ping` is answered with `pong`), then checks that every session is
         still open and that qesd lists every device as live (GET
         /v1/devices, all pages), closes them all (1000) and prints one line
         of figures:

           result sessions=N opened=N failed=0 handshake_s=... rate_per_s=...
             rss_before_kib=... rss_with_kib=... hwm_kib=... bytes_per_session=...
             live_api=N open_after_hold=N closed_early=0 ...

         The work is split over --procs processes (default: CPUs), each an
         asyncio loop with at most --inflight handshakes at a time (qesd
         refuses upgrades beyond 1024 connections waiting for
         authentication). A process reports to this one over a pipe; this
         one reads qesd's /proc/PID/status.

Every handshake failure is counted and the first few are shown; any failure
makes the exit status 1 (the figures are printed anyway). Stays on the
address of --server (127.0.0.1 in the benchmark).
"""
import argparse
import base64
import http.client
import json
import os
import secrets
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

AGENT_VERSION = "0.0.0-bench"
OS_TEXT = "qes-bench-sessions"
AUTH_LABEL = b"qes.v1-auth"
SUBPROTOCOL = "qes.v1"
PATH = "/v1/agent"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def lp(b):
    return struct.pack(">I", len(b)) + b


def new_id():
    return b64u(secrets.token_bytes(16))


def tls_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def split_server(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "https" or not u.hostname:
        sys.exit("qes-bench-sessions: --server must be https://HOST[:PORT]")
    return u.hostname, u.port or 443


def read_status(pid):
    """VmRSS and VmHWM of a process in KiB, from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out["VmRSS"], out["VmHWM"]


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    # after the command: state is field 3, utime 14 and stime 15 (1-based)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------
# enroll


class Api:
    """One keep-alive HTTPS connection to qesd's API."""

    def __init__(self, host, port, ctx, api_key):
        self.host, self.port, self.ctx, self.api_key = host, port, ctx, api_key
        self.conn = None

    def call(self, method, path, body=None, auth=True):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Bearer " + self.api_key
        data = None if body is None else json.dumps(body).encode()
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                                        timeout=60)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                break
            except (http.client.HTTPException, OSError):
                # the server closed an idle keep-alive connection: once more
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        if resp.status // 100 != 2:
            raise RuntimeError("%s %s: HTTP %d %s" % (method, path, resp.status,
                                                      payload[:300].decode(errors="replace")))
        return json.loads(payload)


def cmd_enroll(args):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    api_key = os.environ.get("QES_API_KEY")
    if not api_key:
        sys.exit("qes-bench-sessions: QES_API_KEY is not set")
    host, port = split_server(args.server)
    ctx = tls_context(args.ca)
    lock = threading.Lock()
    nxt = [0]
    failures = []
    fd = os.open(args.keys, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    out = os.fdopen(fd, "w")

    def worker():
        api = Api(host, port, ctx, api_key)
        while True:
            with lock:
                i = nxt[0]
                if i >= args.count or failures:
                    return
                nxt[0] += 1
            key = ec.generate_private_key(ec.SECP256R1())
            spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
            try:
                code = api.call("POST", "/v1/enrollments", {})["code"]
                dev = api.call("POST", "/v1/devices/enroll",
                               {"code": code, "public_key": b64u(spki), "agent_version": AGENT_VERSION,
                                "os": OS_TEXT, "name": "bench device %d" % i}, auth=False)
            except Exception as e:  # noqa: BLE001 - reported, stops the run
                with lock:
                    failures.append(str(e))
                return
            d = key.private_numbers().private_value
            with lock:
                out.write(json.dumps({"device_id": dev["device_id"], "d": "%064x" % d}) + "\n")

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()
    dt = time.monotonic() - t0
    if failures:
        sys.exit("qes-bench-sessions: enrollment failed: %s" % failures[0])
    print("result enrolled=%d enroll_s=%.2f enroll_per_s=%.1f" % (args.count, dt, args.count / dt))


# ---------------------------------------------------------------------------
# hold: one worker process


def worker_main(args):
    """A slice of the devices: open, report "up", wait for "check", report,
    wait for "close", close, report "closed"."""
    import asyncio

    import websockets
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    host, port = split_server(args.server)
    ctx = tls_context(args.ca)
    devices = []
    with open(args.keys) as f:
        for i, line in enumerate(f):
            if i % args.slice_count == args.slice_index:
                devices.append(json.loads(line))
    url = "wss://%s:%d%s" % (host, port, PATH)
    expect_name = host.lower().rstrip(".")
    st = {"opened": 0, "failed": 0, "errors": [], "closed_early": 0, "close_codes": {},
          "pings": 0, "unexpected": 0, "heartbeat_s": 0, "done_at": []}
    conns = []

    def report(ev, **kw):
        kw["event"] = ev
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    async def recv_json(ws):
        msg = await asyncio.wait_for(ws.recv(), 30)
        if not isinstance(msg, str):
            raise RuntimeError("binary frame from qesd")
        return json.loads(msg)

    async def reader(ws):
        try:
            async for msg in ws:
                m = json.loads(msg)
                if m.get("type") == "ping":
                    st["pings"] += 1
                    await ws.send(json.dumps({"type": "pong", "id": new_id(), "v": 1,
                                              "ref_id": m["id"], "ts": m["ts"]}))
                else:
                    st["unexpected"] += 1
        except websockets.ConnectionClosed:
            pass
        if not getattr(ws, "bench_closing", False):
            st["closed_early"] += 1
            code = str(ws.close_code)
            st["close_codes"][code] = st["close_codes"].get(code, 0) + 1

    async def open_one(dev, sem):
        key = ec.derive_private_key(int(dev["d"], 16), ec.SECP256R1())
        device_id = dev["device_id"]
        async with sem:
            ws = None
            try:
                ws = await websockets.connect(url, ssl=ctx, subprotocols=[SUBPROTOCOL],
                                              compression=None, open_timeout=30,
                                              ping_interval=20, ping_timeout=60,
                                              max_size=1 << 20, close_timeout=5)
                if ws.subprotocol != SUBPROTOCOL:
                    raise RuntimeError("qesd did not select qes.v1")
                await ws.send(json.dumps({"type": "hello", "id": new_id(), "v": 1,
                                          "agent_version": AGENT_VERSION, "os": OS_TEXT,
                                          "device_id": device_id}))
                ch = await recv_json(ws)
                if ch.get("type") != "challenge":
                    raise RuntimeError("expected challenge, got %r" % ch.get("type"))
                if ch["server_name"] != expect_name:
                    raise RuntimeError("server_name %r is not the host dialled" % ch["server_name"])
                nonce = unb64u(ch["nonce"])
                tbs = (lp(AUTH_LABEL) + lp(nonce) + lp(device_id.encode()) +
                       lp(ch["server_name"].encode()) + lp(ch["session_id"].encode()))
                sig = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
                await ws.send(json.dumps({"type": "auth", "id": new_id(), "v": 1,
                                          "device_id": device_id, "signature": b64u(sig)}))
                ok = await recv_json(ws)
                if ok.get("type") != "auth_ok" or ok.get("session_id") != ch["session_id"]:
                    raise RuntimeError("expected auth_ok, got %r" % ok.get("type"))
                st["heartbeat_s"] = ok["heartbeat_s"]
                await ws.send(json.dumps({"type": "inventory", "id": new_id(), "v": 1,
                                          "report": {"modules": [], "tokens": []}}))
            except Exception as e:  # noqa: BLE001 - counted and reported
                st["failed"] += 1
                if len(st["errors"]) < 5:
                    code = getattr(ws, "close_code", None) if ws is not None else None
                    st["errors"].append("%s: %s%s" % (type(e).__name__, e,
                                                      " (close %s)" % code if code else ""))
                if ws is not None:
                    ws.bench_closing = True
                    await ws.close()
                return
        st["opened"] += 1
        st["done_at"].append(time.time())
        conns.append(ws)
        asyncio.get_running_loop().create_task(reader(ws))

    async def main():
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        sem = asyncio.Semaphore(args.inflight)
        t0 = time.time()
        await asyncio.gather(*(open_one(d, sem) for d in devices))
        report("up", opened=st["opened"], failed=st["failed"], errors=st["errors"],
               t0=t0, t1=time.time(), heartbeat_s=st["heartbeat_s"], done_at=st["done_at"])
        while True:
            line = (await stdin.readline()).decode().strip()
            if line == "check":
                report("checked", open=sum(1 for ws in conns if ws.open),
                       closed_early=st["closed_early"], close_codes=st["close_codes"],
                       pings=st["pings"], unexpected=st["unexpected"])
            elif line in ("close", ""):
                break
        for ws in conns:
            ws.bench_closing = True
        await asyncio.gather(*(ws.close(1000) for ws in conns), return_exceptions=True)
        report("closed", n=len(conns))

    asyncio.run(main())


# ---------------------------------------------------------------------------
# hold: the coordinator


class Worker:
    def __init__(self, args, index, count):
        cmd = [sys.executable, os.path.abspath(__file__), "worker", "--server", args.server,
               "--ca", args.ca, "--keys", args.keys, "--slice-index", str(index),
               "--slice-count", str(count), "--inflight", str(args.inflight)]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def expect(self, event):
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("a worker process ended early (exit %s)" % self.p.wait())
        m = json.loads(line)
        if m["event"] != event:
            raise RuntimeError("worker said %r, expected %r" % (m["event"], event))
        return m


def count_live(args, host, port, ctx):
    api = Api(host, port, ctx, os.environ["QES_API_KEY"])
    live = total = 0
    cursor = None
    while True:
        q = "/v1/devices?limit=1000" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
        page = api.call("GET", q)
        for d in page["items"]:
            total += 1
            live += 1 if d["live"] else 0
        cursor = page.get("next_cursor")
        if not cursor:
            return live, total


def cmd_hold(args):
    if not os.environ.get("QES_API_KEY"):
        sys.exit("qes-bench-sessions: QES_API_KEY is not set")
    host, port = split_server(args.server)
    ctx = tls_context(args.ca)
    with open(args.keys) as f:
        n = sum(1 for _ in f)
    procs = max(1, min(args.procs, n))
    rss0, _ = read_status(args.qesd_pid)
    workers = [Worker(args, i, procs) for i in range(procs)]
    rc = 0
    try:
        ups = [w.expect("up") for w in workers]
        opened = sum(u["opened"] for u in ups)
        failed = sum(u["failed"] for u in ups)
        t0 = min(u["t0"] for u in ups)
        t1 = max(u["t1"] for u in ups)
        errors = [e for u in ups for e in u["errors"]][:5]
        # the rate over the first and the last tenth of the sessions: does
        # a handshake cost more when many sessions are open already?
        done = sorted(t for u in ups for t in u["done_at"])
        tenth = len(done) // 10
        if tenth >= 2:
            rate_first = (tenth - 1) / max(1e-6, done[tenth - 1] - done[0])
            rate_last = (tenth - 1) / max(1e-6, done[-1] - done[-tenth])
        else:
            rate_first = rate_last = 0.0
        for e in errors:
            print("qes-bench-sessions: handshake failed: %s" % e, file=sys.stderr)
        print("qes-bench-sessions: %d sessions open in %.1f s (%.0f/s), %d failed; holding %d s"
              % (opened, t1 - t0, opened / (t1 - t0), failed, args.hold_s), file=sys.stderr)
        time.sleep(2)      # the last inventories and session rows land
        rss1, hwm1 = read_status(args.qesd_pid)
        cpu1, m1 = cpu_seconds(args.qesd_pid), time.monotonic()
        t_end = m1 + args.hold_s
        rss_max = rss1
        while time.monotonic() < t_end:
            time.sleep(min(5.0, max(0.0, t_end - time.monotonic())))
            rss_max = max(rss_max, read_status(args.qesd_pid)[0])
        rss2, hwm2 = read_status(args.qesd_pid)
        idle_cpu = (cpu_seconds(args.qesd_pid) - cpu1) / (time.monotonic() - m1)
        for w in workers:
            w.send("check")
        checks = [w.expect("checked") for w in workers]
        open_after = sum(c["open"] for c in checks)
        closed_early = sum(c["closed_early"] for c in checks)
        codes = {}
        for c in checks:
            for k, v in c["close_codes"].items():
                codes[k] = codes.get(k, 0) + v
        live, total = count_live(args, host, port, ctx)
        for w in workers:
            w.send("close")
        for w in workers:
            w.expect("closed")
        per = (rss2 - rss0) * 1024 / opened if opened else 0
        print("result sessions=%d opened=%d failed=%d procs=%d handshake_s=%.2f rate_per_s=%.1f"
              " rate_first_tenth=%.1f rate_last_tenth=%.1f rss_before_kib=%d rss_with_kib=%d rss_end_kib=%d rss_max_kib=%d hwm_kib=%d"
              " bytes_per_session=%.0f idle_cpu_pct=%.1f hold_s=%d heartbeat_s=%d live_api=%d devices=%d"
              " open_after_hold=%d closed_early=%d close_codes=%s app_pings=%d unexpected=%d"
              % (n, opened, failed, procs, t1 - t0, opened / (t1 - t0), rate_first, rate_last, rss0, rss1, rss2, rss_max,
                 hwm2, per, 100.0 * idle_cpu, args.hold_s, max(u["heartbeat_s"] for u in ups), live, total,
                 open_after, closed_early,
                 ",".join("%s:%d" % kv for kv in sorted(codes.items())) or "-",
                 sum(c["pings"] for c in checks), sum(c["unexpected"] for c in checks)))
        if failed or closed_early or open_after != n or live != n:
            rc = 1
    finally:
        for w in workers:
            if w.p.poll() is None:
                try:
                    w.p.stdin.close()
                except OSError:
                    pass
        for w in workers:
            try:
                w.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.p.kill()
                w.p.wait()
    sys.exit(rc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", required=True)
    common.add_argument("--ca", required=True)
    common.add_argument("--keys", required=True)
    e = sub.add_parser("enroll", parents=[common])
    e.add_argument("--count", type=int, required=True)
    e.add_argument("--threads", type=int, default=8)
    h = sub.add_parser("hold", parents=[common])
    h.add_argument("--qesd-pid", type=int, required=True)
    h.add_argument("--procs", type=int, default=os.cpu_count() or 2)
    h.add_argument("--inflight", type=int, default=64)
    h.add_argument("--hold-s", type=int, default=75)
    w = sub.add_parser("worker", parents=[common])
    w.add_argument("--slice-index", type=int, required=True)
    w.add_argument("--slice-count", type=int, required=True)
    w.add_argument("--inflight", type=int, default=64)
    args = ap.parse_args()
    if args.cmd == "enroll":
        cmd_enroll(args)
    elif args.cmd == "hold":
        cmd_hold(args)
    else:
        worker_main(args)


if __name__ == "__main__":
    main()
