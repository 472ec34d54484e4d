#!/usr/bin/env bash
# e2e_diagnostics.sh - POST /v1/devices/{id}/diagnostics end to end: a real
# qesd (TLS, SQLite), a real qes-agent enrolled and running against a private
# copy of the SoftHSM2 tokens, curl as the relying party.
#
# What it shows (issue 4, diagnostics):
#   - the report qesd returns is the one `qes-agent diagnose --json` prints
#     on the same desktop for the same tokens: modules, and every token with
#     its serial, label, flags, verdict and certificates; the same system
#     section (but its time);
#   - rtt_ms is there and sane: at least the agent's own total_ms, at most
#     what curl waited for the whole request;
#   - the scope: a key without `diagnostics` gets 403 insufficient_scope;
#     another tenant's device and a made-up id get 404 not_found;
#   - one at a time: a second request while one waits gets 409
#     diagnostics_in_progress; an agent still busy with a diagnosis gets 409
#     device_busy (the agent's own refusal);
#   - an agent that does not answer (SIGSTOP) gets 504 diagnostics_timeout
#     after diagnostics_timeout_s; a session that dies while qesd waits
#     gets 502 device_disconnected at once, not at the timeout; no session
#     gets 409 device_offline; a revoked device 409 device_revoked;
#   - device.diagnostics audit records with device id, outcome and rtt_ms,
#     no report in them, and GET /v1/audit/verify says the chain is whole;
#   - no PIN anywhere: qesd's and the agent's logs, every HTTP answer, the
#     database.
. "$(dirname -- "$0")/../lib.sh"

T=$(qes_tmpdir)
. "$QES_SOURCE_DIR/tests/qesd.sh"
qesd_need curl openssl python3 sqlite3
qes_private_tokens "$T/tokens"
TIMEOUT_S=4

# ---------------------------------------------------------------------------
# qesd with a localhost certificate from the test PKI; two tenants.
qesd_tls_files "$T" "qesd diagnostics"
qesd_base_conf "$T/qesd.conf" "$T" 127.0.0.1:0
cat >>"$T/qesd.conf" <<EOF
agent_ping_interval_s = 5
agent_dead_after_s = 30
diagnostics_timeout_s = $TIMEOUT_S
EOF
qesd_conf "$T/qesd.conf"

tenant() { # NAME -> "TENANT_ID ADMIN_KEY"
    "$QESD" admin --config "$T/qesd.conf" tenant create "$1" >"$T/$1.out" 2>"$T/$1.err" ||
        { cat "$T/$1.err" >&2; fail "tenant create $1"; }
    echo "$(awk '$1 == "tenant_id:" { print $2 }' "$T/$1.out") $(awk '$1 == "api_key:" { print $2 }' "$T/$1.out")"
}
read -r TENANT A_ADMIN <<<"$(tenant diag-co)"
read -r OTHER B_ADMIN <<<"$(tenant other-co)"
start_qesd "$T/qesd.conf" "$T/qesd.log"
SERVER=https://localhost:$PORT

newkey() { # ADMIN-KEY NAME SCOPES -> the key
    printf '%s\n' "$1" >"$T/admin.key"
    chmod 600 "$T/admin.key"
    QES_SERVER=$SERVER QES_CA=$CA "$QES_CLI" keys create --name "$2" --scope "$3" \
        --key-file "$T/admin.key" >"$T/key-$2.out" 2>"$T/key-$2.err" ||
        { cat "$T/key-$2.err" >&2; fail "keys create $2"; }
    awk '$1 == "api_key:" { print $2 }' "$T/key-$2.out"
}
KEY=$(newkey "$A_ADMIN" diag devices,diagnostics,audit)
NODIAG=$(newkey "$A_ADMIN" nodiag sign,devices,audit)
B_KEY=$(newkey "$B_ADMIN" other devices,diagnostics)
[ -n "$KEY" ] && [ -n "$NODIAG" ] && [ -n "$B_KEY" ] || fail "API keys"
# bg_diag NAME: POST diagnostics in the background ($BG), the answer in
# $T/resp/NAME.body; problem_is NAME STATUS TYPE checks it
bg_diag() {
    mkdir -p "$T/resp"
    curl -sS --cacert "$CA" -X POST -H "Authorization: Bearer $KEY" -H 'Content-Length: 0' \
        -o "$T/resp/$1.body" "https://localhost:$PORT/v1/devices/$DEVICE/diagnostics" &
    BG=$!
}
problem_is() {
    python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); assert (p["status"], p["type"]) == (int(sys.argv[2]), "urn:qes:problem:" + sys.argv[3]), p' \
        "$T/resp/$1.body" "$2" "$3" || fail "$1: $(cat "$T/resp/$1.body")"
}

# ---------------------------------------------------------------------------
# Enroll and run the agent.
call "$KEY" POST /v1/enrollments '{"name":"diag desktop"}'
expect_eq "$CODE" 201 "POST /v1/enrollments"
ECODE=$(jget 'v["code"]')
CFG=$T/agent
enroll_agent "$SERVER" "$ECODE" "$CFG"

AGENT_PID=
run_agent() { # start_agent (tests/qesd.sh), then wait until the device is live
    local i
    start_agent "$CFG" /bin/false
    # live once GET /v1/devices/{id} says so
    for i in $(seq 1 200); do
        call "$KEY" GET "/v1/devices/$DEVICE"
        [ "$CODE" = 200 ] && [ "$(jget 'v["live"]')" = True ] && return 0
        sleep 0.1
    done
    tail -n 20 "$T/agent.log" >&2
    fail "the agent did not connect"
}
wait_offline() {
    local i
    for i in $(seq 1 200); do
        call "$KEY" GET "/v1/devices/$DEVICE"
        [ "$CODE" = 200 ] && [ "$(jget 'v["live"]')" = False ] && return 0
        sleep 0.1
    done
    fail "the device stays live"
}
run_agent
ok "tenant $TENANT, device $DEVICE enrolled, qes-agent connected"

# ---------------------------------------------------------------------------
# The report, compared with qes-agent diagnose --json on the same tokens.
START=$(date +%s%N)
call "$KEY" POST "/v1/devices/$DEVICE/diagnostics"
ELAPSED_MS=$(( ($(date +%s%N) - START) / 1000000 ))
expect_eq "$CODE" 200 "POST /v1/devices/{id}/diagnostics"
cp "$BODY" "$T/diag.json"
"$QES_AGENT" diagnose --json --module "$QES_TEST_MODULE" --only-module >"$T/local.json" 2>"$T/local.err" ||
    { cat "$T/local.err" >&2; fail "qes-agent diagnose --json"; }
python3 - "$T/diag.json" "$T/local.json" "$DEVICE" "$ELAPSED_MS" "$QES_TOKEN_A_SERIAL" "$QES_TOKEN_B_SERIAL" <<'EOF' ||
import json, sys
got, local = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
device, elapsed_ms, serials = sys.argv[3], int(sys.argv[4]), sys.argv[5:]
assert got["device_id"] == device, got["device_id"]
assert got["session_id"].startswith("ses_"), got["session_id"]
assert set(got) == {"device_id", "session_id", "rtt_ms", "agent_timings", "report"}, sorted(got)
rep = got["report"]

def strip(doc):
    # the DER may or may not ride along (5.8); the rest must be equal
    for t in doc["tokens"]:
        for c in t.get("certificates", []):
            c.pop("certificate", None)
    return doc

rep, local = strip(rep), strip(local)
assert rep["modules"] == local["modules"], "modules differ"
by_serial = lambda d: {t.get("serial", ""): t for t in d["tokens"]}
g, l = by_serial(rep), by_serial(local)
assert sorted(g) == sorted(l), (sorted(g), sorted(l))
for s in serials:
    assert s in g, "token %s missing" % s
    assert g[s]["verdict"] == "ready", g[s]["verdict"]
for s in g:
    for k in ("label", "flags", "verdict", "verdict_text", "certificates", "mechanisms"):
        assert g[s].get(k) == l[s].get(k), "token %r: %s differs" % (s, k)
assert rep["tokens"] == local["tokens"], "tokens differ"
sys_g, sys_l = dict(rep["system"]), dict(local["system"])
sys_g.pop("time"); sys_l.pop("time")
assert sys_g == sys_l, (sys_g, sys_l)
rtt, tim = got["rtt_ms"], got["agent_timings"]
assert isinstance(rtt, int) and rtt >= 0
assert 0 <= tim["scan_ms"] <= tim["total_ms"], tim
assert tim["total_ms"] <= rtt, (tim, rtt)
assert rtt <= elapsed_ms, (rtt, elapsed_ms)
print("rtt_ms=%d agent scan_ms=%d total_ms=%d request %d ms; %d tokens" %
      (rtt, tim["scan_ms"], tim["total_ms"], elapsed_ms, len(rep["tokens"])))
EOF
    fail "the report differs from qes-agent diagnose --json (see above)"
ok "the report is what qes-agent diagnose --json shows (modules, tokens with serials, flags, verdicts, certificates; system); $(python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print("rtt_ms=%d, agent total_ms=%d" % (v["rtt_ms"], v["agent_timings"]["total_ms"]))' "$T/diag.json")"

# ---------------------------------------------------------------------------
# Scope and tenancy.
call "$NODIAG" POST "/v1/devices/$DEVICE/diagnostics"
expect_problem 403 insufficient_scope
call "$B_KEY" POST "/v1/devices/$DEVICE/diagnostics"
expect_problem 404 not_found
call "$KEY" POST "/v1/devices/dev_00000000000000000000000000/diagnostics"
expect_problem 404 not_found
call "$KEY" GET "/v1/devices/$DEVICE/diagnostics"
expect_eq "$CODE" 405 "GET on the diagnostics route"
call "$KEY" POST "/v1/devices/$DEVICE/diagnostics" '{"x":1}'
expect_problem 415 unsupported_media_type
ok "a key without diagnostics: 403; another tenant's device and an unknown id: 404; no body taken"

# ---------------------------------------------------------------------------
# An agent that does not answer: 504 at the timeout; meanwhile a second
# request is refused (one at a time); then the agent, woken up with two
# diagnose messages waiting, refuses the second itself (device_busy).
kill -STOP "$AGENT_PID"
START=$(date +%s%N)
bg_diag first
FIRST=$BG
sleep 0.5
call "$KEY" POST "/v1/devices/$DEVICE/diagnostics"
expect_problem 409 diagnostics_in_progress
grep -qi '^retry-after: ' "$HDR" || fail "diagnostics_in_progress without Retry-After"
wait "$FIRST"
ELAPSED_MS=$(( ($(date +%s%N) - START) / 1000000 ))
problem_is first 504 diagnostics_timeout
[ "$ELAPSED_MS" -ge $((TIMEOUT_S * 1000 - 100)) ] && [ "$ELAPSED_MS" -lt $((TIMEOUT_S * 1000 + 3000)) ] ||
    fail "the timeout came after $ELAPSED_MS ms, configured ${TIMEOUT_S} s"
bg_diag busy
BUSY=$BG
sleep 0.5
kill -CONT "$AGENT_PID"
wait "$BUSY"
problem_is busy 409 device_busy
ok "a stopped agent: 504 diagnostics_timeout after $ELAPSED_MS ms; a second request while one waits: 409 diagnostics_in_progress; the agent refusing a second diagnosis: 409 device_busy"
# the late answer to the first is dropped; the agent is usable again
for i in $(seq 1 50); do
    call "$KEY" POST "/v1/devices/$DEVICE/diagnostics"
    [ "$CODE" != 409 ] && break
    sleep 0.2
done
expect_eq "$CODE" 200 "diagnostics once the agent is idle again"
grep -q '"msg":"diagnose_result nobody waits for' "$T/qesd.log" ||
    fail "the late diagnose_result was not seen as late"

# ---------------------------------------------------------------------------
# The session dies while qesd waits: an answer at once, not at the timeout.
kill -STOP "$AGENT_PID"
START=$(date +%s%N)
bg_diag dying
DYING=$BG
sleep 0.5
kill -KILL "$AGENT_PID"
wait "$DYING"
ELAPSED_MS=$(( ($(date +%s%N) - START) / 1000000 ))
problem_is dying 502 device_disconnected
[ "$ELAPSED_MS" -lt $((TIMEOUT_S * 1000 - 500)) ] ||
    fail "device_disconnected came only after $ELAPSED_MS ms"
wait_offline
call "$KEY" POST "/v1/devices/$DEVICE/diagnostics"
expect_problem 409 device_offline
ok "the session closed while waiting: 502 device_disconnected after $ELAPSED_MS ms; no session: 409 device_offline"

# ---------------------------------------------------------------------------
# Revoked.
run_agent
call "$KEY" DELETE "/v1/devices/$DEVICE"
expect_eq "$CODE" 204 "DELETE /v1/devices/{id}"
call "$KEY" POST "/v1/devices/$DEVICE/diagnostics"
expect_problem 409 device_revoked
ok "a revoked device: 409 device_revoked"

# ---------------------------------------------------------------------------
# Audit: one device.diagnostics record per request about the device, small,
# and the chain verifies.
call "$KEY" GET "/v1/audit?type=device.diagnostics&device=$DEVICE&limit=100"
expect_eq "$CODE" 200 "GET /v1/audit?type=device.diagnostics"
python3 - "$BODY" "$DEVICE" <<'EOF' || fail "device.diagnostics records (see above)"
import json, sys
page, device = json.load(open(sys.argv[1])), sys.argv[2]
recs = page["records"]
outcomes = []
for r in recs:
    d = r["details"]
    if isinstance(d, str):
        d = json.loads(d)
    assert r["device_id"] == device and d["device_id"] == device, r
    assert "report" not in d and len(json.dumps(d)) < 400, d
    if d["outcome"] == "ok":
        assert isinstance(d["rtt_ms"], int) and d["rtt_ms"] >= 0, d
        assert r["status"] == 200, r
    outcomes.append(d["outcome"])
want = ["ok", "in_progress", "timeout", "device_busy", "ok", "session_closed",
        "device_offline", "device_revoked"]
for w in want:
    assert w in outcomes, (w, outcomes)
assert outcomes.count("ok") >= 2, outcomes
print(" ".join(outcomes))
EOF
call "$KEY" GET /v1/audit/verify
expect_eq "$CODE" 200 "GET /v1/audit/verify"
expect_eq "$(jget 'v["ok"]')" True "the audit chain verifies"
call "$KEY" GET "/v1/audit?type=api.request&limit=100"
python3 -c '
import json, sys
for r in json.load(open(sys.argv[1]))["records"]:
    assert r.get("route") != "devices.diagnostics" or r.get("status") in (403, 404, 405, 415), r
' "$BODY" || fail "a diagnostics request about a device was recorded as api.request too"
ok "device.diagnostics records (device id, outcome, rtt_ms; no report); the chain verifies"

# ---------------------------------------------------------------------------
# No PIN anywhere.
stop_qesd 10
for pin in "$QES_TOKEN_A_PIN" "$QES_TOKEN_B_PIN" "$QES_TOKEN_LOCKED_PIN" \
    "$QES_TOKEN_A_SO_PIN" "$QES_TOKEN_B_SO_PIN"; do
    # -w: a PIN is a word of digits, not a run inside a hash or an id
    grep -rqwF -- "$pin" "$T/qesd.log" "$T/agent.log" "$T/resp" "$T/diag.json" &&
        fail "a PIN is in a log or an HTTP answer"
    db_dump "$T/qesd.db" | grep -qwF -- "$pin" && fail "a PIN is in the database"
done
ok "no PIN in qesd's or the agent's log, any HTTP answer or the database"
