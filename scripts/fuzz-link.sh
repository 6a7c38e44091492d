#!/usr/bin/env bash
# Fuzzes the link frame decoder (crates/link) with cargo-fuzz (libFuzzer) for RUNS executions
# (default 10 million). Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# Usage: scripts/fuzz-link.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../crates/link/fuzz"
runs="${1:-10000000}"
mkdir -p corpus/decoder
# Seed the corpus with the golden frames of SPEC.md so mutations start from valid traffic.
python3 - <<'PY'
import pathlib, re
spec = pathlib.Path("../SPEC.md").read_text()
blocks = re.findall(r"\*\*(\w+)\*\* \(\d+ bytes\)\n\n```\n(.*?)```", spec, re.S)
for name, hexes in blocks:
    data = bytes([8]) + bytes.fromhex(hexes.replace("\n", " ").replace(" ", ""))
    pathlib.Path(f"corpus/decoder/golden-{name}").write_bytes(data)
PY
# No sanitizer: the crate has no unsafe code, and ASan would cut the rate several times.
exec cargo +nightly fuzz run --sanitizer none decoder corpus/decoder -- -runs="$runs" -max_len=1024 -print_final_stats=1
