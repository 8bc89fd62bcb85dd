/*
 * pipeline: one producer and several consumer processes pass numbers through
 * a shared ring (an Array) guarded by a Condition; every phase ends with all
 * of them meeting at a Barrier, whose action reports the phase.
 *
 *   pipeline [consumers] [items-per-phase] [phases]
 */
#include <shmval.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define RING 16
#define END_OF_PHASE (-1.0)

struct ring_state {
  long head, tail; /* items put, items taken */
};

static shm_cond *cond;
static shm_value *state; /* struct ring_state, guarded by cond's lock */
static shm_array *ring, *sums;
static shm_barrier *phase_done;
static int phase;

static void report_phase(void *ctx) {
  (void)ctx;
  printf("phase %d complete\n", phase + 1);
  fflush(stdout);
}

static int ring_has_room(void *ctx) {
  struct ring_state *s = ctx;
  return s->head - s->tail < RING;
}

static int ring_nonempty(void *ctx) {
  struct ring_state *s = ctx;
  return s->head > s->tail;
}

static void put(double x) {
  shm_lock *l = shm_cond_get_lock(cond);
  struct ring_state *s = shm_value_ptr(state);
  shm_lock_acquire(l);
  shm_cond_wait_for(cond, ring_has_room, s, -1, NULL); /* wait for room */
  shm_array_set(ring, (size_t)(s->head % RING), &x);
  s->head++;
  shm_cond_notify_all(cond);
  shm_lock_release(l);
}

static double take(void) {
  shm_lock *l = shm_cond_get_lock(cond);
  struct ring_state *s = shm_value_ptr(state);
  double x;
  shm_lock_acquire(l);
  shm_cond_wait_for(cond, ring_nonempty, s, -1, NULL);
  shm_array_get(ring, (size_t)(s->tail % RING), &x);
  s->tail++;
  shm_cond_notify_all(cond);
  shm_lock_release(l);
  return x;
}

static int consumer(int id, int phases) {
  double sum = 0;
  for (phase = 0; phase < phases; phase++) {
    for (double x; (x = take()) != END_OF_PHASE;)
      sum += x;
    if (shm_barrier_wait(phase_done, NULL) != 0)
      return 1;
  }
  return shm_array_set(sums, (size_t)id, &sum) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  int consumers = argc > 1 ? atoi(argv[1]) : 3;
  long items = argc > 2 ? atol(argv[2]) : 1000;
  int phases = argc > 3 ? atoi(argv[3]) : 3;
  if (consumers < 1 || consumers > 64 || items < 0 || phases < 1) {
    fprintf(stderr, "usage: %s [consumers 1..64] [items-per-phase] [phases]\n", argv[0]);
    return 2;
  }
  /* The ring's state shares the condition's lock. */
  int rc = shm_cond_create(&cond, NULL, NULL);
  shm_opts share = {.lock = shm_cond_get_lock(cond)};
  if (rc == 0)
    rc = shm_value_create_record(&state, sizeof(struct ring_state), _Alignof(struct ring_state),
                                 NULL, &share);
  if (rc == 0)
    rc = shm_array_create(&ring, SHMVAL_DOUBLE, RING, NULL, &share);
  if (rc == 0)
    rc = shm_array_create(&sums, SHMVAL_DOUBLE, (size_t)consumers, NULL, NULL);
  if (rc == 0) /* the action is inherited by every fork child */
    rc = shm_barrier_create(&phase_done, (unsigned)consumers + 1, 30, report_phase, NULL, NULL);
  if (rc != 0) {
    fprintf(stderr, "pipeline: %s\n", shmval_strerror(rc));
    return 1;
  }
  for (int c = 0; c < consumers; c++)
    if (fork() == 0)
      _exit(consumer(c, phases));
  double produced = 0;
  for (phase = 0; phase < phases; phase++) {
    for (long i = 1; i <= items; i++) {
      put((double)i);
      produced += (double)i;
    }
    for (int c = 0; c < consumers; c++)
      put(END_OF_PHASE);
    if (shm_barrier_wait(phase_done, NULL) != 0) {
      fprintf(stderr, "pipeline: the barrier broke\n");
      return 1;
    }
  }
  int failed = 0;
  for (int c = 0; c < consumers; c++) {
    int st;
    if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
      failed++;
  }
  double consumed = 0, *s = shm_array_ptr(sums);
  for (int c = 0; c < consumers; c++)
    consumed += s[c];
  printf("%d consumers, %d phases: produced %.0f, consumed %.0f %s\n", consumers, phases, produced,
         consumed, produced == consumed && !failed ? "OK" : "WRONG");
  shm_barrier_destroy(phase_done);
  shm_array_destroy(sums);
  shm_array_destroy(ring);
  shm_value_destroy(state);
  shm_cond_destroy(cond);
  return produced == consumed && !failed ? 0 : 1;
}
