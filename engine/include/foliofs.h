/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * foliofs.h - the one header a program that embeds foliofs includes.
 *
 * Conventions of the public API:
 *  - every function returns 0 (or a count) on success and a negative errno
 *    on failure, and is safe to call from any thread;
 *  - a thread that calls into the engine is registered with the engine's
 *    RCU domain on its first call; call foliofs_thread_exit() before such a
 *    thread exits;
 *  - inodes are named by number (foliofs_ino_t); the root directory is
 *    FOLIOFS_ROOT_INO. The inode-number calls are what a FUSE frontend
 *    needs, lookup counts included; the *_path() calls at the end are the
 *    convenience layer for embedders and never take lookup counts;
 *  - the engine does not check permissions: a frontend that serves several
 *    users checks them (FUSE's default_permissions does).
 *
 * Durability: after foliofs_fsync() or foliofs_syncfs() returns 0, the data
 * and metadata it covers survive a crash of the process and a power cut.
 * Everything else is written back in the background within the dirty
 * expiry time (foliofs_mount_opts.dirty_expire_ms), and at unmount.
 *
 * A minimal embedder:
 *
 *	struct foliofs *fs;
 *	struct foliofs_file *f;
 *	foliofs_mkfs("img", &(struct foliofs_mkfs_opts){ .size = 1 << 30 });
 *	foliofs_mount("img", NULL, &fs);
 *	foliofs_open_path(fs, "/hello", O_CREAT | O_RDWR, 0644, &f);
 *	foliofs_write(f, "hi\n", 3, 0);
 *	foliofs_fsync(f, 0);
 *	foliofs_release(f);
 *	foliofs_unmount(fs);
 */
#ifndef FOLIOFS_H
#define FOLIOFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FOLIOFS_BUILDING)
#define FOLIOFS_API __attribute__((visibility("default")))
#else
#define FOLIOFS_API
#endif

#define FOLIOFS_VERSION_MAJOR 0
#define FOLIOFS_VERSION_MINOR 2
#define FOLIOFS_VERSION_PATCH 0

typedef uint64_t foliofs_ino_t;

#define FOLIOFS_ROOT_INO	1ULL
#define FOLIOFS_NAME_MAX	255
#define FOLIOFS_SYMLINK_MAX	4095

struct foliofs;		/* a mounted volume */
struct foliofs_file;	/* an open file or directory */

/**
 * foliofs_version() - the library's version as "MAJOR.MINOR.PATCH".
 * Return: a static string.
 */
FOLIOFS_API const char *foliofs_version(void);

/**
 * foliofs_thread_init() - register the calling thread with the engine's RCU
 * domain. Calling it again on a registered thread does nothing. Every entry
 * point calls it, so an embedder only needs it to be explicit.
 * Return: 0.
 */
FOLIOFS_API int foliofs_thread_init(void);

/**
 * foliofs_thread_exit() - unregister the calling thread. It must not be
 * inside any foliofs call.
 */
FOLIOFS_API void foliofs_thread_exit(void);

/**
 * foliofs_strerror() - the engine's words for the last mount or format
 * failure of the calling thread ("bad checksum in superblock A ..."), or ""
 * if it left none. Valid until the thread's next foliofs call.
 */
FOLIOFS_API const char *foliofs_strerror(void);

/**
 * foliofs_set_progress() - report the progress of long work done by the
 * calling thread (mkfs, mount's recovery, fsck) to @fn: a phase name
 * ("format", "records" (checkpoint and log replay, in bytes), "extents",
 * "tree", "namespace"), and
 * @done of @total units of it, called a few hundred times per phase at
 * most, and once with done == total at its end. NULL turns it off.
 * The tools draw a progress bar with it on a terminal.
 */
typedef void (*foliofs_progress_fn)(void *arg, const char *phase,
				    uint64_t done, uint64_t total);
FOLIOFS_API void foliofs_set_progress(foliofs_progress_fn fn, void *arg);

/* ---- Volumes ------------------------------------------------------------ */

/**
 * struct foliofs_mkfs_opts - how to format.
 * @size:	bytes of the volume; 0 means the size of the existing file or
 *		device. A regular file is grown (sparsely) to @size.
 * @block_size:	bytes per block; 0 means 4096. Only 4096 is supported now.
 * @label:	up to 64 bytes, or NULL.
 * @force:	format over an existing foliofs volume. Without it, an image
 *		that already holds a valid foliofs superblock is refused with
 *		-EEXIST.
 * @log_bytes:	size of the metadata log; 0 picks 1/64 of the volume,
 *		clamped to 1 MiB .. 256 MiB.
 */
struct foliofs_mkfs_opts {
	uint64_t	size;
	uint32_t	block_size;
	const char	*label;
	int		force;
	uint64_t	log_bytes;
};

/**
 * foliofs_mkfs() - format @path (created if missing) as an empty volume
 * holding a root directory.
 * Return: 0; -EEXIST (a foliofs volume is there and !force); -EBUSY (the
 * image is mounted by foliofs, or a block device is in use; even with
 * force); -EINVAL (bad options: a size under 1 MiB, a block
 * size other than 4096, a label too long); or the store's errno.
 */
FOLIOFS_API int foliofs_mkfs(const char *path,
			     const struct foliofs_mkfs_opts *opts);

/**
 * struct foliofs_mount_opts - per-mount settings; zero means the default.
 * @cache_bytes:	page cache limit; default 25% of RAM.
 * @dirty_bytes:	writers are throttled above this many dirty bytes;
 *			default 20% of the cache.
 * @dirty_background_bytes: the flusher starts writing above this; default
 *			half of @dirty_bytes, at most 32 MiB.
 * @dirty_expire_ms:	dirty data older than this is written; default 3000.
 * @commit_ms:		metadata is committed at least this often; 5000.
 * @readonly:		mount read-only: nothing is ever written.
 * @no_direct:		buffered I/O to the image, for filesystems without
 *			O_DIRECT; durability then rests on their fsync.
 * @flusher_threads:	reserved: one flusher thread runs per volume.
 * @no_fixed_buffers:	write back from plain iovecs instead of buffers
 *			registered with io_uring (for measuring).
 * @no_writeback_copy:	never copy folios out for writeback: writers wait
 *			for the I/O instead (for measuring; law 9).
 */
struct foliofs_mount_opts {
	uint64_t	cache_bytes;
	uint64_t	dirty_bytes;
	uint64_t	dirty_background_bytes;
	uint32_t	dirty_expire_ms;
	uint32_t	commit_ms;
	int		readonly;
	int		no_direct;
	unsigned int	flusher_threads;
	int		no_fixed_buffers;
	int		no_writeback_copy;
};

/**
 * foliofs_mount() - open the volume in @image and recover it: load the
 * last checkpoint, replay the metadata log's committed transactions, and
 * finish deleting files that were unlinked while open.
 * @opts:	NULL for every default.
 * @out:	the volume, on success.
 * The image is locked (flock) while mounted: a second mount is refused.
 * Return: 0; -ENOENT (no image); -EUCLEAN (not a foliofs volume, or
 * corrupt metadata: foliofs_strerror() says what); -EOPNOTSUPP (features
 * this version does not know); -EWOULDBLOCK (mounted elsewhere); -ENOMEM;
 * the store's errno.
 */
FOLIOFS_API int foliofs_mount(const char *image,
			      const struct foliofs_mount_opts *opts,
			      struct foliofs **out);

/**
 * foliofs_unmount() - write every dirty byte, commit, checkpoint, mark the
 * volume clean and free @fs. Open files must have been released.
 * Return: 0, or the first error met writing (the volume is freed anyway;
 * what was not written is lost, and the next mount recovers from the log).
 */
FOLIOFS_API int foliofs_unmount(struct foliofs *fs);

/**
 * foliofs_syncfs() - make every completed write and namespace change of
 * the volume durable.
 * Return: 0 or -errno (-EIO if some data could not be written).
 */
FOLIOFS_API int foliofs_syncfs(struct foliofs *fs);

struct foliofs_statfs {
	uint64_t	block_size;	/* bytes */
	uint64_t	blocks;		/* data blocks in the volume */
	uint64_t	bfree;		/* free minus delalloc reservations */
	uint64_t	bavail;		/* the same (no blocks kept for root) */
	uint64_t	files;		/* inodes in use */
	uint64_t	ffree;		/* inodes that could still be made */
	uint32_t	name_max;
};

FOLIOFS_API int foliofs_statfs(struct foliofs *fs, struct foliofs_statfs *st);

/* ---- Attributes --------------------------------------------------------- */

struct foliofs_attr {
	foliofs_ino_t	ino;
	uint64_t	generation;
	uint32_t	mode;		/* type and permission bits */
	uint32_t	nlink;
	uint32_t	uid;
	uint32_t	gid;
	uint64_t	rdev;
	uint64_t	size;		/* bytes */
	uint64_t	blocks;		/* 512-byte units allocated or reserved */
	uint32_t	blksize;	/* preferred I/O size, bytes */
	struct timespec	atime;
	struct timespec	mtime;
	struct timespec	ctime;
};

/* Who creates or changes an inode: owner of new files. */
struct foliofs_cred {
	uint32_t	uid;
	uint32_t	gid;
};

/* foliofs_setattr() @valid bits. */
enum {
	FOLIOFS_SET_MODE	= 1U << 0,
	FOLIOFS_SET_UID		= 1U << 1,
	FOLIOFS_SET_GID		= 1U << 2,
	FOLIOFS_SET_SIZE	= 1U << 3,
	FOLIOFS_SET_ATIME	= 1U << 4,
	FOLIOFS_SET_MTIME	= 1U << 5,
	FOLIOFS_SET_ATIME_NOW	= 1U << 6,
	FOLIOFS_SET_MTIME_NOW	= 1U << 7,
	FOLIOFS_SET_CTIME	= 1U << 8,
};

FOLIOFS_API int foliofs_getattr(struct foliofs *fs, foliofs_ino_t ino,
				struct foliofs_attr *attr);

/**
 * foliofs_setattr() - change what @valid names, from @in; the result in
 * @out (may be NULL). A size change truncates or extends (extending reads
 * as zeroes). Changing the owner clears set-id bits as chown(2) does.
 */
FOLIOFS_API int foliofs_setattr(struct foliofs *fs, foliofs_ino_t ino,
				const struct foliofs_attr *in,
				unsigned int valid, struct foliofs_attr *out);

/* ---- Namespace (inode numbers, lookup counts) --------------------------- */

/*
 * Lookup counts. foliofs_lookup() and every call that returns a new entry's
 * attributes (mknod, mkdir, symlink, link, create) add one to the inode's
 * lookup count; foliofs_forget() takes them away. An inode whose last link
 * is gone lives on while its lookup count or an open file holds it (FUSE's
 * rule), and its data is freed when both are gone.
 */
FOLIOFS_API int foliofs_lookup(struct foliofs *fs, foliofs_ino_t parent,
			       const char *name, struct foliofs_attr *attr);
FOLIOFS_API void foliofs_forget(struct foliofs *fs, foliofs_ino_t ino,
				uint64_t nlookup);

FOLIOFS_API int foliofs_mknod(struct foliofs *fs, foliofs_ino_t parent,
			      const char *name, uint32_t mode, uint64_t rdev,
			      const struct foliofs_cred *cred,
			      struct foliofs_attr *attr);
FOLIOFS_API int foliofs_mkdir(struct foliofs *fs, foliofs_ino_t parent,
			      const char *name, uint32_t mode,
			      const struct foliofs_cred *cred,
			      struct foliofs_attr *attr);
FOLIOFS_API int foliofs_symlink(struct foliofs *fs, foliofs_ino_t parent,
				const char *name, const char *target,
				const struct foliofs_cred *cred,
				struct foliofs_attr *attr);
/* Return: the target's length (written without a NUL, cut at @size). */
FOLIOFS_API ssize_t foliofs_readlink(struct foliofs *fs, foliofs_ino_t ino,
				     char *buf, size_t size);
FOLIOFS_API int foliofs_link(struct foliofs *fs, foliofs_ino_t ino,
			     foliofs_ino_t newparent, const char *newname,
			     struct foliofs_attr *attr);
FOLIOFS_API int foliofs_unlink(struct foliofs *fs, foliofs_ino_t parent,
			       const char *name);
FOLIOFS_API int foliofs_rmdir(struct foliofs *fs, foliofs_ino_t parent,
			      const char *name);

/* foliofs_rename() @flags: the values of renameat2(2). */
#define FOLIOFS_RENAME_NOREPLACE	(1U << 0)
#define FOLIOFS_RENAME_EXCHANGE		(1U << 1)

/**
 * foliofs_rename() - move @name in @parent to @newname in @newparent,
 * replacing what is there (atomically, also across a crash) unless
 * NOREPLACE; EXCHANGE swaps the two.
 */
FOLIOFS_API int foliofs_rename(struct foliofs *fs, foliofs_ino_t parent,
			       const char *name, foliofs_ino_t newparent,
			       const char *newname, unsigned int flags);

/* ---- Files -------------------------------------------------------------- */

/**
 * foliofs_open() - open inode @ino with open(2) @flags (O_RDONLY, O_WRONLY,
 * O_RDWR, O_TRUNC, O_APPEND; O_DIRECTORY for a directory).
 */
FOLIOFS_API int foliofs_open(struct foliofs *fs, foliofs_ino_t ino, int flags,
			     struct foliofs_file **out);

/**
 * foliofs_create() - create and open a regular file (O_EXCL: -EEXIST if
 * @name exists; otherwise an existing file is opened, O_TRUNC honoured).
 * Adds one lookup count, as foliofs_lookup().
 */
FOLIOFS_API int foliofs_create(struct foliofs *fs, foliofs_ino_t parent,
			       const char *name, uint32_t mode, int flags,
			       const struct foliofs_cred *cred,
			       struct foliofs_attr *attr,
			       struct foliofs_file **out);

FOLIOFS_API foliofs_ino_t foliofs_file_ino(const struct foliofs_file *file);

/* foliofs_release() - close @file; its last writeback error is dropped. */
FOLIOFS_API int foliofs_release(struct foliofs_file *file);

/**
 * foliofs_read() - read up to @len bytes at @off through the page cache.
 * Return: bytes read (0 at end of file), or -errno.
 */
FOLIOFS_API ssize_t foliofs_read(struct foliofs_file *file, void *buf,
				 size_t len, uint64_t off);

/**
 * foliofs_write() - write @len bytes at @off (at the end of file if opened
 * O_APPEND). Blocks are reserved now, so a write that returns success will
 * not fail for lack of space later (-ENOSPC comes here). May wait when
 * the volume has too much dirty data.
 * Return: bytes written, or -errno.
 */
FOLIOFS_API ssize_t foliofs_write(struct foliofs_file *file, const void *buf,
				  size_t len, uint64_t off);

/**
 * foliofs_fsync() - make @file's data (and with !@datasync its metadata;
 * fdatasync keeps what is needed to read the data back) durable.
 * A writeback error that happened since @file last saw one is returned
 * once (errseq): -EIO, even if a later retry succeeded.
 */
FOLIOFS_API int foliofs_fsync(struct foliofs_file *file, int datasync);

/* foliofs_fallocate() @mode: FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE
 * (with KEEP_SIZE), FALLOC_FL_ZERO_RANGE; others -EOPNOTSUPP. */
FOLIOFS_API int foliofs_fallocate(struct foliofs_file *file, int mode,
				  uint64_t off, uint64_t len);

/**
 * foliofs_lseek() - SEEK_DATA or SEEK_HOLE from @off (dirty data in the
 * cache counts as data).
 * Return: the offset, -ENXIO past the end, -EINVAL for another @whence.
 */
FOLIOFS_API int64_t foliofs_lseek(struct foliofs_file *file, uint64_t off,
				  int whence);

/**
 * foliofs_copy_range() - copy @len bytes from @in at @off_in to @out at
 * @off_out. Return: bytes copied, or -errno.
 */
FOLIOFS_API ssize_t foliofs_copy_range(struct foliofs_file *in,
				       uint64_t off_in,
				       struct foliofs_file *out,
				       uint64_t off_out, size_t len);

/* ---- Zero-copy pins -------------------------------------------------------- */

/*
 * A pin hands out iovecs that point straight into page-cache memory: the
 * analogue of pin_user_pages() and unpin_user_pages_dirty_lock().
 *
 * Rules:
 *  - who: any thread of the embedder or a frontend (FUSE replies use read
 *    pins). The pin is not tied to a thread: another thread may unpin it.
 *  - how long: briefly: for one I/O (a reply, a socket send, a copy). A
 *    pinned folio cannot be evicted or split, so long pins hold cache
 *    memory, and a pinned range's reservations stay taken.
 *  - reading: the bytes are uptodate when foliofs_pin_read() returns and
 *    stay valid (but may change under a concurrent writer, as with
 *    mmap) until the unpin.
 *  - writing: foliofs_pin_write() makes every block of the range valid
 *    (read in, or zeroes for holes) and reserves space for it, so a full
 *    disk fails here with -ENOSPC and never later. The holder writes into
 *    the iovecs, then unpins with FOLIOFS_UNPIN_DIRTY: only then is the
 *    range dirty and the file size extended. Writeback may clean the
 *    folio while the pin is held; the dirty unpin dirties it again, so
 *    the data written through the pin reaches the disk at the next
 *    writeback or fsync. fsync does not wait for pins: data written
 *    through a pin that is still held is not covered by it.
 *  - unpin without FOLIOFS_UNPIN_DIRTY gives back the reservations of a
 *    write pin that were not used.
 */
struct foliofs_pin;

#define FOLIOFS_UNPIN_DIRTY	(1U << 0)

/**
 * foliofs_pin_read() - pin up to @len bytes at @off for reading, in at most
 * @max_iov pieces written to @iov (fewer bytes than asked when the pieces
 * run out, or at the end of file).
 * Return: bytes pinned (0 at end of file, with *@pin NULL), or -errno.
 */
FOLIOFS_API ssize_t foliofs_pin_read(struct foliofs_file *file, uint64_t off,
				     size_t len, struct iovec *iov,
				     unsigned int max_iov, unsigned int *niov,
				     struct foliofs_pin **pin);

/**
 * foliofs_pin_write() - pin up to @len bytes at @off for writing (see the
 * rules above), in at most @max_iov pieces.
 * Return: bytes pinned, or -errno (-ENOSPC, -EBADF, -EROFS, ...).
 */
FOLIOFS_API ssize_t foliofs_pin_write(struct foliofs_file *file, uint64_t off,
				      size_t len, struct iovec *iov,
				      unsigned int max_iov, unsigned int *niov,
				      struct foliofs_pin **pin);

/* foliofs_unpin() - drop @pin (NULL is fine); @flags: FOLIOFS_UNPIN_DIRTY. */
FOLIOFS_API void foliofs_unpin(struct foliofs_pin *pin, unsigned int flags);

/* ---- Directories -------------------------------------------------------- */

/*
 * A readdir callback: one entry. @attr is set only for foliofs_readdir()
 * with FOLIOFS_READDIR_PLUS. Return 0 to take the entry and go on, or
 * nonzero to refuse it and stop (a full reply buffer): a refused entry is
 * returned again by the next call, and with PLUS gets no lookup count.
 * @next is the cursor of the entry after this one.
 */
typedef int (*foliofs_filldir_t)(void *arg, const char *name,
				 foliofs_ino_t ino, uint32_t type,
				 uint64_t next,
				 const struct foliofs_attr *attr);

#define FOLIOFS_READDIR_PLUS	(1U << 0)

/**
 * foliofs_readdir() - list @dir from cursor @pos (0 for the start). "." and
 * ".." come first. The cursor stays valid while the directory changes:
 * every entry present for the whole listing is returned exactly once.
 * With PLUS, each taken entry other than "." and ".." adds a lookup count.
 * Return: 0 or -errno.
 */
FOLIOFS_API int foliofs_readdir(struct foliofs_file *dir, uint64_t pos,
				unsigned int flags, foliofs_filldir_t fill,
				void *arg);

/* ---- Statistics --------------------------------------------------------- */

struct foliofs_stats {
	uint64_t	cached_bytes;
	uint64_t	cached_bytes_by_order[10];	/* order 0..9 */
	uint64_t	cache_limit_bytes;
	uint64_t	hits;		/* reads served from the cache, folios */
	uint64_t	misses;		/* folios read from the store */
	uint64_t	readahead_pages;
	uint64_t	dirty_bytes;
	uint64_t	writeback_bytes;	/* in flight now */
	uint64_t	written_bytes;		/* by writeback, total */
	uint64_t	writeback_errors;
	uint64_t	reserved_blocks;	/* delalloc reservations */
	uint64_t	pinned_folios;
	uint64_t	reclaimed_folios;
	uint64_t	splits;
	uint64_t	split_failures;
	uint64_t	throttled_writes;	/* writers that waited */
	uint64_t	commits;		/* metadata log transactions */
	uint64_t	log_bytes;		/* written to the log, total */
	uint64_t	log_used_bytes;		/* since the last checkpoint */
	uint64_t	log_size_bytes;
	uint64_t	checkpoints;
	uint64_t	inodes;
	uint64_t	free_blocks;
	uint64_t	total_blocks;
};

FOLIOFS_API int foliofs_stats(struct foliofs *fs, struct foliofs_stats *st);

/* ---- Checking ----------------------------------------------------------- */

/* foliofs_fsck() @flags. */
#define FOLIOFS_FSCK_REPAIR	(1U << 0)	/* fix what is safe to fix */
#define FOLIOFS_FSCK_VERBOSE	(1U << 1)

/* Exit statuses of fsck, as e2fsck's. */
#define FOLIOFS_FSCK_OK		0
#define FOLIOFS_FSCK_FIXED	1
#define FOLIOFS_FSCK_ERRORS	4
#define FOLIOFS_FSCK_FAILED	8

/**
 * foliofs_fsck() - check the (unmounted) volume in @image: both
 * superblocks, every checksum of the checkpoint and log, every extent
 * against the volume and against every other extent, link counts, and that
 * every directory entry names a live inode of the type it says. Each
 * problem goes to @report in plain words.
 * Return: a FOLIOFS_FSCK_* status (never negative).
 */
FOLIOFS_API int foliofs_fsck(const char *image, unsigned int flags,
			     void (*report)(void *arg, const char *msg),
			     void *arg);

/* ---- Paths, for embedders ----------------------------------------------- */

/*
 * Absolute paths from the root ("/a/b"); symlinks are not followed; no
 * lookup counts are taken. Handy for programs that do not keep inode
 * numbers.
 */
FOLIOFS_API int foliofs_resolve(struct foliofs *fs, const char *path,
				foliofs_ino_t *ino);
FOLIOFS_API int foliofs_stat_path(struct foliofs *fs, const char *path,
				  struct foliofs_attr *attr);
/* With O_CREAT, creates the file as foliofs_create() does. */
FOLIOFS_API int foliofs_open_path(struct foliofs *fs, const char *path,
				  int flags, uint32_t mode,
				  struct foliofs_file **out);
FOLIOFS_API int foliofs_mkdir_path(struct foliofs *fs, const char *path,
				   uint32_t mode);
FOLIOFS_API int foliofs_unlink_path(struct foliofs *fs, const char *path);
FOLIOFS_API int foliofs_rmdir_path(struct foliofs *fs, const char *path);
FOLIOFS_API int foliofs_rename_path(struct foliofs *fs, const char *from,
				    const char *to, unsigned int flags);

#ifdef __cplusplus
}
#endif

#endif /* FOLIOFS_H */
