#!/usr/bin/env bash
# integ_pki — checks the test fixture itself (tests/setup-testenv.sh): the PKI has the
# properties the other tests rely on (chains, qualified profile and qcStatements
# encoding, negatives, CRLs, OCSP and TSA usable with the openssl CLI) and the SoftHSM2
# tokens hold what tests/softhsm/mktokens.sh promises (labels, objects, the locked
# flag, CKA_ALWAYS_AUTHENTICATE, keys that sign and match their certificates).
# It also pins down the SoftHSM2 behaviour the agent depends on: C_Sign with an
# always-authenticate key needs a CKU_CONTEXT_SPECIFIC login, a wrong PIN sets
# CKF_USER_PIN_COUNT_LOW, and the "locked" token still accepts its PIN.
. "$(dirname -- "$0")/../lib.sh"

qes_tmpdir >/dev/null
pki=$QES_PKI
[ -e "$pki/.qes-test-pki" ] || fail "no test PKI in $pki"
cd -- "$pki" || exit 1

qualified="qual-rsa2048 qual-rsa3072 qual-p256 qual-p384"
issued_by_issuing="$qualified auth-p256 expired-rsa2048 revoked-p256 ocsp"
t=$QES_TMP

# --------------------------------------------------------------------------- chains
for n in $qualified auth-p256 ocsp tsa; do
    openssl verify -CAfile root-ca.pem -untrusted issuing-ca.pem "$n.pem" >"$t/v" 2>&1 \
        || { cat "$t/v" >&2; fail "$n does not verify against root-ca"; }
done
ok "qualified, auth, OCSP and TSA certificates verify against root-ca via issuing-ca"

for n in $qualified auth-p256; do
    openssl verify -crl_check_all -CAfile root-ca.pem -untrusted issuing-ca.pem \
        -CRLfile root.crl.pem -CRLfile issuing-ca.crl.pem "$n.pem" >/dev/null 2>&1 \
        || fail "$n does not verify with CRL checks"
done
ok "qualified certificates verify with CRL checks (root.crl, issuing-ca.crl)"

if openssl verify -CAfile root-ca.pem -untrusted issuing-ca.pem foreign-p256.pem >"$t/v" 2>&1; then
    fail "foreign-p256 verifies against root-ca"
fi
expect_contains "$t/v" "unable to get local issuer certificate"
openssl verify -CAfile foreign-root.pem foreign-p256.pem >/dev/null 2>&1 \
    || fail "foreign-p256 does not verify against foreign-root"
ok "foreign-p256 fails against root-ca, verifies against foreign-root"

if openssl verify -CAfile root-ca.pem -untrusted issuing-ca.pem expired-rsa2048.pem >"$t/v" 2>&1; then
    fail "expired-rsa2048 verifies"
fi
expect_contains "$t/v" "certificate has expired"
openssl x509 -in expired-rsa2048.pem -noout -checkend 0 >/dev/null && fail "expired-rsa2048 is still valid"
not_after=$(date -u -d "$(openssl x509 -in expired-rsa2048.pem -noout -enddate | cut -d= -f2)" +%s)
[ "$not_after" -lt "$(($(date +%s) - 86400))" ] || fail "expired-rsa2048 expired less than a day ago"
not_before=$(date -u -d "$(openssl x509 -in issuing-ca.pem -noout -startdate | cut -d= -f2)" +%s)
[ "$not_after" -gt "$not_before" ] || fail "expired-rsa2048 expired before issuing-ca began"
ok "expired-rsa2048 is really expired, within its issuer's validity"

if openssl verify -crl_check_all -CAfile root-ca.pem -untrusted issuing-ca.pem \
        -CRLfile root.crl.pem -CRLfile issuing-ca.crl.pem revoked-p256.pem >"$t/v" 2>&1; then
    fail "revoked-p256 verifies with CRL checks"
fi
expect_contains "$t/v" "certificate revoked"
ok "revoked-p256 is revoked in issuing-ca.crl"

for n in $issued_by_issuing; do
    expect_eq "$(grep -c 'BEGIN CERTIFICATE' "$n-chain.pem")" 2 "$n-chain.pem certificates"
    [ "$n" = expired-rsa2048 ] && continue
    openssl verify -CAfile trust.pem -untrusted "$n-chain.pem" "$n.pem" >/dev/null 2>&1 \
        || fail "$n does not verify with $n-chain.pem and trust.pem"
done
expect_eq "$(grep -c 'BEGIN CERTIFICATE' trust.pem)" 1 "trust.pem certificates"
expect_eq "$(openssl x509 -in trust.pem -noout -fingerprint -sha256)" \
    "$(openssl x509 -in root-ca.pem -noout -fingerprint -sha256)" "trust.pem"
ok "chain files and trust bundle"

# --------------------------------------------------------------------------- CA profiles
ext() { openssl x509 -in "$1" -noout -ext "$2" 2>/dev/null | tr -s ' \n' ' '; }
expect_eq "$(ext root-ca.pem basicConstraints)" "X509v3 Basic Constraints: critical CA:TRUE " "root basicConstraints"
expect_eq "$(ext root-ca.pem keyUsage)" "X509v3 Key Usage: critical Certificate Sign, CRL Sign " "root keyUsage"
expect_eq "$(openssl x509 -in root-ca.pem -noout -subject -issuer | sed 's/^[a-z]*=//' | uniq | wc -l)" 1 "root self-signed"
expect_eq "$(ext issuing-ca.pem basicConstraints)" "X509v3 Basic Constraints: critical CA:TRUE, pathlen:0 " "issuing basicConstraints"
expect_eq "$(ext issuing-ca.pem keyUsage)" "X509v3 Key Usage: critical Certificate Sign, CRL Sign " "issuing keyUsage"
expect_eq "$(ext tsa.pem extendedKeyUsage)" "X509v3 Extended Key Usage: critical Time Stamping " "TSA EKU"
expect_eq "$(ext ocsp.pem extendedKeyUsage)" "X509v3 Extended Key Usage: OCSP Signing " "OCSP EKU"
ext ocsp.pem noCheck | grep -q "OCSP No Check" || fail "ocsp.pem lacks id-pkix-ocsp-nocheck"
for n in $qualified expired-rsa2048 revoked-p256 foreign-p256 ocsp tsa auth-p256 issuing-ca; do
    openssl x509 -in "$n.pem" -noout -text | grep -q "Signature Algorithm: \(sha256WithRSAEncryption\|ecdsa-with-SHA256\)" \
        || fail "$n is not signed with SHA-256"
done
ok "root, issuing CA, TSA (EKU critical) and OCSP (nocheck) profiles"

# --------------------------------------------------------------------------- qualified profile
# qcs_oids CERT: the OIDs inside the qcStatements extension, "depth:oid" per line.
qcs_oids() {
    local off
    off=$(openssl asn1parse -in "$1" | awk '/:qcStatements$/ { getline; sub(/:.*/, ""); print $1; exit }')
    [ -n "$off" ] || return 0
    openssl asn1parse -in "$1" -strparse "$off" | awk -F: '/OBJECT/ { match($0, /d=[0-9]+/); print substr($0, RSTART + 2, RLENGTH - 2) ":" $NF }'
}
for n in $qualified expired-rsa2048 revoked-p256 foreign-p256; do
    expect_eq "$(ext "$n.pem" keyUsage)" "X509v3 Key Usage: critical Non Repudiation " "$n keyUsage"
    expect_eq "$(ext "$n.pem" certificatePolicies)" "X509v3 Certificate Policies: Policy: 0.4.0.194112.1.2 " "$n policies"
    qcs_oids "$n.pem" > "$t/qcs"
    # SEQUENCE OF QCStatement: each statementId at depth 2, QcType's esign at depth 3.
    expect_eq "$(head -n 4 "$t/qcs" | tr '\n' ' ')" \
        "2:0.4.0.1862.1.1 2:0.4.0.1862.1.4 2:0.4.0.1862.1.6 3:0.4.0.1862.1.6.1 " "$n qcStatements"
    subj=$(openssl x509 -in "$n.pem" -noout -subject -nameopt RFC2253)
    case "$subj" in
        *serialNumber=PNOAT-*,CN=*,SN=*,GN=*,C=AT) ;;
        *) fail "$n subject is not a natural person's: $subj" ;;
    esac
done
openssl x509 -in qual-p256.pem -noout -text > "$t/text"
expect_contains "$t/text" "qcStatements"
expect_contains "$t/text" "OCSP - URI:http://127.0.0.1:"
expect_contains "$t/text" "CA Issuers - URI:http://127.0.0.1:"
expect_contains "$t/text" "/issuing-ca.crl"
ok "qualified profile: nonRepudiation only, QCP-n-qscd, qcStatements (QcCompliance, QcSSCD, QcType esign), AIA, CDP"

expect_eq "$(qcs_oids auth-p256.pem)" "" "auth-p256 qcStatements"
expect_eq "$(ext auth-p256.pem keyUsage)" "X509v3 Key Usage: critical Digital Signature " "auth-p256 keyUsage"
expect_eq "$(ext auth-p256.pem extendedKeyUsage)" "X509v3 Extended Key Usage: TLS Web Client Authentication " "auth-p256 EKU"
ext auth-p256.pem certificatePolicies | grep -q 0.4.0.194112 && fail "auth-p256 has a QCP policy"
ok "auth-p256: digitalSignature, clientAuth, no qcStatements, no QCP"

# --------------------------------------------------------------------------- CRLs, OCSP, TSA
for c in root.crl:root-ca.pem issuing-ca.crl:issuing-ca.pem; do
    openssl crl -inform DER -in "${c%%:*}" -CAfile "${c#*:}" -noout 2>&1 | grep -q "verify OK" \
        || fail "${c%%:*} (DER) does not verify"
    cmp -s <(openssl crl -in "${c%%:*}.pem" -outform DER) "${c%%:*}" || fail "${c%%:*}.pem differs from DER"
done
expect_eq "$(grep -c . index.txt)" 8 "index.txt entries"
ok "CRLs (DER + PEM) and index.txt"

port=$(qes_free_port)
openssl ocsp -index index.txt -CA issuing-ca.pem -rsigner ocsp.pem -rkey ocsp.key \
    -port "$port" -nrequest 10 >"$t/ocspd.log" 2>&1 &
ocspd=$!
qes_on_exit "kill $ocspd"
ocsp_query() {
    openssl ocsp -issuer issuing-ca.pem -cert "$1.pem" -url "http://127.0.0.1:$port/ocsp" \
        -CAfile trust.pem -verify_other issuing-ca.pem 2>&1
}
for _ in $(seq 50); do
    ocsp_query qual-p256 > "$t/ocsp" && grep -q "qual-p256.pem: good" "$t/ocsp" && break
    sleep 0.1
done
expect_contains "$t/ocsp" "Response verify OK"
expect_contains "$t/ocsp" "qual-p256.pem: good"
ocsp_query revoked-p256 > "$t/ocsp" || true
expect_contains "$t/ocsp" "revoked-p256.pem: revoked"
expect_contains "$t/ocsp" "keyCompromise"
ok "openssl ocsp responder over index.txt: good / revoked, response verifies"

printf 'tsa test\n' > "$t/data"
cat > "$t/tsa.cnf" <<EOF
[ tsa ]
default_tsa = t
[ t ]
serial = $t/tsa.serial
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
ess_cert_id_alg = sha256
EOF
openssl ts -query -data "$t/data" -sha256 -cert -out "$t/q.tsq" 2>/dev/null
openssl ts -reply -config "$t/tsa.cnf" -queryfile "$t/q.tsq" -signer tsa.pem -inkey tsa.key \
    -chain tsa-chain.pem -out "$t/r.tsr" >/dev/null 2>&1 || fail "openssl ts -reply with tsa.pem"
openssl ts -verify -in "$t/r.tsr" -data "$t/data" -CAfile trust.pem >/dev/null 2>&1 \
    || fail "time-stamp token does not verify against trust.pem"
ok "openssl ts with tsa.pem/tsa.key makes tokens that verify against trust.pem"

# --------------------------------------------------------------------------- tokens
qes_private_tokens
M=$QES_TEST_MODULE
p11() { pkcs11-tool --module "$M" "$@"; }

p11 -T > "$t/token-list" 2>&1 || fail "pkcs11-tool -T"
expect_eq "$(grep -c 'token label' "$t/token-list")" 3 "initialised tokens"
for T in A B LOCKED; do
    label_var=QES_TOKEN_${T}_LABEL serial_var=QES_TOKEN_${T}_SERIAL
    grep -A8 "token label *: ${!label_var}\$" "$t/token-list" > "$t/tok" \
        || fail "token ${!label_var} not listed"
    expect_contains "$t/tok" "serial num         : ${!serial_var}"
    if [ "$T" = LOCKED ]; then expect_contains "$t/tok" "user PIN locked"
    else expect_not_contains "$t/tok" "user PIN locked"; fi
done
ok "three tokens with expected labels and serials; only $QES_TOKEN_LOCKED_LABEL is user-PIN-locked"

# objects TOKEN PIN EXPECTED_COUNT: private keys, public keys, certificates.
objects() {
    p11 --token-label "$1" --login --pin "$2" -O > "$t/objs-$1" 2>&1 || fail "list objects on $1"
    for kind in "Private Key Object" "Public Key Object" "Certificate Object"; do
        expect_eq "$(grep -c "^$kind" "$t/objs-$1")" "$3" "$1 '$kind' count"
    done
}
objects "$QES_TOKEN_A_LABEL" "$QES_TOKEN_A_PIN" 5
objects "$QES_TOKEN_B_LABEL" "$QES_TOKEN_B_PIN" 3
objects "$QES_TOKEN_LOCKED_LABEL" "$QES_TOKEN_LOCKED_PIN" 1
ok "object counts (A 5+5+5, B 3+3+3, locked 1+1+1)"

# key_access TOKEN ID: the Usage and Access lines of the private key with that CKA_ID.
key_access() {
    awk -v id="$2" '/^[A-Z]/ { p = /^Private Key Object/ } p && /ID:/ { hit = ($2 == id) }
                    p && hit && /(Usage|Access):/ { print }' "$t/objs-$1" | tr -s ' ' | tr '\n' ';'
}
for id in 01 02 03 04 05; do
    expect_eq "$(key_access "$QES_TOKEN_A_LABEL" $id)" " Usage: sign; Access: sensitive;" "token A key $id"
done
expect_eq "$(key_access "$QES_TOKEN_B_LABEL" 11)" " Usage: sign; Access: sensitive;" "token B key 11"
for id in 12 13; do
    expect_eq "$(key_access "$QES_TOKEN_B_LABEL" $id)" " Usage: sign; Access: always authenticate, sensitive;" \
        "token B key $id"
done
ok "private keys sign-only, sensitive, not extractable; CKA_ALWAYS_AUTHENTICATE on B's 12 and 13 only"

# sign TOKEN PIN ID NAME: sign a digest on the token, verify with NAME.pem's key.
sign() {
    local tok=$1 pin=$2 id=$3 name=$4 md=sha256 mech
    [ "$name" = qual-p384 ] && md=sha384
    openssl dgst -"$md" -binary "$t/data" > "$t/digest"
    if openssl x509 -in "$name.pem" -noout -text | grep -q "rsaEncryption"; then
        mech=${md^^}-RSA-PKCS
        p11 --token-label "$tok" --login --pin "$pin" --sign --id "$id" -m "$mech" \
            -i "$t/data" -o "$t/sig" >"$t/p11.log" 2>&1 || { cat "$t/p11.log" >&2; fail "sign $tok/$id"; }
        openssl pkeyutl -verify -certin -inkey "$name.pem" -in "$t/digest" -sigfile "$t/sig" \
            -pkeyopt "digest:$md" >/dev/null 2>&1 || fail "$tok/$id signature does not verify with $name.pem"
    else
        # SoftHSM2 2.6 has CKM_ECDSA only (no CKM_ECDSA_SHA256): sign the digest.
        p11 --token-label "$tok" --login --pin "$pin" --sign --id "$id" -m ECDSA \
            --signature-format openssl -i "$t/digest" -o "$t/sig" >"$t/p11.log" 2>&1 \
            || { cat "$t/p11.log" >&2; fail "sign $tok/$id"; }
        openssl pkeyutl -verify -certin -inkey "$name.pem" -in "$t/digest" -sigfile "$t/sig" \
            >/dev/null 2>&1 || fail "$tok/$id signature does not verify with $name.pem"
    fi
}
sign "$QES_TOKEN_A_LABEL" "$QES_TOKEN_A_PIN" "$QES_ID_QUAL_RSA2048" qual-rsa2048
sign "$QES_TOKEN_A_LABEL" "$QES_TOKEN_A_PIN" "$QES_ID_QUAL_P256" qual-p256
sign "$QES_TOKEN_A_LABEL" "$QES_TOKEN_A_PIN" "$QES_ID_AUTH_P256" auth-p256
sign "$QES_TOKEN_A_LABEL" "$QES_TOKEN_A_PIN" "$QES_ID_EXPIRED_RSA2048" expired-rsa2048
sign "$QES_TOKEN_A_LABEL" "$QES_TOKEN_A_PIN" "$QES_ID_FOREIGN_P256" foreign-p256
sign "$QES_TOKEN_B_LABEL" "$QES_TOKEN_B_PIN" "$QES_ID_QUAL_RSA3072" qual-rsa3072
sign "$QES_TOKEN_B_LABEL" "$QES_TOKEN_B_PIN" "$QES_ID_QUAL_P384" qual-p384
sign "$QES_TOKEN_B_LABEL" "$QES_TOKEN_B_PIN" "$QES_ID_QUAL_RSA2048_AA" qual-rsa2048
# SoftHSM2 ignores the lock flag it reports: the right PIN still logs in.
sign "$QES_TOKEN_LOCKED_LABEL" "$QES_TOKEN_LOCKED_PIN" "$QES_ID_LOCKED_QUAL_P256" qual-p256
ok "every key signs on its token and verifies with its certificate (pkeyutl -certin)"

p11 -T 2>/dev/null | grep -A8 "token label *: $QES_TOKEN_LOCKED_LABEL\$" | grep -q "user PIN locked" \
    || fail "the lock flag did not survive a login"
p11 --token-label "$QES_TOKEN_A_LABEL" --login --pin 000000 -O >/dev/null 2>&1 && fail "wrong PIN accepted"
p11 -T 2>/dev/null | grep -A8 "token label *: $QES_TOKEN_A_LABEL\$" | grep -q "user PIN count low" \
    || fail "a wrong PIN does not set CKF_USER_PIN_COUNT_LOW"
p11 --token-label "$QES_TOKEN_A_LABEL" --login --pin "$QES_TOKEN_A_PIN" -O >/dev/null 2>&1 || fail "right PIN refused"
p11 -T 2>/dev/null | grep -A8 "token label *: $QES_TOKEN_A_LABEL\$" | grep -q "user PIN count low" \
    && fail "a right PIN does not clear CKF_USER_PIN_COUNT_LOW"
ok "SoftHSM2 PIN flags: lock flag persists; wrong PIN sets count-low, right PIN clears it"

# --------------------------------------------------------------------------- always-authenticate
# pkcs11-tool logs in CKU_CONTEXT_SPECIFIC by itself, so a small PKCS#11 client shows
# what SoftHSM2 does when a caller does not.
cc=${CC:-cc}
if command -v "$cc" >/dev/null && pkg-config --exists p11-kit-1; then
    cat > "$t/aa.c" <<'EOF'
/* aa MODULE TOKEN PIN KEYLABEL: print the CK_RV of each step of an
 * always-authenticate signature, one "step=0xRV" per line. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <p11-kit/pkcs11.h>

int main(int argc, char **argv)
{
    CK_FUNCTION_LIST_PTR f;
    CK_C_GetFunctionList get;
    CK_SLOT_ID slots[16], slot = 0;
    CK_ULONG n = 16, found = 0, i, siglen;
    CK_TOKEN_INFO ti;
    CK_SESSION_HANDLE s;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_OBJECT_HANDLE key;
    CK_KEY_TYPE kt;
    CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
    unsigned char digest[32] = { 1 }, sig[1024];
    void *h;

    if (argc != 5 || (h = dlopen(argv[1], RTLD_NOW)) == NULL)
        return 2;
    get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
    if (get == NULL || get(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK ||
        f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        return 3;
    for (i = 0; i < n; i++)
        if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
            strncmp((char *)ti.label, argv[2], strlen(argv[2])) == 0 &&
            ti.label[strlen(argv[2])] == ' ') {
            slot = slots[i];
            found = 1;
        }
    if (!found || f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
        return 4;
    printf("login_user=0x%lx\n", f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)argv[3], strlen(argv[3])));
    CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_LABEL, argv[4], strlen(argv[4]) } };
    CK_ATTRIBUTE q[] = { { CKA_KEY_TYPE, &kt, sizeof kt } };
    if (f->C_FindObjectsInit(s, t, 2) != CKR_OK || f->C_FindObjects(s, &key, 1, &found) != CKR_OK ||
        f->C_FindObjectsFinal(s) != CKR_OK || found != 1 ||
        f->C_GetAttributeValue(s, key, q, 1) != CKR_OK)
        return 5;
    if (kt == CKK_RSA)
        mech.mechanism = CKM_RSA_PKCS;
    printf("sign_init=0x%lx\n", f->C_SignInit(s, &mech, key));
    siglen = sizeof sig;
    printf("sign_without_context_login=0x%lx\n", f->C_Sign(s, digest, sizeof digest, sig, &siglen));
    printf("sign_init_again=0x%lx\n", f->C_SignInit(s, &mech, key));
    printf("context_login_wrong_pin=0x%lx\n",
           f->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)"99999999", 8));
    printf("context_login=0x%lx\n",
           f->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)argv[3], strlen(argv[3])));
    siglen = sizeof sig;
    printf("sign=0x%lx\n", f->C_Sign(s, digest, sizeof digest, sig, &siglen));
    printf("sign_init_third=0x%lx\n", f->C_SignInit(s, &mech, key));
    siglen = sizeof sig;
    printf("sign_third_without_context_login=0x%lx\n", f->C_Sign(s, digest, sizeof digest, sig, &siglen));
    f->C_Logout(s);
    f->C_CloseSession(s);
    f->C_Finalize(NULL);
    return 0;
}
EOF
    # shellcheck disable=SC2046
    "$cc" -o "$t/aa" "$t/aa.c" $(pkg-config --cflags p11-kit-1) -ldl || fail "cannot build the probe"
    for label in qual-p384 qual-rsa2048-aa; do
        "$t/aa" "$M" "$QES_TOKEN_B_LABEL" "$QES_TOKEN_B_PIN" "$label" > "$t/aa.out" \
            || fail "probe failed on $label"
        expect_eq "$(tr '\n' ' ' < "$t/aa.out")" "login_user=0x0 sign_init=0x0 sign_without_context_login=0x101 sign_init_again=0x0 context_login_wrong_pin=0xa0 context_login=0x0 sign=0x0 sign_init_third=0x0 sign_third_without_context_login=0x101 " \
            "always-authenticate sequence on $label"
    done
    "$t/aa" "$M" "$QES_TOKEN_B_LABEL" "$QES_TOKEN_B_PIN" qual-rsa3072 > "$t/aa.out" || fail "probe failed"
    expect_contains "$t/aa.out" "sign_without_context_login=0x0"
    expect_contains "$t/aa.out" "context_login=0x91"
    ok "SoftHSM2 enforces CKA_ALWAYS_AUTHENTICATE: C_Sign without CKU_CONTEXT_SPECIFIC login -> CKR_USER_NOT_LOGGED_IN"
else
    ok "# skipped the always-authenticate probe (no C compiler or p11-kit headers)"
fi
