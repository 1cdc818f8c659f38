// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * mkfs.foliofs - format an image file or block device as an empty foliofs
 * volume.
 *
 *	mkfs.foliofs [--size SIZE] [--block-size 4096] [--label L] [--force]
 *		     IMAGE
 *
 * Exit status: 0 formatted, 1 refused or failed (the reason on stderr).
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "foliofs.h"
#include "progress.h"

static struct progress_bar bar;

static void usage(FILE *out)
{
	fprintf(out,
"usage: mkfs.foliofs [--size SIZE] [--block-size 4096] [--label LABEL]\n"
"                    [--force] IMAGE\n"
"\n"
"  -s, --size SIZE        volume size; K, M, G, T suffixes (powers of 1024).\n"
"                         Default: the size of an existing IMAGE, else 2G\n"
"  -b, --block-size N     bytes per block; only 4096 for now\n"
"  -L, --label LABEL      up to 64 bytes\n"
"  -f, --force            format over an existing foliofs volume\n"
"  -h, --help             print this help\n"
"  -V, --version          print the version\n");
}

/* parse_size() - "4096", "64K", "1.5G", "2GiB" into bytes; -EINVAL if not. */
static int parse_size(const char *s, uint64_t *out)
{
	double mult = 1;
	char *end;
	double v;

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

int main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "label", required_argument, NULL, 'L' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct foliofs_mkfs_opts mo = { 0 };
	struct foliofs_statfs sf;
	struct foliofs *fs;
	const char *image, *why;
	char human[32];
	uint64_t bs;
	struct stat st;
	int c, ret;

	while ((c = getopt_long(argc, argv, "s:b:L:fhV", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_size(optarg, &mo.size) || !mo.size) {
				fprintf(stderr, "mkfs.foliofs: bad size '%s'\n",
					optarg);
				return 1;
			}
			break;
		case 'b':
			if (parse_size(optarg, &bs) || bs != 4096) {
				fprintf(stderr, "mkfs.foliofs: bad block size "
					"'%s' (only 4096 is supported)\n",
					optarg);
				return 1;
			}
			mo.block_size = bs;
			break;
		case 'L':
			if (strlen(optarg) > 64) {
				fprintf(stderr, "mkfs.foliofs: the label is "
					"longer than 64 bytes\n");
				return 1;
			}
			mo.label = optarg;
			break;
		case 'f':
			mo.force = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("mkfs.foliofs (libfoliofs %s)\n",
			       foliofs_version());
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 1;
	}
	image = argv[optind];
	/* A new file gets 2 GiB; an existing one keeps its size. */
	if (!mo.size && stat(image, &st) && errno == ENOENT)
		mo.size = 2ULL << 30;

	progress_start(&bar);
	ret = foliofs_mkfs(image, &mo);
	progress_stop(&bar);
	if (ret == -EEXIST) {
		fprintf(stderr, "mkfs.foliofs: %s already holds a foliofs "
			"volume; use --force to overwrite\n", image);
		return 1;
	}
	if (ret) {
		why = foliofs_strerror();
		fprintf(stderr, "mkfs.foliofs: cannot format %s: %s\n",
			image, *why ? why : strerror(-ret));
		return 1;
	}

	/* The summary reads the new volume back, which checks it mounts. */
	ret = foliofs_mount(image, &(struct foliofs_mount_opts){ .readonly = 1 },
			    &fs);
	if (ret) {
		why = foliofs_strerror();
		fprintf(stderr, "mkfs.foliofs: %s was formatted but does not "
			"mount: %s%s%s\n", image, strerror(-ret),
			*why ? ": " : "", why);
		return 1;
	}
	ret = foliofs_statfs(fs, &sf);
	foliofs_unmount(fs);
	if (ret) {
		fprintf(stderr, "mkfs.foliofs: statfs of %s: %s\n", image,
			strerror(-ret));
		return 1;
	}
	human_size(stat(image, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size :
		   sf.blocks * sf.block_size, human, sizeof(human));
	printf("%s: foliofs volume of %s, %llu data blocks of %llu bytes, "
	       "%llu free%s%s%s\n", image, human,
	       (unsigned long long)sf.blocks,
	       (unsigned long long)sf.block_size,
	       (unsigned long long)sf.bfree,
	       mo.label ? ", label \"" : "", mo.label ? mo.label : "",
	       mo.label ? "\"" : "");
	return 0;
}
