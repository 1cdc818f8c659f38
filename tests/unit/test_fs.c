/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_fs.c - the embedded engine through foliofs.h, each test in its own
 * process (isolate.h) on its own image file (testimg.h):
 *  - mkfs over an existing volume, bad options; mount of a missing or
 *    already mounted image;
 *  - every namespace operation (create, mkdir, mknod, symlink, link,
 *    unlink, rmdir, rename with NOREPLACE and EXCHANGE, setattr) and its
 *    errors, with attributes compared across unmount and mount;
 *  - data at odd offsets, sparse files, large folios, a file larger than
 *    the cache, O_APPEND and O_TRUNC, truncate then extend, fallocate,
 *    SEEK_DATA and SEEK_HOLE, -ENOSPC on a small volume;
 *  - durability counters: fsync/syncfs leave no delalloc reservation, and
 *    statfs free blocks come back after unlink;
 *  - readdir of 10k entries, cursors resumed while the directory changes,
 *    READDIR_PLUS and its lookup counts;
 *  - lookup counts and open files keeping unlinked inodes alive, orphans
 *    deleted by the next mount after a crash;
 *  - the path API;
 *  - corruption: one or both superblock copies, every log block, a whole
 *    image of garbage; fsck on clean, corrupt and link-damaged images.
 *
 * A "crash" is a copy of the image taken while it is mounted and quiet
 * (after syncfs, with background commits pushed out): what the medium
 * holds at that moment, as after a power cut.
 *
 * Images are files in $FOLIOFS_TEST_DIR (default: the build directory),
 * named test_fs.<pid>.*; run one test in-process with `test_fs test_name`.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "backing.h"
#include "fs.h"
#include "foliofs.h"
#include "isolate.h"
#include "ondisk.h"
#include "super.h"
#include "testimg.h"

#define KiB		(1ULL << 10)
#define MiB		(1ULL << 20)
#define GiB		(1ULL << 30)
#define BS		4096ULL
#define ROOT		FOLIOFS_ROOT_INO

/* ---- Helpers: images and mounts -------------------------------------------- */

static void img_path(char *path, const char *name)
{
	testimg_path(path, 4096, name);
}

/* A new volume of @size bytes in image @name; its path in @path. */
static void mkfs_img(char *path, const char *name, uint64_t size)
{
	int ret;

	img_path(path, name);
	unlink(path);
	ret = foliofs_mkfs(path, &(struct foliofs_mkfs_opts){ .size = size });
	if (ret)
		fail_msg("mkfs %s: %s (%s)", path, strerror(-ret),
			 foliofs_strerror());
}

static struct foliofs_mount_opts mopts(const struct foliofs_mount_opts *o)
{
	struct foliofs_mount_opts m = o ? *o : (struct foliofs_mount_opts){ 0 };

	if (testimg_open_flags & BACKING_NO_DIRECT)
		m.no_direct = 1;
	return m;
}

static struct foliofs *mnt(const char *path, const struct foliofs_mount_opts *o)
{
	struct foliofs_mount_opts m = mopts(o);
	struct foliofs *fs = NULL;
	int ret;

	ret = foliofs_mount(path, &m, &fs);
	if (ret)
		fail_msg("mount %s: %s (%s)", path, strerror(-ret),
			 foliofs_strerror());
	assert_non_null(fs);
	return fs;
}

static void umnt(struct foliofs *fs)
{
	assert_int_equal(foliofs_unmount(fs), 0);
}

static struct foliofs *remount(struct foliofs *fs, const char *path,
			       const struct foliofs_mount_opts *o)
{
	umnt(fs);
	return mnt(path, o);
}

/* Mount options under which nothing is committed in the background. */
static const struct foliofs_mount_opts quiet_opts = {
	.dirty_expire_ms = 600000,
	.commit_ms = 600000,
};

/* Copy image @from to @to byte for byte (holes stay holes). */
static void copy_image(const char *from, const char *to)
{
	int in = open(from, O_RDONLY), out;
	size_t chunk = 1 << 20;
	char *buf = malloc(chunk);
	struct stat st;
	off_t off = 0;

	assert_true(in >= 0);
	assert_non_null(buf);
	unlink(to);
	out = open(to, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	assert_true(out >= 0);
	assert_int_equal(fstat(in, &st), 0);
	assert_int_equal(ftruncate(out, st.st_size), 0);
	while (off < st.st_size) {
		ssize_t n = pread(in, buf, chunk, off);
		ssize_t i;

		assert_true(n > 0);
		for (i = 0; i < n && !buf[i]; i++)
			;
		if (i < n)
			assert_int_equal(pwrite(out, buf, (size_t)n, off), n);
		off += n;
	}
	close(in);
	close(out);
	free(buf);
}

static void xor_bytes(const char *path, uint64_t off, size_t len)
{
	int fd = open(path, O_RDWR);
	uint8_t b[256];

	assert_true(fd >= 0);
	assert_true(len <= sizeof(b));
	assert_int_equal(pread(fd, b, len, (off_t)off), (ssize_t)len);
	for (size_t i = 0; i < len; i++)
		b[i] ^= 0x5a;
	assert_int_equal(pwrite(fd, b, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void read_super(const char *path, struct super *sb)
{
	char msg[SUPER_MSG_LEN];
	struct backing *b;

	assert_int_equal(backing_open(path, BACKING_RDONLY | testimg_open_flags,
				      &b), 0);
	if (super_read(b, sb, msg, sizeof(msg)))
		fail_msg("super_read %s: %s", path, msg);
	backing_close(b);
}

/* ---- Helpers: data ------------------------------------------------------------ */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ULL;
	x ^= x >> 27;
	x *= 0x81dadef4bc2dd44dULL;
	x ^= x >> 33;
	return x;
}

/* The pattern byte at file offset @off for @seed (never all zeroes). */
static inline uint8_t pat(uint64_t off, unsigned int seed)
{
	uint64_t w = mix((off >> 3) * 0x9e3779b97f4a7c15ULL + seed + 1);

	return (uint8_t)(w >> ((off & 7) * 8));
}

static void fill_pat(void *buf, uint64_t off, size_t len, unsigned int seed)
{
	uint8_t *p = buf;
	size_t i = 0;

	while (i < len && ((off + i) & 7))
		p[i] = pat(off + i, seed), i++;
	for (; i + 8 <= len; i += 8) {
		uint64_t w = mix(((off + i) >> 3) * 0x9e3779b97f4a7c15ULL +
				 seed + 1);

		memcpy(p + i, &w, 8);	/* little-endian, as pat() */
	}
	for (; i < len; i++)
		p[i] = pat(off + i, seed);
}

/* Offset of the first byte of @buf that is not the pattern, or -1. */
static long long check_pat(const void *buf, uint64_t off, size_t len,
			   unsigned int seed)
{
	const uint8_t *p = buf;
	size_t i = 0;

	while (i < len && ((off + i) & 7)) {
		if (p[i] != pat(off + i, seed))
			return (long long)(off + i);
		i++;
	}
	for (; i + 8 <= len; i += 8) {
		uint64_t w = mix(((off + i) >> 3) * 0x9e3779b97f4a7c15ULL +
				 seed + 1);

		if (memcmp(p + i, &w, 8))
			break;
	}
	for (; i < len; i++)
		if (p[i] != pat(off + i, seed))
			return (long long)(off + i);
	return -1;
}

static long long check_zero(const void *buf, uint64_t off, size_t len)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i])
			return (long long)(off + i);
	return -1;
}

static void write_all(struct foliofs_file *f, const void *buf, size_t len,
		      uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = foliofs_write(f, (const char *)buf + done,
					  len - done, off + done);

		if (n <= 0)
			fail_msg("write of %zu at %llu: %zd", len - done,
				 (unsigned long long)(off + done), n);
		done += (size_t)n;
	}
}

/* Read [off, off + len); returns bytes read before EOF. */
static size_t read_all(struct foliofs_file *f, void *buf, size_t len,
		       uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = foliofs_read(f, (char *)buf + done, len - done,
					 off + done);

		if (n < 0)
			fail_msg("read of %zu at %llu: %zd", len - done,
				 (unsigned long long)(off + done), n);
		if (!n)
			break;
		done += (size_t)n;
	}
	return done;
}

/* Write the pattern over [off, off + len) in chunks of @chunk. */
static void write_pat(struct foliofs_file *f, uint64_t off, uint64_t len,
		      unsigned int seed, size_t chunk)
{
	char *buf = malloc(chunk);

	assert_non_null(buf);
	for (uint64_t o = 0; o < len; o += chunk) {
		size_t n = len - o < chunk ? (size_t)(len - o) : chunk;

		fill_pat(buf, off + o, n, seed);
		write_all(f, buf, n, off + o);
	}
	free(buf);
}

/* Assert [off, off + len) reads as the pattern (or zeroes if @seed is 0). */
static void expect_range(struct foliofs_file *f, uint64_t off, uint64_t len,
			 unsigned int seed)
{
	size_t chunk = 1 << 20;
	char *buf = malloc(chunk);

	assert_non_null(buf);
	for (uint64_t o = 0; o < len; o += chunk) {
		size_t n = len - o < chunk ? (size_t)(len - o) : chunk;
		long long bad;

		memset(buf, 0xee, n);
		if (read_all(f, buf, n, off + o) != n)
			fail_msg("short read at %llu",
				 (unsigned long long)(off + o));
		bad = seed ? check_pat(buf, off + o, n, seed) :
			     check_zero(buf, off + o, n);
		if (bad >= 0)
			fail_msg("byte at %lld: 0x%02x, want %s", bad,
				 (uint8_t)buf[bad - (long long)(off + o)],
				 seed ? "the pattern" : "zero");
	}
	free(buf);
}

static struct foliofs_file *open_p(struct foliofs *fs, const char *path,
				   int flags)
{
	struct foliofs_file *f = NULL;
	int ret = foliofs_open_path(fs, path, flags, 0644, &f);

	if (ret)
		fail_msg("open %s: %s", path, strerror(-ret));
	return f;
}

static uint64_t size_of(struct foliofs *fs, const char *path)
{
	struct foliofs_attr a;

	assert_int_equal(foliofs_stat_path(fs, path, &a), 0);
	return a.size;
}

static foliofs_ino_t ino_of(struct foliofs *fs, const char *path)
{
	foliofs_ino_t ino = 0;

	assert_int_equal(foliofs_resolve(fs, path, &ino), 0);
	return ino;
}

static void set_size(struct foliofs *fs, foliofs_ino_t ino, uint64_t size)
{
	struct foliofs_attr in = { .size = size }, out;

	assert_int_equal(foliofs_setattr(fs, ino, &in, FOLIOFS_SET_SIZE, &out),
			 0);
	assert_int_equal(out.size, size);
}

static void assert_ts_equal(struct timespec a, struct timespec b)
{
	assert_int_equal(a.tv_sec, b.tv_sec);
	assert_int_equal(a.tv_nsec, b.tv_nsec);
}

static void assert_attr_equal(const struct foliofs_attr *a,
			      const struct foliofs_attr *b)
{
	assert_int_equal(a->ino, b->ino);
	assert_int_equal(a->generation, b->generation);
	assert_int_equal(a->mode, b->mode);
	assert_int_equal(a->nlink, b->nlink);
	assert_int_equal(a->uid, b->uid);
	assert_int_equal(a->gid, b->gid);
	assert_int_equal(a->rdev, b->rdev);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->blocks, b->blocks);
	assert_ts_equal(a->atime, b->atime);
	assert_ts_equal(a->mtime, b->mtime);
	assert_ts_equal(a->ctime, b->ctime);
}

static uint64_t reserved_blocks(struct foliofs *fs)
{
	struct foliofs_stats st;

	assert_int_equal(foliofs_stats(fs, &st), 0);
	return st.reserved_blocks;
}

static uint64_t checkpoints(struct foliofs *fs)
{
	struct foliofs_stats st;

	assert_int_equal(foliofs_stats(fs, &st), 0);
	return st.checkpoints;
}

static uint64_t bfree(struct foliofs *fs)
{
	struct foliofs_statfs st;

	assert_int_equal(foliofs_statfs(fs, &st), 0);
	return st.bfree;
}

/* ---- Helpers: readdir ------------------------------------------------------------ */

struct dent {
	char			name[FOLIOFS_NAME_MAX + 1];
	foliofs_ino_t		ino;
	uint32_t		type;
	uint64_t		next;
	bool			has_attr;
	struct foliofs_attr	attr;
};

/* Takes up to @max entries per readdir call (0: all), refuses the next. */
struct lister {
	unsigned int	max;
	unsigned int	taken;		/* this call */
	uint64_t	next;		/* cursor after the last taken */
	bool		refused;
	char		refused_name[FOLIOFS_NAME_MAX + 1];
	struct dent	*ents;		/* every taken entry, all calls */
	size_t		nr, cap;
};

static int lister_fill(void *arg, const char *name, foliofs_ino_t ino,
		       uint32_t type, uint64_t next,
		       const struct foliofs_attr *attr)
{
	struct lister *l = arg;
	struct dent *d;

	if (l->max && l->taken == l->max) {
		l->refused = true;
		snprintf(l->refused_name, sizeof(l->refused_name), "%s", name);
		return 1;
	}
	if (l->nr == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->ents = realloc(l->ents, l->cap * sizeof(*l->ents));
		assert_non_null(l->ents);
	}
	d = &l->ents[l->nr++];
	assert_true(strlen(name) <= FOLIOFS_NAME_MAX);
	strcpy(d->name, name);
	d->ino = ino;
	d->type = type;
	d->next = next;
	d->has_attr = attr != NULL;
	if (attr)
		d->attr = *attr;
	l->taken++;
	l->next = next;
	return 0;
}

/*
 * List @dir in calls of @max entries (0: one call), running @between (if
 * any) between calls. Returns the number of readdir calls.
 */
static unsigned int list_dir(struct foliofs_file *dir, unsigned int flags,
			     unsigned int max, struct lister *l,
			     void (*between)(void *arg, unsigned int call,
					     const char *refused),
			     void *arg)
{
	uint64_t pos = 0;
	unsigned int calls = 0;

	char refused[FOLIOFS_NAME_MAX + 1] = "";

	memset(l, 0, sizeof(*l));
	l->max = max;
	for (;;) {
		size_t before = l->nr;

		l->taken = 0;
		l->refused = false;
		assert_int_equal(foliofs_readdir(dir, pos, flags, lister_fill,
						 l), 0);
		calls++;
		/* A refused entry is returned again by the next call (the
		 * churn never removes it). */
		if (refused[0]) {
			assert_true(l->nr > before);
			assert_string_equal(l->ents[before].name, refused);
		}
		if (!l->refused)
			break;
		assert_true(l->taken > 0);
		strcpy(refused, l->refused_name);
		pos = l->next;
		if (between)
			between(arg, calls, l->refused_name);
		assert_true(calls < 100000);
	}
	return calls;
}

static struct foliofs_file *open_dir(struct foliofs *fs, foliofs_ino_t ino)
{
	struct foliofs_file *f = NULL;

	assert_int_equal(foliofs_open(fs, ino, O_RDONLY | O_DIRECTORY, &f), 0);
	return f;
}

/* ---- mkfs and mount ------------------------------------------------------------- */

static void test_mkfs_refuses_existing_volume(void **state)
{
	struct foliofs_mkfs_opts o = { .size = 64 * MiB };
	struct foliofs_file *f;
	struct foliofs_attr a;
	struct foliofs *fs;
	char path[4096];

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	f = open_p(fs, "/precious", O_CREAT | O_RDWR);
	write_all(f, "keep me", 7, 0);
	assert_int_equal(foliofs_release(f), 0);
	umnt(fs);

	/* Without force: refused, and the volume is untouched. */
	assert_int_equal(foliofs_mkfs(path, &o), -EEXIST);
	assert_non_null(strstr(foliofs_strerror(), "already"));
	o.size = 0;
	assert_int_equal(foliofs_mkfs(path, &o), -EEXIST);
	assert_int_equal(foliofs_mkfs(path, NULL), -EEXIST);
	fs = mnt(path, NULL);
	assert_int_equal(foliofs_stat_path(fs, "/precious", &a), 0);
	assert_int_equal(a.size, 7);
	umnt(fs);

	/* With force: an empty volume again, of the file's size. */
	o.force = 1;
	o.label = "fresh";
	assert_int_equal(foliofs_mkfs(path, &o), 0);
	fs = mnt(path, NULL);
	assert_int_equal(foliofs_stat_path(fs, "/precious", &a), -ENOENT);
	assert_int_equal(foliofs_getattr(fs, ROOT, &a), 0);
	assert_true(S_ISDIR(a.mode));
	assert_int_equal(a.nlink, 2);
	{
		struct foliofs_statfs st;

		assert_int_equal(foliofs_statfs(fs, &st), 0);
		assert_int_equal(st.block_size, 4096);
		assert_int_equal(st.files, 1);
		assert_true(st.blocks > 15000 && st.blocks < 16384);
		assert_int_equal(st.name_max, FOLIOFS_NAME_MAX);
	}
	umnt(fs);
	{
		struct super sb;

		read_super(path, &sb);
		assert_string_equal(sb.label, "fresh");
		assert_int_equal(sb.total_blocks, 64 * MiB / BS);
	}
	unlink(path);
}

static void test_mkfs_bad_options(void **state)
{
	char path[4096], label[100];
	struct foliofs_mkfs_opts o;
	struct super sb;
	struct foliofs *fs;
	struct stat st;

	(void)state;
	img_path(path, "bad");

	/* Too small. */
	unlink(path);
	o = (struct foliofs_mkfs_opts){ .size = 512 * KiB };
	assert_int_equal(foliofs_mkfs(path, &o), -EINVAL);
	assert_non_null(strstr(foliofs_strerror(), "small"));
	o.size = MiB - BS;
	assert_int_equal(foliofs_mkfs(path, &o), -EINVAL);
	unlink(path);
	/* An empty file and no size: also too small. */
	assert_int_equal(close(open(path, O_CREAT | O_WRONLY, 0644)), 0);
	assert_int_equal(foliofs_mkfs(path, NULL), -EINVAL);

	/* Block sizes other than 4096. */
	unlink(path);
	o = (struct foliofs_mkfs_opts){ .size = 16 * MiB, .block_size = 8192 };
	assert_int_equal(foliofs_mkfs(path, &o), -EINVAL);
	assert_non_null(strstr(foliofs_strerror(), "8192"));
	o.block_size = 512;
	assert_int_equal(foliofs_mkfs(path, &o), -EINVAL);

	/* A label of 65 bytes is refused, 64 taken. */
	memset(label, 'L', sizeof(label));
	label[65] = '\0';
	o = (struct foliofs_mkfs_opts){ .size = 16 * MiB, .label = label };
	assert_int_equal(foliofs_mkfs(path, &o), -EINVAL);
	assert_non_null(strstr(foliofs_strerror(), "label"));
	/* Nothing of a refused volume is mountable. */
	if (!stat(path, &st)) {
		struct foliofs_mount_opts m = mopts(NULL);

		assert_true(foliofs_mount(path, &m, &fs) < 0);
	}
	label[64] = '\0';
	assert_int_equal(foliofs_mkfs(path, &o), 0);
	read_super(path, &sb);
	assert_string_equal(sb.label, label);
	/* Exactly 1 MiB is enough. */
	unlink(path);
	o = (struct foliofs_mkfs_opts){ .size = MiB };
	assert_int_equal(foliofs_mkfs(path, &o), 0);
	fs = mnt(path, NULL);
	umnt(fs);
	unlink(path);
}

static void test_mount_missing_and_locked(void **state)
{
	struct foliofs_mount_opts m = mopts(NULL), ro = mopts(NULL);
	struct foliofs *fs, *fs2 = NULL, *r1, *r2;
	char path[4096], missing[4096];

	(void)state;
	img_path(missing, "nothing-here");
	unlink(missing);
	assert_int_equal(foliofs_mount(missing, &m, &fs2), -ENOENT);
	assert_null(fs2);

	mkfs_img(path, "img", 16 * MiB);
	fs = mnt(path, NULL);
	assert_int_equal(foliofs_mount(path, &m, &fs2), -EWOULDBLOCK);
	assert_non_null(strstr(foliofs_strerror(), "in use"));
	ro.readonly = 1;
	assert_int_equal(foliofs_mount(path, &ro, &fs2), -EWOULDBLOCK);
	/* mkfs, even forced, and fsck leave a mounted image alone. */
	assert_int_equal(foliofs_mkfs(path, NULL), -EBUSY);
	{
		struct foliofs_mkfs_opts force = { .force = 1 };

		assert_int_equal(foliofs_mkfs(path, &force), -EBUSY);
		assert_non_null(strstr(foliofs_strerror(), "mounted"));
	}
	assert_int_equal(foliofs_fsck(path, 0, NULL, NULL), FOLIOFS_FSCK_FAILED);
	/* The first mount is unharmed by the attempts. */
	assert_int_equal(foliofs_mkdir_path(fs, "/still-here", 0755), 0);
	umnt(fs);

	/* After the unmount the image is free again; two read-only mounts
	 * may share it, a read-write one may not join them. */
	r1 = mnt(path, &ro);
	r2 = mnt(path, &ro);
	assert_int_equal(foliofs_mount(path, &m, &fs2), -EWOULDBLOCK);
	{
		struct foliofs_attr a;

		assert_int_equal(foliofs_stat_path(r2, "/still-here", &a), 0);
		assert_true(S_ISDIR(a.mode));
	}
	umnt(r1);
	umnt(r2);
	fs = mnt(path, NULL);
	umnt(fs);
	unlink(path);
}

/* ---- Namespace round trips ---------------------------------------------------------- */

static const char *const ns_paths[] = {
	"/", "/d", "/d/sub", "/f", "/d/fifo", "/chr", "/s", "/d/f2", NULL,
	/* The 255-byte name is added at run time. */
};

static void test_namespace_round_trip(void **state)
{
	const struct foliofs_cred cred = { 1234, 5678 };
	struct foliofs_attr a, b, root0, saved[16];
	char path[4096], name255[FOLIOFS_NAME_MAX + 1], p255[300], buf[64];
	struct foliofs_file *f;
	struct foliofs *fs;
	foliofs_ino_t d, sub, fino, reg;
	size_t i;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	assert_int_equal(foliofs_getattr(fs, ROOT, &root0), 0);
	assert_int_equal(root0.nlink, 2);

	/* mkdir: nlink 2, the parent gains one. */
	assert_int_equal(foliofs_mkdir(fs, ROOT, "d", 0751, &cred, &a), 0);
	d = a.ino;
	assert_true(S_ISDIR(a.mode));
	assert_int_equal(a.mode & 07777, 0751);
	assert_int_equal(a.nlink, 2);
	assert_int_equal(a.uid, 1234);
	assert_int_equal(a.gid, 5678);
	assert_int_equal(foliofs_mkdir(fs, d, "sub", 0700, NULL, &a), 0);
	sub = a.ino;
	assert_int_equal(a.uid, geteuid());
	assert_int_equal(foliofs_getattr(fs, d, &a), 0);
	assert_int_equal(a.nlink, 3);
	assert_int_equal(foliofs_getattr(fs, ROOT, &a), 0);
	assert_int_equal(a.nlink, 3);
	(void)sub;

	/* create with data. */
	assert_int_equal(foliofs_create(fs, ROOT, "f", 0640, O_RDWR | O_EXCL,
					NULL, &a, &f), 0);
	fino = a.ino;
	assert_true(S_ISREG(a.mode));
	assert_int_equal(a.nlink, 1);
	assert_int_equal(a.size, 0);
	assert_int_equal(foliofs_file_ino(f), fino);
	write_all(f, "hello world", 11, 0);
	assert_int_equal(foliofs_release(f), 0);

	/* mknod: a fifo, a character device, a mode without a type. */
	assert_int_equal(foliofs_mknod(fs, d, "fifo", S_IFIFO | 0640, 0, NULL,
				       &a), 0);
	assert_true(S_ISFIFO(a.mode));
	assert_int_equal(a.mode & 07777, 0640);
	assert_int_equal(foliofs_mknod(fs, ROOT, "chr", S_IFCHR | 0600,
				       makedev(1, 3), NULL, &a), 0);
	assert_true(S_ISCHR(a.mode));
	assert_int_equal(a.rdev, makedev(1, 3));
	assert_int_equal(foliofs_mknod(fs, ROOT, "reg", 0644, 0, NULL, &a), 0);
	assert_true(S_ISREG(a.mode));
	reg = a.ino;
	assert_int_equal(foliofs_mknod(fs, ROOT, "bad", S_IFDIR | 0644, 0,
				       NULL, &a), -EINVAL);

	/* symlink and readlink, whole and cut. */
	assert_int_equal(foliofs_symlink(fs, ROOT, "s", "d/sub/../f", NULL, &a),
			 0);
	assert_true(S_ISLNK(a.mode));
	assert_int_equal(a.size, 10);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(foliofs_readlink(fs, a.ino, buf, sizeof(buf)), 10);
	assert_string_equal(buf, "d/sub/../f");
	memset(buf, 0, sizeof(buf));
	assert_int_equal(foliofs_readlink(fs, a.ino, buf, 4), 10);
	assert_string_equal(buf, "d/su");
	assert_int_equal(foliofs_readlink(fs, fino, buf, sizeof(buf)), -EINVAL);

	/* link: nlink counts on every name. */
	assert_int_equal(foliofs_link(fs, fino, d, "f2", &a), 0);
	assert_int_equal(a.ino, fino);
	assert_int_equal(a.nlink, 2);
	assert_int_equal(foliofs_link(fs, fino, d, "f3", &a), 0);
	assert_int_equal(a.nlink, 3);
	assert_int_equal(foliofs_stat_path(fs, "/f", &a), 0);
	assert_int_equal(a.nlink, 3);
	assert_int_equal(foliofs_unlink(fs, d, "f3"), 0);
	assert_int_equal(foliofs_stat_path(fs, "/d/f2", &a), 0);
	assert_int_equal(a.nlink, 2);
	assert_int_equal(foliofs_link(fs, d, ROOT, "dirlink", &a), -EPERM);

	/* rmdir of an empty directory gives the parent's link back. */
	assert_int_equal(foliofs_mkdir(fs, d, "empty", 0755, NULL, &a), 0);
	assert_int_equal(foliofs_getattr(fs, d, &a), 0);
	assert_int_equal(a.nlink, 4);
	assert_int_equal(foliofs_rmdir(fs, d, "empty"), 0);
	assert_int_equal(foliofs_getattr(fs, d, &a), 0);
	assert_int_equal(a.nlink, 3);
	assert_int_equal(foliofs_lookup(fs, d, "empty", &a), -ENOENT);

	/* unlink. */
	assert_int_equal(foliofs_unlink(fs, ROOT, "reg"), 0);
	assert_int_equal(foliofs_lookup(fs, ROOT, "reg", &a), -ENOENT);
	/* Its mknod lookup count keeps the inode until forgotten. */
	assert_int_equal(foliofs_getattr(fs, reg, &a), 0);
	assert_int_equal(a.nlink, 0);
	foliofs_forget(fs, reg, 1);
	assert_int_equal(foliofs_getattr(fs, reg, &a), -ENOENT);

	/* A name of exactly FOLIOFS_NAME_MAX bytes. */
	memset(name255, 'n', FOLIOFS_NAME_MAX);
	name255[FOLIOFS_NAME_MAX] = '\0';
	assert_int_equal(foliofs_mknod(fs, d, name255, S_IFREG | 0600, 0, NULL,
				       &a), 0);
	snprintf(p255, sizeof(p255), "/d/%s", name255);

	assert_int_equal(foliofs_syncfs(fs), 0);
	for (i = 0; ns_paths[i]; i++)
		assert_int_equal(foliofs_stat_path(fs, ns_paths[i], &saved[i]),
				 0);
	assert_int_equal(foliofs_stat_path(fs, p255, &saved[i]), 0);

	fs = remount(fs, path, NULL);
	for (i = 0; ns_paths[i]; i++) {
		printf("# %s\n", ns_paths[i]);
		assert_int_equal(foliofs_stat_path(fs, ns_paths[i], &b), 0);
		assert_attr_equal(&b, &saved[i]);
	}
	assert_int_equal(foliofs_stat_path(fs, p255, &b), 0);
	assert_attr_equal(&b, &saved[i]);
	assert_int_equal(foliofs_stat_path(fs, "/reg", &b), -ENOENT);
	assert_int_equal(foliofs_stat_path(fs, "/d/f3", &b), -ENOENT);
	assert_int_equal(foliofs_stat_path(fs, "/d/empty", &b), -ENOENT);
	assert_int_equal(foliofs_getattr(fs, reg, &b), -ENOENT);
	assert_int_equal(foliofs_getattr(fs, ROOT, &b), 0);
	assert_int_equal(b.nlink, 3);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(foliofs_readlink(fs, ino_of(fs, "/s"), buf,
					  sizeof(buf)), 10);
	assert_string_equal(buf, "d/sub/../f");
	f = open_p(fs, "/d/f2", O_RDONLY);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(read_all(f, buf, sizeof(buf), 0), 11);
	assert_string_equal(buf, "hello world");
	assert_int_equal(foliofs_release(f), 0);
	{
		struct foliofs_statfs st;

		/* root, d, sub, f, fifo, chr, s, name255 */
		assert_int_equal(foliofs_statfs(fs, &st), 0);
		assert_int_equal(st.files, 8);
	}
	umnt(fs);
	assert_int_equal(foliofs_fsck(path, 0, NULL, NULL), FOLIOFS_FSCK_OK);
	unlink(path);
}

static void expect_content(struct foliofs *fs, const char *p, const char *want)
{
	struct foliofs_file *f = open_p(fs, p, O_RDONLY);
	char buf[64] = "";

	assert_int_equal(read_all(f, buf, sizeof(buf) - 1, 0), strlen(want));
	assert_string_equal(buf, want);
	assert_int_equal(foliofs_release(f), 0);
}

static void put_file(struct foliofs *fs, const char *p, const char *data)
{
	struct foliofs_file *f = open_p(fs, p, O_CREAT | O_RDWR);

	write_all(f, data, strlen(data), 0);
	assert_int_equal(foliofs_release(f), 0);
}

static void test_rename_round_trip(void **state)
{
	struct foliofs_attr a;
	struct foliofs *fs;
	char path[4096];
	foliofs_ino_t ia, ib, ic, ix, iy, d, e2;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	put_file(fs, "/a", "A");
	put_file(fs, "/b", "B");
	put_file(fs, "/c", "C");
	put_file(fs, "/x", "X");
	assert_int_equal(foliofs_mkdir_path(fs, "/d", 0755), 0);
	assert_int_equal(foliofs_mkdir_path(fs, "/d/y", 0755), 0);
	assert_int_equal(foliofs_mkdir_path(fs, "/d/y/z", 0755), 0);
	assert_int_equal(foliofs_mkdir_path(fs, "/e", 0755), 0);
	assert_int_equal(foliofs_mkdir_path(fs, "/e2", 0755), 0);
	ia = ino_of(fs, "/a");
	ib = ino_of(fs, "/b");
	ic = ino_of(fs, "/c");
	ix = ino_of(fs, "/x");
	iy = ino_of(fs, "/d/y");
	d = ino_of(fs, "/d");
	e2 = ino_of(fs, "/e2");
	assert_int_equal(foliofs_getattr(fs, ROOT, &a), 0);
	assert_int_equal(a.nlink, 5);		/* ., d, e, e2 */

	/* Plain, across directories. */
	assert_int_equal(foliofs_rename(fs, ROOT, "a", d, "a2", 0), 0);
	assert_int_equal(foliofs_stat_path(fs, "/a", &a), -ENOENT);
	assert_int_equal(ino_of(fs, "/d/a2"), ia);

	/* Over an existing file: the old target is gone at once (the path
	 * API took no lookup count on it). */
	assert_int_equal(foliofs_rename(fs, ROOT, "b", ROOT, "c", 0), 0);
	assert_int_equal(foliofs_stat_path(fs, "/b", &a), -ENOENT);
	assert_int_equal(ino_of(fs, "/c"), ib);
	assert_int_equal(foliofs_getattr(fs, ic, &a), -ENOENT);
	assert_int_equal(foliofs_getattr(fs, ib, &a), 0);
	assert_int_equal(a.nlink, 1);

	/* NOREPLACE onto an existing name: nothing moves. */
	assert_int_equal(foliofs_rename(fs, ROOT, "c", ROOT, "x",
					FOLIOFS_RENAME_NOREPLACE), -EEXIST);
	assert_int_equal(ino_of(fs, "/c"), ib);
	assert_int_equal(ino_of(fs, "/x"), ix);
	/* ... and onto a free one it is a plain rename. */
	assert_int_equal(foliofs_rename(fs, ROOT, "c", ROOT, "c2",
					FOLIOFS_RENAME_NOREPLACE), 0);
	assert_int_equal(ino_of(fs, "/c2"), ib);
	/* NOREPLACE with EXCHANGE is not a thing. */
	assert_int_equal(foliofs_rename(fs, ROOT, "c2", ROOT, "x",
					FOLIOFS_RENAME_NOREPLACE |
					FOLIOFS_RENAME_EXCHANGE), -EINVAL);

	/* EXCHANGE of the file /x and the directory /d/y: link counts of
	 * both parents follow the directory. */
	assert_int_equal(foliofs_rename(fs, ROOT, "x", d, "y",
					FOLIOFS_RENAME_EXCHANGE), 0);
	assert_int_equal(ino_of(fs, "/x"), iy);
	assert_int_equal(ino_of(fs, "/d/y"), ix);
	assert_int_equal(foliofs_stat_path(fs, "/x/z", &a), 0);
	assert_int_equal(foliofs_getattr(fs, ROOT, &a), 0);
	assert_int_equal(a.nlink, 6);		/* ., d, e, e2, x */
	assert_int_equal(foliofs_getattr(fs, d, &a), 0);
	assert_int_equal(a.nlink, 2);
	expect_content(fs, "/d/y", "X");
	/* EXCHANGE with a missing name. */
	assert_int_equal(foliofs_rename(fs, ROOT, "c2", ROOT, "nope",
					FOLIOFS_RENAME_EXCHANGE), -ENOENT);

	/* A directory into its own subtree. */
	assert_int_equal(foliofs_rename(fs, ROOT, "x", ino_of(fs, "/x/z"), "w",
					0), -EINVAL);
	assert_int_equal(foliofs_rename(fs, ROOT, "x", iy, "w", 0), -EINVAL);
	assert_int_equal(foliofs_rename_path(fs, "/x", "/x/z/w",
					     FOLIOFS_RENAME_NOREPLACE),
			 -EINVAL);
	assert_int_equal(ino_of(fs, "/x"), iy);

	/* Over a non-empty directory, file over directory and back. */
	assert_int_equal(foliofs_rename(fs, ROOT, "e", ROOT, "x", 0),
			 -ENOTEMPTY);
	assert_int_equal(foliofs_rename(fs, ROOT, "e", d, "y", 0), -ENOTDIR);
	assert_int_equal(foliofs_rename(fs, ROOT, "c2", ROOT, "e", 0), -EISDIR);
	assert_int_equal(foliofs_rename(fs, ROOT, "missing", ROOT, "e", 0),
			 -ENOENT);
	/* Over an empty directory: it goes, the root loses its link. */
	assert_int_equal(foliofs_rename(fs, ROOT, "e", ROOT, "e2", 0), 0);
	assert_int_equal(foliofs_stat_path(fs, "/e", &a), -ENOENT);
	assert_int_equal(foliofs_getattr(fs, e2, &a), -ENOENT);
	assert_int_equal(foliofs_getattr(fs, ROOT, &a), 0);
	assert_int_equal(a.nlink, 5);		/* ., d, e2, x */
	/* Onto itself (a hard link of the same inode): nothing happens. */
	assert_int_equal(foliofs_link(fs, ib, ROOT, "c3", &a), 0);
	foliofs_forget(fs, ib, 1);
	assert_int_equal(foliofs_rename(fs, ROOT, "c2", ROOT, "c3", 0), 0);
	assert_int_equal(ino_of(fs, "/c2"), ib);
	assert_int_equal(ino_of(fs, "/c3"), ib);

	fs = remount(fs, path, NULL);
	assert_int_equal(ino_of(fs, "/d/a2"), ia);
	expect_content(fs, "/d/a2", "A");
	assert_int_equal(ino_of(fs, "/c2"), ib);
	expect_content(fs, "/c2", "B");
	assert_int_equal(foliofs_getattr(fs, ib, &a), 0);
	assert_int_equal(a.nlink, 2);
	assert_int_equal(foliofs_getattr(fs, ic, &a), -ENOENT);
	assert_int_equal(ino_of(fs, "/x"), iy);
	assert_int_equal(ino_of(fs, "/d/y"), ix);
	expect_content(fs, "/d/y", "X");
	assert_int_equal(foliofs_stat_path(fs, "/x/z", &a), 0);
	assert_int_equal(foliofs_stat_path(fs, "/e", &a), -ENOENT);
	assert_int_equal(foliofs_stat_path(fs, "/e2", &a), 0);
	assert_int_equal(foliofs_stat_path(fs, "/a", &a), -ENOENT);
	assert_int_equal(foliofs_stat_path(fs, "/b", &a), -ENOENT);
	assert_int_equal(foliofs_getattr(fs, ROOT, &a), 0);
	assert_int_equal(a.nlink, 5);
	assert_int_equal(foliofs_getattr(fs, d, &a), 0);
	assert_int_equal(a.nlink, 2);
	assert_int_equal(foliofs_getattr(fs, iy, &a), 0);
	assert_int_equal(a.nlink, 3);
	umnt(fs);
	assert_int_equal(foliofs_fsck(path, 0, NULL, NULL), FOLIOFS_FSCK_OK);
	unlink(path);
}

static void test_setattr_round_trip(void **state)
{
	const struct timespec at = { 1700000000, 123456789 };
	const struct timespec mt = { 1600000000, 987654321 };
	const struct timespec ct = { 1500000000, 1 };
	const struct timespec old = { -2, 5 };	/* before the epoch */
	const struct foliofs_cred c1 = { 1000, 2000 }, c2 = { 1001, 3000 };
	struct foliofs_attr in, out, a, saved[4];
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096];
	foliofs_ino_t fi, di, sg, child, subdir;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	f = open_p(fs, "/f", O_CREAT | O_RDWR);
	fi = foliofs_file_ino(f);
	write_pat(f, 0, 100000, 3, 65536);
	assert_int_equal(foliofs_release(f), 0);
	assert_int_equal(foliofs_mkdir_path(fs, "/d", 0755), 0);
	di = ino_of(fs, "/d");

	/* Mode: only permission bits change, the type stays. */
	in = (struct foliofs_attr){ .mode = S_IFDIR | 04750 };
	assert_int_equal(foliofs_setattr(fs, fi, &in, FOLIOFS_SET_MODE, &out),
			 0);
	assert_int_equal(out.mode, S_IFREG | 04750);
	/* chown clears set-id bits of a file... */
	in = (struct foliofs_attr){ .uid = 4242, .gid = 4343 };
	assert_int_equal(foliofs_setattr(fs, fi, &in,
					 FOLIOFS_SET_UID | FOLIOFS_SET_GID,
					 &out), 0);
	assert_int_equal(out.uid, 4242);
	assert_int_equal(out.gid, 4343);
	assert_int_equal(out.mode, S_IFREG | 0750);
	/* ... not of a directory. */
	in = (struct foliofs_attr){ .mode = 01777 };
	assert_int_equal(foliofs_setattr(fs, di, &in, FOLIOFS_SET_MODE, &out),
			 0);
	assert_int_equal(out.mode, S_IFDIR | 01777);
	in = (struct foliofs_attr){ .gid = 77 };
	assert_int_equal(foliofs_setattr(fs, di, &in, FOLIOFS_SET_GID, &out), 0);
	assert_int_equal(out.mode, S_IFDIR | 01777);
	assert_int_equal(out.gid, 77);

	/* Truncate down then up: the tail reads zeroes. A size change
	 * moves mtime and ctime, so it goes before setting them. */
	set_size(fs, fi, 5000);
	set_size(fs, fi, 3 * MiB + 17);
	in = (struct foliofs_attr){ .size = 1 };
	assert_int_equal(foliofs_setattr(fs, di, &in, FOLIOFS_SET_SIZE, NULL),
			 -EISDIR);
	assert_int_equal(foliofs_syncfs(fs), 0);

	/* Times to the nanosecond, one before the epoch. */
	in = (struct foliofs_attr){ .atime = at, .mtime = mt, .ctime = ct };
	assert_int_equal(foliofs_setattr(fs, fi, &in,
					 FOLIOFS_SET_ATIME | FOLIOFS_SET_MTIME |
					 FOLIOFS_SET_CTIME, &out), 0);
	assert_ts_equal(out.atime, at);
	assert_ts_equal(out.mtime, mt);
	assert_ts_equal(out.ctime, ct);
	in = (struct foliofs_attr){ .mtime = old, .atime = old };
	assert_int_equal(foliofs_setattr(fs, di, &in,
					 FOLIOFS_SET_MTIME | FOLIOFS_SET_ATIME,
					 &out), 0);
	assert_ts_equal(out.mtime, old);
	assert_ts_equal(out.atime, old);
	/* ctime moves to now when not set explicitly. */
	assert_true(out.ctime.tv_sec > 1600000000);

	/* setgid directories: the group and the bit are inherited. */
	assert_int_equal(foliofs_mkdir(fs, ROOT, "sg", 02775, &c1, &a), 0);
	sg = a.ino;
	assert_int_equal(a.mode, S_IFDIR | 02775);
	assert_int_equal(foliofs_mknod(fs, sg, "child", S_IFREG | 0644, 0,
				       &c2, &a), 0);
	child = a.ino;
	assert_int_equal(a.uid, 1001);
	assert_int_equal(a.gid, 2000);
	assert_int_equal(foliofs_mkdir(fs, sg, "subdir", 0755, &c2, &a), 0);
	subdir = a.ino;
	assert_int_equal(a.gid, 2000);
	assert_int_equal(a.mode, S_IFDIR | 02755);

	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(foliofs_getattr(fs, fi, &saved[0]), 0);
	assert_int_equal(foliofs_getattr(fs, di, &saved[1]), 0);
	assert_int_equal(foliofs_getattr(fs, child, &saved[2]), 0);
	assert_int_equal(foliofs_getattr(fs, subdir, &saved[3]), 0);
	assert_int_equal(saved[0].size, 3 * MiB + 17);

	fs = remount(fs, path, NULL);
	assert_int_equal(foliofs_getattr(fs, fi, &a), 0);
	assert_attr_equal(&a, &saved[0]);
	assert_int_equal(a.mode, S_IFREG | 0750);
	assert_int_equal(a.uid, 4242);
	assert_ts_equal(a.atime, at);
	assert_ts_equal(a.mtime, mt);
	assert_ts_equal(a.ctime, ct);
	assert_int_equal(foliofs_getattr(fs, di, &a), 0);
	assert_attr_equal(&a, &saved[1]);
	assert_ts_equal(a.mtime, old);
	assert_int_equal(foliofs_getattr(fs, child, &a), 0);
	assert_attr_equal(&a, &saved[2]);
	assert_int_equal(foliofs_getattr(fs, subdir, &a), 0);
	assert_attr_equal(&a, &saved[3]);
	f = open_p(fs, "/f", O_RDONLY);
	expect_range(f, 0, 5000, 3);
	expect_range(f, 5000, 3 * MiB + 17 - 5000, 0);
	{
		char c;

		assert_int_equal(foliofs_read(f, &c, 1, 3 * MiB + 17), 0);
	}
	assert_int_equal(foliofs_release(f), 0);
	umnt(fs);
	unlink(path);
}

/* ---- Errors ------------------------------------------------------------------------- */

static void test_errors(void **state)
{
	char path[4096], long_name[FOLIOFS_NAME_MAX + 2], target[5000];
	struct foliofs_file *f, *g;
	struct foliofs_attr a;
	struct foliofs *fs;
	foliofs_ino_t d, fi;
	char c;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	assert_int_equal(foliofs_mkdir(fs, ROOT, "d", 0755, NULL, &a), 0);
	d = a.ino;
	assert_int_equal(foliofs_mknod(fs, d, "inside", S_IFREG | 0644, 0,
				       NULL, &a), 0);
	put_file(fs, "/f", "data");
	fi = ino_of(fs, "/f");

	/* ENOENT. */
	assert_int_equal(foliofs_lookup(fs, ROOT, "nope", &a), -ENOENT);
	assert_int_equal(foliofs_unlink(fs, ROOT, "nope"), -ENOENT);
	assert_int_equal(foliofs_rmdir(fs, ROOT, "nope"), -ENOENT);
	assert_int_equal(foliofs_getattr(fs, 999999, &a), -ENOENT);
	assert_int_equal(foliofs_getattr(fs, 0, &a), -ENOENT);
	assert_int_equal(foliofs_open(fs, 999999, O_RDONLY, &f), -ENOENT);
	assert_int_equal(foliofs_mkdir(fs, 999999, "x", 0755, NULL, &a),
			 -ENOENT);
	assert_int_equal(foliofs_link(fs, 999999, ROOT, "x", &a), -ENOENT);
	assert_int_equal(foliofs_rename(fs, ROOT, "nope", ROOT, "x", 0),
			 -ENOENT);
	assert_int_equal(foliofs_symlink(fs, ROOT, "empty", "", NULL, &a),
			 -ENOENT);
	assert_int_equal(foliofs_stat_path(fs, "/nope/x", &a), -ENOENT);
	assert_int_equal(foliofs_open_path(fs, "/nope", O_RDONLY, 0, &f),
			 -ENOENT);
	assert_int_equal(foliofs_open_path(fs, "/nope/x", O_CREAT | O_RDWR,
					   0644, &f), -ENOENT);

	/* EEXIST. */
	assert_int_equal(foliofs_mkdir(fs, ROOT, "d", 0755, NULL, &a), -EEXIST);
	assert_int_equal(foliofs_mkdir(fs, ROOT, "f", 0755, NULL, &a), -EEXIST);
	assert_int_equal(foliofs_mknod(fs, ROOT, "f", S_IFIFO | 0644, 0, NULL,
				       &a), -EEXIST);
	assert_int_equal(foliofs_symlink(fs, ROOT, "d", "t", NULL, &a),
			 -EEXIST);
	assert_int_equal(foliofs_link(fs, fi, ROOT, "d", &a), -EEXIST);
	assert_int_equal(foliofs_create(fs, ROOT, "f", 0644,
					O_RDWR | O_CREAT | O_EXCL, NULL, &a,
					&f), -EEXIST);
	assert_int_equal(foliofs_mkdir_path(fs, "/d", 0755), -EEXIST);
	assert_int_equal(foliofs_mkdir(fs, ROOT, ".", 0755, NULL, &a), -EEXIST);
	assert_int_equal(foliofs_mkdir(fs, ROOT, "..", 0755, NULL, &a),
			 -EEXIST);

	/* ENOTEMPTY. */
	assert_int_equal(foliofs_rmdir(fs, ROOT, "d"), -ENOTEMPTY);
	assert_int_equal(foliofs_rmdir_path(fs, "/d"), -ENOTEMPTY);

	/* EISDIR. */
	assert_int_equal(foliofs_unlink(fs, ROOT, "d"), -EISDIR);
	assert_int_equal(foliofs_open(fs, d, O_RDWR, &f), -EISDIR);
	assert_int_equal(foliofs_open(fs, d, O_WRONLY, &f), -EISDIR);
	assert_int_equal(foliofs_create(fs, ROOT, "d", 0644, O_RDWR, NULL, &a,
					&f), -EISDIR);
	f = open_dir(fs, d);
	assert_int_equal(foliofs_read(f, &c, 1, 0), -EISDIR);
	assert_int_equal(foliofs_release(f), 0);

	/* ENOTDIR. */
	assert_int_equal(foliofs_rmdir(fs, ROOT, "f"), -ENOTDIR);
	assert_int_equal(foliofs_lookup(fs, fi, "x", &a), -ENOTDIR);
	assert_int_equal(foliofs_mkdir(fs, fi, "x", 0755, NULL, &a), -ENOTDIR);
	assert_int_equal(foliofs_mknod(fs, fi, "x", S_IFREG | 0644, 0, NULL,
				       &a), -ENOTDIR);
	assert_int_equal(foliofs_link(fs, fi, fi, "x", &a), -ENOTDIR);
	assert_int_equal(foliofs_open(fs, fi, O_RDONLY | O_DIRECTORY, &f),
			 -ENOTDIR);
	assert_int_equal(foliofs_stat_path(fs, "/f/x", &a), -ENOTDIR);
	assert_int_equal(foliofs_rename(fs, ROOT, "d", ROOT, "f", 0), -ENOTDIR);
	f = open_p(fs, "/f", O_RDONLY);
	assert_int_equal(foliofs_readdir(f, 0, 0, lister_fill,
					 &(struct lister){ 0 }), -ENOTDIR);
	assert_int_equal(foliofs_release(f), 0);

	/* ENAMETOOLONG: 256 bytes, everywhere a name goes. */
	memset(long_name, 'x', sizeof(long_name));
	long_name[FOLIOFS_NAME_MAX + 1] = '\0';
	assert_int_equal(strlen(long_name), 256);
	assert_int_equal(foliofs_mkdir(fs, ROOT, long_name, 0755, NULL, &a),
			 -ENAMETOOLONG);
	assert_int_equal(foliofs_mknod(fs, ROOT, long_name, S_IFREG, 0, NULL,
				       &a), -ENAMETOOLONG);
	assert_int_equal(foliofs_create(fs, ROOT, long_name, 0644, O_RDWR,
					NULL, &a, &f), -ENAMETOOLONG);
	assert_int_equal(foliofs_symlink(fs, ROOT, long_name, "t", NULL, &a),
			 -ENAMETOOLONG);
	assert_int_equal(foliofs_link(fs, fi, ROOT, long_name, &a),
			 -ENAMETOOLONG);
	assert_int_equal(foliofs_lookup(fs, ROOT, long_name, &a),
			 -ENAMETOOLONG);
	assert_int_equal(foliofs_rename(fs, ROOT, "f", ROOT, long_name, 0),
			 -ENAMETOOLONG);
	{
		char p[300];

		snprintf(p, sizeof(p), "/%s", long_name);
		assert_int_equal(foliofs_open_path(fs, p, O_CREAT | O_RDWR,
						   0644, &f), -ENAMETOOLONG);
	}
	memset(target, 't', sizeof(target));
	target[FOLIOFS_SYMLINK_MAX + 1] = '\0';
	assert_int_equal(foliofs_symlink(fs, ROOT, "long", target, NULL, &a),
			 -ENAMETOOLONG);
	target[FOLIOFS_SYMLINK_MAX] = '\0';
	assert_int_equal(foliofs_symlink(fs, ROOT, "long", target, NULL, &a),
			 0);
	assert_int_equal(a.size, FOLIOFS_SYMLINK_MAX);
	/* Names with a slash or empty. */
	assert_int_equal(foliofs_mkdir(fs, ROOT, "a/b", 0755, NULL, &a),
			 -EINVAL);
	assert_int_equal(foliofs_mkdir(fs, ROOT, "", 0755, NULL, &a), -EINVAL);

	/* EBADF: write on O_RDONLY, read on O_WRONLY. */
	f = open_p(fs, "/f", O_RDONLY);
	assert_int_equal(foliofs_write(f, "x", 1, 0), -EBADF);
	assert_int_equal(foliofs_fallocate(f, 0, 0, 4096), -EBADF);
	g = open_p(fs, "/f", O_WRONLY);
	assert_int_equal(foliofs_read(g, &c, 1, 0), -EBADF);
	assert_int_equal(foliofs_release(g), 0);
	/* Nothing was written through the refused calls. */
	assert_int_equal(read_all(f, target, 10, 0), 4);
	assert_memory_equal(target, "data", 4);
	assert_int_equal(foliofs_release(f), 0);
	/* Symlinks are not opened. */
	assert_int_equal(foliofs_open(fs, ino_of(fs, "/long"), O_RDONLY, &f),
			 -ELOOP);

	/* A removed directory takes no new entries. */
	{
		foliofs_ino_t gone;

		assert_int_equal(foliofs_mkdir(fs, ROOT, "gone", 0755, NULL,
					       &a), 0);
		gone = a.ino;
		assert_int_equal(foliofs_rmdir(fs, ROOT, "gone"), 0);
		assert_int_equal(foliofs_mknod(fs, gone, "x", S_IFREG, 0,
					       NULL, &a), -ENOENT);
		foliofs_forget(fs, gone, 1);
	}
	umnt(fs);
	unlink(path);
}

static void test_readonly_mount(void **state)
{
	struct foliofs_mount_opts ro = { .readonly = 1 };
	struct foliofs_attr a, in = { .mode = 0600 };
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096], *before, *after;
	uint64_t img = 16 * MiB;
	int fd;

	(void)state;
	mkfs_img(path, "img", img);
	fs = mnt(path, NULL);
	put_file(fs, "/f", "read me");
	assert_int_equal(foliofs_mkdir_path(fs, "/d", 0755), 0);
	umnt(fs);

	before = malloc(img);
	after = malloc(img);
	assert_non_null(before);
	assert_non_null(after);
	fd = open(path, O_RDONLY);
	assert_int_equal(pread(fd, before, img, 0), (ssize_t)img);

	fs = mnt(path, &ro);
	assert_int_equal(foliofs_create(fs, ROOT, "n", 0644, O_RDWR, NULL, &a,
					&f), -EROFS);
	assert_int_equal(foliofs_open_path(fs, "/n", O_CREAT | O_RDWR, 0644,
					   &f), -EROFS);
	assert_int_equal(foliofs_mkdir(fs, ROOT, "n", 0755, NULL, &a), -EROFS);
	assert_int_equal(foliofs_mknod(fs, ROOT, "n", S_IFIFO, 0, NULL, &a),
			 -EROFS);
	assert_int_equal(foliofs_symlink(fs, ROOT, "n", "t", NULL, &a), -EROFS);
	assert_int_equal(foliofs_link(fs, ino_of(fs, "/f"), ROOT, "n", &a),
			 -EROFS);
	assert_int_equal(foliofs_unlink(fs, ROOT, "f"), -EROFS);
	assert_int_equal(foliofs_rmdir(fs, ROOT, "d"), -EROFS);
	assert_int_equal(foliofs_rename(fs, ROOT, "f", ROOT, "g", 0), -EROFS);
	assert_int_equal(foliofs_setattr(fs, ino_of(fs, "/f"), &in,
					 FOLIOFS_SET_MODE, &a), -EROFS);
	assert_int_equal(foliofs_open_path(fs, "/f", O_RDWR, 0, &f), -EROFS);
	assert_int_equal(foliofs_open_path(fs, "/f", O_WRONLY, 0, &f), -EROFS);
	assert_int_equal(foliofs_open_path(fs, "/f", O_RDONLY | O_TRUNC, 0,
					   &f), -EROFS);
	f = open_p(fs, "/f", O_RDONLY);
	expect_content(fs, "/f", "read me");
	assert_int_equal(foliofs_write(f, "x", 1, 0), -EROFS);
	assert_int_equal(foliofs_fallocate(f, 0, 0, 4096), -EROFS);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(foliofs_release(f), 0);
	assert_int_equal(foliofs_stat_path(fs, "/d", &a), 0);
	umnt(fs);

	/* Nothing was written: the image is byte-identical. */
	assert_int_equal(pread(fd, after, img, 0), (ssize_t)img);
	assert_true(memcmp(before, after, img) == 0);
	close(fd);
	free(before);
	free(after);
	unlink(path);
}

/* ---- Data ------------------------------------------------------------------------- */

static void test_data_odd_offsets_round_trip(void **state)
{
	static const struct { uint64_t off; size_t len; } w[] = {
		{ 0, 1 }, { 1, 4094 }, { 4095, 2 }, { 12345, 77777 },
		{ 8191, 1 }, { 65537, 131071 }, { 3 * MiB - 5, 11 },
		{ 2 * MiB - 1, 4097 }, { 100, 3 }, { 1 * MiB + 7, 999999 },
		{ 4 * MiB + 4093, 7 }, { 50000, 1 },
	};
	const uint64_t fsize = 4 * MiB + 4100;
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096], *shadow, *buf;
	uint64_t o, end = 0;
	size_t i;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	shadow = calloc(1, fsize);
	buf = malloc(fsize);
	assert_non_null(shadow);
	assert_non_null(buf);

	f = open_p(fs, "/odd", O_CREAT | O_RDWR);
	for (i = 0; i < ARRAY_SIZE(w); i++) {
		char *chunk = malloc(w[i].len);
		size_t n, want;

		assert_non_null(chunk);
		fill_pat(chunk, w[i].off, w[i].len, (unsigned int)i + 1);
		write_all(f, chunk, w[i].len, w[i].off);
		memcpy(shadow + w[i].off, chunk, w[i].len);
		free(chunk);
		if (w[i].off + w[i].len > end)
			end = w[i].off + w[i].len;
		assert_int_equal(size_of(fs, "/odd"), end);
		/* Read back around the write at once: holes before it read
		 * as zeroes, the read stops at EOF. */
		o = w[i].off > 5000 ? w[i].off - 5000 : 0;
		want = w[i].len + 10000;
		if (o + want > end)
			want = (size_t)(end - o);
		memset(buf, 0xee, fsize);
		n = read_all(f, buf, w[i].len + 10000, o);
		assert_int_equal(n, want);
		assert_memory_equal(buf, shadow + o, n);
	}
	assert_int_equal(size_of(fs, "/odd"), fsize);
	/* Reads at odd offsets and sizes, past EOF short. */
	assert_int_equal(read_all(f, buf, fsize, 0), fsize);
	assert_memory_equal(buf, shadow, fsize);
	assert_int_equal(read_all(f, buf, 1000, fsize - 3), 3);
	assert_memory_equal(buf, shadow + fsize - 3, 3);
	assert_int_equal(foliofs_read(f, buf, 10, fsize), 0);
	assert_int_equal(foliofs_read(f, buf, 10, fsize + 12345), 0);
	/* Half the data written back, half still dirty at unmount. */
	assert_int_equal(foliofs_fsync(f, 1), 0);
	fill_pat(shadow + 777, 777, 3333, 99);
	write_all(f, shadow + 777, 3333, 777);
	assert_int_equal(foliofs_release(f), 0);

	fs = remount(fs, path, NULL);
	assert_int_equal(size_of(fs, "/odd"), fsize);
	f = open_p(fs, "/odd", O_RDONLY);
	memset(buf, 0xee, fsize);
	assert_int_equal(read_all(f, buf, fsize, 0), fsize);
	assert_memory_equal(buf, shadow, fsize);
	/* Odd-sized reads of the cold file agree with the shadow. */
	for (o = 1; o < fsize; o += 300007) {
		size_t n = read_all(f, buf, 70001, o);

		assert_int_equal(n, fsize - o < 70001 ? fsize - o : 70001);
		assert_memory_equal(buf, shadow + o, n);
	}
	assert_int_equal(foliofs_release(f), 0);

	/* copy_range between files at odd offsets. */
	{
		struct foliofs_file *in = open_p(fs, "/odd", O_RDONLY);
		struct foliofs_file *out = open_p(fs, "/copy",
						  O_CREAT | O_RDWR);

		assert_int_equal(foliofs_copy_range(in, 3, out, 5, 2 * MiB + 1),
				 2 * MiB + 1);
		assert_int_equal(read_all(out, buf, 3 * MiB, 0), 2 * MiB + 6);
		assert_int_equal(check_zero(buf, 0, 5), -1);
		assert_memory_equal(buf + 5, shadow + 3, 2 * MiB + 1);
		assert_int_equal(foliofs_release(in), 0);
		assert_int_equal(foliofs_release(out), 0);
	}
	umnt(fs);
	free(shadow);
	free(buf);
	unlink(path);
}

static void test_sparse_file(void **state)
{
	const uint64_t off = GiB - 3;
	const size_t len = 3 * 4096 + 11;
	struct foliofs_file *f;
	struct foliofs_attr a;
	struct foliofs *fs;
	char path[4096];
	uint64_t free0;

	(void)state;
	mkfs_img(path, "img", 256 * MiB);
	fs = mnt(path, NULL);
	free0 = bfree(fs);
	f = open_p(fs, "/sparse", O_CREAT | O_RDWR);
	write_pat(f, off, len, 7, len);
	write_pat(f, 1000, 10, 8, 10);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(foliofs_getattr(fs, foliofs_file_ino(f), &a), 0);
	assert_int_equal(a.size, off + len);
	/* Six blocks of data (block 0, and 262143..262147 around 1 GiB)
	 * hold six blocks, not a gigabyte. */
	assert_int_equal(a.blocks, 6 * 8);
	assert_int_equal(bfree(fs), free0 - 6);
	expect_range(f, 0, 1000, 0);
	expect_range(f, 1000, 10, 8);
	expect_range(f, 1010, 2 * MiB, 0);
	expect_range(f, 512 * MiB - 4097, 3 * 4096, 0);
	expect_range(f, off - 2 * MiB, 2 * MiB, 0);
	expect_range(f, off, len, 7);
	assert_int_equal(foliofs_release(f), 0);

	fs = remount(fs, path, NULL);
	f = open_p(fs, "/sparse", O_RDONLY);
	assert_int_equal(size_of(fs, "/sparse"), off + len);
	expect_range(f, 0, 1000, 0);
	expect_range(f, 1000, 10, 8);
	expect_range(f, 1010, MiB, 0);
	expect_range(f, 700 * MiB + 1, 3 * 4096, 0);
	expect_range(f, off - MiB, MiB, 0);
	expect_range(f, off, len, 7);
	assert_int_equal(foliofs_release(f), 0);
	umnt(fs);
	unlink(path);
}

/* The largest folio order cached at @idx of @ino (internals, for the check). */
static int folio_order_at(struct foliofs *fs, foliofs_ino_t ino,
			  unsigned long idx)
{
	struct fs_inode *inode;
	int order = -1;

	pthread_rwlock_rdlock(&fs->ns_lock);
	inode = fs_iget_locked(fs, ino);
	if (inode && xa_load(&inode->map.pages, idx))
		order = (int)xa_get_order(&inode->map.pages, idx);
	pthread_rwlock_unlock(&fs->ns_lock);
	return order;
}

static void test_large_folio_write(void **state)
{
	const uint64_t off = 2 * MiB, len = 8 * MiB;
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096];
	foliofs_ino_t ino;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	f = open_p(fs, "/big", O_CREAT | O_RDWR);
	ino = foliofs_file_ino(f);
	write_pat(f, off, len, 11, len);
	/* A 2 MiB-aligned write fills 2 MiB folios. */
	for (unsigned long i = 0; i < 4; i++)
		assert_int_equal(folio_order_at(fs, ino,
						(off >> 12) + i * 512 + 7), 9);
	expect_range(f, 0, off, 0);
	expect_range(f, off, len, 11);
	/* Overwrite a sliver across a folio boundary, dirty and written. */
	assert_int_equal(foliofs_fsync(f, 0), 0);
	write_pat(f, 4 * MiB - 100, 200, 12, 200);
	expect_range(f, 4 * MiB - 101, 1, 11);
	expect_range(f, 4 * MiB - 100, 200, 12);
	expect_range(f, 4 * MiB + 100, 1, 11);
	assert_int_equal(foliofs_release(f), 0);
	fs = remount(fs, path, NULL);
	f = open_p(fs, "/big", O_RDONLY);
	assert_int_equal(size_of(fs, "/big"), off + len);
	expect_range(f, 0, off, 0);
	expect_range(f, off, 2 * MiB - 100, 11);
	expect_range(f, 4 * MiB - 100, 200, 12);
	expect_range(f, 4 * MiB + 100, off + len - 4 * MiB - 100, 11);
	assert_int_equal(foliofs_release(f), 0);
	umnt(fs);
	unlink(path);
}

/* foliofs_stats() reports cached bytes by folio order (foliofs.h). */
static void test_stats_cached_bytes_by_order(void **state)
{
	struct foliofs_stats st;
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096];
	uint64_t sum = 0;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	f = open_p(fs, "/big", O_CREAT | O_RDWR);
	write_pat(f, 0, 8 * MiB, 1, 8 * MiB);
	assert_int_equal(folio_order_at(fs, foliofs_file_ino(f), 0), 9);
	assert_int_equal(foliofs_stats(fs, &st), 0);
	assert_true(st.cached_bytes >= 8 * MiB);
	for (int i = 0; i < 10; i++)
		sum += st.cached_bytes_by_order[i];
	printf("# cached %llu, by order: 9 -> %llu, sum %llu\n",
	       (unsigned long long)st.cached_bytes,
	       (unsigned long long)st.cached_bytes_by_order[9],
	       (unsigned long long)sum);
	assert_int_equal(sum, st.cached_bytes);
	assert_true(st.cached_bytes_by_order[9] >= 8 * MiB);
	assert_int_equal(foliofs_release(f), 0);
	umnt(fs);
	unlink(path);
}

static void test_file_larger_than_cache(void **state)
{
	const struct foliofs_mount_opts small = { .cache_bytes = 8 * MiB };
	const uint64_t len = 64 * MiB;
	struct foliofs_stats st;
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096];

	(void)state;
	mkfs_img(path, "img", 128 * MiB);
	fs = mnt(path, &small);
	f = open_p(fs, "/huge", O_CREAT | O_RDWR);
	/* Odd-sized chunks, so writes straddle folios. */
	write_pat(f, 0, len, 21, 1 * MiB + 4096 * 3 + 5);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(reserved_blocks(fs), 0);
	assert_int_equal(foliofs_stats(fs, &st), 0);
	assert_int_equal(st.cache_limit_bytes, 8 * MiB);
	expect_range(f, 0, len, 21);
	assert_int_equal(foliofs_stats(fs, &st), 0);
	printf("# cached %llu of %llu, reclaimed %llu folios, written %llu\n",
	       (unsigned long long)st.cached_bytes,
	       (unsigned long long)st.cache_limit_bytes,
	       (unsigned long long)st.reclaimed_folios,
	       (unsigned long long)st.written_bytes);
	assert_true(st.reclaimed_folios > 0);
	assert_true(st.written_bytes >= len);
	/* The limit holds, give or take one largest folio. */
	assert_true(st.cached_bytes <= st.cache_limit_bytes + 2 * MiB);
	assert_int_equal(foliofs_release(f), 0);

	fs = remount(fs, path, &small);
	assert_int_equal(size_of(fs, "/huge"), len);
	f = open_p(fs, "/huge", O_RDONLY);
	expect_range(f, 0, len, 21);
	assert_int_equal(foliofs_release(f), 0);
	umnt(fs);
	unlink(path);
}

static void test_append_and_trunc(void **state)
{
	struct foliofs_file *f, *g;
	struct foliofs_attr a;
	struct foliofs *fs;
	char path[4096], buf[64];

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);

	/* O_APPEND: every write goes to the end, whatever the offset. */
	f = open_p(fs, "/log", O_CREAT | O_WRONLY | O_APPEND);
	assert_int_equal(foliofs_write(f, "abc", 3, 0), 3);
	assert_int_equal(foliofs_write(f, "def", 3, 0), 3);
	assert_int_equal(foliofs_write(f, "gh", 2, 1000), 2);
	g = open_p(fs, "/log", O_RDWR);
	assert_int_equal(foliofs_write(g, "XY", 2, 1), 2);	/* in place */
	assert_int_equal(foliofs_write(f, "!", 1, 0), 1);
	assert_int_equal(foliofs_release(g), 0);
	assert_int_equal(foliofs_release(f), 0);
	expect_content(fs, "/log", "aXYdefgh!");

	/* O_TRUNC through open and through create. */
	put_file(fs, "/t1", "0123456789");
	put_file(fs, "/t2", "0123456789");
	put_file(fs, "/t3", "0123456789");
	f = open_p(fs, "/t1", O_RDWR | O_TRUNC);
	assert_int_equal(size_of(fs, "/t1"), 0);
	assert_int_equal(foliofs_read(f, buf, sizeof(buf), 0), 0);
	assert_int_equal(foliofs_write(f, "new", 3, 0), 3);
	assert_int_equal(foliofs_release(f), 0);
	assert_int_equal(foliofs_create(fs, ROOT, "t2", 0644, O_RDWR | O_TRUNC,
					NULL, &a, &f), 0);
	assert_int_equal(a.size, 0);
	assert_int_equal(foliofs_release(f), 0);
	foliofs_forget(fs, a.ino, 1);
	/* O_TRUNC of a read-only open is ignored, as Linux does. */
	f = open_p(fs, "/t3", O_RDONLY | O_TRUNC);
	assert_int_equal(foliofs_release(f), 0);
	assert_int_equal(size_of(fs, "/t3"), 10);

	fs = remount(fs, path, NULL);
	expect_content(fs, "/log", "aXYdefgh!");
	expect_content(fs, "/t1", "new");
	assert_int_equal(size_of(fs, "/t2"), 0);
	expect_content(fs, "/t3", "0123456789");
	umnt(fs);
	unlink(path);
}

static void test_truncate_extend_zeroes(void **state)
{
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096];
	foliofs_ino_t a, b, c;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);

	/* a: written, cut mid-block and extended while dirty. */
	f = open_p(fs, "/a", O_CREAT | O_RDWR);
	a = foliofs_file_ino(f);
	write_pat(f, 0, 10000, 1, 10000);
	set_size(fs, a, 3000);
	set_size(fs, a, 20000);
	expect_range(f, 0, 3000, 1);
	expect_range(f, 3000, 17000, 0);
	assert_int_equal(foliofs_release(f), 0);

	/* b: written back first, so the stale tail is on disk. */
	f = open_p(fs, "/b", O_CREAT | O_RDWR);
	b = foliofs_file_ino(f);
	write_pat(f, 0, 3 * MiB, 2, MiB);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	set_size(fs, b, 5000);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	set_size(fs, b, 3 * MiB);
	expect_range(f, 0, 5000, 2);
	expect_range(f, 5000, 3 * MiB - 5000, 0);
	/* Then a write past the old end of the kept block. */
	write_pat(f, 2 * MiB + 1, 10, 3, 10);
	assert_int_equal(foliofs_release(f), 0);

	/* c: written back, cut, and the cut block dropped from the cache
	 * by a remount before extending. */
	f = open_p(fs, "/c", O_CREAT | O_RDWR);
	c = foliofs_file_ino(f);
	write_pat(f, 0, 64 * 1024, 4, 64 * 1024);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	set_size(fs, c, 4097);
	assert_int_equal(foliofs_release(f), 0);
	fs = remount(fs, path, NULL);
	set_size(fs, c, 64 * 1024);
	f = open_p(fs, "/c", O_RDONLY);
	expect_range(f, 0, 4097, 4);
	expect_range(f, 4097, 64 * 1024 - 4097, 0);
	assert_int_equal(foliofs_release(f), 0);

	fs = remount(fs, path, NULL);
	f = open_p(fs, "/a", O_RDONLY);
	assert_int_equal(size_of(fs, "/a"), 20000);
	expect_range(f, 0, 3000, 1);
	expect_range(f, 3000, 17000, 0);
	assert_int_equal(foliofs_release(f), 0);
	f = open_p(fs, "/b", O_RDONLY);
	assert_int_equal(size_of(fs, "/b"), 3 * MiB);
	expect_range(f, 0, 5000, 2);
	expect_range(f, 5000, 2 * MiB + 1 - 5000, 0);
	expect_range(f, 2 * MiB + 1, 10, 3);
	expect_range(f, 2 * MiB + 11, MiB - 11, 0);
	assert_int_equal(foliofs_release(f), 0);
	f = open_p(fs, "/c", O_RDONLY);
	expect_range(f, 0, 4097, 4);
	expect_range(f, 4097, 64 * 1024 - 4097, 0);
	assert_int_equal(foliofs_release(f), 0);
	/* Truncate to zero frees everything. */
	set_size(fs, b, 0);
	{
		struct foliofs_attr at;

		assert_int_equal(foliofs_getattr(fs, b, &at), 0);
		assert_int_equal(at.blocks, 0);
	}
	umnt(fs);
	unlink(path);
}

/* ---- Durability and space accounting -------------------------------------------------- */

static void test_sync_reserved_statfs(void **state)
{
	struct foliofs_statfs s0, s1, s2;
	struct foliofs_file *f, *g;
	struct foliofs *fs;
	char path[4096];
	uint64_t ck, free_before_unlink;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, &quiet_opts);
	assert_int_equal(reserved_blocks(fs), 0);
	assert_int_equal(foliofs_statfs(fs, &s0), 0);
	assert_int_equal(s0.bfree, s0.bavail);
	ck = checkpoints(fs);

	/* Delalloc: the write reserves, fsync turns it into blocks. */
	f = open_p(fs, "/one", O_CREAT | O_RDWR);
	write_pat(f, 0, 3 * MiB + 100, 1, 65536 + 3);
	assert_int_equal(reserved_blocks(fs), 769);
	assert_int_equal(foliofs_statfs(fs, &s1), 0);
	/* Reserved blocks already count as used, as ext4 counts them. */
	assert_int_equal(s1.bfree, s0.bfree - 769);
	assert_int_equal(s1.bavail, s1.bfree);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(reserved_blocks(fs), 0);
	assert_int_equal(foliofs_statfs(fs, &s1), 0);
	assert_int_equal(s1.bfree, s0.bfree - 769);
	assert_int_equal(s1.bavail, s1.bfree);
	assert_int_equal(s1.files, s0.files + 1);

	/* syncfs covers another file's dirty data. */
	g = open_p(fs, "/two", O_CREAT | O_RDWR);
	write_pat(g, 4096 * 10 + 1, MiB, 2, MiB);
	assert_true(reserved_blocks(fs) > 0);
	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(reserved_blocks(fs), 0);
	/* An overwrite of written blocks reserves nothing. */
	write_pat(f, 100, 5000, 3, 5000);
	assert_int_equal(reserved_blocks(fs), 0);
	assert_int_equal(foliofs_fsync(f, 1), 0);
	assert_int_equal(foliofs_release(f), 0);
	assert_int_equal(foliofs_release(g), 0);
	free_before_unlink = bfree(fs);
	assert_int_equal(free_before_unlink, s0.bfree - 769 - 257);

	/* After unmount and mount: nothing reserved, data there. */
	fs = remount(fs, path, &quiet_opts);
	assert_int_equal(reserved_blocks(fs), 0);
	f = open_p(fs, "/one", O_RDONLY);
	expect_range(f, 0, 100, 1);
	expect_range(f, 100, 5000, 3);
	expect_range(f, 5100, 3 * MiB + 100 - 5100, 1);
	assert_int_equal(foliofs_release(f), 0);
	f = open_p(fs, "/two", O_RDONLY);
	expect_range(f, 0, 40961, 0);
	expect_range(f, 40961, MiB, 2);
	assert_int_equal(foliofs_release(f), 0);

	/* Unlink gives the blocks back once the unlink is committed. */
	ck = checkpoints(fs);
	free_before_unlink = bfree(fs);
	assert_int_equal(foliofs_unlink_path(fs, "/one"), 0);
	assert_int_equal(foliofs_unlink_path(fs, "/two"), 0);
	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(foliofs_statfs(fs, &s2), 0);
	printf("# free: %llu at mount, %llu with the files, %llu after unlink\n",
	       (unsigned long long)s0.bfree,
	       (unsigned long long)free_before_unlink,
	       (unsigned long long)s2.bfree);
	if (checkpoints(fs) == ck)
		assert_int_equal(s2.bfree, free_before_unlink + 769 + 257);
	else
		assert_true(s2.bfree >= free_before_unlink + 769 + 257 - 64);
	assert_int_equal(s2.files, s0.files);
	assert_int_equal(reserved_blocks(fs), 0);
	umnt(fs);

	fs = mnt(path, NULL);
	assert_int_equal(reserved_blocks(fs), 0);
	assert_int_equal(foliofs_statfs(fs, &s2), 0);
	assert_true(s2.bfree + 64 >= s0.bfree);
	umnt(fs);
	unlink(path);
}

static void test_enospc(void **state)
{
	const size_t chunk = 256 * KiB;
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096], *buf;
	uint64_t total = 0;
	ssize_t n = 0;
	int i;

	(void)state;
	mkfs_img(path, "img", 8 * MiB);
	fs = mnt(path, NULL);
	buf = malloc(chunk);
	assert_non_null(buf);
	f = open_p(fs, "/fill", O_CREAT | O_RDWR);
	for (i = 0; i < 64; i++) {
		fill_pat(buf, total, chunk, 5);
		n = foliofs_write(f, buf, chunk, total);
		if (n < 0)
			break;
		assert_true(n > 0);
		total += (uint64_t)n;
	}
	printf("# wrote %llu bytes before %zd\n", (unsigned long long)total, n);
	assert_int_equal(n, -ENOSPC);
	/* The data area is about 6.9 MiB: ENOSPC comes when it is full. */
	assert_true(total > 6 * MiB);
	assert_int_equal(size_of(fs, "/fill"), total);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(reserved_blocks(fs), 0);
	/* Still full after the fsync. */
	assert_int_equal(foliofs_write(f, buf, chunk, total), -ENOSPC);
	assert_int_equal(foliofs_release(f), 0);
	/* Namespace changes still work on a full volume. */
	assert_int_equal(foliofs_mkdir_path(fs, "/dir", 0755), 0);

	fs = remount(fs, path, NULL);
	assert_int_equal(size_of(fs, "/fill"), total);
	f = open_p(fs, "/fill", O_RDONLY);
	expect_range(f, 0, total, 5);
	assert_int_equal(foliofs_release(f), 0);

	/* Unlinking frees the space for a new file. */
	assert_int_equal(foliofs_unlink_path(fs, "/fill"), 0);
	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(foliofs_syncfs(fs), 0);
	f = open_p(fs, "/again", O_CREAT | O_RDWR);
	write_pat(f, 0, 4 * MiB, 6, chunk);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(foliofs_release(f), 0);
	fs = remount(fs, path, NULL);
	f = open_p(fs, "/again", O_RDONLY);
	expect_range(f, 0, 4 * MiB, 6);
	assert_int_equal(foliofs_release(f), 0);
	umnt(fs);
	assert_int_equal(foliofs_fsck(path, 0, NULL, NULL), FOLIOFS_FSCK_OK);
	free(buf);
	unlink(path);
}

/* ---- fallocate and SEEK_DATA/SEEK_HOLE ------------------------------------------------- */

static void test_fallocate(void **state)
{
	struct foliofs_attr a0, a;
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096];
	foliofs_ino_t ino;
	uint64_t free0;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	f = open_p(fs, "/fa", O_CREAT | O_RDWR);
	ino = foliofs_file_ino(f);
	write_pat(f, 0, 64 * KiB, 1, 64 * KiB);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(foliofs_getattr(fs, ino, &a0), 0);
	free0 = bfree(fs);

	/* Mode 0: the size grows, the new range reads zeroes, blocks are
	 * allocated now. */
	assert_int_equal(foliofs_fallocate(f, 0, 64 * KiB, MiB), 0);
	assert_int_equal(foliofs_getattr(fs, ino, &a), 0);
	assert_int_equal(a.size, 64 * KiB + MiB);
	assert_int_equal(a.blocks, a0.blocks + 256 * 8);
	assert_int_equal(bfree(fs), free0 - 256);
	expect_range(f, 0, 64 * KiB, 1);
	expect_range(f, 64 * KiB, MiB, 0);

	/* KEEP_SIZE: blocks past EOF, the size stays. */
	assert_int_equal(foliofs_fallocate(f, FALLOC_FL_KEEP_SIZE, 2 * MiB,
					   MiB), 0);
	assert_int_equal(foliofs_getattr(fs, ino, &a), 0);
	assert_int_equal(a.size, 64 * KiB + MiB);
	assert_int_equal(a.blocks, a0.blocks + 512 * 8);

	/* Data over the preallocated range, then a hole punched in the
	 * middle (not block aligned). */
	write_pat(f, 0, MiB, 2, 100000);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(foliofs_fallocate(f, FALLOC_FL_PUNCH_HOLE |
					   FALLOC_FL_KEEP_SIZE, 100000, 200000),
			 0);
	assert_int_equal(foliofs_getattr(fs, ino, &a), 0);
	assert_int_equal(a.size, 64 * KiB + MiB);
	expect_range(f, 0, 100000, 2);
	expect_range(f, 100000, 200000, 0);
	expect_range(f, 300000, MiB - 300000, 2);
	expect_range(f, MiB, 64 * KiB, 0);
	/* Whole blocks 25..72 were freed. */
	assert_int_equal(a.blocks, a0.blocks + (512 - 48) * 8);
	/* A punch over dirty, unwritten data. */
	write_pat(f, 500000, 100000, 3, 100000);
	assert_int_equal(foliofs_fallocate(f, FALLOC_FL_PUNCH_HOLE |
					   FALLOC_FL_KEEP_SIZE, 550000, 10000),
			 0);
	expect_range(f, 500000, 50000, 3);
	expect_range(f, 550000, 10000, 0);
	expect_range(f, 560000, 40000, 3);
	/* ZERO_RANGE. */
	assert_int_equal(foliofs_fallocate(f, FALLOC_FL_ZERO_RANGE, 700001,
					   12345), 0);
	expect_range(f, 700001, 12345, 0);
	expect_range(f, 712346, 10000, 2);

	/* Refused modes and ranges. */
	assert_int_equal(foliofs_fallocate(f, FALLOC_FL_PUNCH_HOLE, 0, 4096),
			 -EOPNOTSUPP);
	assert_int_equal(foliofs_fallocate(f, FALLOC_FL_COLLAPSE_RANGE, 0,
					   4096), -EOPNOTSUPP);
	assert_int_equal(foliofs_fallocate(f, 0, 0, 0), -EINVAL);
	assert_int_equal(foliofs_release(f), 0);

	fs = remount(fs, path, NULL);
	f = open_p(fs, "/fa", O_RDONLY);
	assert_int_equal(size_of(fs, "/fa"), 64 * KiB + MiB);
	expect_range(f, 0, 100000, 2);
	expect_range(f, 100000, 200000, 0);
	expect_range(f, 300000, 200000, 2);
	expect_range(f, 500000, 50000, 3);
	expect_range(f, 550000, 10000, 0);
	expect_range(f, 560000, 40000, 3);
	expect_range(f, 600000, 100001, 2);
	expect_range(f, 700001, 12345, 0);
	expect_range(f, 712346, MiB - 712346, 2);
	expect_range(f, MiB, 64 * KiB, 0);
	assert_int_equal(foliofs_release(f), 0);
	/* The KEEP_SIZE blocks past EOF survive too; growing into them
	 * reads zeroes. */
	set_size(fs, ino, 3 * MiB);
	f = open_p(fs, "/fa", O_RDONLY);
	expect_range(f, MiB + 64 * KiB, 2 * MiB - 64 * KiB, 0);
	assert_int_equal(foliofs_release(f), 0);
	umnt(fs);
	assert_int_equal(foliofs_fsck(path, 0, NULL, NULL), FOLIOFS_FSCK_OK);
	unlink(path);
}

/* data [0, 64K), hole [64K, 1M), data [1M, 1M + 64K), hole to 3M. */
static void check_seeks(struct foliofs_file *f, const char *when)
{
	const int64_t d1 = 64 * KiB, d2 = MiB, e2 = MiB + 64 * KiB;
	const int64_t size = 3 * MiB;

	printf("# seeks %s\n", when);
	assert_int_equal(foliofs_lseek(f, 0, SEEK_DATA), 0);
	assert_int_equal(foliofs_lseek(f, 100, SEEK_DATA), 100);
	assert_int_equal(foliofs_lseek(f, 0, SEEK_HOLE), d1);
	assert_int_equal(foliofs_lseek(f, d1 - 1, SEEK_HOLE), d1);
	assert_int_equal(foliofs_lseek(f, d1, SEEK_HOLE), d1);
	assert_int_equal(foliofs_lseek(f, d1, SEEK_DATA), d2);
	assert_int_equal(foliofs_lseek(f, 70000, SEEK_DATA), d2);
	assert_int_equal(foliofs_lseek(f, 70000, SEEK_HOLE), 70000);
	assert_int_equal(foliofs_lseek(f, d2, SEEK_DATA), d2);
	assert_int_equal(foliofs_lseek(f, d2 + 5, SEEK_DATA), d2 + 5);
	assert_int_equal(foliofs_lseek(f, d2, SEEK_HOLE), e2);
	/* The fallocated block at 2M reads zeroes: a hole. */
	assert_int_equal(foliofs_lseek(f, e2, SEEK_DATA), -ENXIO);
	assert_int_equal(foliofs_lseek(f, e2, SEEK_HOLE), e2);
	assert_int_equal(foliofs_lseek(f, size - 1, SEEK_HOLE), size - 1);
	assert_int_equal(foliofs_lseek(f, size, SEEK_DATA), -ENXIO);
	assert_int_equal(foliofs_lseek(f, size, SEEK_HOLE), -ENXIO);
	assert_int_equal(foliofs_lseek(f, size + 12345, SEEK_DATA), -ENXIO);
	assert_int_equal(foliofs_lseek(f, 0, SEEK_SET), -EINVAL);
}

static void test_seek_data_hole(void **state)
{
	struct foliofs_file *f, *g;
	struct foliofs *fs;
	char path[4096];

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, &quiet_opts);
	f = open_p(fs, "/s", O_CREAT | O_RDWR);
	/* fallocate writes back first: it goes before the data. */
	assert_int_equal(foliofs_fallocate(f, 0, 2 * MiB, 4096), 0);
	write_pat(f, 0, 64 * KiB, 1, 64 * KiB);
	write_pat(f, MiB, 64 * KiB, 2, 64 * KiB);
	set_size(fs, foliofs_file_ino(f), 3 * MiB);
	assert_true(reserved_blocks(fs) > 0);	/* still only in the cache */
	check_seeks(f, "with dirty data");
	assert_int_equal(foliofs_fsync(f, 0), 0);
	check_seeks(f, "after fsync");
	assert_int_equal(foliofs_release(f), 0);

	/* A hole inside one folio: blocks 0 and 3 of a 16 KiB file. */
	g = open_p(fs, "/h", O_CREAT | O_RDWR);
	write_pat(g, 0, 4096, 3, 4096);
	write_pat(g, 12288, 4096, 3, 4096);
	assert_int_equal(foliofs_lseek(g, 0, SEEK_HOLE), 4096);
	assert_int_equal(foliofs_lseek(g, 4096, SEEK_DATA), 12288);
	assert_int_equal(foliofs_fsync(g, 0), 0);
	assert_int_equal(foliofs_lseek(g, 0, SEEK_HOLE), 4096);
	assert_int_equal(foliofs_lseek(g, 4096, SEEK_DATA), 12288);
	assert_int_equal(foliofs_lseek(g, 12288, SEEK_HOLE), 16384);
	assert_int_equal(foliofs_release(g), 0);

	/* An empty file has neither. */
	g = open_p(fs, "/empty", O_CREAT | O_RDWR);
	assert_int_equal(foliofs_lseek(g, 0, SEEK_DATA), -ENXIO);
	assert_int_equal(foliofs_lseek(g, 0, SEEK_HOLE), -ENXIO);
	assert_int_equal(foliofs_release(g), 0);

	fs = remount(fs, path, NULL);
	f = open_p(fs, "/s", O_RDONLY);
	check_seeks(f, "after remount");
	expect_range(f, 0, 64 * KiB, 1);
	expect_range(f, MiB, 64 * KiB, 2);
	assert_int_equal(foliofs_release(f), 0);
	g = open_p(fs, "/h", O_RDONLY);
	assert_int_equal(foliofs_lseek(g, 0, SEEK_HOLE), 4096);
	assert_int_equal(foliofs_lseek(g, 4096, SEEK_DATA), 12288);
	assert_int_equal(foliofs_release(g), 0);
	umnt(fs);
	unlink(path);
}

/* ---- readdir ---------------------------------------------------------------------- */

#define NR_BIG	10000

/* Every e%05u listed exactly once, after "." and "..". */
static void check_big_listing(const struct lister *l)
{
	unsigned char *seen = calloc(NR_BIG, 1);
	size_t i;

	assert_non_null(seen);
	assert_int_equal(l->nr, NR_BIG + 2);
	assert_string_equal(l->ents[0].name, ".");
	assert_string_equal(l->ents[1].name, "..");
	assert_int_equal(l->ents[0].type, DT_DIR);
	assert_int_equal(l->ents[1].type, DT_DIR);
	for (i = 2; i < l->nr; i++) {
		unsigned int n;
		char tail;

		if (sscanf(l->ents[i].name, "e%05u%c", &n, &tail) != 1 ||
		    n >= NR_BIG)
			fail_msg("unexpected entry \"%s\"", l->ents[i].name);
		if (seen[n]++)
			fail_msg("\"%s\" listed twice", l->ents[i].name);
		assert_int_equal(l->ents[i].type, DT_REG);
	}
	free(seen);
}

static void test_readdir_10k(void **state)
{
	struct foliofs_attr a;
	struct foliofs_file *d;
	struct foliofs *fs;
	struct lister l;
	char path[4096], name[32];
	foliofs_ino_t dir;
	unsigned int i, calls;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	assert_int_equal(foliofs_mkdir(fs, ROOT, "big", 0755, NULL, &a), 0);
	dir = a.ino;
	for (i = 0; i < NR_BIG; i++) {
		snprintf(name, sizeof(name), "e%05u", i);
		assert_int_equal(foliofs_mknod(fs, dir, name, S_IFREG | 0644, 0,
					       NULL, &a), 0);
		foliofs_forget(fs, a.ino, 1);
	}
	d = open_dir(fs, dir);
	list_dir(d, 0, 0, &l, NULL, NULL);
	check_big_listing(&l);
	free(l.ents);
	/* In small calls, each resumed at the cursor. */
	calls = list_dir(d, 0, 97, &l, NULL, NULL);
	assert_int_equal(calls, (NR_BIG + 2) / 97 + 1);
	check_big_listing(&l);
	free(l.ents);
	assert_int_equal(foliofs_release(d), 0);

	fs = remount(fs, path, NULL);
	d = open_dir(fs, dir);
	list_dir(d, 0, 1000, &l, NULL, NULL);
	check_big_listing(&l);
	/* Every inode named is live and of the type listed. */
	for (i = 2; i < l.nr; i += 499) {
		assert_int_equal(foliofs_getattr(fs, l.ents[i].ino, &a), 0);
		assert_true(S_ISREG(a.mode));
	}
	free(l.ents);
	assert_int_equal(foliofs_release(d), 0);
	umnt(fs);
	unlink(path);
}

#define NR_STABLE	2000
#define NR_VOLATILE	1000
#define CHURN		15

struct churn {
	struct foliofs	*fs;
	foliofs_ino_t	dir;
	unsigned int	next_vol;	/* removals done so far */
	unsigned int	next_new;	/* n%04u names made so far */
	bool		removed[NR_VOLATILE];
};

/* Between readdir calls: remove volatile entries, add new ones. */
static void churn_between(void *arg, unsigned int call, const char *refused)
{
	struct churn *c = arg;
	struct foliofs_attr a;
	char name[32];
	unsigned int i;

	(void)call;
	for (i = 0; i < CHURN && c->next_vol < NR_VOLATILE; i++) {
		/* Alternate ends, so some removed ones were listed and some
		 * were not yet. */
		unsigned int v = c->next_vol % 2 ? c->next_vol / 2 :
			NR_VOLATILE - 1 - c->next_vol / 2;

		c->next_vol++;
		snprintf(name, sizeof(name), "v%04u", v);
		/* Keep the refused entry: the next call must start there. */
		if (!strcmp(name, refused))
			continue;
		assert_int_equal(foliofs_unlink(c->fs, c->dir, name), 0);
		c->removed[v] = true;
	}
	for (i = 0; i < CHURN; i++) {
		snprintf(name, sizeof(name), "n%04u", c->next_new++);
		assert_int_equal(foliofs_mknod(c->fs, c->dir, name,
					       S_IFREG | 0600, 0, NULL, &a), 0);
	}
}

static void test_readdir_cursor_under_changes(void **state)
{
	unsigned char stable[NR_STABLE] = { 0 }, vol[NR_VOLATILE] = { 0 };
	unsigned char *fresh;
	struct foliofs_attr a;
	struct foliofs_file *d;
	struct foliofs *fs;
	struct lister l;
	struct churn c = { 0 };
	char path[4096], name[32];
	unsigned int i, calls, nfresh = 0;
	size_t k;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	assert_int_equal(foliofs_mkdir(fs, ROOT, "dir", 0755, NULL, &a), 0);
	c.fs = fs;
	c.dir = a.ino;
	/* Interleaved, so removals leave gaps all over the cookie space. */
	for (i = 0; i < NR_STABLE; i++) {
		snprintf(name, sizeof(name), "s%04u", i);
		assert_int_equal(foliofs_mknod(fs, c.dir, name, S_IFREG, 0,
					       NULL, &a), 0);
		if (i % 2 == 0 && i / 2 < NR_VOLATILE) {
			snprintf(name, sizeof(name), "v%04u", i / 2);
			assert_int_equal(foliofs_mknod(fs, c.dir, name,
						       S_IFREG, 0, NULL, &a), 0);
		}
	}

	/* 50 entries a call; between calls 15 removed, 15 added. */
	d = open_dir(fs, c.dir);
	calls = list_dir(d, 0, 50, &l, churn_between, &c);
	printf("# %u calls, %zu entries, %u new names\n", calls, l.nr,
	       c.next_new);
	assert_true(calls > 50);
	fresh = calloc(c.next_new, 1);
	assert_non_null(fresh);
	assert_string_equal(l.ents[0].name, ".");
	assert_string_equal(l.ents[1].name, "..");
	for (k = 2; k < l.nr; k++) {
		const char *n = l.ents[k].name;
		unsigned int x;
		char tail;

		if (sscanf(n + 1, "%04u%c", &x, &tail) != 1)
			fail_msg("unexpected entry \"%s\"", n);
		if (n[0] == 's' && x < NR_STABLE) {
			if (stable[x]++)
				fail_msg("\"%s\" listed twice", n);
		} else if (n[0] == 'v' && x < NR_VOLATILE) {
			if (vol[x]++)
				fail_msg("\"%s\" listed twice", n);
		} else if (n[0] == 'n' && x < c.next_new) {
			if (fresh[x]++)
				fail_msg("\"%s\" listed twice", n);
			nfresh++;
		} else {
			fail_msg("unexpected entry \"%s\"", n);
		}
	}
	for (i = 0; i < NR_STABLE; i++)
		if (stable[i] != 1)
			fail_msg("s%04u listed %u times", i, stable[i]);
	/* Volatile entries never removed were present throughout. */
	for (i = 0; i < NR_VOLATILE; i++)
		if (!c.removed[i] && vol[i] != 1)
			fail_msg("v%04u (never removed) listed %u times", i,
				 vol[i]);
	/* Entries added during the listing go after the cursor: all show. */
	assert_int_equal(nfresh, c.next_new);
	free(fresh);
	free(l.ents);

	/* A refused entry is the first of the next call. */
	{
		struct lister one;
		uint64_t pos = 0;
		char refused[FOLIOFS_NAME_MAX + 1];

		memset(&one, 0, sizeof(one));
		one.max = 7;
		assert_int_equal(foliofs_readdir(d, pos, 0, lister_fill, &one),
				 0);
		assert_true(one.refused);
		strcpy(refused, one.refused_name);
		pos = one.next;
		one.taken = 0;
		one.refused = false;
		assert_int_equal(foliofs_readdir(d, pos, 0, lister_fill, &one),
				 0);
		assert_string_equal(one.ents[7].name, refused);
		free(one.ents);
	}
	assert_int_equal(foliofs_release(d), 0);
	umnt(fs);
	unlink(path);
}

static int refuse_regular(void *arg, const char *name, foliofs_ino_t ino,
			  uint32_t type, uint64_t next,
			  const struct foliofs_attr *attr)
{
	unsigned int *taken = arg;

	(void)name; (void)ino; (void)next; (void)attr;
	if (type == DT_REG)
		return 1;
	(*taken)++;
	return 0;
}

static void test_readdir_plus(void **state)
{
	struct foliofs_attr a, want;
	struct foliofs_file *d, *f;
	struct foliofs *fs;
	struct lister l;
	char path[4096];
	foliofs_ino_t dir, fi, gi;
	size_t i;
	unsigned int taken = 0;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	assert_int_equal(foliofs_mkdir_path(fs, "/p", 0750), 0);
	dir = ino_of(fs, "/p");
	f = open_p(fs, "/p/file", O_CREAT | O_RDWR);
	fi = foliofs_file_ino(f);
	write_pat(f, 0, 5000, 1, 5000);
	assert_int_equal(foliofs_release(f), 0);
	assert_int_equal(foliofs_mkdir_path(fs, "/p/sub", 0700), 0);
	assert_int_equal(foliofs_symlink(fs, dir, "link", "file", NULL, &a), 0);
	foliofs_forget(fs, a.ino, 1);
	assert_int_equal(foliofs_mknod(fs, dir, "fifo", S_IFIFO | 0600, 0, NULL,
				       &a), 0);
	foliofs_forget(fs, a.ino, 1);

	d = open_dir(fs, dir);
	list_dir(d, FOLIOFS_READDIR_PLUS, 0, &l, NULL, NULL);
	assert_int_equal(l.nr, 6);
	assert_string_equal(l.ents[0].name, ".");
	assert_string_equal(l.ents[1].name, "..");
	assert_int_equal(l.ents[0].ino, dir);
	for (i = 0; i < l.nr; i++) {
		assert_true(l.ents[i].has_attr);
		if (i < 2)
			continue;
		assert_int_equal(foliofs_getattr(fs, l.ents[i].ino, &want), 0);
		assert_attr_equal(&l.ents[i].attr, &want);
		assert_int_equal(l.ents[i].attr.mode >> 12, l.ents[i].type);
	}
	assert_string_equal(l.ents[2].name, "file");
	assert_int_equal(l.ents[2].attr.size, 5000);
	assert_int_equal(l.ents[2].ino, fi);
	assert_string_equal(l.ents[3].name, "sub");
	assert_true(S_ISDIR(l.ents[3].attr.mode));
	assert_int_equal(l.ents[3].attr.mode & 07777, 0700);
	assert_string_equal(l.ents[4].name, "link");
	assert_int_equal(l.ents[4].attr.size, 4);
	assert_string_equal(l.ents[5].name, "fifo");
	assert_true(S_ISFIFO(l.ents[5].attr.mode));
	/* Without PLUS no attributes come. */
	free(l.ents);
	list_dir(d, 0, 0, &l, NULL, NULL);
	assert_int_equal(l.nr, 6);
	for (i = 0; i < l.nr; i++)
		assert_false(l.ents[i].has_attr);
	free(l.ents);
	assert_int_equal(foliofs_release(d), 0);

	/* The PLUS listing took one lookup count on "file": unlinked, it
	 * lives until forgotten. */
	assert_int_equal(foliofs_unlink_path(fs, "/p/file"), 0);
	assert_int_equal(foliofs_getattr(fs, fi, &a), 0);
	assert_int_equal(a.nlink, 0);
	foliofs_forget(fs, fi, 1);
	assert_int_equal(foliofs_getattr(fs, fi, &a), -ENOENT);

	/* A refused PLUS entry takes no count. */
	assert_int_equal(foliofs_mkdir_path(fs, "/q", 0755), 0);
	f = open_p(fs, "/q/g", O_CREAT | O_RDWR);
	gi = foliofs_file_ino(f);
	assert_int_equal(foliofs_release(f), 0);
	d = open_dir(fs, ino_of(fs, "/q"));
	assert_int_equal(foliofs_readdir(d, 0, FOLIOFS_READDIR_PLUS,
					 refuse_regular, &taken), 0);
	assert_int_equal(taken, 2);
	assert_int_equal(foliofs_release(d), 0);
	assert_int_equal(foliofs_unlink_path(fs, "/q/g"), 0);
	assert_int_equal(foliofs_getattr(fs, gi, &a), -ENOENT);
	umnt(fs);
	unlink(path);
}

/* ---- Lookup counts and orphans --------------------------------------------------------- */

static void test_unlinked_open_file(void **state)
{
	struct foliofs_attr a;
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096];
	foliofs_ino_t ino;
	uint64_t free0, files0;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, &quiet_opts);
	free0 = bfree(fs);
	{
		struct foliofs_statfs st;

		assert_int_equal(foliofs_statfs(fs, &st), 0);
		files0 = st.files;
	}
	f = open_p(fs, "/tmp", O_CREAT | O_RDWR);
	ino = foliofs_file_ino(f);
	write_pat(f, 0, MiB, 1, MiB);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(foliofs_unlink_path(fs, "/tmp"), 0);
	assert_int_equal(foliofs_stat_path(fs, "/tmp", &a), -ENOENT);
	/* The open file still reads, writes and stats. */
	expect_range(f, 0, MiB, 1);
	write_pat(f, MiB, 5000, 2, 5000);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	expect_range(f, MiB, 5000, 2);
	assert_int_equal(foliofs_getattr(fs, ino, &a), 0);
	assert_int_equal(a.nlink, 0);
	assert_int_equal(a.size, MiB + 5000);
	/* A new file of the same name is another inode. */
	put_file(fs, "/tmp", "other");
	assert_true(ino_of(fs, "/tmp") != ino);
	assert_int_equal(foliofs_unlink_path(fs, "/tmp"), 0);

	assert_int_equal(foliofs_release(f), 0);
	assert_int_equal(foliofs_getattr(fs, ino, &a), -ENOENT);
	assert_int_equal(foliofs_open(fs, ino, O_RDONLY, &f), -ENOENT);
	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(bfree(fs), free0);
	fs = remount(fs, path, NULL);
	assert_int_equal(foliofs_getattr(fs, ino, &a), -ENOENT);
	{
		struct foliofs_statfs st;

		assert_int_equal(foliofs_statfs(fs, &st), 0);
		assert_int_equal(st.files, files0);
	}
	umnt(fs);
	unlink(path);
}

static void test_lookup_counts_keep_unlinked_inode(void **state)
{
	struct foliofs_attr a;
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096];
	foliofs_ino_t ino, dino;
	uint64_t free0;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, &quiet_opts);
	free0 = bfree(fs);

	/* create: one lookup count (and the open file). */
	assert_int_equal(foliofs_create(fs, ROOT, "f", 0644, O_RDWR, NULL, &a,
					&f), 0);
	ino = a.ino;
	write_pat(f, 0, MiB, 1, MiB);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(foliofs_release(f), 0);
	/* lookup: two. */
	assert_int_equal(foliofs_lookup(fs, ROOT, "f", &a), 0);
	assert_int_equal(a.ino, ino);
	assert_int_equal(foliofs_unlink(fs, ROOT, "f"), 0);
	assert_int_equal(foliofs_lookup(fs, ROOT, "f", &a), -ENOENT);
	assert_int_equal(foliofs_getattr(fs, ino, &a), 0);
	assert_int_equal(a.nlink, 0);
	assert_int_equal(a.size, MiB);
	/* Opening by number still works while counted. */
	assert_int_equal(foliofs_open(fs, ino, O_RDONLY, &f), 0);
	expect_range(f, 0, MiB, 1);
	assert_int_equal(foliofs_release(f), 0);
	foliofs_forget(fs, ino, 1);
	assert_int_equal(foliofs_getattr(fs, ino, &a), 0);
	foliofs_forget(fs, ino, 1);
	assert_int_equal(foliofs_getattr(fs, ino, &a), -ENOENT);
	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(bfree(fs), free0);

	/* The same for a directory. */
	assert_int_equal(foliofs_mkdir(fs, ROOT, "d", 0755, NULL, &a), 0);
	dino = a.ino;
	assert_int_equal(foliofs_rmdir(fs, ROOT, "d"), 0);
	assert_int_equal(foliofs_getattr(fs, dino, &a), 0);
	assert_true(S_ISDIR(a.mode));
	foliofs_forget(fs, dino, 1);
	assert_int_equal(foliofs_getattr(fs, dino, &a), -ENOENT);

	/* Counts add up: forget(n) takes n at once. */
	assert_int_equal(foliofs_mknod(fs, ROOT, "m", S_IFREG, 0, NULL, &a), 0);
	ino = a.ino;
	assert_int_equal(foliofs_lookup(fs, ROOT, "m", &a), 0);
	assert_int_equal(foliofs_lookup(fs, ROOT, "m", &a), 0);
	assert_int_equal(foliofs_unlink(fs, ROOT, "m"), 0);
	foliofs_forget(fs, ino, 2);
	assert_int_equal(foliofs_getattr(fs, ino, &a), 0);
	foliofs_forget(fs, ino, 1);
	assert_int_equal(foliofs_getattr(fs, ino, &a), -ENOENT);
	/* A forgotten linked inode stays. */
	assert_int_equal(foliofs_mknod(fs, ROOT, "k", S_IFREG, 0, NULL, &a), 0);
	foliofs_forget(fs, a.ino, 1);
	assert_int_equal(foliofs_getattr(fs, a.ino, &a), 0);
	umnt(fs);
	unlink(path);
}

static void report_collect(void *arg, const char *msg)
{
	char *out = arg;
	size_t len = strlen(out);

	printf("# fsck: %s\n", msg);
	snprintf(out + len, 4096 - len, "%s\n", msg);
}

static void test_orphan_deleted_at_next_mount(void **state)
{
	struct foliofs_attr a;
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096], snap[4096], report[4096] = "";
	foliofs_ino_t ino;
	uint64_t free0;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	img_path(snap, "snap");
	fs = mnt(path, &quiet_opts);
	free0 = bfree(fs);
	put_file(fs, "/kept", "kept");
	f = open_p(fs, "/orphan", O_CREAT | O_RDWR);
	ino = foliofs_file_ino(f);
	write_pat(f, 0, 2 * MiB, 1, MiB);
	assert_int_equal(foliofs_fsync(f, 0), 0);
	assert_int_equal(foliofs_unlink_path(fs, "/orphan"), 0);
	assert_int_equal(foliofs_syncfs(fs), 0);
	/* The power goes out with the file open. */
	copy_image(path, snap);
	assert_int_equal(foliofs_release(f), 0);
	umnt(fs);

	/* fsck sees the orphan, and it is not an error. */
	assert_int_equal(foliofs_fsck(snap, 0, report_collect, report),
			 FOLIOFS_FSCK_OK);
	assert_non_null(strstr(report, "unlinked while open"));
	fs = mnt(snap, &quiet_opts);
	assert_int_equal(foliofs_getattr(fs, ino, &a), -ENOENT);
	expect_content(fs, "/kept", "kept");
	{
		struct foliofs_statfs st;

		assert_int_equal(foliofs_statfs(fs, &st), 0);
		assert_int_equal(st.files, 2);
	}
	/* Its blocks came back (one for /kept). */
	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(bfree(fs), free0 - 1);
	umnt(fs);
	report[0] = '\0';
	assert_int_equal(foliofs_fsck(snap, 0, report_collect, report),
			 FOLIOFS_FSCK_OK);
	assert_null(strstr(report, "unlinked while open"));
	unlink(snap);
	unlink(path);
}

/* ---- Path API ------------------------------------------------------------------------ */

static void test_path_api(void **state)
{
	struct foliofs_attr a;
	struct foliofs_file *f;
	struct foliofs *fs;
	char path[4096];
	foliofs_ino_t ino;

	(void)state;
	mkfs_img(path, "img", 64 * MiB);
	fs = mnt(path, NULL);
	assert_int_equal(foliofs_mkdir_path(fs, "/a", 0755), 0);
	assert_int_equal(foliofs_mkdir_path(fs, "/a/b", 0700), 0);
	assert_int_equal(foliofs_mkdir_path(fs, "/a//b/c/", 0755), 0);
	assert_int_equal(foliofs_stat_path(fs, "/a/b/c", &a), 0);
	assert_true(S_ISDIR(a.mode));
	assert_int_equal(foliofs_stat_path(fs, "/a/b", &a), 0);
	assert_int_equal(a.mode & 07777, 0700);
	assert_int_equal(a.nlink, 3);
	assert_int_equal(foliofs_stat_path(fs, "/", &a), 0);
	assert_int_equal(a.ino, ROOT);
	assert_int_equal(foliofs_resolve(fs, "/", &ino), 0);
	assert_int_equal(ino, ROOT);

	/* open with O_CREAT, then without; O_EXCL on an existing file. */
	assert_int_equal(foliofs_open_path(fs, "/a/b/file", O_CREAT | O_RDWR,
					   0604, &f), 0);
	write_all(f, "path data", 9, 0);
	ino = foliofs_file_ino(f);
	assert_int_equal(foliofs_release(f), 0);
	assert_int_equal(foliofs_stat_path(fs, "/a/b/file", &a), 0);
	assert_int_equal(a.ino, ino);
	assert_int_equal(a.mode, S_IFREG | 0604);
	assert_int_equal(a.size, 9);
	assert_int_equal(foliofs_open_path(fs, "/a/b/file",
					   O_CREAT | O_EXCL | O_RDWR, 0644, &f),
			 -EEXIST);
	assert_int_equal(foliofs_open_path(fs, "/a/b/file", O_CREAT | O_RDWR,
					   0644, &f), 0);
	assert_int_equal(foliofs_file_ino(f), ino);
	assert_int_equal(foliofs_release(f), 0);
	expect_content(fs, "/a/b/file", "path data");

	/* rename_path, with and without flags. */
	assert_int_equal(foliofs_rename_path(fs, "/a/b/file", "/a/moved", 0), 0);
	assert_int_equal(foliofs_stat_path(fs, "/a/b/file", &a), -ENOENT);
	assert_int_equal(foliofs_stat_path(fs, "/a/moved", &a), 0);
	assert_int_equal(a.ino, ino);
	put_file(fs, "/other", "o");
	assert_int_equal(foliofs_rename_path(fs, "/other", "/a/moved",
					     FOLIOFS_RENAME_NOREPLACE), -EEXIST);
	assert_int_equal(foliofs_rename_path(fs, "/other", "/a/b",
					     FOLIOFS_RENAME_EXCHANGE), 0);
	assert_int_equal(foliofs_stat_path(fs, "/other/c", &a), 0);
	expect_content(fs, "/a/b", "o");
	assert_int_equal(foliofs_rename_path(fs, "/a/b", "/other", 0), -EISDIR);
	assert_int_equal(foliofs_rename_path(fs, "/nope", "/x", 0), -ENOENT);
	assert_int_equal(foliofs_rename_path(fs, "/a/moved", "/nope/x", 0),
			 -ENOENT);

	/* Errors of paths. */
	assert_int_equal(foliofs_stat_path(fs, "relative", &a), -EINVAL);
	assert_int_equal(foliofs_stat_path(fs, "/a/moved/x", &a), -ENOTDIR);
	assert_int_equal(foliofs_open_path(fs, "/a/moved/x", O_CREAT | O_RDWR,
					   0644, &f), -ENOTDIR);
	assert_int_equal(foliofs_mkdir_path(fs, "/a", 0755), -EEXIST);
	assert_int_equal(foliofs_mkdir_path(fs, "/x/y", 0755), -ENOENT);
	assert_int_equal(foliofs_rmdir_path(fs, "/other"), -ENOTEMPTY);
	assert_int_equal(foliofs_rmdir_path(fs, "/a/moved"), -ENOTDIR);
	assert_int_equal(foliofs_unlink_path(fs, "/other"), -EISDIR);
	assert_int_equal(foliofs_unlink_path(fs, "/a/nope"), -ENOENT);
	assert_int_equal(foliofs_rmdir_path(fs, "/"), -EINVAL);
	assert_int_equal(foliofs_open_path(fs, "/other", O_RDWR, 0, &f),
			 -EISDIR);

	/* The path calls take no lookup counts: unlinked, gone at once. */
	assert_int_equal(foliofs_unlink_path(fs, "/a/moved"), 0);
	assert_int_equal(foliofs_getattr(fs, ino, &a), -ENOENT);
	assert_int_equal(foliofs_rmdir_path(fs, "/other/c"), 0);
	assert_int_equal(foliofs_stat_path(fs, "/other", &a), 0);
	assert_int_equal(a.nlink, 2);

	fs = remount(fs, path, NULL);
	assert_int_equal(foliofs_stat_path(fs, "/other", &a), 0);
	assert_true(S_ISDIR(a.mode));
	assert_int_equal(a.nlink, 2);
	assert_int_equal(foliofs_stat_path(fs, "/other/c", &a), -ENOENT);
	expect_content(fs, "/a/b", "o");
	assert_int_equal(foliofs_stat_path(fs, "/a/moved", &a), -ENOENT);
	assert_int_equal(foliofs_rmdir_path(fs, "/other"), 0);
	assert_int_equal(foliofs_unlink_path(fs, "/a/b"), 0);
	assert_int_equal(foliofs_rmdir_path(fs, "/a"), 0);
	fs = remount(fs, path, NULL);
	{
		struct foliofs_statfs st;

		assert_int_equal(foliofs_statfs(fs, &st), 0);
		assert_int_equal(st.files, 1);
		assert_int_equal(foliofs_getattr(fs, ROOT, &a), 0);
		assert_int_equal(a.nlink, 2);
	}
	umnt(fs);
	unlink(path);
}

/* ---- Corruption and fsck ---------------------------------------------------------- */

/* A volume with /keep (pattern 9, 300000 bytes) and /dir/x. */
static void make_keep(const char *path)
{
	struct foliofs *fs = mnt(path, NULL);
	struct foliofs_file *f;

	f = open_p(fs, "/keep", O_CREAT | O_RDWR);
	write_pat(f, 0, 300000, 9, 300000);
	assert_int_equal(foliofs_release(f), 0);
	assert_int_equal(foliofs_mkdir_path(fs, "/dir", 0755), 0);
	put_file(fs, "/dir/x", "x");
	umnt(fs);
}

static void check_keep(const char *path)
{
	struct foliofs *fs = mnt(path, NULL);
	struct foliofs_file *f;

	assert_int_equal(size_of(fs, "/keep"), 300000);
	f = open_p(fs, "/keep", O_RDONLY);
	expect_range(f, 0, 300000, 9);
	assert_int_equal(foliofs_release(f), 0);
	expect_content(fs, "/dir/x", "x");
	umnt(fs);
}

static void test_superblock_copies(void **state)
{
	struct foliofs_mount_opts m = mopts(NULL);
	char path[4096], pb[4096], pab[4096], report[4096] = "";
	struct foliofs *fs = NULL;

	(void)state;
	mkfs_img(path, "img", 16 * MiB);
	make_keep(path);
	img_path(pb, "b");
	img_path(pab, "ab");
	copy_image(path, pb);
	copy_image(path, pab);

	/*
	 * Copy A damaged: what a crash in a superblock write leaves, so fsck
	 * notes it without calling it an error; the mount uses B.
	 */
	xor_bytes(path, FOLIOFS_SB_OFFSET(0) + 100, 16);
	assert_int_equal(foliofs_fsck(path, 0, report_collect, report),
			 FOLIOFS_FSCK_OK);
	assert_non_null(strstr(report, "superblock A"));
	check_keep(path);
	/* The mount rewrote the superblocks: A is good again. */
	report[0] = '\0';
	assert_int_equal(foliofs_fsck(path, 0, report_collect, report),
			 FOLIOFS_FSCK_OK);
	assert_null(strstr(report, "superblock"));

	/* Copy B damaged. */
	xor_bytes(pb, FOLIOFS_SB_OFFSET(1) + 8, 1);
	report[0] = '\0';
	assert_int_equal(foliofs_fsck(pb, 0, report_collect, report),
			 FOLIOFS_FSCK_OK);
	assert_non_null(strstr(report, "superblock B"));
	check_keep(pb);

	/* Both: refused, in words. */
	xor_bytes(pab, FOLIOFS_SB_OFFSET(0) + 2000, 4);
	xor_bytes(pab, FOLIOFS_SB_OFFSET(1) + 3000, 4);
	assert_int_equal(foliofs_mount(pab, &m, &fs), -EUCLEAN);
	assert_null(fs);
	printf("# %s\n", foliofs_strerror());
	assert_non_null(strstr(foliofs_strerror(), "superblock"));
	report[0] = '\0';
	assert_int_equal(foliofs_fsck(pab, 0, report_collect, report),
			 FOLIOFS_FSCK_ERRORS);
	assert_non_null(strstr(report, "superblock"));
	/* mkfs without force takes it: no valid volume is there. */
	assert_int_equal(foliofs_mkfs(pab, NULL), 0);
	fs = mnt(pab, NULL);
	umnt(fs);
	unlink(pb);
	unlink(pab);
	unlink(path);
}

#define NR_LOGFILES	10

/*
 * Which of /f0../f9 a mount of @img shows: they were made in order, each
 * committed before the next, so a log cut anywhere shows a prefix.
 * Returns how many, or -1 if the mount refused the image.
 */
static int log_prefix(const char *img)
{
	struct foliofs_mount_opts m = mopts(NULL);
	struct foliofs *fs = NULL;
	bool present[NR_LOGFILES];
	int i, n = 0, ret;
	char name[16];

	ret = foliofs_mount(img, &m, &fs);
	if (ret) {
		printf("# mount: %s\n", foliofs_strerror());
		assert_int_equal(ret, -EUCLEAN);
		assert_true(foliofs_strerror()[0] != '\0');
		return -1;
	}
	for (i = 0; i < NR_LOGFILES; i++) {
		struct foliofs_attr a;

		snprintf(name, sizeof(name), "/f%d", i);
		ret = foliofs_stat_path(fs, name, &a);
		assert_true(ret == 0 || ret == -ENOENT);
		present[i] = !ret;
		if (present[i])
			n = i + 1;
	}
	for (i = 0; i < n; i++) {
		struct foliofs_file *f;
		uint64_t size;

		if (!present[i])
			fail_msg("/f%d missing but /f%d present", i, n - 1);
		snprintf(name, sizeof(name), "/f%d", i);
		size = size_of(fs, name);
		/* The last may have lost its data's commit, not others. */
		if (i < n - 1 || size) {
			assert_int_equal(size, 5000 + i);
			f = open_p(fs, name, O_RDONLY);
			expect_range(f, 0, 5000 + i, 20 + i);
			assert_int_equal(foliofs_release(f), 0);
		}
	}
	/* The volume is usable: a change and a clean unmount. */
	assert_int_equal(foliofs_mkdir_path(fs, "/after", 0755), 0);
	umnt(fs);
	return n;
}

/*
 * Make /f0../f9, each fsync'd (one commit each), and copy the image while
 * mounted: a crash image at @snap whose log holds every transaction since
 * mkfs. Returns the log blocks in use.
 */
static uint64_t make_log_snapshot(char *path, char *snap)
{
	struct foliofs_stats st;
	struct foliofs_file *f;
	struct foliofs *fs;
	uint64_t used;
	char name[16];
	int i;

	mkfs_img(path, "img", 16 * MiB);
	img_path(snap, "snap");
	fs = mnt(path, &quiet_opts);
	for (i = 0; i < NR_LOGFILES; i++) {
		snprintf(name, sizeof(name), "/f%d", i);
		f = open_p(fs, name, O_CREAT | O_RDWR);
		write_pat(f, 0, 5000 + i, 20 + i, 5000 + i);
		assert_int_equal(foliofs_fsync(f, 0), 0);
		assert_int_equal(foliofs_release(f), 0);
	}
	assert_int_equal(foliofs_syncfs(fs), 0);
	assert_int_equal(foliofs_stats(fs, &st), 0);
	used = st.log_used_bytes / BS;
	printf("# %llu log blocks in use, %llu commits\n",
	       (unsigned long long)used, (unsigned long long)st.commits);
	assert_true(used >= NR_LOGFILES);
	copy_image(path, snap);		/* the crash */
	umnt(fs);
	return used;
}

static void test_log_corruption(void **state)
{
	char path[4096], snap[4096], bad[4096];
	struct super sb;
	uint64_t used, k;
	int prev = -1, n, fewer = 0, refused = 0, ret;

	(void)state;
	used = make_log_snapshot(path, snap);
	img_path(bad, "bad");

	/* The crash image as it is: everything. */
	assert_int_equal(foliofs_fsck(snap, 0, NULL, NULL), FOLIOFS_FSCK_OK);
	copy_image(snap, bad);
	assert_int_equal(log_prefix(bad), NR_LOGFILES);

	read_super(snap, &sb);
	for (k = 0; k < used; k++) {
		uint64_t blk = sb.log_start + (sb.ckpt_seq + k) % sb.log_blocks;

		copy_image(snap, bad);
		xor_bytes(bad, blk * BS + 64 + (k * 37) % 4000, 1);
		ret = foliofs_fsck(bad, 0, NULL, NULL);
		assert_true(ret == FOLIOFS_FSCK_OK ||
			    ret == FOLIOFS_FSCK_ERRORS);
		n = log_prefix(bad);
		printf("# log block %llu (seq %llu) damaged: %d files, fsck %d\n",
		       (unsigned long long)blk,
		       (unsigned long long)(sb.ckpt_seq + k), n, ret);
		if (n < 0) {
			refused++;
			assert_int_equal(ret, FOLIOFS_FSCK_ERRORS);
			continue;
		}
		/* A later cut never loses more. */
		assert_true(n >= prev);
		prev = n;
		/* One block per transaction (the root's, then one per
		 * file): damage at k keeps exactly the k - 1 files before. */
		if (used == NR_LOGFILES + 1)
			assert_int_equal(n, (int)k - 1);
		if (n < NR_LOGFILES)
			fewer++;
	}
	/* The damage did cut the log somewhere. */
	assert_true(fewer + refused > 0);
	/* The oldest transaction holds the root: losing it is refused. */
	assert_true(refused > 0 || prev < NR_LOGFILES);
	unlink(bad);
	unlink(snap);
	unlink(path);
}

/*
 * A damaged block in the middle of the log, with intact committed
 * transactions after it (their blocks carry later sequence numbers and
 * check out), is corruption, not the log's normal end: the mount drops
 * fsync'd metadata, so fsck must say so rather than report a clean volume.
 */
static void test_fsck_reports_damaged_log_middle(void **state)
{
	char path[4096], snap[4096], report[4096] = "";
	struct super sb;
	uint64_t used, blk;
	int ret;

	(void)state;
	used = make_log_snapshot(path, snap);
	read_super(snap, &sb);
	/* Sequence ckpt_seq + 3 holds /f2's transaction; /f3../f9 follow. */
	assert_true(used > 5);
	blk = sb.log_start + (sb.ckpt_seq + 3) % sb.log_blocks;
	xor_bytes(snap, blk * BS + 1000, 1);
	ret = foliofs_fsck(snap, 0, report_collect, report);
	printf("# fsck of a log damaged at sequence %llu of %llu: %d\n",
	       (unsigned long long)(sb.ckpt_seq + 3),
	       (unsigned long long)(sb.ckpt_seq + used), ret);
	assert_int_equal(ret, FOLIOFS_FSCK_ERRORS);
	assert_true(report[0] != '\0');
	/* The mount refuses too, saying why, and changes nothing. */
	{
		struct foliofs_mount_opts m = mopts(NULL);
		struct foliofs *fs = NULL;
		struct foliofs_attr a;

		assert_int_equal(foliofs_mount(snap, &m, &fs), -EUCLEAN);
		assert_non_null(strstr(foliofs_strerror(), "log is damaged"));
		/* Repair keeps the history up to the damage ... */
		report[0] = '\0';
		assert_int_equal(foliofs_fsck(snap, FOLIOFS_FSCK_REPAIR,
					      report_collect, report),
				 FOLIOFS_FSCK_FIXED);
		assert_int_equal(foliofs_fsck(snap, 0, NULL, NULL),
				 FOLIOFS_FSCK_OK);
		assert_int_equal(foliofs_mount(snap, &m, &fs), 0);
		assert_int_equal(foliofs_stat_path(fs, "/f1", &a), 0);
		assert_int_equal(foliofs_stat_path(fs, "/f9", &a), -ENOENT);
		/* ... and the old blocks past the damage never come back. */
		assert_int_equal(foliofs_mkdir_path(fs, "/after", 0755), 0);
		assert_int_equal(foliofs_unmount(fs), 0);
		assert_int_equal(foliofs_mount(snap, &m, &fs), 0);
		assert_int_equal(foliofs_stat_path(fs, "/after", &a), 0);
		assert_int_equal(foliofs_stat_path(fs, "/f9", &a), -ENOENT);
		assert_int_equal(foliofs_unmount(fs), 0);
		assert_int_equal(foliofs_fsck(snap, 0, NULL, NULL),
				 FOLIOFS_FSCK_OK);
	}
	unlink(snap);
	unlink(path);
}

static void test_garbage_image(void **state)
{
	struct foliofs_mount_opts m = mopts(NULL);
	char path[4096], report[4096] = "";
	struct foliofs *fs = NULL;
	const size_t size = 16 * MiB;
	char *buf = malloc(size);
	int fd;

	(void)state;
	assert_non_null(buf);
	mkfs_img(path, "img", size);
	make_keep(path);
	fill_pat(buf, 0, size, 77);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, size, 0), (ssize_t)size);
	close(fd);
	assert_int_equal(foliofs_mount(path, &m, &fs), -EUCLEAN);
	assert_null(fs);
	assert_non_null(strstr(foliofs_strerror(), "superblock"));
	m.readonly = 1;
	assert_int_equal(foliofs_mount(path, &m, &fs), -EUCLEAN);
	assert_int_equal(foliofs_fsck(path, FOLIOFS_FSCK_REPAIR,
				      report_collect, report),
			 FOLIOFS_FSCK_ERRORS);
	assert_true(report[0] != '\0');
	/* Zeroes are no volume either. */
	memset(buf, 0, size);
	fd = open(path, O_WRONLY);
	assert_int_equal(pwrite(fd, buf, size, 0), (ssize_t)size);
	close(fd);
	m.readonly = 0;
	assert_int_equal(foliofs_mount(path, &m, &fs), -EUCLEAN);
	assert_int_equal(foliofs_fsck(path, 0, NULL, NULL), FOLIOFS_FSCK_ERRORS);
	free(buf);
	unlink(path);
}

/* Set @ino's link count behind the engine's back (internals). */
static void damage_nlink(struct foliofs *fs, foliofs_ino_t ino, uint32_t nlink)
{
	struct fs_inode *inode;

	pthread_rwlock_wrlock(&fs->ns_lock);
	inode = fs_iget_locked(fs, ino);
	assert_non_null(inode);
	pthread_mutex_lock(&fs->tx_lock);
	pthread_mutex_lock(&inode->attr_lock);
	inode->nlink = nlink;
	assert_int_equal(tx_inode(fs, inode), 0);
	pthread_mutex_unlock(&inode->attr_lock);
	pthread_mutex_unlock(&fs->tx_lock);
	pthread_rwlock_unlock(&fs->ns_lock);
}

static void test_fsck(void **state)
{
	char path[4096], missing[4096], report[4096] = "";
	struct foliofs_attr a;
	struct foliofs *fs;
	foliofs_ino_t ino;

	(void)state;
	mkfs_img(path, "img", 16 * MiB);
	/* A fresh volume is clean. */
	assert_int_equal(foliofs_fsck(path, 0, NULL, NULL), FOLIOFS_FSCK_OK);
	make_keep(path);
	fs = mnt(path, NULL);
	assert_int_equal(foliofs_symlink(fs, ROOT, "s", "keep", NULL, &a), 0);
	assert_int_equal(foliofs_link(fs, ino_of(fs, "/keep"), ino_of(fs, "/dir"),
				      "hard", &a), 0);
	umnt(fs);
	assert_int_equal(foliofs_fsck(path, 0, report_collect, report),
			 FOLIOFS_FSCK_OK);
	/* Verbose says something, and still finds nothing wrong. */
	report[0] = '\0';
	assert_int_equal(foliofs_fsck(path, FOLIOFS_FSCK_VERBOSE,
				      report_collect, report), FOLIOFS_FSCK_OK);
	assert_true(report[0] != '\0');
	img_path(missing, "missing");
	unlink(missing);
	assert_int_equal(foliofs_fsck(missing, 0, NULL, NULL),
			 FOLIOFS_FSCK_FAILED);

	/* A wrong link count: found, repaired, then clean. */
	fs = mnt(path, NULL);
	ino = ino_of(fs, "/keep");
	damage_nlink(fs, ino, 5);
	umnt(fs);
	report[0] = '\0';
	assert_int_equal(foliofs_fsck(path, 0, report_collect, report),
			 FOLIOFS_FSCK_ERRORS);
	assert_non_null(strstr(report, "link count"));
	report[0] = '\0';
	assert_int_equal(foliofs_fsck(path, FOLIOFS_FSCK_REPAIR, report_collect,
				      report), FOLIOFS_FSCK_FIXED);
	assert_int_equal(foliofs_fsck(path, 0, NULL, NULL), FOLIOFS_FSCK_OK);
	fs = mnt(path, NULL);
	assert_int_equal(foliofs_getattr(fs, ino, &a), 0);
	assert_int_equal(a.nlink, 2);
	umnt(fs);
	check_keep(path);
	unlink(path);
}

/* ---- Setup -------------------------------------------------------------------------- */

static int setup(void **state)
{
	(void)state;
	return testimg_probe("test_fs");
}

static int teardown(void **state)
{
	(void)state;
	return testimg_cleanup();
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_mkfs_refuses_existing_volume),
		T(test_mkfs_bad_options),
		T(test_mount_missing_and_locked),
		T(test_namespace_round_trip),
		T(test_rename_round_trip),
		T(test_setattr_round_trip),
		T(test_errors),
		T(test_readonly_mount),
		T(test_data_odd_offsets_round_trip),
		T(test_sparse_file),
		T(test_large_folio_write),
		T(test_stats_cached_bytes_by_order),
		T(test_file_larger_than_cache),
		T(test_append_and_trunc),
		T(test_truncate_extend_zeroes),
		T(test_sync_reserved_statfs),
		T(test_enospc),
		T(test_fallocate),
		T(test_seek_data_hole),
		T(test_readdir_10k),
		T(test_readdir_cursor_under_changes),
		T(test_readdir_plus),
		T(test_unlinked_open_file),
		T(test_lookup_counts_keep_unlinked_inode),
		T(test_orphan_deleted_at_next_mount),
		T(test_path_api),
		T(test_superblock_copies),
		T(test_log_corruption),
		T(test_fsck_reports_damaged_log_middle),
		T(test_garbage_image),
		T(test_fsck),
#undef T
	};

	return run_isolated(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
