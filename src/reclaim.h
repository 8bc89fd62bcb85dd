/*
 * Reclaiming what a dead attacher left (reclaim.c): the block its journal
 * names, freed when the journal shows it was left half-made or half-freed.
 */
#ifndef SHMVAL_RECLAIM_H
#define SHMVAL_RECLAIM_H

#include "heap.h"

/*
 * Free the block the journal word @p pending shows its dead writer left, and
 * clear it; the caller holds the directory lock. *blocks and *bytes grow.
 */
int shmval__reclaim_journal(shmval__seg *seg, uint64_t *pending, size_t *blocks, size_t *bytes);

#endif /* SHMVAL_RECLAIM_H */
