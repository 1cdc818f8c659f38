/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blkstate.c - per-block uptodate, dirty and reserved bits of a folio (see
 * blkstate.h for the contract).
 *
 * Every function resolves its byte range to a block range [first, end),
 * then works on one of two representations: the bitmaps under the
 * blkstate's mutex, or (the flag form, no blkstate) the folio flags, where
 * a range counts only if it satisfies the rounding for the whole folio.
 * After any bitmap change, bs_sync_flags() brings the derived folio flags in
 * step before the mutex is dropped, so a flag and its bitmap never disagree
 * for anyone who takes the mutex.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "blkstate.h"
#include "faultinj.h"

enum bs_map { BS_UPTODATE, BS_DIRTY, BS_RESERVED, BS_NR_MAPS };

/* The folio flag each map is summed up in (and stands for in flag form). */
static const enum folio_flag flag_of[BS_NR_MAPS] = {
	[BS_UPTODATE] = FOLIO_UPTODATE,
	[BS_DIRTY] = FOLIO_DIRTY,
	[BS_RESERVED] = FOLIO_DELALLOC,
};

struct blkstate {
	pthread_mutex_t	lock;
	/* Freed after a grace period (testers hold only RCU). */
	struct rcu_head	rcu;
	/* Fixed at attach. */
	unsigned short	nr_blocks;
	unsigned char	blkbits;
	/* Set bits in each map. Under lock. */
	unsigned short	count[BS_NR_MAPS];
	/* BS_NR_MAPS bitmaps of nr_blocks bits, one after the other. Under
	 * lock. */
	unsigned long	bits[];
};

#define BITS_TO_LONGS(n)	DIV_ROUND_UP(n, BITS_PER_LONG)

/* ---- Accounting and fault injection ---------------------------------- */

static long nr_live;
static long bytes_live;
/* Allocations the tests make fail (faultinj.h). */
static struct fs_fault alloc_fault;

long blkstate_live(void)
{
	return __atomic_load_n(&nr_live, __ATOMIC_RELAXED);
}

long blkstate_bytes_live(void)
{
	return __atomic_load_n(&bytes_live, __ATOMIC_RELAXED);
}

void blkstate_fail_alloc(long after, long count)
{
#ifdef FOLIOFS_TESTING
	fs_fault_arm(&alloc_fault, after, count);
#else
	(void)after;
	(void)count;
#endif
}


static size_t bs_alloc_size(unsigned int nr_blocks)
{
	return sizeof(struct blkstate) +
	       BS_NR_MAPS * BITS_TO_LONGS(nr_blocks) * sizeof(unsigned long);
}

/* A zeroed blkstate, not yet attached to anything. */
static struct blkstate *bs_alloc(unsigned int nr_blocks, unsigned int blkbits)
{
	size_t size = bs_alloc_size(nr_blocks);
	struct blkstate *bs;

	if (fs_fault_hit(&alloc_fault))
		return NULL;
	bs = calloc(1, size);
	if (!bs)
		return NULL;
	pthread_mutex_init(&bs->lock, NULL);
	bs->nr_blocks = nr_blocks;
	bs->blkbits = blkbits;
	__atomic_add_fetch(&nr_live, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&bytes_live, (long)size, __ATOMIC_RELAXED);
	return bs;
}

/* Free a blkstate no one else can see. */
static void bs_free_now(struct blkstate *bs)
{
	size_t size = bs_alloc_size(bs->nr_blocks);

	pthread_mutex_destroy(&bs->lock);
	free(bs);
	__atomic_sub_fetch(&nr_live, 1, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&bytes_live, (long)size, __ATOMIC_RELAXED);
}

static void bs_rcu_free(struct rcu_head *head)
{
	/* Pairs with bs_free_rcu()'s release and every read-side unlock. */
	fs_rcu_tsan_acquire();
	bs_free_now(container_of(head, struct blkstate, rcu));
}

/* Free a blkstate that testers may still be looking at. */
static void bs_free_rcu(struct blkstate *bs)
{
	/* TSan cannot see liburcu hand the callback to its worker. */
	fs_rcu_tsan_release();
	fs_call_rcu(&bs->rcu, bs_rcu_free);
}

/* ---- Bitmaps (callers hold bs->lock) ---------------------------------- */

static unsigned long *bs_map(struct blkstate *bs, enum bs_map which)
{
	return bs->bits + which * BITS_TO_LONGS(bs->nr_blocks);
}

/* Mask of bits [b, b + n) of a word; n >= 1, b + n <= BITS_PER_LONG. */
static unsigned long word_mask(unsigned int b, unsigned int n)
{
	return (n == (unsigned int)BITS_PER_LONG ? ~0UL : (1UL << n) - 1) << b;
}

enum { RANGE_COUNT, RANGE_SET, RANGE_CLEAR };

/*
 * Apply @op to bits [start, end): count the set bits, set or clear.
 * Return: bits set (count), newly set (set) or newly cleared (clear).
 */

static unsigned int bitmap_range(unsigned long *map, unsigned int start,
				 unsigned int end, int op)
{
	unsigned int n = 0;

	while (start < end) {
		unsigned int w = start / BITS_PER_LONG;
		unsigned int b = start % BITS_PER_LONG;
		unsigned int len = end - start;
		unsigned long mask;

		if (len > BITS_PER_LONG - b)
			len = BITS_PER_LONG - b;
		mask = word_mask(b, len);
		switch (op) {
		case RANGE_COUNT:
			n += __builtin_popcountl(map[w] & mask);
			break;
		case RANGE_SET:
			n += __builtin_popcountl(~map[w] & mask);
			map[w] |= mask;
			break;
		case RANGE_CLEAR:
			n += __builtin_popcountl(map[w] & mask);
			map[w] &= ~mask;
			break;
		}
		start += len;
	}
	return n;
}

static bool test_bit(const unsigned long *map, unsigned int bit)
{
	return map[bit / BITS_PER_LONG] & (1UL << (bit % BITS_PER_LONG));
}

/* First bit at or after @start whose value is @set, or @size. */
static unsigned int find_next(const unsigned long *map, unsigned int size,
			      unsigned int start, bool set)
{
	while (start < size) {
		unsigned int w = start / BITS_PER_LONG;
		unsigned int b = start % BITS_PER_LONG;
		unsigned long word = set ? map[w] : ~map[w];

		word &= ~0UL << b;
		if (word) {
			start = w * BITS_PER_LONG + __builtin_ctzl(word);
			return start < size ? start : size;
		}
		start = (w + 1) * BITS_PER_LONG;
	}
	return size;
}

/* Bring the derived folio flags in step with the counts. */
static void bs_sync_flags(struct folio *folio, struct blkstate *bs)
{
	const bool want[BS_NR_MAPS] = {
		[BS_UPTODATE] = bs->count[BS_UPTODATE] == bs->nr_blocks,
		[BS_DIRTY] = bs->count[BS_DIRTY] != 0,
		[BS_RESERVED] = bs->count[BS_RESERVED] != 0,
	};
	unsigned long flags = folio_flags(folio);
	int m;

	for (m = 0; m < BS_NR_MAPS; m++) {
		if (want[m] == !!(flags & (1UL << flag_of[m])))
			continue;
		/* A set's release publishes the data the bits vouch for to
		 * readers that test FOLIO_UPTODATE instead of taking our
		 * mutex. */
		if (want[m])
			folio_set_flag(folio, flag_of[m]);
		else
			folio_clear_flag(folio, flag_of[m]);
	}
}

/* ---- Ranges ---------------------------------------------------------- */

struct blk_range {
	unsigned int	first;
	unsigned int	end;	/* exclusive; end <= first means empty */
	unsigned int	nr;	/* blocks in the folio */
};

/*
 * Resolve [off, off + len) to blocks, rounding @inward or outward. A range
 * that leaves the folio is a caller bug: warn and treat it as empty.
 */
static struct blk_range blk_range(const struct folio *folio, size_t off,
				  size_t len, bool inward)
{
	unsigned int bits = folio->blkbits;
	size_t bsize = (size_t)1 << bits;
	size_t size = folio_size(folio);
	struct blk_range r = { .nr = folio_nr_blocks(folio) };

	if (FOLIO_WARN_ON(off > size || len > size - off, folio) || !len)
		return r;
	if (inward) {
		r.first = (off + bsize - 1) >> bits;
		r.end = (off + len) >> bits;
	} else {
		r.first = off >> bits;
		r.end = (off + len + bsize - 1) >> bits;
	}
	return r;
}

static bool range_empty(struct blk_range r)
{
	return r.end <= r.first;
}

static bool range_whole(struct blk_range r)
{
	return r.first == 0 && r.end == r.nr;
}

/* Load the blkstate a tester may look at; caller holds RCU. */
static struct blkstate *bs_load(struct folio *folio)
{
	/* Pairs with the release store in blkstate_attach(). */
	return load_acquire(&folio->private);
}

/*
 * Change map @which over @r: set (@set) or clear. Flag form: @flag stands for
 * every block; an outward (@inward false) range changes it if it touches the
 * folio, an inward one only if it covers all of it.
 */
static unsigned int bs_change(struct folio *folio, struct blk_range r,
			      enum bs_map which, enum folio_flag flag,
			      bool set, bool inward)
{
	struct blkstate *bs = bs_load(folio);
	unsigned int n;

	if (range_empty(r))
		return 0;
	if (!bs) {
		if (inward && !range_whole(r))
			return 0;
		if (set)
			return folio_test_set_flag(folio, flag) ? 0 : r.nr;
		return folio_test_clear_flag(folio, flag) ? r.nr : 0;
	}
	pthread_mutex_lock(&bs->lock);
	n = bitmap_range(bs_map(bs, which), r.first, r.end,
			 set ? RANGE_SET : RANGE_CLEAR);
	if (set)
		bs->count[which] += n;
	else
		bs->count[which] -= n;
	bs_sync_flags(folio, bs);
	pthread_mutex_unlock(&bs->lock);
	return n;
}

/* ---- Attach and release ------------------------------------------------ */

/* Build @bs's maps from @folio's flags (the flag form's meaning). */
static void bs_init_from_flags(struct blkstate *bs, unsigned long flags)
{
	int m;

	for (m = 0; m < BS_NR_MAPS; m++) {
		unsigned long *map = bs_map(bs, m);

		if (flags & (1UL << flag_of[m]))
			bs->count[m] = bitmap_range(map, 0, bs->nr_blocks,
						    RANGE_SET);
		else
			bs->count[m] = bitmap_range(map, 0, bs->nr_blocks,
						    RANGE_CLEAR);
	}
}

/* Publish @bs as @folio's state. Caller holds the folio lock. */
static void bs_publish(struct folio *folio, struct blkstate *bs)
{
	/* Pairs with bs_load(): testers see the maps filled in. */
	store_release(&folio->private, bs);
	folio_set_flag(folio, FOLIO_PRIVATE);
}

int blkstate_attach(struct folio *folio)
{
	unsigned int nr = folio_nr_blocks(folio);
	struct blkstate *bs;

	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	if (nr == 1 || folio->private)
		return 0;
	bs = bs_alloc(nr, folio->blkbits);
	if (!bs)
		return -ENOMEM;
	/* Nobody changes the flags we copy: that needs the folio lock. */
	bs_init_from_flags(bs, folio_flags(folio));
	bs_publish(folio, bs);
	return 0;
}

int blkstate_release(struct folio *folio)
{
	struct blkstate *bs = folio->private;
	int ret = 0;

	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	if (!bs)
		return 0;
	pthread_mutex_lock(&bs->lock);
	/* Law 6 and 8; reservations because the flag form would lose which
	 * blocks hold them (law 7). */
	if (bs->count[BS_DIRTY] || bs->count[BS_RESERVED] ||
	    folio_test_writeback(folio) || folio_maybe_pinned(folio)) {
		ret = -EBUSY;
		goto out_unlock;
	}
	/* FOLIO_UPTODATE already says "all blocks" or "not all": what the
	 * flag form means by it. */
	folio_clear_flag(folio, FOLIO_PRIVATE);
	store_release(&folio->private, NULL);
out_unlock:
	pthread_mutex_unlock(&bs->lock);
	if (!ret)
		bs_free_rcu(bs);
	return ret;
}

void blkstate_free_dead(struct folio *folio)
{
	struct blkstate *bs = folio->private;

	if (!bs)
		return;
	/* Reservations are the page cache's to give back before this. */
	FOLIO_WARN_ON(bs->count[BS_RESERVED] != 0, folio);
	folio_clear_flag(folio, FOLIO_PRIVATE);
	store_release(&folio->private, NULL);
	bs_free_rcu(bs);
}

/* ---- Uptodate ------------------------------------------------------------ */

unsigned int blkstate_set_uptodate(struct folio *folio, size_t off, size_t len)
{
	/* Read I/O keeps the folio locked until its last completion. */
	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	return bs_change(folio, blk_range(folio, off, len, true),
			 BS_UPTODATE, FOLIO_UPTODATE, true, true);
}

unsigned int blkstate_clear_uptodate(struct folio *folio, size_t off,
				     size_t len)
{
	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	return bs_change(folio, blk_range(folio, off, len, false),
			 BS_UPTODATE, FOLIO_UPTODATE, false, false);
}

bool blkstate_test_uptodate(struct folio *folio, size_t off, size_t len)
{
	struct blk_range r = blk_range(folio, off, len, false);
	struct blkstate *bs;
	bool ret;

	if (folio_test_uptodate(folio))
		return true;
	if (range_empty(r))
		return true;
	fs_rcu_read_lock();
	bs = bs_load(folio);
	if (!bs) {
		ret = false;
		goto out_unlock;
	}
	pthread_mutex_lock(&bs->lock);
	/* The mutex orders us after whoever set the bits and wrote the data. */
	ret = bitmap_range(bs_map(bs, BS_UPTODATE), r.first, r.end,
			   RANGE_COUNT) == r.end - r.first;
	pthread_mutex_unlock(&bs->lock);
out_unlock:
	fs_rcu_read_unlock();
	return ret;
}

/* ---- Dirty --------------------------------------------------------------- */

/* Bytes of dirty blocks in every page cache of the process. */
static long dirty_bytes;

long blkstate_dirty_bytes(void)
{
	return __atomic_load_n(&dirty_bytes, __ATOMIC_RELAXED);
}

unsigned int blkstate_set_dirty(struct folio *folio, size_t off, size_t len)
{
	unsigned int n;

	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	n = bs_change(folio, blk_range(folio, off, len, false),
		      BS_DIRTY, FOLIO_DIRTY, true, false);
	if (n)
		__atomic_add_fetch(&dirty_bytes, (long)n << folio->blkbits,
				   __ATOMIC_RELAXED);
	return n;
}

unsigned int blkstate_clear_dirty(struct folio *folio, size_t off, size_t len)
{
	unsigned int n;

	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	n = bs_change(folio, blk_range(folio, off, len, true),
		      BS_DIRTY, FOLIO_DIRTY, false, true);
	if (n)
		__atomic_sub_fetch(&dirty_bytes, (long)n << folio->blkbits,
				   __ATOMIC_RELAXED);
	return n;
}

bool blkstate_test_dirty(struct folio *folio, size_t off, size_t len)
{
	struct blk_range r = blk_range(folio, off, len, false);
	struct blkstate *bs;
	bool ret;

	if (range_empty(r) || !folio_test_dirty(folio))
		return false;
	fs_rcu_read_lock();
	bs = bs_load(folio);
	if (!bs) {
		ret = true;
		goto out_unlock;
	}
	pthread_mutex_lock(&bs->lock);
	ret = bitmap_range(bs_map(bs, BS_DIRTY), r.first, r.end,
			   RANGE_COUNT) != 0;
	pthread_mutex_unlock(&bs->lock);
out_unlock:
	fs_rcu_read_unlock();
	return ret;
}

unsigned int blkstate_count_dirty(struct folio *folio)
{
	struct blkstate *bs;
	unsigned int n;

	fs_rcu_read_lock();
	bs = bs_load(folio);
	if (!bs) {
		n = folio_test_dirty(folio) ? folio_nr_blocks(folio) : 0;
		goto out_unlock;
	}
	pthread_mutex_lock(&bs->lock);
	n = bs->count[BS_DIRTY];
	pthread_mutex_unlock(&bs->lock);
out_unlock:
	fs_rcu_read_unlock();
	return n;
}

bool blkstate_next_dirty(struct folio *folio, size_t *off, size_t *len)
{
	unsigned int bits = folio->blkbits;
	unsigned int nr = folio_nr_blocks(folio);
	unsigned int start = *off >> bits, first, end;
	struct blkstate *bs;
	bool ret = false;

	if (*off >= folio_size(folio))
		return false;
	fs_rcu_read_lock();
	bs = bs_load(folio);
	if (!bs) {
		if (!folio_test_dirty(folio))
			goto out_unlock;
		first = start;
		end = nr;
	} else {
		unsigned long *map;

		pthread_mutex_lock(&bs->lock);
		map = bs_map(bs, BS_DIRTY);
		first = find_next(map, nr, start, true);
		end = find_next(map, nr, first, false);
		pthread_mutex_unlock(&bs->lock);
		if (first >= nr)
			goto out_unlock;
	}
	*off = (size_t)first << bits;
	*len = (size_t)(end - first) << bits;
	ret = true;
out_unlock:
	fs_rcu_read_unlock();
	return ret;
}

/* ---- Reservations -------------------------------------------------------- */

unsigned int blkstate_set_reserved(struct folio *folio, size_t off,
				   size_t len)
{
	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	return bs_change(folio, blk_range(folio, off, len, false),
			 BS_RESERVED, FOLIO_DELALLOC, true, false);
}

unsigned int blkstate_clear_reserved(struct folio *folio, size_t off,
				     size_t len)
{
	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	return bs_change(folio, blk_range(folio, off, len, true),
			 BS_RESERVED, FOLIO_DELALLOC, false, true);
}

unsigned int blkstate_count_reserved(struct folio *folio, size_t off,
				     size_t len)
{
	struct blk_range r = blk_range(folio, off, len, false);
	struct blkstate *bs;
	unsigned int n;

	if (range_empty(r))
		return 0;
	fs_rcu_read_lock();
	bs = bs_load(folio);
	if (!bs) {
		n = folio_test_delalloc(folio) ? r.end - r.first : 0;
		goto out_unlock;
	}
	pthread_mutex_lock(&bs->lock);
	n = bitmap_range(bs_map(bs, BS_RESERVED), r.first, r.end,
			 RANGE_COUNT);
	pthread_mutex_unlock(&bs->lock);
out_unlock:
	fs_rcu_read_unlock();
	return n;
}

/* ---- Split ------------------------------------------------------------- */

/* Whether a blkstate handed to us for a piece is fresh. */
static bool bs_is_fresh(struct blkstate *bs)
{
	return !bs->count[BS_UPTODATE] && !bs->count[BS_DIRTY] &&
	       !bs->count[BS_RESERVED];
}

/* Check the pieces' shape; set their blkbits. Changes nothing on failure
 * but blkbits of pieces without a blkstate, which are the caller's own. */
static int split_check(struct folio *folio, struct folio **pieces,
		       unsigned int n)
{
	unsigned int order = folio_order(folio);
	unsigned int log, i;

	if (FOLIO_WARN_ON(n < 2 || (n & (n - 1)), folio))
		return -EINVAL;
	log = __builtin_ctz(n);
	if (FOLIO_WARN_ON(log > order, folio))
		return -EINVAL;
	for (i = 0; i < n; i++) {
		struct folio *piece = pieces[i];

		if (FOLIO_WARN_ON(piece == folio ||
				  folio_order(piece) != order - log, piece))
			return -EINVAL;
		if (piece->private) {
			struct blkstate *pbs = piece->private;

			if (FOLIO_WARN_ON(pbs->blkbits != folio->blkbits ||
					  !bs_is_fresh(pbs), piece))
				return -EINVAL;
		} else if (FOLIO_WARN_ON(folio_flags(piece) &
					 ((1UL << FOLIO_DIRTY) |
					  (1UL << FOLIO_DELALLOC)), piece)) {
			return -EINVAL;
		}
	}
	for (i = 0; i < n; i++)
		if (!pieces[i]->private)
			pieces[i]->blkbits = folio->blkbits;
	return 0;
}

/*
 * Give each multi-block piece without a blkstate a fresh one. All or
 * nothing: on failure, the ones attached here are taken off again (nobody
 * else can see an unpublished piece, so they are freed at once).
 */
static int split_alloc(struct folio **pieces, unsigned int n,
		       unsigned int per, unsigned int blkbits)
{
	unsigned int i;

	if (per == 1)
		return 0;
	for (i = 0; i < n; i++) {
		struct blkstate *bs;

		if (pieces[i]->private)
			continue;
		bs = bs_alloc(per, blkbits);
		if (!bs)
			goto out_undo;
		/* Marked as ours by FOLIO_PRIVATE still clear. */
		WRITE_ONCE(pieces[i]->private, bs);
	}
	return 0;

out_undo:
	while (i--) {
		if (!folio_test_private(pieces[i])) {
			bs_free_now(pieces[i]->private);
			WRITE_ONCE(pieces[i]->private, NULL);
		}
	}
	return -ENOMEM;
}

/* Move blocks [first, first + per) of the source state into @piece. */
static void split_fill(struct folio *piece, struct blkstate *src,
		       unsigned long src_flags, unsigned int first,
		       unsigned int per)
{
	struct blkstate *pbs = piece->private;
	unsigned int m, b;

	if (!pbs) {
		/* One block: its bit becomes the piece's flag. */
		for (m = 0; m < BS_NR_MAPS; m++) {
			bool on = src ? test_bit(bs_map(src, m), first)
				      : src_flags & (1UL << flag_of[m]);

			if (on)
				folio_set_flag(piece, flag_of[m]);
			else
				folio_clear_flag(piece, flag_of[m]);
		}
		return;
	}
	pthread_mutex_lock(&pbs->lock);
	for (m = 0; m < BS_NR_MAPS; m++) {
		unsigned long *dst = bs_map(pbs, m);

		bitmap_range(dst, 0, per, RANGE_CLEAR);
		if (!src) {
			if (src_flags & (1UL << flag_of[m]))
				bitmap_range(dst, 0, per, RANGE_SET);
		} else {
			for (b = 0; b < per; b++)
				if (test_bit(bs_map(src, m), first + b))
					dst[b / BITS_PER_LONG] |=
						1UL << (b % BITS_PER_LONG);
		}
		pbs->count[m] = bitmap_range(dst, 0, per, RANGE_COUNT);
	}
	bs_sync_flags(piece, pbs);
	pthread_mutex_unlock(&pbs->lock);
	if (!folio_test_private(piece))
		bs_publish(piece, pbs);
}

int blkstate_split(struct folio *folio, struct folio **pieces, unsigned int n)
{
	struct blkstate *bs = folio->private;
	unsigned int per, i;
	int ret;

	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	ret = split_check(folio, pieces, n);
	if (ret)
		return ret;
	per = folio_nr_blocks(folio) / n;
	ret = split_alloc(pieces, n, per, folio->blkbits);
	if (ret)
		return ret;

	if (bs)
		pthread_mutex_lock(&bs->lock);
	for (i = 0; i < n; i++)
		split_fill(pieces[i], bs, folio_flags(folio), i * per, per);
	/* The state has moved: nothing may write back or release
	 * reservations through @folio any more. */
	if (bs) {
		folio_clear_flag(folio, FOLIO_PRIVATE);
		store_release(&folio->private, NULL);
		pthread_mutex_unlock(&bs->lock);
		bs_free_rcu(bs);
	}
	folio_clear_flag(folio, FOLIO_DIRTY);
	folio_clear_flag(folio, FOLIO_DELALLOC);
	return 0;
}

/* ---- Checking ------------------------------------------------------------ */

bool blkstate_check(struct folio *folio)
{
	unsigned long flags = folio_flags(folio);
	struct blkstate *bs;
	bool ok = true;
	int m;

	fs_rcu_read_lock();
	bs = bs_load(folio);
	if (!!bs != !!(flags & (1UL << FOLIO_PRIVATE))) {
		folio_dump(folio, "blkstate pointer and FOLIO_PRIVATE disagree");
		ok = false;
		goto out_unlock;
	}
	if (!bs)
		goto out_unlock;
	pthread_mutex_lock(&bs->lock);
	flags = folio_flags(folio);
	if (bs->nr_blocks != folio_nr_blocks(folio) ||
	    bs->blkbits != folio->blkbits) {
		folio_dump(folio, "blkstate of another shape");
		ok = false;
	}
	for (m = 0; m < BS_NR_MAPS; m++) {
		unsigned int n = bitmap_range(bs_map(bs, m), 0, bs->nr_blocks,
					      RANGE_COUNT);

		if (n != bs->count[m]) {
			fprintf(stderr, "foliofs: blkstate map %d has %u bits, "
				"count says %u\n", m, n, bs->count[m]);
			ok = false;
		}
	}
	if (!!(flags & (1UL << FOLIO_UPTODATE)) !=
	    (bs->count[BS_UPTODATE] == bs->nr_blocks) ||
	    !!(flags & (1UL << FOLIO_DIRTY)) != !!bs->count[BS_DIRTY] ||
	    !!(flags & (1UL << FOLIO_DELALLOC)) != !!bs->count[BS_RESERVED]) {
		folio_dump(folio, "folio flags out of step with blkstate");
		ok = false;
	}
	pthread_mutex_unlock(&bs->lock);
out_unlock:
	fs_rcu_read_unlock();
	return ok;
}
