/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * memstore.c - in-memory store for page-cache tests (see memstore.h).
 */
#include <stdlib.h>
#include <string.h>

#include "blkstate.h"
#include "memstore.h"

#define MS_BLOCK	4096UL
#define MS_PATTERN_BLOCKS	(1UL << 16)

static struct memstore *ms_of(struct filemap *map)
{
	return map->host;
}

void memstore_fill_pattern(uint64_t file_id, uint64_t pos, void *buf,
			   size_t len)
{
	uint64_t *w = buf;

	for (size_t i = 0; i < len / 8; i++)
		w[i] = memstore_pattern(file_id, pos + i * 8);
}

size_t memstore_check_pattern(uint64_t file_id, uint64_t pos,
			      const void *buf, size_t len)
{
	const uint64_t *w = buf;
	size_t bad = 0;

	for (size_t i = 0; i < len / 8; i++)
		bad += w[i] != memstore_pattern(file_id, pos + i * 8);
	return bad;
}

static int ms_read_blocks(struct filemap *map, struct folio *folio,
			  unsigned int first, unsigned int nr)
{
	struct memstore *ms = ms_of(map);
	unsigned int bits = folio->blkbits;
	int err = 0;

	pthread_mutex_lock(&ms->lock);
	if (ms->fail_reads > 0) {
		ms->fail_reads--;
		err = -EIO;
		goto out;
	}
	ms->read_calls++;
	ms->blocks_read += nr;
	for (unsigned int b = first; b < first + nr; b++) {
		uint64_t pos = folio_pos(folio) + ((uint64_t)b << bits);
		char *dst = (char *)folio_address(folio) + ((size_t)b << bits);
		size_t len = (size_t)1 << bits;
		/* Blocks of the store are 4 KiB; folio blocks may be smaller. */
		void *blk = xa_load(&ms->blocks, pos / MS_BLOCK);

		if (xa_is_value(blk))	/* punched: a hole */
			memset(dst, 0, len);
		else if (blk)
			memcpy(dst, (char *)blk + pos % MS_BLOCK, len);
		else if (ms->pattern)
			memstore_fill_pattern(ms->file_id, pos, dst, len);
		else
			memset(dst, 0, len);
	}
out:
	pthread_mutex_unlock(&ms->lock);
	return err;
}

static bool ms_block_mapped(struct filemap *map, unsigned long lblk)
{
	struct memstore *ms = ms_of(map);

	void *blk = xa_load(&ms->blocks, lblk);

	/* Pattern mode: the whole file exists on "disk", but for holes. */
	if (xa_is_value(blk))
		return false;
	return ms->pattern || blk != NULL;
}

static void ms_punch(struct filemap *map, unsigned long first,
		     unsigned long nr)
{
	struct memstore *ms = ms_of(map);
	unsigned long end = nr == ULONG_MAX || first + nr < first ?
			    ULONG_MAX : first + nr - 1;
	unsigned long index = first;
	void *blk;

	pthread_mutex_lock(&ms->lock);
	/* Written blocks go; in pattern mode the rest becomes holes too. */
	xa_for_each_range(&ms->blocks, index, blk, first, end) {
		if (!xa_is_value(blk)) {
			free(blk);
			ms->used--;
		}
		xa_erase(&ms->blocks, index);
	}
	if (ms->pattern) {
		unsigned long last = end;

		/* Pattern files in tests are at most 256 MiB. */
		if (last > first + MS_PATTERN_BLOCKS)
			last = first + MS_PATTERN_BLOCKS;
		for (index = first; index <= last; index++)
			xa_store(&ms->blocks, index, xa_mk_value(0));
	}
	pthread_mutex_unlock(&ms->lock);
}

static int ms_reserve(struct filemap *map, unsigned long nr)
{
	struct memstore *ms = ms_of(map);
	int err = 0;

	pthread_mutex_lock(&ms->lock);
	if (ms->capacity >= 0 && ms->used + ms->reserved + (long)nr > ms->capacity)
		err = -ENOSPC;
	else
		ms->reserved += nr;
	pthread_mutex_unlock(&ms->lock);
	return err;
}

static void ms_release(struct filemap *map, unsigned long nr)
{
	struct memstore *ms = ms_of(map);

	pthread_mutex_lock(&ms->lock);
	ms->reserved -= nr;
	pthread_mutex_unlock(&ms->lock);
}

const struct filemap_ops memstore_ops = {
	.read_blocks	= ms_read_blocks,
	.block_mapped	= ms_block_mapped,
	.reserve_blocks	= ms_reserve,
	.release_blocks	= ms_release,
	.punch_blocks	= ms_punch,
};

void memstore_init(struct memstore *ms, bool pattern, uint64_t file_id,
		   long capacity)
{
	memset(ms, 0, sizeof(*ms));
	pthread_mutex_init(&ms->lock, NULL);
	xa_init(&ms->blocks);
	ms->pattern = pattern;
	ms->file_id = file_id;
	ms->capacity = capacity;
}

void memstore_destroy(struct memstore *ms)
{
	unsigned long index;
	void *blk;

	xa_for_each(&ms->blocks, index, blk)
		if (!xa_is_value(blk))
			free(blk);
	xa_destroy(&ms->blocks);
	pthread_mutex_destroy(&ms->lock);
}

int memstore_write_folio(struct memstore *ms, struct filemap *map,
			 struct folio *folio)
{
	unsigned int reserved = blkstate_count_reserved(folio, 0, folio_size(folio));
	size_t off, len;
	int err = 0;

	pthread_mutex_lock(&ms->lock);
	blkstate_for_each_dirty(folio, off, len) {
		for (size_t o = off; o < off + len; o += MS_BLOCK) {
			uint64_t pos = folio_pos(folio) + o;
			void *blk = xa_load(&ms->blocks, pos / MS_BLOCK);

			if (xa_is_value(blk))
				blk = NULL;	/* a hole gets a block again */
			if (!blk) {
				blk = malloc(MS_BLOCK);
				if (!blk) {
					err = -ENOMEM;
					goto out;
				}
				if (xa_is_err(xa_store(&ms->blocks, pos / MS_BLOCK, blk))) {
					free(blk);
					err = -ENOMEM;
					goto out;
				}
				ms->used++;
			}
			memcpy(blk, (char *)folio_address(folio) + o, MS_BLOCK);
		}
	}
	/* The reservations became written blocks. */
	ms->reserved -= reserved;
out:
	pthread_mutex_unlock(&ms->lock);
	if (!err)
		filemap_clean_folio(folio);
	return err;
}
