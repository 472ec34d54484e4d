#!/usr/bin/env bash
# qesd_two_replicas.sh - two qesd replicas on one PostgreSQL cluster and one
# NATS server (store = postgres:URL, bus = nats:URL, issue 6): the agent is
# connected to replica A, the relying party only talks to replica B.
#
# Real parts: PostgreSQL (tests/pg.sh), nats-server with token
# authentication (tests/nats.sh; qesd reads the token from bus_token_file),
# two qesd processes (TLS 1.3), qes-agent enrolled on A and running against a
# private copy of the SoftHSM2 tokens with the scripted pinentry, curl.
#
# What it shows:
#  - POST /v1/signatures on B for the device on A: B sends the job through
#    NATS to A, the long-poll on B wakes when A completes it (the change is
#    published on the bus: the poll returns long before its 30 s), and the
#    signature verifies with openssl;
#  - POST .../cancel on B while the signer's dialog is open on A's agent:
#    the job is cancelled and the dialog process is gone;
#  - POST /v1/devices/{id}/diagnostics on B returns the agent's report, run
#    by A; while a diagnosis waits on A, one asked on B is refused with 409
#    diagnostics_in_progress (A decides for all replicas);
#  - nats-server stopped while both run: /readyz 503 on both, a job on B
#    for the device on A is refused as device_offline; nats-server started
#    again (same port): ready again without a restart, and a job through B
#    completes;
#  - the agent stopped: a job on B gets 409 device_offline (no responders),
#    diagnostics on B too;
#  - a second agent process with the same device key connecting to B: A
#    closes its older session with 4003 (the older agent exits 11, as on
#    one replica), and a job asked on A reaches the device on B;
#  - the device revoked with DELETE on B: A closes the agent's session
#    (reason revoked), the agent does not come back;
#  - the NATS token and the database password are in no log; both replicas
#    stop cleanly.
. "$(dirname -- "$0")/../lib.sh"
T=$(qes_tmpdir)
. "$(dirname -- "$0")/../qesd.sh"
. "$QES_SOURCE_DIR/tests/pg.sh"
. "$QES_SOURCE_DIR/tests/nats.sh"
qesd_need
qes_private_tokens "$T/tokens"
DIAG_TIMEOUT_S=4
mkdir -p "$T/resp"

qesd_tls_files "$T"
NATS_TOKEN=$(openssl rand -hex 20)
printf '%s\n' "$NATS_TOKEN" > "$T/nats.token"
chmod 600 "$T/nats.token"

qes_pg_start
start_nats --auth "$NATS_TOKEN"
ok "a private PostgreSQL cluster (port $QES_PG_PORT) and nats-server with a token (port $NATS_PORT)"

# conf FILE REPLICA: a replica on a port of its own, the shared database and bus
conf() {
    qesd_replica_conf "$1" "$2" "127.0.0.1:$(qes_free_port)"
    cat >>"$1" <<EOF
bus = nats:$NATS_URL
bus_token_file = $T/nats.token
bus_request_timeout_ms = 2000
drain_timeout_s = 3
agent_ping_interval_s = 5
agent_dead_after_s = 15
diagnostics_timeout_s = $DIAG_TIMEOUT_S
EOF
}
conf "$T/a.conf" replica-a
conf "$T/b.conf" replica-b

"$QESD" admin --config "$T/a.conf" tenant create two-co > "$T/tenant.out" 2> "$T/tenant.err" ||
    { cat "$T/tenant.err" >&2; fail "qesd admin tenant create"; }
ADMIN_KEY=$(awk '$1 == "api_key:" { print $2 }' "$T/tenant.out")
[ -n "$ADMIN_KEY" ] || fail "no admin key"

start_qesd "$T/a.conf" "$T/a.log"
PID_A=$SERVER_PID PORT_A=$PORT
start_qesd "$T/b.conf" "$T/b.log"
PID_B=$SERVER_PID PORT_B=$PORT
# ready_all WANT: /readyz on both replicas answers WANT within 15 s
ready_all() {
    local p i
    for p in "$PORT_A" "$PORT_B"; do
        PORT=$p
        for i in $(seq 1 150); do
            call - GET /readyz
            [ "$CODE" = "$1" ] && break
            sleep 0.1
        done
        expect_eq "$CODE" "$1" "GET /readyz on replica port $p"
    done
}
ready_all 200
grep -q '"msg":"bus: connected to NATS"' "$T/a.log" || fail "replica A did not log its NATS connection"
PORT=$PORT_A
check 201 "a key" "$ADMIN_KEY" POST /v1/api-keys \
    '{"name":"two replicas","scopes":["sign","devices","diagnostics","audit"]}'
KEY=$(jget 'v["key"]')
check 201 "an enrollment code" "$KEY" POST /v1/enrollments '{}'
ENROLL_CODE=$(jget 'v["code"]')
ok "two replicas on PostgreSQL and NATS, both ready"

# ---------------------------------------------------------------------------
# The agent on replica A.
CFG=$T/agent
enroll_agent "https://localhost:$PORT_A" "$ENROLL_CODE" "$CFG" "replica desktop"
qesd_pinentry
# pin_script: the right PIN for the next 20 dialogs
pin_script() {
    local lines=() _
    for _ in $(seq 1 20); do lines+=("pin $QES_TOKEN_A_PIN"); done
    pinentry_script "${lines[@]}"
}
sessions_opened() { grep -c '"event":"session_open"' "$T/agent.log" 2>/dev/null || true; }
pin_script
: > "$T/agent.log"
start_agent "$CFG" "$T/pinentry.sh"

# credential: the live P-256 credential of token A, as replica B lists it
credential() {
    PORT=$PORT_B
    wait_credential "$KEY"
}
# agent_again: the agent started again, its new session open on A, $CRED
agent_again() {
    local s0 _
    s0=$(sessions_opened)
    start_agent "$CFG" "$T/pinentry.sh"
    for _ in $(seq 1 200); do [ "$(sessions_opened)" -gt "$s0" ] && break; sleep 0.1; done
    [ "$(sessions_opened)" -gt "$s0" ] || fail "the agent did not reconnect to A"
    credential
}
# submit WHAT [TIMEOUT_S]: POST /v1/signatures on replica B; $JOB, $CODE
submit() {
    local d
    d=$(printf '%s' "$1" | openssl dgst -sha256 -binary | openssl base64 -A)
    PORT=$PORT_B
    call "$KEY" POST /v1/signatures \
        "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"digests\":[\"$d\"],\"title\":\"$1\",\"timeout_seconds\":${2:-120}}"
    JOB=
    [ "$CODE" = 202 ] && JOB=$(jget 'v["id"]')
    return 0
}
# sign WHAT: a job on replica B, long-polled on B, signed on A's agent, verified
sign() {
    local st t0 t1
    submit "$1"
    [ "$CODE" = 202 ] || { cat "$BODY" >&2; fail "POST /v1/signatures on B ($1): $CODE"; }
    t0=$(date +%s%N)
    poll_job "$KEY" "$JOB" 4 30
    st=$JOB_STATE
    t1=$(date +%s%N)
    expect_eq "$st" completed "state of the job for $1 (reason $(jget 'v.get("reason")'))"
    POLL_MS=$(((t1 - t0) / 1000000))
    jget 'v["signatures"][0]' | openssl base64 -d -A > "$T/sig.bin"
    printf '%s' "$1" > "$T/doc.bin"
    openssl x509 -in "$QES_PKI/qual-p256.pem" -pubkey -noout > "$T/pub.pem"
    openssl dgst -sha256 -verify "$T/pub.pem" -signature "$T/sig.bin" "$T/doc.bin" |
        grep -q "Verified OK" || fail "openssl rejects the signature of $1"
}
credential
sign "a contract signed through replica B"
# the long-poll on B was woken through the bus, not by its 30 s deadline
[ "$POLL_MS" -lt 15000 ] || fail "the long-poll on B took $POLL_MS ms: not woken by A's change"
grep -q "\"device_id\":\"$DEVICE\"" "$T/a.log" || fail "replica A's log does not name the device"
ok "POST /v1/signatures on B for the device on A: job $JOB completed, long-poll on B woken after $POLL_MS ms, openssl verifies"

# ---------------------------------------------------------------------------
# Cancel through B while the dialog is open on A's agent.
pinentry_script "sleep 120"
submit "cancel me"
[ "$CODE" = 202 ] || fail "POST /v1/signatures (cancel me): $CODE"
for _ in $(seq 1 100); do [ -s "$T/pinentry.pids" ] && break; sleep 0.1; done
DIALOG=$(head -n 1 "$T/pinentry.pids")
[ -n "$DIALOG" ] && kill -0 "$DIALOG" 2>/dev/null || fail "the dialog did not open"
check 200 "POST cancel on B" "$KEY" POST "/v1/signatures/$JOB/cancel"
expect_eq "$(jget 'v["state"]')" cancelled "state after cancel"
for _ in $(seq 1 100); do kill -0 "$DIALOG" 2>/dev/null || break; sleep 0.1; done
kill -0 "$DIALOG" 2>/dev/null && fail "the dialog of the job cancelled on B is still open"
grep -q "\"event\":\"job_cancel\".*\"job\":\"$JOB\"" "$T/agent.log" ||
    fail "the agent did not get the cancel"
ok "POST cancel on B while the dialog is open on A's agent: cancelled, the dialog process is gone"
pin_script

# ---------------------------------------------------------------------------
# Diagnostics through B.
PORT=$PORT_B
check 200 "POST diagnostics on B" "$KEY" POST "/v1/devices/$DEVICE/diagnostics"
python3 - "$BODY" "$DEVICE" "$QES_TOKEN_A_SERIAL" <<'EOF' || fail "the diagnostics report through B: $(head -c 400 "$BODY")"
import json, sys
v = json.load(open(sys.argv[1]))
assert v["device_id"] == sys.argv[2], v["device_id"]
assert v["session_id"], v
assert v["rtt_ms"] >= 0 and v["agent_timings"]["total_ms"] >= v["agent_timings"]["scan_ms"] >= 0
serials = [t.get("serial") for t in v["report"]["tokens"]]
assert sys.argv[3] in serials, serials
assert isinstance(v["report"]["system"], dict)
EOF
# one at a time across replicas: the agent stopped, a diagnosis waits on A
kill -STOP "$AGENT_PID"
curl -sS --cacert "$CA" -o "$T/waiting.json" -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $KEY" -H 'Content-Length: 0' \
    "https://localhost:$PORT_A/v1/devices/$DEVICE/diagnostics" > "$T/waiting.code" 2>/dev/null &
WAITING=$!
sleep 1
PORT=$PORT_B
check 409 "a second diagnosis on B while one waits on A" "$KEY" POST "/v1/devices/$DEVICE/diagnostics"
expect_problem 409 diagnostics_in_progress
wait "$WAITING" || true
expect_eq "$(cat "$T/waiting.code")" 504 "the diagnosis on A with the agent stopped"
kill -CONT "$AGENT_PID"
sleep 1
check 200 "POST diagnostics on B once the agent runs again" "$KEY" POST "/v1/devices/$DEVICE/diagnostics"
ok "POST diagnostics on B returns the report A's agent made; a second one while A waits is 409 diagnostics_in_progress"

# ---------------------------------------------------------------------------
# NATS down while both replicas run, then back.
stop_nats
ready_all 503
submit "while the bus is down"
expect_eq "$CODE" 409 "POST /v1/signatures on B while NATS is down"
expect_problem 409 device_offline
grep -q '"msg":"bus: disconnected from NATS' "$T/b.log" || fail "replica B did not log the lost bus"
restart_nats
ready_all 200
# the agent's subscription on A is back after the reconnect
for _ in $(seq 1 50); do
    submit "after the bus came back"
    [ "$CODE" = 202 ] && break
    sleep 0.2
done
[ "$CODE" = 202 ] || fail "POST /v1/signatures on B after NATS came back: $CODE"
sign "a contract after the bus came back"
ok "nats-server stopped: /readyz 503 on both, B reports device_offline; started again: ready, a job through B completes"

# ---------------------------------------------------------------------------
# The agent stopped: offline as far as B can tell (no responders).
kill -TERM "$AGENT_PID"
for _ in $(seq 1 100); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
wait "$AGENT_PID" 2>/dev/null || true
for _ in $(seq 1 100); do
    grep -q "\"msg\":\"device session closed\".*\"device_id\":\"$DEVICE\"" "$T/a.log" && break
    sleep 0.1
done
PORT=$PORT_B
submit "nobody is there"
expect_eq "$CODE" 409 "POST /v1/signatures on B with the agent stopped"
expect_problem 409 device_offline
check 409 "POST diagnostics on B with the agent stopped" "$KEY" POST "/v1/devices/$DEVICE/diagnostics"
expect_problem 409 device_offline
ok "the agent stopped: B answers 409 device_offline for a job and for diagnostics"

# ---------------------------------------------------------------------------
# A newer session of the device on B replaces the one on A (4003), as on
# one replica: a second agent process with the same device key, on B.
agent_again
FIRST_PID=$AGENT_PID
cp -a "$CFG" "$T/agent-b"
rm -f "$T/agent-b/run.lock"
python3 - "$T/agent-b/enrollment.json" "https://localhost:$PORT_B" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
e["server"] = sys.argv[2]
json.dump(e, open(sys.argv[1], "w"))
PY
start_agent "$T/agent-b" "$T/pinentry.sh" "$T/agent-b.log"
SECOND_PID=$AGENT_PID
for _ in $(seq 1 150); do kill -0 "$FIRST_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$FIRST_PID" 2>/dev/null && { tail -n 5 "$T/a.log" >&2; fail "the older agent on A was not replaced"; }
rc=0
wait "$FIRST_PID" || rc=$?
expect_eq "$rc" 11 "exit status of the agent replaced from another replica"
expect_contains "$T/a.log" '"msg":"bus: a newer session of the device opened on another replica: closing the one here"'
grep -q "\"msg\":\"device session closed\".*\"device_id\":\"$DEVICE\".*\"reason\":\"replaced\"" "$T/a.log" ||
    fail "A did not close the older session as replaced"
# the device is on B now: a job asked on A goes there
PORT_SAVE=$PORT_B
PORT_B=$PORT_A
sign "a contract asked on A for the device now on B"
PORT_B=$PORT_SAVE
kill -TERM "$SECOND_PID"
wait "$SECOND_PID" 2>/dev/null || true
ok "a newer session on B closes the older one on A (4003, the older agent exits 11); a job asked on A reaches the device on B"

# ---------------------------------------------------------------------------
# Revoked through B while the session is on A.
agent_again
PORT=$PORT_B
check 204 "DELETE the device on B" "$KEY" DELETE "/v1/devices/$DEVICE"
for _ in $(seq 1 100); do
    grep -q "\"msg\":\"device session closed\".*\"device_id\":\"$DEVICE\".*\"reason\":\"revoked\"" "$T/a.log" && break
    sleep 0.1
done
grep -q "\"msg\":\"device session closed\".*\"device_id\":\"$DEVICE\".*\"reason\":\"revoked\"" "$T/a.log" ||
    { grep 'session closed' "$T/a.log" >&2; fail "A did not close the revoked device's session"; }
for _ in $(seq 1 100); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$AGENT_PID" 2>/dev/null && fail "the revoked agent still runs"
ok "DELETE on B: A closed the session as revoked, the agent stopped"

PORT=$PORT_B
check 200 "GET /v1/audit/verify on B" "$KEY" GET /v1/audit/verify
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is True, d' "$BODY" ||
    fail "the audit chain: $(cat "$BODY")"

for f in "$T"/a.log "$T"/b.log "$T"/agent.log; do
    expect_not_contains "$f" "$NATS_TOKEN"
    expect_not_contains "$f" "$QES_PG_PASSWORD"
done
ok "the NATS token and the database password are in no log; the audit chain verifies"

PORT=$PORT_B SERVER_PID=$PID_B stop_qesd
PORT=$PORT_A SERVER_PID=$PID_A stop_qesd
ok "both replicas stop cleanly"
