/*
 * Object headers (objhdr.c): element types, the layout of a new object's
 * block, validation of a header read from shared memory, and handles.
 */
#ifndef SHMVAL_OBJHDR_H
#define SHMVAL_OBJHDR_H

#include "lock.h"

/* Payloads, and one element, are limited to keep every size computation exact. */
#define SHMVAL__PAYLOAD_MAX (UINT64_C(1) << 40)
#define SHMVAL__RECORD_MAX (UINT64_C(1) << 30)

/* Each element type letter's C size and alignment; zeros for other codes. */
extern const uint8_t shmval__types[128][2];

/* The C size and alignment of element type @p t; false for an unknown code. */
static inline bool shmval__type_info(int t, size_t *size, size_t *align) {
  if ((unsigned)t >= 128 || shmval__types[t][0] == 0)
    return false;
  *size = shmval__types[t][0];
  *align = shmval__types[t][1];
  return true;
}
/* Whether a Value of @p type can be atomic: sizes the hardware swaps whole. */
bool shmval__atomic_ok(unsigned kind, int type, size_t size);

/* Where things go inside a new block, as offsets from the block start. */
typedef struct shmval__obj_layout {
  uint64_t lock_at; /* 0 = no lock of its own */
  uint64_t payload_at;
  uint64_t name_at; /* 0 = unnamed */
  uint64_t block;
} shmval__obj_layout;

/* Plan a block for @p bytes of payload aligned to @p align, a lock of its own, a name. */
void shmval__obj_plan(uint64_t bytes, size_t align, bool own_lock, size_t name_len,
                      shmval__obj_layout *lo);
/* Fill in the header of a new object at block @p off (its magic is not set yet). */
shmval__obj *shmval__obj_init(shmval__seg *seg, uint64_t off, const shmval__obj_layout *lo,
                              unsigned kind, int type, size_t elem_size, size_t length);
/* The offset of the block holding object @p o. */
static inline uint64_t shmval__block_off(const shmval__obj *o) {
  return o->self_off - SHMVAL__OBJ_HDR_OFF;
}

/* Validate the object header at @p off: 0 and *out, ESTALE, or ECORRUPT. */
int shmval__obj_at(shmval__seg *seg, uint64_t off, shmval__obj **out);
/* The same, checking and returning a copy of the header read once. */
int shmval__obj_peek(shmval__seg *seg, uint64_t off, shmval__obj *copy);
/*
 * The few checks a lock-free reader of a table object needs, for hot paths:
 * the block is a live object of @p kind whose @p elem_size-byte elements,
 * a power of two of them, lie inside it. On success the payload's offset in
 * *payload and the element count in *length; else ECORRUPT.
 */
int shmval__obj_peek_table(shmval__seg *seg, uint64_t off, unsigned kind, uint32_t elem_size,
                           uint64_t *payload, uint64_t *length);

/*
 * The validation of a header, inline for the lookup by name (the directory's
 * hot path); shmval__obj_peek() and the rest of objhdr.c use it too.
 */

/* Whether @p o's kind, element type and size agree: every kind (objhdr.c). */
bool shmval__obj_kind_ok(const shmval__obj *o);
/*
 * Whether the lock @p o points to lies in the heap and is a lock: its own
 * between the header and the payload (at @p pay), another object's outside
 * this object's block (which ends at @p blk_end). A lock that overlapped
 * what the object's operations write would be overwritten while held: its
 * unlock would then fail, leaving the mutex on the thread's robust list,
 * where glibc's next lock call writes through it after the segment is gone.
 * Only for an object with a lock offset (objhdr.c): shmval__obj_peek_hdr()
 * answers for one without, whose flags must then claim no lock of its own.
 */
bool shmval__obj_lock_ok(const shmval__seg *seg, const shmval__obj *o, uint64_t off, uint64_t pay,
                         uint64_t blk_end);

/* shmval__obj_kind_ok(), with a Value's or Array's plain element type answered here. */
static inline __attribute__((always_inline)) bool shmval__obj_elem_ok(const shmval__obj *o) {
  size_t size, align;
  if ((o->kind != SHMVAL__KIND_VALUE && o->kind != SHMVAL__KIND_ARRAY) || o->type == SHMVAL_RECORD)
    return shmval__obj_kind_ok(o);
  return shmval__type_info(o->type, &size, &align) && size == o->elem_size &&
         (o->kind == SHMVAL__KIND_ARRAY || o->length == 1);
}

/*
 * The end of the allocated block that holds the object header at @p off,
 * from one read of its size word; 0 if @p off cannot be a header's offset or
 * its block is free or leaves the heap.
 */
static inline __attribute__((always_inline)) uint64_t shmval__obj_block_end(shmval__seg *seg,
                                                                            uint64_t off) {
  /* Read once: another process may grow the heap meanwhile. */
  uint64_t blk = off - SHMVAL__OBJ_HDR_OFF, end = shmval__heap_end(seg);
  if (off < seg->heap_start + SHMVAL__OBJ_HDR_OFF || off >= end ||
      (blk & (SHMVAL__BLOCK_ALIGN - 1)) != 0 || end - off < sizeof(shmval__obj))
    return 0;
  uint64_t w =
      __atomic_load_n((const uint64_t *)(const void *)((const char *)seg + blk), __ATOMIC_RELAXED);
  uint64_t bsize = w & ~SHMVAL__BLK_FLAGS;
  if ((w & SHMVAL__BLK_FREE) || bsize < SHMVAL__BLOCK_ALIGN || bsize > end - blk)
    return 0;
  return blk + bsize;
}

/*
 * Validate the object header at @p off from a copy of it, read once, so that
 * a peer changing the header meanwhile cannot make a checked field differ
 * from the one used: lock-free readers (the name directory) look at headers
 * that may be freed and reused under them. On success *copy holds the header
 * that was checked.
 *
 * This checks everything but where the name ends: *room is the number of
 * bytes from the header to the end of its block, which the name must end in.
 */
static inline __attribute__((always_inline)) int
shmval__obj_peek_hdr(shmval__seg *seg, uint64_t off, shmval__obj *copy, uint64_t *room) {
  uint64_t blk_end = shmval__obj_block_end(seg, off);
  if (blk_end == 0)
    return SHMVAL_ECORRUPT;
  shmval__obj *o = (shmval__obj *)(void *)((char *)seg + off);
  uint32_t m = atomic_load_explicit(&o->magic, memory_order_acquire);
  if (m != SHMVAL__OBJ_MAGIC)
    return shmval__magic_dead(m) ? SHMVAL_ESTALE : SHMVAL_ECORRUPT;
  __builtin_memcpy(copy, o, sizeof *copy);
  const shmval__obj *h = copy;
  uint64_t bytes;
  *room = blk_end - off;
  if ((h->flags & SHMVAL__OBJ_ATOMIC) &&
      (h->lock_rel != 0 || !shmval__atomic_ok(h->kind, h->type, h->elem_size)))
    return SHMVAL_ECORRUPT;
  if (h->self_off != off || !shmval__obj_elem_ok(h) || h->payload_rel < sizeof *h ||
      (h->payload_rel & 7) != 0 ||
      __builtin_mul_overflow((uint64_t)h->elem_size, h->length, &bytes) || h->payload_rel > *room ||
      bytes > *room - h->payload_rel)
    return SHMVAL_ECORRUPT;
  if (h->lock_rel == 0 ? (h->flags & SHMVAL__OBJ_OWN_LOCK) != 0
                       : !shmval__obj_lock_ok(seg, h, off, off + h->payload_rel, blk_end))
    return SHMVAL_ECORRUPT;
  /* The name, if any, must begin inside the block, after the payload. */
  if (h->name_off != 0 && (h->name_off < h->payload_rel + bytes || h->name_off >= *room))
    return SHMVAL_ECORRUPT;
  return 0;
}

/*
 * The @p n bytes at @p p (1 <= n <= 8) as a word, the first in the low byte
 * and zeros above: loads that overlap inside the @p n bytes, never past them.
 */
static inline uint64_t shmval__load_upto8(const unsigned char *p, size_t n) {
  if (n == 8)
    return shmval__load64(p);
  if (n >= 4)
    return shmval__load32(p) | shmval__load32(p + n - 4) << (8 * (n - 4));
  return (uint64_t)p[0] | (uint64_t)p[n / 2] << (8 * (n / 2)) | (uint64_t)p[n - 1] << (8 * (n - 1));
}

/*
 * Whether the @p len + 1 bytes at @p on (in the mapping) are @p name and its
 * terminator. Without a lock the block may change under the comparison, so
 * its bytes are read with atomic loads of the aligned words that hold them
 * (an aligned word that holds a byte of the mapping lies inside it, as the
 * mapping is whole pages), 8 bytes at a time, and compared with the name's.
 */
static inline __attribute__((always_inline)) bool
shmval__obj_name_is(const char *on, const char *name, size_t len) {
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
  for (size_t i = 0; i <= len; i++)
    if (__atomic_load_n((const unsigned char *)on + i, __ATOMIC_RELAXED) != (unsigned char)name[i])
      return false;
  return true;
#else
  size_t skip = (uintptr_t)on & 7, n = len + 1;
  unsigned sh = 8u * (unsigned)skip;
  const uint64_t *w = (const uint64_t *)(const void *)(on - skip);
  const unsigned char *u = (const unsigned char *)name;
  for (size_t i = 0; i < n; i += 8, w++) {
    size_t r = n - i < 8 ? n - i : 8;
    uint64_t mine = __atomic_load_n(w, __ATOMIC_RELAXED) >> sh;
    /* The next word only where these bytes reach into it. */
    if (skip != 0 && r > 8 - skip)
      mine |= __atomic_load_n(w + 1, __ATOMIC_RELAXED) << (64 - sh);
    if (r < 8)
      mine &= (UINT64_C(1) << (8 * r)) - 1;
    if (mine != shmval__load_upto8(u + i, r))
      return false;
  }
  return true;
#endif
}

/*
 * shmval__obj_peek() for a lookup by name: 1 if the object is sound and named
 * @p name (@p len bytes), 0 if it is sound and named otherwise, or the error.
 * The name is read with atomic loads, for callers that hold no lock.
 */
static inline __attribute__((always_inline)) int
shmval__obj_peek_named(shmval__seg *seg, uint64_t off, shmval__obj *copy, const char *name,
                       size_t len) {
  uint64_t room;
  int rc = shmval__obj_peek_hdr(seg, off, copy, &room);
  if (rc != 0)
    return rc;
  if (copy->name_off == 0)
    return SHMVAL_ECORRUPT;
  /*
   * Compared only as far as the block goes: a match, terminator included, is
   * also the proof that the name ends there.
   */
  if (len >= room - copy->name_off)
    return 0;
  return shmval__obj_name_is((const char *)seg + off + copy->name_off, name, len);
}
/* The object's name, or NULL; only for objects that passed shmval__obj_at(). */
const char *shmval__obj_name(const shmval__obj *o);

#endif /* SHMVAL_OBJHDR_H */
