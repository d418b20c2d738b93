/*
 * See engine.h. What this loop does per connection, and why (../../shared/notes/native-calibration):
 * - edge-triggered epoll, each fd added once (IN | OUT | RDHUP | ET): no epoll_ctl per event;
 * - speculative I/O: right after connect() the client is read and the header plus the first
 *   client bytes are sent in the same pass (on loopback the handshake is usually done by then);
 * - copies go through 16 KiB buffers taken from a per-thread free list only while bytes are in
 *   flight, so an idle connection holds no buffer;
 * - splice-auto (HAProxy's idea): a direction whose read fills a whole buffer is bulk, and from
 *   then on moves through a pipe pair with splice(2) (no copy through user space), taken from a
 *   bounded per-thread pool only while bytes are in flight; small messages stay on recv/send,
 *   which costs fewer syscalls per message than splicing in and out of a pipe;
 * - a connection closed while later events of the same epoll batch still point at it is only
 *   retired, and freed after the batch;
 * - idle and connect timeouts sit on a per-thread timer wheel; I/O only stamps a time.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"

#define BUFFER_SIZE (16 * 1024)
#define MAX_EVENTS 256
#define MAX_TRIED 16
#define RING_CAPACITY 16384
#define LOCAL_RECORDS 256
#define WHEEL_SLOTS 4096
#define WHEEL_MASK (WHEEL_SLOTS - 1)
#define TICK_MS 16
#define MAX_STARVED 64
#define STARVED_RETRY_MS 50
#define AVOID_MS 2000
/* Pipes per thread, in use or pooled: each is two fds, so the bound keeps the fds a listener
   needs (a direction that finds none stays on recv/send). */
#ifndef PIPES_MAX
#define PIPES_MAX 256
#endif
#define PIPES_POOLED 64
/* F_SETPIPE_SZ: a bigger pipe moves more per splice pair; the kernel may refuse (per-user pipe
   page limits) and then the default (64 KiB) stays. */
#define PIPE_BYTES (256 * 1024)
/* A thread with no connection closes its pooled pipes after this long (fds back to baseline). */
#define PIPE_IDLE_MS 1000
/* A splice read smaller than this says the flow is not bulk any more: back to recv/send once the
   pipe is empty. */
#define SMALL_READ (BUFFER_SIZE / 4)
/* Counters refs held by the control plane weigh this much, so "only JS left" is visible. */
#define JS_REF (1 << 24)

enum tag { TAG_CLIENT = 0, TAG_BACKEND = 1, TAG_LISTENER = 2, TAG_WAKE = 3 };
enum state { CONNECTING = 0, OPEN = 1, CLOSED = 2, QUEUED = 3 /* waiting for a slot of entry's backend */ };
enum command_kind { CMD_STOP_ACCEPTING, CMD_CLOSE_ALL, CMD_SHUTDOWN_SLOT, CMD_WAKE };

struct thread;

struct l4_counters {
  int refs; /* C refs (snapshots, connections) + JS_REF while the control plane holds it */
  uint32_t n;
  uint32_t gen;
  l4_engine *engine;
  int64_t *avoid_until_ms; /* per slot: steer around a backend that just refused */
  int32_t *active;         /* the pool's `active` array: the start of `shared` */
  uint64_t *bytes;         /* [2 * slot + dir]: bytes read by opened connections, live */
  void *shared;            /* active, then bytes, then queued (l4_counters_shared) */
  /*
   * Backend maxConns (lib/pool tryTake/giveBack/enqueue): taken[slot] counts the connections
   * holding a slot (connecting or open), limit[slot] is the published maxConns (0 = none),
   * queued[slot] (shared: /status reads it) the FIFO's length. A freed slot passes straight to
   * the first waiter (qhead), whichever thread it lives on, so a newcomer cannot jump the line.
   */
  int32_t *taken;
  uint32_t *limit;
  int32_t *queued;
  struct conn **qhead, **qtail;
  pthread_mutex_t qlock;
};

struct l4_snapshot {
  int refs;
  l4_counters *counters;
  l4_service_config config;
  l4_pick_data pick;
  l4_pick_state state;
  l4_entry *entries; /* entry_count primaries, then backup_count backups */
  uint32_t entry_count;
  /* redispatch targets once every primary was tried (entries[entry_count + i]); 0 = none */
  l4_pick_data backup_pick;
  l4_pick_state backup_state;
  uint32_t backup_count;
  l4_admit *admit; /* NULL: nothing but max-conns to check */
  uint64_t retire_epoch;
  struct l4_snapshot *next_retired;
};

struct listener {
  uint8_t tag; /* must be first */
  int fd;
  l4_service *service;
  struct thread *thread;
  int wildcard;
  l4_endpoint local;
};

struct l4_service {
  l4_engine *engine;
  uint32_t id;
  l4_snapshot *snapshot; /* atomic pointer */
  int refs;
  uint32_t active;
  uint64_t stats[L4_STAT_COUNT];
  struct listener **listeners;
  size_t listener_count;
};

struct tlink {
  struct tlink *prev, *next;
};

struct buffer {
  char *data;
  uint32_t off, len;
};

/* A pipe pair for splice(2): bytes spliced in from the source and not yet out to the destination. */
struct pipe_pair {
  int rfd, wfd;
  uint32_t pending;
};

struct command {
  int kind;
  l4_service *service;
  l4_counters *counters;
  int32_t slot;
  int reason;
  struct conn *conn; /* CMD_WAKE */
  struct command *next;
};

struct conn {
  struct tlink timer; /* a wheel slot; first member, so a link is its conn */
  struct conn *prev, *next; /* the thread's list (close-all, shutdown) */
  uint64_t deadline_ms;
  int timer_armed;
  struct thread *thread;
  l4_service *service;
  l4_snapshot *snapshot;
  struct listener *listener;
  int cfd, bfd;
  uint8_t state;
  uint8_t attempt; /* tags the backend fd's epoll events: events of a failed attempt are ignored */
  uint8_t attempts;
  uint8_t counted;
  uint8_t admitted; /* holds a per-source count in snapshot->admit: released at close */
  uint8_t eof[2];  /* [0] client sent FIN, [1] backend sent FIN */
  uint8_t shut[2]; /* [0] backend write shut, [1] client write shut */
  int8_t reason;   /* -1 until the first cause is known */
  int32_t entry;
  uint32_t tried_count;
  int32_t tried[MAX_TRIED];
  struct buffer buf[2]; /* [0] client → backend, [1] backend → client */
  struct pipe_pair *pipe[2]; /* per direction, only while spliced bytes are in flight */
  uint8_t bulk[2];           /* the direction filled a whole buffer: splice it */
  uint64_t bytes[2];
  uint64_t started_ms, active_ms;
  uint32_t hash;
  uint16_t client_port;
  uint8_t family;
  l4_source source;
  char client_ip[48];
  char id[L4_UNIQUE_ID_LENGTH];
  struct conn *next_retired;
  /* maxConns: holding a slot of held_slot; in its FIFO (under counters->qlock); a slot was handed
     over and `wake` is posted (the conn must outlive it: freed by the wake when closed first) */
  uint8_t holding, in_queue, wake_pending, free_on_wake;
  int32_t held_slot;
  struct conn *qprev, *qnext;
  struct command wake;
};

struct thread {
  uint8_t tag; /* TAG_WAKE, must be first */
  l4_engine *engine;
  int index;
  int epfd, wakefd;
  pthread_t pthread;
  uint64_t quiescent; /* atomic: the epoch seen at the top of the loop, UINT64_MAX while waiting */
  pthread_mutex_t lock;
  struct command *commands;
  struct conn head; /* sentinel of the connection list */
  struct tlink wheel[WHEEL_SLOTS];
  uint64_t wheel_tick;
  uint32_t timers;
  uint64_t now_ms;
  char **free_buffers;
  size_t free_count, free_capacity;
  struct pipe_pair *free_pipes[PIPES_POOLED];
  size_t free_pipe_count;
  uint32_t pipes_open;      /* in use + pooled */
  uint64_t pipe_retry_ms;   /* after pipe2 failed (EMFILE...): not before this */
  uint64_t busy_ms;         /* the last loop pass that had a connection */
  struct conn *retired;
  l4_record records[LOCAL_RECORDS];
  size_t record_count;
  uint8_t random[4096];
  size_t random_at;
  l4_pick_state p2c;
  int reserve_fd; /* closed to accept-and-drop a connection when out of fds */
  /*
   * Listeners whose accept ran out of fds with connections still queued. Edge-triggered epoll
   * reports a listener again only when a new connection arrives, and a full accept queue drops
   * new SYNs without one: so these are retried every STARVED_RETRY_MS until they drain
   * (HAProxy pauses a listener on EMFILE and resumes it the same way). Fds are process-wide:
   * another thread's close can free the fd this thread needs, so waiting for a local close is
   * not enough.
   */
  struct listener *starved[MAX_STARVED];
  size_t starved_count;
  uint64_t starved_retry_ms;
};

struct l4_engine {
  int thread_count;
  struct thread *threads;
  int stopping;
  uint64_t epoch;
  pthread_mutex_t lock; /* ring, retired snapshots, acks */
  pthread_cond_t acked;
  uint32_t pending_acks;
  l4_record *ring;
  size_t ring_head, ring_count;
  int notified;
  uint64_t dropped;
  l4_snapshot *retired;
  void (*notify)(void *ctx);
  void *notify_ctx;
};

static uint64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t tag_ptr(void *p, int tag, uint8_t attempt) {
  return (uint64_t)(uintptr_t)p | (uint64_t)tag | ((uint64_t)attempt << 56);
}

/* ---- records ---------------------------------------------------------------------------- */

static void ring_push_locked(l4_engine *e, const l4_record *records, size_t count) {
  for (size_t i = 0; i < count; i++) {
    if (e->ring_count == RING_CAPACITY) {
      e->dropped += count - i;
      break;
    }
    e->ring[(e->ring_head + e->ring_count) % RING_CAPACITY] = records[i];
    e->ring_count++;
  }
}

static void ring_push(l4_engine *e, const l4_record *records, size_t count) {
  if (count == 0) return;
  pthread_mutex_lock(&e->lock);
  ring_push_locked(e, records, count);
  int notify = !e->notified && e->ring_count > 0;
  if (notify) e->notified = 1;
  pthread_mutex_unlock(&e->lock);
  if (notify && e->notify) e->notify(e->notify_ctx);
}

static void flush_records(struct thread *t) {
  ring_push(t->engine, t->records, t->record_count);
  t->record_count = 0;
}

static l4_record *new_record(struct thread *t) {
  if (t->record_count == LOCAL_RECORDS) flush_records(t);
  l4_record *r = &t->records[t->record_count++];
  memset(r, 0, sizeof *r);
  return r;
}

size_t l4_engine_drain(l4_engine *e, l4_record *out, size_t max) {
  pthread_mutex_lock(&e->lock);
  size_t n = e->ring_count < max ? e->ring_count : max;
  for (size_t i = 0; i < n; i++) out[i] = e->ring[(e->ring_head + i) % RING_CAPACITY];
  e->ring_head = (e->ring_head + n) % RING_CAPACITY;
  e->ring_count -= n;
  if (e->ring_count == 0) e->notified = 0;
  pthread_mutex_unlock(&e->lock);
  return n;
}

/* ---- counters and snapshots ------------------------------------------------------------- */

size_t l4_counters_bytes_offset(uint32_t n) { return ((size_t)(n ? n : 1) * sizeof(int32_t) + 7) & ~(size_t)7; }

size_t l4_counters_queued_offset(uint32_t n) { return l4_counters_bytes_offset(n) + (size_t)(n ? n : 1) * 2 * sizeof(uint64_t); }

size_t l4_counters_shared_length(uint32_t n) { return l4_counters_queued_offset(n) + (size_t)(n ? n : 1) * sizeof(int32_t); }

l4_counters *l4_counters_new(l4_engine *engine, uint32_t n, uint32_t gen) {
  l4_counters *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->avoid_until_ms = calloc(n ? n : 1, sizeof(int64_t));
  /* one block, so the control plane reads both through one external buffer (untouched pages
     of a large block cost no memory) */
  c->shared = calloc(1, l4_counters_shared_length(n));
  /* calloc'd: pages no backend touches cost nothing (n is sized for every backend ever) */
  c->taken = calloc(n ? n : 1, sizeof(int32_t));
  c->limit = calloc(n ? n : 1, sizeof(uint32_t));
  c->qhead = calloc(n ? n : 1, sizeof(struct conn *));
  c->qtail = calloc(n ? n : 1, sizeof(struct conn *));
  if (!c->avoid_until_ms || !c->shared || !c->taken || !c->limit || !c->qhead || !c->qtail) {
    free(c->avoid_until_ms);
    free(c->shared);
    free(c->taken);
    free(c->limit);
    free(c->qhead);
    free(c->qtail);
    free(c);
    return NULL;
  }
  pthread_mutex_init(&c->qlock, NULL);
  c->queued = (int32_t *)((char *)c->shared + l4_counters_queued_offset(n));
  c->active = c->shared;
  c->bytes = (uint64_t *)((char *)c->shared + l4_counters_bytes_offset(n));
  c->refs = JS_REF;
  c->n = n;
  c->gen = gen;
  c->engine = engine;
  return c;
}

int32_t *l4_counters_active(l4_counters *c) { return c->active; }
uint64_t *l4_counters_bytes(l4_counters *c) { return c->bytes; }
void *l4_counters_shared(l4_counters *c) { return c->shared; }
uint32_t l4_counters_length(const l4_counters *c) { return c->n; }

static void counters_free(l4_counters *c) {
  free(c->avoid_until_ms);
  free(c->shared);
  free(c->taken);
  free(c->limit);
  free(c->qhead);
  free(c->qtail);
  pthread_mutex_destroy(&c->qlock);
  free(c);
}

static void counters_ref(l4_counters *c) { __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED); }

static void counters_unref(l4_counters *c) {
  int left = __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
  if (left == 0) {
    counters_free(c);
  } else if (left == JS_REF) {
    /* Only the control plane holds it now: its pool can go. */
    l4_record r;
    memset(&r, 0, sizeof r);
    r.kind = L4_REC_GEN_DONE;
    r.gen = c->gen;
    r.slot = -1;
    ring_push(c->engine, &r, 1);
  }
}

void l4_counters_release(l4_counters *c) {
  if (__atomic_sub_fetch(&c->refs, JS_REF, __ATOMIC_ACQ_REL) == 0) counters_free(c);
}

static void pick_free(l4_pick_data *p) {
  free((void *)p->table);
  free((void *)p->points);
  free((void *)p->order);
  free((void *)p->weights);
  free((void *)p->ends);
  free((void *)p->rank_slots);
}

static void snapshot_free(l4_snapshot *s) {
  pick_free(&s->pick);
  pick_free(&s->backup_pick);
  free(s->entries);
  if (s->admit) l4_admit_unref(s->admit);
  if (s->counters) counters_unref(s->counters);
  free(s);
}

static void snapshot_unref(l4_snapshot *s) {
  if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) snapshot_free(s);
}

static void *copy_array(const void *src, size_t count, size_t size, int *failed) {
  if (src == NULL || count == 0) return NULL;
  void *out = malloc(count * size);
  if (!out) {
    *failed = 1;
    return NULL;
  }
  memcpy(out, src, count * size);
  return out;
}

/* Retired snapshots wait until every thread has passed the top of its loop since (epoch). */
static void retire_snapshot(l4_engine *e, l4_snapshot *s) {
  pthread_mutex_lock(&e->lock);
  s->retire_epoch = __atomic_add_fetch(&e->epoch, 1, __ATOMIC_SEQ_CST);
  s->next_retired = e->retired;
  e->retired = s;
  pthread_mutex_unlock(&e->lock);
}

void l4_engine_reclaim(l4_engine *e) {
  uint64_t min = UINT64_MAX;
  for (int i = 0; i < e->thread_count; i++) {
    uint64_t q = __atomic_load_n(&e->threads[i].quiescent, __ATOMIC_SEQ_CST);
    if (q < min) min = q;
  }
  l4_snapshot *free_list = NULL;
  pthread_mutex_lock(&e->lock);
  l4_snapshot **at = &e->retired;
  while (*at) {
    l4_snapshot *s = *at;
    if (s->retire_epoch <= min) {
      *at = s->next_retired;
      s->next_retired = free_list;
      free_list = s;
    } else {
      at = &s->next_retired;
    }
  }
  pthread_mutex_unlock(&e->lock);
  while (free_list) {
    l4_snapshot *next = free_list->next_retired;
    snapshot_unref(free_list);
    free_list = next;
  }
}

static void queue_serve(l4_counters *k, int32_t slot);

static void pick_copy(l4_pick_data *to, const l4_pick_data *from, uint32_t entry_count, int *failed) {
  *to = *from;
  to->entry_count = entry_count;
  to->table = copy_array(from->table, from->table_length, sizeof(int32_t), failed);
  to->points = copy_array(from->points, from->table_length, sizeof(uint32_t), failed);
  to->order = copy_array(from->order, entry_count, sizeof(int32_t), failed);
  to->weights = copy_array(from->weights, entry_count, sizeof(int32_t), failed);
  to->ends = copy_array(from->ends, entry_count, sizeof(int32_t), failed);
  to->rank_slots = copy_array(from->rank_slots, entry_count, sizeof(int32_t), failed);
}

int l4_service_publish(l4_service *svc, l4_counters *counters, const l4_service_config *config,
                       const l4_pick_data *pick, const l4_entry *entries, uint32_t entry_count,
                       const l4_backups *backups, const l4_admit_config *admit) {
  l4_snapshot *s = calloc(1, sizeof *s);
  if (!s) return ENOMEM;
  int failed = 0;
  uint32_t backup_count = backups ? backups->entry_count : 0;
  s->refs = 1;
  s->config = *config;
  pick_copy(&s->pick, pick, entry_count, &failed);
  if (backup_count > 0) pick_copy(&s->backup_pick, &backups->pick, backup_count, &failed);
  s->entries = malloc(((size_t)entry_count + backup_count + 1) * sizeof(l4_entry));
  if (!s->entries) failed = 1;
  else {
    if (entry_count) memcpy(s->entries, entries, entry_count * sizeof(l4_entry));
    if (backup_count) memcpy(s->entries + entry_count, backups->entries, backup_count * sizeof(l4_entry));
  }
  s->entry_count = entry_count;
  s->backup_count = backup_count;
  s->state.prng = L4_PRNG_SEED;
  s->backup_state.prng = L4_PRNG_SEED;
  for (uint32_t i = 0; i < entry_count + backup_count && !failed; i++) {
    if (s->entries[i].slot < 0 || (uint32_t)s->entries[i].slot >= counters->n) failed = 2;
  }
  if (!failed && admit && l4_admit_config_active(admit)) {
    /* the tables live as long as the settings: read the current snapshot (only this thread writes it) */
    l4_snapshot *current = __atomic_load_n(&svc->snapshot, __ATOMIC_ACQUIRE);
    if (current && current->admit && l4_admit_same(current->admit, admit)) {
      l4_admit_ref(current->admit);
      s->admit = current->admit;
    } else if ((s->admit = l4_admit_new(admit)) == NULL) {
      failed = 1;
    }
  }
  if (failed) {
    snapshot_free(s);
    return failed == 2 ? EINVAL : ENOMEM;
  }
  counters_ref(counters);
  s->counters = counters;
  /* maxConns per slot; a raised one serves its waiters now */
  for (uint32_t i = 0; i < entry_count + backup_count; i++) {
    int32_t slot = s->entries[i].slot;
    __atomic_store_n(&counters->limit[slot], s->entries[i].max_conns, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&counters->queued[slot], __ATOMIC_SEQ_CST) > 0) queue_serve(counters, slot);
  }
  l4_snapshot *old = __atomic_exchange_n(&svc->snapshot, s, __ATOMIC_SEQ_CST);
  if (old) retire_snapshot(svc->engine, old);
  l4_engine_reclaim(svc->engine);
  return 0;
}

void l4_pick_many(const l4_pick_data *pick, const uint32_t *hashes, int32_t *out, size_t count, const int32_t *active) {
  l4_pick_state state = {0, L4_PRNG_SEED};
  for (size_t i = 0; i < count; i++) out[i] = l4_pick(pick, &state, hashes[i], NULL, active);
}

/* ---- buffers, timers ------------------------------------------------------------------- */

static char *buffer_take(struct thread *t) {
  if (t->free_count > 0) return t->free_buffers[--t->free_count];
  return malloc(BUFFER_SIZE);
}

static void buffer_give(struct thread *t, struct buffer *b) {
  if (!b->data) return;
  if (t->free_count < t->free_capacity) t->free_buffers[t->free_count++] = b->data;
  else free(b->data);
  b->data = NULL;
  b->off = b->len = 0;
}

static struct pipe_pair *pipe_take(struct thread *t) {
  if (t->free_pipe_count > 0) return t->free_pipes[--t->free_pipe_count];
  if (t->pipes_open >= PIPES_MAX || t->now_ms < t->pipe_retry_ms) return NULL;
  struct pipe_pair *p = malloc(sizeof *p);
  if (!p) return NULL;
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
    /* out of fds or pipe pages: recv/send still works; ask the kernel again a little later */
    free(p);
    t->pipe_retry_ms = t->now_ms + 1000;
    return NULL;
  }
  (void)fcntl(fds[1], F_SETPIPE_SZ, PIPE_BYTES);
  p->rfd = fds[0];
  p->wfd = fds[1];
  p->pending = 0;
  t->pipes_open++;
  return p;
}

static void pipe_close(struct thread *t, struct pipe_pair *p) {
  close(p->rfd);
  close(p->wfd);
  free(p);
  t->pipes_open--;
}

/* Back to the pool only when empty: bytes left in a pipe belong to a connection that is gone. */
static void pipe_give(struct thread *t, struct pipe_pair **at) {
  struct pipe_pair *p = *at;
  if (!p) return;
  *at = NULL;
  if (p->pending == 0 && t->free_pipe_count < PIPES_POOLED) t->free_pipes[t->free_pipe_count++] = p;
  else pipe_close(t, p);
}

static void pipes_trim(struct thread *t) {
  while (t->free_pipe_count > 0) pipe_close(t, t->free_pipes[--t->free_pipe_count]);
}

static void timer_cancel(struct conn *c) {
  if (!c->timer_armed) return;
  c->timer.prev->next = c->timer.next;
  c->timer.next->prev = c->timer.prev;
  c->timer_armed = 0;
  c->thread->timers--;
}

static void timer_set(struct conn *c, uint64_t deadline_ms) {
  struct thread *t = c->thread;
  timer_cancel(c);
  uint64_t tick = deadline_ms / TICK_MS;
  if (tick <= t->wheel_tick) tick = t->wheel_tick + 1;
  struct tlink *slot = &t->wheel[tick & WHEEL_MASK];
  c->deadline_ms = deadline_ms;
  c->timer.next = slot->next;
  c->timer.prev = slot;
  slot->next->prev = &c->timer;
  slot->next = &c->timer;
  c->timer_armed = 1;
  t->timers++;
}

/* ---- backend maxConns: slots and the queue ---------------------------------------------- */

static void post(struct thread *t, struct command *cmd);

/*
 * Takes a slot of `slot` (lib/pool tryTake): always without a limit; with one, only below it
 * and only when nobody waits (the waiters are first in line). A compare-and-swap, so threads
 * taking at once never overshoot.
 */
static int slot_try_take(l4_counters *k, int32_t slot) {
  uint32_t limit = __atomic_load_n(&k->limit[slot], __ATOMIC_RELAXED);
  if (limit == 0) {
    __atomic_add_fetch(&k->taken[slot], 1, __ATOMIC_SEQ_CST);
    return 1;
  }
  if (__atomic_load_n(&k->queued[slot], __ATOMIC_SEQ_CST) > 0) return 0;
  int32_t taken = __atomic_load_n(&k->taken[slot], __ATOMIC_SEQ_CST);
  while (taken < (int32_t)limit)
    if (__atomic_compare_exchange_n(&k->taken[slot], &taken, taken + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return 1;
  return 0;
}

/*
 * Hands free slots of `slot` to its first waiters, in order: each is unlinked holding the slot
 * and woken on its own thread (CMD_WAKE). Called after a slot is given back, after a waiter
 * joins (a slot freed between its failed take and its joining is not lost: both sides write,
 * then read the other's counter, sequentially consistent) and when a publish raises a limit.
 */
static void queue_serve(l4_counters *k, int32_t slot) {
  pthread_mutex_lock(&k->qlock);
  for (struct conn *w = k->qhead[slot]; w != NULL; w = k->qhead[slot]) {
    uint32_t limit = __atomic_load_n(&k->limit[slot], __ATOMIC_RELAXED);
    int32_t taken = __atomic_load_n(&k->taken[slot], __ATOMIC_SEQ_CST);
    if (limit != 0 && taken >= (int32_t)limit) break;
    if (!__atomic_compare_exchange_n(&k->taken[slot], &taken, taken + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) continue;
    k->qhead[slot] = w->qnext;
    if (w->qnext) w->qnext->qprev = NULL;
    else k->qtail[slot] = NULL;
    __atomic_sub_fetch(&k->queued[slot], 1, __ATOMIC_SEQ_CST);
    w->in_queue = 0;
    w->holding = 1;
    w->held_slot = slot;
    w->wake_pending = 1;
    w->wake.kind = CMD_WAKE;
    w->wake.conn = w;
    w->wake.counters = NULL;
    post(w->thread, &w->wake);
  }
  pthread_mutex_unlock(&k->qlock);
}

/* lib/pool giveBack: the slot this connection holds goes back, to the first waiter if any. */
static void slot_give_back(struct conn *c) {
  if (!c->holding) return;
  c->holding = 0;
  l4_counters *k = c->snapshot->counters;
  __atomic_sub_fetch(&k->taken[c->held_slot], 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&k->queued[c->held_slot], __ATOMIC_SEQ_CST) > 0) queue_serve(k, c->held_slot);
}

/* Joins the FIFO of `slot`; 0 when it is full (L4_MAX_QUEUE). */
static int queue_join(struct conn *c, int32_t slot) {
  l4_counters *k = c->snapshot->counters;
  pthread_mutex_lock(&k->qlock);
  if (__atomic_load_n(&k->queued[slot], __ATOMIC_RELAXED) >= L4_MAX_QUEUE) {
    pthread_mutex_unlock(&k->qlock);
    return 0;
  }
  c->qnext = NULL;
  c->qprev = k->qtail[slot];
  if (c->qprev) c->qprev->qnext = c;
  else k->qhead[slot] = c;
  k->qtail[slot] = c;
  c->in_queue = 1;
  c->held_slot = slot;
  __atomic_add_fetch(&k->queued[slot], 1, __ATOMIC_SEQ_CST);
  pthread_mutex_unlock(&k->qlock);
  queue_serve(k, slot);
  return 1;
}

/* Leaves the FIFO (timed out, closed, backend gone), if in it. 0 when too late: a slot was
   handed over and the wake is on its way (the connection then holds the slot). */
static int queue_leave(struct conn *c) {
  l4_counters *k = c->snapshot->counters;
  pthread_mutex_lock(&k->qlock);
  int left = !c->wake_pending;
  if (c->in_queue) {
    int32_t slot = c->held_slot;
    if (c->qprev) c->qprev->qnext = c->qnext;
    else k->qhead[slot] = c->qnext;
    if (c->qnext) c->qnext->qprev = c->qprev;
    else k->qtail[slot] = c->qprev;
    c->in_queue = 0;
    __atomic_sub_fetch(&k->queued[slot], 1, __ATOMIC_SEQ_CST);
  }
  pthread_mutex_unlock(&k->qlock);
  return left;
}

/* ---- connections ------------------------------------------------------------------------ */

static void conn_pump(struct conn *c, int dir);
static void conn_connect_next(struct conn *c);

static void set_reason(struct conn *c, int reason) {
  if (c->reason < 0) c->reason = (int8_t)reason;
}

static void reset_close(int fd) {
  struct linger lg = {1, 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
}

static void make_id(struct thread *t, char out[L4_UNIQUE_ID_LENGTH]) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  if (t->random_at + 12 > sizeof t->random) {
    size_t got = 0;
    while (got < sizeof t->random) {
      ssize_t n = getrandom(t->random + got, sizeof t->random - got, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      got += (size_t)n;
    }
    /* getrandom cannot fail for want of entropy after boot; a fallback keeps ids unique-ish */
    for (size_t i = got; i < sizeof t->random; i++) t->random[i] = (uint8_t)(l4_fmix32((uint32_t)(i + t->now_ms)) >> 7);
    t->random_at = 0;
  }
  const uint8_t *b = t->random + t->random_at;
  t->random_at += 12;
  /* 12 bytes → 16 base64url characters, as Buffer#toString('base64url') */
  for (int i = 0, o = 0; i < 12; i += 3, o += 4) {
    uint32_t v = ((uint32_t)b[i] << 16) | ((uint32_t)b[i + 1] << 8) | b[i + 2];
    out[o] = alphabet[(v >> 18) & 63];
    out[o + 1] = alphabet[(v >> 12) & 63];
    out[o + 2] = alphabet[(v >> 6) & 63];
    out[o + 3] = alphabet[v & 63];
  }
}

static void fill_record(l4_record *r, struct conn *c) {
  r->service_id = c->service->id;
  r->gen = c->snapshot->counters->gen;
  r->slot = c->entry >= 0 ? c->snapshot->entries[c->entry].slot : -1;
  r->attempts = c->attempts;
  r->family = c->family;
  r->client_port = c->client_port;
  memcpy(r->client_ip, c->client_ip, sizeof r->client_ip);
  memcpy(r->id, c->id, sizeof r->id);
}

/* Both sockets gone: counters, the close record, then retire (freed after the epoll batch). */
static void conn_finish(struct conn *c, int reason) {
  struct thread *t = c->thread;
  if (c->state == CLOSED) return;
  set_reason(c, reason);
  /* a slot handed over while it waited: the wake still points at it, so it frees the conn */
  if (c->state == QUEUED && !queue_leave(c)) c->free_on_wake = 1;
  slot_give_back(c);
  if (c->cfd >= 0) close(c->cfd);
  if (c->bfd >= 0) close(c->bfd);
  c->cfd = c->bfd = -1;
  timer_cancel(c);
  buffer_give(t, &c->buf[0]);
  buffer_give(t, &c->buf[1]);
  pipe_give(t, &c->pipe[0]);
  pipe_give(t, &c->pipe[1]);
  c->state = CLOSED;
  if (c->admitted) l4_admit_release(c->snapshot->admit, &c->source);
  if (c->counted) __atomic_sub_fetch(&c->snapshot->counters->active[c->snapshot->entries[c->entry].slot], 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&c->service->stats[L4_STAT_CLOSED], 1, __ATOMIC_RELAXED);
  __atomic_sub_fetch(&c->service->active, 1, __ATOMIC_RELEASE);
  l4_record *r = new_record(t);
  fill_record(r, c);
  r->kind = L4_REC_CLOSE;
  r->reason = (uint8_t)c->reason;
  r->opened = c->counted;
  r->bytes_in = c->bytes[0];
  r->bytes_out = c->bytes[1];
  r->duration_ms = (uint32_t)(t->now_ms - c->started_ms);
  c->prev->next = c->next;
  c->next->prev = c->prev;
  if (c->free_on_wake) return;
  c->next_retired = t->retired;
  t->retired = c;
}

/* An error on one side: a reset is passed on as a reset, anything else as a close. */
static void conn_fail(struct conn *c, int backend_side, int err) {
  int reset = err == ECONNRESET;
  if (backend_side) set_reason(c, reset ? L4_BACKEND_RESET : L4_BACKEND_ERROR);
  else set_reason(c, reset ? L4_CLIENT_RESET : L4_CLIENT_ERROR);
  if (reset) {
    int other = backend_side ? c->cfd : c->bfd;
    if (other >= 0) {
      reset_close(other);
      if (backend_side) c->cfd = -1;
      else c->bfd = -1;
    }
  }
  conn_finish(c, c->reason);
}

static void conn_opened(struct conn *c) {
  struct thread *t = c->thread;
  c->state = OPEN;
  c->counted = 1;
  l4_counters *counters = c->snapshot->counters;
  size_t slot = (size_t)c->snapshot->entries[c->entry].slot;
  __atomic_add_fetch(&counters->active[slot], 1, __ATOMIC_RELAXED);
  /* what was read before the backend took it (the first client bytes) counts from now */
  if (c->bytes[0]) __atomic_add_fetch(&counters->bytes[2 * slot], c->bytes[0], __ATOMIC_RELAXED);
  if (c->bytes[1]) __atomic_add_fetch(&counters->bytes[2 * slot + 1], c->bytes[1], __ATOMIC_RELAXED);
  timer_cancel(c);
  c->active_ms = t->now_ms;
  if (c->snapshot->config.idle_timeout_ms > 0) timer_set(c, t->now_ms + c->snapshot->config.idle_timeout_ms);
}

static int is_local_error(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM || err == EADDRNOTAVAIL || err == EAGAIN;
}

/* A connect attempt failed before the backend took any byte: retry on the next pick. */
static void conn_attempt_failed(struct conn *c, int err) {
  struct thread *t = c->thread;
  if (c->bfd >= 0) close(c->bfd);
  c->bfd = -1;
  timer_cancel(c);
  slot_give_back(c);
  __atomic_add_fetch(&c->service->stats[L4_STAT_CONNECT_FAILURES], 1, __ATOMIC_RELAXED);
  l4_record *r = new_record(t);
  fill_record(r, c);
  r->kind = L4_REC_CONNECT_FAIL;
  r->error = err;
  int32_t slot = c->snapshot->entries[c->entry].slot;
  if (!is_local_error(err)) __atomic_store_n(&c->snapshot->counters->avoid_until_ms[slot], (int64_t)(t->now_ms + AVOID_MS), __ATOMIC_RELAXED);
  if (c->attempts <= c->snapshot->config.retries && c->tried_count < MAX_TRIED) {
    c->tried[c->tried_count++] = c->entry;
    conn_connect_next(c);
    return;
  }
  conn_finish(c, L4_CONNECT_FAILED);
}

/*
 * Its backend left the usable set while this connection was still connecting (nothing was
 * forwarded yet): give up that attempt and try the next pick, as lib/tcp Connection.redirect.
 * It counts as an attempt, not as the backend's failure: the prober already decided.
 */
static void conn_redirect(struct conn *c) {
  if (c->bfd >= 0) close(c->bfd);
  c->bfd = -1;
  timer_cancel(c);
  slot_give_back(c);
  if (c->attempts <= c->snapshot->config.retries && c->tried_count < MAX_TRIED) {
    c->tried[c->tried_count++] = c->entry;
    conn_connect_next(c);
    return;
  }
  conn_finish(c, L4_CONNECT_FAILED);
}

/*
 * One pick over entries[offset, offset + n) with `pick` (whose indices are 0..n-1), leaving out
 * the entries this connection tried already and steering around recent refusals. Returns an
 * index into the snapshot's entries, or -1.
 */
static int32_t pick_among(struct conn *c, const l4_pick_data *pick, l4_pick_state *state, uint32_t offset, uint32_t n,
                          const uint8_t *full) {
  l4_snapshot *s = c->snapshot;
  struct thread *t = c->thread;
  uint8_t stack_mask[256];
  uint8_t *mask = n <= sizeof stack_mask ? stack_mask : calloc(n, 1);
  if (!mask) return -1;
  memset(mask, 0, n <= sizeof stack_mask ? n : 0);
  l4_exclude ex = {mask, 0};
  for (uint32_t i = 0; i < c->tried_count; i++) {
    int32_t tried = c->tried[i] - (int32_t)offset;
    if (tried < 0 || (uint32_t)tried >= n) continue;
    if (!mask[tried]) ex.count++;
    mask[tried] = 1;
  }
  /* backends at their maxConns this connection already found (offset 0 only) */
  if (full != NULL)
    for (uint32_t i = 0; i < n; i++)
      if (full[i] && !mask[i]) {
        mask[i] = 1;
        ex.count++;
      }
  int32_t entry = l4_pick(pick, state, c->hash, ex.count ? &ex : NULL, s->counters->active);
  if (entry >= 0) {
    /* Steer around a backend that refused a moment ago, but never refuse a client for it. */
    const l4_entry *entries = s->entries + offset;
    int64_t now = (int64_t)t->now_ms;
    int64_t until = __atomic_load_n(&s->counters->avoid_until_ms[entries[entry].slot], __ATOMIC_RELAXED);
    if (until != 0 && until > now) {
      for (uint32_t i = 0; i < n; i++) {
        if (!mask[i] && __atomic_load_n(&s->counters->avoid_until_ms[entries[i].slot], __ATOMIC_RELAXED) > now) {
          mask[i] = 1;
          ex.count++;
        }
      }
      int32_t other = l4_pick(pick, state, c->hash, &ex, s->counters->active);
      if (other >= 0) entry = other;
    }
  }
  if (mask != stack_mask) free(mask);
  return entry < 0 ? -1 : entry + (int32_t)offset;
}

/*
 * Pool.pick(hash, tried): a primary not tried yet; once this connection has tried every usable
 * primary, a usable backup (HAProxy's redispatch reaching the backup servers, issue 12 item 1).
 */
static int32_t conn_pick(struct conn *c) {
  l4_snapshot *s = c->snapshot;
  struct thread *t = c->thread;
  int p2c = s->pick.algorithm == L4_ALG_RANDOM_TWO;
  int32_t entry = pick_among(c, &s->pick, p2c ? &t->p2c : &s->state, 0, s->entry_count, NULL);
  if (entry >= 0 || c->tried_count == 0 || s->backup_count == 0) return entry;
  return pick_among(c, &s->backup_pick, p2c ? &t->p2c : &s->backup_state, s->entry_count, s->backup_count, NULL);
}

static void conn_dial(struct conn *c, int32_t entry);

/*
 * `entry`'s backend is at its maxConns (lib/tcp Connection #connectNext): a hashing algorithm
 * keeps the client on its backend, so it waits for it; the others try the other primaries
 * first (never a backup: a full primary is no reason for one). Returns an entry whose slot
 * this connection now holds, or -1.
 */
static int32_t take_other(struct conn *c, int32_t entry) {
  l4_snapshot *s = c->snapshot;
  int alg = s->pick.algorithm;
  if (alg == L4_ALG_MAGLEV || alg == L4_ALG_RING || alg == L4_ALG_IP_HASH) return -1;
  if (entry < 0 || (uint32_t)entry >= s->entry_count) return -1;
  uint8_t stack_full[256];
  uint8_t *full = s->entry_count <= sizeof stack_full ? stack_full : calloc(s->entry_count, 1);
  if (!full) return -1;
  memset(full, 0, s->entry_count <= sizeof stack_full ? s->entry_count : 0);
  full[entry] = 1;
  int p2c = alg == L4_ALG_RANDOM_TWO;
  int32_t taken = -1;
  for (uint32_t round = 0; round < s->entry_count; round++) {
    int32_t other = pick_among(c, &s->pick, p2c ? &c->thread->p2c : &s->state, 0, s->entry_count, full);
    if (other < 0) break;
    if (slot_try_take(s->counters, s->entries[other].slot)) {
      taken = other;
      break;
    }
    full[other] = 1;
  }
  if (full != stack_full) free(full);
  return taken;
}

/* No slot free: wait in `entry`'s queue up to queue_timeout_ms (HAProxy `timeout queue`). */
static void conn_wait(struct conn *c, int32_t entry) {
  struct thread *t = c->thread;
  l4_snapshot *s = c->snapshot;
  c->entry = entry; /* the close line names the backend it waited for */
  uint32_t timeout_ms = s->config.queue_timeout_ms;
  c->state = QUEUED;
  if (timeout_ms == 0 || !queue_join(c, s->entries[entry].slot)) {
    __atomic_add_fetch(&c->service->stats[L4_STAT_BACKEND_FULL], 1, __ATOMIC_RELAXED);
    conn_finish(c, L4_BACKEND_FULL);
    return;
  }
  __atomic_add_fetch(&c->service->stats[L4_STAT_QUEUED], 1, __ATOMIC_RELAXED);
  timer_set(c, t->now_ms + timeout_ms);
}

/* A slot of the backend it waited for is this connection's now (CMD_WAKE, on its own thread). */
static void conn_woken(struct conn *c) {
  c->wake_pending = 0;
  if (c->state == CLOSED) {
    /* closed while the slot was on its way (conn_finish gave it back): free it now */
    c->next_retired = c->thread->retired;
    c->thread->retired = c;
    return;
  }
  timer_cancel(c);
  c->state = CONNECTING;
  conn_dial(c, c->entry);
}

/* Its backend left the usable set while it waited: the next pick, as lib/tcp redirect(). */
static void conn_requeue(struct conn *c) {
  if (!queue_leave(c)) return; /* it has the slot; the wake connects it */
  timer_cancel(c);
  c->state = CONNECTING;
  if (c->tried_count < MAX_TRIED) c->tried[c->tried_count++] = c->entry;
  conn_connect_next(c);
}

static void conn_connect_next(struct conn *c) {
  l4_snapshot *s = c->snapshot;
  int32_t entry = conn_pick(c);
  if (entry < 0) {
    if (c->attempts == 0) __atomic_add_fetch(&c->service->stats[L4_STAT_NO_BACKEND], 1, __ATOMIC_RELAXED);
    conn_finish(c, c->attempts == 0 ? L4_NO_BACKEND : L4_CONNECT_FAILED);
    return;
  }
  if (!slot_try_take(s->counters, s->entries[entry].slot)) {
    int32_t other = take_other(c, entry);
    if (other < 0) {
      conn_wait(c, entry);
      return;
    }
    entry = other;
  }
  c->holding = 1;
  c->held_slot = s->entries[entry].slot;
  conn_dial(c, entry);
}

/* With a slot of `entry`'s backend held: connect to it. */
static void conn_dial(struct conn *c, int32_t entry) {
  struct thread *t = c->thread;
  l4_snapshot *s = c->snapshot;
  if (c->attempts > 0) __atomic_add_fetch(&c->service->stats[L4_STAT_RETRIES], 1, __ATOMIC_RELAXED);
  c->attempts++;
  c->attempt++;
  c->entry = entry;
  const l4_entry *e = &s->entries[entry];
  int fd = socket(e->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    conn_attempt_failed(c, errno);
    return;
  }
  c->bfd = fd;
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (const struct sockaddr *)&e->addr, e->addr_length) < 0 && errno != EINPROGRESS) {
    conn_attempt_failed(c, errno);
    return;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = tag_ptr(c, TAG_BACKEND, c->attempt)};
  if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
    conn_attempt_failed(c, errno);
    return;
  }
  timer_set(c, t->now_ms + s->config.connect_timeout_ms);
  /* Speculative: the header and whatever the client already sent, in the connect's own pass. */
  struct buffer *b = &c->buf[0];
  if (b->len == b->off && !c->eof[0]) {
    if (!b->data) b->data = buffer_take(t);
    if (!b->data) return;
    ssize_t n = recv(c->cfd, b->data + b->len, BUFFER_SIZE - b->len, 0);
    if (n > 0) {
      b->len += (uint32_t)n;
      c->bytes[0] += (uint64_t)n;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      conn_fail(c, 0, errno);
      return;
    }
  }
  if (b->len > b->off) {
    ssize_t n = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
    if (n >= 0) {
      b->off += (uint32_t)n;
      conn_opened(c);
      conn_pump(c, 0);
      if (c->state == OPEN) conn_pump(c, 1);
    } else if (errno != EAGAIN) {
      conn_attempt_failed(c, errno);
    }
  } else if (b->data && b->len == 0) {
    buffer_give(t, b);
  }
}

/* Bytes read one way: the connection's total, and its backend slot's live total once opened. */
static inline void count_bytes(struct conn *c, int dir, uint64_t n) {
  c->bytes[dir] += n;
  c->active_ms = c->thread->now_ms;
  if (c->counted) __atomic_add_fetch(&c->snapshot->counters->bytes[2 * (size_t)c->snapshot->entries[c->entry].slot + (size_t)dir], n, __ATOMIC_RELAXED);
}

/*
 * Moves bytes one way until the source would block or the destination is full. dir 0: client
 * → backend, 1: backend → client. A FIN read is passed on once the buffer (or pipe) is empty.
 * The source is read only when nothing read before is still waiting to be sent, through the
 * buffer or, for a bulk direction that got a pipe, with splice(2); so the order of bytes holds
 * when a direction switches, and a splice read's EAGAIN always means "the source is empty"
 * (the pipe is empty then), never "the pipe is full".
 */
/* The source of direction `dir` sent its FIN (a read of 0, by recv or by splice). */
static void source_ended(struct conn *c, int dir) {
  c->eof[dir] = 1;
  set_reason(c, dir ? L4_BACKEND_CLOSED : L4_CLIENT_CLOSED);
}

static void conn_pump(struct conn *c, int dir) {
  struct thread *t = c->thread;
  struct buffer *b = &c->buf[dir];
  int splice_dry = 0; /* a splice read said EAGAIN: recv decides whether the source is empty */
  for (;;) {
    if (c->state != OPEN) return;
    int src = dir ? c->bfd : c->cfd;
    int dst = dir ? c->cfd : c->bfd;
    struct pipe_pair *p = c->pipe[dir];
    if (p && p->pending > 0) {
      ssize_t n = splice(p->rfd, NULL, dst, NULL, p->pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        p->pending -= (uint32_t)n;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      conn_fail(c, !dir, n < 0 ? errno : EPIPE);
      return;
    }
    if (b->len > b->off) {
      ssize_t n = send(dst, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
      if (n > 0) {
        b->off += (uint32_t)n;
        if (b->off == b->len) b->off = b->len = 0;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      conn_fail(c, !dir, n < 0 ? errno : EPIPE);
      return;
    }
    if (c->eof[dir]) {
      if (!c->shut[dir]) {
        c->shut[dir] = 1;
        (void)shutdown(dst, SHUT_WR);
      }
      buffer_give(t, b);
      pipe_give(t, &c->pipe[dir]);
      if (c->shut[0] && c->shut[1]) conn_finish(c, dir ? L4_BACKEND_CLOSED : L4_CLIENT_CLOSED);
      return;
    }
    if (c->bulk[dir] && !p && !splice_dry) p = c->pipe[dir] = pipe_take(t);
    if (p) {
      buffer_give(t, b);
      ssize_t n = splice(src, NULL, p->wfd, NULL, PIPE_BYTES, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        p->pending = (uint32_t)n;
        count_bytes(c, dir, (uint64_t)n);
        __atomic_add_fetch(&c->service->stats[L4_STAT_SPLICED_IN + dir], (uint64_t)n, __ATOMIC_RELAXED);
        if (n < SMALL_READ) c->bulk[dir] = 0; /* drained, then back to recv/send */
        continue;
      }
      if (n == 0) {
        source_ended(c, dir);
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        /*
         * Measured here (6.18, loopback): splice(2) from a socket into an empty pipe sometimes
         * says EAGAIN while the socket holds 17-95 KB (the kernel's tcp_splice_read got 0 from
         * the queue's head skb). Edge-triggered, taking that for "empty" stalls the direction
         * until the peer sends more, or for good. recv settles it: it reads what is there, or
         * says EAGAIN itself.
         */
        pipe_give(t, &c->pipe[dir]); /* empty: an idle direction holds no pipe */
        splice_dry = 1;
        continue;
      }
      conn_fail(c, dir, errno);
      return;
    }
    if (!b->data) b->data = buffer_take(t);
    if (!b->data) return; /* out of memory: the next event tries again */
    ssize_t n = recv(src, b->data, BUFFER_SIZE, 0);
    if (n > 0) {
      b->off = 0;
      b->len = (uint32_t)n;
      count_bytes(c, dir, (uint64_t)n);
      if (n == BUFFER_SIZE) c->bulk[dir] = 1;
      splice_dry = 0;
      continue;
    }
    if (n == 0) {
      source_ended(c, dir);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      buffer_give(t, b);
      return;
    }
    conn_fail(c, dir, errno);
    return;
  }
}

static void on_backend_event(struct conn *c, uint32_t events) {
  if (c->state == CONNECTING) {
    if (events & (EPOLLERR | EPOLLHUP)) {
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(c->bfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
      conn_attempt_failed(c, err ? err : ECONNREFUSED);
      return;
    }
    if (!(events & EPOLLOUT)) return;
    conn_opened(c);
    conn_pump(c, 0);
    conn_pump(c, 1);
    return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_pump(c, 1);
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) conn_pump(c, 0);
}

static void on_client_event(struct conn *c, uint32_t events) {
  if (c->state != OPEN) return; /* read once connected (the backend's event pumps both ways) */
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_pump(c, 0);
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) conn_pump(c, 1);
}

static void canonical_ip(struct conn *c, const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &in->sin_addr, c->client_ip, sizeof c->client_ip);
    c->client_port = ntohs(in->sin_port);
    c->family = 4;
    return;
  }
  const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
  c->client_port = ntohs(in6->sin6_port);
  if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
    inet_ntop(AF_INET, in6->sin6_addr.s6_addr + 12, c->client_ip, sizeof c->client_ip);
    c->family = 4;
    return;
  }
  inet_ntop(AF_INET6, &in6->sin6_addr, c->client_ip, sizeof c->client_ip);
  c->family = 6;
}

/* Refused at admission: closed at once, counted, and a record for the rate-limited log line. */
static void refuse(struct thread *t, int fd, const struct sockaddr_storage *ss, l4_service *svc, int refusal) {
  static const int stat_of[L4_REFUSAL_COUNT] = {
      [L4_REFUSE_DENIED] = L4_STAT_REFUSED_DENIED,
      [L4_REFUSE_NOT_ALLOWED] = L4_STAT_REFUSED_NOT_ALLOWED,
      [L4_REFUSE_MAX_CONNS] = L4_STAT_REJECTED_MAX_CONNS,
      [L4_REFUSE_MAX_CONNS_PER_IP] = L4_STAT_REFUSED_MAX_CONNS_PER_IP,
      [L4_REFUSE_RATE_PER_IP] = L4_STAT_REFUSED_RATE_PER_IP,
  };
  __atomic_add_fetch(&svc->stats[stat_of[refusal]], 1, __ATOMIC_RELAXED);
  struct conn tmp;
  memset(&tmp, 0, sizeof tmp);
  canonical_ip(&tmp, ss);
  close(fd);
  l4_record *r = new_record(t);
  r->kind = refusal == L4_REFUSE_MAX_CONNS ? L4_REC_MAX_CONNS : L4_REC_REFUSED;
  r->reason = (uint8_t)refusal;
  r->service_id = svc->id;
  r->slot = -1;
  r->family = tmp.family;
  r->client_port = tmp.client_port;
  memcpy(r->client_ip, tmp.client_ip, sizeof r->client_ip);
}

static void on_accept(struct thread *t, int fd, struct sockaddr_storage *ss, struct listener *l) {
  l4_service *svc = l->service;
  __atomic_add_fetch(&svc->stats[L4_STAT_ACCEPTED], 1, __ATOMIC_RELAXED);
  l4_snapshot *s = __atomic_load_n(&svc->snapshot, __ATOMIC_SEQ_CST);
  /* admit, in lib/flow/admit.ts's order: the lists (no state), max-conns, then per source */
  l4_source source;
  l4_source_from_sockaddr(&source, (const struct sockaddr *)ss);
  int refusal = s && s->admit ? l4_admit_acl(s->admit, &source) : L4_ADMITTED;
  if (refusal != L4_ADMITTED) {
    refuse(t, fd, ss, svc, refusal);
    return;
  }
  uint32_t active = __atomic_add_fetch(&svc->active, 1, __ATOMIC_ACQUIRE);
  if (s == NULL || (s->config.max_conns > 0 && active > s->config.max_conns)) {
    __atomic_sub_fetch(&svc->active, 1, __ATOMIC_RELEASE);
    refuse(t, fd, ss, svc, L4_REFUSE_MAX_CONNS);
    return;
  }
  refusal = s->admit ? l4_admit_take(s->admit, &source, (double)t->now_ms) : L4_ADMITTED;
  if (refusal != L4_ADMITTED) {
    __atomic_sub_fetch(&svc->active, 1, __ATOMIC_RELEASE);
    refuse(t, fd, ss, svc, refusal);
    return;
  }
  struct conn *c = calloc(1, sizeof *c);
  if (!c) {
    __atomic_sub_fetch(&svc->active, 1, __ATOMIC_RELEASE);
    if (s->admit) l4_admit_release(s->admit, &source);
    close(fd);
    return;
  }
  c->source = source;
  c->admitted = s->admit != NULL;
  __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQUIRE);
  __atomic_add_fetch(&svc->refs, 1, __ATOMIC_ACQUIRE);
  c->thread = t;
  c->service = svc;
  c->snapshot = s;
  c->listener = l;
  c->cfd = fd;
  c->bfd = -1;
  c->entry = -1;
  c->reason = -1;
  c->started_ms = c->active_ms = t->now_ms;
  c->next = t->head.next;
  c->prev = &t->head;
  t->head.next->prev = c;
  t->head.next = c;
  canonical_ip(c, ss);
  /* key stage: the same text lib/tcp hashes (canonical ip, or ip:port) */
  char key[64];
  int key_length = s->config.hash_port ? snprintf(key, sizeof key, "%s:%u", c->client_ip, c->client_port)
                                       : snprintf(key, sizeof key, "%s", c->client_ip);
  c->hash = l4_murmur3(key, (uint32_t)key_length, L4_SEED_KEY);
  make_id(t, c->id);
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = tag_ptr(c, TAG_CLIENT, 0)};
  if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
    conn_finish(c, L4_CLIENT_ERROR);
    return;
  }
  if (s->config.proxy_version != 0) {
    l4_endpoint src, dst;
    l4_endpoint_from_sockaddr(&src, ss);
    if (l->wildcard) {
      struct sockaddr_storage local;
      socklen_t len = sizeof local;
      if (getsockname(fd, (struct sockaddr *)&local, &len) < 0) {
        conn_finish(c, L4_CLIENT_ERROR);
        return;
      }
      l4_endpoint_from_sockaddr(&dst, &local);
    } else {
      dst = l->local;
    }
    struct buffer *b = &c->buf[0];
    b->data = buffer_take(t);
    if (!b->data) {
      conn_finish(c, L4_CLIENT_ERROR);
      return;
    }
    b->off = 0;
    b->len = (uint32_t)(s->config.proxy_version == 1 ? l4_proxy_v1((uint8_t *)b->data, &src, &dst)
                                                     : l4_proxy_v2((uint8_t *)b->data, &src, &dst, c->id, s->config.proxy_crc32c));
  }
  conn_connect_next(c);
}

static void starve(struct thread *t, struct listener *l) {
  for (size_t i = 0; i < t->starved_count; i++)
    if (t->starved[i] == l) return;
  /* More starved listeners than slots: the rest wait for their next connection's edge. */
  if (t->starved_count < MAX_STARVED) t->starved[t->starved_count++] = l;
  if (t->starved_count == 1) t->starved_retry_ms = t->now_ms + STARVED_RETRY_MS;
}

static void on_listener(struct thread *t, struct listener *l);

static void retry_starved(struct thread *t) {
  if (t->starved_count == 0 || t->now_ms < t->starved_retry_ms) return;
  if (t->reserve_fd < 0) t->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  struct listener *retry[MAX_STARVED];
  size_t count = t->starved_count;
  memcpy(retry, t->starved, count * sizeof *retry);
  t->starved_count = 0;
  /* on_listener puts back the ones still out of fds */
  for (size_t i = 0; i < count; i++)
    if (retry[i]->fd >= 0) on_listener(t, retry[i]);
  if (t->starved_count > 0) t->starved_retry_ms = t->now_ms + STARVED_RETRY_MS;
}

static void on_listener(struct thread *t, struct listener *l) {
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      on_accept(t, fd, &ss, l);
      continue;
    }
    int err = errno;
    if (err == EAGAIN) return;
    if (err == EINTR || err == ECONNABORTED) continue;
    l4_record *r = new_record(t);
    r->kind = L4_REC_ACCEPT_ERROR;
    r->service_id = l->service->id;
    r->slot = -1;
    r->error = err;
    if (err == EMFILE || err == ENFILE) {
      /* Out of fds: spend the reserve to take the connection off the queue and close it, so
         the client hears at once instead of waiting in a queue nobody drains. Another thread
         may take the fd the reserve freed; then (or with no reserve) retry later. */
      int drop = -1;
      if (t->reserve_fd >= 0) {
        close(t->reserve_fd);
        drop = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (drop >= 0) close(drop);
        t->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      }
      if (drop >= 0) continue;
      starve(t, l);
    }
    return;
  }
}

static void on_timer(struct conn *c) {
  struct thread *t = c->thread;
  if (c->state == CONNECTING) {
    conn_attempt_failed(c, L4_ERR_TIMEOUT);
    return;
  }
  if (c->state == QUEUED) {
    if (!queue_leave(c)) return; /* a slot is on its way: the wake connects it */
    __atomic_add_fetch(&c->service->stats[L4_STAT_QUEUE_TIMEOUTS], 1, __ATOMIC_RELAXED);
    conn_finish(c, L4_QUEUE_TIMEOUT);
    return;
  }
  uint32_t idle = c->snapshot->config.idle_timeout_ms;
  if (idle == 0) return;
  if (t->now_ms - c->active_ms >= idle) {
    conn_finish(c, L4_IDLE_TIMEOUT);
    return;
  }
  timer_set(c, c->active_ms + idle);
}

static void advance_timers(struct thread *t) {
  uint64_t target = t->now_ms / TICK_MS;
  while (t->wheel_tick < target && t->timers > 0) {
    t->wheel_tick++;
    struct tlink *slot = &t->wheel[t->wheel_tick & WHEEL_MASK];
    /* Detach the slot first: re-armed timers may land in it again. */
    struct tlink pending;
    if (slot->next == slot) continue;
    pending.next = slot->next;
    pending.prev = slot->prev;
    pending.next->prev = &pending;
    pending.prev->next = &pending;
    slot->next = slot->prev = slot;
    while (pending.next != &pending) {
      struct conn *c = (struct conn *)pending.next;
      if (c->deadline_ms > t->now_ms) {
        timer_set(c, c->deadline_ms);
        continue;
      }
      timer_cancel(c);
      on_timer(c);
    }
  }
  if (t->timers == 0) t->wheel_tick = target;
}

static void run_commands(struct thread *t) {
  uint64_t value;
  while (read(t->wakefd, &value, sizeof value) > 0) {
  }
  pthread_mutex_lock(&t->lock);
  struct command *cmds = t->commands;
  t->commands = NULL;
  pthread_mutex_unlock(&t->lock);
  /* oldest first */
  struct command *ordered = NULL;
  while (cmds) {
    struct command *next = cmds->next;
    cmds->next = ordered;
    ordered = cmds;
    cmds = next;
  }
  while (ordered) {
    struct command *cmd = ordered;
    ordered = cmd->next;
    if (cmd->kind == CMD_WAKE) {
      conn_woken(cmd->conn); /* embedded in the conn: not freed here */
      continue;
    }
    if (cmd->kind == CMD_STOP_ACCEPTING) {
      l4_service *svc = cmd->service;
      for (size_t i = 0; i < svc->listener_count; i++) {
        struct listener *l = svc->listeners[i];
        if (l->thread != t || l->fd < 0) continue;
        close(l->fd);
        l->fd = -1;
        /* freed once every thread acked: forget it here */
        for (size_t k = 0; k < t->starved_count;)
          if (t->starved[k] == l) t->starved[k] = t->starved[--t->starved_count];
          else k++;
      }
      l4_engine *e = t->engine;
      pthread_mutex_lock(&e->lock);
      e->pending_acks--;
      pthread_cond_broadcast(&e->acked);
      pthread_mutex_unlock(&e->lock);
    } else {
      for (struct conn *c = t->head.next; c != &t->head;) {
        struct conn *next = c->next;
        int match = c->service == cmd->service;
        if (match && cmd->kind == CMD_SHUTDOWN_SLOT)
          match = c->entry >= 0 && c->snapshot->counters == cmd->counters && c->snapshot->entries[c->entry].slot == cmd->slot;
        if (match && cmd->kind == CMD_SHUTDOWN_SLOT && c->state == CONNECTING) conn_redirect(c);
        else if (match && cmd->kind == CMD_SHUTDOWN_SLOT && c->state == QUEUED) conn_requeue(c);
        else if (match && cmd->reason >= 0) conn_finish(c, cmd->reason);
        c = next;
      }
      if (cmd->counters) counters_unref(cmd->counters);
    }
    free(cmd);
  }
}

static void free_conn(struct conn *c) {
  snapshot_unref(c->snapshot);
  if (__atomic_sub_fetch(&c->service->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    free(c->service->listeners);
    free(c->service);
  }
  free(c);
}

static void *thread_main(void *arg) {
  struct thread *t = arg;
  l4_engine *e = t->engine;
  struct epoll_event events[MAX_EVENTS];
  /* splice(2) into a socket has no MSG_NOSIGNAL: a peer gone raises SIGPIPE in this thread.
     Blocked here, the call just fails with EPIPE, whatever the host process does with it. */
  sigset_t pipe_signal;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, NULL);
  while (!__atomic_load_n(&e->stopping, __ATOMIC_ACQUIRE)) {
    __atomic_store_n(&t->quiescent, UINT64_MAX, __ATOMIC_SEQ_CST);
    int timeout = t->timers > 0 || t->starved_count > 0 ? TICK_MS : t->free_pipe_count > 0 ? PIPE_IDLE_MS / 4 : -1;
    int n = epoll_wait(t->epfd, events, MAX_EVENTS, timeout);
    __atomic_store_n(&t->quiescent, __atomic_load_n(&e->epoch, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
    t->now_ms = monotonic_ms();
    if (t->timers == 0) t->wheel_tick = t->now_ms / TICK_MS;
    int wake = 0;
    for (int i = 0; i < n; i++) {
      uint64_t data = events[i].data.u64;
      int tag = (int)(data & 3);
      void *p = (void *)(uintptr_t)(data & 0x00fffffffffffffcull);
      if (tag == TAG_WAKE) {
        wake = 1;
      } else if (tag == TAG_LISTENER) {
        struct listener *l = p;
        if (l->fd >= 0) on_listener(t, l);
      } else {
        struct conn *c = p;
        if (c->state == CLOSED) continue;
        if (tag == TAG_CLIENT) on_client_event(c, events[i].events);
        else if ((uint8_t)(data >> 56) == c->attempt) on_backend_event(c, events[i].events);
      }
    }
    if (wake) run_commands(t);
    retry_starved(t);
    advance_timers(t);
    /* no connection for PIPE_IDLE_MS: the pooled pipes go, and their fds with them */
    if (t->head.next != &t->head) t->busy_ms = t->now_ms;
    else if (t->free_pipe_count > 0 && t->now_ms - t->busy_ms >= PIPE_IDLE_MS) pipes_trim(t);
    flush_records(t);
    while (t->retired) {
      struct conn *c = t->retired;
      t->retired = c->next_retired;
      free_conn(c);
    }
  }
  return NULL;
}

/* ---- engine and services (control-plane thread) ------------------------------------------ */

static void post(struct thread *t, struct command *cmd) {
  pthread_mutex_lock(&t->lock);
  cmd->next = t->commands;
  t->commands = cmd;
  pthread_mutex_unlock(&t->lock);
  uint64_t one = 1;
  ssize_t n = write(t->wakefd, &one, sizeof one);
  (void)n; /* an eventfd at its limit is still readable: the thread wakes either way */
}

l4_engine *l4_engine_new(int threads, void (*notify)(void *ctx), void *ctx, char *error, size_t error_length) {
  if (threads < 1) threads = 1;
  if (threads > 256) threads = 256;
  l4_engine *e = calloc(1, sizeof *e);
  if (!e) {
    snprintf(error, error_length, "out of memory");
    return NULL;
  }
  e->ring = calloc(RING_CAPACITY, sizeof(l4_record));
  e->threads = calloc((size_t)threads, sizeof(struct thread));
  if (!e->ring || !e->threads) {
    free(e->ring);
    free(e->threads);
    free(e);
    snprintf(error, error_length, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&e->lock, NULL);
  pthread_cond_init(&e->acked, NULL);
  e->notify = notify;
  e->notify_ctx = ctx;
  e->epoch = 1;
  int started = 0;
  for (int i = 0; i < threads; i++) {
    struct thread *t = &e->threads[i];
    t->tag = TAG_WAKE;
    t->engine = e;
    t->index = i;
    t->head.next = t->head.prev = &t->head;
    for (int s = 0; s < WHEEL_SLOTS; s++) t->wheel[s].next = t->wheel[s].prev = &t->wheel[s];
    t->now_ms = monotonic_ms();
    t->wheel_tick = t->now_ms / TICK_MS;
    t->random_at = sizeof t->random;
    t->p2c.prng = L4_PRNG_SEED ^ (uint32_t)(i * 0x9e3779b9u);
    if (t->p2c.prng == 0) t->p2c.prng = L4_PRNG_SEED;
    t->free_capacity = 256;
    t->free_buffers = calloc(t->free_capacity, sizeof(char *));
    pthread_mutex_init(&t->lock, NULL);
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    t->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = tag_ptr(t, TAG_WAKE, 0)};
    if (t->epfd < 0 || t->wakefd < 0 || !t->free_buffers || epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->wakefd, &ev) < 0 ||
        pthread_create(&t->pthread, NULL, thread_main, t) != 0) {
      snprintf(error, error_length, "cannot start engine thread %d: %s", i, strerror(errno));
      break;
    }
    started++;
  }
  e->thread_count = started;
  if (started < threads) {
    /* the failed thread's own fds */
    struct thread *t = &e->threads[started];
    if (t->epfd >= 0) close(t->epfd);
    if (t->wakefd > 0) close(t->wakefd);
    if (t->reserve_fd >= 0) close(t->reserve_fd);
    free(t->free_buffers);
    l4_engine_free(e);
    return NULL;
  }
  return e;
}

int l4_engine_threads(const l4_engine *e) { return e->thread_count; }

void l4_engine_free(l4_engine *e) {
  __atomic_store_n(&e->stopping, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < e->thread_count; i++) {
    uint64_t one = 1;
    ssize_t n = write(e->threads[i].wakefd, &one, sizeof one);
    (void)n;
  }
  for (int i = 0; i < e->thread_count; i++) pthread_join(e->threads[i].pthread, NULL);
  /* Threads are gone: tear down without records (nobody will read them). */
  e->notify = NULL;
  for (int i = 0; i < e->thread_count; i++) {
    struct thread *t = &e->threads[i];
    t->now_ms = monotonic_ms();
    while (t->head.next != &t->head) conn_finish(t->head.next, L4_SHUTDOWN);
    while (t->retired) {
      struct conn *c = t->retired;
      t->retired = c->next_retired;
      free_conn(c);
    }
    struct command *cmd = t->commands;
    while (cmd) {
      struct command *next = cmd->next;
      if (cmd->kind == CMD_WAKE) {
        free_conn(cmd->conn); /* closed above while its slot was on its way */
      } else {
        if (cmd->counters) counters_unref(cmd->counters);
        free(cmd);
      }
      cmd = next;
    }
    for (size_t b = 0; b < t->free_count; b++) free(t->free_buffers[b]);
    free(t->free_buffers);
    pipes_trim(t);
    close(t->epfd);
    close(t->wakefd);
    if (t->reserve_fd >= 0) close(t->reserve_fd);
    pthread_mutex_destroy(&t->lock);
  }
  for (int i = 0; i < e->thread_count; i++) e->threads[i].quiescent = UINT64_MAX;
  l4_engine_reclaim(e);
  free(e->threads);
  free(e->ring);
  pthread_mutex_destroy(&e->lock);
  pthread_cond_destroy(&e->acked);
  free(e);
}

l4_service *l4_service_new(l4_engine *e, uint32_t id) {
  l4_service *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->engine = e;
  s->id = id;
  s->refs = 1;
  return s;
}

static int bind_one(const struct sockaddr *address, socklen_t length, int backlog, int reuse) {
  int fd = socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1, zero = 0;
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) goto fail;
  if (address->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
    /* `::` takes IPv4 too, as the node plane's ipv6Only: false does */
    if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  }
  if (bind(fd, address, length) < 0 || listen(fd, backlog) < 0) goto fail;
  return fd;
fail: {
  int err = errno;
  close(fd);
  return -err;
}
}

int l4_service_listen(l4_service *svc, const struct sockaddr *address, socklen_t length, int backlog,
                      struct sockaddr_storage *bound) {
  l4_engine *e = svc->engine;
  struct listener **grown = realloc(svc->listeners, (svc->listener_count + (size_t)e->thread_count) * sizeof *grown);
  if (!grown) return ENOMEM;
  svc->listeners = grown;
  struct sockaddr_storage at;
  memcpy(&at, address, length);
  int reuse = e->thread_count > 1;
  size_t first = svc->listener_count;
  int err = 0;
  for (int i = 0; i < e->thread_count; i++) {
    /* The first bind resolves port 0; the others bind that port in the same reuseport group. */
    int fd = bind_one((struct sockaddr *)&at, length, backlog, reuse);
    if (fd < 0) {
      err = -fd;
      break;
    }
    if (i == 0) {
      socklen_t len = sizeof at;
      if (getsockname(fd, (struct sockaddr *)&at, &len) < 0) {
        err = errno;
        close(fd);
        break;
      }
      if (bound) memcpy(bound, &at, sizeof at);
    }
    struct listener *l = calloc(1, sizeof *l);
    if (!l) {
      err = ENOMEM;
      close(fd);
      break;
    }
    l->tag = TAG_LISTENER;
    l->fd = fd;
    l->service = svc;
    l->thread = &e->threads[i];
    l4_endpoint_from_sockaddr(&l->local, &at);
    l->wildcard = at.ss_family == AF_INET ? ((struct sockaddr_in *)&at)->sin_addr.s_addr == htonl(INADDR_ANY)
                                          : IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&at)->sin6_addr);
    svc->listeners[svc->listener_count++] = l;
  }
  if (err == 0) {
    for (size_t i = first; i < svc->listener_count; i++) {
      struct listener *l = svc->listeners[i];
      struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = tag_ptr(l, TAG_LISTENER, 0)};
      if (epoll_ctl(l->thread->epfd, EPOLL_CTL_ADD, l->fd, &ev) < 0) {
        err = errno;
        /* the ones added before are still in their threads' sets: stop_accepting clears all */
        break;
      }
    }
  }
  if (err != 0) {
    for (size_t i = first; i < svc->listener_count; i++) {
      struct listener *l = svc->listeners[i];
      (void)epoll_ctl(l->thread->epfd, EPOLL_CTL_DEL, l->fd, NULL);
    }
    /* Events already fetched may still name these listeners: let every thread pass a batch. */
    l4_service_stop_accepting(svc);
  }
  return err;
}

void l4_service_stop_accepting(l4_service *svc) {
  l4_engine *e = svc->engine;
  pthread_mutex_lock(&e->lock);
  e->pending_acks += (uint32_t)e->thread_count;
  pthread_mutex_unlock(&e->lock);
  for (int i = 0; i < e->thread_count; i++) {
    struct command *cmd = calloc(1, sizeof *cmd);
    if (!cmd) continue; /* cannot happen in practice; the wait below would then hang, so count it */
    cmd->kind = CMD_STOP_ACCEPTING;
    cmd->service = svc;
    post(&e->threads[i], cmd);
  }
  pthread_mutex_lock(&e->lock);
  while (e->pending_acks > 0) pthread_cond_wait(&e->acked, &e->lock);
  pthread_mutex_unlock(&e->lock);
  for (size_t i = 0; i < svc->listener_count; i++) free(svc->listeners[i]);
  svc->listener_count = 0;
}

static void post_all(l4_service *svc, int kind, l4_counters *counters, int32_t slot, int reason) {
  l4_engine *e = svc->engine;
  for (int i = 0; i < e->thread_count; i++) {
    struct command *cmd = calloc(1, sizeof *cmd);
    if (!cmd) continue;
    cmd->kind = kind;
    cmd->service = svc;
    cmd->counters = counters;
    if (counters) counters_ref(counters);
    cmd->slot = slot;
    cmd->reason = reason;
    post(&e->threads[i], cmd);
  }
}

void l4_service_close_all(l4_service *svc, int reason) { post_all(svc, CMD_CLOSE_ALL, NULL, -1, reason); }

void l4_service_shutdown_slot(l4_service *svc, l4_counters *counters, int32_t slot, int reason) {
  post_all(svc, CMD_SHUTDOWN_SLOT, counters, slot, reason);
}

uint32_t l4_service_active(l4_service *svc) { return __atomic_load_n(&svc->active, __ATOMIC_ACQUIRE); }

void l4_service_stats(l4_service *svc, uint64_t out[L4_STAT_COUNT]) {
  for (int i = 0; i < L4_STAT_COUNT; i++) out[i] = __atomic_load_n(&svc->stats[i], __ATOMIC_RELAXED);
  pthread_mutex_lock(&svc->engine->lock);
  out[L4_STAT_RECORDS_DROPPED] = svc->engine->dropped;
  pthread_mutex_unlock(&svc->engine->lock);
}

void l4_service_release(l4_service *svc) {
  l4_engine *e = svc->engine;
  l4_snapshot *old = __atomic_exchange_n(&svc->snapshot, NULL, __ATOMIC_SEQ_CST);
  if (old) retire_snapshot(e, old);
  l4_engine_reclaim(e);
  if (__atomic_sub_fetch(&svc->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    free(svc->listeners);
    free(svc);
  }
}
