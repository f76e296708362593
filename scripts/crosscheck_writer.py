#!/usr/bin/env python3
"""Cross-check the test-only VHDX, VHD and VMDK writers (tests/support/) against
readers nobody on this team wrote.

VHD (--format vhd): fixtures from `cargo run --release --example
make_vhd_fixtures`; every state's bytes are compared with 7-Zip, qemu-img,
libvhdi and dissect.hypervisor where each is expected to be right (see the VHD
section below), and as a reported probe where it is known not to be. It exits
non-zero when a reader expected to be right disagrees, or a state is read right
by no reader.

VMDK (--format vmdk): fixtures from `cargo run --release --example
make_vmdk_fixtures` (every variant: monolithicSparse, twoGbMaxExtentSparse,
monolithicFlat, twoGbMaxExtentFlat, streamOptimized, vmfs, vmfsSparse/COWD,
seSparse; chains, a tree, hint kinds, windows-1252, a damaged primary GD, an
SESparse journal that needs replay). Every state's bytes are compared with
qemu-img, libvmdk (pip libvmdk-python) and dissect.hypervisor where each is
expected to be right (see the VMDK section below for each reader's coverage);
where a reader is known to differ (SESparse unmapped semantics, FLAT offsets,
zero-grain GTEs, no SESparse) the state is run as a documented probe. The
SESparse state whose journal needs replay must be refused (qemu does). Exits
non-zero when a reader expected to be right disagrees or a state is confirmed
by no reader.

The rest of this text is about the VHDX part.

It builds the fixtures with `cargo run --release --example make_fixtures`,
then reads every checkpoint state with each independent reader and compares
the result with the state's expected raw disk. Prints PASS/FAIL per state and
reader, then which reader confirmed which writer feature; exits non-zero on
any failure or on a feature no reader confirmed without a documented reason.

Requirements (fresh Debian):
    apt-get install qemu-utils 7zip        # qemu-img; 7zz (7-Zip >= 22), optional
    pip install libvhdi-python dissect.hypervisor libvmdk-python
FATtools (pure Python) is pip-installed on first use if missing. A missing
reader is reported as unavailable; the run then fails only if some feature
ends up unconfirmed (without 7-Zip every feature is still confirmed).

Readers and what they can do (established by running them and reading their
sources; the manifest says per state which one applies and why):
  qemu-img   fixed/dynamic, 512-byte sectors only, no differencing. Replays the
             log when it may write (`qemu-img check -r all` on a copy); it even
             replays before rejecting HasParent / 4 KiB sectors, so its
             replayed copies feed the readers below.
  libvhdi    all disk types and chains (set_parent), no log replay. Reads
             UNDEFINED/ZERO/UNMAPPED blocks of differencing files from the
             parent (a semantic difference) and consults the sector bitmap of
             NOT_PRESENT blocks too (garbage where a chunk has no bitmap block).
  dissect    all disk types and chains (parent via relative_path), no replay,
             no BAT state 5; miscounts bitmap bytes when a child's partial
             block sends an unaligned run to a partial parent.
  7-Zip      all disk types and chains (parent by name), no replay, no BAT
             state 5, rejects sizes with bit log2(sector size) set.
  FATtools   its own log replayer (no wrap, no interleaved zero descriptors)
             is the only one that reads entries with > 126 descriptors and
             that checks entry Tail pointers; libvhdi reads its replayed copy.
             Its reader handles fixed disks only (it drops NOT_PRESENT blocks).

Comparison is exact, sector by sector (SEEK_DATA skips holes that are holes
on both sides). A mismatch that lies entirely in a "semantic range" of the
manifest (a UNDEFINED/ZERO/UNMAPPED block of a differencing file, which the
project defines as zeros) and where the reader returned exactly what the disk
holds if such blocks fall through to the parent (STEM.alt-transparent.raw) is
reported as a SEMANTIC difference with offsets and bytes, not as a writer
failure. States marked known-limitation run anyway; a mismatch there is
reported but is not a failure, a pass counts as a confirmation.
"""

import argparse
import bisect
import fcntl
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 4 << 20
SECTOR = 512  # granularity of mismatch reports (divides both sector sizes)
ZERO = bytes(CHUNK)
MAX_DETAIL_BYTES = 256 << 20  # stop sector-level analysis after this much mismatch
F_SETPIPE_SZ = 1031


# ---------------------------------------------------------------------------
# Readers: each returns an object with .size and .read(offset, n) -> bytes,
# reading sequentially from 0 upwards (pipes cannot seek).
# ---------------------------------------------------------------------------


class Unavailable(Exception):
    pass


READER_TIMEOUT = 180  # seconds per reader and state; a hung reader is a failure


class TimedOut(Exception):
    pass


class time_limit:
    """Raises TimedOut inside the check (the readers run in-process; some
    loop forever on input they do not expect)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        import signal

        def fire(*_):
            raise TimedOut(f"no result after {self.seconds}s")

        self.old = signal.signal(signal.SIGALRM, fire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        import signal

        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)
        return False


def data_extents(fd, size):
    """[start, end) ranges of a sparse file that may hold data (SEEK_DATA);
    everything else reads as zeros. Lets a 9 GiB mostly-hole image be
    compared in a second without trusting anything but the filesystem."""
    ext, off = [], 0
    while off < size:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after off
            break
        if d >= size:
            break
        h = os.lseek(fd, d, os.SEEK_HOLE)
        ext.append((d, min(h, size)))
        off = h
    return ext


def overlaps(ext, off, n):
    i = bisect.bisect_right(ext, (off + n, -1)) - 1
    return i >= 0 and ext[i][1] > off


class FileSource:
    """A raw image file (qemu-img's output)."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size
        self.ext = data_extents(self.fd, self.size)

    def is_hole(self, off, n):
        return not overlaps(self.ext, off, n)

    def read(self, off, n):
        return os.pread(self.fd, n, off)

    def close(self):
        os.close(self.fd)


class PipeSource:
    """7-Zip extracting the disk to stdout."""

    def __init__(self, argv, size):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            fcntl.fcntl(self.p.stdout.fileno(), F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        self.size = size
        self.pos = 0
        self.buf = bytearray(CHUNK)

    def read(self, off, n):
        assert off == self.pos, "pipe sources are sequential"
        mv = memoryview(self.buf)[:n]
        got = 0
        fd = self.p.stdout.fileno()
        while got < n:
            k = os.readv(fd, [mv[got:]])
            if k == 0:
                break
            got += k
        self.pos += got
        return bytes(mv[:got])

    def close(self):
        rest = self.p.stdout.read()
        err = self.p.stderr.read().decode(errors="replace")
        rc = self.p.wait()
        if rest:
            raise RuntimeError(f"reader produced {len(rest)} bytes more than the disk size")
        if rc != 0:
            raise RuntimeError(f"7-Zip exit {rc}: {err.strip()[-400:]}")


class CallSource:
    def __init__(self, size, read, close=lambda: None):
        self.size = size
        self.read = read
        self.close = close


def have(cmd):
    return shutil.which(cmd) is not None


def run(argv, check=True, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))}: exit {r.returncode}: "
            f"{(r.stderr or r.stdout).decode(errors='replace').strip()[-400:]}"
        )
    return r


def current_log_guid(path):
    """LogGuid of the current header (sanity check that a replay happened)."""
    best = None
    with open(path, "rb") as f:
        for off in (64 << 10, 128 << 10):
            f.seek(off)
            h = f.read(4096)
            if h[:4] != b"head":
                continue
            seq = struct.unpack_from("<Q", h, 8)[0]
            if best is None or seq > best[0]:
                best = (seq, uuid.UUID(bytes_le=h[48:64]))
    return best[1] if best else None


class Workspace:
    """Copies of dirty files replayed by qemu-img, shared by all readers."""

    def __init__(self, fixtures_dir, tmp):
        self.src = Path(fixtures_dir)
        self.tmp = Path(tmp)
        self.dirs = {}

    def replayed_chain(self, state):
        """A directory holding the state's chain with every dirty file
        replayed by qemu-img (clean files are symlinks)."""
        key = tuple(state["chain"])
        if key in self.dirs:
            d = self.dirs[key]
            if isinstance(d, Exception):
                raise d
            return d
        d = Path(tempfile.mkdtemp(prefix="replayed-", dir=self.tmp))
        try:
            self._replay_into(d, state)
        except Exception as e:  # noqa: BLE001 - remembered for the next reader
            self.dirs[key] = e
            raise
        self.dirs[key] = d
        return d

    def _replay_into(self, d, state):
        for f in state["chain"]:
            if f in state["dirty_files"]:
                shutil.copyfile(self.src / f, d / f)
                # Exit status is non-zero when qemu rejects HasParent/4 KiB
                # after replaying; the header check below is what counts.
                r = run(["qemu-img", "check", "-r", "all", "-f", "vhdx", str(d / f)], check=False)
                g = current_log_guid(d / f)
                if g is None or g.int != 0:
                    raise RuntimeError(
                        f"qemu-img did not replay {f}: "
                        + (r.stderr or r.stdout).decode(errors="replace").strip()[-300:]
                    )
            else:
                os.symlink(self.src / f, d / f)


_fattools = None


def import_fattools():
    """FATtools is the only replayer that handles entries with > 126
    descriptors; it is pure Python, so install it on first use rather than
    fail a fresh machine that only has the two required packages."""
    global _fattools
    if _fattools is None:
        try:
            from FATtools import vhdxutils
        except ImportError:
            print("  (installing FATtools: python3 -m pip install fattools)", flush=True)
            r = run([sys.executable, "-m", "pip", "install", "--quiet", "fattools"], check=False)
            try:
                from FATtools import vhdxutils
            except ImportError:
                raise Unavailable("pip install fattools failed: " + r.stderr.decode(errors="replace")[-200:])
        _fattools = vhdxutils
    return _fattools


def open_reader(name, mode, state, ws):
    """Returns a source for the state, or raises Unavailable."""
    base = ws.src
    # libvhdi, dissect and 7-Zip cannot replay: give them qemu's replayed copy.
    if state["dirty_files"] and name in ("libvhdi", "dissect", "7zip"):
        if not have("qemu-img"):
            raise Unavailable("needs qemu-img to replay the log")
        base = ws.replayed_chain(state)
    top = base / state["file"]
    size = state["virtual_size"]

    if name == "qemu-img":
        if not have("qemu-img"):
            raise Unavailable("qemu-img not installed")
        src = top
        if mode == "replay-then-convert":
            src = ws.tmp / ("qemu-replay-" + state["file"])
            shutil.copyfile(top, src)
            run(["qemu-img", "check", "-r", "all", "-f", "vhdx", str(src)])
        raw = ws.tmp / ("qemu-" + state["file"] + ".raw")
        run(["qemu-img", "convert", "-f", "vhdx", "-O", "raw", str(src), str(raw)])
        s = FileSource(raw)

        def close():
            s_close()
            raw.unlink()

        s_close, s.close = s.close, close
        return s

    if name == "libvhdi":
        try:
            import pyvhdi
        except ImportError:
            raise Unavailable("pip install libvhdi-python")
        files = []
        for f in state["chain"]:
            h = pyvhdi.file()
            h.open(str(base / f))
            files.append(h)
        for child, parent in zip(files, files[1:]):
            child.set_parent(parent)
        top_h = files[0]
        return CallSource(
            top_h.get_media_size(),
            lambda off, n: top_h.read_buffer_at_offset(n, off),
            lambda: [h.close() for h in files],
        )

    if name == "dissect":
        try:
            from dissect.hypervisor.disk.vhdx import VHDX
        except ImportError:
            raise Unavailable("pip install dissect.hypervisor")
        v = VHDX(Path(top))  # opens parents through relative_path

        def read(off, n):
            v.seek(off)
            return v.read(n)

        return CallSource(v.size, read)

    if name == "7zip":
        exe = shutil.which("7zz") or shutil.which("7z")
        if not exe:
            raise Unavailable("apt-get install 7zip (7zz)")
        return PipeSource([exe, "e", "-so", "-tvhdx", str(top)], size)

    if name == "fattools":
        vhdxutils = import_fattools()
        if mode == "replay-then-libvhdi":
            # FATtools replays the log while opening read-write; its reader
            # cannot read dynamic disks (drops NOT_PRESENT blocks), so libvhdi
            # reads the replayed copy.
            d = Path(tempfile.mkdtemp(prefix="fattools-", dir=ws.tmp))
            shutil.copyfile(top, d / state["file"])
            vhdxutils.Image(str(d / state["file"]), "r+b").close()
            g = current_log_guid(d / state["file"])
            if g is None or g.int != 0:
                raise RuntimeError("FATtools did not replay the log")
            ws2 = Workspace(d, ws.tmp)
            return open_reader("libvhdi", "direct", dict(state, dirty_files=[]), ws2)
        img = vhdxutils.Image(str(top), "rb")

        def read(off, n):
            img.seek(off)
            return bytes(img.read(n))

        return CallSource(img.size, read, img.close)

    raise ValueError(name)


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------


def merge(ranges):
    out = []
    for o, l in ranges:
        if out and out[-1][0] + out[-1][1] == o:
            out[-1][1] += l
        else:
            out.append([o, l])
    return out


def compare(src, state, fixtures_dir):
    """Returns (mismatch sector ranges, got bytes by mismatch sector (first
    few), total mismatched bytes, size problem)."""
    size = state["virtual_size"]
    exp_fd = os.open(fixtures_dir / state["expected_raw"], os.O_RDONLY)
    exp_ext = data_extents(exp_fd, size)
    is_hole = getattr(src, "is_hole", None)
    bad = []
    samples = {}
    total_bad = 0
    problem = None
    if src.size != size:
        problem = f"reader reports size {src.size}, expected {size}"
    try:
        for off in range(0, size, CHUNK):
            n = min(CHUNK, size - off)
            exp_zero = not overlaps(exp_ext, off, n)
            if exp_zero and is_hole and is_hole(off, n):
                continue
            got = src.read(off, n)
            exp = ZERO[:n] if exp_zero else os.pread(exp_fd, n, off)
            if got == exp:
                continue
            if len(got) != n:
                problem = f"short read at {off:#x}: {len(got)} of {n} bytes"
                got = got + bytes(n - len(got))
            if total_bad > MAX_DETAIL_BYTES:
                bad.append((off, n))
                total_bad += n
                continue
            gm, em = memoryview(got), memoryview(exp)
            for s in range(0, n, SECTOR):
                if gm[s : s + SECTOR] != em[s : s + SECTOR]:
                    bad.append((off + s, SECTOR))
                    total_bad += SECTOR
                    if len(samples) < 4096:
                        samples[off + s] = bytes(gm[s : s + SECTOR])
    finally:
        os.close(exp_fd)
    return merge(bad), samples, total_bad, problem


def classify(bad, samples, state, fixtures_dir):
    """Splits mismatched sectors into semantic differences (inside a semantic
    range, and the reader returned exactly what the disk holds if UNDEFINED/
    ZERO/UNMAPPED blocks of differencing files fell through to the parent)
    and real mismatches."""
    sem = sorted(state["semantic_ranges"], key=lambda r: r["offset"])
    starts = [r["offset"] for r in sem]
    alt_fd = None
    if state.get("alt_transparent_raw"):
        alt_fd = os.open(fixtures_dir / state["alt_transparent_raw"], os.O_RDONLY)
    semantic, real = [], []
    try:
        for o, l in bad:
            for s in range(o, o + l, SECTOR):
                i = bisect.bisect_right(starts, s) - 1
                r = sem[i] if i >= 0 else None
                inside = r is not None and s + SECTOR <= r["offset"] + r["length"]
                got = samples.get(s)
                if inside and got is not None and alt_fd is not None:
                    if os.pread(alt_fd, SECTOR, s) == got:
                        semantic.append((s, r))
                        continue
                real.append(s)
    finally:
        if alt_fd is not None:
            os.close(alt_fd)
    return semantic, real


def hexs(b):
    return b[:16].hex(" ")


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

READERS = ["qemu-img", "libvhdi", "dissect", "7zip", "fattools"]


def build(outdir):
    print(f"building fixtures into {outdir} ...", flush=True)
    run(
        ["cargo", "run", "--quiet", "--release", "--example", "make_fixtures", "--", str(outdir)],
        cwd=ROOT,
    )


def control(state, fixtures_dir):
    """A dirty file read without replay must NOT give the expected disk,
    otherwise the log carries nothing a reader needs. Uses dissect."""
    try:
        from dissect.hypervisor.disk.vhdx import VHDX
    except ImportError:
        return "not run (dissect missing)"
    try:
        v = VHDX(Path(fixtures_dir / state["file"]))
        src = CallSource(v.size, lambda off, n: (v.seek(off), v.read(n))[1])
        bad, _, total, problem = compare(src, state, fixtures_dir)
    except Exception as e:  # noqa: BLE001 - any failure means "not readable without replay"
        return f"ok: unreadable without replay ({type(e).__name__}: {str(e)[:80]})"
    if bad or problem:
        return f"ok: without replay {total} bytes differ" + (f", {problem}" if problem else "")
    return None


# ---------------------------------------------------------------------------
# VHD (legacy): fixtures from examples/make_vhd_fixtures.rs
# ---------------------------------------------------------------------------
#
# Readers and what each can be expected to read right (established by reading
# their sources and by running them on these fixtures):
#   7-Zip      fixed, dynamic and differencing chains. It opens the parent by
#              the W2ru locator (minus a leading ".\") or, failing that, by the
#              unicode parent name, relative to the child's directory (so all
#              files of a chain sit in one directory); it never uses W2ku, and
#              checks the parent's unique id. Expected right everywhere.
#   qemu-img   `convert -f vpc`: fixed and dynamic. It has no backing-file
#              support for VHD: a differencing file is read as if it were
#              dynamic (unallocated = zeros, no parent), so it is run there as a
#              probe only.
#   libvhdi    all types and chains (set_parent), but it misreads sector
#              bitmaps whose bits are set one sector at a time (it does not mask
#              the bit it shifts out): expected right only on chains whose every
#              bitmap byte is 0x00 or 0xFF; elsewhere a probe.
#   dissect    dissect.hypervisor.disk.vhd: fixed and dynamic only (no
#              differencing); it ignores the bitmap of dynamic disks, which the
#              writer makes harmless (zeros under clear bits).

VHD_READERS = ["7zip", "qemu-img", "libvhdi", "dissect"]


def vhd_reader_mode(reader, st):
    """'expect', 'known-limitation: why' (run, mismatch reported but no
    failure) or 'skip: why'."""
    differencing = "differencing" in st["disk_types"]
    if reader == "7zip":
        return "expect"
    if reader == "qemu-img":
        if differencing:
            return "known-limitation: qemu's vpc driver has no VHD parent support (reads a differencing file without its parent)"
        return "expect"
    if reader == "libvhdi":
        if st["byte_aligned_bitmaps"]:
            return "expect"
        return "known-limitation: libvhdi misreads bitmaps with runs inside a byte"
    if reader == "dissect":
        if differencing:
            return "skip: dissect.hypervisor has no differencing VHD"
        return "expect"
    raise ValueError(reader)


def open_vhd_reader(name, st, fixtures_dir, tmp):
    top = fixtures_dir / st["file"]
    size = st["virtual_size"]
    if name == "7zip":
        exe = shutil.which("7zz") or shutil.which("7z")
        if not exe:
            raise Unavailable("apt-get install 7zip (7zz)")
        return PipeSource([exe, "e", "-so", "-tvhd", str(top)], size)
    if name == "qemu-img":
        if not have("qemu-img"):
            raise Unavailable("apt-get install qemu-utils")
        raw = Path(tmp) / ("qemu-" + st["name"] + ".raw")
        run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(top), str(raw)])
        s = FileSource(raw)
        s_close = s.close

        def close():
            s_close()
            raw.unlink()

        s.close = close
        return s
    if name == "libvhdi":
        try:
            import pyvhdi
        except ImportError:
            raise Unavailable("pip install libvhdi-python")
        files = []
        for f in st["chain"]:
            h = pyvhdi.file()
            h.open(str(fixtures_dir / f))
            files.append(h)
        for child, parent in zip(files, files[1:]):
            child.set_parent(parent)
        top_h = files[0]
        return CallSource(
            top_h.get_media_size(),
            lambda off, n: top_h.read_buffer_at_offset(n, off),
            lambda: [h.close() for h in files],
        )
    if name == "dissect":
        try:
            from dissect.hypervisor.disk.vhd import VHD
        except ImportError:
            raise Unavailable("pip install dissect.hypervisor")
        fh = open(top, "rb")
        v = VHD(fh)

        def read(off, n):
            v.seek(off)
            return v.read(n)

        return CallSource(v.size, read, fh.close)
    raise ValueError(name)


def check_vhd_one(reader, mode, st, fixtures_dir, tmp):
    if mode.startswith("skip:"):
        return "SKIP", mode[5:].strip()
    known = mode.startswith("known-limitation:")
    why = mode[17:].strip() if known else ""
    try:
        src = open_vhd_reader(reader, st, fixtures_dir, tmp)
    except Unavailable as e:
        return "UNAVAILABLE", str(e)
    except Exception as e:  # noqa: BLE001
        if known:
            return "KNOWN-LIMITATION", f"{why} [observed: {str(e).strip()[:160]}]"
        return "FAIL", f"open failed: {type(e).__name__}: {str(e).strip()[:300]}"
    try:
        bad, samples, total, problem = compare(src, st, fixtures_dir)
        try:
            src.close()
        except Exception as e:  # noqa: BLE001
            problem = problem or f"reader error at close: {e}"
    except Exception as e:  # noqa: BLE001
        if known:
            return "KNOWN-LIMITATION", f"{why} [observed: {str(e).strip()[:160]}]"
        return "FAIL", f"read failed: {type(e).__name__}: {str(e).strip()[:300]}"
    if not bad and not problem:
        return ("PASS (known limitation did not trigger)" if known else "PASS"), ""
    seen = f"{total} bytes differ" + (f"; {problem}" if problem else "")
    if bad:
        seen += f"; first at {bad[0][0]:#x}, {len(bad)} ranges"
    if known:
        return "KNOWN-LIMITATION", f"{why} [observed: {seen}]"
    s0 = bad[0][0] if bad else None
    if s0 is not None and s0 in samples:
        fd = os.open(fixtures_dir / st["expected_raw"], os.O_RDONLY)
        exp = os.pread(fd, SECTOR, s0)
        os.close(fd)
        seen += f"; expected {hexs(exp)} got {hexs(samples[s0])}"
    return "FAIL", seen


def build_vhd(outdir):
    print(f"building VHD fixtures into {outdir} ...", flush=True)
    run(
        ["cargo", "run", "--quiet", "--release", "--example", "make_vhd_fixtures", "--", str(outdir)],
        cwd=ROOT,
    )


def check_vhd(fixtures_dir, tmp, only, readers):
    manifest = json.loads((fixtures_dir / "manifest.json").read_text())
    results = []
    unavailable = {}
    for fx in manifest["fixtures"]:
        print(f"\n=== VHD {fx['name']}: {fx['description']}")
        for st in fx["states"]:
            if only and only not in st["name"]:
                continue
            for reader in readers:
                mode = vhd_reader_mode(reader, st)
                t1 = time.time()
                try:
                    with time_limit(READER_TIMEOUT):
                        status, detail = check_vhd_one(reader, mode, st, fixtures_dir, tmp)
                except TimedOut as e:
                    status, detail = "FAIL", str(e)
                if status == "UNAVAILABLE":
                    unavailable[reader] = detail
                results.append((st, reader, status, detail))
                took = f"{time.time() - t1:5.1f}s" if status != "SKIP" else "      "
                line = f"  {st['name']:<22} {reader:<9} {took} {status}"
                if detail and status != "PASS":
                    line += f": {detail}"
                print(line, flush=True)

    print("\n=== VHD summary")
    for reader in readers:
        counts = {}
        for st, r, s, d in results:
            if r == reader:
                k = s.split(" ")[0]
                counts[k] = counts.get(k, 0) + 1
        extra = f" (unavailable: {unavailable[reader]})" if reader in unavailable else ""
        print(f"  {reader:<9} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + extra)

    print("\n=== VHD writer features and the independent readers that read them right")
    by_feature, by_state = {}, {}
    for st, r, s, d in results:
        by_state.setdefault(st["name"], set())
        for f in st["features"]:
            by_feature.setdefault(f, set())
        if s.startswith("PASS"):
            by_state[st["name"]].add(r)
            for f in st["features"]:
                by_feature[f].add(r)
    for f in sorted(by_feature):
        print(f"  {f:<40} {', '.join(sorted(by_feature[f])) or '-'}")
    unconfirmed = [n for n, rs in by_state.items() if not rs]
    failures = [(st["name"], r, d) for st, r, s, d in results if s == "FAIL"]
    if unconfirmed:
        print("\n=== VHD states no independent reader read right")
        for n in unconfirmed:
            print("  " + n)
        for r, hint in unavailable.items():
            print(f"  (reader {r} was unavailable: {hint})")
    if failures:
        print("\n=== VHD FAILURES (a reader expected to be right disagrees with the writer)")
        for n, r, d in failures:
            print(f"  {n} / {r}: {d}")
    ok = not failures and not unconfirmed
    npass = sum(1 for _, _, s, _ in results if s.startswith("PASS"))
    print(f"\nVHD {'PASS' if ok else 'FAIL'}: {npass} reader checks passed, {len(failures)} failed")
    return 0 if ok else 1



# ---------------------------------------------------------------------------
# VMDK: fixtures from examples/make_vmdk_fixtures.rs
# ---------------------------------------------------------------------------
#
# Readers and what each can be expected to read right (established by reading
# their sources and by running them on these fixtures; the manifest lists each
# state's chain, extent kinds and facts, and vmdk_reader_mode decides):
#   qemu-img   `convert -f vmdk` of the state's disk file: monolithicSparse,
#              twoGbMaxExtent*, monolithicFlat (with the FLAT offset), vmfs,
#              streamOptimized, vmfsSparse (COWD) and seSparse (read only; it
#              refuses a volatile header asking for a journal replay, which is
#              the refusal ckptfs must make too). Zeroed-grain GTEs and SESparse
#              "zero" and "unmapped" read as zeros (the project's semantics).
#              It follows parentFileNameHint as a path relative to the child
#              (no Windows or /vmfs/volumes hints), uses the descriptor's bytes
#              as file names (no windows-1252 decoding), skips ZERO extent lines
#              (read from a copy where each ZERO line is a FLAT extent on an
#              all-hole file) and reads only the primary grain directory. A state whose primary
#              GD is damaged is read from a copy whose header points gdOffset at
#              the redundant GD (this confirms the redundant GD and its tables).
#   libvmdk    pyvmdk, parents attached with set_parent (so hints are not its
#              test): hosted sparse, streamOptimized, flat, COWD; no SESparse
#              ("unsupported extent type"). It ignores a FLAT extent's offset
#              (reads from the start of the file), reads a zeroed-grain GTE (1)
#              as a grain at sector 1 of the file, cannot open a descriptor
#              with a ZERO extent; windows-1252 descriptors are fine. Primary GD
#              only: run on the rgd-swapped copy like qemu.
#   dissect    dissect.hypervisor.disk.vmdk: hosted sparse, streamOptimized,
#              flat, COWD, SESparse; parents by the hint's file name beside the
#              child (every hint kind here). It reads SESparse "unmapped" grains
#              from the parent (a semantic difference: compared with the
#              state's alt-unmapped raw and reported, not failed), ignores FLAT
#              offsets and ZERO extents, decodes descriptors as UTF-8 only, reads
#              the primary GD only (rgd-swapped copy), and reads an SESparse
#              extent whose journal needs replay without replaying it.
#   All three misread a split sparse extent whose size is not a grain
#   multiple (they read on into the padding of its last grain, or fail):
#   VMware does not write such extents, the format does not forbid them; that
#   fixture (odd-extents) is a documented probe no reader confirms, read by
#   ckptfs's tests/vmdk_chains.rs.

VMDK_READERS = ["qemu-img", "libvmdk", "dissect"]


def vmdk_reader_mode_base(reader, st):
    """'expect', 'expect-refusal', 'known-limitation: why', 'skip: why';
    ' rgd-swap' / ' zero-as-flat' after expect: read a prepared copy (see
    prepared_copy)."""
    kinds, facts = set(st["extent_kinds"]), set(st["facts"])
    swap = " rgd-swap" if "damaged primary GD" in facts else ""
    if reader == "qemu-img":
        if "journal needs replay" in facts:
            return "expect-refusal"
        if "hint windows absolute" in facts or "hint /vmfs/volumes" in facts:
            return "known-limitation: qemu opens parentFileNameHint as a path relative to the child only"
        if "windows-1252" in facts:
            return "known-limitation: qemu does not decode windows-1252 descriptors (file names with é)"
        if "ZERO" in kinds:
            # qemu skips ZERO lines: it reads a copy where they are FLAT
            # extents on all-hole files.
            return "expect" + swap + " zero-as-flat"
        return "expect" + swap
    if reader == "libvmdk":
        if "SESPARSE" in kinds:
            return "skip: libvmdk has no SESparse extents"
        if "ZERO" in kinds:
            return "known-limitation: libvmdk cannot open a descriptor with a ZERO extent"
        if "flat offset" in facts:
            return "known-limitation: libvmdk ignores a FLAT extent's offset"
        if "zero grains" in facts:
            return "known-limitation: libvmdk reads a zeroed-grain GTE as a grain at sector 1"
        return "expect" + swap
    if reader == "dissect":
        if "journal needs replay" in facts:
            return "known-limitation: dissect reads an SESparse extent without replaying its journal (ckptfs must refuse)"
        if "ZERO" in kinds:
            return "known-limitation: dissect skips ZERO extents"
        if "flat offset" in facts:
            return "known-limitation: dissect ignores a FLAT extent's offset"
        if "windows-1252" in facts:
            return "known-limitation: dissect decodes descriptors as UTF-8 only"
        if st["virtual_size"] % 4096:
            return "known-limitation: dissect reads whole 4 KiB blocks and fails on a disk whose size is not a 4 KiB multiple"
        return "expect" + swap
    raise ValueError(reader)


def vmdk_reader_mode(reader, st):
    mode = vmdk_reader_mode_base(reader, st)
    if mode.startswith("expect") and "extent ends inside a grain" in st["facts"]:
        # A split sparse extent whose size is not a grain multiple (VMware
        # makes them multiples; the format allows it): qemu reads on into
        # the padding of the extent's last grain instead of the next extent,
        # libvmdk likewise.
        return f"known-limitation: {reader} does not stop at an extent that ends inside a grain"
    return mode


def prepared_copy(st, fixtures_dir, tmp, rgd_swap, zero_as_flat):
    """The state's files copied. rgd_swap: each KDMV header with the
    redundant-GD flag gets gdOffset := rgdOffset. zero_as_flat: each ZERO
    extent line of a descriptor becomes a FLAT extent on an all-hole file of
    its size (for a reader that skips ZERO lines; the rest of the descriptor,
    offsets included, is then still checked)."""
    import re

    d = Path(tempfile.mkdtemp(prefix="prepared-", dir=tmp))
    for f in st["files"]:
        shutil.copyfile(fixtures_dir / st["dir"] / f, d / f)
        with open(d / f, "r+b") as fh:
            h = fh.read(512)
            if rgd_swap and h[:4] == b"KDMV" and struct.unpack_from("<I", h, 8)[0] & 2:
                rgd = struct.unpack_from("<Q", h, 48)[0]
                fh.seek(56)
                fh.write(struct.pack("<Q", rgd))
        if zero_as_flat and h.startswith(b"# Disk DescriptorFile"):
            text = (d / f).read_bytes()
            n = [0]

            def flat(m):
                n[0] += 1
                name = f"zero-extent-{n[0]}.bin"
                with open(d / name, "wb") as z:
                    z.truncate(int(m.group(2)) * 512)
                return m.group(1) + b" " + m.group(2) + b' FLAT "' + name.encode() + b'" 0'

            (d / f).write_bytes(re.sub(rb"(?m)^(RW|RDONLY|NOACCESS) (\d+) ZERO[ \t]*$", flat, text))
    return d


def open_vmdk_reader(name, st, d, tmp):
    top = d / st["file"]
    if name == "qemu-img":
        if not have("qemu-img"):
            raise Unavailable("apt-get install qemu-utils")
        raw = Path(tempfile.mkdtemp(prefix="qemu-", dir=tmp)) / "out.raw"
        run(["qemu-img", "convert", "-f", "vmdk", "-O", "raw", str(top), str(raw)])
        s = FileSource(raw)
        s_close = s.close

        def close():
            s_close()
            shutil.rmtree(raw.parent, ignore_errors=True)

        s.close = close
        return s
    if name == "libvmdk":
        try:
            import pyvmdk
        except ImportError:
            raise Unavailable("pip install libvmdk-python")
        handles = []
        for f in st["chain"]:
            h = pyvmdk.handle()
            h.open(str(d / f))
            h.open_extent_data_files()
            handles.append(h)
        for child, parent in zip(handles, handles[1:]):
            child.set_parent(parent)
        top_h = handles[0]
        return CallSource(
            top_h.get_media_size(),
            lambda off, n: top_h.read_buffer_at_offset(n, off),
            lambda: [h.close() for h in handles],
        )
    if name == "dissect":
        try:
            from dissect.hypervisor.disk.vmdk import VMDK
        except ImportError:
            raise Unavailable("pip install dissect.hypervisor")
        v = VMDK(top)

        def read(off, n):
            v.seek(off)
            return v.read(n)

        return CallSource(v.size, read)
    raise ValueError(name)


def check_vmdk_one(reader, mode, st, fixtures_dir, tmp, semantic_notes):
    if mode.startswith("skip:"):
        return "SKIP", mode[5:].strip()
    known = mode.startswith("known-limitation:")
    why = mode[17:].strip() if known else ""
    refusal = mode == "expect-refusal"
    d = fixtures_dir / st["dir"]
    try:
        if " rgd-swap" in mode or " zero-as-flat" in mode:
            d = prepared_copy(st, fixtures_dir, tmp, " rgd-swap" in mode, " zero-as-flat" in mode)
        src = open_vmdk_reader(reader, st, d, tmp)
        bad, samples, total, problem = compare(src, st, fixtures_dir / st["dir"])
        try:
            src.close()
        except Exception as e:  # noqa: BLE001
            problem = problem or f"reader error at close: {e}"
    except Unavailable as e:
        return "UNAVAILABLE", str(e)
    except Exception as e:  # noqa: BLE001
        msg = f"{type(e).__name__}: {str(e).strip()[-300:]}"
        if refusal and ("journal" in msg.lower() or "dirty" in msg.lower()):
            return "PASS (refused)", msg
        if known:
            return "KNOWN-LIMITATION", f"{why} [observed: {msg[:200]}]"
        return "FAIL", msg
    if refusal:
        return "FAIL", "read a state it must refuse" + (f" ({total} bytes differ)" if bad else "")
    if known and "journal needs replay" in st["facts"]:
        # Reading at all is the limitation: the state must be refused.
        return "KNOWN-LIMITATION", f"{why} [observed: it read the state, {total} bytes differ from the unreplayed data]"
    if not bad and not problem:
        return ("PASS (known limitation did not trigger)" if known else "PASS"), ""
    seen = f"{total} bytes differ" + (f"; {problem}" if problem else "")
    if bad:
        seen += f"; first at {bad[0][0]:#x}, {len(bad)} ranges"
    alt = st.get("alt_unmapped_raw")
    if alt and not problem and samples and len(samples) * SECTOR >= total:
        fd = os.open(fixtures_dir / st["dir"] / alt, os.O_RDONLY)
        try:
            if all(os.pread(fd, SECTOR, s) == g for s, g in samples.items()):
                semantic_notes.append(
                    f"{reader} on {st['name']}: {total} bytes differ, all where SESparse 'unmapped' grains are: "
                    f"{reader} read the parent there, the project reads zeros"
                )
                return "PASS-SEMANTIC", "differs only in SESparse unmapped grains, which it reads from the parent"
        finally:
            os.close(fd)
    if known:
        return "KNOWN-LIMITATION", f"{why} [observed: {seen}]"
    s0 = bad[0][0] if bad else None
    if s0 is not None and s0 in samples:
        fd = os.open(fixtures_dir / st["dir"] / st["expected_raw"], os.O_RDONLY)
        exp = os.pread(fd, SECTOR, s0)
        os.close(fd)
        seen += f"; expected {hexs(exp)} got {hexs(samples[s0])}"
    return "FAIL", seen


def build_vmdk(outdir):
    print(f"building VMDK fixtures into {outdir} ...", flush=True)
    run(
        ["cargo", "run", "--quiet", "--release", "--example", "make_vmdk_fixtures", "--", str(outdir)],
        cwd=ROOT,
    )


def check_vmdk(fixtures_dir, tmp, only, readers):
    manifest = json.loads((fixtures_dir / "manifest.json").read_text())
    results, unavailable, semantic_notes = [], {}, []
    for fx in manifest["fixtures"]:
        print(f"\n=== VMDK {fx['name']}: {fx['description']}")
        for st in fx["states"]:
            if only and only not in st["name"]:
                continue
            for reader in readers:
                mode = vmdk_reader_mode(reader, st)
                t1 = time.time()
                try:
                    with time_limit(READER_TIMEOUT):
                        status, detail = check_vmdk_one(reader, mode, st, fixtures_dir, tmp, semantic_notes)
                except TimedOut as e:
                    status, detail = "FAIL", str(e)
                if status == "UNAVAILABLE":
                    unavailable[reader] = detail
                results.append((st, reader, status, detail))
                took = f"{time.time() - t1:5.1f}s" if status != "SKIP" else "      "
                line = f"  {st['name']:<30} {reader:<9} {took} {status}"
                if detail and status != "PASS":
                    line += f": {detail[:300]}"
                print(line, flush=True)

    print("\n=== VMDK summary")
    for reader in readers:
        counts = {}
        for st, r, s, d in results:
            if r == reader:
                k = s.split(" ")[0]
                counts[k] = counts.get(k, 0) + 1
        extra = f" (unavailable: {unavailable[reader]})" if reader in unavailable else ""
        print(f"  {reader:<9} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + extra)

    print("\n=== VMDK writer features and the independent readers that confirmed them")
    by_feature, by_state = {}, {}
    for st, r, s, d in results:
        by_state.setdefault(st["name"], set())
        for f in st["features"]:
            by_feature.setdefault(f, set())
        if s.startswith("PASS") and s != "PASS-SEMANTIC":
            by_state[st["name"]].add(r)
            for f in st["features"]:
                by_feature[f].add(r)
    for f in sorted(by_feature):
        print(f"  {f:<40} {', '.join(sorted(by_feature[f])) or '-'}")
    if semantic_notes:
        print("\n=== VMDK semantic differences (readers disagreeing with the project's decided semantics)")
        for n in semantic_notes:
            print("  " + n)
    # A state no reader can read right is a failure unless every reader's
    # result there is a documented limitation or skip.
    documented = {
        n
        for n in by_state
        if all(s in ("KNOWN-LIMITATION", "SKIP") for st, r, s, d in results if st["name"] == n)
    }
    unconfirmed = [n for n, rs in by_state.items() if not rs and n not in documented]
    documented_unconfirmed = [n for n, rs in by_state.items() if not rs and n in documented]
    if documented_unconfirmed:
        print("\n=== VMDK states no available reader can confirm (documented reader limitations; ckptfs's tests cover them)")
        for n in documented_unconfirmed:
            print("  " + n)
    failures = [(st["name"], r, d) for st, r, s, d in results if s == "FAIL"]
    if unconfirmed:
        print("\n=== VMDK states no independent reader read right")
        for n in unconfirmed:
            print("  " + n)
        for r, hint in unavailable.items():
            print(f"  (reader {r} was unavailable: {hint})")
    if failures:
        print("\n=== VMDK FAILURES (a reader expected to be right disagrees with the writer)")
        for n, r, d in failures:
            print(f"  {n} / {r}: {d}")
    ok = not failures and not unconfirmed
    npass = sum(1 for _, _, s, _ in results if s.startswith("PASS"))
    print(f"\nVMDK {'PASS' if ok else 'FAIL'}: {npass} reader checks passed, {len(failures)} failed")
    return 0 if ok else 1



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--format", choices=["all", "vhdx", "vhd", "vmdk"], default="all", help="which writer to check")
    ap.add_argument("--fixtures", help="use this directory (build into it unless --no-build)")
    ap.add_argument("--vhd-fixtures", help="the same for the VHD fixtures")
    ap.add_argument("--vmdk-fixtures", help="the same for the VMDK fixtures")
    ap.add_argument("--no-build", action="store_true", help="reuse fixtures already in --fixtures/--vhd-fixtures/--vmdk-fixtures")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--only", help="only states whose name contains this")
    ap.add_argument("--readers", help="comma-separated subset of " + ",".join(READERS + VHD_READERS + VMDK_READERS))
    args = ap.parse_args()

    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="crosscheck-vhdx-")
    codes = []
    try:
        work = Path(tmp) / "work"
        work.mkdir(exist_ok=True)
        if args.format in ("all", "vhdx"):
            fixtures_dir = Path(args.fixtures) if args.fixtures else Path(tmp) / "fixtures"
            if not args.no_build:
                build(fixtures_dir)
            manifest = json.loads((fixtures_dir / "manifest.json").read_text())
            ws = Workspace(fixtures_dir, work)
            readers = [r for r in args.readers.split(",") if r in READERS] if args.readers else READERS
            codes.append(check_all(manifest, fixtures_dir, ws, args.only, readers))
        if args.format in ("all", "vhd"):
            vhd_dir = Path(args.vhd_fixtures) if args.vhd_fixtures else Path(tmp) / "vhd-fixtures"
            if not args.no_build:
                build_vhd(vhd_dir)
            readers = [r for r in args.readers.split(",") if r in VHD_READERS] if args.readers else VHD_READERS
            codes.append(check_vhd(vhd_dir, work, args.only, readers))
        if args.format in ("all", "vmdk"):
            vmdk_dir = Path(args.vmdk_fixtures) if args.vmdk_fixtures else Path(tmp) / "vmdk-fixtures"
            if not args.no_build:
                build_vmdk(vmdk_dir)
            readers = [r for r in args.readers.split(",") if r in VMDK_READERS] if args.readers else VMDK_READERS
            codes.append(check_vmdk(vmdk_dir, work, args.only, readers))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntotal time {time.time() - t0:.0f}s")
    sys.exit(max(codes) if codes else 0)


def check_all(manifest, fixtures_dir, ws, only, readers):
    results = []  # (state, reader, status, detail)
    semantic_notes = []
    controls = []
    unavailable = {}
    for fx in manifest["fixtures"]:
        print(f"\n=== {fx['name']}: {fx['description']}")
        for st in fx["states"]:
            if only and only not in st["name"]:
                continue
            if st["dirty_files"] and st["file"] in st["dirty_files"]:
                c = control(st, fixtures_dir)
                controls.append((st["name"], c))
                print(f"  {st['name']:<34} {'control':<9}        " + (c or "FAIL: the file reads correctly WITHOUT log replay"))
            for reader in readers:
                mode = st["independent_readers"].get(reader, "skip: not listed")
                t1 = time.time()
                try:
                    with time_limit(READER_TIMEOUT):
                        status, detail = check_one(reader, mode, st, ws, fixtures_dir, semantic_notes)
                except TimedOut as e:
                    status, detail = "FAIL", str(e)
                if status == "UNAVAILABLE":
                    unavailable[reader] = detail
                results.append((st, reader, status, detail))
                took = f"{time.time() - t1:5.1f}s" if status != "SKIP" else "      "
                line = f"  {st['name']:<34} {reader:<9} {took} {status}"
                if detail and status != "PASS":
                    line += f": {detail}"
                print(line, flush=True)
    return summarize(manifest, results, semantic_notes, controls, unavailable)


def check_one(reader, mode, st, ws, fixtures_dir, semantic_notes):
    if mode.startswith("skip:"):
        return "SKIP", mode[5:].strip()
    known = mode.startswith("known-limitation:")
    try:
        src = open_reader(reader, mode, st, ws)
    except Unavailable as e:
        return "UNAVAILABLE", str(e)
    except Exception as e:  # noqa: BLE001
        if known:
            return "KNOWN-LIMITATION", f"{mode[17:].strip()} [observed: {str(e).strip()[:160]}]"
        return "FAIL", f"open failed: {type(e).__name__}: {str(e).strip()[:300]}"
    try:
        bad, samples, total, problem = compare(src, st, fixtures_dir)
        try:
            src.close()
        except Exception as e:  # noqa: BLE001
            problem = problem or f"reader error at close: {e}"
    except Exception as e:  # noqa: BLE001
        if known:
            return "KNOWN-LIMITATION", f"{mode[17:].strip()} [observed: {str(e).strip()[:160]}]"
        return "FAIL", f"read failed: {type(e).__name__}: {str(e).strip()[:300]}"
    if not bad and not problem:
        return ("PASS (known limitation did not trigger)" if known else "PASS"), ""
    if known:
        seen = f"{total} bytes differ" + (f"; {problem}" if problem else "")
        return "KNOWN-LIMITATION", f"{mode[17:].strip()} [observed: {seen}]"
    if problem:
        return "FAIL", problem
    semantic, real = classify(bad, samples, st, fixtures_dir)
    if real:
        s0 = real[0]
        got = samples.get(s0, b"")
        fd = os.open(fixtures_dir / st["expected_raw"], os.O_RDONLY)
        exp = os.pread(fd, SECTOR, s0)
        os.close(fd)
        ranges = merge([(s, SECTOR) for s in real[:2000]])[:6]
        return "FAIL", (
            f"{total} bytes differ; first at {s0:#x}: expected {hexs(exp)} got {hexs(got)}; "
            f"ranges {[(hex(o), l) for o, l in ranges]}"
        )
    # Only semantic differences: group by decided range.
    groups = {}
    for s, r in semantic:
        groups.setdefault((r["offset"], r["length"], r["file"], r["state"]), []).append(s)
    for (o, l, f, state), sectors in groups.items():
        s0 = sectors[0]
        semantic_notes.append(
            f"{reader} on {st['name']}: {f} has a {state} block at [{o:#x}, {o + l:#x}); the "
            f"project reads zeros there, {reader} read through to the parent chain: "
            f"{len(sectors) * SECTOR} bytes differ, first at {s0:#x}: expected "
            f"{hexs(bytes(16))} got {hexs(samples[s0])}"
        )
    return "PASS-SEMANTIC", (
        f"{total} bytes differ, all in UNDEFINED/ZERO/UNMAPPED blocks of differencing files "
        "where it returned the parent chain's data"
    )


def summarize(manifest, results, semantic_notes, controls, unavailable):
    print("\n=== Summary")
    failures = [(st["name"], r, d) for st, r, s, d in results if s == "FAIL"]
    bad_controls = [n for n, c in controls if c is None]
    for reader in READERS:
        counts = {}
        for st, r, s, d in results:
            if r == reader:
                k = s.split(" ")[0]
                counts[k] = counts.get(k, 0) + 1
        extra = f" (unavailable: {unavailable[reader]})" if reader in unavailable else ""
        print(f"  {reader:<9} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + extra)

    # Which reader confirmed which feature (own-file features of each state).
    confirmed, semantic_confirmed, carriers = {}, {}, {}
    for st, r, s, d in results:
        for f in st["features"]:
            carriers.setdefault(f, []).append((st, r, s, d))
            if s.startswith("PASS") and s != "PASS-SEMANTIC":
                confirmed.setdefault(f, set()).add(r)
            elif s == "PASS-SEMANTIC":
                semantic_confirmed.setdefault(f, set()).add(r)
    print("\n=== Writer features and the independent readers that confirmed them")
    unconfirmed_bad, unconfirmed_known = [], []
    for f in sorted(carriers):
        rs = sorted(confirmed.get(f, ()))
        ss = sorted(semantic_confirmed.get(f, set()) - set(rs))
        txt = ", ".join(rs) if rs else "-"
        if ss:
            txt += "   (layout also matched, with semantic differences, by: " + ", ".join(ss) + ")"
        print(f"  {f:<40} {txt}")
        if not rs:
            reasons = {d for _, _, s, d in carriers[f] if s in ("KNOWN-LIMITATION", "SKIP") and d}
            documented = all(s in ("KNOWN-LIMITATION", "SKIP") for _, _, s, _ in carriers[f]) and any(
                s == "KNOWN-LIMITATION" for _, _, s, _ in carriers[f]
            )
            (unconfirmed_known if documented else unconfirmed_bad).append((f, reasons))

    if semantic_notes:
        print("\n=== Semantic differences (readers disagreeing with the project's decided semantics)")
        for n in semantic_notes:
            print("  " + n)
    if unconfirmed_known:
        print("\n=== Features no available independent reader can confirm (documented reader limitations)")
        for f, reasons in unconfirmed_known:
            print(f"  {f}: " + " | ".join(sorted(reasons))[:600])
    if unconfirmed_bad:
        print("\n=== UNCONFIRMED features (no reader confirmed them and no documented reason)")
        for f, reasons in unconfirmed_bad:
            print(f"  {f}")
        for r, hint in unavailable.items():
            print(f"  (reader {r} was unavailable: {hint})")
    if bad_controls:
        print("\n=== Dirty fixtures that read correctly without replay (the log is not load-bearing)")
        for n in bad_controls:
            print("  " + n)
    if failures:
        print("\n=== FAILURES")
        for n, r, d in failures:
            print(f"  {n} / {r}: {d}")
    ok = not failures and not unconfirmed_bad and not bad_controls
    npass = sum(1 for _, _, s, _ in results if s.startswith("PASS"))
    print(f"\n{'PASS' if ok else 'FAIL'}: {npass} reader checks passed, {len(failures)} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    main()
