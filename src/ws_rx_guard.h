/* ws_rx_guard.h - checks every byte libwebsockets reads from an established
 * client WebSocket against RFC 6455 (ws_frame_check.h) before lws parses it.
 *
 * Why here: lws 4.1.6 offers no hook between reading a client's bytes and
 * parsing its frames, and its server accepts unmasked frames, drops an
 * over-long control frame without a close frame, and answers a bad close
 * frame with none either. It reads client sockets with recv() (plain) and
 * SSL_read() (TLS), both called through its PLT, so the wsgate executable
 * defines functions of those names (interpose.c): lws calls them, they call
 * ws_rx_guard_recv / ws_rx_guard_ssl_read here, which call the real ones and
 * check what came back. Sockets not registered here (backends, HTTP, Paho's
 * threads) pass straight through. Two things more happen on the way: data
 * frames are unmasked here (ws_frame_events.unmask), and while few clients
 * are connected a plain read takes 16 KiB rather than lws's 64 (see
 * FEW_CLIENTS in ws_rx_guard.c).
 *
 * On a violation the read returns only the bytes before the offending frame,
 * so lws never delivers any of it; the owner is told once (code, reason) and
 * must close with that code; from then on reads of that socket drain and
 * discard what the client sends and report "no data yet", and once the owner
 * says its close frame is on its way (ws_rx_guard_closing) they report the
 * end of the stream, so lws ends the connection without waiting for an ack.
 * Everything but the pass-through runs on the lws loop's thread only. */
#ifndef WSGATE_WS_RX_GUARD_H
#define WSGATE_WS_RX_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ssl_st;
struct ws_rx_guard_conn;

/* The registered client sockets, indexed by socket number (struct
 * gateway's `rx_guard`). Zeroed = none; an entry from ws_rx_guard_register()
 * to ws_rx_guard_unregister(); the array grows on demand and is kept for
 * the process. */
struct ws_rx_guard_table {
    struct ws_rx_guard_conn **by_fd; /* owned array; the entries are the sessions' */
    size_t n_by_fd;
    unsigned long n_registered;
};

/* Told once, from inside lws's read, that the client broke a rule. `reason`
 * is static text. It must not close the connection from here: ask for a
 * writable callback and close from it. */
typedef void (*ws_rx_guard_fail_fn)(void *owner, int code, const char *reason);

/* Starts checking the client socket `fd` (with `ssl`, lws_get_ssl(), if it
 * is TLS) from its next read on, with ws_frame_check `settings`
 * (WS_FC_ALLOW_RSV1 | WS_FC_NO_TEXT_UTF8 once permessage-deflate is
 * negotiated: its text frames are compressed). Call it at ESTABLISHED: bytes that followed
 * the upgrade request in the read lws is still parsing (frames the client
 * sent before the 101) are judged here, and a violation among them is
 * reported before this returns; lws parses those bytes anyway, so the owner
 * must relay nothing more. Returns NULL if out of memory. The result belongs
 * to the caller until ws_rx_guard_unregister(). */
struct ws_rx_guard_conn *ws_rx_guard_register(int fd, void *ssl, void *owner,
                                              ws_rx_guard_fail_fn on_fail, uint8_t settings);

/* The owner's close frame has been handed to lws: end reading. */
void ws_rx_guard_closing(struct ws_rx_guard_conn *g);

/* With permessage-deflate (WS_FC_ALLOW_RSV1): whether the next message lws
 * delivers (its first LWS_CALLBACK_RECEIVE) was compressed. The guard
 * clears RSV1 before lws sees it, so lws's own inflater never runs; the
 * caller inflates. Call exactly once per message. */
int ws_rx_guard_message_compressed(struct ws_rx_guard_conn *g);

/* The code of the valid close frame the client sent (0 if none yet, 1005 if
 * it had no payload). */
int ws_rx_guard_close_code(const struct ws_rx_guard_conn *g);

/* Stops checking and frees `g` (NULL is fine). Call before the socket can be
 * closed and its number reused. */
void ws_rx_guard_unregister(struct ws_rx_guard_conn *g);

/* Connections registered now (for tests and the shutdown check). */
unsigned long ws_rx_guard_count(void);

/* recv() and SSL_read() of the process, from interpose.c (any thread). */
ssize_t ws_rx_guard_recv(int fd, void *buf, size_t len, int flags);
int ws_rx_guard_ssl_read(struct ssl_st *ssl, void *buf, int num);

#endif
