/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * foliofs.c - the public API edge: where -errno turns into the documented
 * return convention and threads are registered with RCU.
 */
#include <stdbool.h>

#include "foliofs.h"
#include "rcu.h"

#define STR_(x)	#x
#define STR(x)	STR_(x)

const char *foliofs_version(void)
{
	return STR(FOLIOFS_VERSION_MAJOR) "." STR(FOLIOFS_VERSION_MINOR) "."
	       STR(FOLIOFS_VERSION_PATCH);
}

int foliofs_thread_init(void)
{
	fs_rcu_register_thread();
	return 0;
}

void foliofs_thread_exit(void)
{
	fs_rcu_unregister_thread();
}
