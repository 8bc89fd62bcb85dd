/*
 * The platform layer: every memory-mapping, clock and randomness call the
 * library makes goes through here, so the rest of the code is OS-neutral.
 */
#include "internal.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int shmval__prim_map_anon(size_t size, void **out) {
  /*
   * MAP_SHARED|MAP_ANONYMOUS is backed by an unnamed shmem object: children
   * forked later share it, nothing appears in /dev/shm, and the kernel frees
   * it when the last process unmaps it.
   */
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return errno == ENOMEM || errno == EAGAIN ? SHMVAL_ENOMEM : -errno;
  *out = p;
  return 0;
}

void shmval__prim_unmap(void *addr, size_t size) {
  if (addr != NULL && size != 0)
    (void)munmap(addr, size);
}

void shmval__prim_discard(void *addr, size_t size) {
  /* Failure only means the pages stay resident until reused: ignore it. */
  if (size != 0)
    (void)madvise(addr, size, MADV_REMOVE);
}

size_t shmval__prim_page_size(void) {
  static _Atomic size_t cached;
  size_t ps = atomic_load_explicit(&cached, memory_order_relaxed);
  if (ps == 0) {
    long v = sysconf(_SC_PAGESIZE);
    ps = v > 0 ? (size_t)v : 4096u;
    atomic_store_explicit(&cached, ps, memory_order_relaxed);
  }
  return ps;
}

uint64_t shmval__prim_random64(void) {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
    /* No entropy yet (early boot): mix the pid with the clock instead. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
  }
  /* splitmix64 finaliser, so that related inputs give unrelated outputs. */
  r += UINT64_C(0x9e3779b97f4a7c15);
  r = (r ^ (r >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  r = (r ^ (r >> 27)) * UINT64_C(0x94d049bb133111eb);
  return r ^ (r >> 31);
}

void shmval__prim_deadline(double seconds, struct timespec *ts) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  /* Clamp absurd waits to about a century rather than overflowing time_t. */
  if (seconds > 3.0e9)
    seconds = 3.0e9;
  time_t whole = (time_t)seconds; /* seconds >= 0, so this truncates down */
  long nsec = (long)((seconds - (double)whole) * 1e9);
  ts->tv_sec += whole;
  ts->tv_nsec += nsec;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec += 1;
    ts->tv_nsec -= 1000000000L;
  }
}
