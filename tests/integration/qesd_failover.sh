#!/usr/bin/env bash
# qesd_failover.sh - failover between two qesd replicas on one PostgreSQL
# (issue 6): a replica killed with SIGKILL and a replica stopped with
# SIGTERM, with a signer's dialog open.
#
# Real parts: a private PostgreSQL cluster (tests/pg.sh) and nats-server
# (tests/nats.sh), two qesd processes (TLS 1.3) sharing them, no load
# balancer: qes-agent enrolled on
# replica A dials gateway_addresses = A,B (agent.conf) against a private
# copy of the SoftHSM2 tokens, with the scripted pinentry holding the
# dialog; curl as the relying party; psql to look at the rows.
#
# What it shows:
#  - SIGKILL on A while a job is awaiting_user (the agent frozen, so only
#    the store can tell): within replica_dead_after_s (+ one beat) replica B
#    reaps A's session (replica_lost, audited) and GET on B shows the job
#    failed with device_disconnected; the audit chain verifies on B; the
#    agent, let go, reconnects to B and a new job through B is signed and
#    verified by openssl;
#  - A restarted while B's job is at the device leaves that job alone;
#  - SIGTERM on B with a job at the device: /readyz 503 at once, a new POST
#    503 with Retry-After, the agent's session stays while its dialog is
#    open, the job completes, then the agent is told 4004 and reconnects to
#    the restarted A; B exits 0;
#  - SIGTERM on a replica whose dialog outlasts drain_timeout_s: the job
#    fails with gateway_restart before the deadline and the replica exits 0;
#  - SIGKILL on A and the agent back on B before any reaper acts: the new
#    session replaces A's in the store and A's job fails at once;
#  - at the end no job is in a state that is not final.
. "$(dirname -- "$0")/../lib.sh"
T=$(qes_tmpdir)
. "$(dirname -- "$0")/../qesd.sh"
. "$QES_SOURCE_DIR/tests/pg.sh"
. "$QES_SOURCE_DIR/tests/nats.sh"
qesd_need
qes_private_tokens "$T/tokens"
mkdir -p "$T/resp"

qesd_tls_files "$T"

qes_pg_start
start_nats
HB_S=1 DEAD_S=4
PORT_A=$(qes_free_port)
PORT_B=$(qes_free_port)
while [ "$PORT_B" = "$PORT_A" ]; do PORT_B=$(qes_free_port); done

# conf FILE REPLICA PORT DRAIN_S: a replica on a fixed port (restarts keep
# it: the agent's gateway_addresses name it), the shared database
conf() {
    qesd_replica_conf "$1" "$2" "127.0.0.1:$3"
    cat >>"$1" <<EOF
bus = nats:$NATS_URL
drain_timeout_s = $4
agent_ping_interval_s = 2
agent_dead_after_s = 8
replica_heartbeat_s = $HB_S
replica_dead_after_s = $DEAD_S
EOF
}
conf "$T/a.conf" replica-a "$PORT_A" 20
conf "$T/b.conf" replica-b "$PORT_B" 20
conf "$T/b-short.conf" replica-b "$PORT_B" 6
# stop_pid PID SECONDS: wait for a SIGTERMed qesd; exit status 0
stop_wait() {
    local i rc=0
    for i in $(seq 1 $(($2 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$1" 2>/dev/null && fail "qesd $1 still running $2 s after SIGTERM"
    wait "$1" || rc=$?
    expect_eq "$rc" 0 "qesd exit status after SIGTERM"
}

"$QESD" admin --config "$T/a.conf" tenant create failover-co > "$T/tenant.out" 2> "$T/tenant.err" ||
    { cat "$T/tenant.err" >&2; fail "qesd admin tenant create"; }
ADMIN_KEY=$(awk '$1 == "api_key:" { print $2 }' "$T/tenant.out")
start_qesd "$T/a.conf" "$T/a.log"
PID_A=$SERVER_PID
start_qesd "$T/b.conf" "$T/b.log"
PID_B=$SERVER_PID
PORT=$PORT_A
check 201 "a key" "$ADMIN_KEY" POST /v1/api-keys '{"name":"failover","scopes":["sign","devices","audit"]}'
KEY=$(jget 'v["key"]')
check 201 "an enrollment code" "$KEY" POST /v1/enrollments '{}'
ENROLL_CODE=$(jget 'v["code"]')
[ "$(qes_psql -c "SELECT count(*) FROM replicas WHERE name IN ('replica-a', 'replica-b') AND last_beat_at_ms > (extract(epoch from now()) * 1000)::bigint - 5000")" = 2 ] ||
    fail "both replicas beat in the store"
ok "replicas A (:$PORT_A) and B (:$PORT_B) on one PostgreSQL and one NATS, both beating every ${HB_S}s"

# ---------------------------------------------------------------------------
# The agent, enrolled on A, told where both replicas are.
CFG=$T/agent
enroll_agent "https://localhost:$PORT_A" "$ENROLL_CODE" "$CFG" "failover desktop"
printf 'gateway_addresses = 127.0.0.1:%s, 127.0.0.1:%s\n' "$PORT_A" "$PORT_B" > "$CFG/agent.conf"
chmod 600 "$CFG/agent.conf"
qesd_pinentry
pinentry_script "pin $QES_TOKEN_A_PIN"
start_agent "$CFG" "$T/pinentry.sh"

# open_on REPLICA SECONDS: the device has an open session on REPLICA
open_on() {
    local i
    for i in $(seq 1 $(($2 * 10))); do
        [ "$(qes_psql -c "SELECT count(*) FROM device_sessions WHERE closed_at_ms IS NULL AND replica_id = '$1'")" -ge 1 ] && return 0
        sleep 0.1
    done
    tail -n 20 "$T/agent.log" >&2
    fail "no open session of the device on $1 after $2 s"
}
# credential PORT: the live P-256 credential of token A, as that replica lists it
credential() {
    local p=$PORT
    PORT=$1
    wait_credential "$KEY"
    PORT=$p
}
# submit PORT WHAT: a job for the document WHAT through that replica; $JOB
submit() {
    local d
    d=$(printf '%s' "$2" | openssl dgst -sha256 -binary | openssl base64 -A)
    PORT=$1
    check 202 "POST /v1/signatures ($2) on :$1" "$KEY" POST /v1/signatures \
        "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"digests\":[\"$d\"],\"title\":\"$2\",\"timeout_seconds\":120}"
    JOB=$(jget 'v["id"]')
}
# state_on PORT: the job's state and reason through that replica ("" when it does not answer)
state_on() {
    PORT=$1
    call "$KEY" GET "/v1/signatures/$JOB"
    [ "$CODE" = 200 ] || { ST= REASON=; return 0; }
    ST=$(jget 'v["state"]')
    REASON=$(jget 'v.get("reason") or ""')
}
# wait_state PORT STATE SECONDS
wait_state() {
    local i
    for i in $(seq 1 $(($3 * 10))); do
        state_on "$1"
        [ "$ST" = "$2" ] && return 0
        case "$ST" in completed|failed|cancelled|expired) break ;; esac
        sleep 0.1
    done
    tail -n 20 "$T/agent.log" >&2
    fail "job $JOB: state '$ST' ($REASON) on :$1, expected $2"
}
# verify WHAT: the completed job's signature over WHAT, checked by openssl
verify() {
    jget 'v["signatures"][0]' | openssl base64 -d -A > "$T/sig.bin"
    printf '%s' "$1" > "$T/doc.bin"
    openssl x509 -in "$QES_PKI/qual-p256.pem" -pubkey -noout > "$T/pub.pem"
    openssl dgst -sha256 -verify "$T/pub.pem" -signature "$T/sig.bin" "$T/doc.bin" |
        grep -q "Verified OK" || fail "openssl rejects the signature of $1"
}
open_on replica-a 20
credential "$PORT_A"
submit "$PORT_B" "a first contract"
wait_state "$PORT_B" completed 30
verify "a first contract"
ok "agent on A (gateway_addresses A,B); a job posted on B is signed on the token and verifies"

# ---------------------------------------------------------------------------
# SIGKILL on A with the dialog open. The agent is frozen first, so nothing
# but the store's heartbeat can tell B that A is gone.
pinentry_script "sleep 120" "pin $QES_TOKEN_A_PIN"
submit "$PORT_B" "a contract when A dies"
KILLED_JOB=$JOB
wait_state "$PORT_B" awaiting_user 20
kill -STOP "$AGENT_PID"
kill -KILL "$PID_A"
wait "$PID_A" 2>/dev/null || true
T0=$(date +%s%N)
wait_state "$PORT_B" failed $((DEAD_S + HB_S + 6))
T1=$(date +%s%N)
expect_eq "$REASON" device_disconnected "reason of the job whose replica died"
MS=$(( (T1 - T0) / 1000000 ))
[ "$MS" -le $(( (DEAD_S + 2 * HB_S + 2) * 1000 )) ] ||
    fail "the job ended ${MS} ms after the kill (dead after ${DEAD_S}s)"
expect_eq "$(qes_psql -c "SELECT close_reason FROM device_sessions WHERE replica_id = 'replica-a' ORDER BY connected_at_ms DESC LIMIT 1")" \
    replica_lost "close reason of A's session"
[ "$(qes_psql -c "SELECT count(*) FROM audit_records WHERE type = 'device.session_closed' AND details LIKE '%replica_lost%'")" = 1 ] ||
    fail "one device.session_closed record with replica_lost"
grep -q '"msg":"device session of a lost replica closed' "$T/b.log" || fail "B did not log the reap"
PORT=$PORT_B
check 200 "GET /v1/audit/verify on B" "$KEY" GET /v1/audit/verify
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is True, d' "$BODY" ||
    fail "audit chain on B: $(cat "$BODY")"
ok "SIGKILL on A: B reaped A's session ${MS} ms later (replica_lost, audited), job failed device_disconnected; the audit chain verifies"

kill -CONT "$AGENT_PID"
open_on replica-b 20
pinentry_script "pin $QES_TOKEN_A_PIN"
credential "$PORT_B"
submit "$PORT_B" "a contract after the failover"
wait_state "$PORT_B" completed 30
verify "a contract after the failover"
grep -q '"address":"127.0.0.1:'"$PORT_B"'"' "$T/agent.log" || fail "the agent never dialed B"
ok "the agent moved to B by itself; a new job through B is signed and verifies"

# ---------------------------------------------------------------------------
# SIGTERM on B while the signer types the PIN: the job finishes first.
pinentry_script "sleep 6" "pin $QES_TOKEN_A_PIN"
submit "$PORT_B" "a contract during the drain"
wait_state "$PORT_B" awaiting_user 20
# A comes back meanwhile: its start-up recovery leaves B's job alone
start_qesd "$T/a.conf" "$T/a2.log"
PID_A=$SERVER_PID
state_on "$PORT_A"
expect_eq "$ST" awaiting_user "B's job after A restarted"
N4004=$(grep -c '"code":"4004"' "$T/agent.log" || true)
kill -TERM "$PID_B"
sleep 0.3
PORT=$PORT_B
call - GET /readyz
expect_eq "$CODE" 503 "GET /readyz on B once SIGTERM arrived"
call "$KEY" POST /v1/signatures '{"credential_id":"'"$CRED"'","digest_algorithm":"sha256","digests":["'"$(printf x | openssl dgst -sha256 -binary | openssl base64 -A)"'"],"title":"too late"}'
expect_eq "$CODE" 503 "POST /v1/signatures on B while draining"
grep -qi '^retry-after:' "$HDR" || fail "no Retry-After on the draining 503"
[ "$(grep -c '"code":"4004"' "$T/agent.log" || true)" = "$N4004" ] ||
    fail "the session with a dialog open was closed at the start of the drain"
wait_state "$PORT_A" completed 20
verify "a contract during the drain"
stop_wait "$PID_B" 25
[ "$(grep -c '"code":"4004"' "$T/agent.log" || true)" -gt "$N4004" ] ||
    fail "the agent was not told 4004"
open_on replica-a 20
ok "A restarted without touching B's job; SIGTERM on B: /readyz and new POSTs 503 at once, the open dialog's job completed, then 4004; B exited 0; the agent is back on A"

# ---------------------------------------------------------------------------
# SIGTERM with a dialog that outlasts the drain: the job ends definitely.
start_qesd "$T/b-short.conf" "$T/b2.log"
PID_B=$SERVER_PID
kill -TERM "$PID_A"		# the agent goes to B (4004, next address)
stop_wait "$PID_A" 25
open_on replica-b 20
credential "$PORT_B"
pinentry_script "sleep 60" "pin $QES_TOKEN_A_PIN"
submit "$PORT_B" "a contract nobody finishes"
wait_state "$PORT_B" awaiting_user 20
T0=$(date +%s%N)
kill -TERM "$PID_B"
stop_wait "$PID_B" 10
T1=$(date +%s%N)
MS=$(( (T1 - T0) / 1000000 ))
expect_eq "$(qes_psql -c "SELECT state || ' ' || coalesce(reason, '') FROM jobs WHERE id = '$JOB'")" \
    "failed gateway_restart" "the job whose dialog outlasted the drain"
[ "$MS" -le 7000 ] || fail "the drain took ${MS} ms (drain_timeout_s 6)"
ok "SIGTERM with a dialog longer than drain_timeout_s (6 s): the job failed gateway_restart, B exited 0 after ${MS} ms"

# ---------------------------------------------------------------------------
# The device back on B at once after A died, before any reaper could act:
# its new session replaces A's in the store and A's job fails at once.
DEAD_S=30
conf "$T/a-slow.conf" replica-a "$PORT_A" 20
conf "$T/b-slow.conf" replica-b "$PORT_B" 20
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
start_qesd "$T/a-slow.conf" "$T/a3.log"
PID_A=$SERVER_PID
start_qesd "$T/b-slow.conf" "$T/b3.log"
PID_B=$SERVER_PID
start_agent "$CFG" "$T/pinentry.sh"
open_on replica-a 20
credential "$PORT_A"
pinentry_script "sleep 120" "pin $QES_TOKEN_A_PIN"
submit "$PORT_B" "a contract when A dies again"
REPLACED_JOB=$JOB
wait_state "$PORT_B" awaiting_user 20
kill -KILL "$PID_A"
wait "$PID_A" 2>/dev/null || true
T0=$(date +%s%N)
wait_state "$PORT_B" failed 15
T1=$(date +%s%N)
MS=$(( (T1 - T0) / 1000000 ))
expect_eq "$REASON" device_disconnected "reason of the job whose device came back elsewhere"
expect_eq "$(qes_psql -c "SELECT close_reason FROM device_sessions WHERE replica_id = 'replica-a' ORDER BY connected_at_ms DESC LIMIT 1")" \
    replaced "close reason of A's last session"
open_on replica-b 5
ok "SIGKILL on A, the agent back on B at once: A's session closed as replaced and its job failed ${MS} ms after the kill (replica_dead_after_s ${DEAD_S})"

# ---------------------------------------------------------------------------
OPEN=$(qes_psql -c "SELECT count(*) FROM jobs WHERE state NOT IN ('completed', 'failed', 'expired', 'cancelled')")
expect_eq "$OPEN" 0 "jobs not in a final state at the end"
expect_eq "$(qes_psql -c "SELECT state || ' ' || reason FROM jobs WHERE id = '$KILLED_JOB'")" \
    "failed device_disconnected" "the job of the killed replica"
ok "no job is left in a state that is not final ($(qes_psql -c "SELECT count(*) FROM jobs") jobs)"
