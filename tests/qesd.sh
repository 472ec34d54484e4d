# tests/qesd.sh - start, stop and call a real qesd from an integration test.
#
# Source it after lib.sh. The caller sets:
#   QESD  the qesd binary
#   T     the test's temporary directory (responses go to $T/resp)
#   CA    the CA file that verifies qesd's certificate (default: the test
#         PKI's root)
# and gets:
#   start_qesd CONFIG LOG [VAR=VALUE ...]   start in the background with the
#         environment additions given (e.g. QESD_INSECURE_TESTING=1); under
#         valgrind with QES_VALGRIND=1 outside sanitizer builds (a leak or
#         memory error makes the exit status 99); waits for the port qesd
#         logs and for /healthz. Sets SERVER_PID (the process signals go to,
#         and whose status stop_qesd checks) and PORT.
#   stop_qesd [SECONDS]   SIGTERM, then expect exit status 0 within SECONDS
#         (default 30)
#   call KEY METHOD PATH [BODY [CURL ARGS ...]]   one HTTPS request; KEY "-"
#         sends no Authorization. Sets CODE (the status), BODY and HDR (files
#         holding the body and the headers) and N (the request's number).
#   expect_problem STATUS NAME   the last response is an RFC 9457 problem
#         with that status and type urn:qes:problem:NAME.

CA=${CA:-$QES_PKI/root-ca.pem}
N=${N:-0}
SERVER_PID=
PORT=

start_qesd() {
    local cfg=$1 log=$2 i vg=()
    shift 2
    if [ "${QES_VALGRIND:-0}" = 1 ] && [ "${QES_SANITIZE:-0}" != 1 ]; then
        vg=(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect
            --errors-for-leak-kinds=definite,indirect --error-exitcode=99
            --suppressions="$QES_SOURCE_DIR/tests/valgrind.supp")
    fi
    # a simple command (env and valgrind exec what follows), so that $! is
    # qesd itself: SIGTERM reaches it and its exit status is seen
    env "$@" "${vg[@]}" "$QESD" serve --config "$cfg" > /dev/null 2> "$log" &
    SERVER_PID=$!
    qes_on_exit "kill -KILL $SERVER_PID"
    PORT=
    for i in $(seq 1 400); do
        PORT=$(grep -o '"msg":"listening".*"port":[0-9]*' "$log" 2>/dev/null |
            grep -o '"port":[0-9]*' | head -n 1 | cut -d: -f2) || true
        [ -n "$PORT" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; fail "qesd died at start"; }
        sleep 0.05
    done
    [ -n "$PORT" ] || { cat "$log" >&2; fail "qesd did not report its port"; }
    for i in $(seq 1 100); do
        curl -sS -o /dev/null --cacert "$CA" "https://localhost:$PORT/healthz" \
            2>/dev/null && return 0
        sleep 0.1
    done
    cat "$log" >&2
    fail "qesd did not answer /healthz"
}

stop_qesd() {
    local secs=${1:-30} i rc=0
    kill -TERM "$SERVER_PID"
    for i in $(seq 1 $((secs * 10))); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$SERVER_PID" 2>/dev/null && fail "qesd still running ${secs}s after SIGTERM"
    wait "$SERVER_PID" || rc=$?
    expect_eq "$rc" 0 "qesd exit status after SIGTERM"
}

call() {
    local key=$1 method=$2 path=$3 body=${4-} args=()
    shift 3
    [ $# -gt 0 ] && shift
    N=$((N + 1))
    mkdir -p "$T/resp"
    BODY=$T/resp/$N.body
    HDR=$T/resp/$N.hdr
    [ "$key" != - ] && args+=(-H "Authorization: Bearer $key")
    if [ -n "$body" ]; then
        printf '%s' "$body" > "$T/resp/$N.req"
        args+=(-H "Content-Type: application/json" --data-binary @"$T/resp/$N.req")
    elif [ "$method" = POST ]; then
        args+=(-H "Content-Length: 0")     # qesd wants a length on every POST
    fi
    CODE=$(curl -sS --cacert "$CA" -X "$method" -o "$BODY" -D "$HDR" \
        -w '%{http_code}' "${args[@]}" "$@" "https://localhost:$PORT$path") || true
}

expect_problem() {
    local got
    got=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); print(p.get("status"), p.get("type"))' "$BODY") ||
        fail "response $BODY is not JSON"
    expect_eq "$got" "$1 urn:qes:problem:$2" "problem of response $N"
    grep -qi '^content-type: application/problem+json' "$HDR" ||
        fail "response $N is not application/problem+json"
}
