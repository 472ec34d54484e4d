#!/usr/bin/env bash
# qesd_fdlimit.sh - qesd raises its soft RLIMIT_NOFILE to the hard limit at
# start (src/qesd/fdlimit.c): every agent WebSocket is a descriptor, and
# libwebsockets sizes its connection table from the limit qesd starts with.
#
# qesd is started with a soft limit of 256 (the hard limit as it is); then
# it must run with soft = hard, say so in its log, and hold 400 open
# keep-alive TLS connections (each has made one request) while a new
# client is still served. Without the raise, the 250-odd-th connection
# fails with EMFILE and the server spins on its listening socket.
#
# Then qesd runs at a hard limit of 256: it must stop accepting at 192 TLS
# connections (the limit less 64 for its own files) instead of failing
# accept() with EMFILE in a loop (a million log lines in seconds, and no
# answer to anyone), and serve again once they close.
. "$(dirname -- "$0")/../lib.sh"
T=$(qes_tmpdir)
. "$(dirname -- "$0")/../qesd.sh"
qesd_need python3 prlimit
mkdir -p "$T/resp"
if [ "${QES_VALGRIND:-0}" = 1 ] && [ "${QES_SANITIZE:-0}" != 1 ]; then
    # valgrind keeps descriptors of its own at the top of the limit and
    # emulates setrlimit: what qesd gets there is valgrind's, not the kernel's
    ok "SKIP under valgrind: it manages the descriptor limit itself"
    exit 0
fi
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 1024 ]; then
    ok "SKIP: the hard RLIMIT_NOFILE is $hard, too low to tell 256 from raised"
    exit 0
fi

qesd_tls_files "$T"
qesd_base_conf "$T/qesd.conf" "$T" "127.0.0.1:$(qes_free_port)"

# hold TRY LEAST MOST TIMEOUT_S WHEN: open keep-alive TLS connections to
# qesd on $PORT, one GET /healthz answered 200 on each, until TRY are held or
# one fails (not accepted or answered within TIMEOUT_S); fail unless LEAST to
# MOST were held. Then one more client must be served: WHEN "held" while
# they are all open, "closed" after they are closed.
cat >"$T/hold.py" <<'EOF'
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
tries, least, most = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
timeout, when = float(sys.argv[6]), sys.argv[7]
ctx = ssl.create_default_context(cafile=ca)
req = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"
def one(t):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=t),
                        server_hostname="localhost")
    s.sendall(req)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed before an answer")
        data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise SystemExit("unexpected answer %r" % data[:40])
    return s
held = []
err = "none failed"
try:
    while len(held) < tries:
        held.append(one(timeout))
except OSError as e:
    err = e
if not least <= len(held) <= most:
    raise SystemExit("%d connections held (expected %d..%d): %s" % (len(held), least, most, err))
if when == "held":
    one(10).close()
for s in held:
    s.close()
if when == "closed":
    one(10).close()
print("held %d, one more served with them %s" % (len(held), when))
EOF
hold() {
    python3 "$T/hold.py" "$PORT" "$CA" "$@"
}

# qesd inherits a soft limit of 256; this shell gets its own back after.
soft=$(ulimit -Sn)
ulimit -Sn 256
start_qesd "$T/qesd.conf" "$T/qesd.log"
ulimit -Sn "$soft"

read -r got_soft got_hard < <(awk '/^Max open files/ { print $4, $5 }' "/proc/$SERVER_PID/limits")
expect_eq "$got_soft" "$got_hard" "qesd's soft RLIMIT_NOFILE (hard $got_hard)"
ok "qesd started with a soft limit of 256 runs with soft = hard ($got_hard)"
expect_contains "$T/qesd.log" '"msg":"open-file limit"'
ok "the log says which open-file limit qesd runs with"

# 400 keep-alive connections, one request each, held open; then one more
# client. (The generator runs with this shell's limit, not 256.)
hold 400 400 400 10 held || fail "qesd did not hold 400 connections and serve one more"
ok "400 keep-alive connections held and a new client served"
stop_qesd
if [ "$(grep -c 'errno 24' "$T/qesd.log" || true)" != 0 ]; then
    fail "qesd ran out of descriptors (EMFILE in its log)"
fi
ok "no EMFILE in the log"

# ---------------------------------------------------------------------------
# At the hard limit: 256 descriptors, so 192 TLS connections at most.
printf '#!/bin/sh\nexec prlimit --nofile=256:256 %s "$@"\n' "$QES_BUILD_DIR/qesd" > "$T/qesd-256"
chmod +x "$T/qesd-256"
# shellcheck disable=SC2034  # start_qesd runs $QESD
QESD=$T/qesd-256
start_qesd "$T/qesd.conf" "$T/qesd-256.log"
hold 300 150 192 2 closed || fail "qesd at its descriptor limit: more than 256 - 64 connections, or fewer than 150"
ok "at a hard limit of 256 qesd holds at most 192 connections, then serves again"
stop_qesd
n=$(grep -c 'errno 24' "$T/qesd-256.log" || true)
expect_eq "$n" 0 "EMFILE lines in the log at the limit"
ok "no accept() loop on EMFILE at the limit"
