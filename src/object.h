/*
 * Objects (object.c): creation, destruction and opening by name of every
 * kind of object, and the Value and Array accessors.
 */
#ifndef SHMVAL_OBJECT_H
#define SHMVAL_OBJECT_H

#include "arena.h"
#include "dir.h"

#include <string.h>

/* Create an object of any kind; see shmval__obj_create() in object.c. */
int shmval__obj_create(shmval__obj **out, unsigned kind, int type, size_t elem_size, size_t align,
                       size_t length, const void *init, const shm_opts *opts);
/* The same in @p own (an arena object's segment of its own), when not NULL. */
int shmval__obj_create_in(shmval__obj **out, shmval__seg *own, unsigned kind, int type,
                          size_t elem_size, size_t align, size_t length, const void *init,
                          const shm_opts *opts);
/*
 * Create a container (a dict, a list) whose header, @p size bytes copied from
 * @p init, is the payload of one cache-line-aligned raw object: in
 * opts->segment, or in a growable arena segment of its own (opts->max_size).
 * opts->flags and opts->lock must be 0 / NULL.
 */
int shmval__obj_create_container(shmval__obj **out, unsigned kind, int type, size_t size,
                                 const void *init, const shm_opts *opts);
int shmval__obj_destroy(const void *h, unsigned kind);
int shmval__obj_open(void **out, struct shm_segment *sg, const char *name, unsigned kind,
                     int expected);

/*
 * shm_object_remove() of the name @p name (@p len bytes, checked) for the
 * kinds this layer destroys by itself (Values, Arrays); a container (a dict,
 * a list) is left to its layer: *cont is set to it, and 0 returned.
 */
int shmval__obj_remove(struct shm_segment *sg, const char *name, size_t len, shmval__obj **cont);

/*
 * Describe the object at @p off of @p sg, its name copied into @p name
 * (SHMVAL_NAME_MAX + 1 bytes): a consistent snapshot when the caller holds
 * the heap lock. ENOENT for an internal table; ESTALE, ECORRUPT.
 */
int shmval__obj_info(struct shm_segment *sg, uint64_t off, shm_object_info *info, char *name);

/* A record's size and alignment are usable: EINVAL otherwise. */
int shmval__check_record(size_t size, size_t align);

/* One element (or any bytes) copied with single loads and stores where it can. */
static inline void shmval__copy_elem(void *dst, const void *src, size_t n) {
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
static inline int shmval__locked_copy(const shmval__obj *o, bool ro, void *dst, const void *src,
                                      size_t n) {
  shmval__lock *l = shmval__obj_lock(o);
  int rc = 0;
  if (l != NULL) {
    if (SHMVAL__UNLIKELY(ro))
      return SHMVAL_EACCES;
    /* A live object holds a reference on its lock, so the lock is alive too. */
    if ((rc = shmval__lock_enter(l)) < 0)
      return rc;
  }
  shmval__copy_elem(dst, src, n);
  if (l != NULL) {
    int r = shmval__lock_leave(l);
    if (r != 0)
      return r;
  }
  return rc;
}

/* Acquire (or release) the lock of an object of @p kind. */
static inline int shmval__obj_lock_op(void *h, unsigned kind, bool acquire) {
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

#endif /* SHMVAL_OBJECT_H */
