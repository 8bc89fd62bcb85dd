/*
 * Make the fuzzers' seed corpus from real segments: a few small segments,
 * fixed and growable (some grown already), holding every kind of object,
 * with names, holes and a resized directory, each copied byte for byte from
 * /dev/shm into DIR.
 *
 *   make_seeds DIR
 *   make_seeds --regressions DIR
 *
 * The second form writes the regression inputs: segments of the current
 * layout carrying, each, the damage of an input with which the fuzzers once
 * crashed the library (all fixed). They are made afresh rather than kept as
 * files because an image of an older layout is refused at the version check
 * and would test nothing (the first inputs, kept as files, did that from
 * layout 3 on). The file names say which harness replays them.
 */
#include <shmval.h>

#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Copy the segment file of @p name to the file @p dst. */
static int copy_to(const char *name, const char *dst) {
  char src[300];
  snprintf(src, sizeof src, "/dev/shm%s", name);
  int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  char b[65536];
  ssize_t r;
  int rc = in >= 0 && out >= 0 ? 0 : 1;
  while (rc == 0 && (r = read(in, b, sizeof b)) > 0)
    rc = write(out, b, (size_t)r) == r ? 0 : 1;
  if (in >= 0)
    close(in);
  if (out >= 0)
    close(out);
  return rc;
}

static int copy_out(const char *name, const char *dir, int n) {
  char dst[4096];
  snprintf(dst, sizeof dst, "%s/seed-%02d", dir, n);
  return copy_to(name, dst);
}

#define TRY(x)                                                                                     \
  do {                                                                                             \
    int rc_ = (x);                                                                                 \
    if (rc_ != 0 && rc_ != SHMVAL_ENOSPC) {                                                        \
      fprintf(stderr, "make_seeds: %s: %s\n", #x, shmval_strerror(rc_));                           \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

/* Fill @p s with objects; @p variant picks how many and which. */
static int fill(shm_segment *s, int variant) {
  shm_opts o = {.segment = s};
  shm_value *v;
  shm_array *a;
  shm_lock *l;
  shm_sem *sem;
  shm_event *e;
  shm_cond *c;
  shm_barrier *b;
  char name[32];
  o.name = "x";
  TRY(shm_value_create(&v, SHMVAL_INT, &(int){7}, &o));
  o.name = "d";
  o.flags = SHMVAL_ATOMIC;
  TRY(shm_value_create(&v, SHMVAL_DOUBLE, &(double){1.5}, &o));
  o.flags = SHMVAL_RAW;
  o.name = "s";
  TRY(shm_array_create(&a, SHMVAL_CHAR, 24, (char[24]){"hello, segment"}, &o));
  o.flags = 0;
  o.name = "rec";
  TRY(shm_array_create_record(&a, 12, 4, 5, NULL, &o));
  o.name = "lock";
  TRY(shm_lock_create(&l, &o));
  o.name = "shared";
  o.lock = l;
  TRY(shm_value_create(&v, SHMVAL_LLONG, NULL, &o));
  o.lock = NULL;
  o.name = "cond";
  TRY(shm_cond_create(&c, l, &o));
  o.name = "sem";
  TRY(shm_sem_create(&sem, 3, &o));
  o.name = "ev";
  TRY(shm_event_create(&e, &o));
  o.name = "bar";
  TRY(shm_barrier_create(&b, 2, -1, NULL, NULL, &o));
  o.name = NULL;
  TRY(shm_value_create(&v, SHMVAL_UINT, NULL, &o));
  /* Holes: destroyed objects between live ones. */
  for (int i = 0; i < 4 + variant * 12; i++) {
    snprintf(name, sizeof name, "n%d", i);
    o.name = name;
    TRY(shm_value_create(&v, i % 2 ? SHMVAL_SHORT : SHMVAL_ULLONG, NULL, &o));
    if (i % 3 == 0)
      TRY(shm_value_destroy(v));
  }
  /* Dicts (where they fit): slot and entry values, a deleted key, resized tables. */
  shm_dict *dict, *counts;
  o.name = "dict";
  if (variant > 0 && shm_dict_create(&dict, 0, &o) == 0) {
    o.name = "counts";
    if (shm_dict_create(&counts, SHMVAL_LONG, &o) != 0)
      counts = NULL;
    for (int i = 0; i < 6 * variant; i++) {
      char k[16], val[48];
      size_t kl = (size_t)snprintf(k, sizeof k, "k%d", i);
      memset(val, 'a' + i, sizeof val);
      (void)shm_dict_set(dict, k, kl, val, (size_t)(i * 11) % sizeof val);
      if (counts != NULL)
        (void)shm_dict_add(counts, k, kl, &(long){i}, NULL);
    }
    (void)shm_dict_del(dict, "k1", 2);
  }
  /* Lists: bytes items (one empty, one in the middle gone), a typed list, a grown ring. */
  shm_list *list, *tl;
  o.name = "list";
  if (variant > 0 && shm_list_create(&list, 0, &o) == 0) {
    for (int i = 0; i < 5 * variant; i++) {
      char val[48];
      memset(val, 'a' + i, sizeof val);
      (void)shm_list_append(list, val, (size_t)(i * 13) % sizeof val);
    }
    char out[64];
    size_t n;
    (void)shm_list_pop(list, 2, out, sizeof out, &n);
    o.name = "tl";
    if (shm_list_create(&tl, SHMVAL_INT, &o) == 0)
      for (int i = 0; i < 3 + 4 * variant; i++)
        (void)shm_list_insert(tl, i % 2 ? 0 : i, &i, sizeof i);
  }
  o.name = NULL;
  TRY(shm_array_create(&a, SHMVAL_FLOAT, 40 + 100 * (size_t)variant, NULL, &o));
  if (variant == 2)
    TRY(shm_array_destroy(a));
  return 0;
}

/* The header of the live object named @p name in @p s, or NULL. */
static shmval__obj *obj_named(shm_segment *s, const char *name) {
  shm_value *v;
  return shm_value_open(&v, s, name, SHMVAL_INT) == 0 ? (shmval__obj *)(void *)v : NULL;
}

static shmval__lock *own_lock(shmval__obj *o) {
  return (shmval__lock *)(void *)((char *)o + o->lock_rel);
}

/* What the fuzzers found, as damage done to a real segment. */
static int damage(shm_segment *s, int which) {
  shmval__seg *b = s->base;
  shmval__obj *x = obj_named(s, "x");
  if (x == NULL)
    return 1;
  switch (which) {
  case 0: /* a table whose payload is misaligned */
    ((shmval__obj *)(void *)((char *)b + b->attach_off))->payload_rel += 4;
    return 0;
  case 1: /* bitmap bits for size classes that do not exist */
    for (unsigned fl = 0; fl < SHMVAL__FL_COUNT; fl++)
      shmval__heap_state_of(b)->sl_bitmap[fl] |= 0xffff0000u;
    return 0;
  case 2: /* a lock whose "host" is not an object */
    own_lock(x)->host_back -= 1;
    return 0;
  case 3:                                   /* a mutex type word that means glibc's lock elision */
    own_lock(x)->mutex.__data.__kind = 256; /* PTHREAD_MUTEX_TIMED_ELISION_NP */
    return 0;
  case 5: /* a lock offset whose sum with the object's offset overflows */
    x->lock_rel = INT64_MAX - 200;
    return 0;
  case 6: { /* a typed dict whose value size is 4 GiB (an update allocated that much) */
    shm_dict *d;
    if (shm_dict_open(&d, s, "counts") != 0)
      return 1;
    ((shmval__dict *)shmval__payload(shmval__obj_of(d)))->vsize = UINT32_MAX;
    return 0;
  }
  case 7: { /* a directory table whose own offset is wrong, with the next insert resizing it */
    shmval__obj *t = (shmval__obj *)(void *)((char *)b + b->dir_off);
    t->self_off += 8;
    b->dir_tombs = b->dir_cap;
    return 0;
  }
  case 8: { /* a directory table block of size 0 claiming 2^40 entries */
    uint64_t *w = (uint64_t *)(void *)((char *)b + b->dir_off - SHMVAL__OBJ_HDR_OFF);
    *w &= SHMVAL__BLK_FLAGS;
    ((shmval__obj *)(void *)((char *)b + b->dir_off))->length = UINT64_C(1) << 40;
    return 0;
  }
  case 9: /* a Value whose payload lies on its own lock's mutex word */
    x->payload_rel = (uint32_t)x->lock_rel + (uint32_t)offsetof(shmval__lock, mutex);
    return 0;
  default: /* 4: an auto-unlink segment, whose last closer here reads only */
    return 0;
  }
}

static int make_regressions(const char *dir) {
  static const char *const names[] = {"attach-misaligned-payload", "attach-bitmap-bits",
                                      "attach-lock-host",          "attach-mutex-kind",
                                      "inspect-ro-last-closer",    "attach-lock-offset-overflow",
                                      "attach-dict-value-size",    "attach-dir-self-offset",
                                      "attach-dir-block-size",     "attach-payload-on-lock"};
  int status = 0;
  for (int i = 0; i < 10; i++) {
    char name[64], dst[4096];
    shm_segment *s;
    shm_segment_opts so = {.max_attach = 4, .flags = i == 4 ? SHMVAL_AUTO_UNLINK : 0};
    snprintf(name, sizeof name, "/shmval-seed-%d-r%d", (int)getpid(), i);
    int rc = shm_segment_create(&s, name, i == 6 ? 65536 : 16384, &so);
    if (rc != 0) {
      fprintf(stderr, "make_seeds: create: %s\n", shmval_strerror(rc));
      return 1;
    }
    status |= fill(s, i == 6) | damage(s, i);
    snprintf(dst, sizeof dst, "%s/%s", dir, names[i]);
    status |= copy_to(name, dst);
    shm_segment_close(s);
    shm_segment_unlink(name);
  }
  printf("make_seeds: 10 regression inputs in %s\n", dir);
  return status;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--regressions") == 0) {
    mkdir(argv[2], 0755);
    return make_regressions(argv[2]);
  }
  if (argc != 2) {
    fprintf(stderr, "usage: make_seeds [--regressions] DIR\n");
    return 2;
  }
  mkdir(argv[1], 0755);
  /* Fixed segments of three sizes; then growable ones (a maximum of 64 KiB). */
  const size_t sizes[] = {16384, 32768, 65536, 16384};
  int n = 0, status = 0;
  for (int variant = 0; variant < 3; variant++) {
    for (int k = 0; k < 4; k++) {
      char name[64];
      shm_segment *s;
      shm_segment_opts so = {.max_attach = 4, .max_size = k == 3 ? 65536 : 0};
      snprintf(name, sizeof name, "/shmval-seed-%d-%d", (int)getpid(), n);
      int rc = shm_segment_create(&s, name, sizes[k], &so);
      if (rc != 0) {
        fprintf(stderr, "make_seeds: create: %s\n", shmval_strerror(rc));
        return 1;
      }
      status |= fill(s, variant);
      if (k == 3 && variant > 0) { /* grown past its first size, then partly freed */
        shm_array *a;
        shm_opts o = {.segment = s};
        TRY(shm_array_create(&a, SHMVAL_DOUBLE, 2000 * (size_t)variant, NULL, &o));
        if (variant == 2)
          TRY(shm_array_destroy(a));
      }
      shm_segment_close(s);
      status |= copy_out(name, argv[1], n++);
      shm_segment_unlink(name);
    }
  }
  printf("make_seeds: %d seeds in %s\n", n, argv[1]);
  return status;
}
