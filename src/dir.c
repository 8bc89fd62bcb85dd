/*
 * The name directory of a named segment: an open-addressing hash table of
 * (hash, object offset) pairs, kept in a heap block of its own and guarded by
 * the segment's robust dir_lock. Names live in their objects' blocks.
 *
 * Every entry read from shared memory is validated before it is followed.
 * The table is derived data: an object is fully published (magic last) before
 * its entry is added, so after a holder of dir_lock dies the table is rebuilt
 * from a walk of the heap's live named objects.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ENT_EMPTY UINT64_C(0)
#define ENT_TOMB UINT64_C(1)
#define DIR_MIN 16u

typedef struct dir_ent {
  uint64_t hash;
  uint64_t obj; /* object header offset, or ENT_EMPTY / ENT_TOMB */
} dir_ent;

static uint64_t name_hash(const char *s, size_t n) {
  uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a, then a finaliser */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * UINT64_C(0x100000001b3);
  h = (h ^ (h >> 33)) * UINT64_C(0xff51afd7ed558ccd);
  return h ^ (h >> 33);
}

int shmval__dir_name_ok(const char *name, size_t *len) {
  if (name == NULL)
    return SHMVAL_EINVAL;
  size_t n = strnlen(name, SHMVAL_NAME_MAX + 1);
  if (n == 0 || n > SHMVAL_NAME_MAX)
    return SHMVAL_EINVAL;
  *len = n;
  return 0;
}

/* The validated table: its entries and capacity. */
static int table(shmval__seg *seg, dir_ent **ents, uint64_t *cap) {
  shmval__obj *t;
  if (seg->dir_off == 0 || shmval__obj_at(seg, seg->dir_off, &t) != 0 ||
      t->kind != SHMVAL__KIND_DIR || t->elem_size != sizeof(dir_ent) || t->length != seg->dir_cap ||
      seg->dir_cap < DIR_MIN || (seg->dir_cap & (seg->dir_cap - 1)) != 0)
    return SHMVAL_ECORRUPT;
  *ents = (dir_ent *)(void *)((char *)t + t->payload_rel);
  *cap = seg->dir_cap;
  return 0;
}

/* The live object an entry names; ECORRUPT for an entry that points astray. */
static int entry_obj(shmval__seg *seg, const dir_ent *e, shmval__obj **out) {
  int rc = shmval__obj_at(seg, e->obj, out);
  if (rc != 0 || shmval__obj_name(*out) == NULL)
    return SHMVAL_ECORRUPT;
  return 0;
}

int shmval__dir_find(shmval__seg *seg, const char *name, size_t len, shmval__obj **out) {
  dir_ent *ents;
  uint64_t cap, h = name_hash(name, len);
  int rc = table(seg, &ents, &cap);
  if (rc != 0)
    return rc;
  for (uint64_t i = h & (cap - 1), n = 0; n < cap; i = (i + 1) & (cap - 1), n++) {
    if (ents[i].obj == ENT_EMPTY)
      return SHMVAL_ENOENT;
    if (ents[i].obj == ENT_TOMB || ents[i].hash != h)
      continue;
    shmval__obj *o;
    if ((rc = entry_obj(seg, &ents[i], &o)) != 0)
      return rc;
    const char *on = shmval__obj_name(o);
    if (strncmp(on, name, len) == 0 && on[len] == '\0') {
      *out = o;
      return 0;
    }
  }
  return SHMVAL_ENOENT;
}

/*
 * Put (h, off) in the first free place of a table known to have room; what
 * was there before (ENT_EMPTY or ENT_TOMB).
 */
static uint64_t place(dir_ent *ents, uint64_t cap, uint64_t h, uint64_t off) {
  uint64_t i = h & (cap - 1);
  while (ents[i].obj != ENT_EMPTY && ents[i].obj != ENT_TOMB)
    i = (i + 1) & (cap - 1);
  uint64_t was = ents[i].obj;
  ents[i].hash = h;
  ents[i].obj = off;
  return was;
}

/* Move every live entry into a fresh table of @p newcap entries. */
static int resize(shmval__seg *seg, uint64_t newcap) {
  dir_ent *old, *ents;
  uint64_t cap;
  shmval__obj *t, *oldt;
  int rc = table(seg, &old, &cap);
  if (rc != 0)
    return rc;
  oldt = (shmval__obj *)(void *)((char *)seg + seg->dir_off);
  rc = shmval__obj_alloc_table(seg, SHMVAL__KIND_DIR, sizeof(dir_ent), newcap, &t);
  if (rc != 0)
    return rc == SHMVAL_ENOMEM ? SHMVAL_ENOSPC : rc;
  ents = (dir_ent *)(void *)((char *)t + t->payload_rel);
  for (uint64_t i = 0; i < cap; i++)
    if (old[i].obj != ENT_EMPTY && old[i].obj != ENT_TOMB)
      place(ents, newcap, old[i].hash, old[i].obj);
  seg->dir_off = t->self_off;
  seg->dir_cap = newcap;
  seg->dir_tombs = 0;
  shmval__obj_free_table(oldt);
  return 0;
}

int shmval__dir_insert(shmval__seg *seg, shmval__obj *o) {
  const char *name = shmval__obj_name(o);
  dir_ent *ents;
  uint64_t cap;
  int rc = table(seg, &ents, &cap);
  if (rc != 0)
    return rc;
  /* Keep the load, tombstones included, under three quarters. */
  if ((seg->dir_count + seg->dir_tombs + 1) * 4 > cap * 3) {
    uint64_t newcap = (seg->dir_count + 1) * 2 > cap ? cap * 2 : cap;
    if ((rc = resize(seg, newcap)) != 0 || (rc = table(seg, &ents, &cap)) != 0)
      return rc;
  }
  if (place(ents, cap, name_hash(name, strlen(name)), o->self_off) == ENT_TOMB)
    seg->dir_tombs--;
  seg->dir_count++;
  return 0;
}

int shmval__dir_remove(shmval__seg *seg, shmval__obj *o) {
  const char *name = shmval__obj_name(o);
  dir_ent *ents;
  uint64_t cap;
  int rc = table(seg, &ents, &cap);
  if (rc != 0 || name == NULL)
    return rc != 0 ? rc : SHMVAL_ENOENT;
  uint64_t h = name_hash(name, strlen(name));
  for (uint64_t i = h & (cap - 1), n = 0; n < cap; i = (i + 1) & (cap - 1), n++) {
    if (ents[i].obj == ENT_EMPTY)
      break;
    if (ents[i].obj == o->self_off) {
      ents[i].obj = ENT_TOMB;
      seg->dir_count--;
      seg->dir_tombs++;
      return 0;
    }
  }
  return SHMVAL_ENOENT;
}

int shmval__dir_init(shmval__seg *seg) {
  shmval__obj *t;
  int rc = shmval__mutex_init(&seg->dir_lock);
  if (rc != 0)
    return rc;
  rc = shmval__obj_alloc_table(seg, SHMVAL__KIND_DIR, sizeof(dir_ent), DIR_MIN, &t);
  if (rc != 0)
    return rc;
  seg->dir_off = t->self_off;
  seg->dir_cap = DIR_MIN;
  seg->dir_count = seg->dir_tombs = 0;
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

static int dir_rebuild(shmval__seg *seg) {
  scan sc = {.seg = seg};
  int rc = shmval__heap_walk(seg, scan_block, &sc);
  uint64_t cap = DIR_MIN;
  while (rc == 0 && (sc.n_named + 1) * 4 > cap * 3)
    cap *= 2;
  shmval__obj *t = NULL;
  if (rc == 0)
    rc = shmval__obj_alloc_table(seg, SHMVAL__KIND_DIR, sizeof(dir_ent), cap, &t);
  if (rc == 0) {
    /* Every older table, the current one included, is replaced. */
    for (size_t i = 0; i < sc.n_tables; i++) {
      shmval__obj *old;
      if (shmval__obj_at(seg, sc.tables[i], &old) == 0)
        shmval__obj_free_table(old);
    }
    seg->dir_off = t->self_off;
    seg->dir_cap = cap;
    seg->dir_count = seg->dir_tombs = 0;
    for (size_t i = 0; rc == 0 && i < sc.n_named; i++) {
      shmval__obj *o;
      if (shmval__obj_at(seg, sc.named[i], &o) == 0)
        rc = shmval__dir_insert(seg, o);
    }
  }
  free(sc.named);
  free(sc.tables);
  return rc;
}

int shmval__dir_lock(shmval__seg *seg) {
  int rc = pthread_mutex_lock(&seg->dir_lock);
  if (SHMVAL__LIKELY(rc == 0))
    return 0;
  if (rc == EOWNERDEAD) {
    if (dir_rebuild(seg) != 0) {
      pthread_mutex_unlock(&seg->dir_lock); /* fenced: ENOTRECOVERABLE from now on */
      return SHMVAL_ECORRUPT;
    }
    pthread_mutex_consistent(&seg->dir_lock);
    return 0;
  }
  return rc == ENOTRECOVERABLE ? SHMVAL_ENOTRECOVERABLE : -rc;
}

void shmval__dir_unlock(shmval__seg *seg) { pthread_mutex_unlock(&seg->dir_lock); }
