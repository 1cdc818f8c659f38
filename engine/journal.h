/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * journal.h - the metadata log and checkpoints.
 *
 * The namespace and extent maps live in memory (fs.c). They reach the disk
 * in two forms:
 *
 *  - a checkpoint: the whole metadata serialised as one payload, written
 *    into a contiguous run of fs blocks that the caller allocated from the
 *    data space, named by the superblock (ckpt_start, ckpt_blocks,
 *    ckpt_seq);
 *  - the log: a fixed ring of fs blocks (log_start, log_blocks) holding the
 *    transactions committed since that checkpoint. Each transaction is one
 *    payload split over one or more log blocks; every log block carries its
 *    sequence number (position = log_start + seq % log_blocks) and an
 *    XXH3-64 checksum seeded from the volume's UUID, and the last block of
 *    a transaction carries a COMMIT flag.
 *
 * What a payload holds is the caller's business (fs.c's records); the
 * journal only guarantees that a transaction is replayed whole or not at
 * all, and in order.
 *
 * Recovery replays the checkpoint, then the log from ckpt_seq while blocks
 * are valid (right magic, checksum and sequence), stopping at the first that
 * is not; a transaction whose COMMIT block was not reached is discarded and
 * its blocks are overwritten by the next commit. So the time to mount is
 * bounded by the log's size, not the volume's. Every block also names its
 * transaction (first sequence number, length, payload checksum), so blocks
 * left over from a failed or torn commit at the same positions are never
 * stitched onto the transaction that overwrote part of them; and every
 * transaction names the checksum of the one before it, so that after
 * replay stopped at a damaged block and a commit went over it, the older
 * transactions further on are never replayed after the new one.
 *
 * A failed commit may still have put some of its blocks on the medium. The
 * next commit overwrites them from the same sequence number; a checkpoint
 * taken before that starts the log past them, so they are never replayed
 * on top of a checkpoint.
 *
 * Locking: none inside; the caller serialises every call (fs.c holds its
 * commit mutex). All calls may sleep (store I/O).
 */
#ifndef FOLIOFS_JOURNAL_H
#define FOLIOFS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backing.h"
#include "super.h"

struct journal;

/*
 * Largest payload journal_commit() takes, bytes: the payload of a quarter of
 * the log's blocks (of one block if the log has fewer than 4).
 */
size_t journal_max_txn(const struct journal *j);

/**
 * journal_open() - the journal of the volume described by @sb (read by
 * super_read(), or just written by mkfs). @sb stays the caller's and is
 * updated by journal_checkpoint() and journal_set_state(); it must outlive
 * the journal. Commits go to ckpt_seq until journal_replay() finds the end
 * of the log, so a mounted volume replays before it commits (mkfs need not).
 * Context: allocates; no I/O.
 * Return: 0; -EINVAL for a block size that is not a power of two of 4 KiB
 * or more, an empty log, or a ckpt_seq beyond 2^62; -ENOMEM.
 */
int journal_open(struct backing *b, struct super *sb, struct journal **out);
void journal_close(struct journal *j);

typedef int (*journal_apply_fn)(void *arg, const void *payload, size_t len);

/**
 * journal_replay() - feed the checkpoint's payload (if the superblock names
 * one) to @ckpt, then every committed transaction after it, in order, to
 * @txn. A nonzero return from either stops the replay and is returned.
 * Afterwards journal_commit() appends after the last committed transaction.
 * @ckpt, @txn: may be NULL, to check without applying (fsck). The payload
 *	 passed is never NULL (also for 0 bytes) and is only valid during the
 *	 call.
 * @msg: if not NULL, @msg_len bytes for a sentence on what ended the log
 *	 ("log: 3 transactions replayed; it ends at sequence 17: wrong
 *	 sequence number") or what was wrong ("checkpoint: bad checksum").
 *	 A log ending at an invalid block is the normal case, not an error.
 * Context: may sleep; allocates the checkpoint's payload and the largest
 * transaction's.
 * Return: 0; -EUCLEAN for a checkpoint that fails a check (magic, header or
 * payload checksum, sequence number, a length that does not match
 * ckpt_blocks); -ENOMEM; the store's errno; or a callback's return.
 */
int journal_replay(struct journal *j, journal_apply_fn ckpt, journal_apply_fn txn,
		   void *arg, char *msg, size_t msg_len);

/**
 * journal_commit() - append one transaction and make it durable (write its
 * blocks, then fdatasync). Nothing is replayed of it unless this returned 0
 * or the crash came after its COMMIT block reached the medium.
 * @payload may be NULL if @len is 0; an empty transaction takes one block.
 * Context: may sleep; allocates (a staging buffer kept for the next call).
 * Return: 0; -ENOSPC if the log has less room than the transaction needs
 * (checkpoint, then retry); -E2BIG if @len > journal_max_txn(); -ENOMEM;
 * -EIO after a checkpoint that failed in its superblock write left the log
 * position unsettled (see journal_checkpoint()); or the store's errno (the
 * transaction may or may not be replayed after a crash, unless a
 * checkpoint comes first; the next commit overwrites its blocks).
 */
int journal_commit(struct journal *j, const void *payload, size_t len);

/**
 * journal_damage() - after journal_replay(): how many intact blocks of
 * transactions that began after the end of the log it found. A crash only
 * tears the last transaction, so a nonzero count means the log was damaged
 * at *@at in the middle, and the transactions from *@first on were not
 * replayed (their metadata is lost unless the damage is repaired). The
 * caller decides whether to go on (fsck repair) or refuse (mount).
 */
uint64_t journal_damage(const struct journal *j, uint64_t *at,
			uint64_t *first);

/* Whether commits are refused until a checkpoint succeeds (see
 * journal_checkpoint()). */
bool journal_needs_checkpoint(const struct journal *j);

/* Log bytes in use since the checkpoint, and the log's size, in bytes. */
uint64_t journal_used_bytes(const struct journal *j);
uint64_t journal_size_bytes(const struct journal *j);

/* Fs blocks a checkpoint of @len payload bytes needs: a header block, then
 * the payload. */
uint64_t journal_ckpt_blocks(const struct journal *j, size_t len);

/**
 * journal_checkpoint() - write @payload (the whole metadata as of now: no
 * commit may happen between serialising it and this call) at fs blocks
 * [@start, @start + journal_ckpt_blocks(@len)), flush, then write the
 * superblock naming it, with ckpt_seq = the next log sequence. The log is
 * then empty. The caller allocated the blocks, and frees the previous
 * checkpoint's blocks (the superblock's ckpt_start/ckpt_blocks before the
 * call) once this returns 0.
 *
 * If it fails in the superblock write, the new superblock copy may still
 * have reached the medium, so after a crash either checkpoint may be the
 * one named: keep both checkpoints' blocks allocated until a later
 * checkpoint returns 0. Commits go on where they were, unless a failed
 * commit had left blocks past the head: then they return -EIO until a
 * checkpoint succeeds, since no log position would suit both superblocks.
 *
 * Context: may sleep; allocates a copy of @payload.
 * Return: 0; -EINVAL if the blocks would overlap the superblocks, the log
 * or the current checkpoint, or run off the volume (nothing written);
 * -ENOMEM; or the store's errno (the old checkpoint and log still hold).
 */
int journal_checkpoint(struct journal *j, const void *payload, size_t len,
		       uint64_t start);

/**
 * journal_set_state() - write the superblock with @state
 * (FOLIOFS_STATE_CLEAN at unmount, _DIRTY at mount) and, with _DIRTY, the
 * mount time (now). @sb is left as it was on failure.
 * Context: may sleep.
 * Return: 0; -EINVAL for an unknown state; or super_write()'s errno.
 */
int journal_set_state(struct journal *j, uint32_t state);

#endif /* FOLIOFS_JOURNAL_H */
