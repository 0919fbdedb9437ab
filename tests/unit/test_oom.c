/* test_oom.c - out of memory fails the operation that needed it, never the
 * process (docs/ARCHITECTURE.md, "Out of memory"). Every allocation that
 * envelope_parse and the envelope builders, the config loader, the broker
 * copy, the target-map loader, msg_buffer and the error list make is failed
 * in turn: the k-th only, and the k-th with every one after it. Each run must return
 * an error or succeed with the same result as without failures; it must
 * never crash, and, in the ASan build (LeakSanitizer at exit), never leak.
 *
 * Our objects' calls to malloc, calloc, realloc, strdup, strndup and
 * vasprintf reach the __wrap_ functions below (ld --wrap, tests/CMakeLists.txt:
 * only calls from our own object files are redirected); jansson's own
 * allocations come through json_set_alloc_funcs(). */
#define _GNU_SOURCE /* vasprintf, strndup */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "config.h"
#include "envelope.h"
#include "buf_pool.h"
#include "json_check.h"
#include "json_scratch.h"
#include "msg_buffer.h"
#include "target_map.h"

/* ------------------------------------------------------- failing allocator */

static bool armed;     /* count (and maybe fail) calls only while an operation runs */
static long calls;     /* allocator calls since armed */
static long fail_at;   /* 0: fail none; else the call that fails */
static bool fail_rest; /* ... and every call after it */
static long failed;    /* calls failed since armed */

static bool should_fail(void)
{
    if (!armed)
        return false;
    calls++;
    if (fail_at && (calls == fail_at || (fail_rest && calls > fail_at))) {
        failed++;
        return true;
    }
    return false;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_vasprintf(char **s, const char *fmt, va_list ap);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_vasprintf(char **s, const char *fmt, va_list ap);

void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return should_fail() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return should_fail() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return should_fail() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n)
{
    return should_fail() ? NULL : __real_strndup(s, n);
}
int __wrap_vasprintf(char **s, const char *fmt, va_list ap)
{
    return should_fail() ? -1 : __real_vasprintf(s, fmt, ap);
}

/* jansson 2.14's lexer ignores a failure to grow its token buffer and reads
 * on past what it saved: a crash or an assertion inside json_load*()
 * (akheron/jansson#362, unfixed upstream). That buffer grows from 16 bytes
 * by doubling, so jansson's allocations of 32, 64, 128... bytes are not
 * failed here; every other one is. */
static bool failed_in_jansson;

static void *jansson_malloc(size_t n)
{
    if (n >= 32 && (n & (n - 1)) == 0)
        return __real_malloc(n);
    if (!should_fail())
        return __real_malloc(n);
    failed_in_jansson = true;
    return NULL;
}

/* Before each test: a test that failed half-way (cmocka jumps out of it)
 * must not leave the allocator failing for the next one. */
static int disarm(void **state)
{
    (void)state;
    armed = false;
    fail_at = 0;
    return 0;
}

/* What the runs found, printed at the end of each test. */
struct tally {
    long runs, ok, errors;
};

/* Runs op once without failures to count its allocations (N), then with
 * the k-th failing for k = 1..N, then with the k-th and all after it. Every
 * run starts from an empty buf_pool, so that each makes the same calls. */
static void each_failure(const char *what, void (*op)(void *ctx, struct tally *t), void *ctx)
{
    struct tally t = {0};
    buf_pool_release_all();
    armed = true;
    calls = failed = fail_at = 0;
    op(ctx, &t);
    armed = false;
    long n = calls;
    t = (struct tally){0};
    assert_true(n > 0);
    for (int rest = 0; rest <= 1; rest++) {
        for (long k = 1; k <= n; k++) {
            calls = failed = 0;
            failed_in_jansson = false;
            fail_at = k;
            fail_rest = rest;
            buf_pool_release_all();
            armed = true;
            op(ctx, &t);
            armed = false;
            assert_true(failed > 0); /* the run reached the failing call */
        }
    }
    fail_at = 0;
    printf("    %s: %ld allocations; %ld runs with failures: %ld succeeded anyway, "
           "%ld returned an error\n",
           what, n, t.runs, t.ok, t.errors);
}

/* --------------------------------------------------------------- envelope */

static const char *const requests[] = {
    "{\"topic\": \"app/a/in\", \"payload\": \"hi\", \"qos\": 1, \"retain\": true, \"id\": 7}",
    "{\"topic\": \"app/a/in\", \"payload\": {\"t\": [21, 22.5, null, \"x\"]}, \"id\": \"p-1\"}",
    "{\"topic\": \"app/a/in\", \"payload\": \"aGVsbG8Ad29ybGQ=\", \"encoding\": \"base64\"}",
    "{\"subscribe\": \"app/+/out\", \"qos\": 2, \"id\": \"s1\"}",
    "{\"unsubscribe\": \"app/#\", \"id\": 99}",
    "{\"refresh\": \"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln\", \"id\": \"r1\"}",
    "{\"topic\": \"app/#\", \"payload\": \"x\", \"id\": \"bad-topic\"}",
    "{\"topic\": \"a\", \"payload\": 1, \"bogus\": true, \"id\": 3}",
    "[1, 2, 3]",
    "{\"topic\": ",
};
#define N_REQUESTS (sizeof requests / sizeof requests[0])

struct parsed {
    int rc;
    const char *code;
    struct envelope_request req;
};

static struct parsed baseline[N_REQUESTS];

static void parse_one(size_t i, struct parsed *p)
{
    char msg[200];
    p->code = NULL;
    p->rc = envelope_parse((const uint8_t *)requests[i], strlen(requests[i]), &p->req, &p->code,
                           msg, sizeof msg);
    if (p->rc != 0) {
        assert_non_null(p->code);
        assert_true(strlen(msg) > 0);
    }
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static void op_envelope_parse(void *ctx, struct tally *t)
{
    (void)ctx;
    t->runs++;
    bool any_error = false;
    for (size_t i = 0; i < N_REQUESTS; i++) {
        struct parsed p;
        parse_one(i, &p);
        const struct parsed *b = &baseline[i];
        if (p.rc == 0) {
            /* A success under failures is the same success. */
            assert_int_equal(b->rc, 0);
            assert_int_equal(p.req.kind, b->req.kind);
            assert_string_equal(p.req.topic, b->req.topic);
            assert_int_equal(p.req.payload_len, b->req.payload_len);
            if (b->req.payload_len)
                assert_memory_equal(p.req.payload, b->req.payload, b->req.payload_len);
            assert_int_equal(p.req.qos, b->req.qos);
            assert_int_equal(p.req.retain, b->req.retain);
            assert_true(same_str(p.req.id, b->req.id));
        } else {
            any_error |= b->rc == 0;
            /* The request's own error, or "internal_error" for memory (or,
             * when jansson's parser failed, maybe its words for it: a few
             * of its allocation failures come out as "invalid token"); an
             * id that was read is kept for the reply. */
            bool jansson_words = failed_in_jansson && strcmp(p.code, ENVELOPE_ERR_BAD_JSON) == 0;
            if (strcmp(p.code, ENVELOPE_ERR_INTERNAL) != 0 && !jansson_words)
                assert_string_equal(p.code, b->rc ? b->code : ENVELOPE_ERR_INTERNAL);
            if (p.req.id)
                assert_string_equal(p.req.id, b->req.id);
        }
        envelope_request_free(&p.req);
    }
    if (any_error)
        t->errors++;
    else
        t->ok++;
}

static void test_envelope_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_REQUESTS; i++)
        parse_one(i, &baseline[i]);
    assert_int_equal(baseline[0].rc, 0);
    assert_int_equal(baseline[5].rc, 0);
    assert_int_equal(baseline[6].rc, -1); /* a bad topic: its own error, not ours */
    each_failure("envelope_parse", op_envelope_parse, NULL);
    for (size_t i = 0; i < N_REQUESTS; i++)
        envelope_request_free(&baseline[i].req);
}

/* The builders write the same text or fail (mqtt_bridge.c closes the
 * connection with 1011 when a reply cannot be built). */
static struct msg_buffer built[4];

static int build_one(int i, struct msg_buffer *out)
{
    static const uint8_t binary[] = {0xff, 0x00, 0x80, 'x'};
    switch (i) {
    case 0:
        return envelope_message(out, "app/a/out", (const uint8_t *)"{\"t\": [1, 2]}", 13);
    case 1:
        return envelope_message(out, "app/a/out", binary, sizeof binary);
    case 2:
        return envelope_ack(out, "\"s1\"");
    default:
        return envelope_error(out, ENVELOPE_ERR_NOT_ALLOWED, "not allowed on route bus", "7");
    }
}

static void op_envelope_build(void *ctx, struct tally *t)
{
    (void)ctx;
    t->runs++;
    bool any_failed = false;
    for (int i = 0; i < 4; i++) {
        struct msg_buffer m = {0};
        bool ok = build_one(i, &m) == 0;
        /* jansson words some of its allocation failures as syntax errors:
         * a JSON payload then goes out as a string (still a valid message). */
        /* envelope_error() never loses a reply: a message it cannot copy
         * becomes the code. */
        static const char code_message[] = "\"message\":\"not_allowed\"";
        bool code_as_message =
            i == 3 && ok && memmem(m.data, m.len, code_message, sizeof code_message - 1);
        if (ok && !(failed_in_jansson && i == 0) && !code_as_message) {
            assert_int_equal(m.len, built[i].len);
            assert_memory_equal(m.data, built[i].data, m.len);
        }
        if (!ok) /* never half a text that could pass for a message */
            assert_int_equal(m.len, 0);
        any_failed |= !ok;
        msg_buffer_free(&m);
    }
    if (any_failed)
        t->errors++;
    else
        t->ok++;
}

static void test_envelope_build(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(build_one(i, &built[i]), 0);
    each_failure("envelope builders", op_envelope_build, NULL);
    for (int i = 0; i < 4; i++)
        msg_buffer_free(&built[i]);
}

/* The same two with jansson on the scratch arena, as in the gateway
 * (main.c installs it): the arena's blocks come from buf_pool, whose
 * allocations fail in turn. Installing is for good, so these run last. */
static void test_envelope_parse_scratch(void **state)
{
    json_scratch_install();
    test_envelope_parse(state);
}

static void test_envelope_build_scratch(void **state)
{
    json_scratch_install();
    test_envelope_build(state);
}

/* ----------------------------------------------------------------- config */

static char *data_path(const char *name)
{
    const char *d = getenv("WSGATE_TEST_DATA");
    char *p;
    assert_true(asprintf(&p, "%s/%s", d ? d : "tests/unit/data", name) > 0);
    return p;
}

static bool has_oom_line(const struct config_errors *e)
{
    for (size_t i = 0; i < e->count; i++)
        if (strstr(e->lines[i], "out of memory"))
            return true;
    return false;
}

/* A failed load says why: a line, and for a good file that line is
 * "out of memory" (jansson may word a failure inside its parser as a
 * syntax error: then a line of its). */
static void check_failed_load(const struct config_errors *errs, bool file_is_good)
{
    assert_true(errs->count > 0);
    for (size_t i = 0; i < errs->count; i++)
        assert_non_null(errs->lines[i]);
    if (file_is_good && !has_oom_line(errs))
        assert_non_null(strstr(errs->lines[0], "full.json:"));
}

static void op_config_full(void *ctx, struct tally *t)
{
    const char *path = ctx;
    struct config_errors errs = {0};
    t->runs++;
    struct wsg_config *cfg = config_load_file(path, &errs);
    if (cfg) {
        assert_int_equal(errs.count, 0);
        assert_int_equal(cfg->n_routes, 5);
        assert_int_equal(cfg->n_brokers, 2);
        assert_string_equal(cfg->routes[4].publish_allow[1], "app/{query.room}/chat");
        assert_string_equal(cfg->brokers[1].password, "mqtt-secret");
        t->ok++;
    } else {
        check_failed_load(&errs, true);
        t->errors++;
    }
    config_free(cfg);
    config_errors_free(&errs);
}

static void test_config_load_file(void **state)
{
    (void)state;
    setenv("WSGATE_TEST_JWT_SECRET", "jwt-secret-of-32-bytes-or-more!!", 1);
    setenv("WSGATE_TEST_MQTT_PASSWORD", "mqtt-secret", 1);
    char *path = data_path("full.json");
    struct config_errors errs = {0};
    struct wsg_config *cfg = config_load_file(path, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "    | %s\n", errs.lines[i]);
    assert_non_null(cfg);
    config_free(cfg);
    each_failure("config_load_file(full.json)", op_config_full, path);
    free(path);
}

/* A config with many errors: the error list itself runs out of memory. */
static const char bad_config[] =
    "{\"listen\": [{\"port\": 0}, {\"host\": \"a b\", \"port\": 80}],"
    " \"limits\": {\"max_conections\": 1, \"idle_timeout_s\": \"x\"},"
    " \"origins\": [\"ftp://x\", 5, \"https://ok.example\"],"
    " \"brokers\": {\"m\": {\"uri\": \"http://x\"}},"
    " \"routes\": [{\"path\": \"/a\", \"type\": \"mqtt\", \"broker\": \"nope\","
    "   \"format\": \"envelope\", \"publish\": {\"allow\": [\"a/#/b\", \"ok/{nope}\", \"x\"]}},"
    "  {\"path\": \"/b\", \"type\": \"tcp\", \"targets\": [{\"host\": \"h\"}, 7]}]}";

static void op_config_bad(void *ctx, struct tally *t)
{
    size_t *baseline_count = ctx;
    struct config_errors errs = {0};
    t->runs++;
    struct wsg_config *cfg = config_load_string(bad_config, "bad.json", NULL, &errs);
    assert_null(cfg);
    assert_true(errs.count > 0);
    assert_true(errs.count <= *baseline_count + 1);
    t->errors++;
    config_errors_free(&errs);
}

static void test_config_with_errors(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    assert_null(config_load_string(bad_config, "bad.json", NULL, &errs));
    size_t n = errs.count;
    assert_true(n >= 8);
    config_errors_free(&errs);
    each_failure("config_load_string(a config with errors)", op_config_bad, &n);
}

static void op_config_default(void *ctx, struct tally *t)
{
    (void)ctx;
    struct config_errors errs = {0};
    t->runs++;
    struct wsg_config *cfg = config_load_default("/usr/share/wsgate/www", &errs);
    if (cfg) {
        assert_int_equal(cfg->n_listen, 1);
        assert_string_equal(cfg->static_files.dir, "/usr/share/wsgate/www");
        t->ok++;
    } else {
        assert_true(has_oom_line(&errs));
        t->errors++;
    }
    config_free(cfg);
    config_errors_free(&errs);
}

static void test_config_load_default(void **state)
{
    (void)state;
    each_failure("config_load_default", op_config_default, NULL);
}

static void op_broker_copy(void *ctx, struct tally *t)
{
    const struct wsg_broker *b = ctx;
    t->runs++;
    struct wsg_broker *c = config_broker_copy(b);
    if (c) {
        assert_true(config_broker_equal(b, c));
        t->ok++;
    } else {
        t->errors++;
    }
    config_broker_free(c);
}

static void test_broker_copy(void **state)
{
    (void)state;
    char *path = data_path("full.json");
    struct config_errors errs = {0};
    struct wsg_config *cfg = config_load_file(path, &errs);
    assert_non_null(cfg);
    each_failure("config_broker_copy", op_broker_copy, &cfg->brokers[1]);
    config_free(cfg);
    free(path);
}

/* ------------------------------------------------------------- target map */

static const char map_text[] = "{\"vm1\": {\"host\": \"10.0.0.1\", \"port\": 5901},"
                               " \"vm2\": \"10.0.0.2:5902\","
                               " \"vm3\": [\"[::1]:5903\", {\"host\": \"h3\", \"port\": 5904}],"
                               " \"my vm\": \"a:1\"}";
static const char lines_text[] = "# websockify's own format\n"
                                 "vm1: 10.0.0.1:5901\n"
                                 "  vm2: [::1]:5902  \n"
                                 "vm3: unix_socket:/run/vm3.sock\n"
                                 "my-vm: host.example:5904\n";
static const char bad_map_text[] =
    "{\"vm1\": {\"host\": \"\", \"port\": 0}, \"a/b\": \"x:1\", \"vm3\": [], \"vm4\": 5}";

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/wsgate_oom_XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

struct map_case {
    const char *path;
    bool good;
    size_t keys; /* when good */
};

static void op_target_map(void *ctx, struct tally *t)
{
    const struct map_case *mc = ctx;
    struct config_errors errs = {0};
    t->runs++;
    struct target_map *m = target_map_load(mc->path, "consoles.json", &errs);
    if (m) {
        assert_true(mc->good);
        assert_int_equal(target_map_size(m), mc->keys);
        size_t n;
        assert_non_null(target_map_lookup(m, "vm3", &n));
        assert_true(n >= 1);
        t->ok++;
    } else {
        assert_true(errs.count > 0);
        if (mc->good && !has_oom_line(&errs) && !strstr(errs.lines[0], "consoles.json"))
            fail_msg("%s", errs.lines[0]);
        t->errors++;
    }
    target_map_free(m);
    config_errors_free(&errs);
}

static void test_target_map(void **state)
{
    (void)state;
    struct map_case good = {write_temp(map_text), true, 4};
    struct map_case lines = {write_temp(lines_text), true, 4};
    struct map_case bad = {write_temp(bad_map_text), false, 0};
    each_failure("target_map_load (JSON)", op_target_map, &good);
    each_failure("target_map_load (token lines)", op_target_map, &lines);
    each_failure("target_map_load (errors)", op_target_map, &bad);

    /* A directory of token files, one of each format. */
    char dir[] = "/tmp/wsgate_oom_dir_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *a, *b;
    assert_true(asprintf(&a, "%s/a.json", dir) > 0);
    assert_true(asprintf(&b, "%s/b.tokens", dir) > 0);
    FILE *f = fopen(a, "w");
    assert_non_null(f);
    fputs("{\"vm3\": \"10.0.0.3:5903\", \"vm4\": {\"unix\": \"/run/vm4.sock\"}}", f);
    fclose(f);
    assert_non_null(f = fopen(b, "w"));
    fputs("vm5: 10.0.0.5:5905\nvm6: h6:5906\n", f);
    fclose(f);
    struct map_case in_dir = {dir, true, 4};
    each_failure("target_map_load (a directory)", op_target_map, &in_dir);
    unlink(a);
    unlink(b);
    rmdir(dir);
    free(a);
    free(b);

    unlink(good.path);
    unlink(lines.path);
    unlink(bad.path);
    free((char *)good.path);
    free((char *)lines.path);
    free((char *)bad.path);
}

/* ------------------------------------------------------------- msg_buffer */

/* A message reassembled from 40 pieces of 1000 bytes (the pool's blocks
 * grow through 1, 2, 4, 8, 16, 32 and 64 KiB): out of memory is
 * MSG_BUFFER_NO_MEMORY (the bridges close with 1011, not 1009) and leaves
 * the bytes so far as they were. */
static void op_msg_buffer(void *ctx, struct tally *t)
{
    (void)ctx;
    t->runs++;
    struct msg_buffer m = {0};
    uint8_t piece[1000];
    int rc = 0;
    for (int i = 0; i < 40 && rc == 0; i++) {
        memset(piece, 'a' + i % 26, sizeof piece);
        size_t before = m.len;
        rc = msg_buffer_append(&m, piece, sizeof piece, 1 << 20);
        if (rc != 0) {
            assert_int_equal(rc, MSG_BUFFER_NO_MEMORY);
            assert_int_equal(m.len, before);
        }
    }
    for (size_t i = 0; i < m.len; i++)
        assert_int_equal(m.data[i], 'a' + (i / 1000) % 26);
    if (rc == 0) {
        assert_int_equal(m.len, 40000);
        t->ok++;
    } else {
        t->errors++;
    }
    msg_buffer_free(&m);
    buf_pool_release_all(); /* every run starts from an empty pool */
}

static void test_msg_buffer(void **state)
{
    (void)state;
    buf_pool_release_all();
    each_failure("msg_buffer_append", op_msg_buffer, NULL);
}

/* ------------------------------------------------------------- error list */

/* An error is never lost: a list that was empty holds a line afterwards,
 * and one that held lines holds at least as many. */
static void op_error_list(void *ctx, struct tally *t)
{
    (void)ctx;
    struct config_errors errs = {0};
    t->runs++;
    for (int i = 0; i < 5; i++) {
        size_t before = errs.count;
        jcheck_add_line(&errs, "x.json: error %d", i);
        assert_true(errs.count >= 1 && errs.count >= before);
    }
    struct jcheck jc;
    jcheck_begin(&jc, "y.json", &errs);
    jcheck_enter_key(&jc, "odd key");
    jcheck_error(&jc, "bad %s", "value");
    assert_int_equal(jcheck_end(&jc), -1);
    if (errs.count == 6)
        t->ok++;
    else
        t->errors++;
    config_errors_free(&errs);
}

static void test_error_list(void **state)
{
    (void)state;
    each_failure("error list", op_error_list, NULL);
}

int main(void)
{
    json_set_alloc_funcs(jansson_malloc, free);
    if (getenv("OOM_TEST")) /* one test by name, for debugging */
        cmocka_set_test_filter(getenv("OOM_TEST"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_envelope_parse, disarm),
        cmocka_unit_test_setup(test_envelope_build, disarm),
        cmocka_unit_test_setup(test_config_load_file, disarm),
        cmocka_unit_test_setup(test_config_with_errors, disarm),
        cmocka_unit_test_setup(test_config_load_default, disarm),
        cmocka_unit_test_setup(test_broker_copy, disarm),
        cmocka_unit_test_setup(test_target_map, disarm),
        cmocka_unit_test_setup(test_msg_buffer, disarm),
        cmocka_unit_test_setup(test_error_list, disarm),
        cmocka_unit_test_setup(test_envelope_parse_scratch, disarm),
        cmocka_unit_test_setup(test_envelope_build_scratch, disarm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
