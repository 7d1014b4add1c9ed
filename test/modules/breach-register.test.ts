import t from 'tap';
import { TestClock } from '../../src/lib/clock.js';
import { csvCell } from '../../src/lib/csv.js';
import { bearer, signup } from '../fixtures/identity.js';
import { build } from '../helper.js';
import { createIncident } from './breach-incidents-fixtures.js';

t.test('csvCell neutralises formulas and quotes what needs it', async (t) => {
  t.equal(csvCell('=1+1'), "'=1+1");
  t.equal(csvCell('+386 1 000'), "'+386 1 000");
  t.equal(csvCell('-2'), "'-2");
  t.equal(csvCell('@SUM(A1)'), "'@SUM(A1)");
  t.equal(csvCell('\tx'), "'\tx");
  t.equal(
    csvCell('=HYPERLINK("http://x.example","y")'),
    `"'=HYPERLINK(""http://x.example"",""y"")"`,
  );
  t.equal(csvCell('a,b'), '"a,b"');
  t.equal(csvCell('line\nbreak'), '"line\nbreak"');
  t.equal(csvCell('plain'), 'plain');
  t.equal(csvCell(-3), '-3', 'numbers we write are numbers');
  t.equal(csvCell(null), '');
  t.equal(csvCell(false), 'false');
});

t.test('the register: every incident, notified or not, as JSON pages and as CSV', async (t) => {
  const clock = new TestClock('2026-12-01T09:00:00.000Z');
  const app = await build(t, { clock });
  const owner = await signup(app);
  const other = await signup(app);
  const headers = bearer(owner.accessToken);
  const notified = await createIncident(app, owner, {
    title: 'Misdirected mailing',
    kinds: ['confidentiality', 'integrity'],
    dataCategories: ['email addresses'],
    approximateSubjects: 40,
  });
  await app.inject({
    method: 'POST',
    url: `/v1/breach-incidents/${notified.id}/authority-notifications`,
    headers,
    payload: { authority: 'Information Commissioner', reference: 'IP-7' },
  });
  clock.advance(60_000);
  const unnotified = await createIncident(app, owner, {
    title: '=HYPERLINK("http://evil.example","open me")',
    description: '+1 formula in a description',
    measuresTaken: '-2 measures',
    contactPoint: { name: '@desk', email: 'desk@example.com' },
  });
  clock.advance(60_000);
  const third = await createIncident(app, owner, { title: 'Third', kinds: ['availability'] });
  await createIncident(app, other, { title: 'Another account’s breach' });

  // JSON, one page at a time.
  const page1 = await app.inject({
    method: 'GET',
    url: '/v1/breach-register?limit=2',
    headers,
  });
  t.equal(page1.statusCode, 200, page1.body);
  t.match(page1.headers['content-type'], /^application\/json/);
  const first = page1.json();
  t.same(
    first.data.map((e: { id: string }) => e.id),
    [notified.id, unnotified.id],
  );
  t.equal(first.data[0].authorityNotifications.length, 1, 'phases included');
  t.equal(first.data[0].authorityNotifications[0].reference, 'IP-7');
  t.same(first.data[1].authorityNotifications, [], 'the unnotified incident is in the register');
  t.equal(first.data[1].authorityNotification.phases, 0);
  t.ok(first.nextCursor);
  const page2 = await app.inject({
    method: 'GET',
    url: `/v1/breach-register?limit=2&cursor=${first.nextCursor}`,
    headers,
  });
  t.same(
    page2.json().data.map((e: { id: string }) => e.id),
    [third.id],
  );
  t.equal(page2.json().nextCursor, null);

  // CSV, streamed, the whole register.
  const csv = await app.inject({ method: 'GET', url: '/v1/breach-register?format=csv', headers });
  t.equal(csv.statusCode, 200, csv.body.slice(0, 300));
  t.match(csv.headers['content-type'], /^text\/csv/);
  t.match(csv.headers['content-disposition'], /attachment; filename="breach-register.csv"/);
  const lines = csv.body.trimEnd().split('\r\n');
  t.equal(lines.length, 4, 'a header and three incidents');
  t.match(lines[0], /^id,source,status,title,description,kinds,/);
  t.ok(lines[1]!.startsWith(`${notified.id},account,notified,Misdirected mailing,`));
  t.match(lines[1], /confidentiality; integrity/);
  t.match(lines[1], /1: 2026-12-01T09:00:00\.000Z Information Commissioner ref IP-7/);
  const evil = lines[2]!;
  t.ok(evil.startsWith(`${unnotified.id},account,open,`), 'the unnotified incident is there');
  t.ok(
    evil.includes(`"'=HYPERLINK(""http://evil.example"",""open me"")"`),
    'the formula title is neutralised',
  );
  t.ok(evil.includes(",'+1 formula in a description,"), 'a + cell is neutralised');
  t.ok(evil.includes(",'-2 measures,"), 'a - cell is neutralised');
  t.ok(evil.includes(`"'@desk, desk@example.com"`), 'an @ cell is neutralised');
  t.notOk(csv.body.includes('Another account'), 'no other account’s incident');
  t.notOk(/(^|,)[=+\-@]/m.test(csv.body), 'no cell starts with a formula character');
});
