/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * reclaim.c - two-list LRU and eviction (see reclaim.h).
 */
#include <string.h>
#include <unistd.h>

#include "blkstate.h"
#include "filemap.h"
#include "reclaim.h"

unsigned long cache_default_limit(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);

	if (pages <= 0 || size <= 0)
		return 256UL << 20;
	return (unsigned long)pages * (unsigned long)size / 4;
}

void cache_init(struct fs_cache *cache, unsigned long limit)
{
	memset(cache, 0, sizeof(*cache));
	pthread_mutex_init(&cache->lru_lock, NULL);
	pthread_mutex_init(&cache->reclaim_lock, NULL);
	CDS_INIT_LIST_HEAD(&cache->inactive);
	CDS_INIT_LIST_HEAD(&cache->active);
	cache->limit = limit ? limit : cache_default_limit();
}

void cache_destroy(struct fs_cache *cache)
{
	WARN_ON(!cds_list_empty(&cache->inactive));
	WARN_ON(!cds_list_empty(&cache->active));
	WARN_ON(cache->cached != 0);
	pthread_mutex_destroy(&cache->lru_lock);
	pthread_mutex_destroy(&cache->reclaim_lock);
}

static void lru_account(struct fs_cache *cache, struct folio *folio, long sign)
{
	long pages = sign * (long)folio_nr_pages(folio);

	if (folio_test_flag(folio, FOLIO_LRU_ACTIVE))
		cache->nr_active += pages;
	else
		cache->nr_inactive += pages;
}

void cache_lru_add(struct fs_cache *cache, struct folio *folio)
{
	pthread_mutex_lock(&cache->lru_lock);
	FOLIO_BUG_ON(folio_test_lru(folio), folio);
	cds_list_add(&folio->lru, &cache->inactive);
	folio_set_lru(folio);
	lru_account(cache, folio, 1);
	pthread_mutex_unlock(&cache->lru_lock);
	__atomic_add_fetch(&cache->cached, folio_size(folio), __ATOMIC_RELAXED);
	__atomic_add_fetch(&cache->cached_by_order[folio_order(folio)],
			   folio_size(folio), __ATOMIC_RELAXED);
}

static void lru_del_locked(struct fs_cache *cache, struct folio *folio)
{
	lru_account(cache, folio, -1);
	cds_list_del(&folio->lru);
	folio_clear_lru(folio);
	folio_clear_flag(folio, FOLIO_LRU_ACTIVE);
}

void cache_lru_del(struct fs_cache *cache, struct folio *folio)
{
	pthread_mutex_lock(&cache->lru_lock);
	if (folio_test_lru(folio))
		lru_del_locked(cache, folio);
	pthread_mutex_unlock(&cache->lru_lock);
	__atomic_sub_fetch(&cache->cached, folio_size(folio), __ATOMIC_RELAXED);
	__atomic_sub_fetch(&cache->cached_by_order[folio_order(folio)],
			   folio_size(folio), __ATOMIC_RELAXED);
}

void cache_lru_replace(struct fs_cache *cache, struct folio *old,
		       struct folio **pieces, unsigned int n)
{
	bool active;

	pthread_mutex_lock(&cache->lru_lock);
	FOLIO_BUG_ON(!folio_test_lru(old), old);
	active = folio_test_flag(old, FOLIO_LRU_ACTIVE);
	/* Each piece goes right after the previous one: same age, same list. */
	for (unsigned int i = n; i-- > 0;) {
		struct folio *piece = pieces[i];

		if (active)
			folio_set_flag(piece, FOLIO_LRU_ACTIVE);
		cds_list_add(&piece->lru, &old->lru);
		folio_set_lru(piece);
		lru_account(cache, piece, 1);
	}
	lru_del_locked(cache, old);
	pthread_mutex_unlock(&cache->lru_lock);
	/* Same bytes, other folios: cached does not change, its split by
	 * order does. */
	__atomic_sub_fetch(&cache->cached_by_order[folio_order(old)],
			   folio_size(old), __ATOMIC_RELAXED);
	for (unsigned int i = 0; i < n; i++)
		__atomic_add_fetch(&cache->cached_by_order[folio_order(pieces[i])],
				   folio_size(pieces[i]), __ATOMIC_RELAXED);
}

/*
 * Move the active tail towards the inactive list while it is the longer,
 * or, with @force, regardless (the inactive list holds nothing evictable).
 */
static void age_active_locked(struct fs_cache *cache, unsigned int budget,
			      bool force)
{
	while (budget-- && (force || cache->nr_active > cache->nr_inactive) &&
	       !cds_list_empty(&cache->active)) {
		struct folio *folio = cds_list_entry(cache->active.prev,
						     struct folio, lru);

		cds_list_del(&folio->lru);
		if (folio_test_clear_referenced(folio)) {
			/* Used since the last pass: another round on active. */
			cds_list_add(&folio->lru, &cache->active);
			continue;
		}
		lru_account(cache, folio, -1);
		folio_clear_flag(folio, FOLIO_LRU_ACTIVE);
		folio_clear_active(folio);
		lru_account(cache, folio, 1);
		cds_list_add(&folio->lru, &cache->inactive);
	}
}

/*
 * Try to evict @folio, which we hold a reference on and found on the LRU.
 * Return its size if it left the cache.
 */
static unsigned long evict_one(struct fs_cache *cache, struct folio *folio)
{
	unsigned long size = folio_size(folio);
	struct filemap *map;

	if (!folio_trylock(folio))
		return 0;
	map = folio_mapping(folio);
	if (!map || folio_test_writeback(folio) || folio_maybe_pinned(folio))
		goto out_unlock;
	if (folio_test_dirty(folio)) {
		/*
		 * Mostly clean large folio: split it so the clean pieces can
		 * go on a later pass, and the dirty ones wait for writeback.
		 */
		if (folio_order(folio) &&
		    blkstate_count_dirty(folio) * 2 < folio_nr_blocks(folio) &&
		    !filemap_split_folio(folio, 0))
			fs_counter_inc(&cache->stats.reclaim_splits);
		goto out_unlock;
	}
	/*
	 * Used by nobody but the page cache and us: the freeze succeeds, and
	 * while it holds nobody can take a reference or a pin, so the folio
	 * leaves the tree unused. Of the two references, the cache's goes
	 * with it; ours stays for the caller to drop.
	 */
	if (!folio_ref_freeze(folio, 2))
		goto out_unlock;
	filemap_delete_folio(folio);
	folio_ref_unfreeze(folio, 1);
	blkstate_release(folio);
	folio_unlock(folio);
	fs_counter_inc(&cache->stats.evicted);
	fs_counter_add(&cache->stats.evicted_bytes, size);
	return size;

out_unlock:
	folio_unlock(folio);
	return 0;
}

unsigned long cache_reclaim(struct fs_cache *cache, unsigned long bytes)
{
	unsigned long freed = 0, scanned = 0, max_scan, inactive_pages;
	unsigned long fruitless = 0;

	pthread_mutex_lock(&cache->lru_lock);
	max_scan = 2 * (cache->nr_active + cache->nr_inactive) + 64;
	inactive_pages = cache->nr_inactive;
	pthread_mutex_unlock(&cache->lru_lock);

	while (freed < bytes && scanned++ < max_scan) {
		struct folio *folio;
		unsigned long got;

		pthread_mutex_lock(&cache->lru_lock);
		/*
		 * Once a whole inactive list's worth went round without
		 * freeing anything (all dirty, pinned or busy), age the active
		 * list whatever its length: clean folios there must be
		 * reachable.
		 */
		age_active_locked(cache, 8, fruitless >= inactive_pages);
		if (cds_list_empty(&cache->inactive)) {
			pthread_mutex_unlock(&cache->lru_lock);
			break;
		}
		folio = cds_list_entry(cache->inactive.prev, struct folio, lru);
		cds_list_del(&folio->lru);
		if (folio_test_active(folio)) {
			/* Read twice while inactive: promote. */
			lru_account(cache, folio, -1);
			folio_set_flag(folio, FOLIO_LRU_ACTIVE);
			folio_clear_referenced(folio);
			lru_account(cache, folio, 1);
			cds_list_add(&folio->lru, &cache->active);
			pthread_mutex_unlock(&cache->lru_lock);
			continue;
		}
		/* Rotate first: a folio we cannot evict is not looked at again
		 * until the list has come round. */
		cds_list_add(&folio->lru, &cache->inactive);
		/*
		 * A folio on the LRU holds the page cache's reference, so the
		 * get fails only if it is frozen for a split or removal.
		 */
		if (!folio_try_get(folio)) {
			pthread_mutex_unlock(&cache->lru_lock);
			continue;
		}
		pthread_mutex_unlock(&cache->lru_lock);
		got = evict_one(cache, folio);
		fruitless = got ? 0 : fruitless + folio_nr_pages(folio);
		freed += got;
		folio_put(folio);
	}
	return freed;
}

void cache_balance(struct fs_cache *cache)
{
	unsigned long cached, slack;

	if (!cache_over_limit(cache))
		return;
	if (pthread_mutex_trylock(&cache->reclaim_lock))
		return;
	cached = __atomic_load_n(&cache->cached, __ATOMIC_RELAXED);
	/* A little below the limit, so reclaim runs in batches. */
	slack = cache->limit / 64;
	if (cached > cache->limit)
		cache_reclaim(cache, cached - cache->limit + slack);
	pthread_mutex_unlock(&cache->reclaim_lock);
	cached = __atomic_load_n(&cache->cached, __ATOMIC_RELAXED);
	if (cached > cache->limit && cache->want_writeback)
		cache->want_writeback(cache, cached - cache->limit + slack);
}
