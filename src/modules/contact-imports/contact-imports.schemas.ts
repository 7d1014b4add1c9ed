import { z } from 'zod';
import type { ContactImportErrorRow, ContactImportRow } from '../../db/schema.js';
import { IdempotencyKey, PageQuery, pageOf, Timestamp, toIso } from '../../http/schemas.js';
import { CSV_COLUMN_NAMES } from './parser/csv.js';
import { ImportRowSchema } from './parser/row-schema.js';

/**
 * One import row as the contract shows it: the parser's own schema (its request side), so the
 * document cannot drift from what is checked.
 */
export const ContactImportRowSchema = ImportRowSchema.meta({
  id: 'ContactImportRow',
  description:
    'One row of a contact import: a line of an NDJSON upload, or a CSV record with the ' +
    'columns mapped onto these fields. Without `consent`, the row is refused ' +
    '(`consent_missing`) unless the import creates it pending a double opt-in.',
  example: {
    email: 'jane.doe@example.com',
    firstName: 'Jane',
    language: 'en',
    attributes: { plan: 'gold' },
    consent: {
      purpose: 'newsletter',
      noticeVersion: 1,
      method: 'form',
      grantedAt: '2026-11-20T16:00:00.000Z',
      ip: '203.0.113.7',
      sourceUrl: 'https://shop.example.com/newsletter',
    },
  },
});

/**
 * The upload's two media types, for the contract only: the handler reads the body as a stream
 * and parses it itself. The NDJSON lines are `ContactImportRow` objects (`contentSchema`).
 */
export const StartImportBody = {
  'application/x-ndjson': z.string().meta({
    description: 'NDJSON: one `ContactImportRow` object per line, UTF-8, lines separated by `\\n`.',
    contentMediaType: 'application/x-ndjson',
    contentSchema: { $ref: '#/components/schemas/ContactImportRowInput' },
    example:
      '{"email":"jane.doe@example.com","consent":{"purpose":"newsletter","noticeVersion":1,' +
      '"method":"form","grantedAt":"2026-11-20T16:00:00.000Z"}}\n',
  }),
  'text/csv': z.string().meta({
    description:
      `CSV (RFC 4180, comma-separated), UTF-8: a header row naming columns among ` +
      `${CSV_COLUMN_NAMES.map((name) => `\`${name}\``).join(', ')}, then one record per ` +
      'contact. `consent_*` columns fill `consent`, `attributes` holds a JSON object.',
    contentMediaType: 'text/csv',
    example:
      'email,first_name,consent_purpose,consent_notice_version,consent_method,consent_granted_at\n' +
      'jane.doe@example.com,Jane,newsletter,1,form,2026-11-20T16:00:00.000Z\n',
  }),
};

export const StartImportQuery = z.object({
  format: z
    .enum(['ndjson', 'csv'])
    .optional()
    .describe(
      'The body format; defaults from the Content-Type (text/csv or application/x-ndjson).',
    ),
  missingConsent: z
    .enum(['reject', 'pending_double_opt_in'])
    .default('reject')
    .describe(
      'Rows without consent evidence: `reject` them (row error `consent_missing`), or create ' +
        'them pending a double opt-in for `purpose`.',
    ),
  purpose: z
    .string()
    .max(64)
    .optional()
    .describe(
      'Purpose key of the double opt-in for rows without consent (required with pending_double_opt_in).',
    ),
  noticeVersion: z.coerce
    .number()
    .int()
    .positive()
    .max(2_147_483_647)
    .optional()
    .describe('Notice version shown in the double opt-in request, for rows without consent.'),
});

export const ImportStatus = z
  .enum(['running', 'interrupted', 'completed', 'failed'])
  .describe(
    '`running`: a process is working on it (it renews a lease). `interrupted`: its process ' +
      'died (the lease ran out); the committed batches stay, and a retry with the same ' +
      'Idempotency-Key resumes after `lastRow`. `completed`, `failed`: finished.',
  );

export const StartImportHeaders = z.looseObject({
  'idempotency-key': IdempotencyKey.optional().describe(
    'Makes the upload safe to retry. The same key with the same file answers the finished ' +
      'import again (`Idempotent-Replayed: true`); while it still runs, 409 ' +
      '`idempotency_key_in_progress`; once it is `interrupted` or `failed`, the retry takes ' +
      'the job over and resumes after its last committed row. Another file or other ' +
      'parameters with the same key: 422 `idempotency_key_reused`.',
  ),
});

export const ListImportsQuery = PageQuery.extend({
  status: ImportStatus.optional().describe('Only imports in this status.'),
});

const ErrorCounts = z.object({
  errorCount: z.number().int().describe('Row errors found so far (a row can have several).'),
  storedErrorCount: z
    .number()
    .int()
    .describe(
      'Row errors stored for the errors endpoint: the first IMPORT_MAX_STORED_ERRORS of them.',
    ),
  errorsTruncated: z
    .boolean()
    .describe('True when more errors were found than stored (only the first ones are listed).'),
});

export const ContactImportSchema = z
  .object({
    id: z.uuid(),
    status: ImportStatus,
    format: z.enum(['ndjson', 'csv']),
    missingConsent: z.enum(['reject', 'pending_double_opt_in']),
    counts: z.object({
      total: z
        .number()
        .int()
        .nullable()
        .describe('Rows in the file; null until the whole file was read.'),
      processed: z.number().int().describe('Rows written (in whole batches) so far.'),
      created: z.number().int(),
      updated: z.number().int().describe('Rows that matched an existing contact (or a row above).'),
      rejected: z.number().int().describe('Rows with errors; see the errors endpoint.'),
    }),
    lastRow: z.number().int().describe('Line of the last row of the last committed batch.'),
    attempts: z
      .number()
      .int()
      .describe('Uploads that worked on this import (more than 1 after a resumed retry).'),
    contentSha256: z
      .string()
      .nullable()
      .describe(
        'SHA-256 of the body as received (hex), once read to the end. For a resumed import, ' +
          'of the whole body of the upload that finished it: that upload had to begin with ' +
          'the very bytes the earlier attempts committed (checked by SHA-256 before it wrote ' +
          'anything), so this is the file the job imported.',
      ),
    ...ErrorCounts.shape,
    error: z
      .object({ code: z.string(), line: z.number().int().nullable() })
      .nullable()
      .describe(
        'Why a failed import stopped: a file-format code (with its line), `too_many_errors`, ' +
          '`payload_too_large`, `too_slow` or `internal_error`.',
      ),
    createdAt: Timestamp,
    finishedAt: Timestamp.nullable(),
  })
  .meta({
    id: 'ContactImport',
    description: 'A bulk contact import job and its progress.',
    example: {
      id: '6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f',
      status: 'completed',
      format: 'ndjson',
      missingConsent: 'reject',
      counts: { total: 3, processed: 3, created: 2, updated: 0, rejected: 1 },
      lastRow: 3,
      attempts: 1,
      contentSha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      errorCount: 1,
      storedErrorCount: 1,
      errorsTruncated: false,
      error: null,
      createdAt: '2026-11-25T17:00:00.000Z',
      finishedAt: '2026-11-25T17:00:02.000Z',
    },
  });

export const ContactImportErrorSchema = z
  .object({
    row: z.number().int().describe('1-based line of the file where the row starts.'),
    field: z.string().nullable().describe('The field (CSV column) at fault; null for the row.'),
    code: z
      .string()
      .describe('Stable code, e.g. `invalid_email`, `consent_missing`, `suppressed`.'),
    message: z.string().describe('Our own description; never quotes the value.'),
  })
  .meta({
    id: 'ContactImportError',
    example: {
      row: 2,
      field: 'email',
      code: 'invalid_email',
      message: 'is not a valid email address',
    },
  });

export const ListImportErrorsQuery = PageQuery;

export const ContactImportErrorsPage = pageOf(ContactImportErrorSchema).extend(ErrorCounts.shape);

export function errorCountsOf(row: ContactImportRow): z.input<typeof ErrorCounts> {
  const errorCount = Number(row.error_count);
  return {
    errorCount,
    storedErrorCount: row.stored_error_count,
    errorsTruncated: errorCount > row.stored_error_count,
  };
}

export function toContactImport(row: ContactImportRow): z.input<typeof ContactImportSchema> {
  return {
    id: row.id,
    status: row.status,
    format: row.format,
    missingConsent: row.missing_consent,
    counts: {
      total: row.total_rows,
      processed: row.processed_rows,
      created: row.created_count,
      updated: row.updated_count,
      rejected: row.rejected_count,
    },
    lastRow: row.last_row,
    attempts: row.attempts,
    contentSha256: row.content_sha256,
    ...errorCountsOf(row),
    error: row.error_code ? { code: row.error_code, line: row.error_line } : null,
    createdAt: toIso(row.created_at),
    finishedAt: toIso(row.finished_at),
  };
}

export function toContactImportError(
  row: ContactImportErrorRow,
): z.input<typeof ContactImportErrorSchema> {
  return { row: row.row_number, field: row.field, code: row.code, message: row.message };
}
