/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ondisk_rec.h - the metadata records: what a checkpoint payload and a log
 * transaction (journal.h) are made of. Conventions as in ondisk.h: every
 * field little-endian and fixed width, padding explicit and zero.
 *
 * A payload is a sequence of records, each starting with
 * struct foliofs_disk_rec and 8-byte aligned (len is rounded up to 8).
 * Records are state, not operations: applying a record sets what it names
 * (an inode's attributes, one directory entry, the mapping of a block
 * range), so a checkpoint is the same records describing every inode,
 * extent and entry, and a transaction the ones that changed.
 *
 * Units: "blocks" are fs blocks; times are ns since the epoch.
 */
#ifndef FOLIOFS_ONDISK_REC_H
#define FOLIOFS_ONDISK_REC_H

#include "ondisk.h"

struct foliofs_disk_rec {
	le16	type;		/* 0: REC_* (fs.h) */
	le16	pad;		/* 2: zero */
	le32	len;		/* 4: bytes, this header included, multiple of 8 */
};

/* REC_INODE: create the inode if new, then set every attribute. */
struct foliofs_disk_inode {
	struct foliofs_disk_rec	hdr;
	le64	ino;		/*  8 */
	le64	generation;	/* 16 */
	le32	mode;		/* 24: S_IF* type and permission bits */
	le32	nlink;		/* 28 */
	le32	uid;		/* 32 */
	le32	gid;		/* 36 */
	le64	rdev;		/* 40 */
	le64	size;		/* 48: bytes */
	le64	atime_ns;	/* 56 */
	le64	mtime_ns;	/* 64 */
	le64	ctime_ns;	/* 72 */
};

/* REC_DIRENT_ADD: entry @name in directory @dir names @ino. */
struct foliofs_disk_dirent {
	struct foliofs_disk_rec	hdr;
	le64	dir;		/*  8: directory inode */
	le64	ino;		/* 16: 0 for REC_DIRENT_DEL */
	uint8_t	type;		/* 24: DT_* */
	uint8_t	pad0;		/* 25 */
	le16	name_len;	/* 26: bytes, 1..255 */
	le32	pad1;		/* 28 */
	char	name[];		/* 32: not NUL-terminated, zero-padded to 8 */
};

/* REC_EXTENT: blocks [lblk, lblk + len) of @ino live at [pblk, pblk + len). */
struct foliofs_disk_extent {
	struct foliofs_disk_rec	hdr;
	le64	ino;		/*  8 */
	le64	lblk;		/* 16: file block */
	le64	pblk;		/* 24: volume block */
	le64	len;		/* 32: blocks */
	le32	flags;		/* 40: FOLIOFS_EXT_UNWRITTEN */
	le32	pad;		/* 44 */
};
#define FOLIOFS_EXT_UNWRITTEN	1U

/* REC_PUNCH: blocks [lblk, lblk + len) of @ino are holes now. */
struct foliofs_disk_punch {
	struct foliofs_disk_rec	hdr;
	le64	ino;		/*  8 */
	le64	lblk;		/* 16 */
	le64	len;		/* 24: blocks; ~0 = to the end */
};

/* REC_SYMLINK: @ino's target. */
struct foliofs_disk_symlink {
	struct foliofs_disk_rec	hdr;
	le64	ino;		/*  8 */
	le32	len;		/* 16: bytes, 1..4095 */
	le32	pad;		/* 20 */
	char	target[];	/* 24: zero-padded to 8 */
};

/* REC_IFREE: @ino and all its blocks are gone. */
struct foliofs_disk_ifree {
	struct foliofs_disk_rec	hdr;
	le64	ino;		/*  8 */
};

static_assert(sizeof(struct foliofs_disk_rec) == 8, "record header moved");
static_assert(sizeof(struct foliofs_disk_inode) == 80, "inode record moved");
static_assert(sizeof(struct foliofs_disk_dirent) == 32, "dirent record moved");
static_assert(sizeof(struct foliofs_disk_extent) == 48, "extent record moved");
static_assert(sizeof(struct foliofs_disk_punch) == 32, "punch record moved");
static_assert(sizeof(struct foliofs_disk_symlink) == 24, "symlink record moved");
static_assert(sizeof(struct foliofs_disk_ifree) == 16, "ifree record moved");

#endif /* FOLIOFS_ONDISK_REC_H */
