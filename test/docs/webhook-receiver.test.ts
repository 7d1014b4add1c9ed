import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { TestClock } from '../../src/lib/clock.js';
import { build } from '../helper.js';
import {
  consentingWorld,
  createWebhook,
  deliveries,
  WEBHOOK_ENV,
  worker,
} from '../modules/webhooks-fixtures.js';

/**
 * The README's webhook receiver, run as written: the worker's messages pass its check, once
 * each even when sent twice, and a message it cannot verify is refused.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

t.test('the README’s receiver verifies and deduplicates what the worker sends', async (t) => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Webhooks'));
  const code = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  t.ok(code, 'the README has a receiver');
  // Inside the project, so that `standardwebhooks` resolves from its node_modules.
  const dir = join(ROOT, 'node_modules', '.cache', `webhook-receiver-${process.pid}`);
  await mkdir(dir, { recursive: true });
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'receiver.mjs');
  await writeFile(file, code!);

  const clock = new TestClock(new Date());
  const app = await build(t, { env: WEBHOOK_ENV, clock });
  const world = await consentingWorld(app);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const webhook = await createWebhook(app, world.owner, url);

  let stdout = '';
  const child: ChildProcess = spawn(process.execPath, [file], {
    env: { ...process.env, WEBHOOK_SECRET: webhook.secret, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  t.teardown(() => {
    child.kill();
  });
  for (let i = 0; i < 100; i++) {
    const up = await fetch(url, { method: 'POST', body: '{}' }).catch(() => undefined);
    if (up) {
      t.equal(up.status, 400, 'an unsigned message is refused');
      break;
    }
    await sleep(50);
  }

  const contactId = await world.grant();
  const w = worker(app.database.owner, clock);
  await w.tick();
  const [delivery] = await deliveries(app, world.owner, webhook.id);
  t.match(delivery, { status: 'delivered', lastAttempt: { statusCode: 204 } });
  const replay = await app.inject({
    method: 'POST',
    url: `/v1/webhooks/${webhook.id}/deliveries/${delivery!.id}/redelivery`,
    headers: world.headers,
  });
  t.equal(replay.statusCode, 202);
  await w.tick();
  const [again] = await deliveries(app, world.owner, webhook.id);
  t.match(again, { status: 'delivered', attempts: 2 }, 'the copy is accepted too');
  const lines = stdout.trim().split('\n');
  t.equal(lines.length, 1, `handled once: ${stdout}`);
  t.match(lines[0], new RegExp(`^\\d+ consent\\.granted \\{.*"contactId":"${contactId}"`));

  // Signed with another secret: refused.
  const forged = await fetch(url, {
    method: 'POST',
    headers: {
      'webhook-id': 'msg_forged',
      'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
      'webhook-signature': 'v1,bm90IGEgc2lnbmF0dXJl',
    },
    body: '{"type":"consent.withdrawn"}',
  });
  t.equal(forged.status, 400, 'a forged message is refused');
  t.equal(stdout.trim().split('\n').length, 1, 'and not handled');
});
