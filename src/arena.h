/*
 * The default arena (arena.c): anonymous shared segments made on demand,
 * shared with children forked afterwards.
 */
#ifndef SHMVAL_ARENA_H
#define SHMVAL_ARENA_H

#include "heap.h"

/* Allocate a block of @p bytes in the arena; *seg and *off locate it. */
int shmval__arena_alloc(size_t bytes, shmval__seg **seg, uint64_t *off);

#endif /* SHMVAL_ARENA_H */
