/* msg_queue.c - FIFO of pooled chunks with lws headroom; see msg_queue.h. */
#include "msg_queue.h"

#include "buf_pool.h"

#include <libwebsockets.h>
#include <string.h>
#include <sys/uio.h>

#define CHUNK_OVERHEAD (sizeof(struct msg_chunk) + LWS_PRE)
_Static_assert(CHUNK_OVERHEAD <= BUF_POOL_SLACK,
               "a full chunk must fit one power-of-two pool block");

uint8_t *msg_chunk_data(struct msg_chunk *c) { return (uint8_t *)c + CHUNK_OVERHEAD; }

/* An empty chunk with room for `room` payload bytes (NULL: memory is out). */
static struct msg_chunk *chunk_get(size_t room, unsigned flags)
{
    size_t block;
    struct msg_chunk *c = buf_pool_get(CHUNK_OVERHEAD + room, &block);
    if (!c)
        return NULL;
    c->next = NULL;
    c->len = c->sent = 0;
    c->capacity = block - CHUNK_OVERHEAD;
    c->flags = flags;
    return c;
}

static void link_tail(struct msg_queue *q, struct msg_chunk *c)
{
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->bytes += c->len;
    q->chunks++;
}

int msg_queue_push(struct msg_queue *q, const void *data, size_t len, unsigned flags)
{
    /* Built apart first, so that running out of memory half-way queues nothing. */
    struct msg_chunk *first = NULL, *last = NULL;
    const uint8_t *p = data;
    size_t left = len;
    do {
        size_t n = left < MSG_CHUNK_MAX_PAYLOAD ? left : MSG_CHUNK_MAX_PAYLOAD;
        struct msg_chunk *c = chunk_get(n, flags | (first ? MSG_CHUNK_CONT : 0));
        if (!c) {
            while (first) {
                struct msg_chunk *next = first->next;
                buf_pool_put(first);
                first = next;
            }
            return -1;
        }
        if (n)
            memcpy(msg_chunk_data(c), p, n);
        c->len = n;
        p += n;
        left -= n;
        if (left)
            c->flags |= MSG_CHUNK_MORE;
        if (last)
            last->next = c;
        else
            first = c;
        last = c;
    } while (left);
    for (struct msg_chunk *c = first, *next; c; c = next) {
        next = c->next;
        c->next = NULL;
        link_tail(q, c);
    }
    return 0;
}

int msg_queue_append(struct msg_queue *q, const void *data, size_t len, unsigned flags)
{
    const uint8_t *p = data;
    struct msg_chunk *t = q->tail;
    if (t && t->flags == flags && t->len < t->capacity) {
        size_t n = t->capacity - t->len < len ? t->capacity - t->len : len;
        memcpy(msg_chunk_data(t) + t->len, p, n);
        t->len += n;
        q->bytes += n;
        p += n;
        len -= n;
    }
    while (len) {
        /* A full-size block even for a few bytes: the run of small writes
         * that usually follows lands in it too. */
        struct msg_chunk *c = chunk_get(MSG_CHUNK_MAX_PAYLOAD, flags);
        if (!c)
            return -1;
        size_t n = c->capacity < len ? c->capacity : len;
        memcpy(msg_chunk_data(c), p, n);
        c->len = n;
        link_tail(q, c);
        p += n;
        len -= n;
    }
    return 0;
}

int msg_queue_appendv(struct msg_queue *q, const struct iovec *iov, int n, unsigned flags)
{
    for (int i = 0; i < n; i++)
        if (msg_queue_append(q, iov[i].iov_base, iov[i].iov_len, flags) != 0)
            return -1;
    return 0;
}

void msg_queue_consume(struct msg_queue *q, size_t n)
{
    struct msg_chunk *c = q->head;
    if (!c)
        return;
    if (n > c->len - c->sent)
        n = c->len - c->sent;
    c->sent += n;
    q->bytes -= n;
    if (c->sent == c->len) {
        q->head = c->next;
        if (!q->head)
            q->tail = NULL;
        q->chunks--;
        buf_pool_put(c);
    }
}

void msg_queue_clear(struct msg_queue *q)
{
    struct msg_chunk *c = q->head;
    while (c) {
        struct msg_chunk *next = c->next;
        buf_pool_put(c);
        c = next;
    }
    q->head = q->tail = NULL;
    q->bytes = 0;
    q->chunks = 0;
}
