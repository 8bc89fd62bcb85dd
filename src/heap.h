/*
 * The allocator of a segment (heap.c): a two-level segregated fit over
 * boundary-tagged blocks, with its robust lock and its repair after a death.
 */
#ifndef SHMVAL_HEAP_H
#define SHMVAL_HEAP_H

#include "journal.h"

/* Figures from a heap walk. */
typedef struct shmval__heap_stat {
  uint64_t total, used, free, blocks, free_blocks, largest_free;
} shmval__heap_stat;

uint64_t shmval__abi_fingerprint(void);
/*
 * Lay out a fresh segment header and heap over @p size committed bytes at
 * @p seg, mapped (and growable) up to @p max_size bytes (>= size). An
 * anonymous segment is published at once; a named one by its creator, with
 * shmval__seg_publish(), once its tables are in place.
 *
 * With @p first (0: none), the heap covers only its first @p first bytes at
 * first (at least as far as the heap's state block goes), and the first
 * allocation that needs more adds the rest of the committed size (a grow
 * with nothing to commit): a named segment's creator sizes it for its own
 * tables, so that making a segment writes no page past them (the heap's last
 * boundary tag would be on the committed size's last).
 *
 * The memory must be zero, as a new file's or mapping's is: the state
 * block's free lists are not cleared, so that a new segment writes only the
 * pages it uses (a page written is a page fault, which costs more than the
 * rest of the layout).
 */
int shmval__seg_init(shmval__seg *seg, size_t size, size_t max_size, uint32_t flags,
                     uint64_t first);
void shmval__seg_publish(shmval__seg *seg);
/*
 * Call @p cb for every allocated block, under the heap lock (so @p cb must
 * not allocate or free). Stops at the first non-zero result and returns it.
 */
int shmval__heap_walk(shmval__seg *seg, int (*cb)(void *ctx, uint64_t off, uint64_t size),
                      void *ctx);
/* The same without the lock, for read-only mappings: a bounded, racy view. */
int shmval__heap_walk_unlocked(shmval__seg *seg, int (*cb)(void *ctx, uint64_t off, uint64_t size),
                               void *ctx);
/*
 * Allocate a block able to hold @p bytes (block header included), growing
 * the segment's committed size when none is free and it may grow. On success
 * *off is the block's offset from the segment base. SHMVAL_ENOMEM when there
 * is no room; SHMVAL_ENOSPC when a grow found /dev/shm full. The block is noted in the
 * crash journal word @p journal (when not NULL) under the heap lock, before it
 * is taken: see journal.h.
 */
int shmval__heap_alloc(shmval__seg *seg, size_t bytes, uint64_t *off, uint64_t *journal);
/* With the heap lock held: whether @p off starts an allocated block; its size. */
bool shmval__heap_used_block(shmval__seg *seg, uint64_t off, uint64_t *size);
/* Free the block at @p off, clearing the crash journal word @p journal (or NULL) as it becomes
 * free. */
int shmval__heap_free(shmval__seg *seg, uint64_t off, uint64_t *journal);
/*
 * Free the block that the crash journal word @p journal names, if it is still
 * allocated, clearing the word as the block becomes free (or at once when
 * the block is not allocated): for a journal whose writer died, after the
 * heap lock's own repair has settled any free it was in the middle of.
 */
int shmval__heap_free_journaled(shmval__seg *seg, uint64_t *journal);
/* Walk and verify the heap under its lock, filling @p st. */
int shmval__heap_check(shmval__seg *seg, shmval__heap_stat *st);
/* The same with the lock held by the caller, describing the first problem. */
int shmval__heap_verify(shmval__seg *seg, shmval__heap_stat *st, shmval__problem *pb);
/*
 * The heap lock; after a holder died, the heap's derived data is rebuilt
 * first (or the segment fenced off: ECORRUPT, then ENOTRECOVERABLE).
 */
int shmval__heap_lock(shmval__seg *seg);
void shmval__heap_unlock(shmval__seg *seg);

#endif /* SHMVAL_HEAP_H */
