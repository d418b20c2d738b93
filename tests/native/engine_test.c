/*
 * The native engine without Node: real loopback sockets through l4_engine, built with
 * AddressSanitizer and UBSan (tests/native/Makefile). Each case names what it proves; any
 * failed CHECK exits 1 with the line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/native/src/engine.h"
#include "../../lib/native/src/proxy.h"

#include "check.h"

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n++;
  closedir(d);
  return n;
}

static void hex(char *out, const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++) sprintf(out + i * 2, "%02x", b[i]);
}

/* ---- a backend: echo, or "capture the first bytes then echo" ---------------------------- */

struct backend {
  int fd;
  uint16_t port;
  pthread_t thread;
  int stop;
  uint8_t first[256];
  size_t first_length;
  pthread_mutex_t lock;
};

static void *echo_conn(void *arg) {
  struct backend *b = ((void **)arg)[0];
  int fd = (int)(intptr_t)((void **)arg)[1];
  free(arg);
  char buf[8192];
  int first = 1;
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    if (first) {
      pthread_mutex_lock(&b->lock);
      b->first_length = (size_t)n < sizeof b->first ? (size_t)n : sizeof b->first;
      memcpy(b->first, buf, b->first_length);
      pthread_mutex_unlock(&b->lock);
      first = 0;
    }
    ssize_t off = 0;
    while (off < n) {
      ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
      if (w <= 0) goto done;
      off += w;
    }
  }
  shutdown(fd, SHUT_WR);
done:
  close(fd);
  return NULL;
}

static void *backend_main(void *arg) {
  struct backend *b = arg;
  for (;;) {
    struct pollfd p = {b->fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) {
      if (__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE)) return NULL;
      continue;
    }
    int fd = accept(b->fd, NULL, NULL);
    if (fd < 0) continue;
    void **args = malloc(2 * sizeof(void *));
    args[0] = b;
    args[1] = (void *)(intptr_t)fd;
    pthread_t t;
    pthread_create(&t, NULL, echo_conn, args);
    pthread_detach(t);
  }
}

static void backend_start(struct backend *b) {
  memset(b, 0, sizeof *b);
  pthread_mutex_init(&b->lock, NULL);
  b->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
  bind(b->fd, (struct sockaddr *)&a, sizeof a);
  listen(b->fd, 512);
  socklen_t len = sizeof a;
  getsockname(b->fd, (struct sockaddr *)&a, &len);
  b->port = ntohs(a.sin_port);
  pthread_create(&b->thread, NULL, backend_main, b);
}

static void backend_stop(struct backend *b) {
  __atomic_store_n(&b->stop, 1, __ATOMIC_RELEASE);
  pthread_join(b->thread, NULL);
  close(b->fd);
  usleep(50 * 1000); /* detached echo threads finish their close */
}

static int pipes_at_start;

static int count_pipes(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  struct dirent *e;
  char path[300], target[64];
  while ((e = readdir(d)) != NULL) {
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    ssize_t len = readlink(path, target, sizeof target - 1);
    if (len > 0) {
      target[len] = 0;
      if (strncmp(target, "pipe:", 5) == 0) n++;
    }
  }
  closedir(d);
  return n;
}

/* ---- a source backend: sends `size` bytes of a pattern, FIN, then counts what it reads ---- */

struct source {
  int fd;
  uint16_t port;
  pthread_t thread;
  size_t size;
  size_t received; /* after the client's FIN */
  int sent_all;
};

static char pattern_at(size_t i) { return (char)((i * 31 + (i >> 12)) & 0xff); }

static void *source_main(void *arg) {
  struct source *s = arg;
  int fd = accept(s->fd, NULL, NULL);
  if (fd < 0) return NULL;
  char buf[65536];
  size_t sent = 0;
  while (sent < s->size) {
    size_t n = s->size - sent < sizeof buf ? s->size - sent : sizeof buf;
    for (size_t i = 0; i < n; i++) buf[i] = pattern_at(sent + i);
    ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
    if (w <= 0) break;
    sent += (size_t)w;
  }
  __atomic_store_n(&s->sent_all, sent == s->size, __ATOMIC_RELEASE);
  shutdown(fd, SHUT_WR);
  size_t got = 0;
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r <= 0) break;
    got += (size_t)r;
  }
  __atomic_store_n(&s->received, got, __ATOMIC_RELEASE);
  close(fd);
  return NULL;
}

static void source_start(struct source *s, size_t size) {
  memset(s, 0, sizeof *s);
  s->size = size;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
  bind(s->fd, (struct sockaddr *)&a, sizeof a);
  listen(s->fd, 8);
  socklen_t len = sizeof a;
  getsockname(s->fd, (struct sockaddr *)&a, &len);
  s->port = ntohs(a.sin_port);
  pthread_create(&s->thread, NULL, source_main, s);
}

static void source_stop(struct source *s) {
  pthread_join(s->thread, NULL);
  close(s->fd);
}

/* A port nothing listens on: bound, never listening, then closed. */
static uint16_t dead_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
  bind(fd, (struct sockaddr *)&a, sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &len);
  close(fd);
  return ntohs(a.sin_port);
}

static l4_entry entry_for(uint16_t port, int32_t slot) {
  l4_entry e;
  memset(&e, 0, sizeof e);
  struct sockaddr_in *in = (struct sockaddr_in *)&e.addr;
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(0x7f000001);
  in->sin_port = htons(port);
  e.addr_length = sizeof *in;
  e.slot = slot;
  return e;
}

/* ---- records ---------------------------------------------------------------------------- */

static l4_record seen[65536];
static size_t seen_count;

static void drain(l4_engine *e) {
  seen_count += l4_engine_drain(e, seen + seen_count, sizeof seen / sizeof seen[0] - seen_count);
}

static const l4_record *wait_record(l4_engine *e, int kind, uint32_t service, size_t from) {
  uint64_t until = now_ms() + 5000;
  while (now_ms() < until) {
    drain(e);
    for (size_t i = from; i < seen_count; i++)
      if (seen[i].kind == kind && (kind == L4_REC_GEN_DONE || seen[i].service_id == service)) return &seen[i];
    usleep(2000);
  }
  return NULL;
}

static const l4_record *wait_close(l4_engine *e, uint32_t service, size_t from, int reason) {
  uint64_t until = now_ms() + 5000;
  while (now_ms() < until) {
    drain(e);
    for (size_t i = from; i < seen_count; i++)
      if (seen[i].kind == L4_REC_CLOSE && seen[i].service_id == service && seen[i].reason == reason) return &seen[i];
    usleep(2000);
  }
  return NULL;
}

static int client_connect(uint16_t port, uint32_t src) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  /* own 127.x source: a port-0 client must not collide with a reuseport listener group */
  struct sockaddr_in from = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(src)};
  bind(fd, (struct sockaddr *)&from, sizeof from);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001), .sin_port = htons(port)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return -1;
  }
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

static l4_service_config default_config(void) {
  l4_service_config c = {.connect_timeout_ms = 1000, .idle_timeout_ms = 0, .retries = 2, .max_conns = 0};
  return c;
}

/*
 * Two entries; a 7-slot "maglev" table whose slots 0-5 go to entry `owner` and slot 6 to the
 * other (as in real tables every entry owns a slot, so a retry's walk finds it). The test
 * clients 127.0.0.2-6 hash to slots 0, 2, 5, 2, 4.
 */
static void publish_with(l4_service *svc, l4_counters *counters, const l4_service_config *cfg, l4_entry *entries, uint32_t n,
                         int owner, const l4_backups *backups, const l4_admit_config *admit) {
  int32_t table[7];
  for (int i = 0; i < 7; i++) table[i] = n == 1 ? 0 : i == 6 ? 1 - owner : owner;
  l4_pick_data pick = {.algorithm = L4_ALG_MAGLEV, .table = table, .table_length = n ? 7 : 0};
  int rc = l4_service_publish(svc, counters, cfg, &pick, entries, n, backups, admit);
  if (rc != 0) {
    fprintf(stderr, "publish failed %d\n", rc);
    exit(1);
  }
}

static void publish(l4_service *svc, l4_counters *counters, const l4_service_config *cfg, l4_entry *entries, uint32_t n, int owner) {
  publish_with(svc, counters, cfg, entries, n, owner, NULL, NULL);
}

static uint16_t listen_on(l4_service *svc) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
  struct sockaddr_storage bound;
  int rc = l4_service_listen(svc, (struct sockaddr *)&a, sizeof a, 512, &bound);
  if (rc != 0) {
    fprintf(stderr, "listen failed: %s\n", strerror(rc));
    exit(1);
  }
  return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

/* ---- cases ------------------------------------------------------------------------------- */

static void test_hash_and_headers(void) {
  CHECK(l4_murmur3("", 0, 0) == 0);
  CHECK(l4_murmur3("a", 1, 0) == 1009084850u);
  CHECK(l4_murmur3("10.0.0.1", 8, 0) == 3963167075u);
  CHECK(l4_murmur3("10.0.0.1:5555", 13, 0) == 3662261089u);
  CHECK(l4_murmur3("2001:db8::1", 11, 0) == 3320267662u);
  CHECK(l4_murmur3("10.0.0.1", 8, 0x9747b28c) == 2519544688u);
  CHECK(l4_fmix32(12345) == 1011272156u);
  /* expected bytes from lib/proxy-protocol encodeV1/encodeV2 for the same inputs */
  l4_endpoint src4 = {4, {10, 1, 2, 3}, 40000}, dst4 = {4, {127, 0, 0, 1}, 8080};
  l4_endpoint src6 = {16, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 40000};
  uint8_t out[L4_MAX_HEADER];
  char text[L4_MAX_HEADER * 2 + 1];
  size_t n = l4_proxy_v1(out, &src4, &dst4);
  hex(text, out, n);
  CHECK(strcmp(text, "50524f585920544350342031302e312e322e33203132372e302e302e3120343030303020383038300d0a") == 0);
  n = l4_proxy_v1(out, &src6, &dst4);
  hex(text, out, n);
  CHECK(strcmp(text, "50524f5859205443503620323030313a6462383a3a31203a3a666666663a376630303a3120343030303020383038300d0a") == 0);
  n = l4_proxy_v2(out, &src4, &dst4, "AbCdEfGhIjKlMnOp", 1);
  hex(text, out, n);
  CHECK(strcmp(text, "0d0a0d0a000d0a515549540a211100260a0102037f0000019c401f900500104162436445664768496a4b6c4d6e4f70030004804eef0c") == 0);
  n = l4_proxy_v2(out, &src6, &dst4, "AbCdEfGhIjKlMnOp", 0);
  hex(text, out, n);
  CHECK(strcmp(text, "0d0a0d0a000d0a515549540a2121003720010db800000000000000000000000100000000000000000000ffff7f0000019c401f900500104162436445664768496a4b6c4d6e4f70") == 0);
}

/* 256 KiB up, half-close from the client, the echo comes back, then the backend's FIN. */
static void test_echo(l4_engine *e, struct backend *b) {
  l4_service *svc = l4_service_new(e, 1);
  l4_counters *counters = l4_counters_new(e, 2, 1);
  l4_entry entries[2] = {entry_for(b->port, 0), entry_for(b->port, 1)};
  l4_service_config cfg = default_config();
  publish(svc, counters, &cfg, entries, 2, 1);
  uint16_t port = listen_on(svc);
  size_t from = seen_count;
  int fd = client_connect(port, 0x7f000002);
  CHECK(fd >= 0);
  enum { SIZE = 256 * 1024 };
  char *data = malloc(SIZE), *back = malloc(SIZE);
  for (int i = 0; i < SIZE; i++) data[i] = (char)(i * 7);
  size_t sent = 0, got = 0;
  while (got < SIZE) {
    if (sent < SIZE) {
      ssize_t w = send(fd, data + sent, SIZE - sent > 8192 ? 8192 : SIZE - sent, MSG_DONTWAIT);
      if (w > 0) sent += (size_t)w;
      if (sent == SIZE) shutdown(fd, SHUT_WR);
    }
    ssize_t r = recv(fd, back + got, SIZE - got, MSG_DONTWAIT);
    if (r > 0) got += (size_t)r;
    else if (r == 0) break;
    else usleep(200);
  }
  CHECK(got == SIZE && memcmp(data, back, SIZE) == 0);
  char tail;
  CHECK(recv(fd, &tail, 1, 0) == 0); /* the backend's FIN passed on */
  close(fd);
  free(data);
  free(back);
  const l4_record *r = wait_record(e, L4_REC_CLOSE, 1, from);
  CHECK(r != NULL);
  CHECK(r->reason == L4_CLIENT_CLOSED);
  CHECK(r->bytes_in == SIZE && r->bytes_out == SIZE);
  CHECK(r->slot == 1 && r->attempts == 1);
  CHECK(strcmp(r->client_ip, "127.0.0.2") == 0);
  CHECK(l4_service_active(svc) == 0);
  CHECK(l4_counters_active(counters)[1] == 0);
  uint64_t stats[L4_STAT_COUNT];
  l4_service_stats(svc, stats);
  CHECK(stats[L4_STAT_ACCEPTED] == 1 && stats[L4_STAT_CLOSED] == 1);
  l4_service_stop_accepting(svc);
  CHECK(client_connect(port, 0x7f000002) < 0); /* nothing listens any more */
  l4_service_release(svc);
  l4_counters_release(counters);
}

/* The picked backend refuses: a passive failure, then the next pick serves the client. */
static void test_retry_and_proxy_header(l4_engine *e, struct backend *b) {
  l4_service *svc = l4_service_new(e, 2);
  l4_counters *counters = l4_counters_new(e, 2, 2);
  l4_entry entries[2] = {entry_for(dead_port(), 0), entry_for(b->port, 1)};
  l4_service_config cfg = default_config();
  cfg.proxy_version = 2;
  cfg.proxy_crc32c = 1;
  publish(svc, counters, &cfg, entries, 2, 0);
  uint16_t port = listen_on(svc);
  size_t from = seen_count;
  int fd = client_connect(port, 0x7f000003);
  CHECK(fd >= 0);
  CHECK(send(fd, "ping", 4, 0) == 4);
  char buf[256];
  size_t got = 0;
  while (got < 4 + 54) {
    ssize_t r = recv(fd, buf + got, sizeof buf - got, 0);
    if (r <= 0) break;
    got += (size_t)r;
  }
  /* the echo returns the header the backend got, then ping */
  if (got != 58) fprintf(stderr, "got %zu\n", got);
  CHECK(got == 54 + 4);
  CHECK(memcmp(buf + 54, "ping", 4) == 0);
  close(fd);
  const l4_record *fail = wait_record(e, L4_REC_CONNECT_FAIL, 2, from);
  CHECK(fail != NULL && fail->error == ECONNREFUSED && fail->slot == 0);
  const l4_record *r = wait_record(e, L4_REC_CLOSE, 2, from);
  CHECK(r != NULL && r->attempts == 2 && r->slot == 1);
  CHECK(r->bytes_in == 4); /* the header is ours, not the client's */
  l4_endpoint src = {4, {127, 0, 0, 3}, (uint16_t)r->client_port}, dst = {4, {127, 0, 0, 1}, port};
  uint8_t expect[L4_MAX_HEADER];
  size_t n = l4_proxy_v2(expect, &src, &dst, r->id, 1);
  CHECK(n == 54 && memcmp(buf, expect, n) == 0);
  uint64_t stats[L4_STAT_COUNT];
  l4_service_stats(svc, stats);
  CHECK(stats[L4_STAT_CONNECT_FAILURES] == 1 && stats[L4_STAT_RETRIES] == 1);
  l4_service_stop_accepting(svc);
  l4_service_release(svc);
  l4_counters_release(counters);
}

/* max-conns, no backend, idle timeout, close-all, on-down shutdown of one slot. */
static void test_limits(l4_engine *e, struct backend *b) {
  l4_service *svc = l4_service_new(e, 3);
  l4_counters *counters = l4_counters_new(e, 2, 3);
  l4_entry entries[2] = {entry_for(b->port, 0), entry_for(b->port, 1)};
  l4_service_config cfg = default_config();
  cfg.max_conns = 1;
  /* long enough that the first is still open when the second arrives on a loaded box */
  cfg.idle_timeout_ms = 1500;
  publish(svc, counters, &cfg, entries, 2, 0);
  uint16_t port = listen_on(svc);
  size_t from = seen_count;
  int one = client_connect(port, 0x7f000004);
  CHECK(one >= 0);
  CHECK(send(one, "x", 1, 0) == 1);
  char c;
  CHECK(recv(one, &c, 1, 0) == 1);
  int two = client_connect(port, 0x7f000004);
  CHECK(two >= 0);
  CHECK(recv(two, &c, 1, 0) <= 0); /* refused: closed at once */
  close(two);
  CHECK(wait_record(e, L4_REC_MAX_CONNS, 3, from) != NULL);
  /* the first goes idle and is closed by the wheel */
  uint64_t start = now_ms();
  CHECK(recv(one, &c, 1, 0) == 0);
  CHECK(now_ms() - start >= 100);
  close(one);
  const l4_record *r = wait_record(e, L4_REC_CLOSE, 3, from);
  CHECK(r != NULL && r->reason == L4_IDLE_TIMEOUT);

  /* close-all and shutdown-slot */
  cfg.max_conns = 0;
  cfg.idle_timeout_ms = 0;
  publish(svc, counters, &cfg, entries, 2, 1);
  from = seen_count;
  int three = client_connect(port, 0x7f000005);
  CHECK(send(three, "y", 1, 0) == 1);
  CHECK(recv(three, &c, 1, 0) == 1);
  CHECK(l4_counters_active(counters)[1] == 1);
  l4_service_shutdown_slot(svc, counters, 0, L4_BACKEND_DOWN); /* another slot: untouched */
  l4_service_shutdown_slot(svc, counters, 1, L4_BACKEND_DOWN);
  CHECK(recv(three, &c, 1, 0) <= 0);
  close(three);
  r = wait_record(e, L4_REC_CLOSE, 3, from);
  CHECK(r != NULL && r->reason == L4_BACKEND_DOWN);
  from = seen_count;
  /* The shutdown went to every thread; one that has not run it yet may still cut a new
     connection to slot 1, so the client tries again (bounded) until one is served. */
  int four = -1;
  for (int attempt = 0; attempt < 50 && four < 0; attempt++) {
    four = client_connect(port, 0x7f000005);
    if (four >= 0 && send(four, "z", 1, MSG_NOSIGNAL) == 1 && recv(four, &c, 1, 0) == 1) break;
    if (four >= 0) close(four);
    four = -1;
    usleep(10000);
  }
  CHECK(four >= 0);
  l4_service_close_all(svc, L4_SHUTDOWN);
  CHECK(recv(four, &c, 1, 0) <= 0);
  close(four);
  /* (records of the tries that were cut may come first) */
  CHECK(wait_close(e, 3, from, L4_SHUTDOWN) != NULL);

  /* nothing usable */
  publish(svc, counters, &cfg, NULL, 0, 0);
  from = seen_count;
  int five = client_connect(port, 0x7f000006);
  CHECK(recv(five, &c, 1, 0) <= 0);
  close(five);
  r = wait_record(e, L4_REC_CLOSE, 3, from);
  CHECK(r != NULL && r->reason == L4_NO_BACKEND && r->slot == -1);
  l4_service_stop_accepting(svc);
  l4_service_release(svc);
  /* Every snapshot of generation 3 is gone once every thread passed a batch and it is
     reclaimed; while the control plane still holds the counters, that is a record. */
  const l4_record *done = NULL;
  uint64_t until = now_ms() + 10000;
  while (done == NULL && now_ms() < until) {
    l4_engine_reclaim(e);
    drain(e);
    for (size_t i = from; i < seen_count && done == NULL; i++)
      if (seen[i].kind == L4_REC_GEN_DONE && seen[i].gen == 3) done = &seen[i];
    if (done == NULL) usleep(2000);
  }
  l4_counters_release(counters);
  CHECK(done != NULL);
}

/* A client's first byte arrives (served) or the socket closes empty (refused). */
static int served(uint16_t port, uint32_t src, int *keep) {
  int fd = client_connect(port, src);
  if (fd < 0) return 0;
  char c = 0;
  int ok = send(fd, "a", 1, MSG_NOSIGNAL) == 1 && recv(fd, &c, 1, 0) == 1 && c == 'a';
  if (ok && keep) *keep = fd;
  else close(fd);
  return ok;
}

static const l4_record *wait_refused(l4_engine *e, uint32_t service, size_t from, int reason) {
  uint64_t until = now_ms() + 5000;
  while (now_ms() < until) {
    drain(e);
    for (size_t i = from; i < seen_count; i++)
      if (seen[i].kind == L4_REC_REFUSED && seen[i].service_id == service && seen[i].reason == reason) return &seen[i];
    usleep(2000);
  }
  return NULL;
}

/* Admission (admit.c) at accept: lists, per-source open counts released at close, kept across a publish. */
static void test_admission(l4_engine *e, struct backend *b) {
  l4_service *svc = l4_service_new(e, 5);
  l4_counters *counters = l4_counters_new(e, 2, 5);
  l4_entry entries[2] = {entry_for(b->port, 0), entry_for(b->port, 1)};
  l4_service_config cfg = default_config();
  l4_cidr deny = {.family = 4, .words = {0x7f000007}, .masks = {0xffffffffu}};
  l4_admit_config admit = {.deny = &deny, .deny_count = 1, .max_conns_per_ip = 1};
  publish_with(svc, counters, &cfg, entries, 2, 0, NULL, &admit);
  uint16_t port = listen_on(svc);
  size_t from = seen_count;
  CHECK(!served(port, 0x7f000007, NULL)); /* denied */
  const l4_record *r = wait_refused(e, 5, from, L4_REFUSE_DENIED);
  CHECK(r != NULL && strcmp(r->client_ip, "127.0.0.7") == 0 && r->family == 4);
  int held = -1;
  CHECK(served(port, 0x7f000008, &held));
  CHECK(!served(port, 0x7f000008, NULL)); /* one open from 127.0.0.8 already */
  CHECK(wait_refused(e, 5, from, L4_REFUSE_MAX_CONNS_PER_IP) != NULL);
  CHECK(served(port, 0x7f000009, NULL)); /* another source */
  /* a publish with the same settings (a pool change) keeps the count of the open one */
  publish_with(svc, counters, &cfg, entries, 2, 1, NULL, &admit);
  CHECK(!served(port, 0x7f000008, NULL));
  close(held);
  /* its close releases the source */
  uint64_t until = now_ms() + 5000;
  int again = 0;
  while (!again && now_ms() < until) {
    again = served(port, 0x7f000008, NULL);
    if (!again) usleep(20000);
  }
  CHECK(again);
  uint64_t stats[L4_STAT_COUNT];
  l4_service_stats(svc, stats);
  CHECK(stats[L4_STAT_REFUSED_DENIED] == 1 && stats[L4_STAT_REFUSED_NOT_ALLOWED] == 0);
  CHECK(stats[L4_STAT_REFUSED_MAX_CONNS_PER_IP] >= 2 && stats[L4_STAT_REJECTED_MAX_CONNS] == 0);
  /* new settings: the rate, a burst of 2 per source refilled at one per 5 s (slow: a loaded box
     must not earn a token between the tries) */
  l4_admit_config rate = {.rate_per_sec = 0.2, .burst = 2};
  publish_with(svc, counters, &cfg, entries, 2, 1, NULL, &rate);
  from = seen_count;
  CHECK(served(port, 0x7f000007, NULL)); /* no deny list any more */
  CHECK(served(port, 0x7f00000a, NULL));
  CHECK(served(port, 0x7f00000a, NULL));
  CHECK(!served(port, 0x7f00000a, NULL));
  CHECK(wait_refused(e, 5, from, L4_REFUSE_RATE_PER_IP) != NULL);
  l4_service_stop_accepting(svc);
  l4_service_release(svc);
  l4_counters_release(counters);
}

/* Every primary refuses: the connection is redispatched to the backup (issue 12 item 1). */
static void test_redispatch(l4_engine *e, struct backend *b) {
  l4_service *svc = l4_service_new(e, 6);
  l4_counters *counters = l4_counters_new(e, 3, 6);
  /* a bound, not listening socket: its port refuses */
  int hole = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
  socklen_t len = sizeof a;
  CHECK(bind(hole, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(hole, (struct sockaddr *)&a, &len) == 0);
  l4_entry primary = entry_for(ntohs(a.sin_port), 0);
  l4_entry backup = entry_for(b->port, 2);
  int32_t backup_table[7] = {0, 0, 0, 0, 0, 0, 0};
  l4_backups backups = {.pick = {.algorithm = L4_ALG_MAGLEV, .table = backup_table, .table_length = 7}, .entries = &backup, .entry_count = 1};
  l4_service_config cfg = default_config();
  cfg.retries = 1;
  publish_with(svc, counters, &cfg, &primary, 1, 0, &backups, NULL);
  uint16_t port = listen_on(svc);
  size_t from = seen_count;
  CHECK(served(port, 0x7f00000b, NULL));
  const l4_record *r = wait_record(e, L4_REC_CLOSE, 6, from);
  CHECK(r != NULL && r->slot == 2 && r->attempts == 2 && r->opened);
  CHECK(wait_record(e, L4_REC_CONNECT_FAIL, 6, from) != NULL);
  /* no retry left after the primary: no redispatch either (as Pool.pick is only asked again on a retry) */
  cfg.retries = 0;
  publish_with(svc, counters, &cfg, &primary, 1, 0, &backups, NULL);
  from = seen_count;
  CHECK(!served(port, 0x7f00000c, NULL));
  r = wait_record(e, L4_REC_CLOSE, 6, from);
  CHECK(r != NULL && r->reason == L4_CONNECT_FAILED && r->slot == 0);
  /* without backups, a retry that finds no primary left fails the connection */
  cfg.retries = 1;
  publish_with(svc, counters, &cfg, &primary, 1, 0, NULL, NULL);
  from = seen_count;
  CHECK(!served(port, 0x7f00000d, NULL));
  r = wait_record(e, L4_REC_CLOSE, 6, from);
  CHECK(r != NULL && r->reason == L4_CONNECT_FAILED && r->attempts == 1);
  close(hole);
  l4_service_stop_accepting(svc);
  l4_service_release(svc);
  l4_counters_release(counters);
}

/*
 * Bulk both ways: 8 MiB through an echo, written in 64 KiB chunks, then the client's FIN while
 * bytes are still in flight (half-close mid-splice). Every byte comes back in order, then the
 * backend's FIN; both directions went through splice; the record's counts are exact.
 */
static void test_bulk_splice(l4_engine *e, struct backend *b) {
  l4_service *svc = l4_service_new(e, 7);
  l4_counters *counters = l4_counters_new(e, 2, 7);
  l4_entry entries[2] = {entry_for(b->port, 0), entry_for(b->port, 1)};
  l4_service_config cfg = default_config();
  publish(svc, counters, &cfg, entries, 2, 1);
  uint16_t port = listen_on(svc);
  size_t from = seen_count;
  int fd = client_connect(port, 0x7f000007);
  CHECK(fd >= 0);
  enum { SIZE = 8 * 1024 * 1024 };
  char *data = malloc(SIZE), *back = malloc(SIZE);
  for (size_t i = 0; i < SIZE; i++) data[i] = pattern_at(i);
  size_t sent = 0, got = 0;
  uint64_t until = now_ms() + 20000;
  int live_checked = 0;
  while (got < SIZE && now_ms() < until) {
    if (sent < SIZE) {
      ssize_t w = send(fd, data + sent, SIZE - sent > 65536 ? 65536 : SIZE - sent, MSG_DONTWAIT);
      if (w > 0) sent += (size_t)w;
      if (sent == SIZE) shutdown(fd, SHUT_WR);
    }
    ssize_t r = recv(fd, back + got, SIZE - got, MSG_DONTWAIT);
    if (r > 0) got += (size_t)r;
    else if (r == 0) break;
    else usleep(100);
    if (!live_checked && got >= SIZE / 2) {
      /* live bytes: the slot's counts grow while the connection is open */
      live_checked = 1;
      const uint64_t *bytes = l4_counters_bytes(counters);
      CHECK(bytes[0] + bytes[2] >= SIZE / 2 && bytes[1] + bytes[3] >= SIZE / 2);
    }
  }
  CHECK(got == SIZE && memcmp(data, back, SIZE) == 0);
  char tail;
  CHECK(recv(fd, &tail, 1, 0) == 0);
  close(fd);
  free(data);
  free(back);
  const l4_record *r = wait_record(e, L4_REC_CLOSE, 7, from);
  CHECK(r != NULL && r->reason == L4_CLIENT_CLOSED);
  CHECK(r->bytes_in == SIZE && r->bytes_out == SIZE);
  const uint64_t *bytes = l4_counters_bytes(counters);
  CHECK(bytes[2 * r->slot] == SIZE && bytes[2 * r->slot + 1] == SIZE);
  CHECK(bytes[2 * (1 - r->slot)] == 0 && bytes[2 * (1 - r->slot) + 1] == 0);
  uint64_t stats[L4_STAT_COUNT];
  l4_service_stats(svc, stats);
  if (stats[L4_STAT_SPLICED_IN] < SIZE / 2 || stats[L4_STAT_SPLICED_OUT] < SIZE / 2)
    fprintf(stderr, "spliced in %llu out %llu\n", (unsigned long long)stats[L4_STAT_SPLICED_IN], (unsigned long long)stats[L4_STAT_SPLICED_OUT]);
  CHECK(stats[L4_STAT_SPLICED_IN] >= SIZE / 2 && stats[L4_STAT_SPLICED_OUT] >= SIZE / 2);
  CHECK(stats[L4_STAT_SPLICED_IN] <= SIZE && stats[L4_STAT_SPLICED_OUT] <= SIZE);
  l4_service_stop_accepting(svc);
  l4_service_release(svc);
  l4_counters_release(counters);
}

/*
 * A stalled reader: the backend sends 16 MiB then its FIN while the client reads nothing for
 * 400 ms, so the pipe fills and stays full (the engine waits for the client, it does not spin
 * or drop). Then the client reads every byte in order and the FIN, and still sends after it
 * (half-close from the backend side, mid-splice). Afterwards the pooled pipes are closed once
 * the thread is idle: no pipe left open.
 */
static void test_stalled_reader(l4_engine *e) {
  struct source src;
  /* the pipes pooled by earlier cases go once the threads are idle for a second */
  uint64_t trimmed_by = now_ms() + 5000;
  while (count_pipes() > pipes_at_start && now_ms() < trimmed_by) usleep(20 * 1000);
  CHECK(count_pipes() == pipes_at_start);
  int pipes_before = pipes_at_start;
  enum { SIZE = 64 * 1024 * 1024 }; /* more than every socket buffer on the way can hold */
  source_start(&src, SIZE);
  l4_service *svc = l4_service_new(e, 8);
  l4_counters *counters = l4_counters_new(e, 1, 8);
  l4_entry entries[2] = {entry_for(src.port, 0), entry_for(src.port, 0)};
  l4_service_config cfg = default_config();
  cfg.idle_timeout_ms = 5000;
  publish(svc, counters, &cfg, entries, 2, 0);
  uint16_t port = listen_on(svc);
  size_t from = seen_count;
  int fd = client_connect(port, 0x7f000008);
  EXPECT(fd >= 0);
  usleep(400 * 1000);
  EXPECT(count_pipes() >= pipes_before + 2); /* the backend → client pipe holds what the client did not take */
  EXPECT(!__atomic_load_n(&src.sent_all, __ATOMIC_ACQUIRE)); /* backpressure reached the backend */
  uint64_t stats[L4_STAT_COUNT];
  l4_service_stats(svc, stats);
  EXPECT(stats[L4_STAT_SPLICED_OUT] > 0);
  char *buf = malloc(65536);
  size_t got = 0;
  int in_order = 1;
  uint64_t until = now_ms() + 20000;
  while (now_ms() < until) {
    ssize_t r = recv(fd, buf, 65536, 0);
    if (r <= 0) {
      if (r < 0) fprintf(stderr, "stalled reader: recv: %s\n", strerror(errno));
      break;
    }
    for (ssize_t i = 0; i < r && in_order; i++)
      if (buf[i] != pattern_at(got + (size_t)i)) in_order = 0;
    got += (size_t)r;
  }
  free(buf);
  if (got != SIZE || !in_order) {
    fprintf(stderr, "stalled reader: got %zu of %d, in order %d\n", got, SIZE, in_order);
    const l4_record *bad = wait_record(e, L4_REC_CLOSE, 8, from);
    if (bad) fprintf(stderr, "closed: reason %d in %llu out %llu\n", bad->reason, (unsigned long long)bad->bytes_in, (unsigned long long)bad->bytes_out);
  }
  EXPECT(got == SIZE && in_order);
  EXPECT(send(fd, "after", 5, MSG_NOSIGNAL) == 5);
  shutdown(fd, SHUT_WR);
  source_stop(&src);
  CHECK(__atomic_load_n(&src.received, __ATOMIC_ACQUIRE) == 5);
  close(fd);
  const l4_record *r = wait_record(e, L4_REC_CLOSE, 8, from);
  CHECK(r != NULL && r->reason == L4_BACKEND_CLOSED);
  CHECK(r->bytes_in == 5 && r->bytes_out == SIZE);
  CHECK(l4_counters_bytes(counters)[0] == 5 && l4_counters_bytes(counters)[1] == SIZE);
  uint64_t wait_until = now_ms() + 5000;
  while (count_pipes() > pipes_before && now_ms() < wait_until) usleep(20 * 1000);
  CHECK(count_pipes() <= pipes_before);
  l4_service_stop_accepting(svc);
  l4_service_release(svc);
  l4_counters_release(counters);
}

/* Resets both ways, early closes, many connections: fds back to baseline. */
static void test_churn(l4_engine *e, struct backend *b) {
  l4_service *svc = l4_service_new(e, 4);
  l4_counters *counters = l4_counters_new(e, 2, 4);
  l4_entry entries[2] = {entry_for(b->port, 0), entry_for(dead_port(), 1)};
  l4_service_config cfg = default_config();
  publish(svc, counters, &cfg, entries, 2, 0);
  uint16_t port = listen_on(svc);
  int baseline = count_fds();
  size_t from = seen_count;
  enum { N = 600 };
  for (int i = 0; i < N; i++) {
    int fd = client_connect(port, 0x7f000010 + (uint32_t)(i % 200));
    if (fd < 0) continue;
    switch (i % 4) {
      case 0: /* early close */
        break;
      case 1: { /* reset from the client */
        struct linger lg = {1, 0};
        send(fd, "abc", 3, 0);
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        break;
      }
      case 2: { /* a round trip, then half-close */
        char c;
        send(fd, "q", 1, 0);
        recv(fd, &c, 1, 0);
        shutdown(fd, SHUT_WR);
        recv(fd, &c, 1, 0);
        break;
      }
      default: /* send and leave */
        send(fd, "hello", 5, 0);
        break;
    }
    close(fd);
  }
  /* generous bounds: the box running this may be loaded; nothing here is a timing assertion */
  uint64_t until = now_ms() + 30000;
  while (l4_service_active(svc) > 0 && now_ms() < until) usleep(5000);
  CHECK(l4_service_active(svc) == 0);
  /* a batch's records are flushed after its connections are counted out: wait for them too */
  size_t closes = 0;
  until = now_ms() + 10000;
  while (closes < N && now_ms() < until) {
    usleep(5000);
    drain(e);
    closes = 0;
    for (size_t i = from; i < seen_count; i++)
      if (seen[i].kind == L4_REC_CLOSE && seen[i].service_id == 4) closes++;
  }
  CHECK(closes == N);
  CHECK(l4_counters_active(counters)[0] == 0);
  until = now_ms() + 5000;
  while (count_fds() > baseline && now_ms() < until) usleep(10 * 1000);
  CHECK(count_fds() <= baseline);
  l4_service_stop_accepting(svc);
  l4_service_release(svc);
  l4_counters_release(counters);
}

/* ---- backend maxConns and its queue ------------------------------------------------------ */

static int32_t queued_of(l4_counters *counters, int32_t slot) {
  const int32_t *queued = (const int32_t *)((char *)l4_counters_shared(counters) + l4_counters_queued_offset(l4_counters_length(counters)));
  return __atomic_load_n(&queued[slot], __ATOMIC_SEQ_CST);
}

static int wait_queued(l4_counters *counters, int32_t slot, int32_t want) {
  uint64_t until = now_ms() + 5000;
  while (now_ms() < until) {
    if (queued_of(counters, slot) == want) return 1;
    usleep(2000);
  }
  return 0;
}

/* The client is served: its byte comes back (the echo backend answers once connected). */
static int echoed(int fd, char byte) {
  char c;
  return send(fd, &byte, 1, MSG_NOSIGNAL) == 1 && recv(fd, &c, 1, 0) == 1 && c == byte;
}

/* Nothing arrives for `ms` (a waiter that is still waiting). */
static int silent(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, ms) == 0;
}

/*
 * One backend at maxConns 2 on a two-thread engine: waiters queue in order (clients from several
 * sources land on both threads), each freed slot goes to the first waiter whatever thread frees
 * it, the rest time out with queue-timeout; with no queue timeout a full backend refuses at once
 * (backend-full); a raised maxConns serves at once.
 */
static void test_max_conns_queue(l4_engine *e, struct backend *b) {
  l4_service *svc = l4_service_new(e, 9);
  l4_counters *counters = l4_counters_new(e, 2, 9);
  l4_entry entry = entry_for(b->port, 0);
  entry.max_conns = 2;
  l4_service_config cfg = default_config();
  cfg.queue_timeout_ms = 1500;
  publish(svc, counters, &cfg, &entry, 1, 0);
  uint16_t port = listen_on(svc);
  size_t from = seen_count;
  enum { WAITERS = 6 };
  int held[2], waiters[WAITERS];
  for (int i = 0; i < 2; i++) {
    held[i] = client_connect(port, 0x7f000a01 + (uint32_t)i);
    CHECK(held[i] >= 0);
    CHECK(echoed(held[i], 'h'));
  }
  CHECK(l4_counters_active(counters)[0] == 2);
  /* one at a time, so the queue's order is the connect order */
  for (int i = 0; i < WAITERS; i++) {
    waiters[i] = client_connect(port, 0x7f000b01 + (uint32_t)i);
    CHECK(waiters[i] >= 0);
    CHECK(send(waiters[i], "w", 1, MSG_NOSIGNAL) == 1);
    CHECK(wait_queued(counters, 0, i + 1));
  }
  CHECK(l4_counters_active(counters)[0] == 2);
  CHECK(silent(waiters[0], 100));
  /* a slot frees: the first waiter gets it, and only it */
  close(held[0]);
  char c;
  CHECK(recv(waiters[0], &c, 1, 0) == 1 && c == 'w');
  CHECK(wait_queued(counters, 0, WAITERS - 1));
  CHECK(silent(waiters[1], 100));
  close(held[1]);
  CHECK(recv(waiters[1], &c, 1, 0) == 1 && c == 'w');
  CHECK(wait_queued(counters, 0, WAITERS - 2));
  CHECK(l4_counters_active(counters)[0] == 2);
  /* nothing frees for the others: closed at the queue timeout, counted, naming the backend */
  /* closed (a reset: the byte they sent was never read, as the node plane's destroy) */
  for (int i = 2; i < WAITERS; i++) {
    ssize_t n = recv(waiters[i], &c, 1, 0);
    CHECK(n == 0 || (n < 0 && errno == ECONNRESET));
  }
  CHECK(wait_queued(counters, 0, 0));
  const l4_record *r = wait_close(e, 9, from, L4_QUEUE_TIMEOUT);
  CHECK(r != NULL && r->slot == 0 && !r->opened);
  uint64_t stats[L4_STAT_COUNT];
  l4_service_stats(svc, stats);
  CHECK(stats[L4_STAT_QUEUED] == WAITERS);
  CHECK(stats[L4_STAT_QUEUE_TIMEOUTS] == WAITERS - 2);
  CHECK(stats[L4_STAT_BACKEND_FULL] == 0);
  /* no queue: refused at once */
  cfg.queue_timeout_ms = 0;
  publish(svc, counters, &cfg, &entry, 1, 0);
  from = seen_count;
  int full = client_connect(port, 0x7f000c01);
  CHECK(full >= 0);
  CHECK(recv(full, &c, 1, 0) == 0);
  close(full);
  CHECK(wait_close(e, 9, from, L4_BACKEND_FULL) != NULL);
  l4_service_stats(svc, stats);
  CHECK(stats[L4_STAT_BACKEND_FULL] == 1);
  /* a waiter is served as soon as a publish raises the limit */
  cfg.queue_timeout_ms = 5000;
  publish(svc, counters, &cfg, &entry, 1, 0);
  int late = client_connect(port, 0x7f000c02);
  CHECK(late >= 0);
  CHECK(send(late, "l", 1, MSG_NOSIGNAL) == 1);
  CHECK(wait_queued(counters, 0, 1));
  entry.max_conns = 3;
  publish(svc, counters, &cfg, &entry, 1, 0);
  CHECK(recv(late, &c, 1, 0) == 1 && c == 'l');
  CHECK(l4_counters_active(counters)[0] == 3);
  /* close-all reaches waiters too */
  int last = client_connect(port, 0x7f000c03);
  CHECK(last >= 0);
  CHECK(wait_queued(counters, 0, 1));
  for (int i = 2; i < WAITERS; i++) close(waiters[i]);
  l4_service_close_all(svc, L4_SHUTDOWN);
  CHECK(recv(last, &c, 1, 0) == 0);
  CHECK(wait_queued(counters, 0, 0));
  close(last);
  close(late);
  close(waiters[0]);
  close(waiters[1]);
  uint64_t until = now_ms() + 5000;
  while (l4_service_active(svc) != 0 && now_ms() < until) usleep(2000);
  CHECK(l4_service_active(svc) == 0);
  CHECK(l4_counters_active(counters)[0] == 0);
  l4_service_stop_accepting(svc);
  l4_service_release(svc);
  l4_counters_release(counters);
}

int main(void) {
  test_hash_and_headers();
  pipes_at_start = count_pipes();
  char error[256];
  l4_engine *e = l4_engine_new(2, NULL, NULL, error, sizeof error);
  if (!e) {
    fprintf(stderr, "engine: %s\n", error);
    return 1;
  }
  struct backend b;
  backend_start(&b);
  test_echo(e, &b);
  test_retry_and_proxy_header(e, &b);
  test_limits(e, &b);
  test_admission(e, &b);
  test_redispatch(e, &b);
  test_bulk_splice(e, &b);
  test_stalled_reader(e);
  test_churn(e, &b);
  test_max_conns_queue(e, &b);
  l4_engine_free(e);
  backend_stop(&b);
  if (failures) {
    fprintf(stderr, "engine_test: %d failure(s)\n", failures);
    return 1;
  }
  printf("engine_test: ok\n");
  return 0;
}
