/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * stats.c - stripe assignment for struct fs_counter (see stats.h).
 */
#include "stats.h"

__thread unsigned int fs_counter_stripe_tls;
static unsigned int next_stripe;

unsigned int fs_counter_stripe_slow(void)
{
	/* Round robin, so two threads share a stripe only past 16 threads. */
	unsigned int s = __atomic_fetch_add(&next_stripe, 1, __ATOMIC_RELAXED) %
			 FS_COUNTER_STRIPES;

	fs_counter_stripe_tls = s + 1;
	return s;
}
