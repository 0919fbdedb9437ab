/* json_check.h - what wsgate's JSON file checkers (config.c, target_map.c)
 * share: the JSON path of the value being checked, an error list of
 * "<source>: <path>: <message>" lines capped at 100 per check, and the host
 * and port syntax both files use. Pure: the checkers read and parse the
 * files and decide what is valid; this module only words and collects. */
#ifndef WSGATE_JSON_CHECK_H
#define WSGATE_JSON_CHECK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct config_errors; /* config.h: the list the errors go to */

#define JCHECK_PATH_CAP 256 /* longest JSON path shown; longer ones end in "..." */
#define JCHECK_GOT_CAP 80   /* longest value echoed after "got"; longer ones end in "..." */

/* One check of one JSON document, from jcheck_begin() to jcheck_end(); it
 * lives on the checker's stack. Use the functions, not the fields: they are
 * visible only so that the struct can be embedded. */
struct jcheck {
    const char *source;         /* borrowed: the file name used in messages */
    struct config_errors *errs; /* borrowed: the caller's list; each line added is
                                   malloc'd and owned by the list (config_errors_free) */
    size_t first_error;         /* errs->count at jcheck_begin() */
    size_t n_errors;            /* errors of this check, listed or not: the verdict
                                   never depends on the list, which may not grow
                                   when memory is out */
    size_t n_unlisted;          /* errors past the cap: only counted */
    char path[JCHECK_PATH_CAP]; /* e.g. "routes[2].target"; "" at the top level */
    size_t path_len;
};

void jcheck_begin(struct jcheck *jc, const char *source, struct config_errors *errs);

/* Adds "<source>: N more errors not listed" if the cap was hit. Returns 0
 * if this check added no error, -1 if it did. */
int jcheck_end(struct jcheck *jc);

/* ------------------------------------------------------------ the JSON path */

/* Enter object member `key` (odd keys are quoted: ["my vm"]) or array
 * element `i`; each returns the mark to leave it with jcheck_leave(). */
size_t jcheck_enter_key(struct jcheck *jc, const char *key);
size_t jcheck_enter_index(struct jcheck *jc, size_t i);
void jcheck_leave(struct jcheck *jc, size_t mark);

/* The mark of where the path is now, to leave to when nothing was entered. */
size_t jcheck_mark(const struct jcheck *jc);

/* ----------------------------------------------------------------- errors */

/* Adds "<source>: <path>: <message>" (no path part at the top level). */
void jcheck_error(struct jcheck *jc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Adds "<expected>, got <v as compact JSON>"; `hidden` prints <hidden> instead. */
void jcheck_value_error(struct jcheck *jc, const json_t *v, bool hidden, const char *expected);

/* Adds "unknown key (expected one of: <known>)" at member `key`. */
void jcheck_unknown_key(struct jcheck *jc, const char *key, const char *known);

/* `v` as compact JSON in buf, cut to fit len bytes on a UTF-8 boundary ("...");
 * "<hidden>" if `hidden`. */
void jcheck_describe(const json_t *v, bool hidden, char *buf, size_t len);

/* jansson's syntax error, "<source>:<line>:<col>: <text><note>", straight
 * into `errs` (no check is running yet); `note` may be NULL. */
void jcheck_syntax_error(struct config_errors *errs, const char *source, const json_error_t *e,
                         const char *note);

/* Adds a line built from fmt to `errs`, outside any check ("cannot read"). */
void jcheck_add_line(struct config_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ----------------------------------------------------------- value syntax */

/* The first n bytes of h are a host name or address to bind or connect to:
 * non-empty, no blanks, control characters or '/'. */
bool jcheck_host_is_valid(const char *h, size_t n);

/* The first n bytes of s are 1..65535 in 1 to 5 decimal digits: the port, or 0. */
int jcheck_parse_port(const char *s, size_t n);

/* ----------------------------------------------------------------- memory */

/* Out of memory fails the load, never the process (docs/ARCHITECTURE.md, "Out
 * of memory"). The checkers build their results (a config, a target map)
 * inside jcheck_run(); an allocation made there with jcheck_calloc,
 * jcheck_strndup or jcheck_asprintf that fails jumps back out of it, and
 * jcheck_run() returns -1. The caller then frees the partial result with
 * its ordinary free function and reports jcheck_out_of_memory(). For that
 * to leak nothing, whatever `build` allocates must hang in the result as
 * soon as it exists (no allocation held only by a local across another
 * jcheck_* call); tests/unit/test_oom.c fails every allocation in turn.
 *
 * Why a jump and not a NULL check at each of the ~50 allocations of
 * config.c and target_map.c: they sit deep in nested parsers, each would
 * need its own unwinding, and one forgotten check is a crash at run time;
 * here a forgotten owner is a leak that the test finds. Other resources
 * `build` holds across a jcheck_* call (a directory, a file's text, a
 * jansson document) must be kept where the caller releases them after
 * jcheck_run() too (target_map.c's struct load): the jump skips the code
 * that would have.
 *
 * jcheck_oom() outside jcheck_run() is a caller's bug and aborts. Adding an
 * error (jcheck_error, jcheck_add_line, ...) never jumps: a line that
 * cannot be made becomes "out of memory", so an error is never lost. */
int jcheck_run(void (*build)(void *ctx), void *ctx);
void jcheck_oom(void) __attribute__((noreturn));
void *jcheck_calloc(size_t n, size_t size);
char *jcheck_strndup(const char *s, size_t n);
char *jcheck_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Adds "<source>: out of memory". */
void jcheck_out_of_memory(struct config_errors *errs, const char *source);

/* A json_load*() that returned NULL with `e` failed for lack of memory. */
bool jcheck_json_out_of_memory(const json_error_t *e);

/* Frees an error list's lines (config_errors_free): the static "out of
 * memory" line and list are left alone. */
void jcheck_free_lines(char **lines, size_t n);

#endif
