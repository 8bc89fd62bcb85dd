/*
 * shmval_bench: every benchmark section, each figure beside its baseline, and
 * the results written to bench/results/latest.md and latest.json.
 *
 *   shmval_bench [--quick] [--out DIR] [SECTION...]
 *
 * Sections: core, sync, named, grow, dict, list, peers, scaling (default: all). --quick runs a
 * short smoke version (for CI); --out changes where the results go.
 */
#include <shmval.h>

#include "bench.h"

#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef SHMVAL_BENCH_RESULTS
#define SHMVAL_BENCH_RESULTS "bench/results"
#endif

/* "AMD EPYC ..., 2 cores, Linux 6.1 x86_64" */
static void describe_machine(char *buf, size_t cap) {
  char model[128] = "unknown CPU", line[256];
  FILE *f = fopen("/proc/cpuinfo", "r");
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "model name", 10) == 0) {
      const char *v = strchr(line, ':');
      if (v != NULL) {
        snprintf(model, sizeof model, "%s", v + 2);
        model[strcspn(model, "\n")] = '\0';
      }
      break;
    }
  }
  if (f != NULL)
    fclose(f);
  struct utsname u;
  uname(&u);
  snprintf(buf, cap, "Machine: %s, %ld cores, %s %s %s; libshmval %s.", model,
           sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release, u.machine, shmval_version());
}

int main(int argc, char **argv) {
  int quick = 0, rc = 0, chosen = 0;
  const char *out = SHMVAL_BENCH_RESULTS;
  const char *names[] = {"core", "sync", "named", "grow", "dict", "list", "peers", "scaling"};
  int (*sections[])(int) = {bench_core, bench_sync, bench_named, bench_grow,
                            bench_dict, bench_list, bench_peers, bench_scaling};
  enum { NSEC = sizeof names / sizeof names[0] };
  int want[NSEC] = {0};
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      quick = 1;
    } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
      out = argv[++i];
    } else {
      int found = 0;
      for (int s = 0; s < NSEC; s++)
        if (strcmp(argv[i], names[s]) == 0)
          want[s] = found = chosen = 1;
      if (!found) {
        fprintf(
            stderr,
            "usage: %s [--quick] [--out DIR] [core|sync|named|grow|dict|list|peers|scaling...]\n",
            argv[0]);
        return 2;
      }
    }
  }
  bench_out = out;
  mkdir(out, 0755); /* --out DIR need not exist yet */
  char machine[512];
  describe_machine(machine, sizeof machine);
  printf("# libshmval benchmarks%s\n\n%s\n", quick ? " (quick)" : "", machine);
  for (int s = 0; s < NSEC; s++)
    if (!chosen || want[s])
      rc |= sections[s](quick);
  return rc | write_results(out, machine);
}
