/*
 * Object headers: element types, the layout of a new object's block, and the
 * validation of a header read from shared memory. Every header a process
 * reaches through shared memory (a name, a heap walk, a journal) is checked
 * here before it is trusted; the checks read only the header, its block's
 * size word and its lock, never the allocator or the directory.
 */
#include "objhdr.h"
#include "lock.h"

#include <string.h>
#include <wchar.h>

#define SHMVAL__T(code, ctype) [code] = {sizeof(ctype), _Alignof(ctype)}
const uint8_t shmval__types[128][2] = {
    SHMVAL__T('c', char),
    SHMVAL__T('b', signed char),
    SHMVAL__T('B', unsigned char),
    SHMVAL__T('?', _Bool),
    SHMVAL__T('u', wchar_t),
    SHMVAL__T('h', short),
    SHMVAL__T('H', unsigned short),
    SHMVAL__T('i', int),
    SHMVAL__T('I', unsigned int),
    SHMVAL__T('l', long),
    SHMVAL__T('L', unsigned long),
    SHMVAL__T('q', long long),
    SHMVAL__T('Q', unsigned long long),
    SHMVAL__T('f', float),
    SHMVAL__T('d', double),
};
#undef SHMVAL__T

size_t shm_type_size(int type_code) {
  size_t size, align;
  return shmval__type_info(type_code, &size, &align) ? size : 0;
}

void shmval__obj_plan(uint64_t bytes, size_t align, bool own_lock, size_t name_len,
                      shmval__obj_layout *lo) {
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
  lo->name_at = 0;
  if (name_len != 0) {
    lo->name_at = lo->block;
    lo->block += name_len + 1;
  }
}

bool shmval__atomic_ok(unsigned kind, int type, size_t size) {
  return kind == SHMVAL__KIND_VALUE && type != SHMVAL_RECORD &&
         (size == 1 || size == 2 || size == 4 || size == 8);
}

shmval__obj *shmval__obj_init(shmval__seg *seg, uint64_t off, const shmval__obj_layout *lo,
                              unsigned kind, int type, size_t elem_size, size_t length) {
  char *blk = (char *)seg + off;
  shmval__obj *o = (shmval__obj *)(void *)(blk + SHMVAL__OBJ_HDR_OFF);
  /*
   * Single stores: the block may have been a table or ring that a lock-free
   * reader (a dict's, a list's) still reads with single loads, and then
   * discards when its version moved.
   */
  __atomic_store_n(&o->kind, (uint8_t)kind, __ATOMIC_RELAXED);
  __atomic_store_n(&o->type, (uint8_t)type, __ATOMIC_RELAXED);
  __atomic_store_n(&o->flags, (uint16_t)(lo->lock_at != 0 ? SHMVAL__OBJ_OWN_LOCK : 0),
                   __ATOMIC_RELAXED);
  __atomic_store_n(&o->elem_size, (uint32_t)elem_size, __ATOMIC_RELAXED);
  __atomic_store_n(&o->payload_rel, (uint32_t)(lo->payload_at - SHMVAL__OBJ_HDR_OFF),
                   __ATOMIC_RELAXED);
  __atomic_store_n(&o->length, (uint64_t)length, __ATOMIC_RELAXED);
  __atomic_store_n(&o->self_off, off + SHMVAL__OBJ_HDR_OFF, __ATOMIC_RELAXED);
  __atomic_store_n(&o->name_off, lo->name_at != 0 ? lo->name_at - SHMVAL__OBJ_HDR_OFF : 0,
                   __ATOMIC_RELAXED);
  __atomic_store_n(&o->lock_rel, (int64_t)0, __ATOMIC_RELAXED);
  return o;
}

bool shmval__obj_kind_ok(const shmval__obj *o) {
  size_t size, align;
  switch (o->kind) {
  case SHMVAL__KIND_VALUE:
  case SHMVAL__KIND_ARRAY:
    if (o->type == SHMVAL_RECORD)
      return o->elem_size != 0 && o->elem_size <= SHMVAL__RECORD_MAX;
    return shmval__type_info(o->type, &size, &align) && size == o->elem_size &&
           (o->kind == SHMVAL__KIND_ARRAY || o->length == 1);
  case SHMVAL__KIND_DIR:
  case SHMVAL__KIND_ATTACH:
    return o->elem_size ==
               (o->kind == SHMVAL__KIND_DIR ? 8u : (uint32_t)sizeof(shmval__attach_ent)) &&
           o->lock_rel == 0 && o->name_off == 0;
  case SHMVAL__KIND_LOCK:
    return o->elem_size == 0 && o->length == 0 && (o->flags & SHMVAL__OBJ_OWN_LOCK);
  case SHMVAL__KIND_SEM:
    return o->elem_size == sizeof(shmval__sem_state) && o->length == 1 && o->lock_rel == 0;
  case SHMVAL__KIND_COND:
    return o->elem_size == sizeof(shmval__cond_state) && o->length == 1 && o->lock_rel != 0;
  case SHMVAL__KIND_EVENT:
    return o->elem_size == sizeof(shmval__event_state) && o->length == 1 && o->lock_rel == 0;
  case SHMVAL__KIND_BARRIER:
    return o->elem_size == sizeof(shmval__barrier_state) && o->length == 1 &&
           (o->flags & SHMVAL__OBJ_OWN_LOCK);
  case SHMVAL__KIND_DICT:
    /* Its header holds cache-line-aligned mutexes. */
    return o->elem_size == sizeof(shmval__dict) && o->length == 1 && o->lock_rel == 0 &&
           ((o->self_off + o->payload_rel) & (SHMVAL__CACHELINE - 1)) == 0;
  case SHMVAL__KIND_DICT_TAB:
    return o->elem_size == sizeof(shmval__dslot) && o->length >= 8 &&
           (o->length & (o->length - 1)) == 0 && o->lock_rel == 0 && o->name_off == 0;
  case SHMVAL__KIND_LIST:
    /* Its header holds a cache-line-aligned mutex. */
    return o->elem_size == sizeof(shmval__list) && o->length == 1 && o->lock_rel == 0 &&
           ((o->self_off + o->payload_rel) & (SHMVAL__CACHELINE - 1)) == 0;
  case SHMVAL__KIND_LIST_RING:
    return o->elem_size != 0 && o->length >= 8 && (o->length & (o->length - 1)) == 0 &&
           o->lock_rel == 0 && o->name_off == 0;
  default:
    return false;
  }
}

/*
 * Whether the lock at @p at (in the heap) has a host object @p back bytes
 * before it that owns it: the last reference to a lock frees its host's
 * block, found from the host's own header, so that header must be sound.
 */
static bool host_ok(const shmval__seg *seg, uint64_t at, uint64_t back) {
  uint64_t host = at - back;
  if (back > at - seg->heap_start || host < seg->heap_start + SHMVAL__OBJ_HDR_OFF ||
      (host & (SHMVAL__BLOCK_ALIGN - 1)) != SHMVAL__OBJ_HDR_OFF)
    return false;
  shmval__obj h;
  uint64_t w = *(const uint64_t *)(const void *)((const char *)seg + host - SHMVAL__OBJ_HDR_OFF);
  uint64_t blk_end = host - SHMVAL__OBJ_HDR_OFF + (w & ~SHMVAL__BLK_FLAGS);
  memcpy(&h, (const char *)seg + host, sizeof h);
  return h.self_off == host && (h.flags & SHMVAL__OBJ_OWN_LOCK) && h.lock_rel == (int64_t)back &&
         blk_end <= shmval__heap_end(seg) && at + sizeof(shmval__lock) <= blk_end;
}

bool shmval__obj_lock_ok(const shmval__seg *seg, const shmval__obj *o, uint64_t off, uint64_t pay,
                         uint64_t blk_end) {
  /* Unsigned, so that a hostile offset wraps (and fails the range check) instead of overflowing. */
  uint64_t at = off + (uint64_t)o->lock_rel, lock_end = at + sizeof(shmval__lock);
  if (at < seg->heap_start || (at & 7) != 0 || at > shmval__heap_end(seg) - sizeof(shmval__lock))
    return false;
  if (o->flags & SHMVAL__OBJ_OWN_LOCK) {
    if (at < off + sizeof *o || lock_end > pay)
      return false;
  } else if (lock_end > off - SHMVAL__OBJ_HDR_OFF && at < blk_end) {
    return false;
  }
  const shmval__lock *l = (const shmval__lock *)(const void *)((const char *)seg + at);
  if (atomic_load_explicit(&((shmval__lock *)(uintptr_t)l)->magic, memory_order_acquire) !=
          SHMVAL__LOCK_MAGIC ||
      !shmval__mutex_sane(&l->mutex))
    return false;
  return host_ok(seg, (uint64_t)at, l->host_back);
}

int shmval__obj_peek(shmval__seg *seg, uint64_t off, shmval__obj *copy) {
  uint64_t room;
  int rc = shmval__obj_peek_hdr(seg, off, copy, &room);
  if (rc != 0 || copy->name_off == 0)
    return rc;
  /* The name must end inside the block. */
  const char *name = (const char *)seg + off + copy->name_off;
  return memchr(name, 0, (size_t)(room - copy->name_off)) == NULL ? SHMVAL_ECORRUPT : 0;
}

int shmval__obj_peek_table(shmval__seg *seg, uint64_t off, unsigned kind, uint32_t elem_size,
                           uint64_t *payload, uint64_t *length) {
  uint64_t blk_end = shmval__obj_block_end(seg, off);
  if (blk_end == 0)
    return SHMVAL_ECORRUPT;
  /* The block holds at least a header (shmval__obj_block_end() checked): no underflow. */
  uint64_t room = blk_end - off;
  const shmval__obj *o = (const shmval__obj *)(const void *)((const char *)seg + off);
  if (atomic_load_explicit(&((shmval__obj *)(uintptr_t)o)->magic, memory_order_acquire) !=
      SHMVAL__OBJ_MAGIC)
    return SHMVAL_ECORRUPT;
  /* Each field read once, as a peer may be replacing the table. */
  uint64_t len = __atomic_load_n(&o->length, __ATOMIC_RELAXED), bytes;
  uint64_t rel = __atomic_load_n(&o->payload_rel, __ATOMIC_RELAXED);
  /* Its own offset too: a writer that frees the table finds its segment through it. */
  if (__atomic_load_n(&o->self_off, __ATOMIC_RELAXED) != off ||
      __atomic_load_n(&o->kind, __ATOMIC_RELAXED) != kind ||
      __atomic_load_n(&o->elem_size, __ATOMIC_RELAXED) != elem_size || len == 0 ||
      (len & (len - 1)) != 0 || rel < sizeof *o || (rel & 7) != 0 || rel > room ||
      __builtin_mul_overflow(len, (uint64_t)elem_size, &bytes) || bytes > room - rel)
    return SHMVAL_ECORRUPT;
  *payload = off + rel;
  *length = len;
  return 0;
}

int shmval__obj_at(shmval__seg *seg, uint64_t off, shmval__obj **out) {
  shmval__obj copy;
  int rc = shmval__obj_peek(seg, off, &copy);
  if (rc == 0)
    *out = (shmval__obj *)(void *)((char *)seg + off);
  return rc;
}

const char *shmval__obj_name(const shmval__obj *o) {
  return o->name_off != 0 ? (const char *)o + o->name_off : NULL;
}
