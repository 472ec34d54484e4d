#!/usr/bin/env bash
# store_postgres.sh - the store's unit tests (tests/unit/test_store_sqlite.c)
# on the PostgreSQL backend: a private cluster (tests/pg.sh), and every case
# in a fresh schema of it, appenders in several processes included, and
# connections the server cuts (an open transaction fails UNAVAILABLE, the
# pool reconnects by itself). qesd itself on PostgreSQL, and PostgreSQL
# stopped under load: qesd_postgres.sh.
. "$(dirname -- "$0")/../lib.sh"
. "$QES_SOURCE_DIR/tests/pg.sh"

bin=$QES_BUILD_DIR/tests/test_store_sqlite
[ -x "$bin" ] || fail "no $bin (build the tests)"
qes_pg_start
QES_TEST_PG_URL=$QES_PG_URL "$bin" > "$QES_TMP/unit.log" 2>&1 ||
    { cat "$QES_TMP/unit.log" >&2; fail "store unit tests on PostgreSQL"; }
grep -q 'PASSED' "$QES_TMP/unit.log" || fail "no PASSED in the unit test output"
# the PostgreSQL-only cases (connection loss) must have run here
grep -q 'SKIPPED' "$QES_TMP/unit.log" && fail "cases skipped on PostgreSQL: $(grep SKIPPED "$QES_TMP/unit.log" | head -n 3)"
ok "store unit tests on PostgreSQL ($(grep -c '^\[       OK \]' "$QES_TMP/unit.log") cases)"
