#!/usr/bin/env bash
# YMODEM cost on the wire for a ~250 KB system part against the Device OS listening-mode
# receiver (the virtual device's console, in-process): modflash's scheme (1K blocks, CRC-16)
# vs particle-cli's (128-byte blocks, zero CRC, ACK each). Prints a Markdown table
# (round trips, blocks, bytes each way, overhead, an estimated time per round-trip latency).
# Usage: bench/ymodem.sh [FILE RELEASE]...   (RELEASE = Device OS the Photon starts with)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -p modflash-core --example ymodem_wire -- "$@"
