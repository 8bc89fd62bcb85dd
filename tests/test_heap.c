/*
 * The in-segment allocator, white-box: this test links the library's object
 * files and drives the internal allocator on a segment of its own.
 */
#include "helpers.h"

#include "internal.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#define SEG_SIZE ((size_t)1 << 20)

static shmval__seg *seg;

static int setup(void **state) {
  (void)state;
  void *mem = mmap(NULL, SEG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED)
    return -1;
  seg = mem;
  return shmval__seg_init(seg, SEG_SIZE, SEG_SIZE, SHMVAL__SEG_ANON, 0);
}

static int teardown(void **state) {
  (void)state;
  return munmap(seg, SEG_SIZE);
}

static shmval__heap_stat check(void) {
  shmval__heap_stat st;
  assert_ok(shmval__heap_check(seg, &st));
  assert_int_equal(st.used + st.free, st.total);
  return st;
}

static void test_header(void **state) {
  (void)state;
  assert_int_equal(atomic_load(&seg->magic), SHMVAL__SEG_MAGIC);
  assert_int_equal(seg->version, SHMVAL__LAYOUT_VERSION);
  assert_int_equal(seg->abi, shmval__abi_fingerprint());
  assert_int_equal(seg->heap_start % 64, 0);
  assert_true(seg->heap_start >= sizeof(shmval__seg));
  /* Free space before and after the heap's state block, which is not counted. */
  shmval__heap_stat st = check();
  assert_int_equal(st.free_blocks, 2);
  assert_int_equal(st.blocks, 0);
  assert_int_equal(st.largest_free, seg->heap_end - SHMVAL__HEAP_STATE_END);
  assert_int_equal(st.total, seg->heap_end - seg->heap_start - SHMVAL__HEAP_STATE_SIZE);
  /* Too small to hold a heap, or too large for the size classes. */
  char small[sizeof(shmval__seg) + 64];
  assert_code(
      shmval__seg_init((shmval__seg *)(void *)small, sizeof small - 64, sizeof small - 64, 0, 0),
      SHMVAL_EINVAL);
}

static void test_split_merge(void **state) {
  (void)state;
  uint64_t a, b, c;
  shmval__heap_stat st0 = check();
  assert_ok(shmval__heap_alloc(seg, 100, &a, NULL)); /* rounds to 128 */
  assert_ok(shmval__heap_alloc(seg, 64, &b, NULL));
  assert_ok(shmval__heap_alloc(seg, 1000, &c, NULL));
  assert_int_equal(shmval__blk_size(seg, a), 128);
  assert_int_equal(shmval__blk_size(seg, b), 64);
  /*
   * Each is the back end of the smallest free block that holds it, the one
   * before the heap's state block: they go down from the state block.
   */
  assert_int_equal(a + 128, SHMVAL__HEAP_STATE_BLK);
  assert_int_equal(b + 64, a);
  assert_int_equal(c + 1024, b);
  shmval__heap_stat st = check();
  assert_int_equal(st.blocks, 3);
  assert_int_equal(st.used, 128 + 64 + 1024);
  /* Free the middle, then each neighbour: both merges happen. */
  assert_ok(shmval__heap_free(seg, b, NULL));
  assert_int_equal(check().free_blocks, st0.free_blocks + 1);
  assert_ok(shmval__heap_free(seg, a, NULL));
  assert_int_equal(check().free_blocks, st0.free_blocks + 1);
  assert_ok(shmval__heap_free(seg, c, NULL));
  st = check();
  assert_int_equal(st.free_blocks, st0.free_blocks);
  assert_int_equal(st.used, st0.used);
  /* The space is one block again, and serves the next allocation from its back. */
  assert_ok(shmval__heap_alloc(seg, 64, &b, NULL));
  assert_int_equal(b + 64, SHMVAL__HEAP_STATE_BLK);
  assert_ok(shmval__heap_free(seg, b, NULL));
  /* A block too big for the first page's room comes from after the state block. */
  assert_ok(shmval__heap_alloc(seg, SHMVAL__HEAP_STATE_BLK, &c, NULL));
  assert_int_equal(c + SHMVAL__HEAP_STATE_BLK, seg->heap_end);
  assert_ok(shmval__heap_free(seg, c, NULL));
  /* The state block is the heap's: never a caller's to free. */
  assert_code(shmval__heap_free(seg, SHMVAL__HEAP_STATE_BLK, NULL), SHMVAL_ECORRUPT);
  assert_int_equal(check().free_blocks, st0.free_blocks);
}

static void test_bad_frees(void **state) {
  (void)state;
  uint64_t a;
  assert_ok(shmval__heap_alloc(seg, 64, &a, NULL));
  assert_ok(shmval__heap_free(seg, a, NULL));
  assert_code(shmval__heap_free(seg, a, NULL), SHMVAL_ECORRUPT); /* double free */
  assert_code(shmval__heap_free(seg, a + 8, NULL), SHMVAL_ECORRUPT);
  assert_code(shmval__heap_free(seg, 0, NULL), SHMVAL_ECORRUPT);
  assert_code(shmval__heap_free(seg, seg->heap_end, NULL), SHMVAL_ECORRUPT);
  assert_code(shmval__heap_alloc(seg, 0, &a, NULL), SHMVAL_EINVAL);
  check();
}

static void test_exhaustion(void **state) {
  (void)state;
  uint64_t whole, front, x;
  uint64_t room = seg->heap_end - SHMVAL__HEAP_STATE_END,
           first = SHMVAL__HEAP_STATE_BLK - seg->heap_start;
  assert_code(shmval__heap_alloc(seg, room + 1, &x, NULL), SHMVAL_ENOMEM);
  assert_code(shmval__heap_alloc(seg, (size_t)1 << 50, &x, NULL), SHMVAL_ENOMEM);
  /* Each block is found although its class is below the rounded one. */
  assert_ok(shmval__heap_alloc(seg, room, &whole, NULL));
  assert_ok(shmval__heap_alloc(seg, first, &front, NULL));
  assert_code(shmval__heap_alloc(seg, 64, &x, NULL), SHMVAL_ENOMEM);
  assert_int_equal(check().free_blocks, 0);
  assert_ok(shmval__heap_free(seg, whole, NULL));
  assert_ok(shmval__heap_free(seg, front, NULL));
  assert_int_equal(check().free_blocks, 2);
}

static void test_random_churn(void **state) {
  (void)state;
  enum { SLOTS = 200 };
  uint64_t off[SLOTS] = {0};
  uint64_t r = 12345;
  for (int i = 0; i < 50000; i++) {
    r = r * 6364136223846793005u + 1442695040888963407u;
    int s = (int)((r >> 33) % SLOTS);
    if (off[s] != 0) {
      assert_ok(shmval__heap_free(seg, off[s], NULL));
      off[s] = 0;
    } else {
      int rc = shmval__heap_alloc(seg, 8 + (r >> 40) % 5000, &off[s], NULL);
      if (rc == SHMVAL_ENOMEM)
        off[s] = 0;
      else
        assert_ok(rc);
    }
    if (i % 5000 == 0)
      check();
  }
  for (int s = 0; s < SLOTS; s++)
    if (off[s] != 0)
      assert_ok(shmval__heap_free(seg, off[s], NULL));
  assert_int_equal(check().free_blocks, 2); /* before and after the state block */
}

/* In a child: take the heap lock, run @p damage, die holding the lock. */
static void die_holding_heap_lock(void (*damage)(void)) {
  pid_t pid = fork();
  if (pid == 0) {
    if (pthread_mutex_lock(&seg->heap_lock) != 0)
      _exit(1);
    damage();
    _exit(0);
  }
  assert_int_equal(reap(pid), 0);
}

static uint64_t blk_a, blk_b, blk_c;

static void scribble_derived(void) {
  /* Everything but the block chain is derived: destroy it all. */
  memset(shmval__heap_state_of(seg)->free_head, 0xab, sizeof shmval__heap_state_of(seg)->free_head);
  memset(shmval__heap_state_of(seg)->sl_bitmap, 0xff, sizeof shmval__heap_state_of(seg)->sl_bitmap);
  shmval__heap_state_of(seg)->fl_bitmap = 0x12345678;
  seg->used = 1;
  seg->blocks = 999;
  seg->end_prev_free = 0; /* the last block, after the state block, is free */
  /* A free interrupted after its merge store: b is marked free, unlisted. */
  *(uint64_t *)(void *)((char *)seg + blk_b) |= SHMVAL__BLK_FREE;
}

static void test_rebuild_after_owner_death(void **state) {
  (void)state;
  assert_ok(shmval__heap_alloc(seg, 64, &blk_a, NULL));
  assert_ok(shmval__heap_alloc(seg, 64, &blk_b, NULL));
  assert_ok(shmval__heap_alloc(seg, 64, &blk_c, NULL));
  assert_ok(shmval__heap_free(seg, blk_c, NULL)); /* c merges with the free space below it */
  die_holding_heap_lock(scribble_derived);
  /* The next holder rebuilds lists, bitmaps, tags and counters. */
  shmval__heap_stat st = check();
  assert_int_equal(st.blocks, 1);
  assert_int_equal(st.used, 64);
  assert_int_equal(st.free_blocks, 2); /* b merged with the free space below it */
  uint64_t x;
  assert_ok(shmval__heap_alloc(seg, 64, &x, NULL));
  assert_int_equal(x, blk_b);
  assert_ok(shmval__heap_free(seg, x, NULL));
  assert_ok(shmval__heap_free(seg, blk_a, NULL));
  assert_int_equal(check().free_blocks, 2);
}

static void split_half_done(void) {
  /* A split that wrote the tail's header but died before shrinking the head. */
  uint64_t big = SHMVAL__HEAP_STATE_END; /* the free block after the state block */
  *(uint64_t *)(void *)((char *)seg + big + 4096) = 12345 | SHMVAL__BLK_FREE;
}

static void test_half_split(void **state) {
  (void)state;
  die_holding_heap_lock(split_half_done);
  shmval__heap_stat st = check();
  assert_int_equal(st.free_blocks, 2);
  assert_int_equal(st.blocks, 0);
}

static void break_chain(void) {
  /* Not derived data: a zero size makes the chain unwalkable. */
  *(uint64_t *)(void *)((char *)seg + seg->heap_start) = 0;
}

static void test_broken_chain_is_fenced(void **state) {
  (void)state;
  uint64_t x;
  shmval__heap_stat st;
  die_holding_heap_lock(break_chain);
  assert_code(shmval__heap_alloc(seg, 64, &x, NULL), SHMVAL_ECORRUPT);
  /* Fenced off for good rather than allocating from a corrupt heap. */
  assert_code(shmval__heap_alloc(seg, 64, &x, NULL), SHMVAL_ENOTRECOVERABLE);
  assert_code(shmval__heap_check(seg, &st), SHMVAL_ENOTRECOVERABLE);
}

/*
 * The free lists live in the heap's state block: the verifier and the
 * rebuild after a death refuse a chain that has no state block in its place
 * (marked free, or resized), rather than hand its memory out as a block.
 */
static void test_state_block_is_checked(void **state) {
  (void)state;
  uint64_t x;
  shmval__heap_stat st;
  shmval__problem pb = {0};
  shmval__seg *own =
      mmap(NULL, SEG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(own != MAP_FAILED);
  assert_ok(shmval__seg_init(own, SEG_SIZE, SEG_SIZE, SHMVAL__SEG_ANON, 0));
  assert_ok(shmval__heap_verify(own, &st, &pb));
  /* The first block swallows the state block: a chain sound in every other way. */
  uint64_t *first = (uint64_t *)(void *)((char *)own + own->heap_start);
  *first = SHMVAL__HEAP_STATE_END - own->heap_start;
  own->used = *first;
  own->blocks = 1;
  assert_code(shmval__heap_verify(own, &st, &pb), SHMVAL_ECORRUPT);
  assert_int_equal(pb.off, SHMVAL__HEAP_STATE_BLK);
  /*
   * The state block marked free and put on a list: neither an allocation nor
   * a free next to it takes it as a free block.
   */
  *first = SHMVAL__HEAP_STATE_BLK - own->heap_start; /* as it was: free, before the state */
  *first |= SHMVAL__BLK_FREE;
  own->used = 0;
  own->blocks = 0;
  shmval__heap_state *hst = shmval__heap_state_of(own);
  uint64_t *state_w = (uint64_t *)(void *)((char *)own + SHMVAL__HEAP_STATE_BLK), keep = *state_w;
  uint64_t b;
  assert_ok(shmval__heap_alloc(own, 64, &b, NULL)); /* the block just before the state block */
  assert_int_equal(b + 64, SHMVAL__HEAP_STATE_BLK);
  /* Marked free, with links that pass for empty ones (no list holds anything). */
  *state_w = SHMVAL__HEAP_STATE_SIZE | SHMVAL__BLK_FREE;
  memset(hst, 0, sizeof *hst);
  assert_code(shmval__heap_free(own, b, NULL), SHMVAL_ECORRUPT);
  /* On a list of a bigger class, which a search takes from without checking its size class. */
  hst->free_head[5][0] = SHMVAL__HEAP_STATE_BLK;
  hst->sl_bitmap[5] = 1u;
  hst->fl_bitmap = 1u << 5;
  assert_code(shmval__heap_alloc(own, 64, &x, NULL), SHMVAL_ECORRUPT);
  /* Before a freed block that says it follows a free one, with the tag to match. */
  memset(hst, 0, sizeof *hst);
  uint64_t tail = SHMVAL__HEAP_STATE_END, *tail_w = (uint64_t *)(void *)((char *)own + tail);
  *tail_w = (own->heap_end - tail) | SHMVAL__BLK_PREV_FREE; /* allocated */
  own->end_prev_free = 0;
  *(uint64_t *)(void *)((char *)own + tail - 8) = SHMVAL__HEAP_STATE_SIZE;
  assert_code(shmval__heap_free(own, tail, NULL), SHMVAL_ECORRUPT);
  *state_w = keep;
  /* A holder of the heap lock dies; the next one's rebuild finds no state block. */
  *first = SHMVAL__HEAP_STATE_END - own->heap_start;
  pid_t pid = fork();
  if (pid == 0)
    _exit(pthread_mutex_lock(&own->heap_lock) != 0);
  assert_int_equal(reap(pid), 0);
  assert_code(shmval__heap_alloc(own, 64, &x, NULL), SHMVAL_ECORRUPT);
  munmap(own, SEG_SIZE);
}

/*
 * A growable anonymous segment made before a fork: the child's allocations
 * grow it, and the parent sees the new space and what the child wrote there
 * without doing anything.
 */
static void test_growable_shared_with_child(void **state) {
  (void)state;
  shmval__seg *g;
  uint64_t slot, off;
  assert_code(shmval__arena_add_growable(1 << 20, 1 << 19, &g), SHMVAL_EINVAL);
  assert_ok(shmval__arena_add_growable(64 << 10, 64 << 20, &g));
  assert_int_equal(shmval__seg_size(g), 64 << 10);
  assert_int_equal(g->max_size, 64 << 20);
  assert_ok(shmval__heap_alloc(g, 64, &slot, NULL));
  uint64_t *shared = (uint64_t *)(void *)((char *)g + slot + 8);
  pid_t pid = fork();
  if (pid == 0) {
    for (int i = 0; i < 3; i++) {
      if (shmval__heap_alloc(g, 8 << 20, &off, NULL) != 0)
        _exit(1);
      memset((char *)g + off + 8, 0x40 + i, (8 << 20) - 8);
    }
    __atomic_store_n(shared, off, __ATOMIC_RELEASE);
    _exit(0);
  }
  assert_int_equal(reap(pid), 0);
  off = __atomic_load_n(shared, __ATOMIC_ACQUIRE);
  assert_true(off > (64 << 10));
  const unsigned char *p = (const unsigned char *)g + off + 8;
  assert_int_equal(p[0], 0x42);
  assert_int_equal(p[(8 << 20) - 9], 0x42);
  assert_true(shmval__seg_size(g) >= (24 << 20) && shmval__seg_size(g) <= g->max_size);
  shmval__heap_stat st;
  assert_ok(shmval__heap_check(g, &st));
  assert_int_equal(st.blocks, 4);
  /* It grows here too, up to its maximum and no further. */
  assert_ok(shmval__heap_alloc(g, 16 << 20, &off, NULL));
  assert_code(shmval__heap_alloc(g, 32 << 20, &off, NULL), SHMVAL_ENOMEM);
  assert_ok(shmval__heap_check(g, &st));
  assert_true(shmval__seg_size(g) <= g->max_size);
  /* Sizes out of order (damage): a grow refuses them rather than write past the mapping. */
  shmval__seg *h;
  assert_ok(shmval__arena_add_growable(64 << 10, 1 << 20, &h));
  atomic_store(&h->size, 2 << 20);
  assert_code(shmval__heap_alloc(h, 512 << 10, &off, NULL), SHMVAL_ECORRUPT);
  atomic_store(&h->size, 64 << 10);
  atomic_store(&h->heap_end, 128 << 10);
  assert_code(shmval__heap_alloc(h, 512 << 10, &off, NULL), SHMVAL_ECORRUPT);
  atomic_store(&h->heap_end, 64 << 10); /* undamaged again: it grows */
  assert_ok(shmval__heap_alloc(h, 512 << 10, &off, NULL));
  /* The arena lists it, but allocates nothing else in it. */
  shm_arena_info ai;
  assert_ok(shm_arena_stat(&ai));
  assert_true(ai.total >= st.total);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_header),
      cmocka_unit_test(test_split_merge),
      cmocka_unit_test(test_growable_shared_with_child),
      cmocka_unit_test(test_bad_frees),
      cmocka_unit_test(test_exhaustion),
      cmocka_unit_test(test_random_churn),
      cmocka_unit_test(test_rebuild_after_owner_death),
      cmocka_unit_test(test_half_split),
      cmocka_unit_test(test_state_block_is_checked),
      cmocka_unit_test(test_broken_chain_is_fenced),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
