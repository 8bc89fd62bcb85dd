/*
 * Robust process-shared locks (lock.c): the mutex helpers every shared lock
 * goes through, object locks with recursion and owner tracking, and their
 * inlined fast paths.
 */
#ifndef SHMVAL_LOCK_H
#define SHMVAL_LOCK_H

#include "layout.h"

int shmval__lock_init(shmval__lock *l, unsigned flags, uint16_t host_back);
/* Acquire/release after checking the lock's magic (ESTALE, EINVAL). */
int shmval__lock_acquire(shmval__lock *l);
int shmval__lock_release(shmval__lock *l);
/* Acquire @p l for destruction: EBUSY if anyone holds it, the caller too. */
int shmval__lock_try_exclusive(shmval__lock *l);
bool shmval__lock_owned(const shmval__lock *l);
/* The calling thread's owner token (lock.c); 0 until it first needs one. */
extern _Thread_local uint64_t shmval__tls_token __attribute__((tls_model("initial-exec")));
uint64_t shmval__token_new(void);
/*
 * Lock a robust mutex in shared memory, waiting until the absolute
 * CLOCK_MONOTONIC @p deadline (NULL: for as long as it takes); the pthread
 * result (0, EOWNERDEAD, ENOTRECOVERABLE, ETIMEDOUT, ...). Every blocking
 * lock of a shared mutex goes through here: see lock.c for why the wait is
 * cut into slices.
 */
int shmval__mutex_wait(pthread_mutex_t *m, const struct timespec *deadline);
/*
 * The same after a try that found @p m held: no second compare-and-swap.
 * With @p watch, first watch the lock word a little before sleeping: for a
 * lock whose holders all let go within a few hundred nanoseconds and arrive
 * together (a barrier's).
 */
int shmval__mutex_wait_busy(pthread_mutex_t *m, const struct timespec *deadline, bool watch);
/* Map a pthread lock result, taking ownership with token @p tok. */
int shmval__lock_took(shmval__lock *l, uint64_t tok, int rc);
int shmval__lock_reenter(shmval__lock *l, int busy);

static inline uint64_t shmval__my_token(void) {
  uint64_t t = shmval__tls_token;
  return SHMVAL__LIKELY(t != 0) ? t : shmval__token_new();
}

/* The fast paths, inlined into the object accessors; @p watch as in shmval__mutex_wait_busy(). */
static inline int shmval__lock_enter_as(shmval__lock *l, bool watch) {
  uint64_t tok = shmval__my_token();
  /*
   * Try the compare-and-swap first: only when it fails is the owner word
   * read, so a contended acquire moves the lock's cache line once, not twice.
   */
  int rc = pthread_mutex_trylock(&l->mutex);
  if (SHMVAL__UNLIKELY(rc == EBUSY)) {
    if (atomic_load_explicit(&l->owner, memory_order_relaxed) == tok)
      return shmval__lock_reenter(l, SHMVAL_EDEADLK);
    rc = shmval__mutex_wait_busy(&l->mutex, NULL, watch);
  }
  if (SHMVAL__UNLIKELY(rc != 0 || (l->flags & SHMVAL__LOCK_DEAD_PENDING)))
    return shmval__lock_took(l, tok, rc);
  l->depth = 1;
  atomic_store_explicit(&l->owner, tok, memory_order_relaxed);
  return 0;
}

static inline int shmval__lock_enter(shmval__lock *l) { return shmval__lock_enter_as(l, false); }

static inline int shmval__lock_leave(shmval__lock *l) {
  uint64_t tok = shmval__tls_token;
  if (SHMVAL__UNLIKELY(tok == 0 || atomic_load_explicit(&l->owner, memory_order_relaxed) != tok))
    return SHMVAL_EPERM;
  if (--l->depth > 0)
    return 0;
  atomic_store_explicit(&l->owner, 0, memory_order_relaxed);
  return -pthread_mutex_unlock(&l->mutex);
}
/*
 * Lock the robust mutex @p m of a shared structure; when its previous holder
 * died, call @p repair(@p ctx) first, with the mutex held: on success the
 * mutex is made consistent (0), on failure it is fenced off (ECORRUPT now,
 * ENOTRECOVERABLE to every later caller). ENOTRECOVERABLE, or -errno.
 */
int shmval__robust_lock(pthread_mutex_t *m, int (*repair)(void *ctx), void *ctx);
/* Initialise a robust, process-shared mutex: 0 or -errno. */
int shmval__mutex_init(pthread_mutex_t *m);
/* Whether @p m, read from shared memory, has the type the library gives its mutexes. */
bool shmval__mutex_sane(const pthread_mutex_t *m);

#endif /* SHMVAL_LOCK_H */
