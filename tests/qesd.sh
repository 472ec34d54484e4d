# tests/qesd.sh - start, stop and call a real qesd from an integration test.
#
# Source it after lib.sh. The caller sets:
#   QESD  the qesd binary (default: the build's)
#   T     the test's temporary directory (responses go to $T/resp)
#   CA    the CA file that verifies qesd's certificate (default: the test
#         PKI's root)
# and gets:
#   start_qesd CONFIG LOG [VAR=VALUE ...]   start in the background with the
#         environment additions given (e.g. QESD_INSECURE_TESTING=1); under
#         valgrind with QES_VALGRIND=1 outside sanitizer builds (a leak or
#         memory error makes the exit status 99); waits for the port qesd
#         logs and for /healthz; the log is appended to (a restart keeps
#         what the run before wrote). Sets SERVER_PID (the process signals go to,
#         and whose status stop_qesd checks) and PORT.
#   stop_qesd [SECONDS]   SIGTERM, then expect exit status 0 within SECONDS
#         (default 30); on pgnats, the database password is not in its log
#   call KEY METHOD PATH [BODY [CURL ARGS ...]]   one HTTPS request; KEY "-"
#         sends no Authorization. Sets CODE (the status), BODY and HDR (files
#         holding the body and the headers) and N (the request's number).
#   expect_problem STATUS NAME   the last response is an RFC 9457 problem
#         with that status and type urn:qes:problem:NAME.
#   check STATUS WHAT KEY METHOD PATH [BODY [CURL ARGS ...]]   call, and
#         fail (with the body) unless the status is STATUS
#   jget EXPR   a Python expression over the last response's JSON (v)
#   jfield FILE NAME   a top-level member of a JSON file (empty when null or
#         absent; lists and objects as JSON)
#   admin_tenant NAME   `qesd admin tenant create NAME` with $T/qesd.conf
#         (QESD_INSECURE_TESTING=1, for a testing clock); sets ADMIN_KEY and
#         TENANT_ID
#   advance_clock MS   move the testing clock ($T/clock, the configuration's
#         insecure_testing_clock_file; OFFSET_MS is its value) on by MS and
#         give qesd the 100 ms it takes to re-read it
#   qesd_tls_files DIR [CN]   DIR/server.key and DIR/server.pem (localhost
#         and 127.0.0.1, issued by the test PKI's root) and DIR/pepper
#   enroll_agent SERVER CODE CONFIG [NAME]   `qes-agent enroll` into the
#         directory CONFIG (output $T/enroll.out, .err); sets DEVICE
#   start_agent CONFIG PINENTRY [LOG]   `qes-agent run` on the private
#         SoftHSM2 module (qes_private_tokens) in the background, appending to
#         LOG (default $T/agent.log), under valgrind with QES_VALGRIND=1; sets
#         AGENT_PID (killed at exit, also when stopped)
#   wait_credential KEY [CERT]   poll GET /v1/credentials (up to 30 s) until token
#         A's key 02 is listed (with CERT's SHA-256 if given); sets CRED
#   poll_job KEY ID TRIES WAIT_S [STATE]   long-poll GET /v1/signatures/ID
#         (?wait=WAIT_S, each answered 200) up to TRIES times until the job is
#         final or in STATE; sets JOB_STATE ($BODY holds the job)
#   qesd_need [TOOL ...]   fail unless qesd is built, the test PKI is there
#         and each TOOL is installed
#   qesd_base_conf FILE DIR LISTEN   write FILE: qesd on LISTEN with DIR's
#         qesd_tls_files and the store sqlite:DIR/qesd.db, log level info,
#         drain_timeout_s 2 (append the test's own lines)
#   qesd_replica_conf FILE NAME LISTEN   write FILE: the replica NAME on
#         LISTEN with $T's qesd_tls_files, the store postgres:$QES_PG_URL
#         (tests/pg.sh), 4 workers, key_cache_ttl_ms 0 (append the rest)
#   qesd_pinentry   $T/pinentry.sh for start_agent: the scripted pinentry
#         (tests/helpers/qes-test-pinentry) recording each dialog's process id
#         in $T/pinentry.pids; exports QES_TEST_PINENTRY_SCRIPT and _LOG
#   pinentry_script LINE ...   the next dialogs' script (the pid list emptied)
#   qesd_with_agent NAME [EXTRA_CONF]   qesd and an enrolled agent (below)
#
# The backend: QES_TEST_BACKEND=sqlite (the default) runs qesd as the test
# writes it, on its SQLite file and the in-process bus; QES_TEST_BACKEND=pgnats
# runs the same test on a private PostgreSQL cluster (tests/pg.sh) and a private
# nats-server (tests/nats.sh), both started on first use in the test's temporary
# directory and stopped by its exit hooks.  Tests write `store = sqlite:PATH`
# as always and get, backend-neutral:
#   qesd_conf FILE   before the first qesd command on FILE (admin or serve;
#         start_qesd calls it too): on pgnats, rewrites the store line to a
#         database of its own for PATH (the same PATH always gets the same
#         database, two paths two databases) and adds `bus = nats:URL`; on
#         sqlite, nothing.  QESD_STORE=sqlite:PATH given to start_qesd is
#         mapped the same way.
#   db_query PATH SQL [ARG...]   run SQL on the store of PATH, each ? in it
#         replaced by the next ARG as a string literal; rows as sqlite3 prints
#         them by default (columns separated by |, NULL empty) - on PostgreSQL
#         booleans print t/f, so select integers (CASE, ::int) where it matters
#   db_value PATH SQL [ARG...]   the first row only (empty if none)
#   db_dump PATH   the whole store as SQL text (sqlite3 .dump, pg_dump), to
#         grep it for secrets and documents
#   db_blob HEX   a blob literal for SQL (X'..' or '\x..'::bytea)
#   db_drop_trigger PATH TABLE NAME   drop a trigger (to tamper with a
#         table qesd guards)

QESD=${QESD:-$QES_BUILD_DIR/qesd}
CA=${CA:-$QES_PKI/root-ca.pem}
N=${N:-0}
SERVER_PID=
SERVER_LOG=
PORT=
QES_TEST_BACKEND=${QES_TEST_BACKEND:-sqlite}
case $QES_TEST_BACKEND in
    sqlite | pgnats) ;;
    *) fail "QES_TEST_BACKEND is '$QES_TEST_BACKEND': sqlite or pgnats" ;;
esac
export QES_TEST_BACKEND

# qesd_backend_up: on pgnats, start PostgreSQL and nats-server unless they run.
# Their exit hooks belong to the test's own shell: the first call must not be
# in a subshell ($(...)); qesd_conf and start_qesd make it.
qesd_backend_up() {
    [ "$QES_TEST_BACKEND" = pgnats ] || return 0
    [ -n "${QES_PG_URL:-}" ] && [ -n "${NATS_URL:-}" ] && return 0
    [ "$BASH_SUBSHELL" = 0 ] ||
        fail "qesd_backend_up: the first qesd_conf/start_qesd must run in the test's shell"
    # shellcheck source=tests/pg.sh
    . "$QES_SOURCE_DIR/tests/pg.sh"
    # shellcheck source=tests/nats.sh
    . "$QES_SOURCE_DIR/tests/nats.sh"
    qes_pg_start "$QES_TMP/backend-pg"
    start_nats
    : >"$QES_TMP/backend-dbs"
}

# qesd_backend_db PATH: the PostgreSQL database that stands for the SQLite
# file PATH (made on first use; listed in $QES_TMP/backend-dbs as NAME PATH).
qesd_backend_db() {
    local path name
    path=$(realpath -m -- "$1")
    name=$(awk -v p="$path" 'substr($0, index($0, " ") + 1) == p { print $1; exit }' \
        "$QES_TMP/backend-dbs")
    if [ -z "$name" ]; then
        name=qes_$(($(wc -l <"$QES_TMP/backend-dbs") + 1))
        qes_pg_as_owner "$QES_PG_BIN/createdb" -h "$QES_PG_DIR" -p "$QES_PG_PORT" \
            -U qes -O qes "$name" || fail "createdb $name (for $path)"
        printf '%s %s\n' "$name" "$path" >>"$QES_TMP/backend-dbs"
    fi
    printf '%s\n' "$name"
}

# qesd_backend_store SPEC: the store to use for SPEC (sqlite:PATH or other)
qesd_backend_store() {
    case $QES_TEST_BACKEND:$1 in
        pgnats:sqlite:*)
            printf 'postgres:postgresql://qes:%s@127.0.0.1:%s/%s\n' "$QES_PG_PASSWORD" \
                "$QES_PG_PORT" "$(qesd_backend_db "${1#sqlite:}")" ;;
        *) printf '%s\n' "$1" ;;
    esac
}

qesd_conf() {
    local f=$1 line spec out
    [ "$QES_TEST_BACKEND" = pgnats ] || return 0
    [ -f "$f" ] || fail "qesd_conf: no file $f"
    case $(realpath -- "$f") in
        "$(realpath -- "$QES_TMP")"/*) ;;
        *) fail "qesd_conf: $f is not in the test's directory: it is rewritten in place" ;;
    esac
    qesd_backend_up
    out=$f.backend
    : >"$out"
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ $line =~ ^[[:space:]]*store[[:space:]]*=[[:space:]]*(sqlite:.*[^[:space:]])[[:space:]]*$ ]]; then
            spec=$(qesd_backend_store "${BASH_REMATCH[1]}") || exit 1
            line="store = $spec"
        fi
        printf '%s\n' "$line" >>"$out"
    done <"$f"
    grep -q '^[[:space:]]*bus[[:space:]]*=' "$out" || printf 'bus = nats:%s\n' "$NATS_URL" >>"$out"
    chmod --reference="$f" "$out"
    mv -f -- "$out" "$f"
}

# db_query PATH SQL [ARG...]: see above.
db_query() {
    local path=$1 q=$2 sql='' a
    shift 2
    for a in "$@"; do
        [[ $q == *'?'* ]] || fail "db_query: more arguments than ? in: $2"
        sql+="${q%%\?*}'${a//\'/\'\'}'"
        q=${q#*\?}
    done
    sql+=$q
    if [ "$QES_TEST_BACKEND" = pgnats ]; then
        printf '%s\n' "$sql" | qes_pg_as_owner "$QES_PG_BIN/psql" -h "$QES_PG_DIR" \
            -p "$QES_PG_PORT" -U qes -d "$(qesd_backend_db "$path")" -X -q \
            -v ON_ERROR_STOP=1 -At -f -
    else
        # qesd writes meanwhile: wait for its lock as qesd's own busy timeout does
        sqlite3 -batch -cmd '.timeout 10000' "$path" "$sql"
    fi
}

# db_value PATH SQL [ARG...]: see above.
db_value() {
    db_query "$@" | awk 'NR == 1'
}

# db_dump PATH: see above.
db_dump() {
    if [ "$QES_TEST_BACKEND" = pgnats ]; then
        qes_pg_as_owner "$QES_PG_BIN/pg_dump" -h "$QES_PG_DIR" -p "$QES_PG_PORT" \
            -U qes --no-owner "$(qesd_backend_db "$1")"
    else
        sqlite3 -batch -cmd '.timeout 10000' "$1" .dump
    fi
}

# db_drop_trigger PATH TABLE NAME: see above.
db_drop_trigger() {
    if [ "$QES_TEST_BACKEND" = pgnats ]; then
        db_query "$1" "DROP TRIGGER $3 ON $2"
    else
        db_query "$1" "DROP TRIGGER $3"
    fi
}

# db_blob HEX: see above.
db_blob() {
    if [ "$QES_TEST_BACKEND" = pgnats ]; then
        printf "'\\\\x%s'::bytea\n" "$1"
    else
        printf "X'%s'\n" "$1"
    fi
}

start_qesd() {
    local cfg=$1 log=$2 i from vg=()
    shift 2
    if [ "${QES_VALGRIND:-0}" = 1 ] && [ "${QES_SANITIZE:-0}" != 1 ]; then
        vg=(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect
            --errors-for-leak-kinds=definite,indirect --error-exitcode=99
            --suppressions="$QES_SOURCE_DIR/tests/valgrind.supp")
    fi
    # a simple command (env and valgrind exec what follows), so that $! is
    # qesd itself: SIGTERM reaches it and its exit status is seen
    qesd_conf "$cfg"
    if [ "$QES_TEST_BACKEND" = pgnats ]; then
        for i in $(seq 1 $#); do
            if [[ ${!i} == QESD_STORE=sqlite:* ]]; then
                set -- "${@:1:i-1}" "QESD_STORE=$(qesd_backend_store "${!i#QESD_STORE=}")" "${@:i+1}"
            fi
        done
    fi
    # appended: a restart keeps the earlier run's log; only what this run
    # writes (from byte $from on) tells its port
    from=$(($(stat -c %s -- "$log" 2>/dev/null || echo 0) + 1))
    env "$@" "${vg[@]}" "$QESD" serve --config "$cfg" > /dev/null 2>> "$log" &
    SERVER_PID=$!
    SERVER_LOG=$log
    qes_on_exit "kill -KILL $SERVER_PID"
    PORT=
    for i in $(seq 1 400); do
        PORT=$(tail -c +"$from" -- "$log" 2>/dev/null | grep -o '"msg":"listening".*"port":[0-9]*' |
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
    # on pgnats the store URL in the configuration holds the password
    [ "$QES_TEST_BACKEND" != pgnats ] || expect_not_contains "$SERVER_LOG" "$QES_PG_PASSWORD"
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

check() {
    local want=$1 what=$2
    shift 2
    call "$@"
    [ "$CODE" = "$want" ] || { cat "$BODY" >&2 2>/dev/null; fail "$what: expected $want, got $CODE"; }
}

jget() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$BODY" "$1"; }

jfield() {
    python3 -c 'import json,sys
v = json.load(open(sys.argv[1])).get(sys.argv[2])
print("" if v is None else (json.dumps(v) if isinstance(v, (list, dict)) else v))' "$1" "$2"
}

admin_tenant() {
    local out=$T/admin-$1.out
    QESD_INSECURE_TESTING=1 "$QESD" admin --config "$T/qesd.conf" tenant create "$1" \
        >"$out" 2>"$T/admin-$1.err" ||
        { cat "$T/admin-$1.err" >&2; fail "qesd admin tenant create $1"; }
    ADMIN_KEY=$(awk '$1 == "api_key:" { print $2 }' "$out")
    TENANT_ID=$(awk '$1 == "tenant_id:" { print $2 }' "$out")
    [ -n "$ADMIN_KEY" ] && [ -n "$TENANT_ID" ] || fail "no key in qesd admin output"
}

OFFSET_MS=${OFFSET_MS:-0}
advance_clock() {
    OFFSET_MS=$((OFFSET_MS + $1))
    echo "$OFFSET_MS" >"$T/clock.new"
    mv "$T/clock.new" "$T/clock"
    sleep 0.3
}

qesd_tls_files() {
    local dir=$1 cn=${2:-localhost}
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/server.key" \
        -out "$dir/server.csr" -subj "/CN=$cn" 2>/dev/null || fail "server key"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' \
        >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$QES_PKI/root-ca.pem" \
        -CAkey "$QES_PKI/root-ca.key" -set_serial "0x$(openssl rand -hex 12)" -days 2 \
        -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null || fail "server certificate"
    chmod 600 "$dir/server.key"
    openssl rand -hex 32 >"$dir/pepper"
    chmod 600 "$dir/pepper"
}

enroll_agent() {
    local opt=()
    [ -z "${4:-}" ] || opt=(--name "$4")
    "$QES_AGENT" enroll --server "$1" --code "$2" --ca "$CA" --config "$3" "${opt[@]}" \
        >"$T/enroll.out" 2>"$T/enroll.err" || { cat "$T/enroll.err" >&2; fail "qes-agent enroll"; }
    # shellcheck disable=SC2034  # for the test
    DEVICE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["device_id"])' \
        "$3/enrollment.json") || fail "no device id in $3/enrollment.json"
}

start_agent() {
    local cfg=$1 pe=$2 log=${3:-$T/agent.log} vg=()
    if [ "${QES_VALGRIND:-0}" = 1 ] && [ "${QES_SANITIZE:-0}" != 1 ]; then
        vg=(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect
            --errors-for-leak-kinds=definite,indirect --error-exitcode=99
            --suppressions="$QES_SOURCE_DIR/tests/valgrind.supp")
    fi
    # a simple command, so that $! is the agent itself (signals reach it)
    "${vg[@]}" "$QES_AGENT" run --config "$cfg" --module "$QES_TEST_MODULE" --only-module \
        --pinentry "$pe" 2>>"$log" &
    AGENT_PID=$!
    qes_on_exit "kill -CONT $AGENT_PID; kill -KILL $AGENT_PID"
}

wait_credential() {
    local key=$1 sha='' _
    [ -z "${2:-}" ] || sha=$(openssl x509 -in "$2" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)
    CRED=
    for _ in $(seq 1 150); do
        call "$key" GET /v1/credentials
        if [ "$CODE" = 200 ]; then
            CRED=$(python3 - "$BODY" "$QES_TOKEN_A_SERIAL" 02 "$sha" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1]))["items"]:
    if c["token_serial"] == sys.argv[2] and c["key_id"] == sys.argv[3] and \
            sys.argv[4] in ("", c["certificate_sha256"]):
        print(c["id"])
        break
PY
)
            [ -n "$CRED" ] && return 0
        fi
        sleep 0.2
    done
    tail -n 20 "$T/agent.log" >&2 2>/dev/null
    fail "GET /v1/credentials on port $PORT never listed token A's key 02"
}

poll_job() {
    local _
    JOB_STATE=
    for _ in $(seq 1 "$3"); do
        call "$1" GET "/v1/signatures/$2?wait=$4"
        [ "$CODE" = 200 ] || { cat "$BODY" >&2 2>/dev/null; fail "GET /v1/signatures/$2: $CODE"; }
        JOB_STATE=$(jfield "$BODY" state)
        case $JOB_STATE in completed | failed | cancelled | expired | "${5:-final}") return 0 ;; esac
    done
}

qesd_need() {
    [ -x "$QESD" ] || fail "no qesd binary at $QESD"
    [ -f "$QES_PKI/root-ca.key" ] || fail "no test PKI in $QES_PKI (run tests/setup-testenv.sh)"
    qes_need "$@"
}

qesd_base_conf() {
    cat >"$1" <<CONF
listen = $3
tls_cert = $2/server.pem
tls_key = $2/server.key
pepper_file = $2/pepper
store = sqlite:$2/qesd.db
log_level = info
drain_timeout_s = 2
server_name = localhost
CONF
}

qesd_replica_conf() {
    cat >"$1" <<CONF
listen = $3
tls_cert = $T/server.pem
tls_key = $T/server.key
pepper_file = $T/pepper
store = postgres:$QES_PG_URL
server_name = localhost
replica_name = $2
workers = 4
key_cache_ttl_ms = 0
CONF
}

qesd_pinentry() {
    cat >"$T/pinentry.sh" <<EOF
#!/bin/sh
echo \$\$ >>"$T/pinentry.pids"
exec "$QES_BUILD_DIR/tests/qes-test-pinentry"
EOF
    chmod 755 "$T/pinentry.sh"
    export QES_TEST_PINENTRY_SCRIPT=$T/pinentry.script QES_TEST_PINENTRY_LOG=$T/pinentry.log
}

pinentry_script() {
    printf '%s\n' "$@" >"$QES_TEST_PINENTRY_SCRIPT"
    rm -f "$QES_TEST_PINENTRY_SCRIPT.pos" "$QES_TEST_PINENTRY_LOG"
    : >"$T/pinentry.pids"
}

# qesd_with_agent NAME [EXTRA_CONF]: the stage of a test that signs through
# the gateway, built in the current directory (the test's $T): a localhost
# certificate from the test PKI, qesd.conf (store qesd.db: see qesd_conf; the lines
# of the file EXTRA_CONF appended), a tenant NAME, qesd started (start_qesd,
# log qesd.log), an API key with the scopes sign and devices (sign.key), an
# enrolled qes-agent (config agent/) running on the private SoftHSM2 tokens
# with the scripted pinentry (qesd_pinentry; log agent.log), and the
# credential of token A's P-256 key (qual-p256). Needs qes_private_tokens
# first. Sets SERVER, KEY, CRED, AGENT_PID; pinentry_script LINE... rewrites
# the dialog's script.
qesd_with_agent() {
    local name=$1 extra=${2:-} enroll
    qesd_tls_files "$PWD" "qesd $name"
    qesd_base_conf qesd.conf "$PWD" 127.0.0.1:0
    [ -z "$extra" ] || cat "$extra" >>qesd.conf
    qesd_conf qesd.conf
    "$QESD" admin --config qesd.conf tenant create "$name" >tenant.out 2>tenant.err ||
        { cat tenant.err >&2; fail "tenant create"; }
    awk '$1 == "api_key:" { print $2 }' tenant.out >admin.key
    chmod 600 admin.key
    start_qesd qesd.conf qesd.log
    SERVER="https://localhost:$PORT"
    QES_SERVER=$SERVER QES_CA=$CA "$QES_CLI" keys create --name "$name" --scope sign,devices \
        --key-file admin.key >key.out 2>key.err || { cat key.err >&2; fail "keys create"; }
    awk '$1 == "api_key:" { print $2 }' key.out >sign.key
    chmod 600 sign.key
    KEY=$(cat sign.key)
    call "$KEY" POST /v1/enrollments '{}'
    expect_eq "$CODE" 201 "POST /v1/enrollments"
    enroll=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["code"])' "$BODY")
    enroll_agent "$SERVER" "$enroll" agent "$name desktop"
    qesd_pinentry
    pinentry_script "pin $QES_TOKEN_A_PIN"
    start_agent agent "$T/pinentry.sh" "$T/agent.log"
    wait_credential "$KEY" "$QES_PKI/qual-p256.pem"
}
