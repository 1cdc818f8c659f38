// SPDX-License-Identifier: LGPL-2.1-or-later
/* embed-example - foliofs as a library: format, mount, write, read back. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "foliofs.h"

#define CHECK(x) do { long long r_ = (x); if (r_ < 0) {			\
	fprintf(stderr, "%s: %s %s\n", #x, strerror((int)-r_),		\
		foliofs_strerror()); return 1; } } while (0)

int main(void)
{
	char img[] = "/tmp/foliofs-embed-XXXXXX", buf[32] = "";
	struct foliofs_file *f;
	struct foliofs *fs;
	int fd = mkstemp(img);

	CHECK(fd);
	close(fd);
	CHECK(foliofs_mkfs(img, &(struct foliofs_mkfs_opts){
		.size = 64 << 20, .force = 1 }));
	CHECK(foliofs_mount(img, NULL, &fs));
	CHECK(foliofs_open_path(fs, "/hello", O_CREAT | O_RDWR, 0644, &f));
	CHECK(foliofs_write(f, "hello, folio\n", 13, 0));
	CHECK(foliofs_fsync(f, 0));
	CHECK(foliofs_read(f, buf, sizeof(buf) - 1, 0));
	CHECK(foliofs_release(f));
	CHECK(foliofs_unmount(fs));
	unlink(img);
	if (strcmp(buf, "hello, folio\n"))
		return fprintf(stderr, "read back '%s'\n", buf), 1;
	printf("ok\n");
	return 0;
}
