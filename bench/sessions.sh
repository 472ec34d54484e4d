#!/usr/bin/env bash
# bench/sessions.sh [N] - how many idle device sessions one qesd holds, and
# what each costs: N enrolled devices (10000 by default) each keep one
# authenticated qes.v1 session open against one qesd on SQLite.
#
# A benchmark, not a test: it prints figures and fails only when it cannot
# measure or when a session fails (a handshake refused, a session closed
# during the hold, a device qesd does not list as live). It builds qesd and
# qes when missing, makes a throw-away CA and server certificate, starts a
# real qesd (TLS 1.3, SQLite WAL with synchronous=FULL, log level info) on
# 127.0.0.1, creates a tenant and a `devices` API key, and runs the load
# generator bench/qes-bench-sessions.py (Python 3 asyncio + websockets from
# Debian, /usr/bin/python3):
#
#   enroll   N devices through the real API, each with its own P-256 key,
#            as `qes-agent enroll` does: POST /v1/enrollments for a one-time
#            code, then POST /v1/devices/enroll with the key (8 client
#            threads, one keep-alive TLS connection each)
#   hold     N sessions that speak the real protocol: TLS 1.3, WebSocket
#            qes.v1, hello, challenge, auth signed with the device key,
#            auth_ok, an (empty) inventory; then held idle for
#            QES_BENCH_HOLD seconds, longer than qesd's dead-peer window
#            (agent_dead_after_s, 60 s), so only sessions whose heartbeats
#            flow survive: qesd pings every agent_ping_interval_s (20 s),
#            the generator's transport answers and pings too, as the agent
#            does. Then every session must still be open and GET
#            /v1/devices must list all N devices as live.
#
# What one session costs qesd: a TLS connection and its libwebsockets
# state, the hub's session (hub_priv.h), a session row and a
# device.session_opened audit record (one fsynced SQLite commit) and the
# stored inventory (another); resident memory is read from
# /proc/PID/status before the sessions open (after the enrollment) and
# with all N open. The handshake rate counts from the first connection to
# the last auth_ok plus inventory sent, all at most QES_BENCH_INFLIGHT per
# generator process at a time (qesd refuses upgrades beyond 1024
# connections waiting for authentication).
#
# File descriptors: qesd holds one per session and the generator one per
# session; the script raises the soft RLIMIT_NOFILE to the hard limit and
# needs N + 1024 of it (qesd sizes its libwebsockets connection table
# from the limit it starts with: see docs/configuration.md).
#
# Rate limits: qesd's defaults would refuse N enrollments from one address
# in a row; the configuration RAISES them for the benchmark only.
#
# Environment:
#   QES_BUILD_DIR        build directory (default: build-bench, built as
#                        RelWithDebInfo when a program is missing)
#   QES_BENCH_HOLD       seconds the sessions are held idle (75)
#   QES_BENCH_PROCS      generator processes (the number of CPUs)
#   QES_BENCH_INFLIGHT   handshakes at a time per generator process (64)
#   QES_BENCH_WORKERS    qesd worker threads (4)
#   QES_BENCH_OUT        keep the qesd log and the figures here (default: a
#                        temporary directory, removed)
# Needs: cmake and the build dependencies (scripts/deps.sh), openssl, curl,
# /usr/bin/python3 with python3-websockets and python3-cryptography.
set -euo pipefail

BENCH_NAME=sessions
# shellcheck source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

n=${1:-10000}
hold=${QES_BENCH_HOLD:-75}
procs=${QES_BENCH_PROCS:-$(nproc 2>/dev/null || echo 2)}
inflight=${QES_BENCH_INFLIGHT:-64}
workers=${QES_BENCH_WORKERS:-4}
PY=/usr/bin/python3
GEN=$bench_root/bench/qes-bench-sessions.py

case $n in '' | *[!0-9]*) die "usage: bench/sessions.sh [N] (a number of sessions)" ;; esac
[ "$n" -ge 1 ] || die "N must be at least 1"
bench_need openssl curl cmake
"$PY" -c 'import websockets, cryptography' 2>/dev/null ||
    die "$PY needs python3-websockets and python3-cryptography (apt-get install python3-websockets python3-cryptography)"

# One descriptor per session in qesd and in the generator, plus the rest.
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ]; then
    [ "$hard" -ge $((n + 1024)) ] ||
        die "the hard RLIMIT_NOFILE is $hard; $n sessions need $((n + 1024)) (raise it, e.g. prlimit or limits.conf)"
fi
ulimit -n "$hard"

bench_build qesd qes
OUT=${QES_BENCH_OUT:-$T/out}
mkdir -p "$OUT"

bench_tls
bench_qesd_conf "$T/qesd.conf" "sqlite:$T/qesd.db"
bench_tenant "$T/qesd.conf"
bench_qesd_start "$T/qesd.conf" "$OUT/qesd.log"
QESD_PID=$BENCH_PID
API_KEY=$(bench_api_key "$BENCH_BASE" devices)
export QES_API_KEY=$API_KEY

cpus=$(nproc 2>/dev/null || echo '?')
echo "sessions: qesd $("$build/qesd" --version | awk '{print $2}') on 127.0.0.1:$BENCH_PORT (TLS 1.3," \
    "SQLite WAL synchronous=FULL, workers=$workers, log_level=info), $cpus CPUs," \
    "RLIMIT_NOFILE $(ulimit -n); $n devices, $procs generator processes x $inflight handshakes"

# ---------------------------------------------------------------------------
# Enrollment: N devices, each with its own key.
"$PY" "$GEN" enroll --server "$BENCH_BASE" --ca "$BENCH_CA" --keys "$T/devices.jsonl" \
    --count "$n" >"$T/enroll.out" 2>"$T/enroll.err" ||
    { cat "$T/enroll.err" >&2; tail -n 5 "$OUT/qesd.log" >&2; die "enrollment failed"; }
enroll=$(grep '^result ' "$T/enroll.out")

# ---------------------------------------------------------------------------
# The sessions: open, hold, check, close.
rc=0
"$PY" "$GEN" hold --server "$BENCH_BASE" --ca "$BENCH_CA" --keys "$T/devices.jsonl" \
    --qesd-pid "$QESD_PID" --procs "$procs" --inflight "$inflight" --hold-s "$hold" \
    >"$T/hold.out" 2>"$T/hold.err" || rc=$?
cat "$T/hold.err" >&2
result=$(grep '^result ' "$T/hold.out" || true)
[ -n "$result" ] || { tail -n 5 "$OUT/qesd.log" >&2; die "the generator printed no figures"; }
printf '%s\n%s\n' "$enroll" "$result" >"$OUT/results.txt"

"$PY" - "$enroll" "$result" "$n" <<'EOF'
import sys

e = dict(kv.split("=", 1) for kv in sys.argv[1].split()[1:])
r = dict(kv.split("=", 1) for kv in sys.argv[2].split()[1:])
n = int(sys.argv[3])
mib = lambda kib: int(kib) / 1024.0
print()
print("Enrollment:  %s devices in %.1f s (%.0f/s: POST /v1/enrollments + POST /v1/devices/enroll)"
      % (e["enrolled"], float(e["enroll_s"]), float(e["enroll_per_s"])))
print("Handshakes:  %s of %d sessions authenticated in %.1f s: %.0f sessions/s (%s failed);"
      " first tenth %.0f/s, last tenth %.0f/s"
      % (r["opened"], n, float(r["handshake_s"]), float(r["rate_per_s"]), r["failed"],
         float(r["rate_first_tenth"]), float(r["rate_last_tenth"])))
print("qesd memory: VmRSS %.1f MiB before, %.1f MiB with the sessions (%.1f MiB after the hold),"
      " VmHWM %.1f MiB" % (mib(r["rss_before_kib"]), mib(r["rss_with_kib"]), mib(r["rss_end_kib"]),
                          mib(r["hwm_kib"])))
print("per session: %.1f KiB resident ((VmRSS after the hold - before) / sessions)"
      % (float(r["bytes_per_session"]) / 1024.0))
print("Held idle:   %s s (heartbeat %s s): %s sessions still open, %s closed early (%s);"
      " GET /v1/devices: %s of %s devices live"
      % (r["hold_s"], r["heartbeat_s"], r["open_after_hold"], r["closed_early"], r["close_codes"],
         r["live_api"], r["devices"]))
print("qesd CPU while idle: %.1f %% of one CPU (pings, pongs, last-seen writes, the poll loop)"
      % float(r["idle_cpu_pct"]))
ok = (int(r["failed"]) == 0 and int(r["closed_early"]) == 0 and int(r["open_after_hold"]) == n
      and int(r["live_api"]) == n)
print("Target (issue 6): %d sessions, qesd under 1 GiB: %s (VmHWM %.0f MiB)"
      % (n, "met" if ok and int(r["hwm_kib"]) < 1024 * 1024 else "NOT met", mib(r["hwm_kib"])))
EOF

if grep -q '"level":"error"' "$OUT/qesd.log"; then
    grep '"level":"error"' "$OUT/qesd.log" | head -n 5 >&2
    rc=1
    echo "sessions: errors in the qesd log" >&2
fi
bench_qesd_stop "$QESD_PID"
[ -z "${QES_BENCH_OUT:-}" ] || echo "sessions: the qesd log and the figures are in $OUT"
[ "$rc" = 0 ] || die "not every session held (see above)"
echo "sessions: qesd stopped (SIGTERM, exit 0)"
