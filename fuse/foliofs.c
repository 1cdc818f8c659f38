// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * foliofs.c - the FUSE frontend: `foliofs IMAGE MOUNTPOINT`.
 *
 * Each low-level request becomes one call of the public API (foliofs.h);
 * the engine's -errno is turned into the FUSE reply here and nowhere else.
 * Inode numbers are the engine's, so fuse_ino_t and foliofs_ino_t are the
 * same numbers and FUSE_ROOT_ID == FOLIOFS_ROOT_INO. Lookup counts are the
 * engine's too: every reply that hands the kernel an entry adds one, and a
 * reply the kernel never got (an interrupted request) is forgotten again.
 *
 * fi->fh holds a struct ffs_file, which wraps the engine's struct
 * foliofs_file and links it on the list of open files, so that files the
 * kernel never released (the session killed by a signal) are released
 * before foliofs_unmount(), which requires it.
 *
 * Caching (-o kcache=off, the default): files are opened FOPEN_DIRECT_IO,
 * so reads and writes come straight to our page cache and the kernel keeps
 * no second copy. -o kcache=on lets the kernel cache pages too (write-
 * through; the writeback cache stays off).
 *
 * Threads: libfuse's worker threads call into the engine. A worker is
 * registered on its first request (foliofs_thread_init()) and unregistered
 * by a pthread key destructor when libfuse retires it, which is outside any
 * foliofs call. Engine threads started by foliofs_mount() block the signals
 * that stop the session, so a SIGTERM always reaches a libfuse thread.
 *
 * Statistics: the numbers of foliofs_stats() are served, outside the mounted
 * namespace, on a unix stream socket /run/foliofs/<dev>.sock, where <dev> is
 * the mount's st_dev in decimal (what `stat -c %d MOUNTPOINT` prints). A
 * daemon that cannot write /run/foliofs (not root) uses
 * /run/user/<uid>/foliofs instead. Each connection is answered with one JSON
 * object on one line, then closed; the client sends nothing. foliofs-stat
 * is the client. One thread serves the socket (see "Statistics socket").
 *
 * mount(8): `mount -t fuse.foliofs IMAGE DIR -o OPTS` runs mount.fuse3,
 * which runs `foliofs IMAGE DIR -o OPTS` through /bin/sh with the PATH
 * mount(8) leaves (util-linux clears it: the shell's default path, so
 * foliofs must be installed in /usr/local/bin, /usr/bin or the like).
 * OPTS then carries the generic options mount(8) resolved (rw, dev, suid,
 * noatime, ...): the ones the kernel's FUSE mount takes are passed on to it,
 * userspace-only ones are ignored, and the ones we cannot honour are
 * refused with a reason (see generic_option()).
 *
 * Locking: open_lock protects the open-file list; nothing else here is
 * shared but what is read-only after mount, and the statistics server's
 * state, which only the main thread touches, before starting the server
 * thread and after joining it.
 */
#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <fuse_opt.h>

#include "foliofs.h"

#define MIB			(1024ULL * 1024)
#define GIB			(1024ULL * MIB)
#define DEFAULT_IMAGE_SIZE	(2 * GIB)
#define MAX_IO			(1U << 20)	/* max_write and max read */
/* Pieces of a read reply: a 1 MiB read of 4 KiB folios at worst. */
#define READ_IOV_MAX		(MAX_IO / 4096 + 1)

struct ffs_file {
	struct foliofs_file	*file;
	int			flags;		/* open(2) flags */
	struct ffs_file		*prev, *next;	/* open_lock */
};

/* Read-only after mount, but for the open-file list. */
struct frontend {
	struct foliofs		*fs;
	double			attr_timeout;
	double			entry_timeout;
	double			negative_timeout;
	bool			kcache;
	/* kcache=writeback: the kernel also buffers writes (FUSE writeback
	 * cache) and sends them in batches. */
	bool			wbcache;
	bool			debug;

	pthread_mutex_t		open_lock;
	struct ffs_file		open_files;	/* list head, open_lock */
};

static struct frontend fe = {
	.open_lock = PTHREAD_MUTEX_INITIALIZER,
	.open_files = { .prev = &fe.open_files, .next = &fe.open_files },
};

/* ---- Per-thread state ---------------------------------------------------- */

/* A worker's bounce buffer for reads and for writes that arrive in a pipe. */
struct ffs_thread {
	char		*buf;
	size_t		size;
};

static pthread_key_t thread_key;
static __thread struct ffs_thread *self;

static void thread_destroy(void *arg)
{
	struct ffs_thread *t = arg;

	free(t->buf);
	free(t);
	foliofs_thread_exit();
}

static struct ffs_thread *thread_get(void)
{
	if (!self) {
		self = calloc(1, sizeof(*self));
		if (!self)
			return NULL;
		pthread_setspecific(thread_key, self);
		foliofs_thread_init();
	}
	return self;
}

/* thread_buf() - this thread's buffer, at least @size bytes; NULL if out of
 * memory. Grown, never shrunk: it tops out at MAX_IO plus a little. */
static char *thread_buf(size_t size)
{
	struct ffs_thread *t = thread_get();
	void *p;

	if (!t)
		return NULL;
	if (t->size >= size)
		return t->buf;
	if (size < 128 * 1024)
		size = 128 * 1024;
	if (posix_memalign(&p, 4096, size))
		return NULL;
	free(t->buf);
	t->buf = p;
	t->size = size;
	return t->buf;
}

/* ---- Conversions ----------------------------------------------------------- */

static struct ffs_file *to_file(const struct fuse_file_info *fi)
{
	return (struct ffs_file *)(uintptr_t)fi->fh;
}

static void attr_to_stat(const struct foliofs_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_rdev = a->rdev;
	st->st_size = a->size;
	st->st_blocks = a->blocks;
	st->st_blksize = a->blksize;
	st->st_atim = a->atime;
	st->st_mtim = a->mtime;
	st->st_ctim = a->ctime;
}

static void fill_entry(const struct foliofs_attr *a, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = a->ino;
	e->generation = a->generation;
	attr_to_stat(a, &e->attr);
	e->attr_timeout = fe.attr_timeout;
	e->entry_timeout = fe.entry_timeout;
}

static struct foliofs_cred req_cred(fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	return (struct foliofs_cred){ .uid = ctx->uid, .gid = ctx->gid };
}

/*
 * reply_entry() - hand the kernel an entry the engine counted a lookup for.
 * If the kernel never gets it (the request was interrupted), it will never
 * send the matching forget, so give the count back now.
 */
static void reply_entry(fuse_req_t req, const struct foliofs_attr *a)
{
	struct fuse_entry_param e;

	fill_entry(a, &e);
	if (fuse_reply_entry(req, &e))
		foliofs_forget(fe.fs, a->ino, 1);
}

/* ---- Open files ------------------------------------------------------------ */

static struct ffs_file *file_new(struct foliofs_file *f, int flags)
{
	struct ffs_file *ff = malloc(sizeof(*ff));

	if (!ff)
		return NULL;
	ff->file = f;
	ff->flags = flags;
	pthread_mutex_lock(&fe.open_lock);
	ff->next = fe.open_files.next;
	ff->prev = &fe.open_files;
	ff->next->prev = ff;
	fe.open_files.next = ff;
	pthread_mutex_unlock(&fe.open_lock);
	return ff;
}

static int file_release(struct ffs_file *ff)
{
	int ret;

	pthread_mutex_lock(&fe.open_lock);
	ff->prev->next = ff->next;
	ff->next->prev = ff->prev;
	pthread_mutex_unlock(&fe.open_lock);
	ret = foliofs_release(ff->file);
	free(ff);
	return ret;
}

/* Release what the kernel left open: it sends no RELEASE after the session
 * ends. Called with every worker gone. */
static void release_all(void)
{
	while (fe.open_files.next != &fe.open_files)
		file_release(fe.open_files.next);
}

/*
 * reply_open() - the open reply for @f, wrapped. An interrupted open gets
 * no RELEASE, so the file is closed here if the reply does not arrive.
 * Return: 0, or -errno if nothing was opened (the caller replies).
 */
static int reply_open(fuse_req_t req, struct fuse_file_info *fi,
		      struct foliofs_file *f, const struct foliofs_attr *create,
		      bool dir)
{
	struct ffs_file *ff = file_new(f, fi->flags);
	struct fuse_entry_param e;
	int ret;

	if (!ff) {
		foliofs_release(f);
		return -ENOMEM;
	}
	fi->fh = (uintptr_t)ff;
	if (!dir) {
		fi->direct_io = !fe.kcache;
		fi->keep_cache = fe.kcache;
	}
	if (create) {
		fill_entry(create, &e);
		ret = fuse_reply_create(req, &e, fi);
		if (ret)
			foliofs_forget(fe.fs, create->ino, 1);
	} else {
		ret = fuse_reply_open(req, fi);
	}
	if (ret)
		file_release(ff);
	return 0;
}

/* ---- Session ----------------------------------------------------------------- */

static void ffs_init(void *userdata, struct fuse_conn_info *conn)
{
	unsigned int want = FUSE_CAP_ASYNC_READ | FUSE_CAP_PARALLEL_DIROPS |
			    FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO |
			    FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_ASYNC_DIO;

	thread_get();
	conn->want |= want & conn->capable;
	/*
	 * Splice hands write data over in a pipe that we would only copy out
	 * of again before foliofs_write() copies it into a folio.
	 */
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
			FUSE_CAP_SPLICE_MOVE | FUSE_CAP_WRITEBACK_CACHE |
			FUSE_CAP_HANDLE_KILLPRIV);
	if (fe.wbcache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
	/* Without it, a FOPEN_DIRECT_IO file refuses shared mmap (ENODEV). */
	if (conn->capable & FUSE_CAP_DIRECT_IO_ALLOW_MMAP)
		conn->want |= FUSE_CAP_DIRECT_IO_ALLOW_MMAP;
#endif
	/* libfuse derives max_pages (256) from max_write. */
	conn->max_write = MAX_IO;
	conn->max_readahead = MAX_IO;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	conn->time_gran = 1;
}

/* ---- Namespace ----------------------------------------------------------- */

/* Replies: entry, err. */
static void ffs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct foliofs_attr a;
	struct fuse_entry_param e;
	int ret;

	thread_get();
	ret = foliofs_lookup(fe.fs, parent, name, &a);
	if (ret == -ENOENT && fe.negative_timeout > 0) {
		/* ino 0: a negative entry the kernel may cache. Every
		 * change to the namespace comes through the kernel, which
		 * drops it when it creates the name. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fe.negative_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	reply_entry(req, &a);
}

/* Replies: none. */
static void ffs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	thread_get();
	foliofs_forget(fe.fs, ino, nlookup);
	fuse_reply_none(req);
}

/* Replies: none. */
static void ffs_forget_multi(fuse_req_t req, size_t count,
			     struct fuse_forget_data *forgets)
{
	size_t i;

	thread_get();
	for (i = 0; i < count; i++)
		foliofs_forget(fe.fs, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* Replies: attr, err. */
static void ffs_getattr(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct foliofs_attr a;
	struct stat st;
	int ret;

	thread_get();
	ret = foliofs_getattr(fe.fs, ino, &a);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	attr_to_stat(&a, &st);
	fuse_reply_attr(req, &st, fe.attr_timeout);
}

/* Replies: attr, err. */
static void ffs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
			int to_set, struct fuse_file_info *fi)
{
	struct foliofs_attr in = { 0 }, out;
	unsigned int valid = 0;
	struct timespec now;
	struct stat st;
	int ret;

	thread_get();
	clock_gettime(CLOCK_REALTIME, &now);
	if (to_set & FUSE_SET_ATTR_MODE) {
		in.mode = attr->st_mode;
		valid |= FOLIOFS_SET_MODE;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		in.uid = attr->st_uid;
		valid |= FOLIOFS_SET_UID;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		in.gid = attr->st_gid;
		valid |= FOLIOFS_SET_GID;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		in.size = attr->st_size;
		valid |= FOLIOFS_SET_SIZE;
	}
	/*
	 * The kernel sends ATIME together with ATIME_NOW for utimensat's
	 * UTIME_NOW; pass both and the time of now, so the engine may read
	 * either.
	 */
	if (to_set & FUSE_SET_ATTR_ATIME) {
		in.atime = attr->st_atim;
		valid |= FOLIOFS_SET_ATIME;
	}
	if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
		in.atime = now;
		valid |= FOLIOFS_SET_ATIME | FOLIOFS_SET_ATIME_NOW;
	}
	if (to_set & FUSE_SET_ATTR_MTIME) {
		in.mtime = attr->st_mtim;
		valid |= FOLIOFS_SET_MTIME;
	}
	if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
		in.mtime = now;
		valid |= FOLIOFS_SET_MTIME | FOLIOFS_SET_MTIME_NOW;
	}
	if (to_set & FUSE_SET_ATTR_CTIME) {
		in.ctime = attr->st_ctim;
		valid |= FOLIOFS_SET_CTIME;
	}
	ret = foliofs_setattr(fe.fs, ino, &in, valid, &out);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	attr_to_stat(&out, &st);
	fuse_reply_attr(req, &st, fe.attr_timeout);
}

/* Replies: readlink, err. */
static void ffs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[FOLIOFS_SYMLINK_MAX + 1];
	ssize_t n;

	thread_get();
	n = foliofs_readlink(fe.fs, ino, buf, sizeof(buf) - 1);
	if (n < 0) {
		fuse_reply_err(req, -n);
		return;
	}
	buf[(size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1] = '\0';
	fuse_reply_readlink(req, buf);
}

/* Replies: entry, err. */
static void ffs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, dev_t rdev)
{
	struct foliofs_cred cred = req_cred(req);
	struct foliofs_attr a;
	int ret;

	thread_get();
	ret = foliofs_mknod(fe.fs, parent, name, mode, rdev, &cred, &a);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		reply_entry(req, &a);
}

/* Replies: entry, err. */
static void ffs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode)
{
	struct foliofs_cred cred = req_cred(req);
	struct foliofs_attr a;
	int ret;

	thread_get();
	ret = foliofs_mkdir(fe.fs, parent, name, mode, &cred, &a);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		reply_entry(req, &a);
}

/* Replies: entry, err. */
static void ffs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
			const char *name)
{
	struct foliofs_cred cred = req_cred(req);
	struct foliofs_attr a;
	int ret;

	thread_get();
	ret = foliofs_symlink(fe.fs, parent, name, link, &cred, &a);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		reply_entry(req, &a);
}

/* Replies: entry, err. */
static void ffs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		     const char *newname)
{
	struct foliofs_attr a;
	int ret;

	thread_get();
	ret = foliofs_link(fe.fs, ino, newparent, newname, &a);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		reply_entry(req, &a);
}

/* Replies: err. */
static void ffs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	thread_get();
	fuse_reply_err(req, -foliofs_unlink(fe.fs, parent, name));
}

/* Replies: err. */
static void ffs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	thread_get();
	fuse_reply_err(req, -foliofs_rmdir(fe.fs, parent, name));
}

/* Replies: err. */
static void ffs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		       fuse_ino_t newparent, const char *newname,
		       unsigned int flags)
{
	unsigned int ff = 0;

	thread_get();
	/* renameat2(2)'s values; RENAME_WHITEOUT is for overlayfs. */
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (flags & RENAME_NOREPLACE)
		ff |= FOLIOFS_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		ff |= FOLIOFS_RENAME_EXCHANGE;
	fuse_reply_err(req, -foliofs_rename(fe.fs, parent, name, newparent,
					     newname, ff));
}

/* ---- Files ------------------------------------------------------------------- */

/* The open(2) flags the engine takes; the kernel keeps the rest. */
#define OPEN_FLAGS	(O_ACCMODE | O_TRUNC | O_APPEND | O_DIRECTORY)

/*
 * With the kernel's writeback cache, the kernel reads through any handle
 * to fill pages it writes partly, and places appends itself: a write-only
 * open must read, and O_APPEND must not move writes again.
 */
static int open_flags(int flags)
{
	flags &= OPEN_FLAGS;
	if (fe.wbcache) {
		if ((flags & O_ACCMODE) == O_WRONLY)
			flags = (flags & ~O_ACCMODE) | O_RDWR;
		flags &= ~O_APPEND;
	}
	return flags;
}

/* Replies: open, err. */
static void ffs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct foliofs_file *f;
	int ret;

	thread_get();
	ret = foliofs_open(fe.fs, ino, open_flags(fi->flags), &f);
	if (!ret)
		ret = reply_open(req, fi, f, NULL, false);
	if (ret)
		fuse_reply_err(req, -ret);
}

/* Replies: create, err. */
static void ffs_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		       mode_t mode, struct fuse_file_info *fi)
{
	struct foliofs_cred cred = req_cred(req);
	struct foliofs_file *f;
	struct foliofs_attr a;
	int ret;

	thread_get();
	ret = foliofs_create(fe.fs, parent, name, mode,
			     open_flags(fi->flags) | (fi->flags & (O_CREAT | O_EXCL)),
			     &cred, &a, &f);
	if (!ret) {
		ret = reply_open(req, fi, f, &a, false);
		if (ret)
			foliofs_forget(fe.fs, a.ino, 1);
	}
	if (ret)
		fuse_reply_err(req, -ret);
}

/*
 * Replies: iov, buf, err. Zero-copy: the reply's iovecs point into the
 * engine's page cache under a read pin, so the kernel copies straight from
 * the folios; the pin (not a lock) is held until the reply is written.
 */
static void ffs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct iovec iov[READ_IOV_MAX];
	struct foliofs_pin *pin;
	unsigned int niov;
	ssize_t n;

	n = foliofs_pin_read(to_file(fi)->file, off, size, iov, READ_IOV_MAX,
			     &niov, &pin);
	if (n < 0) {
		fuse_reply_err(req, -n);
	} else if (!n) {
		fuse_reply_buf(req, NULL, 0);
	} else {
		fuse_reply_iov(req, iov, (int)niov);
		foliofs_unpin(pin, 0);
	}
}

/*
 * do_write() - the write both write handlers share. An O_SYNC or O_DSYNC
 * file is made durable before the reply: the kernel does not fsync a
 * direct-I/O write for us.
 * Return: bytes written or -errno.
 */
static ssize_t do_write(struct fuse_file_info *fi, const void *buf,
			size_t len, off_t off)
{
	struct ffs_file *ff = to_file(fi);
	ssize_t n;
	int ret;

	n = foliofs_write(ff->file, buf, len, off);
	if (n > 0 && ((fi->flags | ff->flags) & O_DSYNC)) {
		ret = foliofs_fsync(ff->file,
				    !((fi->flags | ff->flags) & O_SYNC & ~O_DSYNC));
		if (ret)
			return ret;
	}
	return n;
}

/* Replies: write, err. */
static void ffs_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		      size_t size, off_t off, struct fuse_file_info *fi)
{
	ssize_t n;

	thread_get();
	n = do_write(fi, buf, size, off);
	if (n < 0)
		fuse_reply_err(req, -n);
	else
		fuse_reply_write(req, n);
}

/* Replies: write, err. */
static void ffs_write_buf(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_bufvec *bufv, off_t off,
			  struct fuse_file_info *fi)
{
	size_t len = fuse_buf_size(bufv);
	const struct fuse_buf *b = &bufv->buf[bufv->idx];
	const char *src;
	ssize_t n;

	thread_get();
	if (bufv->count - bufv->idx == 1 && !(b->flags & FUSE_BUF_IS_FD)) {
		/* The usual case: the request's own buffer. */
		src = (const char *)b->mem + bufv->off;
	} else {
		struct fuse_bufvec dst = FUSE_BUFVEC_INIT(len);

		dst.buf[0].mem = thread_buf(len);
		if (!dst.buf[0].mem) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		n = fuse_buf_copy(&dst, bufv, 0);
		if (n < 0) {
			fuse_reply_err(req, -n);
			return;
		}
		src = dst.buf[0].mem;
		len = n;
	}
	n = do_write(fi, src, len, off);
	if (n < 0)
		fuse_reply_err(req, -n);
	else
		fuse_reply_write(req, n);
}

/* Replies: err. Writeback errors come from fsync, as errseq has it. */
static void ffs_flush(fuse_req_t req, fuse_ino_t ino,
		      struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

/* Replies: err. */
static void ffs_release(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	thread_get();
	file_release(to_file(fi));
	fuse_reply_err(req, 0);
}

/* Replies: err. */
static void ffs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		      struct fuse_file_info *fi)
{
	thread_get();
	fuse_reply_err(req, -foliofs_fsync(to_file(fi)->file, datasync));
}

/* Replies: err. */
static void ffs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			  off_t off, off_t len, struct fuse_file_info *fi)
{
	thread_get();
	fuse_reply_err(req, -foliofs_fallocate(to_file(fi)->file, mode, off,
					       len));
}

/* Replies: lseek, err. SEEK_SET/CUR/END never come here. */
static void ffs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		      struct fuse_file_info *fi)
{
	int64_t pos;

	thread_get();
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	pos = foliofs_lseek(to_file(fi)->file, off, whence);
	if (pos < 0)
		fuse_reply_err(req, -pos);
	else
		fuse_reply_lseek(req, pos);
}

/* Replies: write, err. */
static void ffs_copy_file_range(fuse_req_t req, fuse_ino_t ino_in,
				off_t off_in, struct fuse_file_info *fi_in,
				fuse_ino_t ino_out, off_t off_out,
				struct fuse_file_info *fi_out, size_t len,
				int flags)
{
	ssize_t n;

	thread_get();
	if (flags) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	n = foliofs_copy_range(to_file(fi_in)->file, off_in,
			       to_file(fi_out)->file, off_out, len);
	if (n < 0)
		fuse_reply_err(req, -n);
	else
		fuse_reply_write(req, n);
}

/* Replies: statfs, err. */
static void ffs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct foliofs_statfs s;
	struct statvfs st;
	int ret;

	thread_get();
	ret = foliofs_statfs(fe.fs, &s);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	memset(&st, 0, sizeof(st));
	st.f_bsize = s.block_size;
	st.f_frsize = s.block_size;
	st.f_blocks = s.blocks;
	st.f_bfree = s.bfree;
	st.f_bavail = s.bavail;
	st.f_files = s.files + s.ffree;
	st.f_ffree = s.ffree;
	st.f_favail = s.ffree;
	st.f_namemax = s.name_max;
	fuse_reply_statfs(req, &st);
}

/*
 * Extended attributes are not stored. ENOSYS, not ENOTSUP: the kernel then
 * answers every later xattr call itself with EOPNOTSUPP (what a caller sees
 * either way) instead of asking us, which spares a round trip per write for
 * the security.capability check. Replies: err.
 */
static void ffs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			 const char *value, size_t size, int flags)
{
	fuse_reply_err(req, ENOSYS);
}

static void ffs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			 size_t size)
{
	fuse_reply_err(req, ENOSYS);
}

static void ffs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	fuse_reply_err(req, ENOSYS);
}

static void ffs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, ENOSYS);
}

/* ---- Directories ------------------------------------------------------------- */

/* Replies: open, err. */
static void ffs_opendir(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct foliofs_file *f;
	int ret;

	thread_get();
	ret = foliofs_open(fe.fs, ino, O_RDONLY | O_DIRECTORY, &f);
	if (!ret)
		ret = reply_open(req, fi, f, NULL, true);
	if (ret)
		fuse_reply_err(req, -ret);
}

struct dirbuf {
	fuse_req_t	req;
	char		*buf;
	size_t		size;
	size_t		used;
	bool		plus;
};

static bool is_dot(const char *name)
{
	return name[0] == '.' &&
	       (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

/* foliofs_filldir_t: one entry into the reply, or 1 when it is full. */
static int dir_fill(void *arg, const char *name, foliofs_ino_t ino,
		    uint32_t type, uint64_t next, const struct foliofs_attr *a)
{
	struct dirbuf *d = arg;
	struct fuse_entry_param e;
	char *p = d->buf + d->used;
	size_t room = d->size - d->used;
	size_t need;

	memset(&e, 0, sizeof(e));
	/* The engine may give a DT_* or S_IF* type: DT_* has no S_IFMT bits. */
	e.attr.st_mode = (type & S_IFMT) ? (type & S_IFMT) : DTTOIF(type);
	e.attr.st_ino = ino;
	if (d->plus) {
		/* "." and ".." carry no entry and no lookup count: ino 0
		 * tells the kernel to take only the name. */
		if (a && !is_dot(name))
			fill_entry(a, &e);
		need = fuse_add_direntry_plus(d->req, p, room, name, &e, next);
	} else {
		need = fuse_add_direntry(d->req, p, room, name, &e.attr, next);
	}
	if (need > room)
		return 1;
	d->used += need;
	return 0;
}

static void do_readdir(fuse_req_t req, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct dirbuf d = { .req = req, .size = size, .plus = plus };
	int ret;

	d.buf = thread_buf(size);
	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ret = foliofs_readdir(to_file(fi)->file, off,
			      plus ? FOLIOFS_READDIR_PLUS : 0, dir_fill, &d);
	/* What was filled before an error is still worth a reply. */
	if (ret && !d.used)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_buf(req, d.buf, d.used);
}

/* Replies: buf, data, err. */
static void ffs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	do_readdir(req, size, off, fi, false);
}

/* Replies: buf, data, err. */
static void ffs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			    off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, size, off, fi, true);
}

/* Replies: err. */
static void ffs_releasedir(fuse_req_t req, fuse_ino_t ino,
			   struct fuse_file_info *fi)
{
	thread_get();
	file_release(to_file(fi));
	fuse_reply_err(req, 0);
}

/* Replies: err. The namespace is one log: syncing it syncs the volume. */
static void ffs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			 struct fuse_file_info *fi)
{
	thread_get();
	fuse_reply_err(req, -foliofs_syncfs(fe.fs));
}

static const struct fuse_lowlevel_ops ffs_ops = {
	.init		= ffs_init,
	.lookup		= ffs_lookup,
	.forget		= ffs_forget,
	.forget_multi	= ffs_forget_multi,
	.getattr	= ffs_getattr,
	.setattr	= ffs_setattr,
	.readlink	= ffs_readlink,
	.mknod		= ffs_mknod,
	.mkdir		= ffs_mkdir,
	.unlink		= ffs_unlink,
	.rmdir		= ffs_rmdir,
	.symlink	= ffs_symlink,
	.rename		= ffs_rename,
	.link		= ffs_link,
	.open		= ffs_open,
	.read		= ffs_read,
	.write		= ffs_write,
	.write_buf	= ffs_write_buf,
	.flush		= ffs_flush,
	.release	= ffs_release,
	.fsync		= ffs_fsync,
	.opendir	= ffs_opendir,
	.readdir	= ffs_readdir,
	.readdirplus	= ffs_readdirplus,
	.releasedir	= ffs_releasedir,
	.fsyncdir	= ffs_fsyncdir,
	.statfs		= ffs_statfs,
	.setxattr	= ffs_setxattr,
	.getxattr	= ffs_getxattr,
	.listxattr	= ffs_listxattr,
	.removexattr	= ffs_removexattr,
	.create		= ffs_create,
	.fallocate	= ffs_fallocate,
	.lseek		= ffs_lseek,
	.copy_file_range = ffs_copy_file_range,
};

/* ---- Command line ------------------------------------------------------------ */

struct options {
	char		*image;
	char		*mountpoint;
	int		foreground;
	int		debug;
	int		help;
	int		version;
	int		allow_other;
	int		readonly;
	char		*size;
	char		*cache_size;
	char		*dirty_bytes;
	char		*dirty_background_bytes;
	char		*dirty_expire_ms;
	char		*commit_ms;
	char		*flusher_threads;
	char		*attr_timeout;
	char		*entry_timeout;
	char		*negative_timeout;
	char		*kcache;
	char		*max_threads;
	int		no_direct;
	char		*kern_opts;	/* generic options for the kernel's mount */
	int		bad;		/* an error was printed */
};

enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_FOREGROUND,
	KEY_DEBUG,
	KEY_IGNORED,
};

#define OPT(t, p)	{ t, offsetof(struct options, p), 1 }
#define OPT_S(t, p)	{ t, offsetof(struct options, p), 0 }

static const struct fuse_opt opt_spec[] = {
	OPT_S("size=%s", size),
	OPT_S("cache_size=%s", cache_size),
	OPT_S("dirty_bytes=%s", dirty_bytes),
	OPT_S("dirty_background_bytes=%s", dirty_background_bytes),
	OPT_S("dirty_expire_ms=%s", dirty_expire_ms),
	OPT_S("commit_ms=%s", commit_ms),
	OPT_S("flusher_threads=%s", flusher_threads),
	OPT_S("attr_timeout=%s", attr_timeout),
	OPT_S("entry_timeout=%s", entry_timeout),
	OPT_S("negative_timeout=%s", negative_timeout),
	OPT_S("kcache=%s", kcache),
	OPT_S("max_threads=%s", max_threads),
	OPT("allow_other", allow_other),
	OPT("ro", readonly),
	{ "rw", offsetof(struct options, readonly), 0 },
	OPT("no_direct", no_direct),
	FUSE_OPT_KEY("default_permissions", KEY_IGNORED),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_KEY("-f", KEY_FOREGROUND),
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_KEY("debug", KEY_DEBUG),
	FUSE_OPT_END
};

static void usage(FILE *out)
{
	fprintf(out,
"usage: foliofs IMAGE MOUNTPOINT [-f] [-d] [-o OPTION[,OPTION...]]\n"
"\n"
"Mount the foliofs volume in IMAGE at MOUNTPOINT (an empty directory).\n"
"If IMAGE does not exist, it is created and formatted first.\n"
"\n"
"  -f                      stay in the foreground\n"
"  -d                      print every FUSE request (implies -f)\n"
"  -h, --help              print this help\n"
"  -V, --version           print the versions\n"
"\n"
"Options (-o):\n"
"  size=SIZE               size of an IMAGE created now (default 2G)\n"
"  cache_size=SIZE         page cache limit (default 25%% of RAM)\n"
"  dirty_bytes=SIZE        throttle writers above this much dirty data\n"
"  dirty_background_bytes=SIZE  start writeback above this\n"
"  dirty_expire_ms=N       write dirty data older than this (default 3000)\n"
"  commit_ms=N             commit metadata at least this often (5000)\n"
"  flusher_threads=N       background writeback threads (default 1)\n"
"  no_direct               buffered I/O to IMAGE (for filesystems without\n"
"                          O_DIRECT)\n"
"  attr_timeout=SECONDS    kernel caches attributes this long (1.0)\n"
"  entry_timeout=SECONDS   kernel caches names this long (1.0)\n"
"  negative_timeout=SECONDS kernel caches missing names this long (1.0)\n"
"  kcache=on|off|writeback let the kernel cache file pages too (off: I/O\n"
"                          goes straight to foliofs's cache; writeback:\n"
"                          the kernel also buffers writes and sends them\n"
"                          in batches, as its own filesystems do)\n"
"  max_threads=N           FUSE worker threads (default 16)\n"
"  allow_other             let other users in (needs user_allow_other in\n"
"                          /etc/fuse.conf when not root)\n"
"  ro, rw                  mount read-only, or read-write (the default)\n"
"  default_permissions     accepted; permissions are always checked by the\n"
"                          kernel\n"
"\n"
"Generic mount options, as mount(8) and /etc/fstab pass them:\n"
"  suid, nosuid, dev, nodev, exec, noexec, atime, noatime, async, and\n"
"  context=, fscontext=, defcontext=, rootcontext= go to the kernel's mount\n"
"  (by default a FUSE mount is nosuid,nodev); defaults, auto, noauto, user,\n"
"  users, nouser, owner, group, nofail, _netdev, x-*, comment=, the atime\n"
"  policies (relatime, strictatime, diratime, lazytime and their no- forms),\n"
"  iversion, noiversion, symfollow, nomand, silent and loud are accepted and\n"
"  ignored; sync, dirsync, remount, mand and nosymfollow are refused.\n"
"\n"
"SIZE takes a K, M, G or T suffix (powers of 1024).\n"
"\n"
"Statistics: foliofs-stat MOUNTPOINT, over /run/foliofs/<st_dev>.sock.\n");
}

/*
 * Generic mount options. mount(8) hands them to mount.fuse3, which drops
 * user, nouser, users, auto, noauto, nofail and _netdev, appends dev,suid
 * unless nodev or nosuid was given, and runs us with the rest: for
 * `mount -t fuse.foliofs img dir`, "-o rw,dev,suid"; for an fstab line
 * with "defaults", the same. mount(8) itself has already folded each
 * flag/no-flag pair and dropped x-*, comment= and defaults; a user's
 * command line or an older mount(8) may still carry them.
 */

/* Passed on to the kernel's mount: the flags and options libfuse 3.12 to
 * 3.14 know (newer ones know more; these are all of theirs we need). */
static const char *const kernel_flags[] = {
	"suid", "nosuid", "dev", "nodev", "exec", "noexec", "async",
	"atime", "noatime", NULL
};
static const char *const kernel_prefixes[] = {
	"context=", "fscontext=", "defcontext=", "rootcontext=", NULL
};

/* Options for mount(8), fstab and systemd, not for the filesystem; and
 * kernel flags that libfuse cannot pass on but that promise nothing about
 * data (FUSE keeps atime itself). Accepted and ignored. */
static const char *const ignored_flags[] = {
	"defaults", "auto", "noauto", "user", "nouser", "users", "owner",
	"group", "nofail", "_netdev", "relatime", "norelatime", "strictatime",
	"nostrictatime", "diratime", "nodiratime", "lazytime", "nolazytime",
	"iversion", "noiversion", "symfollow", "nomand", "silent", "loud",
	NULL
};
static const char *const ignored_prefixes[] = {
	"x-", "comment=", "user=", "helper=", "uhelper=", NULL
};

/* Options we would have to honour and cannot: refused, with why. */
static const struct {
	const char	*opt;
	const char	*why;
} refused_opts[] = {
	{ "sync", "foliofs has no synchronous mode; fsync(2) or fdatasync(2) "
		  "make data durable" },
	{ "dirsync", "foliofs has no synchronous mode; fsync(2) of the "
		     "directory makes namespace changes durable" },
	{ "remount", "a foliofs mount cannot be remounted; unmount it and "
		     "mount it again with the new options" },
	{ "mand", "mandatory locks are not supported" },
	{ "nosymfollow", "this libfuse cannot pass it to the kernel" },
};

static bool in_list(const char *const *list, const char *arg)
{
	for (; *list; list++)
		if (!strcmp(*list, arg))
			return true;
	return false;
}

static bool has_prefix(const char *const *list, const char *arg)
{
	for (; *list; list++)
		if (!strncmp(*list, arg, strlen(*list)))
			return true;
	return false;
}

/*
 * generic_option() - handle @arg if it is a generic mount option.
 * Return: 1 if it was taken (kept in o->kern_opts, or ignored); 0 if it is
 * not a generic option; -1 if it is refused or out of memory (said).
 */
static int generic_option(struct options *o, const char *arg)
{
	size_t i;

	if (in_list(kernel_flags, arg) || has_prefix(kernel_prefixes, arg)) {
		if (fuse_opt_add_opt(&o->kern_opts, arg)) {
			fprintf(stderr, "foliofs: out of memory\n");
			return -1;
		}
		return 1;
	}
	if (in_list(ignored_flags, arg) || has_prefix(ignored_prefixes, arg))
		return 1;
	for (i = 0; i < sizeof(refused_opts) / sizeof(refused_opts[0]); i++) {
		if (!strcmp(refused_opts[i].opt, arg)) {
			fprintf(stderr, "foliofs: -o %s is not supported: %s\n",
				arg, refused_opts[i].why);
			return -1;
		}
	}
	return 0;
}

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct options *o = data;

	switch (key) {
	case KEY_HELP:
		o->help = 1;
		return 0;
	case KEY_VERSION:
		o->version = 1;
		return 0;
	case KEY_FOREGROUND:
		o->foreground = 1;
		return 0;
	case KEY_DEBUG:
		o->debug = 1;
		o->foreground = 1;
		return 0;
	case KEY_IGNORED:
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (!o->image) {
			o->image = strdup(arg);
			return 0;
		}
		if (!o->mountpoint) {
			o->mountpoint = strdup(arg);
			return 0;
		}
		fprintf(stderr, "foliofs: unexpected argument '%s'\n", arg);
		o->bad = 1;
		return -1;
	default:
		if (arg[0] == '-') {
			fprintf(stderr, "foliofs: unknown argument '%s' "
				"(see foliofs --help)\n", arg);
		} else {
			switch (generic_option(o, arg)) {
			case 1:
				return 0;
			case 0:
				fprintf(stderr, "foliofs: unknown option '-o %s' "
					"(see foliofs --help)\n", arg);
				break;
			}
		}
		o->bad = 1;
		return -1;
	}
}

/* parse_size() - "4096", "64K", "1.5G", "2GiB" into bytes; -EINVAL if not. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	double v;
	double mult = 1;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mult = 1024.0; end++; break;
	case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
	case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
	case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
	}
	if (mult > 1 && (!strcmp(end, "iB") || !strcmp(end, "B")))
		end += strlen(end);
	if (*end || v * mult > 18e18)
		return -EINVAL;
	*out = (uint64_t)(v * mult);
	return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < 0 || v > 86400.0 * 365)
		return -EINVAL;
	*out = v;
	return 0;
}

static void human_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB",
					    "PiB" };
	double v = bytes;
	int i = 0;

	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, unit[i]);
}

struct config {
	struct foliofs_mount_opts	mount;
	uint64_t			size;
	unsigned int			max_threads;
};

#define BAD_OPT(name, val) do {						\
	fprintf(stderr, "foliofs: bad value for -o %s: '%s'\n", name, val); \
	return -EINVAL;							\
} while (0)

/* check_options() - every -o value into @c and fe; -EINVAL (said) if any
 * is malformed. */
static int check_options(const struct options *o, struct config *c)
{
	unsigned long v;

	memset(c, 0, sizeof(*c));
	c->size = DEFAULT_IMAGE_SIZE;
	c->max_threads = 16;
	fe.attr_timeout = 1.0;
	fe.entry_timeout = 1.0;
	fe.negative_timeout = 1.0;
	fe.kcache = false;

	if (o->size && (parse_size(o->size, &c->size) || c->size == 0))
		BAD_OPT("size", o->size);
	if (o->cache_size && parse_size(o->cache_size, &c->mount.cache_bytes))
		BAD_OPT("cache_size", o->cache_size);
	if (o->dirty_bytes && parse_size(o->dirty_bytes, &c->mount.dirty_bytes))
		BAD_OPT("dirty_bytes", o->dirty_bytes);
	if (o->dirty_background_bytes &&
	    parse_size(o->dirty_background_bytes,
		       &c->mount.dirty_background_bytes))
		BAD_OPT("dirty_background_bytes", o->dirty_background_bytes);
	if (o->dirty_expire_ms) {
		if (parse_uint(o->dirty_expire_ms, UINT32_MAX, &v))
			BAD_OPT("dirty_expire_ms", o->dirty_expire_ms);
		c->mount.dirty_expire_ms = v;
	}
	if (o->commit_ms) {
		if (parse_uint(o->commit_ms, UINT32_MAX, &v))
			BAD_OPT("commit_ms", o->commit_ms);
		c->mount.commit_ms = v;
	}
	if (o->flusher_threads) {
		if (parse_uint(o->flusher_threads, 256, &v))
			BAD_OPT("flusher_threads", o->flusher_threads);
		c->mount.flusher_threads = v;
	}
	if (o->max_threads) {
		if (parse_uint(o->max_threads, 1024, &v) || v == 0)
			BAD_OPT("max_threads", o->max_threads);
		c->max_threads = v;
	}
	if (o->attr_timeout && parse_seconds(o->attr_timeout,
					     &fe.attr_timeout))
		BAD_OPT("attr_timeout", o->attr_timeout);
	if (o->entry_timeout && parse_seconds(o->entry_timeout,
					      &fe.entry_timeout))
		BAD_OPT("entry_timeout", o->entry_timeout);
	if (o->negative_timeout && parse_seconds(o->negative_timeout,
						 &fe.negative_timeout))
		BAD_OPT("negative_timeout", o->negative_timeout);
	if (o->kcache) {
		if (!strcmp(o->kcache, "on") || !strcmp(o->kcache, "1"))
			fe.kcache = true;
		else if (!strcmp(o->kcache, "writeback"))
			fe.kcache = fe.wbcache = true;
		else if (strcmp(o->kcache, "off") && strcmp(o->kcache, "0"))
			BAD_OPT("kcache", o->kcache);
	}
	c->mount.readonly = o->readonly;
	c->mount.no_direct = o->no_direct;
	return 0;
}

/* ---- Mounting ---------------------------------------------------------------- */

/* check_mountpoint() - an existing, empty directory, or say why not. */
static int check_mountpoint(const char *path)
{
	struct dirent *de;
	struct stat st;
	DIR *dir;
	int ret = 0;

	if (stat(path, &st)) {
		fprintf(stderr, "foliofs: mountpoint %s: %s\n", path,
			strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "foliofs: mountpoint %s is not a directory\n",
			path);
		return -ENOTDIR;
	}
	dir = opendir(path);
	if (!dir) {
		fprintf(stderr, "foliofs: mountpoint %s: %s\n", path,
			strerror(errno));
		return -errno;
	}
	while ((de = readdir(dir))) {
		if (!is_dot(de->d_name)) {
			fprintf(stderr, "foliofs: mountpoint %s is not empty\n",
				path);
			ret = -ENOTEMPTY;
			break;
		}
	}
	closedir(dir);
	return ret;
}

static int check_dev_fuse(void)
{
	if (access("/dev/fuse", R_OK | W_OK) == 0)
		return 0;
	if (errno == ENOENT)
		fprintf(stderr, "foliofs: /dev/fuse is missing: load the fuse "
			"module (modprobe fuse), or in a container pass the "
			"device in (--device /dev/fuse)\n");
	else
		fprintf(stderr, "foliofs: cannot open /dev/fuse: %s\n",
			strerror(errno));
	return -ENODEV;
}

/* absolute() - @path made absolute, so that it survives the daemon's
 * chdir("/"); malloc'ed, NULL if out of memory. */
static char *absolute(const char *path)
{
	char cwd[PATH_MAX];
	char *out;

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return strdup(path);
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

/* prepare_image() - create and format @image if it is missing. */
static int prepare_image(const char *image, const struct config *c)
{
	struct foliofs_mkfs_opts mo = { .size = c->size };
	struct stat st;
	char human[32];
	const char *why;
	int ret;

	if (!stat(image, &st))
		return 0;
	if (errno != ENOENT) {
		fprintf(stderr, "foliofs: %s: %s\n", image, strerror(errno));
		return -errno;
	}
	if (c->mount.readonly) {
		fprintf(stderr, "foliofs: %s does not exist (not created on a "
			"read-only mount)\n", image);
		return -ENOENT;
	}
	ret = foliofs_mkfs(image, &mo);
	if (ret) {
		why = foliofs_strerror();
		fprintf(stderr, "foliofs: cannot create %s: %s\n", image,
			*why ? why : strerror(-ret));
		/* Leave no half-formatted image behind. */
		if (ret != -EEXIST)
			unlink(image);
		return ret;
	}
	human_size(c->size, human, sizeof(human));
	printf("foliofs: created %s (%s)\n", image, human);
	fflush(stdout);
	return 0;
}

static int mount_engine(const char *image, const struct config *c)
{
	const char *why;
	int ret;

	ret = foliofs_mount(image, &c->mount, &fe.fs);
	if (!ret)
		return 0;
	why = foliofs_strerror();
	if (ret == -EWOULDBLOCK)
		fprintf(stderr, "foliofs: %s is in use: another process has it "
			"mounted\n", image);
	else if (ret == -EUCLEAN)
		fprintf(stderr, "foliofs: cannot mount %s: %s (fsck.foliofs "
			"checks it)\n", image,
			*why ? why : "not a usable foliofs volume");
	else
		fprintf(stderr, "foliofs: cannot mount %s: %s\n", image,
			*why ? why : strerror(-ret));
	return ret;
}

/*
 * A daemon must fork before foliofs_mount() starts the engine's threads,
 * which a fork would not carry over; fuse_daemonize() forks too late and
 * cannot pass a failure back. So: fork first, and let the parent wait on a
 * pipe for the child's word, exiting with the child's status if it dies
 * without one. A failed mount therefore still exits non-zero, after the
 * child has cleaned up.
 */
static int daemon_start(void)
{
	int fds[2];
	pid_t pid;
	int status;
	char c;

	if (pipe2(fds, O_CLOEXEC)) {
		perror("foliofs: pipe");
		exit(1);
	}
	pid = fork();
	if (pid < 0) {
		perror("foliofs: fork");
		exit(1);
	}
	if (pid > 0) {
		close(fds[1]);
		if (read(fds[0], &c, 1) == 1)
			_exit(c);
		if (waitpid(pid, &status, 0) == pid && WIFEXITED(status))
			_exit(WEXITSTATUS(status) ? WEXITSTATUS(status) : 1);
		_exit(1);
	}
	close(fds[0]);
	return fds[1];
}

/* daemon_ready() - mounted: detach, and let the parent exit 0. */
static void daemon_ready(int fd)
{
	int null;
	char c = 0;

	if (fd < 0)
		return;
	setsid();
	if (chdir("/")) {
		/* a daemon in a removed cwd is no worse */
	}
	null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		fflush(stdout);
		fflush(stderr);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 2)
			close(null);
	}
	if (write(fd, &c, 1) != 1) {
		/* the parent is gone; nobody to tell */
	}
	close(fd);
}

/* ---- Statistics socket --------------------------------------------------- */

/*
 * One thread answers each connection with one JSON object (stats_json())
 * and closes it. It never waits on a client for long: accepted sockets are
 * non-blocking, a client that has not taken the answer after
 * STATS_SEND_MS is dropped, and one that went away costs an EPIPE (never a
 * SIGPIPE: MSG_NOSIGNAL). The main thread stops it by writing to a pipe
 * the thread polls beside the listening socket.
 *
 * The socket is named after the mount's st_dev, which the kernel gives the
 * FUSE superblock at mount: read from /proc/self/mountinfo, since a stat()
 * of the mountpoint would wait on our own session, which is not serving
 * yet. Only the main thread touches `stats`, but for the fields the server
 * thread reads, which are set before it starts and not changed until it
 * has been joined.
 */
#define STATS_DIR	"/run/foliofs"
#define STATS_SEND_MS	1000
#define STATS_JSON_MAX	4096

struct stats_server {
	int		listen_fd;	/* -1: not serving */
	int		stop[2];	/* pipe: a byte in stop[1] stops it */
	pthread_t	thread;
	dev_t		dev;		/* the mount's st_dev */
	ino_t		sock_ino;	/* of our socket file, to unlink only it */
	char		path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char	*image;		/* absolute */
	const char	*mountpoint;	/* canonical */
	struct timespec	start;		/* CLOCK_MONOTONIC, at mount */
};

static struct stats_server stats = { .listen_fd = -1, .stop = { -1, -1 } };

/* unescape_octal() - undo mountinfo's \ooo escapes (space, tab, newline,
 * backslash) in place. */
static void unescape_octal(char *s)
{
	char *out = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
					(s[3] - '0'));
			s += 4;
		} else {
			*out++ = *s++;
		}
	}
	*out = '\0';
}

/*
 * mount_dev() - the st_dev of the FUSE mount at @mnt (canonical path): the
 * major:minor of the last (topmost) mountinfo line for @mnt of type
 * fuse.foliofs, or plain fuse where the kernel has no subtypes.
 * Return: 0, -ENOENT if there is none, or -errno reading mountinfo.
 */
static int mount_dev(const char *mnt, dev_t *dev)
{
	unsigned int major, minor;
	char *line = NULL, *mp = NULL, *type = NULL, *sep;
	size_t cap = 0;
	int ret = -ENOENT;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - TYPE ...;
		 * paths have their blanks escaped, so " - " is the separator. */
		sep = strstr(line, " - ");
		if (!sep ||
		    sscanf(line, "%*u %*u %u:%u %*s %ms", &major, &minor,
			   &mp) != 3)
			continue;
		if (sscanf(sep, " - %ms", &type) == 1) {
			unescape_octal(mp);
			if (!strcmp(mp, mnt) && (!strcmp(type, "fuse.foliofs") ||
						 !strcmp(type, "fuse"))) {
				*dev = makedev(major, minor);
				ret = 0;
			}
		}
		free(mp);
		free(type);
		mp = type = NULL;
	}
	free(line);
	fclose(f);
	return ret;
}

/* A bounded string builder: what does not fit is cut, and said so. */
struct jbuf {
	char	*p;
	size_t	len;
	size_t	cap;
	bool	cut;
};

__attribute__((format(printf, 2, 3)))
static void jprintf(struct jbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->cut)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len)
		b->cut = true;
	else
		b->len += n;
}

/* jstring() - @s as a JSON string: quotes, backslashes and control
 * characters escaped; other bytes as they are. */
static void jstring(struct jbuf *b, const char *s)
{
	jprintf(b, "\"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			jprintf(b, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			jprintf(b, "\\u%04x", (unsigned char)*s);
		else
			jprintf(b, "%c", *s);
	}
	jprintf(b, "\"");
}

#define JU64(b, st, field) \
	jprintf(b, ",\"" #field "\":%llu", (unsigned long long)(st)->field)

/*
 * stats_json() - one line of JSON: what foliofs_stats() and
 * foliofs_statfs() say, with the time, the mount and the daemon.
 * Return: its length (without a NUL), or -errno.
 */
static int stats_json(char *buf, size_t cap)
{
	struct jbuf b = { .p = buf, .cap = cap };
	struct foliofs_stats st;
	struct foliofs_statfs sf;
	struct timespec now, mono;
	double uptime;
	int ret, i;

	ret = foliofs_stats(fe.fs, &st);
	if (ret)
		return ret;
	ret = foliofs_statfs(fe.fs, &sf);
	if (ret)
		return ret;
	clock_gettime(CLOCK_REALTIME, &now);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	uptime = (double)(mono.tv_sec - stats.start.tv_sec) +
		 (mono.tv_nsec - stats.start.tv_nsec) / 1e9;

	jprintf(&b, "{\"foliofs_stats\":1,\"version\":");
	jstring(&b, foliofs_version());
	jprintf(&b, ",\"time\":%lld.%06ld,\"uptime\":%.6f,\"pid\":%ld,"
		"\"dev\":%llu,\"mountpoint\":", (long long)now.tv_sec,
		now.tv_nsec / 1000, uptime, (long)getpid(),
		(unsigned long long)stats.dev);
	jstring(&b, stats.mountpoint);
	jprintf(&b, ",\"image\":");
	jstring(&b, stats.image);
	jprintf(&b, ",\"block_size\":%llu",
		(unsigned long long)sf.block_size);
	JU64(&b, &st, cached_bytes);
	jprintf(&b, ",\"cached_bytes_by_order\":[");
	for (i = 0; i < 10; i++)
		jprintf(&b, "%s%llu", i ? "," : "",
			(unsigned long long)st.cached_bytes_by_order[i]);
	jprintf(&b, "]");
	JU64(&b, &st, cache_limit_bytes);
	JU64(&b, &st, hits);
	JU64(&b, &st, misses);
	JU64(&b, &st, readahead_pages);
	JU64(&b, &st, dirty_bytes);
	JU64(&b, &st, writeback_bytes);
	JU64(&b, &st, written_bytes);
	JU64(&b, &st, writeback_errors);
	JU64(&b, &st, reserved_blocks);
	JU64(&b, &st, pinned_folios);
	JU64(&b, &st, reclaimed_folios);
	JU64(&b, &st, splits);
	JU64(&b, &st, split_failures);
	JU64(&b, &st, throttled_writes);
	JU64(&b, &st, commits);
	JU64(&b, &st, log_bytes);
	JU64(&b, &st, log_used_bytes);
	JU64(&b, &st, log_size_bytes);
	JU64(&b, &st, checkpoints);
	JU64(&b, &st, inodes);
	JU64(&b, &st, free_blocks);
	JU64(&b, &st, total_blocks);
	jprintf(&b, "}\n");
	/* Only paths of thousands of bytes could do this. */
	return b.cut ? -ENAMETOOLONG : (int)b.len;
}

/* stats_answer() - send the answer to a connected, non-blocking @fd, giving
 * up when the client goes away or takes longer than STATS_SEND_MS. */
static void stats_answer(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	char buf[STATS_JSON_MAX];
	struct timespec t0, t;
	size_t off = 0;
	ssize_t n;
	int len, left;

	len = stats_json(buf, sizeof(buf));
	if (len < 0) {
		len = snprintf(buf, sizeof(buf), "{\"error\":\"%s\"}\n",
			       strerror(-len));
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (off < (size_t)len) {
		n = send(fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			off += n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			return;		/* gone: EPIPE, ECONNRESET */
		clock_gettime(CLOCK_MONOTONIC, &t);
		left = STATS_SEND_MS - (int)((t.tv_sec - t0.tv_sec) * 1000 +
					     (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0 || poll(&p, 1, left) <= 0)
			return;		/* a client that reads nothing */
	}
}

/* The server thread. Registered with the engine by foliofs_stats(). */
static void *stats_thread(void *arg)
{
	struct pollfd pfd[2] = {
		{ .fd = stats.listen_fd, .events = POLLIN },
		{ .fd = stats.stop[0], .events = POLLIN },
	};
	int fd;

	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		if (pfd[0].revents & (POLLERR | POLLNVAL))
			break;
		if (!(pfd[0].revents & POLLIN))
			continue;
		fd = accept4(stats.listen_fd, NULL, NULL,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			/* EMFILE, ENOBUFS, ...: the connection stays queued;
			 * wait a little (for the stop pipe) rather than spin. */
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				poll(&pfd[1], 1, 100);
			continue;
		}
		stats_answer(fd);
		close(fd);
	}
	foliofs_thread_exit();
	return NULL;
}

/*
 * stats_dir() - make the directory the socket goes in: /run/foliofs (0755)
 * if we may write there, else /run/user/<uid>/foliofs (0700) for a daemon
 * of an unprivileged user. Return: 0 and @dir, or -errno.
 */
static int stats_dir(char *dir, size_t len)
{
	char user[64];

	if (!mkdir(STATS_DIR, 0755))
		chmod(STATS_DIR, 0755);		/* whatever the umask */
	if (access(STATS_DIR, W_OK | X_OK) == 0) {
		snprintf(dir, len, "%s", STATS_DIR);
		return 0;
	}
	snprintf(user, sizeof(user), "/run/user/%u", (unsigned int)geteuid());
	if (access(user, W_OK | X_OK))
		return -EACCES;
	snprintf(dir, len, "%s/foliofs", user);
	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

/*
 * stats_start() - serve statistics for the mount at @mnt (canonical). A
 * failure is said and leaves the mount without statistics; the mount goes
 * on. Only members of the mount's users may connect: the socket is 0600,
 * or 0666 with allow_other.
 */
static void stats_start(const char *mnt, const char *image, bool allow_other)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	sigset_t block, old;
	char dir[PATH_MAX];
	const char *what;
	struct stat st;
	int fd = -1, ret;

	stats.image = image;
	stats.mountpoint = mnt;
	clock_gettime(CLOCK_MONOTONIC, &stats.start);
	what = "finding the mount in /proc/self/mountinfo";
	ret = mount_dev(mnt, &stats.dev);
	if (ret)
		goto out_fail;
	what = "making " STATS_DIR;
	ret = stats_dir(dir, sizeof(dir));
	if (ret)
		goto out_fail;
	what = "naming the socket";
	ret = -ENAMETOOLONG;
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%llu.sock",
			     dir, (unsigned long long)stats.dev) >=
	    sizeof(sa.sun_path))
		goto out_fail;
	what = sa.sun_path;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out_errno;
	/* A socket left by a daemon that died: its mount is gone, so the
	 * number is free again. */
	if (!lstat(sa.sun_path, &st) && S_ISSOCK(st.st_mode))
		unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		goto out_errno;
	if (chmod(sa.sun_path, allow_other ? 0666 : 0600) ||
	    lstat(sa.sun_path, &st) || listen(fd, 16))
		goto out_unlink;
	stats.sock_ino = st.st_ino;
	memcpy(stats.path, sa.sun_path, sizeof(stats.path));
	if (pipe2(stats.stop, O_CLOEXEC))
		goto out_unlink;
	stats.listen_fd = fd;

	/* As the engine's threads: the signals that end the session must
	 * land on a libfuse thread. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	ret = pthread_create(&stats.thread, NULL, stats_thread, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		errno = ret;
		stats.listen_fd = -1;
		close(stats.stop[0]);
		close(stats.stop[1]);
		stats.stop[0] = stats.stop[1] = -1;
		goto out_unlink;
	}
	return;

out_unlink:
	ret = -errno;
	unlink(sa.sun_path);
	stats.path[0] = '\0';
	goto out_close;
out_errno:
	ret = -errno;
out_close:
	if (fd >= 0)
		close(fd);
out_fail:
	fprintf(stderr, "foliofs: no statistics for foliofs-stat: %s: %s\n",
		what, strerror(-ret));
}

/* stats_stop() - stop the server and remove its socket (if it is still
 * ours: the number may already belong to a newer mount). */
static void stats_stop(void)
{
	struct stat st;
	char c = 0;

	if (stats.listen_fd < 0)
		return;
	if (write(stats.stop[1], &c, 1) != 1) {
		/* cannot happen: an empty pipe */
	}
	pthread_join(stats.thread, NULL);
	if (!lstat(stats.path, &st) && st.st_ino == stats.sock_ino)
		unlink(stats.path);
	close(stats.listen_fd);
	close(stats.stop[0]);
	close(stats.stop[1]);
	stats.listen_fd = stats.stop[0] = stats.stop[1] = -1;
}

/* session_args() - what fuse_session_new() is told: the kernel options. */
static int session_args(const struct options *o, const char *image,
			struct fuse_args *args)
{
	char *opts = NULL;
	char *fsname;
	int ret = -ENOMEM;

	if (fuse_opt_add_arg(args, "foliofs"))
		return -ENOMEM;
	if (o->debug && fuse_opt_add_arg(args, "-d"))
		return -ENOMEM;
	if (asprintf(&fsname, "fsname=%s", image) < 0)
		return -ENOMEM;
	if (fuse_opt_add_opt(&opts, "default_permissions") ||
	    fuse_opt_add_opt(&opts, "subtype=foliofs") ||
	    fuse_opt_add_opt_escaped(&opts, fsname) ||
	    (o->allow_other && fuse_opt_add_opt(&opts, "allow_other")) ||
	    (o->readonly && fuse_opt_add_opt(&opts, "ro")) ||
	    (o->kern_opts && fuse_opt_add_opt(&opts, o->kern_opts)))
		goto out_free;
	if (fuse_opt_add_arg(args, "-o") || fuse_opt_add_arg(args, opts))
		goto out_free;
	ret = 0;
out_free:
	free(fsname);
	free(opts);
	return ret;
}

/*
 * run_session() - mount at @mnt (o->mountpoint made canonical) and serve
 * until the kernel or a signal ends the session.
 */
static int run_session(const struct options *o, const char *image,
		       const char *mnt, const struct config *c, int ready_fd)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *lc;
	struct fuse_session *se;
	int ret = 1;

	if (session_args(o, image, &args)) {
		fprintf(stderr, "foliofs: out of memory\n");
		goto out_args;
	}
	se = fuse_session_new(&args, &ffs_ops, sizeof(ffs_ops), NULL);
	if (!se)
		goto out_args;	/* libfuse said why */
	if (fuse_set_signal_handlers(se))
		goto out_destroy;
	if (fuse_session_mount(se, o->mountpoint))
		goto out_signals;	/* libfuse said why */

	lc = fuse_loop_cfg_create();
	if (!lc) {
		fprintf(stderr, "foliofs: out of memory\n");
		goto out_unmount;
	}
	fuse_loop_cfg_set_clone_fd(lc, 1);
	fuse_loop_cfg_set_max_threads(lc, c->max_threads);
	/* Keep every worker: retiring one unregisters it from RCU. */
	fuse_loop_cfg_set_idle_threads(lc, c->max_threads);

	/* Before daemon_ready(): when `foliofs` or mount(8) returns, the
	 * socket is there. */
	stats_start(mnt, image, o->allow_other);
	daemon_ready(ready_fd);
	/* A positive return is the signal that ended the session: a
	 * clean stop. */
	ret = fuse_session_loop_mt(se, lc) < 0 ? 1 : 0;
	stats_stop();
	fuse_loop_cfg_destroy(lc);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_session_destroy(se);
out_args:
	fuse_opt_free_args(&args);
	return ret;
}

static void free_options(struct options *o)
{
	char **s[] = { &o->image, &o->mountpoint, &o->size, &o->cache_size,
		       &o->dirty_bytes, &o->dirty_background_bytes,
		       &o->dirty_expire_ms, &o->commit_ms, &o->flusher_threads,
		       &o->attr_timeout, &o->entry_timeout,
		       &o->negative_timeout, &o->kcache, &o->max_threads,
		       &o->kern_opts };
	size_t i;

	for (i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		free(*s[i]);
		*s[i] = NULL;
	}
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options o = { 0 };
	struct config c;
	sigset_t stop, old;
	char *image = NULL, *mnt = NULL;
	int ready_fd = -1;
	int ret = 1;

	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc)) {
		if (!o.bad)
			fprintf(stderr, "foliofs: bad arguments (see foliofs "
				"--help)\n");
		goto out;
	}
	if (o.help) {
		usage(stdout);
		ret = 0;
		goto out;
	}
	if (o.version) {
		printf("foliofs %s (libfoliofs %s, libfuse %s)\n", FOLIOFS_TOOL_VERSION,
		       foliofs_version(), fuse_pkgversion());
		ret = 0;
		goto out;
	}
	if (!o.image || !o.mountpoint) {
		usage(stderr);
		goto out;
	}
	if (check_options(&o, &c))
		goto out;
	if (check_dev_fuse() || check_mountpoint(o.mountpoint))
		goto out;
	image = absolute(o.image);
	if (!image) {
		fprintf(stderr, "foliofs: out of memory\n");
		goto out;
	}
	/* Canonical now: once mounted, resolving it would ask ourselves. */
	mnt = realpath(o.mountpoint, NULL);
	if (!mnt) {
		fprintf(stderr, "foliofs: mountpoint %s: %s\n", o.mountpoint,
			strerror(errno));
		goto out;
	}
	if (pthread_key_create(&thread_key, thread_destroy)) {
		fprintf(stderr, "foliofs: pthread_key_create failed\n");
		goto out;
	}
	if (!o.foreground)
		ready_fd = daemon_start();

	if (prepare_image(image, &c))
		goto out;
	/*
	 * The engine's threads inherit this mask: the signals that end the
	 * session must land on a libfuse thread, whose blocking read they
	 * interrupt.
	 */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	sigaddset(&stop, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &stop, &old);
	ret = mount_engine(image, &c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		ret = 1;
		goto out;
	}
	fe.debug = o.debug;

	ret = run_session(&o, image, mnt, &c, ready_fd);

	/* Every worker has been joined; the kernel will release nothing
	 * more. */
	release_all();
	if (foliofs_unmount(fe.fs)) {
		fprintf(stderr, "foliofs: writing %s at unmount failed; the "
			"next mount recovers from the log\n", image);
		ret = 1;
	}
	fe.fs = NULL;
	foliofs_thread_exit();
out:
	free(mnt);
	free(image);
	free_options(&o);
	fuse_opt_free_args(&args);
	return ret;
}
