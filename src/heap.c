/*
 * The segment header and the in-segment allocator.
 *
 * The heap is a chain of blocks, each a multiple of 64 bytes and 64-aligned,
 * starting with a size word whose low bits are flags (FREE, PREV_FREE). A free
 * block also holds free-list links after its size word and a copy of its size
 * in its last 8 bytes (a boundary tag), so that freeing can merge with the
 * previous block. Free blocks sit in segregated lists (two-level, as in TLSF),
 * giving O(1) allocation and free; the lists and their bitmaps live in the
 * heap's state block, an allocated block of its own at a fixed offset (see
 * shmval__heap_state), so that the header and a named segment's tables fit
 * the first page.
 *
 * Crash consistency: the size words always form a walkable chain. Every
 * change to the chain is one aligned 8-byte store (a split writes the new tail
 * header before shrinking the head; a merge grows the surviving head), so a
 * process killed at any instruction leaves a chain that is intact. The lists,
 * bitmaps, footers, PREV_FREE bits and counters are derived data: the next
 * process that locks the heap and gets EOWNERDEAD rebuilds all of them from a
 * walk of the chain before marking the lock consistent.
 *
 * Growth: a segment whose committed size is below its maximum grows when no
 * free block fits a request (see grow()): the space is reserved first (the
 * file's blocks, or an anonymous segment's pages), then the new committed
 * size is published, then the heap extends into it with the same one-store
 * discipline. Every process has the whole maximum mapped already, so nothing
 * moves and nobody else has to do anything to see the new space.
 */
#include "heap.h"
#include "journal.h"
#include "lock.h"
#include "prim.h"

#include <errno.h>
#include <string.h>

#define BLK_MIN ((uint64_t)SHMVAL__BLOCK_ALIGN)
/* Heaps are limited so that every block size maps to a first-level class. */
#define HEAP_MAX (UINT64_C(1) << 40)
/* A grow at least doubles the committed size, but adds at most this much beyond the request. */
#define GROW_STEP_MAX (UINT64_C(1) << 30)
/* Freed blocks this big in an anonymous segment give their interior pages back. */
#define DISCARD_MIN (UINT64_C(64) << 10)

static inline uint64_t *word_at(shmval__seg *seg, uint64_t off) {
  return (uint64_t *)((char *)seg + off);
}

/*
 * Store a word of the heap's blocks (a size word, a footer, a free-list
 * link) with a single store. An allocated block's owner reads its size word
 * without the heap lock (shmval__blk_size), while a neighbour's free changes
 * its PREV_FREE bit under the lock; and a dict's lock-free reader may be
 * copying a block that was freed and is being reused (it finds out after,
 * from its slot's version): both sides use atomic accesses.
 */
static inline void put(uint64_t *p, uint64_t w) { __atomic_store_n(p, w, __ATOMIC_RELAXED); }

static inline void set_word(shmval__seg *seg, uint64_t off, uint64_t w) {
  put(word_at(seg, off), w);
}

/* The free lists (see shmval__heap_state). */
static inline shmval__heap_state *hs(const shmval__seg *seg) {
  return shmval__heap_state_of((shmval__seg *)(uintptr_t)seg);
}

static inline shmval__free_blk *fblk(shmval__seg *seg, uint64_t off) {
  return (shmval__free_blk *)((char *)seg + off);
}

static inline uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

uint64_t shmval__abi_fingerprint(void) {
  /* Everything a peer must agree on to read our structures, packed in bits. */
  uint64_t endian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 1u : 2u;
  uint64_t fp = (uint64_t)sizeof(pthread_mutex_t);
  fp |= (uint64_t) _Alignof(pthread_mutex_t) << 8;
  fp |= (uint64_t)sizeof(void *) << 16;
  fp |= endian << 24;
  fp |= (uint64_t)SHMVAL__CACHELINE << 28;
  fp |= (uint64_t)sizeof(shmval__seg) << 40;
  fp |= (uint64_t)sizeof(shmval__obj) << 56;
  return fp ^ ((uint64_t)sizeof(shmval__lock) << 48);
}

/* ------------------------------------------------------------------------ */
/* Size classes. */

/* The class (fl, sl) of a block of @p units 64-byte units. */
static void size_class(uint64_t units, unsigned *fl, unsigned *sl) {
  if (units < SHMVAL__SL_COUNT) {
    *fl = 0;
    *sl = (unsigned)units;
    return;
  }
  unsigned lg = 63u - (unsigned)__builtin_clzll(units);
  *fl = lg - (SHMVAL__SL_BITS - 1u);
  *sl = (unsigned)(units >> (lg - SHMVAL__SL_BITS)) - SHMVAL__SL_COUNT;
}

/* The smallest class whose every block holds @p units units. */
static void search_class(uint64_t units, unsigned *fl, unsigned *sl) {
  if (units >= SHMVAL__SL_COUNT) {
    unsigned lg = 63u - (unsigned)__builtin_clzll(units);
    units += (UINT64_C(1) << (lg - SHMVAL__SL_BITS)) - 1u;
  }
  size_class(units, fl, sl);
}

static void list_insert(shmval__seg *seg, uint64_t off, uint64_t size) {
  unsigned fl, sl;
  size_class(size / BLK_MIN, &fl, &sl);
  shmval__free_blk *b = fblk(seg, off);
  uint64_t head = hs(seg)->free_head[fl][sl];
  put(&b->next, head);
  put(&b->prev, 0);
  SHMVAL__CRASH_POINT();
  if (head != 0)
    put(&fblk(seg, head)->prev, off);
  SHMVAL__CRASH_POINT();
  hs(seg)->free_head[fl][sl] = off;
  SHMVAL__CRASH_POINT();
  hs(seg)->sl_bitmap[fl] |= 1u << sl;
  hs(seg)->fl_bitmap |= 1u << fl;
}

static void list_remove(shmval__seg *seg, uint64_t off, uint64_t size) {
  unsigned fl, sl;
  size_class(size / BLK_MIN, &fl, &sl);
  shmval__free_blk *b = fblk(seg, off);
  if (b->next != 0)
    put(&fblk(seg, b->next)->prev, b->prev);
  SHMVAL__CRASH_POINT();
  if (b->prev != 0)
    put(&fblk(seg, b->prev)->next, b->next);
  else
    hs(seg)->free_head[fl][sl] = b->next;
  SHMVAL__CRASH_POINT();
  if (hs(seg)->free_head[fl][sl] == 0) {
    hs(seg)->sl_bitmap[fl] &= ~(1u << sl);
    if (hs(seg)->sl_bitmap[fl] == 0)
      hs(seg)->fl_bitmap &= ~(1u << fl);
  }
}

/* Write the boundary tag of the free block [off, off+size). */
static void set_footer(shmval__seg *seg, uint64_t off, uint64_t size) {
  set_word(seg, off + size - 8, size);
}

/* Whether @p off may start a block: in the heap and aligned. */
static bool blk_off_ok(const shmval__seg *seg, uint64_t off) {
  return off >= seg->heap_start && off < seg->heap_end && (off & (BLK_MIN - 1)) == 0;
}

/* Whether the block at @p off is the heap's own state block (see shmval__heap_state). */
static bool is_state(uint64_t off) { return off == SHMVAL__HEAP_STATE_BLK; }

/* Whether the block at @p off with size word @p w is the state block, allocated, of its size. */
static bool state_ok(uint64_t off, uint64_t w) {
  return is_state(off) && (w & SHMVAL__BLK_FREE) == 0 &&
         (w & ~SHMVAL__BLK_FLAGS) == SHMVAL__HEAP_STATE_SIZE;
}

/* Whether [off, off+size) is a plausible block. */
static bool blk_ok(const shmval__seg *seg, uint64_t off, uint64_t size) {
  return blk_off_ok(seg, off) && size >= BLK_MIN && (size & (BLK_MIN - 1)) == 0 &&
         size <= seg->heap_end - off;
}

/* Whether the list head of the class of a @p size-byte free block may be followed. */
static bool head_ok(const shmval__seg *seg, uint64_t size) {
  unsigned fl, sl;
  size_class(size / BLK_MIN, &fl, &sl);
  if (fl >= SHMVAL__FL_COUNT)
    return false;
  uint64_t head = hs(seg)->free_head[fl][sl];
  return head == 0 || blk_off_ok(seg, head);
}

/*
 * Whether the free block [off, off+size), already checked by blk_ok(), can be
 * taken off its list: its links and its list's head stay in the heap. Checked
 * before a change starts, so that a damaged list fails it cleanly.
 */
static bool links_ok(const shmval__seg *seg, uint64_t off, uint64_t size) {
  const shmval__free_blk *b = (const shmval__free_blk *)(const void *)((const char *)seg + off);
  return (b->next == 0 || blk_off_ok(seg, b->next)) && (b->prev == 0 || blk_off_ok(seg, b->prev)) &&
         head_ok(seg, size);
}

/* ------------------------------------------------------------------------ */
/* Repair after a holder of the heap lock died. */

/* Append the free run [start, start+size) rebuilt by heap_rebuild(). */
static void rebuild_free_run(shmval__seg *seg, uint64_t start, uint64_t size) {
  set_word(seg, start, size | SHMVAL__BLK_FREE); /* a free block follows no free one */
  set_footer(seg, start, size);
  list_insert(seg, start, size);
}

/* Rebuild every derived field from a walk of the block chain. */
static int heap_rebuild(shmval__seg *seg) {
  uint64_t off, run_start = 0, run_size = 0, used = 0, blocks = 0;
  bool state = false;
  for (off = seg->heap_start; off < seg->heap_end;) {
    uint64_t w = *word_at(seg, off), size = w & ~SHMVAL__BLK_FLAGS;
    if (!blk_ok(seg, off, size))
      return SHMVAL_ECORRUPT;
    state |= state_ok(off, w);
    off += size;
  }
  /* The lists are rebuilt in the state block: it must be one, where it belongs. */
  if (off != seg->heap_end || !state)
    return SHMVAL_ECORRUPT;
  hs(seg)->fl_bitmap = 0;
  memset(hs(seg)->sl_bitmap, 0, sizeof hs(seg)->sl_bitmap);
  memset(hs(seg)->free_head, 0, sizeof hs(seg)->free_head);
  for (off = seg->heap_start; off < seg->heap_end;) {
    uint64_t w = *word_at(seg, off), size = w & ~SHMVAL__BLK_FLAGS;
    if (w & SHMVAL__BLK_FREE) {
      /* Adjacent free blocks (a merge cut short) become one. */
      if (run_size == 0)
        run_start = off;
      run_size += size;
    } else {
      if (run_size != 0)
        rebuild_free_run(seg, run_start, run_size);
      set_word(seg, off, size | (run_size != 0 ? SHMVAL__BLK_PREV_FREE : 0));
      run_size = 0;
      if (!is_state(off)) { /* the state block is the heap's own: not counted */
        used += size;
        blocks++;
      }
    }
    off += size;
  }
  if (run_size != 0)
    rebuild_free_run(seg, run_start, run_size);
  seg->end_prev_free = run_size != 0;
  seg->used = used;
  seg->blocks = blocks;
  return 0;
}

static int free_locked(shmval__seg *seg, uint64_t off, uint64_t *journal);

/*
 * Note the operation on the block at @p off that the heap lock's holder
 * starts, and its journal word, before the first store that changes the heap
 * (the fence keeps the compiler and the processor from moving those first).
 */
static void op_begin(shmval__seg *seg, uint64_t off, uint64_t op, uint64_t *journal) {
  __atomic_store_n(&seg->heap_op_j, shmval__journal_off(seg, journal), __ATOMIC_RELAXED);
  __atomic_store_n(&seg->heap_op, off | op, __ATOMIC_RELEASE);
  __atomic_thread_fence(__ATOMIC_RELEASE);
}

/* After the operation's last store. */
static void op_end(shmval__seg *seg) { __atomic_store_n(&seg->heap_op, 0, __ATOMIC_RELEASE); }

/*
 * After a rebuild: finish the operation the dead holder was in. Its block,
 * still allocated, is freed either way: an allocation never reached its
 * caller, and a free had been decided. A journal still naming the block is
 * cleared as it becomes free, so that nobody frees it twice.
 */
static int finish_op(shmval__seg *seg) {
  uint64_t op = __atomic_load_n(&seg->heap_op, __ATOMIC_ACQUIRE), size;
  if (op == 0)
    return 0;
  uint64_t off = op & ~SHMVAL__BLK_FLAGS, *j = shmval__journal_at(seg, seg->heap_op_j);
  if (j != NULL && (__atomic_load_n(j, __ATOMIC_ACQUIRE) & ~SHMVAL__J_STAGE) != off)
    j = NULL;
  int rc = 0;
  if (shmval__heap_used_block(seg, off, &size))
    rc = free_locked(seg, off, j);
  op_end(seg);
  return rc;
}

/* What the heap lock's next holder does after a death: rebuild, then settle the operation. */
static int heap_repair(void *seg) { return heap_rebuild(seg) != 0 || finish_op(seg) != 0; }

int shmval__heap_lock(shmval__seg *seg) {
  return shmval__robust_lock(&seg->heap_lock, heap_repair, seg);
}

void shmval__heap_unlock(shmval__seg *seg) { pthread_mutex_unlock(&seg->heap_lock); }

/* ------------------------------------------------------------------------ */

/*
 * Lay out a new heap [start, end): a free block up to the state block, the
 * state block (allocated, the heap's own), and a free block after it if the
 * heap goes on. The state block follows a free block.
 */
static void lay_out(shmval__seg *seg, uint64_t start, uint64_t end) {
  uint64_t blk = SHMVAL__HEAP_STATE_BLK, after = SHMVAL__HEAP_STATE_END;
  set_word(seg, start, (blk - start) | SHMVAL__BLK_FREE);
  set_footer(seg, start, blk - start);
  set_word(seg, blk, SHMVAL__HEAP_STATE_SIZE | SHMVAL__BLK_PREV_FREE);
  list_insert(seg, start, blk - start);
  if (end > after) {
    set_word(seg, after, (end - after) | SHMVAL__BLK_FREE);
    set_footer(seg, after, end - after);
    list_insert(seg, after, end - after);
  }
  seg->end_prev_free = end > after;
}

int shmval__seg_init(shmval__seg *seg, size_t size, size_t max_size, uint32_t flags,
                     uint64_t first) {
  uint64_t start = align_up(sizeof(shmval__seg), BLK_MIN);
  uint64_t end = (uint64_t)size & ~(BLK_MIN - 1);
  /* The header ends before the state block, and the heap holds it. */
  _Static_assert(sizeof(shmval__seg) + SHMVAL__BLOCK_ALIGN <= SHMVAL__HEAP_STATE_BLK,
                 "the segment header overlaps the heap's state block");
  if (end < SHMVAL__HEAP_STATE_END || max_size < size || max_size - start > HEAP_MAX)
    return SHMVAL_EINVAL;
  first = align_up(first, BLK_MIN);
  if (first >= BLK_MIN && first < end - start)
    end = start + first;
  if (end < SHMVAL__HEAP_STATE_END)
    end = SHMVAL__HEAP_STATE_END;
  /* Everything but the magic, which a named segment's creator has set. */
  memset((char *)seg + sizeof seg->magic, 0, sizeof *seg - sizeof seg->magic);
  seg->version = SHMVAL__LAYOUT_VERSION;
  seg->hdr_size = (uint32_t)sizeof *seg;
  seg->abi = shmval__abi_fingerprint();
  seg->size = size;
  seg->max_size = max_size;
  seg->heap_start = start;
  seg->heap_end = end;
  seg->flags = flags;
  int rc = shmval__mutex_init(&seg->heap_lock);
  if (rc != 0)
    return rc;
  lay_out(seg, start, end);
  /* A named segment's creator adds its tables first, then publishes. */
  if (!(flags & SHMVAL__SEG_NAMED))
    shmval__seg_publish(seg);
  return 0;
}

void shmval__seg_publish(shmval__seg *seg) {
  /* The magic goes last: a reader that sees it sees everything before it. */
  atomic_store_explicit(&seg->magic, SHMVAL__SEG_MAGIC, memory_order_release);
}

static int walk(shmval__seg *seg, int (*cb)(void *ctx, uint64_t off, uint64_t size), void *ctx) {
  int rc = 0;
  for (uint64_t off = seg->heap_start; rc == 0 && off < seg->heap_end;) {
    uint64_t w = *word_at(seg, off), size = w & ~SHMVAL__BLK_FLAGS;
    if (!blk_ok(seg, off, size)) {
      rc = SHMVAL_ECORRUPT;
      break;
    }
    if (!(w & SHMVAL__BLK_FREE) && !is_state(off))
      rc = cb(ctx, off, size);
    off += size;
  }
  return rc;
}

int shmval__heap_walk(shmval__seg *seg, int (*cb)(void *ctx, uint64_t off, uint64_t size),
                      void *ctx) {
  int rc = shmval__heap_lock(seg);
  if (rc != 0)
    return rc;
  rc = walk(seg, cb, ctx);
  shmval__heap_unlock(seg);
  return rc;
}

int shmval__heap_walk_unlocked(shmval__seg *seg, int (*cb)(void *ctx, uint64_t off, uint64_t size),
                               void *ctx) {
  return walk(seg, cb, ctx);
}

/* The first free block in a class at or above (fl, sl), or 0. */
static uint64_t find_free(const shmval__seg *seg, unsigned fl, unsigned sl) {
  /* Only the bits of real classes count: the bitmaps come from shared memory. */
  const uint32_t sl_mask = (1u << SHMVAL__SL_COUNT) - 1u;
  uint32_t sl_map = hs(seg)->sl_bitmap[fl] & (~0u << sl) & sl_mask;
  if (sl_map == 0) {
    uint32_t fl_map = fl + 1 < SHMVAL__FL_COUNT ? hs(seg)->fl_bitmap & (~0u << (fl + 1)) : 0;
    if (fl_map == 0)
      return 0;
    fl = (unsigned)__builtin_ctz(fl_map);
    sl_map = hs(seg)->sl_bitmap[fl] & sl_mask;
    if (sl_map == 0)
      return 0;
  }
  return hs(seg)->free_head[fl][__builtin_ctz(sl_map)];
}

/*
 * The rounded-up search skips blocks in the request's own class that might
 * fit (a dedicated segment's only block, say): look at a few of them.
 */
static uint64_t find_in_own_class(const shmval__seg *seg, uint64_t size) {
  unsigned fl, sl, scanned = 0;
  size_class(size / BLK_MIN, &fl, &sl);
  if (fl >= SHMVAL__FL_COUNT)
    return 0;
  for (uint64_t off = hs(seg)->free_head[fl][sl]; off != 0 && scanned < 16; scanned++) {
    if (!blk_off_ok(seg, off))
      return 0;
    const shmval__free_blk *b = (const shmval__free_blk *)((const char *)seg + off);
    if ((b->size_flags & ~SHMVAL__BLK_FLAGS) >= size)
      return off;
    off = b->next;
  }
  return 0;
}

/* Whether blocks of @p a and @p b bytes are in the same size class (the same free list). */
static bool same_class(uint64_t a, uint64_t b) {
  unsigned fa, sa, fb, sb;
  size_class(a / BLK_MIN, &fa, &sa);
  size_class(b / BLK_MIN, &fb, &sb);
  return fa == fb && sa == sb;
}

/*
 * Take @p size bytes from the free block at @p off: all of it, or its back
 * end, so that the rest stays a free block where it was and, while its size
 * class holds, in its list with its links untouched (a run of allocations
 * from one big block then changes no list). The allocated block's offset.
 *
 * The rest shrinks in one store, after the new block's header and the rest's
 * boundary tag are written (inside the free block, where nothing reads them),
 * so the chain is whole at every step. The crash journal @p journal (or NULL)
 * is set in the store right after the one that makes the block allocated:
 * not before, or a death in between would leave it naming a block that is
 * still free, which someone else may then allocate and a reclaimer would
 * free under them.
 */
static uint64_t carve(shmval__seg *seg, uint64_t off, uint64_t size, uint64_t *journal) {
  uint64_t w = *word_at(seg, off), bsize = w & ~SHMVAL__BLK_FLAGS, rest = bsize - size;
  uint64_t at = off, end = off + bsize;
  if (rest >= BLK_MIN) {
    bool move = !same_class(bsize, rest);
    at = off + rest;
    if (move)
      list_remove(seg, off, bsize);
    SHMVAL__CRASH_POINT();
    set_word(seg, at, size | SHMVAL__BLK_PREV_FREE);
    SHMVAL__CRASH_POINT();
    set_footer(seg, off, rest);
    SHMVAL__CRASH_POINT();
    set_word(seg, off, rest | (w & SHMVAL__BLK_FLAGS));
    SHMVAL__CRASH_POINT();
    shmval__journal_set(journal, at | SHMVAL__J_CREATE);
    SHMVAL__CRASH_POINT();
    if (move)
      list_insert(seg, off, rest);
  } else {
    size = bsize;
    list_remove(seg, off, bsize);
    SHMVAL__CRASH_POINT();
    set_word(seg, off, size | (w & SHMVAL__BLK_PREV_FREE));
    SHMVAL__CRASH_POINT();
    shmval__journal_set(journal, off | SHMVAL__J_CREATE);
  }
  SHMVAL__CRASH_POINT();
  /* The block after the new one no longer follows a free block. */
  if (end < seg->heap_end)
    set_word(seg, end, *word_at(seg, end) & ~SHMVAL__BLK_PREV_FREE);
  else
    seg->end_prev_free = 0;
  SHMVAL__CRASH_POINT();
  seg->used += size;
  SHMVAL__CRASH_POINT();
  seg->blocks++;
  return at;
}

/*
 * Whether a split block gives its front instead: only while a named
 * segment's creator lays out its own tables, before the segment is
 * published, so that they sit right after the header, in the first page,
 * which every opener reads and writes anyway (see shmval__heap_state).
 */
static bool place_front(const shmval__seg *seg) {
  return atomic_load_explicit(&((shmval__seg *)(uintptr_t)seg)->magic, memory_order_relaxed) !=
         SHMVAL__SEG_MAGIC;
}

/*
 * Take @p size bytes from the front of the free block at @p off, which is at
 * least BLK_MIN bytes bigger: only before the segment is published, when no
 * other process can see the heap, so the order of the steps is free.
 */
static uint64_t carve_front(shmval__seg *seg, uint64_t off, uint64_t size, uint64_t *journal) {
  uint64_t w = *word_at(seg, off), rest = (w & ~SHMVAL__BLK_FLAGS) - size;
  list_remove(seg, off, size + rest);
  set_word(seg, off, size | (w & SHMVAL__BLK_PREV_FREE));
  set_word(seg, off + size, rest | SHMVAL__BLK_FREE);
  set_footer(seg, off + size, rest);
  list_insert(seg, off + size, rest);
  shmval__journal_set(journal, off | SHMVAL__J_CREATE);
  seg->used += size;
  seg->blocks++;
  return off;
}

/*
 * The size of the free block that ends at @p off, checked from its boundary
 * tag back to its header and its links; 0 if it does not check out.
 */
static uint64_t free_before(shmval__seg *seg, uint64_t off) {
  uint64_t psize = off > seg->heap_start ? *word_at(seg, off - 8) : 0;
  if (psize == 0 || psize > off - seg->heap_start)
    return 0;
  uint64_t prev = off - psize;
  if (!blk_ok(seg, prev, psize) || is_state(prev) ||
      *word_at(seg, prev) != (psize | SHMVAL__BLK_FREE) || !links_ok(seg, prev, psize))
    return 0;
  return psize;
}

/* ------------------------------------------------------------------------ */
/* Growth. */

/*
 * Reserve the backing of the committed space [from, to): the file's blocks
 * of a named segment (through this process's descriptor for it), the pages
 * of an anonymous one.
 */
static int commit(shmval__seg *seg, uint64_t from, uint64_t to) {
  if (seg->flags & SHMVAL__SEG_ANON)
    return shmval__prim_populate((char *)seg + from, (size_t)(to - from));
  int fd = shmval__attach_fd(seg);
  return fd < 0 ? SHMVAL_ENOMEM : shmval__prim_reserve_range(fd, from, to - from);
}

/*
 * Make the committed space [heap_end, new_end) the heap's last block, merged
 * with the free block of @p tsize bytes that ends the heap now (0: none).
 * The new block is written outside the chain first; one store of heap_end
 * makes it part of it; the merge after that is a free's. A death in between
 * leaves two adjacent free blocks, which the rebuild merges.
 */
static uint64_t extend(shmval__seg *seg, uint64_t new_end, uint64_t tsize) {
  uint64_t end = seg->heap_end, delta = new_end - end, blk = end - tsize;
  set_word(seg, end, delta | SHMVAL__BLK_FREE);
  SHMVAL__CRASH_POINT();
  set_footer(seg, end, delta);
  SHMVAL__CRASH_POINT();
  atomic_store_explicit(&seg->heap_end, new_end, memory_order_release);
  SHMVAL__CRASH_POINT();
  if (tsize != 0) {
    list_remove(seg, blk, tsize);
    SHMVAL__CRASH_POINT();
    set_word(seg, blk, (tsize + delta) | SHMVAL__BLK_FREE);
    SHMVAL__CRASH_POINT();
    set_footer(seg, blk, tsize + delta);
  }
  list_insert(seg, blk, tsize + delta);
  seg->end_prev_free = 1;
  return blk;
}

/* The committed size a grow to hold a heap ending at @p want aims for. */
static uint64_t grow_target(const shmval__seg *seg, uint64_t size, uint64_t want) {
  uint64_t ps = shmval__prim_page_size(), step = size < GROW_STEP_MAX ? size : GROW_STEP_MAX;
  uint64_t target = align_up(want, ps);
  if (target < size + step)
    target = size + step; /* double: a logarithmic number of grows */
  return target < seg->max_size ? target : seg->max_size;
}

/*
 * With the heap lock held, when no free block holds @p need bytes: grow the
 * heap until its last block, free, does, committing more of the segment
 * first if needed; that block's offset in *blk. Reserve, then publish the
 * committed size, then extend: a death after the reservation leaves space
 * that the next grower reserves again (a no-op) and publishes; a death after
 * the publication leaves committed space beyond heap_end, which the next
 * grower extends into. SHMVAL_ENOMEM when the segment is at its maximum
 * size; what the reservation says when the system is out of space.
 */
static int grow(shmval__seg *seg, uint64_t need, uint64_t *blk) {
  uint64_t size = seg->size, end = seg->heap_end, tsize = 0;
  /* Checked at open, and only this lock's holders change them: damage is refused, not followed. */
  if (!shmval__seg_sizes_ok(seg) || (seg->end_prev_free && (tsize = free_before(seg, end)) == 0))
    return SHMVAL_ECORRUPT;
  if (tsize >= need) { /* a fitting last block that the class search passed over */
    *blk = end - tsize;
    return 0;
  }
  uint64_t want = end + (need - tsize);
  if (want > seg->max_size)
    return SHMVAL_ENOMEM;
  if (want > size) {
    uint64_t target = grow_target(seg, size, want),
             least = align_up(want, shmval__prim_page_size());
    int rc = commit(seg, size, target);
    /* Short of space for a whole step, the request alone may still fit. */
    if ((rc == SHMVAL_ENOSPC || rc == SHMVAL_ENOMEM) && least < target)
      rc = commit(seg, size, (target = least));
    if (rc != 0)
      return rc;
    SHMVAL__CRASH_POINT();
    atomic_store_explicit(&seg->size, target, memory_order_release);
    SHMVAL__CRASH_POINT();
    size = target;
  }
  uint64_t new_end = size & ~(BLK_MIN - 1);
  if (!head_ok(seg, tsize + new_end - end))
    return SHMVAL_ECORRUPT;
  *blk = extend(seg, new_end, tsize);
  return 0;
}

int shmval__heap_alloc(shmval__seg *seg, size_t bytes, uint64_t *off, uint64_t *journal) {
  if (bytes == 0 || bytes > HEAP_MAX)
    return bytes == 0 ? SHMVAL_EINVAL : SHMVAL_ENOMEM;
  uint64_t size = align_up(bytes, BLK_MIN);
  unsigned fl, sl;
  search_class(size / BLK_MIN, &fl, &sl);
  int rc = shmval__heap_lock(seg);
  if (rc != 0)
    return rc;
  uint64_t b = fl < SHMVAL__FL_COUNT ? find_free(seg, fl, sl) : 0;
  if (b == 0)
    b = find_in_own_class(seg, size);
  if (b == 0 && (rc = grow(seg, size, &b)) != 0) {
    shmval__heap_unlock(seg);
    return rc;
  }
  uint64_t w = blk_off_ok(seg, b) ? *word_at(seg, b) : 0, bsize = w & ~SHMVAL__BLK_FLAGS;
  uint64_t rest = bsize >= size ? bsize - size : 0;
  /* The state block is never free: a chain or a list that says so is damaged. */
  if (!(w & SHMVAL__BLK_FREE) || is_state(b) || !blk_ok(seg, b, bsize) || bsize < size ||
      !links_ok(seg, b, bsize) ||
      (rest >= BLK_MIN && !same_class(bsize, rest) && !head_ok(seg, rest))) {
    shmval__heap_unlock(seg);
    return SHMVAL_ECORRUPT;
  }
  /* carve() takes the back end of a block that is split. */
  bool front = rest >= BLK_MIN && place_front(seg);
  op_begin(seg, rest >= BLK_MIN && !front ? b + rest : b, SHMVAL__HOP_ALLOC, journal);
  *off = front ? carve_front(seg, b, size, journal) : carve(seg, b, size, journal);
  op_end(seg);
  shmval__heap_unlock(seg);
  return 0;
}

/*
 * Give the interior pages of a big block of an anonymous segment back before
 * it is freed. A named segment's pages stay: its committed space is reserved
 * in /dev/shm, and a page given back would have to be found again when the
 * block is reused, where a full /dev/shm is SIGBUS in whoever writes it.
 */
static void discard_interior(shmval__seg *seg, uint64_t off, uint64_t size) {
  if (size < DISCARD_MIN || !(seg->flags & SHMVAL__SEG_ANON))
    return;
  uint64_t ps = shmval__prim_page_size();
  uint64_t base = (uint64_t)(uintptr_t)seg;
  uint64_t lo = align_up(base + off + BLK_MIN, ps);
  uint64_t hi = (base + off + size - 8) & ~(ps - 1);
  if (hi > lo)
    shmval__prim_discard((void *)(uintptr_t)lo, hi - lo);
}

/*
 * Whether the block at @p off, about to be freed, and the free neighbours it
 * will merge with check out; their sizes in *nsize and *psize (0: no merge).
 * Nothing is changed before all of this holds.
 */
static bool free_ok(shmval__seg *seg, uint64_t off, uint64_t w, uint64_t *nsize, uint64_t *psize) {
  uint64_t size = w & ~SHMVAL__BLK_FLAGS, next = off + size;
  *nsize = *psize = 0;
  if ((w & SHMVAL__BLK_FREE) || !blk_ok(seg, off, size))
    return false;
  if (next < seg->heap_end && (*word_at(seg, next) & SHMVAL__BLK_FREE)) {
    if (is_state(next))
      return false;
    *nsize = *word_at(seg, next) & ~SHMVAL__BLK_FLAGS;
    if (!blk_ok(seg, next, *nsize) || !links_ok(seg, next, *nsize))
      return false;
  }
  if ((w & SHMVAL__BLK_PREV_FREE) && (*psize = free_before(seg, off)) == 0)
    return false;
  return head_ok(seg, *psize + size + *nsize);
}

/*
 * Free the allocated block at @p off with the heap lock held, clearing
 * @p journal (when given) just before the block becomes free.
 */
static int free_locked(shmval__seg *seg, uint64_t off, uint64_t *journal) {
  uint64_t w = *word_at(seg, off), nsize, psize;
  if (!free_ok(seg, off, w, &nsize, &psize))
    return SHMVAL_ECORRUPT;
  uint64_t size = w & ~SHMVAL__BLK_FLAGS;
  if (nsize != 0) {
    list_remove(seg, off + size, nsize);
    SHMVAL__CRASH_POINT();
  }
  uint64_t start = off - psize, total = psize + size + nsize;
  if (psize != 0) {
    list_remove(seg, start, psize);
    SHMVAL__CRASH_POINT();
  }
  /*
   * One store makes the merged block; the rest is derived data. The journal is
   * cleared just before it: a freed block may be reused at once, and a journal
   * pointing at someone else's block would have it freed under them. (A death
   * in between is the heap operation's to finish: see finish_op().)
   */
  shmval__journal_set(journal, 0);
  SHMVAL__CRASH_POINT();
  set_word(seg, start, total | SHMVAL__BLK_FREE);
  SHMVAL__CRASH_POINT();
  set_footer(seg, start, total);
  list_insert(seg, start, total);
  if (start + total < seg->heap_end)
    set_word(seg, start + total, *word_at(seg, start + total) | SHMVAL__BLK_PREV_FREE);
  else
    seg->end_prev_free = 1;
  SHMVAL__CRASH_POINT();
  seg->used -= size;
  SHMVAL__CRASH_POINT();
  seg->blocks--;
  return 0;
}

int shmval__heap_free(shmval__seg *seg, uint64_t off, uint64_t *journal) {
  if (!blk_off_ok(seg, off) || is_state(off))
    return SHMVAL_ECORRUPT;
  /*
   * The block is still ours until it is on a free list, so its pages can be
   * dropped without the lock (no other process may be using them).
   */
  uint64_t size = shmval__blk_size(seg, off);
  if (!blk_ok(seg, off, size))
    return SHMVAL_ECORRUPT;
  discard_interior(seg, off, size);
  int rc = shmval__heap_lock(seg);
  if (rc != 0)
    return rc;
  op_begin(seg, off, SHMVAL__HOP_FREE, journal);
  rc = free_locked(seg, off, journal);
  op_end(seg);
  shmval__heap_unlock(seg);
  return rc;
}

int shmval__heap_free_journaled(shmval__seg *seg, uint64_t *journal) {
  uint64_t size;
  int rc = shmval__heap_lock(seg);
  if (rc != 0)
    return rc;
  uint64_t off = __atomic_load_n(journal, __ATOMIC_ACQUIRE) & ~SHMVAL__J_STAGE;
  if (off != 0 && shmval__heap_used_block(seg, off, &size)) {
    op_begin(seg, off, SHMVAL__HOP_FREE, journal);
    rc = free_locked(seg, off, journal);
    op_end(seg);
  } else {
    shmval__journal_set(journal, 0);
  }
  shmval__heap_unlock(seg);
  return rc;
}

bool shmval__heap_used_block(shmval__seg *seg, uint64_t off, uint64_t *size) {
  for (uint64_t at = seg->heap_start; at < seg->heap_end && at <= off;) {
    uint64_t w = *word_at(seg, at), sz = w & ~SHMVAL__BLK_FLAGS;
    if (!blk_ok(seg, at, sz))
      return false;
    if (at == off) {
      *size = sz;
      return !(w & SHMVAL__BLK_FREE) && !is_state(off);
    }
    at += sz;
  }
  return false;
}

/* ------------------------------------------------------------------------ */
/* Verification. */

/* Walk the block chain; fills @p st and checks flags, tags and counters. */
static int check_chain(shmval__seg *seg, shmval__heap_stat *st, shmval__problem *pb) {
  bool prev_free = false, state = false;
  uint64_t off;
  for (off = seg->heap_start; off < seg->heap_end;) {
    uint64_t w = *word_at(seg, off), size = w & ~SHMVAL__BLK_FLAGS;
    if (!blk_ok(seg, off, size))
      return shmval__bad(pb, off, "a block's size word leaves the heap or is misaligned");
    state |= state_ok(off, w);
    if ((w & (SHMVAL__BLK_FLAGS & ~UINT64_C(3))) != 0)
      return shmval__bad(pb, off, "a block's size word has unknown flags");
    if (((w & SHMVAL__BLK_PREV_FREE) != 0) != prev_free)
      return shmval__bad(pb, off, "a block's PREV_FREE flag disagrees with the block before it");
    if (w & SHMVAL__BLK_FREE) {
      if (prev_free)
        return shmval__bad(pb, off, "two free blocks are adjacent (a merge was missed)");
      if (*word_at(seg, off + size - 8) != size)
        return shmval__bad(pb, off, "a free block's boundary tag differs from its size");
      st->free += size;
      st->free_blocks++;
      if (size > st->largest_free)
        st->largest_free = size;
    } else if (!is_state(off)) {
      st->used += size;
      st->blocks++;
    }
    prev_free = (w & SHMVAL__BLK_FREE) != 0;
    off += size;
  }
  st->total = seg->heap_end - seg->heap_start - SHMVAL__HEAP_STATE_SIZE;
  if (off != seg->heap_end)
    return shmval__bad(pb, off, "the block chain overruns the heap's end");
  if (!state)
    return shmval__bad(pb, SHMVAL__HEAP_STATE_BLK, "the heap's state block is not in its place");
  if (seg->end_prev_free != (prev_free ? 1u : 0u))
    return shmval__bad(pb, off, "the heap's end flag disagrees with its last block");
  if (st->used != seg->used || st->blocks != seg->blocks)
    return shmval__bad(pb, 0, "the header's used-byte or block counters disagree with the heap");
  return 0;
}

/* Check one free list; adds its length to *count. */
static int check_list(shmval__seg *seg, unsigned fl, unsigned sl, uint64_t limit, uint64_t *count,
                      shmval__problem *pb) {
  uint64_t prev = 0, off = hs(seg)->free_head[fl][sl];
  bool bit = (hs(seg)->sl_bitmap[fl] >> sl) & 1u;
  if (bit != (off != 0))
    return shmval__bad(pb, 0, "a free-list bitmap bit disagrees with its list");
  while (off != 0) {
    if (++*count > limit)
      return shmval__bad(pb, off, "the free lists hold more blocks than the heap (a cycle?)");
    if (!blk_off_ok(seg, off))
      return shmval__bad(pb, off, "a free-list link leaves the heap");
    shmval__free_blk *b = fblk(seg, off);
    uint64_t size = b->size_flags & ~SHMVAL__BLK_FLAGS;
    unsigned f, s;
    if (!(b->size_flags & SHMVAL__BLK_FREE) || !blk_ok(seg, off, size))
      return shmval__bad(pb, off, "a free list holds a block that is not free");
    if (b->prev != prev)
      return shmval__bad(pb, off, "a free-list back link is wrong");
    size_class(size / BLK_MIN, &f, &s);
    if (f != fl || s != sl)
      return shmval__bad(pb, off, "a free block is on the list of another size class");
    prev = off;
    off = b->next;
  }
  return 0;
}

int shmval__heap_verify(shmval__seg *seg, shmval__heap_stat *st, shmval__problem *pb) {
  memset(st, 0, sizeof *st);
  if (!shmval__seg_sizes_ok(seg))
    return shmval__bad(pb, 0, "the heap's end, committed and maximum sizes are out of order");
  int rc = check_chain(seg, st, pb);
  uint64_t listed = 0;
  for (unsigned fl = 0; rc == 0 && fl < SHMVAL__FL_COUNT; fl++) {
    if (((hs(seg)->fl_bitmap >> fl) & 1u) != (hs(seg)->sl_bitmap[fl] != 0))
      rc = shmval__bad(pb, 0, "a first-level bitmap bit disagrees with its second level");
    for (unsigned sl = 0; rc == 0 && sl < SHMVAL__SL_COUNT; sl++)
      rc = check_list(seg, fl, sl, st->free_blocks, &listed, pb);
  }
  if (rc == 0 && listed != st->free_blocks)
    rc = shmval__bad(pb, 0, "a free block is on no free list");
  return rc;
}

int shmval__heap_check(shmval__seg *seg, shmval__heap_stat *st) {
  int rc = shmval__heap_lock(seg);
  if (rc != 0)
    return rc;
  rc = shmval__heap_verify(seg, st, NULL);
  shmval__heap_unlock(seg);
  return rc;
}
