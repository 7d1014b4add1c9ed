import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The receiving end of `npm run bench:webhooks`: a bare node:http server that answers every
 * POST with 204 once its body has arrived, in a process of its own (a customer's receiver does
 * not share the sender's event loop). It counts requests and, while asked to, keeps when each
 * `webhook-id` arrived, for commit-to-receipt latency. Driven over IPC by bench/webhooks.ts:
 * `{ record: boolean }` starts or stops recording (and clears), `'report'` sends back
 * `{ count, receipts }`, `'reset'` zeroes the count.
 */

let count = 0;
let recording = false;
let receipts: [string, number][] = [];

const server = http.createServer((req, res) => {
  req.on('data', () => undefined);
  req.on('end', () => {
    count += 1;
    if (recording) receipts.push([String(req.headers['webhook-id']), Date.now()]);
    res.writeHead(204);
    res.end();
  });
});
server.keepAliveTimeout = 30_000;

process.on('message', (message: unknown) => {
  if (message === 'report') {
    process.send?.({ count, receipts });
  } else if (message === 'reset') {
    count = 0;
    process.send?.({ count });
  } else if (typeof message === 'object' && message && 'record' in message) {
    recording = Boolean((message as { record: boolean }).record);
    receipts = [];
    process.send?.({ count });
  }
});
process.on('disconnect', () => process.exit(0));

server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as AddressInfo).port });
});
