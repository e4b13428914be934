/* mproc — a membership process's state for unit tests; see mproc.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mproc.h"

/* Loop passes that flush the membership side of every socketpair: one
 * is enough for small frames, the rest are margin. */
#define FLUSH_PASSES 4

struct mproc *mproc_new(const char *tag)
{
	struct mproc *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	if (tmpdir_make(f->dir, tag)) {
		free(f);
		return NULL;
	}
	config_defaults(&f->cfg);
	snprintf(f->cfg.data_dir, sizeof(f->cfg.data_dir), "%s", f->dir);
	f->loop = ev_loop_new(EVFLAG_AUTO);
	if (!f->loop) {
		tmpdir_remove(f->dir);
		free(f);
		return NULL;
	}
	log_set_level(LOG_ERROR);
	return f;
}

void mproc_free(struct mproc *f)
{
	if (f->m)
		mproc_close(f->m);
	for (size_t i = 0; i < f->npeers; i++) {
		close(f->peers[i].fd);
		free(f->peers[i].c);
	}
	ev_loop_destroy(f->loop);
	tmpdir_remove(f->dir);
	free(f);
}

struct membership *mproc_open(struct mproc *f)
{
	struct membership *m = membership_new(&f->cfg);
	assert_non_null(m);
	m->loop = f->loop;
	assert_int_equal(persist_load(m), 0);
	assert_int_equal(persist_open_log(m), 0);
	m->n_over_limit = registry_count_over_limit(&m->reg);
	if (!m->self_id[0]) {
		dispatch_make_uuid(m->self_id);
		assert_int_equal(persist_snapshot(m), 0);
	}
	return m;
}

void mproc_self(struct membership *m)
{
	Ps__RegisterReq req = PS__REGISTER_REQ__INIT;
	req.url = "http://127.0.0.1:7000";
	req.role = (char *)config_role_name(m->cfg->role);
	struct reg_node *n;
	bool created;
	char err[ERR_MSG_MAX];
	assert_int_equal(registry_register(&m->reg, &req, m->self_id,
					   m->cfg->cluster_id, time_wall_ms(),
					   time_mono(), &n, &created, err,
					   sizeof(err)),
			 0);
	membership_self_refresh(m);
	assert_int_equal(persist_snapshot(m), 0);
}

void mproc_close(struct membership *m)
{
	while (m->clients)
		ipc_conn_close(m->clients->conn, 0);
	membership_free(m);
}

/* ---- clients ------------------------------------------------------------ */

static void on_frame_unused(struct ipc_conn *conn, const uint8_t *data,
			    size_t len, void *ud)
{
	(void)conn;
	(void)data;
	(void)len;
	(void)ud;
	fail_msg("the test sends no frames to membership");
}

/* As membership.c's on_client_close, but the test frees the client. */
static void on_close(struct ipc_conn *conn, int reason, void *ud)
{
	(void)conn;
	(void)reason;
	struct client *c = ud;
	struct membership *m = c->m;
	for (struct client **p = &m->clients; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	m->nclients--;
	if (c->subscriber)
		m->nsubscribers--;
	c->conn = NULL;
}

struct client *mproc_client_new(struct membership *m, ipc_close_fn close_fn,
				int *fd)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX,
				    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
				    0, sv),
			 0);
	struct client *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->m = m;
	c->serial = ++m->next_serial;
	c->conn = ipc_conn_new(m->loop, sv[0], on_frame_unused, close_fn, c);
	assert_non_null(c->conn);
	c->next = m->clients;
	m->clients = c;
	m->nclients++;
	*fd = sv[1];
	return c;
}

struct mproc_peer *mproc_client(struct mproc *f, struct membership *m)
{
	assert_true(f->npeers < MPROC_PEERS_MAX);
	struct mproc_peer *p = &f->peers[f->npeers++];
	p->c = mproc_client_new(m, on_close, &p->fd);
	p->len = 0;
	return p;
}

size_t mproc_drain(struct mproc *f, struct mproc_peer *p,
		   Ps__Reply *out[MPROC_REPLIES_MAX])
{
	for (int i = 0; i < FLUSH_PASSES; i++)
		ev_run(f->loop, EVRUN_NOWAIT);
	for (;;) {
		ssize_t n =
		    read(p->fd, p->buf + p->len, sizeof(p->buf) - p->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		p->len += (size_t)n;
		assert_true(p->len < sizeof(p->buf));
	}
	size_t k = 0, off = 0;
	for (;;) {
		const uint8_t *payload;
		size_t plen, flen;
		int rc = ipc_frame_peek(p->buf + off, p->len - off,
					IPC_FRAME_MAX, &payload, &plen, &flen);
		assert_true(rc >= 0);
		if (rc == 0)
			break;
		assert_true(k < MPROC_REPLIES_MAX);
		out[k] = ps__reply__unpack(NULL, plen, payload);
		assert_non_null(out[k]);
		k++;
		off += flen;
	}
	memmove(p->buf, p->buf + off, p->len - off);
	p->len -= off;
	return k;
}

void mproc_free_replies(Ps__Reply **r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ps__reply__free_unpacked(r[i], NULL);
}

void mproc_expect_nothing(struct mproc *f, struct mproc_peer *p)
{
	Ps__Reply *r[MPROC_REPLIES_MAX];
	size_t n = mproc_drain(f, p, r);
	mproc_free_replies(r, n);
	assert_int_equal(n, 0);
}

Ps__Reply *mproc_expect_one(struct mproc *f, struct mproc_peer *p, uint64_t id)
{
	Ps__Reply *r[MPROC_REPLIES_MAX];
	size_t n = mproc_drain(f, p, r);
	if (n != 1)
		mproc_free_replies(r, n);
	assert_int_equal(n, 1);
	assert_int_equal(r[0]->id, id);
	return r[0];
}

void mproc_expect_error(struct mproc *f, struct mproc_peer *p, uint64_t id,
			const char *code)
{
	Ps__Reply *r = mproc_expect_one(f, p, id);
	bool ok = r->error && !strcmp(r->error->code, code);
	if (!ok)
		print_error("reply %llu: error %s, expected %s\n",
			    (unsigned long long)id,
			    r->error ? r->error->code : "none", code);
	ps__reply__free_unpacked(r, NULL);
	assert_true(ok);
}

int mproc_fdatasync_eio(int fd)
{
	(void)fd;
	errno = EIO;
	return -1;
}

/* ---- requests ----------------------------------------------------------- */

void mproc_register(struct membership *m, struct mproc_peer *p, uint64_t rid,
		    const char *id, const char *url, const char *meta)
{
	Ps__RegisterReq rr = PS__REGISTER_REQ__INIT;
	rr.id = (char *)id;
	rr.url = (char *)url;
	rr.metadata_json = (char *)meta;
	Ps__Request req = PS__REQUEST__INIT;
	req.id = rid;
	req.body_case = PS__REQUEST__BODY_REGISTER;
	req.register_ = &rr;
	dispatch_handle(m, p->c, &req);
}

struct reg_node *mproc_registered(struct mproc *f, struct membership *m,
				  struct mproc_peer *p, const char *id)
{
	mproc_register(m, p, 100, id, "http://10.0.0.1:8080", NULL);
	assert_int_equal(persist_commit(m), 0);
	Ps__Reply *r = mproc_expect_one(f, p, 100);
	assert_null(r->error);
	ps__reply__free_unpacked(r, NULL);
	struct reg_node *n = registry_find(&m->reg, id);
	assert_non_null(n);
	return n;
}

void mproc_request(struct membership *m, struct mproc_peer *p, uint64_t rid,
		   Ps__Request__BodyCase kind, const char *id)
{
	Ps__NodeIdReq nid = PS__NODE_ID_REQ__INIT;
	Ps__ListNodesReq list = PS__LIST_NODES_REQ__INIT;
	Ps__Empty empty = PS__EMPTY__INIT;
	Ps__Request req = PS__REQUEST__INIT;
	req.id = rid;
	req.body_case = kind;
	nid.id = (char *)id;
	switch (kind) {
	case PS__REQUEST__BODY_GET_NODE:
		req.get_node = &nid;
		break;
	case PS__REQUEST__BODY_DELETE_NODE:
		req.delete_node = &nid;
		break;
	case PS__REQUEST__BODY_LIST_NODES:
		req.list_nodes = &list;
		break;
	case PS__REQUEST__BODY_GET_HEALTH:
		req.get_health = &empty;
		break;
	case PS__REQUEST__BODY_GET_STATUS:
		req.get_status = &empty;
		break;
	case PS__REQUEST__BODY_GET_STATS:
		req.get_stats = &empty;
		break;
	case PS__REQUEST__BODY_GET_MEMBERS:
		req.get_members = &empty;
		break;
	case PS__REQUEST__BODY_FOLLOW:
		req.follow = &empty;
		break;
	case PS__REQUEST__BODY_SUBSCRIBE:
		req.subscribe = &empty;
		break;
	default:
		fail_msg("mproc_request: kind %d not handled", kind);
	}
	dispatch_handle(m, p->c, &req);
}

void mproc_subscribe(struct mproc *f, struct membership *m,
		     struct mproc_peer *p)
{
	mproc_request(m, p, MPROC_SUBSCRIBE_ID, PS__REQUEST__BODY_SUBSCRIBE,
		      NULL);
	Ps__Reply *r = mproc_expect_one(f, p, MPROC_SUBSCRIBE_ID);
	assert_null(r->error);
	assert_null(r->event);
	ps__reply__free_unpacked(r, NULL);
}

bool mproc_lists(const Ps__Reply *r, const char *id)
{
	for (size_t i = 0; i < r->n_nodes; i++)
		if (!strcmp(r->nodes[i]->id, id))
			return true;
	return false;
}
