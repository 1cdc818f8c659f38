/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * backing-bench.c - what the io_uring backing store (iouring/backing.h)
 * gets out of the disk, to set beside raw fio on the same directory
 * (DESIGN.md, Performance: "sequential write + fsync at least 0.8x raw
 * O_DIRECT fio on the same backing file"; this layer must leave room for
 * the engine above it).
 *
 * Rows:
 *  seq-write-plain  1 MiB writes in order over a fresh, sparse file of
 *                   --size MiB, in batches of 8 (backing_submit() of 8
 *                   requests: "QD 8"), then one fdatasync; the time
 *                   includes the fdatasync. Plain buffers.
 *  seq-write-fixed  the same with the 8 buffers registered
 *                   (BACKING_REQ_FIXED).
 *  randread-qd1     4 KiB reads at uniformly random block offsets of the
 *                   file just written, one per batch, for --seconds.
 *  randread-qd16    the same, 16 per batch.
 *
 * The write rows run --rounds times (3 by default), alternating which goes
 * first, since on a virtual disk the first big write after another file's
 * deletion runs measurably faster or slower than the next; each reports its
 * median round.
 *
 * A batch waits for all its requests before the next one starts, whereas
 * fio --iodepth=8 keeps 8 in flight all the time, so the write rows are a
 * slightly harder test than fio's. Each write row starts from a new file,
 * as fio does. The compared fio command:
 *   fio --name=raw --filename=DIR/rawtest --rw=write --bs=1M --size=1G \
 *       --direct=1 --ioengine=io_uring --iodepth=8 --end_fsync=1
 *
 * Exit status: 0, or 1 if any I/O failed (the error is printed).
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"

#define MIB		(1ULL << 20)
#define WRITE_QD	8
#define READ_QD_MAX	16

struct opts {
	const char	*dir;
	uint64_t	size_mib;
	double		seconds;
	unsigned int	rounds;
	bool		json;
	bool		keep;
	unsigned int	open_flags;
};

struct result {
	const char	*name;
	double		seconds;
	uint64_t	bytes;
	uint64_t	ops;
};

#define MAX_ROUNDS	15

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int open_store(const struct opts *o, const char *path, bool fresh,
		      struct backing **b)
{
	int ret;

	if (fresh)
		unlink(path);
	ret = backing_open(path, o->open_flags | (fresh ? BACKING_CREATE : 0),
			   b);
	if (ret == -EINVAL && !(o->open_flags & BACKING_NO_DIRECT))
		fprintf(stderr, "backing-bench: %s: O_DIRECT not supported on "
			"this filesystem (try --no-direct, or another --dir)\n",
			path);
	else if (ret)
		fprintf(stderr, "backing-bench: %s: %s\n", path, strerror(-ret));
	return ret;
}

static int seq_write(const struct opts *o, const char *path, bool fixed,
		     struct result *r)
{
	struct backing_req reqs[WRITE_QD];
	struct iovec iov[WRITE_QD];
	uint64_t size = o->size_mib * MIB, off;
	struct backing *b;
	char *bufs;
	double t0;
	unsigned int i, n;
	int ret;

	ret = open_store(o, path, true, &b);
	if (ret)
		return ret;
	bufs = aligned_alloc(BACKING_BLOCK_SIZE, WRITE_QD * MIB);
	if (!bufs) {
		ret = -ENOMEM;
		goto out_close;
	}
	for (i = 0; i < WRITE_QD * MIB / 8; i++)
		((uint64_t *)bufs)[i] = i * 0x9e3779b97f4a7c15ULL;
	for (i = 0; i < WRITE_QD; i++)
		iov[i] = (struct iovec){ bufs + i * MIB, MIB };
	ret = backing_grow(b, size);
	if (ret)
		goto out_free;
	if (fixed) {
		ret = backing_register_buffers(b, iov, WRITE_QD);
		if (ret)
			goto out_free;
	}

	t0 = now();
	for (off = 0; off < size; off += n * MIB) {
		n = (size - off) / MIB < WRITE_QD ? (size - off) / MIB
						  : WRITE_QD;
		for (i = 0; i < n; i++)
			reqs[i] = (struct backing_req){
				.op = BACKING_OP_WRITE,
				.flags = fixed ? BACKING_REQ_FIXED : 0,
				.buf_index = i, .buf = iov[i].iov_base,
				.off = off + i * MIB, .len = MIB };
		ret = backing_submit(b, reqs, n);
		if (ret)
			goto out_free;
	}
	ret = backing_fdatasync(b);
	if (ret)
		goto out_free;
	r->seconds = now() - t0;
	r->bytes = size;
	r->ops = size / MIB;
out_free:
	free(bufs);
out_close:
	backing_close(b);
	if (ret)
		fprintf(stderr, "backing-bench: %s: write: %s\n", path,
			strerror(-ret));
	return ret;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int rand_read(const struct opts *o, const char *path, unsigned int qd,
		     struct result *r)
{
	struct backing_req reqs[READ_QD_MAX];
	uint64_t blocks = o->size_mib * MIB / BACKING_BLOCK_SIZE;
	uint64_t seed = 0x2545f4914f6cdd1dULL;
	struct backing *b;
	double t0, t = 0;
	char *bufs;
	unsigned int i;
	int ret;

	ret = open_store(o, path, false, &b);
	if (ret)
		return ret;
	bufs = aligned_alloc(BACKING_BLOCK_SIZE, qd * BACKING_BLOCK_SIZE);
	if (!bufs) {
		ret = -ENOMEM;
		goto out_close;
	}
	r->ops = 0;
	t0 = now();
	do {
		for (i = 0; i < qd; i++)
			reqs[i] = (struct backing_req){
				.op = BACKING_OP_READ,
				.buf = bufs + i * BACKING_BLOCK_SIZE,
				.off = xorshift(&seed) % blocks *
				       BACKING_BLOCK_SIZE,
				.len = BACKING_BLOCK_SIZE };
		ret = backing_submit(b, reqs, qd);
		if (ret)
			break;
		r->ops += qd;
		t = now() - t0;
	} while (t < o->seconds);
	r->seconds = t;
	r->bytes = r->ops * BACKING_BLOCK_SIZE;
	free(bufs);
out_close:
	backing_close(b);
	if (ret)
		fprintf(stderr, "backing-bench: %s: read: %s\n", path,
			strerror(-ret));
	return ret;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Both write rows, --rounds times, alternating the order; medians. */
static int seq_writes(const struct opts *o, const char *path,
		      struct result *plain, struct result *fixed)
{
	double t[2][MAX_ROUNDS];
	struct result r;
	unsigned int i, k, which;
	int ret;

	for (i = 0; i < o->rounds; i++) {
		for (k = 0; k < 2; k++) {
			which = (i + k) % 2;
			ret = seq_write(o, path, which, &r);
			if (ret)
				return ret;
			t[which][i] = r.seconds;
		}
	}
	for (k = 0; k < 2; k++)
		qsort(t[k], o->rounds, sizeof(double), cmp_double);
	*plain = r;
	plain->name = "seq-write-plain";
	plain->seconds = t[0][o->rounds / 2];
	*fixed = r;
	fixed->name = "seq-write-fixed";
	fixed->seconds = t[1][o->rounds / 2];
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: backing-bench [--dir DIR] [--size MIB] [--seconds S] [--json]\n"
"                     [--rounds N] [--keep] [--no-direct] [--quick]\n"
"  --dir DIR      where the test file goes (default $FOLIOFS_BENCH_DIR or .)\n"
"  --size MIB     file size for the write rows (default 1024)\n"
"  --seconds S    length of each random-read row (default 3)\n"
"  --rounds N     runs of each write row, median reported (default 3)\n"
"  --json         one JSON object on stdout instead of the table\n"
"  --keep         leave DIR/backing-bench.img behind\n"
"  --no-direct    buffered I/O, for filesystems without O_DIRECT\n"
"  --quick        --size 256 --seconds 1 --rounds 1\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "size", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 't' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "keep", no_argument, NULL, 'k' },
		{ "no-direct", no_argument, NULL, 'n' },
		{ "quick", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .size_mib = 1024, .seconds = 3, .rounds = 3 };
	struct result res[4] = {
		{ .name = "seq-write-plain" }, { .name = "seq-write-fixed" },
		{ .name = "randread-qd1" }, { .name = "randread-qd16" },
	};
	char path[4096];
	unsigned int i;
	int c, ret;

	o.dir = getenv("FOLIOFS_BENCH_DIR");
	if (!o.dir || !*o.dir)
		o.dir = ".";
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			o.dir = optarg;
			break;
		case 's':
			o.size_mib = strtoull(optarg, NULL, 0);
			break;
		case 't':
			o.seconds = strtod(optarg, NULL);
			break;
		case 'r':
			o.rounds = strtoul(optarg, NULL, 0);
			break;
		case 'j':
			o.json = true;
			break;
		case 'k':
			o.keep = true;
			break;
		case 'n':
			o.open_flags |= BACKING_NO_DIRECT;
			break;
		case 'q':
			o.size_mib = 256;
			o.seconds = 1;
			o.rounds = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || o.size_mib < 1 || o.seconds <= 0 ||
	    o.rounds < 1 || o.rounds > MAX_ROUNDS) {
		usage(stderr);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/backing-bench.img", o.dir);

	ret = seq_writes(&o, path, &res[0], &res[1]);
	if (!ret)
		ret = rand_read(&o, path, 1, &res[2]);
	if (!ret)
		ret = rand_read(&o, path, 16, &res[3]);
	if (!o.keep)
		unlink(path);
	if (ret)
		return 1;

	if (o.json) {
		printf("{\"bench\": \"backing\", \"dir\": \"%s\", "
		       "\"direct\": %s, \"size_mib\": %llu, \"rounds\": %u, "
		       "\"rows\": [",
		       o.dir, o.open_flags & BACKING_NO_DIRECT ? "false" : "true",
		       (unsigned long long)o.size_mib, o.rounds);
		for (i = 0; i < 4; i++)
			printf("%s{\"name\": \"%s\", \"seconds\": %.4f, "
			       "\"mb_per_s\": %.1f, \"mib_per_s\": %.1f, "
			       "\"iops\": %.0f}", i ? ", " : "", res[i].name,
			       res[i].seconds, res[i].bytes / res[i].seconds / 1e6,
			       res[i].bytes / res[i].seconds / MIB,
			       res[i].ops / res[i].seconds);
		printf("]}\n");
		return 0;
	}
	printf("backing-bench: %s, %llu MiB, %s, ring depth %u, writes: "
	       "median of %u\n", path, (unsigned long long)o.size_mib,
	       o.open_flags & BACKING_NO_DIRECT ? "buffered" : "O_DIRECT",
	       BACKING_RING_DEPTH, o.rounds);
	printf("%-18s %9s %10s %10s %10s\n", "row", "seconds", "MB/s", "MiB/s",
	       "IOPS");
	for (i = 0; i < 4; i++)
		printf("%-18s %9.3f %10.1f %10.1f %10.0f\n", res[i].name,
		       res[i].seconds, res[i].bytes / res[i].seconds / 1e6,
		       res[i].bytes / res[i].seconds / MIB,
		       res[i].ops / res[i].seconds);
	return 0;
}
