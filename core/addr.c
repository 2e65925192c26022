/* Address parsing and resolution. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tt/addr.h"

int tt_addr_split(const char *hp, char *host, size_t hostcap, int *port, int allow_zero) {
  const char *h = hp, *colon;
  size_t hl;
  if (hp[0] == '[') {
    const char *end = strchr(hp, ']');
    if (!end || end[1] != ':') return TT_EINVAL;
    h = hp + 1;
    hl = (size_t)(end - h);
    colon = end + 1;
  } else {
    colon = strrchr(hp, ':');
    if (!colon || strchr(hp, ':') != colon) return TT_EINVAL;
    hl = (size_t)(colon - hp);
  }
  if (hl == 0 || hl >= hostcap) return TT_EINVAL;
  char *endp;
  long p = strtol(colon + 1, &endp, 10);
  if (colon[1] == '\0' || *endp != '\0' || p < (allow_zero ? 0 : 1) || p > 65535) return TT_EINVAL;
  memcpy(host, h, hl);
  host[hl] = '\0';
  *port = (int)p;
  return 0;
}

int tt_addr_resolve(const char *hp, struct sockaddr_storage *out, char *host, size_t hostcap) {
  int port;
  memset(out, 0, sizeof(*out));
  if (tt_addr_split(hp, host, hostcap, &port, 1)) return TT_EINVAL;
  struct sockaddr_in *v4 = (struct sockaddr_in *)out;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    return 0;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    return 0;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return TT_ENOTFOUND;
  memcpy(out, res->ai_addr, res->ai_addrlen);
  if (out->ss_family == AF_INET) v4->sin_port = htons((uint16_t)port);
  else v6->sin6_port = htons((uint16_t)port);
  freeaddrinfo(res);
  return 0;
}

void tt_addr_format(const struct sockaddr *sa, char *out, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof(ip));
    snprintf(out, cap, "%s:%u", ip, ntohs(v4->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof(ip));
    snprintf(out, cap, "[%s]:%u", ip, ntohs(v6->sin6_port));
  } else {
    snprintf(out, cap, "?");
  }
}
