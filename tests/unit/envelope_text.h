/* envelope_text.h - for tests: the envelope builders' JSON as a malloc'd,
 * NUL-terminated string (the caller frees it), NULL when the builder fails,
 * *len (if not NULL) its length; the msg_buffer it was built in is given
 * back. Shared by tests/unit/test_envelope.c and fuzz/fuzz_envelope.c. */
#ifndef WSGATE_TEST_ENVELOPE_TEXT_H
#define WSGATE_TEST_ENVELOPE_TEXT_H

#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "msg_buffer.h"

static inline char *envelope_text(int rc, struct msg_buffer *m, size_t *len)
{
    char *s = rc == 0 ? malloc(m->len + 1) : NULL;
    if (s) {
        memcpy(s, m->data, m->len);
        s[m->len] = '\0';
        if (len)
            *len = m->len;
    }
    msg_buffer_free(m);
    return s;
}

static inline char *message_text(const char *topic, const uint8_t *payload, size_t n, size_t *len)
{
    struct msg_buffer m = {0};
    return envelope_text(envelope_message(&m, topic, payload, n), &m, len);
}

static inline char *ack_text(const char *id, size_t *len)
{
    struct msg_buffer m = {0};
    return envelope_text(envelope_ack(&m, id), &m, len);
}

static inline char *error_text(const char *code, const char *message, const char *id, size_t *len)
{
    struct msg_buffer m = {0};
    return envelope_text(envelope_error(&m, code, message, id), &m, len);
}

#endif
