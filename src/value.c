/*
 * Values (Python's Value and RawValue): creation, access under the lock, and
 * the lock-free calls of atomic Values.
 */
#include "object.h"

#include <string.h>

int shm_value_create(shm_value **out, shm_type type, const void *init, const shm_opts *opts) {
  size_t size, align;
  if (!shmval__type_info((int)type, &size, &align))
    return SHMVAL_EINVAL;
  return shmval__obj_create((shmval__obj **)out, SHMVAL__KIND_VALUE, (int)type, size, align, 1,
                            init, opts);
}

int shm_value_create_record(shm_value **out, size_t size, size_t align, const void *init,
                            const shm_opts *opts) {
  int rc = shmval__check_record(size, align);
  if (rc != 0)
    return rc;
  return shmval__obj_create((shmval__obj **)out, SHMVAL__KIND_VALUE, SHMVAL_RECORD, size, align, 1,
                            init, opts);
}

int shm_value_destroy(shm_value *v) { return shmval__obj_destroy(v, SHMVAL__KIND_VALUE); }

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
  return shmval__locked_copy(o, shmval__is_ro(v), out, shmval__payload(o), o->elem_size);
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
  return shmval__locked_copy(o, false, shmval__payload(o), in, o->elem_size);
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

int shm_value_acquire(shm_value *v) { return shmval__obj_lock_op(v, SHMVAL__KIND_VALUE, true); }

int shm_value_release(shm_value *v) { return shmval__obj_lock_op(v, SHMVAL__KIND_VALUE, false); }

shm_type shm_value_type(const shm_value *v) {
  const shmval__obj *o = shmval__obj_of(v);
  return shmval__obj_check(o, SHMVAL__KIND_VALUE) == 0 ? (shm_type)o->type : (shm_type)0;
}

size_t shm_value_size(const shm_value *v) {
  const shmval__obj *o = shmval__obj_of(v);
  return shmval__obj_check(o, SHMVAL__KIND_VALUE) == 0 ? o->elem_size : 0;
}

int shm_value_open(shm_value **out, shm_segment *seg, const char *name, shm_type expected) {
  return shmval__obj_open((void **)out, seg, name, SHMVAL__KIND_VALUE, (int)expected);
}
