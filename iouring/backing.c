/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * backing.c - the io_uring backing store over an image file or block device.
 *
 * Ring ownership: one ring per (thread, store), made lazily on the thread's
 * first request and kept until the thread exits or the store closes. Why:
 *  - a ring's submission queue is single-producer; a ring shared between
 *    threads needs a lock around get_sqe..submit and a way to hand each
 *    completion to the thread that waits for it. A ring of one's own needs
 *    neither, and lets the kernel skip its own checks
 *    (IORING_SETUP_SINGLE_ISSUER) and run completion work only when the
 *    owner waits (IORING_SETUP_DEFER_TASKRUN);
 *  - per store rather than per thread, because the store's fd is registered
 *    as fixed file 0 and its buffer table (backing.h) is registered in the
 *    ring, and two stores cannot both own those slots;
 *  - the depth (BACKING_RING_DEPTH, 64) bounds what one thread keeps in
 *    flight; a larger batch is fed through it as completions free slots.
 * The cost is a ring (two small mappings and an fd) per thread that did I/O
 * on a store; the engine has a handful of I/O threads, not thousands. If
 * that changes, a submission thread that owns one ring and takes batches
 * from a queue can replace bring_get() without changing backing.h.
 *
 * Finding the ring: a thread looks its ring up in a small thread-local cache
 * keyed by the store's id (ids are never reused, so a cache entry of a
 * closed store can never match again and is never dereferenced); on a miss
 * it searches the store's ring list under ring_lock, or makes a ring. Rings
 * are linked both into their store's list and into their thread's list, so
 * backing_close() can free every ring of a store and a thread's exit (the
 * destructor of thread_key) can free every ring of a thread. ring_lock
 * serialises those two, so a ring is freed exactly once; it is never taken
 * on the I/O path once the thread has its ring cached.
 *
 * Registered buffers: the store keeps the table and a generation number; a
 * ring records the generation it applied and re-registers (in its owner
 * thread, as IORING_SETUP_SINGLE_ISSUER requires) before a batch when they
 * differ.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "compiler.h"
#include "backing.h"

/*
 * -EAGAIN/-EINTR retries of one request before it fails with that errno;
 * after the first few, each waits a little longer (bf_backoff()).
 */
#define BACKING_MAX_TRIES	100U
#define BACKING_BACKOFF_AFTER	4U

/* Slots in each thread's ring cache. */
#define RING_CACHE_SLOTS	4U

struct bthread;

/* One ring: used only by its owner thread; freed by its exit or by close. */
struct bring {
	struct io_uring		ring;
	struct backing_file	*bf;	/* fixed */
	struct bthread		*thr;	/* fixed: the owner */
	/* Links in bf->rings and thr->rings; protected by ring_lock. */
	struct bring		*bf_next, **bf_pprev;
	struct bring		*thr_next, **thr_pprev;
	/* The rest is the owner thread's alone. */
	uint64_t		reg_gen;	/* buffer table generation applied */
	bool			bufs_registered;
	bool			fixed_file;	/* bf->fd is fixed file 0 */
	bool			broken;		/* io_uring_enter failed */
};

/* A thread's rings; the value of thread_key, freed by bthread_exit(). */
struct bthread {
	struct bring		*rings;		/* ring_lock */
};

struct backing_file {
	struct backing		b;
	int			fd;		/* fixed */
	unsigned int		flags;		/* fixed: BACKING_* */
	bool			blkdev;		/* fixed */
	uint64_t		id;		/* fixed; never reused */
	struct bring		*rings;		/* ring_lock */
	/* Serialises bf_grow(): its size check and ftruncate are two steps. */
	pthread_mutex_t		grow_lock;
	/*
	 * Registered-buffer table; protected by reg_lock. reg_gen changes with
	 * the table and is also read without the lock, as a hint that is
	 * confirmed under it (bring_sync_buffers()).
	 */
	pthread_mutex_t		reg_lock;
	struct iovec		*bufs;
	unsigned int		nr_bufs;
	uint64_t		reg_gen;
};

static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t thread_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t thread_key;
static int thread_key_err;
static uint64_t next_store_id = 1;

static __thread struct {
	uint64_t	id;	/* 0: empty */
	struct bring	*br;
} ring_cache[RING_CACHE_SLOTS];
static __thread unsigned int ring_cache_next;

static inline struct backing_file *to_bf(struct backing *b)
{
	return container_of(b, struct backing_file, b);
}

/* ---- Rings --------------------------------------------------------------- */

/* Caller holds ring_lock. */
static void bring_unlink(struct bring *br)
{
	if (br->bf_next)
		br->bf_next->bf_pprev = br->bf_pprev;
	*br->bf_pprev = br->bf_next;
	if (br->thr_next)
		br->thr_next->thr_pprev = br->thr_pprev;
	*br->thr_pprev = br->thr_next;
}

/* Caller holds ring_lock. */
static void bring_link(struct bring *br)
{
	struct backing_file *bf = br->bf;
	struct bthread *thr = br->thr;

	br->bf_next = bf->rings;
	if (bf->rings)
		bf->rings->bf_pprev = &br->bf_next;
	br->bf_pprev = &bf->rings;
	bf->rings = br;

	br->thr_next = thr->rings;
	if (thr->rings)
		thr->rings->thr_pprev = &br->thr_next;
	br->thr_pprev = &thr->rings;
	thr->rings = br;
}

/*
 * Free a ring that is no longer linked. io_uring_queue_exit() is safe from
 * any thread: it unmaps and closes; the kernel drops the registrations.
 */
static void bring_free(struct bring *br)
{
	io_uring_queue_exit(&br->ring);
	free(br);
}

/* Destructor of thread_key: the thread is exiting; free its rings. */
static void bthread_exit(void *arg)
{
	struct bthread *thr = arg;
	struct bring *list = NULL, *br;

	pthread_mutex_lock(&ring_lock);
	while ((br = thr->rings)) {
		bring_unlink(br);
		br->bf_next = list;
		list = br;
	}
	pthread_mutex_unlock(&ring_lock);

	while ((br = list)) {
		list = br->bf_next;
		bring_free(br);
	}
	free(thr);
}

static void thread_key_init(void)
{
	thread_key_err = -pthread_key_create(&thread_key, bthread_exit);
}

static struct bthread *bthread_get(void)
{
	struct bthread *thr;

	pthread_once(&thread_key_once, thread_key_init);
	if (thread_key_err)
		return ERR_PTR(thread_key_err);
	thr = pthread_getspecific(thread_key);
	if (thr)
		return thr;
	thr = calloc(1, sizeof(*thr));
	if (!thr)
		return ERR_PTR(-ENOMEM);
	if (pthread_setspecific(thread_key, thr)) {
		free(thr);
		return ERR_PTR(-ENOMEM);
	}
	return thr;
}

static void ring_cache_drop(struct bring *br)
{
	unsigned int i;

	for (i = 0; i < RING_CACHE_SLOTS; i++)
		if (ring_cache[i].br == br)
			ring_cache[i].id = 0;
}

static struct bring *bring_create(struct backing_file *bf,
				  struct bthread *thr)
{
	struct io_uring_params p = {
		.flags = IORING_SETUP_SINGLE_ISSUER |
			 IORING_SETUP_DEFER_TASKRUN,
	};
	struct bring *br;
	int ret;

	br = calloc(1, sizeof(*br));
	if (!br)
		return ERR_PTR(-ENOMEM);
	br->bf = bf;
	br->thr = thr;

	ret = io_uring_queue_init_params(BACKING_RING_DEPTH, &br->ring, &p);
	if (ret == -EINVAL) {
		/* Kernels before 6.1 know neither flag; both are optional. */
		memset(&p, 0, sizeof(p));
		ret = io_uring_queue_init_params(BACKING_RING_DEPTH,
						 &br->ring, &p);
	}
	if (ret)
		goto out_free;

	/* Saves an fget/fput per request; plain fds work if it fails. */
	br->fixed_file = io_uring_register_files(&br->ring, &bf->fd, 1) == 0;

	pthread_mutex_lock(&ring_lock);
	bring_link(br);
	pthread_mutex_unlock(&ring_lock);
	return br;

out_free:
	free(br);
	return ERR_PTR(ret);
}

/* The calling thread's ring for @bf, or NULL if it has none. */
static struct bring *bring_find(struct backing_file *bf)
{
	struct bthread *thr;
	struct bring *br;
	unsigned int i;

	for (i = 0; i < RING_CACHE_SLOTS; i++)
		if (ring_cache[i].id == bf->id)
			return ring_cache[i].br;

	pthread_once(&thread_key_once, thread_key_init);
	if (thread_key_err)
		return NULL;
	thr = pthread_getspecific(thread_key);
	if (!thr)
		return NULL;
	pthread_mutex_lock(&ring_lock);
	for (br = bf->rings; br; br = br->bf_next)
		if (br->thr == thr)
			break;
	pthread_mutex_unlock(&ring_lock);
	return br;
}

/* The calling thread's ring for @bf, made if it has none; or ERR_PTR. */
static struct bring *bring_get(struct backing_file *bf)
{
	struct bthread *thr;
	struct bring *br;
	unsigned int slot;

	br = bring_find(bf);
	if (br && unlikely(br->broken)) {
		pthread_mutex_lock(&ring_lock);
		bring_unlink(br);
		pthread_mutex_unlock(&ring_lock);
		ring_cache_drop(br);
		bring_free(br);
		br = NULL;
	}
	if (!br) {
		thr = bthread_get();
		if (IS_ERR(thr))
			return (struct bring *)thr;
		br = bring_create(bf, thr);
		if (IS_ERR(br))
			return br;
	}
	slot = ring_cache_next++ % RING_CACHE_SLOTS;
	ring_cache[slot].id = bf->id;
	ring_cache[slot].br = br;
	return br;
}

/* ---- Registered buffers -------------------------------------------------- */

/*
 * Make @br's registration match the store's table. Caller holds reg_lock
 * and is @br's owner. On failure @br has no table registered.
 */
static int bring_apply_buffers(struct bring *br)
{
	struct backing_file *bf = br->bf;
	int ret;

	if (br->bufs_registered) {
		/* Cannot fail for a ring that has a table, but if it did... */
		ret = io_uring_unregister_buffers(&br->ring);
		if (WARN_ON(ret))
			return ret;
		br->bufs_registered = false;
	}
	if (bf->nr_bufs) {
		ret = io_uring_register_buffers(&br->ring, bf->bufs,
						bf->nr_bufs);
		if (ret)
			return ret;
		br->bufs_registered = true;
	}
	br->reg_gen = bf->reg_gen;
	return 0;
}

/*
 * Before a batch: bring the calling thread's ring up to date with the table.
 * A failure is retried before the next batch; meanwhile only requests that
 * name a registered buffer fail.
 */
static int bring_sync_buffers(struct bring *br)
{
	struct backing_file *bf = br->bf;
	int ret;

	/* A hint only: reg_lock orders the table with the generation. */
	if (likely(READ_ONCE(bf->reg_gen) == br->reg_gen))
		return 0;
	pthread_mutex_lock(&bf->reg_lock);
	ret = bring_apply_buffers(br);
	pthread_mutex_unlock(&bf->reg_lock);
	return ret;
}

int backing_check_buffers(const struct iovec *iov, unsigned int nr)
{
	unsigned int i;

	if (!nr || nr > BACKING_MAX_BUFFERS)
		return -EINVAL;
	for (i = 0; i < nr; i++)
		if (!iov[i].iov_len || iov[i].iov_len % BACKING_BLOCK_SIZE ||
		    (uintptr_t)iov[i].iov_base % BACKING_BLOCK_SIZE)
			return -EINVAL;
	return 0;
}

static int bf_register_buffers(struct backing *b, const struct iovec *iov,
			       unsigned int nr)
{
	struct backing_file *bf = to_bf(b);
	struct iovec *table, *old;
	struct bring *br;
	int ret;

	ret = backing_check_buffers(iov, nr);
	if (ret)
		return ret;
	table = malloc(nr * sizeof(*table));
	if (!table)
		return -ENOMEM;
	memcpy(table, iov, nr * sizeof(*table));

	br = bring_get(bf);
	if (IS_ERR(br)) {
		ret = PTR_ERR(br);
		goto out_free;
	}

	pthread_mutex_lock(&bf->reg_lock);
	old = bf->bufs;
	bf->bufs = table;
	bf->nr_bufs = nr;
	WRITE_ONCE(bf->reg_gen, bf->reg_gen + 1);
	ret = bring_apply_buffers(br);
	if (ret) {
		/* No table, rather than one that only some rings have. */
		bf->bufs = NULL;
		bf->nr_bufs = 0;
		WRITE_ONCE(bf->reg_gen, bf->reg_gen + 1);
	}
	pthread_mutex_unlock(&bf->reg_lock);
	free(old);
	if (!ret)
		return 0;
out_free:
	free(table);
	return ret;
}

static int bf_unregister_buffers(struct backing *b)
{
	struct backing_file *bf = to_bf(b);
	struct bring *br = bring_find(bf);
	int ret = 0;

	pthread_mutex_lock(&bf->reg_lock);
	free(bf->bufs);
	bf->bufs = NULL;
	bf->nr_bufs = 0;
	WRITE_ONCE(bf->reg_gen, bf->reg_gen + 1);
	if (br && !br->broken)
		ret = bring_apply_buffers(br);
	pthread_mutex_unlock(&bf->reg_lock);
	return ret;
}

/* ---- I/O ----------------------------------------------------------------- */

int backing_check_req(const struct backing_req *req)
{
	if (backing_op_is_flush(req->op))
		return 0;
	if (req->op != BACKING_OP_READ && req->op != BACKING_OP_WRITE)
		return -EINVAL;
	if (req->flags & ~BACKING_REQ_FIXED)
		return -EINVAL;
	if ((req->flags & BACKING_REQ_FIXED) &&
	    req->buf_index >= BACKING_MAX_BUFFERS)
		return -EINVAL;
	if (!req->len || req->len % BACKING_BLOCK_SIZE ||
	    req->off % BACKING_BLOCK_SIZE ||
	    (uintptr_t)req->buf % BACKING_BLOCK_SIZE)
		return -EINVAL;
	/* File offsets are signed (loff_t). */
	if (req->off > (uint64_t)INT64_MAX - req->len)
		return -EINVAL;
	return 0;
}

/* Queue @r's next attempt: its remainder, or all of it. */
static void bf_prep(struct backing_file *bf, struct bring *br,
		    struct backing_req *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&br->ring);
	int fd = br->fixed_file ? 0 : bf->fd;
	uint32_t len = r->len - r->done;
	/* A flush has no buffer: no arithmetic on its NULL. */
	char *buf = r->buf ? (char *)r->buf + r->done : NULL;
	uint64_t off = r->off + r->done;

	/* bf_run() never has more in flight than the ring has entries. */
	BUG_ON(!sqe);
	if ((bf->flags & BACKING_SHORT_IO) && len > BACKING_BLOCK_SIZE)
		len = BACKING_BLOCK_SIZE;

	if ((bf->flags & BACKING_INJECT_EAGAIN) && !r->tries) {
		/* Completes at once; bf_complete() calls it -EAGAIN. */
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data(sqe, r);
		return;
	}

	switch (r->op) {
	case BACKING_OP_READ:
		if (r->flags & BACKING_REQ_FIXED)
			io_uring_prep_read_fixed(sqe, fd, buf, len, off,
						 r->buf_index);
		else
			io_uring_prep_read(sqe, fd, buf, len, off);
		break;
	case BACKING_OP_WRITE:
		if (r->flags & BACKING_REQ_FIXED)
			io_uring_prep_write_fixed(sqe, fd, buf, len, off,
						  r->buf_index);
		else
			io_uring_prep_write(sqe, fd, buf, len, off);
		break;
	case BACKING_OP_FDATASYNC:
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
		break;
	case BACKING_OP_FSYNC:
		io_uring_prep_fsync(sqe, fd, 0);
		break;
	}
	if (br->fixed_file)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, r);
}

/*
 * A device that keeps answering -EAGAIN is busy, not broken: give it a
 * little more time on each try (0.1 ms, 0.2 ms, ... up to 10 ms; about half
 * a second in all before the request fails).
 */
static void bf_backoff(unsigned int tries)
{
	struct timespec ts = { 0, 0 };
	long us;

	if (tries <= BACKING_BACKOFF_AFTER)
		return;
	us = 100L * (tries - BACKING_BACKOFF_AFTER);
	if (us > 10000)
		us = 10000;
	ts.tv_nsec = us * 1000;
	nanosleep(&ts, NULL);
}

/*
 * Account completion @res of @r. Return true if @r is finished, false if it
 * was queued again (for its remainder, or after -EAGAIN).
 */
static bool bf_complete(struct backing_file *bf, struct bring *br,
			struct backing_req *r, int res)
{
	if ((bf->flags & BACKING_INJECT_EAGAIN) && !r->tries)
		res = -EAGAIN;

	if (res == -EAGAIN || res == -EINTR) {
		if (++r->tries > BACKING_MAX_TRIES)
			goto out_done;
		bf_backoff(r->tries);
		bf_prep(bf, br, r);
		return false;
	}
	if (res < 0 || backing_op_is_flush(r->op))
		goto out_done;

	if (res == 0) {
		if (r->op == BACKING_OP_WRITE) {
			/* Accepting nothing without an error: retrying spins. */
			res = -EIO;
			goto out_done;
		}
		goto out_eof;
	}
	r->done += res;
	if (r->done == r->len) {
		res = 0;
		goto out_done;
	}
	/*
	 * Direct I/O moves whole blocks, so a read that stops inside one
	 * stopped at the end of the file (which need not be block aligned);
	 * the remainder could not even be issued at that unaligned offset.
	 */
	if (r->op == BACKING_OP_READ && r->done % BACKING_BLOCK_SIZE)
		goto out_eof;
	bf_prep(bf, br, r);
	return false;

out_eof:
	/* A sparse image is read as if it reached as far as asked. */
	memset((char *)r->buf + r->done, 0, r->len - r->done);
	r->done = r->len;
	res = 0;
out_done:
	r->res = res;
	return true;
}

/*
 * Run @nr requests that contain no flush, or one flush, to completion: up
 * to the ring's depth in flight, the rest issued as completions free slots.
 * Requests whose @res is not -EINPROGRESS already failed and are skipped.
 * Return 0, or the -errno with which io_uring_enter() refused the ring.
 */
static int bf_run(struct backing_file *bf, struct bring *br,
		  struct backing_req *reqs, unsigned int nr)
{
	struct io_uring *ring = &br->ring;
	struct io_uring_cqe *cqe;
	unsigned int next = 0, inflight = 0, seen, head;
	int ret;

	for (;;) {
		while (next < nr && inflight < BACKING_RING_DEPTH) {
			struct backing_req *r = &reqs[next++];

			if (r->res != -EINPROGRESS)
				continue;
			bf_prep(bf, br, r);
			inflight++;
		}
		if (!inflight)
			return 0;

		ret = io_uring_submit_and_wait(ring, 1);
		/*
		 * -EINTR: a signal during the wait. -EAGAIN, -EBUSY: the kernel
		 * is short of memory or the completion queue is full; reaping
		 * below makes room. The queued entries stay in the ring and go
		 * with the next call.
		 */
		if (unlikely(ret < 0) && ret != -EINTR && ret != -EAGAIN &&
		    ret != -EBUSY)
			return ret;

		seen = 0;
		io_uring_for_each_cqe(ring, head, cqe) {
			seen++;
			if (bf_complete(bf, br, io_uring_cqe_get_data(cqe),
					cqe->res))
				inflight--;
		}
		io_uring_cq_advance(ring, seen);
	}
}

static int bf_submit(struct backing *b, struct backing_req *reqs,
		     unsigned int nr)
{
	struct backing_file *bf = to_bf(b);
	struct bring *br;
	unsigned int i, n;
	int ret;

	for (i = 0; i < nr; i++) {
		reqs[i].done = 0;
		reqs[i].tries = 0;
		ret = backing_check_req(&reqs[i]);
		reqs[i].res = ret ? ret : -EINPROGRESS;
	}

	br = bring_get(bf);
	if (IS_ERR(br)) {
		ret = PTR_ERR(br);
		goto out_fail_rest;
	}

	ret = bring_sync_buffers(br);
	if (ret) {
		for (i = 0; i < nr; i++)
			if (reqs[i].res == -EINPROGRESS &&
			    (reqs[i].flags & BACKING_REQ_FIXED))
				reqs[i].res = ret;
	}

	for (i = 0; i < nr; i += n) {
		n = backing_next_segment(reqs + i, nr - i);
		ret = bf_run(bf, br, reqs + i, n);
		if (unlikely(ret))
			goto out_broken;
	}
	goto out_result;

out_broken:
	/*
	 * io_uring_enter() refused the ring itself (-EBADF, -EFAULT, ...):
	 * a bug, not an I/O error. Fail what is left and give the next batch
	 * a new ring. Requests that did reach the kernel may still be running
	 * against their buffers; nothing here can wait for them.
	 */
	WARN_ON(ret);
	br->broken = true;
out_fail_rest:
	for (i = 0; i < nr; i++)
		if (reqs[i].res == -EINPROGRESS)
			reqs[i].res = ret;
out_result:
	for (i = 0; i < nr; i++)
		if (reqs[i].res)
			return reqs[i].res;
	return 0;
}

int backing_generic_read(struct backing *b, void *buf, uint64_t off,
			 uint32_t len)
{
	struct backing_req r = {
		.op = BACKING_OP_READ, .buf = buf, .off = off, .len = len,
	};

	return b->ops->submit(b, &r, 1);
}

int backing_generic_write(struct backing *b, const void *buf, uint64_t off,
			  uint32_t len)
{
	struct backing_req r = {
		.op = BACKING_OP_WRITE, .buf = (void *)buf, .off = off,
		.len = len,
	};

	return b->ops->submit(b, &r, 1);
}

int backing_generic_flush(struct backing *b, bool datasync)
{
	struct backing_req r = {
		.op = datasync ? BACKING_OP_FDATASYNC : BACKING_OP_FSYNC,
	};

	return b->ops->submit(b, &r, 1);
}

/* ---- Size, open, close --------------------------------------------------- */

static int bf_size(struct backing *b, uint64_t *bytes)
{
	struct backing_file *bf = to_bf(b);
	struct stat st;

	if (bf->blkdev)
		return ioctl(bf->fd, BLKGETSIZE64, bytes) ? -errno : 0;
	if (fstat(bf->fd, &st))
		return -errno;
	*bytes = st.st_size;
	return 0;
}

static int bf_grow(struct backing *b, uint64_t bytes)
{
	struct backing_file *bf = to_bf(b);
	uint64_t size;
	int ret;

	if (bf->flags & BACKING_RDONLY)
		return -EBADF;
	if (bytes > (uint64_t)INT64_MAX - BACKING_BLOCK_SIZE)
		return -EFBIG;
	bytes = (bytes + BACKING_BLOCK_SIZE - 1) &
		~(uint64_t)(BACKING_BLOCK_SIZE - 1);
	pthread_mutex_lock(&bf->grow_lock);
	ret = bf_size(b, &size);
	if (ret || size >= bytes)
		goto out_unlock;
	if (bf->blkdev)
		ret = -ENOSPC;
	else if (ftruncate(bf->fd, bytes))
		ret = -errno;
out_unlock:
	pthread_mutex_unlock(&bf->grow_lock);
	return ret;
}

static void bf_close(struct backing *b)
{
	struct backing_file *bf = to_bf(b);
	struct bring *list = NULL, *br;

	/*
	 * The rings of threads still alive: their owners do no more I/O on
	 * this store (the caller's promise) and will not find them again, as
	 * their cache entries name an id nobody will use again.
	 */
	pthread_mutex_lock(&ring_lock);
	while ((br = bf->rings)) {
		bring_unlink(br);
		br->bf_next = list;
		list = br;
	}
	pthread_mutex_unlock(&ring_lock);
	while ((br = list)) {
		list = br->bf_next;
		ring_cache_drop(br);
		bring_free(br);
	}

	close(bf->fd);
	free(bf->bufs);
	pthread_mutex_destroy(&bf->grow_lock);
	pthread_mutex_destroy(&bf->reg_lock);
	free(bf);
}

static const struct backing_ops backing_file_ops = {
	.submit			= bf_submit,
	.read			= backing_generic_read,
	.write			= backing_generic_write,
	.flush			= backing_generic_flush,
	.size			= bf_size,
	.grow			= bf_grow,
	.register_buffers	= bf_register_buffers,
	.unregister_buffers	= bf_unregister_buffers,
	.close			= bf_close,
};

/*
 * Some filesystems accept O_DIRECT at open() and refuse it at the first
 * read; find out now, while the caller can still say why.
 */
static int probe_direct(int fd)
{
	void *buf;
	int ret = 0;

	buf = aligned_alloc(BACKING_BLOCK_SIZE, BACKING_BLOCK_SIZE);
	if (!buf)
		return -ENOMEM;
	if (pread(fd, buf, BACKING_BLOCK_SIZE, 0) < 0)
		ret = -errno;
	free(buf);
	return ret;
}

int backing_open(const char *path, unsigned int flags, struct backing **out)
{
	struct backing_file *bf;
	struct stat st;
	int oflags = O_CLOEXEC, lbs, ret;

	oflags |= (flags & BACKING_RDONLY) ? O_RDONLY : O_RDWR;
	if (!(flags & BACKING_NO_DIRECT))
		oflags |= O_DIRECT;
	if (flags & BACKING_CREATE)
		oflags |= O_CREAT;

	bf = calloc(1, sizeof(*bf));
	if (!bf)
		return -ENOMEM;
	bf->b.ops = &backing_file_ops;
	bf->flags = flags;

	bf->fd = open(path, oflags, 0644);
	if (bf->fd < 0) {
		ret = -errno;
		/*
		 * O_DIRECT on something that is no image at all (a directory)
		 * fails with EINVAL too: do not let the caller blame the
		 * filesystem for it.
		 */
		if (ret == -EINVAL && (oflags & O_DIRECT) && !stat(path, &st) &&
		    !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
			ret = -ENOTSUP;
		goto out_free;
	}
	if (fstat(bf->fd, &st)) {
		ret = -errno;
		goto out_close;
	}
	if (S_ISBLK(st.st_mode)) {
		bf->blkdev = true;
		if (ioctl(bf->fd, BLKSSZGET, &lbs)) {
			ret = -errno;
			goto out_close;
		}
		/* Every request is whole 4 KiB blocks: they must be whole sectors. */
		if (lbs <= 0 || BACKING_BLOCK_SIZE % lbs) {
			ret = -EINVAL;
			goto out_close;
		}
	} else if (!S_ISREG(st.st_mode)) {
		ret = -ENOTSUP;
		goto out_close;
	}
	if (!(flags & BACKING_NO_DIRECT)) {
		ret = probe_direct(bf->fd);
		if (ret)
			goto out_close;
	}

	pthread_mutex_init(&bf->reg_lock, NULL);
	pthread_mutex_init(&bf->grow_lock, NULL);
	bf->id = __atomic_fetch_add(&next_store_id, 1, __ATOMIC_RELAXED);
	*out = &bf->b;
	return 0;

out_close:
	close(bf->fd);
out_free:
	free(bf);
	return ret;
}
