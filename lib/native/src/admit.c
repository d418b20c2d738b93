/* See admit.h. lib/flow/admit.ts and limiter.ts are the reference; comments name where they differ. */
#define _GNU_SOURCE
#include "admit.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "pick.h"

#define NONE UINT32_MAX
/* Tables start this big and double (limiter.ts INITIAL_SLOTS): a quiet service pays little. */
#define INITIAL_NODES 1024u

/*
 * A source's entry. The open-count table frees entries when their count drops to 0 (bounded by
 * the open connections); the rate table never frees, it reuses the least recently used entry
 * once it holds max_sources (limiter.ts #freeSlot).
 */
struct node {
  l4_source key;
  uint32_t chain;              /* next entry in the same hash bucket */
  uint32_t newer, older;       /* recency list (rate table only) */
  uint32_t open;               /* open connections (open-count table only) */
  double tokens, updated_ms;   /* the bucket (rate table only) */
};

struct table {
  uint32_t *heads; /* bucket → first entry; head_mask + 1 buckets, a power of two */
  uint32_t head_mask;
  struct node *nodes;
  uint32_t capacity, used, size, limit;
  uint32_t free_list; /* chained through `chain` */
  uint32_t newest, oldest;
  uint32_t seed; /* random per table: sources an attacker picks cannot aim at one bucket */
  uint64_t evictions;
};

struct l4_admit {
  int refs;
  l4_cidr *allow, *deny;
  uint32_t allow_count, deny_count;
  uint32_t max_conns_per_ip;
  double rate_per_ms, rate_per_sec, burst;
  uint32_t max_sources;
  pthread_mutex_t lock;
  struct table open, rate;
};

/* ---- sources and lists -------------------------------------------------------------------- */

void l4_source_from_sockaddr(l4_source *out, const struct sockaddr *address) {
  memset(out, 0, sizeof *out);
  if (address->sa_family == AF_INET) {
    out->family = 4;
    out->words[0] = ntohl(((const struct sockaddr_in *)address)->sin_addr.s_addr);
    return;
  }
  const uint8_t *b = ((const struct sockaddr_in6 *)address)->sin6_addr.s6_addr;
  for (int i = 0; i < 4; i++)
    out->words[i] = ((uint32_t)b[i * 4] << 24) | ((uint32_t)b[i * 4 + 1] << 16) | ((uint32_t)b[i * 4 + 2] << 8) | b[i * 4 + 3];
  /* a dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; they match IPv4 blocks */
  if (out->words[0] == 0 && out->words[1] == 0 && out->words[2] == 0xffffu) {
    out->family = 4;
    out->words[0] = out->words[3];
    out->words[1] = out->words[2] = out->words[3] = 0;
    return;
  }
  out->family = 6;
}

/* CidrList.containsWords */
static int list_contains(const l4_cidr *blocks, uint32_t count, const l4_source *s) {
  uint32_t n = s->family == 4 ? 1 : 4;
  for (uint32_t b = 0; b < count; b++) {
    if (blocks[b].family != s->family) continue;
    uint32_t i = 0;
    while (i < n && (s->words[i] & blocks[b].masks[i]) == blocks[b].words[i]) i++;
    if (i == n) return 1;
  }
  return 0;
}

int l4_admit_acl(const l4_admit *a, const l4_source *s) {
  if (a->deny_count > 0 && list_contains(a->deny, a->deny_count, s)) return L4_REFUSE_DENIED;
  if (a->allow_count > 0 && !list_contains(a->allow, a->allow_count, s)) return L4_REFUSE_NOT_ALLOWED;
  return L4_ADMITTED;
}

/* ---- one hash table ----------------------------------------------------------------------- */

static uint32_t hash_of(const struct table *t, const l4_source *key) {
  return l4_murmur3(key, sizeof *key, t->seed);
}

static int table_init(struct table *t, uint32_t limit) {
  memset(t, 0, sizeof *t);
  t->limit = limit;
  t->free_list = t->newest = t->oldest = NONE;
  if (getrandom(&t->seed, sizeof t->seed, GRND_NONBLOCK) != (ssize_t)sizeof t->seed) t->seed = (uint32_t)(uintptr_t)t;
  uint32_t buckets = INITIAL_NODES;
  t->heads = malloc(buckets * sizeof *t->heads);
  if (!t->heads) return 0;
  memset(t->heads, 0xff, buckets * sizeof *t->heads);
  t->head_mask = buckets - 1;
  return 1;
}

static void table_free(struct table *t) {
  free(t->heads);
  free(t->nodes);
}

static uint32_t table_find(const struct table *t, const l4_source *key, uint32_t hash) {
  for (uint32_t at = t->heads[hash & t->head_mask]; at != NONE; at = t->nodes[at].chain)
    if (memcmp(&t->nodes[at].key, key, sizeof *key) == 0) return at;
  return NONE;
}

static void table_unchain(struct table *t, uint32_t node) {
  uint32_t *link = &t->heads[hash_of(t, &t->nodes[node].key) & t->head_mask];
  while (*link != node) link = &t->nodes[*link].chain;
  *link = t->nodes[node].chain;
}

/* Doubles the buckets once entries outnumber them, so chains stay about one long. */
static void table_rehash(struct table *t) {
  uint32_t buckets = (t->head_mask + 1) * 2;
  uint32_t *heads = malloc((size_t)buckets * sizeof *heads);
  if (!heads) return; /* longer chains, still correct */
  memset(heads, 0xff, (size_t)buckets * sizeof *heads);
  for (uint32_t b = 0; b <= t->head_mask; b++) {
    for (uint32_t at = t->heads[b]; at != NONE;) {
      uint32_t next = t->nodes[at].chain;
      uint32_t *head = &heads[hash_of(t, &t->nodes[at].key) & (buckets - 1)];
      t->nodes[at].chain = *head;
      *head = at;
      at = next;
    }
  }
  free(t->heads);
  t->heads = heads;
  t->head_mask = buckets - 1;
}

static void lru_unlink(struct table *t, uint32_t n) {
  struct node *x = &t->nodes[n];
  if (x->newer != NONE) t->nodes[x->newer].older = x->older;
  else t->newest = x->older;
  if (x->older != NONE) t->nodes[x->older].newer = x->newer;
  else t->oldest = x->newer;
}

static void lru_push_newest(struct table *t, uint32_t n) {
  t->nodes[n].newer = NONE;
  t->nodes[n].older = t->newest;
  if (t->newest != NONE) t->nodes[t->newest].newer = n;
  t->newest = n;
  if (t->oldest == NONE) t->oldest = n;
}

/*
 * A free entry for `key`, chained in: from the free list, a new one, or (at the limit, or out of
 * memory) the least recently used one when `evict`. NONE when there is none to be had.
 */
static uint32_t table_insert(struct table *t, const l4_source *key, uint32_t hash, int evict) {
  uint32_t n = NONE;
  if (t->free_list != NONE) {
    n = t->free_list;
    t->free_list = t->nodes[n].chain;
  } else if (t->used < t->limit) {
    if (t->used == t->capacity) {
      uint32_t capacity = t->capacity == 0 ? INITIAL_NODES : t->capacity * 2;
      if (capacity > t->limit) capacity = t->limit;
      struct node *nodes = realloc(t->nodes, (size_t)capacity * sizeof *nodes);
      if (nodes) {
        t->nodes = nodes;
        t->capacity = capacity;
      }
    }
    if (t->used < t->capacity) n = t->used++;
  }
  if (n == NONE) {
    if (!evict || t->oldest == NONE) return NONE;
    n = t->oldest;
    lru_unlink(t, n);
    table_unchain(t, n);
    t->size--;
    t->evictions++;
  }
  memset(&t->nodes[n], 0, sizeof t->nodes[n]);
  t->nodes[n].key = *key;
  t->nodes[n].newer = t->nodes[n].older = NONE;
  t->size++;
  if (t->size > t->head_mask + 1) {
    table_rehash(t);
    hash = hash_of(t, key);
  }
  uint32_t *head = &t->heads[hash & t->head_mask];
  t->nodes[n].chain = *head;
  *head = n;
  return n;
}

static void table_remove(struct table *t, uint32_t n) {
  table_unchain(t, n);
  t->nodes[n].chain = t->free_list;
  t->free_list = n;
  t->size--;
}

/* ---- admission ---------------------------------------------------------------------------- */

static double burst_of(const l4_admit_config *c) {
  if (c->burst >= 1) return c->burst;
  return c->rate_per_sec > 1 ? c->rate_per_sec : 1;
}

int l4_admit_config_active(const l4_admit_config *c) {
  return c->allow_count > 0 || c->deny_count > 0 || c->max_conns_per_ip > 0 || c->rate_per_sec > 0;
}

static l4_cidr *copy_blocks(const l4_cidr *from, uint32_t count, int *failed) {
  if (count == 0) return NULL;
  l4_cidr *out = malloc((size_t)count * sizeof *out);
  if (!out) {
    *failed = 1;
    return NULL;
  }
  memcpy(out, from, (size_t)count * sizeof *out);
  return out;
}

l4_admit *l4_admit_new(const l4_admit_config *c) {
  if (!(c->rate_per_sec >= 0) || !isfinite(c->rate_per_sec) || !isfinite(c->burst)) return NULL;
  for (uint32_t i = 0; i < c->allow_count; i++) if (c->allow[i].family != 4 && c->allow[i].family != 6) return NULL;
  for (uint32_t i = 0; i < c->deny_count; i++) if (c->deny[i].family != 4 && c->deny[i].family != 6) return NULL;
  l4_admit *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  int failed = 0;
  a->refs = 1;
  a->allow = copy_blocks(c->allow, c->allow_count, &failed);
  a->deny = copy_blocks(c->deny, c->deny_count, &failed);
  a->allow_count = c->allow_count;
  a->deny_count = c->deny_count;
  a->max_conns_per_ip = c->max_conns_per_ip;
  a->rate_per_sec = c->rate_per_sec;
  a->rate_per_ms = c->rate_per_sec / 1000;
  a->burst = burst_of(c);
  a->max_sources = c->max_sources > 0 ? c->max_sources : L4_ADMIT_MAX_SOURCES;
  if (!failed && !table_init(&a->open, UINT32_MAX - 1)) failed = 1;
  if (!failed && !table_init(&a->rate, a->max_sources)) failed = 1;
  if (failed) {
    table_free(&a->open);
    table_free(&a->rate);
    free(a->allow);
    free(a->deny);
    free(a);
    return NULL;
  }
  pthread_mutex_init(&a->lock, NULL);
  return a;
}

int l4_admit_same(const l4_admit *a, const l4_admit_config *c) {
  return a->allow_count == c->allow_count && a->deny_count == c->deny_count && a->max_conns_per_ip == c->max_conns_per_ip &&
         a->rate_per_sec == c->rate_per_sec && (c->rate_per_sec == 0 || a->burst == burst_of(c)) &&
         a->max_sources == (c->max_sources > 0 ? c->max_sources : L4_ADMIT_MAX_SOURCES) &&
         (c->allow_count == 0 || memcmp(a->allow, c->allow, (size_t)c->allow_count * sizeof *c->allow) == 0) &&
         (c->deny_count == 0 || memcmp(a->deny, c->deny, (size_t)c->deny_count * sizeof *c->deny) == 0);
}

void l4_admit_ref(l4_admit *a) { __atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED); }

void l4_admit_unref(l4_admit *a) {
  if (__atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  pthread_mutex_destroy(&a->lock);
  table_free(&a->open);
  table_free(&a->rate);
  free(a->allow);
  free(a->deny);
  free(a);
}

/* TokenBuckets.take, under the lock. */
static int rate_take(l4_admit *a, const l4_source *s, double now_ms) {
  struct table *t = &a->rate;
  uint32_t hash = hash_of(t, s);
  uint32_t n = table_find(t, s, hash);
  if (n == NONE) {
    n = table_insert(t, s, hash, 1);
    if (n == NONE) return 1; /* no memory for a bucket: admit rather than refuse for our shortage */
    lru_push_newest(t, n);
    t->nodes[n].tokens = a->burst - 1;
    t->nodes[n].updated_ms = now_ms;
    return 1;
  }
  if (n != t->newest) {
    lru_unlink(t, n);
    lru_push_newest(t, n);
  }
  struct node *x = &t->nodes[n];
  /* a clock that steps back earns nothing until it passes the last time again */
  double elapsed_ms = now_ms - x->updated_ms;
  double tokens = x->tokens;
  if (elapsed_ms > 0) {
    tokens = fmin(a->burst, tokens + elapsed_ms * a->rate_per_ms);
    x->updated_ms = now_ms;
  }
  if (tokens < 1) {
    x->tokens = tokens;
    return 0;
  }
  x->tokens = tokens - 1;
  return 1;
}

int l4_admit_take(l4_admit *a, const l4_source *s, double now_ms) {
  if (a->max_conns_per_ip == 0 && a->rate_per_sec <= 0) return L4_ADMITTED;
  int result = L4_ADMITTED;
  pthread_mutex_lock(&a->lock);
  uint32_t hash = 0, n = NONE;
  if (a->max_conns_per_ip > 0) {
    hash = hash_of(&a->open, s);
    n = table_find(&a->open, s, hash);
    if (n != NONE && a->open.nodes[n].open >= a->max_conns_per_ip) result = L4_REFUSE_MAX_CONNS_PER_IP;
  }
  if (result == L4_ADMITTED && a->rate_per_sec > 0 && !rate_take(a, s, now_ms)) result = L4_REFUSE_RATE_PER_IP;
  if (result == L4_ADMITTED && a->max_conns_per_ip > 0) {
    if (n == NONE) n = table_insert(&a->open, s, hash, 0);
    /* no memory for an entry: admitted uncounted (release finds nothing, which it allows) */
    if (n != NONE) a->open.nodes[n].open++;
  }
  pthread_mutex_unlock(&a->lock);
  return result;
}

void l4_admit_release(l4_admit *a, const l4_source *s) {
  if (a->max_conns_per_ip == 0) return;
  pthread_mutex_lock(&a->lock);
  uint32_t n = table_find(&a->open, s, hash_of(&a->open, s));
  if (n != NONE && --a->open.nodes[n].open == 0) table_remove(&a->open, n);
  pthread_mutex_unlock(&a->lock);
}

uint32_t l4_admit_open_of(l4_admit *a, const l4_source *s) {
  pthread_mutex_lock(&a->lock);
  uint32_t n = a->max_conns_per_ip > 0 ? table_find(&a->open, s, hash_of(&a->open, s)) : NONE;
  uint32_t open = n == NONE ? 0 : a->open.nodes[n].open;
  pthread_mutex_unlock(&a->lock);
  return open;
}

double l4_admit_tokens(l4_admit *a, const l4_source *s, double now_ms) {
  pthread_mutex_lock(&a->lock);
  uint32_t n = table_find(&a->rate, s, hash_of(&a->rate, s));
  double tokens = a->burst;
  if (n != NONE) {
    double elapsed_ms = now_ms - a->rate.nodes[n].updated_ms;
    tokens = fmin(a->burst, a->rate.nodes[n].tokens + (elapsed_ms > 0 ? elapsed_ms : 0) * a->rate_per_ms);
  }
  pthread_mutex_unlock(&a->lock);
  return tokens;
}

uint32_t l4_admit_sources(l4_admit *a) {
  pthread_mutex_lock(&a->lock);
  uint32_t size = a->rate.size;
  pthread_mutex_unlock(&a->lock);
  return size;
}

uint64_t l4_admit_evictions(l4_admit *a) {
  pthread_mutex_lock(&a->lock);
  uint64_t evictions = a->rate.evictions;
  pthread_mutex_unlock(&a->lock);
  return evictions;
}
