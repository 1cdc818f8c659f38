/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * filemap_stress.c - the page cache under every race at once: reads, writes,
 * lookups of tail indices, splits, punches, truncates, reclaim, pins and
 * writeback on two files behind one cache with a small limit.
 *
 * Files (pattern-mode memstores, tests/lib/memstore.h):
 *  A  64 MiB, file id 1. Written, punched and truncated.
 *     [0, 32 MiB)      stable zone: written, never punched or truncated;
 *     [32, 64 MiB)     punch zone: punched (page-aligned ranges); its last
 *                      8 MiB are truncated away and re-extended.
 *  B  16 MiB, file id 2. Only read, looked up, split, pinned and reclaimed.
 *
 * What a byte must be. Writers write whole 8-byte words
 * W(pos, gen) = 0xC3 << 56 | gen << 32 | pos / 8, so every word names the
 * file offset it belongs to. The test keeps, for file A, the generation of
 * the last write of every word (0: never written since the last punch) and,
 * per page, whether it was punched or truncated away. A word is therefore
 * exactly one of: W(pos, last gen), zero (punched since), or the store's
 * pattern. Checks are exact, not "one of several": see range locks.
 *
 * Range locks (test-side, per 1 MiB chunk of A, taken in one global order:
 * every chunk's punch lock ascending, then every chunk's write lock
 * ascending):
 *  - exact readers and exact lookups take both shared;
 *  - writers take the punch lock shared and the write lock exclusive;
 *  - punch and truncate take the punch lock exclusive.
 * So a reader never overlaps a writer or a punch of its own range and may
 * demand the exact bytes; the engine's own locking is what is under test
 * everywhere else (splits, reclaim, pins, writeback, lookups and racy
 * readers take no range lock at all).
 *
 * Racy readers (--no-racy turns them off; off by default under TSan, see
 * opt_racy) read the punch zone holding only
 * the write locks (so they never read bytes a writer is copying, which would
 * be a data race TSan reports), i.e. they race punch and truncate on
 * purpose. They accept zero, the pattern or any W(pos, gen) for the word's
 * own offset, and short reads (a truncate). After each punch the punch
 * thread, still holding its locks, reads the range back and demands zeroes:
 * a folio that a racy reader brought in while the punch ran must not keep
 * data from before the punch.
 *
 * Sequential readers (file_ra_state, windows up to 1 MiB) stay in B and in
 * A's first 20 MiB, so read-ahead past their locked range never reaches the
 * punch zone.
 *
 * Pins: pinners pin folios in A's stable zone and in B (with --pin-punched
 * also in the punch zone), half of them under the folio lock, half with only
 * a reference (folio_pin()'s contract), and check while pinned that the
 * folio stays in the tree with its mapping (law 8: no eviction, no split)
 * and keeps its blkstate.
 *
 * Threads: --threads readers (default 3; random exact reads of 4 KiB to
 * 2 MiB, a quarter of them at byte offsets, and one run in five sequential
 * with a file_ra_state), 1 racy reader, 2 writers, 2 lookup checkers
 * (filemap_get_folio at tail indices of large folios: the folio held must
 * contain the index and have this mapping or none, laws 1 and 4; batches;
 * bytes checked under the folio lock), 2 splitters (filemap_split_folio to
 * a random smaller order: 0, -EAGAIN or -EBUSY, nothing else), 1 punch and
 * truncate thread, 1 reclaim thread (cache_reclaim against a 24 MiB limit
 * for 80 MiB of files), 2 pinners and 1 writeback thread (locks dirty
 * folios, sets writeback, memstore_write_folio, ends writeback a little
 * later). Clients stop first; writeback and reclaim stop last, since a read
 * in a cache that is over its limit with dirty data waits for writeback.
 *
 * At the end: a last writeback pass, zero reservations in the map and the
 * store (law 7), no DIRTY mark left, every byte of A and B checked through
 * the cache and then again from the store alone (fresh filemaps), and after
 * destroying everything and fs_rcu_barrier(): no folio descriptor, folio
 * byte, blkstate or xarray node left, and a clean folio_pool_exit().
 *
 * Regression cases run first, each in a child process (the same binary
 * with --case NAME), so a BUG abort or a hang is reported rather than
 * fatal; see the table at the end of this file.
 *
 * Usage: filemap_stress [--seconds N] [--seed S] [--threads R] [--no-racy]
 *        [--pin-punched] [--keep-going] [--no-cases] [--case NAME]
 * --keep-going runs the full time after a failure (for soak runs); by
 * default the run stops at the first one.
 * The seed is always printed. Exit 0: pass; 1: a check failed; 2: usage.
 * Failures inside threads are counted in an atomic and asserted from main.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "blkstate.h"
#include "filemap.h"
#include "memstore.h"
#include "readahead.h"
#include "reclaim.h"

#define MiB		(1LL << 20)
#define A_SIZE		(64 * MiB)
#define B_SIZE		(16 * MiB)
#define A_ID		1
#define B_ID		2
#define PUNCH_ZONE	(32 * MiB)	/* A: punched from here on */
#define TRUNC_ZONE	(56 * MiB)	/* A: truncated to here at the lowest */
#define RA_ZONE		(20 * MiB)	/* A: sequential readers stay below */
#define RA_MAX_PAGES	256U		/* their window: 1 MiB */
/*
 * The cache holds well under the 80 MiB of the two files, so reclaim never
 * rests; the reclaim thread takes what is over the limit and some churn.
 * Under TSan the readers run some 20 times slower but sleeps do not, so the
 * churn is scaled down, or readers lose what they just read ahead to it
 * before they copy it, over and over (see the report on read progress
 * under pressure).
 */
#define CACHE_LIMIT	(24 * MiB)
#ifdef FOLIOFS_TSAN
#define RECLAIM_PAUSE_US 5000
#define RECLAIM_CHURN	(256 * 1024)	/* most extra per call */
#define RECLAIM_BATCH	64		/* one call in this many is large */
#else
#define RECLAIM_PAUSE_US 1000
#define RECLAIM_CHURN	MiB
#define RECLAIM_BATCH	16
#endif
#define CHUNK_SHIFT	20
#define NR_CHUNKS	(A_SIZE >> CHUNK_SHIFT)
#define MAX_READ	(2 * MiB)
#define MAX_WRITE	(256 * 1024)
#define W_TAG		0xC3ULL
#define GEN_MASK	0xffffffU
#define MAX_REPORTS	20
#ifdef FOLIOFS_TSAN
#define JOIN_TIMEOUT_S	180	/* a 2 MiB exact read under TSan is slow */
#else
#define JOIN_TIMEOUT_S	60
#endif

static double opt_seconds = 5;
static unsigned long opt_seed;
static unsigned int opt_readers = 3;
/*
 * Under ThreadSanitizer the racy reader is off by default: it copies file
 * data that a punch is zeroing at the same moment, a race on file contents
 * that a page cache allows by design (a read racing a punch may see either
 * side of it; the kernel's does the same), but that TSan rightly reports as
 * a data race in C terms. --racy turns it on anyway.
 */
#ifdef FOLIOFS_TSAN
static bool opt_racy = false;
#else
static bool opt_racy = true;
#endif
static bool opt_pin_punched;
static bool opt_keep_going;

static int stop;			/* atomic: clients stop */
static int stop_service;		/* atomic: writeback and reclaim stop */
static long failures;			/* atomic */

/* ---- Helpers ----------------------------------------------------------- */

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

/*
 * Writeback and reclaim run until every client has stopped: a read that
 * finds the cache over its limit and full of dirty folios makes progress
 * only once writeback cleans some (see the read-dirty-full-cache case).
 */
static bool service_stopping(void)
{
	return __atomic_load_n(&stop_service, __ATOMIC_ACQUIRE);
}

static void bump(long *counter)
{
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
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

/* ---- The files ------------------------------------------------------------ */

static struct fs_cache cache;
static struct memstore ms_a, ms_b;
static struct filemap map_a, map_b;

/* A: generation of the last write of each 8-byte word; 0: none since the
 * word was last punched (or ever). Changed under the range locks. Atomic. */
static uint32_t *wgen;
/* A: page was punched or truncated away (reads zero unless rewritten).
 * Set under the range locks, never cleared. Atomic. */
static unsigned char *zeroed;
static uint32_t next_gen;		/* atomic */

static uint64_t wword(uint64_t pos, uint32_t gen)
{
	return W_TAG << 56 | (uint64_t)(gen & GEN_MASK) << 32 | (pos >> 3);
}

static bool is_wword_for(uint64_t w, uint64_t pos)
{
	return w >> 56 == W_TAG && (uint32_t)w == (uint32_t)(pos >> 3) &&
	       ((w >> 32) & GEN_MASK) != 0;
}

static uint32_t new_gen(void)
{
	return __atomic_fetch_add(&next_gen, 1, __ATOMIC_RELAXED) % GEN_MASK + 1;
}

/* The word at 8-aligned @pos of @map as the test knows it now. */
static uint64_t expect_word(struct filemap *map, uint64_t pos)
{
	uint32_t g;

	if (map == &map_b)
		return memstore_pattern(B_ID, pos);
	g = __atomic_load_n(&wgen[pos >> 3], __ATOMIC_RELAXED);
	if (g)
		return wword(pos, g);
	if (__atomic_load_n(&zeroed[pos >> PAGE_SHIFT], __ATOMIC_RELAXED))
		return 0;
	return memstore_pattern(A_ID, pos);
}

static const char *map_name(const struct filemap *map)
{
	return map == &map_a ? "A" : map == &map_b ? "B" : "?";
}

/* Say what a wrong word looks like, for the report. */
static void describe_word(uint64_t w, uint64_t pos, char *out, size_t len)
{
	if (w == 0)
		snprintf(out, len, "zero");
	else if (w == memstore_pattern(A_ID, pos))
		snprintf(out, len, "A's store pattern for this offset");
	else if (w == memstore_pattern(B_ID, pos))
		snprintf(out, len, "B's store pattern for this offset");
	else if (w >> 56 == W_TAG)
		snprintf(out, len, "writer word for offset %#" PRIx64 " gen %" PRIu64,
			 (uint64_t)((w & 0xffffffffULL) << 3),
			 (uint64_t)((w >> 32) & GEN_MASK));
	else if ((w >> 56) == 0x5a)
		snprintf(out, len, "a store pattern word for offset %#" PRIx64,
			 (uint64_t)((w ^ 0x5a5a000000000000ULL) & 0xffffffffffffULL));
	else
		snprintf(out, len, "garbage");
}

/* Print what the cache holds at @pos, for the report. */
static void describe_cache(struct filemap *map, uint64_t pos)
{
	struct folio *folio = filemap_get_folio(map, pos >> PAGE_SHIFT);

	if (!folio) {
		fprintf(stderr, "  (no folio cached at page %" PRIu64 " now)\n",
			pos >> PAGE_SHIFT);
		return;
	}
	fprintf(stderr, "  folio now: index %lu order %u flags %#lx ref %d "
		"pins %d blkstate %d\n", folio->index, folio_order(folio),
		folio_flags(folio), folio_ref_count(folio),
		folio_pin_count(folio), folio_has_blkstate(folio));
	folio_put(folio);
}

/*
 * Compare @len bytes read at @pos of @map with what the test expects, byte
 * by byte against the expected words. Caller holds the range locks (file A).
 * Return: whether they match; reports the first difference.
 */
static bool check_exact(struct filemap *map, uint64_t pos, const void *buf,
			size_t len, const char *who)
{
	const unsigned char *b = buf;
	uint64_t q = pos & ~7ULL, end = pos + len;

	for (; q < end; q += 8) {
		uint64_t want = expect_word(map, q), got;
		unsigned int from = q < pos ? pos - q : 0;
		unsigned int to = q + 8 > end ? end - q : 8;
		char dg[96], dw[96];

		if (from == 0 && to == 8) {
			memcpy(&got, b + (q - pos), 8);
			if (got == want)
				continue;
		} else {
			unsigned char wb[8];

			memcpy(wb, &want, 8);
			if (!memcmp(wb + from, b + (q + from - pos), to - from))
				continue;
			got = 0;
			memcpy((unsigned char *)&got + from, b + (q + from - pos),
			       to - from);
		}
		describe_word(got, q, dg, sizeof(dg));
		describe_word(want, q, dw, sizeof(dw));
		report("%s: file %s offset %#" PRIx64 " (read %#" PRIx64 "+%zu): "
		     "got %#018" PRIx64 " (%s), expected %#018" PRIx64 " (%s)",
		     who, map_name(map), q, pos, len, got, dg, want, dw);
		describe_cache(map, q);
		return false;
	}
	return true;
}

/* ---- Range locks (see the top of the file) ---------------------------------- */

static pthread_rwlock_t punch_lock[NR_CHUNKS], write_lock[NR_CHUNKS];

enum { PUNCH_SH = 1, PUNCH_EX = 2, WRITE_SH = 4, WRITE_EX = 8 };

static void rw_take(pthread_rwlock_t *l, bool excl)
{
	int err = excl ? pthread_rwlock_wrlock(l) : pthread_rwlock_rdlock(l);

	if (err)
		report("rwlock: %s", strerror(err));
}

static void range_lock(long long pos, long long len, int how)
{
	unsigned int c0 = pos >> CHUNK_SHIFT, c1 = (pos + len - 1) >> CHUNK_SHIFT;

	if (c1 >= NR_CHUNKS)
		c1 = NR_CHUNKS - 1;
	for (unsigned int c = c0; c <= c1 && (how & (PUNCH_SH | PUNCH_EX)); c++)
		rw_take(&punch_lock[c], how & PUNCH_EX);
	for (unsigned int c = c0; c <= c1 && (how & (WRITE_SH | WRITE_EX)); c++)
		rw_take(&write_lock[c], how & WRITE_EX);
}

static void range_unlock(long long pos, long long len, int how)
{
	unsigned int c0 = pos >> CHUNK_SHIFT, c1 = (pos + len - 1) >> CHUNK_SHIFT;

	if (c1 >= NR_CHUNKS)
		c1 = NR_CHUNKS - 1;
	for (unsigned int c = c1 + 1; c-- > c0 && (how & (WRITE_SH | WRITE_EX));)
		pthread_rwlock_unlock(&write_lock[c]);
	for (unsigned int c = c1 + 1; c-- > c0 && (how & (PUNCH_SH | PUNCH_EX));)
		pthread_rwlock_unlock(&punch_lock[c]);
}

static void range_locks_init(void)
{
	pthread_rwlockattr_t attr;

	pthread_rwlockattr_init(&attr);
	/* A punch must not starve behind a stream of readers. */
	pthread_rwlockattr_setkind_np(&attr,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	for (unsigned int c = 0; c < NR_CHUNKS; c++) {
		pthread_rwlock_init(&punch_lock[c], &attr);
		pthread_rwlock_init(&write_lock[c], &attr);
	}
	pthread_rwlockattr_destroy(&attr);
}

static void range_locks_destroy(void)
{
	for (unsigned int c = 0; c < NR_CHUNKS; c++) {
		pthread_rwlock_destroy(&punch_lock[c]);
		pthread_rwlock_destroy(&write_lock[c]);
	}
}

/* ---- Statistics ------------------------------------------------------------ */

static struct {
	long	reads, read_bytes, ra_runs, ra_reads, racy_reads, racy_short;
	long	writes, write_bytes;
	long	lookups, lookup_hits, lookup_tails, lookup_content, batches;
	long	split_tries, split_ok, split_eagain, split_ebusy;
	long	punches, truncates;
	long	reclaims, reclaimed_bytes;
	long	pins, pins_locked, pin_checks, pin_lost_before;
	long	wb_folios, wb_passes;
} st;

/* ---- Readers ----------------------------------------------------------------- */

/* Each on its own cache lines: a thread's rng changes on every op. */
struct thread {
	pthread_t	tid;
	unsigned int	id;
	uint64_t	rng;
	char		*buf;		/* MAX_READ bytes */
	char		*wbuf;		/* MAX_WRITE bytes */
} __attribute__((aligned(128)));

static bool read_exact(struct thread *t, struct filemap *map,
		       struct file_ra_state *ra, long long pos, size_t len,
		       const char *who)
{
	bool locked = map == &map_a;
	bool ok = true;
	ssize_t n;

	if (locked)
		range_lock(pos, len, PUNCH_SH | WRITE_SH);
	n = filemap_read(map, ra, pos, t->buf, len);
	if (n != (ssize_t)len) {
		report("%s: filemap_read(%s, %lld, %zu) returned %zd, expected %zu",
		     who, map_name(map), pos, len, n, len);
		ok = false;
	} else {
		ok = check_exact(map, pos, t->buf, len, who);
	}
	if (locked)
		range_unlock(pos, len, PUNCH_SH | WRITE_SH);
	bump(&st.reads);
	__atomic_add_fetch(&st.read_bytes, n > 0 ? n : 0, __ATOMIC_RELAXED);
	return ok;
}

/* One random read: anywhere in A or B, aligned or not. */
static void random_read(struct thread *t)
{
	struct filemap *map = rng_below(&t->rng, 5) ? &map_a : &map_b;
	long long size = map == &map_a ? A_SIZE : B_SIZE;
	size_t len = rng_size(&t->rng, PAGE_SIZE, MAX_READ);
	long long pos;

	if (rng_below(&t->rng, 4) == 0) {
		/* Byte-granular: partial pages and words at both ends. */
		len -= rng_below(&t->rng, PAGE_SIZE);
		pos = rng_below(&t->rng, size - len + 1);
	} else {
		len &= ~(PAGE_SIZE - 1);
		pos = rng_below(&t->rng, (size - len) / PAGE_SIZE + 1) * PAGE_SIZE;
	}
	read_exact(t, map, NULL, pos, len, "reader");
}

/* A sequential run with a read-ahead state, in B or low in A. */
static void sequential_run(struct thread *t)
{
	struct filemap *map = rng_below(&t->rng, 2) ? &map_a : &map_b;
	long long zone = map == &map_a ? RA_ZONE - 4 * MiB : B_SIZE;
	size_t step = rng_size(&t->rng, 16 * 1024, MiB) & ~(PAGE_SIZE - 1);
	unsigned int steps = 2 + rng_below(&t->rng, 14);
	struct file_ra_state ra;
	long long pos;

	ra_init(&ra, RA_MAX_PAGES);
	if (step * steps > (size_t)zone)
		steps = zone / step;
	pos = rng_below(&t->rng, (zone - step * steps) / PAGE_SIZE + 1) * PAGE_SIZE;
	for (unsigned int i = 0; i < steps && !stopping(); i++) {
		if (!read_exact(t, map, &ra, pos, step, "sequential reader"))
			break;
		bump(&st.ra_reads);
		pos += step;
	}
	bump(&st.ra_runs);
}

static void *reader_main(void *arg)
{
	struct thread *t = arg;

	fs_rcu_register_thread();
	while (!stopping()) {
		if (rng_below(&t->rng, 5) == 0)
			sequential_run(t);
		else
			random_read(t);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/*
 * Racy reader: the punch zone, without the punch locks. Every word must
 * still be zero, the pattern, or a writer's word for its own offset.
 */
static void *racy_reader_main(void *arg)
{
	struct thread *t = arg;

	fs_rcu_register_thread();
	while (!stopping()) {
		size_t len = rng_size(&t->rng, PAGE_SIZE, MiB) & ~(PAGE_SIZE - 1);
		long long pos = PUNCH_ZONE + rng_below(&t->rng,
			(A_SIZE - PUNCH_ZONE - len) / PAGE_SIZE + 1) * PAGE_SIZE;
		ssize_t n;

		range_lock(pos, len, WRITE_SH);
		n = filemap_read(&map_a, NULL, pos, t->buf, len);
		range_unlock(pos, len, WRITE_SH);
		bump(&st.racy_reads);
		if (n < 0 || (size_t)n > len || n % 8) {
			report("racy reader: filemap_read(A, %lld, %zu) returned %zd",
			     pos, len, n);
			continue;
		}
		if ((size_t)n < len)
			bump(&st.racy_short);	/* a truncate was under way */
		for (ssize_t i = 0; i < n; i += 8) {
			uint64_t q = pos + i, w;

			memcpy(&w, t->buf + i, 8);
			if (w == 0 || w == memstore_pattern(A_ID, q))
				continue;
			if (is_wword_for(w, q))
				continue;
			{
				char d[96];

				describe_word(w, q, d, sizeof(d));
				report("racy reader: A offset %#" PRIx64 " holds "
				     "%#018" PRIx64 " (%s)", q, w, d);
			}
			break;
		}
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* ---- Writers ---------------------------------------------------------------- */

static void *writer_main(void *arg)
{
	struct thread *t = arg;

	fs_rcu_register_thread();
	while (!stopping()) {
		size_t len = rng_size(&t->rng, 8, MAX_WRITE) & ~7UL;
		long long pos = rng_below(&t->rng, (A_SIZE - len) / 8 + 1) * 8;
		uint32_t gen = new_gen();
		struct fs_copy_src src;
		uint64_t *w = (uint64_t *)t->wbuf;
		ssize_t n;

		if (rng_below(&t->rng, 3) == 0)	/* whole pages, too */
			pos &= ~(long long)(PAGE_SIZE - 1);
		for (size_t i = 0; i < len / 8; i++)
			w[i] = wword(pos + i * 8, gen);
		range_lock(pos, len, PUNCH_SH | WRITE_EX);
		fs_copy_src_init(&src, t->wbuf);
		n = filemap_write(&map_a, pos, &src, len);
		if (n != (ssize_t)len)
			report("writer: filemap_write(A, %lld, %zu) returned %zd",
			     pos, len, n);
		/* What landed is what the readers must see from now on. */
		for (ssize_t i = 0; i < n; i += 8)
			__atomic_store_n(&wgen[(pos + i) >> 3], gen,
					 __ATOMIC_RELAXED);
		range_unlock(pos, len, PUNCH_SH | WRITE_EX);
		bump(&st.writes);
		__atomic_add_fetch(&st.write_bytes, n > 0 ? n : 0,
				   __ATOMIC_RELAXED);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* ---- Lookups (laws 1 and 4) --------------------------------------------------- */

/* A random index, most often a tail index of where a large folio may sit. */
static unsigned long pick_index(uint64_t *rng, long long size, bool *tail)
{
	unsigned long pages = size >> PAGE_SHIFT;
	unsigned long idx = rng_below(rng, pages);

	*tail = false;
	if (rng_below(rng, 4)) {
		unsigned int order = 1 + rng_below(rng, FOLIO_MAX_ORDER);
		unsigned long base = idx & ~((1UL << order) - 1);

		idx = base + 1 + rng_below(rng, (1UL << order) - 1);
		if (idx >= pages)
			idx = pages - 1;
		*tail = idx != base;
	}
	return idx;
}

/* What a folio held by reference must look like, whatever races on. */
static bool check_held(struct folio *folio, struct filemap *map,
		       unsigned long index, const char *who)
{
	struct filemap *m = folio_mapping(folio);
	unsigned int order = folio_order(folio);

	if (order > FOLIO_MAX_ORDER || !folio_contains(folio, index) ||
	    folio->index & (folio_nr_pages(folio) - 1) ||
	    (uintptr_t)folio_address(folio) & (folio_size(folio) - 1) ||
	    folio_ref_count(folio) < 1 || (m != map && m != NULL)) {
		report("%s: %s index %lu gave folio index %lu order %u data %p "
		     "ref %d mapping %p (want %p or NULL)", who, map_name(map),
		     index, folio->index, order, folio_address(folio),
		     folio_ref_count(folio), (void *)m, (void *)map);
		folio_dump(folio, "bad lookup");
		return false;
	}
	return true;
}

static void lookup_content(struct thread *t, struct filemap *map,
			   unsigned long index)
{
	long long pos = (long long)index << PAGE_SHIFT;
	bool locked = map == &map_a;
	struct folio *folio;

	if (locked)
		range_lock(pos, PAGE_SIZE, PUNCH_SH | WRITE_SH);
	folio = filemap_get_folio(map, index);
	if (folio) {
		size_t off = pos - folio_pos(folio);

		check_held(folio, map, index, "content lookup");
		/* Under the folio lock nobody changes the bytes. */
		folio_lock(folio);
		if (folio_mapping(folio) == map &&
		    blkstate_test_uptodate(folio, off, PAGE_SIZE)) {
			check_exact(map, pos, (char *)folio_address(folio) + off,
				    PAGE_SIZE, "content lookup");
			bump(&st.lookup_content);
		}
		folio_unlock(folio);
		folio_put(folio);
	}
	if (locked)
		range_unlock(pos, PAGE_SIZE, PUNCH_SH | WRITE_SH);
}

static void *lookup_main(void *arg)
{
	struct thread *t = arg;

	fs_rcu_register_thread();
	while (!stopping()) {
		struct filemap *map = rng_below(&t->rng, 3) ? &map_a : &map_b;
		long long size = map == &map_a ? A_SIZE : B_SIZE;
		unsigned int what = rng_below(&t->rng, 8);
		bool tail;
		unsigned long idx = pick_index(&t->rng, size, &tail);

		if (what == 0) {
			lookup_content(t, map, idx);
		} else if (what == 1) {
			struct folio *batch[8];
			unsigned int n = filemap_get_batch(map, idx, batch, 8);
			unsigned long want = idx;

			for (unsigned int i = 0; i < n; i++) {
				check_held(batch[i], map, want, "batch");
				want = batch[i]->index + folio_nr_pages(batch[i]);
			}
			while (n)
				folio_put(batch[--n]);
			bump(&st.batches);
		} else {
			struct folio *folio = filemap_get_folio(map, idx);

			if (folio) {
				check_held(folio, map, idx, "lookup");
				bump(&st.lookup_hits);
				folio_put(folio);
			}
			if (tail)
				bump(&st.lookup_tails);
		}
		bump(&st.lookups);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* ---- Splitters (law 3) -------------------------------------------------------- */

static void *splitter_main(void *arg)
{
	struct thread *t = arg;

	fs_rcu_register_thread();
	while (!stopping()) {
		struct filemap *map = rng_below(&t->rng, 3) ? &map_a : &map_b;
		long long size = map == &map_a ? A_SIZE : B_SIZE;
		bool tail;
		unsigned long idx = pick_index(&t->rng, size, &tail);
		struct folio *folio = filemap_get_folio(map, idx);
		unsigned int order, new_order;
		int err;

		if (!folio)
			continue;
		order = folio_order(folio);
		if (!order) {
			folio_put(folio);
			continue;
		}
		folio_lock(folio);
		if (folio_mapping(folio) != map) {
			folio_unlock(folio);
			folio_put(folio);
			continue;
		}
		new_order = rng_below(&t->rng, order);
		err = filemap_split_folio(folio, new_order);
		bump(&st.split_tries);
		switch (err) {
		case 0:
			bump(&st.split_ok);
			/* Law 4: the original left the tree and its mapping. */
			if (folio_mapping(folio) != NULL)
				report("split: %s folio index %lu order %u -> %u "
				     "succeeded but the folio the caller holds "
				     "still has mapping %p", map_name(map),
				     folio->index, order, new_order,
				     (void *)folio_mapping(folio));
			break;
		case -EAGAIN:
			bump(&st.split_eagain);
			break;
		case -EBUSY:
			bump(&st.split_ebusy);
			break;
		default:
			report("split: %s folio index %lu order %u -> %u returned %d",
			     map_name(map), folio->index, order, new_order, err);
		}
		/* Whatever happened, the caller keeps the folio it locked. */
		folio_unlock(folio);
		folio_put(folio);
		if (!err) {
			struct folio *piece = filemap_get_folio(map, idx);

			if (piece) {
				check_held(piece, map, idx, "after split");
				folio_put(piece);
			}
		}
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* ---- Punch and truncate ---------------------------------------------------------- */

/* The test's view of A after [start, end) was dropped. Caller holds the
 * punch locks of the range exclusively. */
static void note_zeroed(long long start, long long end)
{
	for (long long p = start; p < end; p += 8)
		__atomic_store_n(&wgen[p >> 3], 0, __ATOMIC_RELAXED);
	for (long long p = start; p < end; p += PAGE_SIZE)
		__atomic_store_n(&zeroed[p >> PAGE_SHIFT], 1, __ATOMIC_RELAXED);
}

/* Read [start, end) back and demand zeroes (caller holds the locks). */
static void check_zero(struct thread *t, long long start, long long end,
		       const char *after)
{
	for (long long p = start; p < end; p += MAX_READ) {
		size_t len = end - p < MAX_READ ? end - p : MAX_READ;
		ssize_t n = filemap_read(&map_a, NULL, p, t->buf, len);

		if (n != (ssize_t)len) {
			report("%s: read back of A %lld+%zu returned %zd", after,
			     p, len, n);
			return;
		}
		for (size_t i = 0; i < len; i += 8) {
			uint64_t w;
			char d[96];

			memcpy(&w, t->buf + i, 8);
			if (!w)
				continue;
			describe_word(w, p + i, d, sizeof(d));
			report("%s [%#llx, %#llx) returned, yet A offset %#llx "
			     "reads %#018" PRIx64 " (%s), expected zero", after,
			     start, end, p + (long long)i, w, d);
			describe_cache(&map_a, p + i);
			return;
		}
	}
}

static void do_punch(struct thread *t)
{
	long long len = rng_size(&t->rng, PAGE_SIZE, MiB) & ~(PAGE_SIZE - 1);
	long long start = PUNCH_ZONE + rng_below(&t->rng,
		(A_SIZE - PUNCH_ZONE - len) / PAGE_SIZE + 1) * PAGE_SIZE;
	long long end = start + len;
	int err;

	range_lock(start, len, PUNCH_EX);
	err = filemap_punch(&map_a, start, end);
	if (err)
		report("filemap_punch(A, %lld, %lld) returned %d", start, end, err);
	note_zeroed(start, end);
	check_zero(t, start, end, "filemap_punch");
	range_unlock(start, len, PUNCH_EX);
	bump(&st.punches);
}

static void do_truncate(struct thread *t)
{
	long long size = TRUNC_ZONE + rng_below(&t->rng,
		(A_SIZE - TRUNC_ZONE) / PAGE_SIZE) * PAGE_SIZE;
	long long len = A_SIZE - size;
	ssize_t n;
	int err;

	range_lock(size, len, PUNCH_EX);
	err = filemap_truncate(&map_a, size);
	if (err || filemap_size(&map_a) != size)
		report("filemap_truncate(A, %lld) returned %d, size %lld", size,
		     err, filemap_size(&map_a));
	n = filemap_read(&map_a, NULL, size - 8, t->buf, 64);
	if (n != 8)
		report("read across the new EOF %lld returned %zd, expected 8",
		     size, n);
	n = filemap_read(&map_a, NULL, size, t->buf, PAGE_SIZE);
	if (n != 0)
		report("read at the new EOF %lld returned %zd, expected 0", size, n);
	/* Grow back: what was cut off now reads as zeroes. */
	err = filemap_truncate(&map_a, A_SIZE);
	if (err || filemap_size(&map_a) != A_SIZE)
		report("filemap_truncate(A, %lld) (extend) returned %d", A_SIZE, err);
	note_zeroed(size, A_SIZE);
	check_zero(t, size, size + (len < MAX_READ ? len : MAX_READ),
		   "filemap_truncate down and up");
	range_unlock(size, len, PUNCH_EX);
	bump(&st.truncates);
}

static void *punch_main(void *arg)
{
	struct thread *t = arg;

	fs_rcu_register_thread();
	while (!stopping()) {
		if (rng_below(&t->rng, 6) == 0)
			do_truncate(t);
		else
			do_punch(t);
		sleep_us(200 + rng_below(&t->rng, 800));
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* ---- Reclaim ------------------------------------------------------------------- */

static void *reclaim_main(void *arg)
{
	struct thread *t = arg;

	fs_rcu_register_thread();
	while (!service_stopping()) {
		unsigned long cached = __atomic_load_n(&cache.cached,
						       __ATOMIC_RELAXED);
		/* What is over the limit, some churn below it, and now and
		 * then a large batch. */
		unsigned long want = (cached > CACHE_LIMIT ? cached - CACHE_LIMIT : 0) +
				     rng_size(&t->rng, 4096, RECLAIM_CHURN);
		unsigned long got;

		if (rng_below(&t->rng, RECLAIM_BATCH) == 0)
			want += rng_size(&t->rng, MiB, 8 * MiB);
		got = cache_reclaim(&cache, want);

		bump(&st.reclaims);
		__atomic_add_fetch(&st.reclaimed_bytes, got, __ATOMIC_RELAXED);
		if (rng_below(&t->rng, 4) == 0)
			cache_balance(&cache);
		sleep_us(rng_below(&t->rng, RECLAIM_PAUSE_US));
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* ---- Pinners (law 8) ------------------------------------------------------------ */

static void *pinner_main(void *arg)
{
	struct thread *t = arg;

	fs_rcu_register_thread();
	while (!stopping()) {
		struct filemap *map = rng_below(&t->rng, 3) ? &map_a : &map_b;
		long long zone = map == &map_b ? B_SIZE :
				 opt_pin_punched ? A_SIZE : PUNCH_ZONE;
		bool tail, locked = t->id & 1, had_bs, punchable;
		unsigned long idx = pick_index(&t->rng, zone, &tail);
		struct folio *folio = filemap_get_folio(map, idx);
		unsigned int rounds;

		if (!folio)
			continue;
		punchable = map == &map_a &&
			    (long long)folio_pos(folio) + (long long)folio_size(folio) >
			    PUNCH_ZONE;
		if (locked) {
			/* The zero-copy way: pin where nothing can evict. */
			folio_lock(folio);
			if (folio_mapping(folio) != map) {
				folio_unlock(folio);
				folio_put(folio);
				bump(&st.pin_lost_before);
				continue;
			}
			folio_pin(folio);
			had_bs = folio_has_blkstate(folio);
			folio_unlock(folio);
			bump(&st.pins_locked);
		} else {
			/* folio_pin()'s own contract: a reference is enough. */
			folio_pin(folio);
			had_bs = folio_has_blkstate(folio);
			if (folio_mapping(folio) != map) {
				/* Removed before the pin landed: fair. */
				folio_unpin(folio);
				folio_put(folio);
				bump(&st.pin_lost_before);
				continue;
			}
		}
		bump(&st.pins);
		rounds = 1 + rng_below(&t->rng, 64);
		for (unsigned int r = 0; r < rounds && !stopping(); r++) {
			struct filemap *m = folio_mapping(folio);
			struct folio *now;

			bump(&st.pin_checks);
			if (had_bs && !folio_has_blkstate(folio)) {
				report("pinner: %s folio index %lu order %u lost its "
				     "blkstate while pinned (law 8)", map_name(map),
				     folio->index, folio_order(folio));
				break;
			}
			if (m == map) {
				now = filemap_get_folio(map, idx);
				if (now != folio && !punchable)
					report("pinner: %s index %lu: pinned folio "
					     "(index %lu order %u) replaced in the "
					     "tree by %p while pinned (law 8: no "
					     "split, no eviction)", map_name(map),
					     idx, folio->index, folio_order(folio),
					     (void *)now);
				if (now)
					folio_put(now);
			} else if (!punchable) {
				report("pinner: %s folio index %lu order %u (pinned "
				     "%s) left its mapping while pinned, in a "
				     "range nothing punches: evicted or split "
				     "under a pin (law 8)", map_name(map),
				     folio->index, folio_order(folio),
				     locked ? "under the folio lock" :
					      "with a reference only");
				break;
			}
			if (r % 8 == 7)
				sched_yield();
		}
		folio_unpin(folio);
		folio_put(folio);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* ---- Writeback ------------------------------------------------------------------- */

/*
 * One pass over @map's dirty folios: lock, start writeback, write the dirty
 * blocks into the store (which cleans the folio), unlock, and end the
 * writeback a little later, so that splitters, reclaim, truncate and
 * writers meet folios under writeback.
 */
static void writeback_pass(struct filemap *map, struct memstore *ms,
			   uint64_t *rng)
{
	unsigned long idx = 0;

	while (xa_find(&map->pages, &idx, ULONG_MAX, FM_DIRTY)) {
		struct folio *folio = filemap_get_folio(map, idx);
		unsigned long next;

		if (!folio) {
			idx++;
			continue;
		}
		folio_lock(folio);
		if (folio_mapping(folio) == map && folio_test_dirty(folio)) {
			int err;

			folio_start_writeback(folio);
			err = memstore_write_folio(ms, map, folio);
			if (err)
				report("memstore_write_folio(%s, index %lu) "
				     "returned %d", map_name(map), folio->index,
				     err);
			folio_unlock(folio);
			if (rng && rng_below(rng, 4) == 0)
				sched_yield();
			folio_end_writeback(folio);
			bump(&st.wb_folios);
		} else {
			folio_unlock(folio);
		}
		next = folio->index + folio_nr_pages(folio);
		folio_put(folio);
		if (next <= idx)
			next = idx + 1;
		idx = next;
	}
}

static void *writeback_main(void *arg)
{
	struct thread *t = arg;

	fs_rcu_register_thread();
	while (!service_stopping()) {
		writeback_pass(&map_a, &ms_a, &t->rng);
		bump(&st.wb_passes);
		sleep_us(500 + rng_below(&t->rng, 2000));
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* ---- Set-up, run, final checks ------------------------------------------------------- */

static void files_init(void)
{
	filemap_init(&map_a, &cache, &memstore_ops, &ms_a);
	filemap_set_size(&map_a, A_SIZE);
	filemap_init(&map_b, &cache, &memstore_ops, &ms_b);
	filemap_set_size(&map_b, B_SIZE);
}

/* Read all of @map through the cache, exactly, in 1 MiB reads. */
static void read_all(struct thread *t, struct filemap *map, long long size,
		     bool ra, const char *who)
{
	struct file_ra_state ras;

	ra_init(&ras, 0);
	for (long long p = 0; p < size; p += MiB) {
		ssize_t n = filemap_read(map, ra ? &ras : NULL, p, t->buf, MiB);

		if (n != MiB) {
			report("%s: filemap_read(%s, %lld) returned %zd", who,
			     map_name(map), p, n);
			return;
		}
		if (!check_exact(map, p, t->buf, MiB, who))
			return;
	}
}

typedef void *(*thread_fn)(void *);

static void thread_bufs(struct thread *t)
{
	t->buf = malloc(MAX_READ);
	t->wbuf = malloc(MAX_WRITE);
	assert_non_null(t->buf);
	assert_non_null(t->wbuf);
}

/* Start @n threads running @fn; number them within their kind. */
static void start(thread_fn fn, unsigned int n, struct thread *pool,
		  unsigned int *nr)
{
	for (unsigned int i = 0; i < n; i++) {
		struct thread *t = &pool[*nr];

		t->id = i;
		t->rng = rng_seed(100 + *nr);
		thread_bufs(t);
		assert_int_equal(pthread_create(&t->tid, NULL, fn, t), 0);
		(*nr)++;
	}
}

static void test_stress(void **state)
{
	enum { NR_MAX = 64 };
	static struct thread threads[NR_MAX];
	struct thread *main_t = &threads[NR_MAX - 1];
	unsigned int nr = 0, nr_service;
	struct timespec ts;
	long live;

	(void)state;
	/*
	 * cmocka's handlers longjmp into the main thread's test from whichever
	 * thread faulted, which garbles a crash in a worker into an exit 255;
	 * die with the signal (and a core) instead.
	 */
	signal(SIGSEGV, SIG_DFL);
	signal(SIGBUS, SIG_DFL);
	signal(SIGILL, SIG_DFL);
	signal(SIGFPE, SIG_DFL);
	memset(threads, 0, sizeof(threads));
	memset(&st, 0, sizeof(st));
	wgen = calloc(A_SIZE / 8, sizeof(*wgen));
	zeroed = calloc(A_SIZE / PAGE_SIZE, 1);
	assert_non_null(wgen);
	assert_non_null(zeroed);
	thread_bufs(main_t);
	range_locks_init();
	cache_init(&cache, CACHE_LIMIT);
	memstore_init(&ms_a, true, A_ID, -1);
	memstore_init(&ms_b, true, B_ID, -1);
	files_init();

	__atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&stop_service, 0, __ATOMIC_RELEASE);
	start(reclaim_main, 1, threads, &nr);
	start(writeback_main, 1, threads, &nr);
	nr_service = nr;
	start(reader_main, opt_readers, threads, &nr);
	if (opt_racy)
		start(racy_reader_main, 1, threads, &nr);
	start(writer_main, 2, threads, &nr);
	start(lookup_main, 2, threads, &nr);
	start(splitter_main, 2, threads, &nr);
	start(punch_main, 1, threads, &nr);
	start(pinner_main, 2, threads, &nr);
	assert_true(nr < NR_MAX - 1);

	/* Run for the time asked, or until the first failure. */
	for (long ms = 0; ms < opt_seconds * 1000 &&
			  (opt_keep_going || !get(&failures)); ms += 50)
		sleep_us(50000);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += JOIN_TIMEOUT_S;
	/* Clients first, then writeback and reclaim (threads 0..nr_service). */
	for (unsigned int k = 0; k < nr; k++) {
		unsigned int i = (k + nr_service) % nr;

		if (i == 0)
			__atomic_store_n(&stop_service, 1, __ATOMIC_RELEASE);
		if (pthread_timedjoin_np(threads[i].tid, NULL, &ts)) {
			fprintf(stderr, "thread %u still running %d s after stop: "
				"deadlock, lost wake-up or livelock [--seed %lu]\n",
				i, JOIN_TIMEOUT_S, opt_seed);
			/* A core (or a debugger) shows where everyone is. */
			abort();
		}
	}

	printf("filemap_stress: reads %ld (%ld MiB, %ld sequential in %ld runs), "
	       "racy reads %ld (%ld short), writes %ld (%ld MiB)\n",
	       get(&st.reads), get(&st.read_bytes) >> 20, get(&st.ra_reads),
	       get(&st.ra_runs), get(&st.racy_reads), get(&st.racy_short),
	       get(&st.writes), get(&st.write_bytes) >> 20);
	printf("filemap_stress: lookups %ld (%ld hits, %ld tail indices, %ld "
	       "content checks, %ld batches)\n", get(&st.lookups),
	       get(&st.lookup_hits), get(&st.lookup_tails),
	       get(&st.lookup_content), get(&st.batches));
	printf("filemap_stress: splits %ld tried, %ld done, %ld -EAGAIN, %ld "
	       "-EBUSY; punches %ld, truncates %ld\n", get(&st.split_tries),
	       get(&st.split_ok), get(&st.split_eagain), get(&st.split_ebusy),
	       get(&st.punches), get(&st.truncates));
	printf("filemap_stress: reclaim calls %ld (%ld MiB), evicted %ld folios; "
	       "pins %ld (%ld under the lock, %ld checks, %ld gone before the "
	       "pin); writeback %ld folios in %ld passes\n", get(&st.reclaims),
	       get(&st.reclaimed_bytes) >> 20,
	       fs_counter_read(&cache.stats.evicted), get(&st.pins),
	       get(&st.pins_locked), get(&st.pin_checks),
	       get(&st.pin_lost_before), get(&st.wb_folios), get(&st.wb_passes));
	printf("filemap_stress: engine: hits %ld misses %ld ra_pages %ld "
	       "splits %ld (-EAGAIN %ld, -EBUSY %ld), zeroed in place %ld\n",
	       fs_counter_read(&cache.stats.hits),
	       fs_counter_read(&cache.stats.misses),
	       fs_counter_read(&cache.stats.ra_pages),
	       fs_counter_read(&cache.stats.splits),
	       fs_counter_read(&cache.stats.split_eagain),
	       fs_counter_read(&cache.stats.split_ebusy),
	       fs_counter_read(&cache.stats.zeroed_in_place));
	fflush(stdout);

	/* Quiet now: write everything back, then every reservation is an
	 * extent (law 7). */
	writeback_pass(&map_a, &ms_a, NULL);
	if (__atomic_load_n(&map_a.nr_reserved, __ATOMIC_RELAXED) != 0 ||
	    ms_a.reserved != 0)
		report("after the last writeback: A holds %lu reservations, the "
		     "store %ld (expected 0, 0)", map_a.nr_reserved,
		     ms_a.reserved);
	if (xa_find(&map_a.pages, &(unsigned long){ 0 }, ULONG_MAX, FM_DIRTY))
		report("a DIRTY mark survived the last writeback");

	/* Through the cache, then from the store alone. */
	read_all(main_t, &map_a, A_SIZE, false, "final read (cache)");
	read_all(main_t, &map_b, B_SIZE, true, "final read (cache)");
	filemap_destroy(&map_a);
	filemap_destroy(&map_b);
	if (__atomic_load_n(&cache.cached, __ATOMIC_RELAXED) != 0)
		report("cache holds %lu bytes after destroying both files",
		     cache.cached);
	files_init();
	read_all(main_t, &map_a, A_SIZE, true, "final read (store)");
	read_all(main_t, &map_b, B_SIZE, false, "final read (store)");
	filemap_destroy(&map_a);
	filemap_destroy(&map_b);
	cache_destroy(&cache);
	if (ms_a.reserved != 0 || ms_b.reserved != 0)
		report("memstore reserved A %ld B %ld at the end, expected 0",
		     ms_a.reserved, ms_b.reserved);
	memstore_destroy(&ms_a);
	memstore_destroy(&ms_b);
	range_locks_destroy();
	for (unsigned int i = 0; i < NR_MAX; i++) {
		free(threads[i].buf);
		free(threads[i].wbuf);
	}
	free(wgen);
	free(zeroed);

	fs_rcu_barrier();
	printf("filemap_stress: %ld failures; live at the end: %ld folio "
	       "descriptors, %ld folio bytes, %ld blkstates, %ld xarray nodes\n",
	       get(&failures), folio_descs_live(), folio_bytes_live(),
	       blkstate_live(), xa_nodes_live());
	assert_int_equal(get(&failures), 0);
	assert_int_equal(folio_descs_live(), 0);
	assert_int_equal(folio_bytes_live(), 0);
	assert_int_equal(blkstate_live(), 0);
	live = xa_nodes_live();
	assert_int_equal(live, 0);
	assert_true(get(&st.reads) > 0 && get(&st.writes) > 0);
	assert_true(get(&st.lookups) > 0 && get(&st.split_tries) > 0);
	assert_true(get(&st.punches) > 0 && get(&st.pins) > 0);
}

/* ---- Regression cases -------------------------------------------------------------
 *
 * Each runs alone in a child process (--case NAME): single-threaded, with a
 * store whose hooks run engine calls at the exact point where another
 * thread's call could land, so the interleaving is deterministic.
 */

static struct filemap_ops hooked_ops;
static void (*read_hook)(struct filemap *map);	/* one-shot */
static void (*punch_hook)(struct filemap *map);	/* one-shot */

static int hooked_read_blocks(struct filemap *map, struct folio *folio,
			      unsigned int first, unsigned int nr)
{
	void (*hook)(struct filemap *) = read_hook;

	read_hook = NULL;
	if (hook)
		hook(map);
	return memstore_ops.read_blocks(map, folio, first, nr);
}

static void hooked_punch_blocks(struct filemap *map, unsigned long first,
				unsigned long nr)
{
	void (*hook)(struct filemap *) = punch_hook;

	punch_hook = NULL;
	if (hook)
		hook(map);
	memstore_ops.punch_blocks(map, first, nr);
}

static struct fs_cache case_cache;
static struct memstore case_ms;
static struct filemap case_map;
static char case_buf[256 * 1024];
static int case_failed;

static void case_setup_limit(long long size, unsigned long limit)
{
	hooked_ops = memstore_ops;
	hooked_ops.read_blocks = hooked_read_blocks;
	hooked_ops.punch_blocks = hooked_punch_blocks;
	cache_init(&case_cache, limit);
	memstore_init(&case_ms, true, 7, -1);
	filemap_init(&case_map, &case_cache, &hooked_ops, &case_ms);
	filemap_set_size(&case_map, size);
}

static void case_setup(long long size)
{
	case_setup_limit(size, 256 * MiB);
}

#define case_fail(...) do {						\
	fprintf(stderr, "FAIL: " __VA_ARGS__);				\
	fprintf(stderr, "\n");						\
	case_failed = 1;						\
} while (0)

/* Demand [pos, pos + len) reads as zeroes. */
static void case_expect_zero(long long pos, size_t len, const char *when)
{
	ssize_t n = filemap_read(&case_map, NULL, pos, case_buf, len);

	if (n != (ssize_t)len) {
		case_fail("%s: read %lld+%zu returned %zd", when, pos, len, n);
		return;
	}
	for (size_t i = 0; i < len; i += 8) {
		uint64_t w;

		memcpy(&w, case_buf + i, 8);
		if (w) {
			case_fail("%s: offset %lld reads %#018" PRIx64 "%s, "
				  "expected zero", when, pos + (long long)i, w,
				  w == memstore_pattern(7, pos + i) ?
				  " (the data from before)" : "");
			return;
		}
	}
}

/* Write back every dirty folio of the case's file, as a flusher would. */
static void case_writeback(void)
{
	unsigned long idx = 0;

	while (xa_find(&case_map.pages, &idx, ULONG_MAX, FM_DIRTY)) {
		struct folio *folio = filemap_get_folio(&case_map, idx);

		if (!folio) {
			idx++;
			continue;
		}
		folio_lock(folio);
		if (folio_mapping(folio) == &case_map && folio_test_dirty(folio) &&
		    memstore_write_folio(&case_ms, &case_map, folio))
			case_fail("writeback of index %lu failed", folio->index);
		idx = folio->index + folio_nr_pages(folio);
		folio_unlock(folio);
		folio_put(folio);
	}
}

static void case_teardown(void)
{
	filemap_destroy(&case_map);
	cache_destroy(&case_cache);
	memstore_destroy(&case_ms);
	fs_rcu_barrier();
	if (blkstate_live() || folio_descs_live() || folio_bytes_live())
		case_fail("leaked: %ld blkstates, %ld folio descriptors, %ld "
			  "folio bytes", blkstate_live(), folio_descs_live(),
			  folio_bytes_live());
}

/*
 * The other thread of a case: started from a store hook, at the very point
 * where a racing call could land, it runs that call. The hook waits for it
 * up to BG_WAIT_MS: an engine that lets the call through finishes it inside
 * the window (the race happens, deterministically); one that excludes it
 * blocks it until the hooked call is done, and the hook goes on.
 */
#define BG_WAIT_MS	300

static struct {
	pthread_t	tid;
	void		(*fn)(void);
	int		done;		/* atomic */
	bool		started;
} bg;

static void *bg_main(void *arg)
{
	(void)arg;
	fs_rcu_register_thread();
	bg.fn();
	__atomic_store_n(&bg.done, 1, __ATOMIC_RELEASE);
	fs_rcu_unregister_thread();
	return NULL;
}

/* Start @fn in the other thread; return whether it finished in the window. */
static bool bg_run(void (*fn)(void))
{
	bg.fn = fn;
	__atomic_store_n(&bg.done, 0, __ATOMIC_RELAXED);
	if (pthread_create(&bg.tid, NULL, bg_main, NULL)) {
		case_fail("pthread_create");
		return false;
	}
	bg.started = true;
	for (int ms = 0; ms < BG_WAIT_MS; ms++) {
		if (__atomic_load_n(&bg.done, __ATOMIC_ACQUIRE))
			return true;
		sleep_us(1000);
	}
	return false;
}

static void bg_join(void)
{
	if (bg.started)
		pthread_join(bg.tid, NULL);
	bg.started = false;
}

static char bg_buf[PAGE_SIZE];

/* The read that races filemap_punch(). */
static void bg_read_page_16(void)
{
	ssize_t n = filemap_read(&case_map, NULL, 16 * PAGE_SIZE, bg_buf,
				 PAGE_SIZE);

	if (n != PAGE_SIZE)
		case_fail("the racing read returned %zd", n);
}

/* In filemap_punch(), after the cache was dropped, before the store is. */
static void punch_hook_read(struct filemap *map)
{
	(void)map;
	fprintf(stderr, "punch-read-race: the racing read %s\n",
		bg_run(bg_read_page_16) ?
		"completed while the punch was under way" :
		"waited for the punch");
}

/*
 * punch-read-race: a read that misses while filemap_punch() runs, after
 * drop_range() passed its index but before punch_store() made the store a
 * hole, must not cache the data from before the punch.
 */
static void case_punch_read_race(void)
{
	case_setup(MiB);
	punch_hook = punch_hook_read;
	filemap_punch(&case_map, 0, 256 * 1024);
	bg_join();
	case_expect_zero(16 * PAGE_SIZE, PAGE_SIZE,
			 "after filemap_punch(0, 256 KiB) and a racing read");
	case_teardown();
}

/*
 * pinned-punch-unpin: punch a pinned large folio out of the cache. Law 8
 * keeps its blkstate while pinned; when the pin goes, the folio must be
 * freed cleanly (no blkstate left at its last put).
 */
static void case_pinned_punch_unpin(void)
{
	struct folio *folio;

	case_setup(MiB);
	if (filemap_read(&case_map, NULL, 0, case_buf, 64 * 1024) != 64 * 1024)
		case_fail("first read failed");
	folio = filemap_get_folio(&case_map, 0);
	if (!folio || !folio_order(folio) || !folio_has_blkstate(folio)) {
		case_fail("expected a large folio with a blkstate at 0");
		return;
	}
	folio_lock(folio);
	folio_pin(folio);
	folio_unlock(folio);
	folio_put(folio);
	filemap_punch(&case_map, 0, 64 * 1024);
	if (folio_mapping(folio) != NULL)
		case_fail("punched folio still has its mapping");
	if (!folio_has_blkstate(folio))
		case_fail("law 8: a pinned folio lost its blkstate");
	fprintf(stderr, "pinned-punch-unpin: unpinning the punched folio "
		"(order %u, blkstate %d)\n", folio_order(folio),
		folio_has_blkstate(folio));
	folio_unpin(folio);	/* the last reference */
	case_teardown();
}

static void bg_truncate_to_one_page(void)
{
	int err = filemap_truncate(&case_map, PAGE_SIZE);

	if (err)
		case_fail("the racing truncate returned %d", err);
}

/* In the read's fill of page 0: truncate the file below page 1. */
static void read_hook_truncate(struct filemap *map)
{
	(void)map;
	fprintf(stderr, "read-truncate-livelock: the racing truncate %s\n",
		bg_run(bg_truncate_to_one_page) ?
		"completed while the read was under way" :
		"waited for the read's fill");
}

/*
 * read-truncate-livelock: a read of [0, 8 KiB) of an 8 KiB file, during
 * which another thread truncates it to 4 KiB (started from inside the
 * read's fill of page 0). Expected: the read returns 4096 (or 8192). A read
 * that loops on the missing page past the new EOF never returns.
 */
static void case_read_truncate_livelock(void)
{
	ssize_t n;

	case_setup(2 * PAGE_SIZE);
	/* Page 0 cached but not uptodate: both reads of it fail. */
	case_ms.fail_reads = 2;
	n = filemap_read(&case_map, NULL, 0, case_buf, PAGE_SIZE);
	if (n != -EIO)
		case_fail("set-up read returned %zd, expected -EIO", n);
	read_hook = read_hook_truncate;
	alarm(5);
	n = filemap_read(&case_map, NULL, 0, case_buf, 2 * PAGE_SIZE);
	alarm(0);
	bg_join();
	if (n != PAGE_SIZE && n != 2 * PAGE_SIZE)
		case_fail("read returned %zd, expected 4096 or 8192", n);
	case_teardown();
}

/*
 * punch-partial-block: punch [1000, 3000) of a cached page, write back what
 * is dirty (as the flusher would), let reclaim evict everything and read
 * again: the zeroes must have reached the store. (Zeroing the bytes in a
 * clean cached folio only brings the old bytes back after eviction.)
 */
static void case_punch_partial_block(void)
{
	case_setup(64 * 1024);
	if (filemap_read(&case_map, NULL, 0, case_buf, 64 * 1024) != 64 * 1024)
		case_fail("first read failed");
	filemap_punch(&case_map, 1000, 3000);
	case_expect_zero(1000, 2000, "right after filemap_punch(1000, 3000)");
	case_writeback();
	cache_reclaim(&case_cache, ULONG_MAX);
	if (case_map.nr_pages)
		case_fail("reclaim left %lu pages cached", case_map.nr_pages);
	case_expect_zero(1000, 2000,
			 "after filemap_punch(1000, 3000), writeback and eviction");
	case_teardown();
}

/*
 * truncate-partial-block: truncate to 5000 and extend again; the tail of
 * the block at 4096 must read as zeroes, also after writeback and eviction.
 */
static void case_truncate_partial_block(void)
{
	case_setup(64 * 1024);
	if (filemap_read(&case_map, NULL, 0, case_buf, 64 * 1024) != 64 * 1024)
		case_fail("first read failed");
	filemap_truncate(&case_map, 5000);
	filemap_truncate(&case_map, 64 * 1024);
	case_expect_zero(5000, 8192 - 5000, "right after truncate 5000, extend");
	case_writeback();
	cache_reclaim(&case_cache, ULONG_MAX);
	if (case_map.nr_pages)
		case_fail("reclaim left %lu pages cached", case_map.nr_pages);
	case_expect_zero(5000, 8192 - 5000,
			 "after truncate to 5000, extend, writeback and eviction");
	case_teardown();
}

/*
 * read-dirty-full-cache: the cache (limit 1 MiB) holds 2 MiB of dirty data
 * that reclaim cannot drop, and nothing writes it back. A 4 KiB read of
 * another page must still return: the folio it reads in is the only one
 * reclaim can evict, and it must not be evicted before the read copies it.
 */
static void case_read_dirty_full_cache(void)
{
	struct fs_copy_src src;
	ssize_t n;

	case_setup_limit(4 * MiB, MiB);
	memset(case_buf, 0xab, sizeof(case_buf));
	for (long long pos = 0; pos < 2 * MiB; pos += sizeof(case_buf)) {
		fs_copy_src_init(&src, case_buf);
		n = filemap_write(&case_map, pos, &src, sizeof(case_buf));
		if (n != (ssize_t)sizeof(case_buf))
			case_fail("write at %lld returned %zd", pos, n);
	}
	alarm(5);
	n = filemap_read(&case_map, NULL, 3 * MiB, case_buf, PAGE_SIZE);
	alarm(0);
	if (n != PAGE_SIZE)
		case_fail("read returned %zd, expected 4096", n);
	else if (memstore_check_pattern(7, 3 * MiB, case_buf, PAGE_SIZE))
		case_fail("read returned the wrong bytes");
	/* Clean up as unmount would: write back, then drop. */
	case_writeback();
	case_teardown();
}

static const struct {
	const char	*name;
	void		(*fn)(void);
	const char	*what;
} cases[] = {
	{ "punch-read-race", case_punch_read_race,
	  "a read racing filemap_punch() keeps pre-punch data cached" },
	{ "pinned-punch-unpin", case_pinned_punch_unpin,
	  "a punched pinned folio is freed cleanly at unpin" },
	{ "read-truncate-livelock", case_read_truncate_livelock,
	  "a read racing a truncate below it returns" },
	{ "read-dirty-full-cache", case_read_dirty_full_cache,
	  "a read returns while the cache is over its limit with dirty data" },
	{ "punch-partial-block", case_punch_partial_block,
	  "a punched partial block reads zero after eviction" },
	{ "truncate-partial-block", case_truncate_partial_block,
	  "a truncated partial block reads zero after extend and eviction" },
};
#define NR_CASES	(sizeof(cases) / sizeof(cases[0]))

static int run_case(const char *name)
{
	for (size_t i = 0; i < NR_CASES; i++) {
		if (strcmp(cases[i].name, name))
			continue;
		fs_rcu_register_thread();
		cases[i].fn();
		fs_rcu_unregister_thread();
		return case_failed ? 1 : 0;
	}
	fprintf(stderr, "no case %s\n", name);
	return 2;
}

static char self_path[PATH_MAX];
static unsigned int cases_failed;

/* Run every case in a child; say how each ended. */
static void run_cases(void)
{
	for (size_t i = 0; i < NR_CASES; i++) {
		pid_t pid;
		int status;

		fflush(stdout);
		fflush(stderr);
		pid = fork();
		if (pid == 0) {
			execl(self_path, self_path, "--case", cases[i].name,
			      (char *)NULL);
			_exit(127);
		}
		if (pid < 0 || waitpid(pid, &status, 0) != pid) {
			printf("case %-24s could not run\n", cases[i].name);
			cases_failed++;
			continue;
		}
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			printf("case %-24s ok\n", cases[i].name);
			continue;
		}
		cases_failed++;
		if (WIFSIGNALED(status))
			printf("case %-24s FAILED: killed by %s%s (%s)\n",
			       cases[i].name, strsignal(WTERMSIG(status)),
			       WTERMSIG(status) == SIGALRM ?
			       ", the call never returned" : "", cases[i].what);
		else
			printf("case %-24s FAILED: exit %d (%s)\n",
			       cases[i].name, WEXITSTATUS(status),
			       cases[i].what);
		printf("     rerun: %s --case %s\n", self_path, cases[i].name);
	}
}

/* ---- main ------------------------------------------------------------------- */

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [--seconds N] [--seed S] [--threads R] "
		"[--no-racy|--racy] [--pin-punched] [--keep-going] [--no-cases] "
		"[--case NAME]\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stress),
	};
	bool seeded = false, with_cases = true;
	ssize_t len;
	int failed, i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
			opt_seconds = strtod(argv[++i], NULL);
		} else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			opt_seed = strtoul(argv[++i], NULL, 0);
			seeded = true;
		} else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			opt_readers = strtoul(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--no-racy")) {
			opt_racy = false;
		} else if (!strcmp(argv[i], "--racy")) {
			opt_racy = true;
		} else if (!strcmp(argv[i], "--pin-punched")) {
			opt_pin_punched = true;
		} else if (!strcmp(argv[i], "--keep-going")) {
			opt_keep_going = true;
		} else if (!strcmp(argv[i], "--no-cases")) {
			with_cases = false;
		} else if (!strcmp(argv[i], "--case") && i + 1 < argc) {
			return run_case(argv[++i]);
		} else {
			usage(argv[0]);
		}
	}
	if (opt_seconds <= 0 || opt_readers < 1 || opt_readers > 32)
		usage(argv[0]);
	if (!seeded)
		opt_seed = (unsigned long)time(NULL) ^ (unsigned long)getpid();
	printf("filemap_stress: --seed %lu --seconds %g --threads %u%s%s\n",
	       opt_seed, opt_seconds, opt_readers, opt_racy ? "" : " --no-racy",
	       opt_pin_punched ? " --pin-punched" : "");

	/* Before any thread exists: the children are plain fork + exec. */
	len = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	if (len <= 0)
		snprintf(self_path, sizeof(self_path), "%s", argv[0]);
	else
		self_path[len] = '\0';
	if (with_cases)
		run_cases();

	fs_rcu_register_thread();
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	if (folio_pool_exit() != 0)
		failed++;
	fs_rcu_unregister_thread();
	failed += cases_failed;
	if (failed)
		printf("filemap_stress: FAILED (%u regression cases) with --seed "
		       "%lu\n", cases_failed, opt_seed);
	return failed ? 1 : 0;
}
