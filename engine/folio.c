/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * folio.c - folio descriptors, their data, references and the folio lock
 * (see folio.h for the contract).
 *
 * The descriptor pool is a LIFO free list over slabs, under one mutex. It is
 * off the cached-read path: lookups only take and drop references. Slabs are
 * freed only by folio_pool_exit(), which is what makes descriptors type-stable
 * (law 2).
 */
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef FOLIOFS_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "blkstate.h"
#include "faultinj.h"
#include "folio.h"

_Static_assert(FOLIO_NR_FLAGS <= 32,
	       "waited-on flags must sit in the 32-bit futex word");
_Static_assert(FOLIO_MAX_ORDER + PAGE_SHIFT < 8 * sizeof(int),
	       "folio sizes are counted in ints in places");

/* ---- Accounting and fault injection ---------------------------------- */

static long descs_live;
static long bytes_live;
/* Allocations the tests make fail (faultinj.h). */
static struct fs_fault alloc_fault;

long folio_descs_live(void)
{
	return __atomic_load_n(&descs_live, __ATOMIC_RELAXED);
}

long folio_bytes_live(void)
{
	return __atomic_load_n(&bytes_live, __ATOMIC_RELAXED);
}

void folio_fail_alloc(long after, long count)
{
#ifdef FOLIOFS_TESTING
	fs_fault_arm(&alloc_fault, after, count);
#else
	(void)after;
	(void)count;
#endif
}


long folio_nr_pinned;

/* ---- Data ----------------------------------------------------------- */

/* Order of a 2 MiB huge page of 4 KiB pages (x86-64, arm64 with 4K). */
#define HPAGE_ORDER	9
/* Smallest folio that is populated up front (64 KiB). */
#define POPULATE_MIN_ORDER	4
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE	23
#endif

static void *folio_data_alloc(unsigned int order)
{
	size_t size = PAGE_SIZE << order;
	void *data;

	if (fs_fault_hit(&alloc_fault))
		return NULL;
#ifdef FOLIOFS_JEMALLOC
	data = mallocx(size, MALLOCX_ALIGN(size));
#else
	data = aligned_alloc(size, size);
#endif
	if (!data)
		return NULL;
	/*
	 * A 2 MiB folio is exactly one huge page: ask for one, so copies out
	 * of it miss the TLB once instead of 512 times. Only a hint; kernels
	 * with THP off, or memory already backed by small pages, ignore it.
	 */
	if (order >= HPAGE_ORDER)
		madvise(data, size, MADV_HUGEPAGE);
	/*
	 * Fault the pages in with one call instead of one exception per
	 * 4 KiB page on first touch: on virtual machines each exception is
	 * expensive (measured: 1 GiB of new 1 MiB folios filled in 6.1 s
	 * with per-page faults, see the note in engine/README.md). Memory
	 * jemalloc hands back for reuse is still mapped, and the call is a
	 * cheap page-table walk then. Kernels before 5.14 refuse the advice
	 * with EINVAL, and the pages fault in as before.
	 */
	if (order >= POPULATE_MIN_ORDER)
		madvise(data, size, MADV_POPULATE_WRITE);
	__atomic_add_fetch(&bytes_live, (long)size, __ATOMIC_RELAXED);
	return data;
}

static void folio_data_free(void *data, unsigned int order)
{
	size_t size = PAGE_SIZE << order;

#ifdef FOLIOFS_JEMALLOC
	/* Sized free: the same size and alignment as the mallocx above. */
	sdallocx(data, size, MALLOCX_ALIGN(size));
#else
	free(data);
#endif
	__atomic_sub_fetch(&bytes_live, (long)size, __ATOMIC_RELAXED);
}

/* ---- Descriptor pool ------------------------------------------------ */

/* About 4.5 KiB per slab. */
#define FOLIO_SLAB_DESCS	64

struct folio_slab {
	struct folio_slab	*next;
	struct folio		descs[FOLIO_SLAB_DESCS];
};

static struct {
	pthread_mutex_t		lock;
	/* Free descriptors, linked through next_free. Under lock. */
	struct folio		*free;
	/* Every slab, for folio_pool_exit(). Under lock. */
	struct folio_slab	*slabs;
	/* Descriptors in slabs. Written under lock; read lock-free. */
	long			nr_descs;
} pool = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

long folio_pool_descs(void)
{
	return __atomic_load_n(&pool.nr_descs, __ATOMIC_RELAXED);
}

/*
 * Put a new slab's descriptors on the free list. They start with refcount 0
 * (calloc), so a try_get on one fails like on any free descriptor.
 */
static void pool_add_slab_locked(struct folio_slab *slab)
{
	int i;

	for (i = FOLIO_SLAB_DESCS - 1; i >= 0; i--) {
		slab->descs[i].next_free = pool.free;
		pool.free = &slab->descs[i];
	}
	slab->next = pool.slabs;
	pool.slabs = slab;
	__atomic_store_n(&pool.nr_descs, pool.nr_descs + FOLIO_SLAB_DESCS,
			 __ATOMIC_RELAXED);
}

static struct folio *pool_get(void)
{
	struct folio *folio;

	pthread_mutex_lock(&pool.lock);
	while (!pool.free) {
		struct folio_slab *slab;

		/* Allocate with the lock dropped, then look again: another
		 * thread may have refilled the list meanwhile, and then our
		 * slab just joins the pool. */
		pthread_mutex_unlock(&pool.lock);
		slab = calloc(1, sizeof(*slab));
		if (!slab)
			return NULL;
		pthread_mutex_lock(&pool.lock);
		pool_add_slab_locked(slab);
	}
	folio = pool.free;
	pool.free = folio->next_free;
	__atomic_add_fetch(&descs_live, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&pool.lock);
	return folio;
}

static void pool_put(struct folio *folio)
{
	pthread_mutex_lock(&pool.lock);
	folio->next_free = pool.free;
	pool.free = folio;
	__atomic_sub_fetch(&descs_live, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&pool.lock);
}

int folio_pool_exit(void)
{
	struct folio_slab *slab, *next;
	int ret = 0;

	/* Let every queued descriptor come home first. */
	fs_rcu_barrier();
	pthread_mutex_lock(&pool.lock);
	if (WARN_ON(folio_descs_live() != 0)) {
		ret = -EBUSY;
		goto out_unlock;
	}
	for (slab = pool.slabs; slab; slab = next) {
		next = slab->next;
		free(slab);
	}
	pool.slabs = NULL;
	pool.free = NULL;
	__atomic_store_n(&pool.nr_descs, 0, __ATOMIC_RELAXED);
out_unlock:
	pthread_mutex_unlock(&pool.lock);
	return ret;
}

/* ---- Allocation and the last put ------------------------------------ */

/* Make a descriptor from the pool into a folio of @order over @data. */
static void folio_init(struct folio *folio, void *data, unsigned int order,
		       struct folio *owner)
{

	/*
	 * A late folio_try_get() may be looking at this descriptor (found
	 * without RCU, see folio.h); it reads only the refcount, which is
	 * still 0, until the release store below hands it the rest.
	 */
	__atomic_store_n(&folio->flags, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&folio->pincount, 0, __ATOMIC_RELAXED);
	folio->index = 0;
	WRITE_ONCE(folio->mapping, NULL);
	folio->data = data;
	folio->owner = owner;
	WRITE_ONCE(folio->private, NULL);
	CDS_INIT_LIST_HEAD(&folio->lru);
	folio->order = order;
	folio->blkbits = PAGE_SHIFT;
	/* Pairs with the acquire in folio_try_get(). */
	__atomic_store_n(&folio->refcount, 1, __ATOMIC_RELEASE);
}

struct folio *folio_alloc(unsigned int order)
{
	struct folio *folio;
	void *data;

	if (WARN_ON(order > FOLIO_MAX_ORDER))
		return NULL;
	data = folio_data_alloc(order);
	if (!data)
		return NULL;
	folio = pool_get();
	if (!folio)
		goto out_free_data;
	folio_init(folio, data, order, NULL);
	return folio;

out_free_data:
	folio_data_free(data, order);
	return NULL;
}

struct folio *folio_alloc_piece(struct folio *parent, unsigned long page_off,
				unsigned int order)
{
	struct folio *owner = folio_data_owner(parent);
	struct folio *folio;

	FOLIO_BUG_ON(order >= parent->order, parent);
	FOLIO_BUG_ON(page_off & ((1UL << order) - 1), parent);
	FOLIO_BUG_ON(page_off + (1UL << order) > folio_nr_pages(parent), parent);
	folio = pool_get();
	if (!folio)
		return NULL;
	/* The piece keeps the allocation alive until its own last put. */
	folio_get(owner);
	folio_init(folio, (char *)parent->data + (page_off << PAGE_SHIFT), order,
		   owner);
	folio->blkbits = parent->blkbits;
	return folio;
}

static void folio_rcu_free(struct rcu_head *head)
{
	/* Pairs with the release in __folio_free() and with every
	 * fs_rcu_read_unlock() under TSan: the grace period's edge. */
	fs_rcu_tsan_acquire();
	pool_put(container_of(head, struct folio, rcu));
}

static void __folio_free(struct folio *folio, unsigned int order)
{
	struct folio *owner;
	unsigned long bad = (1UL << FOLIO_LOCKED) | (1UL << FOLIO_WRITEBACK) |
			    (1UL << FOLIO_LRU);

	FOLIO_BUG_ON(folio->order != order, folio);
	FOLIO_BUG_ON(folio_pin_count(folio) != 0, folio);
	FOLIO_BUG_ON(folio_mapping(folio) != NULL, folio);
	/*
	 * A folio that left its page cache while pinned kept its block state
	 * (law 8); nobody can use it any more.
	 */
	blkstate_free_dead(folio);
	FOLIO_BUG_ON(folio_flags(folio) & bad, folio);

	owner = folio->owner;
	if (!owner)
		folio_data_free(folio->data, order);
	folio->data = NULL;
	folio->owner = NULL;
	/*
	 * TSan cannot see liburcu hand the callback over to its worker; this
	 * release (with the callback's acquire) stands for that hand-over.
	 */
	fs_rcu_tsan_release();
	fs_call_rcu(&folio->rcu, folio_rcu_free);
	/* A piece of a split folio gives back its share of the data. */
	if (owner)
		folio_put(owner);
}

void folio_put(struct folio *folio)
{
	/*
	 * Law 2: the order is read before the decrement. Once a decrement
	 * that is not the last has landed, the other holders may free the
	 * folio and the pool may hand the descriptor to someone else, so
	 * nothing read afterwards is ours; read first, and use it only if
	 * ours was the last reference.
	 */
	unsigned int order = folio->order;
	int old;

	/* Release: our uses of the folio happen before its free. Acquire
	 * (when last): everyone else's uses happen before ours. */
	old = __atomic_fetch_sub(&folio->refcount, 1, __ATOMIC_ACQ_REL);
	if (likely(old > 1))
		return;
	FOLIO_BUG_ON(old != 1, folio);
	__folio_free(folio, order);
}

/* ---- Waiting: futex on the low 32 bits of flags -------------------------- */

static uint32_t *folio_futex_word(struct folio *folio)
{
	uint32_t *word = (uint32_t *)&folio->flags;

	/* The low half of a 64-bit word is its second half on big-endian. */
	if (sizeof(folio->flags) == 8 &&
	    __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
		word++;
	return word;
}

static void folio_futex_wait(struct folio *folio, unsigned long seen)
{
	/*
	 * Sleeps only if the word still reads @seen; returns at once (EAGAIN)
	 * if any flag changed since, or on a signal (EINTR), or on a wake.
	 * The caller looks again in each case.
	 */
	syscall(SYS_futex, folio_futex_word(folio), FUTEX_WAIT_PRIVATE,
		(uint32_t)seen, NULL, NULL, 0);
}

static void folio_futex_wake_all(struct folio *folio)
{
	syscall(SYS_futex, folio_futex_word(folio), FUTEX_WAKE_PRIVATE,
		INT_MAX, NULL, NULL, 0);
}

/*
 * Sleep until @bit is clear. The caller holds a reference, so the descriptor
 * stays this folio while we sleep on it.
 *
 * No lost wake-up: FOLIO_WAITERS is set (atomic OR) before the waiter's last
 * look at @bit, and it sleeps only if the futex word still holds that look,
 * with @bit and WAITERS set. The clearer clears @bit and WAITERS in one
 * atomic op and wakes if WAITERS was set. Either its op comes before our OR
 * (then our OR returns @bit clear and we do not sleep), or after it (then it
 * saw WAITERS and wakes us, or changed the word under our FUTEX_WAIT, which
 * then does not sleep).
 */
static void folio_wait_bit(struct folio *folio, enum folio_flag bit)
{
	unsigned long mask = 1UL << bit;
	unsigned long seen;

	for (;;) {
		if (!(folio_flags(folio) & mask))
			return;
		/* Acquire on the path that returns: pairs with the release
		 * that cleared @bit. */
		seen = __atomic_fetch_or(&folio->flags,
					 1UL << FOLIO_WAITERS,
					 __ATOMIC_ACQ_REL) |
		       (1UL << FOLIO_WAITERS);
		if (!(seen & mask))
			return;
		folio_futex_wait(folio, seen);
	}
}

void __folio_lock_slow(struct folio *folio)
{
	unsigned long seen;

	for (;;) {
		/* Acquire pairs with folio_unlock()'s release. */
		seen = __atomic_fetch_or(&folio->flags,
					 1UL << FOLIO_WAITERS,
					 __ATOMIC_ACQUIRE) |
		       (1UL << FOLIO_WAITERS);
		if (!(seen & (1UL << FOLIO_LOCKED))) {
			if (folio_trylock(folio))
				return;
			continue;
		}
		folio_futex_wait(folio, seen);
		if (folio_trylock(folio))
			return;
	}
}

void folio_unlock(struct folio *folio)
{
	unsigned long old;

	/* Release pairs with the lockers' acquire. WAITERS goes in the same
	 * op: every waiter is woken and sets it again if it sleeps again. */
	old = __atomic_fetch_and(&folio->flags,
				 ~((1UL << FOLIO_LOCKED) |
				   (1UL << FOLIO_WAITERS)),
				 __ATOMIC_RELEASE);
	FOLIO_BUG_ON(!(old & (1UL << FOLIO_LOCKED)), folio);
	if (old & (1UL << FOLIO_WAITERS))
		folio_futex_wake_all(folio);
}

void folio_wait_locked(struct folio *folio)
{
	folio_wait_bit(folio, FOLIO_LOCKED);
}

void folio_start_writeback(struct folio *folio)
{
	unsigned long old;

	FOLIO_BUG_ON(!folio_test_locked(folio), folio);
	old = __atomic_fetch_or(&folio->flags, 1UL << FOLIO_WRITEBACK,
				__ATOMIC_ACQ_REL);
	FOLIO_BUG_ON(old & (1UL << FOLIO_WRITEBACK), folio);
}

void folio_end_writeback(struct folio *folio)
{
	unsigned long old;

	/* Release pairs with folio_wait_bit()'s acquire: a waiter that
	 * returns sees what the I/O completion did. */
	old = __atomic_fetch_and(&folio->flags,
				 ~((1UL << FOLIO_WRITEBACK) |
				   (1UL << FOLIO_WAITERS)),
				 __ATOMIC_RELEASE);
	FOLIO_BUG_ON(!(old & (1UL << FOLIO_WRITEBACK)), folio);
	if (old & (1UL << FOLIO_WAITERS))
		folio_futex_wake_all(folio);
}

void folio_wait_writeback(struct folio *folio)
{
	folio_wait_bit(folio, FOLIO_WRITEBACK);
}

/* ---- Debugging ---------------------------------------------------------- */

void folio_dump(const struct folio *folio, const char *reason)
{
	fprintf(stderr,
		"foliofs: folio %p: %s\n"
		"  refcount %d pincount %d order %u blkbits %u index %lu\n"
		"  flags %#lx mapping %p data %p private %p\n",
		(const void *)folio, reason, folio_ref_count(folio),
		folio_pin_count(folio), folio->order, folio->blkbits,
		folio->index, folio_flags(folio), (void *)folio_mapping(folio),
		folio->data, (void *)READ_ONCE(((struct folio *)folio)->private));
}
