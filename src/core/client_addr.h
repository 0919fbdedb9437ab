/* client_addr.h - who the client really is behind a reverse proxy:
 * trusted_proxies (IPs and CIDR blocks) decide whether X-Forwarded-For /
 * X-Real-IP are believed. Pure: no sockets; unit-tested and fuzzed. */
#ifndef WSGATE_CLIENT_ADDR_H
#define WSGATE_CLIENT_ADDR_H

#include <stdbool.h>
#include <stddef.h>

struct addr_set;

/* Compiles valid entries ("10.0.0.0/8", "::1", "192.168.1.7"); entries that
 * do not parse are skipped (the config checker refuses them first). NULL
 * only when out of memory. */
struct addr_set *addr_set_create(char *const *entries, size_t n);
void addr_set_destroy(struct addr_set *set);

/* True if `ip` (text; an IPv4-mapped IPv6 address counts as IPv4) lies in
 * the set. */
bool addr_set_contains(const struct addr_set *set, const char *ip);

/* The client address for logs: the peer itself unless the peer is trusted.
 * From a trusted peer, X-Forwarded-For is read right to left and the first
 * address that is not itself a trusted proxy is the client (so a client
 * cannot forge the hops in front of our proxies); with no usable
 * X-Forwarded-For, X-Real-IP; failing both, the peer. `xff`/`real_ip` may be
 * NULL. Writes a normalised address into out. */
void client_addr_pick(const struct addr_set *trusted, const char *peer, const char *xff,
                      const char *real_ip, char *out, size_t out_len);

#endif
