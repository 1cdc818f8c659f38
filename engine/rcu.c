/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rcu.c - ThreadSanitizer support for the RCU wrappers (see rcu.h). Empty
 * in other builds.
 */
#include "rcu.h"

__thread bool fs_rcu_registered;

#ifdef FOLIOFS_TSAN
char fs_rcu_tsan_token;

/*
 * liburcu is not instrumented: urcu_memb_barrier() callocs a completion
 * that its call_rcu thread frees, ordered by futexes TSan cannot see.
 * Ignore allocator calls made from inside liburcu; engine callbacks that
 * free nodes, descriptors and blkstates are ours, instrumented, and still
 * checked (rcu.h adds their edges). TSan looks this hook up by name in the
 * program, so it is exported.
 */
__attribute__((visibility("default")))
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
	return "called_from_lib:liburcu-memb.so\n";
}
#endif
