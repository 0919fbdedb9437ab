/* fuzz_topic_tree.c - the subscription trie (src/core/topic_tree.c), driven by a
 * byte script of operations and compared after every step with a naive
 * model: a list of (filter, subscriber, qos) matched with
 * topic_filter_matches.
 *
 * Script: each operation is one byte (op in the low 3 bits, subscriber in
 * the high bits) followed by its arguments: a qos byte (add), and a
 * filter/topic built from a small vocabulary of levels ("a", "b", "+", "#",
 * "$SYS", "" ...) by one length byte and one byte per level, or, for op 7,
 * a literal string up to '\n' (invalid filters, odd bytes).
 * Properties: return values of add/remove (1 = changes at the broker), the
 * set of subscribers a topic reaches (each once), filter count, each
 * filter's max QoS, the filter enumeration, and filter_data slots. */
#include "fuzz_util.h"

#include "topic.h"
#include "topic_tree.h"

#define NSUBS 8
#define MAXHOLD 256

struct hold {
    char *filter;
    int sub;
    int qos;
};

struct model {
    struct hold h[MAXHOLD];
    size_t n;
};

static int subs[NSUBS]; /* the subscribers' identities are these addresses */

static int sub_index(void *p) { return (int)((int *)p - subs); }

static const char *const vocab[] = {"a", "b", "+", "#", "$SYS", "", "c", "+", "a", "dev", "#", "x"};
#define NVOCAB (sizeof vocab / sizeof vocab[0])

/* A filter (wild) or topic (!wild) from the vocabulary. */
static char *build(struct fz *z, bool wild)
{
    size_t nlev = 1 + fz_byte(z) % 5;
    char *s = calloc(1, 64);
    for (size_t i = 0; i < nlev; i++) {
        const char *lv = vocab[fz_byte(z) % NVOCAB];
        if (!wild && (lv[0] == '+' || lv[0] == '#'))
            lv = "a";
        if (i)
            strcat(s, "/");
        strcat(s, lv);
    }
    return s;
}

static struct hold *model_find(struct model *m, const char *f, int sub)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->h[i].sub == sub && strcmp(m->h[i].filter, f) == 0)
            return &m->h[i];
    return NULL;
}

static int model_max_qos(const struct model *m, const char *f)
{
    int q = -1;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->h[i].filter, f) == 0 && m->h[i].qos > q)
            q = m->h[i].qos;
    return q;
}

static size_t model_filters(const struct model *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++) {
        bool first = true;
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->h[j].filter, m->h[i].filter) == 0)
                first = false;
        n += first;
    }
    return n;
}

struct seen {
    unsigned count[NSUBS];
    size_t calls;
};

static void deliver(void *ctx, void *sub)
{
    struct seen *s = ctx;
    int i = sub_index(sub);
    FUZZ_CHECK(i >= 0 && i < NSUBS, "delivered to an unknown subscriber %p", sub);
    s->count[i]++;
    s->calls++;
}

struct each {
    const struct model *m;
    size_t n;
};

static void each_filter(void *ctx, const char *filter, int max_qos)
{
    struct each *e = ctx;
    int want = model_max_qos(e->m, filter);
    FUZZ_CHECK(want >= 0, "enumerated filter \"%s\" that nobody holds", filter);
    FUZZ_CHECK(want == max_qos, "enumerated \"%s\" with qos %d, model %d", filter, max_qos, want);
    e->n++;
}

static void check_match(struct topic_tree *t, const struct model *m, const char *topic)
{
    struct seen s = {0};
    size_t calls = topic_tree_match(t, topic, deliver, &s);
    FUZZ_CHECK(calls == s.calls, "match returned %zu but called %zu times", calls, s.calls);
    bool valid = topic_name_is_valid(topic);
    for (int i = 0; i < NSUBS; i++) {
        FUZZ_CHECK(s.count[i] <= 1, "subscriber %d got topic \"%s\" %u times", i, topic,
                   s.count[i]);
        if (!valid)
            continue;
        bool want = false;
        for (size_t k = 0; k < m->n && !want; k++)
            want = m->h[k].sub == i && topic_filter_matches(m->h[k].filter, topic);
        FUZZ_CHECK(want == (s.count[i] == 1), "topic \"%s\": subscriber %d delivered %u, model %d",
                   topic, i, s.count[i], want);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz z = fz_init(data, size);
    struct topic_tree *t = topic_tree_create();
    struct model m = {0};
    FUZZ_CHECK(t, "create failed");
    unsigned steps = 0;

    while (z.n > 0 && steps++ < 2000) {
        uint8_t op = fz_byte(&z);
        int si = (op >> 3) % NSUBS;
        void *sub = &subs[si];
        switch (op & 7) {
        case 0:
        case 1:
        case 2: {                      /* add */
            int qos = fz_byte(&z) % 4; /* 3: invalid */
            char *f = build(&z, true);
            bool valid = topic_filter_is_valid(f);
            int want;
            struct hold *h = model_find(&m, f, si);
            int before = model_max_qos(&m, f);
            if (!valid || qos > 2) {
                want = -1;
            } else if (h) {
                int old = h->qos;
                h->qos = qos;
                want = model_max_qos(&m, f) > before ? 1 : 0;
                (void)old;
            } else if (m.n < MAXHOLD) {
                m.h[m.n++] = (struct hold){strdup(f), si, qos};
                want = before < 0 || qos > before ? 1 : 0;
            } else {
                free(f);
                continue;
            }
            int got = topic_tree_add(t, f, sub, qos);
            FUZZ_CHECK(got == want, "add(\"%s\", sub %d, qos %d) = %d, model %d", f, si, qos, got,
                       want);
            if (got == 1 && before < 0) {
                void **slot = topic_tree_filter_data(t, f);
                FUZZ_CHECK(slot && *slot == NULL, "new filter \"%s\" has data", f);
                *slot = &subs[0]; /* any marker: the tree never reads it */
            }
            free(f);
            break;
        }
        case 3:
        case 4: { /* remove */
            char *f = build(&z, true);
            struct hold *h = model_find(&m, f, si);
            int want = -1;
            if (h && topic_filter_is_valid(f)) {
                free(h->filter);
                *h = m.h[--m.n];
                want = model_max_qos(&m, f) < 0 ? 1 : 0;
            }
            if (want == 1) {
                void **slot = topic_tree_filter_data(t, f);
                FUZZ_CHECK(slot && *slot == &subs[0], "filter \"%s\" lost its data", f);
            }
            int got = topic_tree_remove(t, f, sub);
            FUZZ_CHECK(got == want, "remove(\"%s\", sub %d) = %d, model %d", f, si, got, want);
            if (want == 1)
                FUZZ_CHECK(topic_tree_filter_data(t, f) == NULL, "removed filter still has a slot");
            free(f);
            break;
        }
        case 5:
        case 6: { /* match a vocabulary topic */
            char *topic = build(&z, false);
            check_match(t, &m, topic);
            free(topic);
            break;
        }
        case 7: { /* literal string: add/remove/match with odd bytes */
            char *s = fz_line(&z);
            int which = si % 3;
            if (which == 0) {
                check_match(t, &m, s);
            } else if (which == 1 && !topic_filter_is_valid(s)) {
                FUZZ_CHECK(topic_tree_add(t, s, sub, 0) == -1, "invalid filter \"%s\" added", s);
            } else if (which == 2 && !topic_filter_is_valid(s)) {
                FUZZ_CHECK(topic_tree_remove(t, s, sub) == -1, "invalid filter \"%s\" removed", s);
            }
            (void)topic_tree_max_qos(t, s);
            (void)topic_tree_filter_data(t, s);
            free(s);
            break;
        }
        }
        FUZZ_CHECK(topic_tree_filter_count(t) == model_filters(&m), "filter count %zu, model %zu",
                   topic_tree_filter_count(t), model_filters(&m));
    }

    /* Final consistency: every held filter enumerated with its max QoS. */
    struct each e = {&m, 0};
    topic_tree_each_filter(t, each_filter, &e);
    FUZZ_CHECK(e.n == model_filters(&m), "enumerated %zu filters, model %zu", e.n,
               model_filters(&m));
    for (size_t i = 0; i < m.n; i++)
        FUZZ_CHECK(topic_tree_max_qos(t, m.h[i].filter) == model_max_qos(&m, m.h[i].filter),
                   "max qos of \"%s\"", m.h[i].filter);
    /* Remove half, then destroy with the rest still held (teardown path). */
    for (size_t i = 0; i < m.n; i += 2)
        (void)topic_tree_remove(t, m.h[i].filter, &subs[m.h[i].sub]);
    topic_tree_destroy(t);
    for (size_t i = 0; i < m.n; i++)
        free(m.h[i].filter);
    return 0;
}
