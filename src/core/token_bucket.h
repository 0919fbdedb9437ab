/* token_bucket.h - the rate limit of max_messages_per_s: a token bucket that
 * holds one second's worth, so a steady rate passes and a burst above it is
 * cut. Time is passed in (microseconds of a monotonic clock): pure logic; the
 * session reads the clock and decides what a refusal means (close 1008). */
#ifndef WSGATE_TOKEN_BUCKET_H
#define WSGATE_TOKEN_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

/* Lives in its owner (the session); the rate is the owner's too and is
 * passed to every call, so the bucket costs 16 bytes. */
struct token_bucket {
    double tokens;  /* 0..rate */
    uint64_t at_us; /* when tokens was last brought up to date */
};

/* A full bucket at now_us: a client may start with a second's worth. */
void token_bucket_init(struct token_bucket *b, int64_t rate, uint64_t now_us);

/* Takes one token at now_us; false if none is left (the bucket is unchanged
 * then, apart from its refill). A rate <= 0 means no limit: always true. A
 * clock that went backwards refills nothing and counts on from now_us. */
bool token_bucket_take(struct token_bucket *b, int64_t rate, uint64_t now_us);

#endif
