#!/usr/bin/env python3
"""The Python peer of shmval_bench: the same operations with multiprocessing.

Prints one line per operation, "NAME MEDIAN MIN MAX" in ns per operation, the
median of 5 runs. Run by shmval_bench; `--quick` makes the runs short.
"""
import multiprocessing as mp
import struct
import sys
import time

QUICK = "--quick" in sys.argv
REPS = 5


def timed(fn, n):
    """ns per operation of fn(n), REPS times: (median, min, max)."""
    runs = []
    for _ in range(REPS):
        t0 = time.perf_counter_ns()
        fn(n)
        runs.append((time.perf_counter_ns() - t0) / n)
    runs.sort()
    return runs[len(runs) // 2], runs[0], runs[-1]


def report(name, figures):
    print("%s %.1f %.1f %.1f" % ((name,) + figures), flush=True)


def incr_loop(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def put_loop(q, n):
    item = b"12345678"
    for _ in range(n):
        q.put(item)


def append_loop(lst, n):
    item = b"12345678"
    for _ in range(n):
        lst.append(item)


def main():
    n = 20000 if QUICK else 200000
    v = mp.Value("l", 0)
    rv = mp.RawValue("l", 0)

    def get(k):
        for _ in range(k):
            v.value

    def set_(k):
        for i in range(k):
            v.value = i

    def incr(k):
        incr_loop(v, k)

    def raw_get(k):
        for _ in range(k):
            rv.value

    def create(k):
        for _ in range(k):
            mp.Value("l", 0)

    def incr2(k):
        p = mp.Process(target=incr_loop, args=(v, k))
        p.start()
        incr_loop(v, k)
        p.join()

    report("locked_get", timed(get, n))
    report("locked_set", timed(set_, n))
    report("locked_increment", timed(incr, n))
    report("raw_get", timed(raw_get, n))
    report("create_destroy", timed(create, n // 10))
    report("contended2_locked_increment", timed(incr2, n))
    with mp.Manager() as m:
        d = m.dict()

        def dict_set(k):
            for i in range(k):
                d["key"] = i

        def dict_get(k):
            for _ in range(k):
                d["key"]

        report("manager_dict_set", timed(dict_set, n // 100))
        report("manager_dict_get", timed(dict_get, n // 100))

        # 1000 keys of 8 bytes, each its own value: the dict section's keys.
        keys = [struct.pack("<Q", ((i + 1) * 0x9E3779B97F4A7C15) % (1 << 64)) for i in range(1000)]
        d.update({k: k for k in keys})

        def dict8_get(k):
            for i in range(k):
                d[keys[i % 1000]]

        def dict8_set(k):
            for i in range(k):
                key = keys[i % 1000]
                d[key] = key

        report("manager_dict8_get", timed(dict8_get, n // 100))
        report("manager_dict8_set", timed(dict8_set, n // 100))

        # A queue between 2 processes: one puts (appends) n items, this one gets (pops) them.
        def mp_queue(k):
            q = mp.Queue()
            p = mp.Process(target=put_loop, args=(q, k))
            p.start()
            for _ in range(k):
                q.get()
            p.join()

        lst = m.list()

        def manager_list(k):
            p = mp.Process(target=append_loop, args=(lst, k))
            p.start()
            got = 0
            while got < k:
                try:
                    lst.pop(0)
                    got += 1
                except IndexError:
                    pass
            p.join()

        report("mp_queue_8", timed(mp_queue, n // 10))
        report("manager_list_8", timed(manager_list, n // 100))


if __name__ == "__main__":
    mp.set_start_method("fork")
    main()
