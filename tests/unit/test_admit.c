/* test_admit — the coordinator's admission of gossip members (admit.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxystone/admit.h"

#define WORLD_MAX 512

/* What the fake gossip view says of member i (ids are i in byte 0-1). */
struct world {
	struct admit_look look[WORLD_MAX];
};

static struct swim_id id_of(size_t i)
{
	struct swim_id id;

	memset(&id, 0, sizeof(id));
	id.b[0] = (uint8_t)(i & 255);
	id.b[1] = (uint8_t)(i >> 8);
	id.b[15] = 0xAD;
	return id;
}

static size_t index_of(const struct swim_id *id)
{
	return (size_t)id->b[0] | (size_t)id->b[1] << 8;
}

static void look(void *ctx, const struct swim_id *id, struct admit_look *out)
{
	struct world *w = ctx;

	*out = w->look[index_of(id)];
}

static struct world *world_new(size_t n)
{
	struct world *w = calloc(1, sizeof(*w));

	assert_non_null(w);
	for (size_t i = 0; i < n; i++)
		w->look[i] = (struct admit_look){true, false, -1};
	return w;
}

/* The members pinged in `o` answer at `now`. */
static void answer(struct world *w, const struct admit_out *o, double now)
{
	for (size_t i = 0; i < o->n_ping; i++)
		w->look[index_of(&o->ping[i])].last_heard = now;
}

static void test_settle_and_answer_required(void **state)
{
	struct admit a;
	struct admit_out o;
	struct world *w = world_new(2);
	struct swim_id x = id_of(0), y = id_of(1);

	(void)state;
	assert_int_equal(admit_init(&a, 2.0, 100, 0), 0);
	admit_offer(&a, &x, 0);
	admit_offer(&a, &y, 0);
	admit_offer(&a, &x, 0.1); /* again: still one entry */
	admit_pass(&a, 0.25, look, w, &o);
	/* Both are pinged at once; nothing is registered yet. */
	assert_int_equal(o.n_ping, 2);
	assert_int_equal(o.n_reg, 0);
	/* x answers; y never does (a forged member at a dead address). */
	w->look[0].last_heard = 0.3;
	/* Heard before the settle time: still waits. */
	admit_pass(&a, 1.0, look, w, &o);
	assert_int_equal(o.n_reg, 0);
	assert_int_equal(o.n_ping, 0); /* y's re-ping is not due yet */
	admit_pass(&a, 1.3, look, w, &o);
	assert_int_equal(o.n_ping, 1); /* y again, after ADMIT_PING_INTERVAL */
	assert_true(swim_id_eq(&o.ping[0], &y));
	admit_pass(&a, 2.0, look, w, &o);
	assert_int_equal(o.n_reg, 1);
	assert_true(swim_id_eq(&o.reg[0], &x));
	/* A datagram from y that predates our ping proves nothing. */
	w->look[1].last_heard = 1.2;
	for (double t = 2.25; t < 10; t += 0.25) {
		admit_pass(&a, t, look, w, &o);
		assert_int_equal(o.n_reg, 0);
	}
	struct admit_stats st;
	admit_stats_get(&a, &st);
	assert_int_equal(st.pending, 1);
	assert_int_equal(st.admitted, 1);
	/* y is found dead: forgotten and counted. */
	w->look[1].alive = false;
	admit_pass(&a, 10, look, w, &o);
	admit_stats_get(&a, &st);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.expired, 1);
	admit_fini(&a);
	free(w);
}

static void test_rate_bounds_a_burst(void **state)
{
	struct admit a;
	struct admit_out o;
	struct admit_stats st;
	struct world *w = world_new(200);
	size_t total = 0;

	(void)state;
	assert_int_equal(admit_init(&a, 0.5, 10, 0), 0);
	for (size_t i = 0; i < 200; i++) {
		struct swim_id id = id_of(i);
		admit_offer(&a, &id, 0);
	}
	/* 50 pings a pass, starting where the last pass stopped. */
	double t = 0;
	for (int k = 0; k < 4; k++) {
		t += 0.01;
		admit_pass(&a, t, look, w, &o);
		assert_int_equal(o.n_ping, ADMIT_PINGS_PER_PASS);
		answer(w, &o, t + 0.001);
	}
	for (size_t i = 0; i < 200; i++)
		assert_true(w->look[i].last_heard > 0);
	/* Ready at 0.5 s: the burst is the rate, then rate per second. */
	admit_pass(&a, 1.0, look, w, &o);
	assert_int_equal(o.n_reg, 10);
	assert_int_equal(o.deferred, 190);
	total += o.n_reg;
	admit_pass(&a, 1.5, look, w, &o);
	assert_int_equal(o.n_reg, 5);
	total += o.n_reg;
	for (t = 1.75; t <= 21.0; t += 0.25) {
		admit_pass(&a, t, look, w, &o);
		assert_true(o.n_reg <= 3);
		total += o.n_reg;
	}
	assert_int_equal(total, 200);
	admit_stats_get(&a, &st);
	assert_int_equal(st.admitted, 200);
	assert_true(st.deferred >= 190);
	assert_int_equal(st.pending, 0);
	admit_fini(&a);
	free(w);
}

static void test_registered_elsewhere_and_full(void **state)
{
	struct admit a;
	struct admit_out o;
	struct admit_stats st;
	struct world *w = world_new(1);
	struct swim_id x = id_of(0);

	(void)state;
	assert_int_equal(admit_init(&a, 1.0, 1, 0), 0);
	admit_offer(&a, &x, 0);
	w->look[0].registered = true; /* it registered over HTTP */
	admit_pass(&a, 0.25, look, w, &o);
	admit_stats_get(&a, &st);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.expired, 0);
	assert_int_equal(o.n_ping, 0);
	/* Full table: counted, never silent. */
	for (size_t i = 0; i < ADMIT_PENDING_MAX + 3; i++) {
		struct swim_id id;
		memset(&id, 0, sizeof(id));
		memcpy(id.b, &i, sizeof(i));
		id.b[15] = 0x77;
		admit_offer(&a, &id, 1);
	}
	admit_stats_get(&a, &st);
	assert_int_equal(st.pending, ADMIT_PENDING_MAX);
	assert_int_equal(st.dropped, 3);
	admit_forget(&a, &x); /* unknown: no-op */
	admit_fini(&a);
	assert_int_equal(admit_init(&a, -1, 1, 0), -EINVAL);
	assert_int_equal(admit_init(&a, 1, 0, 0), -EINVAL);
	free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_settle_and_answer_required),
	    cmocka_unit_test(test_rate_bounds_a_burst),
	    cmocka_unit_test(test_registered_elsewhere_and_full),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
