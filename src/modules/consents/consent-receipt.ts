import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { AccountRow, ConsentEventRow, NoticeVersionRow, PurposeRow } from '../../db/schema.js';
import { Id, Timestamp, toIso } from '../../http/schemas.js';
import { NoticeVersionNumber } from '../purposes/purposes.schemas.js';
import {
  type ConsentState,
  deriveState,
  type RankedConsentEventRow,
} from './consents.repository.js';
import {
  CONSENT_METHODS,
  type ConsentMethod,
  ConsentStateSchema,
  LEGAL_BASES,
} from './consents.schemas.js';

/**
 * A consent receipt after the Kantara Initiative Consent Receipt Specification v1.1 and the
 * consent record of ISO/IEC 27560: what a controller hands a person (or an auditor) as proof
 * of what was agreed, to which text, when and how, and how to take it back.
 */

export const RECEIPT_VERSION = 'KI-CR-v1.1.0';
const TERMINATION =
  'Withdraw at any time with the withdrawal link sent with the consent, or ask the ' +
  'controller, who records the withdrawal through the API.';

export const ReceiptPurposeSchema = z.object({
  purposeId: Id,
  purposeKey: z.string(),
  purpose: z.string().describe('The purpose’s name.'),
  purposeCategory: z.array(z.string()),
  consentType: z.literal('EXPLICIT'),
  legalBasis: z.enum(LEGAL_BASES).nullable(),
  state: ConsentStateSchema,
  method: z.enum(CONSENT_METHODS).nullable().describe('How the last grant was collected.'),
  noticeVersion: NoticeVersionNumber.nullable().describe('The notice of the last grant.'),
  noticeTextSha256: z.string().nullable(),
  grantedAt: Timestamp.nullable(),
  confirmedAt: Timestamp.nullable().describe('Double opt-in: when the person confirmed.'),
  withdrawnAt: Timestamp.nullable().describe('Set while the consent is withdrawn.'),
  termination: z.string(),
});

export const ConsentReceiptSchema = z
  .object({
    version: z.literal(RECEIPT_VERSION),
    jurisdiction: z.literal('EU'),
    consentTimestamp: Timestamp.nullable().describe(
      'When the newest consent event of the receipt occurred (null without any).',
    ),
    collectionMethod: z.enum(CONSENT_METHODS).nullable(),
    consentReceiptID: z.uuid(),
    language: z.string(),
    piiPrincipalId: Id.describe('The contact id; never the email address.'),
    piiControllers: z.array(
      z.object({
        piiController: z.string(),
        contact: z.string().nullable().describe('The data protection officer.'),
        email: z.string().nullable(),
        phone: z.string().nullable(),
      }),
    ),
    services: z.array(z.object({ service: z.string(), purposes: z.array(ReceiptPurposeSchema) })),
    sensitive: z.literal(false),
    spiCat: z.array(z.string()),
  })
  .meta({
    id: 'ConsentReceipt',
    description:
      'Fields after the Kantara Consent Receipt v1.1 / ISO/IEC 27560. Timestamps are ISO-8601 ' +
      'like everywhere in this API; `policyUrl` and `publicKey` are omitted.',
    example: {
      version: RECEIPT_VERSION,
      jurisdiction: 'EU',
      consentTimestamp: '2026-11-20T16:10:00.000Z',
      collectionMethod: 'double_opt_in',
      consentReceiptID: '7b6a5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d',
      language: 'en',
      piiPrincipalId: '3c2b1a09-f8e7-4d6c-9b4a-39281706f5e4',
      piiControllers: [
        {
          piiController: 'Example Shop d.o.o.',
          contact: 'Privacy Officer',
          email: 'dpo@example.com',
          phone: '+386 1 000 0000',
        },
      ],
      services: [
        {
          service: 'Email communication',
          purposes: [
            {
              purposeId: '5a7d3c2b-1e0f-4a9b-8c7d-6e5f4a3b2c1d',
              purposeKey: 'newsletter',
              purpose: 'Monthly newsletter',
              purposeCategory: ['Marketing'],
              consentType: 'EXPLICIT',
              legalBasis: 'consent',
              state: 'granted',
              method: 'double_opt_in',
              noticeVersion: 2,
              noticeTextSha256: '5ed6c08b8fe71c7a0f8e699b8dfd0f6b0a335b5f209d478d059c939fffba09fa',
              grantedAt: '2026-11-20T16:00:00.000Z',
              confirmedAt: '2026-11-20T16:10:00.000Z',
              withdrawnAt: null,
              termination: TERMINATION,
            },
          ],
        },
      ],
      sensitive: false,
      spiCat: [],
    },
  });

export type ConsentReceipt = z.infer<typeof ConsentReceiptSchema>;

/** The ledger's order: `recorded_at` (to the microsecond), then `id`. */
function newer(a: RankedConsentEventRow, b: RankedConsentEventRow): boolean {
  const diff = BigInt(a.recorded_us) - BigInt(b.recorded_us);
  return diff !== 0n ? diff > 0n : a.id > b.id;
}

export interface ReceiptInput {
  account: Pick<AccountRow, 'name' | 'dpo_name' | 'dpo_email' | 'dpo_phone'>;
  contact: { id: string; language: string | null };
  purposes: Map<string, Pick<PurposeRow, 'id' | 'key' | 'name' | 'category'>>;
  /** Newest event of each kind per purpose. */
  newestByKind: RankedConsentEventRow[];
  /** The notice versions the grants refer to, by `purposeId:version`. */
  notices: Map<string, Pick<NoticeVersionRow, 'text_sha256' | 'language'>>;
}

/** Builds the receipt from the ledger (the newest event of each kind per purpose). */
export function buildConsentReceipt(input: ReceiptInput): ConsentReceipt {
  const byPurpose = new Map<
    string,
    Partial<Record<ConsentEventRow['event'], RankedConsentEventRow>>
  >();
  for (const row of input.newestByKind) {
    const kinds = byPurpose.get(row.purpose_id) ?? {};
    kinds[row.event] = row;
    byPurpose.set(row.purpose_id, kinds);
  }

  let newestEvent: RankedConsentEventRow | undefined;
  let newestGrant: RankedConsentEventRow | undefined;
  const purposes: z.infer<typeof ReceiptPurposeSchema>[] = [];
  for (const [purposeId, kinds] of byPurpose) {
    const purpose = input.purposes.get(purposeId);
    if (!purpose) continue;
    const events = Object.values(kinds);
    const current = events.reduce((a, b) => (newer(b, a) ? b : a));
    const state: ConsentState = deriveState(current.event, current.method);
    const grant = kinds.granted;
    const confirmation =
      grant && kinds.confirmed && newer(kinds.confirmed, grant) ? kinds.confirmed : undefined;
    const notice =
      grant?.notice_version != null
        ? input.notices.get(`${purposeId}:${grant.notice_version}`)
        : undefined;
    if (!newestEvent || newer(current, newestEvent)) newestEvent = current;
    if (grant && (!newestGrant || newer(grant, newestGrant))) newestGrant = grant;
    purposes.push({
      purposeId,
      purposeKey: purpose.key,
      purpose: purpose.name,
      purposeCategory: [purpose.category],
      consentType: 'EXPLICIT',
      legalBasis: (grant?.legal_basis as (typeof LEGAL_BASES)[number] | undefined) ?? null,
      state,
      method: (grant?.method as ConsentMethod | undefined) ?? null,
      noticeVersion: grant?.notice_version ?? null,
      noticeTextSha256: notice?.text_sha256 ?? null,
      grantedAt: grant ? toIso(grant.occurred_at) : null,
      confirmedAt: confirmation ? toIso(confirmation.occurred_at) : null,
      withdrawnAt: state === 'withdrawn' ? toIso(current.occurred_at) : null,
      termination: TERMINATION,
    });
  }
  purposes.sort((a, b) => a.purposeKey.localeCompare(b.purposeKey));

  const grantNotice =
    newestGrant?.notice_version != null
      ? input.notices.get(`${newestGrant.purpose_id}:${newestGrant.notice_version}`)
      : undefined;
  return {
    version: RECEIPT_VERSION,
    jurisdiction: 'EU',
    consentTimestamp: newestEvent ? toIso(newestEvent.occurred_at) : null,
    collectionMethod: (newestGrant?.method as ConsentMethod | undefined) ?? null,
    consentReceiptID: randomUUID(),
    language: grantNotice?.language ?? input.contact.language ?? 'en',
    piiPrincipalId: input.contact.id,
    piiControllers: [
      {
        piiController: input.account.name,
        contact: input.account.dpo_name,
        email: input.account.dpo_email,
        phone: input.account.dpo_phone,
      },
    ],
    services: [{ service: 'Email communication', purposes }],
    sensitive: false,
    spiCat: [],
  };
}
