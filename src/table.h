/*
 * Internal tables (table.c): the objects that hold a named segment's
 * directory and attacher table, a dict's slots and a list's ring.
 */
#ifndef SHMVAL_TABLE_H
#define SHMVAL_TABLE_H

#include "heap.h"

/*
 * Allocate an internal object (a table) of @p length zeroed elements,
 * journaled in @p journal (or NULL) while it is made (see shmval__heap_alloc()).
 */
int shmval__obj_alloc_table(shmval__seg *seg, unsigned kind, uint32_t elem_size, uint64_t length,
                            shmval__obj **out, uint64_t *journal);
/* The same with an element type and alignment (a list's ring of items). */
int shmval__obj_alloc_ring(shmval__seg *seg, unsigned kind, int type, uint32_t elem_size,
                           size_t align, uint64_t length, shmval__obj **out, uint64_t *journal);
/* Free a table, noting it in the crash journal @p journal (or NULL) until it is free. */
void shmval__obj_free_table(shmval__obj *o, uint64_t *journal);

#endif /* SHMVAL_TABLE_H */
