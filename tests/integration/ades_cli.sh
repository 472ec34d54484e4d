#!/usr/bin/env bash
# ades_cli.sh - `qes sign --format pades|cades|xades|jades --level ...` with
# real SoftHSM2 tokens, the PIN through the scripted pinentry (one dialog
# per signature), and the test PKI's real services on 127.0.0.1 (the
# `openssl ts` TSA, the `openssl ocsp` responder, CRLs over HTTP). Every
# output is judged by tools that are not qes:
#   openssl cms -verify   CAdES, and the CMS inside every PAdES signature
#                         over the PDF's /ByteRange
#   openssl ts -verify    every signature timestamp (over the SignatureValue)
#                         and the PAdES document timestamp (B-LTA)
#   pdfsig + qpdf         PAdES: valid, trusted (NSS database with the test
#                         root; poppler 22 as in pades_pdf.sh), whole
#                         document, structure; a second signature keeps the
#                         first valid; PDFs of cairo, qpdf (object streams,
#                         linearized), Ghostscript
#   qpdf --json           the /DSS of B-LT holds certificates and OCSP/CRLs
#   xmlsec1 --verify      XAdES enveloped and detached
#   jwcrypto              JAdES (tests/helpers/jws_verify.py)
# and what may not be made is refused with a sentence: JAdES and CAdES
# B-LTA, JAdES compact above B-B, a level above B-B without a TSA; a wrong
# PIN writes nothing.
# "A && B || fail" below means "fail unless both hold", as intended:
# shellcheck disable=SC2015
. "$(dirname -- "$0")/../lib.sh"
. "$QES_SOURCE_DIR/tests/pki_services.sh"
. "$QES_SOURCE_DIR/tests/ades_checks.sh"

dir=$(qes_tmpdir)
cd "$dir" || fail "no $dir"
P=$QES_PKI
PY=/usr/bin/python3
JV=$QES_SOURCE_DIR/tests/helpers/jws_verify.py
CT=$QES_BUILD_DIR/tests/qes-cades-tool
qes_need qpdf gs pdfsig certutil vfychain openssl xmlsec1 "$PY"
[ -x "$CT" ] || fail "no $CT"
qes_private_tokens "$dir/tokens"
qes_pki_services_start "$P"

PE=$QES_BUILD_DIR/tests/qes-test-pinentry
export QES_TEST_PINENTRY_SCRIPT=$dir/pinentry.script
export QES_TEST_PINENTRY_LOG=$dir/pinentry.log
M=$QES_TEST_MODULE
A=$QES_TOKEN_A_SERIAL B=$QES_TOKEN_B_SERIAL
cat "$P/issuing-ca.pem" "$P/root-ca.pem" >trust.pem
openssl x509 -in "$P/issuing-ca.pem" -outform DER -out issuing-ca.cer

pinentry_script() { printf '%s\n' "$@" >"$QES_TEST_PINENTRY_SCRIPT"; rm -f "$QES_TEST_PINENTRY_SCRIPT.pos" "$QES_TEST_PINENTRY_LOG"; }

# qsign TOKEN KEY FORMAT LEVEL IN OUT [qes sign options]: one signature, one PIN
qsign() {
    local token=$1 key=$2 fmt=$3 lvl=$4 in=$5 out=$6 pin
    shift 6
    [ "$token" = "$A" ] && pin=$QES_TOKEN_A_PIN || pin=$QES_TOKEN_B_PIN
    pinentry_script "pin $pin"
    "$QES_CLI" sign --module "$M" --only-module --pinentry "$PE" --token "$token" \
        --key "$key" --format "$fmt" --level "$lvl" --in "$in" --out "$out" \
        --tsa "$QES_PKI_TSA_URL" --tsa-ca "$P/root-ca.pem" --trust trust.pem "$@" \
        >"$out.log" 2>&1 || { cat "$out.log" >&2; fail "qes sign $fmt $lvl $in"; }
    expect_eq "$(grep -c '^GETPIN' "$QES_TEST_PINENTRY_LOG")" 1 "one PIN dialog for $out"
    expect_not_contains "$out.log" "$pin"
}
# qsign_fails WANT TOKEN KEY FORMAT LEVEL IN OUT [options]: refused, saying WANT, nothing written
qsign_fails() {
    local want=$1 token=$2 key=$3 fmt=$4 lvl=$5 in=$6 out=$7
    shift 7
    pinentry_script "pin $QES_TOKEN_A_PIN"
    rm -f "$out"
    if "$QES_CLI" sign --module "$M" --only-module --pinentry "$PE" --token "$token" \
        --key "$key" --format "$fmt" --level "$lvl" --in "$in" --out "$out" "$@" \
        >"$out.log" 2>&1; then fail "qes sign $fmt $lvl should fail ($want)"; fi
    expect_contains "$out.log" "$want"
    [ ! -e "$out" ] || fail "$out written by a failed signature"
    [ -z "$(ls "$out".qes-* 2>/dev/null)" ] || fail "temporary files left beside $out"
}

# ---------------------------------------------------------------- documents
"$PY" - <<'EOF'
import cairo
s = cairo.PDFSurface("cairo.pdf", 595, 842)
c = cairo.Context(s)
for i in range(2):
    c.move_to(72, 72)
    c.show_text("qes sign test page %d" % (i + 1))
    c.show_page()
s.finish()
EOF
qpdf --object-streams=generate cairo.pdf objstm.pdf
qpdf --linearize cairo.pdf lin.pdf
gs -q -dNOPAUSE -dBATCH -sDEVICE=pdfwrite -o gs.pdf cairo.pdf
head -c 150000 /dev/urandom >doc.bin
cat >invoice.xml <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<inv:Invoice xmlns:inv="urn:example:invoice"><inv:Id>2026-0042</inv:Id><inv:Total currency="EUR">29.97</inv:Total></inv:Invoice>
EOF
printf '{"invoice":"2026-0042","total":"29.97"}' >payload.json

# ---------------------------------------------------------------- PAdES
mkdir nss nss-empty
certutil -N -d sql:nss --empty-password
certutil -N -d sql:nss-empty --empty-password
certutil -A -d sql:nss -n qes-test-root -t "CT,C,C" -i "$P/root-ca.pem"

# check_pdfsig FILE NSIGS COVER: pdfsig: NSIGS valid CMS signatures, trusted, the newest
# CAdES signature covering the whole document (COVER) or not (a later update)
check_pdfsig() {
    local f=$1 n=$2 cover=$3 i c
    pdfsig_valid "$f" "$dir/nss" "$n"
    grep -q "ETSI.CAdES.detached" "$f.pdfsig" || fail "$f: not ETSI.CAdES.detached"
    if [ -n "$cover" ]; then
        grep -A12 "^Signature #$n" "$f.pdfsig" | grep -q -- "- $cover" ||
            { cat "$f.pdfsig" >&2; fail "$f: signature $n is not \"$cover\""; }
    fi
    qpdf --check "$f" >"$f.qpdf" 2>&1 || { cat "$f.qpdf" >&2; fail "$f: qpdf --check"; }
}

# check_pades FILE LEVEL: every CAdES signature's CMS verified by openssl cms over its
# ranges and the signer chain trusted by NSS; timestamps by openssl ts
check_pades() {
    local f=$1 lvl=$2 i
    pdf_sigs_ok "$f" "$lvl" "$dir/nss"
    for i in $PDF_CADES; do
        "$CT" inspect "$f.sig.$i.der" >"$f.sig.$i.inspect" 2>&1 || true
        expect_contains "$f.sig.$i.inspect" "signing_time=0"
    done
    [ "$PDF_NSIGS" -ge 1 ] || fail "$f: no signature"
}

for lvl in B-B B-T B-LT B-LTA; do
    qsign "$A" 01 pades "$lvl" cairo.pdf "pades-$lvl.pdf" --reason "qes test" --location Vienna
    nsig=1
    case $lvl in
        B-B|B-T) check_pdfsig "pades-$lvl.pdf" 1 "Total document signed" ;;
        B-LT) check_pdfsig "pades-$lvl.pdf" 1 "Not total document signed" ;;
        B-LTA) check_pdfsig "pades-$lvl.pdf" 1 ""; nsig=2 ;;
    esac
    check_pades "pades-$lvl.pdf" "$lvl"
    expect_eq "$(pdf_sigs "pades-$lvl.pdf" x | tail -n 1)" "$nsig" "pades-$lvl.pdf: signature dictionaries"
    grep -aEq "/M ?[(<]" "pades-$lvl.pdf" || fail "no /M in pades-$lvl.pdf"
    if [ "$lvl" = B-LT ] || [ "$lvl" = B-LTA ]; then
        read -r nc no nl < <(dss_count "pades-$lvl.pdf")
        # signer, issuing CA, root, TSA; OCSP for the signer, CRL or OCSP for the CAs and TSA
        [ "$nc" -ge 4 ] && [ $((no + nl)) -ge 2 ] || fail "pades-$lvl.pdf: DSS holds $nc certs $no OCSPs $nl CRLs"
        [ "$no" -ge 1 ] || fail "pades-$lvl.pdf: no OCSP response in the DSS"
    fi
    ok "PAdES $lvl (RSA-2048): pdfsig valid and trusted, openssl cms over the ranges, no signing-time, /M, qpdf --check$([ "$lvl" != B-B ] && echo ', timestamps verified by openssl ts')$([ "$lvl" = B-LT ] || [ "$lvl" = B-LTA ] && echo ', DSS with certificates and OCSP/CRL')"
done
grep -aq "/Type */DocTimeStamp" pades-B-LTA.pdf || fail "no /DocTimeStamp in B-LTA"

# sized from the real data: the reservation is modest
for lvl in B-B B-T; do
    len=$(stat -c %s "pades-$lvl.pdf.sig.1.der")
    res=$("$PY" -c 'import re,sys; d=open(sys.argv[1],"rb").read(); m=re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)", d); print((int(m.group(3))-int(m.group(1))-int(m.group(2))-2)//2)' "pades-$lvl.pdf")
    [ "$res" -ge "$len" ] && [ "$res" -le $((len + 8192)) ] ||
        fail "PAdES $lvl: $res bytes reserved for a $len-byte CMS"
    echo "PAdES $lvl: CMS $len bytes, reserved $res"
done
ok "PAdES /Contents reservation close to the real CMS"

# revocation sources: CRLs only, and an OCSP override that answers nothing
qsign "$A" 02 pades B-LT cairo.pdf crl-only.pdf --revocation crl
check_pdfsig crl-only.pdf 1 "Not total document signed"
read -r nc no nl < <(dss_count crl-only.pdf)
expect_eq "$no" 0 "crl-only.pdf: OCSP responses in the DSS"
[ "$nl" -ge 2 ] || fail "crl-only.pdf: $nl CRLs in the DSS"
qsign "$A" 02 pades B-LT cairo.pdf ocsp-url.pdf --ocsp "$QES_PKI_OCSP_URL"
read -r nc no nl < <(dss_count ocsp-url.pdf)
[ "$no" -ge 1 ] || fail "ocsp-url.pdf: no OCSP response with --ocsp"
qsign_fails "validation data" "$A" 02 pades B-LT cairo.pdf no.pdf --tsa "$QES_PKI_TSA_URL" \
    --tsa-ca "$P/root-ca.pem" --trust trust.pem --crl "http://127.0.0.1:9/issuing.crl" --revocation crl
ok "B-LT revocation sources: --revocation crl puts only CRLs in the DSS, --ocsp URL accepted, an unreachable --crl override fails the signature with nothing written"

# other producers, other keys, a second signature
qsign "$B" 12 pades B-T objstm.pdf objstm-p384.pdf
check_pdfsig objstm-p384.pdf 1 "Total document signed"
check_pades objstm-p384.pdf B-T
qsign "$A" 02 pades B-B lin.pdf lin-p256.pdf
check_pdfsig lin-p256.pdf 1 "Total document signed"
check_pades lin-p256.pdf B-B
qsign "$B" 11 pades B-LT gs.pdf gs-rsa3072.pdf --md sha384
check_pdfsig gs-rsa3072.pdf 1 "Not total document signed"
check_pades gs-rsa3072.pdf B-LT
ok "PAdES of qpdf (object streams, P-384 B-T), linearized (P-256 B-B), Ghostscript (RSA-3072 SHA-384 B-LT)"
qsign "$A" 02 pades B-T pades-B-T.pdf second.pdf --field Countersignature
check_pdfsig second.pdf 2 "Total document signed"
check_pades second.pdf B-T
grep -A12 "^Signature #1" second.pdf.pdfsig | grep -q "Not total document signed" ||
    fail "second.pdf: the first signature should not cover the second"
ok "a second PAdES signature keeps the first valid (pdfsig, openssl cms on both)"

# tampered: one byte inside the signed range
cp pades-B-T.pdf tampered.pdf
printf 'X' | dd of=tampered.pdf bs=1 seek=200 conv=notrunc 2>/dev/null
pdfsig -nssdir "sql:$dir/nss" -no-ocsp tampered.pdf >tampered.out 2>&1 || true
grep -qE "Signature is Invalid|Digest Mismatch" tampered.out || { cat tampered.out >&2; fail "pdfsig accepts a changed byte"; }
ok "a changed byte in the signed range: pdfsig reports the signature invalid"

# ---------------------------------------------------------------- CAdES
for lvl in B-B B-T B-LT; do
    for pkg in detached enveloping; do
        qsign "$A" 02 cades "$lvl" doc.bin "c-$lvl-$pkg.p7s" --packaging "$pkg"
        if [ "$pkg" = detached ]; then
            openssl cms -verify -binary -inform DER -in "c-$lvl-$pkg.p7s" -content doc.bin \
                -CAfile "$P/root-ca.pem" -purpose any -out /dev/null 2>c.err ||
                { cat c.err >&2; fail "openssl cms rejects c-$lvl-$pkg.p7s"; }
        else
            openssl cms -verify -binary -inform DER -in "c-$lvl-$pkg.p7s" \
                -CAfile "$P/root-ca.pem" -purpose any -out c.content 2>c.err ||
                { cat c.err >&2; fail "openssl cms rejects c-$lvl-$pkg.p7s"; }
            cmp -s c.content doc.bin || fail "c-$lvl-$pkg.p7s: content differs"
        fi
        "$CT" inspect "c-$lvl-$pkg.p7s" >c.inspect 2>&1 || true
        expect_contains c.inspect "level=$lvl"
        [ "$lvl" = B-B ] || cms_token_ok "c-$lvl-$pkg.p7s"
    done
    ok "CAdES $lvl detached and enveloping (P-256): openssl cms -verify$([ "$lvl" != B-B ] && echo ', token by openssl ts')"
done
"$CT" inspect c-B-LT-detached.p7s >c.inspect 2>&1 || true
grep -Eq "^ocsps=[1-9]" c.inspect || fail "CAdES B-LT without OCSP responses"
head -c 10 /dev/zero >>doc2.bin; cat doc.bin >>doc2.bin
if openssl cms -verify -binary -inform DER -in c-B-T-detached.p7s -content doc2.bin \
    -CAfile "$P/root-ca.pem" -purpose any -out /dev/null 2>/dev/null; then fail "openssl cms accepts changed content"; fi
ok "CAdES B-LT holds OCSP responses; changed content refused"

# ---------------------------------------------------------------- XAdES
XV=(xmlsec1 --verify --trusted-pem "$P/root-ca.pem" --untrusted-pem "$P/issuing-ca.pem"
    --id-attr:Id "http://uri.etsi.org/01903/v1.3.2#:SignedProperties")
for lvl in B-B B-T B-LT B-LTA; do
    qsign "$A" 02 xades "$lvl" invoice.xml "x-$lvl.xml"
    "${XV[@]}" "x-$lvl.xml" >x.out 2>&1 || { cat x.out >&2; fail "xmlsec1 rejects x-$lvl.xml"; }
    qsign "$A" 02 xades "$lvl" doc.bin "xd-$lvl.xml" --packaging detached
    "${XV[@]}" --url-map:doc.bin doc.bin "xd-$lvl.xml" >x.out 2>&1 || { cat x.out >&2; fail "xmlsec1 rejects xd-$lvl.xml"; }
    if [ "$lvl" != B-B ]; then
        # the signature timestamp over the canonical ds:SignatureValue (exclusive C14N)
        "$PY" - "x-$lvl.xml" <<'EOF'
import base64, re, sys
x = open(sys.argv[1]).read()
m = re.search(r'<ds:SignatureValue Id="([^"]+)">([^<]+)</ds:SignatureValue>', x)
open(sys.argv[1] + ".sv", "w").write('<ds:SignatureValue xmlns:ds="http://www.w3.org/2000/09/xmldsig#"'
                                     ' Id="%s">%s</ds:SignatureValue>' % (m.group(1), m.group(2)))
t = re.search(r'<[a-z0-9]+:SignatureTimeStamp [^>]*>.*?<xades:EncapsulatedTimeStamp>([^<]+)<', x, re.S)
open(sys.argv[1] + ".tst", "wb").write(base64.b64decode(t.group(1)))
EOF
        ts_verify "x-$lvl.xml.sv" "x-$lvl.xml.tst"
    fi
    case $lvl in
        B-T) grep -q "SignatureTimeStamp" "x-$lvl.xml" || fail "no SignatureTimeStamp" ;;
        B-LT) grep -q "CertificateValues" "x-$lvl.xml" && grep -q "RevocationValues" "x-$lvl.xml" &&
              grep -q "TimeStampValidationData" "x-$lvl.xml" || fail "x-$lvl.xml lacks B-LT values" ;;
        B-LTA) grep -q "ArchiveTimeStamp" "x-$lvl.xml" || fail "no ArchiveTimeStamp" ;;
    esac
    ok "XAdES $lvl enveloped and detached (P-256) accepted by xmlsec1$([ "$lvl" != B-B ] && echo '; signature timestamp verified by openssl ts')"
done
sed 's/>29.97</>2997.00</' x-B-T.xml >x-bad.xml
if "${XV[@]}" x-bad.xml >/dev/null 2>&1; then fail "xmlsec1 accepts a changed node"; fi
ok "XAdES: a changed node is refused by xmlsec1"

# ---------------------------------------------------------------- JAdES
openssl x509 -in "$P/qual-p256.pem" -out p256.pem
qsign "$A" 02 jades B-B payload.json j-compact.jws --packaging compact
$PY "$JV" j-compact.jws p256.pem --expect-payload payload.json >j.out 2>&1 || { cat j.out >&2; fail "jwcrypto rejects compact"; }
for lvl in B-B B-T B-LT; do
    qsign "$A" 02 jades "$lvl" payload.json "j-$lvl.json"
    mkdir -p "jt-$lvl"
    $PY "$JV" "j-$lvl.json" p256.pem --expect-payload payload.json --level "$lvl" \
        --out-dir "jt-$lvl" >j.out 2>&1 || { cat j.out >&2; fail "jwcrypto rejects j-$lvl.json"; }
    [ "$lvl" = B-B ] || ts_verify "jt-$lvl/sigtst.data" "jt-$lvl/sigtst.tst"
    qsign "$A" 02 jades "$lvl" payload.json "jd-$lvl.json" --packaging detached
    $PY "$JV" "jd-$lvl.json" p256.pem --payload payload.json --level "$lvl" >j.out 2>&1 ||
        { cat j.out >&2; fail "jwcrypto rejects jd-$lvl.json"; }
    ok "JAdES $lvl JSON (attached and detached payload) accepted by jwcrypto$([ "$lvl" != B-B ] && echo '; sigTst verified by openssl ts')"
done
sed 's/"payload":"[A-Za-z0-9_-]/&x/' j-B-T.json >j-bad.json
if $PY "$JV" j-bad.json p256.pem >/dev/null 2>&1; then fail "jwcrypto accepts a changed payload"; fi
ok "JAdES compact B-B accepted by jwcrypto; a changed payload refused"

# ---------------------------------------------------------------- refusals
qsign_fails "JAdES B-LTA (archive timestamp) is not produced" "$A" 02 jades B-LTA payload.json no.json \
    --tsa "$QES_PKI_TSA_URL" --tsa-ca "$P/root-ca.pem"
qsign_fails "CAdES B-LTA" "$A" 02 cades B-LTA doc.bin no.p7s --tsa "$QES_PKI_TSA_URL" --tsa-ca "$P/root-ca.pem"
qsign_fails "B-B only" "$A" 02 jades B-T payload.json no.jws --packaging compact \
    --tsa "$QES_PKI_TSA_URL" --tsa-ca "$P/root-ca.pem"
qsign_fails "needs --tsa" "$A" 02 pades B-T cairo.pdf no.pdf
qpdf --encrypt user owner 256 -- cairo.pdf enc.pdf
qsign_fails "encrypted" "$A" 02 pades B-B enc.pdf no.pdf
# a TSA that lies about the nonce: nothing written, after the PIN
pinentry_script "pin $QES_TOKEN_A_PIN"
qsign_fails "nonce" "$A" 02 pades B-T cairo.pdf no.pdf --tsa "$QES_PKI_HTTP_URL/tsa/bad-nonce" \
    --tsa-ca "$P/root-ca.pem"
# wrong PIN three times: exit 4, nothing written
pinentry_script "pin 000000" "pin 000001" "pin 000002"
rc=0
"$QES_CLI" sign --module "$M" --only-module --pinentry "$PE" --token "$A" --key 02 \
    --format pades --level B-B --in cairo.pdf --out no.pdf >no.log 2>&1 || rc=$?
expect_eq "$rc" 4 "wrong PIN exits 4"
[ ! -e no.pdf ] && [ -z "$(ls no.pdf.qes-* 2>/dev/null)" ] || fail "a wrong PIN left a file"
ok "refused with a sentence and nothing written: JAdES/CAdES B-LTA, JAdES compact B-T, no TSA, encrypted PDF, TSA with a wrong nonce, wrong PIN"
