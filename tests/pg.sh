# tests/pg.sh — a private PostgreSQL cluster for one test (source after lib.sh).
#
#   . "$QES_SOURCE_DIR/tests/pg.sh"
#   qes_pg_start                 # cluster in $QES_TMP/pg, stopped at exit
#   qesd ... store = postgres:$QES_PG_URL
#   qes_pg_stop; qes_pg_restart  # take it away and bring it back (same port)
#
# The cluster listens on 127.0.0.1 on a free port and on a unix socket in its
# own directory, with one database "qes" owned by user "qes" whose password is
# random per test (scram-sha-256 over TCP), so a test can check that the
# password never reaches a log.  initdb refuses to run as root: as root (CI, a
# container) the server runs as the "postgres" user of the Debian package,
# through setpriv; as anyone else it runs as that user.  fsync is off: a test
# cluster needs no durability against power loss, and the machine is shared.

QES_PG_BIN=${QES_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

# Run a PostgreSQL program as the cluster's owner.
qes_pg_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups --reset-env -- \
            env PATH="$QES_PG_BIN:/usr/bin:/bin" "$@"
    else
        "$@"
    fi
}

# qes_pg_start [DIR]: initdb DIR (default $QES_TMP/pg), start the server, create
# user and database qes; exports QES_PG_DIR, QES_PG_PORT, QES_PG_PASSWORD and
# QES_PG_URL (postgresql://qes:PASSWORD@127.0.0.1:PORT/qes).
qes_pg_start() {
    local dir=${1:-$QES_TMP/pg}
    [ -x "$QES_PG_BIN/initdb" ] || fail "no PostgreSQL server (apt-get install postgresql)"
    mkdir -p -- "$dir"
    QES_PG_DIR=$(cd -- "$dir" && pwd)
    QES_PG_PORT=$(qes_free_port)
    QES_PG_PASSWORD=$(openssl rand -hex 16)
    if [ "$(id -u)" -eq 0 ]; then
        # the owner must reach its directory: let it through the test's own
        # tree (nothing above $QES_TMP is changed)
        local d=$QES_PG_DIR
        while :; do
            chmod o+x -- "$d"
            [ "$d" = "$QES_TMP" ] || [ "$d" = / ] && break
            d=$(dirname -- "$d")
        done
        chown postgres: -- "$QES_PG_DIR"
        qes_pg_as_owner test -w "$QES_PG_DIR" ||
            fail "user postgres cannot reach $QES_PG_DIR: set TMPDIR to a directory it can traverse"
    fi
    chmod 0700 -- "$QES_PG_DIR"
    printf '%s\n' "$QES_PG_PASSWORD" > "$QES_TMP/pg.pw"
    chmod 0644 "$QES_TMP/pg.pw"
    qes_pg_as_owner "$QES_PG_BIN/initdb" -D "$QES_PG_DIR/data" -U qes \
        --pwfile="$QES_TMP/pg.pw" --auth-local=trust --auth-host=scram-sha-256 \
        --no-sync -E UTF8 --locale=C >"$QES_TMP/pg-initdb.log" 2>&1 ||
        { cat "$QES_TMP/pg-initdb.log" >&2; fail "initdb failed"; }
    rm -f "$QES_TMP/pg.pw"
    cat >> "$QES_PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $QES_PG_PORT
unix_socket_directories = '$QES_PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 60
shared_buffers = 16MB
logging_collector = off
CONF
    export QES_PG_DIR QES_PG_PORT QES_PG_PASSWORD
    QES_PG_URL="postgresql://qes:$QES_PG_PASSWORD@127.0.0.1:$QES_PG_PORT/qes"
    export QES_PG_URL
    qes_on_exit "qes_pg_stop"
    qes_pg_restart
    qes_pg_as_owner "$QES_PG_BIN/createdb" -h "$QES_PG_DIR" -p "$QES_PG_PORT" \
        -U qes -O qes qes || fail "createdb failed"
}

# qes_pg_stop: stop the server now (fast: open connections are cut).
qes_pg_stop() {
    [ -n "${QES_PG_DIR:-}" ] && [ -f "$QES_PG_DIR/data/postmaster.pid" ] || return 0
    qes_pg_as_owner "$QES_PG_BIN/pg_ctl" -D "$QES_PG_DIR/data" -m fast -w stop \
        >/dev/null 2>&1 || true
}

# qes_pg_restart: start the (stopped) server again on the same port.
qes_pg_restart() {
    qes_pg_as_owner "$QES_PG_BIN/pg_ctl" -D "$QES_PG_DIR/data" -w -t 60 \
        -l "$QES_PG_DIR/server.log" start >/dev/null ||
        { cat "$QES_PG_DIR/server.log" >&2; fail "PostgreSQL did not start"; }
}

# qes_psql SQL...: run psql on the test database as its owner (unix socket).
qes_psql() {
    qes_pg_as_owner "$QES_PG_BIN/psql" -h "$QES_PG_DIR" -p "$QES_PG_PORT" -U qes \
        -d qes -X -q -v ON_ERROR_STOP=1 -At "$@"
}
