/* test_topic_tree.c - unit tests for the MQTT subscription tree
 * (topic_tree.c): broker-facing return values, matching semantics checked
 * against topic.c, once-per-subscriber delivery, scale, memory returned on
 * remove, and topics deep enough to break a recursive walk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "topic.h"
#include "topic_tree.h"

/* --- heap accounting, to see that removing everything gives memory back --- */

#if defined(__SANITIZE_ADDRESS__)
#define HEAP_BY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_BY_ASAN 1
#endif
#endif

#if defined(HEAP_BY_ASAN)
size_t __sanitizer_get_current_allocated_bytes(void);
#elif defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HEAP_BY_VALGRIND 1
#endif
#endif

/* Bytes in use on the heap, asked of ASan or valgrind; 0 (so that every
 * comparison passes) when neither is in charge: glibc's own counters treat
 * chunks parked in its per-thread cache as still in use. */
static size_t heap_in_use(void)
{
#if defined(HEAP_BY_ASAN)
    return __sanitizer_get_current_allocated_bytes();
#elif defined(HEAP_BY_VALGRIND)
    if (!RUNNING_ON_VALGRIND)
        return 0;
    /* Every live block is leaked, dubious, reachable or suppressed. */
    unsigned long leaked = 0, dubious = 0, reachable = 0, suppressed = 0;
    VALGRIND_DO_QUICK_LEAK_CHECK;
    VALGRIND_COUNT_LEAKS(leaked, dubious, reachable, suppressed);
    return leaked + dubious + reachable + suppressed;
#else
    return 0;
#endif
}

/* --- delivery tally: subscribers are addresses inside one array ------------ */

struct tally {
    const char *base; /* subscriber i is base + i */
    size_t n;         /* subscribers */
    unsigned *count;  /* deliveries per subscriber; owned */
    size_t calls;
};

static void tally_init(struct tally *ta, const char *base, size_t n)
{
    ta->base = base;
    ta->n = n;
    ta->count = calloc(n, sizeof(*ta->count));
    assert_non_null(ta->count);
    ta->calls = 0;
}

static void tally_reset(struct tally *ta)
{
    memset(ta->count, 0, ta->n * sizeof(*ta->count));
    ta->calls = 0;
}

static void tally_fn(void *ctx, void *sub)
{
    struct tally *ta = ctx;
    size_t i = (size_t)((const char *)sub - ta->base);
    assert_true(i < ta->n);
    ta->count[i]++;
    ta->calls++;
}

/* Matches `topic` and checks the return value against the callbacks. */
static size_t tally_match(struct topic_tree *t, struct tally *ta, const char *topic)
{
    tally_reset(ta);
    size_t r = topic_tree_match(t, topic, tally_fn, ta);
    assert_int_equal(r, ta->calls);
    return r;
}

static char subs[10000]; /* subscriber identities: &subs[i] */

#define SUB(i) ((void *)&subs[(i)])

/* --- tests ---------------------------------------------------------------- */

static void test_add_remove_returns(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_create();
    assert_non_null(t);
    assert_int_equal(topic_tree_add(t, "a/b", SUB(0), 0), 1); /* new filter */
    assert_int_equal(topic_tree_add(t, "a/b", SUB(1), 0), 0); /* second holder */
    assert_int_equal(topic_tree_add(t, "a/b", SUB(1), 0), 0); /* same holder again */
    assert_int_equal(topic_tree_add(t, "a/b", SUB(2), 1), 1); /* QoS rose */
    assert_int_equal(topic_tree_add(t, "a/b", SUB(0), 2), 1); /* QoS rose by update */
    assert_int_equal(topic_tree_add(t, "a/b", SUB(0), 1), 0); /* fell: nothing at broker */
    assert_int_equal(topic_tree_add(t, "a/b", SUB(3), 1), 0); /* not above max */
    assert_int_equal(topic_tree_filter_count(t), 1);

    assert_int_equal(topic_tree_remove(t, "a/b", SUB(9)), -1); /* never held it */
    assert_int_equal(topic_tree_remove(t, "a/c", SUB(0)), -1); /* unknown filter */
    assert_int_equal(topic_tree_remove(t, "a", SUB(0)), -1);   /* a prefix, not held */
    assert_int_equal(topic_tree_remove(t, "a/b", SUB(0)), 0);
    assert_int_equal(topic_tree_remove(t, "a/b", SUB(0)), -1); /* already gone */
    assert_int_equal(topic_tree_remove(t, "a/b", SUB(1)), 0);  /* added twice, held once */
    assert_int_equal(topic_tree_remove(t, "a/b", SUB(2)), 0);
    assert_int_equal(topic_tree_remove(t, "a/b", SUB(3)), 1); /* last holder */
    assert_int_equal(topic_tree_filter_count(t), 0);
    assert_int_equal(topic_tree_remove(t, "a/b", SUB(3)), -1);

    /* A filter through another's path: both count, each removable alone. */
    assert_int_equal(topic_tree_add(t, "a", SUB(0), 0), 1);
    assert_int_equal(topic_tree_add(t, "a/b/c", SUB(0), 0), 1);
    assert_int_equal(topic_tree_add(t, "a/+", SUB(0), 0), 1);
    assert_int_equal(topic_tree_add(t, "a/#", SUB(0), 0), 1);
    assert_int_equal(topic_tree_filter_count(t), 4);
    assert_int_equal(topic_tree_remove(t, "a/b", SUB(0)), -1);
    assert_int_equal(topic_tree_remove(t, "a", SUB(0)), 1);
    assert_int_equal(topic_tree_remove(t, "a/#", SUB(0)), 1);
    assert_int_equal(topic_tree_remove(t, "a/b/c", SUB(0)), 1);
    assert_int_equal(topic_tree_remove(t, "a/+", SUB(0)), 1);
    assert_int_equal(topic_tree_filter_count(t), 0);
    topic_tree_destroy(t);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_create();
    assert_non_null(t);
    assert_int_equal(topic_tree_add(t, "a/b#", SUB(0), 0), -1);
    assert_int_equal(topic_tree_add(t, "a/#/b", SUB(0), 0), -1);
    assert_int_equal(topic_tree_add(t, "", SUB(0), 0), -1);
    assert_int_equal(topic_tree_add(t, NULL, SUB(0), 0), -1);
    assert_int_equal(topic_tree_add(t, "a", SUB(0), 3), -1);
    assert_int_equal(topic_tree_add(t, "a", SUB(0), -1), -1);
    assert_int_equal(topic_tree_add(t, "a", NULL, 0), -1);
    assert_int_equal(topic_tree_add(NULL, "a", SUB(0), 0), -1);
    assert_int_equal(topic_tree_filter_count(t), 0);
    assert_int_equal(topic_tree_remove(t, "a/b#", SUB(0)), -1);
    assert_int_equal(topic_tree_remove(t, NULL, SUB(0)), -1);
    assert_int_equal(topic_tree_remove(NULL, "a", SUB(0)), -1);
    struct tally ta;
    tally_init(&ta, subs, 1);
    assert_int_equal(topic_tree_match(t, NULL, tally_fn, &ta), 0);
    assert_int_equal(topic_tree_match(NULL, "a", tally_fn, &ta), 0);
    assert_int_equal(topic_tree_filter_count(NULL), 0);
    free(ta.count);
    topic_tree_destroy(t);
    topic_tree_destroy(NULL);
}

static void test_match_table(void **state)
{
    (void)state;
    static const struct {
        const char *filter, *topic;
        bool match;
    } c[] = {
        /* literal levels */
        {"a/b", "a/b", true},
        {"a/b", "a/c", false},
        {"a/b", "a", false},
        {"a", "a/b", false},
        {"a/b", "a/b/c", false},
        /* '+' is one level, an empty one too */
        {"a/+", "a/b", true},
        {"a/+", "a/b/c", false},
        {"a/+", "a", false},
        {"a/+", "a/", true},
        {"+/+", "/", true},
        {"+", "/", false},
        {"/+", "/x", true},
        {"+/b", "a/b", true},
        {"+/+/c", "a/b/c", true},
        {"a/+/b", "a//b", true},
        /* '#' is any number of levels, and the parent level itself */
        {"a/#", "a", true},
        {"a/#", "a/b", true},
        {"a/#", "a/b/c", true},
        {"a/#", "a/", true},
        {"a/#", "ab", false},
        {"a/#", "b", false},
        {"a/b/#", "a", false},
        {"#", "a", true},
        {"#", "a/b/c", true},
        {"#", "/", true},
        {"+/#", "a", true},
        {"+/#", "a/b", true},
        /* empty levels are levels */
        {"a//b", "a//b", true},
        {"a//b", "a/b", false},
        {"a/b", "a//b", false},
        {"/a", "/a", true},
        {"/a", "a", false},
        {"a/", "a/", true},
        {"a/", "a", false},
        {"a", "a/", false},
        {"/", "/", true},
        {"//", "//", true},
        {"//", "/", false},
        /* MQTT 4.7.2: no leading wildcard reaches a '$' topic */
        {"$SYS/#", "$SYS/x", true},
        {"$SYS/#", "$SYS", true},
        {"$SYS/+", "$SYS/x", true},
        {"$SYS", "$SYS", true},
        {"#", "$SYS/x", false},
        {"#", "$SYS", false},
        {"+/x", "$SYS/x", false},
        {"+/#", "$SYS/x", false},
        {"+", "$SYS", false},
        {"a/+", "a/$x", true},
        {"a/#", "a/$x", true},
        {"#", "a$", true},
        {"é/+", "é/ø", true},
    };
    struct tally ta;
    tally_init(&ta, subs, 1);
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        if (topic_filter_matches(c[i].filter, c[i].topic) != c[i].match)
            fail_msg("table disagrees with topic.c: \"%s\" vs \"%s\"", c[i].filter, c[i].topic);
        struct topic_tree *t = topic_tree_create();
        assert_non_null(t);
        assert_int_equal(topic_tree_add(t, c[i].filter, SUB(0), 0), 1);
        if (tally_match(t, &ta, c[i].topic) != (c[i].match ? 1u : 0u))
            fail_msg("filter \"%s\" vs topic \"%s\": expected %s", c[i].filter, c[i].topic,
                     c[i].match ? "a match" : "no match");
        topic_tree_destroy(t);
    }
    free(ta.count);
}

static void test_dedup_across_filters(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_create();
    assert_non_null(t);
    static const char *const mine[] = {"a/+", "a/#", "#", "a/b", "+/b", "+/+", "a/b/#"};
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++)
        assert_int_equal(topic_tree_add(t, mine[i], SUB(0), 0), 1);
    assert_int_equal(topic_tree_add(t, "a/b", SUB(1), 0), 0);
    assert_int_equal(topic_tree_add(t, "a/#", SUB(1), 0), 0);
    assert_int_equal(topic_tree_add(t, "x/y", SUB(2), 0), 1);
    /* Many on "+/b": the other filters' holders are checked against them. */
    for (size_t i = 3; i < 50; i++)
        assert_int_equal(topic_tree_add(t, "+/b", SUB(i), 0), 0);
    struct tally ta;
    tally_init(&ta, subs, 50);
    assert_int_equal(tally_match(t, &ta, "a/b"), 49);
    for (size_t i = 0; i < 50; i++)
        assert_int_equal(ta.count[i], i == 2 ? 0 : 1);
    assert_int_equal(tally_match(t, &ta, "a"), 2); /* "a/#", "#" */
    assert_int_equal(ta.count[0], 1);
    assert_int_equal(ta.count[1], 1);
    assert_int_equal(tally_match(t, &ta, "x/y"), 2); /* "#", "+/+" and "x/y" */
    assert_int_equal(ta.count[0], 1);
    assert_int_equal(ta.count[2], 1);
    assert_int_equal(tally_match(t, &ta, "q"), 1); /* "#" only */
    free(ta.count);
    topic_tree_destroy(t);
}

static void test_many_subscribers_one_filter(void **state)
{
    (void)state;
    const size_t n = sizeof subs;
    struct tally ta;
    tally_init(&ta, subs, n);
    struct topic_tree *t = topic_tree_create();
    assert_non_null(t);
    size_t baseline = heap_in_use();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(topic_tree_add(t, "news/#", SUB(i), 0), i == 0 ? 1 : 0);
    /* Half of them also hold an overlapping filter. */
    for (size_t i = 0; i < n; i += 2)
        assert_int_equal(topic_tree_add(t, "news/+", SUB(i), 0), i == 0 ? 1 : 0);
    assert_int_equal(topic_tree_filter_count(t), 2);
    assert_int_equal(tally_match(t, &ta, "news/x"), n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ta.count[i], 1);
    assert_int_equal(tally_match(t, &ta, "news"), n);
    assert_int_equal(tally_match(t, &ta, "sport"), 0);

    for (size_t i = 0; i < n; i += 2)
        assert_int_equal(topic_tree_remove(t, "news/+", SUB(i)), i + 2 >= n ? 1 : 0);
    /* Removed in an order unlike the insertion order: exercises the probing. */
    for (size_t k = 0; k < n; k++) {
        size_t i = (k * 7919) % n;
        assert_int_equal(topic_tree_remove(t, "news/#", SUB(i)), k + 1 == n ? 1 : 0);
    }
    assert_int_equal(topic_tree_filter_count(t), 0);
    assert_int_equal(tally_match(t, &ta, "news/x"), 0);
    assert_int_equal(heap_in_use(), baseline);
    topic_tree_destroy(t);
    free(ta.count);
}

static void test_many_filters(void **state)
{
    (void)state;
    const size_t n = sizeof subs;
    struct tally ta;
    tally_init(&ta, subs, n);
    struct topic_tree *t = topic_tree_create();
    assert_non_null(t);
    size_t baseline = heap_in_use();
    char f[64];
    for (size_t i = 0; i < n; i++) {
        snprintf(f, sizeof f, "dev/%zu/state", i);
        assert_int_equal(topic_tree_add(t, f, SUB(i), 1), 1);
    }
    assert_int_equal(topic_tree_filter_count(t), n);
    for (size_t i = 0; i < n; i += 997) {
        snprintf(f, sizeof f, "dev/%zu/state", i);
        assert_int_equal(tally_match(t, &ta, f), 1);
        assert_int_equal(ta.count[i], 1);
    }
    assert_int_equal(tally_match(t, &ta, "dev/42/other"), 0);
    assert_int_equal(tally_match(t, &ta, "dev/10000/state"), 0);
    assert_int_equal(tally_match(t, &ta, "dev/42"), 0);

    /* One wildcard holder joins every delivery, once. */
    assert_int_equal(topic_tree_add(t, "dev/+/state", SUB(7), 0), 1);
    assert_int_equal(tally_match(t, &ta, "dev/42/state"), 2);
    assert_int_equal(ta.count[42], 1);
    assert_int_equal(ta.count[7], 1);
    assert_int_equal(tally_match(t, &ta, "dev/7/state"), 1);
    assert_int_equal(topic_tree_remove(t, "dev/+/state", SUB(7)), 1);

    for (size_t k = 0; k < n; k++) {
        size_t i = (k * 7919) % n;
        snprintf(f, sizeof f, "dev/%zu/state", i);
        assert_int_equal(topic_tree_remove(t, f, SUB(i)), 1);
    }
    assert_int_equal(topic_tree_filter_count(t), 0);
    assert_int_equal(heap_in_use(), baseline);
    topic_tree_destroy(t);
    free(ta.count);
}

/* --- randomized cross-check against topic_filter_matches ------------------ */

static uint64_t rng_state;

static uint32_t rng(void)
{
    /* xorshift64*: the same sequence on every libc */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static void random_path(char *out, size_t size, bool wild)
{
    static const char *const lv[] = {"a", "b", "", "$s", "a$", "+", "#"};
    size_t kinds = wild ? 7 : 5;
    do { /* "" is neither a topic nor a filter */
        size_t depth = 1 + rng() % 5;
        out[0] = '\0';
        for (size_t d = 0; d < depth; d++) {
            const char *l = lv[rng() % kinds];
            snprintf(out + strlen(out), size - strlen(out), "%s%s", d ? "/" : "", l);
            if (strcmp(l, "#") == 0)
                break;
        }
    } while (out[0] == '\0');
}

struct held {
    char filter[40];
    size_t sub;
    int qos;
};

#define MAX_HELD 400
#define RANDOM_SUBS 60

static struct held model[MAX_HELD];
static size_t nmodel;

static int model_max(const char *filter)
{
    int m = -1;
    for (size_t i = 0; i < nmodel; i++)
        if (strcmp(model[i].filter, filter) == 0 && model[i].qos > m)
            m = model[i].qos;
    return m;
}

static struct held *model_find(const char *filter, size_t sub)
{
    for (size_t i = 0; i < nmodel; i++)
        if (model[i].sub == sub && strcmp(model[i].filter, filter) == 0)
            return &model[i];
    return NULL;
}

static void model_add(struct topic_tree *t, const char *filter, size_t sub, int qos)
{
    int before = model_max(filter);
    struct held *h = model_find(filter, sub);
    if (!h) {
        h = &model[nmodel++];
        snprintf(h->filter, sizeof h->filter, "%s", filter);
        h->sub = sub;
    }
    h->qos = qos;
    int expect = before < 0 || model_max(filter) > before ? 1 : 0;
    if (topic_tree_add(t, filter, SUB(sub), qos) != expect)
        fail_msg("add \"%s\" sub %zu qos %d: expected %d", filter, sub, qos, expect);
}

static void model_remove(struct topic_tree *t, size_t i)
{
    struct held h = model[i];
    model[i] = model[--nmodel];
    int expect = model_max(h.filter) < 0 ? 1 : 0;
    if (topic_tree_remove(t, h.filter, SUB(h.sub)) != expect)
        fail_msg("remove \"%s\" sub %zu: expected %d", h.filter, h.sub, expect);
}

static void check_topics(struct topic_tree *t, struct tally *ta, size_t rounds)
{
    char topic[40];
    for (size_t r = 0; r < rounds; r++) {
        random_path(topic, sizeof topic, false);
        tally_match(t, ta, topic);
        for (size_t s = 0; s < RANDOM_SUBS; s++) {
            bool want = false;
            for (size_t i = 0; i < nmodel && !want; i++)
                want = model[i].sub == s && topic_filter_matches(model[i].filter, topic);
            if (ta->count[s] != (want ? 1u : 0u))
                fail_msg("topic \"%s\", sub %zu: %u deliveries, expected %d", topic, s,
                         ta->count[s], want);
        }
    }
}

struct seen {
    size_t n;
    bool ok; /* every filter reported once with its model max */
};

static void seen_fn(void *ctx, const char *filter, int max_qos)
{
    struct seen *s = ctx;
    s->n++;
    if (model_max(filter) != max_qos)
        s->ok = false;
}

static size_t model_filters(void)
{
    size_t n = 0;
    for (size_t i = 0; i < nmodel; i++) {
        bool first = true;
        for (size_t k = 0; k < i && first; k++)
            first = strcmp(model[k].filter, model[i].filter) != 0;
        n += first;
    }
    return n;
}

static void check_each_filter(struct topic_tree *t)
{
    struct seen s = {0, true};
    topic_tree_each_filter(t, seen_fn, &s);
    assert_true(s.ok);
    assert_int_equal(s.n, model_filters());
    assert_int_equal(topic_tree_filter_count(t), s.n);
}

static void test_random_cross_check(void **state)
{
    (void)state;
    rng_state = 0x5eed1234abcdULL;
    struct tally ta;
    tally_init(&ta, subs, RANDOM_SUBS);
    struct topic_tree *t = topic_tree_create();
    assert_non_null(t);
    char filter[40];
    for (int pass = 0; pass < 4; pass++) {
        while (nmodel < MAX_HELD - 1) {
            random_path(filter, sizeof filter, true);
            model_add(t, filter, rng() % RANDOM_SUBS, (int)(rng() % 3));
        }
        check_topics(t, &ta, 500);
        check_each_filter(t);
        while (nmodel > MAX_HELD / 3)
            model_remove(t, rng() % nmodel);
        check_topics(t, &ta, 500);
        check_each_filter(t);
    }
    while (nmodel > 0)
        model_remove(t, rng() % nmodel);
    assert_int_equal(topic_tree_filter_count(t), 0);
    topic_tree_destroy(t);
    free(ta.count);
}

/* --- per-filter data and max QoS ---------------------------------------------- */

static void test_filter_data_and_max_qos(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_create();
    assert_non_null(t);
    int a, b;
    assert_null(topic_tree_filter_data(t, "x/+"));
    assert_int_equal(topic_tree_max_qos(t, "x/+"), -1);
    assert_int_equal(topic_tree_add(t, "x/+", &a, 0), 1);
    void **slot = topic_tree_filter_data(t, "x/+");
    assert_non_null(slot);
    assert_null(*slot); /* starts empty */
    *slot = &b;
    assert_int_equal(topic_tree_max_qos(t, "x/+"), 0);
    assert_int_equal(topic_tree_add(t, "x/+", &b, 2), 1); /* QoS rose */
    assert_int_equal(topic_tree_max_qos(t, "x/+"), 2);
    assert_ptr_equal(*topic_tree_filter_data(t, "x/+"), &b); /* kept across adds */
    assert_null(topic_tree_filter_data(t, "x"));             /* a node on the way, not a filter */
    assert_null(topic_tree_filter_data(t, "x/y"));           /* matching is not holding */
    assert_int_equal(topic_tree_remove(t, "x/+", &b), 0);
    assert_int_equal(topic_tree_max_qos(t, "x/+"), 0); /* back down with the holder */
    assert_int_equal(topic_tree_remove(t, "x/+", &a), 1);
    assert_null(topic_tree_filter_data(t, "x/+"));
    assert_int_equal(topic_tree_max_qos(t, "x/+"), -1);
    assert_int_equal(topic_tree_add(t, "x/+", &a, 1), 1);
    assert_null(*topic_tree_filter_data(t, "x/+")); /* a new filter: a fresh slot */
    topic_tree_destroy(t);
}

/* --- each_filter ------------------------------------------------------------ */

struct expect_filter {
    const char *filter;
    int max_qos;
    unsigned seen;
};

struct expect_set {
    struct expect_filter *e;
    size_t n;
    size_t unknown;
};

static void expect_fn(void *ctx, const char *filter, int max_qos)
{
    struct expect_set *s = ctx;
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->e[i].filter, filter) == 0) {
            s->e[i].seen++;
            assert_int_equal(max_qos, s->e[i].max_qos);
            return;
        }
    }
    s->unknown++;
}

static void check_expect(struct topic_tree *t, struct expect_filter *e, size_t n)
{
    struct expect_set s = {e, n, 0};
    for (size_t i = 0; i < n; i++)
        e[i].seen = 0;
    topic_tree_each_filter(t, expect_fn, &s);
    assert_int_equal(s.unknown, 0);
    for (size_t i = 0; i < n; i++)
        if (e[i].seen != (e[i].max_qos >= 0 ? 1u : 0u))
            fail_msg("filter \"%s\" reported %u times", e[i].filter, e[i].seen);
}

static void test_each_filter(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_create();
    assert_non_null(t);
    struct expect_filter e[] = {
        {"a/b", 2, 0}, {"a/+", 0, 0},  {"a/#", 1, 0},    {"#", 0, 0},       {"/", 1, 0},
        {"//", 0, 0},  {"a//b", 2, 0}, {"$SYS/#", 0, 0}, {"a/b/c/d", 1, 0}, {"+", 2, 0},
    };
    size_t n = sizeof e / sizeof e[0];
    for (size_t i = 0; i < n; i++) {
        /* Several holders, the highest QoS last, first or in between. */
        for (int q = 0; q <= e[i].max_qos; q++)
            topic_tree_add(t, e[i].filter, SUB((i + (size_t)q) % 3), q);
        topic_tree_add(t, e[i].filter, SUB(5), 0);
    }
    check_expect(t, e, n);

    /* The max is recomputed when its holder leaves or lowers its QoS. */
    assert_int_equal(topic_tree_remove(t, "a/b", SUB(2)), 0); /* held at QoS 2 */
    e[0].max_qos = 1;
    assert_int_equal(topic_tree_add(t, "+", SUB(2), 0), 0);
    e[9].max_qos = 1;
    check_expect(t, e, n);
    for (int s = 0; s < 6; s++)
        topic_tree_remove(t, "a/#", SUB(s));
    e[2].max_qos = -1; /* gone */
    check_expect(t, e, n);
    assert_int_equal(topic_tree_filter_count(t), n - 1);
    topic_tree_destroy(t);
}

static void test_max_qos(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_create();
    assert_non_null(t);
    struct expect_filter e[] = {{"q", 0, 0}};
    assert_int_equal(topic_tree_add(t, "q", SUB(0), 0), 1);
    check_expect(t, e, 1);
    assert_int_equal(topic_tree_add(t, "q", SUB(1), 2), 1);
    assert_int_equal(topic_tree_add(t, "q", SUB(2), 1), 0);
    e[0].max_qos = 2;
    check_expect(t, e, 1);
    assert_int_equal(topic_tree_remove(t, "q", SUB(1)), 0);
    e[0].max_qos = 1;
    check_expect(t, e, 1);
    assert_int_equal(topic_tree_add(t, "q", SUB(2), 0), 0);
    e[0].max_qos = 0;
    check_expect(t, e, 1);
    assert_int_equal(topic_tree_add(t, "q", SUB(0), 1), 1); /* rose again */
    topic_tree_destroy(t);
}

/* --- depth ------------------------------------------------------------------ */

/* n '/' characters (n + 1 empty levels), then `last` as one more level's text. */
static char *slashes(size_t n, const char *last)
{
    char *s = malloc(n + strlen(last) + 1);
    assert_non_null(s);
    memset(s, '/', n);
    strcpy(s + n, last);
    return s;
}

static void test_deep_topic(void **state)
{
    (void)state;
    struct tally ta;
    tally_init(&ta, subs, 8);
    struct topic_tree *t = topic_tree_create();
    assert_non_null(t);
    /* 60,000 empty levels, and the longest topic MQTT carries. */
    char *deep = slashes(59999, ""), *longest = slashes(TOPIC_MAX_BYTES, "");
    char *deep_plus = slashes(59999, "+"); /* 59,999 empty levels, then '+' */
    size_t baseline = heap_in_use();
    assert_true(topic_filter_is_valid(deep_plus));

    assert_int_equal(tally_match(t, &ta, longest), 0);
    assert_int_equal(topic_tree_add(t, "#", SUB(0), 0), 1);
    assert_int_equal(topic_tree_add(t, "+/#", SUB(1), 0), 1);
    assert_int_equal(topic_tree_add(t, deep, SUB(2), 0), 1);
    assert_int_equal(topic_tree_add(t, deep_plus, SUB(3), 0), 1);
    assert_int_equal(topic_tree_add(t, longest, SUB(4), 0), 1);
    assert_int_equal(topic_tree_add(t, "/+/#", SUB(5), 0), 1);

    assert_int_equal(tally_match(t, &ta, deep), 5); /* all but `longest` */
    assert_int_equal(ta.count[4], 0);
    assert_int_equal(tally_match(t, &ta, longest), 4); /* "#", "+/#", itself, "/+/#" */
    assert_int_equal(ta.count[4], 1);
    assert_int_equal(tally_match(t, &ta, "x"), 2);

    struct expect_filter e[] = {{"#", 0, 0},       {"+/#", 0, 0},   {deep, 0, 0},
                                {deep_plus, 0, 0}, {longest, 0, 0}, {"/+/#", 0, 0}};
    check_expect(t, e, sizeof e / sizeof e[0]);

    assert_int_equal(topic_tree_remove(t, longest, SUB(4)), 1);
    assert_int_equal(topic_tree_remove(t, deep, SUB(2)), 1);
    assert_int_equal(tally_match(t, &ta, deep), 4);
    assert_int_equal(topic_tree_remove(t, deep_plus, SUB(3)), 1);
    assert_int_equal(topic_tree_remove(t, "#", SUB(0)), 1);
    assert_int_equal(topic_tree_remove(t, "+/#", SUB(1)), 1);
    assert_int_equal(topic_tree_remove(t, "/+/#", SUB(5)), 1);
    assert_int_equal(heap_in_use(), baseline);

    /* Teardown of a deep tree that was never pruned. */
    assert_int_equal(topic_tree_add(t, longest, SUB(4), 0), 1);
    assert_int_equal(topic_tree_add(t, deep_plus, SUB(3), 0), 1);
    topic_tree_destroy(t);
    free(deep);
    free(deep_plus);
    free(longest);
    free(ta.count);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_remove_returns),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_max_qos),
        cmocka_unit_test(test_match_table),
        cmocka_unit_test(test_dedup_across_filters),
        cmocka_unit_test(test_many_subscribers_one_filter),
        cmocka_unit_test(test_many_filters),
        cmocka_unit_test(test_random_cross_check),
        cmocka_unit_test(test_each_filter),
        cmocka_unit_test(test_filter_data_and_max_qos),
        cmocka_unit_test(test_deep_topic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
