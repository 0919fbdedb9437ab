/* test_client_addr.c - unit tests for client_addr.c: CIDR membership for
 * IPv4, IPv6 and IPv4-mapped peers, and which X-Forwarded-For hop is the
 * client (never one a client could forge in front of our proxies). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "client_addr.h"

static struct addr_set *set_of(char **entries, size_t n)
{
    struct addr_set *s = addr_set_create(entries, n);
    assert_non_null(s);
    return s;
}

static void test_membership(void **state)
{
    (void)state;
    char *e[] = {"10.0.0.0/8",    "192.168.1.7", "2001:db8::/32", "::1",
                 "172.16.0.0/12", "bogus",       "1.2.3.4/33"};
    struct addr_set *s = set_of(e, 7);
    assert_true(addr_set_contains(s, "10.255.1.2"));
    assert_false(addr_set_contains(s, "11.0.0.1"));
    assert_true(addr_set_contains(s, "192.168.1.7"));
    assert_false(addr_set_contains(s, "192.168.1.8"));
    assert_true(addr_set_contains(s, "172.31.255.255"));
    assert_false(addr_set_contains(s, "172.32.0.0"));
    assert_true(addr_set_contains(s, "2001:db8:ffff::1"));
    assert_false(addr_set_contains(s, "2001:db9::1"));
    assert_true(addr_set_contains(s, "::1"));
    assert_true(addr_set_contains(s, "::ffff:10.1.2.3")); /* mapped: IPv4 rules apply */
    assert_false(addr_set_contains(s, "1.2.3.4"));        /* a /33 is no block */
    assert_false(addr_set_contains(s, "not an ip"));
    assert_false(addr_set_contains(s, NULL));
    addr_set_destroy(s);
    struct addr_set *empty = set_of(NULL, 0);
    assert_false(addr_set_contains(empty, "10.0.0.1"));
    addr_set_destroy(empty);
}

static void pick(const struct addr_set *s, const char *peer, const char *xff, const char *real,
                 const char *want)
{
    char out[64];
    client_addr_pick(s, peer, xff, real, out, sizeof(out));
    if (strcmp(out, want) != 0)
        fail_msg("peer %s xff %s real %s: got %s, want %s", peer, xff ? xff : "-",
                 real ? real : "-", out, want);
}

static void test_pick(void **state)
{
    (void)state;
    char *e[] = {"10.0.0.0/8", "::1"};
    struct addr_set *s = set_of(e, 2);
    /* An untrusted peer's headers are ignored. */
    pick(s, "203.0.113.9", "1.1.1.1", "2.2.2.2", "203.0.113.9");
    /* A trusted proxy: the nearest untrusted hop, right to left. */
    pick(s, "10.0.0.5", "198.51.100.7", NULL, "198.51.100.7");
    pick(s, "10.0.0.5", "6.6.6.6, 198.51.100.7, 10.0.0.4", NULL, "198.51.100.7");
    pick(s, "10.0.0.5", " 198.51.100.7:4711 ,10.1.1.1", NULL, "198.51.100.7");
    pick(s, "::1", "[2001:db8::5]:443", NULL, "2001:db8::5");
    pick(s, "::ffff:10.0.0.5", "198.51.100.8", NULL, "198.51.100.8");
    /* All hops ours: the leftmost. Garbage stops the walk. */
    pick(s, "10.0.0.5", "10.0.0.1, 10.0.0.2", NULL, "10.0.0.1");
    pick(s, "10.0.0.5", "evil, 10.0.0.2", NULL, "10.0.0.2");
    pick(s, "10.0.0.5", "evil", "198.51.100.9", "198.51.100.9");
    /* No XFF: X-Real-IP; neither: the peer. */
    pick(s, "10.0.0.5", NULL, "198.51.100.9", "198.51.100.9");
    pick(s, "10.0.0.5", "", "junk", "10.0.0.5");
    pick(s, "::ffff:203.0.113.1", NULL, NULL, "203.0.113.1");
    addr_set_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_membership),
        cmocka_unit_test(test_pick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
