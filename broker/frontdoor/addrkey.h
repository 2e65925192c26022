/* A peer's source address as the broker's front door counts it: an IPv4 address (/32), or
 * the /64 an IPv6 address is in (one host, or one site's subnet: whoever has an IPv6
 * address usually has its whole /64). An IPv4-mapped IPv6 address counts as its IPv4. */
#ifndef BROKER_ADDRKEY_H
#define BROKER_ADDRKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct {
  uint64_t prefix; /* the IPv4 address, or the first 64 bits of the IPv6 one */
  bool v6;
} broker_addr_key_t;

/* Any other family (there is none on a TCP listener) keys as IPv4 0.0.0.0. */
void broker_addr_key_of(const struct sockaddr *sa, broker_addr_key_t *k);
bool broker_addr_key_eq(const broker_addr_key_t *a, const broker_addr_key_t *b);
/* "127.0.0.2" or "2001:db8:1:2::/64", for the audit and the log. */
void broker_addr_key_text(const broker_addr_key_t *k, char *out, size_t cap);

#endif
