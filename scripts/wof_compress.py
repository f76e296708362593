#!/usr/bin/env python3
"""Build a WOF ("CompactOS") compressed file's parts from its plain bytes, with wimlib's
compressors (an encoder nobody on this team wrote, so a test against it is not circular).

    wof_compress.py ALGORITHM INPUT STREAM_OUT [--level N]

ALGORITHM is xpress4k, xpress8k, xpress16k or lzx. Writes the `WofCompressedData`
stream to STREAM_OUT and prints the $REPARSE_POINT value (tag 0x80000017, WOF and file
provider headers) as the hex string `setfattr -n system.ntfs_reparse_data -v` takes.

The stream is what Windows writes: a table of the offsets of chunks 1..n-1 (chunk 0
starts right after it), 4 bytes each, or 8 for a file larger than 4 GiB - 1, counted
from the end of the table; then the chunks, each compressed on its own, or stored as is
when compression does not make it smaller. Chunks of equal content are compressed once,
so a mostly empty file of several GiB is quick to build.
"""

import argparse
import ctypes
import ctypes.util
import os
import struct
import sys

FORMATS = {"xpress4k": (0, 12), "lzx": (1, 15), "xpress8k": (2, 13), "xpress16k": (3, 14)}
WIMLIB_XPRESS, WIMLIB_LZX = 1, 2
IO_REPARSE_TAG_WOF = 0x80000017


def load_wimlib():
    name = ctypes.util.find_library("wim") or "libwim.so.15"
    lib = ctypes.CDLL(name)
    lib.wimlib_create_compressor.argtypes = [
        ctypes.c_int, ctypes.c_size_t, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)]
    lib.wimlib_create_compressor.restype = ctypes.c_int
    lib.wimlib_compress.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.wimlib_compress.restype = ctypes.c_size_t
    lib.wimlib_free_compressor.argtypes = [ctypes.c_void_p]
    return lib


def main():
    p = argparse.ArgumentParser()
    p.add_argument("algorithm", choices=sorted(FORMATS))
    p.add_argument("input")
    p.add_argument("stream_out")
    p.add_argument("--level", type=int, default=50)
    a = p.parse_args()

    fmt, order = FORMATS[a.algorithm]
    chunk = 1 << order
    lib = load_wimlib()
    comp = ctypes.c_void_p()
    ctype = WIMLIB_LZX if a.algorithm == "lzx" else WIMLIB_XPRESS
    if lib.wimlib_create_compressor(ctype, chunk, a.level, ctypes.byref(comp)) != 0:
        sys.exit("wimlib_create_compressor failed")
    out = ctypes.create_string_buffer(chunk)

    size = os.path.getsize(a.input)
    count = (size + chunk - 1) // chunk
    entry = "<Q" if size > 0xFFFFFFFF else "<I"
    memo = {}
    offsets, total = [], 0
    tmp = a.stream_out + ".chunks"
    with open(a.input, "rb") as src, open(tmp, "wb") as body:
        for _ in range(count):
            data = src.read(chunk)
            stored = memo.get(data)
            if stored is None:
                # Room for one byte less than the input: wimlib returns 0 when the
                # result would not be smaller, and the chunk is then stored raw.
                n = lib.wimlib_compress(data, len(data), out, len(data) - 1, comp)
                stored = out.raw[:n] if n else data
                if len(memo) < 4096:
                    memo[data] = stored
            offsets.append(total)
            body.write(stored)
            total += len(stored)
    lib.wimlib_free_compressor(comp)
    with open(a.stream_out, "wb") as f:
        f.write(b"".join(struct.pack(entry, o) for o in offsets[1:]))
        with open(tmp, "rb") as body:
            while True:
                b = body.read(1 << 20)
                if not b:
                    break
                f.write(b)
    os.remove(tmp)
    reparse = struct.pack("<IHHIIII", IO_REPARSE_TAG_WOF, 16, 0, 1, 2, 1, fmt)
    print("0x" + reparse.hex())


if __name__ == "__main__":
    main()
