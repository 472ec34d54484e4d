#!/usr/bin/env bash
# integ_pinentry_tty — the Assuan client against a real pinentry: drives
# /usr/bin/pinentry-tty through libqes (tests/helpers/qes-pinentry-probe.c)
# in a tmux pane, types like a signer would and checks what came back.
#
#  1. a PIN with spaces: the description shows on the screen, the PIN does not
#     (pinentry-tty turns echo off), and the probe reports its length and the
#     SHA-256 prefix of exactly what was typed;
#  2. Ctrl-D at the prompt: pinentry-tty 1.2.1 reads the PIN in canonical mode,
#     so Ctrl-D on an empty line is EOF, which it answers with GPG_ERR_CANCELED
#     ("cancelled"). An empty Enter is NOT a cancel: it returns an empty PIN;
#  3. Ctrl-C while the caller ignores SIGINT: pinentry-tty catches SIGINT and
#     answers GPG_ERR_FULLY_CANCELED, which must map to "cancelled" too. (With
#     SIGINT at its default, Ctrl-C kills the whole foreground process group,
#     the caller included.)
# A private tmux server (socket in the test's temp dir) is killed at exit.
. "$(dirname -- "$0")/../lib.sh"

PINENTRY_TTY=${QES_PINENTRY_TTY:-/usr/bin/pinentry-tty}
probe=$QES_BUILD_DIR/tests/qes-pinentry-probe
command -v tmux >/dev/null || { echo "# skip: tmux is not installed"; exit 0; }
[ -x "$PINENTRY_TTY" ] || { echo "# skip: no $PINENTRY_TTY"; exit 0; }
[ -x "$probe" ] || fail "no $probe: build the tests first"

qes_tmpdir >/dev/null
t=$QES_TMP
sock=$t/tmux.sock
tm() { tmux -S "$sock" -f /dev/null "$@"; }
qes_on_exit "tmux -S '$sock' kill-server"

# start_probe TITLE DESCRIPTION PROMPT [ignore-int]: run the probe in a fresh
# 120x40 pane; its stdin is the pane's terminal, so libqes passes that to the
# pinentry as OPTION ttyname. Output goes to $t/out, the exit code to $t/rc.
start_probe() {
    tm kill-server 2>/dev/null || true
    rm -f -- "$t/out" "$t/err" "$t/rc"
    {
        echo 'unset GPG_TTY DISPLAY WAYLAND_DISPLAY QES_PINENTRY'
        [ "${4:-}" = ignore-int ] && echo "trap '' INT"
        printf '%q %q %q %q %q >%q 2>%q\n' "$probe" "$PINENTRY_TTY" \
            "$1" "$2" "$3" "$t/out" "$t/err"
        printf 'echo $? >%q\n' "$t/rc"
        echo 'exec sleep 60'
    } > "$t/run.sh"
    tm new-session -d -s pe -x 120 -y 40 "bash $(printf %q "$t/run.sh")"
}

# wait_screen TEXT: poll the pane until TEXT shows (at most 5 s).
wait_screen() {
    local i
    for ((i = 0; i < 50; i++)); do
        tm capture-pane -p -t pe > "$t/screen" 2>/dev/null || true
        grep -qF -- "$1" "$t/screen" && return 0
        sleep 0.1
    done
    cat -- "$t/screen" >&2
    fail "the screen never showed '$1'"
}

# wait_done: wait (at most 5 s) for the probe to exit; print its exit code.
wait_done() {
    local i
    for ((i = 0; i < 50; i++)); do
        [ -s "$t/rc" ] && { cat -- "$t/rc"; return 0; }
        sleep 0.1
    done
    cat -- "$t/err" >&2 || true
    fail "the probe did not finish"
}

desc="Sign contract-2024-17.pdf for ACME GmbH, verification code 4711"
prompt="PIN for eToken 5110:"

# ---------------------------------------------------------------- PIN entered
pin='correct horse 42'
start_probe "qes signature" "$desc" "$prompt"
wait_screen "$prompt"
expect_contains "$t/screen" "$desc"
tm send-keys -t pe -l "$pin"
tm send-keys -t pe Enter
rc=$(wait_done)
expect_eq "$rc" 0 "probe exit code"
want=$(printf '%s' "$pin" | sha256sum | cut -c1-8)
expect_eq "$(cat -- "$t/out")" "pin-length=${#pin} sha256-prefix=$want" "probe output"
tm capture-pane -p -t pe > "$t/screen"
expect_not_contains "$t/screen" "$pin"
expect_not_contains "$t/out" "$pin"
ok "pinentry-tty: description shown, typed PIN returned intact and not echoed"

# ---------------------------------------------------------------- Ctrl-D
start_probe "qes signature" "$desc" "$prompt"
wait_screen "$prompt"
tm send-keys -t pe C-d
rc=$(wait_done)
expect_eq "$rc" 2 "probe exit code after Ctrl-D"
expect_eq "$(cat -- "$t/out")" "cancelled" "probe output after Ctrl-D"
ok "pinentry-tty: Ctrl-D at the prompt cancels (QES_ERR_CANCELLED)"

# ---------------------------------------------------------------- empty Enter
start_probe "qes signature" "$desc" "$prompt"
wait_screen "$prompt"
tm send-keys -t pe Enter
rc=$(wait_done)
expect_eq "$rc" 0 "probe exit code after an empty Enter"
want=$(printf '' | sha256sum | cut -c1-8)
expect_eq "$(cat -- "$t/out")" "pin-length=0 sha256-prefix=$want" "probe output"
ok "pinentry-tty: an empty Enter is an empty PIN, not a cancel"

# ---------------------------------------------------------------- Ctrl-C
start_probe "qes signature" "$desc" "$prompt" ignore-int
wait_screen "$prompt"
tm send-keys -t pe C-c
rc=$(wait_done)
expect_eq "$rc" 2 "probe exit code after Ctrl-C"
expect_eq "$(cat -- "$t/out")" "cancelled" "probe output after Ctrl-C"
ok "pinentry-tty: Ctrl-C (GPG_ERR_FULLY_CANCELED) cancels too"
