#!/usr/bin/env bash
# Whole-process cost of inspecting one file: `modflash inspect` vs binary-version-reader's CLI
# (node), over every fixture. Prints milliseconds per file for each tool and the ratio.
# Needs: a release build (done here), node and .interop/node_modules/binary-version-reader.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p modflash
runs="${RUNS:-5}"
files=(tests/fixtures/real/*.bin)
bvr=.interop/node_modules/binary-version-reader/cli.js

time_ms() { # command... ; prints total milliseconds for $runs passes over all files
  local start end
  start=$(date +%s%N)
  for _ in $(seq "$runs"); do
    for f in "${files[@]}"; do "$@" "$f" >/dev/null 2>&1 || true; done
  done
  end=$(date +%s%N)
  echo $(( (end - start) / 1000000 ))
}

n=$(( runs * ${#files[@]} ))
ours=$(time_ms ./target/release/modflash inspect)
printf 'modflash inspect:             %6.2f ms/file (%d runs)\n' "$(echo "$ours / $n" | bc -l)" "$n"
if [ -f "$bvr" ] && command -v node >/dev/null; then
  theirs=$(time_ms node "$bvr")
  printf 'binary-version-reader cli.js: %6.2f ms/file\n' "$(echo "$theirs / $n" | bc -l)"
  printf 'ratio: %.1fx\n' "$(echo "$theirs / $ours" | bc -l)"
else
  echo "binary-version-reader not installed: npm install --prefix .interop binary-version-reader@3.1.3"
fi
