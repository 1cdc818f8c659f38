#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Random file operations through a foliofs mount against an in-memory
model; every read is checked against the model.

    randops.py run DIR MODELDIR [--seed S] [--ops N]
        seeded run of N operations (write, read, truncate, punch hole,
        copy_file_range, fsync) over a few files in DIR; the model of each
        file is saved to MODELDIR at the end
    randops.py verify DIR MODELDIR
        compare every file in DIR with its saved model (after a remount)

Prints the seed, and "PASS name" or "FAIL name: why" lines; exits 1 on any
mismatch.
"""
import ctypes
import ctypes.util
import errno
import os
import random
import sys
import time

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                           ctypes.c_int64]
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2

NFILES = 4
trace_f = None


def trace(*args):
    """With FOLIOFS_RANDOPS_TRACE=FILE, every operation goes to FILE, for
    turning a failure into a reproducer."""
    if trace_f:
        print(*args, file=trace_f, flush=True)
MAX_SIZE = 24 * 1024 * 1024
K4 = 4096


def pread_all(fd, length, off):
    out = bytearray()
    while len(out) < length:
        b = os.pread(fd, length - len(out), off + len(out))
        if not b:
            break
        out += b
    return bytes(out)


def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))


def rand_len(rnd):
    """Lengths around block and folio edges, and big ones."""
    return rnd.choice([
        1, 7, 511, 4095, 4096, 4097, 8192, 65536, 65537,
        (1 << 20) - 1, 1 << 20, (1 << 20) + 4096, 2 << 20, 3 << 20,
        rnd.randrange(1, 1 << 16), rnd.randrange(1, 4 << 20)])


def rand_off(rnd, size):
    c = rnd.random()
    if c < 0.3 and size:
        return rnd.randrange(size)                 # inside the file
    if c < 0.5:
        return rnd.randrange(MAX_SIZE // K4) * K4  # block aligned
    if c < 0.6:
        return size                                # at the end
    if c < 0.7:
        return max(0, rnd.randrange(0, MAX_SIZE // (2 << 20)) * (2 << 20) -
                   rnd.choice([0, 1, 4096]))       # around 2 MiB folios
    return rnd.randrange(MAX_SIZE)


def run(d, modeldir, seed, nops):
    global trace_f
    if os.environ.get("FOLIOFS_RANDOPS_TRACE"):
        trace_f = open(os.environ["FOLIOFS_RANDOPS_TRACE"], "w")
    rnd = random.Random(seed)
    print("randops: seed %d, %d ops" % (seed, nops), flush=True)
    paths = [os.path.join(d, "r%d" % i) for i in range(NFILES)]
    model = [bytearray() for _ in range(NFILES)]
    fds = [os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
           for p in paths]
    counts = {}
    reads = 0
    t0 = time.time()
    for n in range(nops):
        i = rnd.randrange(NFILES)
        m = model[i]
        op = rnd.choices(["write", "read", "truncate", "punch", "copy",
                          "fsync", "reopen"],
                         weights=[35, 30, 7, 8, 10, 2, 2])[0]
        counts[op] = counts.get(op, 0) + 1
        what = "op %d %s file %d (size %d)" % (n, op, i, len(m))
        try:
            r = step(rnd, op, i, fds, model, paths, what, seed)
        except OSError as e:
            return fail("randops/run", "%s: %s (errno %s); seed %d" % (
                what, e, errno.errorcode.get(e.errno, e.errno), seed))
        if r == "reads":
            reads += 1
        elif r:
            return r
        fd, m = fds[i], model[i]
        st = os.fstat(fd)
        if st.st_size != len(m):
            return fail("randops/run", "%s: size %d, model %d; seed %d" % (
                what, st.st_size, len(m), seed))
    # a full compare before leaving
    for i in range(NFILES):
        got = pread_all(fds[i], len(model[i]) + 1, 0)
        if got != bytes(model[i]):
            k = first_diff(got, model[i])
            return fail("randops/run", "file %d differs at %d at the end; "
                        "seed %d" % (i, k, seed))
        os.close(fds[i])
        with open(os.path.join(modeldir, "r%d" % i), "wb") as f:
            f.write(model[i])
    print("PASS randops/run (%s; %d reads checked; %.1f s)" % (
        ", ".join("%s %d" % kv for kv in sorted(counts.items())), reads,
        time.time() - t0), flush=True)
    return 0


def step(rnd, op, i, fds, model, paths, what, seed):
    """One operation on file @i and its model. Returns 1 after a FAIL
    line, "reads" for a checked read, None otherwise."""
    fd, m = fds[i], model[i]
    if op == "write":
        off = rand_off(rnd, len(m))
        ln = min(rand_len(rnd), MAX_SIZE - off)
        if ln <= 0:
            return None
        data = rnd.randbytes(ln) if rnd.random() < 0.7 else \
            bytes([rnd.randrange(256)]) * ln
        trace("write", i, off, ln, data[:1].hex())
        w = 0
        while w < ln:
            w += os.pwrite(fd, data[w:], off + w)
        if off > len(m):
            m.extend(bytes(off - len(m)))
        m[off:off + ln] = data
    elif op == "read":
        off = rand_off(rnd, len(m))
        ln = rand_len(rnd)
        trace("read", i, off, ln)
        got = pread_all(fd, ln, off)
        want = bytes(m[off:off + ln])
        if got != want:
            k = first_diff(got, want)
            return fail("randops/run", "%s: read %d+%d: %d bytes, want "
                        "%d; first difference at %d (got %r, want %r); "
                        "seed %d" % (what, off, ln, len(got), len(want),
                                     off + k, got[k:k + 8], want[k:k + 8],
                                     seed))
        return "reads"
    elif op == "truncate":
        size = rnd.choice([0, rnd.randrange(MAX_SIZE),
                           rnd.randrange(len(m) + 1),
                           rnd.randrange(MAX_SIZE // K4) * K4])
        trace("truncate", i, size)
        os.ftruncate(fd, size)
        if size < len(m):
            del m[size:]
        else:
            m.extend(bytes(size - len(m)))
    elif op == "punch":
        off = rand_off(rnd, len(m))
        ln = rand_len(rnd)
        trace("punch", i, off, ln)
        if libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          off, ln) != 0:
            e = ctypes.get_errno()
            return fail("randops/run", "%s: punch %d+%d: %s" % (
                what, off, ln, os.strerror(e)))
        end = min(off + ln, len(m))
        if off < end:
            m[off:end] = bytes(end - off)
    elif op == "copy":
        j = rnd.randrange(NFILES)
        src, sm = fds[j], model[j]
        if not sm:
            return None
        soff = rnd.randrange(len(sm))
        ln = rand_len(rnd)
        doff = rand_off(rnd, len(m))
        ln = min(ln, MAX_SIZE - doff)
        if j == i and not (soff + ln <= doff or doff + ln <= soff):
            return None  # overlapping ranges of one file: EINVAL
        if ln <= 0:
            return None
        trace("copy", j, soff, i, doff, ln)
        try:
            c = os.copy_file_range(src, fd, ln, soff, doff)
        except OSError as e:
            return fail("randops/run", "%s: copy %d+%d from file %d to "
                        "%d: %s" % (what, soff, ln, j, doff, e))
        want_c = max(0, min(ln, len(sm) - soff))
        if c > want_c or (want_c and c <= 0):
            return fail("randops/run", "%s: copy_file_range returned "
                        "%d, want %d" % (what, c, want_c))
        chunk = bytes(sm[soff:soff + c])
        if c:
            if doff > len(m):
                m.extend(bytes(doff - len(m)))
            m[doff:doff + c] = chunk
    elif op == "fsync":
        trace("fsync", i)
        os.fsync(fd)
    elif op == "reopen":
        trace("reopen", i)
        os.close(fd)
        fds[i] = os.open(paths[i], os.O_RDWR)
        fd = fds[i]
    return None


def verify(d, modeldir):
    bad = 0
    for i in range(NFILES):
        try:
            with open(os.path.join(modeldir, "r%d" % i), "rb") as f:
                want = f.read()
        except OSError:
            fail("randops/verify", "no model r%d: the run failed" % i)
            bad += 1
            continue
        try:
            with open(os.path.join(d, "r%d" % i), "rb") as f:
                got = f.read()
        except OSError as e:
            fail("randops/verify", "r%d: %s" % (i, e))
            bad += 1
            continue
        if got != want:
            k = first_diff(got, want)
            fail("randops/verify", "r%d after remount: %d bytes, model %d, "
                 "first difference at %d" % (i, len(got), len(want), k))
            bad += 1
    if not bad:
        print("PASS randops/verify (%d files equal their models after "
              "remount)" % NFILES, flush=True)
    return 1 if bad else 0


def fail(name, msg):
    print("FAIL %s: %s" % (name, msg), flush=True)
    return 1


def main():
    args = sys.argv[1:]
    if len(args) < 3 or args[0] not in ("run", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    if args[0] == "verify":
        return verify(args[1], args[2])
    seed = int(os.environ.get("FOLIOFS_SEED", time.time_ns() % 1000000))
    nops = 3000
    i = 3
    while i < len(args):
        if args[i] == "--seed":
            seed = int(args[i + 1])
        elif args[i] == "--ops":
            nops = int(args[i + 1])
        i += 2
    try:
        return run(args[1], args[2], seed, nops)
    except OSError as e:
        return fail("randops/run", "%s (errno %s); seed %d" % (
            e, errno.errorcode.get(e.errno, e.errno), seed))


if __name__ == "__main__":
    sys.exit(main())
