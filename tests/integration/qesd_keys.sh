#!/usr/bin/env bash
# qesd_keys.sh - API keys end to end against the real qesd on 127.0.0.1 with
# real TLS: tenants and their first admin keys from `qesd admin`, then
#   - the scope matrix: every route of `qesd routes --json` x every scope
#     (one key per scope, made through the API): 403 insufficient_scope
#     exactly where the route needs a scope the key lacks;
#   - revocation takes effect on the next request; rotation: the old secret
#     works during the grace and fails after it; an expired key fails (time
#     moved with the injected testing clock, never slept);
#   - another tenant's key id answers exactly like a random one (404);
#   - bad bodies on POST /v1/api-keys, each with its own problem type;
#   - rate limits (per key, per address) answer 429 with Retry-After;
#   - repeated bad keys from one address are slowed down (without holding
#     workers) and then refused with 429, and leave auth.failed records;
#   - no API key secret in the server log, the database files, or any
#     response body except the one create/rotate response that returned it.
# Each server run ends with SIGTERM and must exit 0 (under QES_VALGRIND=1
# that includes no leaks; sanitizer builds check the same).
#
# The testing clock (insecure_testing_clock_file) is accepted only because
# this script sets QESD_INSECURE_TESTING=1.
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

# ---------------------------------------------------------------------------
# A server certificate for localhost and 127.0.0.1 from the test root.
qesd_tls_files "$T"
echo 0 > "$T/clock"
OFFSET_MS=0

mkdir -p "$T/resp"
: > "$T/minted.tsv"     # secret <TAB> the response body that returned it
: > "$T/secrets.txt"    # every secret part used in the run
N=0

# write_config FILE [extra key = value lines...]
write_config() {
    local f=$1
    shift
    {
        echo "# qesd_keys.sh"
        echo "listen = 127.0.0.1:0"
        echo "tls_cert = $T/server.pem"
        echo "tls_key = $T/server.key"
        echo "pepper_file = $T/pepper"
        echo "store = sqlite:$T/qesd.db"
        echo "insecure_testing_clock_file = $T/clock"
        echo "workers = 2"
        echo "max_body_bytes = 65536"
        echo "drain_timeout_s = 10"
        for line in "$@"; do echo "$line"; done
    } > "$f"
    qesd_conf "$f"
}




# remember_key KEY: record a key minted by the last response.
remember_key() {
    local secret=${1: -43}   # the secret may hold "_" itself
    [ ${#secret} -eq 43 ] || fail "key secret part has ${#secret} characters"
    printf '%s\t%s\n' "$secret" "$BODY" >> "$T/minted.tsv"
    echo "$secret" >> "$T/secrets.txt"
}

# create_key ADMIN NAME SCOPES-JSON [EXPIRES-JSON]: prints the key string.
create_key() {
    local body
    body="{\"name\":\"$2\",\"scopes\":$3${4:+,\"expires_at\":$4}}"
    check 201 "creating key $2" "$1" POST /v1/api-keys "$body"
    KEY=$(jfield "$BODY" key)
    KEY_ID=$(jfield "$BODY" id)
    remember_key "$KEY"
}

random_key_id() {
    python3 -c 'import secrets
a = "abcdefghijklmnopqrstuvwxyz234567"
print("key_" + "".join(secrets.choice(a) for _ in range(25)) + secrets.choice("aeimquy4"))'
}


# rfc3339_in SECONDS: qesd's now (wall + offset) plus SECONDS, RFC 3339.
rfc3339_in() {
    python3 -c 'import sys, time, datetime
t = time.time() + int(sys.argv[1]) / 1000 + int(sys.argv[2])
print(datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))' \
        "$OFFSET_MS" "$1"
}

# tenant NAME: admin_tenant (tests/qesd.sh), the key's secret recorded
tenant() {
    admin_tenant "$1"
    echo "${ADMIN_KEY: -43}" >> "$T/secrets.txt"
}

# ---------------------------------------------------------------------------
write_config "$T/qesd.conf" "rate_ip_per_s = 1000" "rate_ip_burst = 10000" \
    "rate_key_per_s = 1000" "rate_key_burst = 10000"

# The testing clock is refused without QESD_INSECURE_TESTING=1.
rc=0
timeout 20 "$QESD" serve --config "$T/qesd.conf" 2> "$T/refuse.log" || rc=$?
expect_eq "$rc" 3 "exit status with the testing clock but no QESD_INSECURE_TESTING=1"
expect_contains "$T/refuse.log" "insecure_testing_clock_file is refused"
ok "the testing clock is refused unless QESD_INSECURE_TESTING=1"

tenant A
A_ADMIN=$ADMIN_KEY
A_TENANT=$TENANT_ID
tenant B
B_ADMIN=$ADMIN_KEY
ok "tenants A and B with their first admin keys (qesd admin tenant create)"

start_qesd "$T/qesd.conf" "$T/qesd.log" QESD_INSECURE_TESTING=1
expect_contains "$T/qesd.log" "INSECURE testing clock is ON"
ok "qesd started on 127.0.0.1:$PORT"

# ---------------------------------------------------------------------------
# No key, a malformed key.
check 401 "no Authorization" - GET /v1/api-keys
expect_problem 401 unauthorized
grep -qi '^www-authenticate: Bearer' "$HDR" || fail "401 without WWW-Authenticate: Bearer"
check 401 "malformed key" "qes_key_short_x" GET /v1/api-keys
expect_problem 401 unauthorized
check 200 "A's admin key" "$A_ADMIN" GET /v1/api-keys
ok "401 unauthorized without or with a malformed key (WWW-Authenticate: Bearer); admin key works"

# ---------------------------------------------------------------------------
# The scope matrix.
"$QESD" routes --json > "$T/routes.json"
SCOPES=(sign devices diagnostics audit admin)
declare -A SCOPE_KEY
for s in "${SCOPES[@]}"; do
    create_key "$A_ADMIN" "only-$s" "[\"$s\"]"
    SCOPE_KEY[$s]=$KEY
    expect_eq "$(jfield "$BODY" scopes)" "[\"$s\"]" "scopes of the $s key"
done
python3 - "$T/routes.json" > "$T/matrix.txt" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1])):
    print(r["method"], r["pattern"], ",".join(r["scopes"]) or "-", r["name"])
EOF
[ "$(wc -l < "$T/matrix.txt")" -ge 7 ] || fail "qesd routes --json lists too few routes"
checked=0
while read -r -u 3 method pattern need name; do
    path=$(printf '%s' "$pattern" | sed -E "s/\\{[^}]*\\}/$(random_key_id)/g")
    for s in "${SCOPES[@]}"; do
        body=
        if [ "$method" = POST ]; then
            body='{}'
            [ "$name" = keys.create ] && body="{\"name\":\"matrix\",\"scopes\":[\"$s\"]}"
        fi
        call "${SCOPE_KEY[$s]}" "$method" "$path" "$body"
        code=$CODE
        if [ "$need" = - ] || [ "$need" = "$s" ]; then
            case $code in
            401|403|429|5??) cat "$BODY" >&2; fail "$name with a $s key: $code, expected it allowed" ;;
            esac
            if [ "$name" = keys.create ]; then
                expect_eq "$code" 201 "keys.create with an admin key"
                remember_key "$(jfield "$BODY" key)"
            fi
        else
            expect_eq "$code" 403 "$name ($method $pattern, needs $need) with a $s key"
            expect_problem 403 insufficient_scope
            expect_eq "$(jfield "$BODY" missing_scope)" "$need" "missing_scope of $name"
        fi
        checked=$((checked + 1))
    done
done 3< "$T/matrix.txt"
ok "scope matrix: $(wc -l < "$T/matrix.txt") routes x ${#SCOPES[@]} scopes ($checked requests), 403 exactly where the scope is missing"

# A key can only grant scopes it holds.
create_key "$A_ADMIN" "admin-only" '["admin"]'
ADMIN_ONLY=$KEY
check 403 "escalation" "$ADMIN_ONLY" POST /v1/api-keys '{"name":"x","scopes":["admin","sign"]}'
expect_problem 403 scope_escalation
expect_eq "$(jfield "$BODY" missing_scope)" sign "missing_scope of the escalation"
ok "a key cannot grant a scope it lacks: 403 scope_escalation"

# ---------------------------------------------------------------------------
# Revocation: the next request fails.
create_key "$A_ADMIN" "to-revoke" '["admin"]'
REVOKE_KEY=$KEY
REVOKE_ID=$KEY_ID
check 200 "key before revocation" "$REVOKE_KEY" GET /v1/api-keys
check 200 "key before revocation (cached)" "$REVOKE_KEY" GET /v1/api-keys
check 204 "revoke" "$A_ADMIN" DELETE "/v1/api-keys/$REVOKE_ID"
check 401 "revoked key at once" "$REVOKE_KEY" GET /v1/api-keys
expect_problem 401 invalid_api_key
cp "$BODY" "$T/invalid-revoked.json"
check 204 "revoking again" "$A_ADMIN" DELETE "/v1/api-keys/$REVOKE_ID"
check 409 "rotating a revoked key" "$A_ADMIN" POST "/v1/api-keys/$REVOKE_ID/rotate"
expect_problem 409 key_revoked
ok "revoked key: 401 invalid_api_key on the very next request; revoke is idempotent"

# Rotation with a grace period, then the clock moves past it.
create_key "$A_ADMIN" "to-rotate" '["admin"]'
OLD_KEY=$KEY
ROT_ID=$KEY_ID
check 200 "key before rotation" "$OLD_KEY" GET /v1/api-keys
check 200 "rotate" "$A_ADMIN" POST "/v1/api-keys/$ROT_ID/rotate" '{"grace_seconds":3600}'
NEW_KEY=$(jfield "$BODY" key)
remember_key "$NEW_KEY"
expect_eq "$(jfield "$BODY" id)" "$ROT_ID" "rotation keeps the key id"
[ "$NEW_KEY" != "$OLD_KEY" ] || fail "rotation returned the old key"
[ -n "$(jfield "$BODY" previous_secret_valid_until)" ] || fail "no previous_secret_valid_until"
check 200 "old secret during the grace" "$OLD_KEY" GET /v1/api-keys
check 200 "new secret" "$NEW_KEY" GET /v1/api-keys
advance_clock 3590000
check 200 "old secret 10 s before the grace ends" "$OLD_KEY" GET /v1/api-keys
advance_clock 11000
check 401 "old secret after the grace" "$OLD_KEY" GET /v1/api-keys
expect_problem 401 invalid_api_key
check 200 "new secret after the grace" "$NEW_KEY" GET /v1/api-keys
# default grace is a day, the maximum a week
check 200 "rotate with the default grace" "$A_ADMIN" POST "/v1/api-keys/$ROT_ID/rotate"
NEWER_KEY=$(jfield "$BODY" key)
remember_key "$NEWER_KEY"
check 200 "previous secret in the default grace" "$NEW_KEY" GET /v1/api-keys
advance_clock $((86400 * 1000 + 1000))
check 401 "previous secret a day later" "$NEW_KEY" GET /v1/api-keys
check 200 "current secret a day later" "$NEWER_KEY" GET /v1/api-keys
check 400 "grace over a week" "$A_ADMIN" POST "/v1/api-keys/$ROT_ID/rotate" '{"grace_seconds":604801}'
expect_problem 400 invalid_field
check 400 "negative grace" "$A_ADMIN" POST "/v1/api-keys/$ROT_ID/rotate" '{"grace_seconds":-1}'
expect_problem 400 invalid_field
check 400 "unknown field" "$A_ADMIN" POST "/v1/api-keys/$ROT_ID/rotate" '{"grace":1}'
expect_problem 400 unknown_field
ok "rotation: old secret works during the grace (3600 s, default 86400 s) and fails after it; grace max 604800"

# Expiry.
create_key "$A_ADMIN" "expiring" '["admin"]' "\"$(rfc3339_in 600)\""
EXP_KEY=$KEY
[ -n "$(jfield "$BODY" expires_at)" ] || fail "no expires_at in the response"
check 200 "key before its expiry" "$EXP_KEY" GET /v1/api-keys
advance_clock 601000
check 401 "expired key" "$EXP_KEY" GET /v1/api-keys
expect_problem 401 invalid_api_key
check 400 "expiry in the past" "$A_ADMIN" POST /v1/api-keys "{\"name\":\"p\",\"scopes\":[\"sign\"],\"expires_at\":\"$(rfc3339_in -10)\"}"
expect_problem 400 invalid_field
check 400 "expiry not RFC 3339" "$A_ADMIN" POST /v1/api-keys '{"name":"p","scopes":["sign"],"expires_at":"tomorrow"}'
expect_problem 400 invalid_field
ok "expired key (clock moved past expires_at): 401 invalid_api_key; bad expires_at: 400"

# One answer for every kind of invalid key: unknown id, wrong secret, revoked, expired.
wrong=${A_ADMIN%?}
[ "${A_ADMIN: -1}" = A ] && wrong="${wrong}Q" || wrong="${wrong}A"
check 401 "wrong secret" "$wrong" GET /v1/api-keys
cp "$BODY" "$T/invalid-wrong.json"
check 401 "unknown key id" "qes_$(random_key_id)_${A_ADMIN: -43}" GET /v1/api-keys
cp "$BODY" "$T/invalid-unknown.json"
python3 - "$T/invalid-revoked.json" "$T/invalid-wrong.json" "$T/invalid-unknown.json" <<'EOF' ||
import json, sys
bodies = []
for f in sys.argv[1:]:
    p = json.load(open(f))
    p.pop("request_id")
    bodies.append(p)
assert all(b == bodies[0] for b in bodies), bodies
EOF
    fail "invalid keys are told apart by their responses"
ok "unknown key, wrong secret, revoked and expired keys get the identical 401 invalid_api_key"

# ---------------------------------------------------------------------------
# Tenants: B never sees or touches A's keys; a foreign id is a missing id.
check 200 "B lists its keys" "$B_ADMIN" GET "/v1/api-keys?limit=1000"
expect_not_contains "$BODY" "$ROT_ID"
expect_not_contains "$BODY" "${SCOPE_KEY[sign]:4:30}"
[ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["items"]))' "$BODY")" = 1 ] ||
    fail "B sees more than its own key"
RAND_ID=$(random_key_id)
for op in "POST /rotate" "DELETE "; do
    m=${op%% *}
    suffix=${op#* }
    check 404 "B: $m A's key" "$B_ADMIN" "$m" "/v1/api-keys/$ROT_ID$suffix"
    cp "$BODY" "$T/foreign.json"
    expect_problem 404 not_found
    check 404 "B: $m a random id" "$B_ADMIN" "$m" "/v1/api-keys/$RAND_ID$suffix"
    python3 - "$T/foreign.json" "$BODY" "$ROT_ID" "$RAND_ID" <<'EOF' ||
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
for p in (a, b):
    p.pop("request_id")
a["instance"] = a["instance"].replace(sys.argv[3], "ID")
b["instance"] = b["instance"].replace(sys.argv[4], "ID")
assert a == b, (a, b)
EOF
        fail "B: $m on A's key id differs from a random id"
done
check 200 "A's key untouched by B" "$NEWER_KEY" GET /v1/api-keys
ok "cross-tenant rotate/DELETE of a key id: 404 identical to a random id; lists are per tenant"

# ---------------------------------------------------------------------------
# Listing: cursor pagination, no secrets or hashes.
check 200 "list all" "$A_ADMIN" GET "/v1/api-keys?limit=1000"
total=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["items"]))' "$BODY")
python3 - "$BODY" <<'EOF' || fail "a listed key carries more than it should"
import json, sys
allowed = {"id", "name", "scopes", "created_at", "expires_at", "rotated_at",
           "revoked_at", "last_used_at", "created_by", "previous_secret_valid_until"}
for k in json.load(open(sys.argv[1]))["items"]:
    assert set(k) <= allowed, k
EOF
seen=0
cursor=
pages=0
while :; do
    q="limit=3"
    [ -n "$cursor" ] && q="$q&cursor=$cursor"
    check 200 "page $pages" "$A_ADMIN" GET "/v1/api-keys?$q"
    n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["items"]))' "$BODY")
    seen=$((seen + n))
    pages=$((pages + 1))
    cursor=$(jfield "$BODY" next_cursor)
    [ -z "$cursor" ] && break
    [ "$pages" -lt 100 ] || fail "pagination does not end"
done
expect_eq "$seen" "$total" "keys seen over all pages"
check 400 "bad cursor" "$A_ADMIN" GET "/v1/api-keys?cursor=garbage"
expect_problem 400 invalid_cursor
check 400 "limit 0" "$A_ADMIN" GET "/v1/api-keys?limit=0"
expect_problem 400 invalid_query
check 400 "unknown query parameter" "$A_ADMIN" GET "/v1/api-keys?colour=red"
expect_problem 400 invalid_query
ok "list: $total keys over $pages pages of 3; bad cursor, limit and parameters refused"

# ---------------------------------------------------------------------------
# Bad input on POST /v1/api-keys: each its own problem, the server keeps serving.
head -c 70000 /dev/zero | tr '\0' ' ' > "$T/big.json"
check 413 "oversize body" "$A_ADMIN" POST /v1/api-keys "$(cat "$T/big.json")"
expect_problem 413 body_too_large
deep=$(python3 -c 'print("{\"name\":\"x\",\"scopes\":" + "[" * 40 + "]" * 40 + "}")')
check 400 "deep JSON" "$A_ADMIN" POST /v1/api-keys "$deep"
expect_problem 400 json_too_deep
check 400 "invalid UTF-8" "$A_ADMIN" POST /v1/api-keys "$(printf '{"name":"\xff\xfe","scopes":["sign"]}')"
expect_problem 400 invalid_json
check 400 "unknown field" "$A_ADMIN" POST /v1/api-keys '{"name":"x","scopes":["sign"],"admin":true}'
expect_problem 400 unknown_field
expect_eq "$(jfield "$BODY" field)" admin "unknown field named"
check 400 "wrong type" "$A_ADMIN" POST /v1/api-keys '{"name":7,"scopes":["sign"]}'
expect_problem 400 invalid_field
expect_eq "$(jfield "$BODY" field)" name "wrong-type field named"
check 400 "missing scopes" "$A_ADMIN" POST /v1/api-keys '{"name":"x"}'
expect_problem 400 missing_field
check 400 "unknown scope" "$A_ADMIN" POST /v1/api-keys '{"name":"x","scopes":["root"]}'
expect_problem 400 invalid_field
check 400 "duplicate scope" "$A_ADMIN" POST /v1/api-keys '{"name":"x","scopes":["sign","sign"]}'
expect_problem 400 invalid_field
check 400 "empty name" "$A_ADMIN" POST /v1/api-keys '{"name":"","scopes":["sign"]}'
expect_problem 400 invalid_field
check 400 "control character in name" "$A_ADMIN" POST /v1/api-keys '{"name":"a\u0007b","scopes":["sign"]}'
expect_problem 400 invalid_field
check 400 "not an object" "$A_ADMIN" POST /v1/api-keys '["name"]'
expect_problem 400 invalid_json
check 200 "/healthz after bad input" - GET /healthz
check 200 "API after bad input" "$A_ADMIN" GET /v1/api-keys
ok "bad input: 413 body_too_large, json_too_deep, invalid_json, unknown_field, invalid_field, missing_field; still serving"

# last_used_at is written in batches (about once a second)
sleep 1.5
check 200 "list for last_used_at" "$A_ADMIN" GET "/v1/api-keys?limit=1000"
python3 - "$BODY" "${A_ADMIN:4:30}" <<'EOF' || fail "last_used_at of the admin key not recorded"
import json, sys
k = [k for k in json.load(open(sys.argv[1]))["items"] if k["id"] == sys.argv[2]][0]
assert k["last_used_at"], k
EOF
ok "last_used_at recorded (batched)"
stop_qesd
ok "SIGTERM: qesd exits 0"

# ---------------------------------------------------------------------------
# Rate limits: a small per-key bucket, then a small per-address bucket.
write_config "$T/rate.conf" "rate_key_per_s = 0.5" "rate_key_burst = 3" \
    "rate_ip_per_s = 1" "rate_ip_burst = 12"
start_qesd "$T/rate.conf" "$T/rate.log" QESD_INSECURE_TESTING=1
for i in 1 2 3; do
    check 200 "request $i within the key's burst" "$NEWER_KEY" GET /v1/api-keys
done
check 429 "past the key's burst" "$NEWER_KEY" GET /v1/api-keys
expect_problem 429 rate_limited
grep -qi '^retry-after: 2' "$HDR" || { cat "$HDR" >&2; fail "429 without Retry-After: 2 (0.5/s)"; }
check 200 "another key has its own bucket" "$A_ADMIN" GET /v1/api-keys
codes=
for i in $(seq 1 12); do
    call - GET /v1/api-keys     # 401 while the address bucket has tokens
    codes="$codes $CODE"
    [ "$CODE" = 429 ] && break
done
[[ $codes == *429* ]] || fail "the address bucket never emptied: $codes"
expect_problem 429 rate_limited
expect_contains "$BODY" "this address"
grep -qi '^retry-after: [1-9]' "$HDR" || fail "address 429 without Retry-After"
check 200 "/healthz is never limited" - GET /healthz
check 200 "/readyz is never limited" - GET /readyz
check 200 "/metrics is never limited" - GET /metrics
expect_contains "$BODY" "qesd_rate_limited_total"
grep -q '^qesd_rate_limited_total [1-9]' "$BODY" || fail "qesd_rate_limited_total not counted"
stop_qesd
ok "rate limits: 429 rate_limited with Retry-After per key and per address; probes exempt"

# ---------------------------------------------------------------------------
# Repeated bad keys from one address: slowed down, then 429; audited.
write_config "$T/fail.conf" "rate_ip_per_s = 1000" "rate_ip_burst = 10000" \
    "auth_fail_delay_ms = 200"
start_qesd "$T/fail.conf" "$T/fail.log" QESD_INSECURE_TESTING=1
for i in 1 2 3; do
    check 401 "bad key $i" "$wrong" GET /v1/api-keys
done
start=$(date +%s%N)
check 401 "bad key 4" "$wrong" GET /v1/api-keys
check 401 "bad key 5" "$wrong" GET /v1/api-keys
slow_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$slow_ms" -ge 550 ] || fail "failures 4 and 5 were not slowed down (${slow_ms} ms, expected >= 600)"
# 14 more in parallel: each waits deferred (up to 2 s) without a worker, so
# the two workers still answer /healthz and a good key at once meanwhile
pids=()
for i in $(seq 6 19); do
    # shellcheck disable=SC2030  # each background request numbers its own files
    (N=$((100000 + i)); call "$wrong" GET /v1/api-keys; echo "$CODE" > "$T/par-$i.code") &
    pids+=($!)
done
sleep 0.5
start=$(date +%s%N)
check 200 "/healthz while failures wait" - GET /healthz
fast_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$fast_ms" -lt 1000 ] || fail "/healthz took ${fast_ms} ms while failed authentications waited"
wait "${pids[@]}"
for i in $(seq 6 19); do
    expect_eq "$(cat "$T/par-$i.code")" 401 "parallel bad key $i"
done
check 429 "the 20th failure" "$wrong" GET /v1/api-keys
expect_problem 429 rate_limited
grep -qi '^retry-after: [1-9]' "$HDR" || fail "429 without Retry-After"
check 429 "even a good key from the blocked address" "$A_ADMIN" GET /v1/api-keys
check 200 "/healthz from the blocked address" - GET /healthz
check 200 "/metrics" - GET /metrics
grep -q '^qesd_auth_failures_total [1-9]' "$BODY" || fail "qesd_auth_failures_total not counted"
stop_qesd
expect_contains "$T/fail.log" '"reason":"wrong_secret"'
n_failed=$(db_value "$T/qesd.db" "select count(*) from audit_records where tenant_id = ? and type = 'auth.failed'" \
    "$A_TENANT")
[ "$n_failed" -ge 20 ] || fail "only $n_failed auth.failed records in tenant A"
ok "bad keys from one address: slowed after 3 (deferred, workers free), 429 after 20, $n_failed auth.failed records"

# ---------------------------------------------------------------------------
# Audit: every lifecycle event and every authenticated request has a record.
db_query "$T/qesd.db" "select type, count(*) from audit_records where tenant_id = ? group by type" \
    "$A_TENANT" > "$T/audit-types"
python3 - "$T/audit-types" <<'EOF' || fail "audit records missing"
import sys
types = {t: int(n) for t, n in (l.rstrip("\n").split("|") for l in open(sys.argv[1]))}
for t in ("key.created", "key.rotated", "key.revoked", "api.request", "auth.failed"):
    assert types.get(t, 0) > 0, (t, types)
assert types["key.rotated"] == 2, types
assert types["key.revoked"] == 1, types
EOF
ok "audit: key.created, key.rotated, key.revoked, api.request, auth.failed recorded"

# ---------------------------------------------------------------------------
# No secret anywhere but in the response that returned it.
db_dump "$T/qesd.db" > "$T/db.dump"
files=("$T/qesd.log" "$T/rate.log" "$T/fail.log" "$T/db.dump")
[ -f "$T/qesd.db" ] && files+=("$T/qesd.db")
for f in "$T/qesd.db-wal" "$T/qesd.db-shm"; do
    [ -f "$f" ] && files+=("$f")
done
for f in "$T"/resp/*.body; do files+=("$f"); done
nsecrets=$(sort -u "$T/secrets.txt" | wc -l)
[ "$nsecrets" -ge 12 ] || fail "only $nsecrets secrets recorded"
python3 - "$T/secrets.txt" "$T/minted.tsv" "${files[@]}" <<'EOF' || fail "a secret leaked"
import sys
secrets = {l.strip() for l in open(sys.argv[1]) if l.strip()}
minted = {}
for line in open(sys.argv[2]):
    s, f = line.rstrip("\n").split("\t")
    minted[s] = f
# the search must be able to find them: each minting response holds its key
for s, f in minted.items():
    assert s.encode() in open(f, "rb").read(), ("minted key not in", f)
bad = []
for f in sys.argv[3:]:
    data = open(f, "rb").read()
    for s in secrets:
        if s.encode() in data and minted.get(s) != f:
            bad.append((f, s[:6] + "..."))
if bad:
    print("secrets found:", bad, file=sys.stderr)
    sys.exit(1)
EOF
# shellcheck disable=SC2031  # N counts the foreground requests
ok "no API key secret ($nsecrets of them) in the logs, the database files or any other response ($N responses)"

echo "qesd_keys: all checks passed"
