/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * super.h - the superblock: what a volume is (block size, size, identity,
 * features) and where its metadata log and current checkpoint lie, kept in
 * two copies so that a power cut during an update never loses it.
 *
 * struct super is the in-memory, CPU-order form; ondisk.h's
 * struct foliofs_disk_super is the on-disk one. super_encode() and
 * super_read() convert between them.
 *
 * A/B copies. Copy A is at byte 0 of the store, copy B at byte 4096. The
 * superblock of generation g lives in copy g & 1, and super_write() of
 * generation g + 1 writes the other copy and flushes it before returning.
 * So at every moment the copy not being written holds the last generation
 * that a super_write() returned 0 for (or an older one, before the second
 * write): a torn or lost write of one copy leaves the other intact, and
 * super_read() falls back to it.
 *
 * Invariants:
 *  - a copy is valid only if its magic, version, checksum and every field
 *    check out (super_read() lists the rules), and its generation's low bit
 *    matches its slot; super_read() refuses a copy in the wrong slot, since
 *    the next write would go over the only good copy;
 *  - super_write() never writes a superblock super_read() would refuse;
 *  - @sb->generation changes only when super_write() returns 0, so a failed
 *    write is retried into the same copy, never over the good one.
 *
 * Locking:
 *  none inside; the caller serialises super_write() calls and every change
 *  to a struct super (one mount owns one). May sleep (waits for I/O):
 *  super_read, super_write. Any context: super_init, super_encode,
 *  super_ro_compat_unknown.
 */
#ifndef FOLIOFS_SUPER_H
#define FOLIOFS_SUPER_H

#include <stddef.h>
#include <stdint.h>

#include "backing.h"
#include "ondisk.h"

/* What super_read() writes to a message buffer this long is never cut. */
#define SUPER_MSG_LEN	256

/**
 * struct super - a superblock in CPU byte order. Fields as in
 * struct foliofs_disk_super, same units.
 * @label:	NUL-terminated here (64 bytes at most on disk).
 * @copy:	0 (A) or 1 (B): where super_read() found it or super_write()
 *		last put it; follows from @generation.
 */
struct super {
	uint32_t	version;
	uint32_t	block_size;
	uint64_t	compat;
	uint64_t	incompat;
	uint64_t	ro_compat;
	uint64_t	total_blocks;
	uint8_t		uuid[FOLIOFS_UUID_LEN];
	char		label[FOLIOFS_SB_LABEL_LEN + 1];
	uint64_t	generation;
	uint32_t	state;
	uint64_t	ctime_ns;
	uint64_t	mount_ns;
	uint64_t	log_start;
	uint64_t	log_blocks;
	uint64_t	ckpt_start;
	uint64_t	ckpt_blocks;
	uint64_t	ckpt_seq;
	unsigned int	copy;
};

/**
 * super_init() - fill @sb for a new volume: a random UUID, creation time
 * now, state clean, generation 0 (nothing written yet), no features, no
 * checkpoint. The caller places the log (and, later, the checkpoint) and
 * then calls super_write(), normally twice so that both copies are valid.
 * @block_size:		bytes, a power of two in 4096..65536.
 * @total_blocks:	fs blocks.
 * @label:		at most 64 bytes; NULL for none.
 *
 * Context: any; reads getrandom().
 * Return: 0; -EINVAL for a bad block size or a label that is too long;
 * getrandom()'s errno.
 */
int super_init(struct super *sb, uint32_t block_size, uint64_t total_blocks,
	       const char *label);

/**
 * super_encode() - lay @sb out as it goes on disk, checksum included.
 * Encodes what it is given: super_write() validates first.
 * @block:	FOLIOFS_SB_SIZE bytes.
 * Context: any.
 */
void super_encode(const struct super *sb, struct foliofs_disk_super *block);

/**
 * super_write() - write @sb as generation @sb->generation + 1 into copy
 * (generation + 1) & 1, then fdatasync the store.
 * @b:	the store; the volume's size is checked against backing_size().
 * @sb:	on success, its generation and @copy are updated; on failure it
 *	is unchanged, so a retry writes the same copy again.
 *
 * Context: may sleep; the caller serialises writers.
 * Return: 0; -EINVAL if @sb breaks a rule super_read() checks, or sets an
 * incompat feature this code does not know (nothing written); -ENOMEM; or the store's errno (-EIO, -ENOSPC, ...), after
 * which the copy written may be torn but the other one is intact.
 */
int super_write(struct backing *b, struct super *sb);

/**
 * super_read() - read both copies and return the valid one with the higher
 * generation.
 * @b:		the store.
 * @sb:		the result, on success.
 * @msg:	if not NULL, @msg_len bytes for a sentence on each copy that
 *		was refused ("superblock A: bad checksum; superblock B: wrong
 *		magic"), or on the unknown features; "" when both are valid.
 *		SUPER_MSG_LEN bytes always suffice.
 *
 * A copy is refused for: wrong magic; a version other than
 * FOLIOFS_SB_VERSION; a bad checksum; a block size that is not a power of
 * two in 4096..65536; fewer than FOLIOFS_MIN_BLOCKS blocks, or more than
 * the store holds; a log that is empty, runs off the volume or reaches
 * into the superblocks' first 8 KiB; a checkpoint that does so (if
 * present) or overlaps the log; an unknown state; nonzero padding; a
 * generation whose low bit does not match its copy.
 *
 * Context: may sleep.
 * Return: 0; -EUCLEAN if neither copy is valid (@msg says why for each);
 * -EOPNOTSUPP if the chosen copy has incompat feature bits this code does
 * not know (@msg names them); -ENOMEM; or the store's read errno.
 */
int super_read(struct backing *b, struct super *sb, char *msg,
	       size_t msg_len);

/**
 * super_ro_compat_unknown() - ro_compat bits this code does not know; a
 * mount must be read-only when this is nonzero.
 * Context: any.
 */
static inline uint64_t super_ro_compat_unknown(const struct super *sb)
{
	return sb->ro_compat & ~FOLIOFS_FEATURE_RO_COMPAT_SUPP;
}

#endif /* FOLIOFS_SUPER_H */
