/* fuzz_auth_service.c - the auth service's answer and request (src/core/
 * auth_service.c): the answer body comes from a service over the network,
 * the request's fields from the client's handshake.
 *
 * Input: byte 0: the HTTP status picked from a list (0, 200, 401, 403, 500,
 * 204, 302); then four lines (path, query, origin, a cookie header value)
 * and the rest: the answer body.
 * Properties:
 *  - auth_service_answer: a verdict in range; claims only when allowed,
 *    and then a JSON object; 401 / 403 / other statuses map as SPEC-2 A
 *    says; the reason is one short line;
 *  - auth_service_body: JSON that parses back to the same fields (strings
 *    that are not UTF-8 become null);
 *  - auth_service_key: two requests differing only in a header value have
 *    different keys. */
#include "fuzz_util.h"

#include <jansson.h>

#include "auth_service.h"

static const int statuses[] = {0, 200, 401, 403, 500, 204, 302, 200};

static void check_answer(int status, const char *body, size_t len)
{
    json_t *claims = (json_t *)1;
    char reason[120];
    enum auth_verdict v = auth_service_answer(status, body, len, &claims, reason, sizeof(reason));
    FUZZ_CHECK(v >= AUTH_ALLOWED && v < AUTH_VERDICT_COUNT, "verdict %d", (int)v);
    FUZZ_CHECK(!claims || (v == AUTH_ALLOWED && json_is_object(claims)), "claims without allow");
    FUZZ_CHECK(v != AUTH_ALLOWED || status == 200, "allowed with status %d", status);
    FUZZ_CHECK((v == AUTH_UNAUTHORIZED) == (status == 401), "401 -> %d", (int)v);
    FUZZ_CHECK((v == AUTH_FORBIDDEN) == (status == 403), "403 -> %d", (int)v);
    FUZZ_CHECK(strlen(reason) > 0 && !strpbrk(reason, "\r\n") && strlen(reason) < 100,
               "reason \"%s\"", reason);
    json_decref(claims);
}

static void check_body(const char *path, const char *query, const char *origin, const char *cookie)
{
    static const char *const names[] = {"cookie", "authorization"};
    const char *values[] = {*cookie ? cookie : NULL, NULL};
    struct auth_request_info r = {.route = "r",
                                  .path = path,
                                  .query = query,
                                  .client = "127.0.0.1",
                                  .origin = *origin ? origin : NULL,
                                  .subprotocols = query,
                                  .header_names = names,
                                  .header_values = values,
                                  .n_headers = 2};
    size_t len = 0;
    char *body = auth_service_body(&r, &len);
    FUZZ_CHECK(body && strlen(body) == len, "body");
    json_t *doc = json_loads(body, 0, NULL);
    FUZZ_CHECK(json_is_object(doc), "body is not a JSON object: %s", body);
    json_t *p = json_object_get(doc, "path");
    FUZZ_CHECK(json_is_null(p) || strcmp(json_string_value(p), path) == 0, "path");
    json_t *o = json_object_get(doc, "origin");
    FUZZ_CHECK(*origin ? (json_is_null(o) || strcmp(json_string_value(o), origin) == 0)
                       : json_is_null(o),
               "origin");
    json_t *h = json_object_get(json_object_get(doc, "headers"), "cookie");
    FUZZ_CHECK(*cookie ? (json_is_null(h) || strcmp(json_string_value(h), cookie) == 0) : !h,
               "cookie");
    FUZZ_CHECK(!json_object_get(json_object_get(doc, "headers"), "authorization"),
               "absent header sent");
    FUZZ_CHECK(json_is_array(json_object_get(doc, "subprotocols")), "subprotocols");
    json_decref(doc);
    free(body);

    char *k1 = auth_service_key(&r, "http://a/b");
    values[1] = "";
    char *k2 = auth_service_key(&r, "http://a/b");
    FUZZ_CHECK(k1 && k2 && strcmp(k1, k2) != 0, "absent and empty header share a key");
    free(k1);
    free(k2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz z = fz_init(data, size);
    int status = statuses[fz_byte(&z) % 8];
    char *path = fz_line(&z), *query = fz_line(&z), *origin = fz_line(&z), *cookie = fz_line(&z);
    size_t len;
    char *rest = fz_rest(&z, &len);
    check_answer(status, rest, len);
    check_answer(200, rest, len);
    check_body(path, query, origin, cookie);
    free(rest);
    free(path);
    free(query);
    free(origin);
    free(cookie);
    return 0;
}
