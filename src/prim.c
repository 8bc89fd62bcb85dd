/*
 * The platform layer: every memory-mapping, clock and randomness call the
 * library makes goes through here, so the rest of the code is OS-neutral.
 */
#include "prim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int shmval__prim_map_anon(size_t size, bool sparse, void **out) {
  /*
   * MAP_SHARED|MAP_ANONYMOUS is backed by an unnamed shmem object: children
   * forked later share it, nothing appears in /dev/shm, and the kernel frees
   * it when the last process unmaps it. Its size is fixed now, so that
   * children forked later see every page later committed in it.
   */
  int flags = MAP_SHARED | MAP_ANONYMOUS | (sparse ? MAP_NORESERVE : 0);
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (p == MAP_FAILED)
    return errno == ENOMEM || errno == EAGAIN ? SHMVAL_ENOMEM : -errno;
  *out = p;
  return 0;
}

int shmval__prim_populate(void *addr, size_t size) {
#ifdef MADV_POPULATE_WRITE
  if (size == 0 || madvise(addr, size, MADV_POPULATE_WRITE) == 0)
    return 0;
  if (errno == EINVAL) /* a kernel without it: pages are committed when touched */
    return 0;
  return errno == ENOMEM || errno == EFAULT || errno == EAGAIN ? SHMVAL_ENOMEM : -errno;
#else
  (void)addr;
  (void)size;
  return 0;
#endif
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

double shmval__prim_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t shmval__prim_wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

void shmval__prim_sleep(double seconds) {
  struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Map errno from a file operation to a return code. */
static int file_error(int e) {
  switch (e) {
  case ENAMETOOLONG:
    return SHMVAL_EINVAL;
  case EMFILE:
  case ENFILE:
    return -e;
  case ENOSPC:
  case EFBIG:
    return SHMVAL_ENOSPC;
  default:
    return -e;
  }
}

int shmval__prim_shm_create(const char *name, unsigned mode, int *fd) {
  /* Created owner-only; the requested mode is set with fchmod, which the
   * umask cannot narrow or widen. */
  int f = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (f < 0)
    return file_error(errno);
  if (fchmod(f, (mode_t)mode) != 0) {
    int e = errno;
    close(f);
    shm_unlink(name);
    return file_error(e);
  }
  *fd = f;
  return 0;
}

/*
 * Where glibc's shm_open() keeps its files. An unnamed file is made there
 * with O_TMPFILE and given its name with linkat() once it is complete, so a
 * name never stands for a half-made segment, and a creator killed before
 * the link leaves nothing at all: the kernel frees the file with its last
 * descriptor.
 */
#define SHM_DIR "/dev/shm"

/* Whether this process has seen /proc/self/fd, which linkat() names the file by. */
static _Atomic bool proc_seen;

int shmval__prim_shm_create_unnamed(unsigned mode, int *fd) {
  int f = open(SHM_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (f < 0)
    return errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL || errno == ENOENT
               ? SHMVAL__ENOUNNAMED
               : file_error(errno);
  /*
   * linkat() needs /proc/self/fd to name an unnamed file without privileges:
   * looked for until a process has seen it once.
   */
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", f);
  if (fchmod(f, (mode_t)mode) != 0 ||
      (!atomic_load_explicit(&proc_seen, memory_order_relaxed) && access(path, F_OK) != 0)) {
    int e = errno;
    close(f);
    return e == ENOENT ? SHMVAL__ENOUNNAMED : file_error(e);
  }
  atomic_store_explicit(&proc_seen, true, memory_order_relaxed);
  *fd = f;
  return 0;
}

int shmval__prim_shm_link(int fd, const char *name) {
  char from[64], to[sizeof SHM_DIR + SHMVAL_NAME_MAX + 2];
  snprintf(from, sizeof from, "/proc/self/fd/%d", fd);
  snprintf(to, sizeof to, SHM_DIR "%s", name);
  if (linkat(AT_FDCWD, from, AT_FDCWD, to, AT_SYMLINK_FOLLOW) == 0)
    return 0;
  if (errno != ENOENT)
    return file_error(errno);
  /* /proc went away since it was seen: look for it again, and make this one under its name. */
  atomic_store_explicit(&proc_seen, false, memory_order_relaxed);
  return SHMVAL__ENOUNNAMED;
}

int shmval__prim_write_at(int fd, const void *buf, size_t len, uint64_t off) {
  ssize_t n = pwrite(fd, buf, len, (off_t)off);
  return n == (ssize_t)len ? 0 : n < 0 ? file_error(errno) : SHMVAL_ENOSPC;
}

int shmval__prim_shm_open(const char *name, bool rdonly, int *fd) {
  int f = shm_open(name, (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
  if (f < 0)
    return file_error(errno);
  *fd = f;
  return 0;
}

int shmval__prim_shm_unlink(const char *name) {
  return shm_unlink(name) == 0 ? 0 : file_error(errno);
}

int shmval__prim_fd_info(int fd, uint64_t *size, uint64_t *dev, uint64_t *ino) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return -errno;
  *size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
  if (dev != NULL)
    *dev = (uint64_t)st.st_dev;
  if (ino != NULL)
    *ino = (uint64_t)st.st_ino;
  return 0;
}

int shmval__prim_fd_mode(int fd, unsigned *mode) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return -errno;
  *mode = (unsigned)(st.st_mode & 07777);
  return 0;
}

int shmval__prim_reserve(int fd, uint64_t size, uint64_t apparent) {
  int e = posix_fallocate(fd, 0, (off_t)size);
  bool sized = e == 0;                /* posix_fallocate made the file size bytes long */
  if (e == EOPNOTSUPP || e == ENOSYS) /* a file system without fallocate */
    e = 0;
  /* Growing the apparent size allocates nothing: the file is sparse beyond size. */
  if (e == 0 && (apparent > size || !sized) && ftruncate(fd, (off_t)apparent) != 0)
    e = errno;
  return e == 0 ? 0 : file_error(e);
}

int shmval__prim_reserve_range(int fd, uint64_t off, uint64_t len) {
  int e = posix_fallocate(fd, (off_t)off, (off_t)len);
  /* Without fallocate the file already has its full apparent size: nothing to do. */
  return e == 0 || e == EOPNOTSUPP || e == ENOSYS ? 0 : file_error(e);
}

int shmval__prim_map(int fd, size_t size, bool rdonly, void **out) {
  int prot = rdonly ? PROT_READ : PROT_READ | PROT_WRITE;
  void *p = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    return errno == ENOMEM ? SHMVAL_ENOMEM : -errno;
  *out = p;
  return 0;
}

void shmval__prim_close(int fd) {
  if (fd >= 0)
    close(fd);
}

int shmval__prim_flock(int fd, uint64_t off, int type, bool wait) {
  static const short types[] = {F_UNLCK, F_RDLCK, F_WRLCK};
  struct flock fl = {
      .l_type = types[type], .l_whence = SEEK_SET, .l_start = (off_t)off, .l_len = 1};
  while (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) != 0) {
    if (errno == EINTR)
      continue;
    return errno == EAGAIN || errno == EACCES ? SHMVAL_EBUSY : -errno;
  }
  return 0;
}

int64_t shmval__prim_flock_probe(int fd, uint64_t off, uint64_t len) {
  struct flock fl = {
      .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)off, .l_len = (off_t)len};
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
    return -2;
  return fl.l_type == F_UNLCK ? -1 : (int64_t)fl.l_start;
}

int shmval__prim_futex_wait(_Atomic uint32_t *addr, uint32_t expected,
                            const struct timespec *deadline) {
  /*
   * FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so a wait
   * interrupted by a signal handler resumes with exactly the time left. Not
   * FUTEX_PRIVATE_FLAG: the word is in memory shared between processes.
   */
  for (;;) {
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_BITSET, expected, deadline, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    if (r == 0 || errno == EAGAIN)
      return 0; /* woken, or the word had changed already */
    if (errno == ETIMEDOUT)
      return SHMVAL_ETIMEDOUT;
    if (errno != EINTR)
      return -errno;
  }
}

void shmval__prim_futex_wake(_Atomic uint32_t *addr, int n) {
  syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

int shmval__prim_tid(void) { return (int)syscall(SYS_gettid); }

bool shmval__prim_past(const struct timespec *deadline) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > deadline->tv_sec ||
         (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

#ifdef SHMVAL_CRASH_HOOKS
long shmval__crash_countdown;
int shmval__crash_signal;

void shmval__crash_point(void) {
  if (shmval__crash_countdown > 0 && --shmval__crash_countdown == 0)
    raise(shmval__crash_signal != 0 ? shmval__crash_signal : SIGKILL);
}
#endif
