/* fuzz_target_map.c - websockify-style token files (src/core/target_map.c).
 *
 * Input: the file's bytes, written to an in-memory file (memfd) that
 * target_map_load reads by its /proc/self/fd path.
 * Properties:
 *  - a map xor errors; every error line names the file and is one line
 *    of UTF-8;
 *  - a loaded map from JSON has one entry per key of the JSON object, each
 *    found by target_map_lookup with at least one target, a non-empty host
 *    and a port 1..65535; a key not in the file is not found;
 *  - a loaded map from websockify's lines has at most one entry per line. */
#define _GNU_SOURCE
#include "fuzz_util.h"

#include <jansson.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "framing.h"
#include "target_map.h"

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fd = memfd_create("wsgate-fuzz-map", 0);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();

    struct config_errors errs = {0};
    struct target_map *m = target_map_load(path, "map.json", &errs);
    FUZZ_CHECK(!m == (errs.count > 0), "map %p with %zu errors", (void *)m, errs.count);
    for (size_t i = 0; i < errs.count; i++) {
        FUZZ_CHECK(strncmp(errs.lines[i], "map.json", 8) == 0, "error without the file: %s",
                   errs.lines[i]);
        FUZZ_CHECK(fz_is_one_line_but_near(errs.lines[i]), "error is not one line: %s",
                   errs.lines[i]);
        FUZZ_CHECK(fz_is_utf8_but_near(errs.lines[i]), "error is not UTF-8: %s", errs.lines[i]);
    }
    size_t first = 0;
    while (first < size && (data[first] == ' ' || (data[first] >= '\t' && data[first] <= '\r')))
        first++;
    bool is_json = first < size && (data[first] == '{' || data[first] == '[' || data[first] == '"');
    if (m && !is_json) {
        size_t lines = 1;
        for (size_t i = 0; i < size; i++)
            lines += data[i] == '\n';
        FUZZ_CHECK(target_map_size(m) <= lines, "%zu entries from %zu lines", target_map_size(m),
                   lines);
        target_map_free(m);
        m = NULL;
    }
    if (m) {
        json_t *root =
            json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
        FUZZ_CHECK(json_is_object(root), "a map from a file that is no JSON object");
        FUZZ_CHECK(target_map_size(m) == json_object_size(root), "%zu entries for %zu keys",
                   target_map_size(m), json_object_size(root));
        const char *key;
        json_t *v;
        json_object_foreach (root, key, v) {
            size_t n = 0;
            const struct wsg_target *t = target_map_lookup(m, key, &n);
            FUZZ_CHECK(t && n > 0, "key \"%s\" not found", key);
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK(t[i].host && t[i].host[0] && t[i].port >= 1 && t[i].port <= 65535,
                           "key \"%s\": bad target %zu", key, i);
        }
        size_t n = 1;
        if (!json_object_get(root, "\x01no-such-key"))
            FUZZ_CHECK(!target_map_lookup(m, "\x01no-such-key", &n) && n == 0, "phantom key");
        json_decref(root);
        target_map_free(m);
    }
    config_errors_free(&errs);
    return 0;
}
