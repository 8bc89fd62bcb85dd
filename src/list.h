/*
 * Shared lists (list.c): a ring of items in a segment, every operation under
 * one robust lock, each change recorded before it is made and completed by
 * the lock's next holder after a death; pop_wait sleeps on a futex word.
 */
#ifndef SHMVAL_LIST_H
#define SHMVAL_LIST_H

#include "object.h"

/*
 * For the integrity check, with the heap lock held (not the list's): verify
 * the list whose object header is at @p off (its ring, every item, the
 * counts) and add every block it owns (its ring, its entries, the blocks its
 * journals name) to @p owned. ECORRUPT with *pb filled.
 */
int shmval__list_verify(shmval__seg *seg, uint64_t off, shmval__offs *owned, shmval__problem *pb);

#endif /* SHMVAL_LIST_H */
