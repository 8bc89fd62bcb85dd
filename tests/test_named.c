/*
 * Named objects in named segments: create, open by name with type checks,
 * remove, enumeration, locks and owner death, and a sweep of corrupted
 * segment images that must give errors, never crashes.
 */
#include "helpers.h"

#include "internal.h" /* only for the layout constants of the sweep */

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>

#define MIB ((size_t)1 << 20)

static char nbuf[128];
static shm_segment *seg;
static const char *seg_name;

static int setup(void **state) {
  (void)state;
  seg_name = test_name(nbuf, sizeof nbuf, "named");
  return shm_segment_create(&seg, seg_name, 8 * MIB, NULL);
}

static int teardown(void **state) {
  (void)state;
  return shm_segment_close(seg) || shm_segment_unlink(seg_name);
}

static void test_create_and_open(void **state) {
  (void)state;
  shm_value *v, *v2;
  shm_array *a, *a2;
  shm_segment *other;
  shm_opts o = {.segment = seg, .name = "counter"};
  assert_ok(shm_value_create(&v, SHMVAL_LONG, &(long){7}, &o));
  o.name = "samples";
  assert_ok(shm_array_create(&a, SHMVAL_DOUBLE, 100, NULL, &o));
  /* A second attachment (as another process would) finds both by name. */
  assert_ok(shm_segment_open(&other, seg_name, NULL));
  assert_ok(shm_value_open(&v2, other, "counter", SHMVAL_LONG));
  assert_ok(shm_array_open(&a2, other, "samples", SHMVAL_DOUBLE));
  long x = 0;
  assert_ok(shm_value_get(v2, &x));
  assert_int_equal(x, 7);
  assert_int_equal(shm_array_length(a2), 100);
  assert_ok(shm_array_set(a2, 99, &(double){2.5}));
  double d;
  assert_ok(shm_array_get(a, 99, &d));
  assert_true(d == 2.5);
  /* An exec'd program reads the Value too. */
  const char *args[] = {PEER_PATH, "get", seg_name, "counter", NULL};
  int to, from;
  char line[32];
  pid_t pid = start_peer(args, &to, &from);
  read_line(from, line, sizeof line);
  close(to);
  close(from);
  assert_int_equal(reap(pid), 0);
  assert_string_equal(line, "7");
  /* Any type is accepted with 0. */
  assert_ok(shm_value_open(&v2, other, "counter", (shm_type)0));
  assert_ok(shm_segment_close(other));
  assert_ok(shm_value_destroy(v));
  assert_ok(shm_array_destroy(a));
}

static void test_open_errors(void **state) {
  (void)state;
  shm_value *v;
  shm_array *a;
  shm_opts o = {.segment = seg, .name = "typed"};
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, &o));
  assert_code(shm_value_open(&v, seg, "typed", SHMVAL_LONG), SHMVAL_ETYPE);
  assert_code(shm_array_open(&a, seg, "typed", SHMVAL_INT), SHMVAL_ETYPE); /* not an Array */
  assert_code(shm_value_open(&v, seg, "missing", SHMVAL_INT), SHMVAL_ENOENT);
  assert_code(shm_value_open(&v, seg, "", SHMVAL_INT), SHMVAL_EINVAL);
  assert_code(shm_value_open(&v, NULL, "typed", SHMVAL_INT), SHMVAL_EINVAL);
  assert_code(shm_value_open(NULL, seg, "typed", SHMVAL_INT), SHMVAL_EINVAL);
  assert_code(shm_value_create(&v, SHMVAL_INT, NULL, &o), SHMVAL_EEXIST);
  char longname[300];
  memset(longname, 'n', sizeof longname);
  longname[256] = '\0';
  o.name = longname;
  assert_code(shm_value_create(&v, SHMVAL_INT, NULL, &o), SHMVAL_EINVAL);
  longname[255] = '\0';
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, &o)); /* SHMVAL_NAME_MAX bytes */
  assert_ok(shm_object_remove(seg, longname));
  shm_opts no_seg = {.name = "x"};
  assert_code(shm_value_create(&v, SHMVAL_INT, NULL, &no_seg), SHMVAL_EINVAL);
  assert_ok(shm_object_remove(seg, "typed"));
  assert_code(shm_object_remove(seg, "typed"), SHMVAL_ENOENT);
  assert_code(shm_object_remove(NULL, "typed"), SHMVAL_EINVAL);
}

static void test_remove_and_reuse(void **state) {
  (void)state;
  shm_value *v, *w;
  shm_opts o = {.segment = seg, .name = "tmp"};
  assert_ok(shm_value_create(&v, SHMVAL_INT, &(int){1}, &o));
  assert_ok(shm_value_destroy(v)); /* destroying by handle frees the name */
  assert_code(shm_value_open(&w, seg, "tmp", SHMVAL_INT), SHMVAL_ENOENT);
  assert_ok(shm_value_create(&v, SHMVAL_INT, &(int){2}, &o));
  assert_ok(shm_value_open(&w, seg, "tmp", SHMVAL_INT));
  /* Removal refuses while the lock is held, and changes nothing then. */
  assert_ok(shm_value_acquire(w));
  assert_code(shm_object_remove(seg, "tmp"), SHMVAL_EBUSY);
  assert_ok(shm_value_release(w));
  assert_ok(shm_object_remove(seg, "tmp"));
  assert_code(shm_value_get(v, &(int){0}), SHMVAL_ESTALE);
}

static void test_many_names(void **state) {
  (void)state;
  enum { N = 5000 };
  char name[32];
  shm_segment_info info;
  for (int i = 0; i < N; i++) {
    shm_value *v;
    snprintf(name, sizeof name, "obj-%d", i);
    shm_opts o = {.segment = seg, .name = name, .flags = SHMVAL_RAW};
    assert_ok(shm_value_create(&v, SHMVAL_INT, &i, &o));
  }
  assert_ok(shm_segment_stat(seg, &info));
  assert_int_equal(info.objects, N);
  for (int i = 0; i < N; i++) {
    shm_value *v;
    int x;
    snprintf(name, sizeof name, "obj-%d", i);
    assert_ok(shm_value_open(&v, seg, name, SHMVAL_INT));
    assert_ok(shm_value_get(v, &x));
    assert_int_equal(x, i);
  }
  for (int i = 0; i < N; i += 2) {
    snprintf(name, sizeof name, "obj-%d", i);
    assert_ok(shm_object_remove(seg, name));
  }
  for (int i = 0; i < N; i++) {
    shm_value *v;
    snprintf(name, sizeof name, "obj-%d", i);
    assert_code(shm_value_open(&v, seg, name, SHMVAL_INT), i % 2 ? 0 : SHMVAL_ENOENT);
    if (i % 2)
      assert_ok(shm_object_remove(seg, name));
  }
  assert_ok(shm_segment_stat(seg, &info));
  assert_int_equal(info.objects, 0);
}

struct seen {
  int values, arrays, unnamed, locked;
  size_t total_len;
};

static int count_obj(const shm_object_info *info, void *ctx) {
  struct seen *s = ctx;
  if (info->kind == SHMVAL_OBJ_VALUE)
    s->values++;
  else
    s->arrays++;
  if (info->name == NULL)
    s->unnamed++;
  s->locked += info->has_lock;
  s->total_len += info->length;
  return 0;
}

static int stop_at_first(const shm_object_info *info, void *ctx) {
  (void)info;
  (*(int *)ctx)++;
  return 42;
}

static void test_foreach(void **state) {
  (void)state;
  shm_value *v;
  shm_array *a, *u;
  shm_opts o = {.segment = seg, .name = "fe-v"};
  assert_ok(shm_value_create(&v, SHMVAL_INT, NULL, &o));
  o.name = "fe-a";
  o.flags = SHMVAL_RAW;
  assert_ok(shm_array_create(&a, SHMVAL_SHORT, 10, NULL, &o));
  shm_opts unnamed = {.segment = seg};
  assert_ok(shm_array_create(&u, SHMVAL_CHAR, 5, NULL, &unnamed));
  struct seen s = {0};
  assert_ok(shm_segment_foreach(seg, count_obj, &s));
  assert_int_equal(s.values, 1);
  assert_int_equal(s.arrays, 2);
  assert_int_equal(s.unnamed, 1);
  assert_int_equal(s.locked, 2);
  assert_int_equal(s.total_len, 16);
  int calls = 0;
  assert_int_equal(shm_segment_foreach(seg, stop_at_first, &calls), 42);
  assert_int_equal(calls, 1);
  assert_code(shm_segment_foreach(NULL, count_obj, &s), SHMVAL_EINVAL);
  assert_ok(shm_value_destroy(v));
  assert_ok(shm_array_destroy(a));
  assert_ok(shm_array_destroy(u));
}

/*
 * foreach against a peer that destroys and re-creates objects in the same
 * block (a double Value and a 2-int Array take blocks of one size): every
 * report is one object's, never a mix (each name spells its object's kind,
 * type and length), and it stays so while the callback runs.
 */
static shm_value *churn_stop;

/* Keep an object alive a moment, so that foreach lists it. */
static void hold(void) {
  for (volatile int i = 0; i < 20000; i++) {
  }
}

static int churn(void *arg) {
  (void)arg;
  shm_opts ov = {.segment = seg, .name = "v:d:1"}, oa = {.segment = seg, .name = "a:i:2"};
  while (__atomic_load_n((int *)shm_value_ptr(churn_stop), __ATOMIC_ACQUIRE) == 0) {
    shm_value *v;
    shm_array *a;
    if (shm_value_create(&v, SHMVAL_DOUBLE, NULL, &ov) != 0)
      return 1;
    hold();
    if (shm_value_destroy(v) != 0 || shm_array_create(&a, SHMVAL_INT, 2, NULL, &oa) != 0)
      return 2;
    hold();
    if (shm_array_destroy(a) != 0)
      return 3;
  }
  return 0;
}

struct mixes {
  long seen, mixed;
};

static int check_report(const shm_object_info *in, void *ctx) {
  struct mixes *m = ctx;
  char want[32];
  if (in->name == NULL)
    return 0;
  snprintf(want, sizeof want, "%c:%c:%zu", in->kind == SHMVAL_OBJ_VALUE ? 'v' : 'a', (char)in->type,
           in->length);
  m->seen++;
  for (int k = 0; k < 20; k++) {
    for (volatile int i = 0; i < 500; i++) {
    }
    __asm__ __volatile__("" ::: "memory"); /* read the name afresh each time */
    if (strcmp(in->name, want) != 0) {
      m->mixed++;
      break;
    }
  }
  return 0;
}

static void test_foreach_consistent_under_churn(void **state) {
  (void)state;
  struct mixes m = {0};
  assert_ok(shm_value_create(&churn_stop, SHMVAL_INT, NULL, &(shm_opts){.flags = SHMVAL_ATOMIC}));
  pid_t pid = spawn(churn, NULL);
  /* A second at least; on a loaded machine, until the peer has run (10 s at most). */
  double start = now_s();
  for (int i = 0; (i < 20000 && now_s() < start + 1.0) || (m.seen == 0 && now_s() < start + 10);
       i++)
    assert_ok(shm_segment_foreach(seg, check_report, &m));
  __atomic_store_n((int *)shm_value_ptr(churn_stop), 1, __ATOMIC_RELEASE);
  assert_int_equal(reap(pid), 0);
  assert_ok(shm_value_destroy(churn_stop));
  print_message("foreach under churn: %ld reports, %ld mixed\n", m.seen, m.mixed);
  assert_true(m.seen > 0);
  assert_int_equal(m.mixed, 0);
}

static void test_lock_sharing_rules(void **state) {
  (void)state;
  shm_value *host, *user, *arena_v, *x;
  shm_segment *other;
  const char *oname = test_name(nbuf + 64, 64, "other");
  shm_opts o = {.segment = seg, .name = "host"};
  assert_ok(shm_value_create(&host, SHMVAL_INT, NULL, &o));
  shm_opts share = {.segment = seg, .name = "user", .lock = shm_value_get_lock(host)};
  assert_ok(shm_value_create(&user, SHMVAL_INT, NULL, &share));
  assert_ptr_equal(shm_value_get_lock(user), shm_value_get_lock(host));
  /* Not across segments, nor between a segment and the default arena. */
  assert_ok(shm_segment_create(&other, oname, MIB, NULL));
  shm_opts across = {.segment = other, .lock = shm_value_get_lock(host)};
  assert_code(shm_value_create(&x, SHMVAL_INT, NULL, &across), SHMVAL_EINVAL);
  shm_opts to_arena = {.lock = shm_value_get_lock(host)};
  assert_code(shm_value_create(&x, SHMVAL_INT, NULL, &to_arena), SHMVAL_EINVAL);
  assert_ok(shm_value_create(&arena_v, SHMVAL_INT, NULL, NULL));
  shm_opts from_arena = {.segment = seg, .lock = shm_value_get_lock(arena_v)};
  assert_code(shm_value_create(&x, SHMVAL_INT, NULL, &from_arena), SHMVAL_EINVAL);
  assert_ok(shm_value_destroy(arena_v));
  assert_ok(shm_segment_close(other));
  assert_ok(shm_segment_unlink(oname));
  assert_ok(shm_value_destroy(host)); /* the lock lives on in "user" */
  assert_ok(shm_value_acquire(user));
  assert_ok(shm_value_release(user));
  assert_ok(shm_value_destroy(user));
}

static int die_holding(void *arg) {
  (void)arg;
  shm_segment *s;
  shm_value *v;
  if (shm_segment_open(&s, seg_name, NULL) != 0 || shm_value_open(&v, s, "guarded", 0) != 0 ||
      shm_value_acquire(v) != 0)
    return 1;
  raise(SIGKILL);
  return 2;
}

static void test_owner_death(void **state) {
  (void)state;
  shm_value *v;
  shm_opts o = {.segment = seg, .name = "guarded"};
  assert_ok(shm_value_create(&v, SHMVAL_LONG, NULL, &o));
  pid_t pid = spawn(die_holding, NULL);
  assert_int_equal(reap(pid), 128 + SIGKILL);
  long x;
  assert_code(shm_value_get(v, &x), SHMVAL_OWNERDEAD);
  assert_ok(shm_value_get(v, &x));
  assert_ok(shm_value_destroy(v));
}

static void test_full_segment(void **state) {
  (void)state;
  shm_segment *small;
  shm_array *a;
  const char *sname = test_name(nbuf + 64, 64, "small");
  assert_ok(shm_segment_create(&small, sname, 64 << 10, NULL));
  shm_opts o = {.segment = small, .name = "big"};
  assert_code(shm_array_create(&a, SHMVAL_UCHAR, 1 << 20, NULL, &o), SHMVAL_ENOSPC);
  assert_code(shm_array_open(&a, small, "big", 0), SHMVAL_ENOENT); /* nothing half-made */
  assert_ok(shm_segment_close(small));
  assert_ok(shm_segment_unlink(sname));
}

/*
 * Lookups take no lock: while one child grows and shrinks the directory
 * (resizes, tombstones, freed tables), others open names without pause. A
 * stable name must always be found with its value; a churning one must be
 * found or be absent, never anything else.
 */
#define STABLE 64
#define CHURN 3000

/* Each round adds CHURN new names and deletes them: tombstones pile up and
 * the table is rehashed again and again. "round" tells the readers which. */
static int churn_names(void *arg) {
  double until = now_s() + *(double *)arg;
  char name[32];
  shm_value *v, *round;
  if (shm_value_open(&round, seg, "round", SHMVAL_INT) != 0)
    return 1;
  for (int r = 0; now_s() < until; r++) {
    shm_value_set(round, &r);
    for (int k = r * CHURN; k < (r + 1) * CHURN; k++) {
      snprintf(name, sizeof name, "churn-%d", k);
      shm_opts o = {.segment = seg, .name = name, .flags = SHMVAL_RAW};
      if (shm_value_create(&v, SHMVAL_INT, &k, &o) != 0)
        return 1;
    }
    for (int k = r * CHURN; k < (r + 1) * CHURN; k++) {
      snprintf(name, sizeof name, "churn-%d", k);
      if (shm_object_remove(seg, name) != 0)
        return 2;
    }
  }
  return 0;
}

static int look_up_names(void *arg) {
  double until = now_s() + *(double *)arg;
  char name[32];
  long found = 0, lookups = 0;
  shm_value *v, *round;
  if (shm_value_open(&round, seg, "round", SHMVAL_INT) != 0)
    return 1;
  for (unsigned r = 1; now_s() < until; lookups++) {
    r = r * 1103515245u + 12345u;
    int i = (int)(r >> 8) % STABLE, x = -1, now = 0;
    snprintf(name, sizeof name, "stable-%d", i);
    if (shm_value_open(&v, seg, name, SHMVAL_INT) != 0 || shm_value_get(v, &x) != 0 || x != i)
      return 3;
    shm_value_get(round, &now);
    int k = now * CHURN + (int)(r >> 12) % CHURN;
    snprintf(name, sizeof name, "churn-%d", k);
    /* Its value is not checked: the writer may destroy it, and make
     * another in its block, between the open and a get. */
    int rc = shm_value_open(&v, seg, name, SHMVAL_INT);
    found += rc == 0;
    if (rc != 0 && rc != SHMVAL_ENOENT)
      return 5;
  }
  /* Enough lookups ran, and some of them met the churn. */
  return lookups < 1000 ? 6 : found == 0 ? 7 : 0;
}

static void test_lookups_race_directory_changes(void **state) {
  (void)state;
  char name[32];
  double secs = 0.6;
  shm_value *round;
  shm_opts ro = {.segment = seg, .name = "round", .flags = SHMVAL_ATOMIC};
  assert_ok(shm_value_create(&round, SHMVAL_INT, NULL, &ro));
  for (int i = 0; i < STABLE; i++) {
    shm_value *v;
    snprintf(name, sizeof name, "stable-%d", i);
    shm_opts o = {.segment = seg, .name = name, .flags = SHMVAL_RAW};
    assert_ok(shm_value_create(&v, SHMVAL_INT, &i, &o));
  }
  pid_t writer = spawn(churn_names, &secs);
  pid_t readers[2] = {spawn(look_up_names, &secs), spawn(look_up_names, &secs)};
  assert_int_equal(reap(writer), 0);
  assert_int_equal(reap(readers[0]), 0);
  assert_int_equal(reap(readers[1]), 0);
  for (int i = 0; i < STABLE; i++) {
    snprintf(name, sizeof name, "stable-%d", i);
    assert_ok(shm_object_remove(seg, name));
  }
  assert_ok(shm_object_remove(seg, "round"));
  shm_value *v;
  assert_code(shm_value_open(&v, seg, "churn-0", 0), SHMVAL_ENOENT);
}

/* In a child: take the directory lock, wreck the table, die holding the lock. */
static int wreck_directory(void *arg) {
  (void)arg;
  shmval__seg *base = seg->base;
  if (pthread_mutex_lock(&base->dir_lock) != 0)
    return 1;
  base->dir_gen |= 1; /* as a holder replacing the table does */
  shmval__obj *t = (shmval__obj *)(void *)((char *)base + base->dir_off);
  memset((char *)t + t->payload_rel, 0, (size_t)(t->length * t->elem_size));
  base->dir_count = 12345;
  _exit(0);
}

static void test_directory_rebuilt_after_owner_death(void **state) {
  (void)state;
  char name[32];
  for (int i = 0; i < 100; i++) {
    shm_value *v;
    snprintf(name, sizeof name, "keep-%d", i);
    shm_opts o = {.segment = seg, .name = name, .flags = SHMVAL_RAW};
    assert_ok(shm_value_create(&v, SHMVAL_INT, &i, &o));
  }
  pid_t pid = spawn(wreck_directory, NULL);
  assert_int_equal(reap(pid), 0);
  /* The next user of the directory rebuilds it from the live objects. */
  for (int i = 0; i < 100; i++) {
    shm_value *v;
    int x;
    snprintf(name, sizeof name, "keep-%d", i);
    assert_ok(shm_value_open(&v, seg, name, SHMVAL_INT));
    assert_ok(shm_value_get(v, &x));
    assert_int_equal(x, i);
  }
  assert_int_equal(seg->base->dir_count, 100);
  for (int i = 0; i < 100; i++) {
    snprintf(name, sizeof name, "keep-%d", i);
    assert_ok(shm_object_remove(seg, name));
  }
}

/* ------------------------------------------------------------------------ */
/* The corruption sweep. */

/*
 * Take @p l with a timeout: a corrupted lock word looks like a held lock, and
 * nothing can tell the two apart, so a careful reader of a suspect segment
 * waits a bounded time (as `shmval show --lock` does).
 */
static int careful(shm_lock *l) { return l == NULL || shm_lock_acquire_timeout(l, 0.2) >= 0; }

static void uncareful(shm_lock *l) {
  if (l != NULL)
    shm_lock_release(l);
}

static int walk_all(const shm_object_info *info, void *ctx) {
  (void)ctx;
  char buf[64];
  if (info->kind == SHMVAL_OBJ_VALUE) {
    shm_value *v = info->handle;
    shm_lock *l = shm_value_get_lock(v);
    if (shm_value_size(v) <= sizeof buf && careful(l)) {
      (void)shm_value_get(v, buf);
      uncareful(l);
    }
  } else {
    shm_array *a = info->handle;
    shm_lock *l = shm_array_get_lock(a);
    if (shm_array_elem_size(a) <= sizeof buf && shm_array_length(a) > 0 && careful(l)) {
      (void)shm_array_get(a, shm_array_length(a) - 1, buf);
      uncareful(l);
    }
  }
  return 0;
}

/* In a child: open the image as a segment and use everything it names. */
static int use_image(void *arg) {
  const char *name = arg;
  shm_segment *s;
  shm_value *v;
  shm_array *a;
  shm_segment_info info;
  alarm(10); /* a hang fails the test too */
  shm_segment_opts o = {.timeout = -1};
  (void)shm_segment_inspect(name, &info);
  if (shm_segment_open(&s, name, &o) != 0)
    return 0;
  (void)shm_segment_stat(s, &info);
  (void)shm_segment_foreach(s, walk_all, NULL);
  char buf[64];
  if (shm_value_open(&v, s, "v", 0) == 0 && shm_value_size(v) <= sizeof buf &&
      careful(shm_value_get_lock(v))) {
    (void)shm_value_get(v, buf);
    uncareful(shm_value_get_lock(v));
  }
  if (shm_array_open(&a, s, "a", 0) == 0 && shm_array_elem_size(a) <= 8 &&
      careful(shm_array_get_lock(a))) {
    (void)shm_array_read(a, 0, shm_array_length(a) < 8 ? shm_array_length(a) : 8, buf);
    uncareful(shm_array_get_lock(a));
  }
  if (shm_array_open(&a, s, "s", 0) == 0 && careful(shm_array_get_lock(a))) {
    (void)shm_array_get_string(a, buf, sizeof buf);
    uncareful(shm_array_get_lock(a));
  }
  shm_segment_close(s);
  return 0;
}

static void test_corruption_sweep(void **state) {
  (void)state;
  shm_segment *s;
  shm_value *v;
  shm_array *a;
  char iname[64], cname[64];
  test_name(iname, sizeof iname, "img");
  test_name(cname, sizeof cname, "corrupt");
  /* A small segment with a few objects of every shape. */
  assert_ok(shm_segment_create(&s, iname, 64 << 10, NULL));
  shm_opts o = {.segment = s, .name = "v"};
  assert_ok(shm_value_create(&v, SHMVAL_LONG, &(long){1}, &o));
  o.name = "a";
  assert_ok(shm_array_create(&a, SHMVAL_INT, 100, NULL, &o));
  o.name = "s";
  o.flags = SHMVAL_RAW;
  assert_ok(shm_array_create(&a, SHMVAL_CHAR, 16, (char[16]){"text"}, &o));
  for (int i = 0; i < 40; i++) {
    char n[16];
    snprintf(n, sizeof n, "x%d", i);
    shm_opts xo = {.segment = s, .name = n, .flags = SHMVAL_RAW};
    assert_ok(shm_value_create(&v, SHMVAL_INT, &i, &xo));
  }
  assert_ok(shm_segment_close(s));
  size_t len = 64 << 10;
  /* Static, so that forked children (valgrind checks them for leaks too) can reach them. */
  static unsigned char *img, *copy;
  img = malloc(len);
  copy = malloc(len);
  int fd = shm_open(iname, O_RDONLY, 0);
  assert_int_equal(read(fd, img, len), (ssize_t)len);
  close(fd);
  assert_ok(shm_segment_unlink(iname));
  /*
   * Flip bytes anywhere but in the two mutexes of the header (a corrupted lock
   * word is indistinguishable from a held lock: see the README): header
   * fields, the directory, the attacher table, object headers and payloads.
   */
  size_t locks_lo = offsetof(shmval__seg, heap_lock);
  size_t locks_hi = offsetof(shmval__seg, dir_lock) + sizeof(pthread_mutex_t);
  uint64_t r = 0x1234567;
  int opened_ok = 0, iters = 400;
  const char *env = getenv("SHMVAL_SWEEP_ITERS"); /* longer runs by hand */
  if (env != NULL && atoi(env) > 0)
    iters = atoi(env);
  for (int iter = 0; iter < iters; iter++) {
    memcpy(copy, img, len);
    int flips = 1 + (int)(iter % 4);
    for (int f = 0; f < flips; f++) {
      r = r * 6364136223846793005u + 1442695040888963407u;
      size_t at = (size_t)(r >> 33) % 12288; /* header, tables and the first objects */
      if (at >= locks_lo && at < locks_hi)
        continue; /* the header's two mutexes */
      copy[at] ^= (unsigned char)(1u << ((r >> 20) % 8));
    }
    if (iter % 50 == 49) /* and truncations */
      len = (size_t)(r >> 40) % (64 << 10);
    int cfd = shm_open(cname, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(cfd >= 0);
    assert_int_equal(write(cfd, copy, len), (ssize_t)len);
    close(cfd);
    len = 64 << 10;
    pid_t pid = spawn(use_image, cname);
    int rc = reap(pid);
    if (rc != 0)
      fail_msg("iteration %d: the child died with status %d", iter, rc);
    opened_ok++;
    shm_unlink(cname);
  }
  assert_int_equal(opened_ok, iters);
  free(img);
  free(copy);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_and_open),
      cmocka_unit_test(test_open_errors),
      cmocka_unit_test(test_remove_and_reuse),
      cmocka_unit_test(test_many_names),
      cmocka_unit_test(test_foreach),
      cmocka_unit_test(test_foreach_consistent_under_churn),
      cmocka_unit_test(test_lock_sharing_rules),
      cmocka_unit_test(test_owner_death),
      cmocka_unit_test(test_full_segment),
      cmocka_unit_test(test_lookups_race_directory_changes),
      cmocka_unit_test(test_directory_rebuilt_after_owner_death),
      cmocka_unit_test(test_corruption_sweep),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
