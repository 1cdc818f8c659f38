/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * memstore.h - an in-memory store behind struct filemap_ops, for tests.
 *
 * Blocks of 4 KiB. A block never written reads as the pattern naming its
 * file offset (pattern mode) or as zeroes (hole mode). memstore_write_folio()
 * plays writeback: it copies a folio's dirty blocks into the store. Space is
 * a block budget: reservations and written blocks count against it, so tests
 * can hit ENOSPC. Counters say how many blocks were read, so tests can check
 * that the cache read only what it lacked. Thread-safe (one mutex).
 */
#ifndef FOLIOFS_TEST_MEMSTORE_H
#define FOLIOFS_TEST_MEMSTORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "filemap.h"

struct memstore {
	pthread_mutex_t	lock;
	struct xarray	blocks;		/* lblk -> 4 KiB buffer */
	bool		pattern;	/* unwritten blocks read as pattern */
	uint64_t	file_id;	/* mixed into the pattern */
	long		capacity;	/* blocks; < 0: unlimited */
	long		used;		/* blocks written */
	long		reserved;	/* blocks reserved, not yet written */
	long		blocks_read;	/* read_blocks() blocks, total */
	long		read_calls;
	int		fail_reads;	/* next N read_blocks() fail with -EIO */
};

extern const struct filemap_ops memstore_ops;

void memstore_init(struct memstore *ms, bool pattern, uint64_t file_id,
		   long capacity);
void memstore_destroy(struct memstore *ms);

/* The 8-byte word at byte @pos of file @file_id in pattern mode. */
static inline uint64_t memstore_pattern(uint64_t file_id, uint64_t pos)
{
	return (file_id << 48) ^ (pos & ~7ULL) ^ 0x5a5a000000000000ULL;
}

/* Fill @buf (at file byte @pos, @len bytes, 8-byte aligned) with the pattern. */
void memstore_fill_pattern(uint64_t file_id, uint64_t pos, void *buf,
			   size_t len);

/*
 * Number of 8-byte words of @buf (file byte @pos) that differ from the
 * pattern; 0 means it is all pattern.
 */
size_t memstore_check_pattern(uint64_t file_id, uint64_t pos,
			      const void *buf, size_t len);

/*
 * Write back locked @folio's dirty blocks into the store and clean it
 * (filemap_clean_folio). Return 0 or -ENOSPC (should never happen: law 7).
 */
int memstore_write_folio(struct memstore *ms, struct filemap *map,
			 struct folio *folio);

#endif /* FOLIOFS_TEST_MEMSTORE_H */
