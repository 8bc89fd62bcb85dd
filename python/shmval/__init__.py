"""shmval: libshmval's shared Values, Arrays, locks, dicts and lists for Python.

A pure-Python binding over ``libshmval.so`` with the standard library's
``ctypes``, shaped like :mod:`multiprocessing`: ``Value``, ``RawValue``,
``Array``, ``RawArray``, ``Lock``, ``RLock``, ``Dict`` and ``List``. Objects
are made in the default arena, which children forked afterwards share (the
``fork`` start method).

The library is found through ``SHMVAL_LIBRARY`` (a path), then next to this
package, then by ``ctypes.util.find_library("shmval")``.

Errors are exceptions derived from :class:`Error` (``.code``, ``.name``) and
from the built-in one Python code expects (``IndexError`` for an index out of
range, ``KeyError`` for a missing key, ``TimeoutError``, ``PermissionError``,
``FileExistsError``, ``FileNotFoundError``, ``ValueError``, ``TypeError``,
``MemoryError``). A lock whose previous holder died is acquired all the same;
:class:`OwnerDeadWarning` is issued and the lock's ``owner_died`` is true until
the next acquire.
"""
import ctypes
import ctypes.util
import glob
import os
import queue
import threading
import time
import warnings
import weakref

__all__ = ["Error", "errors", "codes", "BUILTINS", "KeyMissing", "ItemMissing", "Empty", "OwnerDeadWarning", "Value", "RawValue", "Array", "RawArray", "Lock",
           "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event", "Barrier", "Dict",
           "List", "Segment"]


def _load():
    tried = []
    env = os.environ.get("SHMVAL_LIBRARY")
    candidates = [env] if env else []
    here = os.path.dirname(os.path.abspath(__file__))
    candidates += sorted(glob.glob(os.path.join(here, "libshmval.so*")))
    found = ctypes.util.find_library("shmval")
    if found:
        candidates.append(found)
    for path in candidates:
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append(str(e))
    raise ImportError("libshmval.so not found: tried SHMVAL_LIBRARY (%s), %s/libshmval.so*, and "
                      "ctypes.util.find_library('shmval') (%s)%s; set SHMVAL_LIBRARY to the "
                      "library's path" % (env or "unset", here, found or "nothing",
                                          "".join("; " + t for t in tried)))


_lib, library = _load()  # library: the path of the libshmval.so loaded
_lib.shmval_strerror.restype = ctypes.c_char_p
_lib.shmval_err_name.restype = ctypes.c_char_p
for _f in ("shm_value_ptr", "shm_array_ptr", "shm_value_get_lock", "shm_array_get_lock"):
    getattr(_lib, _f).restype = ctypes.c_void_p
_lib.shm_array_length.restype = ctypes.c_size_t
_lib.shm_lock_acquire_timeout.argtypes = [ctypes.c_void_p, ctypes.c_double]
for _f in ("shm_sem_acquire", "shm_cond_wait", "shm_event_wait"):
    getattr(_lib, _f).argtypes = [ctypes.c_void_p, ctypes.c_double]
_lib.shm_cond_get_lock.restype = ctypes.c_void_p
_lib.shm_sem_create.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p]
_lib.shm_barrier_wait_timeout.argtypes = [ctypes.c_void_p, ctypes.c_double,
                                          ctypes.POINTER(ctypes.c_uint)]
_ACTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_lib.shm_barrier_create.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_double, _ACTION,
                                    ctypes.c_void_p, ctypes.c_void_p]
_lib.shm_list_pop_wait.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_double,
                                   ctypes.c_void_p, ctypes.c_size_t,
                                   ctypes.POINTER(ctypes.c_size_t)]
_lib.shm_list_get.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_size_t,
                              ctypes.POINTER(ctypes.c_size_t)]
_lib.shm_list_pop.argtypes = _lib.shm_list_get.argtypes
_lib.shm_list_insert.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_char_p, ctypes.c_size_t]
_lib.shm_list_set.argtypes = _lib.shm_list_insert.argtypes


def _fn(name):
    """A second function object for a hot call, without argtypes: its callers pass ctypes
    instances (or bytes), which ctypes hands over with less work than converting by argtypes."""
    return _lib[name]


_lock_acquire, _lock_release = _fn("shm_lock_acquire"), _fn("shm_lock_release")
_dict_get, _dict_set, _dict_contains = _fn("shm_dict_get"), _fn("shm_dict_set"), \
    _fn("shm_dict_contains")
_list_append, _list_pop_wait, _list_get = _fn("shm_list_append"), _fn("shm_list_pop_wait"), \
    _fn("shm_list_get")
_value_get, _value_set = _fn("shm_value_get"), _fn("shm_value_set")
_list_append_many, _list_pop_many = _fn("shm_list_append_many"), _fn("shm_list_pop_many")
_size = ctypes.c_size_t
_SIZES = [_size(i) for i in range(256)]  # the common lengths, made once (never changed)
_FOREVER, _FRONT = ctypes.c_double(-1.0), ctypes.c_long(0)

OWNERDEAD = 1


def _codes():
    """The library's error codes, read from the library itself: name (without SHMVAL_) -> code."""
    out = {}
    for code in list(range(-200, 0)) + list(range(-30100, -30000)):
        name = _lib.shmval_err_name(code).decode()
        if name != "SHMVAL_UNKNOWN":
            out[name[len("SHMVAL_"):]] = code
    return out


codes = _codes()
globals().update({"_" + k: v for k, v in codes.items()})


class Error(Exception):
    """A libshmval error: ``code`` is the library's code, ``name`` its constant's name.

    Each code has its own subclass in :data:`errors` (``shmval.errors.ECORRUPT``), which also
    derives from the built-in exception Python code expects for it (see :data:`BUILTINS`).
    """

    def __init__(self, code, what=""):
        name = _lib.shmval_err_name(code).decode()
        msg = _lib.shmval_strerror(code).decode()
        text = "%s%s (%s)" % (what + ": " if what else "", msg, name)
        super().__init__(text)
        # After the built-in's __init__, which may have its own `name` (AttributeError).
        self.code, self.name = code, name
        if isinstance(self, OSError) and code > -30000:
            self.errno, self.strerror = -code, text  # str(): "[Errno N] text"

    @staticmethod
    def from_code(code, what=""):
        """The exception (an instance of the code's class in :data:`errors`) for ``code``."""
        return getattr(errors, _lib.shmval_err_name(code).decode()[len("SHMVAL_"):], Error)(
            code, what)


class OwnerDeadWarning(RuntimeWarning):
    """A lock was acquired whose previous holder died holding it: its data may need repair."""


# The built-in exception each code's class also derives from; the others derive from Error only.
BUILTINS = {"ENOENT": FileNotFoundError, "EEXIST": FileExistsError, "EACCES": PermissionError,
            "EPERM": RuntimeError, "EDEADLK": RuntimeError, "ETIMEDOUT": TimeoutError,
            "ERANGE": IndexError, "EINVAL": ValueError, "EOVERFLOW": ValueError,
            "ETYPE": TypeError, "ENOTATOMIC": TypeError, "ENOMEM": MemoryError,
            "ENOSPC": MemoryError, "EAGAIN": BlockingIOError, "ENFILE": OSError,
            "EMFILE": OSError, "ESTALE": ReferenceError, "ENOLOCK": AttributeError,
            "EBROKEN": threading.BrokenBarrierError}


class _Namespace:
    def __repr__(self):
        return "<shmval.errors: %s>" % ", ".join(sorted(vars(self)))


errors = _Namespace()
for _name, _code in codes.items():
    _bases = (Error, BUILTINS[_name]) if _name in BUILTINS else (Error,)
    setattr(errors, _name, type(_name, _bases, {"__module__": __name__ + ".errors",
                                                "__qualname__": _name}))


class KeyMissing(Error, KeyError):
    """A Dict has no such key (code ENOENT)."""


class ItemMissing(Error, ValueError):
    """A List has no such item: ``index``/``remove`` (code ENOENT), as Python's ValueError."""


class Empty(errors.ETIMEDOUT, queue.Empty):
    """``List.pop_wait`` timed out: a TimeoutError and the standard ``queue.Empty``."""


def _check(rc, what="", missing=None):
    """Raise for a negative code (ENOENT as ``missing`` where given); return it otherwise."""
    if rc >= 0:
        return rc
    if missing is not None and rc == _ENOENT:
        raise missing(rc, what)
    raise Error.from_code(rc, what)


# Python's typecodes are libshmval's type letters; ctypes types for the values.
_CTYPES = {"c": ctypes.c_char, "b": ctypes.c_byte, "B": ctypes.c_ubyte, "?": ctypes.c_bool,
           "u": ctypes.c_wchar, "h": ctypes.c_short, "H": ctypes.c_ushort, "i": ctypes.c_int,
           "I": ctypes.c_uint, "l": ctypes.c_long, "L": ctypes.c_ulong, "q": ctypes.c_longlong,
           "Q": ctypes.c_ulonglong, "f": ctypes.c_float, "d": ctypes.c_double}


class _Opts(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint), ("lock", ctypes.c_void_p),
                ("segment", ctypes.c_void_p), ("name", ctypes.c_char_p),
                ("max_size", ctypes.c_size_t)]


_RAW, _NONRECURSIVE = 1, 2


def _ctype(typecode):
    try:
        return _CTYPES[typecode]
    except KeyError:
        raise ValueError("unknown typecode %r" % (typecode,)) from None


class _LockBase:
    """A process-shared robust lock: acquire/release, a context manager.

    The wrapper remembers which thread of this process holds the lock through
    it, so that a Value's or Array's access inside ``with v.get_lock():`` reads
    the memory directly instead of taking the (recursive) lock again.
    """

    def __init__(self, handle):
        self._h = handle
        self.owner_died = False
        self._holder = None  # the thread that holds the lock through this wrapper
        self._depth = 0
        _lock_wrappers.add(self)

    def _held(self, rc):
        """After a successful acquire (rc 0 or OWNERDEAD): note the holder; warn of a death."""
        me = _get_ident()
        if self._holder == me:
            self._depth += 1
        else:
            self._holder, self._depth = me, 1
        self.owner_died = rc == OWNERDEAD
        if self.owner_died:
            warnings.warn("the lock's previous holder died holding it", OwnerDeadWarning, 3)

    def acquire(self, block=True, timeout=None):
        if not block:
            rc = _lib.shm_lock_try_acquire(self._h)
            if rc == _EBUSY:
                return False
        elif timeout is None or timeout < 0:
            rc = _lock_acquire(self._h)
        else:
            rc = _lib.shm_lock_acquire_timeout(self._h, float(timeout))
            if rc in (_ETIMEDOUT, _EBUSY):  # EBUSY: a timeout of 0, held
                return False
        self._held(_check(rc, "acquire"))
        return True

    def release(self):
        if self._holder == _get_ident():  # before the lock is free for another thread
            self._depth -= 1
            if self._depth == 0:
                self._holder = None
        rc = _lock_release(self._h)
        if rc:
            _check(rc, "release")

    def __enter__(self):
        rc = _lock_acquire(self._h)
        if rc == 0 and self._holder is None:  # the common case, in short
            self._holder, self._depth, self.owner_died = _get_ident(), 1, False
        else:
            self._held(_check(rc, "acquire"))
        return self

    def __exit__(self, *exc):
        if self._depth == 1:  # the common case of release(), in short
            self._holder, self._depth = None, 0
            rc = _lock_release(self._h)
            if rc:
                _check(rc, "release")
        else:
            self.release()

    def _died(self, rc):
        """A call that took this lock inside the library returned ``rc`` (OWNERDEAD or 0)."""
        self.owner_died = rc == OWNERDEAD
        if self.owner_died:
            warnings.warn("the lock's previous holder died holding it", OwnerDeadWarning, 3)


_lock_wrappers = weakref.WeakSet()
_get_ident = threading.get_ident


def _forget_holders():
    """In a forked child no lock is held by this process: the parent's thread holds it."""
    for lk in list(_lock_wrappers):
        lk._holder, lk._depth = None, 0


os.register_at_fork(after_in_child=_forget_holders)


class Lock(_LockBase):
    """``multiprocessing.Lock``: non-recursive, shared with children forked after it is made."""

    _flags = _NONRECURSIVE

    def __init__(self):
        h = ctypes.c_void_p()
        _check(_lib.shm_lock_create(ctypes.byref(h), ctypes.byref(_Opts(flags=self._flags))),
               "Lock")
        super().__init__(h)


class RLock(Lock):
    """``multiprocessing.RLock``: recursive."""

    _flags = 0


class _HasLock:
    """An object with a lock in ``_lock`` that it stands for: acquire, release, ``with``."""

    def acquire(self, *a, **k):
        return self._lock.acquire(*a, **k)

    def release(self):
        self._lock.release()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)


def _seconds(block, timeout):
    """Python's (block, timeout) as the library's seconds: 0 tries once, negative waits."""
    if not block:
        return 0.0
    return -1.0 if timeout is None else max(0.0, float(timeout))


class _Shared:
    """Where a named object lives, so that it pickles to (segment, name, kind) and back."""

    _where = None

    def _named(self, segment, name, kind, typecode):
        if segment is not None and name is not None:
            self._where = (segment.name, name, kind, typecode)
        return self

    def __reduce__(self):
        if self._where is None:
            raise TypeError("%s in the default arena is shared with fork()ed children only "
                            "(multiprocessing's 'fork' start method); to pass it to 'spawn' or "
                            "'forkserver' workers, make it by name in a Segment"
                            % type(self).__name__)
        return (_reopen, self._where)


_open_segments = {}


def _reopen(segment, name, kind, typecode):
    seg = _open_segments.get(segment)
    if seg is None:
        seg = _open_segments[segment] = Segment(segment)
    return getattr(seg, "open_" + kind)(name, typecode) if typecode else \
        getattr(seg, "open_" + kind)(name)


def _create(fn, what, *args, segment=None, name=None, flags=0):
    h = ctypes.c_void_p()
    opts = _opts(True, segment, name)
    opts.flags = flags
    _check(fn(ctypes.byref(h), *args, ctypes.byref(opts)), what)
    return h


class Semaphore(_Shared):
    """``multiprocessing.Semaphore(value)``: acquire(block, timeout), release(), get_value()."""

    _bounded = 0

    def __init__(self, value=1, *, segment=None, name=None, handle=None):
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._h = handle or _create(_lib.shm_sem_create, "Semaphore", ctypes.c_long(value),
                                    segment=segment, name=name, flags=self._bounded)
        self._seg = segment
        self._named(segment, name, "semaphore", None)

    def acquire(self, block=True, timeout=None):
        rc = _lib.shm_sem_acquire(self._h, _seconds(block, timeout))
        if rc in (_ETIMEDOUT, _EBUSY):
            return False
        _check(rc, "acquire")
        return True

    def release(self):
        _check(_lib.shm_sem_release(self._h), "Semaphore released too many times")

    def get_value(self):
        v = ctypes.c_uint(0)
        _check(_lib.shm_sem_value(self._h, ctypes.byref(v)), "get_value")
        return v.value

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class BoundedSemaphore(Semaphore):
    """``multiprocessing.BoundedSemaphore``: releasing past the initial value is ValueError."""

    _bounded = 1 << 4


class Event(_Shared):
    """``multiprocessing.Event``: set(), clear(), is_set(), wait(timeout)."""

    def __init__(self, *, segment=None, name=None, handle=None):
        self._h = handle or _create(_lib.shm_event_create, "Event", segment=segment, name=name)
        self._seg = segment
        self._named(segment, name, "event", None)

    def set(self):
        _check(_lib.shm_event_set(self._h), "set")

    def clear(self):
        _check(_lib.shm_event_clear(self._h), "clear")

    def is_set(self):
        return _check(_lib.shm_event_is_set(self._h), "is_set") == 1

    def wait(self, timeout=None):
        rc = _lib.shm_event_wait(self._h, _seconds(True, timeout))
        if rc in (_ETIMEDOUT, _EBUSY):  # EBUSY: a timeout of 0, not set
            return False
        _check(rc, "wait")
        return True


class Condition(_HasLock, _Shared):
    """``multiprocessing.Condition(lock=None)``: wait, wait_for, notify, notify_all."""

    def __init__(self, lock=None, *, segment=None, name=None, handle=None):
        lh = lock._h.value if isinstance(lock, _LockBase) else None
        self._h = handle or _create(_lib.shm_cond_create, "Condition", ctypes.c_void_p(lh),
                                    segment=segment, name=name)
        self._seg = segment
        self._named(segment, name, "condition", None)
        self._lock = _LockBase(ctypes.c_void_p(_lib.shm_cond_get_lock(self._h)))

    def wait(self, timeout=None):
        rc = _lib.shm_cond_wait(self._h, _seconds(True, timeout))
        if rc == _ETIMEDOUT:
            return False
        if _check(rc, "wait") == OWNERDEAD:
            warnings.warn("the condition's lock holder died", OwnerDeadWarning, 2)
        return True

    def wait_for(self, predicate, timeout=None):
        end = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                break
            self.wait(left)
            result = predicate()
        return result

    def notify(self, n=1):
        _check(_lib.shm_cond_notify(self._h, ctypes.c_uint(n)), "notify")

    def notify_all(self):
        _check(_lib.shm_cond_notify_all(self._h), "notify_all")


class Barrier(_Shared):
    """``multiprocessing.Barrier(parties, action=None, timeout=None)``.

    The action runs in the last party to arrive; it is this process's (and its
    fork()ed children's), as in the C library.
    """

    def __init__(self, parties, action=None, timeout=None, *, segment=None, name=None,
                 handle=None):
        self._action = _ACTION(lambda ctx: action()) if action else _ACTION()  # NULL: none
        self._h = handle or _create(_lib.shm_barrier_create, "Barrier", ctypes.c_uint(parties),
                                    ctypes.c_double(-1.0 if timeout is None else timeout),
                                    self._action, None, segment=segment, name=name)
        self._seg = segment
        self._named(segment, name, "barrier", None)

    def wait(self, timeout=None):
        i = ctypes.c_uint(0)
        if timeout is None:
            rc = _lib.shm_barrier_wait(self._h, ctypes.byref(i))
        else:
            rc = _lib.shm_barrier_wait_timeout(self._h, float(timeout), ctypes.byref(i))
        if rc == _ETIMEDOUT:
            raise threading.BrokenBarrierError("timed out")
        _check(rc, "wait")
        return i.value

    def abort(self):
        _check(_lib.shm_barrier_abort(self._h), "abort")

    def reset(self):
        _check(_lib.shm_barrier_reset(self._h), "reset")

    @property
    def broken(self):
        return _check(_lib.shm_barrier_broken(self._h), "broken") == 1

    @property
    def n_waiting(self):
        return _check(_lib.shm_barrier_n_waiting(self._h), "n_waiting")

    @property
    def parties(self):
        return _check(_lib.shm_barrier_parties(self._h), "parties")


def _opts(lock=True, segment=None, name=None, max_size=0):
    if not (lock is None or isinstance(lock, (bool, _LockBase))):
        # multiprocessing fails the same way when it calls the lock's acquire.
        raise AttributeError("lock must be True, False, None or a shmval Lock/RLock, not %r"
                             % (lock,))
    o = _Opts(flags=_RAW if lock is False else 0, max_size=max_size)
    if isinstance(lock, _LockBase):
        o.lock = lock._h.value
    if segment is not None:
        o.segment = segment._h.value
        if name is not None:
            o.name = _as_bytes(name, "name")
    elif name is not None:
        raise ValueError("a name needs a Segment: segment.Value(..., name=...)")
    return o


class _Value(_HasLock, _Shared):
    """A Value with a lock (``multiprocessing.Value``): ``value`` under the lock, ``get_lock()``,
    ``get_obj()``; a context manager over the lock."""

    @property
    def value(self):
        lk = self._lock
        if lk._holder == _get_ident():  # inside `with v.get_lock()`: read directly
            return self._obj.value
        # One call that takes the lock, copies and releases, into this thread's buffer.
        t = _borrow()
        rc = _value_get(self._h, t[0])
        view = t[4].get(self._type)
        if view is None:
            view = t[4][self._type] = self._type.from_buffer(t[0])
        v = view.value
        t[5] = 0
        if rc:
            lk._died(_check(rc, "value"))
        return v

    @value.setter
    def value(self, v):
        lk = self._lock
        if lk._holder == _get_ident():
            self._obj.value = v
            return
        rc = _value_set(self._h, ctypes.byref(self._type(v)))
        if rc:
            lk._died(_check(rc, "value"))

    def get_lock(self):
        return self._lock

    def get_obj(self):
        return self._obj

    def __repr__(self):
        return "<shmval.Value(%r, %r)>" % (self._typecode, self._obj.value)


class _RawMixin(_Shared):
    """What a RawValue adds to its ctypes object over the shared memory (as
    ``multiprocessing.RawValue`` is a ctypes object): where it lives."""

    def __repr__(self):
        return "<shmval.RawValue(%r, %r)>" % (self._typecode, self.value)


_raw_types = {}


def _make_value(typecode, value, lock, segment=None, name=None, handle=None):
    """A Value (locked) or a RawValue (a ctypes object), made or opened by ``handle``."""
    t = _ctype(typecode)
    h = handle
    if h is None:
        h = ctypes.c_void_p()
        init = t(value)
        opts = _opts(lock, segment, name)
        _check(_lib.shm_value_create(ctypes.byref(h), ctypes.c_int(ord(typecode)),
                                     ctypes.byref(init), ctypes.byref(opts)), "Value")
    ptr = _lib.shm_value_ptr(h)
    lh = _lib.shm_value_get_lock(h)
    lk = lock if isinstance(lock, _LockBase) else _LockBase(ctypes.c_void_p(lh)) if lh else None
    if lk is None:
        cls = _raw_types.get(t)
        if cls is None:
            cls = _raw_types[t] = type("RawValue", (_RawMixin, t), {"__module__": __name__})
        v = cls.from_address(ptr)
    else:
        v = _Value()
        v._obj, v._type, v._lock = t.from_address(ptr), t, lk
    v._h = h
    v._seg = segment  # keeps the segment mapped while the object is used
    v._typecode = typecode
    return v._named(segment, name, "value", typecode)


def Value(typecode, value=0, *, lock=True):
    """``multiprocessing.Value(typecode, value, lock=True)``; ``lock=False`` is a RawValue."""
    return _make_value(typecode, value, lock)


def RawValue(typecode, value=0):
    """``multiprocessing.RawValue``: a ctypes object over the shared memory, no lock."""
    return _make_value(typecode, value, False)


class _ArrayMixin(_Shared):
    """What a shared Array adds to its ctypes array: the lock around indexing.

    The object is a ctypes array over the shared memory, so ``memoryview(a)``
    and ``numpy.frombuffer(a, dtype)`` see that memory with no copy (and no
    lock, like ``get_obj()``).
    """

    def _locked(self, fn):
        if self._lock is None:
            return fn()
        with self._lock:
            return fn()

    def __getitem__(self, i):
        lk = self._lock
        if lk is None or lk._holder == _get_ident():  # raw, or inside `with a.get_lock()`
            return self._base.__getitem__(self, i)
        with lk:
            return self._base.__getitem__(self, i)

    def __setitem__(self, i, v):
        lk = self._lock
        if lk is None or lk._holder == _get_ident():
            self._base.__setitem__(self, i, v)
            return
        with lk:
            self._base.__setitem__(self, i, v)

    def __iter__(self):
        return iter(self[:])

    @property
    def get_lock(self):
        """As Value's: a RawArray has none (AttributeError, and hasattr() is False)."""
        if self._lock is None:
            raise AttributeError("a RawArray has no lock")
        return lambda: self._lock

    @property
    def get_obj(self):
        if self._lock is None:
            raise AttributeError("a RawArray has no get_obj: it is the object")
        return lambda: self

    def _text(self, attr, codes, *v):
        """The ctypes array's ``value`` or ``raw`` (read, or written with @p v), under the lock."""
        if self._typecode not in codes:
            raise AttributeError("%s is for %s arrays" % (attr, " and ".join(map(repr, codes))))
        d = getattr(self._base, attr)
        return self._locked(lambda: d.__set__(self, *v) if v else d.__get__(self))

    @property
    def value(self):
        return self._text("value", "cu")

    @value.setter
    def value(self, v):
        self._text("value", "cu", v)

    @property
    def raw(self):
        return self._text("raw", "c")

    @raw.setter
    def raw(self, v):
        self._text("raw", "c", v)

    def __repr__(self):
        return "<shmval.Array(%r, %r)>" % (self._typecode, self[:])


_array_types = {}


def _Array(typecode, size_or_init, lock, segment=None, name=None, handle=None):
    ctype = _ctype(typecode)
    h = handle
    if h is None:
        if isinstance(size_or_init, int):
            n, init = size_or_init, None
        else:
            items = list(size_or_init)
            n, init = len(items), (ctype * len(items))(*items)
        h = ctypes.c_void_p()
        opts = _opts(lock, segment, name)
        _check(_lib.shm_array_create(ctypes.byref(h), ctypes.c_int(ord(typecode)),
                                     ctypes.c_size_t(n), init, ctypes.byref(opts)), "Array")
    else:
        n = _lib.shm_array_length(h)
    cls = _array_types.get((ctype, n))
    if cls is None:
        base = ctype * n
        cls = _array_types[(ctype, n)] = type("Array", (_ArrayMixin, base), {"_base": base})
    a = cls.from_address(_lib.shm_array_ptr(h))
    a._h = h
    a._seg = segment
    a._typecode = typecode
    lh = _lib.shm_array_get_lock(h)
    a._lock = lock if isinstance(lock, _LockBase) else \
        _LockBase(ctypes.c_void_p(lh)) if lh else None
    a._named(segment, name, "array", typecode)
    return a


def Array(typecode, size_or_initializer, *, lock=True):
    """``multiprocessing.Array(typecode, size_or_initializer, lock=True)``."""
    return _Array(typecode, size_or_initializer, lock)


def RawArray(typecode, size_or_initializer):
    """``multiprocessing.RawArray``: no lock."""
    return _Array(typecode, size_or_initializer, False)


def _as_bytes(x, what):
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    raise TypeError("%s must be bytes or str, not %s" % (what, type(x).__name__))


_SCRATCH = 4096


def _new_scratch():
    """A buffer for values copied out: [buffer, its size, &length, length, ctypes views,
    busy]."""
    buf, n = ctypes.create_string_buffer(_SCRATCH), _size(0)
    return [buf, _size(_SCRATCH), ctypes.byref(n), n, {}, 0]


def _borrow():
    """This thread's scratch buffer, marked busy; a new one (which becomes this thread's)
    when the current one is busy: a signal handler or a finaliser interrupted its user."""
    t = _scratch.all
    if t[5]:
        t = _scratch.all = _new_scratch()
    t[5] = 1
    return t


class _Scratch(threading.local):
    """This thread's buffers for values copied out (a ctypes call runs without the GIL, so
    threads cannot share one); larger values take :func:`_fetch`'s sized buffer.

    A call marks ``all`` busy until it has copied its value out: code that interrupts it in
    the same thread (a signal handler, a finaliser) and reads a value too finds it busy and
    takes a new buffer instead of overwriting the first's.
    """

    def __init__(self):
        self.all = _new_scratch()
        self.batch = None  # pop_many's (buffer, lengths, count), made on first use


_scratch = _Scratch()


def _fetch(call, what, key=False):
    """Call ``call(buf, cap, &n)``, growing the buffer on ENOBUFS; the bytes."""
    n = ctypes.c_size_t(0)
    cap = 256
    while True:
        buf = ctypes.create_string_buffer(cap)
        rc = call(buf, cap, ctypes.byref(n))
        if rc == _ENOBUFS:
            cap = max(n.value, cap * 2)
            continue
        _check(rc, what, KeyMissing if key else None)
        return buf.raw[:n.value]


class _Values:
    """How a Dict's values or a List's items are stored: bytes, one typed element, or a codec's."""

    def __init__(self, typecode, codec):
        if typecode is not None and codec is not None:
            raise ValueError("a typecode or a codec, not both")
        self.typecode = typecode
        if typecode is not None:
            t = _ctype(typecode)
            self.encode = lambda v: bytes(t(v))
            self.decode = lambda b: t.from_buffer_copy(b).value
        elif codec is not None:
            self.encode, self.decode = codec.dumps, codec.loads
        else:
            self.encode = lambda v: _as_bytes(v, "value")
            self.decode = lambda b: b
        self.codec = codec
        self.plain = typecode is None and codec is None  # bytes in, bytes out


_lib.shm_dict_value_type.restype = ctypes.c_int
_lib.shm_list_item_type.restype = ctypes.c_int


def _stored_type(fn, h):
    t = fn(h, None)
    return chr(t) if t and chr(t) in _CTYPES else None


class _Container(_Shared):
    """What a Dict and a List share: made (or opened) with a value type or a codec."""

    _calls = {"dict": ("shm_dict_create", "shm_dict_value_type"),
              "list": ("shm_list_create", "shm_list_item_type")}

    def _setup(self, kind, typecode, codec, max_size, segment, name, handle):
        create, stored = (getattr(_lib, f) for f in self._calls[kind])
        h = handle
        if h is None:
            if typecode is not None:
                _ctype(typecode)
            h = ctypes.c_void_p()
            opts = _opts(True, segment, name, max_size)
            _check(create(ctypes.byref(h), ord(typecode) if typecode else 0, ctypes.byref(opts)),
                   kind.capitalize())
        else:
            typecode = _stored_type(stored, h)
        self._h = h
        self._seg = segment
        self._v = _Values(typecode, codec)
        self._plain = self._v.plain
        self._ctype = _ctype(typecode) if typecode is not None else None
        self._named(segment, name, kind, None)


class Dict(_Container):
    """``Manager().dict()`` without the server. Keys are bytes (str: UTF-8); values are bytes,
    one element of ``typecode`` (``Dict('l')``: a counter dict, with :meth:`add`), or any object
    through ``codec`` (an object with ``dumps`` and ``loads``, e.g. :mod:`pickle`; the codec is
    this process's: give it to ``open_dict`` too)."""

    def __init__(self, typecode=None, *, codec=None, max_size=0, segment=None, name=None,
                 handle=None):
        self._setup("dict", typecode, codec, max_size, segment, name, handle)

    def __setitem__(self, k, v):
        if type(k) is not bytes:
            k = _as_bytes(k, "key")
        if type(v) is not bytes or not self._plain:
            v = self._v.encode(v)
        kl, vl = len(k), len(v)
        rc = _dict_set(self._h, k, _SIZES[kl] if kl < 256 else _size(kl), v,
                       _SIZES[vl] if vl < 256 else _size(vl))
        if rc:
            _check(rc, "dict set")

    def __getitem__(self, k):
        if type(k) is not bytes:
            k = _as_bytes(k, "key")
        t = _scratch.all  # _borrow(), inline on the dict's hot path
        if t[5]:
            t = _scratch.all = _new_scratch()
        t[5] = 1
        buf, cap, nref, n, _, _ = t
        kl = len(k)
        rc = _dict_get(self._h, k, _SIZES[kl] if kl < 256 else _size(kl), buf, cap, nref)
        v = buf[:n.value] if rc == 0 else None
        t[5] = 0
        if rc == _ENOBUFS:  # larger than the scratch buffer: one of its size
            v = _fetch(lambda b, c, n: _dict_get(self._h, k, _size(kl), b, _size(c), n),
                       repr(k), True)
        elif rc != 0:
            _check(rc, repr(k), KeyMissing)
        return v if self._plain else self._v.decode(v)

    def add(self, k, delta=1):
        """``d[k] += delta`` for a numeric typed dict (a missing key counts as 0); the old value."""
        if self._v.typecode is None:
            raise errors.ETYPE(_ETYPE, "add needs a typed dict")
        t = _ctype(self._v.typecode)
        k, d, old = _as_bytes(k, "key"), t(delta), t()
        _check(_lib.shm_dict_add(self._h, k, ctypes.c_size_t(len(k)), ctypes.byref(d),
                                 ctypes.byref(old)), "add")
        return old.value

    def get(self, k, default=None):
        try:
            return self[k]
        except KeyError:
            return default

    def __contains__(self, k):
        if type(k) is not bytes:
            k = _as_bytes(k, "key")
        return _check(_dict_contains(self._h, k, _size(len(k))), "in") == 1

    def __delitem__(self, k):
        k = _as_bytes(k, "key")
        _check(_lib.shm_dict_del(self._h, k, ctypes.c_size_t(len(k))), repr(k), KeyMissing)

    def pop(self, k, *default):
        kb = _as_bytes(k, "key")
        try:
            return self._v.decode(_fetch(lambda b, c, n: _lib.shm_dict_pop(
                self._h, kb, ctypes.c_size_t(len(kb)), b, ctypes.c_size_t(c), n), repr(kb), True))
        except KeyError:
            if default:
                return default[0]
            raise

    def __len__(self):
        n = ctypes.c_size_t(0)
        _check(_lib.shm_dict_len(self._h, ctypes.byref(n)), "len")
        return n.value

    def clear(self):
        _check(_lib.shm_dict_clear(self._h), "clear")

    def items(self):
        out = []
        cb_t = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                ctypes.c_size_t, ctypes.c_void_p)

        def cb(k, kl, v, vl, ctx):
            out.append((ctypes.string_at(k, kl) if kl else b"",
                        ctypes.string_at(v, vl) if vl else b""))
            return 0
        _check(_lib.shm_dict_foreach(self._h, cb_t(cb), None), "items")
        return [(k, self._v.decode(v)) for k, v in out]

    def keys(self):
        return [k for k, _ in self.items()]

    def values(self):
        return [v for _, v in self.items()]

    def __iter__(self):
        return iter(self.keys())

    def copy(self):
        """A plain dict of the items (one snapshot)."""
        return dict(self.items())

    def setdefault(self, k, default=None):
        """``d.setdefault(k, default)`` in one step: the value found, or ``default`` inserted."""
        if default is None and self._v.codec is None:
            default = b"" if self._v.typecode is None else 0  # what this dict can store
        kb, dv = _as_bytes(k, "key"), self._v.encode(default)
        return self._v.decode(_fetch(lambda b, c, n: _lib.shm_dict_setdefault(
            self._h, kb, ctypes.c_size_t(len(kb)), dv, ctypes.c_size_t(len(dv)), b,
            ctypes.c_size_t(c), n), "setdefault"))

    def update(self, other=(), **kw):
        for k, v in (other.items() if hasattr(other, "items") else other):
            self[k] = v
        for k, v in kw.items():
            self[k] = v

    def popitem(self):
        """Remove and return some (key, value); KeyError when empty."""
        while True:
            keys = self.keys()
            if not keys:
                raise KeyMissing(_ENOENT, "popitem(): dictionary is empty")
            try:
                return keys[-1], self.pop(keys[-1])
            except KeyError:
                continue  # another process took it first

    def __repr__(self):
        return "<shmval.Dict %r>" % (self.copy(),)


class List(_Container):
    """``Manager().list()`` and a queue in one. Items are bytes (str: UTF-8), one element of
    ``typecode``, or any object through ``codec`` (as for :class:`Dict`)."""

    def __init__(self, items=(), typecode=None, *, codec=None, max_size=0, segment=None,
                 name=None, handle=None):
        self._setup("list", typecode, codec, max_size, segment, name, handle)
        for x in items:
            self.append(x)

    def append(self, x):
        if type(x) is not bytes or not self._plain:
            x = self._v.encode(x)
        n = len(x)
        rc = _list_append(self._h, x, _SIZES[n] if n < 256 else _size(n))
        if rc:
            _check(rc, "append")

    def _take(self, call, what):
        """An item copied out by ``call(buf, cap, nref)``: the scratch buffer, else a sized one."""
        t = _borrow()
        buf, cap, nref, n, _, _ = t
        rc = call(buf, cap, nref)
        v = buf[:n.value] if rc == 0 else None
        t[5] = 0
        if rc == _ENOBUFS:
            v = _fetch(lambda b, c, n: call(b, _size(c), n), what)
        elif rc != 0:
            _check(rc, what)
        return v if self._plain else self._v.decode(v)

    def insert(self, i, x):
        x = self._v.encode(x)
        _check(_lib.shm_list_insert(self._h, i, x, len(x)), "insert")

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._snapshot()[i]
        i = ctypes.c_long(i)
        return self._take(lambda b, c, n: _list_get(self._h, i, b, c, n), "list index")

    def __setitem__(self, i, x):
        x = self._v.encode(x)
        _check(_lib.shm_list_set(self._h, i, x, len(x)), "list index")

    def pop(self, i=-1):
        return self._v.decode(_fetch(lambda b, c, n: _lib.shm_list_pop(self._h, i, b, c, n),
                                     "pop"))

    def pop_wait(self, i=0, timeout=None):
        """Pop from the front (0) or back (-1), waiting up to ``timeout`` seconds (None: forever);
        :class:`Empty` (a TimeoutError and a ``queue.Empty``) when nothing came."""
        t = _FOREVER if timeout is None else ctypes.c_double(timeout)
        i = _FRONT if i == 0 else ctypes.c_long(i)
        sc = _borrow()
        buf, cap, nref, n, _, _ = sc
        rc = _list_pop_wait(self._h, i, t, buf, cap, nref)
        v = buf[:n.value] if rc == 0 else None
        sc[5] = 0
        if rc == 0:  # the common case, in short
            return v if self._plain else self._v.decode(v)
        if rc == _ETIMEDOUT:
            raise Empty(_ETIMEDOUT, "pop_wait")
        return self._take(lambda b, c, n: _list_pop_wait(self._h, i, t, b, c, n), "pop_wait")

    def __len__(self):
        n = ctypes.c_size_t(0)
        _check(_lib.shm_list_len(self._h, ctypes.byref(n)), "len")
        return n.value

    def _snapshot(self):
        """Every item, as one consistent snapshot (the list may change meanwhile)."""
        out = []
        cb_t = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                                ctypes.c_void_p)

        def cb(i, item, n, ctx):
            out.append(ctypes.string_at(item, n) if n else b"")
            return 0
        _check(_lib.shm_list_foreach(self._h, cb_t(cb), None), "list")
        return [self._v.decode(x) for x in out]

    def __iter__(self):
        return iter(self._snapshot())

    def __contains__(self, x):
        try:
            self.index(x)
            return True
        except ValueError:
            return False

    def index(self, x):
        """The first item equal to ``x`` (the same stored bytes); ValueError if none."""
        x, i = self._v.encode(x), ctypes.c_size_t(0)
        _check(_lib.shm_list_index(self._h, x, ctypes.c_size_t(len(x)), ctypes.byref(i)),
               "not in list", ItemMissing)
        return i.value

    def count(self, x):
        return self._snapshot().count(x)

    def remove(self, x):
        x = self._v.encode(x)
        _check(_lib.shm_list_remove(self._h, x, ctypes.c_size_t(len(x))), "list.remove(x): x not "
               "in list", ItemMissing)

    def extend(self, items):
        """Append every item, a batch per library call: a typed list takes them all in one
        change (all or none); a bytes or codec list in calls of up to 4096 items (one lock hold
        each; an error leaves the failing call's items out, a crash a prefix of them in)."""
        items = list(items)
        if self._v.typecode is not None:
            if items:
                arr = (_ctype(self._v.typecode) * len(items))(*items)
                _check(_lib.shm_list_extend(self._h, arr, _size(len(items))), "extend")
            return
        if not self._plain:
            items = [self._v.encode(x) for x in items]
        else:
            items = [x if type(x) is bytes else _as_bytes(x, "item") for x in items]
        for at in range(0, len(items), 4096):
            chunk = items[at:at + 4096]
            lens = (_size * len(chunk))(*map(len, chunk))
            _check(_list_append_many(self._h, b"".join(chunk), lens, _size(len(chunk))),
                   "extend")

    def pop_many(self, max_items=256, i=0, timeout=None):
        """Up to ``max_items`` items from the front (0) or the back (-1) in one call, as many as
        are there (waiting as :meth:`pop_wait` for the first): a queue consumer's batch, in the
        order repeated pops give. :class:`Empty` when nothing came."""
        t = _FOREVER if timeout is None else ctypes.c_double(timeout)
        i = _FRONT if i == 0 else ctypes.c_long(i)
        s = _scratch
        b, s.batch = s.batch, None  # borrowed, as _Scratch.all is
        if b is None or len(b[1]) < max_items:
            b = (ctypes.create_string_buffer(1 << 16), (_size * max_items)(), _size())
        buf, lens, count = b
        while True:
            rc = _list_pop_many(self._h, i, _size(max_items), t, buf, _size(len(buf)), lens,
                                ctypes.byref(count))
            if rc != _ENOBUFS:
                break
            buf = ctypes.create_string_buffer(lens[0])  # one item larger than the buffer
            if len(buf) > len(b[0]):
                b = (buf, lens, count)
        if rc != 0:
            s.batch = b
            if rc == _ETIMEDOUT:
                raise Empty(_ETIMEDOUT, "pop_many")
            _check(rc, "pop_many")
        k = count.value
        if self._v.typecode is not None:
            out = list((self._ctype * k).from_buffer_copy(buf, 0))
            s.batch = b
            return out
        sizes = lens[:k]
        data = buf.raw[:sum(sizes)]
        s.batch = b
        out, at = [], 0
        for n in sizes:
            out.append(data[at:at + n])
            at += n
        return out if self._plain else [self._v.decode(x) for x in out]

    def __delitem__(self, i):
        if isinstance(i, slice):
            raise TypeError("shmval.List deletes one index at a time (del l[i]); no slices")
        self.pop(i)

    def reverse(self):
        _check(_lib.shm_list_reverse(self._h), "reverse")

    def sort(self, *, reverse=False):
        """Sort a typed list by value in one change (bytes and codec lists: TypeError)."""
        if self._v.typecode is None:
            raise errors.ETYPE(_ETYPE, "sort needs a typed list")
        _check(_lib.shm_list_sort(self._h, None), "sort")
        if reverse:
            self.reverse()

    def __iadd__(self, items):
        self.extend(items)
        return self

    def __imul__(self, n):
        items = self._snapshot()
        if n <= 0:
            self.clear()
        else:
            self.extend(items * (n - 1))
        return self

    def __add__(self, other):
        return self._snapshot() + list(other)

    def __radd__(self, other):
        return list(other) + self._snapshot()

    def __mul__(self, n):
        return self._snapshot() * n

    __rmul__ = __mul__

    def __eq__(self, other):
        if isinstance(other, (list, tuple, List)):
            return self._snapshot() == list(other)
        return NotImplemented

    __hash__ = None

    def clear(self):
        _check(_lib.shm_list_clear(self._h), "clear")

    def __repr__(self):
        return "<shmval.List %r>" % (self._snapshot(),)


class _NamedLock(_LockBase, _Shared):
    """A Lock or RLock made in (or opened from) a Segment."""

    def __init__(self, segment, name, handle):
        super().__init__(handle)
        self._seg = segment
        self._named(segment, name, "lock", None)


class _SegOpts(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint), ("mode", ctypes.c_uint), ("max_attach", ctypes.c_uint),
                ("timeout", ctypes.c_double), ("max_size", ctypes.c_size_t)]


_OPEN_OR_CREATE, _RDONLY, _AUTO_UNLINK = 1, 2, 4


class Segment:
    """A named segment (a file in /dev/shm) that unrelated processes open by name.

    ``Segment(name)`` opens it; ``Segment(name, create=True, size=..., max_size=...,
    auto_unlink=False, exist_ok=False, mode=0o600)`` creates it. A context manager that closes it.
    Objects made in it by name (``seg.Value('d', 0, name='t')``) are opened elsewhere with
    ``seg.open_value('t', 'd')`` and pickle as (segment, name, kind), so they pass to ``spawn``
    and ``forkserver`` workers.
    """

    def __init__(self, name, create=False, size=1 << 20, *, max_size=0, auto_unlink=False,
                 exist_ok=False, readonly=False, mode=0o600):
        self.name = name
        h = ctypes.c_void_p()
        o = _SegOpts(mode=mode, max_size=max_size)
        bname = _as_bytes(name, "name")
        if create:
            o.flags = (_AUTO_UNLINK if auto_unlink else 0) | (_OPEN_OR_CREATE if exist_ok else 0)
            _check(_lib.shm_segment_create(ctypes.byref(h), bname, ctypes.c_size_t(size),
                                           ctypes.byref(o)), "segment " + name)
        else:
            o.flags = _RDONLY if readonly else 0
            _check(_lib.shm_segment_open(ctypes.byref(h), bname, ctypes.byref(o)),
                   "segment " + name)
        self._h = h

    def close(self):
        if self._h:
            _check(_lib.shm_segment_close(self._h), "close")
            self._h = None

    def unlink(self):
        _check(_lib.shm_segment_unlink(_as_bytes(self.name, "name")), "unlink")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Making objects by name.
    def Value(self, typecode, value=0, *, name=None, lock=True):
        return _make_value(typecode, value, lock, self, name)

    def Array(self, typecode, size_or_initializer, *, name=None, lock=True):
        return _Array(typecode, size_or_initializer, lock, self, name)

    def Dict(self, typecode=None, *, codec=None, name=None):
        return Dict(typecode, codec=codec, segment=self, name=name)

    def List(self, items=(), typecode=None, *, codec=None, name=None):
        return List(items, typecode, codec=codec, segment=self, name=name)

    # Opening them.
    def _open(self, fn, name, *extra):
        h = ctypes.c_void_p()
        _check(fn(ctypes.byref(h), self._h, _as_bytes(name, "name"), *extra), "open " + name)
        return h

    def open_value(self, name, typecode):
        h = self._open(_lib.shm_value_open, name, ctypes.c_int(ord(typecode)))
        return _make_value(typecode, 0, True, self, name, handle=h)

    def open_array(self, name, typecode):
        h = self._open(_lib.shm_array_open, name, ctypes.c_int(ord(typecode)))
        return _Array(typecode, 0, True, self, name, handle=h)

    def Lock(self, *, name=None, recursive=False):
        return _NamedLock(self, name, _create(_lib.shm_lock_create, "Lock", segment=self,
                                              name=name, flags=0 if recursive else _NONRECURSIVE))

    def open_lock(self, name):
        return _NamedLock(self, name, self._open(_lib.shm_lock_open, name))

    def Semaphore(self, value=1, *, name=None):
        return Semaphore(value, segment=self, name=name)

    def BoundedSemaphore(self, value=1, *, name=None):
        return BoundedSemaphore(value, segment=self, name=name)

    def Event(self, *, name=None):
        return Event(segment=self, name=name)

    def Condition(self, lock=None, *, name=None):
        return Condition(lock, segment=self, name=name)

    def Barrier(self, parties, action=None, timeout=None, *, name=None):
        return Barrier(parties, action, timeout, segment=self, name=name)

    def open_semaphore(self, name):
        """A Semaphore or BoundedSemaphore (the bound is kept in the segment)."""
        return Semaphore(segment=self, name=name, handle=self._open(_lib.shm_sem_open, name))

    def open_event(self, name):
        return Event(segment=self, name=name, handle=self._open(_lib.shm_event_open, name))

    def open_condition(self, name):
        return Condition(segment=self, name=name, handle=self._open(_lib.shm_cond_open, name))

    def open_barrier(self, name):
        """The barrier (its action, a function of the process that made it, stays there)."""
        return Barrier(1, segment=self, name=name, handle=self._open(_lib.shm_barrier_open, name))

    def open_dict(self, name, *, codec=None):
        return Dict(codec=codec, segment=self, name=name,
                    handle=self._open(_lib.shm_dict_open, name))

    def open_list(self, name, *, codec=None):
        return List(codec=codec, segment=self, name=name,
                    handle=self._open(_lib.shm_list_open, name))

    def remove(self, name):
        """Destroy the object called ``name``."""
        _check(_lib.shm_object_remove(self._h, _as_bytes(name, "name")), "remove " + name)
