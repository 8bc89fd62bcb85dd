/*
 * libFuzzer harnesses whose input is a segment image: the bytes of a
 * /dev/shm file. Each input is written to a fresh named segment file and
 * handed to the library the way another process's segment would be.
 *
 *   fuzz_attach   (FUZZ_ATTACH): open it read-write (which reclaims its slot's
 *                 journal), run the integrity check, visit every object (take
 *                 and release its lock, read and write its value), open
 *                 objects by name, allocate (enough to grow a growable image)
 *                 and free, reclaim every journal.
 *   fuzz_inspect  (otherwise): describe it without attaching, open it
 *                 read-only, list and read its objects, look names up.
 *
 * Built with clang -fsanitize=fuzzer,address,undefined (cmake -DSHMVAL_FUZZ=ON).
 * The seed corpus is made from real segments by make_seeds.
 *
 * One thing is not fuzzed: the two pthread mutexes of the segment header are
 * replaced by fresh ones before each run. A mutex word that says "held by
 * thread 1234" cannot be told from a mutex really held by a live thread, and
 * waiting for it is what any process must do, so such an image would only
 * test that the harness waits forever. The objects' own locks are fuzzed: the
 * harness only ever tries them (shm_lock_try_acquire never waits).
 */
#include <shmval.h>

#include "internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_IMAGE (1u << 20)

static char seg_name[64];
static unsigned char buf[1 << 16];
static pthread_mutex_t template_mutex;

static void make_template(void) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&template_mutex, &a);
  pthread_mutexattr_destroy(&a);
  snprintf(seg_name, sizeof seg_name, "/shmval-fuzz-%d", (int)getpid());
}

/* Write the image to the segment file; 0 on success. */
static int write_image(const uint8_t *data, size_t size) {
  int fd = shm_open(seg_name, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0)
    return -1;
  int rc = ftruncate(fd, (off_t)size) == 0 && pwrite(fd, data, size, 0) == (ssize_t)size ? 0 : -1;
  size_t lo = offsetof(shmval__seg, heap_lock), hi = offsetof(shmval__seg, dir_lock);
  if (rc == 0 && size >= hi + sizeof(pthread_mutex_t)) {
    (void)!pwrite(fd, &template_mutex, sizeof template_mutex, (off_t)lo);
    (void)!pwrite(fd, &template_mutex, sizeof template_mutex, (off_t)hi);
  }
  close(fd);
  return rc;
}

/* Read an object through its handle; write it back when @p rw. */
static void touch_value(shm_value *v, bool rw) {
  size_t n = shm_value_size(v);
  shm_lock *l = shm_value_get_lock(v);
  if (n == 0 || n > sizeof buf)
    return;
  int rc = l != NULL && rw ? shm_lock_try_acquire(l) : 0;
  if (rc != 0 && rc != SHMVAL_OWNERDEAD)
    return;
  /* A changed value is written back: a payload laid over a lock must not pass unnoticed. */
  if (shm_value_get(v, buf) == 0 && rw && (buf[0] ^= 0x5a, true))
    (void)shm_value_set(v, buf);
  if (l != NULL && rw)
    (void)shm_lock_release(l);
}

static void touch_array(shm_array *a, bool rw) {
  size_t len = shm_array_length(a), es = shm_array_elem_size(a);
  shm_lock *l = shm_array_get_lock(a);
  if (len == 0 || es == 0 || es > sizeof buf)
    return;
  int rc = l != NULL && rw ? shm_lock_try_acquire(l) : 0;
  if (rc != 0 && rc != SHMVAL_OWNERDEAD)
    return;
  size_t count = sizeof buf / es < len ? sizeof buf / es : len;
  (void)shm_array_get(a, len - 1, buf);
  if (shm_array_read(a, 0, count, buf) == 0 && rw && (buf[0] ^= 0x5a, true))
    (void)shm_array_write(a, 0, count, buf);
  if (shm_array_type(a) == SHMVAL_CHAR)
    (void)shm_array_get_string(a, (char *)buf, sizeof buf);
  if (l != NULL && rw)
    (void)shm_lock_release(l);
}

/*
 * A Condition: with its lock taken (only tried), a wait that gives up at once
 * takes a waiter slot and leaves it, and a notify probes every slot's mutex.
 */
static void touch_cond(shm_cond *cv, bool rw) {
  shm_lock *l = shm_cond_get_lock(cv);
  if (!rw || l == NULL || shm_lock_try_acquire(l) < 0)
    return;
  (void)shm_cond_wait(cv, 0);
  (void)shm_cond_notify(cv, 1);
  (void)shm_cond_notify_all(cv);
  (void)shm_lock_release(l);
}

static int count_item(const void *k, size_t kl, const void *v, size_t vl, void *ctx) {
  (void)k, (void)v;
  *(size_t *)ctx += kl + vl;
  return 0;
}

/* shm_dict_update's callback: the value stays as it is. */
static int keep_value(void *val, size_t *vlen, size_t cap, int present, void *ctx) {
  (void)val, (void)vlen, (void)cap, (void)present, (void)ctx;
  return 0;
}

/*
 * A dict: lock-free reads of whatever the image holds; with @p rw, writes
 * too, its mutexes first replaced by sound ones (as the segment's own are by
 * write_image(): a mutex image that claims a live owner would block).
 */
static void touch_dict(shm_dict *d, bool rw) {
  char k[16];
  size_t n = 0;
  if (rw) {
    shmval__dict *dh = (shmval__dict *)(void *)shmval__payload(shmval__obj_of(d));
    memcpy(&dh->rs_mu, &template_mutex, sizeof template_mutex);
    for (unsigned i = 0; i < SHMVAL__DICT_STRIPES; i++)
      memcpy(&dh->stripe[i].mu, &template_mutex, sizeof template_mutex);
  }
  for (int i = 0; i < 16; i++) {
    size_t kl = (size_t)snprintf(k, sizeof k, "k%d", i);
    (void)shm_dict_get(d, k, kl, buf, sizeof buf, &n);
    (void)shm_dict_contains(d, k, kl);
  }
  (void)shm_dict_len(d, &n);
  (void)shm_dict_foreach(d, count_item, &n);
  if (!rw)
    return;
  size_t vs = 0;
  shm_type t = shm_dict_value_type(d, &vs);
  memset(buf, 0x5a, 64);
  for (int i = 0; i < 24; i++) {
    size_t kl = (size_t)snprintf(k, sizeof k, "k%d", i);
    if (t == 0)
      (void)shm_dict_set(d, k, kl, buf, (size_t)(i * 7) % 60);
    else if (vs <= 64)
      (void)shm_dict_set(d, k, kl, buf, vs);
    if (t != 0 && t != SHMVAL_RECORD)
      (void)shm_dict_add(d, k, kl, buf, NULL);
  }
  (void)shm_dict_del(d, "k3", 2);
  (void)shm_dict_pop(d, "k4", 2, buf, sizeof buf, &n);
  size_t dl = t == 0 ? 40 : vs; /* a record size is image bytes: within buf only */
  if (dl <= 64)
    (void)shm_dict_setdefault(d, "k5", 2, buf, dl, buf, sizeof buf, &n);
  (void)shm_dict_update(d, "k6", 2, keep_value, NULL);
  (void)shm_dict_foreach(d, count_item, &n);
  (void)shm_dict_clear(d);
  if (dl <= 64)
    (void)shm_dict_set(d, "k7", 2, buf, dl);
  (void)shm_dict_destroy(d);
}

static int count_list_item(size_t i, const void *item, size_t len, void *ctx) {
  (void)i, (void)item;
  *(size_t *)ctx += len;
  return 0;
}

/* A list: reads of whatever the image holds; with @p rw, every write too (mutex replaced). */
static void touch_list(shm_list *l, bool rw) {
  size_t n = 0, at;
  if (rw) {
    shmval__list *lh = (shmval__list *)(void *)shmval__payload(shmval__obj_of(l));
    memcpy(&lh->mu, &template_mutex, sizeof template_mutex);
  }
  for (long i = -3; i < 8; i++)
    (void)shm_list_get(l, i, buf, sizeof buf, &n);
  (void)shm_list_len(l, &n);
  (void)shm_list_foreach(l, count_list_item, &n);
  (void)shm_list_index(l, buf, 8, &at);
  size_t is = 0;
  shm_type t = shm_list_item_type(l, &is);
  if (t != 0 && is <= 8)
    (void)shm_list_read(l, 0, 8, buf);
  if (!rw)
    return;
  size_t il = t == 0 ? 24 : is; /* a record size is image bytes: within buf only */
  memset(buf, 0x5a, 64);
  for (int i = 0; il <= 64 && i < 12; i++) {
    (void)shm_list_append(l, buf, t == 0 ? (size_t)(i * 7) % 60 : il);
    (void)shm_list_insert(l, i % 3 == 0 ? 0 : 2, buf, il);
  }
  (void)shm_list_pop(l, 0, buf, sizeof buf, &n);
  (void)shm_list_pop(l, -1, buf, sizeof buf, &n);
  (void)shm_list_pop(l, 3, buf, sizeof buf, &n);
  (void)shm_list_pop_wait(l, 0, 0, buf, sizeof buf, &n);
  if (il <= 64) {
    (void)shm_list_set(l, 1, buf, il);
    (void)shm_list_remove(l, buf, il);
  }
  (void)shm_list_reverse(l);
  if (t != 0 && t != SHMVAL_RECORD)
    (void)shm_list_sort(l, NULL);
  if (t != 0 && is <= 8)
    (void)shm_list_extend(l, buf, 8);
  if (il <= 16) {
    size_t lens[4] = {il, il, il, il}, got[4], k;
    (void)shm_list_append_many(l, buf, t == 0 ? lens : NULL, 4);
    (void)shm_list_pop_many(l, 0, 3, 0, buf, sizeof buf, got, &k);
    (void)shm_list_pop_many(l, -1, 4, 0, buf, sizeof buf, got, &k);
  }
  (void)shm_list_foreach(l, count_list_item, &n);
  (void)shm_list_clear(l);
  (void)shm_list_destroy(l);
}

typedef struct visit_ctx {
  shm_segment *seg;
  bool rw;
} visit_ctx;

static int visit(const shm_object_info *i, void *arg) {
  visit_ctx *c = arg;
  void *h = NULL;
  switch (i->kind) {
  case SHMVAL_OBJ_VALUE:
    touch_value(i->handle, c->rw);
    if (i->name != NULL && shm_value_open((shm_value **)&h, c->seg, i->name, 0) == 0)
      touch_value(h, c->rw);
    break;
  case SHMVAL_OBJ_ARRAY:
    touch_array(i->handle, c->rw);
    if (i->name != NULL && shm_array_open((shm_array **)&h, c->seg, i->name, 0) == 0)
      touch_array(h, c->rw);
    break;
  case SHMVAL_OBJ_LOCK:
    if (c->rw && shm_lock_try_acquire(i->handle) >= 0)
      (void)shm_lock_release(i->handle);
    break;
  case SHMVAL_OBJ_COND:
    touch_cond(i->handle, c->rw);
    break;
  case SHMVAL_OBJ_DICT:
    touch_dict(i->handle, c->rw);
    break;
  case SHMVAL_OBJ_LIST:
    touch_list(i->handle, c->rw);
    break;
  default:
    break;
  }
  return 0;
}

#ifdef FUZZ_ATTACH
static void run(void) {
  shm_segment *seg;
  shm_segment_opts o = {.timeout = -1};
  if (shm_segment_open(&seg, seg_name, &o) != 0)
    return;
  shm_check_report r;
  (void)shm_segment_check(seg, &r);
  visit_ctx c = {.seg = seg, .rw = true};
  (void)shm_segment_foreach(seg, visit, &c);
  /* The allocator and the directory, on whatever lists the image holds. */
  shm_value *v, *n;
  shm_array *a;
  shm_opts uo = {.segment = seg}, no = {.segment = seg, .name = "fuzz-new"};
  if (shm_value_create(&v, SHMVAL_INT, NULL, &uo) == 0)
    (void)shm_value_destroy(v);
  if (shm_array_create(&a, SHMVAL_DOUBLE, 300, NULL, &uo) == 0)
    (void)shm_array_destroy(a);
  /* Bigger than what most images have free: a growable one grows (its sizes are image bytes). */
  if (shm_array_create(&a, SHMVAL_CHAR, 24000, NULL, &uo) == 0)
    (void)shm_array_destroy(a);
  if (shm_value_create(&n, SHMVAL_LLONG, NULL, &no) == 0)
    (void)shm_value_destroy(n);
  (void)shm_object_remove(seg, "x");
  /* The attacher table's journals are bytes from the image too. */
  size_t blocks, bytes;
  (void)shm_segment_reclaim(seg, &blocks, &bytes);
  (void)shm_segment_check(seg, &r);
  shm_segment_info info;
  (void)shm_segment_stat(seg, &info);
  shm_segment_close(seg);
}
#else
static void run(void) {
  shm_segment_info info;
  shm_segment *seg;
  (void)shm_segment_inspect(seg_name, &info);
  shm_segment_opts o = {.flags = SHMVAL_RDONLY, .timeout = -1};
  if (shm_segment_open(&seg, seg_name, &o) != 0)
    return;
  (void)shm_segment_stat(seg, &info);
  visit_ctx c = {.seg = seg, .rw = false};
  (void)shm_segment_foreach(seg, visit, &c);
  shm_value *v;
  (void)shm_value_open(&v, seg, "x", 0);
  shm_segment_close(seg);
}
#endif

/*
 * The library must let go of every mutex it took before an operation
 * returns, whatever the image held: a mutex left on the thread's robust list
 * (held, or its word overwritten while held so that unlocking it failed)
 * sends glibc's next lock call writing into memory that is unmapped by then.
 * The kernel's view of the list tells: empty, its head points to itself.
 */
struct robust_entry {
  struct robust_entry *next;
};

static void assert_no_lock_held(void) {
  struct robust_entry *head = NULL;
  size_t len = 0;
  if (syscall(SYS_get_robust_list, 0, &head, &len) != 0 || head == NULL)
    return;
  if (head->next != head) {
    fprintf(stderr, "fuzz harness: a mutex is still on the robust list after the run\n");
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, make_template);
  if (size == 0 || size > MAX_IMAGE)
    return 0;
  if (write_image(data, size) == 0)
    run();
  shm_unlink(seg_name);
  assert_no_lock_held();
  return 0;
}
