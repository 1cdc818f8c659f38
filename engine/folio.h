/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * folio.h - the folio: a descriptor for 2^order contiguous 4 KiB pages of
 * cached file data, order 0..FOLIO_MAX_ORDER (4 KiB .. 2 MiB).
 *
 * The data is one allocation aligned to its own size (jemalloc's mallocx
 * when FOLIOFS_JEMALLOC is set, aligned_alloc otherwise). It is not zeroed:
 * whoever fills a folio (read, write, or a hole) writes every byte it later
 * marks uptodate.
 *
 * Descriptors come from a type-stable pool (DESIGN law 2). Slabs of them are
 * never handed back to malloc while the engine runs (folio_pool_exit() frees
 * them at the end), and a descriptor whose refcount reached zero goes back to
 * the pool only after an RCU grace period. So:
 *  - a reader that loaded a folio pointer inside an RCU read-side critical
 *    section may call folio_try_get() on it: the descriptor is valid memory,
 *    and if the folio died the refcount is zero and the get fails;
 *  - code that finds a descriptor without RCU (an LRU list walked under its
 *    own lock) may also call folio_try_get(), but the descriptor may by then
 *    be a new folio: it must check the identity it expects (mapping, index)
 *    after the get succeeds, as readers do anyway (law 1).
 * The data, by contrast, is freed at once by the last folio_put(): nothing
 * may touch it without holding a reference.
 *
 * Invariants:
 *  - refcount > 0 while anyone may use the folio; 0 means free, frozen
 *    (folio_ref_freeze) or waiting for its grace period;
 *  - every pin also holds a reference (folio_pin takes one), so
 *    pincount <= refcount - 1 and a freeze at the expected count fails while
 *    the folio is pinned;
 *  - order, blkbits, data and owner are fixed between folio_alloc() and
 *    the last folio_put(); a split makes new folios (folio_alloc_piece())
 *    that share this one's data, it does not shrink this one;
 *  - at the last put the folio is unpinned, unlocked, not under writeback,
 *    off the LRU and has no mapping (FOLIO_BUG_ON); a blkstate it still has
 *    (it left the cache while pinned, law 8) is freed with it.
 *
 * Waiting. FOLIO_LOCKED and FOLIO_WRITEBACK are waited on with a futex on
 * the low 32 bits of the flags word itself, rather than on a hashed table of
 * wait words or a separate sequence word:
 *  - the kernel compares the word and queues the waiter atomically with
 *    respect to FUTEX_WAKE, and the word is the very state being waited on,
 *    so "sleep only if the bit is still set" needs no second protocol: a
 *    waiter sets FOLIO_WAITERS, then sleeps only if the word still reads
 *    what it saw (bit set, FOLIO_WAITERS set); whoever clears the bit
 *    clears FOLIO_WAITERS in the same atomic op and wakes if it was set;
 *  - no wait table to size, no hash collisions waking unrelated folios, no
 *    extra 4 bytes per descriptor; an uncontended unlock is one atomic op
 *    and no syscall;
 *  - a type-stable descriptor makes a late FUTEX_WAKE on a recycled folio a
 *    harmless spurious wake-up.
 * The cost is that any flag change between a waiter's look and its sleep
 * (say FOLIO_REFERENCED) makes FUTEX_WAIT return at once and the waiter look
 * again. All flags therefore live in the low 32 bits (see the static assert
 * in folio.c). Lock and writeback waiters share FOLIO_WAITERS, and every
 * wake is a wake-all: a waiter for the other bit looks, and sleeps again.
 *
 * The folio lock is a bit lock, not a pthread mutex: it is held across I/O
 * and may be released by another thread than the one that took it (a read's
 * completion unlocks the folio the submitter locked).
 *
 * Locking:
 *  lock-free, any thread:      folio_ref_count, folio_maybe_pinned, the flag
 *                              helpers, the accessors
 *  caller holds RCU read lock, or found the descriptor under a lock that
 *  keeps it off the free path (see above):
 *                              folio_try_get
 *  caller holds a reference:   folio_get, folio_pin, folio_unpin,
 *                              folio_lock, folio_trylock, folio_wait_locked,
 *                              folio_wait_writeback, folio_end_writeback
 *  caller holds the folio lock: folio_unlock, folio_start_writeback,
 *                              folio_set_mapping, folio_ref_freeze and
 *                              folio_ref_unfreeze (by convention: a split
 *                              freezes a locked folio)
 *  may sleep:                  folio_lock, folio_wait_locked,
 *                              folio_wait_writeback
 *  takes the pool lock:        folio_alloc, the RCU callback of the last put,
 *                              folio_pool_exit
 *  needs a thread registered with urcu: folio_put (the last put queues the
 *                              descriptor to call_rcu), folio_unpin,
 *                              folio_pool_exit
 *  never called inside an RCU read-side critical section: folio_pool_exit
 *
 * LRU. folio->lru is a plain doubly-linked list node (liburcu's
 * cds_list_head, used without RCU). The reclaim code owns the lists and the
 * lock that protects them and FOLIO_LRU; the LRU holds no reference, so a
 * folio must be taken off it before its last put. The node shares storage
 * with the rcu_head the last put uses.
 */
#ifndef FOLIOFS_FOLIO_H
#define FOLIOFS_FOLIO_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <urcu/list.h>

#include "compiler.h"
#include "rcu.h"

#define PAGE_SHIFT		12
#define PAGE_SIZE		(1UL << PAGE_SHIFT)
#define FOLIO_MAX_ORDER		9
/* Smallest block the per-block state may track (blkstate.h). */
#define FOLIO_MIN_BLKBITS	9

struct filemap;		/* the page cache that owns folio->mapping */
struct blkstate;	/* per-block state, blkstate.h */

/*
 * Flag bits, numbers for the bit helpers. They all sit in the low 32 bits of
 * the flags word, the part the futex waits on.
 */
enum folio_flag {
	FOLIO_LOCKED,		/* the folio lock; waited on */
	FOLIO_WRITEBACK,	/* write I/O in flight; waited on */
	FOLIO_WAITERS,		/* someone may sleep on LOCKED or WRITEBACK */
	FOLIO_UPTODATE,		/* every block holds valid data */
	FOLIO_DIRTY,		/* some block must be written back */
	FOLIO_PRIVATE,		/* folio->private holds a blkstate */
	FOLIO_DELALLOC,		/* some block holds a delalloc reservation
				 * (the reserved bitmap's flag, blkstate.h) */
	FOLIO_RECLAIM,		/* reclaim wants it gone after writeback */
	FOLIO_REFERENCED,	/* accessed since reclaim last looked */
	FOLIO_ACTIVE,		/* read twice: belongs on the active list */
	FOLIO_READAHEAD,	/* reading it should trigger more readahead */
	FOLIO_LRU,		/* on an LRU list; reclaim's lock */
	FOLIO_LRU_ACTIVE,	/* on the active list, not the inactive one;
				 * reclaim's lock */
	FOLIO_NR_FLAGS
};

struct folio {
	/*
	 * enum folio_flag bits. Atomic RMW only. The low 32 bits are the futex
	 * word that lock and writeback waiters sleep on.
	 */
	unsigned long		flags;
	/* References; 0 = free or frozen. Atomic. */
	int			refcount;
	/* Pins (zero-copy I/O), each also holding a reference. Atomic. */
	int			pincount;
	/* First page index in the file. Set before the folio is published
	 * (before its refcount becomes non-zero to others), then fixed. */
	unsigned long		index;
	/* Owning page cache; NULL when not in one. Written under the folio
	 * lock with a release store; read with folio_mapping() (acquire). */
	struct filemap		*mapping;
	/* 2^order pages, aligned to folio_size(). Fixed while referenced. */
	void			*data;
	/*
	 * NULL when the folio owns its data. A piece made by a split points
	 * into the allocation of the folio it was split from: that folio is
	 * the owner, and the piece holds a reference on it until its last
	 * put. Fixed from allocation to the last put.
	 */
	struct folio		*owner;
	/* Per-block state or NULL. Release store under the folio lock;
	 * acquire load (blkstate.c). FOLIO_PRIVATE says whether it is set. */
	struct blkstate		*private;
	union {
		/* Reclaim's lists; protected by reclaim's lock. */
		struct cds_list_head	lru;
		/* From the last put until the descriptor is back in the pool. */
		struct rcu_head		rcu;
		/* On the pool's free list; protected by the pool lock. */
		struct folio		*next_free;
	};
	/* log2 of pages. Fixed from folio_alloc() to the last put. */
	unsigned char		order;
	/* log2 of the block size, FOLIO_MIN_BLKBITS..PAGE_SHIFT; PAGE_SHIFT
	 * unless the page cache sets another before publishing the folio. */
	unsigned char		blkbits;
};

/* --- Invariant checks --------------------------------------------------- */

/* Print every field of @folio to stderr, headed by @reason. */
void folio_dump(const struct folio *folio, const char *reason);

#ifdef FOLIOFS_DEBUG
#define FOLIO_BUG_ON(cond, folio) do {					\
	if (unlikely(cond)) {						\
		fprintf(stderr, "foliofs: BUG at %s:%d %s(): %s\n",	\
			__FILE__, __LINE__, __func__, #cond);		\
		folio_dump(folio, "BUG");				\
		abort();						\
	}								\
} while (0)
#define FOLIO_WARN_ON(cond, folio) ({					\
	bool __fw = !!(cond);						\
	if (unlikely(__fw)) {						\
		fprintf(stderr, "foliofs: WARNING at %s:%d %s(): %s\n", \
			__FILE__, __LINE__, __func__, #cond);		\
		folio_dump(folio, "WARNING");				\
	}								\
	__fw;								\
})
#else
#define FOLIO_BUG_ON(cond, folio)	do { (void)sizeof(cond); } while (0)
#define FOLIO_WARN_ON(cond, folio)	({ bool __fw = !!(cond); unlikely(__fw); })
#endif

/* --- Accessors ------------------------------------------------------------ */

static inline unsigned int folio_order(const struct folio *folio)
{
	return folio->order;
}

static inline unsigned long folio_nr_pages(const struct folio *folio)
{
	return 1UL << folio->order;
}

static inline size_t folio_size(const struct folio *folio)
{
	return PAGE_SIZE << folio->order;
}

static inline unsigned int folio_shift(const struct folio *folio)
{
	return PAGE_SHIFT + folio->order;
}

/* Byte offset in the file of the folio's first byte. */
static inline uint64_t folio_pos(const struct folio *folio)
{
	return (uint64_t)folio->index << PAGE_SHIFT;
}

/* Whether page @index of the file lies in @folio. */
static inline bool folio_contains(const struct folio *folio,
				  unsigned long index)
{
	return index - folio->index < folio_nr_pages(folio);
}

static inline void *folio_address(const struct folio *folio)
{
	return folio->data;
}

/*
 * folio_mapping() - the page cache @folio belongs to, or NULL.
 * Pairs with the release store in folio_set_mapping(): a reader that sees
 * the mapping also sees what was set up before it was published.
 */
static inline struct filemap *folio_mapping(const struct folio *folio)
{
	return load_acquire(&((struct folio *)folio)->mapping);
}

/*
 * folio_set_mapping() - set or clear (NULL) the owning page cache.
 * Law 4: the page cache clears it only after the folio has left its tree.
 * Context: caller holds the folio lock.
 */
static inline void folio_set_mapping(struct folio *folio,
				     struct filemap *mapping)
{
	/* Pairs with the acquire load in folio_mapping(). */
	store_release(&folio->mapping, mapping);
}

/* --- Flags ---------------------------------------------------------------- */

/*
 * Tests are acquire loads and changes are release (test-and-change:
 * acq_rel) read-modify-writes, so a flag can publish data: who fills a folio
 * and then sets FOLIO_UPTODATE pairs with whoever tests FOLIO_UPTODATE and
 * then reads the data. On x86-64 each is a plain load or one locked op.
 */
static inline unsigned long folio_flags(const struct folio *folio)
{
	return __atomic_load_n(&folio->flags, __ATOMIC_ACQUIRE);
}

static inline bool folio_test_flag(const struct folio *folio,
				   enum folio_flag flag)
{
	return folio_flags(folio) & (1UL << flag);
}

static inline void folio_set_flag(struct folio *folio, enum folio_flag flag)
{
	__atomic_fetch_or(&folio->flags, 1UL << flag, __ATOMIC_RELEASE);
}

static inline void folio_clear_flag(struct folio *folio, enum folio_flag flag)
{
	__atomic_fetch_and(&folio->flags, ~(1UL << flag), __ATOMIC_RELEASE);
}

/* Set @flag; return whether it was set before. */
static inline bool folio_test_set_flag(struct folio *folio,
				       enum folio_flag flag)
{
	return __atomic_fetch_or(&folio->flags, 1UL << flag,
				 __ATOMIC_ACQ_REL) & (1UL << flag);
}

/* Clear @flag; return whether it was set before. */
static inline bool folio_test_clear_flag(struct folio *folio,
					 enum folio_flag flag)
{
	return __atomic_fetch_and(&folio->flags, ~(1UL << flag),
				  __ATOMIC_ACQ_REL) & (1UL << flag);
}

/*
 * Named helpers: folio_test_<name>() for every flag; folio_set_<name>(),
 * folio_clear_<name>(), folio_test_set_<name>() and folio_test_clear_<name>()
 * only for flags nobody waits on. LOCKED and WRITEBACK change only through
 * folio_lock()/folio_unlock() and folio_start/end_writeback(), which wake
 * waiters. With a blkstate attached, UPTODATE, DIRTY and DELALLOC are
 * derived from its bitmaps: change them through blkstate_*() instead.
 */
#define FOLIO_TEST_FLAG(name, flag)					\
static inline bool folio_test_##name(const struct folio *folio)		\
{ return folio_test_flag(folio, flag); }

#define FOLIO_FLAG(name, flag)						\
FOLIO_TEST_FLAG(name, flag)						\
static inline void folio_set_##name(struct folio *folio)		\
{ folio_set_flag(folio, flag); }					\
static inline void folio_clear_##name(struct folio *folio)		\
{ folio_clear_flag(folio, flag); }					\
static inline bool folio_test_set_##name(struct folio *folio)		\
{ return folio_test_set_flag(folio, flag); }				\
static inline bool folio_test_clear_##name(struct folio *folio)	\
{ return folio_test_clear_flag(folio, flag); }

FOLIO_TEST_FLAG(locked, FOLIO_LOCKED)
FOLIO_TEST_FLAG(writeback, FOLIO_WRITEBACK)
FOLIO_TEST_FLAG(waiters, FOLIO_WAITERS)
FOLIO_TEST_FLAG(private, FOLIO_PRIVATE)
FOLIO_FLAG(uptodate, FOLIO_UPTODATE)
FOLIO_FLAG(dirty, FOLIO_DIRTY)
FOLIO_FLAG(delalloc, FOLIO_DELALLOC)
FOLIO_FLAG(reclaim, FOLIO_RECLAIM)
FOLIO_FLAG(referenced, FOLIO_REFERENCED)
FOLIO_FLAG(active, FOLIO_ACTIVE)
FOLIO_FLAG(readahead, FOLIO_READAHEAD)
FOLIO_FLAG(lru, FOLIO_LRU)

/* --- Allocation and references -------------------------------------------- */

/**
 * folio_alloc() - allocate a folio of 2^@order pages.
 * @order: 0..FOLIO_MAX_ORDER.
 *
 * The new folio has refcount 1 and no pins, flags, mapping or blkstate;
 * index 0 and blkbits PAGE_SHIFT until the caller sets them (before it
 * publishes the folio). The data is aligned to folio_size() and not zeroed.
 *
 * Context: takes the pool lock; may allocate (slabs and data). Any thread.
 * Return: the folio, or NULL when memory (or, in test builds, an injected
 * failure: folio_fail_alloc_next()) runs out, or @order is out of range.
 */
struct folio *folio_alloc(unsigned int order);

/**
 * folio_alloc_piece() - a folio of 2^@order pages over pages
 * [@page_off, @page_off + 2^@order) of @parent's data, for a split (law 3).
 *
 * No data is copied or allocated: the piece shares the allocation of
 * @parent's data owner (folio_data_owner()), on which it holds a reference
 * until its last put, so the memory lives while any piece does. The piece
 * has refcount 1, @parent's blkbits, index 0 and nothing else set.
 *
 * Context: caller holds a reference on @parent. Takes the pool lock.
 * Return: the piece, or NULL when no descriptor could be had.
 */
struct folio *folio_alloc_piece(struct folio *parent, unsigned long page_off,
				unsigned int order);

/* The folio whose allocation holds @folio's data (@folio itself if any). */
static inline struct folio *folio_data_owner(struct folio *folio)
{
	return folio->owner ? folio->owner : folio;
}

/**
 * folio_try_get() - take a reference unless the refcount is zero.
 * @folio: a descriptor that may be free, frozen or recycled (law 1, 2).
 *
 * The reader's half of a speculative lookup: after it succeeds, the caller
 * re-checks that the slot it loaded @folio from still holds it and that
 * @folio covers the index it wants, and drops the reference if not.
 *
 * Context: RCU read lock held across the load of @folio and this call, or
 * @folio found under a lock that keeps it off the free path. Lock-free.
 * Return: true if a reference was taken (acquire: the folio's set-up before
 * its refcount was made non-zero is visible), false if the refcount was 0.
 */
static inline bool folio_try_get(struct folio *folio)
{
	int ref = __atomic_load_n(&folio->refcount, __ATOMIC_RELAXED);

	do {
		if (ref == 0)
			return false;
	/* Acquire pairs with the release in folio_alloc()/folio_ref_unfreeze(). */
	} while (!__atomic_compare_exchange_n(&folio->refcount, &ref, ref + 1,
					      true, __ATOMIC_ACQUIRE,
					      __ATOMIC_RELAXED));
	return true;
}

/**
 * folio_get() - take another reference.
 * Context: caller holds a reference. Lock-free.
 */
static inline void folio_get(struct folio *folio)
{
	int old = __atomic_fetch_add(&folio->refcount, 1, __ATOMIC_RELAXED);

	FOLIO_BUG_ON(old <= 0, folio);
}

/**
 * folio_put() - drop a reference; the last one frees the folio.
 *
 * The last put frees the data (exactly folio_size() bytes, the order read
 * before the decrement) at once, and queues the descriptor to return to the
 * pool after an RCU grace period, with any blkstate it kept. In debug
 * builds a folio that is pinned, locked, under writeback, on the LRU or in
 * a mapping at its last put is a bug.
 *
 * Context: caller holds the reference it drops. Needs a thread registered
 * with urcu (the last put calls fs_call_rcu). Never sleeps.
 */
void folio_put(struct folio *folio);

static inline int folio_ref_count(const struct folio *folio)
{
	return __atomic_load_n(&((struct folio *)folio)->refcount,
			       __ATOMIC_ACQUIRE);
}

/**
 * folio_ref_freeze() - set the refcount to 0 if it is exactly @expected.
 *
 * A frozen folio turns every folio_try_get() away, so the caller may change
 * what lookups would see (split, removal) with no one holding a reference
 * it does not know of. Fails while anyone else holds a reference, or a pin
 * (which holds one).
 *
 * Context: caller holds the folio lock and @expected references (its own,
 * the page cache's). Lock-free.
 * Return: true if frozen.
 */
static inline bool folio_ref_freeze(struct folio *folio, int expected)
{
	int old = expected;

	FOLIO_BUG_ON(expected <= 0, folio);
	/* Acquire: whatever the other reference holders did before their
	 * puts is visible to the freezer. Pairs with folio_put()'s release. */
	return __atomic_compare_exchange_n(&folio->refcount, &old, 0, false,
					   __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

/**
 * folio_ref_unfreeze() - give a frozen folio @count references.
 * Context: caller froze it. Lock-free.
 */
static inline void folio_ref_unfreeze(struct folio *folio, int count)
{
	FOLIO_BUG_ON(count <= 0, folio);
	FOLIO_BUG_ON(folio_ref_count(folio) != 0, folio);
	/* Release pairs with folio_try_get()'s acquire: a reader that gets
	 * the folio sees everything done while it was frozen. */
	__atomic_store_n(&folio->refcount, count, __ATOMIC_RELEASE);
}

/**
 * folio_pin() - pin @folio for zero-copy I/O (law 8).
 *
 * Takes a reference and raises the pin count (exact, whatever the order).
 * While pinned a folio is never evicted or split and keeps its blkstate;
 * writeback may still clean it.
 *
 * Context: caller holds a reference. Lock-free.
 */
/* Folios with at least one pin, process-wide (statistics). */
extern long folio_nr_pinned;

static inline void folio_pin(struct folio *folio)
{
	/* The reference first: a freeze that sees the pin must also fail on
	 * the reference, and a freezer that won has no pin to miss. */
	folio_get(folio);
	if (!__atomic_fetch_add(&folio->pincount, 1, __ATOMIC_ACQ_REL))
		__atomic_add_fetch(&folio_nr_pinned, 1, __ATOMIC_RELAXED);
}

/**
 * folio_unpin() - drop a pin and the reference it held.
 * Context: caller holds the pin. May be the last put: needs a registered
 * thread.
 */
static inline void folio_unpin(struct folio *folio)
{
	int old = __atomic_fetch_sub(&folio->pincount, 1, __ATOMIC_ACQ_REL);

	FOLIO_BUG_ON(old <= 0, folio);
	if (old == 1)
		__atomic_sub_fetch(&folio_nr_pinned, 1, __ATOMIC_RELAXED);
	folio_put(folio);
}

static inline int folio_pin_count(const struct folio *folio)
{
	return __atomic_load_n(&((struct folio *)folio)->pincount,
			       __ATOMIC_ACQUIRE);
}

/*
 * folio_maybe_pinned() - whether @folio has pins. Exact at the time of the
 * load (unlike Linux, where an order-0 page's pins are guessed from its
 * refcount); "maybe" because a pin may come or go right after. Stable for a
 * caller that froze the refcount, or holds the folio lock and the only
 * references (a new pin needs a reference).
 */
static inline bool folio_maybe_pinned(const struct folio *folio)
{
	return folio_pin_count(folio) > 0;
}

/* --- The folio lock and writeback ----------------------------------------- */

/**
 * folio_trylock() - take the folio lock if it is free.
 * Context: caller holds a reference. Never sleeps.
 * Return: true if the caller now holds the lock.
 */
static inline bool folio_trylock(struct folio *folio)
{
	/* Acquire pairs with folio_unlock()'s release. */
	return !(__atomic_fetch_or(&folio->flags, 1UL << FOLIO_LOCKED,
				   __ATOMIC_ACQUIRE) & (1UL << FOLIO_LOCKED));
}

/* The contended half of folio_lock(). */
void __folio_lock_slow(struct folio *folio);

/**
 * folio_lock() - take the folio lock, sleeping until it is free.
 * Context: caller holds a reference and not this lock. May sleep.
 */
static inline void folio_lock(struct folio *folio)
{
	if (!folio_trylock(folio))
		__folio_lock_slow(folio);
}

/**
 * folio_unlock() - release the folio lock and wake whoever waits on it.
 * Any thread may release a lock another took (an I/O completion does).
 * Context: the lock is held. Never sleeps.
 */
void folio_unlock(struct folio *folio);

/**
 * folio_wait_locked() - sleep until @folio is unlocked, without taking the
 * lock. It may be locked again by the time this returns.
 * Context: caller holds a reference and not the lock. May sleep.
 */
void folio_wait_locked(struct folio *folio);

/**
 * folio_start_writeback() - mark @folio under writeback.
 * Context: caller holds the folio lock; the folio is not already under
 * writeback (FOLIO_BUG_ON).
 */
void folio_start_writeback(struct folio *folio);

/**
 * folio_end_writeback() - clear FOLIO_WRITEBACK and wake its waiters.
 * Context: the folio is under writeback; caller holds a reference (the I/O
 * holds one), not necessarily the lock. Never sleeps.
 */
void folio_end_writeback(struct folio *folio);

/**
 * folio_wait_writeback() - sleep until @folio is not under writeback.
 * Law 9: a writer calls it, with the folio locked so no new writeback
 * starts, before it changes the data.
 * Context: caller holds a reference. May sleep.
 */
void folio_wait_writeback(struct folio *folio);

/* --- Pool, accounting, testing -------------------------------------------- */

/**
 * folio_pool_exit() - give every descriptor slab back to malloc.
 * Waits for pending frees (fs_rcu_barrier) first. The pool starts again on
 * the next folio_alloc().
 * Context: registered thread, outside any RCU read-side critical section;
 * takes the pool lock. For unmount and tests.
 * Return: 0, or -EBUSY (nothing freed) while any folio is still live.
 */
int folio_pool_exit(void);

/* Descriptors allocated and not yet back in the pool. */
long folio_descs_live(void);
/* Bytes of folio data allocated and not yet freed. */
long folio_bytes_live(void);
/* Descriptors the pool holds in slabs, live or free. */
long folio_pool_descs(void);

/*
 * folio_fail_alloc() - let the next @after data allocations succeed, then
 * fail @count of them (@count 0 disarms). folio_fail_alloc_next(n) fails the
 * next n. Only in builds with FOLIOFS_TESTING; elsewhere a no-op.
 */
void folio_fail_alloc(long after, long count);

static inline void folio_fail_alloc_next(long n)
{
	folio_fail_alloc(0, n);
}

#endif /* FOLIOFS_FOLIO_H */
