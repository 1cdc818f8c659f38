/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * space.h - the block allocator: which blocks of the volume are free, with
 * delayed-allocation reservations (DESIGN law 7) and frees that wait for
 * their commit (DESIGN, Persistence: "a freed block is reused only after
 * the commit that freed it is durable"). Every persistence layer allocates
 * through it.
 *
 * A volume has nr_blocks blocks of one size (512 bytes to 64 KiB, a power
 * of two; 4 KiB by default). A range of them, passed to space_create(),
 * holds metadata and is never free. Every other ("usable") block is in
 * exactly one state:
 *
 *   free       clear in the bitmap: may be handed out now;
 *   allocated  set: handed out by space_alloc*() or space_mark_used();
 *   pending    set: freed by space_free() but not reusable until
 *              space_commit_done() of the commit it was freed in.
 *
 * Reservations are not blocks but a promise on the free count: "reserved"
 * blocks are free blocks that a later space_alloc_reserved() may take and
 * nobody else may. Pending frees count as used, so a reservation never
 * relies on a block that a crash could bring back.
 *
 * Invariants (space_check() verifies them):
 *  - free + allocated + pending == usable == nr_blocks - meta blocks;
 *  - 0 <= reserved <= free, always: the allocator keeps one atomic count,
 *    avail = free - reserved, that space_reserve() never takes below 0
 *    and that space_alloc()/space_mark_used() take from as well, so they
 *    never use a block promised to a reservation; reserved is derived
 *    from it, so a snapshot under the mutex is exact;
 *  - every summary node agrees with the bitmap below it;
 *  - a pending block is set in the bitmap and in the pending bitmap, and
 *    sits in exactly one extent of the pending list, tagged with the
 *    sequence of the commit it belongs to.
 *
 * Finding space. The bitmap (1 = in use) is summed up in a tree of fan-out
 * 64: a level-1 node covers 64 bitmap words (4096 blocks), a level-2 node
 * 64 level-1 nodes (2^18 blocks), and so on up to one root (a 1 TiB volume
 * of 4 KiB blocks, 2^28 blocks, has four levels). Each node holds three
 * numbers: the free run at its start (head), at its end (tail) and the
 * longest free run inside it (longest). Runs that cross node boundaries are
 * found by chaining one node's tail into the next one's head, so the tree
 * answers "first run of n free blocks at or after block g" by reading at
 * most 128 summaries per level (the goal's node's siblings, and the
 * children of the node that fits) and 64 bitmap words in each of two
 * level-1 nodes (the goal's and the one that fits), and it answers
 * "longest run anywhere" from the root alone. A change to a run of bits recomputes the
 * level-1 nodes it touches (64 words each) and their ancestors.
 * Memory, per TiB of 4 KiB blocks: bitmap 32 MiB, summaries 780 KiB
 * (12 bytes per 4096 blocks, 2.4% of the bitmap), pending-free bitmap
 * 4 KiB per 32768-block chunk that has pending frees, plus an 8-byte
 * pointer per chunk (64 KiB). Smaller blocks cost proportionally more per
 * TiB (256 MiB of bitmap at 512 bytes).
 * Why not a per-word free count and a per-chunk free count: a free count
 * says a region has space, not that it has a run of n; on a fragmented
 * volume a search for 512 contiguous blocks would still read every word of
 * every chunk whose count is high enough. Head/tail/longest answer the
 * contiguity question itself, for the cost of one more 32-bit field.
 * Summary fields are 32 bits, so a volume has at most SPACE_MAX_BLOCKS
 * blocks (16 TiB at 4 KiB).
 *
 * Placement policy, for space_alloc*(goal, min, max):
 *  1. if a free run of max blocks exists anywhere, take max blocks at the
 *     first place at or after goal where they fit, else the first such
 *     place before goal (wrapping): contiguity first, then locality, so a
 *     large folio (up to 512 blocks) gets one extent whenever the disk has
 *     one;
 *  2. otherwise take the longest run there is (from the root), if it is at
 *     least min, at the first place at or after goal (wrapping) where it
 *     fits;
 *  3. otherwise -ENOSPC, except for space_alloc_reserved(), which takes the
 *     longest run even below min (at least one block exists, since
 *     reserved <= free): a reservation has promised the space, and a
 *     writeback must not fail with ENOSPC (law 7).
 * "Near the goal" means forwards: a file written sequentially gets its
 * extents in ascending order, which is what readahead and the backing
 * device like; the wrap only happens when nothing fits after the goal.
 *
 * Commits. Frees are tagged with the sequence of the open commit.
 * space_commit_begin() closes it (returns its sequence and opens the next),
 * and space_commit_done(seq) makes every block freed in commits <= seq
 * free. The metadata layer calls begin when it starts writing a commit
 * record and done once that record is durable. At mount it rebuilds the
 * allocator with space_load() of the checkpointed map, space_mark_used()
 * for each allocation in the log after it and space_free() for each free,
 * then one begin/done pair for the frees the log shows committed.
 *
 * Locking. One mutex per volume guards the bitmap, the summaries, the
 * pending list and the free/allocated/pending counts. One mutex is enough:
 * allocation happens at writeback and at metadata commit, never on the
 * cached read path, and one allocation holds it for a few hundred word
 * reads at most. Reservations happen on every write() that dirties a new
 * block, so they do not take it: avail (free - reserved) is an atomic that
 * space_reserve() decrements in a CAS loop only while it stays >= 0, and
 * space_unreserve() increments in a CAS loop only while it stays <= free.
 *
 *  lock-free (one CAS loop):  space_reserve, space_unreserve (which takes
 *                             the mutex only to confirm a refusal: an
 *                             allocation racing with its lock-free check
 *                             can make a correct call look wrong)
 *  takes the volume mutex:    space_alloc, space_alloc_reserved,
 *                             space_free, space_mark_used,
 *                             space_commit_begin, space_commit_done,
 *                             space_stats, space_serialize, space_load,
 *                             space_check
 *  allocates outside the mutex: space_free (pending-bitmap pages and the
 *                             pending extent, retrying if what it saw
 *                             changed), space_load (the new bitmap)
 *  caller has sole use (no concurrent calls): space_create,
 *                             space_destroy, space_load (at mount)
 *  none of them sleeps except on the mutex; none needs RCU.
 */
#ifndef FOLIOFS_SPACE_H
#define FOLIOFS_SPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

#define SPACE_MIN_BLOCK_SIZE	512U
#define SPACE_MAX_BLOCK_SIZE	65536U
/* Largest volume: every run length fits the 32-bit summary fields. */
#define SPACE_MAX_BLOCKS	((1ULL << 32) - 64)

/*
 * Serialized free map (space_serialize / space_load). All fields
 * little-endian.
 *
 *   offset size  field
 *   0      8     magic: SPACE_MAGIC ("FFSPACE1" read as a little-endian u64)
 *   8      4     version: SPACE_FORMAT_VERSION
 *   12     4     log2 of the block size (bytes), 9..16
 *   16     8     nr_blocks: blocks in the volume
 *   24     8     nr_used: bits set below (metadata, allocated and pending
 *                blocks), a cross-check against a torn or stale map
 *   32     8*W   the bitmap, W = DIV_ROUND_UP(nr_blocks, 64) words: bit b
 *                (b = 0 the least significant) of word w is block
 *                64 * w + b; 1 = in use. Bits at and past nr_blocks are 0.
 *
 * Pending frees are written as in use: until their commit is durable a
 * crash must still find them allocated. Checksums are the caller's (the
 * metadata layer checksums what it writes).
 */
#define SPACE_MAGIC		0x3145434150534646ULL	/* "FFSPACE1" */
#define SPACE_FORMAT_VERSION	1U
#define SPACE_HEADER_SIZE	32U

struct space;

/* A snapshot of the counters (space_stats). Units: blocks unless named. */
struct space_stats {
	uint64_t nr_blocks;	/* the whole volume */
	uint64_t block_size;	/* bytes */
	uint64_t meta;		/* blocks held for metadata since create */
	uint64_t usable;	/* nr_blocks - meta */
	uint64_t free;		/* reusable now (reserved ones included) */
	uint64_t allocated;	/* handed out, not freed */
	uint64_t pending;	/* freed, waiting for their commit */
	uint64_t reserved;	/* delalloc reservations outstanding */
	int64_t avail;		/* free - reserved: what space_reserve admits */
	uint64_t longest;	/* longest free run */
	uint64_t pending_extents; /* entries on the pending list */
	uint64_t commit_seq;	/* sequence of the open commit */
	uint64_t done_seq;	/* highest sequence passed to commit_done */
	uint64_t words_scanned;	/* bitmap words read by searches and summary
				 * updates since create (debug counter) */
	uint64_t nr_locked;	/* times the volume mutex was taken */
	uint64_t mem_bytes;	/* bitmap + summaries + pending state */
};

/**
 * space_create() - make the allocator for a volume, every block free but
 * the metadata range.
 * @nr_blocks: blocks in the volume, 1..SPACE_MAX_BLOCKS.
 * @block_size: bytes per block, a power of two in 512..65536.
 * @meta_start: first block held for metadata (superblock, log, ...).
 * @meta_len: blocks held for metadata, 0 for none; never allocated or freed.
 * Context: any thread. Allocates (the bitmap: nr_blocks / 8 bytes).
 * Return: the allocator, ERR_PTR(-EINVAL) for a bad geometry or a metadata
 * range outside the volume, or ERR_PTR(-ENOMEM).
 */
struct space *space_create(uint64_t nr_blocks, unsigned int block_size,
			   uint64_t meta_start, uint64_t meta_len);

/**
 * space_destroy() - free the allocator. Pending frees are dropped (the
 * next mount rebuilds them from the log). Warns if reservations remain: a
 * clean unmount ends with none (law 7).
 * Context: caller has sole use of @sp.
 */
void space_destroy(struct space *sp);

/**
 * space_alloc() - allocate one contiguous run of min..max free blocks near
 * @goal (see the placement policy above). Does not take reserved blocks.
 * @goal: preferred first block; past the end means 0.
 * @min: fewest blocks acceptable, >= 1.
 * @max: most blocks wanted, >= @min.
 * @start: out: first block of the run.
 * Context: takes the volume mutex.
 * Return: blocks allocated (min..max), -ENOSPC if no free run of @min
 * blocks exists outside reservations, or -EINVAL (bad @min/@max).
 */
long space_alloc(struct space *sp, uint64_t goal, uint64_t min, uint64_t max,
		 uint64_t *start);

/**
 * space_alloc_reserved() - turn reservations into one contiguous run near
 * @goal. The caller holds at least @max reserved blocks (space_reserve);
 * the blocks allocated stop being reserved, the rest stay reserved, and
 * the caller calls again for them.
 * @goal, @start: as for space_alloc().
 * @min: preferred fewest blocks. If no free run of @min exists the longest
 * run there is is returned instead, shorter than @min: the space was
 * promised, so this never fails for lack of it (law 7).
 * @max: most blocks wanted, >= @min.
 * Context: takes the volume mutex.
 * Return: blocks allocated (1..max), or -EINVAL if fewer than @max blocks
 * are reserved (a caller bug; warns, changes nothing) or @min/@max are bad.
 * Never -ENOSPC: reserved <= free means a free block exists (checked with
 * WARN_ON; if it ever fired the return would be -ENOSPC).
 */
long space_alloc_reserved(struct space *sp, uint64_t goal, uint64_t min,
			  uint64_t max, uint64_t *start);

/**
 * space_free() - free @n allocated blocks from @start. They become pending
 * until space_commit_done() covers the commit open now.
 * Every block must be allocated: freeing a free block, a pending one
 * (double free) or a metadata block is a caller bug.
 * Context: takes the volume mutex; allocates outside it.
 * Return: 0; -EINVAL for a bug above or a range outside the volume (warns,
 * changes nothing); -ENOMEM (changes nothing).
 */
int space_free(struct space *sp, uint64_t start, uint64_t n);

/**
 * space_mark_used() - mark @n free blocks from @start allocated, for
 * replaying an allocation from the metadata log. Counts against the free
 * space like space_alloc(), so it does not take reserved blocks.
 * Context: takes the volume mutex.
 * Return: 0; -EEXIST if any block is not free (changes nothing: the log
 * disagrees with the map); -ENOSPC if the blocks are promised to
 * reservations; -EINVAL for a range outside the volume or @n == 0.
 */
int space_mark_used(struct space *sp, uint64_t start, uint64_t n);

/**
 * space_commit_begin() - close the open commit: blocks freed before this
 * call belong to it, blocks freed after it to the next one.
 * Context: takes the volume mutex.
 * Return: the closed commit's sequence (the first is 1).
 */
uint64_t space_commit_begin(struct space *sp);

/**
 * space_commit_done() - commit @seq (and every earlier one) is durable:
 * blocks freed in them become free. Calling it again for a done sequence
 * does nothing.
 * Context: takes the volume mutex; frees memory after dropping it.
 * Return: blocks made free (>= 0), or -EINVAL if @seq was never returned
 * by space_commit_begin() (warns, changes nothing).
 */
long space_commit_done(struct space *sp, uint64_t seq);

/**
 * space_reserve() - reserve @n blocks for delayed allocation (law 7):
 * succeeds only if allocated + pending + reserved + @n <= usable.
 * Context: lock-free, any thread: a CAS loop on the free-minus-reserved
 * count; never takes the volume mutex.
 * Return: 0 (also for @n == 0), or -ENOSPC (nothing reserved).
 */
int space_reserve(struct space *sp, uint64_t n);

/**
 * space_unreserve() - give back @n reserved blocks that will not be
 * allocated (truncate, punch, invalidate of dirty delalloc blocks).
 * Context: lock-free, any thread; takes the volume mutex only when the
 * lock-free check says fewer than @n are reserved, to confirm it.
 * Return: 0, or -EINVAL if fewer than @n are reserved (warns, changes
 * nothing).
 */
int space_unreserve(struct space *sp, uint64_t n);

/**
 * space_stats() - a consistent snapshot of the counters, all taken under
 * the mutex (a reservation is one atomic op, so none is half done).
 * Context: takes the volume mutex.
 */
void space_stats(struct space *sp, struct space_stats *st);

/**
 * space_serialized_size() - bytes space_serialize() writes for @sp.
 * Context: any thread (the geometry is fixed).
 */
size_t space_serialized_size(const struct space *sp);

/**
 * space_serialize() - write the free map in the format above.
 * Context: takes the volume mutex (a consistent snapshot).
 * Return: bytes written, or -ENOBUFS if @len is below
 * space_serialized_size() (nothing written).
 */
long space_serialize(struct space *sp, void *buf, size_t len);

/**
 * space_load() - replace the free map with a serialized one, at mount.
 * The map must have the same geometry, an honest nr_used, zero bits past
 * the end, and the metadata range in use. Blocks set in it count as
 * allocated.
 * Context: caller has sole use of @sp; takes the volume mutex; allocates
 * outside it.
 * Return: 0; -EINVAL if the map is malformed or does not fit the volume;
 * -EBUSY if @sp already has allocations, pending frees or reservations;
 * -ENOMEM. Nothing changes on error.
 */
int space_load(struct space *sp, const void *buf, size_t len);

/**
 * space_check() - verify every summary against the bitmap, the counters
 * against a count of the bitmap, the pending list against the pending
 * bitmap, and reserved <= free. Prints what disagrees.
 * Context: takes the volume mutex. Reads the whole bitmap.
 * Return: 0, or -EUCLEAN.
 */
int space_check(struct space *sp);

/*
 * Test hooks, only in builds with FOLIOFS_TESTING (elsewhere no-ops):
 *  space_test_lock/unlock() hold the volume mutex, to show what does not
 *	need it;
 *  space_test_flip() flips one bit of the bitmap behind the summaries'
 *	back, to show that space_check() notices;
 *  space_fail_alloc() lets the next @after allocations that space_free()
 *	and space_load() make succeed, then fails @count of them (@count 0
 *	disarms).
 */
void space_test_lock(struct space *sp);
void space_test_unlock(struct space *sp);
void space_test_flip(struct space *sp, uint64_t block);
void space_fail_alloc(struct space *sp, long after, long count);

#endif /* FOLIOFS_SPACE_H */
