/*
 * The name directory of a named segment: an open-addressing hash table of
 * one 64-bit word per name, kept in a heap block of its own. Names live in
 * their objects' blocks.
 *
 * Changes hold the segment's robust dir_lock. Adding or deleting a name is
 * one atomic store of an entry, so the table is consistent at every moment
 * but one: while a holder replaces it (a resize, a rebuild), during which it
 * keeps seg->dir_gen odd (a sequence lock). Lookups take no lock: they read
 * the generation, probe with atomic loads, and retry if it moved; after a few
 * tries, or when a holder died mid-replacement (the generation stays odd),
 * they take the lock, whose owner-death handling rebuilds the table. So an
 * open by name touches the table word and the object's block and writes
 * nothing shared.
 *
 * Every entry read from shared memory is validated before it is followed,
 * from a copy read once (the block may be freed and reused under a reader).
 * The table is derived data: an object is fully published (magic last) before
 * its entry is added, so after a holder of dir_lock dies the table is rebuilt
 * from a walk of the heap's live named objects.
 */
#include "dir.h"
#include "reclaim.h"
#include "table.h"
#include "heap.h"
#include "journal.h"
#include "objhdr.h"
#include "lock.h"
#include "prim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * An entry: the top 24 bits of the name's hash (a tag that spares most
 * mismatching objects a visit) over the 40-bit index of the object's 64-byte
 * block, which reaches 64 TiB. Blocks 0 and 1 hold the segment header, so
 * those indexes mean "never used" and "deleted".
 */
#define ENT_EMPTY UINT64_C(0)
#define ENT_TOMB UINT64_C(1)
#define ENT_IDX_BITS 40
#define ENT_IDX_MASK ((UINT64_C(1) << ENT_IDX_BITS) - 1)
#define DIR_MIN 16u
#define LOOKUP_TRIES 8

static uint64_t ent_make(uint64_t h, uint64_t obj_off) {
  return (h & ~ENT_IDX_MASK) | (obj_off / SHMVAL__BLOCK_ALIGN);
}
static bool ent_live(uint64_t e) { return (e & ENT_IDX_MASK) > ENT_TOMB; }
static bool ent_tag_is(uint64_t e, uint64_t h) { return ((e ^ h) & ~ENT_IDX_MASK) == 0; }
static uint64_t ent_obj(uint64_t e) {
  return (e & ENT_IDX_MASK) * SHMVAL__BLOCK_ALIGN + SHMVAL__OBJ_HDR_OFF;
}
static uint64_t ent_load(const uint64_t *e) { return __atomic_load_n(e, __ATOMIC_ACQUIRE); }
static void ent_store(uint64_t *e, uint64_t v) { __atomic_store_n(e, v, __ATOMIC_RELEASE); }

/* Names hash with a fixed seed: every process must find a name at the same place. */
static uint64_t name_hash(const char *s, size_t n) { return shmval__hash(0, s, n); }

/*
 * The table's entries and capacity, validated from one read of its header
 * (a peer may be replacing it).
 */
static int table(shmval__seg *seg, uint64_t **ents, uint64_t *cap) {
  uint64_t off = __atomic_load_n(&seg->dir_off, __ATOMIC_ACQUIRE), payload;
  if (off == 0 ||
      shmval__obj_peek_table(seg, off, SHMVAL__KIND_DIR, sizeof(uint64_t), &payload, cap) != 0 ||
      *cap < DIR_MIN)
    return SHMVAL_ECORRUPT;
  *ents = (uint64_t *)(void *)((char *)seg + payload);
  return 0;
}

/*
 * One probe for @p name: 0 with the object's offset in *off and the copy of
 * its header that was checked in *hdr, ENOENT, or ECORRUPT for an entry or
 * table that does not check out (which a lock-free caller retries with the
 * lock, as the object may just have been freed).
 */
static inline __attribute__((always_inline)) int probe_in(shmval__seg *seg, const uint64_t *ents,
                                                          uint64_t cap, const char *name,
                                                          size_t len, uint64_t h, uint64_t *off,
                                                          shmval__obj *hdr) {
  int rc;
  for (uint64_t i = h & (cap - 1), n = 0; n < cap; i = (i + 1) & (cap - 1), n++) {
    uint64_t e = ent_load(&ents[i]);
    if (e == ENT_EMPTY)
      return SHMVAL_ENOENT;
    if (!ent_live(e) || !ent_tag_is(e, h))
      continue;
    /* A freed (ESTALE) or unsound object: the lock-free caller retries under the lock. */
    if ((rc = shmval__obj_peek_named(seg, ent_obj(e), hdr, name, len)) < 0)
      return SHMVAL_ECORRUPT;
    if (rc == 1) {
      *off = ent_obj(e);
      return 0;
    }
  }
  return SHMVAL_ENOENT;
}

/* probe_in() the current table. */
static int probe(shmval__seg *seg, const char *name, size_t len, uint64_t h, uint64_t *off,
                 shmval__obj *hdr) {
  uint64_t *ents, cap;
  int rc = table(seg, &ents, &cap);
  return rc != 0 ? rc : probe_in(seg, ents, cap, name, len, h, off, hdr);
}

/*
 * A segment handle remembers the last table a lookup through it validated,
 * so that the next lookups skip the table's checks while the directory keeps
 * it: one word, read and written whole (threads share handles), holding the
 * low bits of the generation the table was read under, its block's index and
 * the log2 of its capacity. A replacement moves the generation on, and a
 * lookup uses the word only if the generation it read before its probe and
 * the table's offset both match it. Whatever the word says, it names a range
 * validated once to lie in the heap, which never shrinks: a stale word can
 * only make a probe miss, never read outside the mapping.
 */
#define TC_GEN_BITS 24
#define TC_IDX_BITS 34
#define TC_DIR_REL (SHMVAL__BLOCK_ALIGN - SHMVAL__OBJ_HDR_OFF) /* the library's table payload */

#define TC_GEN_MASK ((UINT64_C(1) << TC_GEN_BITS) - 1)
#define TC_IDX_MASK ((UINT64_C(1) << TC_IDX_BITS) - 1)

/* The table header offset a cache word names. */
static uint64_t tc_off(uint64_t c) {
  return ((c >> 6) & TC_IDX_MASK) * SHMVAL__BLOCK_ALIGN + SHMVAL__OBJ_HDR_OFF;
}

/* The table for a lookup under generation @p gen, from @p cache if it holds it. */
static inline __attribute__((always_inline)) int
table_cached(shmval__seg *seg, uint64_t *cache, uint64_t gen, uint64_t **ents, uint64_t *cap) {
  uint64_t off = __atomic_load_n(&seg->dir_off, __ATOMIC_ACQUIRE);
  uint64_t c = cache != NULL ? __atomic_load_n(cache, __ATOMIC_RELAXED) : 0;
  /* The offset compared whole and the table placed from the word: never from a damaged one. */
  if (c != 0 && off == tc_off(c) && c >> (6 + TC_IDX_BITS) == (gen & TC_GEN_MASK)) {
    *ents = (uint64_t *)(void *)((char *)seg + tc_off(c) + TC_DIR_REL);
    *cap = UINT64_C(1) << (c & 63);
    return 0;
  }
  int rc = table(seg, ents, cap);
  /* Only a table laid out as the library lays it out, in the first TiB. */
  uint64_t idx = (off - SHMVAL__OBJ_HDR_OFF) / SHMVAL__BLOCK_ALIGN;
  if (rc == 0 && cache != NULL && (char *)*ents == (char *)seg + off + TC_DIR_REL &&
      idx <= TC_IDX_MASK)
    __atomic_store_n(
        cache, ((gen & TC_GEN_MASK) << TC_IDX_BITS | idx) << 6 | (uint64_t)__builtin_ctzll(*cap),
        __ATOMIC_RELAXED);
  return rc;
}

int shmval__dir_find(shmval__seg *seg, const char *name, size_t len, shmval__obj **out) {
  uint64_t off;
  shmval__obj hdr;
  int rc = probe(seg, name, len, name_hash(name, len), &off, &hdr);
  if (rc == 0)
    *out = (shmval__obj *)(void *)((char *)seg + off);
  return rc;
}

/* A probe between two equal, even readings of the generation; EAGAIN if none. */
static inline __attribute__((always_inline)) int probe_unlocked(shmval__seg *seg, uint64_t *cache,
                                                                const char *name, size_t len,
                                                                uint64_t h, uint64_t *off,
                                                                shmval__obj *hdr) {
  for (int tries = 0; tries < LOOKUP_TRIES; tries++) {
    uint64_t g = __atomic_load_n(&seg->dir_gen, __ATOMIC_ACQUIRE);
    if (g & 1) {
      shmval__prim_relax();
      continue;
    }
    uint64_t *ents, cap;
    int rc = table_cached(seg, cache, g, &ents, &cap);
    if (rc == 0)
      rc = probe_in(seg, ents, cap, name, len, h, off, hdr);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&seg->dir_gen, __ATOMIC_RELAXED) != g)
      continue;
    if (rc != SHMVAL_ECORRUPT)
      return rc;
  }
  return SHMVAL_EAGAIN;
}

int shmval__dir_lookup(shmval__seg *seg, uint64_t *cache, const char *name, size_t len,
                       bool can_lock, shmval__obj **out, shmval__obj *hdr) {
  uint64_t off, h = name_hash(name, len);
  int rc = probe_unlocked(seg, cache, name, len, h, &off, hdr);
  if (rc == SHMVAL_EAGAIN && can_lock) {
    if ((rc = shmval__dir_lock(seg)) != 0)
      return rc;
    rc = probe(seg, name, len, h, &off, hdr);
    shmval__dir_unlock(seg);
  }
  if (rc == 0)
    *out = (shmval__obj *)(void *)((char *)seg + off);
  return rc;
}

int shmval__dir_check(shmval__seg *seg) {
  uint64_t *ents, cap;
  for (int tries = 0; tries < LOOKUP_TRIES; tries++) {
    uint64_t g = __atomic_load_n(&seg->dir_gen, __ATOMIC_ACQUIRE);
    int rc = table(seg, &ents, &cap);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (rc == 0 || ((g & 1) == 0 && __atomic_load_n(&seg->dir_gen, __ATOMIC_RELAXED) == g))
      return rc;
    shmval__prim_sleep(0.001); /* a peer is replacing the table */
  }
  return SHMVAL_ECORRUPT;
}

/* Check one live entry @p e: it must lead a probe for its name to its object. */
static int verify_entry(shmval__seg *seg, uint64_t e, shmval__problem *pb) {
  shmval__obj h, found;
  uint64_t off = ent_obj(e), at;
  if (shmval__obj_peek(seg, off, &h) != 0)
    return shmval__bad(pb, off, "a directory entry points to no live object");
  if (h.name_off == 0 || h.kind == SHMVAL__KIND_DIR || h.kind == SHMVAL__KIND_ATTACH)
    return shmval__bad(pb, off, "a directory entry points to an unnamed object");
  const char *name = (const char *)seg + off + h.name_off;
  size_t len = strlen(name); /* obj_peek found its end inside the block */
  uint64_t hash = name_hash(name, len);
  if (!ent_tag_is(e, hash))
    return shmval__bad(pb, off, "a directory entry's hash tag does not match its name");
  if (len == 0 || len > SHMVAL_NAME_MAX || probe(seg, name, len, hash, &at, &found) != 0 ||
      at != off)
    return shmval__bad(pb, off, "a name in the directory is unreachable or held twice");
  return 0;
}

int shmval__dir_verify(shmval__seg *seg, uint64_t *named, shmval__problem *pb) {
  uint64_t *ents, cap, live = 0, tombs = 0;
  if (seg->dir_gen & 1)
    return shmval__bad(pb, seg->dir_off, "the directory was left mid-replacement");
  if (table(seg, &ents, &cap) != 0 || cap != seg->dir_cap)
    return shmval__bad(pb, seg->dir_off, "the directory table's header is not valid");
  for (uint64_t i = 0; i < cap; i++) {
    uint64_t e = ent_load(&ents[i]);
    int rc;
    if (e == ENT_TOMB)
      tombs++;
    else if (e != ENT_EMPTY && ++live && (rc = verify_entry(seg, e, pb)) != 0)
      return rc;
  }
  if (live != seg->dir_count || tombs != seg->dir_tombs)
    return shmval__bad(pb, seg->dir_off, "the directory's counters disagree with its table");
  if (live + tombs >= cap)
    return shmval__bad(pb, seg->dir_off, "the directory table has no empty entry");
  *named = live;
  return 0;
}

/*
 * Put entry @p e in the first free place for hash @p h of a table known to
 * have room; what was there before (ENT_EMPTY or ENT_TOMB).
 */
static uint64_t place(uint64_t *ents, uint64_t cap, uint64_t h, uint64_t e) {
  uint64_t i = h & (cap - 1);
  while (ent_live(ents[i]))
    i = (i + 1) & (cap - 1);
  uint64_t was = ents[i];
  ent_store(&ents[i], e);
  return was;
}

/* The hash an entry was placed under, from its object's name. */
static int ent_hash(shmval__seg *seg, uint64_t e, uint64_t *h) {
  shmval__obj *o;
  int rc = shmval__obj_at(seg, ent_obj(e), &o);
  if (rc != 0 || shmval__obj_name(o) == NULL)
    return SHMVAL_ECORRUPT;
  const char *name = shmval__obj_name(o);
  *h = name_hash(name, strlen(name));
  return 0;
}

/* Around a replacement of the table: lookups retry meanwhile. */
static void gen_begin(shmval__seg *seg) {
  uint64_t g = seg->dir_gen;
  if ((g & 1) == 0) /* odd already if a holder died mid-replacement */
    __atomic_store_n(&seg->dir_gen, g + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void gen_end(shmval__seg *seg) {
  __atomic_store_n(&seg->dir_gen, seg->dir_gen + 1, __ATOMIC_RELEASE);
}

/*
 * Move every live entry into a fresh table of @p newcap entries. The tags
 * keep only part of each hash, so the names are hashed again.
 */
static int resize(shmval__seg *seg, uint64_t newcap) {
  uint64_t *old, *ents, cap, h;
  shmval__obj *t, *oldt;
  int rc = table(seg, &old, &cap);
  if (rc != 0)
    return rc;
  oldt = (shmval__obj *)(void *)((char *)seg + seg->dir_off);
  rc = shmval__obj_alloc_table(seg, SHMVAL__KIND_DIR, sizeof(uint64_t), newcap, &t, &seg->dir_new);
  if (rc != 0)
    return rc == SHMVAL_ENOMEM ? SHMVAL_ENOSPC : rc;
  ents = (uint64_t *)(void *)((char *)t + t->payload_rel);
  for (uint64_t i = 0; i < cap; i++) {
    if (!ent_live(old[i]))
      continue;
    if ((rc = ent_hash(seg, old[i], &h)) != 0) {
      shmval__obj_free_table(t, &seg->dir_new);
      return rc;
    }
    place(ents, newcap, h, old[i]);
  }
  SHMVAL__CRASH_POINT();
  gen_begin(seg);
  SHMVAL__CRASH_POINT();
  __atomic_store_n(&seg->dir_off, t->self_off, __ATOMIC_RELEASE);
  SHMVAL__CRASH_POINT();
  seg->dir_cap = newcap;
  seg->dir_tombs = 0;
  SHMVAL__CRASH_POINT();
  shmval__obj_free_table(oldt, &seg->dir_new); /* the journal passes to the old table */
  SHMVAL__CRASH_POINT();
  gen_end(seg);
  return 0;
}

int shmval__dir_insert(shmval__seg *seg, shmval__obj *o) {
  const char *name = shmval__obj_name(o);
  uint64_t *ents, cap;
  if (name == NULL || o->self_off / SHMVAL__BLOCK_ALIGN > ENT_IDX_MASK)
    return SHMVAL_EINVAL;
  int rc = table(seg, &ents, &cap);
  if (rc != 0)
    return rc;
  /* Keep the load, tombstones included, under three quarters. */
  if ((seg->dir_count + seg->dir_tombs + 1) * 4 > cap * 3) {
    uint64_t newcap = (seg->dir_count + 1) * 2 > cap ? cap * 2 : cap;
    if ((rc = resize(seg, newcap)) != 0 || (rc = table(seg, &ents, &cap)) != 0)
      return rc;
  }
  uint64_t h = name_hash(name, strlen(name));
  if (place(ents, cap, h, ent_make(h, o->self_off)) == ENT_TOMB)
    seg->dir_tombs--;
  SHMVAL__CRASH_POINT();
  seg->dir_count++;
  return 0;
}

int shmval__dir_remove(shmval__seg *seg, shmval__obj *o) {
  const char *name = shmval__obj_name(o);
  uint64_t *ents, cap;
  int rc = table(seg, &ents, &cap);
  if (rc != 0 || name == NULL)
    return rc != 0 ? rc : SHMVAL_ENOENT;
  uint64_t h = name_hash(name, strlen(name));
  for (uint64_t i = h & (cap - 1), n = 0; n < cap; i = (i + 1) & (cap - 1), n++) {
    if (ents[i] == ENT_EMPTY)
      break;
    if (ent_live(ents[i]) && ent_obj(ents[i]) == o->self_off) {
      ent_store(&ents[i], ENT_TOMB);
      SHMVAL__CRASH_POINT();
      seg->dir_count--;
      seg->dir_tombs++;
      return 0;
    }
  }
  return SHMVAL_ENOENT;
}

uint64_t shmval__dir_init_bytes(void) {
  shmval__obj_layout lo;
  shmval__obj_plan((uint64_t)DIR_MIN * sizeof(uint64_t), 8, false, 0, &lo);
  return lo.block;
}

int shmval__dir_init(shmval__seg *seg) {
  shmval__obj *t;
  int rc = shmval__mutex_init(&seg->dir_lock);
  if (rc != 0)
    return rc;
  rc = shmval__obj_alloc_table(seg, SHMVAL__KIND_DIR, sizeof(uint64_t), DIR_MIN, &t, NULL);
  if (rc != 0)
    return rc;
  seg->dir_off = t->self_off;
  seg->dir_cap = DIR_MIN;
  seg->dir_count = seg->dir_tombs = seg->dir_gen = 0;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Repair after a holder of dir_lock died. */

typedef struct scan {
  uint64_t *named, *tables;
  size_t n_named, n_tables, cap_named, cap_tables;
  shmval__seg *seg;
  int rc;
} scan;

static int push(uint64_t **v, size_t *n, size_t *cap, uint64_t x) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    uint64_t *nv = realloc(*v, nc * sizeof *nv);
    if (nv == NULL)
      return SHMVAL_ENOMEM;
    *v = nv;
    *cap = nc;
  }
  (*v)[(*n)++] = x;
  return 0;
}

static int scan_block(void *ctx, uint64_t off, uint64_t size) {
  scan *sc = ctx;
  shmval__obj *o;
  (void)size;
  if (shmval__obj_at(sc->seg, off + SHMVAL__OBJ_HDR_OFF, &o) != 0)
    return 0; /* dead, half-made or not an object: not in the directory */
  if (o->kind == SHMVAL__KIND_DIR)
    return push(&sc->tables, &sc->n_tables, &sc->cap_tables, o->self_off);
  if (shmval__obj_name(o) != NULL)
    return push(&sc->named, &sc->n_named, &sc->cap_named, o->self_off);
  return 0;
}

/*
 * Lookups retry from the start, and for good if the rebuild fails: they then
 * take the lock and hear that the directory is not recoverable. A table its
 * maker died making is freed first if it never got its magic (the journal in
 * dir_new, reclaimed like an attacher's); a complete one is a table like any
 * other, which the rebuild frees.
 */
static int dir_rebuild(shmval__seg *seg) {
  scan sc = {.seg = seg};
  size_t blocks = 0, bytes = 0;
  int rc0 = shmval__reclaim_journal(seg, &seg->dir_new, &blocks, &bytes);
  if (rc0 != 0)
    return rc0;
  gen_begin(seg);
  int rc = shmval__heap_walk(seg, scan_block, &sc);
  uint64_t cap = DIR_MIN;
  while (rc == 0 && (sc.n_named + 1) * 4 > cap * 3)
    cap *= 2;
  shmval__obj *t = NULL;
  if (rc == 0)
    rc = shmval__obj_alloc_table(seg, SHMVAL__KIND_DIR, sizeof(uint64_t), cap, &t, &seg->dir_new);
  SHMVAL__CRASH_POINT();
  if (rc == 0) {
    /*
     * The new table is current before any older one, the current one
     * included, is freed: seg->dir_off always names a live table, which
     * openers check (a rebuild killed halfway must not make the segment
     * look corrupt to a process that would attach and finish it).
     */
    __atomic_store_n(&seg->dir_off, t->self_off, __ATOMIC_RELEASE);
    SHMVAL__CRASH_POINT();
    shmval__journal_set(&seg->dir_new, 0);
    seg->dir_cap = cap;
    seg->dir_count = seg->dir_tombs = 0;
    for (size_t i = 0; i < sc.n_tables; i++) {
      shmval__obj *old;
      if (shmval__obj_at(seg, sc.tables[i], &old) == 0)
        shmval__obj_free_table(old, &seg->dir_new);
      SHMVAL__CRASH_POINT();
    }
    for (size_t i = 0; rc == 0 && i < sc.n_named; i++) {
      shmval__obj *o;
      if (shmval__obj_at(seg, sc.named[i], &o) == 0)
        rc = shmval__dir_insert(seg, o);
    }
  }
  SHMVAL__CRASH_POINT();
  if (rc == 0)
    gen_end(seg);
  free(sc.named);
  free(sc.tables);
  return rc;
}

void shmval__dir_note_creator(shmval__seg *seg, const uint64_t *journal) {
  __atomic_store_n(&seg->dir_op_j, shmval__journal_off(seg, journal), __ATOMIC_RELAXED);
}

/*
 * After a rebuild: a dead holder that was creating a named object and had
 * published it made a committed object (the rebuild listed it), which its
 * journal must stop naming before anyone can destroy it and reuse the block.
 */
static void settle_creator(shmval__seg *seg) {
  uint64_t *j = shmval__journal_at(seg, seg->dir_op_j), v;
  shmval__obj *o;
  seg->dir_op_j = 0;
  if (j == NULL ||
      ((v = __atomic_load_n(j, __ATOMIC_ACQUIRE)) & SHMVAL__J_STAGE) != SHMVAL__J_CREATE)
    return;
  if (shmval__obj_at(seg, (v & ~SHMVAL__J_STAGE) + SHMVAL__OBJ_HDR_OFF, &o) == 0 &&
      shmval__obj_name(o) != NULL)
    __atomic_store_n(j, 0, __ATOMIC_RELEASE);
}

/* What the directory lock's next holder does after a death: rebuild, then settle a creator. */
static int dir_repair(void *seg) {
  if (dir_rebuild(seg) != 0)
    return -1;
  settle_creator(seg);
  return 0;
}

int shmval__dir_lock(shmval__seg *seg) {
  return shmval__robust_lock(&seg->dir_lock, dir_repair, seg);
}

void shmval__dir_unlock(shmval__seg *seg) { pthread_mutex_unlock(&seg->dir_lock); }
