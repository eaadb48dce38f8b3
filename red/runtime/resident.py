"""Hand back to the kernel the library pages a CPU-only torch process read once and will not run.

PyPI's torch is its CUDA build. ``import torch`` maps its CUDA libraries (cuBLASLt, NVRTC, nvJitLink,
libtorch_cuda, ...) into every process, and loading them reads about 230 MB of their pages even on a
host with no GPU; libtorch_cpu adds about 90 MB, of which training uses about 40. Measured with torch
2.15+cu132 here: 388 MB of a fresh ``import torch``'s 689 MB PSS were such clean file pages, and PSS
counts each in full in the one process that maps it. They are clean copies of files on disk, so the
kernel could drop them under memory pressure anyway, but until it must they stay charged to the
process (and to its container's memory cgroup, as page cache).

`release_file_pages` asks the kernel to reclaim them now (``madvise(MADV_PAGEOUT)``, Linux 5.4+). This
cannot lose data: only read-only mappings are asked about, and of those the kernel reclaims only clean
pages that no other process maps, exactly as it would under pressure. A page used later is read
back on its first use: the pages a round runs come back in round 1 and the rest never do.

Loading torch takes 2 s here, and its libraries' pages pile up all that time: `releasing_file_pages` hands
them back every 0.1 s while a block (``import torch``) runs, and once more at its end. Measured here, one
process, three times each: peak PSS while importing torch 524 MB without it, 379-380 MB with it, and
326-327 MB either way after the first training steps; the import took 2.1-2.5 s instead of 1.7-1.8 s
(pages handed back mid-import that it still needed are read again).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21  # <linux/mman-common.h>, since Linux 5.4


def file_mappings(maps: str) -> list[tuple[int, int]]:
    """The (start, end) address ranges of ``maps`` (the text of /proc/PID/maps) that map a file read-only."""
    out = []
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        # Pseudo-files ([heap], [stack], [vdso]) and anonymous mappings have no path; /dev/shm and
        # deleted files are memory, not pages of a file on disk.
        if len(parts) < 6 or not parts[5].startswith("/") or parts[5].startswith("/dev/"):
            continue
        if "w" in parts[1]:  # a library's data: written pages there are its state, not the file's
            continue
        if parts[5].endswith("(deleted)"):
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        out.append((start, end))
    return out


@functools.cache
def _madvise() -> Any:
    # The process's own symbols: libc is always loaded (find_library would run ldconfig each time).
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def release_file_pages() -> int:
    """Ask the kernel to reclaim this process's clean file-backed pages (see the module's docstring).
    Returns how many bytes of mappings it was asked about; 0 where it cannot ask (not Linux, or a kernel
    without MADV_PAGEOUT), which only means the pages stay resident."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        with open("/proc/self/maps") as f:
            ranges = file_mappings(f.read())
        madvise = _madvise()
    except (OSError, AttributeError):
        return 0
    asked = 0
    for start, end in ranges:
        if madvise(start, end - start, MADV_PAGEOUT) != 0:
            # EINVAL: a kernel before 5.4. Other errors (a mapping gone meanwhile) only skip one range.
            if ctypes.get_errno() == 22 and asked == 0:
                log.debug("this kernel has no MADV_PAGEOUT: library pages stay resident")
                return 0
            continue
        asked += end - start
    return asked


@contextlib.contextmanager
def releasing_file_pages(every: float = 0.1) -> Iterator[None]:
    """`release_file_pages` every ``every`` seconds (from a thread) while the block runs, and once at its end."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(every) and release_file_pages():
            pass

    thread = threading.Thread(target=loop, name="red-release-file-pages", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        release_file_pages()


__all__ = ["MADV_PAGEOUT", "file_mappings", "release_file_pages", "releasing_file_pages"]
