/* test_backend_type.c - the backend-type registry, with a backend type of the
 * test's own: what a new kind of backend gets from registering one table
 * (lookups by name, route type and connection; the process hooks called in
 * order, stopped in reverse, a failed start undone). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "backend_type.h"

/* The test's own registry (the gateway keeps its in struct gateway). */
static struct backend_registry reg;

/* A log of hook calls, "name:hook" separated by spaces. */
static char calls[512];

static void record(const char *type, const char *hook)
{
    size_t used = strlen(calls);
    snprintf(calls + used, sizeof(calls) - used, "%s%s:%s", used ? " " : "", type, hook);
}

/* --- a test-only backend type: "loop", whose connections are tagged ----- */
static const uint32_t loop_tag = 0x6c6f6f70;
static bool loop_down;
static int loop_in_flight;

static int loop_check(struct backend_request *req, char *reason, size_t reason_len)
{
    (void)req;
    snprintf(reason, reason_len, "checked");
    return 0;
}
static struct bridge *loop_open(struct session *s)
{
    (void)s;
    return NULL;
}
static bool loop_owns(const void *opaque) { return *(const uint32_t *)opaque == loop_tag; }
static void loop_set_worker(int index)
{
    (void)index;
    record("loop", "worker");
}
static int loop_start(const struct wsg_config *cfg, struct lws_context *ctx, char *err,
                      size_t err_len)
{
    (void)cfg, (void)ctx, (void)err, (void)err_len;
    record("loop", "start");
    return 0;
}
static const char *loop_unavailable(void) { return loop_down ? "loop-1" : NULL; }
static void loop_drain(void) { record("loop", "drain"); }
static bool loop_drained(void) { return loop_in_flight == 0; }
static void loop_shutdown(void) { record("loop", "shutdown"); }
static void loop_stop(void) { record("loop", "stop"); }

static const struct backend_type loop_type = {
    .name = "loop",
    .route_type = (enum wsg_route_type)77,
    .check_request = loop_check,
    .open = loop_open,
    .owns = loop_owns,
    .set_worker = loop_set_worker,
    .start = loop_start,
    .unavailable = loop_unavailable,
    .resource_kind = "loop",
    .drain = loop_drain,
    .drained = loop_drained,
    .shutdown = loop_shutdown,
    .stop = loop_stop,
};

/* --- a second one with only the required hooks, whose start can fail ----- */
static bool bare_start_fails;
static int bare_start(const struct wsg_config *cfg, struct lws_context *ctx, char *err,
                      size_t err_len)
{
    (void)cfg, (void)ctx;
    record("bare", "start");
    if (!bare_start_fails)
        return 0;
    snprintf(err, err_len, "bare: cannot start");
    return -1;
}
static const struct backend_type bare_type = {
    .name = "bare",
    .route_type = (enum wsg_route_type)78,
    .open = loop_open,
    .start = bare_start,
};

static int setup(void **state)
{
    (void)state;
    backend_types_clear(&reg);
    calls[0] = '\0';
    loop_down = bare_start_fails = false;
    loop_in_flight = 0;
    return 0;
}

static void test_lookups(void **state)
{
    (void)state;
    assert_int_equal(backend_type_register(&reg, &loop_type), 0);
    assert_int_equal(backend_type_register(&reg, &bare_type), 0);
    assert_ptr_equal(backend_type_named(&reg, "loop"), &loop_type);
    assert_ptr_equal(backend_type_for(&reg, (enum wsg_route_type)78), &bare_type);
    assert_null(backend_type_named(&reg, "nats"));
    assert_null(backend_type_for(&reg, WSG_ROUTE_TCP));
    assert_ptr_equal(backend_type_at(&reg, 0), &loop_type);
    assert_ptr_equal(backend_type_at(&reg, 1), &bare_type);
    assert_null(backend_type_at(&reg, 2));

    uint32_t ours = loop_tag, other = 1;
    assert_ptr_equal(backend_type_owning(&reg, &ours), &loop_type);
    assert_null(backend_type_owning(&reg, &other)); /* bare has no owns(): skipped */
    assert_null(backend_type_owning(&reg, NULL));

    struct backend_request req = {0};
    char reason[32] = "";
    assert_int_equal(backend_type_named(&reg, "loop")->check_request(&req, reason, sizeof(reason)),
                     0);
    assert_string_equal(reason, "checked");
}

static void test_refusals(void **state)
{
    (void)state;
    assert_int_equal(backend_type_register(&reg, &loop_type), 0);
    assert_int_equal(backend_type_register(&reg, &loop_type), -1); /* twice */
    struct backend_type same_name = bare_type;
    same_name.name = "loop";
    assert_int_equal(backend_type_register(&reg, &same_name), -1);
    struct backend_type same_route = bare_type;
    same_route.route_type = loop_type.route_type;
    assert_int_equal(backend_type_register(&reg, &same_route), -1);
    struct backend_type no_open = bare_type;
    no_open.open = NULL;
    assert_int_equal(backend_type_register(&reg, &no_open), -1);
    assert_int_equal(backend_type_register(&reg, NULL), -1);

    static struct backend_type many[BACKEND_TYPES_MAX];
    static char names[BACKEND_TYPES_MAX][8];
    size_t registered = 1;
    for (size_t i = 0; i < BACKEND_TYPES_MAX; i++) {
        snprintf(names[i], sizeof(names[i]), "t%zu", i);
        many[i] = (struct backend_type){
            .name = names[i], .route_type = (enum wsg_route_type)(100 + i), .open = loop_open};
        if (backend_type_register(&reg, &many[i]) == 0)
            registered++;
    }
    assert_int_equal(registered, BACKEND_TYPES_MAX); /* the last one found it full */
}

static void test_process_hooks_in_order(void **state)
{
    (void)state;
    backend_type_register(&reg, &loop_type);
    backend_type_register(&reg, &bare_type);
    char err[64] = "";
    backend_types_set_worker(&reg, 2);
    assert_int_equal(backend_types_start(&reg, NULL, NULL, err, sizeof(err)), 0);
    backend_types_service(&reg); /* neither has service(): nothing to do */
    backend_types_drain(&reg);
    backend_types_shutdown(&reg);
    backend_types_stop(&reg);
    assert_string_equal(calls, "loop:worker loop:start bare:start loop:drain loop:shutdown "
                               "loop:stop");
    assert_int_equal(backend_types_reload(&reg, NULL, err, sizeof(err)), 0); /* none reloads */
}

static void test_failed_start_is_undone(void **state)
{
    (void)state;
    backend_type_register(&reg, &loop_type);
    backend_type_register(&reg, &bare_type);
    bare_start_fails = true;
    char err[64] = "";
    assert_int_equal(backend_types_start(&reg, NULL, NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "bare: cannot start");
    assert_string_equal(calls, "loop:start bare:start loop:stop");
}

static void test_readiness_and_drain(void **state)
{
    (void)state;
    backend_type_register(&reg, &bare_type);
    backend_type_register(&reg, &loop_type);
    const char *kind = NULL;
    assert_null(backend_types_unavailable(&reg, &kind));
    loop_down = true;
    assert_string_equal(backend_types_unavailable(&reg, &kind), "loop-1");
    assert_string_equal(kind, "loop");

    assert_true(backend_types_drained(&reg));
    loop_in_flight = 3;
    assert_false(backend_types_drained(&reg));
}

/* A registry is a value: two of them (two gateways, or a test beside the
 * gateway's) share nothing. */
static void test_registries_are_independent(void **state)
{
    (void)state;
    struct backend_registry other = {0};
    assert_int_equal(backend_type_register(&reg, &loop_type), 0);
    assert_int_equal(backend_type_register(&other, &bare_type), 0);
    assert_int_equal(backend_type_register(&other, &loop_type), 0); /* not "twice" there */
    assert_null(backend_type_named(&reg, "bare"));
    assert_ptr_equal(backend_type_named(&other, "bare"), &bare_type);
    backend_types_clear(&other);
    assert_null(backend_type_at(&other, 0));
    assert_ptr_equal(backend_type_at(&reg, 0), &loop_type);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_lookups, setup),
        cmocka_unit_test_setup(test_refusals, setup),
        cmocka_unit_test_setup(test_process_hooks_in_order, setup),
        cmocka_unit_test_setup(test_failed_start_is_undone, setup),
        cmocka_unit_test_setup(test_readiness_and_drain, setup),
        cmocka_unit_test_setup(test_registries_are_independent, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
