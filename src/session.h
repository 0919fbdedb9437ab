/* session.h - one client WebSocket connection: message accounting and
 * limits, the queue of messages to the client, close codes, the access log.
 * It hands every client message to its bridge and takes the bridge's
 * messages for the client; it knows nothing of backends. */
#ifndef WSGATE_SESSION_H
#define WSGATE_SESSION_H

#include <jansson.h>
#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>

#include "auth_service.h"
#include "route.h"

struct wsg_limits;
struct wsg_target;
struct route_metrics;
struct rules;
struct auth_wait;

/* WebSocket close codes used by wsgate (RFC 6455 section 7.4.1). */
enum {
    CLOSE_NORMAL = 1000,
    CLOSE_GOING_AWAY = 1001,
    CLOSE_INVALID_PAYLOAD = 1007,
    CLOSE_POLICY = 1008,
    CLOSE_TOO_BIG = 1009,
    CLOSE_INTERNAL_ERROR = 1011,
    CLOSE_SERVICE_RESTART = 1012, /* reconnect: what served it is being replaced */
    CLOSE_TRY_AGAIN_LATER = 1013, /* the auth service could not answer */
    CLOSE_UNAUTHORIZED = 4401,    /* token expired, or the auth service said 401 */
    CLOSE_FORBIDDEN = 4403,       /* the auth service said 403 */
};

/* A close frame's reason holds at most 125 - 2 bytes (RFC 6455 5.5); longer
 * reasons are cut on a character boundary. */
#define SESSION_CLOSE_REASON_MAX 123

struct session;

/* Every open session, and the liveness sweep over them (struct gateway's
 * `sessions`). Zeroed = none; an entry from session_create() to
 * session_destroy(); the sweep timer runs while there is one. */
struct session_registry {
    struct session *head; /* newest first, through session->next */
    size_t count;
    lws_sorted_usec_list_t sweep_timer; /* one for all sessions, once a second */
    bool sweeping;                      /* sweep_timer is scheduled */
};

/* lws sends at most a protocol's tx_packet_size per write and buffers the
 * rest itself; sessions never hand it more (server.c sets this size). */
#define SESSION_TX_PACKET_BYTES 65536

/* `client_addr`: the client as trusted_proxies see it (client_addr.h), for
 * the logs. `claims`: the verified JWT's claims or NULL; the session takes
 * the reference.
 * Created when a handshake is accepted (before lws binds the connection to
 * its protocol); takes ownership of `match`'s contents and leaves it empty,
 * holds a reference to the rules it was accepted under (match's route and
 * the limits live there) and copies the backend targets chosen for it (from
 * the route or its target map), so that a reload never touches an open
 * connection. Destroyed by session_destroy() when lws frees the connection.
 * The caller has taken a max_connections place (metrics_connection_admit);
 * a created session owns it and session_destroy() gives it back. */
struct session *session_create(struct lws *wsi, struct route_match *match, const char *subprotocol,
                               struct rules *rules, const struct wsg_target *targets,
                               size_t n_targets, const char *client_addr, json_t *claims);
void session_destroy(struct session *s);

/* WebSocket events from the server's lws callback (ESTABLISHED, RECEIVE,
 * SERVER_WRITEABLE, CLOSED). Returns what the lws callback should return. */
int session_lws_event(struct session *s, struct lws *wsi, enum lws_callback_reasons reason,
                      void *in, size_t len);

/* True if an lws opaque pointer is a session (not a backend connection). */
bool session_is(const void *opaque);

/* Sessions currently open (for max_connections and shutdown). */
size_t session_count(void);

/* Cancels the liveness sweep (before the lws context goes). */
void session_sweep_stop(void);

/* Closes every established session with `code` once its queue is sent. */
void session_close_all(int code, const char *reason);

/* --- for the bridge ------------------------------------------------------- */

/* Queues one message for the client. Returns the bytes now queued for the
 * client, or -1 if the session is closing or out of memory. */
long session_send(struct session *s, const void *data, size_t len, bool text);

/* Queues one of the gateway's own text messages (an ack, an error): like
 * session_send(), but not counted in the route's relayed messages/bytes. */
long session_reply(struct session *s, const char *text, size_t len);

/* Bytes queued for the client and not yet sent. */
size_t session_queued_bytes(const struct session *s);

/* Sends what is queued, then closes with `code` and a one-line reason. */
void session_close(struct session *s, int code, const char *reason);

/* Stops or resumes reading client messages (backpressure from the backend). */
void session_pause_reading(struct session *s, bool paused);

/* "auth": "http": the session waits for the auth service (it takes `w`):
 * from ESTABLISHED it reads nothing from the client and opens no backend
 * until session_auth_answer() tells it the verdict. */
void session_auth_wait(struct session *s, struct auth_wait *w);

/* The auth service's verdict for a waiting session: allowed (claims, a
 * borrowed reference or NULL, fill {auth.x}) opens the backend and resumes
 * reading; anything else closes with 4401 / 4403 / 1013 and `reason`. */
void session_auth_answer(struct session *s, enum auth_verdict v, json_t *claims,
                         const char *reason);

/* {"refresh": token} of an envelope client on a JWT route: a valid token
 * with the same "sub" moves the connection's expiry (its claims stay those
 * the connection was opened with). 0, or -1 with a one-line reason that
 * never holds the token. */
int session_refresh_token(struct session *s, const char *token, size_t len, char *reason,
                          size_t reason_len);

const struct route_match *session_match(const struct session *s);
json_t *session_claims(const struct session *s); /* NULL on routes without auth */
const struct wsg_limits *session_limits(const struct session *s);
struct route_metrics *session_metrics(const struct session *s);
struct lws *session_wsi(const struct session *s);
const char *session_subprotocol(const struct session *s); /* "" if none */
/* The client as resolved (behind trusted proxies; else the peer), and the
 * peer (the socket's, or what a PROXY header said). */
const char *session_client(const struct session *s);

/* A client offers permessage-deflate: true if its route has "compression"
 * (then messages to it go compressed, and its text is checked after lws
 * inflates it). */
bool session_accept_deflate(struct session *s, struct lws *wsi);
const char *session_peer(const struct session *s);
const struct wsg_target *session_targets(const struct session *s, size_t *n);

#endif
