// Helpers shared by the browser tests (dashboard.test.mjs,
// security.test.mjs): starting and killing nodes, free ports, polling
// waits, numbered steps, and the run/stop/exit of a test file.

import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.join(ROOT, 'bin', 'proxystone');
export const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
	'--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Start-up of a node and of the cluster (gossip join at heartbeat 1 s).
export const START_DEADLINE = 30_000;
// Page-side waits for things that need no cluster round.
export const UI_DEADLINE = 15_000;

// ---- Processes ----------------------------------------------------------------

export const started = []; // supervisor pids we spawned
export const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ps-browser-'));

export function childrenOf(pid) {
	const out = [];
	for (const d of fs.readdirSync('/proc')) {
		if (!/^\d+$/.test(d)) continue;
		try {
			const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
			const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
			if (ppid === pid) out.push(Number(d));
		} catch {
			// Gone meanwhile.
		}
	}
	return out;
}

export function alive(pid) {
	try {
		const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
		return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
	} catch {
		return false;
	}
}

// kill -9 of a supervisor and its children, all at once.
export function kill9Tree(pid) {
	const pids = [pid, ...childrenOf(pid)];
	for (const p of pids) {
		try {
			process.kill(p, 'SIGKILL');
		} catch {
			// Already gone.
		}
	}
	return pids;
}

export const tempDirs = [tmp]; // removed on every exit

function killEverything() {
	for (const n of started) if (n.proc.exitCode === null) kill9Tree(n.proc.pid);
	for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
}
process.on('exit', killEverything);
for (const sig of ['SIGINT', 'SIGTERM']) {
	process.on(sig, () => {
		console.error(`\n${sig}: stopping the cluster`);
		killEverything();
		process.exit(130);
	});
}

export function tcpFree(port) {
	return new Promise((resolve) => {
		const s = net.createServer();
		s.once('error', () => resolve(false));
		s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
	});
}

export function udpFree(port) {
	return new Promise((resolve) => {
		const s = dgram.createSocket('udp4');
		s.once('error', () => resolve(false));
		s.bind({ port, address: '0.0.0.0', exclusive: true }, () => s.close(() => resolve(true)));
	});
}

export function freeTcpPort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.once('error', reject);
		s.listen({ port: 0, host: '127.0.0.1' }, () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
	});
}

export function freeUdpPort() {
	return new Promise((resolve, reject) => {
		const s = dgram.createSocket('udp4');
		s.once('error', reject);
		s.bind({ port: 0, address: '0.0.0.0' }, () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
	});
}

export function startNode(name, settings) {
	const conf = path.join(tmp, `${name}.conf`);
	fs.writeFileSync(conf, Object.entries(settings).map(([k, v]) => `${k} = ${v}\n`).join(''));
	const logPath = path.join(ARTIFACTS, `browser-${name}.log`);
	const log = fs.openSync(logPath, 'w');
	// The working directory is the checkout: the ui child serves
	// src/ui/static from there.
	const proc = spawn(BIN, ['--config', conf], { cwd: ROOT, stdio: ['ignore', log, log] });
	fs.closeSync(log);
	const node = { name, proc, port: Number(settings.api_port), url: `http://127.0.0.1:${settings.api_port}`, logPath };
	started.push(node);
	return node;
}

// ---- Small helpers --------------------------------------------------------------

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what, pred, timeout) {
	const end = Date.now() + timeout;
	let last;
	while (Date.now() < end) {
		try {
			last = await pred();
			if (last) return last;
		} catch (e) {
			last = e;
		}
		await sleep(100);
	}
	throw new Error(`timed out after ${timeout / 1000} s waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

// One request from the test itself (not the page); token: a bearer token
// to send, if any.
export async function http(method, url, body, token) {
	const init = { method, signal: AbortSignal.timeout(5000), headers: token ? { Authorization: `Bearer ${token}` } : {} };
	if (body !== undefined) {
		init.body = JSON.stringify(body);
		init.headers['Content-Type'] = 'application/json';
	}
	const res = await fetch(url, init);
	const text = await res.text();
	let json = null;
	try {
		json = JSON.parse(text);
	} catch {
		json = null;
	}
	return { status: res.status, headers: res.headers, text, json };
}

export function assert(cond, msg) {
	if (!cond) throw new Error(`assertion failed: ${msg}`);
}

let failures = 0;
let stepNo = 0;
// PS_BROWSER_KEEP_GOING=1: a failed step is reported and the next one runs
// (to see every step an old build fails, not only the first); the run
// still fails.
const KEEP_GOING = !!process.env.PS_BROWSER_KEEP_GOING;

export async function step(name, fn) {
	stepNo++;
	const t0 = Date.now();
	try {
		const note = await fn();
		console.log(`ok ${stepNo} - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)${note ? ` # ${note}` : ''}`);
	} catch (e) {
		failures++;
		console.log(`not ok ${stepNo} - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
		console.log(`  ${String(e.stack || e).split('\n').join('\n  ')}`);
		if (!KEEP_GOING) throw e;
	}
}

// Builds bin/proxystone and checks the browser is there.
export function prepare() {
	fs.mkdirSync(ARTIFACTS, { recursive: true });
	console.log('# building bin/proxystone');
	execFileSync('make', ['-s', 'bin/proxystone'], { cwd: ROOT, stdio: 'inherit' });
	assert(fs.existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install -y chromium`);
}

async function stopCluster() {
	// SIGTERM first (an orderly stop), SIGKILL of the tree if it lingers.
	for (const n of started) if (n.proc.exitCode === null) n.proc.kill('SIGTERM');
	const end = Date.now() + 10_000;
	for (const n of started) {
		while (n.proc.exitCode === null && n.proc.signalCode === null && Date.now() < end) await sleep(50);
		if (n.proc.exitCode === null && n.proc.signalCode === null) kill9Tree(n.proc.pid);
	}
	fs.rmSync(tmp, { recursive: true, force: true });
}

// Runs a test file's main(), stops every node, prints the outcome and
// exits with 0 or 1.
export async function run(main) {
	let code = 0;
	try {
		await main();
		if (failures) code = 1;
	} catch (e) {
		code = 1;
		if (!failures) console.log(`not ok - ${String(e.stack || e)}`);
	} finally {
		await stopCluster();
	}
	console.log(code ? `# FAILED (logs: tests/artifacts/browser-*.log)` : `# all ${stepNo} steps passed`);
	process.exit(code);
}
