/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xarray-bench.c - lookups per second of our xarray against liburcu's
 * cds_lfht and against the same xarray behind a pthread rwlock, measured
 * side by side in one run (DESIGN.md, Performance: "lookups are at least as
 * fast as liburcu's cds_lfht at 1M entries").
 *
 * Every structure maps the same keys to objects of the same shape: one
 * 64-byte, 64-byte-aligned object per key, holding the key and a value. A
 * lookup finds the object and reads its key and value, as a page cache
 * reader finds a folio and then touches it (folio_try_get). The hash table
 * has to read the object to compare keys anyway; making the tree's readers
 * read it too keeps the comparison fair (--no-deref turns it off for the
 * tree rows, to see what the walk alone costs).
 *
 * Rows:
 *  lfht          cds_lfht_lookup, one urcu_memb read-side section per 64
 *                lookups; 64-bit mix hash; table created with 2^20 buckets,
 *                auto-resize and accounting on.
 *  xarray-xas    XA_STATE + xas_load, one fs_rcu_read_lock per 64 lookups
 *                (the cheapest correct reader path).
 *  xarray-load   xa_load per lookup, each inside a read-side section of its
 *                own (reading the object needs one; xa_load's nests).
 *  xarray-rwlock the same tree, but readers take a pthread_rwlock_t read
 *                lock around each xas_load and the writer takes the write
 *                lock around each change (a writer-preferring rwlock, so a
 *                writer is not starved by readers that never let go).
 *
 * Layouts: dense (indices 0..N-1) and sparse (N distinct random 40-bit
 * indices; the same set for all structures, from --seed). Readers look up
 * keys from the present set, picked by a per-thread xorshift from an array
 * of the keys.
 *
 * Writer (one thread, when the row says so): replaces the object of a
 * random present key over and over with a freshly allocated one, and frees
 * the old one after a grace period (at once behind the rwlock). On the dense
 * layout the xarray writers also, every 64th store, merge an aligned
 * 64-index range into one order-6 entry and split it back with
 * xas_split_alloc/xas_split, storing a fresh object per index. The lfht
 * writer uses cds_lfht_add_replace. Only readers' lookups are counted;
 * the writer's rates are printed beside them.
 *
 * Each point runs a short warm-up and then counts lookups for --seconds.
 * On a 2-CPU machine, 2 readers plus a writer oversubscribe the CPUs; the
 * numbers are reported as they are. Beside lookups per second, each row
 * gives the share of the wall time the readers were on a CPU (from their
 * thread CPU clocks) and lookups per reader CPU-second, which moves much
 * less than lookups per second when other threads or programs take CPUs.
 *
 * Memory: one layout is built at a time. The sparse tree is the big one
 * (about 1.7 GiB of nodes at 1M entries: almost every key gets its own
 * chain of nodes below the top levels); objects take 64 MiB per structure.
 *
 * Exit status: 0, or 1 if any lookup returned a wrong or missing object,
 * a writer operation failed, or the tree's invariants broke.
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xarray.h"		/* includes rcu.h, hence urcu/urcu-memb.h */
#include <urcu/rculfhash.h>	/* after the flavour, as it asks */

#define BATCH		64	/* lookups per read-side section */
#define MERGE_ORDER	6	/* order of the ranges the writer merges */
#define MERGE_EVERY	64	/* stores between two merge+split cycles */
/* Objects waiting for a grace period before the writer waits for them. */
#define PENDING_MAX	(1L << 20)
#define MAX_REPEAT	15

enum kind {
	K_LFHT,
	K_XAS,
	K_XALOAD,
	K_RWLOCK,
	NR_KINDS
};

static const char *const kind_name[NR_KINDS] = {
	[K_LFHT] = "lfht",
	[K_XAS] = "xarray-xas",
	[K_XALOAD] = "xarray-load",
	[K_RWLOCK] = "xarray-rwlock",
};

static const char *const kind_desc[NR_KINDS] = {
	[K_LFHT] = "cds_lfht_lookup, one RCU read section per 64 lookups",
	[K_XAS] = "XA_STATE + xas_load, one RCU read section per 64 lookups",
	[K_XALOAD] = "xa_load per lookup, each in its own RCU read section",
	[K_RWLOCK] = "pthread_rwlock read lock + xas_load per lookup",
};

/* What the xarray maps an index to. One cache line. */
struct xobj {
	unsigned long	key;
	unsigned long	val;
	struct rcu_head	rcu;
} __attribute__((aligned(64)));

/* What the hash table holds: the same, with the hash node embedded. */
struct hobj {
	unsigned long		key;
	unsigned long		val;
	struct cds_lfht_node	node;
	struct rcu_head		rcu;
} __attribute__((aligned(64)));

/* One layout's data: keys and the structures built over them. */
struct layout {
	const char	*name;
	bool		dense;
	unsigned long	n;
	unsigned long	*keys;		/* the present set, reader-indexed */
	struct xarray	xa;		/* shared by the xarray rows */
	pthread_rwlock_t rw;		/* for the xarray-rwlock rows */
	struct cds_lfht	*ht;
	unsigned long	xa_bytes;	/* nodes, measured after the build */
	double		build_xa_s, build_ht_s;
};

struct row {
	enum kind	kind;
	const char	*layout;
	int		readers;
	bool		writer;
	double		mops;
	double		ratio;		/* mops / lfht's in the same config */
	double		writer_kstores;	/* thousands of stores per second */
	double		writer_cycles;	/* merge+split cycles per second */
	double		reader_cpu;	/* CPU time readers got / (wall * readers) */
	unsigned long	errors;
};

/* Per-thread counters, published with relaxed stores for the main thread. */
struct counter {
	unsigned long	ops;
	unsigned long	cycles;
	unsigned long	errors;
	unsigned long	sink;
} __attribute__((aligned(64)));

struct run {
	struct layout	*lo;
	enum kind	kind;
	int		readers;
	bool		writer;
	bool		stop;		/* relaxed: set by main, polled per batch */
	pthread_barrier_t start;
	struct counter	ctr[3];		/* readers, then the writer */
};

struct thread_arg {
	struct run	*run;
	int		idx;
	uint64_t	seed;
};

static struct {
	double		seconds;
	int		repeat;
	unsigned long	entries;
	uint64_t	seed;
	bool		json;
	bool		deref;
	bool		split;
} opt = {
	.seconds = 0.5,
	.repeat = 1,
	.entries = 1UL << 20,
	.seed = 0x5eed,
	.deref = true,
	.split = true,
};

/* Objects queued to call_rcu and not yet freed. */
static long pending_frees;

/* --- Small helpers ------------------------------------------------------- */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
	struct timespec ts = {
		.tv_sec = (time_t)s,
		.tv_nsec = (long)((s - (time_t)s) * 1e9),
	};

	while (nanosleep(&ts, &ts))
		;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* A random index below @n (n < 2^32), without a division. */
static inline unsigned long pick(uint64_t *s, unsigned long n)
{
	return (unsigned long)(((xorshift64(s) >> 32) * n) >> 32);
}

/* murmur3's 64-bit finaliser: every key bit reaches every hash bit. */
static inline unsigned long hash64(unsigned long x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static void *xmalloc_aligned(size_t size)
{
	void *p = aligned_alloc(64, size);

	if (!p) {
		fprintf(stderr, "xarray-bench: out of memory\n");
		exit(1);
	}
	return p;
}

static struct xobj *xobj_new(unsigned long key, unsigned long val)
{
	struct xobj *o = xmalloc_aligned(sizeof(*o));

	o->key = key;
	o->val = val;
	return o;
}

static struct hobj *hobj_new(unsigned long key, unsigned long val)
{
	struct hobj *h = xmalloc_aligned(sizeof(*h));

	cds_lfht_node_init(&h->node);
	h->key = key;
	h->val = val;
	return h;
}

static void xobj_free_cb(struct rcu_head *head)
{
	fs_rcu_tsan_acquire();
	free(container_of(head, struct xobj, rcu));
	__atomic_fetch_sub(&pending_frees, 1, __ATOMIC_RELAXED);
}

static void hobj_free_cb(struct rcu_head *head)
{
	fs_rcu_tsan_acquire();
	free(container_of(head, struct hobj, rcu));
	__atomic_fetch_sub(&pending_frees, 1, __ATOMIC_RELAXED);
}

static int hobj_match(struct cds_lfht_node *node, const void *key)
{
	return container_of(node, struct hobj, node)->key ==
	       *(const unsigned long *)key;
}

/*
 * An object found for @key is right if it is @key's own, or (dense layout,
 * while the writer has the range merged) the order-6 entry's, whose key is
 * the first index of the range.
 */
static inline bool obj_ok(unsigned long found, unsigned long key)
{
	return key - found < (1UL << MERGE_ORDER);
}

/* --- Readers --------------------------------------------------------------- */

static inline void publish(struct counter *c, unsigned long ops,
			   unsigned long errors)
{
	__atomic_store_n(&c->ops, ops, __ATOMIC_RELAXED);
	__atomic_store_n(&c->errors, errors, __ATOMIC_RELAXED);
}

static inline bool stopped(struct run *r)
{
	return __atomic_load_n(&r->stop, __ATOMIC_RELAXED);
}

/*
 * The loops are written out per structure so that nothing but the lookup
 * differs between them; @deref is a constant at every call site.
 */
static inline void check_xobj(const void *e, unsigned long key, bool deref,
			      unsigned long *sum, unsigned long *errors)
{
	const struct xobj *o = e;

	if (unlikely(!o)) {
		(*errors)++;
		return;
	}
	if (deref) {
		if (unlikely(!obj_ok(o->key, key)))
			(*errors)++;
		*sum += o->val;
	}
}

static inline void read_xas(struct run *r, struct counter *c, uint64_t *rng,
			    bool deref)
{
	struct layout *lo = r->lo;
	const unsigned long *keys = lo->keys;
	unsigned long n = lo->n, ops = 0, errors = 0, sum = 0;
	XA_STATE(xas, &lo->xa, 0);

	while (!stopped(r)) {
		fs_rcu_read_lock();
		for (int i = 0; i < BATCH; i++) {
			unsigned long key = keys[pick(rng, n)];
			void *e;

			xas_set(&xas, key);
			do {
				e = xas_load(&xas);
			} while (xas_retry(&xas, e));
			check_xobj(e, key, deref, &sum, &errors);
		}
		fs_rcu_read_unlock();
		ops += BATCH;
		publish(c, ops, errors);
	}
	c->sink = sum;
}

static inline void read_xa_load(struct run *r, struct counter *c,
				uint64_t *rng, bool deref)
{
	struct layout *lo = r->lo;
	const unsigned long *keys = lo->keys;
	unsigned long n = lo->n, ops = 0, errors = 0, sum = 0;

	while (!stopped(r)) {
		for (int i = 0; i < BATCH; i++) {
			unsigned long key = keys[pick(rng, n)];

			/*
			 * The object may be freed once xa_load drops its read
			 * lock, so a caller that reads it must hold its own
			 * section: xa_load's then nests (and costs a little
			 * less than an outermost one).
			 */
			fs_rcu_read_lock();
			check_xobj(xa_load(&lo->xa, key), key, deref, &sum,
				   &errors);
			fs_rcu_read_unlock();
		}
		ops += BATCH;
		publish(c, ops, errors);
	}
	c->sink = sum;
}

static inline void read_rwlock(struct run *r, struct counter *c,
			       uint64_t *rng, bool deref)
{
	struct layout *lo = r->lo;
	const unsigned long *keys = lo->keys;
	unsigned long n = lo->n, ops = 0, errors = 0, sum = 0;
	XA_STATE(xas, &lo->xa, 0);

	while (!stopped(r)) {
		for (int i = 0; i < BATCH; i++) {
			unsigned long key = keys[pick(rng, n)];
			void *e;

			/*
			 * The read lock excludes every writer (they change
			 * the tree only under the write lock), which gives
			 * xas_load what holding xa_lock would.
			 */
			pthread_rwlock_rdlock(&lo->rw);
			xas_set(&xas, key);
			do {
				e = xas_load(&xas);
			} while (xas_retry(&xas, e));
			check_xobj(e, key, deref, &sum, &errors);
			pthread_rwlock_unlock(&lo->rw);
		}
		ops += BATCH;
		publish(c, ops, errors);
	}
	c->sink = sum;
}

static void read_lfht(struct run *r, struct counter *c, uint64_t *rng)
{
	struct layout *lo = r->lo;
	const unsigned long *keys = lo->keys;
	unsigned long n = lo->n, ops = 0, errors = 0, sum = 0;
	struct cds_lfht *ht = lo->ht;

	while (!stopped(r)) {
		fs_rcu_read_lock();
		for (int i = 0; i < BATCH; i++) {
			unsigned long key = keys[pick(rng, n)];
			struct cds_lfht_iter iter;
			struct cds_lfht_node *node;

			cds_lfht_lookup(ht, hash64(key), hobj_match, &key,
					&iter);
			node = cds_lfht_iter_get_node(&iter);
			if (unlikely(!node))
				errors++;
			else
				sum += container_of(node, struct hobj,
						    node)->val;
		}
		fs_rcu_read_unlock();
		ops += BATCH;
		publish(c, ops, errors);
	}
	c->sink = sum;
}

static void *reader_main(void *p)
{
	struct thread_arg *a = p;
	struct run *r = a->run;
	struct counter *c = &r->ctr[a->idx];
	uint64_t rng = a->seed | 1;

	fs_rcu_register_thread();
	pthread_barrier_wait(&r->start);
	switch (r->kind) {
	case K_LFHT:
		read_lfht(r, c, &rng);
		break;
	case K_XAS:
		if (opt.deref)
			read_xas(r, c, &rng, true);
		else
			read_xas(r, c, &rng, false);
		break;
	case K_XALOAD:
		if (opt.deref)
			read_xa_load(r, c, &rng, true);
		else
			read_xa_load(r, c, &rng, false);
		break;
	case K_RWLOCK:
		if (opt.deref)
			read_rwlock(r, c, &rng, true);
		else
			read_rwlock(r, c, &rng, false);
		break;
	default:
		break;
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* --- Writers --------------------------------------------------------------- */

struct writer {
	struct layout	*lo;
	pthread_rwlock_t *rw;	/* NULL: RCU readers */
	struct counter	*c;
	unsigned long	gen;
	unsigned long	errors;
};

static void wlock(struct writer *w)
{
	if (w->rw)
		pthread_rwlock_wrlock(w->rw);
}

static void wunlock(struct writer *w)
{
	if (w->rw)
		pthread_rwlock_unlock(w->rw);
}

/*
 * Free an object the tree no longer holds: after a grace period when
 * readers use RCU; at once behind the rwlock, whose write lock (dropped
 * before we get here) already excluded every reader that could see it.
 */
static void xobj_retire(struct writer *w, struct xobj *o)
{
	if (!o)
		return;
	if (w->rw) {
		free(o);
		return;
	}
	__atomic_fetch_add(&pending_frees, 1, __ATOMIC_RELAXED);
	fs_call_rcu(&o->rcu, xobj_free_cb);
}

/* Keep the memory waiting for grace periods bounded. */
static void throttle(void)
{
	if (__atomic_load_n(&pending_frees, __ATOMIC_RELAXED) > PENDING_MAX)
		fs_rcu_barrier();
}

/* Store @entry over the 2^@order range at @index, the xas way. */
static void *xw_store(struct writer *w, unsigned long index,
		      unsigned int order, void *entry)
{
	XA_STATE_ORDER(xas, &w->lo->xa, index, order);
	void *old;

	do {
		wlock(w);
		xa_lock(&w->lo->xa);
		old = xas_store(&xas, entry);
		xa_unlock(&w->lo->xa);
		wunlock(w);
	} while (xas_nomem(&xas));
	xas_destroy(&xas);
	if (xas_error(&xas)) {
		w->errors++;
		return NULL;
	}
	return old;
}

static void xw_replace(struct writer *w, unsigned long key)
{
	struct xobj *o = xobj_new(key, ++w->gen);
	struct xobj *old = xw_store(w, key, 0, o);

	if (!old || old->key != key) {
		w->errors++;
		return;		/* leak the new one rather than guess */
	}
	xobj_retire(w, old);
}

/*
 * Merge the 64 entries at @base into one order-6 entry, then split it back
 * into 64 entries of fresh objects: what the page cache does when it
 * replaces small folios by a large one and later splits it (truncate,
 * reclaim). Everything is allocated before the locks are taken.
 */
static void xw_cycle(struct writer *w, unsigned long base)
{
	struct xarray *xa = &w->lo->xa;
	unsigned int nr = 1U << MERGE_ORDER;
	struct xobj *old[1U << MERGE_ORDER], *piece[1U << MERGE_ORDER];
	struct xobj *big = xobj_new(base, ++w->gen);
	XA_STATE(xas, xa, base);
	unsigned int i;
	void *e;
	int err;

	for (i = 0; i < nr; i++)
		piece[i] = xobj_new(base + i, w->gen);
	/* Only this thread changes the tree, so what we load stays there. */
	for (i = 0; i < nr; i++)
		old[i] = xa_load(xa, base + i);

	/* Merge. */
	e = xw_store(w, base, MERGE_ORDER, big);
	if (e != old[0]) {
		w->errors++;
		return;
	}
	for (i = 0; i < nr; i++)
		xobj_retire(w, old[i]);

	/* Split back. */
	err = xas_split_alloc(&xas, MERGE_ORDER);
	if (err) {
		w->errors++;
		return;
	}
	wlock(w);
	xa_lock(xa);
	err = xas_split(&xas, big, MERGE_ORDER);
	if (!err) {
		for (i = 0; i < nr; i++) {
			xas_set(&xas, base + i);
			xas_store(&xas, piece[i]);
			if (xas_error(&xas))
				err = xas_error(&xas);
		}
	}
	xa_unlock(xa);
	wunlock(w);
	xas_destroy(&xas);
	if (err) {
		/* Wrong already: leak what the tree may still point at. */
		fprintf(stderr, "xarray-bench: split at %lu failed: %d\n",
			base, err);
		w->errors++;
		return;
	}
	xobj_retire(w, big);
}

static void lfht_replace(struct writer *w, unsigned long key)
{
	struct hobj *h = hobj_new(key, ++w->gen);
	struct cds_lfht_node *old;

	fs_rcu_read_lock();
	old = cds_lfht_add_replace(w->lo->ht, hash64(key), hobj_match, &key,
				   &h->node);
	fs_rcu_read_unlock();
	if (!old) {
		w->errors++;
		return;
	}
	__atomic_fetch_add(&pending_frees, 1, __ATOMIC_RELAXED);
	fs_call_rcu(&container_of(old, struct hobj, node)->rcu,
		    hobj_free_cb);
}

static void *writer_main(void *p)
{
	struct thread_arg *a = p;
	struct run *r = a->run;
	struct layout *lo = r->lo;
	struct writer w = {
		.lo = lo,
		.rw = r->kind == K_RWLOCK ? &lo->rw : NULL,
		.c = &r->ctr[a->idx],
	};
	bool cycles = opt.split && lo->dense && r->kind != K_LFHT &&
		      lo->n >= (1UL << MERGE_ORDER);
	unsigned long ops = 0, ncycles = 0;
	uint64_t rng = a->seed | 1;

	fs_rcu_register_thread();
	pthread_barrier_wait(&r->start);
	while (!stopped(r)) {
		unsigned long key = lo->keys[pick(&rng, lo->n)];

		if (r->kind == K_LFHT)
			lfht_replace(&w, key);
		else
			xw_replace(&w, key);
		ops++;
		if (cycles && ops % MERGE_EVERY == 0) {
			unsigned long base = key & ~((1UL << MERGE_ORDER) - 1);

			/* Only whole ranges: the dense set may end mid-range. */
			if (base + (1UL << MERGE_ORDER) <= lo->n) {
				xw_cycle(&w, base);
				ncycles++;
			}
		}
		__atomic_store_n(&w.c->ops, ops, __ATOMIC_RELAXED);
		__atomic_store_n(&w.c->cycles, ncycles, __ATOMIC_RELAXED);
		__atomic_store_n(&w.c->errors, w.errors, __ATOMIC_RELAXED);
		if (ops % 1024 == 0)
			throttle();
	}
	fs_rcu_unregister_thread();
	return NULL;
}

/* --- One measurement ------------------------------------------------------ */

static double cpu_seconds(clockid_t cid)
{
	struct timespec ts;

	if (clock_gettime(cid, &ts))
		return 0;
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/*
 * Counters, and the CPU time each reader has had: on a shared or
 * oversubscribed machine that says how much of the wall time the readers
 * actually ran.
 */
static void snapshot(struct run *r, int nthreads, int readers,
		     const clockid_t *cids, unsigned long *ops,
		     unsigned long *cycles, double *cpu)
{
	for (int i = 0; i < nthreads; i++) {
		ops[i] = __atomic_load_n(&r->ctr[i].ops, __ATOMIC_RELAXED);
		cycles[i] = __atomic_load_n(&r->ctr[i].cycles,
					    __ATOMIC_RELAXED);
	}
	*cpu = 0;
	for (int i = 0; i < readers; i++)
		*cpu += cpu_seconds(cids[i]);
}

static struct row measure(struct layout *lo, enum kind kind, int readers,
			  bool writer)
{
	struct run r = {
		.lo = lo,
		.kind = kind,
		.readers = readers,
		.writer = writer,
	};
	int nthreads = readers + (writer ? 1 : 0);
	pthread_t tid[3];
	clockid_t cids[3];
	struct thread_arg args[3];
	unsigned long ops0[3], ops1[3], cyc0[3], cyc1[3];
	double cpu0, cpu1;
	double warm = opt.seconds / 5 < 0.1 ? opt.seconds / 5 : 0.1;
	double t0, t1;
	struct row row = {
		.kind = kind,
		.layout = lo->name,
		.readers = readers,
		.writer = writer,
	};
	/* The same key sequences for every structure in a configuration. */
	uint64_t s = opt.seed + 2 * (uint64_t)readers + writer;

	pthread_barrier_init(&r.start, NULL, nthreads + 1);
	for (int i = 0; i < nthreads; i++) {
		args[i] = (struct thread_arg){ &r, i, splitmix64(&s) };
		if (pthread_create(&tid[i], NULL,
				   i < readers ? reader_main : writer_main,
				   &args[i])) {
			perror("xarray-bench: pthread_create");
			exit(1);
		}
		if (pthread_getcpuclockid(tid[i], &cids[i]))
			cids[i] = CLOCK_MONOTONIC;	/* reads as 100% */
	}
	pthread_barrier_wait(&r.start);
	sleep_s(warm);
	t0 = now();
	snapshot(&r, nthreads, readers, cids, ops0, cyc0, &cpu0);
	sleep_s(opt.seconds);
	t1 = now();
	snapshot(&r, nthreads, readers, cids, ops1, cyc1, &cpu1);
	__atomic_store_n(&r.stop, true, __ATOMIC_RELAXED);
	for (int i = 0; i < nthreads; i++)
		pthread_join(tid[i], NULL);
	pthread_barrier_destroy(&r.start);

	for (int i = 0; i < readers; i++)
		row.mops += (ops1[i] - ops0[i]) / (t1 - t0) / 1e6;
	row.reader_cpu = (cpu1 - cpu0) / (t1 - t0) / readers;
	if (writer) {
		row.writer_kstores = (ops1[readers] - ops0[readers]) /
				     (t1 - t0) / 1e3;
		row.writer_cycles = (cyc1[readers] - cyc0[readers]) /
				    (t1 - t0);
	}
	for (int i = 0; i < nthreads; i++)
		row.errors += r.ctr[i].errors;
	/* Drain this point's deferred frees so they do not bill the next. */
	fs_rcu_barrier();
	return row;
}

static int cmp_row_mops(const void *a, const void *b)
{
	double x = ((const struct row *)a)->mops;
	double y = ((const struct row *)b)->mops;

	return x < y ? -1 : x > y;
}

/*
 * Measure every selected structure in one configuration, side by side so
 * that drift on a noisy machine hits them alike; with --repeat, round after
 * round, keeping each structure's median round.
 */
static void measure_config(struct layout *lo, const enum kind *order,
			   unsigned int nkinds, unsigned int kinds,
			   int readers, bool writer, struct row *rows,
			   int *nrows)
{
	struct row samples[NR_KINDS][MAX_REPEAT];

	for (int rep = 0; rep < opt.repeat; rep++)
		for (unsigned int k = 0; k < nkinds; k++)
			if (kinds & (1U << order[k]))
				samples[k][rep] = measure(lo, order[k],
							  readers, writer);
	for (unsigned int k = 0; k < nkinds; k++) {
		unsigned long errors = 0;

		if (!(kinds & (1U << order[k])))
			continue;
		for (int rep = 0; rep < opt.repeat; rep++)
			errors += samples[k][rep].errors;
		qsort(samples[k], opt.repeat, sizeof(samples[k][0]),
		      cmp_row_mops);
		rows[*nrows] = samples[k][opt.repeat / 2];
		rows[*nrows].errors = errors;
		(*nrows)++;
	}
}

/* --- Building and tearing down a layout ------------------------------------ */

static int cmp_ulong(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a;
	unsigned long y = *(const unsigned long *)b;

	return x < y ? -1 : x > y;
}

/* @n distinct random 40-bit keys, in random order. */
static void sparse_keys(unsigned long *keys, unsigned long n, uint64_t seed)
{
	unsigned long have = 0;

	while (have < n) {
		unsigned long i, u;

		for (i = have; i < n; i++)
			keys[i] = splitmix64(&seed) & ((1UL << 40) - 1);
		qsort(keys, n, sizeof(*keys), cmp_ulong);
		for (i = 1, u = 1; i < n; i++)
			if (keys[i] != keys[u - 1])
				keys[u++] = keys[i];
		have = u;
	}
	for (unsigned long i = n - 1; i > 0; i--) {
		unsigned long j = splitmix64(&seed) % (i + 1);
		unsigned long t = keys[i];

		keys[i] = keys[j];
		keys[j] = t;
	}
}

static void layout_build(struct layout *lo, const char *name, bool dense)
{
	pthread_rwlockattr_t attr;
	double t;

	lo->name = name;
	lo->dense = dense;
	lo->n = opt.entries;
	lo->keys = malloc(lo->n * sizeof(*lo->keys));
	if (!lo->keys) {
		fprintf(stderr, "xarray-bench: out of memory\n");
		exit(1);
	}
	if (dense) {
		for (unsigned long i = 0; i < lo->n; i++)
			lo->keys[i] = i;
	} else {
		sparse_keys(lo->keys, lo->n, opt.seed);
	}

	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
			PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&lo->rw, &attr);
	pthread_rwlockattr_destroy(&attr);

	/* Objects in key-array order: ascending if dense, random if not. */
	t = now();
	xa_init(&lo->xa);
	for (unsigned long i = 0; i < lo->n; i++) {
		void *old = xa_store(&lo->xa, lo->keys[i],
				     xobj_new(lo->keys[i], 0));

		if (old) {
			fprintf(stderr, "xarray-bench: xa_store(%lu): %p\n",
				lo->keys[i], old);
			exit(1);
		}
	}
	lo->build_xa_s = now() - t;

	t = now();
	lo->ht = cds_lfht_new_flavor(1UL << 20, 1, 0,
				     CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
				     &urcu_memb_flavor, NULL);
	if (!lo->ht) {
		fprintf(stderr, "xarray-bench: cds_lfht_new_flavor failed\n");
		exit(1);
	}
	fs_rcu_read_lock();
	for (unsigned long i = 0; i < lo->n; i++) {
		struct hobj *h = hobj_new(lo->keys[i], 0);

		cds_lfht_add(lo->ht, hash64(h->key), &h->node);
	}
	fs_rcu_read_unlock();
	lo->build_ht_s = now() - t;

	lo->xa_bytes = xa_node_bytes(&lo->xa);
	/* Let any resize the table queued finish before we measure. */
	fs_rcu_barrier();
}

/* Check every key maps to its own object, then free everything. */
static unsigned long layout_destroy(struct layout *lo)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;
	unsigned long errors = 0, count = 0;

	if (!xa_check(&lo->xa))
		errors++;
	/*
	 * Every writer cycle ends split, so each key has its own object. One
	 * that does not is an error; leak it rather than free it twice.
	 */
	for (unsigned long i = 0; i < lo->n; i++) {
		struct xobj *o = xa_load(&lo->xa, lo->keys[i]);

		if (o && o->key == lo->keys[i])
			free(o);
		else
			errors++;
	}
	xa_destroy(&lo->xa);

	count = 0;
	fs_rcu_read_lock();
	cds_lfht_for_each(lo->ht, &iter, node) {
		struct hobj *h = container_of(node, struct hobj, node);

		count++;
		if (!cds_lfht_del(lo->ht, node)) {
			__atomic_fetch_add(&pending_frees, 1,
					   __ATOMIC_RELAXED);
			fs_call_rcu(&h->rcu, hobj_free_cb);
		}
	}
	fs_rcu_read_unlock();
	if (count != lo->n)
		errors++;
	fs_rcu_barrier();
	if (cds_lfht_destroy(lo->ht, NULL)) {
		fprintf(stderr, "xarray-bench: cds_lfht_destroy failed\n");
		errors++;
	}
	pthread_rwlock_destroy(&lo->rw);
	free(lo->keys);
	return errors;
}

/* --- Output ----------------------------------------------------------------- */

static const struct row *find_row(const struct row *rows, int nrows,
				  enum kind kind, const char *layout,
				  int readers, bool writer)
{
	for (int i = 0; i < nrows; i++)
		if (rows[i].kind == kind && !strcmp(rows[i].layout, layout) &&
		    rows[i].readers == readers && rows[i].writer == writer)
			return &rows[i];
	return NULL;
}

/* 1 - with/without for @kind, or NAN if a row is missing or empty. */
static double writer_cost(const struct row *rows, int nrows, enum kind kind,
			  const char *layout, int readers)
{
	const struct row *with = find_row(rows, nrows, kind, layout, readers,
					  true);
	const struct row *without = find_row(rows, nrows, kind, layout,
					     readers, false);

	if (!with || !without || without->mops <= 0)
		return NAN;
	return 1 - with->mops / without->mops;
}

static double mops_per_cpu(const struct row *r)
{
	return r->reader_cpu > 0 ? r->mops / (r->reader_cpu * r->readers) :
				   NAN;
}

static void print_costs(const struct row *rows, int nrows,
			const struct layout *los, int nlos, enum kind kind)
{
	const char *sep = "";

	for (int l = 0; l < nlos; l++) {
		for (int nr = 1; nr <= 2; nr++) {
			double c = writer_cost(rows, nrows, kind, los[l].name,
					       nr);

			if (isnan(c))
				continue;
			printf("%s %s/%dr %.0f%%", sep, los[l].name, nr,
			       100 * c);
			sep = ",";
		}
	}
	if (!*sep)
		printf(" not measured");
}

static void print_table(const struct row *rows, int nrows,
			const struct layout *los, int nlos, double ratio,
			double ratio_cpu)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	printf("xarray-bench: %lu entries, %.2f s per point%s, %ld CPUs, "
	       "seed %#" PRIx64 "%s%s\n", opt.entries, opt.seconds,
	       opt.repeat > 1 ? " (median of repeats)" : "", cpus, opt.seed,
	       opt.deref ? "" : ", tree readers do not read the object",
	       opt.split ? "" : ", tree writers do not split");
	for (int i = 0; i < nlos; i++)
		printf("  %-6s xarray nodes %8.1f MiB (%6.1f B/entry), "
		       "built in %.2f s; lfht built in %.2f s\n",
		       los[i].name, los[i].xa_bytes / 1048576.0,
		       (double)los[i].xa_bytes / los[i].n, los[i].build_xa_s,
		       los[i].build_ht_s);
	printf("\n%-14s %-6s %7s %6s %8s %7s %6s %8s %11s %10s\n",
	       "structure", "layout", "readers", "writer", "Mops/s",
	       "vs lfht", "rd CPU", "Mops/CPU", "wr kstore/s", "wr split/s");
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		char ks[32] = "-", cy[32] = "-", ra[32] = "-";

		if (r->writer) {
			snprintf(ks, sizeof(ks), "%.0f", r->writer_kstores);
			if (r->writer_cycles > 0)
				snprintf(cy, sizeof(cy), "%.0f",
					 r->writer_cycles);
		}
		if (!isnan(r->ratio))
			snprintf(ra, sizeof(ra), "%.2f", r->ratio);
		printf("%-14s %-6s %7d %6s %8.2f %7s %5.0f%% %8.2f %11s %10s%s\n",
		       kind_name[r->kind], r->layout, r->readers,
		       r->writer ? "yes" : "no", r->mops, ra,
		       100 * r->reader_cpu, mops_per_cpu(r), ks, cy,
		       r->errors ? "  ERRORS" : "");
	}
	if (!isnan(ratio))
		printf("\nratio_vs_lfht (xarray-xas / lfht, dense, 2 readers, "
		       "writer): %.2f (per reader CPU-second: %.2f)", ratio,
		       ratio_cpu);
	printf("\nwriter's cost to xarray-xas readers (1 - with/without):");
	print_costs(rows, nrows, los, nlos, K_XAS);
	printf("\n  lfht, for comparison:");
	print_costs(rows, nrows, los, nlos, K_LFHT);
	printf("\n  2 readers + writer is 3 threads on %ld CPUs: the cost "
	       "includes the CPU time the writer takes.\n"
	       "  rd CPU: share of the wall time each reader was on a CPU "
	       "(below 100%%: oversubscribed or a busy machine);\n"
	       "  Mops/CPU: lookups per CPU-second readers ran (steadier "
	       "on a busy machine; a blocked rwlock reader runs for none).\n",
	       cpus);
}

static void json_num(const char *key, double v, const char *fmt)
{
	printf("\"%s\":", key);
	if (isnan(v))
		printf("null");
	else
		printf(fmt, v);
}

static void print_json(const struct row *rows, int nrows,
		       const struct layout *los, int nlos, double ratio,
		       double ratio_cpu, double cost, double cost_lfht,
		       unsigned long errors)
{
	printf("{\"bench\":\"xarray\",\"entries\":%lu,\"seconds\":%g,"
	       "\"repeat\":%d,\"cpus\":%ld,\"seed\":%" PRIu64 ",\"deref\":%s,"
	       "\"split\":%s,\"batch\":%d,", opt.entries, opt.seconds, opt.repeat,
	       sysconf(_SC_NPROCESSORS_ONLN), opt.seed,
	       opt.deref ? "true" : "false", opt.split ? "true" : "false",
	       BATCH);
	json_num("ratio_vs_lfht", ratio, "%.4f");
	printf(",");
	json_num("ratio_vs_lfht_per_cpu", ratio_cpu, "%.4f");
	printf(",\"ratio_config\":{\"structure\":\"xarray-xas\","
	       "\"layout\":\"dense\",\"readers\":2,\"writer\":true},");
	json_num("writer_cost_xarray", cost, "%.4f");
	printf(",");
	json_num("writer_cost_lfht", cost_lfht, "%.4f");
	printf(",\"memory\":{");
	for (int i = 0; i < nlos; i++)
		printf("%s\"%s\":{\"xarray_node_bytes\":%lu,"
		       "\"build_xarray_s\":%.3f,\"build_lfht_s\":%.3f}",
		       i ? "," : "", los[i].name, los[i].xa_bytes,
		       los[i].build_xa_s, los[i].build_ht_s);
	printf("},\"errors\":%lu,\"rows\":[", errors);
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];

		printf("%s{\"structure\":\"%s\",\"layout\":\"%s\","
		       "\"readers\":%d,\"writer\":%s,\"mops\":%.4f,",
		       i ? "," : "", kind_name[r->kind], r->layout,
		       r->readers, r->writer ? "true" : "false", r->mops);
		json_num("ratio_vs_lfht", r->ratio, "%.4f");
		printf(",\"reader_cpu\":%.3f,", r->reader_cpu);
		json_num("mops_per_cpu", mops_per_cpu(r), "%.4f");
		printf(",\"writer_kstores\":%.1f,"
		       "\"writer_splits\":%.1f,\"errors\":%lu}",
		       r->writer_kstores, r->writer_cycles, r->errors);
	}
	printf("]}\n");
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: xarray-bench [--seconds S] [--quick] [--json] [--entries N]\n"
"                    [--seed N] [--no-deref] [--no-split] [--layout L]\n"
"                    [--structure S] [--readers N] [--writer yes|no]\n"
"                    [--repeat N]\n"
"  --seconds S    time per point (default 0.5)\n"
"  --quick        0.1 s per point, for CI smoke runs\n"
"  --repeat N     measure each point N times (<= 15) and report the median\n"
"  --json         one JSON object on stdout instead of the table\n"
"  --entries N    keys per layout (default 1048576; below 2^32)\n"
"  --seed N       seed for the sparse keys and the readers (default 0x5eed)\n"
"  --no-deref     tree readers do not read the object they find\n"
"  --no-split     the tree writers only replace entries (no merge/split)\n"
"  --layout L     only dense or sparse (for profiling)\n"
"  --structure S  only this row kind (for profiling; ratios then need lfht)\n"
"  --readers N    only 1 or 2 readers\n"
"  --writer W     only yes or no\n"
"rows:\n");
	for (int k = 0; k < NR_KINDS; k++)
		fprintf(f, "  %-14s %s\n", kind_name[k], kind_desc[k]);
}

static bool parse_ulong(const char *s, unsigned long *v)
{
	char *end;

	errno = 0;
	*v = strtoul(s, &end, 0);
	return !errno && *s && !*end;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "quick", no_argument, NULL, 'q' },
		{ "repeat", required_argument, NULL, 'R' },
		{ "json", no_argument, NULL, 'j' },
		{ "entries", required_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 'S' },
		{ "no-deref", no_argument, NULL, 'D' },
		{ "no-split", no_argument, NULL, 'P' },
		{ "layout", required_argument, NULL, 'l' },
		{ "structure", required_argument, NULL, 'k' },
		{ "readers", required_argument, NULL, 'r' },
		{ "writer", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const enum kind order[] = { K_LFHT, K_XAS, K_XALOAD,
					   K_RWLOCK };
	static const char *const layout_name[2] = { "dense", "sparse" };
	unsigned int layouts = 3, kinds = (1U << NR_KINDS) - 1;
	unsigned int readers_mask = 3, writer_mask = 3;
	struct layout los[2];
	struct row rows[2 * 2 * 2 * NR_KINDS];
	const struct row *main_row, *main_base;
	int nrows = 0, nlos = 0, c;
	unsigned long errors = 0, v;
	double ratio, ratio_cpu, cost, cost_lfht;
	char *end;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			opt.seconds = strtod(optarg, &end);
			if (*end || !(opt.seconds > 0) || opt.seconds > 3600)
				goto bad;
			break;
		case 'q':
			opt.seconds = 0.1;
			break;
		case 'R':
			if (!parse_ulong(optarg, &v) || v < 1 ||
			    v > MAX_REPEAT)
				goto bad;
			opt.repeat = (int)v;
			break;
		case 'j':
			opt.json = true;
			break;
		case 'n':
			if (!parse_ulong(optarg, &opt.entries) ||
			    opt.entries < 1 || opt.entries >= (1UL << 32))
				goto bad;
			break;
		case 'S':
			if (!parse_ulong(optarg, &v))
				goto bad;
			opt.seed = v;
			break;
		case 'D':
			opt.deref = false;
			break;
		case 'P':
			opt.split = false;
			break;
		case 'l':
			if (!strcmp(optarg, "dense"))
				layouts = 1;
			else if (!strcmp(optarg, "sparse"))
				layouts = 2;
			else
				goto bad;
			break;
		case 'k':
			kinds = 0;
			for (int k = 0; k < NR_KINDS; k++)
				if (!strcmp(optarg, kind_name[k]))
					kinds = 1U << k;
			if (!kinds)
				goto bad;
			break;
		case 'r':
			if (!parse_ulong(optarg, &v) || v < 1 || v > 2)
				goto bad;
			readers_mask = 1U << (v - 1);
			break;
		case 'w':
			if (!strcmp(optarg, "yes"))
				writer_mask = 2;
			else if (!strcmp(optarg, "no"))
				writer_mask = 1;
			else
				goto bad;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			goto bad;
		}
	}
	if (optind < argc)
		goto bad;

	fs_rcu_register_thread();
	for (int l = 0; l < 2; l++) {
		struct layout *lo = &los[nlos];

		if (!(layouts & (1U << l)))
			continue;
		/* One layout in memory at a time: the sparse tree is big. */
		layout_build(lo, layout_name[l], l == 0);
		for (int nr = 1; nr <= 2; nr++) {
			if (!(readers_mask & (1U << (nr - 1))))
				continue;
			for (int w = 0; w <= 1; w++) {
				if (!(writer_mask & (1U << w)))
					continue;
				measure_config(lo, order, ARRAY_SIZE(order),
					       kinds, nr, w, rows, &nrows);
			}
		}
		errors += layout_destroy(lo);
		nlos++;
	}
	fs_rcu_barrier();
	if (xa_nodes_live() != 0) {
		fprintf(stderr, "xarray-bench: %ld xarray nodes leaked\n",
			xa_nodes_live());
		errors++;
	}
	fs_rcu_unregister_thread();

	for (int i = 0; i < nrows; i++) {
		const struct row *base = find_row(rows, nrows, K_LFHT,
						  rows[i].layout,
						  rows[i].readers,
						  rows[i].writer);

		rows[i].ratio = base && base->mops > 0 ?
				rows[i].mops / base->mops : NAN;
		errors += rows[i].errors;
	}
	main_row = find_row(rows, nrows, K_XAS, "dense", 2, true);
	main_base = find_row(rows, nrows, K_LFHT, "dense", 2, true);
	ratio = main_row && main_base ? main_row->ratio : NAN;
	ratio_cpu = main_row && main_base ?
		    mops_per_cpu(main_row) / mops_per_cpu(main_base) : NAN;
	cost = writer_cost(rows, nrows, K_XAS, "dense", 2);
	cost_lfht = writer_cost(rows, nrows, K_LFHT, "dense", 2);

	if (opt.json)
		print_json(rows, nrows, los, nlos, ratio, ratio_cpu, cost,
			   cost_lfht, errors);
	else
		print_table(rows, nrows, los, nlos, ratio, ratio_cpu);
	if (errors) {
		fprintf(stderr, "xarray-bench: %lu errors (wrong or missing "
			"objects, failed writer operations or broken tree "
			"invariants)\n", errors);
		return 1;
	}
	return 0;

bad:
	usage(stderr);
	return 2;
}
