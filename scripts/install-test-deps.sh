#!/usr/bin/env bash
# Install what the tests need on Debian (run as root). Installs only what is missing,
# so it is cheap to run again.
set -euo pipefail

packages=(qemu-utils gzip fdisk gdisk util-linux e2fsprogs dosfstools mtools 7zip ntfs-3g attr fuse3 libwim15)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# Independent VHDX, VHD and VMDK readers for scripts/crosscheck_writer.py.
if ! python3 -c "import pyvhdi, pyvmdk, dissect.hypervisor, pyfsntfs" 2>/dev/null; then
    python3 -m pip install -q libvhdi-python libvmdk-python dissect.hypervisor libfsntfs-python
fi
