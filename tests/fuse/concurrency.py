#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""concurrency.py MNT - several processes at once through the mount.

1. Four processes create, rename and delete in one directory; each owns
   its names, and they also fight over four shared names with rename-over.
   The directory must end with exactly what the processes left.
2. Four processes write one file at disjoint 1 MiB ranges, in 64 KiB
   pieces in a shuffled order; the file must hold every range whole.
"""
import multiprocessing as mp
import os
import random
import sys

ROUNDS = 300


def churn(d, p, q):
    rng = random.Random(p)
    mine = set()
    for i in range(ROUNDS):
        name = "p%d-%d" % (p, i)
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(name)
        mine.add(name)
        op = rng.randrange(4)
        if op == 0:
            new = name + "-r"
            os.rename(path, os.path.join(d, new))
            mine.discard(name)
            mine.add(new)
        elif op == 1:
            os.unlink(path)
            mine.discard(name)
        elif op == 2:
            # Rename over a shared name: whoever is last wins, atomically.
            shared = "shared-%d" % rng.randrange(4)
            os.rename(path, os.path.join(d, shared))
            mine.discard(name)
    q.put(sorted(mine))


def piece(i, k):
    return bytes([(i * 7 + k) & 0xFF]) * 65536


def writer(path, i):
    rng = random.Random(100 + i)
    order = list(range(16))
    rng.shuffle(order)
    fd = os.open(path, os.O_WRONLY)
    for k in order:
        os.pwrite(fd, piece(i, k), i * (1 << 20) + k * 65536)
    os.close(fd)


def main(mnt):
    ok = True
    d = os.path.join(mnt, "conc")
    os.mkdir(d)
    q = mp.Queue()
    procs = [mp.Process(target=churn, args=(d, p, q)) for p in range(4)]
    for pr in procs:
        pr.start()
    want = set()
    for _ in procs:
        want.update(q.get())
    for pr in procs:
        pr.join()
        ok &= pr.exitcode == 0
    got = set(os.listdir(d))
    shared = {n for n in got if n.startswith("shared-")}
    for n in shared:
        with open(os.path.join(d, n)) as f:
            content = f.read()
        if not content.startswith("p"):
            print("FAIL conc/shared %s holds %r" % (n, content[:20]))
            ok = False
    if got - shared != want or not procs or not ok:
        print("FAIL conc/names extra %s missing %s" %
              (sorted(got - shared - want)[:5], sorted(want - got)[:5]))
    else:
        print("PASS conc/names %d entries as left by 4 processes" % len(got))

    path = os.path.join(mnt, "conc-file")
    open(path, "wb").close()
    procs = [mp.Process(target=writer, args=(path, i)) for i in range(4)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join()
    with open(path, "rb") as f:
        data = f.read()
    want = b"".join(piece(i, k) for i in range(4) for k in range(16))
    if data == want:
        print("PASS conc/disjoint-writes 4 MiB from 4 processes intact")
    else:
        bad = next(j for j in range(min(len(data), len(want)))
                   if data[j] != want[j]) if len(data) == len(want) else -1
        print("FAIL conc/disjoint-writes size %d, first bad byte %d" %
              (len(data), bad))


if __name__ == "__main__":
    main(sys.argv[1])
