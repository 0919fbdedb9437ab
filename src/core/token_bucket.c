/* token_bucket.c - the per-connection message rate limit; see token_bucket.h. */
#include "token_bucket.h"

void token_bucket_init(struct token_bucket *b, int64_t rate, uint64_t now_us)
{
    b->tokens = rate > 0 ? (double)rate : 0.0;
    b->at_us = now_us;
}

bool token_bucket_take(struct token_bucket *b, int64_t rate, uint64_t now_us)
{
    if (rate <= 0)
        return true;
    /* now_us < at_us would wrap to a huge refill: a clock that stepped back
     * gives nothing, and the bucket counts from the new reading. */
    if (now_us > b->at_us)
        b->tokens += (double)(now_us - b->at_us) * (double)rate / 1e6;
    b->at_us = now_us;
    if (b->tokens > (double)rate)
        b->tokens = (double)rate;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}
