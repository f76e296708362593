#!/usr/bin/env bash
# Every test: the Rust suite, then the cross-check of the test-only VHDX writer against
# readers nobody on this team wrote. As root it first installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    scripts/install-test-deps.sh
fi
# A test that cannot run here (a tool, root or ../shared/samples missing) passes with a
# line "SKIPPED: <test>: <reason>" on stderr; they are listed again at the end.
# CKPTFS_REQUIRE_TOOLS=1 (CI) makes a missing tool or root a failure instead,
# CKPTFS_REQUIRE_SAMPLES=1 a missing samples folder.
skips=$(mktemp)
trap 'if [ -s "$skips" ]; then printf "\nskipped (test: reason):\n"; sort -u "$skips" | sed "s/^/  /"; fi; rm -f "$skips"' EXIT
export CKPTFS_SKIP_LOG=$skips
cargo test --release
python3 scripts/crosscheck_writer.py
