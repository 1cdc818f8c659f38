// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * super.c - the superblock's two copies: encode, validate, write A/B, read
 * back the newest valid one. See super.h for the rules and ondisk.h for the
 * layout.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <xxhash.h>

#include "compiler.h"
#include "super.h"

static const char copy_name[FOLIOFS_SB_COPIES] = { 'A', 'B' };

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static bool block_size_ok(uint32_t bs)
{
	return bs >= FOLIOFS_MIN_BLOCK_SIZE && bs <= FOLIOFS_MAX_BLOCK_SIZE &&
	       !(bs & (bs - 1));
}

/* XXH3-64 of the block with its checksum field zeroed (a copy: @d may be
 * the only good one we have). */
static uint64_t super_csum(const struct foliofs_disk_super *d)
{
	struct foliofs_disk_super tmp;

	memcpy(&tmp, d, sizeof(tmp));
	tmp.checksum = cpu_to_le64(0);
	return XXH3_64bits(&tmp, sizeof(tmp));
}

int super_init(struct super *sb, uint32_t block_size, uint64_t total_blocks,
	       const char *label)
{
	size_t got = 0;
	ssize_t n;

	if (!block_size_ok(block_size))
		return -EINVAL;
	if (label && strlen(label) > FOLIOFS_SB_LABEL_LEN)
		return -EINVAL;
	memset(sb, 0, sizeof(*sb));
	while (got < sizeof(sb->uuid)) {
		n = getrandom(sb->uuid + got, sizeof(sb->uuid) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	/* RFC 4122 version 4 (random), variant 1. */
	sb->uuid[6] = (sb->uuid[6] & 0x0f) | 0x40;
	sb->uuid[8] = (sb->uuid[8] & 0x3f) | 0x80;
	if (label)
		strcpy(sb->label, label);
	sb->version = FOLIOFS_SB_VERSION;
	sb->block_size = block_size;
	sb->total_blocks = total_blocks;
	sb->state = FOLIOFS_STATE_CLEAN;
	sb->ctime_ns = now_ns();
	/* Generation 0 lives in copy A; the first write is 1, into B. */
	sb->copy = 0;
	return 0;
}

void super_encode(const struct super *sb, struct foliofs_disk_super *d)
{
	memset(d, 0, sizeof(*d));
	memcpy(d->magic, FOLIOFS_SB_MAGIC, FOLIOFS_SB_MAGIC_LEN);
	d->version = cpu_to_le32(sb->version);
	d->block_size = cpu_to_le32(sb->block_size);
	d->feature_compat = cpu_to_le64(sb->compat);
	d->feature_incompat = cpu_to_le64(sb->incompat);
	d->feature_ro_compat = cpu_to_le64(sb->ro_compat);
	d->total_blocks = cpu_to_le64(sb->total_blocks);
	memcpy(d->uuid, sb->uuid, sizeof(d->uuid));
	/* NUL-padded (d is zeroed), not NUL-terminated at 64 bytes. */
	memcpy(d->label, sb->label, strnlen(sb->label, sizeof(d->label)));
	d->generation = cpu_to_le64(sb->generation);
	d->state = cpu_to_le32(sb->state);
	d->ctime_ns = cpu_to_le64(sb->ctime_ns);
	d->mount_ns = cpu_to_le64(sb->mount_ns);
	d->log_start = cpu_to_le64(sb->log_start);
	d->log_blocks = cpu_to_le64(sb->log_blocks);
	d->ckpt_start = cpu_to_le64(sb->ckpt_start);
	d->ckpt_blocks = cpu_to_le64(sb->ckpt_blocks);
	d->ckpt_seq = cpu_to_le64(sb->ckpt_seq);
	d->checksum = cpu_to_le64(super_csum(d));
}

static void super_decode(const struct foliofs_disk_super *d, struct super *sb)
{
	memset(sb, 0, sizeof(*sb));
	sb->version = le32_to_cpu(d->version);
	sb->block_size = le32_to_cpu(d->block_size);
	sb->compat = le64_to_cpu(d->feature_compat);
	sb->incompat = le64_to_cpu(d->feature_incompat);
	sb->ro_compat = le64_to_cpu(d->feature_ro_compat);
	sb->total_blocks = le64_to_cpu(d->total_blocks);
	memcpy(sb->uuid, d->uuid, sizeof(sb->uuid));
	memcpy(sb->label, d->label, sizeof(d->label));	/* label[64] stays 0 */
	sb->generation = le64_to_cpu(d->generation);
	sb->state = le32_to_cpu(d->state);
	sb->ctime_ns = le64_to_cpu(d->ctime_ns);
	sb->mount_ns = le64_to_cpu(d->mount_ns);
	sb->log_start = le64_to_cpu(d->log_start);
	sb->log_blocks = le64_to_cpu(d->log_blocks);
	sb->ckpt_start = le64_to_cpu(d->ckpt_start);
	sb->ckpt_blocks = le64_to_cpu(d->ckpt_blocks);
	sb->ckpt_seq = le64_to_cpu(d->ckpt_seq);
}

/*
 * Is [start, start + n) inside the volume and clear of the superblocks?
 * Written so that no sum can overflow.
 */
static bool range_ok(const struct super *sb, uint64_t start, uint64_t n)
{
	uint64_t first = DIV_ROUND_UP(FOLIOFS_SB_AREA, sb->block_size);

	return start >= first && start <= sb->total_blocks &&
	       n <= sb->total_blocks - start;
}

/*
 * The rules every valid superblock obeys, but for magic, version and
 * checksum (super_check_disk()). Returns NULL or what is wrong.
 */
static const char *super_check(const struct super *sb, uint64_t dev_bytes)
{
	if (!block_size_ok(sb->block_size))
		return "block size not a power of two in 4096..65536";
	if (sb->total_blocks < FOLIOFS_MIN_BLOCKS)
		return "volume smaller than the minimum";
	if (sb->total_blocks > dev_bytes / sb->block_size)
		return "volume larger than the device";
	if (sb->state != FOLIOFS_STATE_CLEAN &&
	    sb->state != FOLIOFS_STATE_DIRTY)
		return "unknown state";
	if (!sb->log_blocks || !range_ok(sb, sb->log_start, sb->log_blocks))
		return "metadata log outside the volume";
	if (sb->ckpt_blocks) {
		if (!range_ok(sb, sb->ckpt_start, sb->ckpt_blocks))
			return "checkpoint outside the volume";
		if (sb->ckpt_start < sb->log_start + sb->log_blocks &&
		    sb->log_start < sb->ckpt_start + sb->ckpt_blocks)
			return "checkpoint overlaps the metadata log";
	} else if (sb->ckpt_start || sb->ckpt_seq) {
		return "empty checkpoint with a location";
	}
	return NULL;
}

/* Decode copy @i into @sb, or say why it is refused. */
static const char *super_check_disk(const struct foliofs_disk_super *d,
				    unsigned int i, uint64_t dev_bytes,
				    struct super *sb)
{
	static const uint8_t zero[sizeof(d->reserved)];

	if (memcmp(d->magic, FOLIOFS_SB_MAGIC, FOLIOFS_SB_MAGIC_LEN))
		return "wrong magic";
	if (le64_to_cpu(d->checksum) != super_csum(d))
		return "bad checksum";
	if (le32_to_cpu(d->version) != FOLIOFS_SB_VERSION)
		return "unsupported version";
	if (le32_to_cpu(d->pad0) || memcmp(d->reserved, zero, sizeof(zero)))
		return "nonzero reserved bytes";
	super_decode(d, sb);
	if ((sb->generation & 1) != i)
		return "generation in the wrong copy";
	sb->copy = i;
	return super_check(sb, dev_bytes);
}

static void msg_add(char *msg, size_t len, const char *fmt, ...)
{
	size_t used;
	va_list ap;

	if (!msg || !len)
		return;
	used = strlen(msg);
	if (used >= len - 1)
		return;
	va_start(ap, fmt);
	vsnprintf(msg + used, len - used, fmt, ap);
	va_end(ap);
}

int super_write(struct backing *b, struct super *sb)
{
	struct foliofs_disk_super *d;
	struct super next = *sb;
	uint64_t dev_bytes;
	int ret;

	ret = backing_size(b, &dev_bytes);
	if (ret)
		return ret;
	next.generation = sb->generation + 1;
	next.copy = next.generation & 1;
	next.version = FOLIOFS_SB_VERSION;
	if (super_check(&next, dev_bytes) ||
	    (next.incompat & ~FOLIOFS_FEATURE_INCOMPAT_SUPP) ||
	    strnlen(next.label, sizeof(next.label)) > FOLIOFS_SB_LABEL_LEN)
		return -EINVAL;

	d = aligned_alloc(BACKING_BLOCK_SIZE, sizeof(*d));
	if (!d)
		return -ENOMEM;
	super_encode(&next, d);
	ret = backing_write(b, d, FOLIOFS_SB_OFFSET(next.copy), sizeof(*d));
	if (ret)
		goto out_free;
	/*
	 * Durable before we return, and before the next write may touch the
	 * other copy: that copy is the fallback for this one until then.
	 */
	ret = backing_fdatasync(b);
	if (ret)
		goto out_free;
	*sb = next;
out_free:
	free(d);
	return ret;
}

int super_read(struct backing *b, struct super *sb, char *msg,
	       size_t msg_len)
{
	struct foliofs_disk_super *d;
	struct super cand[FOLIOFS_SB_COPIES];
	const char *why[FOLIOFS_SB_COPIES];
	uint64_t dev_bytes, unknown;
	unsigned int i, best = FOLIOFS_SB_COPIES;
	int ret;

	if (msg && msg_len)
		msg[0] = '\0';
	ret = backing_size(b, &dev_bytes);
	if (ret)
		return ret;
	d = aligned_alloc(BACKING_BLOCK_SIZE, FOLIOFS_SB_AREA);
	if (!d)
		return -ENOMEM;
	ret = backing_read(b, d, 0, FOLIOFS_SB_AREA);
	if (ret)
		goto out_free;

	for (i = 0; i < FOLIOFS_SB_COPIES; i++) {
		why[i] = super_check_disk(&d[i], i, dev_bytes, &cand[i]);
		if (why[i]) {
			msg_add(msg, msg_len, "%ssuperblock %c: %s",
				msg && msg[0] ? "; " : "", copy_name[i],
				why[i]);
			continue;
		}
		if (best == FOLIOFS_SB_COPIES ||
		    cand[i].generation > cand[best].generation)
			best = i;
	}
	if (best == FOLIOFS_SB_COPIES) {
		ret = -EUCLEAN;
		goto out_free;
	}

	unknown = cand[best].incompat & ~FOLIOFS_FEATURE_INCOMPAT_SUPP;
	if (unknown) {
		msg_add(msg, msg_len,
			"%ssuperblock %c: unknown incompatible features 0x%llx",
			msg && msg[0] ? "; " : "", copy_name[best],
			(unsigned long long)unknown);
		ret = -EOPNOTSUPP;
		goto out_free;
	}
	*sb = cand[best];
out_free:
	free(d);
	return ret;
}
