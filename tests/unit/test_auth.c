/* test_auth.c - cmocka tests for auth.c: JWT verification at the handshake.
 *
 * Keys are made here with OpenSSL 3 (RSA 2048, EC P-256, and a second of each
 * for "wrong key" cases); their public halves are written as PEM to mkstemp
 * files for auth_verifier_create. Tokens are built by hand (own base64url
 * encoder, EVP_DigestSign, ES256 DER signatures turned into JOSE's raw r||s),
 * so every malformed, forged or hostile variant can be made on purpose:
 * tampering, "none", algorithm confusion (HS256 keyed with the configured
 * public key's PEM text), wrong keys, exp/nbf/leeway, iss/aud, non-canonical
 * base64url, duplicate keys, over-long tokens. Also auth_claim_value (the
 * values {jwt.<claim>} templates may take) and auth_find_token (the three
 * token sources and their precedence). Every refusal's reason is checked to
 * be one line that never holds a piece of the token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth.h"
#include "config.h"

#define NOW ((int64_t)1700000000)
#define SECRET "s3cr3t-for-unit-tests-only"
#define ISSUER "https://id.example.com"

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            fail_msg("\"%s\" does not contain \"%s\"", (hay), (needle));                           \
    } while (0)

/* --- keys (made once for the whole run) ------------------------------------- */

struct keys {
    EVP_PKEY *rsa, *rsa_other, *ec, *ec_other;
    char rsa_pem_path[256], ec_pem_path[256];
    char *rsa_pem; /* the PEM text of the RSA public key (for the confusion attack) */
    char *ec_pem;
};
static struct keys K;

static char *pubkey_pem(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PUBKEY(b, key), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    assert_true(n > 0);
    char *out = malloc((size_t)n + 1);
    assert_non_null(out);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    return out;
}

/* Writes text to a new temp file; its path into path. */
static void write_temp(const char *text, size_t len, char *path, size_t path_len)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, path_len, "%s/wsgate-test-auth-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static void write_pubkey(EVP_PKEY *key, char *path, size_t path_len, char **pem_out)
{
    char *pem = pubkey_pem(key);
    write_temp(pem, strlen(pem), path, path_len);
    if (pem_out)
        *pem_out = pem;
    else
        free(pem);
}

static int keys_setup(void **state)
{
    (void)state;
    K.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    K.rsa_other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    K.ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    K.ec_other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!K.rsa || !K.rsa_other || !K.ec || !K.ec_other)
        return -1;
    write_pubkey(K.rsa, K.rsa_pem_path, sizeof(K.rsa_pem_path), &K.rsa_pem);
    write_pubkey(K.ec, K.ec_pem_path, sizeof(K.ec_pem_path), &K.ec_pem);
    return 0;
}

static int keys_teardown(void **state)
{
    (void)state;
    unlink(K.rsa_pem_path);
    unlink(K.ec_pem_path);
    free(K.rsa_pem);
    free(K.ec_pem);
    EVP_PKEY_free(K.rsa);
    EVP_PKEY_free(K.rsa_other);
    EVP_PKEY_free(K.ec);
    EVP_PKEY_free(K.ec_other);
    return 0;
}

/* --- verifiers ------------------------------------------------------------------ */

static struct auth_verifier *verifier(const char *secret, const char *public_key,
                                      const char *issuer, const char *audience, int64_t leeway)
{
    struct wsg_jwt cfg = {
        .secret = (char *)secret,
        .public_key = (char *)public_key,
        .issuer = (char *)issuer,
        .audience = (char *)audience,
        .leeway_s = leeway,
    };
    char err[300] = "";
    struct auth_verifier *v = auth_verifier_create(&cfg, err, sizeof(err));
    if (!v)
        fail_msg("auth_verifier_create: %s", err);
    return v;
}

static struct auth_verifier *hs_verifier(void) { return verifier(SECRET, NULL, NULL, NULL, 30); }
static struct auth_verifier *rs_verifier(void)
{
    return verifier(NULL, K.rsa_pem_path, NULL, NULL, 30);
}
static struct auth_verifier *es_verifier(void)
{
    return verifier(NULL, K.ec_pem_path, NULL, NULL, 30);
}

/* The refusal of a key file: NULL and a one-line reason naming the file. */
static void assert_key_refused(const char *path, const char *want)
{
    struct wsg_jwt cfg = {.public_key = (char *)path, .leeway_s = 30};
    char err[300] = "";
    struct auth_verifier *v = auth_verifier_create(&cfg, err, sizeof(err));
    if (v) {
        auth_verifier_destroy(v);
        fail_msg("the key in %s was accepted (wanted a refusal with \"%s\")", path, want);
    }
    assert_contains(err, path);
    assert_contains(err, want);
    assert_null(strchr(err, '\n'));
}

/* --- base64url and token building ---------------------------------------------- */

static char *b64url(const void *data, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = data;
    char *out = malloc(len * 4 / 3 + 4);
    assert_non_null(out);
    size_t n = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[n++] = abc[v >> 18 & 63];
        out[n++] = abc[v >> 12 & 63];
        out[n++] = abc[v >> 6 & 63];
        out[n++] = abc[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[n++] = abc[v >> 18 & 63];
        out[n++] = abc[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[n++] = abc[v >> 18 & 63];
        out[n++] = abc[v >> 12 & 63];
        out[n++] = abc[v >> 6 & 63];
    }
    out[n] = '\0';
    return out;
}

static char *b64url_str(const char *s) { return b64url(s, strlen(s)); }

/* Concatenates up to 5 strings (NULL ends the list) into a malloc'd one. */
static char *cat(const char *a, const char *b, const char *c, const char *d, const char *e)
{
    const char *parts[] = {a, b, c, d, e};
    size_t n = 0;
    for (int i = 0; i < 5 && parts[i]; i++)
        n += strlen(parts[i]);
    char *out = malloc(n + 1);
    assert_non_null(out);
    out[0] = '\0';
    for (int i = 0; i < 5 && parts[i]; i++)
        strcat(out, parts[i]);
    return out;
}

enum signer { SIGN_HS, SIGN_RS, SIGN_ES, SIGN_NONE };

static char *sign_hmac(const void *key, size_t key_len, const char *data)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, strlen(data),
                         mac, &mac_len));
    return b64url(mac, mac_len);
}

static unsigned char *digest_sign(EVP_PKEY *key, const char *data, size_t *sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(ctx, NULL, sig_len, (const unsigned char *)data, strlen(data)),
                     1);
    unsigned char *sig = malloc(*sig_len);
    assert_non_null(sig);
    assert_int_equal(EVP_DigestSign(ctx, sig, sig_len, (const unsigned char *)data, strlen(data)),
                     1);
    EVP_MD_CTX_free(ctx);
    return sig;
}

static char *sign_rsa(EVP_PKEY *key, const char *data)
{
    size_t n = 0;
    unsigned char *sig = digest_sign(key, data, &n);
    char *out = b64url(sig, n);
    free(sig);
    return out;
}

/* ECDSA P-256: DER from OpenSSL, raw r || s (32 bytes each) for JOSE. */
static void es256_raw(EVP_PKEY *key, const char *data, unsigned char raw[64])
{
    size_t n = 0;
    unsigned char *der = digest_sign(key, data, &n);
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
    assert_non_null(es);
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(es, &r, &s);
    assert_int_equal(BN_bn2binpad(r, raw, 32), 32);
    assert_int_equal(BN_bn2binpad(s, raw + 32, 32), 32);
    ECDSA_SIG_free(es);
    free(der);
}

static char *sign_ec(EVP_PKEY *key, const char *data)
{
    unsigned char raw[64];
    es256_raw(key, data, raw);
    return b64url(raw, sizeof(raw));
}

/* "<header b64>.<payload b64>" signed: the whole token, malloc'd. */
static char *sign_parts(const char *h64, const char *p64, enum signer how, EVP_PKEY *key)
{
    char *signing_input = cat(h64, ".", p64, NULL, NULL);
    char *sig = how == SIGN_HS   ? sign_hmac(SECRET, strlen(SECRET), signing_input)
                : how == SIGN_RS ? sign_rsa(key ? key : K.rsa, signing_input)
                : how == SIGN_ES ? sign_ec(key ? key : K.ec, signing_input)
                                 : strdup("");
    char *tok = cat(signing_input, ".", sig, NULL, NULL);
    free(signing_input);
    free(sig);
    return tok;
}

/* A token from header and payload JSON texts (encoded as given, so
 * duplicate keys and odd spacing survive). */
static char *make(const char *header, const char *payload, enum signer how, EVP_PKEY *key)
{
    char *h64 = b64url_str(header), *p64 = b64url_str(payload);
    char *tok = sign_parts(h64, p64, how, key);
    free(h64);
    free(p64);
    return tok;
}

#define HS_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define RS_HEADER "{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define ES_HEADER "{\"alg\":\"ES256\",\"typ\":\"JWT\"}"
#define ALICE "{\"sub\":\"alice\",\"exp\":1700000600}"

static const char *header_for(enum signer how)
{
    return how == SIGN_HS ? HS_HEADER : how == SIGN_RS ? RS_HEADER : ES_HEADER;
}

static char *make_alg(enum signer how, const char *payload)
{
    return make(header_for(how), payload, how, NULL);
}

/* --- verifying ------------------------------------------------------------------ */

static json_t *verify(const struct auth_verifier *v, const char *tok, int64_t now, char *reason,
                      size_t reason_len)
{
    reason[0] = '\0';
    return auth_verify(v, tok, strlen(tok), now, reason, reason_len);
}

/* The reason of a refusal: one line, not empty, holding no piece of the token
 * (any run of 8 of its characters), containing `want`. */
static void assert_refused_len(const struct auth_verifier *v, const char *tok, size_t len,
                               int64_t now, const char *want)
{
    char reason[200];
    memset(reason, 'x', sizeof(reason));
    reason[0] = '\0';
    json_t *claims = auth_verify(v, tok, len, now, reason, sizeof(reason));
    if (claims) {
        char *dump = json_dumps(claims, JSON_COMPACT);
        json_decref(claims);
        fail_msg("token accepted (wanted \"%s\"): claims %s", want, dump ? dump : "?");
    }
    assert_true(reason[0] != '\0');
    assert_non_null(memchr(reason, '\0', sizeof(reason)));
    assert_null(strchr(reason, '\n'));
    assert_contains(reason, want);
    for (size_t i = 0; i + 8 <= len; i++) {
        if (memchr(tok + i, '\0', 8))
            continue;
        char piece[9];
        memcpy(piece, tok + i, 8);
        piece[8] = '\0';
        if (strstr(reason, piece))
            fail_msg("reason \"%s\" holds a piece of the token (\"%s\")", reason, piece);
    }
}

static void assert_refused(const struct auth_verifier *v, const char *tok, int64_t now,
                           const char *want)
{
    assert_refused_len(v, tok, strlen(tok), now, want);
}

/* Accepted: returns the claims (the caller decrefs). */
static json_t *assert_accepted(const struct auth_verifier *v, const char *tok, int64_t now)
{
    char reason[200];
    json_t *claims = verify(v, tok, now, reason, sizeof(reason));
    if (!claims)
        fail_msg("token refused: %s", reason);
    return claims;
}

static void accepted(const struct auth_verifier *v, const char *tok, int64_t now)
{
    json_decref(assert_accepted(v, tok, now));
}

/* Consumes tok. */
static void refused_free(const struct auth_verifier *v, char *tok, int64_t now, const char *want)
{
    assert_refused(v, tok, now, want);
    free(tok);
}

static void accepted_free(const struct auth_verifier *v, char *tok, int64_t now)
{
    accepted(v, tok, now);
    free(tok);
}

/* --- valid tokens --------------------------------------------------------------- */

static void check_valid(struct auth_verifier *v, enum signer how)
{
    char *tok = make_alg(how, "{\"sub\":\"alice\",\"exp\":1700000600,\"room\":7,"
                              "\"iat\":1699999990,\"roles\":[\"a\"]}");
    json_t *claims = assert_accepted(v, tok, NOW);
    assert_string_equal(json_string_value(json_object_get(claims, "sub")), "alice");
    assert_int_equal(json_integer_value(json_object_get(claims, "room")), 7);
    assert_true(json_is_array(json_object_get(claims, "roles")));
    char buf[32];
    assert_string_equal(auth_claim_value(claims, "sub", buf, sizeof(buf)), "alice");
    assert_string_equal(auth_claim_value(claims, "room", buf, sizeof(buf)), "7");
    json_decref(claims);
    free(tok);
    auth_verifier_destroy(v);
}

static void test_valid_hs256(void **state)
{
    (void)state;
    check_valid(hs_verifier(), SIGN_HS);
}

static void test_valid_rs256(void **state)
{
    (void)state;
    check_valid(rs_verifier(), SIGN_RS);
}

static void test_valid_es256(void **state)
{
    (void)state;
    check_valid(es_verifier(), SIGN_ES);
}

/* A header with only "alg" (no "typ"), and extra header fields, are fine. */
static void test_header_variants(void **state)
{
    (void)state;
    struct auth_verifier *v = hs_verifier();
    accepted_free(v, make("{\"alg\":\"HS256\"}", ALICE, SIGN_HS, NULL), NOW);
    accepted_free(
        v, make("{\"typ\":\"JWT\",\"kid\":\"k1\",\"alg\":\"HS256\"}", ALICE, SIGN_HS, NULL), NOW);
    auth_verifier_destroy(v);
}

/* --- forgeries ------------------------------------------------------------------ */

static void test_wrong_secret(void **state)
{
    (void)state;
    struct auth_verifier *v = verifier("another secret", NULL, NULL, NULL, 30);
    refused_free(v, make_alg(SIGN_HS, ALICE), NOW, "signature");
    auth_verifier_destroy(v);
    /* A prefix of the secret, and the secret with a byte more, are other keys. */
    v = verifier("s3cr3t-for-unit-tests-onl", NULL, NULL, NULL, 30);
    refused_free(v, make_alg(SIGN_HS, ALICE), NOW, "signature");
    auth_verifier_destroy(v);
    v = verifier(SECRET "!", NULL, NULL, NULL, 30);
    refused_free(v, make_alg(SIGN_HS, ALICE), NOW, "signature");
    auth_verifier_destroy(v);
}

static void test_wrong_key(void **state)
{
    (void)state;
    struct auth_verifier *rs = rs_verifier(), *es = es_verifier();
    refused_free(rs, make(RS_HEADER, ALICE, SIGN_RS, K.rsa_other), NOW, "signature");
    refused_free(es, make(ES_HEADER, ALICE, SIGN_ES, K.ec_other), NOW, "signature");
    auth_verifier_destroy(rs);
    auth_verifier_destroy(es);
}

/* Header, payload or signature changed after signing. */
static void check_tampered(struct auth_verifier *v, enum signer how)
{
    char *tok = make_alg(how, ALICE);
    char *dot1 = strchr(tok, '.'), *dot2 = strchr(dot1 + 1, '.');

    /* payload swapped for bob's, signature kept */
    char *bob = b64url_str("{\"sub\":\"bob\",\"exp\":1700000600}");
    *dot1 = '\0';
    char *t = cat(tok, ".", bob, dot2, NULL);
    *dot1 = '.';
    refused_free(v, t, NOW, "signature");
    free(bob);

    /* header changed (an extra field), signature kept */
    char *hdr = b64url_str(how == SIGN_HS   ? "{\"alg\":\"HS256\",\"typ\":\"JWS\"}"
                           : how == SIGN_RS ? "{\"alg\":\"RS256\",\"typ\":\"JWS\"}"
                                            : "{\"alg\":\"ES256\",\"typ\":\"JWS\"}");
    refused_free(v, cat(hdr, dot1, NULL, NULL, NULL), NOW, "signature");
    free(hdr);

    /* each character of the signature's first chunk changed */
    for (size_t i = 0; i < 8; i++) {
        t = strdup(tok);
        char *c = strrchr(t, '.') + 1 + i;
        *c = *c == 'A' ? 'B' : 'A';
        refused_free(v, t, NOW, "signature");
    }
    /* a payload character changed, signature kept */
    t = strdup(tok);
    char *c = strchr(t, '.') + 3;
    *c = *c == 'A' ? 'B' : 'A';
    assert_refused(v, t, NOW, "");
    free(t);
    /* the signature cut short, and given a byte more */
    t = strdup(tok);
    t[strlen(t) - 4] = '\0';
    refused_free(v, t, NOW, "signature");
    refused_free(v, cat(tok, "AA", NULL, NULL, NULL), NOW, "signature");
    /* the signature of another token */
    char *other = make_alg(how, "{\"sub\":\"bob\",\"exp\":1700000600}");
    *dot2 = '\0';
    t = cat(tok, strrchr(other, '.'), NULL, NULL, NULL);
    refused_free(v, t, NOW, "signature");
    *dot2 = '.';
    free(other);
    /* no signature at all */
    *dot2 = '\0';
    t = cat(tok, ".", NULL, NULL, NULL);
    refused_free(v, t, NOW, "signature");
    free(tok);
    auth_verifier_destroy(v);
}

static void test_tampered_hs256(void **state)
{
    (void)state;
    check_tampered(hs_verifier(), SIGN_HS);
}

static void test_tampered_rs256(void **state)
{
    (void)state;
    check_tampered(rs_verifier(), SIGN_RS);
}

static void test_tampered_es256(void **state)
{
    (void)state;
    check_tampered(es_verifier(), SIGN_ES);
}

/* ES256 signatures must be JOSE's 64 raw bytes: DER, zeros, and r||s from
 * another message are refused. */
static void test_es256_signature_forms(void **state)
{
    (void)state;
    struct auth_verifier *v = es_verifier();
    char *h64 = b64url_str(ES_HEADER), *p64 = b64url_str(ALICE);
    char *input = cat(h64, ".", p64, NULL, NULL);
    size_t n = 0;
    unsigned char *der = digest_sign(K.ec, input, &n);
    char *der64 = b64url(der, n);
    refused_free(v, cat(input, ".", der64, NULL, NULL), NOW, "signature");
    unsigned char zeros[64] = {0};
    char *z64 = b64url(zeros, sizeof(zeros));
    refused_free(v, cat(input, ".", z64, NULL, NULL), NOW, "signature");
    /* r || s reversed */
    unsigned char raw[64], swapped[64];
    es256_raw(K.ec, input, raw);
    memcpy(swapped, raw + 32, 32);
    memcpy(swapped + 32, raw, 32);
    char *s64 = b64url(swapped, sizeof(swapped));
    refused_free(v, cat(input, ".", s64, NULL, NULL), NOW, "signature");
    char *r64 = b64url(raw, sizeof(raw));
    accepted_free(v, cat(input, ".", r64, NULL, NULL), NOW);
    free(r64);
    free(s64);
    free(z64);
    free(der64);
    free(der);
    free(input);
    free(h64);
    free(p64);
    auth_verifier_destroy(v);
}

/* --- algorithms ------------------------------------------------------------------ */

static void check_alg_none(struct auth_verifier *v)
{
    static const char *const headers[] = {
        "{\"alg\":\"none\"}", "{\"alg\":\"none\",\"typ\":\"JWT\"}",
        "{\"alg\":\"None\"}", "{\"alg\":\"NONE\"}",
        "{\"alg\":\"nOnE\"}", "{\"alg\":\"\"}",
        "{\"typ\":\"JWT\"}", /* no alg at all */
        "{\"alg\":null}",     "{\"alg\":[\"HS256\"]}",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        /* "h.p." (the unsecured JWS form), then with a signature */
        refused_free(v, make(headers[i], ALICE, SIGN_NONE, NULL), NOW, "token");
        refused_free(v, make(headers[i], ALICE, SIGN_HS, NULL), NOW, "token");
        refused_free(v, make(headers[i], ALICE, SIGN_RS, NULL), NOW, "token");
        refused_free(v, make(headers[i], ALICE, SIGN_ES, NULL), NOW, "token");
    }
    refused_free(v, make("{\"alg\":\"none\"}", ALICE, SIGN_NONE, NULL), NOW, "algorithm");
    auth_verifier_destroy(v);
}

static void test_alg_none(void **state)
{
    (void)state;
    check_alg_none(hs_verifier());
    check_alg_none(rs_verifier());
    check_alg_none(es_verifier());
}

/* The names are case-sensitive (RFC 7518). */
static void test_alg_case(void **state)
{
    (void)state;
    struct auth_verifier *v = hs_verifier();
    refused_free(v, make("{\"alg\":\"hs256\"}", ALICE, SIGN_HS, NULL), NOW, "algorithm");
    refused_free(v, make("{\"alg\":\"HS256 \"}", ALICE, SIGN_HS, NULL), NOW, "algorithm");
    refused_free(v, make("{\"alg\":\"HS384\"}", ALICE, SIGN_HS, NULL), NOW, "algorithm");
    auth_verifier_destroy(v);
}

static void test_alg_mismatch(void **state)
{
    (void)state;
    struct auth_verifier *hs = hs_verifier(), *rs = rs_verifier(), *es = es_verifier();
    /* an RS256 / ES256 token given to a secret */
    refused_free(hs, make_alg(SIGN_RS, ALICE), NOW, "algorithm");
    refused_free(hs, make_alg(SIGN_ES, ALICE), NOW, "algorithm");
    /* an HS256 token (signed with the right secret) given to a public key */
    refused_free(rs, make_alg(SIGN_HS, ALICE), NOW, "algorithm");
    refused_free(es, make_alg(SIGN_HS, ALICE), NOW, "algorithm");
    /* RS256 to an ES256 verifier and back */
    refused_free(es, make_alg(SIGN_RS, ALICE), NOW, "algorithm");
    refused_free(rs, make_alg(SIGN_ES, ALICE), NOW, "algorithm");
    /* the header lies: says the verifier's algorithm, signed with another */
    refused_free(es, make(ES_HEADER, ALICE, SIGN_RS, NULL), NOW, "signature");
    refused_free(rs, make(RS_HEADER, ALICE, SIGN_ES, NULL), NOW, "signature");
    refused_free(rs, make(RS_HEADER, ALICE, SIGN_HS, NULL), NOW, "signature");
    auth_verifier_destroy(hs);
    auth_verifier_destroy(rs);
    auth_verifier_destroy(es);
}

/* The classic confusion attack: an HS256 token whose HMAC key is the text of
 * the verifier's public key (which the attacker has), in every plausible
 * spelling, given to the RS256 and ES256 verifiers. */
static void check_confusion(struct auth_verifier *v, const char *pem, const char *alg_header)
{
    char *h64 = b64url_str("{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
    char *p64 = b64url_str("{\"sub\":\"admin\",\"exp\":1700000600}");
    char *input = cat(h64, ".", p64, NULL, NULL);
    size_t pem_len = strlen(pem);
    size_t key_lens[] = {pem_len, pem_len - 1}; /* with and without the last newline */
    for (size_t i = 0; i < 2; i++) {
        char *sig = sign_hmac(pem, key_lens[i], input);
        refused_free(v, cat(input, ".", sig, NULL, NULL), NOW, "algorithm");
        free(sig);
    }
    /* the same with the header claiming the verifier's algorithm */
    char *h2 = b64url_str(alg_header);
    char *input2 = cat(h2, ".", p64, NULL, NULL);
    char *sig = sign_hmac(pem, pem_len, input2);
    refused_free(v, cat(input2, ".", sig, NULL, NULL), NOW, "signature");
    free(sig);
    free(input2);
    free(h2);
    free(input);
    free(h64);
    free(p64);
    auth_verifier_destroy(v);
}

static void test_alg_confusion(void **state)
{
    (void)state;
    check_confusion(rs_verifier(), K.rsa_pem, RS_HEADER);
    check_confusion(es_verifier(), K.ec_pem, ES_HEADER);
}

/* --- time claims ------------------------------------------------------------------ */

static char *hs_with(const char *payload) { return make_alg(SIGN_HS, payload); }

static void test_exp(void **state)
{
    (void)state;
    struct auth_verifier *v = hs_verifier(); /* leeway 30 */
    char *tok = hs_with("{\"sub\":\"a\",\"exp\":1700000000}");
    assert_refused(v, tok, NOW + 30, "expired"); /* on or after exp + leeway */
    assert_refused(v, tok, NOW + 100000, "expired");
    accepted(v, tok, NOW + 29); /* within the leeway */
    accepted(v, tok, NOW + 1);
    accepted(v, tok, NOW - 1000);
    free(tok);
    /* a real exp works like an integer one */
    tok = hs_with("{\"sub\":\"a\",\"exp\":1700000000.5}");
    accepted(v, tok, NOW + 30);
    assert_refused(v, tok, NOW + 31, "expired");
    free(tok);
    auth_verifier_destroy(v);

    v = verifier(SECRET, NULL, NULL, NULL, 0); /* no leeway */
    tok = hs_with("{\"sub\":\"a\",\"exp\":1700000000}");
    assert_refused(v, tok, NOW + 1, "expired");
    accepted(v, tok, NOW - 1);
    free(tok);
    auth_verifier_destroy(v);
}

/* RFC 7519 4.1.4: "the current date/time MUST be before the expiration
 * date/time": at now == exp (no leeway) the token has expired. */
static void test_exp_boundary(void **state)
{
    (void)state;
    struct auth_verifier *v = verifier(SECRET, NULL, NULL, NULL, 0);
    char *tok = hs_with("{\"sub\":\"a\",\"exp\":1700000000}");
    assert_refused(v, tok, NOW, "expired");
    free(tok);
    auth_verifier_destroy(v);
}

static void test_nbf(void **state)
{
    (void)state;
    struct auth_verifier *v = hs_verifier(); /* leeway 30 */
    char *tok = hs_with("{\"sub\":\"a\",\"exp\":1700009999,\"nbf\":1700000100}");
    assert_refused(v, tok, NOW, "not valid yet");
    assert_refused(v, tok, NOW + 69, "not valid yet");
    accepted(v, tok, NOW + 70); /* within the leeway */
    accepted(v, tok, NOW + 100);
    accepted(v, tok, NOW + 5000);
    free(tok);
    auth_verifier_destroy(v);

    v = verifier(SECRET, NULL, NULL, NULL, 0);
    tok = hs_with("{\"sub\":\"a\",\"exp\":1700009999,\"nbf\":1700000000}");
    accepted(v, tok, NOW); /* nbf == now is valid */
    assert_refused(v, tok, NOW - 1, "not valid yet");
    free(tok);
    auth_verifier_destroy(v);
}

static void test_exp_required_and_typed(void **state)
{
    (void)state;
    struct auth_verifier *v = hs_verifier();
    refused_free(v, hs_with("{\"sub\":\"a\"}"), NOW, "exp");
    refused_free(v, hs_with("{\"sub\":\"a\",\"nbf\":1}"), NOW, "exp");
    refused_free(v, hs_with("{}"), NOW, "exp");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":\"1700000600\"}"), NOW, "not a number");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":null}"), NOW, "exp");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":true}"), NOW, "not a number");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":[1700000600]}"), NOW, "not a number");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":{\"t\":1700000600}}"), NOW, "not a number");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"nbf\":\"0\"}"), NOW,
                 "not a number");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"nbf\":null}"), NOW, "nbf");
    auth_verifier_destroy(v);
}

/* --- iss / aud ------------------------------------------------------------------ */

static void test_issuer(void **state)
{
    (void)state;
    struct auth_verifier *v = verifier(SECRET, NULL, ISSUER, NULL, 30);
    accepted_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"iss\":\"" ISSUER "\"}"), NOW);
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"iss\":\"https://evil.example\"}"),
                 NOW, "issuer");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"iss\":\"" ISSUER "/\"}"), NOW,
                 "issuer");
    refused_free(v,
                 hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"iss\":\"HTTPS://ID.EXAMPLE.COM\"}"),
                 NOW, "issuer");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600}"), NOW, "issuer");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"iss\":null}"), NOW, "issuer");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"iss\":[\"" ISSUER "\"]}"), NOW,
                 "issuer");
    auth_verifier_destroy(v);
    /* not configured: any issuer, or none, will do */
    v = hs_verifier();
    accepted_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"iss\":\"anyone\"}"), NOW);
    accepted_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600}"), NOW);
    auth_verifier_destroy(v);
}

static void test_audience(void **state)
{
    (void)state;
    struct auth_verifier *v = verifier(SECRET, NULL, NULL, "wsgate", 30);
    accepted_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"aud\":\"wsgate\"}"), NOW);
    accepted_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"aud\":[\"api\",\"wsgate\"]}"),
                  NOW);
    accepted_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"aud\":[\"wsgate\"]}"), NOW);
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"aud\":\"api\"}"), NOW, "audience");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"aud\":\"wsgate2\"}"), NOW,
                 "audience");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"aud\":[\"api\",\"other\"]}"), NOW,
                 "audience");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"aud\":[]}"), NOW, "audience");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"aud\":[[\"wsgate\"]]}"), NOW,
                 "audience");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"aud\":{\"wsgate\":1}}"), NOW,
                 "audience");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600}"), NOW, "audience");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"aud\":null}"), NOW, "audience");
    auth_verifier_destroy(v);
    /* both required */
    v = verifier(SECRET, NULL, ISSUER, "wsgate", 30);
    accepted_free(
        v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"iss\":\"" ISSUER "\",\"aud\":\"wsgate\"}"),
        NOW);
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"aud\":\"wsgate\"}"), NOW,
                 "issuer");
    refused_free(v, hs_with("{\"sub\":\"a\",\"exp\":1700000600,\"iss\":\"" ISSUER "\"}"), NOW,
                 "audience");
    auth_verifier_destroy(v);
}

/* --- malformed ------------------------------------------------------------------ */

static void test_malformed_shape(void **state)
{
    (void)state;
    struct auth_verifier *v = hs_verifier();
    char *good = make_alg(SIGN_HS, ALICE);
    char *dot1 = strchr(good, '.'), *dot2 = strchr(dot1 + 1, '.');
    static const char *const shapes[] = {
        "abc", "a.b", "a.b.c.d", "a.b.c.", ".a.b.c", "...", "..", ".", "a..", "..c", ".b.",
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
        assert_refused(v, shapes[i], NOW, "token");
    assert_refused(v, "abc", NOW, "not a compact JWT");
    assert_refused(v, "a.b.c.d", NOW, "not a compact JWT");
    /* one, two and four parts of a real token */
    *dot1 = '\0';
    assert_refused(v, good, NOW, "not a compact JWT");
    *dot1 = '.';
    *dot2 = '\0';
    assert_refused(v, good, NOW, "not a compact JWT");
    *dot2 = '.';
    refused_free(v, cat(good, ".", dot2 + 1, NULL, NULL), NOW, "not a compact JWT");
    /* empty header, empty payload (signed as such), empty signature */
    refused_free(v, cat(dot1, NULL, NULL, NULL, NULL), NOW, "token");
    refused_free(v, sign_parts("", "", SIGN_HS, NULL), NOW, "token");
    char *h64 = b64url_str(HS_HEADER);
    refused_free(v, sign_parts(h64, "", SIGN_HS, NULL), NOW, "claims unreadable");
    char *p64 = b64url_str(ALICE);
    refused_free(v, sign_parts("", p64, SIGN_HS, NULL), NOW, "header");
    free(p64);
    *dot2 = '\0';
    refused_free(v, cat(good, ".", NULL, NULL, NULL), NOW, "signature");
    *dot2 = '.';
    /* no token: empty, and NULL */
    char reason[200];
    assert_null(auth_verify(v, "", 0, NOW, reason, sizeof(reason)));
    assert_contains(reason, "no token");
    assert_null(auth_verify(v, NULL, 0, NOW, reason, sizeof(reason)));
    assert_null(auth_verify(NULL, good, strlen(good), NOW, reason, sizeof(reason)));
    /* a NUL inside the given length */
    char *withnul = strdup(good);
    withnul[strlen(withnul) - 3] = '\0';
    assert_refused_len(v, withnul, strlen(good), NOW, "token");
    free(withnul);
    /* only the given length counts: a valid token followed by more bytes */
    char *longer = cat(good, ".garbage", NULL, NULL, NULL);
    json_t *claims = auth_verify(v, longer, strlen(good), NOW, reason, sizeof(reason));
    assert_non_null(claims);
    json_decref(claims);
    assert_refused(v, longer, NOW, "not a compact JWT");
    free(longer);
    free(h64);
    free(good);
    auth_verifier_destroy(v);
}

static void test_malformed_base64(void **state)
{
    (void)state;
    struct auth_verifier *v = hs_verifier();
    char *h64 = b64url_str(HS_HEADER), *p64 = b64url_str(ALICE);
    /* characters of standard base64, padding, spaces, non-ASCII, in each part */
    static const char *const bad[] = {"+", "/", "=", "==", " ", "%", "\xc3\xa9", "*", "\t"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* in the header and the payload the token is signed as is: only the
         * decoder can refuse it */
        char *h = cat(h64, bad[i], NULL, NULL, NULL), *p = cat(p64, bad[i], NULL, NULL, NULL);
        char *mid = cat("AB", bad[i], "CD", NULL, NULL);
        refused_free(v, sign_parts(h, p64, SIGN_HS, NULL), NOW, "header");
        refused_free(v, sign_parts(h64, p, SIGN_HS, NULL), NOW, "claims");
        char *tok = make_alg(SIGN_HS, ALICE);
        refused_free(v, cat(tok, bad[i], NULL, NULL, NULL), NOW, "signature");
        char *hm = cat(mid, h64, NULL, NULL, NULL);
        refused_free(v, sign_parts(hm, p64, SIGN_HS, NULL), NOW, "header");
        free(hm);
        free(tok);
        free(mid);
        free(h);
        free(p);
    }
    /* a padded signature (base64url in JWS is unpadded) */
    char *input = cat(h64, ".", p64, NULL, NULL);
    char *tok = make_alg(SIGN_HS, ALICE);
    refused_free(v, cat(tok, "=", NULL, NULL, NULL), NOW, "signature");
    /* standard base64 spelling of the same signature bytes ('+' '/' for '-' '_') */
    char *std = strdup(tok);
    int changed = 0;
    for (char *c = strrchr(std, '.'); *c; c++) {
        if (*c == '-' || *c == '_') {
            *c = *c == '-' ? '+' : '/';
            changed = 1;
        }
    }
    if (changed)
        assert_refused(v, std, NOW, "signature");
    free(std);
    /* a length of 4n+1 characters can encode nothing */
    refused_free(v, sign_parts("eyJhbGciOiJIUzI1NiJ9A", p64, SIGN_HS, NULL), NOW, "header");
    free(tok);
    free(input);
    free(h64);
    free(p64);
    auth_verifier_destroy(v);
}

/* The last character of an unpadded part carries unused bits; they must be
 * zero (RFC 4648 3.5), or two spellings would decode to the same bytes. */
static char tail_variant(char c, int unused_bits)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int v = (int)(strchr(abc, c) - abc);
    assert_int_equal(v & ((1 << unused_bits) - 1), 0);
    return abc[v | 1];
}

static void test_noncanonical_tail(void **state)
{
    (void)state;
    struct auth_verifier *v = hs_verifier();
    /* the signature: 32 bytes = 43 characters, 2 unused bits */
    char *tok = make_alg(SIGN_HS, ALICE);
    accepted(v, tok, NOW);
    char *t = strdup(tok);
    t[strlen(t) - 1] = tail_variant(t[strlen(t) - 1], 2);
    refused_free(v, t, NOW, "signature");
    free(tok);
    /* the header: {"alg":"HS256"} is 15 bytes (no tail); one byte more, 16 bytes = 22
     * characters, 4 unused bits; signed in its non-canonical spelling */
    const char *hdr = "{\"alg\":\"HS256\" }";
    assert_int_equal(strlen(hdr), 16);
    char *h64 = b64url_str(hdr), *p64 = b64url_str(ALICE);
    assert_int_equal(strlen(h64), 22);
    accepted_free(v, sign_parts(h64, p64, SIGN_HS, NULL), NOW);
    h64[21] = tail_variant(h64[21], 4);
    refused_free(v, sign_parts(h64, p64, SIGN_HS, NULL), NOW, "header");
    free(h64);
    /* the payload, likewise */
    h64 = b64url_str(HS_HEADER);
    const char *pl = "{\"sub\":\"alice\",\"exp\":1700000600  }"; /* 34 bytes: 46 chars, 4 bits */
    assert_int_equal(strlen(pl) % 3, 1);
    char *p2 = b64url_str(pl);
    accepted_free(v, sign_parts(h64, p2, SIGN_HS, NULL), NOW);
    p2[strlen(p2) - 1] = tail_variant(p2[strlen(p2) - 1], 4);
    refused_free(v, sign_parts(h64, p2, SIGN_HS, NULL), NOW, "claims");
    free(p2);
    free(h64);
    free(p64);
    auth_verifier_destroy(v);
}

static void test_malformed_json(void **state)
{
    (void)state;
    struct auth_verifier *v = hs_verifier();
    static const char *const headers[] = {
        "not json",
        "[\"HS256\"]",
        "\"HS256\"",
        "42",
        "null",
        "{\"alg\":\"HS256\"",                   /* truncated */
        "{\"alg\":\"HS256\"} x",                /* trailing garbage */
        "{\"alg\":\"HS256\"}{}",                /* two documents */
        "{\"alg\":\"HS256\",\"alg\":\"none\"}", /* duplicate keys, both ways */
        "{\"alg\":\"none\",\"alg\":\"HS256\"}",
        "{\"alg\":\"HS256\",\"alg\":\"HS256\"}",
        "{'alg':'HS256'}",
        "{\"alg\":\"HS\\u0000256\"}",
        "",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
        refused_free(v, make(headers[i], ALICE, SIGN_HS, NULL), NOW, "token");
    refused_free(v, make("[\"HS256\"]", ALICE, SIGN_HS, NULL), NOW, "header");
    refused_free(v, make("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", ALICE, SIGN_HS, NULL), NOW,
                 "header");
    /* the payload, correctly signed */
    static const char *const payloads[] = {
        "not json",
        "[{\"sub\":\"alice\",\"exp\":1700000600}]",
        "\"alice\"",
        "1700000600",
        "{\"sub\":\"alice\",\"exp\":1700000600",
        "{\"sub\":\"alice\",\"exp\":1700000600} x",
        "{\"sub\":\"alice\",\"sub\":\"bob\",\"exp\":1700000600}", /* duplicate: which one? */
        "{\"sub\":\"alice\",\"exp\":1700000600,\"exp\":1}",
        "{\"sub\":\"a\\u0000b\",\"exp\":1700000600}", /* embedded NUL */
    };
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++)
        refused_free(v, make(HS_HEADER, payloads[i], SIGN_HS, NULL), NOW, "claims unreadable");
    auth_verifier_destroy(v);
}

/* Exactly AUTH_TOKEN_MAX_BYTES is accepted; one byte more is refused, before
 * any decoding. */
static char *token_of_length(size_t want)
{
    static const char *const headers[] = {"{\"alg\":\"HS256\"}", "{\"alg\":\"HS256\",\"t\":1}",
                                          "{\"alg\":\"HS256\",\"t\":12}"};
    char *pad = malloc(want + 1);
    assert_non_null(pad);
    for (size_t h = 0; h < 3; h++) {
        for (size_t n = 0; n < want; n++) {
            memset(pad, 'x', n);
            pad[n] = '\0';
            char *payload =
                cat("{\"sub\":\"alice\",\"exp\":1700000600,\"pad\":\"", pad, "\"}", NULL, NULL);
            char *tok = make(headers[h], payload, SIGN_HS, NULL);
            free(payload);
            size_t len = strlen(tok);
            if (len == want) {
                free(pad);
                return tok;
            }
            free(tok);
            if (len > want)
                break;
        }
    }
    free(pad);
    fail_msg("no token of exactly %zu bytes", want);
    return NULL;
}

static void test_token_length_limit(void **state)
{
    (void)state;
    struct auth_verifier *v = hs_verifier();
    char *tok = token_of_length(AUTH_TOKEN_MAX_BYTES);
    accepted(v, tok, NOW);
    free(tok);
    tok = token_of_length(AUTH_TOKEN_MAX_BYTES + 1);
    assert_refused(v, tok, NOW, "too long");
    free(tok);
    char *huge = malloc(100001);
    memset(huge, 'A', 100000);
    huge[100000] = '\0';
    assert_refused(v, huge, NOW, "too long");
    free(huge);
    auth_verifier_destroy(v);
}

/* --- key files ------------------------------------------------------------------ */

static void refuse_pkey(EVP_PKEY *key, const char *want)
{
    assert_non_null(key);
    char path[256];
    write_pubkey(key, path, sizeof(path), NULL);
    assert_key_refused(path, want);
    unlink(path);
    EVP_PKEY_free(key);
}

static void test_key_files(void **state)
{
    (void)state;
    char path[256];
    /* not a key */
    write_temp("hello\n", 6, path, sizeof(path));
    assert_key_refused(path, "not a PEM public key");
    unlink(path);
    /* empty */
    write_temp("", 0, path, sizeof(path));
    assert_key_refused(path, "not a PEM public key");
    unlink(path);
    /* a certificate-looking block that is garbage */
    const char *junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    write_temp(junk, strlen(junk), path, sizeof(path));
    assert_key_refused(path, "not a PEM public key");
    unlink(path);
    /* a missing file */
    assert_key_refused("/nonexistent/wsgate-test-key.pem", "cannot open");
    /* keys of the wrong kind or size */
    refuse_pkey(EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024), "2048");
    refuse_pkey(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"), "P-256");
    refuse_pkey(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521"), "P-256");
    refuse_pkey(EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), "P-256");
    /* a private key is not what public_key asks for */
    EVP_PKEY *priv = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, priv, NULL, NULL, 0, NULL, NULL), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    write_temp(data, (size_t)n, path, sizeof(path));
    BIO_free(b);
    EVP_PKEY_free(priv);
    assert_key_refused(path, "not a PEM public key");
    unlink(path);
}

/* ES256 is ECDSA on P-256 only (RFC 7518 3.4): other 256-bit curves
 * (secp256k1 is ES256K, brainpoolP256r1 nothing in JOSE) must be refused,
 * as the reason ("a P-256 EC key") says. */
static void test_key_other_256_bit_curves(void **state)
{
    (void)state;
    refuse_pkey(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1"), "P-256");
    refuse_pkey(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "brainpoolP256r1"), "P-256");
}

/* A secret verifier never touches public_key; a destroyed NULL is fine. */
static void test_verifier_misc(void **state)
{
    (void)state;
    auth_verifier_destroy(NULL);
    struct auth_verifier *v = verifier(SECRET, NULL, NULL, NULL, 30);
    accepted_free(v, make_alg(SIGN_HS, ALICE), NOW);
    auth_verifier_destroy(v);
    /* the RSA and EC verifiers accept their own keys' tokens, not each other's */
    struct auth_verifier *rs = rs_verifier(), *es = es_verifier();
    accepted_free(rs, make_alg(SIGN_RS, ALICE), NOW);
    accepted_free(es, make_alg(SIGN_ES, ALICE), NOW);
    auth_verifier_destroy(rs);
    auth_verifier_destroy(es);
}

/* --- auth_claim_value ------------------------------------------------------------ */

static void test_claim_value(void **state)
{
    (void)state;
    char buf[32];
    json_t *c = json_loads("{\"sub\":\"alice\",\"n\":42,\"neg\":-7,\"big\":9223372036854775807,"
                           "\"r\":1.5,\"whole\":2.0,\"t\":true,\"f\":false,\"z\":null,"
                           "\"o\":{\"a\":1},\"a\":[\"x\"],\"e\":\"\",\"u\":\"\\u00e9/x\"}",
                           0, NULL);
    assert_non_null(c);
    assert_string_equal(auth_claim_value(c, "sub", buf, sizeof(buf)), "alice");
    assert_string_equal(auth_claim_value(c, "n", buf, sizeof(buf)), "42");
    assert_string_equal(auth_claim_value(c, "neg", buf, sizeof(buf)), "-7");
    assert_string_equal(auth_claim_value(c, "big", buf, sizeof(buf)), "9223372036854775807");
    assert_null(auth_claim_value(c, "r", buf, sizeof(buf)));
    assert_null(auth_claim_value(c, "whole", buf, sizeof(buf)));
    assert_null(auth_claim_value(c, "t", buf, sizeof(buf)));
    assert_null(auth_claim_value(c, "f", buf, sizeof(buf)));
    assert_null(auth_claim_value(c, "z", buf, sizeof(buf)));
    assert_null(auth_claim_value(c, "o", buf, sizeof(buf)));
    assert_null(auth_claim_value(c, "a", buf, sizeof(buf)));
    assert_null(auth_claim_value(c, "missing", buf, sizeof(buf)));
    assert_null(auth_claim_value(c, "o.a", buf, sizeof(buf))); /* no path into objects */
    /* returned as is: route_expand refuses empty values and '/' itself */
    assert_string_equal(auth_claim_value(c, "e", buf, sizeof(buf)), "");
    assert_string_equal(auth_claim_value(c, "u", buf, sizeof(buf)), "\xc3\xa9/x");
    assert_null(auth_claim_value(NULL, "sub", buf, sizeof(buf)));
    /* A string holding a NUL cannot come from a verified token (the loader
     * refuses \u0000, see test_malformed_json); built by hand it is still
     * refused, so "a\0b" never becomes "a". */
    json_object_set_new(c, "nul", json_stringn("a\0b", 3));
    assert_null(auth_claim_value(c, "nul", buf, sizeof(buf)));
    json_decref(c);
}

/* --- auth_find_token ------------------------------------------------------------- */

static long find(const char *authz, const char *query, const char *protos, char *out,
                 size_t out_len)
{
    memset(out, '#', out_len);
    out[0] = '\0';
    return auth_find_token(authz, query, NULL, NULL, protos, out, out_len);
}

#define FOUND(authz, query, protos, want)                                                          \
    do {                                                                                           \
        char out_[64];                                                                             \
        long n_ = find(authz, query, protos, out_, sizeof(out_));                                  \
        assert_int_equal(n_, (long)strlen(want));                                                  \
        assert_string_equal(out_, want);                                                           \
    } while (0)

#define NONE(authz, query, protos)                                                                 \
    do {                                                                                           \
        char out_[64];                                                                             \
        assert_int_equal(find(authz, query, protos, out_, sizeof(out_)), 0);                       \
    } while (0)

static void test_find_authorization(void **state)
{
    (void)state;
    FOUND("Bearer abc.def.ghi", NULL, NULL, "abc.def.ghi");
    FOUND("Bearer     abc.def.ghi", NULL, NULL, "abc.def.ghi");
    FOUND("Bearer abc.def.ghi   ", NULL, NULL, "abc.def.ghi");
    FOUND("bearer abc", NULL, NULL, "abc");
    FOUND("BEARER abc", NULL, NULL, "abc");
    FOUND("bEaReR abc", NULL, NULL, "abc");
    /* another scheme is not a token: the next source is used */
    NONE("Basic dXNlcjpwYXNz", NULL, NULL);
    FOUND("Basic dXNlcjpwYXNz", "q.t.s", NULL, "q.t.s");
    NONE("Bearerabc", NULL, NULL);
    NONE("", NULL, NULL);
    NONE(NULL, NULL, NULL);
    /* "Bearer" with nothing after it gives no token */
    NONE("Bearer ", NULL, NULL);
    NONE("Bearer    ", NULL, NULL);
}

static void test_find_query_and_subprotocol(void **state)
{
    (void)state;
    FOUND(NULL, "abc.def.ghi", NULL, "abc.def.ghi");
    NONE(NULL, "", NULL);
    FOUND(NULL, NULL, "binary, bearer.x", "x");
    FOUND(NULL, NULL, "bearer.x, binary", "x");
    FOUND(NULL, NULL, "bearer.x,binary", "x");
    FOUND(NULL, NULL, "mqtt,bearer.abc.def.ghi", "abc.def.ghi");
    FOUND(NULL, NULL, "mqtt ,  bearer.a.b.c ,binary", "a.b.c");
    FOUND(NULL, NULL, "mqtt,\tbearer.a.b.c", "a.b.c");
    FOUND(NULL, NULL, "bearer.first, bearer.second", "first");
    NONE(NULL, NULL, "binary, mqtt");
    NONE(NULL, NULL, "bearer.");
    NONE(NULL, NULL, "binary, bearer., mqtt");
    NONE(NULL, NULL, "Bearer.x");          /* subprotocol names are case-sensitive */
    NONE(NULL, NULL, "xbearer.y, bearer"); /* only a whole entry counts */
    NONE(NULL, NULL, "bearer");
    NONE(NULL, NULL, "");
    NONE(NULL, NULL, " , ,");
}

static void test_find_precedence(void **state)
{
    (void)state;
    FOUND("Bearer from.header.x", "from.query.x", "mqtt, bearer.from.proto.x", "from.header.x");
    FOUND(NULL, "from.query.x", "mqtt, bearer.from.proto.x", "from.query.x");
    FOUND("Basic zzz", "from.query.x", "mqtt, bearer.from.proto.x", "from.query.x");
    FOUND(NULL, "", "mqtt, bearer.from.proto.x", "from.proto.x");
    FOUND("Basic zzz", NULL, "mqtt, bearer.from.proto.x", "from.proto.x");
    FOUND("Bearer from.header.x", NULL, "mqtt, bearer.from.proto.x", "from.header.x");
}

static void test_find_too_long(void **state)
{
    (void)state;
    char out[8];
    /* 7 characters and the NUL fit; 8 do not */
    assert_int_equal(find("Bearer 1234567", NULL, NULL, out, sizeof(out)), 7);
    assert_string_equal(out, "1234567");
    assert_int_equal(find("Bearer 12345678", NULL, NULL, out, sizeof(out)), -1);
    assert_int_equal(find(NULL, "1234567", NULL, out, sizeof(out)), 7);
    assert_int_equal(find(NULL, "12345678", NULL, out, sizeof(out)), -1);
    assert_int_equal(find(NULL, NULL, "mqtt, bearer.1234567", out, sizeof(out)), 7);
    assert_int_equal(find(NULL, NULL, "mqtt, bearer.12345678", out, sizeof(out)), -1);
    /* a too-long header token is not silently replaced by another source */
    assert_int_equal(find("Bearer 12345678", "q", NULL, out, sizeof(out)), -1);
    /* the real size */
    size_t big = AUTH_TOKEN_MAX_BYTES + 64;
    char *authz = malloc(big + 8), *tok = malloc(AUTH_TOKEN_MAX_BYTES);
    memcpy(authz, "Bearer ", 7);
    memset(authz + 7, 'a', AUTH_TOKEN_MAX_BYTES);
    authz[7 + AUTH_TOKEN_MAX_BYTES] = '\0';
    assert_int_equal(auth_find_token(authz, NULL, NULL, NULL, NULL, tok, AUTH_TOKEN_MAX_BYTES), -1);
    authz[7 + AUTH_TOKEN_MAX_BYTES - 1] = '\0';
    assert_int_equal(auth_find_token(authz, NULL, NULL, NULL, NULL, tok, AUTH_TOKEN_MAX_BYTES),
                     AUTH_TOKEN_MAX_BYTES - 1);
    free(authz);
    free(tok);
}

/* auth.jwt.cookie: the third source, after the header and ?token=. */
static void test_find_cookie(void **state)
{
    (void)state;
    char out[64];
    const char *cookies = "theme=dark; sid=\"c.o.k\"; other=1";
    assert_int_equal(auth_find_token(NULL, NULL, cookies, "sid", "bearer.p.r.o", out, sizeof(out)),
                     5);
    assert_string_equal(out, "c.o.k");
    assert_int_equal(auth_find_token(NULL, "q.t.s", cookies, "sid", NULL, out, sizeof(out)), 5);
    assert_string_equal(out, "q.t.s");
    assert_int_equal(
        auth_find_token("Bearer h.d.r", "q.t.s", cookies, "sid", NULL, out, sizeof(out)), 5);
    assert_string_equal(out, "h.d.r");
    /* no cookie name configured, or no such cookie: the subprotocol */
    assert_int_equal(auth_find_token(NULL, NULL, cookies, NULL, "bearer.p.r.o", out, sizeof(out)),
                     5);
    assert_string_equal(out, "p.r.o");
    assert_int_equal(auth_find_token(NULL, NULL, cookies, "si", "bearer.p.r.o", out, sizeof(out)),
                     5);
    assert_string_equal(out, "p.r.o");
    assert_int_equal(auth_find_token(NULL, NULL, "sid=", "sid", NULL, out, sizeof(out)), 0);
    assert_int_equal(auth_find_token(NULL, NULL, "sid=123456789", "sid", NULL, out, 8), -1);

    size_t n;
    const char *v = auth_cookie_value("a=1;b=2 ;  c = 3;sid=x.y;sid=z", "sid", &n);
    assert_non_null(v);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "x.y", 3);
    v = auth_cookie_value("a=1;b=2 ", "b", &n);
    assert_int_equal(n, 1);
    assert_memory_equal(v, "2", 1);
    assert_null(auth_cookie_value("xsid=1; sidx=2", "sid", &n));
    assert_null(auth_cookie_value("", "sid", &n));
    assert_null(auth_cookie_value(NULL, "sid", &n));
    assert_null(auth_cookie_value("sid=1", "", &n));
    v = auth_cookie_value("sid=\"\"", "sid", &n);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_hs256),
        cmocka_unit_test(test_valid_rs256),
        cmocka_unit_test(test_valid_es256),
        cmocka_unit_test(test_header_variants),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_tampered_hs256),
        cmocka_unit_test(test_tampered_rs256),
        cmocka_unit_test(test_tampered_es256),
        cmocka_unit_test(test_es256_signature_forms),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_alg_case),
        cmocka_unit_test(test_alg_mismatch),
        cmocka_unit_test(test_alg_confusion),
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_exp_boundary),
        cmocka_unit_test(test_nbf),
        cmocka_unit_test(test_exp_required_and_typed),
        cmocka_unit_test(test_issuer),
        cmocka_unit_test(test_audience),
        cmocka_unit_test(test_malformed_shape),
        cmocka_unit_test(test_malformed_base64),
        cmocka_unit_test(test_noncanonical_tail),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_token_length_limit),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_key_other_256_bit_curves),
        cmocka_unit_test(test_verifier_misc),
        cmocka_unit_test(test_claim_value),
        cmocka_unit_test(test_find_authorization),
        cmocka_unit_test(test_find_query_and_subprotocol),
        cmocka_unit_test(test_find_precedence),
        cmocka_unit_test(test_find_too_long),
        cmocka_unit_test(test_find_cookie),
    };
    return cmocka_run_group_tests(tests, keys_setup, keys_teardown);
}
