/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_writeback.c - writeback policy through the real engine: fsync is
 * not starved by a writer that keeps dirtying the same file (law 10),
 * writers far faster than the disk are throttled so dirty memory stays
 * bounded, the flusher writes expired data without any fsync, and a
 * writeback that starts in the middle of a dirty large folio writes all
 * of it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "foliofs.h"
#include "isolate.h"
#include "testimg.h"

#define MIB	(1UL << 20)

static char img[4096];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct foliofs *mount_fresh(uint64_t size, struct foliofs_mount_opts *o)
{
	struct foliofs_mkfs_opts mo = { .size = size, .force = 1 };
	struct foliofs *fs;

	testimg_path(img, sizeof(img), "wb");
	assert_int_equal(foliofs_mkfs(img, &mo), 0);
	o->no_direct = (int)testimg_open_flags;
	assert_int_equal(foliofs_mount(img, o, &fs), 0);
	return fs;
}

static struct foliofs_stats stats(struct foliofs *fs)
{
	struct foliofs_stats st;

	assert_int_equal(foliofs_stats(fs, &st), 0);
	return st;
}

struct writer {
	struct foliofs_file	*f;
	bool			stop;		/* atomic */
	unsigned long		writes;		/* atomic */
	int			err;
};

static void *steady_writer(void *arg)
{
	struct writer *w = arg;
	char buf[4096];
	uint64_t i = 0;

	foliofs_thread_init();
	memset(buf, 0x61, sizeof(buf));
	while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED)) {
		/* Keep redirtying a 16 MiB window, forever. */
		ssize_t n = foliofs_write(w->f, buf, sizeof(buf),
					  (i++ % 4096) * 4096);

		if (n != (ssize_t)sizeof(buf)) {
			w->err = (int)n;
			break;
		}
		__atomic_add_fetch(&w->writes, 1, __ATOMIC_RELAXED);
	}
	foliofs_thread_exit();
	return NULL;
}

/* Law 10: fsync writes what was dirty when it started, then returns. */
static void test_fsync_not_starved(void **state)
{
	struct foliofs_mount_opts o = { .dirty_expire_ms = 60000,
					.commit_ms = 60000 };
	struct foliofs *fs = mount_fresh(256 * MIB, &o);
	struct writer w = { 0 };
	pthread_t t;
	double worst = 0;
	int i;

	assert_int_equal(foliofs_open_path(fs, "/busy", O_CREAT | O_RDWR, 0644,
					   &w.f), 0);
	assert_int_equal(pthread_create(&t, NULL, steady_writer, &w), 0);
	while (__atomic_load_n(&w.writes, __ATOMIC_RELAXED) < 1000)
		usleep(1000);
	for (i = 0; i < 5; i++) {
		double t0 = now_s(), dt;

		assert_int_equal(foliofs_fsync(w.f, 0), 0);
		dt = now_s() - t0;
		if (dt > worst)
			worst = dt;
	}
	__atomic_store_n(&w.stop, true, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	assert_int_equal(w.err, 0);
	/* 16 MiB at most to write each time: seconds, not unbounded. */
	printf("# worst fsync under a steady writer: %.3f s (%lu writes)\n",
	       worst, w.writes);
	assert_true(worst < 20.0);
	foliofs_release(w.f);
	assert_int_equal(foliofs_unmount(fs), 0);
}

struct sampler {
	struct foliofs	*fs;
	bool		stop;		/* atomic */
	uint64_t	max_dirty;
};

static void *sample_dirty(void *arg)
{
	struct sampler *s = arg;

	foliofs_thread_init();
	while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
		struct foliofs_stats st;

		foliofs_stats(s->fs, &st);
		if (st.dirty_bytes > s->max_dirty)
			s->max_dirty = st.dirty_bytes;
		usleep(200);
	}
	foliofs_thread_exit();
	return NULL;
}

/*
 * A writer is held near the dirty limit. The flusher only starts at the
 * limit itself (background = limit, nothing expires), so the writer must
 * cross it and be throttled however fast or slow the build is.
 */
static void test_throttle_bounds_dirty(void **state)
{
	struct foliofs_mount_opts o = { .cache_bytes = 64 * MIB,
					.dirty_bytes = 8 * MIB,
					.dirty_background_bytes = 8 * MIB,
					.dirty_expire_ms = 600000,
					.commit_ms = 600000 };
	struct foliofs *fs = mount_fresh(512 * MIB, &o);
	struct foliofs_file *f;
	struct sampler s = { .fs = fs };
	pthread_t t;
	char *buf = malloc(MIB);
	unsigned int i;

	memset(buf, 0x42, MIB);
	assert_int_equal(foliofs_open_path(fs, "/fast", O_CREAT | O_RDWR, 0644,
					   &f), 0);
	assert_int_equal(pthread_create(&t, NULL, sample_dirty, &s), 0);
	for (i = 0; i < 192; i++)
		assert_int_equal(foliofs_write(f, buf, MIB, (uint64_t)i * MIB),
				 (ssize_t)MIB);
	__atomic_store_n(&s.stop, true, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	printf("# peak dirty %.1f MiB with a limit of 8 MiB, %lu throttled\n",
	       s.max_dirty / (double)MIB,
	       (unsigned long)stats(fs).throttled_writes);
	/* The limit plus what writers add between two checks (one 1 MiB
	 * write each) plus the folio being filled. */
	assert_true(s.max_dirty <= 8 * MIB + 4 * MIB);
	assert_true(stats(fs).throttled_writes > 0);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(stats(fs).dirty_bytes, 0);
	assert_int_equal(stats(fs).reserved_blocks, 0);
	foliofs_release(f);
	assert_int_equal(foliofs_unmount(fs), 0);
	free(buf);
}

/* Without any fsync, expired dirty data is written and committed. */
static void test_expired_data_written(void **state)
{
	struct foliofs_mount_opts o = { .dirty_expire_ms = 100,
					.commit_ms = 200 };
	struct foliofs *fs = mount_fresh(64 * MIB, &o);
	struct foliofs_file *f;
	char buf[8192];
	double t0;

	memset(buf, 0x37, sizeof(buf));
	assert_int_equal(foliofs_open_path(fs, "/old", O_CREAT | O_RDWR, 0644,
					   &f), 0);
	assert_int_equal(foliofs_write(f, buf, sizeof(buf), 0), sizeof(buf));
	assert_true(stats(fs).dirty_bytes >= sizeof(buf));
	/* Copied-out folios are clean before their I/O ends: wait for both. */
	t0 = now_s();
	while ((stats(fs).dirty_bytes || stats(fs).written_bytes < sizeof(buf)) &&
	       now_s() - t0 < 10)
		usleep(10000);
	assert_int_equal(stats(fs).dirty_bytes, 0);
	assert_true(stats(fs).written_bytes >= sizeof(buf));
	t0 = now_s();
	while (!stats(fs).commits && now_s() - t0 < 10)
		usleep(10000);
	assert_true(stats(fs).commits > 0);
	foliofs_release(f);
	assert_int_equal(foliofs_unmount(fs), 0);
}

/*
 * A 2 MiB folio dirtied only in its last block, written back by fsync:
 * the walk finds the folio from its first index and writes that block.
 */
static void test_tail_block_of_large_folio(void **state)
{
	struct foliofs_mount_opts o = { 0 };
	struct foliofs *fs = mount_fresh(64 * MIB, &o);
	struct foliofs_file *f;
	char *buf = calloc(1, 2 * MIB), *back = malloc(2 * MIB);

	assert_int_equal(foliofs_open_path(fs, "/tail", O_CREAT | O_RDWR, 0644,
					   &f), 0);
	assert_int_equal(foliofs_write(f, buf, 2 * MIB, 0), (ssize_t)(2 * MIB));
	assert_int_equal(foliofs_fsync(f, 0), 0);
	memset(buf + 2 * MIB - 4096, 0x7e, 4096);
	assert_int_equal(foliofs_write(f, buf + 2 * MIB - 4096, 4096,
				       2 * MIB - 4096), 4096);
	assert_int_equal(stats(fs).dirty_bytes, 4096);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(stats(fs).dirty_bytes, 0);
	foliofs_release(f);
	assert_int_equal(foliofs_unmount(fs), 0);
	o.no_direct = (int)testimg_open_flags;
	assert_int_equal(foliofs_mount(img, &o, &fs), 0);
	assert_int_equal(foliofs_open_path(fs, "/tail", O_RDONLY, 0, &f), 0);
	assert_int_equal(foliofs_read(f, back, 2 * MIB, 0), (ssize_t)(2 * MIB));
	assert_memory_equal(back, buf, 2 * MIB);
	foliofs_release(f);
	assert_int_equal(foliofs_unmount(fs), 0);
	free(buf);
	free(back);
}

/*
 * A 1-byte punch at the start of a block that is on disk: after the
 * folio is evicted, the byte reads zero from the store (the tail edge of
 * the punch is the only partial block).
 */
static void test_punch_aligned_byte_after_evict(void **state)
{
	struct foliofs_mount_opts o = { .cache_bytes = 4 * MIB };
	struct foliofs *fs = mount_fresh(128 * MIB, &o);
	struct foliofs_file *f, *g;
	char *buf = malloc(MIB);
	unsigned int i;
	char c;

	memset(buf, 0xe3, MIB);
	assert_int_equal(foliofs_open_path(fs, "/p", O_CREAT | O_RDWR, 0644, &f), 0);
	assert_int_equal(foliofs_write(f, buf, 64 * 1024, 0), 64 * 1024);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	for (i = 0; i < 4; i++) {
		uint64_t off = 4096 * (1 + 3 * i) + (i == 3 ? 1 : 0);

		assert_int_equal(foliofs_fallocate(f, FALLOC_FL_PUNCH_HOLE |
						   FALLOC_FL_KEEP_SIZE, off, 1), 0);
	}
	assert_int_equal(foliofs_fsync(f, 0), 0);
	/* Push the file out of the 4 MiB cache. */
	assert_int_equal(foliofs_open_path(fs, "/q", O_CREAT | O_RDWR, 0644, &g), 0);
	for (i = 0; i < 24; i++)
		assert_int_equal(foliofs_write(g, buf, MIB, (uint64_t)i * MIB),
				 (ssize_t)MIB);
	assert_int_equal(foliofs_fsync(g, 0), 0);
	for (i = 0; i < 24; i++)
		assert_int_equal(foliofs_read(g, buf, MIB, (uint64_t)i * MIB),
				 (ssize_t)MIB);
	for (i = 0; i < 4; i++) {
		uint64_t off = 4096 * (1 + 3 * i) + (i == 3 ? 1 : 0);

		assert_int_equal(foliofs_read(f, &c, 1, off), 1);
		assert_int_equal(c, 0);
		assert_int_equal(foliofs_read(f, &c, 1, off + 1), 1);
		assert_int_equal((unsigned char)c, 0xe3);
	}
	foliofs_release(f);
	foliofs_release(g);
	assert_int_equal(foliofs_unmount(fs), 0);
	free(buf);
}

/*
 * fallocate over blocks a write just dirtied (still delalloc, in the
 * folio at the end of the file that background writeback leaves to the
 * appender): the blocks get their extents from their reservations, none
 * is left reserved, and the data is intact after a remount.
 */
static void test_fallocate_over_fresh_writes(void **state)
{
	struct foliofs_mount_opts o = { 0 };
	struct foliofs *fs = mount_fresh(64 * MIB, &o);
	struct foliofs_file *f;
	char buf[3 * 4096], back[sizeof(buf)];

	memset(buf, 0x5d, sizeof(buf));
	assert_int_equal(foliofs_open_path(fs, "/fa", O_CREAT | O_RDWR, 0644, &f), 0);
	assert_int_equal(foliofs_write(f, buf, sizeof(buf), 0), sizeof(buf));
	assert_int_equal(stats(fs).reserved_blocks, 3);
	assert_int_equal(foliofs_fallocate(f, 0, 0, MIB), 0);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(stats(fs).reserved_blocks, 0);
	foliofs_release(f);
	assert_int_equal(foliofs_unmount(fs), 0);
	o.no_direct = (int)testimg_open_flags;
	assert_int_equal(foliofs_mount(img, &o, &fs), 0);
	assert_int_equal(foliofs_open_path(fs, "/fa", O_RDONLY, 0, &f), 0);
	assert_int_equal(foliofs_read(f, back, sizeof(back), 0), sizeof(back));
	assert_memory_equal(back, buf, sizeof(buf));
	foliofs_release(f);
	assert_int_equal(foliofs_unmount(fs), 0);
}

static int setup(void **state)
{
	return testimg_probe("test_writeback");
}

static int teardown(void **state)
{
	return testimg_cleanup();
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fsync_not_starved, setup, teardown),
		cmocka_unit_test_setup_teardown(test_throttle_bounds_dirty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expired_data_written, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tail_block_of_large_folio, setup, teardown),
		cmocka_unit_test_setup_teardown(test_punch_aligned_byte_after_evict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fallocate_over_fresh_writes, setup, teardown),
	};

	return run_isolated(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
