#!/usr/bin/env bash
# store_docs_postgres.sh - the unit tests of the encrypted job documents
# (tests/unit/test_store_docs.c: migration 4, AES-256-GCM at rest, purge,
# no plaintext in the rows) on the PostgreSQL backend, in a private
# cluster (tests/pg.sh), every case in a fresh schema.
. "$(dirname -- "$0")/../lib.sh"
. "$QES_SOURCE_DIR/tests/pg.sh"

bin=$QES_BUILD_DIR/tests/test_store_docs
[ -x "$bin" ] || fail "no $bin (build the tests)"
qes_pg_start
QES_TEST_PG_URL=$QES_PG_URL "$bin" > "$QES_TMP/unit.log" 2>&1 ||
    { cat "$QES_TMP/unit.log" >&2; fail "job document unit tests on PostgreSQL"; }
grep -q 'PASSED' "$QES_TMP/unit.log" || fail "no PASSED in the unit test output"
ok "job document unit tests on PostgreSQL ($(grep -c '^\[       OK \]' "$QES_TMP/unit.log") cases)"
