#!/usr/bin/env bash
# agent_session.sh - qes-agent enroll and run against a scripted qes.v1
# gateway (tests/helpers/fake_gateway.py), to reach what a real qesd only
# does by accident: every close code, a server that falls silent, a
# challenge for another host, malformed messages, cancels and timeouts at
# any moment, a queue of jobs for one token. The real end-to-end path (qesd,
# SoftHSM2, OpenSSL verification) is tests/integration/e2e_sign.sh.
#
# Real parts: qes-agent, SoftHSM2 tokens (a private copy), the scripted
# pinentry, TLS 1.3 on loopback with a throw-away CA.
. "$(dirname -- "$0")/../lib.sh"

T=$(qes_tmpdir)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
if ! "$PY" -c 'import websockets, cryptography' 2>/dev/null; then
    echo "# skip: python3-websockets and python3-cryptography are needed (scripts/deps.sh)"
    exit 0
fi
qes_private_tokens "$T/tokens"
PE=$QES_BUILD_DIR/tests/qes-test-pinentry
A=$QES_TOKEN_A_SERIAL B=$QES_TOKEN_B_SERIAL

# ---------------------------------------------------------------------------
# PKI, the fake gateway, the scripted pinentry (a wrapper records its pid).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ca.key" \
    -out "$T/ca.pem" -days 2 -subj "/CN=fake gateway CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/server.key" \
    -out "$T/server.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$T/ext.cnf"
openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
    -days 2 -extfile "$T/ext.cnf" -out "$T/server.pem" 2>/dev/null
# another CA, which must not be trusted
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/other.key" \
    -out "$T/other-ca.pem" -days 2 -subj "/CN=some other CA" 2>/dev/null

mkdir -p "$T/gw"
"$PY" "$QES_SOURCE_DIR/tests/helpers/fake_gateway.py" --cert "$T/server.pem" \
    --key "$T/server.key" --state "$T/gw" --heartbeat 5 \
    --code CODE-1 --code CODE-2 --code CODE-3 2>"$T/gw.err" &
GW_PID=$!
qes_on_exit "kill -CONT $GW_PID; kill $GW_PID"
for _ in $(seq 1 100); do [ -s "$T/gw/wss.port" ] && break; sleep 0.1; done
[ -s "$T/gw/wss.port" ] || { cat "$T/gw.err" >&2; fail "the fake gateway did not start"; }
HP=$(cat "$T/gw/https.port") WP=$(cat "$T/gw/wss.port")

cat >"$T/pinentry.sh" <<EOF
#!/bin/sh
echo \$\$ >>"$T/pinentry.pids"
exec "$PE"
EOF
chmod 755 "$T/pinentry.sh"
export QES_TEST_PINENTRY_SCRIPT=$T/pinentry.script QES_TEST_PINENTRY_LOG=$T/pinentry.log
pinentry_script() { printf '%s\n' "$@" >"$QES_TEST_PINENTRY_SCRIPT"; rm -f "$QES_TEST_PINENTRY_SCRIPT.pos" "$QES_TEST_PINENTRY_LOG"; }

ctl() { # PATH [JSON]: POST to the gateway's control API
    local body='{}'
    [ $# -ge 2 ] && body=$2
    curl -sS --cacert "$T/ca.pem" -o /dev/null -w '%{http_code}' -X POST \
        "https://localhost:$HP/ctl/$1" -d "$body"
}
received_lines() { wc -l <"$T/gw/received.jsonl" 2>/dev/null || echo 0; }
# wait_msg FROM-LINE TIMEOUT-S PYTHON-CONDITION-ON-m: print the first message
# after line FROM-LINE for which the condition holds.
wait_msg() {
    "$PY" - "$T/gw/received.jsonl" "$1" "$2" "$3" <<'EOF'
import json, sys, time
path, start, timeout, cond = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
end = time.time() + timeout
while time.time() < end:
    try:
        lines = open(path).read().splitlines()[start:]
    except FileNotFoundError:
        lines = []
    for line in lines:
        m = json.loads(line)
        if eval(cond):
            print(json.dumps(m))
            sys.exit(0)
    time.sleep(0.05)
sys.exit(1)
EOF
}
jget() { "$PY" -c 'import json,sys; v=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
events() { cat "$T/gw/events.log"; }
wait_event() { # REGEX TIMEOUT-S
    local i
    for i in $(seq 1 $(($2 * 10))); do grep -qE -- "$1" "$T/gw/events.log" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
digest() { printf '%s' "$1" | openssl dgst -"${2:-sha256}" -r | cut -d' ' -f1; }

# ---------------------------------------------------------------------------
# Enrollment.
CFG=$T/cfg
rc=0
"$QES_AGENT" enroll --server "https://localhost:$HP" --code USED --ca "$T/ca.pem" \
    --config "$CFG" >"$T/enroll.out" 2>"$T/enroll.err" || rc=$?
expect_eq "$rc" 3 "enroll with an unknown code exits 3"
expect_contains "$T/enroll.err" "enrollment code used, expired or unknown"
[ ! -e "$CFG/enrollment.json" ] || fail "a refused code left an enrollment behind"
ok "a refused enrollment code: the server's problem title, exit 3, nothing written"

rc=0
"$QES_AGENT" enroll --server "https://localhost:$HP" --code CODE-1 --ca "$T/other-ca.pem" \
    --config "$CFG" >"$T/enroll.out" 2>"$T/enroll.err" || rc=$?
expect_eq "$rc" 1 "enroll against a server the --ca does not vouch for"
expect_contains "$T/enroll.err" "certificate"
[ ! -e "$CFG/enrollment.json" ] || fail "an untrusted server got an enrollment"
ok "enroll verifies the server against exactly the --ca file"

"$QES_AGENT" enroll --server "https://localhost:$HP/" --code CODE-1 --ca "$T/ca.pem" \
    --config "$CFG" --name "test desktop" >"$T/enroll.out" 2>"$T/enroll.err"
expect_contains "$T/enroll.out" "enrolled: device dev_"
expect_eq "$(stat -c %a "$CFG")" 700 "configuration directory mode"
expect_eq "$(stat -c %a "$CFG/enrollment.json")" 600 "enrollment.json mode"
expect_eq "$(stat -c %a "$CFG/server-ca.pem")" 600 "CA copy mode"
cmp -s "$CFG/server-ca.pem" "$T/ca.pem" || fail "the CA copy differs from --ca"
DEV1=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["device_id"])' "$CFG/enrollment.json")
ok "enrolled as $DEV1; enrollment.json and the CA copy are 0600 in a 0700 directory"

rc=0
"$QES_AGENT" enroll --server "https://localhost:$HP" --code CODE-2 --ca "$T/ca.pem" \
    --config "$CFG" >/dev/null 2>"$T/enroll.err" || rc=$?
expect_eq "$rc" 1 "a second enroll without --force"
expect_contains "$T/enroll.err" "already enrolled as device $DEV1"
"$QES_AGENT" enroll --server "https://localhost:$HP" --code CODE-2 --ca "$T/ca.pem" \
    --config "$CFG" --force >"$T/enroll.out" 2>"$T/enroll.err"
DEV=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["device_id"])' "$CFG/enrollment.json")
[ "$DEV" != "$DEV1" ] || fail "--force kept the old identity"
[ ! -e "$CFG/device-key-$DEV1" ] || fail "the old device key is still stored"
ok "re-enrolling needs --force, and then replaces the identity ($DEV) and deletes the old key"

# The fake gateway serves enrollment and WebSocket on two ports: move the
# enrollment to the WebSocket one (same host, same CA).
sed -i "s|https://localhost:$HP|https://localhost:$WP|" "$CFG/enrollment.json"
# The original CA file may change afterwards: the agent trusts its copy.
cp "$T/other-ca.pem" "$T/ca-original.pem"

# TLS 1.2 is refused by enroll and run alike, even with the right CA.
mkdir -p "$T/gw12"
"$PY" "$QES_SOURCE_DIR/tests/helpers/fake_gateway.py" --cert "$T/server.pem" \
    --key "$T/server.key" --state "$T/gw12" --tls12-only --code CODE-12 2>"$T/gw12.err" &
GW12_PID=$!
qes_on_exit "kill $GW12_PID"
for _ in $(seq 1 100); do [ -s "$T/gw12/wss.port" ] && break; sleep 0.1; done
[ -s "$T/gw12/wss.port" ] || { cat "$T/gw12.err" >&2; fail "the TLS 1.2 gateway did not start"; }
rc=0
"$QES_AGENT" enroll --server "https://localhost:$(cat "$T/gw12/https.port")" --code CODE-12 \
    --ca "$T/ca.pem" --config "$T/cfg12" >/dev/null 2>"$T/enroll12.err" || rc=$?
expect_eq "$rc" 1 "enroll against a TLS 1.2 server"
[ ! -e "$T/cfg12/enrollment.json" ] || fail "a TLS 1.2 server got an enrollment"
mkdir -p "$T/cfg12"
chmod 700 "$T/cfg12"
cp -p "$CFG/enrollment.json" "$CFG/server-ca.pem" "$CFG/device-key-$DEV" "$T/cfg12/"
sed -i "s|https://localhost:$WP|https://localhost:$(cat "$T/gw12/wss.port")|" "$T/cfg12/enrollment.json"
grep -q "localhost:$(cat "$T/gw12/wss.port")" "$T/cfg12/enrollment.json" || fail "cfg12 does not point at the TLS 1.2 server"
"$QES_AGENT" run --config "$T/cfg12" --module "$QES_TEST_MODULE" --only-module \
    >/dev/null 2>"$T/run12.log" &
RUN12=$!
for _ in $(seq 1 100); do grep -q '"event":"disconnected"' "$T/run12.log" && break; sleep 0.1; done
kill -TERM "$RUN12"
wait "$RUN12" || true
grep -q '"event":"disconnected"' "$T/run12.log" || fail "run against TLS 1.2: no failed connection logged"
grep -q '"event":"session_open"' "$T/run12.log" && fail "run opened a session over TLS 1.2"
[ ! -s "$T/gw12/received.jsonl" ] || fail "the TLS 1.2 server received a message"
kill "$GW12_PID"
ok "a TLS 1.2-only server: enroll fails ($(cut -c1-90 "$T/enroll12.err")), run never opens a session"

# ---------------------------------------------------------------------------
# run: session, inventory.
AGENT_PID=
start_agent() {
    local vg=()
    # not through qes_run_checked: $! must be the agent, for signals and its status
    if [ "${QES_VALGRIND:-0}" = 1 ] && [ "${QES_SANITIZE:-0}" != 1 ]; then
        vg=(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect
            --errors-for-leak-kinds=definite,indirect --error-exitcode=99
            --suppressions="$QES_SOURCE_DIR/tests/valgrind.supp")
    fi
    "${vg[@]}" "$QES_AGENT" run --config "$CFG" --module "$QES_TEST_MODULE" --only-module \
        --pinentry "$T/pinentry.sh" >>"$T/agent.out" 2>>"$T/agent.log" &
    AGENT_PID=$!
    qes_on_exit "kill -KILL $AGENT_PID"
}
start_agent
wait_event "live ses_" 15 || { cat "$T/agent.log" >&2; fail "no live session"; }
INV=$(wait_msg 0 15 'm["type"]=="inventory"') || fail "no inventory"
jget "$INV" '[c["credential"] for t in v["report"]["tokens"] for c in t.get("certificates",[])]' >"$T/creds"
expect_contains "$T/creds" "$A:01"
expect_contains "$T/creds" "$B:12"
HELLO=$(wait_msg 0 1 'm["type"]=="hello"')
expect_eq "$(jget "$HELLO" 'v["device_id"]')" "$DEV" "hello.device_id"
ok "run: TLS 1.3 to the enrolled CA, hello/challenge/auth verified by the gateway, inventory with certificates"

rc=0
timeout 10 "$QES_AGENT" run --config "$CFG" --module "$QES_TEST_MODULE" --only-module \
    >/dev/null 2>"$T/second.err" || rc=$?
expect_eq "$rc" 11 "a second agent for the same enrollment"
expect_contains "$T/second.err" "already running"
expect_eq "$(grep -c ' connected$' "$T/gw/events.log")" 1 "connections after the second agent"
ok "a second 'run' for the same enrollment exits 11 at once, without dialing"

# ---------------------------------------------------------------------------
# Signing: a batch, verified by the gateway against the inventory's certificate.
sign() { # JOB CREDENTIAL SCHEME MD TIMEOUT DOC...
    local job=$1 cred=$2 scheme=$3 md=$4 to=$5 ds="" d
    shift 5
    for d in "$@"; do ds="$ds${ds:+,}\"$(digest "$d" "$md")\""; done
    expect_eq "$(ctl sign "{\"job_id\":\"$job\",\"credential\":\"$cred\",\"scheme\":\"$scheme\",\"md\":\"$md\",\"timeout_s\":$to,\"title\":\"Contract $job\",\"digests_hex\":[$ds]}")" 200 "ctl sign $job"
}
result_of() { wait_msg 0 "${2:-30}" "m['type']=='sign_result' and m['job_id']=='$1'"; }

for spec in "01 rsa-pkcs1 sha256 A" "01 rsa-pss sha384 A" "02 ecdsa sha256 A" \
        "11 rsa-pss sha512 B" "12 ecdsa sha384 B"; do
    set -- $spec
    tok=$A pin=$QES_TOKEN_A_PIN
    [ "$4" = B ] && tok=$B pin=$QES_TOKEN_B_PIN
    pinentry_script "pin $pin"
    sign "j-$1-$2" "$tok:$1" "$2" "$3" 60 "doc one $spec" "doc two" "doc three"
    R=$(result_of "j-$1-$2") || fail "no sign_result for $spec"
    expect_eq "$(jget "$R" 'v["status"]')" ok "status of $spec"
    expect_eq "$(jget "$R" 'len(v["signatures"])')" 3 "three signatures for $spec"
    expect_eq "$(jget "$R" 'v["verified"]')" True "the gateway verifies $spec"
    expect_eq "$(grep -c '^GETPIN' "$QES_TEST_PINENTRY_LOG")" 1 "one PIN for the batch ($spec)"
done
SIGN=$(wait_msg 0 1 "m['type']=='sign_result' and m['job_id']=='j-02-ecdsa'")
expect_contains "$QES_TEST_PINENTRY_LOG" "Test Tenant (fake gateway) asks you to sign"
expect_contains "$QES_TEST_PINENTRY_LOG" "Verification code: "
expect_contains "$QES_TEST_PINENTRY_LOG" "3 documents"
ok "batches of 3 for RSA PKCS#1, PSS, P-256, RSA-3072, P-384: one PIN each, every value verified"

# An unknown credential, a token that is not there: a sign_result error at once.
sign j-nokey "$A:7f" ecdsa sha256 60 "x"
R=$(result_of j-nokey 10)
expect_eq "$(jget "$R" 'v["error"]')" key_not_found "unknown key"
sign j-notoken "0000000000000000:01" ecdsa sha256 60 "x"
R=$(result_of j-notoken 10)
expect_eq "$(jget "$R" 'v["error"]')" token_not_present "unknown token"
ok "unknown credentials are answered at once (key_not_found, token_not_present)"

# Declined in the dialog; wrong PIN with the token's flags.
pinentry_script cancel
sign j-declined "$A:02" ecdsa sha256 60 "y"
R=$(result_of j-declined)
expect_eq "$(jget "$R" 'v["error"]')" cancelled "declined in the dialog"
pinentry_script "pin 000000" "pin 000001" "pin 000002"
sign j-wrongpin "$A:02" ecdsa sha256 60 "y"
R=$(result_of j-wrongpin)
expect_eq "$(jget "$R" 'v["error"]')" pin_incorrect "wrong PIN"
expect_eq "$(jget "$R" 'v["pin_flags"]["count_low"]')" True "count_low after wrong PINs"
N0=$(received_lines)
# the token's PIN counters moved: a fresh inventory follows
wait_msg 0 10 'm["type"]=="inventory" and any(t.get("flags",{}).get("user_pin_count_low") for t in m["report"]["tokens"])' >/dev/null ||
    fail "no inventory with the new PIN flags"
pinentry_script "pin $QES_TOKEN_A_PIN"
sign j-rightpin "$A:02" ecdsa sha256 60 "y"
R=$(result_of j-rightpin)
expect_eq "$(jget "$R" 'v["status"]')" ok "the right PIN signs again"
ok "declined -> cancelled; wrong PIN -> pin_incorrect with pin_flags, and a fresh inventory"

# ---------------------------------------------------------------------------
# Cancel while the dialog is open: the dialog (the pinentry process) is gone.
: >"$T/pinentry.pids"
pinentry_script "sleep 60" "pin $QES_TOKEN_A_PIN"
sign j-cancel "$A:02" ecdsa sha256 120 "z"
for _ in $(seq 1 50); do [ -s "$T/pinentry.pids" ] && break; sleep 0.1; done
PPID_DIALOG=$(head -n 1 "$T/pinentry.pids")
kill -0 "$PPID_DIALOG" || fail "the dialog is not open"
# several heartbeat intervals (5 s) with the dialog open: the session lives
sleep 12
expect_eq "$(grep -c '^.* live ses_' "$T/gw/events.log")" 1 "sessions while the dialog was open"
ctl send '{"type":"ping","ts":1234}' >/dev/null
P=$(wait_msg 0 5 'm["type"]=="pong" and m["ts"]==1234') || fail "no pong while a dialog is open"
expect_eq "$(ctl send '{"type":"cancel","job_id":"j-cancel","reason":"requested"}')" 200 "ctl cancel"
R=$(result_of j-cancel 10)
expect_eq "$(jget "$R" 'v["error"]')" cancelled "a cancelled job"
for _ in $(seq 1 30); do kill -0 "$PPID_DIALOG" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PPID_DIALOG" 2>/dev/null && fail "the pinentry of a cancelled job is still running"
ok "a dialog open for 12 s (heartbeat 5 s) keeps the session; ping answered; cancel closes the dialog"

# A job's timeout_s closes the dialog too: error timeout.
: >"$T/pinentry.pids"
pinentry_script "sleep 60"
sign j-timeout "$A:02" ecdsa sha256 5 "t"
R=$(result_of j-timeout 15)
expect_eq "$(jget "$R" 'v["error"]')" timeout "timeout_s passed"
ok "timeout_s ends the dialog: error timeout"

# One dialog per token: the rest wait in order, 16 at most, then token_busy.
# q-0's dialog takes the first line, token B's job the second; any queued
# job that starts while the cancels arrive finds a dialog that waits
sleeps=(); for i in $(seq 1 20); do sleeps+=("sleep 60"); done
pinentry_script "sleep 60" "pin $QES_TOKEN_B_PIN" "${sleeps[@]}"
N0=$(received_lines)
sign q-0 "$A:02" ecdsa sha256 120 "q0"
sleep 0.5
for i in $(seq 1 17); do sign "q-$i" "$A:02" ecdsa sha256 120 "q$i"; done
R=$(wait_msg "$N0" 10 "m['type']=='sign_result' and m['job_id']=='q-17'")
expect_eq "$(jget "$R" 'v["error"]')" token_busy "the 17th waiting job"
# another token is not blocked by token A's dialog
sign other-token "$B:12" ecdsa sha384 60 "o"
R=$(result_of other-token 20)
expect_eq "$(jget "$R" 'v["status"]')" ok "token B signs while token A's dialog is open"
# a duplicate job id, an unknown cancel
N1=$(received_lines)
sign q-3 "$A:02" ecdsa sha256 120 "dup"
E=$(wait_msg "$N1" 10 'm["type"]=="error"') || fail "no error for a duplicate job"
expect_eq "$(jget "$E" 'v["code"]')" duplicate_job "duplicate job id"
ctl send '{"type":"cancel","job_id":"nope","reason":"requested"}' >/dev/null
E=$(wait_msg "$N1" 10 'm["type"]=="error" and m["code"]=="unknown_job"') || fail "no unknown_job"
for i in $(seq 0 16); do ctl send "{\"type\":\"cancel\",\"job_id\":\"q-$i\",\"reason\":\"requested\"}" >/dev/null; done
for i in $(seq 0 16); do
    R=$(wait_msg "$N0" 15 "m['type']=='sign_result' and m['job_id']=='q-$i'") || fail "no result for q-$i"
    expect_eq "$(jget "$R" 'v["error"]')" cancelled "cancelled q-$i"
done
ok "per-token queue: 1 running + 16 waiting, the next is token_busy; other tokens run; duplicate_job, unknown_job"

# Diagnose.
N0=$(received_lines)
ctl send '{"type":"diagnose","id":"diag1"}' >/dev/null
D=$(wait_msg "$N0" 20 'm["type"]=="diagnose_result"') || fail "no diagnose_result"
expect_eq "$(jget "$D" 'v["ref_id"]')" diag1 "diagnose_result.ref_id"
expect_eq "$(jget "$D" '"verdict" in v["report"]["tokens"][0]')" True "verdicts in the report"
ok "diagnose -> diagnose_result with verdicts and timings"

# ---------------------------------------------------------------------------
# Connection faults.
# a malformed message: the agent closes 4000 and comes back
ctl send '{"type":"sign","job_id":"bad"}' >/dev/null
wait_event 'closed 4000 protocol_error: sign' 10 || { events >&2; fail "no 4000 on a malformed sign"; }
for _ in $(seq 1 100); do [ "$(grep -c ' live ses_' "$T/gw/events.log")" -ge 2 ] && break; sleep 0.1; done
expect_eq "$(grep -c ' live ses_' "$T/gw/events.log")" 2 "sessions after the protocol error"
ok "a malformed message closes with 4000 and the agent reconnects"

# 4004 draining: back within 5 s
ctl close '{"code":4004,"reason":"server_draining"}' >/dev/null
for _ in $(seq 1 80); do [ "$(grep -c ' live ses_' "$T/gw/events.log")" -ge 3 ] && break; sleep 0.1; done
expect_eq "$(grep -c ' live ses_' "$T/gw/events.log")" 3 "sessions after 4004"
ok "4004 server_draining: reconnected within 8 s"

# a server that falls silent: dropped after 3 heartbeats, reconnected after it wakes
kill -STOP "$GW_PID"
sleep 17
kill -CONT "$GW_PID"
grep -q '"heartbeat timeout' "$T/agent.log" || { tail -n 20 "$T/agent.log" >&2; fail "the silent server was not detected"; }
for _ in $(seq 1 600); do [ "$(grep -c ' live ses_' "$T/gw/events.log")" -ge 4 ] && break; sleep 0.1; done
expect_eq "$(grep -c ' live ses_' "$T/gw/events.log")" 4 "sessions after the silent server woke"
ok "a silent server is dropped after 3 heartbeat intervals; the agent reconnects by itself"

# a challenge for another host: the agent does not sign, closes 4001
N0=$(received_lines)
ctl config '{"server_name":"evil.example"}' >/dev/null
ctl close '{"code":1001,"reason":"going_away"}' >/dev/null
wait_event 'closed 4001 auth_failed: server_name mismatch' 15 || { events >&2; fail "no 4001 for a foreign server_name"; }
"$PY" - "$T/gw/received.jsonl" "$N0" <<'EOF' || fail "the agent signed a challenge for another host"
import json, sys
lines = open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]
sys.exit(1 if any(json.loads(l)["type"] == "auth" for l in lines) else 0)
EOF
grep -q '"server_name_mismatch"' "$T/agent.log" || fail "server_name_mismatch not logged"
ctl config '{"server_name":"localhost"}' >/dev/null
ok "a challenge naming another host is refused (4001) without an auth signature"

# 4003 replaced: this agent stops (exit 11) and says why
for _ in $(seq 1 400); do [ "$(grep -c ' live ses_' "$T/gw/events.log")" -ge 5 ] && break; sleep 0.1; done
expect_eq "$(grep -c ' live ses_' "$T/gw/events.log")" 5 "back after the 4001 (30 s back-off)"
ctl close '{"code":4003,"reason":"replaced"}' >/dev/null
rc=0; wait "$AGENT_PID" || rc=$?
expect_eq "$rc" 11 "exit code after 4003"
grep -q '"session_replaced"' "$T/agent.log" || fail "4003 not explained"
ok "4003 replaced: the agent stops with exit 11 and says another agent uses the device"

# SIGTERM: close 1000, exit 0
start_agent
for _ in $(seq 1 100); do [ "$(grep -c ' live ses_' "$T/gw/events.log")" -ge 6 ] && break; sleep 0.1; done
kill -TERM "$AGENT_PID"
rc=0; wait "$AGENT_PID" || rc=$?
expect_eq "$rc" 0 "exit code after SIGTERM"
wait_event 'closed 1000' 5 || fail "no close 1000 on SIGTERM"
ok "SIGTERM: close 1000 and exit 0"

# Revoked: 4002, exit 10, and it cannot come back
start_agent
for _ in $(seq 1 100); do [ "$(grep -c ' live ses_' "$T/gw/events.log")" -ge 7 ] && break; sleep 0.1; done
ctl revoke >/dev/null
rc=0; wait "$AGENT_PID" || rc=$?
expect_eq "$rc" 10 "exit code after 4002"
expect_contains "$T/agent.log" "enroll again"
start_agent
rc=0; wait "$AGENT_PID" || rc=$?
expect_eq "$rc" 10 "a revoked device cannot reconnect"
ok "revoked: 4002, exit 10 with 're-enroll', and a restart is refused again"

# The CA the agent trusts is its copy: with it gone, run refuses to start
# rather than falling back to the system store.
mv "$CFG/server-ca.pem" "$T/ca-moved.pem"
rc=0
timeout 20 "$QES_AGENT" run --config "$CFG" --module "$QES_TEST_MODULE" --only-module \
    >/dev/null 2>"$T/noca.err" || rc=$?
expect_eq "$rc" 1 "run without the CA copy"
expect_contains "$T/noca.err" "server-ca.pem"
ok "no CA copy: run refuses to start (no silent fallback to the system store)"

# No PIN anywhere.
for f in "$T/agent.log" "$T/agent.out" "$T/gw/received.jsonl" "$QES_TEST_PINENTRY_LOG"; do
    for pin in "$QES_TOKEN_A_PIN" "$QES_TOKEN_B_PIN"; do expect_not_contains "$f" "$pin"; done
done
ok "no PIN in the agent's logs, the messages it sent or the dialog transcript"
