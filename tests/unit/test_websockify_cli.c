/* test_websockify_cli.c - cmocka tests for websockify_cli.c: which command
 * lines are websockify's, the config each one means (loaded through the real
 * config loader, so what is checked is what wsgate would run), and every
 * refusal with its exact line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "websockify_cli.h"

#define MAX_ARGS 16

/* argv from a NULL-terminated list, argv[0] = "wsgate". */
static int make_argv(char **argv, const char *const *args)
{
    int argc = 0;
    argv[argc++] = "wsgate";
    for (; *args; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    return argc;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static bool wanted(const char *const *args)
{
    char *argv[MAX_ARGS];
    int argc = make_argv(argv, args);
    return websockify_cli_wanted(argc, argv);
}

/* Whether ./self.pem "exists" for the next load(). */
static bool self_pem;

/* Parses args expecting success; returns the loaded config. */
static struct wsg_config *load(const char *const *args, struct websockify_cli *cli)
{
    char *argv[MAX_ARGS], err[256] = "";
    int argc = make_argv(argv, args);
    enum websockify_cli_status st =
        websockify_cli_parse(argc, argv, self_pem, cli, err, sizeof(err));
    if (st != WEBSOCKIFY_CLI_RUN)
        fail_msg("parse failed: %s", err);
    struct config_errors errs = {0};
    struct wsg_config *cfg =
        config_load_string(cli->config_json, WEBSOCKIFY_CLI_SOURCE, ".", &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "    | %s\n", errs.lines[i]);
    assert_int_equal(errs.count, 0);
    assert_non_null(cfg);
    config_errors_free(&errs);
    return cfg;
}

static void assert_refused(const char *const *args, const char *line)
{
    char *argv[MAX_ARGS], err[256] = "";
    int argc = make_argv(argv, args);
    struct websockify_cli cli;
    enum websockify_cli_status st = websockify_cli_parse(argc, argv, false, &cli, err, sizeof(err));
    websockify_cli_free(&cli);
    if (st != WEBSOCKIFY_CLI_ERROR)
        fail_msg("not refused; expected: %s", line);
    assert_string_equal(err, line);
    assert_null(strchr(err, '\n'));
}

static void test_which_form(void **state)
{
    (void)state;
    assert_true(wanted(ARGS("6080", "localhost:5900")));
    assert_true(wanted(ARGS("--web", "/usr/share/novnc", "6080", "localhost:5900")));
    assert_true(wanted(ARGS("--record=x")));
    assert_true(wanted(ARGS("-v")));
    assert_true(wanted(ARGS("-c", "a.json", "6080")));
    assert_false(wanted(ARGS("-c", "a.json")));
    assert_false(wanted(ARGS("--config=a.json", "--check")));
    assert_false(wanted(ARGS("--log-level", "debug", "--config", "a.json")));
    assert_false(wanted(ARGS("--log-level=debug", "--check")));
    assert_false(wanted(ARGS("-ca.json")));
    assert_false(wanted(ARGS("--help")));
    assert_false(wanted(ARGS("--version")));
    assert_false(wanted(ARGS("--no-such-option")));
    assert_true(wanted(ARGS("--idle=5"))); /* a prefix of --idle-timeout */
    char *argv[] = {"wsgate", NULL};
    assert_false(websockify_cli_wanted(1, argv));
}

static void test_positional_form(void **state)
{
    (void)state;
    struct websockify_cli cli;
    struct wsg_config *cfg = load(ARGS("6080", "localhost:5900"), &cli);
    assert_int_equal(cfg->n_listen, 1);
    assert_string_equal(cfg->listen[0].host, "0.0.0.0");
    assert_int_equal(cfg->listen[0].port, 6080);
    assert_false(cfg->listen[0].has_tls);
    assert_int_equal(cfg->n_origins, 0); /* any Origin */
    assert_false(cfg->has_static);
    assert_int_equal(cfg->limits.ping_interval_s, 0);
    assert_int_equal(cfg->n_routes, 1);
    const struct wsg_route *r = &cfg->routes[0];
    assert_string_equal(r->path, "/**");
    assert_int_equal(r->type, WSG_ROUTE_TCP);
    assert_int_equal(r->framing, WSG_FRAMING_RAW);
    assert_int_equal(r->message, WSG_MESSAGE_BINARY);
    assert_int_equal(r->n_subprotocols, 1);
    assert_string_equal(r->subprotocols[0], "binary");
    assert_false(r->require_subprotocol);
    assert_int_equal(r->n_targets, 1);
    assert_string_equal(r->targets[0].host, "localhost");
    assert_int_equal(r->targets[0].port, 5900);
    assert_false(cli.verbose);
    assert_int_equal(cli.idle_timeout_s, 0);
    assert_null(cli.log_file);
    config_free(cfg);
    websockify_cli_free(&cli);

    /* source_addr, IPv6 in brackets, options after the positionals */
    cfg = load(ARGS("127.0.0.1:6080", "[::1]:5901", "-v"), &cli);
    assert_string_equal(cfg->listen[0].host, "127.0.0.1");
    assert_string_equal(cfg->routes[0].targets[0].host, "::1");
    assert_int_equal(cfg->routes[0].targets[0].port, 5901);
    assert_true(cli.verbose);
    config_free(cfg);
    websockify_cli_free(&cli);
    cfg = load(ARGS("--log-level", "warn", "[::]:6080", "h:1"), &cli);
    assert_string_equal(cli.log_level, "warn");
    assert_string_equal(cfg->listen[0].host, "::");
    config_free(cfg);
    websockify_cli_free(&cli);
}

static void test_options_both_spellings(void **state)
{
    (void)state;
    struct websockify_cli cli;
    struct wsg_config *cfg =
        load(ARGS("--web=/usr/share/novnc", "--heartbeat", "15", "--idle-timeout=30", "--log-file",
                  "/tmp/w.log", "--verbose", "6080", "h:5900"),
             &cli);
    assert_true(cfg->has_static);
    assert_string_equal(cfg->static_files.mount, "/");
    assert_string_equal(cfg->static_files.dir, "/usr/share/novnc");
    assert_int_equal(cfg->limits.ping_interval_s, 15);
    assert_int_equal(cli.idle_timeout_s, 30);
    assert_string_equal(cli.log_file, "/tmp/w.log");
    assert_string_equal(cli.web_dir, "/usr/share/novnc");
    assert_true(cli.verbose);
    config_free(cfg);
    websockify_cli_free(&cli);

    /* a unique prefix, as optparse takes it */
    cfg = load(ARGS("--heart=5", "--idle", "7", "6080", "h:1"), &cli);
    assert_int_equal(cfg->limits.ping_interval_s, 5);
    assert_int_equal(cli.idle_timeout_s, 7);
    config_free(cfg);
    websockify_cli_free(&cli);
}

static void test_tls(void **state)
{
    (void)state;
    struct websockify_cli cli;
    struct wsg_config *cfg = load(ARGS("--cert", "c.pem", "--key=k.pem", "6443", "h:1"), &cli);
    assert_true(cfg->listen[0].has_tls);
    assert_string_equal(cfg->listen[0].tls.cert, "c.pem");
    assert_string_equal(cfg->listen[0].tls.key, "k.pem");
    assert_true(cfg->listen[0].tls.allow_plain); /* websockify serves both */
    config_free(cfg);
    websockify_cli_free(&cli);

    /* the key inside the certificate file; --ssl-only refuses plain */
    cfg = load(ARGS("--cert=both.pem", "--ssl-only", "6443", "h:1"), &cli);
    assert_string_equal(cfg->listen[0].tls.key, "both.pem");
    assert_false(cfg->listen[0].tls.allow_plain);
    config_free(cfg);
    websockify_cli_free(&cli);

    /* --ssl-only alone: websockify's default certificate, self.pem */
    cfg = load(ARGS("--ssl-only", "6443", "h:1"), &cli);
    assert_string_equal(cfg->listen[0].tls.cert, "self.pem");
    assert_true(cli.default_cert_used);
    config_free(cfg);
    websockify_cli_free(&cli);

    /* No --cert, ./self.pem there: TLS beside plain, as websockify */
    self_pem = true;
    cfg = load(ARGS("6443", "h:1"), &cli);
    assert_true(cfg->listen[0].has_tls);
    assert_string_equal(cfg->listen[0].tls.cert, "self.pem");
    assert_string_equal(cfg->listen[0].tls.key, "self.pem");
    assert_true(cfg->listen[0].tls.allow_plain);
    assert_true(cli.default_cert_used);
    config_free(cfg);
    websockify_cli_free(&cli);
    cfg = load(ARGS("--cert", "c.pem", "6443", "h:1"), &cli);
    assert_string_equal(cfg->listen[0].tls.cert, "c.pem");
    assert_false(cli.default_cert_used);
    config_free(cfg);
    websockify_cli_free(&cli);
    self_pem = false;
    cfg = load(ARGS("6443", "h:1"), &cli);
    assert_false(cfg->listen[0].has_tls);
    config_free(cfg);
    websockify_cli_free(&cli);
}

static void test_token_files_and_unix(void **state)
{
    (void)state;
    const char *const *const forms[] = {
        ARGS("--token-plugin", "TokenFile", "--token-source", "/etc/tokens", "6080"),
        ARGS("--token-plugin=TokenFile", "--token-source=/etc/tokens", "6080"),
        ARGS("--token-plugin=websockify.token_plugins.ReadOnlyTokenFile",
             "--token-source=/etc/tokens", "6080"),
        ARGS("--target-config", "/etc/tokens", "6080"),
        ARGS("--target-config=/etc/tokens", "6080"),
    };
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        struct websockify_cli cli;
        struct wsg_config *cfg = load(forms[i], &cli);
        const struct wsg_route *r = &cfg->routes[0];
        assert_int_equal(r->n_targets, 0);
        assert_string_equal(r->target_map_file, "/etc/tokens");
        assert_string_equal(r->target_map_key, "{query.token}");
        config_free(cfg);
        websockify_cli_free(&cli);
    }
    struct websockify_cli cli;
    struct wsg_config *cfg = load(ARGS("--unix-target=/run/vnc.sock", "6080"), &cli);
    assert_int_equal(cfg->routes[0].n_targets, 1);
    assert_string_equal(cfg->routes[0].targets[0].host, "/run/vnc.sock");
    assert_int_equal(cfg->routes[0].targets[0].port, 0);
    config_free(cfg);
    websockify_cli_free(&cli);
}

static void test_help(void **state)
{
    (void)state;
    char *argv[] = {"wsgate", "6080", "--help", NULL}, err[64];
    struct websockify_cli cli;
    assert_int_equal(websockify_cli_parse(3, argv, false, &cli, err, sizeof(err)),
                     WEBSOCKIFY_CLI_HELP);
    websockify_cli_free(&cli);
    assert_non_null(strstr(websockify_cli_usage, "[source_addr:]source_port"));
    assert_non_null(strstr(websockify_cli_usage, "--token-plugin TokenFile"));
}

static void test_refusals(void **state)
{
    (void)state;
    /* websockify's options wsgate lacks: named, with either spelling */
    assert_refused(ARGS("--record=/tmp/r", "6080", "h:1"),
                   "wsgate: --record is a websockify option wsgate does not support");
    assert_refused(ARGS("6080", "h:1", "--record", "/tmp/r"),
                   "wsgate: --record is a websockify option wsgate does not support");
    assert_refused(ARGS("-D", "6080", "h:1"),
                   "wsgate: -D is a websockify option wsgate does not support");
    assert_refused(ARGS("--daemon", "6080", "h:1"),
                   "wsgate: --daemon is a websockify option wsgate does not support");
    assert_refused(ARGS("--auth-plugin", "BasicHTTPAuth", "6080", "h:1"),
                   "wsgate: --auth-plugin is a websockify option wsgate does not support");
    assert_refused(ARGS("--host-token", "6080"),
                   "wsgate: --host-token is a websockify option wsgate does not support");
    assert_refused(ARGS("--ssl-target", "6080", "h:1"),
                   "wsgate: --ssl-target is a websockify option wsgate does not support");
    assert_refused(ARGS("6080", "--", "vncserver"),
                   "wsgate: \"-- WRAP_COMMAND_LINE\" (websockify's wrap mode) is not supported");
    assert_refused(ARGS("--token-plugin", "JWTTokenApi", "--token-source", "k", "6080"),
                   "wsgate: --token-plugin JWTTokenApi is not supported: only TokenFile (token "
                   "files, \"token: host:port\")");
    /* wsgate's own options with this form */
    assert_refused(ARGS("-c", "wsgate.json", "6080", "h:1"),
                   "wsgate: -c cannot be mixed with websockify's [source_addr:]source_port "
                   "[target_addr:target_port] form: use a config file or the command line");
    assert_refused(ARGS("6080", "h:1", "--config=wsgate.json"),
                   "wsgate: --config cannot be mixed with websockify's [source_addr:]source_port "
                   "[target_addr:target_port] form: use a config file or the command line");
    assert_refused(ARGS("--check", "6080", "h:1"),
                   "wsgate: --check cannot be mixed with websockify's [source_addr:]source_port "
                   "[target_addr:target_port] form: use a config file or the command line");
    /* mistakes */
    assert_refused(ARGS("--log-level=loud", "6080", "h:1"),
                   "wsgate: --log-level: expected error, warn, info or debug, got \"loud\"");
    assert_refused(ARGS("--frobnicate", "6080", "h:1"),
                   "wsgate: no such option: --frobnicate (see wsgate --help)");
    assert_refused(ARGS("--ssl", "6080", "h:1"),
                   "wsgate: ambiguous option: --ssl (see wsgate --help)");
    assert_refused(ARGS("--ssl-only=yes", "6080", "h:1"),
                   "wsgate: --ssl-only option does not take a value");
    assert_refused(ARGS("6080", "h:1", "--web"), "wsgate: --web option requires an argument");
    assert_refused(ARGS("--heartbeat=x", "6080", "h:1"),
                   "wsgate: option --heartbeat: invalid integer value: 'x'");
    assert_refused(ARGS("--idle-timeout", "-1", "6080", "h:1"),
                   "wsgate: option --idle-timeout: invalid integer value: '-1'");
    assert_refused(ARGS("6080"), "wsgate: too few arguments: expected [source_addr:]source_port "
                                 "target_addr:target_port");
    assert_refused(ARGS("6080", "h:1", "x"), "wsgate: too many arguments");
    assert_refused(ARGS("--target-config=t", "6080", "h:1"),
                   "wsgate: too many arguments: with --token-plugin or --unix-target there is "
                   "no target");
    assert_refused(ARGS("--token-source=t", "6080"),
                   "wsgate: you must use --token-plugin to use --token-source");
    assert_refused(ARGS("--token-plugin=TokenFile", "6080"),
                   "wsgate: --token-plugin TokenFile needs --token-source FILE|DIR");
    assert_refused(ARGS("--key=k.pem", "6080", "h:1"), "wsgate: --key needs --cert");
    assert_refused(ARGS("60x80", "h:1"),
                   "wsgate: error parsing listen port: \"60x80\" (expected [source_addr:]port, "
                   "port 1..65535)");
    assert_refused(ARGS("6080", "h:99999"),
                   "wsgate: error parsing target: \"h:99999\" (expected target_addr:target_port)");
    assert_refused(ARGS("6080", "5900"),
                   "wsgate: error parsing target: \"5900\" (expected target_addr:target_port)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_which_form),
        cmocka_unit_test(test_positional_form),
        cmocka_unit_test(test_options_both_spellings),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_token_files_and_unix),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
