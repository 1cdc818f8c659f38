/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fs_stress.c - a mounted volume through the public API (foliofs.h), every
 * kind of caller at once, under a small cache, a small dirty limit and a
 * small log, so that reclaim, writeback, writer throttling, commits and
 * checkpoints run all the time underneath.
 *
 * The volume: a 256 MiB image with a 1 MiB log, mounted with a 16 MiB
 * cache, 4 MiB dirty limit, 50 ms dirty expiry and 100 ms commits.
 *
 * Data files /data0 .. /data3, each cut into zones of 4 MiB:
 *   zone w (w < --writers)  owned by writer w: written, punched
 *                           (PUNCH_HOLE), zeroed (ZERO_RANGE) and
 *                           preallocated, only by w;
 *   the last zone (tail)    owned by the truncater: written, punched, and
 *                           truncated down and up (setattr size, fallocate
 *                           without KEEP_SIZE), so the file size moves
 *                           inside it and never below it.
 * Every 8-byte word written names its file, its offset, its owner and the
 * owner's generation of that write: W(file, off, owner, gen). Each owner
 * keeps the generation of the last write of every word of its zone (0:
 * zero, i.e. never written, punched or cut off), so what every byte must
 * read is known exactly. One handle per data file is opened at the start
 * and shared by every thread, as a FUSE frontend shares a file handle;
 * threads also open and release their own.
 *
 * Zone locks (test-side, one rwlock per zone): an owner holds its zone's
 * exclusively while it changes the zone and its generation array; exact
 * readers hold the zones they read shared (in ascending order) and compare
 * every byte. The engine's own locking is what is under test; the zone
 * locks only keep exact readers off bytes that are being changed, which
 * would be a race on file contents the engine allows by design (see the
 * racy readers).
 *
 * Threads (all seeded from --seed; each has its own PRNG):
 *  - writers (--writers, default 4): writes of 8 B .. 256 KiB, aligned to
 *    8 bytes or to blocks, and bursts up to 1 MiB (the dirty limit is 4),
 *    through the shared or a private handle;
 *    punches, zero ranges, preallocation, fsync and read-back of their own
 *    zone;
 *  - 1 truncater: the tail zones (writes that extend, truncate down to any
 *    8-byte offset and up again, fallocate past EOF), reading back across
 *    the new EOF;
 *  - 2 readers: exact random reads (byte-granular too) and sequential runs
 *    with a private handle (read-ahead); with --racy (default outside
 *    TSan) also reads with no zone lock, which accept for each word zero
 *    or any W() naming that word's file, offset and zone owner;
 *  - 1 syncer: fsync and fdatasync of shared handles, syncfs, statistics,
 *    statfs, SEEK_DATA/SEEK_HOLE, open/release;
 *  - 2 namespace churners in /ns: files created under a temporary name in
 *    the root, written with C(ino, off) words and renamed in; mkdir,
 *    rmdir, unlink, rename (plain, NOREPLACE, EXCHANGE, across the
 *    tree), link, symlink, mknod, setattr, files opened, unlinked while
 *    open, read and released, and rm -r of whole subtrees (which keeps
 *    the tree bounded: renames nest directories ever deeper);
 *  - 1 lister: readdir of /ns and of its subdirectories in small resumed
 *    pieces, plain and PLUS (whose lookup counts it forgets);
 *  - 1 looker: lookups that it holds for a while (getattr, open, read and
 *    readlink of a held inode must work even once it is unlinked),
 *    forgets, getattr of stale inode numbers, path calls.
 *
 * At the end: join (a thread that does not stop in time is a hang: abort),
 * check every byte of the data files (a wrong one is reported with what its
 * owner last did there), take a snapshot of /ns (every entry with its
 * inode, type, links, size, mtime and a checksum of its content, link
 * counts checked against the tree, statfs's inode count against the tree:
 * no orphan left), syncfs, which must leave no dirty byte and no
 * reservation (if it does, fsync of each file in turn says whose), unmount,
 * foliofs_fsck() must say 0, remount, check every byte again and compare
 * the snapshot, unmount, fsck again.
 *
 * Usage: fs_stress [--seconds N] [--seed S] [--writers W] [--racy|--no-racy]
 *        [--keep-going] [--keep-image] [--without KIND,...]
 * --without leaves kinds of operation out (punch, zero, prealloc,
 * truncate, namespace), to find which one a failure needs.
 * --keep-image keeps the image of a failed run for fsck.foliofs.
 * The seed is always printed. Exit 0: pass; 1: a check failed; 2: usage.
 * Failures inside threads are counted in an atomic and asserted from main.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "backing.h"
#include "foliofs.h"
#include "testimg.h"

#if defined(__SANITIZE_THREAD__)
#define FS_STRESS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FS_STRESS_TSAN 1
#endif
#endif

#define KiB		1024ULL
#define MiB		(1024 * KiB)
#define BLK		4096ULL
#define IMAGE_BYTES	(256 * MiB)
#define LOG_BYTES	MiB
#define NR_FILES	4
#define MAX_WRITERS	8
#define ZONE		(4 * MiB)
#define TAIL_OWNER	0x7f
#define MAX_WRITE	(256 * KiB)
#define MAX_READ	MiB
#define NR_NAMES	24
#define NR_CHURNERS	2
#define CHURN_MAX	(96 * KiB)	/* size of a churned file */
#define MAX_HELD	16
#define SNAP_DIR_MAX	64	/* entries of one directory */
#define MAX_REPORTS	20
#define W_TAG		0xA0ULL
#define C_TAG		0xC5ULL
#ifdef FS_STRESS_TSAN
#define JOIN_TIMEOUT_S	180
#else
#define JOIN_TIMEOUT_S	60
#endif

static double opt_seconds = 5;
static unsigned long opt_seed;
static unsigned int opt_writers = 4;
/*
 * Racy readers copy bytes a writer may be copying in at the same moment:
 * a race on file contents that a page cache allows (the reader sees either
 * side of the write, word by word), but that TSan rightly reports as a
 * data race in C terms. Off under TSan unless --racy.
 */
#ifdef FS_STRESS_TSAN
static bool opt_racy = false;
#else
static bool opt_racy = true;
#endif
static bool opt_keep_going;
static bool opt_keep_image;

/* --without: kinds of operation left out, to tell which one a failure
 * needs. A left-out operation becomes a write. */
enum {
	WITHOUT_PUNCH		= 1U << 0,
	WITHOUT_ZERO		= 1U << 1,
	WITHOUT_PREALLOC	= 1U << 2,	/* fallocate that maps blocks */
	WITHOUT_TRUNCATE	= 1U << 3,
	WITHOUT_NAMESPACE	= 1U << 4,	/* churners, lister, looker */
};
static const struct {
	const char	*name;
	unsigned int	bit;
} without_names[] = {
	{ "punch", WITHOUT_PUNCH },
	{ "zero", WITHOUT_ZERO },
	{ "prealloc", WITHOUT_PREALLOC },
	{ "truncate", WITHOUT_TRUNCATE },
	{ "namespace", WITHOUT_NAMESPACE },
};
static unsigned int opt_without;

static int stop;			/* atomic */
static long failures;			/* atomic */

/* ---- Helpers ------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t rng_seed(unsigned long tag)
{
	uint64_t s = opt_seed * 0x9E3779B97F4A7C15ULL + tag * 0xBF58476D1CE4E5B9ULL;

	return s ? s : 1;
}

/* Uniform in [0, n). */
static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return n ? rng_next(s) % n : 0;
}

/* Roughly log-uniform in [lo, hi]. */
static uint64_t rng_size(uint64_t *s, uint64_t lo, uint64_t hi)
{
	unsigned int steps = 0;
	uint64_t base;

	while ((lo << (steps + 1)) <= hi)
		steps++;
	base = lo << rng_below(s, steps + 1);
	base += rng_below(s, base);
	return base > hi ? hi : base;
}

static bool stopping(void)
{
	return __atomic_load_n(&stop, __ATOMIC_ACQUIRE);
}

static void bump(long *counter)
{
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

static void add(long *counter, long n)
{
	__atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

static long get(const long *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

static void report(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* Count a failure (any thread); print the first MAX_REPORTS. */
static void report(const char *fmt, ...)
{
	long n = __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
	va_list ap;

	if (n > MAX_REPORTS)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "FAIL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " [--seed %lu]\n", opt_seed);
	va_end(ap);
}

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

static const char *err_name(long err)
{
	return err < 0 ? strerror((int)-err) : "no error";
}

/* ---- The volume and the data files --------------------------------------- */

static char image[4096];
static struct foliofs *fs;
static const struct foliofs_mount_opts mount_opts = {
	.cache_bytes		= 16 * MiB,
	.dirty_bytes		= 4 * MiB,
	.dirty_expire_ms	= 50,
	.commit_ms		= 100,
};
static struct foliofs_mount_opts mopts;	/* mount_opts + no_direct */

static struct foliofs_file *shared[NR_FILES];
static foliofs_ino_t file_ino[NR_FILES];
static foliofs_ino_t ns_ino;

/* Zones 0 .. opt_writers - 1 are the writers', zone opt_writers the tail. */
static uint64_t tail_start, file_end;
static pthread_rwlock_t zone_lock[NR_FILES][MAX_WRITERS + 1];
/* Generation of the last write of each word of a zone; 0: reads zero.
 * Changed by the zone's owner under the zone lock held exclusively. */
static uint16_t *wgen[NR_FILES][MAX_WRITERS + 1];
/* File size; the tail zone's lock. */
static uint64_t tail_size[NR_FILES];

/*
 * What each owner did last, per zone, for the report of a wrong byte found
 * after the threads stopped: written by the owner only, read after join.
 */
#define HIST_LEN	16384
struct hist_ent {
	int64_t		ms;		/* since the start */
	uint64_t	pos, len;	/* a truncate: pos is the new size */
	uint16_t	gen;
	char		kind;		/* W P Z A (fallocate) T (truncate) */
	uint8_t		f;
	int		ret;
};
static struct hist_ent *hist[MAX_WRITERS + 1];
static unsigned long hist_nr[MAX_WRITERS + 1];
static struct timespec t_start;
static bool quiet;		/* the threads have stopped */

static unsigned int zone_of(uint64_t off)
{
	unsigned int z = off / ZONE;

	return z > opt_writers ? opt_writers : z;
}

static unsigned int zone_owner(unsigned int z)
{
	return z < opt_writers ? z : TAIL_OWNER;
}

static uint64_t wword(unsigned int f, uint64_t off, unsigned int owner,
		      uint16_t gen)
{
	return (W_TAG | f) << 56 | (uint64_t)owner << 48 |
	       (uint64_t)gen << 32 | (uint32_t)(off >> 3);
}

/* The word at 8-aligned @off of file @f; caller holds or owns the zone. */
static uint64_t expect_word(unsigned int f, uint64_t off)
{
	unsigned int z = zone_of(off);
	uint16_t g = wgen[f][z][(off - (uint64_t)z * ZONE) >> 3];

	return g ? wword(f, off, zone_owner(z), g) : 0;
}

/* Could @w be at @off of file @f at some moment (racy readers)? */
static bool word_possible(unsigned int f, uint64_t off, uint64_t w)
{
	return w == 0 ||
	       (w >> 56 == (W_TAG | f) &&
		((w >> 48) & 0xff) == zone_owner(zone_of(off)) &&
		((w >> 32) & 0xffff) != 0 && (uint32_t)w == (uint32_t)(off >> 3));
}

static void describe_word(uint64_t w, char *out, size_t len)
{
	if (!w)
		snprintf(out, len, "zero");
	else if (w >> 60 == W_TAG >> 4)
		snprintf(out, len, "file %u offset %#" PRIx64 " owner %u gen %u",
			 (unsigned int)((w >> 56) & 0xf),
			 (uint64_t)(uint32_t)w << 3,
			 (unsigned int)((w >> 48) & 0xff),
			 (unsigned int)((w >> 32) & 0xffff));
	else if (w >> 56 == C_TAG)
		snprintf(out, len, "churn word of inode %u offset %#" PRIx64,
			 (unsigned int)((w >> 32) & 0xffffff),
			 (uint64_t)(uint32_t)w << 3);
	else
		snprintf(out, len, "garbage");
}

static void hist_dump(unsigned int f, uint64_t off);

/*
 * Compare @n bytes read at @pos of file @f with what the owners expect.
 * Caller holds the zone locks of the range (or owns the zone).
 */
static bool check_bytes(unsigned int f, uint64_t pos, const void *buf,
			size_t n, const char *who)
{
	const unsigned char *b = buf;
	uint64_t q = pos & ~7ULL, end = pos + n;

	for (; q < end; q += 8) {
		uint64_t want = expect_word(f, q), got = 0;
		unsigned int from = q < pos ? pos - q : 0;
		unsigned int to = q + 8 > end ? end - q : 8;
		char dg[96], dw[96];

		if (!memcmp((unsigned char *)&want + from, b + (q + from - pos),
			    to - from))
			continue;
		memcpy((unsigned char *)&got + from, b + (q + from - pos),
		       to - from);
		describe_word(got, dg, sizeof(dg));
		describe_word(want, dw, sizeof(dw));
		report("%s: /data%u offset %#" PRIx64 " (read %#" PRIx64 "+%zu): "
		       "got %#018" PRIx64 " (%s), expected %#018" PRIx64 " (%s)",
		       who, f, q, pos, n, got, dg, want, dw);
		if (quiet)
			hist_dump(f, q);
		return false;
	}
	return true;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec - t_start.tv_sec) * 1000 +
	       (ts.tv_nsec - t_start.tv_nsec) / 1000000;
}

/* Caller owns zone @z. */
static void hist_add(unsigned int z, char kind, unsigned int f, uint64_t pos,
		     uint64_t len, uint16_t gen, int ret)
{
	hist[z][hist_nr[z]++ % HIST_LEN] = (struct hist_ent){
		now_ms(), pos, len, gen, kind, (uint8_t)f, ret };
}

/* What the owner of @off did there lately (threads stopped). */
static void hist_dump(unsigned int f, uint64_t off)
{
	unsigned int z = zone_of(off);
	unsigned long n = hist_nr[z], i = n > HIST_LEN ? n - HIST_LEN : 0;

	fprintf(stderr, "  history of /data%u offset %#" PRIx64 " (owner %u, "
		"%lu operations, the last %lu kept):\n", f, off, zone_owner(z),
		n, n - i);
	for (; i < n; i++) {
		const struct hist_ent *h = &hist[z][i % HIST_LEN];
		bool covers = h->kind == 'T' ? off >= h->pos :
			      off >= h->pos && off < h->pos + h->len;

		if (h->f == f && covers)
			fprintf(stderr, "    %7" PRId64 " ms  %c %#" PRIx64
				"+%#" PRIx64 " gen %u ret %d\n", h->ms, h->kind,
				h->pos, h->len, h->gen, h->ret);
	}
}

static void zones_lock(unsigned int f, uint64_t pos, uint64_t len, bool excl)
{
	unsigned int z0 = zone_of(pos), z1 = zone_of(pos + len - 1);

	for (unsigned int z = z0; z <= z1; z++) {
		int err = excl ? pthread_rwlock_wrlock(&zone_lock[f][z]) :
				 pthread_rwlock_rdlock(&zone_lock[f][z]);

		if (err)
			report("zone lock: %s", strerror(err));
	}
}

static void zones_unlock(unsigned int f, uint64_t pos, uint64_t len)
{
	unsigned int z0 = zone_of(pos), z1 = zone_of(pos + len - 1);

	for (unsigned int z = z1 + 1; z-- > z0;)
		pthread_rwlock_unlock(&zone_lock[f][z]);
}

/* Bytes a read of [pos, pos + len) returns; caller holds the zone locks. */
static size_t expect_len(unsigned int f, uint64_t pos, size_t len)
{
	uint64_t size = zone_of(pos + len - 1) == opt_writers ? tail_size[f] :
			file_end;

	if (pos >= size)
		return 0;
	return pos + len > size ? size - pos : len;
}

/* Churned files: C(ino, off). */
static uint64_t cword(foliofs_ino_t ino, uint64_t off)
{
	return C_TAG << 56 | (ino & 0xffffff) << 32 | (uint32_t)(off >> 3);
}

/* ---- Statistics ---------------------------------------------------------- */

static struct {
	long	writes, write_bytes, punches, zeroes, preallocs, wfsyncs;
	long	verifies, reopen;
	long	truncs_down, truncs_up, extends, tail_writes;
	long	reads, read_bytes, seq_runs, racy_reads, racy_short;
	long	fsyncs, syncfs, seeks, stats;
	long	creates, mkdirs, rmdirs, unlinks, renames, links, symlinks;
	long	mknods, orphans, setattrs, prunes, ns_ops, ns_errors;
	long	listings, entries, plus_entries;
	long	lookups, lookup_hits, held_checks, forgets, stale_getattr;
	long	held_reads, paths;
} st;

/* ---- Threads ------------------------------------------------------------- */

struct thread {
	pthread_t		tid;
	unsigned int		id;	/* within its kind */
	uint64_t		rng;
	char			*buf;	/* MAX_READ bytes */
	uint16_t		gen;	/* owners: last generation used */
	struct foliofs_file	*priv[NR_FILES];
	uint64_t		tmp_seq;
} __attribute__((aligned(128)));

static uint16_t next_gen(struct thread *t)
{
	if (++t->gen == 0)
		t->gen = 1;
	return t->gen;
}

static struct foliofs_file *handle(struct thread *t, unsigned int f)
{
	return t->priv[f] ? t->priv[f] : shared[f];
}

/* ---- Owners: writers and the truncater ------------------------------------- */

/* A random [pos, pos + len) inside zone @z: 8-aligned, often block-aligned. */
static void pick_range(struct thread *t, unsigned int z, uint64_t max,
		       uint64_t *pos, uint64_t *len)
{
	uint64_t zs = (uint64_t)z * ZONE;
	uint64_t l = rng_size(&t->rng, 8, max) & ~7ULL;

	if (!l)
		l = 8;
	if (rng_below(&t->rng, 3) == 0) {
		l = (l + BLK - 1) & ~(BLK - 1);
		*pos = zs + rng_below(&t->rng, (ZONE - l) / BLK + 1) * BLK;
	} else {
		*pos = zs + rng_below(&t->rng, (ZONE - l) / 8 + 1) * 8;
	}
	*len = l;
}

static void set_gens(unsigned int f, unsigned int z, uint64_t pos, uint64_t len,
		     uint16_t gen)
{
	uint64_t zs = (uint64_t)z * ZONE;

	for (uint64_t p = pos; p < pos + len; p += 8)
		wgen[f][z][(p - zs) >> 3] = gen;
}

static void owner_write(struct thread *t, unsigned int f, unsigned int z)
{
	uint64_t pos, len, *w = (uint64_t *)t->buf;
	uint16_t gen = next_gen(t);
	ssize_t n;

	if (rng_below(&t->rng, 8)) {
		pick_range(t, z, MAX_WRITE, &pos, &len);
	} else {
		/* A burst, so writers meet the dirty limit. */
		len = rng_size(&t->rng, MAX_WRITE, MAX_READ) & ~(BLK - 1);
		pos = (uint64_t)z * ZONE +
		      rng_below(&t->rng, (ZONE - len) / BLK + 1) * BLK;
	}
	for (uint64_t i = 0; i < len / 8; i++)
		w[i] = wword(f, pos + i * 8, zone_owner(z), gen);
	zones_lock(f, pos, len, true);
	n = foliofs_write(handle(t, f), t->buf, len, pos);
	if (n != (ssize_t)len)
		report("owner %u: write /data%u %#" PRIx64 "+%" PRIu64 " returned "
		       "%zd (%s)", zone_owner(z), f, pos, len, n, err_name(n));
	hist_add(z, 'W', f, pos, len, gen, (int)(n < 0 ? n : 0));
	if (n > 0) {
		set_gens(f, z, pos, (uint64_t)n & ~7ULL, gen);
		if (z == opt_writers && pos + n > tail_size[f])
			tail_size[f] = pos + n;
	}
	zones_unlock(f, pos, len);
	bump(&st.writes);
	add(&st.write_bytes, n > 0 ? n : 0);
}

/* PUNCH_HOLE, ZERO_RANGE (both KEEP_SIZE) or plain preallocation. */
static void owner_fallocate(struct thread *t, unsigned int f, unsigned int z,
			    int mode)
{
	uint64_t pos, len, end;
	unsigned int kind = mode & FALLOC_FL_PUNCH_HOLE ? WITHOUT_PUNCH :
			    mode & FALLOC_FL_ZERO_RANGE ? WITHOUT_ZERO :
			    WITHOUT_PREALLOC;
	int ret;

	if (opt_without & kind) {
		owner_write(t, f, z);
		return;
	}
	pick_range(t, z, MiB, &pos, &len);
	end = pos + len;
	zones_lock(f, pos, len, true);
	ret = foliofs_fallocate(handle(t, f), mode, pos, len);
	hist_add(z, mode & FALLOC_FL_PUNCH_HOLE ? 'P' :
		 mode & FALLOC_FL_ZERO_RANGE ? 'Z' : 'A', f, pos, len, 0, ret);
	if (ret)
		report("owner %u: fallocate(%#x) /data%u %#" PRIx64 "+%" PRIu64
		       " returned %d (%s)", zone_owner(z), mode, f, pos, len,
		       ret, err_name(ret));
	else if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		set_gens(f, z, pos, len, 0);
	else if (!(mode & FALLOC_FL_KEEP_SIZE) && end > tail_size[f])
		tail_size[f] = end;	/* only the tail zone grows the file */
	zones_unlock(f, pos, len);
	if (mode & FALLOC_FL_PUNCH_HOLE)
		bump(&st.punches);
	else if (mode & FALLOC_FL_ZERO_RANGE)
		bump(&st.zeroes);
	else
		bump(&st.preallocs);
}

/* Read back a piece of our own zone: nobody else changes it. */
static void owner_verify(struct thread *t, unsigned int f, unsigned int z)
{
	uint64_t pos, len;
	size_t want;
	ssize_t n;

	pick_range(t, z, MAX_READ, &pos, &len);
	if (z == opt_writers)
		zones_lock(f, pos, len, false);	/* for tail_size only */
	want = expect_len(f, pos, len);
	n = foliofs_read(handle(t, f), t->buf, len, pos);
	if (n != (ssize_t)want)
		report("owner %u: read-back /data%u %#" PRIx64 "+%" PRIu64
		       " returned %zd, expected %zu", zone_owner(z), f, pos, len,
		       n, want);
	else
		check_bytes(f, pos, t->buf, n, "owner read-back");
	if (z == opt_writers)
		zones_unlock(f, pos, len);
	bump(&st.verifies);
}

static void owner_fsync(struct thread *t, unsigned int f)
{
	int ret = foliofs_fsync(handle(t, f), rng_below(&t->rng, 2));

	if (ret)
		report("fsync /data%u returned %d (%s)", f, ret, err_name(ret));
	bump(&st.wfsyncs);
}

/* Swap between the shared handle and a private one. */
static void owner_reopen(struct thread *t, unsigned int f)
{
	int ret;

	if (t->priv[f]) {
		foliofs_release(t->priv[f]);
		t->priv[f] = NULL;
	} else {
		ret = foliofs_open(fs, file_ino[f], O_RDWR, &t->priv[f]);
		if (ret) {
			report("open /data%u (ino %" PRIu64 ") returned %d (%s)",
			       f, file_ino[f], ret, err_name(ret));
			t->priv[f] = NULL;
		}
	}
	bump(&st.reopen);
}

static void release_private(struct thread *t)
{
	for (unsigned int f = 0; f < NR_FILES; f++) {
		if (t->priv[f])
			foliofs_release(t->priv[f]);
		t->priv[f] = NULL;
	}
}

static void *writer_main(void *arg)
{
	struct thread *t = arg;

	foliofs_thread_init();
	while (!stopping()) {
		unsigned int f = rng_below(&t->rng, NR_FILES);
		unsigned int op = rng_below(&t->rng, 100);

		if (op < 60)
			owner_write(t, f, t->id);
		else if (op < 68)
			owner_fallocate(t, f, t->id,
					FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
		else if (op < 71)
			owner_fallocate(t, f, t->id,
					FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
		else if (op < 74)
			owner_fallocate(t, f, t->id, FALLOC_FL_KEEP_SIZE);
		else if (op < 78)
			owner_fsync(t, f);
		else if (op < 96)
			owner_verify(t, f, t->id);
		else
			owner_reopen(t, f);
	}
	release_private(t);
	foliofs_thread_exit();
	return NULL;
}

/* setattr(size) of a data file to @size inside the tail zone. */
static void tail_resize(struct thread *t, unsigned int f, uint64_t size)
{
	struct foliofs_attr in = { .size = size }, out;
	uint64_t old;
	int ret;

	if (opt_without & WITHOUT_TRUNCATE) {
		owner_write(t, f, opt_writers);
		return;
	}
	zones_lock(f, tail_start, ZONE, true);
	old = tail_size[f];
	ret = foliofs_setattr(fs, file_ino[f], &in, FOLIOFS_SET_SIZE, &out);
	hist_add(opt_writers, 'T', f, size, 0, 0, ret);
	if (ret) {
		report("truncate /data%u to %#" PRIx64 " returned %d (%s)", f,
		       size, ret, err_name(ret));
	} else {
		if (out.size != size)
			report("truncate /data%u to %#" PRIx64 ": setattr says "
			       "size %#" PRIx64, f, size, out.size);
		if (size < old)
			set_gens(f, opt_writers, size, file_end - size, 0);
		tail_size[f] = size;
	}
	/* Across the new EOF: exactly what is left, then nothing. */
	if (!ret && size > tail_start) {
		uint64_t pos = size - 8 - 8 * rng_below(&t->rng, 64);
		ssize_t n;

		if (pos < tail_start)
			pos = tail_start;
		n = foliofs_read(handle(t, f), t->buf, 4 * BLK, pos);
		if (n != (ssize_t)(size - pos))
			report("read across the new EOF %#" PRIx64 " of /data%u "
			       "at %#" PRIx64 " returned %zd, expected %" PRIu64,
			       size, f, pos, n, size - pos);
		else
			check_bytes(f, pos, t->buf, n, "read across EOF");
	}
	zones_unlock(f, tail_start, ZONE);
	if (size < old)
		bump(&st.truncs_down);
	else
		bump(&st.truncs_up);
}

static void *truncater_main(void *arg)
{
	struct thread *t = arg;
	unsigned int z = opt_writers;

	foliofs_thread_init();
	while (!stopping()) {
		unsigned int f = rng_below(&t->rng, NR_FILES);
		unsigned int op = rng_below(&t->rng, 100);

		if (op < 40) {
			owner_write(t, f, z);
			bump(&st.tail_writes);
		} else if (op < 60) {
			uint64_t size = tail_start +
					rng_below(&t->rng, ZONE / 8 + 1) * 8;

			if (rng_below(&t->rng, 3) == 0)
				size &= ~(BLK - 1);
			tail_resize(t, f, size);
		} else if (op < 68) {
			tail_resize(t, f, file_end -
				    rng_below(&t->rng, ZONE / BLK / 4) * BLK);
		} else if (op < 73) {
			owner_fallocate(t, f, z,
					FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
		} else if (op < 76) {
			owner_fallocate(t, f, z,
					FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
		} else if (op < 80) {
			owner_fallocate(t, f, z, 0);	/* may grow the file */
			bump(&st.extends);
		} else if (op < 97) {
			owner_verify(t, f, z);
		} else {
			owner_reopen(t, f);
		}
	}
	release_private(t);
	foliofs_thread_exit();
	return NULL;
}

/* ---- Readers ----------------------------------------------------------------- */

static void exact_read(struct thread *t, struct foliofs_file *h, unsigned int f,
		       uint64_t pos, size_t len, const char *who)
{
	size_t want;
	ssize_t n;

	zones_lock(f, pos, len, false);
	want = expect_len(f, pos, len);
	n = foliofs_read(h, t->buf, len, pos);
	if (n != (ssize_t)want)
		report("%s: read /data%u %#" PRIx64 "+%zu returned %zd, "
		       "expected %zu", who, f, pos, len, n, want);
	else
		check_bytes(f, pos, t->buf, n, who);
	zones_unlock(f, pos, len);
	bump(&st.reads);
	add(&st.read_bytes, n > 0 ? n : 0);
}

static void racy_read(struct thread *t, unsigned int f)
{
	size_t len = rng_size(&t->rng, BLK, MAX_READ) & ~(BLK - 1);
	uint64_t pos = rng_below(&t->rng, (file_end - len) / BLK + 1) * BLK;
	ssize_t n = foliofs_read(shared[f], t->buf, len, pos);

	bump(&st.racy_reads);
	if (n < 0 || (size_t)n > len || n % 8) {
		report("racy read /data%u %#" PRIx64 "+%zu returned %zd", f, pos,
		       len, n);
		return;
	}
	if ((size_t)n < len) {
		bump(&st.racy_short);
		if (pos + n < tail_start)
			report("racy read /data%u %#" PRIx64 "+%zu returned %zd: "
			       "short below the tail zone", f, pos, len, n);
	}
	for (ssize_t i = 0; i < n; i += 8) {
		uint64_t w;
		char d[96];

		memcpy(&w, t->buf + i, 8);
		if (word_possible(f, pos + i, w))
			continue;
		describe_word(w, d, sizeof(d));
		report("racy read: /data%u offset %#" PRIx64 " holds %#018"
		       PRIx64 " (%s)", f, pos + i, w, d);
		return;
	}
}

/* A sequential run with a private handle, so read-ahead has a state. */
static void sequential_run(struct thread *t, unsigned int f)
{
	struct foliofs_file *h;
	size_t step = rng_size(&t->rng, 16 * KiB, MiB) & ~(BLK - 1);
	unsigned int steps = 2 + rng_below(&t->rng, 14);
	uint64_t pos;
	int ret;

	ret = foliofs_open(fs, file_ino[f], O_RDONLY, &h);
	if (ret) {
		report("open /data%u O_RDONLY returned %d (%s)", f, ret,
		       err_name(ret));
		return;
	}
	if (step * steps > file_end)
		steps = file_end / step;
	pos = rng_below(&t->rng, (file_end - step * steps) / BLK + 1) * BLK;
	for (unsigned int i = 0; i < steps && !stopping(); i++) {
		exact_read(t, h, f, pos, step, "sequential reader");
		pos += step;
	}
	foliofs_release(h);
	bump(&st.seq_runs);
}

static void *reader_main(void *arg)
{
	struct thread *t = arg;

	foliofs_thread_init();
	while (!stopping()) {
		unsigned int f = rng_below(&t->rng, NR_FILES);
		unsigned int op = rng_below(&t->rng, 10);

		if (op == 0) {
			sequential_run(t, f);
		} else if (op < 3 && opt_racy) {
			racy_read(t, f);
		} else {
			size_t len = rng_size(&t->rng, 1, MAX_READ);
			uint64_t pos = rng_below(&t->rng, file_end - len + 1);

			if (rng_below(&t->rng, 2)) {
				len = (len + BLK - 1) & ~(BLK - 1);
				pos &= ~(BLK - 1);
				if (pos + len > file_end)
					pos = file_end - len;
			}
			exact_read(t, shared[f], f, pos, len, "reader");
		}
	}
	foliofs_thread_exit();
	return NULL;
}

/* ---- Syncer ---------------------------------------------------------------- */

static void *syncer_main(void *arg)
{
	struct thread *t = arg;

	foliofs_thread_init();
	while (!stopping()) {
		unsigned int f = rng_below(&t->rng, NR_FILES);
		unsigned int op = rng_below(&t->rng, 10);
		int ret;

		if (op < 4) {
			ret = foliofs_fsync(shared[f], rng_below(&t->rng, 2));
			if (ret)
				report("syncer: fsync /data%u returned %d (%s)",
				       f, ret, err_name(ret));
			bump(&st.fsyncs);
		} else if (op < 6) {
			ret = foliofs_syncfs(fs);
			if (ret)
				report("syncer: syncfs returned %d (%s)", ret,
				       err_name(ret));
			bump(&st.syncfs);
		} else if (op < 7) {
			struct foliofs_stats s;
			struct foliofs_statfs sf;

			if (foliofs_stats(fs, &s) || foliofs_statfs(fs, &sf))
				report("syncer: stats or statfs failed");
			else if (s.free_blocks > s.total_blocks ||
				 sf.bfree > sf.blocks || sf.block_size != BLK ||
				 s.log_used_bytes > s.log_size_bytes)
				report("syncer: stats say free %" PRIu64 " of %"
				       PRIu64 ", statfs free %" PRIu64 " of %"
				       PRIu64 " bs %" PRIu64 ", log %" PRIu64
				       " of %" PRIu64, s.free_blocks,
				       s.total_blocks, sf.bfree, sf.blocks,
				       sf.block_size, s.log_used_bytes,
				       s.log_size_bytes);
			bump(&st.stats);
		} else if (op < 9) {
			uint64_t off = rng_below(&t->rng, file_end);
			int whence = rng_below(&t->rng, 2) ? SEEK_DATA : SEEK_HOLE;
			int64_t r = foliofs_lseek(shared[f], off, whence);

			if (r != -ENXIO && (r < 0 || (uint64_t)r < off ||
					    (uint64_t)r > file_end))
				report("syncer: lseek(/data%u, %#" PRIx64 ", %s) "
				       "returned %" PRId64, f, off,
				       whence == SEEK_DATA ? "SEEK_DATA" :
				       "SEEK_HOLE", r);
			bump(&st.seeks);
		} else {
			owner_reopen(t, f);
		}
		sleep_us(rng_below(&t->rng, 3000));
	}
	release_private(t);
	foliofs_thread_exit();
	return NULL;
}

/* ---- Namespace churn ------------------------------------------------------------ */

static void pool_name(char *name, size_t len, unsigned int i)
{
	snprintf(name, len, "e%02u", i);
}

static bool is_pool_name(const char *name)
{
	char *end;
	unsigned long i;

	if (name[0] != 'e' || name[1] < '0' || name[1] > '9')
		return false;
	i = strtoul(name + 1, &end, 10);
	return !*end && end == name + 3 && i < NR_NAMES;
}

/* Did @ret come out of a call whose acceptable errors are @ok (0-ended)? */
static bool expected(long ret, const int *ok)
{
	if (ret >= 0)
		return true;
	for (; *ok; ok++)
		if (ret == -*ok)
			return true;
	return false;
}

#define EXPECT(ret, what, ...) do {					\
	static const int ok_[] = { __VA_ARGS__, 0 };			\
	long r_ = (ret);						\
									\
	if (!expected(r_, ok_))						\
		report("churn: %s returned %ld (%s)", what, r_,		\
		       err_name(r_));					\
	else if (r_ < 0)						\
		bump(&st.ns_errors);					\
} while (0)

/*
 * /ns or a directory below it, by a random walk that stops at each level
 * with even odds (no lookup count kept: a directory removed meanwhile
 * makes the caller's call fail with ENOENT). Renames nest directories
 * deeper and deeper; the walk and the pruner keep reaching them.
 */
#define WALK_DEPTH	8

static foliofs_ino_t pick_dir(struct thread *t)
{
	foliofs_ino_t dir = ns_ino;

	for (unsigned int d = 0; d < WALK_DEPTH && rng_below(&t->rng, 2); d++) {
		struct foliofs_attr a;
		char name[16];

		pool_name(name, sizeof(name), rng_below(&t->rng, NR_NAMES));
		if (foliofs_lookup(fs, dir, name, &a))
			break;
		foliofs_forget(fs, a.ino, 1);
		if (!S_ISDIR(a.mode))
			break;
		dir = a.ino;
	}
	return dir;
}

/* Read a churned file (held open) and check its words. */
static void check_churned(struct thread *t, struct foliofs_file *h,
			  foliofs_ino_t ino, uint64_t size, const char *who)
{
	size_t len = size < MAX_READ ? size : MAX_READ;
	ssize_t n = foliofs_read(h, t->buf, MAX_READ, 0);

	if (n != (ssize_t)len) {
		report("%s: read of inode %" PRIu64 " (size %" PRIu64 ") "
		       "returned %zd", who, ino, size, n);
		return;
	}
	for (ssize_t i = 0; i + 8 <= n; i += 8) {
		uint64_t w;
		char d[96];

		memcpy(&w, t->buf + i, 8);
		if (!w || w == cword(ino, i))
			continue;
		describe_word(w, d, sizeof(d));
		report("%s: inode %" PRIu64 " offset %#zx holds %#018" PRIx64
		       " (%s)", who, ino, (size_t)i, w, d);
		return;
	}
}

/* Write a file under a temporary name in the root, then rename it in. */
static void churn_create(struct thread *t, foliofs_ino_t dir, const char *name)
{
	struct foliofs_attr a;
	struct foliofs_file *h;
	char tmp[64];
	unsigned int chunks = rng_below(&t->rng, 4);
	unsigned int flags = rng_below(&t->rng, 3) ? 0 : FOLIOFS_RENAME_NOREPLACE;
	int ret;

	snprintf(tmp, sizeof(tmp), "tmp.%u.%" PRIu64, t->id, t->tmp_seq++);
	ret = foliofs_create(fs, FOLIOFS_ROOT_INO, tmp, 0644,
			     O_RDWR | O_CREAT | O_EXCL, NULL, &a, &h);
	if (ret) {
		report("churn: create /%s returned %d (%s)", tmp, ret,
		       err_name(ret));
		return;
	}
	for (unsigned int c = 0; c < chunks; c++) {
		uint64_t len = rng_size(&t->rng, 8, CHURN_MAX / 2) & ~7ULL;
		uint64_t pos = rng_below(&t->rng, (CHURN_MAX - len) / 8 + 1) * 8;
		uint64_t *w = (uint64_t *)t->buf;
		ssize_t n;

		if (!len)
			len = 8;
		for (uint64_t i = 0; i < len / 8; i++)
			w[i] = cword(a.ino, pos + i * 8);
		n = foliofs_write(h, t->buf, len, pos);
		if (n != (ssize_t)len)
			report("churn: write /%s %#" PRIx64 "+%" PRIu64
			       " returned %zd", tmp, pos, len, n);
	}
	if (rng_below(&t->rng, 8) == 0 && (ret = foliofs_fsync(h, 0)))
		report("churn: fsync /%s returned %d (%s)", tmp, ret,
		       err_name(ret));
	/* Sometimes closed before the rename, sometimes after. */
	if (rng_below(&t->rng, 2)) {
		foliofs_release(h);
		h = NULL;
	}
	ret = foliofs_rename(fs, FOLIOFS_ROOT_INO, tmp, dir, name, flags);
	EXPECT(ret, "rename of a new file", ENOENT, EEXIST, EISDIR, ENOTEMPTY);
	if (ret) {
		ret = foliofs_unlink(fs, FOLIOFS_ROOT_INO, tmp);
		if (ret)
			report("churn: unlink /%s returned %d (%s)", tmp, ret,
			       err_name(ret));
	}
	if (h)
		foliofs_release(h);
	foliofs_forget(fs, a.ino, 1);
	bump(&st.creates);
}

/* Open a file, unlink it while open, read it, let go. */
static void churn_orphan(struct thread *t, foliofs_ino_t dir, const char *name)
{
	struct foliofs_attr a;
	struct foliofs_file *h;
	int ret;

	if (foliofs_lookup(fs, dir, name, &a))
		return;
	if (!S_ISREG(a.mode)) {
		foliofs_forget(fs, a.ino, 1);
		return;
	}
	ret = foliofs_open(fs, a.ino, O_RDONLY, &h);
	if (ret) {
		report("churn: open of looked-up inode %" PRIu64 " returned %d "
		       "(%s)", a.ino, ret, err_name(ret));
		foliofs_forget(fs, a.ino, 1);
		return;
	}
	/* Our lookup count keeps it: the entry may be gone, not the inode. */
	EXPECT(foliofs_unlink(fs, dir, name), "unlink of an open file", ENOENT,
	       EISDIR);
	if (rng_below(&t->rng, 2)) {
		foliofs_forget(fs, a.ino, 1);
		check_churned(t, h, a.ino, a.size, "orphan read");
		foliofs_release(h);
	} else {
		check_churned(t, h, a.ino, a.size, "orphan read");
		foliofs_release(h);
		foliofs_forget(fs, a.ino, 1);
	}
	bump(&st.orphans);
}

/* One directory's entries: pool names only below /ns, a few in the root. */
struct snap_list {
	char		names[SNAP_DIR_MAX][16];
	foliofs_ino_t	inos[SNAP_DIR_MAX];
	unsigned int	nr;
	bool		overflow;
};

static int snap_fill(void *arg, const char *name, foliofs_ino_t ino,
		     uint32_t type, uint64_t next, const struct foliofs_attr *attr)
{
	struct snap_list *l = arg;

	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (l->nr == SNAP_DIR_MAX || strlen(name) >= sizeof(l->names[0])) {
		l->overflow = true;
		return 0;
	}
	snprintf(l->names[l->nr], sizeof(l->names[0]), "%s", name);
	l->inos[l->nr++] = ino;
	return 0;
}

/*
 * rm -r of @name in @dir, racing the other churners (every error that a
 * concurrent change explains is fair), so the tree stays bounded.
 */
static void prune(struct thread *t, foliofs_ino_t dir, const char *name,
		  unsigned int depth)
{
	struct snap_list *l;
	struct foliofs_attr a;
	struct foliofs_file *h;

	if (foliofs_lookup(fs, dir, name, &a))
		return;
	if (!S_ISDIR(a.mode)) {
		EXPECT(foliofs_unlink(fs, dir, name), "prune: unlink", ENOENT,
		       EISDIR);
		goto out;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		report("prune: out of memory");
		goto out;
	}
	/* Our lookup count holds the directory while we empty it. */
	if (depth < 32 && !foliofs_open(fs, a.ino, O_RDONLY | O_DIRECTORY, &h)) {
		int ret = foliofs_readdir(h, 0, 0, snap_fill, l);

		if (ret)
			report("prune: readdir of inode %" PRIu64 " returned %d "
			       "(%s)", a.ino, ret, err_name(ret));
		foliofs_release(h);
		for (unsigned int i = 0; i < l->nr; i++)
			prune(t, a.ino, l->names[i], depth + 1);
	}
	free(l);
	EXPECT(foliofs_rmdir(fs, dir, name), "prune: rmdir", ENOENT, ENOTDIR,
	       ENOTEMPTY);
out:
	foliofs_forget(fs, a.ino, 1);
}

static void *churner_main(void *arg)
{
	struct thread *t = arg;

	foliofs_thread_init();
	while (!stopping()) {
		char n1[16], n2[16], target[32];
		foliofs_ino_t d1 = pick_dir(t), d2 = pick_dir(t);
		unsigned int op = rng_below(&t->rng, 100);
		struct foliofs_attr a;
		long ret;

		pool_name(n1, sizeof(n1), rng_below(&t->rng, NR_NAMES));
		pool_name(n2, sizeof(n2), rng_below(&t->rng, NR_NAMES));
		if (op < 3) {
			prune(t, d1, n1, 0);
			bump(&st.prunes);
		} else if (op < 22) {
			churn_create(t, d1, n1);
		} else if (op < 30) {
			ret = foliofs_mkdir(fs, d1, n1, 0755, NULL, &a);
			EXPECT(ret, "mkdir", EEXIST, ENOENT, EMLINK);
			if (!ret)
				foliofs_forget(fs, a.ino, 1);
			bump(&st.mkdirs);
		} else if (op < 38) {
			EXPECT(foliofs_rmdir(fs, d1, n1), "rmdir", ENOENT,
			       ENOTDIR, ENOTEMPTY);
			bump(&st.rmdirs);
		} else if (op < 50) {
			EXPECT(foliofs_unlink(fs, d1, n1), "unlink", ENOENT,
			       EISDIR);
			bump(&st.unlinks);
		} else if (op < 68) {
			unsigned int fl = rng_below(&t->rng, 4);

			fl = fl == 2 ? FOLIOFS_RENAME_NOREPLACE :
			     fl == 3 ? FOLIOFS_RENAME_EXCHANGE : 0;
			EXPECT(foliofs_rename(fs, d1, n1, d2, n2, fl), "rename",
			       ENOENT, EEXIST, EISDIR, ENOTDIR, ENOTEMPTY,
			       EINVAL);
			bump(&st.renames);
		} else if (op < 76) {
			if (!foliofs_lookup(fs, d1, n1, &a)) {
				struct foliofs_attr b;

				ret = foliofs_link(fs, a.ino, d2, n2, &b);
				EXPECT(ret, "link", ENOENT, EEXIST, EPERM,
				       EMLINK);
				if (!ret)
					foliofs_forget(fs, b.ino, 1);
				foliofs_forget(fs, a.ino, 1);
			}
			bump(&st.links);
		} else if (op < 82) {
			snprintf(target, sizeof(target), "target-%u", op);
			ret = foliofs_symlink(fs, d1, n1, target, NULL, &a);
			EXPECT(ret, "symlink", EEXIST, ENOENT);
			if (!ret)
				foliofs_forget(fs, a.ino, 1);
			bump(&st.symlinks);
		} else if (op < 85) {
			ret = foliofs_mknod(fs, d1, n1, S_IFIFO | 0600, 0, NULL,
					    &a);
			EXPECT(ret, "mknod", EEXIST, ENOENT);
			if (!ret)
				foliofs_forget(fs, a.ino, 1);
			bump(&st.mknods);
		} else if (op < 92) {
			churn_orphan(t, d1, n1);
		} else {
			if (!foliofs_lookup(fs, d1, n1, &a)) {
				struct foliofs_attr in = {
					.mode = 0600 | rng_below(&t->rng, 0200),
					.atime = { 1000 + op, 0 },
				};

				ret = foliofs_setattr(fs, a.ino, &in,
						      FOLIOFS_SET_MODE |
						      FOLIOFS_SET_ATIME |
						      FOLIOFS_SET_MTIME_NOW,
						      NULL);
				if (ret)
					report("churn: setattr of looked-up "
					       "inode %" PRIu64 " returned %ld "
					       "(%s)", a.ino, ret, err_name(ret));
				foliofs_forget(fs, a.ino, 1);
			}
			bump(&st.setattrs);
		}
		bump(&st.ns_ops);
	}
	foliofs_thread_exit();
	return NULL;
}

/* ---- Lister ----------------------------------------------------------------------- */

struct list_ctx {
	unsigned int		max, taken;
	uint64_t		last_next;
	bool			plus;
	foliofs_ino_t		dir;
	foliofs_ino_t		forget[8];
	unsigned int		nr_forget;
};

static int list_fill(void *arg, const char *name, foliofs_ino_t ino,
		     uint32_t type, uint64_t next, const struct foliofs_attr *attr)
{
	struct list_ctx *c = arg;
	bool dot = !strcmp(name, "."), dotdot = !strcmp(name, "..");

	if (c->taken == c->max)
		return 1;
	c->taken++;
	if (next <= c->last_next)
		report("readdir of %" PRIu64 ": cursor %" PRIu64 " after %" PRIu64
		       " (entry %s)", c->dir, next, c->last_next, name);
	if ((dot && next != 1) || (dotdot && next != 2) ||
	    (!dot && !dotdot && next <= 3))
		report("readdir of %" PRIu64 ": entry %s has cursor %" PRIu64,
		       c->dir, name, next);
	c->last_next = next;
	if (!dot && !dotdot && !is_pool_name(name))
		report("readdir of %" PRIu64 ": unknown name \"%s\"", c->dir, name);
	if (!ino || (type != DT_REG && type != DT_DIR && type != DT_LNK &&
		     type != DT_FIFO))
		report("readdir of %" PRIu64 ": %s has inode %" PRIu64 " type %u",
		       c->dir, name, ino, type);
	if (c->plus && !attr)
		report("readdir plus of %" PRIu64 ": %s came without attributes",
		       c->dir, name);
	if (!c->plus && attr)
		report("readdir of %" PRIu64 ": %s came with attributes", c->dir,
		       name);
	if (attr && !dot && !dotdot) {
		if (attr->ino != ino || ((attr->mode & S_IFMT) >> 12) != type)
			report("readdir plus of %" PRIu64 ": %s says inode %" PRIu64
			       " type %u, its attributes inode %" PRIu64 " mode %o",
			       c->dir, name, ino, type, attr->ino, attr->mode);
		c->forget[c->nr_forget++] = ino;	/* max <= 8 */
	}
	return 0;
}

static void list_dir(struct thread *t, foliofs_ino_t dir)
{
	struct list_ctx c = { .plus = rng_below(&t->rng, 2), .dir = dir };
	struct foliofs_file *h;
	uint64_t pos = 0;
	unsigned int calls = 0;
	int ret;

	ret = foliofs_open(fs, dir, O_RDONLY | O_DIRECTORY, &h);
	if (ret) {
		if (ret != -ENOENT || dir == ns_ino)
			report("lister: open dir %" PRIu64 " returned %d (%s)",
			       dir, ret, err_name(ret));
		return;
	}
	for (;;) {
		c.max = 1 + rng_below(&t->rng, 8);
		c.taken = 0;
		c.nr_forget = 0;
		ret = foliofs_readdir(h, pos, c.plus ? FOLIOFS_READDIR_PLUS : 0,
				      list_fill, &c);
		for (unsigned int i = 0; i < c.nr_forget; i++)
			foliofs_forget(fs, c.forget[i], 1);
		add(&st.plus_entries, c.nr_forget);
		add(&st.entries, c.taken);
		if (ret) {
			report("lister: readdir of %" PRIu64 " at %" PRIu64
			       " returned %d (%s)", dir, pos, ret, err_name(ret));
			break;
		}
		if (c.taken < c.max)
			break;		/* the end */
		pos = c.last_next;
		if (++calls > 10000) {
			report("lister: readdir of %" PRIu64 " does not end", dir);
			break;
		}
	}
	foliofs_release(h);
	bump(&st.listings);
}

static void *lister_main(void *arg)
{
	struct thread *t = arg;

	foliofs_thread_init();
	while (!stopping()) {
		struct foliofs_attr a;
		char name[16];

		if (rng_below(&t->rng, 3)) {
			list_dir(t, ns_ino);
			continue;
		}
		pool_name(name, sizeof(name), rng_below(&t->rng, NR_NAMES));
		if (foliofs_lookup(fs, ns_ino, name, &a))
			continue;
		/* Held by our lookup count while we list it. */
		if (S_ISDIR(a.mode))
			list_dir(t, a.ino);
		foliofs_forget(fs, a.ino, 1);
	}
	foliofs_thread_exit();
	return NULL;
}

/* ---- Looker: lookups, held inodes, forgets -------------------------------------------- */

struct held {
	foliofs_ino_t	ino;
	uint32_t	mode;
	uint64_t	nlookup;
};

static void held_check(struct thread *t, struct held *h)
{
	struct foliofs_attr a;
	struct foliofs_file *f;
	int ret = foliofs_getattr(fs, h->ino, &a);

	bump(&st.held_checks);
	if (ret) {
		report("looker: getattr of inode %" PRIu64 ", held by %" PRIu64
		       " lookups, returned %d (%s)", h->ino, h->nlookup, ret,
		       err_name(ret));
		return;
	}
	if ((a.mode & S_IFMT) != (h->mode & S_IFMT) || a.ino != h->ino)
		report("looker: inode %" PRIu64 " mode %o became inode %" PRIu64
		       " mode %o", h->ino, h->mode, a.ino, a.mode);
	if (S_ISREG(a.mode) && rng_below(&t->rng, 2)) {
		ret = foliofs_open(fs, h->ino, O_RDONLY, &f);
		if (ret) {
			report("looker: open of held inode %" PRIu64 " (nlink %u) "
			       "returned %d (%s)", h->ino, a.nlink, ret,
			       err_name(ret));
			return;
		}
		check_churned(t, f, h->ino, a.size, "looker read");
		foliofs_release(f);
		bump(&st.held_reads);
	} else if (S_ISLNK(a.mode)) {
		char buf[64];
		ssize_t n = foliofs_readlink(fs, h->ino, buf, sizeof(buf) - 1);

		if (n < 8 || n >= (ssize_t)sizeof(buf) ||
		    memcmp(buf, "target-", 7) || (uint64_t)n != a.size)
			report("looker: readlink of inode %" PRIu64 " returned %zd",
			       h->ino, n);
	}
}

static void *looker_main(void *arg)
{
	struct thread *t = arg;
	struct held held[MAX_HELD];
	unsigned int nr = 0;
	foliofs_ino_t max_ino = ns_ino;

	foliofs_thread_init();
	while (!stopping()) {
		unsigned int op = rng_below(&t->rng, 100);
		struct foliofs_attr a = { 0 };
		char name[16], path[64];
		unsigned int i;
		int ret;

		pool_name(name, sizeof(name), rng_below(&t->rng, NR_NAMES));
		if (op < 40) {
			foliofs_ino_t dir = pick_dir(t);

			ret = foliofs_lookup(fs, dir, name, &a);
			bump(&st.lookups);
			if (ret) {
				if (ret != -ENOENT)
					report("looker: lookup %s in %" PRIu64
					       " returned %d (%s)", name, dir, ret,
					       err_name(ret));
				continue;
			}
			bump(&st.lookup_hits);
			if (a.ino > max_ino)
				max_ino = a.ino;
			for (i = 0; i < nr && held[i].ino != a.ino; i++)
				;
			if (i < nr) {
				held[i].nlookup++;
			} else if (nr < MAX_HELD) {
				held[nr++] = (struct held){ a.ino, a.mode, 1 };
			} else {
				i = rng_below(&t->rng, nr);
				foliofs_forget(fs, held[i].ino, held[i].nlookup);
				held[i] = (struct held){ a.ino, a.mode, 1 };
				bump(&st.forgets);
			}
		} else if (op < 70) {
			if (nr)
				held_check(t, &held[rng_below(&t->rng, nr)]);
		} else if (op < 80) {
			if (nr) {
				i = rng_below(&t->rng, nr);
				foliofs_forget(fs, held[i].ino, held[i].nlookup);
				held[i] = held[--nr];
				bump(&st.forgets);
			}
		} else if (op < 88) {
			foliofs_ino_t ino = 1 + rng_below(&t->rng, max_ino + 4);

			ret = foliofs_getattr(fs, ino, &a);
			if (ret && ret != -ENOENT)
				report("looker: getattr of inode %" PRIu64
				       " returned %d (%s)", ino, ret,
				       err_name(ret));
			else if (!ret && a.ino != ino)
				report("looker: getattr of inode %" PRIu64
				       " gave inode %" PRIu64, ino, a.ino);
			bump(&st.stale_getattr);
		} else if (op < 94) {
			unsigned int f = rng_below(&t->rng, NR_FILES);

			snprintf(path, sizeof(path), "data%u", f);
			ret = foliofs_lookup(fs, FOLIOFS_ROOT_INO, path, &a);
			if (ret || a.ino != file_ino[f] || !S_ISREG(a.mode) ||
			    a.size < tail_start || a.size > file_end ||
			    a.nlink != 1)
				report("looker: lookup /data%u returned %d: inode "
				       "%" PRIu64 " mode %o size %#" PRIx64
				       " nlink %u", f, ret, a.ino, a.mode, a.size,
				       a.nlink);
			if (!ret)
				foliofs_forget(fs, a.ino, 1);
		} else {
			foliofs_ino_t ino;

			snprintf(path, sizeof(path), "/ns/%s", name);
			ret = rng_below(&t->rng, 2) ?
			      foliofs_stat_path(fs, path, &a) :
			      foliofs_resolve(fs, path, &ino);
			if (ret && ret != -ENOENT)
				report("looker: %s returned %d (%s)", path, ret,
				       err_name(ret));
			bump(&st.paths);
		}
	}
	while (nr--) {
		foliofs_forget(fs, held[nr].ino, held[nr].nlookup);
		bump(&st.forgets);
	}
	foliofs_thread_exit();
	return NULL;
}

/* ---- Final checks -------------------------------------------------------------------- */

/* Every byte of every data file, as the owners left it. Quiet: no locks. */
static void check_data(struct foliofs_file **h, char *buf, const char *when)
{
	for (unsigned int f = 0; f < NR_FILES; f++) {
		struct foliofs_attr a = { 0 };
		char who[64];

		snprintf(who, sizeof(who), "%s: /data%u", when, f);
		if (foliofs_getattr(fs, file_ino[f], &a) || a.size != tail_size[f])
			report("%s: size %#" PRIx64 ", expected %#" PRIx64, who,
			       a.size, tail_size[f]);
		for (uint64_t p = 0; p < file_end; p += MAX_READ) {
			size_t want = expect_len(f, p, MAX_READ);
			ssize_t n = foliofs_read(h[f], buf, MAX_READ, p);

			if (n != (ssize_t)want) {
				report("%s: read at %#" PRIx64 " returned %zd, "
				       "expected %zu", who, p, n, want);
				break;
			}
			/* Every chunk: one failure may hide another. */
			check_bytes(f, p, buf, n, who);
		}
	}
}

struct snap_ent {
	char		*path;
	foliofs_ino_t	ino;
	uint32_t	mode;
	uint32_t	nlink;
	uint64_t	size;
	int64_t		mtime_ns;
	uint64_t	sum;		/* content or target checksum */
	unsigned int	subdirs;
};

/* Every entry under /ns, whatever the depth renames nested it to. */
struct snap {
	struct snap_ent	*e;
	unsigned int	nr, cap;
};

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static struct snap_ent *snap_add(struct snap *s)
{
	if (s->nr == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 256;
		s->e = realloc(s->e, s->cap * sizeof(*s->e));
		assert_non_null(s->e);
	}
	memset(&s->e[s->nr], 0, sizeof(s->e[0]));
	return &s->e[s->nr++];
}

static void snap_free(struct snap *s)
{
	for (unsigned int i = 0; i < s->nr; i++)
		free(s->e[i].path);
	free(s->e);
	memset(s, 0, sizeof(*s));
}

/* Add the entries of @dir (named @prefix), depth first. */
static void snap_dir(struct snap *s, foliofs_ino_t dir, const char *prefix,
		     char *buf)
{
	struct snap_list *l = calloc(1, sizeof(*l));
	struct foliofs_file *h;
	int ret;

	assert_non_null(l);
	ret = foliofs_open(fs, dir, O_RDONLY | O_DIRECTORY, &h);
	if (ret) {
		report("snapshot: open %s returned %d (%s)", prefix, ret,
		       err_name(ret));
		free(l);
		return;
	}
	ret = foliofs_readdir(h, 0, 0, snap_fill, l);
	foliofs_release(h);
	if (ret || l->overflow)
		report("snapshot: readdir %s returned %d (%s)%s", prefix, ret,
		       err_name(ret), l->overflow ? ", and unknown names" : "");
	for (unsigned int i = 0; i < l->nr; i++) {
		unsigned int me = s->nr;
		struct snap_ent *e = snap_add(s);
		struct foliofs_attr a;
		struct foliofs_file *fh;

		assert_true(asprintf(&e->path, "%s/%s", prefix, l->names[i]) > 0);
		ret = foliofs_getattr(fs, l->inos[i], &a);
		if (ret) {
			report("snapshot: %s (inode %" PRIu64 ") getattr "
			       "returned %d (%s)", e->path, l->inos[i], ret,
			       err_name(ret));
			continue;
		}
		e->ino = a.ino;
		e->mode = a.mode;
		e->nlink = a.nlink;
		e->size = a.size;
		e->mtime_ns = a.mtime.tv_sec * 1000000000LL + a.mtime.tv_nsec;
		if (S_ISREG(a.mode)) {
			struct thread tt = { .buf = buf };

			ret = foliofs_open(fs, a.ino, O_RDONLY, &fh);
			if (ret) {
				report("snapshot: open %s returned %d", e->path,
				       ret);
				continue;
			}
			if (a.size > CHURN_MAX)
				report("snapshot: %s is %" PRIu64 " bytes",
				       e->path, a.size);
			check_churned(&tt, fh, a.ino, a.size, e->path);
			e->sum = fnv(buf, a.size < MAX_READ ? a.size : MAX_READ,
				     0xcbf29ce484222325ULL);
			foliofs_release(fh);
		} else if (S_ISLNK(a.mode)) {
			char tgt[64];
			ssize_t n = foliofs_readlink(fs, a.ino, tgt, sizeof(tgt));

			if (n <= 0 || n > (ssize_t)sizeof(tgt))
				report("snapshot: readlink %s returned %zd",
				       e->path, n);
			else
				e->sum = fnv(tgt, n, 0xcbf29ce484222325ULL);
		} else if (S_ISDIR(a.mode)) {
			char *path = strdup(e->path);
			unsigned int subdirs = 0;

			assert_non_null(path);
			/* s->e moves as it grows: e is stale after this. */
			snap_dir(s, a.ino, path, buf);
			for (unsigned int j = me + 1; j < s->nr; j++) {
				const char *rest = s->e[j].path + strlen(path) + 1;

				if (S_ISDIR(s->e[j].mode) && !strchr(rest, '/'))
					subdirs++;
			}
			s->e[me].subdirs = subdirs;
			free(path);
		}
	}
	free(l);
}

static int snap_cmp(const void *a, const void *b)
{
	return strcmp(((const struct snap_ent *)a)->path,
		      ((const struct snap_ent *)b)->path);
}

static int ino_cmp(const void *a, const void *b)
{
	foliofs_ino_t x = *(const foliofs_ino_t *)a, y = *(const foliofs_ino_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Snapshot of /ns, sorted by path, with link counts checked against the
 * tree. Return: the number of distinct inodes in it.
 */
static unsigned int take_snapshot(struct snap *s, char *buf, const char *when)
{
	foliofs_ino_t *inos;
	unsigned int distinct = 0;

	snap_free(s);
	snap_dir(s, ns_ino, "/ns", buf);
	qsort(s->e, s->nr, sizeof(s->e[0]), snap_cmp);
	inos = calloc(s->nr + 1, sizeof(*inos));
	assert_non_null(inos);
	for (unsigned int i = 0; i < s->nr; i++)
		inos[i] = s->e[i].ino;
	qsort(inos, s->nr, sizeof(*inos), ino_cmp);
	for (unsigned int i = 0; i < s->nr; i++)
		distinct += !i || inos[i] != inos[i - 1];
	for (unsigned int i = 0; i < s->nr; i++) {
		struct snap_ent *e = &s->e[i];
		foliofs_ino_t *p = bsearch(&e->ino, inos, s->nr, sizeof(*inos),
					   ino_cmp);
		unsigned int names = 0;

		/* Count the names of e->ino: the run of it in inos. */
		while (p > inos && p[-1] == e->ino)
			p--;
		while (p + names < inos + s->nr && p[names] == e->ino)
			names++;
		if (S_ISDIR(e->mode)) {
			if (e->nlink != 2 + e->subdirs)
				report("%s: directory %s has nlink %u, %u "
				       "subdirectories", when, e->path, e->nlink,
				       e->subdirs);
			if (names != 1)
				report("%s: directory %s (inode %" PRIu64 ") has "
				       "%u names", when, e->path, e->ino, names);
		} else if (e->nlink != names) {
			report("%s: %s (inode %" PRIu64 ") has nlink %u, %u "
			       "names", when, e->path, e->ino, e->nlink, names);
		}
	}
	free(inos);
	return distinct;
}

static void compare_snapshots(const struct snap *a, const struct snap *b)
{
	if (a->nr != b->nr)
		report("after remount: /ns holds %u entries, %u before", b->nr,
		       a->nr);
	for (unsigned int i = 0; i < a->nr && i < b->nr; i++) {
		const struct snap_ent *x = &a->e[i], *y = &b->e[i];

		if (strcmp(x->path, y->path) || x->ino != y->ino ||
		    x->mode != y->mode || x->nlink != y->nlink ||
		    x->size != y->size || x->sum != y->sum ||
		    x->mtime_ns != y->mtime_ns) {
			report("after remount: %s inode %" PRIu64 " mode %o nlink "
			       "%u size %" PRIu64 " mtime %" PRId64 " sum %#"
			       PRIx64 "; before: %s inode %" PRIu64 " mode %o "
			       "nlink %u size %" PRIu64 " mtime %" PRId64
			       " sum %#" PRIx64, y->path, y->ino, y->mode,
			       y->nlink, y->size, y->mtime_ns, y->sum, x->path,
			       x->ino, x->mode, x->nlink, x->size, x->mtime_ns,
			       x->sum);
			return;
		}
	}
}

static uint64_t dirty_now(void)
{
	struct foliofs_stats s;

	return foliofs_stats(fs, &s) ? 0 : s.dirty_bytes;
}

/*
 * syncfs left dirty data: say whose it is, by fsyncing each file in turn.
 * A file whose fsync writes it was dirty but not on the volume's dirty
 * list, where syncfs (and unmount) look.
 */
static void find_dirty(const struct snap *ns)
{
	uint64_t left = dirty_now(), now;

	for (unsigned int f = 0; f < NR_FILES && left; f++) {
		foliofs_fsync(shared[f], 0);
		now = dirty_now();
		if (now < left)
			fprintf(stderr, "  fsync of /data%u wrote %" PRIu64 " dirty "
				"bytes syncfs did not\n", f, left - now);
		left = now;
	}
	for (unsigned int i = 0; i < ns->nr && left; i++) {
		struct foliofs_file *h;

		if (!S_ISREG(ns->e[i].mode) ||
		    foliofs_open(fs, ns->e[i].ino, O_RDONLY, &h))
			continue;
		foliofs_fsync(h, 0);
		foliofs_release(h);
		now = dirty_now();
		if (now < left)
			fprintf(stderr, "  fsync of %s (inode %" PRIu64 ") wrote %"
				PRIu64 " dirty bytes syncfs did not\n",
				ns->e[i].path, ns->e[i].ino, left - now);
		left = now;
	}
	if (left)
		fprintf(stderr, "  %" PRIu64 " dirty bytes belong to no file "
			"fsync reaches\n", left);
}

/* The root holds exactly the data files and ns: no temporary left. */
static void check_root(const char *when)
{
	struct snap_list *l = calloc(1, sizeof(*l));
	struct foliofs_file *h;

	assert_non_null(l);
	assert_int_equal(foliofs_open(fs, FOLIOFS_ROOT_INO, O_RDONLY | O_DIRECTORY,
				      &h), 0);
	assert_int_equal(foliofs_readdir(h, 0, 0, snap_fill, l), 0);
	foliofs_release(h);
	if (l->nr != NR_FILES + 1)
		report("%s: the root holds %u entries, expected %u", when, l->nr,
		       NR_FILES + 1);
	for (unsigned int i = 0; i < l->nr; i++)
		if (strncmp(l->names[i], "data", 4) && strcmp(l->names[i], "ns"))
			report("%s: the root holds \"%s\"", when, l->names[i]);
	free(l);
}

/* Inodes in use must be exactly the tree's: no orphan left behind. */
static void check_inode_count(unsigned int in_ns, const char *when)
{
	struct foliofs_statfs sf;

	assert_int_equal(foliofs_statfs(fs, &sf), 0);
	if (sf.files != 2 + NR_FILES + in_ns)
		report("%s: statfs counts %" PRIu64 " inodes, the tree holds %u",
		       when, sf.files, 2 + NR_FILES + in_ns);
}

static void fsck_report(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "fsck: %s\n", msg);
}

static void run_fsck(const char *when)
{
	int ret = foliofs_fsck(image, 0, fsck_report, NULL);

	if (ret != FOLIOFS_FSCK_OK)
		report("fsck %s returned %d", when, ret);
}

static void open_files(bool create)
{
	for (unsigned int f = 0; f < NR_FILES; f++) {
		char path[32];

		snprintf(path, sizeof(path), "/data%u", f);
		assert_int_equal(foliofs_open_path(fs, path,
						   O_RDWR | (create ? O_CREAT : 0),
						   0644, &shared[f]), 0);
		if (create)
			file_ino[f] = foliofs_file_ino(shared[f]);
		else
			assert_int_equal(foliofs_file_ino(shared[f]), file_ino[f]);
	}
	assert_int_equal(foliofs_resolve(fs, "/ns", &ns_ino), 0);
}

static void close_files(void)
{
	for (unsigned int f = 0; f < NR_FILES; f++) {
		assert_int_equal(foliofs_release(shared[f]), 0);
		shared[f] = NULL;
	}
}

/* ---- Run ---------------------------------------------------------------------------- */

typedef void *(*thread_fn)(void *);

static void start(thread_fn fn, unsigned int n, struct thread *pool,
		  unsigned int *nr)
{
	for (unsigned int i = 0; i < n; i++) {
		struct thread *t = &pool[*nr];

		t->id = i;
		t->rng = rng_seed(100 + *nr);
		t->buf = malloc(MAX_READ);
		assert_non_null(t->buf);
		assert_int_equal(pthread_create(&t->tid, NULL, fn, t), 0);
		(*nr)++;
	}
}

static void print_stats(void)
{
	struct foliofs_statfs sf;
	struct foliofs_stats s;

	printf("fs_stress: writes %ld (%ld MiB), punches %ld, zero ranges %ld, "
	       "preallocs %ld, fsyncs %ld, read-backs %ld, reopens %ld\n",
	       get(&st.writes), get(&st.write_bytes) >> 20, get(&st.punches),
	       get(&st.zeroes), get(&st.preallocs), get(&st.wfsyncs),
	       get(&st.verifies), get(&st.reopen));
	printf("fs_stress: tail: writes %ld, truncates down %ld up %ld, "
	       "extending fallocates %ld\n", get(&st.tail_writes),
	       get(&st.truncs_down), get(&st.truncs_up), get(&st.extends));
	printf("fs_stress: reads %ld (%ld MiB, %ld sequential runs), racy "
	       "reads %ld (%ld short); syncer: fsyncs %ld, syncfs %ld, seeks "
	       "%ld, stats %ld\n", get(&st.reads), get(&st.read_bytes) >> 20,
	       get(&st.seq_runs), get(&st.racy_reads), get(&st.racy_short),
	       get(&st.fsyncs), get(&st.syncfs), get(&st.seeks), get(&st.stats));
	printf("fs_stress: namespace: %ld ops (%ld expected errors): creates "
	       "%ld, mkdirs %ld, rmdirs %ld, unlinks %ld, renames %ld, links "
	       "%ld, symlinks %ld, mknods %ld, orphans %ld, setattrs %ld, "
	       "prunes %ld\n",
	       get(&st.ns_ops), get(&st.ns_errors), get(&st.creates),
	       get(&st.mkdirs), get(&st.rmdirs), get(&st.unlinks),
	       get(&st.renames), get(&st.links), get(&st.symlinks),
	       get(&st.mknods), get(&st.orphans), get(&st.setattrs),
	       get(&st.prunes));
	printf("fs_stress: listings %ld (%ld entries, %ld plus); lookups %ld "
	       "(%ld hits), held checks %ld (%ld reads), forgets %ld, stale "
	       "getattrs %ld, path calls %ld\n", get(&st.listings),
	       get(&st.entries), get(&st.plus_entries), get(&st.lookups),
	       get(&st.lookup_hits), get(&st.held_checks), get(&st.held_reads),
	       get(&st.forgets), get(&st.stale_getattr), get(&st.paths));
	if (!foliofs_statfs(fs, &sf))
		printf("fs_stress: volume: %" PRIu64 " of %" PRIu64 " blocks free "
		       "(%" PRIu64 " available), %" PRIu64 " inodes\n", sf.bfree,
		       sf.blocks, sf.bavail, sf.files);
	if (!foliofs_stats(fs, &s))
		printf("fs_stress: engine: hits %" PRIu64 " misses %" PRIu64
		       " reclaimed %" PRIu64 " folios, written %" PRIu64
		       " MiB, throttled %" PRIu64 ", commits %" PRIu64
		       ", checkpoints %" PRIu64 ", log %" PRIu64 " MiB, splits %"
		       PRIu64 ", wb errors %" PRIu64 "\n", s.hits, s.misses,
		       s.reclaimed_folios, s.written_bytes >> 20,
		       s.throttled_writes, s.commits, s.checkpoints,
		       s.log_bytes >> 20, s.splits, s.writeback_errors);
	fflush(stdout);
}

static void test_stress(void **state)
{
	enum { NR_MAX = 32 };
	static struct thread threads[NR_MAX];
	static struct snap before, after;
	unsigned int nr = 0, in_ns, in_ns2;
	struct foliofs_stats s;
	struct timespec ts;
	pthread_rwlockattr_t attr;
	char *buf;
	int ret;

	(void)state;
	/*
	 * cmocka's handlers longjmp into the main thread's test from whichever
	 * thread faulted; die with the signal (and a core) instead.
	 */
	signal(SIGSEGV, SIG_DFL);
	signal(SIGBUS, SIG_DFL);
	signal(SIGILL, SIG_DFL);
	signal(SIGFPE, SIG_DFL);
	buf = malloc(MAX_READ);
	assert_non_null(buf);

	assert_int_equal(testimg_probe("fs_stress"), 0);
	testimg_path(image, sizeof(image), "img");
	mopts = mount_opts;
	mopts.no_direct = testimg_open_flags & BACKING_NO_DIRECT ? 1 : 0;
	ret = foliofs_mkfs(image, &(struct foliofs_mkfs_opts){
		.size = IMAGE_BYTES, .log_bytes = LOG_BYTES, .force = 1 });
	if (ret)
		fprintf(stderr, "mkfs: %s\n", foliofs_strerror());
	assert_int_equal(ret, 0);
	ret = foliofs_mount(image, &mopts, &fs);
	if (ret)
		fprintf(stderr, "mount: %s\n", foliofs_strerror());
	assert_int_equal(ret, 0);

	/* The files, at their full size (holes) before anyone starts. */
	tail_start = (uint64_t)opt_writers * ZONE;
	file_end = tail_start + ZONE;
	assert_int_equal(foliofs_mkdir_path(fs, "/ns", 0755), 0);
	open_files(true);
	pthread_rwlockattr_init(&attr);
	/* Owners must not starve behind a stream of readers. */
	pthread_rwlockattr_setkind_np(&attr,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	for (unsigned int f = 0; f < NR_FILES; f++) {
		struct foliofs_attr in = { .size = file_end };

		assert_int_equal(foliofs_setattr(fs, file_ino[f], &in,
						 FOLIOFS_SET_SIZE, NULL), 0);
		tail_size[f] = file_end;
		for (unsigned int z = 0; z <= opt_writers; z++) {
			wgen[f][z] = calloc(ZONE / 8, sizeof(uint16_t));
			assert_non_null(wgen[f][z]);
			pthread_rwlock_init(&zone_lock[f][z], &attr);
		}
	}
	pthread_rwlockattr_destroy(&attr);

	for (unsigned int z = 0; z <= opt_writers; z++) {
		hist[z] = calloc(HIST_LEN, sizeof(*hist[z]));
		hist_nr[z] = 0;
		assert_non_null(hist[z]);
	}
	clock_gettime(CLOCK_MONOTONIC, &t_start);
	quiet = false;
	__atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
	memset(threads, 0, sizeof(threads));
	start(writer_main, opt_writers, threads, &nr);
	start(truncater_main, 1, threads, &nr);
	start(reader_main, 2, threads, &nr);
	start(syncer_main, 1, threads, &nr);
	if (!(opt_without & WITHOUT_NAMESPACE)) {
		start(churner_main, NR_CHURNERS, threads, &nr);
		start(lister_main, 1, threads, &nr);
		start(looker_main, 1, threads, &nr);
	}

	for (long ms = 0; ms < opt_seconds * 1000 &&
			  (opt_keep_going || !get(&failures)); ms += 50)
		sleep_us(50000);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += JOIN_TIMEOUT_S;
	for (unsigned int i = 0; i < nr; i++) {
		if (pthread_timedjoin_np(threads[i].tid, NULL, &ts)) {
			fprintf(stderr, "thread %u still running %d s after stop: "
				"deadlock, lost wake-up or livelock [--seed %lu]\n",
				i, JOIN_TIMEOUT_S, opt_seed);
			abort();
		}
	}
	print_stats();
	quiet = true;
	printf("fs_stress: threads stopped at %" PRId64 " ms\n", now_ms());

	/* Quiet now: every byte, the namespace, then make it all durable. */
	check_data(shared, buf, "after the run");
	check_root("after the run");
	in_ns = take_snapshot(&before, buf, "after the run");
	check_inode_count(in_ns, "after the run");
	ret = foliofs_syncfs(fs);
	if (ret)
		report("final syncfs returned %d (%s)", ret, err_name(ret));
	assert_int_equal(foliofs_stats(fs, &s), 0);
	if (s.dirty_bytes || s.reserved_blocks) {
		report("after syncfs: %" PRIu64 " dirty bytes, %" PRIu64
		       " blocks reserved (expected 0, 0)", s.dirty_bytes,
		       s.reserved_blocks);
		find_dirty(&before);
	}
	if (opt_seconds >= 3 && (!s.checkpoints || !s.reclaimed_folios ||
				 !s.throttled_writes))
		printf("fs_stress: note: checkpoints %" PRIu64 ", reclaimed %"
		       PRIu64 ", throttled %" PRIu64 ": not every mechanism "
		       "ran\n", s.checkpoints, s.reclaimed_folios,
		       s.throttled_writes);
	close_files();
	ret = foliofs_unmount(fs);
	fs = NULL;
	if (ret)
		report("unmount returned %d (%s)", ret, err_name(ret));
	run_fsck("after the run");

	/* Again from the disk alone. */
	ret = foliofs_mount(image, &mopts, &fs);
	if (ret)
		fprintf(stderr, "remount: %s\n", foliofs_strerror());
	assert_int_equal(ret, 0);
	open_files(false);
	check_data(shared, buf, "after remount");
	check_root("after remount");
	in_ns2 = take_snapshot(&after, buf, "after remount");
	compare_snapshots(&before, &after);
	check_inode_count(in_ns2, "after remount");
	close_files();
	ret = foliofs_unmount(fs);
	fs = NULL;
	if (ret)
		report("second unmount returned %d (%s)", ret, err_name(ret));
	run_fsck("after remount");
	printf("fs_stress: /ns held %u entries (%u inodes) at the end\n",
	       before.nr, in_ns);
	snap_free(&before);
	snap_free(&after);

	for (unsigned int i = 0; i < NR_MAX; i++)
		free(threads[i].buf);
	for (unsigned int z = 0; z <= opt_writers; z++)
		free(hist[z]);
	for (unsigned int f = 0; f < NR_FILES; f++) {
		for (unsigned int z = 0; z <= opt_writers; z++) {
			free(wgen[f][z]);
			pthread_rwlock_destroy(&zone_lock[f][z]);
		}
	}
	free(buf);
	foliofs_thread_exit();
	assert_int_equal(get(&failures), 0);
}

/* Also after a failed assert: the image is 256 MiB (sparse). */
static int teardown(void **state)
{
	(void)state;
	if (get(&failures) && opt_keep_image && image[0])
		fprintf(stderr, "image kept: %s\n", image);
	else
		testimg_cleanup();
	return 0;
}

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [--seconds N] [--seed S] [--writers W] "
		"[--racy|--no-racy] [--keep-going] [--keep-image] "
		"[--without punch,zero,prealloc,truncate,namespace]\n", prog);
	exit(2);
}

static void parse_without(const char *prog, const char *list)
{
	char *copy = strdup(list), *save = NULL;

	for (char *w = strtok_r(copy, ",", &save); w;
	     w = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < sizeof(without_names) / sizeof(without_names[0]);
		     i++)
			if (!strcmp(w, without_names[i].name))
				break;
		if (i == sizeof(without_names) / sizeof(without_names[0]))
			usage(prog);
		opt_without |= without_names[i].bit;
	}
	free(copy);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stress),
	};
	bool seeded = false;
	int failed;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
			opt_seconds = strtod(argv[++i], NULL);
		} else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			opt_seed = strtoul(argv[++i], NULL, 0);
			seeded = true;
		} else if (!strcmp(argv[i], "--writers") && i + 1 < argc) {
			opt_writers = strtoul(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--racy")) {
			opt_racy = true;
		} else if (!strcmp(argv[i], "--no-racy")) {
			opt_racy = false;
		} else if (!strcmp(argv[i], "--keep-going")) {
			opt_keep_going = true;
		} else if (!strcmp(argv[i], "--keep-image")) {
			opt_keep_image = true;
		} else if (!strcmp(argv[i], "--without") && i + 1 < argc) {
			parse_without(argv[0], argv[++i]);
		} else {
			usage(argv[0]);
		}
	}
	if (opt_seconds <= 0 || opt_writers < 1 || opt_writers > MAX_WRITERS)
		usage(argv[0]);
	if (!seeded)
		opt_seed = (unsigned long)time(NULL) ^ (unsigned long)getpid();
	printf("fs_stress: --seed %lu --seconds %g --writers %u%s", opt_seed,
	       opt_seconds, opt_writers, opt_racy ? " --racy" : " --no-racy");
	for (size_t i = 0; i < sizeof(without_names) / sizeof(without_names[0]);
	     i++)
		if (opt_without & without_names[i].bit)
			printf(" --without %s", without_names[i].name);
	printf("\n");

	failed = cmocka_run_group_tests(tests, NULL, teardown);
	if (failed)
		printf("fs_stress: FAILED with --seed %lu\n", opt_seed);
	return failed ? 1 : 0;
}
