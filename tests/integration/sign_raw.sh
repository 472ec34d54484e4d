#!/usr/bin/env bash
# qes sign --raw against real SoftHSM2 tokens, PIN through a scripted
# pinentry that speaks the real Assuan protocol: every key type, mechanism
# and digest, each signature verified by OpenSSL with the certificate's
# public key; wrong PIN, locked token, cancel and missing token give their
# specific errors and exit codes.
source "$QES_SOURCE_DIR/tests/lib.sh"
dir=$(qes_tmpdir)
qes_private_tokens "$dir/tokens"

PE=$QES_BUILD_DIR/tests/qes-test-pinentry
export QES_TEST_PINENTRY_SCRIPT=$dir/pinentry.script
export QES_TEST_PINENTRY_LOG=$dir/pinentry.log
M=$QES_TEST_MODULE
head -c 100000 /dev/urandom >"$dir/doc.bin"

# script the next pinentry answers, one per line
pinentry_script() { printf '%s\n' "$@" >"$QES_TEST_PINENTRY_SCRIPT"; rm -f "$QES_TEST_PINENTRY_SCRIPT.pos" "$QES_TEST_PINENTRY_LOG"; }

sign() { # TOKEN KEY SCHEME MD [extra args]
  local token=$1 key=$2 scheme=$3 md=$4; shift 4
  "$QES_CLI" sign --raw --module "$M" --only-module --pinentry "$PE" \
    --token "$token" --key "$key" --scheme "$scheme" --md "$md" \
    --in "$dir/doc.bin" --out "$dir/sig" --cert-out "$dir/cert.pem" "$@"
}

verify() { # SCHEME MD
  local scheme=$1 md=$2 opts=()
  openssl x509 -in "$dir/cert.pem" -pubkey -noout >"$dir/pub.pem"
  if [ "$scheme" = rsa-pss ]; then
    opts=(-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -sigopt "rsa_mgf1_md:$md")
  fi
  openssl dgst "-$md" -verify "$dir/pub.pem" "${opts[@]}" -signature "$dir/sig" "$dir/doc.bin"
}

run_case() { # TOKEN PIN KEY SCHEME MD
  local token=$1 pin=$2 key=$3 scheme=$4 md=$5
  pinentry_script "pin $pin"
  sign "$token" "$key" "$scheme" "$md" >"$dir/out.txt"
  verify "$scheme" "$md" | grep -q "Verified OK" || fail "OpenSSL rejects $token/$key $scheme $md"
  ok "$token key $key: $scheme $md verified by OpenSSL"
}

A=$QES_TOKEN_A_SERIAL B=$QES_TOKEN_B_SERIAL
for md in sha256 sha384 sha512; do
  run_case "$A" "$QES_TOKEN_A_PIN" 01 rsa-pkcs1 "$md"
  run_case "$A" "$QES_TOKEN_A_PIN" 01 rsa-pss "$md"
  run_case "$A" "$QES_TOKEN_A_PIN" 02 ecdsa "$md"
  run_case "$B" "$QES_TOKEN_B_PIN" 11 rsa-pss "$md"
  run_case "$B" "$QES_TOKEN_B_PIN" 12 ecdsa "$md"
done
run_case "$B" "$QES_TOKEN_B_PIN" 11 rsa-pkcs1 sha256
# always-authenticate key: context-specific login, still one PIN prompt
run_case "$B" "$QES_TOKEN_B_PIN" 13 rsa-pkcs1 sha256
expect_eq "$(grep -c '^GETPIN' "$QES_TEST_PINENTRY_LOG")" 1 "one PIN prompt for an always-authenticate key"

# The dialog shows token, certificate and what is signed.
pinentry_script "pin $QES_TOKEN_A_PIN"
sign "$QES_TOKEN_A_LABEL" 02 ecdsa sha256 --title "Purchase contract 2026-17" >/dev/null
expect_contains "$QES_TEST_PINENTRY_LOG" "Purchase contract 2026-17"
expect_contains "$QES_TEST_PINENTRY_LOG" "$QES_TOKEN_A_LABEL"
expect_contains "$QES_TEST_PINENTRY_LOG" "$(openssl x509 -in "$dir/cert.pem" -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= //p')"
expect_contains "$QES_TEST_PINENTRY_LOG" "$(openssl dgst -sha256 -r "$dir/doc.bin" | cut -c1-16)"
expect_not_contains "$QES_TEST_PINENTRY_LOG" "$QES_TOKEN_A_PIN"
ok "the dialog names the token, the signer's certificate, the title and the digest"

# ECDSA raw r||s output has the field size
pinentry_script "pin $QES_TOKEN_B_PIN"
sign "$B" 12 ecdsa sha384 --ecdsa-format raw >/dev/null
expect_eq "$(stat -c %s "$dir/sig")" 96 "P-384 raw signature is 96 bytes"
ok "ECDSA raw output"

# Wrong PIN three times: PIN incorrect, retry state reported, nothing written.
rm -f "$dir/sig"
pinentry_script "pin 000000" "pin 000001" "pin 000002"
rc=0; sign "$A" 01 rsa-pkcs1 sha256 2>"$dir/err.txt" || rc=$?
expect_eq "$rc" 4 "wrong PIN exits 4"
expect_contains "$dir/err.txt" "PIN incorrect"
expect_contains "$dir/err.txt" "PIN count low"
expect_eq "$(grep -c '^GETPIN' "$QES_TEST_PINENTRY_LOG")" 3 "asked three times"
expect_contains "$QES_TEST_PINENTRY_LOG" "PIN incorrect"
[ ! -e "$dir/sig" ] || fail "a signature was written after a wrong PIN"
"$QES_AGENT" tokens --json --module "$M" --only-module >"$dir/t.json"
python3 -c 'import json,sys; t=[t for t in json.load(open(sys.argv[1]))["tokens"] if t.get("serial")==sys.argv[2]][0]; assert t["flags"]["user_pin_count_low"], t["flags"]' "$dir/t.json" "$A"
ok "wrong PIN: PIN incorrect with the retry state, nothing written"

# The right PIN after a wrong one works and clears the count-low state.
pinentry_script "pin 999999" "pin $QES_TOKEN_A_PIN"
sign "$A" 01 rsa-pkcs1 sha256 >/dev/null
verify rsa-pkcs1 sha256 | grep -q "Verified OK" || fail "signature after retry"
expect_contains "$QES_TEST_PINENTRY_LOG" "PIN incorrect"
ok "a second attempt with the right PIN signs"

# Locked token: refused before any PIN is asked for.
pinentry_script "pin $QES_TOKEN_LOCKED_PIN"
rc=0; sign "$QES_TOKEN_LOCKED_SERIAL" 02 ecdsa sha256 2>"$dir/err.txt" || rc=$?
expect_eq "$rc" 5 "locked token exits 5"
expect_contains "$dir/err.txt" "PIN locked"
[ ! -s "$QES_TEST_PINENTRY_LOG" ] || fail "pinentry was started for a locked token"
ok "locked token reported as locked, PIN never asked"

# Cancel in the dialog
pinentry_script cancel
rc=0; sign "$A" 02 ecdsa sha256 2>"$dir/err.txt" || rc=$?
expect_eq "$rc" 6 "cancel exits 6"
expect_contains "$dir/err.txt" "cancelled"
ok "cancel is a clean, specific error"

# Missing token / key
rc=0; sign no-such-token 01 rsa-pkcs1 sha256 2>"$dir/err.txt" || rc=$?
expect_eq "$rc" 3 "missing token exits 3"
rc=0; sign "$A" 7f rsa-pkcs1 sha256 2>"$dir/err.txt" || rc=$?
expect_eq "$rc" 3 "missing key exits 3"
# wrong scheme for the key
rc=0; pinentry_script "pin $QES_TOKEN_A_PIN"; sign "$A" 02 rsa-pss sha256 2>"$dir/err.txt" || rc=$?
expect_eq "$rc" 1 "ECDSA key with an RSA scheme is refused"
expect_contains "$dir/err.txt" "cannot make rsa-pss"
ok "missing token, missing key and unsuitable scheme are clean errors"
