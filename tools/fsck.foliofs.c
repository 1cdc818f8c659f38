// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fsck.foliofs - check an unmounted foliofs volume, and repair what is safe
 * to repair.
 *
 *	fsck.foliofs [-n] [-y|-p] [-v] IMAGE
 *
 * -n checks only; -y and -p repair what foliofs_fsck() can fix safely (the
 * engine asks no questions, so the two are the same). Each problem is
 * printed as it is found. The exit status is e2fsck's: 0 clean, 1 errors
 * fixed, 4 errors left, 8 operational error (and 16 for a usage error).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "foliofs.h"
#include "progress.h"

static struct progress_bar bar;

struct report {
	const char	*image;
	unsigned long	problems;
};

static void report(void *arg, const char *msg)
{
	struct report *r = arg;

	r->problems++;
	progress_stop(&bar);		/* the message gets a clean line */
	printf("%s: %s\n", r->image, msg);
	progress_start(&bar);
	fflush(stdout);
}

static void usage(FILE *out)
{
	fprintf(out,
"usage: fsck.foliofs [-n] [-y|-p] [-v] IMAGE\n"
"\n"
"  -n    check only, change nothing (the default)\n"
"  -y    repair what is safe to repair\n"
"  -p    the same as -y (there is nothing to ask)\n"
"  -v    say more\n"
"\n"
"Exit status: 0 clean, 1 errors fixed, 4 errors left, 8 operational error,\n"
"16 usage error.\n");
}

int main(int argc, char *argv[])
{
	struct report r = { 0 };
	unsigned int flags = 0;
	int readonly = 0;
	int c, ret;

	while ((c = getopt(argc, argv, "nypvhV")) != -1) {
		switch (c) {
		case 'n':
			readonly = 1;
			break;
		case 'y':
		case 'p':
			flags |= FOLIOFS_FSCK_REPAIR;
			break;
		case 'v':
			flags |= FOLIOFS_FSCK_VERBOSE;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("fsck.foliofs (libfoliofs %s)\n",
			       foliofs_version());
			return 0;
		default:
			usage(stderr);
			return 16;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 16;
	}
	if (readonly && (flags & FOLIOFS_FSCK_REPAIR)) {
		fprintf(stderr, "fsck.foliofs: -n cannot go with -y or -p\n");
		return 16;
	}
	r.image = argv[optind];
	progress_start(&bar);
	ret = foliofs_fsck(r.image, flags, report, &r);
	progress_stop(&bar);
	switch (ret) {
	case FOLIOFS_FSCK_OK:
		printf("%s: clean\n", r.image);
		break;
	case FOLIOFS_FSCK_FIXED:
		printf("%s: %lu problem%s found, all fixed\n", r.image,
		       r.problems, r.problems == 1 ? "" : "s");
		break;
	case FOLIOFS_FSCK_ERRORS:
		printf("%s: %lu problem%s found, errors left%s\n", r.image,
		       r.problems, r.problems == 1 ? "" : "s",
		       (flags & FOLIOFS_FSCK_REPAIR) ? "" :
		       " (run with -y to repair)");
		break;
	default:
		fprintf(stderr, "fsck.foliofs: could not check %s\n", r.image);
		ret = FOLIOFS_FSCK_FAILED;
		break;
	}
	return ret;
}
