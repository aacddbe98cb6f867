/*  fuzz_common.h: what the fuzz targets share. */
#ifndef ZCQ_FUZZ_COMMON_H_INCLUDED
#define ZCQ_FUZZ_COMMON_H_INCLUDED

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

//  A property failed: say which, then abort so libFuzzer saves the input.
#define FUZZ_ASSERT(condition, ...)                                                      \
    do {                                                                                 \
        if (!(condition)) {                                                              \
            fprintf (stderr, "FUZZ_ASSERT %s:%d: %s: ", __FILE__, __LINE__, #condition); \
            fprintf (stderr, __VA_ARGS__);                                               \
            fprintf (stderr, "\n");                                                      \
            abort ();                                                                    \
        }                                                                                \
    } while (0)

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

#endif
