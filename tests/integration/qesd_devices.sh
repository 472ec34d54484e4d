#!/usr/bin/env bash
# qesd_devices.sh - the device channel, gateway side, against the real qesd on
# 127.0.0.1 with real TLS and a scriptable agent (tests/helpers/qes-ws-client):
#   - enrollment codes: created (devices scope), used once with a throw-away
#     P-256 key made by openssl; a used, an expired (testing clock) and an
#     unknown code are refused with their own problem types; two agents racing
#     with one code: exactly one wins; a non-P-256 key is refused;
#   - devices: listed, shown with inventory and sessions; a foreign tenant's
#     device answers 404 on every route;
#   - the WebSocket endpoint (/v1/agent, sub-protocol qes.v1 only): hello,
#     challenge, auth; a session row with replica and addresses; the SoftHSM2
#     tokens' inventory stored as credentials, audited once per change;
#   - refusals, each closed with its code and audited where a tenant is known:
#     wrong signature, unknown device, replayed auth from another connection,
#     revoked device; malformed and unexpected messages close with 4000 and
#     the server keeps serving;
#   - heartbeats: a peer that stops answering (SIGSTOP) is dropped with
#     heartbeat_timeout; a newer session replaces the older (4003);
#   - revocation closes the live session at once (4002) and reconnecting is
#     refused; SIGTERM closes agents with 4004; a session left open by a
#     killed qesd is closed with gateway_restart at the next start;
#   - the audit chain verifies; no enrollment code in logs or the database.
#
# The testing clock (insecure_testing_clock_file) is accepted only because
# this script sets QESD_INSECURE_TESTING=1.
. "$(dirname -- "$0")/../lib.sh"

T=$(qes_tmpdir)
QESD=$QES_BUILD_DIR/qesd
CA=$QES_PKI/root-ca.pem
. "$(dirname -- "$0")/../qesd.sh"
WSC=$QES_BUILD_DIR/tests/qes-ws-client
[ -x "$QESD" ] || fail "no qesd binary at $QESD"
[ -x "$WSC" ] || fail "no test client at $WSC"
for tool in curl openssl python3; do
    command -v "$tool" >/dev/null || fail "$tool is needed"
done
[ -f "$QES_PKI/root-ca.key" ] || fail "no test PKI in $QES_PKI (run tests/setup-testenv.sh)"
qes_private_tokens

# ---------------------------------------------------------------------------
# TLS certificate, pepper, clock, configuration.
qesd_tls_files "$T"
echo 0 > "$T/clock"
OFFSET_MS=0
mkdir -p "$T/resp" "$T/ws"
: > "$T/codes.txt"
N=0

cat > "$T/qesd.conf" <<EOF
listen = 127.0.0.1:0
tls_cert = $T/server.pem
tls_key = $T/server.key
pepper_file = $T/pepper
store = sqlite:$T/qesd.db
insecure_testing_clock_file = $T/clock
workers = 2
drain_timeout_s = 10
rate_ip_per_s = 1000
rate_ip_burst = 10000
rate_key_per_s = 1000
rate_key_burst = 10000
server_name = localhost
replica_name = replica-t1
agent_ping_interval_s = 1
agent_dead_after_s = 3
EOF
qesd_conf "$T/qesd.conf"










# sql QUERY [ARGS...]: one value from the database (read while qesd runs).
sql() { db_value "$T/qesd.db" "$@"; }

# audits TENANT TYPE [DEVICE]: how many records of TYPE (for DEVICE).
audits() {
    if [ $# -ge 3 ]; then
        sql "select count(*) from audit_records where tenant_id = ? and type = ? and device_id = ?" "$1" "$2" "$3"
    else
        sql "select count(*) from audit_records where tenant_id = ? and type = ?" "$1" "$2"
    fi
}

# wait_for WHAT SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
    local what=$1 secs=$2 i
    shift 2
    for i in $(seq 1 $((secs * 10))); do
        "$@" && return 0
        sleep 0.1
    done
    fail "timed out waiting for $what"
}

# p256 NAME: a throw-away device key; sets PUB (SPKI DER, base64url).
p256() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/$1.pem" 2>/dev/null
    PUB=$(openssl pkey -in "$T/$1.pem" -pubout -outform DER | base64 -w0 | tr '+/' '-_' | tr -d '=')
}

# new_code KEY NAME [TTL]: sets ENR_CODE.
new_code() {
    local body="{\"name\":\"$2\"${3:+,\"ttl_seconds\":$3}}"
    check 201 "enrollment code for $2" "$1" POST /v1/enrollments "$body"
    ENR_CODE=$(jfield "$BODY" code)
    echo "$ENR_CODE" >> "$T/codes.txt"
}

# enroll CODE PUB: the agent's request; sets CODE and BODY.
enroll() {
    call - POST /v1/devices/enroll "{\"code\":\"$1\",\"public_key\":\"$2\",\"agent_version\":\"0.1.0\",\"os\":\"Linux test\"}"
}

# ws NAME ARGS...: run the client in the foreground; output in $T/ws/NAME.out.
ws() {
    local name=$1
    shift
    WS_OUT=$T/ws/$name.out
    timeout 30 "$WSC" --port "$PORT" --ca "$CA" "$@" > "$WS_OUT" 2> "$T/ws/$name.err" || true
}

# ws_bg NAME ARGS...: the same in the background; sets WS_PID.
ws_bg() {
    local name=$1
    shift
    WS_OUT=$T/ws/$name.out
    "$WSC" --port "$PORT" --ca "$CA" "$@" > "$WS_OUT" 2> "$T/ws/$name.err" &
    WS_PID=$!
    qes_on_exit "kill -KILL $WS_PID"
}

has() { grep -qF -- "$2" "$1"; }
# sql_is WANT QUERY ARGS...: the query's value is WANT (for wait_for).
sql_is() { local want=$1; shift; [ "$(sql "$@")" = "$want" ]; }
# audits_are WANT TENANT TYPE DEVICE: that many records (for wait_for).
audits_are() { [ "$(audits "$2" "$3" "$4")" = "$1" ]; }

# ---------------------------------------------------------------------------
admin_tenant A
A_ADMIN=$ADMIN_KEY
A_TENANT=$TENANT_ID
admin_tenant B
B_ADMIN=$ADMIN_KEY
LOG=$T/qesd.log
start_qesd "$T/qesd.conf" "$LOG" QESD_INSECURE_TESTING=1
ok "qesd started on 127.0.0.1:$PORT with tenants A and B"

# ---------------------------------------------------------------------------
# Enrollment codes.
new_code "$A_ADMIN" "desk-1"
CODE1=$ENR_CODE
[[ $CODE1 =~ ^[A-Z2-7]{5}(-[A-Z2-7]{5}){3}$ ]] || fail "enrollment code '$CODE1' is not 4 groups of 5 base32 characters"
ENR1=$(jfield "$BODY" enrollment_id)
[ -n "$(jfield "$BODY" expires_at)" ] || fail "no expires_at"
check 201 "enrollment without a name (the agent names the device)" "$A_ADMIN" POST /v1/enrollments '{}'
echo "$(jfield "$BODY" code)" >> "$T/codes.txt"
check 400 "enrollment with an unknown field" "$A_ADMIN" POST /v1/enrollments '{"name":"x","admin":true}'
expect_problem 400 unknown_field
check 400 "ttl above a day" "$A_ADMIN" POST /v1/enrollments '{"name":"x","ttl_seconds":86401}'
expect_problem 400 invalid_field
ok "enrollment code: 20 base32 characters in groups of 5, with expiry; bad bodies refused"

p256 dev1
PUB1=$PUB
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.pem" 2>/dev/null
RSAPUB=$(openssl pkey -in "$T/rsa.pem" -pubout -outform DER | base64 -w0 | tr '+/' '-_' | tr -d '=')
enroll "$CODE1" "$RSAPUB"
expect_eq "$CODE" 400 "enrolling an RSA key"
expect_problem 400 invalid_field
enroll "$CODE1" "not*base64"
expect_eq "$CODE" 400 "enrolling a key that is not base64url"
enroll "$CODE1" "$PUB1"
expect_eq "$CODE" 201 "enrolling with a fresh code"
DEV1=$(jfield "$BODY" device_id)
expect_eq "$(jfield "$BODY" tenant_id)" "$A_TENANT" "tenant of the enrolled device"
expect_eq "$(jfield "$BODY" server_name)" localhost "server_name of the enrollment answer"
[[ $DEV1 =~ ^dev_[a-z2-7]{26}$ ]] || fail "device id $DEV1"
expect_eq "$(audits "$A_TENANT" device.enrolled "$DEV1")" 1 "device.enrolled records"
ok "enroll: a P-256 key is registered with the code (201, device $DEV1); RSA and malformed keys are refused"

p256 other
enroll "$CODE1" "$PUB"
expect_eq "$CODE" 410 "a used code"
expect_problem 410 enrollment_code_used
lower=$(printf '%s' "$CODE1" | tr 'A-Z' 'a-z' | tr '-' ' ')
enroll "$lower" "$PUB"
expect_problem 410 enrollment_code_used
enroll "AAAAA-BBBBB-CCCCC-DDDDD" "$PUB"
expect_problem 400 enrollment_code_invalid
enroll "short" "$PUB"
expect_problem 400 enrollment_code_invalid
new_code "$A_ADMIN" "late" 60
advance_clock 61000
enroll "$ENR_CODE" "$PUB"
expect_eq "$CODE" 410 "an expired code"
expect_problem 410 enrollment_code_expired
[ "$(audits "$A_TENANT" device.enroll_refused)" -ge 3 ] || fail "refused enrollments are not audited"
ok "a used (also typed in lower case with blanks), an unknown and an expired code are refused with their own problem types"

# Two agents race with one code: exactly one device.
new_code "$A_ADMIN" "race"
p256 race1
R1=$PUB
p256 race2
R2=$PUB
for i in 1 2; do
    pk=R$i
    printf '{"code":"%s","public_key":"%s","agent_version":"1","os":"x"}' "$ENR_CODE" "${!pk}" > "$T/race$i.json"
done
curl -sS --cacert "$CA" -o "$T/race1.out" -w '%{http_code}\n' -H "Content-Type: application/json" \
    --data-binary @"$T/race1.json" "https://localhost:$PORT/v1/devices/enroll" > "$T/race1.code" &
p1=$!
curl -sS --cacert "$CA" -o "$T/race2.out" -w '%{http_code}\n' -H "Content-Type: application/json" \
    --data-binary @"$T/race2.json" "https://localhost:$PORT/v1/devices/enroll" > "$T/race2.code" &
p2=$!
wait "$p1" "$p2"
expect_eq "$(sort "$T/race1.code" "$T/race2.code" | tr '\n' ' ')" "201 410 " "two enrollments racing with one code"
expect_eq "$(sql "select count(*) from devices where name = 'race'")" 1 "devices made by the race"
ok "two agents racing with one code: exactly one wins (201 and 410)"

# ---------------------------------------------------------------------------
# Devices, and the foreign tenant.
check 200 "device list" "$A_ADMIN" GET /v1/devices
python3 - "$BODY" "$DEV1" <<'EOF' || fail "device list"
import json, sys
items = json.load(open(sys.argv[1]))["items"]
d = [i for i in items if i["id"] == sys.argv[2]]
assert len(d) == 1 and d[0]["name"] == "desk-1" and d[0]["status"] == "active", items
assert d[0]["live"] is False and "public_key" not in d[0], d[0]
EOF
check 200 "device list, page of 1" "$A_ADMIN" GET "/v1/devices?limit=1"
[ -n "$(jfield "$BODY" next_cursor)" ] || fail "no next_cursor on a page of 1"
for route in "GET /v1/devices/$DEV1" "GET /v1/devices/$DEV1/sessions" "DELETE /v1/devices/$DEV1"; do
    check 404 "tenant B: $route" "$B_ADMIN" $route
    expect_problem 404 not_found
done
check 200 "tenant B's device list" "$B_ADMIN" GET /v1/devices
expect_eq "$(jfield "$BODY" items)" "[]" "tenant B's devices"
check 404 "an unknown device" "$A_ADMIN" GET "/v1/devices/dev_aaaaaaaaaaaaaaaaaaaaaaaaaa"
ok "devices: listed with pages; a foreign tenant's device answers 404 on every route"

# ---------------------------------------------------------------------------
# The WebSocket endpoint: a session with an inventory.
ws first --device-id "$DEV1" --key "$T/dev1.pem" --inventory-module "$QES_TEST_MODULE" \
    --inventory-out "$T/inventory.json" --save-auth "$T/auth1.json" --stay 1.5
has "$WS_OUT" '"type":"challenge"' || { cat "$WS_OUT" >&2; fail "no challenge"; }
has "$WS_OUT" '"type":"auth_ok"' || { cat "$WS_OUT" "$LOG" >&2; fail "no auth_ok"; }
has "$WS_OUT" "sent inventory" || fail "inventory not sent"
has "$WS_OUT" '"server_name":"localhost"' || fail "challenge without the server name"
SES1=$(grep -o '"session_id":"ses_[a-z2-7]*"' "$WS_OUT" | head -n 1 | cut -d'"' -f4)
[ -n "$SES1" ] || fail "no session id"
wait_for "the closed session row" 10 sql_is peer_closed "select close_reason from device_sessions where id = ?" "$SES1"
expect_eq "$(sql "select replica_id from device_sessions where id = ?" "$SES1")" replica-t1 "replica of the session"
case $(sql "select client_addr from device_sessions where id = ?" "$SES1") in
127.0.0.1|::ffff:127.0.0.1) ;;
*) fail "client address of the session: $(sql "select client_addr from device_sessions where id = ?" "$SES1")" ;;
esac
expect_eq "$(sql "select agent_version from device_sessions where id = ?" "$SES1")" 0.1.0-test "agent version of the session"
expect_eq "$(audits "$A_TENANT" device.session_opened "$DEV1")" 1 "device.session_opened"
expect_eq "$(audits "$A_TENANT" device.session_closed "$DEV1")" 1 "device.session_closed"
expect_eq "$(audits "$A_TENANT" device.inventory_changed "$DEV1")" 1 "device.inventory_changed"
ncred=$(sql "select count(*) from device_credentials where device_id = ?" "$DEV1")
[ "$ncred" -ge 1 ] || fail "no credentials from the SoftHSM2 inventory"
check 200 "device with inventory" "$A_ADMIN" GET "/v1/devices/$DEV1"
python3 - "$BODY" "$SES1" "$QES_TOKEN_A_SERIAL" <<'EOF' || fail "device view"
import json, re, sys
d = json.load(open(sys.argv[1]))
inv = d["inventory"]
assert inv["updated_at"], inv
serials = [t.get("serial") for t in inv["tokens"]]
assert sys.argv[3] in serials, serials
assert inv["credentials"], inv
for c in inv["credentials"]:
    assert re.fullmatch(r"crd_[a-z2-7]{26}", c["id"]), c
    assert c["device_id"] == d["id"] and len(c["certificate_sha256"]) == 64, c
    assert c["classification"] in ("qualified", "advanced", "authentication", "expired", "not_yet_valid"), c
s = d["recent_sessions"][0]
assert s["id"] == sys.argv[2] and s["close_reason"] == "peer_closed" and s["live"] is False, s
EOF
CRED_IDS=$(db_query "$T/qesd.db" "select id from device_credentials where device_id = ? order by id" "$DEV1" | paste -sd,)
ok "a session: hello, challenge (server_name localhost), auth, auth_ok; inventory stored as $ncred credentials; session row with replica, address, agent version; opened/closed/inventory audited"

# The same inventory again: nothing changed, no record; the ids are stable.
ws second --device-id "$DEV1" --key "$T/dev1.pem" --inventory "$T/inventory.json" --stay 1
has "$WS_OUT" '"type":"auth_ok"' || fail "second session"
wait_for "the second session's end" 10 audits_are 2 "$A_TENANT" device.session_closed "$DEV1"
expect_eq "$(audits "$A_TENANT" device.inventory_changed "$DEV1")" 1 "device.inventory_changed after the same inventory"
expect_eq "$(db_query "$T/qesd.db" "select id from device_credentials where device_id = ? order by id" "$DEV1" | paste -sd,)" \
    "$CRED_IDS" "credential ids after a reconnect"
python3 - "$T/inventory.json" "$T/inventory-empty.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for t in d["tokens"]:
    if "certificates" in t:
        t["certificates"] = []
json.dump(d, open(sys.argv[2], "w"))
EOF
ws third --device-id "$DEV1" --key "$T/dev1.pem" --inventory "$T/inventory-empty.json" --stay 1
wait_for "the changed inventory" 10 audits_are 2 "$A_TENANT" device.inventory_changed "$DEV1"
wait_for "credentials gone" 10 sql_is 0 "select count(*) from device_credentials where device_id = ?" "$DEV1"
ok "the same inventory leaves no record and keeps credential ids; a changed one is audited and replaces the credentials"

# ---------------------------------------------------------------------------
# Refusals.
ws badsig --device-id "$DEV1" --key "$T/dev1.pem" --sign-key "$T/other.pem"
has "$WS_OUT" "close 4001 auth_failed: bad_signature" || { cat "$WS_OUT" >&2; fail "wrong signature not refused with 4001"; }
has "$WS_OUT" '"type":"auth_ok"' && fail "wrong signature got auth_ok"
wait_for "device.auth_failed (bad signature)" 10 audits_are 1 "$A_TENANT" device.auth_failed "$DEV1"
ws unknown --device-id "dev_aaaaaaaaaaaaaaaaaaaaaaaaaa" --key "$T/dev1.pem"
has "$WS_OUT" "close 4001 auth_failed: unknown_device" || { cat "$WS_OUT" >&2; fail "unknown device not refused with 4001"; }
ws replay --device-id "$DEV1" --replay-auth "$T/auth1.json"
has "$WS_OUT" "close 4001 auth_failed: bad_signature" || { cat "$WS_OUT" >&2; fail "replayed auth not refused"; }
has "$WS_OUT" '"type":"auth_ok"' && fail "replayed auth got auth_ok"
wait_for "device.auth_failed (replay)" 10 audits_are 2 "$A_TENANT" device.auth_failed "$DEV1"
ws noauth --device-id "$DEV1" --no-auth --until-close
has "$WS_OUT" "close 4001 auth_failed: authentication timed out" || { cat "$WS_OUT" >&2; fail "silent agent not closed after the auth timeout"; }
ok "wrong signature, unknown device, replayed auth (another connection's) and no auth are refused with 4001; the known device's tenant has device.auth_failed"

ws proto --device-id "$DEV1" --key "$T/dev1.pem" --protocol "chat"
has "$WS_OUT" "error" || fail "a wrong sub-protocol was accepted"
ws noproto --device-id "$DEV1" --key "$T/dev1.pem" --protocol ""
has "$WS_OUT" "error" || fail "a missing sub-protocol was accepted"
ws path --device-id "$DEV1" --key "$T/dev1.pem" --path /v1/agents
has "$WS_OUT" "error" || fail "an upgrade on another path was accepted"
ok "upgrades without sub-protocol qes.v1 or to another path than /v1/agent are refused"

printf '{"type":"inventory","id":"x","v":1,"report":' > "$T/garbage.json"
ws garbage --device-id "$DEV1" --key "$T/dev1.pem" --send "$T/garbage.json" --until-close
has "$WS_OUT" "close 4000 protocol_error" || { cat "$WS_OUT" >&2; fail "malformed message not closed with 4000"; }
printf '{"type":"hello","id":"h2","v":1,"agent_version":"1","os":"x","device_id":"%s"}' "$DEV1" > "$T/hello2.json"
ws hello2 --device-id "$DEV1" --key "$T/dev1.pem" --send "$T/hello2.json" --until-close
has "$WS_OUT" "close 4000 protocol_error: hello after authentication" || { cat "$WS_OUT" >&2; fail "unexpected hello not closed with 4000"; }
printf '{"type":"sign","id":"s1"' > "$T/junk.json"
ws junkfirst --raw-first "$T/junk.json" --until-close
has "$WS_OUT" "close 4000 protocol_error" || { cat "$WS_OUT" >&2; fail "junk before hello not closed with 4000"; }
wait_for "device.protocol_error records" 10 audits_are 2 "$A_TENANT" device.protocol_error "$DEV1"
check 200 "qesd still serves" - GET /healthz
ws afterjunk --device-id "$DEV1" --key "$T/dev1.pem" --ping --stay 1
has "$WS_OUT" '"type":"auth_ok"' || fail "no session after the protocol errors"
has "$WS_OUT" '"type":"pong"' || fail "no pong for the agent's ping"
ok "malformed and unexpected messages close the session with 4000 and are audited; qesd keeps serving (and answers pings)"

# ---------------------------------------------------------------------------
# Heartbeats: a peer that stops answering pings is dropped.
ws_bg frozen --device-id "$DEV1" --key "$T/dev1.pem" --until-close
wait_for "the frozen agent's session" 10 has "$WS_OUT" '"type":"auth_ok"'
SESF=$(grep -o '"session_id":"ses_[a-z2-7]*"' "$WS_OUT" | head -n 1 | cut -d'"' -f4)
kill -STOP "$WS_PID"
wait_for "heartbeat_timeout" 15 sql_is heartbeat_timeout "select close_reason from device_sessions where id = ?" "$SESF"
kill -CONT "$WS_PID"
wait "$WS_PID" || true
ok "a peer that stops answering is dropped with heartbeat_timeout (ping 1 s, dead after 3 s)"

# A newer session replaces the older.
ws_bg older --device-id "$DEV1" --key "$T/dev1.pem" --until-close
OLDER_PID=$WS_PID
OLDER_OUT=$WS_OUT
wait_for "the older session" 10 has "$OLDER_OUT" '"type":"auth_ok"'
ws_bg newer --device-id "$DEV1" --key "$T/dev1.pem" --until-close
NEWER_OUT=$WS_OUT
wait_for "the newer session" 10 has "$NEWER_OUT" '"type":"auth_ok"'
wait_for "4003 for the older session" 10 has "$OLDER_OUT" "close 4003 replaced"
wait "$OLDER_PID" || true
ok "a newer session of a device closes the older with 4003"

# Revocation closes the live session at once; the device cannot come back.
check 204 "revoke" "$A_ADMIN" DELETE "/v1/devices/$DEV1"
wait_for "4002 for the live session" 5 has "$NEWER_OUT" "close 4002 device_revoked"
wait "$WS_PID" || true
expect_eq "$(audits "$A_TENANT" device.revoked "$DEV1")" 1 "device.revoked"
wait_for "the revoked session's row" 10 sql_is 1 "select count(*) from device_sessions where device_id = ? and close_reason = 'revoked'" "$DEV1"
check 204 "revoking again" "$A_ADMIN" DELETE "/v1/devices/$DEV1"
expect_eq "$(audits "$A_TENANT" device.revoked "$DEV1")" 1 "device.revoked after a second DELETE"
ws revoked --device-id "$DEV1" --key "$T/dev1.pem"
has "$WS_OUT" "close 4002 device_revoked" || { cat "$WS_OUT" >&2; fail "the revoked device was not told 4002"; }
has "$WS_OUT" '"type":"auth_ok"' && fail "the revoked device authenticated"
wait_for "device.auth_failed (revoked)" 10 sql_is 1 "select count(*) from audit_records where tenant_id = ? and type = 'device.auth_failed' and device_id = ? and details like '%revoked%'" "$A_TENANT" "$DEV1"
ws revoked_badsig --device-id "$DEV1" --key "$T/dev1.pem" --sign-key "$T/other.pem"
has "$WS_OUT" "close 4001 auth_failed: bad_signature" || { cat "$WS_OUT" >&2; fail "a wrong key learned that the device is revoked"; }
check 200 "revoked device" "$A_ADMIN" GET "/v1/devices/$DEV1"
expect_eq "$(jfield "$BODY" status)" revoked "status of the revoked device"
ok "revocation closes the live session with 4002 at once, is audited once; the device can never authenticate again (4002, audited; a wrong key still gets 4001)"

# ---------------------------------------------------------------------------
# Drain: SIGTERM closes agent sessions with 4004.
new_code "$A_ADMIN" "desk-2"
p256 dev2
enroll "$ENR_CODE" "$PUB"
expect_eq "$CODE" 201 "enrolling desk-2"
DEV2=$(jfield "$BODY" device_id)
ws_bg drained --device-id "$DEV2" --key "$T/dev2.pem" --until-close
wait_for "desk-2's session" 10 has "$WS_OUT" '"type":"auth_ok"'
check 200 "live device" "$A_ADMIN" GET "/v1/devices/$DEV2"
expect_eq "$(jfield "$BODY" live)" True "live flag of a connected device"
stop_qesd
has "$WS_OUT" "close 4004 server_draining" || { cat "$WS_OUT" >&2; fail "no 4004 on drain"; }
wait "$WS_PID" || true
expect_eq "$(sql "select close_reason from device_sessions where device_id = ? order by connected_at_ms desc limit 1" "$DEV2")" \
    server_draining "close reason after SIGTERM"
ok "SIGTERM closes agent sessions with 4004 server_draining and records them; qesd exits 0"

# A session a killed qesd left open is closed at the next start.
LOG=$T/qesd2.log
start_qesd "$T/qesd.conf" "$LOG" QESD_INSECURE_TESTING=1
ws_bg crash --device-id "$DEV2" --key "$T/dev2.pem" --until-close
wait_for "desk-2's session again" 10 has "$WS_OUT" '"type":"auth_ok"'
SESC=$(grep -o '"session_id":"ses_[a-z2-7]*"' "$WS_OUT" | head -n 1 | cut -d'"' -f4)
wait_for "the open session row" 10 sql_is 1 "select count(*) from device_sessions where id = ? and closed_at_ms is null" "$SESC"
{ kill -KILL "$SERVER_PID"; wait "$SERVER_PID"; } 2>/dev/null || true
wait "$WS_PID" || true
LOG=$T/qesd3.log
start_qesd "$T/qesd.conf" "$LOG" QESD_INSECURE_TESTING=1
expect_eq "$(sql "select close_reason from device_sessions where id = ?" "$SESC")" gateway_restart "close reason after a crash"
expect_contains "$T/qesd3.log" "closed device sessions this replica left open"
ok "a session left open by a killed qesd is closed with gateway_restart at the next start"

# ---------------------------------------------------------------------------
# The audit chain, and no enrollment code anywhere it should not be.
check 200 "audit verify" "$A_ADMIN" GET /v1/audit/verify
db_query "$T/qesd.db" "select type, count(*) from audit_records where tenant_id = ? group by type" \
    "$A_TENANT" > "$T/audit-types"
python3 - "$T/audit-types" <<'EOF' || fail "audit records missing"
import sys
types = {t: int(n) for t, n in (l.rstrip("\n").split("|") for l in open(sys.argv[1]))}
for t in ("enrollment.created", "device.enrolled", "device.enroll_refused", "device.session_opened",
          "device.session_closed", "device.auth_failed", "device.protocol_error",
          "device.inventory_changed", "device.revoked"):
    assert types.get(t, 0) > 0, (t, types)
EOF
stop_qesd
db_dump "$T/qesd.db" > "$T/db.dump"
while read -r code; do
    [ -n "$code" ] || continue
    raw=${code//-/}
    for f in "$T/qesd.log" "$T/qesd2.log" "$T/qesd3.log" "$T/db.dump" "$T/qesd.db" "$T/qesd.db-wal"; do
        [ -f "$f" ] || continue
        grep -qaF -- "$raw" "$f" && fail "enrollment code found in $f"
        grep -qaF -- "$code" "$f" && fail "enrollment code found in $f"
    done
done < "$T/codes.txt"
ok "the audit chain verifies with every device record; no enrollment code in logs or the database"
