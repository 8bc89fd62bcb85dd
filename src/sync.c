/*
 * Synchronisation primitives: standalone locks, semaphores, conditions,
 * events and barriers, process-shared.
 *
 * None of them uses a pthread condition variable: glibc's keeps per-waiter
 * state that a waiter killed inside pthread_cond_wait leaves behind, which can
 * block later signallers. Instead every wait is a futex wait on a 32-bit word
 * of the object (a sequence number or the value itself) with an absolute
 * CLOCK_MONOTONIC deadline, and all other state is changed under the object's
 * robust lock, or atomically. A process killed while blocked on a futex holds
 * nothing: it leaves at most a stale waiter count behind.
 */
#include "object.h"
#include "lock.h"
#include "prim.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------ */
/* Shared helpers. */

/* A timeout turned into a wait: forever, try once, or until a deadline. */
typedef struct wait_spec {
  bool forever, try_only;
  struct timespec deadline;
} wait_spec;

/*
 * A zero timeout gets a deadline too (now), so that a wait which tries once
 * never hands the kernel an unset deadline, whichever path reaches it.
 */
static int wait_spec_init(double timeout, wait_spec *w) {
  if (isnan(timeout))
    return SHMVAL_EINVAL;
  w->forever = timeout < 0;
  w->try_only = timeout == 0;
  if (!w->forever)
    shmval__prim_deadline(timeout, &w->deadline);
  return 0;
}

/* Wait on @p word while it holds @p seen; a try-only wait times out at once. */
static int futex_wait(_Atomic uint32_t *word, uint32_t seen, const wait_spec *w) {
  if (w->try_only)
    return SHMVAL_ETIMEDOUT;
  return shmval__prim_futex_wait(word, seen, w->forever ? NULL : &w->deadline);
}

/* The object behind a handle of @p kind and its state; writers need a writable one. */
static int sync_obj(const void *h, unsigned kind, bool write, shmval__obj **o, void **state) {
  *o = shmval__obj_of(h);
  int rc = shmval__obj_check(*o, kind);
  if (rc != 0)
    return rc;
  if (write && shmval__is_ro(h))
    return SHMVAL_EACCES;
  *state = shmval__payload(*o);
  return 0;
}

/* Copy the caller's options, refusing flags other than @p allowed and a lock. */
static int sync_opts(const shm_opts *in, unsigned allowed, shm_opts *out) {
  *out = in != NULL ? *in : (shm_opts){0};
  if ((out->flags & ~allowed) || out->lock != NULL)
    return SHMVAL_EINVAL;
  return 0;
}

static int sync_create(void **out, unsigned kind, const void *state, size_t size,
                       const shm_opts *o) {
  shmval__obj *obj;
  if (out == NULL)
    return SHMVAL_EINVAL;
  int rc = shmval__obj_create(&obj, kind, 0, size, 8, 1, state, o);
  if (rc == 0)
    *out = obj;
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Standalone locks. */

int shm_lock_create(shm_lock **out, const shm_opts *opts) {
  shm_opts o;
  shmval__obj *obj;
  int rc = sync_opts(opts, SHMVAL_NONRECURSIVE, &o);
  if (rc != 0 || out == NULL)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  rc = shmval__obj_create(&obj, SHMVAL__KIND_LOCK, 0, 0, 8, 0, NULL, &o);
  if (rc == 0)
    *out = (shm_lock *)(void *)shmval__obj_lock(obj);
  return rc;
}

int shm_lock_open(shm_lock **out, shm_segment *seg, const char *name) {
  void *h;
  if (out == NULL)
    return SHMVAL_EINVAL;
  int rc = shmval__obj_open(&h, seg, name, SHMVAL__KIND_LOCK, 0);
  if (rc == 0)
    *out = shmval__tag(shmval__obj_lock(shmval__obj_of(h)), shmval__is_ro(h));
  return rc;
}

int shm_lock_destroy(shm_lock *lock) {
  if (lock == NULL)
    return 0;
  if (shmval__is_ro(lock))
    return SHMVAL_EACCES;
  shmval__lock *l = (shmval__lock *)(void *)shmval__obj_of(lock);
  int rc = shmval__lock_check(l);
  if (rc != 0)
    return rc;
  shmval__obj *host = (shmval__obj *)(void *)((char *)l - l->host_back);
  if (shmval__obj_check(host, SHMVAL__KIND_LOCK) != 0)
    return shmval__magic_dead(atomic_load(&host->magic)) ? SHMVAL_ESTALE : SHMVAL_EINVAL;
  return shmval__obj_destroy(host, SHMVAL__KIND_LOCK);
}

/* ------------------------------------------------------------------------ */
/* Semaphores: the count is the futex word. */

int shm_sem_create(shm_sem **out, long value, const shm_opts *opts) {
  shm_opts o;
  int rc = sync_opts(opts, SHMVAL_BOUNDED, &o);
  if (rc != 0 || value < 0 || value > INT32_MAX)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  shmval__sem_state st = {.max = (o.flags & SHMVAL_BOUNDED) ? (uint32_t)value : UINT32_MAX};
  atomic_init(&st.count, (uint32_t)value);
  atomic_init(&st.waiters, 0);
  o.flags = SHMVAL_RAW;
  return sync_create((void **)out, SHMVAL__KIND_SEM, &st, sizeof st, &o);
}

int shm_sem_open(shm_sem **out, shm_segment *seg, const char *name) {
  return shmval__obj_open((void **)out, seg, name, SHMVAL__KIND_SEM, 0);
}

static bool sem_take(shmval__sem_state *st) {
  uint32_t v = atomic_load(&st->count);
  while (v > 0)
    if (atomic_compare_exchange_weak(&st->count, &v, v - 1))
      return true;
  return false;
}

int shm_sem_acquire(shm_sem *s, double timeout) {
  shmval__obj *o;
  shmval__sem_state *st;
  wait_spec w;
  int rc = sync_obj(s, SHMVAL__KIND_SEM, true, &o, (void **)&st);
  if (rc != 0 || (rc = wait_spec_init(timeout, &w)) != 0)
    return rc;
  for (;;) {
    if (sem_take(st))
      return 0;
    if (w.try_only)
      return SHMVAL_EBUSY;
    /* Announce the wait before looking again, so no release is missed. */
    atomic_fetch_add(&st->waiters, 1);
    rc = atomic_load(&st->count) == 0 ? futex_wait(&st->count, 0, &w) : 0;
    atomic_fetch_sub(&st->waiters, 1);
    if (rc == SHMVAL_ETIMEDOUT)
      return sem_take(st) ? 0 : SHMVAL_ETIMEDOUT;
    if (rc != 0)
      return rc;
  }
}

int shm_sem_release(shm_sem *s) {
  shmval__obj *o;
  shmval__sem_state *st;
  int rc = sync_obj(s, SHMVAL__KIND_SEM, true, &o, (void **)&st);
  if (rc != 0)
    return rc;
  uint32_t v = atomic_load(&st->count);
  do {
    if (v >= st->max || v == UINT32_MAX)
      return SHMVAL_EOVERFLOW;
  } while (!atomic_compare_exchange_weak(&st->count, &v, v + 1));
  if (atomic_load(&st->waiters) > 0)
    shmval__prim_futex_wake(&st->count, 1);
  return 0;
}

int shm_sem_value(shm_sem *s, unsigned *value) {
  shmval__obj *o;
  shmval__sem_state *st;
  int rc = sync_obj(s, SHMVAL__KIND_SEM, false, &o, (void **)&st);
  if (rc != 0 || value == NULL)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  *value = atomic_load(&st->count);
  return 0;
}

int shm_sem_destroy(shm_sem *s) { return shmval__obj_destroy(s, SHMVAL__KIND_SEM); }

/* ------------------------------------------------------------------------ */
/* Events: the flag is the futex word. */

int shm_event_create(shm_event **out, const shm_opts *opts) {
  shm_opts o;
  int rc = sync_opts(opts, 0, &o);
  if (rc != 0)
    return rc;
  shmval__event_state st;
  atomic_init(&st.flag, 0);
  atomic_init(&st.waiters, 0);
  o.flags = SHMVAL_RAW;
  return sync_create((void **)out, SHMVAL__KIND_EVENT, &st, sizeof st, &o);
}

int shm_event_open(shm_event **out, shm_segment *seg, const char *name) {
  return shmval__obj_open((void **)out, seg, name, SHMVAL__KIND_EVENT, 0);
}

int shm_event_set(shm_event *e) {
  shmval__obj *o;
  shmval__event_state *st;
  int rc = sync_obj(e, SHMVAL__KIND_EVENT, true, &o, (void **)&st);
  if (rc != 0)
    return rc;
  atomic_store(&st->flag, 1);
  if (atomic_load(&st->waiters) > 0)
    shmval__prim_futex_wake(&st->flag, INT_MAX);
  return 0;
}

int shm_event_clear(shm_event *e) {
  shmval__obj *o;
  shmval__event_state *st;
  int rc = sync_obj(e, SHMVAL__KIND_EVENT, true, &o, (void **)&st);
  if (rc == 0)
    atomic_store(&st->flag, 0);
  return rc;
}

int shm_event_is_set(shm_event *e) {
  shmval__obj *o;
  shmval__event_state *st;
  int rc = sync_obj(e, SHMVAL__KIND_EVENT, false, &o, (void **)&st);
  return rc != 0 ? rc : atomic_load(&st->flag) != 0;
}

int shm_event_wait(shm_event *e, double timeout) {
  shmval__obj *o;
  shmval__event_state *st;
  wait_spec w;
  int rc = sync_obj(e, SHMVAL__KIND_EVENT, true, &o, (void **)&st);
  if (rc != 0 || (rc = wait_spec_init(timeout, &w)) != 0)
    return rc;
  if (atomic_load(&st->flag))
    return 0;
  if (w.try_only)
    return SHMVAL_EBUSY;
  atomic_fetch_add(&st->waiters, 1);
  while (!atomic_load(&st->flag) && rc == 0)
    rc = futex_wait(&st->flag, 0, &w);
  atomic_fetch_sub(&st->waiters, 1);
  return atomic_load(&st->flag) ? 0 : rc != 0 ? rc : SHMVAL_ETIMEDOUT;
}

int shm_event_destroy(shm_event *e) { return shmval__obj_destroy(e, SHMVAL__KIND_EVENT); }

/* ------------------------------------------------------------------------ */
/* Conditions. State under the condition's lock; `seq` is the futex word.    */
/*                                                                           */
/* Each waiter takes a slot and holds the slot's robust mutex while it       */
/* waits; notify(n) marks the n oldest live waiters' slots notified, and a   */
/* slot whose mutex is owner-dead belongs to a killed waiter: it is freed,   */
/* not notified, so a dead waiter neither swallows a notification nor keeps  */
/* one for a later waiter. Waiters beyond the slots share anonymous          */
/* "permits", as a fallback: notify(n) still returns min(n, waiting) waiters */
/* from wait(), but a killed one of those can leave a permit behind.         */

int shm_cond_create(shm_cond **out, shm_lock *lock, const shm_opts *opts) {
  shm_opts o, plain = opts != NULL ? *opts : (shm_opts){0};
  if (lock == NULL)
    lock = plain.lock; /* the lock may come either way */
  plain.lock = NULL;
  int rc = sync_opts(&plain, SHMVAL_NONRECURSIVE, &o);
  if (rc != 0)
    return rc;
  o.lock = lock; /* NULL: a lock of its own */
  /*
   * The state is built here and copied into the object before it is
   * published; a glibc mutex that was initialised and never used holds no
   * address, so its bytes may be copied.
   */
  shmval__cond_state *st = calloc(1, sizeof *st);
  if (st == NULL)
    return SHMVAL_ENOMEM;
  atomic_init(&st->seq, 0);
  for (unsigned i = 0; i < SHMVAL__COND_SLOTS && rc == 0; i++)
    rc = shmval__mutex_init(&st->slot[i].alive);
  if (rc == 0)
    rc = sync_create((void **)out, SHMVAL__KIND_COND, st, sizeof *st, &o);
  free(st);
  return rc;
}

int shm_cond_open(shm_cond **out, shm_segment *seg, const char *name) {
  return shmval__obj_open((void **)out, seg, name, SHMVAL__KIND_COND, 0);
}

shm_lock *shm_cond_get_lock(shm_cond *c) {
  shmval__obj *o = shmval__obj_of(c);
  if (shmval__obj_check(o, SHMVAL__KIND_COND) != 0)
    return NULL;
  return shmval__tag(shmval__obj_lock(o), shmval__is_ro(c));
}

/* The condition's state and lock, with the lock held by the caller. */
static int cond_held(shm_cond *c, shmval__cond_state **st, shmval__lock **l) {
  shmval__obj *o;
  int rc = sync_obj(c, SHMVAL__KIND_COND, true, &o, (void **)st);
  if (rc != 0)
    return rc;
  *l = shmval__obj_lock(o);
  return shmval__lock_owned(*l) ? 0 : SHMVAL_EPERM;
}

/*
 * Whether the waiter in a slot (WAITING or NOTIFIED) is alive; a killed
 * one's slot is freed. Under the condition's lock. A slot whose mutex is
 * damaged is left alone and counts as taken (shm_segment_check() reports it).
 */
static bool slot_alive(shmval__cond_state *st, shmval__cond_slot *s) {
  if (!shmval__mutex_sane(&s->alive))
    return true;
  int r = pthread_mutex_trylock(&s->alive);
  if (r == EBUSY)
    return true;
  if (r == EOWNERDEAD)
    pthread_mutex_consistent(&s->alive);
  if (r == 0 || r == EOWNERDEAD)
    pthread_mutex_unlock(&s->alive);
  s->state = SHMVAL__CW_FREE;
  atomic_signal_fence(memory_order_seq_cst);
  SHMVAL__CRASH_POINT();
  st->in_slots -= st->in_slots > 0;
  return false;
}

/*
 * Take a slot for the calling waiter (its mutex held): a free one, or one a
 * killed waiter left. -1 when every slot has a live waiter.
 */
static int cond_enter(shmval__cond_state *st) {
  for (unsigned i = 0; i < SHMVAL__COND_SLOTS; i++) {
    shmval__cond_slot *s = &st->slot[i];
    if ((s->state != SHMVAL__CW_FREE && slot_alive(st, s)) || !shmval__mutex_sane(&s->alive))
      continue;
    int r = pthread_mutex_trylock(&s->alive);
    if (r == EOWNERDEAD)
      r = pthread_mutex_consistent(&s->alive);
    if (r != 0)
      continue;
    /*
     * Counted before it is marked: a waiter killed between the two leaves
     * the count one too high (a notify scans once for nothing and corrects
     * it), never too low (a notify would skip a live waiter).
     */
    SHMVAL__CRASH_POINT();
    st->in_slots++;
    atomic_signal_fence(memory_order_seq_cst);
    SHMVAL__CRASH_POINT();
    s->ticket = st->next_ticket++;
    s->state = SHMVAL__CW_WAITING;
    SHMVAL__CRASH_POINT();
    return (int)i;
  }
  st->waiters++;
  return -1;
}

/* Whether the waiter in @p slot was notified, taking its notification. */
static bool cond_notified(shmval__cond_state *st, int slot) {
  if (slot >= 0)
    return st->slot[slot].state == SHMVAL__CW_NOTIFIED;
  if (st->permits == 0)
    return false;
  st->permits--;
  return true;
}

static void cond_leave(shmval__cond_state *st, int slot) {
  if (slot >= 0) {
    st->slot[slot].state = SHMVAL__CW_FREE; /* before the count, as in cond_enter() */
    atomic_signal_fence(memory_order_seq_cst);
    SHMVAL__CRASH_POINT();
    st->in_slots -= st->in_slots > 0;
    SHMVAL__CRASH_POINT();
    pthread_mutex_unlock(&st->slot[slot].alive);
    return;
  }
  st->waiters--;
  if (st->permits > st->waiters) /* left by slotless waiters that died */
    st->permits = st->waiters;
}

int shm_cond_wait(shm_cond *c, double timeout) {
  shmval__cond_state *st;
  shmval__lock *l;
  wait_spec w;
  int rc = cond_held(c, &st, &l);
  if (rc != 0 || (rc = wait_spec_init(timeout, &w)) != 0)
    return rc;
  uint64_t tok = shmval__my_token();
  uint32_t depth = l->depth, seq = atomic_load(&st->seq);
  bool owner_died = false;
  int slot = cond_enter(st);
  for (;;) {
    /* Release the lock fully, whatever the caller's recursion depth. */
    l->depth = 0;
    atomic_store_explicit(&l->owner, 0, memory_order_relaxed);
    pthread_mutex_unlock(&l->mutex);
    int r = futex_wait(&st->seq, seq, &w);
    rc = shmval__lock_took(l, tok, shmval__mutex_wait(&l->mutex, NULL));
    if (rc < 0) {
      /* The lock is gone for good (ENOTRECOVERABLE): not held; let the slot go. */
      if (slot >= 0)
        pthread_mutex_unlock(&st->slot[slot].alive);
      return rc;
    }
    owner_died |= rc == SHMVAL_OWNERDEAD;
    if (cond_notified(st, slot)) {
      rc = 0;
      break;
    }
    if (r == SHMVAL_ETIMEDOUT || (!w.forever && shmval__prim_past(&w.deadline))) {
      rc = SHMVAL_ETIMEDOUT;
      break;
    }
    seq = atomic_load(&st->seq);
  }
  cond_leave(st, slot);
  l->depth = depth;
  return owner_died ? SHMVAL_OWNERDEAD : rc;
}

int shm_cond_wait_for(shm_cond *c, int (*pred)(void *ctx), void *ctx, double timeout,
                      int *owner_died) {
  shmval__cond_state *st;
  shmval__lock *l;
  if (pred == NULL || isnan(timeout))
    return SHMVAL_EINVAL; /* the arguments first, then the state */
  int rc = cond_held(c, &st, &l);
  if (rc != 0)
    return rc;
  if (owner_died != NULL)
    *owner_died = 0;
  double end = shmval__prim_now() + timeout;
  int result = pred(ctx);
  while (!result) {
    double left = timeout < 0 ? -1 : end - shmval__prim_now();
    if (timeout >= 0 && left <= 0)
      break;
    rc = shm_cond_wait(c, left);
    if (rc < 0 && rc != SHMVAL_ETIMEDOUT)
      return rc;
    if (rc == SHMVAL_OWNERDEAD && owner_died != NULL)
      *owner_died = 1;
    result = pred(ctx);
  }
  return result;
}

/*
 * The slots of live waiters not yet notified, oldest first (dead waiters'
 * slots are freed on the way); their number.
 */
static unsigned waiting_slots(shmval__cond_state *st, unsigned *v) {
  unsigned m = 0;
  uint32_t taken = 0;
  for (unsigned i = 0; i < SHMVAL__COND_SLOTS; i++) {
    shmval__cond_slot *s = &st->slot[i];
    if (s->state != SHMVAL__CW_WAITING || !slot_alive(st, s)) {
      taken += s->state != SHMVAL__CW_FREE;
      continue;
    }
    taken++;
    /* Insertion by ticket; tickets wrap, so compare their distance. */
    unsigned j = m++;
    for (; j > 0 && (int32_t)(s->ticket - st->slot[v[j - 1]].ticket) < 0; j--)
      v[j] = v[j - 1];
    v[j] = i;
  }
  st->in_slots = taken; /* a count a killed waiter left too high is corrected here */
  return m;
}

static int cond_notify(shm_cond *c, uint32_t n) {
  shmval__cond_state *st;
  shmval__lock *l;
  unsigned v[SHMVAL__COND_SLOTS];
  int rc = cond_held(c, &st, &l);
  if (rc != 0)
    return rc;
  uint32_t m = st->in_slots > 0 ? waiting_slots(st, v) : 0, k = n < m ? n : m;
  for (uint32_t i = 0; i < k; i++)
    st->slot[v[i]].state = SHMVAL__CW_NOTIFIED;
  uint32_t idle = st->waiters > st->permits ? st->waiters - st->permits : 0;
  uint32_t extra = n - k < idle ? n - k : idle;
  st->permits += extra;
  if (k + extra > 0) {
    atomic_fetch_add(&st->seq, 1);
    /* Everyone re-checks under the lock; only the notified find it so. */
    shmval__prim_futex_wake(&st->seq, INT_MAX);
  }
  return 0;
}

int shm_cond_notify(shm_cond *c, unsigned n) { return cond_notify(c, n); }

int shm_cond_notify_all(shm_cond *c) { return cond_notify(c, UINT32_MAX); }

int shm_cond_destroy(shm_cond *c) { return shmval__obj_destroy(c, SHMVAL__KIND_COND); }

/* ------------------------------------------------------------------------ */
/* Barriers: Python's semantics, a count and a generation under the barrier's own robust lock. */

enum { FILLING = 0, RESETTING = -1, BROKEN = -2 };

/* Per-process actions, since a function pointer means nothing to another process. */
static struct {
  pthread_mutex_t mu;
  struct action {
    const void *barrier;
    void (*fn)(void *);
    void *ctx;
  } * v;
  size_t n, cap;
} actions = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct action *find_action(const void *b) {
  for (size_t i = 0; i < actions.n; i++)
    if (actions.v[i].barrier == b)
      return &actions.v[i];
  return NULL;
}

static void forget_action(const void *b) {
  pthread_mutex_lock(&actions.mu);
  struct action *a = find_action(b);
  if (a != NULL)
    *a = actions.v[--actions.n];
  pthread_mutex_unlock(&actions.mu);
}

int shm_barrier_set_action(shm_barrier *b, void (*fn)(void *), void *ctx) {
  shmval__obj *o = shmval__obj_of(b);
  int rc = shmval__obj_check(o, SHMVAL__KIND_BARRIER);
  if (rc != 0)
    return rc;
  if (fn == NULL) {
    forget_action(o);
    return 0;
  }
  pthread_mutex_lock(&actions.mu);
  struct action *a = find_action(o);
  if (a == NULL && actions.n == actions.cap) {
    size_t cap = actions.cap ? actions.cap * 2 : 8;
    struct action *v = realloc(actions.v, cap * sizeof *v);
    if (v == NULL) {
      pthread_mutex_unlock(&actions.mu);
      return SHMVAL_ENOMEM;
    }
    actions.v = v;
    actions.cap = cap;
  }
  if (a == NULL)
    a = &actions.v[actions.n++];
  *a = (struct action){o, fn, ctx};
  pthread_mutex_unlock(&actions.mu);
  return 0;
}

static void run_action(const void *b) {
  pthread_mutex_lock(&actions.mu);
  struct action *a = find_action(b), copy = a != NULL ? *a : (struct action){0};
  pthread_mutex_unlock(&actions.mu);
  if (copy.fn != NULL)
    copy.fn(copy.ctx);
}

int shm_barrier_create(shm_barrier **out, unsigned parties, double timeout, void (*action)(void *),
                       void *ctx, const shm_opts *opts) {
  shm_opts o;
  int rc = sync_opts(opts, 0, &o);
  if (rc != 0 || parties == 0 || parties > INT32_MAX || isnan(timeout))
    return rc != 0 ? rc : SHMVAL_EINVAL;
  shmval__barrier_state st = {.parties = parties, .timeout = timeout};
  atomic_init(&st.seq, 0);
  o.flags = SHMVAL_NONRECURSIVE;
  rc = sync_create((void **)out, SHMVAL__KIND_BARRIER, &st, sizeof st, &o);
  if (rc == 0 && action != NULL && (rc = shm_barrier_set_action(*out, action, ctx)) != 0) {
    shmval__obj_destroy(*out, SHMVAL__KIND_BARRIER);
    *out = NULL;
  }
  return rc;
}

int shm_barrier_open(shm_barrier **out, shm_segment *seg, const char *name) {
  return shmval__obj_open((void **)out, seg, name, SHMVAL__KIND_BARRIER, 0);
}

/*
 * Announce a state change (under the lock). Sleepers are woken by
 * bar_unlock(), after the lock is released, so that they do not wake only to
 * block on it; without sleepers there is no system call at all.
 */
static void bar_broadcast(shmval__barrier_state *st) { atomic_fetch_add(&st->seq, 1); }

static void bar_unlock(shmval__lock *l, shmval__barrier_state *st, uint32_t seq_at_lock) {
  bool changed =
      atomic_load(&st->seq) != seq_at_lock && __atomic_load_n(&st->sleepers, __ATOMIC_SEQ_CST) > 0;
  shmval__lock_leave(l);
  if (changed)
    shmval__prim_futex_wake(&st->seq, INT_MAX);
}

/*
 * Take the barrier's lock; a holder that died leaves the barrier broken. The
 * parties arrive together and each holds the lock for a few stores: a waiter
 * watches the word before sleeping.
 */
static int bar_lock(shmval__lock *l, shmval__barrier_state *st) {
  int rc = shmval__lock_enter_as(l, true);
  if (rc == SHMVAL_OWNERDEAD) {
    st->phase = BROKEN;
    bar_broadcast(st);
    rc = 0;
  }
  return rc;
}

/*
 * Parties of a barrier in step arrive within a few hundred nanoseconds of
 * each other, and a sleep and wake costs two context switches, tens of
 * microseconds on a loaded or virtual machine: a waiter first watches the
 * generation (reads only) for up to BAR_WATCH_S, and sleeps only if the pass
 * has not come by then or the state changed otherwise (a break, a reset).
 * The watch must outlast a wake-up's latency, or a party woken late makes
 * the next first arriver sleep too, and so on. Whether it passed.
 */
#define BAR_WATCH_S 50e-6

static bool bar_spin(shmval__barrier_state *st, uint32_t seq, uint32_t gen) {
  double until = shmval__prim_now() + BAR_WATCH_S;
  for (unsigned i = 1;; i++) {
    if (__atomic_load_n(&st->gen, __ATOMIC_ACQUIRE) != gen)
      return true;
    if (atomic_load_explicit(&st->seq, memory_order_relaxed) != seq)
      break;
    if (i % 32 == 0 && shmval__prim_now() >= until)
      break;
    shmval__prim_relax();
  }
  return __atomic_load_n(&st->gen, __ATOMIC_ACQUIRE) != gen;
}

/*
 * Wait for a state change, releasing the lock meanwhile. With @p gen, a wait
 * for a pass of generation *gen: a waiter that wakes to find the generation
 * moved has passed and returns 1 without retaking the lock (the party that
 * made the pass has reset everything), sparing it a lock round trip against
 * the parties coming back for the next pass.
 */
static int bar_wait_pass(shmval__lock *l, shmval__barrier_state *st, const wait_spec *w,
                         uint32_t *seen, const uint32_t *gen) {
  uint32_t seq = atomic_load(&st->seq);
  bar_unlock(l, st, *seen);
  if (gen != NULL && bar_spin(st, seq, *gen))
    return 1;
  /*
   * Counted as a sleeper only now: a change made since seq was read (under
   * the lock) makes the futex wait return at once, so a waker that saw no
   * sleeper and did not wake loses nobody.
   */
  __atomic_fetch_add(&st->sleepers, 1, __ATOMIC_SEQ_CST);
  int r = futex_wait(&st->seq, seq, w);
  if (gen != NULL && __atomic_load_n(&st->gen, __ATOMIC_ACQUIRE) != *gen) {
    __atomic_fetch_sub(&st->sleepers, 1, __ATOMIC_SEQ_CST);
    return 1;
  }
  *seen = atomic_load(&st->seq); /* before locking: bar_lock() itself may change it */
  int rc = bar_lock(l, st);
  __atomic_fetch_sub(&st->sleepers, 1, __ATOMIC_SEQ_CST);
  return rc != 0 ? rc : r;
}

/*
 * Wait for a state change, releasing the lock meanwhile. *seen is the
 * sequence number this thread last announced or saw; changes made since are
 * woken for first.
 */
static int bar_wait(shmval__lock *l, shmval__barrier_state *st, const wait_spec *w,
                    uint32_t *seen) {
  return bar_wait_pass(l, st, w, seen, NULL);
}

/* The barrier behind a handle, with its lock taken; *seen as in bar_wait(). */
static int bar_enter(shm_barrier *b, shmval__obj **o, shmval__barrier_state **st, shmval__lock **l,
                     uint32_t *seen) {
  int rc = sync_obj(b, SHMVAL__KIND_BARRIER, true, o, (void **)st);
  if (rc != 0)
    return rc;
  *l = shmval__obj_lock(*o);
  *seen = atomic_load(&(*st)->seq);
  rc = bar_lock(*l, *st);
  return rc;
}

int shm_barrier_wait_timeout(shm_barrier *b, double timeout, unsigned *index) {
  shmval__obj *o;
  shmval__barrier_state *st;
  shmval__lock *l;
  wait_spec w;
  uint32_t seen;
  int rc = isnan(timeout) ? SHMVAL_EINVAL : bar_enter(b, &o, &st, &l, &seen);
  if (rc != 0)
    return rc;
  wait_spec_init(timeout, &w);
  /*
   * A reset waits for the waiters it broke to leave. A party that died inside
   * wait() never leaves, so this wait too ends with the timeout, breaking the
   * barrier rather than hanging.
   */
  while (st->phase == RESETTING && rc == 0) {
    rc = bar_wait(l, st, &w, &seen);
    if (rc == SHMVAL_ETIMEDOUT) {
      st->phase = BROKEN;
      bar_broadcast(st);
      rc = 0; /* reported as broken below */
    }
  }
  if (rc != 0 || st->phase == BROKEN) {
    bar_unlock(l, st, seen);
    return rc != 0 ? rc : SHMVAL_EBROKEN;
  }
  uint32_t idx = st->count++, gen = st->gen;
  if (idx + 1 == st->parties) {
    /*
     * The last party: the pass is made here. The next pass starts at once
     * (count 0, a new generation) instead of waiting for the others to
     * leave, so a party coming straight back never sleeps behind one that
     * has not run yet; each waiter sees the generation move and goes.
     */
    run_action(o); /* as in Python, under the barrier's lock */
    st->count = 0;
    __atomic_store_n(&st->gen, gen + 1, __ATOMIC_RELEASE);
    bar_broadcast(st);
  } else {
    while (st->gen == gen && st->phase == FILLING && rc == 0) {
      rc = bar_wait_pass(l, st, &w, &seen, &gen);
      if (rc == 1) { /* passed, and the lock is not held */
        if (index != NULL)
          *index = idx;
        return 0;
      }
      if (rc == SHMVAL_ETIMEDOUT && st->gen == gen && st->phase == FILLING) {
        st->phase = BROKEN; /* a timeout breaks it for everyone */
        bar_broadcast(st);
      }
      rc = rc == SHMVAL_ETIMEDOUT ? 0 : rc;
    }
    if (st->gen == gen) {
      /* Broken or reset before the pass: leave it, the last one out of a reset refills it. */
      rc = rc != 0 ? rc : SHMVAL_EBROKEN;
      st->count--;
      if (st->count == 0 && st->phase == RESETTING) {
        st->phase = FILLING;
        bar_broadcast(st);
      }
    }
  }
  bar_unlock(l, st, seen);
  if (rc == 0 && index != NULL)
    *index = idx;
  return rc;
}

int shm_barrier_wait(shm_barrier *b, unsigned *index) {
  shmval__obj *o;
  shmval__barrier_state *st;
  int rc = sync_obj(b, SHMVAL__KIND_BARRIER, true, &o, (void **)&st);
  return rc != 0 ? rc : shm_barrier_wait_timeout(b, st->timeout, index);
}

int shm_barrier_abort(shm_barrier *b) {
  shmval__obj *o;
  shmval__barrier_state *st;
  shmval__lock *l;
  uint32_t seen;
  int rc = bar_enter(b, &o, &st, &l, &seen);
  if (rc != 0)
    return rc;
  st->phase = BROKEN;
  bar_broadcast(st);
  bar_unlock(l, st, seen);
  return 0;
}

int shm_barrier_reset(shm_barrier *b) {
  shmval__obj *o;
  shmval__barrier_state *st;
  shmval__lock *l;
  uint32_t seen;
  int rc = bar_enter(b, &o, &st, &l, &seen);
  if (rc != 0)
    return rc;
  if (st->count > 0) {
    /* Waiters leave with EBROKEN; the last one out refills it. */
    if (st->phase == FILLING || st->phase == BROKEN)
      st->phase = RESETTING;
  } else {
    st->phase = FILLING;
  }
  bar_broadcast(st);
  bar_unlock(l, st, seen);
  return 0;
}

/* A read of one barrier field: 0 and the value, or an error. */
static int bar_read(shm_barrier *b, int which) {
  shmval__obj *o;
  shmval__barrier_state *st;
  int rc = sync_obj(b, SHMVAL__KIND_BARRIER, false, &o, (void **)&st);
  if (rc != 0)
    return rc;
  switch (which) {
  case 0:
    return st->phase == BROKEN;
  case 1:
    return st->phase == FILLING ? (int)st->count : 0;
  default:
    return (int)st->parties;
  }
}

int shm_barrier_broken(shm_barrier *b) { return bar_read(b, 0); }

int shm_barrier_n_waiting(shm_barrier *b) { return bar_read(b, 1); }

int shm_barrier_parties(shm_barrier *b) { return bar_read(b, 2); }

int shm_barrier_destroy(shm_barrier *b) {
  int rc = shmval__obj_destroy(b, SHMVAL__KIND_BARRIER);
  if (rc == 0 && b != NULL)
    forget_action(shmval__obj_of(b));
  return rc;
}
