/* msg_queue.h - a FIFO of byte chunks waiting for a socket to become writable.
 *
 * Each chunk is one buf_pool block: header, LWS_PRE bytes of headroom (so
 * lws_write() can put a frame header in front of the payload without a
 * copy), payload. A chunk holds at most MSG_CHUNK_MAX_PAYLOAD bytes: a longer
 * message spans several chunks, marked so that the sender can write them as
 * fragments of one WebSocket message. Blocks come from and go back to the
 * pool, so a busy queue calls no allocator. The queue counts its bytes so
 * callers can apply max_queue_bytes. Not thread-safe: a queue belongs to one
 * connection on the event loop. */
#ifndef WSGATE_MSG_QUEUE_H
#define WSGATE_MSG_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most payload one chunk holds (lws's tx_packet_size, see session.h). */
#define MSG_CHUNK_MAX_PAYLOAD 65536

/* Set by the queue in a chunk's flags (callers' own flags use the low bits). */
#define MSG_CHUNK_MORE (1u << 30) /* the message goes on in the next chunk */
#define MSG_CHUNK_CONT (1u << 31) /* this chunk goes on from the previous one */

struct msg_chunk {
    struct msg_chunk *next;
    size_t len;      /* payload bytes */
    size_t sent;     /* payload bytes already handed to the socket */
    size_t capacity; /* payload bytes the block has room for */
    unsigned flags;  /* caller's, e.g. text vs binary; MSG_CHUNK_MORE/_CONT */
    /* followed by headroom then payload; reach it with msg_chunk_data() */
};

struct msg_queue {
    struct msg_chunk *head; /* owned: every chunk goes back to the pool on consume or clear */
    struct msg_chunk *tail;
    size_t bytes; /* unsent payload bytes in the queue */
    size_t chunks;
};

/* Appends a copy of data as one message (one chunk, or several marked
 * MORE/CONT when it is longer than MSG_CHUNK_MAX_PAYLOAD). Returns 0, or -1
 * when memory is out (nothing is queued then). */
int msg_queue_push(struct msg_queue *q, const void *data, size_t len, unsigned flags);

/* Appends bytes where message boundaries do not matter (bytes to a TCP
 * backend): into the last chunk while it has room and the same flags, then
 * into new chunks of up to MSG_CHUNK_MAX_PAYLOAD. Returns 0, or -1 when
 * memory is out (what fitted is queued, the rest is not). */
int msg_queue_append(struct msg_queue *q, const void *data, size_t len, unsigned flags);

/* msg_queue_append() of each piece in turn; -1 when memory is out. */
struct iovec;
int msg_queue_appendv(struct msg_queue *q, const struct iovec *iov, int n, unsigned flags);

/* The first chunk, or NULL. Its unsent payload is msg_chunk_data(c) + c->sent. */
static inline struct msg_chunk *msg_queue_peek(const struct msg_queue *q) { return q->head; }

/* Payload start; LWS_PRE bytes before it are writable headroom. */
uint8_t *msg_chunk_data(struct msg_chunk *c);

/* Marks n more bytes of the first chunk sent; gives it back when all are. */
void msg_queue_consume(struct msg_queue *q, size_t n);

void msg_queue_clear(struct msg_queue *q);

static inline bool msg_queue_empty(const struct msg_queue *q) { return q->head == NULL; }

#endif
