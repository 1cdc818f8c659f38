/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * replay.c - a main for a fuzz target without libFuzzer, so that any
 * compiler builds it and CI exercises the target.
 *
 *   replay FILE|DIR...                    run the target once on each file
 *                                          (to reproduce a crash input)
 *   replay --seconds S [--runs N] [--seed X] FILE|DIR...
 *                                          run each file, then mutate them
 *                                          at random (bit flips, bytes,
 *                                          interesting integers, inserts,
 *                                          deletes, splices) for S seconds
 *                                          or N runs
 *
 * The mutations are blind (no coverage feedback): this is a smoke test of
 * the target on inputs near the seeds, not a fuzzing campaign; that is
 * libFuzzer's job (tests/fuzz/README.md). Same seed, same inputs, in the
 * same order. When an input crashes the target, it is written to
 * "replay-crash-<seed>-<run>" in the current directory first, so that
 * "replay that-file" reproduces it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

#define MAX_LEN	(64U << 10)

struct input {
	uint8_t	*data;
	size_t	len;
	char	name[64];	/* the file's, for the crash file */
};

static struct input *corpus;
static size_t ncorpus;

/* What runs now, for the crash handler. */
static const uint8_t *cur_data;
static size_t cur_len;
static char cur_name[128];

static void save_current(void)
{
	int fd;

	if (!cur_name[0])
		return;
	fd = open(cur_name, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd >= 0) {
		ssize_t n = write(fd, cur_data, cur_len);

		(void)n;
		close(fd);
	}
}

static void on_crash(int sig)
{
	static const char msg[] = "replay: crashed; the input is saved as ";

	save_current();
	if (write(2, msg, sizeof(msg) - 1) > 0 &&
	    write(2, cur_name, strlen(cur_name)) > 0)
		(void)!write(2, "\n", 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* AddressSanitizer reports and exits without a signal: hook its death. */
void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

static void on_sanitizer_death(void)
{
	save_current();
	fprintf(stderr, "replay: the input is saved as %s\n", cur_name);
}

static void add_file(const char *path)
{
	struct input in;
	FILE *f = fopen(path, "rb");

	if (!f) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	in.data = malloc(MAX_LEN);
	if (!in.data)
		exit(2);
	in.len = fread(in.data, 1, MAX_LEN, f);
	fclose(f);
	snprintf(in.name, sizeof(in.name), "%s",
		 strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
	corpus = realloc(corpus, (ncorpus + 1) * sizeof(*corpus));
	if (!corpus)
		exit(2);
	corpus[ncorpus++] = in;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A file, or every regular file of a directory in name order. */
static void add_path(const char *path)
{
	struct dirent *de;
	struct stat st;
	char **names = NULL;
	size_t n = 0, i;
	DIR *d;

	if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
		add_file(path);
		return;
	}
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char full[4096];

		if (de->d_name[0] == '.')
			continue;
		snprintf(full, sizeof(full), "%s/%s", path, de->d_name);
		if (stat(full, &st) || !S_ISREG(st.st_mode))
			continue;
		names = realloc(names, (n + 1) * sizeof(*names));
		names[n++] = strdup(full);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_names);
	for (i = 0; i < n; i++) {
		add_file(names[i]);
		free(names[i]);
	}
	free(names);
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static const uint64_t interesting[] = {
	0, 1, 2, 7, 8, 16, 64, 255, 256, 4095, 4096, 4097, 65535, 65536,
	0x7fffffff, 0x80000000, 0xffffffff, 1ULL << 32, 1ULL << 40,
	1ULL << 62, 0x7fffffffffffffffULL, ~0ULL,
};

/* Change @buf[*len] (room for MAX_LEN) in one random way. */
static void mutate(uint8_t *buf, size_t *len, uint64_t *rng)
{
	size_t n = *len, pos, k;
	uint64_t v;

	if (!n) {
		buf[0] = (uint8_t)rng_next(rng);
		*len = 1;
		return;
	}
	pos = rng_next(rng) % n;
	switch (rng_next(rng) % 8) {
	case 0:			/* flip a bit */
		buf[pos] ^= (uint8_t)(1U << (rng_next(rng) % 8));
		break;
	case 1:			/* a random byte */
		buf[pos] = (uint8_t)rng_next(rng);
		break;
	case 2:			/* an interesting integer, 1 to 8 bytes */
		v = interesting[rng_next(rng) %
				(sizeof(interesting) / sizeof(interesting[0]))];
		k = 1U << (rng_next(rng) % 4);
		if (rng_next(rng) % 4 == 0)
			v = -v;
		for (; k && pos < n; k--, pos++, v >>= 8)
			buf[pos] = (uint8_t)v;
		break;
	case 3:			/* add or subtract a little */
		buf[pos] += (uint8_t)(rng_next(rng) % 33) - 16;
		break;
	case 4:			/* insert random bytes */
		k = 1 + rng_next(rng) % 16;
		if (n + k > MAX_LEN)
			break;
		memmove(buf + pos + k, buf + pos, n - pos);
		*len = n + k;
		while (k--)
			buf[pos + k] = (uint8_t)rng_next(rng);
		break;
	case 5:			/* delete bytes (never the mode byte) */
		if (!pos)
			break;
		k = 1 + rng_next(rng) % 16;
		if (k > n - pos)
			k = n - pos;
		memmove(buf + pos, buf + pos + k, n - pos - k);
		*len = n - k;
		break;
	case 6: {		/* copy a chunk within */
		size_t from = rng_next(rng) % n;

		k = 1 + rng_next(rng) % 32;
		if (k > n - from)
			k = n - from;
		if (k > n - pos)
			k = n - pos;
		memmove(buf + pos, buf + from, k);
		break;
	}
	case 7: {		/* splice in a piece of another input */
		const struct input *o = &corpus[rng_next(rng) % ncorpus];
		size_t from;

		if (!o->len)
			break;
		from = rng_next(rng) % o->len;
		k = 1 + rng_next(rng) % 64;
		if (k > o->len - from)
			k = o->len - from;
		if (k > n - pos)
			k = n - pos;
		memcpy(buf + pos, o->data + from, k);
		break;
	}
	}
}

static void run_one(const uint8_t *data, size_t len, const char *name)
{
	cur_data = data;
	cur_len = len;
	snprintf(cur_name, sizeof(cur_name), "%s", name);
	LLVMFuzzerTestOneInput(data, len);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double seconds = 0, t0;
	uint64_t runs = 0, seed = 1, rng, i;
	bool mutating = false;
	uint8_t *buf;
	int a;

	for (a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--seconds") && a + 1 < argc) {
			seconds = atof(argv[++a]);
			mutating = true;
		} else if (!strcmp(argv[a], "--runs") && a + 1 < argc) {
			runs = strtoull(argv[++a], NULL, 0);
			mutating = true;
		} else if (!strcmp(argv[a], "--seed") && a + 1 < argc) {
			seed = strtoull(argv[++a], NULL, 0);
		} else if (argv[a][0] == '-') {
			fprintf(stderr, "usage: %s [--seconds S] [--runs N] "
				"[--seed X] FILE|DIR...\n", argv[0]);
			return 2;
		} else {
			add_path(argv[a]);
		}
	}
	if (!ncorpus) {
		fprintf(stderr, "replay: no input files\n");
		return 2;
	}
	if (__sanitizer_set_death_callback) {
		/* Its own handlers report better than ours: keep them. */
		__sanitizer_set_death_callback(on_sanitizer_death);
	} else {
		static char altstack[1 << 16];
		stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
		struct sigaction sa = { .sa_handler = on_crash,
					.sa_flags = SA_ONSTACK };
		int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
		size_t k;

		/* On its own stack, so that a stack overflow is caught too. */
		sigaltstack(&ss, NULL);
		for (k = 0; k < sizeof(sigs) / sizeof(sigs[0]); k++)
			sigaction(sigs[k], &sa, NULL);
	}
	LLVMFuzzerInitialize(&argc, &argv);

	t0 = now_s();
	for (i = 0; i < ncorpus; i++) {
		char name[96];

		snprintf(name, sizeof(name), "replay-crash-%s", corpus[i].name);
		run_one(corpus[i].data, corpus[i].len, name);
	}
	if (!mutating) {
		printf("replay: %zu inputs ran\n", ncorpus);
		return 0;
	}

	buf = malloc(MAX_LEN);
	if (!buf)
		return 2;
	rng = seed;
	for (i = 0; (!runs || i < runs) && (!seconds || now_s() - t0 < seconds);
	     i++) {
		const struct input *in = &corpus[rng_next(&rng) % ncorpus];
		size_t len = in->len;
		unsigned int m, nm = 1 + rng_next(&rng) % 4;
		char name[128];

		memcpy(buf, in->data, len);
		for (m = 0; m < nm; m++)
			mutate(buf, &len, &rng);
		snprintf(name, sizeof(name), "replay-crash-%" PRIu64 "-%" PRIu64,
			 seed, i);
		run_one(buf, len, name);
	}
	printf("replay: seed %" PRIu64 ": %zu inputs and %" PRIu64
	       " mutations ran in %.1f s\n", seed, ncorpus, i, now_s() - t0);
	free(buf);
	return 0;
}
