/*
 * Reclaiming what a dead attacher left: the block its journal word names,
 * freed when the journal's stage and the block's state show that the dead
 * process was creating it (and its create never returned) or had retired it.
 * Above the allocator and the object header, below the directory, whose
 * rebuild and whose lock's new holders call it.
 */
#include "reclaim.h"
#include "heap.h"
#include "journal.h"
#include "objhdr.h"

/*
 * A CREATE journal's block holds a published object: its creator died before
 * the create returned. An unnamed one is then nobody's (shm_segment_foreach()
 * skips it) and goes, unless it holds a reference on a lock another object
 * owns, which is left (a live object, as before). A named one is a committed
 * object: its journal is cleared (normally by the directory lock's next
 * holder) and the object kept.
 */
static uint64_t published_unreturned(shmval__seg *seg, uint64_t off) {
  shmval__obj h;
  if (shmval__obj_peek(seg, off + SHMVAL__OBJ_HDR_OFF, &h) != 0 || h.name_off != 0 ||
      (h.lock_rel != 0 && !(h.flags & SHMVAL__OBJ_OWN_LOCK)))
    return 0;
  if (h.flags & SHMVAL__OBJ_OWN_LOCK) {
    shmval__lock *l =
        (shmval__lock *)(void *)((char *)seg + off + SHMVAL__OBJ_HDR_OFF + h.lock_rel);
    atomic_store_explicit(&l->magic, SHMVAL__OBJ_DEAD, memory_order_release);
  }
  return off;
}

/*
 * With the heap lock held: the block that the journal word @p pending shows
 * may be freed, or 0. An object whose create returned stays (its name or a
 * handle may reach it); so does one the journal's writer did not retire, and
 * a retired one whose own lock other objects still use.
 */
static uint64_t reclaimable(shmval__seg *seg, const uint64_t *pending, uint64_t *size) {
  uint64_t j = __atomic_load_n(pending, __ATOMIC_ACQUIRE);
  uint64_t off = j & ~SHMVAL__J_STAGE, stage = j & SHMVAL__J_STAGE;
  if (j == 0 || !shmval__heap_used_block(seg, off, size) ||
      *size < SHMVAL__OBJ_HDR_OFF + sizeof(shmval__obj))
    return 0;
  shmval__obj *o = (shmval__obj *)(void *)((char *)seg + off + SHMVAL__OBJ_HDR_OFF);
  uint32_t m = atomic_load_explicit(&o->magic, memory_order_acquire);
  if (stage == SHMVAL__J_CREATE)
    return m == SHMVAL__OBJ_MAGIC ? published_unreturned(seg, off) : off;
  /* DESTROY: only if the journal's writer retired it (see destroy_locked()). */
  if (stage == SHMVAL__J_DESTROY ? m != shmval__dead_magic(seg, pending)
                                 : stage != SHMVAL__J_UNREF || !shmval__magic_dead(m))
    return 0;
  if (!(o->flags & SHMVAL__OBJ_OWN_LOCK))
    return stage == SHMVAL__J_DESTROY ? off : 0;
  /*
   * Its own lock: the block goes with the lock's last reference. In DESTROY
   * the host's reference is still held (1; the journal is cleared before it
   * is dropped when others share the lock), or was taken to 0 from 1 by the
   * journal's writer. UNREF is noted only by the holder of the last reference.
   */
  int64_t rel = o->lock_rel;
  if (rel < (int64_t)sizeof *o ||
      (uint64_t)rel + sizeof(shmval__lock) > *size - SHMVAL__OBJ_HDR_OFF)
    return 0;
  shmval__lock *l = (shmval__lock *)(void *)((char *)o + rel);
  uint32_t refs = atomic_load_explicit(&l->refs, memory_order_acquire);
  if ((stage == SHMVAL__J_DESTROY && refs <= 1) || (stage == SHMVAL__J_UNREF && refs == 0)) {
    atomic_store_explicit(&l->magic, SHMVAL__OBJ_DEAD, memory_order_release);
    return off;
  }
  return 0;
}

int shmval__reclaim_journal(shmval__seg *seg, uint64_t *pending, size_t *blocks, size_t *bytes) {
  int rc = shmval__heap_lock(seg);
  if (rc != 0)
    return rc;
  uint64_t size = 0, off = reclaimable(seg, pending, &size);
  if (off != 0) {
    /*
     * Retire it for good: a stale handle must see a dead object, not a
     * half-made one. A dead magic stays as it is: a destroyer's names its
     * slot, which a reclaim killed before the free below must find again.
     */
    shmval__obj *o = (shmval__obj *)(void *)((char *)seg + off + SHMVAL__OBJ_HDR_OFF);
    if (!shmval__magic_dead(atomic_load_explicit(&o->magic, memory_order_acquire)))
      atomic_store_explicit(&o->magic, SHMVAL__OBJ_DEAD, memory_order_release);
  }
  SHMVAL__CRASH_POINT();
  shmval__heap_unlock(seg);
  /*
   * The block is allocated and nobody else's: freeing it after the unlock is
   * safe. The journal is cleared as the block becomes free, never after: a
   * journal left naming a free block could later name someone else's.
   */
  if (off == 0) {
    __atomic_store_n(pending, 0, __ATOMIC_RELEASE);
    return 0;
  }
  if ((rc = shmval__heap_free(seg, off, pending)) == 0) {
    ++*blocks;
    *bytes += (size_t)size;
  }
  return rc;
}
