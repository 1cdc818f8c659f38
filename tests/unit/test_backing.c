/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_backing.c - the io_uring backing store and the fault injector:
 * round trips at assorted offsets and lengths, alignment checks, batches
 * larger than the ring, a flush as a barrier inside a batch, reads past the
 * end of file (zeroes), the short-transfer and -EAGAIN retry paths, size and
 * grow, per-thread rings (including a store closed while a thread that used
 * it lives on), registered buffers (lazy per-ring registration), and
 * fault injection: the Nth write fails and nothing else changes.
 *
 * Images live in $FOLIOFS_TEST_DIR (default: the current directory, which
 * under meson is the build directory on the disk). If that filesystem
 * refuses O_DIRECT the tests say so and run buffered (BACKING_NO_DIRECT).
 * The block-device test runs only if $FOLIOFS_TEST_BLKDEV names a device,
 * which it overwrites (a loop device: losetup -f --show IMG).
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backing.h"
#include "testimg.h"
#include "faulty.h"

#define BLK		BACKING_BLOCK_SIZE
#define NR_ELEMS(a)	(sizeof(a) / sizeof((a)[0]))

/* ---- Helpers ------------------------------------------------------------- */

/* A fresh, empty image file @name, opened as a store. */
static struct backing *open_img(const char *name, unsigned int flags)
{
	struct backing *b = NULL;
	char path[4096];

	testimg_path(path, sizeof(path), name);
	unlink(path);
	assert_int_equal(backing_open(path, BACKING_CREATE | testimg_open_flags | flags,
				      &b), 0);
	assert_non_null(b);
	return b;
}

static void rm_img(const char *name)
{
	char path[4096];

	testimg_path(path, sizeof(path), name);
	unlink(path);
}

static void *abuf(size_t len)
{
	void *p = aligned_alloc(BLK, len);

	assert_non_null(p);
	return p;
}

/* The 8-byte word @tag writes at byte @pos: names both. */
static uint64_t pat(uint64_t tag, uint64_t pos)
{
	return (tag << 48) ^ pos ^ 0x00006f6c696f0000ULL;
}

static void fill(void *buf, uint64_t pos, size_t len, uint64_t tag)
{
	uint64_t *w = buf;
	size_t i;

	for (i = 0; i < len / 8; i++)
		w[i] = pat(tag, pos + 8 * i);
}

/* Words of @buf (at byte @pos) that are not @tag's pattern. */
static size_t mismatches(const void *buf, uint64_t pos, size_t len,
			 uint64_t tag)
{
	const uint64_t *w = buf;
	size_t i, bad = 0;

	for (i = 0; i < len / 8; i++)
		bad += w[i] != pat(tag, pos + 8 * i);
	return bad;
}

static size_t nonzero(const void *buf, size_t len)
{
	const unsigned char *c = buf;
	size_t i, n = 0;

	for (i = 0; i < len; i++)
		n += c[i] != 0;
	return n;
}

/* Write @nblk blocks of @tag's pattern at block @blk. */
static void put(struct backing *b, uint64_t blk, uint32_t nblk, uint64_t tag)
{
	void *buf = abuf((size_t)nblk * BLK);

	fill(buf, blk * BLK, (size_t)nblk * BLK, tag);
	assert_int_equal(backing_write(b, buf, blk * BLK, nblk * BLK), 0);
	free(buf);
}

/* Assert blocks [@blk, @blk + @nblk) hold @tag's pattern. */
static void expect(struct backing *b, uint64_t blk, uint32_t nblk,
		   uint64_t tag)
{
	void *buf = abuf((size_t)nblk * BLK);

	memset(buf, 0xee, (size_t)nblk * BLK);
	assert_int_equal(backing_read(b, buf, blk * BLK, nblk * BLK), 0);
	assert_int_equal(mismatches(buf, blk * BLK, (size_t)nblk * BLK, tag), 0);
	free(buf);
}

/* ---- Open, size, grow ---------------------------------------------------- */

static void test_open_errors(void **state)
{
	struct backing *b = NULL;
	char path[4096];

	(void)state;
	testimg_path(path, sizeof(path), "missing");
	unlink(path);
	assert_int_equal(backing_open(path, testimg_open_flags, &b), -ENOENT);
	assert_null(b);
	/* Neither a regular file nor a block device. */
	assert_int_equal(backing_open(testimg_dir(), BACKING_RDONLY | testimg_open_flags,
				      &b), -ENOTSUP);
	assert_null(b);
}

static void test_size_and_grow(void **state)
{
	struct backing *b;
	uint64_t size = 1;

	(void)state;
	b = open_img("grow", 0);
	assert_int_equal(backing_size(b, &size), 0);
	assert_int_equal(size, 0);

	/* Rounded up to a block, sparse. */
	assert_int_equal(backing_grow(b, 5 * 1024 * 1024 + 1), 0);
	assert_int_equal(backing_size(b, &size), 0);
	assert_int_equal(size, 5 * 1024 * 1024 + BLK);

	/* Never shrinks. */
	assert_int_equal(backing_grow(b, BLK), 0);
	assert_int_equal(backing_size(b, &size), 0);
	assert_int_equal(size, 5 * 1024 * 1024 + BLK);

	/* A write past the end extends the file. */
	put(b, 2000, 2, 7);
	assert_int_equal(backing_size(b, &size), 0);
	assert_int_equal(size, 2002ULL * BLK);
	expect(b, 2000, 2, 7);

	backing_close(b);
	rm_img("grow");
}

static void test_rdonly(void **state)
{
	struct backing *b;
	char path[4096];
	void *buf = abuf(BLK);

	(void)state;
	b = open_img("ro", 0);
	put(b, 0, 1, 3);
	backing_close(b);

	testimg_path(path, sizeof(path), "ro");
	assert_int_equal(backing_open(path, BACKING_RDONLY | testimg_open_flags, &b), 0);
	expect(b, 0, 1, 3);
	fill(buf, 0, BLK, 4);
	assert_int_equal(backing_write(b, buf, 0, BLK), -EBADF);
	assert_int_equal(backing_grow(b, 1 << 20), -EBADF);
	assert_int_equal(backing_fdatasync(b), 0);
	expect(b, 0, 1, 3);
	backing_close(b);
	free(buf);
	rm_img("ro");
}

/* A block device: its size, no growing, the edges. Overwrites it. */
static void test_block_device(void **state)
{
	const char *dev = getenv("FOLIOFS_TEST_BLKDEV");
	struct backing *b;
	uint64_t size = 0, last;
	void *buf;

	(void)state;
	if (!dev || !*dev) {
		print_message("FOLIOFS_TEST_BLKDEV not set: skipped\n");
		skip();
	}
	assert_int_equal(backing_open(dev, 0, &b), 0);
	assert_int_equal(backing_size(b, &size), 0);
	assert_true(size >= 2 * BLK);
	assert_int_equal(size % BLK, 0);
	last = size / BLK - 1;

	assert_int_equal(backing_grow(b, size), 0);
	assert_int_equal(backing_grow(b, size + 1), -ENOSPC);
	put(b, 0, 1, 70);
	put(b, last - 1, 2, 71);
	assert_int_equal(backing_fdatasync(b), 0);
	expect(b, 0, 1, 70);
	expect(b, last - 1, 2, 71);

	buf = abuf(2 * BLK);
	fill(buf, size, 2 * BLK, 72);
	assert_int_equal(backing_write(b, buf, size, 2 * BLK), -ENOSPC);
	/* A read across the end: the device's data, then zeroes. */
	memset(buf, 0xff, 2 * BLK);
	assert_int_equal(backing_read(b, buf, last * BLK, 2 * BLK), 0);
	assert_int_equal(mismatches(buf, last * BLK, BLK, 71), 0);
	assert_int_equal(nonzero((char *)buf + BLK, BLK), 0);
	free(buf);
	backing_close(b);
}

/* ---- Round trips --------------------------------------------------------- */

static void test_round_trips(void **state)
{
	static const struct { uint32_t blk, nblk; } runs[] = {
		{ 0, 1 }, { 1, 3 }, { 7, 16 }, { 100, 64 }, { 1000, 256 },
		{ 2047, 1 }, { 300, 33 },
	};
	struct backing *b;
	char path[4096];
	void *buf;
	size_t i;

	(void)state;
	b = open_img("rt", 0);
	assert_int_equal(backing_grow(b, 8 << 20), 0);
	for (i = 0; i < NR_ELEMS(runs); i++)
		put(b, runs[i].blk, runs[i].nblk, i + 1);
	for (i = 0; i < NR_ELEMS(runs); i++)
		expect(b, runs[i].blk, runs[i].nblk, i + 1);

	/* One read across two writes and the hole between them. */
	buf = abuf(8 * BLK);
	assert_int_equal(backing_read(b, buf, 0, 8 * BLK), 0);
	assert_int_equal(mismatches(buf, 0, BLK, 1), 0);
	assert_int_equal(mismatches((char *)buf + BLK, BLK, 3 * BLK, 2), 0);
	assert_int_equal(nonzero((char *)buf + 4 * BLK, 3 * BLK), 0);
	assert_int_equal(mismatches((char *)buf + 7 * BLK, 7 * BLK, BLK, 3), 0);
	free(buf);

	/* Durable across a reopen. */
	assert_int_equal(backing_fdatasync(b), 0);
	backing_close(b);
	testimg_path(path, sizeof(path), "rt");
	assert_int_equal(backing_open(path, testimg_open_flags, &b), 0);
	for (i = 0; i < NR_ELEMS(runs); i++)
		expect(b, runs[i].blk, runs[i].nblk, i + 1);
	backing_close(b);
	rm_img("rt");
}

static void test_misaligned_rejected(void **state)
{
	struct backing *b;
	char *buf = abuf(4 * BLK);
	struct backing_req reqs[5] = {
		{ .op = BACKING_OP_WRITE, .buf = buf, .off = 512, .len = BLK },
		{ .op = BACKING_OP_WRITE, .buf = buf, .off = 0, .len = 0 },
		{ .op = BACKING_OP_WRITE, .buf = buf, .off = 0, .len = 100 },
		{ .op = BACKING_OP_WRITE, .buf = buf + 512, .off = 0,
		  .len = BLK },
		/* The one good request still runs. */
		{ .op = BACKING_OP_WRITE, .buf = buf + BLK, .off = 3 * BLK,
		  .len = BLK },
	};
	size_t i;

	(void)state;
	b = open_img("align", 0);
	fill(buf + BLK, 3 * BLK, BLK, 9);
	assert_int_equal(backing_submit(b, reqs, 5), -EINVAL);
	for (i = 0; i < 4; i++)
		assert_int_equal(reqs[i].res, -EINVAL);
	assert_int_equal(reqs[4].res, 0);
	assert_int_equal(reqs[4].done, BLK);
	expect(b, 3, 1, 9);
	backing_close(b);
	free(buf);
	rm_img("align");
}

/* ---- Batches ------------------------------------------------------------- */

/* @nr one-block requests at scattered blocks, in one batch each way. */
static void batch_round_trip(struct backing *b, unsigned int nr)
{
	struct backing_req *reqs = calloc(nr, sizeof(*reqs));
	char *buf = abuf((size_t)nr * BLK);
	unsigned int i;
	uint64_t blk;

	assert_non_null(reqs);
	for (i = 0; i < nr; i++) {
		/* A permutation of 0..nr-1, scaled: not in submission order. */
		blk = ((i * 37ULL) % nr) * 3;
		fill(buf + (size_t)i * BLK, blk * BLK, BLK, 100 + i);
		reqs[i] = (struct backing_req){
			.op = BACKING_OP_WRITE, .buf = buf + (size_t)i * BLK,
			.off = blk * BLK, .len = BLK, .priv = &reqs[i],
		};
	}
	assert_int_equal(backing_submit(b, reqs, nr), 0);
	for (i = 0; i < nr; i++) {
		assert_int_equal(reqs[i].res, 0);
		assert_int_equal(reqs[i].done, BLK);
		assert_ptr_equal(reqs[i].priv, &reqs[i]);
	}

	memset(buf, 0, (size_t)nr * BLK);
	for (i = 0; i < nr; i++)
		reqs[i].op = BACKING_OP_READ;
	assert_int_equal(backing_submit(b, reqs, nr), 0);
	for (i = 0; i < nr; i++) {
		assert_int_equal(reqs[i].res, 0);
		assert_int_equal(mismatches(buf + (size_t)i * BLK, reqs[i].off,
					    BLK, 100 + i), 0);
	}
	free(buf);
	free(reqs);
}

static void test_batch_64(void **state)
{
	struct backing *b;

	(void)state;
	b = open_img("batch64", 0);
	batch_round_trip(b, 64);
	backing_close(b);
	rm_img("batch64");
}

/* More requests than the ring has entries: fed through as slots free. */
static void test_batch_larger_than_ring(void **state)
{
	struct backing *b;

	(void)state;
	b = open_img("batch300", 0);
	batch_round_trip(b, 5 * BACKING_RING_DEPTH - 20);
	backing_close(b);
	rm_img("batch300");
}

/*
 * A flush inside a batch is a barrier: a read after it sees the write before
 * it, and a second write after it lands after the first. Unordered, the
 * read could overtake the writes.
 */
static void test_flush_is_barrier(void **state)
{
	struct backing *b;
	char *buf = abuf(8 * BLK);
	struct backing_req reqs[6];
	int round;

	(void)state;
	b = open_img("barrier", 0);
	for (round = 0; round < 20; round++) {
		fill(buf, 0, 4 * BLK, 2 * round + 1);
		fill(buf + 4 * BLK, 0, 4 * BLK, 2 * round + 2);
		memset(reqs, 0, sizeof(reqs));
		reqs[0] = (struct backing_req){ .op = BACKING_OP_WRITE,
			.buf = buf, .off = 0, .len = 4 * BLK };
		reqs[1] = (struct backing_req){ .op = BACKING_OP_FDATASYNC };
		reqs[2] = (struct backing_req){ .op = BACKING_OP_WRITE,
			.buf = buf + 4 * BLK, .off = 0, .len = 4 * BLK };
		reqs[3] = (struct backing_req){ .op = BACKING_OP_FSYNC };
		/* Reads into the buffer of the first write, now spent. */
		reqs[4] = (struct backing_req){ .op = BACKING_OP_READ,
			.buf = buf, .off = 0, .len = 4 * BLK };
		reqs[5] = (struct backing_req){ .op = BACKING_OP_FDATASYNC };
		assert_int_equal(backing_submit(b, reqs, 6), 0);
		assert_int_equal(mismatches(buf, 0, 4 * BLK, 2 * round + 2), 0);
	}
	backing_close(b);
	free(buf);
	rm_img("barrier");
}

/* ---- End of file, retries ------------------------------------------------ */

/*
 * A file whose size is not a multiple of the block size: a read across its
 * end gets the bytes up to it and zeroes after; a read wholly past it gets
 * zeroes. Under O_DIRECT the kernel returns a transfer that ends mid-block.
 */
static void eof_reads(unsigned int flags, const char *name)
{
	const size_t size = 3 * BLK + 100;
	struct backing *b;
	char path[4096];
	char *buf = abuf(8 * BLK);
	struct backing_req r;
	int fd;

	testimg_path(path, sizeof(path), name);
	unlink(path);
	fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
	assert_true(fd >= 0);
	fill(buf, 0, 4 * BLK, 5);
	assert_int_equal(pwrite(fd, buf, size, 0), size);
	assert_int_equal(fsync(fd), 0);
	close(fd);

	assert_int_equal(backing_open(path, testimg_open_flags | flags, &b), 0);
	memset(buf, 0xff, 8 * BLK);
	r = (struct backing_req){ .op = BACKING_OP_READ, .buf = buf,
				  .off = 0, .len = 8 * BLK };
	assert_int_equal(backing_submit(b, &r, 1), 0);
	assert_int_equal(r.res, 0);
	assert_int_equal(r.done, 8 * BLK);
	assert_int_equal(mismatches(buf, 0, size - 4, 5), 0);
	assert_int_equal(nonzero(buf + size, 8 * BLK - size), 0);

	/* From inside the last block. */
	memset(buf, 0xff, 8 * BLK);
	assert_int_equal(backing_read(b, buf, 3 * BLK, 2 * BLK), 0);
	assert_int_equal(mismatches(buf, 3 * BLK, 96, 5), 0);
	assert_int_equal(nonzero(buf + 100, 2 * BLK - 100), 0);

	/* Wholly past the end. */
	memset(buf, 0xff, 8 * BLK);
	assert_int_equal(backing_read(b, buf, 100 * BLK, 4 * BLK), 0);
	assert_int_equal(nonzero(buf, 4 * BLK), 0);

	backing_close(b);
	free(buf);
	unlink(path);
}

static void test_short_read_at_eof(void **state)
{
	(void)state;
	eof_reads(0, "eof");
}

/* Every transfer one block at a time: the remainder path for everything. */
static void test_short_transfers_resubmitted(void **state)
{
	struct backing *b;
	struct backing_req r;
	char *buf;

	(void)state;
	eof_reads(BACKING_SHORT_IO, "eof-short");

	b = open_img("short", BACKING_SHORT_IO);
	put(b, 10, 64, 11);
	expect(b, 10, 64, 11);
	buf = abuf(64 * BLK);
	r = (struct backing_req){ .op = BACKING_OP_READ, .buf = buf,
				  .off = 10 * BLK, .len = 64 * BLK };
	assert_int_equal(backing_submit(b, &r, 1), 0);
	assert_int_equal(r.done, 64 * BLK);
	assert_int_equal(mismatches(buf, 10 * BLK, 64 * BLK, 11), 0);
	batch_round_trip(b, 100);
	backing_close(b);
	free(buf);
	rm_img("short");
}

/* Every first attempt answers -EAGAIN: each request must be retried. */
static void test_eagain_retried(void **state)
{
	struct backing *b;
	char *buf = abuf(4 * BLK);
	struct backing_req reqs[3];

	(void)state;
	b = open_img("eagain", BACKING_INJECT_EAGAIN);
	fill(buf, 0, 4 * BLK, 12);
	reqs[0] = (struct backing_req){ .op = BACKING_OP_WRITE, .buf = buf,
					.off = 0, .len = 4 * BLK };
	reqs[1] = (struct backing_req){ .op = BACKING_OP_FDATASYNC };
	reqs[2] = (struct backing_req){ .op = BACKING_OP_READ, .buf = buf,
					.off = 4 * BLK, .len = 4 * BLK };
	assert_int_equal(backing_submit(b, reqs, 3), 0);
	assert_int_equal(reqs[0].tries, 1);
	assert_int_equal(reqs[1].tries, 1);
	assert_int_equal(reqs[2].tries, 1);
	assert_int_equal(reqs[0].done, 4 * BLK);
	/* The read past the end came back as zeroes. */
	assert_int_equal(nonzero(buf, 4 * BLK), 0);
	expect(b, 0, 4, 12);
	batch_round_trip(b, 80);
	backing_close(b);
	free(buf);
	rm_img("eagain");
}

static void test_flush(void **state)
{
	struct backing *b;

	(void)state;
	b = open_img("flush", 0);
	put(b, 0, 4, 13);
	assert_int_equal(backing_fdatasync(b), 0);
	assert_int_equal(backing_fsync(b), 0);
	/* A flush with nothing to flush. */
	assert_int_equal(backing_fdatasync(b), 0);
	expect(b, 0, 4, 13);
	backing_close(b);
	rm_img("flush");
}

/* ---- Threads ------------------------------------------------------------- */

#define NR_THREADS	4

struct thread_arg {
	struct backing	*b;
	unsigned int	id;
	int		ret;
	/* If set: wait here twice (I/O done; store closed) before exiting. */
	pthread_barrier_t *hold;
};

static void *io_thread(void *p)
{
	struct thread_arg *a = p;
	struct backing_req reqs[32];
	char *buf = aligned_alloc(BLK, 32 * BLK);
	unsigned int i, round;
	uint64_t base = a->id * 1000ULL;

	a->ret = -ENOMEM;
	if (!buf)
		return NULL;
	for (round = 0; round < 10; round++) {
		for (i = 0; i < 32; i++) {
			fill(buf + i * BLK, (base + i) * BLK, BLK,
			     a->id * 100 + round);
			reqs[i] = (struct backing_req){ .op = BACKING_OP_WRITE,
				.buf = buf + i * BLK, .off = (base + i) * BLK,
				.len = BLK };
		}
		a->ret = backing_submit(a->b, reqs, 32);
		if (a->ret)
			break;
		memset(buf, 0, 32 * BLK);
		for (i = 0; i < 32; i++)
			reqs[i].op = BACKING_OP_READ;
		a->ret = backing_submit(a->b, reqs, 32);
		if (a->ret)
			break;
		if (mismatches(buf, base * BLK, 32 * BLK, a->id * 100 + round)) {
			a->ret = -EILSEQ;
			break;
		}
	}
	free(buf);
	if (a->hold) {
		pthread_barrier_wait(a->hold);
		pthread_barrier_wait(a->hold);
	}
	return NULL;
}

static void test_threads_own_rings(void **state)
{
	struct thread_arg args[NR_THREADS];
	pthread_t tids[NR_THREADS];
	struct backing *b;
	unsigned int i;

	(void)state;
	b = open_img("threads", 0);
	for (i = 0; i < NR_THREADS; i++) {
		args[i] = (struct thread_arg){ .b = b, .id = i };
		assert_int_equal(pthread_create(&tids[i], NULL, io_thread,
						&args[i]), 0);
	}
	for (i = 0; i < NR_THREADS; i++) {
		assert_int_equal(pthread_join(tids[i], NULL), 0);
		assert_int_equal(args[i].ret, 0);
	}
	/* Their rings died with them; this thread's works on. */
	for (i = 0; i < NR_THREADS; i++)
		expect(b, i * 1000ULL, 32, i * 100 + 9);
	backing_close(b);
	rm_img("threads");
}

/*
 * A store closed while a thread that used it is still alive: close frees
 * that thread's ring, and the thread's exit must not free it again (ASan
 * would see the double free).
 */
static void test_close_before_thread_exit(void **state)
{
	pthread_barrier_t hold;
	struct thread_arg arg;
	struct backing *b, *b2;
	pthread_t tid;

	(void)state;
	assert_int_equal(pthread_barrier_init(&hold, NULL, 2), 0);
	b = open_img("early", 0);
	b2 = open_img("late", 0);
	arg = (struct thread_arg){ .b = b, .id = 1, .hold = &hold };
	assert_int_equal(pthread_create(&tid, NULL, io_thread, &arg), 0);
	/* Let it do its I/O, close the store under its feet, let it exit. */
	pthread_barrier_wait(&hold);
	assert_int_equal(arg.ret, 0);
	backing_close(b);
	pthread_barrier_wait(&hold);
	assert_int_equal(pthread_join(tid, NULL), 0);

	/* A new store, maybe at the same address, gets a fresh ring. */
	arg = (struct thread_arg){ .b = b2, .id = 2 };
	assert_int_equal(pthread_create(&tid, NULL, io_thread, &arg), 0);
	assert_int_equal(pthread_join(tid, NULL), 0);
	assert_int_equal(arg.ret, 0);
	backing_close(b2);
	pthread_barrier_destroy(&hold);
	rm_img("early");
	rm_img("late");
}

/* ---- Registered buffers -------------------------------------------------- */

#define NR_BUFS		4
#define BUF_BLKS	16

struct fixed_arg {
	struct backing	*b;
	char		*bufs[NR_BUFS];
	int		ret;
};

/* Write with buffer 1, read back into buffer 2, both fixed. */
static int fixed_round_trip(struct backing *b, char **bufs, uint64_t blk,
			    uint64_t tag)
{
	struct backing_req r;
	int ret;

	fill(bufs[1] + BLK, blk * BLK, 4 * BLK, tag);
	r = (struct backing_req){ .op = BACKING_OP_WRITE,
		.flags = BACKING_REQ_FIXED, .buf_index = 1,
		.buf = bufs[1] + BLK, .off = blk * BLK, .len = 4 * BLK };
	ret = backing_submit(b, &r, 1);
	if (ret)
		return ret;
	memset(bufs[2], 0, BUF_BLKS * BLK);
	r = (struct backing_req){ .op = BACKING_OP_READ,
		.flags = BACKING_REQ_FIXED, .buf_index = 2,
		.buf = bufs[2] + 8 * BLK, .off = blk * BLK, .len = 4 * BLK };
	ret = backing_submit(b, &r, 1);
	if (ret)
		return ret;
	return mismatches(bufs[2] + 8 * BLK, blk * BLK, 4 * BLK, tag) ?
		-EILSEQ : 0;
}

static void *fixed_thread(void *p)
{
	struct fixed_arg *a = p;

	a->ret = fixed_round_trip(a->b, a->bufs, 500, 21);
	return NULL;
}

static void test_registered_buffers(void **state)
{
	struct iovec iov[NR_BUFS];
	struct fixed_arg arg;
	struct backing_req r;
	struct backing *b;
	char *bufs[NR_BUFS], *plain;
	pthread_t tid;
	unsigned int i;

	(void)state;
	b = open_img("fixed", 0);
	for (i = 0; i < NR_BUFS; i++) {
		bufs[i] = abuf(BUF_BLKS * BLK);
		iov[i] = (struct iovec){ bufs[i], BUF_BLKS * BLK };
	}
	plain = abuf(4 * BLK);

	/* Bad tables are refused before the kernel sees them. */
	iov[0].iov_base = bufs[0] + 512;
	assert_int_equal(backing_register_buffers(b, iov, NR_BUFS), -EINVAL);
	iov[0].iov_base = bufs[0];
	assert_int_equal(backing_register_buffers(b, iov, 0), -EINVAL);

	assert_int_equal(backing_register_buffers(b, iov, NR_BUFS), 0);
	assert_int_equal(fixed_round_trip(b, bufs, 10, 20), 0);
	/* Fixed and plain requests mix. */
	assert_int_equal(backing_read(b, plain, 10 * BLK, 4 * BLK), 0);
	assert_int_equal(mismatches(plain, 10 * BLK, 4 * BLK, 20), 0);

	/* Another thread's ring gets the table on its first batch. */
	arg = (struct fixed_arg){ .b = b };
	memcpy(arg.bufs, bufs, sizeof(bufs));
	assert_int_equal(pthread_create(&tid, NULL, fixed_thread, &arg), 0);
	assert_int_equal(pthread_join(tid, NULL), 0);
	assert_int_equal(arg.ret, 0);
	expect(b, 500, 4, 21);

	/* A buffer outside the one named: the kernel refuses it. */
	r = (struct backing_req){ .op = BACKING_OP_READ,
		.flags = BACKING_REQ_FIXED, .buf_index = 0, .buf = plain,
		.off = 0, .len = BLK };
	assert_int_equal(backing_submit(b, &r, 1), -EFAULT);
	/* An index past the table. */
	r.buf_index = NR_BUFS;
	r.buf = bufs[0];
	assert_true(backing_submit(b, &r, 1) < 0);

	/* Re-register a smaller table: index 1 still good, 3 gone. */
	assert_int_equal(backing_register_buffers(b, iov, 3), 0);
	assert_int_equal(fixed_round_trip(b, bufs, 30, 22), 0);
	r = (struct backing_req){ .op = BACKING_OP_READ,
		.flags = BACKING_REQ_FIXED, .buf_index = 3, .buf = bufs[3],
		.off = 0, .len = BLK };
	assert_true(backing_submit(b, &r, 1) < 0);

	/* Unregistered: fixed requests fail, plain ones work. */
	assert_int_equal(backing_unregister_buffers(b), 0);
	assert_true(fixed_round_trip(b, bufs, 40, 23) < 0);
	put(b, 40, 4, 24);
	expect(b, 40, 4, 24);
	assert_int_equal(backing_unregister_buffers(b), 0);

	backing_close(b);
	for (i = 0; i < NR_BUFS; i++)
		free(bufs[i]);
	free(plain);
	rm_img("fixed");
}

/* ---- Fault injection ----------------------------------------------------- */

static struct backing *open_faulty(const char *name)
{
	struct backing *b = open_img(name, 0), *f = NULL;

	assert_int_equal(faulty_create(b, &f), 0);
	assert_non_null(f);
	return f;
}

/* The 3rd write of a batch of 5 fails with EIO; the rest land; nothing else. */
static void test_fault_nth_write(void **state)
{
	struct faulty_counts c;
	struct backing_req reqs[5];
	struct backing *f;
	char *buf = abuf(5 * BLK);
	unsigned int i;

	(void)state;
	f = open_faulty("nth");
	put(f, 0, 8, 30);
	faulty_get_counts(f, &c);
	assert_int_equal(c.ops[FAULTY_WRITE], 1);
	assert_int_equal(c.bytes[FAULTY_WRITE], 8 * BLK);
	faulty_reset_counts(f);

	assert_int_equal(faulty_fail_nth(f, FAULTY_WRITE, 3, -EIO), 0);
	for (i = 0; i < 5; i++) {
		fill(buf + i * BLK, (uint64_t)i * BLK, BLK, 31);
		reqs[i] = (struct backing_req){ .op = BACKING_OP_WRITE,
			.buf = buf + i * BLK, .off = (uint64_t)i * BLK,
			.len = BLK };
	}
	assert_int_equal(backing_submit(f, reqs, 5), -EIO);
	for (i = 0; i < 5; i++) {
		assert_int_equal(reqs[i].res, i == 2 ? -EIO : 0);
		assert_int_equal(reqs[i].done, i == 2 ? 0 : BLK);
	}
	expect(f, 0, 2, 31);
	expect(f, 2, 1, 30);
	expect(f, 3, 2, 31);
	expect(f, 5, 3, 30);

	faulty_get_counts(f, &c);
	assert_int_equal(c.ops[FAULTY_WRITE], 5);
	assert_int_equal(c.failed[FAULTY_WRITE], 1);
	assert_int_equal(c.bytes[FAULTY_WRITE], 4 * BLK);
	assert_int_equal(c.ops[FAULTY_READ], 4);
	assert_int_equal(c.failed[FAULTY_READ], 0);
	assert_int_equal(c.bytes[FAULTY_READ], 8 * BLK);

	/* Once only: the retry succeeds. */
	assert_int_equal(backing_submit(f, &reqs[2], 1), 0);
	expect(f, 0, 5, 31);

	backing_close(f);
	free(buf);
	rm_img("nth");
}

static void test_fault_read_and_flush(void **state)
{
	struct faulty_counts c;
	struct backing *f;
	char *buf = abuf(BLK);

	(void)state;
	f = open_faulty("rf");
	put(f, 0, 1, 40);

	assert_int_equal(faulty_fail_nth(f, FAULTY_READ, 2, -EIO), 0);
	assert_int_equal(faulty_fail_nth(f, FAULTY_FLUSH, 1, -ENOSPC), 0);
	memset(buf, 0x5a, BLK);
	assert_int_equal(backing_read(f, buf, 0, BLK), 0);
	assert_int_equal(mismatches(buf, 0, BLK, 40), 0);
	memset(buf, 0x5a, BLK);
	assert_int_equal(backing_read(f, buf, 0, BLK), -EIO);
	/* The failed read never reached the buffer. */
	assert_int_equal(buf[0], 0x5a);
	assert_int_equal(buf[BLK - 1], 0x5a);
	assert_int_equal(backing_fdatasync(f), -ENOSPC);
	assert_int_equal(backing_fsync(f), 0);

	faulty_get_counts(f, &c);
	assert_int_equal(c.failed[FAULTY_READ], 1);
	assert_int_equal(c.ops[FAULTY_FLUSH], 2);
	assert_int_equal(c.failed[FAULTY_FLUSH], 1);

	/* Validation is not a fault: nothing counted as failed. */
	assert_int_equal(backing_read(f, buf + 1, 0, BLK), -EINVAL);
	faulty_get_counts(f, &c);
	assert_int_equal(c.failed[FAULTY_READ], 1);

	/* Bad rules. */
	assert_int_equal(faulty_fail_nth(f, FAULTY_READ, 0, -EIO), -EINVAL);
	assert_int_equal(faulty_fail_nth(f, FAULTY_READ, 1, EIO), -EINVAL);
	assert_int_equal(faulty_fail_range(f, FAULTY_FLUSH, 0, 1, -EIO),
			 -EINVAL);
	backing_close(f);
	free(buf);
	rm_img("rf");
}

/* Every write touching blocks 4..5 fails until cleared; others pass. */
static void test_fault_range(void **state)
{
	struct faulty_counts c;
	struct backing_req reqs[4];
	struct backing *f;
	char *buf = abuf(4 * BLK);
	int round;

	(void)state;
	f = open_faulty("range");
	put(f, 0, 10, 50);
	assert_int_equal(faulty_fail_range(f, FAULTY_WRITE, 4 * BLK, 2 * BLK,
					   -ENOSPC), 0);
	for (round = 0; round < 3; round++) {
		fill(buf, 0, BLK, 51);
		fill(buf + BLK, 3 * BLK, 2 * BLK, 51);	/* blocks 3-4 */
		fill(buf + 3 * BLK, 6 * BLK, BLK, 51);
		reqs[0] = (struct backing_req){ .op = BACKING_OP_WRITE,
			.buf = buf, .off = 0, .len = BLK };
		reqs[1] = (struct backing_req){ .op = BACKING_OP_WRITE,
			.buf = buf + BLK, .off = 3 * BLK, .len = 2 * BLK };
		reqs[2] = (struct backing_req){ .op = BACKING_OP_FDATASYNC };
		reqs[3] = (struct backing_req){ .op = BACKING_OP_WRITE,
			.buf = buf + 3 * BLK, .off = 6 * BLK, .len = BLK };
		assert_int_equal(backing_submit(f, reqs, 4), -ENOSPC);
		assert_int_equal(reqs[0].res, 0);
		assert_int_equal(reqs[1].res, -ENOSPC);
		assert_int_equal(reqs[2].res, 0);
		assert_int_equal(reqs[3].res, 0);
	}
	expect(f, 0, 1, 51);
	expect(f, 1, 5, 50);
	expect(f, 6, 1, 51);
	/* Reads of the range are not affected. */
	expect(f, 4, 2, 50);

	faulty_get_counts(f, &c);
	assert_int_equal(c.failed[FAULTY_WRITE], 3);

	faulty_clear(f);
	assert_int_equal(backing_submit(f, &reqs[1], 1), 0);
	expect(f, 3, 2, 51);
	faulty_get_counts(f, &c);
	assert_int_equal(c.failed[FAULTY_WRITE], 3);
	backing_close(f);
	free(buf);
	rm_img("range");
}

/* The wrapper passes registered buffers down. */
static void test_fault_passes_fixed(void **state)
{
	struct backing *f;
	struct iovec iov[NR_BUFS];
	char *bufs[NR_BUFS];
	unsigned int i;

	(void)state;
	f = open_faulty("ffixed");
	for (i = 0; i < NR_BUFS; i++) {
		bufs[i] = abuf(BUF_BLKS * BLK);
		iov[i] = (struct iovec){ bufs[i], BUF_BLKS * BLK };
	}
	assert_int_equal(backing_register_buffers(f, iov, NR_BUFS), 0);
	assert_int_equal(fixed_round_trip(f, bufs, 7, 60), 0);
	assert_int_equal(faulty_fail_nth(f, FAULTY_WRITE, 1, -EIO), 0);
	assert_int_equal(fixed_round_trip(f, bufs, 7, 61), -EIO);
	assert_int_equal(backing_unregister_buffers(f), 0);
	expect(f, 7, 4, 60);
	backing_close(f);
	for (i = 0; i < NR_BUFS; i++)
		free(bufs[i]);
	rm_img("ffixed");
}

/* ---- Main ---------------------------------------------------------------- */

/* Does the test directory do O_DIRECT? If not, say so and go buffered. */
static int pick_mode(void **state)
{
	(void)state;
	return testimg_probe("test_backing");
}

static int teardown(void **state)
{
	(void)state;
	return testimg_cleanup();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_size_and_grow),
		cmocka_unit_test(test_rdonly),
		cmocka_unit_test(test_block_device),
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_misaligned_rejected),
		cmocka_unit_test(test_batch_64),
		cmocka_unit_test(test_batch_larger_than_ring),
		cmocka_unit_test(test_flush_is_barrier),
		cmocka_unit_test(test_short_read_at_eof),
		cmocka_unit_test(test_short_transfers_resubmitted),
		cmocka_unit_test(test_eagain_retried),
		cmocka_unit_test(test_flush),
		cmocka_unit_test(test_threads_own_rings),
		cmocka_unit_test(test_close_before_thread_exit),
		cmocka_unit_test(test_registered_buffers),
		cmocka_unit_test(test_fault_nth_write),
		cmocka_unit_test(test_fault_read_and_flush),
		cmocka_unit_test(test_fault_range),
		cmocka_unit_test(test_fault_passes_fixed),
	};

	return cmocka_run_group_tests(tests, pick_mode, teardown);
}
