/* Unit tests: IPC framing (src/common/ipc.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/ipc.pb-c.h"
#include "proxystone/ipc.h"

static void pack_request(struct buf *b, uint64_t id, const char *node)
{
	Ps__Request r = PS__REQUEST__INIT;
	Ps__NodeIdReq g = PS__NODE_ID_REQ__INIT;
	g.id = (char *)node;
	r.id = id;
	r.body_case = PS__REQUEST__BODY_GET_NODE;
	r.get_node = &g;
	assert_int_equal(ipc_frame_append(b, &r.base), 0);
}

static void test_roundtrip_and_every_prefix(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 1 << 20);
	pack_request(&b, 42, "node-a");
	pack_request(&b, 43, "node-b");
	const uint8_t *p;
	size_t plen, flen;
	/* Every truncated prefix of the first frame asks for more. */
	size_t first = 0;
	assert_int_equal(ipc_frame_peek((uint8_t *)b.base, b.len, IPC_FRAME_MAX,
					&p, &plen, &first),
			 1);
	for (size_t n = 0; n < first; n++)
		assert_int_equal(ipc_frame_peek((uint8_t *)b.base, n,
						IPC_FRAME_MAX, &p, &plen,
						&flen),
				 0);
	Ps__Request *r = ps__request__unpack(NULL, plen, p);
	assert_non_null(r);
	assert_int_equal(r->id, 42);
	assert_string_equal(r->get_node->id, "node-a");
	ps__request__free_unpacked(r, NULL);
	assert_int_equal(ipc_frame_peek((uint8_t *)b.base + first,
					b.len - first, IPC_FRAME_MAX, &p, &plen,
					&flen),
			 1);
	assert_int_equal(first + flen, b.len);
	r = ps__request__unpack(NULL, plen, p);
	assert_int_equal(r->id, 43);
	ps__request__free_unpacked(r, NULL);
	buf_fini(&b);
}

static void test_oversized_length_rejected_before_allocation(void **state)
{
	(void)state;
	const uint8_t *p;
	size_t plen, flen;
	uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xff};
	assert_int_equal(
	    ipc_frame_peek(hdr, 4, IPC_FRAME_MAX, &p, &plen, &flen), -EMSGSIZE);
	uint8_t small[4] = {0, 0, 1, 1}; /* 257 > 256 */
	assert_int_equal(ipc_frame_peek(small, 4, 256, &p, &plen, &flen),
			 -EMSGSIZE);
	uint8_t zero[4] = {0, 0, 0, 0};
	assert_int_equal(ipc_frame_peek(zero, 4, 256, &p, &plen, &flen), 1);
	assert_int_equal(plen, 0);
}

static void test_append_respects_buffer_bound(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 8);
	Ps__Request r = PS__REQUEST__INIT;
	Ps__NodeIdReq g = PS__NODE_ID_REQ__INIT;
	g.id = "a-rather-long-node-identifier";
	r.id = 1;
	r.body_case = PS__REQUEST__BODY_GET_NODE;
	r.get_node = &g;
	assert_int_equal(ipc_frame_append(&b, &r.base), -ENOSPC);
	assert_int_equal(b.len, 0);
	buf_fini(&b);
}

struct got {
	int frames;
	uint64_t last_id;
	int closed;
	int reason;
};

static void on_frame(struct ipc_conn *c, const uint8_t *d, size_t n, void *ud)
{
	(void)c;
	struct got *g = ud;
	Ps__Request *r = ps__request__unpack(NULL, n, d);
	assert_non_null(r);
	g->frames++;
	g->last_id = r->id;
	ps__request__free_unpacked(r, NULL);
}

static void on_close(struct ipc_conn *c, int reason, void *ud)
{
	(void)c;
	struct got *g = ud;
	g->closed++;
	g->reason = reason;
}

static void pump(struct ev_loop *loop, struct got *g, int frames)
{
	for (int i = 0; i < 2000 && g->frames < frames && !g->closed; i++)
		ev_run(loop, EVRUN_NOWAIT);
}

static void test_conn_over_socketpair(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct got g = {0};
	struct ipc_conn *c = ipc_conn_new(loop, sv[0], on_frame, on_close, &g);
	assert_non_null(c);
	/* 100 frames written byte by byte in odd chunks still arrive whole. */
	struct buf b;
	buf_init(&b, 1 << 20);
	for (int i = 1; i <= 100; i++)
		pack_request(&b, (uint64_t)i, "n");
	for (size_t off = 0; off < b.len;) {
		size_t n = b.len - off < 7 ? b.len - off : 7;
		assert_int_equal(write(sv[1], b.base + off, n), (ssize_t)n);
		off += n;
		ev_run(loop, EVRUN_NOWAIT);
	}
	pump(loop, &g, 100);
	assert_int_equal(g.frames, 100);
	assert_int_equal(g.last_id, 100);
	/* A bogus length closes the connection with -EMSGSIZE. */
	uint8_t bad[4] = {0x7f, 0, 0, 0};
	assert_int_equal(write(sv[1], bad, 4), 4);
	pump(loop, &g, 1000);
	assert_int_equal(g.closed, 1);
	assert_int_equal(g.reason, -EMSGSIZE);
	close(sv[1]);
	buf_fini(&b);
	ev_loop_destroy(loop);
}

static void test_send_reaches_peer(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct got a = {0}, z = {0};
	struct ipc_conn *ca = ipc_conn_new(loop, sv[0], on_frame, on_close, &a);
	struct ipc_conn *cz = ipc_conn_new(loop, sv[1], on_frame, on_close, &z);
	Ps__Request r = PS__REQUEST__INIT;
	Ps__NodeIdReq g = PS__NODE_ID_REQ__INIT;
	g.id = "x";
	r.body_case = PS__REQUEST__BODY_GET_NODE;
	r.get_node = &g;
	for (int i = 1; i <= 10; i++) {
		r.id = (uint64_t)i;
		assert_int_equal(ipc_conn_send(ca, &r.base), 0);
	}
	pump(loop, &z, 10);
	assert_int_equal(z.frames, 10);
	ipc_conn_close(ca, 0);
	assert_int_equal(a.closed, 1);
	pump(loop, &z, 1000);
	assert_int_equal(z.closed, 1); /* peer saw EOF */
	(void)cz;
	ev_loop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip_and_every_prefix),
	    cmocka_unit_test(test_oversized_length_rejected_before_allocation),
	    cmocka_unit_test(test_append_respects_buffer_bound),
	    cmocka_unit_test(test_conn_over_socketpair),
	    cmocka_unit_test(test_send_reaches_peer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
