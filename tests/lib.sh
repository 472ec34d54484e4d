# tests/lib.sh — sourced by the integration tests (tests/integration/*.sh).
#
# CTest runs each integration test as `bash tests/integration/NAME.sh` with
# QES_SOURCE_DIR, QES_BUILD_DIR and QES_TESTENV set (tests/CMakeLists.txt); the
# defaults below let a test also run by hand from a build directory.  Tests run in
# parallel, so everything a test changes lives in its own temporary directory:
#
#   . "$QES_SOURCE_DIR/tests/lib.sh"    # or relative to the test: "$(dirname "$0")/../lib.sh"
#   dir=$(qes_tmpdir)                   # = $QES_TMP, removed at exit
#   qes_private_tokens                  # own copy of the SoftHSM2 tokens, env sourced
#   qes_on_exit "kill $server_pid"      # cleanup hooks, run before $QES_TMP is removed
#   qes_run_checked "$QES_CLI" sign ... # under valgrind when QES_VALGRIND=1
#   expect_contains "$QES_TMP/out" "signed"; ok "signing works"
#
# lib.sh owns the EXIT trap: register cleanups with qes_on_exit instead of `trap`.
# QES_KEEP_TMP=1 keeps the temporary directory for a post-mortem.
set -euo pipefail

QES_SOURCE_DIR=${QES_SOURCE_DIR:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)}
QES_BUILD_DIR=${QES_BUILD_DIR:-$QES_SOURCE_DIR/build}
QES_TESTENV=${QES_TESTENV:-$QES_BUILD_DIR/testenv}
export QES_SOURCE_DIR QES_BUILD_DIR QES_TESTENV

# shellcheck disable=SC2034  # used by the tests that source this file
QES_AGENT=$QES_BUILD_DIR/qes-agent
# shellcheck disable=SC2034
QES_CLI=$QES_BUILD_DIR/qes
# shellcheck disable=SC2034
QES_PKI=$QES_TESTENV/pki             # tests/pki/mkpki.sh output; read-only for tests
QES_TOKENS_SHARED=$QES_TESTENV/tokens
QES_TEST_NAME=$(basename -- "$0" .sh)

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

# expect_eq ACTUAL EXPECTED [WHAT]
expect_eq() {
    [ "$1" = "$2" ] || fail "${3:-value}: expected '$2', got '$1'"
}

# expect_contains FILE STRING: FILE holds STRING (fixed string, not a regex).
expect_contains() {
    [ -f "$1" ] || fail "expect_contains: no file $1"
    grep -qF -- "$2" "$1" && return 0
    echo "--- $1 (first 40 lines)" >&2
    head -n 40 -- "$1" >&2
    fail "$1 does not contain '$2'"
}

# expect_not_contains FILE STRING: FILE does not hold STRING (e.g. a PIN in a log).
expect_not_contains() {
    [ -f "$1" ] || fail "expect_not_contains: no file $1"
    grep -qF -- "$2" "$1" || return 0
    grep -nF -- "$2" "$1" | head -n 5 >&2
    fail "$1 contains '$2'"
}

# ---------------------------------------------------------------------------
# Temporary directory and cleanup.
QES_EXIT_HOOKS=()

# qes_on_exit COMMAND: run COMMAND (with eval) at exit, last registered first.
qes_on_exit() { QES_EXIT_HOOKS+=("$1"); }

qes_cleanup() {
    local rc=$? i
    set +e
    for ((i = ${#QES_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
        eval "${QES_EXIT_HOOKS[i]}" >/dev/null 2>&1
    done
    if [ -n "${QES_TMP:-}" ] && [ -d "$QES_TMP" ]; then
        if [ "${QES_KEEP_TMP:-0}" = 1 ]; then
            echo "# kept $QES_TMP" >&2
        else
            rm -rf -- "$QES_TMP"
        fi
    fi
    return "$rc"
}
trap qes_cleanup EXIT

# qes_tmpdir: print this test's temporary directory ($QES_TMP).  It is made when
# lib.sh is sourced, in the test's own shell, so `dir=$(qes_tmpdir)` works and the
# EXIT trap removes it.
QES_TMP=$(mktemp -d "${TMPDIR:-/tmp}/qes-$QES_TEST_NAME.XXXXXX")
export QES_TMP
qes_tmpdir() { echo "$QES_TMP"; }

# ---------------------------------------------------------------------------
# Test environment.

# qes_private_tokens [DIR]: copy the fixture's SoftHSM2 tokens into DIR (default
# $QES_TMP/tokens), point a rewritten softhsm2.conf at the copy, write DIR/tokens.env
# and source it (SOFTHSM2_CONF, QES_TEST_MODULE, QES_TOKEN_*, QES_ID_* exported).
# Anything that logs in uses a private copy: SoftHSM2 persists login state in the
# token (a wrong PIN sets CKF_USER_PIN_COUNT_LOW until the next right one), and
# parallel tests must not see each other's attempts.
qes_private_tokens() {
    local dir=${1:-$QES_TMP/tokens} src=$QES_TOKENS_SHARED
    [ -f "$src/tokens.env" ] || fail "no token fixture in $src (run tests/setup-testenv.sh $QES_TESTENV)"
    mkdir -p -- "$dir"
    dir=$(cd -- "$dir" && pwd)
    rm -rf -- "$dir/store"
    cp -a -- "$src/store" "$dir/store"
    sed "s|^directories.tokendir = .*|directories.tokendir = $dir/store|" \
        "$src/softhsm2.conf" > "$dir/softhsm2.conf"
    {
        grep -v '^export SOFTHSM2_CONF=' "$src/tokens.env"
        printf 'export SOFTHSM2_CONF=%q\n' "$dir/softhsm2.conf"
    } > "$dir/tokens.env"
    # shellcheck disable=SC1091
    . "$dir/tokens.env"
    # shellcheck disable=SC2034  # for the test: where its private tokens are
    QES_TOKENS=$dir
}

# qes_need TOOL...: every TOOL is a command here, else the test fails naming it
qes_need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || fail "$t is not installed (scripts/deps.sh)"
    done
}

# qes_free_port: print a TCP port on 127.0.0.1 that is free right now.
qes_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# qes_run_checked COMMAND ARGS...: run COMMAND; with QES_VALGRIND=1 under valgrind,
# where a memory error or a definite/indirect leak makes the exit status 99.
# Suppressions for third-party code come from tests/valgrind.supp.  (Sanitizer
# builds, QES_SANITIZE=1, are checked by ASan instead and run plainly.)
qes_run_checked() {
    local supp=()
    if [ "${QES_VALGRIND:-0}" = 1 ] && [ "${QES_SANITIZE:-0}" != 1 ]; then
        [ -f "$QES_SOURCE_DIR/tests/valgrind.supp" ] &&
            supp=(--suppressions="$QES_SOURCE_DIR/tests/valgrind.supp")
        valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect \
            --errors-for-leak-kinds=definite,indirect --error-exitcode=99 "${supp[@]}" "$@"
    else
        "$@"
    fi
}
