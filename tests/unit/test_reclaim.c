/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_reclaim.c - the cache limit and the two-list LRU: reads of a file
 * eight times the limit stay under it, dirty folios are never evicted (and
 * are once written back), a hot set read twice survives a scan read once
 * while one read once does not, a folio someone holds is not evicted,
 * reclaim finds clean folios wherever they are, and reclaim racing with
 * readers keeps every byte right.
 */
#include <errno.h>
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
#include "isolate.h"
#include "memstore.h"
#include "readahead.h"
#include "reclaim.h"
#include "xarray.h"

#define KiB		1024L
#define MiB		(1024L * 1024L)

/* ---- Environment: one cache, two files ------------------------------------------ */

struct file {
	struct memstore		ms;
	struct filemap		map;
	struct file_ra_state	ra;
	uint64_t		id;
};

struct env {
	struct fs_cache		cache;
	struct file		hot;	/* the working set */
	struct file		scan;	/* the big file read once */
	/* What a test holds, let go by the teardown if an assertion fails
	 * first (filemap_destroy() would wait for the lock for ever). */
	struct folio		*held, *locked, *pinned;
};

#define LIMIT		(8 * MiB)

static void file_init(struct env *e, struct file *f, uint64_t id)
{
	memstore_init(&f->ms, true, id, -1);
	filemap_init(&f->map, &e->cache, &memstore_ops, &f->ms);
	ra_init(&f->ra, 0);
	f->id = id;
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	if (!e)
		return -1;
	cache_init(&e->cache, LIMIT);
	file_init(e, &e->hot, 1);
	file_init(e, &e->scan, 2);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	if (e) {
		if (e->locked) {
			folio_unlock(e->locked);
			folio_put(e->locked);
		}
		if (e->pinned)
			folio_unpin(e->pinned);
		if (e->held)
			folio_put(e->held);
		filemap_destroy(&e->hot.map);
		filemap_destroy(&e->scan.map);
		memstore_destroy(&e->hot.ms);
		memstore_destroy(&e->scan.ms);
		cache_destroy(&e->cache);
		free(e);
	}
	fs_rcu_barrier();
	assert_int_equal(folio_descs_live(), 0);
	assert_int_equal(folio_bytes_live(), 0);
	assert_int_equal(blkstate_live(), 0);
	assert_int_equal(xa_nodes_live(), 0);
	return 0;
}

static unsigned long cached(struct env *e)
{
	return __atomic_load_n(&e->cache.cached, __ATOMIC_RELAXED);
}

/* Read [@pos, @pos + @len) of @f in @bs chunks, with its readahead state
 * or none, checking the pattern. */
static void read_file(struct file *f, long long pos, long long len, size_t bs,
		      bool ra)
{
	char *buf = malloc(bs);

	assert_non_null(buf);
	for (long long p = pos; p < pos + len; p += bs) {
		ssize_t r = filemap_read(&f->map, ra ? &f->ra : NULL, p, buf, bs);

		assert_int_equal(r, (ssize_t)bs);
		if (memstore_check_pattern(f->id, p, buf, bs)) {
			free(buf);
			fail_msg("file %lu: wrong data at %lld",
				 (unsigned long)f->id, p);
		}
	}
	free(buf);
}

static void writeback_file(struct file *f)
{
	unsigned long index = 0;

	while (xa_find(&f->map.pages, &index, ULONG_MAX, FM_DIRTY)) {
		struct folio *folio = filemap_get_folio(&f->map, index);

		assert_non_null(folio);
		folio_lock(folio);
		assert_int_equal(memstore_write_folio(&f->ms, &f->map, folio), 0);
		index = folio->index + folio_nr_pages(folio);
		folio_unlock(folio);
		folio_put(folio);
	}
}

/* The LRU accounts for exactly what the files hold. */
static void check_accounting(struct env *e)
{
	unsigned long pages = e->hot.map.nr_pages + e->scan.map.nr_pages;

	assert_int_equal(cached(e), pages * PAGE_SIZE);
	assert_int_equal(e->cache.nr_active + e->cache.nr_inactive, pages);
}

/* ---- The limit ------------------------------------------------------------------- */

/* Read @size bytes of the scan file sequentially in @bs reads, balancing
 * after each; return the peak of cached bytes seen before a balance. */
static unsigned long read_balanced(struct env *e, long long size, size_t bs)
{
	unsigned long peak = 0;
	char *buf = malloc(bs);

	assert_non_null(buf);
	filemap_set_size(&e->scan.map, size);
	for (long long pos = 0; pos < size; pos += bs) {
		assert_int_equal(filemap_read(&e->scan.map, &e->scan.ra, pos, buf,
					      bs), bs);
		if (memstore_check_pattern(2, pos, buf, bs)) {
			free(buf);
			fail_msg("wrong data at %lld", pos);
		}
		if (cached(e) > peak)
			peak = cached(e);
		cache_balance(&e->cache);
		assert_true(cached(e) <= e->cache.limit);
		check_accounting(e);
	}
	free(buf);
	fprintf(stderr, "%zu KiB reads: peak %lu KiB, limit %lu KiB, evicted "
		"%ld folios, %ld of %lld blocks read\n", bs >> 10, peak >> 10,
		e->cache.limit >> 10, fs_counter_read(&e->cache.stats.evicted),
		e->scan.ms.blocks_read, size / PAGE_SIZE);
	return peak;
}

static void test_limit_honoured_sequential(void **state)
{
	struct env *e = *state;
	unsigned long peak;

	/* Room for two readahead windows (4 MiB each) and then some; set
	 * before the cache holds anything. */
	e->cache.limit = 16 * MiB;
	peak = read_balanced(e, 8 * 16 * MiB, 2 * MiB);
	/* Between balances, at most a readahead window and the folio being
	 * read over it. */
	assert_true(peak <= 16 * MiB + 4 * MiB + 2 * MiB);
	assert_true(fs_counter_read(&e->cache.stats.evicted_bytes) >=
		    7 * 16 * MiB);
	assert_int_equal(e->scan.ms.blocks_read, 8 * 16 * MiB / PAGE_SIZE);
}

/*
 * Regression: a sequential reader of a file larger than the cache read
 * blocks again and again. Reads smaller than a folio marked it accessed
 * once per read, so the folios already read were promoted to the active
 * list and reclaim took the ones read ahead but not yet used.
 */
static void test_sequential_read_reads_each_block_once(void **state)
{
	struct env *e = *state;

	e->cache.limit = 16 * MiB;
	read_balanced(e, 8 * 16 * MiB, MiB);
	assert_int_equal(e->scan.ms.blocks_read, 8 * 16 * MiB / PAGE_SIZE);
}

static void test_limit_honoured_random(void **state)
{
	struct env *e = *state;
	long long size = 8 * LIMIT;
	unsigned int seed = 9;
	char buf[4096];

	filemap_set_size(&e->scan.map, size);
	for (int i = 0; i < 20000; i++) {
		long long pos = (long long)(rand_r(&seed) % (size / 4096)) * 4096;

		assert_int_equal(filemap_read(&e->scan.map, NULL, pos, buf, 4096),
				 4096);
		assert_int_equal(memstore_check_pattern(2, pos, buf, 4096), 0);
		cache_balance(&e->cache);
		assert_true(cached(e) <= LIMIT);
	}
	check_accounting(e);
	assert_true(fs_counter_read(&e->cache.stats.evicted) > 0);
}

/* ---- Dirty folios ------------------------------------------------------------- */

/* Write [0, @size) of @f with byte @c, 64 KiB at a time. */
static void write_file(struct file *f, long long size, int c)
{
	char *data = malloc(64 * KiB);
	struct fs_copy_src src;

	assert_non_null(data);
	memset(data, c, 64 * KiB);
	for (long long pos = 0; pos < size; pos += 64 * KiB) {
		fs_copy_src_init(&src, data);
		assert_int_equal(filemap_write(&f->map, pos, &src, 64 * KiB),
				 64 * KiB);
	}
	free(data);
}

static void test_dirty_never_evicted(void **state)
{
	struct env *e = *state;
	char back[64 * KiB], expect[64 * KiB];
	long long size = 2 * LIMIT;
	unsigned long index;
	void *entry;

	/* Some clean data first, read in one call so that each folio is
	 * used once and stays on the inactive list. */
	filemap_set_size(&e->hot.map, 4 * MiB);
	read_file(&e->hot, 0, 4 * MiB, 4 * MiB, true);
	assert_int_equal(cached(e), 4 * MiB);
	/* Twice the limit of dirty data: the writes balance the cache, and
	 * only the clean data can go. */
	write_file(&e->scan, size, 0xab);
	assert_int_equal(e->hot.map.nr_pages, 0);
	assert_int_equal(e->scan.map.nr_pages, size / PAGE_SIZE);
	assert_int_equal(cached(e), size);
	xa_for_each(&e->scan.map.pages, index, entry)
		assert_true(folio_test_dirty((struct folio *)entry));
	assert_int_equal(cache_reclaim(&e->cache, ULONG_MAX), 0);
	assert_int_equal(e->scan.map.nr_pages, size / PAGE_SIZE);
	check_accounting(e);

	/* Written back, they may go. */
	writeback_file(&e->scan);
	cache_balance(&e->cache);
	assert_true(cached(e) <= LIMIT);
	cache_reclaim(&e->cache, ULONG_MAX);
	assert_int_equal(cached(e), 0);
	assert_int_equal(e->scan.map.nr_pages, 0);
	/* And the data comes back from the store. */
	assert_int_equal(filemap_read(&e->scan.map, NULL, size - 64 * KiB, back,
				      64 * KiB), 64 * KiB);
	memset(expect, 0xab, sizeof(expect));
	assert_memory_equal(back, expect, 64 * KiB);
}

static void livelock_alarm(int sig)
{
	static const char msg[] = "filemap_read() made no progress in 10 s: "
		"readahead's cache_balance() evicts what it just read\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

/*
 * Regression: with the cache over its limit because of dirty data, a read
 * never finished: filemap_readahead() ends with cache_balance(), which
 * evicted the clean folios it had just read (the only evictable ones), and
 * filemap_read() went back to read them again, for ever.
 */
static void test_read_makes_progress_over_limit_with_dirty(void **state)
{
	struct env *e = *state;
	char buf[4096];

	write_file(&e->scan, 2 * LIMIT, 0xcd);
	assert_true(cached(e) > LIMIT);
	filemap_set_size(&e->hot.map, MiB);
	signal(SIGALRM, livelock_alarm);
	alarm(10);
	/* A small read, and a sequential one with readahead. */
	assert_int_equal(filemap_read(&e->hot.map, NULL, 8192, buf, 4096), 4096);
	assert_int_equal(memstore_check_pattern(1, 8192, buf, 4096), 0);
	read_file(&e->hot, 0, MiB, 64 * KiB, true);
	alarm(0);
	writeback_file(&e->scan);
}

/*
 * Regression: reclaim looked only at the inactive list and moved folios
 * from the active one only while it was the longer, so clean folios on the
 * active list stayed for ever behind an inactive list full of dirty ones,
 * and cache_reclaim() gave up with them still there.
 */
static void test_reclaim_finds_clean_active_behind_dirty(void **state)
{
	struct env *e = *state;
	unsigned long freed;

	/* 1 MiB clean, read twice: active. */
	filemap_set_size(&e->hot.map, MiB);
	read_file(&e->hot, 0, MiB, 4 * KiB, false);
	read_file(&e->hot, 0, MiB, 4 * KiB, false);
	/* 4 MiB dirty, newer. */
	write_file(&e->scan, 4 * MiB, 0x5a);
	/* Everything that can go must go. */
	freed = cache_reclaim(&e->cache, ULONG_MAX);
	fprintf(stderr, "freed %lu KiB; hot pages left %lu (active %lu, "
		"inactive %lu)\n", freed >> 10, e->hot.map.nr_pages,
		e->cache.nr_active, e->cache.nr_inactive);
	assert_int_equal(e->hot.map.nr_pages, 0);
	assert_int_equal(freed, (unsigned long)MiB);
	assert_int_equal(e->scan.map.nr_pages, 4 * MiB / PAGE_SIZE);
	writeback_file(&e->scan);
}

/* ---- Readahead under reclaim ---------------------------------------------------- */

static struct env *hook_env;
static struct filemap_ops evicting_ops;
static int evict_calls;

/* A store whose reads let reclaim run, as another thread's could. */
static int read_then_reclaim(struct filemap *map, struct folio *folio,
			     unsigned int first, unsigned int nr)
{
	int err = memstore_ops.read_blocks(map, folio, first, nr);

	/* Past 1000 reads the reader is not making progress: stop evicting
	 * so the test ends and its assertions say so. */
	if (++evict_calls < 1000)
		cache_reclaim(&hook_env->cache, ULONG_MAX);
	return err;
}

/*
 * Regression: the folio a read missed on was read ahead, unlocked and put,
 * and reclaim (here: while the next folio of the window was read) evicted
 * it before the reader looked it up again; the reader missed again, read
 * the window again, lost the folio again, and never finished. The folio
 * the reader asked for now comes back to it with a reference, so every
 * miss copies at least one folio.
 */
static void test_readahead_folio_survives_reclaim(void **state)
{
	struct env *e = *state;
	char *buf = malloc(64 * KiB);
	long misses;

	assert_non_null(buf);
	hook_env = e;
	evicting_ops = memstore_ops;
	evicting_ops.read_blocks = read_then_reclaim;
	e->hot.map.ops = &evicting_ops;
	filemap_set_size(&e->hot.map, MiB);
	misses = fs_counter_read(&e->cache.stats.misses);
	/*
	 * From page 1: the window is folios of orders 0, 1, 2, 3 and 0, each
	 * read on its own, so reclaim runs after the first is in the cache.
	 */
	assert_int_equal(filemap_read(&e->hot.map, NULL, PAGE_SIZE, buf, 64 * KiB),
			 64 * KiB);
	assert_int_equal(memstore_check_pattern(e->hot.id, PAGE_SIZE, buf,
						64 * KiB), 0);
	assert_true(evict_calls > 1);
	/* At most one miss per folio of the window (5), not a livelock. */
	assert_true(fs_counter_read(&e->cache.stats.misses) - misses <= 5);
	assert_true(evict_calls < 1000);
	e->hot.map.ops = &memstore_ops;
	free(buf);
}

/* ---- Scan resistance ------------------------------------------------------------ */

#define HOT_SIZE	(2 * MiB)

/* Blocks of the hot set the store had to read again after the scan. */
static long hot_misses_after_scan(struct env *e, int hot_reads, size_t scan_bs)
{
	long before;

	filemap_set_size(&e->hot.map, HOT_SIZE);
	filemap_set_size(&e->scan.map, 8 * LIMIT);
	/* The hot set, in 4 KiB random-access reads (order-0 folios). */
	for (int i = 0; i < hot_reads; i++)
		read_file(&e->hot, 0, HOT_SIZE, 4 * KiB, false);
	assert_int_equal(e->hot.ms.blocks_read, HOT_SIZE / PAGE_SIZE);
	/* The scan, read once, sequentially, balancing as it goes. */
	read_file(&e->scan, 0, 8 * LIMIT, scan_bs, true);
	cache_balance(&e->cache);
	assert_true(cached(e) <= LIMIT);
	check_accounting(e);
	/* The hot set again: what is not cached is read from the store. */
	before = e->hot.ms.blocks_read;
	read_file(&e->hot, 0, HOT_SIZE, 4 * KiB, false);
	fprintf(stderr, "hot set read %dx, scan in %zu KiB reads: %ld of %ld "
		"hot blocks read again\n", hot_reads, scan_bs >> 10,
		e->hot.ms.blocks_read - before, HOT_SIZE / PAGE_SIZE);
	return e->hot.ms.blocks_read - before;
}

/*
 * The scan reads each of its folios in one call, so each is used once:
 * the two lists keep the hot set.
 */
static void test_scan_resistance_whole_folio_reads(void **state)
{
	long misses = hot_misses_after_scan(*state, 2, 2 * MiB);

	assert_true(misses * 10 <= (long)(HOT_SIZE / PAGE_SIZE));
}

/* The same scan, hot set read once: it goes, so its stay above depends on
 * the second read (a single list would lose it either way). */
static void test_hot_set_read_once_is_evicted(void **state)
{
	long misses = hot_misses_after_scan(*state, 1, 2 * MiB);

	assert_true(misses * 10 >= 9 * (long)(HOT_SIZE / PAGE_SIZE));
}

/*
 * Regression: a sequential reader in pieces smaller than a folio (here
 * 128 KiB of a 2 MiB folio) marked each folio accessed once per read call,
 * so a scan read once looked "used twice", was promoted to the active list
 * and pushed the real hot set out.
 */
static void test_scan_resistance_small_reads(void **state)
{
	long misses = hot_misses_after_scan(*state, 2, 128 * KiB);

	assert_true(misses * 10 <= (long)(HOT_SIZE / PAGE_SIZE));
}

/* ---- References ------------------------------------------------------------------ */

static void test_held_folio_not_evicted(void **state)
{
	struct env *e = *state;
	struct folio *held, *locked;
	char buf[4096];

	filemap_set_size(&e->scan.map, 4 * MiB);
	/* One read, so each folio is used once (this is not about the
	 * active list). */
	read_file(&e->scan, 0, 4 * MiB, 4 * MiB, true);
	held = e->held = filemap_get_folio(&e->scan.map, 700);
	assert_non_null(held);
	locked = filemap_get_folio(&e->scan.map, 5);
	assert_non_null(locked);
	assert_ptr_not_equal(held, locked);
	folio_lock(locked);
	e->locked = locked;

	cache_reclaim(&e->cache, ULONG_MAX);
	/* Only the two folios in use are left. */
	assert_int_equal(e->scan.map.nr_folios, 2);
	assert_ptr_equal(xa_load(&e->scan.map.pages, 700), held);
	assert_ptr_equal(xa_load(&e->scan.map.pages, 5), locked);
	assert_ptr_equal(folio_mapping(held), &e->scan.map);
	assert_int_equal(folio_ref_count(held), 2);
	check_accounting(e);
	assert_int_equal(memstore_check_pattern(2, 700 * 4096,
		(char *)folio_address(held) + (700 - held->index) * 4096, 4096), 0);

	/* Reading it is a cache hit. */
	assert_int_equal(filemap_read(&e->scan.map, NULL, 700 * 4096, buf, 4096),
			 4096);
	assert_int_equal(e->scan.ms.blocks_read, 4 * MiB / 4096);

	e->locked = NULL;
	folio_unlock(locked);
	folio_put(locked);
	e->held = NULL;
	folio_put(held);
	cache_reclaim(&e->cache, ULONG_MAX);
	assert_int_equal(e->scan.map.nr_folios, 0);
	assert_int_equal(cached(e), 0);
}

static void test_pinned_folio_not_evicted(void **state)
{
	struct env *e = *state;
	struct folio *folio;

	filemap_set_size(&e->scan.map, 4 * MiB);
	read_file(&e->scan, 0, 4 * MiB, 4 * MiB, true);
	folio = filemap_get_folio(&e->scan.map, 100);
	assert_non_null(folio);
	folio_pin(folio);
	e->pinned = folio;
	folio_put(folio);
	cache_reclaim(&e->cache, ULONG_MAX);
	assert_int_equal(e->scan.map.nr_folios, 1);
	assert_ptr_equal(xa_load(&e->scan.map.pages, 100), folio);
	assert_true(folio_order(folio) == 0 || folio_has_blkstate(folio));
	e->pinned = NULL;
	folio_unpin(folio);
	cache_reclaim(&e->cache, ULONG_MAX);
	assert_int_equal(e->scan.map.nr_folios, 0);
}

/* ---- Concurrency ----------------------------------------------------------------- */

struct reader {
	struct env	*e;
	int		id;
	long		bad, reads;
	int		*stop;
};

#define RACE_SIZE	(4 * LIMIT)

static void *reader_thread(void *p)
{
	struct reader *r = p;
	struct filemap *map = &r->e->scan.map;
	struct file_ra_state ra;
	unsigned int seed = 100 + r->id;
	char *buf = malloc(64 * KiB);
	long long pos = 0;

	fs_rcu_register_thread();
	ra_init(&ra, 0);
	while (!__atomic_load_n(r->stop, __ATOMIC_ACQUIRE)) {
		size_t len;
		ssize_t got;

		if (r->id == 0) {
			/* Sequential, 64 KiB at a time, round and round. */
			len = 64 * KiB;
			if (pos + (long long)len > RACE_SIZE) {
				pos = 0;
				ra_init(&ra, 0);
			}
		} else {
			/* Random, 4..16 KiB at 8-byte-aligned offsets. */
			len = 4 * KiB + (rand_r(&seed) % 3) * 4 * KiB;
			pos = (long long)(rand_r(&seed) % ((RACE_SIZE - len) / 8)) * 8;
		}
		got = filemap_read(map, r->id == 0 ? &ra : NULL, pos, buf, len);
		if (got != (ssize_t)len ||
		    memstore_check_pattern(2, pos, buf, len))
			r->bad++;
		r->reads++;
		if (r->id == 0)
			pos += len;
	}
	free(buf);
	fs_rcu_unregister_thread();
	return NULL;
}

static void test_concurrent_reclaim_and_readers(void **state)
{
	struct env *e = *state;
	struct reader r[2];
	pthread_t t[2];
	int stop = 0;
	struct timespec start, now;
	long reclaims = 0;

	filemap_set_size(&e->scan.map, RACE_SIZE);
	for (int i = 0; i < 2; i++) {
		r[i] = (struct reader){ .e = e, .id = i, .stop = &stop };
		assert_int_equal(pthread_create(&t[i], NULL, reader_thread, &r[i]), 0);
	}
	/* This thread reclaims as hard as it can meanwhile. */
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		cache_reclaim(&e->cache, 512 * KiB);
		cache_balance(&e->cache);
		reclaims++;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec < 3);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	fprintf(stderr, "reads %ld + %ld, reclaim calls %ld, evicted %ld\n",
		r[0].reads, r[1].reads, reclaims,
		fs_counter_read(&e->cache.stats.evicted));
	assert_int_equal(r[0].bad, 0);
	assert_int_equal(r[1].bad, 0);
	assert_true(r[0].reads > 0 && r[1].reads > 0);
	assert_true(fs_counter_read(&e->cache.stats.evicted) > 0);
	check_accounting(e);
	cache_balance(&e->cache);
	assert_true(cached(e) <= LIMIT);
	assert_true(xa_check(&e->scan.map.pages));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_limit_honoured_sequential),
		T(test_sequential_read_reads_each_block_once),
		T(test_limit_honoured_random),
		T(test_dirty_never_evicted),
		T(test_read_makes_progress_over_limit_with_dirty),
		T(test_reclaim_finds_clean_active_behind_dirty),
		T(test_readahead_folio_survives_reclaim),
		T(test_scan_resistance_whole_folio_reads),
		T(test_hot_set_read_once_is_evicted),
		T(test_scan_resistance_small_reads),
		T(test_held_folio_not_evicted),
		T(test_pinned_folio_not_evicted),
		T(test_concurrent_reclaim_and_readers),
#undef T
	};

	return run_isolated(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
