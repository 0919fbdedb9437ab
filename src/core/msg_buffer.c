/* msg_buffer.c - a bounded message reassembly buffer; see msg_buffer.h. */
#include "msg_buffer.h"

#include "buf_pool.h"

#include <string.h>

int msg_buffer_append(struct msg_buffer *m, const uint8_t *piece, size_t len, size_t max)
{
    if (len == 0)
        return 0;
    size_t need = m->len + len;
    if (need > max || need < m->len)
        return MSG_BUFFER_TOO_BIG;
    if (need > m->cap) {
        uint8_t *grown = buf_pool_grow(m->data, m->len, need, &m->cap);
        if (!grown)
            return MSG_BUFFER_NO_MEMORY;
        m->data = grown;
    }
    memcpy(m->data + m->len, piece, len);
    m->len = need;
    return 0;
}

void msg_buffer_done(struct msg_buffer *m) { msg_buffer_free(m); }

void msg_buffer_free(struct msg_buffer *m)
{
    buf_pool_put(m->data);
    m->data = NULL;
    m->len = m->cap = 0;
}
