/* publish_rules.h - content routing for raw mqtt routes: which of a route's
 * "publish" rules a client message takes ({"when": {"pointer", "equals"}}),
 * and the values {msg./json/pointer} templates read from it. Pure: jansson
 * only; unit-tested and fuzzed. */
#ifndef WSGATE_PUBLISH_RULES_H
#define WSGATE_PUBLISH_RULES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct wsg_publish_rule;

/* The value at an RFC 6901 JSON Pointer ("" is the whole document), or NULL.
 * Borrowed from doc. */
json_t *json_pointer_get(json_t *doc, const char *pointer);

/* A client message as JSON (an object or array, or any JSON value), or NULL
 * if it is not JSON. The caller json_decref()s it. */
json_t *publish_message_json(const uint8_t *msg, size_t len);

/* The index of the first rule that matches: a rule without "when" matches
 * every message; one with "when" only a JSON message whose value at the
 * pointer equals the rule's value. -1 if none does. `doc` is the message's
 * JSON (publish_message_json) or NULL. */
long publish_rule_pick(const struct wsg_publish_rule *rules, size_t n, json_t *doc);

/* The text a {msg./pointer} placeholder expands to: a string's value, or an
 * integer's decimal digits; NULL for anything else (objects, arrays, reals,
 * booleans, null, absent), so that a template never gets a value it cannot
 * name exactly. `name` is the placeholder ("msg./id"); buf holds numbers. */
const char *publish_msg_value(json_t *doc, const char *name, char *buf, size_t buf_len);

#endif
