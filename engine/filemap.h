/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * filemap.h - the page cache of one file.
 *
 * A struct filemap maps page indices of one file to the folios that cache
 * them: an xarray whose entries are folios, a large folio stored as one
 * multi-index entry. The cache holds one reference on every folio in the
 * tree; a folio's ->mapping names its filemap while (and only while) it is
 * in the tree.
 *
 * Tree marks: FM_DIRTY (folio has dirty blocks), FM_WRITEBACK (I/O in
 * flight), FM_TOWRITE (tagged by fsync, law 10). A mark covers a whole
 * large folio.
 *
 * The laws this file keeps (DESIGN.md):
 *  1. Lookups take the RCU read lock, load, folio_try_get(), reload, and
 *     retry if the slot changed or the folio no longer covers the index.
 *  3. filemap_split_folio() allocates first, freezes the refcount at its
 *     expected value, publishes the pieces, unfreezes them, and unfreezes
 *     the original last; -EAGAIN changes nothing.
 *  4. Removal erases the tree entry before it clears ->mapping.
 *  5. Insertion re-checks under xa_lock what it saw when it allocated.
 *  6. Writes read partial blocks that are not uptodate first, and a short
 *     copy into a block that was not uptodate counts as 0 bytes.
 *  8. Reclaim and split never touch a pinned folio.
 *  9. A writer waits for writeback on the folio before changing its data.
 *
 * The store behind the cache is reached through struct filemap_ops; tests
 * use an in-memory store, the engine its on-disk one.
 *
 * Locking:
 *  takes RCU read lock:          filemap_get_folio, filemap_get_batch
 *  takes xa_lock:                filemap_add_folio, filemap_remove_folio,
 *                                filemap_split_folio (for the tree switch)
 *  caller holds the folio lock:  filemap_remove_folio, filemap_split_folio,
 *                                filemap_dirty_range
 *  may sleep (folio lock, store I/O): filemap_read, filemap_write,
 *                                filemap_truncate, filemap_punch,
 *                                filemap_invalidate
 *  needs a thread registered with urcu: all of them.
 * Lock order: invalidate_lock, then the folio lock, then xa_lock, then the
 * cache's LRU lock.
 */
#ifndef FOLIOFS_FILEMAP_H
#define FOLIOFS_FILEMAP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "folio.h"
#include "readahead.h"
#include "xarray.h"

#define FM_DIRTY	XA_MARK_0
#define FM_WRITEBACK	XA_MARK_1
#define FM_TOWRITE	XA_MARK_2

struct filemap;
struct fs_cache;

/*
 * What the cache needs from the store. Block numbers are logical blocks of
 * the file, in units of the filemap's block size.
 */
struct filemap_ops {
	/*
	 * Fill blocks [@first, @first + @nr) of @folio's range (relative to
	 * the folio) from the store; holes read as zeroes. Return 0 or -errno.
	 * Called with the folio locked.
	 */
	int (*read_blocks)(struct filemap *map, struct folio *folio,
			   unsigned int first, unsigned int nr);
	/*
	 * Whether logical block @lblk has a block on disk (false: hole or
	 * delayed allocation). Optional: NULL means every block is backed, so
	 * no reservations are taken.
	 */
	bool (*block_mapped)(struct filemap *map, unsigned long lblk);
	/*
	 * Reserve @nr blocks for delayed allocation (law 7). Return 0 or
	 * -ENOSPC. Optional, with release_blocks.
	 */
	int (*reserve_blocks)(struct filemap *map, unsigned long nr);
	/* Give back @nr reserved blocks that will never be written. */
	void (*release_blocks)(struct filemap *map, unsigned long nr);
	/*
	 * Make logical blocks [@first, @first + @nr) holes in the store (@nr
	 * may be ULONG_MAX: to the end). Called by truncate and punch for the
	 * blocks they drop whole, after the cache has dropped them. Optional.
	 */
	void (*punch_blocks)(struct filemap *map, unsigned long first,
			     unsigned long nr);
};

struct filemap {
	struct xarray		pages;
	/*
	 * Held shared by everything that brings data from the store into the
	 * cache (readahead, filling blocks, writes), and exclusive by truncate
	 * and punch while they drop cached data and punch the store, so no
	 * reader can cache what the store held before the punch once the
	 * punch has returned. Writer-preferring, never taken recursively.
	 * Cached reads do not take it.
	 */
	pthread_rwlock_t	invalidate_lock;
	const struct filemap_ops *ops;
	void			*host;		/* the store's per-file data */
	struct fs_cache		*cache;
	/* File size in bytes. Written under the owner's lock; read locklessly. */
	long long		size;
	/* Folios and pages in the tree. Atomic. */
	unsigned long		nr_folios;
	unsigned long		nr_pages;
	/* Blocks reserved for dirty delalloc blocks of this file. Atomic. */
	unsigned long		nr_reserved;
	/* Largest folio order this file may use. */
	unsigned int		max_order;
	/*
	 * A write at or past the end of file caches into the largest aligned
	 * folio (max_order), not one sized to the write: appends then fill
	 * huge pages and write back as one extent per folio. Off by default.
	 */
	bool			append_large;
};

/*
 * Source of a write: copy up to @len bytes to @dst, return bytes copied.
 * A short return models a fault in the source (law 6).
 */
struct fs_copy_src {
	size_t (*copy)(struct fs_copy_src *src, void *dst, size_t len);
	const char *buf;	/* for fs_copy_buf() */
	size_t done;
};

/* A copy source reading from a flat buffer. */
void fs_copy_src_init(struct fs_copy_src *src, const void *buf);

/**
 * filemap_init() - an empty cache for one file.
 * Context: any.
 */
void filemap_init(struct filemap *map, struct fs_cache *cache,
		  const struct filemap_ops *ops, void *host);

/**
 * filemap_destroy() - drop every folio (all must be clean and unpinned, or
 * the caller accepts losing dirty data: used at unmount after writeback).
 * Context: may sleep; takes folio locks and xa_lock.
 */
void filemap_destroy(struct filemap *map);

static inline long long filemap_size(struct filemap *map)
{
	return __atomic_load_n(&map->size, __ATOMIC_ACQUIRE);
}

static inline void filemap_set_size(struct filemap *map, long long size)
{
	__atomic_store_n(&map->size, size, __ATOMIC_RELEASE);
}

/**
 * filemap_get_folio() - the folio caching @index, with a reference.
 * Context: takes the RCU read lock.
 * Return: a folio that contains @index (caller puts it), or NULL.
 */
struct folio *filemap_get_folio(struct filemap *map, unsigned long index);

/**
 * filemap_get_batch() - up to @nr consecutive folios starting at @index,
 * each with a reference, found in one RCU section. Stops at the first gap.
 * Context: takes the RCU read lock.
 * Return: number of folios stored in @folios.
 */
unsigned int filemap_get_batch(struct filemap *map, unsigned long index,
			       struct folio **folios, unsigned int nr);

/**
 * filemap_add_folio() - insert @folio (locked, not in any mapping) at its
 * index. The cache takes its own reference and puts the folio on the LRU.
 * Context: takes xa_lock; allocates tree nodes with it dropped.
 * Return: 0, -EEXIST if any index of the range is cached, -ENOMEM.
 */
int filemap_add_folio(struct filemap *map, struct folio *folio,
		      unsigned long index);

/**
 * filemap_remove_folio() - take @folio out of the cache: erase the tree
 * entry, then clear ->mapping (law 4), take it off the LRU and drop the
 * cache's reference. Reservations of its dirty delalloc blocks are
 * released.
 * Context: caller holds the folio lock and a reference.
 */
void filemap_remove_folio(struct folio *folio);

/**
 * filemap_delete_folio() - filemap_remove_folio() without dropping the
 * cache's reference: for reclaim, which removes a folio while its refcount
 * is frozen (so nobody can take a reference or a pin in between) and then
 * accounts for that reference itself.
 * Context: caller holds the folio lock, and a reference or the freeze.
 */
void filemap_delete_folio(struct folio *folio);

/**
 * filemap_split_folio() - split locked @folio into folios of @new_order.
 *
 * The pieces are new descriptors over @folio's data (nothing is copied):
 * each holds a reference on the folio that owns the allocation, so the
 * memory lives until the last piece goes. They take @folio's place in the
 * tree, its marks where their own state calls for them (DIRTY and TOWRITE
 * only on dirty pieces), their slices of its per-block state and
 * reservations, and its place on the LRU.
 *
 * Context: caller holds the folio lock and one reference; takes xa_lock.
 * On success @folio has left the cache (mapping NULL); the caller still
 * holds its lock and reference, and drops them as usual. Look the pieces
 * up again.
 * Return: 0; -EAGAIN if another reference exists (nothing changed); -EBUSY
 * if pinned, under writeback or not in a mapping; -ENOMEM; -EINVAL.
 */
int filemap_split_folio(struct folio *folio, unsigned int new_order);

/**
 * filemap_read() - copy up to @len bytes at @pos into @buf through the
 * cache, reading from the store and reading ahead as @ra says.
 * Context: may sleep.
 * Return: bytes read (0 at or past EOF), or -errno if nothing was read.
 */
ssize_t filemap_read(struct filemap *map, struct file_ra_state *ra,
		     long long pos, void *buf, size_t len);

/*
 * A read actor: consume bytes [@off, @off + @n) of @folio (uptodate; the
 * caller holds a reference for the duration of the call), return how many
 * were taken; fewer than @n ends the read there.
 */
typedef size_t (*filemap_actor_t)(void *arg, struct folio *folio, size_t off,
				  size_t n);

/**
 * filemap_read_actor() - filemap_read() that hands each uptodate piece to
 * @actor instead of copying it: zero-copy readers pin the folio there.
 * Context: may sleep.
 * Return: bytes taken, or -errno if none.
 */
ssize_t filemap_read_actor(struct filemap *map, struct file_ra_state *ra,
			   long long pos, size_t len, filemap_actor_t actor,
			   void *arg);

/* One pinned piece of a folio: bytes [@off, @off + @len) of @folio. */
struct filemap_pin_seg {
	struct folio	*folio;
	size_t		off;
	size_t		len;
};

/**
 * filemap_pin_read() - pin the uptodate folios holding up to @len bytes at
 * @pos (reading them in as filemap_read() would), at most @max pieces.
 * Context: may sleep.
 * Return: bytes pinned (0 at EOF) and *@nseg pieces, or -errno.
 */
ssize_t filemap_pin_read(struct filemap *map, struct file_ra_state *ra,
			 long long pos, size_t len, struct filemap_pin_seg *segs,
			 unsigned int max, unsigned int *nseg);

/**
 * filemap_pin_write() - prepare up to @len bytes at @pos for a holder to
 * write into folio memory, and pin them: every block of the range is
 * uptodate (read in or zeroed) and reserved (law 7), so -ENOSPC comes
 * here. The range is not dirty and the size does not move until
 * filemap_unpin(dirty = true). At most @max pieces.
 * Context: may sleep.
 * Return: bytes pinned and *@nseg pieces, or -errno.
 */
ssize_t filemap_pin_write(struct filemap *map, long long pos, size_t len,
			  struct filemap_pin_seg *segs, unsigned int max,
			  unsigned int *nseg);

/**
 * filemap_unpin() - drop pins taken by filemap_pin_read/write(). With
 * @dirty the pieces become dirty (after any writeback in flight on them),
 * even if writeback cleaned the folio meanwhile, and the size grows to
 * cover them; without it, reservations the pin took for blocks that are
 * still clean go back.
 * Context: may sleep (folio locks).
 */
void filemap_unpin(struct filemap *map, struct filemap_pin_seg *segs,
		   unsigned int nseg, bool dirty);

/**
 * filemap_write() - copy @len bytes from @src into the cache at @pos,
 * dirtying the blocks written and reserving delalloc blocks for them.
 * Extends the size when writing past it.
 * Context: may sleep (waits for writeback on the folios it writes).
 * Return: bytes written, or -errno if none: -ENOSPC when no block could be
 * reserved, -ENOMEM, -EIO from reading a partial block.
 */
ssize_t filemap_write(struct filemap *map, long long pos,
		      struct fs_copy_src *src, size_t len);

/**
 * filemap_truncate() - set the size to @size, dropping cached data past it.
 * Context: may sleep.
 * Return: 0 or -errno.
 */
int filemap_truncate(struct filemap *map, long long size);

/**
 * filemap_punch() - drop the cached data of bytes [@start, @end) and make
 * them read as zeroes; the size does not change.
 * Context: may sleep.
 * Return: 0 or -errno.
 */
int filemap_punch(struct filemap *map, long long start, long long end);

/**
 * filemap_dirty_range() - mark bytes [@from, @from + @len) of locked
 * @folio dirty: block bits, folio flag, tree mark.
 * Context: caller holds the folio lock; takes xa_lock for the mark.
 */
void filemap_dirty_range(struct folio *folio, size_t from, size_t len);

/**
 * filemap_clean_folio() - the store wrote every dirty block of locked
 * @folio: clear dirty bits, flag and mark, and forget the reservations
 * (they became extents). For the writeback code and tests.
 * Context: caller holds the folio lock; takes xa_lock.
 */
void filemap_clean_folio(struct folio *folio);

#endif /* FOLIOFS_FILEMAP_H */
