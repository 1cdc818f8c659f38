/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * stats.h - event counters cheap enough for the cached-read fast path.
 *
 * A plain shared atomic counter bounces its cache line between every core
 * that reads; at millions of cached reads a second that costs more than
 * the lookup. A struct fs_counter is striped: each thread adds to one of
 * FS_COUNTER_STRIPES cache-line-sized cells (chosen once per thread), and a
 * reader sums the cells. Sums are exact once the adders are quiet, and
 * never go backwards for counters that only grow.
 *
 * Locking: none. fs_counter_add() is a relaxed atomic add; fs_counter_read()
 * sums with relaxed loads.
 */
#ifndef FOLIOFS_STATS_H
#define FOLIOFS_STATS_H

#define FS_COUNTER_STRIPES	16

struct fs_counter_cell {
	long	v;
	char	pad[64 - sizeof(long)];
};

struct fs_counter {
	struct fs_counter_cell cell[FS_COUNTER_STRIPES];
} __attribute__((aligned(64)));

/* This thread's stripe + 1 (0: not chosen yet). */
extern __thread unsigned int fs_counter_stripe_tls;
unsigned int fs_counter_stripe_slow(void);

static inline unsigned int fs_counter_stripe(void)
{
	unsigned int s = fs_counter_stripe_tls;

	return __builtin_expect(s != 0, 1) ? s - 1 : fs_counter_stripe_slow();
}

static inline void fs_counter_add(struct fs_counter *c, long n)
{
	__atomic_fetch_add(&c->cell[fs_counter_stripe()].v, n, __ATOMIC_RELAXED);
}

static inline void fs_counter_inc(struct fs_counter *c)
{
	fs_counter_add(c, 1);
}

static inline long fs_counter_read(const struct fs_counter *c)
{
	long sum = 0;

	for (int i = 0; i < FS_COUNTER_STRIPES; i++)
		sum += __atomic_load_n(&c->cell[i].v, __ATOMIC_RELAXED);
	return sum;
}

#endif /* FOLIOFS_STATS_H */
