/**
 * A typed client of the Custodian API, as a partner would write one: the types come from
 * openapi.yaml (`npx openapi-typescript` writes generated/api.d.ts), the calls go through
 * openapi-fetch, and `tsc -p docs/clients` compiles it under --strict. test/docs/
 * typed-client.test.ts does both, so the contract cannot drift from what a client can use.
 *
 * There is no cast below: every body, parameter and answer is typed by the contract.
 */
import createClient from 'openapi-fetch';
import type { components, paths } from './generated/api.js';

type ImportRow = components['schemas']['ContactImportRow'];
type Event = components['schemas']['Event'];

/** Signs up, records a double opt-in consent, imports two contacts, and reads the feed. */
export async function tour(baseUrl: string): Promise<void> {
  const api = createClient<paths>({ baseUrl });

  // Sign-up answers the session's tokens as login does, with the new account and owner.
  const signedUp = await api.POST('/v1/auth/signup', {
    body: {
      name: 'Example Shop',
      email: 'dpo@example.com',
      password: 'staple orbit lantern quietly',
    },
  });
  if (signedUp.error) throw new Error(`sign-up: ${signedUp.error.code} ${signedUp.error.detail}`);
  const auth = { Authorization: `Bearer ${signedUp.data.accessToken}` };

  // A purpose and its notice; paths name a purpose by its id or by its key.
  const purpose = await api.POST('/v1/purposes', {
    headers: auth,
    body: { key: 'newsletter', name: 'Monthly newsletter' },
  });
  if (purpose.error) throw new Error(purpose.error.detail);
  const notice = await api.POST('/v1/purposes/{id}/notices', {
    headers: auth,
    params: { path: { id: 'newsletter' } },
    body: { text: 'We send you our newsletter once a month.', language: 'en' },
  });
  if (notice.error) throw new Error(notice.error.detail);

  // A contact, then a double opt-in consent; Idempotency-Key makes both safe to retry.
  const contact = await api.POST('/v1/contacts', {
    headers: auth,
    params: { header: { 'idempotency-key': 'signup-form-42' } },
    body: { email: 'jane.doe@example.com', firstName: 'Jane' },
  });
  if (contact.error) throw new Error(contact.error.detail);
  const consent = await api.POST('/v1/contacts/{id}/consents', {
    headers: auth,
    params: {
      path: { id: contact.data.id },
      header: { 'idempotency-key': 'signup-form-42-consent' },
    },
    body: {
      purposeId: purpose.data.id,
      event: 'granted',
      method: 'double_opt_in',
      noticeVersion: notice.data.version,
      evidence: { ip: '203.0.113.7', sourceUrl: 'https://shop.example.com/newsletter' },
    },
  });
  if (consent.error) throw new Error(consent.error.detail);
  if (consent.data.state === 'pending' && consent.data.confirmation) {
    console.log('send the confirmation link', consent.data.confirmation.url);
  }

  // An import: typed rows, sent as NDJSON, the raw body (no JSON serialisation).
  const rows: ImportRow[] = [
    {
      email: 'ana@example.com',
      consent: {
        purpose: 'newsletter',
        noticeVersion: notice.data.version,
        method: 'form',
        grantedAt: '2026-11-20T16:00:00.000Z',
      },
    },
    { email: 'bo@example.com', attributes: { plan: 'gold' } },
  ];
  const upload = await api.POST('/v1/contact-imports', {
    headers: { ...auth, 'content-type': 'application/x-ndjson' },
    params: {
      query: { missingConsent: 'pending_double_opt_in', purpose: 'newsletter' },
      header: { 'idempotency-key': 'crm-export-2026-11-25' },
    },
    body: `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`,
    bodySerializer: (body) => body,
  });
  if (upload.error) throw new Error(`import: ${upload.error.code}`);
  console.log(`imported ${upload.data.counts.processed} rows, ${upload.data.errorCount} errors`);

  // The feed: the event's type says what its data holds.
  const feed = await api.GET('/v1/events', { headers: auth, params: { query: { limit: 100 } } });
  if (feed.error) throw new Error(feed.error.detail);
  for (const event of feed.data.data) console.log(describe(event));
}

/** What a mail system does with one event; `type` narrows `data`. */
export function describe(event: Event): string {
  switch (event.type) {
    case 'consent.confirmation_requested':
      return `mail ${event.data.contactId} the link ${event.data.confirmation.url}`;
    case 'consent.withdrawn':
      return `stop mailing ${event.data.contactId} for ${event.data.purposeId}`;
    case 'consent.granted':
    case 'consent.confirmed':
      return `${event.data.contactId} may be mailed for ${event.data.purposeId}`;
    case 'contact.created':
      return `${event.data.contactId} was created by ${event.data.source} ${event.data.importId ?? ''}`;
    case 'contact.rectified':
      return `pass on the new ${event.data.changedFields.join(', ')} of ${event.data.contactId}`;
    case 'contact.restricted':
      return `stop processing ${event.data.contactId}; keep its data`;
    case 'contact.restriction_lifted':
      return `${event.data.contactId} may be processed again`;
    case 'contact.erased':
      return `forget ${event.data.contactId} (request ${event.data.dataSubjectRequestId ?? 'none'})`;
    case 'data_subject_request.extended':
      return `tell the subject of ${event.data.requestId} by ${event.data.subjectMustBeInformedBy}`;
    case 'breach_incident.created':
    case 'breach_incident.assessed':
    case 'breach_incident.notified':
    case 'breach_incident.closed':
    case 'breach_incident.deadline_approaching':
    case 'breach_incident.deadline_passed':
    case 'breach_incident.subject_notice_exemption_recorded':
    case 'breach_incident.reported_by_processor':
      return `breach ${event.data.incidentId} is ${event.data.status}, notify by ${event.data.authorityDeadlineAt}`;
    case 'breach_incident.subject_notices_ready':
      return `send ${event.data.noticeCount} notices of breach ${event.data.incidentId}`;
    default:
      // The other data-subject request events: the request as it now stands.
      return `request ${event.data.requestId} is ${event.data.status}, due ${event.data.dueDate}`;
  }
}
