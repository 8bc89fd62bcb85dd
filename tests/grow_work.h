/*
 * The workload of the growth tests, shared by the test (its forked children)
 * and the peer program (exec'd): one process's share of a segment that grows
 * while every process allocates in it.
 */
#ifndef SHMVAL_TEST_GROW_WORK_H
#define SHMVAL_TEST_GROW_WORK_H

#include <shmval.h>

#include <stdint.h>
#include <stdio.h>

#define GROW_ARRAY_BYTES ((size_t)1 << 20)
#define GROW_WORDS (GROW_ARRAY_BYTES / sizeof(uint32_t))

/* The pattern of word @p k of array @p i of process @p id. */
static inline uint32_t grow_word(int id, int i, size_t k) {
  return ((uint32_t)id << 28) ^ ((uint32_t)i << 20) ^ (uint32_t)(k * 2654435761u);
}

/* Whether the array "p<id>-<i>" of @p s holds its pattern: 0, or the step that failed. */
static inline int grow_verify(shm_segment *s, int id, int i) {
  char name[32];
  shm_array *a;
  snprintf(name, sizeof name, "p%d-%d", id, i);
  if (shm_array_open(&a, s, name, SHMVAL_UINT) != 0 || shm_array_length(a) != GROW_WORDS)
    return 1;
  const uint32_t *w = shm_array_ptr(a);
  for (size_t k = 0; k < GROW_WORDS; k++)
    if (w[k] != grow_word(id, i, k))
      return 2;
  return 0;
}

/*
 * Process @p id's share: @p count raw 1 MiB arrays named "p<id>-<i>", each
 * filled with its pattern as soon as it is made, the shared atomic Value
 * "count" (made before the first grow) incremented after each; then every array
 * verified. 0, or 10 + the step that failed.
 */
static inline int grow_work(shm_segment *s, int id, int count) {
  char name[32];
  shm_value *n;
  if (shm_value_open(&n, s, "count", SHMVAL_LONG) != 0)
    return 10;
  for (int i = 0; i < count; i++) {
    shm_array *a;
    snprintf(name, sizeof name, "p%d-%d", id, i);
    shm_opts o = {.segment = s, .name = name, .flags = SHMVAL_RAW};
    if (shm_array_create(&a, SHMVAL_UINT, GROW_WORDS, NULL, &o) != 0)
      return 11;
    uint32_t *w = shm_array_ptr(a);
    for (size_t k = 0; k < GROW_WORDS; k++)
      w[k] = grow_word(id, i, k);
    if (shm_value_add(n, &(long){1}, NULL) != 0)
      return 12;
  }
  for (int i = 0; i < count; i++)
    if (grow_verify(s, id, i) != 0)
      return 13;
  return 0;
}

#endif /* SHMVAL_TEST_GROW_WORK_H */
