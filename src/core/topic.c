/* topic.c - MQTT topic name / filter syntax and filter matching (pure).
 * Levels are the '/'-separated parts; empty levels are legal ("a//b", "/x").
 * Callers check syntax with the *_is_valid functions before matching. */
#include "topic.h"

#include "utf8.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* MQTT requires well-formed UTF-8 (no overlongs, no surrogates); a broker
 * drops the whole session on a bad topic, so a percent-decoded capture that
 * is not UTF-8 must be caught here, not by the broker (utf8_is_valid). */
static bool check_common(const char *s, size_t *len)
{
    if (!s)
        return false;
    *len = strlen(s);
    return *len > 0 && *len <= TOPIC_MAX_BYTES && utf8_is_valid(s, *len);
}

bool topic_filter_is_valid(const char *f)
{
    size_t len;
    if (!check_common(f, &len))
        return false;
    const char *level = f;
    for (;;) {
        size_t n = strcspn(level, "/");
        bool last = level[n] == '\0';
        if (memchr(level, '+', n) || memchr(level, '#', n)) {
            if (n != 1)
                return false; /* "a+" or "#b": a wildcard must be the whole level */
            if (level[0] == '#' && !last)
                return false; /* "#" only at the end */
        }
        if (last)
            return true;
        level += n + 1;
    }
}

bool topic_name_is_valid(const char *t)
{
    size_t len;
    return check_common(t, &len) && strpbrk(t, "+#") == NULL;
}

static bool is_wild(const char *level, size_t n, char w) { return n == 1 && level[0] == w; }

bool topic_filter_matches(const char *filter, const char *topic)
{
    if (!filter || !topic)
        return false;
    /* $SYS and friends are the broker's: only a filter naming them matches. */
    if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#'))
        return false;
    const char *f = filter, *t = topic;
    for (;;) {
        size_t fl = strcspn(f, "/"), tl = strcspn(t, "/");
        if (is_wild(f, fl, '#'))
            return true;
        if (!is_wild(f, fl, '+') && (fl != tl || memcmp(f, t, fl) != 0))
            return false;
        bool f_more = f[fl] == '/', t_more = t[tl] == '/';
        if (!t_more)
            /* "a/#" matches "a" too: '#' includes the parent level. */
            return !f_more || strcmp(f + fl, "/#") == 0;
        if (!f_more)
            return false;
        f += fl + 1;
        t += tl + 1;
    }
}

bool topic_filter_covers(const char *allow, const char *filter)
{
    if (!allow || !filter)
        return false;
    /* A leading wildcard in `allow` never reaches '$' topics. */
    if (filter[0] == '$' && (allow[0] == '+' || allow[0] == '#'))
        return false;
    const char *a = allow, *f = filter;
    for (;;) {
        size_t al = strcspn(a, "/"), fl = strcspn(f, "/");
        if (is_wild(a, al, '#'))
            return true;
        if (is_wild(f, fl, '#'))
            return false; /* the filter goes deeper than `allow` can */
        if (!is_wild(a, al, '+') && (is_wild(f, fl, '+') || al != fl || memcmp(a, f, al) != 0))
            return false;
        bool a_more = a[al] == '/', f_more = f[fl] == '/';
        if (!f_more)
            return !a_more || strcmp(a + al, "/#") == 0;
        if (!a_more)
            return false;
        a += al + 1;
        f += fl + 1;
    }
}
