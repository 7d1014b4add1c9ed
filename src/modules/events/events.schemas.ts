import { z } from 'zod';
import type { EventRow } from '../../db/schema.js';
import { Timestamp, toIso } from '../../http/schemas.js';
import type { LinkSealer } from '../../lib/link-sealing.js';
import { EVENT_TYPES, servedEventData } from './events.repository.js';

/** What every consent event says: ids, the notice version and how consent was given. */
const ConsentEventData = z.object({
  contactId: z.uuid(),
  purposeId: z.uuid(),
  consentEventId: z.uuid().describe('The ledger entry (`GET /v1/contacts/{id}/consents`).'),
  noticeVersion: z.number().int().nullable(),
  method: z.string().describe('How consent was given or withdrawn, as in the ledger.'),
});

const eventFields = {
  id: z.uuid(),
  seq: z.number().int().describe('Position in the account’s feed; increases with each event.'),
  contactId: z.uuid().nullable(),
  createdAt: Timestamp,
};

/**
 * One event of each type, told apart by `type`: a generated client narrows `data` by it. The
 * data carries ids, links and times, never an address or a name.
 */
const ConsentGrantedEvent = z
  .object({ ...eventFields, type: z.literal('consent.granted'), data: ConsentEventData })
  .meta({
    id: 'ConsentGrantedEvent',
    description:
      'A consent was recorded (not double opt-in): through the API, or imported with its ' +
      'evidence (one event per imported grant).',
  });

const ConfirmationRequestedEvent = z
  .object({
    ...eventFields,
    type: z.literal('consent.confirmation_requested'),
    data: ConsentEventData.extend({
      confirmation: z
        .object({
          url: z
            .string()
            .nullable()
            .describe(
              'Path of the link; null when it can no longer be opened (HASH_SECRET changed).',
            ),
          expiresAt: Timestamp,
        })
        .describe('The single-use link the contact follows to confirm.'),
    }),
  })
  .meta({
    id: 'ConfirmationRequestedEvent',
    description:
      'Send the contact the double opt-in message; `data.confirmation.url` is the link to ' +
      'the confirmation.',
  });

const ConsentConfirmedEvent = z
  .object({ ...eventFields, type: z.literal('consent.confirmed'), data: ConsentEventData })
  .meta({ id: 'ConsentConfirmedEvent', description: 'The contact confirmed a double opt-in.' });

const ConsentWithdrawnEvent = z
  .object({ ...eventFields, type: z.literal('consent.withdrawn'), data: ConsentEventData })
  .meta({
    id: 'ConsentWithdrawnEvent',
    description: 'A consent was withdrawn: stop sending for `data.purposeId`.',
  });

/** What every contact event says: the contact, by id only. */
const ContactEventData = z.object({ contactId: z.uuid() });

const ContactCreatedEvent = z
  .object({
    ...eventFields,
    type: z.literal('contact.created'),
    data: ContactEventData.extend({
      source: z.enum(['api', 'import']).describe('Created by `POST /v1/contacts`, or an import.'),
      importId: z.uuid().nullable().describe('The import that created it; null from the API.'),
    }),
  })
  .meta({ id: 'ContactCreatedEvent', description: 'A contact was created.' });

const ContactRectifiedEvent = z
  .object({
    ...eventFields,
    type: z.literal('contact.rectified'),
    data: ContactEventData.extend({
      changedFields: z
        .array(z.string())
        .describe('The fields that changed (`email`, `firstName`, …): names only, never values.'),
    }),
  })
  .meta({
    id: 'ContactRectifiedEvent',
    description:
      'A contact’s data was changed (Art. 16). Read it with `GET /v1/contacts/{id}` and pass ' +
      'the correction on to whoever received the data (Art. 19).',
  });

const ContactRestrictedEvent = z
  .object({ ...eventFields, type: z.literal('contact.restricted'), data: ContactEventData })
  .meta({
    id: 'ContactRestrictedEvent',
    description:
      'Processing of the contact is restricted (Art. 18): store its data, but stop using it.',
  });

const ContactRestrictionLiftedEvent = z
  .object({
    ...eventFields,
    type: z.literal('contact.restriction_lifted'),
    data: ContactEventData,
  })
  .meta({
    id: 'ContactRestrictionLiftedEvent',
    description: 'The restriction was lifted (Art. 18(3)): the contact may be processed again.',
  });

const ContactErasedEvent = z
  .object({
    ...eventFields,
    type: z.literal('contact.erased'),
    data: ContactEventData.extend({
      dataSubjectRequestId: z
        .uuid()
        .nullable()
        .describe('The erasure request it carried out, if any.'),
    }),
  })
  .meta({
    id: 'ContactErasedEvent',
    description:
      'The contact was erased (Art. 17): forget everything you hold under `contactId`, and ' +
      'tell whoever received its data (Art. 17(2), 19). The contact’s other events are gone ' +
      'from the feed; this one stays, and names no address.',
  });

/** What every data-subject request event says: the request as it stands after the change. */
const RequestEventData = z.object({
  requestId: z.uuid(),
  requestType: z.string().describe('`access`, `erasure`, … as in the request.'),
  status: z.string().describe('The request’s status after the change.'),
  contactId: z.uuid().nullable(),
  dueDate: z.string().describe('The local due date (Art. 12(3)), `YYYY-MM-DD`.'),
  dueAt: Timestamp,
  externalId: z.string().optional().describe('Your own reference, when the request has one.'),
});

/** A data-subject request event whose data is the request's, plus `extra`. */
function requestEvent<T extends string, E extends z.ZodRawShape>(
  type: T,
  id: string,
  description: string,
  extra: E,
) {
  return z
    .object({ ...eventFields, type: z.literal(type), data: RequestEventData.extend(extra) })
    .meta({ id, description });
}

const RequestEvents = [
  requestEvent(
    'data_subject_request.received',
    'RequestReceivedEvent',
    'A request was recorded.',
    {},
  ),
  requestEvent(
    'data_subject_request.identity_verification_requested',
    'RequestVerificationRequestedEvent',
    'Send the subject the identity verification link (`data.verification.url`).',
    {
      verification: z.object({
        url: z
          .string()
          .nullable()
          .describe('Path of the link; null when it can no longer be opened.'),
        expiresAt: Timestamp,
      }),
    },
  ),
  requestEvent(
    'data_subject_request.identity_verified',
    'RequestIdentityVerifiedEvent',
    'The subject’s identity was verified (`manual`, or by the `link`).',
    { method: z.string() },
  ),
  requestEvent(
    'data_subject_request.extended',
    'RequestExtendedEvent',
    'The deadline was extended (Art. 12(3)); tell the subject by `subjectMustBeInformedBy`.',
    { months: z.number().int(), subjectMustBeInformedBy: Timestamp },
  ),
  requestEvent(
    'data_subject_request.completed',
    'RequestCompletedEvent',
    'The request was carried out.',
    {
      late: z.boolean().nullable(),
      noDataHeld: z.boolean(),
      recipientsInformed: z.number().int().optional(),
    },
  ),
  requestEvent(
    'data_subject_request.rejected',
    'RequestRejectedEvent',
    'The request was refused, with its basis.',
    { basis: z.string(), late: z.boolean().nullable() },
  ),
  requestEvent(
    'data_subject_request.cancelled',
    'RequestCancelledEvent',
    'The request was withdrawn or recorded in error.',
    {},
  ),
  requestEvent(
    'data_subject_request.due_soon',
    'RequestDueSoonEvent',
    'Reminder, once per request: an open request’s `dueAt` is less than seven days ' +
      '(168 hours) away.',
    { daysRemaining: z.number().int().describe('Calendar days to `dueDate`.') },
  ),
  requestEvent(
    'data_subject_request.overdue',
    'RequestOverdueEvent',
    'Reminder, once per request: an open request is past its due time.',
    {},
  ),
] as const;

/** What every breach-incident event says: the incident's state and its Art. 33(1) deadline. */
const BreachEventData = z.object({
  incidentId: z.uuid(),
  status: z.string().describe('`open`, `assessed`, `notified` or `closed`, after the change.'),
  risk: z.string().describe('`unassessed`, `none`, `risk` or `high`.'),
  kinds: z.array(z.string()).describe('`confidentiality`, `integrity`, `availability`.'),
  source: z.string().describe('`account`, or `processor` when the provider reported it.'),
  awareAt: Timestamp,
  authorityDeadlineAt: Timestamp.describe('awareAt + 72 h (Art. 33(1)).'),
});

function breachEvent<T extends string, E extends z.ZodRawShape>(
  type: T,
  id: string,
  description: string,
  extra: E,
) {
  return z
    .object({ ...eventFields, type: z.literal(type), data: BreachEventData.extend(extra) })
    .meta({ id, description });
}

const BreachEvents = [
  breachEvent(
    'breach_incident.created',
    'BreachIncidentCreatedEvent',
    'A breach was recorded; the 72-hour clock runs from `awareAt`.',
    {},
  ),
  breachEvent(
    'breach_incident.assessed',
    'BreachIncidentAssessedEvent',
    'The risk to people was assessed (`none`: no notification needed, Art. 33(1)).',
    {},
  ),
  breachEvent(
    'breach_incident.notified',
    'BreachIncidentNotifiedEvent',
    'A phase of the notification to the supervisory authority was recorded (Art. 33(4)).',
    { phase: z.number().int(), notifiedAt: Timestamp, late: z.boolean() },
  ),
  breachEvent(
    'breach_incident.closed',
    'BreachIncidentClosedEvent',
    'The incident was closed (notified, or with the reason it needed no notification).',
    { notified: z.boolean() },
  ),
  breachEvent(
    'breach_incident.deadline_approaching',
    'BreachIncidentDeadlineApproachingEvent',
    'Reminder, once per incident and threshold: the authority is not notified yet and ' +
      '`authorityDeadlineAt` is within 24 hours (`threshold: 24h`), then within 6 (`6h`).',
    {
      threshold: z.enum(['24h', '6h']),
      hoursRemaining: z.number().int().describe('Whole hours to the deadline.'),
    },
  ),
  breachEvent(
    'breach_incident.deadline_passed',
    'BreachIncidentDeadlinePassedEvent',
    'Reminder, once per incident: the 72 hours are over and the authority is not notified; ' +
      'the first notification now needs `delayReason`.',
    {},
  ),
  breachEvent(
    'breach_incident.subject_notice_exemption_recorded',
    'BreachIncidentSubjectNoticeExemptionRecordedEvent',
    'An Art. 34(3) ground was recorded: the people affected need not be told one by one.',
    {
      ground: z.enum(['unintelligible', 'risk_removed', 'disproportionate_effort']),
    },
  ),
  breachEvent(
    'breach_incident.subject_notices_ready',
    'BreachIncidentSubjectNoticesReadyEvent',
    'A batch of Art. 34 notices to the people affected awaits sending: read the pending ones ' +
      'at `GET /v1/breach-incidents/{id}/subject-notices?status=pending`.',
    {
      batchId: z.string(),
      noticeCount: z.number().int(),
      textSha256: z.string().describe('SHA-256 (hex) of the notice text, as stored.'),
    },
  ),
  breachEvent(
    'breach_incident.reported_by_processor',
    'BreachIncidentReportedByProcessorEvent',
    'The provider, as your processor, told you of a breach (Art. 33(2)): your own incident, ' +
      'its 72 hours from this moment. Acknowledge it at ' +
      '`POST /v1/breach-incidents/{id}/acknowledgement`.',
    { processorIncidentId: z.string() },
  ),
] as const;

export const EventSchema = z
  .discriminatedUnion('type', [
    ContactCreatedEvent,
    ContactRectifiedEvent,
    ContactRestrictedEvent,
    ContactRestrictionLiftedEvent,
    ContactErasedEvent,
    ConsentGrantedEvent,
    ConfirmationRequestedEvent,
    ConsentConfirmedEvent,
    ConsentWithdrawnEvent,
    ...RequestEvents,
    ...BreachEvents,
  ])
  .meta({
    id: 'Event',
    description: 'One event of the feed; its `type` says what `data` holds.',
    example: {
      id: '0b7e6a52-3c1d-4e8f-9a0b-1c2d3e4f5a6b',
      seq: 42,
      type: 'consent.confirmation_requested',
      contactId: '3f0c9a1e-7b2d-4c5e-8f9a-0b1c2d3e4f5a',
      data: {
        contactId: '3f0c9a1e-7b2d-4c5e-8f9a-0b1c2d3e4f5a',
        purposeId: '5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d',
        consentEventId: '8e7d6c5b-4a39-4281-9706-f5e4d3c2b1a0',
        noticeVersion: 1,
        method: 'double_opt_in',
        confirmation: {
          url: '/v1/public/consent-confirmations/q3J0d2xYk1R8nH6pV9sT4wZ2cB7mF5aE0gL1iO3uK8y',
          expiresAt: '2026-11-28T17:00:00.000Z',
        },
      },
      createdAt: '2026-11-25T17:00:00.000Z',
    },
  });

export const EventFeedQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100).describe('Page size (1–1000).'),
  cursor: z
    .string()
    .max(512)
    .optional()
    .describe('`nextCursor` of the previous call; omit to read from the start of the feed.'),
  type: z
    .enum(EVENT_TYPES)
    .optional()
    .describe('Only events of this type (the cursor still moves past the others).'),
});

export const EventFeed = z.object({
  data: z.array(EventSchema),
  nextCursor: z
    .string()
    .describe(
      'Where to read on. Always present: when `data` is empty there is nothing new yet; poll ' +
        'again later with the same cursor.',
    ),
});

export function toEvent(row: EventRow, sealer: LinkSealer): z.input<typeof EventSchema> {
  // `data` is what the writers of each type stored (see consentEvent); the serializer checks
  // it against the type's schema on the way out.
  return {
    id: row.id,
    seq: Number(row.seq),
    type: row.type,
    contactId: row.contact_id,
    data: servedEventData(sealer, row),
    createdAt: toIso(row.created_at),
  } as z.input<typeof EventSchema>;
}

/**
 * One event as JSON, exactly as `GET /v1/events` serves it (checked against its type's schema,
 * undeclared members dropped): the body of a webhook delivery. Throws when the stored data
 * does not fit its type, as the feed would.
 */
export function eventJson(row: EventRow, sealer: LinkSealer): string {
  return JSON.stringify(EventSchema.parse(toEvent(row, sealer)));
}
