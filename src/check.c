/*
 * shm_segment_check(): the integrity check of a named segment. It verifies
 * the allocator (heap.c), every object header (object.c's validator) and the
 * directory (dir.c) with both of the segment's locks held, and counts blocks
 * that no live object owns, which a killed process may leave.
 */
#include "internal.h"

#include <string.h>

typedef struct walk_ctx {
  shmval__seg *seg;
  shm_check_report *rep;
  shmval__problem *pb;
  uint64_t named_objects;
} walk_ctx;

/* Count a block that holds no live object, or a table that is not in use. */
static int leaked(walk_ctx *w, uint64_t size) {
  w->rep->leaked_blocks++;
  w->rep->leaked_bytes += (size_t)size;
  return 0;
}

/* An object's own lock must point back at it and be referenced. */
static int check_own_lock(walk_ctx *w, const shmval__obj *h, uint64_t off) {
  const shmval__lock *l =
      (const shmval__lock *)(const void *)((const char *)w->seg + off + (uint64_t)h->lock_rel);
  if ((int64_t)l->host_back != h->lock_rel)
    return shmval__bad(w->pb, off, "an object's lock does not point back at it");
  if (atomic_load_explicit(&((shmval__lock *)(uintptr_t)l)->refs, memory_order_relaxed) == 0)
    return shmval__bad(w->pb, off, "a live object's lock has no reference");
  return 0;
}

static int check_block(void *ctx, uint64_t blk, uint64_t size) {
  walk_ctx *w = ctx;
  uint64_t off = blk + SHMVAL__OBJ_HDR_OFF;
  shmval__obj h;
  int rc = shmval__obj_peek(w->seg, off, &h);
  if (rc == SHMVAL_ESTALE)
    return leaked(w, size); /* retired, not yet freed */
  if (rc != 0) {
    /* A header that claims to be live but does not check out is corrupt. */
    uint32_t m = atomic_load_explicit(&((shmval__obj *)(void *)((char *)w->seg + off))->magic,
                                      memory_order_relaxed);
    return m == SHMVAL__OBJ_MAGIC ? shmval__bad(w->pb, off, "an object header is not valid")
                                  : leaked(w, size);
  }
  switch (h.kind) {
  case SHMVAL__KIND_DIR:
    return off == w->seg->dir_off ? 0 : leaked(w, size);
  case SHMVAL__KIND_ATTACH:
    return off == w->seg->attach_off ? 0 : leaked(w, size);
  default:
    break;
  }
  w->rep->objects++;
  if (h.name_off != 0)
    w->named_objects++;
  return (h.flags & SHMVAL__OBJ_OWN_LOCK) ? check_own_lock(w, &h, off) : 0;
}

/* The attacher table the header points to. */
static int check_attach(shmval__seg *seg, shmval__problem *pb) {
  shmval__obj h;
  if (shmval__obj_peek(seg, seg->attach_off, &h) != 0 || h.kind != SHMVAL__KIND_ATTACH ||
      h.length != seg->max_attach)
    return shmval__bad(pb, seg->attach_off, "the attacher table is not valid");
  return 0;
}

/* Both locks are held. */
static int check_locked(shmval__seg *seg, shm_check_report *rep, shmval__problem *pb) {
  shmval__heap_stat st;
  int rc = shmval__heap_verify(seg, &st, pb);
  rep->blocks = (size_t)st.blocks;
  rep->free_blocks = (size_t)st.free_blocks;
  rep->used = (size_t)st.used;
  rep->free = (size_t)st.free;
  if (rc != 0)
    return rc;
  if ((rc = check_attach(seg, pb)) != 0)
    return rc;
  walk_ctx w = {.seg = seg, .rep = rep, .pb = pb};
  if ((rc = shmval__heap_walk_unlocked(seg, check_block, &w)) != 0)
    return rc;
  uint64_t named = 0;
  if ((rc = shmval__dir_verify(seg, &named, pb)) != 0)
    return rc;
  rep->named = (size_t)named;
  if (named != w.named_objects)
    return shmval__bad(pb, seg->dir_off, "a live named object is missing from the directory");
  return 0;
}

int shm_segment_check(shm_segment *sg, shm_check_report *rep) {
  if (sg == NULL || rep == NULL)
    return SHMVAL_EINVAL;
  memset(rep, 0, sizeof *rep);
  if (sg->flags & SHMVAL_RDONLY)
    return SHMVAL_EACCES;
  shmval__seg *seg = sg->base;
  shmval__problem pb = {0};
  /* The order every other path takes: the directory's lock, then the heap's. */
  int rc = shmval__dir_lock(seg);
  if (rc != 0)
    return rc;
  if ((rc = shmval__heap_lock(seg)) == 0) {
    rc = check_locked(seg, rep, &pb);
    shmval__heap_unlock(seg);
  }
  shmval__dir_unlock(seg);
  rep->problem = pb.what;
  rep->problem_offset = pb.off;
  if (rc == SHMVAL_ECORRUPT && rep->problem == NULL)
    rep->problem = "the segment's locks could not repair what a dead holder left";
  return rc;
}
