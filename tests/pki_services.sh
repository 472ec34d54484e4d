# tests/pki_services.sh — sourced by integration tests (after tests/lib.sh) that
# need the test PKI's online services: the RFC 3161 TSA, the OCSP responder and
# the CRL/CA-certificate HTTP server (tests/helpers/pki_services.py).
#
#   . "$QES_SOURCE_DIR/tests/pki_services.sh"
#   qes_pki_services_start            # on the ports in $QES_PKI/pki.env
#   curl ... "$QES_PKI_TSA_URL"       # http://127.0.0.1:PORT/tsa (+ /bad-nonce ...)
#   ...                               # stopped at exit (qes_on_exit), or:
#   qes_pki_services_stop
#
# The certificates name fixed ports (their AIA and CDP), so two tests, or two
# helpers' builds, cannot serve them at the same time: the start takes an
# exclusive lock per HTTP port (flock on $TMPDIR/qes-pki-services-PORT.lock),
# waiting up to QES_PKI_SERVICES_WAIT_S (default 600) seconds, and keeps it
# until the services are stopped.

# qes_pki_services_start [PKI_DIR]
qes_pki_services_start() {
    local pki=${1:-$QES_PKI} wait_s=${QES_PKI_SERVICES_WAIT_S:-600} i
    [ -f "$pki/pki.env" ] || fail "pki_services: no test PKI in $pki"
    # shellcheck disable=SC1091
    . "$pki/pki.env"
    QES_PKI_SERVICES_DIR=$QES_TMP/pki-services
    mkdir -p "$QES_PKI_SERVICES_DIR"
    exec {QES_PKI_SERVICES_LOCK_FD}>"${TMPDIR:-/tmp}/qes-pki-services-$QES_PKI_HTTP_PORT.lock"
    flock -w "$wait_s" "$QES_PKI_SERVICES_LOCK_FD" ||
        fail "pki_services: port $QES_PKI_HTTP_PORT still in use by another test after ${wait_s}s"
    rm -f "$QES_PKI_SERVICES_DIR/ready"
    python3 "$QES_SOURCE_DIR/tests/helpers/pki_services.py" --pki "$pki" \
        --http-port "$QES_PKI_HTTP_PORT" --ocsp-port "$QES_PKI_OCSP_PORT" \
        --work "$QES_PKI_SERVICES_DIR" --ready "$QES_PKI_SERVICES_DIR/ready" \
        >"$QES_PKI_SERVICES_DIR/log" 2>&1 &
    QES_PKI_SERVICES_PID=$!
    qes_on_exit qes_pki_services_stop
    for i in $(seq 100); do
        [ -s "$QES_PKI_SERVICES_DIR/ready" ] && break
        kill -0 "$QES_PKI_SERVICES_PID" 2>/dev/null || {
            cat "$QES_PKI_SERVICES_DIR/log" >&2
            fail "pki_services did not start"
        }
        sleep 0.1
    done
    [ -s "$QES_PKI_SERVICES_DIR/ready" ] || fail "pki_services not ready after 10s"
    QES_PKI_HTTP_URL=http://127.0.0.1:$QES_PKI_HTTP_PORT
    QES_PKI_TSA_URL=$QES_PKI_HTTP_URL/tsa
    QES_PKI_OCSP_URL=http://127.0.0.1:$QES_PKI_OCSP_PORT/ocsp
    export QES_PKI_HTTP_URL QES_PKI_TSA_URL QES_PKI_OCSP_URL
}

# qes_pki_services_stop: stop the services (if running) and release the port lock.
qes_pki_services_stop() {
    if [ -n "${QES_PKI_SERVICES_PID:-}" ]; then
        kill "$QES_PKI_SERVICES_PID" 2>/dev/null || true
        wait "$QES_PKI_SERVICES_PID" 2>/dev/null || true
        QES_PKI_SERVICES_PID=
    fi
    if [ -n "${QES_PKI_SERVICES_LOCK_FD:-}" ]; then
        exec {QES_PKI_SERVICES_LOCK_FD}>&-
        QES_PKI_SERVICES_LOCK_FD=
    fi
}
