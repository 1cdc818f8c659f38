/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * progress.h - the progress bar mkfs.foliofs and fsck.foliofs draw on a
 * terminal, fed by foliofs_set_progress(). Redrawn at most ten times a
 * second, on stderr, and erased when the work is done; nothing at all
 * when stderr is not a terminal.
 */
#ifndef FOLIOFS_TOOLS_PROGRESS_H
#define FOLIOFS_TOOLS_PROGRESS_H

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "foliofs.h"

struct progress_bar {
	double	last;		/* seconds of the last redraw */
	int	drawn;		/* something is on the line */
};

static double progress_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void progress_draw(void *arg, const char *phase, uint64_t done,
			  uint64_t total)
{
	struct progress_bar *b = arg;
	double now = progress_now(), frac = total ? (double)done / total : 1;
	char bar[41];
	int i, fill = (int)(frac * 40);

	if (done < total && now - b->last < 0.1)
		return;
	b->last = now;
	for (i = 0; i < 40; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[40] = '\0';
	fprintf(stderr, "\r%-10s [%s] %3d%%", phase, bar, (int)(frac * 100));
	b->drawn = 1;
}

/* Start drawing if stderr is a terminal. */
static inline void progress_start(struct progress_bar *b)
{
	b->last = 0;
	b->drawn = 0;
	if (isatty(STDERR_FILENO))
		foliofs_set_progress(progress_draw, b);
}

/* Stop, and erase the bar so the tool's own output starts clean. */
static inline void progress_stop(struct progress_bar *b)
{
	foliofs_set_progress(NULL, NULL);
	if (b->drawn)
		fprintf(stderr, "\r%60s\r", "");
	b->drawn = 0;
}

#endif /* FOLIOFS_TOOLS_PROGRESS_H */
