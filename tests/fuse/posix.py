#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""POSIX semantics through a foliofs mount: every FUSE op the frontend
serves, with its error cases. Prints one line per check ("PASS name" or
"FAIL name: why") and exits 1 if any failed.

    posix.py MOUNTDIR [--only SUBSTRING]

Runs as root; the permission checks fork a child that drops to
uid/gid 65534 to see the kernel's default_permissions at work, so the
mount needs -o allow_other (else FUSE refuses every other user outright).
"""
import ctypes
import ctypes.util
import errno
import hashlib
import mmap
import os
import random
import stat
import sys
import time

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                           ctypes.c_int64]
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                           ctypes.c_char_p, ctypes.c_uint]

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
FALLOC_FL_ZERO_RANGE = 0x10
UNPRIV = 65534

results = {"pass": 0, "fail": 0, "skip": 0}


class Skip(Exception):
    pass


def fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def renameat2(old, new, flags):
    if libc.renameat2(AT_FDCWD, old.encode(), AT_FDCWD, new.encode(),
                      flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def expect_errno(want, fn, *args, **kw):
    """fn(*args) must fail with errno @want (an int or a tuple of ints)."""
    wants = want if isinstance(want, tuple) else (want,)
    try:
        fn(*args, **kw)
    except OSError as e:
        if e.errno in wants:
            return
        raise AssertionError("%s%r: errno %s, want %s" % (
            fn.__name__, args, errno.errorcode.get(e.errno, e.errno),
            "/".join(errno.errorcode[w] for w in wants)))
    raise AssertionError("%s%r succeeded, want %s" % (
        fn.__name__, args, "/".join(errno.errorcode[w] for w in wants)))


def eq(got, want, what=""):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


def ok(cond, what):
    if not cond:
        raise AssertionError(what)


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)
    try:
        n = 0
        while n < len(data):
            n += os.write(fd, data[n:])
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def pread_all(fd, length, off):
    out = bytearray()
    while len(out) < length:
        b = os.pread(fd, length - len(out), off + len(out))
        if not b:
            break
        out += b
    return bytes(out)


def as_user(fn):
    """Run fn() in a child as uid/gid 65534; return its exception text or
    None."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        msg = b""
        try:
            os.setgroups([])
            os.setgid(UNPRIV)
            os.setuid(UNPRIV)
            fn()
        except BaseException as e:  # noqa: B902 - report everything
            msg = ("%s: %s" % (type(e).__name__, e)).encode()
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    msg = b""
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        msg += b
    os.close(r)
    os.waitpid(pid, 0)
    return msg.decode() or None


# ---- the checks ---------------------------------------------------------

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


@check
def create_write_read(d):
    p = os.path.join(d, "hello")
    write_file(p, b"hello, world\n")
    eq(read_file(p), b"hello, world\n", "read back")
    st = os.stat(p)
    eq(st.st_size, 13, "size")
    ok(stat.S_ISREG(st.st_mode), "regular file")
    eq(stat.S_IMODE(st.st_mode), 0o644 & ~current_umask(), "mode")
    eq(st.st_nlink, 1, "nlink")


def current_umask():
    m = os.umask(0)
    os.umask(m)
    return m


@check
def enoent(d):
    p = os.path.join(d, "nope")
    expect_errno(errno.ENOENT, os.open, p, os.O_RDONLY)
    expect_errno(errno.ENOENT, os.stat, p)
    expect_errno(errno.ENOENT, os.unlink, p)
    expect_errno(errno.ENOENT, os.rmdir, p)
    expect_errno(errno.ENOENT, os.rename, p, p + "2")
    expect_errno(errno.ENOENT, os.readlink, p)
    expect_errno(errno.ENOENT, os.mkdir, os.path.join(p, "sub"))
    expect_errno(errno.ENOENT, os.link, p, p + "3")
    # created and removed: no stale (negatively cached or positive) entry
    write_file(p, b"x")
    os.stat(p)
    os.unlink(p)
    expect_errno(errno.ENOENT, os.stat, p)
    write_file(p, b"y")
    eq(read_file(p), b"y", "recreated")
    os.unlink(p)


@check
def eexist(d):
    p = os.path.join(d, "e")
    os.mkdir(p)
    expect_errno(errno.EEXIST, os.mkdir, p)
    f = os.path.join(d, "ef")
    write_file(f, b"")
    expect_errno(errno.EEXIST, os.open, f, os.O_CREAT | os.O_EXCL | os.O_RDWR)
    expect_errno(errno.EEXIST, os.link, f, p)
    expect_errno(errno.EEXIST, os.symlink, "t", f)
    expect_errno(errno.EEXIST, os.mkfifo, f)
    expect_errno(errno.EEXIST, os.mkdir, f)


@check
def enotempty(d):
    p = os.path.join(d, "ne")
    os.makedirs(os.path.join(p, "child"))
    expect_errno((errno.ENOTEMPTY, errno.EEXIST), os.rmdir, p)
    os.rmdir(os.path.join(p, "child"))
    os.rmdir(p)
    expect_errno(errno.ENOENT, os.stat, p)


@check
def eisdir(d):
    p = os.path.join(d, "isdir")
    os.mkdir(p)
    expect_errno(errno.EISDIR, os.open, p, os.O_WRONLY)
    expect_errno(errno.EISDIR, os.open, p, os.O_RDWR)
    expect_errno((errno.EISDIR, errno.EPERM), os.unlink, p)
    fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
    expect_errno(errno.EISDIR, os.read, fd, 10)
    os.close(fd)


@check
def enotdir(d):
    f = os.path.join(d, "notdir")
    write_file(f, b"x")
    expect_errno(errno.ENOTDIR, os.rmdir, f)
    expect_errno(errno.ENOTDIR, os.open, os.path.join(f, "x"), os.O_RDONLY)
    expect_errno(errno.ENOTDIR, os.mkdir, os.path.join(f, "x"))
    expect_errno(errno.ENOTDIR, os.open, f, os.O_RDONLY | os.O_DIRECTORY)
    expect_errno(errno.ENOTDIR, os.listdir, f)


@check
def enametoolong(d):
    ok_name = os.path.join(d, "n" * 255)
    write_file(ok_name, b"255")
    eq(read_file(ok_name), b"255", "255-byte name")
    ok("n" * 255 in os.listdir(d), "255-byte name listed")
    os.unlink(ok_name)
    long_name = os.path.join(d, "n" * 256)
    expect_errno(errno.ENAMETOOLONG, os.open, long_name,
                 os.O_CREAT | os.O_WRONLY)
    expect_errno(errno.ENAMETOOLONG, os.mkdir, long_name)
    expect_errno(errno.ENAMETOOLONG, os.stat, long_name)
    expect_errno(errno.ENAMETOOLONG, os.symlink, "x", long_name)
    src = os.path.join(d, "src")
    write_file(src, b"")
    expect_errno(errno.ENAMETOOLONG, os.rename, src, long_name)
    expect_errno(errno.ENAMETOOLONG, os.link, src, long_name)
    # a 4095-byte symlink target is fine, 4096 is not
    t = os.path.join(d, "longtarget")
    os.symlink("t" * 4095, t)
    eq(os.readlink(t), "t" * 4095, "4095-byte target")
    os.unlink(t)
    expect_errno(errno.ENAMETOOLONG, os.symlink, "t" * 4096, t)


@check
def rename_basic(d):
    a, b = os.path.join(d, "ra"), os.path.join(d, "rb")
    write_file(a, b"A")
    ino = os.stat(a).st_ino
    os.rename(a, b)
    expect_errno(errno.ENOENT, os.stat, a)
    eq(os.stat(b).st_ino, ino, "inode kept")
    eq(read_file(b), b"A", "data kept")
    # replace an existing file
    write_file(a, b"NEW")
    os.rename(a, b)
    eq(read_file(b), b"NEW", "replaced")
    eq(os.listdir(d).count("rb"), 1, "one entry")
    # across directories
    sub = os.path.join(d, "rsub")
    os.mkdir(sub)
    os.rename(b, os.path.join(sub, "moved"))
    eq(read_file(os.path.join(sub, "moved")), b"NEW", "moved across dirs")
    # to itself: nothing happens
    os.rename(os.path.join(sub, "moved"), os.path.join(sub, "moved"))
    eq(read_file(os.path.join(sub, "moved")), b"NEW", "rename to itself")


@check
def rename_dirs(d):
    x, y = os.path.join(d, "rdx"), os.path.join(d, "rdy")
    os.mkdir(x)
    os.mkdir(y)
    write_file(os.path.join(x, "f"), b"f")
    os.rename(x, y)  # onto an empty directory
    eq(read_file(os.path.join(y, "f")), b"f", "dir moved onto empty dir")
    os.mkdir(x)
    expect_errno((errno.ENOTEMPTY, errno.EEXIST), os.rename, x, y)
    f = os.path.join(d, "rdfile")
    write_file(f, b"")
    expect_errno(errno.EISDIR, os.rename, f, y)
    expect_errno(errno.ENOTDIR, os.rename, y, f)
    expect_errno(errno.EINVAL, os.rename, y, os.path.join(y, "inside"))
    # '..' of a moved directory follows it
    os.mkdir(os.path.join(y, "deep"))
    os.rename(os.path.join(y, "deep"), os.path.join(x, "deep"))
    eq(os.stat(os.path.join(x, "deep", "..")).st_ino, os.stat(x).st_ino,
       "'..' after a move")


@check
def rename_noreplace(d):
    a, b = os.path.join(d, "nra"), os.path.join(d, "nrb")
    write_file(a, b"a")
    write_file(b, b"b")
    expect_errno(errno.EEXIST, renameat2, a, b, RENAME_NOREPLACE)
    eq(read_file(a), b"a", "source untouched")
    eq(read_file(b), b"b", "target untouched")
    os.unlink(b)
    renameat2(a, b, RENAME_NOREPLACE)
    eq(read_file(b), b"a", "renamed")
    expect_errno(errno.ENOENT, os.stat, a)


@check
def rename_exchange(d):
    a, b = os.path.join(d, "xa"), os.path.join(d, "xb")
    write_file(a, b"AAA")
    os.mkdir(b)
    write_file(os.path.join(b, "inner"), b"I")
    ia, ib = os.stat(a).st_ino, os.stat(b).st_ino
    renameat2(a, b, RENAME_EXCHANGE)
    eq(os.stat(a).st_ino, ib, "a is the dir now")
    eq(os.stat(b).st_ino, ia, "b is the file now")
    eq(read_file(b), b"AAA", "file data")
    eq(read_file(os.path.join(a, "inner")), b"I", "dir content")
    expect_errno(errno.ENOENT, renameat2, a, os.path.join(d, "xmissing"),
                 RENAME_EXCHANGE)
    expect_errno(errno.EINVAL, renameat2, a, b,
                 RENAME_EXCHANGE | RENAME_NOREPLACE)


@check
def open_flags(d):
    p = os.path.join(d, "flags")
    write_file(p, b"0123456789")
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    eq(os.fstat(fd).st_size, 0, "O_TRUNC size")
    os.write(fd, b"ab")
    os.close(fd)
    eq(read_file(p), b"ab", "after O_TRUNC")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"cd")
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"ef")  # O_APPEND ignores the offset
    os.close(fd)
    eq(read_file(p), b"abcdef", "O_APPEND")
    fd = os.open(p, os.O_RDWR | os.O_APPEND)
    os.pwrite(fd, b"gh", 0)  # Linux: pwrite on O_APPEND appends too
    os.close(fd)
    eq(read_file(p), b"abcdefgh", "pwrite with O_APPEND")
    q = os.path.join(d, "excl")
    fd = os.open(q, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    eq(stat.S_IMODE(os.fstat(fd).st_mode), 0o600, "O_EXCL mode")
    os.close(fd)
    expect_errno(errno.EEXIST, os.open, q, os.O_CREAT | os.O_EXCL | os.O_RDWR)
    # O_CREAT on an existing file with O_TRUNC truncates it
    write_file(q, b"xyz")
    fd = os.open(q, os.O_CREAT | os.O_TRUNC | os.O_RDWR)
    eq(os.fstat(fd).st_size, 0, "O_CREAT|O_TRUNC")
    os.close(fd)
    fd = os.open(p, os.O_RDONLY)
    expect_errno(errno.EBADF, os.write, fd, b"no")
    os.close(fd)
    fd = os.open(p, os.O_WRONLY)
    expect_errno(errno.EBADF, os.read, fd, 1)
    os.close(fd)


@check
def sync_flags(d):
    p = os.path.join(d, "osync")
    for fl in (os.O_SYNC, os.O_DSYNC):
        fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | fl)
        os.write(fd, b"s" * 10000)
        os.close(fd)
        eq(read_file(p), b"s" * 10000, "O_SYNC data")


@check
def truncate(d):
    p = os.path.join(d, "trunc")
    write_file(p, b"x" * 10000)
    os.truncate(p, 100)
    eq(read_file(p), b"x" * 100, "shrink")
    os.truncate(p, 50000)
    data = read_file(p)
    eq(len(data), 50000, "extend size")
    eq(data[:100], b"x" * 100, "kept head")
    ok(data[100:] == bytes(49900), "extension reads as zeroes")
    fd = os.open(p, os.O_RDWR)
    os.ftruncate(fd, 4097)
    eq(os.fstat(fd).st_size, 4097, "ftruncate")
    os.pwrite(fd, b"tail", 8190)
    os.ftruncate(fd, 8191)
    eq(pread_all(fd, 100, 8188), b"\0\0t", "partial-block truncate")
    os.ftruncate(fd, 0)
    eq(os.fstat(fd).st_size, 0, "to zero")
    eq(os.pread(fd, 10, 0), b"", "read empty")
    os.close(fd)
    expect_errno(errno.EISDIR, os.truncate, d, 0)
    expect_errno(errno.EINVAL, os.truncate, p, -1)
    # truncating down then up must not resurrect old bytes
    write_file(p, os.urandom(3 * 1024 * 1024))
    os.truncate(p, 1000)
    os.truncate(p, 3 * 1024 * 1024)
    ok(read_file(p)[1000:] == bytes(3 * 1024 * 1024 - 1000),
       "no stale data after shrink+extend")


@check
def chmod_chown(d):
    p = os.path.join(d, "perm")
    write_file(p, b"")
    os.chmod(p, 0o4755)
    eq(stat.S_IMODE(os.stat(p).st_mode), 0o4755, "chmod")
    ct = os.stat(p).st_ctime_ns
    time.sleep(0.01)
    os.chown(p, 1234, 5678)
    st = os.stat(p)
    eq((st.st_uid, st.st_gid), (1234, 5678), "chown")
    ok(st.st_ctime_ns > ct, "chown updates ctime")
    eq(stat.S_IMODE(st.st_mode) & 0o4000, 0, "chown clears set-uid")
    os.chown(p, -1, 42)
    st = os.stat(p)
    eq((st.st_uid, st.st_gid), (1234, 42), "chown gid only")
    os.chmod(p, 0o000)
    eq(stat.S_IMODE(os.stat(p).st_mode), 0, "chmod 0")
    os.mkdir(os.path.join(d, "permdir"), 0o700)
    os.chmod(os.path.join(d, "permdir"), 0o1777)
    eq(stat.S_IMODE(os.stat(os.path.join(d, "permdir")).st_mode), 0o1777,
       "sticky dir")


@check
def utimens(d):
    p = os.path.join(d, "times")
    write_file(p, b"")
    os.utime(p, ns=(1_000_000_123, 2_000_000_456))
    st = os.stat(p)
    eq((st.st_atime_ns, st.st_mtime_ns), (1_000_000_123, 2_000_000_456),
       "explicit times with nanoseconds")
    # UTIME_OMIT the atime, UTIME_NOW the mtime (through ctypes)
    UTIME_NOW = (1 << 30) - 1
    UTIME_OMIT = (1 << 30) - 2

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    ts = (Timespec * 2)(Timespec(0, UTIME_OMIT), Timespec(0, UTIME_NOW))
    before = time.time_ns()
    if libc.utimensat(AT_FDCWD, p.encode(), ts, 0) != 0:
        raise OSError(ctypes.get_errno(), "utimensat")
    st = os.stat(p)
    eq(st.st_atime_ns, 1_000_000_123, "UTIME_OMIT keeps atime")
    ok(abs(st.st_mtime_ns - before) < 5_000_000_000,
       "UTIME_NOW mtime is now (%d vs %d)" % (st.st_mtime_ns, before))
    ts = (Timespec * 2)(Timespec(0, UTIME_NOW), Timespec(0, UTIME_OMIT))
    mt = st.st_mtime_ns
    if libc.utimensat(AT_FDCWD, p.encode(), ts, 0) != 0:
        raise OSError(ctypes.get_errno(), "utimensat")
    st = os.stat(p)
    eq(st.st_mtime_ns, mt, "UTIME_OMIT keeps mtime")
    ok(abs(st.st_atime_ns - before) < 5_000_000_000, "UTIME_NOW atime")
    os.utime(p)  # both now
    # write updates mtime and ctime
    os.utime(p, ns=(0, 0))
    c0 = os.stat(p).st_ctime_ns
    time.sleep(0.01)
    with open(p, "ab") as f:
        f.write(b"x")
    st = os.stat(p)
    ok(st.st_mtime_ns > 0, "write updates mtime")
    ok(st.st_ctime_ns >= c0, "write updates ctime")


@check
def hard_links(d):
    a, b = os.path.join(d, "la"), os.path.join(d, "lb")
    write_file(a, b"linked")
    os.link(a, b)
    eq(os.stat(a).st_nlink, 2, "nlink 2")
    eq(os.stat(a).st_ino, os.stat(b).st_ino, "same inode")
    with open(b, "ab") as f:
        f.write(b"+")
    eq(read_file(a), b"linked+", "shared data")
    os.unlink(a)
    eq(os.stat(b).st_nlink, 1, "nlink back to 1")
    eq(read_file(b), b"linked+", "data survives one unlink")
    sub = os.path.join(d, "ldir")
    os.mkdir(sub)
    expect_errno(errno.EPERM, os.link, sub, os.path.join(d, "ldir2"))
    os.link(b, os.path.join(sub, "other"))
    eq(os.stat(b).st_nlink, 2, "link across dirs")


@check
def symlinks(d):
    t = os.path.join(d, "target")
    write_file(t, b"through")
    s = os.path.join(d, "sl")
    os.symlink("target", s)
    eq(os.readlink(s), "target", "readlink")
    ok(stat.S_ISLNK(os.lstat(s).st_mode), "lstat is a link")
    eq(os.lstat(s).st_size, len("target"), "link size")
    eq(read_file(s), b"through", "followed")
    dangling = os.path.join(d, "dangling")
    os.symlink("/no/such/place", dangling)
    expect_errno(errno.ENOENT, os.stat, dangling)
    eq(os.readlink(dangling), "/no/such/place", "dangling readlink")
    expect_errno(errno.EINVAL, os.readlink, t)
    os.symlink("a" * 100 + "/" + "b" * 100, os.path.join(d, "long"))
    eq(os.readlink(os.path.join(d, "long")), "a" * 100 + "/" + "b" * 100,
       "long target")
    loop = os.path.join(d, "loop")
    os.symlink("loop", loop)
    expect_errno(errno.ELOOP, os.stat, loop)


@check
def special_files(d):
    f = os.path.join(d, "fifo")
    os.mkfifo(f, 0o600)
    ok(stat.S_ISFIFO(os.stat(f).st_mode), "fifo")
    n = os.path.join(d, "chr")
    os.mknod(n, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    st = os.stat(n)
    ok(stat.S_ISCHR(st.st_mode), "char device")
    eq((os.major(st.st_rdev), os.minor(st.st_rdev)), (1, 3), "rdev")
    r = os.path.join(d, "regnod")
    os.mknod(r, 0o644 | stat.S_IFREG)
    eq(os.stat(r).st_size, 0, "mknod regular")


@check
def readdir_10k(d):
    sub = os.path.join(d, "many")
    os.mkdir(sub)
    names = set("f%05d_%s" % (i, "x" * (i % 40)) for i in range(10000))
    for n in names:
        os.close(os.open(os.path.join(sub, n), os.O_CREAT | os.O_WRONLY))
    listed = os.listdir(sub)
    eq(len(listed), len(names), "count")
    eq(set(listed), names, "names")
    # scandir + stat: readdirplus attributes must be right
    seen = 0
    for e in os.scandir(sub):
        ok(e.is_file(follow_symlinks=False), "type of " + e.name)
        eq(e.stat(follow_symlinks=False).st_ino, e.inode(), "ino " + e.name)
        seen += 1
    eq(seen, 10000, "scandir count")
    # delete while listing: every name still present is seen exactly once
    it = os.scandir(sub)
    got = []
    for i, e in enumerate(it):
        got.append(e.name)
        if i == 10:
            for n in sorted(names)[5000:6000]:
                os.unlink(os.path.join(sub, n))
    it.close()
    eq(len(got), len(set(got)), "no duplicates while deleting")
    keep = set(sorted(names)[:5000] + sorted(names)[6000:])
    ok(keep <= set(got), "every remaining name seen")
    for n in os.listdir(sub):
        os.unlink(os.path.join(sub, n))
    eq(os.listdir(sub), [], "emptied")
    os.rmdir(sub)


@check
def dir_nlink_and_dots(d):
    sub = os.path.join(d, "dots")
    os.mkdir(sub)
    ok(os.stat(sub).st_nlink >= 2, "dir nlink >= 2")
    fd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
    os.close(fd)
    eq(os.stat(os.path.join(sub, ".")).st_ino, os.stat(sub).st_ino, "'.'")
    eq(os.stat(os.path.join(sub, "..")).st_ino, os.stat(d).st_ino, "'..'")
    eq(os.listdir(sub), [], "listdir hides dots")


@check
def seek_data_hole(d):
    p = os.path.join(d, "sparse")
    M = 1024 * 1024
    fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC)
    os.pwrite(fd, b"d" * 4096, 0)
    os.pwrite(fd, b"e" * 4096, 8 * M)
    size = 8 * M + 4096
    eq(os.lseek(fd, 0, os.SEEK_DATA), 0, "SEEK_DATA at data")
    h = os.lseek(fd, 0, os.SEEK_HOLE)
    ok(4096 <= h <= 8 * M, "SEEK_HOLE after the first block: %d" % h)
    dpos = os.lseek(fd, h, os.SEEK_DATA)
    ok(h < dpos <= 8 * M, "SEEK_DATA to the second block: %d" % dpos)
    eq(os.lseek(fd, 8 * M, os.SEEK_HOLE), size, "SEEK_HOLE at EOF")
    expect_errno(errno.ENXIO, os.lseek, fd, size, os.SEEK_DATA)
    expect_errno(errno.ENXIO, os.lseek, fd, size + 10, os.SEEK_HOLE)
    eq(pread_all(fd, 10, 4 * M), bytes(10), "hole reads zeroes")
    os.fsync(fd)
    dpos2 = os.lseek(fd, h, os.SEEK_DATA)
    ok(h < dpos2 <= 8 * M, "SEEK_DATA after fsync: %d" % dpos2)
    os.close(fd)


@check
def fallocate_modes(d):
    p = os.path.join(d, "falloc")
    M = 1024 * 1024
    fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC)
    fallocate(fd, 0, 0, 4 * M)
    st = os.fstat(fd)
    eq(st.st_size, 4 * M, "plain fallocate extends")
    ok(st.st_blocks * 512 >= 4 * M, "blocks allocated: %d" % st.st_blocks)
    eq(pread_all(fd, 4096, 1000), bytes(4096), "fallocated reads zeroes")
    fallocate(fd, FALLOC_FL_KEEP_SIZE, 4 * M, 4 * M)
    st = os.fstat(fd)
    eq(st.st_size, 4 * M, "KEEP_SIZE keeps size")
    ok(st.st_blocks * 512 >= 8 * M, "KEEP_SIZE allocates: %d" % st.st_blocks)
    data = os.urandom(4 * M)
    os.pwrite(fd, data, 0)
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, M + 100, M)
    got = pread_all(fd, 4 * M, 0)
    want = data[:M + 100] + bytes(M) + data[2 * M + 100:]
    ok(got == want, "punch zeroes exactly the range")
    eq(os.fstat(fd).st_size, 4 * M, "punch keeps size")
    expect_errno((errno.EOPNOTSUPP, errno.EINVAL), fallocate, fd,
                 FALLOC_FL_PUNCH_HOLE, 0, 4096)
    # blocks freed by a whole-block punch
    os.fsync(fd)
    b0 = os.fstat(fd).st_blocks
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4 * M)
    os.fsync(fd)
    ok(os.fstat(fd).st_blocks < b0, "punch frees blocks (%d -> %d)" % (
        b0, os.fstat(fd).st_blocks))
    os.close(fd)


@check
def fallocate_zero_range(d):
    p = os.path.join(d, "zr")
    data = os.urandom(3 * 4096)
    write_file(p, data)
    fd = os.open(p, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_ZERO_RANGE, 100, 4096 + 7)
    except OSError as e:
        os.close(fd)
        if e.errno == errno.EOPNOTSUPP:
            raise Skip("this kernel's FUSE does not pass ZERO_RANGE on")
        raise
    got = pread_all(fd, len(data), 0)
    eq(got, data[:100] + bytes(4096 + 7) + data[4203:], "zero range")
    fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 12000, 10000)
    eq(os.fstat(fd).st_size, len(data), "KEEP_SIZE zero range")
    fallocate(fd, FALLOC_FL_ZERO_RANGE, 12000, 10000)
    eq(os.fstat(fd).st_size, 22000, "zero range extends")
    os.close(fd)


@check
def statfs(d):
    s = os.statvfs(d)
    eq(s.f_bsize, 4096, "f_bsize")
    eq(s.f_frsize, 4096, "f_frsize")
    ok(s.f_blocks > 0, "f_blocks")
    ok(0 < s.f_bavail <= s.f_bfree <= s.f_blocks, "free counts")
    eq(s.f_namemax, 255, "f_namemax")
    ok(s.f_files >= s.f_ffree, "files")
    p = os.path.join(d, "statfs-fill")
    fd = os.open(p, os.O_CREAT | os.O_WRONLY)
    for _ in range(32):
        os.write(fd, b"z" * (1024 * 1024))
    s1 = os.statvfs(d)
    ok(s.f_bavail - s1.f_bavail >= 8192 - 64,
       "32 MiB dirty reserves %d blocks" % (s.f_bavail - s1.f_bavail))
    os.fsync(fd)
    os.close(fd)
    s2 = os.statvfs(d)
    ok(s.f_bfree - s2.f_bfree >= 8192 - 64,
       "32 MiB written uses %d blocks" % (s.f_bfree - s2.f_bfree))
    os.unlink(p)
    # The blocks go when the kernel forgets the inode (FORGET arrives
    # shortly after the unlink, asynchronously) and the commit freeing
    # them is durable. sync(2) does not reach a libfuse < 3.17
    # filesystem; fsync of the directory commits (foliofs_syncfs).
    deadline = time.time() + 10
    while True:
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
        s3 = os.statvfs(d)
        if s3.f_bfree >= s2.f_bfree + 8192 - 64 or time.time() > deadline:
            break
        time.sleep(0.05)
    ok(s3.f_bfree >= s2.f_bfree + 8192 - 64,
       "unlink gives blocks back (%d -> %d)" % (s2.f_bfree, s3.f_bfree))


@check
def large_file(d):
    p = os.path.join(d, "large")
    rnd = random.Random(7)
    data = bytes(rnd.getrandbits(8) for _ in range(256 * 1024)) * 80  # 20 MiB
    fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC)
    off = 0
    sizes = [1 << 20, 3 << 20, 12345, 1, 65536, (1 << 20) + 1]
    i = 0
    while off < len(data):
        n = os.pwrite(fd, data[off:off + sizes[i % len(sizes)]], off)
        off += n
        i += 1
    os.fsync(fd)
    eq(os.fstat(fd).st_size, len(data), "size")
    got = pread_all(fd, len(data), 0)
    ok(hashlib.sha256(got).digest() == hashlib.sha256(data).digest(),
       "whole read matches")
    for _ in range(200):
        o = rnd.randrange(len(data))
        ln = rnd.choice([1, 4095, 4096, 4097, 1 << 20, 2 << 20, 77777])
        eq(pread_all(fd, ln, o), data[o:o + ln], "pread at %d+%d" % (o, ln))
    os.close(fd)
    # sequential read through a buffered file object, odd chunk size
    h = hashlib.sha256()
    with open(p, "rb", buffering=0) as f:
        while True:
            b = f.read(999_999)
            if not b:
                break
            h.update(b)
    ok(h.digest() == hashlib.sha256(data).digest(), "sequential read")


@check
def o_direct(d):
    p = os.path.join(d, "odirect")
    M = 1024 * 1024
    buf = mmap.mmap(-1, M)
    payload = os.urandom(M)
    buf.write(payload)
    try:
        fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_DIRECT)
    except OSError as e:
        raise Skip("O_DIRECT open: %s" % e)
    eq(os.pwritev(fd, [buf], 0), M, "direct write")
    rb = mmap.mmap(-1, M)
    eq(os.preadv(fd, [rb], 0), M, "direct read")
    ok(bytes(rb) == payload, "direct data")
    os.close(fd)


@check
def copy_file_range(d):
    a, b = os.path.join(d, "cfa"), os.path.join(d, "cfb")
    data = os.urandom(3 * 1024 * 1024 + 123)
    write_file(a, data)
    write_file(b, b"")
    fi = os.open(a, os.O_RDONLY)
    fo = os.open(b, os.O_WRONLY)
    n, off = 0, 0
    while off < len(data):
        n = os.copy_file_range(fi, fo, len(data) - off, off, off + 4096)
        ok(n > 0, "progress")
        off += n
    os.close(fi)
    os.close(fo)
    got = read_file(b)
    eq(len(got), len(data) + 4096, "dest size")
    ok(got[:4096] == bytes(4096) and got[4096:] == data, "copied data")


@check
def mmap_private(d):
    p = os.path.join(d, "mm")
    data = os.urandom(3 * 4096 + 5)
    write_file(p, data)
    with open(p, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE,
                      prot=mmap.PROT_READ)
        ok(m[:] == data, "private mapping reads the file")
        m.close()


@check
def mmap_shared(d):
    p = os.path.join(d, "mms")
    write_file(p, bytes(8192))
    fd = os.open(p, os.O_RDWR)
    try:
        m = mmap.mmap(fd, 8192, flags=mmap.MAP_SHARED)
    except OSError as e:
        os.close(fd)
        if e.errno == errno.ENODEV:
            raise Skip("shared mmap of a direct-I/O file needs "
                       "FUSE_CAP_DIRECT_IO_ALLOW_MMAP (libfuse >= 3.16)")
        raise
    m[100:105] = b"mmap!"
    m.flush()
    m.close()
    os.close(fd)
    eq(read_file(p)[100:105], b"mmap!", "shared write visible")


@check
def unlink_open_file(d):
    p = os.path.join(d, "orphan")
    write_file(p, b"still here" * 1000)
    fd = os.open(p, os.O_RDWR)
    os.unlink(p)
    expect_errno(errno.ENOENT, os.stat, p)
    eq(os.pread(fd, 10, 0), b"still here", "readable after unlink")
    os.pwrite(fd, b"more", 10000)
    eq(os.fstat(fd).st_nlink, 0, "nlink 0")
    os.close(fd)
    eq("orphan" in os.listdir(d), False, "gone from the listing")


@check
def fsync_variants(d):
    p = os.path.join(d, "fsync")
    fd = os.open(p, os.O_CREAT | os.O_RDWR)
    os.write(fd, b"durable")
    os.fsync(fd)
    os.fdatasync(fd)
    os.close(fd)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    fd = os.open(p, os.O_RDONLY)
    libc.syncfs(fd)
    os.close(fd)
    os.sync()


@check
def xattr_unsupported(d):
    p = os.path.join(d, "xattr")
    write_file(p, b"")
    expect_errno(errno.EOPNOTSUPP, os.setxattr, p, "user.x", b"1")
    expect_errno(errno.EOPNOTSUPP, os.getxattr, p, "user.x")
    try:
        eq(os.listxattr(p), [], "listxattr")
    except OSError as e:
        eq(e.errno, errno.EOPNOTSUPP, "listxattr errno")


@check
def permissions_unprivileged(d):
    base = os.path.join(d, "perms")
    os.mkdir(base, 0o755)
    os.chmod(base, 0o755)
    secret = os.path.join(base, "secret")
    write_file(secret, b"root only", 0o600)
    os.chmod(secret, 0o600)
    public = os.path.join(base, "public")
    write_file(public, b"all may read")
    os.chmod(public, 0o644)
    shared = os.path.join(d, "sticky")
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    rootfile = os.path.join(shared, "rootfile")
    write_file(rootfile, b"")
    os.chmod(rootfile, 0o666)

    def unpriv():
        expect_errno(errno.EACCES, os.open, secret, os.O_RDONLY)
        eq(read_file(public), b"all may read", "read public")
        expect_errno(errno.EACCES, os.open, public, os.O_WRONLY)
        expect_errno(errno.EACCES, os.open, os.path.join(base, "new"),
                     os.O_CREAT | os.O_WRONLY)
        expect_errno(errno.EACCES, os.mkdir, os.path.join(base, "nd"))
        expect_errno(errno.EACCES, os.unlink, public)
        expect_errno(errno.EPERM, os.chmod, public, 0o777)
        expect_errno(errno.EPERM, os.chown, public, UNPRIV, UNPRIV)
        expect_errno(errno.EPERM, os.utime, public, (1, 1))
        expect_errno(errno.EACCES, os.utime, public)  # NOW needs write
        mine = os.path.join(shared, "mine")
        write_file(mine, b"nobody's")
        st = os.stat(mine)
        eq((st.st_uid, st.st_gid), (UNPRIV, UNPRIV), "owner of a new file")
        os.chmod(mine, 0o600)
        os.utime(mine, (5, 5))
        os.utime(mine)
        expect_errno(errno.EPERM, os.chown, mine, 0, 0)
        # sticky: may not remove root's file even though the dir is 1777
        expect_errno(errno.EPERM, os.unlink, rootfile)
        expect_errno(errno.EPERM, os.rename, rootfile,
                     os.path.join(shared, "stolen"))
        # may write root's world-writable file
        with open(rootfile, "wb") as f:
            f.write(b"w")
        os.mkdir(os.path.join(shared, "mydir"))
        os.rename(mine, os.path.join(shared, "mydir", "mine"))
        # truncate needs write permission
        expect_errno(errno.EACCES, os.truncate, public, 0)
        # search permission on a 0700 dir
        expect_errno(errno.EACCES, os.stat,
                     os.path.join(d, "privdir", "f"))

    priv = os.path.join(d, "privdir")
    os.mkdir(priv)
    os.chmod(priv, 0o700)
    write_file(os.path.join(priv, "f"), b"")
    err = as_user(unpriv)
    if err:
        raise AssertionError("as uid %d: %s" % (UNPRIV, err))
    st = os.stat(os.path.join(shared, "mydir", "mine"))
    eq(st.st_uid, UNPRIV, "file created by the user is theirs")
    eq(read_file(rootfile), b"w", "world-writable write")


@check
def concurrent_writers(d):
    """Two processes writing disjoint halves of one file at once."""
    p = os.path.join(d, "conc")
    M = 1024 * 1024
    write_file(p, b"")
    pids = []
    for i in range(4):
        pid = os.fork()
        if pid == 0:
            try:
                fd = os.open(p, os.O_WRONLY)
                for j in range(16):
                    os.pwrite(fd, bytes([65 + i]) * (64 * 1024),
                              i * M + j * 64 * 1024)
                os.close(fd)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    data = read_file(p)
    eq(len(data), 4 * M, "size")
    for i in range(4):
        ok(data[i * M:(i + 1) * M] == bytes([65 + i]) * M, "quarter %d" % i)


def main():
    if len(sys.argv) < 2:
        print("usage: posix.py MOUNTDIR [--only SUBSTRING]", file=sys.stderr)
        return 2
    mnt = sys.argv[1]
    only = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--only" \
        else None
    os.umask(0o022)
    root = os.path.join(mnt, "posix")
    os.mkdir(root)
    os.chmod(root, 0o755)
    for fn in CHECKS:
        name = fn.__name__
        if only and only not in name:
            continue
        d = os.path.join(root, name)
        try:
            os.mkdir(d)
            os.chmod(d, 0o755)
            fn(d)
        except Skip as e:
            print("SKIP posix/%s: %s" % (name, e), flush=True)
            results["skip"] += 1
        except Exception as e:  # noqa: BLE001 - a check's failure
            print("FAIL posix/%s: %s: %s" % (name, type(e).__name__, e),
                  flush=True)
            results["fail"] += 1
        else:
            print("PASS posix/%s" % name, flush=True)
            results["pass"] += 1
    return 1 if results["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
