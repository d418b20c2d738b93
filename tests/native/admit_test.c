/*
 * The native admit stage (lib/native/src/admit.c) without sockets or Node, under AddressSanitizer
 * and UBSan (tests/native/Makefile): the same cases as tests/flow/admit.test.ts and
 * limiter.test.ts, on a fake clock. Any failed CHECK exits 1 with the line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/native/src/admit.h"

#include "check.h"

/* A source from text, through a sockaddr as accept4 hands it (so mapped forms go the real way). */
static l4_source src(const char *text) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *in = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, text, &in->sin_addr) == 1) in->sin_family = AF_INET;
  else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) in6->sin6_family = AF_INET6;
  else abort();
  l4_source s;
  l4_source_from_sockaddr(&s, (struct sockaddr *)&ss);
  return s;
}

/* A block as lib/address parseBlock publishes it (an IPv4 block uses words[0]). */
static l4_cidr block(const char *text, int prefix) {
  l4_source s = src(text);
  l4_cidr b;
  memset(&b, 0, sizeof b);
  b.family = s.family;
  for (int i = 0; i < (s.family == 4 ? 1 : 4); i++) {
    int bits = prefix - i * 32;
    bits = bits < 0 ? 0 : bits > 32 ? 32 : bits;
    b.masks[i] = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
    b.words[i] = s.words[i] & b.masks[i];
  }
  return b;
}

static void test_lists(void) {
  l4_cidr allow[] = {block("127.0.0.0", 8), block("2001:db8::", 32)};
  l4_cidr deny[] = {block("127.7.0.0", 16), block("2001:db8:dead::", 48)};
  l4_admit_config config = {.allow = allow, .allow_count = 2, .deny = deny, .deny_count = 2};
  CHECK(l4_admit_config_active(&config));
  l4_admit *a = l4_admit_new(&config);
  CHECK(a != NULL);
  l4_source s = src("127.8.0.1");
  CHECK(l4_admit_acl(a, &s) == L4_ADMITTED);
  s = src("127.7.0.1");
  CHECK(l4_admit_acl(a, &s) == L4_REFUSE_DENIED);
  s = src("::ffff:127.7.3.4"); /* a dual-stack listener's IPv4 client matches IPv4 blocks */
  CHECK(l4_admit_acl(a, &s) == L4_REFUSE_DENIED);
  s = src("::ffff:127.1.2.3");
  CHECK(l4_admit_acl(a, &s) == L4_ADMITTED);
  s = src("10.0.0.1");
  CHECK(l4_admit_acl(a, &s) == L4_REFUSE_NOT_ALLOWED);
  s = src("2001:db8:1::1");
  CHECK(l4_admit_acl(a, &s) == L4_ADMITTED);
  s = src("2001:db8:dead::1");
  CHECK(l4_admit_acl(a, &s) == L4_REFUSE_DENIED);
  s = src("::1");
  CHECK(l4_admit_acl(a, &s) == L4_REFUSE_NOT_ALLOWED);
  /* deny wins over allow: an allowed /8 with a denied /16 inside it, checked above; deny alone */
  l4_admit_config deny_only = {.deny = deny, .deny_count = 1};
  l4_admit *d = l4_admit_new(&deny_only);
  s = src("10.0.0.1");
  CHECK(l4_admit_acl(d, &s) == L4_ADMITTED);
  CHECK(l4_admit_same(a, &config));
  CHECK(!l4_admit_same(d, &config));
  CHECK(!l4_admit_same(a, &deny_only));
  l4_admit_unref(d);
  l4_admit_unref(a);
}

static void test_per_ip(void) {
  l4_admit_config config = {.max_conns_per_ip = 2};
  l4_admit *a = l4_admit_new(&config);
  CHECK(a != NULL);
  l4_source one = src("127.9.0.1"), mapped = src("::ffff:127.9.0.1"), two = src("127.9.0.2");
  CHECK(l4_admit_take(a, &one, 0) == L4_ADMITTED);
  CHECK(l4_admit_take(a, &mapped, 0) == L4_ADMITTED); /* the same source as 127.9.0.1 */
  CHECK(l4_admit_take(a, &one, 0) == L4_REFUSE_MAX_CONNS_PER_IP);
  CHECK(l4_admit_open_of(a, &one) == 2);
  CHECK(l4_admit_take(a, &two, 0) == L4_ADMITTED);
  l4_admit_release(a, &one);
  CHECK(l4_admit_open_of(a, &one) == 1);
  CHECK(l4_admit_take(a, &one, 0) == L4_ADMITTED);
  l4_admit_release(a, &one);
  l4_admit_release(a, &one);
  l4_admit_release(a, &two);
  CHECK(l4_admit_open_of(a, &one) == 0 && l4_admit_open_of(a, &two) == 0);
  l4_admit_release(a, &two); /* nothing to release: allowed, changes nothing */
  CHECK(l4_admit_take(a, &two, 0) == L4_ADMITTED);
  CHECK(l4_admit_open_of(a, &two) == 1);
  l4_admit_release(a, &two);
  /* thousands of sources open at once and all closed: the table grows and empties */
  for (uint32_t i = 0; i < 5000; i++) {
    l4_source s = {.family = 6, .words = {0x20010db8u, 0, i, 1}};
    CHECK(l4_admit_take(a, &s, 0) == L4_ADMITTED);
  }
  for (uint32_t i = 0; i < 5000; i++) {
    l4_source s = {.family = 6, .words = {0x20010db8u, 0, i, 1}};
    CHECK(l4_admit_open_of(a, &s) == 1);
    l4_admit_release(a, &s);
    CHECK(l4_admit_open_of(a, &s) == 0);
  }
  l4_admit_unref(a);
}

static void test_rate(void) {
  /* 5/s, burst 5 (the default burst = rate): limiter.test.ts's story */
  l4_admit_config config = {.rate_per_sec = 5};
  l4_admit *a = l4_admit_new(&config);
  CHECK(a != NULL);
  l4_source s = src("127.10.0.1"), other = src("127.10.0.2");
  double t = 1000;
  for (int i = 0; i < 5; i++) CHECK(l4_admit_take(a, &s, t) == L4_ADMITTED);
  CHECK(l4_admit_take(a, &s, t) == L4_REFUSE_RATE_PER_IP);
  CHECK(l4_admit_take(a, &other, t) == L4_ADMITTED);
  CHECK(l4_admit_take(a, &s, t + 199) == L4_REFUSE_RATE_PER_IP); /* 0.995 tokens */
  CHECK(l4_admit_take(a, &s, t + 201) == L4_ADMITTED);           /* 1.005 */
  CHECK(l4_admit_take(a, &s, t + 150) == L4_REFUSE_RATE_PER_IP); /* the clock stepped back: nothing earned */
  CHECK(l4_admit_tokens(a, &s, t + 10000) == 5);                 /* never past the burst */
  CHECK(l4_admit_tokens(a, &other, t) == 4);
  l4_admit_unref(a);
  /* fractional rate: one every 2 s, burst 1 */
  l4_admit_config half = {.rate_per_sec = 0.5};
  a = l4_admit_new(&half);
  CHECK(l4_admit_take(a, &s, 0) == L4_ADMITTED);
  CHECK(l4_admit_take(a, &s, 1999) == L4_REFUSE_RATE_PER_IP);
  CHECK(l4_admit_take(a, &s, 2001) == L4_ADMITTED);
  l4_admit_unref(a);
  /* per-ip refusal first: it spends no token */
  l4_admit_config both = {.rate_per_sec = 2, .max_conns_per_ip = 1};
  a = l4_admit_new(&both);
  CHECK(l4_admit_take(a, &s, 0) == L4_ADMITTED);
  CHECK(l4_admit_take(a, &s, 0) == L4_REFUSE_MAX_CONNS_PER_IP);
  CHECK(l4_admit_take(a, &s, 0) == L4_REFUSE_MAX_CONNS_PER_IP);
  l4_admit_release(a, &s);
  CHECK(l4_admit_take(a, &s, 0) == L4_ADMITTED); /* the second token, unspent by the refusals */
  l4_admit_release(a, &s);
  CHECK(l4_admit_take(a, &s, 0) == L4_REFUSE_RATE_PER_IP);
  CHECK(l4_admit_open_of(a, &s) == 0);
  l4_admit_unref(a);
}

static void test_eviction(void) {
  l4_admit_config config = {.rate_per_sec = 1, .max_sources = 3};
  l4_admit *a = l4_admit_new(&config);
  l4_source s[4] = {src("10.0.0.1"), src("10.0.0.2"), src("10.0.0.3"), src("10.0.0.4")};
  for (int i = 0; i < 3; i++) CHECK(l4_admit_take(a, &s[i], 0) == L4_ADMITTED);
  CHECK(l4_admit_take(a, &s[0], 1) == L4_REFUSE_RATE_PER_IP); /* 10.0.0.1 is now the newest */
  CHECK(l4_admit_take(a, &s[3], 2) == L4_ADMITTED);           /* evicts 10.0.0.2, the oldest */
  CHECK(l4_admit_sources(a) == 3 && l4_admit_evictions(a) == 1);
  CHECK(l4_admit_take(a, &s[0], 3) == L4_REFUSE_RATE_PER_IP); /* still tracked, and the newest again */
  CHECK(l4_admit_take(a, &s[1], 4) == L4_ADMITTED);           /* forgotten: a full bucket; evicts 10.0.0.3 */
  CHECK(l4_admit_take(a, &s[0], 5) == L4_REFUSE_RATE_PER_IP); /* 10.0.0.1 stayed: it was used recently */
  CHECK(l4_admit_take(a, &s[2], 6) == L4_ADMITTED);           /* 10.0.0.3 was the one forgotten */
  CHECK(l4_admit_evictions(a) == 3);
  /* a big churn through a small table: bounded, every new source admitted */
  for (uint32_t i = 0; i < 20000; i++) {
    l4_source x = {.family = 4, .words = {0x0b000000u + i}};
    CHECK(l4_admit_take(a, &x, 10) == L4_ADMITTED);
  }
  CHECK(l4_admit_sources(a) == 3);
  l4_admit_unref(a);
}

/* Threads take and release from a few shared sources at once: counts end at zero, no race (ASan). */
static l4_admit *shared;
static void *hammer(void *arg) {
  uint32_t base = (uint32_t)(uintptr_t)arg;
  for (uint32_t i = 0; i < 20000; i++) {
    l4_source s = {.family = 4, .words = {0x7f000000u + ((base + i) % 7)}};
    if (l4_admit_take(shared, &s, (double)i) == L4_ADMITTED) l4_admit_release(shared, &s);
  }
  return NULL;
}

static void test_threads(void) {
  l4_admit_config config = {.max_conns_per_ip = 3, .rate_per_sec = 1e6, .max_sources = 5};
  shared = l4_admit_new(&config);
  pthread_t threads[4];
  for (uintptr_t i = 0; i < 4; i++) pthread_create(&threads[i], NULL, hammer, (void *)i);
  for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
  for (uint32_t i = 0; i < 7; i++) {
    l4_source s = {.family = 4, .words = {0x7f000000u + i}};
    CHECK(l4_admit_open_of(shared, &s) == 0);
  }
  CHECK(l4_admit_sources(shared) == 5);
  l4_admit_unref(shared);
}

int main(void) {
  test_lists();
  test_per_ip();
  test_rate();
  test_eviction();
  test_threads();
  if (failures) {
    fprintf(stderr, "admit_test: %d failure(s)\n", failures);
    return 1;
  }
  printf("admit_test: all cases passed\n");
  return 0;
}
