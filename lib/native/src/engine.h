/*
 * The native data plane's engine (DESIGN "Two data planes, one control plane"): epoll threads
 * that move a service's TCP connections through accept → admit → key → pick → connect → header
 * → copy → close with no JavaScript per connection. This header is the whole interface the
 * N-API glue (addon.c) and the C test (tests/native/engine_test.c) use; it knows nothing of Node.
 *
 * Threads: each owns an epoll set, an SO_REUSEPORT listener per listen address of every
 * service, its connections, a timer wheel and a buffer free list. The control plane (one other
 * thread) publishes snapshots, asks threads to stop accepting / close connections through a
 * per-thread command queue, and drains close records from one ring.
 */
#ifndef L4_ENGINE_H
#define L4_ENGINE_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "admit.h"
#include "pick.h"

typedef struct l4_engine l4_engine;
typedef struct l4_service l4_service;
typedef struct l4_counters l4_counters;
typedef struct l4_snapshot l4_snapshot;

/* Close reasons, in the order of the TS TcpCloseReason names (index.ts REASONS). */
enum l4_reason {
  L4_CLIENT_CLOSED = 0,
  L4_BACKEND_CLOSED,
  L4_CLIENT_RESET,
  L4_BACKEND_RESET,
  L4_CLIENT_ERROR,
  L4_BACKEND_ERROR,
  L4_IDLE_TIMEOUT,
  L4_SHUTDOWN,
  L4_BACKEND_DOWN,
  L4_NO_BACKEND,
  L4_CONNECT_FAILED,
  L4_REASON_COUNT
};

enum l4_record_kind {
  L4_REC_CLOSE = 0,        /* one per connection served (the 'connection closed' line) */
  L4_REC_CONNECT_FAIL = 1, /* a failed connect attempt: error, slot (a passive observation) */
  L4_REC_MAX_CONNS = 2,    /* refused by max-conns */
  L4_REC_ACCEPT_ERROR = 3, /* accept4 failed (EMFILE...) */
  L4_REC_GEN_DONE = 4,     /* no snapshot or connection refers to counters `gen` any more */
  L4_REC_REFUSED = 5,      /* refused at admission: `reason` is an enum l4_refusal (not max-conns) */
};

/* Our own connect timeout, told apart from a kernel ETIMEDOUT. */
#define L4_ERR_TIMEOUT (-1)

typedef struct l4_record {
  uint8_t kind;
  uint8_t reason;
  uint8_t attempts;
  uint8_t family; /* 4 or 6 */
  uint32_t service_id;
  uint32_t gen;
  int32_t slot;  /* counter slot of the (last) backend, -1 for none */
  int32_t error; /* errno, or L4_ERR_TIMEOUT */
  uint32_t duration_ms;
  uint32_t client_port;
  char client_ip[48]; /* canonical text, as hashed */
  char id[16];        /* UNIQUE_ID, base64url, not NUL-terminated */
  uint8_t opened;     /* the backend connection was established (bytes and totals count) */
  uint64_t bytes_in;  /* read from the client */
  uint64_t bytes_out; /* read from the backend */
} l4_record;

typedef struct l4_service_config {
  uint32_t connect_timeout_ms;
  uint32_t idle_timeout_ms; /* 0 = none */
  uint32_t retries;
  uint32_t max_conns; /* 0 = unlimited */
  int hash_port;      /* key src-ip-port instead of src-ip */
  int proxy_version;  /* 0 none, 1, 2 */
  int proxy_crc32c;
} l4_service_config;

/* One usable backend of a snapshot, indexed like the picker's entries. */
typedef struct l4_entry {
  struct sockaddr_storage addr;
  socklen_t addr_length;
  int32_t slot;
} l4_entry;

enum l4_stat {
  L4_STAT_ACCEPTED = 0,
  L4_STAT_REJECTED_MAX_CONNS,
  L4_STAT_NO_BACKEND,
  L4_STAT_CONNECT_FAILURES,
  L4_STAT_RETRIES,
  L4_STAT_CLOSED,
  L4_STAT_RECORDS_DROPPED,
  /* refusals at admission other than max-conns (REJECTED_MAX_CONNS above) */
  L4_STAT_REFUSED_DENIED,
  L4_STAT_REFUSED_NOT_ALLOWED,
  L4_STAT_REFUSED_MAX_CONNS_PER_IP,
  L4_STAT_REFUSED_RATE_PER_IP,
  L4_STAT_SPLICED_IN,  /* bytes from clients moved with splice(2) (the rest went through buffers) */
  L4_STAT_SPLICED_OUT, /* bytes from backends moved with splice(2) */
  L4_STAT_COUNT
};

/* `notify` is called from engine threads when records wait in an empty ring (coalesced). */
l4_engine *l4_engine_new(int threads, void (*notify)(void *ctx), void *ctx, char *error, size_t error_length);
/* Stops the threads and closes every socket; no record is produced. */
void l4_engine_free(l4_engine *engine);
int l4_engine_threads(const l4_engine *engine);

/*
 * Per-pool counters: active[n] is read by the control plane (the pool's `active` array). The
 * block lives while the control plane holds it (l4_counters_release) or anything in the engine
 * refers to it.
 */
l4_counters *l4_counters_new(l4_engine *engine, uint32_t n, uint32_t gen);
int32_t *l4_counters_active(l4_counters *counters);
/* Live bytes read by opened connections, [2 * slot] from clients, [2 * slot + 1] from the
   backend: the close record's totals, counted as they move. */
uint64_t *l4_counters_bytes(l4_counters *counters);
/* One block for the control plane: active (n int32) at 0, bytes at l4_counters_bytes_offset(n). */
void *l4_counters_shared(l4_counters *counters);
size_t l4_counters_bytes_offset(uint32_t n);
size_t l4_counters_shared_length(uint32_t n);
uint32_t l4_counters_length(const l4_counters *counters);
void l4_counters_release(l4_counters *counters);

l4_service *l4_service_new(l4_engine *engine, uint32_t id);
/* Binds one listener per thread (SO_REUSEPORT); `bound` gets the address (port 0 resolved). 0 or errno. */
int l4_service_listen(l4_service *service, const struct sockaddr *address, socklen_t length, int backlog,
                      struct sockaddr_storage *bound);
/*
 * The usable backups while primaries serve (lib/pool #backups): a connection that has tried
 * every primary it may use is redispatched to one of them (HAProxy `option redispatch`).
 * When no primary is usable the backups are the primaries of the snapshot instead.
 */
typedef struct l4_backups {
  l4_pick_data pick;
  const l4_entry *entries;
  uint32_t entry_count;
} l4_backups;

/*
 * Publishes a new snapshot (copied): entries, pick data, config, counters, backups (NULL =
 * none) and admission (NULL = none). From now on new connections use it; established ones
 * keep theirs. Admission with the same settings as the current snapshot's keeps its tables
 * (open counts, rate buckets), as the node plane keeps its Admission across such a reload.
 * Returns 0 or ENOMEM/EINVAL.
 */
int l4_service_publish(l4_service *service, l4_counters *counters, const l4_service_config *config,
                       const l4_pick_data *pick, const l4_entry *entries, uint32_t entry_count,
                       const l4_backups *backups, const l4_admit_config *admit);
/* Closes the service's listeners on every thread; returns when they are closed. */
void l4_service_stop_accepting(l4_service *service);
void l4_service_close_all(l4_service *service, int reason);
/*
 * The backend of `slot` of `counters` left the usable set: connections still connecting to it
 * move to the next pick (lib/flow/policy 'move'); established ones are ended with `reason`
 * when it is ≥ 0 (on-down shutdown), and stay when it is -1.
 */
void l4_service_shutdown_slot(l4_service *service, l4_counters *counters, int32_t slot, int reason);
uint32_t l4_service_active(l4_service *service);
void l4_service_stats(l4_service *service, uint64_t out[L4_STAT_COUNT]);
/* The control plane is done with the service (after stop_accepting). */
void l4_service_release(l4_service *service);

/* Copies up to `max` records out; returns how many. */
size_t l4_engine_drain(l4_engine *engine, l4_record *out, size_t max);
/* Frees snapshots every thread has moved past (called from the control plane's thread). */
void l4_engine_reclaim(l4_engine *engine);

/* Test and glue helper: a snapshot-less lookup with a fresh state, for the golden test. */
void l4_pick_many(const l4_pick_data *pick, const uint32_t *hashes, int32_t *out, size_t count, const int32_t *active);

#endif
