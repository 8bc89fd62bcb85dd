/*
 * named_consumer: attaches to the segment "shmval-demo" made by
 * named_producer (a separately started program), opens its objects by name
 * with their expected types, and prints every new reading.
 *
 *   named_consumer [seconds]       default 10
 */
#include <shmval.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SEGMENT "shmval-demo"
#define RING 8

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 10;
  shm_segment *seg;
  shm_value *count;
  shm_array *ring;
  int rc = shm_segment_open(&seg, SEGMENT, NULL);
  if (rc != 0) {
    fprintf(stderr, "named_consumer: %s: %s (start named_producer first)\n", SEGMENT,
            shmval_strerror(rc));
    return 1;
  }
  if ((rc = shm_value_open(&count, seg, "count", SHMVAL_LONG)) != 0 ||
      (rc = shm_array_open(&ring, seg, "ring", SHMVAL_DOUBLE)) != 0) {
    fprintf(stderr, "named_consumer: %s\n", shmval_strerror(rc));
    shm_segment_close(seg);
    return 1;
  }
  long seen = 0;
  for (double waited = 0; waited < seconds; waited += 0.05) {
    double values[RING];
    long c;
    /* One lock covers both objects: count and ring are read consistently. */
    rc = shm_value_acquire(count);
    if (rc == SHMVAL_OWNERDEAD)
      printf("consumer: the producer died holding the lock; carrying on\n");
    c = *(long *)shm_value_ptr(count);
    shm_array_read(ring, 0, RING, values);
    shm_value_release(count);
    if (c - seen > RING)
      seen = c - RING; /* fell behind: skip what the ring no longer holds */
    for (; seen < c; seen++)
      printf("consumer: reading %ld = %.2f\n", seen + 1, values[seen % RING]);
    fflush(stdout);
    nanosleep(&(struct timespec){0, 50000000L}, NULL);
  }
  shm_segment_close(seg);
  return 0;
}
