#!/usr/bin/env bash
# qesd_tls.sh - the real qesd on loopback with real TLS: TLS 1.3 only, refusal
# to start with unsafe secrets, every request limit with its own problem type,
# metrics, deferral, overload, and the SIGTERM drain. After every bad input the
# server must still answer /healthz.
#
# Self-contained: a throw-away CA and server certificate are made with openssl
# in the test's temporary directory. The test-only routes (/testing/...) are
# enabled with testing_routes = on, which qesd accepts only because this script
# sets QESD_ALLOW_TESTING=1.
. "$(dirname -- "$0")/../lib.sh"

T=$(qes_tmpdir)
QESD=$QES_BUILD_DIR/qesd
CA=$T/ca.pem
. "$(dirname -- "$0")/../qesd.sh"
[ -x "$QESD" ] || fail "no qesd binary at $QESD"
for tool in curl openssl python3; do
    command -v "$tool" >/dev/null || fail "$tool is needed"
done

# ---------------------------------------------------------------------------
# Throw-away PKI: a CA and a server certificate for localhost, 127.0.0.1, ::1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$T/ca.key" -out "$T/ca.pem" -days 2 -subj "/CN=qesd test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
    2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$T/server.key" -out "$T/server.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n' \
    > "$T/ext.cnf"
openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" \
    -CAcreateserial -days 2 -extfile "$T/ext.cnf" -out "$T/server.pem" 2>/dev/null
chmod 600 "$T/server.key"
openssl rand -hex 32 > "$T/pepper"
chmod 600 "$T/pepper"
PEPPER=$(cat "$T/pepper")
SECRET_TOKEN="qes_key_test_$(openssl rand -hex 16)"

# write_config FILE [extra key = value lines...]
write_config() {
    local f=$1
    shift
    {
        echo "# qesd_tls.sh"
        echo "listen = 127.0.0.1:0"
        echo "tls_cert = $T/server.pem"
        echo "tls_key = $T/server.key"
        echo "pepper_file = $T/pepper"
        echo "store = sqlite:$T/qesd.db"
        echo "testing_routes = on"
        echo "drain_timeout_s = 5"
        echo "log_level = info"
        for line in "$@"; do echo "$line"; done
    } > "$f"
}



# req NAME [curl args...] URL-PATH: status code on stdout; body and headers in
# $T/NAME.body and $T/NAME.hdr.
req() {
    local name=$1
    shift
    local path=${*: -1}
    local args=("${@:1:$#-1}")
    curl -sS --cacert "$T/ca.pem" -o "$T/$name.body" -D "$T/$name.hdr" \
        -w '%{http_code}' "${args[@]}" "https://localhost:$PORT$path" || true
}

# expect_problem_of NAME STATUS TYPE-NAME: the response saved as NAME is that
# problem, with a request id equal to its X-Request-Id header.
expect_problem_of() {
    local name=$1 status=$2 type=$3 hdr_id body_id
    grep -qi '^content-type: application/problem+json' "$T/$name.hdr" ||
        fail "$name: not application/problem+json"
    python3 - "$T/$name.body" "$status" "urn:qes:problem:$type" <<'EOF' || fail "$name: problem shape"
import json, sys
p = json.load(open(sys.argv[1]))
assert p["status"] == int(sys.argv[2]), p
assert p["type"] == sys.argv[3], p
for k in ("title", "detail", "instance", "request_id"):
    assert isinstance(p.get(k), str) and p[k], (k, p)
EOF
    hdr_id=$(grep -i '^x-request-id:' "$T/$name.hdr" | tr -d '\r' | awk '{print $2}')
    body_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["request_id"])' \
        "$T/$name.body")
    expect_eq "$body_id" "$hdr_id" "$name: request id in body and header"
}

alive() {
    expect_eq "$(req alive /healthz)" 200 "/healthz after $1"
}


# ---------------------------------------------------------------------------
# Refusals at start: each exits with status 3 and a clear message.
refuse() {
    local what=$1 expect=$2 cfg=$3 rc=0
    QESD_ALLOW_TESTING=${ALLOW:-1} timeout 20 "$QESD" serve --config "$cfg" \
        2> "$T/refuse.log" || rc=$?
    expect_eq "$rc" 3 "exit status when $what"
    expect_contains "$T/refuse.log" "$expect"
    ok "refuses to start: $what"
}

write_config "$T/open-key.conf"
chmod 644 "$T/server.key"
refuse "the TLS key is mode 0644" "is accessible by group or others (mode 0644)" "$T/open-key.conf"
chmod 600 "$T/server.key"

write_config "$T/no-pepper.conf"
sed -i "s|^pepper_file = .*|pepper_file = $T/missing-pepper|" "$T/no-pepper.conf"
refuse "the pepper file is missing" "missing-pepper: No such file or directory" "$T/no-pepper.conf"

printf 'short\n' > "$T/short-pepper"
chmod 600 "$T/short-pepper"
sed "s|^pepper_file = .*|pepper_file = $T/short-pepper|" "$T/open-key.conf" > "$T/short.conf"
refuse "the pepper is shorter than 32 bytes" "at least 32 are needed" "$T/short.conf"

cp "$T/pepper" "$T/open-pepper"
chmod 640 "$T/open-pepper"
sed "s|^pepper_file = .*|pepper_file = $T/open-pepper|" "$T/open-key.conf" > "$T/op.conf"
refuse "the pepper file is group-readable" "(mode 0640)" "$T/op.conf"

grep -v '^tls_cert' "$T/open-key.conf" > "$T/no-cert.conf"
refuse "no certificate is configured" "tls_cert is not set" "$T/no-cert.conf"

write_config "$T/typo.conf" "wokers = 2"
refuse "a key is unknown" "typo.conf:10: unknown key 'wokers'" "$T/typo.conf"

write_config "$T/testing.conf"
ALLOW=0 refuse "testing routes without QESD_ALLOW_TESTING=1" \
    "allowed only with QESD_ALLOW_TESTING=1" "$T/testing.conf"

# ---------------------------------------------------------------------------
# The main server.
write_config "$T/qesd.conf"
start_qesd "$T/qesd.conf" "$T/qesd.log" QESD_ALLOW_TESTING=1
ok "qesd started on 127.0.0.1:$PORT"

# TLS 1.3 works, TLS 1.2 is refused by both clients.
code=$(curl -sS --tlsv1.3 --cacert "$T/ca.pem" -o "$T/h.body" -D "$T/h.hdr" \
    -w '%{http_code}' "https://localhost:$PORT/healthz")
expect_eq "$code" 200 "TLS 1.3 /healthz"
grep -qi '^x-request-id: [A-Za-z0-9_-]\{22\}' "$T/h.hdr" || fail "no generated X-Request-Id"
ok "TLS 1.3 with curl: 200 with a request id"

openssl s_client -tls1_3 -connect "127.0.0.1:$PORT" -servername localhost \
    -CAfile "$T/ca.pem" -verify_return_error < /dev/null > "$T/s13.out" 2>&1 ||
    fail "openssl s_client -tls1_3 failed"
expect_contains "$T/s13.out" "TLSv1.3"
ok "TLS 1.3 with openssl s_client"

rc=0
openssl s_client -tls1_2 -connect "127.0.0.1:$PORT" -servername localhost \
    -CAfile "$T/ca.pem" < /dev/null > "$T/s12.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "openssl s_client -tls1_2 connected"
grep -q "Cipher is (NONE)" "$T/s12.out" || fail "TLS 1.2 session was established"
ok "TLS 1.2 refused by openssl s_client -tls1_2"

rc=0
curl -sS --tlsv1.2 --tls-max 1.2 --cacert "$T/ca.pem" -o /dev/null \
    "https://localhost:$PORT/healthz" 2> "$T/c12.err" || rc=$?
[ "$rc" -ne 0 ] || fail "curl --tls-max 1.2 connected"
ok "TLS 1.2 refused by curl --tls-max 1.2 (curl exit $rc)"
alive "TLS 1.2 attempts"

# Request ids: a sane incoming one is echoed, anything else is replaced.
req rid -H "X-Request-Id: client-id_1.2" /healthz > /dev/null
grep -qi '^x-request-id: client-id_1.2' "$T/rid.hdr" || fail "sane X-Request-Id not echoed"
req rid2 -H "X-Request-Id: bad id<script>" /healthz > /dev/null
grep -qi '^x-request-id: [A-Za-z0-9_-]\{22\}' "$T/rid2.hdr" || fail "bad X-Request-Id kept"
ok "X-Request-Id echoed when sane, replaced otherwise"

# Unknown route, wrong method.
expect_eq "$(req nf /v1/nothing-here)" 404 "unknown route"
expect_problem_of nf 404 not_found
alive "404"
expect_eq "$(req m405 -X DELETE /healthz)" 405 "wrong method"
expect_problem_of m405 405 method_not_allowed
grep -qi '^allow: GET' "$T/m405.hdr" || fail "405 without Allow: GET"
ok "404 not_found and 405 with Allow"

# Body limits and the JSON pipeline, through POST /testing/echo.
J=(-H "Content-Type: application/json")
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' > "$T/big.json"
expect_eq "$(req big "${J[@]}" --data-binary @"$T/big.json" /testing/echo)" 413 "oversize body"
expect_problem_of big 413 body_too_large
alive "oversize body"
ok "oversize body: 413 body_too_large"

python3 -c 'print("{\"name\":\"x\",\"nested\":" + "[" * 40 + "]" * 40 + "}")' > "$T/deep.json"
expect_eq "$(req deep "${J[@]}" --data-binary @"$T/deep.json" /testing/echo)" 400 "deep JSON"
expect_problem_of deep 400 json_too_deep
alive "deep JSON"
ok "deep JSON: 400 json_too_deep"

python3 -c 'print("{\"name\":\"" + "a" * 9000 + "\"}")' > "$T/long.json"
expect_eq "$(req long "${J[@]}" --data-binary @"$T/long.json" /testing/echo)" 400 "long string"
expect_problem_of long 400 string_too_long
alive "long string"
ok "long JSON string: 400 string_too_long"

printf '{"name":"\xff\xfe"}' > "$T/utf8.json"
expect_eq "$(req utf8 "${J[@]}" --data-binary @"$T/utf8.json" /testing/echo)" 400 "invalid UTF-8"
expect_problem_of utf8 400 invalid_json
alive "invalid UTF-8"
ok "invalid UTF-8: 400 invalid_json"

expect_eq "$(req broken "${J[@]}" --data-binary '{"name":' /testing/echo)" 400 "broken JSON"
expect_problem_of broken 400 invalid_json
expect_eq "$(req unk "${J[@]}" --data-binary '{"name":"x","admin":true}' /testing/echo)" 400 "unknown field"
expect_problem_of unk 400 unknown_field
expect_contains "$T/unk.body" '"field":"admin"'
expect_eq "$(req typ "${J[@]}" --data-binary '{"name":7}' /testing/echo)" 400 "wrong type"
expect_problem_of typ 400 invalid_field
expect_contains "$T/typ.body" '"field":"name"'
expect_eq "$(req ct -H "Content-Type: text/plain" --data-binary '{"name":"x"}' /testing/echo)" 415 "wrong content type"
expect_problem_of ct 415 unsupported_media_type
expect_eq "$(req good "${J[@]}" --data-binary '{"name":"x","tags":["a"]}' /testing/echo)" 200 "valid body"
expect_contains "$T/good.body" '{"echo":{"name":"x","tags":["a"]}}'
alive "JSON errors"
ok "invalid JSON, unknown field, wrong type, wrong content type: each its own problem"

# Header and URI limits.
ua=$(head -c 12000 /dev/zero | tr '\0' a)
expect_eq "$(req hdr -H "User-Agent: $ua" /healthz)" 431 "large header"
expect_problem_of hdr 431 header_too_large
alive "large header"
python3 -c 'print("X-Huge: " + "h" * 200000)' > "$T/huge.hdr.in"
req huge -H @"$T/huge.hdr.in" /healthz > /dev/null
alive "a 200 KB header"
ok "large header: 431 header_too_large; a 200 KB header does not hurt the server"

long=$(head -c 5000 /dev/zero | tr '\0' a)
expect_eq "$(req uri "/healthz?x=$long")" 414 "long URI"
expect_problem_of uri 414 uri_too_long
expect_eq "$(req q "/testing/slow?ms=1&ms=2")" 400 "duplicate query parameter"
expect_problem_of q 400 invalid_query
alive "URI limits"
ok "long URI: 414 uri_too_long; bad query: 400 invalid_query"

# Secrets never reach the log: send an Authorization header, grep for it.
req authz -H "Authorization: Bearer $SECRET_TOKEN" /healthz > /dev/null

# Deferred response resumed at its deadline.
expect_eq "$(req defer "/testing/defer?ms=200")" 200 "deferred request"
expect_contains "$T/defer.body" '"resumed":"deadline"'
ok "deferred response resumed at its deadline"

# Readiness and metrics.
expect_eq "$(req ready /readyz)" 200 "/readyz"
expect_eq "$(req metrics /metrics)" 200 "/metrics"
grep -qi '^content-type: text/plain; version=0.0.4' "$T/metrics.hdr" || fail "metrics content type"
for line in \
    'qesd_http_requests_total{route="unmatched",method="GET",status="404"} 1' \
    'qesd_http_requests_total{route="testing.echo",method="POST",status="400"}' \
    'qesd_http_requests_total{route="health.live",method="GET",status="200"}' \
    'qesd_http_request_duration_seconds_bucket{route="health.live",le="0.001"}' \
    'qesd_http_request_duration_seconds_count{route="testing.echo"}' \
    'qesd_auth_failures_total 0' 'qesd_rate_limited_total 0' \
    'qesd_inflight_requests' 'qesd_build_info{version='; do
    expect_contains "$T/metrics.body" "$line"
done
ok "/readyz 200; /metrics has the counters and the histogram"

# ::1 as well, where the machine has IPv6 loopback.
if python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
    write_config "$T/v6.conf"
    sed -i 's|^listen = .*|listen = [::1]:0|' "$T/v6.conf"
    QESD_ALLOW_TESTING=1 "$QESD" serve --config "$T/v6.conf" > /dev/null 2> "$T/v6.log" &
    v6pid=$!
    qes_on_exit "kill -KILL $v6pid"
    for i in $(seq 1 100); do
        v6port=$(grep -o '"port":[0-9]*' "$T/v6.log" | head -n 1 | cut -d: -f2) || true
        [ -n "${v6port:-}" ] && break
        sleep 0.05
    done
    code=$(curl -sS --cacert "$T/ca.pem" -o /dev/null -w '%{http_code}' \
        "https://[::1]:$v6port/healthz") || true
    expect_eq "$code" 200 "/healthz over ::1"
    kill -TERM "$v6pid"
    wait "$v6pid" || fail "qesd on ::1 did not exit 0"
    ok "listens on [::1]"
fi

# The SIGTERM drain: in-flight requests finish, waiting ones are resumed,
# new ones get 503 shutting_down, readiness turns false, exit status 0.
(req slow "/testing/slow?ms=1500" > "$T/slow.code") &
slow_job=$!
(req waiting "/testing/defer?ms=60000" > "$T/waiting.code") &
wait_job=$!
# Both must be in flight before SIGTERM: under load (sanitizers, parallel
# tests) a fixed sleep is not enough, so watch the server's own gauge
# (which counts the /metrics request itself too: 3).
for i in $(seq 1 200); do
    req inflight /metrics > /dev/null
    n=$(sed -n 's/^qesd_inflight_requests //p' "$T/inflight.body")
    [ "${n:-0}" -ge 3 ] && break
    sleep 0.05
done
[ "${n:-0}" -ge 3 ] || fail "the slow and the waiting request never got in flight"
kill -TERM "$SERVER_PID"
sleep 0.2
expect_eq "$(req dready /readyz)" 503 "/readyz while draining"
expect_problem_of dready 503 not_ready
expect_eq "$(req dlive /healthz)" 200 "/healthz while draining"
expect_contains "$T/dlive.body" '"status":"draining"'
code=$(req dnew2 /testing/slow)
expect_eq "$code" 503 "a new request while draining"
expect_problem_of dnew2 503 shutting_down
wait "$slow_job" "$wait_job"
expect_eq "$(cat "$T/slow.code")" 200 "in-flight request during the drain"
expect_eq "$(cat "$T/waiting.code")" 200 "deferred request during the drain"
expect_contains "$T/waiting.body" '"resumed":"draining"'
for i in $(seq 1 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$SERVER_PID" 2>/dev/null && fail "qesd still running after the drain"
rc=0
wait "$SERVER_PID" || rc=$?
expect_eq "$rc" 0 "qesd exit status after the drain"
expect_contains "$T/qesd.log" '"msg":"drained"'
ok "SIGTERM: in-flight request finished, long-poll resumed, 503 for new work, exit 0"

# Every log line is one JSON object; no secret is in the log.
python3 - "$T/qesd.log" <<'EOF' || fail "log lines are not all JSON objects"
import json, sys
for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    o = json.loads(line)
    assert isinstance(o, dict) and "time" in o and "level" in o and "msg" in o, (n, line)
EOF
expect_not_contains "$T/qesd.log" "$SECRET_TOKEN"
expect_not_contains "$T/qesd.log" "$PEPPER"
expect_contains "$T/qesd.log" '"route":"testing.echo"'
ok "logs: one JSON object per line, no Authorization value, no pepper"

# Overload: one worker, a queue of one.
write_config "$T/small.conf" "workers = 1" "max_queue = 1"
start_qesd "$T/small.conf" "$T/small.log" QESD_ALLOW_TESTING=1
(req ov1 "/testing/slow?ms=1500" > "$T/ov1.code") &
j1=$!
sleep 0.3
(req ov2 "/testing/slow?ms=10" > "$T/ov2.code") &
j2=$!
sleep 0.3
expect_eq "$(req ov3 "/testing/slow?ms=10")" 503 "third request with a full queue"
expect_problem_of ov3 503 overloaded
grep -qi '^retry-after: 1' "$T/ov3.hdr" || fail "503 overloaded without Retry-After"
wait "$j1" "$j2"
expect_eq "$(cat "$T/ov1.code")" 200 "running request"
expect_eq "$(cat "$T/ov2.code")" 200 "queued request"
ok "queue full: 503 overloaded with Retry-After"

# A request that outlives drain_timeout_s does not keep qesd alive.
sed -i 's/^drain_timeout_s = .*/drain_timeout_s = 1/' "$T/small.conf"
stop_qesd 10
start_qesd "$T/small.conf" "$T/small2.log" QESD_ALLOW_TESTING=1
(req stuck "/testing/slow?ms=8000" > /dev/null) &
stuck_job=$!
sleep 0.3
start=$(date +%s)
stop_qesd 5
elapsed=$(( $(date +%s) - start ))
[ "$elapsed" -le 4 ] || fail "drain took ${elapsed}s with drain_timeout_s = 1"
expect_contains "$T/small2.log" "drain timeout"
wait "$stuck_job" || true
ok "drain_timeout_s bounds the drain (exit 0 after ${elapsed}s)"

echo "qesd_tls: all checks passed"
