/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * faulty.h - a backing store that fails on command, for tests.
 *
 * faulty_create() wraps a store; the wrapper passes every request through
 * unchanged except those a rule picks, which fail with the rule's errno
 * without reaching the store below: a failed write changes nothing on disk,
 * a failed read leaves the caller's buffer as it was, a failed flush makes
 * nothing durable. The other requests of the same batch run as usual.
 *
 * Rules (several may be armed at once; a request fails if any picks it):
 *  - nth: the Nth request of a kind (read, write, flush) counted from when
 *    the rule was armed fails, once; then the rule disarms itself;
 *  - range: every read or write of that kind that touches a byte range
 *    fails, until cleared.
 * Requests are counted in array order within a batch, so "the 3rd write"
 * is well defined for a test that knows its batches. The counters record
 * every request per kind: how many, how many failed here, how many bytes
 * went through; they outlive faulty_clear() and reset with
 * faulty_reset_counts().
 *
 * Locking:
 *  thread-safe (one mutex, never held across I/O): every function here and
 *  every backing op of the wrapper.
 */
#ifndef FOLIOFS_FAULTY_H
#define FOLIOFS_FAULTY_H

#include <stdint.h>

#include "backing.h"

enum faulty_kind {
	FAULTY_READ,
	FAULTY_WRITE,
	FAULTY_FLUSH,		/* fdatasync and fsync alike */
	FAULTY_NR_KINDS,
};

struct faulty_counts {
	unsigned long	ops[FAULTY_NR_KINDS];	/* requests seen */
	unsigned long	failed[FAULTY_NR_KINDS];	/* failed by a rule */
	uint64_t	bytes[FAULTY_NR_KINDS];	/* passed through, bytes */
};

/**
 * faulty_create() - wrap @lower in a fault injector with no rule armed.
 * @out takes ownership of @lower: closing it closes @lower.
 * Context: may allocate.
 * Return: 0, or -ENOMEM (@lower is left open).
 */
int faulty_create(struct backing *lower, struct backing **out);

/**
 * faulty_fail_nth() - make the @nth request of @kind from now fail once.
 * @nth:	1 for the next one. Replaces an nth rule armed for @kind.
 * @err:	a negative errno, such as -EIO or -ENOSPC.
 * Context: any thread.
 * Return: 0, or -EINVAL (@b is not a fault injector, @nth is 0, @err is
 * not negative).
 */
int faulty_fail_nth(struct backing *b, enum faulty_kind kind,
		    unsigned long nth, int err);

/**
 * faulty_fail_range() - make every @kind request touching [@off, @off + @len)
 * fail with @err until faulty_clear(). Replaces a range rule armed for
 * @kind. @kind is FAULTY_READ or FAULTY_WRITE.
 * Context: any thread.
 * Return: 0, or -EINVAL.
 */
int faulty_fail_range(struct backing *b, enum faulty_kind kind, uint64_t off,
		      uint64_t len, int err);

/**
 * faulty_clear() - disarm every rule. Counters stay.
 * Context: any thread.
 */
void faulty_clear(struct backing *b);

/**
 * faulty_get_counts() - copy the counters into @c.
 * Context: any thread.
 */
void faulty_get_counts(struct backing *b, struct faulty_counts *c);

/**
 * faulty_reset_counts() - zero the counters. Rules stay armed, and an nth
 * rule keeps counting from where it was.
 * Context: any thread.
 */
void faulty_reset_counts(struct backing *b);

#endif /* FOLIOFS_FAULTY_H */
