/*
 * shmval: list, show, remove and collect libshmval segments in /dev/shm.
 * Uses the public API only.
 */
#include <shmval.h>

#include <ctype.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <wchar.h>

#define SHM_DIR "/dev/shm"

/* One command: its synopsis (after "shmval "), a one-line summary and details. */
typedef struct command {
  const char *name, *synopsis, *summary, *details;
  int (*run)(const struct command *cmd, int argc, char **argv);
} command;

static const char overview[] =
    "usage: shmval COMMAND [OPTIONS] [ARGS]\n"
    "       shmval help [COMMAND] | --help | --version\n"
    "\n"
    "Inspect and clean up libshmval shared-memory segments in " SHM_DIR ".\n"
    "\n"
    "Commands:\n";

static const char overview_end[] =
    "\n"
    "'shmval help COMMAND' or 'shmval COMMAND --help' describes a command.\n"
    "SEGMENT is a segment's name, with or without its leading '/'.\n"
    "Exit status: 0 success; 1 an operation failed (for check: the segment is\n"
    "corrupt); 2 a usage error. See shmval(1).\n";

/* A mistake on the command line: one line saying what, one with the usage. */
static int usage_error(const command *cmd, const char *fmt, const char *arg) {
  fprintf(stderr, "shmval: ");
  fprintf(stderr, fmt, arg);
  if (cmd != NULL)
    fprintf(stderr, "\nusage: shmval %s\nTry 'shmval help %s' for more information.\n",
            cmd->synopsis, cmd->name);
  else
    fprintf(stderr, "\nTry 'shmval help' for the list of commands.\n");
  return 2;
}

/* Why a named segment could not be opened or removed, in words for this tool. */
static int seg_error(const char *name, int rc) {
  const char *why = rc == SHMVAL_ENOENT ? "no such segment" : shmval_strerror(rc);
  fprintf(stderr, "shmval: %s: %s\n", name, why);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Output helpers. */

static void json_string(const char *s) {
  putchar('"');
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20 || c == 0x7f)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

/*
 * @p s for a text table: bytes that would break the line or the terminal
 * (control characters, DEL) shown as \xNN. A static buffer: one at a time.
 */
static const char *text_name(const char *s) {
  static char buf[4 * 256 + 1];
  size_t n = 0;
  for (; *s != '\0' && n + 5 < sizeof buf; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 || c == 0x7f)
      n += (size_t)snprintf(buf + n, sizeof buf - n, "\\x%02x", c);
    else
      buf[n++] = (char)c;
  }
  buf[n] = '\0';
  return buf;
}

static const char *state_name(shm_segment_state st) {
  switch (st) {
  case SHMVAL_SEG_OK:
    return "ok";
  case SHMVAL_SEG_UNINIT:
    return "uninitialised";
  case SHMVAL_SEG_ORPHANED:
    return "orphaned";
  default:
    return "corrupt";
  }
}

static void human_size(size_t n, char *buf, size_t cap) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  snprintf(buf, cap, u == 0 ? "%.0f%s" : "%.1f%s", v, units[u]);
}

/* Call @p fn with the name of every entry of /dev/shm that is a libshmval segment. */
static int for_each_segment(int (*fn)(const shm_segment_info *, void *), void *ctx) {
  DIR *d = opendir(SHM_DIR);
  if (d == NULL) {
    perror("shmval: " SHM_DIR);
    return 1;
  }
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    shm_segment_info info;
    if (e->d_name[0] == '.' || strchr(e->d_name, '/') != NULL)
      continue;
    int r = shm_segment_inspect(e->d_name, &info);
    if (r == SHMVAL_ENOTSHMVAL || r == SHMVAL_ENOENT)
      continue; /* not ours, or gone meanwhile */
    if (r != 0) {
      fprintf(stderr, "shmval: /%s: %s\n", e->d_name, shmval_strerror(r));
      rc = 1;
      continue;
    }
    rc |= fn(&info, ctx);
  }
  closedir(d);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* ls */

typedef struct ls_ctx {
  bool json;
  int count;
} ls_ctx;

static int ls_one(const shm_segment_info *i, void *arg) {
  ls_ctx *c = arg;
  const char *policy = i->flags & SHMVAL_AUTO_UNLINK ? "auto-unlink" : "persist";
  if (c->json) {
    printf("%s\n  {\"name\": ", c->count ? "," : "");
    json_string(i->name);
    printf(", \"size\": %zu, \"max_size\": %zu, \"used\": %zu, \"objects\": %zu, "
           "\"attached\": %u, \"policy\": \"%s\", \"mode\": \"%04o\", \"state\": \"%s\"",
           i->size, i->max_size, i->used, i->objects, i->attached, policy, i->mode,
           state_name(i->state));
    if (i->state == SHMVAL_SEG_CORRUPT)
      printf(", \"error\": \"%s\"", shmval_err_name(i->error));
    printf("}");
  } else {
    char size[32], max[32], used[32];
    human_size(i->size, size, sizeof size);
    human_size(i->max_size, max, sizeof max);
    human_size(i->used, used, sizeof used);
    printf("%-32s %9s %9s %9s %7zu %8u  %-11s %04o %s", text_name(i->name), size, max, used,
           i->objects, i->attached, policy, i->mode, state_name(i->state));
    if (i->state == SHMVAL_SEG_CORRUPT)
      printf(" (%s)", shmval_err_name(i->error));
    putchar('\n');
  }
  c->count++;
  return 0;
}

static int cmd_ls(const command *cmd, int argc, char **argv) {
  ls_ctx c = {0};
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0)
      c.json = true;
    else
      return usage_error(cmd, argv[i][0] == '-' ? "ls: unknown option '%s'" : "ls: unexpected '%s'",
                         argv[i]);
  }
  if (c.json)
    printf("[");
  else
    printf("%-32s %9s %9s %9s %7s %8s  %-11s %-4s %s\n", "NAME", "SIZE", "MAX", "USED", "OBJECTS",
           "ATTACHED", "POLICY", "MODE", "STATE");
  int rc = for_each_segment(ls_one, &c);
  if (c.json)
    printf("%s]\n", c.count ? "\n" : "");
  return rc;
}

/* ------------------------------------------------------------------------ */
/* show */

typedef struct show_ctx {
  shm_segment *seg;
  bool json, lock, full;
  const char *only;
  int count;
} show_ctx;

/* The text form's first line: the segment's sizes and its object count. */
static void show_header(shm_segment *s) {
  shm_segment_info i;
  char size[32], max[32], used[32];
  if (shm_segment_stat(s, &i) != 0)
    return;
  human_size(i.size, size, sizeof size);
  human_size(i.max_size, max, sizeof max);
  human_size(i.used, used, sizeof used);
  printf("%s: %s committed of %s at most, %s used, %zu object%s\n", text_name(i.name), size, max,
         used, i.objects, i.objects == 1 ? "" : "s");
}

/* The table's heading, or the JSON list's opening, before the first object. */
static void show_start(const show_ctx *c) {
  if (c->json) {
    printf("[");
    return;
  }
  show_header(c->seg);
  printf("%-24s %-7s %-6s %8s  %-6s %s\n", "OBJECT", "KIND", "TYPE", "LENGTH", "LOCK", "VALUE");
}

#define SHOW_HEAD 8
#define SHOW_TAIL 2

static void print_char(int c, bool json) {
  if (c == '"' || c == '\\')
    printf("\\%c", c);
  else if (isprint(c))
    putchar(c);
  else if (json)
    printf("\\u%04x", (unsigned)(unsigned char)c);
  else
    printf("\\x%02x", (unsigned)(unsigned char)c);
}

/* Print one element of type @p t at @p p. */
static void print_elem(shm_type t, const unsigned char *p, size_t size, bool json, bool full) {
  union {
    signed char b;
    unsigned char B;
    short h;
    unsigned short H;
    int i;
    unsigned I;
    long l;
    unsigned long L;
    long long q;
    unsigned long long Q;
    float f;
    double d;
    _Bool z;
    wchar_t u;
  } v;
  memcpy(&v, p, size < sizeof v ? size : sizeof v);
  switch (t) {
  case SHMVAL_CHAR:
    putchar('"');
    print_char(v.B, json);
    putchar('"');
    break;
  case SHMVAL_SCHAR:
    printf("%d", v.b);
    break;
  case SHMVAL_UCHAR:
    printf("%u", v.B);
    break;
  case SHMVAL_BOOL:
    printf("%s", v.z ? "true" : "false");
    break;
  case SHMVAL_WCHAR:
    printf(json ? "%u" : "U+%04X", (unsigned)v.u);
    break;
  case SHMVAL_SHORT:
    printf("%d", v.h);
    break;
  case SHMVAL_USHORT:
    printf("%u", v.H);
    break;
  case SHMVAL_INT:
    printf("%d", v.i);
    break;
  case SHMVAL_UINT:
    printf("%u", v.I);
    break;
  case SHMVAL_LONG:
    printf("%ld", v.l);
    break;
  case SHMVAL_ULONG:
    printf("%lu", v.L);
    break;
  case SHMVAL_LLONG:
    printf("%lld", v.q);
    break;
  case SHMVAL_ULLONG:
    printf("%llu", v.Q);
    break;
  case SHMVAL_FLOAT:
    printf("%.9g", (double)v.f);
    break;
  case SHMVAL_DOUBLE:
    printf("%.17g", v.d);
    break;
  default: /* a record: its bytes in hex; in text, the first 32 unless --full */
    putchar('"');
    for (size_t k = 0; k < size && (json || full || k < 32); k++)
      printf("%02x", p[k]);
    printf("%s\"", size > 32 && !json && !full ? "..." : "");
  }
}

#define SHOW_CHARS 256

/*
 * Print the elements of an object (a char array as a string); the number of
 * elements (or characters) left out, which JSON reports as "truncated".
 * Text elides the middle of a long array; JSON keeps its first elements.
 */
static size_t print_values(const shm_object_info *o, const unsigned char *p, bool json, bool full) {
  if (o->kind == SHMVAL_OBJ_ARRAY && o->type == SHMVAL_CHAR) {
    size_t n = strnlen((const char *)p, o->length),
           shown = full || n <= SHOW_CHARS ? n : SHOW_CHARS;
    putchar('"');
    for (size_t k = 0; k < shown; k++)
      print_char(p[k], json);
    printf("%s\"", shown < n && !json ? "..." : "");
    return n - shown;
  }
  if (o->kind == SHMVAL_OBJ_VALUE) {
    print_elem(o->type, p, o->elem_size, json, full);
    return 0;
  }
  size_t n = o->length, keep = SHOW_HEAD + SHOW_TAIL;
  size_t shown = full || n <= keep ? n : keep;
  putchar('[');
  for (size_t k = 0; k < n; k++) {
    if (shown < n && k == SHOW_HEAD && !json) {
      printf(", ... %zu more", n - keep);
      k = n - SHOW_TAIL;
    } else if (shown < n && k == keep && json) {
      break;
    }
    printf(k ? ", " : "");
    print_elem(o->type, p + k * o->elem_size, o->elem_size, json, full);
  }
  putchar(']');
  return n - shown;
}

static const char *type_name(shm_type t) {
  static char buf[2];
  if (t == SHMVAL_RECORD)
    return "record";
  buf[0] = (char)t;
  return buf;
}

/* The state of a synchronisation primitive, as JSON or text. */
static void print_sync(const shm_object_info *o, bool json) {
  unsigned v = 0;
  int held;
  switch (o->kind) {
  case SHMVAL_OBJ_SEM:
    if (shm_sem_value(o->handle, &v) == 0)
      printf(json ? "{\"value\": %u}" : "value %u", v);
    break;
  case SHMVAL_OBJ_EVENT:
    printf(json ? "{\"set\": %s}" : "set: %s", shm_event_is_set(o->handle) == 1 ? "true" : "false");
    break;
  case SHMVAL_OBJ_BARRIER:
    printf(json ? "{\"parties\": %d, \"waiting\": %d, \"broken\": %s}"
                : "parties %d, waiting %d, broken: %s",
           shm_barrier_parties(o->handle), shm_barrier_n_waiting(o->handle),
           shm_barrier_broken(o->handle) == 1 ? "true" : "false");
    break;
  case SHMVAL_OBJ_LOCK:
    held = shm_lock_locked(o->handle); /* a try-lock: needs --lock's writable mapping */
    if (held < 0)
      printf(json ? "null" : "-");
    else
      printf(json ? "\"%s\"" : "%s", held == 1 ? "held" : "free");
    break;
  default:
    printf(json ? "null" : "-");
  }
}

/* Bytes as text: a quoted string if printable, else 0x-hex (JSON: {"hex": ...}). */
static void print_bytes(const unsigned char *p, size_t n, bool json, bool full) {
  bool text = true;
  for (size_t k = 0; k < n && text; k++)
    text = isprint(p[k]) != 0;
  size_t limit = full || json ? n : 64, shown = n < limit ? n : limit;
  if (text) {
    putchar('"');
    for (size_t k = 0; k < shown; k++)
      print_char(p[k], json);
    printf("%s\"", shown < n ? "..." : "");
    return;
  }
  printf(json ? "{\"hex\": \"" : "0x");
  for (size_t k = 0; k < shown; k++)
    printf("%02x", p[k]);
  printf(json ? "\"}" : "%s", shown < n ? "..." : "");
}

typedef struct dict_show {
  shm_type type;
  bool json, full;
  size_t count, limit;
} dict_show;

/* Count one more pair or item: whether to show it (its separator printed). */
static bool show_next(dict_show *s) {
  if (s->count++ >= s->limit)
    return false; /* counted, not shown */
  printf(s->count > 1 ? ", " : "");
  return true;
}

static int show_item(const void *key, size_t klen, const void *val, size_t vlen, void *arg) {
  dict_show *s = arg;
  if (!show_next(s))
    return 0;
  if (s->json)
    printf("{\"key\": ");
  print_bytes(key, klen, s->json, s->full);
  printf(s->json ? ", \"value\": " : ": ");
  if (s->type == 0 || s->type == SHMVAL_RECORD)
    print_bytes(val, vlen, s->json, s->full);
  else
    print_elem(s->type, val, vlen, s->json, s->full);
  printf(s->json ? "}" : "");
  return 0;
}

/* A dict's keys and values, the first SHOW_HEAD of them in text unless --full. */
static int print_dict(const shm_object_info *o, bool json, bool full) {
  dict_show s = {o->type, json, full, 0, full || json ? SIZE_MAX : SHOW_HEAD};
  printf(json ? "[" : "{");
  int rc = shm_dict_foreach(o->handle, show_item, &s);
  if (s.count > s.limit)
    printf(", ... %zu more", s.count - s.limit);
  printf(json ? "]" : "}");
  if (rc != 0)
    printf(json ? ", \"error\": \"%s\"" : " (%s)", shmval_err_name(rc));
  return rc;
}

static int show_list_item(size_t i, const void *item, size_t len, void *arg) {
  dict_show *s = arg;
  (void)i;
  if (!show_next(s))
    return 0;
  if (s->type == 0 || s->type == SHMVAL_RECORD)
    print_bytes(item, len, s->json, s->full);
  else
    print_elem(s->type, item, len, s->json, s->full);
  return 0;
}

/* A list's items in order, the first SHOW_HEAD of them in text unless --full. */
static int print_list(const shm_object_info *o, bool json, bool full) {
  dict_show s = {o->type, json, full, 0, full || json ? SIZE_MAX : SHOW_HEAD};
  printf("[");
  int rc = shm_list_foreach(o->handle, show_list_item, &s);
  if (s.count > s.limit)
    printf(", ... %zu more", s.count - s.limit);
  printf("]");
  if (rc != 0)
    printf(json ? ", \"error\": \"%s\"" : " (%s)", shmval_err_name(rc));
  return rc;
}

static const char *kind_name(shm_object_kind k) {
  static const char *names[] = {"?",    "value", "array",   "lock", "sem",
                                "cond", "event", "barrier", "dict", "list"};
  return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

static int show_one(const shm_object_info *o, void *arg) {
  show_ctx *c = arg;
  if (c->only != NULL && (o->name == NULL || strcmp(o->name, c->only) != 0))
    return 0;
  if (c->count == 0)
    show_start(c);
  bool data = o->kind == SHMVAL_OBJ_VALUE || o->kind == SHMVAL_OBJ_ARRAY;
  const unsigned char *p = NULL;
  shm_lock *l = NULL;
  if (o->kind == SHMVAL_OBJ_VALUE) {
    p = shm_value_ptr(o->handle);
    l = shm_value_get_lock(o->handle);
  } else if (data) {
    p = shm_array_ptr(o->handle);
    l = shm_array_get_lock(o->handle);
  }
  int lrc = c->lock && l != NULL ? shm_lock_acquire_timeout(l, 1.0) : 0;
  size_t left;
  const char *kind = kind_name(o->kind);
  bool dict = o->kind == SHMVAL_OBJ_DICT || o->kind == SHMVAL_OBJ_LIST;
  const char *dict_type = dict && o->type == 0 ? "bytes" : type_name(o->type);
  if (c->json) {
    printf("%s\n  {\"name\": ", c->count ? "," : "");
    if (o->name != NULL)
      json_string(o->name);
    else
      printf("null");
    printf(", \"kind\": \"%s\", \"type\": \"%s\", \"elem_size\": %zu, \"length\": %zu, "
           "\"locked\": %s, \"offset\": %zu, \"value\": ",
           kind, data || dict ? dict_type : "-", o->elem_size, o->length,
           o->has_lock ? "true" : "false", o->offset);
  } else {
    printf("%-24s %-7s %-6s %8zu  %-6s ", o->name != NULL ? text_name(o->name) : "(unnamed)", kind,
           data || dict ? dict_type : "-", o->length, o->has_lock ? "locked" : "raw");
  }
  if (lrc < 0)
    printf(c->json ? "null, \"lock_error\": \"%s\"" : "(lock: %s)", shmval_err_name(lrc));
  else if (o->kind == SHMVAL_OBJ_DICT)
    (void)print_dict(o, c->json, c->full);
  else if (o->kind == SHMVAL_OBJ_LIST)
    (void)print_list(o, c->json, c->full);
  else if (!data)
    print_sync(o, c->json);
  else if ((left = print_values(o, p, c->json, c->full)) > 0 && c->json)
    printf(", \"truncated\": %zu", left);
  if (lrc >= 0 && c->lock && l != NULL)
    shm_lock_release(l);
  printf(c->json ? "}" : "\n");
  c->count++;
  return 0;
}

static int cmd_show(const command *cmd, int argc, char **argv) {
  show_ctx c = {0};
  const char *seg_name = NULL;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0)
      c.json = true;
    else if (strcmp(argv[i], "--lock") == 0)
      c.lock = true;
    else if (strcmp(argv[i], "--full") == 0)
      c.full = true;
    else if (argv[i][0] == '-' && argv[i][1] != '\0')
      return usage_error(cmd, "show: unknown option '%s'", argv[i]);
    else if (seg_name == NULL)
      seg_name = argv[i];
    else if (c.only == NULL)
      c.only = argv[i];
    else
      return usage_error(cmd, "show: unexpected '%s' (one SEGMENT, at most one OBJECT)", argv[i]);
  }
  if (seg_name == NULL)
    return usage_error(cmd, "show: a SEGMENT is needed%s", "");
  shm_segment *s;
  /* Locks need a writable mapping; reading alone does not. Neither attaches. */
  shm_segment_opts o = {.flags = SHMVAL_OBSERVE | (c.lock ? 0 : SHMVAL_RDONLY)};
  int rc = shm_segment_open(&s, seg_name, &o);
  if (rc != 0)
    return seg_error(seg_name, rc);
  c.seg = s;
  rc = shm_segment_foreach(s, show_one, &c);
  if (rc == 0 && c.only != NULL && c.count == 0) {
    shm_segment_close(s);
    fprintf(stderr, "shmval: %s: no object named '%s'\n", seg_name, c.only);
    return 1;
  }
  if (c.count == 0)
    show_start(&c); /* an empty segment: an empty table */
  shm_segment_close(s);
  if (c.json)
    printf("%s]\n", c.count ? "\n" : "");
  if (rc != 0) {
    fprintf(stderr, "shmval: %s: %s\n", seg_name, shmval_strerror(rc));
    return 1;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* rm, gc */

static int cmd_rm(const command *cmd, int argc, char **argv) {
  if (argc == 0)
    return usage_error(cmd, "rm: a SEGMENT is needed%s", "");
  for (int i = 0; i < argc; i++)
    if (argv[i][0] == '-')
      return usage_error(cmd, "rm: unknown option '%s'", argv[i]);
  int status = 0;
  for (int i = 0; i < argc; i++) {
    int rc = shm_segment_unlink(argv[i]);
    if (rc == SHMVAL_ENOTSHMVAL)
      fprintf(stderr, "shmval: %s: not a libshmval segment; left alone\n", argv[i]);
    else if (rc != 0)
      seg_error(argv[i], rc);
    status |= rc != 0;
  }
  return status;
}

typedef struct gc_ctx {
  bool dry_run;
  int found, removed;
} gc_ctx;

static int gc_one(const shm_segment_info *i, void *arg) {
  gc_ctx *c = arg;
  if (i->state != SHMVAL_SEG_ORPHANED)
    return 0;
  c->found++;
  const char *why = i->flags & SHMVAL_AUTO_UNLINK ? "auto-unlink, no live attached process"
                                                  : "left uninitialised by a dead creator";
  printf("%s %s (%s)\n", c->dry_run ? "would remove" : "removing", i->name, why);
  if (c->dry_run)
    return 0;
  /* Look again just before: a process may have attached meanwhile. */
  shm_segment_info now;
  if (shm_segment_inspect(i->name, &now) != 0 || now.state != SHMVAL_SEG_ORPHANED)
    return 0;
  int rc = shm_segment_unlink(i->name);
  if (rc != 0 && rc != SHMVAL_ENOENT) {
    fprintf(stderr, "shmval: %s: %s\n", i->name, shmval_strerror(rc));
    return 1;
  }
  c->removed++;
  return 0;
}

static void print_report(const char *name, const shm_check_report *r, int rc, bool json) {
  if (json) {
    printf("{\"name\":");
    json_string(name);
    printf(",\"ok\":%s,\"blocks\":%zu,\"free_blocks\":%zu,\"used\":%zu,\"free\":%zu,"
           "\"objects\":%zu,\"named\":%zu,\"leaked_blocks\":%zu,\"leaked_bytes\":%zu",
           rc == 0 ? "true" : "false", r->blocks, r->free_blocks, r->used, r->free, r->objects,
           r->named, r->leaked_blocks, r->leaked_bytes);
    if (rc != 0) {
      printf(",\"error\":\"%s\",\"problem\":", shmval_err_name(rc));
      json_string(r->problem != NULL ? r->problem : shmval_strerror(rc));
      printf(",\"problem_offset\":%llu", r->problem_offset);
    }
    printf("}\n");
    return;
  }
  printf("%s: %s\n", name, rc == 0 ? "ok" : "CORRUPT");
  printf("  heap: %zu blocks (%zu bytes) allocated, %zu free (%zu bytes)\n", r->blocks, r->used,
         r->free_blocks, r->free);
  printf("  objects: %zu live, %zu named\n", r->objects, r->named);
  printf("  leaked: %zu blocks (%zu bytes) hold no live object\n", r->leaked_blocks,
         r->leaked_bytes);
  if (rc != 0)
    printf("  problem at offset %llu: %s\n", r->problem_offset,
           r->problem != NULL ? r->problem : shmval_strerror(rc));
}

static int cmd_check(const command *cmd, int argc, char **argv) {
  bool json = false;
  const char *name = NULL;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0)
      json = true;
    else if (argv[i][0] == '-')
      return usage_error(cmd, "check: unknown option '%s'", argv[i]);
    else if (name == NULL)
      name = argv[i];
    else
      return usage_error(cmd, "check: unexpected '%s' (one SEGMENT)", argv[i]);
  }
  if (name == NULL)
    return usage_error(cmd, "check: a SEGMENT is needed%s", "");
  shm_segment *seg;
  shm_segment_opts o = {.flags = SHMVAL_OBSERVE};
  int rc = shm_segment_open(&seg, name, &o);
  if (rc != 0)
    return seg_error(name, rc);
  shm_check_report r;
  rc = shm_segment_check(seg, &r);
  if (rc == 0 || rc == SHMVAL_ECORRUPT)
    print_report(shm_segment_name(seg), &r, rc, json);
  else
    fprintf(stderr, "shmval: %s: %s\n", name, shmval_strerror(rc));
  shm_segment_close(seg);
  return rc != 0;
}

static int cmd_reclaim(const command *cmd, int argc, char **argv) {
  if (argc == 0)
    return usage_error(cmd, "reclaim: a SEGMENT is needed%s", "");
  if (argv[0][0] == '-')
    return usage_error(cmd, "reclaim: unknown option '%s'", argv[0]);
  if (argc > 1)
    return usage_error(cmd, "reclaim: unexpected '%s' (one SEGMENT)", argv[1]);
  shm_segment *seg;
  shm_segment_opts o = {.flags = SHMVAL_OBSERVE};
  int rc = shm_segment_open(&seg, argv[0], &o);
  size_t blocks = 0, bytes = 0;
  if (rc != 0)
    return seg_error(argv[0], rc);
  rc = shm_segment_reclaim(seg, &blocks, &bytes);
  shm_segment_close(seg);
  if (rc != 0) {
    fprintf(stderr, "shmval: %s: %s\n", argv[0], shmval_strerror(rc));
    return 1;
  }
  printf("%s: %zu blocks (%zu bytes) reclaimed\n", argv[0], blocks, bytes);
  return 0;
}

static int cmd_gc(const command *cmd, int argc, char **argv) {
  gc_ctx c = {0};
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--dry-run") == 0 || strcmp(argv[i], "-n") == 0)
      c.dry_run = true;
    else
      return usage_error(cmd, argv[i][0] == '-' ? "gc: unknown option '%s'" : "gc: unexpected '%s'",
                         argv[i]);
  }
  int rc = for_each_segment(gc_one, &c);
  if (c.found == 0)
    printf("nothing to remove\n");
  return rc;
}

/* ------------------------------------------------------------------------ */
/* The command table, help and dispatch. */

static const command commands[] = {
    {"ls", "ls [--json]", "list every libshmval segment",
     "List every libshmval segment in " SHM_DIR ": name, committed size, maximum\n"
     "size (what a growable segment may grow to), bytes used, live objects, live\n"
     "attached processes, lifetime policy (persist or auto-unlink), permission\n"
     "bits and state (ok, uninitialised, orphaned, corrupt).\n"
     "  --json   one JSON array of objects, one per segment\n",
     cmd_ls},
    {"show", "show [--json] [--lock] [--full] SEGMENT [OBJECT]",
     "show a segment's objects and their values",
     "Show the objects of SEGMENT (or only the one named OBJECT): kind, type,\n"
     "length, lock and value, after a line with the segment's committed and\n"
     "maximum sizes. Reading does not attach to the segment.\n"
     "  --json   one JSON array of objects, one per object\n"
     "  --lock   read each value under its lock, waiting at most 1 s for it\n"
     "           (without it, values are read without locks)\n"
     "  --full   every element of long arrays and strings; without it, text\n"
     "           shows the first 8 and the last 2 elements, JSON the first 10\n"
     "           with \"truncated\": N saying how many were left out\n",
     cmd_show},
    {"check", "check [--json] SEGMENT", "verify a segment's integrity",
     "Verify SEGMENT: heap blocks, free lists, object headers, name directory;\n"
     "report blocks that processes which died left allocated. Attaches\n"
     "read-write and holds the segment's allocator and directory locks while\n"
     "it runs. Exit status 1 if the segment is corrupt.\n"
     "  --json   the report as one JSON object\n",
     cmd_check},
    {"reclaim", "reclaim SEGMENT", "free blocks left by processes that died mid-change",
     "Free the blocks that processes which died while creating or destroying an\n"
     "object of SEGMENT left allocated.\n",
     cmd_reclaim},
    {"rm", "rm SEGMENT...", "remove segments by name",
     "Remove each SEGMENT's name; processes attached keep their mappings. Files\n"
     "that are not libshmval segments are refused and left alone.\n",
     cmd_rm},
    {"gc", "gc [--dry-run]", "remove orphaned segments",
     "Remove orphaned segments: auto-unlink segments whose attached processes all\n"
     "died, and leftovers of creators that died while initialising one.\n"
     "  -n, --dry-run   only print what would be removed\n",
     cmd_gc},
};

static const command *find_command(const char *name) {
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

static void print_overview(void) {
  fputs(overview, stdout);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    printf("  %-9s %s\n", commands[i].name, commands[i].summary);
  printf("  %-9s %s\n", "help", "describe a command");
  fputs(overview_end, stdout);
}

static void print_command_help(const command *cmd) {
  printf("usage: shmval %s\n\n%s", cmd->synopsis, cmd->details);
}

static bool is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

static int cmd_help(int argc, char **argv) {
  if (argc == 0) {
    print_overview();
    return 0;
  }
  const command *cmd = find_command(argv[0]);
  if (cmd == NULL || argc > 1)
    return usage_error(NULL, cmd == NULL ? "help: '%s' is not a command" : "help: unexpected '%s'",
                       argv[cmd == NULL ? 0 : 1]);
  print_command_help(cmd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: shmval COMMAND [OPTIONS] [ARGS]\n"
                    "Try 'shmval help' for the list of commands.\n");
    return 2;
  }
  const char *name = argv[1];
  if (is_help(name) || strcmp(name, "help") == 0)
    return cmd_help(argc - 2, argv + 2);
  if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
    printf("shmval %s\n", shmval_version());
    return 0;
  }
  const command *cmd = find_command(name);
  if (cmd == NULL)
    return usage_error(NULL, name[0] == '-' ? "unknown option '%s'" : "'%s' is not a command",
                       name);
  for (int i = 2; i < argc; i++) {
    if (is_help(argv[i])) {
      print_command_help(cmd);
      return 0;
    }
  }
  return cmd->run(cmd, argc - 2, argv + 2);
}
