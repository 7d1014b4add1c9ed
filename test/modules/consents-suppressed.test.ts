import t from 'tap';
import { assertProblem } from '../app/assert-problem.js';
import {
  CONSENT,
  errorsOf,
  ndjson,
  upload,
  type World,
  world,
} from './contact-imports-fixtures.js';

/**
 * A contact re-admitted at an erased address (through double opt-in) may receive no grant but
 * a double opt-in one until the person confirms — on every path that records grants.
 */

function api(w: World) {
  const call = (
    method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE',
    url: string,
    payload?: object,
  ) => w.app.inject({ method, url, headers: w.headers, ...(payload ? { payload } : {}) });
  return {
    call,
    /** Creates, erases and re-admits (doubleOptIn) a contact at `email`; returns its id. */
    async readmit(email: string): Promise<string> {
      const first = await call('POST', '/v1/contacts', { email, firstName: 'Gone' });
      if (first.statusCode !== 201) throw new Error(first.body);
      const erased = await call('DELETE', `/v1/contacts/${first.json().id}`);
      if (erased.statusCode !== 204) throw new Error(erased.body);
      const back = await call('POST', '/v1/contacts', { email, doubleOptIn: true });
      if (back.statusCode !== 201) throw new Error(back.body);
      return back.json().id;
    },
    grant(contactId: string, method: string) {
      return call('POST', `/v1/contacts/${contactId}/consents`, {
        purposeId: w.purposeId,
        noticeVersion: 1,
        event: 'granted',
        method,
      });
    },
    async audience(): Promise<string[]> {
      const res = await call('GET', `/v1/purposes/${w.purposeId}/audience?limit=100`);
      return res.json().data.map((m: { contactId: string }) => m.contactId);
    },
  };
}

t.test('the consent API grants a re-admitted contact only double opt-in', async (t) => {
  const w = await world(t);
  const a = api(w);
  const id = await a.readmit('readmitted@example.com');
  for (const method of ['form', 'api', 'import']) {
    const refused = await a.grant(id, method);
    const problem = assertProblem(t, refused, {
      status: 422,
      code: 'suppressed',
      instance: `/v1/contacts/${id}/consents`,
    });
    t.match(problem.detail, /double opt-in/, `${method}: the problem says why`);
  }
  t.notOk((await a.audience()).includes(id), 'not in the audience');
  const ledger = await a.call('GET', `/v1/contacts/${id}/consents`);
  t.same(ledger.json().events, [], 'nothing was recorded');

  const doi = await a.grant(id, 'double_opt_in');
  t.equal(doi.statusCode, 201, doi.body);
  t.equal(doi.json().state, 'pending');
  t.notOk((await a.audience()).includes(id), 'pending is not in the audience');
  assertProblem(t, await a.grant(id, 'form'), {
    status: 422,
    code: 'suppressed',
    instance: `/v1/contacts/${id}/consents`,
  });

  // The person confirms: from then on the contact is like any other.
  const confirmed = await w.app.inject({ method: 'POST', url: doi.json().confirmation.url });
  t.equal(confirmed.statusCode, 200, confirmed.body);
  t.ok((await a.audience()).includes(id), 'confirmed: in the audience');
  const later = await a.grant(id, 'form');
  t.equal(later.statusCode, 201, later.body);
  t.equal(later.json().state, 'granted');
});

t.test('lifting a restriction does not lift the rule', async (t) => {
  const w = await world(t);
  const a = api(w);
  const id = await a.readmit('restricted.readmitted@example.com');
  const restricted = await a.call('PUT', `/v1/contacts/${id}/restriction`, { reason: 'asked' });
  t.equal(restricted.statusCode, 200, restricted.body);
  const lifted = await a.call('DELETE', `/v1/contacts/${id}/restriction`);
  t.equal(lifted.statusCode, 200, lifted.body);
  assertProblem(t, await a.grant(id, 'form'), {
    status: 422,
    code: 'suppressed',
    instance: `/v1/contacts/${id}/consents`,
  });
});

t.test('rectification neither escapes the rule nor reaches a suppressed address', async (t) => {
  const w = await world(t);
  const a = api(w);
  const id = await a.readmit('before.rectification@example.com');
  // From a suppressed address to a fresh one: the mark is on the contact, not the address.
  const moved = await a.call('PATCH', `/v1/contacts/${id}`, {
    email: 'after.rectification@example.com',
  });
  t.equal(moved.statusCode, 200, moved.body);
  assertProblem(t, await a.grant(id, 'form'), {
    status: 422,
    code: 'suppressed',
    instance: `/v1/contacts/${id}/consents`,
  });
  // To a suppressed address: refused, as before.
  const other = await a.call('POST', '/v1/contacts', { email: 'someone.else@example.com' });
  const toSuppressed = await a.call('PATCH', `/v1/contacts/${other.json().id}`, {
    email: 'before.rectification@example.com',
  });
  assertProblem(t, toSuppressed, {
    status: 422,
    code: 'suppressed',
    instance: `/v1/contacts/${other.json().id}`,
  });
});

t.test('a contact at a suppressed address without the mark must confirm too', async (t) => {
  // Contacts re-admitted before the mark existed: the suppression list still decides.
  const w = await world(t);
  const a = api(w);
  const id = await a.readmit('unmarked@example.com');
  await w.app.database.owner
    .updateTable('contacts')
    .set({ suppressed_until_confirmed: false })
    .where('id', '=', id)
    .execute();
  assertProblem(t, await a.grant(id, 'form'), {
    status: 422,
    code: 'suppressed',
    instance: `/v1/contacts/${id}/consents`,
  });
});

t.test('imports apply the same rule, row by row', async (t) => {
  const w = await world(t);
  const a = api(w);
  const db = w.app.database.owner;
  const ndjsonUpload = (rows: object[], query = 'format=ndjson') =>
    upload(w, ndjson(rows), query, 'application/x-ndjson');

  // A contact re-admitted through the API, then rectified to an unsuppressed address.
  const moved = await a.readmit('import.before@example.com');
  await a.call('PATCH', `/v1/contacts/${moved}`, { email: 'import.after@example.com' });
  // An erased address imported afresh, pending double opt-in: created with the mark.
  const gone = await a.call('POST', '/v1/contacts', { email: 'import.new@example.com' });
  await a.call('DELETE', `/v1/contacts/${gone.json().id}`);
  const pending = await ndjsonUpload(
    [{ email: 'import.new@example.com' }],
    'format=ndjson&missingConsent=pending_double_opt_in&purpose=newsletter&noticeVersion=1',
  );
  t.equal(pending.statusCode, 201, pending.body);
  t.match(pending.json().counts, { created: 1, rejected: 0 });
  const fresh = await db
    .selectFrom('contacts')
    .select(['id', 'suppressed_until_confirmed'])
    .where('account_id', '=', w.owner.accountId)
    .where('email', '=', 'import.new@example.com')
    .executeTakeFirstOrThrow();
  t.equal(fresh.suppressed_until_confirmed, true, 'the import marks the re-admitted contact');
  assertProblem(t, await a.grant(fresh.id, 'form'), {
    status: 422,
    code: 'suppressed',
    instance: `/v1/contacts/${fresh.id}/consents`,
  });

  const rows = [
    { email: 'import.after@example.com', consent: CONSENT },
    { email: 'import.new@example.com', consent: CONSENT },
    { email: 'import.plain@example.com', consent: CONSENT },
    { email: 'import.after@example.com', consent: { ...CONSENT, method: 'double_opt_in' } },
  ];
  const refused = await ndjsonUpload(rows);
  t.equal(refused.statusCode, 201, refused.body);
  const errors = await errorsOf(w, refused.json().id);
  t.same(
    errors.map((e) => [e.row, e.field, e.code]),
    [
      [1, 'email', 'suppressed'],
      [2, 'email', 'suppressed'],
    ],
    'the form grants to re-admitted contacts are refused, the others pass',
  );
  t.match(errors[0]!.message, /double opt-in/);
  const formGrants = await db
    .selectFrom('consent_events')
    .select('contact_id')
    .where('account_id', '=', w.owner.accountId)
    .where('contact_id', 'in', [moved, fresh.id])
    .where('method', '=', 'form')
    .execute();
  t.same(formGrants, [], 'no form grant reached the re-admitted contacts');

  // Once the person confirms the import's double opt-in link, form grants are accepted.
  // The link is stored sealed; the customer reads it from the event feed.
  const feed = await a.call('GET', '/v1/events?type=consent.confirmation_requested&limit=100');
  const requested = (
    feed.json().data as { contactId: string; data: { confirmation: { url: string } } }[]
  ).find((event) => event.contactId === fresh.id);
  const url = requested?.data.confirmation.url ?? 'missing';
  const confirmed = await w.app.inject({ method: 'POST', url });
  t.equal(confirmed.statusCode, 200, confirmed.body);
  const after = await ndjsonUpload([{ email: 'import.new@example.com', consent: CONSENT }]);
  t.match(after.json().counts, { rejected: 0 });
  t.ok((await a.audience()).includes(fresh.id), 'confirmed and granted: in the audience');
});
