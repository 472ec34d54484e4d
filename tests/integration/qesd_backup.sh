#!/usr/bin/env bash
# qesd_backup.sh - `qesd admin backup` of a serving qesd under load, and a
# restore from it (issue 6, "Recovery").
#
# Real parts: qesd (TLS 1.3, SQLite), qes-agent enrolled and running against
# a private copy of the SoftHSM2 tokens with the scripted pinentry, curl as
# the relying party, the qes CLI for the audit export.
#
# The load while the backup runs: a loop creating API keys (each a key row
# and audit records) and reading the audit log, and a loop submitting
# signature jobs that the agent signs; the fifth job's dialog is held open
# (the pinentry sleeps), so the backup holds completed jobs, a job awaiting
# the signer and queued jobs. The backup is taken in small steps with
# pauses (--step-pages 2 --pause-ms 30), so it spans a second of the
# writers' commits: they must go on meanwhile, and the copy must still be
# one consistent snapshot (its audit chain verifies, every key acknowledged
# before it is in it).
#
# Then everything stops, and qesd starts on a copy of the backup: every job
# is in a definite state (restart recovery ends the in-flight ones as
# failed: gateway_restart), every API key acknowledged before the backup
# started is there, GET /v1/audit/verify and `qes audit export` + `qes audit
# verify` accept the chain. Also: the backup file is 0600, no temporary file
# is left, the copy passes PRAGMA integrity_check, and the refusals (a
# PostgreSQL store, the database itself, a directory, no database, not a
# qesd database, a bad --step-pages) each have their exit status and
# message; a backup with no server running replaces an older backup file.
# No PIN in any log, in the backup or in the restored database.
. "$(dirname -- "$0")/../lib.sh"

T=$(qes_tmpdir)
QESD=$QES_BUILD_DIR/qesd
CA=$QES_PKI/root-ca.pem
. "$(dirname -- "$0")/../qesd.sh"
[ -x "$QESD" ] || fail "no qesd binary at $QESD"
for tool in curl openssl python3 sqlite3; do
    command -v "$tool" >/dev/null || fail "$tool is needed"
done
[ -f "$QES_PKI/root-ca.key" ] || fail "no test PKI in $QES_PKI"
qes_private_tokens "$T/tokens"
PE=$QES_BUILD_DIR/tests/qes-test-pinentry
mkdir -p "$T/resp" "$T/load" "$T/restore"

qesd_tls_files "$T"
DB=$T/qesd.db
BACKUP=$T/backup/qesd-backup.db
mkdir -p "$T/backup"

# conf FILE STORE LISTEN
conf() {
    cat > "$1" <<EOF
listen = $3
tls_cert = $T/server.pem
tls_key = $T/server.key
pepper_file = $T/pepper
store = $2
server_name = localhost
workers = 4
drain_timeout_s = 3
agent_ping_interval_s = 5
agent_dead_after_s = 15
rate_ip_per_s = 1000
rate_ip_burst = 10000
rate_key_per_s = 1000
rate_key_burst = 10000
EOF
}
conf "$T/qesd.conf" "sqlite:$DB" "127.0.0.1:$(qes_free_port)"

# ---------------------------------------------------------------------------
# The refusals, before there is a server.
# admin_backup NAME WANT-RC [ARGS...]: qesd admin backup with the config
admin_backup() {
    local name=$1 want=$2 rc=0
    shift 2
    qes_run_checked "$QESD" admin --config "$T/qesd.conf" backup "$@" \
        > "$T/$name.out" 2> "$T/$name.err" || rc=$?
    [ "$rc" = "$want" ] || { cat "$T/$name.out" "$T/$name.err" >&2;
        fail "qesd admin backup ($name): exit status $rc, expected $want"; }
}
admin_backup nodb 5 "$BACKUP"
expect_contains "$T/nodb.err" "no database at $DB"
[ -e "$DB" ] && fail "backup of a missing database created it"
"$QESD" admin --config "$T/qesd.conf" tenant create backup-co > "$T/tenant.out" 2> "$T/tenant.err" ||
    { cat "$T/tenant.err" >&2; fail "tenant create"; }
ADMIN_KEY=$(awk '$1 == "api_key:" { print $2 }' "$T/tenant.out")
QESD_STORE=postgres:postgresql://localhost/qesd admin_backup pg 3 "$BACKUP"
expect_contains "$T/pg.err" "pg_dump"
admin_backup self 2 "$DB"
expect_contains "$T/self.err" "is the database itself"
admin_backup dir 2 "$T/backup"
expect_contains "$T/dir.err" "not a regular file"
admin_backup steps 2 "$BACKUP" --step-pages 0
admin_backup steps2 2 "$BACKUP" --step-pages 70000
admin_backup steps3 2 "$BACKUP" --step-pages 12x
admin_backup pause 2 "$BACKUP" --pause-ms 10001
expect_contains "$T/pause.err" "--pause-ms wants a number from 0 to 10000"
printf 'not a database at all, just text that is long enough\n' > "$T/junk.db"
QESD_STORE=sqlite:$T/junk.db admin_backup junk 1 "$BACKUP"
expect_contains "$T/junk.err" "backup failed"
sqlite3 "$T/other.db" "CREATE TABLE t (x); INSERT INTO t VALUES (1);"
QESD_STORE=sqlite:$T/other.db admin_backup other 1 "$BACKUP"
expect_contains "$T/other.err" "is not a qesd database"
[ -e "$BACKUP" ] && fail "a refused backup left a file"
[ -z "$(ls "$T/backup")" ] || fail "a refused backup left $(ls "$T/backup")"
ok "refused: no database (5), a PostgreSQL store (3), the database itself, a directory, bad --step-pages or --pause-ms (2), not a qesd database (1); nothing left behind"

# ---------------------------------------------------------------------------
# qesd, a key, an enrolled agent.
start_qesd "$T/qesd.conf" "$T/qesd.log"
check 201 "a key for the test" "$ADMIN_KEY" POST /v1/api-keys \
    '{"name":"backup test","scopes":["sign","devices","audit"]}'
KEY=$(jget 'v["key"]')
check 201 "an enrollment code" "$KEY" POST /v1/enrollments '{}'
ENROLL_CODE=$(jget 'v["code"]')
CFG=$T/agent
enroll_agent "https://localhost:$PORT" "$ENROLL_CODE" "$CFG" "backup desktop"

export QES_TEST_PINENTRY_SCRIPT=$T/pinentry.script QES_TEST_PINENTRY_LOG=$T/pinentry.log
{
    for _ in 1 2 3 4; do echo "pin $QES_TOKEN_A_PIN"; done
    echo "sleep 60"                      # the fifth job: the signer hesitates
    for _ in $(seq 1 200); do echo "pin $QES_TOKEN_A_PIN"; done
} > "$QES_TEST_PINENTRY_SCRIPT"
start_agent "$CFG" "$PE"
wait_credential "$KEY"
ok "qesd serving, agent enrolled and connected, credential $CRED"

# ---------------------------------------------------------------------------
# Load: API keys and audit reads; signature jobs.
api_load() {
    local i=0 code id
    while [ ! -e "$T/stop" ]; do
        i=$((i + 1))
        code=$(curl -sS --cacert "$CA" -o "$T/load/key.json" -w '%{http_code}' \
            -H "Authorization: Bearer $ADMIN_KEY" -H 'Content-Type: application/json' \
            --data-binary "{\"name\":\"load $i\",\"scopes\":[\"audit\"]}" \
            "https://localhost:$PORT/v1/api-keys" 2>/dev/null) || code=000
        if [ "$code" = 201 ]; then
            id=$(grep -o '"id": *"[^"]*"' "$T/load/key.json" | head -n 1 | cut -d'"' -f4)
            echo "$id" >> "$T/keys.acked"
        else
            echo "key $i: $code" >> "$T/load.errors"
        fi
        curl -sS --cacert "$CA" -o /dev/null -H "Authorization: Bearer $KEY" \
            "https://localhost:$PORT/v1/audit?limit=5" 2>/dev/null || true
    done
}
D=$(printf 'a document' | openssl dgst -sha256 -binary | openssl base64 -A)
sign_load() {
    local i=0 code id
    while [ ! -e "$T/stop" ] && [ "$i" -lt 40 ]; do
        i=$((i + 1))
        code=$(curl -sS --cacert "$CA" -o "$T/load/job.json" -w '%{http_code}' \
            -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
            --data-binary "{\"credential_id\":\"$CRED\",\"digest_algorithm\":\"sha256\",\"digests\":[\"$D\"],\"title\":\"Backup load $i\",\"timeout_seconds\":120}" \
            "https://localhost:$PORT/v1/signatures" 2>/dev/null) || code=000
        if [ "$code" = 202 ]; then
            id=$(grep -o '"id": *"[^"]*"' "$T/load/job.json" | head -n 1 | cut -d'"' -f4)
            echo "$id" >> "$T/jobs.acked"
        else
            echo "job $i: $code" >> "$T/load.errors"
        fi
        sleep 0.3
    done
}
: > "$T/keys.acked"
: > "$T/jobs.acked"
api_load &
API_LOAD=$!
qes_on_exit "kill $API_LOAD"
sign_load &
SIGN_LOAD=$!
qes_on_exit "kill $SIGN_LOAD"

# wait for the held dialog (fifth job awaiting the signer) and two jobs after it
HELD=
for _ in $(seq 1 600); do
    if [ "$(wc -l < "$T/jobs.acked")" -ge 7 ]; then
        HELD=$(sed -n 5p "$T/jobs.acked")
        call "$KEY" GET "/v1/signatures/$HELD"
        [ "$CODE" = 200 ] && [ "$(jget 'v["state"]')" = awaiting_user ] && break
        HELD=
    fi
    sleep 0.1
done
[ -n "$HELD" ] || { tail -n 20 "$T/agent.log" >&2; cat "$BODY" >&2; fail "no job awaiting the signer"; }

KEYS_BEFORE=$(wc -l < "$T/keys.acked")
JOBS_BEFORE=$(wc -l < "$T/jobs.acked")
cp "$T/keys.acked" "$T/keys.before"
cp "$T/jobs.acked" "$T/jobs.before"
admin_backup live 0 "$BACKUP" --step-pages 2 --pause-ms 30
KEYS_DURING=$(( $(wc -l < "$T/keys.acked") - KEYS_BEFORE ))
[ "$KEYS_DURING" -gt 0 ] || fail "no API key was created while the backup ran: writers blocked?"
sleep 1                                  # the load goes on after the backup
touch "$T/stop"
wait "$API_LOAD" "$SIGN_LOAD" || true
STEPS=$(awk '$1 == "steps:" { print $2 }' "$T/live.out")
PAGES=$(awk '$1 == "pages:" { print $2 }' "$T/live.out")
[ "${STEPS:-0}" -gt 10 ] || fail "the backup took ${STEPS:-no} steps, expected many"
[ -s "$T/load.errors" ] && { cat "$T/load.errors" >&2; grep -qv ': 409$' "$T/load.errors" &&
    fail "load requests failed while the backup ran"; }
expect_eq "$(stat -c %a "$BACKUP")" 600 "backup file mode"
left=$(find "$T/backup" -mindepth 1 ! -name qesd-backup.db)
[ -z "$left" ] || fail "left beside the backup: $left"
expect_eq "$(sqlite3 "$BACKUP" 'PRAGMA integrity_check')" ok "integrity of the backup"
ok "backup under load: $PAGES pages in $STEPS steps, $(awk '$1 == "duration_ms:" { print $2 }' "$T/live.out") ms (longest step $(awk '$1 == "longest_step_ms:" { print $2 }' "$T/live.out") ms); $KEYS_BEFORE keys and $JOBS_BEFORE jobs acknowledged before it, $KEYS_DURING keys during it; mode 0600, integrity ok"

# what the backup holds, before qesd recovers it
sqlite3 "$BACKUP" "SELECT id, state FROM jobs ORDER BY created_at_ms" > "$T/jobs.backup"
python3 - "$T/jobs.backup" "$T/jobs.before" "$HELD" <<'EOF' || fail "jobs in the backup"
import sys
rows = dict(l.strip().split("|") for l in open(sys.argv[1]) if l.strip())
before = [l.strip() for l in open(sys.argv[2]) if l.strip()]
missing = [j for j in before if j not in rows]
assert not missing, "acknowledged before the backup, not in it: %s" % missing
states = list(rows.values())
assert states.count("completed") >= 4, states
assert rows[sys.argv[3]] == "awaiting_user", rows[sys.argv[3]]
open_ = [s for s in states if s not in ("completed", "failed", "cancelled", "expired")]
assert len(open_) >= 3, states          # held + queued behind it
print(" ".join("%s=%d" % (s, states.count(s)) for s in sorted(set(states))))
EOF
ok "the backup holds every job acknowledged before it: $(python3 -c '
import sys, collections
c = collections.Counter(l.strip().split("|")[1] for l in open(sys.argv[1]) if l.strip())
print(", ".join("%d %s" % (n, s) for s, n in sorted(c.items())))' "$T/jobs.backup")"

# ---------------------------------------------------------------------------
# Stop everything; qesd on the restored copy.
kill -TERM "$AGENT_PID" 2>/dev/null || true
for _ in $(seq 1 100); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$AGENT_PID" 2>/dev/null || true
wait "$AGENT_PID" 2>/dev/null || true
stop_qesd 30
LIVE_PORT=$PORT
cp "$BACKUP" "$T/restore/qesd.db"
chmod 600 "$T/restore/qesd.db"
conf "$T/restore.conf" "sqlite:$T/restore/qesd.db" "127.0.0.1:0"
start_qesd "$T/restore.conf" "$T/restore.log"
[ "$PORT" != "$LIVE_PORT" ] || true
ok "qesd starts on the restored backup"

# every job definite; the in-flight ones ended by the restart recovery
: > "$T/jobs.after"
while IFS='|' read -r id was; do
    check 200 "GET job $id" "$KEY" GET "/v1/signatures/$id"
    printf '%s %s %s %s\n' "$id" "$was" "$(jget 'v["state"]')" "$(jget 'v.get("reason", "")')" >> "$T/jobs.after"
done < "$T/jobs.backup"
python3 - "$T/jobs.after" <<'EOF' || fail "job states after the restore"
import sys
final = ("completed", "failed", "cancelled", "expired")
for line in open(sys.argv[1]):
    jid, was, now, reason = (line.split() + [""])[:4]
    assert now in final, (jid, was, now)
    if was in final:
        assert now == was, (jid, was, now)
    else:
        assert (now, reason) == ("failed", "gateway_restart"), (jid, was, now, reason)
EOF
ok "every job of the backup is final: completed ones kept, in-flight ones failed: gateway_restart"

# every API key acknowledged before the backup is in it, and works
sqlite3 "$T/restore/qesd.db" "SELECT id FROM api_keys" > "$T/keys.restored"
missing=$(grep -vxFf "$T/keys.restored" "$T/keys.before" || true)
[ -z "$missing" ] || fail "keys acknowledged before the backup but not in it: $missing"
# one snapshot from the copy's start: the keys created while it ran (a
# copy restarted on each change, or read page by page from a moving
# database, would hold them all) are not in it, apart from those created
# while `qesd admin` started, before its snapshot (well under half of them:
# the copy's pauses take a second)
RESTORED=$(sqlite3 "$T/restore/qesd.db" "SELECT count(*) FROM api_keys WHERE name LIKE 'load %'")
[ "$RESTORED" -le $((KEYS_BEFORE + KEYS_DURING / 2)) ] ||
    fail "the backup holds $RESTORED load keys; $KEYS_BEFORE were acknowledged before it started, $KEYS_DURING while it ran: not the snapshot of its start"
check 200 "the admin key on the restored store" "$ADMIN_KEY" GET /v1/api-keys
ok "all $KEYS_BEFORE API keys acknowledged before the backup are restored ($RESTORED load keys in the copy: the snapshot of its start)"

# the audit chain
check 200 "GET /v1/audit/verify" "$KEY" GET /v1/audit/verify
expect_eq "$(jget 'v["ok"]')" True "the restored audit chain verifies"
RECORDS=$(jget 'v["records"]')
export QES_SERVER="https://localhost:$PORT" QES_CA="$CA" QES_API_KEY="$KEY"
qes_run_checked "$QES_CLI" audit export --out "$T/export.jsonl" > "$T/export.out" 2> "$T/export.err" ||
    { cat "$T/export.err" >&2; fail "qes audit export"; }
qes_run_checked "$QES_CLI" audit verify "$T/export.jsonl" > "$T/verify.out" 2> "$T/verify.err" ||
    { cat "$T/verify.out" "$T/verify.err" >&2; fail "qes audit verify"; }
expect_contains "$T/verify.out" "audit chain OK"
grep -q "\"job_id\":\"$HELD\"" "$T/export.jsonl" || grep -q "$HELD" "$T/export.jsonl" ||
    fail "the held job is not in the restored audit log"
ok "the restored audit chain verifies: GET /v1/audit/verify ($RECORDS records) and qes audit export + verify"
stop_qesd 30

# a backup with no server running, over the previous backup file (renamed
# into place): the new file is the recovered database, no job open
QESD_STORE=sqlite:$T/restore/qesd.db admin_backup again 0 "$BACKUP"
expect_eq "$(sqlite3 "$BACKUP" "SELECT count(*) FROM jobs WHERE state NOT IN ('completed', 'failed', 'cancelled', 'expired')")" 0 \
    "open jobs in the backup of the recovered database"
expect_eq "$(stat -c %a "$BACKUP")" 600 "mode of the replaced backup"
left=$(find "$T/backup" -mindepth 1 ! -name qesd-backup.db)
[ -z "$left" ] || fail "left beside the backup: $left"
ok "a backup without a running server replaces the previous one ($(awk '$1 == "steps:" { print $2 }' "$T/again.out") step(s) of 256 pages)"

# no PIN anywhere
for f in "$T/qesd.log" "$T/restore.log" "$T/agent.log" "$BACKUP" "$T/export.jsonl" \
        "$T/live.out" "$T/live.err"; do
    ! grep -qaF -- "$QES_TOKEN_A_PIN" "$f" || fail "the PIN is in $f"
done
! sqlite3 "$T/restore/qesd.db" .dump | grep -qF -- "$QES_TOKEN_A_PIN" ||
    fail "the restored database's dump holds the PIN"
ok "no PIN in the logs, the backup or the export"
