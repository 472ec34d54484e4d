#!/usr/bin/env bash
# qesd_jobs.sh - signature jobs through the real qesd on 127.0.0.1 with real
# TLS, everything that needs no desktop agent (the end-to-end run with
# qes-agent and SoftHSM2 is its own test):
#   - a credential of a device that is not connected: 409 device_offline; of
#     a revoked device: 409 device_revoked; GET /v1/credentials lists the
#     tenant's credentials on connected devices only, with the certificate
#     and its schemes (device rows written into the database as the devices
#     service would, since no agent runs here);
#   - POST /v1/signatures body validation, one problem per mistake (unknown,
#     missing and invalid fields, digests of the wrong length or not
#     canonical base64, text a signer's dialog would refuse, bad
#     Idempotency-Key), and 404 credential_not_found for unknown or
#     malformed credential ids;
#   - jobs written into the database as a dispatched job would be: GET, a
#     foreign tenant's 404, Idempotency-Key replay (200, the same job; the
#     hash is recomputed here from its documented definition) and conflict
#     (409), long-poll woken by a cancel, long-poll timing out, cancel of a
#     final job (409), unknown job 404;
#   - the sweeper fails a job past expires_at (timeout) with the testing
#     clock; a restart fails the jobs left open (gateway_restart); retention
#     turns an old completed job into expired and drops its signatures;
#   - the audit trail has each transition.
# Each server run ends with SIGTERM and must exit 0.
. "$(dirname -- "$0")/../lib.sh"

T=$(qes_tmpdir)
QESD=$QES_BUILD_DIR/qesd
CA=$QES_PKI/root-ca.pem
. "$(dirname -- "$0")/../qesd.sh"
[ -x "$QESD" ] || fail "no qesd binary at $QESD"
for tool in curl openssl python3; do
    command -v "$tool" >/dev/null || fail "$tool is needed"
done
[ -f "$QES_PKI/root-ca.key" ] || fail "no test PKI in $QES_PKI (run tests/setup-testenv.sh)"

qesd_tls_files "$T"
echo 0 > "$T/clock"
OFFSET_MS=0
DB=$T/qesd.db
mkdir -p "$T/resp"
N=0

cat > "$T/qesd.conf" <<EOF
# qesd_jobs.sh
listen = 127.0.0.1:0
tls_cert = $T/server.pem
tls_key = $T/server.key
pepper_file = $T/pepper
store = sqlite:$DB
insecure_testing_clock_file = $T/clock
workers = 2
drain_timeout_s = 10
rate_ip_per_s = 1000
rate_ip_burst = 10000
rate_key_per_s = 1000
rate_key_burst = 10000
job_result_retention_s = 60
EOF
qesd_conf "$T/qesd.conf"









# create_key ADMIN NAME SCOPES-JSON: sets KEY.
create_key() {
    check 201 "creating key $2" "$1" POST /v1/api-keys "{\"name\":\"$2\",\"scopes\":$3}"
    KEY=$(jfield "$BODY" key)
}

# jobdb ...: the job helper below (python: ids, the idempotency hash, rows).
# The rows are SQL statements written to descriptor 3 with literal values, run
# by the shell through db_query (either backend).
cat > "$T/jobdb.py" <<'EOF'
import base64, hashlib, json, os, secrets, struct, sys, time

def lit(v):
    """v as an SQL literal of the test's backend (tests/qesd.sh db_blob)."""
    if v is None:
        return "NULL"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        if os.environ.get("QES_TEST_BACKEND") == "pgnats":
            return "'\\x%s'::bytea" % v.hex()
        return "X'%s'" % v.hex()
    return "'" + str(v).replace("'", "''") + "'"

def sql(stmt, args=()):
    """Write stmt, each ? replaced by the next of args, to descriptor 3."""
    parts = stmt.split("?")
    assert len(parts) == len(args) + 1, stmt
    out = parts[0] + "".join(lit(a) + p for a, p in zip(args, parts[1:]))
    with os.fdopen(3, "a", closefd=False) as f:
        f.write(out + ";\n")

B32 = "abcdefghijklmnopqrstuvwxyz234567"

def new_id(prefix):
    # 26 base32 characters of 128 bits: the last one carries 3 zero bits
    return prefix + "_" + "".join(secrets.choice(B32) for _ in range(25)) + \
        secrets.choice("aeimquy4")

def lp(b):
    return struct.pack(">I", len(b)) + b

def request_hash(body):
    """The idempotency hash of jobs.h, from a request body (defaults applied)."""
    h = hashlib.sha256()
    h.update(lp(b"qesd.v1-signature-request"))
    h.update(lp(body["credential_id"].encode()))
    h.update(lp(body["digest_algorithm"].encode()))
    h.update(lp(body.get("signature_scheme", "").encode()))
    digests = [base64.b64decode(d, validate=True) for d in body["digests"]]
    h.update(struct.pack(">I", len(digests)))
    for d in digests:
        h.update(lp(d))
    h.update(lp(body["title"].encode()))
    h.update(lp(body.get("description", "").encode()))
    h.update(lp(body.get("application", "").encode()))
    h.update(struct.pack(">Q", body.get("timeout_seconds", 300)))
    return h.digest()

def vcode(md, digests):
    h = hashlib.sha256()
    h.update(lp(b"qes.v1-verification-code") + lp(md.encode()))
    h.update(struct.pack(">I", len(digests)))
    for d in digests:
        h.update(lp(d))
    return "%04d" % (struct.unpack(">Q", h.digest()[:8])[0] % 10000)

def insert(db, tenant, state, body, idem=None, now_ms=None, expires_in_s=300,
           result=None):
    """A job row as qesd would have left it; prints its id."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    digests = [base64.b64decode(d) for d in body["digests"]]
    request = {
        "v": 1, "digest_algorithm": body["digest_algorithm"],
        "signature_scheme": body.get("signature_scheme", "ecdsa"),
        "digests": body["digests"], "title": body["title"],
        "description": body.get("description", ""),
        "application": body.get("application", "test"),
        "timeout_seconds": body.get("timeout_seconds", 300),
        "credential": "TOKEN0001:0a0b", "certificate": "AAAA",
    }
    jid = new_id("job")
    sql(
        "INSERT INTO jobs (id, tenant_id, state, reason, credential_id, "
        "device_id, session_id, key_id, request, result, verification_code, "
        "idempotency_key, request_hash, created_at_ms, updated_at_ms, "
        "expires_at_ms, version) VALUES (?, ?, ?, NULL, ?, NULL, ?, NULL, ?, "
        "?, ?, ?, ?, ?, ?, ?, 2)",
        (jid, tenant, state, body["credential_id"], new_id("ses"),
         json.dumps(request), result, vcode(body["digest_algorithm"], digests),
         idem, request_hash(body) if idem else None, now_ms, now_ms,
         now_ms + expires_in_s * 1000))
    print(jid)

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "id":
        print(new_id(sys.argv[2]))
    elif cmd == "vcode":
        body = json.load(open(sys.argv[2]))
        print(vcode(body["digest_algorithm"],
                    [base64.b64decode(d) for d in body["digests"]]))
    elif cmd == "insert":
        # insert DB TENANT STATE BODY-FILE [IDEM|-] [NOW-MS|-] [EXPIRES-IN-S] [RESULT]
        a = sys.argv[2:] + [None] * 8
        insert(a[0], a[1], a[2], json.load(open(a[3])),
               idem=None if a[4] in (None, "-") else a[4],
               now_ms=None if a[5] in (None, "-") else int(a[5]),
               expires_in_s=int(a[6]) if a[6] else 300, result=a[7])
    elif cmd == "device":
        # device DB TENANT CERT-DER-FILE: a device with one credential; prints
        # "DEVICE-ID CREDENTIAL-ID"
        db, tenant, der = sys.argv[2], sys.argv[3], open(sys.argv[4], "rb").read()
        dev, crd, now = new_id("dev"), new_id("crd"), int(time.time() * 1000)
        sql("INSERT INTO devices (id, tenant_id, name, public_key, "
            "enrolled_at_ms) VALUES (?, ?, 'laptop', ?, ?)",
            (dev, tenant, b"\0", now))
        sql(
            "INSERT INTO device_credentials (tenant_id, id, device_id, serial, "
            "key_id_hex, label, token_label, subject, subject_cn, issuer, "
            "cert_serial, class, not_before_ms, not_after_ms, key_type, "
            "key_bits, curve, key_usage, qc, has_private_key, "
            "always_authenticate, cert_sha256, cert_der, updated_at_ms) "
            "VALUES (?, ?, ?, 'TOKEN0001', '02', 'sign key', 'token A', "
            "'CN=Test Signer', 'Test Signer', 'CN=qes Test CA', '01', "
            "'qualified', ?, ?, 2, 256, 'P-256', 64, 7, 1, 0, ?, ?, ?)",
            (tenant, crd, dev, now - 86400000, now + 86400000 * 365,
             hashlib.sha256(der).hexdigest(), der, now))
        print(dev, crd)
    elif cmd == "session":
        # session DB TENANT DEVICE: an open session row
        now = int(time.time() * 1000)
        sql("INSERT INTO device_sessions (id, tenant_id, device_id, "
                  "replica_id, connected_at_ms, last_seen_at_ms) VALUES "
                  "(?, ?, ?, 'test', ?, ?)",
                  (new_id("ses"), sys.argv[3], sys.argv[4], now, now))
    elif cmd == "revoke":
        sql("UPDATE devices SET revoked_at_ms = ? WHERE id = ?",
            (int(time.time() * 1000), sys.argv[3]))
EOF
# jobdb id PREFIX | vcode BODY | insert DB ... | device DB ... | session DB ...
#   | revoke DB DEVICE | state DB JOB ("STATE REASON HAS-RESULT")
jobdb() {
    case $1 in
    id | vcode) python3 "$T/jobdb.py" "$@" ;;
    state)
        db_value "$2" "SELECT state, coalesce(reason, ''), CASE WHEN result IS NULL THEN 0 ELSE 1 END FROM jobs WHERE id = ?" \
            "$3" | tr '|' ' ' ;;
    *)
        # what it prints comes after the rows are in (a reader goes on then)
        local sqlf out
        sqlf=$(mktemp "$T/jobdb.XXXXXX")
        out=$(python3 "$T/jobdb.py" "$@" 3>"$sqlf") || fail "jobdb $1"
        db_query "$2" "$(cat "$sqlf")" >/dev/null || fail "jobdb $1: SQL failed"
        rm -f "$sqlf"
        [ -z "$out" ] || printf '%s\n' "$out" ;;
    esac
}
# now_ms [DELTA-MS]: qesd's clock (wall time plus the test offset) in ms
now_ms() { python3 -c 'import sys, time; print(int(time.time() * 1000) + int(sys.argv[1]) + int(sys.argv[2]))' "$OFFSET_MS" "${1:-0}"; }

# ---------------------------------------------------------------------------
admin_tenant A
A_ADMIN=$ADMIN_KEY
A_TENANT=$TENANT_ID
admin_tenant B
B_ADMIN=$ADMIN_KEY
start_qesd "$T/qesd.conf" "$T/qesd.log" QESD_INSECURE_TESTING=1
ok "qesd started on 127.0.0.1:$PORT"
create_key "$A_ADMIN" signer '["sign"]'
A_SIGN=$KEY
create_key "$A_ADMIN" auditor '["audit"]'
A_AUDIT=$KEY
create_key "$B_ADMIN" signer '["sign"]'
B_SIGN=$KEY

CRED=$(jobdb id crd)
D1=$(python3 -c 'import base64, hashlib; print(base64.b64encode(hashlib.sha256(b"doc 1").digest()).decode())')
D2=$(python3 -c 'import base64, hashlib; print(base64.b64encode(hashlib.sha256(b"doc 2").digest()).decode())')
D31=$(python3 -c 'import base64; print(base64.b64encode(bytes(31)).decode())')
D384=$(python3 -c 'import base64, hashlib; print(base64.b64encode(hashlib.sha384(b"doc").digest()).decode())')
D1URL=$(printf '%s' "$D1" | tr '+/' '-_' | tr -d '=')
body() {   # body [TITLE] [EXTRA-MEMBERS]: a valid request for $CRED
    printf '{"credential_id":"%s","digest_algorithm":"sha256","digests":["%s","%s"],"title":"%s"%s}' \
        "$CRED" "$D1" "$D2" "${1:-Contract 17}" "${2-}"
}

# ---------------------------------------------------------------------------
# Body validation: each mistake its own answer, naming the field.
bad() {    # bad PROBLEM FIELD WHAT BODY
    check 400 "$3" "$A_SIGN" POST /v1/signatures "$4"
    expect_problem 400 "$1"
    [ "$2" = - ] || expect_eq "$(jfield "$BODY" field)" "$2" "field of: $3"
}
bad unknown_field pin "an unknown member" "$(body x ',"pin":"1234"')"
bad missing_field title "no title" "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"digests\":[\"$D1\"]}"
bad missing_field digests "no digests" "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"title\":\"t\"}"
bad invalid_field digest_algorithm "md5" "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"md5\",\"digests\":[\"$D1\"],\"title\":\"t\"}"
bad invalid_field digests "no digest at all" "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"digests\":[],\"title\":\"t\"}"
bad invalid_field "digests[1]" "31 bytes for sha256" "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"digests\":[\"$D1\",\"$D31\"],\"title\":\"t\"}"
bad invalid_field "digests[0]" "a sha384 digest for sha256" "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"digests\":[\"$D384\"],\"title\":\"t\"}"
bad invalid_field "digests[0]" "base64url" "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"digests\":[\"$D1URL\"],\"title\":\"t\"}"
bad invalid_field "digests[0]" "not base64" "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"digests\":[\"%%%%\"],\"title\":\"t\"}"
bad invalid_field "digests[0]" "a digest that is not a string" "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"digests\":[42],\"title\":\"t\"}"
python3 -c 'import json,sys; print(json.dumps({"credential_id": sys.argv[1], "digest_algorithm": "sha256", "digests": [sys.argv[2]] * 1001, "title": "t"}))' \
    "$CRED" "$D1" > "$T/many.json"
bad invalid_field digests "1001 digests" "$(cat "$T/many.json")"
bad invalid_field title "a control character in the title" "$(body 'bell\u0007')"
bad invalid_field title "a bidi override in the title" "$(body 'abc\u202edcba')"
bad invalid_field title "a line feed in the title" "$(body 'two\nlines')"
bad invalid_field title "an empty title" "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"digests\":[\"$D1\"],\"title\":\"\"}"
bad invalid_field application "a control character in the application" "$(body x ',"application":"a\u001bb"')"
LONG=$(python3 -c 'print("x" * 2049)')
bad invalid_field description "a description of 2049 bytes" "$(body x ",\"description\":\"$LONG\"")"
bad invalid_field timeout_seconds "timeout 29" "$(body x ',"timeout_seconds":29')"
bad invalid_field timeout_seconds "timeout 3601" "$(body x ',"timeout_seconds":3601')"
bad invalid_field signature_scheme "scheme dsa" "$(body x ',"signature_scheme":"dsa"')"
bad invalid_json - "not JSON" '{"credential_id":'
check 415 "text/plain" "$A_SIGN" POST /v1/signatures "$(body)" -H "Content-Type: text/plain"
check 400 "a non-ASCII Idempotency-Key" "$A_SIGN" POST /v1/signatures "$(body)" \
    -H "Idempotency-Key: clé"
expect_problem 400 invalid_idempotency_key
check 431 "an Idempotency-Key of 256 bytes" "$A_SIGN" POST /v1/signatures "$(body)" \
    -H "Idempotency-Key: $(python3 -c 'print("k" * 256)')"
ok "POST /v1/signatures: 400 with the field for each malformed body, 415, bad Idempotency-Key"

# A description may have line feeds; then the credential is what is missing.
check 404 "an unknown credential" "$A_SIGN" POST /v1/signatures "$(body x ',"description":"line 1\nline 2","application":"Portal","timeout_seconds":30,"signature_scheme":"ecdsa"')"
expect_problem 404 credential_not_found
check 404 "a malformed credential id" "$A_SIGN" POST /v1/signatures \
    "{\"credential_id\":\"crd_nope\",\"digest_algorithm\":\"sha256\",\"digests\":[\"$D1\"],\"title\":\"t\"}"
expect_problem 404 credential_not_found
check 403 "an audit-only key" "$A_AUDIT" POST /v1/signatures "$(body)"
expect_problem 403 insufficient_scope
ok "404 credential_not_found for unknown and malformed credential ids; scope sign required"

# A credential whose device is not connected here, then revoked.
openssl x509 -in "$QES_PKI/qual-p256.pem" -outform DER -out "$T/cert.der"
read -r DEV1 CRED1 < <(jobdb device "$DB" "$A_TENANT" "$T/cert.der")
CREDBODY="{\"credential_id\":\"$CRED1\",\"digest_algorithm\":\"sha256\",\"digests\":[\"$D1\"],\"title\":\"t\"}"
check 409 "a device without a session" "$A_SIGN" POST /v1/signatures "$CREDBODY"
expect_problem 409 device_offline
check 404 "another tenant's credential" "$B_SIGN" POST /v1/signatures "$CREDBODY"
expect_problem 404 credential_not_found
check 200 "credentials without a connected device" "$A_SIGN" GET /v1/credentials
expect_eq "$(jfield "$BODY" items)" "[]" "credentials of a tenant without connected devices"
jobdb session "$DB" "$A_TENANT" "$DEV1"
check 200 "credentials of a connected device" "$A_SIGN" GET /v1/credentials
python3 - "$BODY" "$CRED1" "$DEV1" "$T/cert.der" <<'EOF' || fail "GET /v1/credentials: unexpected list"
import base64, json, sys
items = json.load(open(sys.argv[1]))["items"]
assert len(items) == 1, items
c = items[0]
assert c["id"] == sys.argv[2] and c["device_id"] == sys.argv[3], c
assert c["token_serial"] == "TOKEN0001" and c["key_id"] == "02", c
assert base64.b64decode(c["certificate"]) == open(sys.argv[4], "rb").read()
assert c["signature_schemes"] == ["ecdsa"], c["signature_schemes"]
assert c["key_type"] == "EC" and c["classification"] == "qualified", c
EOF
check 200 "another tenant's credentials" "$B_SIGN" GET /v1/credentials
expect_eq "$(jfield "$BODY" items)" "[]" "B's credentials"
check 400 "credentials with an unknown parameter" "$A_SIGN" GET "/v1/credentials?device=x"
expect_problem 400 invalid_query
jobdb revoke "$DB" "$DEV1"
check 409 "a revoked device" "$A_SIGN" POST /v1/signatures "$CREDBODY"
expect_problem 409 device_revoked
check 200 "credentials of a revoked device" "$A_SIGN" GET /v1/credentials
expect_eq "$(jfield "$BODY" items)" "[]" "credentials of a revoked device"
ok "409 device_offline (no session here), 409 device_revoked; GET /v1/credentials: connected devices only, with certificate and schemes, per tenant"

# Unknown jobs.
UNKNOWN=$(jobdb id job)
check 404 "GET an unknown job" "$A_SIGN" GET "/v1/signatures/$UNKNOWN"
expect_problem 404 not_found
check 404 "cancel an unknown job" "$A_SIGN" POST "/v1/signatures/$UNKNOWN/cancel"
expect_problem 404 not_found
check 404 "a malformed job id" "$A_SIGN" GET "/v1/signatures/job_x"
ok "unknown jobs: 404 not_found on GET and cancel"

# ---------------------------------------------------------------------------
# A job as a dispatch leaves it (the device side is not in this test).
body "Loan 2024-117" > "$T/body1.json"
J1=$(jobdb insert "$DB" "$A_TENANT" dispatched "$T/body1.json" order-1)
VCODE=$(jobdb vcode "$T/body1.json")
check 200 "GET the job" "$A_SIGN" GET "/v1/signatures/$J1"
expect_eq "$(jfield "$BODY" id)" "$J1" "job id"
expect_eq "$(jfield "$BODY" state)" dispatched "state"
expect_eq "$(jfield "$BODY" verification_code)" "$VCODE" "verification code"
expect_eq "$(jfield "$BODY" credential_id)" "$CRED" "credential id"
expect_eq "$(jfield "$BODY" title)" "Loan 2024-117" "title"
expect_eq "$(jfield "$BODY" reason)" "" "reason of a live job"
check 404 "another tenant's job" "$B_SIGN" GET "/v1/signatures/$J1"
expect_problem 404 not_found
check 404 "cancel another tenant's job" "$B_SIGN" POST "/v1/signatures/$J1/cancel"
ok "GET /v1/signatures/{id}: the job, 404 for another tenant (GET and cancel)"

# Idempotency-Key: the same body (spelled differently) is the same job.
SAME=$(python3 -c 'import json,sys; b = json.load(open(sys.argv[1])); print(json.dumps(dict(reversed(list(b.items()))), indent=1))' "$T/body1.json")
check 200 "a replay" "$A_SIGN" POST /v1/signatures "$SAME" -H "Idempotency-Key: order-1"
expect_eq "$(jfield "$BODY" id)" "$J1" "the replayed job"
grep -qi '^idempotent-replayed: true' "$HDR" || fail "no Idempotent-Replayed header"
check 200 "a replay with the default timeout spelled out" "$A_SIGN" POST /v1/signatures \
    "$(body "Loan 2024-117" ',"timeout_seconds":300')" -H "Idempotency-Key: order-1"
expect_eq "$(jfield "$BODY" id)" "$J1" "the replayed job"
check 409 "the key with another body" "$A_SIGN" POST /v1/signatures "$(body "Loan 2024-118")" \
    -H "Idempotency-Key: order-1"
expect_problem 409 idempotency_conflict
check 409 "the key with another timeout" "$A_SIGN" POST /v1/signatures \
    "$(body "Loan 2024-117" ',"timeout_seconds":301')" -H "Idempotency-Key: order-1"
expect_problem 409 idempotency_conflict
check 404 "the same key in another tenant" "$B_SIGN" POST /v1/signatures "$(cat "$T/body1.json")" \
    -H "Idempotency-Key: order-1"
expect_problem 404 credential_not_found
ok "Idempotency-Key: same body -> 200 with the same job; another body -> 409 idempotency_conflict; per tenant"

# Long-poll woken by a cancel.
check 400 "wait 61" "$A_SIGN" GET "/v1/signatures/$J1?wait=61"
expect_problem 400 invalid_query
check 400 "an unknown query parameter" "$A_SIGN" GET "/v1/signatures/$J1?state=x"
expect_problem 400 invalid_query
start=$(date +%s%N)
curl -sS --cacert "$CA" -H "Authorization: Bearer $A_SIGN" -o "$T/poll.json" \
    -w '%{http_code}' "https://localhost:$PORT/v1/signatures/$J1?wait=20" > "$T/poll.code" &
POLL=$!
sleep 1
check 200 "cancel" "$A_SIGN" POST "/v1/signatures/$J1/cancel"
expect_eq "$(jfield "$BODY" state)" cancelled "state after cancel"
wait "$POLL" || fail "the long-poll failed"
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
expect_eq "$(cat "$T/poll.code")" 200 "long-poll status"
expect_eq "$(jfield "$T/poll.json" state)" cancelled "state the long-poll saw"
[ "$elapsed" -lt 10000 ] || fail "the long-poll took ${elapsed} ms: the cancel did not wake it"
check 409 "cancel again" "$A_SIGN" POST "/v1/signatures/$J1/cancel"
expect_problem 409 job_final
start=$(date +%s%N)
check 200 "wait on a final job" "$A_SIGN" GET "/v1/signatures/$J1?wait=30"
[ $(( ($(date +%s%N) - start) / 1000000 )) -lt 5000 ] || fail "waiting on a final job did not answer at once"
ok "long-poll woken by the cancel after ${elapsed} ms; a final job answers at once; cancel again -> 409 job_final"

# A long-poll that nothing wakes answers at its deadline.
body "Long poll" > "$T/body2.json"
J2=$(jobdb insert "$DB" "$A_TENANT" dispatched "$T/body2.json" - - 3600)
start=$(date +%s%N)
check 200 "a wait that times out" "$A_SIGN" GET "/v1/signatures/$J2?wait=2"
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
expect_eq "$(jfield "$BODY" state)" dispatched "state after the wait"
[ "$elapsed" -ge 1800 ] && [ "$elapsed" -lt 6000 ] || fail "wait=2 answered after ${elapsed} ms"
ok "a long-poll without a change answers after its wait (${elapsed} ms)"

# ---------------------------------------------------------------------------
# The sweeper: past expires_at -> failed: timeout (time moved, not slept).
body "Expiring" > "$T/body3.json"
J3=$(jobdb insert "$DB" "$A_TENANT" dispatched "$T/body3.json" - "$(now_ms)" 60)
advance_clock 61000
for i in $(seq 1 50); do
    [ "$(jobdb state "$DB" "$J3")" = "failed timeout 0" ] && break
    sleep 0.1
done
expect_eq "$(jobdb state "$DB" "$J3")" "failed timeout 0" "state of the expired job"
check 200 "GET the expired job" "$A_SIGN" GET "/v1/signatures/$J3"
expect_eq "$(jfield "$BODY" state)" failed "state"
expect_eq "$(jfield "$BODY" reason)" timeout "reason"
ok "the sweeper fails a job past expires_at with reason timeout"

# ---------------------------------------------------------------------------
# A restart: the open job fails with gateway_restart; an old completed job
# loses its signatures (retention 60 s here).
body "Open at restart" > "$T/body4.json"
J4=$(jobdb insert "$DB" "$A_TENANT" dispatched "$T/body4.json" - - 3600)
body "Done long ago" > "$T/body5.json"
J5=$(jobdb insert "$DB" "$A_TENANT" completed "$T/body5.json" - "$(now_ms -120000)" 300 \
    '{"signatures":["AAAA","BBBB"]}')
stop_qesd
expect_eq "$(jobdb state "$DB" "$J4")" "dispatched  0" "the open job while qesd is down"
start_qesd "$T/qesd.conf" "$T/qesd2.log" QESD_INSECURE_TESTING=1
expect_eq "$(jobdb state "$DB" "$J4")" "failed gateway_restart 0" "the open job after the restart"
expect_contains "$T/qesd2.log" "gateway_restart"
check 200 "GET the job after the restart" "$A_SIGN" GET "/v1/signatures/$J4"
expect_eq "$(jfield "$BODY" reason)" gateway_restart "reason after the restart"
for i in $(seq 1 50); do
    [ "$(jobdb state "$DB" "$J5")" = "expired  0" ] && break
    sleep 0.1
done
expect_eq "$(jobdb state "$DB" "$J5")" "expired  0" "the old completed job"
check 200 "GET the expired job" "$A_SIGN" GET "/v1/signatures/$J5"
expect_eq "$(jfield "$BODY" state)" expired "state"
expect_eq "$(jfield "$BODY" signatures)" "" "signatures of an expired job"
ok "restart: open jobs fail with gateway_restart; retention expires old completed jobs and drops their signatures"

# ---------------------------------------------------------------------------
# The audit trail has every transition, each naming its job.
audit_has() {   # audit_has TYPE JOB [REASON]
    check 200 "audit $1" "$A_AUDIT" GET "/v1/audit?type=$1&limit=1000"
    python3 - "$BODY" "$2" "${3-}" <<'EOF' || fail "no $1 record for $2 ${3-}"
import json, sys
page = json.load(open(sys.argv[1]))
for r in page["records"]:
    d = r.get("details") or {}
    if isinstance(d, str):
        d = json.loads(d)
    if d.get("job_id") == sys.argv[2] and (not sys.argv[3] or d.get("reason") == sys.argv[3]):
        sys.exit(0)
sys.exit(1)
EOF
}
audit_has signature.cancelled "$J1"
audit_has signature.failed "$J3" timeout
audit_has signature.failed "$J4" gateway_restart
audit_has signature.expired "$J5"
check 200 "audit verify" "$A_AUDIT" GET /v1/audit/verify
expect_eq "$(jfield "$BODY" ok)" True "audit chain after the job transitions"
ok "audit: signature.cancelled, signature.failed (timeout, gateway_restart), signature.expired; the chain verifies"

stop_qesd
ok "qesd stopped cleanly"
