/*
 * crash_recovery: a child is SIGKILLed while it holds a Value's lock in the
 * middle of an update. With Python's multiprocessing the parent would hang
 * forever; here it gets SHMVAL_OWNERDEAD, repairs the data, and carries on.
 */
#include <shmval.h>

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

struct account {
  long balance;
  long pending; /* non-zero while a transfer is half done */
};

int main(void) {
  shm_value *acct;
  struct account init = {100, 0};
  int ready[2];
  int rc = shm_value_create_record(&acct, sizeof init, _Alignof(struct account), &init, NULL);
  if (rc != 0 || pipe(ready) != 0) {
    fprintf(stderr, "setup failed: %s\n", shmval_strerror(rc));
    return 1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    /* The child starts a transfer under the lock... */
    shm_value_acquire(acct);
    struct account *a = shm_value_ptr(acct);
    a->pending = 40;
    a->balance -= 40;
    if (write(ready[1], "x", 1) != 1)
      _exit(1);
    pause(); /* ...and is killed before it can finish. */
    _exit(0);
  }
  char c;
  if (pid < 0 || read(ready[0], &c, 1) != 1) {
    fprintf(stderr, "fork failed\n");
    return 1;
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  printf("child %d was killed while holding the lock\n", (int)pid);

  rc = shm_value_acquire(acct);
  if (rc == SHMVAL_OWNERDEAD) {
    struct account *a = shm_value_ptr(acct);
    printf("parent: acquired with SHMVAL_OWNERDEAD (%s)\n", shmval_strerror(rc));
    printf("parent: found a half-done transfer (balance %ld, pending %ld); rolling back\n",
           a->balance, a->pending);
    a->balance += a->pending;
    a->pending = 0;
  } else if (rc != 0) {
    fprintf(stderr, "acquire: %s\n", shmval_strerror(rc));
    return 1;
  }
  shm_value_release(acct);

  struct account now;
  rc = shm_value_get(acct, &now);
  printf("parent: lock is normal again (get returned %s); balance %ld\n", shmval_err_name(rc),
         now.balance);
  shm_value_destroy(acct);
  return rc == 0 && now.balance == 100 ? 0 : 1;
}
