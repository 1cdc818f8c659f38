/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * faulty.c - the fault-injecting backing store (see faulty.h).
 *
 * A batch is judged whole, under the lock and in array order, before any of
 * it runs, so that the counts and "the Nth write" do not depend on how long
 * the I/O takes. The requests that pass go down one segment at a time
 * (backing_next_segment()), so a flush that a rule fails still stands as
 * the barrier it would have been.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "faulty.h"

struct faulty_rule {
	/* nth: requests of the kind still to let through, plus one; 0: off. */
	unsigned long	nth_left;
	int		nth_err;
	/* range: [off, end) with end > off; end == 0: off. */
	uint64_t	range_off, range_end;
	int		range_err;
};

struct faulty {
	struct backing		b;
	struct backing		*lower;		/* fixed; owned */
	pthread_mutex_t		lock;
	struct faulty_rule	rules[FAULTY_NR_KINDS];	/* lock */
	struct faulty_counts	counts;			/* lock */
};

static const struct backing_ops faulty_ops;

static struct faulty *to_faulty(struct backing *b)
{
	return b->ops == &faulty_ops ? container_of(b, struct faulty, b) : NULL;
}

static enum faulty_kind req_kind(const struct backing_req *r)
{
	if (backing_op_is_flush(r->op))
		return FAULTY_FLUSH;
	return r->op == BACKING_OP_READ ? FAULTY_READ : FAULTY_WRITE;
}

/* Count @r and return the errno a rule fails it with, or 0. */
static int faulty_judge(struct faulty *f, const struct backing_req *r)
{
	enum faulty_kind kind = req_kind(r);
	struct faulty_rule *rule = &f->rules[kind];
	int err = 0;

	f->counts.ops[kind]++;
	if (rule->nth_left && !--rule->nth_left)
		err = rule->nth_err;
	if (!err && rule->range_end && kind != FAULTY_FLUSH &&
	    r->off < rule->range_end && r->off + r->len > rule->range_off)
		err = rule->range_err;
	if (err)
		f->counts.failed[kind]++;
	return err;
}

static int faulty_submit(struct backing *b, struct backing_req *reqs,
			 unsigned int nr)
{
	struct faulty *f = to_faulty(b);
	struct backing_req *pass = NULL;
	unsigned int i, j, n, npass, nfail = 0;
	int ret;

	/* Malformed requests fail as the store below would fail them. */
	pthread_mutex_lock(&f->lock);
	for (i = 0; i < nr; i++) {
		reqs[i].done = 0;
		ret = backing_check_req(&reqs[i]);
		if (!ret)
			ret = faulty_judge(f, &reqs[i]);
		reqs[i].res = ret ? ret : -EINPROGRESS;
		nfail += !!ret;
	}
	pthread_mutex_unlock(&f->lock);

	if (!nfail) {
		ret = f->lower->ops->submit(f->lower, reqs, nr);
		goto out_count;
	}

	pass = malloc(nr * sizeof(*pass));
	if (!pass) {
		for (i = 0; i < nr; i++)
			if (reqs[i].res == -EINPROGRESS)
				reqs[i].res = -ENOMEM;
		goto out_count;
	}
	for (i = 0; i < nr; i += n) {
		n = backing_next_segment(reqs + i, nr - i);
		for (npass = 0, j = i; j < i + n; j++)
			if (reqs[j].res == -EINPROGRESS)
				pass[npass++] = reqs[j];
		if (!npass)
			continue;
		f->lower->ops->submit(f->lower, pass, npass);
		for (npass = 0, j = i; j < i + n; j++)
			if (reqs[j].res == -EINPROGRESS)
				reqs[j] = pass[npass++];
	}
	free(pass);

out_count:
	pthread_mutex_lock(&f->lock);
	for (i = 0; i < nr; i++)
		f->counts.bytes[req_kind(&reqs[i])] += reqs[i].done;
	pthread_mutex_unlock(&f->lock);
	for (i = 0; i < nr; i++)
		if (reqs[i].res)
			return reqs[i].res;
	return 0;
}

static int faulty_size(struct backing *b, uint64_t *bytes)
{
	struct faulty *f = to_faulty(b);

	return backing_size(f->lower, bytes);
}

static int faulty_grow(struct backing *b, uint64_t bytes)
{
	struct faulty *f = to_faulty(b);

	return backing_grow(f->lower, bytes);
}

static int faulty_register_buffers(struct backing *b, const struct iovec *iov,
				   unsigned int nr)
{
	struct faulty *f = to_faulty(b);

	return backing_register_buffers(f->lower, iov, nr);
}

static int faulty_unregister_buffers(struct backing *b)
{
	struct faulty *f = to_faulty(b);

	return backing_unregister_buffers(f->lower);
}

static void faulty_close(struct backing *b)
{
	struct faulty *f = to_faulty(b);

	backing_close(f->lower);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static const struct backing_ops faulty_ops = {
	.submit			= faulty_submit,
	.read			= backing_generic_read,
	.write			= backing_generic_write,
	.flush			= backing_generic_flush,
	.size			= faulty_size,
	.grow			= faulty_grow,
	.register_buffers	= faulty_register_buffers,
	.unregister_buffers	= faulty_unregister_buffers,
	.close			= faulty_close,
};

int faulty_create(struct backing *lower, struct backing **out)
{
	struct faulty *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->b.ops = &faulty_ops;
	f->lower = lower;
	pthread_mutex_init(&f->lock, NULL);
	*out = &f->b;
	return 0;
}

int faulty_fail_nth(struct backing *b, enum faulty_kind kind,
		    unsigned long nth, int err)
{
	struct faulty *f = to_faulty(b);

	if (!f || kind >= FAULTY_NR_KINDS || !nth || err >= 0)
		return -EINVAL;
	pthread_mutex_lock(&f->lock);
	f->rules[kind].nth_left = nth;
	f->rules[kind].nth_err = err;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

int faulty_fail_range(struct backing *b, enum faulty_kind kind, uint64_t off,
		      uint64_t len, int err)
{
	struct faulty *f = to_faulty(b);

	if (!f || (kind != FAULTY_READ && kind != FAULTY_WRITE) || !len ||
	    off + len < off || err >= 0)
		return -EINVAL;
	pthread_mutex_lock(&f->lock);
	f->rules[kind].range_off = off;
	f->rules[kind].range_end = off + len;
	f->rules[kind].range_err = err;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

void faulty_clear(struct backing *b)
{
	struct faulty *f = to_faulty(b);

	if (WARN_ON(!f))
		return;
	pthread_mutex_lock(&f->lock);
	memset(f->rules, 0, sizeof(f->rules));
	pthread_mutex_unlock(&f->lock);
}

void faulty_get_counts(struct backing *b, struct faulty_counts *c)
{
	struct faulty *f = to_faulty(b);

	if (WARN_ON(!f)) {
		memset(c, 0, sizeof(*c));
		return;
	}
	pthread_mutex_lock(&f->lock);
	*c = f->counts;
	pthread_mutex_unlock(&f->lock);
}

void faulty_reset_counts(struct backing *b)
{
	struct faulty *f = to_faulty(b);

	if (WARN_ON(!f))
		return;
	pthread_mutex_lock(&f->lock);
	memset(&f->counts, 0, sizeof(f->counts));
	pthread_mutex_unlock(&f->lock);
}
