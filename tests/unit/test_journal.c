/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_journal.c - the metadata log and checkpoints: the bytes of a log
 * block and a checkpoint header; a round trip of transactions of 0 bytes to
 * a quarter of the log across many ring wraps, replaying and going on after
 * each replay; a checkpoint then more transactions replaying as the
 * checkpoint plus only the later ones; a corrupted or torn block ending the
 * log there and the next commit going over it; blocks of an older mkfs
 * never replayed; -ENOSPC until a checkpoint, -E2BIG; every crash point of
 * a scripted run (crashsim.h; drop, random and torn) replaying exactly a
 * prefix of what was issued that holds every durable commit, and a commit
 * after that replay; a commit over a damaged transaction never followed by
 * older ones (the chain); failed writes, flushes and reads (faulty.h) in
 * commits, checkpoints and replay; a corrupted checkpoint refused with
 * -EUCLEAN and a message; crafted log blocks with valid checksums but bad
 * lengths, flags or sequence numbers stopping the log cleanly; callback
 * errors; the superblock state; 64 KiB blocks.
 *
 * Images are files in $FOLIOFS_TEST_DIR (default: the current directory,
 * the build directory under meson), named test_journal.<pid>.*.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "backing.h"
#include "compiler.h"
#include "crashsim.h"
#include "faulty.h"
#include "journal.h"
#include "ondisk.h"
#include "super.h"
#include "testimg.h"

#define BS		4096U
#define HDR		64U			/* log block header, bytes */
#define PPB		(BS - HDR)		/* payload bytes per log block */
#define DEV_BLOCKS	1024U			/* the image: 4 MiB */
#define LOG_START	2U			/* fs block */
#define MAX_TXNS	1024
#define MSG_LEN		256
#define NR_AREAS	5

/* Checkpoint areas, used in turn so the live one is never written over
 * (and neither is one a failed checkpoint may have left named). */
static const uint64_t areas[NR_AREAS] = { 64, 256, 448, 640, 832 };

/* ---- Images ------------------------------------------------------------- */

static struct backing *open_img(const char *name, uint64_t bytes)
{
	struct backing *b;
	char path[4096];

	testimg_path(path, sizeof(path), name);
	unlink(path);
	assert_int_equal(backing_open(path, BACKING_CREATE | testimg_open_flags,
				      &b), 0);
	assert_int_equal(backing_grow(b, bytes), 0);
	return b;
}

static void rm_img(const char *name)
{
	char path[4096];

	testimg_path(path, sizeof(path), name);
	unlink(path);
}

/* A new volume on @b: a log of @log_blocks at LOG_START, no checkpoint. */
static void mk_vol(struct backing *b, struct super *sb, uint64_t log_blocks)
{
	assert_int_equal(super_init(sb, BS, DEV_BLOCKS, "journal"), 0);
	sb->log_start = LOG_START;
	sb->log_blocks = log_blocks;
	assert_int_equal(super_write(b, sb), 0);
	assert_int_equal(super_write(b, sb), 0);
}

static void *abuf(size_t len)
{
	void *p = aligned_alloc(BACKING_BLOCK_SIZE, len);

	assert_non_null(p);
	memset(p, 0, len);
	return p;
}

static void read_blk(struct backing *b, uint64_t blk, void *buf)
{
	assert_int_equal(backing_read(b, buf, blk * BS, BS), 0);
}

static void write_blk(struct backing *b, uint64_t blk, const void *buf)
{
	assert_int_equal(backing_write(b, buf, blk * BS, BS), 0);
}

/* Flip one byte at @off of fs block @blk. */
static void flip(struct backing *b, uint64_t blk, size_t off)
{
	uint8_t *buf = abuf(BS);

	read_blk(b, blk, buf);
	buf[off] ^= 0x5a;
	write_blk(b, blk, buf);
	free(buf);
}

/* The checksum seed, derived here independently of journal.c. */
static uint64_t seed_of(const struct super *sb)
{
	return (uint64_t)sb->uuid[0] | (uint64_t)sb->uuid[1] << 8 |
	       (uint64_t)sb->uuid[2] << 16 | (uint64_t)sb->uuid[3] << 24 |
	       (uint64_t)sb->uuid[4] << 32 | (uint64_t)sb->uuid[5] << 40 |
	       (uint64_t)sb->uuid[6] << 48 | (uint64_t)sb->uuid[7] << 56;
}

/* A field of @bytes bytes at @p, little-endian. */
static void put_le(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Re-checksum an fs block whose checksum is the le64 at byte 56. */
static void fix_csum(void *blk, uint64_t seed)
{
	uint8_t *p = blk;

	memset(p + 56, 0, 8);
	put_le(p + 56, XXH3_64bits_withSeed(p, BS, seed), 8);
}

/* ---- The model: what was committed, and what replay must give ---------- */

struct model {
	uint64_t	id[MAX_TXNS];
	size_t		len[MAX_TXNS];
	size_t		nr;
};

static void fill(uint8_t *p, size_t len, uint64_t id)
{
	uint64_t x = id * 0x9e3779b97f4a7c15ULL + 0x1234567;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 32);
	}
}

static int commit(struct journal *j, struct model *m, uint64_t id,
		  size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	int ret;

	assert_non_null(p);
	fill(p, len, id);
	ret = journal_commit(j, len ? p : NULL, len);
	free(p);
	if (!ret && m) {
		assert_true(m->nr < MAX_TXNS);
		m->id[m->nr] = id;
		m->len[m->nr] = len;
		m->nr++;
	}
	return ret;
}

/*
 * A checkpoint payload: the count of transactions it covers, its padding
 * length, their (id, len), then @pad pattern bytes.
 */
static void *ckpt_payload(const struct model *m, size_t pad, size_t *len)
{
	size_t n = 16 + 16 * m->nr + pad;
	uint64_t *w = malloc(n);

	assert_non_null(w);
	w[0] = m->nr;
	w[1] = pad;
	for (size_t i = 0; i < m->nr; i++) {
		w[2 + 2 * i] = m->id[i];
		w[3 + 2 * i] = m->len[i];
	}
	fill((uint8_t *)w + 16 + 16 * m->nr, pad, 0xc0ffee + m->nr);
	*len = n;
	return w;
}

static unsigned int area_next;

static int checkpoint(struct journal *j, const struct model *m, size_t pad)
{
	size_t len;
	void *p = ckpt_payload(m, pad, &len);
	int ret;

	ret = journal_checkpoint(j, p, len, areas[area_next++ % NR_AREAS]);
	free(p);
	return ret;
}

/* What replay fed back, checked against the model as it comes. */
struct rctx {
	const struct model *m;
	size_t	next;		/* index in m of the next transaction */
	size_t	ckpt_count;	/* transactions the checkpoint covered */
	int	ckpts;		/* checkpoint callbacks */
	size_t	txns;		/* transaction callbacks */
	size_t	fail_at;	/* return -EBADMSG at this txn callback */
	bool	fail_ckpt;
	const char *where;
};

static int apply_ckpt(void *arg, const void *p, size_t len)
{
	struct rctx *r = arg;
	const uint64_t *w = p;
	uint8_t *want;
	size_t c, pad;

	assert_non_null(p);
	if (r->fail_ckpt)
		return -EBADMSG;
	assert_true(len >= 16);
	c = w[0];
	pad = w[1];
	if (c > r->m->nr)
		fail_msg("%s: checkpoint covers %zu of %zu", r->where, c,
			 r->m->nr);
	assert_int_equal(len, 16 + 16 * c + pad);
	for (size_t i = 0; i < c; i++) {
		assert_int_equal(w[2 + 2 * i], r->m->id[i]);
		assert_int_equal(w[3 + 2 * i], r->m->len[i]);
	}
	want = malloc(pad + 1);
	assert_non_null(want);
	fill(want, pad, 0xc0ffee + c);
	assert_memory_equal((const uint8_t *)p + 16 + 16 * c, want, pad);
	free(want);
	r->next = c;
	r->ckpt_count = c;
	r->ckpts++;
	return 0;
}

static int apply_txn(void *arg, const void *p, size_t len)
{
	struct rctx *r = arg;
	uint8_t *want;
	size_t i = r->next;

	assert_non_null(p);
	if (r->txns == r->fail_at)
		return -EBADMSG;
	if (i >= r->m->nr)
		fail_msg("%s: replayed transaction %zu, only %zu issued",
			 r->where, i, r->m->nr);
	if (len != r->m->len[i])
		fail_msg("%s: transaction %zu: %zu bytes, want %zu", r->where,
			 i, len, r->m->len[i]);
	want = malloc(len + 1);
	assert_non_null(want);
	fill(want, len, r->m->id[i]);
	if (memcmp(p, want, len))
		fail_msg("%s: transaction %zu: wrong payload", r->where, i);
	free(want);
	r->next++;
	r->txns++;
	return 0;
}

/* For a checkpoint with an empty payload: it covers everything. */
static int apply_empty_ckpt(void *arg, const void *p, size_t len)
{
	struct rctx *r = arg;

	assert_non_null(p);
	assert_int_equal(len, 0);
	r->next = r->m->nr;
	r->ckpts++;
	return 0;
}

static void rctx_init(struct rctx *r, const struct model *m, const char *where)
{
	memset(r, 0, sizeof(*r));
	r->m = m;
	r->fail_at = SIZE_MAX;
	r->where = where;
}

/*
 * Mount-like: read the superblock into @sb, open a journal and replay it
 * against @m. Returns the journal (for more commits) and fills @r.
 */
static struct journal *remount(struct backing *b, struct super *sb,
			       const struct model *m, struct rctx *r,
			       char *msg)
{
	struct journal *j;

	rctx_init(r, m, "replay");
	assert_int_equal(super_read(b, sb, NULL, 0), 0);
	assert_int_equal(journal_open(b, sb, &j), 0);
	assert_int_equal(journal_replay(j, apply_ckpt, apply_txn, r, msg,
					MSG_LEN), 0);
	return j;
}

/* Replay and check that exactly @m comes back; returns the message. */
static void assert_replays(struct backing *b, const struct model *m,
			   char *msg)
{
	struct super sb;
	struct rctx r;
	char buf[MSG_LEN];

	journal_close(remount(b, &sb, m, &r, msg ? msg : buf));
	if (r.next != m->nr)
		fail_msg("replayed %zu of %zu: %s", r.next, m->nr,
			 msg ? msg : buf);
}

static uint64_t head_of(const struct journal *j, const struct super *sb)
{
	return sb->ckpt_seq + journal_used_bytes(j) / BS;
}

/* ---- The bytes on disk --------------------------------------------------- */

static void test_format(void **state)
{
	struct backing *b = open_img("fmt", DEV_BLOCKS * BS);
	uint8_t *blk = abuf(BS), *want = abuf(BS);
	struct journal *j;
	struct super sb, got;
	uint64_t seed, h;

	(void)state;
	mk_vol(b, &sb, 16);
	seed = seed_of(&sb);
	assert_int_equal(journal_open(b, &sb, &j), 0);
	assert_int_equal(journal_size_bytes(j), 16 * BS);
	assert_int_equal(journal_max_txn(j), 4 * PPB);
	assert_int_equal(journal_ckpt_blocks(j, 0), 1);
	assert_int_equal(journal_ckpt_blocks(j, 1), 2);
	assert_int_equal(journal_ckpt_blocks(j, BS), 2);
	assert_int_equal(journal_ckpt_blocks(j, BS + 1), 3);

	assert_int_equal(journal_commit(j, "hello", 5), 0);
	assert_int_equal(journal_used_bytes(j), BS);
	read_blk(b, LOG_START, blk);
	assert_memory_equal(blk, "FLOG", 4);
	assert_memory_equal(blk + 4, "\x01\0\0\0", 4);		/* COMMIT */
	assert_memory_equal(blk + 8, "\0\0\0\0\0\0\0\0", 8);	/* seq 0 */
	assert_memory_equal(blk + 16, "\0\0\0\0\0\0\0\0", 8);	/* txn 0 */
	assert_memory_equal(blk + 24, "\x05\0\0\0\0\0\0\0", 8);	/* len */
	h = XXH3_64bits_withSeed("hello", 5, seed);
	for (int i = 0; i < 8; i++)
		assert_int_equal(blk[32 + i], (uint8_t)(h >> (8 * i)));
	assert_memory_equal(blk + 40, "\x05\0\0\0", 4);		/* used */
	assert_memory_equal(blk + 64, "hello", 5);
	for (size_t i = 69; i < BS; i++)
		assert_int_equal(blk[i], 0);
	memcpy(want, blk, BS);
	fix_csum(want, seed);
	assert_memory_equal(want, blk, BS);

	/* A two-block transaction: seq 1 and 2, both naming txn 1. */
	{
		uint8_t *p = malloc(PPB + 1);

		fill(p, PPB + 1, 7);
		assert_int_equal(journal_commit(j, p, PPB + 1), 0);
		read_blk(b, LOG_START + 1, blk);
		assert_memory_equal(blk + 4, "\0\0\0\0", 4);	/* no COMMIT */
		assert_int_equal(blk[8], 1);
		assert_int_equal(blk[16], 1);
		assert_memory_equal(blk + 40, "\xc0\x0f\0\0", 4);	/* PPB */
		assert_memory_equal(blk + 64, p, PPB);
		read_blk(b, LOG_START + 2, blk);
		assert_memory_equal(blk + 4, "\x01\0\0\0", 4);
		assert_int_equal(blk[8], 2);
		assert_int_equal(blk[16], 1);
		assert_memory_equal(blk + 40, "\x01\0\0\0", 4);
		assert_int_equal(blk[64], p[PPB]);
		/* Chained to "hello"; the first transaction to nothing. */
		assert_int_equal(get_le(blk + 48, 8),
				 XXH3_64bits_withSeed("hello", 5, seed));
		read_blk(b, LOG_START, blk);
		assert_int_equal(get_le(blk + 48, 8), 0);
		free(p);
	}

	/* The checkpoint: header block, then the payload at the next. */
	assert_int_equal(journal_checkpoint(j, "abc", 3, 100), 0);
	assert_int_equal(sb.ckpt_start, 100);
	assert_int_equal(sb.ckpt_blocks, 2);
	assert_int_equal(sb.ckpt_seq, 3);
	assert_int_equal(journal_used_bytes(j), 0);
	assert_int_equal(super_read(b, &got, NULL, 0), 0);
	assert_int_equal(got.ckpt_start, 100);
	assert_int_equal(got.ckpt_blocks, 2);
	assert_int_equal(got.ckpt_seq, 3);
	assert_int_equal(got.generation, sb.generation);
	read_blk(b, 100, blk);
	assert_memory_equal(blk, "FCKP\0\0\0\0", 8);
	assert_memory_equal(blk + 8, "\x03\0\0\0\0\0\0\0", 8);	/* seq */
	assert_memory_equal(blk + 16, "\x03\0\0\0\0\0\0\0", 8);	/* len */
	h = XXH3_64bits_withSeed("abc", 3, seed);
	for (int i = 0; i < 8; i++)
		assert_int_equal(blk[24 + i], (uint8_t)(h >> (8 * i)));
	for (size_t i = 64; i < BS; i++)
		assert_int_equal(blk[i], 0);
	memcpy(want, blk, BS);
	fix_csum(want, seed);
	assert_memory_equal(want, blk, BS);
	read_blk(b, 101, blk);
	assert_memory_equal(blk, "abc\0\0", 5);

	journal_close(j);
	backing_close(b);
	free(blk);
	free(want);
	rm_img("fmt");
}

/* ---- Round trip ---------------------------------------------------------- */

/*
 * Hundreds of transactions of every interesting size through a 32-block
 * ring: a checkpoint whenever the log is full, a remount (replay, then go
 * on with the replayed journal) every few commits.
 */
static void test_round_trip(void **state)
{
	const size_t sizes[] = { 1, 2, 7, 100, PPB - 1, PPB, PPB + 1, 0,
				 2 * PPB, 3 * PPB + 7, 8 * PPB, 5 * PPB - 1,
				 4096, 8 * PPB - 1 };
	struct backing *b = open_img("rt", DEV_BLOCKS * BS);
	struct model *m = calloc(1, sizeof(*m));
	char msg[MSG_LEN];
	struct journal *j;
	struct super sb;
	struct rctx r;
	unsigned int ckpts = 0, wraps = 0, remounts = 0;
	uint64_t id, n, head, written = 0;
	int ret;

	(void)state;
	mk_vol(b, &sb, 32);
	assert_int_equal(journal_open(b, &sb, &j), 0);
	assert_int_equal(journal_max_txn(j), 8 * PPB);
	for (id = 0; id < 400; id++) {
		size_t len = sizes[id % ARRAY_SIZE(sizes)];

		n = len ? DIV_ROUND_UP(len, PPB) : 1;
		ret = commit(j, m, id, len);
		if (ret == -ENOSPC) {
			assert_true(journal_used_bytes(j) + n * BS >
				    journal_size_bytes(j));
			assert_int_equal(checkpoint(j, m, id % 3 ? 0 : 9000), 0);
			assert_int_equal(journal_used_bytes(j), 0);
			ckpts++;
			ret = commit(j, m, id, len);
		}
		assert_int_equal(ret, 0);
		head = head_of(j, &sb);
		if ((head - n) % 32 + n > 32)
			wraps++;
		written += n;
		if (id % 23 == 22) {
			journal_close(j);
			j = remount(b, &sb, m, &r, msg);
			if (r.next != m->nr)
				fail_msg("after %llu: replayed %zu of %zu: %s",
					 (unsigned long long)id, r.next, m->nr,
					 msg);
			assert_int_equal(r.ckpts, ckpts ? 1 : 0);
			assert_int_equal(head_of(j, &sb), head);
			remounts++;
		}
	}
	journal_close(j);
	assert_replays(b, m, msg);
	printf("# %zu transactions, %llu log blocks, %u checkpoints, %u "
	       "commits across the ring's end, %u remounts\n", m->nr,
	       (unsigned long long)written, ckpts, wraps, remounts);
	assert_true(written > 10 * 32);
	assert_true(wraps >= 3);

	backing_close(b);
	free(m);
	rm_img("rt");
}

/* 64 KiB blocks: 16 blocks per 1 MiB request, payload 65472 a block. */
static void test_large_blocks(void **state)
{
	const size_t bs = 65536, ppb = bs - HDR;
	const size_t sizes[] = { 1, ppb, ppb + 1, 2 * ppb, 0, 1000 };
	struct backing *b = open_img("big", 64 * bs);
	struct model *m = calloc(1, sizeof(*m));
	unsigned int ckpts = 0;
	struct journal *j;
	struct super sb;
	struct rctx r;
	char msg[MSG_LEN];
	size_t len, plen;
	uint64_t id;
	void *p;
	int ret;

	(void)state;
	assert_int_equal(super_init(&sb, bs, 64, NULL), 0);
	sb.log_start = 1;
	sb.log_blocks = 8;
	assert_int_equal(super_write(b, &sb), 0);
	assert_int_equal(journal_open(b, &sb, &j), 0);
	assert_int_equal(journal_max_txn(j), 2 * ppb);
	for (id = 0; id < 30; id++) {
		len = sizes[id % ARRAY_SIZE(sizes)];
		ret = commit(j, m, id, len);
		if (ret == -ENOSPC) {
			/* 5 blocks: header and 3 * 64 KiB + change. */
			p = ckpt_payload(m, 3 * bs, &plen);
			assert_int_equal(journal_checkpoint(j, p, plen,
					ckpts++ % 2 ? 16 : 40), 0);
			free(p);
			ret = commit(j, m, id, len);
		}
		assert_int_equal(ret, 0);
	}
	journal_close(j);
	assert_true(ckpts >= 2);
	journal_close(remount(b, &sb, m, &r, msg));
	assert_int_equal(r.next, m->nr);
	assert_int_equal(r.ckpts, 1);
	assert_int_equal(sb.ckpt_blocks, 5);
	backing_close(b);
	free(m);
	rm_img("big");
}

/* ---- Checkpoints --------------------------------------------------------- */

static void test_ckpt_then_txns(void **state)
{
	struct backing *b = open_img("ck", 4 * DEV_BLOCKS * BS);
	struct model *m = calloc(1, sizeof(*m));
	char msg[MSG_LEN];
	struct journal *j;
	struct super sb, sb2;
	struct rctx r;
	uint64_t id;
	size_t len;
	void *p;

	(void)state;
	assert_int_equal(super_init(&sb, BS, 4 * DEV_BLOCKS, NULL), 0);
	sb.log_start = LOG_START;
	sb.log_blocks = 32;
	assert_int_equal(super_write(b, &sb), 0);
	assert_int_equal(journal_open(b, &sb, &j), 0);

	/* No checkpoint yet: the ckpt callback is not called. */
	for (id = 0; id < 5; id++)
		assert_int_equal(commit(j, m, id, 300 * id + 1), 0);
	journal_close(remount(b, &sb2, m, &r, msg));
	assert_int_equal(r.ckpts, 0);
	assert_int_equal(r.next, 5);
	assert_string_equal(msg, "log: 5 transactions replayed; it ends at "
				 "sequence 5: wrong magic");

	/* A checkpoint over 3 MiB: several 1 MiB requests each way. */
	p = ckpt_payload(m, 3 << 20, &len);
	assert_int_equal(journal_checkpoint(j, p, len, 100), 0);
	free(p);
	assert_int_equal(sb.ckpt_blocks, 1 + DIV_ROUND_UP(len, BS));
	assert_int_equal(sb.ckpt_seq, 5);
	assert_int_equal(journal_used_bytes(j), 0);
	for (id = 5; id < 8; id++)
		assert_int_equal(commit(j, m, id, 2 * PPB + id), 0);
	journal_close(remount(b, &sb2, m, &r, msg));
	assert_int_equal(r.ckpts, 1);
	assert_int_equal(r.ckpt_count, 5);
	assert_int_equal(r.txns, 3);
	assert_int_equal(r.next, 8);
	assert_string_equal(msg, "log: 3 transactions replayed; it ends at "
				 "sequence 14: wrong magic");

	/* Refused placements write nothing. */
	p = ckpt_payload(m, 0, &len);
	assert_int_equal(journal_checkpoint(j, p, len, 1), -EINVAL);
	assert_int_equal(journal_checkpoint(j, p, len, LOG_START + 31),
			 -EINVAL);
	assert_int_equal(journal_checkpoint(j, p, len, 100 + sb.ckpt_blocks - 1),
			 -EINVAL);
	assert_int_equal(journal_checkpoint(j, p, len, 4 * DEV_BLOCKS - 1),
			 -EINVAL);
	assert_int_equal(journal_checkpoint(j, p, len, UINT64_MAX - 1),
			 -EINVAL);
	assert_int_equal(sb.ckpt_start, 100);

	/* A second checkpoint elsewhere, with nothing after it. */
	assert_int_equal(journal_checkpoint(j, p, len, 50), 0);
	free(p);
	assert_int_equal(sb.ckpt_start, 50);
	assert_int_equal(sb.ckpt_seq, 14);
	journal_close(remount(b, &sb2, m, &r, msg));
	assert_int_equal(r.ckpt_count, 8);
	assert_int_equal(r.txns, 0);

	/* An empty checkpoint payload is one block and still replayed. */
	assert_int_equal(journal_checkpoint(j, NULL, 0, 70), 0);
	assert_int_equal(sb.ckpt_blocks, 1);
	{
		struct journal *j2;

		assert_int_equal(super_read(b, &sb2, NULL, 0), 0);
		assert_int_equal(journal_open(b, &sb2, &j2), 0);
		rctx_init(&r, m, "empty checkpoint");
		assert_int_equal(journal_replay(j2, apply_empty_ckpt, apply_txn,
						&r, msg, MSG_LEN), 0);
		assert_int_equal(r.ckpts, 1);
		assert_int_equal(r.txns, 0);
		journal_close(j2);
	}
	journal_close(j);
	backing_close(b);
	free(m);
	rm_img("ck");
}

/* A checkpoint that fails a check is -EUCLEAN, with a message. */
static void test_bad_ckpt(void **state)
{
	struct backing *b = open_img("bad", DEV_BLOCKS * BS);
	struct model *m = calloc(1, sizeof(*m));
	uint8_t *orig = abuf(BS), *blk = abuf(BS);
	char msg[MSG_LEN];
	struct journal *j;
	struct super sb, sb2;
	struct rctx r;
	uint64_t seed, start;
	int ret;

	(void)state;
	mk_vol(b, &sb, 16);
	seed = seed_of(&sb);
	assert_int_equal(journal_open(b, &sb, &j), 0);
	assert_int_equal(commit(j, m, 1, 10), 0);
	area_next = 0;
	/* 32 + 8192 bytes: 3 payload blocks, the last holding 32. */
	assert_int_equal(checkpoint(j, m, 2 * BS), 0);
	assert_int_equal(commit(j, m, 2, 10), 0);
	journal_close(j);
	start = sb.ckpt_start;
	assert_int_equal(sb.ckpt_blocks, 4);
	read_blk(b, start, orig);

#define EXPECT_BAD(what) do {						\
		assert_int_equal(super_read(b, &sb2, NULL, 0), 0);	\
		assert_int_equal(journal_open(b, &sb2, &j), 0);	\
		rctx_init(&r, m, "bad checkpoint");			\
		ret = journal_replay(j, apply_ckpt, apply_txn, &r, msg,	\
				     MSG_LEN);				\
		journal_close(j);					\
		assert_int_equal(ret, -EUCLEAN);			\
		assert_string_equal(msg, "checkpoint: " what);		\
		assert_int_equal(r.ckpts + r.txns, 0);			\
	} while (0)

	/* A flipped payload byte, in the payload's last block. */
	flip(b, start + 3, 10);
	EXPECT_BAD("bad payload checksum");
	flip(b, start + 3, 10);
	assert_replays(b, m, msg);

	/* A flipped header byte, in the zeroes after the fields too. */
	flip(b, start, 20);
	EXPECT_BAD("bad checksum");
	flip(b, start, 20);
	flip(b, start, 3000);
	EXPECT_BAD("bad checksum");
	flip(b, start, 3000);

	/* Zeroed header. */
	memset(blk, 0, BS);
	write_blk(b, start, blk);
	EXPECT_BAD("wrong magic");

	/* Valid checksums, wrong contents. */
	memcpy(blk, orig, BS);
	blk[8] ^= 1;				/* seq */
	fix_csum(blk, seed);
	write_blk(b, start, blk);
	EXPECT_BAD("wrong sequence number");

	memcpy(blk, orig, BS);
	blk[16 + 7] = 0x80;			/* len: 2^63 + ... */
	fix_csum(blk, seed);
	write_blk(b, start, blk);
	EXPECT_BAD("length does not match its blocks");

	memcpy(blk, orig, BS);			/* len a block more */
	put_le(blk + 16, get_le(orig + 16, 8) + BS, 8);
	fix_csum(blk, seed);
	write_blk(b, start, blk);
	EXPECT_BAD("length does not match its blocks");

	memcpy(blk, orig, BS);
	blk[40] = 1;				/* reserved */
	fix_csum(blk, seed);
	write_blk(b, start, blk);
	EXPECT_BAD("nonzero reserved bytes");

	/* The superblock claiming a block more than was written. */
	write_blk(b, start, orig);
	assert_replays(b, m, msg);
	assert_int_equal(super_read(b, &sb2, NULL, 0), 0);
	sb2.ckpt_blocks++;
	assert_int_equal(super_write(b, &sb2), 0);
	EXPECT_BAD("length does not match its blocks");
	/* ... or one fewer: the payload is cut short. */
	sb2.ckpt_blocks -= 2;
	assert_int_equal(super_write(b, &sb2), 0);
	EXPECT_BAD("length does not match its blocks");
	/* The image of an older mkfs: same place, other UUID. */
	sb2.ckpt_blocks++;
	sb2.uuid[3] ^= 1;
	assert_int_equal(super_write(b, &sb2), 0);
	EXPECT_BAD("bad checksum");
#undef EXPECT_BAD

	backing_close(b);
	free(orig);
	free(blk);
	free(m);
	rm_img("bad");
}

/* ---- Corruption ---------------------------------------------------------- */

/*
 * Ten transactions, then damage to one of them: replay stops before it,
 * and the next commit goes where it was.
 */
static void test_corrupt_block(void **state)
{
	const size_t sizes[] = { 10, 2 * PPB + 5, 1, PPB, 3 * PPB, 50,
				 PPB + 1, 2, 3, 4 };
	uint64_t first[ARRAY_SIZE(sizes) + 1];
	struct model *m = calloc(1, sizeof(*m)), *want = calloc(1, sizeof(*m));
	char msg[MSG_LEN], exp[MSG_LEN];
	struct journal *j;
	struct super sb, sb2;
	struct rctx r;
	unsigned int c;

	(void)state;
	/* Which damage, to which transaction, at which byte of which block. */
	static const struct {
		const char	*what;
		size_t		txn, blk, off;
		bool		torn;
		const char	*why;
	} cases[] = {
		{ "payload byte", 4, 1, 2000, false, "bad checksum" },
		{ "header byte", 1, 0, 9, false, "bad checksum" },
		{ "zero tail", 0, 0, 4000, false, "bad checksum" },
		{ "commit block", 1, 2, 64, false, "bad checksum" },
		{ "one-block txn", 2, 0, 64, false, "bad checksum" },
		{ "one-block txn's header", 7, 0, 45, false, "bad checksum" },
		{ "torn first block", 6, 0, 0, true, "bad checksum" },
		{ "torn last block", 4, 2, 0, true, "bad checksum" },
	};

	for (c = 0; c < ARRAY_SIZE(cases); c++) {
		struct backing *b = open_img("corrupt", DEV_BLOCKS * BS);
		size_t t = cases[c].txn, i;
		uint64_t at;

		printf("# damage: %s\n", cases[c].what);
		memset(m, 0, sizeof(*m));
		mk_vol(b, &sb, 32);
		assert_int_equal(journal_open(b, &sb, &j), 0);
		for (i = 0; i < ARRAY_SIZE(sizes); i++) {
			first[i] = head_of(j, &sb);
			assert_int_equal(commit(j, m, i, sizes[i]), 0);
		}
		first[i] = head_of(j, &sb);
		journal_close(j);
		assert_replays(b, m, msg);

		at = LOG_START + first[t] + cases[c].blk;
		assert_true(first[t] + cases[c].blk < first[t + 1]);
		if (cases[c].torn) {
			/* The first sector new, the other seven stale. */
			uint8_t *blk = abuf(BS);

			read_blk(b, at, blk);
			memset(blk + 512, 0, BS - 512);
			write_blk(b, at, blk);
			free(blk);
		} else {
			flip(b, at, cases[c].off);
		}

		*want = *m;
		want->nr = t;
		j = remount(b, &sb2, want, &r, msg);
		assert_int_equal(r.next, t);
		snprintf(exp, sizeof(exp), "log: %zu transactions replayed; it "
			 "ends at sequence %llu: %s", t,
			 (unsigned long long)(first[t] + cases[c].blk),
			 cases[c].why);
		if (cases[c].blk)
			snprintf(exp + strlen(exp), sizeof(exp) - strlen(exp),
				 "; the unfinished transaction from sequence "
				 "%llu is discarded",
				 (unsigned long long)first[t]);
		assert_string_equal(msg, exp);
		assert_int_equal(head_of(j, &sb2), first[t]);

		/*
		 * The next commit overwrites from there; the rest is gone,
		 * also when it takes the same blocks as the damaged one and
		 * the next old transaction starts right after it.
		 */
		assert_int_equal(commit(j, want, 100 + c, 7), 0);
		journal_close(j);
		assert_replays(b, want, msg);
		snprintf(exp, sizeof(exp), "log: %zu transactions replayed; it "
			 "ends at sequence %llu: %s", t + 1,
			 (unsigned long long)first[t] + 1,
			 cases[c].blk == 1 ? cases[c].why :
			 first[t + 1] == first[t] + 1 ?
			 "not chained to the transaction before" :
			 "block in the middle of a transaction");
		assert_string_equal(msg, exp);
		backing_close(b);
	}
	rm_img("corrupt");
	free(m);
	free(want);
}

/* A new mkfs over an old volume: none of the old log is replayed. */
static void test_old_volume(void **state)
{
	struct backing *b = open_img("old", DEV_BLOCKS * BS);
	struct model *m = calloc(1, sizeof(*m));
	char msg[MSG_LEN];
	struct journal *j;
	struct super sb;

	(void)state;
	mk_vol(b, &sb, 32);
	assert_int_equal(journal_open(b, &sb, &j), 0);
	for (uint64_t id = 0; id < 6; id++)
		assert_int_equal(commit(j, m, id, 1 + id * 1000), 0);
	journal_close(j);
	assert_replays(b, m, msg);

	/* Same geometry, new UUID. */
	memset(m, 0, sizeof(*m));
	mk_vol(b, &sb, 32);
	assert_replays(b, m, msg);
	assert_string_equal(msg, "log: 0 transactions replayed; it ends at "
				 "sequence 0: bad checksum");
	assert_int_equal(journal_open(b, &sb, &j), 0);
	assert_int_equal(commit(j, m, 50, 3), 0);
	journal_close(j);
	/* Block 1 still holds the old volume's seq 1: not this volume's. */
	assert_replays(b, m, msg);
	assert_string_equal(msg, "log: 1 transactions replayed; it ends at "
				 "sequence 1: bad checksum");
	backing_close(b);
	free(m);
	rm_img("old");
}

/* ---- Space --------------------------------------------------------------- */

static void test_enospc_e2big(void **state)
{
	struct backing *b = open_img("space", DEV_BLOCKS * BS);
	struct model *m = calloc(1, sizeof(*m));
	char msg[MSG_LEN];
	struct journal *j;
	struct super sb;
	uint64_t id = 0;

	(void)state;
	mk_vol(b, &sb, 16);
	assert_int_equal(journal_open(b, &sb, &j), 0);
	assert_int_equal(journal_max_txn(j), 4 * PPB);
	assert_int_equal(commit(j, m, id++, 4 * PPB + 1), -E2BIG);
	assert_int_equal(journal_commit(j, "", SIZE_MAX), -E2BIG);
	assert_int_equal(commit(j, m, id++, 4 * PPB), 0);	/* 4 blocks */
	while (journal_used_bytes(j) < 15 * BS)
		assert_int_equal(commit(j, m, id++, PPB), 0);
	/* One block left: two do not fit, one does, then nothing. */
	assert_int_equal(commit(j, m, id++, PPB + 1), -ENOSPC);
	assert_int_equal(commit(j, m, id++, 4 * PPB + 1), -E2BIG);
	assert_int_equal(commit(j, m, id++, 0), 0);
	assert_int_equal(journal_used_bytes(j), journal_size_bytes(j));
	assert_int_equal(commit(j, m, id++, 1), -ENOSPC);
	assert_int_equal(commit(j, m, id++, 0), -ENOSPC);
	journal_close(j);
	/* A full log replays whole, and the next commit still has no room. */
	j = NULL;
	{
		struct rctx r;

		j = remount(b, &sb, m, &r, msg);
		assert_int_equal(r.next, m->nr);
		assert_string_equal(msg, "log: 13 transactions replayed; it "
			"ends at sequence 16: the whole ring was read");
	}
	assert_int_equal(commit(j, m, id++, 1), -ENOSPC);
	area_next = 0;
	assert_int_equal(checkpoint(j, m, 0), 0);
	assert_int_equal(commit(j, m, id++, 4 * PPB), 0);
	assert_int_equal(journal_used_bytes(j), 4 * BS);
	journal_close(j);
	assert_replays(b, m, msg);

	/* The smallest log: one block, a quarter rounds up to it. */
	mk_vol(b, &sb, 1);
	memset(m, 0, sizeof(*m));
	assert_int_equal(journal_open(b, &sb, &j), 0);
	assert_int_equal(journal_max_txn(j), PPB);
	assert_int_equal(commit(j, m, 1, PPB), 0);
	assert_int_equal(commit(j, m, 2, 1), -ENOSPC);
	assert_int_equal(checkpoint(j, m, 0), 0);
	assert_int_equal(commit(j, m, 3, 1), 0);
	journal_close(j);
	assert_replays(b, m, msg);

	backing_close(b);
	free(m);
	rm_img("space");
}

/* ---- Crash points -------------------------------------------------------- */

/*
 * A scripted run through a crash simulator: commits of varied sizes in a
 * 16-block ring, a checkpoint whenever it is full. For every cut, mode and
 * a few seeds the image must replay exactly a prefix of the transactions
 * issued: every one whose commit returned before the cut, at most the one
 * in flight besides, and, dropping what was not flushed, nothing more.
 * Then a commit on the replayed image lands after that prefix.
 */
static void test_crash_points(void **state)
{
	static const enum crashsim_mode modes[] = { CRASHSIM_DROP,
		CRASHSIM_RANDOM, CRASHSIM_TORN };
	static const unsigned int seeds[] = { 1, 2, 5 };
	const size_t sizes[] = { 1, 3 * PPB + 9, PPB, 700, 2 * PPB, 0,
				 PPB + 1, 4 * PPB };
	struct model *m = calloc(1, sizeof(*m)), *want = calloc(1, sizeof(*m));
	size_t start_op[MAX_TXNS], done_op[MAX_TXNS], points, n, k;
	char path[4096], out_path[4096], msg[MSG_LEN], where[128];
	struct backing *b, *sim, *img;
	unsigned int mi, si, ckpts = 0, in_flight = 0, partial = 0;
	struct journal *j;
	struct super sb;
	struct rctx r;
	int fd, out, ret;

	(void)state;
	b = open_img("crash", DEV_BLOCKS * BS);
	mk_vol(b, &sb, 16);
	assert_int_equal(backing_fsync(b), 0);
	testimg_path(path, sizeof(path), "crash");
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(crashsim_create(b, fd, &sim), 0);
	close(fd);

	assert_int_equal(journal_open(sim, &sb, &j), 0);
	area_next = 0;
	for (k = 0; k < 40; k++) {
		size_t len = sizes[k % ARRAY_SIZE(sizes)];

		start_op[k] = crashsim_points(sim);
		ret = commit(j, m, k, len);
		if (ret == -ENOSPC) {
			assert_int_equal(checkpoint(j, m, k % 2 ? 5000 : 0), 0);
			ckpts++;
			start_op[k] = crashsim_points(sim);
			ret = commit(j, m, k, len);
		}
		assert_int_equal(ret, 0);
		done_op[k] = crashsim_points(sim);
	}
	journal_close(j);
	points = crashsim_points(sim);
	assert_true(ckpts >= 3);

	testimg_path(out_path, sizeof(out_path), "crash-out");
	for (mi = 0; mi < ARRAY_SIZE(modes); mi++) {
		for (n = 0; n <= points; n++) {
			size_t durable = 0, started = 0;

			for (k = 0; k < m->nr; k++) {
				durable += done_op[k] <= n;
				started += start_op[k] < n;
			}
			for (si = 0; si < ARRAY_SIZE(seeds); si++) {
				if (modes[mi] == CRASHSIM_DROP && si)
					break;
				snprintf(where, sizeof(where),
					 "mode %u cut %zu seed %u", mi, n,
					 seeds[si]);
				out = open(out_path, O_CREAT | O_TRUNC | O_RDWR,
					   0644);
				assert_true(out >= 0);
				assert_int_equal(crashsim_make_image_at(sim, n,
						seeds[si], modes[mi], out), 0);
				close(out);
				assert_int_equal(backing_open(out_path,
						testimg_open_flags, &img), 0);

				rctx_init(&r, m, where);
				assert_int_equal(super_read(img, &sb, NULL, 0), 0);
				assert_int_equal(journal_open(img, &sb, &j), 0);
				ret = journal_replay(j, apply_ckpt, apply_txn,
						     &r, msg, MSG_LEN);
				if (ret)
					fail_msg("%s: replay: %d %s", where,
						 ret, msg);
				if (r.next < durable || r.next > started ||
				    (modes[mi] == CRASHSIM_DROP &&
				     r.next != durable))
					fail_msg("%s: replayed %zu, durable "
						 "%zu, started %zu: %s", where,
						 r.next, durable, started, msg);
				in_flight += r.next > durable;
				partial += !!strstr(msg, "unfinished");

				/*
				 * Mount goes on: a commit lands after it
				 * (one seed per mode: each costs a flush).
				 */
				if (si) {
					journal_close(j);
					backing_close(img);
					continue;
				}
				*want = *m;
				want->nr = r.next;
				ret = commit(j, want, 777000 + n, 2 * PPB + 1);
				if (ret == -ENOSPC)
					ret = commit(j, want, 777000 + n, 1);
				if (ret != -ENOSPC)
					assert_int_equal(ret, 0);
				journal_close(j);
				assert_replays(img, want, msg);
				backing_close(img);
			}
		}
	}
	printf("# %zu crash points, %u images replayed the commit in flight, "
	       "%u ended in an unfinished transaction\n", points, in_flight,
	       partial);
	assert_true(in_flight > 0);
	assert_true(partial > 0);

	backing_close(sim);
	unlink(out_path);
	rm_img("crash");
	free(m);
	free(want);
}

/* ---- Faults -------------------------------------------------------------- */

static void test_fault_commit(void **state)
{
	struct backing *b = open_img("fc", DEV_BLOCKS * BS), *f;
	struct model *m = calloc(1, sizeof(*m));
	char msg[MSG_LEN];
	struct journal *j;
	struct super sb;
	uint64_t id = 0;

	(void)state;
	mk_vol(b, &sb, 16);
	assert_int_equal(faulty_create(b, &f), 0);
	assert_int_equal(journal_open(f, &sb, &j), 0);
	assert_int_equal(commit(j, m, id++, 10), 0);
	assert_int_equal(commit(j, m, id++, PPB + 3), 0);

	/* A failed write: nothing landed, the next commit goes there. */
	assert_int_equal(faulty_fail_nth(f, FAULTY_WRITE, 1, -EIO), 0);
	assert_int_equal(commit(j, m, 1000, 3 * PPB), -EIO);
	assert_int_equal(journal_used_bytes(j), 3 * BS);
	assert_int_equal(commit(j, m, id++, 5), 0);
	assert_replays(f, m, msg);

	/*
	 * A failed flush: the three blocks did land. A one-block commit
	 * over the first; the other two must not be stitched onto it.
	 */
	assert_int_equal(faulty_fail_nth(f, FAULTY_FLUSH, 1, -EIO), 0);
	assert_int_equal(commit(j, m, 1001, 3 * PPB), -EIO);
	assert_int_equal(commit(j, m, id++, 1), 0);
	assert_replays(f, m, msg);
	assert_string_equal(msg, "log: 4 transactions replayed; it ends at "
		"sequence 5: block in the middle of a transaction");

	/* A failed flush, then a checkpoint: not replayed after it. */
	assert_int_equal(faulty_fail_nth(f, FAULTY_FLUSH, 1, -ENOSPC), 0);
	assert_int_equal(commit(j, m, 1002, 2 * PPB), -ENOSPC);
	area_next = 0;
	assert_int_equal(checkpoint(j, m, 0), 0);
	assert_int_equal(sb.ckpt_seq, 7);	/* past the failed blocks */
	assert_replays(f, m, msg);
	assert_int_equal(commit(j, m, id++, 2), 0);
	assert_replays(f, m, msg);

	/* The second request of a commit across the ring's end fails. */
	while (head_of(j, &sb) % 16 != 14) {
		int ret = commit(j, m, id, 1);

		if (ret == -ENOSPC) {
			assert_int_equal(checkpoint(j, m, 0), 0);
			ret = commit(j, m, id, 1);
		}
		assert_int_equal(ret, 0);
		id++;
	}
	assert_int_equal(checkpoint(j, m, 0), 0);
	assert_int_equal(faulty_fail_nth(f, FAULTY_WRITE, 2, -EIO), 0);
	assert_int_equal(commit(j, m, 1003, 3 * PPB), -EIO);
	assert_int_equal(commit(j, m, id++, 100), 0);
	assert_int_equal(commit(j, m, id++, 3 * PPB), 0);	/* wraps */
	assert_replays(f, m, msg);

	journal_close(j);
	backing_close(f);
	free(m);
	rm_img("fc");
}

static void test_fault_ckpt(void **state)
{
	struct backing *b = open_img("fk", DEV_BLOCKS * BS), *f;
	struct model *m = calloc(1, sizeof(*m));
	char msg[MSG_LEN];
	struct journal *j;
	struct super sb, sb2;
	uint64_t id = 0, gen;
	struct rctx r;

	(void)state;
	mk_vol(b, &sb, 16);
	assert_int_equal(faulty_create(b, &f), 0);
	assert_int_equal(journal_open(f, &sb, &j), 0);
	for (; id < 3; id++)
		assert_int_equal(commit(j, m, id, 100 * id + 1), 0);
	area_next = 0;

	/* The checkpoint's write or flush fails: the log still holds. */
	gen = sb.generation;
	assert_int_equal(faulty_fail_nth(f, FAULTY_WRITE, 1, -EIO), 0);
	assert_int_equal(checkpoint(j, m, 0), -EIO);
	assert_int_equal(faulty_fail_nth(f, FAULTY_FLUSH, 1, -EIO), 0);
	assert_int_equal(checkpoint(j, m, 0), -EIO);
	assert_int_equal(sb.ckpt_blocks, 0);
	assert_int_equal(sb.generation, gen);
	assert_int_equal(commit(j, m, id++, 5), 0);
	assert_replays(f, m, msg);

	/*
	 * The superblock's flush fails (its write landed): a crash may leave
	 * either superblock; here the new one. Commits go on at the head,
	 * which is right under both.
	 */
	assert_int_equal(faulty_fail_nth(f, FAULTY_FLUSH, 2, -EIO), 0);
	assert_int_equal(checkpoint(j, m, 0), -EIO);
	assert_int_equal(sb.ckpt_blocks, 0);
	assert_int_equal(sb.generation, gen);
	assert_int_equal(commit(j, m, id++, PPB * 2), 0);
	journal_close(remount(f, &sb2, m, &r, msg));
	assert_int_equal(r.ckpts, 1);
	assert_int_equal(r.ckpt_count, 4);
	assert_int_equal(r.next, m->nr);

	/*
	 * The same after a failed commit left blocks past the head: no log
	 * position suits both superblocks, so commits wait for a checkpoint.
	 */
	assert_int_equal(faulty_fail_nth(f, FAULTY_FLUSH, 1, -EIO), 0);
	assert_int_equal(commit(j, m, 1000, 2 * PPB), -EIO);
	assert_int_equal(faulty_fail_nth(f, FAULTY_FLUSH, 2, -EIO), 0);
	assert_int_equal(checkpoint(j, m, 0), -EIO);
	assert_int_equal(commit(j, m, id, 1), -EIO);
	assert_int_equal(checkpoint(j, m, 7), 0);
	assert_int_equal(commit(j, m, id++, 1), 0);
	journal_close(remount(f, &sb2, m, &r, msg));
	assert_int_equal(r.ckpt_count, 5);
	assert_int_equal(r.next, m->nr);
	assert_int_equal(sb2.ckpt_seq, sb.ckpt_seq);

	/* A failed state write leaves the superblock as it was. */
	assert_int_equal(faulty_fail_nth(f, FAULTY_WRITE, 1, -EIO), 0);
	gen = sb.generation;
	assert_int_equal(journal_set_state(j, FOLIOFS_STATE_DIRTY), -EIO);
	assert_int_equal(sb.state, FOLIOFS_STATE_CLEAN);
	assert_int_equal(sb.generation, gen);

	journal_close(j);
	backing_close(f);
	free(m);
	rm_img("fk");
}

/* Read errors in the checkpoint and in the log come back from replay. */
static void test_fault_read(void **state)
{
	struct backing *b = open_img("fr", DEV_BLOCKS * BS), *f;
	struct model *m = calloc(1, sizeof(*m));
	char msg[MSG_LEN];
	struct journal *j;
	struct super sb, sb2;
	struct rctx r;
	unsigned int nth;

	(void)state;
	mk_vol(b, &sb, 16);
	assert_int_equal(faulty_create(b, &f), 0);
	assert_int_equal(journal_open(f, &sb, &j), 0);
	assert_int_equal(commit(j, m, 1, 10), 0);
	area_next = 0;
	assert_int_equal(checkpoint(j, m, BS), 0);
	assert_int_equal(commit(j, m, 2, 10), 0);
	journal_close(j);

	/* Reads: checkpoint header, checkpoint payload, the log. */
	for (nth = 1; nth <= 3; nth++) {
		assert_int_equal(super_read(f, &sb2, NULL, 0), 0);
		assert_int_equal(journal_open(f, &sb2, &j), 0);
		rctx_init(&r, m, "read error");
		assert_int_equal(faulty_fail_nth(f, FAULTY_READ, nth, -EIO), 0);
		assert_int_equal(journal_replay(j, apply_ckpt, apply_txn, &r,
						msg, MSG_LEN), -EIO);
		assert_int_equal(r.ckpts, nth == 3);
		assert_int_equal(r.txns, 0);
		journal_close(j);
	}
	faulty_clear(f);
	assert_replays(f, m, msg);
	backing_close(f);
	free(m);
	rm_img("fr");
}

/* ---- Crafted blocks ------------------------------------------------------ */

/*
 * Blocks with valid checksums but fields no writer produces: the log ends
 * cleanly at them, with the transactions before them replayed.
 */
static void test_crafted_blocks(void **state)
{
	static const struct {
		const char	*what;
		int		field, bytes;	/* offset and width */
		uint64_t	val;
		const char	*why;
	} cases[] = {
		{ "used > payload room", 40, 4, PPB + 1, "wrong payload length" },
		{ "used huge", 40, 4, 0xffffffff, "wrong payload length" },
		{ "used short", 40, 4, 9, "wrong payload length" },
		{ "txn_len huge", 24, 8, UINT64_MAX, "transaction too large" },
		{ "txn_len past max", 24, 8, 4 * PPB + 1,
		  "transaction too large" },
		{ "txn_len longer", 24, 8, 11, "wrong payload length" },
		{ "txn_len shorter (0)", 24, 8, 0, "wrong payload length" },
		{ "txn_seq earlier", 16, 8, 2,
		  "block in the middle of a transaction" },
		{ "txn_seq later", 16, 8, 4,
		  "block in the middle of a transaction" },
		{ "seq", 8, 8, 3 + 16, "wrong sequence number" },
		{ "unknown flag", 4, 4, FOLIOFS_LOG_COMMIT | 2,
		  "unknown flags or nonzero padding" },
		{ "no commit", 4, 4, 0, "commit flag on the wrong block" },
		{ "pad", 44, 4, 1, "unknown flags or nonzero padding" },
		{ "prev_csum", 48, 8, 1 << 20,
		  "not chained to the transaction before" },
		{ "txn_csum", 32, 8, 12345, "bad transaction checksum" },
		{ "magic", 0, 4, 0x474f4c47, "wrong magic" },
	};
	struct backing *b = open_img("craft", DEV_BLOCKS * BS);
	struct model *m = calloc(1, sizeof(*m));
	uint8_t *orig = abuf(BS), *blk = abuf(BS), *blk2 = abuf(BS);
	char msg[MSG_LEN], exp[MSG_LEN];
	struct journal *j;
	struct super sb;
	uint64_t seed, x = 88172645463325252ULL;
	unsigned int c, i, survived = 0;

	(void)state;
	mk_vol(b, &sb, 16);
	seed = seed_of(&sb);
	assert_int_equal(journal_open(b, &sb, &j), 0);
	for (uint64_t id = 0; id < 3; id++)
		assert_int_equal(commit(j, m, id, 10), 0);
	assert_int_equal(commit(j, NULL, 3, 10), 0);	/* seq 3: crafted */
	journal_close(j);
	read_blk(b, LOG_START + 3, orig);

	for (c = 0; c < ARRAY_SIZE(cases); c++) {
		printf("# crafted: %s\n", cases[c].what);
		memcpy(blk, orig, BS);
		put_le(blk + cases[c].field, cases[c].val, cases[c].bytes);
		fix_csum(blk, seed);
		write_blk(b, LOG_START + 3, blk);
		assert_replays(b, m, msg);
		snprintf(exp, sizeof(exp), "log: 3 transactions replayed; it "
			 "ends at sequence 3: %s%s", cases[c].why,
			 !strcmp(cases[c].why, "bad transaction checksum") ?
			 "; the unfinished transaction from sequence 3 is "
			 "discarded" : "");
		assert_string_equal(msg, exp);
	}

	/*
	 * A first block claiming a long transaction, followed by random
	 * blocks with valid checksums: lengths, sequence numbers and flags
	 * drawn near the edges. Nothing past seq 3 may be replayed.
	 */
	for (i = 0; i < 3000; i++) {
		static const uint64_t edges[] = { 0, 1, 2, 3, 4, 5, PPB - 1,
			PPB, PPB + 1, 2 * PPB, 4 * PPB, 4 * PPB + 1,
			UINT32_MAX, UINT64_MAX, 1ULL << 63 };
		unsigned int k;

		for (k = 0; k < 3; k++) {
			uint8_t *p = k ? blk2 : blk;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memset(p, 0, BS);
			fill(p + HDR, PPB, x);
			put_le(p, FOLIOFS_LOG_MAGIC, 4);
			put_le(p + 4, x & 3, 4);
			put_le(p + 8, (x >> 8) & 1 ? 3 + k : edges[(x >> 9) % 15], 8);
			put_le(p + 16, (x >> 13) & 1 ? 3 : edges[(x >> 14) % 15], 8);
			put_le(p + 24, edges[(x >> 18) % 15], 8);
			put_le(p + 32, x >> 3, 8);
			put_le(p + 40, edges[(x >> 23) % 15], 4);
			/* Chained right, mostly: the length checks come next. */
			memcpy(p + 48, orig + 48, 8);
			if (!((x >> 27) & 7))
				put_le(p + 48, x, 8);
			fix_csum(p, seed);
			write_blk(b, LOG_START + 3 + k, p);
		}
		assert_replays(b, m, msg);
		survived += !strstr(msg, "sequence 3:");
	}
	printf("# random crafted blocks: %u got past the first\n", survived);

	backing_close(b);
	free(orig);
	free(blk);
	free(blk2);
	free(m);
	rm_img("craft");
}

/* ---- Callbacks, state, arguments ----------------------------------------- */

static void test_callbacks(void **state)
{
	struct backing *b = open_img("cb", DEV_BLOCKS * BS);
	struct model *m = calloc(1, sizeof(*m));
	char msg[MSG_LEN];
	struct journal *j;
	struct super sb, sb2;
	struct rctx r;

	(void)state;
	mk_vol(b, &sb, 16);
	assert_int_equal(journal_open(b, &sb, &j), 0);
	assert_int_equal(commit(j, m, 0, 10), 0);
	area_next = 0;
	assert_int_equal(checkpoint(j, m, 0), 0);
	for (uint64_t id = 1; id < 4; id++)
		assert_int_equal(commit(j, m, id, 10), 0);
	journal_close(j);

	/* A transaction callback's error stops the replay there. */
	assert_int_equal(super_read(b, &sb2, NULL, 0), 0);
	assert_int_equal(journal_open(b, &sb2, &j), 0);
	rctx_init(&r, m, "txn error");
	r.fail_at = 1;
	assert_int_equal(journal_replay(j, apply_ckpt, apply_txn, &r, msg,
					MSG_LEN), -EBADMSG);
	assert_int_equal(r.txns, 1);

	/* And a checkpoint callback's before any transaction. */
	rctx_init(&r, m, "ckpt error");
	r.fail_ckpt = true;
	assert_int_equal(journal_replay(j, apply_ckpt, apply_txn, &r, msg,
					MSG_LEN), -EBADMSG);
	assert_int_equal(r.txns, 0);

	/* No callbacks: a check only. A short message buffer is cut. */
	memset(msg, '#', sizeof(msg));
	assert_int_equal(journal_replay(j, NULL, NULL, NULL, msg, 10), 0);
	assert_string_equal(msg, "log: 3 tr");
	assert_int_equal(msg[10], '#');
	assert_int_equal(journal_replay(j, NULL, NULL, NULL, NULL, 0), 0);
	journal_close(j);

	/* The superblock state. */
	assert_int_equal(journal_open(b, &sb, &j), 0);
	sb.mount_ns = 0;
	assert_int_equal(journal_set_state(j, FOLIOFS_STATE_DIRTY), 0);
	assert_int_equal(super_read(b, &sb2, NULL, 0), 0);
	assert_int_equal(sb2.state, FOLIOFS_STATE_DIRTY);
	assert_true(sb2.mount_ns > sb2.ctime_ns - 1);
	assert_int_equal(sb2.mount_ns, sb.mount_ns);
	assert_int_equal(sb2.generation, sb.generation);
	assert_int_equal(journal_set_state(j, FOLIOFS_STATE_CLEAN), 0);
	assert_int_equal(super_read(b, &sb2, NULL, 0), 0);
	assert_int_equal(sb2.state, FOLIOFS_STATE_CLEAN);
	assert_int_equal(sb2.mount_ns, sb.mount_ns);
	assert_int_equal(journal_set_state(j, 7), -EINVAL);
	assert_int_equal(sb.state, FOLIOFS_STATE_CLEAN);
	journal_close(j);
	journal_close(NULL);

	/* Geometry journal_open() refuses. */
	sb2 = sb;
	sb2.log_blocks = 0;
	assert_int_equal(journal_open(b, &sb2, &j), -EINVAL);
	sb2 = sb;
	sb2.block_size = 2048;
	assert_int_equal(journal_open(b, &sb2, &j), -EINVAL);
	sb2 = sb;
	sb2.ckpt_seq = UINT64_MAX - 3;
	assert_int_equal(journal_open(b, &sb2, &j), -EINVAL);

	backing_close(b);
	free(m);
	rm_img("cb");
}

/* ---- Setup --------------------------------------------------------------- */

static int setup(void **state)
{
	(void)state;
	return testimg_probe("test_journal");
}

static int teardown(void **state)
{
	(void)state;
	return testimg_cleanup();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_large_blocks),
		cmocka_unit_test(test_ckpt_then_txns),
		cmocka_unit_test(test_bad_ckpt),
		cmocka_unit_test(test_corrupt_block),
		cmocka_unit_test(test_old_volume),
		cmocka_unit_test(test_enospc_e2big),
		cmocka_unit_test(test_crash_points),
		cmocka_unit_test(test_fault_commit),
		cmocka_unit_test(test_fault_ckpt),
		cmocka_unit_test(test_fault_read),
		cmocka_unit_test(test_crafted_blocks),
		cmocka_unit_test(test_callbacks),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
