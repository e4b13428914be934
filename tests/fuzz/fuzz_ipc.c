/*
 * fuzz_ipc — the api <-> membership boundary: IPC framing
 * (src/common/ipc.c), the protobuf-c messages of proto/ipc.proto, and the
 * route translation of src/api/routes.c in both directions.
 *
 * The same input is read four ways:
 *   1. a byte stream of frames: ipc_frame_peek over it with a small max,
 *      each frame's payload unpacked as a Request and as a Reply;
 *   2. one payload: ps__request__unpack / ps__reply__unpack of all of it;
 *      a Reply that unpacks is rendered by route_render_reply for every
 *      route (the JSON must parse when it says 200);
 *   3. "query\0body": route_build_request for every route id (with a
 *      valid and an invalid path id where it has one); a request that
 *      builds must pack and unpack again (what the api process sends the
 *      membership process);
 *      a refusal must render as valid JSON (route_render_error);
 *   4. the part before the first NUL as a path for route_match.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "fuzz.h"
#include "proto/ipc.pb-c.h"
#include "proxystone/buf.h"
#include "proxystone/config.h"
#include "proxystone/ipc.h"
#include "proxystone/json.h"
#include "proxystone/routes.h"

/* Frame bound for the peek walk: small, so the -EMSGSIZE path is as easy to
 * reach as a whole frame. */
#define FUZZ_IPC_FRAME_MAX 512
/* Output bound for renderings (the api uses HTTP_WBUF_MAX). */
#define FUZZ_IPC_OUT_MAX (4 * 1024 * 1024)
/* Metadata bound passed to route_build_request: small, so "too large" is
 * reachable (the default max_metadata_bytes is 16 KiB). */
#define FUZZ_IPC_METADATA_MAX 256

static void die(const char *what, const char *text, size_t len)
{
	fprintf(stderr, "fuzz_ipc: %s\n", what);
	if (text)
		fprintf(stderr, "--- text ---\n%.*s\n--- end ---\n", (int)len,
			text);
	abort();
}

static void must_parse_json(const struct buf *b, const char *what)
{
	struct json_doc d;
	char err[160];
	if (json_parse(&d, b->base ? b->base : "", b->len, err, sizeof(err))) {
		fprintf(stderr, "fuzz_ipc: %s: %s\n", what, err);
		die("output is not valid JSON", b->base, b->len);
	}
	json_doc_fini(&d);
}

static void unpack_both(const uint8_t *p, size_t n)
{
	Ps__Request *rq = ps__request__unpack(NULL, n, p);
	if (rq)
		ps__request__free_unpacked(rq, NULL);
	Ps__Reply *rp = ps__reply__unpack(NULL, n, p);
	if (rp)
		ps__reply__free_unpacked(rp, NULL);
}

static void walk_frames(const uint8_t *data, size_t size)
{
	size_t off = 0;
	while (off < size) {
		const uint8_t *payload = NULL;
		size_t plen = 0, flen = 0;
		int rc =
		    ipc_frame_peek(data + off, size - off, FUZZ_IPC_FRAME_MAX,
				   &payload, &plen, &flen);
		if (rc <= 0) {
			if (rc != 0 && rc != -EMSGSIZE)
				die("ipc_frame_peek: unexpected result", NULL,
				    0);
			break;
		}
		if (flen != plen + IPC_HEADER_LEN || flen > size - off ||
		    payload != data + off + IPC_HEADER_LEN ||
		    plen > FUZZ_IPC_FRAME_MAX)
			die("ipc_frame_peek: frame outside the input", NULL, 0);
		unpack_both(payload, plen);
		off += flen;
	}
}

/*
 * routes.c renders stored metadata verbatim (jw_raw_trusted): the
 * membership process only ever stores JSON it validated or rendered itself
 * (json_render at registration, json_merge_objects on heartbeats, a
 * json_parse of every replica entry, node_meta_to_json for gossip). A
 * Reply therefore never carries invalid metadata_json; one that does is
 * outside the contract, so the harness drops it before rendering.
 */
static void trust_metadata(Ps__Node *n)
{
	if (!n || !n->metadata_json)
		return;
	struct json_doc d;
	if (json_parse(&d, n->metadata_json, strlen(n->metadata_json), NULL,
		       0)) {
		free(
		    n->metadata_json); /* unpacked with the default allocator */
		n->metadata_json = NULL;
	}
	json_doc_fini(&d);
}

static void render_replies(const uint8_t *data, size_t size,
			   const struct config *cfg)
{
	Ps__Reply *rp = ps__reply__unpack(NULL, size, data);
	if (!rp)
		return;
	for (size_t i = 0; i < rp->n_nodes; i++)
		trust_metadata(rp->nodes[i]);
	trust_metadata(rp->node);
	trust_metadata(rp->self);
	for (int r = 0; r < ROUTE_MAX; r++) {
		for (int del = 0; del < 2; del++) {
			struct route_match m;
			memset(&m, 0, sizeof(m));
			m.route = (enum route_id)r;
			m.method = del ? HTTP_DELETE : HTTP_GET;
			m.method_ok = true;
			strcpy(m.id, "node-1");
			m.id_ok = true;
			struct buf out;
			buf_init(&out, FUZZ_IPC_OUT_MAX);
			int status = route_render_reply(&m, rp, cfg, 1.25,
							1705314600000LL, &out);
			if (status == 200)
				must_parse_json(&out, "route_render_reply");
			buf_fini(&out);
			if (r != ROUTE_NODE)
				break;
		}
	}
	/* what tools/dump and the SSE stream show of the same nodes */
	struct buf out;
	struct json_writer w;
	buf_init(&out, FUZZ_IPC_OUT_MAX);
	jw_init(&w, &out);
	jw_array_begin(&w);
	for (size_t i = 0; i < rp->n_nodes; i++)
		route_write_node(&w, rp->nodes[i], i % 2 == 0);
	if (rp->node)
		route_write_node(&w, rp->node, true);
	jw_array_end(&w);
	if (!jw_finish(&w))
		must_parse_json(&out, "route_write_node");
	buf_fini(&out);
	ps__reply__free_unpacked(rp, NULL);
}

/* A request the api built must reach the membership process intact. */
static void check_request_wire(const Ps__Request *rq)
{
	size_t n = ps__request__get_packed_size(rq);
	uint8_t *p = malloc(n ? n : 1);
	if (!p)
		return;
	if (ps__request__pack(rq, p) != n)
		die("pack size mismatch", NULL, 0);
	Ps__Request *back = ps__request__unpack(NULL, n, p);
	if (!back)
		die("a built request does not unpack", NULL, 0);
	if (back->body_case != rq->body_case)
		die("a built request changed its body on the wire", NULL, 0);
	ps__request__free_unpacked(back, NULL);

	struct buf frames;
	buf_init(&frames, IPC_FRAME_MAX + IPC_HEADER_LEN);
	if (ipc_frame_append(&frames, &rq->base))
		die("ipc_frame_append refused a built request", NULL, 0);
	const uint8_t *payload;
	size_t plen, flen;
	if (ipc_frame_peek((const uint8_t *)frames.base, frames.len,
			   IPC_FRAME_MAX, &payload, &plen, &flen) != 1 ||
	    flen != frames.len || plen != n || memcmp(payload, p, n))
		die("ipc_frame_append output does not peek back", NULL, 0);
	buf_fini(&frames);
	free(p);
}

static void build_one(enum route_id r, int method, bool id_ok, const char *q,
		      size_t qlen, const char *body, size_t blen)
{
	struct route_match m;
	memset(&m, 0, sizeof(m));
	m.route = r;
	m.method = method;
	m.method_ok = true;
	snprintf(m.id, sizeof(m.id), "%s", id_ok ? "node-1" : "bad id/");
	m.id_ok = id_ok;
	Ps__Request rq;
	struct api_error e;
	memset(&e, 0, sizeof(e));
	int rc = route_build_request(&m, q, qlen, body, blen,
				     FUZZ_IPC_METADATA_MAX, &rq, &e);
	if (rc == 0) {
		if (rq.body_case == PS__REQUEST__BODY__NOT_SET)
			die("built request has no body", NULL, 0);
		check_request_wire(&rq);
	} else {
		if (!e.code || e.status < 400 || e.status > 599)
			die("refusal without an error", NULL, 0);
		struct buf out;
		buf_init(&out, FUZZ_IPC_OUT_MAX);
		if (route_render_error(&e, &out))
			die("route_render_error failed", e.message,
			    strlen(e.message));
		must_parse_json(&out, "route_render_error");
		buf_fini(&out);
	}
	route_request_fini(&rq);
}

/* Every route once with the method it takes (both for /nodes/{id}); the
 * routes with a path id also with a malformed one. */
static void build_requests(const char *q, size_t qlen, const char *body,
			   size_t blen)
{
	for (int r = 0; r < ROUTE_MAX; r++) {
		int method = HTTP_GET;
		switch (r) {
		case ROUTE_REGISTER:
		case ROUTE_HEARTBEAT:
		case ROUTE_ENABLE_SERVING:
		case ROUTE_DISABLE_SERVING:
			method = HTTP_POST;
			break;
		}
		build_one((enum route_id)r, method, true, q, qlen, body, blen);
		if (r == ROUTE_NODE)
			build_one(ROUTE_NODE, HTTP_DELETE, true, q, qlen, body,
				  blen);
		if (r == ROUTE_NODE || r == ROUTE_HEARTBEAT)
			build_one((enum route_id)r, method, false, q, qlen,
				  body, blen);
	}
}

static void match_path(const char *path, size_t len)
{
	static const int methods[] = {HTTP_GET, HTTP_POST, HTTP_DELETE,
				      HTTP_PUT};
	for (size_t mi = 0; mi < 4; mi++) {
		struct route_match m;
		route_match(methods[mi], path, len, &m);
		if (m.route >= ROUTE_MAX || !m.allow)
			die("route_match: bad result", path, len);
		if (!memchr(m.id, '\0', sizeof(m.id)))
			die("route_match: unterminated id", path, len);
		if (m.route != ROUTE_NODE && m.route != ROUTE_HEARTBEAT &&
		    m.id[0])
			die("route_match: id on a route without one", path,
			    len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config cfg;
	static bool ready;
	if (!ready) {
		config_defaults(&cfg);
		strcpy(cfg.coordinator_url, "http://127.0.0.1:4401");
		ready = true;
	}

	walk_frames(data, size);
	unpack_both(data, size);
	render_replies(data, size, &cfg);

	const uint8_t *nul = memchr(data, '\0', size);
	size_t qlen = nul ? (size_t)(nul - data) : size;
	const char *body = nul ? (const char *)nul + 1 : "";
	size_t blen = nul ? size - qlen - 1 : 0;
	build_requests((const char *)data, qlen, body, blen);
	match_path((const char *)data, qlen);
	return 0;
}
