/*
 * The C tests' assertions (engine_test.c, admit_test.c): a failed CHECK prints the line and returns
 * from the case; EXPECT prints and goes on (for cases with a thread to join first). main()
 * exits 1 when `failures` is not 0.
 */
#ifndef L4_TEST_CHECK_H
#define L4_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
      return;                                                                  \
    }                                                                          \
  } while (0)

#define EXPECT(cond)                                                            \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "%s:%d: EXPECT failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                               \
    }                                                                           \
  } while (0)

#endif
