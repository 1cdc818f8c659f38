/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * isolate.h - run each cmocka test of a binary in its own process, so that
 * an engine BUG() (an abort) or a hang fails one test, not the whole run.
 */
#ifndef FOLIOFS_TEST_ISOLATE_H
#define FOLIOFS_TEST_ISOLATE_H

#include <stddef.h>

/* A test still running after this long is killed and fails. */
#define ISOLATE_TIMEOUT_S	60

struct CMUnitTest;

/*
 * run_isolated() - with no argument, re-execute this binary once per test
 * in @tests, naming the test; with a test name (argv[1]), run just that one
 * in this process (handy under gdb).
 * Return: 0 if every test passed, 1 otherwise (the exit status for main).
 */
int run_isolated(const struct CMUnitTest *tests, size_t n, int argc,
		 char **argv);

#endif /* FOLIOFS_TEST_ISOLATE_H */
