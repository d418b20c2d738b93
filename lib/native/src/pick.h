/*
 * The pick stage of the native plane: the same hash and the same few lines of lookup as
 * the lib/balance pickers, over pick data the control plane computed and published (DESIGN "Two data
 * planes"). Nothing here builds a table; a golden test (tests/native/golden.test.ts) proves the
 * lookups agree with the TypeScript pickers key for key.
 */
#ifndef L4_PICK_H
#define L4_PICK_H

#include <stdint.h>

enum l4_algorithm {
  L4_ALG_MAGLEV = 0,
  L4_ALG_RING = 1,
  L4_ALG_IP_HASH = 2,
  L4_ALG_ROUND_ROBIN = 3,
  L4_ALG_LEAST_CONN = 4,
  L4_ALG_RANDOM_TWO = 5,
};

#define L4_SEED_KEY 0u

uint32_t l4_murmur3(const void *data, uint32_t length, uint32_t seed);
uint32_t l4_fmix32(uint32_t h);

/*
 * Pick data: exactly what the TS picker exports (lib/balance exportPickData). `table` is the
 * Maglev table, the ip-hash slot list, the ring's owners or the smooth-WRR sequence; `points`
 * the ring's sorted points; `order`/`weights` name order and weights for least-conn and
 * random-two (rank-indexed), `slots` each rank's counter index. Arrays are owned by the caller.
 */
typedef struct l4_pick_data {
  int algorithm;
  uint32_t entry_count;
  const int32_t *table;
  uint32_t table_length;
  const uint32_t *points;
  const int32_t *order;
  const int32_t *weights;
  const int32_t *ends;
  const int32_t *rank_slots;
  uint32_t total_weight;
} l4_pick_data;

/* Mutable per-picker state: the round-robin position, the least-conn cursor, the P2C PRNG. */
typedef struct l4_pick_state {
  uint32_t cursor;
  uint32_t prng;
} l4_pick_state;

#define L4_PRNG_SEED 0x2545f491u

/* Entry indices excluded for this pick (backends tried already, or steered around). */
typedef struct l4_exclude {
  const uint8_t *mask; /* entry_count bytes, nonzero = excluded; NULL = none */
  uint32_t count;      /* how many entries the mask excludes */
} l4_exclude;

/*
 * Returns an entry index or -1 (none, or every entry excluded). `active` is the live counts
 * array indexed by counter slot (least-conn and random-two only).
 */
int32_t l4_pick(const l4_pick_data *data, l4_pick_state *state, uint32_t hash, const l4_exclude *exclude,
                const int32_t *active);

#endif
