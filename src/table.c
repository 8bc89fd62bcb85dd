/*
 * Internal tables: objects of the kinds DIR and ATTACH that hold a named
 * segment's directory and attacher table, allocated zeroed and published at
 * once, and freed under a crash journal.
 */
#include "table.h"
#include "heap.h"
#include "objhdr.h"

#include <string.h>

/*
 * Zero a new table with single stores: its block may have been one that a
 * lock-free reader (a dict's, a list's) still reads with single loads.
 */
static void zero_shared(char *p, size_t n) {
  for (; n > 0 && ((uintptr_t)p & 7) != 0; n--, p++)
    __atomic_store_n((unsigned char *)p, (unsigned char)0, __ATOMIC_RELAXED);
  for (; n >= 8; n -= 8, p += 8)
    __atomic_store_n((uint64_t *)(void *)p, (uint64_t)0, __ATOMIC_RELAXED);
  for (; n > 0; n--, p++)
    __atomic_store_n((unsigned char *)p, (unsigned char)0, __ATOMIC_RELAXED);
}

int shmval__obj_alloc_table(shmval__seg *seg, unsigned kind, uint32_t elem_size, uint64_t length,
                            shmval__obj **out, uint64_t *journal) {
  return shmval__obj_alloc_ring(seg, kind, 0, elem_size, 8, length, out, journal);
}

int shmval__obj_alloc_ring(shmval__seg *seg, unsigned kind, int type, uint32_t elem_size,
                           size_t align, uint64_t length, shmval__obj **out, uint64_t *journal) {
  shmval__obj_layout lo;
  uint64_t off;
  shmval__obj_plan((uint64_t)elem_size * length, align, false, 0, &lo);
  int rc = shmval__heap_alloc(seg, (size_t)lo.block, &off, journal);
  if (rc != 0)
    return rc;
  shmval__obj *o = shmval__obj_init(seg, off, &lo, kind, type, elem_size, length);
  zero_shared((char *)seg + off + lo.payload_at, (size_t)(elem_size * length));
  atomic_store_explicit(&o->magic, SHMVAL__OBJ_MAGIC, memory_order_release);
  *out = o;
  return 0;
}

void shmval__obj_free_table(shmval__obj *o, uint64_t *journal) {
  /*
   * Noted before the magic goes: a death before that leaves a live table,
   * which the directory rebuild frees (it is not the current one); after
   * it, a dead one, which the journal frees.
   */
  shmval__journal_set(journal, shmval__block_off(o) | SHMVAL__J_CREATE);
  SHMVAL__CRASH_POINT();
  atomic_store_explicit(&o->magic, SHMVAL__OBJ_DEAD, memory_order_release);
  SHMVAL__CRASH_POINT();
  (void)shmval__heap_free(shmval__obj_seg(o), shmval__block_off(o), journal);
}
