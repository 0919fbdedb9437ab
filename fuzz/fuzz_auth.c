/* fuzz_auth.c - JWT verification and token discovery (src/core/auth.c).
 *
 * Input: byte 0: mode and verifier options; then
 *  mode 0: the rest is a compact token, verified as is (HS256 verifier);
 *  mode 1: line 1 is a JWT header, the rest the claims, both raw JSON
 *          text: the target base64url-encodes them and signs with the
 *          verifier's own secret, so the claim checks are reached;
 *  mode 2: the rest is a token for an ES256 verifier (a key made at start);
 *  mode 3: three lines for auth_find_token (Authorization header, token
 *          query value, offered subprotocols).
 * Properties:
 *  - a token is accepted only with "alg" HS256 (ES256 for that verifier),
 *    a numeric "exp" not past (with leeway), "nbf" not in the future, and
 *    the configured "iss"/"aud";
 *  - the reason for a refusal is one line and never holds the token's
 *    signature or claims part;
 *  - auth_claim_value gives strings without NUL and integers' digits;
 *  - auth_find_token copies a piece of one of its inputs, within out_len. */
#define _GNU_SOURCE /* memrchr */
#include "fuzz_util.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <strings.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"

#define NOW 1700000000
#define LEEWAY 30

static struct auth_verifier *hs_plain, *hs_iss_aud, *es;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    struct wsg_jwt j = {.secret = "fuzz-secret", .leeway_s = LEEWAY};
    hs_plain = auth_verifier_create(&j, err, sizeof err);
    j.issuer = "https://id.example.com";
    j.audience = "wsgate";
    hs_iss_aud = auth_verifier_create(&j, err, sizeof err);

    /* An ES256 public key in a temporary file, for the verifier to load. */
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char path[] = "/tmp/wsgate-fuzz-es256-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f && key && PEM_write_PUBKEY(f, key) == 1) {
        fclose(f);
        struct wsg_jwt e = {.public_key = path, .leeway_s = LEEWAY};
        es = auth_verifier_create(&e, err, sizeof err);
    } else if (f) {
        fclose(f);
    }
    unlink(path);
    EVP_PKEY_free(key);
    if (!hs_plain || !hs_iss_aud || !es) {
        fprintf(stderr, "fuzz_auth: cannot build the verifiers\n");
        abort();
    }
    return 0;
}

static char *b64url(const uint8_t *in, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(len * 4 / 3 + 4), *o = out;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        *o++ = abc[(v >> 6) & 63];
        *o++ = abc[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        *o++ = abc[(v >> 6) & 63];
    }
    *o = '\0';
    return out;
}

static void check_accepted(const struct auth_verifier *v, json_t *claims, const char *alg_want,
                           const char *header_json)
{
    if (header_json) {
        json_t *h = json_loads(header_json, JSON_REJECT_DUPLICATES, NULL);
        json_t *alg = json_object_get(h, "alg");
        FUZZ_CHECK(json_is_string(alg) && strcmp(json_string_value(alg), alg_want) == 0,
                   "accepted a token whose header is %s", header_json);
        json_decref(h);
    }
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    FUZZ_CHECK(json_is_number(exp), "accepted without a numeric exp");
    FUZZ_CHECK(json_number_value(exp) + LEEWAY >= NOW, "accepted an expired token");
    FUZZ_CHECK(!nbf || (json_is_number(nbf) && json_number_value(nbf) <= NOW + LEEWAY),
               "accepted a token not valid yet");
    if (v == hs_iss_aud) {
        json_t *iss = json_object_get(claims, "iss"), *aud = json_object_get(claims, "aud");
        FUZZ_CHECK(json_is_string(iss) &&
                       strcmp(json_string_value(iss), "https://id.example.com") == 0,
                   "accepted a foreign issuer");
        bool aud_ok = json_is_string(aud) && strcmp(json_string_value(aud), "wsgate") == 0;
        size_t i;
        json_t *a;
        json_array_foreach (aud, i, a)
            aud_ok |= json_is_string(a) && strcmp(json_string_value(a), "wsgate") == 0;
        FUZZ_CHECK(aud_ok, "accepted a foreign audience");
    }
    char buf[8]; /* small: digits may not fit */
    const char *sub = auth_claim_value(claims, "sub", buf, sizeof buf);
    json_t *s = json_object_get(claims, "sub");
    if (sub && json_is_string(s))
        FUZZ_CHECK(strlen(sub) == json_string_length(s), "claim with a NUL given out");
    if (sub && !json_is_string(s))
        FUZZ_CHECK(json_is_integer(s) && sub == buf && strlen(buf) < sizeof buf, "claim digits");
    if (!sub)
        FUZZ_CHECK(
            !s || !(json_is_integer(s) ||
                    (json_is_string(s) && strlen(json_string_value(s)) == json_string_length(s))),
            "a usable claim refused");
}

static void verify(const struct auth_verifier *v, const char *tok, size_t len, const char *alg,
                   const char *header_json)
{
    char reason[128];
    reason[0] = '\0';
    json_t *claims = auth_verify(v, tok, len, NOW, reason, sizeof reason);
    if (claims) {
        check_accepted(v, claims, alg, header_json);
        json_decref(claims);
        return;
    }
    FUZZ_CHECK(reason[0] && fz_is_one_line(reason), "refusal reason \"%s\"", reason);
    /* The reason never repeats the token: check its last part (signature). */
    const char *dot = memrchr(tok, '.', len);
    if (dot && strlen(dot + 1) >= 6 && len == strlen(tok))
        FUZZ_CHECK(!strstr(reason, dot + 1), "reason holds the signature: %s", reason);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz z = fz_init(data, size);
    uint8_t b0 = fz_byte(&z);
    const struct auth_verifier *hs = (b0 >> 2) & 1 ? hs_iss_aud : hs_plain;
    switch (b0 & 3) {
    case 0: {
        size_t len;
        char *tok = fz_rest(&z, &len);
        verify(hs, tok, len, "HS256", NULL);
        free(tok);
        break;
    }
    case 1: {
        size_t hlen, clen;
        char *h = fz_line_n(&z, &hlen), *c = fz_rest(&z, &clen);
        char *hb = b64url((const uint8_t *)h, hlen), *cb = b64url((const uint8_t *)c, clen);
        size_t sl = strlen(hb) + strlen(cb) + 1;
        char *tok = malloc(sl + 64);
        snprintf(tok, sl + 1, "%s.%s", hb, cb);
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        HMAC(EVP_sha256(), "fuzz-secret", 11, (const unsigned char *)tok, sl, mac, &mac_len);
        char *sig = b64url(mac, mac_len);
        strcat(tok, ".");
        strcat(tok, sig);
        /* The header as the verifier decodes it (hlen bytes; NUL-safe). */
        char *hcopy = strndup(h, hlen);
        verify(hs, tok, strlen(tok), "HS256", strlen(hcopy) == hlen ? hcopy : NULL);
        /* The same token must fail for the ES256 verifier. */
        char reason[128];
        json_t *cl = auth_verify(es, tok, strlen(tok), NOW, reason, sizeof reason);
        FUZZ_CHECK(!cl, "ES256 verifier accepted an HS256 token");
        free(hcopy);
        free(sig);
        free(tok);
        free(hb);
        free(cb);
        free(h);
        free(c);
        break;
    }
    case 2: {
        size_t len;
        char *tok = fz_rest(&z, &len);
        verify(es, tok, len, "ES256", NULL);
        free(tok);
        break;
    }
    case 3: {
        char *a = fz_line(&z), *q = fz_line(&z), *s = fz_line(&z), *c = fz_line(&z);
        size_t out_len = 1 + ((b0 >> 3) % 2 ? (b0 >> 4) : 200);
        char *out = malloc(out_len);
        long n = auth_find_token(*a ? a : NULL, *q ? q : NULL, *c ? c : NULL, "sid", *s ? s : NULL,
                                 out, out_len);
        FUZZ_CHECK(n >= -1 && n < (long)out_len, "auth_find_token %ld (out_len %zu)", n, out_len);
        if (n > 0) {
            FUZZ_CHECK(strlen(out) == (size_t)n, "token length");
            FUZZ_CHECK(strstr(a, out) || strstr(q, out) || strstr(s, out) || strstr(c, out),
                       "token \"%s\" is in none of the inputs", out);
            if (strncasecmp(a, "Bearer ", 7) == 0)
                FUZZ_CHECK(!strchr(out, ' ') && strstr(a, out),
                           "token \"%s\" is not one word of the Authorization header", out);
        }
        free(out);
        free(a);
        free(q);
        free(s);
        free(c);
        break;
    }
    }
    return 0;
}
