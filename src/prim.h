/*
 * The platform layer (prim.c): every OS call for memory, files, clocks and
 * futexes goes through here. The bottom layer: it includes no other module.
 * Nothing in these headers is API.
 */
#ifndef SHMVAL_PRIM_H
#define SHMVAL_PRIM_H

#include "shmval.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SHMVAL__LIKELY(x) __builtin_expect(!!(x), 1)
#define SHMVAL__UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * Map @p size bytes of anonymous memory shared with future fork children.
 * With @p sparse, nothing is reserved or accounted up front: the range is
 * address space whose pages are committed by shmval__prim_populate().
 */
int shmval__prim_map_anon(size_t size, bool sparse, void **out);
/*
 * Commit the pages of a page-aligned range of a shared anonymous mapping now,
 * so that running out of memory is SHMVAL_ENOMEM here rather than a fault
 * later; where the kernel cannot (before Linux 5.14) pages are committed as
 * they are first touched.
 */
int shmval__prim_populate(void *addr, size_t size);
/* Unmap a mapping made above (or any page-aligned range of one). */
void shmval__prim_unmap(void *addr, size_t size);
/*
 * Release the physical pages of a page-aligned range of a shared mapping in
 * every process that maps it; the range reads back as zeros afterwards.
 */
void shmval__prim_discard(void *addr, size_t size);
size_t shmval__prim_page_size(void);
/* A 64-bit value that differs between processes and calls (not crypto). */
uint64_t shmval__prim_random64(void);
/* Absolute CLOCK_MONOTONIC deadline @p seconds from now (seconds >= 0). */
void shmval__prim_deadline(double seconds, struct timespec *ts);
double shmval__prim_now(void);       /* CLOCK_MONOTONIC seconds */
uint64_t shmval__prim_wall_ns(void); /* CLOCK_REALTIME nanoseconds */
void shmval__prim_sleep(double seconds);
static inline uint64_t shmval__load64(const unsigned char *p) {
  uint64_t w;
  __builtin_memcpy(&w, p, 8);
  return w;
}

static inline uint64_t shmval__load32(const unsigned char *p) {
  uint32_t w;
  __builtin_memcpy(&w, p, 4);
  return w;
}

static inline uint64_t shmval__hash_round(uint64_t h, uint64_t w) {
  h = (h ^ w) * UINT64_C(0xbf58476d1ce4e5b9);
  return h ^ (h >> 31);
}

/*
 * A seeded 64-bit hash of @p n bytes: 8 bytes a round, then splitmix64's
 * finaliser. A short tail is read with loads that overlap (the last 8 bytes,
 * or two 4-byte words) rather than copied into a zeroed word byte by byte,
 * which would stall the next load on the byte stores. Stored in shared tables
 * (the dict's slots, the name directory's entries), so a change to it is a
 * change of the layout version.
 */
static inline uint64_t shmval__hash(uint64_t seed, const void *key, size_t n) {
  const unsigned char *p = key, *end = p + n;
  uint64_t h = seed ^ ((uint64_t)n * UINT64_C(0x9e3779b97f4a7c15));
  if (n >= 8) {
    for (; end - p > 8; p += 8)
      h = shmval__hash_round(h, shmval__load64(p));
    h = shmval__hash_round(h, shmval__load64(end - 8));
  } else if (n >= 4) {
    h = shmval__hash_round(h, shmval__load32(p) | shmval__load32(end - 4) << 32);
  } else if (n > 0) {
    h = shmval__hash_round(h, (uint64_t)p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16);
  }
  h ^= h >> 30;
  h *= UINT64_C(0x94d049bb133111eb);
  return h ^ (h >> 31);
}

/* A hint to the CPU inside a spin-wait loop. */
static inline void shmval__prim_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/*
 * Futexes in shared memory. Wait while *addr == expected, until woken or the
 * absolute CLOCK_MONOTONIC @p deadline (NULL: forever): 0 (woken, or the word
 * changed: callers re-check) or SHMVAL_ETIMEDOUT. Signals do not end a wait.
 */
int shmval__prim_futex_wait(_Atomic uint32_t *addr, uint32_t expected,
                            const struct timespec *deadline);
void shmval__prim_futex_wake(_Atomic uint32_t *addr, int n);
/* The calling thread's kernel thread id. */
int shmval__prim_tid(void);
bool shmval__prim_past(const struct timespec *deadline);

/* Named shared-memory files. Names are in "/name" form. */
int shmval__prim_shm_create(const char *name, unsigned mode, int *fd);
/*
 * An unnamed file where shm_open() keeps its files, to be named with
 * shmval__prim_shm_link() once complete; SHMVAL__ENOUNNAMED where the system
 * cannot make one (no O_TMPFILE there, or no /proc to link it through).
 */
#define SHMVAL__ENOUNNAMED (-30098)
int shmval__prim_shm_create_unnamed(unsigned mode, int *fd);
/*
 * Give the unnamed file @p fd the name @p name: SHMVAL_EEXIST if it is
 * taken, SHMVAL__ENOUNNAMED if /proc has gone since the file was made.
 */
int shmval__prim_shm_link(int fd, const char *name);
int shmval__prim_shm_open(const char *name, bool rdonly, int *fd);
/* Write @p len bytes at @p off of a file. */
int shmval__prim_write_at(int fd, const void *buf, size_t len, uint64_t off);
int shmval__prim_shm_unlink(const char *name);
/* Size and identity (device, inode) of an open file. */
int shmval__prim_fd_info(int fd, uint64_t *size, uint64_t *dev, uint64_t *ino);
/* The permission bits of an open file. */
int shmval__prim_fd_mode(int fd, unsigned *mode);
/*
 * Reserve the first @p size bytes of backing store (ENOSPC now rather than
 * SIGBUS later) and give the file @p apparent bytes (>= size; the rest holds
 * no blocks until reserved with shmval__prim_reserve_range()).
 */
int shmval__prim_reserve(int fd, uint64_t size, uint64_t apparent);
/* Reserve the backing store of [off, off+len) of a file: idempotent. */
int shmval__prim_reserve_range(int fd, uint64_t off, uint64_t len);
int shmval__prim_map(int fd, size_t size, bool rdonly, void **out);
void shmval__prim_close(int fd);
/*
 * Open-file-description byte locks: they belong to one open of the file, are
 * released when its last descriptor closes (or its process dies), and survive
 * PID reuse. SHMVAL_EBUSY when a conflicting lock is held.
 */
enum { SHMVAL__FLOCK_UN, SHMVAL__FLOCK_RD, SHMVAL__FLOCK_WR };
int shmval__prim_flock(int fd, uint64_t off, int type, bool wait);
/*
 * The first byte in [off, off+len) locked through another open; -1 if none,
 * -2 if the probe itself failed (callers must then assume a lock is held).
 */
int64_t shmval__prim_flock_probe(int fd, uint64_t off, uint64_t len);

/*
 * Crash points, compiled in only for the crash-consistency tests (the
 * shmval_objects_hooked library): a process-local countdown set by a test; the
 * step that takes it to zero kills the process with SIGKILL (or raises
 * shmval__crash_signal when a test set it), so a test can stop a change to
 * shared memory after any of its stores.
 */
#ifdef SHMVAL_CRASH_HOOKS
extern long shmval__crash_countdown;
extern int shmval__crash_signal;
void shmval__crash_point(void);
#define SHMVAL__CRASH_POINT() shmval__crash_point()
#else
#define SHMVAL__CRASH_POINT() ((void)0)
#endif

#endif /* SHMVAL_PRIM_H */
