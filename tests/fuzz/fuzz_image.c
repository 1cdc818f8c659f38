/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_image.c - a libFuzzer target: a damaged or hostile image must never
 * crash, hang or leak in fsck or mount (read-only and read-write), nor in
 * the calls a program makes on whatever mounted.
 *
 * Each input is applied to a small valid image made once at start (2 MiB:
 * both superblocks, a 16-block log holding a few transactions after a
 * checkpoint, files, a directory, a symlink, a hard link, a FIFO, an
 * unwritten extent). Random bytes rarely get past a checksum, so most modes
 * write the input where a parser reads it and then make the checksums
 * right, so that the fuzzer reaches what lies behind them:
 *
 *   byte 0 % 5 picks the mode, byte 0 / 5 its flags; the rest is the body.
 *   0 SUPER  body = patches (below) to superblock copy A (flag 1: to B as
 *            well); flag 2: recompute their checksums. Reaches the
 *            superblock's field checks and the geometry the mount trusts.
 *   1 TXN    body = a transaction payload (a record stream, ondisk_rec.h)
 *            committed to the log by the journal itself (flag 1: as two
 *            transactions, split in the middle). Reaches replay's record
 *            parser with valid log blocks.
 *   2 CKPT   body = a checkpoint payload written by journal_checkpoint() at
 *            the end of the volume; the superblock names it and the log is
 *            empty. Reaches the checkpoint loader and rebuild of the space
 *            map from any extents.
 *   3 LOG    body = u8 log block, then patches to that block of the log
 *            (offsets may run into the next ones); flag 1: recompute the
 *            checksum of each block touched. Reaches the log block header
 *            checks (sequence, lengths, the chain).
 *   4 RAW    body = patches to the whole image, with 3-byte offsets;
 *            checksums left as they are.
 *
 * A patch is: a little-endian offset (2 bytes; 3 for RAW), taken modulo
 * the size of what it patches, a length byte, then that many bytes.
 *
 * Then: foliofs_fsck(); mount read-only, walk everything; mount read-write,
 * walk, create, write, fsync, truncate, punch, rename, unlink, mkdir, move
 * a directory, syncfs, unmount. And one oracle beyond "no crash": a volume
 * fsck calls clean is still clean after that read-write session.
 *
 * Images go in a private directory under $FOLIOFS_FUZZ_DIR, else /dev/shm,
 * else $TMPDIR or /tmp, else the current directory: the first where the
 * engine's O_DIRECT open works. FOLIOFS_FUZZ_VERBOSE=1 says, per input,
 * what fsck and each mount made of it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "backing.h"
#include "foliofs.h"
#include "journal.h"
#include "ondisk.h"
#include "super.h"

#include "fuzz.h"

#define BLK		4096U
#define IMG_BYTES	(2U << 20)
#define LOG_BYTES	(64U << 10)
#define MAX_BODY	(64U << 10)	/* longer inputs are cut here */
#define WALK_DEPTH	8
#define WALK_ENTRIES	512

enum { MODE_SUPER, MODE_TXN, MODE_CKPT, MODE_LOG, MODE_RAW, NR_MODES };

static char dir[4096];
static char img[4200];
static uint8_t *base;		/* the valid image */
static bool inited;
static bool verbose;		/* FOLIOFS_FUZZ_VERBOSE=1 */

static void __attribute__((noreturn)) die(const char *what, int err)
{
	fprintf(stderr, "fuzz_image: %s: %s (%s)\n", what, strerror(err > 0 ?
		err : -err), foliofs_strerror());
	abort();
}

/* ---- The base image ----------------------------------------------------- */

static void put_file(struct foliofs *fs, const char *path, size_t len,
		     uint8_t seed)
{
	struct foliofs_file *f;
	uint8_t buf[8192];
	size_t i;
	int ret;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(seed + i * 7);
	ret = foliofs_open_path(fs, path, O_CREAT | O_RDWR, 0644, &f);
	if (ret)
		die(path, ret);
	if (foliofs_write(f, buf, len, 0) != (ssize_t)len)
		die("write", EIO);
	ret = foliofs_fsync(f, 0);
	if (ret)
		die("fsync", ret);
	foliofs_release(f);
}

/* A volume with a bit of everything, and log records after a checkpoint. */
static void make_base(void)
{
	struct foliofs_mount_opts mo = { .cache_bytes = 16 << 20 };
	struct foliofs_attr a;
	struct foliofs_file *f;
	foliofs_ino_t ino, d, f2;
	struct foliofs *fs;
	int fd, ret;

	unlink(img);
	ret = foliofs_mkfs(img, &(struct foliofs_mkfs_opts){
		.size = IMG_BYTES, .log_bytes = LOG_BYTES });
	if (ret)
		die("mkfs", ret);
	ret = foliofs_mount(img, &mo, &fs);
	if (ret)
		die("mount", ret);
	foliofs_mkdir_path(fs, "/d", 0755);
	put_file(fs, "/d/f1", 8192, 1);
	put_file(fs, "/f2", 5000, 2);
	if (foliofs_resolve(fs, "/d/f1", &ino) ||
	    foliofs_resolve(fs, "/d", &d) || foliofs_resolve(fs, "/f2", &f2))
		die("resolve", ENOENT);
	foliofs_symlink(fs, FOLIOFS_ROOT_INO, "l", "d/f1", NULL, &a);
	foliofs_forget(fs, a.ino, 1);
	foliofs_link(fs, ino, d, "h", &a);
	foliofs_forget(fs, ino, 1);
	foliofs_mknod(fs, FOLIOFS_ROOT_INO, "p", S_IFIFO | 0600, 0, NULL, &a);
	foliofs_forget(fs, a.ino, 1);
	if (!foliofs_open_path(fs, "/f2", O_RDWR, 0, &f)) {
		foliofs_fallocate(f, FALLOC_FL_KEEP_SIZE, 8192, 8192);
		foliofs_release(f);
	}
	ret = foliofs_unmount(fs);	/* a checkpoint */
	if (ret)
		die("unmount", ret);

	ret = foliofs_mount(img, &mo, &fs);
	if (ret)
		die("mount", ret);
	put_file(fs, "/g", 4096, 3);
	foliofs_setattr(fs, f2, &(struct foliofs_attr){ .size = 100 },
			FOLIOFS_SET_SIZE, NULL);
	foliofs_rename_path(fs, "/d/f1", "/d/f1b", 0);
	foliofs_unlink_path(fs, "/d/h");
	foliofs_mkdir_path(fs, "/d/e", 0700);
	ret = foliofs_syncfs(fs);
	if (ret)
		die("syncfs", ret);
	/* The log holds those transactions now: take the image as it is. */
	fd = open(img, O_RDONLY);
	if (fd < 0 || pread(fd, base, IMG_BYTES, 0) < 0)
		die("read base", errno);
	close(fd);
	foliofs_unmount(fs);
}

static void cleanup(void)
{
	unlink(img);
	rmdir(dir);
}

/* Directories of runs that died (a crash skips atexit()): remove them. */
static void remove_stale(const char *parent)
{
	char pattern[4200], path[4300];
	glob_t g;
	size_t i;

	snprintf(pattern, sizeof(pattern), "%s/foliofs-fuzz.*", parent);
	if (glob(pattern, 0, NULL, &g))
		return;
	for (i = 0; i < g.gl_pathc; i++) {
		long pid = strtol(strrchr(g.gl_pathv[i], '.') + 1, NULL, 10);

		if (pid <= 0 || (kill((pid_t)pid, 0) && errno == ESRCH)) {
			snprintf(path, sizeof(path), "%s/img", g.gl_pathv[i]);
			unlink(path);
			rmdir(g.gl_pathv[i]);
		}
	}
	globfree(&g);
}

/* The first directory where a store opens O_DIRECT; ours is named by pid. */
static void pick_dir(void)
{
	const char *cands[] = { getenv("FOLIOFS_FUZZ_DIR"), "/dev/shm",
				getenv("TMPDIR"), "/tmp", "." };
	struct backing *b;
	size_t i;

	for (i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
		if (!cands[i] || !*cands[i])
			continue;
		remove_stale(cands[i]);
		snprintf(dir, sizeof(dir), "%s/foliofs-fuzz.%d", cands[i],
			 (int)getpid());
		if (mkdir(dir, 0700) && errno != EEXIST)
			continue;
		snprintf(img, sizeof(img), "%s/img", dir);
		if (!backing_open(img, BACKING_CREATE, &b)) {
			backing_close(b);
			return;
		}
		unlink(img);
		rmdir(dir);
	}
	die("no directory takes O_DIRECT images", EINVAL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (inited)
		return 0;
	base = aligned_alloc(BLK, IMG_BYTES);
	if (!base)
		die("alloc", ENOMEM);
	verbose = getenv("FOLIOFS_FUZZ_VERBOSE") &&
		  atoi(getenv("FOLIOFS_FUZZ_VERBOSE"));
	pick_dir();
	atexit(cleanup);
	make_base();
	inited = true;
	return 0;
}

/* ---- Applying an input -------------------------------------------------- */

static int write_base(void)
{
	int fd = open(img, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	size_t off;

	if (fd < 0)
		die("create image", errno);
	for (off = 0; off < IMG_BYTES; off += BLK) {
		const uint64_t *w = (const void *)(base + off);
		size_t i;

		for (i = 0; i < BLK / 8 && !w[i]; i++)
			;
		if (i < BLK / 8 &&
		    pwrite(fd, base + off, BLK, (off_t)off) != BLK)
			die("write image", errno);
	}
	if (ftruncate(fd, IMG_BYTES))
		die("size image", errno);
	return fd;
}

/* Apply @body's patches to @buf[@len]. */
static void apply_patches(uint8_t *buf, size_t len, const uint8_t *body,
			  size_t n)
{
	while (n >= 3) {
		size_t off = (size_t)(body[0] | body[1] << 8) % len;
		size_t plen = body[2];

		body += 3;
		n -= 3;
		if (plen > n)
			plen = n;
		if (plen > len - off)
			plen = len - off;
		memcpy(buf + off, body, plen);
		body += plen;
		n -= plen;
	}
}

static void super_fix(struct foliofs_disk_super *d, unsigned int copy)
{
	uint64_t gen = le64_to_cpu(d->generation);

	/* The copy bit must match, or it is refused before the fields. */
	d->generation = cpu_to_le64((gen & ~1ULL) | copy);
	d->checksum = cpu_to_le64(0);
	d->checksum = cpu_to_le64(XXH3_64bits(d, sizeof(*d)));
}

static void mode_super(int fd, unsigned int flags, const uint8_t *body,
		       size_t n)
{
	unsigned int copy;

	for (copy = 0; copy < 2; copy++) {
		struct foliofs_disk_super d;

		if (copy == 1 && !(flags & 1))
			break;
		memcpy(&d, base + FOLIOFS_SB_OFFSET(copy), sizeof(d));
		apply_patches((uint8_t *)&d, sizeof(d), body, n);
		if (flags & 2)
			super_fix(&d, copy);
		if (pwrite(fd, &d, sizeof(d), (off_t)FOLIOFS_SB_OFFSET(copy)) !=
		    (ssize_t)sizeof(d))
			die("write super", errno);
	}
}

/* The image's journal, replayed to its end (so commits append). */
static struct journal *open_journal(struct backing **b, struct super *sb)
{
	struct journal *j;
	int ret;

	ret = backing_open(img, 0, b);
	if (ret)
		die("open store", ret);
	ret = super_read(*b, sb, NULL, 0);
	if (!ret)
		ret = journal_open(*b, sb, &j);
	if (!ret)
		ret = journal_replay(j, NULL, NULL, NULL, NULL, 0);
	if (ret)
		die("the base image's journal", ret);
	return j;
}

static void mode_txn(unsigned int flags, const uint8_t *body, size_t n)
{
	struct backing *b;
	struct super sb;
	struct journal *j = open_journal(&b, &sb);
	size_t max = journal_max_txn(j), half = (flags & 1) ? n / 2 : n;

	if (half > max)
		half = max;
	journal_commit(j, body, half);
	if (flags & 1)
		journal_commit(j, body + n / 2,
			       n - n / 2 > max ? max : n - n / 2);
	journal_close(j);
	backing_close(b);
}

static void mode_ckpt(const uint8_t *body, size_t n)
{
	struct backing *b;
	struct super sb;
	struct journal *j = open_journal(&b, &sb);
	uint64_t room = sb.total_blocks - (sb.ckpt_start + sb.ckpt_blocks);

	/* At the end of the volume, clear of the base's checkpoint. */
	if (n > (room - 2) * BLK)
		n = (room - 2) * BLK;
	journal_checkpoint(j, body, n,
			   sb.total_blocks - journal_ckpt_blocks(j, n));
	journal_close(j);
	backing_close(b);
}

static void mode_log(int fd, unsigned int flags, const uint8_t *body, size_t n)
{
	const struct foliofs_disk_super *d = (const void *)base;
	uint64_t log_start = le64_to_cpu(d->log_start);
	uint64_t log_blocks = le64_to_cpu(d->log_blocks);
	uint64_t seed = foliofs_volume_seed(d->uuid);
	uint8_t two[2 * BLK];
	uint64_t first;
	unsigned int i;

	if (!n)
		return;
	first = body[0] % log_blocks;
	if (first + 2 > log_blocks)
		first = log_blocks - 2;
	memcpy(two, base + (log_start + first) * BLK, sizeof(two));
	apply_patches(two, sizeof(two), body + 1, n - 1);
	for (i = 0; i < 2 && (flags & 1); i++) {
		struct foliofs_disk_logblock *h = (void *)(two + i * BLK);

		h->checksum = cpu_to_le64(0);
		h->checksum = cpu_to_le64(XXH3_64bits_withSeed(h, BLK, seed));
	}
	if (pwrite(fd, two, sizeof(two), (off_t)((log_start + first) * BLK)) !=
	    (ssize_t)sizeof(two))
		die("write log", errno);
}

static void mode_raw(int fd, const uint8_t *body, size_t n)
{
	uint8_t *copy = malloc(IMG_BYTES);

	if (!copy)
		die("alloc", ENOMEM);
	memcpy(copy, base, IMG_BYTES);
	while (n >= 4) {
		size_t off = ((size_t)body[0] | (size_t)body[1] << 8 |
			      (size_t)body[2] << 16) % IMG_BYTES;
		size_t plen = body[3];

		body += 4;
		n -= 4;
		if (plen > n)
			plen = n;
		if (plen > IMG_BYTES - off)
			plen = IMG_BYTES - off;
		memcpy(copy + off, body, plen);
		if (pwrite(fd, copy + off, plen, (off_t)off) != (ssize_t)plen)
			die("write raw", errno);
		body += plen;
		n -= plen;
	}
	free(copy);
}

/* ---- Using what mounted ------------------------------------------------- */

struct walk {
	struct foliofs	*fs;
	unsigned int	entries;
	uint8_t		buf[65536];
};

struct ents {
	char		name[FOLIOFS_NAME_MAX + 1];
	foliofs_ino_t	ino;
	uint32_t	type;
};

struct dirbuf {
	struct ents	e[64];
	unsigned int	n;
};

static int fill(void *arg, const char *name, foliofs_ino_t ino, uint32_t type,
		uint64_t next, const struct foliofs_attr *attr)
{
	struct dirbuf *d = arg;

	if (d->n == 64)
		return 1;
	snprintf(d->e[d->n].name, sizeof(d->e[0].name), "%s", name);
	d->e[d->n].ino = ino;
	d->e[d->n].type = type;
	d->n++;
	return 0;
}

static void read_file(struct walk *w, foliofs_ino_t ino)
{
	struct foliofs_attr a;
	struct foliofs_file *f;

	if (foliofs_getattr(w->fs, ino, &a) || foliofs_open(w->fs, ino,
							    O_RDONLY, &f))
		return;
	foliofs_read(f, w->buf, sizeof(w->buf), 0);
	if (a.size > BLK && a.size < (1ULL << 40))
		foliofs_read(f, w->buf, BLK, a.size - BLK);
	foliofs_lseek(f, 0, SEEK_DATA);
	foliofs_lseek(f, 0, SEEK_HOLE);
	foliofs_release(f);
}

static void walk_dir(struct walk *w, foliofs_ino_t ino, int depth)
{
	struct dirbuf *d = calloc(1, sizeof(*d));
	struct foliofs_file *f;
	struct foliofs_attr a;
	unsigned int i;

	if (!d || depth > WALK_DEPTH || foliofs_open(w->fs, ino,
					O_RDONLY | O_DIRECTORY, &f)) {
		free(d);
		return;
	}
	foliofs_readdir(f, 0, 0, fill, d);
	foliofs_release(f);
	for (i = 0; i < d->n && w->entries < WALK_ENTRIES; i++) {
		const char *name = d->e[i].name;

		w->entries++;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		if (foliofs_lookup(w->fs, ino, name, &a))
			continue;
		if (S_ISDIR(a.mode))
			walk_dir(w, a.ino, depth + 1);
		else if (S_ISREG(a.mode))
			read_file(w, a.ino);
		else if (S_ISLNK(a.mode))
			foliofs_readlink(w->fs, a.ino, (char *)w->buf, 4096);
		foliofs_forget(w->fs, a.ino, 1);
	}
	free(d);
}

/* What a program would do to a volume it just mounted read-write. */
static void change(struct walk *w)
{
	struct foliofs *fs = w->fs;
	struct foliofs_file *f;
	struct dirbuf *d;
	unsigned int i;

	memset(w->buf, 0x5a, 16384);
	if (!foliofs_open_path(fs, "/.fz", O_CREAT | O_RDWR, 0644, &f)) {
		foliofs_write(f, w->buf, 12288, 0);
		foliofs_fsync(f, 0);
		foliofs_write(f, w->buf, 100, 20000);
		foliofs_fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				  4096, 4096);
		foliofs_setattr(fs, foliofs_file_ino(f),
				&(struct foliofs_attr){ .size = 5000 },
				FOLIOFS_SET_SIZE, NULL);
		foliofs_release(f);
	}
	foliofs_rename_path(fs, "/.fz", "/.fz2", 0);
	foliofs_mkdir_path(fs, "/.fzd", 0755);
	/* Move each directory of the root into the new one and back. */
	d = calloc(1, sizeof(*d));
	if (d && !foliofs_open(fs, FOLIOFS_ROOT_INO, O_RDONLY | O_DIRECTORY,
			       &f)) {
		foliofs_readdir(f, 0, 0, fill, d);
		foliofs_release(f);
		for (i = 0; i < d->n; i++) {
			const char *name = d->e[i].name;
			char from[300], to[300];

			if (d->e[i].type != DT_DIR || !strcmp(name, ".") ||
			    !strcmp(name, "..") || !strcmp(name, ".fzd"))
				continue;
			snprintf(from, sizeof(from), "/%s", name);
			snprintf(to, sizeof(to), "/.fzd/%s", name);
			if (!foliofs_rename_path(fs, from, to, 0))
				foliofs_rename_path(fs, to, from, 0);
		}
	}
	free(d);
	foliofs_unlink_path(fs, "/.fz2");
	foliofs_rmdir_path(fs, "/.fzd");
	foliofs_syncfs(fs);
}

static void report(void *arg, const char *msg)
{
	if (arg)
		fprintf(stderr, "  fsck: %s\n", msg);
}

static void check_image(void)
{
	struct foliofs_mount_opts ro = { .cache_bytes = 16 << 20,
					 .readonly = 1 };
	struct foliofs_mount_opts rw = { .cache_bytes = 16 << 20 };
	struct walk *w = malloc(sizeof(*w));
	int before, after, ret;

	if (!w)
		die("alloc", ENOMEM);
	before = foliofs_fsck(img, 0, report, verbose ? img : NULL);
	if (before != FOLIOFS_FSCK_OK && before != FOLIOFS_FSCK_ERRORS &&
	    before != FOLIOFS_FSCK_FAILED) {
		fprintf(stderr, "fuzz_image: fsck returned %d\n", before);
		abort();
	}

	ret = foliofs_mount(img, &ro, &w->fs);
	if (verbose)
		fprintf(stderr, "  fsck %d; read-only mount: %s %s\n", before,
			strerror(-ret), ret ? foliofs_strerror() : "");
	if (!ret) {
		w->entries = 0;
		walk_dir(w, FOLIOFS_ROOT_INO, 0);
		foliofs_unmount(w->fs);
		if (verbose)
			fprintf(stderr, "  %u entries\n", w->entries);
	}
	ret = foliofs_mount(img, &rw, &w->fs);
	if (verbose)
		fprintf(stderr, "  read-write mount: %s %s\n", strerror(-ret),
			ret ? foliofs_strerror() : "");
	if (!ret) {
		w->entries = 0;
		walk_dir(w, FOLIOFS_ROOT_INO, 0);
		change(w);
		ret = foliofs_unmount(w->fs);
		if (verbose)
			fprintf(stderr, "  %u entries; unmount: %s\n",
				w->entries, strerror(-ret));
	}
	/* A clean volume stays clean through a read-write session. */
	if (before == FOLIOFS_FSCK_OK && !ret) {
		after = foliofs_fsck(img, 0, report, NULL);
		if (after != FOLIOFS_FSCK_OK) {
			fprintf(stderr, "fuzz_image: fsck passed the image, but "
				"returned %d after a read-write session:\n",
				after);
			foliofs_fsck(img, 0, report, img);
			abort();
		}
	}
	free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned int mode, flags;
	int fd;

	if (!inited)
		LLVMFuzzerInitialize(NULL, NULL);
	if (!size)
		return 0;
	mode = data[0] % NR_MODES;
	flags = data[0] / NR_MODES;
	if (verbose)
		fprintf(stderr, "input: mode %u flags %u, %zu bytes\n", mode,
			flags, size - 1);
	data++;
	size--;
	if (size > MAX_BODY)
		size = MAX_BODY;

	fd = write_base();
	switch (mode) {
	case MODE_SUPER:
		mode_super(fd, flags, data, size);
		break;
	case MODE_LOG:
		mode_log(fd, flags, data, size);
		break;
	case MODE_RAW:
		mode_raw(fd, data, size);
		break;
	}
	close(fd);
	if (mode == MODE_TXN)
		mode_txn(flags, data, size);
	else if (mode == MODE_CKPT)
		mode_ckpt(data, size);
	check_image();
	return 0;
}
