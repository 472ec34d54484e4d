#!/usr/bin/env bash
# The qes demo: set up everything and sign with a qualified certificate on a
# real PKCS#11 token (SoftHSM2), then let OpenSSL check the signature.
#
#   1. install missing Debian packages and build qes
#   2. build a throw-away QTSP-shaped PKI and load it onto SoftHSM2 tokens
#      (in build/demo, never the system's SoftHSM2 configuration)
#   3. qes-agent tokens    - every module, token and certificate, classified
#   4. qes-agent diagnose  - versions, PIN state and a verdict per token
#   5. qes sign --raw      - sign a document; PIN through pinentry
#   6. openssl dgst -verify
#
# The PIN is typed by a scripted pinentry (the demo runs unattended); set
# QES_DEMO_PINENTRY=pinentry-tty (or pinentry-gnome3, ...) to type it yourself:
# the demo token's PIN is printed before the prompt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc 2>/dev/null || echo 2)

step() { printf '\n\033[1m==== %s\033[0m\n' "$*"; }

scripts/deps.sh
step "build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs" >/dev/null
echo "built build/qes-agent, build/qes, build/libqes.so"

demo=$root/build/demo
rm -rf "$demo"
mkdir -p "$demo"
step "test PKI and SoftHSM2 tokens (in $demo)"
bash tests/setup-testenv.sh "$demo/env"
# shellcheck disable=SC1091
source "$demo/env/tokens/tokens.env"
export SOFTHSM2_CONF

step "qes-agent tokens --module $QES_TEST_MODULE"
build/qes-agent tokens --module "$QES_TEST_MODULE"

step "qes-agent diagnose"
build/qes-agent diagnose --module "$QES_TEST_MODULE" | grep -E '^(qes-agent|system|OpenSSL|module|  [A-Za-z])|verdict'

step "qes sign --raw: a contract, with the qualified ECDSA P-256 certificate on \"$QES_TOKEN_A_LABEL\""
cat >"$demo/contract.txt" <<TXT
Purchase contract no. 2026-17
The buyer pays EUR 12,500 to the seller on delivery.
TXT
if [ -n "${QES_DEMO_PINENTRY:-}" ]; then
  pinentry=$QES_DEMO_PINENTRY
  echo "Type the demo token's PIN, $QES_TOKEN_A_PIN, when $pinentry asks."
else
  pinentry=$root/build/tests/qes-test-pinentry
  export QES_TEST_PINENTRY_SCRIPT=$demo/pinentry.script QES_TEST_PINENTRY_LOG=$demo/pinentry.log
  printf 'pin %s\n' "$QES_TOKEN_A_PIN" >"$QES_TEST_PINENTRY_SCRIPT"
  echo "(a scripted pinentry types the PIN; QES_DEMO_PINENTRY=pinentry-tty lets you type it)"
fi
build/qes sign --raw --module "$QES_TEST_MODULE" --pinentry "$pinentry" \
  --token "$QES_TOKEN_A_LABEL" --key 02 --title "Purchase contract no. 2026-17" \
  --in "$demo/contract.txt" --out "$demo/contract.sig" --cert-out "$demo/signer.pem"
if [ -z "${QES_DEMO_PINENTRY:-}" ]; then
  echo "the signer was shown:"
  awk '/^SETDESC /{on=1; sub(/^SETDESC /,"")} /^(SETPROMPT|SETERROR|SETOK|SETCANCEL|GETPIN|CONFIRM|OPTION|PIN-SENT)/{on=0} on{print "    " $0}' "$QES_TEST_PINENTRY_LOG"
fi

step "openssl dgst -sha256 -verify (signer's public key from the certificate)"
openssl x509 -in "$demo/signer.pem" -noout -subject -issuer
openssl x509 -in "$demo/signer.pem" -pubkey -noout >"$demo/signer.pub"
openssl verify -CAfile "$demo/env/pki/root-ca.pem" -untrusted "$demo/env/pki/issuing-ca.pem" "$demo/signer.pem"
openssl dgst -sha256 -verify "$demo/signer.pub" -signature "$demo/contract.sig" "$demo/contract.txt"

printf '\ndemo: OK\n'
