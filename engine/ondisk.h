/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ondisk.h - the on-disk format: every struct that is written to the backing
 * store, exactly as it lies there, and the byte-order helpers that read and
 * write its fields.
 *
 * Every multi-byte field is little-endian and has a fixed width; the types
 * le16/le32/le64 are one-member structs, so a field cannot be read or
 * assigned without going through le*_to_cpu()/cpu_to_le*() (the compiler
 * refuses a plain integer). Padding is explicit and written as zeroes;
 * sizes and offsets are checked with static asserts, so a change that moves
 * a field fails the build instead of the format.
 *
 * Units. "fs blocks" are the volume's block size (the superblock's
 * block_size, 4 KiB to 64 KiB); "ns" is nanoseconds since the Unix epoch
 * (UTC). Byte offsets in the store are named as such.
 *
 * Layout of a volume:
 *   bytes 0..4095      superblock copy A
 *   bytes 4096..8191   superblock copy B
 *   the metadata log and the checkpoint: anywhere after byte 8192 (in fs
 *   blocks, named by the superblock);
 *   data blocks.
 * The two copies sit at fixed byte offsets, not fs-block offsets, so a
 * reader finds them before it knows the block size.
 *
 * Checksums are XXH3-64 (libxxhash's XXH3_64bits) over the whole structure
 * with its checksum field zeroed: seed 0 for the superblock, the volume's
 * seed (foliofs_volume_seed()) for log and checkpoint blocks.
 *
 * Locking: none; these are plain data and pure functions.
 */
#ifndef FOLIOFS_ONDISK_H
#define FOLIOFS_ONDISK_H

#include <assert.h>
#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct { uint16_t v; } le16;
typedef struct { uint32_t v; } le32;
typedef struct { uint64_t v; } le64;

static inline le16 cpu_to_le16(uint16_t x) { return (le16){ htole16(x) }; }
static inline le32 cpu_to_le32(uint32_t x) { return (le32){ htole32(x) }; }
static inline le64 cpu_to_le64(uint64_t x) { return (le64){ htole64(x) }; }
static inline uint16_t le16_to_cpu(le16 x) { return le16toh(x.v); }
static inline uint32_t le32_to_cpu(le32 x) { return le32toh(x.v); }
static inline uint64_t le64_to_cpu(le64 x) { return le64toh(x.v); }

/* ---- Superblock --------------------------------------------------------- */

#define FOLIOFS_SB_MAGIC	"FOLIOFS"	/* 8 bytes with its NUL */
#define FOLIOFS_SB_MAGIC_LEN	8
#define FOLIOFS_SB_VERSION	1U
#define FOLIOFS_SB_SIZE		4096U		/* bytes, one copy */
#define FOLIOFS_SB_COPIES	2U
/* Byte offset of copy @i (0 = A, 1 = B). */
#define FOLIOFS_SB_OFFSET(i)	((uint64_t)(i) * FOLIOFS_SB_SIZE)
/* Bytes at the start of the store that only the superblocks may use. */
#define FOLIOFS_SB_AREA		(FOLIOFS_SB_COPIES * FOLIOFS_SB_SIZE)
#define FOLIOFS_SB_LABEL_LEN	64
#define FOLIOFS_UUID_LEN	16

#define FOLIOFS_MIN_BLOCK_SIZE	4096U		/* bytes */
#define FOLIOFS_MAX_BLOCK_SIZE	65536U		/* bytes */
/* The smallest volume: superblocks, a log and a checkpoint fit with room. */
#define FOLIOFS_MIN_BLOCKS	16U		/* fs blocks */

/* state: was the volume unmounted cleanly? */
enum {
	FOLIOFS_STATE_CLEAN	= 1,
	FOLIOFS_STATE_DIRTY	= 2,
};

/*
 * Feature flags. compat: an old reader may ignore the feature. ro_compat:
 * an old reader may mount read-only. incompat: an old reader must refuse.
 * No feature is defined yet; the *_SUPP masks say what this code knows.
 */
#define FOLIOFS_FEATURE_COMPAT_SUPP	0ULL
#define FOLIOFS_FEATURE_RO_COMPAT_SUPP	0ULL
#define FOLIOFS_FEATURE_INCOMPAT_SUPP	0ULL

/**
 * struct foliofs_disk_super - one superblock copy, 4096 bytes.
 * Every field little-endian; units in the comments.
 */
struct foliofs_disk_super {
	uint8_t	magic[FOLIOFS_SB_MAGIC_LEN];	/*    0: "FOLIOFS\0" */
	le32	version;		/*    8: format version, FOLIOFS_SB_VERSION */
	le32	block_size;		/*   12: bytes per fs block, power of 2 */
	le64	feature_compat;		/*   16: bit mask */
	le64	feature_incompat;	/*   24: bit mask */
	le64	feature_ro_compat;	/*   32: bit mask */
	le64	total_blocks;		/*   40: fs blocks in the volume */
	uint8_t	uuid[FOLIOFS_UUID_LEN];	/*   48: random, set at mkfs */
	char	label[FOLIOFS_SB_LABEL_LEN]; /* 64: UTF-8, NUL-padded */
	le64	generation;		/*  128: count of writes; copy = gen & 1 */
	le32	state;			/*  136: FOLIOFS_STATE_* */
	le32	pad0;			/*  140: zero */
	le64	ctime_ns;		/*  144: creation, ns since the epoch */
	le64	mount_ns;		/*  152: last mount, ns since the epoch */
	le64	log_start;		/*  160: fs block of the metadata log */
	le64	log_blocks;		/*  168: fs blocks of the log, >= 1 */
	le64	ckpt_start;		/*  176: fs block of the checkpoint */
	le64	ckpt_blocks;		/*  184: fs blocks; 0 = none yet */
	le64	ckpt_seq;		/*  192: log sequence it covers */
	uint8_t	reserved[3888];		/*  200: zero */
	le64	checksum;		/* 4088: XXH3-64, this field zeroed */
};

static_assert(sizeof(struct foliofs_disk_super) == FOLIOFS_SB_SIZE,
	      "superblock must be one 4 KiB block");
static_assert(offsetof(struct foliofs_disk_super, generation) == 128,
	      "superblock layout moved");
static_assert(offsetof(struct foliofs_disk_super, reserved) == 200,
	      "superblock layout moved");
static_assert(offsetof(struct foliofs_disk_super, checksum) ==
	      FOLIOFS_SB_SIZE - 8, "checksum must be the last field");

/* ---- Metadata log and checkpoint ----------------------------------------- */

/*
 * Seed of every log and checkpoint checksum: the first 8 bytes of the
 * volume's UUID read as a little-endian integer. A block left by an earlier
 * mkfs of the same store never validates under a new UUID.
 */
static inline uint64_t foliofs_volume_seed(const uint8_t uuid[FOLIOFS_UUID_LEN])
{
	uint64_t v;

	memcpy(&v, uuid, sizeof(v));
	return le64toh(v);
}

/*
 * The log is a ring of the superblock's log_blocks fs blocks at log_start.
 * The block of sequence number s lies at fs block log_start + s % log_blocks.
 * Sequence numbers count from 0 at mkfs and never wrap (2^64 blocks).
 *
 * A transaction of n payload bytes takes k = max(1, ceil(n / P)) consecutive
 * sequence numbers, P = block_size - FOLIOFS_LOG_HDR_SIZE: every block but
 * the last holds P bytes, the last holds the rest and carries
 * FOLIOFS_LOG_COMMIT. Every block of a transaction repeats the
 * transaction's first sequence number, length and payload checksum, so that
 * blocks left over from a failed or torn attempt at the same sequence
 * numbers are never stitched onto another transaction.
 *
 * Transactions are chained: each names the payload checksum of the one
 * committed before it (prev_csum). Replay checks the chain for every
 * transaction but the first after the checkpoint, so that once replay has
 * stopped at a damaged block and a new transaction has been written over
 * it, older transactions further on never follow the new one.
 *
 * Each block is fully written: header, payload, then zeroes to the end of
 * the fs block; its checksum covers all of it.
 */
#define FOLIOFS_LOG_MAGIC	0x474f4c46U	/* "FLOG" in byte order */
#define FOLIOFS_LOG_COMMIT	(1U << 0)	/* last block of a transaction */
#define FOLIOFS_LOG_FLAGS	FOLIOFS_LOG_COMMIT	/* every known flag */
#define FOLIOFS_LOG_HDR_SIZE	64U		/* bytes; payload follows */

/**
 * struct foliofs_disk_logblock - the header at byte 0 of every log block.
 * Every field little-endian.
 */
struct foliofs_disk_logblock {
	le32	magic;		/*  0: FOLIOFS_LOG_MAGIC */
	le32	flags;		/*  4: FOLIOFS_LOG_* */
	le64	seq;		/*  8: this block's sequence number */
	le64	txn_seq;	/* 16: sequence number of the txn's first block */
	le64	txn_len;	/* 24: bytes of the whole txn's payload */
	le64	txn_csum;	/* 32: XXH3-64 of that payload, volume seed */
	le32	used;		/* 40: payload bytes in this block */
	le32	pad;		/* 44: zero */
	le64	prev_csum;	/* 48: txn_csum of the transaction before */
	le64	checksum;	/* 56: XXH3-64 of the whole fs block, this
				 *     field zeroed, volume seed */
};

static_assert(sizeof(struct foliofs_disk_logblock) == FOLIOFS_LOG_HDR_SIZE,
	      "log block header is 64 bytes");
static_assert(offsetof(struct foliofs_disk_logblock, used) == 40,
	      "log block layout moved");
static_assert(offsetof(struct foliofs_disk_logblock, checksum) == 56,
	      "log block layout moved");

/*
 * A checkpoint lies in ckpt_blocks consecutive fs blocks at ckpt_start: a
 * header block (this struct, then zeroes to the end of the fs block), then
 * the payload, zero-padded to a whole fs block. So ckpt_blocks is exactly
 * 1 + ceil(len / block_size).
 */
#define FOLIOFS_CKPT_MAGIC	0x504b4346U	/* "FCKP" in byte order */

/**
 * struct foliofs_disk_ckpt - the header block of a checkpoint.
 * Every field little-endian.
 */
struct foliofs_disk_ckpt {
	le32	magic;		/*  0: FOLIOFS_CKPT_MAGIC */
	le32	pad;		/*  4: zero */
	le64	seq;		/*  8: the log sequence it covers up to (the
				 *     superblock's ckpt_seq) */
	le64	len;		/* 16: payload bytes, from the next fs block */
	le64	payload_csum;	/* 24: XXH3-64 of the payload, volume seed */
	le64	reserved[3];	/* 32: zero */
	le64	checksum;	/* 56: XXH3-64 of the whole header fs block,
				 *     this field zeroed, volume seed */
};

static_assert(sizeof(struct foliofs_disk_ckpt) == 64,
	      "checkpoint header is 64 bytes");
static_assert(offsetof(struct foliofs_disk_ckpt, checksum) == 56,
	      "checkpoint header layout moved");

#endif /* FOLIOFS_ONDISK_H */
