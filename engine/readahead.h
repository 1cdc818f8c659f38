/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * readahead.h - the readahead window of one open file.
 *
 * Each open file carries a struct file_ra_state. A read that misses the
 * cache asks ra_sync() what to read; a read that reaches the folio marked
 * FOLIO_READAHEAD (the "async marker", placed async_size pages before the
 * end of the window) asks ra_async() for the next window, so the reader
 * rarely waits. Both only compute windows: filemap.c allocates, inserts and
 * reads the folios.
 *
 * Window and folio order grow together. A random reader gets exactly what
 * it asked for, in the largest aligned folios that fit the request (order 0
 * for a 4 KiB read). A sequential reader's window doubles on
 * each step up to max_pages, and its folio order rises by two per step up to
 * FOLIO_MAX_ORDER (2 MiB), as long as the window is large enough to hold
 * such folios and the index is aligned to them.
 *
 * Locking: a file_ra_state belongs to one open file and is updated without
 * a lock; two threads reading through the same open file race benignly
 * (the worst outcome is a window of the wrong size). Fields are accessed
 * with READ_ONCE/WRITE_ONCE so the race is defined.
 */
#ifndef FOLIOFS_READAHEAD_H
#define FOLIOFS_READAHEAD_H

#include <stdbool.h>

/* Default largest window: 4 MiB of 4 KiB pages. */
#define RA_DEFAULT_MAX_PAGES	1024U
/* First window of a sequential stream. */
#define RA_INITIAL_PAGES	16U

struct file_ra_state {
	unsigned long	start;		/* first page of the current window */
	unsigned int	size;		/* pages in the current window */
	unsigned int	async_size;	/* marker sits this many pages before the end */
	unsigned int	order;		/* folio order for the current window */
	unsigned int	max_pages;	/* cap on size (0: RA_DEFAULT_MAX_PAGES) */
	unsigned long	prev_index;	/* last page the reader touched, +1 */
};

/* A window to read: pages [start, start + size), marker at mark. */
struct ra_window {
	unsigned long	start;
	unsigned int	size;
	unsigned long	mark;		/* page to tag FOLIO_READAHEAD, or ~0UL */
	unsigned int	order;		/* folio order to allocate with */
};

/**
 * ra_init() - a fresh state: the next miss is treated as random.
 * Context: any.
 */
void ra_init(struct file_ra_state *ra, unsigned int max_pages);

/**
 * ra_sync() - the reader missed the cache at @index wanting @req pages.
 * Decides whether the stream is sequential (it continues where the last
 * read ended, or at the current window) and returns the window to read.
 * Context: any; no allocation.
 */
struct ra_window ra_sync(struct file_ra_state *ra, unsigned long index,
			 unsigned int req);

/**
 * ra_async() - the reader reached the async marker at @index; returns the
 * next window (right after the current one), grown.
 * Context: any; no allocation.
 */
struct ra_window ra_async(struct file_ra_state *ra, unsigned long index);

/**
 * ra_note_read() - record that the reader consumed pages up to @index
 * (exclusive), so the next miss can tell sequential from random.
 */
static inline void ra_note_read(struct file_ra_state *ra, unsigned long index)
{
	__atomic_store_n(&ra->prev_index, index, __ATOMIC_RELAXED);
}

/**
 * ra_folio_order() - largest order <= @order usable at @index with at most
 * @nr pages left in the window (aligned, and not past the window).
 */
unsigned int ra_folio_order(unsigned long index, unsigned int nr,
			    unsigned int order);

#endif /* FOLIOFS_READAHEAD_H */
