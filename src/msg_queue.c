/* msg_queue.c - FIFO of chunks with lws headroom; see msg_queue.h. */
#include "msg_queue.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

/* A chunk made by msg_queue_append() may reserve more room than it holds so
 * that a run of small writes coalesces into one; the allocation remembers its
 * capacity behind the public header. */
struct chunk_alloc {
    struct msg_chunk c;
    size_t capacity;
};

uint8_t *msg_chunk_data(struct msg_chunk *c)
{
    return (uint8_t *)c + sizeof(struct chunk_alloc) + LWS_PRE;
}

static struct msg_chunk *chunk_new(const void *data, size_t len, size_t capacity,
                                   unsigned flags)
{
    struct chunk_alloc *a = malloc(sizeof(*a) + LWS_PRE + capacity);
    if (!a)
        return NULL;
    a->c.next = NULL;
    a->c.len = len;
    a->c.sent = 0;
    a->c.flags = flags;
    a->capacity = capacity;
    memcpy(msg_chunk_data(&a->c), data, len);
    return &a->c;
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
    struct msg_chunk *c = chunk_new(data, len, len, flags);
    if (!c)
        return -1;
    link_tail(q, c);
    return 0;
}

int msg_queue_append(struct msg_queue *q, const void *data, size_t len, unsigned flags,
                     size_t max_chunk)
{
    struct msg_chunk *t = q->tail;
    if (t && t->sent == 0 && t->flags == flags) {
        struct chunk_alloc *a = (struct chunk_alloc *)t;
        if (t->len + len <= a->capacity) {
            memcpy(msg_chunk_data(t) + t->len, data, len);
            t->len += len;
            q->bytes += len;
            return 0;
        }
    }
    /* Reserve room so that a run of small writes coalesces into one chunk. */
    size_t capacity = len < max_chunk ? max_chunk : len;
    struct msg_chunk *c = chunk_new(data, len, capacity, flags);
    if (!c)
        return -1;
    link_tail(q, c);
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
        free(c);
    }
}

void msg_queue_clear(struct msg_queue *q)
{
    struct msg_chunk *c = q->head;
    while (c) {
        struct msg_chunk *next = c->next;
        free(c);
        c = next;
    }
    q->head = q->tail = NULL;
    q->bytes = 0;
    q->chunks = 0;
}
