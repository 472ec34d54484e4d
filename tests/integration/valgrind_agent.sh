#!/usr/bin/env bash
# The agent's commands are valgrind-clean: no invalid access and no leak
# (definite or indirect) in qes-agent tokens/diagnose and qes sign --raw
# against real SoftHSM2 tokens. Skipped in the sanitizer build, where ASan
# and LeakSanitizer do the same job.
source "$QES_SOURCE_DIR/tests/lib.sh"
if [ "${QES_SANITIZE:-0}" = 1 ]; then echo "skipped: sanitizer build"; exit 0; fi
command -v valgrind >/dev/null || fail "valgrind is not installed (scripts/deps.sh installs it)"
dir=$(qes_tmpdir)
qes_private_tokens "$dir/tokens"
M=$QES_TEST_MODULE
vg() {
  valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --show-leak-kinds=definite,indirect --error-exitcode=99 \
    --suppressions="$QES_SOURCE_DIR/tests/valgrind.supp" "$@"
}
vg "$QES_AGENT" tokens --module "$M" --only-module >/dev/null
ok "tokens is valgrind-clean"
vg "$QES_AGENT" diagnose --json --module "$M" --only-module >/dev/null
ok "diagnose is valgrind-clean"
vg "$QES_AGENT" tokens --module /nonexistent.so --module "$M" >/dev/null
ok "tokens with a broken module and discovery is valgrind-clean"
export QES_TEST_PINENTRY_SCRIPT=$dir/script QES_TEST_PINENTRY_LOG=$dir/log
printf 'pin 000000\npin %s\n' "$QES_TOKEN_A_PIN" >"$QES_TEST_PINENTRY_SCRIPT"
echo hello >"$dir/doc"
vg "$QES_CLI" sign --raw --module "$M" --only-module --pinentry "$QES_BUILD_DIR/tests/qes-test-pinentry" \
  --token "$QES_TOKEN_A_SERIAL" --key 01 --in "$dir/doc" --out "$dir/sig" >/dev/null
ok "sign (with one wrong PIN) is valgrind-clean"
