/* auth.c - JWT verification with OpenSSL; see auth.h.
 *
 * The algorithm comes from the key, never from the token: a verifier with a
 * secret accepts only HS256, one with an RSA key only RS256, one with a P-256
 * key only ES256. A token's "alg" must say the same, so "none" and the
 * HS256-signed-with-the-public-key trick are refused before any crypto. */
#include "auth.h"

#include "base64.h"

#include "config.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum jwt_alg { ALG_HS256, ALG_RS256, ALG_ES256 };

struct auth_verifier {
    enum jwt_alg alg;
    unsigned char *secret; /* HS256; owned, wiped on destroy */
    size_t secret_len;
    EVP_PKEY *key; /* RS256 / ES256; owned */
    char *issuer, *audience;
    int64_t leeway_s;
};

static const char *const alg_names[] = {"HS256", "RS256", "ES256"};

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

/* ES256 is P-256 only (RFC 7518 3.4): not secp256k1 nor brainpoolP256r1. */
static bool is_p256(EVP_PKEY *key)
{
    char group[64] = "";
    return EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                          NULL) == 1 &&
           strcmp(group, "prime256v1") == 0;
}

struct auth_verifier *auth_verifier_create(const struct wsg_jwt *cfg, char *err, size_t err_len)
{
    struct auth_verifier *v = calloc(1, sizeof(*v));
    if (!v) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    v->leeway_s = cfg->leeway_s;
    v->issuer = dup_or_null(cfg->issuer);
    v->audience = dup_or_null(cfg->audience);
    if (cfg->secret) {
        v->alg = ALG_HS256;
        v->secret_len = strlen(cfg->secret);
        v->secret = (unsigned char *)dup_or_null(cfg->secret);
        if (!v->secret)
            goto oom;
        return v;
    }
    FILE *f = cfg->public_key ? fopen(cfg->public_key, "r") : NULL;
    if (!f) {
        snprintf(err, err_len, "auth.jwt.public_key: cannot open %s",
                 cfg->public_key ? cfg->public_key : "(none)");
        auth_verifier_destroy(v);
        return NULL;
    }
    v->key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (!v->key) {
        snprintf(err, err_len, "auth.jwt.public_key: %s is not a PEM public key", cfg->public_key);
        auth_verifier_destroy(v);
        return NULL;
    }
    int type = EVP_PKEY_get_base_id(v->key);
    if (type == EVP_PKEY_RSA && EVP_PKEY_get_bits(v->key) >= 2048) {
        v->alg = ALG_RS256;
    } else if (type == EVP_PKEY_EC && is_p256(v->key)) {
        v->alg = ALG_ES256;
    } else {
        snprintf(err, err_len,
                 "auth.jwt.public_key: %s: expected an RSA key of 2048 bits or more (RS256) or "
                 "a P-256 EC key (ES256)",
                 cfg->public_key);
        auth_verifier_destroy(v);
        return NULL;
    }
    return v;
oom:
    snprintf(err, err_len, "out of memory");
    auth_verifier_destroy(v);
    return NULL;
}

void auth_verifier_destroy(struct auth_verifier *v)
{
    if (!v)
        return;
    if (v->secret) {
        OPENSSL_cleanse(v->secret, v->secret_len);
        free(v->secret);
    }
    EVP_PKEY_free(v->key);
    free(v->issuer);
    free(v->audience);
    free(v);
}

/* Unpadded base64url (RFC 7515) into a malloc'd buffer; NULL if invalid
 * (or without memory: either way the token is refused). */
static unsigned char *b64url_decode(const char *s, size_t len, size_t *out_len)
{
    uint8_t *out;
    return base64_decode(BASE64_URL, s, len, &out, out_len) == 0 ? out : NULL;
}

/* --- signatures ---------------------------------------------------------------- */

static bool verify_hs256(const struct auth_verifier *v, const char *signed_part, size_t len,
                         const unsigned char *sig, size_t sig_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), v->secret, (int)v->secret_len, (const unsigned char *)signed_part, len,
              mac, &mac_len))
        return false;
    return sig_len == mac_len && CRYPTO_memcmp(mac, sig, mac_len) == 0;
}

static bool verify_pkey(EVP_PKEY *key, const char *signed_part, size_t len,
                        const unsigned char *sig, size_t sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
              EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)signed_part, len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* JOSE's ES256 signature is r || s (32 bytes each); OpenSSL wants DER. */
static bool verify_es256(EVP_PKEY *key, const char *signed_part, size_t len,
                         const unsigned char *sig, size_t sig_len)
{
    if (sig_len != 64)
        return false;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
        ECDSA_SIG_free(es);
        BN_free(r);
        BN_free(s);
        return false;
    }
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es); /* frees r and s */
    bool ok = der_len > 0 && verify_pkey(key, signed_part, len, der, (size_t)der_len);
    OPENSSL_free(der);
    return ok;
}

/* --- claims ------------------------------------------------------------------- */

static bool audience_matches(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    size_t i;
    json_t *a;
    json_array_foreach (aud, i, a) {
        if (json_is_string(a) && strcmp(json_string_value(a), want) == 0)
            return true;
    }
    return false;
}

static bool check_claims(const struct auth_verifier *v, json_t *claims, int64_t now, char *reason,
                         size_t reason_len)
{
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    if (!exp) {
        snprintf(reason, reason_len, "token has no \"exp\"");
        return false;
    }
    if (!json_is_number(exp) || (nbf && !json_is_number(nbf))) {
        snprintf(reason, reason_len, "token \"exp\"/\"nbf\" is not a number");
        return false;
    }
    /* RFC 7519 4.1.4: not accepted "on or after" exp. */
    if ((double)now >= json_number_value(exp) + (double)v->leeway_s) {
        snprintf(reason, reason_len, "token expired");
        return false;
    }
    if (nbf && (double)now + (double)v->leeway_s < json_number_value(nbf)) {
        snprintf(reason, reason_len, "token not valid yet");
        return false;
    }
    if (v->issuer) {
        json_t *iss = json_object_get(claims, "iss");
        if (!json_is_string(iss) || strcmp(json_string_value(iss), v->issuer) != 0) {
            snprintf(reason, reason_len, "token issuer not accepted");
            return false;
        }
    }
    if (v->audience && !audience_matches(json_object_get(claims, "aud"), v->audience)) {
        snprintf(reason, reason_len, "token audience not accepted");
        return false;
    }
    return true;
}

static json_t *decode_json_part(const char *s, size_t len)
{
    size_t n = 0;
    unsigned char *raw = b64url_decode(s, len, &n);
    if (!raw)
        return NULL;
    json_t *j = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

json_t *auth_verify(const struct auth_verifier *v, const char *token, size_t len, int64_t now,
                    char *reason, size_t reason_len)
{
    if (!v || !token || len == 0 || len > AUTH_TOKEN_MAX_BYTES) {
        snprintf(reason, reason_len, "%s", len ? "token too long" : "no token");
        return NULL;
    }
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token))) {
        snprintf(reason, reason_len, "token is not a compact JWT");
        return NULL;
    }
    json_t *header = decode_json_part(token, (size_t)(dot1 - token));
    json_t *alg = json_object_get(header, "alg");
    if (!header || !json_is_string(alg)) {
        json_decref(header);
        snprintf(reason, reason_len, "token header unreadable");
        return NULL;
    }
    bool alg_ok = strcmp(json_string_value(alg), alg_names[v->alg]) == 0;
    /* RFC 7515 4.1.11: extensions we do not implement must be refused. */
    bool has_crit = json_object_get(header, "crit") != NULL;
    json_decref(header);
    if (has_crit) {
        snprintf(reason, reason_len, "token header has \"crit\" extensions (not supported)");
        return NULL;
    }
    if (!alg_ok) {
        snprintf(reason, reason_len, "token algorithm not accepted (expected %s)",
                 alg_names[v->alg]);
        return NULL;
    }

    size_t sig_len = 0;
    unsigned char *sig = b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), &sig_len);
    size_t signed_len = (size_t)(dot2 - token);
    bool valid =
        sig && (v->alg == ALG_HS256   ? verify_hs256(v, token, signed_len, sig, sig_len)
                : v->alg == ALG_RS256 ? verify_pkey(v->key, token, signed_len, sig, sig_len)
                                      : verify_es256(v->key, token, signed_len, sig, sig_len));
    free(sig);
    if (!valid) {
        snprintf(reason, reason_len, "token signature invalid");
        return NULL;
    }
    json_t *claims = decode_json_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (!claims) {
        snprintf(reason, reason_len, "token claims unreadable");
        return NULL;
    }
    if (!check_claims(v, claims, now, reason, reason_len)) {
        json_decref(claims);
        return NULL;
    }
    return claims;
}

const char *auth_claim_value(json_t *claims, const char *name, char *buf, size_t buf_len)
{
    json_t *v = json_object_get(claims, name);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        return strlen(s) == json_string_length(v) ? s : NULL;
    }
    if (json_is_integer(v)) {
        snprintf(buf, buf_len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    return NULL;
}

static long copy_token(const char *s, size_t n, char *out, size_t out_len)
{
    if (n == 0)
        return 0;
    if (n >= out_len)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return (long)n;
}

const char *auth_cookie_value(const char *cookies, const char *name, size_t *len)
{
    size_t name_len = name ? strlen(name) : 0;
    if (!cookies || name_len == 0)
        return NULL;
    for (const char *p = cookies; *p;) {
        p += strspn(p, " \t;");
        size_t pair = strcspn(p, ";");
        const char *eq = memchr(p, '=', pair);
        if (eq && (size_t)(eq - p) == name_len && memcmp(p, name, name_len) == 0) {
            const char *v = eq + 1;
            size_t n = pair - (size_t)(v - p);
            while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                n--;
            if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
                v++;
                n -= 2;
            }
            *len = n;
            return v;
        }
        p += pair;
    }
    return NULL;
}

long auth_find_token(const char *authorization, const char *query_token, const char *cookies,
                     const char *cookie_name, const char *subprotocols, char *out, size_t out_len)
{
    if (authorization && strncasecmp(authorization, "Bearer ", 7) == 0) {
        const char *t = authorization + 7;
        while (*t == ' ')
            t++;
        size_t n = strcspn(t, " ");
        return copy_token(t, n, out, out_len);
    }
    if (query_token && *query_token)
        return copy_token(query_token, strlen(query_token), out, out_len);
    size_t cookie_len = 0;
    const char *cookie = auth_cookie_value(cookies, cookie_name, &cookie_len);
    if (cookie && cookie_len > 0)
        return copy_token(cookie, cookie_len, out, out_len);
    for (const char *p = subprotocols; p && *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, " \t,");
        if (n > 7 && strncmp(p, "bearer.", 7) == 0)
            return copy_token(p + 7, n - 7, out, out_len);
        p += n;
    }
    return 0;
}
