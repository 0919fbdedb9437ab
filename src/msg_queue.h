/* msg_queue.h - a FIFO of byte chunks waiting for a socket to become writable.
 *
 * Each chunk is one malloc: header, LWS_PRE bytes of headroom (so lws_write()
 * can put a frame header in front of the payload without a copy), payload.
 * The queue counts its bytes so callers can apply max_queue_bytes. Not
 * thread-safe: a queue belongs to one connection on the event loop. */
#ifndef WSGATE_MSG_QUEUE_H
#define WSGATE_MSG_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msg_chunk {
    struct msg_chunk *next;
    size_t len;  /* payload bytes */
    size_t sent; /* payload bytes already handed to the socket */
    unsigned flags; /* caller's, e.g. text vs binary */
    /* followed by headroom then payload; reach it with msg_chunk_data() */
};

struct msg_queue {
    struct msg_chunk *head; /* owned: every chunk is freed by pop or clear */
    struct msg_chunk *tail;
    size_t bytes;  /* unsent payload bytes in the queue */
    size_t chunks;
};

/* Appends a copy of data as one chunk. Returns 0, or -1 on allocation failure. */
int msg_queue_push(struct msg_queue *q, const void *data, size_t len, unsigned flags);

/* Appends to the last chunk if it has not started sending and has the same
 * flags and the result stays within max_chunk; else pushes a new chunk. Used
 * where message boundaries do not matter (bytes to a TCP backend). */
int msg_queue_append(struct msg_queue *q, const void *data, size_t len, unsigned flags,
                     size_t max_chunk);

/* The first chunk, or NULL. Its unsent payload is msg_chunk_data(c) + c->sent. */
static inline struct msg_chunk *msg_queue_peek(const struct msg_queue *q) { return q->head; }

/* Payload start; LWS_PRE bytes before it are writable headroom. */
uint8_t *msg_chunk_data(struct msg_chunk *c);

/* Marks n more bytes of the first chunk sent; frees it when all are. */
void msg_queue_consume(struct msg_queue *q, size_t n);

void msg_queue_clear(struct msg_queue *q);

static inline bool msg_queue_empty(const struct msg_queue *q) { return q->head == NULL; }

#endif
