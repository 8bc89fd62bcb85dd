/*
 * Shared dicts: an open-addressing hash table of byte-string keys in a
 * segment, read without locks, written under striped robust locks.
 *
 * The dict's object holds a header (shmval__dict): the current table's
 * offset, a generation stepped whenever the table is replaced, and 16
 * stripes, each a robust mutex with a redo record. The table is a block of
 * slots (shmval__dslot); a slot's control word carries its state, a version
 * and the top 24 bits of its key's hash, whose low 4 bits pick the stripe.
 * A key and value of 16 bytes or less together live in the slot itself;
 * larger ones in an entry block of the heap that the slot points to.
 *
 * Readers: hash, probe, and copy each candidate slot between two loads of
 * its control word (a sequence lock per slot), comparing and copying an
 * entry block's bytes with single loads; a slot that changed is read again.
 * A writer frees a replaced entry only after the slot stopped pointing at
 * it, so a reader that copied a reused block sees the slot's version move.
 * The table's generation, read before and after, covers a table freed by a
 * resize under the reader. Every offset read from shared memory is checked
 * against the heap's end before it is followed.
 *
 * Writers lock the key's stripe, so a key has one writer at a time; slots
 * are shared by the stripes, so a writer claims an empty or deleted slot
 * with a compare-and-swap. Before touching a slot the writer fills in its
 * stripe's redo record (slot, control word before and after, data, counts
 * after) and sets op; the entry it allocated and the one it replaces are
 * crash journals in the record (tagged words: see shmval__jword). The
 * stripe lock's next holder after a death re-applies a complete record if
 * the slot shows it was the dead writer's (or frees the new entry if not),
 * so every key is at its old or its new value and no block is lost.
 *
 * A resize (grow at 80% of the slots used, live or deleted; shrink when
 * fewer than 1/16 are live; the new table is 40% full) takes rs_mu and
 * every stripe, builds the new table beside the old, publishes it with one
 * store and steps the generation, then frees the old: readers go on reading
 * the old table meanwhile and never wait. rs_new and rs_old journal the
 * two tables, settled by rs_mu's next holder after a death.
 *
 * Lock order: rs_mu, then stripes in index order, then the directory lock
 * (destroy), then the heap lock.
 */
#include "dict.h"
#include "object.h"
#include "heap.h"
#include "journal.h"
#include "objhdr.h"
#include "lock.h"
#include "prim.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define TAB_MIN 8u
#define NSTRIPES SHMVAL__DICT_STRIPES
#define SPIN_PAUSES 64u
#define SPIN_YIELDS 100u
#define FOREACH_FREE_TRIES 3u
#define ENT_HDR (8u + sizeof(shmval__dent)) /* from the block start to the key */

/* Internal results, never returned to callers. */
enum { R_NOMATCH = 1000, R_STUCK, R_RESIZE };

/* ------------------------------------------------------------------------ */
/* Words and bytes in shared memory: single loads and stores. */

static inline uint64_t ld(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint64_t lda(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void st(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void str(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static inline uint64_t align8(uint64_t n) { return (n + 7) & ~UINT64_C(7); }

/*
 * Copy @p n bytes from 8-aligned shared memory that a writer may be reusing:
 * word loads (the caller validates what it read). The last word is read
 * whole; entries are padded to 64 bytes, so it lies inside the block.
 */
static void shm_read(void *dst, const char *src, size_t n) {
  char *d = dst;
  for (; n >= 8; n -= 8, src += 8, d += 8) {
    uint64_t w = ld((const uint64_t *)(const void *)src);
    memcpy(d, &w, 8);
  }
  if (n != 0) {
    uint64_t w = ld((const uint64_t *)(const void *)src);
    memcpy(d, &w, n);
  }
}

/* Write @p n bytes to 8-aligned shared memory with word stores (a tail word padded with zeros). */
static void shm_write(char *dst, const void *src, size_t n) {
  const char *s = src;
  for (; n >= 8; n -= 8, s += 8, dst += 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    st((uint64_t *)(void *)dst, w);
  }
  if (n != 0) {
    uint64_t w = 0;
    memcpy(&w, s, n);
    st((uint64_t *)(void *)dst, w);
  }
}

/* Whether @p n bytes of 8-aligned shared memory equal @p key. */
static bool shm_eq(const char *shm, const void *key, size_t n) {
  const char *k = key;
  for (; n >= 8; n -= 8, shm += 8, k += 8) {
    uint64_t a = ld((const uint64_t *)(const void *)shm), b;
    memcpy(&b, k, 8);
    if (a != b)
      return false;
  }
  if (n == 0)
    return true;
  uint64_t a = ld((const uint64_t *)(const void *)shm), b = 0;
  memcpy(&b, k, n);
  return memcmp(&a, &b, n) == 0;
}

/* ------------------------------------------------------------------------ */
/* Hashing and control words. */

static inline uint64_t tag_of(uint64_t h) { return h >> SHMVAL__DS_TAG_SHIFT; }
static inline unsigned stripe_of(uint64_t tag) { return (unsigned)(tag % NSTRIPES); }
static inline uint64_t c_state(uint64_t c) { return c & SHMVAL__DS_STATE; }
static inline uint64_t c_tag(uint64_t c) { return c >> SHMVAL__DS_TAG_SHIFT; }
static inline unsigned c_klen(uint64_t c) { return (unsigned)(c >> SHMVAL__DS_KLEN_SHIFT) & 31u; }
static inline unsigned c_vlen(uint64_t c) { return (unsigned)(c >> SHMVAL__DS_VLEN_SHIFT) & 31u; }

/* The control word after @p old: the next version, with the given contents. */
static uint64_t c_next(uint64_t old, uint64_t state, unsigned klen, unsigned vlen, uint64_t tag) {
  uint64_t ver =
      ((old & SHMVAL__DS_VER_MASK) + (UINT64_C(1) << SHMVAL__DS_VER_SHIFT)) & SHMVAL__DS_VER_MASK;
  return state | ((uint64_t)klen << SHMVAL__DS_KLEN_SHIFT) |
         ((uint64_t)vlen << SHMVAL__DS_VLEN_SHIFT) | ver | (tag << SHMVAL__DS_TAG_SHIFT);
}

/* ------------------------------------------------------------------------ */
/* Handles, tables and entries. */

typedef struct dref {
  shmval__obj *o;
  shmval__seg *seg;
  shmval__dict *d;
  uint32_t vtype, vsize; /* the value type, validated when the reference was made */
  bool ro;
  bool repaired; /* a stripe's previous holder died: settle the resize record after */
} dref;

/* Whether a dict's value type and size agree with each other and its object header. */
static bool vtype_ok(const shmval__obj *o, uint32_t vtype, uint32_t vsize) {
  size_t size, align;
  if (vtype != o->type)
    return false;
  if (vtype == 0)
    return vsize == 0;
  if (vtype == SHMVAL_RECORD)
    return vsize != 0 && vsize <= SHMVAL__RECORD_MAX;
  return shmval__type_info((shm_type)vtype, &size, &align) && size == vsize;
}

static int dict_ref(const shm_dict *h, bool write, dref *r) {
  shmval__obj *o = shmval__obj_of(h);
  int rc = shmval__obj_check(o, SHMVAL__KIND_DICT);
  if (rc != 0)
    return rc;
  r->ro = shmval__is_ro(h);
  if (write && r->ro)
    return SHMVAL_EACCES;
  /*
   * The header was validated when the handle was made, but shared memory can
   * change under it (a damaged heap handing out a block that overlaps it):
   * its mutexes must stay on a cache line.
   */
  char *payload = shmval__payload(o);
  if (((uintptr_t)payload & (SHMVAL__CACHELINE - 1)) != 0)
    return SHMVAL_ECORRUPT;
  r->o = o;
  r->seg = shmval__obj_seg(o);
  r->d = (shmval__dict *)(void *)payload;
  /* Read once and checked: a damaged size must not become a huge buffer. */
  r->vtype = __atomic_load_n(&r->d->vtype, __ATOMIC_RELAXED);
  r->vsize = __atomic_load_n(&r->d->vsize, __ATOMIC_RELAXED);
  if (!vtype_ok(o, r->vtype, r->vsize))
    return SHMVAL_ECORRUPT;
  r->repaired = false;
  return 0;
}

static inline bool dying(const shmval__dict *d) {
  return __atomic_load_n(&d->dying, __ATOMIC_ACQUIRE) != 0;
}

typedef struct tview {
  shmval__dslot *s;
  uint64_t mask, off;
} tview;

/*
 * The table whose object header is at @p off, checked from single loads: 0 or
 * ECORRUPT. It must not overlap the header of its dict @p owner, whose locks
 * a slot written there would overwrite.
 */
static int tab_view(shmval__seg *seg, const shmval__obj *owner, uint64_t off, tview *t) {
  uint64_t end = shmval__heap_end(seg);
  if (off < seg->heap_start + SHMVAL__OBJ_HDR_OFF || off > end - SHMVAL__BLOCK_ALIGN ||
      (off & (SHMVAL__BLOCK_ALIGN - 1)) != SHMVAL__OBJ_HDR_OFF)
    return SHMVAL_ECORRUPT;
  shmval__obj *o = (shmval__obj *)(void *)((char *)seg + off);
  if (atomic_load_explicit(&o->magic, memory_order_acquire) != SHMVAL__OBJ_MAGIC)
    return SHMVAL_ECORRUPT;
  uint8_t kind = __atomic_load_n(&o->kind, __ATOMIC_RELAXED);
  uint64_t len = __atomic_load_n(&o->length, __ATOMIC_RELAXED);
  uint32_t prel = __atomic_load_n(&o->payload_rel, __ATOMIC_RELAXED);
  if (kind != SHMVAL__KIND_DICT_TAB || len < TAB_MIN || (len & (len - 1)) != 0 ||
      prel < sizeof *o || prel > SHMVAL__CACHELINE || (prel & 7) != 0 ||
      len > (end - off - prel) / sizeof(shmval__dslot))
    return SHMVAL_ECORRUPT;
  uint64_t lo = owner->self_off - SHMVAL__OBJ_HDR_OFF,
           hi = owner->self_off + owner->payload_rel + sizeof(shmval__dict);
  if (off - SHMVAL__OBJ_HDR_OFF < hi && off + prel + len * sizeof(shmval__dslot) > lo)
    return SHMVAL_ECORRUPT;
  t->s = (shmval__dslot *)(void *)((char *)o + prel);
  t->mask = len - 1;
  t->off = off;
  return 0;
}

/* An entry block, checked: its key and value and their lengths. */
typedef struct ent {
  const char *key, *val;
  uint64_t klen, vlen;
} ent;

static int ent_at(shmval__seg *seg, uint64_t off, ent *e) {
  uint64_t end = shmval__heap_end(seg);
  if (off < seg->heap_start || off > end - SHMVAL__BLOCK_ALIGN ||
      (off & (SHMVAL__BLOCK_ALIGN - 1)) != 0)
    return SHMVAL_ECORRUPT;
  const char *b = (const char *)seg + off;
  uint64_t size = ld((const uint64_t *)(const void *)b) & ~SHMVAL__BLK_FLAGS;
  uint64_t w1 = ld((const uint64_t *)(const void *)(b + 8));
  uint64_t vlen = ld((const uint64_t *)(const void *)(b + 16));
  uint32_t magic = (uint32_t)w1, klen = (uint32_t)(w1 >> 32);
  if (size < SHMVAL__BLOCK_ALIGN || size > end - off || magic != SHMVAL__DENT_MAGIC ||
      klen > SHMVAL_KEY_MAX)
    return SHMVAL_ECORRUPT;
  uint64_t vat = align8(ENT_HDR + klen);
  if (vat > size || vlen > size - vat)
    return SHMVAL_ECORRUPT;
  e->key = b + ENT_HDR;
  e->val = b + vat;
  e->klen = klen;
  e->vlen = vlen;
  return 0;
}

/*
 * Whether the live slot (@p c, @p w) holds @p key: R_NOMATCH, or 0 / ENOBUFS
 * with its value copied to @p buf when it fits; ECORRUPT for a bad entry.
 */
/* Whether an inline key (a private copy) is @p key: 8-byte keys without a call. */
static inline bool inline_eq(const char *b, const void *key, unsigned kl) {
  if (kl == 8) {
    uint64_t x, y;
    memcpy(&x, b, 8);
    memcpy(&y, key, 8);
    return x == y;
  }
  return kl == 0 || memcmp(b, key, kl) == 0;
}

static int match_copy(shmval__seg *seg, uint64_t c, const uint64_t w[2], uint64_t h,
                      const void *key, size_t klen, void *buf, size_t cap, size_t *vlen) {
  if (c_state(c) == SHMVAL__DS_INLINE) {
    unsigned kl = c_klen(c), vl = c_vlen(c);
    char b[16];
    memcpy(b, w, 16);
    if (kl + vl > SHMVAL__DS_INLINE_MAX)
      return SHMVAL_ECORRUPT;
    if (kl != klen || !inline_eq(b, key, kl))
      return R_NOMATCH;
    *vlen = vl;
    if (vl > cap)
      return SHMVAL_ENOBUFS;
    if (vl != 0 && buf != NULL)
      memcpy(buf, b + kl, vl);
    return 0;
  }
  if (w[1] != h)
    return R_NOMATCH;
  ent e;
  if (ent_at(seg, w[0], &e) != 0)
    return SHMVAL_ECORRUPT;
  if (e.klen != klen || !shm_eq(e.key, key, klen))
    return R_NOMATCH;
  *vlen = (size_t)e.vlen;
  if (e.vlen > cap)
    return SHMVAL_ENOBUFS;
  shm_read(buf, e.val, (size_t)e.vlen);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Reading a slot without a lock. */

enum { SNAP_END, SNAP_SKIP, SNAP_LIVE, SNAP_STUCK };

/* Wait a little for a busy slot: false after a long wait (its writer may be dead). */
static bool busy_wait(unsigned spin) {
  if (spin < SPIN_PAUSES)
    shmval__prim_relax();
  else if (spin < SPIN_PAUSES + SPIN_YIELDS)
    sched_yield();
  else
    return false;
  return true;
}

/*
 * Read slot @p s: SNAP_END (empty), SNAP_SKIP (deleted, or another key's
 * when @p all is false), SNAP_LIVE with its control word and data in *c and
 * @p w (valid if same() holds after they were used), or SNAP_STUCK.
 */
static int snap(shmval__dslot *s, uint64_t tag, bool all, uint64_t *c, uint64_t w[2]) {
  for (unsigned spin = 0;; spin++) {
    uint64_t c1 = lda(&s->ctl);
    bool mine = all || c_tag(c1) == tag;
    if (!(c1 & SHMVAL__DS_BUSY)) {
      if (c_state(c1) == SHMVAL__DS_EMPTY)
        return SNAP_END;
      if (c_state(c1) == SHMVAL__DS_TOMB || !mine)
        return SNAP_SKIP;
      w[0] = ld(&s->w[0]);
      w[1] = ld(&s->w[1]);
      *c = c1;
      return SNAP_LIVE;
    }
    if (!mine)
      return SNAP_SKIP;
    if (!busy_wait(spin))
      return SNAP_STUCK;
  }
}

/* After the reads of a snapshot: whether the slot still has control word @p c. */
static inline bool same(const shmval__dslot *s, uint64_t c) {
  atomic_thread_fence(memory_order_acquire);
  return ld(&s->ctl) == c;
}

static int probe_get(dref *r, const tview *t, uint64_t h, const void *key, size_t klen, void *buf,
                     size_t cap, size_t *vlen, const shmval__dslot **stuck) {
  uint64_t tag = tag_of(h), i = h & t->mask;
  for (uint64_t n = 0; n <= t->mask; n++, i = (i + 1) & t->mask) {
    shmval__dslot *s = &t->s[i];
    for (;;) {
      uint64_t c, w[2];
      int k = snap(s, tag, false, &c, w);
      if (k == SNAP_END)
        return SHMVAL_ENOENT;
      if (k == SNAP_STUCK) {
        *stuck = s;
        return R_STUCK;
      }
      if (k == SNAP_SKIP)
        break;
      int rc = match_copy(r->seg, c, w, h, key, klen, buf, cap, vlen);
      if (!same(s, c))
        continue; /* changed under the copy: read it again */
      if (rc != R_NOMATCH)
        return rc;
      break;
    }
  }
  return SHMVAL_ENOENT;
}

/* ------------------------------------------------------------------------ */
/* Locks and their repair. */

typedef struct rep_ctx {
  dref *r;
  unsigned si;
} rep_ctx;

/* Re-apply a stripe's recorded change to its slot: whether the slot now holds it. */
static bool apply(const tview *t, shmval__dstripe *sp) {
  shmval__dslot *s = &t->s[ld(&sp->slot) & t->mask];
  uint64_t fin = ld(&sp->new_ctl), busy = fin | SHMVAL__DS_BUSY, c = lda(&s->ctl);
  uint64_t old = ld(&sp->old_ctl);
  if (c == fin)
    return true;
  if (c != busy && c != old) {
    /*
     * A key's slot is this stripe's alone and leaves its old state only
     * through this change: an update or a delete that is neither before nor
     * during it is done (a delete's tombstone may since have been taken by
     * another stripe's key). A claim of a free slot that shows neither was
     * lost to another stripe's writer.
     */
    return c_state(old) >= SHMVAL__DS_INLINE;
  }
  if (c == old && c_state(old) >= SHMVAL__DS_INLINE) {
    /* A live key's slot: no other writer changes it, so no compare-and-swap. */
    str(&s->ctl, busy);
  } else if (c == old && !__atomic_compare_exchange_n(&s->ctl, &c, busy, false, __ATOMIC_ACQ_REL,
                                                      __ATOMIC_RELAXED)) {
    return false; /* a claim lost just now */
  }
  SHMVAL__CRASH_POINT();
  atomic_thread_fence(memory_order_release);
  st(&s->w[0], ld(&sp->w0));
  st(&s->w[1], ld(&sp->w1));
  SHMVAL__CRASH_POINT();
  str(&s->ctl, fin);
  return true;
}

/* After the slot holds the recorded change: counts, journals, then the record closes. */
static int commit(shmval__seg *seg, shmval__dstripe *sp, bool dead_writer) {
  int rc = 0;
  __atomic_store_n(&sp->count, ld(&sp->count_after), __ATOMIC_RELAXED);
  __atomic_store_n(&sp->used, ld(&sp->used_after), __ATOMIC_RELAXED);
  str(&sp->jnew.word, 0); /* the new entry is the slot's now */
  SHMVAL__CRASH_POINT();
  uint64_t old = ld(&sp->jold.word);
  if (old != 0)
    rc = dead_writer ? shmval__heap_free_journaled(seg, &sp->jold.word)
                     : shmval__heap_free(seg, old & ~SHMVAL__J_STAGE, &sp->jold.word);
  SHMVAL__CRASH_POINT();
  str(&sp->op, 0);
  return rc;
}

/* Drop a change that did not reach its slot: the new entry goes, the old one stays. */
static int cancel(shmval__seg *seg, shmval__dstripe *sp) {
  str(&sp->jold.word, 0);
  str(&sp->op, 0);
  return ld(&sp->jnew.word) != 0 ? shmval__heap_free_journaled(seg, &sp->jnew.word) : 0;
}

/*
 * A stripe's holder died: complete its recorded change if the slot shows it
 * got that far (the resize that could have replaced the table needs this
 * stripe, and repairs it first), else drop it.
 */
static int stripe_repair(void *ctx) {
  rep_ctx *x = ctx;
  dref *r = x->r;
  shmval__dstripe *sp = &r->d->stripe[x->si];
  tview t;
  r->repaired = true;
  uint64_t off = ld(&r->d->tab);
  if (ld(&sp->op) != 0 && off != 0 && tab_view(r->seg, r->o, off, &t) == 0 && apply(&t, sp))
    return commit(r->seg, sp, true);
  return cancel(r->seg, sp);
}

static int stripe_lock(dref *r, unsigned si) {
  pthread_mutex_t *m = &r->d->stripe[si].mu;
  if (!shmval__mutex_sane(m))
    return SHMVAL_ECORRUPT;
  rep_ctx x = {r, si};
  return shmval__robust_lock(m, stripe_repair, &x);
}

static void stripe_unlock(dref *r, unsigned si) { pthread_mutex_unlock(&r->d->stripe[si].mu); }

/*
 * rs_mu's holder died in a resize, a clear or a destroy: keep the table
 * that is current and free the other one its journals name.
 */
static int rs_repair(void *ctx) {
  dref *r = ctx;
  shmval__dict *d = r->d;
  uint64_t cur = ld(&d->tab), nw = ld(&d->rs_new.word) & ~SHMVAL__J_STAGE;
  uint64_t old = ld(&d->rs_old.word) & ~SHMVAL__J_STAGE;
  if (nw != 0) {
    if (nw + SHMVAL__OBJ_HDR_OFF != cur) {
      /* Not published: the new table goes, the old one stays. */
      str(&d->rs_old.word, 0);
      return shmval__heap_free_journaled(r->seg, &d->rs_new.word);
    }
    str(&d->rs_new.word, 0);
  }
  /* Published (or a destroy's table dropped): the old one goes, unless it is current. */
  if (old != 0 && old + SHMVAL__OBJ_HDR_OFF != cur)
    return shmval__heap_free_journaled(r->seg, &d->rs_old.word);
  str(&d->rs_old.word, 0);
  return 0;
}

static int rs_lock(dref *r) {
  if (!shmval__mutex_sane(&r->d->rs_mu))
    return SHMVAL_ECORRUPT;
  return shmval__robust_lock(&r->d->rs_mu, rs_repair, r);
}

/* After a dead stripe holder was found: settle what a dead resizer may have left too. */
static void settle(dref *r) {
  if (rs_lock(r) == 0)
    pthread_mutex_unlock(&r->d->rs_mu);
}

/*
 * A reader found slot @p s busy for long (table generation @p gen): its
 * writer may be dead, and its stripe's lock repairs it. A slot still busy
 * once that lock was taken and let go has no writer at all: ECORRUPT.
 */
static int unstick(dref *r, const shmval__dslot *s, uint64_t gen) {
  if (r->ro)
    return SHMVAL_EAGAIN;
  unsigned si = stripe_of(c_tag(ld(&s->ctl)));
  int rc = stripe_lock(r, si);
  if (rc != 0)
    return rc;
  bool stuck = (ld(&s->ctl) & SHMVAL__DS_BUSY) != 0 && ld(&r->d->tab_gen) == gen;
  stripe_unlock(r, si);
  if (r->repaired)
    settle(r);
  return stuck ? SHMVAL_ECORRUPT : 0;
}

static int lock_all(dref *r) {
  int rc = rs_lock(r);
  if (rc != 0)
    return rc;
  for (unsigned i = 0; i < NSTRIPES; i++) {
    if ((rc = stripe_lock(r, i)) != 0) {
      while (i-- > 0)
        stripe_unlock(r, i);
      pthread_mutex_unlock(&r->d->rs_mu);
      return rc;
    }
  }
  return 0;
}

static void unlock_all(dref *r) {
  for (unsigned i = NSTRIPES; i-- > 0;)
    stripe_unlock(r, i);
  pthread_mutex_unlock(&r->d->rs_mu);
}

/* ------------------------------------------------------------------------ */
/* Reads. */

static int check_key(const void *key, size_t klen) {
  return (key == NULL && klen != 0) || klen > SHMVAL_KEY_MAX ? SHMVAL_EINVAL : 0;
}

/* Look @p key up without a lock; copy its value out when it fits. */
static int dict_read(const shm_dict *h, const void *key, size_t klen, void *buf, size_t cap,
                     size_t *vlen) {
  dref r;
  int rc = dict_ref(h, false, &r);
  if (rc != 0 || (rc = check_key(key, klen)) != 0)
    return rc;
  shmval__dict *d = r.d;
  uint64_t hh = shmval__hash(ld(&d->seed), key, klen);
  for (;;) {
    uint64_t gen = lda(&d->tab_gen), off = lda(&d->tab);
    const shmval__dslot *stuck = NULL;
    tview t;
    if (dying(d))
      return SHMVAL_ESTALE;
    rc = off == 0 ? SHMVAL_ENOENT : tab_view(r.seg, r.o, off, &t);
    if (rc == 0)
      rc = probe_get(&r, &t, hh, key, klen, buf, cap, vlen, &stuck);
    atomic_thread_fence(memory_order_acquire);
    bool moved = ld(&d->tab_gen) != gen;
    if (rc == R_STUCK) {
      if ((rc = unstick(&r, stuck, gen)) != 0)
        return rc;
    } else if (!moved) {
      /* A dict destroyed under the reader is stale, not corrupt. */
      if (rc == SHMVAL_ECORRUPT && shmval__obj_check(r.o, SHMVAL__KIND_DICT) != 0)
        return SHMVAL_ESTALE;
      return rc;
    }
    if ((rc = shmval__obj_check(r.o, SHMVAL__KIND_DICT)) != 0)
      return rc;
  }
}

int shm_dict_get(shm_dict *d, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen) {
  size_t n;
  if (buf == NULL && cap != 0)
    return SHMVAL_EINVAL;
  int rc = dict_read(d, key, klen, buf, cap, &n);
  if ((rc == 0 || rc == SHMVAL_ENOBUFS) && vlen != NULL)
    *vlen = n;
  return rc;
}

int shm_dict_contains(shm_dict *d, const void *key, size_t klen) {
  size_t n;
  int rc = dict_read(d, key, klen, NULL, 0, &n);
  if (rc == 0 || rc == SHMVAL_ENOBUFS)
    return 1;
  return rc == SHMVAL_ENOENT ? 0 : rc;
}

int shm_dict_len(shm_dict *h, size_t *n) {
  dref r;
  int rc = dict_ref(h, false, &r);
  if (rc != 0 || n == NULL)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  if (dying(r.d))
    return SHMVAL_ESTALE;
  uint64_t sum = 0;
  for (unsigned i = 0; i < NSTRIPES; i++)
    sum += __atomic_load_n(&r.d->stripe[i].count, __ATOMIC_RELAXED);
  *n = (size_t)sum;
  return 0;
}

shm_type shm_dict_value_type(const shm_dict *h, size_t *size) {
  dref r;
  if (dict_ref(h, false, &r) != 0)
    return (shm_type)0;
  if (size != NULL)
    *size = r.vsize;
  return (shm_type)r.vtype;
}

/* ------------------------------------------------------------------------ */
/* Writes. */

/* A write in progress: the key, its stripe (locked) and the table. */
typedef struct wop {
  dref r;
  shmval__dstripe *sp;
  unsigned si;
  uint64_t h, tag;
  const void *key;
  size_t klen;
  bool has_tab;
  tview t;
  bool shrink; /* after the write: the table may shrink */
} wop;

/* Where a key is, or may go. */
typedef struct loc {
  bool found;
  uint64_t i, c; /* its slot and control word */
  bool has_free;
  uint64_t fi, fc; /* the first empty or deleted slot of its probe, and its control word */
} loc;

static uint64_t blk_of_tab(uint64_t tab) { return tab - SHMVAL__OBJ_HDR_OFF; }

static int wop_begin(wop *w, const shm_dict *h, const void *key, size_t klen) {
  int rc = dict_ref(h, true, &w->r);
  if (rc != 0 || (rc = check_key(key, klen)) != 0)
    return rc;
  w->key = key;
  w->klen = klen;
  w->h = shmval__hash(ld(&w->r.d->seed), key, klen);
  w->tag = tag_of(w->h);
  w->si = stripe_of(w->tag);
  w->sp = &w->r.d->stripe[w->si];
  w->shrink = false;
  if ((rc = stripe_lock(&w->r, w->si)) != 0)
    return rc;
  uint64_t off = ld(&w->r.d->tab);
  w->has_tab = off != 0;
  if (dying(w->r.d))
    rc = SHMVAL_ESTALE;
  else if (w->has_tab)
    rc = tab_view(w->r.seg, w->r.o, off, &w->t);
  if (rc != 0) {
    stripe_unlock(&w->r, w->si);
    if (w->r.repaired)
      settle(&w->r);
  }
  return rc;
}

static void wop_end(wop *w) {
  stripe_unlock(&w->r, w->si);
  if (w->r.repaired)
    settle(&w->r);
}

/* With the stripe locked: find the key (its slot is this stripe's, stable) and a free slot. */
static int locate(wop *w, loc *l) {
  l->found = l->has_free = false;
  if (!w->has_tab)
    return 0;
  const tview *t = &w->t;
  uint64_t i = w->h & t->mask;
  for (uint64_t n = 0; n <= t->mask; n++, i = (i + 1) & t->mask) {
    shmval__dslot *s = &t->s[i];
    uint64_t c = lda(&s->ctl), state = c_state(c);
    if (c & SHMVAL__DS_BUSY)
      continue; /* another stripe's writer: neither this key nor free */
    if (state <= SHMVAL__DS_TOMB && !l->has_free) {
      l->has_free = true;
      l->fi = i;
      l->fc = c;
    }
    if (state == SHMVAL__DS_EMPTY)
      return 0;
    if (state == SHMVAL__DS_TOMB || c_tag(c) != w->tag)
      continue;
    uint64_t wd[2] = {ld(&s->w[0]), ld(&s->w[1])};
    size_t vl;
    int rc = match_copy(w->r.seg, c, wd, w->h, w->key, w->klen, NULL, 0, &vl);
    if (rc == SHMVAL_ECORRUPT)
      return rc;
    if (rc != R_NOMATCH) {
      l->found = true;
      l->i = i;
      l->c = c;
      return 0;
    }
  }
  return 0;
}

/* The value of the located key (stable under the stripe lock) into @p buf. */
static int value_of(wop *w, const loc *l, void *buf, size_t cap, size_t *vlen) {
  shmval__dslot *s = &w->t.s[l->i];
  uint64_t wd[2] = {ld(&s->w[0]), ld(&s->w[1])};
  int rc = match_copy(w->r.seg, l->c, wd, w->h, w->key, w->klen, buf, cap, vlen);
  return rc == R_NOMATCH ? SHMVAL_ECORRUPT : rc;
}

/* Whether inserting into an empty slot takes the slots in use past 80%. */
static bool need_grow(const wop *w, uint64_t used_after) {
  uint64_t cap = w->t.mask + 1;
  /* Each stripe holds about 1/16 of the keys: sum the others only near the threshold. */
  if (used_after * 5 * NSTRIPES <= cap * 4)
    return false;
  uint64_t total = used_after;
  for (unsigned i = 0; i < NSTRIPES; i++)
    if (i != w->si)
      total += __atomic_load_n(&w->r.d->stripe[i].used, __ATOMIC_RELAXED);
  return total * 5 > cap * 4;
}

static int alloc_err(const shmval__seg *seg, int rc) {
  return rc == SHMVAL_ENOMEM && (seg->flags & SHMVAL__SEG_NAMED) ? SHMVAL_ENOSPC : rc;
}

/* Allocate and fill an entry block for the key and @p val (journaled in jnew). */
static int ent_make(wop *w, const void *val, size_t vlen, uint64_t *off) {
  uint64_t vat = align8(ENT_HDR + w->klen), bytes;
  if (__builtin_add_overflow(vat, (uint64_t)vlen, &bytes) || bytes > SHMVAL__PAYLOAD_MAX)
    return alloc_err(w->r.seg, SHMVAL_ENOMEM);
  int rc = shmval__heap_alloc(w->r.seg, (size_t)bytes, off, &w->sp->jnew.word);
  if (rc != 0)
    return alloc_err(w->r.seg, rc);
  SHMVAL__CRASH_POINT();
  char *b = (char *)w->r.seg + *off;
  st((uint64_t *)(void *)(b + 8), SHMVAL__DENT_MAGIC | ((uint64_t)w->klen << 32));
  st((uint64_t *)(void *)(b + 16), vlen);
  shm_write(b + ENT_HDR, w->key, w->klen);
  shm_write(b + vat, val, vlen);
  return 0;
}

/* Fill in the stripe's record (op last) and apply it: whether the slot took it. */
static bool record_apply(wop *w, uint64_t slot, uint64_t old_ctl, uint64_t new_ctl,
                         const uint64_t wd[2], uint64_t jold, uint64_t count_after,
                         uint64_t used_after) {
  shmval__dstripe *sp = w->sp;
  st(&sp->slot, slot);
  st(&sp->old_ctl, old_ctl);
  st(&sp->new_ctl, new_ctl);
  st(&sp->w0, wd[0]);
  st(&sp->w1, wd[1]);
  st(&sp->count_after, count_after);
  st(&sp->used_after, used_after);
  st(&sp->jold.word, jold);
  str(&sp->op, 1);
  SHMVAL__CRASH_POINT();
  return apply(&w->t, sp);
}

/* A live writer lets go of the entry it allocated and did not publish (if any). */
static int drop_new(wop *w) {
  uint64_t j = ld(&w->sp->jnew.word);
  return j != 0 ? shmval__heap_free(w->r.seg, j & ~SHMVAL__J_STAGE, &w->sp->jnew.word) : 0;
}

/*
 * The journal word that retires the entry of slot @p i, or 1 when that entry
 * overlaps the dict's own header (damage: freeing it would write the
 * allocator's links over the dict's locks).
 */
static uint64_t old_entry(const wop *w, uint64_t i) {
  uint64_t off = ld(&w->t.s[i].w[0]) & ~SHMVAL__J_STAGE;
  uint64_t lo = w->r.o->self_off - SHMVAL__OBJ_HDR_OFF,
           hi = w->r.o->self_off + w->r.o->payload_rel + sizeof(shmval__dict);
  ent e;
  if (ent_at(w->r.seg, off, &e) != 0 ||
      (off < hi && (uint64_t)(e.val - (const char *)w->r.seg) + e.vlen > lo))
    return 1;
  return off | SHMVAL__J_DESTROY;
}

/* d[key] = val, the key located in @p l (the stripe locked). */
static int put(wop *w, loc *l, const void *val, size_t vlen) {
  shmval__dstripe *sp = w->sp;
  uint64_t count = ld(&sp->count), used = ld(&sp->used);
  if (!l->found && (!l->has_free || (c_state(l->fc) == SHMVAL__DS_EMPTY && need_grow(w, used + 1))))
    return R_RESIZE;
  uint64_t wd[2] = {0, 0}, state;
  unsigned kl = 0, vl = 0;
  if (w->klen + vlen <= SHMVAL__DS_INLINE_MAX) {
    /* Straight into the words (a 16-byte reload of byte stores would stall). */
    memcpy((char *)wd, w->key, w->klen);
    if (vlen != 0)
      memcpy((char *)wd + w->klen, val, vlen);
    state = SHMVAL__DS_INLINE;
    kl = (unsigned)w->klen;
    vl = (unsigned)vlen;
  } else {
    int rc = ent_make(w, val, vlen, &wd[0]);
    if (rc != 0)
      return rc;
    wd[1] = w->h;
    state = SHMVAL__DS_HEAP;
  }
  for (;;) {
    uint64_t i = l->found ? l->i : l->fi, c = l->found ? l->c : l->fc, jold = 0;
    if (l->found && c_state(c) == SHMVAL__DS_HEAP)
      jold = old_entry(w, i);
    if (jold == 1) {
      (void)drop_new(w);
      return SHMVAL_ECORRUPT;
    }
    uint64_t used_after = used + (!l->found && c_state(c) == SHMVAL__DS_EMPTY);
    uint64_t nc = c_next(c, state, kl, vl, w->tag);
    if (record_apply(w, i, c, nc, wd, jold, count + !l->found, used_after))
      return commit(w->r.seg, sp, false);
    /* Another stripe's writer took the free slot first: look again. */
    str(&sp->op, 0);
    int rc = locate(w, l);
    if (rc == 0 && (l->found || !l->has_free))
      rc = R_RESIZE; /* (found cannot happen: the key is this stripe's) */
    if (rc != 0) {
      (void)drop_new(w);
      return rc;
    }
  }
}

/* del d[key], the key located in @p l. */
static int erase(wop *w, const loc *l) {
  shmval__dstripe *sp = w->sp;
  uint64_t wd[2] = {0, 0}, jold = 0, count = ld(&sp->count);
  if (c_state(l->c) == SHMVAL__DS_HEAP)
    jold = old_entry(w, l->i);
  if (jold == 1)
    return SHMVAL_ECORRUPT;
  uint64_t nc = c_next(l->c, SHMVAL__DS_TOMB, 0, 0, w->tag);
  if (!record_apply(w, l->i, l->c, nc, wd, jold, count - 1, ld(&sp->used)))
    return SHMVAL_ECORRUPT;
  int rc = commit(w->r.seg, sp, false);
  /* Fewer than 1/16 of the slots live: shrink (after the stripe is let go). */
  uint64_t cap = w->t.mask + 1;
  if (rc == 0 && cap > TAB_MIN && (count - 1) * 16 * NSTRIPES < cap) {
    uint64_t total = 0;
    for (unsigned i = 0; i < NSTRIPES; i++)
      total += __atomic_load_n(&w->r.d->stripe[i].count, __ATOMIC_RELAXED);
    w->shrink = total * 16 < cap;
  }
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Resizing. */

/* The least table size at which @p live keys fill at most 40%. */
static uint64_t cap_for(uint64_t live) {
  uint64_t cap = TAB_MIN;
  while (live * 5 > cap * 2)
    cap *= 2;
  return cap;
}

/* Put a moved slot's contents into the private new table @p t (which has room). */
static void place(const tview *t, uint64_t h, uint64_t c, uint64_t w0, uint64_t w1) {
  uint64_t i = h & t->mask;
  for (uint64_t n = 0; n < t->mask && c_state(ld(&t->s[i].ctl)) != SHMVAL__DS_EMPTY; n++)
    i = (i + 1) & t->mask;
  st(&t->s[i].w[0], w0);
  st(&t->s[i].w[1], w1);
  st(&t->s[i].ctl, (c & ~(SHMVAL__DS_VER_MASK | SHMVAL__DS_BUSY)));
}

/* The hash of the live slot (@p c, @p w0, @p w1): an inline key's is computed again. */
static uint64_t slot_hash(uint64_t seed, uint64_t c, uint64_t w0, uint64_t w1) {
  if (c_state(c) == SHMVAL__DS_HEAP)
    return w1;
  char b[16];
  uint64_t wd[2] = {w0, w1};
  unsigned kl = c_klen(c);
  memcpy(b, wd, 16);
  return shmval__hash(seed, b, kl < SHMVAL__DS_INLINE_MAX ? kl : SHMVAL__DS_INLINE_MAX);
}

/*
 * With every lock held: replace the table by one sized for its live keys
 * and @p extra more (40% full at most), or by none when @p keep is false (a
 * clear, after every key was deleted). The table, not the stripes' counts,
 * says how many keys there are, and the counts are set from it. Readers keep
 * the old table until it is freed.
 */
static int rebuild(dref *r, bool keep, uint64_t extra) {
  shmval__dict *d = r->d;
  shmval__obj *nt = NULL;
  tview old, nv;
  uint64_t off = ld(&d->tab), seed = ld(&d->seed), live = 0, counts[NSTRIPES] = {0};
  int rc;
  if (off != 0 && (rc = tab_view(r->seg, r->o, off, &old)) != 0)
    return rc;
  for (uint64_t i = 0; off != 0 && i <= old.mask; i++) {
    uint64_t c = ld(&old.s[i].ctl);
    if (c_state(c) >= SHMVAL__DS_INLINE) {
      live++;
      counts[stripe_of(c_tag(c))]++;
    }
  }
  if (keep) {
    rc = shmval__obj_alloc_table(r->seg, SHMVAL__KIND_DICT_TAB, sizeof(shmval__dslot),
                                 cap_for(live + extra), &nt, &d->rs_new.word);
    if (rc != 0)
      return alloc_err(r->seg, rc);
    SHMVAL__CRASH_POINT();
    if ((rc = tab_view(r->seg, r->o, nt->self_off, &nv)) != 0)
      return rc;
    for (uint64_t i = 0; off != 0 && i <= old.mask; i++) {
      uint64_t c = ld(&old.s[i].ctl), w0 = ld(&old.s[i].w[0]), w1 = ld(&old.s[i].w[1]);
      if (c_state(c) >= SHMVAL__DS_INLINE)
        place(&nv, slot_hash(seed, c, w0, w1), c, w0, w1);
    }
  }
  for (unsigned i = 0; i < NSTRIPES; i++) {
    __atomic_store_n(&d->stripe[i].count, keep ? counts[i] : 0, __ATOMIC_RELAXED);
    __atomic_store_n(&d->stripe[i].used, keep ? counts[i] : 0, __ATOMIC_RELAXED);
  }
  if (off != 0)
    str(&d->rs_old.word, blk_of_tab(off) | SHMVAL__J_DESTROY);
  SHMVAL__CRASH_POINT();
  str(&d->tab, nt != NULL ? nt->self_off : 0);
  __atomic_fetch_add(&d->tab_gen, 1, __ATOMIC_RELEASE);
  SHMVAL__CRASH_POINT();
  str(&d->rs_new.word, 0);
  if (off == 0)
    return 0;
  shmval__obj *ot = (shmval__obj *)(void *)((char *)r->seg + off);
  atomic_store_explicit(&ot->magic, SHMVAL__OBJ_DEAD, memory_order_release);
  SHMVAL__CRASH_POINT();
  return shmval__heap_free(r->seg, blk_of_tab(off), &d->rs_old.word);
}

/*
 * Grow (or shrink) the table if it still needs it once every lock is held
 * (another writer may have resized meanwhile); @p force: for an insert that
 * found no free slot even so. *rebuilt says whether it did.
 */
static int resize(dref *r, bool grow, bool force, bool *rebuilt) {
  int rc = lock_all(r);
  *rebuilt = false;
  if (rc != 0)
    return rc;
  shmval__dict *d = r->d;
  uint64_t live = 0, used = 0, off = ld(&d->tab), cap = 0;
  tview t;
  for (unsigned i = 0; i < NSTRIPES; i++) {
    live += ld(&d->stripe[i].count);
    used += ld(&d->stripe[i].used);
  }
  if (dying(d))
    rc = SHMVAL_ESTALE;
  else if (off != 0 && (rc = tab_view(r->seg, r->o, off, &t)) == 0)
    cap = t.mask + 1;
  /* The same test as need_grow(), for the one insert that asked. */
  bool needed = grow ? force || cap == 0 || (used + 1) * 5 > cap * 4 : live * 16 < cap;
  if (rc == 0 && needed) {
    rc = rebuild(r, true, grow ? 1 : 0);
    *rebuilt = rc == 0;
  }
  unlock_all(r);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* The write operations. */

typedef int (*body_fn)(wop *w, void *arg);

/* Run @p body with the key's stripe locked, resizing and retrying when it asks. */
static int write_op(const shm_dict *h, const void *key, size_t klen, body_fn body, void *arg) {
  bool force = false, rebuilt;
  for (unsigned resizes = 0;;) {
    wop w;
    int rc = wop_begin(&w, h, key, klen);
    if (rc != 0)
      return rc;
    rc = body(&w, arg);
    wop_end(&w);
    if (rc == R_RESIZE) {
      /*
       * A resize found unneeded (the counts say there is room) while the
       * insert found no free slot: the next one is forced. An insert that
       * finds no room after 64 resizes is facing damage.
       */
      if ((rc = resize(&w.r, true, force, &rebuilt)) != 0)
        return rc;
      force = !rebuilt;
      if (++resizes > 64)
        return SHMVAL_ECORRUPT;
      continue;
    }
    if (w.shrink)
      (void)resize(&w.r, false, false, &rebuilt); /* best effort: the write itself is done */
    return rc;
  }
}

/* A value's length fits the dict's type (checked from the write's own reference). */
static int val_ok(const dref *r, const void *val, size_t vlen) {
  return (val == NULL && vlen != 0) || (r->vtype != 0 && vlen != r->vsize) ? SHMVAL_EINVAL : 0;
}

typedef struct set_arg {
  const void *val;
  size_t vlen;
} set_arg;

static int set_body(wop *w, void *arg) {
  set_arg *a = arg;
  loc l;
  int rc = val_ok(&w->r, a->val, a->vlen);
  if (rc == 0)
    rc = locate(w, &l);
  return rc != 0 ? rc : put(w, &l, a->val, a->vlen);
}

int shm_dict_set(shm_dict *d, const void *key, size_t klen, const void *val, size_t vlen) {
  set_arg a = {val, vlen};
  return write_op(d, key, klen, set_body, &a);
}

static int del_body(wop *w, void *arg) {
  (void)arg;
  loc l;
  int rc = locate(w, &l);
  if (rc != 0)
    return rc;
  return l.found ? erase(w, &l) : SHMVAL_ENOENT;
}

int shm_dict_del(shm_dict *d, const void *key, size_t klen) {
  return write_op(d, key, klen, del_body, NULL);
}

typedef struct out_arg {
  const void *val; /* setdefault's default */
  size_t vlen;
  void *buf;
  size_t cap;
  size_t *outlen;
} out_arg;

static int pop_body(wop *w, void *arg) {
  out_arg *a = arg;
  loc l;
  int rc = locate(w, &l);
  if (rc != 0)
    return rc;
  if (!l.found)
    return SHMVAL_ENOENT;
  if ((rc = value_of(w, &l, a->buf, a->cap, a->outlen)) != 0)
    return rc;
  return erase(w, &l);
}

int shm_dict_pop(shm_dict *d, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen) {
  size_t n;
  if (buf == NULL && cap != 0)
    return SHMVAL_EINVAL;
  out_arg a = {NULL, 0, buf, cap, &n};
  int rc = write_op(d, key, klen, pop_body, &a);
  if ((rc == 0 || rc == SHMVAL_ENOBUFS) && vlen != NULL)
    *vlen = n;
  return rc;
}

static int setdefault_body(wop *w, void *arg) {
  out_arg *a = arg;
  loc l;
  int rc = val_ok(&w->r, a->val, a->vlen);
  if (rc == 0)
    rc = locate(w, &l);
  if (rc != 0)
    return rc;
  if (l.found) {
    /* Without a buffer only the length is wanted: a value too big for none is no error. */
    rc = value_of(w, &l, a->buf, a->cap, a->outlen);
    return rc == SHMVAL_ENOBUFS && a->buf == NULL ? 0 : rc;
  }
  *a->outlen = a->vlen;
  if (a->buf != NULL && a->vlen > a->cap)
    return SHMVAL_ENOBUFS;
  if ((rc = put(w, &l, a->val, a->vlen)) != 0)
    return rc;
  if (a->buf != NULL && a->vlen != 0)
    memcpy(a->buf, a->val, a->vlen);
  return 1;
}

int shm_dict_setdefault(shm_dict *d, const void *key, size_t klen, const void *dflt, size_t dlen,
                        void *buf, size_t cap, size_t *vlen) {
  size_t n = 0;
  if (buf == NULL && cap != 0)
    return SHMVAL_EINVAL;
  out_arg a = {dflt, dlen, buf, cap, &n};
  int rc = write_op(d, key, klen, setdefault_body, &a);
  if ((rc >= 0 || rc == SHMVAL_ENOBUFS) && vlen != NULL)
    *vlen = n;
  return rc;
}

/* d[key] += delta for the numeric types; *old gets the value before. */
static int add_elem(int type, size_t size, void *val, const void *delta) {
  if (type == 'f' || type == 'd') {
    if (type == 'f') {
      float a, b;
      memcpy(&a, val, 4);
      memcpy(&b, delta, 4);
      a += b;
      memcpy(val, &a, 4);
    } else {
      double a, b;
      memcpy(&a, val, 8);
      memcpy(&b, delta, 8);
      a += b;
      memcpy(val, &a, 8);
    }
    return 0;
  }
  uint64_t a = 0, b = 0;
  memcpy(&a, val, size); /* little-endian: the low bytes, added with wrap-around */
  memcpy(&b, delta, size);
  a += b;
  memcpy(val, &a, size);
  return 0;
}

typedef struct add_arg {
  const void *delta;
  void *old;
} add_arg;

static int add_body(wop *w, void *arg) {
  add_arg *a = arg;
  const dref *r = &w->r;
  char cur[16] = {0};
  size_t n;
  loc l;
  int rc = locate(w, &l);
  if (rc != 0)
    return rc;
  if (r->vsize > 8)
    return SHMVAL_ECORRUPT;
  if (l.found && (rc = value_of(w, &l, cur, sizeof cur, &n)) != 0)
    return rc;
  if (a->old != NULL)
    memcpy(a->old, cur, r->vsize);
  add_elem((int)r->vtype, r->vsize, cur, a->delta);
  return put(w, &l, cur, r->vsize);
}

int shm_dict_add(shm_dict *d, const void *key, size_t klen, const void *delta, void *old) {
  dref r;
  int rc = dict_ref(d, true, &r);
  if (rc != 0)
    return rc;
  int t = (int)r.vtype;
  if (t == 0 || t == SHMVAL_BOOL || t == SHMVAL_RECORD)
    return SHMVAL_ETYPE;
  if (delta == NULL || r.vsize > 8)
    return delta == NULL ? SHMVAL_EINVAL : SHMVAL_ECORRUPT;
  add_arg a = {delta, old};
  return write_op(d, key, klen, add_body, &a);
}

typedef struct upd_arg {
  int (*fn)(void *val, size_t *vlen, size_t cap, int present, void *ctx);
  void *ctx;
} upd_arg;

static int update_body(wop *w, void *arg) {
  upd_arg *a = arg;
  const dref *r = &w->r;
  size_t len = 0, cap;
  loc l;
  int rc = locate(w, &l);
  if (rc != 0)
    return rc;
  if (l.found && r->vtype == 0 && (rc = value_of(w, &l, NULL, 0, &len)) != SHMVAL_ENOBUFS &&
      rc != 0)
    return rc;
  cap = r->vtype != 0 ? r->vsize : (len > 128 ? 2 * len : 256);
  char *buf = calloc(1, cap);
  if (buf == NULL)
    return SHMVAL_ENOMEM;
  if (l.found && (rc = value_of(w, &l, buf, cap, &len)) != 0)
    goto out;
  if (r->vtype != 0)
    len = r->vsize;
  if ((rc = a->fn(buf, &len, cap, l.found, a->ctx)) != 0)
    goto out;
  if (len > cap || (r->vtype != 0 && len != r->vsize)) {
    rc = SHMVAL_EINVAL;
    goto out;
  }
  rc = put(w, &l, buf, len);
out:
  free(buf);
  return rc;
}

int shm_dict_update(shm_dict *d, const void *key, size_t klen,
                    int (*fn)(void *val, size_t *vlen, size_t cap, int present, void *ctx),
                    void *ctx) {
  if (fn == NULL)
    return SHMVAL_EINVAL;
  upd_arg a = {fn, ctx};
  return write_op(d, key, klen, update_body, &a);
}

/* ------------------------------------------------------------------------ */
/* Clearing, creation, destruction. */

/* With every lock held: delete every key (each under its stripe's record), then drop the table. */
static int clear_locked(dref *r) {
  shmval__dict *d = r->d;
  uint64_t off = ld(&d->tab);
  int rc = 0;
  wop w = {.r = *r, .has_tab = off != 0};
  if (off != 0 && (rc = tab_view(r->seg, r->o, off, &w.t)) != 0)
    return rc;
  for (uint64_t i = 0; off != 0 && i <= w.t.mask; i++) {
    uint64_t c = ld(&w.t.s[i].ctl);
    if (c_state(c) < SHMVAL__DS_INLINE)
      continue;
    w.tag = c_tag(c);
    w.si = stripe_of(w.tag);
    w.sp = &d->stripe[w.si];
    loc l = {.found = true, .i = i, .c = c};
    if ((rc = erase(&w, &l)) != 0)
      return rc;
  }
  return rebuild(r, false, 0);
}

int shm_dict_clear(shm_dict *h) {
  dref r;
  int rc = dict_ref(h, true, &r);
  if (rc != 0 || (rc = lock_all(&r)) != 0)
    return rc;
  rc = dying(r.d) ? SHMVAL_ESTALE : clear_locked(&r);
  unlock_all(&r);
  return rc;
}

static int dict_make(shm_dict **out, uint32_t vtype, uint32_t vsize, const shm_opts *opts) {
  if (out == NULL)
    return SHMVAL_EINVAL;
  shmval__dict hdr;
  memset(&hdr, 0, sizeof hdr);
  int rc = shmval__mutex_init(&hdr.rs_mu);
  for (unsigned i = 0; rc == 0 && i < NSTRIPES; i++) {
    rc = shmval__mutex_init(&hdr.stripe[i].mu);
    hdr.stripe[i].jnew.tag = hdr.stripe[i].jold.tag = SHMVAL__JTAG;
  }
  if (rc != 0)
    return rc;
  hdr.rs_new.tag = hdr.rs_old.tag = SHMVAL__JTAG;
  hdr.vtype = vtype;
  hdr.vsize = vsize;
  hdr.seed = shmval__prim_random64();
  shmval__obj *ob;
  rc = shmval__obj_create_container(&ob, SHMVAL__KIND_DICT, (int)vtype, sizeof hdr, &hdr, opts);
  if (rc == 0)
    *out = (shm_dict *)(void *)ob;
  return rc;
}

int shm_dict_create(shm_dict **out, shm_type value_type, const shm_opts *opts) {
  size_t size = 0, align;
  if (value_type != 0 &&
      (value_type == SHMVAL_RECORD || !shmval__type_info(value_type, &size, &align)))
    return SHMVAL_EINVAL;
  return dict_make(out, (uint32_t)value_type, (uint32_t)size, opts);
}

int shm_dict_create_record(shm_dict **out, size_t size, size_t align, const shm_opts *opts) {
  int rc = shmval__check_record(size, align);
  return rc != 0 ? rc : dict_make(out, SHMVAL_RECORD, (uint32_t)size, opts);
}

int shm_dict_open(shm_dict **out, shm_segment *seg, const char *name) {
  return shmval__obj_open((void **)out, seg, name, SHMVAL__KIND_DICT, 0);
}

int shm_dict_destroy(shm_dict *h) {
  dref r;
  if (h == NULL)
    return 0;
  int rc = dict_ref(h, true, &r);
  if (rc != 0 || (rc = lock_all(&r)) != 0)
    return rc;
  /*
   * Emptied first, every step recorded, so that a destroyer killed here
   * leaves a dict with fewer keys; marked dying last, so that no writer
   * waiting for a stripe adds anything after the locks are let go.
   */
  if ((rc = clear_locked(&r)) == 0)
    __atomic_store_n(&r.d->dying, 1, __ATOMIC_RELEASE);
  unlock_all(&r);
  SHMVAL__CRASH_POINT();
  return rc != 0 ? rc : shmval__obj_destroy(h, SHMVAL__KIND_DICT);
}

/* ------------------------------------------------------------------------ */
/* Iteration. */

typedef struct snapbuf {
  char *p;
  size_t n, cap;
} snapbuf;

/* Room for @p more bytes at the end. */
static int sb_reserve(snapbuf *b, size_t more) {
  if (b->cap - b->n >= more)
    return 0;
  size_t cap = b->cap != 0 ? b->cap : 4096;
  while (cap - b->n < more) {
    if (cap > SIZE_MAX / 2)
      return SHMVAL_ENOMEM;
    cap *= 2;
  }
  char *p = realloc(b->p, cap);
  if (p == NULL)
    return SHMVAL_ENOMEM;
  b->p = p;
  b->cap = cap;
  return 0;
}

/* Append one record of the snapshot: lengths, key, value, padded to 8. */
static int sb_put(snapbuf *b, const char *k, uint64_t kl, const char *v, uint64_t vl, bool shm) {
  uint64_t need = 16 + align8(kl) + align8(vl);
  int rc = sb_reserve(b, (size_t)need);
  if (rc != 0)
    return rc;
  char *p = b->p + b->n;
  memcpy(p, &kl, 8);
  memcpy(p + 8, &vl, 8);
  if (shm) {
    shm_read(p + 16, k, (size_t)kl);
    shm_read(p + 16 + align8(kl), v, (size_t)vl);
  } else {
    memcpy(p + 16, k, (size_t)kl);
    memcpy(p + 16 + align8(kl), v, (size_t)vl);
  }
  b->n += (size_t)need;
  return 0;
}

/* Copy slot @p s (live) into the snapshot: 0, or R_STUCK, ECORRUPT, ENOMEM. */
static int snap_slot(dref *r, shmval__dslot *s, snapbuf *b) {
  for (;;) {
    uint64_t c, w[2];
    size_t mark = b->n;
    int k = snap(s, 0, true, &c, w), rc = 0;
    if (k == SNAP_STUCK)
      return R_STUCK;
    if (k != SNAP_LIVE)
      return 0;
    if (c_state(c) == SHMVAL__DS_INLINE) {
      char tmp[16];
      memcpy(tmp, w, 16);
      unsigned kl = c_klen(c), vl = c_vlen(c);
      rc = kl + vl > SHMVAL__DS_INLINE_MAX ? SHMVAL_ECORRUPT
                                           : sb_put(b, tmp, kl, tmp + kl, vl, false);
    } else {
      ent e;
      rc = ent_at(r->seg, w[0], &e);
      if (rc == 0)
        rc = sb_put(b, e.key, e.klen, e.val, e.vlen, true);
    }
    if (same(s, c))
      return rc;
    b->n = mark; /* changed meanwhile: again */
    if (rc == SHMVAL_ENOMEM)
      return rc;
  }
}

/* One pass over the current table into @p b: 0, or a retry when the table changed. */
static int snapshot(dref *r, snapbuf *b, bool *moved) {
  shmval__dict *d = r->d;
  uint64_t gen = lda(&d->tab_gen), off = lda(&d->tab);
  tview t;
  int rc = 0;
  b->n = 0;
  *moved = false;
  if (dying(d))
    return SHMVAL_ESTALE;
  if (off != 0 && (rc = tab_view(r->seg, r->o, off, &t)) == 0) {
    for (uint64_t i = 0; rc == 0 && i <= t.mask; i++) {
      while ((rc = snap_slot(r, &t.s[i], b)) == R_STUCK)
        if ((rc = unstick(r, &t.s[i], gen)) != 0)
          break;
    }
  }
  atomic_thread_fence(memory_order_acquire);
  *moved = ld(&d->tab_gen) != gen;
  return rc;
}

int shm_dict_foreach(shm_dict *h,
                     int (*fn)(const void *key, size_t klen, const void *val, size_t vlen,
                               void *ctx),
                     void *ctx) {
  dref r;
  snapbuf b = {0};
  int rc = dict_ref(h, false, &r);
  if (rc != 0 || fn == NULL)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  for (unsigned tries = 0;; tries++) {
    bool moved, hold = tries >= FOREACH_FREE_TRIES && !r.ro;
    /* Resizes kept restarting the pass: keep them out for one (rs_mu). */
    if (hold && (rc = rs_lock(&r)) != 0)
      break;
    rc = snapshot(&r, &b, &moved);
    if (hold)
      pthread_mutex_unlock(&r.d->rs_mu);
    /* Damage seen in a table that was replaced meanwhile is no damage: again. */
    if ((rc != 0 && rc != SHMVAL_ECORRUPT) || !moved)
      break;
    if ((rc = shmval__obj_check(r.o, SHMVAL__KIND_DICT)) != 0)
      break;
  }
  for (size_t at = 0; rc == 0 && at < b.n;) {
    uint64_t kl, vl;
    memcpy(&kl, b.p + at, 8);
    memcpy(&vl, b.p + at + 8, 8);
    const char *k = b.p + at + 16;
    rc = fn(k, (size_t)kl, k + align8(kl), (size_t)vl, ctx);
    at += (size_t)(16 + align8(kl) + align8(vl));
  }
  free(b.p);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* The integrity check. */

/* Whether some slot between the key's home @p from and @p to (exclusive) is empty. */
static bool gap_before(const tview *t, uint64_t from, uint64_t to) {
  for (uint64_t i = from; i != to; i = (i + 1) & t->mask)
    if (ld(&t->s[i].ctl) == SHMVAL__DS_EMPTY)
      return true;
  return false;
}

/* A journal word of the dict: tagged, and naming a block (kept) if set. */
static int check_jword(const shmval__jword *j, shmval__offs *owned, shmval__problem *pb,
                       uint64_t off) {
  if (j->tag != SHMVAL__JTAG)
    return shmval__bad(pb, off, "a dict's journal word is damaged");
  uint64_t v = ld(&j->word) & ~SHMVAL__J_STAGE;
  return v != 0 ? shmval__offs_push(owned, v) : 0;
}

/* One live slot: a sound entry, at its hash's place, counted for its stripe. */
static int check_slot(shmval__seg *seg, const tview *t, uint64_t i, uint64_t seed,
                      shmval__offs *owned, uint64_t *counts, shmval__problem *pb, uint64_t off) {
  const shmval__dslot *s = &t->s[i];
  uint64_t c = ld(&s->ctl), w0 = ld(&s->w[0]), w1 = ld(&s->w[1]), h;
  if (c_state(c) == SHMVAL__DS_INLINE) {
    char b[16];
    uint64_t wd[2] = {w0, w1};
    memcpy(b, wd, 16);
    if (c_klen(c) + c_vlen(c) > SHMVAL__DS_INLINE_MAX)
      return shmval__bad(pb, off, "a dict slot's lengths are out of range");
    h = shmval__hash(seed, b, c_klen(c));
  } else {
    ent e;
    if (ent_at(seg, w0, &e) != 0)
      return shmval__bad(pb, off, "a dict slot points to a damaged entry");
    char *k = malloc(e.klen + 1);
    if (k == NULL)
      return SHMVAL_ENOMEM;
    shm_read(k, e.key, (size_t)e.klen);
    h = shmval__hash(seed, k, (size_t)e.klen);
    free(k);
    if (h != w1)
      return shmval__bad(pb, off, "a dict entry's key does not match its hash");
    int rc = shmval__offs_push(owned, w0);
    if (rc != 0)
      return rc;
  }
  if (tag_of(h) != c_tag(c) || gap_before(t, h & t->mask, i))
    return shmval__bad(pb, off, "a dict key is not where its hash puts it");
  counts[stripe_of(c_tag(c))]++;
  return 0;
}

int shmval__dict_verify(shmval__seg *seg, uint64_t off, shmval__offs *owned, shmval__problem *pb) {
  shmval__obj *o = (shmval__obj *)(void *)((char *)seg + off);
  shmval__dict *d = (shmval__dict *)(void *)shmval__payload(o);
  uint64_t counts[NSTRIPES] = {0}, seed = ld(&d->seed), tab = ld(&d->tab);
  bool busy[NSTRIPES] = {false};
  int rc;
  if (!shmval__mutex_sane(&d->rs_mu) || !vtype_ok(o, d->vtype, d->vsize))
    return shmval__bad(pb, off, "a dict's header is damaged");
  if ((rc = check_jword(&d->rs_new, owned, pb, off)) != 0 ||
      (rc = check_jword(&d->rs_old, owned, pb, off)) != 0)
    return rc;
  for (unsigned i = 0; i < NSTRIPES; i++) {
    const shmval__dstripe *sp = &d->stripe[i];
    if (!shmval__mutex_sane(&sp->mu))
      return shmval__bad(pb, off, "a dict's stripe lock is damaged");
    if ((rc = check_jword(&sp->jnew, owned, pb, off)) != 0 ||
        (rc = check_jword(&sp->jold, owned, pb, off)) != 0)
      return rc;
    /* A writer at work (or dead, to be repaired by the next one) may be between counts. */
    busy[i] = ld(&sp->op) != 0 || ld(&sp->jnew.word) != 0;
  }
  tview t;
  if (tab != 0) {
    if (tab_view(seg, o, tab, &t) != 0)
      return shmval__bad(pb, off, "a dict's table is damaged");
    if ((rc = shmval__offs_push(owned, blk_of_tab(tab))) != 0)
      return rc;
    for (uint64_t i = 0; i <= t.mask; i++) {
      uint64_t c = ld(&t.s[i].ctl);
      if (c & SHMVAL__DS_BUSY) {
        busy[stripe_of(c_tag(c))] = true;
        continue;
      }
      if (c_state(c) >= SHMVAL__DS_INLINE &&
          (rc = check_slot(seg, &t, i, seed, owned, counts, pb, tab)) != 0)
        return rc;
    }
  }
  for (unsigned i = 0; i < NSTRIPES; i++)
    if (!busy[i] && counts[i] != ld(&d->stripe[i].count))
      return shmval__bad(pb, off, "a dict's key count is wrong");
  return 0;
}
