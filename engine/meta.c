/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * meta.c - metadata records: appending them to the open transaction,
 * committing transactions (group commit, ordered after data), writing
 * checkpoints, and rebuilding the in-memory metadata from a checkpoint and
 * the log at mount.
 *
 * Group commit. Appenders note the open transaction's id (fs_tx_gen());
 * fs_commit(gen) returns at once if a commit already covered @gen, else it
 * takes the whole buffer (every appender's records so far) and commits it.
 * Concurrent fsyncs queue on commit_lock and most find their records
 * committed by the one ahead of them.
 *
 * Ordering. A transaction may point at data blocks (REC_EXTENT); writeback
 * appends those records only after the data I/O completed and bumped
 * data_gen. fs_commit() flushes the store before writing the log when
 * data_gen moved since the last flush, so the records never reach the
 * medium before the data they describe (ordered mode).
 *
 * Frees. fs_free_extents() gives blocks back with space_free() under
 * tx_lock, together with the REC_PUNCH that frees them, and the swap of the
 * buffer closes the space allocator's commit under the same lock: a freed
 * block is reused only after the transaction that freed it is durable.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compiler.h"
#include "fs.h"
#include "ondisk_rec.h"

#define REC_ALIGN(n)	(((n) + 7) & ~(size_t)7)
/* A file's blocks: 2^40 (4 PiB at 4 KiB) is beyond any volume we take. */
#define MAX_LBLK	(1ULL << 40)

/* ---- Appending ------------------------------------------------------------ */

static void *tx_reserve(struct foliofs *fs, enum fs_rec_type type, size_t len)
{
	struct fs_txbuf *tx = &fs->tx;
	struct foliofs_disk_rec *rec;
	size_t need = REC_ALIGN(len);

	if (tx->len + need > tx->cap) {
		size_t cap = tx->cap ? tx->cap : 65536;
		char *p;

		while (cap < tx->len + need)
			cap *= 2;
		p = realloc(tx->data, cap);
		if (!p)
			return NULL;
		tx->data = p;
		tx->cap = cap;
	}
	rec = (void *)(tx->data + tx->len);
	memset(rec, 0, need);
	rec->type = cpu_to_le16(type);
	rec->len = cpu_to_le32((uint32_t)need);
	tx->len += need;
	return rec;
}

static void enc_inode(struct foliofs_disk_inode *r, const struct fs_inode *inode)
{
	r->ino = cpu_to_le64(inode->ino);
	r->generation = cpu_to_le64(inode->generation);
	r->mode = cpu_to_le32(inode->mode);
	r->nlink = cpu_to_le32(inode->nlink);
	r->uid = cpu_to_le32(inode->uid);
	r->gid = cpu_to_le32(inode->gid);
	r->rdev = cpu_to_le64(inode->rdev);
	r->size = cpu_to_le64(inode->disksize);
	r->atime_ns = cpu_to_le64((uint64_t)inode->atime_ns);
	r->mtime_ns = cpu_to_le64((uint64_t)inode->mtime_ns);
	r->ctime_ns = cpu_to_le64((uint64_t)inode->ctime_ns);
}

int tx_inode(struct foliofs *fs, struct fs_inode *inode)
{
	struct foliofs_disk_inode *r = tx_reserve(fs, REC_INODE, sizeof(*r));

	if (!r)
		return -ENOMEM;
	enc_inode(r, inode);
	inode->attr_dirty = false;
	return 0;
}

int tx_inode_locked(struct foliofs *fs, struct fs_inode *inode)
{
	int ret;

	pthread_mutex_lock(&inode->attr_lock);
	ret = tx_inode(fs, inode);
	pthread_mutex_unlock(&inode->attr_lock);
	return ret;
}

static int tx_dirent(struct foliofs *fs, enum fs_rec_type type, uint64_t dir,
		     const char *name, size_t len, uint64_t ino, uint8_t dtype)
{
	struct foliofs_disk_dirent *r = tx_reserve(fs, type, sizeof(*r) + len);

	if (!r)
		return -ENOMEM;
	r->dir = cpu_to_le64(dir);
	r->ino = cpu_to_le64(ino);
	r->type = dtype;
	r->name_len = cpu_to_le16((uint16_t)len);
	memcpy(r->name, name, len);
	return 0;
}

int tx_dirent_add(struct foliofs *fs, uint64_t dir, const char *name,
		  size_t len, uint64_t ino, uint8_t type)
{
	return tx_dirent(fs, REC_DIRENT_ADD, dir, name, len, ino, type);
}

int tx_dirent_del(struct foliofs *fs, uint64_t dir, const char *name,
		  size_t len)
{
	return tx_dirent(fs, REC_DIRENT_DEL, dir, name, len, 0, 0);
}

int tx_extent(struct foliofs *fs, uint64_t ino, uint64_t lblk, uint64_t pblk,
	      uint64_t len, bool unwritten)
{
	struct foliofs_disk_extent *r = tx_reserve(fs, REC_EXTENT, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->ino = cpu_to_le64(ino);
	r->lblk = cpu_to_le64(lblk);
	r->pblk = cpu_to_le64(pblk);
	r->len = cpu_to_le64(len);
	r->flags = cpu_to_le32(unwritten ? FOLIOFS_EXT_UNWRITTEN : 0);
	return 0;
}

int tx_punch(struct foliofs *fs, uint64_t ino, uint64_t lblk, uint64_t len)
{
	struct foliofs_disk_punch *r = tx_reserve(fs, REC_PUNCH, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->ino = cpu_to_le64(ino);
	r->lblk = cpu_to_le64(lblk);
	r->len = cpu_to_le64(len);
	return 0;
}

int tx_symlink(struct foliofs *fs, uint64_t ino, const char *target)
{
	size_t len = strlen(target);
	struct foliofs_disk_symlink *r = tx_reserve(fs, REC_SYMLINK,
						    sizeof(*r) + len);

	if (!r)
		return -ENOMEM;
	r->ino = cpu_to_le64(ino);
	r->len = cpu_to_le32((uint32_t)len);
	memcpy(r->target, target, len);
	return 0;
}

int tx_ifree(struct foliofs *fs, uint64_t ino)
{
	struct foliofs_disk_ifree *r = tx_reserve(fs, REC_IFREE, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->ino = cpu_to_le64(ino);
	return 0;
}

uint64_t fs_tx_gen(struct foliofs *fs)
{
	uint64_t gen;

	pthread_mutex_lock(&fs->tx_lock);
	gen = fs->tx_gen;
	pthread_mutex_unlock(&fs->tx_lock);
	return gen;
}

/* ---- Extents ---------------------------------------------------------------- */

/*
 * Call @fn for each run of @inode's mapped blocks in [@lblk, @end) that is
 * contiguous on disk and has one set of flags.
 */
static int for_each_run(struct fs_inode *inode, uint64_t lblk, uint64_t end,
			int (*fn)(void *arg, uint64_t lblk, uint64_t pblk,
				  uint64_t len, unsigned long flags),
			void *arg)
{
	unsigned long idx = lblk;
	uint64_t rl = 0, rp = 0, rn = 0;
	unsigned long rf = 0;
	void *e;
	int ret;

	if (end == 0)
		return 0;
	for (e = xa_find(&inode->extents, &idx, end - 1, XA_PRESENT); e;
	     e = xa_find_after(&inode->extents, &idx, end - 1, XA_PRESENT)) {
		if (rn && idx == rl + rn && ext_pblk(e) == rp + rn &&
		    ext_flags(e) == rf) {
			rn++;
			continue;
		}
		if (rn) {
			ret = fn(arg, rl, rp, rn, rf);
			if (ret)
				return ret;
		}
		rl = idx;
		rp = ext_pblk(e);
		rf = ext_flags(e);
		rn = 1;
	}
	return rn ? fn(arg, rl, rp, rn, rf) : 0;
}

struct free_ctx {
	struct foliofs	*fs;
	uint64_t	freed;
	uint64_t	logged_runs;
};

static int free_run(void *arg, uint64_t lblk, uint64_t pblk, uint64_t len,
		    unsigned long flags)
{
	struct free_ctx *c = arg;
	int ret = space_free(c->fs->space, pblk, len);

	if (WARN_ON(ret))
		return 0;	/* leave the blocks allocated: leak, not corrupt */
	c->freed += len;
	return 0;
}

int fs_free_extents(struct foliofs *fs, struct fs_inode *inode,
		    uint64_t lblk, uint64_t len, bool log)
{
	uint64_t end = (len == UINT64_MAX || lblk + len > MAX_LBLK) ?
		       MAX_LBLK : lblk + len;
	struct free_ctx c = { .fs = fs };
	unsigned long idx = lblk;
	int ret = 0;
	void *e;

	if (lblk >= end)
		return 0;
	pthread_mutex_lock(&fs->tx_lock);
	if (fs->space)
		for_each_run(inode, lblk, end, free_run, &c);
	for (e = xa_find(&inode->extents, &idx, end - 1, XA_PRESENT); e;
	     e = xa_find_after(&inode->extents, &idx, end - 1, XA_PRESENT))
		xa_erase(&inode->extents, idx);
	if (log)
		ret = tx_punch(fs, inode->ino, lblk, len);
	pthread_mutex_unlock(&fs->tx_lock);
	pthread_mutex_lock(&inode->attr_lock);
	inode->nr_mapped -= c.freed;
	pthread_mutex_unlock(&inode->attr_lock);
	return ret;
}

/* ---- Commit ------------------------------------------------------------------ */

static int flush_data(struct foliofs *fs)
{
	uint64_t dg = __atomic_load_n(&fs->data_gen, __ATOMIC_ACQUIRE);
	int ret;

	if (dg == fs->flushed_gen)
		return 0;
	ret = backing_fdatasync(fs->store);
	if (!ret)
		fs->flushed_gen = dg;
	return ret;
}

/* Put @old (an earlier buffer) back in front of the open one. */
static void tx_restore(struct foliofs *fs, struct fs_txbuf *old)
{
	struct fs_txbuf *tx = &fs->tx;

	pthread_mutex_lock(&fs->tx_lock);
	if (tx->len) {
		if (old->cap < old->len + tx->len) {
			char *p = realloc(old->data, old->len + tx->len);

			if (!p) {
				/* Keep the newer records; the sticky error
				 * tells fsync the older ones are lost. */
				pthread_mutex_unlock(&fs->tx_lock);
				free(old->data);
				fs->commit_err = -ENOMEM;
				return;
			}
			old->data = p;
			old->cap = old->len + tx->len;
		}
		memcpy(old->data + old->len, tx->data, tx->len);
		old->len += tx->len;
		free(tx->data);
	} else {
		free(tx->data);
	}
	*tx = *old;
	pthread_mutex_unlock(&fs->tx_lock);
}

/* Take the open transaction; returns its id and closes the space commit. */
static uint64_t tx_take(struct foliofs *fs, struct fs_txbuf *out,
			uint64_t *space_seq)
{
	uint64_t gen;

	pthread_mutex_lock(&fs->tx_lock);
	*out = fs->tx;
	memset(&fs->tx, 0, sizeof(fs->tx));
	gen = fs->tx_gen++;
	*space_seq = fs->space ? space_commit_begin(fs->space) : 0;
	pthread_mutex_unlock(&fs->tx_lock);
	return gen;
}

static int checkpoint_locked(struct foliofs *fs);

/* Blocks of checkpoints whose write failed, freed after the next success. */
static void fs_keep_failed_ckpt(struct foliofs *fs, uint64_t start,
				uint64_t n)
{
	struct fs_extent_list *l = &fs->failed_ckpts;
	void *p;

	if (l->nr == l->cap) {
		p = realloc(l->runs, (l->cap * 2 + 4) * sizeof(*l->runs));
		if (!p)
			return;		/* leaked until the next mount */
		l->runs = p;
		l->cap = l->cap * 2 + 4;
	}
	l->runs[l->nr].start = start;
	l->runs[l->nr].len = n;
	l->nr++;
}

static void fs_release_failed_ckpts(struct foliofs *fs)
{
	struct fs_extent_list *l = &fs->failed_ckpts;

	while (l->nr) {
		l->nr--;
		space_free(fs->space, l->runs[l->nr].start, l->runs[l->nr].len);
	}
}

int fs_commit(struct foliofs *fs, uint64_t gen)
{
	struct fs_txbuf old;
	uint64_t mygen, seq;
	int ret;

	if (fs->readonly)
		return 0;
	pthread_mutex_lock(&fs->commit_lock);
	if (gen != UINT64_MAX &&
	    __atomic_load_n(&fs->committed_gen, __ATOMIC_ACQUIRE) > gen) {
		/*
		 * Our records are in, but data written in place needs no
		 * record: an fsync that only overwrote blocks still needs
		 * the flush that makes them durable.
		 */
		ret = flush_data(fs);
		if (!ret)
			ret = fs->commit_err;
		goto out;
	}
	if (journal_used_bytes(fs->journal) >
	    journal_size_bytes(fs->journal) / 2) {
		ret = checkpoint_locked(fs);
		goto out;
	}
	mygen = tx_take(fs, &old, &seq);
	if (!old.len) {
		free(old.data);
		ret = flush_data(fs);	/* in-place overwrites (see above) */
		if (ret)
			goto out;
		space_commit_done(fs->space, seq);
		__atomic_store_n(&fs->committed_gen, mygen + 1, __ATOMIC_RELEASE);
		ret = fs->commit_err;
		goto out;
	}
	ret = flush_data(fs);
	if (!ret)
		ret = journal_commit(fs->journal, old.data, old.len);
	if (ret == -ENOSPC || ret == -E2BIG) {
		tx_restore(fs, &old);
		ret = checkpoint_locked(fs);
		goto out;
	}
	if (ret == -EIO && journal_needs_checkpoint(fs->journal)) {
		/* A failed checkpoint left the log with no safe place to
		 * append (journal.h): only a new checkpoint gets out. */
		tx_restore(fs, &old);
		ret = checkpoint_locked(fs);
		goto out;
	}
	if (ret) {
		tx_restore(fs, &old);
		goto out;
	}
	__atomic_add_fetch(&fs->st_commits, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&fs->st_log_bytes, old.len, __ATOMIC_RELAXED);
	space_commit_done(fs->space, seq);
	__atomic_store_n(&fs->committed_gen, mygen + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&fs->last_commit_ns, fs_now_ns(), __ATOMIC_RELAXED);
	free(old.data);
out:
	pthread_mutex_unlock(&fs->commit_lock);
	return ret;
}

/* ---- Checkpoint ----------------------------------------------------------- */

struct ser_ctx {
	struct foliofs	*fs;
	uint64_t	ino;
};

static int ser_run(void *arg, uint64_t lblk, uint64_t pblk, uint64_t len,
		   unsigned long flags)
{
	struct ser_ctx *c = arg;

	if (flags & EXT_NEW)
		return 0;	/* not written yet: not on disk either */
	return tx_extent(c->fs, c->ino, lblk, pblk, len,
			 flags & EXT_UNWRITTEN);
}

/* Serialise every inode, extent and entry into the (empty) tx buffer. */
static int serialize_all(struct foliofs *fs)
{
	unsigned long idx;
	struct fs_inode *inode;
	int ret = 0;

	xa_for_each(&fs->inodes, idx, inode) {
		struct ser_ctx c = { fs, inode->ino };

		ret = tx_inode_locked(fs, inode);
		if (!ret && inode->symlink)
			ret = tx_symlink(fs, inode->ino, inode->symlink);
		if (!ret && S_ISREG(inode->type))
			ret = for_each_run(inode, 0, MAX_LBLK, ser_run, &c);
		if (ret)
			return ret;
	}
	xa_for_each(&fs->inodes, idx, inode) {
		unsigned long cookie;
		struct fs_dirent *de;

		if (!inode->dir)
			continue;
		xa_for_each(&inode->dir->by_cookie, cookie, de) {
			ret = tx_dirent_add(fs, inode->ino, de->name, de->len,
					    de->ino, de->type);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int checkpoint_locked(struct foliofs *fs)
{
	struct fs_txbuf old, snap;
	uint64_t mygen, seq, start, nblocks, dg;
	uint64_t old_start = fs->sb.ckpt_start, old_blocks = fs->sb.ckpt_blocks;
	long got;
	int ret;

	pthread_rwlock_wrlock(&fs->ns_lock);
	mygen = tx_take(fs, &old, &seq);
	dg = __atomic_load_n(&fs->data_gen, __ATOMIC_ACQUIRE);
	pthread_mutex_lock(&fs->tx_lock);
	ret = serialize_all(fs);
	snap = fs->tx;
	memset(&fs->tx, 0, sizeof(fs->tx));
	pthread_mutex_unlock(&fs->tx_lock);
	pthread_rwlock_unlock(&fs->ns_lock);
	if (ret)
		goto fail;

	nblocks = journal_ckpt_blocks(fs->journal, snap.len);
	if (fs->ckpt_reserve) {
		space_unreserve(fs->space, fs->ckpt_reserve);
		fs->ckpt_reserve = 0;
	}
	got = space_alloc(fs->space, 0, nblocks, nblocks, &start);
	if (got < 0) {
		ret = (int)got;
		goto fail;
	}
	/* The checkpoint's write and flush cover the data it points at:
	 * every data write it describes completed before serialising. */
	ret = journal_checkpoint(fs->journal, snap.data, snap.len, start);
	if (ret) {
		/*
		 * The new superblock may have reached the disk even though its
		 * flush failed: after a crash it would name these blocks. Keep
		 * them allocated until a later checkpoint succeeds.
		 */
		fs_keep_failed_ckpt(fs, start, nblocks);
		goto fail;
	}
	fs->flushed_gen = dg;
	if (old_blocks)
		space_free(fs->space, old_start, old_blocks);
	fs_release_failed_ckpts(fs);
	space_commit_done(fs->space, seq);
	__atomic_store_n(&fs->committed_gen, mygen + 1, __ATOMIC_RELEASE);
	__atomic_add_fetch(&fs->st_checkpoints, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&fs->last_commit_ns, fs_now_ns(), __ATOMIC_RELAXED);
	free(old.data);
	free(snap.data);
	/* Keep room for the next checkpoint: twice this one, best effort. */
	if (!space_reserve(fs->space, 2 * nblocks + 16))
		fs->ckpt_reserve = 2 * nblocks + 16;
	return 0;
fail:
	free(snap.data);
	tx_restore(fs, &old);
	if (!fs->ckpt_reserve && !space_reserve(fs->space, 16))
		fs->ckpt_reserve = 16;
	return ret;
}

int fs_checkpoint(struct foliofs *fs)
{
	int ret;

	if (fs->readonly)
		return 0;
	pthread_mutex_lock(&fs->commit_lock);
	ret = checkpoint_locked(fs);
	pthread_mutex_unlock(&fs->commit_lock);
	return ret;
}

/* ---- Replay ------------------------------------------------------------------ */

#define corrupt(msg, msg_len, ...) ({					\
	if (msg)							\
		snprintf(msg, msg_len, __VA_ARGS__);			\
	-EUCLEAN;							\
})

static bool valid_name(const char *name, size_t len)
{
	if (!len || len > FOLIOFS_NAME_MAX)
		return false;
	if (memchr(name, '/', len) || memchr(name, '\0', len))
		return false;
	if ((len == 1 && name[0] == '.') ||
	    (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	return true;
}

static bool valid_mode(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR:
	case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		return (mode & ~(S_IFMT | 07777)) == 0;
	}
	return false;
}

static int apply_inode(struct foliofs *fs, const struct foliofs_disk_inode *r,
		       char *msg, size_t msg_len)
{
	uint64_t ino = le64_to_cpu(r->ino);
	uint32_t mode = le32_to_cpu(r->mode);
	struct fs_inode *inode;

	if (!ino || ino >= (1ULL << 62) || !valid_mode(mode))
		return corrupt(msg, msg_len,
			       "inode record: bad number %llu or mode %o",
			       (unsigned long long)ino, mode);
	inode = xa_load(&fs->inodes, ino);
	if (inode && inode->type != (mode & S_IFMT))
		return corrupt(msg, msg_len,
			       "inode %llu changes type from %o to %o",
			       (unsigned long long)ino, inode->mode, mode);
	if (!inode) {
		inode = fs_inode_new(fs, ino, mode);
		if (!inode)
			return -ENOMEM;
		if (xa_err(xa_store(&fs->inodes, ino, inode))) {
			fs_inode_free(inode);
			return -ENOMEM;
		}
		fs->nr_inodes++;
	}
	inode->generation = le64_to_cpu(r->generation);
	inode->mode = mode;
	inode->nlink = le32_to_cpu(r->nlink);
	inode->uid = le32_to_cpu(r->uid);
	inode->gid = le32_to_cpu(r->gid);
	inode->rdev = le64_to_cpu(r->rdev);
	inode->disksize = le64_to_cpu(r->size);
	if (inode->disksize > (MAX_LBLK << fs->blkbits))
		return corrupt(msg, msg_len, "inode %llu: size %llu too large",
			       (unsigned long long)ino,
			       (unsigned long long)inode->disksize);
	filemap_set_size(&inode->map, (long long)inode->disksize);
	inode->atime_ns = (int64_t)le64_to_cpu(r->atime_ns);
	inode->mtime_ns = (int64_t)le64_to_cpu(r->mtime_ns);
	inode->ctime_ns = (int64_t)le64_to_cpu(r->ctime_ns);
	if (ino >= fs->next_ino)
		fs->next_ino = ino + 1;
	if (inode->generation >= fs->next_gen)
		fs->next_gen = inode->generation + 1;
	return 0;
}

static struct fs_inode *need_inode(struct foliofs *fs, uint64_t ino,
				   uint32_t type)
{
	struct fs_inode *inode = xa_load(&fs->inodes, ino);

	if (!inode || (type && inode->type != type))
		return NULL;
	return inode;
}

static int apply_dirent(struct foliofs *fs, const struct foliofs_disk_dirent *r,
			size_t rlen, bool add, char *msg, size_t msg_len)
{
	uint64_t dino = le64_to_cpu(r->dir);
	size_t nlen = le16_to_cpu(r->name_len);
	struct fs_inode *dir = need_inode(fs, dino, S_IFDIR);
	int ret;

	if (sizeof(*r) + nlen > rlen || !valid_name(r->name, nlen))
		return corrupt(msg, msg_len, "directory %llu: bad entry name",
			       (unsigned long long)dino);
	if (!dir)
		return corrupt(msg, msg_len,
			       "entry \"%.*s\" in %llu, which is not a directory",
			       (int)nlen, r->name, (unsigned long long)dino);
	if (add) {
		uint64_t ino = le64_to_cpu(r->ino);

		if (!ino || r->type > DT_WHT)
			return corrupt(msg, msg_len,
				       "entry \"%.*s\" in %llu: bad inode",
				       (int)nlen, r->name,
				       (unsigned long long)dino);
		ret = fs_dir_add(dir, r->name, nlen, ino, r->type, 0);
		if (ret == -EEXIST)
			return corrupt(msg, msg_len,
				       "entry \"%.*s\" in %llu added twice",
				       (int)nlen, r->name,
				       (unsigned long long)dino);
		return ret;
	}
	ret = fs_dir_del(dir, r->name, nlen);
	if (ret == -ENOENT)
		return corrupt(msg, msg_len,
			       "removal of missing entry \"%.*s\" in %llu",
			       (int)nlen, r->name, (unsigned long long)dino);
	return ret;
}

static int apply_extent(struct foliofs *fs, const struct foliofs_disk_extent *r,
			char *msg, size_t msg_len)
{
	uint64_t ino = le64_to_cpu(r->ino), lblk = le64_to_cpu(r->lblk);
	uint64_t pblk = le64_to_cpu(r->pblk), len = le64_to_cpu(r->len);
	uint32_t flags = le32_to_cpu(r->flags);
	struct fs_inode *inode = need_inode(fs, ino, S_IFREG);
	uint64_t i;

	if (!inode)
		return corrupt(msg, msg_len,
			       "extent of %llu, which is not a regular file",
			       (unsigned long long)ino);
	if (!len || len > MAX_LBLK || lblk >= MAX_LBLK ||
	    lblk + len > MAX_LBLK || pblk >= fs->sb.total_blocks ||
	    len > fs->sb.total_blocks - pblk || (flags & ~FOLIOFS_EXT_UNWRITTEN))
		return corrupt(msg, msg_len,
			       "inode %llu: extent %llu+%llu -> %llu is outside the volume",
			       (unsigned long long)ino, (unsigned long long)lblk,
			       (unsigned long long)len, (unsigned long long)pblk);
	for (i = 0; i < len; i++) {
		void *old = xa_store(&inode->extents, lblk + i,
				     ext_mk(pblk + i, flags ? EXT_UNWRITTEN : 0));

		if (xa_is_err(old))
			return -ENOMEM;
		if (!old)
			inode->nr_mapped++;
	}
	return 0;
}

static int apply_punch(struct foliofs *fs, const struct foliofs_disk_punch *r,
		       char *msg, size_t msg_len)
{
	uint64_t ino = le64_to_cpu(r->ino);
	struct fs_inode *inode = need_inode(fs, ino, S_IFREG);

	if (!inode)
		return corrupt(msg, msg_len,
			       "punch of %llu, which is not a regular file",
			       (unsigned long long)ino);
	return fs_free_extents(fs, inode, le64_to_cpu(r->lblk),
			       le64_to_cpu(r->len), false);
}

static int apply_symlink(struct foliofs *fs, const struct foliofs_disk_symlink *r,
			 size_t rlen, char *msg, size_t msg_len)
{
	uint64_t ino = le64_to_cpu(r->ino);
	size_t len = le32_to_cpu(r->len);
	struct fs_inode *inode = need_inode(fs, ino, S_IFLNK);
	char *t;

	if (!inode || !len || len > FOLIOFS_SYMLINK_MAX ||
	    sizeof(*r) + len > rlen || memchr(r->target, '\0', len))
		return corrupt(msg, msg_len, "bad symlink record for %llu",
			       (unsigned long long)ino);
	t = strndup(r->target, len);
	if (!t)
		return -ENOMEM;
	free(inode->symlink);
	inode->symlink = t;
	return 0;
}

static int apply_ifree(struct foliofs *fs, const struct foliofs_disk_ifree *r,
		       char *msg, size_t msg_len)
{
	uint64_t ino = le64_to_cpu(r->ino);
	struct fs_inode *inode = xa_load(&fs->inodes, ino);

	if (!inode || ino == FOLIOFS_ROOT_INO)
		return corrupt(msg, msg_len, "free of missing inode %llu",
			       (unsigned long long)ino);
	xa_erase(&fs->inodes, ino);
	fs->nr_inodes--;
	fs_inode_free(inode);
	return 0;
}

int fs_apply(struct foliofs *fs, const void *payload, size_t len, char *msg,
	     size_t msg_len)
{
	const char *p = payload, *end = p + len;
	int ret = 0;

	while (p < end) {
		const struct foliofs_disk_rec *h = (const void *)p;
		size_t rlen;
		unsigned int type;

		if ((size_t)(end - p) < sizeof(*h))
			return corrupt(msg, msg_len, "record cut short");
		rlen = le32_to_cpu(h->len);
		type = le16_to_cpu(h->type);
		if (rlen < sizeof(*h) || rlen % 8 || rlen > (size_t)(end - p))
			return corrupt(msg, msg_len, "record of bad length %zu",
				       rlen);
#define NEED(T) if (rlen < sizeof(T)) \
		return corrupt(msg, msg_len, "record type %u too short", type)
		switch (type) {
		case REC_INODE:
			NEED(struct foliofs_disk_inode);
			ret = apply_inode(fs, (const void *)p, msg, msg_len);
			break;
		case REC_DIRENT_ADD:
		case REC_DIRENT_DEL:
			NEED(struct foliofs_disk_dirent);
			ret = apply_dirent(fs, (const void *)p, rlen,
					   type == REC_DIRENT_ADD, msg, msg_len);
			break;
		case REC_EXTENT:
			NEED(struct foliofs_disk_extent);
			ret = apply_extent(fs, (const void *)p, msg, msg_len);
			break;
		case REC_PUNCH:
			NEED(struct foliofs_disk_punch);
			ret = apply_punch(fs, (const void *)p, msg, msg_len);
			break;
		case REC_SYMLINK:
			NEED(struct foliofs_disk_symlink);
			ret = apply_symlink(fs, (const void *)p, rlen, msg,
					    msg_len);
			break;
		case REC_IFREE:
			NEED(struct foliofs_disk_ifree);
			ret = apply_ifree(fs, (const void *)p, msg, msg_len);
			break;
		default:
			return corrupt(msg, msg_len, "unknown record type %u",
				       type);
		}
#undef NEED
		if (ret)
			return ret;
		p += rlen;
		fs_progress("records", (uint64_t)(p - (const char *)payload),
			    len);
	}
	return 0;
}

struct replay_ctx {
	struct foliofs	*fs;
	char		*msg;
	size_t		msg_len;
};

static int replay_one(void *arg, const void *payload, size_t len)
{
	struct replay_ctx *c = arg;

	return fs_apply(c->fs, payload, len, c->msg, c->msg_len);
}

static int replay_ckpt(void *arg, const void *payload, size_t len)
{
	struct replay_ctx *c = arg;

	return fs_apply(c->fs, payload, len, c->msg, c->msg_len);
}

int fs_replay(struct foliofs *fs, char *msg, size_t msg_len)
{
	struct replay_ctx c = { fs, msg, msg_len };

	return journal_replay(fs->journal, replay_ckpt, replay_one, &c, msg,
			      msg_len);
}
