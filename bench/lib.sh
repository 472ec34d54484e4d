# shellcheck shell=bash
# bench/lib.sh - the set-up the benchmarks share (sourced, after setting
# BENCH_NAME for messages):
#
#   BENCH_NAME=sessions
#   . "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
#   bench_build qesd qes bench/qes-bench-sign ...   # what is missing, in $build
#   bench_tls                                       # CA + localhost certificate
#   bench_qesd_conf "$T/qesd.conf" "sqlite:$T/qesd.db" "" "extra = lines"
#   bench_tenant "$T/qesd.conf"                     # $T/admin.key
#   bench_qesd_start "$T/qesd.conf" "$OUT/qesd.log" # $BENCH_PID, $BENCH_BASE
#   API_KEY=$(bench_api_key "$BENCH_BASE" sign,devices)
#   bench_api "$BENCH_BASE" "$API_KEY" GET /v1/devices
#
# It sources tests/lib.sh for the scratch directory and the cleanup hooks:
# $T (= $QES_TMP) is removed at exit (QES_KEEP_TMP=1 keeps it), every
# process started here is stopped at exit (qes_on_exit), and the helpers of
# tests/ that build on lib.sh (tests/pg.sh, tests/nats.sh) work in a
# benchmark as they do in a test.
#
# Servers listen on 127.0.0.1 only; TLS 1.3 with a certificate for
# localhost and 127.0.0.1 from a throw-away CA (or the test PKI's root, when
# bench_tls is given one). The qesd configurations here RAISE the rate
# limits (one key and one address send all the load): never copy them to a
# production configuration.

bench_root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
QES_BUILD_DIR=${QES_BUILD_DIR:-$bench_root/build-bench}
build=$QES_BUILD_DIR
# shellcheck source=../tests/lib.sh
. "$bench_root/tests/lib.sh"
T=$QES_TMP

die() { echo "${BENCH_NAME:-bench}: $*" >&2; exit 1; }

bench_need() { # TOOL...: on PATH, or die naming it
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is needed (scripts/deps.sh)"
    done
}

# bench_build PROGRAM...: build the programs (paths relative to the build
# directory; the CMake target is the file name) when one is missing, as
# RelWithDebInfo (-O2, the build CI tests).
bench_build() {
    local p missing='' targets=()
    for p in "$@"; do
        [ -x "$build/$p" ] || missing=1
        targets+=("$(basename -- "$p")")
    done
    if [ -n "$missing" ]; then
        echo "$BENCH_NAME: building in $build" >&2
        cmake -S "$bench_root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
        if ! cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target "${targets[@]}" \
            >"$build/$BENCH_NAME-build.log" 2>&1; then
            tail -n 20 "$build/$BENCH_NAME-build.log" >&2
            die "the build failed (log: $build/$BENCH_NAME-build.log)"
        fi
    fi
    for p in "$@"; do [ -x "$build/$p" ] || die "no $p in $build after the build"; done
}

# bench_testenv: the test PKI and SoftHSM2 tokens, private to this run
# (tests/setup-testenv.sh into $T/testenv); sources tokens.env, sets $PKI.
bench_testenv() {
    bash "$bench_root/tests/setup-testenv.sh" "$T/testenv" >"$T/testenv.log" 2>&1 ||
        { tail -n 20 "$T/testenv.log" >&2; die "tests/setup-testenv.sh failed"; }
    # shellcheck disable=SC1091
    . "$T/testenv/tokens/tokens.env"
    PKI=$T/testenv/pki
}

# bench_tls [CA_PEM CA_KEY]: $T/server.pem and $T/server.key for localhost
# and 127.0.0.1, issued by the given CA or by a throw-away P-256 CA made
# here; $BENCH_CA is the CA certificate clients trust. Also the pepper
# ($T/pepper), which every replica of one store must share.
bench_tls() {
    local ca=${1:-} ca_key=${2:-}
    if [ -z "$ca" ]; then
        ca=$T/ca.pem ca_key=$T/ca.key
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ca_key" \
            -out "$ca" -days 2 -subj "/CN=qes bench CA" >/dev/null 2>&1 ||
            die "openssl could not make the CA"
    fi
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/server.key" \
        -out "$T/server.csr" -subj "/CN=qesd bench" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
        >"$T/server.ext"
    openssl x509 -req -in "$T/server.csr" -CA "$ca" -CAkey "$ca_key" \
        -set_serial "0x$(openssl rand -hex 12)" -days 2 -extfile "$T/server.ext" \
        -out "$T/server.pem" 2>/dev/null || die "openssl could not issue the server certificate"
    chmod 600 "$T/server.key"
    (umask 077 && openssl rand -hex 32 >"$T/pepper")
    BENCH_CA=$ca
}

# bench_qesd_conf FILE STORE [PORT [EXTRA]]: a qesd configuration on
# 127.0.0.1:PORT (a free port when empty; $BENCH_PORT) with the certificate
# of bench_tls, store STORE, $workers worker threads (4), log level info,
# server name localhost and the rate limits raised; the lines of EXTRA are
# appended (keys the file does not set: qesd refuses a key given twice).
bench_qesd_conf() {
    local file=$1 store=$2
    BENCH_PORT=${3:-}
    [ -n "$BENCH_PORT" ] || BENCH_PORT=$(qes_free_port)
    cat >"$file" <<EOF
# $BENCH_NAME benchmark - NOT a production configuration
listen = 127.0.0.1:$BENCH_PORT
tls_cert = $T/server.pem
tls_key = $T/server.key
pepper_file = $T/pepper
store = $store
workers = ${workers:-4}
log_level = info
server_name = localhost
drain_timeout_s = 5
# raised for the benchmark: one key and one address send all the load
rate_key_per_s = 1000000
rate_key_burst = 1000000
rate_ip_per_s = 1000000
rate_ip_burst = 1000000
EOF
    [ -z "${4:-}" ] || printf '%s\n' "$4" >>"$file"
}

# bench_tenant CONF: a tenant "bench" and its admin key in $T/admin.key.
bench_tenant() {
    "$build/qesd" admin --config "$1" tenant create bench >"$T/tenant.out" 2>"$T/tenant.err" ||
        { cat "$T/tenant.err" >&2; die "qesd admin tenant create failed"; }
    (umask 077 && awk '$1 == "api_key:" { print $2 }' "$T/tenant.out" >"$T/admin.key")
    rm -f -- "$T/tenant.out"
    [ -s "$T/admin.key" ] || die "no api_key line from qesd admin tenant create"
}

# bench_stop PID: SIGTERM, SIGKILL after 10 s.
bench_stop() {
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

# bench_qesd_start CONF LOG: qesd serve in the background until /healthz
# answers; $BENCH_PID and $BENCH_BASE (https://localhost:PORT, from the
# configuration's listen line). Stopped at exit if still running.
bench_qesd_start() {
    local conf=$1 log=$2 port pid up=0
    port=$(awk -F: '$1 ~ /^listen *= */ { print $NF }' "$conf" | tr -d ' ')
    "$build/qesd" serve --config "$conf" 2>"$log" &
    pid=$!
    qes_on_exit "bench_stop $pid"
    BENCH_BASE=https://localhost:$port
    for _ in $(seq 1 200); do
        if curl -sS --fail --tlsv1.3 --cacert "$BENCH_CA" -o /dev/null "$BENCH_BASE/healthz" 2>/dev/null; then
            up=1
            break
        fi
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; die "qesd died at start"; }
        sleep 0.05
    done
    [ "$up" = 1 ] || { tail -n 20 "$log" >&2; die "/healthz does not answer"; }
    BENCH_PID=$pid
}

# bench_qesd_stop PID: SIGTERM as an orchestrator sends it; dies unless
# qesd drains and exits 0.
bench_qesd_stop() {
    local rc=0
    kill -TERM "$1"
    wait "$1" || rc=$?
    [ "$rc" = 0 ] || die "qesd exited with $rc after SIGTERM"
}

# bench_api_key BASE SCOPES: a new API key of the tenant (made with its
# admin key), printed.
bench_api_key() {
    local key
    QES_SERVER=$1 QES_CA=$BENCH_CA "$build/qes" keys create --name "$BENCH_NAME" \
        --scope "$2" --key-file "$T/admin.key" >"$T/key.out" 2>"$T/key.err" ||
        { cat "$T/key.err" >&2; die "qes keys create failed"; }
    key=$(awk '$1 == "api_key:" { print $2 }' "$T/key.out")
    rm -f -- "$T/key.out"
    [ -n "$key" ] || die "no API key from qes keys create"
    echo "$key"
}

# bench_api BASE KEY METHOD PATH [JSON]: the answer on stdout, fails on a
# non-2xx. The key goes to curl on stdin, not on its command line.
bench_api() {
    curl -sS --fail-with-body --tlsv1.3 --cacert "$BENCH_CA" -X "$3" \
        -H @- -H 'Content-Type: application/json' ${5:+--data-binary "$5"} "$1$4" \
        <<<"Authorization: Bearer $2"
}

# bench_agent_enroll BASE KEY DIR NAME: a one-time code and `qes-agent
# enroll` into the agent configuration directory DIR.
bench_agent_enroll() {
    local code
    code=$(bench_api "$1" "$2" POST /v1/enrollments '{}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["code"])') ||
        die "POST /v1/enrollments failed"
    "$build/qes-agent" enroll --server "$1" --code "$code" --ca "$BENCH_CA" --config "$3" \
        --name "$4" >"$T/enroll.out" 2>"$T/enroll.err" ||
        { cat "$T/enroll.err" >&2; die "qes-agent enroll failed"; }
}

# bench_agent_start DIR LOG PIN: qes-agent run against the private tokens
# with the test pinentry answering every dialog with PIN ($T/pinentry.script;
# its cursor file is made a directory, so the helper can neither read nor
# advance it and every dialog takes the first line); the transcript in
# $QES_TEST_PINENTRY_LOG (default $T/pinentry.log). $BENCH_AGENT_PID.
bench_agent_start() {
    printf 'pin %s\n' "$3" >"$T/pinentry.script"
    mkdir -p "$T/pinentry.script.pos"
    export QES_TEST_PINENTRY_SCRIPT=$T/pinentry.script
    export QES_TEST_PINENTRY_LOG=${QES_TEST_PINENTRY_LOG:-$T/pinentry.log}
    : >"$QES_TEST_PINENTRY_LOG"
    "$build/qes-agent" run --config "$1" --module "$QES_TEST_MODULE" --only-module \
        --pinentry "$build/tests/qes-test-pinentry" 2>"$2" &
    BENCH_AGENT_PID=$!
    qes_on_exit "bench_stop $BENCH_AGENT_PID"
}

# bench_credential_wait BASE KEY SERIAL KEY_ID: wait until the agent's
# credential is listed; its id on stdout.
bench_credential_wait() {
    local cred=
    for _ in $(seq 1 100); do
        cred=$(bench_api "$1" "$2" GET /v1/credentials 2>/dev/null | python3 -c '
import json, sys
for c in json.load(sys.stdin)["items"]:
    if c["token_serial"] == sys.argv[1] and c["key_id"] == sys.argv[2]:
        print(c["id"])
' "$3" "$4") || true
        [ -n "$cred" ] && break
        kill -0 "$BENCH_AGENT_PID" 2>/dev/null || die "qes-agent died"
        sleep 0.2
    done
    [ -n "$cred" ] || die "the agent's credential $3:$4 is not listed"
    echo "$cred"
}
