/* topic_tree.c - the gateway's MQTT subscriptions as a trie over topic levels;
 * see topic_tree.h. A held filter ends at a node that keeps its subscribers,
 * so an arriving topic is matched by walking its levels, never by scanning
 * every filter or client. Everything is iterative: a topic may have 65,536
 * levels. Loop-thread only. */
#include "topic_tree.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "topic.h"

#define MIN_SLOTS 8    /* smallest hash table */
#define MIN_SCRATCH 16 /* smallest match scratch buffer, in elements */

/* One subscriber of one filter. */
struct holder {
    void *sub; /* the caller's; NULL marks a free slot */
    int qos;
};

/* A filter somebody holds. Created by the first add, freed by the last
 * remove; hangs off the node where the filter ends. */
struct filter {
    struct filter *prev, *next; /* the tree's list of held filters; not owned */
    struct holder *slots;       /* owned; open addressing, linear probing */
    size_t cap;                 /* power of two, or 0 */
    size_t count;
    size_t by_qos[3]; /* holders at each QoS: the max after a remove in O(1) */
    void *data;       /* the caller's (topic_tree_filter_data); not owned */
    char text[];      /* the filter as subscribed, for resubscribe */
};

/* Literal children of a node, keyed by level: a hash table, because one
 * level ("dev/+/state") may have 10,000 siblings. */
struct child_map {
    struct node **slots; /* owned, with the nodes; linear probing */
    size_t cap;          /* power of two, or 0 */
    size_t count;
};

/* One level of one or more held filters. Created by the first add whose
 * filter passes through it; freed when the last such filter is removed. */
struct node {
    struct node *parent;       /* NULL at the root; not owned */
    struct node *plus, *hash;  /* owned: the '+' and '#' children */
    struct child_map children; /* the literal levels below */
    struct filter *filter;     /* owned; NULL unless a held filter ends here */
    uint64_t key_hash;         /* of `level`, kept for rehashing */
    size_t len;
    char level[]; /* `len` bytes, not NUL-terminated; may be empty */
};

struct topic_tree {
    struct node *root;           /* owned; the empty path, never a filter */
    struct filter *first, *last; /* held filters, oldest first; nodes own them */
    size_t nodes;                /* root included */
    size_t filters;
    size_t holdings; /* (subscriber, filter) pairs */
    uint64_t seed;   /* of level hashes */
    /* Match scratch, grown by add and trimmed by remove, so that a match
     * never allocates and cannot fail: */
    struct node **frontier; /* owned; two halves of frontier_cap, >= nodes */
    size_t frontier_cap;
    struct filter **hits; /* owned; >= filters */
    size_t hits_cap;
    void **subs; /* owned; >= holdings */
    size_t subs_cap;
};

/* --- hashing -------------------------------------------------------------- */

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

/* FNV-1a, seeded per tree so colliding level names are harder to prepare. */
static uint64_t level_hash(uint64_t seed, const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return mix(h);
}

/* Pointers are aligned: their low bits alone would crowd a few slots. */
static uint64_t ptr_hash(const void *p) { return mix((uint64_t)(uintptr_t)p); }

static bool is_level(const char *s, size_t len, char c) { return len == 1 && s[0] == c; }

/* Over three quarters full: grow before inserting. */
static bool too_full(size_t count, size_t cap) { return (count + 1) * 4 > cap * 3; }

/* Under an eighth full: a quarter of the size still keeps half free. */
static bool too_empty(size_t count, size_t cap) { return cap > MIN_SLOTS && count * 8 < cap; }

/* Distance an entry at slot j has been pushed from its home slot. */
static size_t displacement(size_t j, uint64_t hash, size_t mask) { return (j - hash) & mask; }

/* --- literal children ----------------------------------------------------- */

static struct node *map_find(const struct child_map *m, uint64_t h, const char *level, size_t len)
{
    if (m->count == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct node *n = m->slots[i];
        if (!n)
            return NULL;
        if (n->key_hash == h && n->len == len && memcmp(n->level, level, len) == 0)
            return n;
    }
}

static void map_place(struct node **slots, size_t cap, struct node *n)
{
    size_t i = n->key_hash & (cap - 1);
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = n;
}

static int map_resize(struct child_map *m, size_t cap)
{
    struct node **slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i])
            map_place(slots, cap, m->slots[i]);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

static int map_insert(struct child_map *m, struct node *n)
{
    if (too_full(m->count, m->cap) && map_resize(m, m->cap ? m->cap * 2 : MIN_SLOTS) < 0)
        return -1;
    map_place(m->slots, m->cap, n);
    m->count++;
    return 0;
}

/* Backward-shift deletion: no tombstones, so lookups stay short after churn. */
static void map_remove(struct child_map *m, const struct node *n)
{
    size_t mask = m->cap - 1, hole = n->key_hash & mask;
    while (m->slots[hole] != n)
        hole = (hole + 1) & mask;
    m->slots[hole] = NULL;
    for (size_t j = (hole + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
        if (displacement(j, m->slots[j]->key_hash, mask) >= ((j - hole) & mask)) {
            m->slots[hole] = m->slots[j];
            m->slots[j] = NULL;
            hole = j;
        }
    }
    if (--m->count == 0) {
        free(m->slots);
        m->slots = NULL;
        m->cap = 0;
    } else if (too_empty(m->count, m->cap)) {
        (void)map_resize(m, m->cap / 4); /* if it fails, the bigger table still works */
    }
}

/* --- holders of one filter ------------------------------------------------ */

static struct holder *holder_find(const struct filter *f, const void *sub)
{
    if (f->count == 0)
        return NULL;
    size_t mask = f->cap - 1;
    for (size_t i = ptr_hash(sub) & mask; f->slots[i].sub; i = (i + 1) & mask)
        if (f->slots[i].sub == sub)
            return &f->slots[i];
    return NULL;
}

static void holder_place(struct holder *slots, size_t cap, struct holder h)
{
    size_t i = ptr_hash(h.sub) & (cap - 1);
    while (slots[i].sub)
        i = (i + 1) & (cap - 1);
    slots[i] = h;
}

static int holder_resize(struct filter *f, size_t cap)
{
    struct holder *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < f->cap; i++)
        if (f->slots[i].sub)
            holder_place(slots, cap, f->slots[i]);
    free(f->slots);
    f->slots = slots;
    f->cap = cap;
    return 0;
}

static int holder_insert(struct filter *f, void *sub, int qos)
{
    if (too_full(f->count, f->cap) && holder_resize(f, f->cap ? f->cap * 2 : MIN_SLOTS) < 0)
        return -1;
    holder_place(f->slots, f->cap, (struct holder){.sub = sub, .qos = qos});
    f->count++;
    f->by_qos[qos]++;
    return 0;
}

static void holder_remove(struct filter *f, struct holder *h)
{
    size_t mask = f->cap - 1, hole = (size_t)(h - f->slots);
    f->by_qos[h->qos]--;
    h->sub = NULL;
    for (size_t j = (hole + 1) & mask; f->slots[j].sub; j = (j + 1) & mask) {
        if (displacement(j, ptr_hash(f->slots[j].sub), mask) >= ((j - hole) & mask)) {
            f->slots[hole] = f->slots[j];
            f->slots[j].sub = NULL;
            hole = j;
        }
    }
    f->count--;
    if (too_empty(f->count, f->cap))
        (void)holder_resize(f, f->cap / 4); /* if it fails, the bigger table still works */
}

static int max_qos(const struct filter *f) { return f->by_qos[2] ? 2 : f->by_qos[1] ? 1 : 0; }

/* --- match scratch -------------------------------------------------------- */

static int scratch_grow(void **buf, size_t *cap, size_t need, size_t elem_size)
{
    if (need <= *cap)
        return 0;
    size_t want = *cap * 2 > need ? *cap * 2 : need;
    if (want < MIN_SCRATCH)
        want = MIN_SCRATCH;
    if (want > SIZE_MAX / elem_size)
        return -1;
    void *p = realloc(*buf, want * elem_size);
    if (!p)
        return -1;
    *buf = p;
    *cap = want;
    return 0;
}

/* Gives memory back once the tree has shrunk to a quarter of the buffer. */
static void scratch_trim(void **buf, size_t *cap, size_t need, size_t elem_size)
{
    if (*cap <= MIN_SCRATCH || need > *cap / 4)
        return;
    size_t want = need * 2 > MIN_SCRATCH ? need * 2 : MIN_SCRATCH;
    void *p = realloc(*buf, want * elem_size);
    if (p) {
        *buf = p;
        *cap = want;
    }
}

static int grow_frontier(struct topic_tree *t, size_t need)
{
    return scratch_grow((void **)&t->frontier, &t->frontier_cap, need, 2 * sizeof(struct node *));
}

static int grow_hits(struct topic_tree *t, size_t need)
{
    return scratch_grow((void **)&t->hits, &t->hits_cap, need, sizeof(struct filter *));
}

static int grow_subs(struct topic_tree *t, size_t need)
{
    return scratch_grow((void **)&t->subs, &t->subs_cap, need, sizeof(void *));
}

static void trim_scratch(struct topic_tree *t)
{
    scratch_trim((void **)&t->frontier, &t->frontier_cap, t->nodes, 2 * sizeof(struct node *));
    scratch_trim((void **)&t->hits, &t->hits_cap, t->filters, sizeof(struct filter *));
    scratch_trim((void **)&t->subs, &t->subs_cap, t->holdings, sizeof(void *));
}

/* --- nodes and filters ---------------------------------------------------- */

static struct node *child_get(const struct topic_tree *t, const struct node *n, const char *level,
                              size_t len)
{
    if (is_level(level, len, '+'))
        return n->plus;
    if (is_level(level, len, '#'))
        return n->hash;
    return map_find(&n->children, level_hash(t->seed, level, len), level, len);
}

static struct node *child_add(struct topic_tree *t, struct node *parent, const char *level,
                              size_t len)
{
    if (grow_frontier(t, t->nodes + 1) < 0)
        return NULL;
    struct node *c = calloc(1, sizeof(*c) + len);
    if (!c)
        return NULL;
    c->parent = parent;
    c->key_hash = level_hash(t->seed, level, len);
    c->len = len;
    memcpy(c->level, level, len);
    if (is_level(level, len, '+')) {
        parent->plus = c;
    } else if (is_level(level, len, '#')) {
        parent->hash = c;
    } else if (map_insert(&parent->children, c) < 0) {
        free(c);
        return NULL;
    }
    t->nodes++;
    return c;
}

static bool node_is_unused(const struct node *n)
{
    return !n->filter && !n->plus && !n->hash && n->children.count == 0;
}

/* Frees `n` and its ancestors up to the first one still on some filter's
 * path, so memory returns when the last filter through them goes. */
static void prune(struct topic_tree *t, struct node *n)
{
    while (n != t->root && node_is_unused(n)) {
        struct node *p = n->parent;
        if (p->plus == n)
            p->plus = NULL;
        else if (p->hash == n)
            p->hash = NULL;
        else
            map_remove(&p->children, n);
        free(n->children.slots);
        free(n);
        t->nodes--;
        n = p;
    }
}

/* The node where `filter` ends, or NULL if no held filter passes there. */
static struct node *path_find(const struct topic_tree *t, const char *filter)
{
    struct node *n = t->root;
    const char *p = filter;
    for (;;) {
        size_t len = strcspn(p, "/");
        n = child_get(t, n, p, len);
        if (!n || p[len] == '\0')
            return n;
        p += len + 1;
    }
}

/* Like path_find, creating missing nodes; NULL (and nothing left behind)
 * if memory runs out. */
static struct node *path_create(struct topic_tree *t, const char *filter)
{
    struct node *n = t->root;
    const char *p = filter;
    for (;;) {
        size_t len = strcspn(p, "/");
        struct node *c = child_get(t, n, p, len);
        if (!c && !(c = child_add(t, n, p, len))) {
            prune(t, n);
            return NULL;
        }
        n = c;
        if (p[len] == '\0')
            return n;
        p += len + 1;
    }
}

static struct filter *filter_new(struct topic_tree *t, struct node *n, const char *text)
{
    size_t len = strlen(text);
    if (grow_hits(t, t->filters + 1) < 0)
        return NULL;
    struct filter *f = calloc(1, sizeof(*f) + len + 1);
    if (!f)
        return NULL;
    memcpy(f->text, text, len + 1);
    f->prev = t->last;
    if (t->last)
        t->last->next = f;
    else
        t->first = f;
    t->last = f;
    t->filters++;
    n->filter = f;
    return f;
}

static void filter_drop(struct topic_tree *t, struct node *n)
{
    struct filter *f = n->filter;
    if (f->prev)
        f->prev->next = f->next;
    else
        t->first = f->next;
    if (f->next)
        f->next->prev = f->prev;
    else
        t->last = f->prev;
    t->filters--;
    free(f->slots);
    free(f);
    n->filter = NULL;
}

/* --- lifetime ------------------------------------------------------------- */

struct topic_tree *topic_tree_create(void)
{
    struct topic_tree *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->seed = mix((uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ULL);
    t->root = calloc(1, sizeof(*t->root));
    t->nodes = 1;
    if (!t->root || grow_frontier(t, 1) < 0 || grow_hits(t, 1) < 0 || grow_subs(t, 1) < 0) {
        topic_tree_destroy(t);
        return NULL;
    }
    return t;
}

/* Detaches and returns some child of `n`, or NULL when none is left. Only
 * for teardown: the literal table is consumed from the top by lowering its
 * cap, so every slot is looked at once. */
static struct node *child_take(struct node *n)
{
    struct node *c;
    if ((c = n->plus)) {
        n->plus = NULL;
        return c;
    }
    if ((c = n->hash)) {
        n->hash = NULL;
        return c;
    }
    while (n->children.cap > 0)
        if ((c = n->children.slots[--n->children.cap]))
            return c;
    return NULL;
}

void topic_tree_destroy(struct topic_tree *t)
{
    if (!t)
        return;
    /* Depth-first through parent links: no stack, however deep the trie. */
    struct node *n = t->root;
    while (n) {
        struct node *c = child_take(n);
        if (c) {
            n = c;
            continue;
        }
        struct node *p = n->parent;
        if (n->filter) {
            free(n->filter->slots);
            free(n->filter);
        }
        free(n->children.slots);
        free(n);
        n = p;
    }
    free(t->frontier);
    free(t->hits);
    free(t->subs);
    free(t);
}

/* --- subscribe / unsubscribe ---------------------------------------------- */

/* Undoes a half-done add that created the filter. */
static void add_failed(struct topic_tree *t, struct node *n, bool created)
{
    if (created) {
        filter_drop(t, n);
        prune(t, n);
        trim_scratch(t);
    }
}

int topic_tree_add(struct topic_tree *t, const char *filter, void *sub, int qos)
{
    /* NULL marks a free holder slot, so it cannot be a subscriber. */
    if (!t || !sub || qos < 0 || qos > 2 || !topic_filter_is_valid(filter))
        return -1;
    struct node *n = path_create(t, filter);
    if (!n)
        return -1;
    bool created = !n->filter;
    if (created && !filter_new(t, n, filter)) {
        prune(t, n);
        return -1;
    }
    struct filter *f = n->filter;
    int before = max_qos(f);
    struct holder *h = holder_find(f, sub);
    if (h) {
        f->by_qos[h->qos]--;
        f->by_qos[qos]++;
        h->qos = qos;
        /* A lower max needs nothing at the broker: extra QoS is harmless. */
        return max_qos(f) > before ? 1 : 0;
    }
    if (grow_subs(t, t->holdings + 1) < 0 || holder_insert(f, sub, qos) < 0) {
        add_failed(t, n, created);
        return -1;
    }
    t->holdings++;
    return created || max_qos(f) > before ? 1 : 0;
}

int topic_tree_remove(struct topic_tree *t, const char *filter, void *sub)
{
    if (!t || !sub || !topic_filter_is_valid(filter))
        return -1;
    struct node *n = path_find(t, filter);
    struct holder *h = n && n->filter ? holder_find(n->filter, sub) : NULL;
    if (!h)
        return -1;
    holder_remove(n->filter, h);
    t->holdings--;
    int gone = n->filter->count == 0;
    if (gone) {
        filter_drop(t, n);
        prune(t, n);
    }
    trim_scratch(t);
    return gone;
}

/* --- matching ------------------------------------------------------------- */

static void hit(struct topic_tree *t, size_t *nhits, const struct node *n)
{
    if (n && n->filter)
        t->hits[(*nhits)++] = n->filter;
}

/* One topic level: from each node reached so far, record the '#' child as
 * matched and step to the literal and '+' children. Returns how many nodes
 * were reached; each is distinct, so at most t->nodes. */
static size_t step_level(struct topic_tree *t, size_t ncur, const char *level, size_t len,
                         bool wild_ok, size_t *nhits)
{
    struct node **cur = t->frontier, **next = t->frontier + t->frontier_cap;
    uint64_t h = level_hash(t->seed, level, len);
    size_t nnext = 0;
    for (size_t i = 0; i < ncur; i++) {
        const struct node *n = cur[i];
        struct node *c = map_find(&n->children, h, level, len);
        if (c)
            next[nnext++] = c;
        if (!wild_ok)
            continue;
        hit(t, nhits, n->hash);
        if (n->plus)
            next[nnext++] = n->plus;
    }
    memcpy(cur, next, nnext * sizeof(*cur));
    return nnext;
}

/* Fills t->hits with every held filter matching `topic`, each once: a node
 * sits at one depth, so it is reached at one level only. */
static size_t collect_hits(struct topic_tree *t, const char *topic)
{
    size_t ncur = 1, nhits = 0;
    t->frontier[0] = t->root;
    /* MQTT 4.7.2: a leading wildcard does not reach "$SYS/..." and friends. */
    bool wild_ok = topic[0] != '$';
    const char *p = topic;
    for (;;) {
        size_t len = strcspn(p, "/");
        ncur = step_level(t, ncur, p, len, wild_ok, &nhits);
        if (ncur == 0 || p[len] == '\0')
            break;
        p += len + 1;
        wild_ok = true;
    }
    for (size_t i = 0; i < ncur; i++) {
        hit(t, &nhits, t->frontier[i]);
        /* "a/#" matches "a" too: '#' includes its parent level. */
        hit(t, &nhits, t->frontier[i]->hash);
    }
    return nhits;
}

static int ptr_cmp(const void *a, const void *b)
{
    const void *const *pa = a, *const *pb = b;
    uintptr_t x = (uintptr_t)*pa, y = (uintptr_t)*pb;
    return (x > y) - (x < y);
}

static size_t deliver_all(const struct filter *f, topic_tree_deliver_fn fn, void *ctx)
{
    for (size_t i = 0; i < f->cap; i++)
        if (f->slots[i].sub)
            fn(ctx, f->slots[i].sub);
    return f->count;
}

/* Each subscriber once: the largest matching filter's holders are distinct
 * already and go out as they are; only the rest, not among them, are sorted
 * to skip repeats (10,000 on "a/#" and three on "a/b" sorts three). */
static size_t deliver_hits(struct topic_tree *t, size_t nhits, topic_tree_deliver_fn fn, void *ctx)
{
    if (nhits == 0)
        return 0;
    size_t big = 0;
    for (size_t i = 1; i < nhits; i++)
        if (t->hits[i]->count > t->hits[big]->count)
            big = i;
    const struct filter *b = t->hits[big];
    size_t n = 0;
    for (size_t i = 0; i < nhits; i++) {
        const struct filter *f = t->hits[i];
        if (i == big)
            continue;
        for (size_t k = 0; k < f->cap; k++)
            if (f->slots[k].sub && !holder_find(b, f->slots[k].sub))
                t->subs[n++] = f->slots[k].sub;
    }
    size_t calls = deliver_all(b, fn, ctx);
    qsort(t->subs, n, sizeof(*t->subs), ptr_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && t->subs[i] == t->subs[i - 1])
            continue;
        fn(ctx, t->subs[i]);
        calls++;
    }
    return calls;
}

size_t topic_tree_match(struct topic_tree *t, const char *topic, topic_tree_deliver_fn fn,
                        void *ctx)
{
    if (!t || !topic || !fn)
        return 0;
    return deliver_hits(t, collect_hits(t, topic), fn, ctx);
}

/* --- enumeration ---------------------------------------------------------- */

void topic_tree_each_filter(const struct topic_tree *t, topic_tree_filter_fn fn, void *ctx)
{
    if (!t || !fn)
        return;
    for (const struct filter *f = t->first; f; f = f->next)
        fn(ctx, f->text, max_qos(f));
}

size_t topic_tree_filter_count(const struct topic_tree *t) { return t ? t->filters : 0; }

int topic_tree_max_qos(const struct topic_tree *t, const char *filter)
{
    struct node *n = t && filter ? path_find(t, filter) : NULL;
    return n && n->filter ? max_qos(n->filter) : -1;
}

void **topic_tree_filter_data(struct topic_tree *t, const char *filter)
{
    if (!t || !filter)
        return NULL;
    struct node *n = path_find(t, filter);
    return n && n->filter ? &n->filter->data : NULL;
}
