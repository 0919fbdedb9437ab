/* json_check.c - the JSON path, the capped error list and the host/port
 * syntax shared by wsgate's JSON file checkers (config.c, target_map.c).
 * What a file must hold is left to them. */
#define _GNU_SOURCE /* vasprintf, strndup */
#include "json_check.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define MAX_ERRORS 100 /* listed per check; past that they are only counted */

/* ------------------------------------------------------------------ memory */

/* The innermost jcheck_run() of this thread, or NULL. */
static _Thread_local jmp_buf *recovery;

int jcheck_run(void (*build)(void *ctx), void *ctx)
{
    jmp_buf here, *outer = recovery; /* neither changes after setjmp */
    if (setjmp(here) != 0) {
        recovery = outer;
        return -1;
    }
    recovery = &here;
    build(ctx);
    recovery = outer;
    return 0;
}

void jcheck_oom(void)
{
    if (recovery)
        longjmp(*recovery, 1);
    /* A jcheck_* allocation outside jcheck_run() is a bug of its caller. */
    fputs("wsgate: out of memory outside a loader\n", stderr);
    abort();
}

void *jcheck_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        jcheck_oom();
    return p;
}

char *jcheck_strndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p)
        jcheck_oom();
    return p;
}

/* The formatted text (malloc'd), or NULL when memory is out. */
static __attribute__((format(printf, 1, 0))) char *xvasprintf(const char *fmt, va_list ap)
{
    char *s;
    return vasprintf(&s, fmt, ap) < 0 ? NULL : s;
}

char *jcheck_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = xvasprintf(fmt, ap);
    va_end(ap);
    if (!s)
        jcheck_oom();
    return s;
}

/* ------------------------------------------------------------ the error list */

/* An error must be reported even when memory is out, or a refused reload
 * would pass for a good one. So a line whose text cannot be made is this
 * static one, and a list that cannot grow keeps it in place of its last
 * line, or, when it was empty, becomes this static list. Neither is freed
 * (jcheck_free_lines). Whatever happens, a list that was empty holds a line
 * after push_line. */
static char oom_text[] = "out of memory";
static char *oom_list[1] = {oom_text};

static void free_line(char *line)
{
    if (line != oom_text)
        free(line);
}

/* `line` (malloc'd, or NULL when memory is out) becomes the list's. Control
 * bytes a file smuggled into it (a path segment, a key, jansson's "near
 * '...'") become '?': an error is one line and never drives the terminal
 * that shows the log (fuzz_config). */
static void push_line(struct config_errors *errs, char *line)
{
    if (!line)
        line = oom_text;
    for (unsigned char *p = (unsigned char *)line; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = '?';
    char **old = errs->lines == oom_list ? NULL : errs->lines;
    char **lines = realloc(old, (errs->count + 1) * sizeof *lines);
    if (lines) {
        if (!old && errs->count == 1)
            lines[0] = oom_text; /* grown out of the static list */
        errs->lines = lines;
        errs->lines[errs->count++] = line;
    } else if (errs->count > 0) {
        free_line(line);
        free_line(errs->lines[errs->count - 1]);
        errs->lines[errs->count - 1] = oom_text;
    } else {
        free_line(line);
        errs->lines = oom_list;
        errs->count = 1;
    }
}

void jcheck_free_lines(char **lines, size_t n)
{
    if (lines == oom_list)
        return;
    for (size_t i = 0; i < n; i++)
        free_line(lines[i]);
    free(lines);
}

void jcheck_out_of_memory(struct config_errors *errs, const char *source)
{
    jcheck_add_line(errs, "%s: out of memory", source);
}

void jcheck_add_line(struct config_errors *errs, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    push_line(errs, xvasprintf(fmt, ap));
    va_end(ap);
}

void jcheck_begin(struct jcheck *jc, const char *source, struct config_errors *errs)
{
    memset(jc, 0, sizeof *jc);
    jc->source = source;
    jc->errs = errs;
    jc->first_error = errs->count;
}

int jcheck_end(struct jcheck *jc)
{
    if (jc->n_unlisted)
        jcheck_add_line(jc->errs, "%s: %zu more errors not listed", jc->source, jc->n_unlisted);
    return jc->n_errors == 0 && jc->errs->count == jc->first_error ? 0 : -1;
}

void jcheck_error(struct jcheck *jc, const char *fmt, ...)
{
    /* A systematic mistake in a 100,000-key file must not flood the log. */
    if (jc->n_errors++ - jc->n_unlisted >= MAX_ERRORS) {
        jc->n_unlisted++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    if (!msg)
        push_line(jc->errs, NULL); /* still an error: "out of memory" */
    else if (jc->path_len)
        jcheck_add_line(jc->errs, "%s: %s: %s", jc->source, jc->path, msg);
    else
        jcheck_add_line(jc->errs, "%s: %s", jc->source, msg);
    free(msg);
}

void jcheck_describe(const json_t *v, bool hidden, char *buf, size_t len)
{
    if (hidden) {
        snprintf(buf, len, "<hidden>");
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) { /* with JSON_ENCODE_ANY only memory makes it fail */
        snprintf(buf, len, "(out of memory)");
        return;
    }
    size_t n = strlen(s);
    if (n >= len) {
        n = len - 4;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
        memcpy(buf, s, n);
        memcpy(buf + n, "...", 4);
    } else {
        memcpy(buf, s, n + 1);
    }
    free(s);
}

void jcheck_value_error(struct jcheck *jc, const json_t *v, bool hidden, const char *expected)
{
    char got[JCHECK_GOT_CAP];
    jcheck_describe(v, hidden, got, sizeof got);
    jcheck_error(jc, "%s, got %s", expected, got);
}

void jcheck_unknown_key(struct jcheck *jc, const char *key, const char *known)
{
    size_t mark = jcheck_enter_key(jc, key);
    jcheck_error(jc, "unknown key (expected one of: %s)", known);
    jcheck_leave(jc, mark);
}

void jcheck_syntax_error(struct config_errors *errs, const char *source, const json_error_t *e,
                         const char *note)
{
    if (!note)
        note = "";
    if (jcheck_json_out_of_memory(e))
        jcheck_out_of_memory(errs, source);
    else if (e->line > 0)
        jcheck_add_line(errs, "%s:%d:%d: %s%s", source, e->line, e->column > 0 ? e->column : 1,
                        e->text, note);
    else
        jcheck_add_line(errs, "%s: %s%s", source, e->text, note);
}

bool jcheck_json_out_of_memory(const json_error_t *e)
{
    /* jansson 2.14's parser returns NULL without a word when an allocation
     * fails (json_object(), json_array(), the lexer's buffer); it sets
     * json_error_out_of_memory only in a few places. Every real syntax
     * error has a text. */
    return e->text[0] == '\0' || json_error_code(e) == json_error_out_of_memory;
}

/* ------------------------------------------------------------ the JSON path */

static __attribute__((format(printf, 2, 3))) void path_append(struct jcheck *jc, const char *fmt,
                                                              ...)
{
    size_t room = sizeof jc->path - jc->path_len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(jc->path + jc->path_len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        /* Cut before "...", never inside a UTF-8 sequence: error lines stay
         * valid UTF-8 (found by fuzz_config). */
        size_t cut = sizeof jc->path - 4;
        while (cut > 0 && ((unsigned char)jc->path[cut] & 0xC0) == 0x80)
            cut--;
        memcpy(jc->path + cut, "...", 4);
        jc->path_len = cut + 3;
    } else {
        jc->path_len += (size_t)n;
    }
}

static bool is_plain_key(const char *key)
{
    static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    return key[0] != '\0' && strspn(key, plain) == strlen(key);
}

size_t jcheck_enter_key(struct jcheck *jc, const char *key)
{
    size_t mark = jc->path_len;
    if (is_plain_key(key)) {
        path_append(jc, "%s%s", mark ? "." : "", key);
        return mark;
    }
    /* Odd keys ("my vm", "a.b") are quoted so the path stays readable. */
    json_t *s = json_string(key);
    char *quoted = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    path_append(jc, "[%s]", quoted ? quoted : "?");
    free(quoted);
    json_decref(s);
    return mark;
}

size_t jcheck_enter_index(struct jcheck *jc, size_t i)
{
    size_t mark = jc->path_len;
    path_append(jc, "[%zu]", i);
    return mark;
}

void jcheck_leave(struct jcheck *jc, size_t mark)
{
    jc->path_len = mark;
    jc->path[mark] = '\0';
}

size_t jcheck_mark(const struct jcheck *jc) { return jc->path_len; }

/* ----------------------------------------------------------- value syntax */

bool jcheck_host_is_valid(const char *h, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c == 0x7f || c == '/')
            return false;
    }
    return true;
}

int jcheck_parse_port(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return 0;
    int port = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        port = port * 10 + (s[i] - '0');
    }
    return port <= 65535 ? port : 0;
}
