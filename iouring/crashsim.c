/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * crashsim.c - the crash-simulating backing store (see crashsim.h).
 *
 * The record is an array of ops in completion order. Writes are recorded
 * when their segment of the batch has completed, flushes when they have
 * completed, each with the number of ops recorded when it was issued (its
 * cover). Building an image replays the record onto a copy of the base:
 * certain writes always, uncertain ones as the mode and the PRNG say.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compiler.h"
#include "crashsim.h"

/* Bytes moved per pread/pwrite when copying images. */
#define COPY_CHUNK	(1U << 20)

struct crec {
	enum crashsim_op_kind	kind;
	int			res;
	uint64_t		off;	/* write */
	uint32_t		len;	/* write */
	void			*data;	/* write: malloc'd copy */
	size_t			cover;	/* flush */
};

struct crashsim {
	struct backing		b;
	struct backing		*lower;		/* fixed; owned */
	int			base_fd;	/* fixed: memfd snapshot */
	uint64_t		base_size;	/* fixed: bytes */
	pthread_mutex_t		lock;
	struct crec		*recs;		/* lock */
	size_t			nr, cap;	/* lock */
	/* A write could not be recorded: images would lie. lock. */
	int			lost;
};

static const struct backing_ops crashsim_ops;

static struct crashsim *to_sim(struct backing *b)
{
	return b->ops == &crashsim_ops ? container_of(b, struct crashsim, b)
				       : NULL;
}

/* ---- Recording ----------------------------------------------------------- */

/* Caller holds s->lock. Return a new record, or NULL (and s->lost set). */
static struct crec *crec_add(struct crashsim *s, enum crashsim_op_kind kind)
{
	struct crec *recs;
	size_t cap;

	if (s->nr == s->cap) {
		cap = s->cap ? 2 * s->cap : 64;
		recs = realloc(s->recs, cap * sizeof(*recs));
		if (!recs) {
			s->lost = -ENOMEM;
			return NULL;
		}
		s->recs = recs;
		s->cap = cap;
	}
	recs = &s->recs[s->nr++];
	memset(recs, 0, sizeof(*recs));
	recs->kind = kind;
	return recs;
}

/* Record the writes of a completed segment. Malformed ones never ran. */
static void crashsim_record_writes(struct crashsim *s, struct backing_req *reqs,
				   unsigned int nr)
{
	struct crec *rec;
	unsigned int i;
	void *data;

	pthread_mutex_lock(&s->lock);
	for (i = 0; i < nr; i++) {
		if (reqs[i].op != BACKING_OP_WRITE ||
		    backing_check_req(&reqs[i]))
			continue;
		/* Copied after: the buffer is stable until submit returns. */
		data = malloc(reqs[i].len);
		if (!data) {
			s->lost = -ENOMEM;
			continue;
		}
		rec = crec_add(s, CRASHSIM_WRITE);
		if (!rec) {
			free(data);
			continue;
		}
		memcpy(data, reqs[i].buf, reqs[i].len);
		rec->res = reqs[i].res;
		rec->off = reqs[i].off;
		rec->len = reqs[i].len;
		rec->data = data;
	}
	pthread_mutex_unlock(&s->lock);
}

static int crashsim_submit(struct backing *b, struct backing_req *reqs,
			   unsigned int nr)
{
	struct crashsim *s = to_sim(b);
	struct crec *rec;
	unsigned int i, n;
	size_t cover;

	for (i = 0; i < nr; i += n) {
		n = backing_next_segment(reqs + i, nr - i);
		if (!backing_op_is_flush(reqs[i].op)) {
			s->lower->ops->submit(s->lower, reqs + i, n);
			crashsim_record_writes(s, reqs + i, n);
			continue;
		}
		/* The flush covers what completed before it was issued. */
		pthread_mutex_lock(&s->lock);
		cover = s->nr;
		pthread_mutex_unlock(&s->lock);
		s->lower->ops->submit(s->lower, reqs + i, 1);
		pthread_mutex_lock(&s->lock);
		rec = crec_add(s, CRASHSIM_FLUSH);
		if (rec) {
			rec->res = reqs[i].res;
			rec->cover = cover;
		}
		pthread_mutex_unlock(&s->lock);
	}
	for (i = 0; i < nr; i++)
		if (reqs[i].res)
			return reqs[i].res;
	return 0;
}

/* ---- Images -------------------------------------------------------------- */

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	while (len) {
		n = pwrite(fd, buf, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf = (const char *)buf + n;
		len -= n;
		off += n;
	}
	return 0;
}

/*
 * Copy [@off, @end) of @src to @dst, whose range is a hole. A read that
 * ends early (@src shrank) leaves the rest a hole: zeroes, as a read past
 * the end of the image would return.
 */
static int copy_range(int src, int dst, uint64_t off, uint64_t end, char *buf)
{
	ssize_t n;
	int ret;

	while (off < end) {
		n = pread(src, buf, end - off < COPY_CHUNK ? end - off
							    : COPY_CHUNK, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (!n)
			return 0;
		ret = pwrite_all(dst, buf, n, off);
		if (ret)
			return ret;
		off += n;
	}
	return 0;
}

/*
 * Make @dst a copy of the first @size bytes of @src, copying only the data
 * extents (SEEK_DATA/SEEK_HOLE) so that a sparse image stays sparse.
 */
static int copy_image(int src, int dst, uint64_t size)
{
	char *buf;
	off_t data, hole;
	uint64_t off = 0;
	int ret;

	if (ftruncate(dst, 0) || ftruncate(dst, size))
		return -errno;
	buf = malloc(COPY_CHUNK);
	if (!buf)
		return -ENOMEM;
	ret = 0;
	while (off < size) {
		data = lseek(src, off, SEEK_DATA);
		if (data < 0) {
			/* ENXIO: no data past @off. Else: no SEEK_DATA here. */
			if (errno == ENXIO)
				break;
			data = off;
			hole = size;
		} else {
			hole = lseek(src, data, SEEK_HOLE);
			if (hole < 0)
				hole = size;
		}
		if ((uint64_t)data >= size)
			break;
		if ((uint64_t)hole > size)
			hole = size;
		ret = copy_range(src, dst, data, hole, buf);
		if (ret)
			break;
		off = hole;
	}
	free(buf);
	return ret;
}

/* splitmix64: small, and every seed gives a full-period, well-mixed stream. */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Bytes of uncertain write @rec to lay down: 0 .. rec->len. */
static uint32_t crec_fate(const struct crec *rec, enum crashsim_mode mode,
			  uint64_t *rng)
{
	uint32_t sectors = rec->len / BACKING_SECTOR_SIZE;
	uint64_t r;

	switch (mode) {
	case CRASHSIM_DROP:
		return 0;
	case CRASHSIM_APPLY:
		return rec->res ? 0 : rec->len;
	case CRASHSIM_RANDOM:
		return rng_next(rng) & 1 ? rec->len : 0;
	case CRASHSIM_TORN:
		r = rng_next(rng);
		if (r % 3 == 0 || sectors < 2)
			return (r >> 8) & 1 ? rec->len : 0;
		if (r % 3 == 1)
			return rec->len;
		/* A strict prefix of its sectors, at least one. */
		return (1 + (r >> 8) % (sectors - 1)) * BACKING_SECTOR_SIZE;
	}
	return 0;
}

int crashsim_make_image_at(struct backing *b, size_t n, uint64_t seed,
			   enum crashsim_mode mode, int out_fd)
{
	struct crashsim *s = to_sim(b);
	struct crec *rec;
	uint64_t rng;
	size_t i, cover = 0;
	uint32_t len;
	int ret;

	if (!s || mode > CRASHSIM_TORN)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	ret = s->lost;
	if (ret)
		goto out_unlock;
	ret = -EINVAL;
	if (n > s->nr)
		goto out_unlock;

	ret = copy_image(s->base_fd, out_fd, s->base_size);
	if (ret)
		goto out_unlock;

	for (i = n; i-- > 0;) {
		if (s->recs[i].kind == CRASHSIM_FLUSH && !s->recs[i].res) {
			cover = s->recs[i].cover;
			break;
		}
	}

	/* Mix in the cut, so that one seed does not repeat across cuts. */
	rng = seed ^ (n * 0xd1b54a32d192ed03ULL);
	for (i = 0; i < n; i++) {
		rec = &s->recs[i];
		if (rec->kind != CRASHSIM_WRITE)
			continue;
		if (i < cover && !rec->res)
			len = rec->len;
		else
			len = crec_fate(rec, mode, &rng);
		if (!len)
			continue;
		ret = pwrite_all(out_fd, rec->data, len, rec->off);
		if (ret)
			goto out_unlock;
	}
	ret = 0;
out_unlock:
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int crashsim_make_image(struct backing *b, uint64_t seed,
			enum crashsim_mode mode, int out_fd)
{
	if (!to_sim(b))
		return -EINVAL;
	return crashsim_make_image_at(b, crashsim_points(b), seed, mode,
				      out_fd);
}

size_t crashsim_points(struct backing *b)
{
	struct crashsim *s = to_sim(b);
	size_t n;

	if (WARN_ON(!s))
		return 0;
	pthread_mutex_lock(&s->lock);
	n = s->nr;
	pthread_mutex_unlock(&s->lock);
	return n;
}

int crashsim_op(struct backing *b, size_t i, struct crashsim_op_info *info)
{
	struct crashsim *s = to_sim(b);
	struct crec *rec;
	int ret = -EINVAL;

	if (!s)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (i < s->nr) {
		rec = &s->recs[i];
		info->kind = rec->kind;
		info->res = rec->res;
		info->off = rec->off;
		info->len = rec->len;
		info->data = rec->data;
		info->cover = rec->cover;
		ret = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* ---- Pass-through and setup ---------------------------------------------- */

static int crashsim_size(struct backing *b, uint64_t *bytes)
{
	return backing_size(to_sim(b)->lower, bytes);
}

static int crashsim_grow(struct backing *b, uint64_t bytes)
{
	return backing_grow(to_sim(b)->lower, bytes);
}

static int crashsim_register_buffers(struct backing *b,
				     const struct iovec *iov, unsigned int nr)
{
	return backing_register_buffers(to_sim(b)->lower, iov, nr);
}

static int crashsim_unregister_buffers(struct backing *b)
{
	return backing_unregister_buffers(to_sim(b)->lower);
}

static void crashsim_close(struct backing *b)
{
	struct crashsim *s = to_sim(b);
	size_t i;

	backing_close(s->lower);
	for (i = 0; i < s->nr; i++)
		free(s->recs[i].data);
	free(s->recs);
	close(s->base_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct backing_ops crashsim_ops = {
	.submit			= crashsim_submit,
	.read			= backing_generic_read,
	.write			= backing_generic_write,
	.flush			= backing_generic_flush,
	.size			= crashsim_size,
	.grow			= crashsim_grow,
	.register_buffers	= crashsim_register_buffers,
	.unregister_buffers	= crashsim_unregister_buffers,
	.close			= crashsim_close,
};

static int fd_size(int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st))
		return -errno;
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, size) ? -errno : 0;
	*size = st.st_size;
	return 0;
}

int crashsim_create(struct backing *lower, int base_fd, struct backing **out)
{
	struct crashsim *s;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->b.ops = &crashsim_ops;
	s->lower = lower;

	s->base_fd = memfd_create("crashsim-base", MFD_CLOEXEC);
	if (s->base_fd < 0) {
		ret = -errno;
		goto out_free;
	}
	if (base_fd >= 0) {
		ret = fd_size(base_fd, &s->base_size);
		if (ret)
			goto out_close;
		ret = copy_image(base_fd, s->base_fd, s->base_size);
		if (ret)
			goto out_close;
	}
	pthread_mutex_init(&s->lock, NULL);
	*out = &s->b;
	return 0;

out_close:
	close(s->base_fd);
out_free:
	free(s);
	return ret;
}
