#!/usr/bin/env bash
# bench/ades.sh - what it costs to make AdES signatures with libqes.
#
# A benchmark, not a test: it prints figures and fails only when it cannot
# measure. In one run, on the same software key (a throw-away RSA-2048
# signer under a throw-away CA, made with openssl) and the same files:
#
#   PAdES B-B of a 1 MB and a 200 MB PDF (made here: pages of incompressible
#   image data, rewritten by qpdf):
#       qes       bench/qes-bench-ades pades: libqes's PDF layer writes the
#                 incremental update and hashes the byte ranges, a detached
#                 CAdES over that digest goes into /Contents
#       openssl   `openssl cms -sign -binary` detached over the same PDF
#                 (the same hashing and a CMS; no PDF work)
#       pdfsig    poppler's `pdfsig -add-signature` with the key imported
#                 into an NSS database as PKCS#12 (when this poppler can)
#   CAdES B-B of a 1 GB file, detached and enveloping:
#       qes       bench/qes-bench-ades cades [--enveloping]: hashed
#                 streaming, written with qes_cades_finish_file
#       openssl   `openssl cms -sign -binary [-nodetach] -outform DER`
#
# Each is timed with /usr/bin/time -v (wall seconds, peak resident set
# size; wall time from bash's clock) and the ratios qes/openssl and qes/pdfsig are printed. The files
# are read once beforehand so every tool starts with them in the page
# cache.
#
# Environment:
#   QES_BUILD_DIR        build directory (default: build-bench, RelWithDebInfo)
#   QES_BENCH_DIR        scratch directory (default: a fresh one under /tmp;
#                        it needs about 2.5 GB)
#   QES_BENCH_CADES_MB   size of the CAdES file in MiB (1024)
#   QES_BENCH_PDF_MB     sizes of the PDFs in MiB ("1 200")
# Needs: cmake and the build dependencies (scripts/deps.sh), openssl, qpdf,
# python3, GNU time (/usr/bin/time), and for the pdfsig column poppler-utils
# and certutil/pk12util (libnss3-tools).
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
build=${QES_BUILD_DIR:-$root/build-bench}
cades_mb=${QES_BENCH_CADES_MB:-1024}
pdf_mbs=${QES_BENCH_PDF_MB:-1 200}

die() { echo "ades: $*" >&2; exit 1; }

for tool in openssl qpdf python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is needed (scripts/deps.sh)"
done

if [ ! -x "$build/bench/qes-bench-ades" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$build" -j2 --target qes-bench-ades >/dev/null
fi
DRV=$build/bench/qes-bench-ades

if [ -n "${QES_BENCH_DIR:-}" ]; then
    dir=$QES_BENCH_DIR
    mkdir -p "$dir"
else
    dir=$(mktemp -d /tmp/qes-bench-ades.XXXXXX)
    trap 'rm -rf "$dir"' EXIT
fi
cd "$dir"

# ------------------------------------------------------------------ the key
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
    -subj "/CN=qes bench CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout signer.key -out signer.csr \
    -subj "/CN=qes bench signer" 2>/dev/null
printf 'keyUsage=critical,digitalSignature,nonRepudiation\n' >signer.ext
openssl x509 -req -in signer.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 2 -extfile signer.ext -out signer.pem 2>/dev/null

# ---------------------------------------------------------------- the files
make_pdf() {	# MIB OUT: pages of random RGB images, about MIB MiB in all
    python3 - "$1" "$2.raw" <<'PY'
import os, sys
mib, out = int(sys.argv[1]), sys.argv[2]
w = h = 512                           # 768 KiB of image per page
per = w * h * 3
pages = max(1, (mib * 1024 * 1024 + per - 1) // per)
objs = [b"<< /Type /Catalog /Pages 2 0 R >>", None]
kids = []
with open(out, "wb") as f:
    f.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offs = {}
    def put(num, body, stream=None):
        offs[num] = f.tell()
        f.write(b"%d 0 obj\n" % num + body)
        if stream is not None:
            f.write(b"\nstream\n" + stream + b"\nendstream")
        f.write(b"\nendobj\n")
    n = 3
    for i in range(pages):
        img, cont, page = n, n + 1, n + 2
        n += 3
        put(img, b"<< /Type /XObject /Subtype /Image /Width %d /Height %d "
            b"/ColorSpace /DeviceRGB /BitsPerComponent 8 /Length %d >>" % (w, h, per),
            os.urandom(per))
        c = b"q 500 0 0 500 40 160 cm /Im Do Q"
        put(cont, b"<< /Length %d >>" % len(c), c)
        put(page, b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /XObject << /Im %d 0 R >> >> /Contents %d 0 R >>" % (img, cont))
        kids.append(page)
    put(1, objs[0])
    put(2, b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids) +
        b"] /Count %d >>" % len(kids))
    x = f.tell()
    f.write(b"xref\n0 %d\n0000000000 65535 f \n" % n)
    for i in range(1, n):
        f.write(b"%010d 00000 n \n" % offs[i])
    f.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (n, x))
PY
    # qpdf rewrites it the way a producer would (object streams, xref stream)
    qpdf --object-streams=generate --compress-streams=n "$2.raw" "$2"
    rm -f "$2.raw"
}
for mb in $pdf_mbs; do
    [ -s "doc-$mb.pdf" ] || make_pdf "$mb" "doc-$mb.pdf"
done
[ -s big.bin ] || head -c $((cades_mb * 1024 * 1024)) /dev/urandom >big.bin

# --------------------------------------------------------------- pdfsig/NSS
pdfsig_ok=0
pdfsig_why=""
if ! command -v pdfsig >/dev/null || ! command -v pk12util >/dev/null ||
    ! command -v certutil >/dev/null; then
    pdfsig_why="pdfsig, certutil or pk12util is not installed"
elif ! pdfsig -h 2>&1 | grep -q -- -add-signature; then
    pdfsig_why="this pdfsig ($(pdfsig -v 2>&1 | head -1)) has no -add-signature"
else
    rm -rf nss && mkdir nss
    certutil -N -d sql:nss --empty-password
    certutil -A -d sql:nss -n "qes bench CA" -t "CT,C,C" -i ca.pem
    openssl pkcs12 -export -in signer.pem -inkey signer.key -certfile ca.pem \
        -name signer -passout pass:bench -out signer.p12
    pk12util -i signer.p12 -d sql:nss -W bench -K "" >/dev/null
    if pdfsig -nssdir sql:nss -nick signer -add-signature "doc-${pdf_mbs%% *}.pdf" \
        probe.pdf >probe.log 2>&1 && pdfsig -nssdir sql:nss probe.pdf 2>&1 |
        grep -q 'Signature Validation: Signature is Valid'; then
        pdfsig_ok=1
    else
        pdfsig_why="pdfsig -add-signature failed: $(tr '\n' ' ' <probe.log)"
    fi
fi

# ---------------------------------------------------------------- measuring
# measure NAME CMD...: run CMD under GNU time; sets T_<NAME> (seconds) and
# M_<NAME> (peak RSS, MiB)
measure() {
    local name=$1 t m t0 t1
    shift
    # wall time from bash's clock (GNU time rounds to 10 ms)
    t0=$EPOCHREALTIME
    /usr/bin/time -v -o "time-$name.txt" "$@" >"out-$name.log" 2>&1 ||
        die "$name failed: $(tail -3 "out-$name.log")"
    t1=$EPOCHREALTIME
    t=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    m=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "time-$name.txt")
    printf -v "T_$name" '%s' "$t"
    printf -v "M_$name" '%s' "$m"
}
warm() { cat "$@" >/dev/null; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3g", a / b; else print "-" }'; }
row() {	# LABEL NAME
    local t="T_$2" m="M_$2"
    printf '  %-34s %8.3f s %9.1f MiB\n' "$1" "${!t}" "${!m}"
}
K=(--cert signer.pem --key signer.key --chain ca.pem)
OSSL=(-md sha256 -signer signer.pem -inkey signer.key -certfile ca.pem)

echo "ades: $(nproc) CPUs, $(uname -r), $(openssl version)"
for mb in $pdf_mbs; do
    f=doc-$mb.pdf
    sz=$(stat -c %s "$f")
    warm "$f"
    rm -f "q-$mb.pdf"
    measure "pq$mb" "$DRV" pades "$f" "q-$mb.pdf" "${K[@]}"
    warm "$f"
    measure "po$mb" openssl cms -sign -binary -in "$f" -outform DER -out "o-$mb.p7s" "${OSSL[@]}"
    echo "PAdES B-B, ${mb} MiB PDF ($sz bytes):"
    row "qes (PDF update + CAdES)" "pq$mb"
    row "openssl cms -sign (detached)" "po$mb"
    printf '  qes/openssl: time %s, memory %s\n' \
        "$(ratio "$(eval echo "\$T_pq$mb")" "$(eval echo "\$T_po$mb")")" \
        "$(ratio "$(eval echo "\$M_pq$mb")" "$(eval echo "\$M_po$mb")")"
    if [ "$pdfsig_ok" = 1 ]; then
        warm "$f"
        measure "pp$mb" pdfsig -nssdir sql:nss -nick signer -add-signature "$f" "p-$mb.pdf"
        row "pdfsig -add-signature" "pp$mb"
        printf '  qes/pdfsig: time %s, memory %s\n' \
            "$(ratio "$(eval echo "\$T_pq$mb")" "$(eval echo "\$T_pp$mb")")" \
            "$(ratio "$(eval echo "\$M_pq$mb")" "$(eval echo "\$M_pp$mb")")"
    fi
    rm -f "q-$mb.pdf" "p-$mb.pdf" "o-$mb.p7s"
done
[ "$pdfsig_ok" = 1 ] || echo "  (no pdfsig column: $pdfsig_why)"

echo "CAdES B-B, $cades_mb MiB file:"
for kind in detached enveloping; do
    flag=() ; oflag=()
    [ "$kind" = enveloping ] && { flag=(--enveloping); oflag=(-nodetach); }
    warm big.bin
    measure "cq$kind" "$DRV" cades big.bin "q-$kind.p7s" "${K[@]}" "${flag[@]}"
    rm -f "q-$kind.p7s"
    warm big.bin
    measure "co$kind" openssl cms -sign -binary "${oflag[@]}" -in big.bin -outform DER \
        -out "o-$kind.p7s" "${OSSL[@]}"
    rm -f "o-$kind.p7s"
    row "qes $kind" "cq$kind"
    row "openssl cms -sign $kind" "co$kind"
    printf '  qes/openssl %s: time %s, memory %s\n' "$kind" \
        "$(ratio "$(eval echo "\$T_cq$kind")" "$(eval echo "\$T_co$kind")")" \
        "$(ratio "$(eval echo "\$M_cq$kind")" "$(eval echo "\$M_co$kind")")"
done
