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

#include <errno.h>
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
double shmval__prim_now(void);       /* CLOCK_MONOTONIC seconds */
uint64_t shmval__prim_wall_ns(void); /* CLOCK_REALTIME nanoseconds */
void shmval__prim_sleep(double seconds);
/* A hint to the CPU inside a spin-wait loop. */
static inline void shmval__prim_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/*
 * Futexes in shared memory. Wait while *addr == expected, until woken or the
 * absolute CLOCK_MONOTONIC @p deadline (NULL: forever): 0 (woken, or the word
 * changed: callers re-check) or SHMVAL_ETIMEDOUT. Signals do not end a wait.
 */
int shmval__prim_futex_wait(_Atomic uint32_t *addr, uint32_t expected,
                            const struct timespec *deadline);
void shmval__prim_futex_wake(_Atomic uint32_t *addr, int n);
bool shmval__prim_past(const struct timespec *deadline);

/* Named shared-memory files. Names are in "/name" form. */
int shmval__prim_shm_create(const char *name, unsigned mode, int *fd);
/*
 * An unnamed file where shm_open() keeps its files, to be named with
 * shmval__prim_shm_link() once complete; SHMVAL__ENOUNNAMED where the system
 * cannot make one (no O_TMPFILE there, or no /proc to link it through).
 */
#define SHMVAL__ENOUNNAMED (-30098)
int shmval__prim_shm_create_unnamed(unsigned mode, int *fd);
/* Give the unnamed file @p fd the name @p name: SHMVAL_EEXIST if it is taken. */
int shmval__prim_shm_link(int fd, const char *name);
int shmval__prim_shm_open(const char *name, bool rdonly, int *fd);
/* Write @p len bytes at @p off of a file. */
int shmval__prim_write_at(int fd, const void *buf, size_t len, uint64_t off);
int shmval__prim_shm_unlink(const char *name);
/* Size and identity (device, inode) of an open file. */
int shmval__prim_fd_info(int fd, uint64_t *size, uint64_t *dev, uint64_t *ino);
/* The permission bits of an open file. */
int shmval__prim_fd_mode(int fd, unsigned *mode);
/* Reserve @p size bytes of backing store: ENOSPC now rather than SIGBUS later. */
int shmval__prim_reserve(int fd, uint64_t size);
int shmval__prim_map(int fd, size_t size, bool rdonly, void **out);
void shmval__prim_close(int fd);
/*
 * Open-file-description byte locks: they belong to one open of the file, are
 * released when its last descriptor closes (or its process dies), and survive
 * PID reuse. SHMVAL_EBUSY when a conflicting lock is held.
 */
enum { SHMVAL__FLOCK_UN, SHMVAL__FLOCK_RD, SHMVAL__FLOCK_WR };
int shmval__prim_flock(int fd, uint64_t off, int type, bool wait);
/*
 * The first byte in [off, off+len) locked through another open; -1 if none,
 * -2 if the probe itself failed (callers must then assume a lock is held).
 */
int64_t shmval__prim_flock_probe(int fd, uint64_t off, uint64_t len);

/*
 * Crash points, compiled in only for the crash-consistency tests (the
 * shmval_objects_hooked library): a process-local countdown set by a test; the
 * step that takes it to zero kills the process with SIGKILL (or raises
 * shmval__crash_signal when a test set it), so a test can stop a change to
 * shared memory after any of its stores.
 */
#ifdef SHMVAL_CRASH_HOOKS
extern long shmval__crash_countdown;
extern int shmval__crash_signal;
void shmval__crash_point(void);
#define SHMVAL__CRASH_POINT() shmval__crash_point()
#else
#define SHMVAL__CRASH_POINT() ((void)0)
#endif

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

/* ------------------------------------------------------------------------ */
/* Segment header and the allocator (heap.c).                               */

#define SHMVAL__SEG_MAGIC UINT64_C(0x314c4156484d5300) /* "\0SMHVAL1" LE */
/* Written first by a named segment's creator, replaced by the magic last. */
#define SHMVAL__SEG_MAGIC_INIT UINT64_C(0x74696e69564d5300) /* "\0SMVinit" LE */
#define SHMVAL__LAYOUT_VERSION 5u

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
/*
 * Lay out a fresh segment header and heap over @p size bytes at @p seg. An
 * anonymous segment is published at once; a named one by its creator, with
 * shmval__seg_publish(), once its tables are in place.
 */
int shmval__seg_init(shmval__seg *seg, size_t size, uint32_t flags);
void shmval__seg_publish(shmval__seg *seg);
/*
 * Call @p cb for every allocated block, under the heap lock (so @p cb must
 * not allocate or free). Stops at the first non-zero result and returns it.
 */
int shmval__heap_walk(shmval__seg *seg, int (*cb)(void *ctx, uint64_t off, uint64_t size),
                      void *ctx);
/* The same without the lock, for read-only mappings: a bounded, racy view. */
int shmval__heap_walk_unlocked(shmval__seg *seg, int (*cb)(void *ctx, uint64_t off, uint64_t size),
                               void *ctx);
/*
 * Allocate a block able to hold @p bytes (block header included). On success
 * *off is the block's offset from the segment base.
 */
int shmval__heap_alloc(shmval__seg *seg, size_t bytes, uint64_t *off);
/*
 * The same, noting the block in the crash journal word @p journal (when not
 * NULL) under the heap lock, before the block is taken: see segment.c.
 */
int shmval__heap_alloc_j(shmval__seg *seg, size_t bytes, uint64_t *off, uint64_t *journal);
/* With the heap lock held: whether @p off starts an allocated block; its size. */
bool shmval__heap_used_block(shmval__seg *seg, uint64_t off, uint64_t *size);
/* Free the block at @p off. */
int shmval__heap_free(shmval__seg *seg, uint64_t off);
/* The same, clearing the crash journal word @p journal as the block becomes free. */
int shmval__heap_free_j(shmval__seg *seg, uint64_t off, uint64_t *journal);
/* Walk and verify the heap under its lock, filling @p st. */
int shmval__heap_check(shmval__seg *seg, shmval__heap_stat *st);
/* The same with the lock held by the caller, describing the first problem. */
int shmval__heap_verify(shmval__seg *seg, shmval__heap_stat *st, shmval__problem *pb);
/*
 * The heap lock; after a holder died, the heap's derived data is rebuilt
 * first (or the segment fenced off: ECORRUPT, then ENOTRECOVERABLE).
 */
int shmval__heap_lock(shmval__seg *seg);
void shmval__heap_unlock(shmval__seg *seg);
/* Bytes of the block at @p off (the size word without flags). */
static inline uint64_t shmval__blk_size(const shmval__seg *seg, uint64_t off) {
  const uint64_t *w = (const uint64_t *)((const char *)seg + off);
  return __atomic_load_n(w, __ATOMIC_RELAXED) & ~SHMVAL__BLK_FLAGS;
}

/* ------------------------------------------------------------------------ */
/* Objects (object.c) and locks (lock.c).                                    */

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
  SHMVAL__KIND_BARRIER = 9
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
  int32_t phase;     /* 0 filling, 1 draining, -1 resetting, -2 broken */
  uint32_t sleepers; /* parties blocked on seq (a dead one stays counted) */
  uint32_t spare;
  double timeout; /* the default; negative: none */
} shmval__barrier_state;

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

int shmval__lock_init(shmval__lock *l, unsigned flags, uint16_t host_back);
/* Acquire/release after checking the lock's magic (ESTALE, EINVAL). */
int shmval__lock_acquire(shmval__lock *l);
int shmval__lock_release(shmval__lock *l);
/* Acquire @p l for destruction: EBUSY if anyone holds it, the caller too. */
int shmval__lock_try_exclusive(shmval__lock *l);
bool shmval__lock_owned(const shmval__lock *l);
/* The calling thread's owner token (lock.c); 0 until it first needs one. */
extern _Thread_local uint64_t shmval__tls_token __attribute__((tls_model("initial-exec")));
uint64_t shmval__token_new(void);
/*
 * Lock a robust mutex in shared memory, waiting until the absolute
 * CLOCK_MONOTONIC @p deadline (NULL: for as long as it takes); the pthread
 * result (0, EOWNERDEAD, ENOTRECOVERABLE, ETIMEDOUT, ...). Every blocking
 * lock of a shared mutex goes through here: see lock.c for why the wait is
 * cut into slices.
 */
int shmval__mutex_wait(pthread_mutex_t *m, const struct timespec *deadline);
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
  /*
   * Try the compare-and-swap first: only when it fails is the owner word
   * read, so a contended acquire moves the lock's cache line once, not twice.
   */
  int rc = pthread_mutex_trylock(&l->mutex);
  if (SHMVAL__UNLIKELY(rc == EBUSY)) {
    if (atomic_load_explicit(&l->owner, memory_order_relaxed) == tok)
      return shmval__lock_reenter(l, SHMVAL_EDEADLK);
    rc = shmval__mutex_wait(&l->mutex, NULL);
  }
  if (SHMVAL__UNLIKELY(rc != 0 || (l->flags & SHMVAL__LOCK_DEAD_PENDING)))
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
/* Initialise a robust, process-shared mutex: 0 or -errno. */
int shmval__mutex_init(pthread_mutex_t *m);
/* Whether @p m, read from shared memory, has the type the library gives its mutexes. */
bool shmval__mutex_sane(const pthread_mutex_t *m);

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

static inline char *shmval__payload(const shmval__obj *o) {
  return (char *)(uintptr_t)o + o->payload_rel;
}

static inline shmval__lock *shmval__obj_lock(const shmval__obj *o) {
  return o->lock_rel == 0 ? NULL : (shmval__lock *)((char *)(uintptr_t)o + o->lock_rel);
}

/* Create an object of any kind; see obj_create() in object.c. */
int shmval__obj_create(shmval__obj **out, unsigned kind, int type, size_t elem_size, size_t align,
                       size_t length, const void *init, const shm_opts *opts);
int shmval__obj_destroy(const void *h, unsigned kind);
int shmval__obj_open(void **out, struct shm_segment *sg, const char *name, unsigned kind,
                     int expected);

/* Object helpers for the directory and segments (object.c). */
/* Validate the object header at @p off: 0 and *out, ESTALE, or ECORRUPT. */
int shmval__obj_at(shmval__seg *seg, uint64_t off, shmval__obj **out);
/* The same, checking and returning a copy of the header read once. */
int shmval__obj_peek(shmval__seg *seg, uint64_t off, shmval__obj *copy);
/* The object's name, or NULL; only for objects that passed shmval__obj_at(). */
const char *shmval__obj_name(const shmval__obj *o);
/* Allocate an internal object (a table) of @p length zeroed elements. */
int shmval__obj_alloc_table(shmval__seg *seg, unsigned kind, uint32_t elem_size, uint64_t length,
                            shmval__obj **out);
/* The same, journaled in @p journal while it is made (see shmval__heap_alloc_j). */
int shmval__obj_alloc_table_j(shmval__seg *seg, unsigned kind, uint32_t elem_size, uint64_t length,
                              shmval__obj **out, uint64_t *journal);
/* Free a table, noting it in the crash journal @p journal (or NULL) until it is free. */
void shmval__obj_free_table(shmval__obj *o, uint64_t *journal);
/*
 * Describe the object at @p off of @p sg, its name copied into @p name
 * (SHMVAL_NAME_MAX + 1 bytes): a consistent snapshot when the caller holds
 * the heap lock. ENOENT for an internal table; ESTALE, ECORRUPT.
 */
int shmval__obj_info(struct shm_segment *sg, uint64_t off, shm_object_info *info, char *name);

/* ------------------------------------------------------------------------ */
/* The name directory of a named segment (dir.c): an open-addressing hash    */
/* table in a heap block. Changes hold seg->dir_lock; lookups need not.     */

int shmval__dir_init(shmval__seg *seg);
/* Lock the directory; rebuilds it from a heap walk after an owner died. */
int shmval__dir_lock(shmval__seg *seg);
/* Note (or with NULL, forget) the journal of the dir_lock holder creating a named object. */
void shmval__dir_note_creator(shmval__seg *seg, const uint64_t *journal);
void shmval__dir_unlock(shmval__seg *seg);
/*
 * Find @p name without the lock, retrying while a peer changes the table;
 * after a few tries (or a peer that died mid-change) the lookup takes the
 * lock, unless @p can_lock is false (a read-only mapping): then EAGAIN.
 * *hdr is the copy of the object's header that was checked: a peer may
 * destroy the object as soon as it is found, so *out is a handle to check
 * again on use, like any other.
 */
int shmval__dir_lookup(shmval__seg *seg, const char *name, size_t len, bool can_lock,
                       shmval__obj **out, shmval__obj *hdr);
/* Check the directory's shape when a segment is opened: 0 or ECORRUPT. */
int shmval__dir_check(shmval__seg *seg);
/*
 * With the lock held: verify every entry (a live named object, reachable by
 * its name, tagged with its hash) and the counters; the names in *named.
 */
int shmval__dir_verify(shmval__seg *seg, uint64_t *named, shmval__problem *pb);
/* With the lock held: find @p name (ENOENT if absent), add, remove. */
int shmval__dir_find(shmval__seg *seg, const char *name, size_t len, shmval__obj **out);
int shmval__dir_insert(shmval__seg *seg, shmval__obj *o);
int shmval__dir_remove(shmval__seg *seg, shmval__obj *o);
/* 0 if @p name is a valid object name; its length in *len. */
int shmval__dir_name_ok(const char *name, size_t *len);

/* ------------------------------------------------------------------------ */
/* Named segments (segment.c).                                               */

/*
 * An attacher slot's entry in a named segment's attacher table (one cache
 * line). `pending` is the crash journal of the process holding the slot: the
 * block it is creating or destroying, with a stage in the low bits (blocks
 * are 64-aligned), or 0. A process that takes the slot after its holder died,
 * or shm_segment_reclaim(), frees what the journal shows was left half-done.
 */
typedef struct shmval__attach_ent {
  int32_t pid;
  uint32_t spare;
  uint64_t since_ns;
  uint64_t pending;
  uint64_t reserved[5];
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

/* The validated attacher table of @p seg, or NULL. */
shmval__attach_ent *shmval__attach_table(shmval__seg *seg);
/* This process's journal word for the named segment mapped at @p seg, or NULL. */
uint64_t *shmval__journal_for(const shmval__seg *seg);
/* The attacher slot whose journal word lies at offset @p joff in @p seg, or -1. */
long shmval__journal_slot(shmval__seg *seg, uint64_t joff);
/*
 * The objects that attachers' journals name as being created: published
 * perhaps, but their create has not returned (and if their creator died, a
 * reclaim frees them), so they are nobody else's yet. Sorted offsets of
 * object headers; free v after.
 */
typedef struct shmval__creating {
  uint64_t *v;
  size_t n;
} shmval__creating;
int shmval__creations(shmval__seg *seg, shmval__creating *c);
bool shmval__creating_has(const shmval__creating *c, uint64_t off);
/* A growable list of offsets in process memory (segment.c); free v after. */
typedef struct shmval__offs {
  uint64_t *v;
  size_t n, cap;
} shmval__offs;
/* Append @p off: 0 or ENOMEM. */
int shmval__offs_push(shmval__offs *l, uint64_t off);
void shmval__offs_sort(shmval__offs *l);
/* The offset of the journal word @p journal in @p seg; 0 for NULL. */
uint64_t shmval__journal_off(const shmval__seg *seg, const uint64_t *journal);
/*
 * The journal word at offset @p joff (read from shared memory), validated:
 * the header's dir_new or an attacher slot's; NULL otherwise.
 */
uint64_t *shmval__journal_at(shmval__seg *seg, uint64_t joff);
/*
 * The magic that an object destroyed under the attacher journal @p journal
 * gets: SHMVAL__OBJ_DEAD_BY(its slot), or SHMVAL__OBJ_DEAD without one.
 */
uint32_t shmval__dead_magic(shmval__seg *seg, const uint64_t *journal);
/*
 * Free the block the journal word @p pending shows its dead writer left, and
 * clear it; the caller holds the directory lock. *blocks and *bytes grow.
 */
int shmval__reclaim_journal(shmval__seg *seg, uint64_t *pending, size_t *blocks, size_t *bytes);

struct shm_segment {
  shmval__seg *base;
  uint64_t *journal; /* this process's crash journal word in the segment, or NULL */
  size_t size;       /* bytes mapped: the file's size when it was opened */
  int fd;            /* holds this process's attacher lock */
  int slot;          /* attacher slot, or -1 (observer, or none after fork) */
  unsigned flags;
  int pid; /* the process that attached */
  uint64_t dev, ino;
  char name[258];
  struct shm_segment *next; /* the process's list of open segments */
};

/* ------------------------------------------------------------------------ */
/* The default arena (arena.c).                                              */

/* Allocate a block of @p bytes in the arena; *seg and *off locate it. */
int shmval__arena_alloc(size_t bytes, shmval__seg **seg, uint64_t *off);
/* The segment holding the object header @p o. */
static inline shmval__seg *shmval__obj_seg(const shmval__obj *o) {
  return (shmval__seg *)((char *)(uintptr_t)o - o->self_off);
}

#endif /* SHMVAL_INTERNAL_H */
