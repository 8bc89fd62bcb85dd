/*
 * word_count: N forked workers count the words of a text into one shared
 * dict with shm_dict_add() (Python's `counts[w] = counts.get(w, 0) + 1` on a
 * Manager dict, without the server); the parent prints the top 10 and the
 * time, beside the same count done by one process.
 *
 *   word_count [workers] [FILE]
 *
 * Without FILE the text is generated: 2 million words drawn from 5000.
 */
#include <shmval.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The whole text in memory: read from @p path, or made up. */
static char *load(const char *path, size_t *len) {
  if (path != NULL) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
      return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *t = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (t != NULL && fread(t, 1, (size_t)n, f) != (size_t)n) {
      free(t);
      t = NULL;
    }
    fclose(f);
    if (t != NULL) {
      t[n] = '\0';
      *len = (size_t)n;
    }
    return t;
  }
  static const char *syl[] = {"ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "da", "ve"};
  size_t cap = 2000000 * 12, n = 0;
  char *t = malloc(cap);
  unsigned r = 12345;
  for (int w = 0; t != NULL && w < 2000000; w++) {
    r = r * 1103515245u + 12345u;
    unsigned id = (r >> 8) % 5000, skew = (r >> 4) % 4; /* a few words are common */
    id = skew == 0 ? id % 20 : id;
    for (unsigned k = id + 1; k > 0; k /= 10)
      n += (size_t)snprintf(t + n, cap - n, "%s", syl[k % 10]);
    t[n++] = ' ';
  }
  if (t != NULL)
    t[n] = '\0';
  *len = n;
  return t;
}

/* Count the words of text[from, to) (word boundaries moved to whole words). */
static int count(shm_dict *d, const char *text, size_t len, size_t from, size_t to) {
  long one = 1;
  while (from > 0 && from < len && isalnum((unsigned char)text[from - 1]))
    from++;
  while (to < len && isalnum((unsigned char)text[to]))
    to++;
  for (size_t i = from; i < to;) {
    while (i < to && !isalnum((unsigned char)text[i]))
      i++;
    size_t s = i;
    while (i < len && isalnum((unsigned char)text[i]))
      i++;
    if (i > s && shm_dict_add(d, text + s, i - s, &one, NULL) != 0)
      return 1;
  }
  return 0;
}

typedef struct top {
  char word[64];
  long n;
} top;

static int keep_top(const void *key, size_t klen, const void *val, size_t vlen, void *ctx) {
  top *t = ctx;
  long n;
  (void)vlen;
  memcpy(&n, val, sizeof n);
  int i = 10;
  while (i > 0 && t[i - 1].n < n)
    i--;
  if (i == 10)
    return 0;
  memmove(&t[i + 1], &t[i], (size_t)(9 - i) * sizeof *t);
  size_t k = klen < sizeof t[i].word - 1 ? klen : sizeof t[i].word - 1;
  memcpy(t[i].word, key, k);
  t[i].word[k] = '\0';
  t[i].n = n;
  return 0;
}

/* Count with @p workers processes; the time taken, or a negative number. */
static double run(shm_dict **out, int workers, const char *text, size_t len) {
  shm_dict *d;
  if (shm_dict_create(&d, SHMVAL_LONG, NULL) != 0)
    return -1;
  double t0 = now();
  pid_t pid[64];
  for (int w = 0; w < workers; w++) {
    pid[w] = fork();
    if (pid[w] == 0)
      _exit(count(d, text, len, len * (size_t)w / (size_t)workers,
                  len * (size_t)(w + 1) / (size_t)workers));
  }
  int bad = 0;
  for (int w = 0; w < workers; w++) {
    int st;
    waitpid(pid[w], &st, 0);
    bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
  }
  *out = d;
  return bad ? -1 : now() - t0;
}

int main(int argc, char **argv) {
  int workers = argc > 1 ? atoi(argv[1]) : 4;
  size_t len;
  if (workers < 1 || workers > 64) {
    fprintf(stderr, "usage: word_count [workers (1..64)] [FILE]\n");
    return 2;
  }
  char *text = load(argc > 2 ? argv[2] : NULL, &len);
  if (text == NULL) {
    perror("word_count");
    return 1;
  }
  shm_dict *one, *many;
  double t1 = run(&one, 1, text, len), tn = run(&many, workers, text, len);
  if (t1 < 0 || tn < 0) {
    fprintf(stderr, "word_count: a worker failed\n");
    return 1;
  }
  top t[11] = {{{0}, 0}};
  size_t distinct = 0, distinct1 = 0;
  shm_dict_len(many, &distinct);
  shm_dict_len(one, &distinct1);
  shm_dict_foreach(many, keep_top, t);
  printf("%zu distinct words in %zu bytes\n", distinct, len);
  for (int i = 0; i < 10 && t[i].n > 0; i++) {
    long check = 0;
    shm_dict_get(one, t[i].word, strlen(t[i].word), &check, sizeof check, NULL);
    printf("%8ld  %s%s\n", t[i].n, t[i].word, check == t[i].n ? "" : "  (differs from 1 process!)");
  }
  printf("1 process: %.3f s; %d processes: %.3f s (%.2fx)\n", t1, workers, tn, t1 / tn);
  int same = distinct == distinct1;
  shm_dict_destroy(one);
  shm_dict_destroy(many);
  free(text);
  return same ? 0 : 1;
}
