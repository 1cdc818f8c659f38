/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_space.c - the block allocator: placement near the goal, one extent
 * for a run of max blocks, fragmentation and min/max, ENOSPC exactly at the
 * boundary, frees held until their commit is done, reservations (law 7)
 * taken without the allocator mutex and never failing once made, the
 * serialized map and its validation, refused double frees, and a 2^28-block
 * volume that allocates without full scans. A random test checks every
 * allocation against a reference model of the placement policy.
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
#include <time.h>

#include <cmocka.h>

#include "space.h"

#define BS	4096U

/* ---- Helpers ---------------------------------------------------------- */

static struct space *mk(uint64_t nr_blocks, uint64_t meta_start,
			uint64_t meta_len)
{
	struct space *sp = space_create(nr_blocks, BS, meta_start, meta_len);

	assert_false(IS_ERR_OR_NULL(sp));
	return sp;
}

static struct space_stats stats(struct space *sp)
{
	struct space_stats st;

	space_stats(sp, &st);
	return st;
}

/* The accounting identities, with nothing in flight. */
static void assert_consistent(struct space *sp)
{
	struct space_stats st = stats(sp);

	assert_int_equal(st.free + st.allocated + st.pending, st.usable);
	assert_true(st.reserved <= st.free);
	assert_int_equal(st.avail, (int64_t)(st.free - st.reserved));
	assert_int_equal(space_check(sp), 0);
}

static void assert_alloc(struct space *sp, uint64_t goal, uint64_t min,
			 uint64_t max, uint64_t want_start, long want_n)
{
	uint64_t start = ~0ULL;
	long n = space_alloc(sp, goal, min, max, &start);

	assert_int_equal(n, want_n);
	assert_int_equal(start, want_start);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
	/* xorshift64* */
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t rnd_below(uint64_t n)
{
	return rnd() % n;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Geometry --------------------------------------------------------- */

static void test_create_geometry(void **state)
{
	static const unsigned int good[] = { 512, 1024, 4096, 65536 };
	static const unsigned int bad[] = { 0, 256, 511, 3000, 4095, 131072 };
	struct space *sp;
	struct space_stats st;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		sp = space_create(1000, good[i], 0, 1);
		assert_false(IS_ERR_OR_NULL(sp));
		assert_int_equal(stats(sp).block_size, good[i]);
		space_destroy(sp);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(PTR_ERR(space_create(1000, bad[i], 0, 1)),
				 -EINVAL);
	assert_int_equal(PTR_ERR(space_create(0, BS, 0, 0)), -EINVAL);
	assert_int_equal(PTR_ERR(space_create(SPACE_MAX_BLOCKS + 1, BS, 0, 0)),
			 -EINVAL);
	/* Metadata outside the volume. */
	assert_int_equal(PTR_ERR(space_create(1000, BS, 1000, 1)), -EINVAL);
	assert_int_equal(PTR_ERR(space_create(1000, BS, 990, 11)), -EINVAL);

	sp = mk(1000, 990, 10);
	st = stats(sp);
	assert_int_equal(st.nr_blocks, 1000);
	assert_int_equal(st.meta, 10);
	assert_int_equal(st.usable, 990);
	assert_int_equal(st.free, 990);
	assert_int_equal(st.allocated, 0);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.reserved, 0);
	assert_int_equal(st.longest, 990);
	assert_int_equal(st.commit_seq, 1);
	assert_consistent(sp);
	space_destroy(sp);

	/* All metadata: nothing to allocate or reserve. */
	sp = mk(64, 0, 64);
	assert_alloc(sp, 0, 1, 1, ~0ULL, -ENOSPC);
	assert_int_equal(space_reserve(sp, 1), -ENOSPC);
	assert_consistent(sp);
	space_destroy(sp);
}

/* ---- Placement -------------------------------------------------------- */

static void test_alloc_near_goal(void **state)
{
	struct space *sp = mk(100000, 0, 16);
	uint64_t start;

	(void)state;
	/* Exactly at a free goal. */
	assert_alloc(sp, 5000, 1, 8, 5000, 8);
	/* Goal taken: the first place after it. */
	assert_alloc(sp, 5000, 1, 8, 5008, 8);
	assert_alloc(sp, 5003, 1, 1, 5016, 1);
	/* Goal in the metadata. */
	assert_alloc(sp, 3, 1, 4, 16, 4);
	/* Goal past the end means 0. */
	assert_alloc(sp, 1ULL << 40, 1, 4, 20, 4);
	/* No room after the goal: wrap to the first fit before it. */
	assert_alloc(sp, 100000 - 4, 1, 8, 24, 8);
	/* A run straddling the goal starts at the goal, not before it. */
	assert_alloc(sp, 7001, 1, 2, 7001, 2);
	/* A free run just after the goal word, across a word boundary. */
	assert_int_equal(space_mark_used(sp, 6000, 63), 0);	/* to 6062 */
	assert_alloc(sp, 6000, 3, 3, 6063, 3);
	/* Bad arguments. */
	assert_int_equal(space_alloc(sp, 0, 0, 1, &start), -EINVAL);
	assert_int_equal(space_alloc(sp, 0, 2, 1, &start), -EINVAL);
	assert_consistent(sp);
	space_destroy(sp);
}

static void test_max_runs_contiguous(void **state)
{
	/* Three summary levels; the writes cross word, level-1 (4096) and
	 * level-2 (262144) boundaries. */
	const uint64_t nr = 1ULL << 20;
	struct space *sp = mk(nr, 0, 1);
	uint64_t goal = 262144 - 3 * 512 - 100, start = 0;
	long n;

	(void)state;
	assert_int_equal(space_mark_used(sp, 1, goal - 1), 0);
	for (int i = 0; i < 64; i++) {
		n = space_alloc(sp, goal, 1, 512, &start);
		assert_int_equal(n, 512);
		/* Each extent follows the last: one file, written in order. */
		assert_int_equal(start, goal);
		goal = start + (uint64_t)n;
	}
	assert_consistent(sp);
	space_destroy(sp);

	/*
	 * A fragmented volume: every 1000 blocks a 100-block hole, and one
	 * hole of 512 far from the goal. A large folio gets the 512 hole as
	 * one extent rather than five pieces near the goal.
	 */
	sp = mk(nr, 0, 0);
	for (uint64_t b = 0; b < nr; b += 1000)
		assert_int_equal(space_mark_used(sp, b, nr - b < 900 ? nr - b : 900), 0);
	/* Open the 512 hole near the end: free part of a used stretch. */
	assert_int_equal(stats(sp).longest, 100);
	assert_int_equal(space_free(sp, 900100, 512), 0);
	assert_int_equal(space_commit_done(sp, space_commit_begin(sp)), 512);
	assert_int_equal(stats(sp).longest, 512);
	assert_alloc(sp, 0, 1, 512, 900100, 512);
	/* Now the longest run is 100: a request for 512 with min 1 gets the
	 * longest run at the first place after the goal. */
	assert_alloc(sp, 0, 1, 512, 900, 100);
	/* min above the longest run: ENOSPC, nothing changes. */
	{
		struct space_stats before = stats(sp);

		assert_alloc(sp, 0, 101, 512, ~0ULL, -ENOSPC);
		assert_int_equal(stats(sp).free, before.free);
		assert_int_equal(stats(sp).avail, before.avail);
	}
	assert_consistent(sp);
	space_destroy(sp);
}

static void test_fragmentation(void **state)
{
	const uint64_t nr = 8192;
	struct space *sp = mk(nr, 0, 0);
	uint64_t start;

	(void)state;
	/* Allocate the first half block by block, each at its goal. */
	for (uint64_t b = 0; b < nr / 2; b++)
		assert_alloc(sp, b, 1, 1, b, 1);
	/* Free the odd blocks: every other block is in use. */
	for (uint64_t b = 1; b < nr / 2; b += 2)
		assert_int_equal(space_free(sp, b, 1), 0);
	assert_int_equal(space_commit_done(sp, space_commit_begin(sp)),
			 (long)nr / 4);
	assert_consistent(sp);

	/* Two contiguous: the next fitting run, the checkerboard's last free
	 * block (4095) and the first of the free half. */
	assert_alloc(sp, 0, 2, 2, nr / 2 - 1, 2);
	assert_alloc(sp, 10, 1, 2, nr / 2 + 1, 2);
	/* Fill the second half, then checkerboard it too. */
	while (space_alloc(sp, nr / 2, 1, 64, &start) > 0 && start >= nr / 2)
		;
	/* The loop ended on the first single block of the first half. */
	assert_int_equal(start, 1);
	assert_int_equal(space_free(sp, 1, 1), 0);
	for (uint64_t b = nr / 2 + 1; b < nr; b += 2)
		assert_int_equal(space_free(sp, b, 1), 0);
	assert_int_equal(space_commit_done(sp, space_commit_begin(sp)),
			 (long)nr / 4 + 1);
	assert_int_equal(stats(sp).longest, 1);

	/* No run of 2 anywhere: min 2 fails, min 1 gets one block at the
	 * first free block after the goal. */
	assert_alloc(sp, 10, 2, 2, ~0ULL, -ENOSPC);
	assert_alloc(sp, 10, 1, 2, 11, 1);
	assert_alloc(sp, 10, 1, 512, 13, 1);
	assert_consistent(sp);
	space_destroy(sp);
}

/* ---- ENOSPC, commits, reservations ------------------------------------ */

static void test_enospc_at_boundary(void **state)
{
	struct space *sp = mk(1000, 0, 10);	/* usable 990 */
	struct space_stats st, before;
	uint64_t start;

	(void)state;
	assert_alloc(sp, 0, 500, 500, 10, 500);
	assert_int_equal(space_free(sp, 10, 100), 0);		/* pending */
	/* allocated 400 + pending 100 + reserved 490 == 990 exactly. */
	assert_int_equal(space_reserve(sp, 491), -ENOSPC);
	assert_int_equal(space_reserve(sp, 490), 0);
	st = stats(sp);
	assert_int_equal(st.allocated + st.pending + st.reserved, st.usable);
	assert_int_equal(st.free, 490);
	assert_int_equal(st.avail, 0);

	before = st;
	assert_int_equal(space_reserve(sp, 1), -ENOSPC);
	assert_alloc(sp, 0, 1, 1, ~0ULL, -ENOSPC);
	assert_int_equal(space_mark_used(sp, 600, 1), -ENOSPC);
	st = stats(sp);
	assert_int_equal(st.free, before.free);
	assert_int_equal(st.reserved, before.reserved);
	assert_int_equal(st.avail, 0);

	/* One block back, one block in. */
	assert_int_equal(space_unreserve(sp, 1), 0);
	assert_alloc(sp, 0, 1, 8, 510, 1);
	assert_int_equal(space_reserve(sp, 1), -ENOSPC);
	/* Reserved blocks still allocate, all of them. */
	assert_int_equal(space_alloc_reserved(sp, 0, 1, 400, &start), 400);
	assert_int_equal(start, 511);
	assert_int_equal(space_alloc_reserved(sp, 0, 1, 89, &start), 89);
	assert_int_equal(start, 911);
	assert_int_equal(stats(sp).reserved, 0);
	assert_int_equal(stats(sp).free, 0);
	/* The pending 100 come back after their commit, exactly. */
	assert_int_equal(space_commit_done(sp, space_commit_begin(sp)), 100);
	assert_int_equal(space_reserve(sp, 101), -ENOSPC);
	assert_int_equal(space_reserve(sp, 100), 0);
	assert_int_equal(space_unreserve(sp, 100), 0);
	assert_consistent(sp);
	space_destroy(sp);
}

static void test_free_reused_only_after_commit(void **state)
{
	struct space *sp = mk(256, 0, 0);
	uint64_t seq, seq2;
	struct space_stats st;

	(void)state;
	assert_alloc(sp, 0, 256, 256, 0, 256);
	assert_int_equal(space_free(sp, 10, 4), 0);
	assert_int_equal(space_free(sp, 14, 6), 0);	/* merges */
	st = stats(sp);
	assert_int_equal(st.pending, 10);
	assert_int_equal(st.pending_extents, 1);
	assert_int_equal(st.free, 0);
	/* Not reusable, not reservable. */
	assert_alloc(sp, 0, 1, 1, ~0ULL, -ENOSPC);
	assert_int_equal(space_reserve(sp, 1), -ENOSPC);

	seq = space_commit_begin(sp);
	assert_int_equal(seq, 1);
	/* Still not, while the commit is being written. */
	assert_alloc(sp, 0, 1, 1, ~0ULL, -ENOSPC);
	/* A free after begin belongs to the next commit. */
	assert_int_equal(space_free(sp, 100, 5), 0);
	assert_int_equal(stats(sp).pending_extents, 2);

	assert_int_equal(space_commit_done(sp, seq), 10);
	assert_alloc(sp, 0, 1, 64, 10, 10);
	/* 100..104 are still pending. */
	assert_alloc(sp, 0, 1, 1, ~0ULL, -ENOSPC);
	/* Done again, or for an older commit: nothing. */
	assert_int_equal(space_commit_done(sp, seq), 0);
	assert_int_equal(space_commit_done(sp, 0), 0);
	/* A commit that never began. */
	assert_int_equal(space_commit_done(sp, seq + 1), -EINVAL);
	assert_int_equal(stats(sp).pending, 5);

	seq2 = space_commit_begin(sp);
	assert_int_equal(seq2, 2);
	assert_int_equal(space_commit_done(sp, seq2), 5);
	assert_alloc(sp, 0, 1, 64, 100, 5);
	st = stats(sp);
	assert_int_equal(st.done_seq, 2);
	assert_int_equal(st.commit_seq, 3);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.pending_extents, 0);
	assert_consistent(sp);
	space_destroy(sp);
}

static void test_commit_covers_earlier_commits(void **state)
{
	struct space *sp = mk(1000, 0, 0);
	uint64_t s1, s2, s3;

	(void)state;
	assert_alloc(sp, 0, 300, 300, 0, 300);
	assert_int_equal(space_free(sp, 0, 10), 0);
	s1 = space_commit_begin(sp);
	assert_int_equal(space_free(sp, 100, 20), 0);
	s2 = space_commit_begin(sp);
	assert_int_equal(space_free(sp, 200, 30), 0);
	s3 = space_commit_begin(sp);
	assert_true(s1 < s2 && s2 < s3);
	/* Commit 2 durable implies commit 1 durable. */
	assert_int_equal(space_commit_done(sp, s2), 30);
	assert_int_equal(stats(sp).pending, 30);
	assert_int_equal(space_commit_done(sp, s1), 0);
	assert_int_equal(space_commit_done(sp, s3), 30);
	assert_consistent(sp);
	space_destroy(sp);
}

static void test_reserve_accounting(void **state)
{
	struct space *sp = mk(10000, 0, 100);	/* usable 9900 */
	struct space_stats st;
	uint64_t locked;

	(void)state;
	assert_int_equal(space_reserve(sp, 0), 0);
	assert_int_equal(space_reserve(sp, 100), 0);
	assert_int_equal(space_reserve(sp, 50), 0);
	st = stats(sp);
	assert_int_equal(st.reserved, 150);
	assert_int_equal(st.free, 9900);
	assert_int_equal(st.avail, 9750);
	assert_int_equal(space_unreserve(sp, 30), 0);
	assert_int_equal(stats(sp).reserved, 120);
	/* More than is reserved: a caller bug, refused, nothing changes. */
	assert_int_equal(space_unreserve(sp, 121), -EINVAL);
	st = stats(sp);
	assert_int_equal(st.reserved, 120);
	assert_int_equal(st.avail, 9780);

	/* Reservations never take the allocator mutex. */
	locked = stats(sp).nr_locked;
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(space_reserve(sp, 3), 0);
		assert_int_equal(space_unreserve(sp, 3), 0);
	}
	assert_int_equal(stats(sp).nr_locked, locked + 1);	/* stats' own */

	/* Plain allocations do not eat into reservations. */
	assert_int_equal(space_reserve(sp, 9780 - 10), 0);
	assert_alloc(sp, 0, 1, 100, 100, 10);
	assert_alloc(sp, 0, 1, 1, ~0ULL, -ENOSPC);
	/* They turn into allocations one for one. */
	{
		uint64_t start;

		assert_int_equal(space_alloc_reserved(sp, 0, 1, 9890, &start),
				 9890);
		assert_int_equal(start, 110);
	}
	st = stats(sp);
	assert_int_equal(st.reserved, 0);
	assert_int_equal(st.free, 0);
	assert_int_equal(st.allocated, 9900);
	assert_consistent(sp);
	space_destroy(sp);
}

struct reserver {
	struct space	*sp;
	long		done;
};

static void *reserver_fn(void *arg)
{
	struct reserver *r = arg;

	for (int i = 0; i < 1000; i++) {
		if (space_reserve(r->sp, 2) == 0 &&
		    space_unreserve(r->sp, 2) == 0)
			r->done++;
	}
	return NULL;
}

static void test_reserve_while_mutex_held(void **state)
{
	struct space *sp = mk(10000, 0, 0);
	struct reserver r = { sp, 0 };
	struct timespec ts;
	pthread_t t;
	int err;

	(void)state;
	/* Another thread holds the allocator mutex (an allocation that takes
	 * long); writers must still reserve. */
	space_test_lock(sp);
	assert_int_equal(pthread_create(&t, NULL, reserver_fn, &r), 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 30;
	err = pthread_timedjoin_np(t, NULL, &ts);
	space_test_unlock(sp);
	if (err)
		pthread_join(t, NULL);
	assert_int_equal(err, 0);
	assert_int_equal(r.done, 1000);
	assert_consistent(sp);
	space_destroy(sp);
}

static void test_alloc_reserved_never_enospc(void **state)
{
	const uint64_t nr = 4096;
	struct space *sp = mk(nr, 0, 0);
	uint64_t start, got = 0, prev = 0;
	long n;

	(void)state;
	/* A checkerboard: 2048 free blocks, no two adjacent. */
	for (uint64_t b = 0; b < nr; b += 2)
		assert_int_equal(space_mark_used(sp, b, 1), 0);
	assert_int_equal(space_reserve(sp, 2048), 0);
	assert_int_equal(space_reserve(sp, 1), -ENOSPC);
	/* Everything free is promised: plain allocations fail... */
	assert_alloc(sp, 0, 1, 1, ~0ULL, -ENOSPC);
	/* ...and more than is reserved is a caller bug. */
	assert_int_equal(space_alloc_reserved(sp, 0, 1, 2049, &start), -EINVAL);
	assert_int_equal(stats(sp).reserved, 2048);

	/* Asking for 8 contiguous with min 8 cannot be met: shorter runs,
	 * never ENOSPC, until the reservation is used up. */
	while (got < 2048) {
		uint64_t want = 2048 - got < 8 ? 2048 - got : 8;

		n = space_alloc_reserved(sp, prev, want, want, &start);
		assert_int_equal(n, 1);
		assert_int_equal(start % 2, 1);
		assert_true(start >= prev);
		prev = start;
		got += (uint64_t)n;
		assert_int_equal(stats(sp).reserved, 2048 - got);
	}
	assert_int_equal(stats(sp).free, 0);
	assert_int_equal(stats(sp).allocated, nr);
	assert_consistent(sp);
	space_destroy(sp);
}

/* ---- Frees that are bugs ---------------------------------------------- */

static void test_double_free_refused(void **state)
{
	struct space *sp = mk(1000, 0, 10);
	struct space_stats before, after;

	(void)state;
	assert_alloc(sp, 100, 10, 10, 100, 10);
	assert_int_equal(space_free(sp, 100, 10), 0);
	before = stats(sp);

	/* Twice: the blocks are pending. */
	assert_int_equal(space_free(sp, 100, 10), -EINVAL);
	assert_int_equal(space_free(sp, 105, 1), -EINVAL);
	/* Partly pending, partly allocated: none of it is freed. */
	assert_alloc(sp, 110, 5, 5, 110, 5);
	before = stats(sp);
	assert_int_equal(space_free(sp, 108, 4), -EINVAL);
	/* Partly allocated, partly free. */
	assert_int_equal(space_free(sp, 113, 4), -EINVAL);
	/* Never allocated. */
	assert_int_equal(space_free(sp, 500, 1), -EINVAL);
	/* Metadata. */
	assert_int_equal(space_free(sp, 5, 1), -EINVAL);
	/* Outside the volume, or empty. */
	assert_int_equal(space_free(sp, 999, 2), -EINVAL);
	assert_int_equal(space_free(sp, 1000, 1), -EINVAL);
	assert_int_equal(space_free(sp, 110, 0), -EINVAL);
	after = stats(sp);
	assert_int_equal(after.allocated, before.allocated);
	assert_int_equal(after.pending, before.pending);
	assert_int_equal(after.pending_extents, before.pending_extents);
	assert_int_equal(after.free, before.free);
	assert_consistent(sp);

	/* After the commit they are free: freeing them is still a bug. */
	assert_int_equal(space_commit_done(sp, space_commit_begin(sp)), 10);
	assert_int_equal(space_free(sp, 100, 10), -EINVAL);
	/* The 5 still allocated free fine. */
	assert_int_equal(space_free(sp, 110, 5), 0);
	assert_consistent(sp);
	space_destroy(sp);
}

static void test_free_enomem_changes_nothing(void **state)
{
	struct space *sp = mk(100000, 0, 0);
	struct space_stats before, after;

	(void)state;
	assert_alloc(sp, 0, 1, 70000, 0, 70000);
	before = stats(sp);
	/* The extent, then the first and the second pending page (the range
	 * spans two 32768-block chunks), fail. */
	for (int i = 0; i < 3; i++) {
		space_fail_alloc(sp, i, 1);
		assert_int_equal(space_free(sp, 30000, 5000), -ENOMEM);
		space_fail_alloc(sp, 0, 0);
		after = stats(sp);
		assert_int_equal(after.allocated, before.allocated);
		assert_int_equal(after.pending, 0);
		assert_int_equal(after.pending_extents, 0);
		assert_consistent(sp);
	}
	assert_int_equal(space_free(sp, 30000, 5000), 0);
	assert_int_equal(stats(sp).pending, 5000);
	assert_consistent(sp);
	assert_int_equal(space_commit_done(sp, space_commit_begin(sp)), 5000);
	assert_consistent(sp);
	space_destroy(sp);
}

static void test_mark_used_replay(void **state)
{
	struct space *sp = mk(5000, 0, 8);
	struct space_stats st;

	(void)state;
	assert_int_equal(space_mark_used(sp, 100, 50), 0);
	assert_int_equal(space_mark_used(sp, 4990, 10), 0);
	st = stats(sp);
	assert_int_equal(st.allocated, 60);
	assert_int_equal(st.free, 5000 - 8 - 60);
	/* The log and the map disagree: refused, nothing changes. */
	assert_int_equal(space_mark_used(sp, 140, 20), -EEXIST);
	assert_int_equal(space_mark_used(sp, 0, 1), -EEXIST);	/* meta */
	assert_int_equal(space_free(sp, 100, 10), 0);
	assert_int_equal(space_mark_used(sp, 100, 1), -EEXIST);	/* pending */
	assert_int_equal(space_mark_used(sp, 4999, 2), -EINVAL);
	assert_int_equal(space_mark_used(sp, 10, 0), -EINVAL);
	assert_int_equal(stats(sp).allocated, 50);
	assert_true(space_mark_used(sp, 150, 1) == 0);
	assert_consistent(sp);
	space_destroy(sp);
}

static void test_check_catches_corruption(void **state)
{
	struct space *sp = mk(300000, 0, 0);

	(void)state;
	assert_int_equal(space_check(sp), 0);
	assert_int_equal(space_mark_used(sp, 1000, 5000), 0);
	/* A bit changed behind the summaries' back. */
	space_test_flip(sp, 3000);
	assert_int_equal(space_check(sp), -EUCLEAN);
	space_test_flip(sp, 3000);
	assert_int_equal(space_check(sp), 0);
	space_test_flip(sp, 299999);
	assert_int_equal(space_check(sp), -EUCLEAN);
	space_test_flip(sp, 299999);
	assert_int_equal(space_check(sp), 0);
	space_destroy(sp);
}

/* ---- Serialization ---------------------------------------------------- */

static uint64_t le64_at(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void test_serialize_roundtrip(void **state)
{
	const uint64_t nr = 100003;	/* not a multiple of 64 */
	struct space *sp = mk(nr, 0, 37), *sp2;
	size_t size = space_serialized_size(sp);
	unsigned char *buf = malloc(size), *buf2 = malloc(size + 8);
	struct space_stats st, st2;
	uint64_t s1, s2;
	int start_or_exist;

	(void)state;
	assert_non_null(buf);
	assert_non_null(buf2);
	assert_int_equal(size, SPACE_HEADER_SIZE + DIV_ROUND_UP(nr, 64) * 8);
	for (int i = 0; i < 300; i++) {
		uint64_t start;

		assert_true(space_alloc(sp, rnd_below(nr), 1, 1 + rnd_below(40),
					&start) > 0);
		if (i % 3 == 0)
			assert_int_equal(space_free(sp, start, 1), 0);
		if (i == 200)
			space_commit_done(sp, space_commit_begin(sp));
	}
	/* The last block in use (it may be already). */
	start_or_exist = space_mark_used(sp, nr - 1, 1);
	assert_true(start_or_exist == 0 || start_or_exist == -EEXIST);
	st = stats(sp);
	assert_true(st.pending > 0);

	assert_int_equal(space_serialize(sp, buf, size - 1), -ENOBUFS);
	assert_int_equal(space_serialize(sp, buf, size), (long)size);
	/* The documented header. */
	assert_memory_equal(buf, "FFSPACE1", 8);
	assert_int_equal(le64_at(buf), SPACE_MAGIC);
	assert_int_equal(buf[8], SPACE_FORMAT_VERSION);
	assert_int_equal(buf[12], 12);				/* 4096 */
	assert_int_equal(le64_at(buf + 16), nr);
	assert_int_equal(le64_at(buf + 24), st.meta + st.allocated + st.pending);
	/* Little-endian words, bit b of the map at byte b / 8, bit b % 8. */
	for (uint64_t b = 0; b < 37; b++)
		assert_true(buf[SPACE_HEADER_SIZE + b / 8] & (1 << (b % 8)));
	assert_true(buf[SPACE_HEADER_SIZE + (nr - 1) / 8] & (1 << ((nr - 1) % 8)));
	/* No padding bits. */
	for (uint64_t b = nr; b < DIV_ROUND_UP(nr, 64) * 64; b++)
		assert_false(buf[SPACE_HEADER_SIZE + b / 8] & (1 << (b % 8)));

	/* Round trip: pending frees come back as allocated. */
	sp2 = mk(nr, 0, 37);
	assert_int_equal(space_load(sp2, buf, size), 0);
	st2 = stats(sp2);
	assert_int_equal(st2.allocated, st.allocated + st.pending);
	assert_int_equal(st2.free, st.free);
	assert_int_equal(st2.longest, st.longest);
	assert_consistent(sp2);
	assert_int_equal(space_serialize(sp2, buf2, size + 8), (long)size);
	assert_memory_equal(buf, buf2, size);
	/* Same map, same placement. */
	for (int i = 0; i < 50; i++) {
		uint64_t goal = rnd_below(nr), max = 1 + rnd_below(64);
		long n1 = space_alloc(sp, goal, 1, max, &s1);
		long n2 = space_alloc(sp2, goal, 1, max, &s2);

		assert_int_equal(n1, n2);
		assert_int_equal(s1, s2);
	}
	/* A volume with allocations refuses a load. */
	assert_int_equal(space_load(sp2, buf, size), -EBUSY);
	space_destroy(sp2);
	space_destroy(sp);
	free(buf2);
	free(buf);
}

static void test_load_rejects_bad_maps(void **state)
{
	const uint64_t nr = 1000;
	struct space *sp = mk(nr, 0, 4), *sp2 = mk(nr, 0, 4);
	size_t size = space_serialized_size(sp);
	unsigned char *good = malloc(size), *bad = malloc(size);
	uint64_t start;

	(void)state;
	assert_int_equal(space_alloc(sp, 100, 10, 10, &start), 10);
	assert_int_equal(space_serialize(sp, good, size), (long)size);

#define TRY(mutate, err) do {						\
		memcpy(bad, good, size);				\
		mutate;							\
		assert_int_equal(space_load(sp2, bad, size), err);	\
		assert_int_equal(stats(sp2).allocated, 0);		\
		assert_int_equal(stats(sp2).free, nr - 4);		\
	} while (0)
	TRY(bad[0] ^= 1, -EINVAL);				/* magic */
	TRY(bad[8] = 2, -EINVAL);				/* version */
	TRY(bad[12] = 9, -EINVAL);				/* block size */
	TRY(bad[16] ^= 1, -EINVAL);				/* nr_blocks */
	TRY(bad[24] ^= 1, -EINVAL);				/* nr_used */
	/* A padding bit (block 1000 is past the end), nr_used adjusted. */
	TRY((bad[SPACE_HEADER_SIZE + 1000 / 8] |= 1 << (1000 % 8), bad[24]++),
	    -EINVAL);
	/* Metadata not in use, nr_used adjusted. */
	TRY((bad[SPACE_HEADER_SIZE] &= (unsigned char)~1, bad[24]--), -EINVAL);
	/* A torn map: one bit flipped without the count. */
	TRY(bad[SPACE_HEADER_SIZE + 50] ^= 0x10, -EINVAL);
	/* Short. */
	assert_int_equal(space_load(sp2, good, size - 1), -EINVAL);
	/* Out of memory. */
	space_fail_alloc(sp2, 0, 1);
	assert_int_equal(space_load(sp2, good, size), -ENOMEM);
	space_fail_alloc(sp2, 0, 0);
	assert_int_equal(stats(sp2).allocated, 0);
	/* A reservation makes it busy, too. */
	assert_int_equal(space_reserve(sp2, 1), 0);
	assert_int_equal(space_load(sp2, good, size), -EBUSY);
	assert_int_equal(space_unreserve(sp2, 1), 0);
	assert_int_equal(space_load(sp2, good, size), 0);
	assert_int_equal(stats(sp2).allocated, 10);
	assert_consistent(sp2);
#undef TRY
	space_destroy(sp2);
	space_destroy(sp);
	free(bad);
	free(good);
}

/* ---- A reference model of the placement policy ------------------------ */

enum { M_FREE, M_USED, M_PENDING };

struct model {
	uint64_t	nr;
	unsigned char	*st;
	uint64_t	*seq;		/* commit of a pending block */
	uint64_t	free, allocated, pending, reserved;
	uint64_t	open_seq;
};

static int64_t model_first_fit(struct model *m, uint64_t from, uint64_t n)
{
	uint64_t run = 0;

	for (uint64_t b = from; b < m->nr; b++) {
		run = m->st[b] == M_FREE ? run + 1 : 0;
		if (run == n)
			return (int64_t)(b + 1 - n);
	}
	return -1;
}

static uint64_t model_longest(struct model *m)
{
	uint64_t run = 0, best = 0;

	for (uint64_t b = 0; b < m->nr; b++) {
		run = m->st[b] == M_FREE ? run + 1 : 0;
		if (run > best)
			best = run;
	}
	return best;
}

/* space.h's policy, the slow way. */
static long model_alloc(struct model *m, uint64_t goal, uint64_t min,
			uint64_t max, bool reserved, uint64_t *start)
{
	uint64_t want, avail = m->free - m->reserved;
	int64_t s;

	if (!reserved) {
		if (avail < min)
			return -ENOSPC;
		if (max > avail)
			max = avail;
	}
	if (goal >= m->nr)
		goal = 0;
	s = model_first_fit(m, goal, max);
	if (s < 0)
		s = model_first_fit(m, 0, max);
	if (s >= 0) {
		want = max;
	} else {
		want = model_longest(m);
		if (want < min && !(reserved && want > 0))
			return -ENOSPC;
		s = model_first_fit(m, goal, want);
		if (s < 0)
			s = model_first_fit(m, 0, want);
	}
	for (uint64_t b = (uint64_t)s; b < (uint64_t)s + want; b++)
		m->st[b] = M_USED;
	m->free -= want;
	m->allocated += want;
	if (reserved)
		m->reserved -= want;
	*start = (uint64_t)s;
	return (long)want;
}

struct owned {
	uint64_t start, n;
};

static void test_random_against_model(void **state)
{
	/* Three summary levels, partial nodes at the end of each. */
	const uint64_t nr = 270017, meta_start = 1000, meta_len = 100;
	struct space *sp = mk(nr, meta_start, meta_len);
	struct model m = { .nr = nr, .open_seq = 1 };
	struct owned *own = calloc(nr, sizeof(*own));
	size_t nown = 0;
	uint64_t done_seq = 0;
	const int ops = 3000;

	(void)state;
	m.st = calloc(nr, 1);
	m.seq = calloc(nr, sizeof(*m.seq));
	assert_non_null(m.st);
	assert_non_null(m.seq);
	assert_non_null(own);
	memset(m.st + meta_start, M_USED, meta_len);
	m.free = nr - meta_len;

	for (int i = 0; i < ops; i++) {
		unsigned int op = (unsigned int)rnd_below(100);
		uint64_t start = 0, mstart = 0;

		if (op < 45) {
			/* Allocate, reserved or not; sizes up to a large
			 * folio and beyond. */
			bool res = op < 15;
			uint64_t max = 1 + rnd_below(rnd_below(4) ? 64 : 700);
			uint64_t min = 1 + rnd_below(max);
			uint64_t goal = rnd_below(nr + nr / 50);
			long n, mn;

			if (res && space_reserve(sp, max) != 0) {
				assert_true(m.free - m.reserved < max);
				continue;
			}
			if (res)
				m.reserved += max;
			n = res ? space_alloc_reserved(sp, goal, min, max, &start)
				: space_alloc(sp, goal, min, max, &start);
			mn = model_alloc(&m, goal, min, max, res, &mstart);
			assert_int_equal(n, mn);
			if (n < 0)
				continue;
			assert_int_equal(start, mstart);
			if (res && (uint64_t)n < max) {
				assert_int_equal(space_unreserve(sp, max - (uint64_t)n), 0);
				m.reserved -= max - (uint64_t)n;
			}
			own[nown++] = (struct owned){ start, (uint64_t)n };
		} else if (op < 80 && nown) {
			/* Free all or the head of an owned extent. */
			size_t k = rnd_below(nown);
			uint64_t n = rnd_below(2) ? own[k].n : 1 + rnd_below(own[k].n);

			assert_int_equal(space_free(sp, own[k].start, n), 0);
			for (uint64_t b = own[k].start; b < own[k].start + n; b++) {
				m.st[b] = M_PENDING;
				m.seq[b] = m.open_seq;
			}
			m.allocated -= n;
			m.pending += n;
			own[k].start += n;
			own[k].n -= n;
			if (!own[k].n)
				own[k] = own[--nown];
		} else if (op < 88) {
			uint64_t seq = space_commit_begin(sp);

			assert_int_equal(seq, m.open_seq);
			m.open_seq++;
		} else if (op < 96) {
			/* Done with a random begun commit. */
			uint64_t seq = rnd_below(m.open_seq), rel = 0;

			for (uint64_t b = 0; b < nr; b++) {
				if (m.st[b] == M_PENDING && m.seq[b] <= seq) {
					m.st[b] = M_FREE;
					rel++;
				}
			}
			assert_int_equal(space_commit_done(sp, seq), (long)rel);
			m.pending -= rel;
			m.free += rel;
			if (seq > done_seq)
				done_seq = seq;
		} else {
			/* Mark a random free stretch used (log replay). */
			uint64_t b = rnd_below(nr), n = 1 + rnd_below(20);
			bool all_free = b + n <= nr;
			int ret;

			for (uint64_t x = b; all_free && x < b + n; x++)
				all_free = m.st[x] == M_FREE;
			ret = space_mark_used(sp, b, n);
			if (b + n > nr)
				assert_int_equal(ret, -EINVAL);
			else if (!all_free)
				assert_int_equal(ret, -EEXIST);
			else if (m.free - m.reserved < n)
				assert_int_equal(ret, -ENOSPC);
			else
				assert_int_equal(ret, 0);
			if (ret == 0) {
				memset(m.st + b, M_USED, n);
				m.free -= n;
				m.allocated += n;
				own[nown++] = (struct owned){ b, n };
			}
		}
		if (i % 250 == 0 || i == ops - 1) {
			struct space_stats st = stats(sp);

			assert_int_equal(st.free, m.free);
			assert_int_equal(st.allocated, m.allocated);
			assert_int_equal(st.pending, m.pending);
			assert_int_equal(st.reserved, m.reserved);
			assert_int_equal(st.longest, model_longest(&m));
			assert_consistent(sp);
		}
	}
	free(own);
	free(m.seq);
	free(m.st);
	space_destroy(sp);
}

/* ---- A 1 TiB volume --------------------------------------------------- */

static void test_big_volume_no_full_scans(void **state)
{
	const uint64_t nr = 1ULL << 28;		/* 1 TiB of 4 KiB blocks */
	const uint64_t words = nr / 64;
	const int nr_allocs = 4000;
	/* Two level-1 nodes searched, two updated, 64 words each: a bound
	 * that does not depend on the volume's size. */
	const uint64_t per_alloc_bound = 4 * 64;
	struct space *sp = mk(nr, 0, 1024);
	size_t size = space_serialized_size(sp);
	unsigned char *buf = malloc(size);
	struct space_stats st;
	uint64_t w0, worst = 0, total = 0, holes = 0, start;
	double t0, t1;

	(void)state;
	assert_non_null(buf);
	/* Build a nearly full map: one hole of 1..700 blocks in every
	 * eighth 4096-block stretch, everything else in use. */
	assert_int_equal(space_serialize(sp, buf, size), (long)size);
	memset(buf + SPACE_HEADER_SIZE, 0xff, words * 8);
	for (uint64_t node = 0; node < nr / 4096; node += 8) {
		uint64_t len = 1 + rnd_below(700);
		uint64_t b0 = node * 4096 + rnd_below(4096 - len);

		if (node == 0)
			continue;	/* keep the metadata in use */
		for (uint64_t b = b0; b < b0 + len; b++)
			buf[SPACE_HEADER_SIZE + b / 8] &= (unsigned char)~(1 << (b % 8));
		holes += len;
	}
	for (int i = 0; i < 8; i++)
		buf[24 + i] = (unsigned char)((nr - holes) >> (8 * i));
	assert_int_equal(space_load(sp, buf, size), 0);
	free(buf);
	st = stats(sp);
	assert_int_equal(st.free, holes);
	assert_true(st.free < nr / 50);		/* under 2% free */
	/* Memory: the bitmap (32 MiB per TiB) and under 1 MiB on top. */
	printf("1 TiB volume: %.2f MiB of allocator memory, %.2f%% free\n",
	       (double)st.mem_bytes / (1 << 20), 100.0 * (double)st.free / (double)nr);
	assert_true(st.mem_bytes < (32ULL << 20) + (1ULL << 20));

	t0 = now_s();
	for (int i = 0; i < nr_allocs; i++) {
		static const uint64_t sizes[] = { 1, 8, 64, 512 };
		uint64_t max = sizes[rnd_below(4)];
		long n;

		w0 = stats(sp).words_scanned;
		n = space_alloc(sp, rnd_below(nr), 1, max, &start);
		assert_true(n >= 1);
		w0 = stats(sp).words_scanned - w0;
		if (w0 > worst)
			worst = w0;
		total += w0;
		assert_true(w0 <= per_alloc_bound);
		/* Give some back, so commits run too. */
		if (i % 4 == 0)
			assert_int_equal(space_free(sp, start, (uint64_t)n), 0);
		if (i % 64 == 0) {
			w0 = stats(sp).words_scanned;
			assert_true(space_commit_done(sp, space_commit_begin(sp)) >= 0);
			/* Up to 16 extents, each updating <= 2 level-1 nodes. */
			assert_true(stats(sp).words_scanned - w0 <= 16 * 2 * 64);
		}
	}
	t1 = now_s();
	/* A request no run can meet is answered by the root alone. */
	w0 = stats(sp).words_scanned;
	assert_int_equal(space_alloc(sp, 0, 4096, 4096, &start), -ENOSPC);
	assert_int_equal(stats(sp).words_scanned, w0);
	printf("%d allocations: %.1f words/alloc on average, worst %lu "
	       "(a full scan is %lu), %.1f us each\n", nr_allocs,
	       (double)total / nr_allocs, (unsigned long)worst,
	       (unsigned long)words, (t1 - t0) * 1e6 / nr_allocs);
	assert_int_equal(space_check(sp), 0);
	space_destroy(sp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_geometry),
		cmocka_unit_test(test_alloc_near_goal),
		cmocka_unit_test(test_max_runs_contiguous),
		cmocka_unit_test(test_fragmentation),
		cmocka_unit_test(test_enospc_at_boundary),
		cmocka_unit_test(test_free_reused_only_after_commit),
		cmocka_unit_test(test_commit_covers_earlier_commits),
		cmocka_unit_test(test_reserve_accounting),
		cmocka_unit_test(test_reserve_while_mutex_held),
		cmocka_unit_test(test_alloc_reserved_never_enospc),
		cmocka_unit_test(test_double_free_refused),
		cmocka_unit_test(test_free_enomem_changes_nothing),
		cmocka_unit_test(test_mark_used_replay),
		cmocka_unit_test(test_check_catches_corruption),
		cmocka_unit_test(test_serialize_roundtrip),
		cmocka_unit_test(test_load_rejects_bad_maps),
		cmocka_unit_test(test_random_against_model),
		cmocka_unit_test(test_big_volume_no_full_scans),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
