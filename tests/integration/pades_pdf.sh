#!/usr/bin/env bash
# pades_pdf: libqes's PDF layer (src/lib/pdf*.c) signs PDFs from real producers
# (qpdf plain / object streams / linearized, Ghostscript, cairo, a hand-made
# AcroForm) as incremental updates, with a CMS made by `openssl cms -sign`
# over the byte ranges it prepared, and independent validators judge the
# result: poppler's pdfsig with the test root in an NSS database (valid,
# trusted, total document signed; both signatures valid after a second one),
# qpdf --check, openssl ts -verify for a document timestamp. Encrypted PDFs
# are refused, a changed byte breaks the signature, a CMS larger than the
# reserved /Contents leaves no output behind.
. "$(dirname "$0")/../lib.sh"
dir=$(qes_tmpdir)
cd "$dir"

TOOL=$QES_BUILD_DIR/tests/qes-pdf-tool
P=$QES_PKI
PY=/usr/bin/python3	# Debian's python3 has python3-cairo
for t in qpdf gs pdfsig certutil vfychain openssl "$PY"; do
    command -v "$t" >/dev/null || fail "$t is not installed (scripts/deps.sh)"
done
[ -x "$TOOL" ] || fail "no $TOOL (build the tests)"

# ---------------------------------------------------------------- producers
"$PY" - <<'EOF'
import cairo
s = cairo.PDFSurface("cairo.pdf", 595, 842)
c = cairo.Context(s)
for i in range(3):
    c.move_to(72, 72)
    c.show_text("qes PAdES test page %d" % (i + 1))
    c.show_page()
s.finish()

# A one-page PDF with an AcroForm holding a text field, written by hand
# (qpdf and cairo make no forms), classic xref table.
objs = [
    b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [4 0 R] /DA (/Helv 0 Tf 0 g) >> >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Annots [4 0 R] >>",
    b"<< /Type /Annot /Subtype /Widget /FT /Tx /T (Name) /V (Anna Huber) "
    b"/Rect [72 700 300 720] /F 4 /P 3 0 R >>",
]
out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
offs = []
for i, o in enumerate(objs):
    offs.append(len(out))
    out += b"%d 0 obj\n" % (i + 1) + o + b"\nendobj\n"
x = len(out)
out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
for o in offs:
    out += b"%010d 00000 n \n" % o
out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, x)
open("form.pdf", "wb").write(out)
EOF
qpdf --object-streams=disable cairo.pdf qpdf-plain.pdf
qpdf --object-streams=generate cairo.pdf qpdf-objstm.pdf
qpdf --linearize cairo.pdf qpdf-lin.pdf
gs -q -dNOPAUSE -dBATCH -sDEVICE=pdfwrite -o gs.pdf cairo.pdf
qpdf --encrypt user owner 256 -- cairo.pdf encrypted.pdf
head -c -1 qpdf-plain.pdf >no-newline.pdf	# ends in "%%EOF", no newline
expect_eq "$("$TOOL" info qpdf-objstm.pdf | sed 's/ size=.*//')" "sigs=0 xref=stream" "object streams file"
expect_eq "$("$TOOL" info qpdf-plain.pdf | sed 's/ size=.*//')" "sigs=0 xref=table" "plain file"
ok "producers: cairo, qpdf (plain, object streams, linearized), Ghostscript, hand-made AcroForm"

# ---------------------------------------------------------------- trust
mkdir nss nss-empty
certutil -N -d sql:nss --empty-password
certutil -N -d sql:nss-empty --empty-password
certutil -A -d sql:nss -n qes-test-root -t "CT,C,C" -i "$P/root-ca.pem"
PDFSIG_NEW=0
pdfsig -v 2>&1 | awk '/version/ { split($3, v, "."); exit !(v[1] >= 23) }' && PDFSIG_NEW=1

# the CMS: signed attributes, SHA-256, the signer and its issuing CA
SIGNER=qual-rsa2048
cms_cmd() {	# RANGES DER
    echo "openssl cms -sign -binary -in $1 -outform DER -md sha256" \
        "-signer $P/$SIGNER.pem -inkey $P/$SIGNER.key -certfile $P/issuing-ca.pem -out $2"
}
# The reservation is sized from a real CMS over empty content: same
# certificates, same key, same attributes; 32 bytes of slack for lengths.
openssl cms -sign -binary -in /dev/null -outform DER -md sha256 \
    -signer "$P/$SIGNER.pem" -inkey "$P/$SIGNER.key" -certfile "$P/issuing-ca.pem" \
    -out probe.der
RESERVE=$(( $(stat -c %s probe.der) + 32 ))

# sign IN OUT [tool options]
sign() {
    local in=$1 out=$2
    shift 2
    "$TOOL" sign "$in" "$out" --contents "$RESERVE" --ranges "$out.ranges" \
        --der "$out.der" --exec "$(cms_cmd "$out.ranges" "$out.der")" "$@" \
        >"$out.log" 2>&1 || { cat "$out.log" >&2; fail "signing $in"; }
}

# check_pdfsig FILE NSIGS [COVER]: every signature valid and its certificate
# trusted; the newest covers the whole document but its /Contents (COVER
# "Total document signed"), or not when a later update (the DSS) follows.
check_pdfsig() {
    local f=$1 n=$2 cover=${3:-Total document signed} i
    pdfsig -nssdir "sql:$dir/nss" -no-ocsp "$f" >"$f.pdfsig" 2>&1 || true
    expect_eq "$(grep -c 'Signature Validation: Signature is Valid.' "$f.pdfsig")" "$n" \
        "$f: valid signatures"
    expect_eq "$(grep -c '^Signature #' "$f.pdfsig")" "$n" "$f: signatures"
    [ "$(grep -iE 'Total document signed|not total document signed' "$f.pdfsig" | tail -n 1)" \
        = "  - $cover" ] || { cat "$f.pdfsig" >&2; fail "$f: the newest signature does not cover the whole document"; }
    if [ $PDFSIG_NEW = 1 ]; then
        expect_eq "$(grep -c 'Certificate Validation: Certificate is Trusted.' "$f.pdfsig")" "$n" \
            "$f: trusted certificates"
    else
        # poppler < 23 reads PORT_GetError() after a *successful*
        # CERT_PKIXVerifyCert and so reports a stale error ("Unknown issue");
        # a failure sets a real one (issuer unknown, expired, revoked). So:
        # no real failure reported, and NSS itself (PKIX, e-mail signer
        # usage, the same database) accepts every dumped signer's chain.
        ! grep -E 'Certificate Validation: Certificate (issuer|has Expired|has been Revoked)' \
            "$f.pdfsig" || fail "$f: pdfsig refuses a certificate"
        rm -rf dump && mkdir dump
        (cd dump && pdfsig -nssdir "sql:$dir/nss-empty" -dump "../$f" >/dev/null 2>&1) || true
        for i in dump/*.sig*; do
            openssl pkcs7 -inform DER -in "$i" -print_certs -out "$i.pem" 2>/dev/null ||
                fail "$f: dumped signature is not a CMS"
            # the end-entity certificate among those the CMS carries
            awk -v b="$i.c" '/BEGIN CERT/ { n++ } n { print > (b n ".pem") }' "$i.pem"
            for c in "$i".c*.pem; do
                openssl x509 -in "$c" -noout -ext basicConstraints 2>/dev/null |
                    grep -q "CA:TRUE" || openssl x509 -in "$c" -outform DER -out "$i.cer"
            done
            [ -s "$i.cer" ] || fail "$f: no signer certificate in the CMS"
            vfychain -d "sql:$dir/nss" -pp -u 4 "$i.cer" "$P/issuing-ca.cer" >"$i.vfy" 2>&1 ||
                { cat "$i.vfy" >&2; fail "$f: NSS does not trust the signer"; }
            expect_contains "$i.vfy" "Chain is good!"
        done
    fi
    qpdf --check "$f" >"$f.qpdf" 2>&1 || { cat "$f.qpdf" >&2; fail "$f: qpdf --check"; }
}

# the untrusting database really refuses: the checks above can fail
sign cairo.pdf probe.pdf
pdfsig -nssdir "sql:$dir/nss-empty" -no-ocsp probe.pdf >probe.pdfsig 2>&1 || true
expect_contains probe.pdfsig "Signature is Valid."
expect_not_contains probe.pdfsig "Certificate is Trusted."
expect_not_contains probe.pdfsig "Unknown issue"
ok "an NSS database without the test root does not trust the signer"

# ---------------------------------------------------------------- one signature each
for f in cairo qpdf-plain qpdf-objstm qpdf-lin gs form no-newline; do
    sign "$f.pdf" "$f-signed.pdf" --reason "Approval" --location "Wien" --name "Anna Huber"
    check_pdfsig "$f-signed.pdf" 1
    cmp -n "$(stat -c %s "$f.pdf")" "$f.pdf" "$f-signed.pdf" ||
        fail "$f: the original bytes changed"
    expect_contains "$f-signed.pdf.pdfsig" "ETSI.CAdES.detached"
    ok "$f: signed as an incremental update; pdfsig valid + trusted, total document; qpdf --check"
done
expect_eq "$("$TOOL" info qpdf-objstm-signed.pdf | sed 's/ size=.*//')" "sigs=1 xref=stream" \
    "the update of an xref-stream file is an xref stream"
expect_eq "$("$TOOL" info qpdf-plain-signed.pdf | sed 's/ size=.*//')" "sigs=1 xref=table" \
    "the update of a table file is a table"
ok "the new cross-reference section is of the kind the file used"

# the existing form field is kept; /SigFlags 3
qpdf --json form-signed.pdf >form.json
"$PY" - <<'EOF' || fail "AcroForm after signing"
import json
j = json.load(open("form.json"))
f = j["acroform"]["fields"]
names = sorted(x["fullname"] for x in f)
assert names == ["Name", "Signature1"], names
EOF
qpdf --show-object=1 form-signed.pdf | grep -q "/SigFlags 3" || fail "no /SigFlags 3"
ok "AcroForm: the text field is kept, the signature field appended, /SigFlags 3"

# an ECDSA P-256 signer as well (the reservation sized from its own CMS)
SIGNER=qual-p256
openssl cms -sign -binary -in /dev/null -outform DER -md sha256 \
    -signer "$P/$SIGNER.pem" -inkey "$P/$SIGNER.key" -certfile "$P/issuing-ca.pem" \
    -out probe-ec.der
RESERVE_RSA=$RESERVE
RESERVE=$(( $(stat -c %s probe-ec.der) + 32 ))
sign qpdf-objstm.pdf objstm-ec.pdf
check_pdfsig objstm-ec.pdf 1
SIGNER=qual-rsa2048
RESERVE=$RESERVE_RSA
ok "qpdf-objstm: an ECDSA P-256 signature, valid and trusted"

# ---------------------------------------------------------------- second signature
for f in cairo qpdf-objstm qpdf-lin form; do
    sign "$f-signed.pdf" "$f-signed2.pdf" --field "Second signature"
    check_pdfsig "$f-signed2.pdf" 2
    grep -qi "not total document signed" "$f-signed2.pdf.pdfsig" ||
        fail "$f: the first signature should not cover the second update"
    ok "$f: a second signature is appended; both valid"
done
"$TOOL" sign cairo-signed2.pdf dup.pdf --contents "$RESERVE" --ranges dup.r --der dup.der \
    --field "Second signature" --exec true >dup.out 2>&1 && fail "a duplicate field name was accepted"
expect_contains dup.out "invalid_arg"
[ ! -e dup.pdf ] || fail "a refused signing left dup.pdf"
ok "a field name already in use is refused"

# ---------------------------------------------------------------- refusals
"$TOOL" info encrypted.pdf >enc.out 2>&1 && fail "encrypted PDF opened"
expect_contains enc.out "pdf_encrypted"
"$TOOL" sign encrypted.pdf enc-signed.pdf --contents "$RESERVE" --ranges e.r --der e.der \
    --exec true >enc2.out 2>&1 && fail "encrypted PDF signed"
expect_contains enc2.out "pdf_encrypted"
[ ! -e enc-signed.pdf ] || fail "output left for an encrypted input"
ok "an encrypted PDF is refused with pdf_encrypted"

"$TOOL" sign cairo.pdf small.pdf --contents 256 --ranges small.r --der small.der \
    --exec "$(cms_cmd small.r small.der)" >small.out 2>&1 && fail "a CMS larger than the reservation was accepted"
expect_contains small.out "limit"
[ ! -e small.pdf ] || fail "a failed finish left small.pdf"
ls small.pdf.tmp* >/dev/null 2>&1 && fail "a failed finish left a temporary file"
ok "a CMS larger than /Contents: limit, no output and no temporary file left"

# ---------------------------------------------------------------- tampering
cp cairo-signed.pdf tampered.pdf
# a byte of the binary comment in the header: inside the first range, the
# file still parses
printf 'X' | dd of=tampered.pdf bs=1 seek=11 conv=notrunc status=none
cmp -s tampered.pdf cairo-signed.pdf && fail "tampering did not change the file"
pdfsig -nssdir "sql:$dir/nss" -no-ocsp tampered.pdf >tampered.out 2>&1 || true
expect_not_contains tampered.out "Signature is Valid."
grep -qE "Signature is Invalid|Digest Mismatch" tampered.out || { cat tampered.out >&2; fail "pdfsig does not report the change"; }
ok "a byte changed inside the signed range: pdfsig reports the signature invalid"

# ---------------------------------------------------------------- B-LT, B-LTA
"$TOOL" dss cairo-signed.pdf cairo-lt.pdf --cert "$P/issuing-ca.cer" --cert "$P/root-ca.cer" \
    --crl "$P/issuing-ca.crl" --crl "$P/root.crl" >dss.out 2>&1 || { cat dss.out >&2; fail "adding the DSS"; }
check_pdfsig cairo-lt.pdf 1 "Not total document signed"
openssl x509 -in "$P/tsa.pem" -outform DER -out tsa.cer
"$TOOL" dss cairo-lt.pdf cairo-lt2.pdf --cert tsa.cer >/dev/null 2>&1 || fail "extending the DSS"
for f in cairo-lt.pdf cairo-lt2.pdf; do
    qpdf --json=2 --json-key=qpdf "$f" >"$f.json"
done
"$PY" - <<'EOF' || fail "DSS content"
import json

def dss(path):
    objs = json.load(open(path))["qpdf"][1]
    root = objs["trailer"]["value"]["/Root"]
    cat = objs["obj:" + root]["value"]
    d = cat["/DSS"]
    d = objs["obj:" + d]["value"] if isinstance(d, str) else d
    for k in ("/Certs", "/CRLs"):
        for ref in d[k]:
            assert "stream" in objs["obj:" + ref], (k, ref)
    return len(d["/Certs"]), len(d["/CRLs"])

assert dss("cairo-lt.pdf.json") == (2, 2), dss("cairo-lt.pdf.json")
assert dss("cairo-lt2.pdf.json") == (3, 2), dss("cairo-lt2.pdf.json")
EOF
ok "B-LT: /DSS with /Certs and /CRLs streams as an incremental update, extended by a second one; signature still valid"

cat >ts.cnf <<EOF
[ tsa ]
default_tsa = tsa1
[ tsa1 ]
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $P/tsa.pem
signer_key = $P/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1.1
digests = sha256
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
EOF
echo 01 >tsaserial
TSRESERVE=8192
"$TOOL" sign cairo-lt.pdf cairo-lta.pdf --doc-timestamp --contents $TSRESERVE \
    --ranges lta.r --der lta.der --exec "openssl ts -query -data lta.r -sha256 -cert -out lta.tsq 2>/dev/null && openssl ts -reply -config ts.cnf -queryfile lta.tsq -token_out -out lta.der 2>/dev/null" \
    >lta.out 2>&1 || { cat lta.out >&2; fail "document timestamp"; }
openssl ts -verify -data lta.r -in lta.der -token_in -CAfile "$P/root-ca.pem" \
    -untrusted "$P/tsa.pem" >lta.verify 2>&1 || { cat lta.verify >&2; fail "the timestamp token does not verify"; }
pdfsig -nssdir "sql:$dir/nss" -no-ocsp cairo-lta.pdf >lta.pdfsig 2>&1 || true
# poppler 22 finds the document timestamp and its TSU but does not validate
# ETSI.RFC3161 ("Unimplemented Feature"); openssl ts -verify did above
expect_eq "$(grep -c '^Signature #' lta.pdfsig)" "2" "signatures after the document timestamp"
expect_eq "$(grep -c 'Signature is Valid.' lta.pdfsig)" "1" "the first signature after the document timestamp"
expect_contains lta.pdfsig "QES Test Qualified TSU"
[ "$(grep -iE 'total document signed' lta.pdfsig | tail -n 1)" = "  - Total document signed" ] ||
    fail "the document timestamp does not cover the whole document"
qpdf --check cairo-lta.pdf >/dev/null 2>&1 || fail "qpdf --check after the document timestamp"
grep -q "/Type/DocTimeStamp" cairo-lta.pdf || fail "no /DocTimeStamp dictionary"
ok "B-LTA: document timestamp (ETSI.RFC3161) over the whole document verifies (openssl ts), the signature stays valid"
