/*
 * The header stage: PROXY v1/v2 headers byte-identical to lib/proxy-protocol/encode.ts for what
 * the native plane sends (a real client, the listener's address, the UNIQUE_ID TLV, optional
 * CRC32C). The native plane never parses PROXY headers: accept-proxy services stay on `node`.
 */
#ifndef L4_PROXY_H
#define L4_PROXY_H

#include <stddef.h>
#include <stdint.h>

/* An address as the header carries it: 4 bytes (IPv4, or IPv4-mapped IPv6) or 16. */
typedef struct l4_endpoint {
  uint8_t length; /* 4 or 16 */
  uint8_t bytes[16];
  uint16_t port;
} l4_endpoint;

#define L4_UNIQUE_ID_LENGTH 16
/* v2 with IPv6 addresses, a 16-byte UNIQUE_ID and a CRC32C: 16 + 36 + 19 + 7 = 78. */
#define L4_MAX_HEADER 128

uint32_t l4_crc32c(const uint8_t *bytes, size_t length);

/* Writes the header into out (at least L4_MAX_HEADER bytes); returns its length. */
size_t l4_proxy_v1(uint8_t *out, const l4_endpoint *src, const l4_endpoint *dst);
size_t l4_proxy_v2(uint8_t *out, const l4_endpoint *src, const l4_endpoint *dst, const char *unique_id, int crc32c);

/* IPv4-mapped IPv6 becomes IPv4, as addressBytes() does. */
void l4_endpoint_from_sockaddr(l4_endpoint *out, const void *sockaddr);

#endif
