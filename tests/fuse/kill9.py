#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""kill9.py - what an fsync promised survives kill -9 of the daemon.

  kill9.py write MNT STATE   create files with a per-file pattern, fsync
                             each, then record its name in STATE (a local
                             file, fsync'd too); also keep one file that
                             is never fsync'd. Runs until the mount dies.
  kill9.py verify MNT STATE  every file STATE names is there, whole.
"""
import os
import sys


def pattern(i, size):
    seed = (i * 2654435761) & 0xFFFFFFFF
    block = bytes((seed >> (8 * (k % 4)) ^ k) & 0xFF for k in range(4096))
    return (block * (size // 4096 + 1))[:size]


def size_of(i):
    return 4096 * (1 + i % 37) + (i * 131) % 4096


def write(mnt, state):
    st = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    loose = os.open(os.path.join(mnt, "never-synced"),
                    os.O_WRONLY | os.O_CREAT, 0o644)
    i = 0
    try:
        while True:
            name = os.path.join(mnt, "f%06d" % i)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, pattern(i, size_of(i)))
            os.fsync(fd)
            os.close(fd)
            os.write(st, b"%d\n" % i)
            os.fsync(st)
            os.pwrite(loose, b"x" * 65536, (i % 64) * 65536)
            i += 1
    except OSError:
        pass        # the daemon is gone
    print("wrote %d fsync'd files" % i)


def verify(mnt, state):
    done = [int(x) for x in open(state).read().split()]
    bad = 0
    for i in done:
        name = os.path.join(mnt, "f%06d" % i)
        try:
            with open(name, "rb") as f:
                data = f.read()
        except OSError as e:
            print("FAIL kill9/file-%d %s" % (i, e))
            bad += 1
            continue
        if data != pattern(i, size_of(i)):
            print("FAIL kill9/file-%d content differs (%d bytes)" %
                  (i, len(data)))
            bad += 1
    if not done:
        print("FAIL kill9/verify no file was fsync'd before the kill")
    elif not bad:
        print("PASS kill9/verify all %d fsync'd files intact" % len(done))


if __name__ == "__main__":
    {"write": write, "verify": verify}[sys.argv[1]](sys.argv[2], sys.argv[3])
