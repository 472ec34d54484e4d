#!/usr/bin/env bash
# qesd_postgres.sh - qesd on PostgreSQL (store = postgres:URL, issue 6):
# two replicas on one private cluster (tests/pg.sh), and the cluster stopped
# and started again under load.
#
# Real parts: PostgreSQL (initdb'd for this test, password authentication
# over TCP), two qesd processes (TLS 1.3) sharing it, qes-agent enrolled and
# running against a private copy of the SoftHSM2 tokens with the scripted
# pinentry, curl as the relying party.
#
# What it shows:
#  - a tenant made with `qesd admin`, keys, an enrollment, an agent, a
#    signature job signed on the token and verified by openssl - every row on
#    PostgreSQL;
#  - both replicas appending audit records at once (API keys created on each
#    in parallel): GET /v1/audit/verify on either replica finds one chain,
#    no fork, no gap;
#  - PostgreSQL stopped under that load: every answer meanwhile is 201 or
#    503 (never a 500, a hang or a dropped connection), /readyz says 503;
#    started again, both replicas serve again without a restart; every key
#    acknowledged with 201 (before, during, after) is there with its
#    key.created audit record, and the chain verifies;
#  - the database password is in no log.
. "$(dirname -- "$0")/../lib.sh"
T=$(qes_tmpdir)
. "$(dirname -- "$0")/../qesd.sh"
. "$QES_SOURCE_DIR/tests/pg.sh"
qesd_need
qes_private_tokens "$T/tokens"
PE=$QES_BUILD_DIR/tests/qes-test-pinentry
mkdir -p "$T/resp" "$T/load"

qesd_tls_files "$T"

qes_pg_start
ok "a private PostgreSQL cluster on 127.0.0.1:$QES_PG_PORT"

# conf FILE REPLICA: a replica on a port of its own, the shared database
conf() {
    qesd_replica_conf "$1" "$2" "127.0.0.1:$(qes_free_port)"
    cat >>"$1" <<EOF
drain_timeout_s = 3
agent_ping_interval_s = 5
agent_dead_after_s = 15
rate_ip_per_s = 1000
rate_ip_burst = 10000
rate_key_per_s = 1000
rate_key_burst = 10000
EOF
}
conf "$T/a.conf" replica-a
conf "$T/b.conf" replica-b

"$QESD" admin --config "$T/a.conf" tenant create pg-co > "$T/tenant.out" 2> "$T/tenant.err" ||
    { cat "$T/tenant.err" >&2; fail "qesd admin tenant create on PostgreSQL"; }
ADMIN_KEY=$(awk '$1 == "api_key:" { print $2 }' "$T/tenant.out")
[ -n "$ADMIN_KEY" ] || fail "no admin key"
[ "$(qes_psql -c 'SELECT max(version) FROM schema_version')" = 5 ] ||
    fail "schema version on PostgreSQL"

start_qesd "$T/a.conf" "$T/a.log"
PID_A=$SERVER_PID PORT_A=$PORT
start_qesd "$T/b.conf" "$T/b.log"
PID_B=$SERVER_PID PORT_B=$PORT
for PORT in "$PORT_A" "$PORT_B"; do
    check 200 "GET /readyz on $PORT" - GET /readyz
done
PORT=$PORT_A
check 201 "a key" "$ADMIN_KEY" POST /v1/api-keys '{"name":"pg test","scopes":["sign","devices","audit"]}'
KEY=$(jget 'v["key"]')
PORT=$PORT_B
check 200 "the key seen by the other replica" "$KEY" GET /v1/audit?limit=1
check 201 "an enrollment code on replica B" "$KEY" POST /v1/enrollments '{}'
ENROLL_CODE=$(jget 'v["code"]')
ok "qesd admin made the tenant; two replicas ready; a key made on A works on B"

# ---------------------------------------------------------------------------
# An agent on replica A and a signature: devices, sessions, credentials, jobs.
CFG=$T/agent
enroll_agent "https://localhost:$PORT_A" "$ENROLL_CODE" "$CFG" "pg desktop"
export QES_TEST_PINENTRY_SCRIPT=$T/pinentry.script QES_TEST_PINENTRY_LOG=$T/pinentry.log
for _ in $(seq 1 20); do echo "pin $QES_TOKEN_A_PIN"; done > "$QES_TEST_PINENTRY_SCRIPT"
start_agent "$CFG" "$PE"

# credential PORT: the live P-256 credential of token A, as that replica lists it
credential() {
    local p=$PORT
    PORT=$1
    wait_credential "$KEY"
    PORT=$p
}
# sign WHAT: a job on replica A for the document WHAT, signed and verified
sign() {
    local d i st
    d=$(printf '%s' "$1" | openssl dgst -sha256 -binary | openssl base64 -A)
    PORT=$PORT_A
    check 202 "POST /v1/signatures ($1)" "$KEY" POST /v1/signatures \
        "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"digests\":[\"$d\"],\"title\":\"$1\",\"timeout_seconds\":120}"
    JOB=$(jget 'v["id"]')
    for i in $(seq 1 8); do
        check 200 "GET job $JOB" "$KEY" GET "/v1/signatures/$JOB?wait=30"
        st=$(jget 'v["state"]')
        case "$st" in completed|failed|cancelled|expired) break ;; esac
    done
    expect_eq "$st" completed "state of the job for $1"
    jget 'v["signatures"][0]' | openssl base64 -d -A > "$T/sig.bin"
    printf '%s' "$1" > "$T/doc.bin"
    openssl x509 -in "$QES_PKI/qual-p256.pem" -pubkey -noout > "$T/pub.pem"
    openssl dgst -sha256 -verify "$T/pub.pem" -signature "$T/sig.bin" "$T/doc.bin" |
        grep -q "Verified OK" || fail "openssl rejects the signature of $1"
}
credential "$PORT_A"
sign "a contract on PostgreSQL"
credential "$PORT_B"
ok "agent enrolled and live (seen by both replicas), job $JOB signed on the token, openssl verifies"

# ---------------------------------------------------------------------------
# Load on both replicas; PostgreSQL stopped and started again meanwhile.
# key_load NAME PORT: create keys until $T/stop; acknowledged ids to
# $T/NAME.acked, every status to $T/NAME.codes
key_load() {
    local name=$1 port=$2 i=0 code id
    while [ ! -e "$T/stop" ]; do
        i=$((i + 1))
        code=$(curl -sS --cacert "$CA" -o "$T/load/$name.json" -w '%{http_code}' -m 20 \
            -H "Authorization: Bearer $ADMIN_KEY" -H 'Content-Type: application/json' \
            --data-binary "{\"name\":\"$name $i\",\"scopes\":[\"audit\"]}" \
            "https://localhost:$port/v1/api-keys" 2>/dev/null) || code=000
        echo "$code" >> "$T/$name.codes"
        if [ "$code" = 201 ]; then
            id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$T/load/$name.json")
            echo "$id" >> "$T/$name.acked"
        elif [ "$code" = 503 ]; then
            sleep 0.1
        fi
    done
}
: > "$T/a.acked"; : > "$T/b.acked"; : > "$T/a.codes"; : > "$T/b.codes"
key_load a "$PORT_A" &
LOAD_A=$!
qes_on_exit "kill $LOAD_A"
key_load b "$PORT_B" &
LOAD_B=$!
qes_on_exit "kill $LOAD_B"
sleep 2
BEFORE=$(( $(wc -l < "$T/a.acked") + $(wc -l < "$T/b.acked") ))
[ "$(wc -l < "$T/a.acked")" -gt 0 ] && [ "$(wc -l < "$T/b.acked")" -gt 0 ] ||
    fail "no keys created under load before the outage"

qes_pg_stop
DOWN_AT=$(wc -l < "$T/a.codes")
sleep 1
for PORT in "$PORT_A" "$PORT_B"; do
    call - GET /readyz
    expect_eq "$CODE" 503 "GET /readyz on $PORT while PostgreSQL is down"
    call "$KEY" GET /v1/api-keys
    expect_eq "$CODE" 503 "GET /v1/api-keys on $PORT while PostgreSQL is down"
    expect_problem 503 store_unavailable
    grep -qi '^retry-after:' "$HDR" || fail "no Retry-After on the 503"
done
sleep 2
[ "$(tail -n +"$((DOWN_AT + 1))" "$T/a.codes" | grep -c '^503$')" -gt 0 ] ||
    fail "no 503 while PostgreSQL was down"
qes_pg_restart
UP_A=$(wc -l < "$T/a.acked") UP_B=$(wc -l < "$T/b.acked")
for _ in $(seq 1 200); do
    [ "$(wc -l < "$T/a.acked")" -gt "$UP_A" ] && [ "$(wc -l < "$T/b.acked")" -gt "$UP_B" ] && break
    sleep 0.1
done
[ "$(wc -l < "$T/a.acked")" -gt "$UP_A" ] && [ "$(wc -l < "$T/b.acked")" -gt "$UP_B" ] ||
    { tail -n 20 "$T/a.log" >&2; fail "the replicas did not serve again after PostgreSQL came back"; }
sleep 1
touch "$T/stop"
wait "$LOAD_A" "$LOAD_B" || true
kill -0 "$PID_A" && kill -0 "$PID_B" || fail "a replica exited"
BAD=$(cat "$T/a.codes" "$T/b.codes" | grep -v -e '^201$' -e '^503$' | sort | uniq -c || true)
[ -z "$BAD" ] || fail "answers other than 201 and 503 under load: $BAD"
N503=$(cat "$T/a.codes" "$T/b.codes" | grep -c '^503$' || true)
ACKED=$(cat "$T/a.acked" "$T/b.acked" | wc -l)
ok "PostgreSQL stopped under load: $N503 answers 503 (with Retry-After; /readyz 503), no other failure; both replicas served again without a restart ($BEFORE keys before, $ACKED in all)"

# Every acknowledged key is there, with its audit record; one chain.
for PORT in "$PORT_A" "$PORT_B"; do
    check 200 "GET /v1/audit/verify on $PORT" "$KEY" GET /v1/audit/verify
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is True and d["records"] == d["head_seq"], d' \
        "$BODY" || fail "verify report on $PORT: $(cat "$BODY")"
done
RECORDS=$(jget 'v["records"]')
sort "$T/a.acked" "$T/b.acked" > "$T/acked"
qes_psql -c "SELECT id FROM api_keys" | sort > "$T/stored"
MISSING=$(comm -23 "$T/acked" "$T/stored" | head -n 3)
[ -z "$MISSING" ] || fail "acknowledged keys missing from the store: $MISSING"
qes_psql -c "SELECT details FROM audit_records WHERE type = 'key.created'" > "$T/created.audit"
while read -r id; do
    grep -q "$id" "$T/created.audit" || fail "no key.created audit record for acknowledged key $id"
done < "$T/acked"
# (later requests' records are group-committed after the verify: more, not fewer)
[ "$(qes_psql -c "SELECT count(*) FROM audit_records")" -ge "$RECORDS" ] ||
    fail "fewer audit records in the table than in the verified chain"
[ "$(qes_psql -c "SELECT count(DISTINCT seq) = count(*) AND min(seq) = 1 AND max(seq) = count(*) FROM audit_records")" = t ] ||
    fail "the audit seqs are not 1..n"
ok "all $ACKED acknowledged keys stored with their key.created record; one chain of $RECORDS records, verified on both replicas"

# The agent is back too: one more signature.
credential "$PORT_A"
sign "a contract after the outage"
ok "after the outage the agent's credential is live again and job $JOB is signed"

grep -l -F "$QES_PG_PASSWORD" "$T"/a.log "$T"/b.log "$T"/agent.log "$T"/tenant.* 2>/dev/null &&
    fail "the database password is in a log"
ok "the database password is in no log"

PORT=$PORT_B SERVER_PID=$PID_B stop_qesd
SERVER_PID=$PID_A stop_qesd
ok "both replicas stop cleanly"
