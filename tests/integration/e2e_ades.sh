#!/usr/bin/env bash
# e2e_ades.sh - AdES signatures made by the gateway: the relying party
# uploads a document (POST /v1/signatures, base64 in JSON or the raw body),
# the signer's qes-agent signs the digest on SoftHSM2 behind the scripted
# pinentry, qesd finishes the signature (TSA, OCSP/CRL of the test PKI's
# services, document timestamp) and hands the signed document out once
# (GET /v1/signatures/{id}/result).
#
# Real parts: qesd (TLS 1.3, SQLite, documents sealed with
# document_key_file), qes-agent enrolled and running, SoftHSM2, the PKI
# services (tests/pki_services.sh). Every result is judged by tools that are
# not qes, as ades_cli.sh judges the CLI's: pdfsig (NSS database with the
# test root), NSS vfychain for the signer's chain, openssl cms over each
# signature's byte ranges, openssl ts for every timestamp, qpdf --check and
# the /DSS (PAdES); openssl cms -verify (CAdES); xmlsec1 (XAdES); jwcrypto
# (JAdES, tests/helpers/jws_verify.py); and by `qes verify`, which must
# report the level asked for. Formats and levels: PAdES B-B..B-LTA; CAdES
# detached and enveloping B-B..B-LT; XAdES enveloped and detached
# B-B..B-LTA; JAdES JSON B-B..B-LT and compact B-B.
#
# Also: the finish in another process (a qesd killed while its finisher
# waits for the TSA, a second one on the same store re-prepares the sealed
# PDF and finishes it); a 20 MB PDF as a raw upload (Content-Type:
# application/pdf); the
# result handed out once (410 after); a document over document_max_bytes
# (413 document_too_large); combinations qes does not make (400 naming
# them); a byte changed in a returned PDF's signed range refused by pdfsig
# and qes verify; and when the jobs are over, no row in job_documents and no
# byte of any document (a marker string) in the database (its file and WAL
# on SQLite, a dump on either backend, tests/qesd.sh) or the logs.
# shellcheck disable=SC2015
. "$(dirname -- "$0")/../lib.sh"
. "$QES_SOURCE_DIR/tests/pki_services.sh"
. "$QES_SOURCE_DIR/tests/ades_checks.sh"

ades_gateway_setup
PY=/usr/bin/python3
JV=$QES_SOURCE_DIR/tests/helpers/jws_verify.py
CT=$QES_BUILD_DIR/tests/qes-cades-tool
qes_need curl openssl qpdf pdfsig certutil vfychain xmlsec1 "$PY"
"$PY" -c 'import cairo, jwcrypto' 2>/dev/null || fail "python3-cairo and python3-jwcrypto are needed"
[ -x "$CT" ] || fail "no $CT (build the tests)"
. "$QES_SOURCE_DIR/tests/qesd.sh"

# ---------------------------------------------------------------- qesd
# qesd's TSA is the PKI's behind a pass-through that holds a request made
# while $T/tsa.hold exists until it goes, then drops it (for the finish in
# another process, below)
cat >tsa_hold.py <<'EOF'
import http.server, os, sys, time, urllib.request
port_file, hold, upstream = sys.argv[1:4]
class Hold(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if os.path.exists(hold):
            # held until the hold goes, then dropped: its client (a qesd
            # killed meanwhile) is gone, and the TSA takes one at a time
            open(hold + ".seen", "w").close()
            while os.path.exists(hold):
                time.sleep(0.1)
            self.send_error(503)
            return
        req = urllib.request.Request(upstream, data=body,
                                     headers={"Content-Type": "application/timestamp-query"})
        with urllib.request.urlopen(req, timeout=30) as r:
            out = r.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *args):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hold)
srv.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
EOF
"$PY" tsa_hold.py tsa_hold.port "$T/tsa.hold" "$QES_PKI_TSA_URL" 2>tsa_hold.log &
HOLD_PID=$!
qes_on_exit "kill $HOLD_PID"
for _ in $(seq 1 100); do [ -s tsa_hold.port ] && break; sleep 0.05; done
[ -s tsa_hold.port ] || fail "the holding TSA did not start"
cat "$P/issuing-ca.pem" "$P/root-ca.pem" >trust.pem
openssl rand -hex 32 >doc.key
chmod 600 doc.key
DOC_MAX=$((24 * 1024 * 1024))
cat >ades.conf <<EOF
document_key_file = $T/doc.key
document_max_bytes = $DOC_MAX
chain_file = $T/trust.pem
tsa_url = http://127.0.0.1:$(cat tsa_hold.port)/tsa
tsa_ca_file = $P/root-ca.pem
EOF
qesd_with_agent e2e-ades ades.conf
ok "qesd (documents on, TSA and chain configured), an enrolled qes-agent with SoftHSM2; credential $CRED"

# ---------------------------------------------------------------- documents
MARKER="qes-ades-marker-$(openssl rand -hex 8)"
marker_pdf doc.pdf "gateway signing test" "$MARKER"
cat >doc.xml <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<inv:Invoice xmlns:inv="urn:example:invoice"><inv:Id>$MARKER</inv:Id><inv:Total currency="EUR">29.97</inv:Total></inv:Invoice>
EOF
{ printf '%s\n' "$MARKER"; head -c 30000 /dev/urandom; } >doc.bin
printf '{"order":"%s","total":"29.97"}' "$MARKER" >payload.json
openssl x509 -in "$P/qual-p256.pem" -out p256.pem
openssl x509 -in "$P/issuing-ca.pem" -outform DER -out issuing-ca.cer
mkdir nss
certutil -N -d sql:nss --empty-password
certutil -A -d sql:nss -n qes-test-root -t "CT,C,C" -i "$P/root-ca.pem"

# ---------------------------------------------------------------- the API
jget() { "$PY" -c 'import json,sys; v=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# post NAME FILE CONTENT_TYPE [QUERY]: POST /v1/signatures with FILE as the
# body; CODE, BODY, HDR as call sets them
post() {
    local name=$1 file=$2 ctype=$3 query=${4:-}
    N=$((N + 1))
    mkdir -p "$T/resp"
    BODY=$T/resp/$N.body
    HDR=$T/resp/$N.hdr
    CODE=$(curl -sS --cacert "$CA" -X POST -o "$BODY" -D "$HDR" -w '%{http_code}' \
        -H "Authorization: Bearer $KEY" -H "Content-Type: $ctype" --data-binary @"$file" \
        "$SERVER/v1/signatures$query") || true
    cp "$BODY" "$name.post.json"
}

# request_json OUT FORMAT LEVEL PACKAGING IN [NAME]: the JSON of a document job
request_json() {
    "$PY" - "$@" "$CRED" <<'EOF'
import base64, json, sys
out, fmt, lvl, pkg, src, name, cred = sys.argv[1:8]
r = {"credential_id": cred, "format": fmt, "level": lvl,
     "document": base64.b64encode(open(src, "rb").read()).decode(),
     "title": "Gateway %s %s %s" % (fmt, lvl, pkg), "description": "e2e_ades.sh"}
if pkg != "-":
    r["packaging"] = pkg
if name != "-":
    r["document_name"] = name
json.dump(r, open(out, "w"))
EOF
}

# finish_job NAME FORMAT LEVEL: long-poll the job in $BODY to completed, check
# the code the dialog showed and the job's format and level, fetch the
# result into NAME, once (a second GET is 410 result_gone)
finish_job() {
    local name=$1 fmt=$2 lvl=$3 id st vc
    id=$(jget "$BODY" 'v["id"]')
    vc=$(jget "$BODY" 'v["verification_code"]')
    poll_job "$KEY" "$id" 20 30
    st=$JOB_STATE
    [ "$st" = completed ] || { cat "$BODY" >&2; tail -n 20 qesd.log >&2; fail "$name: job $id is $st"; }
    expect_eq "$(jget "$BODY" 'v["format"]')" "$fmt" "$name: format of the job"
    expect_eq "$(jget "$BODY" 'v["level"]')" "$lvl" "$name: level of the job"
    expect_eq "$(jget "$BODY" 'v["result_url"]')" "/v1/signatures/$id/result" "$name: result_url"
    expect_contains "$QES_TEST_PINENTRY_LOG" "Verification code: $vc"
    expect_eq "$(grep -c '^GETPIN' "$QES_TEST_PINENTRY_LOG")" 1 "PIN dialogs for $name"
    call "$KEY" GET "/v1/signatures/$id/result"
    expect_eq "$CODE" 200 "GET /v1/signatures/$id/result ($name)"
    cp "$BODY" "$name"
    call "$KEY" GET "/v1/signatures/$id/result"
    expect_problem 410 result_gone
    JOB=$id
}

# gsign NAME FORMAT LEVEL PACKAGING IN [DOCUMENT_NAME]: sign IN through the
# gateway (JSON, base64) into NAME
gsign() {
    local name=$1 fmt=$2 lvl=$3 pkg=$4 in=$5 dname=${6:--}
    pinentry_script "pin $QES_TOKEN_A_PIN"
    request_json "$name.req" "$fmt" "$lvl" "$pkg" "$in" "$dname"
    post "$name" "$name.req" application/json
    [ "$CODE" = 202 ] || { cat "$BODY" >&2; fail "POST /v1/signatures ($name): $CODE"; }
    finish_job "$name" "$fmt" "$lvl"
}

# qverify NAME TITLE [ARGS]: qes verify exits 0 and names the level
qverify() {
    local f=$1 title=$2 rc=0
    shift 2
    "$QES_CLI" verify "$f" --trust "$P/root-ca.pem" "$@" >"$f.qv" 2>&1 || rc=$?
    [ "$rc" = 0 ] || { cat "$f.qv" >&2; fail "qes verify $f exited $rc"; }
    expect_contains "$f.qv" "$title"
}

# ---------------------------------------------------------------- PAdES
# check_pades FILE LEVEL COVER: pdfsig valid and trusted (COVER: the
# signature's coverage, "" for any), qpdf --check; each CAdES signature by
# openssl cms over its ranges and the signer's chain by NSS vfychain; every
# timestamp by openssl ts; the DSS at B-LT and above; qes verify
check_pades() {
    local f=$1 lvl=$2 cover=$3 nc no nl
    pdfsig_valid "$f" "$T/nss" 1
    if [ -n "$cover" ]; then
        grep -A12 "^Signature #1" "$f.pdfsig" | grep -q -- "- $cover" ||
            { cat "$f.pdfsig" >&2; fail "$f: signature 1 is not \"$cover\""; }
    fi
    qpdf --check "$f" >"$f.qpdf" 2>&1 || { cat "$f.qpdf" >&2; fail "$f: qpdf --check"; }
    pdf_sigs_ok "$f" "$lvl" "$T/nss"
    expect_eq "$PDF_NSIGS" "$([ "$lvl" = B-LTA ] && echo 2 || echo 1)" "$f: signature dictionaries"
    if [ "$lvl" = B-LT ] || [ "$lvl" = B-LTA ]; then
        read -r nc no nl < <(dss_count "$f")
        [ "$nc" -ge 4 ] && [ $((no + nl)) -ge 2 ] && [ "$no" -ge 1 ] ||
            fail "$f: DSS holds $nc certs $no OCSPs $nl CRLs"
    fi
    [ "$lvl" != B-LTA ] || grep -aq "/Type */DocTimeStamp" "$f" || fail "$f: no /DocTimeStamp"
    qverify "$f" "PAdES $lvl"
}

for lvl in B-B B-T B-LT B-LTA; do
    gsign "pades-$lvl.pdf" pades "$lvl" - doc.pdf
    case $lvl in
        B-B|B-T) check_pades "pades-$lvl.pdf" "$lvl" "Total document signed" ;;
        *) check_pades "pades-$lvl.pdf" "$lvl" "" ;;
    esac
    ok "PAdES $lvl through the gateway: pdfsig valid and trusted, openssl cms over the ranges, NSS vfychain, qpdf --check$([ "$lvl" != B-B ] && echo ', timestamps by openssl ts')$([ "$lvl" = B-LT ] || [ "$lvl" = B-LTA ] && echo ', DSS with OCSP/CRL'), qes verify says PAdES $lvl"
done

# a byte of the signed range changed: pdfsig and qes verify refuse it
"$PY" - pades-B-T.pdf tampered.pdf <<'EOF'
import re, sys
d = bytearray(open(sys.argv[1], "rb").read())
m = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)", d)
# a character of the marker comment the original ends with (in the first range)
i = d.find(b"qes-ades-marker-")
assert 0 < i < int(m.group(2))
d[i] ^= 0x01
open(sys.argv[2], "wb").write(d)
EOF
pdfsig -nssdir "sql:$T/nss" -no-ocsp tampered.pdf >tampered.out 2>&1 || true
grep -qE "Signature is Invalid|Digest Mismatch" tampered.out || { cat tampered.out >&2; fail "pdfsig accepts a changed byte"; }
rc=0
"$QES_CLI" verify tampered.pdf --trust "$P/root-ca.pem" >tampered.qv 2>&1 || rc=$?
expect_eq "$rc" 8 "qes verify of a changed byte"
ok "a byte changed in the returned PDF's signed range: pdfsig says invalid, qes verify exits 8"

# ---------------------------------------------------------------- a 20 MB PDF, raw
head -c $((20 * 1024 * 1024)) /dev/urandom >big.bin
qpdf doc.pdf --add-attachment big.bin --mimetype=application/octet-stream -- big.pdf
BIG=$(stat -c %s big.pdf)
[ "$BIG" -gt $((20 * 1024 * 1024)) ] && [ "$BIG" -lt "$DOC_MAX" ] || fail "big.pdf is $BIG bytes"
pinentry_script "pin $QES_TOKEN_A_PIN"
t0=$(date +%s%N)
post big "big.pdf" application/pdf "?credential_id=$CRED&format=pades&level=B-T&title=Big%20contract"
[ "$CODE" = 202 ] || { cat "$BODY" >&2; fail "raw POST of big.pdf: $CODE"; }
finish_job big-signed.pdf pades B-T
t1=$(date +%s%N)
check_pades big-signed.pdf B-T "Total document signed"
cmp -s -n "$BIG" big.pdf big-signed.pdf || fail "big-signed.pdf does not start with big.pdf"
ok "a $((BIG / 1048576)) MB PDF as a raw upload (application/pdf), PAdES B-T: valid everywhere, $(((t1 - t0) / 1000000)) ms from POST to result"

# ---------------------------------------------------------------- CAdES
for lvl in B-B B-T B-LT; do
    for pkg in detached enveloping; do
        f=cades-$lvl-$pkg.p7s
        gsign "$f" cades "$lvl" "$pkg" doc.bin
        if [ "$pkg" = detached ]; then
            openssl cms -verify -binary -inform DER -in "$f" -content doc.bin \
                -CAfile "$P/root-ca.pem" -purpose any -out /dev/null 2>c.err ||
                { cat c.err >&2; fail "openssl cms rejects $f"; }
            qverify "$f" "CAdES $lvl" --content doc.bin
        else
            openssl cms -verify -binary -inform DER -in "$f" \
                -CAfile "$P/root-ca.pem" -purpose any -out c.content 2>c.err ||
                { cat c.err >&2; fail "openssl cms rejects $f"; }
            cmp -s c.content doc.bin || fail "$f: content differs"
            qverify "$f" "CAdES $lvl"
        fi
        [ "$lvl" = B-B ] || cms_token_ok "$f"
    done
    ok "CAdES $lvl detached and enveloping through the gateway: openssl cms -verify$([ "$lvl" != B-B ] && echo ', token by openssl ts'), qes verify says CAdES $lvl"
done
"$CT" inspect cades-B-LT-detached.p7s >c.inspect 2>&1 || true
grep -Eq "^ocsps=[1-9]" c.inspect || fail "CAdES B-LT without OCSP responses"

# ---------------------------------------------------------------- XAdES
XV=(xmlsec1 --verify --trusted-pem "$P/root-ca.pem" --untrusted-pem "$P/issuing-ca.pem"
    --id-attr:Id "http://uri.etsi.org/01903/v1.3.2#:SignedProperties")
for lvl in B-B B-T B-LT B-LTA; do
    gsign "x-$lvl.xml" xades "$lvl" enveloped doc.xml
    "${XV[@]}" "x-$lvl.xml" >x.out 2>&1 || { cat x.out >&2; fail "xmlsec1 rejects x-$lvl.xml"; }
    qverify "x-$lvl.xml" "XAdES $lvl"
    gsign "xd-$lvl.xml" xades "$lvl" detached doc.bin doc.bin
    "${XV[@]}" --url-map:doc.bin doc.bin "xd-$lvl.xml" >x.out 2>&1 ||
        { cat x.out >&2; fail "xmlsec1 rejects xd-$lvl.xml"; }
    qverify "xd-$lvl.xml" "XAdES $lvl" --content doc.bin
    case $lvl in
        B-T) grep -q "SignatureTimeStamp" "x-$lvl.xml" || fail "no SignatureTimeStamp" ;;
        B-LT) grep -q "CertificateValues" "x-$lvl.xml" && grep -q "RevocationValues" "x-$lvl.xml" ||
              fail "x-$lvl.xml lacks B-LT values" ;;
        B-LTA) grep -q "ArchiveTimeStamp" "x-$lvl.xml" || fail "no ArchiveTimeStamp" ;;
    esac
    ok "XAdES $lvl enveloped and detached through the gateway: xmlsec1 --verify, qes verify says XAdES $lvl"
done
sed 's/>29.97</>2997.00</' x-B-T.xml >x-bad.xml
if "${XV[@]}" x-bad.xml >/dev/null 2>&1; then fail "xmlsec1 accepts a changed node"; fi

# ---------------------------------------------------------------- JAdES
gsign j-compact.jws jades B-B compact payload.json
$PY "$JV" j-compact.jws p256.pem --expect-payload payload.json >j.out 2>&1 ||
    { cat j.out >&2; fail "jwcrypto rejects j-compact.jws"; }
qverify j-compact.jws "JAdES B-B"
for lvl in B-B B-T B-LT; do
    gsign "j-$lvl.json" jades "$lvl" json payload.json
    mkdir -p "jt-$lvl"
    $PY "$JV" "j-$lvl.json" p256.pem --expect-payload payload.json --level "$lvl" \
        --out-dir "jt-$lvl" >j.out 2>&1 || { cat j.out >&2; fail "jwcrypto rejects j-$lvl.json"; }
    [ "$lvl" = B-B ] || ts_verify "jt-$lvl/sigtst.data" "jt-$lvl/sigtst.tst"
    qverify "j-$lvl.json" "JAdES $lvl"
    ok "JAdES $lvl JSON through the gateway: jwcrypto verifies it$([ "$lvl" != B-B ] && echo ', sigTst by openssl ts'), qes verify says JAdES $lvl"
done
ok "JAdES compact B-B through the gateway: jwcrypto, qes verify"

# ---------------------------------------------------------------- refusals
# refused NAME FORMAT LEVEL PACKAGING WORDS: 400 unsupported_format naming it
refused() {
    request_json "$1.req" "$2" "$3" "$4" payload.json -
    post "$1" "$1.req" application/json
    expect_problem 400 unsupported_format
    expect_contains "$BODY" "$5"
}
refused jades-lta jades B-LTA json "B-LTA"
refused cades-lta cades B-LTA detached "B-LTA"
refused compact-bt jades B-T compact "compact"
ok "combinations qes does not make are 400 unsupported_format naming them (JAdES B-LTA, CAdES B-LTA, JAdES compact B-T)"

head -c $((DOC_MAX + 4096)) /dev/zero >over.pdf
post over over.pdf application/pdf "?credential_id=$CRED&format=pades&level=B-B&title=Too%20big"
expect_problem 413 document_too_large
ok "a document over document_max_bytes ($DOC_MAX) is 413 document_too_large"

# ---------------------------------------------------------------- another process finishes
# (last: the agent stays with the first qesd's port.) The first qesd gets the signer's value and is killed (SIGKILL) while its
# finisher waits for the timestamp; a second qesd on the same store finds
# the signed job, prepares the PDF again from what it sealed (the digest
# must be the one the signer signed: qes_ades_prepare is deterministic) and
# finishes it.
touch tsa.hold
rm -f tsa.hold.seen
pinentry_script "pin $QES_TOKEN_A_PIN"
request_json resume.req pades B-LT - doc.pdf -
post resume resume.req application/json
[ "$CODE" = 202 ] || { cat "$BODY" >&2; fail "POST /v1/signatures (resume): $CODE"; }
ID=$(jget "$BODY" 'v["id"]')
st=
for _ in $(seq 1 100); do
    call "$KEY" GET "/v1/signatures/$ID"
    st=$(jget "$BODY" 'v["state"]')
    [ "$st" = signed ] && [ -e tsa.hold.seen ] && break
    case $st in completed|failed|cancelled|expired) break ;; esac
    sleep 0.2
done
[ "$st" = signed ] && [ -e tsa.hold.seen ] ||
    { cat "$BODY" >&2; fail "the job is $st, not held at the TSA in signed"; }
call "$KEY" GET "/v1/signatures/$ID/result"
expect_problem 409 result_not_ready
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
rm -f tsa.hold
start_qesd qesd.conf qesd.log
SERVER="https://localhost:$PORT"
poll_job "$KEY" "$ID" 10 30
st=$JOB_STATE
[ "$st" = completed ] || { cat "$BODY" >&2; tail -n 20 qesd.log >&2; fail "after the restart the job is $st"; }
call "$KEY" GET "/v1/signatures/$ID/result"
expect_eq "$CODE" 200 "GET the result from the second qesd"
cp "$BODY" resume.pdf
check_pades resume.pdf B-LT ""
ok "PAdES B-LT signed while one qesd ran, that qesd killed at its TSA call: a second qesd prepared the stored PDF again (the same digest) and finished it; valid everywhere"

# ---------------------------------------------------------------- nothing kept
expect_eq "$(db_value qesd.db "SELECT count(*) FROM job_documents")" 0 "rows left in job_documents"
stop_qesd 30
kill -TERM "$AGENT_PID" 2>/dev/null || true
db_dump qesd.db >db.dump
for f in qesd.db qesd.db-wal qesd.db-journal db.dump qesd.log agent.log; do
    [ -e "$f" ] || continue
    ! grep -aq "$MARKER" "$f" || fail "$f holds document content"
done
expect_not_contains qesd.log "$QES_TOKEN_A_PIN"
ok "after the jobs: no row in job_documents, no document byte in the database ($QES_TEST_BACKEND) or the logs"
