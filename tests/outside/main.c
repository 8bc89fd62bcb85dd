/* A fork-shared counter and a named segment, through the installed header. */
#include <shmval.h>

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  shm_value *counter;
  int rc = shm_value_create(&counter, SHMVAL_LONG, NULL, NULL);
  if (rc != 0) {
    fprintf(stderr, "create: %s\n", shmval_strerror(rc));
    return 1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    long one = 1;
    _exit(shm_value_acquire(counter) < 0 ||
          shm_value_add(counter, &one, NULL) != SHMVAL_ENOTATOMIC ||
          (*(long *)shm_value_ptr(counter) += 41, shm_value_release(counter) != 0));
  }
  int st;
  long got = 0;
  if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0 || shm_value_get(counter, &got) != 0 ||
      got != 41) {
    fprintf(stderr, "the child's update was not seen (%ld)\n", got);
    return 1;
  }
  char name[64];
  snprintf(name, sizeof name, "/shmval-outside-%d", (int)getpid());
  shm_segment *seg;
  shm_segment_opts o = {.flags = SHMVAL_AUTO_UNLINK};
  if ((rc = shm_segment_create(&seg, name, 1 << 20, &o)) != 0) {
    fprintf(stderr, "segment: %s\n", shmval_strerror(rc));
    return 1;
  }
  shm_segment_close(seg); /* the last closer unlinks it */
  printf("libshmval %s: ok\n", shmval_version());
  return shm_value_destroy(counter) == 0 ? 0 : 1;
}
