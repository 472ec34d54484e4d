#!/usr/bin/env bash
# Run one libFuzzer target for a bounded time on a scratch copy of its seed
# corpus (the committed corpus stays small and unchanged). A crash, leak or
# sanitizer report fails the test and leaves the reproducer in the log.
set -euo pipefail
fuzzer=$1 corpus=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
if [ -d "$corpus" ]; then cp -r "$corpus/." "$work/corpus/"; fi
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" 2>&1 | tail -n 25
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
  for f in "$work"/artifacts/*; do
    [ -e "$f" ] && { echo "reproducer $f:"; base64 "$f" | head -n 20; }
  done
fi
exit "$rc"
