#!/usr/bin/env bash
# bench/sign_path.sh - what the whole signing path costs next to the token
# itself: signatures per second and latency through API -> qesd -> qes-agent
# -> SoftHSM2, against direct C_Sign on the same key in the same run.
#
# A benchmark, not a test: it prints figures and fails only when it cannot
# measure (or when a single signature fails or does not verify: a benchmark
# that counts failures as successes is worthless). It builds what it needs,
# makes a throw-away test PKI and SoftHSM2 tokens (tests/setup-testenv.sh),
# starts a real qesd (TLS 1.3, SQLite) on 127.0.0.1, enrolls and runs a real
# qes-agent with the scripted test pinentry (tests/helpers/qes-test-pinentry)
# answering every dialog with the PIN, and drives both with qes-bench-sign
# (bench/qes-bench-sign.c):
#
#   direct   C_Login once, then C_SignInit + C_Sign in a loop, 1, 8 and 64
#            threads (one session each): what the token alone can do.
#   login    C_Login + find key + C_Sign + C_Logout per signature, one
#            thread: the token work the agent does for every job.
#   pinentry one test-pinentry process per GETPIN, started and answered by
#            this shell: the dialog's process cost, measured apart.
#   path     N clients (1, 8, 64), each POST /v1/signatures with a batch of
#            B random digests (1, 16, 64) and long-poll GET
#            /v1/signatures/{id}?wait=30 until final; every returned value
#            is verified with OpenSSL against the certificate after the run.
#
# What one job costs on this path (and the output says so): the API call
# (TLS, API key HMAC, JSON, an audit record, a SQLite job row), a sign
# message to the agent over its WebSocket, and in the agent one pinentry
# process (fork/exec, Assuan, GETPIN: the signer's consent and PIN), a
# C_Login, C_Sign per digest, a check of each value against the
# certificate, C_Logout; then the result back, a SQLite update and the
# long-poll's answer. The agent runs one token's jobs one after another
# (one worker per token, src/agent/jobs.c), so concurrency on one key
# queues in the agent, and beyond 16 waiting jobs per token
# (AGENT_JOBS_QUEUE_MAX) the agent refuses: the job fails with token_busy.
# With 64 clients on one key that happens by design; qes-bench-sign counts
# those jobs as refused (printed per second, never as signatures) and their
# clients wait 100 ms before the next job. Any other failure stops the run.
# A remembered PIN (`qes-agent pin remember`) would
# not remove any of that: the dialog still opens to confirm each request,
# and the login still happens per job; this benchmark does not use it.
#
# The pinentry answers from a script one line per dialog; its cursor file
# (SCRIPT.pos) is made a directory here, so the helper can neither read nor
# advance it and every dialog takes the first line ("pin ..."). Each dialog
# is still a process of its own; the transcript counts them.
#
# Rate limits: qesd's defaults would turn this load into 429s (one key, one
# address); the configuration below RAISES them for the benchmark only.
#
# Environment:
#   QES_BUILD_DIR            build directory (default: build-bench, built as
#                            RelWithDebInfo when a program is missing)
#   QES_BENCH_KEY            p256 (ECDSA P-256, default) or rsa2048
#                            (RSA-2048 PKCS#1 v1.5), both on the test token A
#   QES_BENCH_DURATION       seconds per measured configuration (5)
#   QES_BENCH_WARMUP         seconds of warm-up per configuration (1)
#   QES_BENCH_MIN_JOBS       a path configuration runs on until this many jobs
#                            were started (200), at most QES_BENCH_MAX_SECONDS
#   QES_BENCH_MAX_SECONDS    (60)
#   QES_BENCH_CONCURRENCY    client counts ("1 8 64")
#   QES_BENCH_BATCHES        digests per job ("1 16 64")
#   QES_BENCH_WORKERS        qesd worker threads (4)
#   QES_BENCH_PERF=C:B       also `perf record -g` qesd and the agent during
#                            the run with C clients and batch B (e.g. 1:1);
#                            perf-qesd.data and perf-agent.data in $QES_BENCH_OUT
#   QES_BENCH_OUT            keep logs, results and perf data here (default:
#                            a temporary directory, removed)
# Needs: cmake and the build dependencies (scripts/deps.sh), openssl, curl,
# python3, softhsm2.
set -euo pipefail

BENCH_NAME=sign_path
# shellcheck source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

key=${QES_BENCH_KEY:-p256}
duration=${QES_BENCH_DURATION:-5}
warmup=${QES_BENCH_WARMUP:-1}
min_jobs=${QES_BENCH_MIN_JOBS:-200}
max_s=${QES_BENCH_MAX_SECONDS:-60}
concurrencies=${QES_BENCH_CONCURRENCY:-1 8 64}
batches=${QES_BENCH_BATCHES:-1 16 64}
workers=${QES_BENCH_WORKERS:-4}
busy_backoff_ms=100

bench_need openssl curl python3 cmake
case $key in
p256) key_id=02 cert_name=qual-p256 scheme=ecdsa ;;
rsa2048) key_id=01 cert_name=qual-rsa2048 scheme=rsa-pkcs1 ;;
*) die "QES_BENCH_KEY: p256 or rsa2048" ;;
esac
md=sha256

# Build (only what is missing), the scratch directory $T (removed at exit;
# the servers are always stopped: bench/lib.sh), the test PKI and SoftHSM2
# tokens private to this run.
bench_build qesd qes-agent qes bench/qes-bench-sign tests/qes-test-pinentry
QESD=$build/qesd
BENCH=$build/bench/qes-bench-sign PE=$build/tests/qes-test-pinentry
OUT=${QES_BENCH_OUT:-$T/out}
mkdir -p "$OUT"
bench_testenv
CERT=$PKI/$cert_name.pem
SERIAL=$QES_TOKEN_A_SERIAL

# ---------------------------------------------------------------------------
# The token alone (before the servers start, on an idle machine as far as
# this run goes). The PIN goes through the environment of one process.
results=$OUT/results.txt
: >"$results"
direct() { # LABEL ARGS...
    local label=$1
    shift
    QES_BENCH_PIN=$QES_TOKEN_A_PIN "$BENCH" direct --module "$QES_TEST_MODULE" \
        --token "$SERIAL" --key-id "$key_id" --cert "$CERT" --scheme "$scheme" --md "$md" \
        --warmup "$warmup" --duration "$duration" "$@" >"$T/direct.out" 2>"$T/direct.err" ||
        { cat "$T/direct.err" >&2; die "direct C_Sign ($label) failed"; }
    sed "s/^result /result label=$label /" "$T/direct.out" >>"$results"
}
for c in $concurrencies; do
    direct "direct-$c" --concurrency "$c"
done
direct login-each --concurrency 1 --login-each

# One pinentry process per dialog, as the agent starts it: GETPIN answered.
printf 'pin %s\n' "$QES_TOKEN_A_PIN" >"$T/pe-alone.script"
mkdir "$T/pe-alone.script.pos"
python3 - "$PE" "$T/pe-alone.script" >>"$results" <<'EOF'
import os, subprocess, sys, time
pe, script = sys.argv[1], sys.argv[2]
env = dict(os.environ, QES_TEST_PINENTRY_SCRIPT=script)
env.pop("QES_TEST_PINENTRY_LOG", None)
lat = []
end = time.monotonic() + 2.0
while time.monotonic() < end or len(lat) < 200:
    t0 = time.monotonic()
    p = subprocess.run([pe], input=b"SETDESC bench\nGETPIN\nBYE\n", env=env,
                       stdout=subprocess.PIPE, check=True)
    lat.append((time.monotonic() - t0) * 1000.0)
    if b"\nD " not in p.stdout:
        sys.exit("sign_path: the test pinentry gave no PIN")
lat.sort()
n = len(lat)
print("result label=pinentry mode=pinentry dialogs=%d sig_p50_ms=%.3f sig_p99_ms=%.3f"
      % (n, lat[(n + 1) // 2 - 1], lat[-(-99 * n // 100) - 1]))
EOF

# ---------------------------------------------------------------------------
# qesd with a localhost certificate from the test PKI, a tenant and a key
# with scopes sign and devices (kept in this shell).
bench_tls "$PKI/root-ca.pem" "$PKI/root-ca.key"
bench_qesd_conf "$T/qesd.conf" "sqlite:$T/qesd.db"
PORT=$BENCH_PORT
bench_tenant "$T/qesd.conf"
bench_qesd_start "$T/qesd.conf" "$OUT/qesd.log"
SERVER_PID=$BENCH_PID BASE=$BENCH_BASE
API_KEY=$(bench_api_key "$BASE" sign,devices)

# ---------------------------------------------------------------------------
# The agent: enrolled with a one-time code, run against the private tokens
# with the test pinentry answering every dialog with the PIN.
bench_agent_enroll "$BASE" "$API_KEY" "$T/agent" "bench desktop"
export QES_TEST_PINENTRY_LOG=$OUT/pinentry.log
bench_agent_start "$T/agent" "$OUT/agent.log" "$QES_TOKEN_A_PIN"
AGENT_PID=$BENCH_AGENT_PID
CRED=$(bench_credential_wait "$BASE" "$API_KEY" "$SERIAL" "$key_id") ||
    { tail -n 20 "$OUT/agent.log" >&2; exit 1; }

cpus=$(nproc 2>/dev/null || echo '?')
echo "sign_path: qesd $("$QESD" --version | awk '{print $2}') on 127.0.0.1:$PORT (TLS 1.3, SQLite WAL," \
    "workers=$workers, log_level=info), qes-agent + SoftHSM2 $(softhsm2-util --version 2>/dev/null || echo '?'), $cpus CPUs"
echo "sign_path: key $cert_name ($scheme, $md) on token $SERIAL; ${warmup}s warm-up, then ${duration}s" \
    "and >= $min_jobs jobs per path configuration (at most ${max_s}s)"
echo "sign_path: per job: API call + audit record + SQLite job row, WebSocket to the agent, one pinentry" \
    "process (GETPIN), C_Login, C_Sign per digest, value checked, C_Logout; one job at a time per token"

# ---------------------------------------------------------------------------
# The whole path.
lines() { wc -l <"$1" | tr -d ' '; }
path() { # LABEL ARGS...
    local label=$1 before after q0 a0
    shift
    before=$(grep -c '^START' "$QES_TEST_PINENTRY_LOG" || true)
    q0=$(lines "$OUT/qesd.log") a0=$(lines "$OUT/agent.log")
    QES_API_KEY=$API_KEY "$BENCH" path --server "$BASE" --ca "$BENCH_CA" \
        --credential "$CRED" --cert "$CERT" --scheme "$scheme" --md "$md" \
        --warmup "$warmup" --duration "$duration" --min "$min_jobs" --max-seconds "$max_s" \
        --busy-backoff-ms "$busy_backoff_ms" "$@" >"$T/path.out" 2>"$T/path.err" ||
        { cat "$T/path.err" >&2; tail -n 5 "$OUT/agent.log" >&2; die "path ($label) failed"; }
    after=$(grep -c '^START' "$QES_TEST_PINENTRY_LOG" || true)
    sed "s/^result /result label=$label dialogs=$((after - before)) qesd_lines=$q0:$(lines "$OUT/qesd.log") agent_lines=$a0:$(lines "$OUT/agent.log") /" \
        "$T/path.out" >>"$results"
}
for b in $batches; do
    for c in $concurrencies; do
        if [ "${QES_BENCH_PERF:-}" = "$c:$b" ] && command -v perf >/dev/null; then
            perf record -F 999 --call-graph dwarf,16384 -o "$OUT/perf-qesd.data" -p "$SERVER_PID" >/dev/null 2>&1 &
            p1=$!
            perf record -F 999 --call-graph dwarf,16384 -o "$OUT/perf-agent.data" -p "$AGENT_PID" >/dev/null 2>&1 &
            p2=$!
            path "path-c$c-b$b" --concurrency "$c" --batch "$b"
            kill -INT "$p1" "$p2" 2>/dev/null || true
            wait "$p1" "$p2" 2>/dev/null || true
        else
            path "path-c$c-b$b" --concurrency "$c" --batch "$b"
        fi
    done
done

# Nothing failed on the server side either.
if grep -q '"level":"error"' "$OUT/qesd.log" "$OUT/agent.log" 2>/dev/null; then
    grep -h '"level":"error"' "$OUT/qesd.log" "$OUT/agent.log" | head -n 5 >&2
    die "errors in the qesd or agent log during the run"
fi

# ---------------------------------------------------------------------------
# Figures.
python3 - "$results" "$OUT/qesd.log" "$OUT/agent.log" <<'EOF'
import json
import sys
from datetime import datetime

rows = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    rows[f["label"]] = f


def fl(r, k):
    return float(r[k])


print()
print("Token alone (%s):" % rows.get("direct-1", {}).get("scheme", "?"))
print("  %-34s %10s %9s %9s" % ("", "sigs/s", "p50 ms", "p99 ms"))
for label, r in rows.items():
    if r["mode"] == "direct":
        what = ("C_Login+C_Sign+C_Logout, 1 thread" if r["login_each"] == "1"
                else "C_Sign, %s thread%s" % (r["concurrency"], "" if r["concurrency"] == "1" else "s"))
        print("  %-34s %10.0f %9.3f %9.3f" % (what, fl(r, "sigs_per_s"), fl(r, "sig_p50_ms"), fl(r, "sig_p99_ms")))
    elif r["mode"] == "pinentry":
        print("  %-34s %10.0f %9.3f %9.3f" % ("pinentry process (GETPIN), 1 at a time",
              1000.0 / fl(r, "sig_p50_ms"), fl(r, "sig_p50_ms"), fl(r, "sig_p99_ms")))

print()
print("Whole path (API -> qesd -> agent -> SoftHSM2), latency per job:")
print("  %7s %5s %7s %9s %9s %9s %9s %8s %8s %10s" % ("clients", "batch", "jobs", "jobs/s", "sigs/s",
      "p50 ms", "p99 ms", "dialogs", "polls", "refused/s"))
for label, r in rows.items():
    if r["mode"] != "path":
        continue
    jobs = int(r["jobs"]) + int(r["warmup_jobs"])
    print("  %7s %5s %7s %9.1f %9.1f %9.2f %9.2f %8.2f %8.2f %10.1f" % (
        r["concurrency"], r["batch"], r["jobs"], fl(r, "jobs_per_s"), fl(r, "sigs_per_s"),
        fl(r, "job_p50_ms"), fl(r, "job_p99_ms"), int(r["dialogs"]) / jobs, fl(r, "polls_per_job"),
        fl(r, "refused_per_s")))
print("  (dialogs: pinentry processes per completed job; polls: GET ?wait= per job; every value")
print("  verified; refused: jobs failed token_busy - the agent queues at most 16 jobs per token")
print("  (AGENT_JOBS_QUEUE_MAX) and refuses more; their clients wait 100 ms and submit again;")
print("  jobs, latency and signatures/s count completed jobs only)")

print()
print("Path against the token (same concurrency; added = path - direct C_Sign):")
print("  %7s %5s %14s %13s %14s %14s" % ("clients", "batch", "sigs/s ratio", "direct/path",
      "added p50 ms", "added p99 ms"))
for label, r in rows.items():
    if r["mode"] != "path":
        continue
    d = rows.get("direct-" + r["concurrency"])
    if d is None:
        continue
    ratio = fl(r, "sigs_per_s") / fl(d, "sigs_per_s")
    print("  %7s %5s %14.4f %12.1fx %14.2f %14.2f" % (
        r["concurrency"], r["batch"], ratio, 1 / ratio,
        fl(r, "job_p50_ms") - fl(d, "sig_p50_ms"), fl(r, "job_p99_ms") - fl(d, "sig_p99_ms")))
print("  (sigs/s ratio: path signatures/s over direct C_Sign signatures/s. With more than one")
print("  client both latencies include queueing: the agent runs one job at a time per token,")
print("  direct C_Sign runs that many sessions at once; the added latency that measures the layer")
print("  is the one with 1 client)")



# Where the time goes, from the servers' own logs over each configuration's
# lines: qesd's duration_ms of POST /v1/signatures (TLS excluded: parse,
# auth, store, audit, dispatch), and the agent's job_started -> job_done
# (pinentry, login, signing, checks, logout; the log has ms resolution)
# and sign_request -> job_started (waiting for the token's worker), and
# the agent's job_done -> qesd's "signature job completed" (the result's way
# back: WebSocket, checks, the job row's update).
def pct(v, q):
    v = sorted(v)
    return v[max(0, -(-round(q * 100) * len(v) // 100) - 1)] if v else float("nan")


def ms(ts):
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() * 1000.0


def log_slice(path, span):
    a, b = (int(x) for x in span.split(":"))
    with open(path) as f:
        for i, line in enumerate(f):
            if a <= i < b:
                try:
                    yield json.loads(line)
                except ValueError:
                    pass


print()
print("Where the time goes (the servers' logs, per configuration):")
print("  %7s %5s %18s %22s %16s %15s" % ("clients", "batch", "qesd POST p50/p99",
      "agent job p50/p99", "agent queue p50", "result back p50"))
for label, r in rows.items():
    if r["mode"] != "path":
        continue
    post, completed = [], {}
    for j in log_slice(sys.argv[2], r["qesd_lines"]):
        if j.get("msg") == "request" and j.get("route") == "signatures.create":
            post.append(j["duration_ms"])
        elif j.get("msg") == "signature job completed":
            completed[j["job_id"]] = ms(j["time"])
    req, start, run, back = {}, {}, [], []
    for j in log_slice(sys.argv[3], r["agent_lines"]):
        e = j.get("event")
        if e == "sign_request":
            req[j["job"]] = ms(j["time"])
        elif e == "job_started":
            start[j["job"]] = ms(j["time"])
        elif e == "job_done" and j["job"] in start:
            run.append(ms(j["time"]) - start[j["job"]])
            if j["job"] in completed:
                back.append(completed[j["job"]] - ms(j["time"]))
    queue = [start[k] - req[k] for k in start if k in req]
    print("  %7s %5s %8.2f / %6.2f ms %10.0f / %6.0f ms %13.0f ms %12.0f ms" % (
        r["concurrency"], r["batch"], pct(post, .5), pct(post, .99), pct(run, .5),
        pct(run, .99), pct(queue, .5), pct(back, .5)))
print("  (agent and result times from log timestamps: 1 ms resolution)")

print()
best = max((r for r in rows.values() if r["mode"] == "path"), key=lambda r: fl(r, "sigs_per_s"))
one = rows.get("path-c1-b1")
d1 = rows.get("direct-1")
print("Targets (issue 4): added latency < 1 ms p50 and < 5 ms p99, >= 1000 signatures/s")
if one and d1:
    a50 = fl(one, "job_p50_ms") - fl(d1, "sig_p50_ms")
    a99 = fl(one, "job_p99_ms") - fl(d1, "sig_p99_ms")
    print("  1 client, batch 1: added p50 %.2f ms (%s), added p99 %.2f ms (%s)" % (
        a50, "met" if a50 < 1 else "NOT met", a99, "met" if a99 < 5 else "NOT met"))
print("  best throughput: %.0f signatures/s (%s clients, batch %s): %s" % (
    fl(best, "sigs_per_s"), best["concurrency"], best["batch"],
    "met" if fl(best, "sigs_per_s") >= 1000 else "NOT met"))
bs1 = [r for r in rows.values() if r["mode"] == "path" and r["batch"] == "1"]
if bs1:
    b = max(bs1, key=lambda r: fl(r, "sigs_per_s"))
    print("  batch 1 (one consent per signature): at most %.0f signatures/s (%s clients): %s" % (
        fl(b, "sigs_per_s"), b["concurrency"], "met" if fl(b, "sigs_per_s") >= 1000 else "NOT met"))
EOF

# Stop the agent and the server the way an orchestrator does.
bench_stop "$AGENT_PID"
bench_qesd_stop "$SERVER_PID"
if [ -n "${QES_BENCH_OUT:-}" ]; then
    echo "sign_path: logs, results and perf data in $OUT"
fi
echo "sign_path: qesd stopped (SIGTERM, exit 0)"
