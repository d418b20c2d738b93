/*
 * The admit stage of the native plane (DESIGN: listener → admit → key → pick …; issue 12 item 3,
 * issue 14): allow/deny CIDR lists (deny wins), open connections per source, and new
 * connections per second per source (a token bucket in a bounded table, least recently used
 * evicted first). The same rules, order and refill arithmetic as lib/flow/admit.ts and
 * lib/flow/limiter.ts, which stay the reference; this file knows nothing of sockets or Node.
 *
 * The control plane parses the CIDR text (lib/address CidrList, the same blocks the node plane
 * matches) and publishes words and masks; C matches, counts and refills. One l4_admit is shared
 * by every engine thread: the tables sit behind one mutex taken once per accepted connection
 * and once per close of a counted one, never per chunk.
 */
#ifndef L4_ADMIT_H
#define L4_ADMIT_H

#include <stdint.h>
#include <sys/socket.h>

/* Refusal reasons, indexed as lib/flow/admit.ts REFUSAL_REASONS (the TCP ones). */
enum l4_refusal {
  L4_ADMITTED = -1,
  L4_REFUSE_DENIED = 0,
  L4_REFUSE_NOT_ALLOWED = 1,
  L4_REFUSE_MAX_CONNS = 2,
  L4_REFUSE_MAX_CONNS_PER_IP = 3,
  L4_REFUSE_RATE_PER_IP = 4,
  L4_REFUSAL_COUNT = 5
};

/* HAProxy's `size 1m` stick table, as limiter.ts DEFAULT_MAX_SOURCES. */
#define L4_ADMIT_MAX_SOURCES (1u << 20)

/*
 * One CIDR block as lib/address parses it: host-order 32-bit words, masked. An IPv4 block (or
 * an IPv4-mapped IPv6 one with prefix ≥ 96) is family 4 and uses words[0] only.
 */
typedef struct l4_cidr {
  uint32_t family; /* 4 or 6 */
  uint32_t words[4];
  uint32_t masks[4];
} l4_cidr;

/* A source as admission keys it: IPv4-mapped IPv6 is IPv4 (words[0]), as parseIpInto does. */
typedef struct l4_source {
  uint32_t family; /* 4 or 6 */
  uint32_t words[4];
} l4_source;

typedef struct l4_admit_config {
  const l4_cidr *allow; /* non-empty: every other source is refused not-allowed */
  uint32_t allow_count;
  const l4_cidr *deny;
  uint32_t deny_count;
  uint32_t max_conns_per_ip; /* 0 = off */
  double rate_per_sec;       /* 0 = off */
  double burst;              /* bucket size; 0 = rate_per_sec (at least 1), as limiter.ts */
  uint32_t max_sources;      /* rate table bound; 0 = L4_ADMIT_MAX_SOURCES */
} l4_admit_config;

typedef struct l4_admit l4_admit;

/* Whether `config` limits anything (else a service needs no l4_admit). */
int l4_admit_config_active(const l4_admit_config *config);
/* A new admission with one reference; the lists are copied. NULL on ENOMEM or a bad config. */
l4_admit *l4_admit_new(const l4_admit_config *config);
/* Same settings: a reload that keeps them keeps the tables (admit.ts: kept across reloads). */
int l4_admit_same(const l4_admit *admit, const l4_admit_config *config);
void l4_admit_ref(l4_admit *admit);
void l4_admit_unref(l4_admit *admit);

/* The source of a peer address (IPv4, IPv6 or IPv4-mapped IPv6). */
void l4_source_from_sockaddr(l4_source *out, const struct sockaddr *address);

/* The lists only (no state, no lock): L4_REFUSE_DENIED, L4_REFUSE_NOT_ALLOWED or L4_ADMITTED. */
int l4_admit_acl(const l4_admit *admit, const l4_source *source);
/*
 * The per-source limits: L4_ADMITTED (counted: l4_admit_release it exactly once at close) or
 * L4_REFUSE_MAX_CONNS_PER_IP / L4_REFUSE_RATE_PER_IP (nothing counted). The rate is checked
 * last, so a connection refused for its open count spends no token. `now_ms` is monotonic.
 */
int l4_admit_take(l4_admit *admit, const l4_source *source, double now_ms);
void l4_admit_release(l4_admit *admit, const l4_source *source);

/* For tests and /status: open connections of a source, tokens it has, rate table size and evictions. */
uint32_t l4_admit_open_of(l4_admit *admit, const l4_source *source);
double l4_admit_tokens(l4_admit *admit, const l4_source *source, double now_ms);
uint32_t l4_admit_sources(l4_admit *admit);
uint64_t l4_admit_evictions(l4_admit *admit);

#endif
