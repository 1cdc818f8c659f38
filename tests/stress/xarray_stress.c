/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xarray_stress.c - lock-free readers racing writers that store, erase,
 * split, merge and mark entries of every order up to 9 (engine/xarray.h).
 *
 * Guards the promise that an RCU reader never gets an entry that does not
 * cover the index it asked for, even while a split or merge of that very
 * range is under way, and that nodes freed under readers are freed only
 * after a grace period (run it under ASan and TSan).
 *
 * Every stored entry is xa_mk_value(first << 16 | order << 8 | generation),
 * so a reader can check what it sees at index i: an aligned range of order
 * <= 9 that contains i. Writers own a region each (there they also check
 * their own results exactly) and share region 0 (there writers 0 and 1, and
 * every other writer, contend). One more thread runs xa_convert_marks()
 * (MARK_0 -> MARK_2) and clears MARK_2 again, as fsync would.
 *
 * Usage: xarray_stress [--seconds N] [--seed S] [--readers R] [--writers W]
 * The seed is always printed; rerun with --seed to replay a schedule (as far
 * as thread timing allows). Exit 0: pass; 1: a check failed; 2: bad usage.
 * Failures inside threads are counted in an atomic and reported by main.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xarray.h"

#define MAX_ORDER	9
#define REGION_SHIFT	12
#define REGION_SIZE	(1UL << REGION_SHIFT)
#define SHARED		0U

static struct xarray tree;
static unsigned int nr_regions;		/* region 0 shared, w + 1 writer w's */
static bool stop;			/* atomic */
static unsigned long failures;		/* atomic */

/* --- Entries ----------------------------------------------------------- */

static void *enc(unsigned long first, unsigned int order, unsigned int gen)
{
	return xa_mk_value((first << 16) | ((unsigned long)order << 8) |
			   (gen & 0xff));
}

static unsigned long dec_first(void *e)
{
	return xa_to_value(e) >> 16;
}

static unsigned int dec_order(void *e)
{
	return (xa_to_value(e) >> 8) & 0xff;
}

/*
 * Regions are 2^12-aligned, so no entry of order <= 9 straddles an edge, and
 * 2^16 apart, so a writer straying a little over its own region's edges
 * (region_index) never reaches another's. Odd regions sit far up, so the
 * tree is tall and its top levels change as they fill and empty.
 */
static unsigned long region_base(unsigned int r)
{
	return (1UL << 20) + ((r & 1) ? 1UL << 40 : 0) +
	       ((unsigned long)r << 16);
}

static unsigned long align_down(unsigned long index, unsigned int order)
{
	return index & ~((1UL << order) - 1);
}

static void fail(const char *what, unsigned long index, const void *entry)
{
	unsigned long n = __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);

	if (n >= 20)
		return;
	if (entry && xa_is_value(entry))
		fprintf(stderr, "FAIL: %s: index %#lx entry first %#lx order %u gen %lu\n",
			what, index, dec_first((void *)entry),
			dec_order((void *)entry), xa_to_value(entry) & 0xff);
	else
		fprintf(stderr, "FAIL: %s: index %#lx entry %p\n", what, index,
			entry);
}

static bool stopping(void)
{
	return __atomic_load_n(&stop, __ATOMIC_RELAXED);
}

/*
 * What anyone may see at @index: NULL, or a value entry whose aligned range
 * of order <= MAX_ORDER contains @index.
 */
static bool entry_ok(const void *e, unsigned long index)
{
	unsigned long first;
	unsigned int order;

	if (!e)
		return true;
	if (!xa_is_value(e))
		return false;
	first = dec_first((void *)e);
	order = dec_order((void *)e);
	return order <= MAX_ORDER && align_down(first, order) == first &&
	       first <= index && index - first < (1UL << order);
}

static void check_entry(const char *what, const void *e, unsigned long index)
{
	if (!entry_ok(e, index))
		fail(what, index, e);
}

/* --- Random numbers ---------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static unsigned long rnd(uint64_t *s, unsigned long n)
{
	return n ? splitmix64(s) % n : 0;
}

/*
 * An index in region @r, a little over its edges now and then. A quarter of
 * the shared region's traffic goes to its first 2^HOT_ORDER indices, so that
 * readers and writers meet on the same slots often.
 */
#define HOT_ORDER	MAX_ORDER
static unsigned long region_index(uint64_t *s, unsigned int r)
{
	unsigned long base = region_base(r);

	if (rnd(s, 32) == 0)
		return base - 16 + rnd(s, REGION_SIZE + 32);
	if (r == SHARED && rnd(s, 4) == 0)
		return base + rnd(s, 1UL << HOT_ORDER);
	return base + rnd(s, REGION_SIZE);
}

/* --- Statistics -------------------------------------------------------- */

enum stat {
	ST_LOAD, ST_RELOAD, ST_FIND, ST_FIND_MARKED, ST_XA_FIND, ST_SEEN,
	ST_RETRY, ST_STORE, ST_STORE_BIG, ST_XAS_STORE, ST_BUSY, ST_ERASE,
	ST_TRUNCATE, ST_SPLIT, ST_SPLIT_EAGAIN, ST_XA_SPLIT, ST_MARK,
	ST_CMPXCHG, ST_INSERT, ST_CONVERT, ST_TAGGED, NR_STATS
};

static const char *const stat_names[NR_STATS] = {
	"loads", "reloads", "finds", "marked_finds", "xa_finds", "seen",
	"retries", "stores", "big_stores", "xas_stores", "ebusy", "erases",
	"truncates", "xas_splits", "split_eagain", "xa_splits", "marks",
	"cmpxchg", "inserts", "converts", "tagged",
};

struct thread {
	pthread_t	tid;
	unsigned int	id;
	uint64_t	rng;
	unsigned long	stats[NR_STATS];
};

/* --- Readers ----------------------------------------------------------- */

static void read_load(struct thread *t)
{
	unsigned int r = rnd(&t->rng, 2) ? SHARED : rnd(&t->rng, nr_regions);
	unsigned long i = region_index(&t->rng, r);
	void *e = xa_load(&tree, i);
	unsigned int order;

	check_entry("xa_load", e, i);
	order = xa_get_order(&tree, i);
	if (order > MAX_ORDER)
		fail("xa_get_order too large", i, NULL);
	if (rnd(&t->rng, 4) == 0)
		(void)xa_get_mark(&tree, i, rnd(&t->rng, XA_MAX_MARKS));
	t->stats[ST_LOAD]++;
}

/* Law 1 as a reader does it: load, then reload and compare. */
static void read_reload(struct thread *t)
{
	unsigned int r = rnd(&t->rng, 2) ? SHARED : rnd(&t->rng, nr_regions);
	unsigned long i = region_index(&t->rng, r);
	XA_STATE(xas, &tree, i);
	void *e, *again;

	fs_rcu_read_lock();
	e = xas_load(&xas);
	if (xa_is_internal(e))
		fail("xas_load returned an internal entry", i, e);
	check_entry("xas_load", e, i);
	if (e && xas_get_order(&xas) > MAX_ORDER)
		fail("xas_get_order too large", i, e);
	again = xas_reload(&xas);
	if (xas_retry(&xas, again)) {
		t->stats[ST_RETRY]++;
	} else if (xa_is_internal(again)) {
		fail("xas_reload returned an internal entry", i, again);
	} else {
		check_entry("xas_reload: entry does not cover xa_index",
			    again, i);
	}
	fs_rcu_read_unlock();
	t->stats[ST_RELOAD]++;
}

/* xas_find / xas_find_marked over a random range, pausing now and then. */
static void read_find(struct thread *t, bool marked)
{
	unsigned int r = rnd(&t->rng, 2) ? SHARED : rnd(&t->rng, nr_regions);
	unsigned long start = region_index(&t->rng, r);
	unsigned long max = start + rnd(&t->rng, REGION_SIZE);
	xa_mark_t mark = rnd(&t->rng, XA_MAX_MARKS);
	unsigned long seen = 0, retries = 0;
	XA_STATE(xas, &tree, start);
	void *e;

	fs_rcu_read_lock();
	for (;;) {
		e = marked ? xas_find_marked(&xas, max, mark) :
			     xas_find(&xas, max);
		if (!e)
			break;
		if (xas_retry(&xas, e)) {
			if (++retries > 1000000) {
				fail("xas_find: endless retries", start, NULL);
				break;
			}
			continue;
		}
		if (xa_is_internal(e)) {
			fail("xas_find returned an internal entry",
			     xas.xa_index, e);
			break;
		}
		check_entry(marked ? "xas_find_marked" : "xas_find", e,
			    xas.xa_index);
		if (xas.xa_index > max ||
		    xas.xa_index + ((1UL << dec_order(e)) - 1) < start)
			fail("xas_find: entry outside the range", xas.xa_index,
			     e);
		if (++seen > REGION_SIZE + 64) {
			fail("xas_find: endless iteration", start, e);
			break;
		}
		if (rnd(&t->rng, 16) == 0) {
			xas_pause(&xas);
			fs_rcu_read_unlock();
			fs_rcu_read_lock();
		}
	}
	fs_rcu_read_unlock();
	t->stats[marked ? ST_FIND_MARKED : ST_FIND]++;
	t->stats[ST_SEEN] += seen;
	t->stats[ST_RETRY] += retries;
}

/* xa_find / xa_find_after: strictly increasing first indices. */
static void read_xa_find(struct thread *t)
{
	unsigned int r = rnd(&t->rng, 2) ? SHARED : rnd(&t->rng, nr_regions);
	unsigned long start = region_index(&t->rng, r);
	unsigned long max = start + rnd(&t->rng, REGION_SIZE);
	xa_mark_t filter = rnd(&t->rng, 4) ? XA_PRESENT :
					     rnd(&t->rng, XA_MAX_MARKS);
	unsigned long index = start, prev, seen = 0;
	void *e, *prev_e;

	e = xa_find(&tree, &index, max, filter);
	while (e) {
		check_entry("xa_find", e, index);
		if (index > max)
			fail("xa_find: beyond max", index, e);
		if (++seen > REGION_SIZE + 64) {
			fail("xa_find_after: endless iteration", start, e);
			break;
		}
		prev = index;
		prev_e = e;
		e = xa_find_after(&tree, &index, max, filter);
		if (e && index <= prev) {
			fail("xa_find_after: did not move forward", index, e);
			fail("  ... the entry found before it", prev, prev_e);
		}
	}
	t->stats[ST_XA_FIND]++;
	t->stats[ST_SEEN] += seen;
}

static void *reader_main(void *arg)
{
	struct thread *t = arg;

	fs_rcu_register_thread();
	while (!stopping()) {
		switch (rnd(&t->rng, 6)) {
		case 0:
		case 1:
			read_load(t);
			break;
		case 2:
			read_reload(t);
			break;
		case 3:
			read_find(t, false);
			break;
		case 4:
			read_find(t, true);
			break;
		default:
			read_xa_find(t);
			break;
		}
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* --- Writers ----------------------------------------------------------- */

struct writer {
	struct thread	t;
	unsigned int	own;		/* region number */
	unsigned int	gen;
};

static unsigned int pick_region(struct writer *w)
{
	return rnd(&w->t.rng, 2) ? SHARED : w->own;
}

static bool in_own(struct writer *w, unsigned long index)
{
	return index - region_base(w->own) < REGION_SIZE;
}

/* A store (normal API) through xa_store_order; -EBUSY is fine. */
static void write_store(struct writer *w, unsigned int order)
{
	unsigned int r = pick_region(w);
	unsigned long first = align_down(region_index(&w->t.rng, r), order);
	void *e = enc(first, order, ++w->gen);
	void *old = xa_store_order(&tree, first, order, e);
	unsigned long probe;

	w->t.stats[order ? ST_STORE_BIG : ST_STORE]++;
	if (xa_is_err(old)) {
		if (xa_err(old) != -EBUSY)
			fail("xa_store_order: unexpected error", first, old);
		else
			w->t.stats[ST_BUSY]++;
		return;
	}
	if (!xa_is_value(old) && old)
		fail("xa_store_order returned a non-value", first, old);
	if (!in_own(w, first) || !in_own(w, first + (1UL << order) - 1))
		return;
	/* Nobody else writes here: it must read back exactly. */
	probe = first + rnd(&w->t.rng, 1UL << order);
	if (xa_load(&tree, probe) != e)
		fail("own region: store did not read back", probe,
		     xa_load(&tree, probe));
	if (xa_get_order(&tree, probe) != order)
		fail("own region: wrong order after store", probe, e);
}

/* A store through the cursor API and the xas_nomem() loop. */
static void write_xas_store(struct writer *w)
{
	unsigned int order = rnd(&w->t.rng, MAX_ORDER + 1);
	unsigned int r = pick_region(w);
	unsigned long first = align_down(region_index(&w->t.rng, r), order);
	void *e = enc(first, order, ++w->gen);
	XA_STATE_ORDER(xas, &tree, first, order);
	XA_STATE(check, &tree, first + rnd(&w->t.rng, 1UL << order));
	void *back;
	int err;

	do {
		xa_lock(&tree);
		xas_store(&xas, e);
		/* Under the lock nobody can change it: read it back. */
		if (!xas_error(&xas)) {
			xas_reset(&check);
			back = xas_load(&check);
			if (back != e)
				fail("xas_store did not read back under the lock",
				     check.xa_index, back);
		}
		xa_unlock(&tree);
	} while (xas_nomem(&xas));
	err = xas_error(&xas);
	xas_destroy(&xas);
	w->t.stats[ST_XAS_STORE]++;
	if (err == -EBUSY)
		w->t.stats[ST_BUSY]++;
	else if (err)
		fail("xas_store: unexpected error", first, NULL);
}

static void write_erase(struct writer *w)
{
	unsigned int r = pick_region(w);
	unsigned long i = region_index(&w->t.rng, r);
	void *old = xa_erase(&tree, i);

	check_entry("xa_erase returned", old, i);
	if (in_own(w, i) && xa_load(&tree, i))
		fail("own region: erase left an entry", i, xa_load(&tree, i));
	w->t.stats[ST_ERASE]++;
}

/* Erase every entry of a sub-range, like truncate. */
static void write_truncate(struct writer *w)
{
	unsigned int r = pick_region(w);
	unsigned long start = region_index(&w->t.rng, r), index = start;
	unsigned long max = start + rnd(&w->t.rng, REGION_SIZE / 4);
	void *e;
	unsigned int guard = 0;

	for (e = xa_find(&tree, &index, max, XA_PRESENT); e;
	     e = xa_find_after(&tree, &index, max, XA_PRESENT)) {
		check_entry("truncate: xa_find", e, index);
		xa_erase(&tree, index);
		if (++guard > REGION_SIZE + 64) {
			fail("truncate: endless iteration", start, e);
			break;
		}
	}
	if (in_own(w, start) && in_own(w, max)) {
		index = start;
		e = xa_find(&tree, &index, max, XA_PRESENT);
		if (e)
			fail("own region: truncate left an entry", index, e);
	}
	w->t.stats[ST_TRUNCATE]++;
}

/*
 * Split with xas_split_alloc() + xas_split() (law 5: the entry may change
 * before the lock is taken; then -EAGAIN), and store a fresh value in every
 * piece under the same lock.
 */
static void write_xas_split(struct writer *w)
{
	unsigned int r = pick_region(w);
	unsigned long i = region_index(&w->t.rng, r), first, p;
	XA_STATE(xas, &tree, i);
	unsigned int order, new_order;
	void *e, *old;
	int err;

	fs_rcu_read_lock();
	e = xas_load(&xas);
	order = e ? xas_get_order(&xas) : 0;
	fs_rcu_read_unlock();
	if (!e || order == 0 || order > MAX_ORDER)
		return;
	new_order = rnd(&w->t.rng, order);
	first = align_down(i, order);
	xas_set_order(&xas, first, new_order);
	if (xas_split_alloc(&xas, order)) {
		fail("xas_split_alloc failed", first, e);
		return;
	}
	xa_lock(&tree);
	err = xas_split(&xas, e, order);
	if (!err) {
		w->gen++;
		for (p = first; p < first + (1UL << order);
		     p += 1UL << new_order) {
			void *piece = enc(p, new_order, w->gen);

			xas_set_order(&xas, p, new_order);
			old = xas_store(&xas, piece);
			if (xas_error(&xas) || old != e)
				fail("store after xas_split", p, old);
			if (xas_load(&xas) != piece)
				fail("piece did not read back", p, NULL);
		}
	}
	xa_unlock(&tree);
	xas_destroy(&xas);
	if (err == -EAGAIN)
		w->t.stats[ST_SPLIT_EAGAIN]++;
	else if (err)
		fail("xas_split: unexpected error", first, e);
	else
		w->t.stats[ST_SPLIT]++;
}

/* xa_split() then per-piece stores; own region only (not atomic). */
static void write_xa_split(struct writer *w)
{
	unsigned long i = region_base(w->own) + rnd(&w->t.rng, REGION_SIZE);
	unsigned int order = xa_get_order(&tree, i), new_order;
	unsigned long first, p;
	void *e = xa_load(&tree, i);
	int err;

	if (!e || order == 0)
		return;
	new_order = rnd(&w->t.rng, order);
	first = align_down(i, order);
	err = xa_split(&tree, i, new_order);
	if (err) {
		fail("xa_split failed in own region", i, e);
		return;
	}
	w->gen++;
	for (p = first; p < first + (1UL << order); p += 1UL << new_order) {
		if (xa_load(&tree, p) != e ||
		    xa_get_order(&tree, p) != new_order)
			fail("own region: xa_split piece wrong", p,
			     xa_load(&tree, p));
		if (xa_store_order(&tree, p, new_order,
				   enc(p, new_order, w->gen)) != e)
			fail("own region: piece store", p, NULL);
	}
	w->t.stats[ST_XA_SPLIT]++;
}

static void write_marks(struct writer *w)
{
	unsigned int r = pick_region(w);
	unsigned long i = region_index(&w->t.rng, r);
	xa_mark_t mark = rnd(&w->t.rng, 2);	/* MARK_2 is the converter's */

	if (rnd(&w->t.rng, 2)) {
		bool set = rnd(&w->t.rng, 3) != 0;

		if (set)
			xa_set_mark(&tree, i, mark);
		else
			xa_clear_mark(&tree, i, mark);
		if (in_own(w, i) &&
		    xa_get_mark(&tree, i, mark) != (set && xa_load(&tree, i)))
			fail("own region: mark did not stick", i, NULL);
	} else {
		XA_STATE(xas, &tree, i);
		bool got;
		void *e;

		/* Under the lock, set/get/clear are exact anywhere. */
		xa_lock(&tree);
		e = xas_load(&xas);
		if (e) {
			xas_set_mark(&xas, mark);
			got = xas_get_mark(&xas, mark);
			if (!got || !xa_get_mark(&tree, i, mark))
				fail("xas_set_mark did not stick", i, e);
			if (!xa_marked(&tree, mark))
				fail("xa_marked false with a marked entry", i,
				     e);
			if (rnd(&w->t.rng, 2)) {
				xas_clear_mark(&xas, mark);
				if (xas_get_mark(&xas, mark))
					fail("xas_clear_mark did not stick", i,
					     e);
			}
		}
		xa_unlock(&tree);
	}
	w->t.stats[ST_MARK]++;
}

/* Replace whatever covers i by a new generation of the same shape. */
static void write_cmpxchg(struct writer *w)
{
	unsigned int r = pick_region(w);
	unsigned long i = region_index(&w->t.rng, r);
	void *e = xa_load(&tree, i), *new, *got;

	if (e)
		new = enc(dec_first(e), dec_order(e), ++w->gen);
	else
		new = enc(i, 0, ++w->gen);
	got = xa_cmpxchg(&tree, i, e, new);
	if (xa_is_err(got))
		fail("xa_cmpxchg: error", i, got);
	else
		check_entry("xa_cmpxchg returned", got, i);
	if (in_own(w, i) && got != e)
		fail("own region: cmpxchg saw a stranger", i, got);
	w->t.stats[ST_CMPXCHG]++;
}

static void write_insert(struct writer *w)
{
	unsigned int order = rnd(&w->t.rng, MAX_ORDER + 1);
	unsigned int r = pick_region(w);
	unsigned long first = align_down(region_index(&w->t.rng, r), order);
	int err = xa_insert_order(&tree, first, order, enc(first, order,
							  ++w->gen));

	if (err && err != -EBUSY)
		fail("xa_insert_order: unexpected error", first, NULL);
	w->t.stats[ST_INSERT]++;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	fs_rcu_register_thread();
	while (!stopping()) {
		switch (rnd(&w->t.rng, 16)) {
		case 0:
		case 1:
			write_store(w, 0);
			break;
		case 2:
		case 3:
			/* Large stores merge what was there. */
			write_store(w, 1 + rnd(&w->t.rng, MAX_ORDER));
			break;
		case 4:
		case 5:
			write_xas_store(w);
			break;
		case 6:
			write_erase(w);
			break;
		case 7:
			if (rnd(&w->t.rng, 8) == 0)
				write_truncate(w);
			else
				write_erase(w);
			break;
		case 8:
		case 9:
			write_xas_split(w);
			break;
		case 10:
			write_xa_split(w);
			break;
		case 11:
		case 12:
			write_marks(w);
			break;
		case 13:
			write_cmpxchg(w);
			break;
		default:
			write_insert(w);
			break;
		}
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* --- fsync-like mark conversion --------------------------------------- */

static void *converter_main(void *arg)
{
	struct thread *t = arg;

	fs_rcu_register_thread();
	while (!stopping()) {
		unsigned int r = rnd(&t->rng, nr_regions);
		unsigned long start = region_index(&t->rng, r);
		unsigned long last = start + rnd(&t->rng, REGION_SIZE);
		unsigned long n, index;
		void *e;
		XA_STATE(xas, &tree, start);
		unsigned int guard = 0;

		n = xa_convert_marks(&tree, start, last, XA_MARK_0, XA_MARK_2,
				     1 + rnd(&t->rng, 8));
		if (n > last - start + 1)
			fail("xa_convert_marks: more tagged than indices",
			     start, NULL);
		t->stats[ST_CONVERT]++;
		t->stats[ST_TAGGED] += n;

		/* Under the lock, a marked search returns marked entries. */
		xa_lock(&tree);
		xas_for_each_marked(&xas, e, last, XA_MARK_2) {
			if (!xas_get_mark(&xas, XA_MARK_2))
				fail("xas_find_marked: entry lacks the mark",
				     xas.xa_index, e);
			check_entry("xas_find_marked under lock", e,
				    xas.xa_index);
			if (++guard > REGION_SIZE + 64) {
				fail("xas_find_marked: endless", start, e);
				break;
			}
		}
		xa_unlock(&tree);

		/* "Write back": clear TOWRITE on what was tagged. */
		index = start;
		guard = 0;
		for (e = xa_find(&tree, &index, last, XA_MARK_2); e;
		     e = xa_find_after(&tree, &index, last, XA_MARK_2)) {
			check_entry("xa_find(MARK_2)", e, index);
			xa_clear_mark(&tree, index, XA_MARK_2);
			if (++guard > REGION_SIZE + 64) {
				fail("xa_find(MARK_2): endless", start, e);
				break;
			}
		}
		if (xa_node_bytes(&tree) % sizeof(struct xa_node))
			fail("xa_node_bytes not a whole number of nodes", 0,
			     NULL);
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* --- main -------------------------------------------------------------- */

static int usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--seconds N] [--seed S] [--readers R] [--writers W]\n"
		"  W >= 2 (writers 0 and 1 always contend on region 0)\n",
		argv0);
	return 2;
}

static bool parse_ulong(const char *s, unsigned long long *out)
{
	char *end;

	if (!s || !*s)
		return false;
	errno = 0;
	*out = strtoull(s, &end, 0);
	return !errno && !*end;
}

/* The tree at rest: every entry encodes exactly where it is. */
static unsigned long final_check(void)
{
	unsigned long index, n = 0;
	void *e;
	unsigned int m;

	if (!xa_check(&tree))
		fail("xa_check failed at the end", 0, NULL);
	xa_for_each(&tree, index, e) {
		unsigned int order = xa_get_order(&tree, index);
		unsigned long last = index + (1UL << order) - 1;

		if (!entry_ok(e, index) || dec_first(e) != index ||
		    dec_order(e) != order)
			fail("at rest: entry does not match its place", index,
			     e);
		if (xa_load(&tree, last) != e)
			fail("at rest: last index differs", last,
			     xa_load(&tree, last));
		for (m = 0; m < XA_MAX_MARKS; m++)
			if (xa_get_mark(&tree, index, m) !=
			    xa_get_mark(&tree, last, m))
				fail("at rest: marks differ across an entry",
				     index, e);
		if (++n > (unsigned long)nr_regions * REGION_SIZE) {
			fail("at rest: endless iteration", index, e);
			break;
		}
	}
	for (m = 0; m < XA_MAX_MARKS; m++) {
		unsigned long marked = 0;

		xa_for_each_marked(&tree, index, e, m) {
			if (!xa_get_mark(&tree, index, m))
				fail("at rest: marked search, unmarked entry",
				     index, e);
			if (++marked > n)
				break;
		}
		if (xa_marked(&tree, m) != (marked > 0))
			fail("at rest: xa_marked disagrees with the entries",
			     m, NULL);
	}
	return n;
}

int main(int argc, char **argv)
{
	unsigned long long seconds = 5, seed, readers = 2, writers = 2, v;
	struct thread *rd, conv;
	struct writer *wr;
	unsigned long totals[NR_STATS] = { 0 }, entries;
	struct timespec now;
	unsigned int i, k;
	long live;
	int a;

	clock_gettime(CLOCK_REALTIME, &now);
	seed = (unsigned long long)now.tv_sec * 1000000007ULL ^
	       (unsigned long long)now.tv_nsec ^ ((unsigned long long)getpid() << 32);
	for (a = 1; a < argc; a++) {
		const char *opt = argv[a];

		if (a + 1 >= argc || !parse_ulong(argv[a + 1], &v))
			return usage(argv[0]);
		a++;
		if (!strcmp(opt, "--seconds"))
			seconds = v;
		else if (!strcmp(opt, "--seed"))
			seed = v;
		else if (!strcmp(opt, "--readers"))
			readers = v;
		else if (!strcmp(opt, "--writers"))
			writers = v;
		else
			return usage(argv[0]);
	}
	if (writers < 2 || writers > 64 || readers > 256 || seconds < 1)
		return usage(argv[0]);
	printf("xarray_stress: seed=%llu seconds=%llu readers=%llu writers=%llu\n",
	       seed, seconds, readers, writers);
	fflush(stdout);

	fs_rcu_register_thread();
	xa_init(&tree);
	nr_regions = writers + 1;
	rd = calloc(readers ? readers : 1, sizeof(*rd));
	wr = calloc(writers, sizeof(*wr));
	if (!rd || !wr)
		return 1;
	memset(&conv, 0, sizeof(conv));

	for (i = 0; i < writers; i++) {
		uint64_t s = seed + 1000 + i;

		wr[i].t.id = i;
		wr[i].t.rng = splitmix64(&s);
		wr[i].own = i + 1;
		if (pthread_create(&wr[i].t.tid, NULL, writer_main, &wr[i]))
			return 1;
	}
	for (i = 0; i < readers; i++) {
		uint64_t s = seed + 2000 + i;

		rd[i].id = i;
		rd[i].rng = splitmix64(&s);
		if (pthread_create(&rd[i].tid, NULL, reader_main, &rd[i]))
			return 1;
	}
	{
		uint64_t s = seed + 3000;

		conv.rng = splitmix64(&s);
		if (pthread_create(&conv.tid, NULL, converter_main, &conv))
			return 1;
	}

	/* Run for the time asked, or until the first failure. */
	for (v = 0; v < seconds * 10 &&
		    !__atomic_load_n(&failures, __ATOMIC_RELAXED); v++)
		usleep(100000);
	__atomic_store_n(&stop, true, __ATOMIC_RELAXED);

	for (i = 0; i < writers; i++) {
		pthread_join(wr[i].t.tid, NULL);
		for (k = 0; k < NR_STATS; k++)
			totals[k] += wr[i].t.stats[k];
	}
	for (i = 0; i < readers; i++) {
		pthread_join(rd[i].tid, NULL);
		for (k = 0; k < NR_STATS; k++)
			totals[k] += rd[i].stats[k];
	}
	pthread_join(conv.tid, NULL);
	for (k = 0; k < NR_STATS; k++)
		totals[k] += conv.stats[k];

	entries = final_check();
	xa_destroy(&tree);
	if (!xa_empty(&tree))
		fail("xa_destroy left entries", 0, NULL);
	fs_rcu_barrier();
	live = xa_nodes_live();
	if (live != 0) {
		fprintf(stderr, "FAIL: %ld nodes live after destroy\n", live);
		__atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
	}

	printf("xarray_stress: seed=%llu", seed);
	for (k = 0; k < NR_STATS; k++)
		printf(" %s=%lu", stat_names[k], totals[k]);
	printf(" entries_at_end=%lu failures=%lu\n", entries, failures);
	free(rd);
	free(wr);
	fs_rcu_unregister_thread();
	return failures ? 1 : 0;
}
