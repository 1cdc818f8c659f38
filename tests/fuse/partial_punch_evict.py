#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Regression: a punch of part of a block must survive the folio's
eviction. Found by randops (seed 2, cache_size=48M): a 1-byte punch at a
block's start read back the old byte once the cache pushed the folio out.

    partial_punch_evict.py MOUNTDIR   (mounted with a small cache_size, e.g.
                                       48M, so that reading 96 MiB evicts)
"""
import ctypes
import ctypes.util
import os
import random
import sys

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                           ctypes.c_int64]
PUNCH = 3  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
M = 1 << 20


def main():
    d = sys.argv[1]
    rnd = random.Random(1)
    fd = os.open(os.path.join(d, "punched"), os.O_CREAT | os.O_RDWR)
    big = os.open(os.path.join(d, "evictor"), os.O_CREAT | os.O_RDWR)
    for o in range(0, 96 * M, M):
        os.pwrite(big, os.urandom(M), o)
    os.fsync(big)
    bad = []
    for it in range(12):
        base = rnd.randrange(16) * M + rnd.randrange(1, 4096)
        os.pwrite(fd, b"\xe3" * M, base)
        os.fsync(fd)
        off = (base // 4096 + rnd.randrange(1, 200)) * 4096 + \
            rnd.choice([0, 0, 1, 4095])
        if libc.fallocate(fd, PUNCH, off, 1) != 0:
            print("FAIL partial-punch-evict: fallocate: %s" %
                  os.strerror(ctypes.get_errno()))
            return 1
        for o in range(0, 96 * M, M):  # push the folio out of the cache
            os.pread(big, M, o)
        b = os.pread(fd, 1, off)
        if b != b"\0":
            bad.append("byte %d (block offset %d) reads %r" % (off, off % 4096, b))
    os.close(fd)
    os.close(big)
    os.unlink(os.path.join(d, "evictor"))
    if bad:
        print("FAIL partial-punch-evict: %d of 12 punched bytes came back "
              "after eviction: %s" % (len(bad), "; ".join(bad)))
        return 1
    print("PASS partial-punch-evict")
    return 0


if __name__ == "__main__":
    sys.exit(main())
