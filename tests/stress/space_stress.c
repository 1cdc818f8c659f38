/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * space_stress.c - the block allocator under concurrent use, on purpose.
 *
 *  mixed: delalloc writers reserve, sometimes give part back (truncate),
 *	and turn the rest into extents with space_alloc_reserved(), which
 *	must never fail with ENOSPC; a plain allocator uses space_alloc();
 *	everyone frees its own extents; a committer begins and completes
 *	commits, sometimes two in flight; reservers hammer reserve/unreserve;
 *	a monitor checks free + allocated + pending == usable and
 *	reserved <= free all along. Every block has an owner word: a block
 *	handed out twice, or handed out again before a commit covering its
 *	free was done, fails the test. At the end the map must agree with
 *	the owners, and once everything is freed and committed the volume is
 *	whole again.
 *  reserve_without_mutex: the main thread holds the allocator mutex while
 *	threads over-subscribe the volume with reservations. They must make
 *	progress (reservations never take the mutex) and never reserve more
 *	than is free.
 *
 * Usage: space_stress [--seconds N] [--seed S]. The seed is printed; the
 * time is split between the two scenarios.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
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

#include "space.h"

#define JOIN_TIMEOUT_S	60
#define NR_BLOCKS	(1U << 16)
#define META_LEN	64U
#define NR_WRITERS	3
#define NR_RESERVERS	2
#define MAX_OWNED	128

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

static void sleep_s(double seconds)
{
	struct timespec ts;

	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
}

static bool stopping(void)
{
	return __atomic_load_n(&stop, __ATOMIC_ACQUIRE);
}

/* A thread that misses its deadline is stuck: fail rather than hang. */
static void join_or_fail(pthread_t t)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += JOIN_TIMEOUT_S;
	if (pthread_timedjoin_np(t, NULL, &ts)) {
		fprintf(stderr, "thread did not finish in %d s\n", JOIN_TIMEOUT_S);
		_exit(1);
	}
}

static struct space_stats stats(struct space *sp)
{
	struct space_stats st;

	space_stats(sp, &st);
	return st;
}

/* ---- mixed ------------------------------------------------------------- */

/*
 * owner[b]: 0 never handed out; OWNED | id while a thread holds it;
 * PENDING | seq when freed, seq a lower bound on the commit it was freed in
 * (open_pub read before the free).
 */
#define OWNED		(1ULL << 62)
#define PENDING		(1ULL << 63)
static uint64_t owner[NR_BLOCKS];	/* atomic */
/* Lower bound on the open commit: set after commit_begin returns. */
static uint64_t open_pub = 1;		/* atomic */

struct extent {
	uint64_t start, n;
};

struct worker {
	struct space	*sp;
	unsigned int	id;
	pthread_t	thread;
	struct extent	own[MAX_OWNED];
	unsigned int	nown;
	uint64_t	rng;
	/* Results, read after the join. */
	long		allocs, frees, enospc, short_runs, ops;
	uint64_t	reserved;	/* reservers: outstanding at the end */
};

/* Take @n blocks from @start for @w; fail on a double owner or early reuse. */
static void claim(struct worker *w, uint64_t start, uint64_t n)
{
	uint64_t need_done = 0;

	assert_true(start >= META_LEN && start + n <= NR_BLOCKS);
	for (uint64_t b = start; b < start + n; b++) {
		uint64_t old = __atomic_exchange_n(&owner[b], OWNED | w->id,
						   __ATOMIC_RELAXED);

		if (old & OWNED) {
			fprintf(stderr, "block %lu handed to %u while %lu owns it\n",
				(unsigned long)b, w->id,
				(unsigned long)(old & ~OWNED));
			fail();
		}
		if ((old & PENDING) && (old & ~PENDING) > need_done)
			need_done = old & ~PENDING;
	}
	/* Reused: the commit that freed it must be done. stats() is taken
	 * after the allocation, so its done_seq is at least what released
	 * the blocks. */
	if (need_done)
		assert_true(stats(w->sp).done_seq >= need_done);
	w->own[w->nown++] = (struct extent){ start, n };
	w->allocs++;
}

/* Free the extent at @k, or its head. */
static void release(struct worker *w, unsigned int k, bool whole)
{
	struct extent *e = &w->own[k];
	uint64_t n = whole ? e->n : 1 + rng_next(&w->rng) % e->n;
	uint64_t seq = __atomic_load_n(&open_pub, __ATOMIC_RELAXED);

	/* Before the free: afterwards a commit may hand them out again. */
	for (uint64_t b = e->start; b < e->start + n; b++) {
		uint64_t old = __atomic_exchange_n(&owner[b], PENDING | seq,
						   __ATOMIC_RELAXED);

		assert_int_equal(old, OWNED | w->id);
	}
	assert_int_equal(space_free(w->sp, e->start, n), 0);
	e->start += n;
	e->n -= n;
	if (!e->n)
		*e = w->own[--w->nown];
	w->frees++;
}

static void release_some(struct worker *w)
{
	unsigned int k = w->nown / 2 + 1;

	while (k-- && w->nown)
		release(w, (unsigned int)(rng_next(&w->rng) % w->nown),
			rng_next(&w->rng) % 4 != 0);
}

static void *writer_fn(void *arg)
{
	struct worker *w = arg;
	uint64_t goal = rng_next(&w->rng) % NR_BLOCKS;

	while (!stopping()) {
		uint64_t k = 1 + rng_next(&w->rng) % (rng_next(&w->rng) % 8 ? 32 : 512);

		if (w->nown + 16 >= MAX_OWNED || rng_next(&w->rng) % 8 == 0)
			release_some(w);
		if (space_reserve(w->sp, k)) {
			/* Full, mostly of pending frees: let the committer
			 * run rather than spin. */
			w->enospc++;
			release_some(w);
			sched_yield();
			continue;
		}
		/* A truncate drops some dirty delalloc blocks. */
		if (rng_next(&w->rng) % 4 == 0) {
			uint64_t u = rng_next(&w->rng) % k;

			assert_int_equal(space_unreserve(w->sp, u), 0);
			k -= u;
		}
		/* Writeback: the whole folio contiguously if it can. */
		while (k && w->nown < MAX_OWNED) {
			uint64_t start;
			long n = space_alloc_reserved(w->sp, goal, k, k, &start);

			/* Law 7: never ENOSPC at writeback. */
			assert_true(n > 0);
			assert_true((uint64_t)n <= k);
			if ((uint64_t)n < k)
				w->short_runs++;
			claim(w, start, (uint64_t)n);
			goal = start + (uint64_t)n;
			k -= (uint64_t)n;
		}
		if (k)
			assert_int_equal(space_unreserve(w->sp, k), 0);
	}
	return NULL;
}

static void *allocator_fn(void *arg)
{
	struct worker *w = arg;

	while (!stopping()) {
		uint64_t max = 1 + rng_next(&w->rng) % 128;
		uint64_t min = 1 + rng_next(&w->rng) % max, start;
		long n;

		if (w->nown + 1 >= MAX_OWNED || rng_next(&w->rng) % 4 == 0)
			release_some(w);
		n = space_alloc(w->sp, rng_next(&w->rng) % NR_BLOCKS, min, max,
				&start);
		if (n == -ENOSPC) {
			w->enospc++;
			sched_yield();
			continue;
		}
		assert_true(n >= (long)min && n <= (long)max);
		claim(w, start, (uint64_t)n);
	}
	return NULL;
}

static void *reserver_fn(void *arg)
{
	struct worker *w = arg;

	while (!stopping()) {
		uint64_t n = 1 + rng_next(&w->rng) % 64;

		if (space_reserve(w->sp, n) == 0)
			w->reserved += n;
		else
			w->enospc++;
		if (w->reserved && rng_next(&w->rng) % 2) {
			n = 1 + rng_next(&w->rng) % w->reserved;
			assert_int_equal(space_unreserve(w->sp, n), 0);
			w->reserved -= n;
		}
		w->ops++;
	}
	return NULL;
}

static void *committer_fn(void *arg)
{
	struct worker *w = arg;

	while (!stopping()) {
		uint64_t s1 = space_commit_begin(w->sp), s2 = 0;

		__atomic_store_n(&open_pub, s1 + 1, __ATOMIC_RELAXED);
		/* Sometimes a second commit starts before the first is done. */
		if (rng_next(&w->rng) % 4 == 0) {
			s2 = space_commit_begin(w->sp);
			__atomic_store_n(&open_pub, s2 + 1, __ATOMIC_RELAXED);
		}
		usleep(50 + rng_next(&w->rng) % 200);
		assert_true(space_commit_done(w->sp, s1) >= 0);
		if (s2)
			assert_true(space_commit_done(w->sp, s2) >= 0);
		w->ops++;
	}
	return NULL;
}

static void *monitor_fn(void *arg)
{
	struct worker *w = arg;

	while (!stopping()) {
		struct space_stats st = stats(w->sp);

		assert_int_equal(st.free + st.allocated + st.pending, st.usable);
		assert_true(st.reserved <= st.free);
		assert_true(st.avail >= 0);
		assert_true((uint64_t)st.avail + st.reserved <= st.free);
		w->ops++;
		if (w->ops % 64 == 0)
			assert_int_equal(space_check(w->sp), 0);
	}
	return NULL;
}

static void test_mixed(void **state)
{
	enum { NR_WORKERS = NR_WRITERS + NR_RESERVERS + 3 };
	struct space *sp = space_create(NR_BLOCKS, 4096, 0, META_LEN);
	struct worker *w = calloc(NR_WORKERS, sizeof(*w));
	struct space_stats st;
	size_t size;
	unsigned char *map;
	long allocs = 0, frees = 0, enospc = 0, short_runs = 0;
	int i;

	(void)state;
	assert_false(IS_ERR_OR_NULL(sp));
	assert_non_null(w);
	__atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
	for (i = 0; i < NR_WORKERS; i++) {
		void *(*fn)(void *);

		w[i].sp = sp;
		w[i].id = (unsigned int)i;
		w[i].rng = rng_seed(100 + (unsigned long)i);
		if (i < NR_WRITERS)
			fn = writer_fn;
		else if (i < NR_WRITERS + NR_RESERVERS)
			fn = reserver_fn;
		else if (i == NR_WRITERS + NR_RESERVERS)
			fn = allocator_fn;
		else if (i == NR_WRITERS + NR_RESERVERS + 1)
			fn = committer_fn;
		else
			fn = monitor_fn;
		assert_int_equal(pthread_create(&w[i].thread, NULL, fn, &w[i]), 0);
	}
	sleep_s(opt_seconds * 0.8);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < NR_WORKERS; i++)
		join_or_fail(w[i].thread);

	/* Quiet: the identities hold exactly, and the reservations left are
	 * the reservers'. */
	st = stats(sp);
	assert_int_equal(st.free + st.allocated + st.pending, st.usable);
	assert_int_equal(st.reserved, w[NR_WRITERS].reserved +
			 w[NR_WRITERS + 1].reserved);
	assert_int_equal(st.avail, (int64_t)(st.free - st.reserved));
	assert_int_equal(space_check(sp), 0);
	for (i = NR_WRITERS; i < NR_WRITERS + NR_RESERVERS; i++)
		assert_int_equal(space_unreserve(sp, w[i].reserved), 0);

	/* The map agrees with the owners. */
	size = space_serialized_size(sp);
	map = malloc(size);
	assert_non_null(map);
	assert_int_equal(space_serialize(sp, map, size), (long)size);
	{
		uint64_t owned = 0;

		for (uint64_t b = 0; b < NR_BLOCKS; b++) {
			bool used = map[SPACE_HEADER_SIZE + b / 8] & (1 << (b % 8));
			uint64_t o = __atomic_load_n(&owner[b], __ATOMIC_RELAXED);

			if (b < META_LEN || (o & OWNED))
				assert_true(used);
			else if (!o)
				assert_false(used);
			owned += !!(o & OWNED);
		}
		assert_int_equal(owned, st.allocated);
	}
	free(map);

	/* Give everything back: the volume is whole again. */
	for (i = 0; i < NR_WORKERS; i++) {
		while (w[i].nown)
			release(&w[i], 0, true);
		allocs += w[i].allocs;
		frees += w[i].frees;
		enospc += w[i].enospc;
		short_runs += w[i].short_runs;
	}
	assert_true(space_commit_done(sp, space_commit_begin(sp)) >= 0);
	st = stats(sp);
	assert_int_equal(st.free, st.usable);
	assert_int_equal(st.allocated, 0);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.reserved, 0);
	assert_int_equal(st.longest, st.usable);
	assert_int_equal(space_check(sp), 0);
	printf("mixed: %ld allocations (%ld shorter than asked), %ld frees, "
	       "%ld ENOSPC, %ld commits, %ld reserver ops, %ld checks\n",
	       allocs, short_runs, frees, enospc,
	       w[NR_WRITERS + NR_RESERVERS + 1].ops,
	       w[NR_WRITERS].ops + w[NR_WRITERS + 1].ops,
	       w[NR_WORKERS - 1].ops);
	assert_true(allocs > 0 && frees > 0);
	space_destroy(sp);
	free(w);
}

/* ---- reserve_without_mutex -------------------------------------------- */

static void *greedy_fn(void *arg)
{
	struct worker *w = arg;

	while (!stopping()) {
		uint64_t n = 1 + rng_next(&w->rng) % 512;

		if (space_reserve(w->sp, n) == 0) {
			w->reserved += n;
		} else {
			w->enospc++;
			/* Give some back so the others keep racing. */
			if (w->reserved && rng_next(&w->rng) % 2) {
				n = 1 + rng_next(&w->rng) % w->reserved;
				assert_int_equal(space_unreserve(w->sp, n), 0);
				w->reserved -= n;
			}
		}
		/* Atomic: the main thread watches it. */
		__atomic_store_n(&w->ops, w->ops + 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* Every greedy thread got through @min reservations, within 30 s. */
static bool all_progressed(struct worker *w, int n, long min)
{
	for (int i = 0; i < n; i++)
		if (__atomic_load_n(&w[i].ops, __ATOMIC_RELAXED) < min)
			return false;
	return true;
}

static void test_reserve_without_mutex(void **state)
{
	enum { NR_GREEDY = 4 };
	struct space *sp = space_create(NR_BLOCKS, 4096, 0, META_LEN);
	struct worker w[NR_GREEDY];
	struct space_stats st;
	uint64_t total = 0, locked;
	long ops = 0, enospc = 0;

	(void)state;
	assert_false(IS_ERR_OR_NULL(sp));
	memset(w, 0, sizeof(w));
	locked = stats(sp).nr_locked;
	__atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
	/* As if an allocation held the mutex the whole time. */
	space_test_lock(sp);
	for (int i = 0; i < NR_GREEDY; i++) {
		w[i].sp = sp;
		w[i].rng = rng_seed(200 + (unsigned long)i);
		assert_int_equal(pthread_create(&w[i].thread, NULL, greedy_fn,
						&w[i]), 0);
	}
	sleep_s(opt_seconds * 0.2);
	/*
	 * Each must make progress with the mutex held. Waiting for a count
	 * rather than a time keeps a loaded machine, which may not have run
	 * every thread yet, from failing the test; a reservation that took
	 * the mutex would never get there.
	 */
	for (int tries = 0; !all_progressed(w, NR_GREEDY, 1000); tries++) {
		if (tries == 3000) {
			fprintf(stderr, "reservations blocked on the mutex\n");
			_exit(1);
		}
		sleep_s(0.01);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < NR_GREEDY; i++) {
		join_or_fail(w[i].thread);
		total += w[i].reserved;
		ops += w[i].ops;
		enospc += w[i].enospc;
	}
	space_test_unlock(sp);

	st = stats(sp);
	/* Only the test's own lock and this stats call took the mutex. */
	assert_int_equal(st.nr_locked, locked + 2);
	assert_int_equal(st.reserved, total);
	assert_true(st.reserved <= st.free);
	assert_int_equal(st.avail, (int64_t)(st.free - total));
	/* Over-subscribed: the volume filled up and was refused. */
	assert_true(enospc > 0);
	printf("reserve_without_mutex: %ld reservations with the allocator "
	       "mutex held, %ld refused, %lu of %lu blocks reserved at the end\n",
	       ops, enospc, (unsigned long)total, (unsigned long)st.free);
	assert_int_equal(space_unreserve(sp, total), 0);
	assert_int_equal(space_check(sp), 0);
	space_destroy(sp);
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
		cmocka_unit_test(test_mixed),
		cmocka_unit_test(test_reserve_without_mutex),
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
	printf("space_stress: --seed %lu --seconds %g\n", opt_seed, opt_seconds);
	fflush(stdout);

	failed = cmocka_run_group_tests(tests, NULL, NULL);
	if (failed)
		printf("space_stress: FAILED with --seed %lu\n", opt_seed);
	return failed ? 1 : 0;
}
