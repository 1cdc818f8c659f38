/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * space.c - the block allocator (see space.h for the contract, the summary
 * tree and the placement policy).
 *
 * Representation:
 *  - map: one bit per block, 1 = in use (metadata, allocated or pending).
 *    It is padded to whole words, and the padding bits are set, so no
 *    search ever returns a block past the end and no search has to check;
 *  - sum[1..top]: the summary levels; sum[l][i] covers map words
 *    [i * 64^l, (i + 1) * 64^l). Level 0 is the map itself: a word's head,
 *    tail and longest are computed from it when needed;
 *  - pend[]: per 32768-block chunk, NULL or a page holding one bit per
 *    block that is pending, so a double free is caught in O(n) of the
 *    range, not O(pending list);
 *  - the pending list: extents in commit order (append only; sequences
 *    never go down), each tagged with its commit sequence;
 *  - avail: free blocks nobody has reserved, the one number that admits
 *    anything. space_reserve() takes from it in a CAS loop that never
 *    lets it go below 0; space_alloc() and space_mark_used() take from it
 *    too (under the mutex), so they can never use blocks a reservation was
 *    promised.
 *
 * Reserved is not a counter of its own: it is free - avail. With two
 * counters (one for reserved, one for what is left) a reservation would
 * change them one after the other, and no reader could see the two agree;
 * with one, a reservation is a single atomic op and anyone holding the
 * mutex (free only changes under it) reads an exact reserved count, and
 * "reserved <= free" is simply "avail >= 0". Each change under the mutex
 * moves free and avail so that reserved stays what it must:
 *   space_alloc, space_mark_used  avail -= n, free -= n   (reserved same)
 *   space_alloc_reserved          free -= n               (reserved - n)
 *   space_commit_done             free += n, avail += n   (reserved same)
 *   space_free                    neither: pending blocks are still used
 */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "space.h"

#define FAN_SHIFT	6			/* summary fan-out: 64 */
#define FAN		(1ULL << FAN_SHIFT)
#define MAX_LEVELS	6			/* 2^32 blocks: 5 levels */

#define PEND_SHIFT	15			/* pending-bitmap chunk: */
#define PEND_BLOCKS	(1ULL << PEND_SHIFT)	/* 32768 blocks, */
#define PEND_WORDS	(PEND_BLOCKS / 64)	/* 4 KiB of bits */

/* Free runs of one summary node, in blocks. */
struct space_sum {
	uint32_t	head;		/* at its start */
	uint32_t	tail;		/* at its end */
	uint32_t	longest;	/* anywhere inside */
};

/* Pending bits of one chunk. */
struct pend_page {
	/* Chains spare pages that space_free() allocated without the lock. */
	struct pend_page *next;
	/* Bits set in @bits. */
	uint64_t	count;
	uint64_t	bits[PEND_WORDS];
};

/* Blocks freed in one commit: [start, start + n). */
struct pend_ext {
	struct pend_ext	*next;
	uint64_t	start;
	uint64_t	n;
	uint64_t	seq;
};

struct space {
	pthread_mutex_t	lock;

	/* Geometry. Fixed at create. */
	uint64_t	nr_blocks;
	uint64_t	nr_words;		/* map words */
	unsigned int	blkbits;
	uint64_t	meta_start, meta_len;
	unsigned int	top;			/* root level (>= 1) */
	uint64_t	nr_nodes[MAX_LEVELS + 1];	/* [0]: nr_words */
	uint64_t	nr_chunks;		/* entries in pend[] */

	/* The map, the summaries and the pending state. Under lock. */
	uint64_t	*map;
	struct space_sum *sum[MAX_LEVELS + 1];	/* [0] unused */
	struct pend_page **pend;
	uint64_t	nr_pend_pages;
	struct pend_ext	*pend_head, *pend_tail;
	uint64_t	nr_pend_ext;

	/* Commits. Under lock. */
	uint64_t	open_seq;		/* collects frees now */
	uint64_t	done_seq;

	/* Block counts. Under lock; nr_free is also read without it (with
	 * READ_ONCE) by space_unreserve()'s sanity check. */
	uint64_t	nr_free, nr_allocated, nr_pending;

	/*
	 * Free blocks not reserved (see the top of the file). Atomic, changed
	 * without the lock by reservations; relaxed throughout: it is a count,
	 * no memory is published through it.
	 */
	int64_t		avail;

	/* Debug counters. Under lock. */
	uint64_t	words_scanned;
	uint64_t	nr_locked;
#ifdef FOLIOFS_TESTING
	/* Allocations number fail_from <= alloc_seq < fail_to fail. Atomic:
	 * space_free() allocates without the lock. */
	long		alloc_seq, fail_from, fail_to;
#endif
};

/* ---- Small helpers ---------------------------------------------------- */

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static inline uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static void space_lock(struct space *sp)
{
	pthread_mutex_lock(&sp->lock);
	sp->nr_locked++;
}

static void space_unlock(struct space *sp)
{
	pthread_mutex_unlock(&sp->lock);
}

static bool space_alloc_should_fail(struct space *sp)
{
#ifdef FOLIOFS_TESTING
	long seq = __atomic_fetch_add(&sp->alloc_seq, 1, __ATOMIC_RELAXED);

	return seq >= __atomic_load_n(&sp->fail_from, __ATOMIC_RELAXED) &&
	       seq < __atomic_load_n(&sp->fail_to, __ATOMIC_RELAXED);
#endif
	(void)sp;
	return false;
}

/* Bits [lo, hi) of a word, 0 <= lo < hi <= 64. */
static inline uint64_t word_mask(unsigned int lo, unsigned int hi)
{
	uint64_t m = hi == 64 ? ~0ULL : (1ULL << hi) - 1;

	return m & (~0ULL << lo);
}

/*
 * Loop over the map words of the block range [start, start + n), n > 0:
 * @w is the word's index, @mask the range's bits in it.
 */
#define for_each_range_word(start, n, w, mask)				\
	for (uint64_t __b = (start), __e = (start) + (n), w, mask;	\
	     __b < __e &&						\
	     ((w = __b / 64),						\
	      (mask = word_mask(__b % 64,				\
				(unsigned int)min_u64(64, __e - w * 64))), 1); \
	     __b = (w + 1) * 64)

static bool map_all(const uint64_t *map, uint64_t start, uint64_t n, bool set)
{
	for_each_range_word(start, n, w, mask) {
		uint64_t v = set ? map[w] : ~map[w];

		if ((v & mask) != mask)
			return false;
	}
	return true;
}

static void map_set(uint64_t *map, uint64_t start, uint64_t n)
{
	for_each_range_word(start, n, w, mask)
		map[w] |= mask;
}

static void map_clear(uint64_t *map, uint64_t start, uint64_t n)
{
	for_each_range_word(start, n, w, mask)
		map[w] &= ~mask;
}

static bool range_ok(const struct space *sp, uint64_t start, uint64_t n)
{
	return n > 0 && start < sp->nr_blocks && n <= sp->nr_blocks - start;
}

static bool overlaps_meta(const struct space *sp, uint64_t start, uint64_t n)
{
	return sp->meta_len && start < sp->meta_start + sp->meta_len &&
	       sp->meta_start < start + n;
}

/* ---- Summaries -------------------------------------------------------- */

/* First block of node @idx of level @lvl (level 0: words). */
static inline uint64_t node_first(unsigned int lvl, uint64_t idx)
{
	return idx << (FAN_SHIFT * (lvl + 1));
}

/* Blocks node @idx of level @lvl covers, padding included. */
static inline uint64_t node_span(const struct space *sp, unsigned int lvl,
				 uint64_t idx)
{
	uint64_t nominal = 1ULL << (FAN_SHIFT * (lvl + 1));

	return min_u64(nominal, sp->nr_words * 64 - node_first(lvl, idx));
}

/* Longest run of set bits in @f. */
static unsigned int longest_ones(uint64_t f)
{
	unsigned int best = 0;

	if (f == ~0ULL)
		return 64;
	while (f) {
		unsigned int s = __builtin_ctzll(f);
		unsigned int len = __builtin_ctzll(~(f >> s));

		if (len > best)
			best = len;
		if (s + len >= 64)
			break;
		f &= ~0ULL << (s + len);
	}
	return best;
}

static struct space_sum word_sum(struct space *sp, uint64_t w)
{
	uint64_t used = sp->map[w];
	struct space_sum s;

	sp->words_scanned++;
	if (used == 0)
		return (struct space_sum){ 64, 64, 64 };
	if (used == ~0ULL)
		return (struct space_sum){ 0, 0, 0 };
	s.head = __builtin_ctzll(used);
	s.tail = __builtin_clzll(used);
	s.longest = longest_ones(~used);
	return s;
}

static struct space_sum child_sum(struct space *sp, unsigned int lvl,
				  uint64_t idx)
{
	return lvl ? sp->sum[lvl][idx] : word_sum(sp, idx);
}

/*
 * Sum node @idx of level @lvl (>= 1) up from its children. A run crosses
 * a child boundary only through a child that is entirely free or through
 * one child's tail and the next one's head, so walking the children with
 * the length of the run reaching the current one ("run") finds every run.
 */
static struct space_sum sum_compute(struct space *sp, unsigned int lvl,
				    uint64_t idx)
{
	uint64_t first = idx << FAN_SHIFT;
	uint64_t end = min_u64(first + FAN, sp->nr_nodes[lvl - 1]);
	uint64_t head = 0, run = 0, best = 0;
	bool all_free = true;
	struct space_sum s;

	for (uint64_t c = first; c < end; c++) {
		struct space_sum cs = child_sum(sp, lvl - 1, c);
		uint64_t span = node_span(sp, lvl - 1, c);

		if (all_free)
			head += cs.head;
		if (cs.head == span) {
			run += span;
			continue;
		}
		all_free = false;
		best = max_u64(best, max_u64(run + cs.head, cs.longest));
		run = cs.tail;
	}
	best = max_u64(best, run);
	s.head = (uint32_t)head;
	s.tail = (uint32_t)run;
	s.longest = (uint32_t)best;
	return s;
}

/* Bring the summaries of blocks [first, last] in step with the map. */
static void sum_update(struct space *sp, uint64_t first, uint64_t last)
{
	for (unsigned int lvl = 1; lvl <= sp->top; lvl++) {
		uint64_t a = first >> (FAN_SHIFT * (lvl + 1));
		uint64_t b = last >> (FAN_SHIFT * (lvl + 1));

		for (uint64_t i = a; i <= b; i++)
			sp->sum[lvl][i] = sum_compute(sp, lvl, i);
	}
}

static void sum_rebuild(struct space *sp)
{
	sum_update(sp, 0, sp->nr_words * 64 - 1);
}

static uint64_t root_longest(const struct space *sp)
{
	return sp->sum[sp->top][0].longest;
}

/* ---- Search ----------------------------------------------------------- */

/*
 * The first run of @n free blocks in word @w starting at or after @from.
 * *@carry is the length of the free run that ends just before the word and
 * started at or after @from; on a miss it becomes the run reaching the
 * word's end. Returns the run's first block, or -1.
 */
static int64_t find_in_word(struct space *sp, uint64_t w, uint64_t from,
			    uint64_t n, uint64_t *carry)
{
	uint64_t base = w * 64;
	uint64_t f = ~sp->map[w];

	sp->words_scanned++;
	/* Bits below @from may not start a run (they may not continue one
	 * either: *carry is 0 whenever @from is inside this word). */
	if (from > base)
		f &= ~0ULL << (from - base);
	while (f) {
		unsigned int s = __builtin_ctzll(f);
		unsigned int len = f == ~0ULL ? 64 : __builtin_ctzll(~(f >> s));
		uint64_t run_start = s ? base + s : base - *carry;
		uint64_t total = s ? len : *carry + len;

		if (total >= n)
			return (int64_t)run_start;
		if (s + len == 64) {
			*carry = total;
			return -1;
		}
		f &= ~0ULL << (s + len);
	}
	*carry = 0;
	return -1;
}

/*
 * The first run of @n free blocks inside node @idx of level @lvl starting
 * at or after @from (which may lie before the node), continuing a run of
 * *@carry blocks from the left. Reads only the children's summaries except
 * where @from falls (a partial child) and where the run is (a child whose
 * longest run fits, which therefore cannot miss).
 */
static int64_t find_in_node(struct space *sp, unsigned int lvl, uint64_t idx,
			    uint64_t from, uint64_t n, uint64_t *carry)
{
	uint64_t c = idx << FAN_SHIFT;
	uint64_t end = min_u64(c + FAN, sp->nr_nodes[lvl - 1]);
	int64_t r;

	if (from > node_first(lvl, idx))
		c = from >> (FAN_SHIFT * lvl);
	for (; c < end; c++) {
		uint64_t first = node_first(lvl - 1, c);
		struct space_sum cs;
		uint64_t span;

		if (lvl == 1) {
			r = find_in_word(sp, c, from, n, carry);
			if (r >= 0)
				return r;
			continue;
		}
		if (from > first) {
			r = find_in_node(sp, lvl - 1, c, from, n, carry);
			if (r >= 0)
				return r;
			continue;
		}
		cs = sp->sum[lvl - 1][c];
		if (*carry + cs.head >= n)
			return (int64_t)(first - *carry);
		if (cs.longest >= n) {
			r = find_in_node(sp, lvl - 1, c, first, n, carry);
			BUG_ON(r < 0);
			return r;
		}
		span = node_span(sp, lvl - 1, c);
		*carry = cs.head == span ? *carry + span : cs.tail;
	}
	return -1;
}

/* First block s >= @from with [s, s + n) free, or -1. */
static int64_t first_fit(struct space *sp, uint64_t from, uint64_t n)
{
	uint64_t carry = 0;

	if (from >= sp->nr_blocks)
		return -1;
	return find_in_node(sp, sp->top, 0, from, n, &carry);
}

/*
 * The placement policy (space.h). @reserved: the caller's blocks are
 * promised, so take the longest run even below @min. Returns blocks
 * allocated or -ENOSPC.
 */
static long alloc_locked(struct space *sp, uint64_t goal, uint64_t min,
			 uint64_t max, bool reserved, uint64_t *start)
{
	uint64_t longest = root_longest(sp), want;
	int64_t s;

	if (longest >= max)
		want = max;
	else if (longest >= min || (reserved && longest > 0))
		want = longest;
	else
		return -ENOSPC;

	if (goal >= sp->nr_blocks)
		goal = 0;
	s = first_fit(sp, goal, want);
	if (s < 0)
		s = first_fit(sp, 0, want);
	/* The root promised a run of @want somewhere. */
	BUG_ON(s < 0);
	if (s < 0)
		return -ENOSPC;

	map_set(sp->map, (uint64_t)s, want);
	sum_update(sp, (uint64_t)s, (uint64_t)s + want - 1);
	WRITE_ONCE(sp->nr_free, sp->nr_free - want);
	sp->nr_allocated += want;
	*start = (uint64_t)s;
	return (long)want;
}

/* ---- Admission (lock-free) -------------------------------------------- */

/* Take up to @max and at least @min from avail; returns what it took or 0. */
static uint64_t avail_claim(struct space *sp, uint64_t min, uint64_t max)
{
	int64_t old = __atomic_load_n(&sp->avail, __ATOMIC_RELAXED);
	uint64_t take;

	do {
		if (old < 0 || (uint64_t)old < min)
			return 0;
		take = min_u64(max, (uint64_t)old);
	} while (!__atomic_compare_exchange_n(&sp->avail, &old,
					      old - (int64_t)take, true,
					      __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	return take;
}

static void avail_give(struct space *sp, uint64_t n)
{
	if (n)
		__atomic_fetch_add(&sp->avail, (int64_t)n, __ATOMIC_RELAXED);
}

/* Reserved blocks for a given avail (0 if a buggy unreserve pushed avail
 * above free, which space_check() reports). */
static uint64_t reserved_of(const struct space *sp, int64_t avail)
{
	return avail >= 0 && (uint64_t)avail <= sp->nr_free ?
	       sp->nr_free - (uint64_t)avail : 0;
}

/* Reserved blocks, exact for a holder of the mutex. */
static uint64_t reserved_locked(const struct space *sp)
{
	return reserved_of(sp, __atomic_load_n(&sp->avail, __ATOMIC_RELAXED));
}

int space_reserve(struct space *sp, uint64_t n)
{
	if (n == 0)
		return 0;
	return avail_claim(sp, n, n) ? 0 : -ENOSPC;
}

/*
 * Give @n back to avail if that leaves avail <= free (else more was given
 * back than was reserved). @locked: free cannot move, so a refusal is
 * final; without the mutex free and avail are read one after the other
 * and an allocation or a commit between the two reads can make a correct
 * call look wrong (both counters move together), so a refusal there only
 * means "look again under the mutex".
 */
static bool avail_unreserve(struct space *sp, uint64_t n, bool locked)
{
	int64_t old = __atomic_load_n(&sp->avail, __ATOMIC_RELAXED);

	do {
		uint64_t nfree = locked ? sp->nr_free : READ_ONCE(sp->nr_free);

		if (old < 0 || (uint64_t)old + n > nfree)
			return false;
	} while (!__atomic_compare_exchange_n(&sp->avail, &old,
					      old + (int64_t)n, true,
					      __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	return true;
}

int space_unreserve(struct space *sp, uint64_t n)
{
	int ret = 0;

	if (n == 0 || avail_unreserve(sp, n, false))
		return 0;
	/* Slow path: a caller bug, or a race with an allocation or commit. */
	space_lock(sp);
	if (WARN_ON(!avail_unreserve(sp, n, true)))
		ret = -EINVAL;
	space_unlock(sp);
	return ret;
}

/* ---- Allocation ------------------------------------------------------- */

long space_alloc(struct space *sp, uint64_t goal, uint64_t min, uint64_t max,
		 uint64_t *start)
{
	uint64_t claimed;
	long ret;

	if (min == 0 || min > max)
		return -EINVAL;
	space_lock(sp);
	/*
	 * Claim under the lock so that what we give back below is exactly
	 * what no one else could have used; reservations may still shrink
	 * avail meanwhile, which is why we claim first.
	 */
	claimed = avail_claim(sp, min, max);
	if (!claimed) {
		ret = -ENOSPC;
		goto out_unlock;
	}
	ret = alloc_locked(sp, goal, min, claimed, false, start);
	avail_give(sp, ret > 0 ? claimed - (uint64_t)ret : claimed);
out_unlock:
	space_unlock(sp);
	return ret;
}

long space_alloc_reserved(struct space *sp, uint64_t goal, uint64_t min,
			  uint64_t max, uint64_t *start)
{
	long ret;

	if (min == 0 || min > max)
		return -EINVAL;
	space_lock(sp);
	/* Reservations only grow while we hold the mutex, so this stays
	 * true until we allocate. */
	if (WARN_ON(reserved_locked(sp) < max)) {
		ret = -EINVAL;
		goto out_unlock;
	}
	/* Lowering free, not avail, turns the reservation into blocks. */
	ret = alloc_locked(sp, goal, min, max, true, start);
	/* free >= reserved >= max >= 1: a free block exists. */
	WARN_ON(ret == -ENOSPC);
out_unlock:
	space_unlock(sp);
	return ret;
}

int space_mark_used(struct space *sp, uint64_t start, uint64_t n)
{
	int ret = 0;

	if (!range_ok(sp, start, n))
		return -EINVAL;
	space_lock(sp);
	if (!map_all(sp->map, start, n, false)) {
		ret = -EEXIST;
		goto out_unlock;
	}
	if (!avail_claim(sp, n, n)) {
		ret = -ENOSPC;
		goto out_unlock;
	}
	map_set(sp->map, start, n);
	sum_update(sp, start, start + n - 1);
	WRITE_ONCE(sp->nr_free, sp->nr_free - n);
	sp->nr_allocated += n;
out_unlock:
	space_unlock(sp);
	return ret;
}

/* ---- Frees and commits ------------------------------------------------ */

static bool pend_any(const struct space *sp, uint64_t start, uint64_t n)
{
	for_each_range_word(start, n, w, mask) {
		struct pend_page *pg = sp->pend[w / PEND_WORDS];

		if (pg && (pg->bits[w % PEND_WORDS] & mask))
			return true;
	}
	return false;
}

static uint64_t pend_missing(const struct space *sp, uint64_t start,
			     uint64_t n)
{
	uint64_t missing = 0;

	for (uint64_t c = start >> PEND_SHIFT; c <= (start + n - 1) >> PEND_SHIFT;
	     c++)
		missing += !sp->pend[c];
	return missing;
}

/* Set the pending bits of [start, start + n), taking pages from *@spares. */
static void pend_set(struct space *sp, uint64_t start, uint64_t n,
		     struct pend_page **spares)
{
	for_each_range_word(start, n, w, mask) {
		struct pend_page **slot = &sp->pend[w / PEND_WORDS];

		if (!*slot) {
			*slot = *spares;
			BUG_ON(!*slot);
			*spares = (*slot)->next;
			(*slot)->next = NULL;
			sp->nr_pend_pages++;
		}
		(*slot)->bits[w % PEND_WORDS] |= mask;
		(*slot)->count += (uint64_t)__builtin_popcountll(mask);
	}
}

/* Clear them; pages that empty go to *@dead, to be freed without the lock. */
static void pend_clear(struct space *sp, uint64_t start, uint64_t n,
		       struct pend_page **dead)
{
	for_each_range_word(start, n, w, mask) {
		struct pend_page **slot = &sp->pend[w / PEND_WORDS];
		struct pend_page *pg = *slot;

		BUG_ON(!pg || (pg->bits[w % PEND_WORDS] & mask) != mask);
		pg->bits[w % PEND_WORDS] &= ~mask;
		pg->count -= (uint64_t)__builtin_popcountll(mask);
		if (!pg->count) {
			*slot = NULL;
			pg->next = *dead;
			*dead = pg;
			sp->nr_pend_pages--;
		}
	}
}

static void free_pages(struct pend_page *pg)
{
	while (pg) {
		struct pend_page *next = pg->next;

		free(pg);
		pg = next;
	}
}

int space_free(struct space *sp, uint64_t start, uint64_t n)
{
	struct pend_page *spares = NULL;
	uint64_t nr_spares = 0, missing;
	struct pend_ext *ext, *tail;
	int ret = 0;

	if (WARN_ON(!range_ok(sp, start, n)))
		return -EINVAL;
	ext = space_alloc_should_fail(sp) ? NULL : malloc(sizeof(*ext));
	if (!ext)
		return -ENOMEM;
	ext->next = NULL;
	ext->start = start;
	ext->n = n;
retry:
	space_lock(sp);
	/* All three are caller bugs; checked again after every retry, since
	 * the map may have changed while the lock was dropped. */
	if (WARN_ON(overlaps_meta(sp, start, n)) ||
	    WARN_ON(!map_all(sp->map, start, n, true)) ||
	    WARN_ON(pend_any(sp, start, n))) {
		ret = -EINVAL;
		goto out_unlock;
	}
	missing = pend_missing(sp, start, n);
	if (missing > nr_spares) {
		/* No allocation under the lock: get the pages, look again. */
		space_unlock(sp);
		while (nr_spares < missing) {
			struct pend_page *pg = space_alloc_should_fail(sp) ? NULL :
				calloc(1, sizeof(*pg));

			if (!pg) {
				ret = -ENOMEM;
				goto out_free;
			}
			pg->next = spares;
			spares = pg;
			nr_spares++;
		}
		goto retry;
	}

	pend_set(sp, start, n, &spares);
	ext->seq = sp->open_seq;
	tail = sp->pend_tail;
	if (tail && tail->seq == ext->seq && tail->start + tail->n == start) {
		/* Extends the last free of this commit: one entry for both. */
		tail->n += n;
	} else {
		if (tail)
			tail->next = ext;
		else
			sp->pend_head = ext;
		sp->pend_tail = ext;
		sp->nr_pend_ext++;
		ext = NULL;
	}
	sp->nr_allocated -= n;
	sp->nr_pending += n;
out_unlock:
	space_unlock(sp);
out_free:
	free_pages(spares);
	free(ext);
	return ret;
}

uint64_t space_commit_begin(struct space *sp)
{
	uint64_t seq;

	space_lock(sp);
	seq = sp->open_seq++;
	space_unlock(sp);
	return seq;
}

long space_commit_done(struct space *sp, uint64_t seq)
{
	struct pend_page *dead_pages = NULL;
	struct pend_ext *done = NULL, **link = &done, *ext;
	uint64_t released = 0;
	long ret;

	space_lock(sp);
	if (WARN_ON(seq >= sp->open_seq)) {
		ret = -EINVAL;
		goto out_unlock;
	}
	while ((ext = sp->pend_head) && ext->seq <= seq) {
		sp->pend_head = ext->next;
		if (!sp->pend_head)
			sp->pend_tail = NULL;
		sp->nr_pend_ext--;
		pend_clear(sp, ext->start, ext->n, &dead_pages);
		map_clear(sp->map, ext->start, ext->n);
		sum_update(sp, ext->start, ext->start + ext->n - 1);
		released += ext->n;
		ext->next = NULL;
		*link = ext;
		link = &ext->next;
	}
	sp->nr_pending -= released;
	WRITE_ONCE(sp->nr_free, sp->nr_free + released);
	avail_give(sp, released);
	sp->done_seq = max_u64(sp->done_seq, seq);
	ret = (long)released;
out_unlock:
	space_unlock(sp);
	free_pages(dead_pages);
	while (done) {
		ext = done->next;
		free(done);
		done = ext;
	}
	return ret;
}

/* ---- Create and destroy ----------------------------------------------- */

static void space_free_arrays(struct space *sp)
{
	for (unsigned int l = 1; l <= MAX_LEVELS; l++)
		free(sp->sum[l]);
	free(sp->map);
	free(sp->pend);
}

struct space *space_create(uint64_t nr_blocks, unsigned int block_size,
			   uint64_t meta_start, uint64_t meta_len)
{
	struct space *sp;
	unsigned int l;

	if (nr_blocks == 0 || nr_blocks > SPACE_MAX_BLOCKS ||
	    block_size < SPACE_MIN_BLOCK_SIZE ||
	    block_size > SPACE_MAX_BLOCK_SIZE ||
	    (block_size & (block_size - 1)))
		return ERR_PTR(-EINVAL);
	if (meta_len && (meta_start >= nr_blocks ||
			 meta_len > nr_blocks - meta_start))
		return ERR_PTR(-EINVAL);

	sp = calloc(1, sizeof(*sp));
	if (!sp)
		return ERR_PTR(-ENOMEM);
	sp->nr_blocks = nr_blocks;
	sp->nr_words = DIV_ROUND_UP(nr_blocks, 64);
	sp->blkbits = (unsigned int)__builtin_ctz(block_size);
	sp->meta_start = meta_len ? meta_start : 0;
	sp->meta_len = meta_len;
	sp->nr_chunks = DIV_ROUND_UP(nr_blocks, PEND_BLOCKS);
	sp->nr_nodes[0] = sp->nr_words;
	l = 0;
	do {
		l++;
		sp->nr_nodes[l] = DIV_ROUND_UP(sp->nr_nodes[l - 1], FAN);
	} while (sp->nr_nodes[l] > 1);
	sp->top = l;
	BUG_ON(sp->top > MAX_LEVELS);

	sp->map = calloc(sp->nr_words, sizeof(*sp->map));
	sp->pend = calloc(sp->nr_chunks, sizeof(*sp->pend));
	if (!sp->map || !sp->pend)
		goto out_free;
	for (l = 1; l <= sp->top; l++) {
		sp->sum[l] = calloc(sp->nr_nodes[l], sizeof(*sp->sum[l]));
		if (!sp->sum[l])
			goto out_free;
	}
	if (pthread_mutex_init(&sp->lock, NULL))
		goto out_free;

	/* The padding past the end is in use, so no search can return it. */
	if (nr_blocks % 64)
		sp->map[sp->nr_words - 1] = ~0ULL << (nr_blocks % 64);
	if (meta_len)
		map_set(sp->map, meta_start, meta_len);
	sum_rebuild(sp);
	sp->nr_free = nr_blocks - meta_len;
	sp->avail = (int64_t)sp->nr_free;
	sp->open_seq = 1;
	return sp;

out_free:
	space_free_arrays(sp);
	free(sp);
	return ERR_PTR(-ENOMEM);
}

void space_destroy(struct space *sp)
{
	struct pend_ext *ext, *next;

	if (!sp)
		return;
	/* Law 7: a clean unmount ends with no reservations. */
	WARN_ON(reserved_locked(sp) != 0);
	for (ext = sp->pend_head; ext; ext = next) {
		next = ext->next;
		free(ext);
	}
	for (uint64_t c = 0; c < sp->nr_chunks; c++)
		free(sp->pend[c]);
	pthread_mutex_destroy(&sp->lock);
	space_free_arrays(sp);
	free(sp);
}

/* ---- Stats ------------------------------------------------------------ */

static uint64_t mem_bytes(const struct space *sp)
{
	uint64_t bytes = sizeof(*sp) + sp->nr_words * 8 +
			 sp->nr_chunks * sizeof(*sp->pend) +
			 sp->nr_pend_pages * sizeof(struct pend_page) +
			 sp->nr_pend_ext * sizeof(struct pend_ext);

	for (unsigned int l = 1; l <= sp->top; l++)
		bytes += sp->nr_nodes[l] * sizeof(struct space_sum);
	return bytes;
}

void space_stats(struct space *sp, struct space_stats *st)
{
	space_lock(sp);
	st->nr_blocks = sp->nr_blocks;
	st->block_size = 1ULL << sp->blkbits;
	st->meta = sp->meta_len;
	st->usable = sp->nr_blocks - sp->meta_len;
	st->free = sp->nr_free;
	st->allocated = sp->nr_allocated;
	st->pending = sp->nr_pending;
	/* One load: reservations keep changing it without the mutex. */
	st->avail = __atomic_load_n(&sp->avail, __ATOMIC_RELAXED);
	st->reserved = reserved_of(sp, st->avail);
	st->longest = root_longest(sp);
	st->pending_extents = sp->nr_pend_ext;
	st->commit_seq = sp->open_seq;
	st->done_seq = sp->done_seq;
	st->words_scanned = sp->words_scanned;
	st->nr_locked = sp->nr_locked;
	st->mem_bytes = mem_bytes(sp);
	space_unlock(sp);
}

/* ---- Persistence ------------------------------------------------------ */

size_t space_serialized_size(const struct space *sp)
{
	return SPACE_HEADER_SIZE + (size_t)sp->nr_words * 8;
}

static void put_le64(unsigned char *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static void put_le32(unsigned char *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static uint64_t get_le64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

static uint32_t get_le32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

/* The last word's bits that are blocks (the rest is padding). */
static uint64_t last_word_mask(const struct space *sp)
{
	return sp->nr_blocks % 64 ? word_mask(0, sp->nr_blocks % 64) : ~0ULL;
}

long space_serialize(struct space *sp, void *buf, size_t len)
{
	size_t size = space_serialized_size(sp);
	unsigned char *p = buf;

	if (len < size)
		return -ENOBUFS;
	space_lock(sp);
	put_le64(p, SPACE_MAGIC);
	put_le32(p + 8, SPACE_FORMAT_VERSION);
	put_le32(p + 12, sp->blkbits);
	put_le64(p + 16, sp->nr_blocks);
	put_le64(p + 24, sp->nr_blocks - sp->nr_free);
	p += SPACE_HEADER_SIZE;
	for (uint64_t w = 0; w < sp->nr_words; w++) {
		uint64_t v = sp->map[w];

		if (w == sp->nr_words - 1)
			v &= last_word_mask(sp);
		put_le64(p + w * 8, v);
	}
	space_unlock(sp);
	return (long)size;
}

int space_load(struct space *sp, const void *buf, size_t len)
{
	const unsigned char *hdr = buf, *p = hdr + SPACE_HEADER_SIZE;
	uint64_t *map, used = 0, tailmask = last_word_mask(sp);
	int ret = 0;

	if (len < space_serialized_size(sp) ||
	    get_le64(hdr) != SPACE_MAGIC ||
	    get_le32(hdr + 8) != SPACE_FORMAT_VERSION ||
	    get_le32(hdr + 12) != sp->blkbits ||
	    get_le64(hdr + 16) != sp->nr_blocks)
		return -EINVAL;

	/* Decode and validate into a new map, without the lock. */
	map = space_alloc_should_fail(sp) ? NULL :
	      malloc(sp->nr_words * sizeof(*map));
	if (!map)
		return -ENOMEM;
	for (uint64_t w = 0; w < sp->nr_words; w++) {
		map[w] = get_le64(p + w * 8);
		used += (uint64_t)__builtin_popcountll(map[w]);
	}
	if ((map[sp->nr_words - 1] & ~tailmask) ||
	    used != get_le64(hdr + 24) ||
	    (sp->meta_len && !map_all(map, sp->meta_start, sp->meta_len, true))) {
		ret = -EINVAL;
		goto out_free;
	}
	map[sp->nr_words - 1] |= ~tailmask;

	space_lock(sp);
	if (sp->nr_allocated || sp->nr_pending || reserved_locked(sp)) {
		ret = -EBUSY;
		goto out_unlock;
	}
	/* Swap: the old map goes out through the free below. */
	{
		uint64_t *old = sp->map;

		sp->map = map;
		map = old;
	}
	sum_rebuild(sp);
	sp->nr_allocated = used - sp->meta_len;
	WRITE_ONCE(sp->nr_free, sp->nr_blocks - used);
	__atomic_store_n(&sp->avail, (int64_t)sp->nr_free, __ATOMIC_RELAXED);
out_unlock:
	space_unlock(sp);
out_free:
	free(map);
	return ret;
}

/* ---- Checks ----------------------------------------------------------- */

#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		if (bad++ < 8)						\
			fprintf(stderr, "space_check: " __VA_ARGS__);	\
	}								\
} while (0)

int space_check(struct space *sp)
{
	uint64_t used = 0, pend_bits = 0, pend_ext_blocks = 0, exts = 0;
	int64_t avail;
	long bad = 0;

	space_lock(sp);
	for (uint64_t w = 0; w < sp->nr_words; w++)
		used += (uint64_t)__builtin_popcountll(sp->map[w]);
	used -= sp->nr_words * 64 - sp->nr_blocks;	/* the padding */
	CHECK((~last_word_mask(sp) & ~sp->map[sp->nr_words - 1]) == 0,
	      "padding bits not set\n");
	CHECK(!sp->meta_len ||
	      map_all(sp->map, sp->meta_start, sp->meta_len, true),
	      "metadata blocks not in use\n");
	CHECK(sp->nr_blocks - used == sp->nr_free,
	      "free count %lu, map says %lu\n", (unsigned long)sp->nr_free,
	      (unsigned long)(sp->nr_blocks - used));
	CHECK(sp->nr_free + sp->nr_allocated + sp->nr_pending ==
	      sp->nr_blocks - sp->meta_len,
	      "free %lu + allocated %lu + pending %lu != usable %lu\n",
	      (unsigned long)sp->nr_free, (unsigned long)sp->nr_allocated,
	      (unsigned long)sp->nr_pending,
	      (unsigned long)(sp->nr_blocks - sp->meta_len));

	for (unsigned int l = 1; l <= sp->top; l++) {
		for (uint64_t i = 0; i < sp->nr_nodes[l]; i++) {
			struct space_sum want = sum_compute(sp, l, i);
			struct space_sum *have = &sp->sum[l][i];

			CHECK(!memcmp(&want, have, sizeof(want)),
			      "level %u node %lu: head/tail/longest %u/%u/%u, map says %u/%u/%u\n",
			      l, (unsigned long)i, have->head, have->tail,
			      have->longest, want.head, want.tail,
			      want.longest);
		}
	}

	for (uint64_t c = 0; c < sp->nr_chunks; c++) {
		struct pend_page *pg = sp->pend[c];
		uint64_t n = 0;

		if (!pg)
			continue;
		for (uint64_t w = 0; w < PEND_WORDS; w++) {
			uint64_t mw = c * PEND_WORDS + w;

			n += (uint64_t)__builtin_popcountll(pg->bits[w]);
			CHECK(!pg->bits[w] ||
			      (mw < sp->nr_words &&
			       (pg->bits[w] & ~sp->map[mw]) == 0),
			      "pending block free in the map near block %lu\n",
			      (unsigned long)(mw * 64));
		}
		CHECK(n == pg->count && n, "chunk %lu: %lu pending bits, count %lu\n",
		      (unsigned long)c, (unsigned long)n,
		      (unsigned long)pg->count);
		pend_bits += n;
	}
	for (struct pend_ext *e = sp->pend_head; e; e = e->next) {
		CHECK(!e->next || e->next->seq >= e->seq,
		      "pending list out of commit order\n");
		CHECK(e->seq <= sp->open_seq && e->seq > 0,
		      "pending extent from commit %lu, open is %lu\n",
		      (unsigned long)e->seq, (unsigned long)sp->open_seq);
		CHECK(e->seq > sp->done_seq,
		      "pending extent of done commit %lu\n",
		      (unsigned long)e->seq);
		pend_ext_blocks += e->n;
		exts++;
	}
	CHECK(pend_bits == sp->nr_pending && pend_ext_blocks == sp->nr_pending,
	      "pending %lu, bits %lu, list %lu\n",
	      (unsigned long)sp->nr_pending, (unsigned long)pend_bits,
	      (unsigned long)pend_ext_blocks);
	CHECK(exts == sp->nr_pend_ext, "pending list length\n");
	/* 0 <= reserved <= free. */
	avail = __atomic_load_n(&sp->avail, __ATOMIC_RELAXED);
	CHECK(avail >= 0 && (uint64_t)avail <= sp->nr_free,
	      "unreserved free blocks %ld, free %lu\n", (long)avail,
	      (unsigned long)sp->nr_free);
	space_unlock(sp);
	return bad ? -EUCLEAN : 0;
}

/* ---- Test hooks ------------------------------------------------------- */

void space_test_lock(struct space *sp)
{
#ifdef FOLIOFS_TESTING
	space_lock(sp);
#else
	(void)sp;
#endif
}

void space_test_unlock(struct space *sp)
{
#ifdef FOLIOFS_TESTING
	space_unlock(sp);
#else
	(void)sp;
#endif
}

void space_test_flip(struct space *sp, uint64_t block)
{
#ifdef FOLIOFS_TESTING
	space_lock(sp);
	if (block < sp->nr_blocks)
		sp->map[block / 64] ^= 1ULL << (block % 64);
	space_unlock(sp);
#else
	(void)sp;
	(void)block;
#endif
}

void space_fail_alloc(struct space *sp, long after, long count)
{
#ifdef FOLIOFS_TESTING
	long seq = __atomic_load_n(&sp->alloc_seq, __ATOMIC_RELAXED);

	__atomic_store_n(&sp->fail_to, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&sp->fail_from, seq + after, __ATOMIC_RELAXED);
	__atomic_store_n(&sp->fail_to, seq + after + count, __ATOMIC_RELAXED);
#else
	(void)sp;
	(void)after;
	(void)count;
#endif
}
