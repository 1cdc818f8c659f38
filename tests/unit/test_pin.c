/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_pin.c - the zero-copy pin API of foliofs.h against the real engine,
 * and the race it exists to get right (DESIGN law 8): a large folio pinned
 * for writing is cleaned by writeback, then written through the pin and
 * unpinned dirty; the data must still reach the disk, with the block state
 * and the reservation counts right.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "foliofs.h"
#include "isolate.h"
#include "testimg.h"

#define MIB	(1UL << 20)

static char img[4096];

static struct foliofs *mount_fresh(uint64_t size, uint64_t cache)
{
	struct foliofs_mkfs_opts mo = { .size = size, .force = 1 };
	struct foliofs_mount_opts o = { .cache_bytes = cache,
					.no_direct = (int)testimg_open_flags };
	struct foliofs *fs;

	testimg_path(img, sizeof(img), "pin");
	assert_int_equal(foliofs_mkfs(img, &mo), 0);
	assert_int_equal(foliofs_mount(img, &o, &fs), 0);
	return fs;
}

static struct foliofs *remount(struct foliofs *fs)
{
	struct foliofs_mount_opts o = { .no_direct = (int)testimg_open_flags };

	assert_int_equal(foliofs_unmount(fs), 0);
	assert_int_equal(foliofs_fsck(img, 0, NULL, NULL), FOLIOFS_FSCK_OK);
	assert_int_equal(foliofs_mount(img, &o, &fs), 0);
	return fs;
}

static uint64_t reserved(struct foliofs *fs)
{
	struct foliofs_stats st;

	assert_int_equal(foliofs_stats(fs, &st), 0);
	return st.reserved_blocks;
}

static void fill(char *buf, size_t len, char seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(seed + i * 31 + (i >> 12));
}

/* Write @len bytes from @src through the iovecs of a pin. */
static void write_iov(const struct iovec *iov, unsigned int n, const char *src)
{
	for (unsigned int i = 0; i < n; i++) {
		memcpy(iov[i].iov_base, src, iov[i].iov_len);
		src += iov[i].iov_len;
	}
}

static void check_file(struct foliofs *fs, const char *path, const char *want,
		       size_t len)
{
	struct foliofs_file *f;
	char *got = malloc(len + 1);

	assert_non_null(got);
	assert_int_equal(foliofs_open_path(fs, path, O_RDONLY, 0, &f), 0);
	assert_int_equal(foliofs_read(f, got, len + 1, 0), (ssize_t)len);
	assert_memory_equal(got, want, len);
	foliofs_release(f);
	free(got);
}

/*
 * The seed race: a dirty 2 MiB folio is pinned for writing, writeback
 * cleans it (allocating its blocks and clearing their reservations), then
 * the holder writes and unpins dirty. Another fsync must write the new
 * bytes; nothing stays reserved.
 */
static void test_pin_survives_writeback(void **state)
{
	struct foliofs *fs = mount_fresh(64 * MIB, 0);
	struct foliofs_file *f;
	struct foliofs_pin *pin;
	struct iovec iov[8];
	unsigned int n;
	char *a = malloc(2 * MIB), *b = malloc(64 * 1024);

	fill(a, 2 * MIB, 1);
	fill(b, 64 * 1024, 77);
	assert_int_equal(foliofs_open_path(fs, "/f", O_CREAT | O_RDWR, 0644, &f), 0);
	assert_int_equal(foliofs_write(f, a, 2 * MIB, 0), (ssize_t)(2 * MIB));
	assert_int_equal(reserved(fs), 512);

	assert_int_equal(foliofs_pin_write(f, 40960, 64 * 1024, iov, 8, &n, &pin),
			 64 * 1024);
	assert_int_equal(n, 1);		/* one large folio */
	{
		struct foliofs_stats st;

		assert_int_equal(foliofs_stats(fs, &st), 0);
		assert_int_equal(st.pinned_folios, 1);
	}
	/* Writeback cleans the pinned folio and turns reservations into
	 * blocks. */
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(reserved(fs), 0);
	/* The holder writes now, after the clean. */
	write_iov(iov, n, b);
	foliofs_unpin(pin, FOLIOFS_UNPIN_DIRTY);
	memcpy(a + 40960, b, 64 * 1024);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(reserved(fs), 0);
	foliofs_release(f);

	fs = remount(fs);
	check_file(fs, "/f", a, 2 * MIB);
	assert_int_equal(foliofs_unmount(fs), 0);
	free(a);
	free(b);
}

/*
 * A write pin over new blocks reserves them; writeback of other dirty
 * blocks of the same folio must leave the pin's reservations alone, and
 * the dirty unpin then uses them.
 */
static void test_pin_reservations_kept_across_clean(void **state)
{
	struct foliofs *fs = mount_fresh(64 * MIB, 0);
	struct foliofs_file *f;
	struct foliofs_pin *pin;
	struct iovec iov[8];
	unsigned int n;
	char a[8192], b[16384], want[8192 + 16384];
	struct foliofs_attr at;

	fill(a, sizeof(a), 5);
	fill(b, sizeof(b), 9);
	assert_int_equal(foliofs_open_path(fs, "/g", O_CREAT | O_RDWR, 0644, &f), 0);
	assert_int_equal(foliofs_write(f, a, sizeof(a), 0), (ssize_t)sizeof(a));
	/* Two dirty blocks, then four pinned past EOF in the same folio. */
	assert_int_equal(foliofs_pin_write(f, sizeof(a), sizeof(b), iov, 8, &n,
					   &pin), (ssize_t)sizeof(b));
	assert_int_equal(reserved(fs), 2 + 4);
	/* Not dirty, not visible: the size has not moved. */
	assert_int_equal(foliofs_getattr(fs, foliofs_file_ino(f), &at), 0);
	assert_int_equal(at.size, sizeof(a));
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(reserved(fs), 4);
	write_iov(iov, n, b);
	foliofs_unpin(pin, FOLIOFS_UNPIN_DIRTY);
	assert_int_equal(foliofs_getattr(fs, foliofs_file_ino(f), &at), 0);
	assert_int_equal(at.size, sizeof(a) + sizeof(b));
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(reserved(fs), 0);
	foliofs_release(f);
	memcpy(want, a, sizeof(a));
	memcpy(want + sizeof(a), b, sizeof(b));
	fs = remount(fs);
	check_file(fs, "/g", want, sizeof(want));
	assert_int_equal(foliofs_unmount(fs), 0);
}

/* An unpin without DIRTY gives the pin's reservations back, changes
 * nothing. */
static void test_pin_clean_unpin_releases(void **state)
{
	struct foliofs *fs = mount_fresh(64 * MIB, 0);
	struct foliofs_file *f;
	struct foliofs_pin *pin;
	struct iovec iov[4];
	unsigned int n;
	struct foliofs_attr at;

	assert_int_equal(foliofs_open_path(fs, "/h", O_CREAT | O_RDWR, 0644, &f), 0);
	assert_int_equal(foliofs_pin_write(f, 0, 3 * 4096, iov, 4, &n, &pin),
			 3 * 4096);
	assert_int_equal(reserved(fs), 3);
	memset(iov[0].iov_base, 0x11, iov[0].iov_len);
	foliofs_unpin(pin, 0);
	assert_int_equal(reserved(fs), 0);
	assert_int_equal(foliofs_getattr(fs, foliofs_file_ino(f), &at), 0);
	assert_int_equal(at.size, 0);
	foliofs_release(f);
	assert_int_equal(foliofs_unmount(fs), 0);
}

/* Truncate while a write pin is held: the unpin finds the folio gone and
 * does nothing; the reservations went back with the truncate. */
static void test_pin_then_truncate(void **state)
{
	struct foliofs *fs = mount_fresh(64 * MIB, 0);
	struct foliofs_file *f;
	struct foliofs_pin *pin;
	struct iovec iov[4];
	unsigned int n;
	struct foliofs_attr in = { .size = 0 }, at;
	char a[4096 * 4];

	fill(a, sizeof(a), 3);
	assert_int_equal(foliofs_open_path(fs, "/t", O_CREAT | O_RDWR, 0644, &f), 0);
	assert_int_equal(foliofs_write(f, a, sizeof(a), 0), (ssize_t)sizeof(a));
	assert_int_equal(foliofs_pin_write(f, 4096, 4096, iov, 4, &n, &pin), 4096);
	assert_int_equal(foliofs_setattr(fs, foliofs_file_ino(f), &in,
					 FOLIOFS_SET_SIZE, &at), 0);
	memset(iov[0].iov_base, 0x22, 4096);
	foliofs_unpin(pin, FOLIOFS_UNPIN_DIRTY);
	assert_int_equal(foliofs_getattr(fs, foliofs_file_ino(f), &at), 0);
	assert_int_equal(at.size, 0);
	assert_int_equal(reserved(fs), 0);
	foliofs_release(f);
	assert_int_equal(foliofs_unmount(fs), 0);
}

/*
 * A read pin sees the data, and holds its folio while reclaim runs under
 * a cache far smaller than what another file streams through it.
 */
static void test_pin_read_survives_reclaim(void **state)
{
	struct foliofs *fs = mount_fresh(128 * MIB, 4 * MIB);
	struct foliofs_file *f, *g;
	struct foliofs_pin *pin;
	struct iovec iov[16];
	unsigned int n, i;
	char *a = malloc(MIB), *buf = malloc(MIB), *copy = malloc(MIB);
	size_t got = 0;

	fill(a, MIB, 7);
	assert_int_equal(foliofs_open_path(fs, "/r", O_CREAT | O_RDWR, 0644, &f), 0);
	assert_int_equal(foliofs_write(f, a, MIB, 0), (ssize_t)MIB);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(foliofs_pin_read(f, 0, MIB, iov, 16, &n, &pin),
			 (ssize_t)MIB);
	for (i = 0; i < n; i++)
		got += iov[i].iov_len;
	assert_int_equal(got, MIB);
	/* Stream 32 MiB through a 4 MiB cache. */
	assert_int_equal(foliofs_open_path(fs, "/s", O_CREAT | O_RDWR, 0644, &g), 0);
	for (i = 0; i < 32; i++)
		assert_int_equal(foliofs_write(g, buf, MIB, (uint64_t)i * MIB),
				 (ssize_t)MIB);
	assert_int_equal(foliofs_fsync(g, 0), 0);
	for (i = 0; i < 32; i++)
		assert_int_equal(foliofs_read(g, buf, MIB, (uint64_t)i * MIB),
				 (ssize_t)MIB);
	got = 0;
	for (i = 0; i < n; i++) {
		memcpy(copy + got, iov[i].iov_base, iov[i].iov_len);
		got += iov[i].iov_len;
	}
	assert_memory_equal(copy, a, MIB);
	foliofs_unpin(pin, 0);
	/* At EOF: nothing pinned. */
	assert_int_equal(foliofs_pin_read(f, MIB, 10, iov, 16, &n, &pin), 0);
	assert_null(pin);
	/* Wrong direction. */
	foliofs_release(g);
	assert_int_equal(foliofs_open_path(fs, "/s", O_RDONLY, 0, &g), 0);
	assert_int_equal(foliofs_pin_write(g, 0, 10, iov, 16, &n, &pin), -EBADF);
	foliofs_release(g);
	foliofs_release(f);
	assert_int_equal(foliofs_unmount(fs), 0);
	free(a);
	free(buf);
	free(copy);
}

/* A write pin on a full volume fails with ENOSPC, nothing held. */
static void test_pin_write_enospc(void **state)
{
	struct foliofs *fs = mount_fresh(8 * MIB, 0);
	struct foliofs_file *f;
	struct foliofs_pin *pin;
	struct iovec iov[64];
	unsigned int n;
	ssize_t ret;

	assert_int_equal(foliofs_open_path(fs, "/e", O_CREAT | O_RDWR, 0644, &f), 0);
	ret = foliofs_pin_write(f, 0, 64 * MIB, iov, 64, &n, &pin);
	/* Some pinned, or none: either way no more than the volume. */
	if (ret > 0) {
		assert_true((size_t)ret < 8 * MIB);
		foliofs_unpin(pin, 0);
	} else {
		assert_int_equal(ret, -ENOSPC);
	}
	assert_int_equal(reserved(fs), 0);
	foliofs_release(f);
	assert_int_equal(foliofs_unmount(fs), 0);
}

/*
 * A pin outlives its file: the FUSE frontend replies from a read pin, and
 * the kernel may close the file before the reply's unpin. A write pin
 * keeps the inode even when the file is closed and unlinked.
 */
static void test_pin_outlives_file(void **state)
{
	struct foliofs *fs = mount_fresh(64 * MIB, 0);
	struct foliofs_file *f;
	struct foliofs_pin *rp, *wp;
	struct iovec iov[4], wiov[4];
	unsigned int n, wn;
	char a[8192];

	fill(a, sizeof(a), 11);
	assert_int_equal(foliofs_open_path(fs, "/o", O_CREAT | O_RDWR, 0644, &f), 0);
	assert_int_equal(foliofs_write(f, a, sizeof(a), 0), (ssize_t)sizeof(a));
	assert_int_equal(foliofs_pin_read(f, 0, 4096, iov, 4, &n, &rp), 4096);
	assert_int_equal(foliofs_pin_write(f, 8192, 4096, wiov, 4, &wn, &wp),
			 4096);
	assert_int_equal(foliofs_release(f), 0);
	assert_int_equal(foliofs_unlink_path(fs, "/o"), 0);
	assert_memory_equal(iov[0].iov_base, a, 4096);
	foliofs_unpin(rp, 0);
	memset(wiov[0].iov_base, 0x44, 4096);
	foliofs_unpin(wp, FOLIOFS_UNPIN_DIRTY);
	/* The last reference went with the write pin: the file is gone. */
	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(reserved(fs), 0);
	{
		struct foliofs_stats st;

		assert_int_equal(foliofs_stats(fs, &st), 0);
		assert_int_equal(st.inodes, 1);
		assert_int_equal(st.pinned_folios, 0);
	}
	assert_int_equal(foliofs_unmount(fs), 0);
}

static int setup(void **state)
{
	return testimg_probe("test_pin");
}

static int teardown(void **state)
{
	return testimg_cleanup();
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pin_survives_writeback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_reservations_kept_across_clean, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_clean_unpin_releases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_then_truncate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_read_survives_reclaim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_write_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_outlives_file, setup, teardown),
	};

	return run_isolated(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
