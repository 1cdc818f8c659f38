/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cache-bench.c - embedded cached reads through the page cache, side by
 * side with the kernel's tmpfs and with memcpy, in one run (DESIGN.md,
 * Performance: "cached 4 KiB random reads through the library reach at
 * least 2x the IOPS of kernel tmpfs pread with the same threads; 1 MiB
 * sequential cached reads reach at least 0.8x memcpy bandwidth"; Memory:
 * "the cache's own bookkeeping stays under 1% of the bytes cached").
 *
 * No FUSE and no syscalls on the engine side: filemap_read() on a file of
 * an in-memory pattern store (tests/lib/memstore.c), read once in full
 * first so that every point is a cache hit (the cache limit is set well
 * above what the run caches, so nothing is evicted).
 *
 * Points (each runs --seconds, 0.5 s by default; --repeat times, engine and
 * reference interleaved, the median kept):
 *  4k-rand    4 KiB reads at random page-aligned offsets, 1 and 2 threads:
 *             filemap_read(map, NULL, ...) against pread() of a tmpfs file
 *             of the same size in /dev/shm (--dir), each thread its own
 *             buffer and random stream. The tmpfs file is created, filled
 *             and unlinked at once (it lives while open, and is gone even
 *             if the run is killed).
 *  seq-1m     1 MiB reads walking the file sequentially with a read-ahead
 *             state, 1 thread, against memcpy() of 1 MiB at a time from a
 *             buffer of the file's size into a 1 MiB buffer.
 *  lookup     filemap_get_folio() + folio_put() at random indices, 1
 *             thread: ns per lookup, on the file cached in order-9 folios
 *             and on one cached in order-0 folios.
 *  bookkeeping  (folio descriptors + blkstates + xarray nodes) / bytes
 *             cached, for a file cached in order-9 folios (1 MiB
 *             sequential reads) and one cached in order-0 folios (every
 *             page read once, 4 KiB at a time in random order, with no
 *             read-ahead state). Descriptors count sizeof(struct folio) per
 *             folio; blkstates their allocated size (blkstate_bytes_live);
 *             nodes xa_node_bytes().
 *
 * Reads are checked (a word per read against the pattern); any mismatch
 * makes the exit status 1.
 *
 * Usage: cache-bench [--seconds S] [--quick] [--repeat N] [--size MiB]
 *                    [--dir DIR] [--json]
 * --json prints one JSON object on stdout (the table then goes to stderr).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blkstate.h"
#include "filemap.h"
#include "memstore.h"
#include "readahead.h"
#include "reclaim.h"

#define KiB		(1UL << 10)
#define MiB		(1UL << 20)
#define GiB		(1UL << 30)
#define SEQ_READ	MiB
#define MAX_THREADS	2
#define MAX_REPEAT	15
#define TARGET_4K	2.0
#define TARGET_SEQ	0.8
#define TARGET_BK	0.01

static struct {
	double		seconds;
	int		repeat;
	unsigned long	size;		/* bytes of each file */
	const char	*dir;
	bool		json;
} opt = {
	.seconds = 0.5,
	.repeat = 3,
	.size = GiB,
	.dir = "/dev/shm",
};

static FILE *out;			/* the table: stdout, or stderr with --json */
static unsigned long errors;		/* atomic */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

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

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void bad_read(const char *what, uint64_t pos)
{
	if (__atomic_fetch_add(&errors, 1, __ATOMIC_RELAXED) < 5)
		fprintf(stderr, "cache-bench: %s at %" PRIu64 " read wrong data\n",
			what, pos);
}

/* ---- The cached file, the tmpfs file, the memcpy buffer -------------------- */

static struct fs_cache cache;
static struct memstore store9, store0;
static struct filemap map9, map0;	/* cached in order-9 / order-0 folios */
static int tmpfs_fd = -1;
static char *membuf;

static void die(const char *what)
{
	fprintf(stderr, "cache-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Read all of @map once, 1 MiB at a time, sequentially with read-ahead. */
static void cache_sequentially(struct filemap *map, uint64_t id)
{
	struct file_ra_state ra;
	char *buf = malloc(SEQ_READ);

	if (!buf)
		die("malloc");
	ra_init(&ra, 0);
	for (unsigned long pos = 0; pos < opt.size; pos += SEQ_READ) {
		ssize_t n = filemap_read(map, &ra, pos, buf, SEQ_READ);

		if (n != (ssize_t)SEQ_READ ||
		    memstore_check_pattern(id, pos, buf, SEQ_READ))
			bad_read("warm-up", pos);
	}
	free(buf);
}

/* Read every page of @map once, 4 KiB at a time in random order, with no
 * read-ahead state: each miss reads exactly one page, an order-0 folio. */
static void cache_randomly(struct filemap *map, uint64_t id)
{
	unsigned long pages = opt.size / PAGE_SIZE;
	unsigned int *perm = malloc(pages * sizeof(*perm));
	uint64_t rng = 0x9E3779B97F4A7C15ULL;
	char buf[PAGE_SIZE];

	if (!perm)
		die("malloc");
	for (unsigned long i = 0; i < pages; i++)
		perm[i] = i;
	for (unsigned long i = pages - 1; i > 0; i--) {
		unsigned long j = rng_next(&rng) % (i + 1);
		unsigned int t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	for (unsigned long i = 0; i < pages; i++) {
		uint64_t pos = (uint64_t)perm[i] * PAGE_SIZE;
		ssize_t n = filemap_read(map, NULL, pos, buf, PAGE_SIZE);

		if (n != PAGE_SIZE || memstore_check_pattern(id, pos, buf, PAGE_SIZE))
			bad_read("order-0 warm-up", pos);
	}
	free(perm);
}

static void setup_tmpfs(void)
{
	char path[4096];
	char *buf = malloc(SEQ_READ);

	if (!buf)
		die("malloc");
	snprintf(path, sizeof(path), "%s/foliofs-cache-bench.XXXXXX", opt.dir);
	tmpfs_fd = mkstemp(path);
	if (tmpfs_fd < 0)
		die(path);
	/* Gone from the namespace now; its pages live until we close it. */
	unlink(path);
	for (unsigned long pos = 0; pos < opt.size; pos += SEQ_READ) {
		memstore_fill_pattern(1, pos, buf, SEQ_READ);
		if (pwrite(tmpfs_fd, buf, SEQ_READ, pos) != (ssize_t)SEQ_READ)
			die("pwrite to tmpfs");
	}
	/* Touch it all once, as the cached file was. */
	for (unsigned long pos = 0; pos < opt.size; pos += SEQ_READ)
		if (pread(tmpfs_fd, buf, SEQ_READ, pos) != (ssize_t)SEQ_READ)
			die("pread from tmpfs");
	free(buf);
}

static void setup_membuf(void)
{
	membuf = aligned_alloc(2 * MiB, opt.size);
	if (!membuf)
		die("aligned_alloc");
	/* Same bytes as the file, and every page faulted in. */
	memstore_fill_pattern(1, 0, membuf, opt.size);
}

/* ---- Timed points -------------------------------------------------------------- */

enum kind { K_ENGINE_4K, K_TMPFS_4K, K_ENGINE_SEQ, K_MEMCPY_SEQ,
	    K_LOOKUP9, K_LOOKUP0 };

/* One per thread, each on its own cache lines: the workers write only
 * their own (at the end), never a line another worker uses. */
struct worker {
	pthread_t	tid;
	enum kind	kind;
	uint64_t	rng;
	unsigned long	ops;
	char		*buf;
	double		t0, t1;
} __attribute__((aligned(128)));

static int go, stop;			/* atomic */

static bool keep_going(void)
{
	return !__atomic_load_n(&stop, __ATOMIC_RELAXED);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned long pages = opt.size / PAGE_SIZE, ops = 0;
	unsigned long chunks = opt.size / SEQ_READ;
	struct file_ra_state ra;
	unsigned long seq = 0;
	uint64_t rng = w->rng;		/* in a register, not shared memory */
	char *buf = w->buf;

	fs_rcu_register_thread();
	ra_init(&ra, 0);
	while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
		;
	w->t0 = now();
	switch (w->kind) {
	case K_ENGINE_4K:
		while (keep_going()) {
			for (int i = 0; i < 64; i++) {
				uint64_t pos = (rng_next(&rng) % pages) * PAGE_SIZE;

				if (filemap_read(&map9, NULL, pos, buf,
						 PAGE_SIZE) != PAGE_SIZE ||
				    *(uint64_t *)buf != memstore_pattern(1, pos))
					bad_read("foliofs 4k", pos);
			}
			ops += 64;
		}
		break;
	case K_TMPFS_4K:
		while (keep_going()) {
			for (int i = 0; i < 64; i++) {
				uint64_t pos = (rng_next(&rng) % pages) * PAGE_SIZE;

				if (pread(tmpfs_fd, buf, PAGE_SIZE, pos) !=
					  PAGE_SIZE ||
				    *(uint64_t *)buf != memstore_pattern(1, pos))
					bad_read("tmpfs 4k", pos);
			}
			ops += 64;
		}
		break;
	case K_ENGINE_SEQ:
		while (keep_going()) {
			uint64_t pos = (seq++ % chunks) * SEQ_READ;

			if (filemap_read(&map9, &ra, pos, buf, SEQ_READ) !=
			    (ssize_t)SEQ_READ ||
			    *(uint64_t *)(buf + SEQ_READ - 8) !=
			    memstore_pattern(1, pos + SEQ_READ - 8))
				bad_read("foliofs 1m", pos);
			ops++;
		}
		break;
	case K_MEMCPY_SEQ:
		while (keep_going()) {
			uint64_t pos = (seq++ % chunks) * SEQ_READ;

			memcpy(buf, membuf + pos, SEQ_READ);
			if (*(uint64_t *)(buf + SEQ_READ - 8) !=
			    memstore_pattern(1, pos + SEQ_READ - 8))
				bad_read("memcpy 1m", pos);
			ops++;
		}
		break;
	case K_LOOKUP9:
	case K_LOOKUP0: {
		struct filemap *map = w->kind == K_LOOKUP9 ? &map9 : &map0;

		while (keep_going()) {
			for (int i = 0; i < 64; i++) {
				unsigned long idx = rng_next(&rng) % pages;
				struct folio *folio = filemap_get_folio(map, idx);

				if (!folio) {
					bad_read("lookup", (uint64_t)idx << PAGE_SHIFT);
					continue;
				}
				folio_put(folio);
			}
			ops += 64;
		}
		break;
	}
	}
	w->t1 = now();
	w->ops = ops;
	fs_rcu_unregister_thread();
	return NULL;
}

/* Run @kind on @threads threads for opt.seconds; return operations/s. */
static double run_point(enum kind kind, int threads)
{
	static uint64_t seed = 1;
	struct worker w[MAX_THREADS];
	double rate = 0;

	memset(w, 0, sizeof(w));
	__atomic_store_n(&go, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&stop, 0, __ATOMIC_RELAXED);
	for (int i = 0; i < threads; i++) {
		w[i].kind = kind;
		w[i].rng = 0x2545F4914F6CDD1DULL * ++seed;
		w[i].buf = aligned_alloc(4096, SEQ_READ);
		if (!w[i].buf)
			die("aligned_alloc");
		memset(w[i].buf, 0, SEQ_READ);
		if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]))
			die("pthread_create");
	}
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	sleep_s(opt.seconds);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < threads; i++) {
		pthread_join(w[i].tid, NULL);
		rate += w[i].ops / (w[i].t1 - w[i].t0);
		free(w[i].buf);
	}
	return rate;
}

/* Engine point and reference point, interleaved, medians of opt.repeat. */
static void run_pair(enum kind a, enum kind b, int threads, double *ra,
		     double *rb)
{
	double va[MAX_REPEAT], vb[MAX_REPEAT];

	for (int i = 0; i < opt.repeat; i++) {
		va[i] = run_point(a, threads);
		vb[i] = run_point(b, threads);
	}
	*ra = median(va, opt.repeat);
	*rb = median(vb, opt.repeat);
}

static double run_one(enum kind k)
{
	double v[MAX_REPEAT];

	for (int i = 0; i < opt.repeat; i++)
		v[i] = run_point(k, 1);
	return median(v, opt.repeat);
}

/* ---- Bookkeeping ------------------------------------------------------------- */

struct bookkeeping {
	unsigned long	folios, pages;
	unsigned long	desc_bytes, blkstate_bytes, node_bytes, cached_bytes;
	double		fraction;
};

static struct bookkeeping measure(struct filemap *map, long blkstate_bytes)
{
	struct bookkeeping bk = {
		.folios = __atomic_load_n(&map->nr_folios, __ATOMIC_RELAXED),
		.pages = __atomic_load_n(&map->nr_pages, __ATOMIC_RELAXED),
		.blkstate_bytes = blkstate_bytes,
		.node_bytes = xa_node_bytes(&map->pages),
	};

	bk.desc_bytes = bk.folios * sizeof(struct folio);
	bk.cached_bytes = bk.pages * PAGE_SIZE;
	bk.fraction = (double)(bk.desc_bytes + bk.blkstate_bytes + bk.node_bytes) /
		      (double)bk.cached_bytes;
	return bk;
}

/* ---- Output ---------------------------------------------------------------------- */

static const char *verdict(bool ok)
{
	return ok ? "ok" : "MISSED";
}

static void print_bk(const char *name, const struct bookkeeping *bk)
{
	double per_gib = bk->fraction * GiB;

	fprintf(out, "  %-8s %8lu folios  %10lu desc + %9lu blkstate + %9lu "
		"nodes = %6.3f%% of %lu MiB (%.0f bytes per cached GiB)  %s\n",
		name, bk->folios, bk->desc_bytes, bk->blkstate_bytes,
		bk->node_bytes, bk->fraction * 100, bk->cached_bytes >> 20,
		per_gib, verdict(bk->fraction < TARGET_BK));
}

static void json_bk(const char *name, const struct bookkeeping *bk)
{
	printf("\"%s\":{\"folios\":%lu,\"cached_bytes\":%lu,"
	       "\"desc_bytes\":%lu,\"blkstate_bytes\":%lu,\"node_bytes\":%lu,"
	       "\"fraction\":%.6f,\"bytes_per_cached_gib\":%.0f}", name,
	       bk->folios, bk->cached_bytes, bk->desc_bytes, bk->blkstate_bytes,
	       bk->node_bytes, bk->fraction, bk->fraction * GiB);
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: cache-bench [--seconds S] [--quick] [--repeat N] [--size MiB]\n"
"                   [--dir DIR] [--json]\n"
"  --seconds S   time per point (default 0.5)\n"
"  --quick       0.1 s per point, for CI smoke runs\n"
"  --repeat N    runs per point, the median is kept (default 3, max %d)\n"
"  --size MiB    size of each file (default 1024)\n"
"  --dir DIR     where the tmpfs file goes (default /dev/shm)\n"
"  --json        one JSON object on stdout; the table goes to stderr\n",
		MAX_REPEAT);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "quick", no_argument, NULL, 'q' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "size", required_argument, NULL, 'S' },
		{ "dir", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	double e4k1, t4k1, e4k2, t4k2, eseq, mseq, l9, l0, t_setup;
	double r4k1, r4k2, rseq;
	struct bookkeeping bk9, bk0;
	long bs_before;
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			opt.seconds = strtod(optarg, NULL);
			break;
		case 'q':
			opt.seconds = 0.1;
			break;
		case 'r':
			opt.repeat = atoi(optarg);
			break;
		case 'S':
			opt.size = strtoul(optarg, NULL, 0) * MiB;
			break;
		case 'd':
			opt.dir = optarg;
			break;
		case 'j':
			opt.json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (opt.seconds <= 0 || opt.repeat < 1 || opt.repeat > MAX_REPEAT ||
	    opt.size < 2 * MiB || opt.size % (2 * MiB) ||
	    opt.size / PAGE_SIZE > UINT32_MAX) {
		usage(stderr);
		return 2;
	}
	out = opt.json ? stderr : stdout;

	fs_rcu_register_thread();
	t_setup = now();
	/* Far above the two files: nothing is evicted during the run. */
	cache_init(&cache, 4 * opt.size + GiB);
	memstore_init(&store9, true, 1, -1);
	memstore_init(&store0, true, 2, -1);
	filemap_init(&map9, &cache, &memstore_ops, &store9);
	filemap_init(&map0, &cache, &memstore_ops, &store0);
	filemap_set_size(&map9, opt.size);
	filemap_set_size(&map0, opt.size);

	bs_before = blkstate_bytes_live();
	cache_sequentially(&map9, 1);
	bk9 = measure(&map9, blkstate_bytes_live() - bs_before);
	bs_before = blkstate_bytes_live();
	cache_randomly(&map0, 2);
	bk0 = measure(&map0, blkstate_bytes_live() - bs_before);
	setup_tmpfs();
	setup_membuf();
	t_setup = now() - t_setup;

	fprintf(out, "cache-bench: %lu MiB files, %.2f s per point, median of "
		"%d, %ld CPUs, set-up %.1f s\n", opt.size >> 20, opt.seconds,
		opt.repeat, sysconf(_SC_NPROCESSORS_ONLN), t_setup);

	run_pair(K_ENGINE_4K, K_TMPFS_4K, 1, &e4k1, &t4k1);
	run_pair(K_ENGINE_4K, K_TMPFS_4K, 2, &e4k2, &t4k2);
	run_pair(K_ENGINE_SEQ, K_MEMCPY_SEQ, 1, &eseq, &mseq);
	l9 = run_one(K_LOOKUP9);
	l0 = run_one(K_LOOKUP0);
	r4k1 = e4k1 / t4k1;
	r4k2 = e4k2 / t4k2;
	rseq = eseq / mseq;

	fprintf(out, "%-34s %14s %14s %8s  %s\n", "point", "foliofs",
		"reference", "ratio", "target");
	fprintf(out, "%-34s %10.3f M/s %10.3f M/s %8.3f  %s\n",
		"4 KiB random read, 1 thread", e4k1 / 1e6, t4k1 / 1e6, r4k1,
		"(tmpfs pread)");
	fprintf(out, "%-34s %10.3f M/s %10.3f M/s %8.3f  >= %.1f %s\n",
		"4 KiB random read, 2 threads", e4k2 / 1e6, t4k2 / 1e6, r4k2,
		TARGET_4K, verdict(r4k2 >= TARGET_4K));
	fprintf(out, "%-34s %9.3f GB/s %9.3f GB/s %8.3f  >= %.1f %s "
		"(memcpy)\n", "1 MiB sequential read, 1 thread",
		eseq * SEQ_READ / 1e9, mseq * SEQ_READ / 1e9, rseq, TARGET_SEQ,
		verdict(rseq >= TARGET_SEQ));
	fprintf(out, "%-34s %11.1f ns  (order-9 file, %lu folios)\n",
		"lookup: get_folio + put", 1e9 / l9, bk9.folios);
	fprintf(out, "%-34s %11.1f ns  (order-0 file, %lu folios)\n",
		"lookup: get_folio + put", 1e9 / l0, bk0.folios);
	fprintf(out, "bookkeeping (target < %.0f%% of cached bytes; sizeof(struct "
		"folio) = %zu):\n", TARGET_BK * 100, sizeof(struct folio));
	print_bk("order-9", &bk9);
	print_bk("order-0", &bk0);
	if (errors)
		fprintf(out, "cache-bench: %lu reads returned wrong data\n", errors);

	if (opt.json) {
		printf("{\"bench\":\"cache\",\"file_bytes\":%lu,\"seconds\":%g,"
		       "\"repeat\":%d,\"cpus\":%ld,", opt.size, opt.seconds,
		       opt.repeat, sysconf(_SC_NPROCESSORS_ONLN));
		printf("\"ratio_4k_vs_tmpfs\":%.4f,\"ratio_seq_vs_memcpy\":%.4f,",
		       r4k2, rseq);
		printf("\"ratio_4k_vs_tmpfs_1thread\":%.4f,", r4k1);
		printf("\"iops_4k_1thread\":%.0f,\"iops_4k_1thread_tmpfs\":%.0f,"
		       "\"iops_4k_2threads\":%.0f,\"iops_4k_2threads_tmpfs\":%.0f,",
		       e4k1, t4k1, e4k2, t4k2);
		printf("\"seq_1m_gbps\":%.3f,\"memcpy_1m_gbps\":%.3f,",
		       eseq * SEQ_READ / 1e9, mseq * SEQ_READ / 1e9);
		printf("\"lookup_ns_order9\":%.1f,\"lookup_ns_order0\":%.1f,",
		       1e9 / l9, 1e9 / l0);
		printf("\"folio_desc_bytes\":%zu,\"bookkeeping\":{",
		       sizeof(struct folio));
		json_bk("order9", &bk9);
		printf(",");
		json_bk("order0", &bk0);
		printf("},\"targets\":{\"ratio_4k_vs_tmpfs\":%.1f,"
		       "\"ratio_seq_vs_memcpy\":%.1f,\"bookkeeping_fraction\":%.2f},",
		       TARGET_4K, TARGET_SEQ, TARGET_BK);
		printf("\"met\":{\"ratio_4k_vs_tmpfs\":%s,\"ratio_seq_vs_memcpy\":%s,"
		       "\"bookkeeping_order9\":%s,\"bookkeeping_order0\":%s},",
		       r4k2 >= TARGET_4K ? "true" : "false",
		       rseq >= TARGET_SEQ ? "true" : "false",
		       bk9.fraction < TARGET_BK ? "true" : "false",
		       bk0.fraction < TARGET_BK ? "true" : "false");
		printf("\"errors\":%lu}\n", errors);
	}

	close(tmpfs_fd);
	free(membuf);
	filemap_destroy(&map9);
	filemap_destroy(&map0);
	cache_destroy(&cache);
	memstore_destroy(&store9);
	memstore_destroy(&store0);
	fs_rcu_barrier();
	fs_rcu_unregister_thread();
	return errors ? 1 : 0;
}
