#!/usr/bin/env bash
# The forum story on a virtual Photon, no hardware needed: old system firmware, an app built
# for newer Device OS, the refusal, the plan, the flash with progress (at the pace of a real
# device: --pace modelled), the verified result.
# The same commands work on a real device with --device usb (or serial:/dev/ttyACM0).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --quiet -p modflash
modflash() { ./target/release/modflash "$@"; }
export MODFLASH_HOME="${MODFLASH_HOME:-$PWD/target/demo-home}"
work="$MODFLASH_HOME/work"
mkdir -p "$work"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

modflash sim rm demo >/dev/null 2>&1 || true
say "modflash sim create demo --platform photon --device-os 0.5.2"
modflash sim create demo --platform photon --device-os 0.5.2

say "modflash sim make-app --platform photon --device-os 1.5.0 -o app.bin   # an app built for Device OS 1.5.0"
modflash sim make-app --platform photon --device-os 1.5.0 -o "$work/app.bin"

say "modflash inspect app.bin"
modflash inspect "$work/app.bin"

say "modflash serial flash app.bin --device sim:demo   # just the app, the way peer tools do it"
modflash serial flash "$work/app.bin" --device sim:demo 2>&1 | sed 's/^/  /' || true

say "modflash plan app.bin --device sim:demo"
modflash plan "$work/app.bin" --device sim:demo

say "modflash flash app.bin --device sim:demo --yes --pace modelled   # in the device's own time"
modflash flash "$work/app.bin" --device sim:demo --yes --pace modelled

say "modflash sim show demo"
modflash sim show demo
