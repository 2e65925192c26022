/* Source addresses as the front door counts them (see addrkey.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include "addrkey.h"

void broker_addr_key_of(const struct sockaddr *sa, broker_addr_key_t *k) {
  memset(k, 0, sizeof(*k));
  const uint8_t *p = NULL;
  if (sa->sa_family == AF_INET) {
    p = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
  } else if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a)) {
      p = a->s6_addr + 12;
    } else {
      for (int i = 0; i < 8; i++) k->prefix = k->prefix << 8 | a->s6_addr[i];
      k->v6 = true;
      return;
    }
  }
  if (p) k->prefix = (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3];
}

bool broker_addr_key_eq(const broker_addr_key_t *a, const broker_addr_key_t *b) {
  return a->prefix == b->prefix && a->v6 == b->v6;
}

void broker_addr_key_text(const broker_addr_key_t *k, char *out, size_t cap) {
  uint8_t a[16] = {0};
  char s[INET6_ADDRSTRLEN] = "";
  if (cap == 0) return;
  if (k->v6) {
    for (int i = 0; i < 8; i++) a[i] = (uint8_t)(k->prefix >> (56 - 8 * i));
    if (!inet_ntop(AF_INET6, a, s, sizeof(s))) s[0] = '\0';
    snprintf(out, cap, "%s/64", s);
  } else {
    for (int i = 0; i < 4; i++) a[i] = (uint8_t)(k->prefix >> (24 - 8 * i));
    if (!inet_ntop(AF_INET, a, s, sizeof(s))) s[0] = '\0';
    snprintf(out, cap, "%s", s);
  }
}
