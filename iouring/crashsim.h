/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * crashsim.h - a backing store that remembers enough to fake a power cut.
 *
 * crashsim_create() wraps a store and snapshots a base image. The wrapper
 * passes all I/O through, and records, in the order they complete, every
 * write (its offset and a copy of its data) and every flush. From the record
 * it builds, on demand, the image a power cut would leave behind at any
 * point of the run:
 *
 *  - the base: the snapshot taken by crashsim_create();
 *  - plus every write that completed with 0 before the last flush that
 *    completed with 0 was issued: that flush made it durable;
 *  - plus, for every other write recorded before the cut (completed after
 *    that flush was issued, or failed, whenever), what @mode says: dropped,
 *    applied, or torn (the first k of its n 512-byte sectors applied,
 *    0 < k < n), chosen by a PRNG seeded with @seed.
 * Writes are laid down in record order, so a later write to a block wins
 * over an earlier one when both are applied. Nothing else ever reaches the
 * image: every byte comes from the base or from a recorded write at that
 * offset.
 *
 * Ops are numbered from 0 in record order: writes and flushes, whether they
 * succeeded or not; reads are not recorded. A cut "at n" keeps ops 0..n-1,
 * so n runs from 0 (the base) to crashsim_points() (everything so far), and
 * a test can enumerate every crash point of a scripted workload.
 *
 * What a flush covers. A flush covers the writes recorded before it was
 * issued (the record's @cover), not the ones recorded before it completed:
 * a write that completes while a flush is in flight is not made durable by
 * it. Within one batch, a flush covers every request before it in the
 * array (backing.h: a flush is a barrier).
 *
 * A failed write may have reached the medium in part, so it is never
 * certain, even under a later flush; a failed flush makes nothing certain.
 *
 * Memory: each recorded write keeps a copy of its data until the simulator
 * is closed. The base snapshot lives in an anonymous memory file (only its
 * data extents: a sparse base stays sparse). This is a test tool.
 *
 * Locking:
 *  thread-safe (one mutex, never held across I/O below): the backing ops of
 *  the wrapper, crashsim_points, crashsim_op, crashsim_make_image,
 *  crashsim_make_image_at (which hold the mutex while they write the image,
 *  so I/O through the simulator waits for them).
 */
#ifndef FOLIOFS_CRASHSIM_H
#define FOLIOFS_CRASHSIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backing.h"

enum crashsim_mode {
	/* Every uncertain write is lost: the image the DESIGN promise names. */
	CRASHSIM_DROP,
	/* Every uncertain write that succeeded lands (as after kill -9). */
	CRASHSIM_APPLY,
	/* Each uncertain write lands whole or is lost. */
	CRASHSIM_RANDOM,
	/* Each uncertain write lands whole, is lost, or is torn. */
	CRASHSIM_TORN,
};

enum crashsim_op_kind {
	CRASHSIM_WRITE,
	CRASHSIM_FLUSH,
};

/* What op number i was (crashsim_op()). */
struct crashsim_op_info {
	enum crashsim_op_kind	kind;
	int			res;	/* 0 or -errno, as the store returned */
	uint64_t		off;	/* write: bytes */
	uint32_t		len;	/* write: bytes */
	const void		*data;	/* write: the recorded copy */
	size_t			cover;	/* flush: ops before it was issued */
};

/**
 * crashsim_create() - wrap @lower in a crash simulator.
 * @lower:	the store to pass I/O to; @out takes ownership (closing the
 *		simulator closes it).
 * @base_fd:	an fd from which to read the base image, normally the file
 *		@lower writes to, opened for reading; or -1 for an empty
 *		base (all zeroes). Read now, at offsets 0 to its size; not
 *		kept.
 * @out:	the simulator, on success.
 * Context: may sleep; allocates.
 * Return: 0; -ENOMEM; or the errno of reading @base_fd or of making the
 * memory file. On error @lower is left open.
 */
int crashsim_create(struct backing *lower, int base_fd, struct backing **out);

/**
 * crashsim_points() - ops recorded so far: the largest cut.
 * Context: any thread.
 * Return: the count (0 if @sim is not a simulator).
 */
size_t crashsim_points(struct backing *sim);

/**
 * crashsim_op() - describe op @i.
 * @info->data points into the record, valid until @sim is closed.
 * Context: any thread.
 * Return: 0, or -EINVAL if @i >= crashsim_points() or @sim is not one.
 */
int crashsim_op(struct backing *sim, size_t i, struct crashsim_op_info *info);

/**
 * crashsim_make_image_at() - write into @out_fd the image a power cut would
 * leave if it struck right after op @n - 1 completed.
 * @n:		0 .. crashsim_points().
 * @seed:	picks the fate of each uncertain write (same seed, same @n,
 *		same @mode: same image).
 * @out_fd:	a file opened for writing; truncated, then filled. Its size
 *		is the base's, or the end of the last write applied beyond it.
 * Context: any thread; may sleep.
 * Return: 0; -EINVAL (@n too large, bad @mode, not a simulator); or -errno
 * from writing @out_fd (-ENOSPC, ...).
 */
int crashsim_make_image_at(struct backing *sim, size_t n, uint64_t seed,
			   enum crashsim_mode mode, int out_fd);

/**
 * crashsim_make_image() - crashsim_make_image_at() for a cut now.
 * Context, Return: as crashsim_make_image_at().
 */
int crashsim_make_image(struct backing *sim, uint64_t seed,
			enum crashsim_mode mode, int out_fd);

#endif /* FOLIOFS_CRASHSIM_H */
