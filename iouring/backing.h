/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * backing.h - the backing store: where persistent bytes go.
 *
 * A backing store is an array of bytes addressed in 4 KiB blocks: a regular
 * image file or a block device, opened O_DIRECT and driven through io_uring
 * (backing_open()), or a wrapper stacked on another store with the same
 * interface (faulty.h injects errors, crashsim.h records writes to build
 * power-cut images). Every store is a struct backing whose ops table the
 * inline helpers below call, so a layer never knows what it writes through.
 *
 * Requests. I/O moves runs of whole 4 KiB blocks straight between the device
 * and caller memory: no bounce buffer, so @buf must be 4 KiB aligned and
 * @off and @len multiples of 4 KiB, or the request fails with -EINVAL. Every
 * store enforces this, even one opened BACKING_NO_DIRECT, so code tested on
 * tmpfs behaves the same on a disk.
 *
 * Batches. backing_submit() issues an array of requests and returns when
 * every one has completed: the backing keeps up to its ring depth in flight
 * and reaps completions as they come. Within a batch, reads and writes run
 * in any order and may overlap in time (so two writes to the same block in
 * one batch leave either one). A flush is a barrier: it starts after every
 * request before it in the array has completed, and covers every write that
 * completed before it started; the requests after it start once it has
 * completed. A short read or write is resubmitted for its remainder, and
 * -EAGAIN and -EINTR are retried, so a request ends either complete or with
 * a real error.
 *
 * Reads past the end of a regular file read zeroes for the missing part: the
 * image is sparse and may be shorter than the space it describes. Writes
 * past the end extend the file. backing_size() reports st_size (a regular
 * file) or BLKGETSIZE64 (a block device); backing_grow() extends a regular
 * file sparsely with ftruncate().
 *
 * Rings. The io_uring backing gives each thread that does I/O its own ring
 * per store, made on the thread's first request (depth BACKING_RING_DEPTH)
 * and torn down when the thread exits or the store is closed. See backing.c
 * for why. Nothing in this interface names a ring, so a single submission
 * thread could replace the per-thread rings without changing a caller.
 *
 * Registered buffers. backing_register_buffers() records a table of buffers
 * for the store, and a request flagged BACKING_REQ_FIXED names one by index
 * (IORING_OP_READ_FIXED / WRITE_FIXED: the pages stay pinned, saving the
 * kernel a page-table walk and pin per I/O). The kernel registers buffers
 * per ring; the backing keeps the table per store and applies it lazily to
 * each thread's ring before that ring's next batch. The call registers with
 * the calling thread's ring at once, so it returns the kernel's verdict
 * (-ENOMEM, -EFAULT, ...); another thread that cannot register gets that
 * errno in each of its BACKING_REQ_FIXED requests, and plain requests still
 * work. Pinning the memory that is registered, so that it is neither freed
 * nor reused while registered, is the caller's job (DESIGN law 8).
 *
 * Wrappers own what they wrap: backing_close() on a wrapper closes the store
 * below it too.
 *
 * Errors are 0 or -errno throughout.
 *
 * Locking:
 *  thread-safe, may sleep (waits for I/O): backing_submit, backing_read,
 *                    backing_write, backing_fdatasync, backing_fsync,
 *                    backing_size, backing_grow
 *  may sleep; no I/O with BACKING_REQ_FIXED may be in flight on the store
 *  in any thread: backing_register_buffers, backing_unregister_buffers
 *  caller is the last user (no I/O in flight in any thread): backing_close
 *  takes no lock of the caller's; never call with a folio lock held across
 *  a wait you cannot afford (every call here waits for the device).
 */
#ifndef FOLIOFS_BACKING_H
#define FOLIOFS_BACKING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define BACKING_BLOCK_SHIFT	12
#define BACKING_BLOCK_SIZE	(1U << BACKING_BLOCK_SHIFT)
/* The unit a power cut can tear a write into (crashsim.h). */
#define BACKING_SECTOR_SIZE	512U
/* Entries of each per-thread ring: requests one thread keeps in flight. */
#define BACKING_RING_DEPTH	64U
/* Most buffers one store may register (the kernel's own limit). */
#define BACKING_MAX_BUFFERS	(1U << 14)

/* backing_open() flags. */
enum {
	/* Create the file if it does not exist (empty: grow it after). */
	BACKING_CREATE		= 1U << 0,
	BACKING_RDONLY		= 1U << 1,
	/*
	 * Buffered I/O, for tests on filesystems that refuse O_DIRECT (tmpfs
	 * before Linux 6.6). Alignment rules still apply. Never for data that
	 * must survive a power cut: flush still works, but the page cache
	 * sits between the store and the disk.
	 */
	BACKING_NO_DIRECT	= 1U << 2,
	/*
	 * Test hooks for paths real disks rarely take. SHORT_IO issues every
	 * transfer one block at a time, so every multi-block request runs
	 * through the short-transfer resubmission. INJECT_EAGAIN completes the
	 * first attempt of every request with -EAGAIN (without issuing it), so
	 * every request runs through the retry.
	 */
	BACKING_SHORT_IO	= 1U << 8,
	BACKING_INJECT_EAGAIN	= 1U << 9,
};

enum backing_op {
	BACKING_OP_READ,
	BACKING_OP_WRITE,
	/* Data (and the metadata needed to read it back): fdatasync. */
	BACKING_OP_FDATASYNC,
	/* Data and all metadata: fsync. */
	BACKING_OP_FSYNC,
};

/* backing_req flags. */
enum {
	/* @buf lies inside registered buffer @buf_index. */
	BACKING_REQ_FIXED	= 1U << 0,
};

/**
 * struct backing_req - one request of a batch.
 * @op:		what to do.
 * @flags:	BACKING_REQ_*.
 * @buf_index:	with BACKING_REQ_FIXED: index in the registered table.
 * @buf:	caller memory, 4 KiB aligned; unused by a flush. Read into or
 *		written from in place, and must stay put (and, for a write,
 *		unchanged: DESIGN law 9) until backing_submit() returns.
 * @off:	byte offset in the store, a multiple of 4 KiB.
 * @len:	bytes, a positive multiple of 4 KiB.
 * @priv:	the caller's; never touched.
 * @res:	set by the backing: 0 or -errno.
 * @done:	set by the backing: bytes transferred (a read past the end of
 *		file counts the zeroes it filled in). On error, what moved
 *		before it; those bytes may or may not be on the device.
 * @tries:	private to the backing.
 */
struct backing_req {
	enum backing_op	op;
	unsigned int	flags;
	unsigned int	buf_index;
	void		*buf;
	uint64_t	off;
	uint32_t	len;
	void		*priv;
	int		res;
	uint32_t	done;
	unsigned int	tries;
};

struct backing;

/**
 * struct backing_ops - what a store implements. Each member has the
 * contract of the inline helper of the same name below. A wrapper that does
 * not care about single requests may point @read, @write and @flush at
 * backing_generic_read/write/flush(), which build a one-request batch, so
 * that everything funnels through its @submit.
 */
struct backing_ops {
	int	(*submit)(struct backing *b, struct backing_req *reqs,
			  unsigned int nr);
	int	(*read)(struct backing *b, void *buf, uint64_t off,
			uint32_t len);
	int	(*write)(struct backing *b, const void *buf, uint64_t off,
			 uint32_t len);
	int	(*flush)(struct backing *b, bool datasync);
	int	(*size)(struct backing *b, uint64_t *bytes);
	int	(*grow)(struct backing *b, uint64_t bytes);
	int	(*register_buffers)(struct backing *b, const struct iovec *iov,
				    unsigned int nr);
	int	(*unregister_buffers)(struct backing *b);
	void	(*close)(struct backing *b);
};

/* Embedded in each store; wrappers find themselves with container_of(). */
struct backing {
	const struct backing_ops *ops;
};

/**
 * backing_open() - open an image file or block device as a store.
 * @path:	the file or device.
 * @flags:	BACKING_* open flags.
 * @out:	the store, on success.
 *
 * Opens O_DIRECT unless BACKING_NO_DIRECT, and checks with one read that the
 * filesystem really does direct I/O at 4 KiB alignment.
 *
 * Context: may sleep. Makes no ring (threads make theirs on first I/O).
 * Return: 0; -EINVAL if the filesystem refuses O_DIRECT (the caller should
 * say "O_DIRECT not supported on this filesystem", and may retry with
 * BACKING_NO_DIRECT where durability does not matter) or a block device's
 * logical block size does not divide 4 KiB; -ENOTSUP if @path is neither a
 * regular file nor a block device; -ENOMEM; or open()'s errno (-ENOENT,
 * -EACCES, ...).
 */
int backing_open(const char *path, unsigned int flags, struct backing **out);

/**
 * backing_submit() - issue @nr requests and wait for all of them.
 * See the header comment for ordering (flushes are barriers), retries, and
 * reads past the end of file.
 *
 * Context: any thread; may sleep.
 * Return: 0 if every request succeeded, else the first failed request's
 * -errno (in array order); each request's @res and @done say its own
 * outcome. -EINVAL for a misaligned request, -EBADF for a write to a store
 * opened BACKING_RDONLY, -EIO, -ENOSPC, ... from the device, or -ENOMEM if
 * the thread's ring could not be made (then nothing was issued).
 */
static inline int backing_submit(struct backing *b, struct backing_req *reqs,
				 unsigned int nr)
{
	return b->ops->submit(b, reqs, nr);
}

/**
 * backing_read() - read @len bytes at @off into @buf.
 * Context: any thread; may sleep.
 * Return: 0 or -errno, as for backing_submit().
 */
static inline int backing_read(struct backing *b, void *buf, uint64_t off,
			       uint32_t len)
{
	return b->ops->read(b, buf, off, len);
}

/**
 * backing_write() - write @len bytes from @buf at @off.
 * Context: any thread; may sleep.
 * Return: 0 or -errno, as for backing_submit().
 */
static inline int backing_write(struct backing *b, const void *buf,
				uint64_t off, uint32_t len)
{
	return b->ops->write(b, buf, off, len);
}

/**
 * backing_fdatasync() - make every write that has completed durable.
 * Context: any thread; may sleep.
 * Return: 0, or -errno (-EIO: some write since the last flush may be lost).
 */
static inline int backing_fdatasync(struct backing *b)
{
	return b->ops->flush(b, true);
}

/**
 * backing_fsync() - backing_fdatasync(), and the file's metadata too.
 * Context: any thread; may sleep.
 * Return: 0 or -errno.
 */
static inline int backing_fsync(struct backing *b)
{
	return b->ops->flush(b, false);
}

/**
 * backing_size() - the store's size in bytes.
 * Context: any thread; may sleep.
 * Return: 0 (and *@bytes), or -errno from fstat() or ioctl().
 */
static inline int backing_size(struct backing *b, uint64_t *bytes)
{
	return b->ops->size(b, bytes);
}

/**
 * backing_grow() - make the store at least @bytes long (rounded up to 4 KiB).
 * A regular file grows sparsely (ftruncate); it never shrinks. A block
 * device cannot grow. Grows are serialised with each other, but not with
 * writes: a write past the current end racing with a grow may be cut off
 * by its ftruncate, so write only below a size that a grow has returned.
 * Context: any thread; may sleep.
 * Return: 0 (also if it was long enough already); -ENOSPC for a block
 * device shorter than @bytes; -EBADF if opened BACKING_RDONLY; or
 * ftruncate()'s errno (-EFBIG, ...).
 */
static inline int backing_grow(struct backing *b, uint64_t bytes)
{
	return b->ops->grow(b, bytes);
}

/**
 * backing_register_buffers() - set the store's table of registered buffers.
 * @iov:	@nr buffers; each 4 KiB aligned, a multiple of 4 KiB long.
 *		The table is copied; the memory is not.
 * @nr:		1 to BACKING_MAX_BUFFERS.
 *
 * Replaces any table registered before. Takes effect on the calling
 * thread's ring now and on other threads' rings before their next batch
 * (see the header comment).
 *
 * Context: may sleep; no BACKING_REQ_FIXED I/O in flight on the store.
 * Return: 0; -EINVAL (bad alignment or @nr); -ENOMEM; or the kernel's errno
 * for the calling thread's ring (-EFAULT, -ENOMEM for a memlock limit).
 * On error no table is registered.
 */
static inline int backing_register_buffers(struct backing *b,
					   const struct iovec *iov,
					   unsigned int nr)
{
	return b->ops->register_buffers(b, iov, nr);
}

/**
 * backing_unregister_buffers() - drop the table of registered buffers.
 * The calling thread's ring lets go of the pages now; other threads' rings
 * do before their next batch, or when the store is closed.
 * Context: may sleep; no BACKING_REQ_FIXED I/O in flight on the store.
 * Return: 0 (also if none was registered), or -errno.
 */
static inline int backing_unregister_buffers(struct backing *b)
{
	return b->ops->unregister_buffers(b);
}

/**
 * backing_close() - close the store (and, for a wrapper, what it wraps).
 * Does not flush: what was not flushed may be lost in a power cut.
 * Context: no I/O in flight on the store in any thread. May sleep.
 */
static inline void backing_close(struct backing *b)
{
	b->ops->close(b);
}

/**
 * backing_check_req() - 0 if @req is well formed, else -EINVAL.
 * Wrappers call it so that they reject exactly what the backing would.
 * Context: any.
 */
int backing_check_req(const struct backing_req *req);

/**
 * backing_check_buffers() - 0 if @iov[@nr] is a valid buffer table for
 * backing_register_buffers(), else -EINVAL.
 * Context: any.
 */
int backing_check_buffers(const struct iovec *iov, unsigned int nr);

/* One-request batches through ->submit, for ops tables (see backing_ops). */
int backing_generic_read(struct backing *b, void *buf, uint64_t off,
			 uint32_t len);
int backing_generic_write(struct backing *b, const void *buf, uint64_t off,
			  uint32_t len);
int backing_generic_flush(struct backing *b, bool datasync);

static inline bool backing_op_is_flush(enum backing_op op)
{
	return op == BACKING_OP_FDATASYNC || op == BACKING_OP_FSYNC;
}

/**
 * backing_next_segment() - how many requests from @reqs[0] form the next
 * segment of a batch: one flush on its own, or the run of reads and writes
 * before the next flush. Wrappers walk a batch with it to keep the flush
 * barrier (see the header comment).
 * Context: any.
 */
static inline unsigned int backing_next_segment(const struct backing_req *reqs,
						unsigned int nr)
{
	unsigned int i;

	if (nr && backing_op_is_flush(reqs[0].op))
		return 1;
	for (i = 0; i < nr && !backing_op_is_flush(reqs[i].op); i++)
		;
	return i;
}

#endif /* FOLIOFS_BACKING_H */
