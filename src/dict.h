/*
 * Shared dicts (dict.c): a hash table of byte-string keys in a segment, read
 * without locks, written under striped robust locks, grown online, and
 * repaired after a writer's death.
 */
#ifndef SHMVAL_DICT_H
#define SHMVAL_DICT_H

#include "object.h"

/*
 * For the integrity check, with the heap lock held (no dict lock): verify the
 * dict whose object header is at @p off (its table, every slot and entry,
 * the counts) and add every block it owns (its table, its entries, and the
 * blocks its writers' journals name) to @p owned. ECORRUPT with *pb filled.
 */
int shmval__dict_verify(shmval__seg *seg, uint64_t off, shmval__offs *owned, shmval__problem *pb);

#endif /* SHMVAL_DICT_H */
