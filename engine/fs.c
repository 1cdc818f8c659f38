/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fs.c - volumes and the namespace: mkfs, mount and recovery, unmount,
 * inodes, directories, and the inode-number and path calls of foliofs.h.
 *
 * Directories are a chained hash table of entries (name -> inode), grown
 * by doubling, plus an xarray from a per-directory cookie to the entry.
 * Cookies only grow, so a readdir cursor ("the next cookie") survives any
 * change: an entry present for the whole listing is returned exactly once,
 * and 100k-entry directories cost O(1) per lookup and O(log n) per resumed
 * listing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "compiler.h"
#include "fs.h"
#include "rcu.h"

static __thread char errmsg[512];

const char *foliofs_strerror(void)
{
	return errmsg;
}

void fs_set_errmsg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
	va_end(ap);
}

static __thread foliofs_progress_fn progress_fn;
static __thread void *progress_arg;

void foliofs_set_progress(foliofs_progress_fn fn, void *arg)
{
	progress_fn = fn;
	progress_arg = arg;
}

void fs_progress(const char *phase, uint64_t done, uint64_t total)
{
	uint64_t step = total / 256 + 1;

	if (!progress_fn || !total)
		return;
	if (done == total || done % step == 0)
		progress_fn(progress_arg, phase, done, total);
}

int64_t fs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void enter(void)
{
	foliofs_thread_init();
}

/* ---- Directories ------------------------------------------------------------ */

static uint64_t name_hash(const char *name, size_t len)
{
	return XXH3_64bits(name, len);
}

static struct fs_dir *dir_new(void)
{
	struct fs_dir *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->nbuckets = 16;
	d->buckets = calloc(d->nbuckets, sizeof(*d->buckets));
	if (!d->buckets) {
		free(d);
		return NULL;
	}
	d->next_cookie = 3;
	xa_init(&d->by_cookie);
	return d;
}

static void dir_free(struct fs_dir *d)
{
	unsigned int i;

	if (!d)
		return;
	for (i = 0; i < d->nbuckets; i++) {
		struct fs_dirent *de = d->buckets[i], *next;

		for (; de; de = next) {
			next = de->hnext;
			free(de);
		}
	}
	free(d->buckets);
	xa_destroy(&d->by_cookie);
	free(d);
}

struct fs_dirent *fs_dir_find(struct fs_dir *d, const char *name, size_t len)
{
	struct fs_dirent *de;

	de = d->buckets[name_hash(name, len) & (d->nbuckets - 1)];
	for (; de; de = de->hnext)
		if (de->len == len && !memcmp(de->name, name, len))
			return de;
	return NULL;
}

static void dir_grow(struct fs_dir *d)
{
	unsigned int n = d->nbuckets * 2, i;
	struct fs_dirent **b = calloc(n, sizeof(*b));

	if (!b)
		return;		/* longer chains, still correct */
	for (i = 0; i < d->nbuckets; i++) {
		struct fs_dirent *de = d->buckets[i], *next;

		for (; de; de = next) {
			uint64_t h = name_hash(de->name, de->len) & (n - 1);

			next = de->hnext;
			de->hnext = b[h];
			b[h] = de;
		}
	}
	free(d->buckets);
	d->buckets = b;
	d->nbuckets = n;
}

int fs_dir_add(struct fs_inode *dir, const char *name, size_t len,
	       uint64_t ino, uint8_t type, uint64_t cookie)
{
	struct fs_dir *d = dir->dir;
	struct fs_dirent *de;
	uint64_t h;

	if (fs_dir_find(d, name, len))
		return -EEXIST;
	de = malloc(sizeof(*de) + len + 1);
	if (!de)
		return -ENOMEM;
	de->ino = ino;
	de->type = type;
	de->len = (uint16_t)len;
	memcpy(de->name, name, len);
	de->name[len] = '\0';
	de->cookie = cookie ? cookie : d->next_cookie++;
	if (xa_is_err(xa_store(&d->by_cookie, de->cookie, de))) {
		free(de);
		return -ENOMEM;
	}
	h = name_hash(name, len) & (d->nbuckets - 1);
	de->hnext = d->buckets[h];
	d->buckets[h] = de;
	if (++d->nr > d->nbuckets)
		dir_grow(d);
	return 0;
}

int fs_dir_del(struct fs_inode *dir, const char *name, size_t len)
{
	struct fs_dir *d = dir->dir;
	struct fs_dirent **pp, *de;

	pp = &d->buckets[name_hash(name, len) & (d->nbuckets - 1)];
	for (; (de = *pp); pp = &de->hnext) {
		if (de->len == len && !memcmp(de->name, name, len)) {
			*pp = de->hnext;
			xa_erase(&d->by_cookie, de->cookie);
			d->nr--;
			/* Readers hold ns_lock shared; we hold it exclusive. */
			free(de);
			return 0;
		}
	}
	return -ENOENT;
}

/* ---- Inodes ----------------------------------------------------------------- */

struct fs_inode *fs_inode_new(struct foliofs *fs, uint64_t ino, uint32_t mode)
{
	struct fs_inode *inode = calloc(1, sizeof(*inode));

	if (!inode)
		return NULL;
	inode->fs = fs;
	inode->ino = ino;
	inode->mode = mode;
	inode->type = mode & S_IFMT;
	pthread_mutex_init(&inode->attr_lock, NULL);
	pthread_rwlock_init(&inode->rwsem, NULL);
	pthread_mutex_init(&inode->wb_lock, NULL);
	xa_init(&inode->extents);
	filemap_init(&inode->map, &fs->cache, &fs_filemap_ops, inode);
	inode->map.append_large = true;
	CDS_INIT_LIST_HEAD(&inode->dirty_node);
	if (S_ISDIR(mode)) {
		inode->dir = dir_new();
		if (!inode->dir) {
			free(inode);
			return NULL;
		}
	}
	return inode;
}

void fs_inode_free(struct fs_inode *inode)
{
	filemap_destroy(&inode->map);
	xa_destroy(&inode->extents);
	dir_free(inode->dir);
	free(inode->symlink);
	pthread_mutex_destroy(&inode->attr_lock);
	pthread_rwlock_destroy(&inode->rwsem);
	pthread_mutex_destroy(&inode->wb_lock);
	free(inode);
}

struct fs_inode *fs_iget_locked(struct foliofs *fs, uint64_t ino)
{
	struct fs_inode *inode;

	if (ino == 0 || ino > ULONG_MAX)
		return NULL;
	inode = xa_load(&fs->inodes, ino);
	if (inode && inode->dead)
		return NULL;
	return inode;
}

static uint8_t mode_to_dt(uint32_t mode)
{
	return (uint8_t)((mode & S_IFMT) >> 12);
}

static struct timespec ns_to_ts(int64_t ns)
{
	struct timespec ts;

	ts.tv_sec = ns / 1000000000LL;
	ts.tv_nsec = ns % 1000000000LL;
	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += 1000000000LL;
	}
	return ts;
}

static int64_t ts_to_ns(struct timespec ts)
{
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void fs_attr_fill(struct fs_inode *inode, struct foliofs_attr *attr)
{
	uint64_t blocks;

	memset(attr, 0, sizeof(*attr));
	pthread_mutex_lock(&inode->attr_lock);
	attr->ino = inode->ino;
	attr->generation = inode->generation;
	attr->mode = inode->mode;
	attr->nlink = inode->nlink;
	attr->uid = inode->uid;
	attr->gid = inode->gid;
	attr->rdev = inode->rdev;
	attr->atime = ns_to_ts(inode->atime_ns);
	attr->mtime = ns_to_ts(inode->mtime_ns);
	attr->ctime = ns_to_ts(inode->ctime_ns);
	blocks = inode->nr_mapped;
	pthread_mutex_unlock(&inode->attr_lock);
	if (S_ISREG(attr->mode)) {
		attr->size = (uint64_t)filemap_size(&inode->map);
		blocks += __atomic_load_n(&inode->map.nr_reserved,
					  __ATOMIC_RELAXED);
	} else if (S_ISLNK(attr->mode)) {
		attr->size = inode->symlink ? strlen(inode->symlink) : 0;
	} else if (S_ISDIR(attr->mode)) {
		attr->size = 4096;
		blocks = 8 >> (12 - inode->fs->blkbits);
	}
	attr->blocks = blocks << (inode->fs->blkbits - 9);
	attr->blksize = 1U << 20;
}

/* Drop an unreferenced, unlinked inode: its cache, blocks and record. */
void fs_evict_inode(struct foliofs *fs, struct fs_inode *inode)
{
	pthread_mutex_lock(&fs->dirty_lock);
	if (inode->on_dirty_list) {
		cds_list_del_init(&inode->dirty_node);
		inode->on_dirty_list = false;
	}
	pthread_mutex_unlock(&fs->dirty_lock);
	if (S_ISREG(inode->type)) {
		pthread_rwlock_wrlock(&inode->rwsem);
		pthread_mutex_lock(&inode->wb_lock);
		filemap_truncate(&inode->map, 0);
		pthread_mutex_unlock(&inode->wb_lock);
		pthread_rwlock_unlock(&inode->rwsem);
	}
	pthread_rwlock_rdlock(&fs->ns_lock);
	fs_free_extents(fs, inode, 0, UINT64_MAX, false);
	pthread_mutex_lock(&fs->tx_lock);
	tx_ifree(fs, inode->ino);
	pthread_mutex_unlock(&fs->tx_lock);
	pthread_rwlock_unlock(&fs->ns_lock);
	fs_inode_free(inode);
}

/*
 * Drop a reference (lookup or open); evict if it was the last and the inode
 * has no links. Caller holds nothing.
 */
void fs_inode_put(struct foliofs *fs, struct fs_inode *inode, uint64_t nlookup,
		  bool open)
{
	bool evict = false;

	pthread_rwlock_wrlock(&fs->ns_lock);
	if (open)
		inode->nopen--;
	else
		inode->nlookup = inode->nlookup > nlookup ?
				 inode->nlookup - nlookup : 0;
	if (!inode->nlookup && !inode->nopen && !inode->nlink &&
	    !inode->dead) {
		__atomic_store_n(&inode->dead, true, __ATOMIC_RELAXED);
		xa_erase(&fs->inodes, inode->ino);
		fs->nr_inodes--;
		evict = true;
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	if (evict)
		fs_evict_inode(fs, inode);
}

/* Called with ns_lock exclusive after nlink dropped: evict if unused. */
static bool inode_unlinked_locked(struct foliofs *fs, struct fs_inode *inode)
{
	if (inode->nlink || inode->nlookup || inode->nopen || inode->dead)
		return false;
	__atomic_store_n(&inode->dead, true, __ATOMIC_RELAXED);
	xa_erase(&fs->inodes, inode->ino);
	fs->nr_inodes--;
	return true;
}

/* ---- mkfs ----------------------------------------------------------------- */

static int write_root(struct foliofs *fs, uint32_t uid, uint32_t gid)
{
	struct fs_inode root = { 0 };
	int64_t now = fs_now_ns();
	int ret;

	root.ino = FOLIOFS_ROOT_INO;
	root.generation = 1;
	root.mode = S_IFDIR | 0755;
	root.nlink = 2;
	root.uid = uid;
	root.gid = gid;
	root.atime_ns = root.mtime_ns = root.ctime_ns = now;
	ret = tx_inode(fs, &root);
	if (ret)
		return ret;
	ret = journal_commit(fs->journal, fs->tx.data, fs->tx.len);
	free(fs->tx.data);
	memset(&fs->tx, 0, sizeof(fs->tx));
	return ret;
}

static uint64_t pick_log_blocks(uint64_t total, uint64_t log_bytes,
				unsigned int bs)
{
	uint64_t bytes = log_bytes;

	if (!bytes) {
		bytes = total * bs / 64;
		if (bytes < (1ULL << 20))
			bytes = 1ULL << 20;
		if (bytes > (256ULL << 20))
			bytes = 256ULL << 20;
	}
	return DIV_ROUND_UP(bytes, bs);
}

static int mkfs_store(struct backing *store, const char *path,
		      const struct foliofs_mkfs_opts *opts);

int foliofs_mkfs(const char *path, const struct foliofs_mkfs_opts *opts)
{
	struct backing *store;
	int ret, lock_fd;

	enter();
	errmsg[0] = '\0';
	/* A mounted volume holds the image's lock (foliofs_mount), and a
	 * mounted block device refuses O_EXCL: never format under a mount,
	 * force or not. The lock is held until the format is done. */
	lock_fd = open(path, O_RDWR | O_CLOEXEC);
	if (lock_fd >= 0) {
		struct stat st;

		if (flock(lock_fd, LOCK_EX | LOCK_NB)) {
			close(lock_fd);
			fs_set_errmsg("%s is mounted; unmount it first", path);
			return -EBUSY;
		}
		if (!fstat(lock_fd, &st) && S_ISBLK(st.st_mode)) {
			int ex = open(path, O_RDWR | O_EXCL | O_CLOEXEC);

			if (ex < 0) {
				ret = -errno;
				close(lock_fd);
				fs_set_errmsg("%s is in use (mounted?): %s", path,
					      strerror(-ret));
				return ret == -EBUSY ? -EBUSY : ret;
			}
			close(ex);
		}
	}
	ret = backing_open(path, BACKING_CREATE, &store);
	if (ret == -EINVAL)
		ret = backing_open(path, BACKING_CREATE | BACKING_NO_DIRECT,
				   &store);
	if (ret) {
		fs_set_errmsg("cannot open %s: %s", path, strerror(-ret));
		if (lock_fd >= 0)
			close(lock_fd);
		return ret;
	}
	ret = mkfs_store(store, path, opts);
	backing_close(store);
	if (lock_fd >= 0)
		close(lock_fd);
	return ret;
}

int fs_mkfs_backing(struct backing *store, const struct foliofs_mkfs_opts *opts)
{
	enter();
	errmsg[0] = '\0';
	return mkfs_store(store, "(store)", opts);
}

static int mkfs_store(struct backing *store, const char *path,
		      const struct foliofs_mkfs_opts *opts)
{
	struct foliofs_mkfs_opts o = opts ? *opts : (struct foliofs_mkfs_opts){ 0 };
	struct foliofs fs = { 0 };
	struct super old;
	uint64_t size, total, log_start;
	unsigned int bs;
	int ret;

	fs.store = store;
	bs = o.block_size ? o.block_size : 4096;
	if (bs != 4096) {
		fs_set_errmsg("block size %u is not supported (only 4096)", bs);
		return -EINVAL;
	}
	if (o.label && strlen(o.label) > FOLIOFS_SB_LABEL_LEN) {
		fs_set_errmsg("label longer than %d bytes", FOLIOFS_SB_LABEL_LEN);
		return -EINVAL;
	}
	if (!o.force && !super_read(fs.store, &old, NULL, 0)) {
		fs_set_errmsg("%s already holds a foliofs volume", path);
		ret = -EEXIST;
		goto out;
	}
	ret = backing_size(fs.store, &size);
	if (ret)
		goto out;
	if (o.size) {
		ret = backing_grow(fs.store, o.size);
		if (ret) {
			fs_set_errmsg("cannot grow %s to %llu bytes: %s", path,
				      (unsigned long long)o.size,
				      strerror(-ret));
			goto out;
		}
		size = o.size;
	}
	total = size / bs;
	if (size < (1ULL << 20)) {
		fs_set_errmsg("%s: %llu bytes is too small (1 MiB at least)",
			      path, (unsigned long long)size);
		ret = -EINVAL;
		goto out;
	}
	fs_progress("format", 0, 3);
	ret = super_init(&fs.sb, bs, total, o.label);
	if (ret)
		goto out;
	log_start = DIV_ROUND_UP(FOLIOFS_SB_AREA, bs);
	fs.sb.log_start = log_start;
	fs.sb.log_blocks = pick_log_blocks(total, o.log_bytes, bs);
	if (fs.sb.log_blocks > total / 2)
		fs.sb.log_blocks = total / 2;
	ret = journal_open(fs.store, &fs.sb, &fs.journal);
	if (ret)
		goto out;
	/* Both copies valid from the start. */
	ret = super_write(fs.store, &fs.sb);
	if (!ret)
		ret = super_write(fs.store, &fs.sb);
	if (!ret)
		ret = write_root(&fs, getuid(), getgid());
	if (!ret)
		ret = journal_set_state(fs.journal, FOLIOFS_STATE_CLEAN);
	if (!ret)
		fs_progress("format", 3, 3);
	if (ret)
		fs_set_errmsg("writing the new volume to %s failed: %s", path,
			      strerror(-ret));
	journal_close(fs.journal);
out:
	return ret;
}

/* ---- mount ---------------------------------------------------------------- */

static int rebuild_space(struct foliofs *fs, char *msg, size_t msg_len)
{
	unsigned long idx;
	struct fs_inode *inode;
	uint64_t meta = fs->sb.log_start + fs->sb.log_blocks, done = 0;
	int ret;

	fs->space = space_create(fs->sb.total_blocks, fs->block_size, 0, meta);
	if (IS_ERR(fs->space)) {
		ret = (int)PTR_ERR(fs->space);
		fs->space = NULL;
		return ret;
	}
	if (fs->sb.ckpt_blocks) {
		ret = space_mark_used(fs->space, fs->sb.ckpt_start,
				      fs->sb.ckpt_blocks);
		if (ret) {
			snprintf(msg, msg_len,
				 "checkpoint at block %llu overlaps the log",
				 (unsigned long long)fs->sb.ckpt_start);
			return -EUCLEAN;
		}
	}
	xa_for_each(&fs->inodes, idx, inode) {
		unsigned long lb = 0;
		uint64_t rl = 0, rp = 0, rn = 0;
		void *e;

		fs_progress("extents", ++done, fs->nr_inodes);

		for (e = xa_find(&inode->extents, &lb, ULONG_MAX, XA_PRESENT);;
		     e = xa_find_after(&inode->extents, &lb, ULONG_MAX,
				       XA_PRESENT)) {
			if (e && rn && lb == rl + rn && ext_pblk(e) == rp + rn) {
				rn++;
				continue;
			}
			if (rn) {
				ret = space_mark_used(fs->space, rp, rn);
				if (ret) {
					snprintf(msg, msg_len,
						 "inode %llu: blocks %llu..%llu are %s",
						 (unsigned long long)inode->ino,
						 (unsigned long long)rp,
						 (unsigned long long)(rp + rn - 1),
						 ret == -EEXIST ?
						 "used twice" :
						 "outside the data area");
					return -EUCLEAN;
				}
			}
			if (!e)
				break;
			rl = lb;
			rp = ext_pblk(e);
			rn = 1;
		}
	}
	return 0;
}

/* Count links from directories, check entries and types. */
static int check_tree(struct foliofs *fs, char *msg, size_t msg_len)
{
	struct fs_inode *root = xa_load(&fs->inodes, FOLIOFS_ROOT_INO);
	struct fs_inode **queue;
	unsigned long idx;
	struct fs_inode *inode;
	size_t head = 0, tail = 0;
	int ret = 0;

	if (!root || !S_ISDIR(root->type)) {
		snprintf(msg, msg_len, "the root directory is missing");
		return -EUCLEAN;
	}
	/*
	 * Walk the tree from the root: every entry names an inode of its
	 * type, every directory is named exactly once, and every linked
	 * directory is reached, so the tree has no cycle. This also sets
	 * each directory's parent.
	 */
	queue = malloc((fs->nr_inodes + 1) * sizeof(*queue));
	if (!queue)
		return -ENOMEM;
	xa_for_each(&fs->inodes, idx, inode)
		inode->parent = 0;
	root->parent = FOLIOFS_ROOT_INO;
	queue[tail++] = root;
	while (head < tail && !ret) {
		struct fs_inode *dir = queue[head++];

		fs_progress("tree", head, tail);
		struct fs_dirent *de;
		unsigned long cookie;

		xa_for_each(&dir->dir->by_cookie, cookie, de) {
			struct fs_inode *c = xa_load(&fs->inodes, de->ino);

			if (!c) {
				snprintf(msg, msg_len, "entry \"%s\" in directory "
					 "%llu names missing inode %llu",
					 de->name, (unsigned long long)dir->ino,
					 (unsigned long long)de->ino);
				ret = -EUCLEAN;
				break;
			}
			if (de->type != mode_to_dt(c->type)) {
				snprintf(msg, msg_len, "entry \"%s\" in directory "
					 "%llu has the wrong type for inode %llu",
					 de->name, (unsigned long long)dir->ino,
					 (unsigned long long)c->ino);
				ret = -EUCLEAN;
				break;
			}
			if (!S_ISDIR(c->type))
				continue;
			if (c->parent || c == root || tail > fs->nr_inodes) {
				snprintf(msg, msg_len, "directory %llu is named "
					 "more than once (a loop in the tree)",
					 (unsigned long long)c->ino);
				ret = -EUCLEAN;
				break;
			}
			c->parent = dir->ino;
			queue[tail++] = c;
		}
	}
	if (!ret) {
		xa_for_each(&fs->inodes, idx, inode) {
			if (S_ISDIR(inode->type) && inode->nlink &&
			    !inode->parent) {
				snprintf(msg, msg_len, "directory %llu cannot be "
					 "reached from the root",
					 (unsigned long long)inode->ino);
				ret = -EUCLEAN;
				break;
			}
		}
	}
	free(queue);
	return ret;
}

/* Files unlinked while open when the volume went down: delete them now. */
static int drop_orphans(struct foliofs *fs)
{
	unsigned long idx;
	struct fs_inode *inode;
	int n = 0;

	xa_for_each(&fs->inodes, idx, inode) {
		if (inode->nlink || idx == FOLIOFS_ROOT_INO)
			continue;
		__atomic_store_n(&inode->dead, true, __ATOMIC_RELAXED);
		xa_erase(&fs->inodes, idx);
		fs->nr_inodes--;
		fs_evict_inode(fs, inode);
		n++;
	}
	return n;
}

static void want_writeback(struct fs_cache *cache, unsigned long bytes)
{
	struct foliofs *fs = cache->owner;

	pthread_mutex_lock(&fs->dirty_lock);
	__atomic_store_n(&fs->kick, true, __ATOMIC_RELAXED);
	pthread_cond_signal(&fs->flusher_wake);
	pthread_mutex_unlock(&fs->dirty_lock);
}

static void fs_free(struct foliofs *fs)
{
	unsigned long idx;
	struct fs_inode *inode;

	xa_for_each(&fs->inodes, idx, inode)
		fs_inode_free(inode);
	xa_destroy(&fs->inodes);
	if (fs->store)
		fs_bounce_pool_free(fs);
	if (fs->journal)
		journal_close(fs->journal);
	if (fs->space) {
		if (fs->ckpt_reserve)
			space_unreserve(fs->space, fs->ckpt_reserve);
		space_destroy(fs->space);
	}
	cache_destroy(&fs->cache);
	if (fs->store)
		backing_close(fs->store);
	if (fs->lock_fd >= 0)
		close(fs->lock_fd);
	free(fs->tx.data);
	free(fs->failed_ckpts.runs);
	free(fs);
}

static void default_opts(struct foliofs_mount_opts *o)
{
	if (!o->cache_bytes)
		o->cache_bytes = cache_default_limit();
	if (!o->dirty_bytes)
		o->dirty_bytes = o->cache_bytes / 5;
	/* Streaming writes should reach the disk while the writer is still
	 * copying, not all at its fsync: start early. */
	if (!o->dirty_background_bytes)
		o->dirty_background_bytes = o->dirty_bytes / 2 < (32ULL << 20) ?
					    o->dirty_bytes / 2 : 32ULL << 20;
	if (!o->dirty_expire_ms)
		o->dirty_expire_ms = 3000;
	if (!o->commit_ms)
		o->commit_ms = 5000;
	if (!o->flusher_threads)
		o->flusher_threads = 1;
}

static int mount_fail(struct foliofs *fs, int ret, const char *image,
		      const char *what)
{
	if (!errmsg[0])
		fs_set_errmsg("%s: %s: %s", image, what, strerror(-ret));
	fs_free(fs);
	return ret;
}

static struct foliofs *fs_alloc(const struct foliofs_mount_opts *opts)
{
	struct foliofs *fs = calloc(1, sizeof(*fs));

	if (!fs)
		return NULL;
	fs->lock_fd = -1;
	if (opts)
		fs->opts = *opts;
	default_opts(&fs->opts);
	fs->readonly = fs->opts.readonly;
	cache_init(&fs->cache, fs->opts.cache_bytes);
	fs->cache.owner = fs;
	fs->cache.want_writeback = want_writeback;
	xa_init(&fs->inodes);
	pthread_rwlock_init(&fs->ns_lock, NULL);
	pthread_mutex_init(&fs->tx_lock, NULL);
	pthread_mutex_init(&fs->commit_lock, NULL);
	pthread_mutex_init(&fs->dirty_lock, NULL);
	pthread_cond_init(&fs->flusher_wake, NULL);
	pthread_cond_init(&fs->throttle_wait, NULL);
	CDS_INIT_LIST_HEAD(&fs->dirty_list);
	fs->next_ino = FOLIOFS_ROOT_INO + 1;
	fs->next_gen = 1;
	return fs;
}

static int mount_store(struct foliofs *fs, const char *image,
		       struct foliofs **out);

int foliofs_mount(const char *image, const struct foliofs_mount_opts *opts,
		  struct foliofs **out)
{
	return fs_mount_path(image, opts, false, out);
}

int fs_mount_path(const char *image, const struct foliofs_mount_opts *opts,
		  bool accept_log_loss, struct foliofs **out)
{
	struct foliofs *fs;
	unsigned int flags;
	int ret;

	enter();
	errmsg[0] = '\0';
	fs = fs_alloc(opts);
	if (!fs)
		return -ENOMEM;
	fs->opts_accept_log_loss = accept_log_loss;
	fs->lock_fd = open(image, fs->readonly ? O_RDONLY : O_RDWR);
	if (fs->lock_fd < 0)
		return mount_fail(fs, -errno, image, "cannot open");
	if (flock(fs->lock_fd, (fs->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB)) {
		ret = -errno;
		if (ret == -EWOULDBLOCK)
			fs_set_errmsg("%s is in use by another foliofs mount",
				      image);
		return mount_fail(fs, ret, image, "cannot lock");
	}
	flags = fs->readonly ? BACKING_RDONLY : 0;
	if (fs->opts.no_direct)
		flags |= BACKING_NO_DIRECT;
	ret = backing_open(image, flags, &fs->store);
	if (ret == -EINVAL && !(flags & BACKING_NO_DIRECT)) {
		fs_set_errmsg("%s: the filesystem under the image does not do "
			      "O_DIRECT; mount with no_direct", image);
	}
	if (ret)
		return mount_fail(fs, ret, image, "cannot open");
	return mount_store(fs, image, out);
}

int fs_mount_backing(struct backing *store, const char *name,
		     const struct foliofs_mount_opts *opts, struct foliofs **out)
{
	struct foliofs *fs;

	enter();
	errmsg[0] = '\0';
	fs = fs_alloc(opts);
	if (!fs) {
		backing_close(store);
		return -ENOMEM;
	}
	fs->store = store;
	return mount_store(fs, name, out);
}

static int mount_store(struct foliofs *fs, const char *image,
		       struct foliofs **out)
{
	char msg[512] = "";
	int ret;

	ret = super_read(fs->store, &fs->sb, msg, sizeof(msg));
	if (ret) {
		if (ret == -EUCLEAN)
			fs_set_errmsg("%s is not a foliofs volume, or both "
				      "superblocks are damaged (%s)", image, msg);
		else if (ret == -EOPNOTSUPP)
			fs_set_errmsg("%s: %s", image, msg);
		return mount_fail(fs, ret, image, "cannot read the superblock");
	}
	if (super_ro_compat_unknown(&fs->sb) && !fs->readonly) {
		fs_set_errmsg("%s has features this version can only read; "
			      "mount it read-only", image);
		return mount_fail(fs, -EOPNOTSUPP, image, "");
	}
	if (fs->sb.block_size != 4096) {
		fs_set_errmsg("%s: block size %u is not supported", image,
			      fs->sb.block_size);
		return mount_fail(fs, -EOPNOTSUPP, image, "");
	}
	fs->block_size = fs->sb.block_size;
	fs->blkbits = 12;
	ret = journal_open(fs->store, &fs->sb, &fs->journal);
	if (ret)
		return mount_fail(fs, ret, image, "cannot open the log");
	ret = fs_replay(fs, msg, sizeof(msg));
	if (!ret) {
		uint64_t at, first, lost = journal_damage(fs->journal, &at,
							  &first);

		if (lost && !fs->opts_accept_log_loss) {
			snprintf(msg, sizeof(msg), "the metadata log is damaged "
				 "at block sequence %llu, and %llu blocks of "
				 "later transactions (from %llu) would be lost",
				 (unsigned long long)at,
				 (unsigned long long)lost,
				 (unsigned long long)first);
			ret = -EUCLEAN;
		}
	}
	if (!ret)
		ret = check_tree(fs, msg, sizeof(msg));
	if (!ret)
		ret = rebuild_space(fs, msg, sizeof(msg));
	if (ret) {
		if (ret == -EUCLEAN)
			fs_set_errmsg("%s: the metadata is corrupt: %s; run "
				      "fsck.foliofs", image, msg);
		return mount_fail(fs, ret, image, "recovery failed");
	}
	if (!fs->readonly) {
		drop_orphans(fs);
		if (!space_reserve(fs->space, 16))
			fs->ckpt_reserve = 16;
		ret = journal_set_state(fs->journal, FOLIOFS_STATE_DIRTY);
		if (!ret)
			ret = fs_commit(fs, UINT64_MAX);
		if (ret)
			return mount_fail(fs, ret, image,
					  "cannot write to the volume");
		ret = fs_bounce_pool_init(fs);
		if (ret)
			return mount_fail(fs, ret, image, "out of memory");
		ret = fs_flusher_start(fs);
		if (ret)
			return mount_fail(fs, ret, image, "cannot start writeback");
	}
	__atomic_store_n(&fs->last_commit_ns, fs_now_ns(), __ATOMIC_RELAXED);
	*out = fs;
	return 0;
}

int foliofs_unmount(struct foliofs *fs)
{
	int ret = 0, err;

	enter();
	if (!fs->readonly) {
		fs_flusher_stop(fs);
		ret = fs_writeback_all(fs, true);
		err = fs_commit(fs, UINT64_MAX);
		if (!ret)
			ret = err;
		err = fs_checkpoint(fs);
		if (!ret)
			ret = err;
		if (!ret)
			ret = journal_set_state(fs->journal, FOLIOFS_STATE_CLEAN);
		if (!ret && fs->ckpt_reserve) {
			space_unreserve(fs->space, fs->ckpt_reserve);
			fs->ckpt_reserve = 0;
		}
		if (!ret) {
			struct space_stats st;

			space_stats(fs->space, &st);
			/* Law 7: nothing may stay reserved at a clean unmount. */
			if (WARN_ON(st.reserved))
				ret = -EUCLEAN;
		}
	}
	fs_free(fs);
	return ret;
}

int foliofs_syncfs(struct foliofs *fs)
{
	int ret, err;

	enter();
	if (fs->readonly)
		return 0;
	ret = fs_writeback_all(fs, true);
	err = fs_commit(fs, UINT64_MAX);
	return ret ? ret : err;
}

int foliofs_statfs(struct foliofs *fs, struct foliofs_statfs *st)
{
	struct space_stats ss;

	enter();
	memset(st, 0, sizeof(*st));
	space_stats(fs->space, &ss);
	st->block_size = ss.block_size;
	st->blocks = ss.usable;
	/* As ext4 does, delalloc reservations count as used: df shows what
	 * written data will take, before writeback allocates it. */
	st->bavail = ss.avail > 0 ? (uint64_t)ss.avail : 0;
	st->bfree = st->bavail;
	pthread_rwlock_rdlock(&fs->ns_lock);
	st->files = fs->nr_inodes;
	pthread_rwlock_unlock(&fs->ns_lock);
	st->ffree = (1ULL << 32) - st->files;
	st->name_max = FOLIOFS_NAME_MAX;
	return 0;
}

/* ---- Attributes ----------------------------------------------------------------- */

int foliofs_getattr(struct foliofs *fs, foliofs_ino_t ino,
		    struct foliofs_attr *attr)
{
	struct fs_inode *inode;
	int ret = 0;

	enter();
	pthread_rwlock_rdlock(&fs->ns_lock);
	inode = fs_iget_locked(fs, ino);
	if (inode)
		fs_attr_fill(inode, attr);
	else
		ret = -ENOENT;
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

/* Hold an inode across a call that may sleep: a lookup count. */
static struct fs_inode *iget_ref(struct foliofs *fs, uint64_t ino)
{
	struct fs_inode *inode;

	pthread_rwlock_rdlock(&fs->ns_lock);
	inode = fs_iget_locked(fs, ino);
	if (inode)
		__atomic_add_fetch(&inode->nlookup, 1, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&fs->ns_lock);
	return inode;
}

/* Truncate to @size with the file's locks held by the caller (rwsem). */
static int do_truncate(struct foliofs *fs, struct fs_inode *inode,
		       uint64_t size)
{
	uint64_t old = (uint64_t)filemap_size(&inode->map);
	uint64_t gen;
	int ret;

	if (size > (1ULL << 52))
		return -EFBIG;
	if (size > old) {
		ret = filemap_truncate(&inode->map, (long long)size);
		if (ret)
			return ret;
		/* Growing exposes only zeroes: the log may learn it now. */
		pthread_rwlock_rdlock(&fs->ns_lock);
		pthread_mutex_lock(&fs->tx_lock);
		pthread_mutex_lock(&inode->attr_lock);
		if (inode->disksize == old)
			inode->disksize = size;
		inode->mtime_ns = inode->ctime_ns = fs_now_ns();
		ret = tx_inode(fs, inode);
		pthread_mutex_unlock(&inode->attr_lock);
		pthread_mutex_unlock(&fs->tx_lock);
		pthread_rwlock_unlock(&fs->ns_lock);
		return ret;
	}
	/*
	 * The block that keeps the new end may hold old bytes past it on
	 * disk; a later extension must read zeroes there, so zero them
	 * through the cache first (dirty, so they reach the disk too).
	 */
	if (size & (fs->block_size - 1)) {
		static const char zeroes[65536];
		uint64_t bend = (size | (fs->block_size - 1)) + 1;
		struct fs_copy_src src;
		ssize_t n;

		if (bend > old)
			bend = old;
		fs_copy_src_init(&src, zeroes);
		n = filemap_write(&inode->map, (long long)size, &src,
				  (size_t)(bend - size));
		if (n < 0)
			return (int)n;
		fs_note_dirty(inode);
	}
	pthread_mutex_lock(&inode->wb_lock);
	ret = filemap_truncate(&inode->map, (long long)size);
	if (!ret) {
		pthread_rwlock_rdlock(&fs->ns_lock);
		pthread_mutex_lock(&fs->tx_lock);
		pthread_mutex_lock(&inode->attr_lock);
		if (inode->disksize > size)
			inode->disksize = size;
		inode->mtime_ns = inode->ctime_ns = fs_now_ns();
		ret = tx_inode(fs, inode);
		gen = fs->tx_gen;
		(void)gen;
		pthread_mutex_unlock(&inode->attr_lock);
		pthread_mutex_unlock(&fs->tx_lock);
		pthread_rwlock_unlock(&fs->ns_lock);
	}
	pthread_mutex_unlock(&inode->wb_lock);
	return ret;
}

int foliofs_setattr(struct foliofs *fs, foliofs_ino_t ino,
		    const struct foliofs_attr *in, unsigned int valid,
		    struct foliofs_attr *out)
{
	struct fs_inode *inode;
	int64_t now = fs_now_ns();
	int ret = 0;

	enter();
	if (fs->readonly)
		return -EROFS;
	inode = iget_ref(fs, ino);
	if (!inode)
		return -ENOENT;
	if (valid & FOLIOFS_SET_SIZE) {
		if (S_ISDIR(inode->type))
			ret = -EISDIR;
		else if (!S_ISREG(inode->type))
			ret = -EINVAL;
		else {
			pthread_rwlock_wrlock(&inode->rwsem);
			ret = do_truncate(fs, inode, in->size);
			pthread_rwlock_unlock(&inode->rwsem);
		}
	}
	if (!ret && (valid & ~FOLIOFS_SET_SIZE)) {
		pthread_rwlock_rdlock(&fs->ns_lock);
		pthread_mutex_lock(&fs->tx_lock);
		pthread_mutex_lock(&inode->attr_lock);
		if (valid & FOLIOFS_SET_MODE)
			inode->mode = (inode->mode & S_IFMT) | (in->mode & 07777);
		if (valid & (FOLIOFS_SET_UID | FOLIOFS_SET_GID)) {
			if (valid & FOLIOFS_SET_UID)
				inode->uid = in->uid;
			if (valid & FOLIOFS_SET_GID)
				inode->gid = in->gid;
			/* chown(2) clears set-id bits on files. */
			if (!S_ISDIR(inode->type) && !(valid & FOLIOFS_SET_MODE))
				inode->mode &= ~(S_ISUID | S_ISGID);
		}
		if (valid & FOLIOFS_SET_ATIME_NOW)
			inode->atime_ns = now;
		else if (valid & FOLIOFS_SET_ATIME)
			inode->atime_ns = ts_to_ns(in->atime);
		if (valid & FOLIOFS_SET_MTIME_NOW)
			inode->mtime_ns = now;
		else if (valid & FOLIOFS_SET_MTIME)
			inode->mtime_ns = ts_to_ns(in->mtime);
		if (valid & FOLIOFS_SET_CTIME)
			inode->ctime_ns = ts_to_ns(in->ctime);
		else
			inode->ctime_ns = now;
		ret = tx_inode(fs, inode);
		pthread_mutex_unlock(&inode->attr_lock);
		pthread_mutex_unlock(&fs->tx_lock);
		pthread_rwlock_unlock(&fs->ns_lock);
	}
	if (!ret && out)
		fs_attr_fill(inode, out);
	fs_inode_put(fs, inode, 1, false);
	return ret;
}

/* ---- Namespace -------------------------------------------------------------- */

static int check_name(const char *name, size_t *len)
{
	*len = strlen(name);
	if (*len > FOLIOFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (!*len || strchr(name, '/'))
		return -EINVAL;
	return 0;
}

static bool is_dot(const char *name)
{
	return !strcmp(name, ".") || !strcmp(name, "..");
}

/* Find @name in @parent (ns_lock held). "." and ".." resolve too. */
static int lookup_locked(struct foliofs *fs, struct fs_inode *parent,
			 const char *name, struct fs_inode **out)
{
	struct fs_dirent *de;
	size_t len;
	int ret;

	if (!S_ISDIR(parent->type))
		return -ENOTDIR;
	if (!strcmp(name, ".")) {
		*out = parent;
		return 0;
	}
	ret = check_name(name, &len);
	if (ret)
		return ret;
	de = fs_dir_find(parent->dir, name, len);
	if (!de)
		return -ENOENT;
	*out = fs_iget_locked(fs, de->ino);
	return *out ? 0 : -EUCLEAN;
}

int foliofs_lookup(struct foliofs *fs, foliofs_ino_t parent, const char *name,
		   struct foliofs_attr *attr)
{
	struct fs_inode *dir, *inode;
	int ret;

	enter();
	if (!strcmp(name, ".."))
		return -EINVAL;		/* the kernel resolves ".." itself */
	pthread_rwlock_rdlock(&fs->ns_lock);
	dir = fs_iget_locked(fs, parent);
	ret = dir ? lookup_locked(fs, dir, name, &inode) : -ENOENT;
	if (!ret) {
		__atomic_add_fetch(&inode->nlookup, 1, __ATOMIC_RELAXED);
		fs_attr_fill(inode, attr);
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

void foliofs_forget(struct foliofs *fs, foliofs_ino_t ino, uint64_t nlookup)
{
	struct fs_inode *inode;

	enter();
	pthread_rwlock_rdlock(&fs->ns_lock);
	inode = fs_iget_locked(fs, ino);
	pthread_rwlock_unlock(&fs->ns_lock);
	/* Our lookup count keeps it in the table until this put. */
	if (inode)
		fs_inode_put(fs, inode, nlookup, false);
}

/*
 * Make a new inode named @name in @parent. ns_lock is taken here. On
 * success the inode has one lookup count if @lookup, and its attributes are
 * in @attr.
 */
static int make_node(struct foliofs *fs, foliofs_ino_t parent, const char *name,
		     uint32_t mode, uint64_t rdev, const char *target,
		     const struct foliofs_cred *cred, bool lookup,
		     struct foliofs_attr *attr, struct fs_inode **out)
{
	struct fs_inode *dir, *inode;
	int64_t now = fs_now_ns();
	size_t len;
	int ret;

	if (fs->readonly)
		return -EROFS;
	if (is_dot(name))
		return -EEXIST;
	ret = check_name(name, &len);
	if (ret)
		return ret;
	pthread_rwlock_wrlock(&fs->ns_lock);
	dir = fs_iget_locked(fs, parent);
	if (!dir) {
		ret = -ENOENT;
		goto out;
	}
	if (!S_ISDIR(dir->type)) {
		ret = -ENOTDIR;
		goto out;
	}
	if (!dir->nlink) {
		ret = -ENOENT;		/* a removed directory */
		goto out;
	}
	if (fs_dir_find(dir->dir, name, len)) {
		ret = -EEXIST;
		goto out;
	}
	if (S_ISDIR(mode) && dir->nlink >= 65000) {
		ret = -EMLINK;
		goto out;
	}
	inode = fs_inode_new(fs, fs->next_ino, mode);
	if (!inode) {
		ret = -ENOMEM;
		goto out;
	}
	inode->generation = fs->next_gen;
	inode->nlink = S_ISDIR(mode) ? 2 : 1;
	inode->parent = S_ISDIR(mode) ? dir->ino : 0;
	inode->uid = cred ? cred->uid : geteuid();
	inode->gid = cred ? cred->gid : getegid();
	/* BSD group semantics with setgid directories, as Linux does. */
	if (__atomic_load_n(&dir->mode, __ATOMIC_RELAXED) & S_ISGID) {
		inode->gid = dir->gid;
		if (S_ISDIR(mode))
			inode->mode |= S_ISGID;
	}
	inode->rdev = rdev;
	inode->atime_ns = inode->mtime_ns = inode->ctime_ns = now;
	if (target) {
		inode->symlink = strdup(target);
		if (!inode->symlink) {
			fs_inode_free(inode);
			ret = -ENOMEM;
			goto out;
		}
	}
	if (xa_is_err(xa_store(&fs->inodes, inode->ino, inode))) {
		fs_inode_free(inode);
		ret = -ENOMEM;
		goto out;
	}
	ret = fs_dir_add(dir, name, len, inode->ino, mode_to_dt(mode), 0);
	if (ret) {
		xa_erase(&fs->inodes, inode->ino);
		fs_inode_free(inode);
		goto out;
	}
	fs->next_ino++;
	fs->next_gen++;
	fs->nr_inodes++;
	pthread_mutex_lock(&fs->tx_lock);
	pthread_mutex_lock(&dir->attr_lock);
	if (S_ISDIR(mode))
		dir->nlink++;
	dir->mtime_ns = dir->ctime_ns = now;
	ret = tx_inode(fs, dir);
	pthread_mutex_unlock(&dir->attr_lock);
	if (!ret)
		ret = tx_inode_locked(fs, inode);
	if (!ret && target)
		ret = tx_symlink(fs, inode->ino, target);
	if (!ret)
		ret = tx_dirent_add(fs, dir->ino, name, len, inode->ino,
				    mode_to_dt(mode));
	pthread_mutex_unlock(&fs->tx_lock);
	/* An append can only fail for memory; the tree already changed, so
	 * report it but keep the (in-memory) result consistent. */
	if (lookup)
		inode->nlookup++;
	if (attr)
		fs_attr_fill(inode, attr);
	if (out)
		*out = inode;
out:
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int foliofs_mknod(struct foliofs *fs, foliofs_ino_t parent, const char *name,
		  uint32_t mode, uint64_t rdev, const struct foliofs_cred *cred,
		  struct foliofs_attr *attr)
{
	enter();
	if (S_ISDIR(mode) || S_ISLNK(mode))
		return -EINVAL;
	if (!(mode & S_IFMT))
		mode |= S_IFREG;
	if (!S_ISREG(mode) && !S_ISCHR(mode) && !S_ISBLK(mode) &&
	    !S_ISFIFO(mode) && !S_ISSOCK(mode))
		return -EINVAL;
	return make_node(fs, parent, name, mode & (S_IFMT | 07777), rdev, NULL,
			 cred, true, attr, NULL);
}

int foliofs_mkdir(struct foliofs *fs, foliofs_ino_t parent, const char *name,
		  uint32_t mode, const struct foliofs_cred *cred,
		  struct foliofs_attr *attr)
{
	enter();
	return make_node(fs, parent, name, S_IFDIR | (mode & 07777), 0, NULL,
			 cred, true, attr, NULL);
}

int foliofs_symlink(struct foliofs *fs, foliofs_ino_t parent, const char *name,
		    const char *target, const struct foliofs_cred *cred,
		    struct foliofs_attr *attr)
{
	size_t tl = strlen(target);

	enter();
	if (!tl)
		return -ENOENT;
	if (tl > FOLIOFS_SYMLINK_MAX)
		return -ENAMETOOLONG;
	return make_node(fs, parent, name, S_IFLNK | 0777, 0, target, cred,
			 true, attr, NULL);
}

ssize_t foliofs_readlink(struct foliofs *fs, foliofs_ino_t ino, char *buf,
			 size_t size)
{
	struct fs_inode *inode;
	ssize_t ret;

	enter();
	pthread_rwlock_rdlock(&fs->ns_lock);
	inode = fs_iget_locked(fs, ino);
	if (!inode) {
		ret = -ENOENT;
	} else if (!S_ISLNK(inode->type) || !inode->symlink) {
		ret = -EINVAL;
	} else {
		size_t len = strlen(inode->symlink);

		memcpy(buf, inode->symlink, len < size ? len : size);
		ret = (ssize_t)len;
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int foliofs_link(struct foliofs *fs, foliofs_ino_t ino, foliofs_ino_t newparent,
		 const char *newname, struct foliofs_attr *attr)
{
	struct fs_inode *dir, *inode;
	int64_t now = fs_now_ns();
	size_t len;
	int ret;

	enter();
	if (fs->readonly)
		return -EROFS;
	if (is_dot(newname))
		return -EEXIST;
	ret = check_name(newname, &len);
	if (ret)
		return ret;
	pthread_rwlock_wrlock(&fs->ns_lock);
	dir = fs_iget_locked(fs, newparent);
	inode = fs_iget_locked(fs, ino);
	if (!dir || !inode) {
		ret = -ENOENT;
	} else if (!S_ISDIR(dir->type)) {
		ret = -ENOTDIR;
	} else if (S_ISDIR(inode->type)) {
		ret = -EPERM;
	} else if (!inode->nlink || !dir->nlink) {
		ret = -ENOENT;
	} else if (inode->nlink >= 65000) {
		ret = -EMLINK;
	} else {
		ret = fs_dir_add(dir, newname, len, inode->ino,
				 mode_to_dt(inode->type), 0);
	}
	if (!ret) {
		pthread_mutex_lock(&fs->tx_lock);
		pthread_mutex_lock(&inode->attr_lock);
		inode->nlink++;
		inode->ctime_ns = now;
		ret = tx_inode(fs, inode);
		pthread_mutex_unlock(&inode->attr_lock);
		pthread_mutex_lock(&dir->attr_lock);
		dir->mtime_ns = dir->ctime_ns = now;
		if (!ret)
			ret = tx_inode(fs, dir);
		pthread_mutex_unlock(&dir->attr_lock);
		if (!ret)
			ret = tx_dirent_add(fs, dir->ino, newname, len,
					    inode->ino, mode_to_dt(inode->type));
		pthread_mutex_unlock(&fs->tx_lock);
		inode->nlookup++;
		if (attr)
			fs_attr_fill(inode, attr);
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

/*
 * Take entry @name out of @dir (ns_lock exclusive, tx_lock held): drops
 * the target's link (two for a directory, and the parent's ".." link).
 * Returns the target if it must be evicted.
 */
static struct fs_inode *drop_entry(struct foliofs *fs, struct fs_inode *dir,
				   const char *name, size_t len,
				   struct fs_inode *victim, int64_t now)
{
	fs_dir_del(dir, name, len);
	tx_dirent_del(fs, dir->ino, name, len);
	pthread_mutex_lock(&victim->attr_lock);
	if (S_ISDIR(victim->type)) {
		victim->nlink = 0;
	} else if (victim->nlink) {
		victim->nlink--;
	}
	victim->ctime_ns = now;
	tx_inode(fs, victim);
	pthread_mutex_unlock(&victim->attr_lock);
	pthread_mutex_lock(&dir->attr_lock);
	if (S_ISDIR(victim->type))
		dir->nlink--;
	dir->mtime_ns = dir->ctime_ns = now;
	tx_inode(fs, dir);
	pthread_mutex_unlock(&dir->attr_lock);
	return inode_unlinked_locked(fs, victim) ? victim : NULL;
}

static int remove_entry(struct foliofs *fs, foliofs_ino_t parent,
			const char *name, bool rmdir)
{
	struct fs_inode *dir, *victim = NULL, *evict = NULL;
	size_t len;
	int ret;

	if (fs->readonly)
		return -EROFS;
	if (!strcmp(name, "."))
		return rmdir ? -EINVAL : -EISDIR;
	if (!strcmp(name, ".."))
		return rmdir ? -ENOTEMPTY : -EISDIR;
	ret = check_name(name, &len);
	if (ret)
		return ret;
	pthread_rwlock_wrlock(&fs->ns_lock);
	dir = fs_iget_locked(fs, parent);
	if (!dir) {
		ret = -ENOENT;
		goto out;
	}
	ret = lookup_locked(fs, dir, name, &victim);
	if (ret)
		goto out;
	if (rmdir && !S_ISDIR(victim->type)) {
		ret = -ENOTDIR;
		goto out;
	}
	if (!rmdir && S_ISDIR(victim->type)) {
		ret = -EISDIR;
		goto out;
	}
	if (rmdir && victim->dir->nr) {
		ret = -ENOTEMPTY;
		goto out;
	}
	pthread_mutex_lock(&fs->tx_lock);
	evict = drop_entry(fs, dir, name, len, victim, fs_now_ns());
	pthread_mutex_unlock(&fs->tx_lock);
out:
	pthread_rwlock_unlock(&fs->ns_lock);
	if (evict)
		fs_evict_inode(fs, evict);
	return ret;
}

int foliofs_unlink(struct foliofs *fs, foliofs_ino_t parent, const char *name)
{
	enter();
	return remove_entry(fs, parent, name, false);
}

int foliofs_rmdir(struct foliofs *fs, foliofs_ino_t parent, const char *name)
{
	enter();
	return remove_entry(fs, parent, name, true);
}

/*
 * Is @anc an ancestor of (or the same as) directory @d? Walks up the parent
 * links (O(depth)); a walk longer than there are inodes means a loop,
 * which mount refuses, so it answers true (refuse the rename) then.
 * ns_lock held.
 */
static bool is_ancestor(struct foliofs *fs, struct fs_inode *anc,
			struct fs_inode *d)
{
	uint64_t steps = 0;

	while (d) {
		if (d == anc)
			return true;
		if (d->ino == FOLIOFS_ROOT_INO)
			return false;
		if (++steps > fs->nr_inodes)
			return true;
		d = fs_iget_locked(fs, d->parent);
	}
	return false;
}

static void set_dotdot(struct foliofs *fs, struct fs_inode *moved,
		       struct fs_inode *from, struct fs_inode *to)
{
	if (!S_ISDIR(moved->type) || from == to)
		return;
	moved->parent = to->ino;
	pthread_mutex_lock(&from->attr_lock);
	from->nlink--;
	tx_inode(fs, from);
	pthread_mutex_unlock(&from->attr_lock);
	pthread_mutex_lock(&to->attr_lock);
	to->nlink++;
	tx_inode(fs, to);
	pthread_mutex_unlock(&to->attr_lock);
}

int foliofs_rename(struct foliofs *fs, foliofs_ino_t parent, const char *name,
		   foliofs_ino_t newparent, const char *newname,
		   unsigned int flags)
{
	struct fs_inode *sdir, *ddir, *src, *dst = NULL, *evict = NULL;
	size_t slen, dlen;
	int64_t now = fs_now_ns();
	int ret;

	enter();
	if (fs->readonly)
		return -EROFS;
	if (flags & ~(FOLIOFS_RENAME_NOREPLACE | FOLIOFS_RENAME_EXCHANGE) ||
	    (flags & FOLIOFS_RENAME_NOREPLACE && flags & FOLIOFS_RENAME_EXCHANGE))
		return -EINVAL;
	if (is_dot(name) || is_dot(newname))
		return -EBUSY;
	ret = check_name(name, &slen);
	if (!ret)
		ret = check_name(newname, &dlen);
	if (ret)
		return ret;
	pthread_rwlock_wrlock(&fs->ns_lock);
	sdir = fs_iget_locked(fs, parent);
	ddir = fs_iget_locked(fs, newparent);
	if (!sdir || !ddir) {
		ret = -ENOENT;
		goto out;
	}
	if (!S_ISDIR(sdir->type) || !S_ISDIR(ddir->type)) {
		ret = -ENOTDIR;
		goto out;
	}
	ret = lookup_locked(fs, sdir, name, &src);
	if (ret)
		goto out;
	ret = lookup_locked(fs, ddir, newname, &dst);
	if (ret == -ENOENT) {
		dst = NULL;
		ret = 0;
		if (flags & FOLIOFS_RENAME_EXCHANGE) {
			ret = -ENOENT;
			goto out;
		}
		if (!ddir->nlink) {
			ret = -ENOENT;
			goto out;
		}
	} else if (ret) {
		goto out;
	} else if (flags & FOLIOFS_RENAME_NOREPLACE) {
		ret = -EEXIST;
		goto out;
	}
	if (src == dst)
		goto out;	/* same inode: POSIX says do nothing */
	/* A directory may not move into its own subtree. */
	if (S_ISDIR(src->type) && sdir != ddir && is_ancestor(fs, src, ddir)) {
		ret = -EINVAL;
		goto out;
	}
	if (dst && (flags & FOLIOFS_RENAME_EXCHANGE) && S_ISDIR(dst->type) &&
	    sdir != ddir && is_ancestor(fs, dst, sdir)) {
		ret = -EINVAL;
		goto out;
	}
	if (dst && !(flags & FOLIOFS_RENAME_EXCHANGE)) {
		if (S_ISDIR(src->type) && !S_ISDIR(dst->type)) {
			ret = -ENOTDIR;
			goto out;
		}
		if (!S_ISDIR(src->type) && S_ISDIR(dst->type)) {
			ret = -EISDIR;
			goto out;
		}
		if (S_ISDIR(dst->type) && dst->dir->nr) {
			ret = -ENOTEMPTY;
			goto out;
		}
	}

	/* All records of the rename go into one transaction. */
	pthread_mutex_lock(&fs->tx_lock);
	if (flags & FOLIOFS_RENAME_EXCHANGE) {
		struct fs_dirent *a = fs_dir_find(sdir->dir, name, slen);
		struct fs_dirent *b = fs_dir_find(ddir->dir, newname, dlen);

		a->ino = dst->ino;
		a->type = mode_to_dt(dst->type);
		b->ino = src->ino;
		b->type = mode_to_dt(src->type);
		tx_dirent_del(fs, sdir->ino, name, slen);
		tx_dirent_add(fs, sdir->ino, name, slen, dst->ino, a->type);
		tx_dirent_del(fs, ddir->ino, newname, dlen);
		tx_dirent_add(fs, ddir->ino, newname, dlen, src->ino, b->type);
		set_dotdot(fs, src, sdir, ddir);
		set_dotdot(fs, dst, ddir, sdir);
	} else {
		if (dst)
			evict = drop_entry(fs, ddir, newname, dlen, dst, now);
		fs_dir_del(sdir, name, slen);
		tx_dirent_del(fs, sdir->ino, name, slen);
		ret = fs_dir_add(ddir, newname, dlen, src->ino,
				 mode_to_dt(src->type), 0);
		tx_dirent_add(fs, ddir->ino, newname, dlen, src->ino,
			      mode_to_dt(src->type));
		set_dotdot(fs, src, sdir, ddir);
	}
	pthread_mutex_lock(&src->attr_lock);
	src->ctime_ns = now;
	tx_inode(fs, src);
	pthread_mutex_unlock(&src->attr_lock);
	pthread_mutex_lock(&sdir->attr_lock);
	sdir->mtime_ns = sdir->ctime_ns = now;
	tx_inode(fs, sdir);
	pthread_mutex_unlock(&sdir->attr_lock);
	if (ddir != sdir) {
		pthread_mutex_lock(&ddir->attr_lock);
		ddir->mtime_ns = ddir->ctime_ns = now;
		tx_inode(fs, ddir);
		pthread_mutex_unlock(&ddir->attr_lock);
	}
	pthread_mutex_unlock(&fs->tx_lock);
out:
	pthread_rwlock_unlock(&fs->ns_lock);
	if (evict)
		fs_evict_inode(fs, evict);
	return ret;
}

/* ---- Open files -------------------------------------------------------------- */

static int open_inode(struct foliofs *fs, struct fs_inode *inode, int flags,
		      struct foliofs_file **out)
{
	struct foliofs_file *f;
	int acc = flags & O_ACCMODE;
	int ret = 0;

	if ((flags & O_DIRECTORY) && !S_ISDIR(inode->type))
		return -ENOTDIR;
	if (S_ISDIR(inode->type) && acc != O_RDONLY)
		return -EISDIR;
	if (S_ISLNK(inode->type))
		return -ELOOP;
	if (fs->readonly && (acc != O_RDONLY || (flags & O_TRUNC)))
		return -EROFS;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fs = fs;
	f->inode = inode;
	f->flags = flags;
	f->wb_err_seen = __atomic_load_n(&inode->wb_err_seq, __ATOMIC_ACQUIRE);
	ra_init(&f->ra, 0);
	if ((flags & O_TRUNC) && S_ISREG(inode->type) && acc != O_RDONLY) {
		pthread_rwlock_wrlock(&inode->rwsem);
		if (filemap_size(&inode->map))
			ret = do_truncate(fs, inode, 0);
		pthread_rwlock_unlock(&inode->rwsem);
		if (ret) {
			free(f);
			return ret;
		}
	}
	*out = f;
	return 0;
}

int foliofs_open(struct foliofs *fs, foliofs_ino_t ino, int flags,
		 struct foliofs_file **out)
{
	struct fs_inode *inode;
	int ret;

	enter();
	pthread_rwlock_wrlock(&fs->ns_lock);
	inode = fs_iget_locked(fs, ino);
	if (inode)
		inode->nopen++;
	pthread_rwlock_unlock(&fs->ns_lock);
	if (!inode)
		return -ENOENT;
	ret = open_inode(fs, inode, flags, out);
	if (ret)
		fs_inode_put(fs, inode, 0, true);
	return ret;
}

int foliofs_create(struct foliofs *fs, foliofs_ino_t parent, const char *name,
		   uint32_t mode, int flags, const struct foliofs_cred *cred,
		   struct foliofs_attr *attr, struct foliofs_file **out)
{
	struct fs_inode *inode = NULL;
	int ret;

	enter();
	ret = make_node(fs, parent, name, S_IFREG | (mode & 07777), 0, NULL,
			cred, true, attr, &inode);
	if (ret == -EEXIST && !(flags & O_EXCL) && !is_dot(name)) {
		pthread_rwlock_rdlock(&fs->ns_lock);
		{
			struct fs_inode *dir = fs_iget_locked(fs, parent);

			ret = dir ? lookup_locked(fs, dir, name, &inode) : -ENOENT;
			if (!ret)
				__atomic_add_fetch(&inode->nlookup, 1,
						   __ATOMIC_RELAXED);
		}
		pthread_rwlock_unlock(&fs->ns_lock);
		if (ret)
			return ret;
		if (S_ISDIR(inode->type)) {
			fs_inode_put(fs, inode, 1, false);
			return -EISDIR;
		}
	} else if (ret) {
		return ret;
	} else {
		flags &= ~O_TRUNC;
	}
	pthread_rwlock_wrlock(&fs->ns_lock);
	inode->nopen++;
	pthread_rwlock_unlock(&fs->ns_lock);
	ret = open_inode(fs, inode, flags, out);
	if (ret) {
		fs_inode_put(fs, inode, 0, true);
		fs_inode_put(fs, inode, 1, false);
		return ret;
	}
	if (attr)
		fs_attr_fill(inode, attr);
	return 0;
}

foliofs_ino_t foliofs_file_ino(const struct foliofs_file *file)
{
	return file->inode->ino;
}

int foliofs_release(struct foliofs_file *file)
{
	enter();
	fs_inode_put(file->fs, file->inode, 0, true);
	free(file);
	return 0;
}

int foliofs_readdir(struct foliofs_file *dirf, uint64_t pos, unsigned int flags,
		    foliofs_filldir_t fill, void *arg)
{
	struct foliofs *fs = dirf->fs;
	struct fs_inode *dir = dirf->inode;
	struct foliofs_attr attr, *ap = (flags & FOLIOFS_READDIR_PLUS) ? &attr : NULL;
	unsigned long idx;
	struct fs_dirent *de;
	int ret = 0;

	enter();
	if (!S_ISDIR(dir->type))
		return -ENOTDIR;
	pthread_rwlock_rdlock(&fs->ns_lock);
	if (pos < 1) {
		if (ap)
			fs_attr_fill(dir, ap);
		if (fill(arg, ".", dir->ino, DT_DIR, 1, ap))
			goto out;
		pos = 1;
	}
	if (pos < 2) {
		/* ".." : the kernel answers it; any directory inode will do
		 * for the listing. */
		if (ap)
			fs_attr_fill(dir, ap);
		if (fill(arg, "..", dir->ino, DT_DIR, 2, ap))
			goto out;
		pos = 2;
	}
	idx = pos < 3 ? 3 : pos;
	for (de = xa_find(&dir->dir->by_cookie, &idx, ULONG_MAX, XA_PRESENT); de;
	     de = xa_find_after(&dir->dir->by_cookie, &idx, ULONG_MAX,
				XA_PRESENT)) {
		struct fs_inode *inode = NULL;

		if (ap) {
			inode = fs_iget_locked(fs, de->ino);
			if (!inode)
				continue;
			fs_attr_fill(inode, ap);
		}
		if (fill(arg, de->name, de->ino, de->type, de->cookie + 1, ap))
			break;
		if (inode)
			__atomic_add_fetch(&inode->nlookup, 1, __ATOMIC_RELAXED);
	}
out:
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

/* ---- Paths ------------------------------------------------------------------- */

/* Split @path into the parent's inode and the last name (in @name). */
static int walk(struct foliofs *fs, const char *path, bool parent,
		foliofs_ino_t *ino, char *name)
{
	foliofs_ino_t cur = FOLIOFS_ROOT_INO;
	const char *p = path;

	if (*p != '/')
		return -EINVAL;
	pthread_rwlock_rdlock(&fs->ns_lock);
	for (;;) {
		const char *s;
		size_t len;
		struct fs_inode *dir, *next;
		char comp[FOLIOFS_NAME_MAX + 1];
		int ret;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		s = strchr(p, '/');
		len = s ? (size_t)(s - p) : strlen(p);
		if (len > FOLIOFS_NAME_MAX) {
			pthread_rwlock_unlock(&fs->ns_lock);
			return -ENAMETOOLONG;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		p += len;
		while (*p == '/')
			p++;
		if (parent && !*p) {
			strcpy(name, comp);
			pthread_rwlock_unlock(&fs->ns_lock);
			*ino = cur;
			return 0;
		}
		dir = fs_iget_locked(fs, cur);
		if (!strcmp(comp, "..")) {
			pthread_rwlock_unlock(&fs->ns_lock);
			return -EINVAL;	/* no parent pointers kept */
		}
		ret = dir ? lookup_locked(fs, dir, comp, &next) : -ENOENT;
		if (ret) {
			pthread_rwlock_unlock(&fs->ns_lock);
			return ret;
		}
		cur = next->ino;
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	if (parent)
		return -EINVAL;	/* "/" has no parent entry */
	*ino = cur;
	return 0;
}

int foliofs_resolve(struct foliofs *fs, const char *path, foliofs_ino_t *ino)
{
	enter();
	return walk(fs, path, false, ino, NULL);
}

int foliofs_stat_path(struct foliofs *fs, const char *path,
		      struct foliofs_attr *attr)
{
	foliofs_ino_t ino;
	int ret;

	enter();
	ret = walk(fs, path, false, &ino, NULL);
	return ret ? ret : foliofs_getattr(fs, ino, attr);
}

int foliofs_open_path(struct foliofs *fs, const char *path, int flags,
		      uint32_t mode, struct foliofs_file **out)
{
	char name[FOLIOFS_NAME_MAX + 1];
	foliofs_ino_t ino;
	struct foliofs_attr attr;
	int ret;

	enter();
	if (!(flags & O_CREAT)) {
		ret = walk(fs, path, false, &ino, NULL);
		return ret ? ret : foliofs_open(fs, ino, flags, out);
	}
	ret = walk(fs, path, true, &ino, name);
	if (ret)
		return ret;
	ret = foliofs_create(fs, ino, name, mode, flags, NULL, &attr, out);
	if (!ret)
		foliofs_forget(fs, attr.ino, 1);
	return ret;
}

int foliofs_mkdir_path(struct foliofs *fs, const char *path, uint32_t mode)
{
	char name[FOLIOFS_NAME_MAX + 1];
	struct foliofs_attr attr;
	foliofs_ino_t ino;
	int ret;

	enter();
	ret = walk(fs, path, true, &ino, name);
	if (ret)
		return ret;
	ret = foliofs_mkdir(fs, ino, name, mode, NULL, &attr);
	if (!ret)
		foliofs_forget(fs, attr.ino, 1);
	return ret;
}

int foliofs_unlink_path(struct foliofs *fs, const char *path)
{
	char name[FOLIOFS_NAME_MAX + 1];
	foliofs_ino_t ino;
	int ret;

	enter();
	ret = walk(fs, path, true, &ino, name);
	return ret ? ret : foliofs_unlink(fs, ino, name);
}

int foliofs_rmdir_path(struct foliofs *fs, const char *path)
{
	char name[FOLIOFS_NAME_MAX + 1];
	foliofs_ino_t ino;
	int ret;

	enter();
	ret = walk(fs, path, true, &ino, name);
	return ret ? ret : foliofs_rmdir(fs, ino, name);
}

int foliofs_rename_path(struct foliofs *fs, const char *from, const char *to,
			unsigned int flags)
{
	char n1[FOLIOFS_NAME_MAX + 1], n2[FOLIOFS_NAME_MAX + 1];
	foliofs_ino_t p1, p2;
	int ret;

	enter();
	ret = walk(fs, from, true, &p1, n1);
	if (!ret)
		ret = walk(fs, to, true, &p2, n2);
	return ret ? ret : foliofs_rename(fs, p1, n1, p2, n2, flags);
}

/* ---- Stats ------------------------------------------------------------------- */

int foliofs_stats(struct foliofs *fs, struct foliofs_stats *st)
{
	struct space_stats ss;

	enter();
	memset(st, 0, sizeof(*st));
	st->cached_bytes = __atomic_load_n(&fs->cache.cached, __ATOMIC_RELAXED);
	st->cache_limit_bytes = fs->cache.limit;
	for (int o = 0; o <= FOLIO_MAX_ORDER && o < 10; o++)
		st->cached_bytes_by_order[o] =
			__atomic_load_n(&fs->cache.cached_by_order[o],
					__ATOMIC_RELAXED);
	st->hits = (uint64_t)fs_counter_read(&fs->cache.stats.hits);
	st->misses = (uint64_t)fs_counter_read(&fs->cache.stats.misses);
	st->readahead_pages = (uint64_t)fs_counter_read(&fs->cache.stats.ra_pages);
	st->reclaimed_folios = (uint64_t)fs_counter_read(&fs->cache.stats.evicted);
	st->splits = (uint64_t)fs_counter_read(&fs->cache.stats.splits);
	st->split_failures =
		(uint64_t)fs_counter_read(&fs->cache.stats.split_eagain) +
		(uint64_t)fs_counter_read(&fs->cache.stats.split_ebusy);
	st->dirty_bytes = fs_dirty_bytes();
	st->pinned_folios = (uint64_t)__atomic_load_n(&folio_nr_pinned,
						      __ATOMIC_RELAXED);
	st->writeback_bytes = __atomic_load_n(&fs->st_writeback_now,
					      __ATOMIC_RELAXED);
	st->written_bytes = __atomic_load_n(&fs->st_written, __ATOMIC_RELAXED);
	st->writeback_errors = __atomic_load_n(&fs->st_wb_errors,
					       __ATOMIC_RELAXED);
	st->throttled_writes = __atomic_load_n(&fs->st_throttled,
					       __ATOMIC_RELAXED);
	st->commits = __atomic_load_n(&fs->st_commits, __ATOMIC_RELAXED);
	st->log_bytes = __atomic_load_n(&fs->st_log_bytes, __ATOMIC_RELAXED);
	st->checkpoints = __atomic_load_n(&fs->st_checkpoints, __ATOMIC_RELAXED);
	if (fs->journal) {
		pthread_mutex_lock(&fs->commit_lock);
		st->log_used_bytes = journal_used_bytes(fs->journal);
		st->log_size_bytes = journal_size_bytes(fs->journal);
		pthread_mutex_unlock(&fs->commit_lock);
	}
	pthread_rwlock_rdlock(&fs->ns_lock);
	st->inodes = fs->nr_inodes;
	pthread_rwlock_unlock(&fs->ns_lock);
	if (fs->space) {
		space_stats(fs->space, &ss);
		st->reserved_blocks = ss.reserved > fs->ckpt_reserve ?
				      ss.reserved - fs->ckpt_reserve : 0;
		st->free_blocks = ss.free;
		st->total_blocks = ss.nr_blocks;
	}
	return 0;
}
