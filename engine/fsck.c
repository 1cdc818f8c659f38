/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fsck.c - checking a volume that is not mounted.
 *
 * The checker loads the volume the way a read-only mount does, which
 * already verifies both superblocks, the checkpoint's checksums, every log
 * block up to the end of the log, every record against the volume's
 * geometry, and that no block belongs to two extents (the free map is
 * rebuilt from the extents, so "free" and "in use" cannot disagree on
 * disk). It then walks the namespace: every entry names a live inode of
 * the type it says, every directory is named exactly once, and every link
 * count matches the entries that name the inode.
 *
 * Repair: link counts that disagree with the entries are set to what the
 * entries say, through an ordinary read-write mount, so the fix is logged
 * like any change. Nothing else is repaired: damage to the checkpoint or
 * the log's middle means lost metadata, which only a backup restores.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compiler.h"
#include "fs.h"

struct fsck {
	void		(*report)(void *arg, const char *msg);
	void		*arg;
	unsigned int	problems;
	unsigned int	fixable;
};

static void say(struct fsck *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(struct fsck *c, const char *fmt, ...)
{
	char buf[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (c->report)
		c->report(c->arg, buf);
}

struct link_fix {
	uint64_t	ino;
	uint32_t	nlink;
};

/* Walk the namespace; collect link counts to fix in @fixes. */
static void check_namespace(struct foliofs *fs, struct fsck *c,
			    struct link_fix **fixes, size_t *nfixes)
{
	unsigned long idx;
	struct fs_inode *inode;
	struct xarray refs;	/* ino -> xa_mk_value(count) */
	uint64_t walked = 0;

	xa_init(&refs);
	xa_for_each(&fs->inodes, idx, inode) {
		unsigned long cookie;
		struct fs_dirent *de;

		fs_progress("namespace", ++walked, fs->nr_inodes);
		if (!inode->dir)
			continue;
		xa_for_each(&inode->dir->by_cookie, cookie, de) {
			struct fs_inode *t = xa_load(&fs->inodes, de->ino);
			void *old;

			if (!t) {
				say(c, "entry \"%s\" in directory %llu names inode %llu, which does not exist",
				    de->name, (unsigned long long)inode->ino,
				    (unsigned long long)de->ino);
				c->problems++;
				continue;
			}
			if (de->type != (t->type >> 12)) {
				say(c, "entry \"%s\" in directory %llu says type %u, but inode %llu has mode %o",
				    de->name, (unsigned long long)inode->ino,
				    de->type, (unsigned long long)t->ino,
				    t->mode);
				c->problems++;
			}
			if (de->ino == FOLIOFS_ROOT_INO) {
				say(c, "directory %llu has an entry \"%s\" for the root",
				    (unsigned long long)inode->ino, de->name);
				c->problems++;
			}
			old = xa_load(&refs, de->ino);
			xa_store(&refs, de->ino,
				 xa_mk_value((old ? xa_to_value(old) : 0) + 1));
			if (S_ISDIR(t->type)) {
				/* The child's ".." links its parent. */
				old = xa_load(&refs, inode->ino | (1UL << 62));
				xa_store(&refs, inode->ino | (1UL << 62),
					 xa_mk_value((old ? xa_to_value(old) : 0) + 1));
			}
		}
	}
	xa_for_each(&fs->inodes, idx, inode) {
		void *r = xa_load(&refs, idx);
		void *sub = xa_load(&refs, idx | (1UL << 62));
		uint64_t n = r ? xa_to_value(r) : 0;
		uint64_t want;

		if (S_ISDIR(inode->type)) {
			if (idx != FOLIOFS_ROOT_INO && n != 1) {
				say(c, "directory %llu is named by %llu entries (must be 1)",
				    (unsigned long long)idx,
				    (unsigned long long)n);
				c->problems++;
				continue;
			}
			want = 2 + (sub ? xa_to_value(sub) : 0);
		} else {
			want = n;
		}
		if (!inode->nlink && !n) {
			say(c, "inode %llu was unlinked while open; the next mount deletes it",
			    (unsigned long long)idx);
			continue;
		}
		if (!n && idx != FOLIOFS_ROOT_INO) {
			say(c, "inode %llu has %u links but no entry names it",
			    (unsigned long long)idx, inode->nlink);
			c->problems++;
			continue;
		}
		if (inode->nlink != want) {
			struct link_fix *f;

			say(c, "inode %llu has link count %u, but %llu entries name it",
			    (unsigned long long)idx, inode->nlink,
			    (unsigned long long)want);
			c->problems++;
			c->fixable++;
			f = realloc(*fixes, (*nfixes + 1) * sizeof(**fixes));
			if (f) {
				*fixes = f;
				f[*nfixes].ino = idx;
				f[*nfixes].nlink = (uint32_t)want;
				(*nfixes)++;
			}
		}
		if (S_ISLNK(inode->type) && !inode->symlink) {
			say(c, "symlink %llu has no target",
			    (unsigned long long)idx);
			c->problems++;
		}
	}
	xa_destroy(&refs);
}

static int fix_links(const char *image, struct link_fix *fixes, size_t n)
{
	struct foliofs_mount_opts o = { 0 };
	struct foliofs *fs;
	size_t i;
	int ret;

	ret = foliofs_mount(image, &o, &fs);
	if (ret)
		return ret;
	pthread_rwlock_wrlock(&fs->ns_lock);
	pthread_mutex_lock(&fs->tx_lock);
	for (i = 0; i < n; i++) {
		struct fs_inode *inode = xa_load(&fs->inodes, fixes[i].ino);

		if (!inode)
			continue;
		pthread_mutex_lock(&inode->attr_lock);
		inode->nlink = fixes[i].nlink;
		tx_inode(fs, inode);
		pthread_mutex_unlock(&inode->attr_lock);
	}
	pthread_mutex_unlock(&fs->tx_lock);
	pthread_rwlock_unlock(&fs->ns_lock);
	return foliofs_unmount(fs);
}

int foliofs_fsck(const char *image, unsigned int flags,
		 void (*report)(void *arg, const char *msg), void *arg)
{
	struct fsck c = { report, arg, 0, 0 };
	struct foliofs_mount_opts o = { .readonly = 1 };
	struct link_fix *fixes = NULL;
	size_t nfixes = 0;
	struct space_stats ss;
	struct foliofs *fs;
	char sbmsg[SUPER_MSG_LEN] = "";
	int ret;

	foliofs_thread_init();
	ret = foliofs_mount(image, &o, &fs);
	if (ret == -EUCLEAN) {
		say(&c, "%s", foliofs_strerror());
		if (!(flags & FOLIOFS_FSCK_REPAIR) ||
		    !strstr(foliofs_strerror(), "metadata log is damaged"))
			return FOLIOFS_FSCK_ERRORS;
		/* Keep what the log holds up to the damage: mount past it
		 * and write a checkpoint, which ends the old log. */
		o.readonly = 0;
		ret = fs_mount_path(image, &o, true, &fs);
		if (!ret)
			ret = foliofs_unmount(fs);
		if (ret) {
			say(&c, "repair failed: %s", foliofs_strerror()[0] ?
			    foliofs_strerror() : strerror(-ret));
			return FOLIOFS_FSCK_ERRORS;
		}
		say(&c, "repaired: the volume now ends its history at the "
		    "damage; the transactions after it are lost");
		ret = foliofs_fsck(image, flags & ~FOLIOFS_FSCK_REPAIR,
				   report, arg);
		return ret == FOLIOFS_FSCK_OK ? FOLIOFS_FSCK_FIXED : ret;
	}
	if (ret == -EWOULDBLOCK) {
		say(&c, "%s is mounted; unmount it first", image);
		return FOLIOFS_FSCK_FAILED;
	}
	if (ret) {
		say(&c, "%s", foliofs_strerror()[0] ? foliofs_strerror() :
		    strerror(-ret));
		return FOLIOFS_FSCK_FAILED;
	}
	/* The copy not chosen may be damaged: say so. */
	{
		struct super sb;

		/* A torn copy is what a crash during a superblock write
		 * leaves (super.h); the next mount writes that copy. */
		if (!super_read(fs->store, &sb, sbmsg, sizeof(sbmsg)) &&
		    sbmsg[0])
			say(&c, "note: %s; the other copy is good and the next "
			    "mount rewrites this one", sbmsg);
	}
	if (flags & FOLIOFS_FSCK_VERBOSE)
		say(&c, "%s: %llu blocks of %u bytes, %llu inodes, state %s",
		    image, (unsigned long long)fs->sb.total_blocks,
		    fs->sb.block_size, (unsigned long long)fs->nr_inodes,
		    fs->sb.state == FOLIOFS_STATE_CLEAN ? "clean" :
		    "not cleanly unmounted (the log is replayed on mount)");
	if (space_check(fs->space)) {
		say(&c, "the rebuilt free-space map is inconsistent");
		c.problems++;
	}
	check_namespace(fs, &c, &fixes, &nfixes);
	space_stats(fs->space, &ss);
	if (flags & FOLIOFS_FSCK_VERBOSE)
		say(&c, "%llu of %llu blocks in use, %u problems",
		    (unsigned long long)(ss.allocated + ss.meta),
		    (unsigned long long)ss.nr_blocks, c.problems);
	foliofs_unmount(fs);

	if (!c.problems) {
		free(fixes);
		return FOLIOFS_FSCK_OK;
	}
	if ((flags & FOLIOFS_FSCK_REPAIR) && nfixes) {
		ret = fix_links(image, fixes, nfixes);
		free(fixes);
		if (ret) {
			say(&c, "repair failed: %s", strerror(-ret));
			return FOLIOFS_FSCK_ERRORS;
		}
		say(&c, "fixed %zu link counts", nfixes);
		return c.problems == c.fixable ? FOLIOFS_FSCK_FIXED :
		       FOLIOFS_FSCK_ERRORS;
	}
	free(fixes);
	return FOLIOFS_FSCK_ERRORS;
}
