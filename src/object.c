/*
 * Objects of every kind: creation (in a named segment or the default arena),
 * destruction and opening by name. The Value and Array accessors are in
 * value.c and array.c.
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
  return shmval__obj_create_in(out, NULL, kind, type, elem_size, align, length, init, opts);
}

/* A container in the default arena gets a growable segment of its own, sized as this. */
#define CONTAINER_FIRST ((size_t)64 << 10)
#define CONTAINER_MAX_DEFAULT ((size_t)4 << 30)

int shmval__obj_create_container(shmval__obj **out, unsigned kind, int type, size_t size,
                                 const void *init, const shm_opts *opts) {
  shm_opts o = {0};
  if (opts != NULL) {
    if (opts->flags != 0 || opts->lock != NULL)
      return SHMVAL_EINVAL;
    o = *opts;
  }
  o.flags = SHMVAL_RAW; /* its locks are in its header */
  shmval__seg *own = NULL;
  if (o.segment == NULL) {
    size_t max = o.max_size != 0 ? o.max_size : CONTAINER_MAX_DEFAULT;
    int rc = shmval__arena_add_growable(CONTAINER_FIRST,
                                        max < CONTAINER_FIRST ? CONTAINER_FIRST : max, &own);
    if (rc != 0)
      return rc;
  }
  return shmval__obj_create_in(out, own, kind, type, size, SHMVAL__CACHELINE, 1, init, &o);
}

int shmval__obj_create_in(shmval__obj **out, shmval__seg *own, unsigned kind, int type,
                          size_t elem_size, size_t align, size_t length, const void *init,
                          const shm_opts *opts) {
  uint64_t bytes;
  shmval__seg *target;
  size_t name_len;
  int rc = check_opts(opts, &target, &name_len);
  if (rc != 0 || out == NULL)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  if (own != NULL && target != NULL)
    return SHMVAL_EINVAL;
  /* An arena object with a segment of its own is allocated there, like in a named one. */
  bool in_own = own != NULL;
  if (in_own)
    target = own;
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
  if ((rc = obj_alloc(target, lo.block, &seg, &off, journal)) != 0) {
    if (in_own && rc == SHMVAL_ENOSPC)
      rc = SHMVAL_ENOMEM; /* the arena's code for no room */
    goto unref;
  }
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

int shmval__check_record(size_t size, size_t align) {
  if (size == 0 || size > SHMVAL__RECORD_MAX || align == 0 || align > SHMVAL__CACHELINE ||
      (align & (align - 1)) != 0 || size % align != 0)
    return SHMVAL_EINVAL;
  return 0;
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

/* ------------------------------------------------------------------------ */
/* Named objects. */

int shmval__obj_open(void **out, shm_segment *sg, const char *name, unsigned kind, int expected) {
  size_t len;
  shmval__obj *o;
  if (out == NULL || sg == NULL || shmval__dir_name_ok(name, &len) != 0)
    return SHMVAL_EINVAL;
  shmval__obj hdr;
  int rc = shmval__dir_lookup(sg->base, &sg->dir_cache, name, len, !(sg->flags & SHMVAL_RDONLY), &o,
                              &hdr);
  if (rc != 0)
    return rc;
  if (hdr.kind != kind || (expected != 0 && hdr.type != expected))
    return SHMVAL_ETYPE;
  *out = shmval__tag(o, (sg->flags & SHMVAL_RDONLY) != 0);
  return 0;
}

int shmval__obj_remove(shm_segment *sg, const char *name, size_t len, shmval__obj **cont) {
  shmval__obj *o;
  *cont = NULL;
  int rc = shmval__dir_lock(sg->base);
  if (rc != 0)
    return rc;
  rc = shmval__dir_find(sg->base, name, len, &o);
  if (rc == 0 && (o->kind == SHMVAL__KIND_DICT || o->kind == SHMVAL__KIND_LIST))
    *cont = o; /* emptied under its own locks, which come before this one */
  else if (rc == 0)
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
      [SHMVAL__KIND_VALUE] = SHMVAL_OBJ_VALUE,     [SHMVAL__KIND_ARRAY] = SHMVAL_OBJ_ARRAY,
      [SHMVAL__KIND_LOCK] = SHMVAL_OBJ_LOCK,       [SHMVAL__KIND_SEM] = SHMVAL_OBJ_SEM,
      [SHMVAL__KIND_COND] = SHMVAL_OBJ_COND,       [SHMVAL__KIND_EVENT] = SHMVAL_OBJ_EVENT,
      [SHMVAL__KIND_BARRIER] = SHMVAL_OBJ_BARRIER, [SHMVAL__KIND_DICT] = SHMVAL_OBJ_DICT,
      [SHMVAL__KIND_LIST] = SHMVAL_OBJ_LIST};
  if (h.kind >= sizeof kinds / sizeof kinds[0] || kinds[h.kind] == 0)
    return SHMVAL_ENOENT; /* an internal table */
  info->kind = kinds[h.kind];
  info->type = (shm_type)h.type;
  info->elem_size = h.elem_size;
  info->length = (size_t)h.length;
  info->has_lock = h.lock_rel != 0;
  info->offset = (size_t)off;
  if (h.kind == SHMVAL__KIND_DICT) {
    /* A dict: its values' type and size, and its keys (a sum of the stripes' counts). */
    const shmval__dict *d = (const shmval__dict *)(const void *)((const char *)o + h.payload_rel);
    uint64_t n = 0;
    for (unsigned i = 0; i < SHMVAL__DICT_STRIPES; i++)
      n += __atomic_load_n(&d->stripe[i].count, __ATOMIC_RELAXED);
    info->type = (shm_type)__atomic_load_n(&d->vtype, __ATOMIC_RELAXED);
    info->elem_size = __atomic_load_n(&d->vsize, __ATOMIC_RELAXED);
    info->length = (size_t)n;
    info->has_lock = 1; /* its stripes */
  } else if (h.kind == SHMVAL__KIND_LIST) {
    /* A list: its items' type and size, and its length. */
    const shmval__list *l = (const shmval__list *)(const void *)((const char *)o + h.payload_rel);
    info->type = (shm_type)__atomic_load_n(&l->itype, __ATOMIC_RELAXED);
    info->elem_size = __atomic_load_n(&l->isize, __ATOMIC_RELAXED);
    info->length = (size_t)(__atomic_load_n(&l->hc, __ATOMIC_RELAXED) >> 32);
    info->has_lock = 1;
  }
  /* A lock's handle is the lock itself, not its host object. */
  void *hd = h.kind == SHMVAL__KIND_LOCK ? (void *)((char *)o + h.lock_rel) : (void *)o;
  info->handle = shmval__tag(hd, (sg->flags & SHMVAL_RDONLY) != 0);
  return 0;
}
