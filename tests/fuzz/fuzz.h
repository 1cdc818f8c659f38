/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz.h - the libFuzzer entry points a target defines. libFuzzer's own
 * main calls them under clang -fsanitize=fuzzer; replay.c's main calls them
 * in a plain build.
 */
#ifndef FOLIOFS_FUZZ_H
#define FOLIOFS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Once, before the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* One input; returns 0. Crashing, leaking or hanging is the finding. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* FOLIOFS_FUZZ_H */
