/*
 * Attachments and their crash journals (journal.c): the process's open
 * segments, the attacher table, and the journal words that name the block an
 * attacher is creating or destroying (see shmval__attach_ent).
 */
#ifndef SHMVAL_JOURNAL_H
#define SHMVAL_JOURNAL_H

#include "objhdr.h"

/* A normalised segment name: "/", up to 255 bytes and the terminator (one spare). */
#define SHMVAL__SEG_NAME_SIZE 258

struct shm_segment {
  shmval__seg *base;
  uint64_t *journal; /* this process's crash journal word in the segment, or NULL */
  /*
   * The attacher table, found and checked once when the segment was created
   * or opened (its place is fixed for the segment's life), so that taking
   * and leaving a slot does not check it again; NULL if it was not valid.
   */
  shmval__attach_ent *attach;
  size_t size; /* bytes mapped: the file's size when it was opened */
  int fd;      /* holds this process's attacher lock */
  int slot;    /* attacher slot, or -1 (observer, or none after fork) */
  unsigned flags;
  int pid; /* the process that attached */
  uint64_t dev, ino;
  uint64_t dir_cache; /* the last directory table a lookup checked (see dir.c) */
  char name[SHMVAL__SEG_NAME_SIZE];
  struct shm_segment *next; /* the process's list of open segments */
};

/*
 * The process's attachments. shmval__attach_add() registers one (the first
 * call installs the fork handlers); in a fork child, @p on_fork (given by the
 * segment layer) is called for each before anything else runs.
 */
void shmval__attach_add(struct shm_segment *sg, void (*on_fork)(struct shm_segment *sg));
void shmval__attach_remove(struct shm_segment *sg);
/*
 * The descriptor of this process's attachment mapped at @p seg (the file a
 * grow reserves space in), or -1 if it has none.
 */
int shmval__attach_fd(const shmval__seg *seg);
/* This process's pid, asked of the kernel once per process. */
int shmval__attach_pid(void);

/* The validated attacher table of @p seg, or NULL. */
shmval__attach_ent *shmval__attach_table(shmval__seg *seg);
/* This process's journal word for the named segment mapped at @p seg, or NULL. */
uint64_t *shmval__journal_for(const shmval__seg *seg);
/* The attacher slot whose journal word lies at offset @p joff in @p seg, or -1. */
long shmval__journal_slot(shmval__seg *seg, uint64_t joff);
/*
 * The objects that attachers' journals name as being created: published
 * perhaps, but their create has not returned (and if their creator died, a
 * reclaim frees them), so they are nobody else's yet. Sorted offsets of
 * object headers; free v after.
 */
typedef struct shmval__creating {
  uint64_t *v;
  size_t n;
} shmval__creating;
int shmval__creations(shmval__seg *seg, shmval__creating *c);
bool shmval__creating_has(const shmval__creating *c, uint64_t off);
/* A growable list of offsets in process memory; free v after. */
typedef struct shmval__offs {
  uint64_t *v;
  size_t n, cap;
} shmval__offs;
/* Append @p off: 0 or ENOMEM. */
int shmval__offs_push(shmval__offs *l, uint64_t off);
void shmval__offs_sort(shmval__offs *l);
/* The offset of the journal word @p journal in @p seg; 0 for NULL. */
static inline uint64_t shmval__journal_off(const shmval__seg *seg, const uint64_t *journal) {
  return journal != NULL ? (uint64_t)((const char *)journal - (const char *)seg) : 0;
}
/*
 * The journal word at offset @p joff (read from shared memory), validated:
 * the header's dir_new, an attacher slot's, or a tagged word in a block (a
 * dict's: see shmval__jword); NULL otherwise.
 */
uint64_t *shmval__journal_at(shmval__seg *seg, uint64_t joff);
/*
 * The magic that an object destroyed under the attacher journal @p journal
 * gets: SHMVAL__OBJ_DEAD_BY(its slot), or SHMVAL__OBJ_DEAD without one.
 */
uint32_t shmval__dead_magic(shmval__seg *seg, const uint64_t *journal);

#endif /* SHMVAL_JOURNAL_H */
