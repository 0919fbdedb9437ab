/* auth.h - JWT verification at the handshake (SPEC.md "auth"): HS256 with a
 * shared secret, RS256 / ES256 with a PEM public key, all by OpenSSL; the
 * claims a valid token carries are kept for {jwt.<claim>} templates. No
 * sockets: unit-tested and fuzzed. */
#ifndef WSGATE_AUTH_H
#define WSGATE_AUTH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct wsg_jwt;
struct auth_verifier;

/* Builds a verifier from the config (loads the public key). NULL with a
 * one-line reason in err when the key cannot be used. */
struct auth_verifier *auth_verifier_create(const struct wsg_jwt *cfg, char *err, size_t err_len);
void auth_verifier_destroy(struct auth_verifier *v);

/* Longest token accepted (a header line of lws holds less anyway). */
#define AUTH_TOKEN_MAX_BYTES 4096

/* Verifies a compact JWT (header.payload.signature) at time `now` (Unix
 * seconds): the algorithm must be the one the key is for (never "none", never
 * HS256 with a public key), the signature valid, "exp" present and not past,
 * "nbf" not in the future (both with the configured leeway), "iss" / "aud"
 * as configured. Returns the claims (the caller json_decref()s them), or NULL
 * with a one-line reason that never contains the token. */
json_t *auth_verify(const struct auth_verifier *v, const char *token, size_t len, int64_t now,
                    char *reason, size_t reason_len);

/* The value of claim `name` for a template: a string as is, an integer as
 * decimal digits; NULL for anything else (objects, arrays, reals, booleans,
 * null, absent). buf holds the digits. */
const char *auth_claim_value(json_t *claims, const char *name, char *buf, size_t buf_len);

/* Finds the token of a request, sources in the order of SPEC-2 A:
 * `authorization` ("Bearer <jwt>"), else a `token` query value, else the
 * cookie `cookie_name` of the Cookie header `cookies`, else a "bearer.<jwt>"
 * entry of the offered subprotocols (comma-separated). Any may be NULL (a
 * NULL cookie_name: no cookie source). Copies it into out; returns its
 * length, 0 if there is none, -1 if it is longer than out. */
long auth_find_token(const char *authorization, const char *query_token, const char *cookies,
                     const char *cookie_name, const char *subprotocols, char *out, size_t out_len);

/* The value of cookie `name` in a Cookie header ("a=1; b=2", RFC 6265; a
 * value in double quotes loses them), the first if several have the name.
 * Returns a pointer into `cookies` and its length in *len, or NULL. */
const char *auth_cookie_value(const char *cookies, const char *name, size_t *len);

#endif
