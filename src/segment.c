/*
 * Named segments: creation, attachment, validation and lifetime.
 *
 * Who is attached is tracked with open-file-description byte locks on the
 * segment's file, far beyond its end: a "gate" byte and one byte per attacher
 * slot. Each attached process holds a write lock on its slot byte through its
 * own open of the file; the kernel drops it when the process closes the file
 * or dies, and a recycled PID cannot inherit it. The gate serialises the
 * decisions that must not race:
 *   - the creator holds it exclusively until the header is complete (an
 *     opener that finds no magic yet waits, bounded);
 *   - an auto-unlink closer (and rm) holds it exclusively while it checks that
 *     no other slot is held and unlinks.
 * An opener does not take the gate: it takes a slot, then reads the state.
 * A closer sets CLOSING in the state, then looks at the slots. Both steps of
 * each side pass through the kernel's lock on the file's byte locks, so
 * either the closer sees the opener's slot (and keeps the segment) or the
 * opener sees CLOSING; it then lets its slot go and waits on the gate, shared,
 * for the closer's verdict. That spares every open two of its system calls.
 * Slot table entries in the segment hold the pid and time (for display) and
 * the holder's crash journal (see shmval__attach_ent in layout.h).
 */
#include "dict.h"
#include "list.h"
#include "object.h"
#include "dir.h"
#include "reclaim.h"
#include "table.h"
#include "heap.h"
#include "journal.h"
#include "objhdr.h"
#include "lock.h"
#include "prim.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GATE_OFF SHMVAL__GATE_OFF
#define SLOT_OFF(i) SHMVAL__SLOT_OFF(i)
#define DEFAULT_ATTACH 64u
#define MAX_ATTACH 65536u
#define DEFAULT_WAIT 2.0
#define SEG_MAX (UINT64_C(1) << 40)

typedef shmval__attach_ent attach_ent;

/* ------------------------------------------------------------------------ */
/* Fork. */

static int claim_slot(shm_segment *sg);

/* In a fork child: take an attachment of its own for each segment. */
static void reattach(shm_segment *sg) {
  int fd;
  uint64_t size, dev, ino;
  bool ro = (sg->flags & SHMVAL_RDONLY) != 0;
  int old_fd = sg->fd;
  sg->slot = -1; /* until a slot of its own is held */
  sg->journal = NULL;
  if (shmval__prim_shm_open(sg->name, ro, &fd) != 0)
    return;
  if (shmval__prim_fd_info(fd, &size, &dev, &ino) != 0 || dev != sg->dev || ino != sg->ino ||
      shmval__prim_flock(fd, GATE_OFF, SHMVAL__FLOCK_RD, true) != 0) {
    shmval__prim_close(fd);
    return;
  }
  sg->fd = fd;
  if ((atomic_load(&sg->base->state) & SHMVAL__STATE_UNLINKED) || claim_slot(sg) != 0) {
    sg->fd = old_fd;
    shmval__prim_close(fd);
    return;
  }
  shmval__prim_flock(fd, GATE_OFF, SHMVAL__FLOCK_UN, false);
  /* The parent's open stays open in the parent: its locks are unaffected. */
  shmval__prim_close(old_fd);
}

/* The fork handler of journal.c calls this in the child for each attachment. */
static void on_fork(shm_segment *sg) {
  if (sg->slot >= 0 && !(sg->flags & SHMVAL_OBSERVE))
    reattach(sg);
}

/* ------------------------------------------------------------------------ */
/* Names, attacher slots. */

/* "name" or "/name" to "/name": 1..255 bytes, no other '/', not . or .. */
static int norm_name(const char *in, char out[SHMVAL__SEG_NAME_SIZE]) {
  if (in == NULL)
    return SHMVAL_EINVAL;
  if (*in == '/')
    in++;
  size_t n = strnlen(in, 256);
  if (n == 0 || n > 255 || memchr(in, '/', n) != NULL || strcmp(in, ".") == 0 ||
      strcmp(in, "..") == 0)
    return SHMVAL_EINVAL;
  out[0] = '/';
  memcpy(out + 1, in, n + 1);
  return 0;
}

static void note_slot(shm_segment *sg, int pid) {
  attach_ent *t = (sg->flags & SHMVAL_RDONLY) ? NULL : sg->attach;
  if (t != NULL && sg->slot >= 0) {
    t[sg->slot].pid = pid;
    t[sg->slot].since_ns = pid != 0 ? shmval__prim_wall_ns() : 0;
  }
}

/*
 * Make the journal word of the slot just taken this process's; if the slot's
 * previous holder died halfway through a creation or destruction, free what
 * it left first (under the directory lock, like shm_segment_reclaim()).
 */
static void take_journal(shm_segment *sg) {
  attach_ent *t = sg->attach;
  if (t == NULL)
    return;
  uint64_t *j = &t[sg->slot].pending;
  if (__atomic_load_n(j, __ATOMIC_ACQUIRE) != 0 && shmval__dir_lock(sg->base) == 0) {
    size_t blocks = 0, bytes = 0;
    (void)shmval__reclaim_journal(sg->base, j, &blocks, &bytes);
    shmval__dir_unlock(sg->base);
  }
  sg->journal = __atomic_load_n(j, __ATOMIC_ACQUIRE) == 0 ? j : NULL;
}

/*
 * Take a free attacher slot through sg->fd. The search starts at a place of
 * the process's and the call's own, so that attachments rarely try a taken
 * slot first (each try is a system call).
 */
static int claim_slot(shm_segment *sg) {
  static _Atomic uint32_t calls;
  uint32_t n = sg->base->max_attach;
  bool ro = (sg->flags & SHMVAL_RDONLY) != 0;
  int pid = shmval__attach_pid();
  uint32_t start = ((uint32_t)pid * 2654435761u + atomic_fetch_add(&calls, 1)) % n;
  for (uint32_t k = 0; k < n; k++) {
    uint32_t i = (start + k) % n;
    /* Read locks do not exclude each other: a reader first looks for a free slot. */
    if (ro && shmval__prim_flock_probe(sg->fd, SLOT_OFF(i), 1) != -1)
      continue;
    int rc =
        shmval__prim_flock(sg->fd, SLOT_OFF(i), ro ? SHMVAL__FLOCK_RD : SHMVAL__FLOCK_WR, false);
    if (rc == 0) {
      sg->slot = (int)i;
      sg->pid = pid;
      note_slot(sg, pid);
      if (!ro)
        take_journal(sg);
      return 0;
    }
    if (rc != SHMVAL_EBUSY)
      return rc;
  }
  return SHMVAL_EAGAIN;
}

/*
 * Slot locks in [lo, hi) visible through @p fd (not its own). The kernel
 * reports some conflicting lock, not the lowest, so split around each one.
 */
static unsigned count_locked(int fd, uint64_t lo, uint64_t hi) {
  if (lo >= hi)
    return 0;
  int64_t at = shmval__prim_flock_probe(fd, lo, hi - lo);
  if (at == -1)
    return 0;
  if (at < (int64_t)lo || at >= (int64_t)hi) /* the probe failed: assume one */
    return 1;
  return 1 + count_locked(fd, lo, (uint64_t)at) + count_locked(fd, (uint64_t)at + 1, hi);
}

static unsigned count_attached(int fd, uint32_t max_attach) {
  return count_locked(fd, SLOT_OFF(0), SLOT_OFF(max_attach));
}

/* ------------------------------------------------------------------------ */
/* Validation of what another process wrote. */

static uint64_t hdr_bytes(void) {
  return (sizeof(shmval__seg) + SHMVAL__BLOCK_ALIGN - 1) & ~(uint64_t)(SHMVAL__BLOCK_ALIGN - 1);
}

/*
 * Check the header of a mapped file of @p fsize bytes, and what it points to;
 * *table is then its attacher table.
 */
static int validate(shmval__seg *seg, uint64_t fsize, attach_ent **table) {
  if (fsize < sizeof seg->magic)
    return fsize == 0 ? SHMVAL_EUNINIT : SHMVAL_ENOTSHMVAL;
  uint64_t magic = atomic_load_explicit(&seg->magic, memory_order_acquire);
  if (magic == SHMVAL__SEG_MAGIC_INIT || magic == 0)
    return SHMVAL_EUNINIT;
  if (magic != SHMVAL__SEG_MAGIC)
    return SHMVAL_ENOTSHMVAL;
  if (fsize < sizeof *seg)
    return SHMVAL_ECORRUPT;
  if (seg->version != SHMVAL__LAYOUT_VERSION || seg->hdr_size != sizeof *seg)
    return SHMVAL_EVERSION;
  if (seg->abi != shmval__abi_fingerprint())
    return SHMVAL_EABI;
  /*
   * The file's size is the maximum (its blocks are allocated only as far as
   * the committed size), so all of it is mapped: the committed size, and
   * the heap's end within it, may grow after this without a remap.
   */
  if (!(seg->flags & SHMVAL__SEG_NAMED) || seg->max_size != fsize || !shmval__seg_sizes_ok(seg) ||
      seg->heap_start != hdr_bytes() || seg->heap_end < SHMVAL__HEAP_STATE_END ||
      (seg->heap_end & (SHMVAL__BLOCK_ALIGN - 1)) != 0 || seg->max_attach == 0 ||
      seg->max_attach > MAX_ATTACH || (*table = shmval__attach_table(seg)) == NULL ||
      !shmval__mutex_sane(&seg->heap_lock) || !shmval__mutex_sane(&seg->dir_lock))
    return SHMVAL_ECORRUPT;
  return shmval__dir_check(seg);
}

/* ------------------------------------------------------------------------ */
/* Creation. */

static int check_create_opts(const shm_segment_opts *o, unsigned *mode, uint32_t *max_attach) {
  unsigned flags = o != NULL ? o->flags : 0;
  if (o != NULL && o->max_size > SEG_MAX)
    return SHMVAL_EINVAL;
  *mode = o != NULL && o->mode != 0 ? o->mode : 0600;
  *max_attach = o != NULL && o->max_attach != 0 ? o->max_attach : DEFAULT_ATTACH;
  if ((flags & ~(unsigned)(SHMVAL_OPEN_OR_CREATE | SHMVAL_AUTO_UNLINK)) || (*mode & ~0777u) ||
      *max_attach > MAX_ATTACH || (o != NULL && o->timeout != o->timeout))
    return SHMVAL_EINVAL;
  return 0;
}

/* The sizes of a segment to create: committed and maximum, page-rounded. */
typedef struct seg_sizes {
  uint64_t size, max;
} seg_sizes;

/*
 * The heap a new segment starts with (see shmval__seg_init()): its own
 * tables and the heap's state block. The tables go before the state block,
 * in the first page with the header, when they fit there (the default ones
 * do), and the heap ends with the state block; bigger ones go after it, up
 * to the end of the page they end in.
 */
static uint64_t tables_bytes(uint32_t max_attach) {
  shmval__obj_layout lo;
  uint64_t ps = shmval__prim_page_size(), a = SHMVAL__BLOCK_ALIGN - 1;
  shmval__obj_plan((uint64_t)max_attach * sizeof(attach_ent), 8, false, 0, &lo);
  uint64_t tables = ((shmval__dir_init_bytes() + a) & ~a) + ((lo.block + a) & ~a);
  /* Ending with the state block, the heap has no free block to write past it. */
  if (hdr_bytes() + tables <= SHMVAL__HEAP_STATE_BLK)
    return SHMVAL__HEAP_STATE_END - hdr_bytes();
  uint64_t end = SHMVAL__HEAP_STATE_END + tables;
  return ((end + ps - 1) & ~(ps - 1)) - hdr_bytes();
}

/*
 * Lay out a new segment in the file @p fd that this process just created:
 * @p sz.size bytes committed, the file (and every mapping) @p sz.max long.
 * A file that has its name already (@p named) is guarded while it is laid
 * out; an unnamed one needs no guard, as no other process can reach it.
 */
static int init_new(int fd, const char *name, bool named, seg_sizes sz, uint32_t max_attach,
                    unsigned policy, shm_segment **out) {
  uint64_t size = sz.max; /* what is mapped, and unmapped on failure */
  void *mem = NULL;
  shmval__obj *t;
  shm_segment *sg = calloc(1, sizeof *sg);
  int rc = sg == NULL ? SHMVAL_ENOMEM : 0;
  /* Openers wait at the gate until the header is complete. */
  if (rc == 0 && named)
    rc = shmval__prim_flock(fd, GATE_OFF, SHMVAL__FLOCK_WR, true);
  /*
   * The "being initialised" mark goes in before the (slow) reservation: a
   * file made under its name and left by a creator killed from here on is
   * recognised as a dead creator's leftover (EUNINIT, no gate holder).
   */
  uint64_t mark = SHMVAL__SEG_MAGIC_INIT;
  if (rc == 0 && named)
    rc = shmval__prim_write_at(fd, &mark, sizeof mark, 0);
  if (rc == 0)
    rc = shmval__prim_reserve(fd, sz.size, sz.max);
  if (rc == 0)
    rc = shmval__prim_map(fd, (size_t)size, false, &mem);
  if (rc != 0)
    goto fail;
  shmval__seg *seg = mem;
  atomic_store_explicit(&seg->magic, SHMVAL__SEG_MAGIC_INIT, memory_order_relaxed);
  if ((rc = shmval__seg_init(seg, (size_t)sz.size, (size_t)sz.max, SHMVAL__SEG_NAMED,
                             tables_bytes(max_attach))) != 0)
    goto fail;
  seg->policy = policy;
  seg->max_attach = max_attach;
  seg->created_ns = shmval__prim_wall_ns();
  /*
   * The directory first: both go right after the header (see the heap's
   * place_front()), where an opener reads the directory's header and writes
   * its attacher slot's entry: in the header's page, the only one it touches.
   */
  if ((rc = shmval__dir_init(seg)) != 0 ||
      (rc = shmval__obj_alloc_table(seg, SHMVAL__KIND_ATTACH, sizeof(attach_ent), max_attach, &t,
                                    NULL)) != 0) {
    rc = rc == SHMVAL_ENOMEM ? SHMVAL_EINVAL : rc; /* too small for its own tables */
    goto fail;
  }
  seg->attach_off = t->self_off;
  uint64_t dev, ino, fsize;
  if ((rc = shmval__prim_fd_info(fd, &fsize, &dev, &ino)) != 0)
    goto fail;
  *sg = (shm_segment){.base = seg,
                      .attach = shmval__attach_table(seg),
                      .size = (size_t)size,
                      .fd = fd,
                      .slot = -1,
                      .dev = dev,
                      .ino = ino};
  strcpy(sg->name, name);
  if ((rc = claim_slot(sg)) != 0)
    goto fail;
  shmval__seg_publish(seg);
  if (named)
    shmval__prim_flock(fd, GATE_OFF, SHMVAL__FLOCK_UN, false);
  *out = sg;
  return 0;
fail:
  if (mem != NULL)
    shmval__prim_unmap(mem, (size_t)size);
  free(sg);
  return rc;
}

static int open_impl(shm_segment **out, const char *name, const shm_segment_opts *o);

/*
 * SHMVAL_EEXIST if a file called @p name exists (one we may not open exists
 * too), 0 if none does, or the error that kept us from looking.
 */
static int name_taken(const char *name) {
  int fd;
  int rc = shmval__prim_shm_open(name, true, &fd);
  if (rc == 0)
    shmval__prim_close(fd);
  return rc == 0 || rc == SHMVAL_EACCES ? SHMVAL_EEXIST : rc == SHMVAL_ENOENT ? 0 : rc;
}

/* Let go of a segment made in an unnamed file that never got its name. */
static void discard_unnamed(shm_segment *sg) {
  shmval__prim_unmap(sg->base, sg->size);
  shmval__prim_close(sg->fd);
  free(sg);
}

/*
 * Make the segment in a file of its own: unnamed until complete where the
 * system allows (see shmval__prim_shm_create_unnamed()), otherwise created
 * under its name and marked as being initialised at once. SHMVAL_EEXIST when
 * the name is taken.
 */
static int make_segment(const char *nm, seg_sizes total, unsigned mode, uint32_t max_attach,
                        unsigned policy, shm_segment **out) {
  int fd;
  int rc = shmval__prim_shm_create_unnamed(mode, &fd);
  if (rc == 0) {
    if ((rc = init_new(fd, nm, false, total, max_attach, policy, out)) != 0) {
      shmval__prim_close(fd);
      return rc;
    }
    if ((rc = shmval__prim_shm_link(fd, nm)) == 0)
      return 0;
    discard_unnamed(*out);
    *out = NULL;
  }
  if (rc != SHMVAL__ENOUNNAMED)
    return rc;
  if ((rc = shmval__prim_shm_create(nm, mode, &fd)) != 0)
    return rc;
  if ((rc = init_new(fd, nm, true, total, max_attach, policy, out)) != 0) {
    shmval__prim_shm_unlink(nm);
    shmval__prim_close(fd);
  }
  return rc;
}

int shm_segment_create(shm_segment **out, const char *name, size_t size,
                       const shm_segment_opts *o) {
  char nm[SHMVAL__SEG_NAME_SIZE];
  unsigned mode;
  uint32_t max_attach;
  int rc = check_create_opts(o, &mode, &max_attach);
  if (rc != 0 || out == NULL || (rc = norm_name(name, nm)) != 0)
    return rc != 0 ? rc : SHMVAL_EINVAL;
  uint64_t ps = shmval__prim_page_size(), max = o != NULL ? o->max_size : 0;
  if (size == 0 || size > SEG_MAX || (max != 0 && max < size))
    return SHMVAL_EINVAL;
  seg_sizes total = {((uint64_t)size + ps - 1) & ~(ps - 1), (max + ps - 1) & ~(ps - 1)};
  if (max == 0)
    total.max = total.size; /* a fixed segment */
  unsigned flags = o != NULL ? o->flags : 0;
  for (int tries = 0; tries < 8; tries++) {
    /* A name already taken is found before anything is reserved. */
    rc = name_taken(nm);
    if (rc == 0)
      rc = make_segment(nm, total, mode, max_attach, flags & SHMVAL_AUTO_UNLINK, out);
    if (rc == SHMVAL_EEXIST && (flags & SHMVAL_OPEN_OR_CREATE)) {
      shm_segment_opts oo = {.timeout = o != NULL ? o->timeout : 0};
      rc = open_impl(out, nm, &oo);
      if (rc == SHMVAL_ENOENT) /* removed meanwhile: create it after all */
        continue;
      return rc;
    }
    if (rc == 0)
      shmval__attach_add(*out, on_fork);
    return rc;
  }
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Attaching. */

/*
 * The slot is held but a closer may be deciding: let the slot go, wait for
 * the verdict on the gate (shared, so openers do not exclude each other), and
 * attach under it unless the segment was unlinked. A CLOSING flag still set
 * then is a dead closer's: under the shared gate no closer can be at work.
 */
static int attach_past_closer(shm_segment *sg) {
  _Atomic uint32_t *state = &sg->base->state;
  shmval__prim_flock(sg->fd, SLOT_OFF(sg->slot), SHMVAL__FLOCK_UN, false);
  sg->slot = -1;
  int rc = shmval__prim_flock(sg->fd, GATE_OFF, SHMVAL__FLOCK_RD, true);
  if (rc != 0)
    return rc;
  if (atomic_load(state) & SHMVAL__STATE_UNLINKED)
    rc = SHMVAL_ENOENT; /* its last user unlinked it */
  else if ((rc = claim_slot(sg)) == 0 && !(sg->flags & SHMVAL_RDONLY))
    atomic_fetch_and(state, ~SHMVAL__STATE_CLOSING);
  shmval__prim_flock(sg->fd, GATE_OFF, SHMVAL__FLOCK_UN, false);
  return rc;
}

/* Attach through @p fd, an open of the segment; EUNINIT while its creator works. */
static int try_attach(int fd, const char *name, unsigned flags, shm_segment **out) {
  bool ro = (flags & SHMVAL_RDONLY) != 0;
  uint64_t fsize, dev, ino;
  void *mem = NULL;
  shm_segment *sg = NULL;
  int rc = shmval__prim_fd_info(fd, &fsize, &dev, &ino);
  if (rc != 0)
    goto fail;
  if (fsize < sizeof(uint64_t) || fsize > SEG_MAX) {
    rc = fsize == 0 ? SHMVAL_EUNINIT : SHMVAL_ENOTSHMVAL;
    goto fail;
  }
  attach_ent *table = NULL;
  if ((rc = shmval__prim_map(fd, (size_t)fsize, ro, &mem)) != 0 ||
      (rc = validate(mem, fsize, &table)) != 0)
    goto fail;
  if (atomic_load(&((shmval__seg *)mem)->state) & SHMVAL__STATE_UNLINKED) {
    rc = SHMVAL_ENOENT; /* its last user is unlinking it */
    goto fail;
  }
  if ((sg = calloc(1, sizeof *sg)) == NULL) {
    rc = SHMVAL_ENOMEM;
    goto fail;
  }
  *sg = (shm_segment){.base = mem,
                      .attach = table,
                      .size = (size_t)fsize,
                      .fd = fd,
                      .slot = -1,
                      .flags = flags,
                      .pid = shmval__attach_pid(),
                      .dev = dev,
                      .ino = ino};
  strcpy(sg->name, name);
  if (!(flags & SHMVAL_OBSERVE)) {
    if ((rc = claim_slot(sg)) != 0)
      goto fail;
    atomic_thread_fence(memory_order_seq_cst);
    if ((atomic_load(&sg->base->state) & (SHMVAL__STATE_CLOSING | SHMVAL__STATE_UNLINKED)) &&
        (rc = attach_past_closer(sg)) != 0)
      goto fail;
  }
  *out = sg;
  return 0;
fail:
  free(sg);
  if (mem != NULL)
    shmval__prim_unmap(mem, (size_t)fsize);
  return rc;
}

static int open_impl(shm_segment **out, const char *name, const shm_segment_opts *o) {
  unsigned flags = o != NULL ? o->flags : 0;
  double wait = o != NULL && o->timeout != 0 ? o->timeout : DEFAULT_WAIT;
  if (flags & ~(unsigned)(SHMVAL_RDONLY | SHMVAL_OBSERVE) || wait != wait)
    return SHMVAL_EINVAL;
  double deadline = shmval__prim_now() + (wait > 0 ? wait : 0);
  for (;;) {
    int fd, rc = shmval__prim_shm_open(name, (flags & SHMVAL_RDONLY) != 0, &fd);
    if (rc != 0)
      return rc;
    rc = try_attach(fd, name, flags, out);
    if (rc == 0) {
      shmval__attach_add(*out, on_fork);
      return 0;
    }
    shmval__prim_close(fd);
    if (rc != SHMVAL_EUNINIT || shmval__prim_now() >= deadline)
      return rc;
    shmval__prim_sleep(0.002);
  }
}

int shm_segment_open(shm_segment **out, const char *name, const shm_segment_opts *o) {
  char nm[SHMVAL__SEG_NAME_SIZE];
  if (out == NULL || norm_name(name, nm) != 0)
    return SHMVAL_EINVAL;
  return open_impl(out, nm, o);
}

/* ------------------------------------------------------------------------ */
/* Detaching and unlinking. */

/* Unlink @p name only if it still names the file (dev, ino). */
static void unlink_if_same(const char *name, uint64_t dev, uint64_t ino) {
  int fd;
  uint64_t size, d, i;
  if (shmval__prim_shm_open(name, true, &fd) != 0)
    return;
  if (shmval__prim_fd_info(fd, &size, &d, &i) == 0 && d == dev && i == ino)
    shmval__prim_shm_unlink(name);
  shmval__prim_close(fd);
}

/*
 * The segment's state word, writable: a read-only handle maps the header's
 * page through @p gfd, a writable open, into *tmp (unmap it after).
 */
static size_t state_map_len(void) {
  size_t ps = shmval__prim_page_size();
  return (offsetof(shmval__seg, state) + sizeof(uint32_t) + ps - 1) & ~(ps - 1);
}

static _Atomic uint32_t *state_rw(shm_segment *sg, int gfd, void **tmp) {
  *tmp = NULL;
  if (!(sg->flags & SHMVAL_RDONLY))
    return &sg->base->state;
  /* The header is bigger than a page: map as far as the state word. */
  if (shmval__prim_map(gfd, state_map_len(), false, tmp) != 0)
    return NULL;
  return &((shmval__seg *)*tmp)->state;
}

/* The auto-unlink close: release the slot, and unlink if nobody else is attached. */
static void close_auto_unlink(shm_segment *sg) {
  int gfd = sg->fd;
  uint64_t size, dev, ino;
  bool ro = (sg->flags & SHMVAL_RDONLY) != 0;
  void *tmp = NULL;
  _Atomic uint32_t *state = NULL;
  /* Deciding needs the gate exclusively, hence a writable open. */
  if (ro && (shmval__prim_shm_open(sg->name, false, &gfd) != 0 ||
             shmval__prim_fd_info(gfd, &size, &dev, &ino) != 0 || ino != sg->ino)) {
    if (gfd != sg->fd)
      shmval__prim_close(gfd);
    gfd = -1;
  }
  if (gfd < 0 || shmval__prim_flock(gfd, GATE_OFF, SHMVAL__FLOCK_WR, true) != 0 ||
      (state = state_rw(sg, gfd, &tmp)) == NULL) {
    shmval__prim_flock(sg->fd, SLOT_OFF(sg->slot), SHMVAL__FLOCK_UN, false);
    if (gfd >= 0 && gfd != sg->fd)
      shmval__prim_close(gfd); /* releases the gate */
    return;                    /* cannot decide safely: leave it for `shmval gc` */
  }
  /* CLOSING before looking at the slots: see the comment at the top. */
  atomic_fetch_or(state, SHMVAL__STATE_CLOSING);
  note_slot(sg, 0);
  shmval__prim_flock(sg->fd, SLOT_OFF(sg->slot), SHMVAL__FLOCK_UN, false);
  if (shmval__prim_flock_probe(gfd, SLOT_OFF(0), sg->base->max_attach) == -1 &&
      !(atomic_load(state) & SHMVAL__STATE_UNLINKED)) {
    atomic_fetch_or(state, SHMVAL__STATE_UNLINKED);
    unlink_if_same(sg->name, sg->dev, sg->ino);
  }
  atomic_fetch_and(state, ~SHMVAL__STATE_CLOSING);
  if (tmp != NULL)
    shmval__prim_unmap(tmp, state_map_len());
  shmval__prim_flock(gfd, GATE_OFF, SHMVAL__FLOCK_UN, false);
  if (gfd != sg->fd)
    shmval__prim_close(gfd);
}

int shm_segment_close(shm_segment *sg) {
  if (sg == NULL)
    return 0;
  shmval__attach_remove(sg);
  if (sg->slot >= 0 && sg->pid == shmval__attach_pid()) {
    if (sg->base->policy & SHMVAL_AUTO_UNLINK)
      close_auto_unlink(sg);
    else
      note_slot(sg, 0); /* closing the descriptor below releases the slot's lock */
  }
  shmval__prim_unmap(sg->base, sg->size);
  shmval__prim_close(sg->fd);
  free(sg);
  return 0;
}

/*
 * Map the file @p fd (read-only unless @p writable) and classify it; *mem
 * receives the mapping.
 */
static int classify(int fd, bool writable, uint64_t *fsize, uint64_t *dev, uint64_t *ino,
                    void **mem) {
  int rc = shmval__prim_fd_info(fd, fsize, dev, ino);
  *mem = NULL;
  if (rc != 0)
    return rc;
  if (*fsize < sizeof(uint64_t) || *fsize > SEG_MAX)
    return SHMVAL_ENOTSHMVAL; /* an empty file may be anyone's: never ours to touch */
  if ((rc = shmval__prim_map(fd, (size_t)*fsize, !writable, mem)) != 0)
    return rc;
  uint64_t magic = atomic_load(&((shmval__seg *)*mem)->magic);
  if (magic == SHMVAL__SEG_MAGIC_INIT)
    return SHMVAL_EUNINIT;
  attach_ent *table;
  return magic == SHMVAL__SEG_MAGIC ? validate(*mem, *fsize, &table) : SHMVAL_ENOTSHMVAL;
}

int shm_segment_unlink(const char *name) {
  char nm[SHMVAL__SEG_NAME_SIZE];
  int fd;
  uint64_t fsize, dev, ino;
  void *mem;
  int rc = norm_name(name, nm);
  if (rc != 0 || (rc = shmval__prim_shm_open(nm, false, &fd)) != 0)
    return rc;
  /* Mapped writable at once: it is only written if it checks out as ours. */
  rc = classify(fd, true, &fsize, &dev, &ino, &mem);
  if (rc == SHMVAL_ENOTSHMVAL || (rc != 0 && mem == NULL)) {
    shmval__prim_unmap(mem, (size_t)fsize); /* a no-op when nothing was mapped */
    shmval__prim_close(fd);
    return rc;
  }
  /* Ours (valid, corrupt or unfinished): mark it, then remove the name. */
  shmval__prim_flock(fd, GATE_OFF, SHMVAL__FLOCK_WR, true);
  if (rc == 0)
    atomic_fetch_or(&((shmval__seg *)mem)->state, SHMVAL__STATE_UNLINKED);
  shmval__prim_unmap(mem, (size_t)fsize);
  unlink_if_same(nm, dev, ino);
  shmval__prim_close(fd); /* releases the gate */
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Description. */

typedef struct tally {
  shmval__seg *seg;
  size_t objects;
  uint64_t used;
} tally;

static int tally_block(void *ctx, uint64_t off, uint64_t size) {
  tally *t = ctx;
  shmval__obj *o;
  t->used += size;
  /* Internal tables (the directory's, the attachers', dicts', lists') are not objects of their own.
   */
  if (shmval__obj_at(t->seg, off + SHMVAL__OBJ_HDR_OFF, &o) == 0 && o->kind != SHMVAL__KIND_DIR &&
      o->kind != SHMVAL__KIND_ATTACH && o->kind != SHMVAL__KIND_DICT_TAB &&
      o->kind != SHMVAL__KIND_LIST_RING)
    t->objects++;
  return 0;
}

/* Fill @p info from a validated mapping; locked walk when @p writable. */
static int describe(shmval__seg *seg, bool writable, shm_segment_info *info) {
  tally t = {.seg = seg};
  int rc = writable ? shmval__heap_walk(seg, tally_block, &t)
                    : shmval__heap_walk_unlocked(seg, tally_block, &t);
  info->size = (size_t)shmval__seg_size(seg);
  info->max_size = (size_t)seg->max_size;
  info->used = (size_t)t.used;
  /* The committed space past the heap's end is free too: the heap adds it when it needs it. */
  uint64_t end = shmval__seg_size(seg) & ~(uint64_t)(SHMVAL__BLOCK_ALIGN - 1);
  if (end < shmval__heap_end(seg))
    end = shmval__heap_end(seg);
  info->free = (size_t)(end - seg->heap_start - SHMVAL__HEAP_STATE_SIZE - t.used);
  info->objects = t.objects;
  info->max_attach = seg->max_attach;
  info->flags = seg->policy & SHMVAL_AUTO_UNLINK;
  info->created_ns = seg->created_ns;
  return rc;
}

int shm_segment_stat(shm_segment *sg, shm_segment_info *info) {
  if (sg == NULL || info == NULL)
    return SHMVAL_EINVAL;
  memset(info, 0, sizeof *info);
  strcpy(info->name, sg->name);
  int rc = describe(sg->base, !(sg->flags & SHMVAL_RDONLY), info);
  (void)shmval__prim_fd_mode(sg->fd, &info->mode);
  info->attached = count_attached(sg->fd, sg->base->max_attach) + (sg->slot >= 0 ? 1u : 0u);
  return rc;
}

int shm_segment_inspect(const char *name, shm_segment_info *info) {
  char nm[SHMVAL__SEG_NAME_SIZE];
  int fd;
  uint64_t fsize, dev, ino;
  void *mem;
  if (info == NULL)
    return SHMVAL_EINVAL;
  int rc = norm_name(name, nm);
  if (rc != 0 || (rc = shmval__prim_shm_open(nm, true, &fd)) != 0)
    return rc;
  memset(info, 0, sizeof *info);
  strcpy(info->name, nm);
  rc = classify(fd, false, &fsize, &dev, &ino, &mem);
  info->size = info->max_size = (size_t)fsize;
  (void)shmval__prim_fd_mode(fd, &info->mode);
  if (rc == 0) {
    shmval__seg *seg = mem;
    if (describe(seg, false, info) != 0) {
      info->state = SHMVAL_SEG_CORRUPT;
      info->error = SHMVAL_ECORRUPT;
    }
    info->attached = count_attached(fd, seg->max_attach);
    if ((seg->policy & SHMVAL_AUTO_UNLINK) && info->attached == 0)
      info->state = SHMVAL_SEG_ORPHANED;
  } else if (rc == SHMVAL_EUNINIT) {
    /* A creator alive holds the gate; a dead one's leftover holds nothing. */
    info->state =
        shmval__prim_flock_probe(fd, GATE_OFF, 2) == -1 ? SHMVAL_SEG_ORPHANED : SHMVAL_SEG_UNINIT;
  } else if (mem != NULL) {
    info->state = SHMVAL_SEG_CORRUPT;
    info->error = rc;
  }
  bool mapped = mem != NULL;
  if (mapped)
    shmval__prim_unmap(mem, (size_t)fsize);
  shmval__prim_close(fd);
  /* Files that are not ours, and failures to look, are errors; states are not. */
  return rc == SHMVAL_ENOTSHMVAL || (!mapped && rc != 0) ? rc : 0;
}

const char *shm_segment_name(const shm_segment *sg) { return sg != NULL ? sg->name : NULL; }

/* ------------------------------------------------------------------------ */
/* Enumeration. */

static int collect(void *ctx, uint64_t off, uint64_t size) {
  (void)size;
  return shmval__offs_push(ctx, off + SHMVAL__OBJ_HDR_OFF);
}

/*
 * Describe one listed object under the heap lock, so that it cannot be freed
 * and replaced while its header and name are copied: 0, 1 if it is not to be
 * reported, or an error of the lock.
 */
static int snapshot(shm_segment *sg, uint64_t off, shm_object_info *info, char *name) {
  bool locked = !(sg->flags & SHMVAL_RDONLY);
  int rc = locked ? shmval__heap_lock(sg->base) : 0;
  if (rc != 0)
    return rc;
  rc = shmval__obj_info(sg, off, info, name);
  if (locked)
    shmval__heap_unlock(sg->base);
  return rc == 0 ? 0 : 1;
}

int shm_segment_foreach(shm_segment *sg, int (*fn)(const shm_object_info *, void *), void *ctx) {
  if (sg == NULL || fn == NULL)
    return SHMVAL_EINVAL;
  shmval__offs list = {0};
  shmval__creating skip = {0};
  int rc = (sg->flags & SHMVAL_RDONLY) ? shmval__heap_walk_unlocked(sg->base, collect, &list)
                                       : shmval__heap_walk(sg->base, collect, &list);
  /* After the walk: a creation it saw has its journal noted by now. */
  if (rc == 0)
    rc = shmval__creations(sg->base, &skip);
  for (size_t i = 0; rc == 0 && i < list.n; i++) {
    shm_object_info info;
    char name[SHMVAL_NAME_MAX + 1];
    if (!shmval__creating_has(&skip, list.v[i]) && (rc = snapshot(sg, list.v[i], &info, name)) == 0)
      rc = fn(&info, ctx);
    else if (rc > 0)
      rc = 0; /* gone since it was listed, or not an object to report */
  }
  free(list.v);
  free(skip.v);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Removal by name. */

int shm_object_remove(shm_segment *sg, const char *name) {
  size_t len;
  shmval__obj *cont;
  if (sg == NULL || shmval__dir_name_ok(name, &len) != 0)
    return SHMVAL_EINVAL;
  if (sg->flags & SHMVAL_RDONLY)
    return SHMVAL_EACCES;
  /* A container found under the directory lock is destroyed through its handle, after it. */
  int rc = shmval__obj_remove(sg, name, len, &cont);
  if (rc != 0 || cont == NULL)
    return rc;
  return cont->kind == SHMVAL__KIND_DICT ? shm_dict_destroy((shm_dict *)(void *)cont)
                                         : shm_list_destroy((shm_list *)(void *)cont);
}
