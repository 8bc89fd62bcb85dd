/*
 * The default arena: the process-wide set of anonymous shared segments that
 * objects made without a segment come from (Python's heap).
 *
 * The table of segments is process-local and append-only. Its entries are
 * published with a release store of the count, so allocation reads it without
 * a lock; the mutex only serialises growth.
 *
 * A fork child inherits the mappings, so it can use and destroy every object
 * created before the fork. Like Python's heap, it allocates its own objects
 * only in segments it maps itself: objects a child leaves behind vanish with
 * it instead of leaking into its parent's segments.
 *
 * An object that grows in place (a dict, a list) gets a growable segment of
 * its own: one MAP_SHARED|MAP_ANONYMOUS|MAP_NORESERVE mapping of its maximum
 * size, made when the object is created, before the children that share it
 * are forked. The kernel fixes an anonymous shared object's size when it is
 * mapped and children inherit the mapping itself, so every process that
 * shares the object has all of it mapped at the same place: the allocator
 * commits pages as it extends the heap (shmval__prim_populate(), so running
 * out of memory is an error of the allocation, not a fault later) and
 * nobody remaps. Address space is all the unused rest costs.
 */
#include "arena.h"
#include "heap.h"
#include "prim.h"

#include <string.h>

#define MAX_SEGS 16384u
#define FIRST_SEG_SIZE ((size_t)4 << 20)
#define MAX_SEG_SIZE ((size_t)64 << 20)

typedef struct arena_seg {
  shmval__seg *seg;
  uint64_t room; /* heap bytes: no bigger block can ever fit; 0: an object's own segment */
} arena_seg;

static struct {
  pthread_mutex_t grow; /* process-local; serialises adding segments */
  _Atomic size_t n;
  size_t first_own;    /* segments below this were inherited through fork */
  _Atomic size_t hint; /* the segment that served the last allocation */
  size_t next_size;
  arena_seg segs[MAX_SEGS];
} arena = {.grow = PTHREAD_MUTEX_INITIALIZER, .next_size = FIRST_SEG_SIZE};

static pthread_once_t arena_once = PTHREAD_ONCE_INIT;

/* A fork in another thread must not leave the child's mutex locked. */
static void fork_prepare(void) { pthread_mutex_lock(&arena.grow); }
static void fork_parent(void) { pthread_mutex_unlock(&arena.grow); }
static void fork_child(void) {
  arena.first_own = atomic_load_explicit(&arena.n, memory_order_relaxed);
  arena.next_size = FIRST_SEG_SIZE;
  pthread_mutex_unlock(&arena.grow);
}
static void arena_init(void) { (void)pthread_atfork(fork_prepare, fork_parent, fork_child); }

static int try_seg(size_t i, size_t bytes, shmval__seg **seg, uint64_t *off) {
  const arena_seg *s = &arena.segs[i];
  if (bytes > s->room)
    return SHMVAL_ENOMEM;
  int rc = shmval__heap_alloc(s->seg, bytes, off, NULL);
  if (rc == 0) {
    *seg = s->seg;
    atomic_store_explicit(&arena.hint, i, memory_order_relaxed);
  }
  return rc;
}

/* Try the segments [from, to), newest first. */
static int try_range(size_t from, size_t to, size_t skip, size_t bytes, shmval__seg **seg,
                     uint64_t *off) {
  for (size_t i = to; i-- > from;) {
    if (i == skip)
      continue;
    int rc = try_seg(i, bytes, seg, off);
    /* A full or damaged segment must not stop the others from serving. */
    if (rc == 0)
      return 0;
  }
  return SHMVAL_ENOMEM;
}

/*
 * Map a segment of @p size committed bytes out of @p max_size and list it,
 * as an object's own (@p own: nothing else is allocated in it) or as one of
 * the arena's. Call with grow held.
 */
static int map_seg(size_t size, size_t max_size, bool own, size_t *index) {
  size_t n = atomic_load_explicit(&arena.n, memory_order_relaxed);
  if (n == MAX_SEGS)
    return SHMVAL_ENOMEM;
  void *mem;
  bool sparse = max_size > size;
  int rc = shmval__prim_map_anon(max_size, sparse, &mem);
  if (rc != 0)
    return rc;
  shmval__seg *seg = mem;
  if ((sparse && (rc = shmval__prim_populate(mem, size)) != 0) ||
      (rc = shmval__seg_init(seg, size, max_size, SHMVAL__SEG_ANON, 0)) != 0) {
    shmval__prim_unmap(mem, max_size);
    return rc;
  }
  /* Its biggest free block: before the heap's state block, or after it. */
  uint64_t before = SHMVAL__HEAP_STATE_BLK - seg->heap_start,
           after = seg->heap_end - SHMVAL__HEAP_STATE_END;
  arena.segs[n] = (arena_seg){.seg = seg, .room = own ? 0 : before > after ? before : after};
  atomic_store_explicit(&arena.n, n + 1, memory_order_release);
  *index = n;
  return 0;
}

/* Map and add a segment able to hold a block of @p bytes. Call with grow held. */
static int add_seg(size_t bytes, size_t *index) {
  size_t ps = shmval__prim_page_size();
  /* A block that big goes after the heap's state block. */
  size_t need = (size_t)SHMVAL__HEAP_STATE_END + bytes + SHMVAL__BLOCK_ALIGN;
  size_t size = arena.next_size;
  if (need > size / 2) {
    /* A large object gets a segment of its own, sized to fit. */
    size = (need + ps - 1) & ~(ps - 1);
  } else if (arena.next_size < MAX_SEG_SIZE) {
    arena.next_size *= 2;
  }
  return map_seg(size, size, false, index);
}

/*
 * An object's own segment of this process with the same maximum that holds
 * nothing now (its object was destroyed): it is used again, so that making
 * and destroying dicts in a loop does not map a new maximum each time. The
 * mapping cannot be given back (children forked since may share it). Two
 * threads may both pick it; two objects then share one segment's growth,
 * which is harmless. Call with grow held.
 */
static bool reuse_own(size_t max_size, size_t *index) {
  size_t n = atomic_load_explicit(&arena.n, memory_order_relaxed);
  for (size_t i = arena.first_own; i < n; i++) {
    shmval__seg *seg = arena.segs[i].seg;
    if (arena.segs[i].room == 0 && seg->max_size == max_size &&
        __atomic_load_n(&seg->blocks, __ATOMIC_RELAXED) == 0) {
      *index = i;
      return true;
    }
  }
  return false;
}

int shmval__arena_add_growable(size_t size, size_t max_size, shmval__seg **seg) {
  size_t ps = shmval__prim_page_size(), idx;
  if (size == 0 || max_size < size || max_size > ((size_t)1 << 40))
    return SHMVAL_EINVAL;
  size = (size + ps - 1) & ~(ps - 1);
  max_size = (max_size + ps - 1) & ~(ps - 1);
  pthread_once(&arena_once, arena_init);
  pthread_mutex_lock(&arena.grow);
  int rc = reuse_own(max_size, &idx) ? 0 : map_seg(size, max_size, true, &idx);
  pthread_mutex_unlock(&arena.grow);
  if (rc == 0)
    *seg = arena.segs[idx].seg;
  return rc;
}

int shmval__arena_alloc(size_t bytes, shmval__seg **seg, uint64_t *off) {
  pthread_once(&arena_once, arena_init);
  size_t n = atomic_load_explicit(&arena.n, memory_order_acquire);
  size_t hint = atomic_load_explicit(&arena.hint, memory_order_relaxed);
  size_t first = arena.first_own;
  if (hint >= first && hint < n && try_seg(hint, bytes, seg, off) == 0)
    return 0;
  if (try_range(first, n, hint, bytes, seg, off) == 0)
    return 0;
  pthread_mutex_lock(&arena.grow);
  /* Another thread may have added segments while this one searched. */
  size_t now = atomic_load_explicit(&arena.n, memory_order_acquire), idx;
  int rc = try_range(n, now, SIZE_MAX, bytes, seg, off);
  if (rc != 0) {
    rc = add_seg(bytes, &idx);
    if (rc == 0)
      rc = try_seg(idx, bytes, seg, off);
  }
  pthread_mutex_unlock(&arena.grow);
  return rc;
}

int shm_arena_stat(shm_arena_info *info) {
  if (info == NULL)
    return SHMVAL_EINVAL;
  memset(info, 0, sizeof *info);
  size_t n = atomic_load_explicit(&arena.n, memory_order_acquire);
  for (size_t i = 0; i < n; i++) {
    shmval__heap_stat st;
    int rc = shmval__heap_check(arena.segs[i].seg, &st);
    if (rc != 0)
      return rc;
    info->segments++;
    info->total += st.total;
    info->used += st.used;
    info->free += st.free;
    info->blocks += st.blocks;
    info->free_blocks += st.free_blocks;
    if (st.largest_free > info->largest_free)
      info->largest_free = st.largest_free;
  }
  return 0;
}

int shmval_arena_stat(shm_arena_info *info) { return shm_arena_stat(info); }
