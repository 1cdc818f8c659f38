/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rcu.c - storage for the ThreadSanitizer token that stands for a grace
 * period (see rcu.h). Empty in other builds.
 */
#include "rcu.h"

#ifdef FOLIOFS_TSAN
char fs_rcu_tsan_token;
#endif
