/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_readahead.c - the readahead window: ra_sync()/ra_async() arithmetic
 * (random readers get what they ask, sequential windows double up to
 * max_pages, the folio order rises by two per step up to order 9 and never
 * past the window, where the async marker goes), and the same through
 * filemap_read() over the in-memory store: a sequential 4 KiB reader of a
 * 64 MiB file ends up in order-9 folios and hits its async markers, a
 * random 4 KiB reader gets order-0 folios only.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "blkstate.h"
#include "filemap.h"
#include "isolate.h"
#include "memstore.h"
#include "readahead.h"
#include "reclaim.h"
#include "xarray.h"

#define FILE_ID		11
#define MiB		(1024L * 1024L)
#define RA_MAX_ORDER	9U

/* ---- Environment ------------------------------------------------------------ */

struct env {
	struct fs_cache		cache;
	struct memstore		ms;
	struct filemap		map;
	struct file_ra_state	ra;
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	if (!e)
		return -1;
	cache_init(&e->cache, 1UL << 30);
	memstore_init(&e->ms, true, FILE_ID, -1);
	filemap_init(&e->map, &e->cache, &memstore_ops, &e->ms);
	ra_init(&e->ra, 0);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	if (e) {
		filemap_destroy(&e->map);
		memstore_destroy(&e->ms);
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

static unsigned int ilog2(unsigned int v)
{
	return 31 - __builtin_clz(v);
}

static unsigned int min_u(unsigned int a, unsigned int b)
{
	return a < b ? a : b;
}

/* Pages cached in folios of each order. */
static void order_histogram(struct env *e, unsigned long hist[RA_MAX_ORDER + 1])
{
	unsigned long index;
	void *entry;

	memset(hist, 0, sizeof(unsigned long) * (RA_MAX_ORDER + 1));
	xa_for_each(&e->map.pages, index, entry) {
		struct folio *folio = entry;

		assert_true(folio_order(folio) <= RA_MAX_ORDER);
		/* Every folio is aligned to its size. */
		assert_int_equal(index & (folio_nr_pages(folio) - 1), 0);
		hist[folio_order(folio)] += folio_nr_pages(folio);
	}
}

static void print_histogram(const char *what, unsigned long hist[RA_MAX_ORDER + 1])
{
	fprintf(stderr, "%s: pages per folio order:", what);
	for (unsigned int o = 0; o <= RA_MAX_ORDER; o++)
		fprintf(stderr, " %u:%lu", o, hist[o]);
	fprintf(stderr, "\n");
}

/* ---- Arithmetic --------------------------------------------------------------- */

static void test_ra_folio_order(void **state)
{
	(void)state;
	assert_int_equal(ra_folio_order(0, 1, 9), 0);
	assert_int_equal(ra_folio_order(0, 512, 9), 9);
	assert_int_equal(ra_folio_order(0, 511, 9), 8);
	assert_int_equal(ra_folio_order(0, 4096, 20), 9);	/* capped */
	assert_int_equal(ra_folio_order(512, 512, 9), 9);
	assert_int_equal(ra_folio_order(256, 512, 9), 8);	/* alignment */
	assert_int_equal(ra_folio_order(16, 1000, 9), 4);
	assert_int_equal(ra_folio_order(17, 1000, 9), 0);
	assert_int_equal(ra_folio_order(48, 16, 9), 4);
	assert_int_equal(ra_folio_order(48, 15, 9), 3);
	assert_int_equal(ra_folio_order(64, 64, 3), 3);		/* the cap */
	for (unsigned long idx = 0; idx < 4096; idx += 7)
		for (unsigned int nr = 1; nr < 1100; nr += 13) {
			unsigned int o = ra_folio_order(idx, nr, 9);

			assert_true(o <= 9);
			assert_true((1U << o) <= nr);
			assert_int_equal(idx & ((1UL << o) - 1), 0);
			/* Largest such: one more would break a rule. */
			if (o < 9)
				assert_true((idx & ((2UL << o) - 1)) ||
					    (2U << o) > nr);
		}
}

static void test_ra_random_stays_requested(void **state)
{
	struct file_ra_state ra;
	unsigned int seed = 3;

	(void)state;
	ra_init(&ra, 0);
	assert_int_equal(ra.max_pages, RA_DEFAULT_MAX_PAGES);
	for (int i = 0; i < 1000; i++) {
		unsigned long index = 1 + rand_r(&seed) % 100000;
		unsigned int req = 1 + rand_r(&seed) % 8;
		struct ra_window w;

		if (index == ra.prev_index)
			continue;	/* that one would be sequential */
		w = ra_sync(&ra, index, req);
		assert_int_equal(w.start, index);
		assert_int_equal(w.size, req);
		assert_int_equal(w.mark, ~0UL);
		/* A 4 KiB random read gets one order-0 folio. */
		if (req == 1)
			assert_int_equal(ra_folio_order(index, w.size, w.order), 0);
		/* It never grows a window. */
		assert_int_equal(ra.size, 0);
		assert_int_equal(ra.order, 0);
		ra_note_read(&ra, index + req);
	}
	/* A large random read is one window of what it asked, capped. */
	ra_init(&ra, 64);
	{
		struct ra_window w = ra_sync(&ra, 7777, 5000);

		assert_int_equal(w.start, 7777);
		assert_int_equal(w.size, 64);
	}
}

/* Check one sequential step from (@prev_size, @prev_order). */
static void check_step(struct ra_window w, unsigned int prev_size,
		       unsigned int prev_order, unsigned int max)
{
	unsigned int want_size = prev_size ? min_u(prev_size * 2, max) :
				 min_u(RA_INITIAL_PAGES, max);
	unsigned int want_order = min_u(prev_order + 2, RA_MAX_ORDER);
	unsigned long mask, up, down;

	/* Up by two, but never past order 9 nor past the doubled window. */
	while ((1U << want_order) > want_size)
		want_order--;
	/*
	 * The window ends on a boundary of its order, stretched if that stays
	 * within max, trimmed otherwise, so the next one starts aligned.
	 */
	mask = (1UL << want_order) - 1;
	up = (w.start + want_size + mask) & ~mask;
	down = (w.start + want_size) & ~mask;
	if (up - w.start <= max)
		want_size = up - w.start;
	else if (down > w.start)
		want_size = down - w.start;
	while ((1U << want_order) > want_size)
		want_order--;
	assert_int_equal(w.size, want_size);
	assert_int_equal((w.start + w.size) & ((1UL << w.order) - 1), 0);
	assert_int_equal(w.order, want_order);
	assert_true(w.order <= RA_MAX_ORDER);
	assert_true((1U << w.order) <= w.size);
	assert_true(w.order <= prev_order + 2);
}

static void sequential_steps(unsigned int max)
{
	struct file_ra_state ra;
	struct ra_window w;
	unsigned int prev_size, prev_order;
	unsigned long prev_start;
	bool reached_max = false;

	ra_init(&ra, max);
	/* A fresh file read from page 0 is a sequential stream. */
	w = ra_sync(&ra, 0, 1);
	check_step(w, 0, 0, max ? max : RA_DEFAULT_MAX_PAGES);
	assert_int_equal(w.start, 0);
	/* The marker sits in the middle: async_size pages before the end. */
	assert_int_equal(ra.async_size, w.size / 2);
	assert_int_equal(w.mark, w.start + w.size - ra.async_size);
	if (!max)
		max = RA_DEFAULT_MAX_PAGES;

	for (int step = 0; step < 20; step++) {
		prev_size = w.size;
		prev_order = w.order;
		prev_start = w.start;
		/* The reader reached the marker. */
		w = ra_async(&ra, w.mark);
		check_step(w, prev_size, prev_order, max);
		/* Right after the previous window, marker on its first page. */
		assert_int_equal(w.start, prev_start + prev_size);
		assert_int_equal(w.mark, w.start);
		assert_int_equal(ra.start, w.start);
		assert_int_equal(ra.size, w.size);
		assert_int_equal(ra.order, w.order);
		/* As large as the cap allows at the window's alignment. */
		if (w.size + (1U << w.order) > max)
			reached_max = true;
		assert_true(w.size <= max);
	}
	assert_true(reached_max);
	assert_int_equal(w.order, min_u(RA_MAX_ORDER, ilog2(max)));
}

static void test_ra_sequential_doubles_to_max(void **state)
{
	(void)state;
	sequential_steps(0);		/* 1024 pages */
	sequential_steps(64);
	sequential_steps(16);
	sequential_steps(300);
	sequential_steps(8);
}

static void test_ra_sync_sequential_cases(void **state)
{
	struct file_ra_state ra;
	struct ra_window w;

	(void)state;
	ra_init(&ra, 0);
	/* A reader of 1 MiB at a time gets 1 MiB folios at once. */
	w = ra_sync(&ra, 0, 256);
	assert_int_equal(w.size, 256);
	assert_int_equal(w.order, 8);
	assert_int_equal(w.mark, 128);

	/* A miss where the last read ended is sequential: it grows. */
	ra_note_read(&ra, 256);
	w = ra_sync(&ra, 256, 1);
	assert_int_equal(w.start, 256);
	/* 512 pages, stretched to end on an order-9 boundary (page 1024). */
	assert_int_equal(w.size, 768);
	assert_int_equal(w.order, 9);

	/* A miss inside the current window (its folios were reclaimed) is
	 * sequential too. */
	ra_note_read(&ra, 300);
	w = ra_sync(&ra, 400, 1);
	assert_int_equal(w.start, 400);
	/* 1024 pages would end at 1424; stretching passes the cap, so the
	 * window is trimmed to the order-9 boundary at page 1024. */
	assert_int_equal(w.size, 624);
	assert_int_equal(w.order, 9);

	/* Elsewhere: random again, and the state forgets the stream. */
	ra_note_read(&ra, 401);
	w = ra_sync(&ra, 100000, 1);
	assert_int_equal(w.size, 1);
	assert_int_equal(ra.size, 0);
	assert_int_equal(ra.order, 0);

	/* ra_async() on a forgotten window starts over like a miss. */
	ra_note_read(&ra, 100001);
	w = ra_async(&ra, 5000);
	assert_int_equal(w.start, 5000);
	assert_int_equal(w.size, 1);
	w = ra_async(&ra, 100001);	/* at prev_index: a new stream */
	assert_int_equal(w.start, 100001);
	/* RA_INITIAL_PAGES, stretched to the order-2 boundary at 100020. */
	assert_int_equal(w.size, RA_INITIAL_PAGES + 3);
	assert_int_equal(w.order, 2);
}

/* ---- Through filemap_read() ------------------------------------------------------ */

static void test_sequential_4k_reader_gets_order9(void **state)
{
	struct env *e = *state;
	long long size = 64 * MiB;
	unsigned long hist[RA_MAX_ORDER + 1], total;
	char buf[4096];
	long bad = 0;

	filemap_set_size(&e->map, size);
	for (long long pos = 0; pos < size; pos += sizeof(buf)) {
		assert_int_equal(filemap_read(&e->map, &e->ra, pos, buf,
					      sizeof(buf)), sizeof(buf));
		bad += memstore_check_pattern(FILE_ID, pos, buf, sizeof(buf)) != 0;
	}
	assert_int_equal(bad, 0);
	/* Every block read once, no more. */
	assert_int_equal(e->ms.blocks_read, size / 4096);
	/* The stream was seen: async markers were hit, almost no misses. */
	fprintf(stderr, "ra_hits %ld misses %ld ra_pages %ld read_calls %ld\n",
		fs_counter_read(&e->cache.stats.ra_hits),
		fs_counter_read(&e->cache.stats.misses),
		fs_counter_read(&e->cache.stats.ra_pages), e->ms.read_calls);
	assert_true(fs_counter_read(&e->cache.stats.ra_hits) > 0);
	assert_true(fs_counter_read(&e->cache.stats.misses) <= 2);

	order_histogram(e, hist);
	print_histogram("sequential 4 KiB", hist);
	total = 0;
	for (unsigned int o = 0; o <= RA_MAX_ORDER; o++)
		total += hist[o];
	assert_int_equal(total, size / 4096);
	/* Most of the file in 2 MiB folios. */
	assert_true(hist[9] * 4 >= total * 3);
}

static void test_async_marker_reads_next_window_ahead(void **state)
{
	struct env *e = *state;
	char buf[4096];
	struct folio *folio;
	unsigned long idx;

	filemap_set_size(&e->map, 64 * MiB);
	assert_int_equal(filemap_read(&e->map, &e->ra, 0, buf, 4096), 4096);
	/* First window: 16 pages; marker in its middle (page 8). */
	assert_int_equal(e->map.nr_pages, RA_INITIAL_PAGES);
	folio = filemap_get_folio(&e->map, 8);
	assert_non_null(folio);
	assert_true(folio_test_readahead(folio));
	folio_put(folio);
	for (idx = 0; idx < 16; idx++) {
		folio = filemap_get_folio(&e->map, idx);
		assert_non_null(folio);
		assert_int_equal(folio_test_readahead(folio),
				 folio_contains(folio, 8));
		folio_put(folio);
	}
	assert_null(xa_load(&e->map.pages, 16));
	assert_int_equal(fs_counter_read(&e->cache.stats.ra_hits), 0);

	/* Pages before the marker: nothing more read. */
	for (idx = 1; idx < 8; idx++)
		assert_int_equal(filemap_read(&e->map, &e->ra, idx * 4096, buf,
					      4096), 4096);
	assert_int_equal(e->map.nr_pages, RA_INITIAL_PAGES);
	/* The marker: the next window (16..47) is read before it is needed. */
	assert_int_equal(filemap_read(&e->map, &e->ra, 8 * 4096, buf, 4096), 4096);
	assert_int_equal(fs_counter_read(&e->cache.stats.ra_hits), 1);
	for (idx = 16; idx < 48; idx++)
		assert_non_null(xa_load(&e->map.pages, idx));
	assert_null(xa_load(&e->map.pages, 48));
	folio = filemap_get_folio(&e->map, 8);
	assert_false(folio_test_readahead(folio));
	folio_put(folio);
	/* Its marker is on its first folio. */
	folio = filemap_get_folio(&e->map, 16);
	assert_true(folio_test_readahead(folio));
	assert_int_equal(folio_order(folio), 4);
	folio_put(folio);
	assert_int_equal(memstore_check_pattern(FILE_ID, 8 * 4096, buf, 4096), 0);
	assert_int_equal(e->ms.blocks_read, 48);
}

static void test_random_4k_reader_gets_order0(void **state)
{
	struct env *e = *state;
	long long size = 64 * MiB;
	unsigned long pages = size / 4096, hist[RA_MAX_ORDER + 1];
	unsigned long prev = 0;
	unsigned int seed = 42;
	char buf[4096];
	long reads = 0;

	filemap_set_size(&e->map, size);
	for (int i = 0; i < 3000; i++) {
		unsigned long idx = 1 + rand_r(&seed) % (pages - 1);

		/* Continuing where the last read ended is sequential. */
		if (idx == prev)
			continue;
		assert_int_equal(filemap_read(&e->map, &e->ra, idx * 4096, buf,
					      4096), 4096);
		assert_int_equal(memstore_check_pattern(FILE_ID, idx * 4096, buf,
							4096), 0);
		prev = idx + 1;
		reads++;
	}
	order_histogram(e, hist);
	print_histogram("random 4 KiB", hist);
	for (unsigned int o = 1; o <= RA_MAX_ORDER; o++)
		assert_int_equal(hist[o], 0);
	assert_true(hist[0] > 0 && (long)hist[0] <= reads);
	/* Nothing read that was not asked for. */
	assert_int_equal(e->ms.blocks_read, (long)hist[0]);
	assert_int_equal(fs_counter_read(&e->cache.stats.ra_hits), 0);
}

static void test_sequential_1m_reader_gets_large_folios(void **state)
{
	struct env *e = *state;
	long long size = 32 * MiB;
	unsigned long hist[RA_MAX_ORDER + 1];
	char *buf = malloc(MiB);

	assert_non_null(buf);
	filemap_set_size(&e->map, size);
	for (long long pos = 0; pos < size; pos += MiB) {
		assert_int_equal(filemap_read(&e->map, &e->ra, pos, buf, MiB), MiB);
		assert_int_equal(memstore_check_pattern(FILE_ID, pos, buf, MiB), 0);
	}
	free(buf);
	assert_int_equal(e->ms.blocks_read, size / 4096);
	order_histogram(e, hist);
	print_histogram("sequential 1 MiB", hist);
	/* From the first window on: nothing smaller than 1 MiB. */
	for (unsigned int o = 0; o < 8; o++)
		assert_int_equal(hist[o], 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ra_folio_order),
		cmocka_unit_test(test_ra_random_stays_requested),
		cmocka_unit_test(test_ra_sequential_doubles_to_max),
		cmocka_unit_test(test_ra_sync_sequential_cases),
		cmocka_unit_test_setup_teardown(test_sequential_4k_reader_gets_order9,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_marker_reads_next_window_ahead,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_4k_reader_gets_order0,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_sequential_1m_reader_gets_large_folios,
						setup, teardown),
	};

	return run_isolated(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
