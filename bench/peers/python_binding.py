#!/usr/bin/env python3
"""The Python binding beside multiprocessing: the same Python code on each, in one run.

    PYTHONPATH=build/rel/python python3 bench/peers/python_binding.py [--quick] [--rows]

Each figure is the median of REPS runs; the shmval run and the multiprocessing
run alternate within each repetition and the ratio is the median of the
per-repetition ratios (shmval / multiprocessing: below 1 is faster), as in
shmval_bench. Without ``--rows`` it prints a table; with it, one line per row
for shmval_bench's "Python binding" section:

    pair UNIT SHMVAL_MED MIN MAX MP_MED MIN MAX RATIO NAME|TARGET
    single ns MED MIN MAX NAME|TARGET

UNIT is "ns" (per operation) or "gbs:BYTES" (per operation of BYTES bytes,
shown as GB/s).
"""
import ctypes
import multiprocessing as mp
import statistics
import struct
import sys
import time

import shmval

QUICK = "--quick" in sys.argv
ROWS = "--rows" in sys.argv
REPS = 5
MIB = 1 << 20


def run_once(fn, n):
    t0 = time.perf_counter_ns()
    fn(n)
    return (time.perf_counter_ns() - t0) / n


def stat(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2], xs[0], xs[-1]


def measure(lib, base, n, n_base=None):
    """Alternate lib and base REPS times: (lib stats, base stats, median ratio)."""
    n_base = n_base or n
    lib(max(1, n // 10))  # warm up
    base(max(1, n_base // 10))
    tl, tb = [], []
    for _ in range(REPS):
        tl.append(run_once(lib, n))
        tb.append(run_once(base, n_base))
    return stat(tl), stat(tb), statistics.median(a / b for a, b in zip(tl, tb))


def row(name, lib, base, n, n_base=None, unit="ns", target="-"):
    (lm, lmin, lmax), (bm, bmin, bmax), ratio = measure(lib, base, n, n_base)
    if ROWS:
        print("pair %s %.1f %.1f %.1f %.1f %.1f %.1f %.5f %s|%s"
              % (unit, lm, lmin, lmax, bm, bmin, bmax, ratio, name, target), flush=True)
    else:
        print("%-52s %10.1f ns %10.1f ns %8.3fx  %s" % (name, lm, bm, ratio, target), flush=True)


def single(name, fn, n, target="-"):
    fn(max(1, n // 10))
    m, lo, hi = stat([run_once(fn, n) for _ in range(REPS)])
    if ROWS:
        print("single ns %.1f %.1f %.1f %s|%s" % (m, lo, hi, name, target), flush=True)
    else:
        print("%-52s %10.1f ns" % (name, m), flush=True)


# --- Values ----------------------------------------------------------------

def incr_loop(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def read_loop(v, n):
    for _ in range(n):
        v.value


def values(n):
    sv, mv = shmval.Value("l", 0), mp.Value("l", 0)
    row("Value: with v.get_lock(): v.value += 1", lambda k: incr_loop(sv, k),
        lambda k: incr_loop(mv, k), n)
    row("Value: v.value (locked read)", lambda k: read_loop(sv, k), lambda k: read_loop(mv, k), n)
    rs, rm = shmval.RawValue("l", 0), mp.RawValue("l", 0)
    row("RawValue: v.value", lambda k: read_loop(rs, k), lambda k: read_loop(rm, k), n)

    def contended(v):
        def run(k):
            p = mp.Process(target=incr_loop, args=(v, k))
            p.start()
            incr_loop(v, k)
            p.join()
        return run
    row("2 processes: with v.get_lock(): v.value += 1", contended(sv), contended(mv), n // 4)


# --- Arrays ----------------------------------------------------------------

def arrays(n):
    count = MIB // 8
    sa, ma = shmval.Array("d", count), mp.Array("d", count)
    data = [float(i) for i in range(count)]
    unit = "gbs:%d" % MIB

    def read(a):
        def run(k):
            for _ in range(k):
                a[:]
        return run

    def write(a):
        def run(k):
            for _ in range(k):
                a[:] = data
        return run
    row("Array('d') 1 MiB: a[:] (a list of floats)", read(sa), read(ma), n, unit=unit)
    row("Array('d') 1 MiB: a[:] = list", write(sa), write(ma), n, unit=unit)

    def copy(obj):
        def run(k):
            for _ in range(k):
                bytes(memoryview(obj))
        return run
    row("Array('d') 1 MiB: bytes(memoryview(a)), no lock", copy(sa), copy(ma.get_obj()), n * 4,
        unit=unit)
    try:
        import numpy
    except ImportError:
        print("# numpy is not installed: its row is skipped", file=sys.stderr)
        return
    ns, nm = numpy.frombuffer(sa, numpy.float64), numpy.frombuffer(ma.get_obj(), numpy.float64)

    def total(x):
        def run(k):
            for _ in range(k):
                x.sum()
        return run
    row("Array('d') 1 MiB: numpy.frombuffer(a).sum()", total(ns), total(nm), n * 4, unit=unit)


# --- Dict ------------------------------------------------------------------

def dicts(n):
    keys = [struct.pack("<Q", ((i + 1) * 0x9E3779B97F4A7C15) % (1 << 64)) for i in range(1000)]
    sd = shmval.Dict()
    for k in keys:
        sd[k] = k
    with mp.Manager() as m:
        md = m.dict({k: k for k in keys})

        def get(d):
            def run(k):
                for i in range(k):
                    d[keys[i % 1000]]
            return run

        def set_(d):
            def run(k):
                for i in range(k):
                    key = keys[i % 1000]
                    d[key] = key
            return run
        # Manager calls take tens of microseconds: fewer of them.
        row("Dict get, 1000 8-byte keys vs Manager().dict()", get(sd), get(md), n, n // 100,
            target="<= 0.02x (50x faster)")
        row("Dict set, 1000 8-byte keys vs Manager().dict()", set_(sd), set_(md), n, n // 100,
            target="<= 0.02x (50x faster)")


# --- Queue -----------------------------------------------------------------

ITEM = b"12345678"


def put_loop(q, n):
    for _ in range(n):
        q.put(ITEM)


def append_loop(q, n):
    for _ in range(n):
        q.append(ITEM)


BATCH = 256


def extend_loop(q, n):
    batch = [ITEM] * BATCH
    for at in range(0, n, BATCH):
        q.extend(batch[:min(BATCH, n - at)])


def put_batches(q, n):
    batch = [ITEM] * BATCH
    for at in range(0, n, BATCH):
        q.put(batch[:min(BATCH, n - at)])


def extend_ints(q, n):
    batch = list(range(BATCH))
    for at in range(0, n, BATCH):
        q.extend(batch[:min(BATCH, n - at)])


def put_int_batches(q, n):
    batch = list(range(BATCH))
    for at in range(0, n, BATCH):
        q.put(batch[:min(BATCH, n - at)])


def transfer(produce, make_queue, take):
    """A k-item run: a forked process runs produce(q, k); this one calls take(q), which
    returns how many items it got, until all k came."""
    def run(k):
        q = make_queue()
        p = mp.Process(target=produce, args=(q, k))
        p.start()
        got = 0
        while got < k:
            got += take(q)
        p.join()
    return run


def queues(n):
    sq, tq = shmval.List(), shmval.List(typecode="q")
    one = transfer(append_loop, lambda: sq, lambda q: q.pop_wait(0) and 1)
    base = transfer(put_loop, mp.Queue, lambda q: q.get() and 1)
    row("queue, 2 processes: List.pop_wait vs mp.Queue, 8 bytes", one, base, n // 2,
        target="<= 0.1x (10x faster)")
    # Batches: the producer extends by BATCH items, the consumer takes up to BATCH a call.
    batches = transfer(extend_loop, lambda: sq, lambda q: len(q.pop_many(BATCH)))
    row("queue, 2 processes: List.extend/pop_many (%d) vs mp.Queue" % BATCH, batches, base,
        n, n // 2, target="<= 0.1x (10x faster)")
    lists = transfer(put_batches, mp.Queue, lambda q: len(q.get()))
    row("queue, 2 processes: the same vs mp.Queue of %d-item lists" % BATCH, batches, lists,
        n, n, target="-")
    # Typed items (8-byte ints): the list's ring holds them, no block per item.
    typed = transfer(extend_ints, lambda: tq, lambda q: len(q.pop_many(BATCH)))
    int_lists = transfer(put_int_batches, mp.Queue, lambda q: len(q.get()))
    row("queue of ints ('q'), 2 processes: extend/pop_many vs mp.Queue of lists", typed,
        int_lists, n, n, target="-")


# --- The floor: what one ctypes call costs ---------------------------------

def floor(n):
    d = shmval.Dict()
    h, out = d._h, ctypes.c_size_t()
    ref = ctypes.byref(out)
    f = shmval._lib["shm_dict_len"]

    def call(k):
        for _ in range(k):
            f(h, ref)
    single("floor: one ctypes call (shm_dict_len)", call, n)
    q = shmval.List()
    buf, cap, nref = shmval._new_scratch()[:3]

    def pop(k):
        for _ in range(k):
            shmval._list_append(q._h, ITEM, ctypes.c_size_t(8))
            shmval._list_pop_wait(q._h, shmval._FRONT, shmval._FOREVER, buf, cap, nref)
    single("floor: ctypes append + pop_wait, 1 process", pop, n // 2)


def main():
    mp.set_start_method("fork")
    n = 20000 if QUICK else 200000
    values(n)
    arrays(max(2, n // 2000))
    dicts(n // 4)
    queues(n)
    floor(n)


if __name__ == "__main__":
    main()
