/* websockify_run.h - starting from websockify's command line: the parsed
 * options applied to this process (log file, log level) and the config they
 * mean loaded the way a config file is. main.c only dispatches here. */
#ifndef WSGATE_WEBSOCKIFY_RUN_H
#define WSGATE_WEBSOCKIFY_RUN_H

struct wsg_config;
struct map_watch;

enum {
    WEBSOCKIFY_RUN_SERVE = -1, /* *cfg and *maps are the caller's to serve */
    WEBSOCKIFY_RUN_HELP = -2,  /* print the usage, exit 0 */
};

/* Parses argv as websockify would. Returns WEBSOCKIFY_RUN_SERVE with the
 * config, its target maps and the idle exit (0: none) filled in, or
 * WEBSOCKIFY_RUN_HELP, or an exit status (2) after printing one line per
 * error on stderr. */
int websockify_run_setup(int argc, char **argv, struct wsg_config **cfg, struct map_watch **maps,
                         unsigned *idle_exit_s);

#endif
