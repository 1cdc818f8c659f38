/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blkstate.h - per-block state of a folio (DESIGN law 6): which blocks hold
 * valid data (uptodate), which must be written back (dirty), and which hold
 * a delayed-allocation reservation (reserved, law 7).
 *
 * A folio has folio_size() >> folio->blkbits blocks; the block size is 512
 * bytes to PAGE_SIZE, set by the page cache (folio->blkbits) before it
 * publishes the folio. A folio with more than one block may carry a struct
 * blkstate (folio->private, FOLIO_PRIVATE) with one bit per block in each
 * of three bitmaps.
 *
 * Two forms, one meaning:
 *  - with a blkstate, the bitmaps are the truth and the folio flags are
 *    derived from them, always in step: FOLIO_UPTODATE iff every block is
 *    uptodate, FOLIO_DIRTY iff some block is dirty, FOLIO_DELALLOC iff some
 *    block is reserved;
 *  - without one (the "flag form": every single-block folio, and any folio
 *    that was never given one or had it released), FOLIO_UPTODATE,
 *    FOLIO_DIRTY and FOLIO_DELALLOC each stand for all of its blocks.
 * blkstate_attach() builds the bitmaps from the flags and
 * blkstate_release() (only for a clean, unreserved folio) goes back; neither
 * changes what any block's state is. In the flag form a folio can only be
 * all-or-nothing, so each function below rounds to the whole folio in its
 * safe direction (see each); the page cache therefore attaches a blkstate
 * to every multi-block folio before it reads, writes or reserves part of it.
 *
 * Byte ranges and partial blocks. Functions take a byte range [@off,
 * @off + @len) inside the folio and round it to blocks in the direction that
 * never claims more than is true:
 *  - set_uptodate rounds inwards: only blocks the range fully covers become
 *    uptodate (a partial write into a block that was not read does not make
 *    it valid);
 *  - clear_uptodate, set_dirty and set_reserved round outwards: every block
 *    the range touches;
 *  - clear_dirty and clear_reserved round inwards: a block the range only
 *    partly covers still holds bytes that must be written (truncate to the
 *    middle of a block keeps that block dirty and reserved);
 *  - test_uptodate asks whether every block the range touches is uptodate,
 *    test_dirty whether any is dirty.
 * Counts are in blocks.
 *
 * Concurrency. The bitmaps are guarded by one mutex per blkstate, not by
 * per-word atomics: an operation changes a run of bits that may span words
 * and must change the derived folio flag and the counts in the same step
 * (two read completions each setting half a folio uptodate must not both
 * miss, or both claim, "now all uptodate"; a clear must report exactly the
 * bits it cleared so that reservations are released once). A mutex rather
 * than a spinlock because these are userspace threads that can be preempted
 * inside the section; uncontended it costs the same single atomic op, and
 * contention (only between I/O completions of one folio) is rare. The lock
 * nests inside the folio lock and takes no other lock.
 *
 * Lifetime. The blkstate is published with a release store and freed after
 * an RCU grace period, so blkstate_test_*() may run with only a reference.
 *
 * Locking:
 *  caller holds the folio lock: blkstate_attach, blkstate_release,
 *                    blkstate_set_dirty, blkstate_clear_dirty,
 *                    blkstate_set_reserved, blkstate_clear_reserved,
 *                    blkstate_clear_uptodate, blkstate_split
 *  caller holds the folio lock, or completes read I/O started under it
 *  (completions of one folio may run at once): blkstate_set_uptodate
 *  caller holds a reference; takes RCU read lock and the blkstate lock:
 *                    blkstate_test_uptodate, blkstate_test_dirty,
 *                    blkstate_count_dirty, blkstate_count_reserved,
 *                    blkstate_next_dirty, blkstate_check
 *  may allocate:     blkstate_attach, blkstate_split
 *  needs a thread registered with urcu: blkstate_release, blkstate_split
 *                    (they free through call_rcu), and the test functions
 *  nothing here sleeps except on the blkstate mutex.
 */
#ifndef FOLIOFS_BLKSTATE_H
#define FOLIOFS_BLKSTATE_H

#include <stdbool.h>
#include <stddef.h>

#include "folio.h"

/* Blocks in @folio at its block size. */
static inline unsigned int folio_nr_blocks(const struct folio *folio)
{
	return 1U << (folio_shift(folio) - folio->blkbits);
}

/**
 * folio_set_blkbits() - set the block size of a folio not yet published.
 * Context: caller owns the folio (no blkstate, not yet visible to others).
 */
static inline void folio_set_blkbits(struct folio *folio, unsigned int blkbits)
{
	FOLIO_BUG_ON(blkbits < FOLIO_MIN_BLKBITS || blkbits > PAGE_SHIFT, folio);
	FOLIO_BUG_ON(folio_test_private(folio), folio);
	folio->blkbits = blkbits;
}

/**
 * blkstate_attach() - give @folio a blkstate built from its flags.
 * A folio with one block needs none: nothing is allocated and 0 returned.
 * Attaching to a folio that has one already does nothing.
 * Context: caller holds the folio lock. Allocates.
 * Return: 0, or -ENOMEM (nothing changed).
 */
int blkstate_attach(struct folio *folio);

/**
 * blkstate_release() - drop @folio's blkstate, going back to the flag form.
 * Law 6 and 8: refused while the folio is dirty, under writeback, pinned, or
 * holds reservations, since the flag form could not say which blocks those
 * are. A released folio that was only partly uptodate becomes not uptodate.
 * The pin check sees every pin taken before it; a holder of a plain
 * reference that pins afterwards finds the flag form (coarser, still
 * correct), so zero-copy paths that need per-block state through their pin
 * take the pin with the folio locked.
 * Context: caller holds the folio lock. Needs a registered thread (the
 * blkstate is freed after a grace period).
 * Return: 0 (also when there was none), or -EBUSY (nothing changed).
 */
int blkstate_release(struct folio *folio);

/**
 * blkstate_free_dead() - free the blkstate of a folio whose last reference
 * is gone. A folio that left its page cache while pinned keeps its block
 * state until the pin is dropped (law 8); its last put ends here.
 * Context: called by folio_put() on the folio's last reference, nothing
 * held. Needs a registered thread.
 */
void blkstate_free_dead(struct folio *folio);

static inline bool folio_has_blkstate(const struct folio *folio)
{
	return folio_test_private(folio);
}

/**
 * blkstate_set_uptodate() - mark the blocks fully inside the range uptodate;
 * the folio becomes FOLIO_UPTODATE when all are. Whoever fills the bytes
 * calls this after writing them (the flag's release publishes them).
 * Flag form: only a range covering the whole folio sets it.
 * Context: folio lock, or read completion (see the table).
 * Return: blocks newly marked.
 */
unsigned int blkstate_set_uptodate(struct folio *folio, size_t off, size_t len);

/**
 * blkstate_clear_uptodate() - mark every block the range touches not
 * uptodate (a failed read); FOLIO_UPTODATE is cleared.
 * Flag form: the whole folio.
 * Context: caller holds the folio lock.
 * Return: blocks newly cleared.
 */
unsigned int blkstate_clear_uptodate(struct folio *folio, size_t off,
				     size_t len);

/**
 * blkstate_test_uptodate() - whether every block the range touches is
 * uptodate (so all its bytes may be read). A true return is acquire: the
 * bytes are visible.
 * Context: caller holds a reference.
 */
bool blkstate_test_uptodate(struct folio *folio, size_t off, size_t len);

/**
 * blkstate_set_dirty() - mark every block the range touches dirty, and the
 * folio FOLIO_DIRTY. Setting the tree's DIRTY mark is the page cache's job:
 * it knows the folio was clean if folio_test_dirty() was false before.
 * Law 8: works on a pinned folio that writeback cleaned.
 * Flag form: the whole folio.
 * Context: caller holds the folio lock.
 * Return: blocks newly dirtied.
 */
unsigned int blkstate_set_dirty(struct folio *folio, size_t off, size_t len);

/**
 * blkstate_clear_dirty() - clear the blocks fully inside the range; the
 * folio is FOLIO_DIRTY while any dirty block is left. Writeback calls it
 * for the runs it is about to write, truncate for the blocks it drops.
 * Flag form: only a range covering the whole folio clears it.
 * Context: caller holds the folio lock.
 * Return: blocks newly cleared.
 */
unsigned int blkstate_clear_dirty(struct folio *folio, size_t off, size_t len);

/**
 * blkstate_dirty_bytes() - bytes of dirty blocks in all page caches of the
 * process, for dirty throttling: every set and clear of a dirty bit counts.
 * Context: any; lock-free.
 */
long blkstate_dirty_bytes(void);

/**
 * blkstate_test_dirty() - whether any block the range touches is dirty.
 * Context: caller holds a reference.
 */
bool blkstate_test_dirty(struct folio *folio, size_t off, size_t len);

/**
 * blkstate_count_dirty() - dirty blocks in @folio.
 * Context: caller holds a reference.
 */
unsigned int blkstate_count_dirty(struct folio *folio);

/**
 * blkstate_next_dirty() - the next run of dirty blocks, for writeback
 * (law 6: only dirty blocks are written).
 * @off: in: byte offset to search from (rounded down to its block); out:
 *	 first byte of the run.
 * @len: out: bytes in the run (whole blocks).
 * Iterate with off += len (blkstate_for_each_dirty). A run is maximal at the
 * time of the search; runs can change unless the folio lock is held.
 * Context: caller holds a reference.
 * Return: true and the run, or false (nothing dirty at or after *@off).
 */
bool blkstate_next_dirty(struct folio *folio, size_t *off, size_t *len);

#define blkstate_for_each_dirty(folio, off, len)			\
	for ((off) = 0; blkstate_next_dirty((folio), &(off), &(len));	\
	     (off) += (len))

/**
 * blkstate_set_reserved() - record a delalloc reservation on every block
 * the range touches (law 7). The caller reserves from the space allocator
 * first (so ENOSPC fails the write): it needs the blocks the range touches
 * minus blkstate_count_reserved() over it, which under the folio lock is
 * exactly what this call then returns.
 * Flag form: the whole folio.
 * Context: caller holds the folio lock.
 * Return: blocks newly marked.
 */
unsigned int blkstate_set_reserved(struct folio *folio, size_t off,
				   size_t len);

/**
 * blkstate_clear_reserved() - drop the reservation marks of the blocks
 * fully inside the range; the caller gives back exactly that many blocks
 * (truncate, punch, invalidate; writeback once it allocated the extent).
 * Flag form: only a range covering the whole folio clears it.
 * Context: caller holds the folio lock.
 * Return: blocks newly cleared.
 */
unsigned int blkstate_clear_reserved(struct folio *folio, size_t off,
				     size_t len);

/**
 * blkstate_count_reserved() - reserved blocks in the range (every block it
 * touches).
 * Context: caller holds a reference.
 */
unsigned int blkstate_count_reserved(struct folio *folio, size_t off,
				     size_t len);

/**
 * blkstate_split() - hand @folio's per-block state to the @n folios it is
 * being split into (law 3).
 * @folio: the folio being split: locked, refcount frozen.
 * @pieces: @n new folios of equal order, folio_order(@folio) - log2(@n);
 *	    @pieces[i] holds bytes [i * size, (i + 1) * size) of @folio. Not
 *	    yet published; their blkbits is set to @folio's.
 * @n: a power of two, at least 2.
 *
 * Each piece gets its slice of the uptodate, dirty and reserved bits: in a
 * blkstate of its own if it has more than one block, in its FOLIO_UPTODATE,
 * FOLIO_DIRTY and FOLIO_DELALLOC flags if it has one. Pieces that need a
 * blkstate and have none get one allocated first; on -ENOMEM nothing has
 * changed. To make the hand-over unable to fail after the freeze, attach
 * blkstates to the pieces before freezing (they must be fresh: clean, not
 * uptodate, unreserved). On success @folio's state has moved: its blkstate
 * is gone and its DIRTY and DELALLOC flags are clear (UPTODATE stays).
 *
 * Context: caller holds @folio's lock. Allocates unless pre-attached.
 * Needs a registered thread.
 * Return: 0, -ENOMEM (nothing changed), -EINVAL (pieces of the wrong shape,
 * nothing changed).
 */
int blkstate_split(struct folio *folio, struct folio **pieces, unsigned int n);

/* --- Testing and accounting ---------------------------------------------- */

/* Blkstates allocated and not yet freed. */
long blkstate_live(void);
/* Bytes of those. */
long blkstate_bytes_live(void);
/*
 * Let the next @after blkstate allocations succeed, then fail @count (0
 * disarms); blkstate_fail_alloc_next(n) fails the next n. Only in builds
 * with FOLIOFS_TESTING; elsewhere a no-op.
 */
void blkstate_fail_alloc(long after, long count);

static inline void blkstate_fail_alloc_next(long n)
{
	blkstate_fail_alloc(0, n);
}
/*
 * Check that the counts match the bitmaps and the flags the bitmaps;
 * print and return false when not. Context: caller holds a reference.
 */
bool blkstate_check(struct folio *folio);

#endif /* FOLIOFS_BLKSTATE_H */
