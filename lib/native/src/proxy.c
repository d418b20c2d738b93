/* See proxy.h. The byte layout follows doc/proxy-protocol.txt §2.1/§2.2 as encode.ts writes it. */
#include "proxy.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    crc_table[n] = c;
  }
  __atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
}

uint32_t l4_crc32c(const uint8_t *bytes, size_t length) {
  /* Idempotent: two threads racing here write the same table. */
  if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE)) crc_init();
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < length; i++) c = crc_table[(c ^ bytes[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

void l4_endpoint_from_sockaddr(l4_endpoint *out, const void *sockaddr) {
  const struct sockaddr *sa = sockaddr;
  memset(out, 0, sizeof *out);
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = sockaddr;
    out->length = 4;
    memcpy(out->bytes, &in->sin_addr, 4);
    out->port = ntohs(in->sin_port);
    return;
  }
  const struct sockaddr_in6 *in6 = sockaddr;
  out->port = ntohs(in6->sin6_port);
  if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
    out->length = 4;
    memcpy(out->bytes, in6->sin6_addr.s6_addr + 12, 4);
    return;
  }
  out->length = 16;
  memcpy(out->bytes, in6->sin6_addr.s6_addr, 16);
}

static void to_v6(uint8_t out[16], const l4_endpoint *e) {
  if (e->length == 16) {
    memcpy(out, e->bytes, 16);
    return;
  }
  memset(out, 0, 10);
  out[10] = 0xff;
  out[11] = 0xff;
  memcpy(out + 12, e->bytes, 4);
}

/* RFC 5952 as libuv's inet_ntop6 prints it, hex groups only (formatIPv6(bytes, 0, false)). */
static size_t format_v6_hex(char *out, const uint8_t b[16]) {
  int best_base = -1, best_length = 0, run_base = -1;
  for (int w = 0; w <= 8; w++) {
    int zero = w < 8 && b[w * 2] == 0 && b[w * 2 + 1] == 0;
    if (zero) {
      if (run_base < 0) run_base = w;
    } else if (run_base >= 0) {
      if (w - run_base > best_length) {
        best_base = run_base;
        best_length = w - run_base;
      }
      run_base = -1;
    }
  }
  if (best_length < 2) best_base = -1;
  size_t at = 0;
  for (int w = 0; w < 8; w++) {
    if (w == best_base) {
      out[at++] = ':';
      out[at++] = ':';
      w += best_length - 1;
      continue;
    }
    if (w > 0 && w != best_base + best_length) out[at++] = ':';
    at += (size_t)snprintf(out + at, 6, "%x", (unsigned)((b[w * 2] << 8) | b[w * 2 + 1]));
  }
  out[at] = 0;
  return at;
}

size_t l4_proxy_v1(uint8_t *out, const l4_endpoint *src, const l4_endpoint *dst) {
  char s[48], d[48];
  const char *family;
  if (src->length == 4 && dst->length == 4) {
    family = "TCP4";
    snprintf(s, sizeof s, "%u.%u.%u.%u", src->bytes[0], src->bytes[1], src->bytes[2], src->bytes[3]);
    snprintf(d, sizeof d, "%u.%u.%u.%u", dst->bytes[0], dst->bytes[1], dst->bytes[2], dst->bytes[3]);
  } else {
    uint8_t v6[16];
    family = "TCP6";
    to_v6(v6, src);
    format_v6_hex(s, v6);
    to_v6(v6, dst);
    format_v6_hex(d, v6);
  }
  int n = snprintf((char *)out, L4_MAX_HEADER, "PROXY %s %s %s %u %u\r\n", family, s, d, src->port, dst->port);
  return n < 0 ? 0 : (size_t)n;
}

static const uint8_t V2_SIGNATURE[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

size_t l4_proxy_v2(uint8_t *out, const l4_endpoint *src, const l4_endpoint *dst, const char *unique_id, int crc32c) {
  memcpy(out, V2_SIGNATURE, 12);
  out[12] = 0x21; /* version 2, PROXY */
  size_t at = 16;
  if (src->length == 4 && dst->length == 4) {
    out[13] = 0x11; /* AF_INET, STREAM */
    memcpy(out + at, src->bytes, 4);
    memcpy(out + at + 4, dst->bytes, 4);
    at += 8;
  } else {
    out[13] = 0x21; /* AF_INET6, STREAM */
    to_v6(out + at, src);
    to_v6(out + at + 16, dst);
    at += 32;
  }
  out[at++] = (uint8_t)(src->port >> 8);
  out[at++] = (uint8_t)src->port;
  out[at++] = (uint8_t)(dst->port >> 8);
  out[at++] = (uint8_t)dst->port;
  /* PP2_TYPE_UNIQUE_ID (0x05) */
  out[at++] = 0x05;
  out[at++] = 0;
  out[at++] = L4_UNIQUE_ID_LENGTH;
  memcpy(out + at, unique_id, L4_UNIQUE_ID_LENGTH);
  at += L4_UNIQUE_ID_LENGTH;
  size_t crc_at = 0;
  if (crc32c) {
    out[at++] = 0x03; /* PP2_TYPE_CRC32C, value zero until the header is complete */
    out[at++] = 0;
    out[at++] = 4;
    crc_at = at;
    memset(out + at, 0, 4);
    at += 4;
  }
  size_t body = at - 16;
  out[14] = (uint8_t)(body >> 8);
  out[15] = (uint8_t)body;
  if (crc32c) {
    uint32_t c = l4_crc32c(out, at);
    out[crc_at] = (uint8_t)(c >> 24);
    out[crc_at + 1] = (uint8_t)(c >> 16);
    out[crc_at + 2] = (uint8_t)(c >> 8);
    out[crc_at + 3] = (uint8_t)c;
  }
  return at;
}
