/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * writeback-bench.c - writeback through the embedded engine, with the
 * references measured in the same run (issue "Writeback and pins").
 *
 * Rows:
 *  fixedbuf / iovec   65536 random 4 KiB writes into a 256 MiB file, then
 *                     fsync; the time of the fsync (the writeback of
 *                     copied-out blocks) with the copy buffers registered
 *                     with io_uring, and with plain iovecs. The ratio is
 *                     iovec time / fixed time (> 1: registered is faster).
 *  copy / wait        two threads: one keeps writing random 4 KiB blocks
 *                     of a file for --seconds while the other calls fsync
 *                     in a loop; writes/s with writeback copying small
 *                     folios out (the default) and with writers waiting
 *                     for the I/O of the folio they write (law 9 by wait).
 *  mixed              70% random 4 KiB reads of a cached 256 MiB file, 30%
 *                     random 4 KiB writes, fsync every 256 writes, for
 *                     --seconds, one thread; ops/s, and dirty bytes every
 *                     half second. Reference: the same loop with pread,
 *                     pwrite and fsync on the kernel filesystem holding
 *                     --dir (ext4 here), in the same run.
 *
 * --json prints one object with "ratio_fixedbuf_vs_iovec",
 * "ratio_copy_vs_wait" and "ratio_mixed_vs_ext4".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "foliofs.h"

#define MIB		(1ULL << 20)
#define FILE_MIB	256ULL
#define BLOCKS		(FILE_MIB * MIB / 4096)

struct opts {
	const char	*dir;
	double		seconds;
	unsigned long	writes;
	bool		json;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, long err)
{
	fprintf(stderr, "writeback-bench: %s: %s\n", what,
		err < 0 ? strerror((int)-err) : "failed");
	exit(1);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static struct foliofs *volume(const struct opts *o, char *img, size_t len,
			      struct foliofs_mount_opts *mo)
{
	struct foliofs_mkfs_opts mk = { .size = 1024 * MIB, .force = 1 };
	struct foliofs *fs;
	int ret;

	snprintf(img, len, "%s/writeback-bench.img", o->dir);
	unlink(img);
	if ((ret = foliofs_mkfs(img, &mk)))
		die("mkfs", ret);
	if ((ret = foliofs_mount(img, mo, &fs)))
		die(foliofs_strerror(), ret);
	return fs;
}

/* A laid-out, fsync'd 256 MiB file. */
static struct foliofs_file *laid_out(struct foliofs *fs, const char *path)
{
	struct foliofs_file *f;
	char *buf = malloc(MIB);
	uint64_t i;
	int ret;

	if ((ret = foliofs_open_path(fs, path, O_CREAT | O_RDWR, 0644, &f)))
		die("open", ret);
	memset(buf, 0x11, MIB);
	for (i = 0; i < FILE_MIB; i++)
		if (foliofs_write(f, buf, MIB, i * MIB) != (ssize_t)MIB)
			die("lay out", -EIO);
	if ((ret = foliofs_fsync(f, 0)))
		die("fsync", ret);
	free(buf);
	return f;
}

/* Seconds to fsync o->writes random 4 KiB writes. */
static double fsync_time(const struct opts *o, bool fixed)
{
	struct foliofs_mount_opts mo = { .no_fixed_buffers = !fixed,
					 .dirty_expire_ms = 600000,
					 .commit_ms = 600000,
					 .dirty_background_bytes = 1ULL << 40 };
	char img[4096], buf[4096];
	struct foliofs *fs = volume(o, img, sizeof(img), &mo);
	struct foliofs_file *f = laid_out(fs, "/r");
	uint64_t seed = 7, i;
	double t0, t;
	int ret;

	memset(buf, 0x22, sizeof(buf));
	for (i = 0; i < o->writes; i++)
		if (foliofs_write(f, buf, 4096, (rnd(&seed) % BLOCKS) * 4096) != 4096)
			die("write", -EIO);
	t0 = now_s();
	if ((ret = foliofs_fsync(f, 0)))
		die("fsync", ret);
	t = now_s() - t0;
	foliofs_release(f);
	foliofs_unmount(fs);
	unlink(img);
	return t;
}

struct syncer {
	struct foliofs_file	*f;
	bool			stop;		/* atomic */
};

static void *sync_loop(void *arg)
{
	struct syncer *s = arg;

	while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED))
		foliofs_fsync(s->f, 0);
	foliofs_thread_exit();
	return NULL;
}

/* Writes/s of a random writer racing an fsync loop. */
static double copy_or_wait(const struct opts *o, bool copy)
{
	struct foliofs_mount_opts mo = { .no_writeback_copy = !copy };
	char img[4096], buf[4096];
	struct foliofs *fs = volume(o, img, sizeof(img), &mo);
	struct syncer s = { .f = laid_out(fs, "/c") };
	uint64_t seed = 9, n = 0;
	pthread_t t;
	double t0, el;

	memset(buf, 0x33, sizeof(buf));
	pthread_create(&t, NULL, sync_loop, &s);
	t0 = now_s();
	do {
		if (foliofs_write(s.f, buf, 4096, (rnd(&seed) % BLOCKS) * 4096) != 4096)
			die("write", -EIO);
		n++;
		el = now_s() - t0;
	} while (el < o->seconds);
	__atomic_store_n(&s.stop, true, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	foliofs_release(s.f);
	foliofs_unmount(fs);
	unlink(img);
	return (double)n / el;
}

struct mixed_io {
	ssize_t	(*rd)(void *h, void *buf, size_t len, uint64_t off);
	ssize_t	(*wr)(void *h, const void *buf, size_t len, uint64_t off);
	int	(*sync)(void *h);
	void	*h;
	struct foliofs *fs;	/* for dirty samples, or NULL */
};

static ssize_t f_rd(void *h, void *b, size_t l, uint64_t o)
{
	return foliofs_read(h, b, l, o);
}

static ssize_t f_wr(void *h, const void *b, size_t l, uint64_t o)
{
	return foliofs_write(h, b, l, o);
}

static int f_sync(void *h)
{
	return foliofs_fsync(h, 0);
}

static ssize_t k_rd(void *h, void *b, size_t l, uint64_t o)
{
	return pread((int)(intptr_t)h, b, l, (off_t)o);
}

static ssize_t k_wr(void *h, const void *b, size_t l, uint64_t o)
{
	return pwrite((int)(intptr_t)h, b, l, (off_t)o);
}

static int k_sync(void *h)
{
	return fsync((int)(intptr_t)h);
}

static double mixed(const struct opts *o, const struct mixed_io *io,
		    bool print)
{
	char buf[4096];
	uint64_t seed = 11, ops = 0, writes = 0, i;
	double t0 = now_s(), next = 0.5, el;

	/* Warm: every block cached. */
	for (i = 0; i < BLOCKS; i += 256)
		if (io->rd(io->h, buf, 4096, i * 4096) != 4096)
			die("warm read", -EIO);
	for (i = 0; i < BLOCKS; i++)
		io->rd(io->h, buf, 4096, i * 4096);
	t0 = now_s();
	do {
		uint64_t off = (rnd(&seed) % BLOCKS) * 4096;

		if (rnd(&seed) % 10 < 7) {
			if (io->rd(io->h, buf, 4096, off) != 4096)
				die("read", -EIO);
		} else {
			if (io->wr(io->h, buf, 4096, off) != 4096)
				die("write", -EIO);
			if (++writes % 256 == 0 && io->sync(io->h))
				die("fsync", -EIO);
		}
		ops++;
		el = now_s() - t0;
		if (print && el >= next) {
			struct foliofs_stats st;

			if (io->fs) {
				foliofs_stats(io->fs, &st);
				printf("#   t=%.1fs ops/s=%.0f dirty=%.1f MiB\n",
				       el, ops / el, st.dirty_bytes / (double)MIB);
			}
			next += 0.5;
		}
	} while (el < o->seconds);
	return (double)ops / el;
}

static double mixed_foliofs(const struct opts *o)
{
	struct foliofs_mount_opts mo = { 0 };
	char img[4096];
	struct foliofs *fs = volume(o, img, sizeof(img), &mo);
	struct foliofs_file *f = laid_out(fs, "/m");
	struct mixed_io io = { f_rd, f_wr, f_sync, f, fs };
	double r = mixed(o, &io, !o->json);

	foliofs_release(f);
	foliofs_unmount(fs);
	unlink(img);
	return r;
}

static double mixed_kernel(const struct opts *o)
{
	char path[4096], *buf = malloc(MIB);
	struct mixed_io io = { k_rd, k_wr, k_sync, NULL, NULL };
	uint64_t i;
	double r;
	int fd;

	snprintf(path, sizeof(path), "%s/writeback-bench.ext4", o->dir);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0)
		die("open reference", -errno);
	memset(buf, 0x11, MIB);
	for (i = 0; i < FILE_MIB; i++)
		if (pwrite(fd, buf, MIB, (off_t)(i * MIB)) != (ssize_t)MIB)
			die("lay out reference", -errno);
	fsync(fd);
	io.h = (void *)(intptr_t)fd;
	r = mixed(o, &io, false);
	close(fd);
	unlink(path);
	free(buf);
	return r;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "seconds", required_argument, NULL, 't' },
		{ "writes", required_argument, NULL, 'w' },
		{ "quick", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ 0 }
	};
	struct opts o = { .dir = ".", .seconds = 5, .writes = 65536 };
	double tf, ti, cc, cw, mf, mk;
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'd': o.dir = optarg; break;
		case 't': o.seconds = strtod(optarg, NULL); break;
		case 'w': o.writes = strtoul(optarg, NULL, 0); break;
		case 'q': o.seconds = 1; o.writes = 8192; break;
		case 'j': o.json = true; break;
		default:
			fprintf(stderr, "usage: writeback-bench [--dir DIR] "
				"[--seconds S] [--writes N] [--quick] [--json]\n");
			return 2;
		}
	}
	ti = fsync_time(&o, false);
	tf = fsync_time(&o, true);
	cw = copy_or_wait(&o, false);
	cc = copy_or_wait(&o, true);
	mk = mixed_kernel(&o);
	mf = mixed_foliofs(&o);
	if (o.json) {
		printf("{\"fsync_fixed_s\": %.4f, \"fsync_iovec_s\": %.4f, "
		       "\"ratio_fixedbuf_vs_iovec\": %.3f, "
		       "\"writes_copy_per_s\": %.0f, \"writes_wait_per_s\": %.0f, "
		       "\"ratio_copy_vs_wait\": %.3f, "
		       "\"mixed_ops\": %.0f, \"ext4_mixed_ops\": %.0f, "
		       "\"ratio_mixed_vs_ext4\": %.3f}\n",
		       tf, ti, ti / tf, cc, cw, cc / cw, mf, mk, mf / mk);
		return 0;
	}
	printf("%-34s %12s %12s %8s\n", "row", "foliofs", "reference", "ratio");
	printf("%-34s %10.3f s %10.3f s %8.3f  (fixed vs iovec)\n",
	       "fsync of random 4k writes", tf, ti, ti / tf);
	printf("%-34s %8.0f w/s %8.0f w/s %8.3f  (copy vs wait)\n",
	       "random writes racing fsync", cc, cw, cc / cw);
	printf("%-34s %8.0f op/s %7.0f op/s %8.3f  (kernel fs in %s)\n",
	       "mixed 70r/30w, fsync/256w", mf, mk, mf / mk, o.dir);
	return 0;
}
