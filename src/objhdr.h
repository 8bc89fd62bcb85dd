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
 * shmval__obj_peek() for a lookup by name: 1 if the object is sound and named
 * @p name (@p len bytes), 0 if it is sound and named otherwise, or the error.
 * The name is read with atomic loads, for callers that hold no lock.
 */
int shmval__obj_peek_named(shmval__seg *seg, uint64_t off, shmval__obj *copy, const char *name,
                           size_t len);
/* The object's name, or NULL; only for objects that passed shmval__obj_at(). */
const char *shmval__obj_name(const shmval__obj *o);

#endif /* SHMVAL_OBJHDR_H */
