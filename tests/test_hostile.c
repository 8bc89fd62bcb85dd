/*
 * Hostile input, table-driven: every public function called with NULL
 * handles and buffers, unknown type codes, zero, huge and overflowing lengths
 * and indexes, bad names, handles of the wrong kind and destroyed handles.
 * Each call must return its documented code, and none may change anything:
 * the objects used as bait keep their values and the arena its accounting.
 */
#include "helpers.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <wchar.h>

/* Bait: one live object of each kind, one destroyed, and a named segment. */
static shm_value *val, *atom, *dead_val;
static shm_array *arr, *dead_arr;
static shm_lock *lock, *dead_lock;
static shm_sem *sem;
static shm_cond *cond;
static shm_event *event;
static shm_barrier *barrier;
static shm_segment *seg, *ro_seg;
static shm_dict *dict, *tdict, *dead_dict, *ro_dict;
static shm_list *list, *tlist, *dead_list, *ro_list;
static char long_key[SHMVAL_KEY_MAX + 2];
static size_t sz;
static char seg_name[96];

static long lbuf[4];
static char cbuf[8];
static wchar_t wbuf[8];
static unsigned ubuf;
static shm_segment_info sinfo;
static shm_check_report creport;
static shm_arena_info ainfo;
static char long_name[SHMVAL_NAME_MAX + 2];
static char huge_seg_name[300];

static int no_pred(void *ctx) {
  (void)ctx;
  return 1;
}
static int no_fn(const shm_object_info *i, void *ctx) {
  (void)i;
  (void)ctx;
  return 0;
}

static int no_item(const void *k, size_t kl, const void *v, size_t vl, void *ctx) {
  (void)k, (void)kl, (void)v, (void)vl, (void)ctx;
  return 0;
}

static int no_update(void *v, size_t *vl, size_t cap, int present, void *ctx) {
  (void)v, (void)vl, (void)cap, (void)present, (void)ctx;
  return 0;
}

/* Handles of the wrong kind: the same memory seen through another type. */
#define AS(T, h) ((T *)(void *)(h))

/*
 * The table: the call, the code it must return. Calls that return a size, a
 * type or a pointer are compared inside the expression (1 = as documented).
 */
#define CASES(X)                                                                                   \
  /* Values: NULL, bad types, wrong kinds, destroyed. */                                           \
  X(shm_value_create(NULL, SHMVAL_INT, NULL, NULL), SHMVAL_EINVAL)                                 \
  X(shm_value_create(&val, (shm_type)'Z', NULL, NULL), SHMVAL_EINVAL)                              \
  X(shm_value_create(&val, (shm_type)0, NULL, NULL), SHMVAL_EINVAL)                                \
  X(shm_value_create(&val, SHMVAL_INT, NULL, &(shm_opts){.flags = 1u << 30}), SHMVAL_EINVAL)       \
  X(shm_value_create_record(&val, 0, 8, NULL, NULL), SHMVAL_EINVAL)                                \
  X(shm_value_create_record(&val, SIZE_MAX, 8, NULL, NULL), SHMVAL_EINVAL)                         \
  X(shm_value_create_record(&val, 8, 3, NULL, NULL), SHMVAL_EINVAL)                                \
  X(shm_value_destroy(NULL), 0)                                                                    \
  X(shm_value_get(NULL, lbuf), SHMVAL_EINVAL)                                                      \
  X(shm_value_get(val, NULL), SHMVAL_EINVAL)                                                       \
  X(shm_value_set(NULL, lbuf), SHMVAL_EINVAL)                                                      \
  X(shm_value_set(val, NULL), SHMVAL_EINVAL)                                                       \
  X(shm_value_get(dead_val, lbuf), SHMVAL_ESTALE)                                                  \
  X(shm_value_set(dead_val, lbuf), SHMVAL_ESTALE)                                                  \
  X(shm_value_destroy(dead_val), SHMVAL_ESTALE)                                                    \
  X(shm_value_get(AS(shm_value, arr), lbuf), SHMVAL_EINVAL)                                        \
  X(shm_value_ptr(NULL) == NULL, 1)                                                                \
  X(shm_value_get_lock(NULL) == NULL, 1)                                                           \
  X(shm_value_get_lock(atom) == NULL, 1)                                                           \
  X(shm_value_acquire(NULL), SHMVAL_EINVAL)                                                        \
  X(shm_value_release(NULL), SHMVAL_EINVAL)                                                        \
  X(shm_value_release(val), SHMVAL_EPERM)                                                          \
  X(shm_value_acquire(atom), SHMVAL_ENOLOCK)                                                       \
  X(shm_value_add(NULL, lbuf, NULL), SHMVAL_EINVAL)                                                \
  X(shm_value_add(atom, NULL, NULL), SHMVAL_EINVAL)                                                \
  X(shm_value_add(val, lbuf, NULL), SHMVAL_ENOTATOMIC)                                             \
  X(shm_value_exchange(val, lbuf, NULL), SHMVAL_ENOTATOMIC)                                        \
  X(shm_value_cas(val, lbuf, lbuf), SHMVAL_ENOTATOMIC)                                             \
  X(shm_value_cas(atom, NULL, lbuf), SHMVAL_EINVAL)                                                \
  X(shm_value_add(dead_val, lbuf, NULL), SHMVAL_ESTALE)                                            \
  X(shm_value_type(NULL) == 0, 1)                                                                  \
  X(shm_value_size(NULL) == 0, 1)                                                                  \
  /* Arrays. */                                                                                    \
  X(shm_array_create(NULL, SHMVAL_INT, 4, NULL, NULL), SHMVAL_EINVAL)                              \
  X(shm_array_create(&arr, SHMVAL_LONG, SIZE_MAX / 4, NULL, NULL), SHMVAL_EINVAL)                  \
  X(shm_array_create(&arr, (shm_type)'Z', 4, NULL, NULL), SHMVAL_EINVAL)                           \
  X(shm_array_create_record(&arr, 16, 8, SIZE_MAX / 8, NULL, NULL), SHMVAL_EINVAL)                 \
  X(shm_array_destroy(NULL), 0)                                                                    \
  X(shm_array_get(NULL, 0, lbuf), SHMVAL_EINVAL)                                                   \
  X(shm_array_get(arr, 4, lbuf), SHMVAL_ERANGE)                                                    \
  X(shm_array_get(arr, SIZE_MAX, lbuf), SHMVAL_ERANGE)                                             \
  X(shm_array_get(arr, 0, NULL), SHMVAL_EINVAL)                                                    \
  X(shm_array_set(arr, 4, lbuf), SHMVAL_ERANGE)                                                    \
  X(shm_array_read(arr, 3, 2, lbuf), SHMVAL_ERANGE)                                                \
  X(shm_array_read(arr, SIZE_MAX, 2, lbuf), SHMVAL_ERANGE)                                         \
  X(shm_array_read(arr, 1, SIZE_MAX, lbuf), SHMVAL_ERANGE)                                         \
  X(shm_array_write(arr, 2, SIZE_MAX - 1, lbuf), SHMVAL_ERANGE)                                    \
  X(shm_array_read(arr, 0, 1, NULL), SHMVAL_EINVAL)                                                \
  X(shm_array_get(dead_arr, 0, lbuf), SHMVAL_ESTALE)                                               \
  X(shm_array_get(AS(shm_array, val), 0, lbuf), SHMVAL_EINVAL)                                     \
  X(shm_array_length(NULL) == 0, 1)                                                                \
  X(shm_array_elem_size(NULL) == 0, 1)                                                             \
  X(shm_array_type(NULL) == 0, 1)                                                                  \
  X(shm_array_ptr(NULL) == NULL, 1)                                                                \
  X(shm_array_get_lock(NULL) == NULL, 1)                                                           \
  X(shm_array_acquire(NULL), SHMVAL_EINVAL)                                                        \
  X(shm_array_release(arr), SHMVAL_EPERM)                                                          \
  X(shm_array_get_string(arr, cbuf, sizeof cbuf), SHMVAL_ETYPE)                                    \
  X(shm_array_set_string(arr, "x"), SHMVAL_ETYPE)                                                  \
  X(shm_array_get_wstring(arr, wbuf, 8), SHMVAL_ETYPE)                                             \
  X(shm_array_set_wstring(arr, L"x"), SHMVAL_ETYPE)                                                \
  X(shm_array_get_string(NULL, cbuf, sizeof cbuf), SHMVAL_EINVAL)                                  \
  X(shm_array_set_string(arr, NULL), SHMVAL_EINVAL)                                                \
  /* Locks. */                                                                                     \
  X(shm_lock_acquire(NULL), SHMVAL_EINVAL)                                                         \
  X(shm_lock_try_acquire(NULL), SHMVAL_EINVAL)                                                     \
  X(shm_lock_acquire_timeout(NULL, 0.1), SHMVAL_EINVAL)                                            \
  X(shm_lock_acquire_timeout(lock, -1.0 / 0.0 * 0.0), SHMVAL_EINVAL)                               \
  X(shm_lock_release(NULL), SHMVAL_EINVAL)                                                         \
  X(shm_lock_release(lock), SHMVAL_EPERM)                                                          \
  X(shm_lock_is_owned(NULL), 0)                                                                    \
  X(shm_lock_acquire(dead_lock), SHMVAL_ESTALE)                                                    \
  X(shm_lock_acquire(AS(shm_lock, sem)), SHMVAL_EINVAL)                                            \
  X(shm_lock_acquire(AS(shm_lock, val)), SHMVAL_EINVAL)                                            \
  X(shm_lock_create(NULL, NULL), SHMVAL_EINVAL)                                                    \
  X(shm_lock_destroy(NULL), 0)                                                                     \
  X(shm_lock_locked(NULL), SHMVAL_EINVAL)                                                          \
  /* Synchronisation primitives. */                                                                \
  X(shm_sem_create(NULL, 1, NULL), SHMVAL_EINVAL)                                                  \
  X(shm_sem_create(&sem, -1, NULL), SHMVAL_EINVAL)                                                 \
  X(shm_sem_create(&sem, (long)UINT32_MAX + 1, NULL), SHMVAL_EINVAL)                               \
  X(shm_sem_acquire(NULL, 0), SHMVAL_EINVAL)                                                       \
  X(shm_sem_release(NULL), SHMVAL_EINVAL)                                                          \
  X(shm_sem_value(NULL, &ubuf), SHMVAL_EINVAL)                                                     \
  X(shm_sem_value(sem, NULL), SHMVAL_EINVAL)                                                       \
  X(shm_sem_acquire(AS(shm_sem, event), 0), SHMVAL_EINVAL)                                         \
  X(shm_sem_destroy(NULL), 0)                                                                      \
  X(shm_cond_create(NULL, NULL, NULL), SHMVAL_EINVAL)                                              \
  X(shm_cond_wait(NULL, 0.01), SHMVAL_EINVAL)                                                      \
  X(shm_cond_wait(cond, 0.01), SHMVAL_EPERM)                                                       \
  X(shm_cond_wait_for(cond, NULL, NULL, 0.01, NULL), SHMVAL_EINVAL)                                \
  X(shm_cond_wait_for(NULL, no_pred, NULL, 0.01, NULL), SHMVAL_EINVAL)                             \
  X(shm_cond_notify(NULL, 1), SHMVAL_EINVAL)                                                       \
  X(shm_cond_notify(cond, 1), SHMVAL_EPERM)                                                        \
  X(shm_cond_notify_all(AS(shm_cond, sem)), SHMVAL_EINVAL)                                         \
  X(shm_cond_get_lock(NULL) == NULL, 1)                                                            \
  X(shm_cond_destroy(NULL), 0)                                                                     \
  X(shm_event_create(NULL, NULL), SHMVAL_EINVAL)                                                   \
  X(shm_event_set(NULL), SHMVAL_EINVAL)                                                            \
  X(shm_event_clear(NULL), SHMVAL_EINVAL)                                                          \
  X(shm_event_is_set(NULL), SHMVAL_EINVAL)                                                         \
  X(shm_event_wait(NULL, 0), SHMVAL_EINVAL)                                                        \
  X(shm_event_set(AS(shm_event, barrier)), SHMVAL_EINVAL)                                          \
  X(shm_event_destroy(NULL), 0)                                                                    \
  X(shm_barrier_create(NULL, 2, 0, NULL, NULL, NULL), SHMVAL_EINVAL)                               \
  X(shm_barrier_create(&barrier, 0, 0, NULL, NULL, NULL), SHMVAL_EINVAL)                           \
  X(shm_barrier_wait(NULL, NULL), SHMVAL_EINVAL)                                                   \
  X(shm_barrier_wait_timeout(NULL, 0.1, NULL), SHMVAL_EINVAL)                                      \
  X(shm_barrier_abort(NULL), SHMVAL_EINVAL)                                                        \
  X(shm_barrier_reset(NULL), SHMVAL_EINVAL)                                                        \
  X(shm_barrier_broken(NULL), SHMVAL_EINVAL)                                                       \
  X(shm_barrier_n_waiting(NULL), SHMVAL_EINVAL)                                                    \
  X(shm_barrier_parties(NULL), SHMVAL_EINVAL)                                                      \
  X(shm_barrier_set_action(NULL, NULL, NULL), SHMVAL_EINVAL)                                       \
  X(shm_barrier_parties(AS(shm_barrier, event)), SHMVAL_EINVAL)                                    \
  X(shm_barrier_destroy(NULL), 0)                                                                  \
  /* Segments and names. */                                                                        \
  X(shm_segment_create(NULL, "/x", 1 << 20, NULL), SHMVAL_EINVAL)                                  \
  X(shm_segment_create(&seg, NULL, 1 << 20, NULL), SHMVAL_EINVAL)                                  \
  X(shm_segment_create(&seg, "", 1 << 20, NULL), SHMVAL_EINVAL)                                    \
  X(shm_segment_create(&seg, "/", 1 << 20, NULL), SHMVAL_EINVAL)                                   \
  X(shm_segment_create(&seg, "/a/b", 1 << 20, NULL), SHMVAL_EINVAL)                                \
  X(shm_segment_create(&seg, "..", 1 << 20, NULL), SHMVAL_EINVAL)                                  \
  X(shm_segment_create(&seg, huge_seg_name, 1 << 20, NULL), SHMVAL_EINVAL)                         \
  X(shm_segment_create(&seg, seg_name, 0, NULL), SHMVAL_EINVAL)                                    \
  X(shm_segment_create(&seg, seg_name, SIZE_MAX, NULL), SHMVAL_EINVAL)                             \
  X(shm_segment_create(&seg, seg_name, 1 << 20, &(shm_segment_opts){.flags = 1u << 30}),           \
    SHMVAL_EINVAL)                                                                                 \
  X(shm_segment_create(&seg, seg_name, 1 << 20, &(shm_segment_opts){.mode = 01777}),               \
    SHMVAL_EINVAL)                                                                                 \
  X(shm_segment_create(&seg, seg_name, 1 << 20, &(shm_segment_opts){.max_size = 4096}),            \
    SHMVAL_EINVAL)                                                                                 \
  X(shm_segment_create(&seg, seg_name, 1 << 20, &(shm_segment_opts){.max_size = SIZE_MAX}),        \
    SHMVAL_EINVAL)                                                                                 \
  X(shm_segment_create(&seg, seg_name, SIZE_MAX, &(shm_segment_opts){.max_size = SIZE_MAX}),       \
    SHMVAL_EINVAL)                                                                                 \
  X(shm_segment_open(NULL, seg_name, NULL), SHMVAL_EINVAL)                                         \
  X(shm_segment_open(&seg, "/a/b", NULL), SHMVAL_EINVAL)                                           \
  X(shm_segment_close(NULL), 0)                                                                    \
  X(shm_segment_unlink(NULL), SHMVAL_EINVAL)                                                       \
  X(shm_segment_unlink(""), SHMVAL_EINVAL)                                                         \
  X(shm_segment_stat(NULL, &sinfo), SHMVAL_EINVAL)                                                 \
  X(shm_segment_stat(seg, NULL), SHMVAL_EINVAL)                                                    \
  X(shm_segment_inspect(NULL, &sinfo), SHMVAL_EINVAL)                                              \
  X(shm_segment_inspect(seg_name, NULL), SHMVAL_EINVAL)                                            \
  X(shm_segment_foreach(NULL, no_fn, NULL), SHMVAL_EINVAL)                                         \
  X(shm_segment_foreach(seg, NULL, NULL), SHMVAL_EINVAL)                                           \
  X(shm_segment_check(NULL, &creport), SHMVAL_EINVAL)                                              \
  X(shm_segment_check(seg, NULL), SHMVAL_EINVAL)                                                   \
  X(shm_segment_reclaim(NULL, NULL, NULL), SHMVAL_EINVAL)                                          \
  X(shm_segment_name(NULL) == NULL, 1)                                                             \
  X(shm_value_open(NULL, seg, "v", 0), SHMVAL_EINVAL)                                              \
  X(shm_value_open(&val, NULL, "v", 0), SHMVAL_EINVAL)                                             \
  X(shm_value_open(&val, seg, NULL, 0), SHMVAL_EINVAL)                                             \
  X(shm_value_open(&val, seg, "", 0), SHMVAL_EINVAL)                                               \
  X(shm_value_open(&val, seg, long_name, 0), SHMVAL_EINVAL)                                        \
  X(shm_value_open(&val, seg, "missing", 0), SHMVAL_ENOENT)                                        \
  X(shm_value_open(&val, seg, "arr", 0), SHMVAL_ETYPE)                                             \
  X(shm_value_open(&val, seg, "v", SHMVAL_DOUBLE), SHMVAL_ETYPE)                                   \
  X(shm_array_open(&arr, seg, "v", 0), SHMVAL_ETYPE)                                               \
  X(shm_lock_open(&lock, seg, "v"), SHMVAL_ETYPE)                                                  \
  X(shm_sem_open(&sem, seg, "v"), SHMVAL_ETYPE)                                                    \
  X(shm_cond_open(&cond, seg, "v"), SHMVAL_ETYPE)                                                  \
  X(shm_event_open(&event, seg, "v"), SHMVAL_ETYPE)                                                \
  X(shm_barrier_open(&barrier, seg, "v"), SHMVAL_ETYPE)                                            \
  X(shm_object_remove(NULL, "v"), SHMVAL_EINVAL)                                                   \
  X(shm_object_remove(seg, long_name), SHMVAL_EINVAL)                                              \
  X(shm_object_remove(seg, "missing"), SHMVAL_ENOENT)                                              \
  X(shm_value_create(&val, SHMVAL_INT, NULL, &(shm_opts){.segment = seg, .name = "v"}),            \
    SHMVAL_EEXIST)                                                                                 \
  X(shm_value_create(&val, SHMVAL_INT, NULL, &(shm_opts){.name = "v"}), SHMVAL_EINVAL)             \
  /* Dicts: NULL, bad types and options, wrong kinds, destroyed, small buffers, read-only. */      \
  X(shm_dict_create(NULL, 0, NULL), SHMVAL_EINVAL)                                                 \
  X(shm_dict_create(&dict, (shm_type)'Z', NULL), SHMVAL_EINVAL)                                    \
  X(shm_dict_create(&dict, SHMVAL_RECORD, NULL), SHMVAL_EINVAL)                                    \
  X(shm_dict_create(&dict, 0, &(shm_opts){.flags = SHMVAL_RAW}), SHMVAL_EINVAL)                    \
  X(shm_dict_create(&dict, 0, &(shm_opts){.lock = lock}), SHMVAL_EINVAL)                           \
  X(shm_dict_create(&dict, 0, &(shm_opts){.segment = seg, .name = "dict"}), SHMVAL_EEXIST)         \
  X(shm_dict_create(&dict, 0, &(shm_opts){.name = "x"}), SHMVAL_EINVAL)                            \
  X(shm_dict_create(&dict, 0, &(shm_opts){.segment = ro_seg, .name = "x"}), SHMVAL_EACCES)         \
  X(shm_dict_create_record(&dict, 0, 8, NULL), SHMVAL_EINVAL)                                      \
  X(shm_dict_create_record(&dict, 12, 8, NULL), SHMVAL_EINVAL)                                     \
  X(shm_dict_open(NULL, seg, "dict"), SHMVAL_EINVAL)                                               \
  X(shm_dict_open(&dict, seg, "v"), SHMVAL_ETYPE)                                                  \
  X(shm_dict_open(&dict, seg, "missing"), SHMVAL_ENOENT)                                           \
  X(shm_dict_open(&dict, NULL, "dict"), SHMVAL_EINVAL)                                             \
  X(shm_value_open(&val, seg, "dict", 0), SHMVAL_ETYPE)                                            \
  X(shm_array_open(&arr, seg, "dict", 0), SHMVAL_ETYPE)                                            \
  X(shm_dict_set(NULL, "k", 1, "v", 1), SHMVAL_EINVAL)                                             \
  X(shm_dict_set(dict, NULL, 1, "v", 1), SHMVAL_EINVAL)                                            \
  X(shm_dict_set(dict, "k", 1, NULL, 1), SHMVAL_EINVAL)                                            \
  X(shm_dict_set(dict, long_key, SHMVAL_KEY_MAX + 1, "v", 1), SHMVAL_EINVAL)                       \
  X(shm_dict_set(tdict, "k", 1, "v", 1), SHMVAL_EINVAL)                                            \
  X(shm_dict_set(AS(shm_dict, val), "k", 1, "v", 1), SHMVAL_EINVAL)                                \
  X(shm_dict_set(AS(shm_dict, arr), "k", 1, "v", 1), SHMVAL_EINVAL)                                \
  X(shm_dict_set(dead_dict, "k", 1, "v", 1), SHMVAL_ESTALE)                                        \
  X(shm_dict_get(dict, "a", 1, cbuf, 1, &sz), SHMVAL_ENOBUFS)                                      \
  X(shm_dict_get(dict, "zz", 2, cbuf, 8, &sz), SHMVAL_ENOENT)                                      \
  X(shm_dict_get(dict, "a", 1, NULL, 4, &sz), SHMVAL_EINVAL)                                       \
  X(shm_dict_get(dict, long_key, SHMVAL_KEY_MAX + 1, cbuf, 8, &sz), SHMVAL_EINVAL)                 \
  X(shm_dict_get(dead_dict, "a", 1, cbuf, 8, &sz), SHMVAL_ESTALE)                                  \
  X(shm_dict_get(AS(shm_dict, sem), "a", 1, cbuf, 8, &sz), SHMVAL_EINVAL)                          \
  X(shm_dict_contains(dict, "a", 1), 1)                                                            \
  X(shm_dict_contains(dict, NULL, 1), SHMVAL_EINVAL)                                               \
  X(shm_dict_contains(dead_dict, "a", 1), SHMVAL_ESTALE)                                           \
  X(shm_dict_del(dict, "zz", 2), SHMVAL_ENOENT)                                                    \
  X(shm_dict_del(NULL, "zz", 2), SHMVAL_EINVAL)                                                    \
  X(shm_dict_pop(dict, "a", 1, cbuf, 1, &sz), SHMVAL_ENOBUFS)                                      \
  X(shm_dict_pop(dict, "zz", 2, cbuf, 8, &sz), SHMVAL_ENOENT)                                      \
  X(shm_dict_pop(dict, "a", 1, NULL, 8, &sz), SHMVAL_EINVAL)                                       \
  X(shm_dict_setdefault(dict, "new", 3, "0123456789", 10, cbuf, 8, &sz), SHMVAL_ENOBUFS)           \
  X(shm_dict_setdefault(dict, "a", 1, "x", 1, cbuf, 1, &sz), SHMVAL_ENOBUFS)                       \
  X(shm_dict_setdefault(tdict, "k", 1, "v", 1, NULL, 0, NULL), SHMVAL_EINVAL)                      \
  X(shm_dict_len(dict, NULL), SHMVAL_EINVAL)                                                       \
  X(shm_dict_len(NULL, &sz), SHMVAL_EINVAL)                                                        \
  X(shm_dict_len(dead_dict, &sz), SHMVAL_ESTALE)                                                   \
  X(shm_dict_add(dict, "a", 1, lbuf, NULL), SHMVAL_ETYPE)                                          \
  X(shm_dict_add(tdict, "a", 1, NULL, NULL), SHMVAL_EINVAL)                                        \
  X(shm_dict_update(dict, "a", 1, NULL, NULL), SHMVAL_EINVAL)                                      \
  X(shm_dict_foreach(dict, NULL, NULL), SHMVAL_EINVAL)                                             \
  X(shm_dict_foreach(NULL, no_item, NULL), SHMVAL_EINVAL)                                          \
  X(shm_dict_clear(dead_dict), SHMVAL_ESTALE)                                                      \
  X(shm_dict_destroy(dead_dict), SHMVAL_ESTALE)                                                    \
  X(shm_dict_destroy(AS(shm_dict, arr)), SHMVAL_EINVAL)                                            \
  X(shm_dict_value_type(NULL, NULL) == 0, 1)                                                       \
  X(shm_dict_value_type(AS(shm_dict, val), NULL) == 0, 1)                                          \
  X(shm_dict_set(ro_dict, "a", 1, "v", 1), SHMVAL_EACCES)                                          \
  X(shm_dict_del(ro_dict, "a", 1), SHMVAL_EACCES)                                                  \
  X(shm_dict_pop(ro_dict, "a", 1, cbuf, 8, &sz), SHMVAL_EACCES)                                    \
  X(shm_dict_setdefault(ro_dict, "q", 1, "v", 1, NULL, 0, NULL), SHMVAL_EACCES)                    \
  X(shm_dict_add(ro_dict, "a", 1, lbuf, NULL), SHMVAL_EACCES)                                      \
  X(shm_dict_update(ro_dict, "a", 1, no_update, NULL), SHMVAL_EACCES)                              \
  X(shm_dict_clear(ro_dict), SHMVAL_EACCES)                                                        \
  X(shm_dict_destroy(ro_dict), SHMVAL_EACCES)                                                      \
  X(shm_object_remove(ro_seg, "dict"), SHMVAL_EACCES)                                              \
  X(shm_dict_contains(ro_dict, "a", 1), 1)                                                         \
  X(shm_list_create(NULL, 0, NULL), SHMVAL_EINVAL)                                                 \
  X(shm_list_create(&list, (shm_type)'Z', NULL), SHMVAL_EINVAL)                                    \
  X(shm_list_create(&list, SHMVAL_RECORD, NULL), SHMVAL_EINVAL)                                    \
  X(shm_list_create(&list, 0, &(shm_opts){.flags = SHMVAL_RAW}), SHMVAL_EINVAL)                    \
  X(shm_list_create(&list, 0, &(shm_opts){.segment = seg, .name = "list"}), SHMVAL_EEXIST)         \
  X(shm_list_create(&list, 0, &(shm_opts){.segment = ro_seg, .name = "x"}), SHMVAL_EACCES)         \
  X(shm_list_create_record(&list, 12, 8, NULL), SHMVAL_EINVAL)                                     \
  X(shm_list_open(NULL, seg, "list"), SHMVAL_EINVAL)                                               \
  X(shm_list_open(&list, seg, "dict"), SHMVAL_ETYPE)                                               \
  X(shm_list_open(&list, seg, "missing"), SHMVAL_ENOENT)                                           \
  X(shm_dict_open(&dict, seg, "list"), SHMVAL_ETYPE)                                               \
  X(shm_value_open(&val, seg, "list", 0), SHMVAL_ETYPE)                                            \
  X(shm_list_append(NULL, "x", 1), SHMVAL_EINVAL)                                                  \
  X(shm_list_append(list, NULL, 1), SHMVAL_EINVAL)                                                 \
  X(shm_list_append(tlist, "x", 1), SHMVAL_EINVAL)                                                 \
  X(shm_list_append(AS(shm_list, dict), "x", 1), SHMVAL_EINVAL)                                    \
  X(shm_list_append(AS(shm_list, val), "x", 1), SHMVAL_EINVAL)                                     \
  X(shm_list_append(dead_list, "x", 1), SHMVAL_ESTALE)                                             \
  X(shm_list_extend(list, "x", 1), SHMVAL_ETYPE)                                                   \
  X(shm_list_extend(tlist, NULL, 2), SHMVAL_EINVAL)                                                \
  X(shm_list_insert(tlist, 0, NULL, 8), SHMVAL_EINVAL)                                             \
  X(shm_list_get(list, 2, cbuf, 8, &sz), SHMVAL_ERANGE)                                            \
  X(shm_list_get(list, -3, cbuf, 8, &sz), SHMVAL_ERANGE)                                           \
  X(shm_list_get(list, -1, cbuf, 8, &sz), SHMVAL_ENOBUFS)                                          \
  X(shm_list_get(list, 0, NULL, 8, &sz), SHMVAL_EINVAL)                                            \
  X(shm_list_get(dead_list, 0, cbuf, 8, &sz), SHMVAL_ESTALE)                                       \
  X(shm_list_set(list, 5, "x", 1), SHMVAL_ERANGE)                                                  \
  X(shm_list_set(tlist, 0, "x", 1), SHMVAL_EINVAL)                                                 \
  X(shm_list_pop(list, -1, cbuf, 8, &sz), SHMVAL_ENOBUFS)                                          \
  X(shm_list_pop(list, 9, cbuf, 8, &sz), SHMVAL_ERANGE)                                            \
  X(shm_list_pop(list, 0, NULL, 8, &sz), SHMVAL_EINVAL)                                            \
  X(shm_list_pop_wait(list, 1, 0, cbuf, 8, &sz), SHMVAL_EINVAL)                                    \
  X(shm_list_pop_wait(list, 0, NAN, cbuf, 8, &sz), SHMVAL_EINVAL)                                  \
  X(shm_list_pop_wait(list, -1, 0, cbuf, 8, &sz), SHMVAL_ENOBUFS)                                  \
  X(shm_list_pop_wait(dead_list, 0, 0, cbuf, 8, &sz), SHMVAL_ESTALE)                               \
  X(shm_list_append_many(NULL, "x", &(size_t){1}, 1), SHMVAL_EINVAL)                               \
  X(shm_list_append_many(list, NULL, &(size_t){1}, 1), SHMVAL_EINVAL)                              \
  X(shm_list_append_many(list, "x", NULL, 1), SHMVAL_EINVAL)                                       \
  X(shm_list_append_many(tlist, "x", &(size_t){1}, 1), SHMVAL_EINVAL)                              \
  X(shm_list_append_many(AS(shm_list, dict), "x", &(size_t){1}, 1), SHMVAL_EINVAL)                 \
  X(shm_list_append_many(dead_list, "x", &(size_t){1}, 1), SHMVAL_ESTALE)                          \
  X(shm_list_pop_many(list, 1, 1, 0, cbuf, 8, &sz, &(size_t){0}), SHMVAL_EINVAL)                   \
  X(shm_list_pop_many(list, 0, 0, 0, cbuf, 8, &sz, &(size_t){0}), SHMVAL_EINVAL)                   \
  X(shm_list_pop_many(list, 0, 1, NAN, cbuf, 8, &sz, &(size_t){0}), SHMVAL_EINVAL)                 \
  X(shm_list_pop_many(list, 0, 1, 0, cbuf, 8, NULL, &(size_t){0}), SHMVAL_EINVAL)                  \
  X(shm_list_pop_many(list, 0, 1, 0, cbuf, 8, &sz, NULL), SHMVAL_EINVAL)                           \
  X(shm_list_pop_many(list, 0, 1, 0, NULL, 8, &sz, &(size_t){0}), SHMVAL_EINVAL)                   \
  X(shm_list_pop_many(list, -1, 1, 0, cbuf, 8, &sz, &(size_t){0}), SHMVAL_ENOBUFS)                 \
  X(shm_list_pop_many(AS(shm_list, val), 0, 1, 0, cbuf, 8, &sz, &(size_t){0}), SHMVAL_EINVAL)      \
  X(shm_list_pop_many(dead_list, 0, 1, 0, cbuf, 8, &sz, &(size_t){0}), SHMVAL_ESTALE)              \
  X(shm_list_len(list, NULL), SHMVAL_EINVAL)                                                       \
  X(shm_list_len(dead_list, &sz), SHMVAL_ESTALE)                                                   \
  X(shm_list_read(list, 0, 1, lbuf), SHMVAL_ETYPE)                                                 \
  X(shm_list_read(tlist, 0, 2, lbuf), SHMVAL_ERANGE)                                               \
  X(shm_list_read(tlist, 0, 1, NULL), SHMVAL_EINVAL)                                               \
  X(shm_list_index(list, "zz", 2, &sz), SHMVAL_ENOENT)                                             \
  X(shm_list_remove(list, "zz", 2), SHMVAL_ENOENT)                                                 \
  X(shm_list_sort(list, NULL), SHMVAL_ETYPE)                                                       \
  X(shm_list_foreach(list, NULL, NULL), SHMVAL_EINVAL)                                             \
  X(shm_list_clear(dead_list), SHMVAL_ESTALE)                                                      \
  X(shm_list_destroy(dead_list), SHMVAL_ESTALE)                                                    \
  X(shm_list_destroy(AS(shm_list, arr)), SHMVAL_EINVAL)                                            \
  X(shm_list_item_type(NULL, NULL) == 0, 1)                                                        \
  X(shm_list_append(ro_list, "x", 1), SHMVAL_EACCES)                                               \
  X(shm_list_insert(ro_list, 0, "x", 1), SHMVAL_EACCES)                                            \
  X(shm_list_set(ro_list, 0, "x", 1), SHMVAL_EACCES)                                               \
  X(shm_list_pop(ro_list, 0, cbuf, 8, &sz), SHMVAL_EACCES)                                         \
  X(shm_list_pop_wait(ro_list, 0, 0, cbuf, 8, &sz), SHMVAL_EACCES)                                 \
  X(shm_list_append_many(ro_list, "x", &(size_t){1}, 1), SHMVAL_EACCES)                            \
  X(shm_list_pop_many(ro_list, 0, 1, 0, cbuf, 8, &sz, &(size_t){0}), SHMVAL_EACCES)                \
  X(shm_list_remove(ro_list, "a", 1), SHMVAL_EACCES)                                               \
  X(shm_list_reverse(ro_list), SHMVAL_EACCES)                                                      \
  X(shm_list_clear(ro_list), SHMVAL_EACCES)                                                        \
  X(shm_list_destroy(ro_list), SHMVAL_EACCES)                                                      \
  X(shm_object_remove(ro_seg, "list"), SHMVAL_EACCES)                                              \
  X(shm_list_index(ro_list, "a", 1, NULL), 0)                                                      \
  /* Errors and misc. */                                                                           \
  X(shmval_strerror(INT_MIN) != NULL, 1)                                                           \
  X(shmval_strerror(12345) != NULL, 1)                                                             \
  X(shmval_err_name(INT_MIN) != NULL, 1)                                                           \
  X(shm_type_size(0) == 0, 1)                                                                      \
  X(shm_type_size(INT_MAX) == 0, 1)                                                                \
  X(shm_arena_stat(NULL), SHMVAL_EINVAL)                                                           \
  X(shmval_arena_stat(NULL), SHMVAL_EINVAL)

static int run_case(int i) {
  int k = 0;
#define X(expr, want)                                                                              \
  if (i == k++)                                                                                    \
    return (int)(expr);
  CASES(X)
#undef X
  return INT_MIN;
}

static const char *case_text(int i, int *want) {
  int k = 0;
#define X(expr, w)                                                                                 \
  if (i == k++) {                                                                                  \
    *want = (w);                                                                                   \
    return #expr;                                                                                  \
  }
  CASES(X)
#undef X
  return NULL;
}

static int setup(void **state) {
  (void)state;
  long four[4] = {1, 2, 3, 4};
  shm_opts raw = {.flags = SHMVAL_RAW}, at = {.flags = SHMVAL_ATOMIC};
  test_name(seg_name, sizeof seg_name, "hostile");
  memset(long_name, 'n', sizeof long_name - 1);
  huge_seg_name[0] = '/';
  memset(huge_seg_name + 1, 's', sizeof huge_seg_name - 2);
  if (shm_value_create(&val, SHMVAL_LONG, &(long){42}, NULL) != 0 ||
      shm_value_create(&atom, SHMVAL_LONG, &(long){7}, &at) != 0 ||
      shm_value_create(&dead_val, SHMVAL_LONG, NULL, &raw) != 0 ||
      shm_array_create(&arr, SHMVAL_LONG, 4, four, NULL) != 0 ||
      shm_array_create(&dead_arr, SHMVAL_LONG, 4, NULL, NULL) != 0 ||
      shm_lock_create(&lock, NULL) != 0 || shm_lock_create(&dead_lock, NULL) != 0 ||
      shm_sem_create(&sem, 1, NULL) != 0 || shm_cond_create(&cond, NULL, NULL) != 0 ||
      shm_event_create(&event, NULL) != 0 ||
      shm_barrier_create(&barrier, 2, 0, NULL, NULL, NULL) != 0 ||
      shm_segment_create(&seg, seg_name, 1 << 20, NULL) != 0)
    return -1;
  shm_value *nv;
  shm_array *na;
  if (shm_value_create(&nv, SHMVAL_INT, NULL, &(shm_opts){.segment = seg, .name = "v"}) != 0 ||
      shm_array_create(&na, SHMVAL_INT, 2, NULL, &(shm_opts){.segment = seg, .name = "arr"}) != 0)
    return -1;
  const char *longv = "a value of forty bytes, in an entry block";
  if (shm_dict_create(&dict, 0, &(shm_opts){.segment = seg, .name = "dict"}) != 0 ||
      shm_dict_set(dict, "a", 1, longv, strlen(longv)) != 0 ||
      shm_dict_set(dict, "b", 1, "short", 5) != 0 ||
      shm_dict_create(&tdict, SHMVAL_LLONG, &(shm_opts){.segment = seg, .name = "tdict"}) != 0 ||
      shm_dict_add(tdict, "a", 1, &(long long){3}, NULL) != 0 ||
      shm_dict_create(&dead_dict, 0, &(shm_opts){.segment = seg}) != 0 ||
      shm_segment_open(&ro_seg, seg_name, &(shm_segment_opts){.flags = SHMVAL_RDONLY}) != 0 ||
      shm_dict_open(&ro_dict, ro_seg, "dict") != 0)
    return -1;
  if (shm_list_create(&list, 0, &(shm_opts){.segment = seg, .name = "list"}) != 0 ||
      shm_list_append(list, "a", 1) != 0 || shm_list_append(list, longv, strlen(longv)) != 0 ||
      shm_list_create(&tlist, SHMVAL_LLONG, &(shm_opts){.segment = seg, .name = "tlist"}) != 0 ||
      shm_list_append(tlist, &(long long){5}, sizeof(long long)) != 0 ||
      shm_list_create(&dead_list, 0, &(shm_opts){.segment = seg}) != 0 ||
      shm_list_open(&ro_list, ro_seg, "list") != 0)
    return -1;
  memset(long_key, 'k', sizeof long_key);
  /* Destroyed last, so that nothing reuses their blocks during the test. */
  return shm_value_destroy(dead_val) || shm_array_destroy(dead_arr) ||
         shm_lock_destroy(dead_lock) || shm_dict_destroy(dead_dict) || shm_list_destroy(dead_list);
}

static int teardown(void **state) {
  (void)state;
  int rc = shm_value_destroy(val) | shm_value_destroy(atom) | shm_array_destroy(arr) |
           shm_lock_destroy(lock) | shm_sem_destroy(sem) | shm_cond_destroy(cond) |
           shm_event_destroy(event) | shm_barrier_destroy(barrier);
  rc |= shm_dict_destroy(dict) | shm_dict_destroy(tdict) | shm_segment_close(ro_seg);
  rc |= shm_list_destroy(list) | shm_list_destroy(tlist);
  return rc | shm_segment_close(seg) | shm_segment_unlink(seg_name);
}

/* Everything the bait holds, to compare before and after. */
typedef struct snapshot {
  long v, atom, a[4];
  unsigned sem;
  int event, waiting, parties;
  size_t arena_used, seg_used, dict_len, list_len;
  char list_1[64];
  char dict_a[64];
  long long tdict_a;
  shm_value *val;
  shm_array *arr;
  shm_segment *seg;
  shm_dict *dict;
  shm_list *list;
} snapshot;

static void snap(snapshot *s) {
  memset(s, 0, sizeof *s);
  assert_ok(shm_value_get(val, &s->v));
  assert_ok(shm_value_get(atom, &s->atom));
  assert_ok(shm_array_read(arr, 0, 4, s->a));
  assert_ok(shm_sem_value(sem, &s->sem));
  s->event = shm_event_is_set(event);
  s->waiting = shm_barrier_n_waiting(barrier);
  s->parties = shm_barrier_parties(barrier);
  assert_ok(shm_arena_stat(&ainfo));
  s->arena_used = ainfo.used;
  assert_ok(shm_segment_stat(seg, &sinfo));
  s->seg_used = sinfo.used;
  assert_ok(shm_dict_len(dict, &s->dict_len));
  assert_ok(shm_dict_get(dict, "a", 1, s->dict_a, sizeof s->dict_a, NULL));
  assert_ok(shm_dict_get(tdict, "a", 1, &s->tdict_a, sizeof s->tdict_a, NULL));
  assert_ok(shm_list_len(list, &s->list_len));
  assert_ok(shm_list_get(list, 1, s->list_1, sizeof s->list_1, NULL));
  s->val = val;
  s->arr = arr;
  s->seg = seg;
  s->dict = dict;
  s->list = list;
}

static void test_every_call_refuses(void **state) {
  (void)state;
  snapshot before, after;
  snap(&before);
  int n = 0, bad = 0, want;
  for (const char *text; (text = case_text(n, &want)) != NULL; n++) {
    int got = run_case(n);
    if (got != want) {
      print_error("%s\n  returned %s (%d), documented %s (%d)\n", text, shmval_err_name(got), got,
                  shmval_err_name(want), want);
      bad++;
    }
    /* An output handle is never written on failure. */
    if (val != before.val || arr != before.arr || seg != before.seg || dict != before.dict ||
        list != before.list) {
      print_error("%s\n  wrote its output handle on failure\n", text);
      val = before.val;
      arr = before.arr;
      seg = before.seg;
      dict = before.dict;
      list = before.list;
      bad++;
    }
  }
  snap(&after);
  assert_true(n > 150);
  assert_int_equal(bad, 0);
  assert_memory_equal(&before, &after, sizeof before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_every_call_refuses, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
