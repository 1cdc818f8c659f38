/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * isolate.c - run each cmocka test of a binary in its own process.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "isolate.h"
#include "rcu.h"

/*
 * An engine BUG() aborts; so that it fails one test and not the run, the
 * binary re-executes itself once per test (cmocka's filter picks the test
 * by name). With a name argument it runs that test in-process.
 */
int run_isolated(const struct CMUnitTest *tests, size_t n, int argc,
		 char **argv)
{
	int failed = 0;

	if (argc > 1) {
		fs_rcu_register_thread();
		cmocka_set_test_filter(argv[1]);
		return _cmocka_run_group_tests(argv[1], tests, n, NULL, NULL) ?
		       1 : 0;
	}
	for (size_t i = 0; i < n; i++) {
		int status;
		pid_t pid;

		fflush(NULL);
		pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			/* A hang fails the test too (an alarm survives exec). */
			alarm(ISOLATE_TIMEOUT_S);
			execl("/proc/self/exe", argv[0], tests[i].name, (char *)NULL);
			perror("exec");
			_exit(127);
		}
		if (waitpid(pid, &status, 0) != pid) {
			perror("waitpid");
			return 1;
		}
		if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
			printf("[  TIMEOUT ] %s: still running after %d s\n",
			       tests[i].name, ISOLATE_TIMEOUT_S);
			failed++;
		} else if (WIFSIGNALED(status)) {
			printf("[  CRASHED ] %s: killed by signal %d\n",
			       tests[i].name, WTERMSIG(status));
			failed++;
		} else if (WEXITSTATUS(status)) {
			failed++;
		}
	}
	printf("[==========] %zu test(s) in separate processes, %d failed\n",
	       n, failed);
	return failed ? 1 : 0;
}

