/*
 * Attachments and crash journals.
 *
 * The process's attachments: every segment this process has open, for the
 * journal lookup of an object's segment and for the fork handler, which
 * gives a child an attachment of its own (through the segment layer's
 * callback) before the child runs any other code.
 *
 * The journal words: each read-write attacher's slot in the attacher table
 * holds the one block it is creating or destroying (see shmval__attach_ent);
 * the header's dir_new holds a directory table being made or freed. This
 * file decodes and validates them; reclaim.c frees what they name.
 */
#include "journal.h"
#include "objhdr.h"

#include <stdlib.h>
#include <unistd.h>

static struct {
  pthread_mutex_t mu;
  shm_segment *head;
  void (*on_fork)(shm_segment *sg);
} reg = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL};
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
/*
 * Stepped whenever the attachments change (an open, a close, a fork child's
 * new attachments), so that a thread's cached journal lookup is known stale.
 */
static _Atomic uint64_t reg_gen = 1;

/*
 * This process's pid, asked of the kernel once and again in every fork child
 * (by reg_child), since segment calls need it on every open and close.
 */
static _Atomic int cached_pid;

int shmval__attach_pid(void) {
  int pid = atomic_load_explicit(&cached_pid, memory_order_relaxed);
  if (pid == 0) {
    pid = (int)getpid();
    atomic_store_explicit(&cached_pid, pid, memory_order_relaxed);
  }
  return pid;
}

static void reg_prepare(void) { pthread_mutex_lock(&reg.mu); }
static void reg_parent(void) { pthread_mutex_unlock(&reg.mu); }
static void reg_child(void) {
  int pid = (int)getpid();
  atomic_store_explicit(&cached_pid, pid, memory_order_relaxed);
  for (shm_segment *sg = reg.head; sg != NULL; sg = sg->next) {
    if (reg.on_fork != NULL)
      reg.on_fork(sg);
    sg->pid = pid;
  }
  atomic_fetch_add(&reg_gen, 1);
  pthread_mutex_unlock(&reg.mu);
}
static void reg_init(void) { (void)pthread_atfork(reg_prepare, reg_parent, reg_child); }

void shmval__attach_add(shm_segment *sg, void (*on_fork)(shm_segment *sg)) {
  pthread_once(&reg_once, reg_init);
  pthread_mutex_lock(&reg.mu);
  reg.on_fork = on_fork;
  sg->next = reg.head;
  reg.head = sg;
  atomic_fetch_add(&reg_gen, 1);
  pthread_mutex_unlock(&reg.mu);
}

void shmval__attach_remove(shm_segment *sg) {
  pthread_mutex_lock(&reg.mu);
  for (shm_segment **p = &reg.head; *p != NULL; p = &(*p)->next) {
    if (*p == sg) {
      *p = sg->next;
      break;
    }
  }
  atomic_fetch_add(&reg_gen, 1);
  pthread_mutex_unlock(&reg.mu);
}

int shmval__attach_fd(const shmval__seg *seg) {
  int fd = -1;
  pthread_mutex_lock(&reg.mu);
  for (shm_segment *sg = reg.head; sg != NULL && fd < 0; sg = sg->next)
    if (sg->base == seg)
      fd = sg->fd;
  pthread_mutex_unlock(&reg.mu);
  return fd;
}

shmval__attach_ent *shmval__attach_table(shmval__seg *seg) {
  shmval__obj *t;
  if (shmval__obj_at(seg, seg->attach_off, &t) != 0 || t->kind != SHMVAL__KIND_ATTACH ||
      t->length != seg->max_attach)
    return NULL;
  return (shmval__attach_ent *)(void *)((char *)t + t->payload_rel);
}

/*
 * The calling thread's last journal lookup: a destruction finds its journal
 * without the registry's lock and walk while no attachment has changed since.
 * Initial-exec, like the lock token: a read is one instruction, where the
 * default model for a shared library calls __tls_get_addr on every create and
 * destroy; the 32 bytes come from the static TLS space glibc keeps for
 * libraries loaded later (dlopen, Python's ctypes).
 */
static _Thread_local struct {
  uint64_t gen;
  const shmval__seg *seg;
  uint64_t *journal;
  uint32_t dead_magic; /* shmval__dead_magic() of that journal */
} last_journal __attribute__((tls_model("initial-exec")));

static uint32_t dead_magic_of(shmval__seg *seg, const uint64_t *journal);

uint64_t *shmval__journal_for(const shmval__seg *seg) {
  uint64_t *j = NULL;
  if (!(seg->flags & SHMVAL__SEG_NAMED))
    return NULL;
  uint64_t gen = atomic_load_explicit(&reg_gen, memory_order_acquire);
  if (last_journal.seg == seg && last_journal.gen == gen)
    return last_journal.journal;
  int pid = shmval__attach_pid();
  pthread_mutex_lock(&reg.mu);
  gen = atomic_load_explicit(&reg_gen, memory_order_relaxed);
  for (shm_segment *sg = reg.head; sg != NULL && j == NULL; sg = sg->next)
    if (sg->base == seg && sg->pid == pid)
      j = sg->journal;
  pthread_mutex_unlock(&reg.mu);
  last_journal.gen = gen;
  last_journal.seg = seg;
  last_journal.journal = j;
  last_journal.dead_magic = dead_magic_of((shmval__seg *)(uintptr_t)seg, j);
  return j;
}

long shmval__journal_slot(shmval__seg *seg, uint64_t joff) {
  shmval__attach_ent *t = shmval__attach_table(seg);
  uint64_t base = t != NULL ? (uint64_t)((char *)t - (char *)seg) : 0;
  if (t == NULL || joff < base)
    return -1;
  uint64_t rel = joff - base;
  if (rel % sizeof *t != offsetof(shmval__attach_ent, pending) ||
      rel / sizeof *t >= seg->max_attach)
    return -1;
  return (long)(rel / sizeof *t);
}

uint64_t *shmval__journal_at(shmval__seg *seg, uint64_t joff) {
  if (joff == offsetof(shmval__seg, dir_new))
    return &seg->dir_new;
  /* A journal word in a block (a dict's): tagged (see shmval__jword). */
  if (joff % 8 == 0 && joff >= seg->heap_start + 16 && joff < shmval__heap_end(seg) &&
      __atomic_load_n((uint64_t *)(void *)((char *)seg + joff - 8), __ATOMIC_RELAXED) ==
          SHMVAL__JTAG)
    return (uint64_t *)(void *)((char *)seg + joff);
  long slot = joff != 0 ? shmval__journal_slot(seg, joff) : -1;
  return slot >= 0 ? &shmval__attach_table(seg)[slot].pending : NULL;
}

static uint32_t dead_magic_of(shmval__seg *seg, const uint64_t *journal) {
  long slot = journal != NULL ? shmval__journal_slot(seg, shmval__journal_off(seg, journal)) : -1;
  return slot >= 0 ? SHMVAL__OBJ_DEAD_BY(slot) : SHMVAL__OBJ_DEAD;
}

uint32_t shmval__dead_magic(shmval__seg *seg, const uint64_t *journal) {
  /* A destroyer's own journal, just looked up: its slot was found then. */
  if (journal != NULL && journal == last_journal.journal && seg == last_journal.seg &&
      last_journal.gen == atomic_load_explicit(&reg_gen, memory_order_acquire))
    return last_journal.dead_magic;
  return dead_magic_of(seg, journal);
}

int shmval__offs_push(shmval__offs *l, uint64_t off) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    uint64_t *v = realloc(l->v, cap * sizeof *v);
    if (v == NULL)
      return SHMVAL_ENOMEM;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = off;
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

void shmval__offs_sort(shmval__offs *l) {
  if (l->n > 1)
    qsort(l->v, l->n, sizeof *l->v, cmp_u64);
}

int shmval__creations(shmval__seg *seg, shmval__creating *c) {
  shmval__attach_ent *t = shmval__attach_table(seg);
  c->n = 0;
  c->v = t != NULL ? malloc(seg->max_attach * sizeof *c->v) : NULL;
  if (t != NULL && c->v == NULL)
    return SHMVAL_ENOMEM;
  for (uint32_t i = 0; t != NULL && i < seg->max_attach; i++) {
    uint64_t j = __atomic_load_n(&t[i].pending, __ATOMIC_ACQUIRE);
    if ((j & SHMVAL__J_STAGE) == SHMVAL__J_CREATE)
      c->v[c->n++] = (j & ~SHMVAL__J_STAGE) + SHMVAL__OBJ_HDR_OFF;
  }
  if (c->n > 1)
    qsort(c->v, c->n, sizeof *c->v, cmp_u64);
  return 0;
}

bool shmval__creating_has(const shmval__creating *c, uint64_t off) {
  return c->n != 0 && bsearch(&off, c->v, c->n, sizeof *c->v, cmp_u64) != NULL;
}
