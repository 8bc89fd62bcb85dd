/*
 * Shared lists: a ring of items in a segment, a list and a queue in one.
 *
 * The list's object holds a header (shmval__list): a robust mutex, the
 * current ring's offset, the position of item 0 (head) and the item count.
 * The ring is an object of its own (kind LIST_RING) of a power-of-two number
 * of positions; item i is at (head + i) mod capacity. A typed list keeps its
 * items in the positions; a bytes list keeps there the offsets of entry
 * blocks (shmval__lent: a magic word, the length, the bytes).
 *
 * Every operation holds the mutex. Appending or popping at either end is
 * O(1): the item goes into a free position (which no reader looks at) and
 * one record makes it part of the list. An insert or a pop in the middle,
 * reverse, sort, and growing or shrinking the ring build a new ring beside
 * the old one and publish it the same way (O(n), as Python's list is).
 *
 * A change fills in the record in the header (the ring, head and count
 * after it, a position and the word or value a set stores there), steps ver
 * to odd, sets op, makes the change (apply) and closes it (commit: the new
 * blocks are the list's now, the retired ones are freed, ver steps to even,
 * op goes to 0). Blocks allocated for the change (jnew, jring) and retired by
 * it (jold, jold_ring) are crash journals in the header. The mutex's next
 * holder after a death applies and commits a recorded change (every step is
 * idempotent) or drops one not yet recorded, freeing what it allocated: every
 * item is whole and present once, or, for the one change in flight, not at
 * all. A clear killed part-way has removed some items from the end.
 *
 * Readers through a read-only mapping cannot take the mutex: they read
 * between two loads of ver (a sequence lock) and retry when it moved.
 *
 * pop_wait sleeps on the futex word seq, which every append steps; waiters
 * counts the sleepers so that an append without any makes no system call.
 *
 * Lock order: the list's mutex, then the heap lock.
 */
#include "list.h"
#include "object.h"
#include "heap.h"
#include "journal.h"
#include "objhdr.h"
#include "table.h"
#include "lock.h"
#include "prim.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define RING_MIN 8u
#define HEAD_MASK UINT64_C(0xffffffff)
#define MAX_ITEMS (UINT64_C(1) << 31) /* a ring's capacity, so that head and count share a word */
#define ENT_HDR (8u + sizeof(shmval__lent)) /* from the block start to the bytes */
#define RO_TRIES 1000u                      /* read-only reads of a list being changed */
#define RW_TRIES 4u                         /* lock-free reads before taking the lock */
#define DESTROY_WAIT_MS 200                 /* for waiters to leave a dying list */
#define WAIT_SPINS 4000u                    /* pauses before pop_wait sleeps */
#define WAIT_YIELDS 4u                      /* then yields */

enum { OP_NONE = 0, OP_META = 1, OP_SLOT = 2, OP_COPY = 3 };

static inline uint64_t ld(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void st(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void str(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/*
 * Item bytes are read without the lock (between two loads of ver) while a
 * writer may be reusing the memory, so both sides copy them with single
 * loads and stores, each as wide as the addresses' alignment allows; the
 * reader throws away what it read when ver moved.
 */
static unsigned width_of(uintptr_t shm, size_t n) {
  return n >= 8 && (shm & 7) == 0   ? 8
         : n >= 4 && (shm & 3) == 0 ? 4
         : n >= 2 && (shm & 1) == 0 ? 2
                                    : 1;
}

/* One step of @p T between private memory and (aligned) shared memory. */
#define COPY_STEP(T)                                                                               \
  do {                                                                                             \
    T v_;                                                                                          \
    if (to_shm) {                                                                                  \
      memcpy(&v_, s, sizeof v_);                                                                   \
      __atomic_store_n((T *)(void *)d, v_, __ATOMIC_RELAXED);                                      \
    } else {                                                                                       \
      v_ = __atomic_load_n((const T *)(const void *)s, __ATOMIC_RELAXED);                          \
      memcpy(d, &v_, sizeof v_);                                                                   \
    }                                                                                              \
  } while (0)

static void shm_copy(void *dst, const void *src, size_t n, bool to_shm) {
  char *d = dst;
  const char *s = src;
  while (n > 0) {
    unsigned w = width_of(to_shm ? (uintptr_t)d : (uintptr_t)s, n);
    if (w == 8)
      COPY_STEP(uint64_t);
    else if (w == 4)
      COPY_STEP(uint32_t);
    else if (w == 2)
      COPY_STEP(uint16_t);
    else
      COPY_STEP(unsigned char);
    d += w, s += w, n -= w;
  }
}

static inline void shm_read(void *dst, const void *src, size_t n) { shm_copy(dst, src, n, false); }
static inline void shm_write(void *dst, const void *src, size_t n) { shm_copy(dst, src, n, true); }

/* ------------------------------------------------------------------------ */
/* Handles, rings and entries. */

typedef struct lref {
  shmval__obj *o;
  shmval__seg *seg;
  shmval__list *l;
  uint32_t itype, isize, ialign;
  uint64_t stride; /* bytes per ring position */
  bool ro;
} lref;

/* Whether a list's item type, size and alignment agree with each other and its object. */
static bool itype_ok(const shmval__obj *o, uint32_t t, uint32_t size, uint32_t align) {
  size_t s, a;
  if (t != o->type)
    return false;
  if (t == 0)
    return size == 0 && align == 8;
  if (align == 0 || align > SHMVAL__CACHELINE || (align & (align - 1)) != 0)
    return false;
  if (t == SHMVAL_RECORD)
    return size != 0 && size <= SHMVAL__RECORD_MAX;
  return shmval__type_info((shm_type)t, &s, &a) && s == size && a == align;
}

static int list_ref(const shm_list *h, bool write, lref *r) {
  shmval__obj *o = shmval__obj_of(h);
  int rc = shmval__obj_check(o, SHMVAL__KIND_LIST);
  if (rc != 0)
    return rc;
  r->ro = shmval__is_ro(h);
  if (write && r->ro)
    return SHMVAL_EACCES;
  char *payload = shmval__payload(o);
  if (((uintptr_t)payload & (SHMVAL__CACHELINE - 1)) != 0)
    return SHMVAL_ECORRUPT; /* its mutex must stay on a cache line */
  r->o = o;
  r->seg = shmval__obj_seg(o);
  r->l = (shmval__list *)(void *)payload;
  r->itype = __atomic_load_n(&r->l->itype, __ATOMIC_RELAXED);
  r->isize = __atomic_load_n(&r->l->isize, __ATOMIC_RELAXED);
  r->ialign = __atomic_load_n(&r->l->ialign, __ATOMIC_RELAXED);
  if (!itype_ok(o, r->itype, r->isize, r->ialign))
    return SHMVAL_ECORRUPT;
  r->stride = r->itype == 0 ? 8 : ((uint64_t)r->isize + r->ialign - 1) & ~(uint64_t)(r->ialign - 1);
  return 0;
}

typedef struct rview {
  char *p; /* position 0 */
  uint64_t off, cap, mask;
} rview;

/*
 * The ring whose object header is at @p off, checked from single loads: 0 or
 * ECORRUPT. It must not overlap its list's header, whose lock a store into a
 * position would overwrite.
 */
static int ring_view(const lref *r, uint64_t off, rview *v) {
  shmval__seg *seg = r->seg;
  uint64_t end = shmval__heap_end(seg);
  if (off < seg->heap_start + SHMVAL__OBJ_HDR_OFF || off > end - SHMVAL__BLOCK_ALIGN ||
      (off & (SHMVAL__BLOCK_ALIGN - 1)) != SHMVAL__OBJ_HDR_OFF)
    return SHMVAL_ECORRUPT;
  shmval__obj *o = (shmval__obj *)(void *)((char *)seg + off);
  if (atomic_load_explicit(&o->magic, memory_order_acquire) != SHMVAL__OBJ_MAGIC)
    return SHMVAL_ECORRUPT;
  uint8_t kind = __atomic_load_n(&o->kind, __ATOMIC_RELAXED);
  uint64_t len = __atomic_load_n(&o->length, __ATOMIC_RELAXED);
  uint32_t prel = __atomic_load_n(&o->payload_rel, __ATOMIC_RELAXED);
  uint32_t esz = __atomic_load_n(&o->elem_size, __ATOMIC_RELAXED);
  if (kind != SHMVAL__KIND_LIST_RING || len < RING_MIN || len > MAX_ITEMS ||
      (len & (len - 1)) != 0 || esz != r->stride || prel < sizeof *o ||
      prel > 2 * SHMVAL__CACHELINE || ((off + prel) & ((r->itype == 0 ? 8 : r->ialign) - 1)) != 0 ||
      len > (end - off - prel) / r->stride)
    return SHMVAL_ECORRUPT;
  uint64_t lo = r->o->self_off - SHMVAL__OBJ_HDR_OFF,
           hi = r->o->self_off + r->o->payload_rel + sizeof(shmval__list);
  if (off - SHMVAL__OBJ_HDR_OFF < hi && off + prel + len * r->stride > lo)
    return SHMVAL_ECORRUPT;
  v->p = (char *)o + prel;
  v->off = off;
  v->cap = len;
  v->mask = len - 1;
  return 0;
}

/* The list's state: its ring (if any), head and count, checked. */
typedef struct lstate {
  rview v;
  bool has; /* a ring */
  uint64_t head, count;
} lstate;

static int state_of(const lref *r, lstate *s) {
  uint64_t ring = ld(&r->l->ring), hc = ld(&r->l->hc);
  s->head = hc & HEAD_MASK;
  s->count = hc >> 32;
  s->has = ring != 0;
  if (!s->has)
    return s->count == 0 && s->head == 0 ? 0 : SHMVAL_ECORRUPT;
  int rc = ring_view(r, ring, &s->v);
  if (rc != 0)
    return rc;
  return s->head <= s->v.mask && s->count <= s->v.cap ? 0 : SHMVAL_ECORRUPT;
}

static inline uint64_t hc_of(uint64_t head, uint64_t count) { return head | count << 32; }

static inline char *at_pos(const lref *r, const rview *v, uint64_t pos) {
  return v->p + (pos & v->mask) * r->stride;
}

static inline char *at_item(const lref *r, const lstate *s, uint64_t i) {
  return at_pos(r, &s->v, s->head + i);
}

/* The entry block at @p off: its bytes and length, checked. */
static int ent_at(const shmval__seg *seg, uint64_t off, const char **data, uint64_t *len) {
  uint64_t end = shmval__heap_end(seg);
  if (off < seg->heap_start || off > end - SHMVAL__BLOCK_ALIGN ||
      (off & (SHMVAL__BLOCK_ALIGN - 1)) != 0)
    return SHMVAL_ECORRUPT;
  const char *b = (const char *)seg + off;
  uint64_t size = ld((const uint64_t *)(const void *)b) & ~SHMVAL__BLK_FLAGS;
  uint64_t magic = ld((const uint64_t *)(const void *)(b + 8));
  uint64_t n = ld((const uint64_t *)(const void *)(b + 16));
  if (size < SHMVAL__BLOCK_ALIGN || size > end - off || magic != SHMVAL__LENT_MAGIC ||
      size < ENT_HDR || n > size - ENT_HDR)
    return SHMVAL_ECORRUPT;
  *data = b + ENT_HDR;
  *len = n;
  return 0;
}

static int alloc_err(const shmval__seg *seg, int rc) {
  return rc == SHMVAL_ENOMEM && (seg->flags & SHMVAL__SEG_NAMED) ? SHMVAL_ENOSPC : rc;
}

/* Allocate an entry holding @p len bytes of @p data, journaled in jnew. */
static int ent_new(const lref *r, const void *data, size_t len, uint64_t *off) {
  uint64_t bytes;
  if (__builtin_add_overflow((uint64_t)ENT_HDR, (uint64_t)len, &bytes) ||
      bytes > SHMVAL__PAYLOAD_MAX)
    return alloc_err(r->seg, SHMVAL_ENOMEM);
  int rc = shmval__heap_alloc(r->seg, (size_t)bytes, off, &r->l->jnew.word);
  if (rc != 0)
    return alloc_err(r->seg, rc);
  SHMVAL__CRASH_POINT();
  char *b = (char *)r->seg + *off;
  st((uint64_t *)(void *)(b + 8), SHMVAL__LENT_MAGIC);
  st((uint64_t *)(void *)(b + 16), len);
  shm_write(b + ENT_HDR, data, len);
  return 0;
}

/* Copy item @p i out: 0, or ENOBUFS with *len the size needed; ECORRUPT. */
static int item_get(const lref *r, const lstate *s, uint64_t i, void *buf, size_t cap,
                    size_t *len) {
  const char *p = at_item(r, s, i);
  if (r->itype != 0) {
    *len = r->isize;
    if (r->isize > cap)
      return SHMVAL_ENOBUFS;
    if (buf != NULL)
      shm_read(buf, p, r->isize);
    return 0;
  }
  const char *data;
  uint64_t n;
  if (ent_at(r->seg, ld((const uint64_t *)(const void *)p), &data, &n) != 0)
    return SHMVAL_ECORRUPT;
  *len = (size_t)n;
  if (n > cap)
    return SHMVAL_ENOBUFS;
  if (buf != NULL)
    shm_read(buf, data, (size_t)n);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Changes: record, apply, commit; and their repair. */

/*
 * Only the lock's holder writes ver: a store, not an atomic add. Stepping to
 * odd is followed by a release fence, so that a read-only reader who sees
 * any of the change sees ver moved (a sequence lock's writer side).
 */
static inline void ver_step(shmval__list *l) {
  uint64_t v = ld(&l->ver) + 1;
  __atomic_store_n(&l->ver, v, __ATOMIC_RELEASE);
  if (v & 1)
    atomic_thread_fence(memory_order_release);
}

/* The rest of a change after its record: idempotent, so a repair may run it again. */
static int apply(const lref *r) {
  shmval__list *l = r->l;
  uint64_t op = ld(&l->op), ring = ld(&l->ring_after), hc = ld(&l->hc_after);
  rview v;
  /* The record is read from shared memory: what it leads to must be a sound state. */
  if (op > OP_COPY ||
      (ring != 0 ? ring_view(r, ring, &v) != 0 || (hc & HEAD_MASK) > v.mask || hc >> 32 > v.cap
                 : hc != 0 || op != OP_META))
    return SHMVAL_ECORRUPT;
  if (op == OP_SLOT || op == OP_COPY) {
    char *p = at_pos(r, &v, ld(&l->pos));
    if (op == OP_SLOT) {
      st((uint64_t *)(void *)p, ld(&l->word));
    } else if (r->isize <= SHMVAL__LIST_INLINE) {
      shm_write(p, l->inl, r->isize);
    } else {
      const char *src;
      uint64_t n;
      if (ent_at(r->seg, ld(&l->jnew.word) & ~SHMVAL__J_STAGE, &src, &n) != 0 || n != r->isize)
        return SHMVAL_ECORRUPT;
      char tmp[256];
      for (uint64_t at = 0; at < n; at += sizeof tmp) {
        size_t k = n - at < sizeof tmp ? (size_t)(n - at) : sizeof tmp;
        shm_read(tmp, src + at, k);
        shm_write(p + at, tmp, k);
      }
    }
    SHMVAL__CRASH_POINT();
  }
  st(&l->ring, ring);
  st(&l->hc, hc);
  SHMVAL__CRASH_POINT();
  return 0;
}

/* Free the block a journal word names (a dead writer's: the journal finishes it). */
static int retire(const lref *r, uint64_t *word, bool dead) {
  uint64_t j = ld(word);
  if (j == 0)
    return 0;
  return dead ? shmval__heap_free_journaled(r->seg, word)
              : shmval__heap_free(r->seg, j & ~SHMVAL__J_STAGE, word);
}

/* Mark a retired ring dead before it is freed (a read-only reader may still look at it). */
static void ring_dead(const lref *r, uint64_t jword) {
  uint64_t blk = jword & ~SHMVAL__J_STAGE;
  rview v;
  /* Only a ring of this list (a journal word read from shared memory may point anywhere). */
  if (blk == 0 || ring_view(r, blk + SHMVAL__OBJ_HDR_OFF, &v) != 0)
    return;
  shmval__obj *o = (shmval__obj *)(void *)((char *)r->seg + blk + SHMVAL__OBJ_HDR_OFF);
  atomic_store_explicit(&o->magic, SHMVAL__OBJ_DEAD, memory_order_release);
}

/* After apply: the new blocks are the list's, the retired ones go, the record closes. */
static int commit(const lref *r, bool dead) {
  shmval__list *l = r->l;
  int rc = 0;
  if (ld(&l->op) == OP_COPY)
    rc = retire(r, &l->jnew.word, dead); /* a scratch value, copied in */
  else if (ld(&l->jnew.word) != 0)
    str(&l->jnew.word, 0);
  if (ld(&l->jring.word) != 0)
    str(&l->jring.word, 0);
  SHMVAL__CRASH_POINT();
  rc |= retire(r, &l->jold.word, dead);
  SHMVAL__CRASH_POINT();
  ring_dead(r, ld(&l->jold_ring.word));
  rc |= retire(r, &l->jold_ring.word, dead);
  SHMVAL__CRASH_POINT();
  if (ld(&l->ver) & 1)
    ver_step(l);
  str(&l->op, OP_NONE);
  return rc != 0 ? SHMVAL_ECORRUPT : 0;
}

/* Drop a change that was not recorded: what it allocated goes, what it retired stays. */
static int cancel(const lref *r, bool dead) {
  shmval__list *l = r->l;
  if (ld(&l->jold.word) != 0)
    str(&l->jold.word, 0);
  if (ld(&l->jold_ring.word) != 0)
    str(&l->jold_ring.word, 0);
  int rc = retire(r, &l->jnew.word, dead);
  ring_dead(r, ld(&l->jring.word));
  rc |= retire(r, &l->jring.word, dead);
  if (ld(&l->ver) & 1)
    ver_step(l);
  return rc != 0 ? SHMVAL_ECORRUPT : 0;
}

/* The record is complete: make the change and close it. */
static int change(const lref *r, uint64_t op) {
  shmval__list *l = r->l;
  ver_step(l); /* odd: read-only readers wait */
  str(&l->op, op);
  SHMVAL__CRASH_POINT();
  int rc = apply(r);
  return rc != 0 ? rc : commit(r, false);
}

/*
 * A change of the ring's head and count alone (a typed list's item in or out
 * at an end, its bytes already in a free position): one store, no record. A
 * death before the store leaves the list as it was (and ver odd, which the
 * repair steps back to even).
 */
static void hc_change(const lref *r, uint64_t head, uint64_t count) {
  ver_step(r->l);
  str(&r->l->hc, hc_of(head, count));
  SHMVAL__CRASH_POINT();
  ver_step(r->l);
}

/* Record where the change leads (the ring, head and count after it). */
static void record(const lref *r, uint64_t ring, uint64_t head, uint64_t count) {
  st(&r->l->ring_after, ring);
  st(&r->l->hc_after, hc_of(head, count));
}

/* The mutex's previous holder died: finish or drop its change. */
static int list_repair(void *ctx) {
  const lref *r = ctx;
  if (ld(&r->l->op) == OP_NONE)
    return cancel(r, true);
  int rc = apply(r);
  return rc != 0 ? rc : commit(r, true);
}

/*
 * The repair as the lock calls it: it never fails, so the mutex is always
 * made consistent again; a change that cannot be repaired marks the list
 * broken instead. A mutex left not recoverable would defeat the try-lock in
 * list_lock(): glibc's pthread_mutex_trylock() leaves such a mutex locked by
 * its caller.
 */
static int list_repair_lock(void *ctx) {
  const lref *r = ctx;
  if (list_repair(ctx) != 0)
    __atomic_store_n(&r->l->broken, 1, __ATOMIC_RELEASE);
  return 0;
}

/* glibc's owner value of a robust mutex that is not recoverable. */
#define MUTEX_NOTRECOVERABLE (INT_MAX - 1)

static int list_lock(lref *r) {
  pthread_mutex_t *m = &r->l->mu;
  if (!shmval__mutex_sane(m))
    return SHMVAL_ECORRUPT;
  /* Only a damaged image holds one: never let the try-lock meet it. */
  if (__atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) == MUTEX_NOTRECOVERABLE)
    return SHMVAL_ENOTRECOVERABLE;
  int rc = pthread_mutex_trylock(m);
  if (rc == EBUSY) {
    rc = shmval__robust_lock(m, list_repair_lock, r);
  } else if (rc == EOWNERDEAD) {
    (void)list_repair_lock(r);
    pthread_mutex_consistent(m);
    rc = 0;
  } else if (rc != 0) {
    rc = rc == ENOTRECOVERABLE ? SHMVAL_ENOTRECOVERABLE : -rc;
  }
  if (rc != 0)
    return rc;
  shmval__list *l = r->l;
  if (__atomic_load_n(&l->dying, __ATOMIC_ACQUIRE) != 0)
    rc = SHMVAL_ESTALE;
  else if (__atomic_load_n(&l->broken, __ATOMIC_ACQUIRE) != 0)
    rc = SHMVAL_ECORRUPT;
  /*
   * Every change closes its record and its journals before the lock is let
   * go (or the repair above did): anything left is damage, and freeing what
   * such words name would free blocks that are not the list's.
   */
  else if ((ld(&l->op) | ld(&l->jnew.word) | ld(&l->jring.word) | ld(&l->jold.word) |
            ld(&l->jold_ring.word) | (ld(&l->ver) & 1)) != 0)
    rc = SHMVAL_ECORRUPT;
  if (rc != 0)
    pthread_mutex_unlock(m);
  return rc;
}

static void list_unlock(lref *r) { pthread_mutex_unlock(&r->l->mu); }

/* A live writer lets go of what it allocated for a change it did not record. */
static void drop(const lref *r) { (void)cancel(r, false); }

/* ------------------------------------------------------------------------ */
/* Rings: building a new one. */

/*
 * Build a ring of @p cap positions holding the items of @p s with @p gap
 * free positions at index @p at (gap 0: none) and without the item at
 * @p skip (UINT64_MAX: none), reversed if asked; journaled in jring. *nv is
 * the new ring, its items from position 0.
 */
/* One ring position's bytes into another, shared memory on both sides. */
static void shm_copy_item(const lref *r, char *dst, const char *src) {
  char tmp[256];
  for (uint64_t at = 0; at < r->stride; at += sizeof tmp) {
    size_t k = r->stride - at < sizeof tmp ? (size_t)(r->stride - at) : sizeof tmp;
    shm_read(tmp, src + at, k);
    shm_write(dst + at, tmp, k);
  }
}

static int ring_build(const lref *r, const lstate *s, uint64_t cap, uint64_t at, uint64_t gap,
                      uint64_t skip, bool reverse, rview *nv) {
  shmval__obj *o;
  int rc =
      shmval__obj_alloc_ring(r->seg, SHMVAL__KIND_LIST_RING, (int)r->itype, (uint32_t)r->stride,
                             r->itype == 0 ? 8 : r->ialign, cap, &o, &r->l->jring.word);
  if (rc != 0)
    return alloc_err(r->seg, rc);
  SHMVAL__CRASH_POINT();
  if ((rc = ring_view(r, o->self_off, nv)) != 0)
    return rc;
  uint64_t j = 0;
  for (uint64_t i = 0; i < s->count; i++) {
    uint64_t src = reverse ? s->count - 1 - i : i;
    if (src == skip)
      continue;
    if (j == at)
      j += gap;
    shm_copy_item(r, at_pos(r, nv, j++), at_item(r, s, src));
  }
  return 0;
}

/* The capacity for @p n items: the least power of two from RING_MIN that holds them. */
static uint64_t cap_for(uint64_t n) {
  uint64_t cap = RING_MIN;
  while (cap < n)
    cap *= 2;
  return cap;
}

/* Replace the ring by one of @p cap positions with the same items. */
static int resize(const lref *r, lstate *s, uint64_t cap) {
  rview nv;
  int rc = ring_build(r, s, cap, UINT64_MAX, 0, UINT64_MAX, false, &nv);
  if (rc != 0) {
    drop(r);
    return rc;
  }
  if (s->has)
    st(&r->l->jold_ring.word, (s->v.off - SHMVAL__OBJ_HDR_OFF) | SHMVAL__J_DESTROY);
  record(r, nv.off, 0, s->count);
  if ((rc = change(r, OP_META)) != 0)
    return rc;
  return state_of(r, s);
}

/* Room for @p n more items (a bigger ring if needed). */
static int make_room(const lref *r, lstate *s, uint64_t n) {
  if (s->has && s->v.cap - s->count >= n)
    return 0;
  if (n > MAX_ITEMS - s->count || s->count + n > SHMVAL__PAYLOAD_MAX / r->stride)
    return alloc_err(r->seg, SHMVAL_ENOMEM);
  uint64_t cap = s->has ? s->v.cap : RING_MIN;
  while (cap < s->count + n)
    cap *= 2;
  return resize(r, s, cap);
}

/* After a removal: a ring under a quarter full is halved (best effort). */
static void maybe_shrink(const lref *r, lstate *s) {
  if (s->has && s->v.cap > RING_MIN && s->count * 4 < s->v.cap)
    (void)resize(r, s, cap_for(s->count * 2));
}

/* ------------------------------------------------------------------------ */
/* Operations under the lock. */

/* Python's index: negative counts from the end; ERANGE out of [0, n). */
static int norm_index(long index, uint64_t n, uint64_t *i) {
  int64_t x = index < 0 ? (int64_t)n + index : index;
  if (x < 0 || (uint64_t)x >= n)
    return SHMVAL_ERANGE;
  *i = (uint64_t)x;
  return 0;
}

/* The stored form of an item at position @p p: its bytes, or a new entry's offset. */
static int put_item(const lref *r, char *p, const void *item, size_t len) {
  if (r->itype != 0) {
    shm_write(p, item, r->isize);
    return 0;
  }
  uint64_t off;
  int rc = ent_new(r, item, len, &off);
  if (rc == 0)
    st((uint64_t *)(void *)p, off);
  return rc;
}

/* Insert one item at index @p at (0 <= at <= count). */
static int insert_locked(const lref *r, uint64_t at, const void *item, size_t len) {
  lstate s;
  int rc = state_of(r, &s);
  if (rc != 0 || (rc = make_room(r, &s, 1)) != 0)
    return rc;
  if (at == 0 || at == s.count) {
    /* An end: a free position, then one record. */
    uint64_t pos = at == 0 ? s.head + s.v.cap - 1 : s.head + s.count;
    if ((rc = put_item(r, at_pos(r, &s.v, pos), item, len)) != 0) {
      drop(r);
      return rc;
    }
    uint64_t head = at == 0 ? pos & s.v.mask : s.head;
    if (r->itype != 0) {
      hc_change(r, head, s.count + 1);
      return 0;
    }
    record(r, s.v.off, head, s.count + 1);
    return change(r, OP_META);
  }
  /* The middle: a new ring with a gap. */
  rview nv;
  if ((rc = ring_build(r, &s, s.v.cap, at, 1, UINT64_MAX, false, &nv)) != 0 ||
      (rc = put_item(r, at_pos(r, &nv, at), item, len)) != 0) {
    drop(r);
    return rc;
  }
  st(&r->l->jold_ring.word, (s.v.off - SHMVAL__OBJ_HDR_OFF) | SHMVAL__J_DESTROY);
  record(r, nv.off, 0, s.count + 1);
  return change(r, OP_META);
}

/* Remove item @p i, its bytes copied out first (buf NULL and cap 0: not wanted). */
static int pop_locked(const lref *r, uint64_t i, void *buf, size_t cap, size_t *len, bool want) {
  lstate s;
  size_t n = 0;
  int rc = state_of(r, &s);
  if (rc != 0)
    return rc;
  if (i >= s.count)
    return SHMVAL_ERANGE;
  if (want && (rc = item_get(r, &s, i, buf, cap, &n)) != 0) {
    *len = n;
    return rc;
  }
  *len = n;
  if (r->itype == 0) {
    uint64_t off = ld((const uint64_t *)(const void *)at_item(r, &s, i));
    st(&r->l->jold.word, off | SHMVAL__J_DESTROY);
  }
  if ((i == 0 || i == s.count - 1) && r->itype != 0) {
    hc_change(r, i == 0 ? (s.head + 1) & s.v.mask : s.head, s.count - 1);
    if (state_of(r, &s) == 0)
      maybe_shrink(r, &s);
    return 0;
  }
  if (i == 0 || i == s.count - 1) {
    record(r, s.v.off, i == 0 ? (s.head + 1) & s.v.mask : s.head, s.count - 1);
  } else {
    rview nv;
    if ((rc = ring_build(r, &s, s.v.cap, UINT64_MAX, 0, i, false, &nv)) != 0) {
      drop(r);
      return rc;
    }
    st(&r->l->jold_ring.word, (s.v.off - SHMVAL__OBJ_HDR_OFF) | SHMVAL__J_DESTROY);
    record(r, nv.off, 0, s.count - 1);
  }
  if ((rc = change(r, OP_META)) != 0)
    return rc;
  if (state_of(r, &s) == 0)
    maybe_shrink(r, &s);
  return 0;
}

/* Replace item @p i. */
static int set_locked(const lref *r, uint64_t i, const void *item, size_t len) {
  lstate s;
  int rc = state_of(r, &s);
  if (rc != 0)
    return rc;
  if (i >= s.count)
    return SHMVAL_ERANGE;
  shmval__list *l = r->l;
  uint64_t pos = (s.head + i) & s.v.mask, op;
  if (r->itype == 0) {
    uint64_t off, old = ld((const uint64_t *)(const void *)at_item(r, &s, i));
    if ((rc = ent_new(r, item, len, &off)) != 0) {
      drop(r);
      return rc;
    }
    st(&l->word, off);
    st(&l->jold.word, old | SHMVAL__J_DESTROY);
    op = OP_SLOT;
  } else if (r->isize <= SHMVAL__LIST_INLINE) {
    memcpy(l->inl, item, r->isize);
    op = OP_COPY;
  } else {
    uint64_t off;
    if ((rc = ent_new(r, item, r->isize, &off)) != 0) { /* a scratch copy */
      drop(r);
      return rc;
    }
    op = OP_COPY;
  }
  st(&l->pos, pos);
  record(r, s.v.off, s.head, s.count);
  return change(r, op);
}

/* Remove every item: a bytes list's one by one from the end, then the ring. */
static int clear_locked(const lref *r) {
  lstate s;
  int rc = state_of(r, &s);
  if (rc != 0)
    return rc;
  while (r->itype == 0 && s.count > 0) {
    uint64_t off = ld((const uint64_t *)(const void *)at_item(r, &s, s.count - 1));
    st(&r->l->jold.word, off | SHMVAL__J_DESTROY);
    record(r, s.v.off, s.head, s.count - 1);
    if ((rc = change(r, OP_META)) != 0 || (rc = state_of(r, &s)) != 0)
      return rc;
  }
  if (!s.has)
    return 0;
  st(&r->l->jold_ring.word, (s.v.off - SHMVAL__OBJ_HDR_OFF) | SHMVAL__J_DESTROY);
  record(r, 0, 0, 0);
  return change(r, OP_META);
}

/* ------------------------------------------------------------------------ */
/* Read-only readers: a sequence lock on ver. */

typedef int (*read_fn)(const lref *r, const lstate *s, void *ctx);

/* One read between two loads of ver: 0 or @p fn's code when it held, else R_MOVED. */
enum { R_MOVED = 1000 };

static int read_once(const lref *r, read_fn fn, void *ctx) {
  lstate s;
  uint64_t v1 = __atomic_load_n(&r->l->ver, __ATOMIC_ACQUIRE);
  if (__atomic_load_n(&r->l->dying, __ATOMIC_ACQUIRE) != 0)
    return SHMVAL_ESTALE;
  if (v1 & 1)
    return R_MOVED;
  int rc = state_of(r, &s);
  if (rc == 0)
    rc = fn(r, &s, ctx);
  atomic_thread_fence(memory_order_acquire);
  return __atomic_load_n(&r->l->ver, __ATOMIC_RELAXED) == v1 ? rc : R_MOVED;
}

/*
 * Run @p fn on a consistent view: between two loads of ver, without the
 * lock (@p lockfree: for every handle; else only for read-only ones, which
 * cannot take it), retried when a change moved ver; then under the lock,
 * which waits for the writer (or repairs a dead one's change). A read-only
 * handle gives up with EAGAIN: its writer seems dead with its change
 * unfinished. @p fn must only copy out (shm_read()) and validate.
 */
static int read_view(const shm_list *h, bool lockfree, read_fn fn, void *ctx) {
  lref r;
  lstate s;
  int rc = list_ref(h, false, &r);
  if (rc != 0)
    return rc;
  unsigned tries = r.ro ? RO_TRIES : lockfree ? RW_TRIES : 0;
  for (unsigned t = 0; t < tries; t++) {
    if ((rc = read_once(&r, fn, ctx)) != R_MOVED)
      return rc;
    if (r.ro)
      sched_yield();
  }
  if (r.ro)
    return SHMVAL_EAGAIN;
  if ((rc = list_lock(&r)) != 0)
    return rc;
  rc = state_of(&r, &s);
  if (rc == 0)
    rc = fn(&r, &s, ctx);
  list_unlock(&r);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Creation, destruction. */

static int list_make(shm_list **out, uint32_t itype, uint32_t isize, uint32_t ialign,
                     const shm_opts *opts) {
  if (out == NULL)
    return SHMVAL_EINVAL;
  shmval__list hdr;
  memset(&hdr, 0, sizeof hdr);
  int rc = shmval__mutex_init(&hdr.mu);
  if (rc != 0)
    return rc;
  hdr.jnew.tag = hdr.jring.tag = hdr.jold.tag = hdr.jold_ring.tag = SHMVAL__JTAG;
  hdr.itype = itype;
  hdr.isize = isize;
  hdr.ialign = ialign;
  shmval__obj *ob;
  rc = shmval__obj_create_container(&ob, SHMVAL__KIND_LIST, (int)itype, sizeof hdr, &hdr, opts);
  if (rc == 0)
    *out = (shm_list *)(void *)ob;
  return rc;
}

int shm_list_create(shm_list **out, shm_type item_type, const shm_opts *opts) {
  size_t size = 0, align = 8;
  if (item_type != 0 &&
      (item_type == SHMVAL_RECORD || !shmval__type_info(item_type, &size, &align)))
    return SHMVAL_EINVAL;
  return list_make(out, (uint32_t)item_type, (uint32_t)size, (uint32_t)align, opts);
}

int shm_list_create_record(shm_list **out, size_t size, size_t align, const shm_opts *opts) {
  int rc = shmval__check_record(size, align);
  return rc != 0 ? rc : list_make(out, SHMVAL_RECORD, (uint32_t)size, (uint32_t)align, opts);
}

int shm_list_open(shm_list **out, shm_segment *seg, const char *name) {
  return shmval__obj_open((void **)out, seg, name, SHMVAL__KIND_LIST, 0);
}

/* Wait (a little) for the waiters to leave a dying list before its memory goes. */
static void waiters_leave(shmval__list *l) {
  struct timespec ms = {0, 1000000};
  for (int i = 0; i < DESTROY_WAIT_MS && atomic_load(&l->waiters) != 0; i++)
    nanosleep(&ms, NULL);
}

int shm_list_destroy(shm_list *h) {
  lref r;
  if (h == NULL)
    return 0;
  int rc = list_ref(h, true, &r);
  if (rc != 0 || (rc = list_lock(&r)) != 0)
    return rc;
  /* Emptied first, every step recorded; marked dying last, then the waiters go. */
  if ((rc = clear_locked(&r)) == 0)
    __atomic_store_n(&r.l->dying, 1, __ATOMIC_RELEASE);
  list_unlock(&r);
  if (rc != 0)
    return rc;
  atomic_fetch_add(&r.l->seq, 1);
  shmval__prim_futex_wake(&r.l->seq, INT32_MAX);
  waiters_leave(r.l);
  SHMVAL__CRASH_POINT();
  return shmval__obj_destroy(h, SHMVAL__KIND_LIST);
}

/* ------------------------------------------------------------------------ */
/* Public operations. */

/* A typed item is exactly one element; a bytes item any length (NULL only when empty). */
static int item_ok(const lref *r, const void *item, size_t len) {
  if (item == NULL && len != 0)
    return SHMVAL_EINVAL;
  return r->itype != 0 && (item == NULL || len != r->isize) ? SHMVAL_EINVAL : 0;
}

/* Wake pop_wait callers: items arrived. */
static void wake(shmval__list *l) {
  atomic_fetch_add(&l->seq, 1);
  if (atomic_load(&l->waiters) != 0)
    shmval__prim_futex_wake(&l->seq, INT32_MAX);
}

static int insert_at(shm_list *h, long index, bool append, const void *item, size_t len) {
  lref r;
  lstate s;
  int rc = list_ref(h, true, &r);
  if (rc != 0 || (rc = item_ok(&r, item, len)) != 0 || (rc = list_lock(&r)) != 0)
    return rc;
  if ((rc = state_of(&r, &s)) == 0) {
    int64_t n = (int64_t)s.count, at = append ? n : index < 0 ? n + index : index;
    at = at < 0 ? 0 : at > n ? n : at;
    rc = insert_locked(&r, (uint64_t)at, item, len);
  }
  list_unlock(&r);
  if (rc == 0)
    wake(r.l);
  return rc;
}

int shm_list_append(shm_list *l, const void *item, size_t len) {
  return insert_at(l, 0, true, item, len);
}

int shm_list_insert(shm_list *l, long index, const void *item, size_t len) {
  return insert_at(l, index, false, item, len);
}

int shm_list_extend(shm_list *h, const void *items, size_t count) {
  lref r;
  lstate s;
  int rc = list_ref(h, true, &r);
  if (rc != 0)
    return rc;
  if (r.itype == 0)
    return SHMVAL_ETYPE;
  if (items == NULL && count != 0)
    return SHMVAL_EINVAL;
  if (count == 0)
    return 0;
  if ((rc = list_lock(&r)) != 0)
    return rc;
  if ((rc = state_of(&r, &s)) == 0 && (rc = make_room(&r, &s, count)) == 0) {
    /* Every item into the free positions, then one record for all. */
    for (size_t i = 0; i < count; i++)
      shm_write(at_item(&r, &s, s.count + i), (const char *)items + i * r.isize, r.isize);
    hc_change(&r, s.head, s.count + count);
  }
  list_unlock(&r);
  if (rc == 0)
    wake(r.l);
  return rc;
}

/* Take back the last @p k items of a bytes list (an append_many that failed part-way). */
static int unappend(const lref *r, size_t k) {
  int rc = 0;
  for (lstate s; k > 0 && rc == 0; k--) {
    size_t n;
    if ((rc = state_of(r, &s)) == 0)
      rc = pop_locked(r, s.count - 1, NULL, 0, &n, false);
  }
  return rc;
}

int shm_list_append_many(shm_list *h, const void *data, const size_t *lens, size_t count) {
  lref r;
  int rc = list_ref(h, true, &r);
  if (rc != 0)
    return rc;
  if (data == NULL && count != 0)
    return SHMVAL_EINVAL;
  if (r.itype != 0) {
    for (size_t i = 0; lens != NULL && i < count; i++)
      if (lens[i] != r.isize)
        return SHMVAL_EINVAL;
    return shm_list_extend(h, data, count);
  }
  if (lens == NULL && count != 0)
    return SHMVAL_EINVAL;
  if (count == 0)
    return 0;
  if ((rc = list_lock(&r)) != 0)
    return rc;
  const char *p = data;
  size_t k = 0;
  for (lstate s; k < count; p += lens[k++])
    if ((rc = state_of(&r, &s)) != 0 || (rc = insert_locked(&r, s.count, p, lens[k])) != 0)
      break;
  if (rc != 0)
    (void)unappend(&r, k); /* an error leaves nothing appended (damage aside) */
  list_unlock(&r);
  if (rc == 0)
    wake(r.l);
  return rc;
}

typedef struct get_arg {
  long index;
  void *buf;
  size_t cap, *len;
} get_arg;

static int get_fn(const lref *r, const lstate *s, void *ctx) {
  get_arg *a = ctx;
  uint64_t i;
  int rc = norm_index(a->index, s->count, &i);
  return rc != 0 ? rc : item_get(r, s, i, a->buf, a->cap, a->len);
}

int shm_list_get(shm_list *l, long index, void *buf, size_t cap, size_t *len) {
  size_t n = 0;
  if (buf == NULL && cap != 0)
    return SHMVAL_EINVAL;
  get_arg a = {index, buf, cap, &n};
  int rc = read_view(l, true, get_fn, &a);
  if ((rc == 0 || rc == SHMVAL_ENOBUFS) && len != NULL)
    *len = n;
  return rc;
}

int shm_list_set(shm_list *h, long index, const void *item, size_t len) {
  lref r;
  lstate s;
  uint64_t i;
  int rc = list_ref(h, true, &r);
  if (rc != 0 || (rc = item_ok(&r, item, len)) != 0 || (rc = list_lock(&r)) != 0)
    return rc;
  if ((rc = state_of(&r, &s)) == 0 && (rc = norm_index(index, s.count, &i)) == 0)
    rc = set_locked(&r, i, item, len);
  list_unlock(&r);
  return rc;
}

int shm_list_pop(shm_list *h, long index, void *buf, size_t cap, size_t *len) {
  lref r;
  lstate s;
  uint64_t i;
  size_t n = 0;
  if (buf == NULL && cap != 0)
    return SHMVAL_EINVAL;
  int rc = list_ref(h, true, &r);
  if (rc != 0 || (rc = list_lock(&r)) != 0)
    return rc;
  if ((rc = state_of(&r, &s)) == 0 && (rc = norm_index(index, s.count, &i)) == 0)
    rc = pop_locked(&r, i, buf, cap, &n, true);
  list_unlock(&r);
  if ((rc == 0 || rc == SHMVAL_ENOBUFS) && len != NULL)
    *len = n;
  return rc;
}

/* Whether seq moves from @p seen within a short spin. */
static bool spin_for(_Atomic uint32_t *seq, uint32_t seen) {
  for (unsigned i = 0; i < WAIT_SPINS + WAIT_YIELDS; i++) {
    if (atomic_load_explicit(seq, memory_order_relaxed) != seen)
      return true;
    if (i < WAIT_SPINS)
      shmval__prim_relax();
    else
      sched_yield();
  }
  return false;
}

/* One try of a waiting pop: SHMVAL_ERANGE when the list is empty. */
typedef int (*try_fn)(shm_list *h, void *ctx);

/*
 * Call @p try until it finds an item (or fails otherwise), waiting between
 * tries for items to arrive until @p timeout (0: one try, negative: forever).
 */
static int wait_for_item(shm_list *h, const lref *r, double timeout, try_fn try, void *ctx) {
  struct timespec deadline;
  bool forever = timeout < 0;
  if (!forever)
    shmval__prim_deadline(timeout, &deadline);
  for (;;) {
    uint32_t seen = atomic_load(&r->l->seq);
    int rc = try(h, ctx);
    if (rc != SHMVAL_ERANGE)
      return rc; /* items, ENOBUFS (nothing removed), or an error */
    if (timeout == 0 || (!forever && shmval__prim_past(&deadline)))
      return SHMVAL_ETIMEDOUT;
    /*
     * A producer at work appends within microseconds: watch seq a little
     * before sleeping, which spares both sides a system call per item.
     */
    if (spin_for(&r->l->seq, seen))
      continue;
    /* Announce the wait, then sleep unless an item came since seq was read. */
    atomic_fetch_add(&r->l->waiters, 1);
    rc = shmval__prim_futex_wait(&r->l->seq, seen, forever ? NULL : &deadline);
    bool dying = __atomic_load_n(&r->l->dying, __ATOMIC_ACQUIRE) != 0;
    atomic_fetch_sub(&r->l->waiters, 1); /* the last touch of a dying list */
    if (dying)
      return SHMVAL_ESTALE;
    if (rc != 0 && rc != SHMVAL_ETIMEDOUT)
      return rc;
  }
}

typedef struct pop_arg {
  long index;
  size_t max;
  char *buf;
  size_t cap, *lens, *count;
} pop_arg;

static int try_pop(shm_list *h, void *ctx) {
  pop_arg *a = ctx;
  return shm_list_pop(h, a->index, a->buf, a->cap, a->lens);
}

int shm_list_pop_wait(shm_list *h, long index, double timeout, void *buf, size_t cap, size_t *len) {
  lref r;
  if ((index != 0 && index != -1) || isnan(timeout) || (buf == NULL && cap != 0))
    return SHMVAL_EINVAL;
  int rc = list_ref(h, true, &r);
  if (rc != 0)
    return rc;
  pop_arg a = {index, 1, buf, cap, len, NULL};
  return wait_for_item(h, &r, timeout, try_pop, &a);
}

/* Pop up to a->max items from one end under one lock hold, while they fit. */
static int try_pop_many(shm_list *h, void *ctx) {
  pop_arg *a = ctx;
  lref r;
  lstate s;
  size_t used = 0, k = 0;
  int rc = list_ref(h, true, &r);
  if (rc != 0 || (rc = list_lock(&r)) != 0)
    return rc;
  while (k < a->max && (rc = state_of(&r, &s)) == 0) {
    size_t n = 0;
    if (s.count == 0) {
      rc = SHMVAL_ERANGE;
      break;
    }
    char *at = a->buf == NULL ? NULL : a->buf + used;
    rc = pop_locked(&r, a->index == 0 ? 0 : s.count - 1, at, a->cap - used, &n, true);
    if (rc != 0) {
      if (rc == SHMVAL_ENOBUFS && k == 0 && a->lens != NULL)
        a->lens[0] = n;
      break;
    }
    if (a->lens != NULL)
      a->lens[k] = n;
    used += n;
    k++;
  }
  list_unlock(&r);
  *a->count = k;
  /* Items taken are the caller's now: an error after them waits for the next call. */
  return k > 0 ? 0 : rc;
}

int shm_list_pop_many(shm_list *h, long index, size_t max, double timeout, void *buf, size_t cap,
                      size_t *lens, size_t *count) {
  lref r;
  if ((index != 0 && index != -1) || max == 0 || count == NULL || isnan(timeout) ||
      (buf == NULL && cap != 0))
    return SHMVAL_EINVAL;
  *count = 0;
  int rc = list_ref(h, true, &r);
  if (rc != 0)
    return rc;
  if (r.itype == 0 && lens == NULL)
    return SHMVAL_EINVAL;
  pop_arg a = {index, max, buf, cap, lens, count};
  return wait_for_item(h, &r, timeout, try_pop_many, &a);
}

static int len_fn(const lref *r, const lstate *s, void *ctx) {
  (void)r;
  *(size_t *)ctx = (size_t)s->count;
  return 0;
}

int shm_list_len(shm_list *l, size_t *n) {
  size_t x = 0;
  if (n == NULL)
    return SHMVAL_EINVAL;
  int rc = read_view(l, true, len_fn, &x);
  if (rc == 0)
    *n = x;
  return rc;
}

typedef struct slice_arg {
  long start;
  size_t count;
  void *out;
} slice_arg;

static int read_fn_slice(const lref *r, const lstate *s, void *ctx) {
  slice_arg *a = ctx;
  int64_t n = (int64_t)s->count, st0 = a->start < 0 ? n + a->start : a->start;
  if (st0 < 0 || st0 > n || a->count > (uint64_t)(n - st0))
    return SHMVAL_ERANGE;
  for (size_t i = 0; i < a->count; i++)
    shm_read((char *)a->out + i * r->isize, at_item(r, s, (uint64_t)st0 + i), r->isize);
  return 0;
}

int shm_list_read(shm_list *h, long start, size_t count, void *out) {
  lref r;
  int rc = list_ref(h, false, &r);
  if (rc != 0)
    return rc;
  if (r.itype == 0)
    return SHMVAL_ETYPE;
  if (out == NULL && count != 0)
    return SHMVAL_EINVAL;
  slice_arg a = {start, count, out};
  return read_view(h, true, read_fn_slice, &a);
}

typedef struct find_arg {
  const void *item;
  size_t len;
  uint64_t at;
} find_arg;

static int find_fn(const lref *r, const lstate *s, void *ctx) {
  find_arg *a = ctx;
  for (uint64_t i = 0; i < s->count; i++) {
    const char *p = at_item(r, s, i), *data = p;
    uint64_t n = r->isize;
    if (r->itype == 0 && ent_at(r->seg, ld((const uint64_t *)(const void *)p), &data, &n) != 0)
      return SHMVAL_ECORRUPT;
    if (n == a->len && (n == 0 || memcmp(data, a->item, (size_t)n) == 0)) {
      a->at = i;
      return 0;
    }
  }
  return SHMVAL_ENOENT;
}

int shm_list_index(shm_list *h, const void *item, size_t len, size_t *index) {
  lref r;
  int rc = list_ref(h, false, &r);
  if (rc != 0 || (rc = item_ok(&r, item, len)) != 0)
    return rc;
  find_arg a = {item, len, 0};
  if ((rc = read_view(h, false, find_fn, &a)) == 0 && index != NULL)
    *index = (size_t)a.at;
  return rc;
}

int shm_list_remove(shm_list *h, const void *item, size_t len) {
  lref r;
  lstate s;
  size_t n;
  int rc = list_ref(h, true, &r);
  if (rc != 0 || (rc = item_ok(&r, item, len)) != 0 || (rc = list_lock(&r)) != 0)
    return rc;
  find_arg a = {item, len, 0};
  if ((rc = state_of(&r, &s)) == 0 && (rc = find_fn(&r, &s, &a)) == 0)
    rc = pop_locked(&r, a.at, NULL, 0, &n, false);
  list_unlock(&r);
  return rc;
}

int shm_list_clear(shm_list *h) {
  lref r;
  int rc = list_ref(h, true, &r);
  if (rc != 0 || (rc = list_lock(&r)) != 0)
    return rc;
  rc = clear_locked(&r);
  list_unlock(&r);
  return rc;
}

/* Natural orders of the typed items. */
#define CMP_OF(name, T)                                                                            \
  static int name(const void *a, const void *b) {                                                  \
    T x, y;                                                                                        \
    memcpy(&x, a, sizeof x);                                                                       \
    memcpy(&y, b, sizeof y);                                                                       \
    return (x > y) - (x < y);                                                                      \
  }
CMP_OF(cmp_i8, signed char)
CMP_OF(cmp_u8, unsigned char)
CMP_OF(cmp_i16, short)
CMP_OF(cmp_u16, unsigned short)
CMP_OF(cmp_i32, int)
CMP_OF(cmp_u32, unsigned)
CMP_OF(cmp_i64, long long)
CMP_OF(cmp_u64, unsigned long long)
CMP_OF(cmp_f32, float)
CMP_OF(cmp_f64, double)

static int (*natural(uint32_t t, uint32_t size))(const void *, const void *) {
  switch (t) {
  case SHMVAL_FLOAT:
    return cmp_f32;
  case SHMVAL_DOUBLE:
    return cmp_f64;
  case SHMVAL_SCHAR:
    return cmp_i8;
  case SHMVAL_SHORT:
  case SHMVAL_INT:
  case SHMVAL_WCHAR:
  case SHMVAL_LONG:
  case SHMVAL_LLONG:
    return size == 2 ? cmp_i16 : size == 4 ? cmp_i32 : cmp_i64;
  default: /* unsigned kinds, char, bool */
    return size == 1 ? cmp_u8 : size == 2 ? cmp_u16 : size == 4 ? cmp_u32 : cmp_u64;
  }
}

/* reverse (@p cmp NULL and @p rev) or sort: a new ring, published in one change. */
static int reorder(shm_list *h, bool rev, int (*cmp)(const void *, const void *)) {
  lref r;
  lstate s;
  rview nv;
  int rc = list_ref(h, true, &r);
  if (rc != 0)
    return rc;
  if (!rev && (r.itype == 0 || (cmp == NULL && r.itype == SHMVAL_RECORD)))
    return r.itype == 0 ? SHMVAL_ETYPE : SHMVAL_EINVAL;
  if ((rc = list_lock(&r)) != 0)
    return rc;
  if ((rc = state_of(&r, &s)) != 0 || s.count < 2)
    goto out;
  if ((rc = ring_build(&r, &s, s.v.cap, UINT64_MAX, 0, UINT64_MAX, rev, &nv)) != 0) {
    drop(&r);
    goto out;
  }
  if (!rev) {
    /* Sorted in private memory, then written to the new ring (see shm_copy()). */
    size_t bytes = (size_t)(s.count * r.stride);
    char *tmp = malloc(bytes);
    if (tmp == NULL) {
      drop(&r);
      rc = SHMVAL_ENOMEM;
      goto out;
    }
    shm_read(tmp, nv.p, bytes);
    qsort(tmp, (size_t)s.count, (size_t)r.stride, cmp != NULL ? cmp : natural(r.itype, r.isize));
    shm_write(nv.p, tmp, bytes);
    free(tmp);
  }
  st(&r.l->jold_ring.word, (s.v.off - SHMVAL__OBJ_HDR_OFF) | SHMVAL__J_DESTROY);
  record(&r, nv.off, 0, s.count);
  rc = change(&r, OP_META);
out:
  list_unlock(&r);
  return rc;
}

int shm_list_reverse(shm_list *l) { return reorder(l, true, NULL); }

int shm_list_sort(shm_list *l, int (*cmp)(const void *, const void *)) {
  return reorder(l, false, cmp);
}

/* ------------------------------------------------------------------------ */
/* Iteration over a snapshot. */

typedef struct snap {
  char *p;
  size_t n, cap;
  uint64_t items;
} snap;

static int snap_put(snap *b, const void *data, uint64_t len) {
  uint64_t need = 8 + ((len + 7) & ~UINT64_C(7));
  if (b->cap - b->n < need) {
    size_t cap = b->cap != 0 ? b->cap : 4096;
    while (cap - b->n < need) {
      if (cap > SIZE_MAX / 2)
        return SHMVAL_ENOMEM;
      cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL)
      return SHMVAL_ENOMEM;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, &len, 8);
  shm_read(b->p + b->n + 8, data, (size_t)len);
  b->n += (size_t)need;
  return 0;
}

static int snap_fn(const lref *r, const lstate *s, void *ctx) {
  snap *b = ctx;
  b->n = 0;
  b->items = s->count;
  for (uint64_t i = 0; i < s->count; i++) {
    const char *p = at_item(r, s, i), *data = p;
    uint64_t n = r->isize;
    if (r->itype == 0 && ent_at(r->seg, ld((const uint64_t *)(const void *)p), &data, &n) != 0)
      return SHMVAL_ECORRUPT;
    int rc = snap_put(b, data, n);
    if (rc != 0)
      return rc;
  }
  return 0;
}

int shm_list_foreach(shm_list *l, int (*fn)(size_t i, const void *item, size_t len, void *ctx),
                     void *ctx) {
  snap b = {0};
  if (fn == NULL)
    return SHMVAL_EINVAL;
  int rc = read_view(l, false, snap_fn, &b);
  size_t at = 0;
  for (uint64_t i = 0; rc == 0 && i < b.items; i++) {
    uint64_t len;
    memcpy(&len, b.p + at, 8);
    rc = fn((size_t)i, b.p + at + 8, (size_t)len, ctx);
    at += 8 + (size_t)((len + 7) & ~UINT64_C(7));
  }
  free(b.p);
  return rc;
}

shm_type shm_list_item_type(const shm_list *h, size_t *size) {
  lref r;
  if (list_ref(h, false, &r) != 0)
    return (shm_type)0;
  if (size != NULL)
    *size = r.isize;
  return (shm_type)r.itype;
}

/* ------------------------------------------------------------------------ */
/* The integrity check. */

static int check_jword(const shmval__jword *j, shmval__offs *owned, shmval__problem *pb,
                       uint64_t off) {
  if (j->tag != SHMVAL__JTAG)
    return shmval__bad(pb, off, "a list's journal word is damaged");
  uint64_t v = ld(&j->word) & ~SHMVAL__J_STAGE;
  return v != 0 ? shmval__offs_push(owned, v) : 0;
}

int shmval__list_verify(shmval__seg *seg, uint64_t off, shmval__offs *owned, shmval__problem *pb) {
  shmval__obj *o = (shmval__obj *)(void *)((char *)seg + off);
  shmval__list *l = (shmval__list *)(void *)shmval__payload(o);
  lref r = {.o = o, .seg = seg, .l = l, .itype = l->itype, .isize = l->isize, .ialign = l->ialign};
  lstate s;
  int rc;
  if (!shmval__mutex_sane(&l->mu) || !itype_ok(o, l->itype, l->isize, l->ialign))
    return shmval__bad(pb, off, "a list's header is damaged");
  r.stride = r.itype == 0 ? 8 : ((uint64_t)r.isize + r.ialign - 1) & ~(uint64_t)(r.ialign - 1);
  const shmval__jword *js[] = {&l->jnew, &l->jring, &l->jold, &l->jold_ring};
  for (unsigned i = 0; i < 4; i++)
    if ((rc = check_jword(js[i], owned, pb, off)) != 0)
      return rc;
  if (state_of(&r, &s) != 0)
    return shmval__bad(pb, off, "a list's ring is damaged");
  if (!s.has)
    return 0;
  if ((rc = shmval__offs_push(owned, s.v.off - SHMVAL__OBJ_HDR_OFF)) != 0)
    return rc;
  for (uint64_t i = 0; r.itype == 0 && i < s.count; i++) {
    uint64_t e = ld((const uint64_t *)(const void *)at_item(&r, &s, i)), n;
    const char *data;
    if (ent_at(seg, e, &data, &n) != 0)
      return shmval__bad(pb, off, "a list item points to a damaged entry");
    if ((rc = shmval__offs_push(owned, e)) != 0)
      return rc;
  }
  return 0;
}
