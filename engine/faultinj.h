/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * faultinj.h - a window of allocations to fail, for tests.
 *
 * An allocator that wants injectable failures keeps one struct fs_fault
 * and asks fs_fault_hit() before each allocation: the allocations numbered
 * from..to-1 (counting from when the window was armed) fail. In builds
 * without FOLIOFS_TESTING fs_fault_hit() is constant false and costs
 * nothing.
 *
 * Locking: none; atomics. Arm it from one thread while nothing allocates,
 * or accept that an allocation racing the arming may fall either side.
 */
#ifndef FOLIOFS_FAULTINJ_H
#define FOLIOFS_FAULTINJ_H

#include <stdbool.h>

struct fs_fault {
	unsigned long	seq;	/* allocations asked about so far */
	unsigned long	from;	/* first to fail */
	unsigned long	to;	/* first not to fail again */
};

/* Let the next @after allocations succeed, then fail @count (0: disarm). */
static inline void fs_fault_arm(struct fs_fault *f, long after, long count)
{
	unsigned long seq = __atomic_load_n(&f->seq, __ATOMIC_RELAXED);

	/* Close the window first so no allocation sees a half-set one. */
	__atomic_store_n(&f->to, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&f->from, seq + after, __ATOMIC_RELAXED);
	__atomic_store_n(&f->to, seq + after + count, __ATOMIC_RELAXED);
}

/* Whether the allocation about to be made must fail. */
static inline bool fs_fault_hit(struct fs_fault *f)
{
#ifdef FOLIOFS_TESTING
	unsigned long seq = __atomic_fetch_add(&f->seq, 1, __ATOMIC_RELAXED);

	return seq >= __atomic_load_n(&f->from, __ATOMIC_RELAXED) &&
	       seq < __atomic_load_n(&f->to, __ATOMIC_RELAXED);
#else
	(void)f;
	return false;
#endif
}

#endif /* FOLIOFS_FAULTINJ_H */
