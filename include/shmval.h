/**
 * @file shmval.h
 * @brief libshmval: typed shared Values, Arrays and robust locks over POSIX
 *        shared memory, for C programs that fork workers or cooperate on one
 *        machine.
 *
 * This is the library's only public header; anything not declared here is
 * not API.
 *
 * @section model Model
 * Every shared object lives in a *segment*. Objects created with no segment
 * come from the process-wide *default arena*: anonymous shared mappings made
 * on demand. A child created by `fork()` after an object was created shares
 * that object with its parent; objects a process creates after a fork are its
 * own (exactly as with Python's `multiprocessing.Value`).
 *
 * A handle (`shm_value *`, `shm_array *`, `shm_lock *`) is a process-local
 * pointer into the shared mapping; creating an object allocates no process
 * memory, and a handle copied by `fork()` stays valid in the child.
 *
 * @section errors Error model
 * Every function that can fail returns an `int`: `0` on success, a negative
 * code on failure (nothing was changed), or the positive code
 * #SHMVAL_OWNERDEAD when a lock was acquired whose previous owner died while
 * holding it. System errors are `-errno`; the library's own codes lie in a
 * reserved range. shmval_strerror() and shmval_err_name() describe any code.
 * No status is reported through `errno` or any other global.
 *
 * @section threads Threads and fork
 * All functions are thread-safe. Locks are process-shared and robust: a
 * process or thread that dies holding one never hangs the others; the next
 * acquirer receives #SHMVAL_OWNERDEAD. Locks are owned by a *thread*; a lock
 * held by the thread that calls `fork()` is not held by the child. No
 * function is async-signal-safe.
 */
#ifndef SHMVAL_H
#define SHMVAL_H

#include <errno.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @cond INTERNAL */
#if defined(SHMVAL_STATIC_DEFINE)
#define SHMVAL_API
#elif defined(__GNUC__)
#define SHMVAL_API __attribute__((visibility("default")))
#else
#define SHMVAL_API
#endif
/** @endcond */

/** Library version, as numbers and as a string. */
#define SHMVAL_VERSION_MAJOR 0
#define SHMVAL_VERSION_MINOR 1
#define SHMVAL_VERSION_PATCH 0
#define SHMVAL_VERSION_STRING "0.1.0"

/**
 * @brief The library's version string, e.g. "0.1.0".
 * @return A static string; never NULL.
 */
SHMVAL_API const char *shmval_version(void);

/* ------------------------------------------------------------------------ */
/** @name Error codes
 * One table generates the constants, shmval_strerror() and shmval_err_name().
 * @{ */

/** @cond INTERNAL */
#define SHMVAL__ESYS(e) (-(e))
/** @endcond */

/**
 * The error table: XX(name, value, message). System errors are the negated
 * `<errno.h>` value of the same name; the library's own codes lie in
 * -30000..-30099.
 */
#define SHMVAL_ERRNO_MAP(XX)                                                                       \
  XX(EPERM, SHMVAL__ESYS(EPERM), "lock not held by the calling thread")                            \
  XX(ENOENT, SHMVAL__ESYS(ENOENT), "no such object or segment")                                    \
  XX(EAGAIN, SHMVAL__ESYS(EAGAIN), "resource temporarily unavailable")                             \
  XX(ENOMEM, SHMVAL__ESYS(ENOMEM), "out of memory")                                                \
  XX(EACCES, SHMVAL__ESYS(EACCES), "permission denied")                                            \
  XX(EBUSY, SHMVAL__ESYS(EBUSY), "lock or object is busy")                                         \
  XX(EEXIST, SHMVAL__ESYS(EEXIST), "object or segment already exists")                             \
  XX(EINVAL, SHMVAL__ESYS(EINVAL), "invalid argument")                                             \
  XX(ENFILE, SHMVAL__ESYS(ENFILE), "too many open files in the system")                            \
  XX(EMFILE, SHMVAL__ESYS(EMFILE), "too many open files in this process")                          \
  XX(ENOSPC, SHMVAL__ESYS(ENOSPC), "no space left in shared memory")                               \
  XX(ERANGE, SHMVAL__ESYS(ERANGE), "index, slice or string out of range")                          \
  XX(EDEADLK, SHMVAL__ESYS(EDEADLK), "non-recursive lock already held by this thread")             \
  XX(ETIMEDOUT, SHMVAL__ESYS(ETIMEDOUT), "timed out")                                              \
  XX(ENOTRECOVERABLE, SHMVAL__ESYS(ENOTRECOVERABLE), "lock is not recoverable")                    \
  XX(ENOBUFS, SHMVAL__ESYS(ENOBUFS), "buffer too small for the value")                             \
  XX(ENOLOCK, -30001, "object has no lock (created raw)")                                          \
  XX(ETYPE, -30002, "wrong element type for this operation")                                       \
  XX(ESTALE, -30003, "handle refers to a destroyed object")                                        \
  XX(ECORRUPT, -30004, "shared memory structure is corrupt")                                       \
  XX(ENOTSHMVAL, -30005, "not a libshmval segment")                                                \
  XX(EVERSION, -30006, "segment layout version not supported")                                     \
  XX(EABI, -30007, "segment made by an incompatible ABI")                                          \
  XX(EUNINIT, -30008, "segment is not initialised")                                                \
  XX(EOVERFLOW, -30009, "released more times than acquired")                                       \
  XX(EBROKEN, -30010, "barrier is broken")                                                         \
  XX(ENOTATOMIC, -30011, "value was not created with SHMVAL_ATOMIC")

/** Error codes (negative) and the positive owner-died status. */
enum shmval_status {
  /** Success. */
  SHMVAL_OK = 0,
  /**
   * Positive, not an error: the lock IS now held by the caller, its previous
   * owner died while holding it, and the lock has been made consistent. The
   * data it protects may be half-updated and may need repair.
   */
  SHMVAL_OWNERDEAD = 1,
#define SHMVAL__XX(name, value, msg) SHMVAL_##name = (value),
  SHMVAL_ERRNO_MAP(SHMVAL__XX)
#undef SHMVAL__XX
  /** @cond INTERNAL */
  SHMVAL__ERR_MIN = -30099
  /** @endcond */
};

/**
 * @brief Describe a return code.
 * @param code Any value returned by this library, or a negated errno.
 * @return A static, thread-safe string; never NULL. Unknown codes give
 *         "unknown error".
 */
SHMVAL_API const char *shmval_strerror(int code);

/**
 * @brief The symbolic name of a return code, e.g. "SHMVAL_EINVAL".
 * @param code Any return code.
 * @return A static string; "SHMVAL_UNKNOWN" for codes not in the table.
 */
SHMVAL_API const char *shmval_err_name(int code);
/** @} */

/* ------------------------------------------------------------------------ */
/** @name Types
 * @{ */

/** Element types: Python's typecodes, the same letters. */
typedef enum shm_type {
  SHMVAL_CHAR = 'c',   /**< char */
  SHMVAL_SCHAR = 'b',  /**< signed char */
  SHMVAL_UCHAR = 'B',  /**< unsigned char */
  SHMVAL_BOOL = '?',   /**< _Bool */
  SHMVAL_WCHAR = 'u',  /**< wchar_t */
  SHMVAL_SHORT = 'h',  /**< short */
  SHMVAL_USHORT = 'H', /**< unsigned short */
  SHMVAL_INT = 'i',    /**< int */
  SHMVAL_UINT = 'I',   /**< unsigned int */
  SHMVAL_LONG = 'l',   /**< long */
  SHMVAL_ULONG = 'L',  /**< unsigned long */
  SHMVAL_LLONG = 'q',  /**< long long */
  SHMVAL_ULLONG = 'Q', /**< unsigned long long */
  SHMVAL_FLOAT = 'f',  /**< float */
  SHMVAL_DOUBLE = 'd', /**< double */
  /**
   * A fixed-size record (a C struct), made with shm_value_create_record() or
   * shm_array_create_record(); 'T' is PEP 3118's struct code.
   */
  SHMVAL_RECORD = 'T'
} shm_type;

/**
 * @brief Size in bytes of one element of a type code.
 * @param type_code One of the #shm_type letters.
 * @return The C size, or 0 for an unknown code and for #SHMVAL_RECORD (whose
 *         size is per object).
 */
SHMVAL_API size_t shm_type_size(int type_code);

/** A shared Value (Python's `multiprocessing.Value`). Opaque. */
typedef struct shm_value shm_value;
/** A shared Array (Python's `multiprocessing.Array`). Opaque. */
typedef struct shm_array shm_array;
/** A process-shared robust lock. Opaque. */
typedef struct shm_lock shm_lock;
/** A named shared-memory segment attached by this process. Opaque. */
typedef struct shm_segment shm_segment;

/** The longest object name in a segment, in bytes, without the terminator. */
#define SHMVAL_NAME_MAX 255

/** Creation flags for #shm_opts.flags. */
enum shm_flags {
  /** No lock: Python's RawValue/RawArray. get/set do not synchronise. */
  SHMVAL_RAW = 1u << 0,
  /**
   * A plain (non-recursive) lock instead of the default recursive one (Python's
   * `Lock` instead of `RLock`). Acquiring it twice from one thread fails with
   * #SHMVAL_EDEADLK instead of deadlocking.
   */
  SHMVAL_NONRECURSIVE = 1u << 1,
  /**
   * An atomic Value (Values only): no lock at all; get and set are atomic
   * loads and stores, and shm_value_add(), shm_value_exchange() and
   * shm_value_cas() work lock-free. For the integer types (c b B ? u h H i I
   * l L q Q) and float/double. Mixing atomic and locked access is impossible:
   * an atomic Value has no lock, and the atomic calls refuse other Values.
   */
  SHMVAL_ATOMIC = 1u << 3
};

/** Creation options; a NULL pointer means all defaults. Zero-initialise. */
typedef struct shm_opts {
  /** A combination of #shm_flags; unknown bits are #SHMVAL_EINVAL. */
  unsigned flags;
  /**
   * Share an existing lock instead of making a new one, like Python's `lock=`
   * argument. The lock stays alive while any object uses it. Incompatible
   * with #SHMVAL_RAW and #SHMVAL_NONRECURSIVE. In a named segment the lock
   * must live in the same segment.
   */
  shm_lock *lock;
  /** Create the object in this named segment instead of the default arena. */
  shm_segment *segment;
  /**
   * Give the object this name in #segment (1..#SHMVAL_NAME_MAX bytes), so that
   * other processes find it with shm_value_open() / shm_array_open(). NULL: an
   * unnamed object. A name needs a segment.
   */
  const char *name;
  /**
   * For a dict made in the default arena: the most its segment of its own
   * may grow to, in bytes (address space reserved when it is made, memory
   * committed as it grows); 0: 4 GiB. Ignored elsewhere (a dict in a named
   * segment grows with the segment: #shm_segment_opts.max_size).
   */
  size_t max_size;
} shm_opts;
/** @} */

/* ------------------------------------------------------------------------ */
/** @name Values
 * @{ */

/**
 * @brief Create a shared Value in the default arena.
 *
 * Python: `Value(type, init)`; with #SHMVAL_RAW, `RawValue(type, init)`.
 * @param out  Receives the handle; unchanged on failure.
 * @param type An element type code; not #SHMVAL_RECORD.
 * @param init Points to one element to copy in; NULL means zero.
 * @param opts Options, or NULL for a recursive lock of its own.
 * @return 0;
 *         #SHMVAL_EINVAL for a NULL @p out, an unknown type, unknown flags or
 *         a conflicting combination, a name without a segment or a bad name,
 *         or a lock from another segment;
 *         #SHMVAL_ESTALE if `opts->lock` belongs to a destroyed object;
 *         #SHMVAL_ENOMEM when no shared memory can be mapped.
 *         In a named segment (`opts->segment`) also: #SHMVAL_EEXIST (the
 *         name is taken there); #SHMVAL_ENOSPC (the segment has no room
 *         left); #SHMVAL_EACCES (the segment, or `opts->lock`, was opened
 *         #SHMVAL_RDONLY); #SHMVAL_ECORRUPT; #SHMVAL_ENOTRECOVERABLE.
 * @note Thread-safe. The object is shared with children forked afterwards.
 */
SHMVAL_API int shm_value_create(shm_value **out, shm_type type, const void *init,
                                const shm_opts *opts);

/**
 * @brief Create a Value holding one fixed-size record (a C struct).
 *
 * Python: `Value(MyStructure)`.
 * @param out   Receives the handle.
 * @param size  sizeof the record; 1..2^30.
 * @param align _Alignof the record: a power of two, at most 64, dividing
 *              @p size.
 * @param init  The record to copy in, or NULL for zero bytes.
 * @param opts  As for shm_value_create().
 * @return As shm_value_create(); #SHMVAL_EINVAL for a bad size or alignment.
 */
SHMVAL_API int shm_value_create_record(shm_value **out, size_t size, size_t align, const void *init,
                                       const shm_opts *opts);

/**
 * @brief Destroy a Value and free its shared memory for reuse.
 *
 * Every process's handle to it becomes stale: later calls with it return
 * #SHMVAL_ESTALE for as long as its block has not been reused by a new object
 * of the same kind (detection is best effort after reuse). Its lock's memory
 * stays alive while other objects share that lock.
 * @param v The handle; NULL is a no-op returning 0.
 * @return 0;
 *         #SHMVAL_ESTALE if already destroyed;
 *         #SHMVAL_EINVAL if @p v is not a Value handle;
 *         #SHMVAL_EBUSY if the lock whose memory would be freed is held (by
 *         any thread, the caller included); nothing is changed then.
 */
SHMVAL_API int shm_value_destroy(shm_value *v);

/**
 * @brief Read the value under its lock (Python's `.value`).
 * @param v   The handle.
 * @param out Receives shm_value_size() bytes.
 * @return 0; #SHMVAL_OWNERDEAD (the read happened, the previous lock holder
 *         died: the value may be inconsistent); #SHMVAL_EINVAL for NULL
 *         arguments or a non-Value handle; #SHMVAL_ESTALE; #SHMVAL_EDEADLK for a
 *         non-recursive lock the caller already holds;
 *         #SHMVAL_ENOTRECOVERABLE; #SHMVAL_EACCES for a handle from a
 *         #SHMVAL_RDONLY segment when the Value has a lock (taking the lock
 *         writes to the segment; raw and atomic Values are read without one).
 * @note Works while the caller already holds the (recursive) lock. A raw
 *       Value is read without synchronisation.
 */
SHMVAL_API int shm_value_get(shm_value *v, void *out);

/**
 * @brief Write the value under its lock (Python's `.value = x`).
 * @param v  The handle.
 * @param in Points to shm_value_size() bytes.
 * @return As shm_value_get().
 */
SHMVAL_API int shm_value_set(shm_value *v, const void *in);

/**
 * @brief The payload itself (Python's `get_obj()`), for use under the lock.
 * @param v The handle.
 * @return A pointer aligned for the element type, or NULL for NULL, stale or
 *         non-Value handles.
 */
SHMVAL_API void *shm_value_ptr(shm_value *v);

/**
 * @brief The Value's lock (Python's `get_lock()`).
 * @param v The handle.
 * @return The lock, or NULL for raw Values and invalid handles.
 */
SHMVAL_API shm_lock *shm_value_get_lock(shm_value *v);

/**
 * @brief Acquire the Value's lock (Python's `v.acquire()`); as
 *        shm_lock_acquire().
 * @return As shm_lock_acquire(); #SHMVAL_ENOLOCK for a raw Value.
 */
SHMVAL_API int shm_value_acquire(shm_value *v);

/**
 * @brief Release the Value's lock (Python's `v.release()`).
 * @return As shm_lock_release(); #SHMVAL_ENOLOCK for a raw Value.
 */
SHMVAL_API int shm_value_release(shm_value *v);

/**
 * @brief Atomically add @p delta to an atomic Value (fetch-and-add).
 *
 * For hot loops: an atomic Value's payload (shm_value_ptr()) is naturally
 * aligned and never guarded by a lock, so the compiler's `__atomic` builtins
 * (or C11 atomics on a suitably typed pointer) may be applied to it directly,
 * with the same sequentially consistent semantics and without this call's
 * checks.
 *
 * Integer types wrap around (two's complement). For float and double there is
 * no hardware add: it is a compare-and-swap loop, lock-free all the same.
 * @param v     An atomic Value.
 * @param delta Points to one element: the amount to add.
 * @param old   Receives the value before the addition; may be NULL.
 * @return 0; #SHMVAL_ENOTATOMIC (not created with #SHMVAL_ATOMIC);
 *         #SHMVAL_ETYPE (a bool Value); #SHMVAL_EINVAL; #SHMVAL_ESTALE;
 *         #SHMVAL_EACCES (read-only).
 * @note Sequentially consistent, like every atomic call here.
 */
SHMVAL_API int shm_value_add(shm_value *v, const void *delta, void *old);

/**
 * @brief Atomically store @p in and return the previous value in @p old.
 * @return As shm_value_add(), without #SHMVAL_ETYPE.
 */
SHMVAL_API int shm_value_exchange(shm_value *v, const void *in, void *old);

/**
 * @brief Compare and swap: if the Value equals *@p expected, store
 *        *@p desired; otherwise copy the current value into *@p expected.
 *
 * Values are compared as bit patterns: for float and double, -0.0 differs
 * from 0.0 and a NaN equals only the same NaN bits.
 * @return 1 if swapped; 0 if not; #SHMVAL_ENOTATOMIC; #SHMVAL_EINVAL;
 *         #SHMVAL_ESTALE; #SHMVAL_EACCES.
 */
SHMVAL_API int shm_value_cas(shm_value *v, void *expected, const void *desired);

/**
 * @brief The Value's element type.
 * @param v The handle.
 * @return The type code; (shm_type)0 for NULL, stale or invalid handles.
 */
SHMVAL_API shm_type shm_value_type(const shm_value *v);

/**
 * @brief The size in bytes of the Value's payload.
 * @param v The handle.
 * @return The element size; 0 for NULL, stale or invalid handles.
 */
SHMVAL_API size_t shm_value_size(const shm_value *v);
/** @} */

/* ------------------------------------------------------------------------ */
/** @name Arrays
 * @{ */

/**
 * @brief Create a shared Array in the default arena.
 *
 * Python: `Array(type, length)` / `Array(type, init_sequence)`; with
 * #SHMVAL_RAW, `RawArray`. A large array gets a segment of its own.
 * @param out    Receives the handle.
 * @param type   An element type code; not #SHMVAL_RECORD.
 * @param length Number of elements; 0 is legal.
 * @param init   @p length elements to copy in, or NULL for zeros.
 * @param opts   As for shm_value_create().
 * @return 0; #SHMVAL_EINVAL (NULL @p out, unknown type, length × size
 *         overflow or over 2^40 bytes, bad flags); #SHMVAL_ESTALE;
 *         #SHMVAL_ENOMEM.
 */
SHMVAL_API int shm_array_create(shm_array **out, shm_type type, size_t length, const void *init,
                                const shm_opts *opts);

/**
 * @brief Create an Array of fixed-size records (Python: `Array(MyStructure, n)`).
 * @param out    Receives the handle.
 * @param size   sizeof one record; 1..2^30.
 * @param align  _Alignof the record: a power of two ≤ 64 that divides @p size.
 * @param length Number of records.
 * @param init   @p length records, or NULL for zero bytes.
 * @param opts   As for shm_value_create().
 * @return As shm_array_create().
 */
SHMVAL_API int shm_array_create_record(shm_array **out, size_t size, size_t align, size_t length,
                                       const void *init, const shm_opts *opts);

/**
 * @brief Destroy an Array; see shm_value_destroy() for the semantics.
 * @param a The handle; NULL is a no-op returning 0.
 * @return As shm_value_destroy().
 */
SHMVAL_API int shm_array_destroy(shm_array *a);

/**
 * @brief Read element @p i under the lock.
 * @param a   The handle.
 * @param i   Index, < shm_array_length().
 * @param out Receives one element.
 * @return 0; #SHMVAL_OWNERDEAD; #SHMVAL_ERANGE for an index out of range;
 *         #SHMVAL_EINVAL; #SHMVAL_ESTALE; #SHMVAL_EDEADLK;
 *         #SHMVAL_ENOTRECOVERABLE; #SHMVAL_EACCES (a locked Array reached
 *         through a #SHMVAL_RDONLY segment, as for shm_value_get()).
 */
SHMVAL_API int shm_array_get(shm_array *a, size_t i, void *out);

/**
 * @brief Write element @p i under the lock.
 * @return As shm_array_get().
 */
SHMVAL_API int shm_array_set(shm_array *a, size_t i, const void *in);

/**
 * @brief Copy elements [start, start+count) out, under the lock (a slice).
 *
 * The range is checked before anything is copied; count 0 is legal and
 * @p out may then be NULL.
 * @return As shm_array_get(); #SHMVAL_ERANGE when the slice does not fit.
 */
SHMVAL_API int shm_array_read(shm_array *a, size_t start, size_t count, void *out);

/**
 * @brief Copy elements into [start, start+count), under the lock.
 * @return As shm_array_read().
 */
SHMVAL_API int shm_array_write(shm_array *a, size_t start, size_t count, const void *in);

/**
 * @brief Number of elements; 0 for NULL or invalid handles.
 */
SHMVAL_API size_t shm_array_length(const shm_array *a);

/**
 * @brief Size in bytes of one element; 0 for NULL or invalid handles.
 */
SHMVAL_API size_t shm_array_elem_size(const shm_array *a);

/**
 * @brief The element type; (shm_type)0 for NULL or invalid handles.
 */
SHMVAL_API shm_type shm_array_type(const shm_array *a);

/**
 * @brief The first element, for use under the lock; NULL for invalid
 *        handles. For length 0 a valid, non-NULL pointer to no elements.
 */
SHMVAL_API void *shm_array_ptr(shm_array *a);

/**
 * @brief The Array's lock; NULL for raw Arrays and invalid handles.
 */
SHMVAL_API shm_lock *shm_array_get_lock(shm_array *a);

/**
 * @brief Acquire the Array's lock (Python's `a.acquire()`).
 * @return As shm_lock_acquire(); #SHMVAL_ENOLOCK for a raw Array.
 */
SHMVAL_API int shm_array_acquire(shm_array *a);

/**
 * @brief Release the Array's lock (Python's `a.release()`).
 * @return As shm_lock_release(); #SHMVAL_ENOLOCK for a raw Array.
 */
SHMVAL_API int shm_array_release(shm_array *a);

/**
 * @brief Read a 'c' Array as a string (Python's `.value`).
 *
 * Copies the bytes up to the first NUL (or the whole array if it has none)
 * and terminates @p buf.
 * @param a   A #SHMVAL_CHAR Array.
 * @param buf Receives the string.
 * @param cap Size of @p buf in bytes.
 * @return 0; #SHMVAL_OWNERDEAD; #SHMVAL_ETYPE for a non-'c' array;
 *         #SHMVAL_ERANGE if the string and its terminator do not fit in
 *         @p cap (nothing is written then); #SHMVAL_EINVAL; #SHMVAL_ESTALE.
 */
SHMVAL_API int shm_array_get_string(shm_array *a, char *buf, size_t cap);

/**
 * @brief Store a string in a 'c' Array (Python's `.value = b"..."`).
 *
 * A string shorter than the array is stored with its NUL terminator (the
 * bytes after it are unchanged); one of exactly the array's length is stored
 * without a terminator.
 * @return 0; #SHMVAL_OWNERDEAD; #SHMVAL_ETYPE; #SHMVAL_ERANGE for a string
 *         longer than the array (nothing changes); #SHMVAL_EINVAL;
 *         #SHMVAL_ESTALE.
 */
SHMVAL_API int shm_array_set_string(shm_array *a, const char *s);

/**
 * @brief Read a 'u' (wchar_t) Array as a wide string; as
 *        shm_array_get_string(), @p cap counted in wchar_t.
 */
SHMVAL_API int shm_array_get_wstring(shm_array *a, wchar_t *buf, size_t cap);

/**
 * @brief Store a wide string in a 'u' Array; as shm_array_set_string().
 */
SHMVAL_API int shm_array_set_wstring(shm_array *a, const wchar_t *s);
/** @} */

/* ------------------------------------------------------------------------ */
/** @name Locks
 * A lock is owned by the thread that acquired it. The default lock is
 * recursive: a thread may acquire it again and must release it as many
 * times.
 * @{ */

/**
 * @brief Acquire, blocking.
 * @param l The lock.
 * @return 0; #SHMVAL_OWNERDEAD (acquired; the previous owner died holding it);
 *         #SHMVAL_EDEADLK (non-recursive lock already held by the caller);
 *         #SHMVAL_EAGAIN (recursion depth would overflow);
 *         #SHMVAL_EINVAL (NULL or not a lock); #SHMVAL_ESTALE (the lock was
 *         freed); #SHMVAL_ENOTRECOVERABLE.
 */
SHMVAL_API int shm_lock_acquire(shm_lock *l);

/**
 * @brief Acquire without blocking.
 * @return As shm_lock_acquire(), plus #SHMVAL_EBUSY if another thread holds
 *         it (or, for a non-recursive lock, the caller does).
 */
SHMVAL_API int shm_lock_try_acquire(shm_lock *l);

/**
 * @brief Acquire, waiting at most @p seconds measured on CLOCK_MONOTONIC
 *        (immune to wall-clock changes).
 * @param l       The lock.
 * @param seconds 0 means try once; a negative value means wait forever; NaN
 *                is #SHMVAL_EINVAL.
 * @return As shm_lock_acquire(), plus #SHMVAL_ETIMEDOUT (and #SHMVAL_EBUSY
 *         for @p seconds == 0).
 */
SHMVAL_API int shm_lock_acquire_timeout(shm_lock *l, double seconds);

/**
 * @brief Release one level of the caller's hold.
 * @return 0; #SHMVAL_EPERM if the calling thread does not hold it (including
 *         one release too many); #SHMVAL_EINVAL; #SHMVAL_ESTALE.
 */
SHMVAL_API int shm_lock_release(shm_lock *l);

/**
 * @brief Whether the calling thread holds the lock.
 * @return 1 if it does, 0 if not or for an invalid lock.
 */
SHMVAL_API int shm_lock_is_owned(const shm_lock *l);
/** @} */

/* ------------------------------------------------------------------------ */
/** @name The default arena
 * @{ */

/** Accounting of the default arena as this process sees it. */
typedef struct shm_arena_info {
  size_t segments;     /**< anonymous segments mapped by this process */
  size_t total;        /**< bytes managed by the allocators (heap areas, less
                            each allocator's own free lists) */
  size_t used;         /**< bytes in allocated blocks */
  size_t free;         /**< bytes in free blocks; used + free == total */
  size_t blocks;       /**< allocated blocks (objects, and locks kept alive) */
  size_t free_blocks;  /**< free blocks (a fragmentation measure) */
  size_t largest_free; /**< the largest free block in bytes */
} shm_arena_info;

/**
 * @brief Walk and verify the default arena, and report its accounting.
 *
 * Every block, the free lists and the counters are checked under each
 * segment's allocator lock. It sees the segments this process has mapped:
 * those it created and those inherited through fork().
 * @param info Receives the figures.
 * @return 0; #SHMVAL_EINVAL for NULL; #SHMVAL_ECORRUPT if any check fails;
 *         #SHMVAL_ENOTRECOVERABLE.
 */
SHMVAL_API int shm_arena_stat(shm_arena_info *info);

/** @deprecated The former names of shm_arena_info and shm_arena_stat(). */
typedef shm_arena_info shmval_arena_info;
/** @deprecated Use shm_arena_stat(); the same function. */
SHMVAL_API int shmval_arena_stat(shm_arena_info *info);
/** @} */

/* ------------------------------------------------------------------------ */
/** @name Named segments
 * A named segment is a POSIX shared-memory object (`/dev/shm/NAME`) that
 * unrelated processes attach to by name. It holds typed, named objects and
 * tracks which processes are attached, so that its lifetime policy can unlink
 * it exactly when the last live attacher closes it.
 *
 * Names: "name" and "/name" mean the same segment; 1..255 bytes after the
 * optional leading '/', no other '/', not "." or "..".
 *
 * A process stays attached from create/open until shm_segment_close() or its
 * death; its attachment survives PID reuse (it is an open-file-description
 * lock, released by the kernel when the process dies). A fork() child gets an
 * attachment of its own. Every handle to an object of a segment becomes
 * invalid when the process closes the segment; never close a segment while
 * holding one of its locks.
 * @{ */

/** Flags for #shm_segment_opts.flags. */
enum shm_segment_flags {
  /** shm_segment_create(): open the segment instead if it exists already. */
  SHMVAL_OPEN_OR_CREATE = 1u << 0,
  /** shm_segment_open(): map read-only; writes and locks are refused. */
  SHMVAL_RDONLY = 1u << 1,
  /**
   * shm_segment_create(): the lifetime policy "unlink when the last attached
   * process closes" (also when the others died). The default policy,
   * #SHMVAL_PERSIST, keeps the segment until it is unlinked.
   */
  SHMVAL_AUTO_UNLINK = 1u << 2,
  /** shm_segment_open(): inspect without counting as an attached process. */
  SHMVAL_OBSERVE = 1u << 3
};

/** The default lifetime policy: the segment stays until unlinked. */
#define SHMVAL_PERSIST 0u

/** Segment options; NULL means all defaults. Zero-initialise. */
typedef struct shm_segment_opts {
  unsigned flags;      /**< #shm_segment_flags */
  unsigned mode;       /**< permission bits at creation; 0 means 0600 */
  unsigned max_attach; /**< attached processes at once; 0 means 64; at most 65536 */
  /**
   * Seconds shm_segment_open() waits for a segment that its creator is still
   * initialising: 0 means the default, 2 seconds; negative means do not wait.
   */
  double timeout;
  /**
   * shm_segment_create(): the most the segment may ever hold, header
   * included; rounded up to a page; at most 1 TiB. 0 means the `size` given
   * to create: a fixed segment. Above that size the segment grows: when an
   * allocation finds no room, the allocator commits more (at least doubling
   * the committed size, by at most 1 GiB more than the request) until it
   * reaches max_size. Every process maps max_size of address space when it
   * creates or opens the segment, so a grow moves nothing: every handle
   * stays valid in every process, and nobody else has to do anything to
   * see the new space. Only committed space uses memory (the file's
   * allocated blocks, `du`); the file's apparent size (`ls -l`) is max_size.
   * With #SHMVAL_OPEN_OR_CREATE, a segment that exists keeps its own sizes.
   */
  size_t max_size;
} shm_segment_opts;

/** What shm_segment_inspect() and shm_segment_stat() found. */
typedef enum shm_segment_state {
  SHMVAL_SEG_OK = 0,       /**< valid and initialised */
  SHMVAL_SEG_UNINIT = 1,   /**< its creator is still initialising it */
  SHMVAL_SEG_ORPHANED = 2, /**< nobody will ever use or unlink it: garbage */
  SHMVAL_SEG_CORRUPT = 3   /**< a libshmval segment that fails validation */
} shm_segment_state;

/** A segment's description. */
typedef struct shm_segment_info {
  char name[257]; /**< "/name" */
  /** bytes committed (reserved in /dev/shm), header included; for a segment
   *  that is unfinished or fails validation, the file's size (as max_size) */
  size_t size;
  size_t max_size; /**< the most it may grow to (equal to size for a fixed segment) */
  /** bytes in allocated blocks (the segment's tables included, the
   *  allocator's own free lists, about 4 KiB, not) */
  size_t used;
  /** bytes committed and not in allocated blocks (in free blocks, or not yet
   *  laid out as blocks: a new segment's heap covers its own tables at first) */
  size_t free;
  /** live objects of every kind (Values, Arrays, locks, semaphores, conditions,
   *  events, barriers); the segment's own tables are not counted */
  size_t objects;
  /** attachments held now by live processes: each create or open counts once
   *  until closed (a process that opened the segment twice counts twice);
   *  #SHMVAL_OBSERVE opens do not count */
  unsigned attached;
  unsigned max_attach;           /**< attacher slots */
  unsigned flags;                /**< lifetime policy: #SHMVAL_AUTO_UNLINK or 0 */
  unsigned mode;                 /**< permission bits */
  shm_segment_state state;       /**< see #shm_segment_state */
  int error;                     /**< for #SHMVAL_SEG_CORRUPT: what validation said */
  unsigned long long created_ns; /**< creation time, ns since the epoch */
} shm_segment_info;

/** Object kinds reported by shm_segment_foreach(). */
typedef enum shm_object_kind {
  SHMVAL_OBJ_VALUE = 1,
  SHMVAL_OBJ_ARRAY = 2,
  SHMVAL_OBJ_LOCK = 3,
  SHMVAL_OBJ_SEM = 4,
  SHMVAL_OBJ_COND = 5,
  SHMVAL_OBJ_EVENT = 6,
  SHMVAL_OBJ_BARRIER = 7,
  SHMVAL_OBJ_DICT = 8, /**< a shm_dict; type and elem_size describe its values */
  SHMVAL_OBJ_LIST = 9  /**< a shm_list; type and elem_size describe its items */
} shm_object_kind;

/** One object of a segment, as shm_segment_foreach() reports it. */
typedef struct shm_object_info {
  const char *name;     /**< its name (a copy, see shm_segment_foreach()), or NULL */
  shm_object_kind kind; /**< the object's kind */
  shm_type type;        /**< element type (a dict's value type, 0 for bytes) */
  size_t elem_size;     /**< bytes per element (a typed dict's value size) */
  size_t length;        /**< elements (1 for a Value; a dict's keys) */
  int has_lock;         /**< 0 for raw objects */
  size_t offset;        /**< where it lies in the segment */
  void *handle;         /**< a shm_value *, shm_array *, shm_dict *, ... per kind */
} shm_object_info;

/**
 * @brief Create a named segment and attach to it.
 * @param out  Receives the segment.
 * @param name The segment's name (see above).
 * @param size Bytes committed at first, header included; rounded up to a
 *             page. The space is reserved now, so a full /dev/shm fails here,
 *             not later; so does every grow (#shm_segment_opts.max_size): a
 *             grow that finds /dev/shm full fails the allocation that needed
 *             it with #SHMVAL_ENOSPC, and no process ever gets SIGBUS.
 * @param o    Options, or NULL: mode 0600, #SHMVAL_PERSIST, a fixed size.
 * @return 0; #SHMVAL_EINVAL (bad name, size too small for the header and
 *         tables or above 1 TiB, max_size below size or above 1 TiB, unknown
 *         flags, mode beyond 0777); #SHMVAL_EEXIST (the name
 *         exists and #SHMVAL_OPEN_OR_CREATE was not given); #SHMVAL_ENOSPC
 *         (no room in /dev/shm); #SHMVAL_EACCES; #SHMVAL_EMFILE or #SHMVAL_ENFILE
 *         (out of file descriptors: nothing is left behind); #SHMVAL_ENOMEM;
 *         other -errno.
 *         With #SHMVAL_OPEN_OR_CREATE, anything shm_segment_open() returns.
 * @note Crash safety: the segment is built in an unnamed file in /dev/shm
 *       (O_TMPFILE) and given its name only when complete, so a creator
 *       killed inside this call leaves no file at all, and openers never see
 *       a half-made segment. Where the system cannot make unnamed files there
 *       (no O_TMPFILE on /dev/shm, or no /proc to link one through), the
 *       file is created under its name and marked as being initialised
 *       before anything else, and the creator holds its initialisation lock
 *       until the header (written last) is complete: openers wait for it
 *       (#shm_segment_opts.timeout), and a killed creator's leftover is
 *       #SHMVAL_SEG_ORPHANED, which `shmval gc` removes. Two processes racing
 *       with #SHMVAL_OPEN_OR_CREATE get one segment. An existing name is
 *       found before any space is reserved.
 */
SHMVAL_API int shm_segment_create(shm_segment **out, const char *name, size_t size,
                                  const shm_segment_opts *o);

/**
 * @brief Attach to an existing named segment.
 *
 * Everything is validated before it is trusted: the file's size, the magic,
 * the layout version, the ABI fingerprint, the sizes (the heap within the
 * committed size, the committed size within the maximum, which is the file's
 * size) and the tables it points to. The whole maximum size is mapped, so
 * the segment's later growth needs nothing of this process.
 * @param out  Receives the segment.
 * @param name The segment's name.
 * @param o    Options: #SHMVAL_RDONLY, #SHMVAL_OBSERVE, timeout; or NULL.
 * @return 0; #SHMVAL_EINVAL (bad name or flags); #SHMVAL_ENOENT (no such
 *         segment, or it is being unlinked); #SHMVAL_EACCES;
 *         #SHMVAL_EUNINIT (its creator did not finish in time, or died);
 *         #SHMVAL_ENOTSHMVAL (not a libshmval segment); #SHMVAL_EVERSION;
 *         #SHMVAL_EABI; #SHMVAL_ECORRUPT; #SHMVAL_EAGAIN (all attacher slots in
 *         use); #SHMVAL_EMFILE or #SHMVAL_ENFILE (out of file descriptors);
 *         #SHMVAL_ENOMEM.
 */
SHMVAL_API int shm_segment_open(shm_segment **out, const char *name, const shm_segment_opts *o);

/**
 * @brief Detach and unmap. With #SHMVAL_AUTO_UNLINK, the last live attached
 *        process to close unlinks the name.
 * @param seg The segment; NULL is a no-op.
 * @return 0 (the segment is closed even if unlinking failed).
 */
SHMVAL_API int shm_segment_close(shm_segment *seg);

/**
 * @brief Remove a segment's name (processes attached keep their mapping).
 * @param name The segment's name.
 * @return 0; #SHMVAL_EINVAL; #SHMVAL_ENOENT; #SHMVAL_EACCES;
 *         #SHMVAL_ENOTSHMVAL for a file that is not a libshmval segment
 *         (it is left alone).
 */
SHMVAL_API int shm_segment_unlink(const char *name);

/**
 * @brief Describe an attached segment: sizes, objects, live attachers, mode.
 * @param seg  The segment.
 * @param info Receives the description.
 * @return 0; #SHMVAL_EINVAL; #SHMVAL_ECORRUPT; #SHMVAL_ENOTRECOVERABLE.
 * @note It walks every heap block under the segment's allocator lock (the
 *       lock creates and destroys take), so it takes time proportional to
 *       the blocks; on a #SHMVAL_RDONLY attachment, which cannot take the
 *       lock, the walk is unlocked and its figures a racy view.
 */
SHMVAL_API int shm_segment_stat(shm_segment *seg, shm_segment_info *info);

/**
 * @brief Describe a segment by name without attaching to it (for tools).
 *
 * Classifies it as ok, uninitialised, orphaned (an uninitialised leftover of
 * a dead creator, or an auto-unlink segment with no live attacher) or
 * corrupt.
 * @return 0 with @p info filled in; #SHMVAL_ENOTSHMVAL for a file that is
 *         not a libshmval segment; #SHMVAL_ENOENT; #SHMVAL_EACCES;
 *         #SHMVAL_EINVAL.
 */
SHMVAL_API int shm_segment_inspect(const char *name, shm_segment_info *info);

/**
 * @brief Call @p fn for every live object (Values, Arrays and synchronisation
 *        primitives) in the segment.
 *
 * The objects are listed first (under the allocator lock); then each is
 * described from a snapshot taken under the allocator lock (its header and a
 * copy of its name, so that one report never mixes an object destroyed
 * meanwhile with one created in its place), and @p fn runs without any
 * library lock held, so it may create or destroy objects. An object destroyed
 * after the listing is skipped. An object whose create has not returned is
 * not listed (nor, if its creator died before the create returned, ever:
 * shm_segment_reclaim() frees it). On a #SHMVAL_RDONLY segment, which cannot
 * take the lock, each header is read again after the name was copied and the
 * object skipped if it changed.
 * @param seg The segment.
 * @param fn  Called once per object; `info->name` points to a copy that is
 *            valid until @p fn returns. A non-zero result stops the walk.
 * @param ctx Passed to @p fn.
 * @return 0; the first non-zero value @p fn returned; #SHMVAL_EINVAL;
 *         #SHMVAL_ECORRUPT; #SHMVAL_ENOTRECOVERABLE; #SHMVAL_ENOMEM.
 */
SHMVAL_API int shm_segment_foreach(shm_segment *seg,
                                   int (*fn)(const shm_object_info *info, void *ctx), void *ctx);

/** @brief The segment's name, "/name"; NULL for NULL. */
SHMVAL_API const char *shm_segment_name(const shm_segment *seg);

/** What shm_segment_check() found. Figures are filled in as far as it got. */
typedef struct shm_check_report {
  size_t blocks;        /**< allocated heap blocks */
  size_t free_blocks;   /**< free heap blocks */
  size_t used;          /**< bytes in allocated blocks */
  size_t free;          /**< bytes in free blocks */
  size_t objects;       /**< live objects of every kind (the segment's own tables excluded) */
  size_t named;         /**< names in the directory */
  size_t leaked_blocks; /**< allocated blocks that hold no live object (see below) */
  size_t leaked_bytes;  /**< their bytes */
  /** Where the first problem lies, as an offset in the segment (0: its header). */
  unsigned long long problem_offset;
  /** The first problem in words (a static string), or NULL if none was found. */
  const char *problem;
} shm_check_report;

/**
 * @brief Verify a segment's integrity: every heap block and free list, every
 *        object header (kind, type, sizes, payload, name and lock inside the
 *        segment), every directory entry (a live named object, found by its
 *        name) and the header's counters.
 *
 * The check holds the segment's directory and allocator locks while it runs,
 * so it sees a state no change is halfway through; like any taker of those
 * locks, it first repairs what a process that died holding them left behind.
 * Blocks that hold no live object are counted as leaked, not as a problem: a
 * process killed during a create (before it returned) or a destroy leaves
 * one, which shm_segment_reclaim() frees (a creation or destruction in
 * progress in another process right now looks the same).
 * @param seg A segment opened read-write.
 * @param rep Receives the figures and the first problem found.
 * @return 0 if the segment is consistent; #SHMVAL_ECORRUPT with
 *         rep->problem and rep->problem_offset describing the first
 *         inconsistency; #SHMVAL_EINVAL (NULL); #SHMVAL_EACCES (opened
 *         #SHMVAL_RDONLY: the check needs the segment's locks);
 *         #SHMVAL_ENOTRECOVERABLE (a lock was fenced off after a failed repair);
 *         #SHMVAL_ENOMEM.
 * @note Thread-safe; the check allocates no shared memory. It takes time
 *       proportional to the heap's blocks, during which other processes wait
 *       to create, destroy or open-with-lock objects of this segment.
 */
SHMVAL_API int shm_segment_check(shm_segment *seg, shm_check_report *rep);

/**
 * @brief Free the blocks that processes which died halfway through creating
 *        or destroying an object of this segment left allocated.
 *
 * Each process attached read-write notes in its attacher slot the one block
 * it is creating or destroying, until the create returns or the block is
 * freed. This call frees such a block for every slot whose process is gone:
 * an object whose create never returned (unnamed; a named one that was
 * published is a committed object and stays), or one the dead process
 * retired whose lock no other object uses. Objects whose create returned
 * stay (their names, or handles a dead process's children hold, may still
 * reach them). A process that takes over a slot frees its previous holder's
 * block in the same way when it attaches, so this call is for segments
 * whose dead processes are not replaced.
 * @param seg    A segment opened read-write.
 * @param blocks Receives the blocks freed; may be NULL.
 * @param bytes  Receives their bytes; may be NULL.
 * @return 0; #SHMVAL_EINVAL; #SHMVAL_EACCES (read-only); #SHMVAL_ECORRUPT;
 *         #SHMVAL_ENOTRECOVERABLE.
 * @note Thread-safe; it holds the directory lock while it runs and the
 *       allocator lock for each block. A process has one journal per
 *       attachment, so of several threads creating or destroying at once
 *       when it dies, only the last one noted is covered; nor is the block of
 *       a lock shared by several objects whose last user died between
 *       dropping its reference and noting the block. shm_segment_check()
 *       still counts what they leave.
 */
SHMVAL_API int shm_segment_reclaim(shm_segment *seg, size_t *blocks, size_t *bytes);

/**
 * @brief Open a named Value of a segment.
 * @param out      Receives the handle (read-only if the segment was opened
 *                 #SHMVAL_RDONLY).
 * @param seg      The segment.
 * @param name     The object's name.
 * @param expected The type it must have; 0 accepts any.
 * @return 0; #SHMVAL_EINVAL; #SHMVAL_ENOENT (no such name); #SHMVAL_ETYPE (it
 *         is an Array, or of another type); #SHMVAL_ECORRUPT;
 *         #SHMVAL_ENOTRECOVERABLE (a peer died changing the directory and it
 *         could not be rebuilt); #SHMVAL_EAGAIN (a #SHMVAL_RDONLY segment only:
 *         a peer kept the directory busy, or died changing it, and a read-only
 *         mapping cannot repair it; try again).
 *
 * The lookup takes no lock and writes nothing shared, so any number of
 * processes and threads open names concurrently; it retries while a peer
 * changes the directory. The object may be destroyed by a peer as soon as it
 * is found: the handle then reports #SHMVAL_ESTALE on use.
 */
SHMVAL_API int shm_value_open(shm_value **out, shm_segment *seg, const char *name,
                              shm_type expected);

/**
 * @brief Open a named Array of a segment; as shm_value_open().
 */
SHMVAL_API int shm_array_open(shm_array **out, shm_segment *seg, const char *name,
                              shm_type expected);

/**
 * @brief Destroy the object called @p name in @p seg (a Value or an Array).
 * @return As shm_value_destroy(), plus #SHMVAL_ENOENT and #SHMVAL_EACCES (a
 *         read-only segment).
 */
SHMVAL_API int shm_object_remove(shm_segment *seg, const char *name);
/** @} */

/* ------------------------------------------------------------------------ */
/** @name Synchronisation primitives
 * Python's Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and
 * Barrier, process-shared. Each lives in the default arena (shared with fork
 * children) or, with #shm_opts.segment and #shm_opts.name, in a named
 * segment where unrelated processes open it by name (type-checked: opening a
 * Semaphore's name as an Event is #SHMVAL_ETYPE).
 *
 * Timeouts are relative seconds measured on CLOCK_MONOTONIC: 0 means try
 * once, a negative value means wait forever, NaN is #SHMVAL_EINVAL. What a
 * zero timeout gives when it cannot succeed at once: #SHMVAL_EBUSY for a
 * lock, a semaphore and an event (nothing to take now); #SHMVAL_ETIMEDOUT for
 * a condition (it did release and retake the lock); #SHMVAL_EBROKEN for a
 * barrier (a party that is not the last breaks it, as Python's timeout does).
 * A longer timeout that expires gives #SHMVAL_ETIMEDOUT (#SHMVAL_EBROKEN for
 * a barrier). A signal
 * delivered during a wait runs its handler and the wait resumes with the time
 * that was left (waits never return EINTR).
 *
 * Crashes: a process killed holding a Lock, RLock or a Condition's lock gives
 * the next acquirer #SHMVAL_OWNERDEAD. A process killed while waiting on a
 * Condition, Event or Barrier leaves the primitive usable by the others (see
 * each function). A semaphore has no owner, so a unit held by a process that
 * dies is not given back: POSIX cannot detect it, and neither can this
 * library.
 * @{ */

/** A counting semaphore (Python's Semaphore / BoundedSemaphore). Opaque. */
typedef struct shm_sem shm_sem;
/** A condition variable over a lock (Python's Condition). Opaque. */
typedef struct shm_cond shm_cond;
/** An event flag (Python's Event). Opaque. */
typedef struct shm_event shm_event;
/** A barrier for a fixed number of parties (Python's Barrier). Opaque. */
typedef struct shm_barrier shm_barrier;

/** #shm_opts.flags for shm_sem_create(): refuse releases above the initial value. */
#define SHMVAL_BOUNDED (1u << 4)

/**
 * @brief Create a standalone lock: recursive (RLock) by default, a plain Lock
 *        with #SHMVAL_NONRECURSIVE.
 * @param out  Receives the lock.
 * @param opts Flags (#SHMVAL_NONRECURSIVE), segment and name; or NULL.
 * @return 0; #SHMVAL_EINVAL (NULL @p out, #SHMVAL_RAW, a shared lock given);
 *         #SHMVAL_EEXIST; #SHMVAL_ENOSPC; #SHMVAL_ENOMEM; #SHMVAL_EACCES.
 */
SHMVAL_API int shm_lock_create(shm_lock **out, const shm_opts *opts);

/** @brief Open a named standalone lock; as shm_value_open(). */
SHMVAL_API int shm_lock_open(shm_lock **out, shm_segment *seg, const char *name);

/**
 * @brief Destroy a standalone lock. Objects created with it as #shm_opts.lock
 *        keep it alive until they are destroyed too.
 * @return 0 (NULL too); #SHMVAL_EBUSY if it is held; #SHMVAL_EINVAL for the
 *         embedded lock of a Value, Array or Condition (destroy that object
 *         instead); #SHMVAL_ESTALE; #SHMVAL_EACCES.
 */
SHMVAL_API int shm_lock_destroy(shm_lock *l);

/**
 * @brief Whether any thread holds the lock now (the answer may be stale at
 *        once).
 *
 * A lock whose owner died holding it is free: 0 (the next acquirer still
 * receives #SHMVAL_OWNERDEAD).
 * @return 1 held (by any thread, the caller included), 0 free;
 *         #SHMVAL_EINVAL; #SHMVAL_ESTALE; #SHMVAL_EACCES (read-only: looking
 *         means trying the lock); #SHMVAL_ENOTRECOVERABLE.
 */
SHMVAL_API int shm_lock_locked(shm_lock *l);

/**
 * @brief Create a semaphore with an initial value (Python's Semaphore; with
 *        #SHMVAL_BOUNDED, BoundedSemaphore).
 * @param value The initial value, 0..INT32_MAX.
 * @return 0; #SHMVAL_EINVAL (a value out of range, bad flags, a lock given);
 *         #SHMVAL_EEXIST; #SHMVAL_ENOSPC; #SHMVAL_ENOMEM; #SHMVAL_EACCES.
 */
SHMVAL_API int shm_sem_create(shm_sem **out, long value, const shm_opts *opts);
/** @brief Open a named semaphore. */
SHMVAL_API int shm_sem_open(shm_sem **out, shm_segment *seg, const char *name);
/**
 * @brief Destroy a semaphore. Waiting counts cannot be trusted (a waiter may
 *        have died), so nothing is refused: destroying a primitive that others
 *        still use is undefined, as for any object.
 */
SHMVAL_API int shm_sem_destroy(shm_sem *s);
/**
 * @brief Take one unit, waiting at most @p timeout seconds.
 * @return 0; #SHMVAL_EBUSY (timeout 0 and none available); #SHMVAL_ETIMEDOUT;
 *         #SHMVAL_EINVAL; #SHMVAL_ESTALE; #SHMVAL_EACCES.
 */
SHMVAL_API int shm_sem_acquire(shm_sem *s, double timeout);
/**
 * @brief Give one unit back and wake one waiter.
 * @return 0; #SHMVAL_EOVERFLOW for a bounded semaphore already at its initial
 *         value (nothing changes); #SHMVAL_EINVAL; #SHMVAL_ESTALE; #SHMVAL_EACCES.
 */
SHMVAL_API int shm_sem_release(shm_sem *s);
/** @brief The current value in *value; 0 or an error code. */
SHMVAL_API int shm_sem_value(shm_sem *s, unsigned *value);

/**
 * @brief Create a condition variable over @p lock (NULL: a new recursive lock
 *        of its own). The lock must be in the same segment.
 * @return 0; #SHMVAL_EINVAL; #SHMVAL_ESTALE (a destroyed lock); #SHMVAL_EEXIST;
 *         #SHMVAL_ENOSPC; #SHMVAL_ENOMEM; #SHMVAL_EACCES.
 */
SHMVAL_API int shm_cond_create(shm_cond **out, shm_lock *lock, const shm_opts *opts);
/** @brief Open a named condition variable. */
SHMVAL_API int shm_cond_open(shm_cond **out, shm_segment *seg, const char *name);
/** @brief Destroy a condition; #SHMVAL_EBUSY if the lock it would free is held. */
SHMVAL_API int shm_cond_destroy(shm_cond *c);
/** @brief The condition's lock (acquire it around wait and notify). */
SHMVAL_API shm_lock *shm_cond_get_lock(shm_cond *c);
/**
 * @brief Release the lock (fully, whatever the recursion depth), wait to be
 *        notified or for @p timeout seconds, and take the lock back at the
 *        same depth.
 * @param c       The condition; the calling thread must hold its lock.
 * @param timeout Seconds; 0 gives up at once (#SHMVAL_ETIMEDOUT) after
 *                releasing and retaking the lock; negative waits forever.
 * @return 0 notified; #SHMVAL_ETIMEDOUT; #SHMVAL_OWNERDEAD (notified or not:
 *         the lock's owner died while this thread waited to take it back; the
 *         lock is held); #SHMVAL_EPERM if the caller does not hold the lock;
 *         #SHMVAL_EINVAL; #SHMVAL_ESTALE; #SHMVAL_EACCES;
 *         #SHMVAL_ENOTRECOVERABLE (the lock is lost for good: not held).
 * @note Crashes: each of up to 16 simultaneous waiters holds a slot that a
 *       notifier can tell is dead (a robust mutex the waiter holds while it
 *       waits), so a waiter killed while waiting is skipped: it takes no
 *       notification with it and leaves none behind, and a notify with no
 *       live waiter is lost, as in Python. Waiters beyond 16 at once share
 *       an anonymous count: a killed one of those may wake one later waiter
 *       early, which callers tolerate like any spurious wakeup by re-checking
 *       their predicate (shm_cond_wait_for() does).
 */
SHMVAL_API int shm_cond_wait(shm_cond *c, double timeout);
/**
 * @brief Wait until @p pred(@p ctx) returns non-zero, for at most @p timeout
 *        seconds in all (Python's wait_for). The predicate runs with the lock
 *        held, first before any wait.
 * @param c          The condition; the calling thread must hold its lock.
 * @param pred       The predicate; not NULL.
 * @param ctx        Passed to @p pred.
 * @param timeout    Seconds in all; negative waits forever.
 * @param owner_died Set to 1 if, during this call, the lock's owner died
 *                   while this thread waited to take the lock back (the
 *                   #SHMVAL_OWNERDEAD of shm_cond_wait(): the protected data
 *                   may be half-updated), otherwise to 0. May be NULL only
 *                   where no holder of the lock can die mid-update.
 * @return The predicate's last result (0 if it timed out false, 1 or any
 *         positive value it returned); #SHMVAL_EPERM; #SHMVAL_EINVAL;
 *         #SHMVAL_ESTALE; #SHMVAL_EACCES; #SHMVAL_ENOTRECOVERABLE (the lock is
 *         lost: not held).
 */
SHMVAL_API int shm_cond_wait_for(shm_cond *c, int (*pred)(void *ctx), void *ctx, double timeout,
                                 int *owner_died);
/**
 * @brief Wake up to @p n threads waiting on the condition: the @p n that have
 *        waited longest among those holding a slot (see shm_cond_wait()). A
 *        notify with nobody waiting is lost.
 * @return 0; #SHMVAL_EPERM if the caller does not hold the lock; #SHMVAL_EINVAL;
 *         #SHMVAL_ESTALE; #SHMVAL_EACCES.
 */
SHMVAL_API int shm_cond_notify(shm_cond *c, unsigned n);
/** @brief Wake every waiter; as shm_cond_notify(). */
SHMVAL_API int shm_cond_notify_all(shm_cond *c);

/** @brief Create an event, initially clear. Errors as shm_sem_create(). */
SHMVAL_API int shm_event_create(shm_event **out, const shm_opts *opts);
/** @brief Open a named event. */
SHMVAL_API int shm_event_open(shm_event **out, shm_segment *seg, const char *name);
/** @brief Destroy an event (see shm_sem_destroy()). */
SHMVAL_API int shm_event_destroy(shm_event *e);
/** @brief Set the flag and wake every waiter. */
SHMVAL_API int shm_event_set(shm_event *e);
/** @brief Clear the flag. */
SHMVAL_API int shm_event_clear(shm_event *e);
/** @brief 1 if set, 0 if clear, or an error code. */
SHMVAL_API int shm_event_is_set(shm_event *e);
/**
 * @brief Wait until the flag is set, at most @p timeout seconds.
 * @return 0 (set); #SHMVAL_ETIMEDOUT (still clear; #SHMVAL_EBUSY for timeout
 *         0); #SHMVAL_EINVAL; #SHMVAL_ESTALE.
 */
SHMVAL_API int shm_event_wait(shm_event *e, double timeout);

/**
 * @brief Create a barrier for @p parties parties.
 * @param parties 1..INT32_MAX.
 * @param timeout The default timeout of shm_barrier_wait(); negative: none.
 * @param action  Run by exactly one party (the last to arrive) before the
 *                others are released; NULL for none. It is recorded for this
 *                process (and its fork children); another process registers
 *                its own with shm_barrier_set_action().
 * @return As shm_sem_create().
 */
SHMVAL_API int shm_barrier_create(shm_barrier **out, unsigned parties, double timeout,
                                  void (*action)(void *ctx), void *ctx, const shm_opts *opts);
/** @brief Open a named barrier. */
SHMVAL_API int shm_barrier_open(shm_barrier **out, shm_segment *seg, const char *name);
/** @brief Destroy a barrier; #SHMVAL_EBUSY if its lock is held (see shm_sem_destroy()). */
SHMVAL_API int shm_barrier_destroy(shm_barrier *b);
/**
 * @brief Set this process's action for @p b (see shm_barrier_create()).
 * @return 0; #SHMVAL_EINVAL; #SHMVAL_ENOMEM.
 */
SHMVAL_API int shm_barrier_set_action(shm_barrier *b, void (*action)(void *ctx), void *ctx);
/**
 * @brief Wait until all parties have arrived, at most the barrier's default
 *        timeout (0: try once, so any party but the last breaks the barrier).
 * @param index Receives this party's arrival index, 0..parties-1: each
 *              value goes to exactly one party of a pass. May be NULL.
 * @return 0; #SHMVAL_EBROKEN (the barrier was or became broken: aborted, a
 *         party timed out, or its lock's owner died); #SHMVAL_EINVAL;
 *         #SHMVAL_ESTALE; #SHMVAL_EACCES.
 * @note A timeout breaks the barrier for every waiter, as in Python. A party
 *       killed while waiting is never counted out, so the live ones are told
 *       #SHMVAL_EBROKEN when their timeout expires: give barriers that may
 *       lose a process a finite timeout.
 */
SHMVAL_API int shm_barrier_wait(shm_barrier *b, unsigned *index);
/** @brief shm_barrier_wait() with an explicit timeout for this wait. */
SHMVAL_API int shm_barrier_wait_timeout(shm_barrier *b, double timeout, unsigned *index);
/** @brief Break the barrier: waiters and later callers get #SHMVAL_EBROKEN. */
SHMVAL_API int shm_barrier_abort(shm_barrier *b);
/** @brief Return the barrier to its initial state; waiters get #SHMVAL_EBROKEN. */
SHMVAL_API int shm_barrier_reset(shm_barrier *b);
/** @brief 1 if broken, 0 if not, or an error code. */
SHMVAL_API int shm_barrier_broken(shm_barrier *b);
/** @brief Parties waiting now, or an error code. */
SHMVAL_API int shm_barrier_n_waiting(shm_barrier *b);
/** @brief The number of parties, or an error code. */
SHMVAL_API int shm_barrier_parties(shm_barrier *b);
/** @} */

/* ------------------------------------------------------------------------ */
/** @name Shared dicts
 *
 * Python's `Manager().dict()` without the server: a hash table in the
 * segment that every attached process reads and writes directly.
 *
 * - Keys are byte strings of 0..#SHMVAL_KEY_MAX bytes (a C string passes
 *   `strlen(k)`); two keys are equal when their bytes are.
 * - Values are byte strings of any length (value type 0: Python's
 *   arbitrary values, serialised by the caller), or, in a typed dict, one
 *   element of a #shm_type (a counter dict, a dict of doubles) or a record of
 *   a fixed size (shm_dict_create_record()).
 * - Readers (get, contains, len, foreach) take no lock and write nothing
 *   shared: a get is a hash, a probe and a copy validated by the slot's
 *   version, retried when a writer changed the slot meanwhile, so a value is
 *   seen whole, old or new, never a mix. Writers lock one of 16 stripes of
 *   the keys (robust, process-shared mutexes): writers of keys in different
 *   stripes do not wait for each other.
 * - The table grows (and shrinks after mass deletion) while readers go on
 *   reading the old one; writers wait for the resize.
 * - A writer killed at any point leaves every key at its old or its new
 *   value: the next writer of the same stripe (or a resize) completes or
 *   drops the change, and frees what it left. Dict calls never return
 *   #SHMVAL_OWNERDEAD.
 * - Thread- and fork-safe: handles may be shared by threads; a dict made in
 *   the default arena is shared with children forked after its creation.
 *
 * Codes every dict call may return besides its own: #SHMVAL_EINVAL (a NULL
 * or non-dict handle); #SHMVAL_ESTALE (destroyed, or being destroyed);
 * #SHMVAL_ECORRUPT (the dict's memory is damaged: a table, an entry or a
 * count that does not check out, or a slot left busy with no writer).
 * Calls that take a key add #SHMVAL_EINVAL for a NULL key with a nonzero
 * length or a key longer than #SHMVAL_KEY_MAX. Calls that write add
 * #SHMVAL_EACCES (a dict opened through a #SHMVAL_RDONLY segment),
 * #SHMVAL_ENOTRECOVERABLE (a lock whose dead holder's changes could not be
 * repaired), and where they may allocate #SHMVAL_ENOMEM (a default-arena
 * dict at its `max_size`) / #SHMVAL_ENOSPC (a named segment full, or
 * /dev/shm full when it grows). Lock-free readers through a #SHMVAL_RDONLY
 * segment, which cannot take a lock to repair a dead writer's slot, return
 * #SHMVAL_EAGAIN instead of waiting for one.
 * @{ */

/** A shared dict. Opaque. */
typedef struct shm_dict shm_dict;

/** The longest key, in bytes. */
#define SHMVAL_KEY_MAX 65535

/**
 * @brief Create a dict.
 * @param out        Receives the handle.
 * @param value_type 0: values are byte strings of any length; or a #shm_type
 *                   letter other than #SHMVAL_RECORD: every value is one
 *                   element of that type.
 * @param opts       NULL, or options: `segment` and `name` as for Values;
 *                   `max_size` for a dict in the default arena; `flags` and
 *                   `lock` must be 0 / NULL.
 * @return 0; #SHMVAL_EINVAL (NULL @p out, an unknown type, flags or a lock
 *         given); #SHMVAL_EEXIST, #SHMVAL_ENOSPC, #SHMVAL_EACCES in a named
 *         segment as for shm_value_create(); #SHMVAL_ENOMEM.
 *
 * In the default arena the dict gets a growable segment of its own, shared
 * with the children forked after this call (address space for
 * `opts->max_size` bytes is reserved now). In a named segment it is
 * allocated there, and grows as far as the segment may.
 */
SHMVAL_API int shm_dict_create(shm_dict **out, shm_type value_type, const shm_opts *opts);

/**
 * @brief Create a typed dict whose values are records of @p size bytes
 *        aligned to @p align (a C struct: `sizeof`, `_Alignof`).
 * @return As shm_dict_create(); #SHMVAL_EINVAL for a bad size or alignment.
 */
SHMVAL_API int shm_dict_create_record(shm_dict **out, size_t size, size_t align,
                                      const shm_opts *opts);

/**
 * @brief Open the dict called @p name in @p seg.
 * @return 0; #SHMVAL_ENOENT; #SHMVAL_ETYPE (the name is another kind of
 *         object); #SHMVAL_EINVAL; as shm_value_open() otherwise. Through a
 *         #SHMVAL_RDONLY segment the dict can be read, not written.
 */
SHMVAL_API int shm_dict_open(shm_dict **out, shm_segment *seg, const char *name);

/**
 * @brief Destroy a dict and every entry; NULL is a no-op.
 * @return 0; #SHMVAL_ESTALE; #SHMVAL_EINVAL; #SHMVAL_EACCES; #SHMVAL_ECORRUPT;
 *         #SHMVAL_ENOTRECOVERABLE. It allocates nothing.
 * @note Nobody may use the dict meanwhile or after (they get #SHMVAL_ESTALE
 *       when they notice). A destroyer killed halfway leaves a dict that is
 *       empty or partly emptied (every key present or gone); a second
 *       destroy, or shm_object_remove(), finishes it.
 */
SHMVAL_API int shm_dict_destroy(shm_dict *d);

/**
 * @brief `d[key] = val`.
 * @param vlen The value's length: any for a bytes dict; exactly the element
 *             size in a typed dict.
 * @return 0; #SHMVAL_EINVAL (also a NULL @p val with a nonzero @p vlen, or a
 *         typed dict given another length); #SHMVAL_ESTALE; #SHMVAL_EACCES;
 *         #SHMVAL_ENOMEM / #SHMVAL_ENOSPC (nothing changed);
 *         #SHMVAL_ECORRUPT; #SHMVAL_ENOTRECOVERABLE.
 */
SHMVAL_API int shm_dict_set(shm_dict *d, const void *key, size_t klen, const void *val,
                            size_t vlen);

/**
 * @brief `d[key]`: copy the value into @p buf.
 * @param buf  Receives the value; may be NULL when @p cap is 0.
 * @param cap  Bytes at @p buf.
 * @param vlen Receives the value's length (also on #SHMVAL_ENOBUFS); may be
 *             NULL.
 * @return 0; #SHMVAL_ENOENT (Python's KeyError); #SHMVAL_ENOBUFS (@p cap is
 *         smaller than the value: nothing copied, *vlen says how much is
 *         needed); #SHMVAL_EINVAL (also a NULL @p buf with a nonzero @p cap);
 *         #SHMVAL_ESTALE; #SHMVAL_ECORRUPT; #SHMVAL_EAGAIN (read-only
 *         segments only, see above). Takes no lock and writes nothing
 *         shared (unless it repairs a dead writer's slot).
 */
SHMVAL_API int shm_dict_get(shm_dict *d, const void *key, size_t klen, void *buf, size_t cap,
                            size_t *vlen);

/**
 * @brief `key in d`.
 * @return 1, 0; #SHMVAL_EINVAL; #SHMVAL_ESTALE; #SHMVAL_ECORRUPT;
 *         #SHMVAL_EAGAIN, as shm_dict_get(). Takes no lock.
 */
SHMVAL_API int shm_dict_contains(shm_dict *d, const void *key, size_t klen);

/**
 * @brief `del d[key]`.
 * @return 0; #SHMVAL_ENOENT if absent; #SHMVAL_EINVAL; #SHMVAL_ESTALE;
 *         #SHMVAL_EACCES; #SHMVAL_ECORRUPT; #SHMVAL_ENOTRECOVERABLE.
 */
SHMVAL_API int shm_dict_del(shm_dict *d, const void *key, size_t klen);

/**
 * @brief `d.pop(key)`: copy the value out and remove the key, in one step.
 * @return 0; #SHMVAL_ENOENT; #SHMVAL_ENOBUFS (the key stays, *vlen set);
 *         #SHMVAL_EINVAL (also a NULL @p buf with a nonzero @p cap);
 *         #SHMVAL_ESTALE; #SHMVAL_EACCES; #SHMVAL_ECORRUPT;
 *         #SHMVAL_ENOTRECOVERABLE.
 */
SHMVAL_API int shm_dict_pop(shm_dict *d, const void *key, size_t klen, void *buf, size_t cap,
                            size_t *vlen);

/**
 * @brief `d.setdefault(key, dflt)`: insert @p dflt unless the key exists;
 *        either way copy the key's value (the one found, or @p dflt) out.
 * @param buf,cap,vlen As shm_dict_get(); @p buf may be NULL with @p cap 0
 *        when the value is not wanted (then #SHMVAL_ENOBUFS is not returned).
 * @return 1 if inserted, 0 if the key existed; #SHMVAL_ENOBUFS (nothing
 *         inserted, *vlen set) when the value does not fit a non-NULL @p buf;
 *         #SHMVAL_EINVAL (also a NULL @p dflt with a nonzero @p dlen, a typed
 *         dict given another length, a NULL @p buf with a nonzero @p cap);
 *         #SHMVAL_ESTALE; #SHMVAL_EACCES; #SHMVAL_ENOMEM / #SHMVAL_ENOSPC;
 *         #SHMVAL_ECORRUPT; #SHMVAL_ENOTRECOVERABLE.
 */
SHMVAL_API int shm_dict_setdefault(shm_dict *d, const void *key, size_t klen, const void *dflt,
                                   size_t dlen, void *buf, size_t cap, size_t *vlen);

/**
 * @brief `len(d)`: the keys, a sum over the stripes' counts (no lock; keys
 *        being added or removed meanwhile may or may not be counted).
 * @return 0 and *n; #SHMVAL_EINVAL (also a NULL @p n); #SHMVAL_ESTALE.
 */
SHMVAL_API int shm_dict_len(shm_dict *d, size_t *n);

/**
 * @brief `d.clear()`: remove every key (each one recorded, so that a clear
 *        killed halfway leaves some keys, each whole) and free the table.
 * @return 0; #SHMVAL_EINVAL; #SHMVAL_ESTALE; #SHMVAL_EACCES; #SHMVAL_ECORRUPT;
 *         #SHMVAL_ENOTRECOVERABLE.
 */
SHMVAL_API int shm_dict_clear(shm_dict *d);

/**
 * @brief `d[key] += delta` in a typed numeric dict (integers wrap around
 *        like shm_value_add()), a missing key counting as 0.
 * @param delta One element of the dict's type.
 * @param old   Receives the value before the addition (0 for a new key);
 *              may be NULL.
 * @return 0; #SHMVAL_ETYPE (a bytes, bool or record dict); #SHMVAL_EINVAL
 *         (also a NULL @p delta); #SHMVAL_ESTALE; #SHMVAL_EACCES;
 *         #SHMVAL_ENOMEM / #SHMVAL_ENOSPC (a new key with no room);
 *         #SHMVAL_ECORRUPT; #SHMVAL_ENOTRECOVERABLE.
 */
SHMVAL_API int shm_dict_add(shm_dict *d, const void *key, size_t klen, const void *delta,
                            void *old);

/**
 * @brief Read-modify-write one key with no other writer able to change it
 *        meanwhile.
 * @param fn Called once, with the key's stripe locked: @p val is a private
 *           copy of the value (zeroed if absent), @p *vlen its length (0 if
 *           absent in a bytes dict), @p cap the bytes @p val may hold (a
 *           typed dict: one element; a bytes dict: twice the current length,
 *           at least 256), @p present 1 or 0. It sets *vlen (a typed dict:
 *           unchanged) and returns 0 to store the value, or anything else to
 *           leave the dict unchanged and have that returned. It must not call
 *           into this dict (its stripe is locked: a deadlock for keys of the
 *           same stripe); other dicts are fine.
 * @return 0; fn's nonzero result (any value, positive ones included: tell
 *         them from the library's codes by your choice of them);
 *         #SHMVAL_EINVAL (NULL @p fn; fn set *vlen beyond @p cap, or to
 *         another size in a typed dict); #SHMVAL_ENOMEM (process memory for
 *         the copy, or a default-arena dict at its maximum); #SHMVAL_ENOSPC;
 *         #SHMVAL_ESTALE; #SHMVAL_EACCES; #SHMVAL_ECORRUPT;
 *         #SHMVAL_ENOTRECOVERABLE.
 * @note If the process dies inside @p fn the key keeps its old value.
 */
SHMVAL_API int
shm_dict_update(shm_dict *d, const void *key, size_t klen,
                int (*fn)(void *val, size_t *vlen, size_t cap, int present, void *ctx), void *ctx);

/**
 * @brief Call @p fn for every key and value.
 *
 * The keys and values are first copied into process memory in one pass over
 * the table (no lock: a resize meanwhile restarts the pass), then @p fn is
 * called for each copy, in the table's order (no order to rely on), so @p fn
 * may call any dict function, on this dict too. Every key present for the
 * whole iteration is seen exactly once, with a value it had during the
 * iteration; keys added or removed meanwhile may or may not be.
 * @return 0; @p fn's first nonzero result, which stops the iteration;
 *         #SHMVAL_ENOMEM (process memory for the copy); #SHMVAL_EINVAL (also
 *         a NULL @p fn); #SHMVAL_ESTALE; #SHMVAL_ECORRUPT; #SHMVAL_EAGAIN
 *         (read-only segments, as shm_dict_get()).
 */
SHMVAL_API int shm_dict_foreach(shm_dict *d,
                                int (*fn)(const void *key, size_t klen, const void *val,
                                          size_t vlen, void *ctx),
                                void *ctx);

/**
 * @brief The value type: 0 for a bytes dict, else a #shm_type letter; *size
 *        (may be NULL) gets a typed dict's value size. 0 for a bad handle.
 */
SHMVAL_API shm_type shm_dict_value_type(const shm_dict *d, size_t *size);
/** @} */

/* ------------------------------------------------------------------------ */
/** @name Shared lists and queues
 *
 * Python's `Manager().list()` without the server, which is also a
 * multi-producer, multi-consumer queue: a ring of items in the segment.
 *
 * - Items are byte strings of any length, kept exactly (NUL bytes and empty
 *   items included; item type 0), or, in a typed list, one element of a
 *   #shm_type or a record of a fixed size (shm_list_create_record()).
 * - Indexes follow Python: a negative index counts from the end; an index
 *   out of range is #SHMVAL_ERANGE (IndexError), except in shm_list_insert(),
 *   which clamps like `list.insert`.
 * - Appending and popping at either end are O(1) (a ring: a FIFO queue never
 *   shifts); insert and pop in the middle, remove, reverse and sort are O(n).
 *   The ring doubles when full and halves when under a quarter full.
 * - Writers take the list's robust lock. shm_list_get(), shm_list_len() and
 *   shm_list_read() take no lock: they copy between two loads of the list's
 *   version and read again when a writer moved it (under the lock after a
 *   few tries), so an item is seen whole, old or new. shm_list_index() and
 *   shm_list_foreach() take the lock (through a #SHMVAL_RDONLY segment,
 *   which cannot, they read under the version too).
 * - A process killed at any point leaves every item whole and present once;
 *   the one change in flight is done or not done (a clear may have removed
 *   some items from the end). The lock's next holder completes or drops that
 *   change and frees what it left: list calls never return
 *   #SHMVAL_OWNERDEAD.
 * - An item that does not fit the caller's buffer is #SHMVAL_ENOBUFS, with
 *   the size needed, and the list unchanged.
 * - Thread- and fork-safe as dicts are.
 *
 * Codes every list call may return besides its own: #SHMVAL_EINVAL (a NULL
 * or non-list handle); #SHMVAL_ESTALE (destroyed, or being destroyed);
 * #SHMVAL_ECORRUPT (the list's memory is damaged). Calls that write add
 * #SHMVAL_EACCES (a list opened through a #SHMVAL_RDONLY segment),
 * #SHMVAL_ENOTRECOVERABLE, and where they may allocate #SHMVAL_ENOMEM /
 * #SHMVAL_ENOSPC (nothing changed). Reads through a #SHMVAL_RDONLY segment
 * return #SHMVAL_EAGAIN when a writer died in the middle of a change that
 * only a writable handle can complete.
 * @{ */

/** A shared list. Opaque. */
typedef struct shm_list shm_list;

/**
 * @brief Create a list.
 * @param out       Receives the handle.
 * @param item_type 0: items are byte strings of any length; or a #shm_type
 *                  letter other than #SHMVAL_RECORD: every item is one element
 *                  of that type.
 * @param opts      As for shm_dict_create().
 * @return As shm_dict_create().
 */
SHMVAL_API int shm_list_create(shm_list **out, shm_type item_type, const shm_opts *opts);

/**
 * @brief Create a typed list of records of @p size bytes aligned to @p align.
 * @return As shm_list_create(); #SHMVAL_EINVAL for a bad size or alignment.
 */
SHMVAL_API int shm_list_create_record(shm_list **out, size_t size, size_t align,
                                      const shm_opts *opts);

/**
 * @brief Open the list called @p name in @p seg.
 * @return 0; #SHMVAL_ENOENT; #SHMVAL_ETYPE (the name is another kind of
 *         object); as shm_dict_open() otherwise.
 */
SHMVAL_API int shm_list_open(shm_list **out, shm_segment *seg, const char *name);

/**
 * @brief Destroy a list and every item; NULL is a no-op.
 * @return 0; #SHMVAL_ESTALE; #SHMVAL_EINVAL; #SHMVAL_EACCES;
 *         #SHMVAL_ECORRUPT; #SHMVAL_ENOTRECOVERABLE.
 * @note Callers blocked in shm_list_pop_wait() wake and return
 *       #SHMVAL_ESTALE; nobody may use the list after. A destroyer killed
 *       halfway leaves a list with fewer items; a second destroy, or
 *       shm_object_remove(), finishes it.
 */
SHMVAL_API int shm_list_destroy(shm_list *l);

/**
 * @brief `l.append(item)`.
 * @param len The item's length: any for a bytes list; exactly the item size
 *            in a typed list.
 * @return 0; #SHMVAL_EINVAL (a NULL @p item with a nonzero @p len, a typed
 *         item of another length); and the common codes.
 */
SHMVAL_API int shm_list_append(shm_list *l, const void *item, size_t len);

/**
 * @brief `l.extend(items)` for a typed list: @p count items, all or none.
 * @return 0; #SHMVAL_ETYPE (a bytes list); #SHMVAL_EINVAL; the common codes.
 */
SHMVAL_API int shm_list_extend(shm_list *l, const void *items, size_t count);

/**
 * @brief `l.insert(index, item)`: before item @p index, clamped to
 *        [0, len] like Python (0 and len are O(1), the rest O(n)).
 * @return As shm_list_append().
 */
SHMVAL_API int shm_list_insert(shm_list *l, long index, const void *item, size_t len);

/**
 * @brief `l[index]`: copy the item into @p buf.
 * @param buf Receives the item; may be NULL when @p cap is 0.
 * @param len Receives the item's length (also on #SHMVAL_ENOBUFS); may be NULL.
 * @return 0; #SHMVAL_ERANGE; #SHMVAL_ENOBUFS; #SHMVAL_EINVAL; #SHMVAL_EAGAIN
 *         (read-only segments); the common codes.
 */
SHMVAL_API int shm_list_get(shm_list *l, long index, void *buf, size_t cap, size_t *len);

/**
 * @brief `l[index] = item`.
 * @return 0; #SHMVAL_ERANGE; as shm_list_append() otherwise.
 */
SHMVAL_API int shm_list_set(shm_list *l, long index, const void *item, size_t len);

/**
 * @brief `l.pop(index)`: remove item @p index and copy it into @p buf
 *        (0 and -1 are O(1): a queue's two ends).
 * @param buf,cap,len As shm_list_get(); with a NULL @p buf and @p cap 0
 *        only the length is wanted, and an item longer than 0 bytes is
 *        #SHMVAL_ENOBUFS: nothing is removed.
 * @return 0; #SHMVAL_ERANGE (empty, or out of range); #SHMVAL_ENOBUFS
 *         (nothing removed); the common codes.
 */
SHMVAL_API int shm_list_pop(shm_list *l, long index, void *buf, size_t cap, size_t *len);

/**
 * @brief Pop from the front (@p index 0) or the back (-1), waiting until
 *        there is an item: a queue's get.
 * @param timeout Seconds on CLOCK_MONOTONIC: 0 tries once, negative waits
 *                forever. Signals do not end the wait early.
 * @return 0; #SHMVAL_ETIMEDOUT (still empty at the deadline, also for a
 *         timeout of 0); #SHMVAL_ENOBUFS (the item does not fit: nothing
 *         removed, no wait); #SHMVAL_ESTALE (the list was destroyed while
 *         waiting); #SHMVAL_EINVAL (another index, a NaN timeout); the common
 *         codes. A caller killed while waiting leaves nothing behind.
 */
SHMVAL_API int shm_list_pop_wait(shm_list *l, long index, double timeout, void *buf, size_t cap,
                                 size_t *len);

/**
 * @brief Append @p count items in one call: a queue producer's batch, one
 *        lock for all of them.
 * @param data  The items' bytes, one after another.
 * @param lens  Item i's length, for i < @p count; NULL for a typed list (every
 *              item its item size; when given, each must be that size).
 * @return 0; #SHMVAL_EINVAL (a NULL @p data with a nonzero @p count, NULL
 *         @p lens for a bytes list, a typed item of another length); the
 *         common codes. On an error nothing is appended: items this call had
 *         appended are taken back.
 *
 * A typed list takes the items in one change (as shm_list_extend()). A bytes
 * list takes them one change each, in order: a caller killed part-way has
 * appended the first few, each whole.
 */
SHMVAL_API int shm_list_append_many(shm_list *l, const void *data, const size_t *lens,
                                    size_t count);

/**
 * @brief Pop up to @p max items from the front (@p index 0) or the back
 *        (-1) in one call, waiting as shm_list_pop_wait() until there is at
 *        least one: a queue consumer's batch, one lock for all of them.
 * @param max    The most items to take, at least 1.
 * @param timeout As shm_list_pop_wait(): 0 tries once, negative waits forever.
 * @param buf    Receives the items one after another, in the order that
 *               repeated pops from that end give them; items are taken
 *               while the next one fits in the @p cap bytes left.
 * @param lens   Receives each item's length (room for @p max); may be NULL
 *               for a typed list, whose items are its item size.
 * @param count  Receives how many items were taken.
 * @return 0 and *count >= 1; #SHMVAL_ETIMEDOUT (nothing came; *count 0);
 *         #SHMVAL_ENOBUFS (the first item does not fit: nothing removed,
 *         lens[0] set to its length when @p lens is given); #SHMVAL_ESTALE
 *         (destroyed while waiting); #SHMVAL_EINVAL (another index, @p max
 *         0, a NULL @p count, NULL @p lens for a bytes list, a NULL @p buf
 *         with a nonzero @p cap, a NaN timeout); the common codes. An error
 *         after some items were taken ends the batch early with 0: those
 *         items are returned, and the next call reports the error.
 *
 * Each item leaves by its own change: a caller killed part-way has taken
 * some, exactly as after as many shm_list_pop_wait() calls.
 */
SHMVAL_API int shm_list_pop_many(shm_list *l, long index, size_t max, double timeout, void *buf,
                                 size_t cap, size_t *lens, size_t *count);

/**
 * @brief `len(l)`.
 * @return 0; #SHMVAL_EINVAL (NULL @p n); #SHMVAL_EAGAIN (read-only
 *         segments); the common codes.
 */
SHMVAL_API int shm_list_len(shm_list *l, size_t *n);

/**
 * @brief `l[start:start + count]` of a typed list into @p out (count items).
 * @param start A negative start counts from the end.
 * @return 0; #SHMVAL_ERANGE (the slice is not all inside the list: @p out
 *         was sized by the caller, nothing is clamped); #SHMVAL_ETYPE (a
 *         bytes list); #SHMVAL_EINVAL; #SHMVAL_EAGAIN (read-only segments).
 */
SHMVAL_API int shm_list_read(shm_list *l, long start, size_t count, void *out);

/**
 * @brief `l.index(item)`: the first item equal to @p item (same bytes).
 * @param index Receives its index; may be NULL.
 * @return 0; #SHMVAL_ENOENT (Python's ValueError); #SHMVAL_EINVAL;
 *         #SHMVAL_EAGAIN (read-only segments); the common codes.
 */
SHMVAL_API int shm_list_index(shm_list *l, const void *item, size_t len, size_t *index);

/**
 * @brief `l.remove(item)`: remove the first item equal to @p item.
 * @return 0; #SHMVAL_ENOENT; as shm_list_append() otherwise.
 */
SHMVAL_API int shm_list_remove(shm_list *l, const void *item, size_t len);

/**
 * @brief `l.clear()`. A bytes list's items go one by one from the end (a
 *        clear killed part-way has removed some); a typed list's at once.
 * @return 0; the common codes.
 */
SHMVAL_API int shm_list_clear(shm_list *l);

/**
 * @brief `l.reverse()`, in one change (all or nothing).
 * @return 0; the common codes (it builds a new ring: #SHMVAL_ENOMEM /
 *         #SHMVAL_ENOSPC possible).
 */
SHMVAL_API int shm_list_reverse(shm_list *l);

/**
 * @brief `l.sort()` of a typed list, in one change (all or nothing).
 * @param cmp A qsort() comparison, or NULL for the type's natural order
 *            (numbers by value; records need a @p cmp). It runs with the
 *            list locked and must not call into the list.
 * @return 0; #SHMVAL_ETYPE (a bytes list); #SHMVAL_EINVAL (a record list
 *         without @p cmp); as shm_list_reverse() otherwise.
 */
SHMVAL_API int shm_list_sort(shm_list *l, int (*cmp)(const void *, const void *));

/**
 * @brief Call @p fn for every item, in order, on a snapshot taken at the
 *        call: fn(i, item, len, ctx). @p fn runs with no lock held and may
 *        call into the list (its changes are not seen by this iteration).
 * @return 0; the first nonzero value @p fn returned; #SHMVAL_ENOMEM (the
 *         snapshot); #SHMVAL_EAGAIN (read-only segments); the common codes.
 */
SHMVAL_API int shm_list_foreach(shm_list *l,
                                int (*fn)(size_t i, const void *item, size_t len, void *ctx),
                                void *ctx);

/**
 * @brief The item type: 0 for a bytes list, else a #shm_type letter; *size
 *        (may be NULL) gets a typed list's item size. 0 for a bad handle.
 */
SHMVAL_API shm_type shm_list_item_type(const shm_list *l, size_t *size);
/** @} */

#ifdef __cplusplus
}
#endif
#endif /* SHMVAL_H */
