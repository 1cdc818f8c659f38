/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * filemap.c - the page cache of one file (see filemap.h for the contract
 * and the laws it keeps).
 */
#include <stdlib.h>
#include <string.h>

#include "blkstate.h"
#include "filemap.h"
#include "reclaim.h"

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/*
 * The invalidate lock is never taken recursively; glibc reports a thread
 * that would deadlock on itself with EDEADLK, which must not pass silently.
 */
static inline void invalidate_lock_shared(struct filemap *map)
{
	int err = pthread_rwlock_rdlock(&map->invalidate_lock);

	BUG_ON(err);
}

static inline void invalidate_lock_excl(struct filemap *map)
{
	int err = pthread_rwlock_wrlock(&map->invalidate_lock);

	BUG_ON(err);
}

static inline void invalidate_unlock(struct filemap *map)
{
	pthread_rwlock_unlock(&map->invalidate_lock);
}

static inline struct fs_cache_stats *map_stats(struct filemap *map)
{
	return &map->cache->stats;
}

static size_t copy_from_buf(struct fs_copy_src *src, void *dst, size_t len)
{
	memcpy(dst, src->buf + src->done, len);
	src->done += len;
	return len;
}

void fs_copy_src_init(struct fs_copy_src *src, const void *buf)
{
	src->copy = copy_from_buf;
	src->buf = buf;
	src->done = 0;
}

void filemap_init(struct filemap *map, struct fs_cache *cache,
		  const struct filemap_ops *ops, void *host)
{
	memset(map, 0, sizeof(*map));
	pthread_rwlockattr_t attr;

	xa_init(&map->pages);
	/* Writer-preferring, or a stream of reads that miss would starve a
	 * truncate. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
			PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&map->invalidate_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	map->ops = ops;
	map->host = host;
	map->cache = cache;
	map->max_order = FOLIO_MAX_ORDER;
}

/* ---- Lookup (law 1) ------------------------------------------------------ */

struct folio *filemap_get_folio(struct filemap *map, unsigned long index)
{
	XA_STATE(xas, &map->pages, index);
	struct folio *folio;

	fs_rcu_read_lock();
repeat:
	xas_reset(&xas);
	folio = xas_load(&xas);
	if (!folio || xa_is_value(folio)) {
		folio = NULL;
		goto out;
	}
	if (!folio_try_get(folio)) {
		/* Frozen for a split or removal: wait it out. */
		cpu_relax();
		goto repeat;
	}
	/*
	 * Only now may we trust the folio's identity: the slot must still
	 * hold it, and it must still cover the index (a split may have made
	 * it the first piece of what it was, or the descriptor may have been
	 * recycled into another file).
	 */
	if (unlikely(folio != xas_reload(&xas) ||
		     !folio_contains(folio, index) ||
		     folio_mapping(folio) != map)) {
		folio_put(folio);
		goto repeat;
	}
out:
	fs_rcu_read_unlock();
	return folio;
}

unsigned int filemap_get_batch(struct filemap *map, unsigned long index,
			       struct folio **folios, unsigned int nr)
{
	XA_STATE(xas, &map->pages, index);
	unsigned int n = 0;

	fs_rcu_read_lock();
	while (n < nr) {
		struct folio *folio = xas_load(&xas);
		unsigned long next;

		if (!folio || xa_is_value(folio))
			break;
		if (!folio_try_get(folio)) {
			cpu_relax();
			xas_reset(&xas);
			continue;
		}
		if (unlikely(folio != xas_reload(&xas) ||
			     !folio_contains(folio, xas.xa_index) ||
			     folio_mapping(folio) != map)) {
			folio_put(folio);
			xas_reset(&xas);
			continue;
		}
		folios[n++] = folio;
		next = folio->index + folio_nr_pages(folio);
		if (!next)
			break;
		xas_set(&xas, next);
	}
	fs_rcu_read_unlock();
	return n;
}

/* ---- Insert (law 5) and remove (law 4) ----------------------------------- */

int filemap_add_folio(struct filemap *map, struct folio *folio,
		      unsigned long index)
{
	unsigned int order = folio_order(folio);
	unsigned long last = index + folio_nr_pages(folio) - 1;
	XA_STATE_ORDER(xas, &map->pages, index, order);
	int err;

	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	FOLIO_BUG_ON(folio_mapping(folio) != NULL, folio);
	FOLIO_BUG_ON(index & (folio_nr_pages(folio) - 1), folio);

	folio->index = index;
	folio_get(folio);			/* the cache's reference */
	/* Law 4: the mapping is set before the folio can be found. */
	folio_set_mapping(folio, map);
	do {
		xa_lock(&map->pages);
		/*
		 * Law 5: nodes were allocated with the lock dropped; what was
		 * empty then must be empty now, checked under the lock.
		 */
		xas_set_order(&xas, index, 0);
		if (xas_find(&xas, last)) {
			xas_set_err(&xas, -EEXIST);
		} else {
			xas_set_order(&xas, index, order);
			xas_store(&xas, folio);
		}
		xa_unlock(&map->pages);
	} while (xas_nomem(&xas));
	xas_destroy(&xas);
	err = xas_error(&xas);
	if (err) {
		folio_set_mapping(folio, NULL);
		folio_put(folio);
		return err;
	}
	__atomic_add_fetch(&map->nr_folios, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&map->nr_pages, folio_nr_pages(folio),
			   __ATOMIC_RELAXED);
	cache_lru_add(map->cache, folio);
	return 0;
}

/* Give back the reservations of @folio's blocks in [@off, @off + @len). */
static void release_reserved(struct filemap *map, struct folio *folio,
			     size_t off, size_t len)
{
	unsigned int n = blkstate_clear_reserved(folio, off, len);

	if (!n)
		return;
	__atomic_sub_fetch(&map->nr_reserved, n, __ATOMIC_RELAXED);
	if (map->ops->release_blocks)
		map->ops->release_blocks(map, n);
}

void filemap_delete_folio(struct folio *folio)
{
	struct filemap *map = folio_mapping(folio);
	XA_STATE_ORDER(xas, &map->pages, folio->index, folio_order(folio));
	void *old;

	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	/*
	 * Everything that touches @map happens under xa_lock: once the entry
	 * is gone a truncate no longer sees this folio and may free the
	 * whole filemap (an unlinked file), so the owner takes xa_lock once
	 * before freeing it (filemap_destroy) to wait for us.
	 */
	xa_lock(&map->pages);
	old = xas_store(&xas, NULL);
	FOLIO_BUG_ON(old != folio, folio);
	/* Law 4: out of the tree first, then the mapping goes. */
	folio_set_mapping(folio, NULL);

	/* Law 7: the dirty delalloc blocks dropped give their blocks back. */
	release_reserved(map, folio, 0, folio_size(folio));
	blkstate_clear_dirty(folio, 0, folio_size(folio));

	__atomic_sub_fetch(&map->nr_folios, 1, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&map->nr_pages, folio_nr_pages(folio),
			   __ATOMIC_RELAXED);
	cache_lru_del(map->cache, folio);
	xa_unlock(&map->pages);
}

void filemap_remove_folio(struct folio *folio)
{
	filemap_delete_folio(folio);
	folio_put(folio);			/* the cache's reference */
}

/* ---- Dirtying ------------------------------------------------------------ */

void filemap_dirty_range(struct folio *folio, size_t from, size_t len)
{
	struct filemap *map = folio_mapping(folio);
	bool was_dirty = folio_test_dirty(folio);

	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	blkstate_set_dirty(folio, from, len);
	if (!was_dirty && map)
		xa_set_mark(&map->pages, folio->index, FM_DIRTY);
}

void filemap_clean_folio(struct folio *folio)
{
	struct filemap *map = folio_mapping(folio);
	size_t off, len;
	unsigned int n;

	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	/*
	 * The reservations of the written (dirty) blocks became extents:
	 * nothing goes back to the store. Reserved blocks that are not dirty
	 * belong to a write pin still held (law 8): they keep theirs.
	 */
	n = 0;
	for (off = 0; blkstate_next_dirty(folio, &off, &len); off += len)
		n += blkstate_clear_reserved(folio, off, len);
	if (n && map)
		__atomic_sub_fetch(&map->nr_reserved, n, __ATOMIC_RELAXED);
	blkstate_clear_dirty(folio, 0, folio_size(folio));
	if (map) {
		XA_STATE(xas, &map->pages, folio->index);

		xa_lock(&map->pages);
		xas_clear_mark(&xas, FM_DIRTY);
		xas_clear_mark(&xas, FM_TOWRITE);
		xa_unlock(&map->pages);
	}
}

/* ---- Split (law 3) ------------------------------------------------------- */

/* Put back the marks @folio had before a failed split merged it again. */
static void restore_marks(struct xa_state *xas, unsigned int marks)
{
	for (xa_mark_t m = 0; m < XA_MAX_MARKS; m++)
		if (marks & (1U << m))
			xas_set_mark(xas, m);
}

int filemap_split_folio(struct folio *folio, unsigned int new_order)
{
	struct filemap *map = folio_mapping(folio);
	unsigned int order = folio_order(folio), n, i, marks = 0;
	struct folio **pieces;
	struct xa_state xas;
	int expected, err;

	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	if (new_order >= order)
		return -EINVAL;
	if (!map || folio_maybe_pinned(folio) || folio_test_writeback(folio)) {
		if (map)
			fs_counter_inc(&map_stats(map)->split_ebusy);
		return -EBUSY;
	}
	n = 1U << (order - new_order);

	/* Everything is allocated before the freeze, so nothing after it fails. */
	pieces = calloc(n, sizeof(*pieces));
	if (!pieces)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		struct folio *piece = folio_alloc_piece(folio, i << new_order,
							new_order);

		if (!piece) {
			err = -ENOMEM;
			goto out_free;
		}
		pieces[i] = piece;
		piece->index = folio->index + (i << new_order);
		/* Private until published; locked for the blkstate calls. */
		folio_trylock(piece);
		if (blkstate_attach(piece)) {
			err = -ENOMEM;
			goto out_free;
		}
	}
	xas = (struct xa_state){ .xa = &map->pages };
	xas_set_order(&xas, folio->index, new_order);
	err = xas_split_alloc(&xas, order);
	if (err)
		goto out_free;

	/*
	 * Expected references: the page cache's, the caller's, and one per
	 * piece when the pieces take their data from this folio.
	 */
	expected = 2 + (folio_data_owner(folio) == folio ? (int)n : 0);
	if (!folio_ref_freeze(folio, expected)) {
		fs_counter_inc(&map_stats(map)->split_eagain);
		err = -EAGAIN;
		goto out_destroy;
	}
	/* A pin holds a reference, so none can have come since the check. */
	FOLIO_BUG_ON(folio_maybe_pinned(folio), folio);

	/* The pieces stay frozen until they are in the tree. */
	for (i = 0; i < n; i++) {
		if (!folio_ref_freeze(pieces[i], 1))
			FOLIO_BUG_ON(1, pieces[i]);
		folio_set_mapping(pieces[i], map);
	}

	xa_lock(&map->pages);
	for (xa_mark_t m = 0; m < XA_MAX_MARKS; m++) {
		XA_STATE(probe, &map->pages, folio->index);

		if (xas_get_mark(&probe, m))
			marks |= 1U << m;
	}
	err = xas_split(&xas, folio, order);
	if (err) {
		/* Law 5 cannot fail here: we hold the folio lock and froze it. */
		WARN_ON(1);
		xa_unlock(&map->pages);
		goto out_unfreeze;
	}
	err = blkstate_split(folio, pieces, n);
	if (WARN_ON(err)) {
		/* Cannot happen with attached pieces; merge back as it was. */
		xas_set_order(&xas, folio->index, order);
		xas_store(&xas, folio);
		restore_marks(&xas, marks);
		xa_unlock(&map->pages);
		goto out_unfreeze;
	}
	/* Publish the pieces; each keeps the marks its state calls for. */
	for (i = 0; i < n; i++) {
		xas_set_order(&xas, pieces[i]->index, new_order);
		xas_store(&xas, pieces[i]);
		if (!folio_test_dirty(pieces[i])) {
			xas_clear_mark(&xas, FM_DIRTY);
			xas_clear_mark(&xas, FM_TOWRITE);
		}
		if (folio_test_referenced(folio))
			folio_set_referenced(pieces[i]);
		if (folio_test_active(folio))
			folio_set_active(pieces[i]);
	}
	xa_unlock(&map->pages);
	xas_destroy(&xas);

	cache_lru_replace(map->cache, folio, pieces, n);
	__atomic_add_fetch(&map->nr_folios, n - 1, __ATOMIC_RELAXED);

	/* Unfreeze the pieces (the cache's reference each), the original last. */
	for (i = 0; i < n; i++)
		folio_ref_unfreeze(pieces[i], 1);
	/* Law 4: it left the tree above; now the mapping goes. */
	folio_set_mapping(folio, NULL);
	/* The cache's reference goes: the original is no longer cached. */
	folio_ref_unfreeze(folio, expected - 1);
	/*
	 * Only now may a piece be evicted or split: its last put drops its
	 * reference on the original, which must not be frozen at zero then.
	 */
	for (i = 0; i < n; i++)
		folio_unlock(pieces[i]);
	fs_counter_inc(&map_stats(map)->splits);
	free(pieces);
	return 0;

out_unfreeze:
	for (i = 0; i < n; i++) {
		folio_set_mapping(pieces[i], NULL);
		folio_ref_unfreeze(pieces[i], 1);
	}
	folio_ref_unfreeze(folio, expected);
out_destroy:
	xas_destroy(&xas);
out_free:
	for (i = 0; i < n && pieces[i]; i++) {
		blkstate_release(pieces[i]);
		folio_unlock(pieces[i]);
		folio_put(pieces[i]);
	}
	free(pieces);
	return err;
}

/* ---- Filling folios from the store --------------------------------------- */

static inline unsigned int blk_size(const struct folio *folio)
{
	return 1U << folio->blkbits;
}

/*
 * Read the blocks of [@off, @off + @len) that are not uptodate, in runs.
 * Blocks wholly past EOF are zeroed instead of read.
 * Context: caller holds the folio lock.
 */
static int fill_range(struct filemap *map, struct folio *folio, size_t off,
		      size_t len)
{
	unsigned int bs = blk_size(folio), bits = folio->blkbits;
	unsigned int first = off >> bits;
	unsigned int end = (off + len + bs - 1) >> bits;
	long long size = filemap_size(map);
	unsigned int b = first;

	while (b < end) {
		unsigned int run = 0;
		unsigned long long bpos;

		if (blkstate_test_uptodate(folio, (size_t)b << bits, bs)) {
			b++;
			continue;
		}
		bpos = folio_pos(folio) + ((unsigned long long)b << bits);
		if ((long long)bpos >= size) {
			memset((char *)folio_address(folio) + ((size_t)b << bits),
			       0, bs);
			blkstate_set_uptodate(folio, (size_t)b << bits, bs);
			b++;
			continue;
		}
		while (b + run < end &&
		       !blkstate_test_uptodate(folio, (size_t)(b + run) << bits, bs))
			run++;
		{
			int err = map->ops->read_blocks(map, folio, b, run);

			if (err)
				return err;
		}
		blkstate_set_uptodate(folio, (size_t)b << bits, (size_t)run << bits);
		b += run;
	}
	return 0;
}

/* ---- Readahead ------------------------------------------------------------ */

/*
 * Allocate, insert and read the folios of window @w that are not cached.
 * Stops at EOF. Errors other than -ENOMEM on the first folio are left for
 * the reader to find (the folio stays not uptodate). If @wantp is given,
 * the folio made for the window's first page comes back there with a
 * reference, so the reader that asked for it uses it even if reclaim runs
 * before it looks it up.
 */
static int filemap_readahead(struct filemap *map, const struct ra_window *w,
			     struct folio **wantp)
{
	long long size = filemap_size(map);
	unsigned long idx = w->start, end, last;
	unsigned int cap;
	int ret = 0;

	if (size <= 0)
		return 0;
	last = (unsigned long)((size - 1) >> PAGE_SHIFT);
	end = w->start + w->size;
	/*
	 * A window is at most an eighth of the cache: reading more ahead than
	 * the cache can hold would evict what was read before it is used.
	 */
	if (end - w->start > (map->cache->limit >> PAGE_SHIFT) / 8 + 1)
		end = w->start + (map->cache->limit >> PAGE_SHIFT) / 8 + 1;
	if (end > last + 1 || end < w->start)
		end = last + 1;

	cap = w->order < map->max_order ? w->order : map->max_order;
	while (idx < end) {
		unsigned int order;
		struct folio *folio;
		int err;

		if (xa_load(&map->pages, idx)) {
			order = xa_get_order(&map->pages, idx);
			idx = (idx | ((1UL << order) - 1)) + 1;
			cap = w->order < map->max_order ? w->order : map->max_order;
			continue;
		}
		order = ra_folio_order(idx, end - idx, cap);
		for (;;) {
			folio = folio_alloc(order);
			if (folio || !order)
				break;
			order--;
		}
		if (!folio) {
			if (idx == w->start)
				ret = -ENOMEM;
			break;
		}
		folio_lock(folio);
		err = blkstate_attach(folio);
		if (!err)
			err = filemap_add_folio(map, folio, idx);
		if (err) {
			blkstate_release(folio);
			folio_unlock(folio);
			folio_put(folio);
			if (err == -EEXIST && order) {
				/* Something small is in the way: retry smaller. */
				cap = order - 1;
				continue;
			}
			if (err == -EEXIST) {
				idx++;
				continue;
			}
			if (idx == w->start)
				ret = err;
			break;
		}
		if (w->mark != ~0UL && folio_contains(folio, w->mark))
			folio_set_readahead(folio);
		fill_range(map, folio, 0, folio_size(folio));
		fs_counter_add(&map_stats(map)->ra_pages, folio_nr_pages(folio));
		folio_unlock(folio);
		if (wantp && !*wantp && folio_contains(folio, w->start))
			*wantp = folio;		/* our reference goes with it */
		else
			folio_put(folio);
		idx += 1UL << order;
		cap = w->order < map->max_order ? w->order : map->max_order;
	}
	return ret;
}

/* ---- Read ----------------------------------------------------------------- */

/* Make [@off, @off + @len) of @folio uptodate. Return 0, -EAGAIN if the
 * folio left the cache (look it up again), or -errno from the store. */
static int filemap_fill(struct filemap *map, struct folio *folio, size_t off,
			size_t len)
{
	int err = 0;

	invalidate_lock_shared(map);
	folio_lock(folio);
	if (folio_mapping(folio) != map) {
		err = -EAGAIN;
		goto out_unlock;
	}
	if (!blkstate_test_uptodate(folio, off, len)) {
		err = blkstate_attach(folio);
		if (!err)
			err = fill_range(map, folio, off, len);
	}
out_unlock:
	folio_unlock(folio);
	invalidate_unlock(map);
	return err;
}

/* Folios a read looks up per RCU section. */
#define READ_BATCH	16

static void put_batch(struct folio **batch, unsigned int from, unsigned int nr)
{
	while (from < nr)
		folio_put(batch[from++]);
}

struct copy_actor {
	char	*buf;
	size_t	done;
};

static size_t copy_to_buf(void *arg, struct folio *folio, size_t off, size_t n)
{
	struct copy_actor *c = arg;

	memcpy(c->buf + c->done, (char *)folio_address(folio) + off, n);
	c->done += n;
	return n;
}

ssize_t filemap_read(struct filemap *map, struct file_ra_state *ra,
		     long long pos, void *buf, size_t len)
{
	struct copy_actor c = { buf, 0 };

	return filemap_read_actor(map, ra, pos, len, copy_to_buf, &c);
}

ssize_t filemap_read_actor(struct filemap *map, struct file_ra_state *ra,
			   long long pos, size_t len, filemap_actor_t actor,
			   void *arg)
{
	struct folio *batch[READ_BATCH];
	unsigned int nr = 0, i = 0;
	long long size = filemap_size(map);
	unsigned long prev = ra ? READ_ONCE(ra->prev_index) : 0;
	size_t done = 0;
	int err = 0;

	if (pos < 0)
		return -EINVAL;
	if (pos >= size || !len)
		return 0;
	if ((unsigned long long)len > (unsigned long long)(size - pos))
		len = size - pos;

	while (done < len) {
		unsigned long long cur = pos + done;
		unsigned long index = cur >> PAGE_SHIFT;
		unsigned long last = (pos + len - 1) >> PAGE_SHIFT;
		struct folio *folio;
		size_t off, n, taken;

		if (i == nr) {
			unsigned long want = last - index + 1;

			nr = filemap_get_batch(map, index, batch,
					       want < READ_BATCH ? want : READ_BATCH);
			i = 0;
		}
		if (!nr) {
			struct folio *got = NULL;
			struct ra_window w = {
				.start = index, .size = last - index + 1,
				.mark = ~0UL, .order = FOLIO_MAX_ORDER,
			};

			fs_counter_inc(&map_stats(map)->misses);
			if (w.size > RA_DEFAULT_MAX_PAGES)
				w.size = RA_DEFAULT_MAX_PAGES;
			if (ra)
				w = ra_sync(ra, index, w.size);
			invalidate_lock_shared(map);
			err = filemap_readahead(map, &w, &got);
			invalidate_unlock(map);
			if (got && !err && (long long)cur < filemap_size(map)) {
				/* The folio we came for, already referenced. */
				batch[0] = got;
				nr = 1;
				i = 0;
				continue;
			}
			if (got)
				folio_put(got);
			got = NULL;
			if (err)
				break;
			/* A truncate may have moved EOF below us meanwhile. */
			if ((long long)cur >= filemap_size(map))
				break;
			continue;
		}
		folio = batch[i++];
		if (ra && folio_test_readahead(folio) &&
		    folio_test_clear_readahead(folio)) {
			struct ra_window w = ra_async(ra, index);

			fs_counter_inc(&map_stats(map)->ra_hits);
			invalidate_lock_shared(map);
			filemap_readahead(map, &w, NULL);
			invalidate_unlock(map);
		}
		/*
		 * Reclaim only while holding the folio about to be copied, so
		 * it cannot be what goes; between reads, cache_balance() below.
		 */
		if (unlikely(cache_over_limit(map->cache)))
			cache_balance(map->cache);
		off = cur - folio_pos(folio);
		n = folio_size(folio) - off;
		if (n > len - done)
			n = len - done;
		if (!blkstate_test_uptodate(folio, off, n)) {
			err = filemap_fill(map, folio, off, n);
			if (err) {
				folio_put(folio);
				/* Drop the rest: it may have left the cache too. */
				put_batch(batch, i, nr);
				i = nr = 0;
				if (err == -EAGAIN) {
					err = 0;
					continue;
				}
				break;
			}
		} else {
			fs_counter_inc(&map_stats(map)->hits);
		}
		taken = actor(arg, folio, off, n);
		/*
		 * A reader that takes a large folio in small reads uses it
		 * once, not once per read: only the first read of a run that
		 * stays in one folio counts, or a stream read 4 KiB at a time
		 * would look hot to reclaim and push out the working set.
		 */
		if (!ra || done || !folio_contains(folio, prev - 1) || !prev)
			folio_mark_accessed(folio);
		folio_put(folio);
		done += taken;
		if (taken < n)
			break;
	}
	put_batch(batch, i, nr);
	if (ra)
		ra_note_read(ra, (pos + done + PAGE_SIZE - 1) >> PAGE_SHIFT);
	cache_balance(map->cache);
	return done ? (ssize_t)done : err;
}

/* ---- Write ---------------------------------------------------------------- */

/*
 * A new folio for a write at @index covering up to @pages pages: the
 * largest aligned order that fits. Returns it locked, in the cache, with a
 * reference; NULL with *errp = -EEXIST if something is already there.
 */
static struct folio *create_write_folio(struct filemap *map, unsigned long index,
					unsigned long pages, int *errp)
{
	unsigned int order = ra_folio_order(index, pages > (1U << 30) ?
					    1U << 30 : (unsigned int)pages,
					    map->max_order);
	struct folio *folio;
	int err;

	for (;;) {
		folio = folio_alloc(order);
		if (!folio) {
			if (!order) {
				*errp = -ENOMEM;
				return NULL;
			}
			order--;
			continue;
		}
		folio_lock(folio);
		err = blkstate_attach(folio);
		if (!err)
			err = filemap_add_folio(map, folio, index);
		if (!err)
			return folio;
		blkstate_release(folio);
		folio_unlock(folio);
		folio_put(folio);
		if (err != -EEXIST || !order) {
			*errp = err;
			return NULL;
		}
		/* A smaller folio is cached inside the range: go smaller. */
		order--;
	}
}

/*
 * Law 6: a write that covers part of a block that is not uptodate must
 * read the block first, or the rest of it would be garbage.
 */
static int prepare_partial(struct filemap *map, struct folio *folio,
			   size_t off, size_t len)
{
	unsigned int bs = blk_size(folio);
	size_t head = off & (bs - 1), tail = (off + len) & (bs - 1);
	int err = 0;

	if (head && !blkstate_test_uptodate(folio, off - head, bs))
		err = fill_range(map, folio, off - head, bs);
	if (!err && tail && !blkstate_test_uptodate(folio, off + len - tail, bs))
		err = fill_range(map, folio, off + len - tail, bs);
	return err;
}

/*
 * Law 7: reserve one block for each block of the range that will become
 * dirty and has neither a disk block nor a reservation.
 */
static int reserve_range(struct filemap *map, struct folio *folio, size_t off,
			 size_t len)
{
	unsigned int bits = folio->blkbits, bs = 1U << bits;
	unsigned int first = off >> bits, end = (off + len + bs - 1) >> bits;
	unsigned long lblk0 = folio_pos(folio) >> bits;
	unsigned int need = 0, b;
	int err;

	if (!map->ops->reserve_blocks)
		return 0;
	for (b = first; b < end; b++) {
		if (blkstate_count_reserved(folio, (size_t)b << bits, bs))
			continue;
		if (map->ops->block_mapped &&
		    map->ops->block_mapped(map, lblk0 + b))
			continue;
		need++;
	}
	if (!need)
		return 0;
	err = map->ops->reserve_blocks(map, need);
	if (err)
		return err;
	for (b = first; b < end; b++) {
		if (blkstate_count_reserved(folio, (size_t)b << bits, bs))
			continue;
		if (map->ops->block_mapped &&
		    map->ops->block_mapped(map, lblk0 + b))
			continue;
		blkstate_set_reserved(folio, (size_t)b << bits, bs);
	}
	__atomic_add_fetch(&map->nr_reserved, need, __ATOMIC_RELAXED);
	return 0;
}

/* Undo reservations that a short copy did not use: reserved, not dirty. */
static void unreserve_clean(struct filemap *map, struct folio *folio,
			    size_t off, size_t len)
{
	unsigned int bits = folio->blkbits, bs = 1U << bits;
	unsigned int first = off >> bits, end = (off + len + bs - 1) >> bits;

	for (unsigned int b = first; b < end; b++) {
		size_t bo = (size_t)b << bits;

		if (blkstate_count_reserved(folio, bo, bs) &&
		    !blkstate_test_dirty(folio, bo, bs))
			release_reserved(map, folio, bo, bs);
	}
}

ssize_t filemap_write(struct filemap *map, long long pos,
		      struct fs_copy_src *src, size_t len)
{
	size_t done = 0;
	int err = 0;

	if (pos < 0)
		return -EINVAL;
	/* A write may read partial blocks from the store (see filemap.h). */
	invalidate_lock_shared(map);
	while (done < len) {
		unsigned long long cur = pos + done;
		unsigned long index = cur >> PAGE_SHIFT;
		unsigned long pages;
		struct folio *folio;
		size_t off, n, copied;
		bool was_uptodate;

		folio = filemap_get_folio(map, index);
		if (folio) {
			folio_lock(folio);
			if (folio_mapping(folio) != map) {
				folio_unlock(folio);
				folio_put(folio);
				continue;
			}
		} else {
			pages = ((cur + (len - done) - 1) >> PAGE_SHIFT) - index + 1;
			/*
			 * Appending: the next writes will most likely fill
			 * the rest, so take the largest aligned folio (one
			 * huge page, one extent, one I/O) rather than one
			 * sized to this write.
			 */
			if (map->append_large &&
			    (long long)cur >= filemap_size(map) &&
			    pages < (1UL << map->max_order))
				pages = 1UL << map->max_order;
			folio = create_write_folio(map, index, pages, &err);
			if (!folio) {
				if (err == -EEXIST) {
					err = 0;
					continue;
				}
				break;
			}
		}
		/* Law 9: never change data while its write is in flight. */
		folio_wait_writeback(folio);

		off = cur - folio_pos(folio);
		n = folio_size(folio) - off;
		if (n > len - done)
			n = len - done;
		err = blkstate_attach(folio);
		if (!err)
			err = prepare_partial(map, folio, off, n);
		if (!err)
			err = reserve_range(map, folio, off, n);
		if (err)
			goto out_unlock;

		was_uptodate = blkstate_test_uptodate(folio, off, n);
		copied = src->copy(src, (char *)folio_address(folio) + off, n);
		if (copied < n && !was_uptodate) {
			/*
			 * Law 6: part of a block that holds nothing valid was
			 * written; it cannot be marked uptodate, and a dirty
			 * block that is not uptodate would write garbage. The
			 * whole copy counts as nothing.
			 */
			copied = 0;
		}
		if (copied) {
			blkstate_set_uptodate(folio, off, copied);
			filemap_dirty_range(folio, off, copied);
			if ((long long)(cur + copied) > filemap_size(map))
				filemap_set_size(map, cur + copied);
		}
		if (copied < n)
			unreserve_clean(map, folio, off, n);
out_unlock:
		folio_unlock(folio);
		folio_put(folio);
		if (err)
			break;
		done += copied;
		if (copied < n)
			break;
	}
	invalidate_unlock(map);
	cache_balance(map->cache);
	return done ? (ssize_t)done : err;
}

/* ---- Pins (zero-copy) ------------------------------------------------------ */

struct pin_actor {
	struct filemap_pin_seg	*segs;
	unsigned int		max;
	unsigned int		nr;
};

static size_t pin_piece(void *arg, struct folio *folio, size_t off, size_t n)
{
	struct pin_actor *p = arg;

	if (p->nr == p->max)
		return 0;
	folio_pin(folio);
	p->segs[p->nr++] = (struct filemap_pin_seg){ folio, off, n };
	return n;
}

ssize_t filemap_pin_read(struct filemap *map, struct file_ra_state *ra,
			 long long pos, size_t len, struct filemap_pin_seg *segs,
			 unsigned int max, unsigned int *nseg)
{
	struct pin_actor p = { segs, max, 0 };
	ssize_t ret = filemap_read_actor(map, ra, pos, len, pin_piece, &p);

	*nseg = p.nr;
	if (ret < 0)
		filemap_unpin(map, segs, p.nr, false);
	return ret;
}

ssize_t filemap_pin_write(struct filemap *map, long long pos, size_t len,
			  struct filemap_pin_seg *segs, unsigned int max,
			  unsigned int *nseg)
{
	size_t done = 0;
	unsigned int nr = 0;
	int err = 0;

	*nseg = 0;
	if (pos < 0)
		return -EINVAL;
	invalidate_lock_shared(map);
	while (done < len && nr < max) {
		unsigned long long cur = pos + done;
		unsigned long index = cur >> PAGE_SHIFT;
		struct folio *folio = filemap_get_folio(map, index);
		size_t off, n;

		if (folio) {
			folio_lock(folio);
			if (folio_mapping(folio) != map) {
				folio_unlock(folio);
				folio_put(folio);
				continue;
			}
		} else {
			unsigned long pages = ((cur + (len - done) - 1) >>
					       PAGE_SHIFT) - index + 1;

			folio = create_write_folio(map, index, pages, &err);
			if (!folio) {
				if (err == -EEXIST) {
					err = 0;
					continue;
				}
				break;
			}
		}
		off = cur - folio_pos(folio);
		n = folio_size(folio) - off;
		if (n > len - done)
			n = len - done;
		err = blkstate_attach(folio);
		/* Every block the holder may write holds what it held: the
		 * holder may write any part of the range (law 6). */
		if (!err)
			err = fill_range(map, folio, off, n);
		if (!err)
			err = reserve_range(map, folio, off, n);
		if (!err) {
			/* Under the lock, so the blkstate stays (law 8). */
			folio_pin(folio);
			segs[nr++] = (struct filemap_pin_seg){ folio, off, n };
			done += n;
		}
		folio_unlock(folio);
		folio_put(folio);
		if (err)
			break;
	}
	invalidate_unlock(map);
	*nseg = nr;
	return done ? (ssize_t)done : err;
}

void filemap_unpin(struct filemap *map, struct filemap_pin_seg *segs,
		   unsigned int nseg, bool dirty)
{
	unsigned int i;

	for (i = 0; i < nseg; i++) {
		struct folio *folio = segs[i].folio;

		folio_lock(folio);
		/* Truncated meanwhile: what was written there is gone, and so
		 * are the reservations (filemap_delete_folio gave them back). */
		if (folio_mapping(folio) == map) {
			if (dirty) {
				unsigned long long end = folio_pos(folio) +
					segs[i].off + segs[i].len;

				/* Law 9 for the marks: the data is already
				 * in; only the state waits for the I/O. */
				folio_wait_writeback(folio);
				filemap_dirty_range(folio, segs[i].off,
						    segs[i].len);
				if ((long long)end > filemap_size(map))
					filemap_set_size(map, (long long)end);
			} else {
				unreserve_clean(map, folio, segs[i].off,
						segs[i].len);
			}
		}
		folio_unlock(folio);
		folio_unpin(folio);
	}
}

/* ---- Truncate and punch ---------------------------------------------------- */

/*
 * Zero bytes [@from, @to) of locked @folio in place and drop, for the blocks
 * they cover whole, the dirty and uptodate bits and the reservations.
 */
static void zero_in_place(struct filemap *map, struct folio *folio, size_t from,
			  size_t to)
{
	unsigned int bs = blk_size(folio);
	size_t bfrom = (from + bs - 1) & ~(size_t)(bs - 1);
	size_t bto = to & ~(size_t)(bs - 1);

	memset((char *)folio_address(folio) + from, 0, to - from);
	if (bto > bfrom) {
		release_reserved(map, folio, bfrom, bto - bfrom);
		blkstate_clear_dirty(folio, bfrom, bto - bfrom);
		blkstate_clear_uptodate(folio, bfrom, bto - bfrom);
		if (!folio_test_dirty(folio)) {
			XA_STATE(xas, &map->pages, folio->index);

			xa_lock(&map->pages);
			xas_clear_mark(&xas, FM_DIRTY);
			xas_clear_mark(&xas, FM_TOWRITE);
			xa_unlock(&map->pages);
		}
	}
}

/*
 * Drop cached bytes [@start, @end) of @map (@end may be LLONG_MAX). Whole
 * folios leave the cache; a large folio only partly inside is split (law 3)
 * until the dropped pages are whole folios, and what is still partial (a
 * page across the boundary, or a folio whose split failed) is zeroed in
 * place with its dirty and uptodate bits and reservations dropped for the
 * blocks removed.
 */
static int drop_range(struct filemap *map, long long start, long long end)
{
	unsigned long index = start >> PAGE_SHIFT;
	unsigned long last = end == LLONG_MAX ? ULONG_MAX :
			     (unsigned long)((end - 1) >> PAGE_SHIFT);

	if (end <= start)
		return 0;
	for (;;) {
		unsigned long found = index;
		unsigned long long fpos, fend;
		struct folio *folio;
		void *entry;

		entry = xa_find(&map->pages, &found, last, XA_PRESENT);
		if (!entry)
			break;
		/*
		 * A folio that covers @index may begin below it; look it up at
		 * @index, or a split meanwhile could hand us a piece that lies
		 * wholly before the range.
		 */
		if (found < index)
			found = index;
		folio = filemap_get_folio(map, found);
		if (!folio) {
			index = found;
			continue;	/* removed meanwhile; look again */
		}
		folio_lock(folio);
		if (folio_mapping(folio) != map) {
			folio_unlock(folio);
			folio_put(folio);
			continue;
		}
		folio_wait_writeback(folio);
		fpos = folio_pos(folio);
		fend = fpos + folio_size(folio);
		if ((long long)fpos >= start && (end == LLONG_MAX ||
						 (long long)fend <= end)) {
			filemap_remove_folio(folio);
			/* Law 8: a pinned folio keeps its state until unpinned. */
			blkstate_release(folio);
		} else {
			/* Pages wholly inside the range, relative to the folio. */
			unsigned long long pfirst =
				((unsigned long long)start + PAGE_SIZE - 1) >> PAGE_SHIFT;
			unsigned long long pend = end == LLONG_MAX ?
				fend >> PAGE_SHIFT : (unsigned long long)end >> PAGE_SHIFT;
			unsigned int order = folio_order(folio), new_order;
			size_t zfrom, zto;

			if (pfirst < folio->index)
				pfirst = folio->index;
			if (pend > fend >> PAGE_SHIFT)
				pend = fend >> PAGE_SHIFT;
			/*
			 * Split in halves, not straight to the order that
			 * separates the range: the half outside it stays one
			 * large folio, the half inside leaves whole, and only the
			 * half across the boundary is split again next round. An
			 * order-9 folio cut at any page costs at most 9 splits
			 * and leaves the kept part in the largest folios that
			 * fit, instead of hundreds of small ones.
			 */
			new_order = order && pend > pfirst ? order - 1 : order;
			if (new_order < order &&
			    !filemap_split_folio(folio, new_order)) {
				/* Go round again: the pieces are in the tree. */
				folio_unlock(folio);
				folio_put(folio);
				continue;
			}
			if (new_order < order)
				fs_counter_inc(&map_stats(map)->zeroed_in_place);
			zfrom = start > (long long)fpos ? start - fpos : 0;
			zto = end == LLONG_MAX || (long long)fend <= end ?
			      folio_size(folio) : (size_t)(end - fpos);
			if (!WARN_ON(zfrom >= zto))
				zero_in_place(map, folio, zfrom, zto);
		}
		index = fend >> PAGE_SHIFT;
		folio_unlock(folio);
		folio_put(folio);
		if (!index || index > last)
			break;
	}
	return 0;
}

static size_t copy_zeroes(struct fs_copy_src *src, void *dst, size_t len)
{
	memset(dst, 0, len);
	src->done += len;
	return len;
}

/*
 * Zero bytes [@pos, @pos + @len), all inside one block and below EOF, as a
 * write would: the block is read in if needed, zeroed and dirtied, so the
 * zeroes reach the store even if the folio is evicted. A block that is
 * neither cached nor on disk already reads as zeroes and is left alone.
 */
static int zero_partial_block(struct filemap *map, long long pos, size_t len)
{
	struct fs_copy_src src = { .copy = copy_zeroes };
	unsigned long index = pos >> PAGE_SHIFT;
	struct folio *folio;
	ssize_t n;

	if (!len)
		return 0;
	folio = filemap_get_folio(map, index);
	if (folio)
		folio_put(folio);
	else if (map->ops->block_mapped &&
		 !map->ops->block_mapped(map, pos >> PAGE_SHIFT))
		return 0;
	n = filemap_write(map, pos, &src, len);
	return n < 0 ? (int)n : 0;
}

/*
 * The partial blocks at the edges of [@start, @end) (clipped to EOF): their
 * bytes in the range must read as zeroes from now on, from the cache or the
 * store.
 */
static int zero_partial_edges(struct filemap *map, long long start,
			      long long end)
{
	long long size = filemap_size(map);
	long long bs = PAGE_SIZE;	/* the store's block */
	long long head_end, tail_start;
	int err = 0;

	if (end > size)
		end = size;
	if (start >= end)
		return 0;
	head_end = (start + bs - 1) & ~(bs - 1);
	tail_start = end & ~(bs - 1);
	if (start & (bs - 1))
		err = zero_partial_block(map, start,
					 (head_end < end ? head_end : end) - start);
	/* tail_start >= head_end: not the block the head just zeroed (with
	 * an aligned start, head_end == start and the tail may be the only
	 * partial block). */
	if (!err && (end & (bs - 1)) && tail_start >= head_end)
		err = zero_partial_block(map, tail_start, end - tail_start);
	return err;
}

/* Tell the store that the blocks wholly inside [@start, @end) are gone. */
static void punch_store(struct filemap *map, long long start, long long end)
{
	unsigned int bits = PAGE_SHIFT;	/* the store's block: the page */
	unsigned long first = (start + (1LL << bits) - 1) >> bits;

	if (!map->ops->punch_blocks)
		return;
	if (end == LLONG_MAX)
		map->ops->punch_blocks(map, first, ULONG_MAX);
	else if ((unsigned long)(end >> bits) > first)
		map->ops->punch_blocks(map, first, (end >> bits) - first);
}

int filemap_truncate(struct filemap *map, long long size)
{
	long long old = filemap_size(map);
	int err = 0;

	if (size < 0)
		return -EINVAL;
	/* The tail of the block the new EOF cuts must read as zeroes if the
	 * file grows again; zero it while it is still inside the file. */
	if (size < old) {
		err = zero_partial_edges(map, size, old);
		if (err)
			return err;
	}
	invalidate_lock_excl(map);
	/* Readers stop at the new EOF before the data goes. */
	filemap_set_size(map, size);
	if (size < old) {
		err = drop_range(map, size, LLONG_MAX);
		punch_store(map, size, LLONG_MAX);
	}
	invalidate_unlock(map);
	return err;
}

int filemap_punch(struct filemap *map, long long start, long long end)
{
	int err;

	if (start < 0 || end < start)
		return -EINVAL;
	err = zero_partial_edges(map, start, end);
	if (err)
		return err;
	/* No reader may cache the store's old data of the range meanwhile. */
	invalidate_lock_excl(map);
	err = drop_range(map, start, end);
	punch_store(map, start, end);
	invalidate_unlock(map);
	return err;
}

void filemap_destroy(struct filemap *map)
{
	unsigned long index = 0;

	for (;;) {
		unsigned long found = index;
		struct folio *folio;

		if (!xa_find(&map->pages, &found, ULONG_MAX, XA_PRESENT))
			break;
		folio = filemap_get_folio(map, found);
		if (!folio) {
			index = found;
			continue;
		}
		folio_lock(folio);
		if (folio_mapping(folio) == map) {
			folio_wait_writeback(folio);
			filemap_remove_folio(folio);
			blkstate_release(folio);
		}
		index = folio->index + folio_nr_pages(folio);
		folio_unlock(folio);
		folio_put(folio);
		if (!index)
			break;
	}
	/* Wait for a remover that took the last entry out before we looked
	 * and may still be finishing under xa_lock (filemap_delete_folio). */
	xa_lock(&map->pages);
	xa_unlock(&map->pages);
	xa_destroy(&map->pages);
	pthread_rwlock_destroy(&map->invalidate_lock);
}
