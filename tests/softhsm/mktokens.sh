#!/usr/bin/env bash
# mktokens.sh PKIDIR TOKDIR — SoftHSM2 tokens holding the test PKI's keys.
#
# SoftHSM2 is the real PKCS#11 token every test signs with.  It runs from a private
# configuration, TOKDIR/softhsm2.conf (token store TOKDIR/store, file backend), and
# never touches the system configuration or /var/lib/softhsm.  Keys come from
# tests/pki/mkpki.sh and are imported with pkcs11-tool as private key objects (CKA_SIGN,
# sensitive, private, not extractable), each with its public key and certificate under
# the same CKA_ID and label, as a signature card presents them:
#
#   qes-token-a       PIN 123456 / SO 12345678  01 qual-rsa2048  02 qual-p256
#                                               03 auth-p256     04 expired-rsa2048
#                                               05 foreign-p256
#   qes-token-b       PIN 654321 / SO 87654321  11 qual-rsa3072  12 qual-p384 (always-auth)
#                                               13 qual-rsa2048-aa (qual-rsa2048's key and
#                                                  certificate again, always-auth)
#   qes-token-locked  PIN 111111 / SO 11111111  02 qual-p256; token flags say
#                                               CKF_USER_PIN_LOCKED
#
# Labels are the PKI file names.  Private keys are CKA_PRIVATE, as on most QSCD
# middleware: without a login a caller sees certificates and public keys only (so
# not CKA_ALWAYS_AUTHENTICATE), and SoftHSM2 refuses C_SignInit (object handle
# invalid) until CKU_USER is logged in.  Private keys can only sign: SoftHSM2 defaults
# CKA_DECRYPT/CKA_UNWRAP/CKA_SIGN_RECOVER to true and pkcs11-tool does not clear
# them, so a small ctypes helper does.  Because the keys are imported, SoftHSM2 reports
# CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE false (a real QSCD generates its keys
# on the card and reports both true).
#
# SoftHSM2 never locks a PIN by itself, so the locked token is made by setting
# CKF_USER_PIN_LOCKED in the token flags SoftHSM2 persists (CKA_OS_TOKENFLAGS in the
# file backend's token.object) and reports from C_GetTokenInfo.  SoftHSM2 still
# accepts the right PIN on it: only code that checks the flag first notices the lock.
#
# TOKDIR/tokens.env (bash, `source` it) names the configuration, module, labels,
# serials, PINs and key ids.  TOKDIR is built in a sibling temporary directory and
# moved into place, so it is either the complete old set or the complete new one; an
# existing TOKDIR not made by this script (marker .qes-test-tokens) is refused.
set -euo pipefail

usage() { echo "usage: $0 PKIDIR TOKDIR" >&2; exit 2; }
[ $# -eq 2 ] && [ -n "$1" ] && [ -n "$2" ] || usage
die() { echo "mktokens: $*" >&2; exit 1; }
for tool in softhsm2-util pkcs11-tool openssl python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

pki=$(cd -- "$1" && pwd) || die "no PKI directory '$1'"
[ -e "$pki/.qes-test-pki" ] || die "'$pki' was not made by tests/pki/mkpki.sh"
out=$2
marker=.qes-test-tokens

# The SoftHSM2 module: $QES_TEST_MODULE if set, else the usual places.
find_module() {
    local m
    if [ -n "${QES_TEST_MODULE:-}" ]; then
        [ -f "$QES_TEST_MODULE" ] || die "QES_TEST_MODULE=$QES_TEST_MODULE does not exist"
        echo "$QES_TEST_MODULE"; return
    fi
    for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so \
             /usr/lib64/softhsm/libsofthsm2.so /usr/lib64/pkcs11/libsofthsm2.so \
             /usr/local/lib/softhsm/libsofthsm2.so /opt/homebrew/lib/softhsm/libsofthsm2.so; do
        [ -f "$m" ] && { echo "$m"; return; }
    done
    m=$(ldconfig -p 2>/dev/null | awk '/libsofthsm2\.so / { print $NF; exit }')
    [ -n "$m" ] && [ -f "$m" ] && { echo "$m"; return; }
    die "libsofthsm2.so not found (set QES_TEST_MODULE)"
}
module=$(find_module)

if [ -e "$out" ] && [ ! -e "$out/$marker" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    die "refusing to replace '$out': not empty and not made by mktokens.sh"
fi
mkdir -p -- "$(dirname -- "$out")"
out=$(cd -- "$(dirname -- "$out")" && pwd)/$(basename -- "$out")
work=$(mktemp -d "$(dirname -- "$out")/.mktokens.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

write_conf() {  # write_conf DIR: a configuration whose store is DIR/store
    cat > "$1/softhsm2.conf" <<EOF
# Written by tests/softhsm/mktokens.sh: a private SoftHSM2 configuration for tests.
directories.tokendir = $1/store
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
}
mkdir "$work/store" "$work/tmp"
write_conf "$work"
export SOFTHSM2_CONF="$work/softhsm2.conf"

# ---------------------------------------------------------------------------
# A few PKCS#11 calls pkcs11-tool cannot make (clear usage flags, read back
# attributes, report serials).  Python's ctypes against the module's own C_* exports.
p11py() {
    python3 - "$module" "$@" <<'PY'
import ctypes as C, sys

module, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
lib = C.CDLL(module)
UL = C.c_ulong
for fn in ("C_Initialize", "C_GetSlotList", "C_GetTokenInfo", "C_OpenSession",
           "C_Login", "C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal",
           "C_GetAttributeValue", "C_SetAttributeValue", "C_Logout", "C_Finalize"):
    getattr(lib, fn).restype = UL

class Attr(C.Structure):
    _fields_ = [("type", UL), ("value", C.c_void_p), ("length", UL)]

CKA_CLASS, CKA_LABEL, CKA_ID, CKA_PRIVATE = 0x0, 0x3, 0x102, 0x2
CKA_SENSITIVE, CKA_ENCRYPT, CKA_DECRYPT, CKA_WRAP, CKA_UNWRAP = 0x103, 0x104, 0x105, 0x106, 0x107
CKA_SIGN, CKA_SIGN_RECOVER, CKA_VERIFY, CKA_VERIFY_RECOVER, CKA_DERIVE = 0x108, 0x109, 0x10A, 0x10B, 0x10C
CKA_EXTRACTABLE, CKA_ALWAYS_AUTHENTICATE = 0x162, 0x202
CKO_PUBLIC_KEY, CKO_PRIVATE_KEY = 2, 3

def ck(rv, what):
    if rv:
        sys.exit("mktokens: %s failed: CKR 0x%x" % (what, rv))

def tokens():
    """(slot, label, serial, flags) of every initialised token."""
    n = UL(64)
    slots = (UL * 64)()
    ck(lib.C_GetSlotList(1, slots, C.byref(n)), "C_GetSlotList")
    out = []
    for s in slots[:n.value]:
        info = C.create_string_buffer(512)  # CK_TOKEN_INFO is 208 bytes on LP64
        ck(lib.C_GetTokenInfo(UL(s), info), "C_GetTokenInfo")
        flags = UL.from_buffer_copy(info.raw[96:104]).value
        if flags & 0x400:  # CKF_TOKEN_INITIALIZED
            out.append((s, info.raw[0:32].decode().rstrip(), info.raw[80:96].decode().rstrip(), flags))
    return out

def session(label, pin):
    for s, l, _, _ in tokens():
        if l == label:
            h = UL()
            ck(lib.C_OpenSession(UL(s), UL(6), None, None, C.byref(h)), "C_OpenSession")
            ck(lib.C_Login(h, UL(1), pin.encode(), UL(len(pin))), "C_Login")
            return h
    sys.exit("mktokens: no token '%s'" % label)

def find(h, cls):
    v = UL(cls)
    t = (Attr * 1)(Attr(CKA_CLASS, C.cast(C.byref(v), C.c_void_p), C.sizeof(v)))
    ck(lib.C_FindObjectsInit(h, t, UL(1)), "C_FindObjectsInit")
    objs, n = (UL * 64)(), UL()
    ck(lib.C_FindObjects(h, objs, UL(64), C.byref(n)), "C_FindObjects")
    ck(lib.C_FindObjectsFinal(h), "C_FindObjectsFinal")
    return list(objs[:n.value])

def set_false(h, obj, types):
    f = C.c_ubyte(0)
    t = (Attr * len(types))(*[Attr(a, C.cast(C.byref(f), C.c_void_p), 1) for a in types])
    ck(lib.C_SetAttributeValue(h, UL(obj), t, UL(len(types))), "C_SetAttributeValue")

def get(h, obj, a, size=64):
    buf = C.create_string_buffer(size)
    t = (Attr * 1)(Attr(a, C.cast(buf, C.c_void_p), size))
    ck(lib.C_GetAttributeValue(h, UL(obj), t, UL(1)), "C_GetAttributeValue")
    return buf.raw[:t[0].length]

ck(lib.C_Initialize(None), "C_Initialize")
if cmd == "serial":            # serial LABEL
    print([t[2] for t in tokens() if t[1] == args[0]][0])
elif cmd == "flags":           # flags LABEL
    print("0x%x" % [t[3] for t in tokens() if t[1] == args[0]][0])
elif cmd == "restrict":        # restrict LABEL PIN: keys sign/verify only; print them
    h = session(args[0], args[1])
    for o in find(h, CKO_PUBLIC_KEY):
        set_false(h, o, [CKA_ENCRYPT, CKA_WRAP, CKA_VERIFY_RECOVER, CKA_DERIVE])
    for o in find(h, CKO_PRIVATE_KEY):
        set_false(h, o, [CKA_DECRYPT, CKA_UNWRAP, CKA_SIGN_RECOVER, CKA_DERIVE])
        b = {n: get(h, o, a) == b"\x01" for n, a in (
            ("sign", CKA_SIGN), ("private", CKA_PRIVATE), ("sensitive", CKA_SENSITIVE),
            ("extractable", CKA_EXTRACTABLE), ("decrypt", CKA_DECRYPT),
            ("always_authenticate", CKA_ALWAYS_AUTHENTICATE))}
        if not (b["sign"] and b["private"] and b["sensitive"]) or b["extractable"] or b["decrypt"]:
            sys.exit("mktokens: key %s has wrong attributes %r" % (get(h, o, CKA_LABEL), b))
        print("%s %s always_authenticate=%d" % (get(h, o, CKA_ID).hex(),
              get(h, o, CKA_LABEL).decode(), b["always_authenticate"]))
    lib.C_Logout(h)
else:
    sys.exit("mktokens: p11py: unknown command " + cmd)
lib.C_Finalize(None)
PY
}

# Set CKF_USER_PIN_LOCKED in a token's persisted flags.  token.object is a u64
# generation counter followed by attributes, each u64 type, u64 kind, value (all
# big-endian); CKA_OS_TOKENFLAGS (0x8000534B) has kind 2 (unsigned long, u64 value).
lock_token() {  # lock_token TOKEN.OBJECT
    python3 - "$1" <<'PY'
import struct, sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
tag = struct.pack(">QQ", 0x8000534B, 2)
at = data.find(tag)
if at < 0 or data.find(tag, at + 1) >= 0:
    sys.exit("mktokens: CKA_OS_TOKENFLAGS not found exactly once in " + path)
at += len(tag)
flags = struct.unpack(">Q", data[at:at + 8])[0] | 0x00040000  # CKF_USER_PIN_LOCKED
data[at:at + 8] = struct.pack(">Q", flags)
open(path, "wb").write(data)
PY
}

p11() {  # p11 ARGS...: pkcs11-tool, quiet unless it fails
    pkcs11-tool --module "$module" "$@" >"$work/p11.log" 2>&1 \
        || { cat "$work/p11.log" >&2; die "pkcs11-tool $* failed"; }
}

# init_token LABEL PIN SO_PIN
init_token() {
    softhsm2-util --init-token --free --label "$1" --pin "$2" --so-pin "$3" >/dev/null \
        || die "softhsm2-util --init-token $1 failed"
}

# put_key TOKEN PIN NAME ID LABEL [--always-auth]: key pair + certificate NAME
put_key() {
    local tok=$1 pin=$2 name=$3 id=$4 label=$5; shift 5
    openssl pkey -in "$pki/$name.key" -pubout -out "$work/tmp/$name.pub.pem"
    p11 --token-label "$tok" --login --pin "$pin" --write-object "$pki/$name.key" \
        --type privkey --id "$id" --label "$label" --usage-sign --sensitive --private "$@"
    p11 --token-label "$tok" --login --pin "$pin" --write-object "$work/tmp/$name.pub.pem" \
        --type pubkey --id "$id" --label "$label" --usage-sign
    p11 --token-label "$tok" --login --pin "$pin" --write-object "$pki/$name.pem" \
        --type cert --id "$id" --label "$label"
}

A=qes-token-a; A_PIN=123456; A_SO=12345678
B=qes-token-b; B_PIN=654321; B_SO=87654321
L=qes-token-locked; L_PIN=111111; L_SO=11111111

init_token "$A" "$A_PIN" "$A_SO"
init_token "$B" "$B_PIN" "$B_SO"
init_token "$L" "$L_PIN" "$L_SO"

put_key "$A" "$A_PIN" qual-rsa2048 01 qual-rsa2048
put_key "$A" "$A_PIN" qual-p256 02 qual-p256
put_key "$A" "$A_PIN" auth-p256 03 auth-p256
put_key "$A" "$A_PIN" expired-rsa2048 04 expired-rsa2048
put_key "$A" "$A_PIN" foreign-p256 05 foreign-p256
put_key "$B" "$B_PIN" qual-rsa3072 11 qual-rsa3072
put_key "$B" "$B_PIN" qual-p384 12 qual-p384 --always-auth
put_key "$B" "$B_PIN" qual-rsa2048 13 qual-rsa2048-aa --always-auth
put_key "$L" "$L_PIN" qual-p256 02 qual-p256

p11py restrict "$A" "$A_PIN" > "$work/tmp/keys-a"
p11py restrict "$B" "$B_PIN" > "$work/tmp/keys-b"
p11py restrict "$L" "$L_PIN" > "$work/tmp/keys-l"
[ "$(grep -c 'always_authenticate=0' "$work/tmp/keys-a")" = 5 ] || die "token A keys: $(cat "$work/tmp/keys-a")"
[ "$(grep -c 'always_authenticate=1' "$work/tmp/keys-b")" = 2 ] || die "token B keys: $(cat "$work/tmp/keys-b")"
grep -q '^11 qual-rsa3072 always_authenticate=0$' "$work/tmp/keys-b" || die "token B: qual-rsa3072"

A_SERIAL=$(p11py serial "$A"); B_SERIAL=$(p11py serial "$B"); L_SERIAL=$(p11py serial "$L")

# token.object holds the serial in clear; it picks the locked token's file.
l_obj=$(grep -l -F -- "$L_SERIAL" "$work"/store/*/token.object)
[ "$(printf '%s\n' "$l_obj" | wc -l)" = 1 ] || die "cannot find the token.object of $L"
lock_token "$l_obj"
flags=$(p11py flags "$L")
(( flags & 0x40000 )) || die "$L does not report CKF_USER_PIN_LOCKED (flags $flags)"

rm -rf -- "$work/tmp" "$work/p11.log"
touch "$work/$marker"
rm -rf -- "$out"
mv -- "$work" "$out"
trap - EXIT
write_conf "$out"

q() { printf '%q' "$1"; }
cat > "$out/tokens.env" <<EOF
# Written by tests/softhsm/mktokens.sh; source it from bash.
export SOFTHSM2_CONF=$(q "$out/softhsm2.conf")
export QES_TEST_MODULE=$(q "$module")

export QES_TOKEN_A_LABEL=$A
export QES_TOKEN_A_SERIAL=$A_SERIAL
export QES_TOKEN_A_PIN=$A_PIN
export QES_TOKEN_A_SO_PIN=$A_SO
export QES_TOKEN_A_URI='pkcs11:token=$A;serial=$A_SERIAL'

export QES_TOKEN_B_LABEL=$B
export QES_TOKEN_B_SERIAL=$B_SERIAL
export QES_TOKEN_B_PIN=$B_PIN
export QES_TOKEN_B_SO_PIN=$B_SO
export QES_TOKEN_B_URI='pkcs11:token=$B;serial=$B_SERIAL'

export QES_TOKEN_LOCKED_LABEL=$L
export QES_TOKEN_LOCKED_SERIAL=$L_SERIAL
export QES_TOKEN_LOCKED_PIN=$L_PIN
export QES_TOKEN_LOCKED_SO_PIN=$L_SO
export QES_TOKEN_LOCKED_URI='pkcs11:token=$L;serial=$L_SERIAL'

# CKA_ID (hex) of each key; its label (CKA_LABEL of key pair and certificate) is the
# PKI file name, except QUAL_RSA2048_AA whose label is qual-rsa2048-aa.
# Token A:
export QES_ID_QUAL_RSA2048=01
export QES_ID_QUAL_P256=02
export QES_ID_AUTH_P256=03
export QES_ID_EXPIRED_RSA2048=04
export QES_ID_FOREIGN_P256=05
# Token B (12 and 13 have CKA_ALWAYS_AUTHENTICATE):
export QES_ID_QUAL_RSA3072=11
export QES_ID_QUAL_P384=12
export QES_ID_QUAL_RSA2048_AA=13
# Token LOCKED:
export QES_ID_LOCKED_QUAL_P256=02
EOF
