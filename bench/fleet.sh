#!/usr/bin/env bash
# Many devices at once: N virtual Photons at Device OS 0.5.2, each needing bootloader, both
# system parts and an app built for 1.5.0, flashed with one `modflash flash --device 'sim:b-*'`
# (all devices in parallel). Reports, for N = 1, 4, 16, 64 (or the Ns given):
#   wall time of the command, host CPU time (user + system) per device,
#   modelled device makespan (the longest device's modelled time in this run) and the
#   slowest device's modelled time when flashed alone (N = 1).
# Usage: bench/fleet.sh [N...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p modflash
M="$PWD/target/release/modflash"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ns=("$@")
[ ${#ns[@]} -gt 0 ] || ns=(1 4 16 64)

modelled() { # name -> modelled_us
  $M sim show "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["modelled_us"])'
}

printf '%6s %9s %14s %12s %12s %s\n' devices "wall ms" "CPU ms/device" "makespan ms" "alone ms" "result"
alone=""
for n in "${ns[@]}"; do
  export MODFLASH_HOME="$work/home-$n"
  mkdir -p "$MODFLASH_HOME"
  $M sim make-app --platform photon --device-os 1.5.0 -o "$work/app.bin" >/dev/null
  declare -A before=()
  for i in $(seq 1 "$n"); do
    $M sim create "b-$i" --platform photon --device-os 0.5.2 >/dev/null
    before[$i]=$(modelled "b-$i")
  done
  /usr/bin/time -f '%e %U %S' -o "$work/time" \
    "$M" flash "$work/app.bin" --device 'sim:b-*' --yes --no-backup >"$work/out" 2>&1 \
    || { tail -20 "$work/out"; echo "flash of $n devices failed"; exit 1; }
  read -r wall user sys < "$work/time"
  makespan=0
  for i in $(seq 1 "$n"); do
    d=$(( $(modelled "b-$i") - before[$i] ))
    [ "$d" -gt "$makespan" ] && makespan=$d
  done
  [ -n "$alone" ] || alone=$makespan
  result=$(tail -1 "$work/out")
  python3 - "$n" "$wall" "$user" "$sys" "$makespan" "$alone" "$result" <<'PY'
import sys
n, wall, user, sys_, makespan, alone = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
print(f"{n:6d} {wall*1000:9.0f} {(user+sys_)*1000/n:14.1f} {makespan/1000:12.1f} {alone/1000:12.1f} {sys.argv[7]}")
PY
  unset before
done
