/* "host:port" and "[v6]:port" parsing and resolution for listeners and connectors. */
#ifndef TT_ADDR_H
#define TT_ADDR_H

#include <stddef.h>
#include <sys/socket.h>
#include "tt/err.h"

/* Split "host:port" / "[::1]:port" into host and port; TT_EINVAL if malformed or port
 * is not 1..65535 (0 allowed when allow_zero, for "pick one" listeners). */
int tt_addr_split(const char *hostport, char *host, size_t hostcap, int *port, int allow_zero) TT_WUR;
/* Resolve (blocking getaddrinfo; numeric hosts never touch DNS) to the first address. */
int tt_addr_resolve(const char *hostport, struct sockaddr_storage *out, char *host, size_t hostcap) TT_WUR;
/* "127.0.0.1:7443" / "[::1]:7443" */
void tt_addr_format(const struct sockaddr *sa, char *out, size_t cap);

#endif
