/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * folio_stress.c - races on folio descriptors, on purpose.
 *
 *  law2_recycle: writers publish folios in shared slots and replace them
 *	with folios of another order, freeing the old ones, so descriptors are
 *	recycled under readers that do speculative lookups (law 1): load,
 *	try_get, reload, and check the identity of what they hold (index,
 *	order, data pattern). A descriptor reused before a grace period, a
 *	data free of the wrong order or a get that succeeds on a dead folio
 *	shows up as a wrong identity or under ASan.
 *  lock_contention: threads increment a plain counter under folio_lock()
 *	(mixing trylock and folio_wait_locked() waiters) and must end with the
 *	exact total; writeback waiters race start/end_writeback. A lost
 *	wake-up leaves a thread asleep and fails the join deadline.
 *  pin_freeze: pinners take references and pins while a freezer freezes
 *	at the expected count: a successful freeze must never see a pin
 *	(law 8).
 *
 * Usage: folio_stress [--seconds N] [--seed S]. The seed is printed; the
 * time is split between the three scenarios.
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
#include <unistd.h>

#include <cmocka.h>

#include "folio.h"

#define JOIN_TIMEOUT_S	60
#define NR_SLOTS	16
#define NR_WRITERS	2
#define NR_READERS	3
#define NR_LOCKERS	4

static double opt_seconds = 5;
static unsigned long opt_seed;

static int stop;			/* atomic */

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

static void run_for(double seconds)
{
	struct timespec ts;

	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
}

static bool stopping(void)
{
	return __atomic_load_n(&stop, __ATOMIC_ACQUIRE);
}

static void start_threads(pthread_t *t, int n, void *(*fn)(void *),
			  void *args, size_t arg_size)
{
	int i;

	for (i = 0; i < n; i++) {
		/* Without @args, each thread gets its number. */
		void *arg = args ? (char *)args + i * arg_size
				 : (void *)(uintptr_t)i;

		assert_int_equal(pthread_create(&t[i], NULL, fn, arg), 0);
	}
}

/* A thread that misses its deadline is asleep for good: a lost wake-up. */
static void join_threads(pthread_t *t, int n, const char *what)
{
	struct timespec ts;
	int i;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += JOIN_TIMEOUT_S;
	for (i = 0; i < n; i++) {
		if (pthread_timedjoin_np(t[i], NULL, &ts)) {
			fprintf(stderr, "%s thread %d still running %d s after "
				"stop: lost wake-up or livelock\n", what, i,
				JOIN_TIMEOUT_S);
			_exit(1);
		}
	}
}

static void bump(long *counter)
{
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

static long get(long *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* ---- law2_recycle --------------------------------------------------------- */

static struct folio *slots[NR_SLOTS];		/* atomic pointers */

static struct {
	long	identity_wrong;
	long	verified;
	long	try_get_failed;
	long	moved;
	long	published;
	long	alloc_failed;
} l2;

/* What a folio's page @i holds in its first word, given its identity. */
static uint64_t page_pattern(const struct folio *folio, unsigned long i)
{
	return ((uint64_t)(folio->index + i) << 8 | folio->order) ^
	       0x5DEECE66DULL * (uint64_t)(uintptr_t)folio->data;
}

static void fill_identity(struct folio *folio)
{
	unsigned long i, nr = folio_nr_pages(folio);
	char *data = folio_address(folio);

	for (i = 0; i < nr; i++)
		*(uint64_t *)(data + i * PAGE_SIZE) = page_pattern(folio, i);
	/* The last word: a free of a smaller order would leave it to ASan. */
	*(uint64_t *)(data + folio_size(folio) - 8) = ~page_pattern(folio, 0);
}

static bool check_identity(struct folio *folio)
{
	unsigned long i, nr;
	const char *data;

	if (folio_order(folio) > FOLIO_MAX_ORDER ||
	    folio->index & (folio_nr_pages(folio) - 1) ||
	    folio_ref_count(folio) < 1 || folio_pin_count(folio) != 0 ||
	    folio_mapping(folio) != NULL)
		return false;
	data = folio_address(folio);
	if ((uintptr_t)data & (folio_size(folio) - 1))
		return false;
	nr = folio_nr_pages(folio);
	for (i = 0; i < nr; i++)
		if (*(const uint64_t *)(data + i * PAGE_SIZE) !=
		    page_pattern(folio, i))
			return false;
	return *(const uint64_t *)(data + folio_size(folio) - 8) ==
	       ~page_pattern(folio, 0);
}

static void *l2_writer(void *arg)
{
	uint64_t rng = rng_seed((uintptr_t)arg);
	unsigned int last_order[NR_SLOTS] = { 0 };

	fs_rcu_register_thread();
	while (!stopping()) {
		unsigned int s = rng_next(&rng) % NR_SLOTS;
		/* Another order than the slot had, so a recycled descriptor
		 * and its new data differ from what a reader saw; mostly
		 * small ones, so that descriptors turn over fast. */
		unsigned int span = rng_next(&rng) % 4 ? 3 : FOLIO_MAX_ORDER;
		unsigned int order = (last_order[s] + 1 +
				      rng_next(&rng) % span) %
				     (FOLIO_MAX_ORDER + 1);
		struct folio *folio, *old;

		if (rng_next(&rng) % 8 == 0) {
			old = __atomic_exchange_n(&slots[s], NULL,
						  __ATOMIC_ACQ_REL);
			if (old)
				folio_put(old);
			continue;
		}
		folio = folio_alloc(order);
		if (!folio) {
			bump(&l2.alloc_failed);
			continue;
		}
		folio->index = (rng_next(&rng) % 100000) << order;
		fill_identity(folio);
		last_order[s] = order;
		/* Release publishes the identity written above; pairs with
		 * the readers' acquire load of the slot. */
		old = __atomic_exchange_n(&slots[s], folio, __ATOMIC_ACQ_REL);
		bump(&l2.published);
		/* The slot's reference goes; the last put frees it. */
		if (old)
			folio_put(old);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

static void *l2_reader(void *arg)
{
	uint64_t rng = rng_seed(1000 + (uintptr_t)arg);

	fs_rcu_register_thread();
	while (!stopping()) {
		unsigned int s = rng_next(&rng) % NR_SLOTS;
		struct folio *folio;
		int spin;

		/* Leave the writers (and the call_rcu thread) some CPU:
		 * recycling is what this scenario is about. */
		if (rng_next(&rng) % 32 == 0)
			sched_yield();

		fs_rcu_read_lock();
		folio = __atomic_load_n(&slots[s], __ATOMIC_ACQUIRE);
		if (!folio) {
			fs_rcu_read_unlock();
			continue;
		}
		/* Now and then dawdle, so the writer frees it under us. */
		if (rng_next(&rng) % 4 == 0)
			for (spin = rng_next(&rng) % 5000; spin > 0; spin--)
				__asm__ __volatile__("" ::: "memory");
		if (!folio_try_get(folio)) {
			fs_rcu_read_unlock();
			bump(&l2.try_get_failed);
			continue;
		}
		if (__atomic_load_n(&slots[s], __ATOMIC_ACQUIRE) != folio) {
			fs_rcu_read_unlock();
			folio_put(folio);
			bump(&l2.moved);
			continue;
		}
		fs_rcu_read_unlock();
		/* Ours now, whatever the writers do. */
		if (!check_identity(folio)) {
			bump(&l2.identity_wrong);
			folio_dump(folio, "wrong identity after try_get");
		} else {
			bump(&l2.verified);
		}
		folio_put(folio);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

static void test_law2_recycle(void **state)
{
	pthread_t w[NR_WRITERS], r[NR_READERS];
	long pool_before = folio_pool_descs();
	unsigned int s;

	(void)state;
	memset(&l2, 0, sizeof(l2));
	__atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
	start_threads(w, NR_WRITERS, l2_writer, NULL, 0);
	start_threads(r, NR_READERS, l2_reader, NULL, 0);
	run_for(opt_seconds / 2);
	join_threads(w, NR_WRITERS, "writer");
	join_threads(r, NR_READERS, "reader");
	for (s = 0; s < NR_SLOTS; s++) {
		struct folio *folio = __atomic_exchange_n(&slots[s], NULL,
							  __ATOMIC_ACQ_REL);

		if (folio)
			folio_put(folio);
	}
	printf("law2_recycle: %ld published, %ld verified, %ld try_get "
	       "failed, %ld moved, pool %ld -> %ld descriptors\n",
	       get(&l2.published), get(&l2.verified), get(&l2.try_get_failed),
	       get(&l2.moved), pool_before, folio_pool_descs());
	assert_int_equal(get(&l2.identity_wrong), 0);
	assert_int_equal(get(&l2.alloc_failed), 0);
	assert_true(get(&l2.published) > NR_SLOTS);
	assert_true(get(&l2.verified) > 0);
	fs_rcu_barrier();
	assert_int_equal(folio_descs_live(), 0);
	assert_int_equal(folio_bytes_live(), 0);
}

/* ---- lock_contention --------------------------------------------------- */

static struct {
	struct folio	*folio;		/* the lock */
	long		counter;	/* plain, under the folio lock */
	long		waits;
	struct folio	*wb_folio;	/* writeback target */
	long		wb_rounds;
	long		wb_waits;
} lc;

struct locker {
	long		done;		/* this thread's increments */
	unsigned long	id;
};

static void *lc_locker(void *arg)
{
	struct locker *me = arg;
	uint64_t rng = rng_seed(2000 + me->id);

	fs_rcu_register_thread();
	while (!stopping()) {
		unsigned int how = rng_next(&rng) % 8;

		if (how == 0) {
			if (!folio_trylock(lc.folio))
				continue;
		} else {
			folio_lock(lc.folio);
		}
		lc.counter++;
		if (how == 1)
			sched_yield();	/* hold it across a reschedule */
		folio_unlock(lc.folio);
		me->done++;
	}
	fs_rcu_unregister_thread();
	return NULL;
}

static void *lc_wait_locked(void *arg)
{
	(void)arg;
	fs_rcu_register_thread();
	while (!stopping()) {
		folio_wait_locked(lc.folio);
		bump(&lc.waits);
		sched_yield();
	}
	fs_rcu_unregister_thread();
	return NULL;
}

static void *lc_wb_toggler(void *arg)
{
	uint64_t rng = rng_seed(3000);
	int spin;

	(void)arg;
	fs_rcu_register_thread();
	while (!stopping()) {
		folio_lock(lc.wb_folio);
		folio_start_writeback(lc.wb_folio);
		folio_unlock(lc.wb_folio);
		for (spin = rng_next(&rng) % 3000; spin > 0; spin--)
			__asm__ __volatile__("" ::: "memory");
		folio_end_writeback(lc.wb_folio);
		bump(&lc.wb_rounds);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

static void *lc_wb_waiter(void *arg)
{
	(void)arg;
	fs_rcu_register_thread();
	while (!stopping()) {
		folio_wait_writeback(lc.wb_folio);
		bump(&lc.wb_waits);
		sched_yield();
	}
	fs_rcu_unregister_thread();
	return NULL;
}

static void test_lock_contention(void **state)
{
	struct locker lockers[NR_LOCKERS];
	pthread_t t[NR_LOCKERS], wl, tog, wbw[2];
	long total = 0;
	int i;

	(void)state;
	memset(&lc, 0, sizeof(lc));
	memset(lockers, 0, sizeof(lockers));
	lc.folio = folio_alloc(0);
	lc.wb_folio = folio_alloc(4);
	assert_non_null(lc.folio);
	assert_non_null(lc.wb_folio);
	for (i = 0; i < NR_LOCKERS; i++)
		lockers[i].id = i;
	__atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
	start_threads(t, NR_LOCKERS, lc_locker, lockers, sizeof(lockers[0]));
	start_threads(&wl, 1, lc_wait_locked, NULL, 0);
	start_threads(&tog, 1, lc_wb_toggler, NULL, 0);
	start_threads(wbw, 2, lc_wb_waiter, NULL, 0);
	run_for(opt_seconds / 4);
	join_threads(t, NR_LOCKERS, "locker");
	join_threads(&tog, 1, "writeback toggler");
	/* Waiters may sleep on a bit that nobody will clear only if a wake
	 * was lost: the folio is unlocked and not under writeback now. */
	join_threads(&wl, 1, "wait_locked");
	join_threads(wbw, 2, "wait_writeback");

	for (i = 0; i < NR_LOCKERS; i++)
		total += lockers[i].done;
	printf("lock_contention: %ld increments, %ld wait_locked returns, "
	       "%ld writeback rounds, %ld wait_writeback returns\n",
	       total, get(&lc.waits), get(&lc.wb_rounds), get(&lc.wb_waits));
	assert_int_equal(lc.counter, total);
	assert_true(total > 0);
	assert_true(get(&lc.wb_rounds) > 0);
	assert_false(folio_test_locked(lc.folio));
	assert_false(folio_test_writeback(lc.wb_folio));
	folio_put(lc.folio);
	folio_put(lc.wb_folio);
	fs_rcu_barrier();
	assert_int_equal(folio_descs_live(), 0);
	assert_int_equal(folio_bytes_live(), 0);
}

/* ---- pin_freeze ------------------------------------------------------------ */

static struct {
	struct folio	*folio;
	long		frozen;
	long		pinned;
	long		frozen_while_pinned;
} pf;

static void *pf_pinner(void *arg)
{
	(void)arg;
	fs_rcu_register_thread();
	while (!stopping()) {
		/* The descriptor lives throughout (the test holds the cache
		 * reference), so no RCU is needed for the try_get. */
		if (!folio_try_get(pf.folio))
			continue;
		folio_pin(pf.folio);
		bump(&pf.pinned);
		folio_unpin(pf.folio);
		folio_put(pf.folio);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

static void *pf_freezer(void *arg)
{
	(void)arg;
	fs_rcu_register_thread();
	while (!stopping()) {
		folio_lock(pf.folio);
		/* Expected: the one "cache" reference the test holds. */
		if (folio_ref_freeze(pf.folio, 1)) {
			if (folio_maybe_pinned(pf.folio))
				bump(&pf.frozen_while_pinned);
			bump(&pf.frozen);
			folio_ref_unfreeze(pf.folio, 1);
		}
		folio_unlock(pf.folio);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

static void test_pin_freeze(void **state)
{
	pthread_t p[2], f;

	(void)state;
	memset(&pf, 0, sizeof(pf));
	pf.folio = folio_alloc(2);
	assert_non_null(pf.folio);
	__atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
	start_threads(p, 2, pf_pinner, NULL, 0);
	start_threads(&f, 1, pf_freezer, NULL, 0);
	run_for(opt_seconds / 4);
	join_threads(p, 2, "pinner");
	join_threads(&f, 1, "freezer");
	printf("pin_freeze: %ld freezes, %ld pins\n", get(&pf.frozen),
	       get(&pf.pinned));
	assert_int_equal(get(&pf.frozen_while_pinned), 0);
	assert_true(get(&pf.frozen) > 0);
	assert_true(get(&pf.pinned) > 0);
	assert_int_equal(folio_ref_count(pf.folio), 1);
	assert_int_equal(folio_pin_count(pf.folio), 0);
	folio_put(pf.folio);
	fs_rcu_barrier();
	assert_int_equal(folio_descs_live(), 0);
}

/* ---- main ------------------------------------------------------------------ */

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [--seconds N] [--seed S]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_law2_recycle),
		cmocka_unit_test(test_lock_contention),
		cmocka_unit_test(test_pin_freeze),
	};
	bool seeded = false;
	int failed, i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
			opt_seconds = strtod(argv[++i], NULL);
		} else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			opt_seed = strtoul(argv[++i], NULL, 0);
			seeded = true;
		} else {
			usage(argv[0]);
		}
	}
	if (opt_seconds <= 0)
		usage(argv[0]);
	if (!seeded)
		opt_seed = (unsigned long)time(NULL) ^ (unsigned long)getpid();
	printf("folio_stress: --seed %lu --seconds %g\n", opt_seed,
	       opt_seconds);
	fflush(stdout);

	fs_rcu_register_thread();
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	if (folio_pool_exit() != 0)
		failed++;
	fs_rcu_unregister_thread();
	if (failed)
		printf("folio_stress: FAILED with --seed %lu\n", opt_seed);
	return failed ? 1 : 0;
}
