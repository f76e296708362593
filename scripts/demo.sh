#!/usr/bin/env bash
# The main job on the demo image (images/demo.tar.gz, a small Windows-like VM disk with
# three checkpoint states): build ckptfs, find the checkpoint tree, mount it, and show
# one file as it was in every checkpoint. Without FUSE it shows the same through the CLI.
#
#   scripts/demo.sh            # work directory /tmp/ckptfs-demo (CKPTFS_DEMO_DIR to change)
set -euo pipefail
cd "$(dirname "$0")/.."

# Cargo's own progress (a bar on a terminal, a line per crate otherwise): the first
# build takes a couple of minutes.
echo "Building ckptfs (cargo build --release; about two minutes the first time)..."
cargo build --release
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/ckptfs
echo "Built $bin (cargo install --path . or a copy to /usr/local/bin puts it on PATH)"
work=${CKPTFS_DEMO_DIR:-/tmp/ckptfs-demo}
image=$work/image/Win11.vhdx
mnt=$work/mnt
doc="p3_Windows/Users/alice/Documents/report.docx"

mkdir -p "$work/image" "$mnt"
"$bin" umount "$mnt" >/dev/null 2>&1 || true
# tar keeps the files' times, which name the checkpoints.
tar -xzf images/demo.tar.gz -C "$work/image"

run() {
    printf '\n$ %s\n' "$*"
    "$@"
}

run "$bin" list "$image"

can_mount() {
    [ -e /dev/fuse ] && { [ "$(id -u)" = 0 ] || command -v fusermount3 >/dev/null; }
}

if can_mount && "$bin" mount "$image" "$mnt"; then
    run ls "$mnt"
    run ls -l "$mnt/03_current/p3_Windows/Users/alice/Documents"
    printf '\nreport.docx in each checkpoint:\n'
    for c in "$mnt"/*/; do
        if [ -e "$c$doc" ]; then
            printf '  %-24s %6s bytes  sha256 %s\n' "$(basename "$c")" "$(stat -c %s "$c$doc")" \
                "$(sha256sum "$c$doc" | cut -c1-16)"
        else
            printf '  %-24s (not there)\n' "$(basename "$c")"
        fi
    done
    first=$(ls "$mnt" | head -1)
    cat <<EOF

The tree is mounted read-only at $mnt. Try:
  ls $mnt/*/p3_Windows/Users/alice/Documents
  cp -a "$mnt/$first/$doc" ~/report-$first.docx
  $bin umount $mnt
EOF
else
    echo
    echo "(no FUSE here: the same paths through the CLI)"
    run "$bin" ls -l "$image" "03_current/p3_Windows/Users/alice/Documents"
    first=$("$bin" list --json "$image" | python3 -c 'import json,sys; print(json.load(sys.stdin)["checkpoints"][0]["name"])')
    run "$bin" cp "$image" "$first/$doc" "$work/report-from-$first.docx"
    run ls -l "$work/report-from-$first.docx"
    cat <<EOF

Try:
  $bin ls -lR "$image" "$first/p3_Windows/Users"
  $bin cp -r "$image" "$first/p3_Windows/Users/alice" "$work/alice-restored"
EOF
fi
