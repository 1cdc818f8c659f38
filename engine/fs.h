/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fs.h - a mounted volume: inodes, directories, extent maps, the metadata
 * transaction buffer, and the writeback machinery, shared by fs.c
 * (namespace and the public API), meta.c (records, checkpoints, replay)
 * and data.c (the data path and writeback).
 *
 * Metadata lives in memory. Every change is described by records (meta.c)
 * appended to the open transaction buffer; a commit writes that buffer to
 * the metadata log as one transaction (journal.h). A checkpoint writes the
 * whole metadata as the same records.
 *
 * Ordered mode: data blocks a record points at are written, and flushed,
 * before the commit that holds the record. New blocks are mapped in memory
 * as EXT_NEW until their data is written; only then is the extent logged.
 *
 * Locking, outermost first:
 *   inode->rwsem    serialises writes, truncate and fallocate of one file
 *                   (reads take none: the page cache is safe for them);
 *   inode->wb_lock  serialises writeback, fsync and extent changes of one
 *                   file;
 *   fs->ns_lock     rwlock. Exclusive for namespace changes and for
 *                   serialising a checkpoint; shared for lookups, getattr,
 *                   readdir and for writeback's extent updates, so that a
 *                   checkpoint sees either all or none of a change;
 *   fs->tx_lock     the open transaction buffer (append, swap) and the
 *                   space allocator's frees that must ride with a record;
 *   inode->attr_lock attribute fields of one inode (a record of an inode
 *                   is encoded under it, inside tx_lock);
 *   fs->commit_lock one commit or checkpoint at a time (taken before
 *                   ns_lock by the checkpoint, never while holding tx_lock).
 * Extent maps are xarrays: readers (read_blocks) look up locklessly under
 * RCU; writers hold wb_lock (or rwsem for truncate and fallocate).
 */
#ifndef FOLIOFS_FS_H
#define FOLIOFS_FS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backing.h"
#include "filemap.h"
#include "foliofs.h"
#include "journal.h"
#include "reclaim.h"
#include "space.h"
#include "super.h"
#include "urcu/list.h"
#include "xarray.h"

/* Writeback copy buffers per volume, WB_BOUNCE_BYTES each (data.c). */
#define FS_NR_BOUNCE	4
#define WB_BOUNCE_BYTES	(4UL << 20)

/* Extent map entry: xa_mk_value((pblk << EXT_SHIFT) | flags). */
#define EXT_UNWRITTEN	1UL	/* allocated, reads as zeroes (fallocate) */
#define EXT_NEW		2UL	/* allocated by writeback, not yet logged */
#define EXT_SHIFT	2

static inline void *ext_mk(uint64_t pblk, unsigned long flags)
{
	return xa_mk_value(((unsigned long)pblk << EXT_SHIFT) | flags);
}

static inline uint64_t ext_pblk(const void *e)
{
	return xa_to_value(e) >> EXT_SHIFT;
}

static inline unsigned long ext_flags(const void *e)
{
	return xa_to_value(e) & ((1UL << EXT_SHIFT) - 1);
}

struct fs_dirent {
	struct fs_dirent	*hnext;		/* hash chain */
	uint64_t		ino;
	uint64_t		cookie;		/* readdir position, >= 3 */
	uint8_t			type;		/* DT_* */
	uint16_t		len;
	char			name[];		/* NUL-terminated */
};

struct fs_dir {
	struct fs_dirent	**buckets;
	unsigned int		nbuckets;	/* power of two */
	uint64_t		nr;		/* entries */
	uint64_t		next_cookie;
	struct xarray		by_cookie;	/* cookie -> fs_dirent */
};

struct fs_inode {
	struct foliofs		*fs;
	uint64_t		ino;
	uint64_t		generation;

	/* S_IFMT bits of mode: fixed for life, read without locks. */
	uint32_t		type;

	pthread_mutex_t		attr_lock;
	uint32_t		mode;
	uint32_t		nlink;
	uint32_t		uid;
	uint32_t		gid;
	uint64_t		rdev;
	int64_t			atime_ns;
	int64_t			mtime_ns;
	int64_t			ctime_ns;
	/* Size the log knows: data up to here is written (ordered mode). */
	uint64_t		disksize;
	/* Blocks mapped (allocated, unwritten or new). */
	uint64_t		nr_mapped;
	/* Attributes changed since the last inode record. */
	bool			attr_dirty;

	/* Lookup counts (FUSE) and open files; atomics. */
	uint64_t		nlookup;
	uint32_t		nopen;
	bool			dead;		/* left the table; ns_lock */

	pthread_rwlock_t	rwsem;
	pthread_mutex_t		wb_lock;
	struct filemap		map;		/* regular files; size = i_size */
	struct xarray		extents;	/* lblk -> ext_mk() */
	struct fs_dir		*dir;		/* directories */
	uint64_t		parent;		/* directories: ns_lock */
	char			*symlink;	/* symlinks */

	/* Writeback errors, errseq style (law 11): seq bumps per error. */
	uint32_t		wb_err_seq;	/* atomic */
	int			wb_err;
	int64_t			wb_retry_ns;	/* back off until then */

	/* On fs->dirty_list while it has dirty data; fs->dirty_lock. */
	struct cds_list_head	dirty_node;
	bool			on_dirty_list;
	int64_t			dirtied_ns;
};

struct fs_extent_list {
	struct {
		uint64_t	start;
		uint64_t	len;
	}		*runs;
	unsigned int	nr;
	unsigned int	cap;
};

/* The open transaction: records waiting for the next commit. */
struct fs_txbuf {
	char			*data;
	size_t			len;
	size_t			cap;
};

struct foliofs {
	struct backing		*store;
	int			lock_fd;	/* flock on the image */
	struct super		sb;
	struct journal		*journal;
	struct space		*space;
	struct fs_cache		cache;
	struct foliofs_mount_opts opts;
	bool			readonly;
	/* fsck repair: mount even if the log lost transactions. */
	bool			opts_accept_log_loss;
	unsigned int		blkbits;
	uint32_t		block_size;

	pthread_rwlock_t	ns_lock;
	struct xarray		inodes;		/* ino -> fs_inode */
	uint64_t		next_ino;	/* ns_lock exclusive */
	uint64_t		next_gen;
	uint64_t		nr_inodes;

	pthread_mutex_t		tx_lock;
	struct fs_txbuf		tx;
	uint64_t		tx_gen;		/* id of the open transaction */

	pthread_mutex_t		commit_lock;
	uint64_t		committed_gen;	/* commit_lock; read atomically */
	int			commit_err;	/* sticky journal failure */
	/* Data writes completed (bumped after each) and covered by a flush. */
	uint64_t		data_gen;
	uint64_t		flushed_gen;
	uint64_t		ckpt_reserve;	/* blocks held back for checkpoints */
	/* commit_lock: areas of failed checkpoints (see checkpoint_locked). */
	struct fs_extent_list	failed_ckpts;
	int64_t			last_commit_ns;

	/* Writeback. */
	pthread_mutex_t		dirty_lock;
	pthread_cond_t		flusher_wake;
	pthread_cond_t		throttle_wait;
	struct cds_list_head	dirty_list;
	pthread_t		flusher;
	bool			flusher_running;
	bool			stopping;
	bool			kick;
	/* Writeback's copy buffers (data.c); bounce_free under dirty_lock. */
	char			*bounce_pool[FS_NR_BOUNCE];
	bool			bounce_free[FS_NR_BOUNCE];
	unsigned int		nr_bounce;
	bool			bounce_fixed;	/* registered with io_uring */

	/* Counters (atomics). */
	uint64_t		st_commits;
	uint64_t		st_log_bytes;
	uint64_t		st_checkpoints;
	uint64_t		st_written;
	uint64_t		st_wb_errors;
	uint64_t		st_throttled;
	uint64_t		st_writeback_now;
};

struct foliofs_file {
	struct foliofs		*fs;
	struct fs_inode		*inode;
	int			flags;
	uint32_t		wb_err_seen;
	struct file_ra_state	ra;
};

/* ---- fs.c ---------------------------------------------------------------- */
/*
 * foliofs_mkfs() and foliofs_mount() on a store the caller opened (tests
 * wrap it in crashsim or faulty). The mount takes ownership of @store and
 * takes no image lock; mkfs leaves @store open.
 */
int fs_mkfs_backing(struct backing *store, const struct foliofs_mkfs_opts *opts);
/* foliofs_mount(), optionally going on when the log lost transactions
 * in the middle (journal_damage()): fsck's repair. */
int fs_mount_path(const char *image, const struct foliofs_mount_opts *opts,
		  bool accept_log_loss, struct foliofs **out);
int fs_mount_backing(struct backing *store, const char *name,
		     const struct foliofs_mount_opts *opts, struct foliofs **out);
int64_t fs_now_ns(void);
/* The inode @ino with ns_lock held by the caller, or NULL. */
struct fs_inode *fs_iget_locked(struct foliofs *fs, uint64_t ino);
struct fs_inode *fs_inode_new(struct foliofs *fs, uint64_t ino, uint32_t mode);
void fs_inode_free(struct fs_inode *inode);
int fs_dir_add(struct fs_inode *dir, const char *name, size_t len,
	       uint64_t ino, uint8_t type, uint64_t cookie);
struct fs_dirent *fs_dir_find(struct fs_dir *d, const char *name, size_t len);
int fs_dir_del(struct fs_inode *dir, const char *name, size_t len);
void fs_set_errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Report @done of @total for @phase to the thread's progress callback,
 * throttled to about 256 calls per phase (foliofs_set_progress). */
void fs_progress(const char *phase, uint64_t done, uint64_t total);
/* Unlinked and unreferenced: drop the data and the inode (orphans too). */
void fs_evict_inode(struct foliofs *fs, struct fs_inode *inode);
void fs_attr_fill(struct fs_inode *inode, struct foliofs_attr *attr);
/* Drop @nlookup lookup counts or (@open) one open reference; evicts an
 * unlinked inode on its last. Caller holds nothing. */
void fs_inode_put(struct foliofs *fs, struct fs_inode *inode, uint64_t nlookup,
		  bool open);

/* ---- meta.c -------------------------------------------------------------- */
enum fs_rec_type {
	REC_INODE	= 1,
	REC_DIRENT_ADD	= 2,
	REC_DIRENT_DEL	= 3,
	REC_EXTENT	= 4,
	REC_PUNCH	= 5,
	REC_SYMLINK	= 6,
	REC_IFREE	= 7,
};

/* Append records to the open transaction. Caller holds tx_lock. */
int tx_inode(struct foliofs *fs, struct fs_inode *inode);
int tx_dirent_add(struct foliofs *fs, uint64_t dir, const char *name,
		  size_t len, uint64_t ino, uint8_t type);
int tx_dirent_del(struct foliofs *fs, uint64_t dir, const char *name,
		  size_t len);
int tx_extent(struct foliofs *fs, uint64_t ino, uint64_t lblk, uint64_t pblk,
	      uint64_t len, bool unwritten);
int tx_punch(struct foliofs *fs, uint64_t ino, uint64_t lblk, uint64_t len);
int tx_symlink(struct foliofs *fs, uint64_t ino, const char *target);
int tx_ifree(struct foliofs *fs, uint64_t ino);

/* Record an inode with attr_lock taken here (caller holds tx_lock). */
int tx_inode_locked(struct foliofs *fs, struct fs_inode *inode);

/**
 * fs_commit() - commit every transaction up to @gen (the tx_gen seen when
 * the records were appended; ~0 for all), flushing data first.
 */
int fs_commit(struct foliofs *fs, uint64_t gen);
/* The tx_gen a caller that just appended must commit. */
uint64_t fs_tx_gen(struct foliofs *fs);
int fs_checkpoint(struct foliofs *fs);
/* Mount: load the checkpoint and replay the log into @fs. */
int fs_replay(struct foliofs *fs, char *msg, size_t msg_len);
/* Apply one record stream (checkpoint or transaction) to @fs. */
int fs_apply(struct foliofs *fs, const void *payload, size_t len,
	     char *msg, size_t msg_len);
/* Free extent runs of @inode in [@lblk, @lblk + @len) and log the punch. */
int fs_free_extents(struct foliofs *fs, struct fs_inode *inode,
		    uint64_t lblk, uint64_t len, bool log);

/* ---- data.c -------------------------------------------------------------- */
extern const struct filemap_ops fs_filemap_ops;
/* Write back @inode's dirty data (only TOWRITE-tagged if @sync). */
int fs_writeback_inode(struct fs_inode *inode, bool sync);
int fs_writeback_all(struct foliofs *fs, bool sync);
int fs_flusher_start(struct foliofs *fs);
int fs_bounce_pool_init(struct foliofs *fs);
void fs_bounce_pool_free(struct foliofs *fs);
void fs_flusher_stop(struct foliofs *fs);
void fs_note_dirty(struct fs_inode *inode);
void fs_balance_dirty(struct foliofs *fs);
uint64_t fs_dirty_bytes(void);

#endif /* FOLIOFS_FS_H */
