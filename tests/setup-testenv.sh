#!/usr/bin/env bash
# setup-testenv.sh DIR — the CTest fixture that every test requires (FIXTURES_SETUP
# testenv in tests/CMakeLists.txt): a throw-away PKI in DIR/pki (tests/pki/mkpki.sh)
# and SoftHSM2 tokens holding its keys in DIR/tokens (tests/softhsm/mktokens.sh).
#
# Fast path: when DIR/.complete is newer than the generator scripts, younger than a
# week (the CRLs are valid for 30 days) and was made for the same
# QES_PKI_HTTP_PORT/QES_PKI_OCSP_PORT, nothing is done.  Tests that change token
# state work on a private copy (qes_private_tokens in tests/lib.sh), so the shared
# copy stays as built.  A lock serialises concurrent runs on the same DIR.
set -euo pipefail

[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: $0 DIR" >&2; exit 2; }
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
dir=$1
mkdir -p -- "$dir"
dir=$(cd -- "$dir" && pwd)

exec 9>"$dir/.lock"
flock 9

want_ports="${QES_PKI_HTTP_PORT:-18080}/${QES_PKI_OCSP_PORT:-18081}"
have_ports=$( (. "$dir/pki/pki.env" 2>/dev/null && echo "$QES_PKI_HTTP_PORT/$QES_PKI_OCSP_PORT") || true)

fresh() {
    local s
    [ -e "$dir/.complete" ] || return 1
    for s in "$here/pki/mkpki.sh" "$here/softhsm/mktokens.sh" "$here/setup-testenv.sh"; do
        [ "$dir/.complete" -nt "$s" ] || return 1
    done
    [ -n "$(find "$dir/.complete" -mmin -$((7 * 24 * 60)))" ] || return 1
    [ "$have_ports" = "$want_ports" ]
}

summary() {
    . "$dir/tokens/tokens.env"
    echo "testenv: $1 $dir: pki ($(ls "$dir/pki"/*.pem | wc -l) PEM files," \
         "http :${want_ports%/*}, ocsp :${want_ports#*/}), tokens" \
         "$QES_TOKEN_A_LABEL=$QES_TOKEN_A_SERIAL $QES_TOKEN_B_LABEL=$QES_TOKEN_B_SERIAL" \
         "$QES_TOKEN_LOCKED_LABEL=$QES_TOKEN_LOCKED_SERIAL"
}

if fresh; then
    summary "cached"
    exit 0
fi

start_ns=$(date +%s%N)
rm -f -- "$dir/.complete"
bash "$here/pki/mkpki.sh" "$dir/pki"
bash "$here/softhsm/mktokens.sh" "$dir/pki" "$dir/tokens"
touch "$dir/.complete"
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
summary "built in $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000)))s"
