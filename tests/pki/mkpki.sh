#!/usr/bin/env bash
# mkpki.sh DIR — build a throw-away test PKI shaped like a real QTSP hierarchy.
#
# Every test and the demo sign with keys certified here, so the certificates carry
# the same extensions a real EU qualified certificate carries (ETSI EN 319 412-2/-5):
# nonRepudiation-only key usage, the QCP-n-qscd policy, and qcStatements with
# QcCompliance, QcSSCD, QcType=esign (plus QcPDS and the natural-person semantics
# identifier, which real QES certificates also carry).  The negatives (an
# authentication certificate, an expired one, a revoked one, one from a foreign root)
# have the same shape, so a validator can only tell them apart by the property that
# really differs.
#
#   root-ca            self-signed root, RSA-3072
#   ├─ issuing-ca      "qualified" issuing CA for natural persons, pathlen 0
#   │  ├─ qual-rsa2048 qual-rsa3072 qual-p256 qual-p384   qualified signers
#   │  ├─ auth-p256        authentication cert (clientAuth, no QC) of qual-p256's person
#   │  ├─ expired-rsa2048  qualified profile, expired a year ago
#   │  ├─ revoked-p256     qualified profile, revoked (keyCompromise) in CRL and index.txt
#   │  └─ ocsp             delegated OCSP responder (OCSPSigning, id-pkix-ocsp-nocheck)
#   └─ tsa             time-stamping unit (timeStamping EKU, critical)
#   foreign-root       unrelated self-signed root
#      └─ foreign-p256 qualified-looking signer
#
# The TSU certificate is issued by the root, not by the issuing CA: a QTSP runs its
# qualified time-stamping service as a separate trust service (its own Trusted List
# entry), so it never hangs below the CA that issues natural persons' certificates.
#
# The openssl `ca` databases live in DIR (index.txt is the issuing CA's), so later
#   cd DIR && openssl ocsp -index index.txt -CA issuing-ca.pem \
#       -rsigner ocsp.pem -rkey ocsp.key -port "$QES_PKI_OCSP_PORT"
# works, and tests can revoke more certificates with
#   cd DIR && openssl ca -config ca/issuing.cnf -revoke X.pem && \
#             openssl ca -config ca/issuing.cnf -gencrl -out X.crl
# (the ca/*.cnf files use paths relative to DIR; work on a copy of DIR for that).
#
# Signer certificates point (AIA caIssuers, CDP) at http://127.0.0.1:$QES_PKI_HTTP_PORT
# (default 18080; serve DIR there) and (AIA OCSP) at
# http://127.0.0.1:$QES_PKI_OCSP_PORT/ocsp (default 18081).  Both ports are recorded
# in DIR/pki.env.
#
# DIR is built in a sibling temporary directory and moved into place at the end, so
# DIR is either the complete old PKI or the complete new one.  An existing DIR is
# replaced only if a previous run of this script made it (marker .qes-test-pki);
# anything else is refused.  Test only: keys have no passphrase.
set -euo pipefail

usage() { echo "usage: $0 DIR" >&2; exit 2; }
[ $# -eq 1 ] && [ -n "$1" ] || usage
command -v openssl >/dev/null || { echo "mkpki: openssl not found" >&2; exit 1; }

out=$1
http_port=${QES_PKI_HTTP_PORT:-18080}
ocsp_port=${QES_PKI_OCSP_PORT:-18081}
http="http://127.0.0.1:${http_port}"
ocsp_url="http://127.0.0.1:${ocsp_port}/ocsp"
marker=.qes-test-pki

if [ -e "$out" ] && [ ! -e "$out/$marker" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    echo "mkpki: refusing to replace '$out': not empty and not made by mkpki.sh" >&2
    exit 1
fi
mkdir -p -- "$(dirname -- "$out")"
out=$(cd -- "$(dirname -- "$out")" && pwd)/$(basename -- "$out")
work=$(mktemp -d "$(dirname -- "$out")/.mkpki.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
cd -- "$work"

# ---------------------------------------------------------------------------
# Dates.  `openssl ca` takes explicit notBefore/notAfter (openssl 3.0's x509/req
# have no -not_before/-not_after), which is what lets the expired certificate be
# really expired while still inside its issuer's validity.
when() { date -u -d "$1" +%Y%m%d%H%M%SZ; }
ca_from=$(when '-3 years');  root_to=$(when '+20 years');  issuing_to=$(when '+10 years')
leaf_from=$(when '-1 day');  leaf_to=$(when '+2 years')
expired_from=$(when '-2 years'); expired_to=$(when '-1 year')

# ---------------------------------------------------------------------------
# Keys, generated in parallel (RSA-3072 dominates the run time).
genrsa() { openssl genpkey -quiet -algorithm RSA -pkeyopt "rsa_keygen_bits:$2" -out "$1.key"; }
genec()  { openssl genpkey -quiet -algorithm EC -pkeyopt "ec_paramgen_curve:$2" \
               -pkeyopt ec_param_enc:named_curve -out "$1.key"; }
pids=()
genrsa root-ca 3072 & pids+=($!)
genrsa issuing-ca 3072 & pids+=($!)
genrsa qual-rsa3072 3072 & pids+=($!)
genrsa qual-rsa2048 2048 & pids+=($!)
genrsa expired-rsa2048 2048 & pids+=($!)
genrsa tsa 2048 & pids+=($!)
genrsa ocsp 2048 & pids+=($!)
genec qual-p256 P-256 & pids+=($!)
genec qual-p384 P-384 & pids+=($!)
genec auth-p256 P-256 & pids+=($!)
genec revoked-p256 P-256 & pids+=($!)
genec foreign-root P-256 & pids+=($!)
genec foreign-p256 P-256 & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done

# ---------------------------------------------------------------------------
# CA configurations.  Paths are relative to DIR.
mkdir -p ca/issued
: > index.txt; : > ca/root-index.txt; : > ca/foreign-index.txt
echo 1000 > ca/issuing_ca-crlnumber; echo 1000 > ca/root_ca-crlnumber; echo 1000 > ca/foreign_ca-crlnumber

# Section shared by all three CAs; $1 = name, $2 = database, $3 = cert/key basename.
ca_section() {
    cat <<EOF
[ ca ]
default_ca = $1

[ $1 ]
database         = $2
new_certs_dir    = ./ca/issued
certificate      = ./$3.pem
private_key      = ./$3.key
crlnumber        = ./ca/$1-crlnumber
default_md       = sha256
default_crl_days = 30
policy           = policy_any
unique_subject   = no
preserve         = yes
copy_extensions  = none
rand_serial      = yes
utf8             = yes
string_mask      = utf8only
crl_extensions   = crl_ext

[ policy_any ]
commonName = supplied

[ req ]
distinguished_name = req_dn
string_mask        = utf8only
utf8               = yes
[ req_dn ]

[ crl_ext ]
authorityKeyIdentifier = keyid:always
EOF
}

# qcStatements (RFC 3739 / ETSI EN 319 412-5):
#   QCStatements ::= SEQUENCE OF QCStatement
#   QCStatement  ::= SEQUENCE { statementId OID, statementInfo ANY OPTIONAL }
# QcCompliance and QcSSCD carry no statementInfo; QcType's is SEQUENCE OF OID;
# QcPDS's is SEQUENCE OF PdsLocation { url IA5String, language PrintableString(2) };
# id-qcs-pkixQCSyntax-v2's is SemanticsInformation { semanticsIdentifier OID }.
qc_sections() {
    cat <<EOF
[ qcs ]
qcs1 = SEQUENCE:qcs_compliance
qcs2 = SEQUENCE:qcs_sscd
qcs3 = SEQUENCE:qcs_type
qcs4 = SEQUENCE:qcs_pds
qcs5 = SEQUENCE:qcs_semantics

[ qcs_compliance ]
statementId = OID:0.4.0.1862.1.1

[ qcs_sscd ]
statementId = OID:0.4.0.1862.1.4

[ qcs_type ]
statementId   = OID:0.4.0.1862.1.6
statementInfo = SEQUENCE:qcs_type_list
[ qcs_type_list ]
esign = OID:0.4.0.1862.1.6.1

[ qcs_pds ]
statementId   = OID:0.4.0.1862.1.5
statementInfo = SEQUENCE:qcs_pds_list
[ qcs_pds_list ]
en = SEQUENCE:qcs_pds_en
[ qcs_pds_en ]
url      = IA5STRING:$1/pds-en.pdf
language = PRINTABLESTRING:en

[ qcs_semantics ]
statementId   = OID:1.3.6.1.5.5.7.11.2
statementInfo = SEQUENCE:qcs_semantics_info
[ qcs_semantics_info ]
semanticsIdentifier = OID:0.4.0.194121.1.1
EOF
}

{
    ca_section root_ca ./ca/root-index.txt root-ca
    cat <<EOF

[ ext_root ]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash

[ ext_issuing ]
basicConstraints       = critical, CA:TRUE, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
certificatePolicies    = 2.5.29.32.0
authorityInfoAccess    = caIssuers;URI:$http/root-ca.cer
crlDistributionPoints  = URI:$http/root.crl

[ ext_tsa ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = critical, timeStamping
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
authorityInfoAccess    = caIssuers;URI:$http/root-ca.cer
crlDistributionPoints  = URI:$http/root.crl
EOF
} > ca/root.cnf

{
    ca_section issuing_ca ./index.txt issuing-ca
    cat <<EOF

[ ext_qual ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, nonRepudiation
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
certificatePolicies    = 0.4.0.194112.1.2
authorityInfoAccess    = caIssuers;URI:$http/issuing-ca.cer, OCSP;URI:$ocsp_url
crlDistributionPoints  = URI:$http/issuing-ca.crl
qcStatements           = ASN1:SEQUENCE:qcs

[ ext_auth ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
# NCP+ (ETSI EN 319 411-1): a policy, but not a qualified one.
certificatePolicies    = 0.4.0.2042.1.2
authorityInfoAccess    = caIssuers;URI:$http/issuing-ca.cer, OCSP;URI:$ocsp_url
crlDistributionPoints  = URI:$http/issuing-ca.crl

[ ext_ocsp ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = OCSPSigning
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
noCheck                = ignored

EOF
    qc_sections "$http"
} > ca/issuing.cnf

{
    ca_section foreign_ca ./ca/foreign-index.txt foreign-root
    cat <<EOF

[ ext_root ]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash

[ ext_qual ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, nonRepudiation
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
certificatePolicies    = 0.4.0.194112.1.2
authorityInfoAccess    = caIssuers;URI:$http/foreign-root.cer
qcStatements           = ASN1:SEQUENCE:qcs

EOF
    qc_sections "$http"
} > ca/foreign.cnf

# ---------------------------------------------------------------------------
# Certificates.
qtsp='/C=AT/O=QES Test Trust Services GmbH/organizationIdentifier=VATAT-U99999999'

# issue CNF EXT NAME SUBJECT FROM TO [extra ca args]
issue() {
    local cnf=$1 ext=$2 name=$3 subj=$4 from=$5 to=$6; shift 6
    openssl req -new -config "$cnf" -key "$name.key" -subj "$subj" -out "ca/$name.csr"
    openssl ca -batch -notext -config "$cnf" -extensions "$ext" -preserveDN \
        -rand_serial -startdate "$from" -enddate "$to" \
        -in "ca/$name.csr" -out "$name.pem" "$@" 2>ca/ca.log || { cat ca/ca.log >&2; exit 1; }
}

issue ca/root.cnf ext_root root-ca "$qtsp/CN=QES Test Root CA" "$ca_from" "$root_to" \
    -selfsign -keyfile root-ca.key
issue ca/root.cnf ext_issuing issuing-ca "$qtsp/CN=QES Test Qualified CA 1" \
    "$ca_from" "$issuing_to"
issue ca/root.cnf ext_tsa tsa "$qtsp/CN=QES Test Qualified TSU 1" "$leaf_from" "$leaf_to"

person() { echo "/C=AT/GN=$1/SN=$2/CN=$1 $2/serialNumber=PNOAT-$3"; }
issue ca/issuing.cnf ext_ocsp ocsp "$qtsp/CN=QES Test Qualified CA 1 OCSP Responder" \
    "$leaf_from" "$leaf_to"
issue ca/issuing.cnf ext_qual qual-rsa2048 "$(person Anna Huber 1000000001)" "$leaf_from" "$leaf_to"
issue ca/issuing.cnf ext_qual qual-rsa3072 "$(person Bernd Gruber 1000000002)" "$leaf_from" "$leaf_to"
issue ca/issuing.cnf ext_qual qual-p256 "$(person Clara Wagner 1000000003)" "$leaf_from" "$leaf_to"
issue ca/issuing.cnf ext_qual qual-p384 "$(person David Bauer 1000000004)" "$leaf_from" "$leaf_to"
# Same person as qual-p256: a signature card usually holds both certificates.
issue ca/issuing.cnf ext_auth auth-p256 "$(person Clara Wagner 1000000003)" "$leaf_from" "$leaf_to"
issue ca/issuing.cnf ext_qual expired-rsa2048 "$(person Franz Moser 1000000006)" \
    "$expired_from" "$expired_to"
issue ca/issuing.cnf ext_qual revoked-p256 "$(person Greta Hofer 1000000007)" "$leaf_from" "$leaf_to"

issue ca/foreign.cnf ext_root foreign-root \
    '/C=XX/O=Foreign Test Trust/CN=Foreign Root CA' "$ca_from" "$root_to" \
    -selfsign -keyfile foreign-root.key
issue ca/foreign.cnf ext_qual foreign-p256 "$(person Hans Lechner 1000000008)" \
    "$leaf_from" "$leaf_to"

openssl ca -batch -config ca/issuing.cnf -revoke revoked-p256.pem \
    -crl_reason keyCompromise 2>ca/ca.log || { cat ca/ca.log >&2; exit 1; }

# ---------------------------------------------------------------------------
# CRLs (DER is what the CDP serves, RFC 5280 4.2.1.13), DER copies of the CA
# certificates (what AIA caIssuers serves), chains and the trust bundle.
for c in root:ca/root.cnf issuing-ca:ca/issuing.cnf; do
    name=${c%%:*}
    openssl ca -batch -config "${c#*:}" -gencrl -out "$name.crl.pem" 2>ca/ca.log \
        || { cat ca/ca.log >&2; exit 1; }
    openssl crl -in "$name.crl.pem" -outform DER -out "$name.crl"
done
for c in root-ca issuing-ca foreign-root; do
    openssl x509 -in "$c.pem" -outform DER -out "$c.cer"
done

cat issuing-ca.pem root-ca.pem > issuing-chain.tmp
for n in qual-rsa2048 qual-rsa3072 qual-p256 qual-p384 auth-p256 expired-rsa2048 \
         revoked-p256 ocsp; do
    cp issuing-chain.tmp "$n-chain.pem"
done
rm issuing-chain.tmp
cp root-ca.pem issuing-ca-chain.pem
cp root-ca.pem tsa-chain.pem
cp foreign-root.pem foreign-p256-chain.pem
cp root-ca.pem trust.pem

cat > pki.env <<EOF
# Written by tests/pki/mkpki.sh; source it.
QES_PKI_HTTP_PORT=$http_port
QES_PKI_OCSP_PORT=$ocsp_port
QES_PKI_QUALIFIED="qual-rsa2048 qual-rsa3072 qual-p256 qual-p384"
QES_PKI_NEGATIVE="auth-p256 expired-rsa2048 revoked-p256 foreign-p256"
EOF
rm -f ca/*.csr ca/ca.log ./*.old ca/*.old
chmod 755 .
chmod 600 ./*.key
touch "$marker"

# ---------------------------------------------------------------------------
# Self-check: the properties the tests rely on.
check() { echo "mkpki: self-check failed: $*" >&2; exit 1; }
openssl verify -CAfile root-ca.pem -untrusted issuing-ca.pem \
    qual-rsa2048.pem qual-rsa3072.pem qual-p256.pem qual-p384.pem auth-p256.pem \
    ocsp.pem tsa.pem >/dev/null || check "qualified chain does not verify"
if openssl verify -CAfile root-ca.pem -untrusted issuing-ca.pem foreign-p256.pem \
        >/dev/null 2>&1; then check "foreign-p256 verifies against root-ca"; fi
if openssl x509 -in expired-rsa2048.pem -noout -checkend 0 >/dev/null; then
    check "expired-rsa2048 is not expired"
fi

cd /
rm -rf -- "$out"
mv -- "$work" "$out"
trap - EXIT
