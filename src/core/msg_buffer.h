/* msg_buffer.h - one client message being reassembled from its fragments,
 * bounded, for bridges that need whole messages (length32 framing, MQTT
 * publishes). The bytes live in a buf_pool block owned by the buffer;
 * msg_buffer_done() or msg_buffer_free() gives it back to the pool, so an
 * idle client holds no buffer and a busy one calls no allocator. */
#ifndef WSGATE_MSG_BUFFER_H
#define WSGATE_MSG_BUFFER_H

#include <stddef.h>
#include <stdint.h>

struct msg_buffer {
    uint8_t *data; /* owned: a buf_pool block, or NULL */
    size_t len, cap;
};

#define MSG_BUFFER_TOO_BIG (-1)   /* the message would pass `max` bytes: 1009 */
#define MSG_BUFFER_NO_MEMORY (-2) /* the pool has no block for it: 1011 */

/* Appends a piece: 0, or one of the above with the message left as it was. */
int msg_buffer_append(struct msg_buffer *m, const uint8_t *piece, size_t len, size_t max);

/* The message was used: its block goes back to the pool. */
void msg_buffer_done(struct msg_buffer *m);

void msg_buffer_free(struct msg_buffer *m);

#endif
