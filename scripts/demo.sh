#!/usr/bin/env bash
# The qes demo: set up everything and sign with a qualified certificate on a
# real PKCS#11 token (SoftHSM2), first locally, then through the whole device
# path, and let OpenSSL check both signatures.
#
#   1. install missing Debian packages and build qes
#   2. build a throw-away QTSP-shaped PKI and load it onto SoftHSM2 tokens
#      (in build/demo, never the system's SoftHSM2 configuration)
#   3. qes-agent tokens    - every module, token and certificate, classified
#   4. qes-agent diagnose  - versions, PIN state and a verdict per token
#   5. qes sign --raw      - sign a document locally; PIN through pinentry
#   6. openssl dgst -verify
#   7. qesd (gateway) on SQLite with TLS 1.3, a tenant, API keys for the
#      relying party's back end (sign) and the IT desk (devices)
#   8. enrollment: POST /v1/enrollments, `qes-agent enroll` (the device key
#      in a Secret Service: gnome-keyring on a private session bus)
#   9. `qes-agent run` in the background; GET /v1/credentials
#  10. POST /v1/signatures for the contract's SHA-256 digest (Idempotency-Key,
#      replayed once), the verification code and the signer's dialog with the
#      same code, GET /v1/signatures/{id}?wait=30 until completed, the
#      signature value verified with openssl against the credential's
#      certificate
#  11. qes sign --remote: a PDF signed as PAdES-B-T through the same device
#      path in hash-only mode (prepared here, only the digest goes to qesd,
#      the signer confirms the same verification code, the value and an RFC
#      3161 timestamp of the test TSA finish it here); pdfsig and qes verify
#      accept it, and the gateway's database holds none of the PDF
#  12. the same PDF uploaded to the gateway (POST /v1/signatures, Content-Type
#      application/pdf): qesd seals it for the job's life, the signer signs
#      the digest, qesd finishes PAdES-B-LT (timestamp, OCSP, DSS); the result
#      is fetched once (GET .../result, then 410), pdfsig and qes verify
#      accept it, and the gateway holds no document afterwards
#  13. the job's audit records (GET /v1/audit), the log exported and verified
#      offline with `qes audit verify`; agent and gateway stopped; no PIN in
#      any log or in the database
#
# The PIN is typed by a scripted pinentry (the demo runs unattended); set
# QES_DEMO_PINENTRY=pinentry-tty (or pinentry-gnome3, ...) to type it yourself:
# the demo token's PIN is printed before each prompt. QES_DEMO_KEYRING=file
# skips gnome-keyring: the agent then keeps its device key in its 0600 file
# fallback (with a warning).
#
# Everything the demo starts (qesd, qes-agent, dbus-daemon, gnome-keyring,
# the test PKI's TSA/OCSP/CRL services) is
# stopped on exit, listens on 127.0.0.1 only or on no network at all, and
# keeps its state in build/demo (HOME and the XDG directories of the desktop
# part included). Any failed check ends the demo with a non-zero status.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc 2>/dev/null || echo 2)

step() { printf '\n\033[1m==== %s\033[0m\n' "$*"; }
die() { printf '\ndemo: FAILED: %s\n(logs and state in %s)\n' "$*" "$demo" >&2; exit 1; }

scripts/deps.sh
step "build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs" >/dev/null
echo "built build/qes-agent, build/qes, build/qesd, build/libqes.so"

demo=$root/build/demo
here=build/demo	# the same, as printed (the demo runs in $root)
rm -rf "$demo"
mkdir -p "$demo"

# Everything started below is stopped here, by the ids recorded when it was
# started; the normal path stops each one itself and clears its id.
qesd_pid='' agent_pid='' bus_pid='' keyring_pid='' pkisvc_pid=''
cleanup() {
  local rc=$?
  set +e
  [ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  [ -n "$qesd_pid" ] && kill -TERM "$qesd_pid" 2>/dev/null && wait "$qesd_pid" 2>/dev/null
  [ -n "$pkisvc_pid" ] && kill -TERM "$pkisvc_pid" 2>/dev/null && wait "$pkisvc_pid" 2>/dev/null
  [ -n "$keyring_pid" ] && kill -TERM "$keyring_pid" 2>/dev/null
  [ -n "$bus_pid" ] && kill -TERM "$bus_pid" 2>/dev/null
  return "$rc"
}
trap cleanup EXIT

step "test PKI and SoftHSM2 tokens (in $here)"
bash tests/setup-testenv.sh "$demo/env"
# shellcheck disable=SC1091
source "$demo/env/tokens/tokens.env"
export SOFTHSM2_CONF
pki=$demo/env/pki

step "qes-agent tokens --module $QES_TEST_MODULE"
build/qes-agent tokens --module "$QES_TEST_MODULE"

step "qes-agent diagnose"
build/qes-agent diagnose --module "$QES_TEST_MODULE" | grep -E '^(qes-agent|system|OpenSSL|module|  [A-Za-z])|verdict'

step "qes sign --raw: a contract, with the qualified ECDSA P-256 certificate on \"$QES_TOKEN_A_LABEL\""
cat >"$demo/contract.txt" <<TXT
Purchase contract no. 2026-17
The buyer pays EUR 12,500 to the seller on delivery.
TXT
# pinentry_next: the scripted pinentry types the PIN in the next dialog, and
# its transcript starts afresh
if [ -n "${QES_DEMO_PINENTRY:-}" ]; then
  pinentry=$QES_DEMO_PINENTRY
  # the agent runs in the background: a terminal pinentry needs the terminal's name
  if [ -t 0 ]; then GPG_TTY=$(tty); export GPG_TTY; fi
  pinentry_next() { echo "Type the demo token's PIN, $QES_TOKEN_A_PIN, when $pinentry asks."; }
else
  pinentry=$root/build/tests/qes-test-pinentry
  export QES_TEST_PINENTRY_SCRIPT=$demo/pinentry.script QES_TEST_PINENTRY_LOG=$demo/pinentry.log
  pinentry_next() {
    (umask 077; printf 'pin %s\n' "$QES_TOKEN_A_PIN" >"$QES_TEST_PINENTRY_SCRIPT")
    rm -f "$QES_TEST_PINENTRY_SCRIPT.pos" "$QES_TEST_PINENTRY_LOG"
    echo "(a scripted pinentry types the PIN; QES_DEMO_PINENTRY=pinentry-tty lets you type it)"
  }
fi
# dialog_text: what the signer was shown in the last dialog (the transcript's SETDESC)
dialog_text() {
  awk '/^SETDESC /{on=1; sub(/^SETDESC /,"")} /^(SETPROMPT|SETERROR|SETOK|SETCANCEL|GETPIN|CONFIRM|OPTION|PIN-SENT)/{on=0} on && NF{print "    " $0}' "$QES_TEST_PINENTRY_LOG"
}
pinentry_next
build/qes sign --raw --module "$QES_TEST_MODULE" --pinentry "$pinentry" \
  --token "$QES_TOKEN_A_LABEL" --key 02 --title "Purchase contract no. 2026-17" \
  --in "$here/contract.txt" --out "$here/contract.sig" --cert-out "$here/signer.pem"
if [ -z "${QES_DEMO_PINENTRY:-}" ]; then
  echo "the signer was shown:"
  dialog_text
fi

step "openssl dgst -sha256 -verify (signer's public key from the certificate)"
openssl x509 -in "$demo/signer.pem" -noout -subject -issuer
openssl x509 -in "$demo/signer.pem" -pubkey -noout >"$demo/signer.pub"
openssl verify -CAfile "$pki/root-ca.pem" -untrusted "$pki/issuing-ca.pem" "$here/signer.pem"
openssl dgst -sha256 -verify "$demo/signer.pub" -signature "$demo/contract.sig" "$demo/contract.txt"

step "qesd: the gateway on embedded SQLite, TLS 1.3 only, on 127.0.0.1"
gw=$demo/gw
mkdir -p "$gw"
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
# document signing: the key that seals uploaded documents at rest (0600),
# the signers' CAs to embed, and the test PKI's TSA (it starts later, with
# the PAdES steps; qesd asks it only when it finishes a document)
openssl rand -hex 32 >"$gw/document.key"
chmod 600 "$gw/document.key"
cat "$pki/issuing-ca.pem" "$pki/root-ca.pem" >"$gw/signer-cas.pem"
# shellcheck disable=SC1091
source "$pki/pki.env"
# server_name: the agent dials "localhost" and checks that qesd calls itself so
cat >"$gw/qesd.conf" <<CONF
listen = 127.0.0.1:0
server_name = localhost
tls_cert = $gw/server-chain.pem
tls_key = $gw/server.key
pepper_file = $gw/pepper
store = sqlite:$gw/qesd.db
drain_timeout_s = 5
document_key_file = $gw/document.key
chain_file = $gw/signer-cas.pem
tsa_url = http://127.0.0.1:$QES_PKI_HTTP_PORT/tsa
tsa_ca_file = $pki/root-ca.pem
CONF
echo "qesd admin tenant create \"Demo Company\""
build/qesd admin --config "$gw/qesd.conf" tenant create "Demo Company" >"$gw/tenant.txt" 2>/dev/null
sed 's/^api_key: \(qes_key_[a-z0-9]*_\).*/api_key: \1<secret, shown once, kept in the demo folder>/' "$gw/tenant.txt"
build/qesd serve --config "$gw/qesd.conf" 2>"$gw/qesd.log" &
qesd_pid=$!
port=
for _ in $(seq 1 100); do
  port=$(grep -o '"msg":"listening".*"port":[0-9]*' "$gw/qesd.log" 2>/dev/null | grep -o '[0-9]*$' | head -n 1) || true
  [ -n "$port" ] && break
  kill -0 "$qesd_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$port" ] || { cat "$gw/qesd.log"; die "qesd did not start"; }
server=https://localhost:$port
export QES_SERVER=$server QES_CA=$pki/root-ca.pem
QES_API_KEY=$(sed -n 's/^api_key: //p' "$gw/tenant.txt")
export QES_API_KEY
echo "qesd listening on $QES_SERVER (TLS 1.3; TLS 1.2 is refused)"
curl -sS --cacert "$pki/root-ca.pem" "$QES_SERVER/healthz"; echo
if curl -sS --tls-max 1.2 --cacert "$pki/root-ca.pem" "$QES_SERVER/healthz" >/dev/null 2>&1; then
  die "TLS 1.2 was accepted"
fi
echo "a TLS 1.2 client is refused (curl --tls-max 1.2)"

step "qes keys: API keys for the relying party's back end (sign) and the IT desk (devices)"
# new_key FILE NAME SCOPE: create a key; its secret goes only into FILE (0600),
# as the Authorization header curl reads with -H @FILE (never on a command line)
new_key() {
  (umask 077; build/qes keys create --name "$2" --scope "$3" >"$1.out" 2>"$1.err") ||
    { cat "$1.err" >&2; die "qes keys create --name \"$2\""; }
  echo "qes keys create --name \"$2\" --scope $3"
  sed 's/^api_key: \(qes_key_[a-z0-9]*_\).*/api_key: \1<secret, shown once, kept in the demo folder>/' "$1.out"
  (umask 077; printf 'Authorization: Bearer %s\n' "$(sed -n 's/^api_key: //p' "$1.out")" >"$1")
  grep -q '^Authorization: Bearer qes_key_' "$1" || die "no API key for $2"
}
new_key "$gw/erp.auth" "ERP back end" sign
new_key "$gw/itdesk.auth" "IT desk" devices
build/qes keys list

# api AUTHFILE METHOD PATH [BODY [HEADER...]]: one call of the relying party,
# printed as "METHOD PATH -> STATUS"; the answer in $gw/http/last.json, its
# headers in $gw/http/last.hdr, the status in $status
mkdir -p "$gw/http"
status=
api() {
  local auth=$1 method=$2 path=$3 body=${4:-} args h
  shift 3; [ $# -gt 0 ] && shift
  args=(-sS --cacert "$pki/root-ca.pem" -o "$gw/http/last.json" -D "$gw/http/last.hdr"
    -w '%{http_code}' -X "$method" -H @"$auth")
  if [ -n "$body" ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$body")
  elif [ "$method" = POST ]; then
    args+=(-H 'Content-Length: 0')
  fi
  for h in "$@"; do args+=(-H "$h"); done
  status=$(curl "${args[@]}" "$server$path") || status=000
  printf '%s %s -> %s\n' "$method" "$path" "$status"
}
# expect STATUS: the last call answered STATUS, else the demo fails with the answer
expect() {
  [ "$status" = "$1" ] && return 0
  cat "$gw/http/last.json" >&2 2>/dev/null || true
  die "expected HTTP $1, got $status"
}
# json EXPR: EXPR (python, the answer is v) evaluated on the last answer
json() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$gw/http/last.json" "$1"; }
# fields KEY...: the answer's top-level KEYs, one per line, indented
fields() {
  python3 - "$gw/http/last.json" "$@" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    print("    %-18s %s" % (k + ":", v.get(k)))
PY
}

# ---------------------------------------------------------------------------
step "the signer's desktop: where qes-agent will keep its device key (state in $here/desktop)"
desk=$demo/desktop
mkdir -p "$desk"
chmod 700 "$desk"
mkdir -m 700 "$desk/home" "$desk/config" "$desk/data" "$desk/cache" "$desk/run"
# the desktop programs see only the demo's home, never the user's keyring or bus
desk_env=(HOME="$desk/home" XDG_CONFIG_HOME="$desk/config" XDG_DATA_HOME="$desk/data"
  XDG_CACHE_HOME="$desk/cache" XDG_RUNTIME_DIR="$desk/run")
keystore="the 0600 file fallback"
if [ "${QES_DEMO_KEYRING:-gnome-keyring}" = file ]; then
  echo "QES_DEMO_KEYRING=file: no Secret Service; the agent keeps its device key in a 0600 file"
  desk_env+=(DBUS_SESSION_BUS_ADDRESS=)
elif ! command -v dbus-daemon >/dev/null || ! command -v gnome-keyring-daemon >/dev/null; then
  echo "no dbus-daemon or gnome-keyring-daemon: the agent keeps its device key in a 0600 file"
  desk_env+=(DBUS_SESSION_BUS_ADDRESS=)
else
  # a session bus of our own (its address and pid, both printed by --fork)
  env "${desk_env[@]}" dbus-daemon --session --fork --nopidfile \
    --print-address=1 --print-pid=1 >"$desk/bus.out"
  bus_addr=$(sed -n 1p "$desk/bus.out") bus_pid=$(sed -n 2p "$desk/bus.out")
  if [ -z "$bus_addr" ] || [ -z "$bus_pid" ]; then die "dbus-daemon did not start"; fi
  desk_env+=(DBUS_SESSION_BUS_ADDRESS="$bus_addr")
  # gnome-keyring with a fresh login keyring, unlocked with a random password
  # nobody needs to know (the keyring lives and dies with build/demo)
  openssl rand -hex 16 | tr -d '\n' |
    env "${desk_env[@]}" gnome-keyring-daemon --unlock --components=secrets >"$desk/keyring.out" 2>&1
  for _ in $(seq 1 100); do
    keyring_pid=$(env "${desk_env[@]}" dbus-send --session --print-reply --dest=org.freedesktop.DBus / \
      org.freedesktop.DBus.GetConnectionUnixProcessID string:org.freedesktop.secrets 2>/dev/null |
      awk '/uint32/ { print $2 }') || true
    [ -n "$keyring_pid" ] && break
    sleep 0.1
  done
  if [ -n "$keyring_pid" ]; then
    keystore="the Secret Service"
    echo "dbus-daemon (pid $bus_pid) and gnome-keyring (pid $keyring_pid, Secret Service) run for the demo only"
  else
    echo "gnome-keyring did not take org.freedesktop.secrets: the agent will fall back to its 0600 file"
  fi
fi

step "enrollment: the IT desk creates a one-time code, the signer enrolls the desktop"
api "$gw/itdesk.auth" POST /v1/enrollments '{"name":"Clara Wagner, laptop","ttl_seconds":600}'
expect 201
code=$(json 'v["code"]')
fields enrollment_id name expires_at
echo "    code:              <the one-time code, handed to the signer>"
agentcfg=$desk/config/qes
echo "qes-agent enroll --server $server --code <code> --ca root-ca.pem"
env "${desk_env[@]}" build/qes-agent enroll --server "$server" --code "$code" \
  --ca "$pki/root-ca.pem" --config "$agentcfg" >"$desk/enroll.out" 2>"$desk/enroll.err" ||
  { cat "$desk/enroll.err" "$desk/enroll.out" >&2; die "qes-agent enroll"; }
sed 's/^/    /' "$desk/enroll.err" "$desk/enroll.out"
device=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["device_id"])' "$agentcfg/enrollment.json")
# where the device key went, from the files the agent left
if compgen -G "$agentcfg/device-key-*" >/dev/null; then
  [ "$keystore" = "the Secret Service" ] && die "a Secret Service ran, yet the device key went to a file"
  echo "the device key is in a 0600 file: $(cd "$agentcfg" && ls device-key-*) ($(stat -c %a "$agentcfg"/device-key-*))"
else
  [ "$keystore" = "the Secret Service" ] || die "no Secret Service and no device key file"
  grep -q 'device key in the Secret Service' "$desk/enroll.out" || die "enroll did not report the Secret Service"
  echo "the device key is in the Secret Service (gnome-keyring), not in a file"
fi

step "qes-agent run: the agent dials out to qesd and reports its tokens"
env "${desk_env[@]}" build/qes-agent run --config "$agentcfg" --module "$QES_TEST_MODULE" \
  --only-module --pinentry "$pinentry" 2>"$desk/agent.log" &
agent_pid=$!
echo "qes-agent run --config $agentcfg --module $(basename "$QES_TEST_MODULE") --only-module (pid $agent_pid)"
# the P-256 key (id 02) on token A, as the credential list names it
cred=
for _ in $(seq 1 100); do
  status=$(curl -sS --cacert "$pki/root-ca.pem" -H @"$gw/erp.auth" -o "$gw/http/last.json" \
    -w '%{http_code}' "$server/v1/credentials") || status=000
  if [ "$status" = 200 ]; then
    cred=$(json '"".join(c["id"] for c in v["items"] if c["token_serial"] == "'"$QES_TOKEN_A_SERIAL"'" and c["key_id"] == "02")')
    [ -n "$cred" ] && break
  fi
  kill -0 "$agent_pid" 2>/dev/null || { tail -n 20 "$desk/agent.log" >&2; die "qes-agent run stopped"; }
  sleep 0.2
done
[ -n "$cred" ] || { tail -n 20 "$desk/agent.log" >&2; die "GET /v1/credentials never listed the P-256 key"; }
api "$gw/erp.auth" GET /v1/credentials
expect 200
python3 - "$gw/http/last.json" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1]))["items"]:
    print("    %s  %-16s key %s  %s %-4s  %-14s %s" % (c["id"], c.get("token_label", ""), c["key_id"],
          c["key_type"], c["key_bits"], c["classification"], c.get("subject_cn", c["subject"])))
PY
# the credential's certificate: it must be the one the token holds, from the demo's QTSP
json '[c for c in v["items"] if c["id"] == "'"$cred"'"][0]["certificate"]' |
  openssl base64 -d -A | openssl x509 -inform DER -out "$demo/credential.pem"
[ "$(openssl x509 -in "$demo/credential.pem" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)" = \
  "$(json '[c for c in v["items"] if c["id"] == "'"$cred"'"][0]["certificate_sha256"]')" ] ||
  die "certificate_sha256 does not match the credential's certificate"
openssl verify -CAfile "$pki/root-ca.pem" -untrusted "$pki/issuing-ca.pem" "$demo/credential.pem" |
  sed "s|^$demo/||"
echo "signing with $cred (the qualified P-256 certificate)"

step "POST /v1/signatures: the ERP asks the signer to sign the contract's SHA-256 digest"
digest=$(openssl dgst -sha256 -binary "$demo/contract.txt" | openssl base64 -A)
idem="erp-contract-2026-17-$(openssl rand -hex 4)"
timeout_s=120
[ -n "${QES_DEMO_PINENTRY:-}" ] && timeout_s=600
body=$(printf '{"credential_id":"%s","digest_algorithm":"sha256","signature_scheme":"ecdsa","digests":["%s"],"title":"Purchase contract no. 2026-17","description":"EUR 12,500 on delivery; 1 page","application":"Demo ERP","timeout_seconds":%d}' \
  "$cred" "$digest" "$timeout_s")
echo "digest (sha256, base64): $digest   Idempotency-Key: $idem"
pinentry_next
api "$gw/erp.auth" POST /v1/signatures "$body" "Idempotency-Key: $idem"
expect 202
job=$(json 'v["id"]')
vc=$(json 'v["verification_code"]')
fields id state verification_code title expires_at
echo "the ERP shows the signer: \"verification code $vc\""
# the same request again (a retry after a lost answer): the same job, not a second one
api "$gw/erp.auth" POST /v1/signatures "$body" "Idempotency-Key: $idem"
expect 200
[ "$(json 'v["id"]')" = "$job" ] || die "the replay made another job"
grep -qi '^Idempotent-Replayed: true' "$gw/http/last.hdr" || die "no Idempotent-Replayed header"
echo "    replayed: the same job $job (Idempotent-Replayed: true)"

if [ -z "${QES_DEMO_PINENTRY:-}" ]; then
  step "the signer's desktop: the pinentry dialog qes-agent opened"
  for _ in $(seq 1 300); do
    grep -q '^GETPIN' "$QES_TEST_PINENTRY_LOG" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '^GETPIN' "$QES_TEST_PINENTRY_LOG" 2>/dev/null || die "no PIN dialog opened within 30 s"
  dialog_text
  grep -qF "Verification code: $vc" "$QES_TEST_PINENTRY_LOG" || die "the dialog did not show code $vc"
  echo "the dialog shows the verification code $vc, the one the ERP shows; the PIN is typed in"
else
  echo "(the signer's dialog is open on this terminal: check that it shows the verification code $vc, then type the PIN, $QES_TOKEN_A_PIN)"
fi

step "GET /v1/signatures/$job?wait=30: long-poll until the job is final"
state=
for _ in $(seq 1 22); do
  api "$gw/erp.auth" GET "/v1/signatures/$job?wait=30"
  expect 200
  state=$(json 'v["state"]')
  echo "    state: $state"
  case "$state" in completed|failed|cancelled|expired) break ;; esac
done
[ "$state" = completed ] || { cat "$gw/http/last.json" >&2; die "the job ended $state, not completed"; }
fields id state verification_code updated_at
json 'v["signatures"][0]' | openssl base64 -d -A >"$demo/contract.api.sig"
echo "    signatures[0]:     $(stat -c %s "$demo/contract.api.sig") bytes (DER ECDSA-Sig-Value) -> contract.api.sig"
if [ -z "${QES_DEMO_PINENTRY:-}" ]; then
  [ "$(grep -c '^GETPIN' "$QES_TEST_PINENTRY_LOG")" = 1 ] || die "not exactly one PIN prompt for the job"
fi

step "openssl dgst -sha256 -verify: the signature value against the credential's certificate"
openssl x509 -in "$demo/credential.pem" -pubkey -noout >"$demo/credential.pub"
openssl dgst -sha256 -verify "$demo/credential.pub" -signature "$demo/contract.api.sig" "$demo/contract.txt"

step "qes sign --remote: the contract as a PDF, PAdES-B-T, through the device path"
# the test PKI's TSA (and OCSP/CRL) on the ports its certificates name; the
# lock keeps a concurrent test run off them (tests/pki_services.sh)
exec {pkisvc_lock}>"${TMPDIR:-/tmp}/qes-pki-services-$QES_PKI_HTTP_PORT.lock"
flock -w 600 "$pkisvc_lock" || die "the test PKI's ports stay in use"
mkdir -p "$demo/pki-services"
rm -f "$demo/pki-services.ready"
python3 tests/helpers/pki_services.py --pki "$pki" --http-port "$QES_PKI_HTTP_PORT" \
  --ocsp-port "$QES_PKI_OCSP_PORT" --work "$demo/pki-services" --ready "$demo/pki-services.ready" \
  >"$demo/pki-services.log" 2>&1 &
pkisvc_pid=$!
for _ in $(seq 1 100); do
  [ -s "$demo/pki-services.ready" ] && break
  kill -0 "$pkisvc_pid" 2>/dev/null || { cat "$demo/pki-services.log" >&2; die "the test TSA did not start"; }
  sleep 0.1
done
[ -s "$demo/pki-services.ready" ] || die "the test TSA is not ready after 10 s"
tsa=http://127.0.0.1:$QES_PKI_HTTP_PORT/tsa
echo "test TSA (openssl ts -reply) on $tsa"
# a one-page PDF of the contract (cairo), with a marker the gateway must never see
marker="demo-marker-$(openssl rand -hex 8)"
/usr/bin/python3 - "$demo/contract.txt" "$demo/contract.pdf" "$marker" <<'PY'  # Debian's python3-cairo
import cairo, sys
s = cairo.PDFSurface(sys.argv[2], 595, 842)
c = cairo.Context(s)
c.set_font_size(14)
for i, line in enumerate(open(sys.argv[1]).read().splitlines() + [sys.argv[3]]):
    c.move_to(72, 96 + 22 * i)
    c.show_text(line)
c.show_page()
s.finish()
open(sys.argv[2], "ab").write(("%% " + sys.argv[3] + "\n").encode())
PY
echo "contract.pdf: $(stat -c %s "$demo/contract.pdf") bytes (cairo)"
# the ERP's key, as a plain 0600 key file for the qes command
(umask 077; sed -n 's/^api_key: //p' "$gw/erp.auth.out" >"$gw/erp.key")
cat "$pki/issuing-ca.pem" "$pki/root-ca.pem" >"$demo/trust.pem"
pinentry_next
echo "qes sign --remote --credential $cred --format pades --level B-T --tsa $tsa ..."
build/qes sign --remote --credential "$cred" --key-file "$gw/erp.key" --format pades --level B-T \
  --in "$here/contract.pdf" --out "$here/contract-signed.pdf" \
  --title "Purchase contract no. 2026-17 (PDF)" --description "EUR 12,500 on delivery; 1 page" \
  --tsa "$tsa" --tsa-ca "$pki/root-ca.pem" --trust "$demo/trust.pem" --reason "Purchase contract" \
  --location Vienna | tee "$demo/remote.out"
rvc=$(sed -n 's/^Verification code: \([0-9]\{4\}\) .*/\1/p' "$demo/remote.out")
[ -n "$rvc" ] || die "qes sign --remote printed no verification code"
if [ -z "${QES_DEMO_PINENTRY:-}" ]; then
  echo "the signer was shown:"
  dialog_text
  grep -qF "Verification code: $rvc" "$QES_TEST_PINENTRY_LOG" || die "the dialog did not show code $rvc"
  echo "the dialog showed the verification code $rvc, the one qes sign printed"
fi
# only the digest travelled: no byte of the PDF is in the gateway's database
for f in "$gw/qesd.db" "$gw/qesd.db-wal"; do
  [ -f "$f" ] || continue
  if grep -qa -- "$marker" "$f"; then die "$f holds the PDF's content"; fi
done
echo "the gateway's database holds no byte of contract.pdf (its marker string is not in it)"

step "pdfsig: poppler checks the PAdES signature (test root in an NSS database)"
mkdir -p "$demo/nss"
certutil -N -d "sql:$demo/nss" --empty-password
certutil -A -d "sql:$demo/nss" -n "demo QTSP root" -t "CT,C,C" -i "$pki/root-ca.pem"
# pdfsig_check PDF [dss]: poppler accepts its signature (valid,
# ETSI.CAdES.detached, the whole document - or with dss, its own revision:
# the DSS of B-LT is an incremental update after it) and the signer's chain
# to the demo root
pdfsig_check() {
  pdfsig -nssdir "sql:$demo/nss" -no-ocsp "$1" | tee "$demo/pdfsig.out"
  grep -q 'Signature Validation: Signature is Valid.' "$demo/pdfsig.out" || die "pdfsig does not accept the signature"
  grep -q 'ETSI.CAdES.detached' "$demo/pdfsig.out" || die "not an ETSI.CAdES.detached signature"
  if [ "${2:-}" = dss ]; then
    grep -q 'Not total document signed' "$demo/pdfsig.out" || die "no update after the signature (the DSS)"
    echo "(the DSS is a later incremental update: pdfsig reports the signature's revision; qes verify checks both)"
  else
    grep -q 'Total document signed' "$demo/pdfsig.out" || die "the signature does not cover the whole PDF"
  fi
  if grep -E 'Certificate Validation: Certificate (issuer|has Expired|has been Revoked)' "$demo/pdfsig.out"; then
    die "pdfsig refuses the signer's certificate"
  fi
  if ! grep -q 'Certificate Validation: Certificate is Trusted.' "$demo/pdfsig.out"; then
    # poppler < 23 reads a stale NSS error after a successful chain check and
    # prints "Unknown issue"; NSS itself judges the chain on the same database
    echo "(poppler $(pdfsig -v 2>&1 | awk '/version/ { print $3 }') misreports a good chain as \"Unknown issue\"; NSS's vfychain on the same database:)"
    openssl x509 -in "$demo/credential.pem" -outform DER -out "$demo/credential.cer"
    openssl x509 -in "$pki/issuing-ca.pem" -outform DER -out "$demo/issuing-ca.cer"
    vfychain -d "sql:$demo/nss" -pp -u 4 "$demo/credential.cer" "$demo/issuing-ca.cer" 2>&1 | tee "$demo/vfychain.out" || true
    grep -q 'Chain is good!' "$demo/vfychain.out" || die "NSS does not trust the signer's certificate"
  fi
}
pdfsig_check "$demo/contract-signed.pdf"

step "qes verify: the same PDF, its chain and timestamp against the demo root"
build/qes verify --trust "$pki/root-ca.pem" "$here/contract-signed.pdf"

step "POST /v1/signatures with the PDF itself: the gateway prepares PAdES-B-LT, the device signs, the gateway finishes"
# a raw upload (Content-Type application/pdf; the other fields in the query):
# the gateway seals the document at rest for the job's life, sends the
# signer only the digest, and adds the timestamp and validation data itself
pinentry_next
q="credential_id=$cred&format=pades&level=B-LT&title=Purchase%20contract%20no.%202026-17%20(PDF%20upload)"
status=$(curl -sS --cacert "$pki/root-ca.pem" -o "$gw/http/last.json" -D "$gw/http/last.hdr" -w '%{http_code}' \
  -H @"$gw/erp.auth" -H 'Content-Type: application/pdf' --data-binary @"$demo/contract.pdf" \
  "$server/v1/signatures?$q") || status=000
echo "POST /v1/signatures?$q (application/pdf, $(stat -c %s "$demo/contract.pdf") bytes) -> $status"
expect 202
djob=$(json 'v["id"]')
dvc=$(json 'v["verification_code"]')
fields id state format level verification_code
for _ in $(seq 1 22); do
  api "$gw/erp.auth" GET "/v1/signatures/$djob?wait=30"
  expect 200
  state=$(json 'v["state"]')
  echo "    state: $state"
  case "$state" in completed|failed|cancelled|expired) break ;; esac
done
[ "$state" = completed ] || { cat "$gw/http/last.json" >&2; die "the document job ended $state, not completed"; }
if [ -z "${QES_DEMO_PINENTRY:-}" ]; then
  grep -qF "Verification code: $dvc" "$QES_TEST_PINENTRY_LOG" || die "the dialog did not show code $dvc"
  echo "the signer's dialog showed the verification code $dvc"
fi
fields id state result_url
status=$(curl -sS --cacert "$pki/root-ca.pem" -o "$demo/contract-gateway.pdf" -D "$gw/http/last.hdr" -w '%{http_code}' \
  -H @"$gw/erp.auth" "$server/v1/signatures/$djob/result") || status=000
echo "GET /v1/signatures/$djob/result -> $status ($(stat -c %s "$demo/contract-gateway.pdf") bytes, $(sed -n 's/^[Cc]ontent-[Tt]ype: *//p' "$gw/http/last.hdr" | tr -d '\r'))"
expect 200
api "$gw/erp.auth" GET "/v1/signatures/$djob/result"
expect 410
echo "    (handed out once: the second fetch is 410 result_gone)"
pdfsig_check "$demo/contract-gateway.pdf" dss
build/qes verify --trust "$pki/root-ca.pem" "$here/contract-gateway.pdf" | tee "$demo/verify-gateway.out"
grep -q 'PAdES B-LT' "$demo/verify-gateway.out" || die "qes verify does not report PAdES B-LT"
grep -Eq 'revocation: .*( [1-9][0-9]* OCSP responses| [1-9][0-9]* CRLs)' "$demo/verify-gateway.out" ||
  die "no revocation data (OCSP or CRL) in the signature or DSS"
left=$(sqlite3 "$gw/qesd.db" 'SELECT count(*) FROM job_documents')
[ "$left" = 0 ] || die "the gateway still holds $left documents"
echo "the gateway holds no document any more (job_documents is empty)"
kill -TERM "$pkisvc_pid" 2>/dev/null || true
wait "$pkisvc_pid" 2>/dev/null || true
pkisvc_pid=''
exec {pkisvc_lock}>&-

step "the audit log: the device and its job (GET /v1/audit?device=$device), the chain verified offline"
api "$gw/erp.auth" GET "/v1/audit?device=$device"
[ "$status" = 403 ] || die "a key with scope sign may read the audit log"
echo "    (scope sign may not read the audit log: the tenant's admin key does)"
(umask 077; printf 'Authorization: Bearer %s\n' "$QES_API_KEY" >"$gw/admin.auth")
api "$gw/admin.auth" GET "/v1/audit?device=$device"
expect 200
# the device's records: its enrollment, its session, and the job (by job_id)
python3 - "$gw/http/last.json" "$job" <<'PY' >"$demo/device-audit.txt"
import json, sys, time
job = sys.argv[2]
for r in json.load(open(sys.argv[1]))["records"]:
    d = r.get("details") or {}
    if r["type"].startswith("signature.") and d.get("job_id") != job:
        continue
    what = {"device.enrolled": lambda: 'name "%s"' % d.get("name"),
            "device.session_opened": lambda: d.get("session_id"),
            "device.inventory_changed": lambda: "%s credentials on %s tokens" % (d.get("credentials"), d.get("tokens")),
            }.get(r["type"], lambda: "%s %s" % (d.get("job_id"), d.get("state")))()
    print("    seq %-3s %s  %-24s %-30s %-8s %s" % (r["seq"],
          time.strftime("%H:%M:%S", time.gmtime(r["time_ms"] / 1000)), r["type"],
          r.get("key_id") or "(the device)", r["hash"][:12] + "...", what))
PY
cat "$demo/device-audit.txt"
for t in device.enrolled device.session_opened signature.requested signature.dispatched signature.completed; do
  grep -q " $t " "$demo/device-audit.txt" || die "no $t record for $device"
done
echo "the job's requests came from the ERP's key ($(sed -n 's/^key_id: //p' "$gw/erp.auth.out")), its result from the device"
build/qes audit export --out "$here/gw/audit.jsonl"
build/qes audit verify "$here/gw/audit.jsonl"

step "stop: the agent, then the gateway (SIGTERM, each exits 0)"
kill -TERM "$agent_pid"
rc=0; wait "$agent_pid" || rc=$?
agent_pid=''
[ "$rc" = 0 ] || die "qes-agent exited $rc"
echo "qes-agent stopped (exit 0)"
kill -TERM "$qesd_pid"
rc=0; wait "$qesd_pid" || rc=$?
qesd_pid=''
[ "$rc" = 0 ] || die "qesd exited $rc"
echo "qesd drained and stopped (exit 0)"
if [ -n "$keyring_pid" ]; then kill -TERM "$keyring_pid" 2>/dev/null || true; keyring_pid=''; fi
if [ -n "$bus_pid" ]; then kill -TERM "$bus_pid" 2>/dev/null || true; bus_pid=''; fi

# the PIN went from the dialog to the token and nowhere else (a PIN with hex
# digits on either side is part of a hash or an id, not a PIN)
for f in "$gw/qesd.log" "$desk/agent.log" "$desk/enroll.out" "$desk/enroll.err" "$gw"/http/* \
    "$gw/audit.jsonl" "$gw/qesd.db" "$gw/qesd.db-wal"; do
  [ -f "$f" ] || continue
  if grep -qaE -- "(^|[^0-9a-fA-F])$QES_TOKEN_A_PIN([^0-9a-fA-F]|\$)" "$f"; then die "$f contains the PIN"; fi
done
echo "the PIN is in no log, HTTP answer, audit export or the gateway's database"

printf '\ndemo: OK\n'
