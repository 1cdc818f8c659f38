#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""make_corpus.py - write fuzz_image's seeds (corpus/) and regressions.

Each seed is one input in fuzz_image.c's format (its header comment): a
mode byte, then a record stream (TXN, CKPT) or patches (SUPER, LOG, RAW).
The record layouts are engine/ondisk_rec.h's; the inode numbers are those
of fuzz_image's base image (root 1, /d 2, /d/f1 3, /f2 4, /l 5, /p 6,
/g 7, /d/e 8). Run it from anywhere; it rewrites the files it owns.
"""
import os
import struct

SUPER, TXN, CKPT, LOG, RAW = range(5)
INODE, DADD, DDEL, EXTENT, PUNCH, SYMLINK, IFREE = range(1, 8)
S_IFREG, S_IFDIR, S_IFLNK = 0o100000, 0o040000, 0o120000
DT_DIR, DT_REG, DT_LNK = 4, 8, 10
T = 1700000000 * 10**9


def mode(m, flags=0):
    return bytes([m + 5 * flags])


def pad8(b):
    return b + bytes(-len(b) % 8)


def rec(t, body):
    body = pad8(body)
    return struct.pack('<HHI', t, 0, 8 + len(body)) + body


def inode(ino, mode_, nlink, size=0, gen=1):
    return rec(INODE, struct.pack('<QQIIIIQQQQQ', ino, gen, mode_, nlink,
                                  0, 0, 0, size, T, T, T))


def dirent(add, d, name, ino=0, typ=0):
    n = name.encode()
    return rec(DADD if add else DDEL,
               struct.pack('<QQBBHI', d, ino, typ, 0, len(n), 0) + n)


def extent(ino, lblk, pblk, n, unwritten=0):
    return rec(EXTENT, struct.pack('<QQQQII', ino, lblk, pblk, n,
                                   unwritten, 0))


def punch(ino, lblk, n):
    return rec(PUNCH, struct.pack('<QQQ', ino, lblk, n))


def symlink(ino, target):
    t = target.encode()
    return rec(SYMLINK, struct.pack('<QII', ino, len(t), 0) + t)


def ifree(ino):
    return rec(IFREE, struct.pack('<Q', ino))


def patch(off, data):
    return struct.pack('<HB', off, len(data)) + data


def raw_patch(off, data):
    return struct.pack('<I', off)[:3] + bytes([len(data)]) + data


SEEDS = {
    'txn-new-file': mode(TXN) + inode(20, S_IFREG | 0o644, 1, 6000)
    + dirent(True, 1, 'new', 20, DT_REG) + extent(20, 0, 300, 2),
    'txn-mixed': mode(TXN) + inode(21, S_IFDIR | 0o755, 2)
    + dirent(True, 1, 'nd', 21, DT_DIR) + inode(1, S_IFDIR | 0o755, 4)
    + inode(22, S_IFLNK | 0o777, 1, 4) + symlink(22, 'nd/x')
    + dirent(True, 21, 's', 22, DT_LNK) + punch(3, 1, 1)
    + dirent(False, 1, 'f2') + inode(4, S_IFREG | 0o644, 0, 100)
    + ifree(4) + extent(3, 5, 400, 3, 1),
    'txn-empty': mode(TXN),
    'ckpt-tree': mode(CKPT) + inode(1, S_IFDIR | 0o755, 3)
    + inode(2, S_IFDIR | 0o755, 2) + inode(3, S_IFREG | 0o644, 1, 8192)
    + extent(3, 0, 100, 2) + inode(4, S_IFLNK | 0o777, 1, 3)
    + symlink(4, 'd/f') + dirent(True, 1, 'd', 2, DT_DIR)
    + dirent(True, 2, 'f', 3, DT_REG) + dirent(True, 1, 'l', 4, DT_LNK),
    'super-state': mode(SUPER, 2) + patch(136, struct.pack('<I', 1)),
    'super-log-geometry': mode(SUPER, 3)
    + patch(168, struct.pack('<Q', 1 << 16)),
    'super-ckpt-geometry': mode(SUPER, 2)
    + patch(176, struct.pack('<QQ', 3, 40)),
    'super-magic': mode(SUPER) + patch(0, b'XOLIOFS'),
    'log-used': mode(LOG, 1) + bytes([0]) + patch(40, struct.pack('<I', 4095)),
    'log-seq': mode(LOG, 1) + bytes([1]) + patch(8, struct.pack('<Q', 99)),
    'raw-log-payload': mode(RAW) + raw_patch(8192 + 64, b'\x07\x00\x00\x00')
    + raw_patch(4096 * 3 + 64, bytes(16)),
}

# Inputs that crashed the engine once, each named for what it guards; the
# fuzz-regressions test runs them. (Not seeds: a campaign stops at the first
# input that crashes, so one that still does would stop it at once.)
REGRESSIONS = {
    # A directory cycle that mount accepted sent rename's ancestor check
    # (is_ancestor) into endless recursion.
    'rename-with-root-named-in-subdir': mode(TXN)
    + dirent(True, 2, 'up', 1, DT_DIR),
    'rename-with-directory-cycle': mode(TXN) + inode(40, S_IFDIR | 0o755, 2)
    + dirent(True, 2, 'a', 40, DT_DIR) + dirent(True, 40, 'b', 2, DT_DIR),
}

top = os.path.dirname(os.path.abspath(__file__))
for sub, inputs in (('corpus', SEEDS), ('regressions', REGRESSIONS)):
    os.makedirs(os.path.join(top, sub), exist_ok=True)
    for name, data in inputs.items():
        with open(os.path.join(top, sub, name), 'wb') as f:
            f.write(data)
