// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * journal.c - the metadata log ring and checkpoints: lay transactions out
 * in log blocks and write them, read the log back and replay it, write and
 * read a checkpoint. See journal.h for the contract and ondisk.h for the
 * layout.
 *
 * Two sequence numbers matter besides the superblock's ckpt_seq:
 *  - head: where the next commit goes, just past the last transaction
 *    known to be durable;
 *  - dirty_end: past the last block any commit since the last replay or
 *    checkpoint may have put on the medium. It runs ahead of head after a
 *    failed commit, whose blocks may have landed anyway. A checkpoint
 *    starts the log at dirty_end, not head, so that such blocks are never
 *    taken for a transaction after it.
 * And last_csum, the payload checksum of the transaction before head, which
 * the next commit's blocks carry as prev_csum (the chain, ondisk.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "compiler.h"
#include "journal.h"
#include "ondisk.h"

/* Bytes in one read or write request: big enough to stream. */
#define JOURNAL_REQ_BYTES	(1U << 20)
/* Log bytes replay reads in one batch. */
#define JOURNAL_READ_BYTES	(4U << 20)
/*
 * Highest ckpt_seq journal_open() takes. Far beyond what a volume writes
 * (2^62 blocks), and low enough that seq + log_blocks never overflows.
 */
#define JOURNAL_SEQ_MAX		(1ULL << 62)

/*
 * Every field is protected by the caller's serialisation (fs.c's commit
 * mutex): nothing here is shared between concurrent calls.
 */
struct journal {
	struct backing	*b;
	struct super	*sb;		/* the caller's */
	uint64_t	seed;		/* checksum seed, from the UUID */
	uint32_t	bs;		/* fs block size, bytes */
	uint32_t	ppb;		/* payload bytes per log block */
	uint32_t	req_blocks;	/* fs blocks per request, at most */
	uint64_t	head;		/* next sequence number to write */
	uint64_t	dirty_end;	/* see the top of the file */
	uint64_t	last_csum;	/* txn_csum of the txn before head */
	/*
	 * A checkpoint's superblock write failed while dirty_end != head:
	 * either superblock may be on the medium, and no log position suits
	 * both, so commits fail until a checkpoint succeeds.
	 */
	bool		stuck;
	/* What the last replay found past the end of the log (see
	 * later_blocks()). */
	uint64_t	damaged_at;
	uint64_t	damaged_first;
	uint64_t	damaged_blocks;
	uint64_t	damaged_last;
	void		*buf;		/* commit staging, 4 KiB aligned */
	size_t		buf_len;	/* bytes */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static void set_msg(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!msg || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
}

static void *alloc_blocks(size_t len)
{
	void *p;

	if (posix_memalign(&p, BACKING_BLOCK_SIZE, len))
		return NULL;
	return p;
}

/*
 * XXH3-64 of the fs block @blk whose checksum field (le64 at @csum_off) is
 * zeroed for the computation. The field is restored: @blk may be the only
 * copy of what was read.
 */
static uint64_t block_csum(const struct journal *j, void *blk, size_t csum_off)
{
	uint8_t *field = (uint8_t *)blk + csum_off;
	uint8_t saved[sizeof(le64)];
	uint64_t h;

	memcpy(saved, field, sizeof(saved));
	memset(field, 0, sizeof(saved));
	h = XXH3_64bits_withSeed(blk, j->bs, j->seed);
	memcpy(field, saved, sizeof(saved));
	return h;
}

static uint64_t payload_csum(const struct journal *j, const void *p,
			     size_t len)
{
	return XXH3_64bits_withSeed(p, len, j->seed);
}

/* Log blocks a transaction of @len bytes takes. */
static uint64_t txn_blocks(const struct journal *j, uint64_t len)
{
	return len ? len / j->ppb + !!(len % j->ppb) : 1;
}

/* Log blocks between head and the oldest block replay still needs. */
static uint64_t log_free(const struct journal *j)
{
	return j->sb->log_blocks - (j->head - j->sb->ckpt_seq);
}

size_t journal_max_txn(const struct journal *j)
{
	uint64_t blocks = j->sb->log_blocks / 4 ? j->sb->log_blocks / 4 : 1;

	return (size_t)min_u64(blocks * j->ppb, SIZE_MAX);
}

uint64_t journal_damage(const struct journal *j, uint64_t *at,
			uint64_t *first)
{
	*at = j->damaged_at;
	*first = j->damaged_first;
	return j->damaged_blocks;
}

bool journal_needs_checkpoint(const struct journal *j)
{
	return j->stuck;
}

uint64_t journal_used_bytes(const struct journal *j)
{
	return (j->head - j->sb->ckpt_seq) * j->bs;
}

uint64_t journal_size_bytes(const struct journal *j)
{
	return j->sb->log_blocks * j->bs;
}

uint64_t journal_ckpt_blocks(const struct journal *j, size_t len)
{
	return 1 + len / j->bs + !!(len % j->bs);
}

/*
 * Requests for log blocks [@seq, @seq + @n) from or into @buf, split where
 * the ring wraps and every req_blocks. @n <= log_blocks, so there is at
 * most one wrap: ring_max_reqs() requests at most.
 */
static unsigned int ring_reqs(const struct journal *j, enum backing_op op,
			      void *buf, uint64_t seq, uint64_t n,
			      struct backing_req *reqs)
{
	const struct super *sb = j->sb;
	uint8_t *p = buf;
	unsigned int nr = 0;

	while (n) {
		uint64_t pos = seq % sb->log_blocks;
		uint64_t run = min_u64(min_u64(n, sb->log_blocks - pos),
				       j->req_blocks);

		reqs[nr++] = (struct backing_req){
			.op	= op,
			.buf	= p,
			.off	= (sb->log_start + pos) * j->bs,
			.len	= (uint32_t)(run * j->bs),
		};
		p += run * j->bs;
		seq += run;
		n -= run;
	}
	return nr;
}

static uint64_t ring_max_reqs(const struct journal *j, uint64_t n)
{
	return n / j->req_blocks + 2;
}

int journal_open(struct backing *b, struct super *sb, struct journal **out)
{
	struct journal *j;

	if (sb->block_size < BACKING_BLOCK_SIZE ||
	    (sb->block_size & (sb->block_size - 1)) ||
	    sb->block_size <= FOLIOFS_LOG_HDR_SIZE || !sb->log_blocks ||
	    sb->ckpt_seq > JOURNAL_SEQ_MAX)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->b = b;
	j->sb = sb;
	j->seed = foliofs_volume_seed(sb->uuid);
	j->bs = sb->block_size;
	j->ppb = sb->block_size - FOLIOFS_LOG_HDR_SIZE;
	j->req_blocks = JOURNAL_REQ_BYTES / j->bs ? JOURNAL_REQ_BYTES / j->bs : 1;
	j->head = sb->ckpt_seq;
	j->dirty_end = sb->ckpt_seq;
	*out = j;
	return 0;
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	free(j->buf);
	free(j);
}

/* ---- Commit -------------------------------------------------------------- */

/* Make the staging buffer at least @len bytes. */
static int stage_reserve(struct journal *j, size_t len)
{
	void *p;

	if (j->buf_len >= len)
		return 0;
	p = alloc_blocks(len);
	if (!p)
		return -ENOMEM;
	free(j->buf);
	j->buf = p;
	j->buf_len = len;
	return 0;
}

/* Lay @len bytes of @payload out as @n log blocks from j->head. */
static void build_blocks(struct journal *j, const uint8_t *payload,
			 size_t len, uint64_t n)
{
	uint64_t csum = payload_csum(j, payload, len);
	size_t got = 0;
	uint64_t i;

	for (i = 0; i < n; i++) {
		uint8_t *blk = (uint8_t *)j->buf + i * j->bs;
		struct foliofs_disk_logblock *h = (void *)blk;
		uint32_t used = (uint32_t)min_u64(j->ppb, len - got);
		bool last = i == n - 1;

		*h = (struct foliofs_disk_logblock){
			.magic		= cpu_to_le32(FOLIOFS_LOG_MAGIC),
			.flags		= cpu_to_le32(last ? FOLIOFS_LOG_COMMIT : 0),
			.seq		= cpu_to_le64(j->head + i),
			.txn_seq	= cpu_to_le64(j->head),
			.txn_len	= cpu_to_le64(len),
			.txn_csum	= cpu_to_le64(csum),
			.used		= cpu_to_le32(used),
			.prev_csum	= cpu_to_le64(j->last_csum),
		};
		if (used)
			memcpy(blk + FOLIOFS_LOG_HDR_SIZE, payload + got, used);
		/* Whole blocks go to disk: no stale memory in the tail. */
		memset(blk + FOLIOFS_LOG_HDR_SIZE + used, 0, j->ppb - used);
		got += used;
		h->checksum = cpu_to_le64(block_csum(j, blk,
				offsetof(struct foliofs_disk_logblock, checksum)));
	}
	WARN_ON(got != len);
}

int journal_commit(struct journal *j, const void *payload, size_t len)
{
	struct backing_req *reqs;
	unsigned int nr;
	uint64_t n;
	int ret;

	if (j->stuck)
		return -EIO;
	if (len > journal_max_txn(j))
		return -E2BIG;
	n = txn_blocks(j, len);
	if (n > log_free(j))
		return -ENOSPC;
	ret = stage_reserve(j, n * j->bs);
	if (ret)
		return ret;
	reqs = calloc(ring_max_reqs(j, n) + 1, sizeof(*reqs));
	if (!reqs)
		return -ENOMEM;

	build_blocks(j, payload, len, n);
	nr = ring_reqs(j, BACKING_OP_WRITE, j->buf, j->head, n, reqs);
	/* A barrier: it covers every write before it in the batch. */
	reqs[nr++] = (struct backing_req){ .op = BACKING_OP_FDATASYNC };
	ret = backing_submit(j->b, reqs, nr);

	/*
	 * Even on failure some blocks may have landed; the next commit starts
	 * at head again and overwrites them, and a checkpoint skips past them.
	 */
	if (j->head + n > j->dirty_end)
		j->dirty_end = j->head + n;
	if (!ret) {
		j->head += n;
		j->last_csum = payload_csum(j, payload, len);
	}
	free(reqs);
	return ret;
}

/* ---- Checkpoint ---------------------------------------------------------- */

/* Do fs blocks [a, a + an) and [b, b + bn) overlap? */
static bool overlaps(uint64_t a, uint64_t an, uint64_t b, uint64_t bn)
{
	return a < b + bn && b < a + an;
}

int journal_checkpoint(struct journal *j, const void *payload, size_t len,
		       uint64_t start)
{
	struct super *sb = j->sb;
	uint64_t nblk = journal_ckpt_blocks(j, len);
	uint64_t first = DIV_ROUND_UP(FOLIOFS_SB_AREA, j->bs);
	uint64_t seq = j->dirty_end > j->head ? j->dirty_end : j->head;
	uint64_t old_start = sb->ckpt_start, old_blocks = sb->ckpt_blocks;
	uint64_t old_seq = sb->ckpt_seq, i, nr_reqs;
	struct foliofs_disk_ckpt *h;
	struct backing_req *reqs;
	uint8_t *buf;
	int ret;

	/* Refuse what would land on the superblocks, the log or the live
	 * checkpoint before anything is written. */
	if (start < first || start > sb->total_blocks ||
	    nblk > sb->total_blocks - start ||
	    overlaps(start, nblk, sb->log_start, sb->log_blocks) ||
	    (old_blocks && overlaps(start, nblk, old_start, old_blocks)))
		return -EINVAL;
	if (nblk > SIZE_MAX / j->bs)
		return -ENOMEM;

	buf = alloc_blocks(nblk * j->bs);
	if (!buf)
		return -ENOMEM;
	nr_reqs = nblk / j->req_blocks + 2;
	reqs = calloc(nr_reqs, sizeof(*reqs));
	if (!reqs) {
		ret = -ENOMEM;
		goto out_free_buf;
	}

	memset(buf, 0, j->bs);
	if (len)
		memcpy(buf + j->bs, payload, len);
	memset(buf + j->bs + len, 0, (nblk - 1) * j->bs - len);
	h = (void *)buf;
	h->magic = cpu_to_le32(FOLIOFS_CKPT_MAGIC);
	h->seq = cpu_to_le64(seq);
	h->len = cpu_to_le64(len);
	h->payload_csum = cpu_to_le64(payload_csum(j, buf + j->bs, len));
	h->checksum = cpu_to_le64(block_csum(j, buf,
				offsetof(struct foliofs_disk_ckpt, checksum)));

	nr_reqs = 0;
	for (i = 0; i < nblk; i += j->req_blocks) {
		uint64_t run = min_u64(j->req_blocks, nblk - i);

		reqs[nr_reqs++] = (struct backing_req){
			.op	= BACKING_OP_WRITE,
			.buf	= buf + i * j->bs,
			.off	= (start + i) * j->bs,
			.len	= (uint32_t)(run * j->bs),
		};
	}
	/* The checkpoint is durable before any superblock names it. */
	reqs[nr_reqs++] = (struct backing_req){ .op = BACKING_OP_FDATASYNC };
	ret = backing_submit(j->b, reqs, (unsigned int)nr_reqs);
	if (ret)
		goto out_free_reqs;

	sb->ckpt_start = start;
	sb->ckpt_blocks = nblk;
	sb->ckpt_seq = seq;
	ret = super_write(j->b, sb);
	if (ret) {
		sb->ckpt_start = old_start;
		sb->ckpt_blocks = old_blocks;
		sb->ckpt_seq = old_seq;
		/*
		 * -EINVAL and -ENOMEM write nothing. Otherwise the new copy may
		 * have landed: with seq == head the log goes on at head under
		 * either superblock, but with seq > head nothing fits both.
		 */
		if (ret != -EINVAL && ret != -ENOMEM && seq != j->head)
			j->stuck = true;
		goto out_free_reqs;
	}
	j->head = seq;
	j->dirty_end = seq;
	j->stuck = false;
out_free_reqs:
	free(reqs);
out_free_buf:
	free(buf);
	return ret;
}

int journal_set_state(struct journal *j, uint32_t state)
{
	struct super *sb = j->sb;
	uint64_t old_mount = sb->mount_ns;
	uint32_t old_state = sb->state;
	int ret;

	sb->state = state;
	if (state == FOLIOFS_STATE_DIRTY)
		sb->mount_ns = now_ns();
	ret = super_write(j->b, sb);
	if (ret) {
		sb->state = old_state;
		sb->mount_ns = old_mount;
	}
	return ret;
}

/* ---- Replay -------------------------------------------------------------- */

/* Read and check the checkpoint the superblock names, and apply it. */
static int replay_ckpt(struct journal *j, journal_apply_fn ckpt, void *arg,
		       char *msg, size_t msg_len)
{
	const struct super *sb = j->sb;
	struct foliofs_disk_ckpt *h;
	struct backing_req *reqs = NULL;
	uint64_t len, pblocks, i, nr = 0;
	uint8_t *hdr, *payload = NULL;
	const char *why = NULL;
	int ret;

	hdr = alloc_blocks(j->bs);
	if (!hdr)
		return -ENOMEM;
	ret = backing_read(j->b, hdr, sb->ckpt_start * j->bs, j->bs);
	if (ret)
		goto out_free;
	h = (void *)hdr;
	len = le64_to_cpu(h->len);
	pblocks = sb->ckpt_blocks - 1;
	if (le32_to_cpu(h->magic) != FOLIOFS_CKPT_MAGIC)
		why = "wrong magic";
	else if (le64_to_cpu(h->checksum) != block_csum(j, hdr,
			offsetof(struct foliofs_disk_ckpt, checksum)))
		why = "bad checksum";
	else if (le64_to_cpu(h->seq) != sb->ckpt_seq)
		why = "wrong sequence number";
	else if (le32_to_cpu(h->pad) || le64_to_cpu(h->reserved[0]) ||
		 le64_to_cpu(h->reserved[1]) || le64_to_cpu(h->reserved[2]))
		why = "nonzero reserved bytes";
	else if (len / j->bs + !!(len % j->bs) != pblocks)
		why = "length does not match its blocks";
	if (why) {
		ret = -EUCLEAN;
		goto out_free;
	}
	if (pblocks > SIZE_MAX / j->bs) {
		ret = -ENOMEM;
		goto out_free;
	}

	/* Never NULL, even for an empty payload: the callback gets a buffer. */
	payload = alloc_blocks(pblocks ? pblocks * j->bs : BACKING_BLOCK_SIZE);
	reqs = calloc(pblocks / j->req_blocks + 1, sizeof(*reqs));
	if (!payload || !reqs) {
		ret = -ENOMEM;
		goto out_free;
	}
	for (i = 0; i < pblocks; i += j->req_blocks) {
		uint64_t run = min_u64(j->req_blocks, pblocks - i);

		reqs[nr++] = (struct backing_req){
			.op	= BACKING_OP_READ,
			.buf	= payload + i * j->bs,
			.off	= (sb->ckpt_start + 1 + i) * j->bs,
			.len	= (uint32_t)(run * j->bs),
		};
	}
	if (nr) {
		ret = backing_submit(j->b, reqs, (unsigned int)nr);
		if (ret)
			goto out_free;
	}
	if (payload_csum(j, payload, len) != le64_to_cpu(h->payload_csum)) {
		why = "bad payload checksum";
		ret = -EUCLEAN;
		goto out_free;
	}
	if (ckpt)
		ret = ckpt(arg, payload, len);
out_free:
	if (why)
		set_msg(msg, msg_len, "checkpoint: %s", why);
	free(reqs);
	free(payload);
	free(hdr);
	return ret;
}

/* A transaction being gathered from its blocks. */
struct txn_acc {
	uint64_t	seq;		/* its first block's */
	uint64_t	len;		/* bytes, from its blocks' headers */
	uint64_t	csum;
	uint64_t	prev;		/* prev_csum, from its blocks' headers */
	uint64_t	got;		/* bytes gathered so far */
	uint8_t		*buf;
	size_t		cap;		/* bytes allocated at buf */
	bool		open;		/* a first block was seen */
};

/*
 * Check log block @blk, expected at sequence @seq, against itself and the
 * transaction @t being gathered, and gather its payload. @chain: the
 * txn_csum of the transaction replayed before, or NULL for the first after
 * the checkpoint. Returns NULL, or why the log ends here. Every length
 * comes from the disk and is checked before it is used.
 */
static const char *take_block(struct journal *j, uint8_t *blk, uint64_t seq,
			      const uint64_t *chain, struct txn_acc *t,
			      bool *commit, int *err)
{
	struct foliofs_disk_logblock *h = (void *)blk;
	uint32_t flags = le32_to_cpu(h->flags);
	uint32_t used = le32_to_cpu(h->used);
	uint64_t txn_seq = le64_to_cpu(h->txn_seq);
	uint64_t txn_len = le64_to_cpu(h->txn_len);
	uint64_t txn_csum = le64_to_cpu(h->txn_csum);
	uint64_t prev = le64_to_cpu(h->prev_csum);
	uint64_t got;

	if (le32_to_cpu(h->magic) != FOLIOFS_LOG_MAGIC)
		return "wrong magic";
	if (le64_to_cpu(h->checksum) != block_csum(j, blk,
			offsetof(struct foliofs_disk_logblock, checksum)))
		return "bad checksum";
	if (le64_to_cpu(h->seq) != seq)
		return "wrong sequence number";
	if ((flags & ~FOLIOFS_LOG_FLAGS) || le32_to_cpu(h->pad))
		return "unknown flags or nonzero padding";

	if (!t->open) {
		if (txn_seq != seq)
			return "block in the middle of a transaction";
		if (chain && prev != *chain)
			return "not chained to the transaction before";
		if (txn_len > journal_max_txn(j))
			return "transaction too large";
		got = 0;
	} else {
		if (txn_seq != t->seq || txn_len != t->len ||
		    txn_csum != t->csum || prev != t->prev)
			return "block of another transaction";
		got = t->got;
	}
	/* got <= txn_len: every block gathered so far passed this check. */
	if (used != min_u64(j->ppb, txn_len - got))
		return "wrong payload length";
	*commit = flags & FOLIOFS_LOG_COMMIT;
	if (*commit != (got + used == txn_len))
		return "commit flag on the wrong block";

	/*
	 * Grow as blocks pass their checks, not to what the first one
	 * claims: a crafted header costs no more memory than the log holds.
	 */
	if (got + used > t->cap) {
		uint64_t cap = min_u64(txn_len, t->cap * 2 > got + used ?
					   t->cap * 2 : got + used);
		uint8_t *p = realloc(t->buf, cap);

		if (!p) {
			*err = -ENOMEM;
			return "out of memory";
		}
		t->buf = p;
		t->cap = cap;
	}
	if (!t->open) {
		t->seq = txn_seq;
		t->len = txn_len;
		t->csum = txn_csum;
		t->prev = prev;
		t->got = 0;
		t->open = true;
	}
	if (used)
		memcpy(t->buf + t->got, blk + FOLIOFS_LOG_HDR_SIZE, used);
	t->got += used;
	if (*commit && payload_csum(j, t->buf, t->len) != t->csum)
		return "bad transaction checksum";
	return NULL;
}

/*
 * After the log ended at @stop: count the blocks further on that are
 * intact and belong to a transaction that began after @stop. A crash only
 * ever tears the last transaction (commits are serialised, each waits for
 * its flush), and a failed commit's leftovers began at or before the point
 * the next commit overwrote; so any such block means the log was damaged
 * in the middle and the transactions after the damage would be lost.
 */
static int later_blocks(struct journal *j, uint64_t stop, uint64_t limit,
			uint8_t *win, uint64_t win_blocks,
			struct backing_req *reqs, uint64_t *found,
			uint64_t *first, uint64_t *last)
{
	uint64_t seq = stop + 1, n, i;
	unsigned int nr;
	int ret;

	*found = 0;
	while (seq < limit) {
		n = min_u64(win_blocks, limit - seq);
		nr = ring_reqs(j, BACKING_OP_READ, win, seq, n, reqs);
		ret = backing_submit(j->b, reqs, nr);
		if (ret)
			return ret;
		for (i = 0; i < n; i++, seq++) {
			uint8_t *blk = win + i * j->bs;
			struct foliofs_disk_logblock *h = (void *)blk;

			if (le32_to_cpu(h->magic) != FOLIOFS_LOG_MAGIC ||
			    le64_to_cpu(h->seq) != seq ||
			    le64_to_cpu(h->txn_seq) <= stop ||
			    le64_to_cpu(h->checksum) != block_csum(j, blk,
				offsetof(struct foliofs_disk_logblock, checksum)))
				continue;
			if (!*found)
				*first = seq;
			(*found)++;
			*last = seq;
		}
	}
	return 0;
}

static int replay_log(struct journal *j, journal_apply_fn txn, void *arg,
		      char *msg, size_t msg_len)
{
	const struct super *sb = j->sb;
	uint64_t seq = sb->ckpt_seq, limit = seq + sb->log_blocks;
	uint64_t head = seq, nr_txns = 0, last_csum = 0, win_blocks, n, i;
	struct txn_acc t = { 0 };
	struct backing_req *reqs = NULL;
	const char *why = NULL;
	uint8_t *win;
	unsigned int nr;
	bool commit;
	int ret = 0;

	win_blocks = min_u64(JOURNAL_READ_BYTES / j->bs, sb->log_blocks);
	if (!win_blocks)
		win_blocks = 1;
	win = alloc_blocks(win_blocks * j->bs);
	reqs = calloc(ring_max_reqs(j, win_blocks), sizeof(*reqs));
	/* A buffer even for empty transactions: callbacks get non-NULL. */
	t.buf = malloc(j->ppb);
	t.cap = j->ppb;
	if (!win || !reqs || !t.buf) {
		ret = -ENOMEM;
		goto out_free;
	}

	while (seq < limit && !why) {
		n = min_u64(win_blocks, limit - seq);
		nr = ring_reqs(j, BACKING_OP_READ, win, seq, n, reqs);
		ret = backing_submit(j->b, reqs, nr);
		if (ret)
			goto out_free;
		for (i = 0; i < n; i++, seq++) {
			why = take_block(j, win + i * j->bs, seq,
					 nr_txns ? &last_csum : NULL, &t,
					 &commit, &ret);
			if (ret)
				goto out_free;
			if (why)
				break;
			if (!commit)
				continue;
			if (txn) {
				ret = txn(arg, t.buf, t.len);
				if (ret)
					goto out_free;
			}
			nr_txns++;
			last_csum = t.csum;
			head = seq + 1;
			t.open = false;
		}
	}
	if (!why)
		why = "the whole ring was read";
	if (seq < limit) {
		uint64_t found = 0, first = 0, last = 0;

		ret = later_blocks(j, seq, limit, win, win_blocks, reqs,
				   &found, &first, &last);
		if (ret)
			goto out_free;
		j->damaged_at = found ? seq : 0;
		j->damaged_blocks = found;
		j->damaged_first = first;
		j->damaged_last = last;
	}
	if (t.open)
		set_msg(msg, msg_len, "log: %llu transactions replayed; it "
			"ends at sequence %llu: %s; the unfinished transaction "
			"from sequence %llu is discarded",
			(unsigned long long)nr_txns, (unsigned long long)seq,
			why, (unsigned long long)t.seq);
	else
		set_msg(msg, msg_len, "log: %llu transactions replayed; it "
			"ends at sequence %llu: %s",
			(unsigned long long)nr_txns, (unsigned long long)seq,
			why);
	j->head = head;
	/* Intact blocks past a damage must never be taken for the log's
	 * continuation: the next checkpoint starts past them. */
	j->dirty_end = j->damaged_blocks ? j->damaged_last + 1 : head;
	j->last_csum = last_csum;
	j->stuck = false;
out_free:
	free(t.buf);
	free(reqs);
	free(win);
	return ret;
}

int journal_replay(struct journal *j, journal_apply_fn ckpt,
		   journal_apply_fn txn, void *arg, char *msg, size_t msg_len)
{
	int ret;

	set_msg(msg, msg_len, "%s", "");
	if (j->sb->ckpt_blocks) {
		ret = replay_ckpt(j, ckpt, arg, msg, msg_len);
		if (ret)
			return ret;
	}
	return replay_log(j, txn, arg, msg, msg_len);
}
