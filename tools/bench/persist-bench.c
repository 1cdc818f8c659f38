/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * persist-bench.c - what the embedded engine gets out of the disk when data
 * must be durable, next to references measured in the same run on the same
 * filesystem (DESIGN.md, Performance; issue "Persistence").
 *
 * Rows:
 *  seqwrite        1 MiB writes through foliofs_write() into a new file of
 *                  --size MiB, then foliofs_fsync(); the time includes the
 *                  fsync. Reference: fio, raw O_DIRECT writes with the
 *                  io_uring engine at depth 8 to a file in the same
 *                  directory, end_fsync=1:
 *                    fio --name=raw --filename=DIR/raw --rw=write --bs=1M
 *                        --size=SIZE --direct=1 --ioengine=io_uring
 *                        --iodepth=8 --end_fsync=1
 *  randwrite-fsync 4 KiB writes at random block offsets of a --rand-size
 *                  MiB file (laid out and fsync'd first), fsync after
 *                  every 32 writes, for --seconds. Reference: the same
 *                  loop with pwrite(2) and fsync(2) on kernel ext4 (or
 *                  whatever holds --dir) in the same directory.
 *  mount           time to mount a volume holding --files empty files
 *                  (1000 per directory), unmounted cleanly before.
 *
 * --json prints one object with "ratio_seqwrite_vs_raw" and
 * "ratio_randwrite_fsync_vs_ext4" beside the raw figures.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "foliofs.h"

#define MIB	(1ULL << 20)

struct opts {
	const char	*dir;
	uint64_t	size_mib;
	uint64_t	rand_mib;
	double		seconds;
	unsigned long	files;
	bool		json;
	bool		skip_fio;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, long err)
{
	fprintf(stderr, "persist-bench: %s: %s\n", what,
		err < 0 ? strerror((int)-err) : "failed");
	exit(1);
}

static void path_in(char *buf, size_t len, const struct opts *o,
		    const char *name)
{
	snprintf(buf, len, "%s/%s", o->dir, name);
}

static struct foliofs *fresh_volume(const struct opts *o, const char *img,
				    uint64_t bytes)
{
	struct foliofs_mkfs_opts mo = { .size = bytes, .force = 1 };
	struct foliofs *fs;
	int ret;

	unlink(img);
	ret = foliofs_mkfs(img, &mo);
	if (ret)
		die("mkfs", ret);
	ret = foliofs_mount(img, NULL, &fs);
	if (ret)
		die(foliofs_strerror(), ret);
	return fs;
}

static double bench_seqwrite(const struct opts *o)
{
	char img[4096];
	struct foliofs *fs;
	struct foliofs_file *f;
	char *buf;
	uint64_t i;
	double t0, t;
	int ret;

	path_in(img, sizeof(img), o, "persist-bench.img");
	fs = fresh_volume(o, img, o->size_mib * MIB * 2 + 256 * MIB);
	ret = foliofs_open_path(fs, "/seq", O_CREAT | O_RDWR, 0644, &f);
	if (ret)
		die("open", ret);
	if (posix_memalign((void **)&buf, 4096, MIB))
		die("memory", -ENOMEM);
	memset(buf, 0x5a, MIB);
	t0 = now_s();
	for (i = 0; i < o->size_mib; i++) {
		ssize_t n = foliofs_write(f, buf, MIB, i * MIB);

		if (n != (ssize_t)MIB)
			die("write", n);
	}
	ret = foliofs_fsync(f, 0);
	if (ret)
		die("fsync", ret);
	t = now_s() - t0;
	foliofs_release(f);
	ret = foliofs_unmount(fs);
	if (ret)
		die("unmount", ret);
	unlink(img);
	free(buf);
	return (double)o->size_mib / t;
}

/* Run fio's raw O_DIRECT sequential write; MiB/s, or -1 without fio. */
static double fio_raw(const struct opts *o)
{
	char cmd[8192], line[4096], file[4096];
	double bw = -1;
	bool in_write = false;
	FILE *p;

	if (o->skip_fio)
		return -1;
	path_in(file, sizeof(file), o, "persist-bench.raw");
	snprintf(cmd, sizeof(cmd),
		 "fio --name=raw --filename=%s --rw=write --bs=1M --size=%lluM "
		 "--direct=1 --ioengine=io_uring --iodepth=8 --end_fsync=1 "
		 "--output-format=json 2>/dev/null", file,
		 (unsigned long long)o->size_mib);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p)) {
		char *s;

		if (strstr(line, "\"write\" : {"))
			in_write = true;
		s = strstr(line, "\"bw_bytes\" : ");
		if (in_write && s && bw < 0) {
			bw = strtod(s + 13, NULL) / MIB;
			in_write = false;
		}
	}
	pclose(p);
	unlink(file);
	return bw;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static double bench_randwrite_foliofs(const struct opts *o)
{
	char img[4096];
	struct foliofs *fs;
	struct foliofs_file *f;
	uint64_t blocks = o->rand_mib * MIB / 4096, seed = 42, ops = 0;
	char *buf;
	double t0, t;
	uint64_t i;
	int ret;

	path_in(img, sizeof(img), o, "persist-bench.img");
	fs = fresh_volume(o, img, o->rand_mib * MIB * 2 + 256 * MIB);
	ret = foliofs_open_path(fs, "/rand", O_CREAT | O_RDWR, 0644, &f);
	if (ret)
		die("open", ret);
	if (posix_memalign((void **)&buf, 4096, MIB))
		die("memory", -ENOMEM);
	memset(buf, 0x33, MIB);
	for (i = 0; i < o->rand_mib; i++)
		if (foliofs_write(f, buf, MIB, i * MIB) != (ssize_t)MIB)
			die("lay out", -EIO);
	if ((ret = foliofs_fsync(f, 0)))
		die("fsync", ret);
	t0 = now_s();
	do {
		for (i = 0; i < 32; i++) {
			uint64_t b = rnd(&seed) % blocks;

			buf[0] = (char)ops;
			if (foliofs_write(f, buf, 4096, b * 4096) != 4096)
				die("write", -EIO);
			ops++;
		}
		if ((ret = foliofs_fsync(f, 0)))
			die("fsync", ret);
		t = now_s() - t0;
	} while (t < o->seconds);
	foliofs_release(f);
	if ((ret = foliofs_unmount(fs)))
		die("unmount", ret);
	unlink(img);
	free(buf);
	return (double)ops / t;
}

static double bench_randwrite_kernel(const struct opts *o)
{
	char file[4096];
	uint64_t blocks = o->rand_mib * MIB / 4096, seed = 42, ops = 0;
	char *buf;
	double t0, t;
	uint64_t i;
	int fd;

	path_in(file, sizeof(file), o, "persist-bench.ext4");
	fd = open(file, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0)
		die("open reference file", -errno);
	if (posix_memalign((void **)&buf, 4096, MIB))
		die("memory", -ENOMEM);
	memset(buf, 0x33, MIB);
	for (i = 0; i < o->rand_mib; i++)
		if (pwrite(fd, buf, MIB, (off_t)(i * MIB)) != (ssize_t)MIB)
			die("lay out reference", -errno);
	if (fsync(fd))
		die("fsync reference", -errno);
	t0 = now_s();
	do {
		for (i = 0; i < 32; i++) {
			uint64_t b = rnd(&seed) % blocks;

			buf[0] = (char)ops;
			if (pwrite(fd, buf, 4096, (off_t)(b * 4096)) != 4096)
				die("write reference", -errno);
			ops++;
		}
		if (fsync(fd))
			die("fsync reference", -errno);
		t = now_s() - t0;
	} while (t < o->seconds);
	close(fd);
	unlink(file);
	free(buf);
	return (double)ops / t;
}

/* Seconds to mount a volume with o->files files; also the create rate. */
static double bench_mount(const struct opts *o, double *create_rate)
{
	char img[4096], name[64];
	struct foliofs *fs;
	unsigned long i;
	double t0, t;
	int ret;

	path_in(img, sizeof(img), o, "persist-bench.img");
	fs = fresh_volume(o, img, 1024 * MIB);
	t0 = now_s();
	for (i = 0; i < o->files; i++) {
		struct foliofs_attr a;
		foliofs_ino_t dir;

		if (i % 1000 == 0) {
			snprintf(name, sizeof(name), "d%lu", i / 1000);
			ret = foliofs_mkdir(fs, FOLIOFS_ROOT_INO, name, 0755,
					    NULL, &a);
			if (ret)
				die("mkdir", ret);
			foliofs_forget(fs, a.ino, 1);
		}
		snprintf(name, sizeof(name), "/d%lu", i / 1000);
		if ((ret = foliofs_resolve(fs, name, &dir)))
			die("resolve", ret);
		snprintf(name, sizeof(name), "f%lu", i);
		ret = foliofs_mknod(fs, dir, name, S_IFREG | 0644, 0, NULL, &a);
		if (ret)
			die("mknod", ret);
		foliofs_forget(fs, a.ino, 1);
	}
	*create_rate = (double)o->files / (now_s() - t0);
	if ((ret = foliofs_unmount(fs)))
		die("unmount", ret);
	t0 = now_s();
	if ((ret = foliofs_mount(img, NULL, &fs)))
		die(foliofs_strerror(), ret);
	t = now_s() - t0;
	foliofs_unmount(fs);
	unlink(img);
	return t;
}

static void usage(void)
{
	printf("usage: persist-bench [--dir DIR] [--size MiB] [--rand-size MiB]\n"
	       "                     [--seconds S] [--files N] [--quick] [--json]\n"
	       "                     [--no-fio]\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "size", required_argument, NULL, 's' },
		{ "rand-size", required_argument, NULL, 'r' },
		{ "seconds", required_argument, NULL, 't' },
		{ "files", required_argument, NULL, 'f' },
		{ "quick", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "no-fio", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct opts o = { .dir = ".", .size_mib = 1024, .rand_mib = 256,
			  .seconds = 10, .files = 1000000 };
	double seq, raw, rf, rk, mount_s, create_rate;
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'd': o.dir = optarg; break;
		case 's': o.size_mib = strtoull(optarg, NULL, 0); break;
		case 'r': o.rand_mib = strtoull(optarg, NULL, 0); break;
		case 't': o.seconds = strtod(optarg, NULL); break;
		case 'f': o.files = strtoul(optarg, NULL, 0); break;
		case 'q':
			o.size_mib = 128;
			o.rand_mib = 64;
			o.seconds = 1;
			o.files = 10000;
			break;
		case 'j': o.json = true; break;
		case 'n': o.skip_fio = true; break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	if (!o.size_mib || !o.rand_mib || o.seconds <= 0) {
		usage();
		return 2;
	}
	raw = fio_raw(&o);
	seq = bench_seqwrite(&o);
	rk = bench_randwrite_kernel(&o);
	rf = bench_randwrite_foliofs(&o);
	mount_s = o.files ? bench_mount(&o, &create_rate) : 0;
	if (o.json) {
		printf("{\"seqwrite_mib_s\": %.1f, \"raw_fio_mib_s\": %.1f, "
		       "\"ratio_seqwrite_vs_raw\": %.3f, "
		       "\"randwrite_fsync_ops\": %.0f, \"ext4_randwrite_fsync_ops\": %.0f, "
		       "\"ratio_randwrite_fsync_vs_ext4\": %.3f, "
		       "\"files\": %lu, \"mount_seconds\": %.3f, "
		       "\"creates_per_s\": %.0f}\n",
		       seq, raw, raw > 0 ? seq / raw : 0, rf, rk, rf / rk,
		       o.files, mount_s, create_rate);
		return 0;
	}
	printf("%-28s %12s %12s %8s\n", "row", "foliofs", "reference", "ratio");
	printf("%-28s %9.1f MiB/s %7.1f MiB/s %8.3f  (fio raw O_DIRECT)\n",
	       "seqwrite 1M + fsync", seq, raw, raw > 0 ? seq / raw : 0);
	printf("%-28s %10.0f op/s %8.0f op/s %8.3f  (kernel fs in %s)\n",
	       "randwrite 4k, fsync/32", rf, rk, rf / rk, o.dir);
	if (o.files)
		printf("%-28s %10.3f s   (%lu files, %.0f creates/s)\n",
		       "mount", mount_s, o.files, create_rate);
	return 0;
}
