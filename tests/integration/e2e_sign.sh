#!/usr/bin/env bash
# e2e_sign.sh - the whole path: a relying party's API call -> qesd -> the
# signer's qes-agent -> SoftHSM2 -> back, every signature verified by OpenSSL
# against the signer's certificate.
#
# Real parts: qesd (TLS 1.3, SQLite), qes-agent enroll/run, SoftHSM2 tokens
# (a private copy), the scripted pinentry (tests/helpers/qes-test-pinentry.c)
# behind a wrapper that records each dialog's process id. The relying party
# is curl; every HTTP answer is kept in $T/http/ for the final PIN grep.
#
# What it shows (issue 4, "Tests that must exist"): enroll with a one-time
# code; credentials listed once the agent is connected; a batch of 3 for each
# key type (RSA-2048 PKCS#1 and PSS, P-256, RSA-3072, P-384), long-polled to
# completed and verified with openssl; the job's verification code is the
# one the dialog showed; one PIN per job (the next job asks again); declined,
# wrong PIN (with token flags), cancel while the dialog is open (the dialog
# process is gone), a dialog held open across several heartbeats (the job
# shows awaiting_user meanwhile; the signer's consent and the decline are in
# the audit chain with the device), the agent
# killed mid-dialog (device_disconnected), qesd restarted with a job in
# flight (gateway_restart, and the agent comes back alone), a revoked device
# (disconnected, cannot come back); no PIN in any log, the database or any
# HTTP answer.
. "$(dirname -- "$0")/../lib.sh"

T=$(qes_tmpdir)
. "$QES_SOURCE_DIR/tests/qesd.sh"
qesd_need curl openssl python3 sqlite3
qes_private_tokens "$T/tokens"
A=$QES_TOKEN_A_SERIAL B=$QES_TOKEN_B_SERIAL
HEARTBEAT_S=5
mkdir -p "$T/http"

# ---------------------------------------------------------------------------
# qesd with a localhost certificate from the test PKI.
qesd_tls_files "$T" "qesd e2e"
# a fixed port, so the enrolled URL survives a restart of qesd
PORT=$(qes_free_port)
qesd_base_conf "$T/qesd.conf" "$T" "127.0.0.1:$PORT"
cat >>"$T/qesd.conf" <<EOF
agent_ping_interval_s = $HEARTBEAT_S
agent_dead_after_s = $((HEARTBEAT_S * 3))
EOF
qesd_conf "$T/qesd.conf"

# api NAME METHOD PATH [JSON]: the HTTP status; the answer in $T/http/NAME.json
api() {
    local name=$1 method=$2 path=$3 body=${4:-}
    local args=(-sS --cacert "$QES_PKI/root-ca.pem" -o "$T/http/$name.json"
        -D "$T/http/$name.hdr" -w '%{http_code}' -X "$method"
        -H "Authorization: Bearer $KEY")
    if [ -n "$body" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    elif [ "$method" = POST ]; then
        args+=(-H 'Content-Length: 0')	# qesd wants a length even without a body
    fi
    curl "${args[@]}" "https://localhost:$PORT$path" || echo 000
}
json() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$T/http/$1.json" "$2"; }

# ---------------------------------------------------------------------------
# A tenant, a key for signing and devices, an enrollment code.
"$QESD" admin --config "$T/qesd.conf" tenant create e2e-co >"$T/tenant.out" 2>"$T/tenant.err" ||
    { cat "$T/tenant.err" >&2; fail "tenant create"; }
ADMIN_KEY=$(awk '$1 == "api_key:" { print $2 }' "$T/tenant.out")
TENANT=$(awk '$1 == "tenant_id:" { print $2 }' "$T/tenant.out")
start_qesd "$T/qesd.conf" "$T/qesd.log"
printf '%s\n' "$ADMIN_KEY" >"$T/admin.key"
chmod 600 "$T/admin.key"
QES_SERVER="https://localhost:$PORT" QES_CA="$QES_PKI/root-ca.pem" "$QES_CLI" keys create \
    --name e2e --scope sign,devices,diagnostics,audit --key-file "$T/admin.key" >"$T/key.out" 2>"$T/key.err" ||
    { cat "$T/key.err" >&2; fail "keys create"; }
KEY=$(awk '$1 == "api_key:" { print $2 }' "$T/key.out")
[ -n "$KEY" ] || fail "no API key"

expect_eq "$(api enroll1 POST /v1/enrollments '{}')" 201 "POST /v1/enrollments"
CODE=$(json enroll1 'v["code"]')
ok "tenant $TENANT, an API key (sign, devices, diagnostics, audit), enrollment code issued"

# ---------------------------------------------------------------------------
# Enroll and run the agent.
CFG=$T/agent
enroll_agent "https://localhost:$PORT" "$CODE" "$CFG" "e2e desktop"
rc=0
"$QES_AGENT" enroll --server "https://localhost:$PORT" --code "$CODE" \
    --ca "$QES_PKI/root-ca.pem" --config "$T/agent2" >/dev/null 2>"$T/enroll2.err" || rc=$?
expect_eq "$rc" 3 "a used enrollment code"
ok "enrolled as $DEVICE; the used code is refused with exit 3 ($(head -n 1 "$T/enroll2.err" | cut -c1-80))"

qesd_pinentry
pinentry_script "pin $QES_TOKEN_A_PIN"

AGENT_PID=
# run_agent: start_agent (tests/qesd.sh) with this test's configuration
run_agent() { start_agent "$CFG" "$T/pinentry.sh"; }
# wait_exit PID SECONDS: $EXIT_RC is its exit status; fail if it still runs
wait_exit() {
    local i
    for i in $(seq 1 $(($2 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$1" 2>/dev/null; then
        tail -n 20 "$T/agent.log" >&2
        fail "process $1 still runs after $2 s"
    fi
    EXIT_RC=0
    wait "$1" || EXIT_RC=$?
}
sessions_opened() { grep -c '"event":"session_open"' "$T/agent.log" 2>/dev/null || true; }
wait_sessions() { # N TIMEOUT-S
    local i
    for i in $(seq 1 $(($2 * 10))); do [ "$(sessions_opened)" -ge "$1" ] && return 0; sleep 0.1; done
    tail -n 20 "$T/agent.log" >&2
    fail "the agent did not open session $1"
}
# wait_credentials N: GET /v1/credentials lists N certificates with keys
wait_credentials() {
    local i n
    for i in $(seq 1 100); do
        if [ "$(api creds GET /v1/credentials)" = 200 ]; then
            n=$(json creds 'len(v["items"])')
            [ "$n" -ge "$1" ] && return 0
        fi
        sleep 0.2
    done
    cat "$T/http/creds.json" >&2
    fail "GET /v1/credentials did not list $1 credentials"
}
run_agent
wait_sessions 1 20
wait_credentials 4
ok "qes-agent run: session open, GET /v1/credentials lists the tokens' certificates"

# Keepalive: an idle session outlives agent_dead_after_s, because the agent's
# transport answers qesd's WebSocket pings.
sleep $((HEARTBEAT_S * 3 + 3))
if grep -q '"msg":"agent silent too long' "$T/qesd.log"; then
    # libwebsockets 4.1 raises no RECEIVE_PONG for an empty pong: qesd's pings
    # carry a payload (src/qesd/hub_ws.c); this catches a regression
    fail "qesd dropped an idle agent that answers its pings"
fi
expect_eq "$(sessions_opened)" 1 "sessions after $((HEARTBEAT_S * 3 + 3)) s idle"
ok "an idle session outlives 3 heartbeat intervals (qesd's pings answered)"

# credential SERIAL KEYID-HEX CERT-PEM: the credential id GET /v1/credentials
# gives that key; its certificate must be the test PKI's
credential() {
    openssl x509 -in "$3" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1 >"$T/cert.sha256"
    python3 - "$T/http/creds.json" "$1" "$2" "$(cat "$T/cert.sha256")" <<'EOF'
import json, sys
items = json.load(open(sys.argv[1]))["items"]
for c in items:
    if c["token_serial"] == sys.argv[2] and c["key_id"] == sys.argv[3]:
        if c["certificate_sha256"] != sys.argv[4]:
            sys.exit("credential %s: another certificate" % c["id"])
        print(c["id"])
        break
else:
    sys.exit("no credential for %s:%s" % (sys.argv[2], sys.argv[3]))
EOF
}

# ---------------------------------------------------------------------------
# Signing: a batch of 3 for each key type, verified by openssl.
b64() { openssl base64 -A; }
# submit NAME CREDENTIAL SCHEME MD TIMEOUT DOCS...: POST /v1/signatures
submit() {
    local name=$1 cred=$2 scheme=$3 md=$4 to=$5 ds="" d
    shift 5
    for d in "$@"; do
        ds="$ds${ds:+,}\"$(printf '%s' "$d" | openssl dgst -"$md" -binary | b64)\""
    done
    api "$name" POST /v1/signatures "{\"credential_id\":\"$cred\",\"digest_algorithm\":\"$md\",\"signature_scheme\":\"$scheme\",\"digests\":[$ds],\"title\":\"Contract $name\",\"description\":\"e2e test\",\"application\":\"e2e suite\",\"timeout_seconds\":$to}"
}
# wait_job NAME ID: long-poll until the job is final; its JSON in $T/http/NAME.json
wait_job() {
    local i st
    for i in $(seq 1 8); do
        expect_eq "$(api "$1" GET "/v1/signatures/$2?wait=30")" 200 "GET job $2"
        st=$(json "$1" 'v["state"]')
        case "$st" in completed|failed|cancelled|expired) return 0 ;; esac
    done
    cat "$T/http/$1.json" >&2
    fail "job $2 did not end"
}
verify_sigs() { # NAME CERT SCHEME MD DOCS...
    local name=$1 cert=$2 scheme=$3 md=$4 i=0 d opts=()
    shift 4
    openssl x509 -in "$cert" -pubkey -noout >"$T/pub.pem"
    [ "$scheme" = rsa-pss ] && opts=(-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -sigopt "rsa_mgf1_md:$md")
    for d in "$@"; do
        json "$name" "v['signatures'][$i]" | openssl base64 -d -A >"$T/sig.bin"
        printf '%s' "$d" >"$T/doc.bin"
        openssl dgst -"$md" -verify "$T/pub.pem" "${opts[@]}" -signature "$T/sig.bin" "$T/doc.bin" |
            grep -q "Verified OK" || fail "openssl rejects signature $i of $name"
        i=$((i + 1))
    done
}

for spec in "$A 01 qual-rsa2048 rsa-pkcs1 sha256 $QES_TOKEN_A_PIN" \
        "$A 01 qual-rsa2048 rsa-pss sha384 $QES_TOKEN_A_PIN" \
        "$A 02 qual-p256 ecdsa sha256 $QES_TOKEN_A_PIN" \
        "$B 11 qual-rsa3072 rsa-pss sha512 $QES_TOKEN_B_PIN" \
        "$B 12 qual-p384 ecdsa sha384 $QES_TOKEN_B_PIN"; do
    set -- $spec
    serial=$1 kid=$2 certname=$3 scheme=$4 md=$5 pin=$6
    cred=$(credential "$serial" "$kid" "$QES_PKI/$certname.pem") || fail "no credential for $serial:$kid"
    name="s-$kid-$scheme"
    pinentry_script "pin $pin"
    st=$(submit "$name" "$cred" "$scheme" "$md" 120 "first $name" "second $name" "third $name")
    expect_eq "$st" 202 "POST /v1/signatures ($name)"
    job=$(json "$name" 'v["id"]')
    vc=$(json "$name" 'v["verification_code"]')
    wait_job "$name" "$job"
    expect_eq "$(json "$name" 'v["state"]')" completed "state of $name"
    expect_eq "$(json "$name" 'len(v["signatures"])')" 3 "signatures of $name"
    verify_sigs "$name" "$QES_PKI/$certname.pem" "$scheme" "$md" "first $name" "second $name" "third $name"
    expect_contains "$QES_TEST_PINENTRY_LOG" "Verification code: $vc"
    expect_eq "$(grep -c '^GETPIN' "$QES_TEST_PINENTRY_LOG")" 1 "PIN prompts for $name"
    ok "$certname $scheme $md: a batch of 3 completed, openssl verifies all, code $vc shown in the dialog"
done

# One login per job: two jobs in a row, two PIN prompts.
CRED_A2=$(credential "$A" 02 "$QES_PKI/qual-p256.pem")
pinentry_script "pin $QES_TOKEN_A_PIN" "pin $QES_TOKEN_A_PIN"
for n in 1 2; do
    expect_eq "$(submit "again$n" "$CRED_A2" ecdsa sha256 120 "again $n")" 202 "job again$n"
    wait_job "again$n" "$(json "again$n" 'v["id"]')"
    expect_eq "$(json "again$n" 'v["state"]')" completed "again$n"
done
expect_eq "$(grep -c '^GETPIN' "$QES_TEST_PINENTRY_LOG")" 2 "PIN prompts for two jobs"
ok "the token is logged out after a job: the next job asks for the PIN again"

# Declined in the dialog, wrong PIN with the token's flags.
pinentry_script cancel
submit declined "$CRED_A2" ecdsa sha256 120 "declined" >/dev/null
DECLINED=$(json declined 'v["id"]')
wait_job declined "$DECLINED"
expect_eq "$(json declined 'v["state"]')" failed "declined job"
expect_eq "$(json declined 'v["reason"]')" declined "declined reason"
pinentry_script "pin 918273" "pin 918274" "pin 918275"
submit wrongpin "$CRED_A2" ecdsa sha256 120 "wrong pin" >/dev/null
WRONGPIN=$(json wrongpin 'v["id"]')
wait_job wrongpin "$WRONGPIN"
expect_eq "$(json wrongpin 'v["reason"]')" pin_incorrect "wrong PIN reason"
expect_eq "$(json wrongpin 'v["token_flags"]["user_pin_count_low"]')" True "token flags after wrong PINs"
ok "cancel in the dialog -> failed: declined; wrong PIN -> failed: pin_incorrect with token_flags"

# ---------------------------------------------------------------------------
# A dialog held open for several heartbeat intervals: the session stays up,
# the job shows awaiting_user while the dialog is open (the agent's
# sign_status), and completes.
S0=$(sessions_opened)
pinentry_script "sleep $((HEARTBEAT_S * 4))" "pin $QES_TOKEN_A_PIN"
submit held "$CRED_A2" ecdsa sha256 120 "held" >/dev/null
HELD=$(json held 'v["id"]')
st=
for _ in $(seq 1 100); do
    expect_eq "$(api held_open GET "/v1/signatures/$HELD")" 200 "GET job $HELD"
    st=$(json held_open 'v["state"]')
    [ "$st" = awaiting_user ] && break
    sleep 0.1
done
expect_eq "$st" awaiting_user "state while the dialog is open"
kill -0 "$(head -n 1 "$T/pinentry.pids")" 2>/dev/null || fail "no dialog open while awaiting_user"
# and it stays so while the signer looks at the dialog
sleep $((HEARTBEAT_S * 2))
expect_eq "$(api held_open2 GET "/v1/signatures/$HELD")" 200 "GET job $HELD"
expect_eq "$(json held_open2 'v["state"]')" awaiting_user "state $((HEARTBEAT_S * 2)) s into the dialog"
wait_job held "$HELD"
expect_eq "$(json held 'v["state"]')" completed "job with a dialog open for $((HEARTBEAT_S * 4)) s"
expect_eq "$(sessions_opened)" "$S0" "sessions while the dialog was open"
ok "a dialog open for 4 heartbeat intervals ($((HEARTBEAT_S * 4)) s) keeps the session; the job is awaiting_user meanwhile, then completes"

# The audit chain: the dialog opening, the signer's consent and the decline,
# each with the device. audit_count NAME TYPE JOB [REASON]: how many records
# of TYPE name JOB and this device (and REASON) in GET /v1/audit?type=TYPE
audit_count() {
    expect_eq "$(api "$1" GET "/v1/audit?type=$2&limit=1000")" 200 "GET /v1/audit?type=$2"
    python3 - "$T/http/$1.json" "$2" "$3" "$DEVICE" "${4:-}" <<'EOF2'
import json, sys
recs, typ, job, dev, reason = json.load(open(sys.argv[1]))["records"], *sys.argv[2:]
n = 0
for r in recs:
    d = r["details"] or {}
    if r["type"] != typ or d.get("job_id") != job:
        continue
    if r["device_id"] != dev:
        sys.exit("%s record of %s names device %r, not %s" % (typ, job, r["device_id"], dev))
    if reason and d.get("reason") != reason:
        sys.exit("%s record of %s has reason %r, not %s" % (typ, job, d.get("reason"), reason))
    n += 1
print(n)
EOF2
}
expect_eq "$(audit_count aud_await signature.awaiting_user "$HELD")" 1 "dialog-open records of the held job"
expect_eq "$(audit_count aud_consent signature.consented "$HELD")" 1 "consent records of the held job"
expect_eq "$(audit_count aud_await signature.awaiting_user "$DECLINED")" 1 "dialog-open records of the declined job"
expect_eq "$(audit_count aud_consent signature.consented "$DECLINED")" 0 "consent records of the declined job"
expect_eq "$(audit_count aud_failed signature.failed "$DECLINED" declined)" 1 "decline records"
expect_eq "$(audit_count aud_consent signature.consented "$WRONGPIN")" 0 "consent records of the wrong-PIN job"
expect_eq "$(audit_count aud_failed signature.failed "$WRONGPIN" pin_incorrect)" 1 "wrong-PIN records"
# every completed job so far had exactly one consent: 5 batches, 2 in a row, held
expect_eq "$(json aud_consent 'len(v["records"])')" 8 "consent records in the chain"
ok "audit chain: the held job's dialog and the signer's consent, the declined job's dialog and decline (no consent), each with device $DEVICE"

# Two jobs for one token: the second waits in the agent's queue, dispatched,
# until its own dialog opens after the first job ended.
pinentry_script "sleep 8" "pin $QES_TOKEN_A_PIN" "pin $QES_TOKEN_A_PIN"
submit q1 "$CRED_A2" ecdsa sha256 120 "first in line" >/dev/null
Q1=$(json q1 'v["id"]')
for _ in $(seq 1 100); do
    api q1_open GET "/v1/signatures/$Q1" >/dev/null
    [ "$(json q1_open 'v["state"]')" = awaiting_user ] && break
    sleep 0.1
done
expect_eq "$(json q1_open 'v["state"]')" awaiting_user "the first job while its dialog is open"
submit q2 "$CRED_A2" ecdsa sha256 120 "second in line" >/dev/null
Q2=$(json q2 'v["id"]')
for _ in 1 2 3; do
    sleep 1
    expect_eq "$(api q2_queued GET "/v1/signatures/$Q2")" 200 "GET job $Q2"
    expect_eq "$(json q2_queued 'v["state"]')" dispatched "the queued job while another dialog is open"
done
wait_job q1 "$Q1"
wait_job q2 "$Q2"
expect_eq "$(json q1 'v["state"]')/$(json q2 'v["state"]')" completed/completed "the two queued jobs"
expect_eq "$(api aud_dev GET "/v1/audit?device=$DEVICE&limit=1000")" 200 "GET /v1/audit?device="
python3 - "$T/http/aud_dev.json" "$Q1" "$Q2" <<'EOF2' || fail "the queued job's records are out of order"
import json, sys
recs, q1, q2 = json.load(open(sys.argv[1]))["records"], sys.argv[2], sys.argv[3]
seq = {}
for r in recs:
    j = (r["details"] or {}).get("job_id")
    if j in (q1, q2):
        seq.setdefault((j, r["type"]), []).append(r["seq"])
want = [(q1, "signature.awaiting_user"), (q1, "signature.consented"), (q1, "signature.completed"),
        (q2, "signature.awaiting_user"), (q2, "signature.consented"), (q2, "signature.completed")]
for k in want:
    if len(seq.get(k, [])) != 1:
        sys.exit("%s %s: %d records" % (k[0], k[1], len(seq.get(k, []))))
order = [seq[k][0] for k in want]
if order != sorted(order):
    sys.exit("records out of order: %s" % order)
# the second was sent while the first's dialog was open, and waited
if not seq[(q1, "signature.awaiting_user")][0] < seq[(q2, "signature.dispatched")][0] < seq[(q1, "signature.completed")][0]:
    sys.exit("the second job was not sent while the first was open")
EOF2
ok "a job queued behind another dialog on the token stays dispatched; its awaiting_user comes only when its own dialog opens"

# Cancel while the dialog is open: job cancelled, the dialog process gone.
pinentry_script "sleep 120"
submit cancelme "$CRED_A2" ecdsa sha256 120 "cancel me" >/dev/null
JOB=$(json cancelme 'v["id"]')
for _ in $(seq 1 50); do [ -s "$T/pinentry.pids" ] && break; sleep 0.1; done
DIALOG=$(head -n 1 "$T/pinentry.pids")
kill -0 "$DIALOG" 2>/dev/null || fail "the dialog did not open"
expect_eq "$(api cancel POST "/v1/signatures/$JOB/cancel")" 200 "POST cancel"
wait_job cancelme "$JOB"
expect_eq "$(json cancelme 'v["state"]')" cancelled "cancelled job"
for _ in $(seq 1 50); do kill -0 "$DIALOG" 2>/dev/null || break; sleep 0.1; done
kill -0 "$DIALOG" 2>/dev/null && fail "the dialog of a cancelled job is still open"
grep -q "\"event\":\"job_cancel\".*\"job\":\"$JOB\"" "$T/agent.log" || fail "the agent did not get the cancel"
ok "POST cancel while the dialog is open: job cancelled, the pinentry process is gone"

# ---------------------------------------------------------------------------
# The agent killed while the dialog is open: failed: device_disconnected.
pinentry_script "sleep 120"
submit killed "$CRED_A2" ecdsa sha256 120 "killed" >/dev/null
JOB=$(json killed 'v["id"]')
for _ in $(seq 1 50); do [ -s "$T/pinentry.pids" ] && break; sleep 0.1; done
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
kill "$(head -n 1 "$T/pinentry.pids")" 2>/dev/null || true	# its orphaned dialog
wait_job killed "$JOB"
expect_eq "$(json killed 'v["reason"]')" device_disconnected "job of a killed agent"
ok "agent killed with the dialog open: failed: device_disconnected"

# qesd restarted with a job in flight: the job ends (gateway_restart) and the
# agent reconnects by itself.
run_agent
S0=$(sessions_opened)
wait_sessions $((S0 + 1)) 20
S1=$(sessions_opened)
wait_credentials 4
pinentry_script "sleep 120"
submit restart "$CRED_A2" ecdsa sha256 120 "restart" >/dev/null
JOB=$(json restart 'v["id"]')
for _ in $(seq 1 50); do [ -s "$T/pinentry.pids" ] && break; sleep 0.1; done
DIALOG=$(head -n 1 "$T/pinentry.pids")
stop_qesd
start_qesd "$T/qesd.conf" "$T/qesd.log"
wait_job restart "$JOB"
expect_eq "$(json restart 'v["state"]')" failed "job across a restart"
expect_eq "$(json restart 'v["reason"]')" gateway_restart "reason across a restart"
wait_sessions $((S1 + 1)) 90
for _ in $(seq 1 50); do kill -0 "$DIALOG" 2>/dev/null || break; sleep 0.1; done
kill -0 "$DIALOG" 2>/dev/null && fail "the dialog of a job whose session ended is still open"
wait_credentials 4
pinentry_script "pin $QES_TOKEN_A_PIN"
submit after "$CRED_A2" ecdsa sha256 120 "after restart" >/dev/null
wait_job after "$(json after 'v["id"]')"
expect_eq "$(json after 'v["state"]')" completed "a job after the restart"
ok "qesd restarted mid-job: failed: gateway_restart; the agent reconnected alone and signs again"

# ---------------------------------------------------------------------------
# Revoked: the session is closed at once and the device cannot come back.
expect_eq "$(api revoke DELETE "/v1/devices/$DEVICE")" 204 "DELETE /v1/devices/$DEVICE"
wait_exit "$AGENT_PID" 10
expect_eq "$EXIT_RC" 10 "agent exit status after revocation"
expect_contains "$T/agent.log" "enroll again"
S0=$(sessions_opened)
run_agent
# docs/protocol.md 3.5: a revoked device is refused with 4002, and the agent stops
wait_exit "$AGENT_PID" 20
expect_eq "$EXIT_RC" 10 "a revoked device cannot reconnect"
expect_eq "$(sessions_opened)" "$S0" "sessions of a revoked device"
expect_eq "$(api creds_after GET /v1/credentials)" 200 "credentials after revocation"
expect_eq "$(json creds_after 'len(v["items"])')" 0 "credentials of a revoked device"
ok "revoked device: disconnected (4002, exit 10), refused again on restart, no credentials listed"

stop_qesd

# ---------------------------------------------------------------------------
# No PIN anywhere: logs, database, HTTP answers, the dialog transcript.
for pin in "$QES_TOKEN_A_PIN" "$QES_TOKEN_B_PIN" 918273 918274 918275; do
    for f in "$T/agent.log" "$T/qesd.log" "$T/enroll.out" "$T/enroll.err" "$QES_TEST_PINENTRY_LOG" \
            "$T"/http/*.json "$T"/http/*.hdr; do
        expect_not_contains "$f" "$pin"
    done
    for db in "$T/qesd.db" "$T/qesd.db-wal"; do
        [ -f "$db" ] || continue
        if grep -qawF -- "$pin" "$db"; then fail "$db contains a PIN"; fi
    done
    db_dump "$T/qesd.db" >"$T/db.dump"
    # as a word, in the files above too: the database holds hashes in hex
    # and the dump spells blobs in hex and times in long numbers, where six
    # digits occur by chance (a PIN stored as text stands alone)
    grep -qwF -- "$pin" "$T/db.dump" && fail "the database dump contains a PIN"
done
ok "no PIN in the agent's or qesd's logs, the database, the HTTP answers or the transcript"
