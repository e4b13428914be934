/* admit — gossip members' way into the registry; see
 * include/proxystone/admit.h. */
#include "proxystone/admit.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int admit_init(struct admit *a, double settle, double rate, double now)
{
	memset(a, 0, sizeof(*a));
	if (!isfinite(settle) || settle < 0 || !isfinite(rate) || rate <= 0)
		return -EINVAL;
	a->e = calloc(ADMIT_PENDING_MAX, sizeof(*a->e));
	a->gone = calloc(ADMIT_PENDING_MAX, sizeof(*a->gone));
	if (!a->e || !a->gone) {
		admit_fini(a);
		return -ENOMEM;
	}
	a->settle = settle;
	a->rate = rate;
	a->tokens = rate < 1 ? 1 : rate;
	a->refilled_at = now;
	return 0;
}

void admit_fini(struct admit *a)
{
	free(a->e);
	free(a->gone);
	a->e = NULL;
	a->gone = NULL;
	a->n = 0;
}

static size_t find(const struct admit *a, const struct swim_id *id)
{
	for (size_t i = 0; i < a->n; i++)
		if (swim_id_eq(&a->e[i].id, id))
			return i;
	return a->n;
}

void admit_offer(struct admit *a, const struct swim_id *id, double now)
{
	if (find(a, id) < a->n)
		return;
	if (a->n == ADMIT_PENDING_MAX) {
		a->st.dropped++;
		return;
	}
	a->e[a->n++] = (struct admit_entry){
	    .id = *id,
	    .alive_since = now,
	    .pinged_at = -1,
	};
}

static void remove_at(struct admit *a, size_t i)
{
	assert(i < a->n);
	a->e[i] = a->e[--a->n];
}

void admit_forget(struct admit *a, const struct swim_id *id)
{
	size_t i = find(a, id);

	if (i < a->n)
		remove_at(a, i);
}

static void refill(struct admit *a, double now)
{
	double burst = a->rate < 1 ? 1 : a->rate;

	if (now > a->refilled_at)
		a->tokens += (now - a->refilled_at) * a->rate;
	if (a->tokens > burst)
		a->tokens = burst;
	a->refilled_at = now;
}

/*
 * Visits every pending member once, starting where the last pass stopped
 * asking for pings, so that with more silent members than
 * ADMIT_PINGS_PER_PASS each still gets its turn.
 */
void admit_pass(struct admit *a, double now, admit_look_fn look, void *ctx,
		struct admit_out *out)
{
	size_t n = a->n, start = n ? a->cursor % n : 0, next_cursor = start;
	bool ping_budget_hit = false;

	out->n_ping = out->n_reg = out->deferred = 0;
	refill(a, now);
	/* Decide first, remove after: the visit order stays intact. */
	bool *gone = a->gone;
	memset(gone, 0, n * sizeof(*gone));
	for (size_t k = 0; k < n; k++) {
		size_t i = (start + k) % n;
		struct admit_entry *e = &a->e[i];
		struct admit_look lk = {false, false, -1};

		look(ctx, &e->id, &lk);
		if (lk.registered || !lk.alive) {
			if (!lk.registered)
				a->st.expired++;
			gone[i] = true;
			continue;
		}
		bool answered =
		    e->pinged_at >= 0 && lk.last_heard > e->pinged_at;
		if (!answered) {
			if (e->pinged_at >= 0 &&
			    now - e->pinged_at < ADMIT_PING_INTERVAL)
				continue;
			if (out->n_ping == ADMIT_PINGS_PER_PASS) {
				if (!ping_budget_hit)
					next_cursor = i;
				ping_budget_hit = true;
				continue;
			}
			out->ping[out->n_ping++] = e->id;
			e->pinged_at = now;
			a->st.pings++;
			continue;
		}
		if (now - e->alive_since < a->settle)
			continue;
		if (a->tokens < 1 || out->n_reg == ADMIT_BATCH_MAX) {
			out->deferred++;
			continue;
		}
		a->tokens -= 1;
		out->reg[out->n_reg++] = e->id;
		a->st.admitted++;
		gone[i] = true;
	}
	a->st.deferred += out->deferred;
	/* Compact, keeping order; the cursor follows its entry. */
	size_t w = 0, cursor = 0;
	for (size_t i = 0; i < n; i++) {
		if (i == next_cursor)
			cursor = w;
		if (!gone[i])
			a->e[w++] = a->e[i];
	}
	assert(w <= n && a->n == n);
	a->n = w;
	a->cursor = ping_budget_hit ? cursor : 0;
}

void admit_stats_get(const struct admit *a, struct admit_stats *out)
{
	*out = a->st;
	out->pending = a->n;
}
