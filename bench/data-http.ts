import { request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { cursors } from '../src/db/keyset.js';

/**
 * The HTTP side of the data benchmark: the calls a customer makes (sign up, log in, create a
 * purpose and its notice, import, read the audience), against the real service.
 */

export interface Account {
  accountId: string;
  userId: string;
  email: string;
  password: string;
}

async function call<T>(
  baseUrl: string,
  method: string,
  path: string,
  options: { token?: string; body?: unknown; expect: number },
): Promise<T> {
  const response = await fetch(new URL(path, baseUrl), {
    method,
    headers: {
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  const text = await response.text();
  if (response.status !== options.expect) {
    throw new Error(
      `${method} ${path} answered ${response.status}, expected ${options.expect}: ${text.slice(0, 500)}`,
    );
  }
  return JSON.parse(text) as T;
}

/**
 * Signs up an account and its owner. The password is a passphrase that shares nothing with the
 * account name or the address (the policy refuses those).
 */
export async function signUp(
  baseUrl: string,
  accountName: string,
  email: string,
  password: string,
): Promise<Account> {
  const body = await call<{ account: { id: string }; user: { id: string } }>(
    baseUrl,
    'POST',
    '/v1/auth/signup',
    { body: { name: accountName, email, password }, expect: 201 },
  );
  return { accountId: body.account.id, userId: body.user.id, email, password };
}

export async function logIn(baseUrl: string, account: Account): Promise<string> {
  const body = await call<{ accessToken: string }>(baseUrl, 'POST', '/v1/auth/login', {
    body: { email: account.email, password: account.password },
    expect: 200,
  });
  return body.accessToken;
}

/** Creates a purpose and its first notice version; returns the purpose id. */
export async function createPurpose(
  baseUrl: string,
  token: string,
  key: string,
  noticeVersion: number,
): Promise<string> {
  const purpose = await call<{ id: string }>(baseUrl, 'POST', '/v1/purposes', {
    token,
    body: { key, name: 'Monthly newsletter' },
    expect: 201,
  });
  const notice = await call<{ version: number }>(
    baseUrl,
    'POST',
    `/v1/purposes/${purpose.id}/notices`,
    {
      token,
      body: {
        text: 'We send you our newsletter once a month. Unsubscribe at any time.',
        language: 'en',
      },
      expect: 201,
    },
  );
  if (notice.version !== noticeVersion) {
    throw new Error(`the notice got version ${notice.version}, expected ${noticeVersion}`);
  }
  return purpose.id;
}

export interface ImportJob {
  id: string;
  status: string;
  counts: {
    total: number | null;
    processed: number;
    created: number;
    updated: number;
    rejected: number;
  };
}

export interface ImportResult {
  status: number;
  /** From the first byte sent to the last byte of the response. */
  ms: number;
  bytesSent: number;
  job?: ImportJob;
  text: string;
}

/**
 * `POST /v1/contact-imports` with the body streamed from `chunks` (chunked transfer encoding,
 * written as fast as the server reads it: the request's backpressure paces the generator).
 * node:http rather than fetch, whose client times out a response that takes minutes to start.
 */
export function streamImport(
  baseUrl: string,
  token: string,
  chunks: Iterable<Buffer>,
  idempotencyKey: string,
): Promise<ImportResult> {
  const url = new URL('/v1/contact-imports?format=ndjson', baseUrl);
  let bytesSent = 0;
  const counted = Readable.from(
    (function* () {
      for (const chunk of chunks) {
        bytesSent += chunk.length;
        yield chunk;
      }
    })(),
  );
  return new Promise<ImportResult>((resolve, reject) => {
    const started = performance.now();
    let responded = false;
    const req = request(url, {
      method: 'POST',
      agent: false,
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/x-ndjson',
        'idempotency-key': idempotencyKey,
      },
    });
    req.on('response', (res) => {
      responded = true;
      const parts: Buffer[] = [];
      res.on('data', (part: Buffer) => parts.push(part));
      res.on('error', reject);
      res.on('end', () => {
        const ms = performance.now() - started;
        const text = Buffer.concat(parts).toString('utf8');
        let job: ImportJob | undefined;
        if (res.statusCode === 201) job = JSON.parse(text) as ImportJob;
        resolve({ status: res.statusCode ?? 0, ms, bytesSent, text, ...(job ? { job } : {}) });
      });
    });
    req.on('error', (err) => {
      if (!responded) reject(err);
    });
    // When the server answers early (an error) and closes, the upload fails: the response
    // above is what matters then.
    pipeline(counted, req).catch((err: unknown) => {
      setTimeout(() => {
        if (!responded) reject(err);
      }, 2_000);
    });
  });
}

/** The account's running import, if any (for progress lines while the upload streams). */
export async function runningImport(
  baseUrl: string,
  token: string,
): Promise<ImportJob | undefined> {
  try {
    const response = await fetch(new URL('/v1/contact-imports?status=running&limit=1', baseUrl), {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(5_000),
    });
    if (response.status !== 200) {
      await response.arrayBuffer();
      return undefined;
    }
    const body = (await response.json()) as { data: ImportJob[] };
    return body.data[0];
  } catch {
    return undefined;
  }
}

export interface AudiencePage {
  ms: number;
  rows: number;
  /** The cursor this page was read with (null for the first page). */
  cursor: string | null;
  /** The contact id the page started after (decoded from the cursor), for EXPLAIN. */
  afterContactId: string | null;
}

export interface AudienceWalk {
  pages: AudiencePage[];
  rows: number;
  complete: boolean;
}

/**
 * Walks `GET /v1/purposes/{id}/audience?limit=…` page after page with its cursor, timing each
 * request as the client sees it (request sent to body received; the JSON is parsed after).
 */
export async function walkAudience(
  baseUrl: string,
  token: string,
  purposeId: string,
  options: { limit: number; maxPages: number; onPage?: (page: AudiencePage, n: number) => void },
): Promise<AudienceWalk> {
  const pages: AudiencePage[] = [];
  let cursor: string | null = null;
  let rows = 0;
  while (pages.length < options.maxPages) {
    const query = new URLSearchParams({ limit: String(options.limit) });
    if (cursor) query.set('cursor', cursor);
    const url = new URL(`/v1/purposes/${purposeId}/audience?${query}`, baseUrl);
    const started = performance.now();
    const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    const text = await response.text();
    const ms = performance.now() - started;
    if (response.status !== 200) {
      throw new Error(
        `audience page ${pages.length + 1}: ${response.status} ${text.slice(0, 300)}`,
      );
    }
    const body = JSON.parse(text) as { data: { contactId: string }[]; nextCursor: string | null };
    const page: AudiencePage = {
      ms,
      rows: body.data.length,
      cursor,
      afterContactId: cursor ? (cursors.contactId.decode(cursor)?.[0] ?? null) : null,
    };
    pages.push(page);
    options.onPage?.(page, pages.length);
    rows += body.data.length;
    cursor = body.nextCursor;
    if (!cursor) return { pages, rows, complete: true };
  }
  return { pages, rows, complete: false };
}
