#!/usr/bin/env bash
# verify: `qes verify FILE` reads back every format qes and OpenSSL make and
# tells valid from tampered.
#
# Inputs are made by other programs than the verifier: openssl cms -sign
# (CAdES detached DER and enveloping PEM; the CMS inside PDFs through
# qes-pdf-tool), qes-cades-tool with the test PKI's real TSA and OCSP
# responder (CAdES B-T, B-LT; the PAdES B-T CMS), openssl ts -reply (a PDF
# document timestamp), qes-ades-sign (XAdES, JAdES) and qes-bench-ades
# (PAdES B-B, two signatures). Each valid one must exit 0 with its level,
# signer, timestamp and validation data reported; each tampered one - a byte
# in the signed range, a changed XML node, a changed JWS payload, changed
# detached content, a flipped signature bit - must exit 8 with the reason.
# A chain to a foreign root exits 13 (not 9, audit verify's broken chain), a detached signature without
# --content 2, a missing file 3.
. "$(dirname "$0")/../lib.sh"
. "$QES_SOURCE_DIR/tests/pki_services.sh"
dir=$(qes_tmpdir)
cd "$dir" || fail "no $dir"

Q=$QES_BUILD_DIR/qes
P=$QES_PKI
CT=$QES_BUILD_DIR/tests/qes-cades-tool
PT=$QES_BUILD_DIR/tests/qes-pdf-tool
AS=$QES_BUILD_DIR/tests/qes-ades-sign
BA=$QES_BUILD_DIR/bench/qes-bench-ades
PY=/usr/bin/python3	# Debian's python3 has python3-cairo
for x in "$Q" "$CT" "$PT" "$AS" "$BA"; do
    [ -x "$x" ] || fail "no $x (build everything)"
done
for t in openssl qpdf "$PY"; do
    command -v "$t" >/dev/null || fail "$t is not installed (scripts/deps.sh)"
done
ROOT=$P/root-ca.pem

# v EXPECTED_EXIT NAME FILE [ARGS]: run qes verify, keep stdout/stderr
v() {
    local want=$1 name=$2 rc=0
    shift 2
    "$Q" verify "$@" >"$name.out" 2>"$name.err" || rc=$?
    if [ "$rc" != "$want" ]; then
        cat "$name.out" "$name.err" >&2
        fail "$name: qes verify exited $rc, expected $want"
    fi
}

qes_pki_services_start "$P"
TSA=$QES_PKI_TSA_URL

# ------------------------------------------------------------------ CAdES
printf 'Rechnung 2026-0042\nBetrag: 1234,56 EUR\n' >doc.txt
printf 'Rechnung 2026-0042\nBetrag: 9234,56 EUR\n' >doc-changed.txt
openssl cms -sign -binary -in doc.txt -outform DER -md sha256 -signer "$P/qual-rsa2048.pem" \
    -inkey "$P/qual-rsa2048.key" -certfile "$P/issuing-ca.pem" -out det.p7s
openssl cms -sign -binary -nodetach -in doc.txt -outform PEM -md sha384 \
    -signer "$P/qual-p384.pem" -inkey "$P/qual-p384.key" -certfile "$P/issuing-ca.pem" \
    -out env.pem

v 0 cades-det det.p7s --content doc.txt --trust "$ROOT"
expect_contains cades-det.out "signature 1 of 1: CAdES B-B"
expect_contains cades-det.out "CN=Anna Huber"
expect_contains cades-det.out "CN=QES Test Qualified CA 1"
expect_contains cades-det.out "integrity:    valid"
expect_contains cades-det.out "chain:        valid to a --trust anchor"
expect_contains cades-det.out "(claimed)"
v 0 cades-env env.pem --trust "$ROOT"
expect_contains cades-env.out "ecdsa sha384"
# the signer named by subjectKeyIdentifier (openssl cms -sign -keyid)
openssl cms -sign -binary -keyid -nodetach -in doc.txt -outform DER -md sha256 \
    -signer "$P/qual-rsa2048.pem" -inkey "$P/qual-rsa2048.key" -certfile "$P/issuing-ca.pem" \
    -out kid.p7s
v 0 cades-kid kid.p7s --trust "$ROOT"
expect_contains cades-kid.out "CN=Anna Huber"
"$PY" - <<'PY'
d = bytearray(open("kid.p7s", "rb").read())
i = d.find(b"Rechnung 2026-0042")
assert i > 0
d[i] ^= 0x20
open("kid-changed.p7s", "wb").write(d)
PY
v 8 cades-kid-changed kid-changed.p7s
expect_contains cades-kid-changed.err "message-digest does not match the content"
ok "CAdES from openssl cms -sign: detached DER with --content, enveloping PEM, -keyid (changed eContent: 8)"

v 8 cades-det-bad det.p7s --content doc-changed.txt --trust "$ROOT"
expect_contains cades-det-bad.err "signature 1: integrity: message-digest does not match"
v 2 cades-det-nocontent det.p7s
expect_contains cades-det-nocontent.err "the signed content is needed (--content)"
v 13 cades-foreign env.pem --trust "$P/foreign-root.pem"
expect_contains cades-foreign.err "signature 1: chain: unable to get local issuer certificate"
v 0 cades-notrust env.pem
expect_contains cades-notrust.out "not checked (no --trust)"
# a flipped bit in the signature value (the last bytes of an RSA CMS
# without unsigned attributes)
"$PY" - <<'PY'
d = bytearray(open("det.p7s", "rb").read())
d[-10] ^= 0x01
open("det-flip.p7s", "wb").write(d)
PY
v 8 cades-flip det-flip.p7s --content doc.txt
expect_contains cades-flip.err "the signature value does not verify over the signed attributes"
ok "CAdES: changed detached content, flipped signature bit (8), no content (2), foreign root (9)"

qes_run_checked "$CT" sign --cert "$P/qual-p256.pem" --key "$P/qual-p256.key" \
    --chain "$P/issuing-ca.pem" --in doc.txt --level B-T --tsa "$TSA" --tsa-ca "$ROOT" \
    --out bt.p7s
v 0 cades-bt bt.p7s --content doc.txt --trust "$ROOT"
expect_contains cades-bt.out "CAdES B-T"
expect_contains cades-bt.out "valid (imprint, token signature, TSA chain)"
qes_run_checked "$CT" sign --cert "$P/qual-p256.pem" --key "$P/qual-p256.key" \
    --chain "$P/issuing-ca.pem" --in doc.txt --level B-LT --tsa "$TSA" --tsa-ca "$ROOT" \
    --extra "$ROOT" --out blt.p7s
v 0 cades-blt blt.p7s --content doc.txt --trust "$ROOT" --json
"$PY" - cades-blt.out <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["valid"] is True, d
s = d["signatures"][0]
assert s["format"] == "CAdES" and s["level"] == "B-LT", s
assert s["integrity"]["ok"] is True and s["chain"]["ok"] is True, s
assert s["timestamp"]["ok"] is True, s
assert s["revocation"]["ocsp"] >= 1 and s["revocation"]["crl"] >= 1, s
assert "Clara Wagner" in s["signer"]["subject"], s
PY
# the timestamp must cover this signature value: graft the B-T token's
# attribute onto another signature (same signer, same content) - qes
# verify must see the imprint mismatch
qes_run_checked "$CT" sign --cert "$P/qual-p256.pem" --key "$P/qual-p256.key" \
    --chain "$P/issuing-ca.pem" --in doc.txt --level B-T --tsa "$TSA" --tsa-ca "$ROOT" \
    --out bt2.p7s
qes_run_checked "$CT" inspect bt.p7s --token-out bt.tst --sig-out bt.sig >/dev/null
qes_run_checked "$CT" inspect bt2.p7s --token-out bt2.tst --sig-out bt2.sig >/dev/null
"$PY" - <<'PY'
a = open("bt.p7s", "rb").read()
t1, t2 = open("bt.tst", "rb").read(), open("bt2.tst", "rb").read()
assert len(t1) == len(t2) and a.count(t1) == 1
open("bt-graft.p7s", "wb").write(a.replace(t1, t2))
PY
v 8 cades-graft bt-graft.p7s --content doc.txt --trust "$ROOT"
expect_contains cades-graft.err "timestamp: the token's imprint does not match the signature value"
ok "CAdES B-T and B-LT from the real TSA and OCSP responder: level, token, validation data; a foreign token is refused"

# ------------------------------------------------------------------ PAdES
"$PY" - <<'PYEOF'
import cairo
s = cairo.PDFSurface("cairo.pdf", 595, 842)
c = cairo.Context(s)
for i in range(2):
    c.move_to(72, 72)
    c.show_text("qes verify test page %d" % (i + 1))
    c.show_page()
s.finish()
PYEOF
qpdf --object-streams=generate cairo.pdf doc.pdf
# 1: B-B by libqes (qes-bench-ades), 2: a second signature whose CMS
# openssl cms -sign makes over the byte ranges qes-pdf-tool prepared
qes_run_checked "$BA" pades doc.pdf s1.pdf --cert "$P/qual-rsa2048.pem" \
    --key "$P/qual-rsa2048.key" --chain "$P/issuing-ca.pem"
qes_run_checked "$PT" sign s1.pdf s2.pdf --contents 8192 --ranges s2.r --der s2.der \
    --exec "openssl cms -sign -binary -in s2.r -outform DER -md sha256 -signer $P/qual-p256.pem -inkey $P/qual-p256.key -certfile $P/issuing-ca.pem -out s2.der" >/dev/null
v 0 pades-two s2.pdf --trust "$ROOT"
expect_contains pades-two.out "signature 1 of 2: PAdES B-B (Signature1)"
expect_contains pades-two.out "signature 2 of 2: PAdES B-B (Signature2)"
expect_contains pades-two.out "(a revision; later updates follow it)"
expect_contains pades-two.out "(the whole file)"
expect_contains pades-two.out "2 signatures: all valid"
ok "PAdES: two signatures (libqes, then openssl's CMS), each valid over its revision"

# a byte inside the newest signed range only: the first digit of the
# newest signature dictionary's /M date, a hex string (no reader looks at it, so the file
# stays readable and only the signature can notice)
"$PY" - <<'PY'
d = bytearray(open("s2.pdf", "rb").read())
i = d.rfind(b"/M<443a")	# hex string "D:..."
assert i > 0
j = i + len(b"/M<443a") + 1	# the low nibble of the year's first digit
d[j] = ord(b"3") if d[j] != ord(b"3") else ord(b"4")
open("s2-tampered.pdf", "wb").write(d)
PY
cmp -s s2.pdf s2-tampered.pdf && fail "the tampered PDF is unchanged"
v 8 pades-tampered s2-tampered.pdf --trust "$ROOT"
expect_contains pades-tampered.err "signature 2: integrity: message-digest does not match the signed byte ranges"
expect_not_contains pades-tampered.err "signature 1:"
ok "PAdES: a byte changed in the newest signed range fails that signature only (8)"

# B-T, then DSS (B-LT), then a document timestamp (B-LTA)
qes_run_checked "$PT" sign doc.pdf t.pdf --contents 16384 --ranges t.r --der t.der \
    --exec "$CT sign --cert $P/qual-p256.pem --key $P/qual-p256.key --chain $P/issuing-ca.pem --no-signing-time --in t.r --level B-T --tsa $TSA --tsa-ca $ROOT --out t.der" >/dev/null
v 0 pades-bt t.pdf --trust "$ROOT"
expect_contains pades-bt.out "PAdES B-T"
qes_run_checked "$PT" dss t.pdf lt.pdf --cert "$P/issuing-ca.cer" --cert "$P/root-ca.cer" \
    --crl "$P/issuing-ca.crl" --crl "$P/root.crl" >/dev/null
v 0 pades-blt lt.pdf --trust "$ROOT"
expect_contains pades-blt.out "PAdES B-LT"
expect_contains pades-blt.out "2 certificates, 0 OCSP responses, 2 CRLs"
printf '%s\n' "[ tsa ]" "default_tsa = tsa1" "[ tsa1 ]" "serial = $dir/tsaserial" \
    "crypto_device = builtin" "signer_cert = $P/tsa.pem" "signer_key = $P/tsa.key" \
    "signer_digest = sha256" "default_policy = 1.3.6.1.4.1.99999.1.1" "digests = sha256" \
    "accuracy = secs:1" "ordering = no" "tsa_name = no" "ess_cert_id_chain = no" \
    "ess_cert_id_alg = sha256" >ts.cnf
echo 01 >tsaserial
qes_run_checked "$PT" sign lt.pdf lta.pdf --doc-timestamp --contents 8192 --ranges lta.r \
    --der lta.der --exec "openssl ts -query -data lta.r -sha256 -cert -out lta.tsq 2>/dev/null && openssl ts -reply -config ts.cnf -queryfile lta.tsq -token_out -out lta.der 2>/dev/null" >/dev/null
v 0 pades-blta lta.pdf --trust "$ROOT"
expect_contains pades-blta.out "signature 1 of 2: PAdES B-LTA"
expect_contains pades-blta.out "signature 2 of 2: PAdES document timestamp"
expect_contains pades-blta.out "TSA:"
expect_contains pades-blta.out "the TSA's, valid with the token"
expect_contains pades-blta.out "valid (imprint, token signature, TSA chain)"
ok "PAdES B-T (CMS timestamp), B-LT (DSS counted), B-LTA (document timestamp verified)"

# --------------------------------------------------------------- XAdES
printf '<?xml version="1.0" encoding="UTF-8"?>\n<Invoice xmlns="urn:example:invoice"><ID>2026-0042</ID><Amount currency="EUR">1234.56</Amount></Invoice>\n' >inv.xml
qes_run_checked "$AS" xades-enveloped --pki "$P" --signer qual-rsa2048 --scheme rsa-pkcs1 \
    --md sha256 inv.xml x-env.xml
qes_run_checked "$AS" xades-enveloped --pki "$P" --signer qual-p256 --scheme ecdsa \
    --md sha256 --level B-T inv.xml x-bt.xml
qes_run_checked "$AS" xades-detached --pki "$P" --signer qual-p256 --scheme ecdsa \
    --md sha384 --name doc.txt doc.txt x-det.xml
v 0 xades-env x-env.xml --trust "$ROOT"
expect_contains xades-env.out "XAdES B-B"
expect_contains xades-env.out "rsa-sha256"
v 0 xades-bt x-bt.xml --trust "$ROOT"
expect_contains xades-bt.out "XAdES B-T"
expect_contains xades-bt.out "valid (imprint, token signature, TSA chain)"
v 0 xades-det x-det.xml --content doc.txt --trust "$ROOT"
v 2 xades-det-nocontent x-det.xml
sed 's/>1234.56</>9234.56</' x-env.xml >x-env-changed.xml
cmp -s x-env.xml x-env-changed.xml && fail "the amount was not changed"
v 8 xades-changed x-env-changed.xml
expect_contains xades-changed.err 'integrity: ds:Reference URI="": the digest of what it covers does not match'
sed 's/SigningTime>[0-9][0-9][0-9][0-9]-/SigningTime>1999-/' x-env.xml >x-env-time.xml
cmp -s x-env.xml x-env-time.xml && fail "SigningTime was not changed"
v 8 xades-time x-env-time.xml
expect_contains xades-time.err 'integrity: ds:Reference URI="#'
v 8 xades-det-changed x-det.xml --content doc-changed.txt
expect_contains xades-det-changed.err 'URI="doc.txt": the digest of what it covers does not match'
# RSA-PSS: xmlsec1 1.2 has no sha256-rsa-MGF1, so the signature is not
# checked - which is said, and is no "bad signature" (exit 1, not 8)
qes_run_checked "$AS" xades-enveloped --pki "$P" --signer qual-rsa2048 --scheme rsa-pss \
    --md sha256 inv.xml x-pss.xml
if pkg-config --max-version=1.2.99 xmlsec1 2>/dev/null; then
    v 1 xades-pss x-pss.xml
    expect_contains xades-pss.out "integrity:    NOT CHECKED: xmlsec1"
    expect_contains xades-pss.out "sha256-rsa-MGF1"
else
    v 0 xades-pss x-pss.xml
fi
ok "XAdES (xmlsec1): enveloped B-B, B-T, detached; a changed node, a changed SigningTime, changed content fail (8)"

# ---------------------------------------------------------------- JAdES
printf '{"invoice":"2026-0042","amount":"1234.56"}' >pay.json
qes_run_checked "$AS" jades-compact --pki "$P" --signer qual-p256 --scheme ecdsa --md sha256 \
    pay.json j.jws
qes_run_checked "$AS" jades-json --pki "$P" --signer qual-rsa2048 --scheme rsa-pss \
    --md sha256 --level B-T pay.json j.json
qes_run_checked "$AS" jades-json --pki "$P" --signer qual-rsa2048 --scheme rsa-pkcs1 \
    --md sha256 --detached pay.json jd.json
v 0 jades-compact j.jws --trust "$ROOT"
expect_contains jades-compact.out "JAdES B-B"
expect_contains jades-compact.out "ES256"
v 0 jades-json j.json --trust "$ROOT"
expect_contains jades-json.out "JAdES B-T"
expect_contains jades-json.out "PS256"
expect_contains jades-json.out "valid (imprint, token signature, TSA chain)"
v 0 jades-det jd.json --content pay.json --trust "$ROOT"
v 2 jades-det-nocontent jd.json
"$PY" - <<'PY'
import base64, json
h, p, s = open("j.jws").read().strip().split(".")
p2 = base64.urlsafe_b64encode(b'{"invoice":"2026-0042","amount":"9234.56"}').rstrip(b"=").decode()
open("j-changed.jws", "w").write(".".join([h, p2, s]))
d = json.load(open("j.json"))
d["payload"] = p2
open("j-changed.json", "w").write(json.dumps(d))
PY
v 8 jades-changed j-changed.jws
expect_contains jades-changed.err "integrity: the signature value does not verify over the JWS signing input"
v 8 jades-json-changed j-changed.json
v 8 jades-det-changed jd.json --content doc.txt
ok "JAdES: compact ES256, JSON PS256 B-T, detached; a changed payload or content fails (8)"

# ------------------------------------------- qes sign --format, read back
# The CLI's own signatures with a SoftHSM2 token (PIN through the scripted
# pinentry), every format at its highest level, read back by qes verify.
qes_private_tokens "$dir/tokens"
PE=$QES_BUILD_DIR/tests/qes-test-pinentry
export QES_TEST_PINENTRY_SCRIPT=$dir/pinentry.script
export QES_TEST_PINENTRY_LOG=$dir/pinentry.log
cat "$P/issuing-ca.pem" "$ROOT" >trust.pem
qsign() {	# FORMAT LEVEL IN OUT [options]
    local fmt=$1 lvl=$2 in=$3 out=$4
    shift 4
    printf 'pin %s\n' "$QES_TOKEN_A_PIN" >"$QES_TEST_PINENTRY_SCRIPT"
    rm -f "$QES_TEST_PINENTRY_SCRIPT.pos"
    "$Q" sign --module "$QES_TEST_MODULE" --only-module --pinentry "$PE" \
        --token "$QES_TOKEN_A_SERIAL" --key 02 --format "$fmt" --level "$lvl" \
        --in "$in" --out "$out" --tsa "$TSA" --tsa-ca "$ROOT" --trust trust.pem "$@" \
        >"$out.log" 2>&1 || { cat "$out.log" >&2; fail "qes sign $fmt $lvl"; }
}
qsign pades B-LTA doc.pdf cli-lta.pdf
v 0 cli-pades cli-lta.pdf --trust "$ROOT"
expect_contains cli-pades.out "PAdES B-LTA"
expect_contains cli-pades.out "PAdES document timestamp"
qsign cades B-LT doc.txt cli-lt.p7s --packaging enveloping
v 0 cli-cades cli-lt.p7s --trust "$ROOT"
expect_contains cli-cades.out "CAdES B-LT"
qsign xades B-LTA inv.xml cli-lta.xml
v 0 cli-xades cli-lta.xml --trust "$ROOT"
expect_contains cli-xades.out "XAdES B-LTA"
qsign jades B-LT pay.json cli-lt.json
v 0 cli-jades cli-lt.json --trust "$ROOT"
expect_contains cli-jades.out "JAdES B-LT"
for f in cli-pades cli-cades cli-xades cli-jades; do
    expect_contains "$f.out" "chain:        valid to a --trust anchor"
    expect_contains "$f.out" "valid (imprint, token signature, TSA chain)"
    expect_not_contains "$f.out" "0 certificates, 0 OCSP responses, 0 CRLs"
done
ok "qes sign --format (SoftHSM2 token): PAdES B-LTA, CAdES B-LT, XAdES B-LTA, JAdES B-LT all valid in qes verify"

# ------------------------------------------------------------- usage
v 3 missing no-such-file.pdf
v 2 noarg
printf 'just some text\n' >plain.txt
v 1 plain plain.txt
expect_contains plain.err "not a PDF, CMS, XML or JWS file"
v 3 unsigned doc.pdf
expect_contains unsigned.err "no signature found"
for f in ./*.err; do
    expect_not_contains "$f" "PRIVATE KEY"
done
ok "usage: missing file (3), no argument (2), unknown format (1), unsigned PDF (3)"
