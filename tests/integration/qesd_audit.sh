#!/usr/bin/env bash
# qesd_audit.sh - tenants, API keys and the audit trail end to end: the real
# qesd on 127.0.0.1 with real TLS, `qesd admin`, and the `qes keys` / `qes
# audit` commands.
#
#  - `qesd admin tenant create` prints a key once; the database never holds it
#  - `qes keys create/list/rotate/revoke`; scope and revocation refusals with
#    their exit codes; key files must be 0600
#  - every request the run makes appears in GET /v1/audit, exactly once
#  - `qes audit export` (several pages) passes `qes audit verify`; so does a
#    single JSON Lines page on its own
#  - one edited record in the SQLite file: GET /v1/audit/verify and an
#    offline verify of a fresh export both name exactly that seq; a deleted
#    record is named at the next seq
#  - `qesd admin purge --before` with records at an injected old date (the
#    test clock): the chain still verifies from its anchor, old client
#    addresses are erased
#  - the CLI refuses a server certificate from a foreign root and one for
#    another host name, with a TLS error (exit 11)
#  - no API key secret in the server log or the database
#
# TLS 1.2 refusal is covered by qesd_tls.sh. With QES_VALGRIND=1, qes and
# `qesd admin` run under valgrind (qes_run_checked), and so does the main
# `qesd serve` (its exit status after SIGTERM is checked).
. "$(dirname -- "$0")/../lib.sh"

T=$(qes_tmpdir)
QESD=$QES_BUILD_DIR/qesd
. "$(dirname -- "$0")/../qesd.sh"
[ -x "$QESD" ] || fail "no qesd binary at $QESD"
[ -x "$QES_CLI" ] || fail "no qes binary at $QES_CLI"
for tool in curl openssl python3 sqlite3; do
    command -v "$tool" >/dev/null || fail "$tool is needed"
done
[ -f "$QES_PKI/root-ca.key" ] || fail "no test PKI in $QES_PKI"

# ---------------------------------------------------------------------------
# Server certificates from the test PKI: a good one, one from the unrelated
# foreign root, one for a host name that is not ours.
# servercert NAME CA-BASENAME SAN
servercert() {
    local name=$1 ca=$2 san=$3
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$T/$name.key" -out "$T/$name.csr" -subj "/CN=qesd $name" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
        "$san" > "$T/$name.ext"
    openssl x509 -req -in "$T/$name.csr" -CA "$QES_PKI/$ca.pem" -CAkey "$QES_PKI/$ca.key" \
        -set_serial "0x$(openssl rand -hex 12)" -days 2 -extfile "$T/$name.ext" \
        -out "$T/$name.pem" 2>/dev/null
    chmod 600 "$T/$name.key"
}
servercert good root-ca "DNS:localhost,IP:127.0.0.1"
servercert foreign foreign-root "DNS:localhost,IP:127.0.0.1"
servercert wronghost root-ca "DNS:wrong.example"
openssl rand -hex 32 > "$T/pepper"
chmod 600 "$T/pepper"
echo 0 > "$T/clock"

export QESD_INSECURE_TESTING=1     # for insecure_testing_clock_file only
DAY_MS=86400000
OLD_OFFSET=$((-730 * DAY_MS))      # two years back

# write_config FILE CERT DB
write_config() {
    cat > "$1" <<EOF
# qesd_audit.sh
listen = 127.0.0.1:0
tls_cert = $T/$2.pem
tls_key = $T/$2.key
pepper_file = $T/pepper
store = sqlite:$T/$3
log_level = info
drain_timeout_s = 5
insecure_testing_clock_file = $T/clock
EOF
}
write_config "$T/qesd.conf" good qesd.db
qesd_conf "$T/qesd.conf"

# set_clock OFFSET_MS: move qesd's clock (the server re-reads within 100 ms)
set_clock() {
    echo "$1" > "$T/clock.new"
    mv "$T/clock.new" "$T/clock"
    sleep 0.3
}



# field NAME FILE: the value of a "name: value" line
field() { awk -v k="$1:" '$1 == k { print $2 }' "$2"; }

# admin OUT ARGS...: `qesd admin` with the test configuration
admin() {
    local out=$1
    shift
    qes_run_checked "$QESD" admin --config "$T/qesd.conf" "$@" > "$T/$out.out" 2> "$T/$out.err"
}

# run NAME EXPECTED-EXIT COMMAND...: stdout/stderr in $T/NAME.out/.err
run() {
    local name=$1 want=$2 rc=0
    shift 2
    qes_run_checked "$@" > "$T/$name.out" 2> "$T/$name.err" || rc=$?
    if [ "$rc" != "$want" ]; then
        cat "$T/$name.out" "$T/$name.err" >&2
        fail "$name: exit status $rc, expected $want"
    fi
}

# ---------------------------------------------------------------------------
# Tenants, created locally on the "server host".
admin acme tenant create acme || { cat "$T/acme.err" >&2; fail "tenant create"; }
ACME=$(field tenant_id "$T/acme.out")
ADMIN_KEY=$(field api_key "$T/acme.out")
[[ "$ACME" =~ ^ten_[a-z2-7]{26}$ ]] || fail "tenant id '$ACME'"
[[ "$ADMIN_KEY" =~ ^qes_key_[a-z2-7]{26}_[A-Za-z0-9_-]{43}$ ]] || fail "key format"
expect_eq "$(grep -c '^api_key: ' "$T/acme.out")" 1 "api_key lines"
expect_contains "$T/acme.err" "shown ONCE"
expect_not_contains "$T/acme.err" "$ADMIN_KEY"
rc=0
admin dup tenant create acme || rc=$?
expect_eq "$rc" 4 "exit status for a taken tenant name"
admin other tenant create other-co || fail "tenant create other-co"
OTHER=$(field tenant_id "$T/other.out")
OTHER_KEY=$(field api_key "$T/other.out")
set_clock "$OLD_OFFSET"
admin old tenant create old-co || fail "tenant create old-co"
set_clock 0
OLD=$(field tenant_id "$T/old.out")
OLD_KEY=$(field api_key "$T/old.out")
admin list tenant list || fail "tenant list"
for t in "$ACME" "$OTHER" "$OLD"; do expect_contains "$T/list.out" "$t"; done
ok "qesd admin tenant create prints the key once; list shows the tenants"

start_qesd "$T/qesd.conf" "$T/qesd.log"
ok "qesd started on 127.0.0.1:$PORT"
export QES_SERVER="https://localhost:$PORT" QES_CA="$QES_PKI/root-ca.pem"
unset QES_API_KEY

# Requests made in acme's name, counted for the audit check below.
N=0
printf '%s\n' "$ADMIN_KEY" > "$T/admin.key"
chmod 644 "$T/admin.key"
run keyfile644 1 "$QES_CLI" keys list --key-file "$T/admin.key"
expect_contains "$T/keyfile644.err" "accessible by group or others"
chmod 600 "$T/admin.key"
run nokey 2 "$QES_CLI" keys list
expect_contains "$T/nokey.err" "QES_API_KEY"
QES_SERVER="http://localhost:$PORT" QES_API_KEY="$ADMIN_KEY" run http 2 "$QES_CLI" keys list
expect_contains "$T/http.err" "https://"
ok "key file 0644 refused, no key refused, http:// refused (no request sent)"

run list1 0 "$QES_CLI" keys list --key-file "$T/admin.key"; N=$((N + 1))
expect_contains "$T/list1.out" "$(field key_id "$T/acme.out")"

run create_aud 0 "$QES_CLI" keys create --name auditor --scope audit --key-file "$T/admin.key"; N=$((N + 1))
AUD_ID=$(field key_id "$T/create_aud.out")
AUD_KEY=$(field api_key "$T/create_aud.out")
[[ "$AUD_KEY" =~ ^qes_${AUD_ID}_[A-Za-z0-9_-]{43}$ ]] || fail "new key format"
expect_contains "$T/create_aud.err" "shown ONCE"
expires=$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)
run create_sig 0 "$QES_CLI" keys create --name signer --scope sign,devices \
    --expires "$expires" --key-file "$T/admin.key"; N=$((N + 1))
SIG_ID=$(field key_id "$T/create_sig.out")
SIG_KEY=$(field api_key "$T/create_sig.out")
expect_contains "$T/create_sig.out" "scopes: sign,devices"
run badscope 2 "$QES_CLI" keys create --name x --scope root --key-file "$T/admin.key"
ok "qes keys create: keys printed once, unknown scope refused locally"

export QES_API_KEY="$ADMIN_KEY"
run list2 0 "$QES_CLI" keys list; N=$((N + 1))
for id in "$AUD_ID" "$SIG_ID"; do expect_contains "$T/list2.out" "$id"; done
run listjson 0 "$QES_CLI" keys list --json; N=$((N + 1))
python3 - "$T/listjson.out" <<'EOF' || fail "keys list --json"
import json, sys
d = json.load(open(sys.argv[1]))
assert len(d["keys"]) == 3, d
for k in d["keys"]:
    assert "key" not in k and "hash" not in k and "secret_hash" not in k, k
EOF
run rotate 0 "$QES_CLI" keys rotate "$SIG_ID" --grace 60; N=$((N + 1))
SIG_KEY2=$(field api_key "$T/rotate.out")
[ -n "$SIG_KEY2" ] && [ "$SIG_KEY2" != "$SIG_KEY" ] || fail "rotation printed no new key"
expect_contains "$T/rotate.out" "old_secret_valid_until:"
run revoke 0 "$QES_CLI" keys revoke "$SIG_ID"; N=$((N + 1))
expect_contains "$T/revoke.out" "revoked $SIG_ID"
run list3 0 "$QES_CLI" keys list; N=$((N + 1))
grep "$SIG_ID" "$T/list3.out" | grep -q revoked || fail "revoked key not shown as revoked"
ok "qes keys list/rotate/revoke"

QES_API_KEY="$AUD_KEY" run scope 10 "$QES_CLI" keys list; N=$((N + 1))
expect_contains "$T/scope.err" "qes: "
expect_contains "$T/scope.err" "urn:qes:problem:insufficient_scope, request id "
QES_API_KEY="$SIG_KEY2" run revoked 10 "$QES_CLI" keys list; N=$((N + 1))
expect_contains "$T/revoked.err" "urn:qes:problem:invalid_api_key"
run notfound 3 "$QES_CLI" keys revoke key_aaaaaaaaaaaaaaaaaaaaaaaaaa; N=$((N + 1))
expect_contains "$T/notfound.err" "urn:qes:problem:not_found"
ok "problems: insufficient scope and revoked key exit 10, unknown key exit 3"

export QES_API_KEY="$AUD_KEY"
run alist 0 "$QES_CLI" audit list; N=$((N + 1))
expect_contains "$T/alist.out" "tenant.created"
run alist2 0 "$QES_CLI" audit list --type key.created --json; N=$((N + 1))
python3 - "$T/alist2.out" "$ACME" <<'EOF' || fail "audit list --type key.created"
import json, sys
d = json.load(open(sys.argv[1]))
recs = d["records"]
assert len(recs) == 3, [r["seq"] for r in recs]   # admin's, auditor, signer
assert all(r["type"] == "key.created" and r["tenant_id"] == sys.argv[2] for r in recs)
EOF
run abad 2 "$QES_CLI" audit list --since yesterday; N=$((N + 1))
expect_contains "$T/abad.err" "urn:qes:problem:invalid_query"
ok "qes audit list, filtered, and a bad filter refused"

# ---------------------------------------------------------------------------
# Every request of the run is in the log, exactly once. The polls carry
# their own request ids and are left out of the count.
# audit_all KEY OUT: every record of KEY's tenant into OUT (JSON array)
POLL=0
audit_all() {
    local key=$1 out=$2 cursor="" code
    echo "[]" > "$out"
    while :; do
        POLL=$((POLL + 1))
        code=$(curl -sS --cacert "$QES_PKI/root-ca.pem" -H "Authorization: Bearer $key" \
            -H "X-Request-Id: poll-$POLL" -o "$T/page.json" -w '%{http_code}' \
            "https://localhost:$PORT/v1/audit?limit=1000${cursor:+&cursor=$cursor}")
        [ "$code" = 200 ] || { cat "$T/page.json" >&2; fail "GET /v1/audit: $code"; }
        cursor=$(python3 - "$T/page.json" "$out" <<'EOF'
import json, sys
page = json.load(open(sys.argv[1]))
acc = json.load(open(sys.argv[2]))
json.dump(acc + page["records"], open(sys.argv[2], "w"))
print(page["next_cursor"] or "")
EOF
)
        [ -n "$cursor" ] || break
    done
}
count_requests() {
    python3 - "$1" <<'EOF'
import json, sys
recs = json.load(open(sys.argv[1]))
ids = [r["request_id"] for r in recs
       if r["request_id"] is not None and not r["request_id"].startswith("poll-")]
assert len(ids) == len(set(ids)), "a request has two records"
for r in recs:
    if r["request_id"] is not None:
        assert r["route"] and r["method"] and r["status"], r
print(len(ids))
EOF
}
got=0
for i in $(seq 1 50); do
    audit_all "$AUD_KEY" "$T/all.json"
    got=$(count_requests "$T/all.json")
    [ "$got" -ge "$N" ] && break
    sleep 0.1
done
expect_eq "$got" "$N" "requests with an audit record"
python3 - "$T/all.json" "$ACME" <<'EOF' || fail "record contents"
import json, sys
recs = json.load(open(sys.argv[1]))
seqs = [r["seq"] for r in recs]
assert seqs == list(range(1, len(recs) + 1)), seqs
assert all(r["tenant_id"] == sys.argv[2] for r in recs)
types = {r["type"] for r in recs}
for t in ("tenant.created", "key.created", "key.rotated", "key.revoked",
          "api.request", "auth.failed"):
    assert t in types, (t, types)
EOF
ok "all $N requests of the run are in GET /v1/audit, once each"

audit_all "$OTHER_KEY" "$T/other.json"
python3 - "$T/other.json" "$OTHER" <<'EOF' || fail "other tenant's log"
import json, sys
recs = json.load(open(sys.argv[1]))
assert recs and all(r["tenant_id"] == sys.argv[2] for r in recs), recs
EOF
ok "another tenant sees only its own records"

# ---------------------------------------------------------------------------
# Export and offline verification.
run export 0 "$QES_CLI" audit export --out "$T/export.jsonl" --page-size 7
expect_eq "$(stat -c %a "$T/export.jsonl")" 600 "export file mode"
[ "$(wc -l < "$T/export.jsonl")" -gt 8 ] || fail "export spans fewer than two pages"
expect_eq "$(head -n 1 "$T/export.jsonl" | grep -c qes-audit-export)" 1 "one header"
expect_eq "$(grep -c qes-audit-export "$T/export.jsonl")" 1 "one header line"
run verify 0 "$QES_CLI" audit verify "$T/export.jsonl"
expect_contains "$T/verify.out" "audit chain OK: "
ls "$T"/export.jsonl.tmp* > /dev/null 2>&1 && fail "temporary export file left behind"
ok "qes audit export (several pages) passes qes audit verify"

# a single later JSON Lines page verifies on its own (its anchor is the cursor)
curl -sS --cacert "$QES_PKI/root-ca.pem" -H "Authorization: Bearer $AUD_KEY" \
    -H "Accept: application/x-ndjson" -D "$T/p1.hdr" -o "$T/p1.jsonl" \
    "https://localhost:$PORT/v1/audit?limit=4"
cursor=$(grep -i '^next-cursor:' "$T/p1.hdr" | tr -d '\r' | awk '{print $2}')
expect_eq "$cursor" 4 "Next-Cursor of the first page"
curl -sS --cacert "$QES_PKI/root-ca.pem" -H "Authorization: Bearer $AUD_KEY" \
    -o "$T/p2.jsonl" "https://localhost:$PORT/v1/audit?limit=4&format=jsonl&cursor=4"
run p1 0 "$QES_CLI" audit verify "$T/p1.jsonl"
run p2 0 "$QES_CLI" audit verify "$T/p2.jsonl"
expect_contains "$T/p2.out" "chain starts after anchor seq 4"
ok "JSON Lines pages verify on their own"

code=$(curl -sS --cacert "$QES_PKI/root-ca.pem" -H "Authorization: Bearer $AUD_KEY" \
    -o "$T/v.json" -w '%{http_code}' "https://localhost:$PORT/v1/audit/verify")
expect_eq "$code" 200 "GET /v1/audit/verify"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is True and d["anchor"]["seq"] == 0 and d["records"] == d["head_seq"], d' \
    "$T/v.json" || fail "verify report: $(cat "$T/v.json")"
ok "GET /v1/audit/verify: ok"

# ---------------------------------------------------------------------------
# Retention: old-co's first records are two years old (test clock). One
# request now, then one more at the old time, with a client address.
QES_API_KEY="$OLD_KEY" run oldnow 0 "$QES_CLI" keys list
set_clock "$OLD_OFFSET"
QES_API_KEY="$OLD_KEY" run oldold 0 "$QES_CLI" keys list
set_clock 0
sleep 0.5   # group commit
before=$(date -u -d '-365 days' +%Y-%m-%d)
admin purge purge --before "$before" || { cat "$T/purge.err" >&2; fail "purge"; }
grep "^$OLD " "$T/purge.out" > "$T/purge.line" || { cat "$T/purge.out" >&2; fail "no purge line for old-co"; }
expect_contains "$T/purge.line" "purged 2  addresses erased 1"
grep -q "^$ACME " "$T/purge.out" && fail "acme lost records to the purge"
code=$(curl -sS --cacert "$QES_PKI/root-ca.pem" -H "Authorization: Bearer $OLD_KEY" \
    -o "$T/vold.json" -w '%{http_code}' "https://localhost:$PORT/v1/audit/verify")
expect_eq "$code" 200 "verify after purge"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is True and d["anchor"]["seq"] == 2, d' \
    "$T/vold.json" || fail "verify after purge: $(cat "$T/vold.json")"
QES_API_KEY="$OLD_KEY" run oldexport 0 "$QES_CLI" audit export --out "$T/old.jsonl"
run oldverify 0 "$QES_CLI" audit verify "$T/old.jsonl"
expect_contains "$T/oldverify.out" "chain starts after anchor seq 2"
python3 - "$T/old.jsonl" <<'EOF' || fail "erased address"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
recs = {r["seq"]: r for r in lines[1:]}
assert 1 not in recs and 2 not in recs
assert "127.0.0.1" in (recs[3]["client_addr"] or ""), recs[3]
assert recs[4]["client_addr"] is None and recs[4]["addr_salt"] is None, recs[4]
assert recs[4]["addr_digest"] is not None
assert {r["type"] for r in recs.values()} >= {"audit.purged", "audit.addresses_erased"}
EOF
ok "purge --before an injected old date: anchor seq 2, chain verifies, old address erased"

# ---------------------------------------------------------------------------
# Tampering. Stop qesd, edit one record of acme, restart.
TAMPER=5
stop_qesd
db_drop_trigger "$T/qesd.db" audit_records audit_records_append_only
db_drop_trigger "$T/qesd.db" audit_records audit_records_delete_behind_anchor
orig=$(db_query "$T/qesd.db" "SELECT status FROM audit_records WHERE tenant_id = '$ACME' AND seq = $TAMPER")
[ -n "$orig" ] || fail "record $TAMPER has no status"
db_query "$T/qesd.db" "UPDATE audit_records SET status = 299 WHERE tenant_id = '$ACME' AND seq = $TAMPER"
start_qesd "$T/qesd.conf" "$T/qesd2.log"
export QES_SERVER="https://localhost:$PORT"

# verify_report FILE: GET /v1/audit/verify as acme's auditor into FILE
verify_report() {
    local code
    code=$(curl -sS --cacert "$QES_PKI/root-ca.pem" -H "Authorization: Bearer $AUD_KEY" \
        -o "$1" -w '%{http_code}' "https://localhost:$PORT/v1/audit/verify")
    expect_eq "$code" 200 "GET /v1/audit/verify (a report, also when broken)"
}
verify_report "$T/vt.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is False and d["first_broken_seq"] == int(sys.argv[2]) and d["reason"] == "hash mismatch", d' \
    "$T/vt.json" "$TAMPER" || fail "verify after an edit: $(cat "$T/vt.json")"
run texport 0 "$QES_CLI" audit export --out "$T/tampered.jsonl"
run tverify 9 "$QES_CLI" audit verify "$T/tampered.jsonl"
expect_contains "$T/tverify.out" "audit chain BROKEN at seq $TAMPER: hash mismatch"
ok "an edited record: server and offline verify both name seq $TAMPER"

# Undo the edit, delete a record instead.
DELETED=8
stop_qesd
db_query "$T/qesd.db" "UPDATE audit_records SET status = $orig WHERE tenant_id = '$ACME' AND seq = $TAMPER"
db_query "$T/qesd.db" "DELETE FROM audit_records WHERE tenant_id = '$ACME' AND seq = $DELETED"
start_qesd "$T/qesd.conf" "$T/qesd3.log"
export QES_SERVER="https://localhost:$PORT"
verify_report "$T/vd.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is False and d["first_broken_seq"] == int(sys.argv[2]) + 1 and d["reason"] == "seq gap", d' \
    "$T/vd.json" "$DELETED" || fail "verify after a delete: $(cat "$T/vd.json")"
run dexport 0 "$QES_CLI" audit export --out "$T/deleted.jsonl"
run dverify 9 "$QES_CLI" audit verify "$T/deleted.jsonl"
expect_contains "$T/dverify.out" "audit chain BROKEN at seq $((DELETED + 1)): seq gap"
ok "a deleted record: detected at seq $((DELETED + 1)) by both"

# ---------------------------------------------------------------------------
# The CLI's TLS checks: a certificate from a foreign root, one for another
# host name. Each on its own qesd.
# start_plain CONFIG LOG: another qesd, its pid and port in BAD_PID/BAD_PORT
start_plain() {
    local i
    "$QESD" serve --config "$1" 2> "$2" &
    BAD_PID=$!
    qes_on_exit "kill -KILL $BAD_PID"
    BAD_PORT=
    for i in $(seq 1 200); do
        BAD_PORT=$(grep -o '"port":[0-9]*' "$2" 2>/dev/null | head -n 1 | cut -d: -f2) || true
        [ -n "$BAD_PORT" ] && return 0
        sleep 0.05
    done
    fail "qesd with $1 did not start"
}
for bad in foreign wronghost; do
    write_config "$T/$bad.conf" "$bad" "$bad.db"
    qesd_conf "$T/$bad.conf"
    start_plain "$T/$bad.conf" "$T/$bad.log"
    QES_SERVER="https://localhost:$BAD_PORT" QES_API_KEY="$ADMIN_KEY" \
        run "tls_$bad" 11 "$QES_CLI" keys list
    expect_contains "$T/tls_$bad.err" "TLS: the server's certificate is not trusted"
    kill -TERM "$BAD_PID"
    wait "$BAD_PID" || true
done
expect_contains "$T/tls_foreign.err" "unable to get local issuer certificate"
expect_contains "$T/tls_wronghost.err" "subject name"
QES_CA="$T/missing.pem" QES_API_KEY="$ADMIN_KEY" run noca 3 "$QES_CLI" keys list
ok "TLS: foreign root and wrong host name refused (exit 11), missing CA file exit 3"

# ---------------------------------------------------------------------------
# No API key secret anywhere it must not be.
stop_qesd
db_dump "$T/qesd.db" > "$T/db.dump"
for key in "$ADMIN_KEY" "$AUD_KEY" "$SIG_KEY" "$SIG_KEY2" "$OTHER_KEY" "$OLD_KEY"; do
    secret=${key#qes_key_*_}
    for f in "$T"/qesd*.log "$T"/*.jsonl "$T"/all.json; do
        expect_not_contains "$f" "$secret"
    done
    grep -qaF -- "$secret" "$T/db.dump" "$T/qesd.db" "$T"/qesd.db-wal 2>/dev/null &&
        fail "the database holds an API key secret"
done
expect_not_contains "$T/qesd.log" "$(cat "$T/pepper")"
ok "no API key secret or pepper in the logs, exports or the database"

echo "qesd_audit: all checks passed"
