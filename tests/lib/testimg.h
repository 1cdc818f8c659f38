/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * testimg.h - image files for tests that write through the backing store.
 *
 * Images go in $FOLIOFS_TEST_DIR (default: the current directory, which is
 * the build directory under meson test, on the disk filesystem), named
 * "<prefix>.<pid>.<name>" so parallel runs never collide and one glob
 * removes a run's leftovers.
 */
#ifndef FOLIOFS_TEST_IMG_H
#define FOLIOFS_TEST_IMG_H

#include <stddef.h>

/* BACKING_NO_DIRECT if the test directory refuses O_DIRECT, else 0. */
extern unsigned int testimg_open_flags;

const char *testimg_dir(void);
void testimg_path(char *path, size_t size, const char *name);

/*
 * testimg_probe() - name this run's images after @prefix and find out
 * whether the directory takes O_DIRECT (saying so when it does not).
 * Return: 0, or -1 when no image can be created there (a group setup's
 * failure).
 */
int testimg_probe(const char *prefix);

/* Remove this run's images, also those a failed test left behind. */
int testimg_cleanup(void);

#endif /* FOLIOFS_TEST_IMG_H */
