import t from 'tap';
import { forbiddenAddress, forbiddenHostName } from '../../src/lib/outbound-address.js';

t.test('only public unicast addresses pass', async (t) => {
  const cases: [string, string | null][] = [
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['::1', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['fd00:ec2::254', 'private'],
    ['169.254.169.254', 'link_local'],
    ['fe80::1%eth0', 'link_local'],
    ['100.64.0.1', 'shared'],
    ['100.127.255.255', 'shared'],
    ['224.0.0.1', 'multicast'],
    ['ff02::1', 'multicast'],
    ['0.0.0.0', 'unspecified'],
    ['::', 'unspecified'],
    ['255.255.255.255', 'reserved'],
    ['2001:db8::1', 'reserved'],
    // IPv6 forms that carry an IPv4 address are judged by it.
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:a9fe:a9fe', 'link_local'],
    ['64:ff9b::10.0.0.1', 'private'],
    ['2002:7f00:1::1', 'loopback'],
    ['not an address', 'reserved'],
    // Public.
    ['8.8.8.8', null],
    ['172.32.0.1', null],
    ['100.128.0.1', null],
    ['2606:4700:4700::1111', null],
    ['::ffff:8.8.8.8', null],
    ['2002:808:808::1', null],
  ];
  for (const [address, reason] of cases) {
    t.equal(forbiddenAddress(address), reason, `${address}: ${reason ?? 'public'}`);
  }
});

t.test('names of this machine and of private networks are refused whatever DNS says', async (t) => {
  for (const name of ['localhost', 'LOCALHOST.', 'api.localhost', 'printer.local', 'intranet']) {
    t.not(forbiddenHostName(name), null, name);
  }
  t.equal(forbiddenHostName('metadata.google.internal'), 'private');
  t.equal(forbiddenHostName('hooks.example.com'), null);
});
