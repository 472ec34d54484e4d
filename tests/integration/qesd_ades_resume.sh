#!/usr/bin/env bash
# qesd_ades_resume.sh - a document job that the signer has signed survives
# an unreachable TSA and a qesd restart, and is finished afterwards
# (jobs_ades.c): the finisher leaves it signed while the TSA cannot be
# reached, the restart recovery and the agent's closed session leave it
# alone, and the restarted qesd - now with a TSA that answers - completes it
# at its first scan; the result is a CAdES B-T that openssl accepts, handed
# out once.
#
# Real parts: qesd (TLS 1.3, SQLite, documents sealed with
# document_key_file), an enrolled qes-agent on SoftHSM2 behind the scripted
# pinentry, the test PKI's TSA (tests/pki_services.sh).
. "$(dirname -- "$0")/../lib.sh"
. "$QES_SOURCE_DIR/tests/pki_services.sh"
. "$QES_SOURCE_DIR/tests/ades_checks.sh"

ades_gateway_setup
qes_need curl openssl python3
. "$QES_SOURCE_DIR/tests/qesd.sh"

cat "$P/issuing-ca.pem" "$P/root-ca.pem" >trust.pem
openssl rand -hex 32 >doc.key
chmod 600 doc.key
DOWN=$(qes_free_port)
cat >ades.conf <<EOF
document_key_file = $T/doc.key
chain_file = $T/trust.pem
tsa_url = http://127.0.0.1:$DOWN/tsa
tsa_ca_file = $P/root-ca.pem
EOF
qesd_with_agent ades-resume ades.conf
ok "qesd with documents on and a TSA nobody answers for; agent enrolled; credential $CRED"

jget() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

MARKER="resume-marker-$(openssl rand -hex 8)"
{ printf '%s\n' "$MARKER"; head -c 5000 /dev/urandom; } >doc.bin
python3 - "$CRED" <<'EOF' >req.json
import base64, json, sys
print(json.dumps({"credential_id": sys.argv[1], "format": "cades", "level": "B-T",
                  "document": base64.b64encode(open("doc.bin", "rb").read()).decode(),
                  "document_name": "doc.bin", "title": "Resume after a restart"}))
EOF
call "$KEY" POST /v1/signatures "$(cat req.json)"
expect_eq "$CODE" 202 "POST /v1/signatures (CAdES B-T)"
ID=$(jget "$BODY" 'v["id"]')

# the signer signs; the TSA is out of reach: the job rests in signed
poll_job "$KEY" "$ID" 20 5 signed
st=$JOB_STATE
expect_eq "$st" signed "the job once the signer's value is in"
sleep 3
call "$KEY" GET "/v1/signatures/$ID"
expect_eq "$(jget "$BODY" 'v["state"]')" signed "the job while the TSA cannot be reached"
grep -q '"msg":"a signed document could not be finished yet' qesd.log ||
    fail "no log line about the finish being tried again"
call "$KEY" GET "/v1/signatures/$ID/result"
expect_problem 409 result_not_ready
ok "the TSA out of reach: the job stays signed (409 result_not_ready), the finish is tried again"

# restart with a TSA that answers
stop_qesd
sed -i "s#^tsa_url = .*#tsa_url = $QES_PKI_TSA_URL#" qesd.conf
start_qesd qesd.conf qesd.log
SERVER="https://localhost:$PORT"
poll_job "$KEY" "$ID" 20 5
st=$JOB_STATE
[ "$st" = completed ] || { cat "$BODY" >&2; tail -n 20 qesd.log >&2; fail "after the restart the job is $st"; }
expect_eq "$(jget "$BODY" 'v["result_url"]')" "/v1/signatures/$ID/result" "result_url"
grep -q '"reason":"gateway_restart"' qesd.log && fail "a job failed with gateway_restart"
call "$KEY" GET "/v1/signatures/$ID/result"
expect_eq "$CODE" 200 "GET .../result"
grep -qi '^content-type: application/pkcs7-signature' "$HDR" || fail "result Content-Type"
grep -qi '^content-disposition: attachment; filename="doc.bin.p7s"' "$HDR" || fail "result Content-Disposition"
cp "$BODY" doc.bin.p7s
openssl cms -verify -binary -inform DER -in doc.bin.p7s -content doc.bin \
    -CAfile "$P/root-ca.pem" -purpose any -out /dev/null 2>cms.err ||
    { cat cms.err >&2; fail "openssl cms rejects the result"; }
openssl cms -cmsout -print -inform DER -in doc.bin.p7s 2>/dev/null | grep -q "id-smime-aa-timeStampToken" ||
    fail "no signature timestamp in the result"
call "$KEY" GET "/v1/signatures/$ID/result"
expect_problem 410 result_gone
ok "restarted with a TSA: the signed job completed at the first scan, CAdES B-T accepted by openssl cms, handed out once (410 after)"

stop_qesd
[ "$(db_value "$T/qesd.db" "SELECT count(*) FROM job_documents")" = 0 ] ||
    fail "job_documents is not empty"
! grep -aq "$MARKER" qesd.db qesd.log agent.log 2>/dev/null || fail "the document's marker is in the database or a log"
ok "nothing of the document is left in the database or the logs"
