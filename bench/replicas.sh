#!/usr/bin/env bash
# bench/replicas.sh - signatures per second through two qesd replicas on
# PostgreSQL + NATS against one qesd on SQLite + the in-process bus, in the
# same run, under the same load.
#
# A benchmark, not a test: it prints figures and fails only when it cannot
# measure, or when a single signature fails or does not verify. The load is
# that of bench/sign_path.sh's path mode (qes-bench-sign path): C clients,
# each in a closed loop POST /v1/signatures with a batch of B random
# digests and long-poll GET /v1/signatures/{id}?wait=30 on the same replica
# until the job is final; every value is verified against the certificate
# after the run. One real qes-agent signs with SoftHSM2 (test token A, key
# P-256) and the scripted test pinentry, as in sign_path.sh.
#
#   (a) one qesd, store sqlite (WAL, synchronous=FULL), bus local; the agent
#       and all clients on it
#   (b) two qesd replicas A and B on one private PostgreSQL (tests/pg.sh)
#       and one nats-server (tests/nats.sh), bus = nats:URL; the agent on A;
#       client i on replica i mod 2, so half the jobs are POSTed and
#       long-polled on B and reach the agent through NATS, and their results
#       come back to B's long-polls through the store and the bus
#
# Before (b) is measured, one job is POSTed on B and long-polled there. If
# it does not complete (a qesd whose bus cannot reach A's device fails it
# with device_offline), (b) runs with all clients on replica A instead, and
# the output says so in its header and in every row ("A only").
#
# PostgreSQL: the cluster of tests/pg.sh is made for tests (fsync off); for
# a fair comparison with SQLite's synchronous=FULL this script turns fsync,
# synchronous_commit and full_page_writes back on (QES_BENCH_PG_FSYNC=0
# leaves them off, and the header says which).
#
# What the ratio shows: the agent signs one job at a time per token (see
# docs/benchmarks.md, sign_path), so with one agent both deployments are
# bound by the same device; the ratio is the cost of the shared store and
# the extra hop, not the capacity of two replicas. Replicas add capacity
# for many devices (bench/sessions.sh measures what one replica holds).
#
# Rate limits: RAISED for the benchmark only (one key, one address).
#
# Environment:
#   QES_BUILD_DIR          build directory (default: build-bench, built as
#                          RelWithDebInfo when a program is missing)
#   QES_BENCH_CONCURRENCY  client counts ("8")
#   QES_BENCH_BATCHES      digests per job ("1 16")
#   QES_BENCH_DURATION     seconds per measured configuration (10)
#   QES_BENCH_WARMUP       seconds of warm-up per configuration (2)
#   QES_BENCH_MIN_JOBS     a configuration runs on until this many jobs were
#                          started (200), at most QES_BENCH_MAX_SECONDS (60)
#   QES_BENCH_WORKERS      worker threads per qesd (4)
#   QES_BENCH_PG_FSYNC     1 (default): PostgreSQL with fsync on; 0: off
#   QES_BENCH_OUT          keep logs and results here (default: a temporary
#                          directory, removed)
# Needs: what sign_path.sh needs, plus PostgreSQL (postgresql) and
# nats-server (scripts/deps.sh).
set -euo pipefail

BENCH_NAME=replicas
# shellcheck source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=../tests/pg.sh
. "$bench_root/tests/pg.sh"
# shellcheck source=../tests/nats.sh
. "$bench_root/tests/nats.sh"

concurrencies=${QES_BENCH_CONCURRENCY:-8}
batches=${QES_BENCH_BATCHES:-1 16}
duration=${QES_BENCH_DURATION:-10}
warmup=${QES_BENCH_WARMUP:-2}
min_jobs=${QES_BENCH_MIN_JOBS:-200}
max_s=${QES_BENCH_MAX_SECONDS:-60}
workers=${QES_BENCH_WORKERS:-4}
pg_fsync=${QES_BENCH_PG_FSYNC:-1}
key_id=02 cert_name=qual-p256 scheme=ecdsa md=sha256

bench_need openssl curl python3 cmake
bench_build qesd qes-agent qes bench/qes-bench-sign tests/qes-test-pinentry
OUT=${QES_BENCH_OUT:-$T/out}
mkdir -p "$OUT"
bench_testenv
bench_tls "$PKI/root-ca.pem" "$PKI/root-ca.key"
CERT=$PKI/$cert_name.pem
SERIAL=$QES_TOKEN_A_SERIAL
results=$OUT/results.txt
: >"$results"

# run_load SETUP SERVER...: every clients x batch configuration against the
# given replicas; result lines with label SETUP-cC-bB in $results.
run_load() {
    local setup=$1 c b s servers=()
    shift
    for s in "$@"; do servers+=(--server "$s"); done
    for b in $batches; do
        for c in $concurrencies; do
            QES_API_KEY=$API_KEY "$build/bench/qes-bench-sign" path "${servers[@]}" \
                --ca "$BENCH_CA" --credential "$CRED" --cert "$CERT" --scheme "$scheme" \
                --md "$md" --warmup "$warmup" --duration "$duration" --min "$min_jobs" \
                --max-seconds "$max_s" --busy-backoff-ms 100 --concurrency "$c" --batch "$b" \
                >"$T/path.out" 2>"$T/path.err" ||
                { cat "$T/path.err" >&2; tail -n 5 "$OUT/agent-$setup.log" >&2; die "$setup: path c=$c b=$b failed"; }
            sed "s/^result /result label=$setup-c$c-b$b /" "$T/path.out" >>"$results"
        done
    done
}

# agent_on BASE SETUP: enroll a fresh agent at BASE and run it; $CRED.
agent_on() {
    bench_agent_enroll "$1" "$API_KEY" "$T/agent-$2" "bench desktop $2"
    bench_agent_start "$T/agent-$2" "$OUT/agent-$2.log" "$QES_TOKEN_A_PIN"
    CRED=$(bench_credential_wait "$1" "$API_KEY" "$SERIAL" "$key_id") ||
        { tail -n 20 "$OUT/agent-$2.log" >&2; exit 1; }
}

no_errors() { # LOG...: no error lines, or die showing them
    if grep -h '"level":"error"' "$@" >"$T/errors" 2>/dev/null; then
        head -n 5 "$T/errors" >&2
        die "errors in the logs: $*"
    fi
}

cpus=$(nproc 2>/dev/null || echo '?')
echo "replicas: qesd $("$build/qesd" --version | awk '{print $2}'), workers=$workers per replica," \
    "log_level=info; qes-agent + SoftHSM2 $(softhsm2-util --version 2>/dev/null || echo '?')," \
    "key $cert_name; $cpus CPUs; ${warmup}s warm-up, then ${duration}s and >= $min_jobs jobs per configuration"

# ---------------------------------------------------------------------------
# (a) one qesd on SQLite, bus local.
bench_qesd_conf "$T/a.conf" "sqlite:$T/qesd.db" "" "replica_name = single"
bench_tenant "$T/a.conf"
bench_qesd_start "$T/a.conf" "$OUT/qesd-single.log"
SINGLE_PID=$BENCH_PID SINGLE=$BENCH_BASE
API_KEY=$(bench_api_key "$SINGLE" sign,devices)
export QES_TEST_PINENTRY_LOG=$OUT/pinentry.log
agent_on "$SINGLE" single
echo "replicas: (a) one qesd on SQLite + local bus at $SINGLE, the agent on it"
run_load single "$SINGLE"
bench_stop "$BENCH_AGENT_PID"
bench_qesd_stop "$SINGLE_PID"
no_errors "$OUT/qesd-single.log" "$OUT/agent-single.log"

# ---------------------------------------------------------------------------
# (b) two replicas on PostgreSQL + NATS.
qes_pg_start "$T/pg"
if [ "$pg_fsync" = 1 ]; then
    printf 'fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n' \
        >>"$QES_PG_DIR/data/postgresql.conf"
    qes_pg_stop
    qes_pg_restart
fi
start_nats
pg_version=$("$QES_PG_BIN/postgres" --version | awk '{print $3}')
nats_version=$("$NATS_SERVER_BIN" --version 2>/dev/null | awk '{print $NF}')
for r in A B; do
    bench_qesd_conf "$T/$r.conf" "postgres:$QES_PG_URL" "" "$(printf 'replica_name = %s\nbus = nats:%s' "$r" "$NATS_URL")"
done
bench_tenant "$T/A.conf"
bench_qesd_start "$T/A.conf" "$OUT/qesd-A.log"
A_PID=$BENCH_PID A=$BENCH_BASE
bench_qesd_start "$T/B.conf" "$OUT/qesd-B.log"
B_PID=$BENCH_PID B=$BENCH_BASE
API_KEY=$(bench_api_key "$A" sign,devices)
agent_on "$A" replicas

# Can B reach the agent on A? One job POSTed and long-polled on B.
probe=$(QES_API_KEY=$API_KEY python3 - "$B" "$BENCH_CA" "$CRED" <<'EOF'
import base64, http.client, json, os, ssl, sys, time, urllib.parse
base, ca, cred = sys.argv[1:4]
u = urllib.parse.urlsplit(base)
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=60)
h = {"Authorization": "Bearer " + os.environ["QES_API_KEY"], "Content-Type": "application/json"}
body = {"credential_id": cred, "digest_algorithm": "sha256", "signature_scheme": "ecdsa",
        "digests": [base64.b64encode(os.urandom(32)).decode()], "title": "Replica probe",
        "application": "bench/replicas.sh", "timeout_seconds": 60}
c.request("POST", "/v1/signatures", json.dumps(body), h)
r = c.getresponse()
job = json.loads(r.read())
if r.status // 100 != 2:
    print("refused:%d:%s" % (r.status, job.get("type", "?")))
    sys.exit(0)
end = time.monotonic() + 60
while job.get("state") not in ("completed", "failed", "cancelled", "expired") and time.monotonic() < end:
    c.request("GET", "/v1/signatures/%s?wait=30" % job["id"], headers=h)
    r = c.getresponse()
    job = json.loads(r.read())
print("%s:%s" % (job.get("state"), job.get("reason") or "-"))
EOF
) || die "the probe job on replica B could not run"
probe=${probe//$'\n'/ }
if [ "${probe%%:*}" = completed ]; then
    spread=AB
    echo "replicas: (b) two replicas on PostgreSQL $pg_version (fsync $([ "$pg_fsync" = 1 ] && echo on || echo off))" \
        "+ nats-server $nats_version: A at $A (the agent), B at $B; client i on replica i mod 2" \
        "(probe job via B: completed)"
    run_load replicas "$A" "$B"
else
    spread=A
    echo "replicas: (b) two replicas on PostgreSQL $pg_version (fsync $([ "$pg_fsync" = 1 ] && echo on || echo off))" \
        "+ nats-server $nats_version: A at $A (the agent), B at $B; a job POSTed on B did not reach the" \
        "agent on A (probe: $probe): the bus does not route between replicas in this build, so ALL" \
        "CLIENTS RUN ON REPLICA A ONLY"
    run_load replicas "$A"
fi
bench_stop "$BENCH_AGENT_PID"
bench_qesd_stop "$B_PID"
bench_qesd_stop "$A_PID"
no_errors "$OUT/qesd-A.log" "$OUT/qesd-B.log" "$OUT/agent-replicas.log"

# ---------------------------------------------------------------------------
# Figures.
python3 - "$results" "$spread" "$OUT/qesd-single.log" "$OUT/qesd-A.log" "$OUT/qesd-B.log" <<'EOF'
import json
import sys

rows = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    rows[f["label"]] = f
spread = "A+B" if sys.argv[2] == "AB" else "A only"
print()
print("Signatures through the gateway (every value verified; latency per job):")
print("  %-34s %7s %5s %7s %9s %9s %9s %9s %10s" % ("deployment", "clients", "batch", "jobs", "jobs/s",
      "sigs/s", "p50 ms", "p99 ms", "refused/s"))
pairs = []
for label, r in rows.items():
    if not label.startswith("single-"):
        continue
    rest = label[len("single-"):]
    b = rows.get("replicas-" + rest)
    for name, x in (("1 x qesd, sqlite + local", r),
                    ("2 x qesd, postgres + nats (%s)" % spread, b)):
        if x is None:
            continue
        print("  %-34s %7s %5s %7s %9.1f %9.1f %9.2f %9.2f %10.1f" % (
            name, x["concurrency"], x["batch"], x["jobs"], float(x["jobs_per_s"]),
            float(x["sigs_per_s"]), float(x["job_p50_ms"]), float(x["job_p99_ms"]),
            float(x["refused_per_s"])))
    if b is not None:
        pairs.append((r, b))
print()
print("Two replicas (postgres + nats, load on %s) against one (sqlite + local):" % spread)
for r, b in pairs:
    print("  %s clients, batch %s: signatures/s x %.2f, p50 x %.2f (%+.2f ms), p99 x %.2f (%+.2f ms)" % (
        r["concurrency"], r["batch"], float(b["sigs_per_s"]) / float(r["sigs_per_s"]),
        float(b["job_p50_ms"]) / float(r["job_p50_ms"]),
        float(b["job_p50_ms"]) - float(r["job_p50_ms"]),
        float(b["job_p99_ms"]) / float(r["job_p99_ms"]),
        float(b["job_p99_ms"]) - float(r["job_p99_ms"])))
# qesd's own time for POST /v1/signatures (parse, auth, the job's commits,
# dispatch; TLS excluded), over the whole run of each deployment
def post_ms(path):
    v = []
    for line in open(path):
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if j.get("msg") == "request" and j.get("route") == "signatures.create":
            v.append(j["duration_ms"])
    v.sort()
    return (len(v), v[(len(v) + 1) // 2 - 1], v[-(-99 * len(v) // 100) - 1]) if v else (0, 0.0, 0.0)


print("  (one agent signs one job at a time per token in both: the ratio is the cost of the")
print("  shared store%s, not the capacity of two replicas)" % (" and the hop between replicas"
      if spread == "A+B" else ""))
print()
print("qesd's own time for POST /v1/signatures (its log, every configuration; TLS excluded):")
for name, path in (("1 x qesd, sqlite", sys.argv[3]), ("replica A, postgres", sys.argv[4]),
                   ("replica B, postgres", sys.argv[5])):
    n, p50, p99 = post_ms(path)
    if n:
        print("  %-20s %6d requests, p50 %6.2f ms, p99 %6.2f ms" % (name, n, p50, p99))
EOF
[ -z "${QES_BENCH_OUT:-}" ] || echo "replicas: logs and results in $OUT"
echo "replicas: all qesd stopped (SIGTERM, exit 0)"
