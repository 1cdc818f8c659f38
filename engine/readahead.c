/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * readahead.c - window arithmetic for sequential readers (see readahead.h).
 */
#include <string.h>

#include "compiler.h"
#include "readahead.h"

/* Largest folio readahead allocates: 2 MiB of 4 KiB pages. */
#define RA_MAX_ORDER	9U
/* Folio order rises this much per window step. */
#define RA_ORDER_STEP	2U

void ra_init(struct file_ra_state *ra, unsigned int max_pages)
{
	memset(ra, 0, sizeof(*ra));
	ra->max_pages = max_pages ? max_pages : RA_DEFAULT_MAX_PAGES;
}

unsigned int ra_folio_order(unsigned long index, unsigned int nr,
			    unsigned int order)
{
	if (order > RA_MAX_ORDER)
		order = RA_MAX_ORDER;
	while (order && ((index & ((1UL << order) - 1)) || (1U << order) > nr))
		order--;
	return order;
}

static unsigned int grow_size(unsigned int size, unsigned int max)
{
	unsigned int next = size ? size * 2 : RA_INITIAL_PAGES;

	return next < max ? next : max;
}

/* Largest order whose folio fits @size pages, at most @order. */
static unsigned int fit_order(unsigned int order, unsigned int size)
{
	if (order > RA_MAX_ORDER)
		order = RA_MAX_ORDER;
	while (order && (1U << order) > size)
		order--;
	return order;
}

/*
 * Stretch a window of @size pages at @start so that it ends on a boundary
 * of its folio order: the next window then starts aligned, and can use
 * folios of that order from its first page instead of a run of smaller ones
 * up to the next boundary.
 */
static unsigned int align_end(unsigned long start, unsigned int size,
			      unsigned int order, unsigned int max)
{
	unsigned long mask = (1UL << order) - 1;
	unsigned long up = (start + size + mask) & ~mask;
	unsigned long down = (start + size) & ~mask;

	if (up - start <= max)
		return (unsigned int)(up - start);
	/* Stretching would pass the cap: trim to the boundary below. */
	if (down > start)
		return (unsigned int)(down - start);
	return size;
}

struct ra_window ra_sync(struct file_ra_state *ra, unsigned long index,
			 unsigned int req)
{
	unsigned int max = READ_ONCE(ra->max_pages);
	unsigned long start = READ_ONCE(ra->start);
	unsigned int size = READ_ONCE(ra->size);
	struct ra_window w;
	bool sequential;

	if (!max)
		max = RA_DEFAULT_MAX_PAGES;
	if (!req)
		req = 1;
	if (req > max)
		req = max;
	/*
	 * Sequential: the read continues where the last one ended, or falls in
	 * the window we built for it (its folios were reclaimed or not yet
	 * read in).
	 */
	sequential = index == READ_ONCE(ra->prev_index) ||
		     (size && index >= start && index - start < size);
	if (!sequential) {
		/* Random: exactly what was asked, in small folios. */
		WRITE_ONCE(ra->start, index);
		WRITE_ONCE(ra->size, 0);
		WRITE_ONCE(ra->async_size, 0);
		WRITE_ONCE(ra->order, 0);
		w.start = index;
		w.size = req;
		w.mark = ~0UL;
		/* As large as the request allows: a 4 KiB read gets order 0. */
		w.order = RA_MAX_ORDER;
		return w;
	}

	size = grow_size(size, max);
	if (size < req)
		size = req;
	/*
	 * The order grows by a step per window, and is at least what the
	 * request itself fills: a reader of 1 MiB at a time gets 1 MiB folios
	 * from its first window on.
	 */
	w.order = READ_ONCE(ra->order) + RA_ORDER_STEP;
	if (w.order < 31 - (unsigned int)__builtin_clz(req))
		w.order = 31 - __builtin_clz(req);
	w.order = fit_order(w.order, size);
	size = align_end(index, size, w.order, size > max ? size : max);
	w.order = fit_order(w.order, size);
	w.start = index;
	w.size = size;
	/* Tag the middle: the next window is read while this half is used. */
	w.mark = index + size - size / 2;
	WRITE_ONCE(ra->start, w.start);
	WRITE_ONCE(ra->size, w.size);
	WRITE_ONCE(ra->async_size, size / 2);
	WRITE_ONCE(ra->order, w.order);
	return w;
}

struct ra_window ra_async(struct file_ra_state *ra, unsigned long index)
{
	unsigned int max = READ_ONCE(ra->max_pages);
	unsigned int size = READ_ONCE(ra->size);
	struct ra_window w;

	if (!max)
		max = RA_DEFAULT_MAX_PAGES;
	if (!size)
		/* The marker of a window we forgot: start again from here. */
		return ra_sync(ra, index, 1);

	w.start = READ_ONCE(ra->start) + size;
	if (w.start <= index)
		w.start = index + 1;
	w.size = grow_size(size, max);
	w.order = fit_order(READ_ONCE(ra->order) + RA_ORDER_STEP, w.size);
	w.size = align_end(w.start, w.size, w.order, max);
	w.order = fit_order(w.order, w.size);
	/* The whole new window is ahead: tag its first folio. */
	w.mark = w.start;
	WRITE_ONCE(ra->start, w.start);
	WRITE_ONCE(ra->size, w.size);
	WRITE_ONCE(ra->async_size, w.size);
	WRITE_ONCE(ra->order, w.order);
	return w;
}
