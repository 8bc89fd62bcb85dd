/*
 * c_producer: a C producer for a Python consumer (examples/py_consumer.py).
 *
 * Creates the named segment "shmval-jobs" holding a queue of jobs (a list of
 * byte strings), a locked total and an event, and prints "ready". Then it
 * queues the jobs "job 1" .. "job N" and a "stop", waits for the consumer to
 * set the event, and checks the total the consumer added up. The segment is
 * unlinked when the last of the two programs closes it (SHMVAL_AUTO_UNLINK).
 *
 *   c_producer [jobs]      default 1000
 */
#include <shmval.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEGMENT "shmval-jobs"

static int fail(const char *what, int rc) {
  fprintf(stderr, "c_producer: %s: %s\n", what, shmval_strerror(rc));
  return 1;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000;
  shm_segment *seg;
  shm_list *jobs;
  shm_value *total;
  shm_event *done;
  shm_segment_opts so = {.flags = SHMVAL_AUTO_UNLINK};
  int rc = shm_segment_create(&seg, SEGMENT, 1 << 20, &so);
  if (rc != 0)
    return fail(SEGMENT, rc);
  /* The names are what the Python side opens: seg.open_list("jobs"), ... */
  rc = shm_list_create(&jobs, 0, &(shm_opts){.segment = seg, .name = "jobs"});
  if (rc == 0)
    rc = shm_value_create(&total, SHMVAL_LONG, NULL, &(shm_opts){.segment = seg, .name = "total"});
  if (rc == 0)
    rc = shm_event_create(&done, &(shm_opts){.segment = seg, .name = "done"});
  if (rc != 0) {
    shm_segment_close(seg);
    return fail("creating the objects", rc);
  }
  printf("ready\n");
  fflush(stdout);

  char job[32];
  for (long i = 1; i <= n && rc == 0; i++) {
    int len = snprintf(job, sizeof job, "job %ld", i);
    rc = shm_list_append(jobs, job, (size_t)len);
  }
  if (rc == 0)
    rc = shm_list_append(jobs, "stop", 4);
  if (rc == 0)
    rc = shm_event_wait(done, 60.0); /* the consumer has taken every job */
  long sum = 0;
  if (rc == 0)
    rc = shm_value_get(total, &sum);
  shm_segment_close(seg);
  if (rc != 0)
    return fail("queueing the jobs", rc);
  long want = n * (n + 1) / 2;
  printf("c_producer: %ld jobs, the consumer's total %ld (%s)\n", n, sum,
         sum == want ? "right" : "WRONG");
  return sum == want ? 0 : 1;
}
