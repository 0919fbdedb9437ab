/* bridge.c - opens the bridge of a route's backend type and passes a
 * session's events to it; see bridge.h. The kinds of bridge live in
 * tcp_bridge.c (one backend socket per client) and mqtt_bridge.c (a link to
 * the route's shared broker session), registered by backends.c. */
#include "bridge_impl.h"

#include "backend_type.h"

#include "config.h"
#include "gateway.h"
#include "route.h"
#include "session.h"

#include <stdio.h>

int bridge_check_request(struct backend_request *req, char *reason, size_t reason_len)
{
    const struct wsg_route *r = req->match->route;
    const struct backend_type *t = backend_type_for(&gateway_get()->backend_types, r->type);
    if (!t) {
        snprintf(reason, reason_len, "route %s: its backend type is not built in", r->name);
        return 500;
    }
    return t->check_request ? t->check_request(req, reason, reason_len) : 0;
}

struct bridge *bridge_open(struct session *s)
{
    const struct backend_type *t =
        backend_type_for(&gateway_get()->backend_types, session_match(s)->route->type);
    return t ? t->open(s) : NULL;
}

void bridge_client_data(struct bridge *b, const uint8_t *data, size_t len, bool first, bool final,
                        bool text)
{
    b->ops->client_data(b, data, len, first, final, text);
}

void bridge_client_drained(struct bridge *b) { b->ops->client_drained(b); }

void bridge_client_gone(struct bridge *b) { b->ops->client_gone(b); }
