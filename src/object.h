/*
 * Objects (object.c): creation, destruction and opening by name of every
 * kind of object, and the Value and Array accessors.
 */
#ifndef SHMVAL_OBJECT_H
#define SHMVAL_OBJECT_H

#include "arena.h"
#include "dir.h"

/* Create an object of any kind; see shmval__obj_create() in object.c. */
int shmval__obj_create(shmval__obj **out, unsigned kind, int type, size_t elem_size, size_t align,
                       size_t length, const void *init, const shm_opts *opts);
int shmval__obj_destroy(const void *h, unsigned kind);
int shmval__obj_open(void **out, struct shm_segment *sg, const char *name, unsigned kind,
                     int expected);

/*
 * Describe the object at @p off of @p sg, its name copied into @p name
 * (SHMVAL_NAME_MAX + 1 bytes): a consistent snapshot when the caller holds
 * the heap lock. ENOENT for an internal table; ESTALE, ECORRUPT.
 */
int shmval__obj_info(struct shm_segment *sg, uint64_t off, shm_object_info *info, char *name);

#endif /* SHMVAL_OBJECT_H */
