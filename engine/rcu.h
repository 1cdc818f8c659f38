/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rcu.h - the one place the engine names its RCU flavour.
 *
 * foliofs uses liburcu's "memb" flavour. It is the safe choice for a library:
 * read-side critical sections are a per-thread counter update with no memory
 * barrier (the membarrier(2) syscall makes the grace-period side pay
 * instead), it takes no signal the embedding program might own (the "signal"
 * flavour does), and unlike QSBR it does not ask every registered thread to
 * announce quiescent states. Threads that read must still be registered
 * (fs_rcu_register_thread), which the public API does for its callers.
 *
 * Pointer publication does not use liburcu's rcu_dereference and
 * rcu_assign_pointer: the engine uses C11 acquire loads and release stores
 * on the slot itself (xarray.c), which ThreadSanitizer understands and which
 * cost nothing extra on x86-64.
 *
 * ThreadSanitizer cannot see the ordering a grace period gives, because it
 * comes from membarrier(2) inside an uninstrumented library. Under TSan the
 * wrappers below add the edge by hand: every read-side unlock and every
 * fs_call_rcu() releases a token that every deferred callback acquires
 * before it frees memory, which is exactly the happens-before relation a
 * grace period guarantees.
 *
 * Context: fs_rcu_read_lock(), fs_rcu_read_unlock() and fs_call_rcu() need a
 * thread registered with urcu. fs_rcu_barrier() must not be called from an
 * RCU callback or inside a read-side critical section.
 */
#ifndef FOLIOFS_RCU_H
#define FOLIOFS_RCU_H

#if defined(__SANITIZE_THREAD__)
#define FOLIOFS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FOLIOFS_TSAN 1
#endif
#endif

/*
 * Inline the read-side fast path, except under TSan: liburcu's inline
 * read_unlock uses plain accesses that only its grace-period side orders,
 * so instrumenting them reports races that are not there. Called out of
 * line, they run inside the uninstrumented library.
 */
#if !defined(_LGPL_SOURCE) && !defined(FOLIOFS_TSAN)
#define _LGPL_SOURCE
#endif
#include <stdbool.h>
#include <urcu/urcu-memb.h>
#include <urcu/call-rcu.h>

#ifdef FOLIOFS_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char fs_rcu_tsan_token;
#define fs_rcu_tsan_release()	__tsan_release(&fs_rcu_tsan_token)
#define fs_rcu_tsan_acquire()	__tsan_acquire(&fs_rcu_tsan_token)
#else
#define fs_rcu_tsan_release()	do { } while (0)
#define fs_rcu_tsan_acquire()	do { } while (0)
#endif

static inline void fs_rcu_read_lock(void)
{
	urcu_memb_read_lock();
}

static inline void fs_rcu_read_unlock(void)
{
	fs_rcu_tsan_release();
	urcu_memb_read_unlock();
}

/* Whether this thread is registered (by any of the calls below). */
extern __thread bool fs_rcu_registered;

/* Register the calling thread; a registered thread is left as it is. */
static inline void fs_rcu_register_thread(void)
{
	if (fs_rcu_registered)
		return;
	urcu_memb_register_thread();
	fs_rcu_registered = true;
}

static inline void fs_rcu_unregister_thread(void)
{
	if (!fs_rcu_registered)
		return;
	urcu_memb_unregister_thread();
	fs_rcu_registered = false;
}

/*
 * fs_call_rcu() - run @func(@head) after a grace period.
 * The callback runs on liburcu's call_rcu worker thread; it must not sleep
 * for long and must begin with fs_rcu_tsan_acquire() if it frees memory that
 * readers touched (fs_rcu_free_cb does).
 */
static inline void fs_call_rcu(struct rcu_head *head,
			       void (*func)(struct rcu_head *head))
{
	/* The caller's last writes to the object happen before its free. */
	fs_rcu_tsan_release();
	urcu_memb_call_rcu(head, func);
}

static inline void fs_rcu_barrier(void)
{
	urcu_memb_barrier();
}

static inline void fs_synchronize_rcu(void)
{
	urcu_memb_synchronize_rcu();
	fs_rcu_tsan_acquire();
}

#endif /* FOLIOFS_RCU_H */
