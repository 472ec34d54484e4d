#!/usr/bin/env bash
# cades.sh - CAdES baseline signatures made by libqes (qes-cades-tool, software
# keys of the test PKI) and judged by OpenSSL's command-line tools, with the
# test PKI's real online services (tests/pki_services.sh: `openssl ts -reply`
# TSA, `openssl ocsp` responder, CRLs over HTTP) on 127.0.0.1.
#
# What it shows (issue 5, CAdES part): for RSA-2048 PKCS#1, RSA-2048 PSS, P-256
# and P-384 signers: B-B detached and enveloping verified by `openssl cms
# -verify` against the test root, signing-certificate-v2 present; B-T with a
# token that `openssl ts -verify` accepts over the SignatureValue; B-LT holding
# the OCSP response and CRLs; streamed files and the hash-only (digest given,
# no signing-time) flow; a revoked signer reported revoked by OCSP and by the
# CRL and refused for B-LT; an OCSP answer with another nonce refused; a wrong
# signature value refused at finish; a TSA
# answering with a wrong nonce, a wrong imprint, a refusal, garbage or too much
# refused; tampered content rejected by `openssl cms -verify`; fetch refusing
# non-http(s), HTTP errors and oversized answers.
. "$(dirname -- "$0")/../lib.sh"
. "$QES_SOURCE_DIR/tests/pki_services.sh"

T=$(qes_tmpdir)
TOOL=$QES_BUILD_DIR/tests/qes-cades-tool
[ -x "$TOOL" ] || fail "no qes-cades-tool at $TOOL"
command -v openssl >/dev/null || fail "openssl is needed"
command -v python3 >/dev/null || fail "python3 is needed"
P=$QES_PKI
[ -f "$P/tsa.key" ] || fail "no test PKI in $P"

qes_pki_services_start "$P"
TSA=$QES_PKI_TSA_URL

tool() { qes_run_checked "$TOOL" "$@"; }
# expect_fail ERRNAME OUT COMMAND...: the command fails and says ERRNAME
expect_fail() {
    local want=$1 out=$2; shift 2
    if "$@" >"$out" 2>&1; then fail "succeeded but should fail with $want: $*"; fi
    expect_contains "$out" "($want)"
}
cms_verify() {	# cms_verify CMS [CONTENT]
    if [ $# -eq 2 ]; then
        openssl cms -verify -binary -inform DER -in "$1" -content "$2" \
            -CAfile "$P/root-ca.pem" -certfile "$P/issuing-ca.pem" -out /dev/null 2>"$T/verify.err"
    else
        openssl cms -verify -binary -inform DER -in "$1" \
            -CAfile "$P/root-ca.pem" -certfile "$P/issuing-ca.pem" -out "$1.content" 2>"$T/verify.err"
    fi
}

# signature_value PRINT OUT: the SignerInfo's signature octets from the
# `openssl cms -cmsout -print` dump PRINT, written to OUT
signature_value() {
    python3 - "$1" "$2" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().split("\n")
start = max(i for i, l in enumerate(lines) if re.match(r"\s+signature:\s*$", l))
out = bytearray()
for l in lines[start + 1:]:
    m = re.match(r"\s+[0-9a-f]{4} - ((?:[0-9a-f]{2}[ -]){0,15}[0-9a-f]{2})", l)
    if not m:
        break
    out += bytes.fromhex(m.group(1).replace("-", " "))
open(sys.argv[2], "wb").write(out)
PY
}

printf 'Vertrag Nr. 4711\nqes CAdES integration test\n' > "$T/doc.txt"
head -c $((3 * 1024 * 1024 + 17)) /dev/urandom > "$T/big.bin"

# ---------------------------------------------------------------------------
# B-B, B-T, B-LT for each signer type.
for spec in qual-rsa2048:rsa-pkcs1:sha256 qual-rsa2048:rsa-pss:sha256 \
            qual-p256:ecdsa:sha256 qual-p384:ecdsa:sha384; do
    IFS=: read -r k scheme md <<<"$spec"
    n=$k-$scheme
    sign=(sign --cert "$P/$k.pem" --key "$P/$k.key" --chain "$P/issuing-ca.pem"
          --scheme "$scheme" --md "$md")

    tool "${sign[@]}" --in "$T/doc.txt" --out "$T/$n.bb.p7s"
    cms_verify "$T/$n.bb.p7s" "$T/doc.txt" || { cat "$T/verify.err"; fail "$n B-B detached does not verify"; }
    openssl cms -cmsout -print -inform DER -in "$T/$n.bb.p7s" > "$T/$n.bb.txt"
    expect_contains "$T/$n.bb.txt" "id-smime-aa-signingCertificateV2"
    expect_contains "$T/$n.bb.txt" "signingTime"
    expect_contains "$T/$n.bb.txt" "messageDigest"
    if [ "$scheme" = rsa-pss ]; then
        expect_contains "$T/$n.bb.txt" "rsassaPss"
        expect_contains "$T/$n.bb.txt" "mgf1"
    fi
    tool inspect "$T/$n.bb.p7s" --content "$T/doc.txt" > "$T/$n.bb.inspect"
    expect_contains "$T/$n.bb.inspect" "level=B-B"
    expect_contains "$T/$n.bb.inspect" "signature_ok=1"
    expect_contains "$T/$n.bb.inspect" "integrity=ok"
    expect_contains "$T/$n.bb.inspect" "scheme=$scheme"
    ok "$n: B-B detached verified by openssl cms, signing-certificate-v2 present"

    tool "${sign[@]}" --enveloping --in "$T/doc.txt" --out "$T/$n.env.p7s"
    cms_verify "$T/$n.env.p7s" || { cat "$T/verify.err"; fail "$n B-B enveloping does not verify"; }
    cmp -s "$T/$n.env.p7s.content" "$T/doc.txt" || fail "$n enveloped content differs"
    ok "$n: B-B enveloping verified, content intact"

    tool "${sign[@]}" --in "$T/doc.txt" --level B-T --tsa "$TSA" --tsa-ca "$P/root-ca.pem" \
        --out "$T/$n.bt.p7s"
    cms_verify "$T/$n.bt.p7s" "$T/doc.txt" || fail "$n B-T does not verify"
    tool inspect "$T/$n.bt.p7s" --token-out "$T/$n.tst" --sig-out "$T/$n.sigvalue" \
        > "$T/$n.bt.inspect"
    expect_contains "$T/$n.bt.inspect" "level=B-T"
    expect_contains "$T/$n.bt.inspect" "timestamp_imprint_ok=1"
    openssl ts -verify -token_in -in "$T/$n.tst" -data "$T/$n.sigvalue" \
        -CAfile "$P/root-ca.pem" >"$T/ts.out" 2>&1 || { cat "$T/ts.out"; fail "$n: token rejected by openssl ts"; }
    # the SignatureValue the token covers is the one OpenSSL reads in the CMS
    openssl cms -cmsout -print -inform DER -in "$T/$n.bt.p7s" > "$T/$n.bt.txt"
    expect_contains "$T/$n.bt.txt" "id-smime-aa-timeStampToken"
    signature_value "$T/$n.bt.txt" "$T/$n.sigvalue.openssl"
    cmp -s "$T/$n.sigvalue" "$T/$n.sigvalue.openssl" ||
        fail "$n: the timestamped value is not the CMS's SignatureValue"
    ok "$n: B-T token verified by openssl ts -verify against the test root"

    tool "${sign[@]}" --in "$T/doc.txt" --level B-LT --tsa "$TSA" --tsa-ca "$P/root-ca.pem" \
        --extra "$P/root-ca.pem" --out "$T/$n.blt.p7s"
    cms_verify "$T/$n.blt.p7s" "$T/doc.txt" || fail "$n B-LT does not verify"
    openssl cms -cmsout -print -inform DER -in "$T/$n.blt.p7s" > "$T/$n.blt.txt"
    expect_contains "$T/$n.blt.txt" "d.other:"
    expect_contains "$T/$n.blt.txt" "1.3.6.1.5.5.7.16.2"
    expect_contains "$T/$n.blt.txt" "d.crl:"
    expect_contains "$T/$n.blt.txt" "QES Test Qualified TSU 1"
    tool inspect "$T/$n.blt.p7s" > "$T/$n.blt.inspect"
    expect_contains "$T/$n.blt.inspect" "level=B-LT"
    expect_contains "$T/$n.blt.inspect" "ocsps=1"
    expect_contains "$T/$n.blt.inspect" "crls=1"
    expect_contains "$T/$n.blt.inspect" "certs=4"
    ok "$n: B-LT holds the OCSP response, the root's CRL and the TSA chain"
done

# The OCSP response inside B-LT is the responder's, for this signer, and good.
python3 - "$T/qual-p256-ecdsa.blt.p7s" "$T/embedded.ocsp" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
oid = bytes.fromhex("06082b06010505071002")	# id-ri-ocsp-response
i = data.index(oid) + len(oid)
assert data[i] == 0x30
n = data[i + 1]
if n & 0x80:
    k = n & 0x7f
    ln = int.from_bytes(data[i + 2:i + 2 + k], "big"); hl = 2 + k
else:
    ln = n; hl = 2
open(sys.argv[2], "wb").write(data[i:i + hl + ln])
PY
openssl ocsp -respin "$T/embedded.ocsp" -issuer "$P/issuing-ca.pem" -cert "$P/qual-p256.pem" \
    -CAfile "$P/root-ca.pem" -no_nonce > "$T/embedded.txt" 2>&1 || { cat "$T/embedded.txt"; fail "embedded OCSP response rejected"; }
expect_contains "$T/embedded.txt" "qual-p256.pem: good"
ok "the embedded OCSP response verifies with openssl ocsp and says good"

# CRL-only B-LT: the signer's status from the issuing CA's CRL.
tool sign --cert "$P/qual-p256.pem" --key "$P/qual-p256.key" --chain "$P/issuing-ca.pem" \
    --in "$T/doc.txt" --level B-LT --tsa "$TSA" --tsa-ca "$P/root-ca.pem" \
    --extra "$P/root-ca.pem" --crl-only --out "$T/crlonly.p7s"
tool inspect "$T/crlonly.p7s" > "$T/crlonly.inspect"
expect_contains "$T/crlonly.inspect" "ocsps=0"
expect_contains "$T/crlonly.inspect" "crls=2"
ok "B-LT from CRLs only: the issuing CA's and the root's CRL embedded"

# ---------------------------------------------------------------------------
# Streamed files and the hash-only flow.
tool sign --cert "$P/qual-p256.pem" --key "$P/qual-p256.key" --chain "$P/issuing-ca.pem" \
    --in "$T/big.bin" --stream --out "$T/big.det.p7s"
cms_verify "$T/big.det.p7s" "$T/big.bin" || fail "streamed detached does not verify"
tool sign --cert "$P/qual-rsa2048.pem" --key "$P/qual-rsa2048.key" --chain "$P/issuing-ca.pem" \
    --in "$T/big.bin" --stream --enveloping --out "$T/big.env.p7s"
cms_verify "$T/big.env.p7s" || fail "streamed enveloping does not verify"
cmp -s "$T/big.env.p7s.content" "$T/big.bin" || fail "streamed enveloped content differs"
tool sign --cert "$P/qual-p384.pem" --key "$P/qual-p384.key" --md sha384 \
    --chain "$P/issuing-ca.pem" --in "$T/big.bin" --stream --enveloping --direct \
    --out "$T/big.direct.p7s"
cms_verify "$T/big.direct.p7s" || fail "enveloping written to a file does not verify"
cmp -s "$T/big.direct.p7s.content" "$T/big.bin" || fail "file-written enveloped content differs"
ok "3 MB file streamed: detached and enveloping (in memory and written to a file) verify"

dg=$(openssl dgst -sha256 -r "$T/doc.txt" | cut -d' ' -f1)
tool sign --cert "$P/qual-p256.pem" --key "$P/qual-p256.key" --chain "$P/issuing-ca.pem" \
    --digest "$dg" --no-signing-time --raw-ecdsa --out "$T/hashonly.p7s"
cms_verify "$T/hashonly.p7s" "$T/doc.txt" || fail "hash-only signature does not verify"
openssl cms -cmsout -print -inform DER -in "$T/hashonly.p7s" > "$T/hashonly.txt"
expect_not_contains "$T/hashonly.txt" "signingTime"
ok "hash-only (digest given, raw r||s value, no signing-time) verifies"

# ---------------------------------------------------------------------------
# Refusals.
expect_fail bad_signature "$T/badsig.out" "$TOOL" sign --cert "$P/qual-rsa2048.pem" \
    --key "$P/qual-rsa2048.key" --in "$T/doc.txt" --bad-signature --out "$T/bad.p7s"
[ ! -e "$T/bad.p7s" ] || fail "a CMS was written for a wrong signature value"
expect_fail bad_signature "$T/badsig2.out" "$TOOL" sign --cert "$P/qual-p384.pem" \
    --key "$P/qual-p384.key" --md sha384 --in "$T/doc.txt" --bad-signature --raw-ecdsa \
    --out "$T/bad.p7s"
[ ! -e "$T/bad.p7s" ] || fail "a CMS was written for a wrong signature value"
expect_fail key_unsuitable "$T/badsig3.out" "$TOOL" sign --cert "$P/qual-p256.pem" \
    --key "$P/qual-p256.key" --scheme rsa-pss --in "$T/doc.txt" --out "$T/bad.p7s"
ok "a wrong signature value is refused at finish (bad_signature), a scheme the key cannot make at prepare"

tool status --cert "$P/revoked-p256.pem" --issuer "$P/issuing-ca.pem" > "$T/rev.ocsp"
expect_contains "$T/rev.ocsp" "status=revoked"
expect_contains "$T/rev.ocsp" "source=ocsp"
expect_contains "$T/rev.ocsp" "reason=1"
tool status --cert "$P/revoked-p256.pem" --issuer "$P/issuing-ca.pem" --crl-only > "$T/rev.crl"
expect_contains "$T/rev.crl" "status=revoked"
tool status --cert "$P/qual-p384.pem" --issuer "$P/issuing-ca.pem" > "$T/good.ocsp"
expect_contains "$T/good.ocsp" "status=good"
expect_fail revocation_unavailable "$T/rev.blt" "$TOOL" sign --cert "$P/revoked-p256.pem" \
    --key "$P/revoked-p256.key" --chain "$P/issuing-ca.pem" --in "$T/doc.txt" \
    --level B-LT --tsa "$TSA" --tsa-ca "$P/root-ca.pem" --extra "$P/root-ca.pem" --out "$T/rev.p7s"
expect_contains "$T/rev.blt" "is revoked"
ok "revoked signer: OCSP and CRL say revoked (keyCompromise), B-LT refused"

expect_fail revocation_unavailable "$T/ocsp-nonce.out" "$TOOL" status --cert "$P/qual-p256.pem" \
    --issuer "$P/issuing-ca.pem" --ocsp-url "$QES_PKI_OCSP_URL/bad-nonce"
expect_contains "$T/ocsp-nonce.out" "nonce mismatch"
ok "an OCSP answer echoing another nonce is refused"

for mode in bad-nonce:"nonce mismatch" bad-imprint:"imprint mismatch" \
            rejection:"TSA refused the request" garbage:"not a DER TimeStampResp" \
            huge:"larger than"; do
    m=${mode%%:*} why=${mode#*:}
    if "$TOOL" sign --cert "$P/qual-p256.pem" --key "$P/qual-p256.key" --in "$T/doc.txt" \
        --level B-T --tsa "$TSA/$m" --tsa-ca "$P/root-ca.pem" --out "$T/ts-$m.p7s" \
        >"$T/ts-$m.out" 2>&1; then fail "TSA mode $m accepted"; fi
    expect_contains "$T/ts-$m.out" "$why"
    [ ! -e "$T/ts-$m.p7s" ] || fail "TSA mode $m: a CMS was written"
done
# a TSA whose certificate does not chain to the configured anchors
expect_fail timestamp_failed "$T/ts-trust.out" "$TOOL" sign --cert "$P/qual-p256.pem" \
    --key "$P/qual-p256.key" --in "$T/doc.txt" --level B-T --tsa "$TSA" \
    --tsa-ca "$P/foreign-root.pem" --out "$T/ts-trust.p7s"
ok "TSA answers with a wrong nonce, imprint, refusal, garbage, oversize or untrusted certificate are refused"

# Tampering: one byte of the detached content, one byte of the enveloped content.
cp "$T/doc.txt" "$T/doc-tampered.txt"; printf 'X' | dd of="$T/doc-tampered.txt" bs=1 seek=3 conv=notrunc 2>/dev/null
if cms_verify "$T/qual-p256-ecdsa.bb.p7s" "$T/doc-tampered.txt"; then fail "tampered content accepted"; fi
tool inspect "$T/qual-p256-ecdsa.bb.p7s" --content "$T/doc-tampered.txt" > "$T/tampered.inspect"
expect_contains "$T/tampered.inspect" "integrity=bad_signature"
python3 - "$T/qual-rsa2048-rsa-pkcs1.env.p7s" "$T/env-tampered.p7s" <<'PY'
import sys
d = bytearray(open(sys.argv[1], "rb").read())
i = d.index(b"Vertrag Nr. 4711")
d[i] ^= 0x01
open(sys.argv[2], "wb").write(d)
PY
if cms_verify "$T/env-tampered.p7s"; then fail "tampered enveloped content accepted"; fi
tool inspect "$T/env-tampered.p7s" > "$T/env-tampered.inspect"
expect_contains "$T/env-tampered.inspect" "integrity=bad_signature"
ok "tampered content rejected by openssl cms -verify and by the integrity check"

# ---------------------------------------------------------------------------
# Outbound fetch policy.
H=$QES_PKI_HTTP_URL
expect_fail fetch_failed "$T/f1" "$TOOL" fetch "$H/status/500"
expect_contains "$T/f1" "HTTP status 500"
expect_fail fetch_failed "$T/f2" "$TOOL" fetch "$H/status/404"
expect_fail limit_exceeded "$T/f3" "$TOOL" fetch "$H/huge" --max 100000
expect_fail fetch_failed "$T/f4" "$TOOL" fetch "$H/redirect-ftp"
expect_fail invalid_argument "$T/f5" "$TOOL" fetch "ftp://127.0.0.1/x.crl"
expect_fail invalid_argument "$T/f6" "$TOOL" fetch "file:///etc/passwd"
tool fetch "$H/redirect-crl" --out "$T/redirected.crl" > /dev/null
cmp -s "$T/redirected.crl" "$P/issuing-ca.crl" || fail "redirect to http not followed"
ok "fetch: HTTP errors, oversize, non-http(s) URLs and redirects to them refused; http redirect followed"

# No key material in anything the tool printed.
for f in "$T"/*.out "$T"/*.inspect; do
    expect_not_contains "$f" "PRIVATE KEY"
done
ok "no key material in the tool's output"
