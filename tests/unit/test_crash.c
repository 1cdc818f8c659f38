/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test_crash.c - crash consistency and write-error handling of the whole
 * engine, through foliofs.h.
 *
 * A workload (a hand-written script, or a seeded random one) runs through
 * a mounted volume whose store is stacked as
 *
 *	mount -> keep -> crashsim -> [faulty ->] O_DIRECT image file
 *
 * ("keep" only passes I/O down; closing it leaves the simulator open, so
 * the record outlives the unmount). A model follows every call: each file
 * (a "fid") with its inode number, the content it must have now, every
 * write, truncate and punch with the crash point at which it was issued,
 * and a copy of its content at each fsync/fdatasync/syncfs that returned 0
 * (with the crash point after it returned); the namespace after every call
 * that changed it.
 *
 * Data carries its origin: the 8-byte word at file offset o written by
 * write number v of file f is pat(f, v, o), never 0. So each word read
 * back names the file, the write and the offset it came from.
 *
 * Then, for each chosen crash point n and mode (DROP: every write no flush
 * covered is lost; TORN: each such write lands, is lost, or is cut at a
 * 512-byte sector), the image a power cut at n leaves is made into a file
 * and:
 *  - foliofs_fsck() on it returns 0;
 *  - foliofs_mount() succeeds; the namespace (every path, and the inode it
 *    names) is exactly the namespace after some call issued before n and
 *    not before the last syncfs that returned by n: a crash shows a state
 *    that existed, and never loses a syncfs (so a rename over an existing
 *    file shows the old file or the new one, never neither);
 *  - every word of every file is 0 or was written to that offset of that
 *    file by a write issued before n (no stale, foreign or garbage data);
 *    no file is larger than it ever was;
 *  - for each file, the content of its last fsync (or syncfs) that returned
 *    by n is there, except where a later call issued before n changed it,
 *    and the size is at least that content's unless a later truncate cut
 *    it; with no later call, content and size are exactly that;
 *  - a file fsynced by n is still there, under some name, unless a later
 *    call removed one of its names;
 *  - the unmount after the check returns 0 (and now and then fsck passes
 *    again on what recovery wrote).
 *
 * The write-error tests put a fault injector under the simulator: the Nth
 * data write, a flush, the log's writes or the superblock's fail with
 * -EIO. They check what fsync reports (errseq: once per open file), that
 * the data stays dirty and is written by the retry, that reservations are
 * released, and then run the same crash checks over every point of that
 * workload, failed calls included, and a real remount.
 *
 * The checker is checked too: it must find a lost fsync and a block of
 * one file inside another.
 *
 * Bounded for CI (about 15 s; a minute under ASan): every crash point of
 * the scripts, of two seeded random workloads and of the write-error
 * workloads. FOLIOFS_CRASH_ALL=1 also checks every point of 24 longer random
 * workloads (some 6000 points, a minute or two; FOLIOFS_CRASH_RUNS=n for
 * more); FOLIOFS_CRASH_SEED=s picks the random workloads' seed.
 * To debug one failure: FOLIOFS_CRASH_POINT=n checks only point n,
 * FOLIOFS_CRASH_TRACE=1 prints each call with its crash point and
 * FOLIOFS_CRASH_DUMP=1 the simulator's record. The workload's image lives in
 * $FOLIOFS_TEST_DIR; the crash images in $FOLIOFS_CRASH_DIR, by default
 * /dev/shm if the engine opens images there (see pick_crash_dir()).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "backing.h"
#include "crashsim.h"
#include "faulty.h"
#include "foliofs.h"
#include "fs.h"
#include "isolate.h"
#include "ondisk.h"
#include "rcu.h"
#include "testimg.h"

#define BLK		4096U
#define VOL_BYTES	(16ULL << 20)
#define SMALL_LOG	(64U << 10)	/* 16 blocks: checkpoints mid-run */
#define MAX_FILES	64
#define MAX_NS		96		/* namespace entries */
#define PATH_LEN	64
#define FILE_CAP	(256U << 10)	/* the model's largest file, bytes */
#define MAX_FAILS	8		/* problems printed per workload */
#define POST_FSCK_EVERY	8		/* fsck again after recovery */

/* ---- Patterns ------------------------------------------------------------ */

#define PAT_K	0x3c5a000000000000ULL
#define PAT_LOW	0x9e3779b9ULL	/* odd: never equal to an 8-aligned offset */

static uint64_t pat(uint32_t fid, uint32_t v, uint64_t off)
{
	return PAT_K ^ ((uint64_t)fid << 56) ^ ((uint64_t)v << 32) ^ PAT_LOW ^
	       off;
}

/* Decode a nonzero word at @off: false if it is no write's pattern. */
static bool pat_decode(uint64_t w, uint64_t off, uint32_t *fid, uint32_t *v)
{
	uint64_t x = w ^ PAT_K ^ PAT_LOW ^ off;

	if (x & 0xffffffffULL)
		return false;
	*fid = (uint32_t)(x >> 56);
	*v = (uint32_t)(x >> 32) & 0xffffffU;
	return true;
}

/* ---- The model ----------------------------------------------------------- */

struct wver {				/* write number v */
	uint32_t	fid;
	uint64_t	off, len;	/* bytes */
	size_t		q;		/* crash point when issued */
};

enum ev_kind { EV_WRITE, EV_TRUNC, EV_PUNCH, EV_UNLINK };

struct fev {				/* a change to one file */
	enum ev_kind	kind;
	uint64_t	op;		/* call number */
	size_t		q;		/* crash point when issued */
	uint64_t	off, len;	/* EV_TRUNC: off is the new size */
	uint64_t	size_after;
};

struct fsnap {				/* content a sync made durable */
	uint64_t	op;		/* the sync's call number */
	size_t		p;		/* crash point after it returned */
	uint64_t	size;
	uint64_t	*words;
	bool		linked;
};

struct mfile {
	uint64_t		ino;
	struct foliofs_file	*fh;	/* NULL when closed */
	uint64_t		*cur;	/* content now, FILE_CAP bytes */
	uint64_t		size;
	uint64_t		max_size;
	uint32_t		nlink;
	bool			gone;	/* unlinked and closed */
	struct fev		*ev;
	size_t			nev, evcap;
	struct fsnap		*snap;
	size_t			nsnap, snapcap;
};

struct nsent {
	char		path[PATH_LEN];
	uint64_t	ino;
	bool		dir;
};

struct nsstate {			/* the namespace after a call */
	size_t		q;		/* that call's crash point */
	size_t		n;
	struct nsent	*e;		/* sorted by path */
};

struct syncpt {				/* a syncfs (or unmount) */
	size_t		p;
	size_t		ns;		/* namespace state it covered */
};

struct work {
	const char		*name;
	struct backing		*sim;
	struct backing		*faulty;	/* or NULL */
	struct foliofs		*fs;
	char			img[4096];
	char			crash_img[4096];
	int			crash_fd;
	uint64_t		op;
	uint64_t		log_start, log_blocks, data_start;

	struct mfile		files[MAX_FILES];
	unsigned int		nfiles;
	struct wver		*wv;
	size_t			nwv, wvcap;
	struct nsent		ns[MAX_NS];	/* now */
	size_t			nns;
	struct nsstate		*states;
	size_t			nstates, statecap;
	struct syncpt		*syncs;
	size_t			nsyncs, synccap;

	uint64_t		*iobuf;		/* FILE_CAP bytes */
	unsigned int		fails;		/* problems found */
	unsigned int		checks;
};

#define GROW(arr, n, cap) do {						\
	if ((n) == (cap)) {						\
		(cap) = (cap) ? 2 * (cap) : 16;				\
		(arr) = realloc((arr), (cap) * sizeof(*(arr)));		\
		assert_non_null(arr);					\
	}								\
} while (0)

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);

	return s && *s ? strtoull(s, NULL, 0) : dflt;
}

static bool tracing;	/* FOLIOFS_CRASH_TRACE */
static char crash_dir[2048];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- "keep": a pass-through store whose close leaves the one below ------- */

struct keep {
	struct backing	b;
	struct backing	*lower;
};

static struct backing *keep_lower(struct backing *b)
{
	return ((struct keep *)b)->lower;
}

static int keep_submit(struct backing *b, struct backing_req *reqs,
		       unsigned int nr)
{
	return backing_submit(keep_lower(b), reqs, nr);
}

static int keep_size(struct backing *b, uint64_t *bytes)
{
	return backing_size(keep_lower(b), bytes);
}

static int keep_grow(struct backing *b, uint64_t bytes)
{
	return backing_grow(keep_lower(b), bytes);
}

static int keep_register(struct backing *b, const struct iovec *iov,
			 unsigned int nr)
{
	return backing_register_buffers(keep_lower(b), iov, nr);
}

static int keep_unregister(struct backing *b)
{
	return backing_unregister_buffers(keep_lower(b));
}

static void keep_close(struct backing *b)
{
	free(b);
}

static const struct backing_ops keep_ops = {
	.submit			= keep_submit,
	.read			= backing_generic_read,
	.write			= backing_generic_write,
	.flush			= backing_generic_flush,
	.size			= keep_size,
	.grow			= keep_grow,
	.register_buffers	= keep_register,
	.unregister_buffers	= keep_unregister,
	.close			= keep_close,
};

static struct backing *keep_wrap(struct backing *lower)
{
	struct keep *k = calloc(1, sizeof(*k));

	assert_non_null(k);
	k->b.ops = &keep_ops;
	k->lower = lower;
	return &k->b;
}

/* ---- Setting up a workload ----------------------------------------------- */

/* Mount options that keep the run deterministic: no background writeback
 * or commit while the workload runs. */
static const struct foliofs_mount_opts quiet_opts = {
	.cache_bytes = 64ULL << 20,
	.dirty_bytes = 32ULL << 20,
	.dirty_background_bytes = 24ULL << 20,
	.dirty_expire_ms = 3600000,
	.commit_ms = 3600000,
};

static void ns_push(struct work *w, size_t q);

static struct work *work_new(const char *name, uint64_t log_bytes, bool faulty)
{
	struct work *w = calloc(1, sizeof(*w));
	struct backing *raw, *lower;
	struct super *sb;
	char tag[64];
	int fd;

	assert_non_null(w);
	w->name = name;
	w->iobuf = aligned_alloc(BLK, FILE_CAP);
	assert_non_null(w->iobuf);
	snprintf(tag, sizeof(tag), "%s.img", name);
	testimg_path(w->img, sizeof(w->img), tag);
	snprintf(w->crash_img, sizeof(w->crash_img), "%s/crash.%d.%s", crash_dir,
		 (int)getpid(), name);
	unlink(w->img);

	assert_int_equal(backing_open(w->img,
				      BACKING_CREATE | testimg_open_flags,
				      &raw), 0);
	assert_int_equal(fs_mkfs_backing(raw, &(struct foliofs_mkfs_opts){
		.size = VOL_BYTES, .log_bytes = log_bytes }), 0);
	lower = raw;
	if (faulty) {
		assert_int_equal(faulty_create(raw, &w->faulty), 0);
		lower = w->faulty;
	}
	fd = open(w->img, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(crashsim_create(lower, fd, &w->sim), 0);
	close(fd);
	assert_int_equal(fs_mount_backing(keep_wrap(w->sim), w->name,
					  &quiet_opts, &w->fs), 0);
	sb = &w->fs->sb;
	w->log_start = sb->log_start;
	w->log_blocks = sb->log_blocks;
	w->data_start = sb->log_start + sb->log_blocks;

	tracing = env_u64("FOLIOFS_CRASH_TRACE", 0);
	w->crash_fd = open(w->crash_img, O_CREAT | O_RDWR | O_TRUNC, 0644);
	assert_true(w->crash_fd >= 0);
	ns_push(w, 0);		/* the empty root */
	return w;
}

static void work_free(struct work *w)
{
	unsigned int i;
	size_t j;

	if (w->fs) {
		for (i = 0; i < w->nfiles; i++)
			if (w->files[i].fh)
				foliofs_release(w->files[i].fh);
		foliofs_unmount(w->fs);
	}
	backing_close(w->sim);
	for (i = 0; i < w->nfiles; i++) {
		struct mfile *m = &w->files[i];

		for (j = 0; j < m->nsnap; j++)
			free(m->snap[j].words);
		free(m->snap);
		free(m->ev);
		free(m->cur);
	}
	for (j = 0; j < w->nstates; j++)
		free(w->states[j].e);
	free(w->states);
	free(w->syncs);
	free(w->wv);
	free(w->iobuf);
	close(w->crash_fd);
	unlink(w->crash_img);
	unlink(w->img);
	free(w);
}

/* ---- The namespace model ------------------------------------------------- */

static int nsent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct nsent *)a)->path,
		      ((const struct nsent *)b)->path);
}

static void ns_push(struct work *w, size_t q)
{
	struct nsstate *s;

	GROW(w->states, w->nstates, w->statecap);
	s = &w->states[w->nstates++];
	s->q = q;
	s->n = w->nns;
	s->e = malloc((w->nns + 1) * sizeof(*s->e));
	assert_non_null(s->e);
	memcpy(s->e, w->ns, w->nns * sizeof(*s->e));
	qsort(s->e, s->n, sizeof(*s->e), nsent_cmp);
}

static struct nsent *ns_find(struct work *w, const char *path)
{
	size_t i;

	for (i = 0; i < w->nns; i++)
		if (!strcmp(w->ns[i].path, path))
			return &w->ns[i];
	return NULL;
}

static void ns_add(struct work *w, const char *path, uint64_t ino, bool dir)
{
	assert_true(w->nns < MAX_NS);
	assert_true(strlen(path) < PATH_LEN);
	snprintf(w->ns[w->nns].path, PATH_LEN, "%s", path);
	w->ns[w->nns].ino = ino;
	w->ns[w->nns].dir = dir;
	w->nns++;
}

static void ns_del(struct work *w, struct nsent *e)
{
	*e = w->ns[--w->nns];
}

static struct mfile *fid_of_ino(struct work *w, uint64_t ino, uint32_t *fid)
{
	unsigned int i;

	for (i = 0; i < w->nfiles; i++)
		if (w->files[i].ino == ino) {
			if (fid)
				*fid = i;
			return &w->files[i];
		}
	return NULL;
}

/* ---- Workload calls (each updates the model) ----------------------------- */

/* A new call; with FOLIOFS_CRASH_TRACE=1 it is printed. */
static size_t op_begin(struct work *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static size_t op_begin(struct work *w, const char *fmt, ...)
{
	size_t q = crashsim_points(w->sim);
	va_list ap;

	w->op++;
	if (tracing) {
		printf("#   call %" PRIu64 " at point %zu: ", w->op, q);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
	}
	return q;
}

static void file_event(struct mfile *m, enum ev_kind kind, uint64_t op,
		       size_t q, uint64_t off, uint64_t len)
{
	GROW(m->ev, m->nev, m->evcap);
	m->ev[m->nev++] = (struct fev){ kind, op, q, off, len, m->size };
}

/* Record the durable content of @fid (a sync returned 0 at point @p). */
static void file_snap(struct work *w, uint32_t fid, size_t p)
{
	struct mfile *m = &w->files[fid];
	struct fsnap *s;

	if (m->gone)
		return;
	GROW(m->snap, m->nsnap, m->snapcap);
	s = &m->snap[m->nsnap++];
	s->op = w->op;
	s->p = p;
	s->size = m->size;
	s->linked = m->nlink > 0;
	s->words = malloc(m->size + 8);
	assert_non_null(s->words);
	memcpy(s->words, m->cur, m->size);
}

static uint32_t w_create(struct work *w, const char *path)
{
	size_t q = op_begin(w, "create %s: fid %u", path, w->nfiles);
	uint32_t fid = w->nfiles;
	struct mfile *m = &w->files[fid];
	int ret;

	assert_true(fid < MAX_FILES);
	ret = foliofs_open_path(w->fs, path, O_CREAT | O_EXCL | O_RDWR, 0644,
				&m->fh);
	if (ret)
		fail_msg("%s: create %s: %s", w->name, path, strerror(-ret));
	w->nfiles++;
	m->ino = foliofs_file_ino(m->fh);
	m->cur = calloc(1, FILE_CAP);
	assert_non_null(m->cur);
	m->nlink = 1;
	ns_add(w, path, m->ino, false);
	ns_push(w, q);
	return fid;
}

static void w_write(struct work *w, uint32_t fid, uint64_t off, uint64_t len)
{
	struct mfile *m = &w->files[fid];
	size_t q = op_begin(w, "write fid %u %" PRIu64 "+%" PRIu64 ": write %zu",
			    fid, off, len, w->nwv);
	uint32_t v = (uint32_t)w->nwv;
	uint64_t i;
	ssize_t n;

	assert_true(off % 8 == 0 && len % 8 == 0 && len);
	assert_true(off + len <= FILE_CAP);
	assert_non_null(m->fh);
	GROW(w->wv, w->nwv, w->wvcap);
	w->wv[w->nwv++] = (struct wver){ fid, off, len, q };
	for (i = 0; i < len / 8; i++)
		m->cur[off / 8 + i] = pat(fid, v, off + 8 * i);
	n = foliofs_write(m->fh, m->cur + off / 8, len, off);
	if (n != (ssize_t)len)
		fail_msg("%s: write fid %u %" PRIu64 "+%" PRIu64 ": %zd",
			 w->name, fid, off, len, n);
	if (off + len > m->size)
		m->size = off + len;
	if (m->size > m->max_size)
		m->max_size = m->size;
	file_event(m, EV_WRITE, w->op, q, off, len);
}

/* fsync or fdatasync; records durability only if it returned 0. */
static int w_fsync(struct work *w, uint32_t fid, int datasync)
{
	struct mfile *m = &w->files[fid];
	int ret;

	op_begin(w, "%s fid %u", datasync ? "fdatasync" : "fsync", fid);
	ret = foliofs_fsync(m->fh, datasync);
	if (!ret)
		file_snap(w, fid, crashsim_points(w->sim));
	return ret;
}

static void w_fsync_ok(struct work *w, uint32_t fid, int datasync)
{
	int ret = w_fsync(w, fid, datasync);

	if (ret)
		fail_msg("%s: fsync fid %u: %s", w->name, fid, strerror(-ret));
}

static void sync_all(struct work *w, size_t p)
{
	unsigned int i;

	for (i = 0; i < w->nfiles; i++)
		file_snap(w, i, p);
	GROW(w->syncs, w->nsyncs, w->synccap);
	w->syncs[w->nsyncs++] = (struct syncpt){ p, w->nstates - 1 };
}

static int w_syncfs(struct work *w)
{
	struct foliofs_stats st;
	int ret;

	op_begin(w, "syncfs");
	ret = foliofs_syncfs(w->fs);
	if (ret)
		return ret;
	sync_all(w, crashsim_points(w->sim));
	/* Law 7: every reservation became blocks. */
	assert_int_equal(foliofs_stats(w->fs, &st), 0);
	assert_int_equal(st.reserved_blocks, 0);
	return 0;
}

static void w_syncfs_ok(struct work *w)
{
	int ret = w_syncfs(w);

	if (ret)
		fail_msg("%s: syncfs: %s", w->name, strerror(-ret));
}

static void w_truncate(struct work *w, uint32_t fid, uint64_t size)
{
	struct mfile *m = &w->files[fid];
	struct foliofs_attr a = { .size = size };
	size_t q = op_begin(w, "truncate fid %u to %" PRIu64, fid, size);
	int ret;

	assert_true(size % 8 == 0 && size <= FILE_CAP);
	ret = foliofs_setattr(w->fs, m->ino, &a, FOLIOFS_SET_SIZE, NULL);
	if (ret)
		fail_msg("%s: truncate fid %u: %s", w->name, fid,
			 strerror(-ret));
	if (size < m->size)
		memset((char *)m->cur + size, 0, m->size - size);
	m->size = size;
	if (m->size > m->max_size)
		m->max_size = m->size;
	file_event(m, EV_TRUNC, w->op, q, size, 0);
}

static void w_punch(struct work *w, uint32_t fid, uint64_t off, uint64_t len)
{
	struct mfile *m = &w->files[fid];
	size_t q = op_begin(w, "punch fid %u %" PRIu64 "+%" PRIu64, fid, off,
			    len);
	uint64_t end = off + len;
	int ret;

	ret = foliofs_fallocate(m->fh,
				FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				off, len);
	if (ret)
		fail_msg("%s: punch fid %u: %s", w->name, fid, strerror(-ret));
	if (end > m->size)
		end = m->size;
	if (off < end)
		memset((char *)m->cur + off, 0, end - off);
	file_event(m, EV_PUNCH, w->op, q, off, len);
}

/* One link of the file at @e goes away. */
static void drop_link(struct work *w, struct nsent *e, size_t q)
{
	struct mfile *m = fid_of_ino(w, e->ino, NULL);

	assert_non_null(m);
	m->nlink--;
	file_event(m, EV_UNLINK, w->op, q, 0, 0);
	if (!m->nlink && !m->fh)
		m->gone = true;
}

static void w_unlink(struct work *w, const char *path)
{
	struct nsent *e = ns_find(w, path);
	size_t q = op_begin(w, "unlink %s", path);
	int ret;

	assert_non_null(e);
	ret = foliofs_unlink_path(w->fs, path);
	if (ret)
		fail_msg("%s: unlink %s: %s", w->name, path, strerror(-ret));
	drop_link(w, e, q);
	ns_del(w, e);
	ns_push(w, q);
}

static void w_rename(struct work *w, const char *from, const char *to)
{
	struct nsent *s = ns_find(w, from), *d = ns_find(w, to);
	size_t q = op_begin(w, "rename %s %s", from, to), flen = strlen(from), i;
	char np[PATH_LEN];
	int ret;

	assert_non_null(s);
	ret = foliofs_rename_path(w->fs, from, to, 0);
	if (ret)
		fail_msg("%s: rename %s %s: %s", w->name, from, to,
			 strerror(-ret));
	if (d) {
		assert_false(d->dir);
		drop_link(w, d, q);
		ns_del(w, d);
		s = ns_find(w, from);
	}
	if (s->dir) {
		for (i = 0; i < w->nns; i++) {
			if (strncmp(w->ns[i].path, from, flen) ||
			    w->ns[i].path[flen] != '/')
				continue;
			snprintf(np, sizeof(np), "%s%s", to,
				 w->ns[i].path + flen);
			strcpy(w->ns[i].path, np);
		}
	}
	snprintf(s->path, PATH_LEN, "%s", to);
	ns_push(w, q);
}

static void w_link(struct work *w, uint32_t fid, const char *path)
{
	struct mfile *m = &w->files[fid];
	char parent[PATH_LEN], *slash;
	struct foliofs_attr a;
	foliofs_ino_t pino;
	size_t q = op_begin(w, "link fid %u %s", fid, path);
	int ret;

	snprintf(parent, sizeof(parent), "%s", path);
	slash = strrchr(parent, '/');
	*slash = '\0';
	ret = foliofs_resolve(w->fs, parent[0] ? parent : "/", &pino);
	if (!ret)
		ret = foliofs_link(w->fs, m->ino, pino, slash + 1, &a);
	if (ret)
		fail_msg("%s: link %s: %s", w->name, path, strerror(-ret));
	foliofs_forget(w->fs, m->ino, 1);
	m->nlink++;
	ns_add(w, path, m->ino, false);
	ns_push(w, q);
}

static void w_mkdir(struct work *w, const char *path)
{
	foliofs_ino_t ino;
	size_t q = op_begin(w, "mkdir %s", path);
	int ret;

	ret = foliofs_mkdir_path(w->fs, path, 0755);
	if (!ret)
		ret = foliofs_resolve(w->fs, path, &ino);
	if (ret)
		fail_msg("%s: mkdir %s: %s", w->name, path, strerror(-ret));
	ns_add(w, path, ino, true);
	ns_push(w, q);
}

static void w_rmdir(struct work *w, const char *path)
{
	struct nsent *e = ns_find(w, path);
	size_t q = op_begin(w, "rmdir %s", path);
	int ret;

	assert_non_null(e);
	ret = foliofs_rmdir_path(w->fs, path);
	if (ret)
		fail_msg("%s: rmdir %s: %s", w->name, path, strerror(-ret));
	ns_del(w, e);
	ns_push(w, q);
}

/* An attribute change: logs the inode, changes no data. */
static void w_chmod(struct work *w, uint32_t fid, uint32_t mode)
{
	struct foliofs_attr a = { .mode = mode };
	int ret;

	op_begin(w, "chmod fid %u %o", fid, mode);
	ret = foliofs_setattr(w->fs, w->files[fid].ino, &a, FOLIOFS_SET_MODE,
			      NULL);
	if (ret)
		fail_msg("%s: chmod fid %u: %s", w->name, fid, strerror(-ret));
}

static void w_close(struct work *w, uint32_t fid)
{
	struct mfile *m = &w->files[fid];

	op_begin(w, "close fid %u", fid);
	assert_int_equal(foliofs_release(m->fh), 0);
	m->fh = NULL;
	if (!m->nlink)
		m->gone = true;
}

static void w_reopen(struct work *w, uint32_t fid)
{
	struct mfile *m = &w->files[fid];
	int ret;

	op_begin(w, "reopen fid %u", fid);
	assert_null(m->fh);
	ret = foliofs_open(w->fs, m->ino, O_RDWR, &m->fh);
	if (ret)
		fail_msg("%s: reopen fid %u: %s", w->name, fid, strerror(-ret));
}

/* Close every file and unmount: everything is durable after. */
static void w_unmount(struct work *w)
{
	unsigned int i;
	int ret;

	for (i = 0; i < w->nfiles; i++)
		if (w->files[i].fh)
			w_close(w, i);
	op_begin(w, "unmount");
	ret = foliofs_unmount(w->fs);
	w->fs = NULL;
	if (ret)
		fail_msg("%s: unmount: %s", w->name, strerror(-ret));
	sync_all(w, crashsim_points(w->sim));
}

/* ---- Checking one image ------------------------------------------------- */

struct chk {
	struct work		*w;
	size_t			n;
	const char		*what;		/* "DROP seed 3", "remount" */
	unsigned int		problems;
	struct nsent		img[MAX_NS * 2];
	size_t			nimg;
	bool			overflow;
	char			fsck_msg[4096];
};

static void problem(struct chk *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void problem(struct chk *c, const char *fmt, ...)
{
	va_list ap;

	c->problems++;
	if (c->w->fails + c->problems > MAX_FAILS)
		return;
	printf("# CRASH %s: point %zu of %zu (%s): ", c->w->name, c->n,
	       crashsim_points(c->w->sim), c->what);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* fsck's words, kept to be printed if it finds a problem. */
static void fsck_report(void *arg, const char *msg)
{
	struct chk *c = arg;
	size_t len = strlen(c->fsck_msg);

	snprintf(c->fsck_msg + len, sizeof(c->fsck_msg) - len, "#   fsck: %s\n",
		 msg);
}

static void run_fsck(struct chk *c, const char *path, const char *when)
{
	int ret;

	c->fsck_msg[0] = '\0';
	ret = foliofs_fsck(path, 0, fsck_report, c);
	if (ret != FOLIOFS_FSCK_OK) {
		problem(c, "fsck %s returned %d", when, ret);
		if (c->w->fails + c->problems <= MAX_FAILS)
			printf("%s", c->fsck_msg);
	}
}

struct dirlist {
	struct { char name[FOLIOFS_NAME_MAX + 1]; uint64_t ino; uint32_t type; }
		*e;
	size_t n, cap;
};

static int fill_dir(void *arg, const char *name, foliofs_ino_t ino,
		    uint32_t type, uint64_t next, const struct foliofs_attr *a)
{
	struct dirlist *l = arg;

	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	GROW(l->e, l->n, l->cap);
	snprintf(l->e[l->n].name, sizeof(l->e[l->n].name), "%s", name);
	l->e[l->n].ino = ino;
	l->e[l->n].type = type;
	l->n++;
	return 0;
}

/* Read the namespace under directory @ino (path @path) into c->img. */
static void read_tree(struct chk *c, struct foliofs *fs, uint64_t ino,
		      const char *path, int depth)
{
	struct dirlist l = { 0 };
	struct foliofs_file *d;
	size_t i;
	int ret;

	ret = foliofs_open(fs, ino, O_RDONLY | O_DIRECTORY, &d);
	if (ret) {
		problem(c, "cannot open directory %s: %s", path, strerror(-ret));
		return;
	}
	ret = foliofs_readdir(d, 0, 0, fill_dir, &l);
	foliofs_release(d);
	if (ret)
		problem(c, "readdir %s: %s", path, strerror(-ret));
	for (i = 0; i < l.n; i++) {
		struct nsent *e;

		if (c->nimg == ARRAY_SIZE(c->img)) {
			c->overflow = true;
			break;
		}
		if (strlen(path) + 1 + strlen(l.e[i].name) >= PATH_LEN) {
			problem(c, "%s/%s: a name no call made", path,
				l.e[i].name);
			continue;
		}
		e = &c->img[c->nimg++];
		strcpy(e->path, path);
		strcat(e->path, "/");
		strcat(e->path, l.e[i].name);
		e->ino = l.e[i].ino;
		e->dir = l.e[i].type == DT_DIR;
		if (e->dir && depth < 8)
			read_tree(c, fs, e->ino, e->path, depth + 1);
	}
	free(l.e);
}

static bool ns_equal(const struct nsent *a, size_t na, const struct nsent *b,
		     size_t nb)
{
	size_t i;

	if (na != nb)
		return false;
	for (i = 0; i < na; i++)
		if (strcmp(a[i].path, b[i].path) || a[i].ino != b[i].ino ||
		    a[i].dir != b[i].dir)
			return false;
	return true;
}

static void print_ns(const char *title, const struct nsent *e, size_t n)
{
	size_t i;

	printf("#   %s:", title);
	for (i = 0; i < n; i++)
		printf(" %s=%" PRIu64 "%s", e[i].path, e[i].ino,
		       e[i].dir ? "/" : "");
	printf("\n");
}

/* The namespace must be one that existed, no older than the last syncfs. */
static void check_namespace(struct chk *c)
{
	struct work *w = c->w;
	size_t lo = 0, hi = 0, j;

	for (j = 0; j < w->nsyncs; j++)
		if (w->syncs[j].p <= c->n)
			lo = w->syncs[j].ns;
	for (j = 0; j < w->nstates; j++)
		if (j == 0 || w->states[j].q < c->n)
			hi = j;
	if (hi < lo)
		hi = lo;
	if (c->overflow) {
		problem(c, "more than %d names in the namespace", MAX_NS * 2);
		return;
	}
	qsort(c->img, c->nimg, sizeof(c->img[0]), nsent_cmp);
	for (j = lo; j <= hi; j++)
		if (ns_equal(c->img, c->nimg, w->states[j].e, w->states[j].n))
			return;
	problem(c, "the namespace is none of the states after calls %zu..%zu "
		"(the last syncfs's to the last one issued)", lo, hi);
	if (w->fails + c->problems <= MAX_FAILS) {
		print_ns("image", c->img, c->nimg);
		print_ns("oldest allowed", w->states[lo].e, w->states[lo].n);
		if (hi != lo)
			print_ns("newest allowed", w->states[hi].e,
				 w->states[hi].n);
	}
}

static const char *name_of(struct chk *c, uint64_t ino)
{
	size_t i;

	for (i = 0; i < c->nimg; i++)
		if (c->img[i].ino == ino)
			return c->img[i].path;
	return "?";
}

/* The last snapshot of @m durable at the cut, or NULL. */
static const struct fsnap *durable_snap(const struct mfile *m, size_t n)
{
	const struct fsnap *s = NULL;
	size_t i;

	for (i = 0; i < m->nsnap; i++)
		if (m->snap[i].p <= n)
			s = &m->snap[i];
	return s;
}

static void check_file(struct chk *c, struct foliofs *fs, uint32_t fid)
{
	struct work *w = c->w;
	struct mfile *m = &w->files[fid];
	const struct fsnap *s = durable_snap(m, c->n);
	const char *path = name_of(c, m->ino);
	uint64_t max_size = 0, min_size, size, off, track_end;
	struct foliofs_attr a;
	struct foliofs_file *f;
	uint8_t *touched = NULL;
	bool later = false;
	ssize_t got;
	size_t i;
	int ret;

	ret = foliofs_getattr(fs, m->ino, &a);
	if (ret) {
		problem(c, "%s (fid %u): getattr: %s", path, fid,
			strerror(-ret));
		return;
	}
	size = a.size;
	/* The largest size the file had at any call issued before the cut. */
	for (i = 0; i < m->nev; i++)
		if (m->ev[i].q < c->n && m->ev[i].size_after > max_size)
			max_size = m->ev[i].size_after;
	if (size > max_size) {
		problem(c, "%s (fid %u): size %" PRIu64 " but it was never "
			"larger than %" PRIu64, path, fid, size, max_size);
		return;
	}
	if (size % 8) {
		problem(c, "%s (fid %u): size %" PRIu64 " is no size it had",
			path, fid, size);
		return;
	}
	ret = foliofs_open(fs, m->ino, O_RDONLY, &f);
	if (ret) {
		problem(c, "%s (fid %u): open: %s", path, fid, strerror(-ret));
		return;
	}
	memset(w->iobuf, 0xee, FILE_CAP);
	got = foliofs_read(f, w->iobuf, size, 0);
	foliofs_release(f);
	if (got != (ssize_t)size) {
		problem(c, "%s (fid %u): read of %" PRIu64 " bytes gave %zd",
			path, fid, size, got);
		return;
	}

	/* Every word: zero, or written there, to this file, before the cut. */
	for (off = 0; off < size; off += 8) {
		uint64_t word = w->iobuf[off / 8];
		uint32_t wf, v;

		if (!word)
			continue;
		if (!pat_decode(word, off, &wf, &v)) {
			problem(c, "%s (fid %u) byte %" PRIu64 " holds garbage "
				"(%016" PRIx64 ")", path, fid, off, word);
			return;
		}
		if (wf != fid || v >= w->nwv) {
			problem(c, "%s (fid %u) byte %" PRIu64 " holds data of "
				"fid %u (write %u)", path, fid, off, wf, v);
			return;
		}
		if (w->wv[v].fid != fid || off < w->wv[v].off ||
		    off >= w->wv[v].off + w->wv[v].len) {
			problem(c, "%s (fid %u) byte %" PRIu64 " holds "
				"write %u's data, which it never put there",
				path, fid, off, v);
			return;
		}
		if (w->wv[v].q >= c->n) {
			problem(c, "%s (fid %u) byte %" PRIu64 " holds "
				"write %u, issued at point %zu, after the cut",
				path, fid, off, v, w->wv[v].q);
			return;
		}
	}

	if (!s)
		return;
	/* What the last sync made durable, less what later calls changed. */
	min_size = s->size;
	track_end = s->size;
	touched = calloc(1, s->size / 8 + 1);
	assert_non_null(touched);
	for (i = 0; i < m->nev; i++) {
		const struct fev *e = &m->ev[i];
		uint64_t a0, a1;

		if (e->op <= s->op || e->q >= c->n)
			continue;
		later = true;
		if (e->kind == EV_TRUNC) {
			if (e->off < min_size)
				min_size = e->off;
			if (e->off < track_end)
				track_end = e->off;
			continue;
		}
		if (e->kind == EV_UNLINK)
			continue;
		a0 = e->off / 8;
		a1 = (e->off + e->len + 7) / 8;
		for (; a0 < a1 && a0 < s->size / 8; a0++)
			touched[a0] = 1;
	}
	if (!later && size != s->size)
		problem(c, "%s (fid %u): size %" PRIu64 ", but %" PRIu64
			" was made durable at point %zu and not changed since",
			path, fid, size, s->size, s->p);
	else if (size < min_size)
		problem(c, "%s (fid %u): size %" PRIu64 ", but %" PRIu64
			" was made durable at point %zu", path, fid, size,
			min_size, s->p);
	for (off = 0; off < track_end && off < size; off += 8) {
		uint64_t word = w->iobuf[off / 8], want = s->words[off / 8];
		uint32_t wf = 0, v = 0, wantv = 0;

		if (touched[off / 8] || word == want)
			continue;
		if (word)
			pat_decode(word, off, &wf, &v);
		if (want) {
			pat_decode(want, off, &wf, &wantv);
			problem(c, "%s (fid %u) byte %" PRIu64 ": write %u, "
				"durable since point %zu, is lost: it holds %s "
				"%u", path, fid, off, wantv, s->p,
				word ? "write" : "zeroes", word ? v : 0);
		} else
			problem(c, "%s (fid %u) byte %" PRIu64 ": zeroes, "
				"durable since point %zu, are lost: it holds "
				"write %u", path, fid, off, s->p, v);
		break;
	}
	free(touched);
}

/*
 * A file fsynced (or synced) by the cut exists under some name, unless a
 * later call issued before the cut removed one of its links.
 */
static void check_present(struct chk *c, uint32_t fid, const bool *seen)
{
	struct mfile *m = &c->w->files[fid];
	const struct fsnap *s = durable_snap(m, c->n);
	size_t i;

	if (!s || !s->linked || seen[fid])
		return;
	for (i = 0; i < m->nev; i++)
		if (m->ev[i].kind == EV_UNLINK && m->ev[i].op > s->op &&
		    m->ev[i].q < c->n)
			return;
	problem(c, "fid %u (inode %" PRIu64 "), durable since point %zu, "
		"is not in the namespace", fid, m->ino, s->p);
}

/* Check the image at @path as a cut at @n; returns the problems found. */
static unsigned int check_image(struct work *w, const char *path, size_t n,
				const char *what, bool post_fsck)
{
	struct chk *c = calloc(1, sizeof(*c));
	bool seen[MAX_FILES] = { false };
	struct foliofs *fs;
	unsigned int problems;
	size_t i;
	int ret;

	assert_non_null(c);
	c->w = w;
	c->n = n;
	c->what = what;
	run_fsck(c, path, "before mounting");
	ret = foliofs_mount(path, NULL, &fs);
	if (ret) {
		problem(c, "mount: %s (%s)", strerror(-ret), foliofs_strerror());
		goto out;
	}
	read_tree(c, fs, FOLIOFS_ROOT_INO, "", 0);
	check_namespace(c);
	for (i = 0; i < c->nimg; i++) {
		uint32_t fid;

		if (c->img[i].dir)
			continue;
		if (!fid_of_ino(w, c->img[i].ino, &fid)) {
			problem(c, "%s names inode %" PRIu64 ", which no call "
				"made", c->img[i].path, c->img[i].ino);
			continue;
		}
		if (seen[fid])
			continue;
		seen[fid] = true;
		check_file(c, fs, fid);
	}
	for (i = 0; i < w->nfiles; i++)
		check_present(c, (uint32_t)i, seen);
	ret = foliofs_unmount(fs);
	if (ret)
		problem(c, "unmount after recovery: %s", strerror(-ret));
	if (post_fsck)
		run_fsck(c, path, "after recovery and unmount");
out:
	problems = c->problems;
	w->fails += problems;
	w->checks++;
	free(c);
	return problems;
}

static const char *mode_name(enum crashsim_mode mode)
{
	return mode == CRASHSIM_DROP ? "DROP" : mode == CRASHSIM_TORN ? "TORN" :
	       mode == CRASHSIM_APPLY ? "APPLY" : "RANDOM";
}

static void check_point(struct work *w, size_t n, enum crashsim_mode mode,
			uint64_t seed)
{
	char what[64];
	int ret;

	snprintf(what, sizeof(what), "%s seed %" PRIu64, mode_name(mode), seed);
	ret = crashsim_make_image_at(w->sim, n, seed, mode, w->crash_fd);
	assert_int_equal(ret, 0);
	check_image(w, w->crash_img, n, what,
		    w->checks % POST_FSCK_EVERY == POST_FSCK_EVERY - 1);
}

/* Print the simulator's record: which op each crash point follows. */
static void dump_record(struct work *w)
{
	size_t i, np = crashsim_points(w->sim);
	struct crashsim_op_info in;

	for (i = 0; i < np; i++) {
		assert_int_equal(crashsim_op(w->sim, i, &in), 0);
		if (in.kind == CRASHSIM_WRITE)
			printf("#   op %zu: write block %" PRIu64 " +%u%s%s\n",
			       i, in.off / BLK, in.len / BLK,
			       in.off < FOLIOFS_SB_AREA ? " (superblock)" :
			       in.off < w->data_start * BLK ? " (log)" : "",
			       in.res ? " FAILED" : "");
		else
			printf("#   op %zu: flush covering ops < %zu%s\n", i,
			       in.cover, in.res ? " FAILED" : "");
	}
}

/*
 * Check points of @w: all of them if @sample is 0, else @sample chosen at
 * random (and the last). Each in DROP and in TORN with its own seed.
 */
static void check_points(struct work *w, size_t sample, uint64_t seed)
{
	size_t np = crashsim_points(w->sim), n, i;
	uint64_t only = env_u64("FOLIOFS_CRASH_POINT", UINT64_MAX);
	uint64_t rng = seed;
	double t0 = now_s();

	if (env_u64("FOLIOFS_CRASH_DUMP", 0))
		dump_record(w);
	if (only != UINT64_MAX) {
		if (only <= np) {
			check_point(w, only, CRASHSIM_DROP, seed);
			check_point(w, only, CRASHSIM_TORN, seed + only);
		}
	} else if (!sample || sample > np) {
		for (n = 0; n <= np; n++) {
			check_point(w, n, CRASHSIM_DROP, seed);
			check_point(w, n, CRASHSIM_TORN, seed + n);
		}
	} else {
		/* @sample distinct points, the last one among them. */
		uint8_t *pick = calloc(1, np + 1);

		assert_non_null(pick);
		pick[np] = 1;
		for (i = 1; i < sample;) {
			n = rng_next(&rng) % (np + 1);
			i += !pick[n];
			pick[n] = 1;
		}
		for (n = 0; n <= np; n++) {
			if (!pick[n])
				continue;
			check_point(w, n, CRASHSIM_DROP, seed);
			check_point(w, n, CRASHSIM_TORN, seed + n);
		}
		free(pick);
	}
	printf("# %s: %zu crash points, %u images checked in %.1f s, "
	       "%u problems\n", w->name, np, w->checks, now_s() - t0, w->fails);
}

/* After the run: the real image mounts and holds everything. */
static void check_remount(struct work *w)
{
	check_image(w, w->img, crashsim_points(w->sim), "remount", true);
}

/*
 * Where the crash images go: $FOLIOFS_CRASH_DIR, else /dev/shm if the
 * engine can open an image there (O_DIRECT: Linux 6.6 and later), else the
 * test directory. What is under a crash image does not matter (the power
 * cut is simulated), and on tmpfs each check takes a tenth of the time.
 */
static void pick_crash_dir(void)
{
	const char *env = getenv("FOLIOFS_CRASH_DIR");
	struct backing *b;
	char path[4200];

	if (env && *env) {
		snprintf(crash_dir, sizeof(crash_dir), "%s", env);
		return;
	}
	snprintf(path, sizeof(path), "/dev/shm/crash.%d.probe", (int)getpid());
	if (!backing_open(path, BACKING_CREATE, &b)) {
		backing_close(b);
		unlink(path);
		snprintf(crash_dir, sizeof(crash_dir), "/dev/shm");
		return;
	}
	snprintf(crash_dir, sizeof(crash_dir), "%s", testimg_dir());
}

static int setup(void **state)
{
	/*
	 * run_isolated() registered this thread with the engine's RCU
	 * directly; the public API keeps its own per-thread flag and would
	 * register it twice. Hand the registration over to the API.
	 */
	fs_rcu_unregister_thread();
	foliofs_thread_init();
	pick_crash_dir();
	return testimg_probe("crash");
}

/* Remove this run's images, also those a failed test left behind. */
static int teardown(void **state)
{
	char pattern[4200];
	glob_t g;
	size_t i;

	snprintf(pattern, sizeof(pattern), "%s/crash.%d.*", crash_dir,
		 (int)getpid());
	if (!glob(pattern, 0, NULL, &g)) {
		for (i = 0; i < g.gl_pathc; i++)
			unlink(g.gl_pathv[i]);
		globfree(&g);
	}
	return testimg_cleanup();
}

/* ---- Workloads ----------------------------------------------------------- */

/*
 * The script: one of each thing a crash can get wrong, in an order where
 * each builds on durable state.
 */
static void script_workload(struct work *w)
{
	uint32_t a, b, tmp, c, e, g;

	w_mkdir(w, "/d");
	a = w_create(w, "/a");
	w_write(w, a, 0, 12288);
	w_fsync_ok(w, a, 0);

	/* Unaligned, over three blocks; fdatasync. */
	b = w_create(w, "/d/b");
	w_write(w, b, 1000, 9000);
	w_fsync_ok(w, b, 1);

	/* Overwrite and extend without a sync, then syncfs. */
	w_write(w, a, 8192, 12288);
	w_write(w, b, 0, 512);
	w_syncfs_ok(w);

	/* Atomic replace: write a new file, fsync it, rename it over. */
	tmp = w_create(w, "/a.tmp");
	w_write(w, tmp, 0, 16384);
	w_fsync_ok(w, tmp, 0);
	w_close(w, a);
	w_rename(w, "/a.tmp", "/a");
	w_fsync_ok(w, tmp, 0);

	/* Truncate into a block, then extend over the cut tail. */
	w_truncate(w, b, 5000);
	w_fsync_ok(w, b, 0);
	w_truncate(w, b, 12000);
	w_write(w, b, 10000, 800);
	w_fsync_ok(w, b, 0);

	/* Unlink; a new file may get the freed blocks only after a commit. */
	w_unlink(w, "/d/b");
	c = w_create(w, "/d/c");
	w_write(w, c, 0, 20480);
	w_fsync_ok(w, c, 0);

	/* A hole punched in the middle. */
	e = w_create(w, "/e");
	w_write(w, e, 0, 65536);
	w_fsync_ok(w, e, 1);
	w_punch(w, e, 8192, 16384);
	w_fsync_ok(w, e, 0);

	/* Cross-directory rename, a hard link. */
	w_rename(w, "/d/c", "/c2");
	w_link(w, c, "/d/c-link");
	w_syncfs_ok(w);

	/* Unlinked while open: written and fsynced, then gone at close. */
	w_unlink(w, "/e");
	w_write(w, e, 65536, 8192);
	w_fsync_ok(w, e, 0);
	w_close(w, e);

	/* Overwrites in place, one not synced. */
	w_write(w, c, 0, 4096);
	w_write(w, tmp, 4096, 4096);
	w_fsync_ok(w, tmp, 0);

	/* A rename over a file that is still open, then both written. */
	g = w_create(w, "/g");
	w_write(w, g, 0, 8192);
	w_fsync_ok(w, g, 0);
	w_rename(w, "/g", "/c2");
	w_write(w, c, 24576, 4096);
	w_write(w, g, 8192, 4096);
	w_syncfs_ok(w);

	/* A directory moved into another; one made and removed. */
	w_mkdir(w, "/d2");
	w_rename(w, "/d", "/d2/d");
	w_mkdir(w, "/d3");
	w_rmdir(w, "/d3");
	w_syncfs_ok(w);

	/* Left to the unmount: nothing syncs these. */
	w_write(w, tmp, 16384, 8192);
	w_truncate(w, g, 4096);
	w_write(w, c, 40000, 4000);
}

/* A random file of the namespace (a path), or NULL. */
static const char *pick_path(struct work *w, uint64_t *rng, bool dir)
{
	size_t i, n = 0, k;

	for (i = 0; i < w->nns; i++)
		n += w->ns[i].dir == dir;
	if (!n)
		return NULL;
	k = rng_next(rng) % n;
	for (i = 0; i < w->nns; i++)
		if (w->ns[i].dir == dir && !k--)
			return w->ns[i].path;
	return NULL;
}

/* A random fid that is open (@open) or closed but linked (!@open). */
static int pick_fid(struct work *w, uint64_t *rng, bool open)
{
	unsigned int i, n = 0, k;

	for (i = 0; i < w->nfiles; i++)
		n += open ? !!w->files[i].fh :
		     (!w->files[i].fh && w->files[i].nlink);
	if (!n)
		return -1;
	k = (unsigned int)(rng_next(rng) % n);
	for (i = 0; i < w->nfiles; i++)
		if ((open ? !!w->files[i].fh :
		     (!w->files[i].fh && w->files[i].nlink)) && !k--)
			return (int)i;
	return -1;
}

static bool dir_empty(struct work *w, const char *dir)
{
	size_t i, len = strlen(dir);

	for (i = 0; i < w->nns; i++)
		if (!strncmp(w->ns[i].path, dir, len) &&
		    w->ns[i].path[len] == '/')
			return false;
	return true;
}

static void new_name(struct work *w, uint64_t *rng, char *out, unsigned int *ctr)
{
	const char *dir = rng_next(rng) % 2 ? pick_path(w, rng, true) : NULL;

	snprintf(out, PATH_LEN, "%s/f%u", dir ? dir : "", (*ctr)++);
}

#define RAND_MAX_SIZE	(128U << 10)

/* @nops random calls; failures of the engine fail the test. */
static void random_workload(struct work *w, uint64_t seed, unsigned int nops)
{
	uint64_t rng = seed;
	unsigned int i, ctr = 0, dctr = 0;
	char path[PATH_LEN];

	for (i = 0; i < nops; i++) {
		unsigned int r = (unsigned int)(rng_next(&rng) % 100);
		int fid = pick_fid(w, &rng, true);
		const char *p, *q;

		if (r < 8 || fid < 0) {
			if (w->nfiles >= MAX_FILES - 1 || w->nns >= MAX_NS - 4)
				continue;
			new_name(w, &rng, path, &ctr);
			w_create(w, path);
		} else if (r < 40) {
			uint64_t off = (rng_next(&rng) % 28) * BLK, len;

			if (rng_next(&rng) % 2)
				off += 8 * (rng_next(&rng) % 512);
			if (rng_next(&rng) % 3 == 0)
				len = BLK * (1 + rng_next(&rng) % 4);
			else
				len = 8 * (1 + rng_next(&rng) % 1024);
			if (off + len > RAND_MAX_SIZE)
				len = RAND_MAX_SIZE - off;
			w_write(w, (uint32_t)fid, off, len);
		} else if (r < 50) {
			w_fsync_ok(w, (uint32_t)fid, rng_next(&rng) % 3 == 0);
		} else if (r < 53) {
			w_syncfs_ok(w);
		} else if (r < 59) {
			uint64_t cur = w->files[fid].size, size;

			if (cur && rng_next(&rng) % 2)
				size = 8 * (rng_next(&rng) % (cur / 8 + 1));
			else
				size = 8 * (rng_next(&rng) %
					    (RAND_MAX_SIZE / 8));
			w_truncate(w, (uint32_t)fid, size);
		} else if (r < 62) {
			w_punch(w, (uint32_t)fid, BLK * (rng_next(&rng) % 24),
				BLK * (1 + rng_next(&rng) % 6) -
				8 * (rng_next(&rng) % 2));
		} else if (r < 68) {
			p = pick_path(w, &rng, false);
			if (p) {
				snprintf(path, sizeof(path), "%s", p);
				w_unlink(w, path);
			}
		} else if (r < 78) {
			char from[PATH_LEN];
			struct nsent *s, *d;

			p = pick_path(w, &rng, false);
			if (!p)
				continue;
			snprintf(from, sizeof(from), "%s", p);
			s = ns_find(w, from);
			q = rng_next(&rng) % 2 ?
			    pick_path(w, &rng, false) : NULL;
			d = q ? ns_find(w, q) : NULL;
			if (d && d->ino == s->ino)
				continue;	/* a link to itself: no-op */
			if (q)
				snprintf(path, sizeof(path), "%s", q);
			else
				new_name(w, &rng, path, &ctr);
			/* Half the time the safe-replace way: fsync first. */
			if (rng_next(&rng) % 2) {
				uint32_t sf;

				fid_of_ino(w, s->ino, &sf);
				if (w->files[sf].fh)
					w_fsync_ok(w, sf, 0);
			}
			w_rename(w, from, path);
		} else if (r < 80) {
			if (w->nns >= MAX_NS - 4 || !w->files[fid].nlink)
				continue;
			new_name(w, &rng, path, &ctr);
			w_link(w, (uint32_t)fid, path);
		} else if (r < 83) {
			size_t k, nd = 0;

			for (k = 0; k < w->nns; k++)
				nd += w->ns[k].dir;
			if (nd >= 4 || w->nns >= MAX_NS - 4)
				continue;
			snprintf(path, sizeof(path), "/d%u", dctr++);
			w_mkdir(w, path);
		} else if (r < 85) {
			p = pick_path(w, &rng, true);
			if (p && dir_empty(w, p)) {
				snprintf(path, sizeof(path), "%s", p);
				w_rmdir(w, path);
			}
		} else if (r < 87) {
			char from[PATH_LEN];

			p = pick_path(w, &rng, true);
			if (!p)
				continue;
			snprintf(from, sizeof(from), "%s", p);
			snprintf(path, sizeof(path), "/d%u", dctr++);
			w_rename(w, from, path);
		} else if (r < 93) {
			w_close(w, (uint32_t)fid);
		} else if (r < 95) {
			w_chmod(w, (uint32_t)fid,
				0600 | (rng_next(&rng) % 2) * 044);
		} else {
			fid = pick_fid(w, &rng, false);
			if (fid >= 0)
				w_reopen(w, (uint32_t)fid);
		}
	}
}

/* ---- Crash tests --------------------------------------------------------- */

static void run_script(uint64_t log_bytes, const char *name)
{
	struct work *w = work_new(name, log_bytes, false);
	unsigned int fails;

	script_workload(w);
	w_unmount(w);
	check_points(w, 0, 1000);
	check_remount(w);
	fails = w->fails;
	work_free(w);
	assert_int_equal(fails, 0);
}

static void test_crash_script(void **state)
{
	run_script(0, "script");
}

static void test_crash_script_small_log(void **state)
{
	run_script(SMALL_LOG, "script-small-log");
}

static uint64_t random_seed(void)
{
	return env_u64("FOLIOFS_CRASH_SEED", 20240611);
}

static unsigned int run_random(uint64_t log_bytes, uint64_t seed,
			       unsigned int nops, size_t sample)
{
	char name[64];
	struct work *w;
	unsigned int fails;

	snprintf(name, sizeof(name), "random-%s-%" PRIu64,
		 log_bytes ? "small-log" : "log", seed);
	printf("# %s: seed %" PRIu64 " (FOLIOFS_CRASH_SEED=%" PRIu64
	       " repeats it)\n", name, seed, seed);
	w = work_new(name, log_bytes, false);
	random_workload(w, seed, nops);
	w_unmount(w);
	check_points(w, sample, seed);
	check_remount(w);
	fails = w->fails;
	work_free(w);
	return fails;
}

static void test_crash_random(void **state)
{
	assert_int_equal(run_random(0, random_seed(), 120, 0), 0);
}

static void test_crash_random_small_log(void **state)
{
	assert_int_equal(run_random(SMALL_LOG, random_seed() + 1, 120, 0), 0);
}

/* FOLIOFS_CRASH_ALL=1: every point of many random workloads. */
static void test_crash_all(void **state)
{
	uint64_t seed = random_seed();
	unsigned int i, n = (unsigned int)env_u64("FOLIOFS_CRASH_RUNS", 24);
	unsigned int fails = 0;

	if (!env_u64("FOLIOFS_CRASH_ALL", 0)) {
		printf("# set FOLIOFS_CRASH_ALL=1 to check every point of %u "
		       "random workloads\n", n);
		skip();
	}
	alarm(0);	/* longer than the harness's per-test limit */
	for (i = 0; i < n; i++)
		fails += run_random(i % 2 ? SMALL_LOG : 0, seed + 100 * i,
				    300, 0);
	assert_int_equal(fails, 0);
}

/*
 * fsync after an in-place overwrite flushes the data, also when the
 * file's inode record already went out with another commit (a chmod
 * after the write, committed by another file's fsync), so that the fsync
 * has no record of its own to commit.
 */
static void test_fsync_overwrite_without_records(void **state)
{
	struct work *w = work_new("overwrite-no-records", 0, false);
	unsigned int fails;
	uint32_t a, b;

	a = w_create(w, "/a");
	b = w_create(w, "/b");
	w_write(w, a, 0, 16384);
	w_write(w, b, 0, 4096);
	w_syncfs_ok(w);

	w_write(w, a, 4096, 8192);	/* in place: no new extent */
	w_chmod(w, a, 0600);		/* logs a's inode now */
	w_write(w, b, 4096, 4096);
	w_fsync_ok(w, b, 0);		/* commits that record */
	w_fsync_ok(w, a, 0);		/* must flush a's data */

	w_unmount(w);
	check_points(w, 0, 5);
	fails = w->fails;
	work_free(w);
	assert_int_equal(fails, 0);
}

/*
 * The checker is not blind: it finds a lost fsync (an image cut before
 * the fsync's last flush, checked as if cut after it) and a block of one
 * file showing in another.
 */
static void test_checker_finds_damage(void **state)
{
	struct work *w = work_new("checker", 0, false);
	uint64_t *blk = aligned_alloc(BLK, BLK);
	uint64_t *other = aligned_alloc(BLK, BLK);
	uint64_t off, at_x = 0, at_y = 0;
	unsigned int found;
	size_t p;
	uint32_t x, y;

	assert_non_null(blk);
	assert_non_null(other);
	x = w_create(w, "/x");
	y = w_create(w, "/y");
	w_write(w, x, 0, 4096);
	w_fsync_ok(w, x, 0);
	p = w->files[x].snap[0].p;
	w_write(w, y, 0, 4096);
	w_syncfs_ok(w);
	w_unmount(w);

	printf("# the next problems are expected\n");
	assert_int_equal(crashsim_make_image_at(w->sim, p - 1, 1,
						CRASHSIM_DROP, w->crash_fd), 0);
	found = check_image(w, w->crash_img, p, "lost fsync", false);
	assert_true(found > 0);

	/* Find x's and y's data blocks, and put y's where x's is. */
	assert_int_equal(crashsim_make_image(w->sim, 1, CRASHSIM_DROP,
					     w->crash_fd), 0);
	for (off = w->data_start * BLK; off < VOL_BYTES; off += BLK) {
		uint32_t fid, v;

		assert_int_equal(pread(w->crash_fd, blk, BLK, (off_t)off), BLK);
		if (!blk[0] || !pat_decode(blk[0], 0, &fid, &v))
			continue;
		if (fid == x)
			at_x = off;
		if (fid == y) {
			at_y = off;
			memcpy(other, blk, BLK);
		}
	}
	assert_true(at_x && at_y);
	assert_int_equal(pwrite(w->crash_fd, other, BLK, (off_t)at_x), BLK);
	found = check_image(w, w->crash_img, crashsim_points(w->sim),
			    "foreign block", false);
	assert_true(found > 0);
	free(blk);
	free(other);
	work_free(w);
}

/* ---- Write errors -------------------------------------------------------- */

static uint64_t dirty_bytes(struct work *w)
{
	struct foliofs_stats st;

	assert_int_equal(foliofs_stats(w->fs, &st), 0);
	return st.dirty_bytes;
}

static struct foliofs_file *open_again(struct work *w, uint32_t fid)
{
	struct foliofs_file *f;

	assert_int_equal(foliofs_open(w->fs, w->files[fid].ino, O_RDWR, &f), 0);
	return f;
}

/* The workload ran: every crash point of it, then a real remount. */
static void finish_fault(struct work *w)
{
	unsigned int fails;

	w_unmount(w);
	check_points(w, 0, 77);
	check_remount(w);
	fails = w->fails;
	work_free(w);
	assert_int_equal(fails, 0);
}

/*
 * The 2nd data write of an fsync fails once. That fsync says -EIO, the
 * data stays dirty; the next fsync on the same file retries and says 0;
 * another file opened before the error sees -EIO once, then 0; a file
 * opened after it sees 0.
 */
static void test_fault_data_write_once(void **state)
{
	struct work *w = work_new("fault-data-once", 0, true);
	struct foliofs_file *h2, *h3;
	struct foliofs_stats st;
	uint32_t a, b;

	a = w_create(w, "/a");
	b = w_create(w, "/b");
	w_write(w, a, 0, 4096);
	w_write(w, b, 0, 4096);
	w_syncfs_ok(w);
	h2 = open_again(w, a);

	/* Three folios far apart: three write requests. */
	w_write(w, a, 16384, 4096);
	w_write(w, a, 32768, 4096);
	w_write(w, a, 49152, 4096);
	w_write(w, b, 8192, 4096);
	assert_int_equal(faulty_fail_nth(w->faulty, FAULTY_WRITE, 2, -EIO), 0);
	assert_int_equal(w_fsync(w, a, 0), -EIO);
	assert_true(dirty_bytes(w) >= 4096);
	assert_int_equal(foliofs_stats(w->fs, &st), 0);
	assert_true(st.writeback_errors >= 1);

	assert_int_equal(w_fsync(w, a, 0), 0);
	assert_int_equal(foliofs_fsync(h2, 0), -EIO);
	assert_int_equal(foliofs_fsync(h2, 0), 0);
	h3 = open_again(w, a);
	assert_int_equal(foliofs_fsync(h3, 0), 0);
	/* The other file never saw an error. */
	w_fsync_ok(w, b, 0);
	w_syncfs_ok(w);
	assert_int_equal(foliofs_release(h2), 0);
	assert_int_equal(foliofs_release(h3), 0);
	finish_fault(w);
}

/*
 * Every data write fails until cleared: each fsync in between says -EIO
 * (the retry failed again), the data stays dirty; after faulty_clear()
 * fsync says 0 and the data is durable.
 */
static void test_fault_data_write_sticky(void **state)
{
	struct work *w = work_new("fault-data-sticky", 0, true);
	struct foliofs_file *h2;
	uint32_t a;

	a = w_create(w, "/a");
	w_write(w, a, 0, 8192);
	w_syncfs_ok(w);
	h2 = open_again(w, a);
	w_write(w, a, 4096, 16384);
	w_write(w, a, 65536, 104);	/* partly written last block */
	assert_int_equal(faulty_fail_range(w->faulty, FAULTY_WRITE,
					   w->data_start * BLK,
					   VOL_BYTES - w->data_start * BLK,
					   -EIO), 0);
	assert_int_equal(w_fsync(w, a, 0), -EIO);
	assert_true(dirty_bytes(w) >= 16384);
	assert_int_equal(w_fsync(w, a, 1), -EIO);
	assert_true(dirty_bytes(w) >= 16384);

	faulty_clear(w->faulty);
	assert_int_equal(w_fsync(w, a, 0), 0);
	assert_int_equal(foliofs_fsync(h2, 0), -EIO);
	assert_int_equal(foliofs_fsync(h2, 0), 0);
	assert_int_equal(dirty_bytes(w), 0);
	w_syncfs_ok(w);

	/*
	 * A syncfs meets the error: it says so, and so does the next fsync
	 * of each open file (the error is new to them), even though the
	 * retry in that fsync succeeded; the one after says 0.
	 */
	w_write(w, a, 8192, 8192);
	assert_int_equal(faulty_fail_range(w->faulty, FAULTY_WRITE,
					   w->data_start * BLK,
					   VOL_BYTES - w->data_start * BLK,
					   -EIO), 0);
	assert_int_equal(w_syncfs(w), -EIO);
	faulty_clear(w->faulty);
	assert_int_equal(w_fsync(w, a, 0), -EIO);
	assert_int_equal(dirty_bytes(w), 0);
	assert_int_equal(w_fsync(w, a, 0), 0);
	assert_int_equal(foliofs_fsync(h2, 0), -EIO);
	assert_int_equal(foliofs_fsync(h2, 0), 0);
	w_syncfs_ok(w);
	assert_int_equal(foliofs_release(h2), 0);
	finish_fault(w);
}

/*
 * A flush fails: first the one before the log write (data), then the
 * log's own. fsync says -EIO; the next one flushes again and says 0.
 */
static void test_fault_flush(void **state)
{
	struct work *w = work_new("fault-flush", 0, true);
	uint32_t a;
	int nth;

	a = w_create(w, "/a");
	w_write(w, a, 0, 4096);
	w_syncfs_ok(w);
	for (nth = 1; nth <= 2; nth++) {
		w_write(w, a, 8192 * nth, 8192);
		assert_int_equal(faulty_fail_nth(w->faulty, FAULTY_FLUSH, nth,
						 -EIO), 0);
		assert_int_equal(w_fsync(w, a, 0), -EIO);
		assert_int_equal(w_fsync(w, a, 0), 0);
	}
	/* A namespace change whose only flush fails. */
	w_mkdir(w, "/d");
	assert_int_equal(faulty_fail_nth(w->faulty, FAULTY_FLUSH, 1, -EIO), 0);
	assert_int_equal(w_syncfs(w), -EIO);
	w_syncfs_ok(w);
	finish_fault(w);
}

/*
 * The log's writes fail: the commit fails, fsync and syncfs say so until
 * the error clears; then they say 0 and a remount shows everything.
 */
static void test_fault_log_write(void **state)
{
	struct work *w = work_new("fault-log", 0, true);
	uint32_t a, b;

	a = w_create(w, "/a");
	w_write(w, a, 0, 4096);
	w_syncfs_ok(w);

	w_mkdir(w, "/d");
	b = w_create(w, "/d/b");
	w_write(w, a, 4096, 8192);
	w_write(w, b, 0, 12288);
	assert_int_equal(faulty_fail_range(w->faulty, FAULTY_WRITE,
					   w->log_start * BLK,
					   w->log_blocks * BLK, -EIO), 0);
	assert_int_equal(w_fsync(w, a, 0), -EIO);
	assert_int_equal(w_fsync(w, b, 1), -EIO);
	w_rename(w, "/d/b", "/b");
	assert_int_equal(w_syncfs(w), -EIO);
	faulty_clear(w->faulty);
	assert_int_equal(w_fsync(w, a, 0), 0);
	w_write(w, b, 12288, 4096);
	assert_int_equal(w_fsync(w, b, 0), 0);
	w_syncfs_ok(w);
	finish_fault(w);
}

/*
 * With a small log, commits checkpoint; the superblock writes that name
 * the new checkpoint fail for a while. Whatever fsync said meanwhile,
 * once the error clears fsync says 0 again, and every crash point holds.
 */
static void test_fault_checkpoint(void **state)
{
	struct work *w = work_new("fault-checkpoint", SMALL_LOG, true);
	struct foliofs_stats st;
	uint64_t ckpts;
	uint32_t a, b;
	int i, failed = 0, ret;

	a = w_create(w, "/a");
	b = w_create(w, "/b");
	w_syncfs_ok(w);
	assert_int_equal(foliofs_stats(w->fs, &st), 0);
	ckpts = st.checkpoints;
	assert_int_equal(faulty_fail_range(w->faulty, FAULTY_WRITE, 0,
					   FOLIOFS_SB_AREA, -EIO), 0);
	for (i = 0; i < 60 && failed < 3; i++) {
		w_write(w, i % 2 ? a : b, 4096 * (uint64_t)(i % 16), 4096);
		ret = w_fsync(w, i % 2 ? a : b, 0);
		if (ret) {
			assert_int_equal(ret, -EIO);
			failed++;
		}
	}
	assert_true(failed > 0);
	faulty_clear(w->faulty);
	w_write(w, a, 65536, 4096);
	assert_int_equal(w_fsync(w, a, 0), 0);
	w_syncfs_ok(w);
	for (i = 0; i < 20; i++) {
		w_write(w, b, 4096 * (uint64_t)(i % 8), 4096);
		w_fsync_ok(w, b, 0);
	}
	assert_int_equal(foliofs_stats(w->fs, &st), 0);
	assert_true(st.checkpoints > ckpts);
	finish_fault(w);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_crash_script, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_crash_script_small_log,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_random, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_crash_random_small_log,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_all, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_fsync_overwrite_without_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checker_finds_damage,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_data_write_once,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_data_write_sticky,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_flush, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fault_log_write, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fault_checkpoint, setup,
						teardown),
	};

	return run_isolated(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
