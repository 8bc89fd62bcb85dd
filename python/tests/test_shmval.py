"""The Python binding: Values, Arrays, locks, dicts and lists, across forked processes.

Run by ctest, with the build tree's package (PYTHONPATH=<build>/python); by
hand: PYTHONPATH=build/test/python python3 -m unittest discover -s python/tests
(SHMVAL_PY_PEER=build/test/tests/shmval_py_peer for the interop cases).
"""
import multiprocessing as mp
import os
import pickle
import queue
import threading
import time
import unittest
import warnings

import shmval

ctx = mp.get_context("fork")


def _incr(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def _die_holding(lock):
    lock.acquire()
    os._exit(0)


def _try_in_child(lock, out):
    out.value = 1 if lock.acquire(False) else 0
    if out.value:
        lock.release()


def _produce(q, n):
    for i in range(n):
        q.append(b"item-%d" % i)


def _produce_batches(q, n):
    for at in range(0, n, 300):
        q.extend([b"item-%d" % i for i in range(at, min(n, at + 300))])


def _dict_writer(d):
    d["from child"] = b"\x00bytes\x00"


class TestValue(unittest.TestCase):
    def test_locked_counter_across_processes(self):
        v = shmval.Value("l", 0)
        ps = [ctx.Process(target=_incr, args=(v, 2000)) for _ in range(4)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
            self.assertEqual(p.exitcode, 0)
        self.assertEqual(v.value, 8000)

    def test_types_and_raw(self):
        d = shmval.Value("d", 1.5)
        self.assertEqual(d.value, 1.5)
        d.value = -2.25
        self.assertEqual(d.get_obj().value, -2.25)
        r = shmval.RawValue("i", 7)
        self.assertEqual(r.value, 7)
        with self.assertRaises(AttributeError):
            r.get_lock()
        with self.assertRaises(ValueError):
            shmval.Value("z", 0)


class TestArray(unittest.TestCase):
    def test_indexing_and_slices(self):
        a = shmval.Array("i", [1, 2, 3])
        self.assertEqual(len(a), 3)
        self.assertEqual(a[:], [1, 2, 3])
        a[1] = 20
        self.assertEqual(list(a), [1, 20, 3])
        self.assertEqual(a[-1], 3)
        with self.assertRaises(IndexError):
            a[3]
        with self.assertRaises(IndexError):
            a[-4] = 1
        z = shmval.Array("d", 4)
        self.assertEqual(z[:], [0.0] * 4)

    def test_buffer_protocol(self):
        a = shmval.Array("d", [1.0, 2.0, 3.0])
        # ctypes gives the format as "<d", which memoryview cannot index: cast it.
        m = memoryview(a).cast("B").cast("d")
        self.assertEqual(m.tolist(), [1.0, 2.0, 3.0])
        m[1] = 5.0  # the same memory: no copy
        self.assertEqual(a[1], 5.0)

    def test_numpy_frombuffer(self):
        try:
            import numpy
        except ImportError:
            self.skipTest("numpy is not installed (apt-get install python3-numpy)")
        a = shmval.Array("d", [1.0, 5.0, 3.0])
        n = numpy.frombuffer(a, dtype=numpy.float64)
        n[2] = 7.0
        self.assertEqual(a[:], [1.0, 5.0, 7.0])
        self.assertEqual(float(n.sum()), 13.0)

    def test_char_array(self):
        c = shmval.Array("c", 8)
        c.value = b"hi"
        self.assertEqual(c.value, b"hi")
        self.assertEqual(len(c.raw), 8)
        raw = shmval.RawArray("b", 2)
        with self.assertRaises(AttributeError):
            raw.get_lock()


class TestLocks(unittest.TestCase):
    def test_lock_in_another_process(self):
        lock = shmval.Lock()
        out = shmval.RawValue("i", -1)
        with lock:
            p = ctx.Process(target=_try_in_child, args=(lock, out))
            p.start()
            p.join()
        self.assertEqual(out.value, 0)  # held here: the child's try failed
        self.assertTrue(lock.acquire(timeout=0.1))
        lock.release()

    def test_lock_is_not_recursive_rlock_is(self):
        lock = shmval.Lock()
        lock.acquire()
        with self.assertRaises(shmval.Error):
            lock.acquire()
        lock.release()
        r = shmval.RLock()
        with r:
            with r:
                pass

    def test_owner_died(self):
        lock = shmval.Lock()
        p = ctx.Process(target=_die_holding, args=(lock,))
        p.start()
        p.join()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            self.assertTrue(lock.acquire(timeout=5))
        self.assertTrue(lock.owner_died)
        self.assertTrue(any(issubclass(x.category, shmval.OwnerDeadWarning) for x in w))
        lock.release()


def _set_later(ev):
    time.sleep(0.1)
    ev.set()


def _notify_later(cond, flag):
    time.sleep(0.1)
    with cond:
        flag.value = 1
        cond.notify_all()


def _barrier_party(b, out, i):
    out[i] = b.wait(timeout=10)


def _sem_try(sem, out):
    out.value = 1 if sem.acquire(timeout=0.05) else 0


class TestSync(unittest.TestCase):
    def test_semaphore(self):
        s = shmval.Semaphore(2)
        self.assertTrue(s.acquire())
        self.assertTrue(s.acquire(timeout=0.01))
        self.assertFalse(s.acquire(False))
        self.assertEqual(s.get_value(), 0)
        out = shmval.RawValue("i", -1)
        p = ctx.Process(target=_sem_try, args=(s, out))
        p.start()
        p.join()
        self.assertEqual(out.value, 0)
        s.release()
        with s:
            self.assertEqual(s.get_value(), 0)
        b = shmval.BoundedSemaphore(1)
        with self.assertRaises(ValueError):
            b.release()
        with self.assertRaises(ValueError):
            shmval.Semaphore(-1)

    def test_event(self):
        e = shmval.Event()
        self.assertFalse(e.is_set())
        self.assertFalse(e.wait(0.05))
        p = ctx.Process(target=_set_later, args=(e,))
        p.start()
        self.assertTrue(e.wait(5))
        p.join()
        self.assertTrue(e.is_set())
        e.clear()
        self.assertFalse(e.is_set())

    def test_condition(self):
        c = shmval.Condition()
        flag = shmval.RawValue("i", 0)
        p = ctx.Process(target=_notify_later, args=(c, flag))
        p.start()
        with c:
            self.assertTrue(c.wait_for(lambda: flag.value == 1, timeout=5))
        p.join()
        with c:
            self.assertFalse(c.wait(0.02))
            c.notify()
        lock = shmval.RLock()
        c2 = shmval.Condition(lock)
        with lock:
            c2.notify_all()

    def test_barrier(self):
        b = shmval.Barrier(3)
        self.assertEqual(b.parties, 3)
        out = shmval.Array("i", [-1, -1, -1])
        ps = [ctx.Process(target=_barrier_party, args=(b, out, i)) for i in range(2)]
        for p in ps:
            p.start()
        out[2] = b.wait(timeout=10)
        for p in ps:
            p.join()
        self.assertEqual(sorted(out[:]), [0, 1, 2])
        with self.assertRaises(threading.BrokenBarrierError):
            b.wait(timeout=0.05)
        self.assertTrue(b.broken)
        b.reset()
        self.assertFalse(b.broken)
        self.assertEqual(b.n_waiting, 0)
        ran = []
        one = shmval.Barrier(1, action=lambda: ran.append(1))
        self.assertEqual(one.wait(), 0)
        self.assertEqual(ran, [1])


class TestDict(unittest.TestCase):
    def test_mapping(self):
        d = shmval.Dict()
        d["a"] = b"1"
        d[b"b"] = "two"
        self.assertEqual(d["a"], b"1")
        self.assertEqual(d["b"], b"two")
        self.assertIn("a", d)
        self.assertNotIn("zz", d)
        self.assertEqual(len(d), 2)
        with self.assertRaises(KeyError):
            d["zz"]
        self.assertEqual(d.get("zz", b"x"), b"x")
        big = bytes(range(256)) * 100
        d["big"] = big
        self.assertEqual(d["big"], big)
        self.assertEqual(d.pop("big"), big)
        self.assertEqual(d.pop("big", None), None)
        del d["a"]
        with self.assertRaises(KeyError):
            del d["a"]
        self.assertEqual(sorted(d.items()), [(b"b", b"two")])
        d.clear()
        self.assertEqual(len(d), 0)

    def test_typed_and_codec(self):
        counts = shmval.Dict("l")
        for w in "a b a c a b".split():
            counts.add(w)
        self.assertEqual(counts["a"], 3)
        self.assertEqual(counts.add("b", 10), 2)  # the old value
        counts["c"] = -5
        self.assertEqual(sorted(counts.items()), [(b"a", 3), (b"b", 12), (b"c", -5)])
        with self.assertRaises(TypeError):
            shmval.Dict().add("x")
        objs = shmval.Dict(codec=pickle)
        objs["cfg"] = {"retries": 3, "hosts": ["a", "b"]}
        self.assertEqual(objs["cfg"], {"retries": 3, "hosts": ["a", "b"]})
        self.assertEqual(objs.pop("cfg")["retries"], 3)
        temps = shmval.List([20.5, 21.0], "d")
        temps.append(22.25)
        self.assertEqual(list(temps), [20.5, 21.0, 22.25])
        self.assertEqual(temps.pop(0), 20.5)
        jobs = shmval.List(codec=pickle)
        jobs.append(("resize", 3))
        self.assertEqual(jobs.pop_wait(0, timeout=1), ("resize", 3))
        with self.assertRaises(ValueError):
            shmval.List([], "d", codec=pickle)

    def test_across_processes(self):
        d = shmval.Dict()
        p = ctx.Process(target=_dict_writer, args=(d,))
        p.start()
        p.join()
        self.assertEqual(d["from child"], b"\x00bytes\x00")


class TestList(unittest.TestCase):
    def test_sequence(self):
        lst = shmval.List(["a", "b"])
        lst.append(b"c\x00")
        lst.insert(0, "z")
        self.assertEqual(list(lst), [b"z", b"a", b"b", b"c\x00"])
        self.assertEqual(lst[-1], b"c\x00")
        lst[1] = "A"
        self.assertEqual(lst.pop(1), b"A")
        self.assertEqual(lst.pop(), b"c\x00")
        self.assertEqual(len(lst), 2)
        with self.assertRaises(IndexError):
            lst[5]
        lst.clear()
        with self.assertRaises(IndexError):
            lst.pop()

    def test_queue_across_processes(self):
        q = shmval.List()
        p = ctx.Process(target=_produce, args=(q, 500))
        p.start()
        got = [q.pop_wait(0, timeout=10) for _ in range(500)]
        p.join()
        self.assertEqual(got, [b"item-%d" % i for i in range(500)])
        t0 = time.monotonic()
        with self.assertRaises(TimeoutError):
            q.pop_wait(0, timeout=0.2)
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)

    def test_batches(self):
        q = shmval.List()
        items = [b"x" * (i % 7) + b"\x00%d" % i for i in range(10000)]
        q.extend(items)  # three calls of up to 4096 items
        self.assertEqual(len(q), 10000)
        self.assertEqual(q.pop_many(3), items[:3])
        self.assertEqual(q.pop_many(2, -1), [items[-1], items[-2]])  # as pops from the back give
        got = items[:3]
        while len(got) < 9998:
            got += q.pop_many(1000, timeout=0)
        self.assertEqual(got, items[:9998])
        with self.assertRaises(TimeoutError) as cm:
            q.pop_many(10, timeout=0.05)
        self.assertIsInstance(cm.exception, queue.Empty)
        big = bytes(range(256)) * 1024  # larger than the batch buffer: taken alone
        q.extend([b"a", big, b"b"])
        self.assertEqual(q.pop_many(10), [b"a"])  # the next one does not fit after it
        self.assertEqual(q.pop_many(10), [big])  # a buffer of its size now
        self.assertEqual(q.pop_many(10), [b"b"])
        t = shmval.List(typecode="d")
        t.extend([1.5, 2.5, 3.5])
        self.assertEqual(t.pop_many(10, -1), [3.5, 2.5, 1.5])
        c = shmval.List(codec=pickle)
        c.extend([{"a": 1}, None, (2,)])
        self.assertEqual(c.pop_many(2), [{"a": 1}, None])
        with self.assertRaises(ValueError):
            q.pop_many(0)

    def test_batches_across_processes(self):
        q = shmval.List()
        p = ctx.Process(target=_produce_batches, args=(q, 20000))
        p.start()
        got = []
        while len(got) < 20000:
            got += q.pop_many(512, timeout=10)
        p.join()
        self.assertEqual(p.exitcode, 0)
        self.assertEqual(got, [b"item-%d" % i for i in range(20000)])


def _spawn_add(args):
    counter, i = args
    with counter.get_lock():
        counter.value += i
    return i


def _spawn_take(q):
    return q.pop_wait(0, timeout=10)


class TestSegment(unittest.TestCase):
    def setUp(self):
        self.name = "shmval-pytest-%d" % os.getpid()
        self.seg = shmval.Segment(self.name, create=True, size=1 << 20, max_size=16 << 20)

    def tearDown(self):
        self.seg.close()
        self.seg.unlink()

    def test_named_objects(self):
        v = self.seg.Value("d", 21.5, name="temperature")
        a = self.seg.Array("i", [1, 2, 3], name="arr")
        d = self.seg.Dict(name="config")
        self.seg.Dict("d", name="typed")["pi"] = 3.25
        q = self.seg.List(["x"], name="jobs")
        d["k"] = "v"
        with shmval.Segment(self.name) as other:
            self.assertEqual(other.open_value("temperature", "d").value, 21.5)
            self.assertEqual(other.open_array("arr", "i")[:], [1, 2, 3])
            self.assertEqual(other.open_dict("config")["k"], b"v")
            self.assertEqual(other.open_dict("typed")["pi"], 3.25)  # its type read back
            self.assertEqual(other.open_list("jobs").pop(), b"x")
            with self.assertRaises(TypeError):
                other.open_value("arr", "i")  # an Array, not a Value
            with self.assertRaises(FileNotFoundError):
                other.open_dict("missing")
        with self.assertRaises(FileExistsError):
            self.seg.Value("i", name="arr")
        v.value = 3.0
        self.seg.remove("temperature")
        self.assertEqual(len(q), 0)
        self.assertEqual(a[1], 2)

    def test_pickled_into_spawn_workers(self):
        counter = self.seg.Value("l", 0, name="counter")
        q = self.seg.List([b"a", b"b"], name="queue")
        with mp.get_context("spawn").Pool(2) as pool:
            self.assertEqual(sum(pool.map(_spawn_add, [(counter, i) for i in range(10)])), 45)
            got = sorted(pool.map(_spawn_take, [q, q]))
        self.assertEqual(counter.value, 45)
        self.assertEqual(got, [b"a", b"b"])

    def test_arena_objects_do_not_pickle(self):
        with self.assertRaisesRegex(TypeError, "fork"):
            pickle.dumps(shmval.Value("i", 1))


class TestInterop(unittest.TestCase):
    """A C program (python/tests/peer.c) and this process share a segment."""

    def setUp(self):
        self.peer = os.environ.get("SHMVAL_PY_PEER")
        if not self.peer:
            self.skipTest("SHMVAL_PY_PEER is not set (ctest sets it)")
        self.name = "shmval-pyinterop-%d" % os.getpid()

    def tearDown(self):
        try:
            shmval.Segment(self.name).unlink()
        except FileNotFoundError:
            pass

    def test_c_makes_python_uses_c_checks(self):
        import subprocess
        subprocess.run([self.peer, "make", self.name], check=True)
        with shmval.Segment(self.name) as seg:
            counter = seg.open_value("counter", "l")
            self.assertEqual(counter.value, 7)
            self.assertEqual(seg.open_array("samples", "d")[:], [0.5, 1.5, 2.5, 3.5])
            config = seg.open_dict("config")
            self.assertEqual(config["mode"], b"fast")
            jobs = seg.open_list("jobs")
            self.assertEqual([jobs.pop_wait(0, timeout=1) for _ in range(5)],
                             [b"job-%d" % i for i in range(5)])
            with counter.get_lock():
                counter.value = 42
            config["from python"] = "yes"
            jobs.append(b"reply")
        self.assertEqual(subprocess.run([self.peer, "check", self.name]).returncode, 0)

    def test_a_c_holder_killed(self):
        import signal
        import subprocess
        subprocess.run([self.peer, "make", self.name], check=True)
        holder = subprocess.Popen([self.peer, "hold", self.name], stdout=subprocess.PIPE)
        self.assertEqual(holder.stdout.readline(), b"held\n")
        with shmval.Segment(self.name) as seg:
            lock = seg.open_lock("lock")
            self.assertFalse(lock.acquire(timeout=0.05))
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            holder.stdout.close()
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                self.assertTrue(lock.acquire(timeout=5))
            self.assertTrue(lock.owner_died)  # the C side's SHMVAL_OWNERDEAD
            self.assertTrue(any(issubclass(x.category, shmval.OwnerDeadWarning) for x in w))
            lock.release()


class TestImport(unittest.TestCase):
    def test_library_found(self):
        env = os.environ.get("SHMVAL_LIBRARY")
        if env:
            self.assertEqual(shmval.library, env)
        else:  # ctest: the build tree's package, with the library linked beside it
            self.assertEqual(os.path.dirname(shmval.library), os.path.dirname(shmval.__file__))


class TestReentry(unittest.TestCase):
    def test_signal_handler_reads_beside_the_code_it_interrupted(self):
        # A handler that runs between the bytecodes of a read (after the library copied the
        # value into the thread's buffer, before Python took it out) reads too: each must
        # get its own value.
        import signal
        d, q = shmval.Dict(), shmval.List()
        d["a"], d["b"] = b"A" * 10, b"B" * 20
        v = shmval.Value("d", 1.5)
        wrong = []

        def handler(sig, frame):
            if d["b"] != b"B" * 20 or v.value != 1.5:
                wrong.append("handler")
        old = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
        try:
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                for _ in range(1000):
                    if d["a"] != b"A" * 10:
                        wrong.append("d")
                    q.append(b"q" * 5)
                    if q.pop_wait(0) != b"q" * 5:
                        wrong.append("q")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        self.assertEqual(wrong, [])


class TestErrors(unittest.TestCase):
    # The built-in exception each of the library's codes also raises as.
    expected = {"ENOENT": FileNotFoundError, "EEXIST": FileExistsError,
                "EACCES": PermissionError, "EPERM": RuntimeError, "EDEADLK": RuntimeError,
                "ETIMEDOUT": TimeoutError, "ERANGE": IndexError, "EINVAL": ValueError,
                "EOVERFLOW": ValueError, "ETYPE": TypeError, "ENOTATOMIC": TypeError,
                "ENOMEM": MemoryError, "ENOSPC": MemoryError, "EAGAIN": BlockingIOError,
                "ENFILE": OSError, "EMFILE": OSError, "ESTALE": ReferenceError,
                "ENOLOCK": AttributeError, "EBROKEN": threading.BrokenBarrierError}
    plain = ["EBUSY", "ENOBUFS", "ENOTRECOVERABLE", "ECORRUPT", "ENOTSHMVAL", "EVERSION",
             "EABI", "EUNINIT"]

    def test_every_code(self):
        # The codes are read from the library: all 27 of its table, each with its class.
        self.assertEqual(sorted(shmval.codes), sorted(list(self.expected) + self.plain))
        for name, code in shmval.codes.items():
            e = shmval.Error.from_code(code, "x")
            self.assertIs(type(e), getattr(shmval.errors, name))
            self.assertIsInstance(e, shmval.Error)
            self.assertEqual((e.code, e.name), (code, "SHMVAL_" + name))
            self.assertIn("x: ", str(e))
            if name in self.expected:
                self.assertIsInstance(e, self.expected[name])
                if isinstance(e, OSError):
                    self.assertEqual(e.errno, -code)
            for other in set(self.expected.values()) - {self.expected.get(name)}:
                if not issubclass(self.expected.get(name, Exception), other):
                    self.assertNotIsInstance(e, other, name)
        self.assertIs(type(shmval.Error.from_code(-99999)), shmval.Error)  # not the library's
        self.assertEqual(shmval._check(1), 1)  # OWNERDEAD is not an error

    def test_raised_where_python_expects_them(self):
        name = "shmval-pyerr-%d" % os.getpid()
        with self.assertRaises(FileNotFoundError):
            shmval.Segment(name)
        with shmval.Segment(name, create=True, size=64 << 10) as seg:
            try:
                self._raised(seg, name)
            finally:
                seg.unlink()
        with open("/dev/shm/" + name, "wb") as f:
            f.write(b"not a segment" * 1000)
        try:
            with self.assertRaises(shmval.errors.ENOTSHMVAL):
                shmval.Segment(name)
        finally:
            os.unlink("/dev/shm/" + name)

    def _raised(self, seg, name):
        with self.assertRaises(FileExistsError):
            shmval.Segment(name, create=True)
        d, q = seg.Dict(name="d"), seg.List(name="q")
        with self.assertRaises(KeyError):
            d["missing"]
        with self.assertRaises(IndexError):
            q[3]
        with self.assertRaises(ValueError):
            q.remove(b"missing")
        with self.assertRaises(TimeoutError) as cm:
            q.pop_wait(timeout=0.01)
        self.assertIsInstance(cm.exception, queue.Empty)  # what a queue.Queue user catches
        with self.assertRaises(TypeError):
            seg.open_value("d", "i")  # a dict, not a Value
        with self.assertRaises(TypeError):
            q.sort()  # a bytes list
        with self.assertRaises(ValueError):
            seg.Value("i", name="x" * 300)  # too long a name
        lock = seg.Lock(name="lock")
        with self.assertRaises(RuntimeError):
            lock.release()  # not held: EPERM
        with lock, self.assertRaises(RuntimeError):
            lock.acquire()  # EDEADLK, where multiprocessing's Lock would hang
        sem = seg.BoundedSemaphore(1, name="sem")
        with self.assertRaises(ValueError):
            sem.release()  # EOVERFLOW
        b = seg.Barrier(2, name="barrier")
        b.abort()
        with self.assertRaises(threading.BrokenBarrierError):
            b.wait()
        with shmval.Segment(name, readonly=True) as ro, self.assertRaises(PermissionError):
            ro.open_dict("d")["k"] = b"v"  # EACCES
        seg.remove("q")
        with self.assertRaises(ReferenceError):
            len(q)  # ESTALE: the object is gone
        with self.assertRaises(MemoryError):
            for i in range(1000):
                d[str(i)] = bytes(4096)  # ENOSPC: 64 KiB and no max_size
        with self.assertRaises(AttributeError):
            seg.Value("i", lock=False).get_lock()


if __name__ == "__main__":
    unittest.main()
