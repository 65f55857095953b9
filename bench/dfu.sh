#!/usr/bin/env bash
# USB DFU efficiency: writing one app to the same virtual Photon (Device OS 1.5.0, in DFU mode,
# fresh for every run) through the emulated USB bus (`modflash sim attach`, umockdev):
#   dfu-util 0.11  -a 0 -s ADDRESS:leave -D APP              (ADDRESS: the module's own)
#   modflash dfu download APP --device usb --leave          (read-back verification)
#   modflash dfu download APP --device usb --leave --no-verify
#   modflash flash APP --device usb --yes                   (inventory read-back + plan + write
#                                                            + verify + leave + final check)
# measured from the device's own counters (control transfers, modelled device time), plus the
# flash physics lower bound (erase + program from the timing model, no USB).
# Needs dfu-util and umockdev. Usage: bench/dfu.sh [APP] (default: the real Photon Tinker).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p modflash
cargo build --release --quiet -p modflash-core --example flash_lower_bound
M="$PWD/target/release/modflash"
LB="$PWD/target/release/examples/flash_lower_bound"
APP="$(realpath "${1:-tests/fixtures/real/photon_tinker.bin}")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MODFLASH_HOME="$work/home"

stats() { $M sim show bench --json | python3 -c 'import json,sys; s=json.load(sys.stdin)["stats"]; print(s["control_transfers"], s["modelled_us"])'; }

run() { # label, command...
  local label="$1"; shift
  $M sim rm bench >/dev/null 2>&1 || true
  $M sim create bench --platform photon --device-os 1.5.0 >/dev/null
  $M sim reset bench --hold-button 3 >/dev/null
  read -r t0 us0 < <(stats)
  local start end
  start=$(date +%s%N)
  $M sim attach bench -- "$@" >"$work/out.log" 2>&1 || { cat "$work/out.log"; echo "$label failed"; exit 1; }
  end=$(date +%s%N)
  read -r t1 us1 < <(stats)
  local mode
  mode=$($M sim show bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["mode"])')
  printf '%s\t%d\t%d\t%d\t%s\n' "$label" $((t1 - t0)) $((us1 - us0)) $(((end - start) / 1000000)) "$mode"
}

ADDR=$($M inspect --json "$APP" | python3 -c 'import json,sys; print(hex(json.load(sys.stdin)[0]["module"]["start_address"]))')
{
  run "dfu-util 0.11" dfu-util -d 2b04:d006 -a 0 -s "$ADDR:leave" -D "$APP"
  run "modflash dfu download --leave" "$M" dfu download "$APP" --device usb --leave
  run "modflash dfu download --leave --no-verify" "$M" dfu download "$APP" --device usb --leave --no-verify
  run "modflash flash --yes" "$M" flash "$APP" --device usb --yes
} > "$work/results.tsv"

"$LB" photon "$APP" > "$work/lb.json"
python3 - "$work/results.tsv" "$work/lb.json" "$APP" <<'PY'
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
lb = json.load(open(sys.argv[2]))
app = sys.argv[3]
print(f"file: {app} ({lb['bytes']} bytes at {lb['address']:#010x}), virtual Photon, Device OS 1.5.0, fresh in DFU mode per run")
print(f"flash physics lower bound: {lb['sectors_erased']} sector erase {lb['erase_us']/1000:.1f} ms"
      f" + program {lb['program_us']/1000:.1f} ms = {lb['total_us']/1000:.1f} ms (no USB)")
base_t, base_us = int(rows[0][1]), int(rows[0][2])
print()
print(f"{'tool':44} {'transfers':>9} {'modelled ms':>11} {'vs dfu-util':>11} {'vs bound':>8} {'wall ms':>7}  mode after")
for label, t, us, wall, mode in rows:
    t, us = int(t), int(us)
    print(f"{label:44} {t:9d} {us/1000:11.1f} {us/base_us:10.3f}x {us/lb['total_us']:7.3f}x {int(wall):7d}  {mode}")
print()
print("modelled time includes the bootloader's 500 ms reset after the leave request;"
      f" without it the lower-bound ratio of dfu-util is {(base_us-500000)/lb['total_us']:.3f}x")
PY
