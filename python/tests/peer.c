/*
 * The C side of the Python binding's interoperability test:
 *
 *   py_peer make SEGMENT    create SEGMENT with a counter, an Array of doubles,
 *                           a dict, a queue of jobs and a lock, then exit
 *   py_peer check SEGMENT   exit 0 if Python left counter 42, the dict's
 *                           "from python" = "yes" and "reply" last in the queue
 *   py_peer hold SEGMENT    take the lock, say "held", and wait to be killed
 */
#include <shmval.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what, int rc) {
  fprintf(stderr, "py_peer: %s: %s\n", what, shmval_strerror(rc));
  return 1;
}

static int make(const char *name) {
  shm_segment *seg;
  shm_value *v;
  shm_array *a;
  shm_dict *d;
  shm_list *q;
  shm_lock *l;
  int rc = shm_segment_create(&seg, name, 1 << 20, NULL);
  if (rc != 0)
    return fail("create", rc);
  double samples[4] = {0.5, 1.5, 2.5, 3.5};
  if ((rc = shm_value_create(&v, SHMVAL_LONG, &(long){7},
                             &(shm_opts){.segment = seg, .name = "counter"})) != 0 ||
      (rc = shm_array_create(&a, SHMVAL_DOUBLE, 4, samples,
                             &(shm_opts){.segment = seg, .name = "samples"})) != 0 ||
      (rc = shm_dict_create(&d, 0, &(shm_opts){.segment = seg, .name = "config"})) != 0 ||
      (rc = shm_dict_set(d, "mode", 4, "fast", 4)) != 0 ||
      (rc = shm_list_create(&q, 0, &(shm_opts){.segment = seg, .name = "jobs"})) != 0 ||
      (rc = shm_lock_create(&l, &(shm_opts){.segment = seg, .name = "lock"})) != 0)
    return fail("make", rc);
  for (int i = 0; i < 5; i++) {
    char job[16];
    int n = snprintf(job, sizeof job, "job-%d", i);
    if ((rc = shm_list_append(q, job, (size_t)n)) != 0)
      return fail("append", rc);
  }
  return shm_segment_close(seg) == 0 ? 0 : 1;
}

static int check(const char *name) {
  shm_segment *seg;
  shm_value *v;
  shm_dict *d;
  shm_list *q;
  long x = 0;
  char buf[64];
  size_t n = 0;
  int rc = shm_segment_open(&seg, name, NULL);
  if (rc != 0 || (rc = shm_value_open(&v, seg, "counter", SHMVAL_LONG)) != 0 ||
      (rc = shm_value_get(v, &x)) < 0 || (rc = shm_dict_open(&d, seg, "config")) != 0 ||
      (rc = shm_list_open(&q, seg, "jobs")) != 0)
    return fail("check", rc);
  if (x != 42)
    return fprintf(stderr, "py_peer: counter is %ld\n", x), 2;
  if (shm_dict_get(d, "from python", 11, buf, sizeof buf, &n) != 0 || n != 3 ||
      memcmp(buf, "yes", 3) != 0)
    return fprintf(stderr, "py_peer: no \"from python\" in the dict\n"), 3;
  if (shm_list_get(q, -1, buf, sizeof buf, &n) != 0 || n != 5 || memcmp(buf, "reply", 5) != 0)
    return fprintf(stderr, "py_peer: no reply in the queue\n"), 4;
  return shm_segment_close(seg) == 0 ? 0 : 1;
}

static int hold(const char *name) {
  shm_segment *seg;
  shm_lock *l;
  int rc = shm_segment_open(&seg, name, NULL);
  if (rc != 0 || (rc = shm_lock_open(&l, seg, "lock")) != 0 || (rc = shm_lock_acquire(l)) < 0)
    return fail("hold", rc);
  printf("held\n");
  fflush(stdout);
  for (;;)
    pause();
}

int main(int argc, char **argv) {
  if (argc != 3)
    return 2;
  if (strcmp(argv[1], "make") == 0)
    return make(argv[2]);
  if (strcmp(argv[1], "check") == 0)
    return check(argv[2]);
  if (strcmp(argv[1], "hold") == 0)
    return hold(argv[2]);
  return 2;
}
