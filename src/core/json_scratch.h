/* json_scratch.h - jansson's memory while one message is being handled.
 *
 * jansson makes a node for every value it parses or builds and grows its
 * text buffers by copying, so code that parses or builds JSON per message
 * (envelope routes, publish rules that read the message) would call malloc
 * and free dozens of times per message. Between json_scratch_begin() and
 * json_scratch_end() on a thread, jansson's allocations are carved from a
 * bump arena of buf_pool blocks instead and its frees cost nothing; the
 * outermost json_scratch_end() drops the lot at once and gives the blocks
 * back to the pool. Outside a scope (config, JWT claims, anything that
 * lives on) jansson allocates as it did before json_scratch_install().
 *
 * The rule that makes it safe: no jansson value or string made inside a
 * scope may be used after the scope ends. Copy out what must survive
 * (envelope.c copies its results into buf_pool blocks and msg_buffers
 * before it ends its scope). Scopes nest.
 *
 * Until json_scratch_install() is called (main.c does, at start), begin and
 * end change nothing: jansson keeps the allocator it has (test_oom.c's
 * failing one, in its test). Pure: no I/O; unit-tested. */
#ifndef WSGATE_JSON_SCRATCH_H
#define WSGATE_JSON_SCRATCH_H

#include <stddef.h>

/* Routes jansson's allocations through the scratch arena while a scope is
 * open on the calling thread, and to the allocator jansson had before
 * otherwise. Call once, before other threads use jansson. */
void json_scratch_install(void);

void json_scratch_begin(void);
void json_scratch_end(void);

/* Bytes of arena handed out in the current scope (0 outside one): for the
 * tests. */
size_t json_scratch_used(void);

#endif
