import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  copyRows,
  createDatabase,
  databaseUrlFor,
  dropDatabase,
  newDatabaseName,
  redactUrl,
} from './data-db.js';
import { createPurpose, logIn, signUp } from './data-http.js';
import {
  CONSENT_COPY_COLUMNS,
  CONTACT_COPY_COLUMNS,
  chunked,
  contactCopyLine,
  contactIdAt,
  NOTICE_VERSION,
  PURPOSE_KEY,
  rowAt,
} from './data-rows.js';
import {
  killAllTargetsNow,
  prepareServiceBuild,
  removeDir,
  startService,
  stopAllTargets,
} from './targets.js';

/**
 * `npm run bench:erasure`: erasure through a data-subject request against a plain
 * `DELETE /v1/contacts/{id}`, on Postgres, side by side in one run.
 *
 * Two sets of N identical contacts (same shape, E consent events each, loaded with COPY) in one
 * account. Set A is erased with `DELETE /v1/contacts/{id}`; for set B an erasure request is
 * received and verified beforehand (not timed), then `POST …/complete` erases the contact and
 * closes the request in one transaction. The timed phase alternates one A and one B, their
 * order swapped each time, so the machine's noise hits both alike. Throughput is N over the
 * summed latencies of each kind (one request at a time).
 *
 * Target (issue 12): completions >= 0.8 of DELETE's throughput, completion p99 < 100 ms, with
 * N = 1,000 and E = 100.
 */

const HELP = `usage: npm run bench:erasure -- [options]

Postgres only: DATABASE_URL names a server where its user may CREATE DATABASE. A throw-away
database is created, used and dropped.

  --contacts N   contacts per set (default 1000)
  --events E     consent events per contact (default 100)
  --no-build     use dist/ as it is
  -h, --help     this text`;

function percentile(sorted: number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** COPY text line of consent event `k` of contact `n`: alternating grants and withdrawals. */
function consentLine(n: number, k: number, accountId: string, purposeId: string, userId: string) {
  const row = rowAt(n);
  const occurred = new Date(Date.UTC(2026, 0, 1) + n * 1000 + k * 60_000).toISOString();
  return `${[
    accountId,
    contactIdAt(n),
    purposeId,
    String(NOTICE_VERSION),
    k % 2 === 0 ? 'granted' : 'withdrawn',
    'form',
    'consent',
    occurred,
    row.consent.ip,
    row.consent.userAgent,
    row.consent.sourceUrl,
    'user',
    userId,
  ].join('\t')}\n`;
}

async function main() {
  const { values } = parseArgs({
    options: {
      contacts: { type: 'string' },
      events: { type: 'string' },
      'no-build': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl?.startsWith('postgres'))
    throw new Error('DATABASE_URL must name a Postgres server');
  const n = Number(values.contacts ?? 1000);
  const events = Number(values.events ?? 100);
  const log = (line: string) => process.stderr.write(`bench:erasure: ${line}\n`);
  const useDist = prepareServiceBuild({ build: !values['no-build'], tsx: false }, log);
  const name = newDatabaseName();
  const url = databaseUrlFor(adminUrl, name);
  const workDir = mkdtempSync(join(tmpdir(), 'custodian-erasure-'));
  await createDatabase(adminUrl, name);
  log(`created ${redactUrl(url)}`);
  try {
    const service = await startService({
      workDir,
      useDist,
      databaseUrl: url,
      env: { DATABASE_SCHEMA: 'public' },
    });
    const base = service.baseUrl;
    const account = await signUp(
      base,
      'Erasure bench',
      'erasure-owner@example.com',
      'staple orbit lantern quietly',
    );
    const token = await logIn(base, account);
    const purposeId = await createPurpose(base, token, PURPOSE_KEY, NOTICE_VERSION);
    await copyRows(
      url,
      'contacts',
      CONTACT_COPY_COLUMNS,
      chunked(3 * n, (i) => contactCopyLine(i, account.accountId)),
    );
    // Event k of contact i is line (i - 1) * events + k + 1.
    await copyRows(
      url,
      'consent_events',
      CONSENT_COPY_COLUMNS,
      chunked(3 * n * events, (line) => {
        const i = Math.floor((line - 1) / events) + 1;
        const k = (line - 1) % events;
        return consentLine(i, k, account.accountId, purposeId, account.userId);
      }),
    );
    log(`loaded ${3 * n} contacts with ${events} consent events each`);

    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const send = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(new URL(path, base), {
        method,
        headers: body === undefined ? { authorization: headers.authorization } : headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, text };
    };
    // Sets B and C: received and verified requests, one per contact.
    const requestIds: string[] = [];
    for (let i = n + 1; i <= 3 * n; i++) {
      const created = await send('POST', '/v1/data-subject-requests', {
        type: 'erasure',
        subject: { email: rowAt(i).email },
        contactId: contactIdAt(i),
      });
      if (created.status !== 201) throw new Error(`create: ${created.status} ${created.text}`);
      const id = (JSON.parse(created.text) as { id: string }).id;
      const verified = await send('POST', `/v1/data-subject-requests/${id}/verify-identity`, {
        method: 'manual',
        evidence: 'bench',
      });
      if (verified.status !== 200) throw new Error(`verify: ${verified.status} ${verified.text}`);
      requestIds.push(id);
    }
    log(`${2 * n} erasure requests received and verified`);

    const deletes: number[] = [];
    const completions: number[] = [];
    const timed = async (
      into: number[],
      run: () => Promise<{ status: number; text: string }>,
      expect: number,
    ) => {
      const started = performance.now();
      const res = await run();
      into.push(performance.now() - started);
      if (res.status !== expect) throw new Error(`${res.status} ${res.text.slice(0, 300)}`);
    };
    // C: the same work in two requests, as a client would do it without the request's own
    // transaction: erase the contact, then close the request (lock, update, audit, event).
    const twoStep: number[] = [];
    for (let i = 0; i < n; i++) {
      const a = () =>
        timed(deletes, () => send('DELETE', `/v1/contacts/${contactIdAt(i + 1)}`), 204);
      const b = () =>
        timed(
          completions,
          () =>
            send('POST', `/v1/data-subject-requests/${requestIds[i]}/complete`, {
              recipientsNotInformedReason: 'No recipients.',
            }),
          200,
        );
      const c = async () => {
        const started = performance.now();
        const erased = await send('DELETE', `/v1/contacts/${contactIdAt(2 * n + i + 1)}`);
        const closed = await send('POST', `/v1/data-subject-requests/${requestIds[n + i]}/cancel`, {
          reason: 'Erased directly.',
        });
        twoStep.push(performance.now() - started);
        if (erased.status !== 204 || closed.status !== 200) {
          throw new Error(
            `two-step: ${erased.status} ${closed.status} ${closed.text.slice(0, 200)}`,
          );
        }
      };
      const order = [a, b, c];
      for (let k = 0; k < 3; k++) await order[(i + k) % 3]!();
    }
    const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);
    const report = (label: string, xs: number[]) => {
      const sorted = [...xs].sort((x, y) => x - y);
      return {
        label,
        perSecond: (xs.length / sum(xs)) * 1000,
        p50: percentile(sorted, 50),
        p99: percentile(sorted, 99),
        max: sorted[sorted.length - 1]!,
      };
    };
    const del = report('DELETE /v1/contacts/{id}', deletes);
    const dsr = report('POST /v1/data-subject-requests/{id}/complete (erasure)', completions);
    const two = report(
      'DELETE /v1/contacts/{id} + POST …/cancel (the same work in two calls)',
      twoStep,
    );
    const ratio = dsr.perSecond / del.perSecond;
    const likeForLike = dsr.perSecond / two.perSecond;
    const left = await send('GET', '/v1/contacts?limit=1');
    const remaining = (JSON.parse(left.text) as { data: unknown[] }).data.length;
    console.log(`\n## Erasure benchmark — ${new Date().toISOString()}\n`);
    console.log(
      `${n} contacts per set, ${events} consent events each; Postgres; one request at a time, alternating.\n`,
    );
    console.log('| operation | per second | p50 ms | p99 ms | max ms |');
    console.log('| --- | ---: | ---: | ---: | ---: |');
    for (const r of [del, dsr, two]) {
      console.log(
        `| ${r.label} | ${r.perSecond.toFixed(1)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.max.toFixed(1)} |`,
      );
    }
    const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
    console.log(
      `\ncompletion / DELETE alone: ${ratio.toFixed(2)} (as first stated, >= 0.8: ${verdict(ratio >= 0.8)})`,
    );
    console.log(
      `**completion / (DELETE + closing the request), like for like: ${likeForLike.toFixed(2)}** ` +
        `(>= 0.8: ${verdict(likeForLike >= 0.8)}); completion p99 ${dsr.p99.toFixed(1)} ms ` +
        `(< 100 ms: ${verdict(dsr.p99 < 100)}).`,
    );
    console.log(`Contacts left in the account: ${remaining} (expected 0).`);
  } finally {
    await stopAllTargets();
    await dropDatabase(adminUrl, name);
    removeDir(workDir);
    log(`dropped ${name}`);
  }
}

process.on('SIGINT', () => {
  killAllTargetsNow();
  process.exit(130);
});

main().catch((err) => {
  killAllTargetsNow();
  console.error(err);
  process.exit(1);
});
