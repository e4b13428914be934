// Proxy Stone dashboard. Plain JavaScript, no build step, no dependencies.
//
// The page asks the ui process for the list of backends to scan
// (/config.json), then talks to every node's HTTP API directly (the API
// sends Access-Control-Allow-Origin: *):
//   - each backend is probed with GET /api/cluster/status (role, id, status,
//     serving mode, response time as measured here, last contact);
//   - each backend that answered gets an EventSource on /api/cluster/events;
//     any registry, node or service event refreshes the views at once;
//   - where the event stream is unavailable (not implemented by that node,
//     or dropped), the page polls instead, often enough that a change shows
//     within 2 s, and retries the stream with backoff;
//   - the selected backend receives every view request and every action.
// Who the page talks to is the security boundary (issue 12): only the
// backends the ui process lists (ui_backends, configured by the operator)
// and origins the operator approved here. A backend named anywhere else
// (a link's #backend=, the Add form, an old saved list, a node's answer) is
// a proposal: nothing at all is sent to it until the operator approves its
// exact origin. API tokens are kept per origin and sent to that origin
// only. The page's policy (src/ui/csp.c) lets the browser enforce the same
// list: approved origins reach the ui process in the ps_connect cookie.
// Everything that came from the network is inserted with textContent, never
// as HTML.

'use strict';

// ---- Tunables -------------------------------------------------------------

// Status probe of a backend whose event stream is open: only refreshes the
// response time and the last contact (events carry the changes).
const PROBE_LIVE_MS = 5000;
// Status probe without an event stream: with the views' poll below, a change
// shows within the 2 s the issue asks for.
const PROBE_FALLBACK_MS = 1000;
// Ports that never answered: rescanned slowly, a node may start later.
const PROBE_UNSEEN_MS = 3000;
// Views of the selected backend: while its stream is live, a refresh that
// keeps "last seen" and the heartbeat figures fresh (events carry status
// changes, not heartbeats); while it is not, a poll.
const VIEWS_LIVE_MS = 5000;
const VIEWS_FALLBACK_MS = 1000;
// A request that has not answered by then counts as a failure.
const REQUEST_TIMEOUT_MS = 4000;
// Event-stream reconnects: from 1 s, doubling, at most every 30 s.
const STREAM_RETRY_MIN_MS = 1000;
const STREAM_RETRY_MAX_MS = 30000;
// Events arrive in bursts (one change can produce registry + node events on
// several backends): coalesce the refreshes they trigger.
const EVENT_DEBOUNCE_MS = 60;
// Same bound as the config's ui_backends (UI_BACKEND_PORTS_MAX).
const MAX_BACKENDS = 64;
// Entries kept in the live activity list.
const ACTIVITY_MAX = 12;
// How long a "Remove" button waits for its confirming second click.
const CONFIRM_MS = 4000;
const DEFAULT_BACKENDS = '127.0.0.1:4401-4405';
const STATUSES = ['active', 'suspect', 'inactive', 'disabled', 'left'];
// API tokens, {origin: token}: this tab's session only, never on disk.
const TOKENS_KEY = 'proxystone.apiTokens';
// The one global token of earlier versions: removed unread, never sent.
const OLD_TOKEN_KEY = 'proxystone.apiToken';
// Origins the operator approved beyond ui_backends: kept on disk, so an
// approval is asked once per browser.
const APPROVED_KEY = 'proxystone.approvedOrigins';
// What earlier versions stored (an added backend, or a link's #backend=):
// proposals only, removed as the operator decides.
const OLD_ADDED_KEY = 'proxystone.addedBackends';
// The cookie that lists approved origins for the page's policy, and its
// bound (CSP_COOKIE and CSP_APPROVED_MAX in include/proxystone/csp.h).
const POLICY_COOKIE = 'ps_connect';
const APPROVED_MAX = 16;
// Cookie lifetime: Chrome's upper bound (400 days); the page rewrites it
// on every load anyway.
const POLICY_COOKIE_AGE_S = 400 * 86400;
// The policy list this tab last reloaded for: one reload per change, so a
// ui that refuses an origin cannot make the page reload forever.
const POLICY_RELOAD_KEY = 'proxystone.policyReload';

// ---- State ----------------------------------------------------------------

const state = {
	spec: '',
	clusterId: '',
	backends: [], // see newBackend()
	selected: null, // backend url
	gen: 0, // bumps on selection change: late answers for another backend are dropped
	filters: { status: '', role: '', clusterId: '' },
	view: emptyView(),
	viewsTimer: null,
	viewsInflight: false,
	viewsAgain: false,
	eventTimer: null,
	confirm: { id: null, until: 0 },
	expanded: new Set(),
	activity: [],
	pending: { service: false, register: false },
	tokens: readTokens(), // origin -> API token
	tokenFor: null, // origin the token box edits (null: the selected one)
	tokenAsked: new Set(), // origins whose 401 opened the token box
	configured: new Set(), // origins from ui_backends: approved by the operator's config
	approved: readApproved(), // origins approved in this browser
	inPolicy: new Set(), // origins this page's policy lets it reach (see start())
	proposals: [], // {origin, why}: waiting for approve / dismiss
};

function readTokens() {
	try {
		sessionStorage.removeItem(OLD_TOKEN_KEY);
		localStorage.removeItem(OLD_TOKEN_KEY);
		const v = JSON.parse(sessionStorage.getItem(TOKENS_KEY) || '{}');
		const out = new Map();
		if (v && typeof v === 'object' && !Array.isArray(v)) {
			for (const [o, t] of Object.entries(v))
				if (typeof t === 'string' && t && originOf(o) === o) out.set(o, t);
		}
		return out;
	} catch {
		return new Map();
	}
}

function saveTokens() {
	try {
		if (state.tokens.size) sessionStorage.setItem(TOKENS_KEY, JSON.stringify(Object.fromEntries(state.tokens)));
		else sessionStorage.removeItem(TOKENS_KEY);
	} catch {
		// Storage disabled: tokens last until the page is reloaded.
	}
}

function readApproved() {
	try {
		const v = JSON.parse(localStorage.getItem(APPROVED_KEY) || '[]');
		return new Set(Array.isArray(v) ? v.filter((o) => typeof o === 'string' && originOf(o) === o).slice(0, APPROVED_MAX) : []);
	} catch {
		return new Set();
	}
}

function saveApproved() {
	try {
		if (state.approved.size) localStorage.setItem(APPROVED_KEY, JSON.stringify([...state.approved]));
		else localStorage.removeItem(APPROVED_KEY);
	} catch {
		// Storage disabled: approvals last for this visit.
	}
}

function emptyView() {
	return {
		nodes: null, nodesErr: null, registryVersion: null,
		health: null, healthErr: null,
		service: null, serviceErr: null,
		loadedAt: null,
	};
}

function newBackend(url, source) {
	return {
		url, source,
		everSeen: false, // answered at least once as a Proxy Stone node
		reachable: null, // null: not probed yet
		probed: false,
		status: null, // last GET /api/cluster/status body
		problem: '', // error code/message when the node answered with an error
		rtt: null,
		lastContact: null,
		lastError: '',
		probing: false,
		probeAgain: false,
		probeTimer: null,
		es: null,
		stream: 'off', // off | connecting | live | polling
		streamFailures: 0,
		streamTimer: null,
		streamRetryAt: 0,
	};
}

// ---- Small helpers ----------------------------------------------------------

const $ = (id) => document.getElementById(id);

function h(tag, props, ...kids) {
	const el = document.createElement(tag);
	if (props) {
		for (const [k, v] of Object.entries(props)) {
			if (v === null || v === undefined || v === false) continue;
			if (k === 'class') el.className = v;
			else if (k === 'text') el.textContent = v;
			else if (k === 'dataset') Object.assign(el.dataset, v);
			else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
			else el.setAttribute(k, v === true ? '' : String(v));
		}
	}
	for (const kid of kids.flat(Infinity)) {
		if (kid === null || kid === undefined || kid === false) continue;
		el.append(kid instanceof Node ? kid : String(kid));
	}
	return el;
}

function shortId(id) {
	return id ? String(id).slice(0, 8) : '—';
}

function hostPort(url) {
	try {
		return new URL(url).host;
	} catch {
		return url;
	}
}

// The exact origin "scheme://host:port" of an http(s) URL, the port always
// written out (it is what the operator approves and what the policy
// lists); null for anything else.
function originOf(u) {
	let x;
	try {
		x = new URL(String(u));
	} catch {
		return null;
	}
	if (x.protocol !== 'http:' && x.protocol !== 'https:') return null;
	if (!x.hostname) return null;
	const port = x.port || (x.protocol === 'https:' ? '443' : '80');
	return `${x.protocol}//${x.hostname}:${port}`;
}

// A backend's key: its origin ('' if it has none).
function normUrl(u) {
	return originOf(u) || '';
}

// ---- Approval: who the page may talk to -------------------------------------------

function isApproved(origin) {
	return !!origin && (state.configured.has(origin) || state.approved.has(origin));
}

// The one check before any request, event stream or token goes anywhere.
function mayContact(url) {
	return isApproved(normUrl(url));
}

function tokenOf(url) {
	const o = normUrl(url);
	return (isApproved(o) && state.tokens.get(o)) || '';
}

function relTime(ms) {
	if (!ms) return 'never';
	const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
	if (s < 2) return 'just now';
	if (s < 60) return `${s} s ago`;
	if (s < 3600) return `${Math.floor(s / 60)} min ago`;
	if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
	return new Date(ms).toLocaleString();
}

function timeEl(ms, cls) {
	const el = h('time', { class: cls || null, dataset: { ts: String(ms || 0) } }, relTime(ms));
	if (ms) {
		el.setAttribute('datetime', new Date(ms).toISOString());
		el.title = new Date(ms).toLocaleString();
	}
	return el;
}

function parseTime(s) {
	const t = Date.parse(s);
	return Number.isFinite(t) ? t : null;
}

function fmtMs(ms) {
	if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
	if (ms < 1) return `${ms.toFixed(2)} ms`;
	if (ms < 10) return `${ms.toFixed(1)} ms`;
	return `${Math.round(ms)} ms`;
}

function rttClass(ms) {
	if (ms === null || ms === undefined) return 'rtt-none';
	return ms < 50 ? 'rtt-good' : ms < 250 ? 'rtt-fair' : 'rtt-slow';
}

function pill(status, extra) {
	const s = status || 'unknown';
	return h('span', { class: `pill s-${s}${extra ? ' ' + extra : ''}`, dataset: { status: s } }, s);
}

function roleBadge(role) {
	if (role === 'coordinator')
		return h('span', { class: 'role role-coordinator', title: 'Coordinator: the authority for which nodes exist' }, h('span', { class: 'star', 'aria-hidden': 'true' }, '★'), 'coordinator');
	return h('span', { class: `role role-${role || 'unknown'}` }, role || '—');
}

function backendByUrl(url) {
	const n = normUrl(url);
	return state.backends.find((b) => b.url === n) || null;
}

function selectedBackend() {
	return state.selected ? backendByUrl(state.selected) : null;
}

function describeError(r) {
	if (r.networkError) return r.networkError;
	if (r.json && r.json.message) return r.json.message;
	return `HTTP ${r.status}`;
}

// ---- HTTP -----------------------------------------------------------------

// Resolves (never rejects) to {ok, status, json, rtt, networkError}.
async function api(base, method, path, body) {
	if (!mayContact(base))
		return { ok: false, status: 0, json: null, rtt: null, networkError: 'not approved' };
	const ctl = new AbortController();
	const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
	const init = { method, signal: ctl.signal, cache: 'no-store', headers: {} };
	if (body !== undefined) {
		init.body = JSON.stringify(body);
		init.headers['Content-Type'] = 'application/json';
	}
	// Nodes with api_token want it on writes (and reads with
	// api_token_reads). An event stream cannot carry it: with reads
	// protected, the page polls. Only the token entered for this origin.
	const token = tokenOf(base);
	if (token) init.headers.Authorization = `Bearer ${token}`;
	const t0 = performance.now();
	try {
		const res = await fetch(base + path, init);
		const text = await res.text();
		const rtt = performance.now() - t0;
		let json = null;
		try {
			json = JSON.parse(text);
		} catch {
			json = null;
		}
		const ok = res.ok && json !== null && json.success !== false;
		return { ok, status: res.status, json, rtt, networkError: null };
	} catch {
		return {
			ok: false, status: 0, json: null, rtt: null,
			networkError: ctl.signal.aborted ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s` : 'unreachable',
		};
	} finally {
		clearTimeout(timer);
	}
}

// ---- Backends: the scan list ----------------------------------------------

// "h:p, h:p1-p2" -> ["http://h:p", ...] (at most MAX_BACKENDS).
function parseBackends(spec) {
	const out = [];
	for (let tok of String(spec).split(',')) {
		tok = tok.trim();
		if (!tok) continue;
		tok = tok.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
		const colon = tok.lastIndexOf(':');
		if (colon <= 0) continue;
		let host = tok.slice(0, colon);
		const ports = tok.slice(colon + 1);
		const m = /^(\d+)(?:-(\d+))?$/.exec(ports);
		if (!m) continue;
		const lo = Number(m[1]);
		const hi = m[2] ? Number(m[2]) : lo;
		if (lo < 1 || hi > 65535 || hi < lo) continue;
		host = localizeHost(host);
		for (let p = lo; p <= hi && out.length < MAX_BACKENDS; p++) {
			const u = `http://${host}:${p}`;
			if (!out.includes(u)) out.push(u);
		}
	}
	return out;
}

function isLoopback(host) {
	return host === 'localhost' || host === '[::1]' || host === '::1' || /^127\./.test(host);
}

// The configured hosts are as the node sees them. A loopback address means
// "this machine": when the page itself was loaded from another name, that
// name is the way to reach this machine from the browser.
function localizeHost(host) {
	const here = location.hostname;
	if (isLoopback(host) && here && !isLoopback(here) && here !== '')
		return here.includes(':') && !here.startsWith('[') ? `[${here}]` : here;
	return host;
}

// Backends an earlier version saved: they may come from a link, so they are
// proposals like any other.
function oldAddedBackends() {
	try {
		const v = JSON.parse(localStorage.getItem(OLD_ADDED_KEY) || '[]');
		return Array.isArray(v) ? v.filter((x) => typeof x === 'string') : [];
	} catch {
		return [];
	}
}

function forgetOldAdded(origin) {
	try {
		const left = oldAddedBackends().filter((u) => normUrl(u) !== origin);
		if (left.length) localStorage.setItem(OLD_ADDED_KEY, JSON.stringify(left));
		else localStorage.removeItem(OLD_ADDED_KEY);
	} catch {
		// Storage disabled: nothing was saved either.
	}
}

// Watches an approved backend; anything else becomes a proposal.
function addBackend(url, source) {
	const n = normUrl(url);
	let b = backendByUrl(n);
	if (b) return b;
	if (!isApproved(n)) {
		propose(url, source);
		return null;
	}
	if (state.backends.length >= MAX_BACKENDS) {
		toast(`At most ${MAX_BACKENDS} backends are watched`, 'error');
		return null;
	}
	b = newBackend(n, state.configured.has(n) ? 'scan' : 'added');
	state.backends.push(b);
	probe(b);
	return b;
}

// "×" on an approved backend: stop watching it and withdraw the approval
// (its token goes too).
function removeBackend(b) {
	stopStream(b);
	clearTimeout(b.probeTimer);
	clearTimeout(b.streamTimer);
	state.backends = state.backends.filter((x) => x !== b);
	if (state.approved.delete(b.url)) {
		saveApproved();
		writePolicyCookie();
	}
	if (state.tokens.delete(b.url)) saveTokens();
	if (state.selected === b.url) select(null);
	renderToken();
	renderSoon();
}

// ---- Approval: proposals ----------------------------------------------------------------

// why: 'link' (#backend= in the address), 'typed' (the Add form), 'saved'
// (an earlier version's list), 'node' (named in a node's answer).
function propose(url, why) {
	const origin = originOf(url);
	if (!origin) {
		toast(`Not an http(s) address: ${String(url).slice(0, 80)}`, 'error');
		return;
	}
	if (isApproved(origin)) {
		addBackend(origin, 'added');
		return;
	}
	if (state.proposals.some((p) => p.origin === origin)) return;
	state.proposals.push({ origin, why });
	renderProposals();
	// Asked for from further down the page: show where the answer is.
	if (why === 'node') $('proposals').scrollIntoView({ block: 'nearest', behavior: 'smooth' });
}

function approve(origin) {
	if (!state.proposals.some((p) => p.origin === origin)) return;
	if (state.approved.size >= APPROVED_MAX) {
		toast(`At most ${APPROVED_MAX} backends can be approved besides the configured ones: remove one (×) first`, 'error');
		return;
	}
	state.proposals = state.proposals.filter((p) => p.origin !== origin);
	state.approved.add(origin);
	saveApproved();
	forgetOldAdded(origin);
	writePolicyCookie();
	if (!state.inPolicy.has(origin)) {
		// The policy this page was served with does not list it: reload,
		// with the new cookie, and open it.
		history.replaceState(null, '', `#${new URLSearchParams({ backend: origin })}`);
		location.reload();
		return;
	}
	renderProposals();
	select(origin);
}

function dismiss(origin) {
	state.proposals = state.proposals.filter((p) => p.origin !== origin);
	forgetOldAdded(origin);
	if (normUrl(readHashBackend()) === origin) writeHash();
	renderProposals();
}

// The approved origins for the ui process's policy (src/ui/csp.c).
function writePolicyCookie() {
	const list = [...state.approved].join('|');
	document.cookie = list
		? `${POLICY_COOKIE}=${list}; Path=/; Max-Age=${POLICY_COOKIE_AGE_S}; SameSite=Lax`
		: `${POLICY_COOKIE}=; Path=/; Max-Age=0; SameSite=Lax`;
}

// The origins the cookie listed when this page was requested: what the ui
// process put in this page's policy besides ui_backends.
function policyCookieOrigins() {
	for (const part of document.cookie.split(';')) {
		const [k, ...v] = part.trim().split('=');
		if (k === POLICY_COOKIE) return v.join('=').split('|').map(normUrl).filter(Boolean);
	}
	return [];
}

// An approval made in another tab, or a cookie that expired or was
// cleared: the policy lacks an approved origin. Write the cookie and
// reload, once for a given list.
function syncPolicy() {
	const missing = [...state.approved].filter((o) => !state.inPolicy.has(o));
	const want = [...state.approved].join('|');
	try {
		if (!missing.length) {
			sessionStorage.removeItem(POLICY_RELOAD_KEY);
			return false;
		}
		writePolicyCookie();
		if (sessionStorage.getItem(POLICY_RELOAD_KEY) === want) return false;
		sessionStorage.setItem(POLICY_RELOAD_KEY, want);
	} catch {
		return false;
	}
	location.reload();
	return true;
}

// ---- Backends: probing --------------------------------------------------------

function probeSoon(b, delay = 0) {
	clearTimeout(b.probeTimer);
	b.probeTimer = setTimeout(() => probe(b), delay);
}

async function probe(b) {
	clearTimeout(b.probeTimer);
	if (!mayContact(b.url)) return;
	if (b.probing) {
		// The answer in flight may predate the change that asked for
		// this probe: probe again as soon as it is in.
		b.probeAgain = true;
		return;
	}
	b.probing = true;
	b.probeAgain = false;
	const r = await api(b.url, 'GET', '/api/cluster/status');
	b.probing = false;
	if (!state.backends.includes(b)) return; // removed meanwhile
	const wasReachable = b.reachable;
	const wasSeen = b.everSeen;
	b.probed = true;
	// A Proxy Stone node answers with its JSON, success or error (a 503
	// while its membership process restarts is still a node).
	const isNode = r.json && (r.json.success === true || typeof r.json.code === 'string');
	if (isNode) {
		b.everSeen = true;
		b.reachable = true;
		b.rtt = r.rtt;
		b.lastContact = Date.now();
		b.lastError = '';
		if (r.ok) {
			b.status = r.json;
			b.problem = '';
		} else {
			b.problem = `${r.json.code}: ${r.json.message || ''}`;
			// Reads are protected (api_token_reads): ask once per origin.
			if (r.status === 401 && !state.tokenAsked.has(b.url)) {
				state.tokenAsked.add(b.url);
				askToken(`${hostPort(b.url)} wants an API token to be read`, b.url);
			}
		}
		if (!b.es && !b.streamTimer) connectStream(b);
	} else {
		b.reachable = false;
		b.lastError = r.networkError || (r.status ? `HTTP ${r.status}, not a Proxy Stone API` : 'unreachable');
		if (b.es) {
			// A stream that is still "open" to a node that no longer
			// answers is a dead connection: drop it, poll instead.
			stopStream(b);
			b.stream = 'polling';
		}
	}
	if (isNode && !wasSeen) {
		const self = (b.status && b.status.status) || {};
		logActivity(b, `found ${self.role || 'node'} ${shortId(self.id)}${b.problem ? ` (${b.problem})` : ''}`, b.problem ? 'warn' : 'ok', self.id);
	} else if (b.everSeen && wasReachable !== b.reachable && wasReachable !== null)
		logActivity(b, b.reachable ? 'answering again' : b.lastError === 'unreachable' ? 'unreachable' : `unreachable: ${b.lastError}`, b.reachable ? 'ok' : 'bad');
	maybeAutoSelect();
	if (b.url === state.selected && wasReachable !== b.reachable) scheduleViews(0);
	renderSoon();
	const delay = b.probeAgain ? 0 : !b.everSeen ? PROBE_UNSEEN_MS : b.stream === 'live' ? PROBE_LIVE_MS : PROBE_FALLBACK_MS;
	b.probeTimer = setTimeout(() => probe(b), delay);
}

// Without a choice in the address, operate on the coordinator (the
// authority), else on the first node that answers.
function maybeAutoSelect() {
	if (state.selected) return;
	const coord = state.backends.find((b) => b.reachable && b.status && b.status.status && b.status.status.role === 'coordinator');
	if (coord) return select(coord.url);
	if (state.backends.every((b) => b.probed)) {
		const any = state.backends.find((b) => b.reachable);
		if (any) select(any.url);
	}
}

// ---- Backends: event streams ----------------------------------------------------

function stopStream(b) {
	if (b.es) {
		b.es.close();
		b.es = null;
	}
}

function connectStream(b) {
	clearTimeout(b.streamTimer);
	b.streamTimer = null;
	if (b.es || !mayContact(b.url)) return;
	if (typeof EventSource === 'undefined') {
		b.stream = 'polling';
		return;
	}
	const es = new EventSource(`${b.url}/api/cluster/events`);
	b.es = es;
	if (b.stream !== 'polling') b.stream = 'connecting';
	es.onopen = () => {
		if (b.es !== es) return;
		b.stream = 'live';
		b.streamFailures = 0;
		renderSoon();
	};
	for (const kind of ['hello', 'registry', 'node', 'service']) {
		es.addEventListener(kind, (ev) => {
			if (b.es !== es) return;
			let data = null;
			try {
				data = JSON.parse(ev.data);
			} catch {
				data = null;
			}
			onStreamEvent(b, kind, data);
		});
	}
	es.onerror = () => {
		if (b.es !== es) return;
		// Our own reconnect policy (backoff, only to a node that answers)
		// instead of EventSource's fixed-interval one.
		stopStream(b);
		const wasLive = b.stream === 'live';
		b.stream = 'polling';
		b.streamFailures++;
		const delay = Math.min(STREAM_RETRY_MAX_MS, STREAM_RETRY_MIN_MS * 2 ** (b.streamFailures - 1));
		b.streamRetryAt = Date.now() + delay;
		b.streamTimer = setTimeout(() => {
			b.streamTimer = null;
			if (b.reachable && state.backends.includes(b)) connectStream(b);
		}, delay);
		if (wasLive) logActivity(b, 'event stream lost; polling', 'warn');
		probeSoon(b);
		if (b.url === state.selected) scheduleViews(0);
		renderSoon();
	};
}

function onStreamEvent(b, kind, d) {
	b.stream = 'live';
	b.lastContact = Date.now();
	if (d && typeof d.registryVersion === 'number') b.registryVersion = d.registryVersion;
	if (kind === 'hello') {
		// (Re)connected: whatever happened while we were away is in the
		// next fetch.
		probeSoon(b);
		if (b.url === state.selected) scheduleViews(0);
		renderSoon();
		return;
	}
	if (kind === 'service' && d && b.status && b.status.serviceStatus) {
		b.status.serviceStatus.mode = d.mode;
		b.status.serviceStatus.enabled = d.enabled;
	}
	if (kind === 'node' && d)
		logActivity(b, `${shortId(d.id)} ${d.type}${d.status ? ' → ' + d.status : ''}`, statusTone(d.status), d.id);
	else if (kind === 'service' && d)
		logActivity(b, `serving mode → ${d.mode}`, d.mode === 'serving' ? 'ok' : 'warn');
	// Any change anywhere may show in the selected backend's views (a
	// worker's mode change reaches the coordinator's registry): refresh.
	probeSoon(b, EVENT_DEBOUNCE_MS);
	requestAnimationFrame(() => flashConn(b));
	clearTimeout(state.eventTimer);
	state.eventTimer = setTimeout(() => scheduleViews(0), EVENT_DEBOUNCE_MS);
	renderSoon();
}

// Blinks the backend's connection indicator: an event just arrived.
function flashConn(b) {
	const el = document.querySelector(`tr[data-backend="${CSS.escape(b.url)}"] .conn`);
	if (!el) return;
	el.classList.remove('flash');
	void el.offsetWidth; // restart the animation
	el.classList.add('flash');
}

function statusTone(s) {
	return s === 'active' ? 'ok' : s === 'inactive' || s === 'left' ? 'bad' : s ? 'warn' : '';
}

// ---- Selection ----------------------------------------------------------------

// Operates on url; true if it is now the selected backend. An origin not
// approved yet becomes a proposal (why: see propose()) and nothing changes.
function select(url, why = 'link') {
	const n = url ? normUrl(url) : null;
	if (url && !n) {
		propose(url, why);
		return false;
	}
	if (n === state.selected) return true;
	if (n && !isApproved(n)) {
		propose(n, why);
		return false;
	}
	if (n && !backendByUrl(n) && !addBackend(n, 'added')) return false;
	state.selected = n;
	state.gen++;
	state.view = emptyView();
	state.confirm = { id: null, until: 0 };
	writeHash();
	clearRegisterResult();
	renderToken();
	renderAll();
	scheduleViews(0);
	return true;
}

function writeHash() {
	const p = new URLSearchParams();
	if (state.selected) p.set('backend', state.selected);
	for (const [k, v] of Object.entries(state.filters)) if (v) p.set(k, v);
	const s = p.toString();
	const want = s ? `#${s}` : '';
	if (location.hash !== want) history.replaceState(null, '', want || location.pathname + location.search);
}

function readHash() {
	const p = new URLSearchParams(location.hash.slice(1));
	for (const k of Object.keys(state.filters)) state.filters[k] = p.get(k) || '';
	return p.get('backend');
}

function readHashBackend() {
	return new URLSearchParams(location.hash.slice(1)).get('backend');
}

// ---- Views of the selected backend ----------------------------------------------

function scheduleViews(delay) {
	clearTimeout(state.viewsTimer);
	state.viewsTimer = setTimeout(refreshViews, delay);
}

function filterQuery() {
	const p = new URLSearchParams();
	for (const [k, v] of Object.entries(state.filters)) if (v) p.set(k, v);
	const s = p.toString();
	return s ? `?${s}` : '';
}

async function refreshViews() {
	clearTimeout(state.viewsTimer);
	const b = selectedBackend();
	if (!b) return;
	if (state.viewsInflight) {
		state.viewsAgain = true;
		return;
	}
	state.viewsInflight = true;
	const gen = state.gen;
	const [n, hl, sv] = await Promise.all([
		api(b.url, 'GET', `/api/cluster/nodes${filterQuery()}`),
		api(b.url, 'GET', '/api/cluster/health'),
		api(b.url, 'GET', '/api/cluster/service-status'),
	]);
	state.viewsInflight = false;
	if (gen === state.gen) {
		const v = state.view;
		if (n.ok) {
			v.nodes = Array.isArray(n.json.nodes) ? n.json.nodes : [];
			v.registryVersion = n.json.registryVersion ?? null;
			v.nodesErr = null;
		} else {
			v.nodesErr = describeError(n);
		}
		if (hl.ok) {
			v.health = hl.json.health || null;
			v.healthErr = null;
		} else {
			v.healthErr = describeError(hl);
		}
		if (sv.ok) {
			v.service = sv.json;
			v.serviceErr = null;
		} else {
			v.serviceErr = describeError(sv);
		}
		if (n.ok || hl.ok || sv.ok) {
			v.loadedAt = Date.now();
			b.lastContact = Date.now();
		} else if (n.networkError) {
			probeSoon(b);
		}
		renderViews();
	}
	if (state.viewsAgain) {
		state.viewsAgain = false;
		scheduleViews(0);
		return;
	}
	const cur = selectedBackend();
	scheduleViews(cur && cur.stream === 'live' ? VIEWS_LIVE_MS : VIEWS_FALLBACK_MS);
}

// ---- Rendering ---------------------------------------------------------------------

let renderQueued = false;
function renderSoon() {
	if (renderQueued) return;
	renderQueued = true;
	requestAnimationFrame(() => {
		renderQueued = false;
		renderBackends();
		renderTopbar();
		renderBanner();
	});
}

function renderAll() {
	renderBackends();
	renderTopbar();
	renderBanner();
	renderViews();
}

function streamInfo(b) {
	if (!b.everSeen) return { cls: 'off', label: '—', title: 'Not answering' };
	if (b.reachable === false) return { cls: 'down', label: 'offline', title: `Unreachable: ${b.lastError}` };
	switch (b.stream) {
	case 'live':
		return { cls: 'live', label: 'live', title: 'Event stream open: changes show at once' };
	case 'connecting':
		return { cls: 'connecting', label: 'connecting', title: 'Opening the event stream…' };
	default: {
		const retry = b.streamRetryAt > Date.now() ? ` Retrying the stream in ${Math.ceil((b.streamRetryAt - Date.now()) / 1000)} s.` : '';
		const why = tokenOf(b.url) ? ' (if this node wants the API token for reads: a browser event stream cannot send it)' : '';
		return { cls: 'polling', label: 'polling', title: `Event stream unavailable${why}: polling every ${PROBE_FALLBACK_MS / 1000} s.${retry}` };
	}
	}
}

function backendStatus(b) {
	if (b.reachable === false) return 'unreachable';
	if (b.problem) return 'degraded';
	return (b.status && b.status.status && b.status.status.status) || 'unknown';
}

let backendsSig = '';
function renderBackends() {
	const body = $('backends-body');
	const seen = state.backends.filter((b) => b.everSeen);
	const unseen = state.backends.filter((b) => !b.everSeen);
	// Rebuild only when something shown changed (relative times tick by
	// themselves): rows under the pointer stay put.
	const sig = JSON.stringify([state.selected, state.backends.map((b) => [b.url, b.everSeen, b.probed, b.reachable,
		b.status, b.problem, b.lastError, b.stream, b.reachable ? fmtMs(b.rtt) : '', b.lastContact && Math.floor(b.lastContact / 1000)])]);
	if (sig === backendsSig) return;
	backendsSig = sig;
	const rows = seen.map((b) => {
		const st = b.status || {};
		const self = st.status || {};
		const svc = st.serviceStatus || {};
		const si = streamInfo(b);
		const selected = b.url === state.selected;
		const status = backendStatus(b);
		const radio = h('input', {
			type: 'radio', name: 'backend', value: b.url, checked: selected,
			'aria-label': `Operate on ${b.url}`,
		});
		const tr = h('tr', {
			class: `backend-row${selected ? ' selected' : ''}${b.reachable === false ? ' is-down' : ''}`,
			dataset: { backend: b.url, status, role: self.role || '', stream: b.stream },
			'aria-selected': selected ? 'true' : 'false',
		},
		h('td', { class: 'col-pick' }, radio),
		h('td', { 'data-label': 'Backend', class: 'mono strong' },
			h('span', { class: 'backend-url' }, hostPort(b.url)),
			b.source === 'added' ? h('button', {
				type: 'button', class: 'link-btn small unwatch', title: 'Stop watching this backend',
				dataset: { action: 'unwatch' },
			}, '×') : null),
		h('td', { 'data-label': 'Role' }, self.role ? roleBadge(self.role) : h('span', { class: 'muted' }, '—')),
		h('td', { 'data-label': 'Node id', class: 'mono', title: self.id || '' }, shortId(self.id)),
		h('td', { 'data-label': 'Status', dataset: { field: 'status' } },
			pill(status), b.problem ? h('div', { class: 'small muted', text: b.problem }) : null,
			b.reachable === false && b.lastError !== 'unreachable' ? h('div', { class: 'small bad-text', text: b.lastError }) : null),
		h('td', { 'data-label': 'Serving', dataset: { field: 'mode' } }, svc.mode ? h('span', { class: `mode-chip m-${b.reachable === false ? 'stale' : svc.mode}`, title: b.reachable === false ? 'Last known' : null }, svc.mode) : h('span', { class: 'muted' }, '—')),
		h('td', { 'data-label': 'Response', class: 'num' }, h('span', { class: `rtt ${rttClass(b.reachable ? b.rtt : null)}` }, b.reachable ? fmtMs(b.rtt) : '—')),
		h('td', { 'data-label': 'Last contact' }, timeEl(b.lastContact)),
		h('td', { 'data-label': 'Updates' },
			h('span', { class: `conn conn-${si.cls}`, title: si.title, dataset: { testid: 'conn' } },
				h('span', { class: 'dot', 'aria-hidden': 'true' }), si.label)),
		);
		return tr;
	});
	if (!rows.length) {
		const text = state.backends.length && state.backends.every((b) => b.probed)
			? 'No backend answers yet. Is the cluster running? Still scanning…'
			: 'Scanning…';
		rows.push(h('tr', { class: 'placeholder' }, h('td', { colspan: '9' }, text)));
	}
	// Rebuilding the rows must not steal the keyboard: a focused radio
	// gets its successor focused.
	const focused = document.activeElement && body.contains(document.activeElement)
		? document.activeElement.closest('tr[data-backend]')?.dataset.backend : null;
	body.replaceChildren(...rows);
	if (focused) body.querySelector(`tr[data-backend="${CSS.escape(focused)}"] input`)?.focus();

	const misses = $('scan-misses');
	const waiting = unseen.filter((b) => b.probed);
	if (waiting.length) {
		misses.hidden = false;
		misses.replaceChildren(
			h('span', { class: 'dot dot-off', 'aria-hidden': 'true' }),
			`No answer from ${waiting.map((b) => hostPort(b.url)).join(', ')}: rescanning every ${PROBE_UNSEEN_MS / 1000} s.`);
	} else {
		misses.hidden = true;
	}
	$('scan-spec').textContent = (state.spec || DEFAULT_BACKENDS).split(',').map((x) => x.trim()).join(', ');
}

function renderTopbar() {
	const seen = state.backends.filter((b) => b.everSeen);
	const up = seen.filter((b) => b.reachable);
	const live = up.filter((b) => b.stream === 'live').length;
	const down = seen.length - up.length;
	const stats = $('topbar-stats');
	stats.replaceChildren(...[
		state.clusterId ? h('span', { class: 'tb-chip', title: 'Cluster id' }, state.clusterId) : null,
		h('span', { class: 'tb-chip' }, h('strong', null, String(up.length)), ` of ${seen.length} backend${seen.length === 1 ? '' : 's'} up`),
		live ? h('span', { class: 'tb-chip tb-live' }, h('span', { class: 'dot', 'aria-hidden': 'true' }), `${live} live`) : null,
		up.length - live > 0 ? h('span', { class: 'tb-chip tb-polling' }, `${up.length - live} polling`) : null,
		down ? h('span', { class: 'tb-chip tb-down' }, `${down} unreachable`) : null,
	].filter(Boolean));
	const b = selectedBackend();
	const pillEl = $('target-pill');
	if (!b) {
		pillEl.replaceChildren(h('span', { class: 'muted' }, 'Looking for backends…'));
		return;
	}
	const self = (b.status && b.status.status) || {};
	const si = streamInfo(b);
	pillEl.replaceChildren(
		h('span', { class: 'tp-label' }, 'Operating on'),
		h('strong', { class: 'mono' }, hostPort(b.url)),
		self.role ? roleBadge(self.role) : null,
		h('span', { class: `conn conn-${si.cls}`, title: si.title }, h('span', { class: 'dot', 'aria-hidden': 'true' }), si.label),
	);
}

function renderBanner() {
	const el = $('target-banner');
	const b = selectedBackend();
	if (!b) {
		el.hidden = true;
		return;
	}
	const st = b.status || {};
	const cfg = st.config || {};
	const self = st.status || {};
	if (b.reachable === false) {
		el.hidden = false;
		el.className = 'banner banner-bad';
		el.replaceChildren(
			h('strong', null, `${hostPort(b.url)} is not answering`),
			` (${b.lastError}). Showing what it last reported; retrying every ${PROBE_FALLBACK_MS / 1000} s.`);
		return;
	}
	if (self.role === 'worker' && cfg.coordinatorUrl) {
		const coordUrl = normUrl(cfg.coordinatorUrl);
		el.hidden = false;
		el.className = 'banner banner-info';
		el.replaceChildren(
			h('span', null, 'Worker: the node list is its replica of the coordinator’s registry; registrations and removals go to the coordinator at '),
			h('button', { type: 'button', class: 'link-btn mono', onclick: () => select(coordUrl, 'node') }, hostPort(coordUrl)),
			'.');
		return;
	}
	el.hidden = true;
}

function renderViews() {
	renderNodes();
	renderHealth();
	renderService();
	renderRegisterHints();
}

function nodeCounts() {
	const v = state.view;
	const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
	let total = 0;
	const list = v.health && Array.isArray(v.health.nodes) ? v.health.nodes : null;
	if (list) {
		for (const n of list) {
			total++;
			if (n.status in counts) counts[n.status]++;
		}
	} else if (v.nodes && !Object.values(state.filters).some(Boolean)) {
		for (const n of v.nodes) {
			total++;
			if (n.status in counts) counts[n.status]++;
		}
	} else {
		return null;
	}
	return { total, counts };
}

function renderCounts() {
	const c = nodeCounts();
	const el = $('counts');
	if (!c) {
		el.replaceChildren();
		return;
	}
	const cur = state.filters.status;
	const chip = (status, label, n) => h('button', {
		type: 'button',
		class: `count s-${status || 'all'}${cur === status ? ' on' : ''}${n === 0 && status ? ' zero' : ''}`,
		'aria-pressed': cur === status ? 'true' : 'false',
		dataset: { count: status || 'all' },
		title: status ? `Show only ${status} nodes` : 'Show every node',
		onclick: () => setFilter('status', cur === status ? '' : status),
	}, h('span', { class: 'count-n' }, String(n)), h('span', { class: 'count-l' }, label));
	el.replaceChildren(chip('', 'nodes', c.total), ...STATUSES.map((s) => chip(s, s, c.counts[s])));
}

function metaSummary(md) {
	if (!md || typeof md !== 'object') return null;
	const parts = [];
	if (typeof md.load === 'number') parts.push(h('span', { title: 'Load average' }, md.load.toFixed(2)));
	if (typeof md.memory === 'number') parts.push(h('span', { title: 'Memory in use' }, `${Math.round(md.memory * 100)}%`));
	if (typeof md.connections === 'number') parts.push(h('span', { title: 'Open HTTP connections' }, String(md.connections)));
	if (!parts.length) return h('span', { class: 'muted' }, '—');
	const out = [];
	parts.forEach((p, i) => {
		if (i) out.push(h('span', { class: 'sep', 'aria-hidden': 'true' }, '·'));
		out.push(p);
	});
	return h('span', { class: 'metrics' }, out);
}

let nodesSig = '';
function renderNodes() {
	const v = state.view;
	const b = selectedBackend();
	renderCounts();
	const err = $('nodes-error');
	err.hidden = !v.nodesErr;
	err.textContent = v.nodesErr ? `Could not load the node list: ${v.nodesErr}` : '';
	const meta = $('nodes-meta');
	if (!b) {
		meta.textContent = 'Pick a backend above.';
	} else {
		meta.replaceChildren(
			`From ${hostPort(b.url)}`,
			v.registryVersion !== null ? ` · registry v${v.registryVersion}` : '',
			v.loadedAt ? ' · updated ' : '', v.loadedAt ? timeEl(v.loadedAt) : '');
	}
	const body = $('nodes-body');
	const empty = $('nodes-empty');
	const sig = JSON.stringify([state.selected, v.nodes, [...state.expanded], state.confirm.id,
		state.backends.map((x) => x.url), b && b.status && b.status.status && b.status.status.id]);
	if (sig === nodesSig) return;
	nodesSig = sig;
	if (!v.nodes) {
		body.replaceChildren();
		empty.hidden = false;
		empty.textContent = b ? (v.nodesErr ? 'No data.' : 'Loading…') : 'No backend selected.';
		return;
	}
	const selfId = b && b.status && b.status.status ? b.status.status.id : null;
	const nodes = [...v.nodes].sort((x, y) =>
		(x.role === 'coordinator' ? 0 : 1) - (y.role === 'coordinator' ? 0 : 1) ||
		String(x.url).localeCompare(String(y.url), undefined, { numeric: true }));
	const rows = [];
	for (const n of nodes) {
		const known = n.url ? backendByUrl(n.url) : null;
		const expanded = state.expanded.has(n.id);
		const confirming = state.confirm.id === n.id && state.confirm.until > Date.now();
		const tr = h('tr', {
			class: `node-row${n.role === 'coordinator' ? ' is-coordinator' : ''}`,
			dataset: { nodeId: n.id, status: n.status, role: n.role, url: n.url || '' },
		},
		h('td', { 'data-label': 'Status', dataset: { field: 'status' } }, pill(n.status)),
		h('td', { 'data-label': 'Node', class: 'node-cell' },
			h('div', { class: 'node-line' }, h('button', {
				type: 'button', class: 'link-btn mono strong', title: `${n.id}\nShow details`,
				'aria-expanded': expanded ? 'true' : 'false',
				dataset: { action: 'toggle' },
			}, h('span', { class: 'caret', 'aria-hidden': 'true' }, expanded ? '▾' : '▸'), shortId(n.id)),
			roleBadge(n.role)),
			h('div', { class: 'small mono url' },
				known && known.url !== state.selected
					? h('button', { type: 'button', class: 'link-btn', title: 'Operate on this node', dataset: { action: 'open' } }, n.url)
					: h('span', null, n.url || '—'),
				n.id === selfId ? h('span', { class: 'tag tag-self', title: 'The node whose API you are operating on' }, 'this backend') : null)),
		h('td', { 'data-label': 'Cluster · tags', class: 'cluster' },
			h('span', { class: 'small' }, n.clusterId || '—'),
			Array.isArray(n.tags) && n.tags.length ? h('div', { class: 'tags' }, n.tags.map((t) => h('span', { class: 'tag' }, String(t)))) : null),
		h('td', { 'data-label': 'Last seen', class: 'seen' }, timeEl(parseTime(n.lastSeen))),
		h('td', { 'data-label': 'Load · mem · conns', class: 'small load' }, metaSummary(n.metadata)),
		h('td', { class: 'col-actions' },
			h('button', {
				type: 'button',
				class: `btn btn-small ${confirming ? 'btn-danger' : 'btn-ghost'}`,
				dataset: { action: 'remove' },
				title: confirming ? 'Click again to remove this node from the registry' : 'Remove this node from the registry',
			}, confirming ? 'Confirm remove' : 'Remove')),
		);
		rows.push(tr);
		if (expanded) rows.push(nodeDetails(n));
	}
	body.replaceChildren(...rows);
	if (!nodes.length) {
		empty.hidden = false;
		empty.textContent = Object.values(state.filters).some(Boolean) ? 'No node matches these filters.' : 'The registry is empty.';
	} else {
		empty.hidden = true;
	}
}

function nodeDetails(n) {
	const dl = h('dl', { class: 'facts wide' },
		h('dt', null, 'Id'), h('dd', { class: 'mono' }, n.id),
		h('dt', null, 'URL'), h('dd', { class: 'mono' }, n.url || '—'),
		h('dt', null, 'Created'), h('dd', null, n.createdAt ? new Date(n.createdAt).toLocaleString() : '—'),
		h('dt', null, 'Last seen'), h('dd', null, n.lastSeen ? new Date(n.lastSeen).toLocaleString() : '—'),
		h('dt', null, 'Capabilities'), h('dd', null, h('pre', null, JSON.stringify(n.capabilities ?? {}, null, 2))),
		h('dt', null, 'Metadata'), h('dd', null, h('pre', null, JSON.stringify(n.metadata ?? {}, null, 2))));
	return h('tr', { class: 'details-row' }, h('td', { colspan: '6' }, dl));
}

function renderHealth() {
	const v = state.view;
	const err = $('health-error');
	err.hidden = !v.healthErr;
	err.textContent = v.healthErr ? `Could not load health: ${v.healthErr}` : '';
	const body = $('health-body');
	const hl = v.health;
	$('health-updated').replaceChildren(hl && hl.lastUpdate ? timeEl(parseTime(hl.lastUpdate)) : '');
	if (!hl) {
		body.replaceChildren(h('p', { class: 'muted' }, selectedBackend() ? 'Loading…' : '—'));
		return;
	}
	const nodes = Array.isArray(hl.nodes) ? hl.nodes : [];
	const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
	for (const n of nodes) if (n.status in counts) counts[n.status]++;
	const total = hl.totalNodes ?? nodes.length;
	const bar = h('div', { class: 'stackbar', role: 'img', 'aria-label': STATUSES.map((s) => `${counts[s]} ${s}`).join(', ') });
	for (const s of STATUSES) {
		if (!counts[s]) continue;
		const seg = h('span', { class: `seg s-${s}`, title: `${counts[s]} ${s}` });
		seg.style.flexGrow = String(counts[s]);
		bar.append(seg);
	}
	const healthy = !!hl.coordinatorHealthy;
	const maxRt = Math.max(1, ...nodes.map((n) => (typeof n.responseTime === 'number' ? n.responseTime : 0)));
	const known = new Map((v.nodes || []).map((n) => [n.id, n]));
	const sorted = [...nodes].sort((a, b2) => (a.role === 'coordinator' ? -1 : 0) - (b2.role === 'coordinator' ? -1 : 0));
	const list = h('ul', { class: 'rt-list' }, sorted.map((n) => {
		const rt = typeof n.responseTime === 'number' ? n.responseTime : null;
		const fill = h('span', { class: `rt-fill ${rttClass(rt)}` });
		fill.style.width = rt === null ? '0' : `${Math.max(3, (rt / maxRt) * 100)}%`;
		const url = known.get(n.id) ? hostPort(known.get(n.id).url) : '';
		return h('li', { dataset: { nodeId: n.id, status: n.status } },
			h('span', { class: `dot dot-${n.status}`, title: n.status, 'aria-hidden': 'true' }),
			h('span', { class: 'rt-name mono', title: n.id }, shortId(n.id), n.role === 'coordinator' ? h('span', { class: 'star', title: 'coordinator' }, ' ★') : null),
			h('span', { class: 'rt-url small muted mono' }, url),
			h('span', { class: 'rt-bar' }, fill),
			h('span', { class: 'rt-val small' }, rt === null ? 'not measured' : fmtMs(rt)));
	}));
	body.replaceChildren(
		h('div', { class: `coord-health ${healthy ? 'good' : 'bad'}`, dataset: { healthy: String(healthy) } },
			h('span', { class: 'big-icon', 'aria-hidden': 'true' }, healthy ? '✓' : '!'),
			h('div', null,
				h('strong', null, healthy ? 'Coordinator healthy' : 'Coordinator not healthy'),
				h('div', { class: 'small muted' }, `${counts.active} of ${total} nodes active${hl.registryVersion !== undefined ? ` · registry v${hl.registryVersion}` : ''}`))),
		bar,
		h('div', { class: 'legend small' }, STATUSES.filter((s) => counts[s]).map((s) => h('span', null, h('span', { class: `dot dot-${s}`, 'aria-hidden': 'true' }), `${counts[s]} ${s}`))),
		h('h3', { class: 'sub-title' }, 'Response time', h('span', { class: 'muted small' }, ' as seen by this node')),
		list);
}

function renderService() {
	const v = state.view;
	const b = selectedBackend();
	const err = $('service-error');
	err.hidden = !v.serviceErr;
	err.textContent = v.serviceErr ? `Could not load the service status: ${v.serviceErr}` : '';
	const svc = v.service ? v.service.status || {} : (b && b.status && b.status.serviceStatus) || null;
	const ns = v.service ? v.service.nodeStatus || {} : (b && b.status && b.status.status) || {};
	$('service-node').textContent = b ? hostPort(b.url) : '';
	const mode = $('service-mode');
	const facts = $('service-facts');
	const disableBtn = $('btn-disable');
	const enableBtn = $('btn-enable');
	if (!svc) {
		mode.dataset.mode = '';
		mode.textContent = '—';
		facts.replaceChildren();
		disableBtn.disabled = enableBtn.disabled = true;
		return;
	}
	mode.dataset.mode = svc.mode || '';
	mode.replaceChildren(
		h('span', { class: 'mode-icon', 'aria-hidden': 'true' }, svc.mode === 'serving' ? '●' : '❚❚'),
		svc.mode === 'serving' ? 'Serving' : svc.mode === 'maintenance' ? 'Maintenance' : (svc.mode || '—'));
	const since = parseTime(svc.changedAt || svc.startTime);
	facts.replaceChildren(
		h('dt', null, 'Node'), h('dd', { class: 'mono', title: ns.id || '' }, shortId(ns.id), ' ', ns.role ? roleBadge(ns.role) : ''),
		h('dt', null, 'Registry status'), h('dd', null, ns.status ? pill(ns.status) : '—'),
		h('dt', null, svc.changedAt ? 'Changed' : 'Since'), h('dd', null, since ? timeEl(since) : '—'));
	const busy = state.pending.service;
	const down = b && b.reachable === false;
	disableBtn.disabled = busy || down || svc.mode === 'maintenance';
	enableBtn.disabled = busy || down || svc.mode === 'serving';
}

function renderRegisterHints() {
	const b = selectedBackend();
	const form = $('register-form');
	const cid = b && b.status && b.status.config ? b.status.config.clusterId : '';
	form.elements.clusterId.placeholder = cid || 'default-cluster';
	$('btn-register').textContent = b ? `Register on ${hostPort(b.url)}` : 'Register node';
	$('btn-register').disabled = !b || state.pending.register;
}

// ---- Actions ----------------------------------------------------------------------

async function setServing(enable) {
	const b = selectedBackend();
	if (!b || state.pending.service) return;
	state.pending.service = true;
	renderService();
	const gen = state.gen;
	const r = await api(b.url, 'POST', enable ? '/api/cluster/enable-serving' : '/api/cluster/disable-serving');
	state.pending.service = false;
	if (r.ok) {
		toast(`${hostPort(b.url)}: ${r.json.message || (enable ? 'serving' : 'maintenance')}`, 'ok');
		if (b.stream !== 'live') logActivity(b, `serving mode → ${enable ? 'serving' : 'maintenance'}`, enable ? 'ok' : 'warn');
		if (gen === state.gen && r.json.status) {
			state.view.service = { ...(state.view.service || {}), status: r.json.status };
		}
		if (b.status && b.status.serviceStatus && r.json.status) Object.assign(b.status.serviceStatus, r.json.status);
		probeSoon(b);
	} else if (r.status === 401) {
		askToken(`${hostPort(b.url)}: ${describeError(r)}`, b.url);
	} else {
		toast(`${hostPort(b.url)}: ${describeError(r)}`, 'error');
	}
	renderAll();
	scheduleViews(0);
}

async function removeNode(n) {
	const b = selectedBackend();
	if (!b) return;
	if (!(state.confirm.id === n.id && state.confirm.until > Date.now())) {
		state.confirm = { id: n.id, until: Date.now() + CONFIRM_MS };
		renderNodes();
		setTimeout(() => {
			if (state.confirm.id === n.id && state.confirm.until <= Date.now()) {
				state.confirm = { id: null, until: 0 };
				renderNodes();
			}
		}, CONFIRM_MS + 50);
		return;
	}
	state.confirm = { id: null, until: 0 };
	const r = await api(b.url, 'DELETE', `/api/cluster/nodes/${encodeURIComponent(n.id)}`);
	if (r.ok) {
		toast(`Removed ${shortId(n.id)} (${n.url})`, 'ok');
		if (b.stream !== 'live') logActivity(b, `${shortId(n.id)} removed`, 'warn', n.id);
	} else if (r.json && r.json.code === 'NOT_COORDINATOR') {
		const coord = r.json.details && r.json.details.coordinatorUrl;
		toast(`${hostPort(b.url)} is a worker: only the coordinator removes nodes.`, 'error', coord ? {
			label: `Switch to ${hostPort(coord)}`,
			run: () => select(coord, 'node'),
		} : null);
	} else if (r.status === 401) {
		askToken(`Could not remove ${shortId(n.id)}: ${describeError(r)}`, b.url);
	} else {
		toast(`Could not remove ${shortId(n.id)}: ${describeError(r)}`, 'error');
	}
	scheduleViews(0);
}

function clearRegisterResult() {
	const res = $('register-result');
	res.hidden = true;
	res.replaceChildren();
	res.className = 'form-result f-full';
	const form = $('register-form');
	for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
	for (const el of form.querySelectorAll('.field-msg')) el.textContent = '';
}

function fieldError(field, message) {
	const form = $('register-form');
	const input = form.elements[field];
	const msg = form.querySelector(`.field-msg[data-for="${CSS.escape(field)}"]`);
	if (input && input.setAttribute) input.setAttribute('aria-invalid', 'true');
	if (msg) msg.textContent = message;
	if (input && input.focus) input.focus();
}

function showRegisterResult(kind, title, ...content) {
	const res = $('register-result');
	res.hidden = false;
	res.className = `form-result f-full ${kind}`;
	res.dataset.kind = kind;
	res.replaceChildren(h('strong', { class: 'result-title' }, title), ...content);
}

// Builds the request body from the form; field errors for what cannot even
// be sent (metadata that is not JSON). Everything else is the API's call.
function registerBody(form) {
	const f = form.elements;
	const body = { url: f.url.value.trim(), role: f.role.value };
	if (f.id.value.trim()) body.id = f.id.value.trim();
	if (f.clusterId.value.trim()) body.clusterId = f.clusterId.value.trim();
	body.tags = f.tags.value.split(',').map((t) => t.trim()).filter(Boolean);
	body.capabilities = {};
	const md = f.metadata.value.trim();
	if (md) {
		let parsed;
		try {
			parsed = JSON.parse(md);
		} catch (e) {
			return { error: ['metadata', `Not valid JSON: ${e.message}`] };
		}
		if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
			return { error: ['metadata', 'Must be a JSON object, e.g. {"region": "eu-west"}'] };
		body.metadata = parsed;
	} else {
		body.metadata = {};
	}
	return { body };
}

async function register(ev) {
	ev.preventDefault();
	const b = selectedBackend();
	if (!b || state.pending.register) return;
	clearRegisterResult();
	const form = $('register-form');
	const built = registerBody(form);
	if (built.error) {
		fieldError(...built.error);
		showRegisterResult('error', 'Check the form', h('p', null, built.error[1]));
		return;
	}
	state.pending.register = true;
	renderRegisterHints();
	const r = await api(b.url, 'POST', '/api/cluster/register', built.body);
	state.pending.register = false;
	renderRegisterHints();
	if (r.ok) {
		const n = r.json.node || {};
		showRegisterResult('ok', 'Registered',
			h('p', null, h('span', { class: 'mono' }, n.id || ''), ' at ', h('span', { class: 'mono' }, n.url || ''), ' is ', pill(n.status)));
		if (b.stream !== 'live') logActivity(b, `${shortId(n.id)} registered`, 'ok', n.id);
		form.reset();
		scheduleViews(0);
		return;
	}
	const j = r.json;
	if (!j) {
		showRegisterResult('error', 'Request failed', h('p', null, describeError(r)));
		return;
	}
	if (r.status === 401) {
		showRegisterResult('error', `API token needed · ${j.code || 401}`,
			h('p', null, j.message || ''),
			h('p', null, h('button', { type: 'button', class: 'btn btn-primary btn-small', onclick: () => askToken(null, b.url) }, tokenOf(b.url) ? 'Change the API token' : 'Enter the API token')));
		askToken(null, b.url);
		return;
	}
	if (j.code === 'NOT_COORDINATOR') {
		const coord = j.details && j.details.coordinatorUrl;
		showRegisterResult('warn', 'This backend is a worker',
			h('p', null, j.message || 'Only the coordinator changes the registry.'),
			coord ? h('p', null, h('button', {
				type: 'button', class: 'btn btn-primary btn-small',
				onclick: () => {
					// Keep the form; send it to the coordinator (once
					// it is approved, if it is not yet).
					if (select(coord, 'node')) setTimeout(() => form.requestSubmit(), 0);
				},
			}, `Send to the coordinator at ${hostPort(coord)}`)) : null);
		return;
	}
	const field = j.details && j.details.field;
	if (field) fieldError(field, j.message);
	showRegisterResult('error', `${j.error || 'Error'} · ${j.code || r.status}`,
		h('p', null, j.message || ''),
		field ? h('p', { class: 'small muted' }, 'Field: ', h('code', null, field)) : null);
}

// ---- Activity and toasts ------------------------------------------------------------

function logActivity(b, text, tone, nodeId) {
	state.activity.unshift({ at: Date.now(), backend: b ? hostPort(b.url) : '', text, tone: tone || '', nodeId });
	state.activity.length = Math.min(state.activity.length, ACTIVITY_MAX);
	const ol = $('activity');
	ol.replaceChildren(...state.activity.map((a) => h('li', { class: `act act-${a.tone || 'none'}` },
		h('span', { class: 'act-dot', 'aria-hidden': 'true' }),
		h('span', { class: 'act-text' }, h('span', { class: 'mono small muted' }, a.backend), ' ', a.text),
		timeEl(a.at, 'small muted'))));
}

function toast(text, kind, action) {
	const box = $('toasts');
	const el = h('div', { class: `toast toast-${kind || 'info'}`, role: kind === 'error' ? 'alert' : 'status' },
		h('span', { class: 'toast-text' }, text),
		action ? h('button', {
			type: 'button', class: 'btn btn-small btn-ghost',
			onclick: () => {
				action.run();
				el.remove();
			},
		}, action.label) : null,
		h('button', { type: 'button', class: 'toast-x', 'aria-label': 'Dismiss', onclick: () => el.remove() }, '×'));
	box.append(el);
	setTimeout(() => el.remove(), action ? 12000 : 5000);
}

// ---- API token ---------------------------------------------------------------------

// The origin the token box is about: the one that asked, else the
// selected backend.
function tokenTarget() {
	return state.tokenFor || state.selected;
}

// Opens the token box for origin (a request to it was refused with 401).
function askToken(message, origin) {
	if (message) toast(`${message}. Enter its API token, then try again.`, 'error');
	state.tokenFor = origin ? normUrl(origin) : null;
	renderToken();
	const box = $('token-box');
	box.open = true;
	$('token-input').focus();
}

// The token for one approved origin ('' forgets it).
function setToken(origin, t) {
	if (!isApproved(origin)) return;
	if (t) state.tokens.set(origin, t);
	else state.tokens.delete(origin);
	saveTokens();
	renderToken();
	const b = backendByUrl(origin);
	if (b) probeSoon(b);
	if (origin === state.selected) scheduleViews(0);
}

function renderToken() {
	const box = $('token-box');
	const sel = state.selected;
	const set = !!(sel && tokenOf(sel));
	box.dataset.set = set ? 'true' : 'false';
	// The target pill next to it names the selected backend; the title
	// says whose token this is.
	$('token-state').textContent = set ? 'API token set' : 'No API token';
	box.querySelector('summary').title = sel
		? `${set ? 'Bearer token sent' : 'No bearer token is sent'} to ${sel} (its api_token); every backend has its own`
		: 'Bearer token for the selected backend (its api_token)';
	const target = tokenTarget();
	box.dataset.origin = target || '';
	$('token-origin').textContent = target || 'no backend selected';
	$('token-input').disabled = !target;
	$('token-form').querySelector('button[type="submit"]').disabled = !target;
	$('token-forget').disabled = !(target && tokenOf(target));
}

// ---- Approval: rendering -----------------------------------------------------------

const PROPOSAL_WHY = {
	link: 'A link asks this dashboard to connect to',
	typed: 'You asked to add',
	saved: 'An earlier version of this dashboard saved',
	node: 'A node names this backend:',
};

function renderProposals() {
	const box = $('proposals');
	box.hidden = state.proposals.length === 0;
	box.replaceChildren(...state.proposals.map((p) => h('div', {
		class: 'proposal', role: 'alertdialog', 'aria-labelledby': `prop-${p.origin}`,
		dataset: { testid: 'proposal', origin: p.origin, why: p.why },
	},
	h('div', { class: 'proposal-icon', 'aria-hidden': 'true' }, '?'),
	h('div', { class: 'proposal-body' },
		h('h2', { id: `prop-${p.origin}` }, 'Connect to a backend that is not configured?'),
		h('p', null, PROPOSAL_WHY[p.why] || PROPOSAL_WHY.link),
		h('p', { class: 'proposal-origin mono', dataset: { testid: 'proposal-origin' } }, p.origin),
		h('p', { class: 'hint' },
			'Nothing has been sent there: no probe, no event stream, no API token. ',
			'Approve only if you run a Proxy Stone node at exactly this address. ',
			'Approving remembers it in this browser and sends requests without a token; ',
			'a token you enter for it goes to it alone.')),
	h('div', { class: 'proposal-actions' },
		h('button', { type: 'button', class: 'btn btn-ghost', dataset: { action: 'dismiss' }, onclick: () => dismiss(p.origin) }, 'Dismiss'),
		h('button', { type: 'button', class: 'btn btn-primary', dataset: { action: 'approve' }, onclick: () => approve(p.origin) }, 'Approve and connect')))));
}

// ---- Filters -----------------------------------------------------------------------

function setFilter(k, v) {
	state.filters[k] = v;
	syncFilterInputs();
	writeHash();
	scheduleViews(0);
	renderCounts();
}

function syncFilterInputs() {
	$('filter-status').value = state.filters.status;
	$('filter-role').value = state.filters.role;
	const c = $('filter-cluster');
	if (document.activeElement !== c) c.value = state.filters.clusterId;
}

// ---- Start --------------------------------------------------------------------------

async function loadConfig() {
	try {
		const res = await fetch('config.json', { cache: 'no-store' });
		if (res.ok) {
			const j = await res.json();
			return { backends: String(j.backends || DEFAULT_BACKENDS), clusterId: String(j.clusterId || '') };
		}
	} catch {
		// Page opened without its server (a file): use the spec's ports.
	}
	return { backends: DEFAULT_BACKENDS, clusterId: '' };
}

function wire() {
	$('backends-body').addEventListener('click', (e) => {
		const tr = e.target.closest('tr[data-backend]');
		if (!tr) return;
		const b = backendByUrl(tr.dataset.backend);
		if (!b) return;
		if (e.target.closest('[data-action="unwatch"]')) removeBackend(b);
		else select(b.url);
	});
	$('nodes-body').addEventListener('click', (e) => {
		const btn = e.target.closest('[data-action]');
		const tr = e.target.closest('tr[data-node-id]');
		if (!btn || !tr) return;
		const n = (state.view.nodes || []).find((x) => x.id === tr.dataset.nodeId);
		if (!n) return;
		if (btn.dataset.action === 'toggle') {
			if (state.expanded.has(n.id)) state.expanded.delete(n.id);
			else state.expanded.add(n.id);
			renderNodes();
		} else if (btn.dataset.action === 'open') {
			select(n.url, 'node');
		} else if (btn.dataset.action === 'remove') {
			removeNode(n);
		}
	});
	$('btn-disable').addEventListener('click', () => setServing(false));
	$('btn-enable').addEventListener('click', () => setServing(true));
	$('register-form').addEventListener('submit', register);
	$('register-form').addEventListener('input', (e) => {
		if (e.target.getAttribute('aria-invalid')) {
			e.target.removeAttribute('aria-invalid');
			const msg = $('register-form').querySelector(`.field-msg[data-for="${CSS.escape(e.target.name)}"]`);
			if (msg) msg.textContent = '';
		}
	});
	const filters = $('filters');
	filters.addEventListener('submit', (e) => e.preventDefault());
	$('filter-status').addEventListener('change', (e) => setFilter('status', e.target.value));
	$('filter-role').addEventListener('change', (e) => setFilter('role', e.target.value));
	let typing = null;
	$('filter-cluster').addEventListener('input', (e) => {
		clearTimeout(typing);
		typing = setTimeout(() => setFilter('clusterId', e.target.value.trim()), 300);
	});
	filters.addEventListener('reset', () => {
		for (const k of Object.keys(state.filters)) state.filters[k] = '';
		setTimeout(() => {
			syncFilterInputs();
			writeHash();
			scheduleViews(0);
		}, 0);
	});
	$('token-form').addEventListener('submit', (e) => {
		e.preventDefault();
		const origin = tokenTarget();
		const t = $('token-input').value.trim();
		$('token-input').value = '';
		$('token-box').open = false;
		if (!origin) return;
		setToken(origin, t);
		toast(t ? `API token set for ${origin}: it goes to that origin only` : `API token for ${origin} cleared`, 'ok');
	});
	$('token-forget').addEventListener('click', () => {
		const origin = tokenTarget();
		$('token-input').value = '';
		$('token-box').open = false;
		if (!origin) return;
		setToken(origin, '');
		toast(`API token for ${origin} forgotten`, 'ok');
	});
	// Opened by hand, the box is about the selected backend.
	$('token-box').addEventListener('toggle', () => {
		if (!$('token-box').open) {
			state.tokenFor = null;
			renderToken();
		}
	});
	$('add-backend-form').addEventListener('submit', (e) => {
		e.preventDefault();
		const input = $('add-backend');
		const urls = parseBackends(input.value);
		if (!urls.length) {
			toast('Give a backend as host:port (or host:port-port)', 'error');
			return;
		}
		for (const u of urls) addBackend(u, 'typed');
		input.value = '';
		renderSoon();
	});
	window.addEventListener('hashchange', () => {
		const want = readHash();
		syncFilterInputs();
		if (want && normUrl(want) !== state.selected) select(want, 'link');
		else scheduleViews(0);
	});
	// The browser refused a connection the policy does not list (an
	// approval from another tab not yet in this page's policy): say so.
	document.addEventListener('securitypolicyviolation', (e) => {
		if (e.effectiveDirective !== 'connect-src') return;
		toast(`The page's policy blocked ${normUrl(e.blockedURI) || e.blockedURI}: reload the page`, 'error');
	});
	// Relative times tick; the views' clock does not depend on data.
	setInterval(() => {
		for (const el of document.querySelectorAll('time[data-ts]')) {
			const ts = Number(el.dataset.ts);
			el.textContent = relTime(ts);
		}
		if (state.confirm.id && state.confirm.until <= Date.now()) {
			state.confirm = { id: null, until: 0 };
			renderNodes();
		}
	}, 1000);
	document.addEventListener('visibilitychange', () => {
		if (!document.hidden) {
			for (const b of state.backends) probeSoon(b);
			scheduleViews(0);
		}
	});
}

async function main() {
	wire();
	const wanted = readHash();
	syncFilterInputs();
	const cfg = await loadConfig();
	state.spec = cfg.backends;
	state.clusterId = cfg.clusterId;
	// What the ui process lists, the operator configured: approved.
	const configured = parseBackends(cfg.backends);
	for (const u of configured) state.configured.add(normUrl(u));
	for (const o of [...configured.map(normUrl), ...policyCookieOrigins()]) state.inPolicy.add(o);
	if (syncPolicy()) return; // reloading
	renderToken();
	for (const u of configured) addBackend(u, 'scan');
	for (const o of state.approved) addBackend(o, 'added');
	for (const u of oldAddedBackends()) addBackend(u, 'saved');
	if (wanted) select(wanted, 'link');
	renderAll();
}

main();
