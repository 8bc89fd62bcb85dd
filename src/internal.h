/*
 * Internal declarations of libshmval. Nothing here is API.
 *
 * Shared memory is an ABI: every structure below is laid out in a segment
 * that several processes map at different addresses, so it holds offsets,
 * never pointers. See docs/design.md.
 */
#ifndef SHMVAL_INTERNAL_H
#define SHMVAL_INTERNAL_H

#include "shmval.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHMVAL__CACHELINE 64u

#define SHMVAL__LIKELY(x) __builtin_expect(!!(x), 1)
#define SHMVAL__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------------------------------ */
/* Platform layer (prim.c): the only file that makes OS calls for memory.   */

/* Map @p size bytes of anonymous memory shared with future fork children. */
int shmval__prim_map_anon(size_t size, void **out);
/* Unmap a mapping made above (or any page-aligned range of one). */
void shmval__prim_unmap(void *addr, size_t size);
/*
 * Release the physical pages of a page-aligned range of a shared mapping in
 * every process that maps it; the range reads back as zeros afterwards.
 */
void shmval__prim_discard(void *addr, size_t size);
size_t shmval__prim_page_size(void);
/* A 64-bit value that differs between processes and calls (not crypto). */
uint64_t shmval__prim_random64(void);
/* Absolute CLOCK_MONOTONIC deadline @p seconds from now (seconds >= 0). */
void shmval__prim_deadline(double seconds, struct timespec *ts);

/* ------------------------------------------------------------------------ */
/* Segment header and the allocator (heap.c).                               */

#define SHMVAL__SEG_MAGIC UINT64_C(0x314c4156484d5300) /* "\0SMHVAL1" LE */
#define SHMVAL__LAYOUT_VERSION 1u

/* Allocator geometry: blocks are multiples of 64 bytes, 64-aligned. */
#define SHMVAL__BLOCK_ALIGN 64u
#define SHMVAL__FL_COUNT 32u
#define SHMVAL__SL_BITS 4u
#define SHMVAL__SL_COUNT (1u << SHMVAL__SL_BITS)

/* Block header flags, kept in the low bits of the size word. */
#define SHMVAL__BLK_FREE UINT64_C(1)
#define SHMVAL__BLK_PREV_FREE UINT64_C(2)
#define SHMVAL__BLK_FLAGS UINT64_C(63)

/* Segment flags. */
#define SHMVAL__SEG_ANON 1u

/*
 * The segment header at offset 0. The creator fills it in and stores the
 * magic last with release ordering; readers load it with acquire ordering.
 */
typedef struct shmval__seg {
  _Atomic uint64_t magic;
  uint32_t version;
  uint32_t hdr_size;
  uint64_t abi;        /* shmval__abi_fingerprint() of the creator */
  uint64_t size;       /* bytes in the segment */
  uint64_t heap_start; /* first block, 64-aligned */
  uint64_t heap_end;   /* end of the last block */
  uint32_t flags;      /* SHMVAL__SEG_* */
  uint32_t reserved0;
  /* Allocator state, guarded by heap_lock. */
  uint64_t used;   /* bytes in allocated blocks */
  uint64_t blocks; /* allocated blocks */
  uint32_t fl_bitmap;
  uint32_t sl_bitmap[SHMVAL__FL_COUNT];
  uint64_t free_head[SHMVAL__FL_COUNT][SHMVAL__SL_COUNT];
  uint64_t reserved1[8]; /* for the name directory and attacher table */
  pthread_mutex_t heap_lock __attribute__((aligned(SHMVAL__CACHELINE)));
} shmval__seg;

/*
 * A free block: the header word, then the free-list links. The word at +8 is
 * left alone so that a freed object's header keeps its DEAD magic there, and
 * a stale handle is recognised until the block is reused.
 */
typedef struct shmval__free_blk {
  uint64_t size_flags;
  uint64_t keep;
  uint64_t next; /* offsets from the segment base; 0 = none */
  uint64_t prev;
} shmval__free_blk;

/* Figures from a heap walk. */
typedef struct shmval__heap_stat {
  uint64_t total, used, free, blocks, free_blocks, largest_free;
} shmval__heap_stat;

uint64_t shmval__abi_fingerprint(void);
/* Lay out a fresh segment header and heap over @p size bytes at @p seg. */
int shmval__seg_init(shmval__seg *seg, size_t size, uint32_t flags);
/*
 * Allocate a block able to hold @p bytes (block header included). On success
 * *off is the block's offset from the segment base.
 */
int shmval__heap_alloc(shmval__seg *seg, size_t bytes, uint64_t *off);
/* Free the block at @p off. */
int shmval__heap_free(shmval__seg *seg, uint64_t off);
/* Walk and verify the heap under its lock, filling @p st. */
int shmval__heap_check(shmval__seg *seg, shmval__heap_stat *st);
/* Bytes of the block at @p off (the size word without flags). */
static inline uint64_t shmval__blk_size(const shmval__seg *seg, uint64_t off) {
  const uint64_t *w = (const uint64_t *)((const char *)seg + off);
  return *w & ~SHMVAL__BLK_FLAGS;
}

/* ------------------------------------------------------------------------ */
/* Objects (object.c) and locks (lock.c).                                    */

#define SHMVAL__OBJ_MAGIC UINT32_C(0x4a424f53)  /* "SOBJ" */
#define SHMVAL__OBJ_DEAD UINT32_C(0x44414544)   /* "DEAD" */
#define SHMVAL__LOCK_MAGIC UINT32_C(0x4b434c53) /* "SLCK" */

enum shmval__kind { SHMVAL__KIND_VALUE = 1, SHMVAL__KIND_ARRAY = 2, SHMVAL__KIND_LOCK = 3 };

/* Object flags. */
#define SHMVAL__OBJ_OWN_LOCK 1u /* the lock at lock_rel lives in this block */

/*
 * An object header, 8 bytes into its block (after the block's size word).
 * Fields other than magic are written once, before the object is published.
 */
typedef struct shmval__obj {
  _Atomic uint32_t magic;
  uint8_t kind;
  uint8_t type; /* shm_type letter */
  uint16_t flags;
  uint32_t elem_size;
  uint32_t payload_rel; /* payload offset from this header */
  uint64_t length;      /* elements (1 for a Value) */
  int64_t lock_rel;     /* lock offset from this header; 0 = raw */
  uint64_t self_off;    /* this header's offset from the segment base */
  uint64_t name_off;    /* the object's name in a named segment; 0 = none */
} shmval__obj;

/* Lock flags. */
#define SHMVAL__LOCK_RECURSIVE 1u

/*
 * A lock. The pthread mutex is robust and process-shared but not recursive:
 * recursion and ownership are tracked here, with a per-thread token that is
 * unique across threads and processes (see lock.c).
 */
typedef struct shmval__lock {
  _Atomic uint32_t magic;
  uint16_t flags;
  uint16_t host_back;     /* bytes back from this lock to its host object */
  _Atomic uint32_t refs;  /* objects using it, its host included */
  uint32_t depth;         /* recursion depth; written only by the holder */
  _Atomic uint64_t owner; /* token of the holding thread; 0 = none */
  pthread_mutex_t mutex;
} shmval__lock;

#define SHMVAL__OBJ_HDR_OFF 8u /* object header offset within its block */

int shmval__lock_init(shmval__lock *l, unsigned flags, uint16_t host_back);
/* Acquire/release a lock known to be alive (no magic check). */
int shmval__lock_acquire(shmval__lock *l);
int shmval__lock_release(shmval__lock *l);
/* Acquire @p l for destruction: EBUSY if anyone holds it, the caller too. */
int shmval__lock_try_exclusive(shmval__lock *l);
bool shmval__lock_owned(const shmval__lock *l);
/* The calling thread's owner token (lock.c); 0 until it first needs one. */
extern _Thread_local uint64_t shmval__tls_token __attribute__((tls_model("initial-exec")));
uint64_t shmval__token_new(void);
/* Map a pthread lock result, taking ownership with token @p tok. */
int shmval__lock_took(shmval__lock *l, uint64_t tok, int rc);
int shmval__lock_reenter(shmval__lock *l, int busy);

static inline uint64_t shmval__my_token(void) {
  uint64_t t = shmval__tls_token;
  return SHMVAL__LIKELY(t != 0) ? t : shmval__token_new();
}

/* The fast paths, inlined into the object accessors. */
static inline int shmval__lock_enter(shmval__lock *l) {
  uint64_t tok = shmval__my_token();
  if (SHMVAL__UNLIKELY(atomic_load_explicit(&l->owner, memory_order_relaxed) == tok))
    return shmval__lock_reenter(l, SHMVAL_EDEADLK);
  int rc = pthread_mutex_lock(&l->mutex);
  if (SHMVAL__UNLIKELY(rc != 0))
    return shmval__lock_took(l, tok, rc);
  l->depth = 1;
  atomic_store_explicit(&l->owner, tok, memory_order_relaxed);
  return 0;
}

static inline int shmval__lock_leave(shmval__lock *l) {
  uint64_t tok = shmval__tls_token;
  if (SHMVAL__UNLIKELY(tok == 0 || atomic_load_explicit(&l->owner, memory_order_relaxed) != tok))
    return SHMVAL_EPERM;
  if (--l->depth > 0)
    return 0;
  atomic_store_explicit(&l->owner, 0, memory_order_relaxed);
  return -pthread_mutex_unlock(&l->mutex);
}
/* Lock a robust mutex, mapping the result; 0, SHMVAL_OWNERDEAD or error. */
int shmval__mutex_init(pthread_mutex_t *m);
int shmval__mutex_lock(pthread_mutex_t *m);

/* ------------------------------------------------------------------------ */
/* The default arena (arena.c).                                              */

/* Allocate a block of @p bytes in the arena; *seg and *off locate it. */
int shmval__arena_alloc(size_t bytes, shmval__seg **seg, uint64_t *off);
/* The segment holding the object header @p o. */
static inline shmval__seg *shmval__obj_seg(const shmval__obj *o) {
  return (shmval__seg *)((char *)(uintptr_t)o - o->self_off);
}

#endif /* SHMVAL_INTERNAL_H */
