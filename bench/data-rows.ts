import { createHash } from 'node:crypto';

/**
 * The rows of the data benchmark, generated from their number alone: row `n` is the same in
 * every run and in every format (the NDJSON the import endpoint reads, and the COPY text of the
 * baseline), and nothing is ever held in memory beyond one chunk. Fake data only: addresses at
 * example.com (RFC 2606), IPs from TEST-NET-1 192.0.2.0/24 (RFC 5737), URLs on example.com.
 */

export const PURPOSE_KEY = 'newsletter';
export const NOTICE_VERSION = 1;
export const CONSENT_METHOD = 'form';
export const USER_AGENT = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';

const LANGUAGES = ['en', 'de', 'sl', 'fr', 'it'] as const;
/** Consents granted one second apart from 2025-01-01, so always in the past. */
const GRANTED_FROM_MS = Date.UTC(2025, 0, 1);

export interface BenchRow {
  email: string;
  firstName: string;
  lastName: string;
  language: string;
  attributes: { cohort: number };
  consent: {
    purpose: string;
    noticeVersion: number;
    method: string;
    grantedAt: string;
    ip: string;
    userAgent: string;
    sourceUrl: string;
  };
}

/** Row `n` (1-based). Already in the form the service stores (lower-case address, ISO time). */
export function rowAt(n: number): BenchRow {
  return {
    email: `user${n}@example.com`,
    firstName: `First${n}`,
    lastName: `Last${n}`,
    language: LANGUAGES[n % LANGUAGES.length]!,
    attributes: { cohort: n % 12 },
    consent: {
      purpose: PURPOSE_KEY,
      noticeVersion: NOTICE_VERSION,
      method: CONSENT_METHOD,
      grantedAt: new Date(GRANTED_FROM_MS + n * 1000).toISOString(),
      ip: `192.0.2.${(n % 254) + 1}`,
      userAgent: USER_AGENT,
      sourceUrl: `https://example.com/newsletter/signup?campaign=${n % 50}`,
    },
  };
}

/** One NDJSON line of the import body. */
export function ndjsonLine(n: number): string {
  return `${JSON.stringify(rowAt(n))}\n`;
}

/** The creation time the COPY baseline gives row 0; row `n` is made `n / 10` ms later. */
const COPY_EPOCH_MS = Date.UTC(2026, 0, 1);

/**
 * A contact id for row `n` of the COPY baseline, shaped as the service makes them (UUIDv7:
 * 48 bits of milliseconds, then random bits, so primary-key inserts land in the same order)
 * but reproducible, so the consent events copied after the contacts can point at them. Ten
 * rows share a millisecond, about the rate an import makes them.
 */
export function contactIdAt(n: number): string {
  const time = (COPY_EPOCH_MS + Math.floor(n / 10)).toString(16).padStart(12, '0');
  const h = createHash('md5').update(`bench-contact-${n}`).digest('hex');
  const variant = ((Number.parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** COPY text format: backslash, tab, newline and carriage return are escaped. */
function copyValue(value: string | number | null): string {
  if (value === null) return '\\N';
  return String(value).replace(/[\\\t\n\r]/g, (c) =>
    c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r',
  );
}

function copyLine(values: (string | number | null)[]): string {
  return `${values.map(copyValue).join('\t')}\n`;
}

/** Columns of {@link contactCopyLine}: those the import's upsert writes, plus the id. */
export const CONTACT_COPY_COLUMNS = [
  'account_id',
  'id',
  'email',
  'first_name',
  'last_name',
  'language',
  'attributes',
] as const;

export function contactCopyLine(n: number, accountId: string): string {
  const row = rowAt(n);
  return copyLine([
    accountId,
    contactIdAt(n),
    row.email,
    row.firstName,
    row.lastName,
    row.language,
    JSON.stringify(row.attributes),
  ]);
}

/** Columns of {@link consentCopyLine}: those the import's consent append writes. */
export const CONSENT_COPY_COLUMNS = [
  'account_id',
  'contact_id',
  'purpose_id',
  'notice_version',
  'event',
  'method',
  'legal_basis',
  'occurred_at',
  'ip',
  'user_agent',
  'source_url',
  'actor_type',
  'actor_id',
] as const;

export function consentCopyLine(
  n: number,
  accountId: string,
  purposeId: string,
  actorUserId: string,
): string {
  const { consent } = rowAt(n);
  return copyLine([
    accountId,
    contactIdAt(n),
    purposeId,
    consent.noticeVersion,
    'granted',
    consent.method,
    'consent',
    consent.grantedAt,
    consent.ip,
    consent.userAgent,
    consent.sourceUrl,
    'user',
    actorUserId,
  ]);
}

/**
 * Rows 1..count rendered by `line`, in chunks of about `chunkBytes`: a lazy iterable, so a
 * stream reading it pulls one chunk at a time and memory stays flat whatever the count.
 */
export function* chunked(
  count: number,
  line: (n: number) => string,
  chunkBytes = 64 * 1024,
): Generator<Buffer> {
  let parts: string[] = [];
  let size = 0;
  for (let n = 1; n <= count; n++) {
    const text = line(n);
    parts.push(text);
    size += text.length;
    if (size >= chunkBytes) {
      yield Buffer.from(parts.join(''));
      parts = [];
      size = 0;
    }
  }
  if (parts.length > 0) yield Buffer.from(parts.join(''));
}
