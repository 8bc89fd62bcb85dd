// The Boost.Interprocess peer of shmval_bench: the comparable operations with
// a managed_shared_memory segment, measured row by row on request so that the
// library's batches and the peer's alternate (as every baseline of the bench
// does) and a drift of the machine's speed cancels out of the ratios.
//
// It sets up every fixture, then reads "NAME K" lines on standard input, runs
// K operations of row NAME and answers with the ns per operation (or
// "unknown"). It removes its segments at end of input. `--quick` makes the
// big dict smaller.
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
#include <map>
#include <memory>
#include <pthread.h>
#include <string>
#include <unistd.h>
#include <vector>

namespace bip = boost::interprocess;

// The rows, by name: each runs K operations on fixtures that live until the end.
using row_fn = std::function<void(long)>;
static std::map<std::string, row_fn> rows;

static void serve() {
  char name[64];
  long k;
  while (std::scanf("%63s %ld", name, &k) == 2) {
    auto it = rows.find(name);
    if (it == rows.end() || k <= 0) {
      std::printf("unknown\n");
    } else {
      auto t0 = std::chrono::steady_clock::now();
      it->second(k);
      auto t1 = std::chrono::steady_clock::now();
      std::printf("%.4f\n", std::chrono::duration<double, std::nano>(t1 - t0).count() / (double)k);
    }
    std::fflush(stdout);
  }
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

// One dict fixture: a map under a mutex in a segment of its own.
struct dict_fixture {
  std::string name;
  std::unique_ptr<bip::managed_shared_memory> seg;
  locked_map *lm;
  std::vector<std::uint64_t> order;
  std::size_t at = 0;
  std::uint64_t next() {
    std::uint64_t k = order[at];
    at = at + 1 == order.size() ? 0 : at + 1;
    return k;
  }
};

static void dict_rows(dict_fixture &d, std::size_t keys, const char *suffix) {
  bip::shared_memory_object::remove(d.name.c_str());
  d.seg.reset(new bip::managed_shared_memory(bip::create_only, d.name.c_str(), 512u << 20));
  d.lm = d.seg->construct<locked_map>("dict")(kv_alloc(d.seg->get_segment_manager()));
  d.order = key_order(keys);
  for (std::size_t i = 0; i < keys; i++) // in key order, as the C side fills its tables
    d.lm->map.emplace(key_of(i), key_of(i));
  locked_map *lm = d.lm;
  rows[std::string("dict_get_") + suffix] = [&d, lm](long k) {
    for (long i = 0; i < k; i++) {
      std::uint64_t key = d.next();
      lm->m.lock();
      auto it = lm->map.find(key);
      bool ok = it != lm->map.end() && it->second == key;
      lm->m.unlock();
      if (!ok)
        std::abort();
    }
  };
  rows[std::string("dict_set_") + suffix] = [&d, lm](long k) {
    for (long i = 0; i < k; i++) {
      std::uint64_t key = d.next();
      lm->m.lock();
      lm->map[key] = key;
      lm->m.unlock();
    }
  };
  rows[std::string("dict_delset_") + suffix] = [&d, lm](long k) {
    for (long i = 0; i < k; i++) {
      std::uint64_t key = d.next();
      lm->m.lock();
      lm->map.erase(key);
      lm->m.unlock();
      lm->m.lock();
      lm->map.emplace(key, key);
      lm->m.unlock();
    }
  };
}

int main(int argc, char **argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::string base = "shmval-bench-boost-" + std::to_string(getpid());
  std::string names[] = {base + "-a", base + "-r", base + "-c", base + "-o", base + "-ds",
                         base + "-db"};
  for (auto &n : names)
    bip::shared_memory_object::remove(n.c_str());
  bip::managed_shared_memory seg(bip::create_only, names[0].c_str(), 64u << 20);
  counter *c = seg.construct<counter>("counter")();
  rows["locked_increment"] = [c](long k) { increments(c, k); };
  robust_counter *rc = seg.construct<robust_counter>("robust counter")();
  rows["locked_increment_robust"] = [rc](long k) { increments(rc, k); };
  // 20,000 names in the segment, as in the orientation figures.
  for (int i = 0; i < 20000; i++)
    seg.construct<long long>(("obj-" + std::to_string(i)).c_str())(i);
  std::vector<std::string> keys;
  for (int i = 0; i < 1000; i++)
    keys.push_back("obj-" + std::to_string((i * 7919) % 20000));
  rows["named_open"] = [&](long k) {
    for (long i = 0; i < k; i++)
      if (seg.find<long long>(keys[(size_t)i % keys.size()].c_str()).first == nullptr)
        std::abort();
  };
  rows["named_create_remove"] = [&](long k) {
    for (long i = 0; i < k; i++) {
      std::string key = "new-" + std::to_string(i % 1000);
      seg.construct<long long>(key.c_str())(0);
      seg.destroy<long long>(key.c_str());
    }
  };
  rows["alloc_free_8"] = [&](long k) {
    for (long i = 0; i < k; i++)
      seg.deallocate(seg.allocate(8));
  };
  // The same K at a time: allocate K blocks, then free all K, as a program
  // building a structure does (the loop above reuses one hot block).
  std::vector<void *> blocks(1000);
  rows["alloc_free_8_batch"] = [&](long k) { alloc_free_batch(seg, blocks, k); };
  robust_segment rseg(bip::create_only, names[1].c_str(), 64u << 20);
  std::vector<void *> rblocks(1000);
  rows["alloc_free_8_batch_robust"] = [&](long k) { alloc_free_batch(rseg, rblocks, k); };
  const char *made = names[2].c_str(), *kept = names[3].c_str();
  rows["segment_create_remove"] = [made](long k) {
    for (long i = 0; i < k; i++) {
      { bip::managed_shared_memory s(bip::create_only, made, 1u << 20); }
      bip::shared_memory_object::remove(made);
    }
  };
  { bip::managed_shared_memory keep(bip::create_only, kept, 1u << 20); }
  rows["segment_open"] = [kept](long k) {
    for (long i = 0; i < k; i++)
      bip::managed_shared_memory s(bip::open_only, kept);
  };
  dict_fixture small{names[4], nullptr, nullptr, {}}, big{names[5], nullptr, nullptr, {}};
  dict_rows(small, 1000, "small");
  dict_rows(big, quick ? 100000 : 1000000, "big");
  std::printf("ready\n");
  std::fflush(stdout);
  serve();
  for (auto &n : names)
    bip::shared_memory_object::remove(n.c_str());
  return 0;
}
