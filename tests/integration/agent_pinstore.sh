#!/usr/bin/env bash
# The opt-in PIN store end to end, against a real Secret Service (gnome-keyring
# under its own dbus-run-session, unlocked non-interactively) and real SoftHSM2
# tokens, with the scripted pinentry standing in for the signer:
#
#   - `qes-agent pin remember` checks the PIN on the token first: a wrong PIN is
#     refused and nothing is stored; the right one is stored under the qes
#     schema, keyed by the token serial (secret-tool finds it);
#   - signing (tests/helpers/qes-agent-sign-test: qes_sign_local with the
#     agent's PIN source) uses it: a CONFIRM dialog with the same description,
#     no GETPIN, and a signature OpenSSL verifies;
#   - a token that reports PIN count low gets no stored PIN: the signer is asked;
#   - a stored PIN the token rejects (planted with secret-tool) is tried once
#     (pkcs11-spy counts the C_Login calls), deleted at once, never retried,
#     and the signer is asked; the token then reports count low;
#   - forget (one token, --all), list (serials only);
#   - pin_storage = disabled, pin_policy = every_signature (global, per token),
#     a broken agent.conf; no Secret Service at all; a stuck one (SIGSTOP) is
#     given up on within secret_service_timeout_ms;
#   - finally no PIN appears in any log, output or file the test made, except
#     the pinentry scripts that typed them.
set -euo pipefail

# Outer part: a throw-away HOME and XDG dirs, so the session bus and everything
# it starts (gnome-keyring) only ever see these; then the test itself runs
# inside dbus-run-session.
if [ -z "${QES_PINSTORE_IN_DBUS:-}" ]; then
  for tool in dbus-run-session dbus-send gnome-keyring-daemon secret-tool; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (run scripts/deps.sh)" >&2; exit 1; }
  done
  home=$(mktemp -d "${TMPDIR:-/tmp}/qes-agent_pinstore-home.XXXXXX")
  export HOME=$home XDG_CONFIG_HOME=$home/config XDG_DATA_HOME=$home/data \
    XDG_CACHE_HOME=$home/cache XDG_RUNTIME_DIR=$home/run
  mkdir -p -m 700 "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_CACHE_HOME" "$XDG_RUNTIME_DIR"
  unset DBUS_SESSION_BUS_ADDRESS DISPLAY WAYLAND_DISPLAY GNOME_KEYRING_CONTROL
  rc=0
  QES_PINSTORE_IN_DBUS=1 dbus-run-session -- bash "$0" "$@" || rc=$?
  if [ "${QES_KEEP_TMP:-0}" = 1 ]; then echo "# kept $home" >&2; else rm -rf -- "$home"; fi
  exit "$rc"
fi

source "$QES_SOURCE_DIR/tests/lib.sh"
dir=$(qes_tmpdir)
qes_private_tokens "$dir/tokens"
mkdir -p "$dir/log"

PE=$QES_BUILD_DIR/tests/qes-test-pinentry
SIGN_TEST=$QES_BUILD_DIR/tests/qes-agent-sign-test
export QES_TEST_PINENTRY_SCRIPT=$dir/pinentry.script
export QES_TEST_PINENTRY_LOG=$dir/pinentry.log
M=$QES_TEST_MODULE
SPY=$(ls /usr/lib/*/pkcs11-spy.so /usr/lib/*/pkcs11/pkcs11-spy.so 2>/dev/null | head -n 1 || true)
A=$QES_TOKEN_A_SERIAL B=$QES_TOKEN_B_SERIAL
PIN_A=$QES_TOKEN_A_PIN PIN_B=$QES_TOKEN_B_PIN
WRONG=736194 PLANTED=918273	# distinct digits: no false hits in serials
CONF=$XDG_CONFIG_HOME/qes/agent.conf
mkdir -p -m 700 "$XDG_CONFIG_HOME/qes"
head -c 50000 /dev/urandom >"$dir/doc.bin"

# --- the Secret Service: gnome-keyring with a login keyring unlocked by "test"
echo -n test | gnome-keyring-daemon --unlock --components=secrets >"$dir/log/gkd.out" 2>&1
owned=false
for _ in $(seq 1 100); do
  if dbus-send --session --print-reply --dest=org.freedesktop.DBus / \
      org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'; then
    owned=true; break
  fi
  sleep 0.1
done
$owned || fail "gnome-keyring did not take org.freedesktop.secrets"
GKD_PID=$(dbus-send --session --print-reply --dest=org.freedesktop.DBus / \
  org.freedesktop.DBus.GetConnectionUnixProcessID string:org.freedesktop.secrets | awk '/uint32/ { print $2 }')
[ -n "$GKD_PID" ] || fail "no pid for gnome-keyring"
qes_on_exit "kill -CONT $GKD_PID; kill $GKD_PID"
ok "gnome-keyring runs on a private session bus (pid $GKD_PID)"

# --- helpers
# pinentry_script ACTION...: the next dialogs' answers; a fresh transcript
pinentry_script() { printf '%s\n' "$@" >"$QES_TEST_PINENTRY_SCRIPT"; rm -f "$QES_TEST_PINENTRY_SCRIPT.pos" "$QES_TEST_PINENTRY_LOG"; }
dialogs() { grep -c "^$1" "$QES_TEST_PINENTRY_LOG" 2>/dev/null || true; }
# run NAME CMD...: stdout and stderr into $dir/log/NAME.{out,err}; exit code in $rc
run() { local name=$1; shift; rc=0; qes_run_checked "$@" >"$dir/log/$name.out" 2>"$dir/log/$name.err" || rc=$?; }
agent() { local name=$1; shift; run "$name" "$QES_AGENT" "$@"; }
remember() { agent "$1" pin remember --token "$2" --module "$M" --only-module --pinentry "$PE"; }
# sign NAME SERIAL KEY [extra]: the agent's signing job, PIN source included,
# through module $SIGN_MODULE
SIGN_MODULE=$M
sign() {
  local name=$1 serial=$2 key=$3; shift 3
  rm -f "$dir/sig"
  run "$name" "$SIGN_TEST" --module "$SIGN_MODULE" --token "$serial" --key "$key" \
    --pinentry "$PE" --in "$dir/doc.bin" --out "$dir/sig" --title "Contract $name" "$@"
}
verify() { # CERT: the last signature against the certificate's key
  openssl x509 -in "$1" -pubkey -noout >"$dir/pub.pem"
  openssl dgst -sha256 -verify "$dir/pub.pem" -signature "$dir/sig" "$dir/doc.bin" | grep "Verified OK" >/dev/null ||
    fail "OpenSSL rejects the signature"
}
# stored SERIAL: 0 when the Secret Service holds a qes PIN item for SERIAL
# (secret-tool prints the attributes on stderr; and no grep -q: with pipefail
# its early exit would fail the pipe)
stored() {
  secret-tool search --all xdg:schema org.qes.Agent kind pin key "$1" 2>&1 |
    grep -v '^secret = ' | grep -xF "attribute.key = $1" >/dev/null
}
count_low() { # SERIAL: "True"/"False", from the token's flags
  "$QES_AGENT" tokens --json --module "$M" --only-module >"$dir/log/tokens.json"
  python3 -c 'import json,sys; t=[t for t in json.load(open(sys.argv[1]))["tokens"] if t.get("serial")==sys.argv[2]][0]; print(t["flags"]["user_pin_count_low"])' "$dir/log/tokens.json" "$1"
}
set_conf() { printf '%s\n' "$@" >"$CONF"; chmod 600 "$CONF"; }

# --- the device key and a PIN in the Secret Service (the unit test's
# platform part, which needs this session)
QES_TEST_SECRET_SERVICE=1 QES_TEST_FILTER=test_secret_service \
  run unit-secret-service "$QES_BUILD_DIR/tests/test_agent_platform"
[ "$rc" = 0 ] || { cat "$dir/log/unit-secret-service.out" >&2; fail "the Secret Service unit test"; }
expect_contains "$dir/log/unit-secret-service.out" "[       OK ] test_secret_service"
ok "the device key is kept in the Secret Service (an older file copy removed), a PIN round-trips"

# --- remember: nothing before; a wrong PIN is refused and not stored
agent list0 pin list
expect_eq "$rc" 0 "pin list with nothing stored"
[ ! -s "$dir/log/list0.out" ] || fail "pin list printed something with nothing stored"

pinentry_script "pin $WRONG"
remember remember-wrong "$A"
expect_eq "$rc" 4 "remember with a wrong PIN exits 4"
expect_contains "$dir/log/remember-wrong.err" "PIN incorrect"
expect_contains "$dir/log/remember-wrong.err" "nothing stored"
expect_eq "$(dialogs GETPIN)" 1 "remember asks once"
! stored "$A" || fail "a wrong PIN was stored"
ok "remember: a PIN the token refuses is not stored"

# --- remember the right PIN (the token reports count low after the wrong one:
# remember still works, and warns in the dialog)
pinentry_script "pin $PIN_A"
remember remember-a "$A"
expect_eq "$rc" 0 "remember with the right PIN"
expect_contains "$dir/log/remember-a.out" "remembered the PIN of token \"$QES_TOKEN_A_LABEL\""
expect_contains "$QES_TEST_PINENTRY_LOG" "few PIN attempts are left"
stored "$A" || fail "secret-tool does not find the stored PIN of $A"
secret-tool search --all xdg:schema org.qes.Agent kind pin key "$A" 2>&1 |
  grep -v '^secret = ' >"$dir/log/secret-tool-a.txt"
expect_contains "$dir/log/secret-tool-a.txt" "attribute.kind = pin"
expect_contains "$dir/log/secret-tool-a.txt" "label = qes: PIN of token \"$QES_TOKEN_A_LABEL\" (serial $A)"
agent list1 pin list
expect_eq "$(cat "$dir/log/list1.out")" "$A" "pin list shows the serial only"
expect_eq "$(count_low "$A")" False "the proving login reset the count"
ok "remember: the right PIN is stored in the Secret Service under the token serial"

# --- signing uses it: consent dialog, no PIN dialog
pinentry_script confirm
sign stored-a "$A" 02
expect_eq "$rc" 0 "sign with the stored PIN"
verify "$QES_PKI/qual-p256.pem"
expect_eq "$(dialogs GETPIN)" 0 "no PIN dialog with a stored PIN"
expect_eq "$(dialogs CONFIRM)" 1 "one consent dialog"
expect_contains "$QES_TEST_PINENTRY_LOG" "Contract stored-a"
expect_contains "$QES_TEST_PINENTRY_LOG" "serial $A"
expect_contains "$dir/log/stored-a.err" '"event":"pin_store_used"'
ok "a stored PIN signs after a CONFIRM that shows the request; OpenSSL verifies"

# declining the consent is a refusal, not a reason to ask for the PIN
pinentry_script decline
sign declined-a "$A" 02
expect_eq "$rc" 6 "declined consent exits 6"
expect_eq "$(dialogs GETPIN)" 0 "no PIN dialog after a declined consent"
stored "$A" || fail "a declined consent deleted the stored PIN"
ok "declining the consent dialog cancels the job; the stored PIN stays"

# --- count low: the stored PIN is not used, the signer is asked
pinentry_script "pin $WRONG" cancel
run cli-wrong "$QES_CLI" sign --raw --module "$M" --only-module --pinentry "$PE" \
  --token "$A" --key 02 --in "$dir/doc.bin" --out "$dir/sig"
expect_eq "$rc" 6 "a wrong PIN then cancel"
expect_eq "$(count_low "$A")" True "token A reports count low"
pinentry_script "pin $PIN_A"
sign countlow-a "$A" 02
expect_eq "$rc" 0 "sign while count low"
verify "$QES_PKI/qual-p256.pem"
expect_eq "$(dialogs GETPIN)" 1 "count low: the signer is asked for the PIN"
expect_eq "$(dialogs CONFIRM)" 0 "count low: no stored-PIN consent dialog"
stored "$A" || fail "the stored PIN was deleted although it was not tried"
expect_eq "$(count_low "$A")" False "the right PIN reset the count"
ok "count low: the stored PIN is not used, the signer types the PIN"

# --- a stored PIN that cannot be this token's (too short): forgotten without
# spending a try on it
printf '%s' 12 | secret-tool store --label "planted by the test" \
  xdg:schema org.qes.Agent kind pin key "$B"
pinentry_script "pin $PIN_B"
sign unfit-b "$B" 11
expect_eq "$rc" 0 "sign after an unfit stored PIN"
verify "$QES_PKI/qual-rsa3072.pem"
! stored "$B" || fail "the unfit PIN is still stored"
expect_eq "$(dialogs CONFIRM)" 0 "no consent dialog for an unfit PIN"
expect_eq "$(dialogs GETPIN)" 1 "the signer is asked"
expect_contains "$QES_TEST_PINENTRY_LOG" "does not fit this token and has been forgotten"
expect_eq "$(count_low "$B")" False "no token try was spent"
ok "a stored PIN the token cannot take is forgotten without a try"

# --- a stored PIN the token rejects: tried once, deleted at once, signer asked.
# Twice: on the module itself (under valgrind or LeakSanitizer when those run),
# then through pkcs11-spy, which logs every C_Login so the tries can be counted
# (pkcs11-spy leaks its own interface tables, so that run is not leak-checked,
# and its log holds the PINs by design: it is deleted after counting).
logins() { # RESULT: how many C_Login calls returned RESULT in the spy log
  awk -v want="$1" '/^[0-9]+: C_Login$/ { l = 1; next } l && /^Returned:/ { if ($3 == want) n++; l = 0 } END { print n + 0 }' "$dir/spy.log"
}
sign_via() { # NAME: sign with token B's key 11, leak-checked unless through the spy
  if [ "$via" = spy ]; then
    QES_VALGRIND=0 ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" sign "$1" "$B" 11
  else
    sign "$1" "$B" 11
  fi
}
for via in module spy; do
  if [ "$via" = spy ]; then
    [ -n "$SPY" ] || { echo "# pkcs11-spy not found: login count not checked"; break; }
    export PKCS11SPY=$M PKCS11SPY_OUTPUT=$dir/spy.log
    SIGN_MODULE=$SPY
    rm -f "$dir/spy.log"
  fi
  printf '%s' "$PLANTED" | secret-tool store --label "planted by the test" \
    xdg:schema org.qes.Agent kind pin key "$B"
  stored "$B" || fail "could not plant a PIN"
  pinentry_script confirm cancel
  sign_via planted-$via
  expect_eq "$rc" 6 "the signer cancels the PIN dialog after the rejection ($via)"
  ! stored "$B" || fail "the rejected PIN is still stored ($via)"
  expect_eq "$(dialogs CONFIRM)" 1 "consent asked before the stored PIN was tried ($via)"
  expect_eq "$(dialogs GETPIN)" 1 "the signer was asked after the rejection ($via)"
  expect_contains "$QES_TEST_PINENTRY_LOG" "refused the remembered PIN, which has been forgotten"
  expect_contains "$dir/log/planted-$via.err" '"event":"pin_rejected_deleted"'
  expect_eq "$(count_low "$B")" True "token B counted the failure ($via)"
  if [ "$via" = spy ]; then
    expect_eq "$(grep -c '^[0-9]*: C_Login$' "$dir/spy.log")" 1 "exactly one login attempt"
    expect_eq "$(logins CKR_PIN_INCORRECT)" 1 "the one attempt was the stored PIN, refused"
    rm -f "$dir/spy.log"
  fi
  pinentry_script "pin $PIN_B"
  sign_via after-$via
  expect_eq "$rc" 0 "sign after the rejection ($via)"
  verify "$QES_PKI/qual-rsa3072.pem"
  expect_eq "$(dialogs CONFIRM)" 0 "no stored PIN any more: no consent-only dialog ($via)"
  expect_eq "$(dialogs GETPIN)" 1 "the signer types the PIN ($via)"
  expect_eq "$(count_low "$B")" False "the typed PIN reset the count ($via)"
  if [ "$via" = spy ]; then
    expect_eq "$(logins CKR_PIN_INCORRECT)" 0 "the rejected PIN is never tried again"
    expect_eq "$(logins CKR_OK)" 1 "one login, with the typed PIN"
    rm -f "$dir/spy.log"
    unset PKCS11SPY PKCS11SPY_OUTPUT
    SIGN_MODULE=$M
  fi
done
ok "a rejected stored PIN is tried once, deleted at once, never retried; the signer is asked"

# --- forget
pinentry_script "pin $PIN_B"
remember remember-b "$B"
expect_eq "$rc" 0 "remember B"
agent list2 pin list
expect_eq "$(sort "$dir/log/list2.out" | tr '\n' ' ')" "$(printf '%s\n' "$A" "$B" | sort | tr '\n' ' ')" "both serials listed"
agent forget-a pin forget --token "$A"
expect_eq "$rc" 0 "forget A"
! stored "$A" || fail "forget left A's PIN"
stored "$B" || fail "forget A removed B's PIN"
agent forget-a2 pin forget --token "$A"
expect_eq "$rc" 3 "forgetting what is not stored exits 3"
agent forget-usage pin forget
expect_eq "$rc" 2 "forget needs --token or --all"
pinentry_script "pin $PIN_A"
remember remember-a2 "$A"
agent forget-all pin forget --all
expect_eq "$rc" 0 "forget --all"
expect_contains "$dir/log/forget-all.out" "forgot 2 remembered PINs"
! stored "$A" && ! stored "$B" || fail "forget --all left a PIN"
agent list3 pin list
[ ! -s "$dir/log/list3.out" ] || fail "pin list after forget --all"
ok "forget --token and --all delete, list shows serials only"

# --- pin_storage = disabled: remember refuses, stored PINs are ignored
pinentry_script "pin $PIN_A"
remember remember-a3 "$A"
expect_eq "$rc" 0 "remember A again"
set_conf "# storage switched off by the administrator" "pin_storage = disabled"
pinentry_script "pin $PIN_B"
remember remember-disabled "$B"
expect_eq "$rc" 1 "remember refused when storage is disabled"
expect_contains "$dir/log/remember-disabled.err" "pin_storage = disabled"
[ ! -e "$QES_TEST_PINENTRY_LOG" ] || fail "pinentry was started although storage is disabled"
! stored "$B" || fail "a PIN was stored while storage is disabled"
pinentry_script "pin $PIN_A"
sign disabled-a "$A" 02
expect_eq "$rc" 0 "sign with storage disabled"
expect_eq "$(dialogs GETPIN)" 1 "disabled: the PIN is asked"
expect_eq "$(dialogs CONFIRM)" 0 "disabled: the stored PIN is not used"
agent list-disabled pin list
expect_eq "$(cat "$dir/log/list-disabled.out")" "$A" "list works while disabled"
expect_contains "$dir/log/list-disabled.err" "not used"
ok "pin_storage = disabled: remember refuses, stored PINs are ignored"

# --- pin_policy = every_signature (global, then one token)
set_conf "pin_policy = every_signature"
for i in 1 2; do
  pinentry_script "pin $PIN_A"
  sign every-$i "$A" 02
  expect_eq "$rc" 0 "sign $i under every_signature"
  expect_eq "$(dialogs GETPIN)" 1 "every_signature: PIN asked (signature $i)"
done
set_conf "pin_policy.$A = every_signature"
pinentry_script "pin $PIN_B"
remember remember-b2 "$B"
expect_eq "$rc" 0 "remember B while only A asks every time"
pinentry_script "pin $PIN_A"
sign every-a "$A" 02
expect_eq "$(dialogs GETPIN)" 1 "pin_policy.A: A's PIN is asked"
pinentry_script confirm
sign every-b "$B" 11
expect_eq "$rc" 0 "B signs with its stored PIN"
expect_eq "$(dialogs GETPIN)" 0 "B's stored PIN is used"
pinentry_script "pin $PIN_A"
remember remember-policy "$A"
expect_eq "$rc" 1 "remember refused for a token whose policy asks every time"
ok "pin_policy = every_signature overrides storage, globally and per token"

# --- a broken agent.conf never enables storage
set_conf "pin_storge = disabled"
pinentry_script confirm
sign broken-b "$B" 11
expect_eq "$(dialogs GETPIN)" 1 "broken configuration: the PIN is asked"
expect_contains "$dir/log/broken-b.err" "unknown key"
pinentry_script "pin $PIN_A"
remember remember-broken "$A"
expect_eq "$rc" 1 "remember refuses with a broken configuration"
expect_contains "$dir/log/remember-broken.err" "unknown key"
rm -f "$CONF"
ok "a broken agent.conf: stored PINs unused, remember refused"

# --- no Secret Service reachable: remember refuses, signing asks
pinentry_script "pin $PIN_A"
DBUS_SESSION_BUS_ADDRESS=unix:path=$dir/no-such-bus remember nobus-remember "$A"
expect_eq "$rc" 1 "remember without a Secret Service"
expect_contains "$dir/log/nobus-remember.err" "no Secret Service reachable"
[ ! -e "$QES_TEST_PINENTRY_LOG" ] || fail "pinentry was started without a Secret Service"
pinentry_script "pin $PIN_B"
DBUS_SESSION_BUS_ADDRESS=unix:path=$dir/no-such-bus sign nobus-sign "$B" 11
expect_eq "$rc" 0 "signing without a Secret Service"
expect_eq "$(dialogs GETPIN)" 1 "no Secret Service: the PIN is asked"
DBUS_SESSION_BUS_ADDRESS=unix:path=$dir/no-such-bus agent nobus-list pin list
expect_eq "$rc" 1 "pin list without a Secret Service"
[ -z "$(ls -A "$XDG_CONFIG_HOME/qes")" ] || fail "something was written to the config directory"
QES_TEST_SECRET_SERVICE=0 QES_TEST_FILTER=test_secret_service DBUS_SESSION_BUS_ADDRESS=unix:path=$dir/no-such-bus \
  run unit-no-bus "$QES_BUILD_DIR/tests/test_agent_platform"
[ "$rc" = 0 ] || { cat "$dir/log/unit-no-bus.out" >&2; fail "the unit test without a bus"; }
expect_contains "$dir/log/unit-no-bus.out" "[       OK ] test_secret_service"
ok "no Secret Service: nothing stored anywhere but the device key (in a 0600 file), signing asks for the PIN"

# --- a stuck Secret Service is given up on within the timeout
set_conf "secret_service_timeout_ms = 1000"
kill -STOP "$GKD_PID"
pinentry_script "pin $PIN_B"
t0=$(date +%s)
sign stuck-sign "$B" 11
t1=$(date +%s)
expect_eq "$rc" 0 "signing with a stuck Secret Service"
expect_eq "$(dialogs GETPIN)" 1 "stuck Secret Service: the PIN is asked"
[ $((t1 - t0)) -lt 10 ] || fail "signing waited $((t1 - t0)) s for a stuck Secret Service"
expect_contains "$dir/log/stuck-sign.err" "no answer within 1000 ms"
agent stuck-list pin list
expect_eq "$rc" 1 "pin list with a stuck Secret Service"
kill -CONT "$GKD_PID"
rm -f "$CONF"
agent list-after pin list
expect_eq "$rc" 0 "the Secret Service answers again"
expect_eq "$(sort "$dir/log/list-after.out" | tr '\n' ' ')" "$(printf '%s\n' "$A" "$B" | sort | tr '\n' ' ')" "the stored PINs are intact"
ok "a stuck Secret Service times out: the signer is asked, nothing hangs"

# --- qes-agent run with its device key in the Secret Service stops cleanly
# on SIGTERM (libsecret's D-Bus thread must not be the one the signal hits:
# the agent blocks the signals before it loads the key), against the scripted
# qes.v1 gateway of agent_session.sh
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/gw-ca.key" \
  -out "$dir/gw-ca.pem" -days 2 -subj "/CN=fake gateway CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/gw.key" \
  -out "$dir/gw.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$dir/gw-ext.cnf"
openssl x509 -req -in "$dir/gw.csr" -CA "$dir/gw-ca.pem" -CAkey "$dir/gw-ca.key" -CAcreateserial \
  -days 2 -extfile "$dir/gw-ext.cnf" -out "$dir/gw.pem" 2>/dev/null
mkdir -p "$dir/gw"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=$(command -v python3)
"$PY" "$QES_SOURCE_DIR/tests/helpers/fake_gateway.py" --cert "$dir/gw.pem" --key "$dir/gw.key" \
  --state "$dir/gw" --heartbeat 5 --code KEYRING-1 2>"$dir/log/gw.err" &
GW_PID=$!
qes_on_exit "kill $GW_PID"
for _ in $(seq 1 100); do [ -s "$dir/gw/https.port" ] && break; sleep 0.1; done
[ -s "$dir/gw/https.port" ] || { cat "$dir/log/gw.err" >&2; fail "the fake gateway did not start"; }
agent enroll-keyring enroll --server "https://localhost:$(cat "$dir/gw/https.port")" \
  --code KEYRING-1 --ca "$dir/gw-ca.pem" --config "$dir/agentcfg"
expect_eq "$rc" 0 "enroll with the Secret Service reachable"
expect_not_contains "$dir/log/enroll-keyring.err" "0600 file"
expect_contains "$dir/log/enroll-keyring.out" "device key in the Secret Service"
# the fake gateway serves the WebSocket on a port of its own
sed -i "s|https://localhost:$(cat "$dir/gw/https.port")|https://localhost:$(cat "$dir/gw/wss.port")|" \
  "$dir/agentcfg/enrollment.json"
# a simple command, so that $! is the agent itself
"$QES_AGENT" run --config "$dir/agentcfg" --module "$M" --only-module --pinentry "$PE" \
  >"$dir/log/run-keyring.out" 2>"$dir/log/run-keyring.err" &
RUN_PID=$!
qes_on_exit "kill -KILL $RUN_PID"
for _ in $(seq 1 100); do grep -q ' live ses_' "$dir/gw/events.log" 2>/dev/null && break; sleep 0.1; done
grep -q ' live ses_' "$dir/gw/events.log" || { cat "$dir/log/run-keyring.err" >&2; fail "the agent's session did not go live"; }
kill -TERM "$RUN_PID"
rc=0; wait "$RUN_PID" || rc=$?
expect_eq "$rc" 0 "qes-agent run (device key in the Secret Service) exit status after SIGTERM"
for _ in $(seq 1 50); do grep -q 'closed 1000' "$dir/gw/events.log" && break; sleep 0.1; done
expect_contains "$dir/gw/events.log" "closed 1000"
ok "qes-agent run with its device key in gnome-keyring: SIGTERM closes the session (1000) and exits 0"

# --- no PIN anywhere: logs, outputs, transcripts, configuration
agent forget-end pin forget --all
pins=("$PIN_A" "$PIN_B" "$WRONG" "$PLANTED")
find "$dir" "$HOME" -type f \
  ! -path "$dir/tokens/*" ! -path "$XDG_DATA_HOME/keyrings/*" \
  ! -name 'pinentry.script*' >"$dir/files.txt"
[ -s "$dir/files.txt" ] || fail "no files to check"
while IFS= read -r f; do
  for p in "${pins[@]}"; do
    expect_not_contains "$f" "$p"
  done
done <"$dir/files.txt"
ok "no PIN in $(wc -l <"$dir/files.txt") logs, outputs and files"
