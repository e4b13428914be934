// Issue 12, item 5, in a real headless Chromium: a link to the dashboard
// with #backend=http://evil:port must not make the page talk to evil, and
// above all must not hand it the API token.
//
// Starts one coordinator (api_token set, serving the dashboard, ui_backends
// = its own API) and a fake "evil" HTTP server on loopback that records
// every request with its headers. Then follows the attack:
//   - the link opened in a tab that holds the token;
//   - the link opened without a token, the token entered in a later
//     session with the same storage;
//   - what an earlier version stored (the link's backend in localStorage,
//     one global token in sessionStorage);
// and checks that evil receives no request at all before the operator
// approves its exact origin, that the confirmation shows that origin, that
// after approval requests go there without the coordinator's token, and
// that a token entered for evil goes to evil only. Also checks the served
// policy's connect-src (exact origins, no wildcard). Screenshots of the
// confirmation into tests/artifacts/security-*.png.
//
// Run: cd tests/browser && npm ci && node security.test.mjs
// PS_BROWSER_KEEP_GOING=1 reports every failing step (for an old build).

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import {
	ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, ROOT, START_DEADLINE, UI_DEADLINE, assert, freeTcpPort, freeUdpPort,
	http as request, prepare, run, sleep, startNode, step, tempDirs, tmp, waitFor,
} from './harness.mjs';

const TOKEN = 'e2e-security-coordinator-token';
const EVIL_TOKEN = 'e2e-security-token-for-the-approved-origin';
const OLD_TOKEN = 'e2e-security-old-global-token';
// How long the page is watched for a request it must not make: an unseen
// backend is probed at once, then every 3 s (PROBE_UNSEEN_MS in app.js).
const QUIET_MS = 4_000;

// ---- The fake backend -------------------------------------------------------------

// Answers like a Proxy Stone node (enough for the page to list it) and
// records every request. CORS as the real API sends it.
function startEvil() {
	const seen = [];
	const server = http.createServer((req, res) => {
		seen.push({ method: req.method, url: req.url, headers: req.headers, at: Date.now() });
		const cors = {
			'Access-Control-Allow-Origin': '*',
			'Access-Control-Allow-Headers': 'Authorization, Content-Type',
			'Access-Control-Allow-Methods': 'GET, POST, DELETE, OPTIONS',
		};
		if (req.method === 'OPTIONS') {
			res.writeHead(204, cors).end();
			return;
		}
		const p = req.url.split('?')[0];
		const bodies = {
			'/api/cluster/status': { success: true, status: { id: 'e0000000-evil', role: 'worker', status: 'active' }, serviceStatus: { mode: 'serving' } },
			'/api/cluster/nodes': { success: true, nodes: [], registryVersion: 1 },
			'/api/cluster/health': { success: true, health: { nodes: [], totalNodes: 0, coordinatorHealthy: false } },
			'/api/cluster/service-status': { success: true, status: { mode: 'serving' }, nodeStatus: {} },
		};
		const body = bodies[p] || { success: false, error: 'Not Found', code: 'NOT_FOUND', message: 'no such path', details: {} };
		res.writeHead(bodies[p] ? 200 : 404, { ...cors, 'Content-Type': 'application/json' }).end(JSON.stringify(body));
	});
	return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, seen, origin: `http://127.0.0.1:${server.address().port}` })));
}

// The first few requests, for a failure message.
function describe(seen) {
	const first = seen.slice(0, 4).map((r) => `${r.method} ${r.url}${r.headers.authorization ? ` [${r.headers.authorization}]` : ''}`);
	return `${JSON.stringify(first)}${seen.length > first.length ? ` and ${seen.length - first.length} more` : ''}`;
}

function connectSrc(policy) {
	const m = /connect-src ([^;]*)/.exec(policy || '');
	return m ? m[1].trim().split(/\s+/) : null;
}

// ---- The test ---------------------------------------------------------------------

async function main() {
	prepare();
	const apiPort = await freeTcpPort();
	let uiPort = await freeTcpPort();
	while (uiPort === apiPort) uiPort = await freeTcpPort();
	const uiUrl = `http://127.0.0.1:${uiPort}/`;
	const coordOrigin = `http://127.0.0.1:${apiPort}`;
	startNode('security-coordinator', {
		role: 'coordinator', api_host: '127.0.0.1', api_port: apiPort, gossip_port: await freeUdpPort(),
		heartbeat_interval: 1, log_level: 'debug', api_token: TOKEN,
		ui_port: uiPort, ui_backends: `127.0.0.1:${apiPort}`, data_dir: path.join(tmp, 'security-coordinator'),
	});
	const evil = await startEvil();
	const EVIL = evil.origin;
	console.log(`# ui ${uiUrl}, coordinator ${coordOrigin}, evil ${EVIL}`);
	await waitFor('the dashboard to serve', async () => (await request('GET', `${uiUrl}config.json`)).status === 200, START_DEADLINE);
	await waitFor('the coordinator to serve', async () => (await request('GET', `${coordOrigin}/api/cluster/status`)).status === 200, START_DEADLINE);

	const contexts = [];
	const pageErrors = [];
	const cspReports = []; // console lines of connections the policy refused
	const sentAuth = []; // {url, authorization} of every page request that carried one
	const browserContext = async () => {
		const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ps-chromium-'));
		tempDirs.push(profile);
		const ctx = await chromium.launchPersistentContext(profile, {
			executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1280, height: 800 },
		});
		contexts.push(ctx);
		ctx.on('page', watch);
		for (const p of ctx.pages()) watch(p);
		return ctx;
	};
	function watch(p) {
		p.setDefaultTimeout(UI_DEADLINE);
		p.on('pageerror', (e) => pageErrors.push(e));
		p.on('console', (m) => {
			if (/Content Security Policy/i.test(m.text())) cspReports.push(m.text());
		});
		p.on('request', async (r) => {
			const auth = (await r.allHeaders().catch(() => ({}))).authorization;
			if (auth) sentAuth.push({ url: r.url(), auth });
		});
	}
	const newPage = async (ctx) => ctx.pages().find((p) => p.url() === 'about:blank') || ctx.newPage();
	// The dashboard is up when the coordinator's row has its role.
	const coordinatorShown = (p) => p.waitForFunction((u) => document.querySelector(`#backends-body tr[data-backend="${u}"]`)?.dataset.role === 'coordinator', coordOrigin);
	const enterToken = async (p, t) => {
		await p.locator('#token-box summary').click();
		await p.locator('#token-input').fill(t);
		await p.locator('#token-form button[type="submit"]').click();
		await p.waitForFunction(() => !document.querySelector('#token-box').open);
	};
	// Nothing reached evil, ever (this step's requests are named in the
	// message), while the page ran for QUIET_MS.
	const evilUntouched = async (p, what) => {
		const mark = evil.seen.length;
		await sleep(QUIET_MS);
		const now = evil.seen.slice(mark);
		const withToken = now.filter((r) => r.headers.authorization);
		assert(!withToken.length, `${what}: evil received ${withToken.length} request(s) with a token: ${describe(withToken)}`);
		assert(!now.length, `${what}: evil received ${now.length} request(s) before any approval: ${describe(now)}`);
		assert(!evil.seen.length, `${what}: evil received ${evil.seen.length} request(s) before any approval, earlier in the test`);
		const tried = cspReports.filter((t) => t.includes(EVIL));
		assert(!tried.length, `${what}: the page tried to reach evil (refused by the policy): ${tried[0]}`);
	};
	const proposalFor = (p, origin) => p.locator(`[data-testid="proposal"][data-origin="${origin}"]`);
	const checkProposal = async (p, why) => {
		const card = proposalFor(p, EVIL);
		await card.waitFor();
		const shown = await card.locator('[data-testid="proposal-origin"]').textContent();
		assert(shown === EVIL, `the confirmation shows "${shown}", not the exact origin ${EVIL}`);
		assert(await card.getAttribute('data-why') === why, `proposal reason ${await card.getAttribute('data-why')}, want ${why}`);
		assert(await card.locator('[data-action="approve"]').isVisible() && await card.locator('[data-action="dismiss"]').isVisible(), 'approve and dismiss offered');
	};
	const shoot = async (p, name, fullPage = false) => {
		const file = path.join(ARTIFACTS, name);
		await p.screenshot({ path: file, fullPage });
		return path.relative(ROOT, file);
	};

	try {
		const ctxA = await browserContext();
		const pageA = await newPage(ctxA);

		await step('a link with #backend=evil in a tab that holds the token: nothing reaches evil; the confirmation shows the exact origin', async () => {
			await pageA.goto(uiUrl);
			await coordinatorShown(pageA);
			await enterToken(pageA, TOKEN);
			await waitFor('the coordinator token in use', () => sentAuth.some((r) => r.url.startsWith(coordOrigin) && r.auth === `Bearer ${TOKEN}`), UI_DEADLINE);
			// The link followed in the same tab, then the page reloaded
			// with it (as a link opened afresh).
			await pageA.goto(`${uiUrl}#backend=${encodeURIComponent(EVIL)}`);
			await pageA.reload();
			await coordinatorShown(pageA);
			await evilUntouched(pageA, 'link with a token set');
			await checkProposal(pageA, 'link');
			return `evil got 0 requests in ${QUIET_MS / 1000} s; ${await shoot(pageA, 'security-proposal-1280x800.png')}`;
		});

		await step('the token box names the origin its token goes to', async () => {
			await pageA.locator('#token-box summary').click();
			const origin = await pageA.locator('#token-origin').textContent();
			assert(origin === coordOrigin, `token box is for "${origin}", want ${coordOrigin}`);
			const shot = await shoot(pageA, 'security-token-box-1280x800.png');
			await pageA.locator('#token-box summary').click();
			return shot;
		});

		await step('dismiss: the proposal goes, the address forgets it, nothing is stored', async () => {
			await proposalFor(pageA, EVIL).locator('[data-action="dismiss"]').click();
			await proposalFor(pageA, EVIL).waitFor({ state: 'detached' });
			const stored = await pageA.evaluate(() => JSON.stringify({ ...localStorage }) + document.cookie + location.hash);
			assert(!stored.includes(EVIL) && !stored.includes(encodeURIComponent(EVIL)), `evil still stored: ${stored}`);
			await pageA.reload();
			await coordinatorShown(pageA);
			assert(await proposalFor(pageA, EVIL).count() === 0, 'asked again after dismissing');
			await evilUntouched(pageA, 'after dismissing');
		});
		// Its polling (of evil, on an old build) would muddle what the next
		// steps see.
		await pageA.close();

		const ctxB = await browserContext();
		await step('the link opened without a token, the token entered in a later session: nothing reaches evil', async () => {
			const first = await newPage(ctxB);
			await first.goto(`${uiUrl}#backend=${encodeURIComponent(EVIL)}`);
			await coordinatorShown(first);
			await evilUntouched(first, 'link without a token');
			await checkProposal(first, 'link');
			await first.close();
			const later = await ctxB.newPage();
			await later.goto(uiUrl);
			await coordinatorShown(later);
			await enterToken(later, TOKEN);
			await waitFor('the coordinator token in use', () => sentAuth.some((r) => r.url.startsWith(coordOrigin) && r.auth === `Bearer ${TOKEN}`), UI_DEADLINE);
			await evilUntouched(later, 'later session with the token');
			assert(await proposalFor(later, EVIL).count() === 0, 'the undecided link was remembered');
			await later.close();
		});

		const pageC = await ctxB.newPage();
		await step('what an earlier version stored: the saved backend is only proposed, the global token is dropped unsent', async () => {
			await pageC.goto(`${uiUrl}config.json`);
			await pageC.evaluate(([evilOrigin, old]) => {
				localStorage.setItem('proxystone.addedBackends', JSON.stringify([evilOrigin]));
				sessionStorage.setItem('proxystone.apiToken', old);
			}, [EVIL, OLD_TOKEN]);
			await pageC.goto(uiUrl);
			await coordinatorShown(pageC);
			await evilUntouched(pageC, 'old saved backend and global token');
			const leaked = sentAuth.filter((r) => r.auth.includes(OLD_TOKEN));
			assert(!leaked.length, `the old global token was sent to ${leaked.map((r) => r.url).join(', ')}`);
			assert(await pageC.evaluate(() => sessionStorage.getItem('proxystone.apiToken')) === null, 'the old token key is still there');
			await checkProposal(pageC, 'saved');
		});

		await step('the served policy: connect-src lists exact origins, no wildcard', async () => {
			const r = await request('GET', uiUrl);
			const src = connectSrc(r.headers.get('content-security-policy'));
			assert(src, `no connect-src in ${r.headers.get('content-security-policy')}`);
			for (const s of src) {
				assert(!s.includes('*'), `wildcard ${s} in connect-src ${src.join(' ')}`);
				assert(!/^(https?|wss?):?$/.test(s), `scheme source ${s} in connect-src ${src.join(' ')}`);
				assert(s === "'self'" || /^https?:\/\/[^/]+:\d+$/.test(s), `not an exact origin: ${s}`);
			}
			assert(src.includes(coordOrigin), `configured ${coordOrigin} missing: ${src.join(' ')}`);
			assert(!src.includes(EVIL), `evil in the policy without approval: ${src.join(' ')}`);
			return src.join(' ');
		});

		await step('approve: the page reloads with evil in its policy and talks to it, without the coordinator\'s token', async () => {
			await enterToken(pageC, TOKEN);
			const doc = pageC.waitForResponse((r) => r.url() === uiUrl && r.request().resourceType() === 'document');
			doc.catch(() => {}); // awaited below, unless the click fails first
			await proposalFor(pageC, EVIL).locator('[data-action="approve"]').click();
			const src = connectSrc((await doc).headers()['content-security-policy']);
			assert(src && src.includes(EVIL) && src.includes(coordOrigin), `policy after approval: ${src && src.join(' ')}`);
			await waitFor('requests to evil', () => evil.seen.some((r) => r.url === '/api/cluster/status'), UI_DEADLINE);
			await pageC.waitForFunction((u) => document.querySelector('#backends-body tr.selected')?.dataset.backend === u, EVIL);
			await sleep(1500); // views and probes of the selected evil
			const withToken = evil.seen.filter((r) => r.headers.authorization);
			assert(!withToken.length, `a token went to evil without being entered for it: ${describe(withToken)}`);
			const approved = await pageC.evaluate(() => localStorage.getItem('proxystone.approvedOrigins'));
			assert(JSON.parse(approved).includes(EVIL), `approval not kept: ${approved}`);
			return `${evil.seen.length} requests, none with a token`;
		});

		await step('a token entered for the approved origin goes to it alone', async () => {
			await pageC.locator('#token-box summary').click();
			assert(await pageC.locator('#token-origin').textContent() === EVIL, 'token box is for evil');
			await pageC.locator('#token-input').fill(EVIL_TOKEN);
			await pageC.locator('#token-form button[type="submit"]').click();
			await waitFor('evil\'s own token at evil', () => evil.seen.some((r) => r.headers.authorization === `Bearer ${EVIL_TOKEN}`), UI_DEADLINE);
			const wrong = evil.seen.filter((r) => r.headers.authorization && r.headers.authorization !== `Bearer ${EVIL_TOKEN}`);
			assert(!wrong.length, `another token reached evil: ${describe(wrong)}`);
			const elsewhere = sentAuth.filter((r) => r.auth.includes(EVIL_TOKEN) && !r.url.startsWith(`${EVIL}/`));
			assert(!elsewhere.length, `evil's token went to ${elsewhere.map((r) => r.url).join(', ')}`);
		});

		await step('an approved backend is not asked again', async () => {
			const p = await ctxB.newPage();
			await p.goto(`${uiUrl}#backend=${encodeURIComponent(EVIL)}`);
			await p.waitForFunction((u) => document.querySelector('#backends-body tr.selected')?.dataset.backend === u, EVIL);
			assert(await p.locator('[data-testid="proposal"]').count() === 0, 'asked again');
			await p.close();
		});

		await step('an approval outlives a cleared cookie: the page writes it again and reloads once', async () => {
			await ctxB.clearCookies();
			const p = await ctxB.newPage();
			let docs = 0;
			p.on('response', (r) => {
				if (r.url() === uiUrl && r.request().resourceType() === 'document') docs++;
			});
			const reports = cspReports.length;
			await p.goto(uiUrl);
			await p.waitForFunction((u) => document.querySelector(`#backends-body tr[data-backend="${u}"]`)?.dataset.role === 'worker', EVIL);
			assert(docs === 2, `${docs} page loads, want 2 (one reload)`);
			const refused = cspReports.slice(reports);
			assert(!refused.length, `the policy refused: ${refused[0]}`);
			await p.close();
		});

		await step('the confirmation on a phone (390x844)', async () => {
			const p = await ctxA.newPage();
			await p.setViewportSize({ width: 390, height: 844 });
			await p.goto(`${uiUrl}#backend=${encodeURIComponent('http://127.0.0.1:9')}`);
			await coordinatorShown(p);
			await proposalFor(p, 'http://127.0.0.1:9').waitFor();
			const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
			assert(overflow <= 0, `the phone layout scrolls sideways by ${overflow}px`);
			const shot = await shoot(p, 'security-proposal-390x844.png');
			await p.close();
			return shot;
		});

		await step('no uncaught errors in the pages', async () => {
			assert(pageErrors.length === 0, pageErrors.map((e) => e.stack || e).join('\n'));
		});
	} catch (e) {
		for (const [i, ctx] of contexts.entries())
			for (const [j, p] of ctx.pages().entries())
				await p.screenshot({ path: path.join(ARTIFACTS, `security-failure-${i}-${j}.png`), fullPage: true }).catch(() => {});
		console.log('# failure screenshots: tests/artifacts/security-failure-*.png');
		throw e;
	} finally {
		for (const ctx of contexts) await ctx.close().catch(() => {});
		evil.server.close();
	}
}

await run(main);
