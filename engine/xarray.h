/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xarray.h - the radix tree every file's page cache hangs on.
 *
 * An xarray maps an unsigned long index to a pointer. It is a tree of nodes
 * of XA_CHUNK_SIZE slots (64; 8 in test builds, so trees get deep). Readers
 * walk it under RCU without taking any lock; writers serialise on the tree's
 * mutex. A node taken out of the tree is freed only after an RCU grace
 * period, so a reader that still holds a pointer to it reads stale but valid
 * memory, never freed memory.
 *
 * What a slot may hold:
 *  - NULL;
 *  - a pointer aligned to 4 bytes (the user's entry);
 *  - a value entry, xa_mk_value(v): a small integer tagged with bit 0, kept
 *    in the slot itself, for shadow entries and tests;
 *  - an internal entry (bits 1:0 == 10), never returned to users: a pointer
 *    to a child node, a sibling (see below) or the retry entry.
 *
 * Multi-index entries. An entry of order N covers the 2^N indices of the
 * aligned range that contains its index. It lives in the node whose slots
 * each cover 2^shift indices, with shift the largest multiple of
 * XA_CHUNK_SHIFT not above N; its first ("canonical") slot holds the entry
 * and the following 2^(N - shift) - 1 slots hold sibling entries naming the
 * canonical slot. A lookup at any index of the range returns the entry.
 *
 * Marks. Three marks (XA_MARK_0..2; the page cache calls them DIRTY,
 * WRITEBACK and TOWRITE) are bits per slot. A marked multi-index entry has
 * the bit set in its canonical slot and in every sibling slot, so a marked
 * search that starts at a tail index finds it. A node's slot bit is set in
 * its parent whenever any slot below has it, so marked searches skip
 * unmarked subtrees.
 *
 * Invariants (checked by xa_check() in tests):
 *  - node->count is the number of non-NULL slots (entries, siblings, nodes);
 *  - no node in the tree is empty, and no node but the root has a parent
 *    slot of another kind;
 *  - a sibling slot follows its canonical slot in the same node;
 *  - a parent's mark bit for a child is set iff some slot of the child has
 *    the mark.
 *
 * Ordering for lock-free readers. Writers publish with release stores and
 * readers load slots with acquire loads. Where a write rewrites a run of
 * slots (a multi-index store or a split), it orders the stores so that a
 * reader which follows a sibling to its canonical slot and then sees the
 * sibling slot unchanged has read a consistent pair; otherwise it restarts
 * (see xas_descend() in xarray.c). A reader therefore never gets an entry
 * that does not cover the index it asked for, even while a split or merge of
 * that very range is under way.
 *
 * Locking:
 *  takes RCU read lock:       xa_load, xa_find, xa_find_after, xa_get_mark,
 *                             xa_get_order, xa_for_each*
 *  takes xa_lock:             xa_store, xa_store_order, xa_insert, xa_erase,
 *                             xa_cmpxchg, xa_set_mark, xa_clear_mark,
 *                             xa_split, xa_destroy, xa_convert_marks
 *  caller holds RCU read lock or xa_lock:
 *                             xas_load, xas_reload, xas_find,
 *                             xas_find_marked, xas_get_mark, xas_get_order
 *  caller holds xa_lock:      xas_store, xas_set_mark, xas_clear_mark,
 *                             xas_split
 *  caller holds no lock:      xas_nomem, xas_split_alloc, xas_destroy
 *                             (they allocate or free; never under xa_lock)
 *  needs a thread registered with urcu: every function here, since readers
 *  take the RCU read lock and writers queue nodes to call_rcu.
 *
 * Memory. xas_store() and xas_split() never allocate: nodes come from the
 * xa_state's preallocated list, filled by xas_nomem() or xas_split_alloc()
 * outside the lock. When the list is short xas_store() changes nothing and
 * records -ENOMEM; the caller drops the lock, calls xas_nomem() and retries
 * (see xa_store() in xarray.c for the loop). So -ENOMEM leaves the tree as it
 * was.
 */
#ifndef FOLIOFS_XARRAY_H
#define FOLIOFS_XARRAY_H

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"
#include "rcu.h"

#ifndef XA_CHUNK_SHIFT
#define XA_CHUNK_SHIFT		6
#endif
#define XA_CHUNK_SIZE		(1UL << XA_CHUNK_SHIFT)
#define XA_CHUNK_MASK		(XA_CHUNK_SIZE - 1)
#define XA_MARK_LONGS		DIV_ROUND_UP(XA_CHUNK_SIZE, BITS_PER_LONG)
#define XA_MAX_MARKS		3
/* The deepest tree: enough levels to cover every bit of an index. */
#define XA_MAX_DEPTH		DIV_ROUND_UP(BITS_PER_LONG, XA_CHUNK_SHIFT)
/* Largest order a multi-index entry may have. */
#define XA_MAX_ORDER		(BITS_PER_LONG - 1)

typedef unsigned int xa_mark_t;
#define XA_MARK_0		0U
#define XA_MARK_1		1U
#define XA_MARK_2		2U
/* Filter for xa_find(): any present entry, marked or not. */
#define XA_PRESENT		8U

struct xa_node {
	/* Each slot covers 2^shift indices. Fixed once the node is published. */
	unsigned char	shift;
	/* Slot number in the parent. Protected by xa_lock. */
	unsigned char	offset;
	/* Non-NULL slots. Protected by xa_lock. */
	unsigned short	count;
	/* NULL for the root. Protected by xa_lock; readers never use it. */
	struct xa_node	*parent;
	struct xarray	*array;
	union {
		/* Chains preallocated nodes on an xa_state (writer only). */
		struct xa_node	*next_free;
		/* Deferred free after removal. */
		struct rcu_head	rcu;
	};
	/* Written with release stores under xa_lock; read with acquire loads. */
	void		*slots[XA_CHUNK_SIZE];
	/* Set and cleared under xa_lock with atomic ops; read locklessly. */
	unsigned long	marks[XA_MAX_MARKS][XA_MARK_LONGS];
};

struct xarray {
	pthread_mutex_t	xa_lock;
	/* NULL or a node pointer (internal entry); release/acquire. */
	void		*xa_head;
	/* Bit m: some entry has mark m. Atomic; written under xa_lock. */
	unsigned int	xa_marks;
#ifdef FOLIOFS_DEBUG
	/* Thread that holds xa_lock, for xa_lock_held(). */
	pthread_t	xa_owner;
	bool		xa_owned;
#endif
};

/* --- Entries ----------------------------------------------------------- */

static inline void *xa_mk_value(unsigned long v)
{
	BUG_ON(v > LONG_MAX);
	return (void *)((v << 1) | 1);
}

static inline unsigned long xa_to_value(const void *entry)
{
	return (unsigned long)entry >> 1;
}

static inline bool xa_is_value(const void *entry)
{
	return (unsigned long)entry & 1;
}

static inline void *xa_mk_internal(unsigned long v)
{
	return (void *)((v << 2) | 2);
}

static inline unsigned long xa_to_internal(const void *entry)
{
	return (unsigned long)entry >> 2;
}

static inline bool xa_is_internal(const void *entry)
{
	return ((unsigned long)entry & 3) == 2;
}

/* Internal values below this are siblings; the retry entry is just above. */
#define XA_SIBLING_LIMIT	256UL
#define XA_RETRY_ENTRY		xa_mk_internal(XA_SIBLING_LIMIT)

static inline bool xa_is_node(const void *entry)
{
	return xa_is_internal(entry) && (unsigned long)entry > 4096;
}

static inline struct xa_node *xa_to_node(const void *entry)
{
	return (struct xa_node *)((unsigned long)entry - 2);
}

static inline void *xa_mk_node(const struct xa_node *node)
{
	return (void *)((unsigned long)node | 2);
}

static inline bool xa_is_sibling(const void *entry)
{
	return xa_is_internal(entry) &&
	       (unsigned long)entry < (unsigned long)xa_mk_internal(XA_SIBLING_LIMIT);
}

static inline void *xa_mk_sibling(unsigned int offset)
{
	return xa_mk_internal(offset);
}

static inline unsigned int xa_to_sibling(const void *entry)
{
	return (unsigned int)xa_to_internal(entry);
}

static inline bool xa_is_retry(const void *entry)
{
	return entry == XA_RETRY_ENTRY;
}

/* An error returned by the normal API's pointer-returning stores. */
static inline bool xa_is_err(const void *entry)
{
	return IS_ERR(entry);
}

static inline int xa_err(const void *entry)
{
	return xa_is_err(entry) ? (int)PTR_ERR(entry) : 0;
}

/* --- The normal API ------------------------------------------------------ */

/**
 * xa_init() - make @xa an empty tree.
 * Context: any; no allocation.
 */
void xa_init(struct xarray *xa);

/**
 * xa_destroy() - remove every entry and free every node (after a grace
 * period). Entries themselves are the caller's to free.
 * Context: takes xa_lock; needs a registered thread.
 */
void xa_destroy(struct xarray *xa);

static inline bool xa_empty(const struct xarray *xa)
{
	return READ_ONCE(((struct xarray *)xa)->xa_head) == NULL;
}

/**
 * xa_load() - the entry at @index, or NULL.
 * Context: takes and drops the RCU read lock.
 * Return: the entry covering @index (of any order), or NULL.
 */
void *xa_load(struct xarray *xa, unsigned long index);

/**
 * xa_store_order() - store @entry over the aligned 2^@order range at @index.
 * Everything the range held is replaced (nodes below it are freed after a
 * grace period). Storing NULL erases. Marks survive when an entry of the
 * same order is replaced, and are cleared otherwise.
 * Context: takes xa_lock; allocates with it dropped.
 * Return: the entry that covered the range's first index before (NULL if
 * none), or an error pointer: -ENOMEM (tree unchanged), -EBUSY when a larger entry
 * covers the range, -EINVAL for a bad entry or order.
 */
void *xa_store_order(struct xarray *xa, unsigned long index,
		     unsigned int order, void *entry);

static inline void *xa_store(struct xarray *xa, unsigned long index,
			     void *entry)
{
	return xa_store_order(xa, index, 0, entry);
}

/**
 * xa_insert() - store @entry at @index only if nothing is there.
 * Context: takes xa_lock.
 * Return: 0, -EBUSY when an entry covers any index of the range, -ENOMEM,
 * -EINVAL.
 */
int xa_insert_order(struct xarray *xa, unsigned long index,
		    unsigned int order, void *entry);

static inline int xa_insert(struct xarray *xa, unsigned long index,
			    void *entry)
{
	return xa_insert_order(xa, index, 0, entry);
}

/**
 * xa_erase() - remove the entry covering @index (all of it, whatever its
 * order).
 * Context: takes xa_lock.
 * Return: the entry removed, or NULL.
 */
void *xa_erase(struct xarray *xa, unsigned long index);

/**
 * xa_cmpxchg() - replace @old by @entry at @index if @old is what is there.
 * A multi-index @old is replaced whole, keeping its order and marks.
 * Context: takes xa_lock.
 * Return: what was there (compare with @old to see whether it happened), or
 * an error pointer (-ENOMEM, -EINVAL).
 */
void *xa_cmpxchg(struct xarray *xa, unsigned long index, void *old,
		 void *entry);

/**
 * xa_find() - the first entry at or above *@indexp and at most @max,
 * matching @filter (a mark, or XA_PRESENT for any entry).
 * If a multi-index entry covers *@indexp, it is the one found, and *@indexp
 * is set to its first index (which may be below the one asked for).
 * Context: takes and drops the RCU read lock.
 * Return: the entry, with *@indexp set to its first index; or NULL, with
 * *@indexp unchanged.
 */
void *xa_find(struct xarray *xa, unsigned long *indexp, unsigned long max,
	      xa_mark_t filter);

/**
 * xa_find_after() - like xa_find(), but strictly after the entry that covers
 * *@indexp (so iteration never returns one multi-index entry twice).
 * Context: takes and drops the RCU read lock.
 */
void *xa_find_after(struct xarray *xa, unsigned long *indexp,
		    unsigned long max, xa_mark_t filter);

#define xa_for_each_range(xa, index, entry, start, last)		\
	for (index = start, entry = xa_find(xa, &index, last, XA_PRESENT); \
	     entry;							\
	     entry = xa_find_after(xa, &index, last, XA_PRESENT))

#define xa_for_each(xa, index, entry) \
	xa_for_each_range(xa, index, entry, 0, ULONG_MAX)

#define xa_for_each_marked(xa, index, entry, mark)			\
	for (index = 0, entry = xa_find(xa, &index, ULONG_MAX, mark);	\
	     entry;							\
	     entry = xa_find_after(xa, &index, ULONG_MAX, mark))

/**
 * xa_set_mark() / xa_clear_mark() - set or clear @mark on the entry covering
 * @index (on all of a multi-index entry). No-op when nothing is there.
 * Context: takes xa_lock.
 */
void xa_set_mark(struct xarray *xa, unsigned long index, xa_mark_t mark);
void xa_clear_mark(struct xarray *xa, unsigned long index, xa_mark_t mark);

/**
 * xa_get_mark() - whether the entry covering @index has @mark.
 * Context: takes and drops the RCU read lock.
 */
bool xa_get_mark(struct xarray *xa, unsigned long index, xa_mark_t mark);

/* xa_marked() - whether any entry in the tree has @mark. Lockless. */
static inline bool xa_marked(const struct xarray *xa, xa_mark_t mark)
{
	return READ_ONCE(((struct xarray *)xa)->xa_marks) & (1U << mark);
}

/**
 * xa_get_order() - order of the entry covering @index (0 if none).
 * Context: takes and drops the RCU read lock.
 */
unsigned int xa_get_order(struct xarray *xa, unsigned long index);

/**
 * xa_split() - split the entry covering @index into entries of @new_order,
 * each holding the same pointer and the same marks. Allocates outside the
 * lock and re-checks under it, retrying if the entry or its order changed.
 * Context: takes xa_lock.
 * Return: 0, -ENOENT if nothing is there, -EINVAL if @new_order is not
 * smaller, -ENOMEM (tree unchanged).
 */
int xa_split(struct xarray *xa, unsigned long index, unsigned int new_order);

/**
 * xa_convert_marks() - on every entry in [@start, @last] that has @from,
 * set @to (fsync's DIRTY -> TOWRITE tagging). Works in batches of
 * @batch entries, dropping xa_lock between them so that writers and readers
 * are not held off for long.
 * Context: takes xa_lock (in batches).
 * Return: the number of entries tagged.
 */
unsigned long xa_convert_marks(struct xarray *xa, unsigned long start,
			       unsigned long last, xa_mark_t from,
			       xa_mark_t to, unsigned int batch);

/* --- Locking --------------------------------------------------------- */

void xa_lock(struct xarray *xa);
void xa_unlock(struct xarray *xa);
/* In debug builds: whether the calling thread holds xa_lock. */
bool xa_lock_held(struct xarray *xa);

/* --- The cursor API (xas) ------------------------------------------------- */

/*
 * An xa_state names a position in a tree (index and order) and remembers
 * where the last walk ended (node and slot), so a sequence of operations
 * under one lock walks once. xa_node is one of:
 *  XAS_RESTART - walk from the top next time;
 *  XAS_BOUNDS  - a search ran past its end; xas_find() returns NULL until
 *                the cursor is moved (xas_set());
 *  XAS_PAUSED  - xas_pause() moved xa_index past the last entry found; the
 *                next xas_find() walks from the top and, like any search
 *                that continues an iteration, never returns an entry that
 *                begins before xa_index (so an iteration never goes back,
 *                even when a larger entry is stored over what it has seen);
 *  NULL        - the walk found no node for the index (empty tree, or the
 *                index lies beyond the tree);
 *  a node      - xa_offset is the canonical slot of the entry found.
 */
#define XAS_RESTART	((struct xa_node *)3UL)
#define XAS_BOUNDS	((struct xa_node *)1UL)
#define XAS_PAUSED	((struct xa_node *)5UL)

struct xa_state {
	struct xarray	*xa;
	unsigned long	xa_index;
	unsigned char	xa_order;	/* order of the range to store */
	unsigned char	xa_offset;
	/* 1 + order of the entry xas_find() last returned; 0: not known. */
	unsigned char	xa_span;
	unsigned char	xa_pad;
	int		xa_error;	/* 0, -ENOMEM, -EBUSY, -EINVAL, -EAGAIN */
	unsigned int	xa_need;	/* nodes the last failed store wanted */
	unsigned int	xa_nr_alloc;	/* nodes on xa_alloc */
	struct xa_node	*xa_node;
	struct xa_node	*xa_alloc;	/* preallocated nodes */
};

#define XA_STATE_ORDER(name, array, index, order)		\
	struct xa_state name = {				\
		.xa = (array),					\
		.xa_index = (index) & ~((1UL << (order)) - 1),	\
		.xa_order = (order),				\
		.xa_node = XAS_RESTART,				\
	}

#define XA_STATE(name, array, index)	XA_STATE_ORDER(name, array, index, 0)

/* Whether the cursor sits on a node (not NULL or one of the states above). */
static inline bool xas_on_node(const struct xa_state *xas)
{
	return (unsigned long)xas->xa_node > 7;
}

static inline int xas_error(const struct xa_state *xas)
{
	return xas->xa_error;
}

static inline void xas_set_err(struct xa_state *xas, int err)
{
	xas->xa_error = err;
}

/* xas_reset() - forget the position; the next operation walks again. */
static inline void xas_reset(struct xa_state *xas)
{
	xas->xa_node = XAS_RESTART;
}

/* xas_set() - move to @index (order 0) and forget the position. */
static inline void xas_set(struct xa_state *xas, unsigned long index)
{
	xas->xa_index = index;
	xas->xa_order = 0;
	xas_reset(xas);
}

/* xas_set_order() - move to the aligned 2^@order range holding @index. */
static inline void xas_set_order(struct xa_state *xas, unsigned long index,
				 unsigned int order)
{
	BUG_ON(order > XA_MAX_ORDER);
	xas->xa_index = order < BITS_PER_LONG ?
			index & ~((1UL << order) - 1) : 0;
	xas->xa_order = order;
	xas_reset(xas);
}

/**
 * xas_retry() - if @entry is the retry entry, reset @xas and return true;
 * the caller then loads again. Readers see the retry entry when the slot
 * they read is being rewritten or its node left the tree.
 */
static inline bool xas_retry(struct xa_state *xas, const void *entry)
{
	if (!xa_is_retry(entry))
		return false;
	xas_reset(xas);
	return true;
}

/**
 * xas_load() - walk to xa_index and return the entry covering it.
 * Leaves the cursor on the entry's canonical slot.
 * Context: RCU read lock or xa_lock.
 * Return: the entry, or NULL. Never an internal entry.
 */
void *xas_load(struct xa_state *xas);

/**
 * xas_reload() - read the slot the cursor is on again, without walking.
 * Used after taking a reference to check the entry did not move (law 1).
 * Context: RCU read lock or xa_lock.
 * Return: the entry now covering xa_index (walking if the cursor was reset).
 */
void *xas_reload(struct xa_state *xas);

/**
 * xas_store() - store @entry over the cursor's range (xa_index, xa_order).
 * Creates the nodes it needs from the preallocated list; if that is too
 * short it sets -ENOMEM and changes nothing. Storing NULL erases the range
 * (the entry that covers xa_index, whatever its order, when xa_order is 0).
 * Context: caller holds xa_lock; never allocates, never sleeps.
 * Return: the entry that covered xa_index (the range's first index), or
 * NULL; on error (see
 * xas_error()) NULL and nothing changed: -ENOMEM, -EBUSY (a larger entry
 * covers the range), -EINVAL (@entry is internal, or the order too large).
 */
void *xas_store(struct xa_state *xas, void *entry);

/**
 * xas_nomem() - if the last store failed for lack of nodes, allocate them.
 * Context: no lock held (it allocates).
 * Return: true if the caller should retry the operation.
 */
bool xas_nomem(struct xa_state *xas);

/**
 * xas_destroy() - free the nodes still preallocated on @xas.
 * Context: no lock held.
 */
void xas_destroy(struct xa_state *xas);

/**
 * xas_find() - next present entry at most @max.
 * On a fresh (or reset) cursor the search starts at xa_index and finds an
 * entry covering it; afterwards (or after xas_pause()) it starts after the
 * entry last returned (all of it, even if it was split since) and returns
 * only entries that begin there or later. xa_index is set to the entry's
 * first index.
 * Context: RCU read lock or xa_lock.
 * Return: the entry or NULL (then the cursor is XAS_BOUNDS).
 */
void *xas_find(struct xa_state *xas, unsigned long max);

/**
 * xas_find_marked() - as xas_find(), for entries with @mark.
 * Context: RCU read lock or xa_lock.
 */
void *xas_find_marked(struct xa_state *xas, unsigned long max, xa_mark_t mark);

#define xas_for_each(xas, entry, max)					\
	for (entry = xas_find(xas, max); entry; entry = xas_find(xas, max))

#define xas_for_each_marked(xas, entry, max, mark)			\
	for (entry = xas_find_marked(xas, max, mark); entry;		\
	     entry = xas_find_marked(xas, max, mark))

/**
 * xas_pause() - make the next xas_find() walk from the top, starting after
 * the current entry, so the caller may drop its lock (or RCU) in between.
 * The cursor becomes XAS_PAUSED (or XAS_BOUNDS if the entry ended the index
 * space).
 */
void xas_pause(struct xa_state *xas);

/**
 * xas_get_order() - order of the entry the cursor is on (after a load).
 * Context: RCU read lock or xa_lock.
 */
unsigned int xas_get_order(struct xa_state *xas);

/**
 * xas_get_mark() / xas_set_mark() / xas_clear_mark() - the entry the cursor
 * is on (loading it first if the cursor was reset); all slots of a
 * multi-index entry together. Setting or clearing propagates to the root.
 * Context: get: RCU read lock or xa_lock; set and clear: xa_lock.
 */
bool xas_get_mark(struct xa_state *xas, xa_mark_t mark);
void xas_set_mark(struct xa_state *xas, xa_mark_t mark);
void xas_clear_mark(struct xa_state *xas, xa_mark_t mark);

/**
 * xas_split_alloc() - preallocate the nodes to split an entry of @order at
 * the cursor's index into entries of the cursor's order (xas_set_order()).
 * Context: no lock held (it allocates).
 * Return: 0 or -ENOMEM (nothing kept).
 */
int xas_split_alloc(struct xa_state *xas, unsigned int order);

/**
 * xas_split() - split @entry of @order, which the caller saw at the cursor's
 * index, into entries of the cursor's order. Each new entry is @entry again
 * and carries @entry's marks; the caller then stores what it wants at each
 * (no allocation needed: the nodes exist). New nodes are filled while
 * private and published one slot at a time, the canonical slot last, so
 * that concurrent readers see the whole old entry or the new ones.
 * Law 5: if the tree no longer holds @entry at @order there, nothing changes
 * and -EAGAIN is returned: the caller drops the lock, frees what it
 * allocated (xas_destroy()) and starts again.
 * Context: caller holds xa_lock; never allocates.
 * Return: 0; -EAGAIN (entry or order changed); -ENOMEM (preallocated for
 * another shape); -EINVAL (the cursor's order is not smaller than @order).
 */
int xas_split(struct xa_state *xas, void *entry, unsigned int order);

/* --- Testing and accounting ---------------------------------------------- */

/* Nodes allocated and not yet freed, across all trees. */
long xa_nodes_live(void);
/*
 * Fail the node allocation after @n more succeed (n < 0: never fail). Only
 * in builds with FOLIOFS_TESTING; elsewhere a no-op.
 */
void xa_fail_alloc_after(long n);
/* Check the invariants above; print and return false when one is broken. */
bool xa_check(struct xarray *xa);
/* Bytes of nodes in @xa (walks the tree; takes xa_lock). */
unsigned long xa_node_bytes(struct xarray *xa);

#endif /* FOLIOFS_XARRAY_H */
