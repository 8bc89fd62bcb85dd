/* Return codes: one X-macro table (shmval.h) generates names and messages. */
#include "shmval.h"

#include <string.h>

const char *shmval_version(void) { return SHMVAL_VERSION_STRING; }

const char *shmval_strerror(int code) {
  switch (code) {
  case SHMVAL_OK:
    return "success";
  case SHMVAL_OWNERDEAD:
    return "lock acquired; its previous owner died holding it";
#define SHMVAL__XX(name, value, msg)                                                               \
  case SHMVAL_##name:                                                                              \
    return msg;
    SHMVAL_ERRNO_MAP(SHMVAL__XX)
#undef SHMVAL__XX
  default:
    break;
  }
  /* Other negated errno values from the system: the C library's text. */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (code < 0 && code > -4096) {
    const char *d = strerrordesc_np(-code);
    if (d != NULL)
      return d;
  }
#endif
  return "unknown error";
}

const char *shmval_err_name(int code) {
  switch (code) {
  case SHMVAL_OK:
    return "SHMVAL_OK";
  case SHMVAL_OWNERDEAD:
    return "SHMVAL_OWNERDEAD";
#define SHMVAL__XX(name, value, msg)                                                               \
  case SHMVAL_##name:                                                                              \
    return "SHMVAL_" #name;
    SHMVAL_ERRNO_MAP(SHMVAL__XX)
#undef SHMVAL__XX
  default:
    return "SHMVAL_UNKNOWN";
  }
}

/* The public table spells system codes as Linux errno numbers: prove it. */
#include <errno.h>
_Static_assert(SHMVAL_EPERM == -EPERM && SHMVAL_ENOENT == -ENOENT, "errno");
_Static_assert(SHMVAL_EAGAIN == -EAGAIN && SHMVAL_ENOMEM == -ENOMEM, "errno");
_Static_assert(SHMVAL_EACCES == -EACCES && SHMVAL_EBUSY == -EBUSY, "errno");
_Static_assert(SHMVAL_EEXIST == -EEXIST && SHMVAL_EINVAL == -EINVAL, "errno");
_Static_assert(SHMVAL_ENOSPC == -ENOSPC && SHMVAL_ERANGE == -ERANGE, "errno");
_Static_assert(SHMVAL_EDEADLK == -EDEADLK && SHMVAL_ETIMEDOUT == -ETIMEDOUT, "errno");
_Static_assert(SHMVAL_ENOTRECOVERABLE == -ENOTRECOVERABLE, "errno");
