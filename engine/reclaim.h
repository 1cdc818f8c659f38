/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * reclaim.h - the engine-wide cache: its memory limit, its LRU lists, and
 * the reclaim that keeps cached bytes under the limit.
 *
 * Every folio in a page cache is on one of two lists of its struct
 * fs_cache (a two-list LRU, as in Linux):
 *  - new folios go to the head of the inactive list;
 *  - a cached read marks a folio FOLIO_REFERENCED the first time and
 *    FOLIO_ACTIVE the second; neither takes a lock, so the read path stays
 *    lock-free;
 *  - reclaim takes folios from the inactive tail: one marked active moves
 *    to the active list, any other is evicted if it is clean, unlocked, not
 *    under writeback, unpinned and used by nobody (its refcount freezes at
 *    the expected value); otherwise it is rotated;
 *  - the active list is kept no longer than the inactive one by moving its
 *    tail folios that were not referenced since the last pass back to the
 *    inactive head.
 * A stream read once therefore passes through the inactive list and never
 * pushes out the folios that were read twice: the cache resists scans.
 *
 * Dirty folios are not evicted: writeback cleans them (laws 6-8 forbid
 * dropping dirty data or touching a pinned folio's state), and
 * cache_balance() asks it to through want_writeback when dirty data is what
 * keeps the cache over its limit. A large folio with only a few dirty
 * blocks is split instead, so its clean pieces can go.
 *
 * Locking:
 *  takes lru_lock:      cache_lru_add, cache_lru_del, cache_lru_replace,
 *                       cache_reclaim (and trylocks folios under it: never
 *                       sleeps on a folio lock while holding it)
 *  lock-free:           folio_mark_accessed, cache_over_limit
 * Lock order: folio lock, then xa_lock, then lru_lock.
 */
#ifndef FOLIOFS_RECLAIM_H
#define FOLIOFS_RECLAIM_H

#include <pthread.h>
#include <stdbool.h>

#include <urcu/list.h>

#include "folio.h"
#include "stats.h"

struct fs_cache_stats {
	struct fs_counter	hits;		/* cached reads served */
	struct fs_counter	misses;		/* reads that had to fill */
	struct fs_counter	ra_pages;	/* pages read ahead */
	struct fs_counter	ra_hits;	/* async markers reached */
	struct fs_counter	evicted;	/* folios reclaimed */
	struct fs_counter	evicted_bytes;
	struct fs_counter	splits;		/* folios split */
	struct fs_counter	split_eagain;	/* split refused: other refs */
	struct fs_counter	split_ebusy;	/* split refused: pin, writeback */
	struct fs_counter	zeroed_in_place; /* partial truncates without split */
	struct fs_counter	reclaim_splits;	/* large folios split to evict */
};

struct fs_cache {
	pthread_mutex_t		lru_lock;
	/* Serialises reclaimers; others skip instead of queueing. */
	pthread_mutex_t		reclaim_lock;
	struct cds_list_head	inactive;	/* lru_lock */
	struct cds_list_head	active;		/* lru_lock */
	unsigned long		nr_inactive;	/* pages; lru_lock */
	unsigned long		nr_active;	/* pages; lru_lock */
	/* Bytes of folios in page caches. Atomic. */
	unsigned long		cached;
	/* The same, by folio order. Atomics. */
	unsigned long		cached_by_order[FOLIO_MAX_ORDER + 1];
	/* Reclaim keeps cached at or below this. Fixed after init. */
	unsigned long		limit;
	/*
	 * Called by cache_balance() when reclaim could not get under the
	 * limit because the rest is dirty: ask writeback to clean @bytes.
	 * NULL until the writeback layer sets it. Called with no lock held.
	 */
	void			(*want_writeback)(struct fs_cache *cache,
						  unsigned long bytes);
	void			*owner;		/* for want_writeback */
	struct fs_cache_stats	stats;
};

/* Default limit: a quarter of physical memory. */
unsigned long cache_default_limit(void);

/**
 * cache_init() - an empty cache with @limit bytes (0: the default).
 * Context: any.
 */
void cache_init(struct fs_cache *cache, unsigned long limit);

/**
 * cache_destroy() - the lists must be empty (every page cache destroyed).
 */
void cache_destroy(struct fs_cache *cache);

/* Add a folio just inserted in a page cache to the inactive head. */
void cache_lru_add(struct fs_cache *cache, struct folio *folio);
/* Take a folio leaving its page cache off its list. */
void cache_lru_del(struct fs_cache *cache, struct folio *folio);
/*
 * @old is being split into @pieces: put them where @old was, in order, and
 * take @old off. Keeps the split folio's age (law 3).
 */
void cache_lru_replace(struct fs_cache *cache, struct folio *old,
		       struct folio **pieces, unsigned int n);

/*
 * folio_mark_accessed() - a read used @folio. First use: referenced;
 * second: active. Lock-free; writes the flags only when they change.
 */
static inline void folio_mark_accessed(struct folio *folio)
{
	unsigned long flags = folio_flags(folio);

	if (likely(flags & (1UL << FOLIO_ACTIVE)))
		return;
	if (!(flags & (1UL << FOLIO_REFERENCED)))
		folio_set_referenced(folio);
	else
		folio_set_active(folio);
}

static inline bool cache_over_limit(struct fs_cache *cache)
{
	return __atomic_load_n(&cache->cached, __ATOMIC_RELAXED) > cache->limit;
}

/**
 * cache_reclaim() - evict clean, unused folios until @bytes are freed or
 * nothing more can be.
 * Context: takes lru_lock, folio trylocks, xa_lock; never sleeps on a
 * folio. Needs a registered thread.
 * Return: bytes evicted.
 */
unsigned long cache_reclaim(struct fs_cache *cache, unsigned long bytes);

/**
 * cache_balance() - reclaim down to the limit if over it. Called after a
 * page cache grew, with no folio lock held. If another thread is already
 * reclaiming, returns at once.
 */
void cache_balance(struct fs_cache *cache);

#endif /* FOLIOFS_RECLAIM_H */
