// The Boost.Interprocess peer of shmval_bench: the comparable operations with
// a managed_shared_memory segment. Prints "NAME MEDIAN MIN MAX" in ns per
// operation, the median of 5 runs. `--quick` makes the runs short.
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/indexes/iset_index.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <boost/unordered_map.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cerrno>
#include <functional>
#include <pthread.h>
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

// A robust process-shared pthread mutex with the interface Boost's allocator
// wants, so that Boost's allocation can also be measured under the kind of
// lock libshmval needs (a holder's death must not hang everyone).
template <int Type> class robust_mutex {
  pthread_mutex_t m_;

public:
  robust_mutex() {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&a, Type);
    pthread_mutex_init(&m_, &a);
    pthread_mutexattr_destroy(&a);
  }
  ~robust_mutex() { pthread_mutex_destroy(&m_); }
  robust_mutex(const robust_mutex &) = delete;
  robust_mutex &operator=(const robust_mutex &) = delete;
  void lock() {
    if (pthread_mutex_lock(&m_) == EOWNERDEAD)
      pthread_mutex_consistent(&m_);
  }
  bool try_lock() {
    int rc = pthread_mutex_trylock(&m_);
    if (rc == EOWNERDEAD)
      pthread_mutex_consistent(&m_);
    return rc == 0 || rc == EOWNERDEAD;
  }
  template <class Time> bool timed_lock(const Time &) {
    lock();
    return true;
  }
  void unlock() { pthread_mutex_unlock(&m_); }
};

struct robust_family {
  typedef robust_mutex<PTHREAD_MUTEX_NORMAL> mutex_type;
  typedef robust_mutex<PTHREAD_MUTEX_RECURSIVE> recursive_mutex_type;
};
using robust_segment =
    bip::basic_managed_shared_memory<char, bip::rbtree_best_fit<robust_family>, bip::iset_index>;

// The batch allocation row: K blocks of 8 bytes, then all K freed.
template <class Segment>
static void alloc_free_batch(Segment &seg, std::vector<void *> &blocks, long k) {
  for (long done = 0; done < k; done += (long)blocks.size()) {
    for (void *&b : blocks)
      b = seg.allocate(8);
    for (void *b : blocks)
      seg.deallocate(b);
  }
}

template <class Mutex> struct counter_with {
  Mutex m;
  long long value = 0;
};
using counter = counter_with<bip::interprocess_mutex>;
using robust_counter = counter_with<robust_mutex<PTHREAD_MUTEX_NORMAL>>;

template <class Counter> static void increments(Counter *c, long k) {
  for (long i = 0; i < k; i++) {
    c->m.lock();
    c->value++;
    c->m.unlock();
  }
}

// The dict section's workload: keys (i + 1) * 2^64/phi, each its own value,
// visited in the same random order (bench/bench_dict.c makes the same).
using seg_mgr = bip::managed_shared_memory::segment_manager;
using kv_alloc = bip::allocator<std::pair<const std::uint64_t, std::uint64_t>, seg_mgr>;
using shmap = boost::unordered_map<std::uint64_t, std::uint64_t, boost::hash<std::uint64_t>,
                                   std::equal_to<std::uint64_t>, kv_alloc>;

struct locked_map {
  bip::interprocess_mutex m;
  shmap map;
  explicit locked_map(const kv_alloc &a)
      : map(0, boost::hash<std::uint64_t>(), std::equal_to<std::uint64_t>(), a) {}
};

static std::uint64_t key_of(std::uint64_t i) { return (i + 1) * UINT64_C(0x9E3779B97F4A7C15); }

static std::vector<std::uint64_t> key_order(std::size_t n) {
  std::vector<std::uint64_t> idx(n);
  std::uint64_t r = 88172645463325252u;
  for (std::size_t i = 0; i < n; i++)
    idx[i] = i;
  for (std::size_t i = n - 1; i > 0; i--) {
    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
    std::swap(idx[i], idx[(std::size_t)(r % (i + 1))]);
  }
  for (auto &x : idx)
    x = key_of(x);
  return idx;
}

static void dict_rows(const std::string &name, std::size_t keys, const char *suffix, long n) {
  bip::shared_memory_object::remove(name.c_str());
  bip::managed_shared_memory seg(bip::create_only, name.c_str(), 512u << 20);
  locked_map *lm = seg.construct<locked_map>("dict")(kv_alloc(seg.get_segment_manager()));
  std::vector<std::uint64_t> order = key_order(keys);
  for (std::size_t i = 0; i < keys; i++) // in key order, as the C side fills its tables
    lm->map.emplace(key_of(i), key_of(i));
  std::size_t at = 0;
  auto next = [&] {
    std::uint64_t k = order[at];
    at = at + 1 == order.size() ? 0 : at + 1;
    return k;
  };
  std::string label = std::string("dict_get_") + suffix;
  report(
      label.c_str(),
      [&](long k) {
        for (long i = 0; i < k; i++) {
          std::uint64_t key = next();
          lm->m.lock();
          auto it = lm->map.find(key);
          bool ok = it != lm->map.end() && it->second == key;
          lm->m.unlock();
          if (!ok)
            std::abort();
        }
      },
      n);
  label = std::string("dict_set_") + suffix;
  report(
      label.c_str(),
      [&](long k) {
        for (long i = 0; i < k; i++) {
          std::uint64_t key = next();
          lm->m.lock();
          lm->map[key] = key;
          lm->m.unlock();
        }
      },
      n);
  label = std::string("dict_delset_") + suffix;
  report(
      label.c_str(),
      [&](long k) {
        for (long i = 0; i < k; i++) {
          std::uint64_t key = next();
          lm->m.lock();
          lm->map.erase(key);
          lm->m.unlock();
          lm->m.lock();
          lm->map.emplace(key, key);
          lm->m.unlock();
        }
      },
      n);
  seg.destroy<locked_map>("dict");
}

int main(int argc, char **argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  long n = quick ? 20000 : 1000000;
  std::string name = "shmval-bench-boost-" + std::to_string(getpid());
  bip::shared_memory_object::remove(name.c_str());
  {
    bip::managed_shared_memory seg(bip::create_only, name.c_str(), 64u << 20);
    counter *c = seg.construct<counter>("counter")();
    report(
        "locked_increment", [&](long k) { increments(c, k); }, n);
    robust_counter *rc = seg.construct<robust_counter>("robust counter")();
    report(
        "locked_increment_robust", [&](long k) { increments(rc, k); }, n);
    // 20,000 names in the segment, as in the orientation figures.
    for (int i = 0; i < 20000; i++)
      seg.construct<long long>(("obj-" + std::to_string(i)).c_str())(i);
    std::vector<std::string> keys;
    for (int i = 0; i < 1000; i++)
      keys.push_back("obj-" + std::to_string((i * 7919) % 20000));
    report(
        "named_open",
        [&](long k) {
          for (long i = 0; i < k; i++)
            if (seg.find<long long>(keys[(size_t)i % keys.size()].c_str()).first == nullptr)
              std::abort();
        },
        n / 10);
    report(
        "named_create_remove",
        [&](long k) {
          for (long i = 0; i < k; i++) {
            std::string key = "new-" + std::to_string(i % 1000);
            seg.construct<long long>(key.c_str())(0);
            seg.destroy<long long>(key.c_str());
          }
        },
        n / 10);
    report(
        "alloc_free_8",
        [&](long k) {
          for (long i = 0; i < k; i++)
            seg.deallocate(seg.allocate(8));
        },
        n);
    // The same K at a time: allocate K blocks, then free all K, as a program
    // building a structure does (the loop above reuses one hot block).
    std::vector<void *> blocks(1000);
    report(
        "alloc_free_8_batch", [&](long k) { alloc_free_batch(seg, blocks, k); }, n);
  }
  bip::shared_memory_object::remove(name.c_str());
  {
    robust_segment seg(bip::create_only, name.c_str(), 64u << 20);
    std::vector<void *> blocks(1000);
    report(
        "alloc_free_8_batch_robust", [&](long k) { alloc_free_batch(seg, blocks, k); }, n);
  }
  bip::shared_memory_object::remove(name.c_str());
  report(
      "segment_create_remove",
      [&](long k) {
        for (long i = 0; i < k; i++) {
          { bip::managed_shared_memory s(bip::create_only, name.c_str(), 1u << 20); }
          bip::shared_memory_object::remove(name.c_str());
        }
      },
      quick ? 20 : 200);
  { bip::managed_shared_memory keep(bip::create_only, name.c_str(), 1u << 20); }
  report(
      "segment_open",
      [&](long k) {
        for (long i = 0; i < k; i++)
          bip::managed_shared_memory s(bip::open_only, name.c_str());
      },
      quick ? 100 : 2000);
  bip::shared_memory_object::remove(name.c_str());
  dict_rows(name, 1000, "small", quick ? 200000 : 1000000);
  dict_rows(name, quick ? 100000 : 1000000, "big", quick ? 200000 : 1000000);
  bip::shared_memory_object::remove(name.c_str());
  return 0;
}
