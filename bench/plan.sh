#!/usr/bin/env bash
# Plan time: one virtual device, and N describe-JSON inventories (default 10 000) planned with
# `modflash plan --inventories DIR`. Inventories are Photons at random known releases running
# their Tinker; the target is an app built for Device OS 1.5.0; the catalogue is the real
# 1.5.0 Photon modules in tests/fixtures/real.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p modflash
M=./target/release/modflash
N="${N:-10000}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MODFLASH_HOME="$work/home"
$M sim make-app --platform photon --device-os 1.5.0 -o "$work/app.bin" >/dev/null
python3 - "$work/inv" "$N" <<'PY'
import json, os, random, sys
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
# (system version, bootloader, part-1 dependency, part-2 bootloader dependency, tinker version)
releases = [(17, 7, None, None, 3), (108, 11, None, None, 4), (207, 101, None, 101, 5),
            (1406, 501, 207, 400, 6), (1502, 501, 207, 400, 6), (2202, 1006, 207, 1003, 6)]
rng = random.Random(1)
for i in range(n):
    v, b, d1, d2, t = rng.choice(releases)
    dep = lambda f, n, ver: {"f": f, "n": str(n), "v": ver}
    p1 = [dep("s", 2, d1)] if d1 else []
    p2 = [dep("s", 1, v)] + ([dep("b", 0, d2)] if d2 else [])
    mods = [
        {"s": 16384, "l": "m", "vc": 30, "vv": 30, "f": "b", "n": "0", "v": b, "d": []},
        {"s": 262144, "l": "m", "vc": 30, "vv": 30, "f": "s", "n": "1", "v": v, "d": p1},
        {"s": 262144, "l": "m", "vc": 30, "vv": 30, "f": "s", "n": "2", "v": v, "d": p2},
        {"s": 131072, "l": "m", "vc": 30, "vv": 30, "f": "u", "n": "1", "v": t, "d": [dep("s", 2, v)]},
    ]
    with open(os.path.join(out, f"{i:05}.json"), "w") as f:
        json.dump({"p": 6, "m": mods}, f)
PY
echo "one virtual device:"
$M sim create bench --platform photon --device-os 0.5.2 >/dev/null
start=$(date +%s%N); $M plan "$work/app.bin" --device sim:bench --json >/dev/null; end=$(date +%s%N)
echo "  whole process (load device, release table, plan, proof): $(( (end - start) / 1000000 )) ms"
echo "$N inventories:"
$M plan "$work/app.bin" --inventories "$work/inv" --catalog tests/fixtures/real --json >"$work/plans.jsonl"
ok=$(grep -c '"ok":true' "$work/plans.jsonl" || true)
echo "  plans found: $ok of $N"
grep -o '"error":"[^"]*"' "$work/plans.jsonl" | sort | uniq -c | sort -rn | head -3 || true
