/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * compiler.h - small helpers every engine file uses: branch hints, error
 * pointers, and the invariant checks (WARN_ON, BUG_ON) that run in debug
 * builds.
 *
 * Error pointers encode -errno in the top 4095 values of the address space,
 * as the kernel does: no valid object lives there, so one pointer return can
 * carry either a result or an errno.
 *
 * FOLIOFS_DEBUG (set by meson for debug and test builds) turns the checks on.
 * In release builds WARN_ON still evaluates its condition (it is often used
 * in an if) but prints nothing, and BUG_ON compiles away.
 */
#ifndef FOLIOFS_COMPILER_H
#define FOLIOFS_COMPILER_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)

#define BITS_PER_LONG	(8 * (int)sizeof(long))
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define DIV_ROUND_UP(n, d)	(((n) + (d) - 1) / (d))

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - __builtin_offsetof(type, member)))

#define MAX_ERRNO	4095

static inline void *ERR_PTR(long error)
{
	return (void *)error;
}

static inline long PTR_ERR(const void *ptr)
{
	return (long)ptr;
}

static inline bool IS_ERR(const void *ptr)
{
	return unlikely((unsigned long)ptr >= (unsigned long)-MAX_ERRNO);
}

static inline bool IS_ERR_OR_NULL(const void *ptr)
{
	return !ptr || IS_ERR(ptr);
}

#ifdef FOLIOFS_DEBUG
#define WARN_ON(cond) ({						\
	bool __w = !!(cond);						\
	if (unlikely(__w))						\
		fprintf(stderr, "foliofs: WARNING at %s:%d %s(): %s\n",	\
			__FILE__, __LINE__, __func__, #cond);		\
	__w;								\
})
#define BUG_ON(cond) do {						\
	if (unlikely(cond)) {						\
		fprintf(stderr, "foliofs: BUG at %s:%d %s(): %s\n",	\
			__FILE__, __LINE__, __func__, #cond);		\
		abort();						\
	}								\
} while (0)
#else
#define WARN_ON(cond)	({ bool __w = !!(cond); unlikely(__w); })
#define BUG_ON(cond)	do { (void)sizeof(cond); } while (0)
#endif

/*
 * Plain-memory accesses to fields that lock-free readers also see. They are
 * atomics so that ThreadSanitizer can see them, and so that the compiler
 * cannot tear or re-read them; on x86-64 each compiles to a plain mov.
 */
#define READ_ONCE(x)		__atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v)	__atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define load_acquire(p)		__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define store_release(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)

#endif /* FOLIOFS_COMPILER_H */
