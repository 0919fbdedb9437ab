/* fuzz_topic.c - MQTT topic names and filters (src/core/topic.c).
 *
 * Input: up to three lines: a filter F, a topic T, a second filter A.
 * Properties:
 *  - every valid topic name is a valid filter;
 *  - validity agrees with a naive reference (levels, UTF-8 by framing.c's
 *    DFA: the two UTF-8 validators of the project must agree);
 *  - topic_filter_matches agrees with a naive level-by-level matcher;
 *  - covers is reflexive, and on a plain topic name it is exactly matches:
 *    covers(A, T) == matches(A, T) (the topics "T" matches are just {T});
 *  - covers(A, F) implies matches(A, t) for every sampled t matched by F. */
#include "fuzz_util.h"

#include "framing.h"
#include "utf8.h"
#include "topic.h"

/* Naive reference: split on '/', compare level by level. */
static size_t levels(const char *s, const char **lv, size_t *ln, size_t max)
{
    size_t n = 0;
    for (;;) {
        size_t l = strcspn(s, "/");
        if (n == max)
            return max + 1;
        lv[n] = s;
        ln[n++] = l;
        if (!s[l])
            return n;
        s += l + 1;
    }
}

#define MAXL 64

static bool ref_filter_valid(const char *f)
{
    size_t len = strlen(f);
    if (len == 0 || len > TOPIC_MAX_BYTES || !utf8_is_valid((const uint8_t *)f, len))
        return false;
    const char *lv[MAXL];
    size_t ln[MAXL];
    size_t n = levels(f, lv, ln, MAXL);
    if (n > MAXL)
        return topic_filter_is_valid(f); /* too deep for the reference: trust it */
    for (size_t i = 0; i < n; i++) {
        bool wild = memchr(lv[i], '+', ln[i]) || memchr(lv[i], '#', ln[i]);
        if (wild && ln[i] != 1)
            return false;
        if (ln[i] == 1 && lv[i][0] == '#' && i + 1 != n)
            return false;
    }
    return true;
}

static bool ref_name_valid(const char *t) { return ref_filter_valid(t) && !strpbrk(t, "+#"); }

static bool ref_matches(const char *f, const char *t, bool *known)
{
    const char *fl[MAXL], *tl[MAXL];
    size_t fn_[MAXL], tn[MAXL];
    size_t nf = levels(f, fl, fn_, MAXL), nt = levels(t, tl, tn, MAXL);
    *known = nf <= MAXL && nt <= MAXL;
    if (!*known)
        return false;
    if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
        return false;
    for (size_t i = 0; i < nf; i++) {
        bool hash = fn_[i] == 1 && fl[i][0] == '#';
        bool plus = fn_[i] == 1 && fl[i][0] == '+';
        if (hash)
            return true; /* '#' is last; it matches the parent level too */
        if (i >= nt)
            return false;
        if (!plus && (fn_[i] != tn[i] || memcmp(fl[i], tl[i], fn_[i]) != 0))
            return false;
    }
    return nf == nt;
}

/* Topics that filter f matches, built by replacing its wildcards:
 * '+' -> level choice, '#' -> dropped (parent) or one/two levels. */
static const char *const plus_choices[] = {"x", "", "$y", "a"};
static const char *const hash_choices[] = {NULL, "x", "x/y", ""};

static char *sample_topic(const char *f, unsigned seed)
{
    size_t cap = strlen(f) * 4 + 16;
    char *out = malloc(cap), *o = out;
    const char *p = f;
    bool first = true;
    for (;;) {
        size_t l = strcspn(p, "/");
        const char *lvl = p;
        size_t use = l;
        if (l == 1 && p[0] == '+') {
            lvl = plus_choices[seed % 4];
            use = strlen(lvl);
            seed /= 4;
        } else if (l == 1 && p[0] == '#') {
            const char *h = hash_choices[seed % 4];
            seed /= 4;
            if (!h) {
                if (o > out && !first)
                    o--; /* drop the '/' before '#' */
                break;
            }
            lvl = h;
            use = strlen(h);
        }
        if ((size_t)(o - out) + use + 2 >= cap)
            break;
        memcpy(o, lvl, use);
        o += use;
        first = false;
        if (!p[l])
            break;
        *o++ = '/';
        p += l + 1;
    }
    *o = '\0';
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz z = fz_init(data, size);
    char *f = fz_line(&z), *t = fz_line(&z), *a = fz_line(&z);
    const char *all[3] = {f, t, a};

    for (int i = 0; i < 3; i++) {
        const char *s = all[i];
        bool fv = topic_filter_is_valid(s), nv = topic_name_is_valid(s);
        FUZZ_CHECK(!nv || fv, "valid topic name %s is no valid filter", s);
        FUZZ_CHECK(fv == ref_filter_valid(s), "filter validity of \"%s\": %d, reference %d", s, fv,
                   !fv);
        FUZZ_CHECK(nv == ref_name_valid(s), "name validity of \"%s\": %d, reference %d", s, nv,
                   !nv);
        if (fv)
            FUZZ_CHECK(topic_filter_covers(s, s), "covers(\"%s\", itself) is false", s);
    }

    bool fv = topic_filter_is_valid(f), av = topic_filter_is_valid(a);
    bool tv = topic_name_is_valid(t);
    const char *filters[2] = {f, a};
    for (int i = 0; i < 2 && tv; i++) {
        if (!topic_filter_is_valid(filters[i]))
            continue;
        bool known, want = ref_matches(filters[i], t, &known);
        bool got = topic_filter_matches(filters[i], t);
        if (known)
            FUZZ_CHECK(got == want, "matches(\"%s\", \"%s\") = %d, reference %d", filters[i], t,
                       got, want);
        bool cov = topic_filter_covers(filters[i], t);
        FUZZ_CHECK(cov == got, "covers(\"%s\", topic \"%s\") = %d but matches = %d", filters[i], t,
                   cov, got);
    }
    if (fv && av && topic_filter_covers(a, f)) {
        /* Everything f reaches, a reaches: sample topics of f. */
        for (unsigned seed = 0; seed < 16; seed++) {
            char *s = sample_topic(f, seed * 2654435761u);
            if (topic_name_is_valid(s) && topic_filter_matches(f, s))
                FUZZ_CHECK(topic_filter_matches(a, s),
                           "covers(\"%s\", \"%s\") but \"%s\" matches only the second", a, f, s);
            free(s);
        }
        if (tv && topic_filter_matches(f, t))
            FUZZ_CHECK(topic_filter_matches(a, t),
                       "covers(\"%s\", \"%s\") but \"%s\" matches only the second", a, f, t);
    }
    /* Functions must tolerate invalid arguments (documented as caller error,
     * but must not crash on a NUL or an odd string). */
    (void)topic_filter_matches(f, t);
    (void)topic_filter_covers(a, f);
    free(f);
    free(t);
    free(a);
    return 0;
}
