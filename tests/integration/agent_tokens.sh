#!/usr/bin/env bash
# qes-agent tokens / diagnose against real SoftHSM2 tokens: every token and
# certificate is listed and classified, the locked token is reported as
# locked, a module that fails to load is reported while the others keep
# working, and --help / exit codes behave as documented.
source "$QES_SOURCE_DIR/tests/lib.sh"
dir=$(qes_tmpdir)
qes_private_tokens "$dir/tokens"

M=$QES_TEST_MODULE
"$QES_AGENT" tokens --module "$M" --only-module >"$dir/tokens.txt"
for label in "$QES_TOKEN_A_LABEL" "$QES_TOKEN_B_LABEL" "$QES_TOKEN_LOCKED_LABEL"; do
  expect_contains "$dir/tokens.txt" "token \"$label\""
done
expect_contains "$dir/tokens.txt" "serial $QES_TOKEN_A_SERIAL"
ok "tokens lists all three tokens"

"$QES_AGENT" tokens --json --module "$M" --only-module >"$dir/tokens.json"
python3 - "$dir/tokens.json" "$QES_TOKEN_A_SERIAL" "$QES_TOKEN_B_SERIAL" "$QES_TOKEN_LOCKED_SERIAL" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
a, b, l = sys.argv[2:5]
toks = {t.get("serial"): t for t in doc["tokens"] if t["present"]}
assert set([a, b, l]) <= set(toks), toks.keys()
def certs(serial):
    return {c["id"]: c for c in toks[serial]["certificates"]}
ca = certs(a)
want = {"01": "qualified", "02": "qualified", "03": "authentication",
        "04": "expired", "05": "qualified"}
for cid, cls in want.items():
    assert ca[cid]["classification"] == cls, (cid, ca[cid]["classification"])
q = ca["01"]
assert q["key_type"] == "RSA" and q["key_bits"] == 2048, q
assert "nonRepudiation" in q["key_usage"], q
assert q["qc_statements"] == ["QcCompliance", "QcSSCD", "QcType-esign"], q
assert q["qcp_n_qscd"] is True
assert ca["02"]["curve"] == "P-256" and ca["02"]["key_bits"] == 256
assert ca["03"]["qc_statements"] == []
cb = certs(b)
assert cb["11"]["key_bits"] == 3072 and cb["11"]["classification"] == "qualified"
assert cb["12"]["curve"] == "P-384"
assert toks[l]["flags"]["user_pin_locked"] is True
assert toks[a]["flags"]["user_pin_locked"] is False
assert toks[a]["flags"]["login_required"] is True
mechs = {m["name"] for m in toks[a]["mechanisms"]}
assert {"CKM_RSA_PKCS", "CKM_RSA_PKCS_PSS", "CKM_ECDSA"} <= mechs, mechs
for c in ca.values():
    assert c["credential"] == a + ":" + c["id"]
mods = doc["modules"]
assert len(mods) == 1 and mods[0]["loaded"] and mods[0]["cryptoki_version"].startswith("2.")
PY
ok "tokens --json classifies every certificate and reports flags and mechanisms"

"$QES_AGENT" diagnose --module "$M" --only-module >"$dir/diag.txt"
expect_contains "$dir/diag.txt" "verdict: $QES_TOKEN_A_LABEL: ready to sign"
expect_contains "$dir/diag.txt" "verdict: $QES_TOKEN_B_LABEL: ready to sign"
expect_contains "$dir/diag.txt" "verdict: $QES_TOKEN_LOCKED_LABEL: PIN locked"
expect_contains "$dir/diag.txt" "OpenSSL 3"
expect_contains "$dir/diag.txt" "cryptoki 2.40"
"$QES_AGENT" diagnose --json --module "$M" --only-module >"$dir/diag.json"
python3 - "$dir/diag.json" "$QES_TOKEN_LOCKED_SERIAL" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["system"]["agent_version"] and doc["system"]["openssl_version"].startswith("OpenSSL 3")
v = {t.get("serial"): t["verdict"] for t in doc["tokens"] if t["present"] and t.get("serial")}
assert any(t["verdict"] == "not_initialized" for t in doc["tokens"]), "SoftHSM2 free slot"
assert v[sys.argv[2]] == "pin_locked", v
assert sorted(set(v.values())) == ["pin_locked", "ready"], v
PY
ok "diagnose gives a verdict per token"

# A module that cannot be loaded is reported; the good one still works.
printf 'not an ELF file\n' >"$dir/broken.so"
"$QES_AGENT" tokens --module "$dir/broken.so" --module /nonexistent/libnothing.so \
  --module "$M" --only-module >"$dir/mixed.txt"
expect_contains "$dir/mixed.txt" "module $dir/broken.so"
expect_contains "$dir/mixed.txt" "not usable"
expect_contains "$dir/mixed.txt" "token \"$QES_TOKEN_A_LABEL\""
"$QES_AGENT" tokens --json --module /nonexistent/libnothing.so --module "$M" --only-module \
  >"$dir/mixed.json"
python3 - "$dir/mixed.json" <<'PY'
import json, sys
mods = json.load(open(sys.argv[1]))["modules"]
assert mods[0]["loaded"] is False and mods[0]["error"] == "module_load_failed", mods[0]
assert mods[1]["loaded"] is True
PY
ok "a broken module is reported and the others keep working"

# Module discovery without --only-module finds p11-kit's registered modules.
"$QES_AGENT" tokens --json >"$dir/all.json"
python3 - "$dir/all.json" <<'PY'
import json, sys
mods = json.load(open(sys.argv[1]))["modules"]
assert any(m["source"] in ("p11-kit", "well-known") for m in mods), mods
assert len({m["path"] for m in mods}) == len(mods), "a module is listed twice"
PY
ok "registered and well-known modules are discovered, each once"

# --help everywhere, documented exit codes
for c in "" "tokens" "diagnose"; do
  "$QES_AGENT" $c --help >"$dir/help.txt"
  expect_contains "$dir/help.txt" "usage: qes-agent"
done
"$QES_CLI" --help >"$dir/help.txt" && expect_contains "$dir/help.txt" "usage: qes"
"$QES_CLI" sign --help >"$dir/help.txt" && expect_contains "$dir/help.txt" "--raw"
rc=0; "$QES_AGENT" frobnicate 2>/dev/null || rc=$?
expect_eq "$rc" 2 "unknown command exits 2"
rc=0; "$QES_AGENT" tokens --bogus 2>/dev/null || rc=$?
expect_eq "$rc" 2 "unknown option exits 2"
ok "help and usage errors"
