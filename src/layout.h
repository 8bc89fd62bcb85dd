/*
 * The layout of shared memory: every structure, magic number and constant
 * that lies in a segment. Shared memory is an ABI: these structures are
 * mapped by several processes at different addresses, so they hold offsets,
 * never pointers; a change here is a change of SHMVAL__LAYOUT_VERSION.
 * Also the few inline helpers that only read these structures.
 */
#ifndef SHMVAL_LAYOUT_H
#define SHMVAL_LAYOUT_H

#include "prim.h"

#define SHMVAL__CACHELINE 64u

/* The first inconsistency an integrity check found: where, and what. */
typedef struct shmval__problem {
  uint64_t off;
  const char *what;
} shmval__problem;

/* Record the first problem (when @p pb is given) and return ECORRUPT. */
static inline int shmval__bad(shmval__problem *pb, uint64_t off, const char *what) {
  if (pb != NULL && pb->what == NULL) {
    pb->off = off;
    pb->what = what;
  }
  return SHMVAL_ECORRUPT;
}

#define SHMVAL__SEG_MAGIC UINT64_C(0x314c4156484d5300) /* "\0SMHVAL1" LE */
/* Written first by a named segment's creator, replaced by the magic last. */
#define SHMVAL__SEG_MAGIC_INIT UINT64_C(0x74696e69564d5300) /* "\0SMVinit" LE */
#define SHMVAL__LAYOUT_VERSION 10u

/* Allocator geometry: blocks are multiples of 64 bytes, 64-aligned. */
#define SHMVAL__BLOCK_ALIGN 64u
#define SHMVAL__FL_COUNT 32u
#define SHMVAL__SL_BITS 4u
#define SHMVAL__SL_COUNT (1u << SHMVAL__SL_BITS)

/* Block header flags, kept in the low bits of the size word. */
#define SHMVAL__BLK_FREE UINT64_C(1)
#define SHMVAL__BLK_PREV_FREE UINT64_C(2)
#define SHMVAL__BLK_FLAGS UINT64_C(63)

/* The operations in seg->heap_op. */
#define SHMVAL__HOP_ALLOC UINT64_C(1)
#define SHMVAL__HOP_FREE UINT64_C(2)

/* Segment flags. */
#define SHMVAL__SEG_ANON 1u
#define SHMVAL__SEG_NAMED 2u

/* Segment state bits (seg->state). */
#define SHMVAL__STATE_UNLINKED 1u /* its name was removed by a closer or rm */
#define SHMVAL__STATE_CLOSING 2u  /* a closer holding the gate is deciding to unlink */
/* The file offset of a named segment's gate byte lock (segment.c). */
#define SHMVAL__GATE_OFF (UINT64_C(1) << 40)
/* The file offset of attacher slot @p i's byte lock. */
#define SHMVAL__SLOT_OFF(i) (SHMVAL__GATE_OFF + 1 + (uint64_t)(i))

/*
 * The segment header at offset 0. The creator fills it in and stores the
 * magic last with release ordering; readers load it with acquire ordering.
 */
typedef struct shmval__seg {
  _Atomic uint64_t magic;
  uint32_t version;
  uint32_t hdr_size;
  uint64_t abi; /* shmval__abi_fingerprint() of the creator */
  /*
   * Bytes committed: backed by reserved memory (a named segment's file has
   * its blocks allocated this far). Only grows, under heap_lock, after the
   * space is reserved and before the heap extends into it (release store;
   * see shmval__seg_size()), so heap_end <= size <= max_size always.
   */
  _Atomic uint64_t size;
  uint64_t heap_start; /* first block, 64-aligned */
  /* End of the last block: only grows, under heap_lock (see shmval__heap_end()). */
  _Atomic uint64_t heap_end;
  uint32_t flags; /* SHMVAL__SEG_* */
  /*
   * Guarded by heap_lock, derived (rebuilt after a death): whether the last
   * block is free, the PREV_FREE bit of the block that a grow appends.
   */
  uint32_t end_prev_free;
  /*
   * Allocator counters, guarded by heap_lock (its free lists: see
   * shmval__heap_state, whose block these do not count).
   */
  uint64_t used;   /* bytes in allocated blocks */
  uint64_t blocks; /* allocated blocks */
  /* Named segments: the name directory, guarded by dir_lock. */
  uint64_t dir_off; /* the directory table's object header; 0 = none */
  uint64_t dir_cap; /* entries, a power of two */
  uint64_t dir_count;
  uint64_t dir_tombs;
  /*
   * Odd while a holder of dir_lock may be changing the directory, so that
   * lookups can run without the lock and retry (a sequence lock).
   */
  uint64_t dir_gen;
  /*
   * The directory table a holder of dir_lock is allocating or freeing (a
   * crash journal with SHMVAL__J_CREATE in the low bits), or 0: a rebuild
   * frees it unless it is a live table (the current one, or one the rebuild
   * frees anyway).
   */
  uint64_t dir_new;
  uint64_t attach_off; /* the attacher table's object header */
  uint32_t max_attach; /* attacher slots */
  uint32_t policy;     /* shm_segment_flags lifetime bits */
  _Atomic uint32_t state;
  uint32_t reserved0b;
  uint64_t created_ns; /* CLOCK_REALTIME at creation */
  /*
   * The most the segment may hold, fixed at creation: every process maps
   * this much address space (a named segment's file has this size, its
   * blocks allocated only as far as size), so a grow never moves anything.
   */
  uint64_t max_size;
  /*
   * Guarded by heap_lock (kept here, in what was padding before layout 4, so
   * that the fields above kept their offsets): the operation a holder of
   * heap_lock is in the middle of, as the block's offset with
   * SHMVAL__HOP_ALLOC or SHMVAL__HOP_FREE in the low bits, or 0; and the
   * offset of the operation's crash journal word, or 0. The next holder after
   * a death undoes an allocation (its caller never got the block) and
   * completes a free (its caller had let go of the block).
   */
  uint64_t heap_op;
  uint64_t heap_op_j;
  /*
   * Guarded by dir_lock: the offset of the crash journal word of a holder
   * creating a named object, or 0. After that holder dies, the object, if it
   * was published, is a committed one (the rebuild lists it): the next holder
   * clears the journal before anyone can destroy the object.
   */
  uint64_t dir_op_j;
  pthread_mutex_t heap_lock __attribute__((aligned(SHMVAL__CACHELINE)));
  pthread_mutex_t dir_lock __attribute__((aligned(SHMVAL__CACHELINE)));
} shmval__seg;

/*
 * The allocator's free lists (two-level, as in TLSF), guarded by heap_lock.
 * They live in an allocated block of the heap's own at a fixed offset, the
 * state block, rather than in the header: at 4 KiB they would push the
 * segment's tables, which every opener reads, out of the first page, and an
 * opener would touch two or three pages where one does. So the header and
 * the tables that follow it share the first page, and only allocators reach
 * into the state block, on the next.
 */
typedef struct shmval__heap_state {
  uint32_t fl_bitmap;
  uint32_t reserved;
  uint32_t sl_bitmap[SHMVAL__FL_COUNT];
  uint64_t free_head[SHMVAL__FL_COUNT][SHMVAL__SL_COUNT];
} shmval__heap_state;

/* The state block's offset, its size (a size word, then the state) and its end. */
#define SHMVAL__HEAP_STATE_BLK UINT64_C(4096)
#define SHMVAL__HEAP_STATE_SIZE                                                                    \
  ((8 + sizeof(shmval__heap_state) + SHMVAL__BLOCK_ALIGN - 1) &                                    \
   ~(uint64_t)(SHMVAL__BLOCK_ALIGN - 1))
#define SHMVAL__HEAP_STATE_END (SHMVAL__HEAP_STATE_BLK + SHMVAL__HEAP_STATE_SIZE)

/* The free lists of @p seg, whose heap reaches past the state block (checked at open). */
static inline shmval__heap_state *shmval__heap_state_of(shmval__seg *seg) {
  return (shmval__heap_state *)(void *)((char *)seg + SHMVAL__HEAP_STATE_BLK + 8);
}

/* The committed size (acquire: the space below it is reserved). */
static inline uint64_t shmval__seg_size(const shmval__seg *seg) {
  return atomic_load_explicit(&((shmval__seg *)(uintptr_t)seg)->size, memory_order_acquire);
}

/*
 * The heap's end as a lock-free reader sees it now: every offset read from
 * shared memory is checked against it. It never exceeds the committed size,
 * which never exceeds the mapping.
 */
static inline uint64_t shmval__heap_end(const shmval__seg *seg) {
  return atomic_load_explicit(&((shmval__seg *)(uintptr_t)seg)->heap_end, memory_order_acquire);
}

/*
 * Whether the heap's end, the committed size and the maximum are in order:
 * what every reader's bounds rest on, checked at open, by a grow and by the
 * heap check.
 */
static inline bool shmval__seg_sizes_ok(const shmval__seg *seg) {
  uint64_t size = shmval__seg_size(seg);
  return shmval__heap_end(seg) <= size && size <= seg->max_size;
}

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

/* Bytes of the block at @p off (the size word without flags). */
static inline uint64_t shmval__blk_size(const shmval__seg *seg, uint64_t off) {
  const uint64_t *w = (const uint64_t *)((const char *)seg + off);
  return __atomic_load_n(w, __ATOMIC_RELAXED) & ~SHMVAL__BLK_FLAGS;
}

#define SHMVAL__OBJ_MAGIC UINT32_C(0x4a424f53)  /* "SOBJ" */
#define SHMVAL__OBJ_DEAD UINT32_C(0x44414544)   /* "DEAD" */
#define SHMVAL__LOCK_MAGIC UINT32_C(0x4b434c53) /* "SLCK" */
/*
 * An object that a process attached to a named segment destroys gets the
 * magic SHMVAL__OBJ_DEAD_BY(its attacher slot): with the journal noted before
 * that compare-and-swap, a reclaimer can tell that the journal's dead writer,
 * and nobody else, retired the object.
 */
#define SHMVAL__OBJ_DEAD_BY(slot) (UINT32_C(0xdead0000) | (uint32_t)(slot))

/* Whether @p m is the magic of a destroyed object. */
static inline bool shmval__magic_dead(uint32_t m) {
  return m == SHMVAL__OBJ_DEAD || (m >> 16) == 0xdeadu;
}

enum shmval__kind {
  SHMVAL__KIND_VALUE = 1,
  SHMVAL__KIND_ARRAY = 2,
  SHMVAL__KIND_LOCK = 3,
  SHMVAL__KIND_DIR = 4,    /* a named segment's directory table */
  SHMVAL__KIND_ATTACH = 5, /* a named segment's attacher table */
  SHMVAL__KIND_SEM = 6,
  SHMVAL__KIND_COND = 7,
  SHMVAL__KIND_EVENT = 8,
  SHMVAL__KIND_BARRIER = 9,
  SHMVAL__KIND_DICT = 10,     /* a dict's header (dict.c) */
  SHMVAL__KIND_DICT_TAB = 11, /* a dict's slot table */
  SHMVAL__KIND_LIST = 12,     /* a list's header (list.c) */
  SHMVAL__KIND_LIST_RING = 13 /* a list's ring of items */
};

/* The payloads of the synchronisation objects (sync.c). */
typedef struct shmval__sem_state {
  _Atomic uint32_t count;   /* the futex word */
  _Atomic uint32_t waiters; /* blocked or about to block */
  uint32_t max;             /* the bound, or UINT32_MAX */
  uint32_t spare;
} shmval__sem_state;

/*
 * A Condition's waiter slot. A waiter holds the slot's robust mutex for as
 * long as it waits, so a notifier that finds the mutex owner-dead knows the
 * waiter was killed and frees the slot instead of notifying it. The other
 * fields are guarded by the Condition's lock.
 */
#define SHMVAL__COND_SLOTS 16u
enum { SHMVAL__CW_FREE = 0, SHMVAL__CW_WAITING = 1, SHMVAL__CW_NOTIFIED = 2 };
typedef struct shmval__cond_slot {
  pthread_mutex_t alive;
  uint32_t state;  /* SHMVAL__CW_* */
  uint32_t ticket; /* arrival order: notify wakes the oldest waiters first */
} shmval__cond_slot;

typedef struct shmval__cond_state {
  _Atomic uint32_t seq; /* the futex word: bumped by every notify */
  uint32_t waiters;     /* waiting now without a slot (all slots in use), under the lock */
  uint32_t permits;     /* notifications for those, not yet taken, under the lock */
  uint32_t next_ticket; /* under the lock */
  uint32_t in_slots;    /* slots not free, under the lock: 0 spares notify the scan */
  uint32_t spare;
  shmval__cond_slot slot[SHMVAL__COND_SLOTS];
} shmval__cond_state;

typedef struct shmval__event_state {
  _Atomic uint32_t flag; /* the futex word */
  _Atomic uint32_t waiters;
} shmval__event_state;

typedef struct shmval__barrier_state {
  _Atomic uint32_t seq; /* the futex word: bumped on every state change */
  uint32_t parties;
  uint32_t count;    /* parties inside wait() */
  int32_t phase;     /* 0 filling, -1 resetting, -2 broken */
  uint32_t sleepers; /* parties blocked on seq (a dead one stays counted) */
  uint32_t gen;      /* passes so far: a waiter has passed when it moved */
  double timeout;    /* the default; negative: none */
} shmval__barrier_state;

/*
 * A journal word that lives inside a heap block (a dict's) rather than in
 * the segment header or the attacher table: the word before it holds
 * SHMVAL__JTAG, which is how shmval__journal_at() tells it from anything
 * else an offset read from shared memory might point to.
 */
#define SHMVAL__JTAG UINT64_C(0x4c4e524a4c415653) /* "SVALJRNL" */
typedef struct shmval__jword {
  uint64_t tag; /* SHMVAL__JTAG */
  uint64_t word;
} shmval__jword;

/*
 * A dict's slot (dict.c): a control word, then two data words. The control
 * word is the slot's sequence lock: writers set BUSY, change the data, then
 * store the final control word with the version they stepped; readers copy
 * the data between two loads of it and retry when they differ.
 */
#define SHMVAL__DS_EMPTY UINT64_C(0)
#define SHMVAL__DS_TOMB UINT64_C(1)   /* deleted: probes go on past it */
#define SHMVAL__DS_INLINE UINT64_C(2) /* key then value in the 16 data bytes */
#define SHMVAL__DS_HEAP UINT64_C(3)   /* w[0] = entry block, w[1] = full hash */
#define SHMVAL__DS_STATE UINT64_C(3)
#define SHMVAL__DS_BUSY UINT64_C(4)
#define SHMVAL__DS_KLEN_SHIFT 3 /* inline key length, 5 bits */
#define SHMVAL__DS_VLEN_SHIFT 8 /* inline value length, 5 bits */
#define SHMVAL__DS_VER_SHIFT 13 /* version, 27 bits */
#define SHMVAL__DS_VER_MASK (((UINT64_C(1) << 27) - 1) << SHMVAL__DS_VER_SHIFT)
#define SHMVAL__DS_TAG_SHIFT 40 /* the top 24 bits of the key's hash */
#define SHMVAL__DS_INLINE_MAX 16u
typedef struct shmval__dslot {
  uint64_t ctl;
  uint64_t w[2];
} shmval__dslot;

/* A dict's entry block (values that do not fit in a slot): after the block's size word. */
#define SHMVAL__DENT_MAGIC UINT32_C(0x4e454453) /* "SDEN" */
typedef struct shmval__dent {
  uint32_t magic;
  uint32_t klen;
  uint64_t vlen;
  /* The key, then the value at the next multiple of 8. */
} shmval__dent;

#define SHMVAL__DICT_STRIPES 16u

/*
 * A stripe of a dict: the robust lock of the keys whose hash falls in it and
 * its redo record. A writer notes the change it is about to make to one slot
 * (the slot, its control word before and after, the data, the counts after)
 * and sets op last; the entry block it allocated (jnew) and the one it
 * replaces (jold) are crash journals. The lock's next holder after a death
 * completes a recorded change or drops an unrecorded one (dict.c).
 */
typedef struct shmval__dstripe {
  pthread_mutex_t mu;
  uint64_t count; /* live keys of this stripe; atomic loads and stores */
  uint64_t used;  /* slots this stripe turned from EMPTY since the table was made */
  shmval__jword jnew, jold;
  uint64_t op; /* 1: the record below is complete */
  uint64_t slot, old_ctl, new_ctl, w0, w1, count_after, used_after;
} __attribute__((aligned(SHMVAL__CACHELINE))) shmval__dstripe;

/*
 * A dict's header, the payload of its object. tab is the current table's
 * object header offset, 0 while the dict is being destroyed; tab_gen steps
 * after every change of tab, so that a reader can tell that the table it
 * read may have been freed meanwhile. A resize holds rs_mu and every
 * stripe; rs_new and rs_old journal the tables it makes and frees.
 */
typedef struct shmval__dict {
  uint64_t tab;
  uint64_t tab_gen;
  uint32_t vtype; /* 0: byte strings; else a shm_type letter */
  uint32_t vsize; /* a typed dict's value size */
  uint64_t seed;  /* of the key hash, random per dict */
  uint32_t dying; /* set by a destroyer with every lock held: no more writes */
  uint32_t spare;
  pthread_mutex_t rs_mu __attribute__((aligned(SHMVAL__CACHELINE)));
  shmval__jword rs_new, rs_old;
  shmval__dstripe stripe[SHMVAL__DICT_STRIPES];
} shmval__dict;

/* A bytes list's item: an entry block of the heap, after the block's size word. */
#define SHMVAL__LENT_MAGIC UINT64_C(0x4d455449544c5653) /* "SVLTITEM" */
typedef struct shmval__lent {
  uint64_t magic;
  uint64_t len;
  /* The bytes. */
} shmval__lent;

/* A typed list's set of one item: the new value, in the record when it fits. */
#define SHMVAL__LIST_INLINE 64u

/*
 * A list's header, the payload of its object (list.c). The items are in a
 * ring (an object of kind LIST_RING): item i at position (head + i) mod the
 * ring's capacity; a bytes list's positions hold entry block offsets, a typed
 * list's the items themselves. Every operation holds mu. A change records
 * where it leads (op and the fields after it) before it touches anything
 * visible; the blocks it allocated (jnew: an entry or a scratch value; jring:
 * a new ring) and the ones it retires (jold, jold_ring) are crash journals.
 * The lock's next holder after a death completes a recorded change or drops
 * an unrecorded one. seq is the futex word of pop_wait: it steps when items
 * arrive or the list dies.
 */
typedef struct shmval__list {
  /* The first cache line: what every change writes. */
  pthread_mutex_t mu;
  uint64_t hc;  /* the position of item 0 (low 32 bits) and the count (high 32): one store */
  uint64_t ver; /* odd while a change is applied: read-only readers' sequence lock */
  _Atomic uint32_t seq;
  _Atomic uint32_t waiters; /* pop_wait callers asleep or about to be */
  /* Read by every operation, written when the ring changes. */
  uint64_t ring;  /* the ring's object header offset; 0: none */
  uint32_t itype; /* 0: byte strings; else a shm_type letter */
  uint32_t isize; /* a typed list's item size */
  uint32_t ialign;
  uint32_t dying;  /* set by a destroyer: no more operations */
  uint32_t broken; /* a dead holder's change could not be repaired */
  uint32_t spare;
  /* The record of a change that needs one (list.c). */
  uint64_t op;
  uint64_t ring_after, hc_after;
  uint64_t pos;  /* the ring position a slot change writes */
  uint64_t word; /* the entry offset it stores there (bytes lists) */
  shmval__jword jnew, jring, jold, jold_ring;
  unsigned char inl[SHMVAL__LIST_INLINE];
} shmval__list;

/* Object flags. */
#define SHMVAL__OBJ_OWN_LOCK 1u /* the lock at lock_rel lives in this block */
#define SHMVAL__OBJ_ATOMIC 2u   /* no lock: accessed with atomic instructions only */

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

/* Lock flags. DEAD_PENDING is changed only by the holder. */
#define SHMVAL__LOCK_RECURSIVE 1u
#define SHMVAL__LOCK_DEAD_PENDING 2u /* an owner died; the next acquirer must hear of it */

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

/*
 * An attacher slot's entry in a named segment's attacher table (half a cache
 * line, so that the default table of 64 fits the first page with the header).
 * `pending` is the crash journal of the process holding the slot: the block
 * it is creating or destroying, with a stage in the low bits (blocks are
 * 64-aligned), or 0. A process that takes the slot after its holder died, or
 * shm_segment_reclaim(), frees what the journal shows was left half-done.
 */
typedef struct shmval__attach_ent {
  int32_t pid;
  uint32_t spare;
  uint64_t since_ns;
  uint64_t pending;
  uint64_t reserved;
} shmval__attach_ent;

/*
 * A journal names a block only while the block is this process's alone, so
 * that no one else can free it and its reuse can never be mistaken for it.
 */
#define SHMVAL__J_CREATE 1u  /* allocated for an object not yet published */
#define SHMVAL__J_DESTROY 2u /* retired by this process; its own lock's host reference held */
#define SHMVAL__J_UNREF 3u   /* its own lock's last reference dropped: being freed */
#define SHMVAL__J_STAGE UINT64_C(63)

static inline void shmval__journal_set(uint64_t *j, uint64_t v) {
  if (j != NULL)
    __atomic_store_n(j, v, __ATOMIC_RELEASE);
}

/* The segment holding the object header @p o. */
static inline shmval__seg *shmval__obj_seg(const shmval__obj *o) {
  return (shmval__seg *)((char *)(uintptr_t)o - o->self_off);
}

/*
 * Handles. Objects and locks reached through a read-only segment carry a tag
 * in bit 0 (headers are 8-aligned): every write and lock entry point refuses
 * them with SHMVAL_EACCES instead of faulting on the PROT_READ mapping.
 */
#define SHMVAL__RO_TAG ((uintptr_t)1)

static inline shmval__obj *shmval__obj_of(const void *h) {
  return (shmval__obj *)((uintptr_t)h & ~SHMVAL__RO_TAG);
}
static inline bool shmval__is_ro(const void *h) { return ((uintptr_t)h & SHMVAL__RO_TAG) != 0; }
static inline void *shmval__tag(const void *p, bool ro) {
  return (void *)((uintptr_t)p | (ro ? SHMVAL__RO_TAG : 0));
}

/* 0 if @p o is a live object of @p kind; ESTALE if destroyed; else EINVAL. */
static inline int shmval__obj_check(const shmval__obj *o, unsigned kind) {
  if (SHMVAL__UNLIKELY(o == NULL))
    return SHMVAL_EINVAL;
  uint32_t m = atomic_load_explicit(&((shmval__obj *)(uintptr_t)o)->magic, memory_order_acquire);
  if (SHMVAL__UNLIKELY(m != SHMVAL__OBJ_MAGIC))
    return shmval__magic_dead(m) ? SHMVAL_ESTALE : SHMVAL_EINVAL;
  return SHMVAL__LIKELY(o->kind == kind) ? 0 : SHMVAL_EINVAL;
}

/* 0 if @p l is a live lock; ESTALE if its memory was retired; else EINVAL. */
static inline int shmval__lock_check(const shmval__lock *l) {
  if (SHMVAL__UNLIKELY(l == NULL))
    return SHMVAL_EINVAL;
  uint32_t m = atomic_load_explicit(&((shmval__lock *)(uintptr_t)l)->magic, memory_order_acquire);
  if (SHMVAL__LIKELY(m == SHMVAL__LOCK_MAGIC))
    return 0;
  return m == SHMVAL__OBJ_DEAD ? SHMVAL_ESTALE : SHMVAL_EINVAL;
}

static inline char *shmval__payload(const shmval__obj *o) {
  return (char *)(uintptr_t)o + o->payload_rel;
}

static inline shmval__lock *shmval__obj_lock(const shmval__obj *o) {
  return o->lock_rel == 0 ? NULL : (shmval__lock *)((char *)(uintptr_t)o + o->lock_rel);
}

#endif /* SHMVAL_LAYOUT_H */
