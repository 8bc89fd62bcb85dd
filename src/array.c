/*
 * Arrays (Python's Array and RawArray): creation, elements and slices under
 * the lock, and strings in 'c' and 'u' arrays.
 */
#include "object.h"

#include <string.h>
#include <wchar.h>

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
  int rc = shmval__check_record(size, align);
  if (rc != 0)
    return rc;
  return shmval__obj_create((shmval__obj **)out, SHMVAL__KIND_ARRAY, SHMVAL_RECORD, size, align,
                            length, init, opts);
}

int shm_array_destroy(shm_array *a) { return shmval__obj_destroy(a, SHMVAL__KIND_ARRAY); }

int shm_array_acquire(shm_array *a) { return shmval__obj_lock_op(a, SHMVAL__KIND_ARRAY, true); }

int shm_array_release(shm_array *a) { return shmval__obj_lock_op(a, SHMVAL__KIND_ARRAY, false); }

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
  return shmval__locked_copy(o, shmval__is_ro(a), out, shmval__payload(o) + i * o->elem_size,
                             o->elem_size);
}

int shm_array_set(shm_array *a, size_t i, const void *in) {
  shmval__obj *o = shmval__obj_of(a);
  int rc = slice_check(o, i, 1, in);
  if (SHMVAL__UNLIKELY(rc != 0 || shmval__is_ro(a)))
    return rc != 0 ? rc : SHMVAL_EACCES;
  return shmval__locked_copy(o, false, shmval__payload(o) + i * o->elem_size, in, o->elem_size);
}

int shm_array_read(shm_array *a, size_t start, size_t count, void *out) {
  shmval__obj *o = shmval__obj_of(a);
  int rc = slice_check(o, start, count, out);
  if (rc != 0 || count == 0)
    return rc;
  return shmval__locked_copy(o, shmval__is_ro(a), out, shmval__payload(o) + start * o->elem_size,
                             count * o->elem_size);
}

int shm_array_write(shm_array *a, size_t start, size_t count, const void *in) {
  shmval__obj *o = shmval__obj_of(a);
  int rc = slice_check(o, start, count, in);
  if (rc == 0 && shmval__is_ro(a))
    rc = SHMVAL_EACCES;
  if (rc != 0 || count == 0)
    return rc;
  return shmval__locked_copy(o, false, shmval__payload(o) + start * o->elem_size, in,
                             count * o->elem_size);
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
  return shmval__locked_copy(o, false, shmval__payload(o), s, (n < max ? n + 1 : n) * es);
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

int shm_array_open(shm_array **out, shm_segment *seg, const char *name, shm_type expected) {
  return shmval__obj_open((void **)out, seg, name, SHMVAL__KIND_ARRAY, (int)expected);
}
