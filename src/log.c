/* log.c - logfmt lines on stderr; see log.h. */
#include "log.h"

#include <libwebsockets.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* File-scope, not struct gateway's: a logger is process-wide by nature (set
 * once at startup or in a forked worker, read by every thread, lws's log and
 * Paho's threads included) and works before any gateway state exists. */
static enum log_level current_level = LOG_INFO;
static char worker_field[16]; /* "1", "2"... in a worker process, else "" */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void log_set_level(enum log_level level) { current_level = level; }

void log_set_worker(int index)
{
    if (index < 0)
        worker_field[0] = '\0';
    else
        snprintf(worker_field, sizeof(worker_field), "%d", index);
}
enum log_level log_get_level(void) { return current_level; }

static bool needs_quotes(const char *v)
{
    if (!*v)
        return true;
    for (const char *p = v; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p >= 0x7f)
            return true;
    return false;
}

/* Appends v to the line, quoted and escaped if logfmt requires it. Control
 * characters are escaped so a hostile value cannot forge a second line. */
static void put_value(FILE *out, const char *v)
{
    if (!needs_quotes(v)) {
        fputs(v, out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p < ' ' || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void write_line(enum log_level level, const char *msg, va_list ap)
{
    char ts[40];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);

    /* Built in memory and written with one call so lines never interleave. */
    char line[4096];
    FILE *out = fmemopen(line, sizeof(line), "w");
    if (!out)
        return;
    fprintf(out, "ts=%s level=%s msg=", ts, level_names[level]);
    put_value(out, msg);
    const char *key;
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        fprintf(out, " %s=", key);
        put_value(out, value ? value : "");
    }
    if (worker_field[0])
        fprintf(out, " worker=%s", worker_field);
    fputc('\n', out);
    long len = ftell(out);
    fclose(out);
    if (len <= 0 || (size_t)len >= sizeof(line)) {
        len = (long)strnlen(line, sizeof(line) - 2);
        line[len++] = '\n';
    }
    fwrite(line, 1, (size_t)len, stderr);
}

void log_kv(enum log_level level, const char *msg, ...)
{
    if (level > current_level)
        return;
    va_list ap;
    va_start(ap, msg);
    write_line(level, msg, ap);
    va_end(ap);
}

static void lws_log_emit(int lws_level, const char *line)
{
    enum log_level level = lws_level & LLL_ERR      ? LOG_ERROR
                           : lws_level & LLL_WARN   ? LOG_WARN
                           : lws_level & LLL_NOTICE ? LOG_DEBUG
                                                    : LOG_DEBUG;
    /* lws lines carry their own timestamp prefix and a newline: keep the text. */
    char text[512];
    const char *p = strchr(line, ']');
    p = p ? p + 1 : line;
    while (*p == ' ')
        p++;
    snprintf(text, sizeof(text), "%s", p);
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    log_kv(level, text, "component", "lws", (const char *)NULL);
}

void log_route_lws(void)
{
    /* lws notices are chatty (one per connection): they go to debug. */
    int levels = LLL_ERR | LLL_WARN;
    if (current_level >= LOG_DEBUG)
        levels |= LLL_NOTICE;
    lws_set_log_level(levels, lws_log_emit);
}
