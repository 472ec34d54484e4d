# shellcheck shell=bash
# tests/ades_checks.sh - the independent validators' checks shared by the
# AdES integration tests (ades_cli, e2e_ades, remote_sign): openssl ts over a
# timestamp token, the CMS signature timestamp, the signatures of a PDF cut
# out along their /ByteRange, the /DSS counted by qpdf, pdfsig's verdict.
# Sourced after tests/lib.sh and tests/pki_services.sh; uses $QES_PKI (the
# test PKI) and $QES_BUILD_DIR/tests/qes-cades-tool.

ADES_PY=/usr/bin/python3
ADES_CT=$QES_BUILD_DIR/tests/qes-cades-tool

# ades_gateway_setup: the start of a test that signs documents through qesd:
# T (the test's temporary directory, made the current one), QESD (checked to
# be built), P (the test PKI) and CA (its root); private SoftHSM2 tokens in
# $T/tokens, the test PKI's TSA and OCSP/CRL services running
ades_gateway_setup() {
    T=$(qes_tmpdir)
    cd "$T" || fail "no $T"
    QESD=$QES_BUILD_DIR/qesd
    P=$QES_PKI
    [ -x "$QESD" ] || fail "no qesd binary at $QESD"
    qes_private_tokens "$T/tokens"
    qes_pki_services_start "$P"
    # shellcheck disable=SC2034  # for the test and tests/qesd.sh
    CA=$P/root-ca.pem
}

# PDFSIG_NEW: 1 when pdfsig (poppler >= 23) reports the certificate's trust
# reliably; poppler 22 checks trust before the signature's own chain is known
PDFSIG_NEW=0
pdfsig -v 2>&1 | awk '/version/ { split($3, v, "."); exit !(v[1] >= 23) }' && PDFSIG_NEW=1

# ts_verify DATA TOKEN: openssl ts verifies the token over DATA
ts_verify() {
    openssl ts -verify -data "$1" -in "$2" -token_in -CAfile "$QES_PKI/root-ca.pem" \
        -untrusted "$QES_PKI/tsa.pem" >"$2.verify" 2>&1 || { cat "$2.verify" >&2; fail "openssl ts rejects $2"; }
    grep -q "Verification: OK" "$2.verify" || fail "openssl ts: no OK for $2"
}

# cms_token_ok CMS: the signature timestamp of a CMS (DER) verified over its
# SignatureValue
cms_token_ok() {
    "$ADES_CT" inspect "$1" --token-out "$1.tst" --sig-out "$1.sv" >"$1.inspect" 2>&1 ||
        { cat "$1.inspect" >&2; fail "no timestamp in $1"; }
    ts_verify "$1.sv" "$1.tst"
}

# pdf_sigs PDF PREFIX: for every /ByteRange, PREFIX.N.der (the /Contents,
# cut to its DER length: the zero padding stripped) and PREFIX.N.data (the
# signed ranges), N from 1; prints each /SubFilter, then the count
pdf_sigs() {
    "$ADES_PY" - "$1" "$2" <<'EOF'
import re, sys
d = open(sys.argv[1], "rb").read()
n = 0
for m in re.finditer(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", d):
    a, b, c, e = map(int, m.groups())
    n += 1
    der = bytes.fromhex(d[a + b + 1:c - 1].decode())
    l = der[1]
    ln = l if l < 0x80 else int.from_bytes(der[2:2 + (l & 0x7f)], "big")
    hl = 2 if l < 0x80 else 2 + (l & 0x7f)
    open("%s.%d.der" % (sys.argv[2], n), "wb").write(der[:hl + ln])
    open("%s.%d.data" % (sys.argv[2], n), "wb").write(d[a:a + b] + d[c:c + e])
    start = d.rfind(b"<<", 0, m.start())
    sf = re.search(rb"/SubFilter\s*/([A-Za-z0-9.]+)", d[start:m.start() + 200])
    print(sf.group(1).decode() if sf else "?")
print(n)
EOF
}

# dss_count FILE: "certs ocsps crls" of the /DSS
dss_count() {
    qpdf --json=2 --json-key=qpdf "$1" >"$1.json"
    "$ADES_PY" - "$1.json" <<'EOF'
import json, sys
objs = json.load(open(sys.argv[1]))["qpdf"][1]
cat = objs["obj:" + objs["trailer"]["value"]["/Root"]]["value"]
d = cat["/DSS"]
d = objs["obj:" + d]["value"] if isinstance(d, str) else d
print(*(len(d.get(k, [])) for k in ("/Certs", "/OCSPs", "/CRLs")))
EOF
}

# pdfsig_valid FILE NSSDIR N: pdfsig (trust anchors in the NSS database
# NSSDIR, no OCSP) finds N valid signatures with trusted certificates
# (output in FILE.pdfsig)
pdfsig_valid() {
    local f=$1
    pdfsig -nssdir "sql:$2" -no-ocsp "$f" >"$f.pdfsig" 2>&1 || true
    expect_eq "$(grep -c 'Signature Validation: Signature is Valid.' "$f.pdfsig")" "$3" "$f: valid signatures"
    if [ "$PDFSIG_NEW" = 1 ]; then
        expect_eq "$(grep -c 'Certificate Validation: Certificate is Trusted.' "$f.pdfsig")" "$3" "$f: trusted"
    else
        ! grep -E 'Certificate Validation: Certificate (issuer|has Expired|has been Revoked)' \
            "$f.pdfsig" || fail "$f: pdfsig refuses a certificate"
    fi
}

# marker_pdf OUT TEXT MARKER: a one-page PDF (cairo) showing TEXT, with
# MARKER in plain bytes too (a comment after %%EOF), to look for later
marker_pdf() {
    "$ADES_PY" - "$@" <<'EOF'
import cairo, sys
s = cairo.PDFSurface(sys.argv[1], 595, 842)
c = cairo.Context(s)
c.move_to(72, 72)
c.show_text(sys.argv[2])
c.show_page()
s.finish()
open(sys.argv[1], "ab").write(("%% " + sys.argv[3] + "\n").encode())
EOF
}

# pdf_sigs_ok F LEVEL NSSDIR: every signature of F (cut out by pdf_sigs F
# F.sig): a document timestamp (ETSI.RFC3161) verified by openssl ts over
# its ranges, any other ETSI.CAdES.detached and passing pdf_cms_ok, above
# B-B with its signature timestamp verified (cms_token_ok). Sets PDF_NSIGS
# (how many) and PDF_CADES (the numbers of the CAdES signatures).
pdf_sigs_ok() {
    local f=$1 out i=0 sf
    out=$(pdf_sigs "$f" "$f.sig") || fail "$f: the signatures cannot be cut out along their /ByteRange"
    # shellcheck disable=SC2034  # for the test
    PDF_NSIGS=$(echo "$out" | tail -n 1)
    PDF_CADES=
    for sf in $(echo "$out" | head -n -1); do
        i=$((i + 1))
        if [ "$sf" = ETSI.RFC3161 ]; then
            ts_verify "$f.sig.$i.data" "$f.sig.$i.der"
            continue
        fi
        expect_eq "$sf" ETSI.CAdES.detached "$f: SubFilter $i"
        pdf_cms_ok "$f" "$i" "$3"
        [ "$2" = B-B ] || cms_token_ok "$f.sig.$i.der"
        PDF_CADES="$PDF_CADES $i"
    done
}

# pdf_cms_ok F I NSSDIR: the CAdES signature I of F, as pdf_sigs F F.sig cut
# it out (F.sig.I.der over F.sig.I.data), verified by openssl cms against the
# test root, and its signer's certificate (the one that is no CA) trusted by
# NSS vfychain with the anchors in NSSDIR and the issuing CA from
# issuing-ca.cer in the current directory
pdf_cms_ok() {
    local f=$1 i=$2 c
    openssl cms -verify -binary -inform DER -in "$f.sig.$i.der" -content "$f.sig.$i.data" \
        -CAfile "$QES_PKI/root-ca.pem" -purpose any -out /dev/null >"$f.cms" 2>&1 ||
        { cat "$f.cms" >&2; fail "$f: openssl cms rejects signature $i"; }
    openssl pkcs7 -inform DER -in "$f.sig.$i.der" -print_certs -out "$f.sig.$i.pem" 2>/dev/null
    awk -v b="$f.sig.$i.c" '/BEGIN CERT/ { k++ } k { print > (b k ".pem") }' "$f.sig.$i.pem"
    for c in "$f.sig.$i".c*.pem; do
        openssl x509 -in "$c" -noout -ext basicConstraints 2>/dev/null | grep -q "CA:TRUE" ||
            openssl x509 -in "$c" -outform DER -out "$f.sig.$i.cer"
    done
    vfychain -d "sql:$3" -pp -u 4 "$f.sig.$i.cer" issuing-ca.cer >"$f.vfy" 2>&1 ||
        { cat "$f.vfy" >&2; fail "$f: NSS does not trust signer $i"; }
}
