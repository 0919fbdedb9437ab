/* fuzz_config.c - the config loader (src/core/config.c, src/core/json_check.c).
 *
 * Input: the whole config file text. The "*_env" secrets the seeds name
 * are set to a known value first.
 * Properties:
 *  - config_load_string returns a config xor errors;
 *  - every error line names the source, is one printable line of UTF-8
 *    and never shows a secret read from the environment;
 *  - a loaded config is usable: route_table_create accepts it, every route
 *    and broker is found by name, a broker copy equals its original, and
 *    an HS256 verifier can be built from its "auth". */
#include "fuzz_util.h"

#include "auth.h"
#include "config.h"
#include "framing.h"
#include "route.h"

#define SECRET "Fz-s3cret-VALUE-do-not-log"

static const char *const env_names[] = {
    "WSGATE_TEST_JWT_SECRET",
    "WSGATE_TEST_MQTT_PASSWORD",
    "JWT_SECRET",
    "MQTT_PASSWORD",
    "SECRET",
    "PASSWORD",
    "FUZZ_SECRET",
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        setenv(env_names[i], SECRET, 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';

    struct config_errors errs = {0};
    struct wsg_config *cfg = config_load_string(text, "fuzz.json", "/nonexistent", &errs);
    FUZZ_CHECK(!cfg == (errs.count > 0), "config %p with %zu errors", (void *)cfg, errs.count);
    for (size_t i = 0; i < errs.count; i++) {
        const char *l = errs.lines[i];
        FUZZ_CHECK(strncmp(l, "fuzz.json", 9) == 0, "error line without the source: %s", l);
        FUZZ_CHECK(fz_is_one_line_but_near(l), "error line is not one printable line: %s", l);
        FUZZ_CHECK(fz_is_utf8_but_near(l), "error line is not UTF-8: %s", l);
        /* (Unless the file itself holds that text, e.g. as a key.) */
        FUZZ_CHECK(!strstr(l, SECRET) || strstr(text, SECRET), "error line shows a secret: %s", l);
    }
    if (cfg) {
        struct route_table *t = route_table_create(cfg);
        FUZZ_CHECK(t, "route_table_create refused a loaded config");
        route_table_destroy(t);
        for (size_t i = 0; i < cfg->n_routes; i++) {
            const struct wsg_route *r = &cfg->routes[i];
            FUZZ_CHECK(r->name && r->path && r->path[0] == '/', "route %zu", i);
            FUZZ_CHECK(config_route_by_name(cfg, r->name) == r, "route %s not found by name",
                       r->name);
            if (r->type == WSG_ROUTE_MQTT)
                FUZZ_CHECK(config_broker_by_name(cfg, r->broker), "route %s: broker %s missing",
                           r->name, r->broker);
        }
        for (size_t i = 0; i < cfg->n_brokers; i++) {
            const struct wsg_broker *b = &cfg->brokers[i];
            FUZZ_CHECK(config_broker_by_name(cfg, b->name) == b, "broker %s", b->name);
            struct wsg_broker *c = config_broker_copy(b);
            FUZZ_CHECK(c && config_broker_equal(b, c), "broker copy differs");
            config_broker_free(c);
        }
        if (cfg->auth.has_jwt && cfg->auth.jwt.secret) {
            char err[256];
            struct auth_verifier *v = auth_verifier_create(&cfg->auth.jwt, err, sizeof err);
            FUZZ_CHECK(v, "HS256 verifier refused: %s", err);
            auth_verifier_destroy(v);
        }
        config_free(cfg);
    }
    config_errors_free(&errs);
    free(text);
    return 0;
}
