import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';

/**
 * A client that compiles is part of the contract: the types are generated from openapi.yaml
 * with openapi-typescript, and docs/clients/example.ts (openapi-fetch: sign-up, consent, an
 * import upload, the event feed) must compile under --strict without a cast.
 */

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLIENTS = `${ROOT}docs/clients/`;
// The packages' own command-line entry points (their exports maps hide bin/).
const OPENAPI_TS = `${ROOT}node_modules/openapi-typescript/bin/cli.js`;
const TSC = `${ROOT}node_modules/typescript/bin/tsc`;

async function compile(project: string) {
  try {
    await run(process.execPath, [TSC, '-p', project], { cwd: ROOT });
    return { ok: true, output: '' };
  } catch (err) {
    const { stdout, stderr } = err as { stdout: string; stderr: string };
    return { ok: false, output: `${stdout}${stderr}` };
  }
}

t.before(async () => {
  // Writes docs/clients/generated/api.d.ts (the output is set in redocly.yaml).
  await run(process.execPath, [OPENAPI_TS], { cwd: ROOT });
});

t.test('the example client compiles against the generated types', async (t) => {
  const generated = await readFile(`${CLIENTS}generated/api.d.ts`, 'utf8');
  t.match(generated, /"application\/x-ndjson": string;/, 'the upload has a typed body');
  const result = await compile(`${CLIENTS}tsconfig.json`);
  t.ok(result.ok, result.output || 'tsc --strict: no errors');
  const tsconfig = JSON.parse(await readFile(`${CLIENTS}tsconfig.json`, 'utf8'));
  t.equal(tsconfig.compilerOptions.strict, true);
});

t.test('the example needs no cast', async (t) => {
  const source = await readFile(`${CLIENTS}example.ts`, 'utf8');
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  t.notMatch(code, /\bas\s+(?:unknown|any|never|[A-Z{[])/, 'no `as` cast');
  t.notMatch(code, /@ts-(?:ignore|expect-error|nocheck)/, 'no suppressed error');
  for (const call of ['/v1/auth/signup', '/v1/contacts/{id}/consents', '/v1/contact-imports']) {
    t.match(code, call, `calls ${call}`);
  }
  t.match(code, /switch \(event\.type\)/, 'narrows an event by its type');
  for (const type of [
    'contact.created',
    'contact.rectified',
    'contact.restricted',
    'contact.restriction_lifted',
    'contact.erased',
  ]) {
    t.match(code, `case '${type}':`, `narrows ${type}`);
  }
});

t.test('the check is not vacuous: a wrong call does not compile', async (t) => {
  const dir = `${CLIENTS}generated/`;
  await mkdir(dir, { recursive: true });
  await writeFile(
    `${dir}wrong.ts`,
    [
      "import createClient from 'openapi-fetch';",
      "import type { components, paths } from './api.js';",
      'const api = createClient<paths>({});',
      "export const upload = api.POST('/v1/contact-imports', { body: 42 });",
      "export function data(event: components['schemas']['Event']) {",
      '  return event.data.confirmation;',
      '}',
      "export function erased(event: components['schemas']['Event']) {",
      "  if (event.type === 'contact.erased') return event.data.changedFields;",
      "  if (event.type === 'contact.rectified') return event.data.dataSubjectRequestId;",
      "  if (event.type === 'contact.created') return event.data.purposeId;",
      "  if (event.type === 'contact.restricted') return event.data.source;",
      "  if (event.type === 'contact.restriction_lifted') return event.data.importId;",
      '  return null;',
      '}',
      '',
    ].join('\n'),
  );
  await writeFile(
    `${dir}tsconfig.json`,
    JSON.stringify({ extends: '../tsconfig.json', files: ['wrong.ts'] }),
  );
  const result = await compile(`${dir}tsconfig.json`);
  t.notOk(result.ok, 'tsc refuses it');
  t.match(result.output, /wrong\.ts\(4,/, 'a number is no upload');
  t.match(result.output, /wrong\.ts\(6,/, 'only a confirmation request has a confirmation');
  t.match(result.output, /wrong\.ts\(9,/, 'an erasure names no fields');
  t.match(result.output, /wrong\.ts\(10,/, 'a rectification has no request id');
  t.match(result.output, /wrong\.ts\(11,/, 'a creation has no purpose');
  t.match(result.output, /wrong\.ts\(12,/, 'a restriction has no source');
  t.match(result.output, /wrong\.ts\(13,/, 'a lifted restriction has no import id');
});
