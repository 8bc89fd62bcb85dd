/*
 * Every internal header at once, for the white-box tests and the fuzzers
 * only. The library's own files include the module headers they depend on,
 * and only those of the layers below them (see the source map at the top of
 * docs/design.md; tools/check_layers.sh keeps it true).
 */
#ifndef SHMVAL_INTERNAL_H
#define SHMVAL_INTERNAL_H

#include "object.h"

#endif /* SHMVAL_INTERNAL_H */
