/*
 * Values and Arrays: typed objects with an optional robust lock.
 *
 * An object occupies one heap block: the block's size word, the object
 * header, then (unless raw or sharing another object's lock) its own lock,
 * then the payload. A handle is a pointer to the object header.
 */
#include "internal.h"

#include <string.h>
#include <wchar.h>

/* Payloads, and one element, are limited to keep every size computation exact. */
#define PAYLOAD_MAX (UINT64_C(1) << 40)
#define RECORD_MAX (UINT64_C(1) << 30)

/* ------------------------------------------------------------------------ */
/* Types. */

static bool type_info(int t, size_t *size, size_t *align) {
#define SHMVAL__T(code, ctype)                                                                     \
  case code:                                                                                       \
    *size = sizeof(ctype);                                                                         \
    *align = _Alignof(ctype);                                                                      \
    return true;
  switch (t) {
    SHMVAL__T('c', char)
    SHMVAL__T('b', signed char)
    SHMVAL__T('B', unsigned char)
    SHMVAL__T('?', _Bool)
    SHMVAL__T('u', wchar_t)
    SHMVAL__T('h', short)
    SHMVAL__T('H', unsigned short)
    SHMVAL__T('i', int)
    SHMVAL__T('I', unsigned int)
    SHMVAL__T('l', long)
    SHMVAL__T('L', unsigned long)
    SHMVAL__T('q', long long)
    SHMVAL__T('Q', unsigned long long)
    SHMVAL__T('f', float)
    SHMVAL__T('d', double)
  default:
    return false;
  }
#undef SHMVAL__T
}

size_t shm_type_size(int type_code) {
  size_t size, align;
  return type_info(type_code, &size, &align) ? size : 0;
}

/* ------------------------------------------------------------------------ */
/* Handles. */

static inline shmval__obj *obj_of(const void *h) { return (shmval__obj *)(uintptr_t)h; }

/* 0 if @p o is a live object of @p kind; ESTALE if destroyed; else EINVAL. */
static inline int obj_check(const shmval__obj *o, unsigned kind) {
  if (SHMVAL__UNLIKELY(o == NULL))
    return SHMVAL_EINVAL;
  uint32_t m = atomic_load_explicit(&((shmval__obj *)(uintptr_t)o)->magic, memory_order_acquire);
  if (SHMVAL__UNLIKELY(m != SHMVAL__OBJ_MAGIC))
    return m == SHMVAL__OBJ_DEAD ? SHMVAL_ESTALE : SHMVAL_EINVAL;
  return SHMVAL__LIKELY(o->kind == kind) ? 0 : SHMVAL_EINVAL;
}

static inline char *payload(const shmval__obj *o) { return (char *)(uintptr_t)o + o->payload_rel; }

static inline shmval__lock *obj_lock(const shmval__obj *o) {
  return o->lock_rel == 0 ? NULL : (shmval__lock *)((char *)(uintptr_t)o + o->lock_rel);
}

static inline uint64_t block_off(const shmval__obj *o) { return o->self_off - SHMVAL__OBJ_HDR_OFF; }

/* ------------------------------------------------------------------------ */
/* Creation. */

/* Where things go inside a new block, as offsets from the block start. */
typedef struct layout {
  uint64_t lock_at; /* 0 = no lock of its own */
  uint64_t payload_at;
  uint64_t block;
} layout;

static void plan(uint64_t bytes, size_t align, bool own_lock, layout *lo) {
  uint64_t at = SHMVAL__OBJ_HDR_OFF + sizeof(shmval__obj);
  lo->lock_at = 0;
  if (own_lock) {
    lo->lock_at = (at + _Alignof(shmval__lock) - 1) & ~(uint64_t)(_Alignof(shmval__lock) - 1);
    at = lo->lock_at + sizeof(shmval__lock);
  }
  /* A payload of a cache line or more starts on a cache line of its own. */
  uint64_t a = bytes >= SHMVAL__CACHELINE ? SHMVAL__CACHELINE : (align < 8 ? 8 : align);
  lo->payload_at = (at + a - 1) & ~(a - 1);
  lo->block = lo->payload_at + bytes;
}

static int check_opts(const shm_opts *opts) {
  if (opts == NULL)
    return 0;
  if (opts->flags & ~(unsigned)(SHMVAL_RAW | SHMVAL_NONRECURSIVE))
    return SHMVAL_EINVAL;
  if (opts->lock != NULL && (opts->flags & (SHMVAL_RAW | SHMVAL_NONRECURSIVE)))
    return SHMVAL_EINVAL;
  return 0;
}

/* Take a reference on a lock another object owns; ESTALE if it is gone. */
static int lock_ref(shmval__lock *l) {
  uint32_t m = atomic_load_explicit(&l->magic, memory_order_acquire);
  if (m != SHMVAL__LOCK_MAGIC)
    return m == SHMVAL__OBJ_DEAD ? SHMVAL_ESTALE : SHMVAL_EINVAL;
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
 * object (already dead by then).
 */
static int lock_unref(shmval__lock *l) {
  if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1)
    return 0;
  shmval__obj *host = (shmval__obj *)((char *)l - l->host_back);
  atomic_store_explicit(&l->magic, SHMVAL__OBJ_DEAD, memory_order_release);
  return shmval__heap_free(shmval__obj_seg(host), block_off(host));
}

static int obj_create(shmval__obj **out, unsigned kind, int type, size_t elem_size, size_t align,
                      size_t length, const void *init, const shm_opts *opts) {
  uint64_t bytes;
  int rc = check_opts(opts);
  if (rc != 0 || out == NULL)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  if (__builtin_mul_overflow((uint64_t)elem_size, (uint64_t)length, &bytes) || bytes > PAYLOAD_MAX)
    return SHMVAL_EINVAL;
  shmval__lock *shared = opts != NULL ? (shmval__lock *)opts->lock : NULL;
  unsigned flags = opts != NULL ? opts->flags : 0;
  bool own_lock = shared == NULL && !(flags & SHMVAL_RAW);
  layout lo;
  plan(bytes, align, own_lock, &lo);

  if (shared != NULL && (rc = lock_ref(shared)) != 0)
    return rc;
  shmval__seg *seg;
  uint64_t off;
  rc = shmval__arena_alloc(lo.block, &seg, &off);
  if (rc != 0)
    goto fail;
  char *blk = (char *)seg + off;
  shmval__obj *o = (shmval__obj *)(blk + SHMVAL__OBJ_HDR_OFF);
  o->kind = (uint8_t)kind;
  o->type = (uint8_t)type;
  o->flags = own_lock ? SHMVAL__OBJ_OWN_LOCK : 0;
  o->elem_size = (uint32_t)elem_size;
  o->payload_rel = (uint32_t)(lo.payload_at - SHMVAL__OBJ_HDR_OFF);
  o->length = length;
  o->self_off = off + SHMVAL__OBJ_HDR_OFF;
  o->name_off = 0;
  o->lock_rel = 0;
  if (own_lock) {
    unsigned lf = (flags & SHMVAL_NONRECURSIVE) ? 0 : SHMVAL__LOCK_RECURSIVE;
    uint16_t back = (uint16_t)(lo.lock_at - SHMVAL__OBJ_HDR_OFF);
    rc = shmval__lock_init((shmval__lock *)(blk + lo.lock_at), lf, back);
    if (rc != 0) {
      (void)shmval__heap_free(seg, off);
      goto fail;
    }
    o->lock_rel = (int64_t)back;
  } else if (shared != NULL) {
    o->lock_rel = (int64_t)((char *)shared - (char *)o);
  }
  if (init != NULL)
    memcpy(blk + lo.payload_at, init, (size_t)bytes);
  else
    memset(blk + lo.payload_at, 0, (size_t)bytes);
  /* Published last: a handle is valid once its magic is. */
  atomic_store_explicit(&o->magic, SHMVAL__OBJ_MAGIC, memory_order_release);
  *out = o;
  return 0;
fail:
  if (shared != NULL)
    (void)lock_unref(shared);
  return rc;
}

static int check_record(size_t size, size_t align) {
  if (size == 0 || size > RECORD_MAX || align == 0 || align > SHMVAL__CACHELINE ||
      (align & (align - 1)) != 0 || size % align != 0)
    return SHMVAL_EINVAL;
  return 0;
}

int shm_value_create(shm_value **out, shm_type type, const void *init, const shm_opts *opts) {
  size_t size, align;
  if (!type_info((int)type, &size, &align))
    return SHMVAL_EINVAL;
  return obj_create((shmval__obj **)out, SHMVAL__KIND_VALUE, (int)type, size, align, 1, init, opts);
}

int shm_value_create_record(shm_value **out, size_t size, size_t align, const void *init,
                            const shm_opts *opts) {
  int rc = check_record(size, align);
  if (rc != 0)
    return rc;
  return obj_create((shmval__obj **)out, SHMVAL__KIND_VALUE, SHMVAL_RECORD, size, align, 1, init,
                    opts);
}

int shm_array_create(shm_array **out, shm_type type, size_t length, const void *init,
                     const shm_opts *opts) {
  size_t size, align;
  if (!type_info((int)type, &size, &align))
    return SHMVAL_EINVAL;
  return obj_create((shmval__obj **)out, SHMVAL__KIND_ARRAY, (int)type, size, align, length, init,
                    opts);
}

int shm_array_create_record(shm_array **out, size_t size, size_t align, size_t length,
                            const void *init, const shm_opts *opts) {
  int rc = check_record(size, align);
  if (rc != 0)
    return rc;
  return obj_create((shmval__obj **)out, SHMVAL__KIND_ARRAY, SHMVAL_RECORD, size, align, length,
                    init, opts);
}

/* ------------------------------------------------------------------------ */
/* Destruction. */

static int obj_destroy(shmval__obj *o, unsigned kind) {
  if (o == NULL)
    return 0;
  int rc = obj_check(o, kind);
  if (rc != 0)
    return rc;
  shmval__lock *l = obj_lock(o);
  /*
   * Freeing memory that holds a locked robust mutex would corrupt its
   * holder's robust list, so the last user of a lock must find it free.
   */
  bool last = l != NULL && atomic_load_explicit(&l->refs, memory_order_acquire) == 1;
  if (last && (rc = shmval__lock_try_exclusive(l)) != 0)
    return rc;
  uint32_t expect = SHMVAL__OBJ_MAGIC;
  if (!atomic_compare_exchange_strong_explicit(&o->magic, &expect, SHMVAL__OBJ_DEAD,
                                               memory_order_acq_rel, memory_order_acquire)) {
    if (last)
      (void)shmval__lock_release(l);
    return SHMVAL_ESTALE; /* another thread destroyed it first */
  }
  if (last)
    (void)shmval__lock_release(l);
  if (l == NULL)
    return shmval__heap_free(shmval__obj_seg(o), block_off(o));
  /* A block holding its own lock is freed by that lock's last reference. */
  if (!(o->flags & SHMVAL__OBJ_OWN_LOCK) &&
      (rc = shmval__heap_free(shmval__obj_seg(o), block_off(o))) != 0)
    return rc;
  return lock_unref(l);
}

int shm_value_destroy(shm_value *v) { return obj_destroy(obj_of(v), SHMVAL__KIND_VALUE); }

int shm_array_destroy(shm_array *a) { return obj_destroy(obj_of(a), SHMVAL__KIND_ARRAY); }

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

/* Copy @p n bytes under @p o's lock (if any); 0, OWNERDEAD or an error. */
static inline int locked_copy(const shmval__obj *o, void *dst, const void *src, size_t n) {
  shmval__lock *l = obj_lock(o);
  int rc = 0;
  /* A live object holds a reference on its lock, so the lock is alive too. */
  if (l != NULL && (rc = shmval__lock_enter(l)) < 0)
    return rc;
  copy_elem(dst, src, n);
  if (l != NULL) {
    int r = shmval__lock_leave(l);
    if (r != 0)
      return r;
  }
  return rc;
}

int shm_value_get(shm_value *v, void *out) {
  shmval__obj *o = obj_of(v);
  int rc = obj_check(o, SHMVAL__KIND_VALUE);
  if (SHMVAL__UNLIKELY(rc != 0 || out == NULL))
    return rc != 0 ? rc : SHMVAL_EINVAL;
  return locked_copy(o, out, payload(o), o->elem_size);
}

int shm_value_set(shm_value *v, const void *in) {
  shmval__obj *o = obj_of(v);
  int rc = obj_check(o, SHMVAL__KIND_VALUE);
  if (SHMVAL__UNLIKELY(rc != 0 || in == NULL))
    return rc != 0 ? rc : SHMVAL_EINVAL;
  return locked_copy(o, payload(o), in, o->elem_size);
}

void *shm_value_ptr(shm_value *v) {
  shmval__obj *o = obj_of(v);
  return obj_check(o, SHMVAL__KIND_VALUE) == 0 ? payload(o) : NULL;
}

shm_lock *shm_value_get_lock(shm_value *v) {
  shmval__obj *o = obj_of(v);
  return obj_check(o, SHMVAL__KIND_VALUE) == 0 ? (shm_lock *)obj_lock(o) : NULL;
}

/* Acquire (or release) the lock of an object of @p kind. */
static int obj_lock_op(void *h, unsigned kind, bool acquire) {
  shmval__obj *o = obj_of(h);
  int rc = obj_check(o, kind);
  if (rc != 0)
    return rc;
  shmval__lock *l = obj_lock(o);
  if (l == NULL)
    return SHMVAL_ENOLOCK;
  return acquire ? shmval__lock_enter(l) : shmval__lock_leave(l);
}

int shm_value_acquire(shm_value *v) { return obj_lock_op(v, SHMVAL__KIND_VALUE, true); }

int shm_value_release(shm_value *v) { return obj_lock_op(v, SHMVAL__KIND_VALUE, false); }

int shm_array_acquire(shm_array *a) { return obj_lock_op(a, SHMVAL__KIND_ARRAY, true); }

int shm_array_release(shm_array *a) { return obj_lock_op(a, SHMVAL__KIND_ARRAY, false); }

shm_type shm_value_type(const shm_value *v) {
  const shmval__obj *o = obj_of(v);
  return obj_check(o, SHMVAL__KIND_VALUE) == 0 ? (shm_type)o->type : (shm_type)0;
}

size_t shm_value_size(const shm_value *v) {
  const shmval__obj *o = obj_of(v);
  return obj_check(o, SHMVAL__KIND_VALUE) == 0 ? o->elem_size : 0;
}

/* Check an array handle and the slice [start, start+count). */
static inline int slice_check(const shmval__obj *o, size_t start, size_t count, const void *buf) {
  int rc = obj_check(o, SHMVAL__KIND_ARRAY);
  if (SHMVAL__UNLIKELY(rc != 0))
    return rc;
  if (SHMVAL__UNLIKELY(start > o->length || count > o->length - start))
    return SHMVAL_ERANGE;
  return buf == NULL && count != 0 ? SHMVAL_EINVAL : 0;
}

int shm_array_get(shm_array *a, size_t i, void *out) {
  shmval__obj *o = obj_of(a);
  int rc = slice_check(o, i, 1, out);
  if (SHMVAL__UNLIKELY(rc != 0))
    return rc;
  return locked_copy(o, out, payload(o) + i * o->elem_size, o->elem_size);
}

int shm_array_set(shm_array *a, size_t i, const void *in) {
  shmval__obj *o = obj_of(a);
  int rc = slice_check(o, i, 1, in);
  if (SHMVAL__UNLIKELY(rc != 0))
    return rc;
  return locked_copy(o, payload(o) + i * o->elem_size, in, o->elem_size);
}

int shm_array_read(shm_array *a, size_t start, size_t count, void *out) {
  shmval__obj *o = obj_of(a);
  int rc = slice_check(o, start, count, out);
  if (rc != 0 || count == 0)
    return rc;
  return locked_copy(o, out, payload(o) + start * o->elem_size, count * o->elem_size);
}

int shm_array_write(shm_array *a, size_t start, size_t count, const void *in) {
  shmval__obj *o = obj_of(a);
  int rc = slice_check(o, start, count, in);
  if (rc != 0 || count == 0)
    return rc;
  return locked_copy(o, payload(o) + start * o->elem_size, in, count * o->elem_size);
}

size_t shm_array_length(const shm_array *a) {
  const shmval__obj *o = obj_of(a);
  return obj_check(o, SHMVAL__KIND_ARRAY) == 0 ? (size_t)o->length : 0;
}

size_t shm_array_elem_size(const shm_array *a) {
  const shmval__obj *o = obj_of(a);
  return obj_check(o, SHMVAL__KIND_ARRAY) == 0 ? o->elem_size : 0;
}

shm_type shm_array_type(const shm_array *a) {
  const shmval__obj *o = obj_of(a);
  return obj_check(o, SHMVAL__KIND_ARRAY) == 0 ? (shm_type)o->type : (shm_type)0;
}

void *shm_array_ptr(shm_array *a) {
  shmval__obj *o = obj_of(a);
  return obj_check(o, SHMVAL__KIND_ARRAY) == 0 ? payload(o) : NULL;
}

shm_lock *shm_array_get_lock(shm_array *a) {
  shmval__obj *o = obj_of(a);
  return obj_check(o, SHMVAL__KIND_ARRAY) == 0 ? (shm_lock *)obj_lock(o) : NULL;
}

/* ------------------------------------------------------------------------ */
/* Strings in 'c' and 'u' arrays. */

/* Elements before the first zero element, or the whole length. */
static size_t str_len(const shmval__obj *o) {
  if (o->type == SHMVAL_CHAR) {
    const char *p = memchr(payload(o), 0, (size_t)o->length);
    return p != NULL ? (size_t)(p - payload(o)) : (size_t)o->length;
  }
  const wchar_t *w = wmemchr((const wchar_t *)(void *)payload(o), L'\0', (size_t)o->length);
  return w != NULL ? (size_t)(w - (const wchar_t *)(void *)payload(o)) : (size_t)o->length;
}

/* Copy the string of array @p o (of type @p type) into @p buf of @p cap elements. */
static int str_get(shmval__obj *o, int type, void *buf, size_t cap) {
  int rc = obj_check(o, SHMVAL__KIND_ARRAY);
  if (rc != 0)
    return rc;
  if (o->type != type)
    return SHMVAL_ETYPE;
  if (buf == NULL || cap == 0)
    return SHMVAL_EINVAL;
  shmval__lock *l = obj_lock(o);
  if (l != NULL && (rc = shmval__lock_enter(l)) < 0)
    return rc;
  int ret = rc;
  size_t n = str_len(o), es = o->elem_size;
  if (n >= cap) {
    ret = SHMVAL_ERANGE;
  } else {
    memcpy(buf, payload(o), n * es);
    memset((char *)buf + n * es, 0, es);
  }
  if (l != NULL && (rc = shmval__lock_leave(l)) != 0)
    return rc;
  return ret;
}

/* Store @p n elements from @p s, terminated when shorter than the array. */
static int str_set(shmval__obj *o, int type, const void *s, size_t n) {
  size_t es = o->elem_size;
  if (o->type != type)
    return SHMVAL_ETYPE;
  if (n > o->length)
    return SHMVAL_ERANGE;
  size_t bytes = n < o->length ? (n + 1) * es : n * es;
  /* The terminator, when stored, is the one at s[n]. */
  return locked_copy(o, payload(o), s, bytes);
}

int shm_array_get_string(shm_array *a, char *buf, size_t cap) {
  return str_get(obj_of(a), SHMVAL_CHAR, buf, cap);
}

int shm_array_get_wstring(shm_array *a, wchar_t *buf, size_t cap) {
  return str_get(obj_of(a), SHMVAL_WCHAR, buf, cap);
}

int shm_array_set_string(shm_array *a, const char *s) {
  shmval__obj *o = obj_of(a);
  int rc = obj_check(o, SHMVAL__KIND_ARRAY);
  if (rc != 0 || s == NULL)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  return str_set(o, SHMVAL_CHAR, s, strnlen(s, (size_t)o->length + 1));
}

int shm_array_set_wstring(shm_array *a, const wchar_t *s) {
  shmval__obj *o = obj_of(a);
  int rc = obj_check(o, SHMVAL__KIND_ARRAY);
  if (rc != 0 || s == NULL)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  return str_set(o, SHMVAL_WCHAR, s, wcsnlen(s, (size_t)o->length + 1));
}
