/* websockify_run.c - websockify's command line applied: see websockify_run.h. */
#include "websockify_run.h"

#include "config.h"
#include "log.h"
#include "map_watch.h"
#include "websockify_cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* websockify's parser exits 2 on every mistake; so do we in this form. */
#define EXIT_USAGE 2

static void print_errors(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        fprintf(stderr, "wsgate: %s\n", errs->lines[i]);
}

int websockify_run_setup(int argc, char **argv, struct wsg_config **cfg, struct map_watch **maps,
                         unsigned *idle_exit_s)
{
    struct websockify_cli cli;
    char err[512];
    int status = WEBSOCKIFY_RUN_SERVE;
    bool self_pem = access(WEBSOCKIFY_CLI_DEFAULT_CERT, F_OK) == 0;
    switch (websockify_cli_parse(argc, argv, self_pem, &cli, err, sizeof(err))) {
    case WEBSOCKIFY_CLI_HELP:
        websockify_cli_free(&cli);
        return WEBSOCKIFY_RUN_HELP;
    case WEBSOCKIFY_CLI_ERROR:
        fprintf(stderr, "%s\n", err);
        websockify_cli_free(&cli);
        return EXIT_USAGE;
    case WEBSOCKIFY_CLI_RUN:
        break;
    }
    /* The loader takes any "dir"; websockify would fail at the first request. */
    struct stat st;
    if (cli.web_dir && (stat(cli.web_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        fprintf(stderr, "wsgate: --web %s: %s\n", cli.web_dir,
                errno && !S_ISDIR(st.st_mode) ? strerror(errno) : "not a directory");
        websockify_cli_free(&cli);
        return EXIT_USAGE;
    }
    /* Log lines are appended, as websockify's logging.FileHandler does. */
    if (cli.log_file && !freopen(cli.log_file, "a", stderr)) {
        fprintf(stdout, "wsgate: --log-file %s: %s\n", cli.log_file, strerror(errno));
        websockify_cli_free(&cli);
        return EXIT_USAGE;
    }
    if (cli.log_file)
        setvbuf(stderr, NULL, _IOLBF, 0);
    if (cli.log_level)
        log_set_level((enum log_level)log_level_parse(cli.log_level));
    if (cli.verbose)
        log_set_level(LOG_DEBUG);

    if (cli.default_cert_used)
        log_info("TLS with websockify's default certificate", "cert", WEBSOCKIFY_CLI_DEFAULT_CERT);
    struct config_errors errs = {0};
    /* Relative paths (--web, --cert, token files) are the working directory's. */
    *cfg = config_load_string(cli.config_json, WEBSOCKIFY_CLI_SOURCE, ".", &errs);
    if (*cfg && !(*maps = map_watch_create(*cfg, &errs))) {
        config_free(*cfg);
        *cfg = NULL;
    }
    if (!*cfg) {
        print_errors(&errs);
        status = EXIT_USAGE;
    }
    config_errors_free(&errs);
    *idle_exit_s = cli.idle_timeout_s;
    websockify_cli_free(&cli);
    return status;
}
