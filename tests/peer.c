/*
 * A separate program the tests fork and exec, so that segments are shared by
 * unrelated processes, not only by fork children.
 *
 *   shmval_test_peer attach SEG [ro]  attach, print "ready", wait for EOF on
 *                                       stdin, close, exit 0
 *   shmval_test_peer race SEG N       open-or-create SEG and the Value
 *                                       "counter" in it, add 1 N times
 *   shmval_test_peer get SEG OBJ      print the long Value OBJ
 *   shmval_test_peer sync SEG         open the primitives L, S, C, E, B and the
 *                                       Value V by name, print "opened", then take
 *                                       L, take a unit of S, wait for E, pass B,
 *                                       and wait on C until V is 1
 *   shmval_test_peer grow SEG ID COUNT  open SEG and do process ID's share of
 *                                       the growth test (grow_work.h)
 *
 * Exit status: 0, or 10 + the step that failed.
 */
#include <shmval.h>

#include "grow_work.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int attach(const char *seg, int ro) {
  shm_segment *s;
  shm_segment_opts o = {.flags = ro ? SHMVAL_RDONLY : 0};
  char c;
  if (shm_segment_open(&s, seg, &o) != 0)
    return 10;
  printf("ready\n");
  fflush(stdout);
  while (read(0, &c, 1) > 0) {
  }
  return shm_segment_close(s) == 0 ? 0 : 11;
}

static int race(const char *seg, long n) {
  shm_segment *s;
  shm_value *v;
  shm_segment_opts so = {.flags = SHMVAL_OPEN_OR_CREATE, .timeout = 5};
  if (shm_segment_create(&s, seg, 1 << 20, &so) != 0)
    return 10;
  shm_opts o = {.segment = s, .name = "counter"};
  int rc = shm_value_create(&v, SHMVAL_LONG, NULL, &o);
  if (rc == SHMVAL_EEXIST)
    rc = shm_value_open(&v, s, "counter", SHMVAL_LONG);
  if (rc != 0)
    return 11;
  for (long i = 0; i < n; i++) {
    if (shm_value_acquire(v) < 0)
      return 12;
    (*(long *)shm_value_ptr(v))++;
    if (shm_value_release(v) != 0)
      return 13;
  }
  return shm_segment_close(s) == 0 ? 0 : 14;
}

static int get(const char *seg, const char *obj) {
  shm_segment *s;
  shm_value *v;
  long x;
  if (shm_segment_open(&s, seg, NULL) != 0)
    return 10;
  if (shm_value_open(&v, s, obj, SHMVAL_LONG) != 0 || shm_value_get(v, &x) < 0)
    return 11;
  printf("%ld\n", x);
  return shm_segment_close(s) == 0 ? 0 : 12;
}

static int v_is_one(void *ctx) { return *(int *)shm_value_ptr(ctx) == 1; }

static int sync_script(const char *seg) {
  shm_segment *s;
  shm_lock *l;
  shm_sem *sm;
  shm_cond *c;
  shm_event *e;
  shm_barrier *b;
  shm_value *v;
  if (shm_segment_open(&s, seg, NULL) != 0)
    return 10;
  if (shm_lock_open(&l, s, "L") != 0 || shm_sem_open(&sm, s, "S") != 0 ||
      shm_cond_open(&c, s, "C") != 0 || shm_event_open(&e, s, "E") != 0 ||
      shm_barrier_open(&b, s, "B") != 0 || shm_value_open(&v, s, "V", SHMVAL_INT) != 0)
    return 11;
  printf("opened\n");
  fflush(stdout);
  if (shm_lock_acquire_timeout(l, 5) != 0 || shm_lock_release(l) != 0)
    return 12;
  if (shm_sem_acquire(sm, 5) != 0)
    return 13;
  if (shm_event_wait(e, 5) != 0)
    return 14;
  if (shm_barrier_wait(b, NULL) != 0)
    return 15;
  shm_lock *cl = shm_cond_get_lock(c);
  if (shm_lock_acquire(cl) != 0 || shm_cond_wait_for(c, v_is_one, v, 5, NULL) != 1 ||
      shm_lock_release(cl) != 0)
    return 16;
  return shm_segment_close(s) == 0 ? 0 : 17;
}

static int grow(const char *seg, int id, int count) {
  shm_segment *s;
  if (shm_segment_open(&s, seg, NULL) != 0)
    return 10;
  int rc = grow_work(s, id, count);
  if (rc != 0)
    return rc + 10;
  return shm_segment_close(s) == 0 ? 0 : 11;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "attach") == 0)
    return attach(argv[2], argc > 3 && strcmp(argv[3], "ro") == 0);
  if (argc == 4 && strcmp(argv[1], "race") == 0)
    return race(argv[2], atol(argv[3]));
  if (argc == 4 && strcmp(argv[1], "get") == 0)
    return get(argv[2], argv[3]);
  if (argc == 3 && strcmp(argv[1], "sync") == 0)
    return sync_script(argv[2]);
  if (argc == 5 && strcmp(argv[1], "grow") == 0)
    return grow(argv[2], atoi(argv[3]), atoi(argv[4]));
  fprintf(stderr, "usage: %s attach|race|get|sync|grow SEG ...\n", argv[0]);
  return 2;
}
