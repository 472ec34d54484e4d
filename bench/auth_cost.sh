#!/usr/bin/env bash
# bench/auth_cost.sh - what API key authentication and auditing cost in qesd.
#
# A benchmark, not a test: it prints figures and fails only when it cannot
# measure. It builds qes if needed, starts a real qesd on 127.0.0.1 with TLS
# 1.3 (a throw-away CA and server certificate made with openssl), creates a
# tenant and its admin key with `qesd admin tenant create`, and drives two
# loads with wrk, one after the other against the same server:
#
#   GET /healthz       public: no authentication, no audit record
#   GET /v1/api-keys   Authorization: Bearer <key>: strict key parsing,
#                      HMAC-SHA-256 with the pepper, key cache lookup, scope
#                      check, a store read (the key list), and an api.request
#                      audit record through the group-commit queue
#
# Both loads use keep-alive connections (wrk's default), so the TLS handshake
# is paid once per connection and the figures compare the request paths. It
# prints requests/s, successful (2xx) requests/s and latency p50/p99 of each
# and the ratio of the two 2xx throughputs ("auth+audit cost: X% of health
# throughput"), then verifies the audit chain the load wrote and stops the
# server (SIGTERM, drain). When the audit group commit cannot keep up, qesd
# refuses requests with 503 audit_unavailable rather than lose a record; the
# benchmark counts those as non-2xx and names them.
#
# Rate limits: qesd's defaults (rate_key_per_s 50, burst 100; rate_ip_per_s
# 100, burst 200) would turn almost every authenticated request of this load
# into a 429, because all of it comes from one key and one address. The
# configuration below RAISES them (rate_key_* and rate_ip_* = 1000000) for
# the benchmark only; never copy those values to a production configuration.
# /healthz is never rate limited.
#
# Environment:
#   QES_BUILD_DIR          build directory (default: build-bench, built as
#                          RelWithDebInfo - -O2, the project's default and the
#                          build CI tests - when it has no qesd)
#   QES_BENCH_DURATION     seconds per load (15)
#   QES_BENCH_THREADS      wrk threads (2)
#   QES_BENCH_CONNECTIONS  wrk connections (50)
#   QES_BENCH_WORKERS      qesd worker threads (4)
#   QES_BENCH_LOG_LEVEL    qesd log_level (info, the production default: one
#                          JSON access line per request, to a file)
# Needs: cmake and the build dependencies (scripts/deps.sh), openssl, curl,
# python3, wrk (Debian package wrk: apt-get install wrk).
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
build=${QES_BUILD_DIR:-$root/build-bench}
duration=${QES_BENCH_DURATION:-15}
threads=${QES_BENCH_THREADS:-2}
connections=${QES_BENCH_CONNECTIONS:-50}
workers=${QES_BENCH_WORKERS:-4}
log_level=${QES_BENCH_LOG_LEVEL:-info}

die() { echo "auth_cost: $*" >&2; exit 1; }

for tool in wrk openssl curl python3; do
    command -v "$tool" >/dev/null ||
        die "$tool is needed (Debian: apt-get install $tool)"
done

# ---------------------------------------------------------------------------
# Build (only what is missing).
if [ ! -x "$build/qesd" ]; then
    echo "auth_cost: building qesd in $build"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    if ! cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target qesd \
        > "$build/auth_cost-build.log" 2>&1; then
        tail -n 20 "$build/auth_cost-build.log" >&2
        die "building qesd failed (log: $build/auth_cost-build.log)"
    fi
fi
QESD=$build/qesd
[ -x "$QESD" ] || die "no qesd at $QESD after the build"

# ---------------------------------------------------------------------------
# Scratch directory and cleanup: the server is always stopped.
T=$(mktemp -d "${TMPDIR:-/tmp}/qes-bench.XXXXXX")
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf -- "$T"
}
trap cleanup EXIT

# Throw-away PKI: a CA and a server certificate for localhost and 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$T/ca.key" -out "$T/ca.pem" -days 2 -subj "/CN=qes bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
    2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$T/server.key" -out "$T/server.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
    > "$T/ext.cnf"
openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" \
    -CAcreateserial -days 2 -extfile "$T/ext.cnf" -out "$T/server.pem" 2>/dev/null
chmod 600 "$T/server.key"
(umask 077 && openssl rand -hex 32 > "$T/pepper")

# A port that is free now (not port 0: with log_level above info qesd does
# not log which port it took).
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$T/qesd.conf" <<EOF
# bench/auth_cost.sh - NOT a production configuration
listen = 127.0.0.1:$PORT
tls_cert = $T/server.pem
tls_key = $T/server.key
pepper_file = $T/pepper
store = sqlite:$T/qesd.db
workers = $workers
log_level = $log_level
# raised for the benchmark: one key and one address send all the load
rate_key_per_s = 1000000
rate_key_burst = 1000000
rate_ip_per_s = 1000000
rate_ip_burst = 1000000
EOF

# A tenant and its first admin key (printed once: kept in this shell only).
"$QESD" admin --config "$T/qesd.conf" tenant create bench > "$T/tenant.out" 2> "$T/tenant.err" ||
    { cat "$T/tenant.err" >&2; die "qesd admin tenant create failed"; }
API_KEY=$(sed -n 's/^api_key: //p' "$T/tenant.out")
rm -f -- "$T/tenant.out"
[ -n "$API_KEY" ] || die "no api_key line from qesd admin tenant create"

# ---------------------------------------------------------------------------
# The server.
"$QESD" serve --config "$T/qesd.conf" 2> "$T/qesd.log" &
SERVER_PID=$!
BASE=https://localhost:$PORT
up=0
for _ in $(seq 1 200); do
    if curl -sS --fail --tlsv1.3 --cacert "$T/ca.pem" -o /dev/null "$BASE/healthz" 2>/dev/null; then
        up=1
        break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$T/qesd.log" >&2; die "qesd died at start"; }
    sleep 0.05
done
[ "$up" = 1 ] || { cat "$T/qesd.log" >&2; die "/healthz does not answer"; }
code=$(curl -sS --cacert "$T/ca.pem" -o "$T/probe.body" -w '%{http_code}' \
    -H @- "$BASE/v1/api-keys" <<< "Authorization: Bearer $API_KEY") || true
[ "$code" = 200 ] || { cat "$T/probe.body" >&2; die "GET /v1/api-keys answered $code"; }

# wrk sends the key from its environment (never written to a file).
cat > "$T/auth.lua" <<'EOF'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("QES_BENCH_KEY")
EOF

cpus=$(nproc 2>/dev/null || echo '?')
echo "auth_cost: qesd $("$QESD" --version | awk '{print $2}') on 127.0.0.1:$PORT, TLS 1.3," \
    "workers=$workers, log_level=$log_level, store sqlite (WAL), $cpus CPUs"
echo "auth_cost: wrk ${threads} threads, ${connections} keep-alive connections, ${duration}s per load"

# run NAME PATH [wrk args...]: one load; writes $T/NAME.wrk. Answers other
# than 2xx do not stop the benchmark: when the audit log's group commit falls
# behind, qesd sheds load with 503 audit_unavailable (it never drops an audit
# record), and that is a result to report. 429 answers mean the rate limits
# were not raised, which makes the figures meaningless: that stops it.
run() {
    local name=$1 path=$2
    shift 2
    QES_BENCH_KEY=$API_KEY wrk -t"$threads" -c"$connections" -d2s "$@" \
        "$BASE$path" > /dev/null  # warm-up
    QES_BENCH_KEY=$API_KEY wrk -t"$threads" -c"$connections" -d"${duration}s" \
        --latency "$@" "$BASE$path" > "$T/$name.wrk"
}
run health /healthz
run keys /v1/api-keys -s "$T/auth.lua"
curl -sS --cacert "$T/ca.pem" "$BASE/metrics" | grep '^qesd_http_requests_total' \
    > "$T/answers.txt" || true
grep -o '"problem":"[a-z_]*"' "$T/qesd.log" | sort | uniq -c > "$T/problems.txt" || true
if grep -q 'status="429"' "$T/answers.txt"; then
    cat "$T/answers.txt" >&2
    die "429 answers: the rate limits were not raised"
fi

# ---------------------------------------------------------------------------
# Figures. requests/s counts every answer; 2xx/s only the successful ones,
# and the ratio is taken on those.
python3 - "$T/health.wrk" "$T/keys.wrk" "$T/answers.txt" "$T/problems.txt" <<'EOF'
import re
import sys


def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse(path):
    text = open(path).read()
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", text)
    req, secs = int(m.group(1)), ms(m.group(2) + m.group(3)) / 1000.0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    bad = int(bad.group(1)) if bad else 0
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    errors = re.search(r"Socket errors:.*", text)
    return {"rps": req / secs, "ok_rps": (req - bad) / secs, "bad": bad,
            "p50": p50, "p99": p99, "errors": errors.group(0) if errors else ""}


h = parse(sys.argv[1])
k = parse(sys.argv[2])
print("%-32s %11s %10s %9s %8s %8s"
      % ("", "requests/s", "2xx/s", "non-2xx", "p50 ms", "p99 ms"))
for label, r in (("GET /healthz (no auth)", h),
                 ("GET /v1/api-keys (auth + audit)", k)):
    print("%-32s %11.0f %10.0f %9d %8.2f %8.2f"
          % (label, r["rps"], r["ok_rps"], r["bad"], r["p50"], r["p99"]))
for name, r in (("healthz", h), ("api-keys", k)):
    if r["errors"]:
        print("note: %s: %s" % (name, r["errors"]))
for line in open(sys.argv[3]):
    if 'status="2' not in line:
        print("note: refused (warm-ups included): " + line.split(" ")[0][len("qesd_http_requests_total"):]
              + " " + line.split(" ")[1].strip())
for line in open(sys.argv[4]):
    print("note: problem in the log: " + " ".join(line.split()))
print("auth+audit cost: %.1f%% of health throughput (2xx/s %.0f vs %.0f, %.2fx slower),"
      " p50 +%.2f ms"
      % (100.0 * k["ok_rps"] / h["ok_rps"], k["ok_rps"], h["ok_rps"],
         h["ok_rps"] / k["ok_rps"], k["p50"] - h["p50"]))
EOF

# The load left one api.request audit record per authenticated request; the
# chain must still verify.
curl -sS --cacert "$T/ca.pem" -o "$T/verify.json" -H @- "$BASE/v1/audit/verify" \
    <<< "Authorization: Bearer $API_KEY" || die "GET /v1/audit/verify failed"
python3 - "$T/verify.json" <<'EOF'
import json
import sys
v = json.load(open(sys.argv[1]))
if not v.get("ok"):
    sys.exit("auth_cost: the audit chain does not verify after the load: %r" % v)
print("audit chain after the load: %d records, verified (head seq %d)"
      % (v["records"], v["head_seq"]))
EOF

# Stop the server the way an orchestrator does.
kill -TERM "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
SERVER_PID=
[ "$rc" = 0 ] || die "qesd exited with $rc after SIGTERM"
echo "auth_cost: qesd stopped (SIGTERM, exit 0)"
