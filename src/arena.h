/*
 * The default arena (arena.c): anonymous shared segments made on demand,
 * shared with children forked afterwards.
 */
#ifndef SHMVAL_ARENA_H
#define SHMVAL_ARENA_H

#include "heap.h"

/* Allocate a block of @p bytes in the arena; *seg and *off locate it. */
int shmval__arena_alloc(size_t bytes, shmval__seg **seg, uint64_t *off);

/*
 * A growable anonymous segment of its own, for an object that grows in place:
 * @p max_size bytes of address space mapped now (shared with children forked
 * from here on, so that all of them see its growth), @p size of them
 * committed; the allocator commits more as it needs them. The arena lists it
 * (shm_arena_stat() counts it) but allocates nothing else in it. An empty one
 * of this process with the same maximum is handed out again instead.
 */
int shmval__arena_add_growable(size_t size, size_t max_size, shmval__seg **seg);

#endif /* SHMVAL_ARENA_H */
