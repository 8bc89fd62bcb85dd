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

/*
 * Every code of the table is negative and lies in its range: a system code
 * (a negated errno) above the library's reserved range, a library code in it.
 */
#define SHMVAL__XX(name, value, msg)                                                               \
  _Static_assert((value) < 0 && (value) > SHMVAL__ERR_MIN - 1, "SHMVAL_" #name);
SHMVAL_ERRNO_MAP(SHMVAL__XX)
#undef SHMVAL__XX
