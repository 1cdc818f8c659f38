// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * foliofs-stat - live statistics of a mounted foliofs volume.
 *
 *	foliofs-stat MOUNTPOINT [-i SECONDS [-c COUNT]] [--json] [-t SECONDS]
 *
 * The daemon (fuse/foliofs.c) serves the engine's foliofs_stats() on a unix
 * socket, /run/foliofs/<st_dev>.sock, <st_dev> being the mount's device
 * number in decimal (or /run/user/<uid>/foliofs/<st_dev>.sock for a daemon
 * of an unprivileged user, <uid> from the mount's user_id). Each
 * connection gets one JSON object on one line. Here we find the socket
 * from stat(MOUNTPOINT) and /proc/self/mountinfo, read one object per
 * sample, and print it: once as a summary, or every -i SECONDS as a row
 * of a table (rates over the interval; the first row's since the mount,
 * as iostat does), or with --json as the daemon's object with the rates
 * added, one per line.
 *
 * Exit status: 0; 1 when the path is not a foliofs mount, the daemon does
 * not answer, or it goes away; 2 for a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "foliofs.h"

#define STATS_DIR	"/run/foliofs"
#define ANSWER_MAX	16384
#define HEADER_EVERY	20	/* table rows between headers, on a tty */

/* One answer of the daemon, parsed. Unknown keys are skipped, so a newer
 * daemon's answer still reads. */
struct sample {
	double		time;		/* seconds since the epoch */
	double		uptime;		/* seconds since the mount */
	uint64_t	pid;
	uint64_t	dev;
	uint64_t	block_size;
	uint64_t	cached_bytes;
	uint64_t	cached_bytes_by_order[10];
	uint64_t	cache_limit_bytes;
	uint64_t	hits;
	uint64_t	misses;
	uint64_t	readahead_pages;
	uint64_t	dirty_bytes;
	uint64_t	writeback_bytes;
	uint64_t	written_bytes;
	uint64_t	writeback_errors;
	uint64_t	reserved_blocks;
	uint64_t	pinned_folios;
	uint64_t	reclaimed_folios;
	uint64_t	splits;
	uint64_t	split_failures;
	uint64_t	throttled_writes;
	uint64_t	commits;
	uint64_t	log_bytes;
	uint64_t	log_used_bytes;
	uint64_t	log_size_bytes;
	uint64_t	checkpoints;
	uint64_t	inodes;
	uint64_t	free_blocks;
	uint64_t	total_blocks;
	char		image[PATH_MAX];
	char		error[256];	/* the daemon could not read its stats */
	char		raw[ANSWER_MAX];	/* the line, without its newline */
	size_t		raw_len;
};

#define U64(f)	{ #f, offsetof(struct sample, f) }
static const struct {
	const char	*name;
	size_t		off;
} u64_fields[] = {
	U64(pid), U64(dev), U64(block_size), U64(cached_bytes),
	U64(cache_limit_bytes), U64(hits), U64(misses), U64(readahead_pages),
	U64(dirty_bytes), U64(writeback_bytes), U64(written_bytes),
	U64(writeback_errors), U64(reserved_blocks), U64(pinned_folios),
	U64(reclaimed_folios), U64(splits), U64(split_failures),
	U64(throttled_writes), U64(commits), U64(log_bytes),
	U64(log_used_bytes), U64(log_size_bytes), U64(checkpoints),
	U64(inodes), U64(free_blocks), U64(total_blocks),
};

/* ---- A JSON reader for the daemon's one flat object ----------------------- */

static void skip_ws(const char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

/* parse_string() - a JSON string into @out (cut to @cap); \u escapes
 * outside ASCII become '?'. Return: 0, or -EPROTO. */
static int parse_string(const char **p, char *out, size_t cap)
{
	const char *s = *p;
	size_t n = 0;
	unsigned int u;
	char c;

	if (*s++ != '"')
		return -EPROTO;
	while (*s != '"') {
		c = *s++;
		if (!c)
			return -EPROTO;
		if (c == '\\') {
			c = *s++;
			switch (c) {
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u':
				if (sscanf(s, "%4x", &u) != 1)
					return -EPROTO;
				s += 4;
				c = u < 0x80 ? (char)u : '?';
				break;
			case '"': case '\\': case '/':
				break;
			default:
				return -EPROTO;
			}
		}
		if (n + 1 < cap)
			out[n++] = c;
	}
	if (cap)
		out[n] = '\0';
	*p = s + 1;
	return 0;
}

/* parse_number() - a JSON number, exact as a u64 when it is a plain
 * non-negative integer. Return: 0, or -EPROTO. */
static int parse_number(const char **p, double *d, uint64_t *u)
{
	const char *s = *p;
	char *end;

	errno = 0;
	*d = strtod(s, &end);
	if (end == s)
		return -EPROTO;
	if (strspn(s, "0123456789") == (size_t)(end - s))
		*u = strtoull(s, NULL, 10);
	else
		*u = *d < 0 ? 0 : (uint64_t)*d;
	*p = end;
	return 0;
}

static uint64_t *u64_field(struct sample *sm, const char *key)
{
	size_t i;

	for (i = 0; i < sizeof(u64_fields) / sizeof(u64_fields[0]); i++)
		if (!strcmp(u64_fields[i].name, key))
			return (uint64_t *)((char *)sm + u64_fields[i].off);
	return NULL;
}

/* skip_value() - a value we do not know: a string, a number, a literal, or
 * an array of those. */
static int skip_value(const char **p)
{
	char scratch[8];
	uint64_t u;
	double d;

	skip_ws(p);
	if (**p == '"')
		return parse_string(p, scratch, sizeof(scratch));
	if (**p == '[') {
		(*p)++;
		for (;;) {
			skip_ws(p);
			if (**p == ']') {
				(*p)++;
				return 0;
			}
			if (skip_value(p))
				return -EPROTO;
			skip_ws(p);
			if (**p == ',')
				(*p)++;
		}
	}
	if (!strncmp(*p, "true", 4) || !strncmp(*p, "null", 4)) {
		*p += 4;
		return 0;
	}
	if (!strncmp(*p, "false", 5)) {
		*p += 5;
		return 0;
	}
	return parse_number(p, &d, &u);
}

/* parse_sample() - the daemon's answer into @sm. Return: 0, or -EPROTO. */
static int parse_sample(const char *json, struct sample *sm)
{
	const char *p = json;
	char key[64];
	uint64_t u, *field;
	double d;
	int i;

	skip_ws(&p);
	if (*p++ != '{')
		return -EPROTO;
	for (;;) {
		skip_ws(&p);
		if (*p == '}')
			return 0;
		if (parse_string(&p, key, sizeof(key)))
			return -EPROTO;
		skip_ws(&p);
		if (*p++ != ':')
			return -EPROTO;
		skip_ws(&p);
		if (!strcmp(key, "image") || !strcmp(key, "error")) {
			if (parse_string(&p, !strcmp(key, "image") ? sm->image :
					 sm->error, !strcmp(key, "image") ?
					 sizeof(sm->image) : sizeof(sm->error)))
				return -EPROTO;
		} else if (!strcmp(key, "cached_bytes_by_order") && *p == '[') {
			p++;
			for (i = 0;; i++) {
				skip_ws(&p);
				if (*p == ']') {
					p++;
					break;
				}
				if (parse_number(&p, &d, &u))
					return -EPROTO;
				if (i < 10)
					sm->cached_bytes_by_order[i] = u;
				skip_ws(&p);
				if (*p == ',')
					p++;
			}
		} else if ((field = u64_field(sm, key)) && *p != '"') {
			if (parse_number(&p, &d, field))
				return -EPROTO;
		} else if (!strcmp(key, "time") || !strcmp(key, "uptime")) {
			if (parse_number(&p, !strcmp(key, "time") ? &sm->time :
					 &sm->uptime, &u))
				return -EPROTO;
		} else if (skip_value(&p)) {
			return -EPROTO;
		}
		skip_ws(&p);
		if (*p == ',')
			p++;
		else if (*p != '}')
			return -EPROTO;
	}
}

/* ---- Finding and asking the daemon ----------------------------------------- */

struct target {
	const char	*path;		/* as the user gave it */
	dev_t		dev;
	char		sock[2][sizeof(((struct sockaddr_un *)0)->sun_path)];
	int		nsock;
	int		timeout_ms;
};

/*
 * find_mount() - the mountinfo line of device @dev: its type, and the
 * user_id= of its super options (the daemon's owner, -1 if none).
 * Return: 0, or -ENOENT.
 */
static int find_mount(dev_t dev, char *type, size_t tlen, long *owner)
{
	unsigned int major, minor;
	char *line = NULL, *sep, *t = NULL, *src = NULL, *opts = NULL, *uid;
	size_t cap = 0;
	int ret = -ENOENT;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	while (ret && getline(&line, &cap, f) > 0) {
		sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%*u %*u %u:%u", &major, &minor) != 2 ||
		    makedev(major, minor) != dev)
			continue;
		if (sscanf(sep, " - %ms %ms %ms", &t, &src, &opts) >= 1) {
			snprintf(type, tlen, "%s", t);
			*owner = -1;
			uid = opts ? strstr(opts, "user_id=") : NULL;
			if (uid)
				*owner = strtol(uid + 8, NULL, 10);
			ret = 0;
		}
		free(t);
		free(src);
		free(opts);
		t = src = opts = NULL;
	}
	free(line);
	fclose(f);
	return ret;
}

/* locate() - check @t->path is on a foliofs mount and name the sockets its
 * daemon may serve. Return: 0, or 1 (said why). */
static int locate(struct target *t)
{
	char type[64];
	struct stat st;
	long owner;

	if (stat(t->path, &st)) {
		if (errno == ENOTCONN)
			fprintf(stderr, "foliofs-stat: %s: the filesystem's daemon "
				"is gone (%s); unmount it with umount or "
				"fusermount3 -u\n", t->path, strerror(errno));
		else
			fprintf(stderr, "foliofs-stat: %s: %s\n", t->path,
				strerror(errno));
		return 1;
	}
	if (find_mount(st.st_dev, type, sizeof(type), &owner)) {
		fprintf(stderr, "foliofs-stat: %s is not a foliofs mount (device "
			"%u:%u is not in /proc/self/mountinfo)\n", t->path,
			major(st.st_dev), minor(st.st_dev));
		return 1;
	}
	if (strcmp(type, "fuse.foliofs")) {
		fprintf(stderr, "foliofs-stat: %s is not a foliofs mount (its "
			"filesystem is %s)\n", t->path, type);
		return 1;
	}
	t->dev = st.st_dev;
	t->nsock = 0;
	snprintf(t->sock[t->nsock++], sizeof(t->sock[0]), "%s/%llu.sock",
		 STATS_DIR, (unsigned long long)st.st_dev);
	if (owner > 0)
		snprintf(t->sock[t->nsock++], sizeof(t->sock[0]),
			 "/run/user/%ld/foliofs/%llu.sock", owner,
			 (unsigned long long)st.st_dev);
	return 0;
}

/* connect_to() - a connected socket to @path, or -errno. */
static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* fetch() - one sample from the daemon of @t. Return: 0, or 1 (said). */
static int fetch(const struct target *t, struct sample *sm)
{
	struct pollfd p = { .events = POLLIN };
	const char *sock = t->sock[0];
	long long deadline;
	size_t len = 0;
	ssize_t n;
	int fd = -ENOENT, i, ret = 1;

	for (i = 0; i < t->nsock; i++) {
		sock = t->sock[i];
		fd = connect_to(sock);
		if (fd != -ENOENT)
			break;
	}
	if (fd < 0) {
		if (fd == -ENOENT)
			fprintf(stderr, "foliofs-stat: the foliofs daemon for %s "
				"serves no statistics: there is no %s (a daemon "
				"older than foliofs-stat, or one that could not "
				"create it: see its messages)\n", t->path,
				t->sock[0]);
		else if (fd == -ECONNREFUSED)
			fprintf(stderr, "foliofs-stat: the foliofs daemon for %s "
				"is not answering (%s refuses connections)\n",
				t->path, sock);
		else if (fd == -EACCES)
			fprintf(stderr, "foliofs-stat: %s: permission denied (the "
				"daemon serves statistics to its own user, or to "
				"everyone with -o allow_other)\n", sock);
		else
			fprintf(stderr, "foliofs-stat: %s: %s\n", sock,
				strerror(-fd));
		return 1;
	}
	p.fd = fd;
	deadline = now_ms() + t->timeout_ms;
	for (;;) {
		n = poll(&p, 1, (int)(deadline - now_ms() > 0 ?
				      deadline - now_ms() : 0));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "foliofs-stat: the foliofs daemon for %s "
				"is not answering (no reply in %.3g s)\n",
				t->path, t->timeout_ms / 1000.0);
			goto out_close;
		}
		n = read(fd, sm->raw + len, sizeof(sm->raw) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "foliofs-stat: reading %s: %s\n", sock,
				strerror(errno));
			goto out_close;
		}
		if (n == 0)
			break;
		len += n;
		if (len == sizeof(sm->raw) - 1)
			break;
	}
	while (len && (sm->raw[len - 1] == '\n' || sm->raw[len - 1] == ' '))
		len--;
	sm->raw[len] = '\0';
	sm->raw_len = len;
	if (!len || parse_sample(sm->raw, sm)) {
		fprintf(stderr, "foliofs-stat: unexpected answer from the daemon "
			"for %s: '%.80s'\n", t->path, sm->raw);
		goto out_close;
	}
	if (sm->error[0]) {
		fprintf(stderr, "foliofs-stat: the daemon for %s could not read "
			"its statistics: %s\n", t->path, sm->error);
		goto out_close;
	}
	if (sm->dev != (uint64_t)t->dev) {
		fprintf(stderr, "foliofs-stat: %s answered for device %llu, not "
			"for %s (device %llu)\n", sock,
			(unsigned long long)sm->dev, t->path,
			(unsigned long long)t->dev);
		goto out_close;
	}
	ret = 0;
out_close:
	close(fd);
	return ret;
}

/* ---- Printing ------------------------------------------------------------------ */

/* human() - "12.3 MiB". */
static const char *human(uint64_t v, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB",
					    "PiB", "EiB" };
	double d = (double)v;
	int i = 0;

	while (d >= 1024 && i < 6) {
		d /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)v);
	else
		snprintf(buf, len, "%.1f %s", d, unit[i]);
	return buf;
}

/* brief() - at most 5 characters, for the table: "0", "812", "9.5K",
 * "640M", "1.2G". */
static const char *brief(double v, char *buf, size_t len)
{
	static const char unit[] = "KMGTPE";
	int i = -1;

	if (v < 0)
		v = 0;
	while (v >= 999.5 && i < 5) {
		v /= 1024;
		i++;
	}
	if (i < 0)
		snprintf(buf, len, "%.0f", v);
	else if (v < 9.95)
		snprintf(buf, len, "%.1f%c", v, unit[i]);
	else
		snprintf(buf, len, "%.0f%c", v, unit[i]);
	return buf;
}

static double pct(double part, double whole)
{
	return whole > 0 ? 100.0 * part / whole : 0;
}

static void print_summary(const char *path, const struct sample *s)
{
	uint64_t reads = s->hits + s->misses, total, free_b;
	char a[32], b[32], c[32];
	bool any = false;
	int o;

	total = s->total_blocks * s->block_size;
	free_b = s->free_blocks * s->block_size;
	printf("foliofs on %s (image %s, daemon pid %llu, mounted %.0f s ago)\n",
	       path, s->image, (unsigned long long)s->pid, s->uptime);
	printf("cache       %s of %s (%.1f%%)\n", human(s->cached_bytes, a,
	       sizeof(a)), human(s->cache_limit_bytes, b, sizeof(b)),
	       pct(s->cached_bytes, s->cache_limit_bytes));
	printf("  by order ");
	for (o = 0; o < 10; o++) {
		if (!s->cached_bytes_by_order[o])
			continue;
		printf(" %d (%s): %s;", o, brief(4096.0 * (1u << o), b,
		       sizeof(b)), human(s->cached_bytes_by_order[o], a,
		       sizeof(a)));
		any = true;
	}
	printf("%s\n", any ? "" : " nothing cached");
	if (reads)
		printf("reads       %llu folios: %llu hits, %llu misses "
		       "(%.1f%% hit ratio); %llu pages read ahead\n",
		       (unsigned long long)reads, (unsigned long long)s->hits,
		       (unsigned long long)s->misses, pct(s->hits, reads),
		       (unsigned long long)s->readahead_pages);
	else
		printf("reads       none yet; %llu pages read ahead\n",
		       (unsigned long long)s->readahead_pages);
	printf("dirty       %s; under writeback %s; reserved %llu blocks "
	       "(%s); pinned %llu folios\n",
	       human(s->dirty_bytes, a, sizeof(a)),
	       human(s->writeback_bytes, b, sizeof(b)),
	       (unsigned long long)s->reserved_blocks,
	       human(s->reserved_blocks * s->block_size, c, sizeof(c)),
	       (unsigned long long)s->pinned_folios);
	printf("writeback   %s written (%s/s since the mount); %llu errors; "
	       "%llu writers throttled\n", human(s->written_bytes, a, sizeof(a)),
	       human(s->uptime > 0 ? (uint64_t)(s->written_bytes / s->uptime) :
		     0, b, sizeof(b)),
	       (unsigned long long)s->writeback_errors,
	       (unsigned long long)s->throttled_writes);
	printf("reclaim     %llu folios reclaimed; %llu splits, %llu failed\n",
	       (unsigned long long)s->reclaimed_folios,
	       (unsigned long long)s->splits,
	       (unsigned long long)s->split_failures);
	printf("log         %s of %s used since the last checkpoint (%.1f%%); "
	       "%llu commits, %llu checkpoints, %s logged\n",
	       human(s->log_used_bytes, a, sizeof(a)),
	       human(s->log_size_bytes, b, sizeof(b)),
	       pct(s->log_used_bytes, s->log_size_bytes),
	       (unsigned long long)s->commits,
	       (unsigned long long)s->checkpoints,
	       human(s->log_bytes, c, sizeof(c)));
	printf("inodes      %llu\n", (unsigned long long)s->inodes);
	printf("space       %s free of %s (%.1f%%)\n", human(free_b, a, sizeof(a)),
	       human(total, b, sizeof(b)), pct(free_b, total));
}

static void print_header(void)
{
	printf("%6s %6s %6s %6s %6s %4s %5s %6s %6s %5s %5s %4s %5s %5s %7s %6s\n",
	       "cached", "dirty", "wback", "wb/s", "resv", "pin", "hit%",
	       "ra/s", "recl/s", "spl/s", "sfail", "errs", "thrtl", "log%",
	       "inodes", "free");
}

/* Per second from @prev to @s, or since the mount when there is no @prev. */
#define RATE(s, prev, dt, f) \
	(((double)(s)->f - ((prev) ? (double)(prev)->f : 0)) / (dt))

static void print_row(const struct sample *s, const struct sample *prev,
		      double dt)
{
	char b[8][16];
	double hits = RATE(s, prev, 1, hits), misses = RATE(s, prev, 1, misses);
	char hit[8];

	if (hits + misses > 0)
		snprintf(hit, sizeof(hit), "%.1f", pct(hits, hits + misses));
	else
		snprintf(hit, sizeof(hit), "-");
	printf("%6s %6s %6s %6s %6s %4llu %5s %6.0f %6.0f %5.0f %5llu %4llu "
	       "%5llu %5.1f %7llu %6s\n",
	       brief(s->cached_bytes, b[0], 16), brief(s->dirty_bytes, b[1], 16),
	       brief(s->writeback_bytes, b[2], 16),
	       brief(RATE(s, prev, dt, written_bytes), b[3], 16),
	       brief((double)s->reserved_blocks * s->block_size, b[4], 16),
	       (unsigned long long)s->pinned_folios, hit,
	       RATE(s, prev, dt, readahead_pages),
	       RATE(s, prev, dt, reclaimed_folios), RATE(s, prev, dt, splits),
	       (unsigned long long)s->split_failures,
	       (unsigned long long)s->writeback_errors,
	       (unsigned long long)s->throttled_writes,
	       pct(s->log_used_bytes, s->log_size_bytes),
	       (unsigned long long)s->inodes,
	       brief((double)s->free_blocks * s->block_size, b[5], 16));
}

/* print_json() - the daemon's object, with the rates over @dt added. */
static void print_json(const struct sample *s, const struct sample *prev,
		       double dt)
{
	double hits = RATE(s, prev, 1, hits), misses = RATE(s, prev, 1, misses);
	size_t len = s->raw_len;

	/* The object ends in '}': open it again for our fields. */
	while (len && s->raw[len - 1] != '}')
		len--;
	if (len)
		len--;
	printf("%.*s,\"interval\":%.6f,\"written_bytes_per_sec\":%.0f,"
	       "\"readahead_pages_per_sec\":%.1f,\"reclaimed_folios_per_sec\":%.1f,"
	       "\"hit_ratio\":", (int)len, s->raw, dt,
	       RATE(s, prev, dt, written_bytes), RATE(s, prev, dt, readahead_pages),
	       RATE(s, prev, dt, reclaimed_folios));
	if (hits + misses > 0)
		printf("%.4f}\n", hits / (hits + misses));
	else
		printf("null}\n");
}

/* ---- Main ---------------------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
"usage: foliofs-stat MOUNTPOINT [-i SECONDS [-c COUNT]] [--json] [-t SECONDS]\n"
"\n"
"Live statistics of the foliofs volume mounted at MOUNTPOINT.\n"
"\n"
"  -i, --interval SECONDS  a table row every SECONDS (fractions allowed),\n"
"                          rates over the interval; the first row's since\n"
"                          the mount\n"
"  -c, --count COUNT       stop after COUNT samples (default: 1, or no end\n"
"                          with -i)\n"
"  -j, --json              one JSON object per sample, one per line\n"
"  -t, --timeout SECONDS   wait this long for the daemon (default 5)\n"
"  -h, --help              print this help\n"
"  -V, --version           print the version\n"
"\n"
"Table columns: cached, dirty, wback (bytes under writeback), wb/s (bytes\n"
"written back per second), resv (delalloc reservations, bytes), pin (pinned\n"
"folios), hit%% (cache hits over the interval), ra/s (pages read ahead),\n"
"recl/s (folios reclaimed), spl/s (folio splits), sfail (failed splits),\n"
"errs (writeback errors), thrtl (writers throttled), log%% (metadata log\n"
"used since the last checkpoint), inodes, free (free space; reservations\n"
"not subtracted). Sizes are in K, M, G (powers of 1024).\n"
"\n"
"Exit status: 0; 1 not a foliofs mount, or the daemon did not answer;\n"
"2 usage error.\n");
}

static int parse_seconds(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (errno || end == s || *end || !(*out > 0) || *out > 86400.0 * 365)
		return -EINVAL;
	return 0;
}

static void sleep_until(const struct timespec *t)
{
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, t, NULL) == EINTR)
		;
}

int main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	static struct sample samples[2];
	struct sample *cur, *prev = NULL;
	struct target t = { .timeout_ms = 5000 };
	double interval = 0, timeout, dt;
	unsigned long long count = 0, n;
	struct timespec next;
	bool json = false;
	char *end;
	int c, rows = 0;

	while ((c = getopt_long(argc, argv, "i:c:jt:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'i':
			if (parse_seconds(optarg, &interval)) {
				fprintf(stderr, "foliofs-stat: bad interval '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'c':
			errno = 0;
			count = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || !count ||
			    optarg[0] == '-') {
				fprintf(stderr, "foliofs-stat: bad count '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'j':
			json = true;
			break;
		case 't':
			if (parse_seconds(optarg, &timeout)) {
				fprintf(stderr, "foliofs-stat: bad timeout '%s'\n",
					optarg);
				return 2;
			}
			t.timeout_ms = (int)(timeout * 1000) ?: 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("foliofs-stat (libfoliofs %s)\n", foliofs_version());
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	if (count && !interval) {
		fprintf(stderr, "foliofs-stat: -c COUNT needs -i SECONDS\n");
		return 2;
	}
	if (!interval)
		count = 1;
	t.path = argv[optind];
	if (locate(&t))
		return 1;

	clock_gettime(CLOCK_MONOTONIC, &next);
	for (n = 0; !count || n < count; n++) {
		cur = &samples[n & 1];
		memset(cur, 0, sizeof(*cur));
		if (fetch(&t, cur))
			return 1;
		/* The first sample's rates are since the mount. */
		dt = prev ? cur->uptime - prev->uptime : cur->uptime;
		if (dt <= 0)
			dt = 1e-6;
		if (json) {
			print_json(cur, prev, dt);
		} else if (!interval) {
			print_summary(t.path, cur);
		} else {
			if (rows == 0 ||
			    (isatty(STDOUT_FILENO) && rows % HEADER_EVERY == 0))
				print_header();
			print_row(cur, prev, dt);
			rows++;
		}
		fflush(stdout);
		prev = cur;
		if (count && n + 1 == count)
			break;
		next.tv_sec += (time_t)interval;
		next.tv_nsec += (long)((interval - (double)(time_t)interval) * 1e9);
		if (next.tv_nsec >= 1000000000) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000;
		}
		sleep_until(&next);
	}
	return 0;
}
