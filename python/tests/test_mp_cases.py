"""CPython's multiprocessing test cases for Value, Array, the sync primitives and
Manager().dict()/list() semantics, ported to shmval and run with real processes
under the ``fork``, ``spawn`` and ``forkserver`` start methods.

Under ``fork`` the objects are made in the default arena (as multiprocessing's
are); under the others they are made by name in a Segment, so that they pickle
into the new children. A child reports a failed check through its exit
code (an exception exits 1); the parent asserts.

Where shmval differs from multiprocessing on purpose, the case says so:
Dict keys are bytes (a str key is stored as its UTF-8), values are bytes
unless the dict has a typecode or a codec; iterating a List iterates one
snapshot of it; releasing an unheld Lock raises RuntimeError (multiprocessing:
ValueError for a Lock, AssertionError for an RLock; the tests accept either,
as CPython's do).
"""
import itertools
import os
import pickle
import threading
import time
import unittest

import multiprocessing as mp

import shmval

TIMEOUT1, TIMEOUT2 = 0.1, 0.2
JOIN = 60  # seconds a child may take (spawn starts a fresh interpreter)
_ids = itertools.count()


def _check(cond, what):
    if not cond:
        raise AssertionError(what)


# --- children (module level, so that spawn can import them) -----------------

def _set_values(values, news):
    for v, new in zip(values, news):
        v.value = new


def _cumulative(seq):
    for i in range(1, len(seq)):
        seq[i] += seq[i - 1]


def _lock_try(lock, out):
    out.value = 1 if lock.acquire(False) else 0
    if out.value:
        lock.release()


def _sem_take(sem, took):
    took.value = 1 if sem.acquire(timeout=5) else 0


def _cond_waiter(cond, sleeping, woken, timeout):
    with cond:
        sleeping.release()
        cond.wait(timeout)
        woken.release()


def _cond_waitfor(cond, state, result):
    with cond:
        ok = cond.wait_for(lambda: state.value == 4, timeout=30)
        result.value = 1 if ok and state.value == 4 else -1


def _cond_notifier(cond, delay):
    time.sleep(delay)
    with cond:
        cond.notify()


def _event_setter(ev, delay):
    time.sleep(delay)
    ev.set()


def _barrier_passes(barrier, passes, counts, lock):
    for _ in range(passes):
        i = barrier.wait(timeout=30)
        with lock:
            counts[i] += 1


def _barrier_expect_broken(barrier, out):
    try:
        barrier.wait(timeout=30)
        out.value = 0
    except threading.BrokenBarrierError:
        out.value = 1


def _barrier_abort_after(barrier, delay):
    time.sleep(delay)
    barrier.abort()


def _dict_child(d):
    _check(d["parent"] == b"p", "the parent's key")
    d["child"] = b"c"
    d.pop("parent")


def _list_child(lst):
    _check(lst[:] == [0, 1, 2], "the parent's items")
    lst.append(3)
    lst[0] = 10


# --- the cases ---------------------------------------------------------------

class _Case(unittest.TestCase):
    """Factories that make each object for this class's start method (the cases are mixins,
    made into one TestCase per start method at the end of the file)."""

    method = "fork"

    def setUp(self):
        self.ctx = mp.get_context(self.method)
        self.seg = None
        if self.method != "fork":
            self.segname = "shmval-mpcases-%d-%d" % (os.getpid(), next(_ids))
            self.seg = shmval.Segment(self.segname, create=True, size=1 << 20,
                                      max_size=32 << 20)

    def tearDown(self):
        if self.seg is not None:
            self.seg.close()
            self.seg.unlink()

    def _name(self):
        return "o%d" % next(_ids)

    def _make(self, kind, *args, **kw):
        if self.seg is None:
            return getattr(shmval, kind)(*args, **kw)
        return getattr(self.seg, kind)(*args, name=self._name(), **kw)

    def Value(self, typecode, value=0, lock=True):
        return self._make("Value", typecode, value, lock=lock)

    def RawValue(self, typecode, value=0):
        if self.seg is None:
            return shmval.RawValue(typecode, value)
        return self.seg.Value(typecode, value, name=self._name(), lock=False)

    def Array(self, typecode, init, lock=True):
        return self._make("Array", typecode, init, lock=lock)

    def RawArray(self, typecode, init):
        if self.seg is None:
            return shmval.RawArray(typecode, init)
        return self.seg.Array(typecode, init, name=self._name(), lock=False)

    def Lock(self):
        return self._make("Lock")

    def RLock(self):
        if self.seg is None:
            return shmval.RLock()
        return self.seg.Lock(name=self._name(), recursive=True)

    def Semaphore(self, value=1):
        return self._make("Semaphore", value)

    def BoundedSemaphore(self, value=1):
        return self._make("BoundedSemaphore", value)

    def Event(self):
        return self._make("Event")

    def Condition(self):
        return self._make("Condition")

    def Barrier(self, parties, action=None, timeout=None):
        return self._make("Barrier", parties, action, timeout)

    def dict(self, typecode=None, codec=None):
        return self._make("Dict", typecode, codec=codec)

    def list(self, items=(), typecode=None, codec=None):
        return self._make("List", items, typecode, codec=codec)

    def start(self, target, *args):
        p = self.ctx.Process(target=target, args=args)
        p.start()
        return p

    def join(self, *ps):
        for p in ps:
            p.join(JOIN)
            self.assertEqual(p.exitcode, 0, "child %s" % p.name)

    def child(self, target, *args):
        self.join(self.start(target, *args))

    def wait_value(self, get, want, secs=30):
        end = time.monotonic() + secs
        while get() != want and time.monotonic() < end:
            time.sleep(0.005)
        self.assertEqual(get(), want)


class ValueCases:
    codes_values = [("i", 4343, 24234), ("d", 3.625, -4.25), ("h", -232, 234),
                    ("q", 2 ** 33, 2 ** 34), ("c", b"x", b"y")]

    def _value(self, raw):
        make = self.RawValue if raw else self.Value
        values = [make(code, value) for code, value, _ in self.codes_values]
        for sv, (_, value, _) in zip(values, self.codes_values):
            self.assertEqual(sv.value, value)
        self.child(_set_values, values, [new for _, _, new in self.codes_values])
        for sv, (_, _, new) in zip(values, self.codes_values):
            self.assertEqual(sv.value, new)

    def test_value(self):
        self._value(raw=False)

    def test_rawvalue(self):
        self._value(raw=True)

    def test_getobj_getlock(self):
        val1 = self.Value("i", 5)
        lock1 = val1.get_lock()
        obj1 = val1.get_obj()
        self.assertEqual(obj1.value, 5)
        with lock1:
            pass
        val2 = self.Value("i", 5, lock=None)
        val2.get_lock()
        lock = self.Lock()
        val3 = self.Value("i", 5, lock=lock)
        self.assertIs(val3.get_lock(), lock)
        val4 = self.Value("i", 5, lock=False)
        self.assertFalse(hasattr(val4, "get_lock"))
        self.assertFalse(hasattr(val4, "get_obj"))
        self.assertRaises(AttributeError, self.Value, "i", 5, lock="navalue")
        val5 = self.RawValue("i", 5)
        self.assertFalse(hasattr(val5, "get_lock"))
        self.assertFalse(hasattr(val5, "get_obj"))


class ArrayCases:
    def test_array(self, raw=False):
        seq = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831]
        arr = self.RawArray("i", seq) if raw else self.Array("i", seq)
        self.assertEqual(len(arr), len(seq))
        self.assertEqual(arr[3], seq[3])
        self.assertEqual(list(arr[2:7]), seq[2:7])
        arr[4:8] = seq[4:8] = [1, 2, 3, 4]
        self.assertEqual(list(arr[:]), seq)
        _cumulative(seq)
        self.child(_cumulative, arr)
        self.assertEqual(list(arr[:]), seq)

    def test_array_from_size(self):
        for size in (0, 1, 10, 100):
            arr = self.Array("i", size)
            self.assertEqual(len(arr), size)
            self.assertEqual(list(arr), [0] * size)
            arr[:] = range(size)
            self.assertEqual(list(arr), list(range(size)))

    def test_rawarray(self):
        self.test_array(raw=True)

    def test_getobj_getlock_obj(self):
        arr1 = self.Array("i", range(10))
        with arr1.get_lock():
            self.assertEqual(list(arr1.get_obj()), list(range(10)))
        arr2 = self.Array("i", range(10), lock=None)
        arr2.get_lock()
        lock = self.Lock()
        arr3 = self.Array("i", range(10), lock=lock)
        self.assertIs(arr3.get_lock(), lock)
        arr4 = self.Array("i", range(10), lock=False)
        self.assertFalse(hasattr(arr4, "get_lock"))
        self.assertFalse(hasattr(arr4, "get_obj"))
        self.assertRaises(AttributeError, self.Array, "i", range(10), lock="notalock")
        arr5 = self.RawArray("i", range(10))
        self.assertFalse(hasattr(arr5, "get_lock"))

    def test_char_array(self):
        arr = self.Array("c", 8)
        arr.value = b"hello"
        self.assertEqual(arr.value, b"hello")
        self.assertEqual(arr.raw, b"hello\x00\x00\x00")
        self.assertRaises(AttributeError, getattr, self.Array("i", 2), "value")


class LockCases:
    def test_lock(self):
        lock = self.Lock()
        self.assertTrue(lock.acquire())
        self.assertFalse(lock.acquire(False))
        self.assertFalse(lock.acquire(timeout=0))
        self.assertIsNone(lock.release())
        self.assertRaises((ValueError, RuntimeError), lock.release)

    def test_lock_context(self):
        lock = self.Lock()
        with lock:
            self.assertFalse(lock.acquire(False))
        self.assertTrue(lock.acquire(False))
        lock.release()

    def test_rlock(self):
        lock = self.RLock()
        self.assertTrue(lock.acquire())
        self.assertTrue(lock.acquire())
        self.assertTrue(lock.acquire())
        self.assertIsNone(lock.release())
        self.assertIsNone(lock.release())
        self.assertIsNone(lock.release())
        self.assertRaises((AssertionError, RuntimeError), lock.release)

    def test_lock_held_elsewhere(self):
        lock, out = self.Lock(), self.RawValue("i", -1)
        with lock:
            self.child(_lock_try, lock, out)
        self.assertEqual(out.value, 0)
        self.child(_lock_try, lock, out)
        self.assertEqual(out.value, 1)


class SemaphoreCases:
    def _test_semaphore(self, sem):
        self.assertEqual(sem.get_value(), 2)
        self.assertTrue(sem.acquire())
        self.assertEqual(sem.get_value(), 1)
        self.assertTrue(sem.acquire())
        self.assertEqual(sem.get_value(), 0)
        self.assertFalse(sem.acquire(False))
        self.assertEqual(sem.get_value(), 0)
        self.assertIsNone(sem.release())
        self.assertEqual(sem.get_value(), 1)
        self.assertIsNone(sem.release())
        self.assertEqual(sem.get_value(), 2)

    def test_semaphore(self):
        sem = self.Semaphore(2)
        self._test_semaphore(sem)
        self.assertIsNone(sem.release())
        self.assertEqual(sem.get_value(), 3)
        self.assertIsNone(sem.release())
        self.assertEqual(sem.get_value(), 4)

    def test_bounded_semaphore(self):
        sem = self.BoundedSemaphore(2)
        self._test_semaphore(sem)
        self.assertRaises(ValueError, sem.release)
        self.assertEqual(sem.get_value(), 2)

    def test_timeout(self):
        sem = self.Semaphore(0)
        self.assertFalse(sem.acquire(False))
        self.assertFalse(sem.acquire(False, None))
        self.assertFalse(sem.acquire(False, TIMEOUT1))
        t = time.monotonic()
        self.assertFalse(sem.acquire(True, TIMEOUT2))
        self.assertGreaterEqual(time.monotonic() - t, TIMEOUT2 - 0.01)
        t = time.monotonic()
        self.assertFalse(sem.acquire(timeout=TIMEOUT1))
        self.assertGreaterEqual(time.monotonic() - t, TIMEOUT1 - 0.01)

    def test_release_wakes_another_process(self):
        sem, took = self.Semaphore(0), self.RawValue("i", -1)
        p = self.start(_sem_take, sem, took)
        time.sleep(TIMEOUT1)
        sem.release()
        self.join(p)
        self.assertEqual(took.value, 1)
        self.assertEqual(sem.get_value(), 0)


class ConditionCases:
    def _waiters(self, cond, n, timeout=None):
        sleeping, woken = self.Semaphore(0), self.Semaphore(0)
        ps = [self.start(_cond_waiter, cond, sleeping, woken, timeout) for _ in range(n)]
        for _ in range(n):
            self.assertTrue(sleeping.acquire(timeout=JOIN))
        # A waiter that released `sleeping` holds the lock until it waits, so taking the
        # lock here means every one of them is waiting.
        with cond:
            pass
        return ps, woken

    def test_notify(self):
        cond = self.Condition()
        ps, woken = self._waiters(cond, 2)
        time.sleep(TIMEOUT1)
        self.assertEqual(woken.get_value(), 0)
        with cond:
            cond.notify()
        self.wait_value(woken.get_value, 1)
        time.sleep(TIMEOUT1)
        self.assertEqual(woken.get_value(), 1)
        with cond:
            cond.notify()
        self.wait_value(woken.get_value, 2)
        self.join(*ps)

    def test_notify_all(self):
        cond = self.Condition()
        ps, woken = self._waiters(cond, 3)
        with cond:
            cond.notify_all()
        self.wait_value(woken.get_value, 3)
        self.join(*ps)
        ps, woken = self._waiters(cond, 2, TIMEOUT1)  # these time out with nobody notifying
        self.wait_value(woken.get_value, 2)
        self.join(*ps)

    def test_notify_n(self):
        cond = self.Condition()
        ps, woken = self._waiters(cond, 3)
        with cond:
            cond.notify(n=2)
        self.wait_value(woken.get_value, 2)
        time.sleep(TIMEOUT1)
        self.assertEqual(woken.get_value(), 2)
        with cond:
            cond.notify(n=4)  # more than are waiting
        self.wait_value(woken.get_value, 3)
        self.join(*ps)

    def test_timeout(self):
        cond = self.Condition()
        with cond:
            t = time.monotonic()
            self.assertFalse(cond.wait(TIMEOUT1))
            self.assertGreaterEqual(time.monotonic() - t, TIMEOUT1 - 0.01)

    def test_waitfor(self):
        cond, state, result = self.Condition(), self.Value("i", -1), self.RawValue("i", 0)
        p = self.start(_cond_waitfor, cond, state, result)
        for _ in range(5):
            time.sleep(0.01)
            with cond:
                state.value += 1
                cond.notify()
        self.join(p)
        self.assertEqual(result.value, 1)

    def test_waitfor_timeout(self):
        cond = self.Condition()
        with cond:
            t = time.monotonic()
            self.assertFalse(cond.wait_for(lambda: False, timeout=TIMEOUT1))
            self.assertGreaterEqual(time.monotonic() - t, TIMEOUT1 - 0.01)

    def test_wait_result(self):
        cond = self.Condition()
        with cond:
            p = self.start(_cond_notifier, cond, TIMEOUT1)
            self.assertFalse(cond.wait(0))
            self.assertTrue(cond.wait(JOIN))
        self.join(p)


class EventCases:
    def test_event(self):
        event = self.Event()
        self.assertFalse(event.is_set())
        self.assertFalse(event.wait(0))
        t = time.monotonic()
        self.assertFalse(event.wait(TIMEOUT1))
        self.assertGreaterEqual(time.monotonic() - t, TIMEOUT1 - 0.01)
        event.set()
        self.assertTrue(event.is_set())
        self.assertTrue(event.wait())
        self.assertTrue(event.wait(TIMEOUT1))
        event.clear()
        self.assertFalse(event.is_set())
        p = self.start(_event_setter, event, TIMEOUT2)
        self.assertTrue(event.wait())
        self.join(p)


class BarrierCases:
    N = 3

    def test_barrier(self, passes=1):
        barrier, lock = self.Barrier(self.N), self.Lock()
        counts = self.Array("i", self.N)
        ps = [self.start(_barrier_passes, barrier, passes, counts, lock)
              for _ in range(self.N - 1)]
        _barrier_passes(barrier, passes, counts, lock)
        self.join(*ps)
        # Each pass hands out each index 0..N-1 once.
        self.assertEqual(list(counts), [passes] * self.N)
        self.assertEqual(barrier.n_waiting, 0)
        self.assertFalse(barrier.broken)

    def test_barrier_10(self):
        self.test_barrier(10)

    def test_thousand(self):
        self.test_barrier(1000 if self.method == "fork" else 200)

    def test_action(self):
        if self.method != "fork":
            self.skipTest("a barrier's action is the making process's (and its fork()ed "
                          "children's) function")
        ran = self.Value("i", 0)

        def action():
            ran.value += 1
        barrier, lock = self.Barrier(self.N, action=action), self.Lock()
        counts = self.Array("i", self.N)
        ps = [self.start(_barrier_passes, barrier, 3, counts, lock) for _ in range(self.N - 1)]
        _barrier_passes(barrier, 3, counts, lock)
        self.join(*ps)
        self.assertEqual(ran.value, 3)

    def test_abort_and_reset(self):
        barrier, out = self.Barrier(self.N), self.RawValue("i", -1)
        p = self.start(_barrier_expect_broken, barrier, out)
        a = self.start(_barrier_abort_after, barrier, TIMEOUT1)
        self.assertRaises(threading.BrokenBarrierError, barrier.wait, JOIN)
        self.join(p, a)
        self.assertEqual(out.value, 1)
        self.assertTrue(barrier.broken)
        self.assertRaises(threading.BrokenBarrierError, barrier.wait, JOIN)
        barrier.reset()
        self.assertFalse(barrier.broken)
        self.test_barrier_with(barrier)

    def test_barrier_with(self, barrier=None):
        barrier = barrier or self.Barrier(2)
        lock, counts = self.Lock(), self.Array("i", barrier.parties)
        ps = [self.start(_barrier_passes, barrier, 2, counts, lock)
              for _ in range(barrier.parties - 1)]
        _barrier_passes(barrier, 2, counts, lock)
        self.join(*ps)
        self.assertEqual(list(counts), [2] * barrier.parties)

    def test_timeout(self):
        barrier, out = self.Barrier(self.N), self.RawValue("i", -1)
        p = self.start(_barrier_expect_broken, barrier, out)
        self.assertRaises(threading.BrokenBarrierError, barrier.wait, TIMEOUT2)
        self.join(p)
        self.assertEqual(out.value, 1)  # the other waiter saw the barrier break
        self.assertTrue(barrier.broken)

    def test_default_timeout(self):
        barrier = self.Barrier(self.N, timeout=TIMEOUT1)
        t = time.monotonic()
        self.assertRaises(threading.BrokenBarrierError, barrier.wait)
        self.assertGreaterEqual(time.monotonic() - t, TIMEOUT1 - 0.01)
        self.assertTrue(barrier.broken)

    def test_single_process(self):
        barrier = self.Barrier(1)
        self.assertEqual(barrier.wait(), 0)
        self.assertEqual(barrier.wait(), 0)
        self.assertEqual(barrier.parties, 1)


class ContainerCases:
    def test_list(self):
        a = self.list(range(10), "l")
        self.assertEqual(a[:], list(range(10)))
        b = self.list(typecode="l")
        self.assertEqual(b[:], [])
        b.extend(range(5))
        self.assertEqual(b[:], list(range(5)))
        self.assertEqual(b[2], 2)
        self.assertEqual(b[2:10], [2, 3, 4])
        b *= 2
        self.assertEqual(b[:], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
        self.assertEqual(b + [5, 6], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6])
        self.assertEqual(a[:], list(range(10)))
        self.assertEqual(b.count(3), 2)
        self.assertEqual(b.index(4), 4)
        self.assertIn(4, b)
        self.assertNotIn(7, b)
        b.remove(0)
        self.assertEqual(b[:], [1, 2, 3, 4, 0, 1, 2, 3, 4])
        self.assertRaises(ValueError, b.remove, 99)
        b.sort()
        self.assertEqual(b[:], [0, 1, 1, 2, 2, 3, 3, 4, 4])
        b.reverse()
        self.assertEqual(b[0], 4)
        del b[0]
        self.assertEqual(len(b), 8)
        b += [7]
        self.assertEqual(b.pop(), 7)
        self.assertEqual(b.pop(0), 4)
        b.insert(1, 9)
        self.assertEqual(b[:3], [3, 9, 3])
        self.assertEqual(b, [3, 9, 3, 2, 2, 1, 1, 0])
        self.assertRaises(IndexError, b.__getitem__, 100)
        b.clear()
        self.assertEqual(len(b), 0)
        self.assertRaises(IndexError, b.pop)

    def test_list_iter(self):
        a = self.list(range(10), "i")
        it = iter(a)
        self.assertEqual(list(it), list(range(10)))
        self.assertEqual(list(it), [])  # exhausted
        it = iter(a)
        a[0] = 100  # an iterator walks the snapshot taken when it was made
        self.assertEqual(next(it), 0)
        self.assertEqual(a[0], 100)

    def test_list_bytes_and_codec(self):
        a = self.list([b"x", "y"])
        self.assertEqual(a[:], [b"x", b"y"])
        self.assertRaises(TypeError, a.sort)
        c = self.list([{"k": 1}, None, (2, 3)], codec=pickle)
        self.assertEqual(c[:], [{"k": 1}, None, (2, 3)])
        self.assertEqual(c.index(None), 1)

    def test_list_in_another_process(self):
        a = self.list([0, 1, 2], "l")
        self.child(_list_child, a)
        self.assertEqual(a[:], [10, 1, 2, 3])

    def test_dict(self):
        d = self.dict(codec=pickle)
        indices = list(range(65, 70))
        for i in indices:
            d[str(i)] = chr(i)
        keys = [str(i).encode() for i in indices]
        self.assertEqual(d.copy(), dict((k, chr(int(k))) for k in keys))
        self.assertEqual(sorted(d.keys()), keys)
        self.assertEqual(sorted(d.values()), [chr(i) for i in indices])
        self.assertEqual(sorted(d.items()), [(k, chr(int(k))) for k in keys])
        self.assertEqual(sorted(d), keys)  # iterating gives the keys
        self.assertEqual(len(d), 5)

    def test_dict_methods(self):
        d = self.dict()
        self.assertIsNone(d.get("a"))
        self.assertEqual(d.get("a", b"dflt"), b"dflt")
        self.assertEqual(d.setdefault("a", b"1"), b"1")
        self.assertEqual(d.setdefault("a", b"2"), b"1")
        d.update({"b": b"2"}, c=b"3")
        self.assertEqual(sorted(d.items()), [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
        self.assertIn("b", d)
        del d["b"]
        self.assertNotIn("b", d)
        self.assertRaises(KeyError, d.__getitem__, "b")
        self.assertRaises(KeyError, d.__delitem__, "b")
        self.assertEqual(d.pop("c"), b"3")
        self.assertEqual(d.pop("c", None), None)
        self.assertRaises(KeyError, d.pop, "c")
        self.assertEqual(d.popitem(), (b"a", b"1"))
        self.assertRaises(KeyError, d.popitem)
        d["x"] = b""
        d.clear()
        self.assertEqual(len(d), 0)

    def test_typed_dict_counter(self):
        d = self.dict("l")
        for word in "a b a c b a".split():
            d.add(word)
        self.assertEqual(d.copy(), {b"a": 3, b"b": 2, b"c": 1})
        self.assertEqual(d.setdefault("z"), 0)

    def test_dict_in_another_process(self):
        d = self.dict()
        d["parent"] = b"p"
        self.child(_dict_child, d)
        self.assertEqual(d.copy(), {b"child": b"c"})


def _by_method(base):
    for method in ("fork", "spawn", "forkserver"):
        name = base.__name__.replace("Cases", "") + method.capitalize()
        globals()[name] = type(name, (base, _Case), {"method": method})


for _base in (ValueCases, ArrayCases, LockCases, SemaphoreCases, ConditionCases, EventCases,
              BarrierCases, ContainerCases):
    _by_method(_base)

if __name__ == "__main__":
    unittest.main()
