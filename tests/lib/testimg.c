/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * testimg.c - image files for backing-store tests (see testimg.h).
 */
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backing.h"
#include "testimg.h"

unsigned int testimg_open_flags;
static const char *img_prefix = "test";

const char *testimg_dir(void)
{
	const char *dir = getenv("FOLIOFS_TEST_DIR");

	return dir && *dir ? dir : ".";
}

void testimg_path(char *path, size_t size, const char *name)
{
	snprintf(path, size, "%s/%s.%d.%s", testimg_dir(), img_prefix,
		 (int)getpid(), name);
}

int testimg_probe(const char *prefix)
{
	struct backing *b;
	char path[4096];
	int ret;

	img_prefix = prefix;
	testimg_path(path, sizeof(path), "probe");
	ret = backing_open(path, BACKING_CREATE, &b);
	if (ret == -EINVAL) {
		printf("# O_DIRECT not supported on this filesystem (%s): "
		       "testing with BACKING_NO_DIRECT\n", testimg_dir());
		testimg_open_flags = BACKING_NO_DIRECT;
		ret = backing_open(path, BACKING_CREATE | testimg_open_flags, &b);
	}
	if (ret) {
		fprintf(stderr, "cannot create an image in %s: %s\n",
			testimg_dir(), strerror(-ret));
		return -1;
	}
	backing_close(b);
	unlink(path);
	return 0;
}

int testimg_cleanup(void)
{
	char pattern[4096];
	glob_t g;

	testimg_path(pattern, sizeof(pattern), "*");
	if (!glob(pattern, 0, NULL, &g)) {
		for (size_t i = 0; i < g.gl_pathc; i++)
			unlink(g.gl_pathv[i]);
		globfree(&g);
	}
	return 0;
}
