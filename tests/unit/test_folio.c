/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_folio.c - the folio descriptor: allocation of every order, exact
 * frees, the type-stable RCU-deferred pool (law 2), references, freezes,
 * pins (law 8), the folio lock and writeback waits (no lost wake-ups), and
 * the invariant checks at the last put.
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
#include "folio.h"

/* How long a thread may take to be woken before we call it lost. */
#define WAKE_TIMEOUT_S	30

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Join @t, or fail the test if it does not finish in time (a lost wake-up
 * leaves it asleep for ever). */
static void join_or_fail(pthread_t t)
{
	struct timespec ts;
	int err;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += WAKE_TIMEOUT_S;
	err = pthread_timedjoin_np(t, NULL, &ts);
	if (err) {
		fprintf(stderr, "thread did not finish in %d s: lost wake-up?\n",
			WAKE_TIMEOUT_S);
		/* It is asleep for good; nothing to clean up after. */
		_exit(1);
	}
}

/* Spin until @flag is set on @folio, or fail after WAKE_TIMEOUT_S. */
static void wait_for_flag(struct folio *folio, enum folio_flag flag)
{
	long deadline = now_ms() + WAKE_TIMEOUT_S * 1000L;

	while (!folio_test_flag(folio, flag)) {
		assert_true(now_ms() < deadline);
		sched_yield();
	}
}

/*
 * RCU read-side depth of this thread, so that a test which fails inside a
 * read-side section does not leave teardown calling fs_rcu_barrier() from
 * within one (which would never return).
 */
static int rcu_depth;

static void rcu_lock(void)
{
	fs_rcu_read_lock();
	rcu_depth++;
}

static void rcu_unlock(void)
{
	rcu_depth--;
	fs_rcu_read_unlock();
}

/* Every test leaves nothing behind once pending frees have run. */
static int check_nothing_live(void **state)
{
	(void)state;
	while (rcu_depth)
		rcu_unlock();
	fs_rcu_barrier();
	assert_int_equal(folio_descs_live(), 0);
	assert_int_equal(folio_bytes_live(), 0);
	return 0;
}

/* ---- Allocation ------------------------------------------------------- */

static void test_alloc_put_every_order(void **state)
{
	unsigned int order;

	(void)state;
	for (order = 0; order <= FOLIO_MAX_ORDER; order++) {
		size_t size = PAGE_SIZE << order;
		struct folio *folio;
		long bytes, descs;

		/* Descriptors of earlier puts come home asynchronously. */
		fs_rcu_barrier();
		bytes = folio_bytes_live();
		descs = folio_descs_live();
		folio = folio_alloc(order);

		assert_non_null(folio);
		assert_int_equal(folio_order(folio), order);
		assert_int_equal(folio_nr_pages(folio), 1UL << order);
		assert_int_equal(folio_size(folio), size);
		assert_int_equal(folio_ref_count(folio), 1);
		assert_int_equal(folio_pin_count(folio), 0);
		assert_int_equal(folio_flags(folio), 0);
		assert_null(folio_mapping(folio));
		assert_null(folio->private);
		assert_int_equal(folio->blkbits, PAGE_SHIFT);
		/* Aligned to its own size. */
		assert_int_equal((uintptr_t)folio_address(folio) % size, 0);
		/* All of it is ours (ASan would catch a short allocation). */
		memset(folio_address(folio), 0xa5, size);
		assert_int_equal(folio_bytes_live(), bytes + (long)size);
		assert_int_equal(folio_descs_live(), descs + 1);

		folio_put(folio);
		/* The data goes at once, exactly its order's size. */
		assert_int_equal(folio_bytes_live(), bytes);
	}
	fs_rcu_barrier();
	assert_int_equal(folio_descs_live(), 0);
}

static void test_alloc_bad_order(void **state)
{
	(void)state;
	fprintf(stderr, "(a WARNING for order %d is expected)\n",
		FOLIO_MAX_ORDER + 1);
	assert_null(folio_alloc(FOLIO_MAX_ORDER + 1));
	assert_int_equal(folio_bytes_live(), 0);
}

static void test_accessors(void **state)
{
	struct folio *folio = folio_alloc(3);

	(void)state;
	assert_non_null(folio);
	folio->index = 40;
	assert_int_equal(folio_pos(folio), 40ULL << PAGE_SHIFT);
	assert_int_equal(folio_shift(folio), PAGE_SHIFT + 3);
	assert_false(folio_contains(folio, 39));
	assert_true(folio_contains(folio, 40));
	assert_true(folio_contains(folio, 47));
	assert_false(folio_contains(folio, 48));
	/* Below the folio wraps around to a huge distance, not a match. */
	assert_false(folio_contains(folio, 0));

	folio_set_mapping(folio, (struct filemap *)0x1000);
	assert_ptr_equal(folio_mapping(folio), (void *)0x1000);
	folio_set_mapping(folio, NULL);
	assert_null(folio_mapping(folio));
	folio_put(folio);
}

static void test_flags(void **state)
{
	struct folio *folio = folio_alloc(0);

	(void)state;
	assert_non_null(folio);
	assert_false(folio_test_dirty(folio));
	assert_false(folio_test_set_dirty(folio));
	assert_true(folio_test_dirty(folio));
	assert_true(folio_test_set_dirty(folio));
	assert_true(folio_test_clear_dirty(folio));
	assert_false(folio_test_clear_dirty(folio));
	assert_false(folio_test_dirty(folio));

	folio_set_referenced(folio);
	folio_set_uptodate(folio);
	assert_true(folio_test_referenced(folio));
	assert_true(folio_test_uptodate(folio));
	assert_int_equal(folio_flags(folio),
			 (1UL << FOLIO_REFERENCED) | (1UL << FOLIO_UPTODATE));
	folio_clear_referenced(folio);
	assert_false(folio_test_referenced(folio));
	assert_true(folio_test_uptodate(folio));
	folio_put(folio);
}

static void test_alloc_failure_hook(void **state)
{
	struct folio *folio;

	(void)state;
	folio_fail_alloc_next(2);
	assert_null(folio_alloc(0));
	assert_null(folio_alloc(4));
	assert_int_equal(folio_bytes_live(), 0);
	assert_int_equal(folio_descs_live(), 0);
	folio = folio_alloc(4);
	assert_non_null(folio);
	folio_put(folio);

	/* Disarming works. */
	folio_fail_alloc_next(5);
	folio_fail_alloc_next(0);
	folio = folio_alloc(0);
	assert_non_null(folio);
	folio_put(folio);
}

/* ---- Law 2: type-stable, RCU-deferred descriptors ------------------------ */

static void test_try_get_on_freed_descriptor(void **state)
{
	struct folio *others[200];
	struct folio *folio;
	long pool_descs;
	unsigned int i;
	bool found;

	(void)state;
	rcu_lock();
	folio = folio_alloc(2);
	assert_non_null(folio);
	assert_true(folio_try_get(folio));
	assert_int_equal(folio_ref_count(folio), 2);
	folio_put(folio);
	folio_put(folio);
	/*
	 * Freed, but our read-side critical section holds its grace period
	 * open: the descriptor is valid memory (ASan would object otherwise)
	 * with refcount 0, and the pool cannot hand it out again.
	 */
	assert_false(folio_try_get(folio));
	assert_int_equal(folio_ref_count(folio), 0);
	for (i = 0; i < ARRAY_SIZE(others); i++) {
		others[i] = folio_alloc(0);
		assert_non_null(others[i]);
		assert_ptr_not_equal(others[i], folio);
	}
	assert_false(folio_try_get(folio));
	rcu_unlock();

	for (i = 0; i < ARRAY_SIZE(others); i++)
		folio_put(others[i]);
	fs_rcu_barrier();
	assert_int_equal(folio_descs_live(), 0);

	/* Back in the pool, which kept its slabs: the next allocations,
	 * enough to drain it, reuse the descriptor. */
	pool_descs = folio_pool_descs();
	assert_true(pool_descs >= (long)ARRAY_SIZE(others) + 1);
	found = false;
	{
		struct folio **all = calloc(pool_descs, sizeof(*all));
		long j;

		assert_non_null(all);
		for (j = 0; j < pool_descs; j++) {
			all[j] = folio_alloc(0);
			assert_non_null(all[j]);
			if (all[j] == folio)
				found = true;
		}
		assert_int_equal(folio_pool_descs(), pool_descs);
		for (j = 0; j < pool_descs; j++)
			folio_put(all[j]);
		free(all);
	}
	assert_true(found);
}

/* ---- References, freezes, pins ------------------------------------------- */

static void test_freeze_unfreeze(void **state)
{
	struct folio *folio = folio_alloc(1);

	(void)state;
	assert_non_null(folio);
	assert_false(folio_ref_freeze(folio, 2));
	assert_int_equal(folio_ref_count(folio), 1);
	assert_true(folio_ref_freeze(folio, 1));
	assert_int_equal(folio_ref_count(folio), 0);
	/* Frozen turns speculative gets away. */
	assert_false(folio_try_get(folio));
	folio_ref_unfreeze(folio, 3);
	assert_int_equal(folio_ref_count(folio), 3);
	assert_true(folio_try_get(folio));
	assert_int_equal(folio_ref_count(folio), 4);
	folio_put(folio);
	folio_put(folio);
	folio_put(folio);
	assert_int_equal(folio_bytes_live(), (long)folio_size(folio));
	folio_put(folio);
	assert_int_equal(folio_bytes_live(), 0);
}

static void test_freeze_fails_with_extra_ref(void **state)
{
	struct folio *folio = folio_alloc(0);

	(void)state;
	assert_non_null(folio);
	folio_get(folio);
	assert_false(folio_ref_freeze(folio, 1));
	assert_int_equal(folio_ref_count(folio), 2);
	assert_true(folio_ref_freeze(folio, 2));
	folio_ref_unfreeze(folio, 2);
	folio_put(folio);
	folio_put(folio);
}

static void test_freeze_fails_with_pin(void **state)
{
	struct folio *folio = folio_alloc(5);

	(void)state;
	assert_non_null(folio);
	assert_false(folio_maybe_pinned(folio));
	folio_pin(folio);
	assert_true(folio_maybe_pinned(folio));
	assert_int_equal(folio_ref_count(folio), 2);
	/* The cache's one reference is all the splitter expects. */
	assert_false(folio_ref_freeze(folio, 1));
	folio_unpin(folio);
	assert_false(folio_maybe_pinned(folio));
	assert_true(folio_ref_freeze(folio, 1));
	folio_ref_unfreeze(folio, 1);
	folio_put(folio);
}

static void test_pin_counts_exact_every_order(void **state)
{
	unsigned int order;
	int i, pins;

	(void)state;
	for (order = 0; order <= FOLIO_MAX_ORDER; order++) {
		struct folio *folio = folio_alloc(order);

		assert_non_null(folio);
		pins = 1 + (int)order * 37;
		for (i = 0; i < pins; i++)
			folio_pin(folio);
		assert_int_equal(folio_pin_count(folio), pins);
		assert_int_equal(folio_ref_count(folio), pins + 1);
		assert_false(folio_ref_freeze(folio, 1));
		for (i = 0; i < pins - 1; i++)
			folio_unpin(folio);
		assert_int_equal(folio_pin_count(folio), 1);
		assert_true(folio_maybe_pinned(folio));
		folio_unpin(folio);
		assert_int_equal(folio_pin_count(folio), 0);
		assert_int_equal(folio_ref_count(folio), 1);
		folio_put(folio);
	}
}

/* ---- The folio lock ---------------------------------------------------- */

static void test_lock_trylock_unlock(void **state)
{
	struct folio *folio = folio_alloc(0);

	(void)state;
	assert_non_null(folio);
	assert_true(folio_trylock(folio));
	assert_true(folio_test_locked(folio));
	assert_false(folio_trylock(folio));
	folio_unlock(folio);
	assert_false(folio_test_locked(folio));
	folio_lock(folio);
	assert_true(folio_test_locked(folio));
	/* Other flags do not disturb the lock bit, nor it them. */
	folio_set_dirty(folio);
	assert_false(folio_trylock(folio));
	folio_unlock(folio);
	assert_true(folio_test_dirty(folio));
	assert_false(folio_test_locked(folio));
	/* Uncontended: nobody set WAITERS. */
	assert_false(folio_test_waiters(folio));
	folio_clear_dirty(folio);
	folio_put(folio);
}

struct waiter {
	struct folio	*folio;
	int		done;		/* atomic */
	int		rounds;
	long		*counter;	/* under the folio lock */
};

static void *lock_waiter(void *arg)
{
	struct waiter *w = arg;

	fs_rcu_register_thread();
	folio_lock(w->folio);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	folio_unlock(w->folio);
	fs_rcu_unregister_thread();
	return NULL;
}

static void test_lock_waiter_woken_by_unlock(void **state)
{
	struct waiter w = { .folio = folio_alloc(0) };
	pthread_t t;

	(void)state;
	assert_non_null(w.folio);
	folio_lock(w.folio);
	assert_int_equal(pthread_create(&t, NULL, lock_waiter, &w), 0);
	/* The waiter announces itself before it sleeps. */
	wait_for_flag(w.folio, FOLIO_WAITERS);
	sleep_ms(20);
	assert_int_equal(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE), 0);
	folio_unlock(w.folio);
	join_or_fail(t);
	assert_int_equal(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE), 1);
	assert_false(folio_test_locked(w.folio));
	folio_put(w.folio);
}

static void *wait_locked_waiter(void *arg)
{
	struct waiter *w = arg;

	fs_rcu_register_thread();
	folio_wait_locked(w->folio);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	fs_rcu_unregister_thread();
	return NULL;
}

static void test_wait_locked_woken_by_unlock(void **state)
{
	struct waiter w = { .folio = folio_alloc(0) };
	pthread_t t;

	(void)state;
	assert_non_null(w.folio);
	folio_lock(w.folio);
	assert_int_equal(pthread_create(&t, NULL, wait_locked_waiter, &w), 0);
	wait_for_flag(w.folio, FOLIO_WAITERS);
	sleep_ms(20);
	assert_int_equal(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE), 0);
	folio_unlock(w.folio);
	join_or_fail(t);
	assert_int_equal(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE), 1);
	folio_put(w.folio);
}

static void *lock_hammer(void *arg)
{
	struct waiter *w = arg;
	int i;

	fs_rcu_register_thread();
	for (i = 0; i < w->rounds; i++) {
		if (i % 3 == 0) {
			while (!folio_trylock(w->folio))
				sched_yield();
		} else {
			folio_lock(w->folio);
		}
		(*w->counter)++;
		if (i % 64 == 0)
			sched_yield();	/* sleep holding it now and then */
		folio_unlock(w->folio);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/*
 * Threads hand the lock back and forth many thousand times; a lost wake-up
 * leaves one asleep for ever (join_or_fail), a broken lock loses increments.
 */
static void test_lock_no_lost_wakeups(void **state)
{
	enum { THREADS = 4, ROUNDS = 20000 };
	struct folio *folio = folio_alloc(0);
	struct waiter w[THREADS];
	pthread_t t[THREADS];
	long counter = 0;
	int i;

	(void)state;
	assert_non_null(folio);
	for (i = 0; i < THREADS; i++) {
		w[i] = (struct waiter){ .folio = folio, .rounds = ROUNDS,
					.counter = &counter };
		assert_int_equal(pthread_create(&t[i], NULL, lock_hammer,
						&w[i]), 0);
	}
	for (i = 0; i < THREADS; i++)
		join_or_fail(t[i]);
	assert_int_equal(counter, (long)THREADS * ROUNDS);
	assert_false(folio_test_locked(folio));
	folio_put(folio);
}

/* ---- Writeback waits ---------------------------------------------------- */

static void *writeback_waiter(void *arg)
{
	struct waiter *w = arg;

	fs_rcu_register_thread();
	folio_wait_writeback(w->folio);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	fs_rcu_unregister_thread();
	return NULL;
}

static void test_wait_writeback_woken_by_end(void **state)
{
	struct waiter w = { .folio = folio_alloc(2) };
	pthread_t t;

	(void)state;
	assert_non_null(w.folio);
	/* Not under writeback: returns at once. */
	folio_wait_writeback(w.folio);

	folio_lock(w.folio);
	folio_start_writeback(w.folio);
	assert_true(folio_test_writeback(w.folio));
	folio_unlock(w.folio);

	assert_int_equal(pthread_create(&t, NULL, writeback_waiter, &w), 0);
	wait_for_flag(w.folio, FOLIO_WAITERS);
	sleep_ms(20);
	assert_int_equal(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE), 0);
	/* Locking and unlocking wakes it, but it must sleep again. */
	folio_lock(w.folio);
	folio_unlock(w.folio);
	sleep_ms(20);
	assert_int_equal(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE), 0);

	folio_end_writeback(w.folio);
	join_or_fail(t);
	assert_int_equal(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE), 1);
	assert_false(folio_test_writeback(w.folio));
	folio_put(w.folio);
}

struct wb_pingpong {
	struct folio	*folio;
	int		round;	/* atomic: writeback round started */
	int		acked;	/* atomic: round the waiter saw end */
	int		rounds;
};

static void *wb_pingpong_waiter(void *arg)
{
	struct wb_pingpong *p = arg;
	int seen = 0;

	fs_rcu_register_thread();
	while (seen < p->rounds) {
		int r = __atomic_load_n(&p->round, __ATOMIC_ACQUIRE);

		if (r == seen) {
			sched_yield();
			continue;
		}
		folio_wait_writeback(p->folio);
		seen = r;
		__atomic_store_n(&p->acked, r, __ATOMIC_RELEASE);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/*
 * Many start/end rounds racing a waiter, ending each round at a different
 * moment of the waiter's path into the futex: every wait must return.
 */
static void test_writeback_no_lost_wakeups(void **state)
{
	struct wb_pingpong p = { .folio = folio_alloc(0), .rounds = 3000 };
	pthread_t t;
	int r;

	(void)state;
	assert_non_null(p.folio);
	assert_int_equal(pthread_create(&t, NULL, wb_pingpong_waiter, &p), 0);
	for (r = 1; r <= p.rounds; r++) {
		long deadline = now_ms() + WAKE_TIMEOUT_S * 1000L;
		int spin = (r * 7919) % 2000;

		folio_lock(p.folio);
		folio_start_writeback(p.folio);
		folio_unlock(p.folio);
		__atomic_store_n(&p.round, r, __ATOMIC_RELEASE);
		while (spin--)
			__asm__ __volatile__("" ::: "memory");
		if (r % 5 == 0)
			sleep_ms(1);
		folio_end_writeback(p.folio);
		while (__atomic_load_n(&p.acked, __ATOMIC_ACQUIRE) != r) {
			assert_true(now_ms() < deadline);
			sched_yield();
		}
	}
	join_or_fail(t);
	folio_put(p.folio);
}

/* ---- Invariant checks at the last put (debug builds) ----------------------- */

#ifndef FOLIOFS_TSAN
/*
 * Run @bad in a child and expect it to die of SIGABRT (FOLIO_BUG_ON). The
 * child works on a copy of @folio; the parent's stays untouched.
 */
static void expect_bug(struct folio *folio, void (*bad)(struct folio *))
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Keep the expected BUG report out of the test log. */
		if (!freopen("/dev/null", "w", stderr))
			_exit(3);
		bad(folio);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void put_locked(struct folio *folio)
{
	folio_lock(folio);
	folio_put(folio);
}

static void put_pinned(struct folio *folio)
{
	folio_pin(folio);
	folio_put(folio);
	folio_put(folio);
}

static void put_mapped(struct folio *folio)
{
	folio_set_mapping(folio, (struct filemap *)0x1000);
	folio_put(folio);
}

static void put_writeback(struct folio *folio)
{
	folio_lock(folio);
	folio_start_writeback(folio);
	folio_unlock(folio);
	folio_put(folio);
}

static void put_on_lru(struct folio *folio)
{
	folio_set_lru(folio);
	folio_put(folio);
}

static void put_twice(struct folio *folio)
{
	folio_get(folio);
	folio_put(folio);
	folio_put(folio);
	folio_put(folio);
}

static void unlock_unlocked(struct folio *folio)
{
	folio_unlock(folio);
}

static void test_last_put_checks(void **state)
{
	struct folio *folio = folio_alloc(1);

	(void)state;
	assert_non_null(folio);
	expect_bug(folio, put_locked);
	expect_bug(folio, put_pinned);
	expect_bug(folio, put_mapped);
	expect_bug(folio, put_writeback);
	expect_bug(folio, put_on_lru);
	expect_bug(folio, put_twice);
	expect_bug(folio, unlock_unlocked);
	/* The parent's folio is intact and frees cleanly. */
	assert_int_equal(folio_ref_count(folio), 1);
	assert_int_equal(folio_flags(folio), 0);
	folio_put(folio);
}
#else
static void test_last_put_checks(void **state)
{
	(void)state;
	skip();	/* fork() in a threaded process under TSan */
}
#endif

/*
 * A folio that left its page cache while pinned keeps its blkstate (law 8);
 * its last put frees it instead of leaking it.
 */
static void test_last_put_frees_kept_blkstate(void **state)
{
	struct folio *folio = folio_alloc(2);
	long before = blkstate_live();

	(void)state;
	assert_non_null(folio);
	folio_lock(folio);
	assert_int_equal(blkstate_attach(folio), 0);
	assert_true(folio_has_blkstate(folio));
	folio_pin(folio);
	assert_int_equal(blkstate_release(folio), -EBUSY);
	folio_unlock(folio);
	assert_int_equal(blkstate_live(), before + 1);
	folio_unpin(folio);
	folio_put(folio);
	fs_rcu_barrier();
	assert_int_equal(blkstate_live(), before);
}

/* ---- Pool exit ---------------------------------------------------------- */

static void test_pool_exit(void **state)
{
	struct folio *folio = folio_alloc(0);

	(void)state;
	assert_non_null(folio);
	fprintf(stderr, "(a WARNING for live descriptors is expected)\n");
	assert_int_equal(folio_pool_exit(), -EBUSY);
	assert_true(folio_pool_descs() > 0);
	folio_put(folio);
	assert_int_equal(folio_pool_exit(), 0);
	assert_int_equal(folio_pool_descs(), 0);
	/* And it starts again. */
	folio = folio_alloc(0);
	assert_non_null(folio);
	assert_true(folio_pool_descs() > 0);
	folio_put(folio);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_alloc_put_every_order,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_last_put_frees_kept_blkstate,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_alloc_bad_order,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_accessors, check_nothing_live),
		cmocka_unit_test_teardown(test_flags, check_nothing_live),
		cmocka_unit_test_teardown(test_alloc_failure_hook,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_try_get_on_freed_descriptor,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_freeze_unfreeze,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_freeze_fails_with_extra_ref,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_freeze_fails_with_pin,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_pin_counts_exact_every_order,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_lock_trylock_unlock,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_lock_waiter_woken_by_unlock,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_wait_locked_woken_by_unlock,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_lock_no_lost_wakeups,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_wait_writeback_woken_by_end,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_writeback_no_lost_wakeups,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_last_put_checks,
					  check_nothing_live),
		cmocka_unit_test_teardown(test_pool_exit, check_nothing_live),
	};
	int failed;

	fs_rcu_register_thread();
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	if (folio_pool_exit() != 0)
		failed++;
	fs_rcu_unregister_thread();
	return failed ? 1 : 0;
}
