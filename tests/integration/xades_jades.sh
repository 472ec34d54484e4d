#!/usr/bin/env bash
# XAdES and JAdES from libqes's two-phase API (through tests/helpers/qes-ades-sign,
# software keys of the test PKI, in-process test TSA), judged by independent tools:
#   xmlsec1 --verify      XAdES enveloped and detached, RSA PKCS#1 and ECDSA, every
#                         level; the chain must lead to the test root
#   openssl dgst (PSS)    XAdES RSA-PSS: xmlsec1 1.2.37 knows no RSA-PSS method, so
#                         SignedInfo is canonicalised by xmllint and checked by OpenSSL
#   openssl ts -verify    the B-T tokens: TSA chain to the root and an imprint over
#                         exactly what EN 319 132-1 / TS 119 182-1 say it covers
#   jwcrypto              JAdES compact and JSON, attached and detached
#                         (tests/helpers/jws_verify.py)
# and tampering (a changed XML node, a changed detached document, a changed JWS
# payload) must make each of them fail.
source "$QES_SOURCE_DIR/tests/lib.sh"
dir=$(qes_tmpdir)
S=$QES_BUILD_DIR/tests/qes-ades-sign
PY=/usr/bin/python3   # Debian's, where python3-jwcrypto lives
JV=$QES_SOURCE_DIR/tests/helpers/jws_verify.py
P=$QES_PKI
command -v xmlsec1 >/dev/null || fail "xmlsec1 not installed (scripts/deps.sh)"
$PY -c 'import jwcrypto' || fail "python3-jwcrypto not installed (scripts/deps.sh)"

# validation data for B-LT: the issuing CA, its CRL, an OCSP response for the signer
openssl x509 -in "$P/issuing-ca.pem" -outform DER -out "$dir/issuing.der"
openssl x509 -in "$P/root-ca.pem" -outform DER -out "$dir/root.der"
ocsp_for() { # SIGNER -> $dir/SIGNER.ocsp (made offline by openssl ocsp from index.txt)
  openssl ocsp -issuer "$P/issuing-ca.pem" -sha256 -cert "$P/$1.pem" -reqout "$dir/$1.req" \
    >/dev/null 2>&1
  (cd "$P" && openssl ocsp -index index.txt -CA issuing-ca.pem -rsigner ocsp.pem \
    -rkey ocsp.key -reqin "$dir/$1.req" -respout "$dir/$1.ocsp" >/dev/null 2>&1)
  [ -s "$dir/$1.ocsp" ] || fail "no OCSP response for $1"
}
LT=(--vcert "$dir/issuing.der" --crl "$P/issuing-ca.crl" --tsa-vcert "$dir/root.der")

XV=(xmlsec1 --verify --trusted-pem "$P/root-ca.pem" --untrusted-pem "$P/issuing-ca.pem"
    --id-attr:Id "http://uri.etsi.org/01903/v1.3.2#:SignedProperties")

cat >"$dir/invoice.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- e-invoice -->
<inv:Invoice xmlns:inv="urn:example:invoice" xmlns="urn:example:default">
  <inv:Id>2026-0042</inv:Id>
  <Line qty="3" price="9.99">Widgets &amp; gadgets</Line>
  <Total currency="EUR">29.97</Total>
</inv:Invoice>
EOF
head -c 200000 /dev/urandom >"$dir/contract.bin"

# ---- XAdES ----
xades_ok() { # FILE [xmlsec1 args]: xmlsec1 accepts
  local f=$1; shift
  "${XV[@]}" "$@" "$f" >"$dir/xmlsec.out" 2>&1 || { cat "$dir/xmlsec.out" >&2; fail "xmlsec1 rejects $f"; }
  grep -q "SignedInfo References (ok/all): 2/2" "$dir/xmlsec.out" || fail "xmlsec1: not 2/2 references in $f"
}
xades_bad() { # FILE [xmlsec1 args]: xmlsec1 refuses
  local f=$1; shift
  if "${XV[@]}" "$@" "$f" >"$dir/xmlsec.out" 2>&1; then fail "xmlsec1 accepts tampered $f"; fi
}

# the canonical ds:SignatureValue (exclusive C14N: the element with the ds namespace
# it uses and its Id), built from the output independently of libqes
sigvalue_c14n() { # XML OUT
  $PY - "$1" "$2" <<'EOF'
import re, sys
x = open(sys.argv[1]).read()
m = re.search(r'<ds:SignatureValue Id="([^"]+)">([^<]+)</ds:SignatureValue>', x)
open(sys.argv[2], "w").write('<ds:SignatureValue xmlns:ds="http://www.w3.org/2000/09/xmldsig#"'
                             ' Id="%s">%s</ds:SignatureValue>' % (m.group(1), m.group(2)))
EOF
}
# the EncapsulatedTimeStamp of element NAME, DER
xades_token() { # XML NAME OUT
  $PY - "$1" "$2" "$3" <<'EOF'
import base64, re, sys
x = open(sys.argv[1]).read()
m = re.search(r'<[a-z0-9]+:%s [^>]*>.*?<xades:EncapsulatedTimeStamp>([^<]+)<' % sys.argv[2], x, re.S)
open(sys.argv[3], "wb").write(base64.b64decode(m.group(1)))
EOF
}
ts_verify() { # DATA TOKEN
  openssl ts -verify -data "$1" -in "$2" -token_in -CAfile "$P/root-ca.pem" \
    -untrusted "$P/tsa.pem" >"$dir/ts.out" 2>&1 || { cat "$dir/ts.out" >&2; fail "openssl ts rejects $2"; }
  grep -q "Verification: OK" "$dir/ts.out" || fail "openssl ts: no OK for $2"
}

for c in "qual-rsa2048 rsa-pkcs1 sha256" "qual-rsa3072 rsa-pkcs1 sha512" \
         "qual-p256 ecdsa sha256" "qual-p384 ecdsa sha384"; do
  set -- $c
  for c14n in "" --inclusive; do
    "$S" xades-enveloped --pki "$P" --signer "$1" --scheme "$2" --md "$3" $c14n \
      "$dir/invoice.xml" "$dir/env.xml"
    xades_ok "$dir/env.xml"
  done
  # a changed node of the signed content, and a changed attribute
  sed 's/>29.97</>2997.00</' "$dir/env.xml" >"$dir/bad1.xml"
  xades_bad "$dir/bad1.xml"
  sed 's/qty="3"/qty="30"/' "$dir/env.xml" >"$dir/bad2.xml"
  xades_bad "$dir/bad2.xml"
  ok "XAdES enveloped $1 $2 $3 (exclusive and inclusive C14N) accepted by xmlsec1, tampered refused"

  # detached: xmlsec1 resolves the Reference URI "contract.bin" through --url-map
  # (it does not read files it is not told about)
  "$S" xades-detached --pki "$P" --signer "$1" --scheme "$2" --md "$3" \
    --name contract.bin --mime application/octet-stream "$dir/contract.bin" "$dir/det.xml"
  xades_ok "$dir/det.xml" --url-map:contract.bin "$dir/contract.bin"
  xades_bad "$dir/det.xml"   # without the document
  cp "$dir/contract.bin" "$dir/contract2.bin"
  printf '\x01' | dd of="$dir/contract2.bin" bs=1 seek=1000 conv=notrunc status=none
  xades_bad "$dir/det.xml" --url-map:contract.bin "$dir/contract2.bin"
  # hash-only: prepare sees the digest, never the document
  "$S" xades-detached --hash-only --pki "$P" --signer "$1" --scheme "$2" --md "$3" \
    --name contract.bin "$dir/contract.bin" "$dir/det-h.xml"
  xades_ok "$dir/det-h.xml" --url-map:contract.bin "$dir/contract.bin"
  xades_bad "$dir/det-h.xml" --url-map:contract.bin "$dir/contract2.bin"
  ok "XAdES detached $1 (document or only its digest) accepted by xmlsec1 with the document, refused without it or changed"
done

# RSA-PSS: SignedInfo (exclusive C14N by xmllint) against the value, with OpenSSL
for md in sha256 sha384; do
  "$S" xades-enveloped --pki "$P" --signer qual-rsa2048 --scheme rsa-pss --md $md \
    "$dir/invoice.xml" "$dir/pss.xml"
  grep -q "xmldsig-more#$md-rsa-MGF1" "$dir/pss.xml" || fail "no RFC 6931 PSS URI"
  $PY - "$dir/pss.xml" "$dir/si.xml" "$dir/sv.bin" <<'EOF'
import base64, re, sys
x = open(sys.argv[1]).read()
si = re.search(r'<ds:SignedInfo>.*?</ds:SignedInfo>', x, re.S).group(0)
si = si.replace('<ds:SignedInfo>',
                '<ds:SignedInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">', 1)
open(sys.argv[2], "w").write(si)
sv = re.search(r'<ds:SignatureValue[^>]*>([^<]+)<', x).group(1)
open(sys.argv[3], "wb").write(base64.b64decode(sv))
EOF
  xmllint --exc-c14n "$dir/si.xml" >"$dir/si.c14n"
  openssl x509 -in "$P/qual-rsa2048.pem" -pubkey -noout >"$dir/pub.pem"
  openssl dgst -$md -verify "$dir/pub.pem" -sigopt rsa_padding_mode:pss \
    -sigopt rsa_pss_saltlen:digest -sigopt rsa_mgf1_md:$md -signature "$dir/sv.bin" \
    "$dir/si.c14n" | grep -q "Verified OK" || fail "OpenSSL rejects the XAdES PSS value ($md)"
done
ok "XAdES RSA-PSS (sha256, sha384): SignedInfo value verified by OpenSSL"

# levels: B-T token over the canonical SignatureValue; B-LT values; B-LTA archive stamp
ocsp_for qual-p256
for lvl in B-T B-LT B-LTA; do
  "$S" xades-enveloped --pki "$P" --signer qual-p256 --scheme ecdsa --md sha256 \
    --level $lvl "${LT[@]}" --ocsp "$dir/qual-p256.ocsp" "$dir/invoice.xml" "$dir/lvl.xml"
  xades_ok "$dir/lvl.xml"
  sigvalue_c14n "$dir/lvl.xml" "$dir/sv.c14n"
  xades_token "$dir/lvl.xml" SignatureTimeStamp "$dir/sig.tst"
  ts_verify "$dir/sv.c14n" "$dir/sig.tst"
  if [ $lvl != B-T ]; then
    grep -q "<xades:EncapsulatedOCSPValue>" "$dir/lvl.xml" || fail "$lvl without OCSP value"
    grep -q "<xades:EncapsulatedCRLValue>" "$dir/lvl.xml" || fail "$lvl without CRL value"
    grep -q "<xades141:TimeStampValidationData>" "$dir/lvl.xml" || fail "$lvl without TSA data"
    # the embedded OCSP response is the one given, and says good
    $PY - "$dir/lvl.xml" "$dir/emb.ocsp" <<'EOF'
import base64, re, sys
x = open(sys.argv[1]).read()
open(sys.argv[2], "wb").write(base64.b64decode(
    re.search(r'<xades:EncapsulatedOCSPValue>([^<]+)<', x).group(1)))
EOF
    cmp -s "$dir/emb.ocsp" "$dir/qual-p256.ocsp" || fail "embedded OCSP response differs"
    openssl ocsp -no_nonce -respin "$dir/emb.ocsp" -issuer "$P/issuing-ca.pem" -sha256 -cert "$P/qual-p256.pem" \
      -CAfile "$P/root-ca.pem" -verify_other "$P/issuing-ca.pem" 2>&1 | grep -q ": good" \
      || fail "embedded OCSP response does not verify as good"
  fi
  if [ $lvl = B-LTA ]; then
    # its imprint is checked against an independent computation in tests/unit/test_xades.c
    xades_token "$dir/lvl.xml" ArchiveTimeStamp "$dir/arc.tst"
    openssl ts -reply -in "$dir/arc.tst" -token_in -text 2>/dev/null |
      grep -q "Hash Algorithm: sha256" || fail "archive timestamp token unreadable"
  fi
  ok "XAdES $lvl accepted by xmlsec1; signature timestamp verified by openssl ts over the canonical SignatureValue"
done
sed 's/2026-0042/2026-0043/' "$dir/lvl.xml" >"$dir/bad.xml"
xades_bad "$dir/bad.xml"
ok "XAdES B-LTA with a changed invoice number refused"

# untrusted XML input: a DTD, malformed XML
printf '<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>' >"$dir/xxe.xml"
if "$S" xades-enveloped --pki "$P" --signer qual-p256 --scheme ecdsa --md sha256 \
    "$dir/xxe.xml" "$dir/x.xml" 2>"$dir/err"; then fail "a DOCTYPE was accepted"; fi
expect_contains "$dir/err" "xml_malformed"
expect_contains "$dir/err" "DOCTYPE"
printf '<a><b></a>' >"$dir/broken.xml"
if "$S" xades-enveloped --pki "$P" --signer qual-p256 --scheme ecdsa --md sha256 \
    "$dir/broken.xml" "$dir/x.xml" 2>"$dir/err"; then fail "broken XML was accepted"; fi
expect_contains "$dir/err" "xml_malformed"
ok "XAdES: DOCTYPE/external entity and malformed XML refused with xml_malformed"

# ---- JAdES ----
printf '{"invoice":"2026-0042","total":"29.97"}' >"$dir/payload.json"
printf '{"invoice":"2026-0042","total":"2997.00"}' >"$dir/payload2.json"
jv_ok() { $PY "$JV" "$@" >"$dir/jv.out" 2>&1 || { cat "$dir/jv.out" >&2; fail "jwcrypto rejects: $*"; }; }
jv_bad() { if $PY "$JV" "$@" >"$dir/jv.out" 2>&1; then fail "jwcrypto accepts tampered: $*"; fi; }

for c in "qual-rsa2048 rsa-pkcs1 sha256 RS256" "qual-rsa3072 rsa-pkcs1 sha512 RS512" \
         "qual-rsa2048 rsa-pss sha256 PS256" "qual-rsa3072 rsa-pss sha384 PS384" \
         "qual-p256 ecdsa sha256 ES256" "qual-p384 ecdsa sha384 ES384"; do
  set -- $c
  for ser in compact json; do
    "$S" jades-$ser --pki "$P" --signer "$1" --scheme "$2" --md "$3" --cty application/json \
      "$dir/payload.json" "$dir/a.jws"
    jv_ok "$dir/a.jws" "$P/$1.pem" --alg "$4" --expect-payload "$dir/payload.json"
    # a changed payload
    if [ $ser = compact ]; then
      b64=$($PY -c 'import sys,base64;print(base64.urlsafe_b64encode(open(sys.argv[1],"rb").read()).decode().rstrip("="))' "$dir/payload2.json")
      awk -F. -v p="$b64" '{print $1 "." p "." $3}' "$dir/a.jws" >"$dir/bad.jws"
    else
      $PY - "$dir/a.jws" "$dir/payload2.json" "$dir/bad.jws" <<'EOF'
import base64, json, sys
o = json.load(open(sys.argv[1]))
o["payload"] = base64.urlsafe_b64encode(open(sys.argv[2], "rb").read()).decode().rstrip("=")
json.dump(o, open(sys.argv[3], "w"))
EOF
    fi
    jv_bad "$dir/bad.jws" "$P/$1.pem"
    # detached (RFC 7515 appendix F)
    "$S" jades-$ser --detached --pki "$P" --signer "$1" --scheme "$2" --md "$3" \
      "$dir/payload.json" "$dir/d.jws"
    jv_ok "$dir/d.jws" "$P/$1.pem" --alg "$4" --payload "$dir/payload.json"
    jv_bad "$dir/d.jws" "$P/$1.pem" --payload "$dir/payload2.json"
  done
  # another certificate's key
  other=qual-p256; [ "$1" = qual-p256 ] && other=qual-p384
  jv_bad "$dir/a.jws" "$P/$other.pem"
  ok "JAdES $4 compact and JSON, attached and detached, accepted by jwcrypto; changed payload refused"
done

# JAdES levels (JSON): sigTst over the base64url signature value, xVals/rVals
ocsp_for qual-p384
for lvl in B-T B-LT; do
  "$S" jades-json --pki "$P" --signer qual-p384 --scheme ecdsa --md sha384 --level $lvl \
    "${LT[@]}" --ocsp "$dir/qual-p384.ocsp" "$dir/payload.json" "$dir/l.jws"
  jv_ok "$dir/l.jws" "$P/qual-p384.pem" --alg ES384 --level $lvl --out-dir "$dir"
  ts_verify "$dir/sigtst.data" "$dir/sigtst.tst"
  ok "JAdES $lvl accepted by jwcrypto; sigTst verified by openssl ts over the base64url signature"
done
if "$S" jades-compact --pki "$P" --signer qual-p256 --scheme ecdsa --md sha256 --level B-T \
    "$dir/payload.json" "$dir/x.jws" 2>"$dir/err"; then fail "compact B-T was made"; fi
expect_contains "$dir/err" "needs JSON"
ok "JAdES compact B-T refused (no unprotected header)"
