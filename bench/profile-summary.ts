import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * Reads V8 `.cpuprofile` files (from `node --cpu-prof`, e.g. `npm run bench -- --profile`) and
 * tells where the busy time went: by package (self time, and time with the package anywhere
 * on the stack, which is what a hook or plugin really costs) and by function.
 *
 *   node --import tsx bench/profile-summary.ts <file-or-folder>...
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A span of the monotonic clock, in µs (`process.hrtime.bigint() / 1000n`, as V8 stamps). */
export interface TimeWindow {
  startUs: number;
  endUs: number;
}

export interface ProfileBreakdown {
  file: string;
  /** Sampled time not idle, in ms. */
  busyMs: number;
  /** Self time by package, in ms, largest first. */
  selfByPackage: [string, number][];
  /** Time with the package anywhere on the stack, in ms, largest first. */
  inclusiveByPackage: [string, number][];
  /** Self time by function (`name package:line`), in ms, largest first. */
  selfByFunction: [string, number][];
  /** Time with the function on the stack, for code outside Node itself, largest first. */
  inclusiveByFunction: [string, number][];
  /** Whether only the samples inside the requested window were counted. */
  windowed: boolean;
}

const SPECIAL = new Set(['(program)', '(garbage collector)', '(idle)', '(root)']);

/** `node_modules/@fastify/helmet/...` -> `@fastify/helmet`; our code -> `app:src`. */
function packageOf(frame: CallFrame): string {
  if (SPECIAL.has(frame.functionName)) return frame.functionName;
  const url = frame.url;
  if (!url) return '(native)';
  if (url.startsWith('node:')) return 'node:internal';
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (match) return match[1]!;
  const own = /\/(src|bench|dist\/src)\//.exec(url);
  return own ? `app:${own[1]}` : url;
}

function sortedEntries(map: Map<string, number>): [string, number][] {
  return [...map.entries()].sort((a, b) => b[1] - a[1]);
}

function add(map: Map<string, number>, key: string, value: number): void {
  map.set(key, (map.get(key) ?? 0) + value);
}

function functionKey(frame: CallFrame): string {
  const pkg = packageOf(frame);
  const where = frame.url ? `${pkg}:${frame.lineNumber + 1}` : pkg;
  return `${frame.functionName || '(anonymous)'} ${where}`;
}

/**
 * Breaks a profile down; with `window`, only the samples taken inside it count (so that
 * start-up, e.g. the embedded database's initdb and migrations, does not drown the load).
 * Several windows count the samples inside any of them (one scenario's measured runs).
 */
export function analyseProfile(
  file: string,
  window?: TimeWindow | readonly TimeWindow[],
): ProfileBreakdown {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const windows = (window === undefined ? [] : Array.isArray(window) ? window : [window]).filter(
    (w: TimeWindow) => w.startUs < profile.endTime && w.endUs > profile.startTime,
  ) as TimeWindow[];
  const windowed = windows.length > 0;
  const inside = (at: number) => windows.some((w) => at >= w.startUs && at <= w.endUs);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes)
    for (const child of node.children ?? []) parent.set(child, node.id);

  const selfByPackage = new Map<string, number>();
  const inclusiveByPackage = new Map<string, number>();
  const selfByFunction = new Map<string, number>();
  const inclusiveByFunction = new Map<string, number>();
  let busyUs = 0;
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (windowed && !inside(at)) return;
    const node = byId.get(id);
    if (!node || node.callFrame.functionName === '(idle)') return;
    busyUs += delta;
    add(selfByPackage, packageOf(node.callFrame), delta);
    add(selfByFunction, functionKey(node.callFrame), delta);
    const packages = new Set<string>();
    const functions = new Set<string>();
    for (let up: number | undefined = id; up !== undefined; up = parent.get(up)) {
      const frame = byId.get(up)?.callFrame;
      if (!frame || frame.functionName === '(root)') continue;
      const pkg = packageOf(frame);
      packages.add(pkg);
      if (pkg !== 'node:internal' && pkg !== '(native)') functions.add(functionKey(frame));
    }
    for (const p of packages) add(inclusiveByPackage, p, delta);
    for (const f of functions) add(inclusiveByFunction, f, delta);
  });
  const toMs = (entries: [string, number][]) =>
    entries.map(([k, us]) => [k, us / 1000] as [string, number]);
  return {
    file,
    busyMs: busyUs / 1000,
    selfByPackage: toMs(sortedEntries(selfByPackage)),
    inclusiveByPackage: toMs(sortedEntries(inclusiveByPackage)),
    selfByFunction: toMs(sortedEntries(selfByFunction)),
    inclusiveByFunction: toMs(sortedEntries(inclusiveByFunction)),
    windowed,
  };
}

/** A Markdown report of the top entries of each breakdown. */
export function formatBreakdown(b: ProfileBreakdown, top = 15): string {
  const table = (title: string, rows: [string, number][]) =>
    [
      `| ${title} | ms | % of busy |`,
      '| --- | ---: | ---: |',
      ...rows
        .slice(0, top)
        .map(([k, ms]) => `| ${k} | ${ms.toFixed(0)} | ${((100 * ms) / b.busyMs).toFixed(1)} |`),
    ].join('\n');
  return [
    `### ${b.file}`,
    `busy ${b.busyMs.toFixed(0)} ms${b.windowed ? ' while under load' : ' (whole run, start-up included)'}`,
    '',
    table('package (self)', b.selfByPackage),
    '',
    table('package (on stack)', b.inclusiveByPackage),
    '',
    table('function (self)', b.selfByFunction),
    '',
    table('function outside Node (on stack)', b.inclusiveByFunction),
    '',
  ].join('\n');
}

/** One scenario's share of a profile: its samples, and how many requests it served then. */
export interface ScenarioProfile {
  name: string;
  breakdown: ProfileBreakdown;
  requests: number;
}

/**
 * Two scenarios of the same profiled process side by side, in µs of CPU per request (self time):
 * by package and by function, sorted by how much more `scenario` spends than `baseline`. This
 * is where a route's extra cost per request goes, with the load and the profiler's overhead
 * alike on both sides.
 */
export function formatComparison(
  scenario: ScenarioProfile,
  baseline: ScenarioProfile,
  top = 20,
): string {
  const perRequest = (p: ScenarioProfile, rows: [string, number][]) =>
    new Map(rows.map(([k, ms]) => [k, (ms * 1000) / Math.max(1, p.requests)]));
  const table = (title: string, pick: (b: ProfileBreakdown) => [string, number][]) => {
    const a = perRequest(scenario, pick(scenario.breakdown));
    const b = perRequest(baseline, pick(baseline.breakdown));
    const keys = [...new Set([...a.keys(), ...b.keys()])];
    const rows = keys
      .map((k) => [k, a.get(k) ?? 0, b.get(k) ?? 0] as const)
      .sort((x, y) => y[1] - y[2] - (x[1] - x[2]))
      .slice(0, top);
    return [
      `| ${title} | ${scenario.name} µs/req | ${baseline.name} µs/req | difference |`,
      '| --- | ---: | ---: | ---: |',
      ...rows.map(
        ([k, x, y]) => `| ${k} | ${x.toFixed(0)} | ${y.toFixed(0)} | ${(x - y).toFixed(0)} |`,
      ),
    ].join('\n');
  };
  const busy = (p: ScenarioProfile) =>
    ((p.breakdown.busyMs * 1000) / Math.max(1, p.requests)).toFixed(0);
  return [
    `### ${scenario.name} against ${baseline.name}`,
    `busy per request (sampled): ${busy(scenario)} µs against ${busy(baseline)} µs ` +
      `(${scenario.requests} and ${baseline.requests} requests)`,
    '',
    table('package (self)', (b) => b.selfByPackage),
    '',
    table('function (self)', (b) => b.selfByFunction),
    '',
    table('function outside Node (on stack)', (b) => b.inclusiveByFunction),
    '',
  ].join('\n');
}

/** All `.cpuprofile` files under the given files or folders. */
export function profileFiles(paths: string[]): string[] {
  return paths.flatMap((p) => {
    const full = resolve(p);
    if (full.endsWith('.cpuprofile')) return [full];
    return readdirSync(full, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => join(full, f));
  });
}

const isMain = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  const files = profileFiles(process.argv.slice(2));
  if (files.length === 0) {
    process.stderr.write('usage: node --import tsx bench/profile-summary.ts <file-or-folder>...\n');
    process.exit(2);
  }
  for (const file of files) process.stdout.write(`${formatBreakdown(analyseProfile(file))}\n`);
}
