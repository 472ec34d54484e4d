#!/usr/bin/env bash
# remote_sign.sh - `qes sign --remote`: AdES signatures made through a real
# qesd (TLS 1.3; SQLite, or PostgreSQL + NATS with QES_TEST_BACKEND=pgnats) by a real qes-agent with SoftHSM2 and the scripted
# pinentry, in hash-only mode: the CLI prepares, only the digest travels,
# the CLI finishes with the test PKI's TSA and OCSP/CRL services.
#
# Judged by tools that are not qes: pdfsig (NSS database with the test root;
# on poppler 22 NSS's vfychain judges the chain, as in pades_pdf.sh) and openssl cms over the PDF's
# ranges, qpdf --check (PAdES B-T, B-LT), openssl cms -verify (CAdES
# detached B-T), xmlsec1 (XAdES detached B-T), jwcrypto (JAdES B-B). Also:
# the code the CLI prints is the one the signer's dialog showed; a declined
# dialog exits 6 with nothing written; an unknown credential exits 3; the
# gateway's database holds no byte of the documents (a marker string).
# shellcheck disable=SC2015
. "$(dirname -- "$0")/../lib.sh"
. "$QES_SOURCE_DIR/tests/pki_services.sh"
. "$QES_SOURCE_DIR/tests/ades_checks.sh"

ades_gateway_setup
PY=/usr/bin/python3
JV=$QES_SOURCE_DIR/tests/helpers/jws_verify.py
qes_need curl openssl sqlite3 qpdf pdfsig certutil vfychain xmlsec1 "$PY"
. "$QES_SOURCE_DIR/tests/qesd.sh"

# ---------------------------------------------------------------- qesd
qesd_with_agent remote
ok "qesd, an enrolled qes-agent with SoftHSM2; credential $CRED (qual-p256)"

# ---------------------------------------------------------------- documents
MARKER="qes-remote-marker-$(openssl rand -hex 8)"
marker_pdf doc.pdf "remote signing test" "$MARKER"
{ printf '%s\n' "$MARKER"; head -c 50000 /dev/urandom; } >doc.bin
printf '{"order":"%s"}' "$MARKER" >payload.json
cat "$P/issuing-ca.pem" "$P/root-ca.pem" >trust.pem

# rsign FORMAT LEVEL IN OUT [options]: sign remotely; the printed code must
# be the one the dialog showed, and no PIN in the output
rsign() {
    local fmt=$1 lvl=$2 in=$3 out=$4 vc
    shift 4
    pinentry_script "pin $QES_TOKEN_A_PIN"
    "$QES_CLI" sign --remote --credential "$CRED" --server "$SERVER" --ca "$CA" \
        --key-file sign.key --format "$fmt" --level "$lvl" --in "$in" --out "$out" \
        --title "Remote $fmt $lvl" --description "remote_sign.sh" \
        --tsa "$QES_PKI_TSA_URL" --tsa-ca "$P/root-ca.pem" --trust trust.pem "$@" \
        >"$out.log" 2>&1 || { cat "$out.log" >&2; fail "qes sign --remote $fmt $lvl"; }
    vc=$(sed -n 's/^Verification code: \([0-9]\{4\}\) .*/\1/p' "$out.log")
    [ -n "$vc" ] || { cat "$out.log" >&2; fail "no verification code printed for $out"; }
    expect_contains "$QES_TEST_PINENTRY_LOG" "Verification code: $vc"
    expect_eq "$(grep -c '^GETPIN' "$QES_TEST_PINENTRY_LOG")" 1 "PIN dialogs for $out"
    expect_not_contains "$out.log" "$QES_TOKEN_A_PIN"
    expect_contains "$out.log" "through credential $CRED"
    VC=$vc
}

# ---------------------------------------------------------------- PAdES
mkdir nss
certutil -N -d sql:nss --empty-password
certutil -A -d sql:nss -n qes-test-root -t "CT,C,C" -i "$P/root-ca.pem"
openssl x509 -in "$P/issuing-ca.pem" -outform DER -out issuing-ca.cer
for lvl in B-T B-LT; do
    f=pades-$lvl.pdf
    rsign pades "$lvl" doc.pdf "$f"
    pdfsig_valid "$f" "$T/nss" 1
    [ "$lvl" = B-T ] && { expect_contains "$f.pdfsig" "Total document signed"; }
    expect_eq "$(pdf_sigs "$f" "$f.sig" | tail -n 1)" 1 "$f: signature dictionaries"
    # openssl cms over the ranges; NSS, on pdfsig's database, judges the
    # signer's chain from the CMS (poppler < 23 reports a stale "Unknown
    # issue" after a successful chain check, pades_pdf.sh)
    pdf_cms_ok "$f" 1 "$T/nss"
    expect_contains "$f.vfy" "Chain is good!"
    qpdf --check "$f" >"$f.qpdf" 2>&1 || { cat "$f.qpdf" >&2; fail "$f: qpdf --check"; }
    [ "$lvl" = B-LT ] && { grep -aq "/DSS" "$f" || fail "$f: no /DSS"; }
    ok "PAdES $lvl through the gateway: pdfsig valid, openssl cms over the ranges, qpdf --check; code $VC shown in the dialog"
done

# ---------------------------------------------------------------- CAdES, XAdES, JAdES
rsign cades B-T doc.bin cades-B-T.p7s
openssl cms -verify -binary -inform DER -in cades-B-T.p7s -content doc.bin -CAfile "$P/root-ca.pem" \
    -purpose any -out /dev/null 2>c.err || { cat c.err >&2; fail "openssl cms rejects cades-B-T.p7s"; }
openssl cms -cmsout -print -inform DER -in cades-B-T.p7s | grep -q "id-smime-aa-timeStampToken" ||
    fail "cades-B-T.p7s has no signature timestamp"
ok "CAdES B-T detached through the gateway: openssl cms -verify, timestamp present"

rsign xades B-T doc.bin xades-B-T.xml --packaging detached
xmlsec1 --verify --trusted-pem "$P/root-ca.pem" --untrusted-pem "$P/issuing-ca.pem" \
    --url-map:doc.bin doc.bin xades-B-T.xml >x.out 2>&1 || { cat x.out >&2; fail "xmlsec1 rejects xades-B-T.xml"; }
grep -q "SignatureTimeStamp" xades-B-T.xml || fail "xades-B-T.xml has no SignatureTimeStamp"
ok "XAdES B-T detached through the gateway: xmlsec1 --verify"

openssl x509 -in "$P/qual-p256.pem" -out p256.pem
rsign jades B-B payload.json jades-B-B.json
$PY "$JV" jades-B-B.json p256.pem --expect-payload payload.json --level B-B >j.out 2>&1 ||
    { cat j.out >&2; fail "jwcrypto rejects jades-B-B.json"; }
ok "JAdES B-B through the gateway: jwcrypto verifies it"

# ---------------------------------------------------------------- refusals
pinentry_script cancel
rc=0
"$QES_CLI" sign --remote --credential "$CRED" --server "$SERVER" --ca "$CA" --key-file sign.key \
    --format pades --level B-B --in doc.pdf --out declined.pdf >declined.log 2>&1 || rc=$?
[ "$rc" = 6 ] || cat declined.log >&2
expect_eq "$rc" 6 "exit status of a declined remote signature"
expect_contains declined.log "declined"
[ ! -e declined.pdf ] || fail "declined.pdf written"
[ -z "$(ls declined.pdf.* 2>/dev/null)" ] || fail "temporary files left beside declined.pdf"
ok "declined in the dialog: exit 6, nothing written"

pinentry_script "pin 918273" "pin 918274" "pin 918275"
rc=0
"$QES_CLI" sign --remote --credential "$CRED" --server "$SERVER" --ca "$CA" --key-file sign.key \
    --format cades --in doc.bin --out badpin.p7s >badpin.log 2>&1 || rc=$?
[ "$rc" = 4 ] || cat badpin.log >&2
expect_eq "$rc" 4 "exit status of a wrong PIN"
expect_contains badpin.log "PIN incorrect"
[ ! -e badpin.p7s ] || fail "badpin.p7s written"
ok "a wrong PIN: exit 4, \"$(grep 'PIN incorrect' badpin.log | cut -c1-90)\", nothing written"

rc=0
"$QES_CLI" sign --remote --credential crd_nosuchcredential --server "$SERVER" --ca "$CA" \
    --key-file sign.key --format cades --in doc.bin --out none.p7s >none.log 2>&1 || rc=$?
expect_eq "$rc" 3 "exit status for an unknown credential"
[ ! -e none.p7s ] || fail "none.p7s written"
rc=0
"$QES_CLI" sign --remote --credential "$CRED" --token x --format cades --in doc.bin \
    --out none.p7s >none.log 2>&1 || rc=$?
expect_eq "$rc" 2 "--remote with a token option"
ok "an unknown credential exits 3, token options with --remote are a usage error"

# ---------------------------------------------------------------- hash-only
# the signer's desktop goes offline: its credential is no longer offered
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
for _ in $(seq 1 50); do
    rc=0
    "$QES_CLI" sign --remote --credential "$CRED" --server "$SERVER" --ca "$CA" \
        --key-file sign.key --format cades --in doc.bin --out offline.p7s >offline.log 2>&1 || rc=$?
    [ "$rc" = 3 ] && break
    sleep 0.2
done
expect_eq "$rc" 3 "exit status with the signer's desktop offline"
expect_contains offline.log "qes-agent"
[ ! -e offline.p7s ] || fail "offline.p7s written"
ok "the signer's desktop offline: exit 3, \"$(head -n 1 offline.log | cut -c1-90)...\""
stop_qesd 30
for f in qesd.db qesd.db-wal qesd.db-journal; do
    [ -e "$f" ] || continue
    ! grep -aq "$MARKER" "$f" || fail "$f holds document content"
done
db_dump qesd.db >db.dump
! grep -aq "$MARKER" db.dump || fail "the database holds document content"
! grep -aq "$MARKER" qesd.log agent.log || fail "a log holds document content"
ok "hash-only: neither the gateway's database nor the logs hold any document's marker"
