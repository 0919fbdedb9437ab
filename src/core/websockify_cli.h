/* websockify_cli.h - websockify's command line, translated into a wsgate
 * config: `wsgate [options] [source_addr:]source_port [target_addr:target_port]`
 * with websockify's option names and meanings. Pure: argv in, a JSON config
 * (for the normal loader, so every check of a config file applies) and the
 * few process settings that are no part of a config out. Options websockify
 * has and wsgate does not are refused by name, never ignored. */
#ifndef WSGATE_WEBSOCKIFY_CLI_H
#define WSGATE_WEBSOCKIFY_CLI_H

#include <stdbool.h>
#include <stddef.h>

/* websockify's certificate when --cert is not given, in the working directory. */
#define WEBSOCKIFY_CLI_DEFAULT_CERT "self.pem"

/* The name config errors of a translated command line carry. */
#define WEBSOCKIFY_CLI_SOURCE "command line"

/* The usage lines and options of the websockify form, for --help. */
extern const char websockify_cli_usage[];

/* True if argv is the websockify form: a positional argument, or an option
 * only websockify has (--help and wsgate's own -c, --config, --check,
 * --log-level and --version do not count; neither does an option that
 * neither has, which wsgate's own parser refuses). */
bool websockify_cli_wanted(int argc, char *const *argv);

enum websockify_cli_status {
    WEBSOCKIFY_CLI_RUN,   /* `config_json` and the settings below are filled */
    WEBSOCKIFY_CLI_HELP,  /* --help: print the usage, exit 0 */
    WEBSOCKIFY_CLI_ERROR, /* one line in err; exit 2, as websockify does */
};

struct websockify_cli {
    char *config_json;     /* owned: the wsgate config the command line means */
    char *log_file;        /* owned or NULL: --log-file, where log lines go */
    bool verbose;          /* --verbose / -v: debug log level */
    const char *log_level; /* borrowed from argv or NULL: wsgate's --log-level, checked */
    unsigned
        idle_timeout_s;     /* --idle-timeout: exit after this long with no connection; 0 = never */
    char *web_dir;          /* owned or NULL: --web, checked to be a directory by the caller */
    bool default_cert_used; /* TLS with ./self.pem, no --cert given */
};

/* Parses argv (argv[0] is the program). `default_cert_exists`: whether
 * WEBSOCKIFY_CLI_DEFAULT_CERT is there, which websockify then uses without
 * --cert (the caller looks; this module does no I/O). On
 * WEBSOCKIFY_CLI_ERROR err holds one line such as "wsgate: --record is a
 * websockify option wsgate does not support". Free `out` with
 * websockify_cli_free() whatever the status. */
enum websockify_cli_status websockify_cli_parse(int argc, char *const *argv,
                                                bool default_cert_exists,
                                                struct websockify_cli *out, char *err,
                                                size_t err_len);

void websockify_cli_free(struct websockify_cli *c);

#endif
