#!/usr/bin/env bash
# Every test: the Rust suite, then the cross-check of the test-only VHDX writer against
# readers nobody on this team wrote. As root it first installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    scripts/install-test-deps.sh
fi
cargo test --release
python3 scripts/crosscheck_writer.py
