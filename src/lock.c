/*
 * Robust, process-shared locks.
 *
 * The pthread mutex underneath is robust and process-shared but not
 * recursive. Ownership and recursion are tracked in the lock itself: `owner`
 * holds a token of the holding thread, `depth` its recursion depth. Tokens are
 * 64-bit values unique across the threads of all processes: a random
 * per-process seed (drawn again in every fork child) plus a per-thread
 * counter, so neither a recycled thread id nor a recycled pid can make a new
 * thread believe it holds a lock that a dead one held. A recursive acquire by
 * the holder therefore costs no atomic read-modify-write, and the condition
 * variable of a later issue can release and restore a recursive hold.
 */
#include "lock.h"
#include "prim.h"

#include <errno.h>
#include <math.h>
#include <time.h>

static _Atomic uint64_t token_next;
_Thread_local uint64_t shmval__tls_token __attribute__((tls_model("initial-exec")));
static pthread_once_t token_once = PTHREAD_ONCE_INIT;

static void token_reseed(void) {
  atomic_store_explicit(&token_next, shmval__prim_random64(), memory_order_relaxed);
}

/* In a fork child the forking thread must not keep its parent's identity. */
static void token_fork_child(void) {
  shmval__tls_token = 0;
  token_reseed();
}

static void token_init(void) {
  token_reseed();
  (void)pthread_atfork(NULL, NULL, token_fork_child);
}

uint64_t shmval__token_new(void) {
  uint64_t t;
  pthread_once(&token_once, token_init);
  do
    t = atomic_fetch_add_explicit(&token_next, 1, memory_order_relaxed);
  while (t == 0);
  shmval__tls_token = t;
  return t;
}

int shmval__mutex_init(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  int rc = pthread_mutexattr_init(&a);
  if (rc != 0)
    return -rc;
  rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  if (rc == 0)
    rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (rc == 0)
    rc = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  return -rc;
}

#ifdef __GLIBC__
static int expected_kind;
static pthread_once_t kind_once = PTHREAD_ONCE_INIT;

static void learn_kind(void) {
  pthread_mutex_t m;
  if (shmval__mutex_init(&m) == 0) {
    expected_kind = m.__data.__kind;
    pthread_mutex_destroy(&m);
  }
}
#endif

/*
 * glibc keeps a mutex's type in the mutex itself and dispatches on it: a
 * damaged type word can send a lock call down the priority-inheritance or
 * lock-elision paths (the latter executes transactional-memory instructions,
 * which fault on CPUs without them). Every mutex the library makes has the
 * same type (robust, process-shared, normal), so one read of that word tells
 * a sound mutex from a damaged one before it is used.
 */
bool shmval__mutex_sane(const pthread_mutex_t *m) {
#ifdef __GLIBC__
  pthread_once(&kind_once, learn_kind);
  return __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) == expected_kind;
#else
  (void)m;
  return true;
#endif
}

int shmval__robust_lock(pthread_mutex_t *m, int (*repair)(void *ctx), void *ctx) {
  int rc = shmval__mutex_wait(m, NULL);
  if (SHMVAL__LIKELY(rc == 0))
    return 0;
  if (rc == EOWNERDEAD) {
    if (repair(ctx) != 0) {
      /* Unlocking without making it consistent fences it off: ENOTRECOVERABLE from now on. */
      pthread_mutex_unlock(m);
      return SHMVAL_ECORRUPT;
    }
    pthread_mutex_consistent(m);
    return 0;
  }
  return rc == ENOTRECOVERABLE ? SHMVAL_ENOTRECOVERABLE : -rc;
}

/*
 * When the holder of a robust mutex dies, the kernel marks the mutex
 * owner-dead and wakes ONE waiter. If that waiter dies too before it takes the
 * mutex, the others sleep on and nobody wakes them: the mutex is free to take
 * (owner-dead) but no one looks. The kill torture hit this (a worker asleep
 * on the directory lock of a dead TID). So no wait on a shared mutex is
 * longer than a slice: after each, the waiter looks at the mutex again and
 * takes it if its owner died. A live holder costs a waiter one wake-up per
 * slice.
 */
#define WAIT_SLICE_NS 20000000L

/*
 * The end of a wait slice from now. The coarse clock is enough: it is the
 * same clock read at the last tick, so a slice lasts 16 to 20 ms, and it
 * costs a tenth of a precise read (a lock taken with no contention pays this
 * on every call).
 */
static void slice_end(struct timespec *ts) {
#ifdef CLOCK_MONOTONIC_COARSE
  clock_gettime(CLOCK_MONOTONIC_COARSE, ts);
#else
  clock_gettime(CLOCK_MONOTONIC, ts);
#endif
  ts->tv_nsec += WAIT_SLICE_NS;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec += 1;
    ts->tv_nsec -= 1000000000L;
  }
}

static bool before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/*
 * Watch a held lock word (reads only) for up to LOCK_SPINS pauses before
 * sleeping, for a caller that knows the holder lets go within a few hundred
 * nanoseconds and does not take it back at once (see shmval__mutex_wait_busy).
 * Only a live holder is watched: a word with no thread id in it (free, or its
 * owner died) goes straight to the try, which deals with both.
 */
#define LOCK_SPINS 200u
#define LOCK_TID_MASK 0x3fffffff /* the kernel's FUTEX_TID_MASK */

static void spin_while_held(pthread_mutex_t *m) {
  for (unsigned i = 0; i < LOCK_SPINS; i++) {
    if ((__atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) & LOCK_TID_MASK) == 0)
      return;
    shmval__prim_relax();
  }
}

/*
 * pthread_mutex_trylock(), mended: glibc (2.36 at least) returns
 * ENOTRECOVERABLE for a robust mutex that was fenced off but leaves the lock
 * word holding the caller's thread id (its check of the word it replaced
 * looks for the id instead of the zero it found), so that every later lock
 * call waits forever. The word is put back as glibc's own unlock would.
 */
static int try_lock(pthread_mutex_t *m) {
  int rc = pthread_mutex_trylock(m);
#ifdef __GLIBC__
  if (SHMVAL__UNLIKELY(rc == ENOTRECOVERABLE)) {
    int *word = &m->__data.__lock, w = __atomic_load_n(word, __ATOMIC_RELAXED);
    if ((w & LOCK_TID_MASK) == shmval__prim_tid() &&
        __atomic_compare_exchange_n(word, &w, 0, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED) &&
        (w & ~LOCK_TID_MASK) != 0)
      shmval__prim_futex_wake((_Atomic uint32_t *)(void *)word, 1);
  }
#endif
  return rc;
}

int shmval__mutex_wait(pthread_mutex_t *m, const struct timespec *deadline) {
  /* A free mutex is taken with one compare-and-swap, before any clock read. */
  int rc = try_lock(m);
  return SHMVAL__LIKELY(rc != EBUSY) ? rc : shmval__mutex_wait_busy(m, deadline, false);
}

#define LOCK_WAITERS 0x80000000u    /* the kernel's FUTEX_WAITERS */
#define LOCK_OWNER_DIED 0x40000000u /* the kernel's FUTEX_OWNER_DIED */

/*
 * Take @p m after a try found it held, sleeping on its lock word in slices.
 *
 * The sleep is the library's own futex wait, not pthread_mutex_clocklock():
 * on the same word and with the same protocol, glibc's timed lock made two
 * processes that take one mutex in turn erratic, up to 3.5 times slower than
 * its untimed lock from one run to the next, while this wait costs what the
 * untimed lock does (docs/design.md, "The wait itself"). The protocol is
 * the robust futex one the kernel and glibc share: a waiter sets the waiters
 * bit in a word that holds a live owner's thread id, then sleeps while the
 * word keeps that value; glibc's unlock wakes one sleeper when the bit was
 * set; the kernel, when an owner dies, sets the owner-dead bit and wakes one.
 * Every take is glibc's trylock, so glibc's robust list and owner fields stay
 * its own; a word that the try refuses with no owner in it (damaged) is slept
 * on in slices like a held one, as glibc's lock would, so that a deadline
 * still ends the wait. A waiter that slept and then takes the mutex sets the waiters bit
 * again, as glibc's lock does: others may still sleep, and its unlock must
 * wake one.
 */
static int wait_held(pthread_mutex_t *m, const struct timespec *deadline) {
  _Atomic uint32_t *word = (_Atomic uint32_t *)(void *)&m->__data.__lock;
  bool slept = false, last = false;
  int rc;
  while ((rc = try_lock(m)) == EBUSY) {
    if (last)
      return ETIMEDOUT;
    uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
    if (w == 0 || (w & LOCK_OWNER_DIED))
      continue; /* let go of, or its owner died, since the try */
    if (!(w & LOCK_WAITERS) &&
        !atomic_compare_exchange_strong_explicit(word, &w, w | LOCK_WAITERS, memory_order_relaxed,
                                                 memory_order_relaxed))
      continue;
    struct timespec slice;
    slice_end(&slice);
    bool final_slice = deadline != NULL && !before(&slice, deadline);
    slept = true;
    last = shmval__prim_futex_wait(word, w | LOCK_WAITERS, final_slice ? deadline : &slice) ==
               SHMVAL_ETIMEDOUT &&
           final_slice;
  }
  if (slept && (rc == 0 || rc == EOWNERDEAD))
    atomic_fetch_or_explicit(word, LOCK_WAITERS, memory_order_relaxed);
  return rc;
}

/*
 * Without @p watch a waiter sleeps at once, as glibc's robust mutex does: a
 * waiter that watches the word pulls its cache line from a holder that takes
 * the lock again and again, and takes the lock from it at each release
 * rather than in turns of many, which made two processes incrementing under
 * one lock up to 1.25x slower than the robust mutex on the 2-core VM.
 */
int shmval__mutex_wait_busy(pthread_mutex_t *m, const struct timespec *deadline, bool watch) {
  if (watch)
    spin_while_held(m);
  return wait_held(m, deadline);
}

int shmval__lock_init(shmval__lock *l, unsigned flags, uint16_t host_back) {
  int rc = shmval__mutex_init(&l->mutex);
  if (rc != 0)
    return rc;
  l->flags = (uint16_t)flags;
  l->host_back = host_back;
  atomic_init(&l->refs, 1);
  l->depth = 0;
  atomic_init(&l->owner, 0);
  atomic_store_explicit(&l->magic, SHMVAL__LOCK_MAGIC, memory_order_release);
  return 0;
}

static inline bool owned_by(const shmval__lock *l, uint64_t tok) {
  return atomic_load_explicit(&l->owner, memory_order_relaxed) == tok;
}

/* Turn a pthread result into ours, taking ownership on success. */
int shmval__lock_took(shmval__lock *l, uint64_t tok, int rc) {
  int ret = 0;
  if (rc != 0) {
    if (rc != EOWNERDEAD)
      return rc == ENOTRECOVERABLE ? SHMVAL_ENOTRECOVERABLE : -rc;
    /* The dead owner's depth and token are meaningless now. */
    pthread_mutex_consistent(&l->mutex);
    ret = SHMVAL_OWNERDEAD;
  }
  if (l->flags & SHMVAL__LOCK_DEAD_PENDING) {
    /* shm_lock_locked() met the death first and kept the news for us. */
    l->flags &= (uint16_t)~SHMVAL__LOCK_DEAD_PENDING;
    ret = SHMVAL_OWNERDEAD;
  }
  l->depth = 1;
  atomic_store_explicit(&l->owner, tok, memory_order_relaxed);
  return ret;
}

/* The holder's re-entry: recursion, or the non-recursive refusal @p busy. */
int shmval__lock_reenter(shmval__lock *l, int busy) {
  if (!(l->flags & SHMVAL__LOCK_RECURSIVE))
    return busy;
  if (l->depth == UINT32_MAX)
    return SHMVAL_EAGAIN;
  l->depth++;
  return 0;
}

int shmval__lock_acquire(shmval__lock *l) {
  int rc = shmval__lock_check(l);
  return SHMVAL__LIKELY(rc == 0) ? shmval__lock_enter(l) : rc;
}

static int lock_try(shmval__lock *l) {
  int rc = shmval__lock_check(l);
  if (rc != 0)
    return rc;
  uint64_t tok = shmval__my_token();
  if (owned_by(l, tok))
    return shmval__lock_reenter(l, SHMVAL_EBUSY);
  return shmval__lock_took(l, tok, pthread_mutex_trylock(&l->mutex));
}

int shmval__lock_release(shmval__lock *l) {
  int rc = shmval__lock_check(l);
  return SHMVAL__LIKELY(rc == 0) ? shmval__lock_leave(l) : rc;
}

int shmval__lock_try_exclusive(shmval__lock *l) {
  int rc = shmval__lock_check(l);
  if (rc != 0)
    return rc;
  if (owned_by(l, shmval__my_token()))
    return SHMVAL_EBUSY;
  rc = lock_try(l);
  return rc == SHMVAL_OWNERDEAD ? 0 : rc;
}

bool shmval__lock_owned(const shmval__lock *l) {
  return shmval__lock_check(l) == 0 && shmval__tls_token != 0 && owned_by(l, shmval__tls_token);
}

/* ------------------------------------------------------------------------ */
/* Public API. */

/* Locks reached through a read-only segment carry the read-only tag. */
static inline int lock_of(const shm_lock *h, shmval__lock **out) {
  *out = (shmval__lock *)((uintptr_t)h & ~SHMVAL__RO_TAG);
  return shmval__is_ro(h) ? SHMVAL_EACCES : 0;
}

int shm_lock_acquire(shm_lock *lock) {
  shmval__lock *l;
  int rc = lock_of(lock, &l);
  return rc != 0 ? rc : shmval__lock_acquire(l);
}

int shm_lock_try_acquire(shm_lock *lock) {
  shmval__lock *l;
  int rc = lock_of(lock, &l);
  return rc != 0 ? rc : lock_try(l);
}

int shm_lock_acquire_timeout(shm_lock *lock, double seconds) {
  shmval__lock *l;
  int rc = lock_of(lock, &l);
  if (rc == 0)
    rc = shmval__lock_check(l);
  if (rc != 0)
    return rc;
  if (isnan(seconds))
    return SHMVAL_EINVAL;
  if (seconds < 0)
    return shmval__lock_acquire(l);
  if (seconds == 0)
    return lock_try(l);
  uint64_t tok = shmval__my_token();
  if (owned_by(l, tok))
    return shmval__lock_reenter(l, SHMVAL_EDEADLK);
  struct timespec ts;
  shmval__prim_deadline(seconds, &ts);
  return shmval__lock_took(l, tok, shmval__mutex_wait(&l->mutex, &ts));
}

int shm_lock_release(shm_lock *lock) {
  shmval__lock *l;
  int rc = lock_of(lock, &l);
  return rc != 0 ? rc : shmval__lock_release(l);
}

int shm_lock_locked(shm_lock *lock) {
  shmval__lock *l;
  int rc = lock_of(lock, &l);
  if (rc == 0)
    rc = shmval__lock_check(l);
  if (rc != 0)
    return rc;
  if (shmval__lock_owned(l))
    return 1;
  rc = pthread_mutex_trylock(&l->mutex);
  if (rc == EBUSY)
    return 1;
  if (rc == EOWNERDEAD) {
    /* Free now, but whoever takes it next must still be told. */
    pthread_mutex_consistent(&l->mutex);
    l->flags |= SHMVAL__LOCK_DEAD_PENDING;
  } else if (rc != 0) {
    return rc == ENOTRECOVERABLE ? SHMVAL_ENOTRECOVERABLE : -rc;
  }
  pthread_mutex_unlock(&l->mutex);
  return 0;
}

int shm_lock_is_owned(const shm_lock *lock) {
  shmval__lock *l;
  return lock_of(lock, &l) == 0 && shmval__lock_owned(l) ? 1 : 0;
}
