/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_blkstate.c - per-block state (law 6): attach and the flag form,
 * uptodate/dirty/reserved ranges at partial-block boundaries, dirty-run
 * iteration across bitmap words, release refused while dirty, under
 * writeback, pinned or reserved (law 6, 8), split handing each piece its
 * exact slice (law 3), and concurrent read completions.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "blkstate.h"

/* A locked folio of @order with blocks of 2^@blkbits. */
static struct folio *mkfolio(unsigned int order, unsigned int blkbits)
{
	struct folio *folio = folio_alloc(order);

	assert_non_null(folio);
	folio_set_blkbits(folio, blkbits);
	folio_lock(folio);
	return folio;
}

/* Drop all state (as truncate would), release, unlock and put. */
static void rmfolio(struct folio *folio)
{
	size_t size = folio_size(folio);

	assert_true(blkstate_check(folio));
	blkstate_clear_dirty(folio, 0, size);
	blkstate_clear_reserved(folio, 0, size);
	assert_int_equal(blkstate_release(folio), 0);
	assert_false(folio_has_blkstate(folio));
	folio_unlock(folio);
	folio_put(folio);
}

static int check_nothing_live(void **state)
{
	(void)state;
	fs_rcu_barrier();
	assert_int_equal(blkstate_live(), 0);
	assert_int_equal(blkstate_bytes_live(), 0);
	assert_int_equal(folio_descs_live(), 0);
	assert_int_equal(folio_bytes_live(), 0);
	return 0;
}

/* Dirty blocks of @folio as a list of runs, in blocks. */
static unsigned int dirty_runs(struct folio *folio, unsigned int *first,
			       unsigned int *nr, unsigned int max)
{
	unsigned int bits = folio->blkbits, n = 0;
	size_t off, len;

	blkstate_for_each_dirty(folio, off, len) {
		assert_true(n < max);
		assert_int_equal(off % (1UL << bits), 0);
		assert_int_equal(len % (1UL << bits), 0);
		assert_true(len > 0);
		first[n] = off >> bits;
		nr[n] = len >> bits;
		n++;
	}
	return n;
}

/* ---- Attach, release, flag form --------------------------------------------- */

static void test_single_block_has_no_blkstate(void **state)
{
	struct folio *folio = mkfolio(0, PAGE_SHIFT);
	size_t off = 123, len = 0;

	(void)state;
	assert_int_equal(folio_nr_blocks(folio), 1);
	assert_int_equal(blkstate_attach(folio), 0);
	assert_false(folio_has_blkstate(folio));
	assert_int_equal(blkstate_live(), 0);

	/* Flags are the state. Partial uptodate does not count. */
	assert_int_equal(blkstate_set_uptodate(folio, 0, 4095), 0);
	assert_false(folio_test_uptodate(folio));
	assert_false(blkstate_test_uptodate(folio, 0, 1));
	assert_int_equal(blkstate_set_uptodate(folio, 0, 4096), 1);
	assert_true(folio_test_uptodate(folio));
	assert_true(blkstate_test_uptodate(folio, 10, 20));

	/* A one-byte write dirties the block. */
	assert_int_equal(blkstate_set_dirty(folio, 4000, 1), 1);
	assert_int_equal(blkstate_set_dirty(folio, 0, 1), 0);
	assert_true(folio_test_dirty(folio));
	assert_int_equal(blkstate_count_dirty(folio), 1);
	assert_true(blkstate_next_dirty(folio, &off, &len));
	assert_int_equal(off, 0);
	assert_int_equal(len, 4096);
	/* Clearing part of it leaves it dirty. */
	assert_int_equal(blkstate_clear_dirty(folio, 0, 4095), 0);
	assert_true(folio_test_dirty(folio));
	assert_int_equal(blkstate_clear_dirty(folio, 0, 4096), 1);
	assert_false(folio_test_dirty(folio));
	off = 0;
	assert_false(blkstate_next_dirty(folio, &off, &len));

	assert_int_equal(blkstate_set_reserved(folio, 5, 5), 1);
	assert_true(folio_test_delalloc(folio));
	assert_int_equal(blkstate_count_reserved(folio, 0, 4096), 1);
	assert_int_equal(blkstate_clear_reserved(folio, 0, 4096), 1);
	assert_false(folio_test_delalloc(folio));
	rmfolio(folio);
}

static void test_attach_and_release(void **state)
{
	struct folio *folio = mkfolio(2, PAGE_SHIFT);

	(void)state;
	assert_int_equal(folio_nr_blocks(folio), 4);
	assert_int_equal(blkstate_attach(folio), 0);
	assert_true(folio_has_blkstate(folio));
	assert_true(folio_test_private(folio));
	assert_int_equal(blkstate_live(), 1);
	assert_true(blkstate_bytes_live() > 0);
	/* Twice is once. */
	assert_int_equal(blkstate_attach(folio), 0);
	assert_int_equal(blkstate_live(), 1);
	assert_true(blkstate_check(folio));

	assert_int_equal(blkstate_release(folio), 0);
	assert_false(folio_has_blkstate(folio));
	assert_null(folio->private);
	/* Freed after a grace period. */
	fs_rcu_barrier();
	assert_int_equal(blkstate_live(), 0);
	/* Nothing to release is fine. */
	assert_int_equal(blkstate_release(folio), 0);

	/* Sub-page blocks: an order-0 folio with 512-byte blocks has 8. */
	folio_unlock(folio);
	folio_put(folio);
	folio = mkfolio(0, 9);
	assert_int_equal(folio_nr_blocks(folio), 8);
	assert_int_equal(blkstate_attach(folio), 0);
	assert_true(folio_has_blkstate(folio));
	rmfolio(folio);
}

static void test_attach_failure(void **state)
{
	struct folio *folio = mkfolio(3, PAGE_SHIFT);

	(void)state;
	blkstate_fail_alloc_next(1);
	assert_int_equal(blkstate_attach(folio), -ENOMEM);
	assert_false(folio_has_blkstate(folio));
	assert_int_equal(blkstate_live(), 0);
	assert_int_equal(blkstate_attach(folio), 0);
	assert_true(folio_has_blkstate(folio));
	rmfolio(folio);
}

/* attach builds the bitmaps from the flag form, release goes back. */
static void test_attach_from_flags(void **state)
{
	struct folio *folio = mkfolio(1, PAGE_SHIFT);

	(void)state;
	/* Flag form: dirtying any byte dirties (and reserves) everything. */
	assert_int_equal(blkstate_set_uptodate(folio, 0, 8192), 2);
	assert_int_equal(blkstate_set_dirty(folio, 10, 1), 2);
	assert_int_equal(blkstate_set_reserved(folio, 10, 1), 2);
	assert_int_equal(blkstate_attach(folio), 0);
	assert_true(blkstate_check(folio));
	assert_true(blkstate_test_uptodate(folio, 0, 8192));
	assert_int_equal(blkstate_count_dirty(folio), 2);
	assert_int_equal(blkstate_count_reserved(folio, 0, 8192), 2);
	/* Now per block. */
	assert_int_equal(blkstate_clear_dirty(folio, 4096, 4096), 1);
	assert_int_equal(blkstate_count_dirty(folio), 1);
	assert_true(folio_test_dirty(folio));
	assert_int_equal(blkstate_clear_reserved(folio, 0, 4096), 1);
	assert_true(folio_test_delalloc(folio));
	assert_true(blkstate_check(folio));
	rmfolio(folio);
}

/* ---- Ranges at partial-block boundaries ------------------------------------ */

static void test_uptodate_partial_blocks(void **state)
{
	/* 8 blocks of 512 bytes. */
	struct folio *folio = mkfolio(0, 9);

	(void)state;
	assert_int_equal(blkstate_attach(folio), 0);
	/* [100, 1100) fully covers only block 1 = [512, 1024). */
	assert_int_equal(blkstate_set_uptodate(folio, 100, 1000), 1);
	assert_true(blkstate_test_uptodate(folio, 512, 512));
	assert_true(blkstate_test_uptodate(folio, 600, 10));
	assert_false(blkstate_test_uptodate(folio, 511, 2));
	assert_false(blkstate_test_uptodate(folio, 1023, 2));
	assert_false(blkstate_test_uptodate(folio, 100, 10));
	/* Exact block edges. */
	assert_int_equal(blkstate_set_uptodate(folio, 0, 511), 0);
	assert_int_equal(blkstate_set_uptodate(folio, 0, 512), 1);
	assert_true(blkstate_test_uptodate(folio, 0, 1024));
	assert_false(folio_test_uptodate(folio));
	/* Setting what is set counts nothing. */
	assert_int_equal(blkstate_set_uptodate(folio, 0, 1024), 0);
	/* The rest: the folio becomes uptodate with its last block. */
	assert_int_equal(blkstate_set_uptodate(folio, 1024, 4095 - 1024), 5);
	assert_false(folio_test_uptodate(folio));
	assert_int_equal(blkstate_set_uptodate(folio, 3584, 512), 1);
	assert_true(folio_test_uptodate(folio));
	assert_true(blkstate_check(folio));

	/* A failed read of two bytes across a block edge loses both blocks. */
	assert_int_equal(blkstate_clear_uptodate(folio, 1023, 2), 2);
	assert_false(folio_test_uptodate(folio));
	assert_false(blkstate_test_uptodate(folio, 1023, 1));
	assert_false(blkstate_test_uptodate(folio, 1024, 1));
	assert_true(blkstate_test_uptodate(folio, 0, 512));
	assert_true(blkstate_test_uptodate(folio, 1536, 2560));
	assert_true(blkstate_check(folio));

	/* Empty ranges change nothing and are vacuously uptodate. */
	assert_int_equal(blkstate_set_uptodate(folio, 1024, 0), 0);
	assert_int_equal(blkstate_clear_uptodate(folio, 0, 0), 0);
	assert_true(blkstate_test_uptodate(folio, 1024, 0));
	rmfolio(folio);
}

static void test_dirty_partial_blocks(void **state)
{
	struct folio *folio = mkfolio(0, 9);

	(void)state;
	assert_int_equal(blkstate_attach(folio), 0);
	/* Two bytes across the 0/1 edge dirty both blocks. */
	assert_int_equal(blkstate_set_dirty(folio, 511, 2), 2);
	assert_true(folio_test_dirty(folio));
	assert_int_equal(blkstate_count_dirty(folio), 2);
	assert_int_equal(blkstate_set_dirty(folio, 0, 1), 0);
	assert_false(blkstate_test_dirty(folio, 1024, 10));
	assert_true(blkstate_test_dirty(folio, 1000, 30));
	assert_false(blkstate_test_dirty(folio, 1000, 0));

	/* [1, 1024) covers block 1 only; block 0 keeps its dirty byte 0. */
	assert_int_equal(blkstate_clear_dirty(folio, 1, 1023), 1);
	assert_int_equal(blkstate_count_dirty(folio), 1);
	assert_true(folio_test_dirty(folio));
	assert_true(blkstate_test_dirty(folio, 0, 1));
	assert_int_equal(blkstate_clear_dirty(folio, 0, 512), 1);
	assert_false(folio_test_dirty(folio));
	assert_int_equal(blkstate_count_dirty(folio), 0);

	/* The last block, by its last byte. */
	assert_int_equal(blkstate_set_dirty(folio, 4095, 1), 1);
	assert_true(blkstate_test_dirty(folio, 3584, 1));
	assert_false(blkstate_test_dirty(folio, 0, 3584));
	assert_true(blkstate_check(folio));
	rmfolio(folio);
}

static void test_reserved_partial_blocks(void **state)
{
	struct folio *folio = mkfolio(1, 9);	/* 16 blocks */

	(void)state;
	assert_int_equal(blkstate_attach(folio), 0);
	/* [100, 700) touches blocks 0 and 1. */
	assert_int_equal(blkstate_set_reserved(folio, 100, 600), 2);
	assert_int_equal(blkstate_set_reserved(folio, 0, 1024), 0);
	assert_int_equal(blkstate_count_reserved(folio, 0, 8192), 2);
	assert_int_equal(blkstate_count_reserved(folio, 600, 1), 1);
	assert_true(folio_test_delalloc(folio));
	/* Truncate at 1000 drops only whole blocks past it: none reserved
	 * there, and block 1 keeps its reservation. */
	assert_int_equal(blkstate_clear_reserved(folio, 1000, 8192 - 1000), 0);
	assert_int_equal(blkstate_count_reserved(folio, 0, 8192), 2);
	/* Inward: [0, 1000) covers block 0 only. */
	assert_int_equal(blkstate_clear_reserved(folio, 0, 1000), 1);
	assert_int_equal(blkstate_clear_reserved(folio, 512, 512), 1);
	assert_false(folio_test_delalloc(folio));
	assert_true(blkstate_check(folio));
	rmfolio(folio);
}

static void test_out_of_range_is_empty(void **state)
{
	struct folio *folio = mkfolio(0, 9);

	(void)state;
	assert_int_equal(blkstate_attach(folio), 0);
	fprintf(stderr, "(two WARNINGs for out-of-range byte ranges are expected)\n");
	assert_int_equal(blkstate_set_dirty(folio, 4096, 1), 0);
	assert_int_equal(blkstate_set_dirty(folio, 4000, 200), 0);
	assert_false(folio_test_dirty(folio));
	rmfolio(folio);
}

/* ---- Dirty runs -------------------------------------------------------- */

static void test_dirty_runs_small(void **state)
{
	struct folio *folio = mkfolio(1, 9);	/* 16 blocks */
	unsigned int first[8], nr[8], n;

	(void)state;
	assert_int_equal(blkstate_attach(folio), 0);
	assert_int_equal(dirty_runs(folio, first, nr, 8), 0);
	blkstate_set_dirty(folio, 0, 3 * 512);
	blkstate_set_dirty(folio, 5 * 512 + 7, 1);
	blkstate_set_dirty(folio, 7 * 512, 3 * 512);
	blkstate_set_dirty(folio, 15 * 512 + 511, 1);
	n = dirty_runs(folio, first, nr, 8);
	assert_int_equal(n, 4);
	assert_int_equal(first[0], 0);
	assert_int_equal(nr[0], 3);
	assert_int_equal(first[1], 5);
	assert_int_equal(nr[1], 1);
	assert_int_equal(first[2], 7);
	assert_int_equal(nr[2], 3);
	assert_int_equal(first[3], 15);
	assert_int_equal(nr[3], 1);
	assert_int_equal(blkstate_count_dirty(folio), 8);
	rmfolio(folio);
}

static void test_dirty_runs_across_words(void **state)
{
	/* 2 MiB of 512-byte blocks: 4096 bits, 64 words. */
	struct folio *folio = mkfolio(FOLIO_MAX_ORDER, 9);
	unsigned int first[8], nr[8], n;
	size_t off, len;

	(void)state;
	assert_int_equal(folio_nr_blocks(folio), 4096);
	assert_int_equal(blkstate_attach(folio), 0);
	blkstate_set_dirty(folio, 60 * 512, 71 * 512);		/* 60..130 */
	blkstate_set_dirty(folio, 191 * 512, 2 * 512);		/* 191..192 */
	blkstate_set_dirty(folio, 4095 * 512, 512);		/* 4095 */
	n = dirty_runs(folio, first, nr, 8);
	assert_int_equal(n, 3);
	assert_int_equal(first[0], 60);
	assert_int_equal(nr[0], 71);
	assert_int_equal(first[1], 191);
	assert_int_equal(nr[1], 2);
	assert_int_equal(first[2], 4095);
	assert_int_equal(nr[2], 1);
	assert_int_equal(blkstate_count_dirty(folio), 74);

	/* From the middle of a run: starts at the block holding the offset. */
	off = 64 * 512 + 7;
	assert_true(blkstate_next_dirty(folio, &off, &len));
	assert_int_equal(off, 64 * 512);
	assert_int_equal(len, 67 * 512);
	off = 4096 * 512;
	assert_false(blkstate_next_dirty(folio, &off, &len));

	/* Writeback clears the runs it writes. */
	assert_int_equal(blkstate_clear_dirty(folio, 60 * 512, 71 * 512), 71);
	n = dirty_runs(folio, first, nr, 8);
	assert_int_equal(n, 2);
	assert_int_equal(first[0], 191);
	assert_true(blkstate_check(folio));

	/* All of it: one run. */
	assert_int_equal(blkstate_set_dirty(folio, 0, folio_size(folio)),
			 4096 - 3);
	n = dirty_runs(folio, first, nr, 8);
	assert_int_equal(n, 1);
	assert_int_equal(first[0], 0);
	assert_int_equal(nr[0], 4096);
	rmfolio(folio);
}

/* ---- Release refused (law 6, 8) ------------------------------------------ */

static void test_release_refused(void **state)
{
	struct folio *folio = mkfolio(2, PAGE_SHIFT);
	void *bs;

	(void)state;
	assert_int_equal(blkstate_attach(folio), 0);
	bs = folio->private;
	blkstate_set_uptodate(folio, 0, 4096);

	/* Dirty. */
	blkstate_set_dirty(folio, 5000, 10);
	assert_int_equal(blkstate_release(folio), -EBUSY);
	assert_ptr_equal(folio->private, bs);
	assert_true(folio_test_private(folio));
	assert_int_equal(blkstate_count_dirty(folio), 1);
	assert_true(blkstate_test_uptodate(folio, 0, 4096));
	blkstate_clear_dirty(folio, 4096, 4096);

	/* Under writeback (cleaned by it, law 8's order of things). */
	folio_start_writeback(folio);
	assert_int_equal(blkstate_release(folio), -EBUSY);
	assert_ptr_equal(folio->private, bs);
	folio_end_writeback(folio);

	/* Pinned; and a set-dirty through the pin still works per block. */
	folio_pin(folio);
	assert_int_equal(blkstate_release(folio), -EBUSY);
	assert_ptr_equal(folio->private, bs);
	assert_int_equal(blkstate_set_dirty(folio, 3 * 4096, 1), 1);
	assert_int_equal(blkstate_count_dirty(folio), 1);
	blkstate_clear_dirty(folio, 3 * 4096, 4096);
	folio_unpin(folio);

	/* Holding reservations. */
	blkstate_set_reserved(folio, 0, 1);
	assert_int_equal(blkstate_release(folio), -EBUSY);
	assert_ptr_equal(folio->private, bs);
	blkstate_clear_reserved(folio, 0, 4096);

	assert_true(blkstate_check(folio));
	/* Clean: released, and partly uptodate becomes not uptodate. */
	assert_int_equal(blkstate_release(folio), 0);
	assert_false(folio_has_blkstate(folio));
	assert_false(folio_test_uptodate(folio));
	assert_false(blkstate_test_uptodate(folio, 0, 4096));
	rmfolio(folio);
}

/* ---- Split (law 3) ----------------------------------------------------- */

static bool in(unsigned int b, const unsigned int *set, unsigned int n)
{
	while (n--)
		if (set[n] == b)
			return true;
	return false;
}

static const unsigned int split_uptodate[] = { 0, 1, 2, 3, 6, 7 };
static const unsigned int split_dirty[] = { 1, 2, 7 };
static const unsigned int split_reserved[] = { 2, 7 };

/* An order-3 folio of 8 4 KiB blocks in the pattern above. */
static struct folio *mk_split_source(void)
{
	struct folio *folio = mkfolio(3, PAGE_SHIFT);
	unsigned int i;

	assert_int_equal(blkstate_attach(folio), 0);
	for (i = 0; i < ARRAY_SIZE(split_uptodate); i++)
		blkstate_set_uptodate(folio, split_uptodate[i] * 4096, 4096);
	for (i = 0; i < ARRAY_SIZE(split_dirty); i++)
		blkstate_set_dirty(folio, split_dirty[i] * 4096, 4096);
	for (i = 0; i < ARRAY_SIZE(split_reserved); i++)
		blkstate_set_reserved(folio, split_reserved[i] * 4096, 1);
	assert_true(blkstate_check(folio));
	return folio;
}

/* Check every block of @pieces against the source pattern. */
static void check_split_pieces(struct folio **pieces, unsigned int n,
			       unsigned int per)
{
	unsigned int i, b;

	for (i = 0; i < n; i++) {
		struct folio *p = pieces[i];
		bool all_up = true, any_dirty = false, any_res = false;

		assert_true(blkstate_check(p));
		assert_int_equal(folio_nr_blocks(p), per);
		assert_int_equal(folio_has_blkstate(p), per > 1);
		for (b = 0; b < per; b++) {
			unsigned int src = i * per + b;
			size_t off = (size_t)b * 4096;

			assert_int_equal(blkstate_test_uptodate(p, off, 4096),
				in(src, split_uptodate,
				   ARRAY_SIZE(split_uptodate)));
			assert_int_equal(blkstate_test_dirty(p, off, 4096),
				in(src, split_dirty, ARRAY_SIZE(split_dirty)));
			assert_int_equal(blkstate_count_reserved(p, off, 4096),
				in(src, split_reserved,
				   ARRAY_SIZE(split_reserved)));
			all_up &= in(src, split_uptodate,
				     ARRAY_SIZE(split_uptodate));
			any_dirty |= in(src, split_dirty,
					ARRAY_SIZE(split_dirty));
			any_res |= in(src, split_reserved,
				      ARRAY_SIZE(split_reserved));
		}
		assert_int_equal(folio_test_uptodate(p), all_up);
		assert_int_equal(folio_test_dirty(p), any_dirty);
		assert_int_equal(folio_test_delalloc(p), any_res);
	}
}

static void split_into(unsigned int new_order, bool preattach)
{
	struct folio *folio = mk_split_source();
	unsigned int n = 1U << (3 - new_order), i;
	struct folio *pieces[8];

	for (i = 0; i < n; i++) {
		pieces[i] = mkfolio(new_order, PAGE_SHIFT);
		if (preattach)
			assert_int_equal(blkstate_attach(pieces[i]), 0);
	}
	assert_true(folio_ref_freeze(folio, 1));
	if (preattach)
		blkstate_fail_alloc_next(1);	/* must not be needed */
	assert_int_equal(blkstate_split(folio, pieces, n), 0);
	blkstate_fail_alloc_next(0);
	check_split_pieces(pieces, n, 1U << new_order);

	/* The state moved: nothing left on the original to write back or
	 * release twice. */
	assert_false(folio_has_blkstate(folio));
	assert_false(folio_test_dirty(folio));
	assert_false(folio_test_delalloc(folio));
	folio_ref_unfreeze(folio, 1);
	rmfolio(folio);
	for (i = 0; i < n; i++)
		rmfolio(pieces[i]);
}

static void test_split_to_order1(void **state)
{
	(void)state;
	split_into(1, false);
}

static void test_split_to_order2_preattached(void **state)
{
	(void)state;
	split_into(2, true);
}

static void test_split_to_order0_flags(void **state)
{
	(void)state;
	split_into(0, false);
}

/* Sub-page blocks: a piece of order 0 still has 8 blocks and a blkstate. */
static void test_split_small_blocks(void **state)
{
	struct folio *folio = mkfolio(1, 9);	/* 16 blocks */
	struct folio *pieces[2];
	unsigned int i;

	(void)state;
	assert_int_equal(blkstate_attach(folio), 0);
	blkstate_set_dirty(folio, 7 * 512, 2 * 512);		/* 7, 8 */
	blkstate_set_uptodate(folio, 0, 9 * 512);		/* 0..8 */
	blkstate_set_reserved(folio, 15 * 512, 1);		/* 15 */
	for (i = 0; i < 2; i++)
		pieces[i] = mkfolio(0, PAGE_SHIFT);	/* split sets 9 */
	assert_int_equal(blkstate_split(folio, pieces, 2), 0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(pieces[i]->blkbits, 9);
		assert_true(folio_has_blkstate(pieces[i]));
		assert_true(blkstate_check(pieces[i]));
	}
	assert_true(folio_test_uptodate(pieces[0]));
	assert_false(folio_test_uptodate(pieces[1]));
	assert_true(blkstate_test_uptodate(pieces[1], 0, 512));
	assert_false(blkstate_test_uptodate(pieces[1], 512, 1));
	assert_int_equal(blkstate_count_dirty(pieces[0]), 1);
	assert_true(blkstate_test_dirty(pieces[0], 7 * 512, 1));
	assert_int_equal(blkstate_count_dirty(pieces[1]), 1);
	assert_true(blkstate_test_dirty(pieces[1], 0, 1));
	assert_int_equal(blkstate_count_reserved(pieces[0], 0, 4096), 0);
	assert_int_equal(blkstate_count_reserved(pieces[1], 0, 4096), 1);
	assert_int_equal(blkstate_count_reserved(pieces[1], 7 * 512, 512), 1);
	rmfolio(folio);
	for (i = 0; i < 2; i++)
		rmfolio(pieces[i]);
}

/* A folio in the flag form hands its all-or-nothing state to every piece. */
static void test_split_flag_form(void **state)
{
	struct folio *folio = mkfolio(2, PAGE_SHIFT);
	struct folio *pieces[2];
	unsigned int i;

	(void)state;
	blkstate_set_uptodate(folio, 0, folio_size(folio));
	assert_int_equal(blkstate_set_dirty(folio, 0, 1), 4);
	for (i = 0; i < 2; i++)
		pieces[i] = mkfolio(1, PAGE_SHIFT);
	assert_int_equal(blkstate_split(folio, pieces, 2), 0);
	for (i = 0; i < 2; i++) {
		assert_true(folio_has_blkstate(pieces[i]));
		assert_true(folio_test_uptodate(pieces[i]));
		assert_int_equal(blkstate_count_dirty(pieces[i]), 2);
		assert_int_equal(blkstate_count_reserved(pieces[i], 0, 8192), 0);
		assert_true(blkstate_check(pieces[i]));
	}
	assert_false(folio_test_dirty(folio));
	rmfolio(folio);
	for (i = 0; i < 2; i++)
		rmfolio(pieces[i]);
}

static void test_split_enomem_changes_nothing(void **state)
{
	struct folio *folio = mk_split_source();
	struct folio *pieces[4];
	void *bs = folio->private;
	unsigned int i;

	(void)state;
	for (i = 0; i < 4; i++)
		pieces[i] = mkfolio(1, PAGE_SHIFT);
	/* pieces[1] comes with its own blkstate; the others need one. */
	assert_int_equal(blkstate_attach(pieces[1]), 0);
	assert_int_equal(blkstate_live(), 2);

	/* pieces[0] and [2] get theirs, pieces[3]'s allocation fails: the
	 * two just attached must be taken off again. */
	blkstate_fail_alloc(2, 1);
	assert_int_equal(blkstate_split(folio, pieces, 4), -ENOMEM);
	assert_ptr_equal(folio->private, bs);
	assert_int_equal(blkstate_count_dirty(folio), 3);
	assert_int_equal(blkstate_count_reserved(folio, 0, 8 * 4096), 2);
	assert_true(folio_test_dirty(folio));
	assert_true(folio_test_delalloc(folio));
	assert_true(blkstate_check(folio));
	assert_true(folio_has_blkstate(pieces[1]));
	assert_true(blkstate_check(pieces[1]));
	for (i = 0; i < 4; i++) {
		if (i == 1)
			continue;
		assert_false(folio_has_blkstate(pieces[i]));
		assert_null(pieces[i]->private);
		assert_int_equal(folio_flags(pieces[i]), 1UL << FOLIO_LOCKED);
	}
	assert_int_equal(blkstate_live(), 2);

	/* Fails at the first allocation too. */
	blkstate_fail_alloc_next(1);
	assert_int_equal(blkstate_split(folio, pieces, 4), -ENOMEM);
	assert_int_equal(blkstate_live(), 2);

	/* With memory it works; pieces[1]'s blkstate is the one it had. */
	bs = pieces[1]->private;
	assert_int_equal(blkstate_split(folio, pieces, 4), 0);
	assert_ptr_equal(pieces[1]->private, bs);
	check_split_pieces(pieces, 4, 2);
	rmfolio(folio);
	for (i = 0; i < 4; i++)
		rmfolio(pieces[i]);
}

static void test_split_bad_shape(void **state)
{
	struct folio *folio = mk_split_source();
	struct folio *pieces[4], *shape[4];
	unsigned int i;

	(void)state;
	for (i = 0; i < 4; i++)
		pieces[i] = mkfolio(i == 3 ? 0 : 1, PAGE_SHIFT);
	fprintf(stderr, "(WARNINGs for bad split shapes are expected)\n");
	/* A piece of the wrong order. */
	assert_int_equal(blkstate_split(folio, pieces, 4), -EINVAL);
	/* Not a power of two. */
	assert_int_equal(blkstate_split(folio, pieces, 3), -EINVAL);
	/* The folio as its own piece. */
	memcpy(shape, pieces, sizeof(shape));
	shape[3] = folio;
	assert_int_equal(blkstate_split(folio, shape, 4), -EINVAL);
	/* A piece that is already dirty. */
	shape[3] = pieces[0];
	blkstate_set_dirty(pieces[0], 0, 1);
	assert_int_equal(blkstate_split(folio, shape, 4), -EINVAL);

	assert_int_equal(blkstate_count_dirty(folio), 3);
	assert_true(blkstate_check(folio));
	assert_int_equal(blkstate_live(), 1);
	rmfolio(folio);
	for (i = 0; i < 4; i++)
		rmfolio(pieces[i]);
}

/* ---- Concurrency --------------------------------------------------------- */

struct completer {
	struct folio	*folio;
	unsigned int	parity;
	pthread_barrier_t *start;
};

static void *complete_blocks(void *arg)
{
	struct completer *c = arg;
	unsigned int nr = folio_nr_blocks(c->folio), b;

	fs_rcu_register_thread();
	pthread_barrier_wait(c->start);
	for (b = c->parity; b < nr; b += 2)
		blkstate_set_uptodate(c->folio, (size_t)b * 4096, 4096);
	fs_rcu_unregister_thread();
	return NULL;
}

/*
 * Read completions of one folio run at once (the folio lock is held for
 * the I/O): exactly one of them must see the last block land, so the folio
 * always ends up uptodate with counts that match.
 */
static void test_concurrent_read_completions(void **state)
{
	pthread_barrier_t start;
	int round;

	(void)state;
	pthread_barrier_init(&start, NULL, 2);
	for (round = 0; round < 200; round++) {
		struct folio *folio = mkfolio(6, PAGE_SHIFT);
		struct completer c[2];
		pthread_t t[2];
		int i;

		assert_int_equal(blkstate_attach(folio), 0);
		for (i = 0; i < 2; i++) {
			c[i] = (struct completer){ folio, (unsigned int)i,
						   &start };
			assert_int_equal(pthread_create(&t[i], NULL,
					 complete_blocks, &c[i]), 0);
		}
		for (i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		assert_true(folio_test_uptodate(folio));
		assert_true(blkstate_check(folio));
		rmfolio(folio);
	}
	pthread_barrier_destroy(&start);
}

struct tester {
	struct folio	*folio;
	int		stop;		/* atomic */
	long		tests;
	long		wrong;		/* atomic */
};

static void *test_while_released(void *arg)
{
	struct tester *t = arg;
	size_t size = folio_size(t->folio);

	fs_rcu_register_thread();
	while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE)) {
		/* Nothing is uptodate, dirty or reserved, in either form;
		 * these look into the blkstate whenever there is one. */
		if (blkstate_test_uptodate(t->folio, 0, size) ||
		    blkstate_count_dirty(t->folio) != 0 ||
		    blkstate_count_reserved(t->folio, 0, size) != 0)
			__atomic_add_fetch(&t->wrong, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&t->tests, 1, __ATOMIC_RELAXED);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/*
 * Testers need only a reference: the blkstate they look at may be released
 * under them, and is freed only after a grace period (ASan would see an
 * early free).
 */
static void test_testers_race_release(void **state)
{
	struct folio *folio = mkfolio(2, PAGE_SHIFT);
	struct tester t = { .folio = folio };
	pthread_t thread;
	int i;

	(void)state;
	assert_int_equal(pthread_create(&thread, NULL, test_while_released,
					&t), 0);
	/* Until both sides have done plenty while the other ran. */
	for (i = 0; i < 5000 ||
		    __atomic_load_n(&t.tests, __ATOMIC_RELAXED) < 5000; i++) {
		assert_int_equal(blkstate_attach(folio), 0);
		assert_int_equal(blkstate_release(folio), 0);
	}
	__atomic_store_n(&t.stop, 1, __ATOMIC_RELEASE);
	pthread_join(thread, NULL);
	assert_true(__atomic_load_n(&t.tests, __ATOMIC_RELAXED) >= 5000);
	assert_int_equal(__atomic_load_n(&t.wrong, __ATOMIC_RELAXED), 0);
	rmfolio(folio);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_teardown(fn, check_nothing_live)
		T(test_single_block_has_no_blkstate),
		T(test_attach_and_release),
		T(test_attach_failure),
		T(test_attach_from_flags),
		T(test_uptodate_partial_blocks),
		T(test_dirty_partial_blocks),
		T(test_reserved_partial_blocks),
		T(test_out_of_range_is_empty),
		T(test_dirty_runs_small),
		T(test_dirty_runs_across_words),
		T(test_release_refused),
		T(test_split_to_order1),
		T(test_split_to_order2_preattached),
		T(test_split_to_order0_flags),
		T(test_split_small_blocks),
		T(test_split_flag_form),
		T(test_split_enomem_changes_nothing),
		T(test_split_bad_shape),
		T(test_concurrent_read_completions),
		T(test_testers_race_release),
#undef T
	};
	int failed;

	fs_rcu_register_thread();
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	if (folio_pool_exit() != 0)
		failed++;
	fs_rcu_unregister_thread();
	return failed ? 1 : 0;
}
