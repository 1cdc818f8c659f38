/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * foliofs.h - the one header a program that embeds foliofs includes.
 *
 * Conventions of the public API:
 *  - every function returns 0 (or a count) on success and a negative errno
 *    on failure, and is safe to call from any thread;
 *  - a thread that calls into the engine is registered with the engine's
 *    RCU domain on its first call; call foliofs_thread_exit() before such a
 *    thread exits.
 *
 * This release exports the library's identity and thread registration; the
 * storage API (format, mount, files and directories) arrives with the
 * persistence layer.
 */
#ifndef FOLIOFS_H
#define FOLIOFS_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FOLIOFS_BUILDING)
#define FOLIOFS_API __attribute__((visibility("default")))
#else
#define FOLIOFS_API
#endif

#define FOLIOFS_VERSION_MAJOR 0
#define FOLIOFS_VERSION_MINOR 1
#define FOLIOFS_VERSION_PATCH 0

/**
 * foliofs_version() - the library's version as "MAJOR.MINOR.PATCH".
 * Return: a static string.
 */
FOLIOFS_API const char *foliofs_version(void);

/**
 * foliofs_thread_init() - register the calling thread with the engine's RCU
 * domain. Calling it again on a registered thread does nothing.
 * Return: 0.
 */
FOLIOFS_API int foliofs_thread_init(void);

/**
 * foliofs_thread_exit() - unregister the calling thread. It must not be
 * inside any foliofs call.
 */
FOLIOFS_API void foliofs_thread_exit(void);

#ifdef __cplusplus
}
#endif

#endif /* FOLIOFS_H */
