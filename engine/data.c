/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * data.c - the data path of a mounted volume: the store behind each file's
 * page cache (filemap_ops), read and write, fsync, fallocate, SEEK_DATA and
 * SEEK_HOLE, writeback and the flusher thread.
 *
 * Writeback of one file (fs_writeback_inode) walks the DIRTY marks (or,
 * for fsync, the TOWRITE marks it set first: law 10), locks each folio,
 * and for each run of dirty blocks (law 6):
 *  - blocks with a disk block are written in place;
 *  - delalloc blocks get blocks now, from their reservations
 *    (space_alloc_reserved: never ENOSPC, law 7), as one contiguous run
 *    per folio when the disk has one; they are mapped EXT_NEW, so a failed
 *    write keeps them without logging them;
 * and queues one request per disk-contiguous run, straight from folio
 * memory (O_DIRECT), or, for folios with little dirty data, from a copy
 * (see "Stable writes" below). Folios written from their own memory stay
 * locked, with their writeback flag set, until their I/O completed, so a
 * writer waits for it (law 9). After the batch, folios whose I/O all succeeded are cleaned;
 * the extents of their new and unwritten blocks are logged, and the size
 * the log knows moves up to what is written (ordered mode: the commit that
 * carries these records flushes the data first, meta.c).
 *
 * Errors (law 11): a failed folio stays dirty with its blocks mapped; the
 * error is recorded errseq-style on the inode and the file is retried after
 * a back-off; fsync reports it once per open file.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blkstate.h"
#include "compiler.h"
#include "fs.h"
#include "rcu.h"

#define WB_MAX_REQS	1024
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE	23
#endif
#define WB_MAX_BYTES	(32UL << 20)
#define WB_MAX_FOLIOS	256
#define MAX_FILE_BYTES	(1ULL << 52)

static inline struct fs_inode *map_inode(struct filemap *map)
{
	return map->host;
}

uint64_t fs_dirty_bytes(void)
{
	long n = blkstate_dirty_bytes();

	return n > 0 ? (uint64_t)n : 0;
}

/* ---- The store behind the page cache ------------------------------------------ */

static int fs_read_blocks(struct filemap *map, struct folio *folio,
			  unsigned int first, unsigned int nr)
{
	struct fs_inode *inode = map_inode(map);
	struct foliofs *fs = inode->fs;
	unsigned int bits = folio->blkbits, b, nreq = 0;
	uint64_t lblk0 = folio_pos(folio) >> bits;
	struct backing_req reqs_small[8], *reqs = reqs_small;
	char *base = folio_address(folio);
	int ret;

	if (nr > ARRAY_SIZE(reqs_small)) {
		reqs = malloc(nr * sizeof(*reqs));
		if (!reqs)
			return -ENOMEM;
	}
	for (b = first; b < first + nr; b++) {
		void *e = xa_load(&inode->extents, lblk0 + b);
		char *dst = base + ((size_t)b << bits);

		if (!e || (ext_flags(e) & (EXT_UNWRITTEN | EXT_NEW))) {
			/* A hole, or blocks whose data is not on disk. */
			memset(dst, 0, (size_t)1 << bits);
			continue;
		}
		if (nreq) {
			struct backing_req *p = &reqs[nreq - 1];

			if ((char *)p->buf + p->len == dst &&
			    p->off + p->len == ext_pblk(e) << bits) {
				p->len += 1U << bits;
				continue;
			}
		}
		reqs[nreq++] = (struct backing_req){
			.op = BACKING_OP_READ,
			.buf = dst,
			.off = ext_pblk(e) << bits,
			.len = 1U << bits,
		};
	}
	ret = nreq ? backing_submit(fs->store, reqs, nreq) : 0;
	if (reqs != reqs_small)
		free(reqs);
	return ret;
}

static bool fs_block_mapped(struct filemap *map, unsigned long lblk)
{
	return xa_load(&map_inode(map)->extents, lblk) != NULL;
}

static int fs_reserve_blocks(struct filemap *map, unsigned long nr)
{
	return space_reserve(map_inode(map)->fs->space, nr);
}

static void fs_release_blocks(struct filemap *map, unsigned long nr)
{
	space_unreserve(map_inode(map)->fs->space, nr);
}

static void fs_punch_blocks(struct filemap *map, unsigned long first,
			    unsigned long nr)
{
	struct fs_inode *inode = map_inode(map);
	struct foliofs *fs = inode->fs;

	pthread_rwlock_rdlock(&fs->ns_lock);
	fs_free_extents(fs, inode, first, nr == ULONG_MAX ? UINT64_MAX : nr,
			true);
	pthread_rwlock_unlock(&fs->ns_lock);
}

const struct filemap_ops fs_filemap_ops = {
	.read_blocks	= fs_read_blocks,
	.block_mapped	= fs_block_mapped,
	.reserve_blocks	= fs_reserve_blocks,
	.release_blocks	= fs_release_blocks,
	.punch_blocks	= fs_punch_blocks,
};

/* ---- Writeback ---------------------------------------------------------------- */

struct wb_folio {
	struct folio	*folio;
	unsigned int	first_req;
	unsigned int	nr_req;
	bool		failed;		/* not every dirty block was queued */
	/*
	 * The dirty blocks were copied out and the folio cleaned and unlocked
	 * at once (stable writes by copy): writers never wait for this I/O.
	 */
	bool		bounced;
};

struct wb_batch {
	struct fs_inode		*inode;
	struct backing_req	reqs[WB_MAX_REQS];
	struct wb_folio		folios[WB_MAX_FOLIOS];
	unsigned int		nr_reqs;
	unsigned int		nr_folios;
	size_t			bytes;
	uint64_t		goal;		/* next pblk for allocations */
	char			*bounce;	/* WB_BOUNCE_BYTES, aligned */
	int			bounce_idx;	/* in fs->bounce_pool, or -1 */
	size_t			bounce_used;
};

/*
 * Stable writes (law 9) two ways. A folio with little dirty data (random
 * writes) is copied out: the copy is written, and the folio is clean and
 * unlocked before the I/O starts, so a writer redirtying it never waits
 * for the disk. A folio with much dirty data (streaming writes) is written
 * from its own memory and stays locked under writeback until the I/O
 * completes; copying it would cost more than the rare wait.
 */
#define WB_BOUNCE_FOLIO_MAX	(256UL << 10)

/*
 * The copy buffers: FS_NR_BOUNCE of WB_BOUNCE_BYTES each, made at mount and
 * registered with io_uring as fixed buffers, so writes from them skip the
 * kernel's per-I/O page pinning. A writeback that finds none free writes
 * straight from its folios.
 */
int fs_bounce_pool_init(struct foliofs *fs)
{
	struct iovec iov[FS_NR_BOUNCE];
	unsigned int i;

	for (i = 0; i < FS_NR_BOUNCE; i++) {
		if (posix_memalign((void **)&fs->bounce_pool[i], 4096,
				   WB_BOUNCE_BYTES))
			return -ENOMEM;
		madvise(fs->bounce_pool[i], WB_BOUNCE_BYTES, MADV_POPULATE_WRITE);
		fs->bounce_free[i] = true;
		iov[i].iov_base = fs->bounce_pool[i];
		iov[i].iov_len = WB_BOUNCE_BYTES;
	}
	fs->nr_bounce = FS_NR_BOUNCE;
	/* Registering may fail (memlock limits): plain iovecs then. */
	fs->bounce_fixed = !fs->opts.no_fixed_buffers &&
			   !backing_register_buffers(fs->store, iov, FS_NR_BOUNCE);
	return 0;
}

void fs_bounce_pool_free(struct foliofs *fs)
{
	unsigned int i;

	if (fs->bounce_fixed)
		backing_unregister_buffers(fs->store);
	fs->bounce_fixed = false;
	for (i = 0; i < fs->nr_bounce; i++)
		free(fs->bounce_pool[i]);
	fs->nr_bounce = 0;
}

/* A free copy buffer's index, or -1. */
static int bounce_get(struct foliofs *fs)
{
	int ret = -1;
	unsigned int i;

	pthread_mutex_lock(&fs->dirty_lock);
	for (i = 0; i < fs->nr_bounce; i++) {
		if (fs->bounce_free[i]) {
			fs->bounce_free[i] = false;
			ret = (int)i;
			break;
		}
	}
	pthread_mutex_unlock(&fs->dirty_lock);
	return ret;
}

static void bounce_put(struct foliofs *fs, int idx)
{
	if (idx < 0)
		return;
	pthread_mutex_lock(&fs->dirty_lock);
	fs->bounce_free[idx] = true;
	pthread_mutex_unlock(&fs->dirty_lock);
}

/*
 * Give delalloc blocks [lblk, lblk + n) of locked @folio disk blocks from
 * their reservations. Returns blocks mapped (they are EXT_NEW).
 */
static long alloc_run(struct wb_batch *wb, struct folio *folio, size_t off,
		      uint64_t lblk, uint64_t n)
{
	struct fs_inode *inode = wb->inode;
	struct foliofs *fs = inode->fs;
	uint64_t start, i;
	unsigned int cleared;
	long got;

	got = space_alloc_reserved(fs->space, wb->goal, n, n, &start);
	if (got < 0)
		return got;
	for (i = 0; i < (uint64_t)got; i++)
		xa_store(&inode->extents, lblk + i, ext_mk(start + i, EXT_NEW));
	/* The reservation became blocks: the folio's marks go now, so a failed
	 * write does not hand them back twice. */
	cleared = blkstate_clear_reserved(folio, off, (size_t)got << fs->blkbits);
	if (cleared)
		__atomic_sub_fetch(&inode->map.nr_reserved, cleared,
				   __ATOMIC_RELAXED);
	WARN_ON(cleared != (unsigned int)got);
	pthread_mutex_lock(&inode->attr_lock);
	inode->nr_mapped += (uint64_t)got;
	pthread_mutex_unlock(&inode->attr_lock);
	wb->goal = start + (uint64_t)got;
	return got;
}

/* Queue one block (its data at @buf) for @lblk at @pblk, merging runs. */
static void add_req(struct wb_batch *wb, char *buf, uint64_t lblk,
		    uint64_t pblk, unsigned int bits)
{
	struct backing_req *p = wb->nr_reqs ? &wb->reqs[wb->nr_reqs - 1] : NULL;
	struct wb_folio *wf = &wb->folios[wb->nr_folios - 1];
	uint32_t len = 1U << bits;

	if (p && wf->nr_req && (char *)p->buf + p->len == buf &&
	    p->off + p->len == pblk << bits &&
	    (uintptr_t)p->priv + (p->len >> bits) == lblk) {
		p->len += len;
	} else {
		bool fixed = wb->bounce && wb->inode->fs->bounce_fixed &&
			     buf >= wb->bounce && buf < wb->bounce + WB_BOUNCE_BYTES;

		wb->reqs[wb->nr_reqs++] = (struct backing_req){
			.op = BACKING_OP_WRITE,
			.flags = fixed ? BACKING_REQ_FIXED : 0,
			.buf_index = fixed ? (unsigned int)wb->bounce_idx : 0,
			.buf = buf,
			.off = pblk << bits,
			.len = len,
			.priv = (void *)(uintptr_t)lblk,	/* first block */
		};
		wf->nr_req++;
	}
	wb->bytes += len;
}

/* Queue the dirty blocks of locked @folio. Return 0 or -errno. */
static int queue_folio(struct wb_batch *wb, struct folio *folio, bool bounce)
{
	struct fs_inode *inode = wb->inode;
	unsigned int bits = folio->blkbits;
	uint64_t lblk0 = folio_pos(folio) >> bits;
	char *base = folio_address(folio);
	size_t off = 0, len;
	struct wb_folio *wf = &wb->folios[wb->nr_folios++];

	wf->folio = folio;
	wf->first_req = wb->nr_reqs;
	wf->nr_req = 0;
	wf->failed = false;
	wf->bounced = bounce;
	while (blkstate_next_dirty(folio, &off, &len)) {
		size_t o;

		for (o = off; o < off + len;) {
			uint64_t lblk = lblk0 + (o >> bits);
			void *e = xa_load(&inode->extents, lblk);
			char *src = base + o;

			if (!e) {
				uint64_t n = 1;
				long got;

				while (o + (n << bits) < off + len &&
				       !xa_load(&inode->extents, lblk + n))
					n++;
				e = lblk ? xa_load(&inode->extents, lblk - 1) :
					   NULL;
				if (e)
					wb->goal = ext_pblk(e) + 1;
				got = alloc_run(wb, folio, o, lblk, n);
				if (got < 0) {
					wf->failed = true;
					return (int)got;
				}
				e = xa_load(&inode->extents, lblk);
			}
			if (bounce) {
				char *dst = wb->bounce + wb->bounce_used;

				memcpy(dst, src, (size_t)1 << bits);
				wb->bounce_used += (size_t)1 << bits;
				src = dst;
			}
			add_req(wb, src, lblk, ext_pblk(e), bits);
			o += (size_t)1 << bits;
		}
		off += len;
	}
	return 0;
}

struct ext_ctx {
	struct foliofs	*fs;
	struct fs_inode	*inode;
	uint64_t	rl, rp, rn;
};

static void ext_flush(struct ext_ctx *c)
{
	if (c->rn)
		tx_extent(c->fs, c->inode->ino, c->rl, c->rp, c->rn, false);
	c->rn = 0;
}

/* Log blocks [@lblk, @lblk + @n), just written, that were new or
 * unwritten, as written extents. */
static void log_written(struct ext_ctx *c, uint64_t lblk, uint64_t n)
{
	uint64_t end = lblk + n;

	for (; lblk < end; lblk++) {
		void *e = xa_load(&c->inode->extents, lblk);

		if (!e || !(ext_flags(e) & (EXT_NEW | EXT_UNWRITTEN)))
			continue;
		xa_store(&c->inode->extents, lblk, ext_mk(ext_pblk(e), 0));
		if (c->rn && lblk == c->rl + c->rn && ext_pblk(e) == c->rp + c->rn) {
			c->rn++;
			continue;
		}
		ext_flush(c);
		c->rl = lblk;
		c->rp = ext_pblk(e);
		c->rn = 1;
	}
}

static void record_error(struct fs_inode *inode, int err)
{
	struct foliofs *fs = inode->fs;

	pthread_mutex_lock(&inode->attr_lock);
	inode->wb_err = err;
	inode->wb_retry_ns = fs_now_ns() + 500000000LL;
	pthread_mutex_unlock(&inode->attr_lock);
	__atomic_add_fetch(&inode->wb_err_seq, 1, __ATOMIC_RELEASE);
	__atomic_add_fetch(&fs->st_wb_errors, 1, __ATOMIC_RELAXED);
}

/* A bounced folio's write failed: its blocks need writing again. */
static void redirty_bounced(struct fs_inode *inode, struct wb_batch *wb,
			    struct wb_folio *wf)
{
	struct folio *folio = wf->folio;
	unsigned int bits = folio->blkbits, j;
	uint64_t lblk0 = folio_pos(folio) >> bits;

	folio_lock(folio);
	if (folio_mapping(folio) == &inode->map) {
		for (j = wf->first_req; j < wf->first_req + wf->nr_req; j++) {
			struct backing_req *r = &wb->reqs[j];
			uint64_t lblk = (uintptr_t)r->priv;

			filemap_dirty_range(folio, (size_t)(lblk - lblk0) << bits,
					    r->len);
		}
		fs_note_dirty(inode);
	}
	folio_unlock(folio);
}

/* Issue the batch, finish its folios, log what the data now backs. */
static int submit_batch(struct wb_batch *wb)
{
	struct fs_inode *inode = wb->inode;
	struct foliofs *fs = inode->fs;
	struct ext_ctx c = { fs, inode, 0, 0, 0 };
	uint64_t written_end = 0, size;
	bool any_ok = false, log_inode = false;
	unsigned int bits = fs->blkbits, i, j;
	int ret = 0;

	if (!wb->nr_folios)
		return 0;
	if (wb->nr_reqs) {
		__atomic_add_fetch(&fs->st_writeback_now, wb->bytes,
				   __ATOMIC_RELAXED);
		ret = backing_submit(fs->store, wb->reqs, wb->nr_reqs);
		__atomic_sub_fetch(&fs->st_writeback_now, wb->bytes,
				   __ATOMIC_RELAXED);
	}
	size = (uint64_t)filemap_size(&inode->map);

	for (i = 0; i < wb->nr_folios; i++) {
		struct wb_folio *wf = &wb->folios[i];
		bool ok = !wf->failed;

		for (j = wf->first_req; j < wf->first_req + wf->nr_req; j++)
			if (wb->reqs[j].res)
				ok = false;
		if (!ok && wf->bounced)
			redirty_bounced(inode, wb, wf);
	}

	pthread_rwlock_rdlock(&fs->ns_lock);
	pthread_mutex_lock(&fs->tx_lock);
	for (i = 0; i < wb->nr_folios; i++) {
		struct wb_folio *wf = &wb->folios[i];
		struct folio *folio = wf->folio;
		bool ok = !wf->failed;

		for (j = wf->first_req; j < wf->first_req + wf->nr_req; j++)
			if (wb->reqs[j].res)
				ok = false;
		if (ok) {
			for (j = wf->first_req; j < wf->first_req + wf->nr_req;
			     j++) {
				struct backing_req *r = &wb->reqs[j];
				uint64_t lblk = (uintptr_t)r->priv;
				uint64_t end = (lblk << bits) + r->len;

				log_written(&c, lblk, r->len >> bits);
				__atomic_add_fetch(&fs->st_written, r->len,
						   __ATOMIC_RELAXED);
				if (end > written_end)
					written_end = end;
			}
			if (!wf->bounced)
				filemap_clean_folio(folio);
			any_ok = true;
		}
		if (!wf->bounced) {
			folio_end_writeback(folio);
			folio_unlock(folio);
		} else {
			folio_unpin(folio);
		}
		folio_put(folio);
	}
	ext_flush(&c);
	if (any_ok) {
		/* Writes completed before these records exist (ordered). */
		__atomic_add_fetch(&fs->data_gen, 1, __ATOMIC_RELEASE);
		pthread_mutex_lock(&inode->attr_lock);
		if (written_end > size)
			written_end = size;
		if (written_end > inode->disksize) {
			inode->disksize = written_end;
			inode->attr_dirty = true;
		}
		log_inode = inode->attr_dirty;
		if (log_inode)
			tx_inode(fs, inode);
		pthread_mutex_unlock(&inode->attr_lock);
	}
	pthread_mutex_unlock(&fs->tx_lock);
	pthread_rwlock_unlock(&fs->ns_lock);

	if (ret)
		record_error(inode, ret);
	wb->nr_reqs = 0;
	wb->nr_folios = 0;
	wb->bytes = 0;
	wb->bounce_used = 0;
	return ret;
}

int fs_writeback_inode(struct fs_inode *inode, bool sync)
{
	struct foliofs *fs = inode->fs;
	struct filemap *map = &inode->map;
	xa_mark_t mark = sync ? FM_TOWRITE : FM_DIRTY;
	struct wb_batch *wb;
	unsigned long idx = 0, skip_index = ULONG_MAX;
	bool log_inode;
	int ret = 0, err;

	if (!S_ISREG(inode->type) || fs->readonly)
		return 0;
	pthread_mutex_lock(&inode->wb_lock);
	if (!xa_marked(&map->pages, FM_DIRTY) &&
	    !xa_marked(&map->pages, FM_TOWRITE))
		goto log_attrs;
	wb = calloc(1, sizeof(*wb));
	if (!wb) {
		pthread_mutex_unlock(&inode->wb_lock);
		return -ENOMEM;
	}
	wb->inode = inode;
	wb->bounce_idx = bounce_get(fs);
	wb->bounce = wb->bounce_idx >= 0 ? fs->bounce_pool[wb->bounce_idx] : NULL;
	if (sync)
		xa_convert_marks(&map->pages, 0, ULONG_MAX, FM_DIRTY,
				 FM_TOWRITE, 64);
	/*
	 * Background writeback leaves alone the folio at the end of a file
	 * written to in the last second: an appending writer is filling it,
	 * and writing it half full would make that writer wait for the I/O
	 * (law 9) and write the folio twice.
	 */
	if (!sync) {
		long long size = filemap_size(map);
		int64_t mtime;

		pthread_mutex_lock(&inode->attr_lock);
		mtime = inode->mtime_ns;
		pthread_mutex_unlock(&inode->attr_lock);
		if (size > 0 && fs_now_ns() - mtime < 1000000000LL)
			skip_index = (unsigned long)((size - 1) >> PAGE_SHIFT);
	}
	for (;;) {
		struct folio *folio;
		size_t dirty;
		bool bounce;

		if (!xa_find(&map->pages, &idx, ULONG_MAX, mark))
			break;
		folio = filemap_get_folio(map, idx);
		if (!folio) {
			idx++;
			continue;
		}
		/* Lock in index order; the batch holds earlier ones. */
		folio_lock(folio);
		if (folio_mapping(folio) != map || !folio_test_dirty(folio)) {
			idx = folio->index + folio_nr_pages(folio);
			folio_unlock(folio);
			folio_put(folio);
			continue;
		}
		idx = folio->index + folio_nr_pages(folio);
		if (folio_contains(folio, skip_index) &&
		    folio_pos(folio) + folio_size(folio) >
		    (uint64_t)filemap_size(map)) {
			folio_unlock(folio);
			folio_put(folio);
			if (idx == 0)
				break;
			continue;
		}
		dirty = (size_t)blkstate_count_dirty(folio) << folio->blkbits;
		bounce = wb->bounce && dirty <= WB_BOUNCE_FOLIO_MAX &&
			 !fs->opts.no_writeback_copy;
		if (wb->nr_folios == WB_MAX_FOLIOS ||
		    wb->nr_reqs + folio_nr_blocks(folio) > WB_MAX_REQS ||
		    wb->bytes >= WB_MAX_BYTES ||
		    (bounce && wb->bounce_used + dirty > WB_BOUNCE_BYTES)) {
			err = submit_batch(wb);
			ret = ret ? ret : err;
		}
		if (!bounce)
			folio_start_writeback(folio);
		err = queue_folio(wb, folio, bounce);
		if (err) {
			ret = ret ? ret : err;
			record_error(inode, err);
		}
		if (bounce) {
			/* The copy is what gets written: the folio is clean
			 * now (a failed write dirties it again) and free for
			 * writers. */
			if (!wb->folios[wb->nr_folios - 1].failed)
				filemap_clean_folio(folio);
			/* Clean, but its blocks on disk are not written yet:
			 * the pin keeps reclaim from dropping the only good
			 * copy until the I/O is done. */
			folio_pin(folio);
			folio_unlock(folio);
		}
		if (idx == 0)
			break;	/* wrapped */
	}
	err = submit_batch(wb);
	ret = ret ? ret : err;
	bounce_put(fs, wb->bounce_idx);
	free(wb);
log_attrs:
	/* Everything is written: the log may know the whole size (a
	 * truncate up or fallocate past the last written block). */
	pthread_mutex_lock(&inode->attr_lock);
	if (!ret && !xa_marked(&map->pages, FM_DIRTY) &&
	    inode->disksize < (uint64_t)filemap_size(map)) {
		inode->disksize = (uint64_t)filemap_size(map);
		inode->attr_dirty = true;
	}
	log_inode = inode->attr_dirty;
	pthread_mutex_unlock(&inode->attr_lock);
	if (log_inode) {
		pthread_rwlock_rdlock(&fs->ns_lock);
		pthread_mutex_lock(&fs->tx_lock);
		tx_inode_locked(fs, inode);
		pthread_mutex_unlock(&fs->tx_lock);
		pthread_rwlock_unlock(&fs->ns_lock);
	}
	pthread_mutex_unlock(&inode->wb_lock);
	return ret;
}

/* ---- Dirty inodes and the flusher --------------------------------------------- */

/*
 * Called after the caller dirtied @inode's cache (the DIRTY mark is set).
 * Always under dirty_lock: drop_from_dirty() decides under the same lock,
 * after looking at the mark, so either it sees our mark and keeps the
 * inode listed, or it took it off before we lock and we list it again.
 * (A lock-free "already listed" check here could miss that removal.)
 */
void fs_note_dirty(struct fs_inode *inode)
{
	struct foliofs *fs = inode->fs;

	pthread_mutex_lock(&fs->dirty_lock);
	if (!inode->on_dirty_list && !__atomic_load_n(&inode->dead, __ATOMIC_RELAXED)) {
		inode->on_dirty_list = true;
		inode->dirtied_ns = fs_now_ns();
		cds_list_add_tail(&inode->dirty_node, &fs->dirty_list);
	}
	pthread_mutex_unlock(&fs->dirty_lock);
}

/*
 * Take (open) references on up to @max dirty inodes: all of them, or those
 * whose data expired and that are not backing off after an error.
 */
static unsigned int grab_dirty(struct foliofs *fs, struct fs_inode **out,
			       unsigned int max, bool all)
{
	struct fs_inode *inode;
	int64_t now = fs_now_ns();
	int64_t expire = (int64_t)fs->opts.dirty_expire_ms * 1000000LL;
	unsigned int n = 0;

	pthread_rwlock_wrlock(&fs->ns_lock);
	pthread_mutex_lock(&fs->dirty_lock);
	cds_list_for_each_entry(inode, &fs->dirty_list, dirty_node) {
		if (n == max)
			break;
		if (inode->dead)
			continue;
		if (!all && now - inode->dirtied_ns < expire)
			continue;
		if (!all && inode->wb_retry_ns > now)
			continue;
		inode->nopen++;
		out[n++] = inode;
	}
	pthread_mutex_unlock(&fs->dirty_lock);
	pthread_rwlock_unlock(&fs->ns_lock);
	return n;
}

static void drop_from_dirty(struct foliofs *fs, struct fs_inode *inode)
{
	pthread_mutex_lock(&fs->dirty_lock);
	if (inode->on_dirty_list && !xa_marked(&inode->map.pages, FM_DIRTY)) {
		inode->on_dirty_list = false;
		cds_list_del_init(&inode->dirty_node);
	} else if (inode->on_dirty_list) {
		/* Still dirty (a writer, or an error): to the back. */
		cds_list_del(&inode->dirty_node);
		cds_list_add_tail(&inode->dirty_node, &fs->dirty_list);
		inode->dirtied_ns = fs_now_ns();
	}
	pthread_mutex_unlock(&fs->dirty_lock);
}

static int writeback_some(struct foliofs *fs, bool all, bool sync)
{
	struct fs_inode *batch[64];
	unsigned int n, i, rounds = 0;
	int ret = 0, err;

	do {
		n = grab_dirty(fs, batch, ARRAY_SIZE(batch), all);
		for (i = 0; i < n; i++) {
			err = fs_writeback_inode(batch[i], sync);
			if (err && !ret)
				ret = err;
			drop_from_dirty(fs, batch[i]);
			fs_inode_put(fs, batch[i], 0, true);
		}
		pthread_mutex_lock(&fs->dirty_lock);
		pthread_cond_broadcast(&fs->throttle_wait);
		pthread_mutex_unlock(&fs->dirty_lock);
	} while (n == ARRAY_SIZE(batch) && ++rounds < 1024);
	return ret;
}

int fs_writeback_all(struct foliofs *fs, bool sync)
{
	return writeback_some(fs, true, sync);
}

static void *flusher_main(void *arg)
{
	struct foliofs *fs = arg;
	int64_t tick_ms = fs->opts.dirty_expire_ms / 4;

	if (tick_ms > (int64_t)fs->opts.commit_ms / 2)
		tick_ms = fs->opts.commit_ms / 2;
	if (tick_ms < 10)
		tick_ms = 10;
	foliofs_thread_init();
	for (;;) {
		struct timespec ts;
		bool over, kicked;

		pthread_mutex_lock(&fs->dirty_lock);
		if (!fs->stopping && !__atomic_load_n(&fs->kick, __ATOMIC_RELAXED) &&
		    fs_dirty_bytes() <= fs->opts.dirty_background_bytes) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += (tick_ms % 1000) * 1000000L;
			ts.tv_sec += tick_ms / 1000 + ts.tv_nsec / 1000000000L;
			ts.tv_nsec %= 1000000000L;
			pthread_cond_timedwait(&fs->flusher_wake, &fs->dirty_lock,
					       &ts);
		}
		kicked = __atomic_load_n(&fs->kick, __ATOMIC_RELAXED);
		__atomic_store_n(&fs->kick, false, __ATOMIC_RELAXED);
		if (fs->stopping) {
			pthread_mutex_unlock(&fs->dirty_lock);
			break;
		}
		pthread_mutex_unlock(&fs->dirty_lock);

		over = fs_dirty_bytes() > fs->opts.dirty_background_bytes;
		writeback_some(fs, over || kicked, false);
		if (fs_now_ns() - __atomic_load_n(&fs->last_commit_ns,
						  __ATOMIC_RELAXED) >=
		    (int64_t)fs->opts.commit_ms * 1000000LL || over || kicked)
			fs_commit(fs, UINT64_MAX);
		cache_balance(&fs->cache);
	}
	foliofs_thread_exit();
	return NULL;
}

int fs_flusher_start(struct foliofs *fs)
{
	int ret = pthread_create(&fs->flusher, NULL, flusher_main, fs);

	if (ret)
		return -ret;
	fs->flusher_running = true;
	return 0;
}

void fs_flusher_stop(struct foliofs *fs)
{
	if (!fs->flusher_running)
		return;
	pthread_mutex_lock(&fs->dirty_lock);
	fs->stopping = true;
	pthread_cond_broadcast(&fs->flusher_wake);
	pthread_mutex_unlock(&fs->dirty_lock);
	pthread_join(fs->flusher, NULL);
	fs->flusher_running = false;
}

void fs_balance_dirty(struct foliofs *fs)
{
	uint64_t dirty = fs_dirty_bytes();
	int64_t deadline;

	/* Past the background threshold, the flusher writes while writers
	 * go on copying: wake it once, not on every write. */
	if (dirty > fs->opts.dirty_background_bytes &&
	    !__atomic_load_n(&fs->kick, __ATOMIC_RELAXED)) {
		pthread_mutex_lock(&fs->dirty_lock);
		__atomic_store_n(&fs->kick, true, __ATOMIC_RELAXED);
		pthread_cond_signal(&fs->flusher_wake);
		pthread_mutex_unlock(&fs->dirty_lock);
	}
	if (dirty <= fs->opts.dirty_bytes)
		return;
	__atomic_add_fetch(&fs->st_throttled, 1, __ATOMIC_RELAXED);
	deadline = fs_now_ns() + 10000000000LL;
	pthread_mutex_lock(&fs->dirty_lock);
	while (fs_dirty_bytes() > fs->opts.dirty_bytes && !fs->stopping &&
	       fs_now_ns() < deadline) {
		struct timespec ts;

		__atomic_store_n(&fs->kick, true, __ATOMIC_RELAXED);
		pthread_cond_signal(&fs->flusher_wake);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&fs->throttle_wait, &fs->dirty_lock, &ts);
	}
	pthread_mutex_unlock(&fs->dirty_lock);
}

/* ---- File I/O ------------------------------------------------------------------- */

ssize_t foliofs_read(struct foliofs_file *file, void *buf, size_t len,
		     uint64_t off)
{
	struct fs_inode *inode = file->inode;
	struct file_ra_state ra;
	ssize_t ret;

	foliofs_thread_init();
	if (S_ISDIR(inode->type))
		return -EISDIR;
	if (!S_ISREG(inode->type))
		return -EINVAL;
	if ((file->flags & O_ACCMODE) == O_WRONLY)
		return -EBADF;
	if (off >= MAX_FILE_BYTES)
		return 0;
	/* Read-ahead state per open file; concurrent readers of one file
	 * each work on a copy and the last one's stays. */
	pthread_mutex_lock(&inode->attr_lock);
	ra = file->ra;
	pthread_mutex_unlock(&inode->attr_lock);
	ret = filemap_read(&inode->map, &ra, (long long)off, buf, len);
	pthread_mutex_lock(&inode->attr_lock);
	file->ra = ra;
	pthread_mutex_unlock(&inode->attr_lock);
	return ret;
}

ssize_t foliofs_write(struct foliofs_file *file, const void *buf, size_t len,
		      uint64_t off)
{
	struct fs_inode *inode = file->inode;
	struct foliofs *fs = file->fs;
	struct fs_copy_src src;
	ssize_t ret;

	foliofs_thread_init();
	if (fs->readonly)
		return -EROFS;
	if (S_ISDIR(inode->type))
		return -EISDIR;
	if (!S_ISREG(inode->type))
		return -EINVAL;
	if ((file->flags & O_ACCMODE) == O_RDONLY)
		return -EBADF;
	if (!len)
		return 0;
	pthread_rwlock_wrlock(&inode->rwsem);
	if (file->flags & O_APPEND)
		off = (uint64_t)filemap_size(&inode->map);
	if (off >= MAX_FILE_BYTES) {
		ret = -EFBIG;
		goto out;
	}
	if (len > MAX_FILE_BYTES - off)
		len = MAX_FILE_BYTES - off;
	fs_copy_src_init(&src, buf);
	ret = filemap_write(&inode->map, (long long)off, &src, len);
	if (ret > 0) {
		pthread_mutex_lock(&inode->attr_lock);
		inode->mtime_ns = inode->ctime_ns = fs_now_ns();
		inode->attr_dirty = true;
		pthread_mutex_unlock(&inode->attr_lock);
	}
out:
	pthread_rwlock_unlock(&inode->rwsem);
	if (ret > 0) {
		fs_note_dirty(inode);
		fs_balance_dirty(fs);
	}
	return ret;
}

int foliofs_fsync(struct foliofs_file *file, int datasync)
{
	struct fs_inode *inode = file->inode;
	struct foliofs *fs = file->fs;
	uint32_t seq;
	int ret, err;

	foliofs_thread_init();
	if (fs->readonly)
		return 0;
	ret = fs_writeback_inode(inode, true);
	if (!ret && !xa_marked(&inode->map.pages, FM_DIRTY))
		drop_from_dirty(fs, inode);
	err = fs_commit(fs, fs_tx_gen(fs));
	seq = __atomic_load_n(&inode->wb_err_seq, __ATOMIC_ACQUIRE);
	/* Every writeback failure bumps the sequence, so a failure of this
	 * call's writeback is reported here; one already reported to this
	 * file is not reported again (the data stays dirty for the retry). */
	(void)ret;
	if (seq != file->wb_err_seen) {
		int e;

		file->wb_err_seen = seq;
		pthread_mutex_lock(&inode->attr_lock);
		e = inode->wb_err;
		pthread_mutex_unlock(&inode->attr_lock);
		return e ? e : -EIO;
	}
	return err;
}

/* Map unmapped blocks of [@lblk, @end) as unwritten extents. */
/*
 * Does cached block @lblk hold a delalloc reservation? Such a block must
 * stay unmapped until writeback allocates it from the reservation (law 7):
 * mapping it here would leave the reservation with nothing to consume it.
 */
static bool block_reserved(struct fs_inode *inode, uint64_t lblk)
{
	struct folio *folio = filemap_get_folio(&inode->map, lblk);
	bool ret;

	if (!folio)
		return false;
	ret = blkstate_count_reserved(folio,
				      (size_t)(lblk - folio->index) << PAGE_SHIFT,
				      PAGE_SIZE) != 0;
	folio_put(folio);
	return ret;
}

static int prealloc(struct fs_inode *inode, uint64_t lblk, uint64_t end)
{
	struct foliofs *fs = inode->fs;
	uint64_t goal = 0;
	int ret = 0;

	while (lblk < end) {
		uint64_t n = 0, start, i;
		long got;
		void *e = xa_load(&inode->extents, lblk);

		if (e) {
			goal = ext_pblk(e) + 1;
			lblk++;
			continue;
		}
		if (block_reserved(inode, lblk)) {
			lblk++;
			continue;
		}
		while (lblk + n < end && !xa_load(&inode->extents, lblk + n) &&
		       !block_reserved(inode, lblk + n) && n < (1U << 20))
			n++;
		got = space_alloc(fs->space, goal, 1, n, &start);
		if (got < 0)
			return (int)got;
		pthread_rwlock_rdlock(&fs->ns_lock);
		pthread_mutex_lock(&fs->tx_lock);
		for (i = 0; i < (uint64_t)got; i++)
			xa_store(&inode->extents, lblk + i,
				 ext_mk(start + i, EXT_UNWRITTEN));
		ret = tx_extent(fs, inode->ino, lblk, start, (uint64_t)got, true);
		pthread_mutex_unlock(&fs->tx_lock);
		pthread_rwlock_unlock(&fs->ns_lock);
		pthread_mutex_lock(&inode->attr_lock);
		inode->nr_mapped += (uint64_t)got;
		pthread_mutex_unlock(&inode->attr_lock);
		if (ret)
			return ret;
		goal = start + (uint64_t)got;
		lblk += (uint64_t)got;
	}
	return 0;
}

int foliofs_fallocate(struct foliofs_file *file, int mode, uint64_t off,
		      uint64_t len)
{
	struct fs_inode *inode = file->inode;
	struct foliofs *fs = file->fs;
	uint64_t end = off + len, size;
	unsigned int bits = fs->blkbits;
	int ret = 0;

	foliofs_thread_init();
	if (fs->readonly)
		return -EROFS;
	if (!S_ISREG(inode->type))
		return S_ISDIR(inode->type) ? -EISDIR : -ENODEV;
	if ((file->flags & O_ACCMODE) == O_RDONLY)
		return -EBADF;
	if (!len || end < off)
		return -EINVAL;
	if (end > MAX_FILE_BYTES)
		return -EFBIG;
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE |
		     FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;

	pthread_rwlock_wrlock(&inode->rwsem);
	size = (uint64_t)filemap_size(&inode->map);
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		uint64_t pend = end < size ? end : size;

		if (off < pend) {
			pthread_mutex_lock(&inode->wb_lock);
			ret = filemap_punch(&inode->map, (long long)off,
					    (long long)pend);
			pthread_mutex_unlock(&inode->wb_lock);
		}
		if (ret || (mode & FALLOC_FL_PUNCH_HOLE))
			goto done;
	}
	/* Allocation: write back first, so that what is dirty gets its
	 * blocks now (prealloc skips blocks still reserved: write pins). */
	ret = fs_writeback_inode(inode, true);
	if (ret)
		goto done;
	pthread_mutex_lock(&inode->wb_lock);
	ret = prealloc(inode, off >> bits, (end + (1U << bits) - 1) >> bits);
	pthread_mutex_unlock(&inode->wb_lock);
	if (!ret && !(mode & FALLOC_FL_KEEP_SIZE) && end > size) {
		ret = filemap_truncate(&inode->map, (long long)end);
		if (!ret) {
			pthread_rwlock_rdlock(&fs->ns_lock);
			pthread_mutex_lock(&fs->tx_lock);
			pthread_mutex_lock(&inode->attr_lock);
			if (inode->disksize == size)
				inode->disksize = end;
			ret = tx_inode(fs, inode);
			pthread_mutex_unlock(&inode->attr_lock);
			pthread_mutex_unlock(&fs->tx_lock);
			pthread_rwlock_unlock(&fs->ns_lock);
		}
	}
done:
	if (!ret) {
		pthread_mutex_lock(&inode->attr_lock);
		inode->mtime_ns = inode->ctime_ns = fs_now_ns();
		inode->attr_dirty = true;
		pthread_mutex_unlock(&inode->attr_lock);
		fs_note_dirty(inode);
	}
	pthread_rwlock_unlock(&inode->rwsem);
	return ret;
}

/* Does block @lblk hold data: written on disk, or dirty in the cache? */
static bool block_has_data(struct fs_inode *inode, uint64_t lblk)
{
	void *e = xa_load(&inode->extents, lblk);
	struct folio *folio;
	bool ret;

	if (e && !(ext_flags(e) & (EXT_UNWRITTEN | EXT_NEW)))
		return true;
	folio = filemap_get_folio(&inode->map, lblk);
	if (!folio)
		return false;
	ret = blkstate_test_dirty(folio, (size_t)(lblk - folio->index) << 12,
				  4096);
	folio_put(folio);
	return ret;
}

int64_t foliofs_lseek(struct foliofs_file *file, uint64_t off, int whence)
{
	struct fs_inode *inode = file->inode;
	uint64_t size, lblk, end;
	unsigned int bits = file->fs->blkbits;

	foliofs_thread_init();
	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	if (!S_ISREG(inode->type))
		return -EINVAL;
	pthread_rwlock_rdlock(&inode->rwsem);
	size = (uint64_t)filemap_size(&inode->map);
	if (off >= size) {
		pthread_rwlock_unlock(&inode->rwsem);
		return -ENXIO;
	}
	end = (size + (1U << bits) - 1) >> bits;
	lblk = off >> bits;
	if (whence == SEEK_DATA) {
		while (lblk < end) {
			unsigned long e = lblk, d = lblk;
			void *ent;

			if (block_has_data(inode, lblk))
				break;
			/* Jump to the next mapped or cached block. */
			ent = xa_find_after(&inode->extents, &e, end, XA_PRESENT);
			if (!ent)
				e = end;
			if (!xa_find_after(&inode->map.pages, &d, end, FM_DIRTY))
				d = end;
			/* Inside a dirty large folio: its next block. */
			if (xa_get_mark(&inode->map.pages, lblk, FM_DIRTY))
				d = lblk + 1;
			lblk = e < d ? e : d;
		}
		pthread_rwlock_unlock(&inode->rwsem);
		if (lblk >= end)
			return -ENXIO;
		return (int64_t)((lblk << bits) > off ? lblk << bits : off);
	}
	while (lblk < end && block_has_data(inode, lblk))
		lblk++;
	pthread_rwlock_unlock(&inode->rwsem);
	if ((lblk << bits) >= size)
		return (int64_t)size;
	return (int64_t)((lblk << bits) > off ? lblk << bits : off);
}

ssize_t foliofs_copy_range(struct foliofs_file *in, uint64_t off_in,
			   struct foliofs_file *out, uint64_t off_out,
			   size_t len)
{
	size_t chunk = 1U << 20, done = 0;
	char *buf;

	foliofs_thread_init();
	if (!S_ISREG(in->inode->type) || !S_ISREG(out->inode->type))
		return S_ISDIR(in->inode->type) || S_ISDIR(out->inode->type) ?
		       -EISDIR : -EINVAL;
	buf = malloc(chunk);
	if (!buf)
		return -ENOMEM;
	while (done < len) {
		size_t want = len - done < chunk ? len - done : chunk;
		ssize_t r = foliofs_read(in, buf, want, off_in + done), w;

		if (r <= 0) {
			if (r < 0 && !done)
				done = (size_t)r;
			break;
		}
		w = foliofs_write(out, buf, (size_t)r, off_out + done);
		if (w < 0) {
			if (!done)
				done = (size_t)w;
			break;
		}
		done += (size_t)w;
		if (w < r)
			break;
	}
	free(buf);
	return (ssize_t)done;
}

/* ---- Pins ------------------------------------------------------------------------ */

/*
 * A pin does not hold its file: the file may be released (a FUSE reply
 * is on its way to the kernel, which may close the file at once) before
 * the unpin. A read pin needs only its folio references; a write pin
 * holds an open reference on the inode, so the inode and its page cache
 * outlive it even if the file is closed and unlinked meanwhile.
 */
struct foliofs_pin {
	struct foliofs		*fs;
	struct fs_inode		*inode;
	bool			write;
	unsigned int		nseg;
	struct filemap_pin_seg	segs[];
};

static ssize_t pin_common(struct foliofs_file *file, uint64_t off, size_t len,
			  struct iovec *iov, unsigned int max_iov,
			  unsigned int *niov, struct foliofs_pin **out,
			  bool write)
{
	struct fs_inode *inode = file->inode;
	struct foliofs_pin *pin;
	struct file_ra_state ra;
	unsigned int i;
	ssize_t ret;

	foliofs_thread_init();
	*out = NULL;
	*niov = 0;
	if (!S_ISREG(inode->type))
		return S_ISDIR(inode->type) ? -EISDIR : -EINVAL;
	if (write && file->fs->readonly)
		return -EROFS;
	if ((file->flags & O_ACCMODE) == (write ? O_RDONLY : O_WRONLY))
		return -EBADF;
	if (!max_iov)
		return -EINVAL;
	if (off >= MAX_FILE_BYTES)
		return write ? -EFBIG : 0;
	if (len > MAX_FILE_BYTES - off)
		len = MAX_FILE_BYTES - off;
	pin = malloc(sizeof(*pin) + max_iov * sizeof(pin->segs[0]));
	if (!pin)
		return -ENOMEM;
	pin->fs = file->fs;
	pin->inode = inode;
	pin->write = write;
	if (write) {
		pthread_rwlock_rdlock(&inode->rwsem);
		ret = filemap_pin_write(&inode->map, (long long)off, len,
					pin->segs, max_iov, &pin->nseg);
		pthread_rwlock_unlock(&inode->rwsem);
	} else {
		pthread_mutex_lock(&inode->attr_lock);
		ra = file->ra;
		pthread_mutex_unlock(&inode->attr_lock);
		ret = filemap_pin_read(&inode->map, &ra, (long long)off, len,
				       pin->segs, max_iov, &pin->nseg);
		pthread_mutex_lock(&inode->attr_lock);
		file->ra = ra;
		pthread_mutex_unlock(&inode->attr_lock);
	}
	if (ret <= 0) {
		free(pin);
		return ret;
	}
	if (write) {
		pthread_rwlock_wrlock(&file->fs->ns_lock);
		inode->nopen++;		/* dropped by foliofs_unpin() */
		pthread_rwlock_unlock(&file->fs->ns_lock);
	}
	for (i = 0; i < pin->nseg; i++) {
		iov[i].iov_base = (char *)folio_address(pin->segs[i].folio) +
				  pin->segs[i].off;
		iov[i].iov_len = pin->segs[i].len;
	}
	*niov = pin->nseg;
	*out = pin;
	return ret;
}

ssize_t foliofs_pin_read(struct foliofs_file *file, uint64_t off, size_t len,
			 struct iovec *iov, unsigned int max_iov,
			 unsigned int *niov, struct foliofs_pin **pin)
{
	return pin_common(file, off, len, iov, max_iov, niov, pin, false);
}

ssize_t foliofs_pin_write(struct foliofs_file *file, uint64_t off, size_t len,
			  struct iovec *iov, unsigned int max_iov,
			  unsigned int *niov, struct foliofs_pin **pin)
{
	return pin_common(file, off, len, iov, max_iov, niov, pin, true);
}

void foliofs_unpin(struct foliofs_pin *pin, unsigned int flags)
{
	struct fs_inode *inode;
	struct foliofs *fs;
	unsigned int i;
	bool dirty;

	if (!pin)
		return;
	foliofs_thread_init();
	if (!pin->write) {
		for (i = 0; i < pin->nseg; i++)
			folio_unpin(pin->segs[i].folio);
		free(pin);
		return;
	}
	inode = pin->inode;
	fs = pin->fs;
	dirty = flags & FOLIOFS_UNPIN_DIRTY;
	pthread_rwlock_wrlock(&inode->rwsem);
	filemap_unpin(&inode->map, pin->segs, pin->nseg, dirty);
	pthread_rwlock_unlock(&inode->rwsem);
	if (dirty) {
		pthread_mutex_lock(&inode->attr_lock);
		inode->mtime_ns = inode->ctime_ns = fs_now_ns();
		inode->attr_dirty = true;
		pthread_mutex_unlock(&inode->attr_lock);
		fs_note_dirty(inode);
	}
	free(pin);
	fs_inode_put(fs, inode, 0, true);
	if (dirty)
		fs_balance_dirty(fs);
}
