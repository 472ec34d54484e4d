# tests/nats.sh — a private nats-server for one test (source after lib.sh).
#
#   . "$QES_SOURCE_DIR/tests/nats.sh"
#   start_nats                   # server on 127.0.0.1, stopped at exit
#   qesd ... bus = nats:$NATS_URL
#   stop_nats; restart_nats      # take it away and bring it back (same port)
#
# The server listens on 127.0.0.1 on a free port, with no monitoring port (no
# -m), no cluster and no JetStream (both off unless asked for): the qesd bus
# uses plain core NATS publish/subscribe and request/reply.  Its log goes to
# $QES_TMP/nats/server.log.  start_nats [--auth TOKEN] makes the server require
# a token (the client then connects to nats://TOKEN@127.0.0.1:PORT or sets
# bus_token), so a test can check that the token never reaches a log.
#
# Exports NATS_PORT, NATS_URL (nats://127.0.0.1:PORT, without the token) and
# NATS_PID (the running server; empty while stopped).

NATS_SERVER_BIN=${NATS_SERVER_BIN:-$(command -v nats-server || echo /usr/bin/nats-server)}
NATS_PID=
NATS_PORT=
NATS_URL=
NATS_DIR=
NATS_AUTH=()

# start_nats [--auth TOKEN]: start a server on a free port and wait until it
# accepts connections; register its stop with qes_on_exit.
start_nats() {
    [ -x "$NATS_SERVER_BIN" ] || fail "no nats-server (apt-get install nats-server; scripts/deps.sh)"
    NATS_AUTH=()
    if [ "${1:-}" = --auth ]; then
        [ -n "${2:-}" ] || fail "start_nats --auth needs a token"
        NATS_AUTH=(--auth "$2")
    fi
    NATS_DIR=$QES_TMP/nats
    mkdir -p -- "$NATS_DIR"
    NATS_PORT=$(qes_free_port)
    NATS_URL="nats://127.0.0.1:$NATS_PORT"
    export NATS_PORT NATS_URL
    qes_on_exit "stop_nats"
    restart_nats
}

# restart_nats: start the (stopped) server again on the same port.
restart_nats() {
    local i
    [ -z "$NATS_PID" ] || fail "restart_nats: nats-server $NATS_PID still running"
    : > "$NATS_DIR/server.log"
    # the token is on the command line: fine for a private test server (the
    # process list of a CI runner is not a secret store); production servers
    # read theirs from a config file (docs/deployment.md)
    "$NATS_SERVER_BIN" -a 127.0.0.1 -p "$NATS_PORT" "${NATS_AUTH[@]}" \
        -l "$NATS_DIR/server.log" > /dev/null 2>&1 &
    NATS_PID=$!
    export NATS_PID
    for i in $(seq 1 200); do
        if grep -q 'Server is ready' "$NATS_DIR/server.log" 2>/dev/null &&
            (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; then
            return 0
        fi
        kill -0 "$NATS_PID" 2>/dev/null || {
            cat "$NATS_DIR/server.log" >&2
            NATS_PID=
            fail "nats-server died at start (port $NATS_PORT)"
        }
        sleep 0.05
    done
    cat "$NATS_DIR/server.log" >&2
    fail "nats-server did not accept connections on port $NATS_PORT"
}

# stop_nats: stop the server now (SIGTERM, then SIGKILL after 5 s) and reap it.
stop_nats() {
    local i
    [ -n "${NATS_PID:-}" ] || return 0
    kill -TERM "$NATS_PID" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$NATS_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$NATS_PID" 2>/dev/null || true
    wait "$NATS_PID" 2>/dev/null || true
    NATS_PID=
    export NATS_PID
}
