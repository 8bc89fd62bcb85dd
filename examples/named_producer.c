/*
 * named_producer: creates the named segment "shmval-demo" with a locked
 * counter and a ring of the last 8 readings, then publishes a reading every
 * 200 ms. Start named_consumer in another terminal. The segment is unlinked
 * automatically when the last of the two programs exits (SHMVAL_AUTO_UNLINK),
 * even if the other one was killed.
 *
 *   named_producer [readings]      default 50
 */
#include <shmval.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SEGMENT "shmval-demo"
#define RING 8

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 50;
  shm_segment *seg;
  shm_value *count;
  shm_array *ring;
  shm_segment_opts so = {.flags = SHMVAL_AUTO_UNLINK | SHMVAL_OPEN_OR_CREATE};
  int rc = shm_segment_create(&seg, SEGMENT, 1 << 20, &so);
  if (rc != 0) {
    fprintf(stderr, "named_producer: %s: %s\n", SEGMENT, shmval_strerror(rc));
    return 1;
  }
  /* The ring shares the counter's lock, so a reader sees both change together. */
  shm_opts co = {.segment = seg, .name = "count"};
  rc = shm_value_create(&count, SHMVAL_LONG, NULL, &co);
  if (rc == 0) {
    shm_opts ro = {.segment = seg, .name = "ring", .lock = shm_value_get_lock(count)};
    rc = shm_array_create(&ring, SHMVAL_DOUBLE, RING, NULL, &ro);
  }
  if (rc != 0) {
    fprintf(stderr, "named_producer: %s (is another producer running?)\n", shmval_strerror(rc));
    shm_segment_close(seg);
    return 1;
  }
  printf("producer: publishing %ld readings in /dev/shm/%s\n", n, SEGMENT);
  for (long i = 0; i < n; i++) {
    double reading = 20.0 + (double)(i % 10) * 0.25;
    shm_value_acquire(count);
    long c = *(long *)shm_value_ptr(count);
    shm_array_set(ring, (size_t)(c % RING), &reading);
    *(long *)shm_value_ptr(count) = c + 1;
    shm_value_release(count);
    printf("producer: reading %ld = %.2f\n", c + 1, reading);
    fflush(stdout);
    nanosleep(&(struct timespec){0, 200000000L}, NULL);
  }
  shm_segment_close(seg);
  return 0;
}
