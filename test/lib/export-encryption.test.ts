import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import t from 'tap';
import {
  decryptExport,
  EXPORT_PASSPHRASE_MIN_LENGTH,
  ExportEncryptionError,
  encryptExport,
} from '../../src/lib/export-encryption.js';

const ARMOR_HEADER = '-----BEGIN AGE ENCRYPTED FILE-----';
const ARMOR_FOOTER = '-----END AGE ENCRYPTED FILE-----';
// Exactly the minimum length, so the round trip also proves the boundary is accepted.
const PASSPHRASE = 'horse-staple';
const EXPORT = JSON.stringify({ contact: { email: 'jane@example.com', firstName: 'Jana Žagar' } });

/** Whether a command exists here: the interop checks against the real age CLI need it. */
function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

/**
 * scrypt at age's work factor costs a second or more per derivation (more on a busy machine),
 * so one passphrase file serves every passphrase test.
 */
let passphraseFile: Promise<string> | undefined;
const encryptedWithPassphrase = () => {
  passphraseFile ??= encryptExport(new TextEncoder().encode(EXPORT), { passphrase: PASSPHRASE });
  return passphraseFile;
};

t.test('passphrase: round trip, armored, no plaintext in the output', async (t) => {
  t.equal([...PASSPHRASE].length, EXPORT_PASSPHRASE_MIN_LENGTH);
  const armored = await encryptedWithPassphrase();
  t.ok(armored.startsWith(`${ARMOR_HEADER}\n`), 'starts with the age armor header');
  t.ok(armored.trimEnd().endsWith(ARMOR_FOOTER));
  t.notOk(armored.includes('jane'), 'no plaintext');
  const decoded = Buffer.from(armored.split('\n').slice(1, -2).join(''), 'base64').toString();
  t.match(decoded, /^age-encryption\.org\/v1\n-> scrypt \S{22} 18\n/, 'scrypt stanza, 2^18');
  const plaintext = await decryptExport(armored, { passphrase: PASSPHRASE });
  t.equal(Buffer.from(plaintext).toString('utf8'), EXPORT);
});

t.test('passphrase: a wrong passphrase does not open it', async (t) => {
  const armored = await encryptedWithPassphrase();
  await t.rejects(decryptExport(armored, { passphrase: `${PASSPHRASE}!` }));
});

t.test('X25519: round trip with a generated identity; other identities fail', async (t) => {
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  t.match(recipient, /^age1[a-z0-9]{58}$/);
  const armored = await encryptExport(EXPORT, { recipient: ` ${recipient}\n` });
  t.ok(armored.startsWith(ARMOR_HEADER));
  t.not(armored, await encryptExport(EXPORT, { recipient }), 'fresh file key every time');
  const plaintext = await decryptExport(armored, { identity });
  t.equal(Buffer.from(plaintext).toString('utf8'), EXPORT);
  await t.rejects(decryptExport(armored, { identity: await generateX25519Identity() }));
});

t.test('refuses short passphrases and malformed recipients with stable codes', async (t) => {
  const short = 'a'.repeat(EXPORT_PASSPHRASE_MIN_LENGTH - 1);
  await t.rejects(encryptExport(EXPORT, { passphrase: short }), {
    constructor: ExportEncryptionError,
    code: 'passphrase_too_short',
    status: 400,
  });
  // Twelve characters counted as characters: 12 emoji are 24 UTF-16 units.
  await t.rejects(encryptExport(EXPORT, { passphrase: '🔑'.repeat(11) }), {
    code: 'passphrase_too_short',
  });
  await t.rejects(encryptExport(EXPORT, { passphrase: 'a'.repeat(1025) }), {
    code: 'passphrase_too_long',
  });

  const recipient = await identityToRecipient(await generateX25519Identity());
  const flipped = `${recipient.slice(0, -1)}${recipient.endsWith('q') ? 'p' : 'q'}`;
  for (const bad of [
    '',
    'age1',
    'not-a-key',
    flipped, // bad bech32 checksum
    recipient.toUpperCase().replace('AGE1', 'age1'),
    `${recipient}q`,
    'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
    'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ',
  ]) {
    await t.rejects(
      encryptExport(EXPORT, { recipient: bad }),
      { constructor: ExportEncryptionError, code: 'invalid_recipient' },
      JSON.stringify(bad),
    );
  }
});

t.test(
  'the standard age tool opens the files',
  { skip: !has('age') && 'age not installed' },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'custodian-age-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));

    const identity = await generateX25519Identity();
    writeFileSync(join(dir, 'key.txt'), `${identity}\n`);
    writeFileSync(
      join(dir, 'x25519.age'),
      await encryptExport(EXPORT, { recipient: await identityToRecipient(identity) }),
    );
    const x25519 = spawnSync('age', ['-d', '-i', join(dir, 'key.txt'), join(dir, 'x25519.age')]);
    t.equal(x25519.status, 0, x25519.stderr.toString());
    t.equal(x25519.stdout.toString(), EXPORT, 'age -d -i key.txt');

    // age reads a passphrase only from a terminal: `script` gives it one.
    if (!has('script')) return;
    writeFileSync(join(dir, 'passphrase.age'), await encryptedWithPassphrase());
    const out = join(dir, 'passphrase.json');
    const run = (passphrase: string) =>
      spawnSync(
        'script',
        ['-qec', `age -d -o ${out} ${join(dir, 'passphrase.age')}`, '/dev/null'],
        { input: `${passphrase}\n`, timeout: 60_000 },
      );
    const opened = run(PASSPHRASE);
    t.equal(opened.status, 0, 'age -d with the passphrase');
    t.equal(readFileSync(out, 'utf8'), EXPORT);
    rmSync(out);
    t.not(run('not the passphrase').status, 0, 'age -d refuses a wrong passphrase');
  },
);
