/*
 * Crash consistency of the allocator and the name directory, white-box: this
 * test links the library built with its crash points (SHMVAL__CRASH_POINT in
 * src/internal.h), so a forked child can be killed with SIGKILL right after
 * the Nth store of a fixed sequence of creations and destructions. For every
 * N until the child finishes, the parent then checks the segment with
 * shm_segment_check() (whose locks repair what the dead child left), that no
 * committed update was lost, and that the segment still works.
 */
#include "helpers.h"

#include <limits.h>

#include "internal.h"

#include <linux/futex.h>
#include <string.h>
#include <sys/stat.h>

#define NAMES 20 /* more than the directory's first table holds: it resizes */
#define ARRAY_LEN 3000
#define OPS (NAMES + 1 + NAMES / 2 + 1 + 1)

/* The child's deterministic workload; *progress counts finished operations. */
static int workload(shm_segment *seg, shm_value *progress) {
  char name[32];
  shm_value *v[NAMES];
  shm_array *a, *big;
  for (int i = 0; i < NAMES; i++) {
    snprintf(name, sizeof name, "n%d", i);
    shm_opts o = {.segment = seg, .name = name};
    if (shm_value_create(&v[i], SHMVAL_INT, &i, &o) != 0)
      return 10;
    shm_value_add(progress, &(int){1}, NULL);
  }
  shm_opts unnamed = {.segment = seg};
  if (shm_array_create(&a, SHMVAL_DOUBLE, ARRAY_LEN, NULL, &unnamed) != 0)
    return 11;
  shm_value_add(progress, &(int){1}, NULL);
  for (int i = 0; i < NAMES / 2; i++) {
    if (shm_value_destroy(v[i]) != 0)
      return 12;
    shm_value_add(progress, &(int){1}, NULL);
  }
  if (shm_array_destroy(a) != 0)
    return 13;
  shm_value_add(progress, &(int){1}, NULL);
  shm_opts o = {.segment = seg, .name = "big"};
  if (shm_array_create(&big, SHMVAL_LLONG, ARRAY_LEN, NULL, &o) != 0)
    return 14;
  shm_value_add(progress, &(int){1}, NULL);
  return 0;
}

/* Whether name n<i> may, must or must not exist after @p done operations. */
static void expect_names(shm_segment *seg, int done) {
  char name[32];
  for (int i = 0; i < NAMES; i++) {
    bool created = i < done, destroyed = i < NAMES / 2 && NAMES + 1 + i < done;
    bool in_flight = i == done || (i < NAMES / 2 && NAMES + 1 + i == done);
    snprintf(name, sizeof name, "n%d", i);
    shm_value *v;
    int rc = shm_value_open(&v, seg, name, SHMVAL_INT);
    if (in_flight) {
      assert_true(rc == 0 || rc == SHMVAL_ENOENT);
    } else if (created && !destroyed) {
      assert_ok(rc);
      int x = -1;
      assert_ok(shm_value_get(v, &x));
      assert_int_equal(x, i);
    } else {
      assert_code(rc, SHMVAL_ENOENT);
    }
  }
}

/* Fill the heap with holes so that frees merge with both neighbours. */
static void fragment(shm_segment *seg) {
  shm_opts o = {.segment = seg};
  shm_value *v[12];
  for (int i = 0; i < 12; i++)
    assert_ok(shm_value_create(&v[i], SHMVAL_LLONG, NULL, &o));
  for (int i = 0; i < 12; i += 2)
    assert_ok(shm_value_destroy(v[i]));
}

/*
 * After a kill at step @p n: the segment checks clean (its locks' next holder
 * repairs what the dead left), with at most one block leaked.
 */
static void check_after_kill(shm_segment *seg, long n, shm_check_report *r) {
  int rc = shm_segment_check(seg, r);
  if (rc != 0)
    fail_msg("after a kill at step %ld: %s at offset %llu: %s", n, shmval_err_name(rc),
             r->problem_offset, r->problem != NULL ? r->problem : "?");
  assert_true(r->leaked_blocks <= 1);
}

/* One round: kill the child after step @p n. True if it finished instead. */
static bool round_at(long n, size_t *max_leaked) {
  char name[96];
  shm_segment *seg;
  shm_segment_opts so = {.flags = 0};
  test_name(name, sizeof name, "crash");
  assert_ok(shm_segment_create(&seg, name, 1 << 20, &so));
  shm_opts keep_o = {.segment = seg, .name = "keep"};
  shm_opts prog_o = {.segment = seg, .name = "progress", .flags = SHMVAL_ATOMIC};
  shm_value *keep, *progress;
  assert_ok(shm_value_create(&keep, SHMVAL_INT, &(int){42}, &keep_o));
  assert_ok(shm_value_create(&progress, SHMVAL_INT, NULL, &prog_o));
  fragment(seg);

  pid_t pid = fork();
  if (pid == 0) {
    shmval__crash_countdown = n;
    _exit(workload(seg, progress));
  }
  int st = reap(pid);
  assert_true(st == 0 || st == 128 + SIGKILL);

  /*
   * A journal names only an allocated block (a free one could be allocated
   * by someone else, and a reclaim would free it under them), and a
   * published object only just before the destroy that retires it (when the
   * reclaim must leave it alone: its magic does not name the dead child) or
   * when it is an unnamed one whose create never returned (nobody else's).
   * A named one's journal is cleared by the directory lock's next holder:
   * the directory lock first, as it repairs what the child left.
   */
  shmval__attach_ent *t = shmval__attach_table(seg->base);
  assert_non_null(t);
  assert_ok(shmval__dir_lock(seg->base));
  assert_ok(shmval__heap_lock(seg->base));
  for (uint32_t i = 0; i < seg->base->max_attach; i++) {
    uint64_t j = t[i].pending, size;
    if (j != 0 && !shmval__heap_used_block(seg->base, j & ~SHMVAL__J_STAGE, &size))
      fail_msg("after a kill at step %ld: a journal names %#llx, not an allocated block", n,
               (unsigned long long)j);
    const shmval__obj *h =
        (const shmval__obj *)(const void *)((const char *)seg->base + (j & ~SHMVAL__J_STAGE) + 8);
    if (j != 0 && h->magic == SHMVAL__OBJ_MAGIC && (j & SHMVAL__J_STAGE) != SHMVAL__J_DESTROY &&
        ((j & SHMVAL__J_STAGE) != SHMVAL__J_CREATE || h->name_off != 0))
      fail_msg("after a kill at step %ld: a journal names %#llx, a published object", n,
               (unsigned long long)j);
  }
  shmval__heap_unlock(seg->base);
  shmval__dir_unlock(seg->base);
  shm_check_report r;
  /* A kill leaves at most the one block of the operation it interrupted, */
  check_after_kill(seg, n, &r);
  int rc;
  if (r.leaked_blocks > *max_leaked)
    *max_leaked = r.leaked_blocks;
  /* and the dead child's journal lets it be freed. */
  size_t blocks = 9, bytes = 9;
  assert_ok(shm_segment_reclaim(seg, &blocks, &bytes));
  if (blocks != r.leaked_blocks)
    fail_msg("after a kill at step %ld: %zu leaked blocks, %zu reclaimed", n, r.leaked_blocks,
             blocks);
  rc = shm_segment_check(seg, &r);
  if (rc != 0 || r.leaked_blocks != 0)
    fail_msg("after a kill at step %ld and a reclaim: %s, %zu leaked blocks (%s)", n,
             shmval_err_name(rc), r.leaked_blocks, r.problem != NULL ? r.problem : "");
  int done = 0, x = 0;
  assert_ok(shm_value_get(progress, &done));
  assert_ok(shm_value_get(keep, &x));
  assert_int_equal(x, 42);
  expect_names(seg, done);
  if (st == 0)
    assert_int_equal(done, OPS);

  /* The segment still works: clear the names and run the workload here. */
  char nm[32];
  for (int i = 0; i < NAMES; i++) {
    snprintf(nm, sizeof nm, "n%d", i);
    rc = shm_object_remove(seg, nm);
    assert_true(rc == 0 || rc == SHMVAL_ENOENT);
  }
  rc = shm_object_remove(seg, "big");
  assert_true(rc == 0 || rc == SHMVAL_ENOENT);
  assert_ok(shm_value_set(progress, &(int){0}));
  assert_int_equal(workload(seg, progress), 0);
  assert_ok(shm_segment_check(seg, &r));
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
  return st == 0;
}

static void test_kill_at_every_step(void **state) {
  (void)state;
  long n;
  size_t max_leaked = 0;
  for (n = 1; n < 100000; n++)
    if (round_at(n, &max_leaked))
      break;
  /* The workload's changes are made of hundreds of steps; all were cut. */
  print_message("killed the workload at each of its %ld steps; at most %zu leaked block\n", n - 1,
                max_leaked);
  assert_true(n > 200);
  assert_true(max_leaked == 1); /* some kills did land between allocation and publication */
}

/* The check finds damage it did not make: a sample of deliberate corruptions. */
static void corrupt_and_check(void (*damage)(shmval__seg *, shm_value *), const char *what) {
  char name[96];
  shm_segment *seg;
  test_name(name, sizeof name, "corrupt");
  assert_ok(shm_segment_create(&seg, name, 1 << 20, NULL));
  shm_opts o = {.segment = seg, .name = "victim"};
  shm_value *v;
  assert_ok(shm_value_create(&v, SHMVAL_INT, &(int){1}, &o));
  fragment(seg);
  shm_check_report r;
  assert_ok(shm_segment_check(seg, &r));
  assert_int_equal(r.named, 1);
  assert_int_equal(r.objects, 7);
  assert_int_equal(r.leaked_blocks, 0);
  assert_null(r.problem);
  damage(seg->base, v);
  int rc = shm_segment_check(seg, &r);
  if (rc != SHMVAL_ECORRUPT)
    fail_msg("%s: the check returned %s", what, shmval_err_name(rc));
  assert_non_null(r.problem);
  print_message("%-34s -> %s\n", what, r.problem);
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
}

static void dmg_counter(shmval__seg *s, shm_value *v) {
  (void)v;
  s->used += 64;
}
static void dmg_free_link(shmval__seg *s, shm_value *v) {
  (void)v;
  for (unsigned fl = 0; fl < SHMVAL__FL_COUNT; fl++)
    for (unsigned sl = 0; sl < SHMVAL__SL_COUNT; sl++)
      if (shmval__heap_state_of(s)->free_head[fl][sl] != 0) {
        ((shmval__free_blk *)(void *)((char *)s + shmval__heap_state_of(s)->free_head[fl][sl]))
            ->next = 8;
        return;
      }
}
static void dmg_obj_length(shmval__seg *s, shm_value *v) {
  (void)s;
  shmval__obj_of(v)->length = 1000000;
}
static void dmg_dir_count(shmval__seg *s, shm_value *v) {
  (void)v;
  s->dir_count++;
}
static void dmg_name_hidden(shmval__seg *s, shm_value *v) {
  /* Rename the object in place: its entry's hash tag no longer matches. */
  shmval__obj *o = shmval__obj_of(v);
  (void)s;
  ((char *)o + o->name_off)[0] = 'X';
}
static void dmg_lock_back(shmval__seg *s, shm_value *v) {
  (void)s;
  shmval__obj *o = shmval__obj_of(v);
  ((shmval__lock *)(void *)((char *)o + o->lock_rel))->host_back += 8;
}

static void test_check_finds_damage(void **state) {
  (void)state;
  corrupt_and_check(dmg_counter, "used-bytes counter");
  corrupt_and_check(dmg_free_link, "free-list link");
  corrupt_and_check(dmg_obj_length, "object length past its block");
  corrupt_and_check(dmg_dir_count, "directory count");
  corrupt_and_check(dmg_name_hidden, "name changed under its entry");
  corrupt_and_check(dmg_lock_back, "lock not pointing back");
}

/*
 * A Condition's damaged waiter slot: the check reports it, and wait and
 * notify leave that slot alone instead of handing its mutex to glibc.
 */
static void test_cond_slot_damage(void **state) {
  (void)state;
  char name[96];
  shm_segment *seg;
  shm_cond *c;
  shm_check_report r;
  test_name(name, sizeof name, "condslot");
  assert_ok(shm_segment_create(&seg, name, 1 << 20, NULL));
  assert_ok(shm_cond_create(&c, NULL, &(shm_opts){.segment = seg}));
  assert_ok(shm_segment_check(seg, &r));
  shmval__obj *o = shmval__obj_of(c);
  shmval__cond_state *st = (shmval__cond_state *)(void *)shmval__payload(o);
  st->slot[3].state = 9;
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  assert_string_equal(r.problem, "a condition's waiter slot is damaged");
  st->slot[3].state = SHMVAL__CW_FREE;
  for (unsigned i = 0; i < SHMVAL__COND_SLOTS; i++)
    st->slot[i].alive.__data.__kind ^= 0x40; /* a type word glibc would misread */
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  shm_lock *l = shm_cond_get_lock(c);
  assert_ok(shm_lock_acquire(l));
  assert_code(shm_cond_wait(c, 0.01), SHMVAL_ETIMEDOUT); /* no slot: the fallback count */
  assert_ok(shm_cond_notify_all(c));
  assert_ok(shm_lock_release(l));
  for (unsigned i = 0; i < SHMVAL__COND_SLOTS; i++)
    st->slot[i].alive.__data.__kind ^= 0x40;
  assert_ok(shm_segment_check(seg, &r));
  assert_ok(shm_cond_destroy(c));
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
}

/*
 * A Condition waiter killed at each step of entering and leaving its wait
 * (the slot and its count changing under the condition's lock) leaves the
 * condition working: live waiters in either slot are notified, and a notify
 * with no live waiter is lost.
 */
static shm_cond *kcond;
static shm_sem *ksleeping;
static long kdie_at;

/* Wait on kcond for @p t seconds: 0 notified, 2 not, 3 an error. */
static int kwait(double t) {
  shm_lock *l = shm_cond_get_lock(kcond);
  if (shm_lock_acquire(l) < 0)
    return 1;
  shm_sem_release(ksleeping);
  int rc = shm_cond_wait(kcond, t);
  shm_lock_release(l);
  /* A timeout, or a wake-up that found the dying waiter's lock owner-dead. */
  return rc == 0 ? 0 : rc == SHMVAL_ETIMEDOUT || rc == SHMVAL_OWNERDEAD ? 2 : 3;
}
static int kwait_short(void *arg) { return (void)arg, kwait(0.3); }
static int kwait_long(void *arg) { return (void)arg, kwait(3); }
static int kwait_dying(void *arg) {
  (void)arg;
  shmval__crash_countdown = kdie_at;
  return kwait(0.05);
}

/* Start @p fn and return once it waits (its lock is free only inside the wait). */
static pid_t kstart(int (*fn)(void *)) {
  pid_t pid = spawn(fn, NULL);
  assert_ok(shm_sem_acquire(ksleeping, 5));
  shm_lock *l = shm_cond_get_lock(kcond);
  int rc = shm_lock_acquire(l);
  assert_true(rc == 0 || rc == SHMVAL_OWNERDEAD);
  assert_ok(shm_lock_release(l));
  return pid;
}

static void knotify(unsigned n) {
  shm_lock *l = shm_cond_get_lock(kcond);
  int rc = shm_lock_acquire(l);
  assert_true(rc == 0 || rc == SHMVAL_OWNERDEAD);
  assert_ok(shm_cond_notify(kcond, n));
  assert_ok(shm_lock_release(l));
}

static void test_cond_waiter_killed_at_every_step(void **state) {
  (void)state;
  assert_ok(shm_cond_create(&kcond, NULL, NULL));
  assert_ok(shm_sem_create(&ksleeping, 0, NULL));
  bool finished = false;
  for (kdie_at = 1; !finished && kdie_at < 100; kdie_at++) {
    /* A live waiter first, so that the dying one takes the second slot. */
    pid_t x = kstart(kwait_short);
    pid_t d = kstart(kwait_dying);
    int drc = reap(d);
    finished = drc != 128 + SIGKILL;
    if (finished)
      assert_int_equal(drc, 2); /* it timed out normally */
    assert_int_equal(reap(x), 2);
    /* Two live waiters; the first leaves; a notify must still reach the second. */
    pid_t a = kstart(kwait_short), b = kstart(kwait_long);
    assert_int_equal(reap(a), 2);
    knotify(1);
    if (reap(b) != 0)
      fail_msg("killed at step %ld: the live waiter was not notified", kdie_at);
    /* No live waiter: the notify is lost. */
    knotify(1);
    shm_lock *l = shm_cond_get_lock(kcond);
    assert_ok(shm_lock_acquire(l));
    assert_code(shm_cond_wait(kcond, 0.05), SHMVAL_ETIMEDOUT);
    assert_ok(shm_lock_release(l));
  }
  assert_true(finished);
  print_message("killed a Condition waiter at each of its %ld steps\n", kdie_at - 2);
  assert_ok(shm_cond_destroy(kcond));
  assert_ok(shm_sem_destroy(ksleeping));
}

/* A segment with a named Value "victim" (own lock), for damage to be done to. */
static shm_segment *victim_segment(char *name, size_t cap, shm_value **v) {
  shm_segment *seg;
  test_name(name, cap, "fuzzfind");
  assert_ok(shm_segment_create(&seg, name, 1 << 16, NULL));
  shm_opts o = {.segment = seg, .name = "victim"};
  assert_ok(shm_value_create(v, SHMVAL_INT, &(int){1}, &o));
  return seg;
}

static void drop(shm_segment *seg, const char *name) {
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
}

/*
 * What the fuzzers found (the regression inputs of fuzz_make_seeds), each as the
 * damage that caused it and the clean answer the library now gives.
 */
static void test_fuzz_finds(void **state) {
  (void)state;
  char name[96];
  shm_value *v, *v2;
  shm_segment *seg2;

  /* 1. A table header whose payload is misaligned: open refused. */
  shm_segment *seg = victim_segment(name, sizeof name, &v);
  shmval__obj *att = (shmval__obj *)(void *)((char *)seg->base + seg->base->attach_off);
  att->payload_rel += 4;
  assert_code(shm_segment_open(&seg2, name, NULL), SHMVAL_ECORRUPT);
  att->payload_rel -= 4;
  drop(seg, name);

  /* 2. Bitmap bits for size classes that do not exist: no read past the lists. */
  seg = victim_segment(name, sizeof name, &v);
  for (unsigned fl = 0; fl < SHMVAL__FL_COUNT; fl++)
    shmval__heap_state_of(seg->base)->sl_bitmap[fl] |= 0xffff0000u;
  shm_opts o = {.segment = seg};
  int rc = shm_value_create(&v2, SHMVAL_INT, NULL, &o);
  assert_true(rc == 0 || rc == SHMVAL_ECORRUPT);
  drop(seg, name);

  /* 3. A lock whose host is not an object: no free through a wild header. */
  seg = victim_segment(name, sizeof name, &v);
  shmval__obj *o2 = shmval__obj_of(v);
  ((shmval__lock *)(void *)((char *)o2 + o2->lock_rel))->host_back -= 1;
  assert_code(shm_object_remove(seg, "victim"), SHMVAL_ECORRUPT); /* not a valid object now */
  assert_code(shm_value_open(&v2, seg, "victim", SHMVAL_INT), SHMVAL_ECORRUPT);
  ((shmval__lock *)(void *)((char *)o2 + o2->lock_rel))->host_back += 1;
  assert_ok(shm_object_remove(seg, "victim"));
  drop(seg, name);

  /* 4. A free-list link out of the heap: allocation fails cleanly, nothing changes. */
  seg = victim_segment(name, sizeof name, &v);
  o.segment = seg;
  shm_check_report r;
  assert_ok(shm_segment_check(seg, &r));
  for (unsigned fl = 0; fl < SHMVAL__FL_COUNT; fl++)
    for (unsigned sl = 0; sl < SHMVAL__SL_COUNT; sl++)
      if (shmval__heap_state_of(seg->base)->free_head[fl][sl] != 0)
        ((shmval__free_blk *)(void *)((char *)seg->base +
                                      shmval__heap_state_of(seg->base)->free_head[fl][sl]))
            ->next = UINT64_C(1) << 50;
  size_t used = r.used;
  assert_code(shm_value_create(&v2, SHMVAL_INT, NULL, &o), SHMVAL_ECORRUPT);
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  assert_int_equal(r.used, used);
  drop(seg, name);

  /*
   * 5. A payload laid over the object's own lock: refused. A set through it
   * overwrote the held mutex, its unlock failed, and the mutex stayed on the
   * thread's robust list for glibc's next lock call to write through.
   */
  seg = victim_segment(name, sizeof name, &v);
  o2 = shmval__obj_of(v);
  uint32_t pay = o2->payload_rel;
  o2->payload_rel = (uint32_t)(o2->lock_rel + offsetof(shmval__lock, owner));
  assert_code(shm_value_open(&v2, seg, "victim", SHMVAL_INT), SHMVAL_ECORRUPT);
  o2->payload_rel = pay;
  assert_ok(shm_value_open(&v2, seg, "victim", SHMVAL_INT));
  drop(seg, name);

  /* 6. A payload laid over another object's lock, which it shares: refused too. */
  seg = victim_segment(name, sizeof name, &v);
  o = (shm_opts){.segment = seg, .name = "sharer", .lock = shm_value_get_lock(v)};
  assert_ok(shm_value_create(&v2, SHMVAL_INT, NULL, &o));
  shmval__obj *sh = shmval__obj_of(v2);
  uint64_t sh_off = (uint64_t)((char *)sh - (char *)seg->base),
           lock_at = sh_off + (uint64_t)sh->lock_rel;
  assert_true(sh_off < lock_at); /* the later block lies before the earlier one */
  uint64_t *size_word = (uint64_t *)(void *)((char *)sh - SHMVAL__OBJ_HDR_OFF), keep = *size_word;
  uint64_t grown =
      (lock_at + sizeof(shmval__lock) - (sh_off - SHMVAL__OBJ_HDR_OFF) + SHMVAL__BLOCK_ALIGN - 1) &
      ~(uint64_t)(SHMVAL__BLOCK_ALIGN - 1);
  *size_word = grown | (keep & SHMVAL__BLK_FLAGS);
  /* The payload on the lock's owner token, the name (which must follow it) on its list links. */
  pay = sh->payload_rel;
  uint64_t name_off = sh->name_off, links = lock_at + offsetof(shmval__lock, mutex) +
                                            offsetof(pthread_mutex_t, __data.__list);
  char saved[16];
  memcpy(saved, (char *)seg->base + links, sizeof saved);
  sh->payload_rel = (uint32_t)(lock_at - sh_off) + offsetof(shmval__lock, owner);
  sh->name_off = links - sh_off;
  strcpy((char *)seg->base + links, "sharer");
  shm_value *v3;
  assert_code(shm_value_open(&v3, seg, "sharer", SHMVAL_INT), SHMVAL_ECORRUPT);
  memcpy((char *)seg->base + links, saved, sizeof saved);
  sh->name_off = name_off;
  sh->payload_rel = pay;
  *size_word = keep;
  assert_ok(shm_value_destroy(v2));
  drop(seg, name);
}

static int child_allocates(void *arg) {
  shm_opts o = {.segment = arg};
  shm_value *v;
  return shm_value_create(&v, SHMVAL_INT, NULL, &o) == 0 ? 0 : 1;
}

static int child_acquires(void *arg) { return shm_value_acquire(arg) == SHMVAL_OWNERDEAD ? 0 : 1; }

/*
 * A waiter asleep on mutex @p m when its owner dies must take it, even though
 * the kernel's one wake-up went to another waiter that died before taking it
 * (the torture's hang). The test makes that state by hand: the lock word of a
 * dead process with waiters, a child asleep on it, then the owner-dead bit set
 * as the kernel sets it, with no wake-up.
 */
static void lost_wakeup(pthread_mutex_t *m, int (*fn)(void *), void *arg) {
  pid_t dead = fork();
  if (dead == 0)
    _exit(0);
  assert_int_equal(reap(dead), 0); /* a thread id that runs no more */
  __atomic_store_n(&m->__data.__owner, dead, __ATOMIC_RELAXED);
  __atomic_store_n(&m->__data.__lock, (int)(FUTEX_WAITERS | (unsigned)dead), __ATOMIC_SEQ_CST);
  pid_t w = spawn(fn, arg);
  bool slept = seen_in_futex_wait(w, 2);
  __atomic_or_fetch(&m->__data.__lock, FUTEX_OWNER_DIED, __ATOMIC_SEQ_CST);
  int st = 0;
  pid_t r;
  double t0 = now_s();
  while ((r = waitpid(w, &st, WNOHANG)) == 0 && now_s() - t0 < 2)
    sleep_s(0.002);
  if (r == 0) {
    kill(w, SIGKILL);
    reap(w);
    fail_msg("a waiter slept on, for 2 s, on a mutex whose owner had died");
  }
  assert_true(slept); /* it did wait before the owner died */
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_owner_death_wakeup_lost(void **state) {
  (void)state;
  char name[96];
  shm_value *v;
  shm_segment *seg = victim_segment(name, sizeof name, &v);
  lost_wakeup(&seg->base->heap_lock, child_allocates, seg);
  shm_check_report r;
  assert_ok(shm_segment_check(seg, &r));
  shmval__obj *o = shmval__obj_of(v);
  lost_wakeup(&((shmval__lock *)(void *)((char *)o + o->lock_rel))->mutex, child_acquires, v);
  assert_code(shm_value_acquire(v), SHMVAL_OWNERDEAD); /* the child died holding it */
  assert_ok(shm_value_release(v));
  drop(seg, name);
}

static long die_at;

static int die_creating(void *arg) {
  shm_opts o = {.segment = arg};
  shm_array *a;
  shmval__crash_countdown = die_at;
  (void)shm_array_create(&a, SHMVAL_DOUBLE, 100, NULL, &o);
  return 1;
}

/* A fork child takes an attacher slot of its own: the only free one. */
static int attach_and_count(void *arg) {
  shm_check_report r;
  return shm_segment_check(arg, &r) != 0 ? 11 : (int)r.leaked_blocks;
}

/*
 * The process that takes over a dead process's attacher slot frees the block
 * the dead one was creating: with two slots, the one the dead child held is
 * the only one free.
 */
static void test_new_attacher_reclaims(void **state) {
  (void)state;
  char name[96];
  shm_segment *seg;
  shm_check_report r;
  test_name(name, sizeof name, "takeover");
  shm_segment_opts so = {.max_attach = 2};
  assert_ok(shm_segment_create(&seg, name, 1 << 18, &so));
  /* The first step at which a killed creator leaves its block taken. */
  r.leaked_blocks = 0;
  for (die_at = 1; die_at < 100 && r.leaked_blocks == 0; die_at++) {
    assert_int_equal(reap(spawn(die_creating, seg)), 128 + SIGKILL);
    assert_ok(shm_segment_check(seg, &r));
  }
  assert_int_equal(r.leaked_blocks, 1);
  assert_int_equal(reap(spawn(attach_and_count, seg)), 0); /* it saw none left */
  assert_ok(shm_segment_check(seg, &r));
  assert_int_equal(r.leaked_blocks, 0);
  size_t blocks = 7;
  assert_ok(shm_segment_reclaim(seg, &blocks, NULL));
  assert_int_equal(blocks, 0);
  drop(seg, name);
}

/* The block of the object behind handle @p h in @p seg. */
static uint64_t block_of(shm_segment *seg, void *h) {
  return (uint64_t)((char *)shmval__obj_of(h) - (char *)seg->base) - SHMVAL__OBJ_HDR_OFF;
}

/* The journal word of a free attacher slot, as a dead process would have left it. */
static uint64_t *free_slot_journal(shm_segment *seg) {
  shmval__attach_ent *t = shmval__attach_table(seg->base);
  assert_non_null(t);
  uint32_t k = 0;
  while (k < seg->base->max_attach && (t[k].pid != 0 || t[k].pending != 0))
    k++;
  assert_true(k < seg->base->max_attach);
  return &t[k].pending;
}

/* Destroy the Value @p arg, stopping (SIGSTOP) right after the retiring swap. */
static int stop_after_swap(void *arg) {
  shmval__crash_signal = SIGSTOP;
  shmval__crash_countdown = 2; /* 1: the journal noted; 2: the swap done */
  return shm_value_destroy(arg) == 0 ? 0 : 1;
}

/*
 * A destroyer notes its journal before the swap that retires the object, so
 * a journal can outlive a death just before that swap while the object lives
 * on, is destroyed by others, and its block reused. A reclaimer must then
 * tell that the dead process did not retire what its journal names: here a
 * free slot's journal (such a leftover, made by hand) names an object that a
 * live process is destroying, stopped just after its swap. The reclaim must
 * leave the block to that process, which then finishes.
 */
static void test_reclaim_spares_other_destroyer(void **state) {
  (void)state;
  char name[96];
  shm_value *v;
  shm_segment *seg = victim_segment(name, sizeof name, &v);
  shm_opts uo = {.segment = seg};
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, &uo)); /* unnamed, its own lock */
  shmval__obj *o = shmval__obj_of(v);
  uint64_t blk = block_of(seg, v);
  pid_t pid = spawn(stop_after_swap, v);
  int st = 0;
  assert_int_equal(waitpid(pid, &st, WUNTRACED), pid);
  assert_true(WIFSTOPPED(st));
  assert_true(shmval__magic_dead(o->magic));
  uint64_t *j = free_slot_journal(seg);
  *j = blk | SHMVAL__J_DESTROY;
  size_t blocks = 9;
  int rc = shm_segment_reclaim(seg, &blocks, NULL);
  kill(pid, SIGCONT); /* before any assert, so that no stopped child is left */
  assert_int_equal(reap(pid), 0);
  assert_ok(rc);
  assert_int_equal(blocks, 0);
  assert_int_equal(*j, 0); /* let go of, as not the dead process's */
  shm_check_report r;
  assert_ok(shm_segment_check(seg, &r));
  assert_int_equal(r.leaked_blocks, 0);
  drop(seg, name);
}

static int count_objects(const shm_object_info *info, void *ctx) {
  (void)info;
  ++*(int *)ctx;
  return 0;
}

/*
 * A creator lets go of its journal only after publishing, so a death in
 * between leaves a published unnamed object that no one was given: it is not
 * listed, counts as leaked and a reclaim frees it. (The journal of a dead
 * creator is written here by hand into a free slot.)
 */
static void test_unreturned_object(void **state) {
  (void)state;
  char name[96];
  shm_value *v, *kept;
  shm_segment *seg = victim_segment(name, sizeof name, &v);
  shm_opts uo = {.segment = seg};
  assert_ok(shm_value_create(&kept, SHMVAL_INT, NULL, &uo));
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, &uo));
  int before = 0, after = 0;
  assert_ok(shm_segment_foreach(seg, count_objects, &before));
  uint64_t *j = free_slot_journal(seg);
  *j = block_of(seg, v) | SHMVAL__J_CREATE;
  assert_ok(shm_segment_foreach(seg, count_objects, &after));
  assert_int_equal(after, before - 1);
  shm_check_report r;
  assert_ok(shm_segment_check(seg, &r));
  assert_int_equal(r.leaked_blocks, 1);
  size_t blocks = 0;
  assert_ok(shm_segment_reclaim(seg, &blocks, NULL));
  assert_int_equal(blocks, 1);
  assert_int_equal(*j, 0);
  assert_code(shm_value_get(v, &(int){0}), SHMVAL_ESTALE);
  assert_ok(shm_value_get(kept, &(int){0}));
  assert_ok(shm_segment_check(seg, &r));
  assert_int_equal(r.leaked_blocks, 0);
  drop(seg, name);
}

/* Destroy the Value @p arg and die right after the retiring swap. */
static int die_after_swap(void *arg) {
  shmval__crash_countdown = 2; /* 1: the journal noted; 2: the swap done */
  (void)shm_value_destroy(arg);
  return 1;
}

static int just_exit(void *arg) {
  (void)arg;
  return 0;
}

/*
 * The process that takes over a dead destroyer's slot reclaims its journal
 * when it attaches (in its fork handler here), and may itself be killed at
 * any step of that: the block must still be reclaimed by the next one. (A
 * reclaim that overwrote the destroyer's dead magic before freeing left a
 * journal that no later reclaim would honour.)
 */
static void test_kill_during_takeover(void **state) {
  (void)state;
  char name[96];
  bool finished = false;
  long k;
  for (k = 1; !finished && k < 200; k++) {
    shm_segment *seg;
    shm_value *u;
    shm_check_report r;
    test_name(name, sizeof name, "takeover-kill");
    shm_segment_opts so = {.max_attach = 2};
    assert_ok(shm_segment_create(&seg, name, 1 << 18, &so));
    shm_opts uo = {.segment = seg};
    assert_ok(shm_value_create(&u, SHMVAL_INT, NULL, &uo));
    assert_int_equal(reap(spawn(die_after_swap, u)), 128 + SIGKILL);
    /* The only free slot is the dead one's: the child's fork handler takes it over. */
    shmval__crash_countdown = k;
    pid_t pid = spawn(just_exit, NULL);
    shmval__crash_countdown = 0;
    int st = reap(pid);
    assert_true(st == 0 || st == 128 + SIGKILL);
    finished = st == 0;
    assert_ok(shm_segment_check(seg, &r));
    assert_true(r.leaked_blocks <= 1);
    size_t blocks = 9;
    assert_ok(shm_segment_reclaim(seg, &blocks, NULL));
    if (blocks != r.leaked_blocks)
      fail_msg("a takeover killed after step %ld: %zu leaked blocks, %zu reclaimed", k,
               r.leaked_blocks, blocks);
    assert_ok(shm_segment_check(seg, &r));
    assert_int_equal(r.leaked_blocks, 0);
    drop(seg, name);
  }
  assert_true(finished);
  assert_true(k > 4); /* the takeover had steps to be killed at */
}

/* Die holding the directory lock: its next holder rebuilds the directory. */
static int die_holding_dir(void *arg) { return shmval__dir_lock(((shm_segment *)arg)->base); }

static long rebuild_die_at;
static const char *rebuild_seg_name;

/* Take the dead holder's directory lock (rebuilding) and die after a step. */
static int rebuild_and_die(void *arg) {
  shmval__crash_countdown = rebuild_die_at;
  return shm_object_remove(arg, "n0") == 0 ? 0 : 20;
}

/* A process that never had the segment opens it and finds every name. */
static int fresh_opener(void *arg) {
  (void)arg;
  shm_segment *seg;
  char nm[32];
  int rc = shm_segment_open(&seg, rebuild_seg_name, NULL);
  if (rc != 0)
    return 30 + (-rc % 50);
  for (int i = 1; i < NAMES; i++) {
    shm_value *v;
    int x = -1;
    snprintf(nm, sizeof nm, "n%d", i);
    if (shm_value_open(&v, seg, nm, SHMVAL_INT) != 0 || shm_value_get(v, &x) != 0 || x != i)
      return 90;
  }
  return shm_segment_close(seg) == 0 ? 0 : 91;
}

/*
 * A process that repairs the directory after a dead holder may itself be
 * killed at any step of the repair. The segment stays attachable by a
 * process that never had it, with every name, and the next holder finishes
 * the repair. (A rebuild killed between freeing the old table and installing
 * the new one left every open failing with ECORRUPT.)
 */
static void test_kill_during_rebuild(void **state) {
  (void)state;
  char name[96];
  rebuild_seg_name = name;
  bool finished = false;
  for (rebuild_die_at = 1; !finished && rebuild_die_at < 400; rebuild_die_at++) {
    shm_segment *seg;
    shm_check_report r;
    test_name(name, sizeof name, "rebuild");
    assert_ok(shm_segment_create(&seg, name, 1 << 18, NULL));
    for (int i = 0; i < NAMES; i++) {
      char nm[32];
      shm_value *v;
      snprintf(nm, sizeof nm, "n%d", i);
      shm_opts o = {.segment = seg, .name = nm};
      assert_ok(shm_value_create(&v, SHMVAL_INT, &i, &o));
    }
    assert_int_equal(reap(spawn(die_holding_dir, seg)), 0);
    int st = reap(spawn(rebuild_and_die, seg));
    assert_true(st == 0 || st == 128 + SIGKILL);
    finished = st == 0;
    int fresh = reap(spawn(fresh_opener, NULL));
    if (fresh != 0)
      fail_msg("a rebuild killed after step %ld: a fresh opener failed with %d", rebuild_die_at,
               fresh);
    int rc = shm_segment_check(seg, &r);
    if (rc != 0)
      fail_msg("a rebuild killed after step %ld: %s (%s)", rebuild_die_at, shmval_err_name(rc),
               r.problem != NULL ? r.problem : "");
    assert_true(r.leaked_blocks <= 1);
    drop(seg, name);
  }
  assert_true(finished);
  assert_true(rebuild_die_at > 10); /* the repair has steps to be killed at */
}

static void test_check_args(void **state) {
  (void)state;
  char name[96];
  shm_segment *seg, *ro;
  shm_check_report r;
  test_name(name, sizeof name, "chkargs");
  assert_ok(shm_segment_create(&seg, name, 1 << 16, NULL));
  shm_segment_opts o = {.flags = SHMVAL_RDONLY};
  assert_ok(shm_segment_open(&ro, name, &o));
  assert_code(shm_segment_check(NULL, &r), SHMVAL_EINVAL);
  assert_code(shm_segment_check(seg, NULL), SHMVAL_EINVAL);
  assert_code(shm_segment_check(ro, &r), SHMVAL_EACCES);
  assert_code(shm_segment_reclaim(ro, NULL, NULL), SHMVAL_EACCES);
  assert_ok(shm_segment_reclaim(seg, NULL, NULL));
  assert_ok(shm_segment_check(seg, &r));
  assert_int_equal(r.objects, 0);
  assert_int_equal(r.used + r.free,
                   seg->base->heap_end - seg->base->heap_start - SHMVAL__HEAP_STATE_SIZE);
  assert_ok(shm_segment_close(ro));
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
}

/*
 * A destroyed lock that other objects still use stays allocated: in use, not
 * leaked. A reference no live object holds (its dropper died) is leaked.
 */
static void test_shared_lock_not_leaked(void **state) {
  (void)state;
  char name[96];
  shm_segment *seg;
  shm_check_report r;
  shm_lock *lk;
  shm_value *v, *w;
  test_name(name, sizeof name, "kept");
  assert_ok(shm_segment_create(&seg, name, 1 << 16, NULL));
  shm_opts o = {.segment = seg, .name = "lk"};
  assert_ok(shm_lock_create(&lk, &o));
  shm_opts share = {.segment = seg, .lock = lk};
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, &share));
  assert_ok(shm_value_create(&w, SHMVAL_INT, NULL, &share));
  assert_ok(shm_lock_destroy(lk));
  assert_ok(shm_segment_check(seg, &r));
  assert_int_equal(r.leaked_blocks, 0);
  assert_int_equal(r.objects, 2);
  assert_int_equal(r.blocks, 3 + 2); /* the kept lock, two Values, the segment's two tables */
  size_t blocks = 9;
  assert_ok(shm_segment_reclaim(seg, &blocks, NULL));
  assert_int_equal(blocks, 0);
  /* One reference more than its users: nobody will drop it. */
  shmval__lock *l = shmval__obj_lock(shmval__obj_of(v));
  atomic_fetch_add(&l->refs, 1);
  assert_ok(shm_segment_check(seg, &r));
  assert_int_equal(r.leaked_blocks, 1);
  atomic_fetch_sub(&l->refs, 1);
  assert_ok(shm_value_destroy(v));
  assert_ok(shm_segment_check(seg, &r));
  assert_int_equal(r.leaked_blocks, 0);
  assert_ok(shm_value_destroy(w)); /* the last user frees the lock's block */
  assert_ok(shm_segment_check(seg, &r));
  assert_int_equal(r.leaked_blocks, 0);
  assert_int_equal(r.blocks, 2);
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
}

/* ------------------------------------------------------------------------ */
/* Kills during growth. */

#define GROW_NAMES 6
#define GROW_LEN                                                                                   \
  (40u << 10) /* bytes per array: the six take the segment from 64 KiB past 256 KiB */

/*
 * The length of a raw char array whose block takes all of the heap's biggest
 * free block, so that the next allocation must grow the heap (which then
 * ends in a used block: allocations take the back end of a free block);
 * 0 if the other free blocks together could hold one of the arrays after it
 * (the first page's room left after the segment's tables is too small).
 */
static size_t tail_fill_len(shm_segment *seg) {
  shmval__heap_stat st;
  if (shmval__heap_check(seg->base, &st) != 0 || st.free - st.largest_free >= GROW_LEN)
    return 0;
  /* The payload starts 64 bytes in; the name "tail" follows it. */
  return st.largest_free > 128 ? (size_t)(st.largest_free - 72) : 0;
}

/*
 * The child's workload: an array that fills the heap's free space, then arrays
 * g0..g5, each filled with its index; *progress counts the seven.
 */
static int grow_workload(shm_segment *seg, shm_value *progress, size_t fill_len) {
  static char fill[GROW_LEN];
  char name[16];
  shm_array *a;
  shm_opts fo = {.segment = seg, .name = "tail", .flags = SHMVAL_RAW};
  if (fill_len != 0 && shm_array_create(&a, SHMVAL_CHAR, fill_len, NULL, &fo) != 0)
    return 9;
  shm_value_add(progress, &(int){1}, NULL);
  for (int i = 0; i < GROW_NAMES; i++) {
    memset(fill, 'a' + i, sizeof fill);
    snprintf(name, sizeof name, "g%d", i);
    if (shm_array_create(&a, SHMVAL_CHAR, GROW_LEN, fill,
                         &(shm_opts){.segment = seg, .name = name}))
      return 10 + i;
    shm_value_add(progress, &(int){1}, NULL);
  }
  return 0;
}

/* Whether g<i> exists, as it must after @p done operations (in flight: either way). */
static void expect_grown(shm_segment *seg, int done) {
  char name[16];
  for (int i = 0; i < GROW_NAMES; i++) {
    shm_array *a;
    snprintf(name, sizeof name, "g%d", i);
    int rc = shm_array_open(&a, seg, name, SHMVAL_CHAR);
    if (i + 1 == done) {
      assert_true(rc == 0 || rc == SHMVAL_ENOENT);
    } else if (i + 1 < done) {
      assert_ok(rc);
      const char *p = shm_array_ptr(a);
      assert_int_equal(p[0], 'a' + i);
      assert_int_equal(p[GROW_LEN - 1], 'a' + i);
    } else {
      assert_code(rc, SHMVAL_ENOENT);
    }
  }
}

typedef struct grow_seen {
  bool reserved_unpublished; /* a kill between the reservation and the publication */
  bool published_unused;     /* a kill between the publication and the heap's extension */
} grow_seen;

/* One round: kill the growing child after step @p n. True if it finished instead. */
static bool grow_round_at(long n, grow_seen *seen) {
  char name[96];
  shm_segment *seg;
  test_name(name, sizeof name, "crashgrow");
  assert_ok(shm_segment_create(&seg, name, 64 << 10, &(shm_segment_opts){.max_size = 4 << 20}));
  shm_opts prog_o = {.segment = seg, .name = "progress", .flags = SHMVAL_ATOMIC};
  shm_value *progress;
  assert_ok(shm_value_create(&progress, SHMVAL_INT, NULL, &prog_o));
  size_t fill_len = tail_fill_len(seg);
  assert_true(fill_len > 0);
  pid_t pid = fork();
  if (pid == 0) {
    shmval__crash_countdown = n;
    _exit(grow_workload(seg, progress, fill_len));
  }
  int st = reap(pid);
  assert_true(st == 0 || st == 128 + SIGKILL);

  /* Space is reserved before it is published: the file holds at least what is committed. */
  shmval__seg *b = seg->base;
  struct stat fs;
  assert_int_equal(fstat(seg->fd, &fs), 0);
  uint64_t size = shmval__seg_size(b), allocated = (uint64_t)fs.st_blocks * 512u;
  if (allocated < size)
    fail_msg("after a kill at step %ld: %llu bytes committed, %llu reserved", n,
             (unsigned long long)size, (unsigned long long)allocated);
  seen->reserved_unpublished |= allocated > size;
  seen->published_unused |= shmval__heap_end(b) < size;

  shm_check_report r;
  check_after_kill(seg, n, &r);
  int rc;
  size_t blocks, bytes;
  assert_ok(shm_segment_reclaim(seg, &blocks, &bytes));
  int done = 0;
  assert_ok(shm_value_get(progress, &done));
  expect_grown(seg, done);
  if (st == 0)
    assert_int_equal(done, GROW_NAMES + 1);

  /* It grows again: the workload from the start here, then past what the child reached. */
  char nm[16];
  for (int i = -1; i < GROW_NAMES; i++) {
    snprintf(nm, sizeof nm, i < 0 ? "tail" : "g%d", i);
    rc = shm_object_remove(seg, nm);
    assert_true(rc == 0 || rc == SHMVAL_ENOENT);
  }
  assert_int_equal(grow_workload(seg, progress, tail_fill_len(seg)), 0);
  shm_array *big;
  assert_ok(shm_array_create(&big, SHMVAL_CHAR, 1 << 20, NULL, &(shm_opts){.segment = seg}));
  assert_true(shmval__seg_size(b) > size);
  rc = shm_segment_check(seg, &r);
  if (rc != 0 || r.leaked_blocks != 0)
    fail_msg("after a kill at step %ld and a grow: %s, %zu leaked blocks (%s)", n,
             shmval_err_name(rc), r.leaked_blocks, r.problem != NULL ? r.problem : "");
  assert_int_equal(fstat(seg->fd, &fs), 0);
  assert_true((uint64_t)fs.st_blocks * 512u >= shmval__seg_size(b));
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
  return st == 0;
}

static void test_kill_at_every_grow_step(void **state) {
  (void)state;
  grow_seen seen = {false, false};
  long n;
  for (n = 1; n < 100000; n++)
    if (grow_round_at(n, &seen))
      break;
  print_message("killed a growing workload at each of its %ld steps\n", n - 1);
  assert_true(n > 100);
  /* Kills landed inside the grows, in both of their windows. */
  assert_true(seen.reserved_unpublished);
  assert_true(seen.published_unused);
}

/* The first live slot of dict @p d's table (the table is there: the dict has keys). */
/* An update that stores the value unchanged. */
static int upd_keep(void *val, size_t *vlen, size_t cap, int present, void *ctx) {
  (void)val, (void)vlen, (void)cap, (void)present, (void)ctx;
  return 0;
}

static shmval__dslot *first_slot(shm_dict *d, uint64_t state, shmval__dict **hdr) {
  shmval__obj *o = shmval__obj_of(d);
  shmval__dict *h = (shmval__dict *)(void *)shmval__payload(o);
  shmval__seg *seg = shmval__obj_seg(o);
  shmval__obj *t = (shmval__obj *)(void *)((char *)seg + h->tab);
  shmval__dslot *s = (shmval__dslot *)(void *)shmval__payload(t);
  *hdr = h;
  for (uint64_t i = 0; i < t->length; i++)
    if ((s[i].ctl & SHMVAL__DS_STATE) == state)
      return &s[i];
  return NULL;
}

/* A damaged dict: the check names the damage; readers report it, never crash. */
static void test_dict_damage(void **state) {
  (void)state;
  char name[96], buf[64];
  shm_segment *seg;
  shm_dict *d;
  shm_check_report r;
  shmval__dict *h;
  test_name(name, sizeof name, "dictdmg");
  assert_ok(shm_segment_create(&seg, name, 1 << 20, NULL));
  assert_ok(shm_dict_create(&d, 0, &(shm_opts){.segment = seg, .name = "d"}));
  assert_ok(shm_dict_set(d, "inline", 6, "v", 1));
  assert_ok(shm_dict_set(d, "entry", 5, "a value that needs an entry block", 33));
  assert_ok(shm_segment_check(seg, &r));
  shmval__dslot *in = first_slot(d, SHMVAL__DS_INLINE, &h),
                *he = first_slot(d, SHMVAL__DS_HEAP, &h);
  assert_non_null(in);
  assert_non_null(he);
  /* An entry's hash that is not its key's. */
  he->w[1] ^= 1;
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  assert_string_equal(r.problem, "a dict entry's key does not match its hash");
  assert_code(shm_dict_get(d, "entry", 5, buf, sizeof buf, NULL), SHMVAL_ENOENT);
  he->w[1] ^= 1;
  /* An entry pointer out of the heap, and into the middle of a block. */
  uint64_t keep = he->w[0];
  he->w[0] = UINT64_C(1) << 50;
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  assert_string_equal(r.problem, "a dict slot points to a damaged entry");
  assert_code(shm_dict_get(d, "entry", 5, buf, sizeof buf, NULL), SHMVAL_ECORRUPT);
  he->w[0] = keep + 64;
  assert_code(shm_dict_get(d, "entry", 5, buf, sizeof buf, NULL), SHMVAL_ECORRUPT);
  he->w[0] = keep;
  /* Inline lengths past the slot. */
  uint64_t c = in->ctl;
  in->ctl |= UINT64_C(31) << SHMVAL__DS_VLEN_SHIFT;
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  in->ctl = c;
  /* A wrong count, and a journal word without its tag. */
  h->stripe[0].count += 5;
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  assert_string_equal(r.problem, "a dict's key count is wrong");
  h->stripe[0].count -= 5;
  h->stripe[2].jnew.tag = 0;
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  assert_string_equal(r.problem, "a dict's journal word is damaged");
  h->stripe[2].jnew.tag = SHMVAL__JTAG;
  /*
   * A table made up inside the dict's own header (the fuzzer's: writes to its
   * slots would overwrite the stripes' locks, and the next lock would hang).
   */
  uint64_t tab = h->tab;
  shmval__obj *ft = (shmval__obj *)(void *)((char *)&h->stripe[4] + SHMVAL__OBJ_HDR_OFF);
  shmval__obj saved = *ft;
  memset(ft, 0, sizeof *ft);
  ft->kind = SHMVAL__KIND_DICT_TAB;
  ft->elem_size = sizeof(shmval__dslot);
  ft->length = 8;
  ft->payload_rel = SHMVAL__CACHELINE - SHMVAL__OBJ_HDR_OFF;
  ft->self_off = (uint64_t)((char *)ft - (char *)seg->base);
  atomic_store(&ft->magic, SHMVAL__OBJ_MAGIC);
  h->tab = ft->self_off;
  assert_code(shm_dict_get(d, "inline", 6, buf, sizeof buf, NULL), SHMVAL_ECORRUPT);
  assert_code(shm_dict_set(d, "new", 3, "v", 1), SHMVAL_ECORRUPT);
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  h->tab = tab;
  *ft = saved;
  /* The dict's header moved off its cache line under a handle: refused, not misread. */
  shmval__obj *dob = shmval__obj_of(d);
  dob->payload_rel += 8;
  size_t len;
  assert_code(shm_dict_len(d, &len), SHMVAL_ECORRUPT);
  assert_code(shm_dict_get(d, "inline", 6, buf, sizeof buf, NULL), SHMVAL_ECORRUPT);
  dob->payload_rel -= 8;
  /*
   * An entry pointer into the dict's own header, where the bytes look like an
   * entry block: a delete refuses to free it (the allocator would write its
   * links over the stripes' locks).
   */
  uint64_t *fake = (uint64_t *)(void *)&h->stripe[6];
  uint64_t saved6[4];
  memcpy(saved6, fake, sizeof saved6);
  fake[0] = 64;                                       /* an allocated block of 64 bytes */
  fake[1] = SHMVAL__DENT_MAGIC | ((uint64_t)5 << 32); /* key "entry" */
  fake[2] = 3;
  memcpy(&fake[3], "entry", 5);
  uint64_t w0 = he->w[0];
  he->w[0] = (uint64_t)((char *)fake - (char *)seg->base);
  uint64_t copy[4];
  memcpy(copy, fake, sizeof copy);
  assert_code(shm_dict_del(d, "entry", 5), SHMVAL_ECORRUPT);
  assert_memory_equal(copy, fake, sizeof copy);
  memcpy(fake, saved6, sizeof saved6);
  he->w[0] = w0;
  /*
   * A value size that disagrees with the value type (the fuzzer's: an update
   * sized its buffer from it and asked for 4 GiB): refused by every call.
   */
  uint32_t vt = h->vtype, vs = h->vsize;
  h->vsize = UINT32_MAX;
  assert_code(shm_dict_update(d, "entry", 5, upd_keep, NULL), SHMVAL_ECORRUPT);
  assert_code(shm_dict_get(d, "inline", 6, buf, sizeof buf, NULL), SHMVAL_ECORRUPT);
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  assert_string_equal(r.problem, "a dict's header is damaged");
  h->vtype = SHMVAL_RECORD; /* a record size past the largest record */
  assert_code(shm_dict_update(d, "entry", 5, upd_keep, NULL), SHMVAL_ECORRUPT);
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  h->vsize = 4; /* a value type that is not the object's */
  assert_code(shm_dict_set(d, "x", 1, "abcd", 4), SHMVAL_ECORRUPT);
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  h->vtype = vt;
  h->vsize = vs;
  /* A slot left busy with no writer: a reader gives up with ECORRUPT, no hang. */
  in->ctl |= SHMVAL__DS_BUSY;
  assert_code(shm_dict_get(d, "inline", 6, buf, sizeof buf, NULL), SHMVAL_ECORRUPT);
  in->ctl = c;
  assert_ok(shm_dict_get(d, "inline", 6, buf, sizeof buf, NULL));
  assert_ok(shm_segment_check(seg, &r));
  assert_int_equal(r.leaked_blocks, 0);
  assert_ok(shm_dict_destroy(d));
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
}

/* ------------------------------------------------------------------------ */
/* A dict's writer killed at every step of set, del, pop, setdefault, clear and resize. */

#define DKEYS 20

typedef struct dop {
  char kind; /* s set, d del, p pop, f setdefault, c clear */
  int key, val;
} dop;

static const dop dops[] = {
    {'s', 0, 0},    {'s', 1, 1},   {'s', 2, 2},    {'s', 3, 3},   {'s', 4, 4},   {'s', 5, 5},
    {'s', 6, 6},    {'s', 7, 7},   {'s', 8, 8},    {'s', 9, 9},   {'s', 10, 10}, {'s', 11, 11},
    {'s', 12, 12},  {'s', 13, 13}, {'s', 0, 101},  {'s', 1, 102}, {'s', 2, 103}, {'s', 3, 104},
    {'s', 4, 105},  {'d', 6, 0},   {'d', 7, 0},    {'p', 8, 0},   {'f', 8, 106}, {'f', 9, 107},
    {'s', 14, 14},  {'s', 15, 15}, {'s', 16, 16},  {'d', 0, 0},   {'d', 1, 0},   {'d', 2, 0},
    {'d', 3, 0},    {'d', 4, 0},   {'d', 5, 0},    {'d', 8, 0},   {'d', 9, 0},   {'d', 10, 0},
    {'d', 11, 0},   {'d', 12, 0},  {'d', 13, 0},   {'d', 14, 0},  {'c', 0, 0},   {'s', 17, 17},
    {'s', 1, 108},  {'u', 1, 109}, {'u', 18, 110}, {'a', 2, 0},   {'a', 2, 0},   {'a', 19, 0},
    {'u', 18, 111}, {'a', 2, 0},
};
#define NDOPS ((int)(sizeof dops / sizeof dops[0]))

/* Value @p v: lengths that move a key between the slot and an entry block (0, 3, 13, 40). */
static size_t dval(int v, char *buf) {
  static const size_t lens[] = {3, 40, 0, 13};
  size_t n = lens[v % 4];
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)('A' + (v + (int)i) % 26);
  return n;
}

static size_t dkey(int k, char *buf) { return (size_t)snprintf(buf, 16, "key-%d", k); }

typedef struct dval_arg {
  const char *v;
  size_t n;
} dval_arg;

/* shm_dict_update's callback: the value becomes ctx's. */
static int set_to(void *val, size_t *vlen, size_t cap, int present, void *ctx) {
  const dval_arg *a = ctx;
  (void)present;
  if (a->n > cap)
    return 99;
  memcpy(val, a->v, a->n);
  *vlen = a->n;
  return 0;
}

static int dict_workload(shm_dict *d, shm_dict *counts, shm_value *progress) {
  char k[16], v[64], out[64];
  for (int i = 0; i < NDOPS; i++) {
    const dop *o = &dops[i];
    size_t kl = dkey(o->key, k), vl = dval(o->val, v), n;
    int rc = 0;
    dval_arg ua = {v, vl};
    switch (o->kind) {
    case 's':
      rc = shm_dict_set(d, k, kl, v, vl);
      break;
    case 'u':
      rc = shm_dict_update(d, k, kl, set_to, &ua);
      break;
    case 'a':
      rc = shm_dict_add(counts, k, kl, &(long long){1}, NULL);
      break;
    case 'd':
      rc = shm_dict_del(d, k, kl);
      break;
    case 'p':
      rc = shm_dict_pop(d, k, kl, out, sizeof out, &n);
      break;
    case 'f':
      rc = shm_dict_setdefault(d, k, kl, v, vl, out, sizeof out, &n) < 0;
      break;
    case 'c':
      rc = shm_dict_clear(d);
      break;
    }
    if (rc != 0)
      return 20 + i;
    shm_value_add(progress, &(int){1}, NULL);
  }
  return 0;
}

/* The model: each key's value after the first @p done operations (-1: absent). */
static void dmodel(int done, int *val) {
  for (int k = 0; k < DKEYS; k++)
    val[k] = -1;
  for (int i = 0; i < done && i < NDOPS; i++) {
    const dop *o = &dops[i];
    if (o->kind == 's' || o->kind == 'u' || (o->kind == 'f' && val[o->key] < 0))
      val[o->key] = o->val;
    else if (o->kind == 'd' || o->kind == 'p')
      val[o->key] = -1;
    else if (o->kind == 'c')
      for (int k = 0; k < DKEYS; k++)
        val[k] = -1;
  }
}

/* The counter dict: adds of key @p key among the first @p done operations. */
static long long dadds(int done, int key) {
  long long c = 0;
  for (int i = 0; i < done && i < NDOPS; i++)
    c += dops[i].kind == 'a' && dops[i].key == key;
  return c;
}

/* Every counter at its count before or after operation @p done. */
static void expect_counts(shm_dict *counts, int done, long n) {
  for (int key = 0; key < DKEYS; key++) {
    char k[16];
    long long c = 0;
    int rc = shm_dict_get(counts, k, dkey(key, k), &c, sizeof c, NULL);
    if ((rc != 0 && rc != SHMVAL_ENOENT) || (c != dadds(done, key) && c != dadds(done + 1, key)))
      fail_msg("after a kill at step %ld (op %d): counter %s is %lld (%s)", n, done, k, c,
               shmval_err_name(rc));
  }
}

/* Every key at its value before or after operation @p done, the one in flight. */
static void expect_dict(shm_dict *d, int done, long n) {
  int before[DKEYS], after[DKEYS];
  dmodel(done, before);
  dmodel(done + 1, after);
  for (int key = 0; key < DKEYS; key++) {
    char k[16], v[64], want[64];
    size_t kl = dkey(key, k), vl = 0;
    int rc = shm_dict_get(d, k, kl, v, sizeof v, &vl), got = -2;
    if (rc == SHMVAL_ENOENT)
      got = -1;
    else if (rc != 0)
      fail_msg("after a kill at step %ld: get %s: %s", n, k, shmval_err_name(rc));
    for (int m = 0; m < 2 && got == -2; m++) {
      int x = m == 0 ? before[key] : after[key];
      if (x >= 0 && dval(x, want) == vl && memcmp(want, v, vl) == 0)
        got = x;
    }
    if (got != before[key] && got != after[key])
      fail_msg("after a kill at step %ld (op %d): %s is neither its old nor its new value", n, done,
               k);
  }
}

/* Refuse the update: taking the key's stripe is all that is wanted (it repairs). */
static int touch(void *val, size_t *vlen, size_t cap, int present, void *ctx) {
  (void)val, (void)vlen, (void)cap, (void)present, (void)ctx;
  return 1;
}

typedef struct dict_seen {
  bool in_resize; /* a kill with a resize's journal set */
  bool in_write;  /* a kill with a stripe's record complete */
} dict_seen;

static bool dict_round_at(long n, dict_seen *seen) {
  char name[96];
  shm_segment *seg;
  test_name(name, sizeof name, "crashdict");
  assert_ok(shm_segment_create(&seg, name, 64 << 10, &(shm_segment_opts){.max_size = 4 << 20}));
  shm_value *progress;
  shm_dict *d, *counts;
  assert_ok(
      shm_value_create(&progress, SHMVAL_INT, NULL,
                       &(shm_opts){.segment = seg, .name = "progress", .flags = SHMVAL_ATOMIC}));
  assert_ok(shm_dict_create(&d, 0, &(shm_opts){.segment = seg, .name = "d"}));
  assert_ok(shm_dict_create(&counts, SHMVAL_LLONG, &(shm_opts){.segment = seg, .name = "n"}));
  fragment(seg);
  shm_check_report r;
  assert_ok(shm_segment_check(seg, &r));
  size_t empty_used = r.used;
  pid_t pid = fork();
  if (pid == 0) {
    shmval__crash_countdown = n;
    _exit(dict_workload(d, counts, progress));
  }
  int st = reap(pid);
  assert_true(st == 0 || st == 128 + SIGKILL);
  shmval__dict *h = (shmval__dict *)(void *)shmval__payload(shmval__obj_of(d));
  seen->in_resize |= h->rs_new.word != 0 || h->rs_old.word != 0;
  for (unsigned i = 0; i < SHMVAL__DICT_STRIPES; i++)
    seen->in_write |= h->stripe[i].op != 0;

  /* Clean before any repair: what a dead writer left is named by its journals. */
  check_after_kill(seg, n, &r);
  assert_int_equal(r.leaked_blocks, 0);
  int done = 0;
  assert_ok(shm_value_get(progress, &done));
  if (st == 0)
    assert_int_equal(done, NDOPS);
  expect_dict(d, done, n);
  expect_counts(counts, done, n);
  /* Each key's stripe taken once repairs it (and a dead resizer's tables). */
  for (int key = 0; key < DKEYS; key++) {
    char k[16];
    assert_int_equal(shm_dict_update(d, k, dkey(key, k), touch, NULL), 1);
    assert_int_equal(shm_dict_update(counts, k, dkey(key, k), touch, NULL), 1);
  }
  expect_dict(d, done, n);
  expect_counts(counts, done, n);
  int rc = shm_segment_check(seg, &r);
  if (rc != 0 || r.leaked_blocks != 0)
    fail_msg("after a kill at step %ld and a repair: %s, %zu leaked (%s)", n, shmval_err_name(rc),
             r.leaked_blocks, r.problem != NULL ? r.problem : "");
  size_t len = 0, present = 0;
  assert_ok(shm_dict_len(d, &len));
  for (int key = 0; key < DKEYS; key++) {
    char k[16];
    present += (size_t)shm_dict_contains(d, k, dkey(key, k));
  }
  assert_int_equal(len, present);
  /* Emptied, nothing stays behind; and the whole workload runs again. */
  assert_ok(shm_dict_clear(d));
  assert_ok(shm_dict_clear(counts));
  assert_ok(shm_segment_check(seg, &r));
  if (r.used != empty_used)
    fail_msg("after a kill at step %ld: %zu bytes used by an empty dict, %zu before", n, r.used,
             empty_used);
  assert_ok(shm_value_set(progress, &(int){0}));
  assert_int_equal(dict_workload(d, counts, progress), 0);
  expect_dict(d, NDOPS, n);
  expect_counts(counts, NDOPS, n);
  assert_ok(shm_dict_destroy(d));
  assert_ok(shm_dict_destroy(counts));
  rc = shm_segment_check(seg, &r);
  if (rc != 0 || r.leaked_blocks != 0 || r.objects != 1 + 6)
    fail_msg("after a kill at step %ld and a destroy: %s, %zu leaked, %zu objects", n,
             shmval_err_name(rc), r.leaked_blocks, r.objects);
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
  return st == 0;
}

/*
 * A deleter killed after its slot became a tombstone, before it freed the
 * old entry; another stripe's writer then takes the tombstone for its own
 * key before anyone repairs the deleter's stripe. The repair must still see
 * the delete as done and free the entry (the torture found it leaked).
 */
static bool reuse_round(int attempt, bool *hit) {
  char name[96], key[32];
  shm_segment *seg;
  shm_dict *d;
  shm_check_report r;
  const char *big = "a value of more than sixteen bytes, in a block";
  test_name(name, sizeof name, "dictreuse");
  assert_ok(shm_segment_create(&seg, name, 1 << 20, NULL));
  assert_ok(shm_dict_create(&d, 0, &(shm_opts){.segment = seg, .name = "d"}));
  size_t kl = (size_t)snprintf(key, sizeof key, "victim-%d", attempt);
  assert_ok(shm_dict_set(d, key, kl, big, strlen(big)));
  shmval__dict *h = (shmval__dict *)(void *)shmval__payload(shmval__obj_of(d));
  bool found = false, more = true;
  int stripe = -1;
  for (long n = 1; !found && more; n++) {
    pid_t pid = fork();
    if (pid == 0) {
      shmval__crash_countdown = n;
      _exit(shm_dict_del(d, key, kl) == 0 ? 0 : 1);
    }
    int st = reap(pid);
    more = st == 128 + SIGKILL;
    for (unsigned i = 0; more && i < SHMVAL__DICT_STRIPES; i++) {
      shmval__dstripe *sp = &h->stripe[i];
      shmval__obj *t = (shmval__obj *)(void *)((char *)seg->base + h->tab);
      shmval__dslot *sl = (shmval__dslot *)(void *)shmval__payload(t);
      if (sp->op == 1 && sp->jold.word != 0 && sl[sp->slot].ctl == sp->new_ctl &&
          (sp->new_ctl & SHMVAL__DS_STATE) == SHMVAL__DS_TOMB) {
        found = true;
        stripe = (int)i;
      }
    }
    if (!found && more) {
      /* Not there yet: this kill's leftovers repaired (the key's stripe taken), and again. */
      assert_int_equal(shm_dict_update(d, key, kl, touch, NULL), 1);
      assert_ok(shm_dict_set(d, key, kl, big, strlen(big)));
    }
  }
  assert_true(found);
  /* Other keys until one of another stripe takes the tombstone first. */
  shmval__dstripe *sp = &h->stripe[stripe];
  shmval__obj *t = (shmval__obj *)(void *)((char *)seg->base + h->tab);
  shmval__dslot *slot = &((shmval__dslot *)(void *)shmval__payload(t))[sp->slot];
  for (int i = 0; i < 64 && sp->op == 1 && (slot->ctl & SHMVAL__DS_STATE) == SHMVAL__DS_TOMB; i++) {
    char k[16];
    assert_ok(shm_dict_set(d, k, (size_t)snprintf(k, sizeof k, "o%d", i), "v", 1));
  }
  *hit = sp->op == 1 && (slot->ctl & SHMVAL__DS_STATE) != SHMVAL__DS_TOMB;
  /* Repair every stripe (the check counts what the journals name as in use). */
  assert_ok(shm_dict_clear(d));
  int rc = shm_segment_check(seg, &r);
  if (rc != 0 || r.leaked_blocks != 0)
    fail_msg("a killed deleter's tombstone reused (attempt %d): %s, %zu leaked", attempt,
             shmval_err_name(rc), r.leaked_blocks);
  assert_int_equal(shm_dict_contains(d, key, kl), 0);
  assert_ok(shm_dict_destroy(d));
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
  return *hit;
}

static void test_dict_killed_delete_slot_reused(void **state) {
  (void)state;
  bool hit = false;
  int attempt;
  for (attempt = 0; attempt < 40 && !reuse_round(attempt, &hit); attempt++) {
  }
  print_message("the tombstone was taken by another stripe in attempt %d\n", attempt);
  assert_true(hit);
}

/* One round: a dict's destroyer killed after step @p n. True if it finished instead. */
static bool destroy_round_at(long n) {
  char name[96], k[16];
  shm_segment *seg;
  shm_dict *d;
  shm_check_report r;
  test_name(name, sizeof name, "crashdestroy");
  assert_ok(shm_segment_create(&seg, name, 1 << 20, NULL));
  assert_ok(shm_segment_check(seg, &r));
  size_t empty_used = r.used;
  assert_ok(shm_dict_create(&d, 0, &(shm_opts){.segment = seg, .name = "d"}));
  for (int i = 0; i < 12; i++)
    assert_ok(shm_dict_set(d, k, dkey(i, k), "a value long enough for a block", 31 - (size_t)i));
  pid_t pid = fork();
  if (pid == 0) {
    shmval__crash_countdown = n;
    _exit(shm_dict_destroy(d) == 0 ? 0 : 1);
  }
  int st = reap(pid);
  assert_true(st == 0 || st == 128 + SIGKILL);
  check_after_kill(seg, n, &r);
  /*
   * Left half-destroyed, it goes by name; destroyed, the name is gone; a
   * block the dead destroyer retired and did not free, its journal frees.
   */
  int rc = shm_object_remove(seg, "d");
  if (st == 0)
    assert_code(rc, SHMVAL_ENOENT);
  else if (rc != 0 && rc != SHMVAL_ENOENT)
    fail_msg("after a destroyer's kill at step %ld: remove: %s", n, shmval_err_name(rc));
  assert_ok(shm_segment_reclaim(seg, NULL, NULL));
  rc = shm_segment_check(seg, &r);
  if (rc != 0 || r.leaked_blocks != 0 || r.used != empty_used)
    fail_msg("after a destroyer's kill at step %ld: %s, %zu leaked, %zu bytes used (%zu empty)", n,
             shmval_err_name(rc), r.leaked_blocks, r.used, empty_used);
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
  return st == 0;
}

static void test_kill_at_every_destroy_step(void **state) {
  (void)state;
  long n;
  for (n = 1; n < 100000; n++)
    if (destroy_round_at(n))
      break;
  print_message("killed a dict's destroyer at each of its %ld steps\n", n - 1);
  assert_true(n > 12 * 4);
}

static void test_kill_at_every_dict_step(void **state) {
  (void)state;
  dict_seen seen = {false, false};
  long n;
  for (n = 1; n < 100000; n++)
    if (dict_round_at(n, &seen))
      break;
  print_message("killed a dict's writer at each of its %ld steps\n", n - 1);
  assert_true(n > NDOPS * 4);
  assert_true(seen.in_resize);
  assert_true(seen.in_write);
}

/* ------------------------------------------------------------------------ */
/* A list's writer killed at every step of append, insert, pop, set, remove,
 * reverse, clear, extend, sort and the batches (append_many, pop_many), and of
 * the grows and shrinks they cause. */

#define LMAX 64

typedef struct lop {
  char kind; /* bytes list: a append, f insert(0), i insert, p pop, s set, r remove, v reverse,
                c clear, m append_many 3, q pop_many 2 from the front, z from the back;
                typed list: A append, E extend 3, S sort, P pop, T set, M append_many 2,
                Q pop_many 2 from the front */
  int idx, val;
} lop;

static const lop lops[] = {
    {'a', 0, 1},  {'a', 0, 2},  {'a', 0, 3},  {'a', 0, 4},  {'a', 0, 5},  {'a', 0, 6},
    {'a', 0, 7},  {'a', 0, 8},  {'a', 0, 9},  {'a', 0, 10}, {'f', 0, 11}, {'i', 3, 12},
    {'s', 2, 13}, {'p', 0, 0},  {'p', -1, 0}, {'p', 4, 0},  {'r', 0, 7},  {'v', 0, 0},
    {'m', 0, 40}, {'q', 0, 0},  {'z', 0, 0},  {'E', 0, 30}, {'A', 0, 20}, {'M', 0, 50},
    {'Q', 0, 0},  {'S', 0, 0},  {'T', 1, 21}, {'P', 0, 0},  {'p', 0, 0},  {'p', 0, 0},
    {'p', 0, 0},  {'p', 0, 0},  {'p', 0, 0},  {'c', 0, 0},  {'a', 0, 14}, {'f', 0, 15},
    {'c', 0, 0},  {'a', 0, 16},
};
#define NLOPS ((int)(sizeof lops / sizeof lops[0]))

/* Item @p v's bytes: lengths 0, 3, 13 and 40 in turn. */
static size_t lval(int v, char *buf) {
  static const size_t lens[] = {3, 40, 0, 13};
  size_t n = lens[v % 4];
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)('a' + (v * 7 + (int)i) % 26);
  return n;
}

/* Items @p v, v+1, v+2 back to back in @p buf, their lengths in @p lens. */
static void lvals3(int v, char *buf, size_t *lens) {
  for (int k = 0; k < 3; k++) {
    lens[k] = lval(v + k, buf);
    buf += lens[k];
  }
}

static int list_workload(shm_list *l, shm_list *t, shm_value *progress) {
  char v[64], out[192], many[192];
  for (int i = 0; i < NLOPS; i++) {
    const lop *o = &lops[i];
    size_t vl = lval(o->val, v), n, lens[3];
    long x = o->val, xs[3] = {o->val + 2, o->val, o->val + 1}, two[2] = {o->val, o->val + 1};
    int rc = 0;
    switch (o->kind) {
    case 'a':
      rc = shm_list_append(l, v, vl);
      break;
    case 'f':
      rc = shm_list_insert(l, 0, v, vl);
      break;
    case 'i':
      rc = shm_list_insert(l, o->idx, v, vl);
      break;
    case 'p':
      rc = shm_list_pop(l, o->idx, out, sizeof out, &n);
      break;
    case 's':
      rc = shm_list_set(l, o->idx, v, vl);
      break;
    case 'r':
      rc = shm_list_remove(l, v, vl);
      break;
    case 'v':
      rc = shm_list_reverse(l);
      break;
    case 'c':
      rc = shm_list_clear(l);
      break;
    case 'm':
      lvals3(o->val, many, lens);
      rc = shm_list_append_many(l, many, lens, 3);
      break;
    case 'q':
    case 'z':
      rc = shm_list_pop_many(l, o->kind == 'q' ? 0 : -1, 2, 0, out, sizeof out, lens, &n);
      rc = rc == 0 && n != 2 ? -1 : rc;
      break;
    case 'M':
      rc = shm_list_append_many(t, two, NULL, 2);
      break;
    case 'Q':
      rc = shm_list_pop_many(t, 0, 2, 0, xs, sizeof xs, NULL, &n);
      rc = rc == 0 && n != 2 ? -1 : rc;
      break;
    case 'A':
      rc = shm_list_append(t, &x, sizeof x);
      break;
    case 'E':
      rc = shm_list_extend(t, xs, 3);
      break;
    case 'S':
      rc = shm_list_sort(t, NULL);
      break;
    case 'P':
      rc = shm_list_pop(t, o->idx, &x, sizeof x, &n);
      break;
    case 'T':
      rc = shm_list_set(t, o->idx, &x, sizeof x);
      break;
    }
    if (rc != 0)
      return 20 + i;
    shm_value_add(progress, &(int){1}, NULL);
  }
  return 0;
}

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

/* The model: both lists' items after the first @p done operations. */
static void lmodel(int done, int *b, int *nb, int *t, int *nt) {
  *nb = *nt = 0;
  for (int i = 0; i < done && i < NLOPS; i++) {
    const lop *o = &lops[i];
    int at = o->idx < 0 ? *nb + o->idx : o->idx;
    switch (o->kind) {
    case 'a':
      b[(*nb)++] = o->val;
      break;
    case 'f':
    case 'i':
      at = o->kind == 'f' ? 0 : at;
      memmove(&b[at + 1], &b[at], (size_t)(*nb - at) * sizeof *b);
      b[at] = o->val;
      ++*nb;
      break;
    case 'p':
      memmove(&b[at], &b[at + 1], (size_t)(*nb - at - 1) * sizeof *b);
      --*nb;
      break;
    case 's':
      b[at] = o->val;
      break;
    case 'r':
      for (int k = 0; k < *nb; k++)
        if (b[k] == o->val) {
          memmove(&b[k], &b[k + 1], (size_t)(*nb - k - 1) * sizeof *b);
          --*nb;
          break;
        }
      break;
    case 'v':
      for (int k = 0; k < *nb / 2; k++) {
        int x = b[k];
        b[k] = b[*nb - 1 - k];
        b[*nb - 1 - k] = x;
      }
      break;
    case 'c':
      *nb = 0;
      break;
    case 'm':
      for (int k = 0; k < 3; k++)
        b[(*nb)++] = o->val + k;
      break;
    case 'q':
      memmove(&b[0], &b[2], (size_t)(*nb - 2) * sizeof *b);
      *nb -= 2;
      break;
    case 'z':
      *nb -= 2;
      break;
    case 'A':
      t[(*nt)++] = o->val;
      break;
    case 'M':
      t[(*nt)++] = o->val;
      t[(*nt)++] = o->val + 1;
      break;
    case 'Q':
      memmove(&t[0], &t[2], (size_t)(*nt - 2) * sizeof *t);
      *nt -= 2;
      break;
    case 'E':
      t[(*nt)++] = o->val + 2;
      t[(*nt)++] = o->val;
      t[(*nt)++] = o->val + 1;
      break;
    case 'S':
      qsort(t, (size_t)*nt, sizeof *t, cmp_int);
      break;
    case 'P':
      memmove(&t[0], &t[1], (size_t)(*nt - 1) * sizeof *t);
      --*nt;
      break;
    case 'T':
      t[o->idx] = o->val;
      break;
    }
  }
}

/*
 * Whether the bytes list holds @p want[0..n) less some items: between @p lo
 * and @p n of them, the first ones (@p suffix false) or the last ones.
 */
static bool blist_is(shm_list *l, const int *want, int n, int lo, bool suffix) {
  size_t len;
  if (shm_list_len(l, &len) != 0 || len > (size_t)n || len < (size_t)lo)
    return false;
  const int *from = suffix ? want + (n - (int)len) : want;
  for (size_t i = 0; i < len; i++) {
    char got[64], exp[64];
    size_t gl;
    if (shm_list_get(l, (long)i, got, sizeof got, &gl) != 0)
      return false;
    size_t el = lval(from[i], exp);
    if (gl != el || memcmp(got, exp, el) != 0)
      return false;
  }
  return true;
}

/* As blist_is() for the typed list. */
static bool tlist_is(shm_list *t, const int *want, int n, int lo, bool suffix) {
  size_t len;
  long x[LMAX];
  if (shm_list_len(t, &len) != 0 || len > (size_t)n || len < (size_t)lo ||
      shm_list_read(t, 0, len, x) != 0)
    return false;
  const int *from = suffix ? want + (n - (int)len) : want;
  for (size_t i = 0; i < len; i++)
    if (x[i] != from[i])
      return false;
  return true;
}

/*
 * Both lists as before or after operation @p done, or part-way through the
 * operations that change one item at a time: a bytes clear (a prefix of the
 * items before), append_many (the items before and some of the new ones) and
 * pop_many (the items before less some from that end).
 */
static void expect_lists(shm_list *l, shm_list *t, int done, long n) {
  int b0[LMAX], b1[LMAX], t0[LMAX], t1[LMAX], nb0, nb1, nt0, nt1;
  lmodel(done, b0, &nb0, t0, &nt0);
  lmodel(done + 1, b1, &nb1, t1, &nt1);
  char k = done < NLOPS ? lops[done].kind : 0;
  bool bytes_ok = blist_is(l, b0, nb0, nb0, false) || blist_is(l, b1, nb1, nb1, false) ||
                  (k == 'c' && blist_is(l, b0, nb0, 0, false)) ||
                  (k == 'm' && blist_is(l, b1, nb1, nb0, false)) ||
                  (k == 'q' && blist_is(l, b0, nb0, nb1, true)) ||
                  (k == 'z' && blist_is(l, b0, nb0, nb1, false));
  if (!bytes_ok)
    fail_msg("after a kill at step %ld (op %d): the bytes list is neither before nor after", n,
             done);
  bool typed_ok = tlist_is(t, t0, nt0, nt0, false) || tlist_is(t, t1, nt1, nt1, false) ||
                  (k == 'Q' && tlist_is(t, t0, nt0, nt1, true));
  if (!typed_ok)
    fail_msg("after a kill at step %ld (op %d): the typed list is neither before nor after", n,
             done);
}

static bool list_round_at(long n, bool *in_change) {
  char name[96];
  shm_segment *seg;
  test_name(name, sizeof name, "crashlist");
  assert_ok(shm_segment_create(&seg, name, 64 << 10, &(shm_segment_opts){.max_size = 4 << 20}));
  shm_value *progress;
  shm_list *l, *t;
  assert_ok(
      shm_value_create(&progress, SHMVAL_INT, NULL,
                       &(shm_opts){.segment = seg, .name = "progress", .flags = SHMVAL_ATOMIC}));
  assert_ok(shm_list_create(&l, 0, &(shm_opts){.segment = seg, .name = "l"}));
  assert_ok(shm_list_create(&t, SHMVAL_LONG, &(shm_opts){.segment = seg, .name = "t"}));
  fragment(seg);
  shm_check_report r;
  assert_ok(shm_segment_check(seg, &r));
  size_t empty_used = r.used;
  pid_t pid = fork();
  if (pid == 0) {
    shmval__crash_countdown = n;
    _exit(list_workload(l, t, progress));
  }
  int st = reap(pid);
  assert_true(st == 0 || st == 128 + SIGKILL);
  shmval__list *h = (shmval__list *)(void *)shmval__payload(shmval__obj_of(l));
  shmval__list *ht = (shmval__list *)(void *)shmval__payload(shmval__obj_of(t));
  *in_change |= h->op != 0 || ht->op != 0;
  /* Clean before any repair: what a dead writer left is named by its journals. */
  check_after_kill(seg, n, &r);
  assert_int_equal(r.leaked_blocks, 0);
  int done = 0;
  assert_ok(shm_value_get(progress, &done));
  if (st == 0)
    assert_int_equal(done, NLOPS);
  /* The first call takes the lock and repairs; then every item is whole. */
  expect_lists(l, t, done, n);
  int rc = shm_segment_check(seg, &r);
  if (rc != 0 || r.leaked_blocks != 0)
    fail_msg("after a kill at step %ld and a repair: %s, %zu leaked (%s)", n, shmval_err_name(rc),
             r.leaked_blocks, r.problem != NULL ? r.problem : "");
  /* Emptied, nothing stays behind; and the whole workload runs again. */
  assert_ok(shm_list_clear(l));
  assert_ok(shm_list_clear(t));
  assert_ok(shm_segment_check(seg, &r));
  if (r.used != empty_used)
    fail_msg("after a kill at step %ld: %zu bytes used by empty lists, %zu before", n, r.used,
             empty_used);
  assert_ok(shm_value_set(progress, &(int){0}));
  assert_int_equal(list_workload(l, t, progress), 0);
  expect_lists(l, t, NLOPS, n);
  assert_ok(shm_list_destroy(l));
  assert_ok(shm_list_destroy(t));
  rc = shm_segment_check(seg, &r);
  if (rc != 0 || r.leaked_blocks != 0 || r.objects != 1 + 6)
    fail_msg("after a kill at step %ld and a destroy: %s, %zu leaked, %zu objects", n,
             shmval_err_name(rc), r.leaked_blocks, r.objects);
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
  return st == 0;
}

static void test_kill_at_every_list_step(void **state) {
  (void)state;
  bool in_change = false;
  long n;
  for (n = 1; n < 100000; n++)
    if (list_round_at(n, &in_change))
      break;
  print_message("killed a list's writer at each of its %ld steps\n", n - 1);
  assert_true(n > NLOPS * 3);
  assert_true(in_change);
}

/* A damaged list: refused (ECORRUPT) by calls and by check, never a crash or a stray write. */
static void test_list_damage(void **state) {
  (void)state;
  char name[96], buf[64];
  shm_segment *seg;
  shm_list *l;
  shm_check_report r;
  size_t n;
  test_name(name, sizeof name, "listdmg");
  assert_ok(shm_segment_create(&seg, name, 1 << 20, NULL));
  assert_ok(shm_list_create(&l, 0, &(shm_opts){.segment = seg, .name = "l"}));
  for (int i = 0; i < 10; i++)
    assert_ok(shm_list_append(l, "an item of some length", 5 + (size_t)i));
  assert_ok(shm_segment_check(seg, &r));
  shmval__list *h = (shmval__list *)(void *)shmval__payload(shmval__obj_of(l));
  /*
   * Journal words left set with nobody dead (the fuzzer's: a change freed
   * what they named, and marked "dead" a header that was not its ring).
   */
  shmval__obj *other = NULL;
  shm_value *v;
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, &(shm_opts){.segment = seg, .name = "v"}));
  other = shmval__obj_of(v);
  uint64_t other_blk = other->self_off - SHMVAL__OBJ_HDR_OFF;
  uint64_t *words[] = {&h->jold_ring.word, &h->jring.word, &h->jold.word, &h->jnew.word, &h->op};
  for (unsigned i = 0; i < 5; i++) {
    *words[i] = other_blk | (i < 3 ? SHMVAL__J_DESTROY : 0);
    assert_code(shm_list_append(l, "x", 1), SHMVAL_ECORRUPT);
    assert_code(shm_list_pop(l, 0, buf, sizeof buf, &n), SHMVAL_ECORRUPT);
    assert_int_equal(atomic_load(&other->magic), SHMVAL__OBJ_MAGIC);
    *words[i] = 0;
  }
  assert_ok(shm_value_set(v, &(int){7}));
  /* A ring offset into the middle of nowhere, a count past the ring. */
  uint64_t ring = h->ring, hc = h->hc;
  h->ring = ring + 8;
  assert_code(shm_list_get(l, 0, buf, sizeof buf, &n), SHMVAL_ECORRUPT);
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  assert_string_equal(r.problem, "a list's ring is damaged");
  h->ring = ring;
  h->hc = (hc & 0xffffffff) | (UINT64_C(1000) << 32);
  assert_code(shm_list_len(l, &n), SHMVAL_ECORRUPT);
  h->hc = hc;
  /* An item pointing at something that is not an entry. */
  shmval__obj *ro = (shmval__obj *)(void *)((char *)seg->base + ring);
  uint64_t *slot0 = (uint64_t *)(void *)((char *)ro + ro->payload_rel + 8 * (h->hc & 0xffffffff));
  uint64_t keep = *slot0;
  *slot0 = other_blk;
  assert_code(shm_list_get(l, 0, buf, sizeof buf, &n), SHMVAL_ECORRUPT);
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  assert_string_equal(r.problem, "a list item points to a damaged entry");
  *slot0 = keep;
  /*
   * A dead holder whose record cannot be applied (its ring is not a ring):
   * the list is marked broken, and its mutex stays recoverable (a try-lock
   * on a not-recoverable one would keep it locked: glibc).
   */
  pid_t pid = fork();
  if (pid == 0) {
    pthread_mutex_lock(&h->mu);
    h->op = 1;
    h->ring_after = 8;
    _exit(0);
  }
  assert_int_equal(reap(pid), 0);
  assert_code(shm_list_index(l, "x", 1, NULL), SHMVAL_ECORRUPT); /* takes the lock */
  assert_int_equal(h->broken, 1);
  assert_code(shm_list_append(l, "x", 1), SHMVAL_ECORRUPT);
  assert_true(h->mu.__data.__owner != INT_MAX - 1);
  h->broken = 0;
  h->op = 0;
  h->ring_after = 0;
  h->ver &= ~UINT64_C(1);
  assert_ok(shm_list_len(l, &n));
  /* A damaged image's not-recoverable mutex: refused, not tried (it would stay locked). */
  int owner = h->mu.__data.__owner;
  h->mu.__data.__owner = INT_MAX - 1;
  assert_code(shm_list_append(l, "x", 1), SHMVAL_ENOTRECOVERABLE);
  assert_int_equal(h->mu.__data.__lock, 0);
  h->mu.__data.__owner = owner;
  /* An item type that disagrees with the object's. */
  h->isize = 8;
  assert_code(shm_list_len(l, &n), SHMVAL_ECORRUPT);
  assert_code(shm_segment_check(seg, &r), SHMVAL_ECORRUPT);
  h->isize = 0;
  assert_ok(shm_list_len(l, &n));
  assert_int_equal(n, 10);
  assert_ok(shm_segment_check(seg, &r));
  assert_int_equal(r.leaked_blocks, 0);
  assert_ok(shm_list_destroy(l));
  assert_ok(shm_value_destroy(v));
  assert_ok(shm_segment_close(seg));
  assert_ok(shm_segment_unlink(name));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_check_args),
      cmocka_unit_test(test_shared_lock_not_leaked),
      cmocka_unit_test(test_check_finds_damage),
      cmocka_unit_test(test_cond_slot_damage),
      cmocka_unit_test(test_cond_waiter_killed_at_every_step),
      cmocka_unit_test(test_fuzz_finds),
      cmocka_unit_test(test_owner_death_wakeup_lost),
      cmocka_unit_test(test_new_attacher_reclaims),
      cmocka_unit_test(test_kill_during_rebuild),
      cmocka_unit_test(test_reclaim_spares_other_destroyer),
      cmocka_unit_test(test_unreturned_object),
      cmocka_unit_test(test_kill_during_takeover),
      cmocka_unit_test(test_kill_at_every_step),
      cmocka_unit_test(test_kill_at_every_grow_step),
      cmocka_unit_test(test_kill_at_every_dict_step),
      cmocka_unit_test(test_dict_damage),
      cmocka_unit_test(test_kill_at_every_destroy_step),
      cmocka_unit_test(test_dict_killed_delete_slot_reused),
      cmocka_unit_test(test_kill_at_every_list_step),
      cmocka_unit_test(test_list_damage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
