/* See pick.h. Each lookup is a line-for-line port of the TS picker's pick(). */
#include "pick.h"

#include <stddef.h>

static inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

uint32_t l4_fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

/* MurmurHash3 x86_32 (Austin Appleby, public domain); lib/balance/hash.ts over the same bytes. */
uint32_t l4_murmur3(const void *data, uint32_t length, uint32_t seed) {
  const uint8_t *bytes = data;
  uint32_t h = seed;
  uint32_t blocks = length & ~3u;
  uint32_t i = 0;
  for (; i < blocks; i += 4) {
    uint32_t k = (uint32_t)bytes[i] | ((uint32_t)bytes[i + 1] << 8) | ((uint32_t)bytes[i + 2] << 16) |
                 ((uint32_t)bytes[i + 3] << 24);
    k *= 0xcc9e2d51u;
    k = rotl32(k, 15);
    k *= 0x1b873593u;
    h ^= k;
    h = rotl32(h, 13);
    h = h * 5u + 0xe6546b64u;
  }
  uint32_t tail = length & 3u;
  if (tail != 0) {
    uint32_t k = 0;
    if (tail == 3) k ^= (uint32_t)bytes[i + 2] << 16;
    if (tail >= 2) k ^= (uint32_t)bytes[i + 1] << 8;
    k ^= bytes[i];
    k *= 0xcc9e2d51u;
    k = rotl32(k, 15);
    k *= 0x1b873593u;
    h ^= k;
  }
  h ^= length;
  return l4_fmix32(h);
}

static inline int excluded(const l4_exclude *ex, int32_t entry) {
  return ex != NULL && ex->mask != NULL && entry >= 0 && ex->mask[entry] != 0;
}

static inline int any_excluded(const l4_exclude *ex) { return ex != NULL && ex->mask != NULL && ex->count > 0; }

/* Maglev, ring owners and the smooth-WRR sequence: on exclusion walk on from `start`. */
static int32_t walk(const int32_t *table, uint32_t size, uint32_t start, const l4_exclude *ex) {
  for (uint32_t step = 1; step < size; step++) {
    uint32_t next = start + step;
    int32_t candidate = table[next >= size ? next - size : next];
    if (!excluded(ex, candidate)) return candidate;
  }
  return -1;
}

static int32_t pick_maglev(const l4_pick_data *d, uint32_t hash, const l4_exclude *ex) {
  if (d->entry_count == 0 || d->table_length == 0) return -1;
  uint32_t slot = hash % d->table_length;
  int32_t owner = d->table[slot];
  if (!any_excluded(ex) || !excluded(ex, owner)) return owner;
  if (ex->count >= d->entry_count) return -1;
  return walk(d->table, d->table_length, slot, ex);
}

static int32_t pick_ring(const l4_pick_data *d, uint32_t hash, const l4_exclude *ex) {
  uint32_t size = d->table_length;
  if (size == 0) return -1;
  uint32_t low = 0, high = size;
  while (low < high) {
    uint32_t mid = (low + high) >> 1;
    if (d->points[mid] < hash) low = mid + 1;
    else high = mid;
  }
  uint32_t start = low == size ? 0 : low;
  int32_t owner = d->table[start];
  if (!any_excluded(ex) || !excluded(ex, owner)) return owner;
  if (ex->count >= d->entry_count) return -1;
  return walk(d->table, size, start, ex);
}

static int32_t pick_ip_hash(const l4_pick_data *d, uint32_t hash, const l4_exclude *ex) {
  uint32_t size = d->table_length;
  if (size == 0) return -1;
  uint32_t home = hash % size;
  int32_t owner = d->table[home];
  if (!any_excluded(ex) || !excluded(ex, owner)) return owner;
  if (ex->count >= d->entry_count) return -1;
  for (uint32_t attempt = 1; attempt <= 8; attempt++) {
    int32_t candidate = d->table[l4_fmix32(hash + attempt) % size];
    if (!excluded(ex, candidate)) return candidate;
  }
  return walk(d->table, size, home, ex);
}

/*
 * Round-robin: the picker's smooth-WRR sequence over one period (it repeats exactly after
 * total-weight picks), indexed by a position every thread advances. A retry walks on in the
 * sequence past excluded entries.
 */
static int32_t pick_round_robin(const l4_pick_data *d, l4_pick_state *st, const l4_exclude *ex) {
  uint32_t size = d->table_length;
  if (size == 0) return -1;
  uint32_t at = __atomic_fetch_add(&st->cursor, 1, __ATOMIC_RELAXED) % size;
  int32_t owner = d->table[at];
  if (!any_excluded(ex) || !excluded(ex, owner)) return owner;
  if (ex->count >= d->entry_count) return -1;
  return walk(d->table, size, at, ex);
}

static int32_t pick_least_conn(const l4_pick_data *d, l4_pick_state *st, const l4_exclude *ex, const int32_t *active) {
  uint32_t count = d->entry_count;
  if (count == 0) return -1;
  int check = any_excluded(ex);
  int32_t best = -1;
  double best_active = 0, best_weight = 1;
  uint32_t cursor = __atomic_load_n(&st->cursor, __ATOMIC_RELAXED);
  if (cursor >= count) cursor = 0;
  for (uint32_t step = 0; step < count; step++) {
    uint32_t rank = cursor + step;
    if (rank >= count) rank -= count;
    if (check && excluded(ex, d->order[rank])) continue;
    double a = __atomic_load_n(&active[d->rank_slots[rank]], __ATOMIC_RELAXED);
    double w = d->weights[rank];
    if (best < 0 || a * best_weight < best_active * w) {
      best = (int32_t)rank;
      best_active = a;
      best_weight = w;
    }
  }
  if (best < 0) return -1;
  __atomic_store_n(&st->cursor, (uint32_t)best + 1 == count ? 0 : (uint32_t)best + 1, __ATOMIC_RELAXED);
  return d->order[best];
}

/* xorshift32 and multiply-shift, exactly as random-two.ts draws (so a fresh state replays it). */
static uint32_t below(l4_pick_state *st, uint32_t bound) {
  uint32_t x = st->prng;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  st->prng = x;
  return (uint32_t)(((uint64_t)x * bound) >> 32);
}

static uint32_t rank_at(const l4_pick_data *d, uint32_t point) {
  uint32_t low = 0, high = d->entry_count - 1;
  while (low < high) {
    uint32_t mid = (low + high) >> 1;
    if ((uint32_t)d->ends[mid] > point) high = mid;
    else low = mid + 1;
  }
  return low;
}

static int lighter(const l4_pick_data *d, const int32_t *active, uint32_t a, uint32_t b) {
  double active_a = __atomic_load_n(&active[d->rank_slots[a]], __ATOMIC_RELAXED);
  double active_b = __atomic_load_n(&active[d->rank_slots[b]], __ATOMIC_RELAXED);
  return active_a * d->weights[b] < active_b * d->weights[a];
}

static int32_t scan(const l4_pick_data *d, uint32_t point, const l4_exclude *ex, int32_t skip_rank) {
  uint32_t rest = point;
  int32_t last = -1;
  for (uint32_t rank = 0; rank < d->entry_count; rank++) {
    if ((int32_t)rank == skip_rank || excluded(ex, d->order[rank])) continue;
    uint32_t weight = (uint32_t)d->weights[rank];
    if (rest < weight) return (int32_t)rank;
    rest -= weight;
    last = (int32_t)rank;
  }
  return last;
}

static int32_t pick_random_two(const l4_pick_data *d, l4_pick_state *st, const l4_exclude *ex, const int32_t *active) {
  uint32_t count = d->entry_count;
  if (any_excluded(ex)) {
    uint32_t total = 0, remaining = 0;
    int32_t only = -1;
    for (uint32_t rank = 0; rank < count; rank++) {
      if (excluded(ex, d->order[rank])) continue;
      total += (uint32_t)d->weights[rank];
      remaining++;
      only = (int32_t)rank;
    }
    if (remaining == 0) return -1;
    if (remaining == 1) return d->order[only];
    int32_t first = scan(d, below(st, total), ex, -1);
    int32_t second = scan(d, below(st, total - (uint32_t)d->weights[first]), ex, first);
    return d->order[lighter(d, active, (uint32_t)second, (uint32_t)first) ? second : first];
  }
  if (count <= 1) return count == 1 ? d->order[0] : -1;
  uint32_t first = rank_at(d, below(st, d->total_weight));
  uint32_t first_weight = (uint32_t)d->weights[first];
  uint32_t first_start = (uint32_t)d->ends[first] - first_weight;
  uint32_t point = below(st, d->total_weight - first_weight);
  if (point >= first_start) point += first_weight;
  uint32_t second = rank_at(d, point);
  return d->order[lighter(d, active, second, first) ? second : first];
}

int32_t l4_pick(const l4_pick_data *d, l4_pick_state *st, uint32_t hash, const l4_exclude *ex, const int32_t *active) {
  switch (d->algorithm) {
    case L4_ALG_MAGLEV: return pick_maglev(d, hash, ex);
    case L4_ALG_RING: return pick_ring(d, hash, ex);
    case L4_ALG_IP_HASH: return pick_ip_hash(d, hash, ex);
    case L4_ALG_ROUND_ROBIN: return pick_round_robin(d, st, ex);
    case L4_ALG_LEAST_CONN: return pick_least_conn(d, st, ex, active);
    case L4_ALG_RANDOM_TWO: return pick_random_two(d, st, ex, active);
    default: return -1;
  }
}
