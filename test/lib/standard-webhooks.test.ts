import { Webhook } from 'standardwebhooks';
import t from 'tap';
import { newWebhookSecret, webhookHeaders } from '../../src/lib/standard-webhooks.js';

t.test('signatures verify with the standardwebhooks package', async (t) => {
  const secret = newWebhookSecret();
  t.match(secret, /^whsec_[A-Za-z0-9+/]{43}=$/, 'whsec_ and 32 bytes of base64');
  t.not(newWebhookSecret(), secret);
  const body = JSON.stringify({ id: 'evt', type: 'consent.granted', data: { n: 'ü' } });
  const message = { id: '0b7e6a52-3c1d-4e8f-9a0b-1c2d3e4f5a6b', timestamp: 0, body };
  message.timestamp = Math.floor(Date.now() / 1000);
  const headers = webhookHeaders([secret], message);
  t.same(new Webhook(secret).verify(body, headers), JSON.parse(body), 'verifies');
  t.throws(() => new Webhook(newWebhookSecret()).verify(body, headers), 'another secret fails');
  t.throws(() => new Webhook(secret).verify(`${body} `, headers), 'another body fails');

  // During a rotation both secrets sign; a receiver holding either accepts.
  const next = newWebhookSecret();
  const both = webhookHeaders([next, secret], message);
  t.equal(both['webhook-signature'].split(' ').length, 2);
  t.ok(new Webhook(secret).verify(body, both), 'the old secret still verifies');
  t.ok(new Webhook(next).verify(body, both), 'the new one too');
});
