// The Boost.Interprocess peer of shmval_bench: the comparable operations with
// a managed_shared_memory segment. Prints "NAME MEDIAN MIN MAX" in ns per
// operation, the median of 5 runs. `--quick` makes the runs short.
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <unistd.h>
#include <vector>

namespace bip = boost::interprocess;

static void report(const char *name, const std::function<void(long)> &fn, long n) {
  std::vector<double> runs;
  fn(n / 10 + 1); // warm up
  for (int r = 0; r < 5; r++) {
    auto t0 = std::chrono::steady_clock::now();
    fn(n);
    auto t1 = std::chrono::steady_clock::now();
    runs.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / (double)n);
  }
  std::sort(runs.begin(), runs.end());
  std::printf("%s %.1f %.1f %.1f\n", name, runs[2], runs[0], runs[4]);
  std::fflush(stdout);
}

struct counter {
  bip::interprocess_mutex m;
  long long value = 0;
};

int main(int argc, char **argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  long n = quick ? 20000 : 1000000;
  std::string name = "shmval-bench-boost-" + std::to_string(getpid());
  bip::shared_memory_object::remove(name.c_str());
  {
    bip::managed_shared_memory seg(bip::create_only, name.c_str(), 64u << 20);
    counter *c = seg.construct<counter>("counter")();
    report("locked_increment",
           [&](long k) {
             for (long i = 0; i < k; i++) {
               c->m.lock();
               c->value++;
               c->m.unlock();
             }
           },
           n);
    // 20,000 names in the segment, as in the orientation figures.
    for (int i = 0; i < 20000; i++)
      seg.construct<long long>(("obj-" + std::to_string(i)).c_str())(i);
    std::vector<std::string> keys;
    for (int i = 0; i < 1000; i++)
      keys.push_back("obj-" + std::to_string((i * 7919) % 20000));
    report("named_open",
           [&](long k) {
             for (long i = 0; i < k; i++)
               if (seg.find<long long>(keys[(size_t)i % keys.size()].c_str()).first == nullptr)
                 std::abort();
           },
           n / 10);
    report("named_create_remove",
           [&](long k) {
             for (long i = 0; i < k; i++) {
               std::string key = "new-" + std::to_string(i % 1000);
               seg.construct<long long>(key.c_str())(0);
               seg.destroy<long long>(key.c_str());
             }
           },
           n / 10);
    report("alloc_free_8",
           [&](long k) {
             for (long i = 0; i < k; i++)
               seg.deallocate(seg.allocate(8));
           },
           n);
  }
  bip::shared_memory_object::remove(name.c_str());
  report("segment_create_remove",
         [&](long k) {
           for (long i = 0; i < k; i++) {
             { bip::managed_shared_memory s(bip::create_only, name.c_str(), 1u << 20); }
             bip::shared_memory_object::remove(name.c_str());
           }
         },
         quick ? 20 : 200);
  { bip::managed_shared_memory keep(bip::create_only, name.c_str(), 1u << 20); }
  report("segment_open",
         [&](long k) {
           for (long i = 0; i < k; i++)
             bip::managed_shared_memory s(bip::open_only, name.c_str());
         },
         quick ? 100 : 2000);
  bip::shared_memory_object::remove(name.c_str());
  return 0;
}
