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
#   7. qesd (gateway) on SQLite with TLS 1.3: a tenant, API keys, the audit
#      log exported and verified offline with `qes audit verify`
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

step "qesd: the gateway on embedded SQLite, TLS 1.3 only, on 127.0.0.1"
gw=$demo/gw
mkdir -p "$gw"
pki=$demo/env/pki
# a server certificate for localhost from the demo PKI; key and pepper 0600
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$gw/server.key" -out "$gw/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$gw/server.ext"
openssl x509 -req -in "$gw/server.csr" -CA "$pki/issuing-ca.pem" -CAkey "$pki/issuing-ca.key" \
  -set_serial "0x$(openssl rand -hex 12)" -days 7 -extfile "$gw/server.ext" -out "$gw/server.crt" 2>/dev/null
cat "$gw/server.crt" "$pki/issuing-ca.pem" >"$gw/server-chain.pem"
chmod 600 "$gw/server.key"
openssl rand -hex 32 >"$gw/pepper"
chmod 600 "$gw/pepper"
cat >"$gw/qesd.conf" <<CONF
listen = 127.0.0.1:0
tls_cert = $gw/server-chain.pem
tls_key = $gw/server.key
pepper_file = $gw/pepper
store = sqlite:$gw/qesd.db
CONF
echo "qesd admin tenant create \"Demo Company\""
build/qesd admin --config "$gw/qesd.conf" tenant create "Demo Company" >"$gw/tenant.txt" 2>/dev/null
sed 's/^api_key: \(qes_key_[a-z0-9]*_\).*/api_key: \1<secret, shown once, kept in the demo folder>/' "$gw/tenant.txt"
build/qesd serve --config "$gw/qesd.conf" 2>"$gw/qesd.log" &
qesd_pid=$!
trap 'kill -TERM $qesd_pid 2>/dev/null; wait $qesd_pid 2>/dev/null' EXIT
port=
for _ in $(seq 1 100); do
  port=$(grep -o '"msg":"listening".*"port":[0-9]*' "$gw/qesd.log" 2>/dev/null | grep -o '[0-9]*$' | head -n 1) || true
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "qesd did not start:"; cat "$gw/qesd.log"; exit 1; }
export QES_SERVER=https://localhost:$port QES_CA=$pki/root-ca.pem
QES_API_KEY=$(sed -n 's/^api_key: //p' "$gw/tenant.txt")
export QES_API_KEY
echo "qesd listening on $QES_SERVER (TLS 1.3; TLS 1.2 is refused)"
curl -sS --cacert "$pki/root-ca.pem" "$QES_SERVER/healthz"; echo
if curl -sS --tls-max 1.2 --cacert "$pki/root-ca.pem" "$QES_SERVER/healthz" >/dev/null 2>&1; then
  echo "TLS 1.2 was accepted: this must not happen"; exit 1
fi
echo "a TLS 1.2 client is refused (curl --tls-max 1.2)"

step "qes keys: a signing key for the relying party's back end"
build/qes keys create --name "ERP back end" --scope sign | sed 's/^api_key: \(qes_key_[a-z0-9]*_\).*/api_key: \1<secret, shown once>/'
build/qes keys list

step "qes audit: every request is in the tenant's hash chain; verified offline"
build/qes audit list --limit 5
build/qes audit export --out "$gw/audit.jsonl"
build/qes audit verify "$gw/audit.jsonl"
kill -TERM "$qesd_pid"
wait "$qesd_pid" && echo "qesd drained and stopped (exit 0)"
trap - EXIT

printf '\ndemo: OK\n'
