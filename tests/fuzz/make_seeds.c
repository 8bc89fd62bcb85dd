/*
 * Make the fuzzers' seed corpus from real segments: a few small segments
 * holding every kind of object, with names, holes and a resized directory,
 * each copied byte for byte from /dev/shm into DIR.
 *
 *   make_seeds DIR
 */
#include <shmval.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int copy_out(const char *name, const char *dir, int n) {
  char src[300], dst[4096];
  snprintf(src, sizeof src, "/dev/shm%s", name);
  snprintf(dst, sizeof dst, "%s/seed-%02d", dir, n);
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
  o.name = NULL;
  TRY(shm_array_create(&a, SHMVAL_FLOAT, 40 + 100 * (size_t)variant, NULL, &o));
  if (variant == 2)
    TRY(shm_array_destroy(a));
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_seeds DIR\n");
    return 2;
  }
  mkdir(argv[1], 0755);
  const size_t sizes[] = {16384, 32768, 65536};
  int n = 0, status = 0;
  for (int variant = 0; variant < 3; variant++) {
    for (int k = 0; k < 3; k++) {
      char name[64];
      shm_segment *s;
      shm_segment_opts so = {.max_attach = 4};
      snprintf(name, sizeof name, "/shmval-seed-%d-%d", (int)getpid(), n);
      int rc = shm_segment_create(&s, name, sizes[k], &so);
      if (rc != 0) {
        fprintf(stderr, "make_seeds: create: %s\n", shmval_strerror(rc));
        return 1;
      }
      status |= fill(s, variant);
      shm_segment_close(s);
      status |= copy_out(name, argv[1], n++);
      shm_segment_unlink(name);
    }
  }
  printf("make_seeds: %d seeds in %s\n", n, argv[1]);
  return status;
}
