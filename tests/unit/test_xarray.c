/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_xarray.c - unit tests for the radix tree (engine/xarray.h).
 *
 * Guards the contract written in xarray.h, one public function at a time,
 * against the test build of the engine (XA_CHUNK_SHIFT=3, so 8-slot nodes
 * and deep trees; fault injection with xa_fail_alloc_after()):
 *  - value entries, sparse and extreme indices (0, 1 << 40, ULONG_MAX);
 *  - multi-index entries of every order 0..12 at several aligned places,
 *    orders up to XA_MAX_ORDER, -EBUSY for smaller stores inside them, erase
 *    from a tail index, larger stores replacing smaller entries;
 *  - marks on order-0 and multi-index entries, marked searches from a tail
 *    index, the root mark bits, marks kept or dropped by stores, and
 *    xa_convert_marks() in small batches;
 *  - splits from every order 1..12 to every smaller order, through xa_split()
 *    and through xas_split_alloc() + xas_split(), and law 5 (-EAGAIN when
 *    the entry changed between allocation and the lock);
 *  - -ENOMEM at every allocation point of stores, inserts and splits leaves
 *    the tree exactly as it was and leaks nothing;
 *  - the xas cursor API, and the locking table's claims (readers never take
 *    xa_lock; xas_store() and friends never allocate).
 * Every test ends with xa_check(), xa_destroy(), an RCU barrier and
 * xa_nodes_live() == 0, so a leaked node fails the test that leaked it; main
 * checks the count once more after the whole run.
 */
#include <errno.h>
#include <limits.h>
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

#include "xarray.h"

/* --- Helpers ------------------------------------------------------------- */

/* Distinct user pointers, aligned to 8. */
static long objs[1024];
#define P(n)	((void *)&objs[(n)])

#define MARK_BITS	((1U << XA_MAX_MARKS) - 1)

static struct xarray tree;

/*
 * RCU read-side depth of this thread, so that a test which fails inside a
 * read-side section does not leave teardown calling fs_rcu_barrier() from
 * within one (which would deadlock).
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

static unsigned long range_last(unsigned long first, unsigned int order)
{
	return order >= BITS_PER_LONG ? ULONG_MAX : first + ((1UL << order) - 1);
}

static unsigned long align_down(unsigned long index, unsigned int order)
{
	return order >= BITS_PER_LONG ? 0 : index & ~((1UL << order) - 1);
}

static unsigned int marks_of(struct xarray *xa, unsigned long index)
{
	unsigned int m, bits = 0;

	for (m = 0; m < XA_MAX_MARKS; m++)
		if (xa_get_mark(xa, index, m))
			bits |= 1U << m;
	return bits;
}

/* Indices of an entry to probe: all of them up to order 12, else a sample. */
static unsigned long probe_index(unsigned long first, unsigned int order,
				 unsigned long k, bool *more)
{
	static const unsigned long frac[] = { 0, 1, 2, 7, 8, 63, 64, 511 };
	unsigned long size_m1 = range_last(0, order);

	if (order <= 12) {
		*more = k < size_m1;
		return first + k;
	}
	*more = k < ARRAY_SIZE(frac) + 3;
	if (k < ARRAY_SIZE(frac))
		return first + frac[k];
	if (k == ARRAY_SIZE(frac))
		return first + (size_m1 >> 1);
	if (k == ARRAY_SIZE(frac) + 1)
		return first + (size_m1 >> 1) + 1;
	if (k == ARRAY_SIZE(frac) + 2)
		return first + size_m1 - 1;
	return first + size_m1;
}

/* Every index of [first, first + 2^order) loads @entry (of @order). */
static void assert_covers(struct xarray *xa, unsigned long first,
			  unsigned int order, void *entry)
{
	unsigned long k;
	bool more = true;

	for (k = 0; more; k++) {
		unsigned long i = probe_index(first, order, k, &more);

		assert_ptr_equal(xa_load(xa, i), entry);
		/* xa_get_order() is 0 where nothing is. */
		assert_int_equal(xa_get_order(xa, i), entry ? order : 0);
	}
}

/* Every index of the range has exactly the marks @bits. */
static void assert_marks_over(struct xarray *xa, unsigned long first,
			      unsigned int order, unsigned int bits)
{
	unsigned long k;
	bool more = true;

	for (k = 0; more; k++) {
		unsigned long i = probe_index(first, order, k, &more);

		assert_int_equal(marks_of(xa, i), bits);
	}
}

/* A full dump of the tree through xa_for_each, to compare before/after. */
struct dent {
	unsigned long	index;
	void		*entry;
	unsigned int	order;
	unsigned int	marks;
};

struct dump {
	size_t		nr, cap;
	struct dent	*v;
};

static void dump_tree(struct xarray *xa, struct dump *d)
{
	unsigned long index;
	void *entry;

	d->nr = 0;
	d->cap = 16;
	d->v = malloc(d->cap * sizeof(*d->v));
	assert_non_null(d->v);
	xa_for_each(xa, index, entry) {
		assert_true(d->nr < 100000);	/* no endless iteration */
		if (d->nr == d->cap) {
			d->cap *= 2;
			d->v = realloc(d->v, d->cap * sizeof(*d->v));
			assert_non_null(d->v);
		}
		d->v[d->nr].index = index;
		d->v[d->nr].entry = entry;
		d->v[d->nr].order = xa_get_order(xa, index);
		d->v[d->nr].marks = marks_of(xa, index);
		/* An entry is reported at its first index, once. */
		assert_int_equal(align_down(index, d->v[d->nr].order), index);
		if (d->nr)
			assert_true(index > range_last(d->v[d->nr - 1].index,
						       d->v[d->nr - 1].order));
		d->nr++;
	}
}

static void dump_free(struct dump *d)
{
	free(d->v);
	d->v = NULL;
}

static void assert_dump_equal(const struct dump *a, const struct dump *b)
{
	size_t i;

	assert_int_equal(a->nr, b->nr);
	for (i = 0; i < a->nr; i++) {
		assert_int_equal(a->v[i].index, b->v[i].index);
		assert_ptr_equal(a->v[i].entry, b->v[i].entry);
		assert_int_equal(a->v[i].order, b->v[i].order);
		assert_int_equal(a->v[i].marks, b->v[i].marks);
	}
}

static void assert_tree_unchanged(struct xarray *xa, const struct dump *before)
{
	struct dump now;

	assert_true(xa_check(xa));
	dump_tree(xa, &now);
	assert_dump_equal(before, &now);
	dump_free(&now);
}

static size_t count_entries(struct xarray *xa)
{
	unsigned long index;
	void *entry;
	size_t n = 0;

	xa_for_each(xa, index, entry) {
		assert_true(n < 1000000);
		n++;
	}
	return n;
}

/* Nodes are freed after a grace period: wait for it before counting. */
static long nodes_settled(void)
{
	fs_rcu_barrier();
	return xa_nodes_live();
}

/* Empty the tree and check nothing leaked, then start afresh. */
static void reset_tree(struct xarray *xa)
{
	assert_true(xa_check(xa));
	xa_destroy(xa);
	assert_true(xa_empty(xa));
	assert_int_equal(nodes_settled(), 0);
	xa_init(xa);
}

static void *store_ok(struct xarray *xa, unsigned long index,
		      unsigned int order, void *entry)
{
	void *old = xa_store_order(xa, index, order, entry);

	assert_int_equal(xa_err(old), 0);
	return old;
}

static int setup_tree(void **state)
{
	xa_init(&tree);
	*state = &tree;
	return 0;
}

static int teardown_tree(void **state)
{
	struct xarray *xa = *state;
	bool ok;

	/* Undo what a failed assertion may have left behind. */
	xa_fail_alloc_after(-1);
	while (rcu_depth > 0)
		rcu_unlock();
	if (xa_lock_held(xa))
		xa_unlock(xa);

	ok = xa_check(xa);
	xa_destroy(xa);
	assert_true(xa_empty(xa));
	assert_true(ok);
	assert_int_equal(nodes_settled(), 0);
	return 0;
}

/* --- Empty tree, accounting, values, sparse indices --------------------- */

static void test_empty_tree(void **state)
{
	struct xarray *xa = *state;
	unsigned long index = 42, n = 0;
	void *entry;
	XA_STATE(xas, xa, 5);

	assert_true(xa_empty(xa));
	assert_null(xa_load(xa, 0));
	assert_null(xa_load(xa, ULONG_MAX));
	assert_int_equal(xa_get_order(xa, 7), 0);
	assert_false(xa_get_mark(xa, 7, XA_MARK_0));
	assert_null(xa_find(xa, &index, ULONG_MAX, XA_PRESENT));
	assert_int_equal(index, 42);
	assert_null(xa_find_after(xa, &index, ULONG_MAX, XA_PRESENT));
	assert_int_equal(index, 42);
	assert_null(xa_erase(xa, 3));
	xa_set_mark(xa, 3, XA_MARK_1);		/* nothing there: no-op */
	xa_clear_mark(xa, 3, XA_MARK_1);
	assert_false(xa_marked(xa, XA_MARK_0));
	assert_false(xa_marked(xa, XA_MARK_1));
	assert_false(xa_marked(xa, XA_MARK_2));
	assert_int_equal(xa_split(xa, 3, 0), -ENOENT);
	assert_int_equal(xa_convert_marks(xa, 0, ULONG_MAX, XA_MARK_0,
					  XA_MARK_2, 3), 0);
	xa_for_each(xa, index, entry)
		n++;
	assert_int_equal(n, 0);
	assert_int_equal(xa_node_bytes(xa), 0);
	assert_int_equal(xa_nodes_live(), 0);

	rcu_lock();
	assert_null(xas_load(&xas));
	assert_ptr_equal(xas.xa_node, NULL);
	rcu_unlock();
	assert_true(xa_check(xa));
	assert_true(xa_empty(xa));
}

/* xa_nodes_live() really counts, so the leak checks can fail. */
static void test_node_accounting(void **state)
{
	struct xarray *xa = *state;
	long live;

	assert_null(store_ok(xa, 0, 0, P(0)));
	live = xa_nodes_live();
	assert_true(live >= 1);
	assert_int_equal(xa_node_bytes(xa), live * sizeof(struct xa_node));
	assert_ptr_equal(xa_erase(xa, 0), P(0));
	assert_true(xa_empty(xa));
	assert_int_equal(nodes_settled(), 0);
	assert_int_equal(xa_node_bytes(xa), 0);

	/* ULONG_MAX needs one node per level, and no more. */
	assert_null(store_ok(xa, ULONG_MAX, 0, P(1)));
	assert_int_equal(xa_nodes_live(), XA_MAX_DEPTH);
	assert_int_equal(xa_node_bytes(xa),
			 XA_MAX_DEPTH * sizeof(struct xa_node));
	assert_true(xa_check(xa));
	assert_ptr_equal(xa_erase(xa, ULONG_MAX), P(1));
	assert_true(xa_empty(xa));
	assert_int_equal(nodes_settled(), 0);
}

static void test_value_entries(void **state)
{
	struct xarray *xa = *state;
	unsigned long index;

	assert_true(xa_is_value(xa_mk_value(0)));
	assert_false(xa_is_value(P(0)));
	assert_int_equal(xa_to_value(xa_mk_value(LONG_MAX)), LONG_MAX);

	/* Value 0 is not NULL. */
	assert_null(store_ok(xa, 0, 0, xa_mk_value(0)));
	assert_ptr_equal(xa_load(xa, 0), xa_mk_value(0));
	assert_false(xa_empty(xa));
	assert_null(store_ok(xa, ULONG_MAX, 0, xa_mk_value(LONG_MAX)));
	assert_int_equal(xa_to_value(xa_load(xa, ULONG_MAX)), LONG_MAX);
	assert_null(store_ok(xa, 1UL << 40, 0, xa_mk_value(1)));
	assert_null(store_ok(xa, 128, 7, xa_mk_value(12345)));
	assert_covers(xa, 128, 7, xa_mk_value(12345));

	index = 1;
	assert_ptr_equal(xa_find(xa, &index, ULONG_MAX, XA_PRESENT),
			 xa_mk_value(12345));
	assert_int_equal(index, 128);
	assert_ptr_equal(xa_find_after(xa, &index, ULONG_MAX, XA_PRESENT),
			 xa_mk_value(1));
	assert_int_equal(index, 1UL << 40);

	/* Replacing a value returns it. */
	assert_ptr_equal(store_ok(xa, 0, 0, xa_mk_value(7)), xa_mk_value(0));
	assert_ptr_equal(xa_erase(xa, 200), xa_mk_value(12345));
	assert_null(xa_load(xa, 128));
	assert_int_equal(count_entries(xa), 3);
	assert_true(xa_check(xa));
}

static const unsigned long sparse[] = {
	0, 1, 7, 8, 63, 64, 511, 512, (1UL << 40) - 1, 1UL << 40,
	LONG_MAX, 1UL << 63, ULONG_MAX - 1, ULONG_MAX,
};

static bool in_sparse(unsigned long index, const bool *present)
{
	size_t k;

	for (k = 0; k < ARRAY_SIZE(sparse); k++)
		if (sparse[k] == index)
			return present[k];
	return false;
}

static void assert_sparse(struct xarray *xa, const bool *present)
{
	size_t k, n = 0;
	unsigned long index, prev = 0;
	void *entry;

	for (k = 0; k < ARRAY_SIZE(sparse); k++) {
		unsigned long i = sparse[k];

		assert_ptr_equal(xa_load(xa, i), present[k] ? P(k) : NULL);
		if (i > 0 && !in_sparse(i - 1, present))
			assert_null(xa_load(xa, i - 1));
		if (i < ULONG_MAX && !in_sparse(i + 1, present))
			assert_null(xa_load(xa, i + 1));
		n += present[k];
	}
	k = 0;
	xa_for_each(xa, index, entry) {
		assert_true(k == 0 || index > prev);
		assert_true(entry >= P(0) && entry < P(ARRAY_SIZE(sparse)));
		assert_int_equal(index, sparse[(long *)entry - objs]);
		prev = index;
		k++;
	}
	assert_int_equal(k, n);
	assert_true(xa_check(xa));
}

static void test_sparse_indices(void **state)
{
	static const unsigned int erase_order[] = {
		13, 0, 9, 5, 11, 2, 7, 12, 1, 10, 4, 8, 3, 6,
	};
	struct xarray *xa = *state;
	bool present[ARRAY_SIZE(sparse)] = { false };
	size_t k;

	for (k = 0; k < ARRAY_SIZE(sparse); k++) {
		assert_null(store_ok(xa, sparse[k], 0, P(k)));
		present[k] = true;
		assert_sparse(xa, present);
	}
	for (k = 0; k < ARRAY_SIZE(erase_order); k++) {
		unsigned int e = erase_order[k];

		assert_ptr_equal(xa_erase(xa, sparse[e]), P(e));
		assert_null(xa_erase(xa, sparse[e]));
		present[e] = false;
		assert_sparse(xa, present);
	}
	assert_true(xa_empty(xa));
	assert_int_equal(nodes_settled(), 0);
}

/* --- Order-0 store, insert, erase, cmpxchg -------------------------------- */

static void test_store_replace_erase(void **state)
{
	struct xarray *xa = *state;

	assert_null(store_ok(xa, 10, 0, P(1)));
	assert_ptr_equal(store_ok(xa, 10, 0, P(2)), P(1));
	assert_ptr_equal(xa_load(xa, 10), P(2));
	assert_null(xa_load(xa, 9));
	assert_null(xa_load(xa, 11));
	/* Storing NULL erases. */
	assert_ptr_equal(store_ok(xa, 10, 0, NULL), P(2));
	assert_null(xa_load(xa, 10));
	assert_true(xa_empty(xa));

	assert_null(store_ok(xa, 1000, 0, P(3)));
	assert_null(xa_erase(xa, 999));
	assert_null(xa_erase(xa, 1001));
	assert_ptr_equal(xa_erase(xa, 1000), P(3));
	assert_null(xa_erase(xa, 1000));
	assert_true(xa_empty(xa));
	assert_int_equal(nodes_settled(), 0);
}

static void test_store_invalid(void **state)
{
	struct xarray *xa = *state;
	struct dump before;

	assert_null(store_ok(xa, 3, 0, P(0)));
	dump_tree(xa, &before);
	assert_int_equal(xa_err(xa_store(xa, 4, xa_mk_internal(1))), -EINVAL);
	assert_int_equal(xa_err(xa_store(xa, 4, XA_RETRY_ENTRY)), -EINVAL);
	assert_int_equal(xa_err(xa_store(xa, 3, XA_RETRY_ENTRY)), -EINVAL);
	assert_int_equal(xa_err(xa_store_order(xa, 0, XA_MAX_ORDER + 1, P(1))),
			 -EINVAL);
	assert_int_equal(xa_insert(xa, 4, xa_mk_internal(1)), -EINVAL);
	assert_int_equal(xa_insert_order(xa, 0, XA_MAX_ORDER + 1, P(1)),
			 -EINVAL);
	assert_int_equal(xa_err(xa_cmpxchg(xa, 3, P(0), XA_RETRY_ENTRY)),
			 -EINVAL);
	assert_tree_unchanged(xa, &before);
	dump_free(&before);
}

static void test_insert(void **state)
{
	struct xarray *xa = *state;
	struct dump before;

	assert_int_equal(xa_insert(xa, 7, P(1)), 0);
	assert_int_equal(xa_insert(xa, 7, P(2)), -EBUSY);
	assert_ptr_equal(xa_load(xa, 7), P(1));
	assert_int_equal(xa_insert(xa, 1UL << 40, P(3)), 0);
	assert_int_equal(xa_insert(xa, ULONG_MAX, P(4)), 0);
	assert_int_equal(xa_insert_order(xa, 64, 4, P(5)), 0);
	assert_covers(xa, 64, 4, P(5));
	assert_true(xa_check(xa));

	dump_tree(xa, &before);
	assert_int_equal(xa_insert(xa, 70, P(6)), -EBUSY);
	assert_int_equal(xa_insert(xa, 64, P(6)), -EBUSY);
	assert_int_equal(xa_insert_order(xa, 72, 3, P(6)), -EBUSY);
	assert_int_equal(xa_insert_order(xa, 64, 5, P(6)), -EBUSY);
	assert_int_equal(xa_insert_order(xa, 0, 6, P(6)), -EBUSY);
	/* One occupied index anywhere in the range is enough. */
	assert_int_equal(xa_insert_order(xa, 0, 3, P(6)), -EBUSY);
	assert_int_equal(xa_insert_order(xa, 1UL << 40, 12, P(6)), -EBUSY);
	assert_int_equal(xa_insert_order(xa, align_down(ULONG_MAX, 9), 9, P(6)),
			 -EBUSY);
	assert_tree_unchanged(xa, &before);
	dump_free(&before);

	assert_int_equal(xa_insert_order(xa, 80, 4, P(7)), 0);
	assert_int_equal(xa_insert_order(xa, 96, 5, P(8)), 0);
	assert_int_equal(xa_insert_order(xa, 8, 3, P(9)), 0);
	assert_covers(xa, 64, 4, P(5));
	assert_covers(xa, 80, 4, P(7));
	assert_covers(xa, 96, 5, P(8));
	assert_covers(xa, 8, 3, P(9));
	assert_ptr_equal(xa_load(xa, 7), P(1));
	assert_null(xa_load(xa, 16));
	assert_null(xa_load(xa, 128));
	assert_int_equal(count_entries(xa), 7);
	assert_true(xa_check(xa));
}

static void test_cmpxchg(void **state)
{
	struct xarray *xa = *state;
	unsigned long i;

	/* NULL -> entry stores. */
	assert_null(xa_cmpxchg(xa, 5, NULL, P(1)));
	assert_ptr_equal(xa_load(xa, 5), P(1));
	/* Mismatch: returns what is there, changes nothing. */
	assert_ptr_equal(xa_cmpxchg(xa, 5, P(2), P(3)), P(1));
	assert_ptr_equal(xa_load(xa, 5), P(1));
	assert_ptr_equal(xa_cmpxchg(xa, 5, NULL, P(3)), P(1));
	assert_ptr_equal(xa_load(xa, 5), P(1));
	assert_ptr_equal(xa_cmpxchg(xa, 5, P(1), P(3)), P(1));
	assert_ptr_equal(xa_load(xa, 5), P(3));
	assert_null(xa_cmpxchg(xa, 6, P(3), P(4)));
	assert_null(xa_load(xa, 6));
	/* entry -> NULL erases. */
	assert_ptr_equal(xa_cmpxchg(xa, 5, P(3), NULL), P(3));
	assert_true(xa_empty(xa));

	/* Multi-index: replaced whole from a tail, keeping order and marks. */
	assert_null(store_ok(xa, 64, 5, P(10)));
	assert_null(store_ok(xa, 63, 0, P(11)));
	assert_null(store_ok(xa, 96, 0, P(12)));
	xa_set_mark(xa, 70, XA_MARK_0);
	xa_set_mark(xa, 95, XA_MARK_2);
	assert_ptr_equal(xa_cmpxchg(xa, 80, P(10), P(13)), P(10));
	assert_covers(xa, 64, 5, P(13));
	assert_marks_over(xa, 64, 5, (1U << XA_MARK_0) | (1U << XA_MARK_2));
	assert_ptr_equal(xa_load(xa, 63), P(11));
	assert_ptr_equal(xa_load(xa, 96), P(12));
	assert_int_equal(marks_of(xa, 63), 0);
	assert_int_equal(marks_of(xa, 96), 0);
	assert_true(xa_check(xa));

	assert_ptr_equal(xa_cmpxchg(xa, 81, P(10), P(14)), P(13));
	assert_ptr_equal(xa_cmpxchg(xa, 81, NULL, P(14)), P(13));
	assert_covers(xa, 64, 5, P(13));

	/* Erase a multi-index entry through cmpxchg at a tail index. */
	assert_ptr_equal(xa_cmpxchg(xa, 90, P(13), NULL), P(13));
	for (i = 64; i < 96; i++)
		assert_null(xa_load(xa, i));
	assert_false(xa_marked(xa, XA_MARK_0));
	assert_false(xa_marked(xa, XA_MARK_2));
	assert_int_equal(count_entries(xa), 2);
	assert_true(xa_check(xa));
}

/* --- Multi-index entries -------------------------------------------------- */

/* Aligned positions to try an entry of @order at. */
static unsigned long position(unsigned int order, unsigned int k)
{
	switch (k) {
	case 0:
		return 0;
	case 1:
		return 3UL << order;
	case 2:
		return (1UL << 40) + (5UL << order);
	case 3:
		return align_down(0x123456789UL, order);
	default:
		return align_down(ULONG_MAX, order);
	}
}
#define NR_POSITIONS	5

static void test_multi_index_every_order(void **state)
{
	struct xarray *xa = *state;
	unsigned int order, k;

	for (order = 0; order <= 12; order++) {
		for (k = 0; k < NR_POSITIONS; k++) {
			unsigned long first = position(order, k);
			unsigned long last = range_last(first, order);
			unsigned long tail = first + ((last - first) * 2) / 3;
			void *e = (order & 1) ? P(100 + order) :
					      xa_mk_value(1000 + order);
			struct dump before;
			unsigned long index;

			if (first > 0)
				assert_null(store_ok(xa, first - 1, 0, P(1)));
			if (last < ULONG_MAX)
				assert_null(store_ok(xa, last + 1, 0, P(2)));
			assert_null(store_ok(xa, first, order, e));
			assert_true(xa_check(xa));
			assert_covers(xa, first, order, e);
			if (first > 0) {
				assert_ptr_equal(xa_load(xa, first - 1), P(1));
				assert_int_equal(xa_get_order(xa, first - 1), 0);
			}
			if (last < ULONG_MAX) {
				assert_ptr_equal(xa_load(xa, last + 1), P(2));
				assert_int_equal(xa_get_order(xa, last + 1), 0);
			}
			assert_int_equal(count_entries(xa),
					 1 + (first > 0) + (last < ULONG_MAX));

			/* Found from a tail, reported at its first index. */
			index = tail;
			assert_ptr_equal(xa_find(xa, &index, ULONG_MAX,
						 XA_PRESENT), e);
			assert_int_equal(index, first);

			/* Nothing smaller may be stored inside it. */
			dump_tree(xa, &before);
			if (order > 0) {
				unsigned int o;

				for (o = 0; o < order; o++) {
					unsigned long at = align_down(tail, o);

					assert_int_equal(xa_err(xa_store_order(
						xa, at, o, P(3))), -EBUSY);
					assert_int_equal(xa_insert_order(
						xa, at, o, P(3)), -EBUSY);
				}
				assert_int_equal(xa_err(xa_store(xa, first,
						 P(3))), -EBUSY);
			}
			assert_int_equal(xa_insert_order(xa, first, order,
							 P(3)), -EBUSY);
			assert_tree_unchanged(xa, &before);
			dump_free(&before);

			/* Erasing at a tail index removes all of it. */
			assert_ptr_equal(xa_erase(xa, tail), e);
			assert_true(xa_check(xa));
			assert_covers(xa, first, order, NULL);
			if (first > 0)
				assert_ptr_equal(xa_erase(xa, first - 1), P(1));
			if (last < ULONG_MAX)
				assert_ptr_equal(xa_erase(xa, last + 1), P(2));
			assert_true(xa_empty(xa));
			assert_int_equal(nodes_settled(), 0);
		}
	}
}

static void test_erase_from_every_index(void **state)
{
	struct xarray *xa = *state;
	static const unsigned int orders[] = { 1, 2, 3, 4, 5, 6, 7 };
	unsigned int k;
	unsigned long j;

	for (k = 0; k < ARRAY_SIZE(orders); k++) {
		unsigned int order = orders[k];
		unsigned long first = 1UL << 9, size = 1UL << order;

		for (j = 0; j < size; j++) {
			assert_null(store_ok(xa, first - 1, 0, P(1)));
			assert_null(store_ok(xa, first + size, 0, P(2)));
			assert_null(store_ok(xa, first, order, P(3)));
			xa_set_mark(xa, first, XA_MARK_1);
			assert_ptr_equal(xa_erase(xa, first + j), P(3));
			assert_covers(xa, first, order, NULL);
			assert_ptr_equal(xa_load(xa, first - 1), P(1));
			assert_ptr_equal(xa_load(xa, first + size), P(2));
			assert_false(xa_marked(xa, XA_MARK_1));
			assert_int_equal(count_entries(xa), 2);
			reset_tree(xa);
		}
	}
}

/* Orders far above 12, up to XA_MAX_ORDER. */
static void test_huge_orders(void **state)
{
	static const unsigned int orders[] = { 13, 20, 30, 40, 59, 60, 61, 62 };
	struct xarray *xa = *state;
	unsigned int k;
	unsigned long half = 1UL << 63;

	for (k = 0; k < ARRAY_SIZE(orders); k++) {
		unsigned int order = orders[k];
		unsigned long top = align_down(ULONG_MAX, order);
		unsigned long size = 1UL << order;

		assert_null(store_ok(xa, size, 0, P(1)));
		assert_null(store_ok(xa, top - 1, 0, P(2)));
		assert_null(store_ok(xa, 0, order, P(3)));
		assert_null(store_ok(xa, top, order, P(4)));
		assert_true(xa_check(xa));
		assert_covers(xa, 0, order, P(3));
		assert_covers(xa, top, order, P(4));
		assert_ptr_equal(xa_load(xa, size), P(1));
		assert_ptr_equal(xa_load(xa, top - 1), P(2));
		assert_int_equal(count_entries(xa), 4);
		assert_int_equal(xa_err(xa_store(xa, size - 1, P(5))), -EBUSY);
		assert_int_equal(xa_err(xa_store_order(xa, top, order - 1,
							P(5))), -EBUSY);
		assert_ptr_equal(xa_erase(xa, size - 1), P(3));
		assert_ptr_equal(xa_erase(xa, ULONG_MAX), P(4));
		assert_covers(xa, 0, order, NULL);
		assert_covers(xa, top, order, NULL);
		assert_int_equal(count_entries(xa), 2);
		reset_tree(xa);
	}

	/* Two entries of XA_MAX_ORDER cover the whole index space. */
	assert_null(store_ok(xa, 0, XA_MAX_ORDER, P(6)));
	assert_null(store_ok(xa, half, XA_MAX_ORDER, P(7)));
	assert_true(xa_check(xa));
	assert_covers(xa, 0, XA_MAX_ORDER, P(6));
	assert_covers(xa, half, XA_MAX_ORDER, P(7));
	assert_int_equal(count_entries(xa), 2);
	assert_int_equal(xa_err(xa_store(xa, 12345, P(8))), -EBUSY);
	assert_ptr_equal(xa_erase(xa, half - 1), P(6));
	assert_null(xa_load(xa, 0));
	assert_ptr_equal(xa_load(xa, half), P(7));
	assert_ptr_equal(xa_erase(xa, half), P(7));
	assert_true(xa_empty(xa));
}

/* Same-level replacement: the old entry is returned. */
static void test_store_same_order_replace(void **state)
{
	struct xarray *xa = *state;
	unsigned int order;

	for (order = 0; order <= 12; order++) {
		unsigned long first = (1UL << 20) + (7UL << order);

		assert_null(store_ok(xa, first, order, P(1)));
		assert_ptr_equal(store_ok(xa, first, order, P(2)), P(1));
		assert_covers(xa, first, order, P(2));
		assert_ptr_equal(store_ok(xa, first, order, NULL), P(2));
		assert_covers(xa, first, order, NULL);
		assert_true(xa_empty(xa));
	}
}

static void test_store_larger_replaces_smaller(void **state)
{
	static const unsigned int orders[] = { 1, 2, 3, 4, 5, 6, 7, 9, 12 };
	struct xarray *xa = *state;
	unsigned int k;

	for (k = 0; k < ARRAY_SIZE(orders); k++) {
		unsigned int order = orders[k], o;
		unsigned long first = (1UL << 33) + (3UL << order);
		unsigned long size = 1UL << order;
		void *old;

		assert_null(store_ok(xa, first - 1, 0, P(1)));
		assert_null(store_ok(xa, first + size, 0, P(2)));
		/* Smaller entries at the start, the end, and every order. */
		assert_null(store_ok(xa, first, 0, P(10)));
		assert_null(store_ok(xa, first + size - 1, 0, P(11)));
		for (o = 1; o < order; o++)
			assert_null(store_ok(xa, first + (1UL << o), o - 1,
					     P(20 + o)));
		xa_set_mark(xa, first, XA_MARK_0);
		xa_set_mark(xa, first + size - 1, XA_MARK_1);
		assert_true(xa_check(xa));

		/* Returns what covered the first index. */
		old = store_ok(xa, first, order, P(50));
		assert_ptr_equal(old, P(10));
		assert_true(xa_check(xa));
		assert_covers(xa, first, order, P(50));
		assert_marks_over(xa, first, order, 0);
		assert_false(xa_marked(xa, XA_MARK_0));
		assert_false(xa_marked(xa, XA_MARK_1));
		assert_ptr_equal(xa_load(xa, first - 1), P(1));
		assert_ptr_equal(xa_load(xa, first + size), P(2));
		assert_int_equal(count_entries(xa), 3);
		reset_tree(xa);
	}

	/* A larger entry over a smaller one of the same level. */
	assert_null(store_ok(xa, 8, 3, P(1)));
	assert_ptr_equal(store_ok(xa, 0, 4, P(2)), NULL);
	assert_covers(xa, 0, 4, P(2));
	assert_null(store_ok(xa, 32, 1, P(3)));
	assert_ptr_equal(store_ok(xa, 32, 2, P(4)), P(3));
	assert_covers(xa, 32, 2, P(4));
	assert_int_equal(count_entries(xa), 2);
}

/* --- Iteration: xa_find, xa_find_after, xa_for_each* --------------------- */

/* A@0 B@5 C:3@64 D:4@80 F:9@2^40 G@ULONG_MAX. */
static void fill_find_tree(struct xarray *xa)
{
	assert_null(store_ok(xa, 0, 0, P(1)));
	assert_null(store_ok(xa, 5, 0, P(2)));
	assert_null(store_ok(xa, 64, 3, P(3)));
	assert_null(store_ok(xa, 80, 4, P(4)));
	assert_null(store_ok(xa, 1UL << 40, 9, P(5)));
	assert_null(store_ok(xa, ULONG_MAX, 0, P(6)));
	assert_true(xa_check(xa));
}

static const struct {
	unsigned long	index;
	unsigned int	n;
} find_tree[] = {
	{ 0, 1 }, { 5, 2 }, { 64, 3 }, { 80, 4 }, { 1UL << 40, 5 },
	{ ULONG_MAX, 6 },
};

static void test_find(void **state)
{
	struct xarray *xa = *state;
	unsigned long index;

	fill_find_tree(xa);

	index = 1;
	assert_ptr_equal(xa_find(xa, &index, ULONG_MAX, XA_PRESENT), P(2));
	assert_int_equal(index, 5);
	index = 5;
	assert_ptr_equal(xa_find(xa, &index, ULONG_MAX, XA_PRESENT), P(2));
	assert_int_equal(index, 5);
	index = 66;
	assert_ptr_equal(xa_find(xa, &index, ULONG_MAX, XA_PRESENT), P(3));
	assert_int_equal(index, 64);
	index = 66;			/* max == start: the covering entry */
	assert_ptr_equal(xa_find(xa, &index, 66, XA_PRESENT), P(3));
	assert_int_equal(index, 64);
	index = 6;
	assert_null(xa_find(xa, &index, 63, XA_PRESENT));
	assert_int_equal(index, 6);
	index = 6;
	assert_ptr_equal(xa_find(xa, &index, 64, XA_PRESENT), P(3));
	assert_int_equal(index, 64);
	index = 72;
	assert_ptr_equal(xa_find(xa, &index, 80, XA_PRESENT), P(4));
	assert_int_equal(index, 80);
	index = 96;
	assert_null(xa_find(xa, &index, (1UL << 40) - 1, XA_PRESENT));
	assert_int_equal(index, 96);
	index = (1UL << 40) + 511;
	assert_ptr_equal(xa_find(xa, &index, ULONG_MAX, XA_PRESENT), P(5));
	assert_int_equal(index, 1UL << 40);
	index = (1UL << 40) + 512;
	assert_ptr_equal(xa_find(xa, &index, ULONG_MAX, XA_PRESENT), P(6));
	assert_int_equal(index, ULONG_MAX);
	index = ULONG_MAX;
	assert_ptr_equal(xa_find(xa, &index, ULONG_MAX, XA_PRESENT), P(6));
	assert_int_equal(index, ULONG_MAX);
	index = 1;			/* marked search: nothing is marked */
	assert_null(xa_find(xa, &index, ULONG_MAX, XA_MARK_0));
	assert_int_equal(index, 1);

	index = 0;
	assert_ptr_equal(xa_find_after(xa, &index, ULONG_MAX, XA_PRESENT),
			 P(2));
	assert_int_equal(index, 5);
	index = 66;			/* after the entry covering 66 */
	assert_ptr_equal(xa_find_after(xa, &index, ULONG_MAX, XA_PRESENT),
			 P(4));
	assert_int_equal(index, 80);
	index = 64;
	assert_null(xa_find_after(xa, &index, 79, XA_PRESENT));
	assert_int_equal(index, 64);
	index = 90;
	assert_ptr_equal(xa_find_after(xa, &index, ULONG_MAX, XA_PRESENT),
			 P(5));
	assert_int_equal(index, 1UL << 40);
	index = (1UL << 40) + 3;
	assert_ptr_equal(xa_find_after(xa, &index, ULONG_MAX, XA_PRESENT),
			 P(6));
	assert_int_equal(index, ULONG_MAX);
	index = ULONG_MAX;
	assert_null(xa_find_after(xa, &index, ULONG_MAX, XA_PRESENT));
	assert_int_equal(index, ULONG_MAX);
	index = 7;			/* nothing covers 7: starts at 8 */
	assert_ptr_equal(xa_find_after(xa, &index, ULONG_MAX, XA_PRESENT),
			 P(3));
	assert_int_equal(index, 64);
}

static void test_for_each(void **state)
{
	struct xarray *xa = *state;
	unsigned long index;
	void *entry;
	size_t n = 0;

	fill_find_tree(xa);
	xa_for_each(xa, index, entry) {
		assert_true(n < ARRAY_SIZE(find_tree));
		assert_int_equal(index, find_tree[n].index);
		assert_ptr_equal(entry, P(find_tree[n].n));
		n++;
	}
	assert_int_equal(n, ARRAY_SIZE(find_tree));

	n = 0;
	xa_for_each_range(xa, index, entry, 6, 85) {
		assert_true(n < 2);
		assert_int_equal(index, find_tree[2 + n].index);
		assert_ptr_equal(entry, P(find_tree[2 + n].n));
		n++;
	}
	assert_int_equal(n, 2);

	/* A range starting at a tail yields the covering entry once. */
	n = 0;
	xa_for_each_range(xa, index, entry, 90, (1UL << 40) + 1) {
		assert_true(n < 2);
		assert_int_equal(index, find_tree[3 + n].index);
		n++;
	}
	assert_int_equal(n, 2);

	n = 0;
	xa_for_each_range(xa, index, entry, 1UL << 41, ULONG_MAX) {
		assert_true(n < 1);
		assert_int_equal(index, ULONG_MAX);
		assert_ptr_equal(entry, P(6));
		n++;
	}
	assert_int_equal(n, 1);

	xa_set_mark(xa, 5, XA_MARK_1);
	xa_set_mark(xa, 85, XA_MARK_1);
	xa_set_mark(xa, ULONG_MAX, XA_MARK_1);
	xa_set_mark(xa, 64, XA_MARK_0);
	n = 0;
	xa_for_each_marked(xa, index, entry, XA_MARK_1) {
		static const unsigned int want[] = { 1, 3, 5 };

		assert_true(n < 3);
		assert_int_equal(index, find_tree[want[n]].index);
		assert_ptr_equal(entry, P(find_tree[want[n]].n));
		n++;
	}
	assert_int_equal(n, 3);
}

/* An entry ending at ULONG_MAX must not make iteration wrap to 0. */
static void test_iteration_at_top(void **state)
{
	struct xarray *xa = *state;
	unsigned long top = align_down(ULONG_MAX, 12), index;
	void *entry;
	size_t n = 0;

	assert_null(store_ok(xa, 0, 0, P(1)));
	assert_null(store_ok(xa, top, 12, P(2)));
	xa_set_mark(xa, 0, XA_MARK_0);
	xa_set_mark(xa, top + 100, XA_MARK_0);
	xa_for_each(xa, index, entry) {
		assert_true(n < 2);
		assert_int_equal(index, n ? top : 0);
		n++;
	}
	assert_int_equal(n, 2);
	n = 0;
	xa_for_each_marked(xa, index, entry, XA_MARK_0) {
		assert_true(n < 2);
		n++;
	}
	assert_int_equal(n, 2);
	index = top + 5;
	assert_null(xa_find_after(xa, &index, ULONG_MAX, XA_PRESENT));
	assert_int_equal(index, top + 5);
	index = top + 5;
	assert_null(xa_find_after(xa, &index, ULONG_MAX, XA_MARK_0));
	n = 0;
	xa_for_each_range(xa, index, entry, 1, ULONG_MAX) {
		assert_true(n < 1);
		assert_int_equal(index, top);
		n++;
	}
	assert_int_equal(n, 1);
}

/* --- Marks ---------------------------------------------------------------- */

static void test_marks_order0(void **state)
{
	struct xarray *xa = *state;
	static const unsigned long at[] = { 0, 9, 1UL << 40, ULONG_MAX };
	unsigned int k, m;

	for (k = 0; k < ARRAY_SIZE(at); k++)
		assert_null(store_ok(xa, at[k], 0, P(k)));
	assert_null(store_ok(xa, 10, 0, P(9)));

	for (m = 0; m < XA_MAX_MARKS; m++) {
		for (k = 0; k < ARRAY_SIZE(at); k++) {
			xa_set_mark(xa, at[k], m);
			assert_true(xa_get_mark(xa, at[k], m));
			assert_true(xa_marked(xa, m));
			assert_true(xa_check(xa));
		}
		assert_false(xa_get_mark(xa, 10, m));
		assert_false(xa_get_mark(xa, 8, m));
		/* The root bit goes only with the last mark. */
		for (k = 0; k < ARRAY_SIZE(at); k++) {
			assert_true(xa_marked(xa, m));
			xa_clear_mark(xa, at[k], m);
			assert_false(xa_get_mark(xa, at[k], m));
			assert_true(xa_check(xa));
		}
		assert_false(xa_marked(xa, m));
	}

	/* Marks are independent. */
	xa_set_mark(xa, 9, XA_MARK_0);
	xa_set_mark(xa, 9, XA_MARK_2);
	assert_int_equal(marks_of(xa, 9), (1U << 0) | (1U << 2));
	assert_false(xa_marked(xa, XA_MARK_1));
	xa_clear_mark(xa, 9, XA_MARK_0);
	assert_int_equal(marks_of(xa, 9), 1U << 2);
	/* Setting twice, clearing something unmarked: no-ops. */
	xa_set_mark(xa, 9, XA_MARK_2);
	xa_clear_mark(xa, 10, XA_MARK_2);
	assert_int_equal(marks_of(xa, 9), 1U << 2);
	assert_true(xa_marked(xa, XA_MARK_2));
	/* Erasing the last marked entry clears the root bit too. */
	assert_ptr_equal(xa_erase(xa, 9), P(1));
	assert_false(xa_marked(xa, XA_MARK_2));
	assert_false(xa_get_mark(xa, 9, XA_MARK_2));
	/* A store into the erased slot comes unmarked. */
	assert_null(store_ok(xa, 9, 0, P(1)));
	assert_int_equal(marks_of(xa, 9), 0);
	/* Marking nothing does nothing. */
	xa_set_mark(xa, 11, XA_MARK_0);
	assert_false(xa_marked(xa, XA_MARK_0));
	assert_null(xa_load(xa, 11));
	assert_true(xa_check(xa));
}

static void test_marks_multi_index(void **state)
{
	struct xarray *xa = *state;
	unsigned int order;

	for (order = 1; order <= 12; order++) {
		unsigned long first = (1UL << 30) + (9UL << order);
		unsigned long size = 1UL << order, t, index;
		XA_STATE(xas, xa, 0);

		assert_null(store_ok(xa, first - 3, 0, P(1)));
		assert_null(store_ok(xa, first - 1, 0, P(2)));
		assert_null(store_ok(xa, first + size, 0, P(3)));
		assert_null(store_ok(xa, first, order, P(4)));
		xa_set_mark(xa, first - 3, XA_MARK_0);
		/* Set through the last index: every slot gets it. */
		xa_set_mark(xa, first + size - 1, XA_MARK_0);
		assert_true(xa_check(xa));
		assert_marks_over(xa, first, order, 1U << XA_MARK_0);
		assert_false(xa_get_mark(xa, first - 1, XA_MARK_0));
		assert_false(xa_get_mark(xa, first + size, XA_MARK_0));

		/* Marked searches from tails find it at its first index. */
		for (t = 1; t < size; t += (size > 64 ? size / 16 + 1 : 1)) {
			index = first + t;
			assert_ptr_equal(xa_find(xa, &index, ULONG_MAX,
						 XA_MARK_0), P(4));
			assert_int_equal(index, first);
			index = first + t;
			assert_null(xa_find_after(xa, &index, ULONG_MAX,
						  XA_MARK_0));
			assert_int_equal(index, first + t);
			index = first + t;
			assert_ptr_equal(xa_find_after(xa, &index, ULONG_MAX,
						       XA_PRESENT), P(3));
			assert_int_equal(index, first + size);

			rcu_lock();
			xas_set(&xas, first + t);
			assert_ptr_equal(xas_find_marked(&xas, ULONG_MAX,
							 XA_MARK_0), P(4));
			assert_int_equal(xas.xa_index, first);
			assert_null(xas_find_marked(&xas, ULONG_MAX,
						    XA_MARK_0));
			assert_ptr_equal(xas.xa_node, XAS_BOUNDS);
			/* ... and stays there until the cursor is moved. */
			assert_null(xas_find_marked(&xas, ULONG_MAX,
						    XA_MARK_0));
			rcu_unlock();
		}
		index = first - 2;
		assert_ptr_equal(xa_find(xa, &index, ULONG_MAX, XA_MARK_0),
				 P(4));
		assert_int_equal(index, first);
		/* An unset mark is not found. */
		index = first + 1;
		assert_null(xa_find(xa, &index, ULONG_MAX, XA_MARK_1));

		/* Clear through a middle index: every slot loses it. */
		xa_clear_mark(xa, first + size / 2, XA_MARK_0);
		assert_marks_over(xa, first, order, 0);
		assert_true(xa_marked(xa, XA_MARK_0));	/* first - 3 still */
		assert_true(xa_check(xa));
		xa_clear_mark(xa, first - 3, XA_MARK_0);
		assert_false(xa_marked(xa, XA_MARK_0));
		assert_true(xa_check(xa));
		reset_tree(xa);
	}
}

static void test_marks_survive_same_order(void **state)
{
	struct xarray *xa = *state;
	static const unsigned int orders[] = { 0, 1, 2, 3, 4, 6, 8, 12 };
	unsigned int k;
	const unsigned int both = (1U << XA_MARK_0) | (1U << XA_MARK_2);

	for (k = 0; k < ARRAY_SIZE(orders); k++) {
		unsigned int order = orders[k];
		unsigned long first = 5UL << order;

		assert_null(store_ok(xa, first, order, P(1)));
		xa_set_mark(xa, first, XA_MARK_0);
		xa_set_mark(xa, range_last(first, order), XA_MARK_2);
		assert_ptr_equal(store_ok(xa, first, order, P(2)), P(1));
		assert_covers(xa, first, order, P(2));
		assert_marks_over(xa, first, order, both);
		assert_ptr_equal(store_ok(xa, first, order,
					  xa_mk_value(order)), P(2));
		assert_marks_over(xa, first, order, both);
		assert_true(xa_marked(xa, XA_MARK_0));
		assert_true(xa_marked(xa, XA_MARK_2));
		assert_true(xa_check(xa));

		/* Another order drops them. */
		if (order > 0) {
			assert_ptr_equal(xa_erase(xa, first), xa_mk_value(order));
			assert_null(store_ok(xa, first, order - 1, P(3)));
			assert_marks_over(xa, first, order - 1, 0);
		} else {
			assert_ptr_equal(store_ok(xa, align_down(first, 1), 1,
						  P(3)), NULL);
			assert_marks_over(xa, align_down(first, 1), 1, 0);
		}
		assert_false(xa_marked(xa, XA_MARK_0));
		assert_false(xa_marked(xa, XA_MARK_2));
		assert_true(xa_check(xa));
		reset_tree(xa);
	}

	/* A larger store over marked smaller entries drops their marks. */
	assert_null(store_ok(xa, 64, 3, P(1)));
	xa_set_mark(xa, 64, XA_MARK_1);
	assert_ptr_equal(store_ok(xa, 64, 6, P(2)), P(1));
	assert_marks_over(xa, 64, 6, 0);
	assert_false(xa_marked(xa, XA_MARK_1));
}

static void test_convert_marks(void **state)
{
	struct xarray *xa = *state;
	unsigned long i, index;
	void *entry;
	unsigned int batch;
	static const unsigned int batches[] = { 1, 3, 1000 };

	for (i = 0; i < 100; i++) {
		assert_null(store_ok(xa, i, 0, xa_mk_value(i)));
		if (i % 3 == 0)
			xa_set_mark(xa, i, XA_MARK_0);
	}
	assert_null(store_ok(xa, 128, 4, P(1)));	/* dirty, in range */
	xa_set_mark(xa, 130, XA_MARK_0);
	assert_null(store_ok(xa, 144, 3, P(2)));	/* clean, in range */
	assert_null(store_ok(xa, 192, 6, P(3)));	/* dirty, in range */
	xa_set_mark(xa, 255, XA_MARK_0);
	assert_null(store_ok(xa, 1000, 0, P(4)));	/* dirty, out */
	xa_set_mark(xa, 1000, XA_MARK_0);
	assert_null(store_ok(xa, 1UL << 40, 0, P(5)));	/* dirty, out */
	xa_set_mark(xa, 1UL << 40, XA_MARK_0);
	assert_true(xa_check(xa));

	/* [10, 255]: 12, 15, ..., 99 (30 entries), 128 and 192. */
	assert_int_equal(xa_convert_marks(xa, 10, 255, XA_MARK_0, XA_MARK_2,
					  3), 32);
	assert_true(xa_check(xa));
	assert_true(xa_marked(xa, XA_MARK_2));
	for (i = 0; i < 1100; i++) {
		bool dirty = xa_get_mark(xa, i, XA_MARK_0);
		bool in = i >= 10 && i <= 255;

		assert_int_equal(dirty, (i < 100 && i % 3 == 0) ||
				 (i >= 128 && i < 144) ||
				 (i >= 192 && i < 256) || i == 1000);
		assert_int_equal(xa_get_mark(xa, i, XA_MARK_2), dirty && in);
		assert_false(xa_get_mark(xa, i, XA_MARK_1));
	}
	assert_false(xa_get_mark(xa, 1UL << 40, XA_MARK_2));

	/* Whole range, any batch: all 38 dirty entries, each once. */
	for (batch = 0; batch < ARRAY_SIZE(batches); batch++) {
		xa_for_each_marked(xa, index, entry, XA_MARK_2)
			xa_clear_mark(xa, index, XA_MARK_2);
		assert_false(xa_marked(xa, XA_MARK_2));
		assert_int_equal(xa_convert_marks(xa, 0, ULONG_MAX, XA_MARK_0,
						  XA_MARK_2, batches[batch]),
				 38);
		assert_true(xa_check(xa));
		for (i = 0; i < 1100; i++)
			assert_int_equal(xa_get_mark(xa, i, XA_MARK_2),
					 xa_get_mark(xa, i, XA_MARK_0));
		assert_true(xa_get_mark(xa, 1UL << 40, XA_MARK_2));
	}
	/* No entry has MARK_1: nothing tagged. */
	assert_int_equal(xa_convert_marks(xa, 0, ULONG_MAX, XA_MARK_1,
					  XA_MARK_2, 3), 0);
	assert_int_equal(xa_convert_marks(xa, 0, ULONG_MAX, XA_MARK_0,
					  XA_MARK_1, 2), 38);
	assert_int_equal(xa_convert_marks(xa, 2000, 3000, XA_MARK_0,
					  XA_MARK_1, 2), 0);
	assert_true(xa_check(xa));
}

/* A dirty entry at ULONG_MAX must not make the scan wrap to 0. */
static void test_convert_marks_at_top(void **state)
{
	struct xarray *xa = *state;

	assert_null(store_ok(xa, 0, 0, P(1)));
	assert_null(store_ok(xa, ULONG_MAX, 0, P(2)));
	assert_null(store_ok(xa, ULONG_MAX - 64, 0, P(3)));
	xa_set_mark(xa, 0, XA_MARK_0);
	xa_set_mark(xa, ULONG_MAX, XA_MARK_0);
	xa_set_mark(xa, ULONG_MAX - 64, XA_MARK_0);
	assert_int_equal(xa_convert_marks(xa, 5, ULONG_MAX, XA_MARK_0,
					  XA_MARK_2, 1), 2);
	assert_false(xa_get_mark(xa, 0, XA_MARK_2));
	assert_true(xa_get_mark(xa, ULONG_MAX, XA_MARK_2));
	assert_true(xa_get_mark(xa, ULONG_MAX - 64, XA_MARK_2));
	assert_true(xa_check(xa));

	reset_tree(xa);
	assert_null(store_ok(xa, align_down(ULONG_MAX, 12), 12, P(4)));
	xa_set_mark(xa, ULONG_MAX, XA_MARK_0);
	assert_int_equal(xa_convert_marks(xa, align_down(ULONG_MAX, 12),
					  ULONG_MAX, XA_MARK_0, XA_MARK_2, 3),
			 1);
	assert_marks_over(xa, align_down(ULONG_MAX, 12), 12,
			  (1U << XA_MARK_0) | (1U << XA_MARK_2));
}

/* --- Split ---------------------------------------------------------------- */

static unsigned long split_first(unsigned int order, unsigned int variant)
{
	switch (variant % 3) {
	case 0:
		return 0;
	case 1:
		return (1UL << 40) + (3UL << order);
	default:
		return align_down(ULONG_MAX, order);
	}
}

/*
 * Split an entry of order @from into entries of order @to, through xa_split()
 * (@use_xas false) or xas_split_alloc() + xas_split(), then store a distinct
 * value in each piece with no allocation allowed.
 */
static void split_case(struct xarray *xa, unsigned int from, unsigned int to,
		       bool use_xas)
{
	unsigned long first = split_first(from, from + to + use_xas);
	unsigned long last = range_last(first, from);
	unsigned long pieces = 1UL << (from - to), j, index;
	const unsigned int marks = (1U << XA_MARK_0) | (1U << XA_MARK_2);
	void *e = use_xas ? P(200 + from) : xa_mk_value(from);
	XA_STATE(xas, xa, 0);
	long live;
	int err = 0;
	void *old;
	void *entry;
	size_t n;

	if (first > 0)
		assert_null(store_ok(xa, first - 1, 0, P(1)));
	if (last < ULONG_MAX)
		assert_null(store_ok(xa, last + 1, 0, P(2)));
	assert_null(store_ok(xa, first, from, e));
	xa_set_mark(xa, last, XA_MARK_0);
	xa_set_mark(xa, first + pieces / 2, XA_MARK_2);

	if (use_xas) {
		xas_set_order(&xas, first, to);
		assert_int_equal(xas_split_alloc(&xas, from), 0);
		xa_lock(xa);
		err = xas_split(&xas, e, from);
		xa_unlock(xa);
		xas_destroy(&xas);
		assert_int_equal(xas.xa_nr_alloc, 0);
		assert_int_equal(err, 0);
	} else {
		assert_int_equal(xa_split(xa, last, to), 0);
	}
	assert_true(xa_check(xa));
	assert_true(xa_marked(xa, XA_MARK_0));
	assert_false(xa_marked(xa, XA_MARK_1));

	/* Same entry at every index, now of the new order, marks on all. */
	for (j = 0; j < pieces; j++) {
		unsigned long p = first + (j << to);

		assert_covers(xa, p, to, e);
		assert_marks_over(xa, p, to, marks);
	}
	n = 0;
	xa_for_each_range(xa, index, entry, first, last) {
		assert_true(n < pieces);
		assert_int_equal(index, first + (n << to));
		assert_ptr_equal(entry, e);
		n++;
	}
	assert_int_equal(n, pieces);
	if (first > 0) {
		assert_ptr_equal(xa_load(xa, first - 1), P(1));
		assert_int_equal(marks_of(xa, first - 1), 0);
	}
	if (last < ULONG_MAX) {
		assert_ptr_equal(xa_load(xa, last + 1), P(2));
		assert_int_equal(marks_of(xa, last + 1), 0);
	}

	/* The nodes exist: per-piece stores need no allocation. */
	live = xa_nodes_live();
	xa_fail_alloc_after(0);
	xa_lock(xa);
	for (j = 0; j < pieces && !err; j++) {
		xas_set_order(&xas, first + (j << to), to);
		old = xas_store(&xas, xa_mk_value(100000 + j));
		err = xas_error(&xas);
		if (!err && old != e)
			err = -EIO;
	}
	xa_unlock(xa);
	xa_fail_alloc_after(-1);
	xas_destroy(&xas);
	assert_int_equal(err, 0);
	assert_int_equal(xa_nodes_live(), live);
	assert_true(xa_check(xa));
	for (j = 0; j < pieces; j++) {
		unsigned long p = first + (j << to);

		assert_covers(xa, p, to, xa_mk_value(100000 + j));
		/* Same-order replacement keeps the marks. */
		assert_marks_over(xa, p, to, marks);
	}
	reset_tree(xa);
}

static void test_split_every_order(void **state)
{
	struct xarray *xa = *state;
	unsigned int from, to;

	for (from = 1; from <= 12; from++)
		for (to = 0; to < from; to++)
			split_case(xa, from, to, false);
}

static void test_xas_split_every_order(void **state)
{
	struct xarray *xa = *state;
	unsigned int from, to;

	for (from = 1; from <= 12; from++)
		for (to = 0; to < from; to++)
			split_case(xa, from, to, true);
}

/* xas_split() on a cursor of its own, under the lock. */
static int xas_split_locked(struct xarray *xa, unsigned long index,
			    unsigned int new_order, void *entry,
			    unsigned int order, unsigned int prealloc_order)
{
	XA_STATE_ORDER(xas, xa, index, new_order);
	int err;

	if (prealloc_order)
		assert_int_equal(xas_split_alloc(&xas, prealloc_order), 0);
	xa_lock(xa);
	err = xas_split(&xas, entry, order);
	xa_unlock(xa);
	xas_destroy(&xas);
	assert_int_equal(xas.xa_nr_alloc, 0);
	assert_null(xas.xa_alloc);
	return err;
}

static void test_split_errors(void **state)
{
	struct xarray *xa = *state;
	struct dump before;
	long live;
	int err;

	assert_int_equal(xa_split(xa, 100, 0), -ENOENT);
	assert_null(store_ok(xa, 7, 0, P(1)));
	assert_null(store_ok(xa, 64, 3, P(2)));
	assert_null(store_ok(xa, 512, 9, P(3)));
	assert_null(store_ok(xa, 128, 2, P(4)));
	xa_set_mark(xa, 512, XA_MARK_1);
	dump_tree(xa, &before);
	assert_int_equal(xa_split(xa, 100, 0), -ENOENT);
	assert_int_equal(xa_split(xa, 7, 0), -EINVAL);
	assert_int_equal(xa_split(xa, 70, 3), -EINVAL);
	assert_int_equal(xa_split(xa, 70, 5), -EINVAL);
	assert_tree_unchanged(xa, &before);

	/* xas_split: the cursor's order must be smaller. */
	assert_int_equal(xas_split_locked(xa, 64, 3, P(2), 3, 0), -EINVAL);
	assert_int_equal(xas_split_locked(xa, 64, 4, P(2), 3, 0), -EINVAL);
	/* Nothing preallocated, and the split needs a node. */
	assert_int_equal(xas_split_locked(xa, 64, 0, P(2), 3, 0), -ENOMEM);
	assert_tree_unchanged(xa, &before);
	/* Preallocated for a smaller shape than the entry's. */
	live = xa_nodes_live();
	assert_int_equal(xas_split_locked(xa, 512, 0, P(3), 9, 3), -ENOMEM);
	assert_int_equal(xa_nodes_live(), live);
	assert_tree_unchanged(xa, &before);
	dump_free(&before);

	/* xas_split_alloc() really preallocates; xas_destroy() frees it. */
	{
		XA_STATE(xas, xa, 512);

		assert_int_equal(xas_split_alloc(&xas, 9), 0);
		assert_true(xas.xa_nr_alloc >= 9);
		assert_int_equal(xa_nodes_live(), live + xas.xa_nr_alloc);
		xas_destroy(&xas);
		assert_int_equal(xas.xa_nr_alloc, 0);
		assert_int_equal(xa_nodes_live(), live);
	}

	/* Within one leaf node no allocation is needed at all. */
	xa_fail_alloc_after(0);
	err = xas_split_locked(xa, 128, 0, P(4), 2, 0);
	xa_fail_alloc_after(-1);
	assert_int_equal(err, 0);
	assert_covers(xa, 128, 0, P(4));
	assert_covers(xa, 129, 0, P(4));
	assert_covers(xa, 131, 0, P(4));
	assert_true(xa_check(xa));
}

enum law5_change {
	CHANGE_VALUE,		/* another entry, same order */
	CHANGE_SMALLER,		/* same entry, smaller order */
	CHANGE_LARGER,		/* same entry, larger order */
	CHANGE_ERASED,		/* gone */
	CHANGE_SPLIT,		/* already split by someone else */
	CHANGE_NONE,		/* erased and stored back as it was: still OK */
	NR_CHANGES
};

static void law5_case(struct xarray *xa, unsigned int from, unsigned int to,
		      enum law5_change change)
{
	unsigned long first = (1UL << 24) + (2UL << from);
	unsigned long tail = first + (1UL << from) - 1;
	XA_STATE_ORDER(xas, xa, first, to);
	struct dump before;
	int err;

	assert_null(store_ok(xa, first - 1, 0, P(1)));
	assert_null(store_ok(xa, first, from, P(2)));
	xa_set_mark(xa, first, XA_MARK_0);
	assert_int_equal(xas_split_alloc(&xas, from), 0);

	/* The change happens between allocation and the lock. */
	switch (change) {
	case CHANGE_VALUE:
		assert_ptr_equal(store_ok(xa, first, from, P(3)), P(2));
		break;
	case CHANGE_SMALLER:
		assert_ptr_equal(xa_erase(xa, tail), P(2));
		assert_null(store_ok(xa, first, from - 1, P(2)));
		break;
	case CHANGE_LARGER:
		store_ok(xa, first, from + 1, P(2));
		break;
	case CHANGE_ERASED:
		assert_ptr_equal(xa_erase(xa, tail), P(2));
		break;
	case CHANGE_SPLIT:
		assert_int_equal(xa_split(xa, tail, to), 0);
		break;
	case CHANGE_NONE:
		assert_ptr_equal(xa_erase(xa, tail), P(2));
		assert_null(store_ok(xa, first, from, P(2)));
		break;
	default:
		fail();
	}
	assert_true(xa_check(xa));
	dump_tree(xa, &before);

	xa_lock(xa);
	err = xas_split(&xas, P(2), from);
	xa_unlock(xa);
	xas_destroy(&xas);

	if (change == CHANGE_NONE) {
		unsigned long j;

		assert_int_equal(err, 0);
		assert_true(xa_check(xa));
		for (j = 0; j < (1UL << (from - to)); j++)
			assert_covers(xa, first + (j << to), to, P(2));
	} else {
		assert_int_equal(err, -EAGAIN);
		assert_tree_unchanged(xa, &before);
	}
	dump_free(&before);
	reset_tree(xa);
}

static void test_xas_split_law5(void **state)
{
	static const struct { unsigned int from, to; } cases[] = {
		{ 1, 0 }, { 2, 0 }, { 3, 0 }, { 3, 2 }, { 4, 3 }, { 4, 0 },
		{ 6, 3 }, { 6, 0 }, { 7, 2 }, { 9, 0 }, { 9, 6 }, { 12, 0 },
		{ 12, 9 },
	};
	struct xarray *xa = *state;
	unsigned int k, c;

	for (k = 0; k < ARRAY_SIZE(cases); k++)
		for (c = 0; c < NR_CHANGES; c++)
			law5_case(xa, cases[k].from, cases[k].to, c);
}

/* --- -ENOMEM at every allocation point ------------------------------------ */

struct nomem_op {
	const char	*what;
	/* Returns 0 on success (having checked its result), or -errno. */
	int		(*run)(struct xarray *xa, const struct nomem_op *op);
	unsigned long	index;
	unsigned int	order;
	unsigned int	new_order;
	void		*entry;
	void		*expect;	/* what a successful store returns */
};

static int op_store(struct xarray *xa, const struct nomem_op *op)
{
	void *old = xa_store_order(xa, op->index, op->order, op->entry);

	if (xa_is_err(old))
		return xa_err(old);
	assert_ptr_equal(old, op->expect);
	return 0;
}

static int op_insert(struct xarray *xa, const struct nomem_op *op)
{
	return xa_insert_order(xa, op->index, op->order, op->entry);
}

static int op_cmpxchg(struct xarray *xa, const struct nomem_op *op)
{
	void *old = xa_cmpxchg(xa, op->index, NULL, op->entry);

	if (xa_is_err(old))
		return xa_err(old);
	assert_ptr_equal(old, NULL);
	return 0;
}

static int op_split(struct xarray *xa, const struct nomem_op *op)
{
	return xa_split(xa, op->index, op->new_order);
}

/* The xas_nomem() loop of xarray.h, by hand. */
static int op_xas_store(struct xarray *xa, const struct nomem_op *op)
{
	XA_STATE_ORDER(xas, xa, op->index, op->order);
	void *old;
	int err;

	do {
		xa_lock(xa);
		old = xas_store(&xas, op->entry);
		xa_unlock(xa);
	} while (xas_nomem(&xas));
	err = xas_error(&xas);
	xas_destroy(&xas);
	assert_int_equal(xas.xa_nr_alloc, 0);
	if (!err)
		assert_ptr_equal(old, op->expect);
	else
		assert_null(old);
	return err;
}

static int op_xas_split(struct xarray *xa, const struct nomem_op *op)
{
	XA_STATE_ORDER(xas, xa, op->index, op->new_order);
	long live = xa_nodes_live();
	int err;

	err = xas_split_alloc(&xas, op->order);
	if (err) {
		/* Nothing kept. */
		assert_int_equal(err, -ENOMEM);
		assert_int_equal(xas.xa_nr_alloc, 0);
		assert_null(xas.xa_alloc);
		assert_int_equal(xa_nodes_live(), live);
		return err;
	}
	xa_lock(xa);
	err = xas_split(&xas, op->entry, op->order);
	xa_unlock(xa);
	xas_destroy(&xas);
	return err;
}

/*
 * Run @op with the n-th allocation failing, n = 0, 1, 2, ... until it
 * succeeds; after each -ENOMEM the tree and node count must be as before.
 */
static void nomem_sweep(struct xarray *xa, const struct nomem_op *op)
{
	struct dump before;
	long live, n;
	int err, failures = 0;

	dump_tree(xa, &before);
	live = nodes_settled();
	for (n = 0;; n++) {
		assert_true(n < 4096);
		xa_fail_alloc_after(n);
		err = op->run(xa, op);
		xa_fail_alloc_after(-1);
		if (err != -ENOMEM)
			break;
		failures++;
		assert_tree_unchanged(xa, &before);
		if (xa_nodes_live() != live)
			fs_rcu_barrier();
		assert_int_equal(xa_nodes_live(), live);
	}
	if (err)
		fprintf(stderr, "%s: err %d after %ld allocations\n",
			op->what, err, n);
	assert_int_equal(err, 0);
	/* Each op here needs at least one node. */
	assert_true(failures > 0);
	assert_true(xa_check(xa));
	dump_free(&before);
}

/* A few entries and marks, so a failed operation has something to spoil. */
static void fill_nomem_tree(struct xarray *xa)
{
	reset_tree(xa);
	assert_null(store_ok(xa, 0, 0, P(1)));
	assert_null(store_ok(xa, 100, 0, P(2)));
	assert_null(store_ok(xa, 1UL << 20, 3, P(3)));
	assert_null(store_ok(xa, 1UL << 32, 12, P(4)));
	assert_null(store_ok(xa, 3UL << 32, 9, P(5)));
	assert_null(store_ok(xa, 5UL << 32, 6, xa_mk_value(6)));
	xa_set_mark(xa, 100, XA_MARK_0);
	xa_set_mark(xa, 1UL << 32, XA_MARK_1);
	xa_set_mark(xa, 3UL << 32, XA_MARK_2);
	xa_set_mark(xa, 5UL << 32, XA_MARK_0);
}

static void test_nomem(void **state)
{
	const struct nomem_op ops[] = {
		{ "store at ULONG_MAX", op_store, ULONG_MAX, 0, 0, P(10), NULL },
		{ "store deep", op_store, (1UL << 40) + 12345, 0, 0, P(11),
		  NULL },
		{ "store near an entry", op_store, 200, 0, 0, P(11), NULL },
		{ "store order 12", op_store, 1UL << 30, 12, 0, P(12), NULL },
		{ "store order 7", op_store, (1UL << 20) + 1024, 7, 0, P(12),
		  NULL },
		{ "store order 12 at top", op_store, ULONG_MAX & ~4095UL, 12, 0,
		  P(12), NULL },
		{ "insert order 9", op_insert, 1UL << 33, 9, 0, P(13), NULL },
		{ "insert order 0", op_insert, 7UL << 33, 0, 0, P(13), NULL },
		{ "cmpxchg NULL", op_cmpxchg, (1UL << 41) + 5, 0, 0, P(14),
		  NULL },
		{ "xas store", op_xas_store, (1UL << 42) + 77, 0, 0, P(15),
		  NULL },
		{ "xas store order 5", op_xas_store, 9UL << 32, 5, 0, P(15),
		  NULL },
		{ "split 12 -> 0", op_split, (1UL << 32) + 4000, 12, 0, NULL,
		  NULL },
		{ "split 12 -> 5", op_split, (1UL << 32) + 17, 12, 5, NULL,
		  NULL },
		{ "split 9 -> 2", op_split, (3UL << 32) + 500, 9, 2, NULL,
		  NULL },
		{ "split 6 -> 0", op_split, (5UL << 32) + 63, 6, 0, NULL,
		  NULL },
		{ "split 3 -> 0", op_split, (1UL << 20) + 2, 3, 0, NULL, NULL },
		{ "xas split 12 -> 1", op_xas_split, 1UL << 32, 12, 1, P(4),
		  NULL },
		{ "xas split 9 -> 0", op_xas_split, 3UL << 32, 9, 0, P(5),
		  NULL },
	};
	struct xarray *xa = *state;
	unsigned int k;

	for (k = 0; k < ARRAY_SIZE(ops); k++) {
		const struct nomem_op *op = &ops[k];

		fill_nomem_tree(xa);
		nomem_sweep(xa, op);
		if (op->run == op_split || op->run == op_xas_split) {
			unsigned long first = align_down(op->index, op->order);

			assert_covers(xa, first, op->new_order,
				      xa_load(xa, first));
			assert_int_equal(xa_get_order(xa, range_last(first,
						op->order)), op->new_order);
		} else {
			assert_covers(xa, align_down(op->index, op->order),
				      op->order, op->entry);
		}
		assert_ptr_equal(xa_load(xa, 100), P(2));
		assert_true(xa_get_mark(xa, 100, XA_MARK_0));
	}
}

/* What needs no new node never allocates, so it cannot fail. */
static void test_no_allocation_needed(void **state)
{
	struct xarray *xa = *state;
	XA_STATE(xas, xa, 100);
	void *old;

	fill_nomem_tree(xa);
	assert_null(store_ok(xa, 101, 0, P(7)));
	xa_fail_alloc_after(0);
	assert_ptr_equal(store_ok(xa, 100, 0, P(8)), P(2));
	assert_ptr_equal(store_ok(xa, 1UL << 32, 12, P(9)), P(4));
	assert_ptr_equal(xa_cmpxchg(xa, 101, P(7), P(10)), P(7));
	xa_set_mark(xa, 101, XA_MARK_2);
	xa_clear_mark(xa, 100, XA_MARK_0);
	assert_int_equal(xa_convert_marks(xa, 0, ULONG_MAX, XA_MARK_1,
					  XA_MARK_2, 2), 1);
	xa_lock(xa);
	old = xas_store(&xas, P(11));
	xa_unlock(xa);
	assert_ptr_equal(old, P(8));
	assert_int_equal(xas_error(&xas), 0);
	/* Erasing never needs a node, wherever it is. */
	assert_ptr_equal(xa_erase(xa, (5UL << 32) + 9), xa_mk_value(6));
	assert_ptr_equal(xa_erase(xa, (1UL << 32) + 4095), P(9));
	assert_ptr_equal(xa_erase(xa, (1UL << 20) + 7), P(3));
	assert_ptr_equal(xa_erase(xa, (3UL << 32) + 1), P(5));
	assert_ptr_equal(xa_erase(xa, 0), P(1));
	assert_ptr_equal(xa_erase(xa, 101), P(10));
	assert_ptr_equal(xa_erase(xa, 100), P(11));
	xa_fail_alloc_after(-1);
	assert_true(xa_empty(xa));
	assert_false(xa_marked(xa, XA_MARK_0));
	assert_false(xa_marked(xa, XA_MARK_1));
	assert_false(xa_marked(xa, XA_MARK_2));
}

/* --- The xas cursor API --------------------------------------------------- */

static void test_xas_set_helpers(void **state)
{
	struct xarray *xa = *state;
	XA_STATE_ORDER(xas, xa, 0x1234, 4);

	assert_int_equal(xas.xa_index, 0x1230);
	assert_int_equal(xas.xa_order, 4);
	assert_ptr_equal(xas.xa_node, XAS_RESTART);
	xas_set_order(&xas, ULONG_MAX, 12);
	assert_int_equal(xas.xa_index, align_down(ULONG_MAX, 12));
	assert_int_equal(xas.xa_order, 12);
	xas_set_order(&xas, ULONG_MAX, XA_MAX_ORDER);
	assert_int_equal(xas.xa_index, 1UL << 63);
	xas.xa_node = NULL;
	xas_set(&xas, 77);
	assert_int_equal(xas.xa_index, 77);
	assert_int_equal(xas.xa_order, 0);
	assert_ptr_equal(xas.xa_node, XAS_RESTART);
	xas_set_err(&xas, -EBUSY);
	assert_int_equal(xas_error(&xas), -EBUSY);
}

static void test_xas_load(void **state)
{
	struct xarray *xa = *state;
	XA_STATE(xas, xa, 90);
	void *e;

	fill_find_tree(xa);

	/* Under RCU: the cursor lands on the canonical slot. */
	rcu_lock();
	e = xas_load(&xas);
	assert_ptr_equal(e, P(4));
	assert_non_null(xas.xa_node);
	assert_ptr_not_equal(xas.xa_node, XAS_RESTART);
	assert_int_equal(xas.xa_node->shift, 3);
	assert_int_equal(xas.xa_offset, (80 >> 3) & XA_CHUNK_MASK);
	assert_int_equal(xas_get_order(&xas), 4);
	assert_ptr_equal(xas_reload(&xas), P(4));
	xas_set(&xas, 6);
	assert_null(xas_load(&xas));
	xas_set(&xas, 5);
	assert_ptr_equal(xas_load(&xas), P(2));
	assert_int_equal(xas_get_order(&xas), 0);
	xas_set(&xas, (1UL << 40) + 300);
	assert_ptr_equal(xas_load(&xas), P(5));
	assert_int_equal(xas_get_order(&xas), 9);
	assert_int_equal(xas.xa_node->shift, 9);
	xas_set(&xas, ULONG_MAX);
	assert_ptr_equal(xas_load(&xas), P(6));
	assert_int_equal(xas.xa_offset, XA_CHUNK_MASK);
	rcu_unlock();

	/* Under xa_lock too. */
	xa_lock(xa);
	xas_set(&xas, 71);
	e = xas_load(&xas);
	xa_unlock(xa);
	assert_ptr_equal(e, P(3));
}

/* Law 1: reload sees what is there now, not what the cursor saw. */
static void test_xas_reload(void **state)
{
	struct xarray *xa = *state;
	XA_STATE(xas, xa, 90);
	void *seen, *now, *again;
	unsigned int order;

	assert_null(store_ok(xa, 64, 5, P(1)));		/* 64..95 */
	assert_null(store_ok(xa, 3, 0, P(2)));

	rcu_lock();
	seen = xas_load(&xas);
	assert_ptr_equal(seen, P(1));

	/* Same shape, another entry. */
	assert_ptr_equal(store_ok(xa, 64, 5, P(3)), P(1));
	assert_ptr_equal(xas_reload(&xas), P(3));

	/* Split under the reader: the entry covering 90 is now 88's. */
	assert_int_equal(xa_split(xa, 64, 3), 0);
	assert_ptr_equal(store_ok(xa, 64, 3, P(4)), P(3));
	assert_ptr_equal(store_ok(xa, 88, 3, P(5)), P(3));
	assert_ptr_equal(xas_reload(&xas), P(5));

	/* Gone. */
	assert_ptr_equal(xa_erase(xa, 90), P(5));
	assert_null(xas_reload(&xas));

	/* The node left the tree: retry or NULL, never the old entry. */
	assert_ptr_equal(xa_erase(xa, 64), P(4));
	assert_ptr_equal(xa_erase(xa, 72), P(3));
	assert_ptr_equal(xa_erase(xa, 80), P(3));
	now = xas_reload(&xas);
	assert_true(now == NULL || xa_is_retry(now));
	if (xas_retry(&xas, now)) {
		assert_ptr_equal(xas.xa_node, XAS_RESTART);
		again = xas_reload(&xas);
		assert_null(again);
	}
	rcu_unlock();

	/* xas_reload on a reset cursor walks. */
	assert_null(store_ok(xa, 90, 0, P(6)));
	xas_set(&xas, 90);
	rcu_lock();
	assert_ptr_equal(xas_reload(&xas), P(6));
	order = xas_get_order(&xas);
	rcu_unlock();
	assert_int_equal(order, 0);
}

static void test_xas_retry(void **state)
{
	struct xarray *xa = *state;
	XA_STATE(xas, xa, 5);

	assert_null(store_ok(xa, 5, 0, P(1)));
	rcu_lock();
	assert_ptr_equal(xas_load(&xas), P(1));
	assert_false(xas_retry(&xas, P(1)));
	assert_false(xas_retry(&xas, NULL));
	assert_false(xas_retry(&xas, xa_mk_value(3)));
	assert_ptr_not_equal(xas.xa_node, XAS_RESTART);
	assert_true(xas_retry(&xas, XA_RETRY_ENTRY));
	assert_ptr_equal(xas.xa_node, XAS_RESTART);
	assert_ptr_equal(xas_load(&xas), P(1));
	rcu_unlock();
}

static void test_xas_store_nomem_cycle(void **state)
{
	struct xarray *xa = *state;
	XA_STATE(xas, xa, 1UL << 40);
	long live;
	void *old;
	int err;

	/* Nothing preallocated: -ENOMEM, nothing changed. */
	xa_lock(xa);
	old = xas_store(&xas, P(1));
	err = xas_error(&xas);
	xa_unlock(xa);
	assert_null(old);
	assert_int_equal(err, -ENOMEM);
	assert_true(xas.xa_need >= 1);
	assert_true(xa_empty(xa));
	assert_int_equal(xa_nodes_live(), 0);

	/* A failing allocation: xas_nomem says do not retry. */
	xa_fail_alloc_after(0);
	assert_false(xas_nomem(&xas));
	xa_fail_alloc_after(-1);
	assert_int_equal(xas_error(&xas), -ENOMEM);
	xas_destroy(&xas);
	assert_int_equal(xa_nodes_live(), 0);

	/* Allocate, and the store then runs without allocating. */
	assert_true(xas_nomem(&xas));
	assert_true(xas.xa_nr_alloc >= xas.xa_need);
	live = xa_nodes_live();
	assert_int_equal(live, xas.xa_nr_alloc);
	xa_fail_alloc_after(0);
	xa_lock(xa);
	old = xas_store(&xas, P(1));
	err = xas_error(&xas);
	xa_unlock(xa);
	xa_fail_alloc_after(-1);
	assert_null(old);
	assert_int_equal(err, 0);
	assert_false(xas_nomem(&xas));
	xas_destroy(&xas);
	assert_int_equal(xas.xa_nr_alloc, 0);
	assert_null(xas.xa_alloc);
	assert_ptr_equal(xa_load(xa, 1UL << 40), P(1));
	assert_int_equal(xa_nodes_live(), live);
	assert_true(xa_check(xa));

	/* Preallocated nodes not needed after all are freed by xas_destroy. */
	xas_set(&xas, 1UL << 50);
	xa_lock(xa);
	assert_null(xas_store(&xas, P(2)));
	xa_unlock(xa);
	assert_int_equal(xas_error(&xas), -ENOMEM);
	assert_true(xas_nomem(&xas));
	assert_true(xa_nodes_live() > live);
	assert_null(store_ok(xa, 1UL << 50, 0, P(3)));	/* someone else */
	xa_lock(xa);
	old = xas_store(&xas, P(2));
	xa_unlock(xa);
	assert_ptr_equal(old, P(3));
	assert_int_equal(xas_error(&xas), 0);
	xas_destroy(&xas);
	assert_int_equal(xas.xa_nr_alloc, 0);
	assert_ptr_equal(xa_load(xa, 1UL << 50), P(2));
	assert_true(xa_check(xa));
	assert_ptr_equal(xa_erase(xa, 1UL << 50), P(2));
	assert_ptr_equal(xa_erase(xa, 1UL << 40), P(1));
	assert_int_equal(nodes_settled(), 0);
}

/*
 * One xas_store() on a fresh cursor with nothing preallocated; returns the
 * error, and checks that a failed store returns NULL.
 */
static int xas_store_locked(struct xarray *xa, unsigned long index,
			    unsigned int order, void *entry)
{
	struct xa_state xas = {
		.xa = xa,
		.xa_index = index,
		.xa_order = order,
		.xa_node = XAS_RESTART,
	};
	void *old;
	int err;

	xa_lock(xa);
	old = xas_store(&xas, entry);
	err = xas_error(&xas);
	xa_unlock(xa);
	xas_destroy(&xas);
	if (err)
		assert_null(old);
	return err;
}

static void test_xas_store(void **state)
{
	struct xarray *xa = *state;
	XA_STATE_ORDER(xas, xa, 64, 4);
	struct dump before;
	void *old, *old2;
	int err;

	do {
		xa_lock(xa);
		old = xas_store(&xas, P(1));
		xa_unlock(xa);
	} while (xas_nomem(&xas));
	xas_destroy(&xas);
	assert_int_equal(xas_error(&xas), 0);
	assert_null(old);
	assert_covers(xa, 64, 4, P(1));
	assert_null(store_ok(xa, 63, 0, P(2)));
	assert_null(store_ok(xa, 80, 0, P(3)));
	assert_true(xa_check(xa));

	/* Under the lock: replace, then read it back with the cursor. */
	xa_lock(xa);
	xas_set_order(&xas, 64, 4);
	old = xas_store(&xas, P(4));
	err = xas_error(&xas);
	old2 = xas_load(&xas);
	xa_unlock(xa);
	assert_int_equal(err, 0);
	assert_ptr_equal(old, P(1));
	assert_ptr_equal(old2, P(4));

	/* Errors change nothing. */
	dump_tree(xa, &before);
	assert_int_equal(xas_store_locked(xa, 72, 3, P(5)), -EBUSY);
	assert_int_equal(xas_store_locked(xa, 70, 0, P(5)), -EBUSY);
	assert_int_equal(xas_store_locked(xa, 64, 0, P(5)), -EBUSY);
	assert_int_equal(xas_store_locked(xa, 90, 0, xa_mk_internal(3)),
			 -EINVAL);
	assert_int_equal(xas_store_locked(xa, 90, 0, XA_RETRY_ENTRY), -EINVAL);
	assert_int_equal(xas_store_locked(xa, 90, XA_MAX_ORDER + 1, P(5)),
			 -EINVAL);
	assert_tree_unchanged(xa, &before);
	dump_free(&before);

	/* NULL at order 0 on a tail erases the whole covering entry. */
	xa_lock(xa);
	xas_set(&xas, 77);
	old = xas_store(&xas, NULL);
	err = xas_error(&xas);
	xa_unlock(xa);
	assert_int_equal(err, 0);
	assert_ptr_equal(old, P(4));
	assert_covers(xa, 64, 4, NULL);
	assert_ptr_equal(xa_load(xa, 63), P(2));
	assert_ptr_equal(xa_load(xa, 80), P(3));
	assert_int_equal(count_entries(xa), 2);
	assert_true(xa_check(xa));
	xas_destroy(&xas);
}

static void collect_find(struct xa_state *xas, unsigned long max,
			 const unsigned int *want, size_t nr_want, bool pause,
			 bool marked, xa_mark_t mark)
{
	size_t n = 0;
	void *e;

	for (;;) {
		e = marked ? xas_find_marked(xas, max, mark) :
			     xas_find(xas, max);
		if (!e)
			break;
		assert_true(n < nr_want);
		assert_ptr_equal(e, P(find_tree[want[n]].n));
		assert_int_equal(xas->xa_index, find_tree[want[n]].index);
		n++;
		if (pause) {
			xas_pause(xas);
			rcu_unlock();
			rcu_lock();
		}
	}
	assert_int_equal(n, nr_want);
	assert_ptr_equal(xas->xa_node, XAS_BOUNDS);
	/* Past the end it stays past the end until moved. */
	assert_null(marked ? xas_find_marked(xas, max, mark) :
			     xas_find(xas, max));
}

static void test_xas_find(void **state)
{
	static const unsigned int all[] = { 0, 1, 2, 3, 4, 5 };
	struct xarray *xa = *state;
	XA_STATE(xas, xa, 0);

	fill_find_tree(xa);
	rcu_lock();
	collect_find(&xas, ULONG_MAX, all, 6, false, false, 0);
	xas_set(&xas, 0);
	collect_find(&xas, ULONG_MAX, all, 6, true, false, 0);
	xas_set(&xas, 90);			/* tail of D */
	collect_find(&xas, ULONG_MAX, all + 3, 3, false, false, 0);
	xas_set(&xas, 90);
	collect_find(&xas, ULONG_MAX, all + 3, 3, true, false, 0);
	xas_set(&xas, 6);
	collect_find(&xas, 79, all + 2, 1, false, false, 0);
	xas_set(&xas, 6);
	collect_find(&xas, 85, all + 2, 2, false, false, 0);
	xas_set(&xas, 96);
	collect_find(&xas, (1UL << 40) - 1, all, 0, false, false, 0);
	xas_set(&xas, ULONG_MAX);
	collect_find(&xas, ULONG_MAX, all + 5, 1, true, false, 0);
	rcu_unlock();

	/* The same under xa_lock. */
	xa_lock(xa);
	xas_set(&xas, 1);
	collect_find(&xas, ULONG_MAX, all + 1, 5, false, false, 0);
	xa_unlock(xa);
}

static void test_xas_find_marked(void **state)
{
	static const unsigned int marked[] = { 1, 3, 5 };
	struct xarray *xa = *state;
	XA_STATE(xas, xa, 0);

	fill_find_tree(xa);
	xa_set_mark(xa, 5, XA_MARK_1);
	xa_set_mark(xa, 95, XA_MARK_1);
	xa_set_mark(xa, ULONG_MAX, XA_MARK_1);
	xa_set_mark(xa, 0, XA_MARK_2);

	rcu_lock();
	collect_find(&xas, ULONG_MAX, marked, 3, false, true, XA_MARK_1);
	xas_set(&xas, 0);
	collect_find(&xas, ULONG_MAX, marked, 3, true, true, XA_MARK_1);
	xas_set(&xas, 81);
	collect_find(&xas, ULONG_MAX, marked + 1, 2, false, true, XA_MARK_1);
	xas_set(&xas, 81);
	collect_find(&xas, ULONG_MAX, marked + 1, 2, true, true, XA_MARK_1);
	xas_set(&xas, 6);
	collect_find(&xas, 1UL << 50, marked + 1, 1, false, true, XA_MARK_1);
	xas_set(&xas, 1);
	collect_find(&xas, ULONG_MAX, marked, 0, false, true, XA_MARK_2);
	xas_set(&xas, 0);
	collect_find(&xas, ULONG_MAX, marked, 0, false, true, XA_MARK_0);
	rcu_unlock();

	xa_lock(xa);
	xas_set(&xas, 0);
	collect_find(&xas, ULONG_MAX, marked, 3, false, true, XA_MARK_1);
	xa_unlock(xa);
}

/* Pausing after an entry that ends at ULONG_MAX must not wrap to 0. */
static void test_xas_pause_at_top(void **state)
{
	struct xarray *xa = *state;
	unsigned long top = align_down(ULONG_MAX, 12);
	XA_STATE(xas, xa, 0);
	void *e;
	size_t n = 0;

	assert_null(store_ok(xa, 0, 0, P(1)));
	assert_null(store_ok(xa, top, 12, P(2)));
	xa_set_mark(xa, 0, XA_MARK_0);
	xa_set_mark(xa, top, XA_MARK_0);
	rcu_lock();
	while ((e = xas_find(&xas, ULONG_MAX))) {
		assert_true(n < 2);
		assert_ptr_equal(e, n ? P(2) : P(1));
		assert_int_equal(xas.xa_index, n ? top : 0);
		xas_pause(&xas);
		n++;
	}
	assert_int_equal(n, 2);
	n = 0;
	xas_set(&xas, 0);
	while ((e = xas_find_marked(&xas, ULONG_MAX, XA_MARK_0))) {
		assert_true(n < 2);
		xas_pause(&xas);
		n++;
	}
	assert_int_equal(n, 2);
	rcu_unlock();
}

static void test_xas_marks(void **state)
{
	struct xarray *xa = *state;
	XA_STATE(xas, xa, 90);
	bool got, got_after_clear, other;

	fill_find_tree(xa);

	/* A fresh cursor loads first; all slots of D get the mark. */
	xa_lock(xa);
	xas_set_mark(&xas, XA_MARK_2);
	got = xas_get_mark(&xas, XA_MARK_2);
	other = xas_get_mark(&xas, XA_MARK_0);
	xa_unlock(xa);
	assert_true(got);
	assert_false(other);
	assert_marks_over(xa, 80, 4, 1U << XA_MARK_2);
	assert_int_equal(marks_of(xa, 79), 0);
	assert_int_equal(marks_of(xa, 96), 0);
	assert_true(xa_marked(xa, XA_MARK_2));
	assert_true(xa_check(xa));

	rcu_lock();
	xas_set(&xas, 81);
	got = xas_get_mark(&xas, XA_MARK_2);
	xas_set(&xas, 5);
	other = xas_get_mark(&xas, XA_MARK_2);
	rcu_unlock();
	assert_true(got);
	assert_false(other);

	/* Deep: ULONG_MAX; propagates to the root bit. */
	xa_lock(xa);
	xas_set(&xas, ULONG_MAX);
	assert_ptr_equal(xas_load(&xas), P(6));
	xas_set_mark(&xas, XA_MARK_0);
	got = xas_get_mark(&xas, XA_MARK_0);
	xa_unlock(xa);
	assert_true(got);
	assert_true(xa_get_mark(xa, ULONG_MAX, XA_MARK_0));
	assert_true(xa_marked(xa, XA_MARK_0));
	assert_true(xa_check(xa));

	xa_lock(xa);
	xas_set(&xas, 95);
	xas_clear_mark(&xas, XA_MARK_2);
	got_after_clear = xas_get_mark(&xas, XA_MARK_2);
	xas_set(&xas, ULONG_MAX);
	xas_clear_mark(&xas, XA_MARK_0);
	xa_unlock(xa);
	assert_false(got_after_clear);
	assert_marks_over(xa, 80, 4, 0);
	assert_false(xa_marked(xa, XA_MARK_2));
	assert_false(xa_marked(xa, XA_MARK_0));
	assert_true(xa_check(xa));
}

static void test_xas_get_order(void **state)
{
	struct xarray *xa = *state;
	unsigned int order, got[13];
	XA_STATE(xas, xa, 0);

	for (order = 0; order <= 12; order++)
		assert_null(store_ok(xa, (unsigned long)(order + 1) << 13,
				     order, P(order)));
	rcu_lock();
	for (order = 0; order <= 12; order++) {
		xas_set(&xas, ((unsigned long)(order + 1) << 13) +
			      range_last(0, order));
		assert_ptr_equal(xas_load(&xas), P(order));
		got[order] = xas_get_order(&xas);
	}
	rcu_unlock();
	for (order = 0; order <= 12; order++)
		assert_int_equal(got[order], order);
}

/* --- Locking-table claims ------------------------------------------------- */

static void test_xa_lock_held(void **state)
{
	struct xarray *xa = *state;

	assert_false(xa_lock_held(xa));
	xa_lock(xa);
	assert_true(xa_lock_held(xa));
	xa_unlock(xa);
	assert_false(xa_lock_held(xa));
}

struct reader_result {
	struct xarray	*xa;
	void		*load, *find, *xas;
	unsigned long	find_index;
	unsigned int	order;
	bool		mark;
};

static void *reader_thread(void *arg)
{
	struct reader_result *r = arg;
	unsigned long index = 70;
	XA_STATE(xas, r->xa, 71);

	fs_rcu_register_thread();
	r->load = xa_load(r->xa, 65);
	r->find = xa_find(r->xa, &index, ULONG_MAX, XA_MARK_1);
	r->find_index = index;
	r->mark = xa_get_mark(r->xa, 71, XA_MARK_1);
	r->order = xa_get_order(r->xa, 66);
	fs_rcu_read_lock();
	r->xas = xas_load(&xas);
	fs_rcu_read_unlock();
	fs_rcu_unregister_thread();
	return NULL;
}

/* Readers take only the RCU read lock: they run while xa_lock is held. */
static void test_readers_do_not_take_xa_lock(void **state)
{
	struct xarray *xa = *state;
	struct reader_result r = { .xa = xa };
	struct timespec deadline;
	pthread_t t;
	int rc;

	assert_null(store_ok(xa, 64, 3, P(1)));
	xa_set_mark(xa, 64, XA_MARK_1);

	xa_lock(xa);
	assert_int_equal(pthread_create(&t, NULL, reader_thread, &r), 0);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 30;
	rc = pthread_timedjoin_np(t, NULL, &deadline);
	xa_unlock(xa);
	if (rc)
		pthread_join(t, NULL);
	assert_int_equal(rc, 0);
	assert_ptr_equal(r.load, P(1));
	assert_ptr_equal(r.find, P(1));
	assert_int_equal(r.find_index, 64);
	assert_true(r.mark);
	assert_int_equal(r.order, 3);
	assert_ptr_equal(r.xas, P(1));
}

static void test_destroy_and_reuse(void **state)
{
	struct xarray *xa = *state;
	unsigned long i;

	for (i = 0; i < 300; i++)
		assert_null(store_ok(xa, i * 37, 0, xa_mk_value(i)));
	assert_null(store_ok(xa, 1UL << 40, 12, P(1)));
	assert_null(store_ok(xa, ULONG_MAX, 0, P(2)));
	xa_set_mark(xa, 37, XA_MARK_0);
	xa_set_mark(xa, 1UL << 40, XA_MARK_1);
	xa_set_mark(xa, ULONG_MAX, XA_MARK_2);
	assert_true(xa_nodes_live() > 0);
	assert_true(xa_check(xa));

	xa_destroy(xa);
	assert_true(xa_empty(xa));
	assert_false(xa_marked(xa, XA_MARK_0));
	assert_false(xa_marked(xa, XA_MARK_1));
	assert_false(xa_marked(xa, XA_MARK_2));
	assert_null(xa_load(xa, 37));
	assert_null(xa_load(xa, (1UL << 40) + 5));
	assert_int_equal(count_entries(xa), 0);
	assert_int_equal(nodes_settled(), 0);
	assert_true(xa_check(xa));

	/* Usable again without xa_init. */
	assert_null(store_ok(xa, 5, 0, P(3)));
	assert_ptr_equal(xa_load(xa, 5), P(3));
	xa_destroy(xa);
	xa_destroy(xa);
	assert_true(xa_empty(xa));
}

/* --- main ----------------------------------------------------------------- */

#define T(f)	cmocka_unit_test_setup_teardown(f, setup_tree, teardown_tree)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_empty_tree),
		T(test_node_accounting),
		T(test_value_entries),
		T(test_sparse_indices),
		T(test_store_replace_erase),
		T(test_store_invalid),
		T(test_insert),
		T(test_cmpxchg),
		T(test_multi_index_every_order),
		T(test_erase_from_every_index),
		T(test_huge_orders),
		T(test_store_same_order_replace),
		T(test_store_larger_replaces_smaller),
		T(test_find),
		T(test_for_each),
		T(test_iteration_at_top),
		T(test_marks_order0),
		T(test_marks_multi_index),
		T(test_marks_survive_same_order),
		T(test_convert_marks),
		T(test_convert_marks_at_top),
		T(test_split_every_order),
		T(test_xas_split_every_order),
		T(test_split_errors),
		T(test_xas_split_law5),
		T(test_nomem),
		T(test_no_allocation_needed),
		T(test_xas_set_helpers),
		T(test_xas_load),
		T(test_xas_reload),
		T(test_xas_retry),
		T(test_xas_store_nomem_cycle),
		T(test_xas_store),
		T(test_xas_find),
		T(test_xas_find_marked),
		T(test_xas_pause_at_top),
		T(test_xas_marks),
		T(test_xas_get_order),
		T(test_xa_lock_held),
		T(test_readers_do_not_take_xa_lock),
		T(test_destroy_and_reuse),
	};
	long live;
	int failed;

	fs_rcu_register_thread();
	failed = cmocka_run_group_tests(tests, NULL, NULL);

	/* Every tree is destroyed: after a grace period no node may be left. */
	fs_rcu_barrier();
	live = xa_nodes_live();
	if (live != 0) {
		fprintf(stderr, "LEAK: %ld xarray nodes still live at exit\n",
			live);
		failed++;
	}
	fs_rcu_unregister_thread();
	return failed ? 1 : 0;
}
