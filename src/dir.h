/*
 * The name directory of a named segment (dir.c): an open-addressing hash
 * table in a heap block. Changes hold seg->dir_lock; lookups need not.
 */
#ifndef SHMVAL_DIR_H
#define SHMVAL_DIR_H

#include "reclaim.h"
#include "table.h"

#include <string.h>

/* Make the segment's first (empty) directory table; the bytes of its block. */
int shmval__dir_init(shmval__seg *seg);
uint64_t shmval__dir_init_bytes(void);
/* Lock the directory; rebuilds it from a heap walk after an owner died. */
int shmval__dir_lock(shmval__seg *seg);
/* Note (or with NULL, forget) the journal of the dir_lock holder creating a named object. */
void shmval__dir_note_creator(shmval__seg *seg, const uint64_t *journal);
void shmval__dir_unlock(shmval__seg *seg);
/*
 * Find @p name without the lock, retrying while a peer changes the table;
 * after a few tries (or a peer that died mid-change) the lookup takes the
 * lock, unless @p can_lock is false (a read-only mapping): then EAGAIN.
 * *hdr is the copy of the object's header that was checked: a peer may
 * destroy the object as soon as it is found, so *out is a handle to check
 * again on use, like any other. @p cache (or NULL) is a word of the caller's
 * segment handle, zero at first, where lookups remember the table they
 * checked.
 */
int shmval__dir_lookup(shmval__seg *seg, uint64_t *cache, const char *name, size_t len,
                       bool can_lock, shmval__obj **out, shmval__obj *hdr);
/* Check the directory's shape when a segment is opened: 0 or ECORRUPT. */
int shmval__dir_check(shmval__seg *seg);
/*
 * With the lock held: verify every entry (a live named object, reachable by
 * its name, tagged with its hash) and the counters; the names in *named.
 */
int shmval__dir_verify(shmval__seg *seg, uint64_t *named, shmval__problem *pb);
/* With the lock held: find @p name (ENOENT if absent), add, remove. */
int shmval__dir_find(shmval__seg *seg, const char *name, size_t len, shmval__obj **out);
int shmval__dir_insert(shmval__seg *seg, shmval__obj *o);
int shmval__dir_remove(shmval__seg *seg, shmval__obj *o);
/* 0 if @p name is a valid object name; its length in *len. */
static inline int shmval__dir_name_ok(const char *name, size_t *len) {
  if (name == NULL)
    return SHMVAL_EINVAL;
  size_t n = strnlen(name, SHMVAL_NAME_MAX + 1);
  if (n == 0 || n > SHMVAL_NAME_MAX)
    return SHMVAL_EINVAL;
  *len = n;
  return 0;
}

#endif /* SHMVAL_DIR_H */
