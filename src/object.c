/*
 * Values and Arrays: typed objects with an optional robust lock.
 *
 * An object occupies one heap block: the block's size word, the object
 * header, then (unless raw or sharing another object's lock) its own lock,
 * then the payload. A handle is a pointer to the object header.
 */
#include "object.h"
#include "dir.h"
#include "arena.h"
#include "heap.h"
#include "journal.h"
#include "objhdr.h"
#include "lock.h"

#include <string.h>
#include <wchar.h>

/* ------------------------------------------------------------------------ */
/* Creation. */

/* The segment holding lock @p l (through its host object). */
static shmval__seg *lock_seg(const shmval__lock *l) {
  const shmval__obj *host = (const shmval__obj *)(const void *)((const char *)l - l->host_back);
  return shmval__obj_seg(host);
}

/* Check the options; *target is the named segment to create in, or NULL. */
static int check_opts(const shm_opts *opts, shmval__seg **target, size_t *name_len) {
  *target = NULL;
  *name_len = 0;
  if (opts == NULL)
    return 0;
  if (opts->flags & ~(unsigned)(SHMVAL_RAW | SHMVAL_NONRECURSIVE | SHMVAL_ATOMIC))
    return SHMVAL_EINVAL;
  if (opts->lock != NULL && (opts->flags & (SHMVAL_RAW | SHMVAL_NONRECURSIVE | SHMVAL_ATOMIC)))
    return SHMVAL_EINVAL;
  if ((opts->flags & SHMVAL_ATOMIC) && (opts->flags & SHMVAL_NONRECURSIVE))
    return SHMVAL_EINVAL;
  if (opts->name != NULL) {
    if (opts->segment == NULL || shmval__dir_name_ok(opts->name, name_len) != 0)
      return SHMVAL_EINVAL;
  }
  if (opts->segment != NULL) {
    if (opts->segment->flags & SHMVAL_RDONLY)
      return SHMVAL_EACCES;
    *target = opts->segment->base;
  }
  if (opts->lock != NULL) {
    if (shmval__is_ro(opts->lock))
      return SHMVAL_EACCES;
    /* A lock is shared within its segment only (any arena segment counts as one). */
    shmval__seg *ls = lock_seg((const shmval__lock *)(const void *)opts->lock);
    bool lock_named = (ls->flags & SHMVAL__SEG_NAMED) != 0;
    if (*target != NULL ? ls != *target : lock_named)
      return SHMVAL_EINVAL;
  }
  return 0;
}

/* Take a reference on a lock another object owns; ESTALE if it is gone. */
static int lock_ref(shmval__lock *l) {
  int rc = shmval__lock_check(l);
  if (rc != 0)
    return rc;
  uint32_t r = atomic_load_explicit(&l->refs, memory_order_relaxed);
  do {
    if (r == 0 || r == UINT32_MAX)
      return r == 0 ? SHMVAL_ESTALE : SHMVAL_EAGAIN;
  } while (!atomic_compare_exchange_weak_explicit(&l->refs, &r, r + 1, memory_order_acq_rel,
                                                  memory_order_relaxed));
  return 0;
}

/*
 * Drop a reference on @p l; the last one frees the block of the lock's host
 * object (already dead by then), noting it in @p journal (when given) from
 * then until it is free: only the last reference makes the block this
 * process's alone.
 */
static int lock_unref(shmval__lock *l, uint64_t *journal) {
  if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1)
    return 0;
  shmval__obj *host = (shmval__obj *)((char *)l - l->host_back);
  shmval__journal_set(journal, shmval__block_off(host) | SHMVAL__J_UNREF);
  SHMVAL__CRASH_POINT();
  atomic_store_explicit(&l->magic, SHMVAL__OBJ_DEAD, memory_order_release);
  return shmval__heap_free(shmval__obj_seg(host), shmval__block_off(host), journal);
}

/* Allocate a block of @p bytes in @p target, or in the arena when NULL. */
static int obj_alloc(shmval__seg *target, uint64_t bytes, shmval__seg **seg, uint64_t *off,
                     uint64_t *journal) {
  if (target == NULL)
    return shmval__arena_alloc((size_t)bytes, seg, off);
  *seg = target;
  int rc = shmval__heap_alloc(target, (size_t)bytes, off, journal);
  return rc == SHMVAL_ENOMEM ? SHMVAL_ENOSPC : rc;
}

int shmval__obj_create(shmval__obj **out, unsigned kind, int type, size_t elem_size, size_t align,
                       size_t length, const void *init, const shm_opts *opts) {
  uint64_t bytes;
  shmval__seg *target;
  size_t name_len;
  int rc = check_opts(opts, &target, &name_len);
  if (rc != 0 || out == NULL)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  if (__builtin_mul_overflow((uint64_t)elem_size, (uint64_t)length, &bytes) ||
      bytes > SHMVAL__PAYLOAD_MAX)
    return SHMVAL_EINVAL;
  shmval__lock *shared = opts != NULL ? (shmval__lock *)(void *)opts->lock : NULL;
  unsigned flags = opts != NULL ? opts->flags : 0;
  bool atomic = (flags & SHMVAL_ATOMIC) != 0;
  if (atomic && !shmval__atomic_ok(kind, type, elem_size))
    return SHMVAL_EINVAL;
  bool own_lock = shared == NULL && !(flags & (SHMVAL_RAW | SHMVAL_ATOMIC));
  bool named = name_len != 0;
  shmval__obj_layout lo;
  shmval__obj_plan(bytes, align, own_lock, name_len, &lo);

  if (named && (rc = shmval__dir_lock(target)) != 0)
    return rc;
  shmval__obj *o;
  if (named && (rc = shmval__dir_find(target, opts->name, name_len, &o)) != SHMVAL_ENOENT) {
    rc = rc == 0 ? SHMVAL_EEXIST : rc;
    goto unlock;
  }
  if (shared != NULL && (rc = lock_ref(shared)) != 0)
    goto unlock;
  shmval__seg *seg;
  uint64_t off;
  /*
   * A named segment's creator notes the block in its journal until the
   * create returns (see below); the directory's next holder must know whose
   * journal it is if this one dies holding the directory lock.
   */
  uint64_t *journal = opts != NULL && opts->segment != NULL ? opts->segment->journal : NULL;
  if (named)
    shmval__dir_note_creator(target, journal);
  if ((rc = obj_alloc(target, lo.block, &seg, &off, journal)) != 0)
    goto unref;
  char *blk = (char *)seg + off;
  SHMVAL__CRASH_POINT();
  o = shmval__obj_init(seg, off, &lo, kind, type, elem_size, length);
  SHMVAL__CRASH_POINT();
  if (atomic)
    o->flags |= SHMVAL__OBJ_ATOMIC;
  if (own_lock) {
    unsigned lf = (flags & SHMVAL_NONRECURSIVE) ? 0 : SHMVAL__LOCK_RECURSIVE;
    uint16_t back = (uint16_t)(lo.lock_at - SHMVAL__OBJ_HDR_OFF);
    if ((rc = shmval__lock_init((shmval__lock *)(void *)(blk + lo.lock_at), lf, back)) != 0)
      goto free_block;
    o->lock_rel = (int64_t)back;
  } else if (shared != NULL) {
    o->lock_rel = (int64_t)((char *)shared - (char *)o);
  }
  if (init != NULL)
    memcpy(blk + lo.payload_at, init, (size_t)bytes);
  else
    memset(blk + lo.payload_at, 0, (size_t)bytes);
  if (named)
    memcpy(blk + lo.name_at, opts->name, name_len + 1);
  SHMVAL__CRASH_POINT();
  /*
   * Published last: a handle is valid, and a name findable, once its magic is.
   * The journal lets go of the block only after: until this call returns, no
   * other process can destroy the object (an unnamed one is not yet anyone
   * else's: shm_segment_foreach() skips an object a creator's journal names;
   * a named one needs the directory lock to be destroyed, and the lock's next
   * holder after a death here clears the journal first), so its block cannot
   * be reused while the journal names it. A reclaim frees an unnamed object
   * left so and keeps a named one.
   */
  atomic_store_explicit(&o->magic, SHMVAL__OBJ_MAGIC, memory_order_release);
  SHMVAL__CRASH_POINT();
  if (named && (rc = shmval__dir_insert(target, o)) != 0) {
    atomic_store_explicit(&o->magic, SHMVAL__OBJ_DEAD, memory_order_release);
    goto free_block;
  }
  SHMVAL__CRASH_POINT();
  shmval__journal_set(journal, 0);
  if (named) {
    shmval__dir_note_creator(target, NULL);
    shmval__dir_unlock(target);
  }
  *out = o;
  return 0;
free_block:
  (void)shmval__heap_free(seg, off, journal);
unref:
  if (shared != NULL)
    (void)lock_unref(shared, NULL);
unlock:
  if (named) {
    shmval__dir_note_creator(target, NULL);
    shmval__dir_unlock(target);
  }
  return rc;
}

static int check_record(size_t size, size_t align) {
  if (size == 0 || size > SHMVAL__RECORD_MAX || align == 0 || align > SHMVAL__CACHELINE ||
      (align & (align - 1)) != 0 || size % align != 0)
    return SHMVAL_EINVAL;
  return 0;
}

int shm_value_create(shm_value **out, shm_type type, const void *init, const shm_opts *opts) {
  size_t size, align;
  if (!shmval__type_info((int)type, &size, &align))
    return SHMVAL_EINVAL;
  return shmval__obj_create((shmval__obj **)out, SHMVAL__KIND_VALUE, (int)type, size, align, 1,
                            init, opts);
}

int shm_value_create_record(shm_value **out, size_t size, size_t align, const void *init,
                            const shm_opts *opts) {
  int rc = check_record(size, align);
  if (rc != 0)
    return rc;
  return shmval__obj_create((shmval__obj **)out, SHMVAL__KIND_VALUE, SHMVAL_RECORD, size, align, 1,
                            init, opts);
}

int shm_array_create(shm_array **out, shm_type type, size_t length, const void *init,
                     const shm_opts *opts) {
  size_t size, align;
  if (!shmval__type_info((int)type, &size, &align))
    return SHMVAL_EINVAL;
  return shmval__obj_create((shmval__obj **)out, SHMVAL__KIND_ARRAY, (int)type, size, align, length,
                            init, opts);
}

int shm_array_create_record(shm_array **out, size_t size, size_t align, size_t length,
                            const void *init, const shm_opts *opts) {
  int rc = check_record(size, align);
  if (rc != 0)
    return rc;
  return shmval__obj_create((shmval__obj **)out, SHMVAL__KIND_ARRAY, SHMVAL_RECORD, size, align,
                            length, init, opts);
}

/* ------------------------------------------------------------------------ */
/* Destruction. */

/* Destroy a live object; for a named one the caller holds the dir lock. */
static int destroy_locked(shmval__obj *o) {
  int rc;
  shmval__lock *l = shmval__obj_lock(o);
  shmval__seg *seg = shmval__obj_seg(o);
  /*
   * Freeing memory that holds a locked robust mutex would corrupt its
   * holder's robust list, so the last user of a lock must find it free.
   */
  bool last = l != NULL && atomic_load_explicit(&l->refs, memory_order_acquire) == 1;
  if (last && (rc = shmval__lock_try_exclusive(l)) != 0)
    return rc;
  uint64_t *journal = shmval__journal_for(seg);
  /*
   * The journal names the block before the retiring compare-and-swap, whose
   * dead magic names this process's attacher slot. A reclaimer frees the
   * block only if that magic is there: a death on either side of the swap
   * is then told apart, and a swap lost to another destroyer (whose block
   * may be reused at once) leaves the journal harmless.
   */
  shmval__journal_set(journal, shmval__block_off(o) | SHMVAL__J_DESTROY);
  SHMVAL__CRASH_POINT();
  uint32_t expect = SHMVAL__OBJ_MAGIC;
  if (!atomic_compare_exchange_strong_explicit(&o->magic, &expect, shmval__dead_magic(seg, journal),
                                               memory_order_acq_rel, memory_order_acquire)) {
    shmval__journal_set(journal, 0);
    if (last)
      (void)shmval__lock_release(l);
    return SHMVAL_ESTALE; /* another thread destroyed it first */
  }
  if (last)
    (void)shmval__lock_release(l);
  SHMVAL__CRASH_POINT();
  if (o->name_off != 0 && (seg->flags & SHMVAL__SEG_NAMED))
    (void)shmval__dir_remove(seg, o);
  SHMVAL__CRASH_POINT();
  if (l == NULL || !(o->flags & SHMVAL__OBJ_OWN_LOCK)) {
    if ((rc = shmval__heap_free(seg, shmval__block_off(o), journal)) != 0 || l == NULL)
      return rc;
    return lock_unref(l, journal);
  }
  /*
   * A block holding its own lock is freed by that lock's last reference.
   * Taking the host's reference, the only one, from 1 to 0 in one step keeps
   * the block this process's, journal and all; when other objects share the
   * lock, the journal lets go first, as once the host's reference is dropped
   * another user may free the block.
   */
  uint32_t one = 1;
  if (atomic_compare_exchange_strong_explicit(&l->refs, &one, 0, memory_order_acq_rel,
                                              memory_order_relaxed)) {
    SHMVAL__CRASH_POINT();
    atomic_store_explicit(&l->magic, SHMVAL__OBJ_DEAD, memory_order_release);
    return shmval__heap_free(seg, shmval__block_off(o), journal);
  }
  shmval__journal_set(journal, 0);
  return lock_unref(l, journal);
}

int shmval__obj_destroy(const void *h, unsigned kind) {
  shmval__obj *o = shmval__obj_of(h);
  if (o == NULL)
    return 0;
  int rc = shmval__obj_check(o, kind);
  if (rc != 0)
    return rc;
  if (shmval__is_ro(h))
    return SHMVAL_EACCES;
  shmval__seg *seg = shmval__obj_seg(o);
  bool named = o->name_off != 0 && (seg->flags & SHMVAL__SEG_NAMED);
  if (named && (rc = shmval__dir_lock(seg)) != 0)
    return rc;
  rc = destroy_locked(o);
  if (named)
    shmval__dir_unlock(seg);
  return rc;
}

int shm_value_destroy(shm_value *v) { return shmval__obj_destroy(v, SHMVAL__KIND_VALUE); }

int shm_array_destroy(shm_array *a) { return shmval__obj_destroy(a, SHMVAL__KIND_ARRAY); }

/* ------------------------------------------------------------------------ */
/* Access under the lock. */

static inline void copy_elem(void *dst, const void *src, size_t n) {
  /* Constant sizes let the compiler emit single loads and stores. */
  switch (n) {
  case 1:
    memcpy(dst, src, 1);
    break;
  case 2:
    memcpy(dst, src, 2);
    break;
  case 4:
    memcpy(dst, src, 4);
    break;
  case 8:
    memcpy(dst, src, 8);
    break;
  default:
    memcpy(dst, src, n);
  }
}

/*
 * Copy @p n bytes under @p o's lock (if any); 0, OWNERDEAD or an error. Through
 * a read-only handle a lock cannot be taken: only raw objects can be read.
 */
static inline int locked_copy(const shmval__obj *o, bool ro, void *dst, const void *src, size_t n) {
  shmval__lock *l = shmval__obj_lock(o);
  int rc = 0;
  if (l != NULL) {
    if (SHMVAL__UNLIKELY(ro))
      return SHMVAL_EACCES;
    /* A live object holds a reference on its lock, so the lock is alive too. */
    if ((rc = shmval__lock_enter(l)) < 0)
      return rc;
  }
  copy_elem(dst, src, n);
  if (l != NULL) {
    int r = shmval__lock_leave(l);
    if (r != 0)
      return r;
  }
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Atomic Values: whole-element atomic instructions, sequentially consistent. */

static void atomic_get(const void *p, void *out, size_t n) {
  switch (n) {
  case 1: {
    uint8_t x = __atomic_load_n((const uint8_t *)p, __ATOMIC_SEQ_CST);
    memcpy(out, &x, 1);
    break;
  }
  case 2: {
    uint16_t x = __atomic_load_n((const uint16_t *)p, __ATOMIC_SEQ_CST);
    memcpy(out, &x, 2);
    break;
  }
  case 4: {
    uint32_t x = __atomic_load_n((const uint32_t *)p, __ATOMIC_SEQ_CST);
    memcpy(out, &x, 4);
    break;
  }
  default: {
    uint64_t x = __atomic_load_n((const uint64_t *)p, __ATOMIC_SEQ_CST);
    memcpy(out, &x, 8);
  }
  }
}

/* An element of @p n bytes as an unsigned integer, and back. */
static uint64_t get_n(const void *src, size_t n) {
  uint8_t a;
  uint16_t b;
  uint32_t c;
  uint64_t d;
  switch (n) {
  case 1:
    return memcpy(&a, src, 1), a;
  case 2:
    return memcpy(&b, src, 2), b;
  case 4:
    return memcpy(&c, src, 4), c;
  default:
    return memcpy(&d, src, 8), d;
  }
}

static void put_n(void *dst, uint64_t v, size_t n) {
  uint8_t a = (uint8_t)v;
  uint16_t b = (uint16_t)v;
  uint32_t c = (uint32_t)v;
  memcpy(dst, n == 1 ? (void *)&a : n == 2 ? (void *)&b : n == 4 ? (void *)&c : (void *)&v, n);
}

/* Swap *p for the element at @p in; the old element goes to @p old (if any). */
static void atomic_xchg(void *p, const void *in, void *old, size_t n) {
  uint64_t x = get_n(in, n), r;
  switch (n) {
  case 1:
    r = __atomic_exchange_n((uint8_t *)p, (uint8_t)x, __ATOMIC_SEQ_CST);
    break;
  case 2:
    r = __atomic_exchange_n((uint16_t *)p, (uint16_t)x, __ATOMIC_SEQ_CST);
    break;
  case 4:
    r = __atomic_exchange_n((uint32_t *)p, (uint32_t)x, __ATOMIC_SEQ_CST);
    break;
  default:
    r = __atomic_exchange_n((uint64_t *)p, x, __ATOMIC_SEQ_CST);
  }
  if (old != NULL)
    put_n(old, r, n);
}

static bool atomic_cas(void *p, void *expected, const void *desired, size_t n) {
  uint64_t d = get_n(desired, n);
  switch (n) {
  case 1: {
    uint8_t e;
    memcpy(&e, expected, 1);
    bool ok = __atomic_compare_exchange_n((uint8_t *)p, &e, (uint8_t)d, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST);
    memcpy(expected, &e, 1);
    return ok;
  }
  case 2: {
    uint16_t e;
    memcpy(&e, expected, 2);
    bool ok = __atomic_compare_exchange_n((uint16_t *)p, &e, (uint16_t)d, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST);
    memcpy(expected, &e, 2);
    return ok;
  }
  case 4: {
    uint32_t e;
    memcpy(&e, expected, 4);
    bool ok = __atomic_compare_exchange_n((uint32_t *)p, &e, (uint32_t)d, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST);
    memcpy(expected, &e, 4);
    return ok;
  }
  default: {
    uint64_t e;
    memcpy(&e, expected, 8);
    bool ok = __atomic_compare_exchange_n((uint64_t *)p, &e, d, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST);
    memcpy(expected, &e, 8);
    return ok;
  }
  }
}

/* The atomic Value behind @p v, writable; ENOTATOMIC for any other Value. */
static int atomic_obj(shm_value *v, const void *arg, shmval__obj **out) {
  shmval__obj *o = shmval__obj_of(v);
  int rc = shmval__obj_check(o, SHMVAL__KIND_VALUE);
  if (rc != 0 || arg == NULL)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  if (!(o->flags & SHMVAL__OBJ_ATOMIC))
    return SHMVAL_ENOTATOMIC;
  *out = o;
  return shmval__is_ro(v) ? SHMVAL_EACCES : 0;
}

int shm_value_add(shm_value *v, const void *delta, void *old) {
  shmval__obj *o;
  int rc = atomic_obj(v, delta, &o);
  if (rc != 0)
    return rc;
  void *p = shmval__payload(o);
  size_t n = o->elem_size;
  uint64_t d = get_n(delta, n), r;
  if (o->type == SHMVAL_BOOL)
    return SHMVAL_ETYPE;
  if (o->type == SHMVAL_FLOAT) {
    /* No hardware add for floating point: a compare-and-swap loop on the bits. */
    uint32_t *w = p, cur = __atomic_load_n(w, __ATOMIC_SEQ_CST), next;
    float f, fd;
    memcpy(&fd, delta, sizeof fd);
    do {
      memcpy(&f, &cur, sizeof f);
      f += fd;
      memcpy(&next, &f, sizeof next);
    } while (
        !__atomic_compare_exchange_n(w, &cur, next, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    if (old != NULL)
      memcpy(old, &cur, sizeof cur);
    return 0;
  }
  if (o->type == SHMVAL_DOUBLE) {
    uint64_t *w = p, cur = __atomic_load_n(w, __ATOMIC_SEQ_CST), next;
    double f, fd;
    memcpy(&fd, delta, sizeof fd);
    do {
      memcpy(&f, &cur, sizeof f);
      f += fd;
      memcpy(&next, &f, sizeof next);
    } while (
        !__atomic_compare_exchange_n(w, &cur, next, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    if (old != NULL)
      memcpy(old, &cur, sizeof cur);
    return 0;
  }
  switch (n) {
  case 1:
    r = __atomic_fetch_add((uint8_t *)p, (uint8_t)d, __ATOMIC_SEQ_CST);
    break;
  case 2:
    r = __atomic_fetch_add((uint16_t *)p, (uint16_t)d, __ATOMIC_SEQ_CST);
    break;
  case 4:
    r = __atomic_fetch_add((uint32_t *)p, (uint32_t)d, __ATOMIC_SEQ_CST);
    break;
  default:
    r = __atomic_fetch_add((uint64_t *)p, d, __ATOMIC_SEQ_CST);
  }
  if (old != NULL)
    put_n(old, r, n);
  return 0;
}

int shm_value_exchange(shm_value *v, const void *in, void *old) {
  shmval__obj *o;
  int rc = atomic_obj(v, in, &o);
  if (rc == 0)
    atomic_xchg(shmval__payload(o), in, old, o->elem_size);
  return rc;
}

int shm_value_cas(shm_value *v, void *expected, const void *desired) {
  shmval__obj *o;
  int rc = atomic_obj(v, desired, &o);
  if (rc != 0 || expected == NULL)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  return atomic_cas(shmval__payload(o), expected, desired, o->elem_size) ? 1 : 0;
}

int shm_value_get(shm_value *v, void *out) {
  shmval__obj *o = shmval__obj_of(v);
  int rc = shmval__obj_check(o, SHMVAL__KIND_VALUE);
  if (SHMVAL__UNLIKELY(rc != 0 || out == NULL))
    return rc != 0 ? rc : SHMVAL_EINVAL;
  if (o->flags & SHMVAL__OBJ_ATOMIC) {
    atomic_get(shmval__payload(o), out, o->elem_size);
    return 0;
  }
  return locked_copy(o, shmval__is_ro(v), out, shmval__payload(o), o->elem_size);
}

int shm_value_set(shm_value *v, const void *in) {
  shmval__obj *o = shmval__obj_of(v);
  int rc = shmval__obj_check(o, SHMVAL__KIND_VALUE);
  if (SHMVAL__UNLIKELY(rc != 0 || in == NULL || shmval__is_ro(v)))
    return rc != 0 ? rc : in == NULL ? SHMVAL_EINVAL : SHMVAL_EACCES;
  if (o->flags & SHMVAL__OBJ_ATOMIC) {
    atomic_xchg(shmval__payload(o), in, NULL, o->elem_size);
    return 0;
  }
  return locked_copy(o, false, shmval__payload(o), in, o->elem_size);
}

void *shm_value_ptr(shm_value *v) {
  shmval__obj *o = shmval__obj_of(v);
  return shmval__obj_check(o, SHMVAL__KIND_VALUE) == 0 ? shmval__payload(o) : NULL;
}

shm_lock *shm_value_get_lock(shm_value *v) {
  shmval__obj *o = shmval__obj_of(v);
  if (shmval__obj_check(o, SHMVAL__KIND_VALUE) != 0 || shmval__obj_lock(o) == NULL)
    return NULL;
  return shmval__tag(shmval__obj_lock(o), shmval__is_ro(v));
}

/* Acquire (or release) the lock of an object of @p kind. */
static int obj_lock_op(void *h, unsigned kind, bool acquire) {
  shmval__obj *o = shmval__obj_of(h);
  int rc = shmval__obj_check(o, kind);
  if (rc != 0)
    return rc;
  shmval__lock *l = shmval__obj_lock(o);
  if (l == NULL)
    return SHMVAL_ENOLOCK;
  if (shmval__is_ro(h))
    return SHMVAL_EACCES;
  return acquire ? shmval__lock_enter(l) : shmval__lock_leave(l);
}

int shm_value_acquire(shm_value *v) { return obj_lock_op(v, SHMVAL__KIND_VALUE, true); }

int shm_value_release(shm_value *v) { return obj_lock_op(v, SHMVAL__KIND_VALUE, false); }

int shm_array_acquire(shm_array *a) { return obj_lock_op(a, SHMVAL__KIND_ARRAY, true); }

int shm_array_release(shm_array *a) { return obj_lock_op(a, SHMVAL__KIND_ARRAY, false); }

shm_type shm_value_type(const shm_value *v) {
  const shmval__obj *o = shmval__obj_of(v);
  return shmval__obj_check(o, SHMVAL__KIND_VALUE) == 0 ? (shm_type)o->type : (shm_type)0;
}

size_t shm_value_size(const shm_value *v) {
  const shmval__obj *o = shmval__obj_of(v);
  return shmval__obj_check(o, SHMVAL__KIND_VALUE) == 0 ? o->elem_size : 0;
}

/* Check an array handle and the slice [start, start+count). */
static inline int slice_check(const shmval__obj *o, size_t start, size_t count, const void *buf) {
  int rc = shmval__obj_check(o, SHMVAL__KIND_ARRAY);
  if (SHMVAL__UNLIKELY(rc != 0))
    return rc;
  if (SHMVAL__UNLIKELY(start > o->length || count > o->length - start))
    return SHMVAL_ERANGE;
  return buf == NULL && count != 0 ? SHMVAL_EINVAL : 0;
}

int shm_array_get(shm_array *a, size_t i, void *out) {
  shmval__obj *o = shmval__obj_of(a);
  int rc = slice_check(o, i, 1, out);
  if (SHMVAL__UNLIKELY(rc != 0))
    return rc;
  return locked_copy(o, shmval__is_ro(a), out, shmval__payload(o) + i * o->elem_size, o->elem_size);
}

int shm_array_set(shm_array *a, size_t i, const void *in) {
  shmval__obj *o = shmval__obj_of(a);
  int rc = slice_check(o, i, 1, in);
  if (SHMVAL__UNLIKELY(rc != 0 || shmval__is_ro(a)))
    return rc != 0 ? rc : SHMVAL_EACCES;
  return locked_copy(o, false, shmval__payload(o) + i * o->elem_size, in, o->elem_size);
}

int shm_array_read(shm_array *a, size_t start, size_t count, void *out) {
  shmval__obj *o = shmval__obj_of(a);
  int rc = slice_check(o, start, count, out);
  if (rc != 0 || count == 0)
    return rc;
  return locked_copy(o, shmval__is_ro(a), out, shmval__payload(o) + start * o->elem_size,
                     count * o->elem_size);
}

int shm_array_write(shm_array *a, size_t start, size_t count, const void *in) {
  shmval__obj *o = shmval__obj_of(a);
  int rc = slice_check(o, start, count, in);
  if (rc == 0 && shmval__is_ro(a))
    rc = SHMVAL_EACCES;
  if (rc != 0 || count == 0)
    return rc;
  return locked_copy(o, false, shmval__payload(o) + start * o->elem_size, in, count * o->elem_size);
}

size_t shm_array_length(const shm_array *a) {
  const shmval__obj *o = shmval__obj_of(a);
  return shmval__obj_check(o, SHMVAL__KIND_ARRAY) == 0 ? (size_t)o->length : 0;
}

size_t shm_array_elem_size(const shm_array *a) {
  const shmval__obj *o = shmval__obj_of(a);
  return shmval__obj_check(o, SHMVAL__KIND_ARRAY) == 0 ? o->elem_size : 0;
}

shm_type shm_array_type(const shm_array *a) {
  const shmval__obj *o = shmval__obj_of(a);
  return shmval__obj_check(o, SHMVAL__KIND_ARRAY) == 0 ? (shm_type)o->type : (shm_type)0;
}

void *shm_array_ptr(shm_array *a) {
  shmval__obj *o = shmval__obj_of(a);
  return shmval__obj_check(o, SHMVAL__KIND_ARRAY) == 0 ? shmval__payload(o) : NULL;
}

shm_lock *shm_array_get_lock(shm_array *a) {
  shmval__obj *o = shmval__obj_of(a);
  if (shmval__obj_check(o, SHMVAL__KIND_ARRAY) != 0 || shmval__obj_lock(o) == NULL)
    return NULL;
  return shmval__tag(shmval__obj_lock(o), shmval__is_ro(a));
}

/* ------------------------------------------------------------------------ */
/* Strings in 'c' and 'u' arrays. */

/* Elements before the first zero element, or the whole length. */
static size_t str_len(const shmval__obj *o) {
  if (o->type == SHMVAL_CHAR) {
    const char *p = memchr(shmval__payload(o), 0, (size_t)o->length);
    return p != NULL ? (size_t)(p - shmval__payload(o)) : (size_t)o->length;
  }
  const wchar_t *w = wmemchr((const wchar_t *)(void *)shmval__payload(o), L'\0', (size_t)o->length);
  return w != NULL ? (size_t)(w - (const wchar_t *)(void *)shmval__payload(o)) : (size_t)o->length;
}

/* Copy the string of array @p h (of type @p type) into @p buf of @p cap elements. */
static int str_get(const void *h, int type, void *buf, size_t cap) {
  shmval__obj *o = shmval__obj_of(h);
  int rc = shmval__obj_check(o, SHMVAL__KIND_ARRAY);
  if (rc != 0)
    return rc;
  if (o->type != type)
    return SHMVAL_ETYPE;
  if (buf == NULL || cap == 0)
    return SHMVAL_EINVAL;
  shmval__lock *l = shmval__obj_lock(o);
  if (l != NULL && shmval__is_ro(h))
    return SHMVAL_EACCES;
  if (l != NULL && (rc = shmval__lock_enter(l)) < 0)
    return rc;
  int ret = rc;
  size_t n = str_len(o), es = o->elem_size;
  if (n >= cap) {
    ret = SHMVAL_ERANGE;
  } else {
    memcpy(buf, shmval__payload(o), n * es);
    memset((char *)buf + n * es, 0, es);
  }
  if (l != NULL && (rc = shmval__lock_leave(l)) != 0)
    return rc;
  return ret;
}

/* Store the string @p s (of @p type) in array @p h, terminated when shorter. */
static int str_set(const void *h, int type, const void *s, bool wide) {
  shmval__obj *o = shmval__obj_of(h);
  int rc = shmval__obj_check(o, SHMVAL__KIND_ARRAY);
  if (rc != 0 || s == NULL)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  if (o->type != type)
    return SHMVAL_ETYPE;
  if (shmval__is_ro(h))
    return SHMVAL_EACCES;
  size_t max = (size_t)o->length, es = o->elem_size;
  size_t n = wide ? wcsnlen(s, max + 1) : strnlen(s, max + 1);
  if (n > max)
    return SHMVAL_ERANGE;
  /* The terminator, when stored, is the one at s[n]. */
  return locked_copy(o, false, shmval__payload(o), s, (n < max ? n + 1 : n) * es);
}

int shm_array_get_string(shm_array *a, char *buf, size_t cap) {
  return str_get(a, SHMVAL_CHAR, buf, cap);
}

int shm_array_get_wstring(shm_array *a, wchar_t *buf, size_t cap) {
  return str_get(a, SHMVAL_WCHAR, buf, cap);
}

int shm_array_set_string(shm_array *a, const char *s) { return str_set(a, SHMVAL_CHAR, s, false); }

int shm_array_set_wstring(shm_array *a, const wchar_t *s) {
  return str_set(a, SHMVAL_WCHAR, s, true);
}

/* ------------------------------------------------------------------------ */
/* Objects found through shared memory: validated before they are trusted. */

/* ------------------------------------------------------------------------ */
/* Named objects. */

int shmval__obj_open(void **out, shm_segment *sg, const char *name, unsigned kind, int expected) {
  size_t len;
  shmval__obj *o;
  if (out == NULL || sg == NULL || shmval__dir_name_ok(name, &len) != 0)
    return SHMVAL_EINVAL;
  shmval__obj hdr;
  int rc = shmval__dir_lookup(sg->base, name, len, !(sg->flags & SHMVAL_RDONLY), &o, &hdr);
  if (rc != 0)
    return rc;
  if (hdr.kind != kind || (expected != 0 && hdr.type != expected))
    return SHMVAL_ETYPE;
  *out = shmval__tag(o, (sg->flags & SHMVAL_RDONLY) != 0);
  return 0;
}

int shm_value_open(shm_value **out, shm_segment *seg, const char *name, shm_type expected) {
  return shmval__obj_open((void **)out, seg, name, SHMVAL__KIND_VALUE, (int)expected);
}

int shm_array_open(shm_array **out, shm_segment *seg, const char *name, shm_type expected) {
  return shmval__obj_open((void **)out, seg, name, SHMVAL__KIND_ARRAY, (int)expected);
}

int shm_object_remove(shm_segment *sg, const char *name) {
  size_t len;
  shmval__obj *o;
  if (sg == NULL || shmval__dir_name_ok(name, &len) != 0)
    return SHMVAL_EINVAL;
  if (sg->flags & SHMVAL_RDONLY)
    return SHMVAL_EACCES;
  int rc = shmval__dir_lock(sg->base);
  if (rc != 0)
    return rc;
  rc = shmval__dir_find(sg->base, name, len, &o);
  if (rc == 0)
    rc = o->kind == SHMVAL__KIND_VALUE || o->kind == SHMVAL__KIND_ARRAY ? destroy_locked(o)
                                                                        : SHMVAL_ECORRUPT;
  shmval__dir_unlock(sg->base);
  return rc;
}

/* Copy the name of the object @p o (checked by shmval__obj_peek()) into @p buf. */
static const char *copy_name(const shmval__obj *o, const shmval__obj *hdr, char *buf) {
  if (hdr->name_off == 0)
    return NULL;
  const char *name = (const char *)o + hdr->name_off;
  size_t n = strnlen(name, SHMVAL_NAME_MAX);
  memcpy(buf, name, n);
  buf[n] = '\0';
  return buf;
}

int shmval__obj_info(shm_segment *sg, uint64_t off, shm_object_info *info, char *name) {
  shmval__obj h, again;
  int rc = shmval__obj_peek(sg->base, off, &h);
  if (rc != 0)
    return rc;
  shmval__obj *o = (shmval__obj *)(void *)((char *)sg->base + off);
  info->name = copy_name(o, &h, name);
  /*
   * The caller holds the heap lock, so the block cannot be freed and reused
   * meanwhile, and a live header and its name never change. A read-only
   * mapping cannot take the lock: the header is read again after the name
   * was copied and the object skipped if it changed (best effort).
   */
  if ((sg->flags & SHMVAL_RDONLY) &&
      (shmval__obj_peek(sg->base, off, &again) != 0 || memcmp(&h, &again, sizeof h) != 0))
    return SHMVAL_ESTALE;
  static const shm_object_kind kinds[] = {
      [SHMVAL__KIND_VALUE] = SHMVAL_OBJ_VALUE,    [SHMVAL__KIND_ARRAY] = SHMVAL_OBJ_ARRAY,
      [SHMVAL__KIND_LOCK] = SHMVAL_OBJ_LOCK,      [SHMVAL__KIND_SEM] = SHMVAL_OBJ_SEM,
      [SHMVAL__KIND_COND] = SHMVAL_OBJ_COND,      [SHMVAL__KIND_EVENT] = SHMVAL_OBJ_EVENT,
      [SHMVAL__KIND_BARRIER] = SHMVAL_OBJ_BARRIER};
  if (h.kind >= sizeof kinds / sizeof kinds[0] || kinds[h.kind] == 0)
    return SHMVAL_ENOENT; /* an internal table */
  info->kind = kinds[h.kind];
  info->type = (shm_type)h.type;
  info->elem_size = h.elem_size;
  info->length = (size_t)h.length;
  info->has_lock = h.lock_rel != 0;
  info->offset = (size_t)off;
  /* A lock's handle is the lock itself, not its host object. */
  void *hd = h.kind == SHMVAL__KIND_LOCK ? (void *)((char *)o + h.lock_rel) : (void *)o;
  info->handle = shmval__tag(hd, (sg->flags & SHMVAL_RDONLY) != 0);
  return 0;
}
