/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_crashsim.c - the crash simulator. A scripted workload of batched
 * writes and flushes runs through a simulator over a real O_DIRECT store;
 * then, for every crash point, every mode and several seeds, the image is
 * checked sector by sector against the script:
 *  - every write that completed before the last completed flush is there
 *    (unless a later write to the same sector replaced it);
 *  - every 512-byte sector comes whole from the base or from one recorded
 *    write at that offset, cut no later than the crash point (writes carry
 *    patterns that name them and their offset);
 *  - DROP keeps only what flushes covered, APPLY keeps everything;
 *  - RANDOM applies or drops each uncertain write whole; TORN also tears,
 *    but only at sector boundaries and only as a prefix of its sectors;
 *  - the same seed gives the same image, and different seeds differ.
 * Also: the record itself (order, flush cover), failed writes and failed
 * flushes (through the fault injector) never count as durable, an empty
 * base, a sparse base staying sparse, and argument checks.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backing.h"
#include "testimg.h"
#include "crashsim.h"
#include "faulty.h"

#define BLK		BACKING_BLOCK_SIZE
#define SECTOR		BACKING_SECTOR_SIZE
#define SECTORS_PER_BLK	(BLK / SECTOR)

#define REGION_BLKS	32		/* the workload writes below this */
#define BASE_BLKS	24		/* the base image's size */
#define NR_STEPS	60
#define NR_SEEDS	8
#define BASE_TAG	0xba5eU
#define ZERO_TAG	0U		/* an all-zero sector */
#define BAD_TAG		0xffffffffU	/* not one source's pattern */

/* ---- Patterns ------------------------------------------------------------ */

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

/* Which source wrote the sector at byte @pos: a tag, ZERO_TAG or BAD_TAG. */
static unsigned int sector_source(const void *sector, uint64_t pos)
{
	const uint64_t *w = sector;
	uint64_t tag;
	size_t i, zero = 0;

	for (i = 0; i < SECTOR / 8; i++)
		zero += !w[i];
	if (zero == SECTOR / 8)
		return ZERO_TAG;
	tag = (w[0] ^ pat(0, pos)) >> 48;
	for (i = 0; i < SECTOR / 8; i++)
		if (w[i] != pat(tag, pos + 8 * i))
			return BAD_TAG;
	return tag;
}

/* ---- Files --------------------------------------------------------------- */

static void *abuf(size_t len)
{
	void *p = aligned_alloc(BLK, len);

	assert_non_null(p);
	return p;
}

/*
 * A file @name holding @base_blks blocks of BASE_TAG's pattern, opened as a
 * store; wrapped in a fault injector if @faulty; then in a simulator whose
 * base is that file.
 */
static struct backing *open_sim(const char *name, unsigned int base_blks,
				struct backing **faulty)
{
	struct backing *b, *sim = NULL;
	char path[4096];
	void *buf;
	int fd;

	testimg_path(path, sizeof(path), name);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	assert_true(fd >= 0);
	if (base_blks) {
		buf = abuf((size_t)base_blks * BLK);
		fill(buf, 0, (size_t)base_blks * BLK, BASE_TAG);
		assert_int_equal(pwrite(fd, buf, (size_t)base_blks * BLK, 0),
				 (ssize_t)base_blks * BLK);
		free(buf);
	}
	assert_int_equal(fsync(fd), 0);

	assert_int_equal(backing_open(path, testimg_open_flags, &b), 0);
	if (faulty) {
		assert_int_equal(faulty_create(b, faulty), 0);
		b = *faulty;
	}
	assert_int_equal(crashsim_create(b, fd, &sim), 0);
	close(fd);
	assert_non_null(sim);
	return sim;
}

static void rm_img(const char *name)
{
	char path[4096];

	testimg_path(path, sizeof(path), name);
	unlink(path);
}

static int new_memfd(void)
{
	int fd = memfd_create("test-image", MFD_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

/* Read image @fd into @buf (@len bytes; zeroes past its end); its size. */
static uint64_t read_image(int fd, void *buf, size_t len)
{
	struct stat st;
	ssize_t n;

	assert_int_equal(fstat(fd, &st), 0);
	memset(buf, 0, len);
	n = pread(fd, buf, len, 0);
	assert_true(n >= 0);
	return st.st_size;
}

/* ---- The scripted workload ----------------------------------------------- */

struct step {
	bool		flush;
	bool		batch_end;	/* last step of its batch */
	uint32_t	blk, nblk;
};

static struct step script[NR_STEPS];

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1103515245U + 12345U;
	return *s >> 16;
}

/*
 * Writes of 1-3 blocks anywhere below REGION_BLKS (some past the base),
 * a flush every few steps, batches of 1-4 steps that may contain flushes.
 * Writes in one batch with no flush between them never overlap: their order
 * on the device is undefined, so the live file could not be compared.
 */
static void make_script(void)
{
	uint32_t s = 12345, i, j, seg_start = 0;
	bool overlap;

	for (i = 0; i < NR_STEPS; i++) {
		script[i] = (struct step){ 0 };
		if (i % 7 == 6 || lcg(&s) % 9 == 0) {
			script[i].flush = true;
			seg_start = i + 1;
		} else {
			do {
				script[i].nblk = 1 + lcg(&s) % 3;
				script[i].blk = lcg(&s) %
					(REGION_BLKS - script[i].nblk + 1);
				overlap = false;
				for (j = seg_start; j < i; j++)
					if (!script[j].flush &&
					    script[j].blk < script[i].blk +
							    script[i].nblk &&
					    script[i].blk < script[j].blk +
							    script[j].nblk)
						overlap = true;
			} while (overlap);
		}
		script[i].batch_end = i == NR_STEPS - 1 || lcg(&s) % 3 == 0;
		if (script[i].batch_end)
			seg_start = i + 1;
	}
}

/* Run the script through @sim in its batches. Step i writes tag i + 1. */
static void run_script(struct backing *sim)
{
	struct backing_req reqs[NR_STEPS];
	char *bufs[NR_STEPS];
	unsigned int i, first = 0;

	for (i = 0; i < NR_STEPS; i++) {
		bufs[i] = NULL;
		if (script[i].flush) {
			reqs[i] = (struct backing_req){
				.op = i % 2 ? BACKING_OP_FDATASYNC
					    : BACKING_OP_FSYNC };
		} else {
			bufs[i] = abuf((size_t)script[i].nblk * BLK);
			fill(bufs[i], (uint64_t)script[i].blk * BLK,
			     (size_t)script[i].nblk * BLK, i + 1);
			reqs[i] = (struct backing_req){
				.op = BACKING_OP_WRITE, .buf = bufs[i],
				.off = (uint64_t)script[i].blk * BLK,
				.len = script[i].nblk * BLK };
		}
		if (script[i].batch_end) {
			assert_int_equal(backing_submit(sim, reqs + first,
							i + 1 - first), 0);
			first = i + 1;
		}
	}
	for (i = 0; i < NR_STEPS; i++)
		free(bufs[i]);
}

static bool covers(unsigned int step, uint64_t sector)
{
	uint64_t first = (uint64_t)script[step].blk * SECTORS_PER_BLK;

	return !script[step].flush && sector >= first &&
	       sector < first + (uint64_t)script[step].nblk * SECTORS_PER_BLK;
}

struct tally {
	unsigned long	applied, dropped, torn;
};

/*
 * Check the image of a cut after @n steps, in @mode. @img holds
 * REGION_BLKS blocks (zeroes past the image's end). Every flush of the
 * script succeeds, and a flush at step f covers steps 0..f-1.
 */
static void check_image(const char *img, uint64_t size, unsigned int n,
			enum crashsim_mode mode, struct tally *t)
{
	static unsigned int src[REGION_BLKS * SECTORS_PER_BLK];
	unsigned int cover = 0, i, j;
	uint64_t s, pos, end = (uint64_t)BASE_BLKS * BLK;
	int certain, any;
	unsigned int present, visible, base;
	bool gap;

	for (i = n; i-- > 0;)
		if (script[i].flush) {
			cover = i;
			break;
		}

	for (s = 0; s < REGION_BLKS * SECTORS_PER_BLK; s++) {
		pos = s * SECTOR;
		src[s] = sector_source(img + pos, pos);
		assert_int_not_equal(src[s], BAD_TAG);

		certain = any = -1;
		for (i = 0; i < n; i++) {
			if (!covers(i, s))
				continue;
			any = i;
			if (i < cover)
				certain = i;
		}
		if (src[s] == BASE_TAG || src[s] == ZERO_TAG) {
			/* Durable data never goes missing. */
			assert_int_equal(certain, -1);
			/* The base is the base: data below its end, zeroes after. */
			assert_int_equal(src[s] == BASE_TAG, pos < BASE_BLKS * BLK);
		} else {
			i = src[s] - 1;
			/* Only a write cut before the crash, at this offset... */
			assert_true(i < n);
			assert_true(covers(i, s));
			/* ...and never one older than a durable one. */
			assert_true((int)i >= certain);
			if (pos + SECTOR > end)
				end = pos + SECTOR;
		}
		base = pos < BASE_BLKS * BLK ? BASE_TAG : ZERO_TAG;
		if (mode == CRASHSIM_DROP)
			assert_int_equal(src[s], certain >= 0 ?
					 (unsigned int)certain + 1 : base);
		if (mode == CRASHSIM_APPLY)
			assert_int_equal(src[s], any >= 0 ?
					 (unsigned int)any + 1 : base);
	}
	/* The image ends with the last write applied past the base. */
	assert_true(size >= (uint64_t)BASE_BLKS * BLK);
	assert_true(size >= end);

	/*
	 * Each uncertain write, on the sectors no later write covers: all or
	 * nothing (RANDOM), or a prefix (TORN).
	 */
	for (i = cover; i < n; i++) {
		if (script[i].flush)
			continue;
		present = visible = 0;
		gap = false;
		for (s = (uint64_t)script[i].blk * SECTORS_PER_BLK;
		     covers(i, s); s++) {
			for (j = i + 1; j < n && !covers(j, s); j++)
				;
			if (j < n)
				continue;
			visible++;
			if (src[s] == i + 1) {
				/* Torn writes keep a prefix, never a middle. */
				assert_false(gap);
				present++;
			} else {
				gap = true;
			}
		}
		if (!visible)
			continue;
		if (present == visible)
			t->applied++;
		else if (!present)
			t->dropped++;
		else
			t->torn++;
		if (mode != CRASHSIM_TORN)
			assert_true(present == 0 || present == visible);
	}
}

/* ---- Tests --------------------------------------------------------------- */

/* The record: one op per step, in script order; a flush covers all before. */
static void test_record(void **state)
{
	struct crashsim_op_info info;
	struct backing *sim;
	unsigned int i;

	(void)state;
	sim = open_sim("record", BASE_BLKS, NULL);
	assert_int_equal(crashsim_points(sim), 0);
	run_script(sim);
	assert_int_equal(crashsim_points(sim), NR_STEPS);
	for (i = 0; i < NR_STEPS; i++) {
		assert_int_equal(crashsim_op(sim, i, &info), 0);
		assert_int_equal(info.res, 0);
		if (script[i].flush) {
			assert_int_equal(info.kind, CRASHSIM_FLUSH);
			assert_int_equal(info.cover, i);
			continue;
		}
		assert_int_equal(info.kind, CRASHSIM_WRITE);
		assert_int_equal(info.off, (uint64_t)script[i].blk * BLK);
		assert_int_equal(info.len, script[i].nblk * BLK);
		assert_int_equal(((const uint64_t *)info.data)[0],
				 pat(i + 1, info.off));
	}
	assert_int_equal(crashsim_op(sim, NR_STEPS, &info), -EINVAL);
	backing_close(sim);
	rm_img("record");
}

/* Everything applied is exactly the file the store wrote. */
static void test_apply_matches_live_file(void **state)
{
	char *img = abuf(REGION_BLKS * BLK), *live = abuf(REGION_BLKS * BLK);
	struct backing *sim;
	char path[4096];
	int fd, out = new_memfd();

	(void)state;
	sim = open_sim("live", BASE_BLKS, NULL);
	run_script(sim);
	assert_int_equal(crashsim_make_image(sim, 1, CRASHSIM_APPLY, out), 0);
	read_image(out, img, REGION_BLKS * BLK);

	testimg_path(path, sizeof(path), "live");
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	read_image(fd, live, REGION_BLKS * BLK);
	close(fd);
	assert_memory_equal(img, live, REGION_BLKS * BLK);

	backing_close(sim);
	close(out);
	free(img);
	free(live);
	rm_img("live");
}

/* Every crash point, every mode, several seeds. */
static void test_every_crash_point(void **state)
{
	char *img = abuf(REGION_BLKS * BLK), *again = abuf(REGION_BLKS * BLK);
	struct tally t[CRASHSIM_TORN + 1];
	struct backing *sim;
	unsigned int n, mode, seed, seeds;
	uint64_t size;
	int out = new_memfd();
	bool differ = false;

	(void)state;
	memset(t, 0, sizeof(t));
	sim = open_sim("points", BASE_BLKS, NULL);
	run_script(sim);
	assert_int_equal(crashsim_points(sim), NR_STEPS);

	for (n = 0; n <= NR_STEPS; n++) {
		for (mode = CRASHSIM_DROP; mode <= CRASHSIM_TORN; mode++) {
			seeds = mode >= CRASHSIM_RANDOM ? NR_SEEDS : 1;
			for (seed = 1; seed <= seeds; seed++) {
				assert_int_equal(crashsim_make_image_at(sim, n,
						seed, mode, out), 0);
				size = read_image(out, img, REGION_BLKS * BLK);
				check_image(img, size, n, mode, &t[mode]);
				if (seed != 2)
					continue;
				/* Same seed, same image; another, another. */
				assert_int_equal(crashsim_make_image_at(sim, n,
						seed, mode, out), 0);
				read_image(out, again, REGION_BLKS * BLK);
				assert_memory_equal(img, again,
						    REGION_BLKS * BLK);
				assert_int_equal(crashsim_make_image_at(sim, n,
						seed + 100, mode, out), 0);
				read_image(out, again, REGION_BLKS * BLK);
				differ |= memcmp(img, again,
						 REGION_BLKS * BLK) != 0;
			}
		}
	}
	print_message("random: %lu applied, %lu dropped; torn: %lu applied, "
		      "%lu dropped, %lu torn\n",
		      t[CRASHSIM_RANDOM].applied, t[CRASHSIM_RANDOM].dropped,
		      t[CRASHSIM_TORN].applied, t[CRASHSIM_TORN].dropped,
		      t[CRASHSIM_TORN].torn);
	/* The modes do what they say, not something safer. */
	assert_int_equal(t[CRASHSIM_DROP].applied, 0);
	assert_int_equal(t[CRASHSIM_APPLY].dropped, 0);
	assert_true(t[CRASHSIM_RANDOM].applied > 0);
	assert_true(t[CRASHSIM_RANDOM].dropped > 0);
	assert_int_equal(t[CRASHSIM_RANDOM].torn, 0);
	assert_true(t[CRASHSIM_TORN].applied > 0);
	assert_true(t[CRASHSIM_TORN].dropped > 0);
	assert_true(t[CRASHSIM_TORN].torn > 0);
	assert_true(differ);

	/* The cut at the end is the default. */
	assert_int_equal(crashsim_make_image(sim, 5, CRASHSIM_TORN, out), 0);
	read_image(out, img, REGION_BLKS * BLK);
	assert_int_equal(crashsim_make_image_at(sim, NR_STEPS, 5,
						CRASHSIM_TORN, out), 0);
	read_image(out, again, REGION_BLKS * BLK);
	assert_memory_equal(img, again, REGION_BLKS * BLK);

	backing_close(sim);
	close(out);
	free(img);
	free(again);
	rm_img("points");
}

/* Is block @blk of @img all @tag's pattern? */
static bool has(const char *img, uint64_t blk, unsigned int tag)
{
	uint64_t s;

	for (s = blk * SECTORS_PER_BLK; s < (blk + 1) * SECTORS_PER_BLK; s++)
		if (sector_source(img + s * SECTOR, s * SECTOR) != tag)
			return false;
	return true;
}

/*
 * A failed write is never durable, not even under a later flush; a failed
 * flush makes nothing durable.
 */
static void test_failures_not_durable(void **state)
{
	char *img = abuf(REGION_BLKS * BLK), *buf = abuf(BLK);
	struct crashsim_op_info info;
	struct backing *sim, *faulty;
	unsigned int seed, b_seen = 0;
	int out = new_memfd();

	(void)state;
	sim = open_sim("fail", 8, &faulty);
	/* op 0: A, block 0. op 1: flush. */
	fill(buf, 0, BLK, 1);
	assert_int_equal(backing_write(sim, buf, 0, BLK), 0);
	assert_int_equal(backing_fdatasync(sim), 0);
	/* op 2: B, block 1, fails. op 3: C, block 2. */
	assert_int_equal(faulty_fail_nth(faulty, FAULTY_WRITE, 1, -EIO), 0);
	fill(buf, BLK, BLK, 2);
	assert_int_equal(backing_write(sim, buf, BLK, BLK), -EIO);
	fill(buf, 2 * BLK, BLK, 3);
	assert_int_equal(backing_write(sim, buf, 2 * BLK, BLK), 0);
	/* op 4: a flush that fails. op 5: D, block 3. */
	assert_int_equal(faulty_fail_nth(faulty, FAULTY_FLUSH, 1, -EIO), 0);
	assert_int_equal(backing_fdatasync(sim), -EIO);
	fill(buf, 3 * BLK, BLK, 4);
	assert_int_equal(backing_write(sim, buf, 3 * BLK, BLK), 0);

	assert_int_equal(crashsim_points(sim), 6);
	assert_int_equal(crashsim_op(sim, 2, &info), 0);
	assert_int_equal(info.kind, CRASHSIM_WRITE);
	assert_int_equal(info.res, -EIO);
	assert_int_equal(crashsim_op(sim, 4, &info), 0);
	assert_int_equal(info.kind, CRASHSIM_FLUSH);
	assert_int_equal(info.res, -EIO);
	assert_int_equal(info.cover, 4);

	/* Only A is durable: the flush after C failed. */
	assert_int_equal(crashsim_make_image(sim, 1, CRASHSIM_DROP, out), 0);
	read_image(out, img, REGION_BLKS * BLK);
	assert_true(has(img, 0, 1));
	assert_true(has(img, 1, BASE_TAG));
	assert_true(has(img, 2, BASE_TAG));
	assert_true(has(img, 3, BASE_TAG));
	/* APPLY: what succeeded; the failed write did not. */
	assert_int_equal(crashsim_make_image(sim, 1, CRASHSIM_APPLY, out), 0);
	read_image(out, img, REGION_BLKS * BLK);
	assert_true(has(img, 0, 1));
	assert_true(has(img, 1, BASE_TAG));
	assert_true(has(img, 2, 3));
	assert_true(has(img, 3, 4));

	/* op 6: a flush that works: C and D durable, B still not. */
	assert_int_equal(backing_fsync(sim), 0);
	assert_int_equal(crashsim_make_image(sim, 1, CRASHSIM_DROP, out), 0);
	read_image(out, img, REGION_BLKS * BLK);
	assert_true(has(img, 0, 1));
	assert_true(has(img, 1, BASE_TAG));
	assert_true(has(img, 2, 3));
	assert_true(has(img, 3, 4));
	/* B may have reached the disk in part before it failed. */
	for (seed = 0; seed < 32; seed++) {
		assert_int_equal(crashsim_make_image(sim, seed, CRASHSIM_RANDOM,
						     out), 0);
		read_image(out, img, REGION_BLKS * BLK);
		assert_true(has(img, 0, 1));
		assert_true(has(img, 2, 3));
		assert_true(has(img, 3, 4));
		assert_true(has(img, 1, BASE_TAG) || has(img, 1, 2));
		b_seen += has(img, 1, 2);
	}
	assert_true(b_seen > 0 && b_seen < 32);

	backing_close(sim);
	close(out);
	free(img);
	free(buf);
	rm_img("fail");
}

/* No base: the image starts empty and holes read as zeroes. */
static void test_empty_base(void **state)
{
	char *img = abuf(REGION_BLKS * BLK), *buf = abuf(2 * BLK);
	struct backing *b, *sim;
	char path[4096];
	uint64_t size;
	int out = new_memfd();

	(void)state;
	testimg_path(path, sizeof(path), "empty");
	unlink(path);
	assert_int_equal(backing_open(path, BACKING_CREATE | testimg_open_flags, &b), 0);
	assert_int_equal(crashsim_create(b, -1, &sim), 0);
	fill(buf, 5 * BLK, 2 * BLK, 7);
	assert_int_equal(backing_write(sim, buf, 5 * BLK, 2 * BLK), 0);
	assert_int_equal(backing_fdatasync(sim), 0);

	assert_int_equal(crashsim_make_image_at(sim, 0, 1, CRASHSIM_APPLY, out),
			 0);
	assert_int_equal(read_image(out, img, REGION_BLKS * BLK), 0);
	assert_int_equal(crashsim_make_image(sim, 1, CRASHSIM_DROP, out), 0);
	size = read_image(out, img, REGION_BLKS * BLK);
	assert_int_equal(size, 7 * BLK);
	assert_true(has(img, 4, ZERO_TAG));
	assert_true(has(img, 5, 7));
	assert_true(has(img, 6, 7));

	backing_close(sim);
	close(out);
	free(img);
	free(buf);
	unlink(path);
}

/* A large sparse base costs only its data, in the snapshot and the image. */
static void test_sparse_base_stays_sparse(void **state)
{
	struct backing *b, *sim;
	char path[4096];
	struct stat st;
	void *buf = abuf(BLK);
	int fd, out = new_memfd();
	unsigned int s;

	(void)state;
	testimg_path(path, sizeof(path), "sparse");
	unlink(path);
	assert_int_equal(backing_open(path, BACKING_CREATE | testimg_open_flags, &b), 0);
	assert_int_equal(backing_grow(b, 1ULL << 30), 0);
	fill(buf, 12345 * (uint64_t)BLK, BLK, 9);
	assert_int_equal(backing_write(b, buf, 12345 * (uint64_t)BLK, BLK), 0);
	assert_int_equal(backing_fdatasync(b), 0);

	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(crashsim_create(b, fd, &sim), 0);
	close(fd);
	assert_int_equal(crashsim_make_image(sim, 1, CRASHSIM_DROP, out), 0);
	assert_int_equal(fstat(out, &st), 0);
	assert_int_equal(st.st_size, 1ULL << 30);
	assert_true((uint64_t)st.st_blocks * 512 < (1U << 20));
	memset(buf, 0, BLK);
	assert_int_equal(pread(out, buf, BLK, 12345 * (uint64_t)BLK), BLK);
	for (s = 0; s < BLK / SECTOR; s++)
		assert_int_equal(sector_source((char *)buf + s * SECTOR,
					       12345 * (uint64_t)BLK +
					       s * SECTOR), 9);

	backing_close(sim);
	close(out);
	free(buf);
	unlink(path);
}

static void test_bad_arguments(void **state)
{
	struct crashsim_op_info info;
	struct backing *sim, *b;
	char path[4096], *buf = abuf(2 * BLK);
	int out = new_memfd();

	(void)state;
	sim = open_sim("args", 1, NULL);
	assert_int_equal(crashsim_make_image_at(sim, 1, 1, CRASHSIM_DROP, out),
			 -EINVAL);
	assert_int_equal(crashsim_make_image(sim, 1, (enum crashsim_mode)9,
					     out), -EINVAL);
	assert_int_equal(crashsim_op(sim, 0, &info), -EINVAL);
	/* Misaligned writes are refused and not recorded. */
	assert_int_equal(backing_write(sim, buf + 512, 0, BLK), -EINVAL);
	assert_int_equal(backing_write(sim, buf, 100, BLK), -EINVAL);
	assert_int_equal(crashsim_points(sim), 0);
	backing_close(sim);

	/* Not a simulator. */
	testimg_path(path, sizeof(path), "args");
	assert_int_equal(backing_open(path, testimg_open_flags, &b), 0);
	assert_int_equal(crashsim_make_image(b, 1, CRASHSIM_DROP, out),
			 -EINVAL);
	assert_int_equal(crashsim_op(b, 0, &info), -EINVAL);
	backing_close(b);
	close(out);
	free(buf);
	rm_img("args");
}

static int setup(void **state)
{
	(void)state;
	make_script();
	return testimg_probe("test_crashsim");
}

static int teardown(void **state)
{
	(void)state;
	return testimg_cleanup();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record),
		cmocka_unit_test(test_apply_matches_live_file),
		cmocka_unit_test(test_every_crash_point),
		cmocka_unit_test(test_failures_not_durable),
		cmocka_unit_test(test_empty_base),
		cmocka_unit_test(test_sparse_base_stays_sparse),
		cmocka_unit_test(test_bad_arguments),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
