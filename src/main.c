/* main.c - wsgate's command line, signals, start and stop; nothing else. */
#include "config.h"
#include "gateway.h"
#include "json_scratch.h"
#include "log.h"
#include "map_watch.h"
#include "metrics.h"
#include "backend_type.h"
#include "backends.h"
#include "rules.h"
#include "server.h"
#include "websockify_cli.h"
#include "websockify_run.h"
#include "workers.h"

#include <getopt.h>
#include <stdbool.h>
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef WSGATE_VERSION
#define WSGATE_VERSION "0.0.0"
#endif
#ifndef WSGATE_WWW_DIR_INSTALL
#define WSGATE_WWW_DIR_INSTALL "/usr/local/share/wsgate/www"
#endif
#ifndef WSGATE_WWW_DIR_BUILD
#define WSGATE_WWW_DIR_BUILD "www"
#endif

enum { EXIT_OK = 0, EXIT_CONFIG = 1, EXIT_RUNTIME = 2 };

static const char *config_label = "<built-in>"; /* what "config=" says without a file */

static void usage(FILE *out)
{
    fputs("usage: wsgate [-c FILE] [--check] [--log-level error|warn|info|debug]\n"
          "              [--version] [--help]\n",
          out);
    fputs(websockify_cli_usage, out);
    fputs("\n"
          "A WebSocket gateway: browsers connect over WebSocket, routes bridge each\n"
          "connection to a backend TCP socket or to MQTT topics.\n"
          "\n"
          "  -c, --config FILE   the JSON config (default: $WSGATE_CONFIG, else built-in:\n"
          "                      127.0.0.1:8080 with /healthz, /metrics and the demo page)\n"
          "      --check         validate the config, print \"config ok\" or every error\n"
          "      --log-level L   error, warn, info (default) or debug\n"
          "      --version       print the version\n"
          "  -h, --help          this text\n"
          "\n"
          "Exit status: 0 clean shutdown, 1 bad config or command line, 2 failure at start\n"
          "(2 also for any mistake in the websockify form, as websockify).\n",
          out);
}

/* A signal that arrives while the server is being made (before struct
 * gateway's `running` is set) is kept here and acted on as soon as it is
 * running. File-scope: only sig_atomic_t is safe to write from a handler. */
static volatile sig_atomic_t stop_pending, reload_pending;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_pending = 1;
    struct server *srv = gateway_get()->running;
    if (srv)
        server_stop(srv);
}

static void on_reload_signal(int sig)
{
    (void)sig;
    reload_pending = 1;
    struct server *srv = gateway_get()->running;
    if (srv)
        server_request_reload(srv);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_reload_signal;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

/* The demo page's directory for the built-in config: next to an installed
 * binary, else the source tree this binary was built from. */
static const char *default_www_dir(void)
{
    static const char *const candidates[] = {WSGATE_WWW_DIR_INSTALL, WSGATE_WWW_DIR_BUILD, NULL};
    for (const char *const *dir = candidates; *dir; dir++)
        if (access(*dir, R_OK | X_OK) == 0)
            return *dir;
    return NULL;
}

/* Loads the config and the target maps it names; prints every error. */
static struct wsg_config *load_config(const char *path, struct map_watch **maps)
{
    struct config_errors errs = {0};
    struct wsg_config *cfg =
        path ? config_load_file(path, &errs) : config_load_default(default_www_dir(), &errs);
    if (cfg) {
        *maps = map_watch_create(cfg, &errs);
        if (!*maps) {
            config_free(cfg);
            cfg = NULL;
        }
    }
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    if (!cfg && errs.count == 0)
        fprintf(stderr, "%s: cannot load config\n", path ? path : "<built-in>");
    config_errors_free(&errs);
    return cfg;
}

/* Runs the gateway in this process until SIGTERM/SIGINT (or, with
 * idle_exit_s, that long without a client); takes cfg and maps. */
static int serve(struct wsg_config *cfg, struct map_watch *maps, const char *config_path,
                 unsigned idle_exit_s)
{
    log_route_lws();
    install_signals();
    char err[512];
    struct server *srv = server_create(cfg, maps, config_path, err, sizeof(err));
    if (!srv) {
        log_error("cannot start", "error", err);
        metrics_shutdown();
        return EXIT_RUNTIME;
    }
    if (idle_exit_s)
        server_exit_when_idle(srv, idle_exit_s);
    workers_ready();
    log_info("wsgate started", "version", WSGATE_VERSION, "config",
             config_path ? config_path : config_label);
    gateway_get()->running = srv;
    if (stop_pending)
        server_stop(srv); /* SIGTERM during server_create: stop, don't swallow it */
    else if (reload_pending)
        server_request_reload(srv);
    server_run(srv);
    gateway_get()->running = NULL;
    log_info("wsgate stopped");
    server_destroy(srv);
    metrics_shutdown();
    gateway_release();
    return EXIT_OK;
}

/* What the supervisor hands each worker it starts. */
struct supervised {
    struct wsg_config *cfg; /* the config a worker starts with */
    struct map_watch *maps;
    const struct wsg_config *start_cfg; /* the subprotocols lws was started with */
    const char *config_path;
};

/* The workers' lws contexts know the subprotocol names of the start config. */
static bool subprotocol_in_config(void *ctx, const char *name)
{
    const struct wsg_config *cfg = ctx;
    for (size_t r = 0; r < cfg->n_routes; r++)
        for (size_t i = 0; i < cfg->routes[r].n_subprotocols; i++)
            if (strcmp(cfg->routes[r].subprotocols[i], name) == 0)
                return true;
    return false;
}

/* In a forked worker: its copy of the config is its own to run. */
static int run_worker(unsigned number, void *ctx)
{
    struct supervised *sup = ctx;
    backend_types_set_worker(&gateway_get()->backend_types, (int)number);
    struct wsg_config *cfg = sup->cfg;
    struct map_watch *maps = sup->maps;
    sup->cfg = NULL; /* this process's copy now belongs to the server */
    sup->maps = NULL;
    return serve(cfg, maps, sup->config_path, 0);
}

/* SIGHUP in the supervisor: a config that loads and could be reloaded
 * replaces the one restarted workers start with. The workers check and log
 * the reload themselves, so a refused one is not logged here again. */
static void reload_for_restarts(void *ctx)
{
    struct supervised *sup = ctx;
    if (!sup->config_path)
        return;
    struct config_errors errs = {0};
    struct wsg_config *next = config_load_file(sup->config_path, &errs);
    struct map_watch *maps = next ? map_watch_create(next, &errs) : NULL;
    if (next && maps)
        rules_check_reloadable(sup->cfg, next, subprotocol_in_config, (void *)sup->start_cfg,
                               &errs);
    if (!next || !maps || errs.count > 0) {
        map_watch_destroy(maps);
        config_free(next);
    } else {
        map_watch_destroy(sup->maps);
        if (sup->cfg != sup->start_cfg)
            config_free(sup->cfg);
        sup->cfg = next;
        sup->maps = maps;
    }
    config_errors_free(&errs);
}

int main(int argc, char **argv)
{
    enum { OPT_CHECK = 256, OPT_LOG_LEVEL, OPT_VERSION };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, OPT_CHECK},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    int check_only = 0, opt;
    json_scratch_install(); /* before any thread: per-message JSON calls no allocator */

    if (backends_register_builtin() != 0) {
        fprintf(stderr, "wsgate: the built-in backend types do not register\n");
        return EXIT_FAILURE;
    }
    if (websockify_cli_wanted(argc, argv)) {
        struct wsg_config *cfg = NULL;
        struct map_watch *maps = NULL;
        unsigned idle_exit_s = 0; /* --idle-timeout; 0: run until stopped */
        int rc = websockify_run_setup(argc, argv, &cfg, &maps, &idle_exit_s);
        if (rc == WEBSOCKIFY_RUN_HELP)
            usage(stdout);
        if (rc != WEBSOCKIFY_RUN_SERVE)
            return rc == WEBSOCKIFY_RUN_HELP ? EXIT_OK : rc;
        config_label = WEBSOCKIFY_CLI_SOURCE;
        return serve(cfg, maps, NULL, idle_exit_s);
    }

    while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case OPT_CHECK:
            check_only = 1;
            break;
        case OPT_LOG_LEVEL: {
            int level = log_level_parse(optarg);
            if (level < 0) {
                fprintf(stderr,
                        "wsgate: --log-level: expected error, warn, info or debug, got \"%s\"\n",
                        optarg);
                return EXIT_CONFIG;
            }
            log_set_level((enum log_level)level);
            break;
        }
        case OPT_VERSION:
            printf("wsgate %s (libwebsockets %s)\n", WSGATE_VERSION, lws_get_library_version());
            return EXIT_OK;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_CONFIG;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "wsgate: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return EXIT_CONFIG;
    }
    if (!config_path) {
        const char *env = getenv("WSGATE_CONFIG");
        if (env && *env)
            config_path = env;
    }

    struct map_watch *maps = NULL;
    struct wsg_config *cfg = load_config(config_path, &maps);
    if (!cfg)
        return EXIT_CONFIG;
    if (check_only) {
        printf("config ok\n");
        map_watch_destroy(maps);
        config_free(cfg);
        return EXIT_OK;
    }

    unsigned n_workers = workers_count(cfg);
    if (n_workers == 1)
        return serve(cfg, maps, config_path, 0);

    /* Several workers: this process only supervises. It keeps the config a
     * restarted worker starts with (reloaded on SIGHUP, like the workers). */
    char err[512];
    if (workers_check_listeners(cfg, err, sizeof(err)) != 0) {
        log_error("cannot start", "error", err);
        map_watch_destroy(maps);
        config_free(cfg);
        return EXIT_RUNTIME;
    }
    if (metrics_init(n_workers) != 0) {
        log_error("cannot start", "error", "no shared memory for the workers' metrics");
        map_watch_destroy(maps);
        config_free(cfg);
        return EXIT_RUNTIME;
    }
    struct supervised sup = {
        .cfg = cfg, .maps = maps, .start_cfg = cfg, .config_path = config_path};
    char count[12];
    snprintf(count, sizeof(count), "%u", n_workers);
    log_info("wsgate started", "version", WSGATE_VERSION, "config",
             config_path ? config_path : "<built-in>", "workers", count);
    int status = workers_run(n_workers, run_worker, reload_for_restarts, &sup);
    log_info("wsgate stopped");
    map_watch_destroy(sup.maps);
    if (sup.cfg != sup.start_cfg)
        config_free(sup.cfg);
    config_free(cfg);
    metrics_shutdown();
    return status;
}
