/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_super.c - the superblock: a round trip of every field in little-endian
 * order, A/B copies alternating with the generation, fallback to the other
 * copy when one is torn, corrupted or zeroed (and the message when both
 * are), every validation rule refused on read and on write, unknown incompat
 * features refused, and every crash point of a run of writes (crashsim.h,
 * torn and random modes) reading back a generation that was durable or the
 * one in flight, never garbage.
 *
 * Images are files in $FOLIOFS_TEST_DIR (default: the current directory,
 * the build directory under meson), named test_super.<pid>.*.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "backing.h"
#include "testimg.h"
#include "compiler.h"
#include "crashsim.h"
#include "ondisk.h"
#include "super.h"

#define BS		4096U
#define DEV_BLOCKS	64U		/* the image: 256 KiB */
#define NR_WRITES	7		/* crash test: generations 1..7 */
#define NR_SEEDS	6

/* ---- Helpers ---------------------------------------------------------- */

/* A fresh image @name of @bytes (sparse), opened as a store. */
static struct backing *open_img(const char *name, uint64_t bytes)
{
	struct backing *b;
	char path[4096];

	testimg_path(path, sizeof(path), name);
	unlink(path);
	assert_int_equal(backing_open(path, BACKING_CREATE | testimg_open_flags, &b),
			 0);
	assert_int_equal(backing_grow(b, bytes), 0);
	return b;
}

static void rm_img(const char *name)
{
	char path[4096];

	testimg_path(path, sizeof(path), name);
	unlink(path);
}

/* A valid superblock for a DEV_BLOCKS volume, not written yet. */
static void mk_sb(struct super *sb)
{
	assert_int_equal(super_init(sb, BS, DEV_BLOCKS, "test volume"), 0);
	sb->log_start = 2;
	sb->log_blocks = 8;
	sb->ckpt_start = 10;
	sb->ckpt_blocks = 4;
	sb->ckpt_seq = 7;
	sb->mount_ns = 1234567890123456789ULL;
}

static void assert_super_equal(const struct super *a, const struct super *b)
{
	assert_int_equal(a->version, b->version);
	assert_int_equal(a->block_size, b->block_size);
	assert_int_equal(a->compat, b->compat);
	assert_int_equal(a->incompat, b->incompat);
	assert_int_equal(a->ro_compat, b->ro_compat);
	assert_int_equal(a->total_blocks, b->total_blocks);
	assert_memory_equal(a->uuid, b->uuid, sizeof(a->uuid));
	assert_string_equal(a->label, b->label);
	assert_int_equal(a->generation, b->generation);
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->ctime_ns, b->ctime_ns);
	assert_int_equal(a->mount_ns, b->mount_ns);
	assert_int_equal(a->log_start, b->log_start);
	assert_int_equal(a->log_blocks, b->log_blocks);
	assert_int_equal(a->ckpt_start, b->ckpt_start);
	assert_int_equal(a->ckpt_blocks, b->ckpt_blocks);
	assert_int_equal(a->ckpt_seq, b->ckpt_seq);
	assert_int_equal(a->copy, b->copy);
}

static void *abuf(size_t len)
{
	void *p = aligned_alloc(BS, len);

	assert_non_null(p);
	memset(p, 0, len);
	return p;
}

/* Checksum computed here, independently of super.c. */
static void fix_csum(struct foliofs_disk_super *d)
{
	d->checksum = cpu_to_le64(0);
	d->checksum = cpu_to_le64(XXH3_64bits(d, sizeof(*d)));
}

static void write_raw(struct backing *b, unsigned int copy,
		      const struct foliofs_disk_super *d)
{
	void *buf = abuf(BS);

	memcpy(buf, d, BS);
	assert_int_equal(backing_write(b, buf, FOLIOFS_SB_OFFSET(copy), BS), 0);
	free(buf);
}

static void read_raw(struct backing *b, unsigned int copy,
		     struct foliofs_disk_super *d)
{
	void *buf = abuf(BS);

	assert_int_equal(backing_read(b, buf, FOLIOFS_SB_OFFSET(copy), BS), 0);
	memcpy(d, buf, BS);
	free(buf);
}

/* Flip one byte at @off of copy @copy, leaving the checksum stale. */
static void flip(struct backing *b, unsigned int copy, size_t off)
{
	struct foliofs_disk_super d;

	read_raw(b, copy, &d);
	((uint8_t *)&d)[off] ^= 0x5a;
	write_raw(b, copy, &d);
}

static void assert_read_gen(struct backing *b, uint64_t gen, const char *msg)
{
	char buf[SUPER_MSG_LEN];
	struct super sb;

	assert_int_equal(super_read(b, &sb, buf, sizeof(buf)), 0);
	assert_int_equal(sb.generation, gen);
	assert_int_equal(sb.copy, gen & 1);
	assert_string_equal(buf, msg);
}

/* ---- Round trip and A/B ----------------------------------------------- */

static void test_round_trip(void **state)
{
	struct foliofs_disk_super d;
	struct backing *b = open_img("rt", DEV_BLOCKS * BS);
	struct super sb, got;
	char msg[SUPER_MSG_LEN];
	const uint8_t *raw = (const uint8_t *)&d;

	(void)state;
	mk_sb(&sb);
	sb.compat = 0x8000000000000001ULL;	/* compat: ignored on read */
	sb.ro_compat = 0x2;
	sb.state = FOLIOFS_STATE_DIRTY;
	assert_int_equal(super_write(b, &sb), 0);
	assert_int_equal(sb.generation, 1);
	assert_int_equal(sb.copy, 1);

	assert_int_equal(super_read(b, &got, msg, sizeof(msg)), 0);
	assert_super_equal(&got, &sb);
	/* Copy A was never written: its refusal is still reported. */
	assert_string_equal(msg, "superblock A: wrong magic");
	assert_int_equal(super_ro_compat_unknown(&got), 0x2);

	/* The bytes themselves: magic, little-endian fields, NUL padding. */
	read_raw(b, 1, &d);
	assert_memory_equal(raw, "FOLIOFS\0", 8);
	assert_memory_equal(raw + 12, "\x00\x10\x00\x00", 4);	/* 4096 */
	assert_memory_equal(raw + 16, "\x01\0\0\0\0\0\0\x80", 8);
	assert_memory_equal(raw + 40, "\x40\0\0\0\0\0\0\0", 8);	/* 64 */
	assert_memory_equal(raw + 64, "test volume\0\0", 13);
	assert_int_equal(raw[64 + 63], 0);
	assert_memory_equal(raw + 128, "\x01\0\0\0\0\0\0\0", 8);
	assert_memory_equal(raw + 136, "\x02\0\0\0", 4);	/* dirty */
	for (size_t i = 200; i < 4088; i++)
		assert_int_equal(raw[i], 0);
	{
		struct foliofs_disk_super z = d;

		z.checksum = cpu_to_le64(0);
		assert_int_equal(le64_to_cpu(d.checksum),
				 XXH3_64bits(&z, sizeof(z)));
	}

	/* A 64-character label fills the field with no NUL. */
	memset(sb.label, 'x', FOLIOFS_SB_LABEL_LEN);
	sb.label[FOLIOFS_SB_LABEL_LEN] = '\0';
	assert_int_equal(super_write(b, &sb), 0);
	assert_int_equal(super_read(b, &got, msg, sizeof(msg)), 0);
	assert_super_equal(&got, &sb);
	assert_string_equal(msg, "");

	assert_int_equal(super_init(&got, BS, DEV_BLOCKS,
		"a label that is longer than sixty-four bytes, which is too long"
		"!!"), -EINVAL);
	assert_int_equal(super_init(&got, 2048, DEV_BLOCKS, NULL), -EINVAL);

	backing_close(b);
	rm_img("rt");
}

static void test_alternating(void **state)
{
	struct foliofs_disk_super d[2];
	struct backing *b = open_img("ab", DEV_BLOCKS * BS);
	struct super sb, got;
	uint64_t gen;

	(void)state;
	mk_sb(&sb);
	for (gen = 1; gen <= 6; gen++) {
		sb.ckpt_seq = 100 + gen;
		assert_int_equal(super_write(b, &sb), 0);
		assert_int_equal(sb.generation, gen);
		assert_int_equal(sb.copy, gen & 1);
		assert_int_equal(super_read(b, &got, NULL, 0), 0);
		assert_super_equal(&got, &sb);
		if (gen < 2)
			continue;
		/* The copy not written holds the previous generation. */
		read_raw(b, 0, &d[0]);
		read_raw(b, 1, &d[1]);
		assert_int_equal(le64_to_cpu(d[gen & 1].generation), gen);
		assert_int_equal(le64_to_cpu(d[!(gen & 1)].generation),
				 gen - 1);
		assert_int_equal(le64_to_cpu(d[!(gen & 1)].ckpt_seq),
				 100 + gen - 1);
	}
	/* A volume's last mount goes on from what was read. */
	got.mount_ns++;
	assert_int_equal(super_write(b, &got), 0);
	assert_int_equal(got.generation, 7);
	assert_read_gen(b, 7, "");
	backing_close(b);
	rm_img("ab");
}

/* ---- Torn and corrupted copies ----------------------------------------- */

/* Generations 1 (B), 2 (A), 3 (B): the newest is in B. */
static struct backing *three_writes(const char *name)
{
	struct backing *b = open_img(name, DEV_BLOCKS * BS);
	struct super sb;
	int i;

	mk_sb(&sb);
	for (i = 0; i < 3; i++)
		assert_int_equal(super_write(b, &sb), 0);
	return b;
}

static void test_corrupt_copies(void **state)
{
	char msg[SUPER_MSG_LEN];
	struct backing *b;
	struct super sb;
	void *zero = abuf(BS);

	(void)state;
	/* The newest copy corrupted: the older one is used. */
	b = three_writes("c1");
	flip(b, 1, 300);
	assert_read_gen(b, 2, "superblock B: bad checksum");
	backing_close(b);

	/* The older copy corrupted: the newest is still used. */
	b = three_writes("c2");
	flip(b, 0, 4090);			/* in the checksum itself */
	assert_read_gen(b, 3, "superblock A: bad checksum");
	backing_close(b);

	/* A torn newest copy: its first sector new, the rest stale. */
	b = three_writes("c3");
	{
		struct foliofs_disk_super a, nb;

		read_raw(b, 0, &a);
		read_raw(b, 1, &nb);
		memcpy((uint8_t *)&nb + 512, (uint8_t *)&a + 512, BS - 512);
		write_raw(b, 1, &nb);
	}
	assert_read_gen(b, 2, "superblock B: bad checksum");
	backing_close(b);

	/* One copy zeroed, then the other one's magic. */
	b = three_writes("c4");
	assert_int_equal(backing_write(b, zero, FOLIOFS_SB_OFFSET(0), BS), 0);
	assert_read_gen(b, 3, "superblock A: wrong magic");
	flip(b, 1, 0);
	assert_int_equal(super_read(b, &sb, msg, sizeof(msg)), -EUCLEAN);
	assert_string_equal(msg,
		"superblock A: wrong magic; superblock B: wrong magic");
	backing_close(b);

	/* Both flipped. */
	b = three_writes("c5");
	flip(b, 0, 1000);
	flip(b, 1, 100);
	assert_int_equal(super_read(b, &sb, msg, sizeof(msg)), -EUCLEAN);
	assert_string_equal(msg,
		"superblock A: bad checksum; superblock B: bad checksum");
	/* A message buffer too short is cut, not overrun. */
	memset(msg, '#', sizeof(msg));
	assert_int_equal(super_read(b, &sb, msg, 12), -EUCLEAN);
	assert_string_equal(msg, "superblock ");
	assert_int_equal(msg[12], '#');
	assert_int_equal(super_read(b, &sb, NULL, 0), -EUCLEAN);
	backing_close(b);

	/* An empty store. */
	b = open_img("c6", DEV_BLOCKS * BS);
	assert_int_equal(super_read(b, &sb, msg, sizeof(msg)), -EUCLEAN);
	assert_string_equal(msg,
		"superblock A: wrong magic; superblock B: wrong magic");
	backing_close(b);

	/* A refused write leaves the generation, so the next one still goes
	 * to the other copy. */
	b = three_writes("c7");
	assert_int_equal(super_read(b, &sb, NULL, 0), 0);
	sb.log_blocks = 0;
	assert_int_equal(super_write(b, &sb), -EINVAL);
	assert_int_equal(sb.generation, 3);
	assert_int_equal(sb.copy, 1);
	backing_close(b);

	for (int i = 1; i <= 7; i++) {
		char name[8];

		snprintf(name, sizeof(name), "c%d", i);
		rm_img(name);
	}
	free(zero);
}

/* ---- Validation rules ------------------------------------------------- */

struct rule {
	const char	*name;
	void		(*mutate)(struct super *sb);
	const char	*why;
};

static void bs_odd(struct super *sb)	{ sb->block_size = 3 * 4096; }
static void bs_small(struct super *sb)	{ sb->block_size = 2048; }
static void bs_large(struct super *sb)	{ sb->block_size = 131072; }
static void tb_small(struct super *sb)	{ sb->total_blocks = FOLIOFS_MIN_BLOCKS - 1; }
static void tb_large(struct super *sb)	{ sb->total_blocks = DEV_BLOCKS + 1; }
static void st_zero(struct super *sb)	{ sb->state = 0; }
static void st_three(struct super *sb)	{ sb->state = 3; }
static void log_empty(struct super *sb)	{ sb->log_blocks = 0; }
static void log_sb_a(struct super *sb)	{ sb->log_start = 0; }
static void log_sb_b(struct super *sb)	{ sb->log_start = 1; }
static void log_end(struct super *sb)	{ sb->log_start = DEV_BLOCKS - 4; }
static void log_wrap(struct super *sb)
{
	sb->log_start = UINT64_MAX - 2;
	sb->log_blocks = 8;
}
static void ck_end(struct super *sb)	{ sb->ckpt_blocks = DEV_BLOCKS; }
static void ck_sb(struct super *sb)	{ sb->ckpt_start = 1; sb->ckpt_blocks = 1; }
static void ck_log(struct super *sb)	{ sb->ckpt_start = 9; }
static void ck_log2(struct super *sb)	{ sb->ckpt_start = 1 + 2; sb->ckpt_blocks = 40; }
static void ck_wrap(struct super *sb)	{ sb->ckpt_blocks = UINT64_MAX; }
static void ck_loc(struct super *sb)	{ sb->ckpt_blocks = 0; }
static void bs_8k_sb(struct super *sb)
{
	/* At 8 KiB blocks, block 0 holds both copies. */
	sb->block_size = 8192;
	sb->total_blocks = DEV_BLOCKS / 2;
	sb->log_start = 0;
}

static const struct rule rules[] = {
	{ "block size not a power of two", bs_odd,
	  "block size not a power of two in 4096..65536" },
	{ "block size below 4096", bs_small,
	  "block size not a power of two in 4096..65536" },
	{ "block size above 65536", bs_large,
	  "block size not a power of two in 4096..65536" },
	{ "too few blocks", tb_small, "volume smaller than the minimum" },
	{ "more blocks than the device", tb_large,
	  "volume larger than the device" },
	{ "state 0", st_zero, "unknown state" },
	{ "state 3", st_three, "unknown state" },
	{ "empty log", log_empty, "metadata log outside the volume" },
	{ "log over copy A", log_sb_a, "metadata log outside the volume" },
	{ "log over copy B", log_sb_b, "metadata log outside the volume" },
	{ "log past the end", log_end, "metadata log outside the volume" },
	{ "log wrapping 2^64", log_wrap, "metadata log outside the volume" },
	{ "checkpoint past the end", ck_end, "checkpoint outside the volume" },
	{ "checkpoint over copy B", ck_sb, "checkpoint outside the volume" },
	{ "checkpoint over the log's end", ck_log,
	  "checkpoint overlaps the metadata log" },
	{ "checkpoint around the log", ck_log2,
	  "checkpoint overlaps the metadata log" },
	{ "checkpoint wrapping 2^64", ck_wrap,
	  "checkpoint outside the volume" },
	{ "empty checkpoint with a location", ck_loc,
	  "empty checkpoint with a location" },
	{ "8 KiB blocks, log over the superblocks", bs_8k_sb,
	  "metadata log outside the volume" },
};

/*
 * Copy B holds a good generation 1; the rule's superblock goes into copy A
 * as generation 2 with a good checksum. super_read() must fall back to B
 * and name the rule; super_write() must refuse it outright.
 */
static void test_rules(void **state)
{
	char msg[SUPER_MSG_LEN], want[SUPER_MSG_LEN];
	struct foliofs_disk_super d;
	struct super good, bad;
	struct backing *b;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(rules); i++) {
		printf("# rule: %s\n", rules[i].name);
		b = open_img("rules", DEV_BLOCKS * BS);
		mk_sb(&good);
		assert_int_equal(super_write(b, &good), 0);

		bad = good;
		rules[i].mutate(&bad);
		assert_int_equal(super_write(b, &bad), -EINVAL);
		assert_int_equal(bad.generation, 1);

		bad.generation = 2;
		super_encode(&bad, &d);
		write_raw(b, 0, &d);
		snprintf(want, sizeof(want), "superblock A: %s", rules[i].why);
		assert_read_gen(b, 1, want);

		/* Both copies bad: refused with both reasons. */
		bad.generation = 3;
		super_encode(&bad, &d);
		write_raw(b, 1, &d);
		assert_int_equal(super_read(b, &good, msg, sizeof(msg)),
				 -EUCLEAN);
		snprintf(want, sizeof(want),
			 "superblock A: %s; superblock B: %s", rules[i].why,
			 rules[i].why);
		assert_string_equal(msg, want);
		backing_close(b);
	}
	rm_img("rules");
}

/* Rules only a raw block can break: version, padding, slot. */
static void test_raw_rules(void **state)
{
	struct foliofs_disk_super d, orig;
	struct backing *b = open_img("raw", DEV_BLOCKS * BS);
	struct super sb;

	(void)state;
	mk_sb(&sb);
	assert_int_equal(super_write(b, &sb), 0);	/* 1 in B */
	assert_int_equal(super_write(b, &sb), 0);	/* 2 in A */
	read_raw(b, 0, &orig);

	d = orig;
	d.version = cpu_to_le32(2);
	fix_csum(&d);
	write_raw(b, 0, &d);
	assert_read_gen(b, 1, "superblock A: unsupported version");

	d = orig;
	d.reserved[1000] = 1;
	fix_csum(&d);
	write_raw(b, 0, &d);
	assert_read_gen(b, 1, "superblock A: nonzero reserved bytes");

	d = orig;
	d.pad0 = cpu_to_le32(1);
	fix_csum(&d);
	write_raw(b, 0, &d);
	assert_read_gen(b, 1, "superblock A: nonzero reserved bytes");

	/* Generation 3 (odd) sitting in copy A. */
	d = orig;
	d.generation = cpu_to_le64(3);
	fix_csum(&d);
	write_raw(b, 0, &d);
	assert_read_gen(b, 1, "superblock A: generation in the wrong copy");

	/* The original, re-checksummed here, is accepted: same checksum. */
	d = orig;
	fix_csum(&d);
	assert_int_equal(le64_to_cpu(d.checksum), le64_to_cpu(orig.checksum));
	write_raw(b, 0, &d);
	assert_read_gen(b, 2, "");

	backing_close(b);
	rm_img("raw");
}

/* 64 KiB blocks: valid, the log may start at block 1 (byte 65536). */
static void test_large_blocks(void **state)
{
	struct backing *b = open_img("big", 32ULL * 65536);
	struct super sb, got;

	(void)state;
	assert_int_equal(super_init(&sb, 65536, 32, NULL), 0);
	sb.log_start = 1;
	sb.log_blocks = 4;
	assert_int_equal(super_write(b, &sb), 0);
	assert_int_equal(super_read(b, &got, NULL, 0), 0);
	assert_super_equal(&got, &sb);
	assert_string_equal(got.label, "");
	backing_close(b);
	rm_img("big");
}

static void test_incompat(void **state)
{
	char msg[SUPER_MSG_LEN];
	struct foliofs_disk_super d;
	struct backing *b = open_img("feat", DEV_BLOCKS * BS);
	struct super sb, got;

	(void)state;
	mk_sb(&sb);
	assert_int_equal(super_write(b, &sb), 0);	/* 1 in B */
	sb.incompat = 0x20 | (1ULL << 63);
	assert_int_equal(super_write(b, &sb), -EINVAL);

	/* A newer writer's generation 2 with features we do not know. */
	sb.generation = 2;
	super_encode(&sb, &d);
	write_raw(b, 0, &d);
	assert_int_equal(super_read(b, &got, msg, sizeof(msg)), -EOPNOTSUPP);
	assert_string_equal(msg, "superblock A: unknown incompatible features "
				 "0x8000000000000020");

	/* With the newer copy corrupt, the older one is fine. */
	flip(b, 0, 500);
	assert_read_gen(b, 1, "superblock A: bad checksum");
	backing_close(b);
	rm_img("feat");
}

/* ---- Crash points ----------------------------------------------------- */

/*
 * Generations 1..NR_WRITES through a crash simulator. After every cut, in
 * torn and random modes and several seeds, super_read() returns either the
 * last generation whose flush completed or the one written after it (its
 * write may have landed whole), with exactly the fields written for it;
 * before the first flush it may also find nothing, but never garbage.
 */
static void test_crash_points(void **state)
{
	static const enum crashsim_mode modes[] = { CRASHSIM_TORN,
						    CRASHSIM_RANDOM };
	struct super written[NR_WRITES + 1], sb, got;
	size_t flushed_at[NR_WRITES + 1], points, n;
	struct backing *b, *sim, *img;
	char path[4096], out_path[4096], msg[SUPER_MSG_LEN];
	unsigned int m, seed, gen, durable, seen_new = 0, seen_old = 0;
	int fd, out, ret;

	(void)state;
	b = open_img("crash", DEV_BLOCKS * BS);
	assert_int_equal(backing_fsync(b), 0);
	testimg_path(path, sizeof(path), "crash");
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(crashsim_create(b, fd, &sim), 0);
	close(fd);

	mk_sb(&sb);
	for (gen = 1; gen <= NR_WRITES; gen++) {
		sb.ckpt_seq = 1000 + gen;
		sb.mount_ns = gen * 1000000007ULL;
		sb.state = gen & 1 ? FOLIOFS_STATE_DIRTY : FOLIOFS_STATE_CLEAN;
		assert_int_equal(super_write(sim, &sb), 0);
		written[gen] = sb;
		/* The ops up to and including this write's flush. */
		flushed_at[gen] = crashsim_points(sim);
	}
	points = crashsim_points(sim);
	assert_int_equal(points, 2 * NR_WRITES);

	testimg_path(out_path, sizeof(out_path), "crash-out");
	for (m = 0; m < ARRAY_SIZE(modes); m++) {
		for (n = 0; n <= points; n++) {
			durable = 0;
			for (gen = 1; gen <= NR_WRITES; gen++)
				if (flushed_at[gen] <= n)
					durable = gen;
			for (seed = 1; seed <= NR_SEEDS; seed++) {
				out = open(out_path,
					   O_CREAT | O_TRUNC | O_RDWR, 0644);
				assert_true(out >= 0);
				assert_int_equal(crashsim_make_image_at(sim, n,
						seed, modes[m], out), 0);
				close(out);
				assert_int_equal(backing_open(out_path,
						testimg_open_flags | BACKING_RDONLY,
						&img), 0);
				ret = super_read(img, &got, msg, sizeof(msg));
				backing_close(img);

				if (ret) {
					if (durable)
						fail_msg("mode %u cut %zu seed %u:"
							 " %s", m, n, seed, msg);
					assert_int_equal(ret, -EUCLEAN);
					continue;
				}
				if (got.generation != durable &&
				    got.generation != durable + 1)
					fail_msg("mode %u cut %zu seed %u: "
						 "generation %llu, durable %u",
						 m, n, seed,
						 (unsigned long long)got.generation,
						 durable);
				/* Only a write issued before the cut. */
				assert_true(2 * got.generation - 1 <= n);
				assert_super_equal(&got,
						   &written[got.generation]);
				if (got.generation == durable)
					seen_old++;
				else
					seen_new++;
			}
		}
	}
	/* Both outcomes happened: the test really exercised the fallback. */
	printf("# crash images: %u read the durable generation, %u the one "
	       "in flight\n", seen_old, seen_new);
	assert_true(seen_old > 0);
	assert_true(seen_new > 0);

	backing_close(sim);
	unlink(out_path);
	rm_img("crash");
}

/* ---- Setup ------------------------------------------------------------ */

static int setup(void **state)
{
	(void)state;
	return testimg_probe("test_super");
}

static int teardown(void **state)
{
	(void)state;
	return testimg_cleanup();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_alternating),
		cmocka_unit_test(test_corrupt_copies),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_raw_rules),
		cmocka_unit_test(test_large_blocks),
		cmocka_unit_test(test_incompat),
		cmocka_unit_test(test_crash_points),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
