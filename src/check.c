/*
 * shm_segment_check(): the integrity check of a named segment. It verifies
 * the allocator (heap.c), every object header (object.c's validator) and the
 * directory (dir.c) with both of the segment's locks held, and counts blocks
 * that no live object owns, which a killed process may leave.
 */
#include "dict.h"
#include "list.h"
#include "dir.h"
#include "reclaim.h"
#include "heap.h"
#include "journal.h"
#include "objhdr.h"
#include "lock.h"
#include "prim.h"

#include <stdlib.h>
#include <string.h>

typedef struct walk_ctx {
  shmval__seg *seg;
  shm_check_report *rep;
  shmval__problem *pb;
  uint64_t named_objects;
  shmval__creating creating; /* objects whose create has not returned */
  shmval__offs users;        /* the shared locks live objects use, one entry per use */
  shmval__offs kept; /* destroyed hosts whose lock is still referenced: (lock, block size) pairs */
  shmval__offs orphans; /* blocks no object header claims: (block, size) pairs */
  shmval__offs dicts;   /* live dicts' object headers */
  shmval__offs lists;   /* live lists' object headers */
  shmval__offs owned;   /* the blocks those containers own (tables, rings, entries, journaled) */
} walk_ctx;

/* A block without a live object of its own: a container's, or leaked (see owned_blocks()). */
static int orphan(walk_ctx *w, uint64_t blk, uint64_t size) {
  int rc = shmval__offs_push(&w->orphans, blk);
  return rc != 0 ? rc : shmval__offs_push(&w->orphans, size);
}

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

/*
 * The lock inside the block of a destroyed object, if the object hosted one
 * that still has references: the block stays for as long as other objects
 * use that lock (see kept_or_leaked()). 0 if there is none.
 */
static uint64_t retired_host_lock(walk_ctx *w, uint64_t off, uint64_t size) {
  shmval__obj h;
  memcpy(&h, (const char *)w->seg + off, sizeof h);
  uint64_t blk_end = off - SHMVAL__OBJ_HDR_OFF + size;
  if (!(h.flags & SHMVAL__OBJ_OWN_LOCK) || h.lock_rel < (int64_t)sizeof h ||
      (h.lock_rel & 7) != 0 || (uint64_t)h.lock_rel > blk_end - off - sizeof(shmval__lock))
    return 0;
  shmval__lock *l = (shmval__lock *)(void *)((char *)w->seg + off + (uint64_t)h.lock_rel);
  if (atomic_load_explicit(&l->magic, memory_order_acquire) != SHMVAL__LOCK_MAGIC ||
      atomic_load_explicit(&l->refs, memory_order_relaxed) == 0)
    return 0;
  return off + (uint64_t)h.lock_rel;
}

/* A Condition's waiter slots: mutexes of the library's type, states in range. */
static int check_cond(walk_ctx *w, const shmval__obj *h, uint64_t off) {
  const shmval__cond_state *st =
      (const shmval__cond_state *)(const void *)((const char *)w->seg + off + h->payload_rel);
  for (unsigned i = 0; i < SHMVAL__COND_SLOTS; i++)
    if (!shmval__mutex_sane(&st->slot[i].alive) || st->slot[i].state > SHMVAL__CW_NOTIFIED)
      return shmval__bad(w->pb, off, "a condition's waiter slot is damaged");
  return 0;
}

static int check_block(void *ctx, uint64_t blk, uint64_t size) {
  walk_ctx *w = ctx;
  uint64_t off = blk + SHMVAL__OBJ_HDR_OFF;
  shmval__obj h;
  int rc = shmval__obj_peek(w->seg, off, &h);
  if (rc == SHMVAL_ESTALE) {
    /* Retired, not yet freed: leaked, unless its lock is in use. */
    uint64_t lock = retired_host_lock(w, off, size);
    if (lock == 0)
      return orphan(w, blk, size); /* (a container's new entry may not be written yet) */
    return shmval__offs_push(&w->kept, lock) != 0 ? SHMVAL_ENOMEM
                                                  : shmval__offs_push(&w->kept, size);
  }
  if (rc != 0) {
    /* A header that claims to be live but does not check out is corrupt. */
    uint32_t m = atomic_load_explicit(&((shmval__obj *)(void *)((char *)w->seg + off))->magic,
                                      memory_order_relaxed);
    return m == SHMVAL__OBJ_MAGIC ? shmval__bad(w->pb, off, "an object header is not valid")
                                  : orphan(w, blk, size);
  }
  if (h.lock_rel != 0 && !(h.flags & SHMVAL__OBJ_OWN_LOCK) &&
      (rc = shmval__offs_push(&w->users, off + (uint64_t)h.lock_rel)) != 0)
    return rc;
  if (h.name_off == 0 && shmval__creating_has(&w->creating, off))
    return leaked(w, size); /* its create never returned: a reclaim frees it */
  switch (h.kind) {
  case SHMVAL__KIND_DIR:
    return off == w->seg->dir_off ? 0 : leaked(w, size);
  case SHMVAL__KIND_ATTACH:
    return off == w->seg->attach_off ? 0 : leaked(w, size);
  case SHMVAL__KIND_DICT_TAB:
  case SHMVAL__KIND_LIST_RING:
    return orphan(w, blk, size);
  case SHMVAL__KIND_DICT:
  case SHMVAL__KIND_LIST:
    if ((rc = shmval__offs_push(h.kind == SHMVAL__KIND_DICT ? &w->dicts : &w->lists, off)) != 0)
      return rc;
    break;
  default:
    break;
  }
  w->rep->objects++;
  if (h.name_off != 0)
    w->named_objects++;
  if (h.kind == SHMVAL__KIND_COND && (rc = check_cond(w, &h, off)) != 0)
    return rc;
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

/* How many entries of the sorted list @p l equal @p off. */
static size_t count_of(const shmval__offs *l, uint64_t off) {
  size_t lo = 0, hi = l->n, n = 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (l->v[mid] < off)
      lo = mid + 1;
    else
      hi = mid;
  }
  while (lo + n < l->n && l->v[lo + n] == off)
    n++;
  return n;
}

/*
 * A destroyed object's block whose lock other objects share stays allocated
 * until the last of them lets go: it is in use, not leaked, when its
 * reference count is exactly the number of live objects using the lock. A
 * count above that holds a reference no one will drop (a process died
 * between retiring an object and dropping its reference): leaked.
 */
static void kept_or_leaked(walk_ctx *w) {
  shmval__offs_sort(&w->users);
  for (size_t i = 0; i + 1 < w->kept.n; i += 2) {
    uint64_t lock = w->kept.v[i], size = w->kept.v[i + 1];
    const shmval__lock *l = (const shmval__lock *)(const void *)((const char *)w->seg + lock);
    uint32_t refs =
        atomic_load_explicit(&((shmval__lock *)(uintptr_t)l)->refs, memory_order_relaxed);
    size_t users = count_of(&w->users, lock);
    if (users == 0 || refs != users)
      leaked(w, size);
  }
}

/* Whether the sorted list @p l holds @p off. */
static bool has(const shmval__offs *l, uint64_t off) { return count_of(l, off) != 0; }

/*
 * Verify every live dict and list, then sort the blocks without an object of
 * their own: those a container owns are in use, the rest leaked. Every block
 * a container points to must be one of them (allocated, and nobody else's
 * object).
 */
static int owned_blocks(walk_ctx *w) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < w->dicts.n; i++)
    rc = shmval__dict_verify(w->seg, w->dicts.v[i], &w->owned, w->pb);
  for (size_t i = 0; rc == 0 && i < w->lists.n; i++)
    rc = shmval__list_verify(w->seg, w->lists.v[i], &w->owned, w->pb);
  if (rc != 0)
    return rc;
  shmval__offs_sort(&w->owned);
  shmval__offs blocks = {0};
  for (size_t i = 0; rc == 0 && i + 1 < w->orphans.n; i += 2) {
    uint64_t blk = w->orphans.v[i], size = w->orphans.v[i + 1];
    if (!has(&w->owned, blk))
      leaked(w, size);
    rc = shmval__offs_push(&blocks, blk);
  }
  shmval__offs_sort(&blocks);
  for (size_t i = 0; rc == 0 && i < w->owned.n; i++)
    if (!has(&blocks, w->owned.v[i]))
      rc =
          shmval__bad(w->pb, w->owned.v[i], "a dict or list points to a block that is not its own");
  free(blocks.v);
  return rc;
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
  if ((rc = shmval__creations(seg, &w.creating)) != 0)
    return rc;
  rc = shmval__heap_walk_unlocked(seg, check_block, &w);
  if (rc == 0)
    kept_or_leaked(&w);
  if (rc == 0)
    rc = owned_blocks(&w);
  free(w.creating.v);
  free(w.users.v);
  free(w.kept.v);
  free(w.orphans.v);
  free(w.dicts.v);
  free(w.lists.v);
  free(w.owned.v);
  if (rc != 0)
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

/* ------------------------------------------------------------------------ */
/* Reclaiming what dead processes left halfway (the journals: reclaim.c). */

int shm_segment_reclaim(shm_segment *sg, size_t *blocks, size_t *bytes) {
  size_t nb = 0, nby = 0;
  if (sg == NULL)
    return SHMVAL_EINVAL;
  if (sg->flags & SHMVAL_RDONLY)
    return SHMVAL_EACCES;
  shmval__seg *seg = sg->base;
  shmval__attach_ent *t = shmval__attach_table(seg);
  if (t == NULL)
    return SHMVAL_ECORRUPT;
  /*
   * Under the directory lock a slot found free stays without a journal of a
   * live process: whoever takes the slot reclaims its journal first, and
   * needs this lock to do it.
   */
  int rc = shmval__dir_lock(seg);
  if (rc != 0)
    return rc;
  for (uint32_t i = 0; rc == 0 && i < seg->max_attach; i++) {
    if ((int)i == sg->slot || __atomic_load_n(&t[i].pending, __ATOMIC_ACQUIRE) == 0)
      continue;
    if (shmval__prim_flock_probe(sg->fd, SHMVAL__SLOT_OFF(i), 1) != -1)
      continue; /* held by a live process (or the probe failed) */
    rc = shmval__reclaim_journal(seg, &t[i].pending, &nb, &nby);
  }
  shmval__dir_unlock(seg);
  if (blocks != NULL)
    *blocks = nb;
  if (bytes != NULL)
    *bytes = nby;
  return rc;
}
