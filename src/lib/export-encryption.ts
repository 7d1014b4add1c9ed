/**
 * Encryption of data-subject exports (Art. 15 access, Art. 20 portability).
 *
 * The provider's policy says "when you export your data, make sure that your data is
 * protected", and Art. 32 asks for encryption as a security measure: an export leaves our
 * control, so it is encrypted with a passphrase or public key the requester supplies, and the
 * plaintext never touches disk (everything here works in memory).
 *
 * The format is age v1 (https://age-encryption.org/v1), ASCII-armored, produced by the
 * `age-encryption` package (the reference TypeScript implementation by age's author). The
 * requester opens the file with the standard tool:
 *
 *     age -d -o export.json export.json.age                 # passphrase: age prompts for it
 *     age -d -i key.txt -o export.json export.json.age      # X25519: key from `age-keygen`
 *
 * (`age -d` detects the armor by itself.) The test suite decrypts with the real `age` binary
 * when one is installed.
 */
import { createCipheriv, randomBytes, scrypt } from 'node:crypto';
import { armor, Decrypter, Encrypter, type Recipient, Stanza } from 'age-encryption';
import { BadRequestError } from '../errors.js';

/** A requester-chosen passphrase is the whole secret; below this length it is guessable. */
export const EXPORT_PASSPHRASE_MIN_LENGTH = 12;

/** Bounds the work done on a caller's input; no human types more. */
export const EXPORT_PASSPHRASE_MAX_LENGTH = 1024;

/**
 * age's own default scrypt work factor (2^18), the one `age -p` uses. It costs 256 MiB of
 * memory and a fraction of a second per derivation — that cost is what makes guessing a
 * passphrase offline expensive, so it is not lowered to make exports cheaper.
 */
const SCRYPT_LOG_N = 18;
const SCRYPT_R = 8;
const SCRYPT_MAXMEM = 128 * SCRYPT_R * 2 ** SCRYPT_LOG_N + 32 * 1024 * 1024;

/**
 * An X25519 recipient as printed by `age-keygen`: `age1` + 58 bech32 characters. Post-quantum
 * (`age1pq1…`) and plugin recipients are refused: the age CLI in most distributions cannot
 * decrypt them yet, and the point is a file the requester can open with a common tool.
 */
const X25519_RECIPIENT = /^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$/;

/** How the caller protects an export: a passphrase, or an age X25519 public key. */
export type ExportProtection = { passphrase: string } | { recipient: string };

/** The key that opens an export (tests and tooling; the server never holds it). */
export type ExportKey = { passphrase: string } | { identity: string };

/** A refused passphrase or recipient, with a stable code for the API client. */
export class ExportEncryptionError extends BadRequestError {
  constructor(
    code: 'invalid_recipient' | 'passphrase_too_short' | 'passphrase_too_long',
    detail: string,
  ) {
    super(code, detail);
  }
}

/**
 * Encrypts an export with age and returns the ASCII-armored file
 * (`-----BEGIN AGE ENCRYPTED FILE-----` …), which `age -d` opens.
 *
 * - `{ passphrase }`: scrypt recipient, work factor 2^18; at least 12 characters.
 * - `{ recipient }`: X25519 public key `age1…` (from `age-keygen`).
 *
 * @throws ExportEncryptionError `passphrase_too_short`, `passphrase_too_long` or
 *   `invalid_recipient` before any work is done.
 */
export async function encryptExport(
  plaintext: Uint8Array | string,
  protection: ExportProtection,
): Promise<string> {
  const encrypter = new Encrypter();
  if ('passphrase' in protection) {
    encrypter.addRecipient(new NativeScryptRecipient(checkPassphrase(protection.passphrase)));
  } else {
    encrypter.addRecipient(checkRecipient(protection.recipient));
  }
  return armor.encode(await encrypter.encrypt(plaintext));
}

/**
 * Decrypts an armored age file made by {@link encryptExport}. Meant for tests and tools: the
 * service itself never needs to read an export back. Uses the library's own decryption (pure
 * JavaScript scrypt, which blocks the event loop for a second or two), which also makes it an
 * independent check of the native scrypt recipient below.
 *
 * @throws Error when the key does not open the file or the file is damaged.
 */
export async function decryptExport(armored: string, key: ExportKey): Promise<Uint8Array> {
  const decrypter = new Decrypter();
  if ('passphrase' in key) decrypter.addPassphrase(key.passphrase);
  else decrypter.addIdentity(key.identity);
  return decrypter.decrypt(armor.decode(armored));
}

function checkPassphrase(passphrase: string): string {
  // Count code points, not UTF-16 units: "12 characters" is what the requester was told.
  const length = typeof passphrase === 'string' ? [...passphrase].length : 0;
  if (length < EXPORT_PASSPHRASE_MIN_LENGTH) {
    throw new ExportEncryptionError(
      'passphrase_too_short',
      `The export passphrase must have at least ${EXPORT_PASSPHRASE_MIN_LENGTH} characters.`,
    );
  }
  if (length > EXPORT_PASSPHRASE_MAX_LENGTH) {
    throw new ExportEncryptionError(
      'passphrase_too_long',
      `The export passphrase must have at most ${EXPORT_PASSPHRASE_MAX_LENGTH} characters.`,
    );
  }
  return passphrase;
}

function checkRecipient(recipient: string): string {
  const candidate = typeof recipient === 'string' ? recipient.trim() : '';
  if (X25519_RECIPIENT.test(candidate)) {
    try {
      // Decodes the bech32 checksum and key length: catches a typo in an otherwise
      // well-formed key before we produce a file nobody can open.
      new Encrypter().addRecipient(candidate);
      return candidate;
    } catch {
      // fall through to the uniform error below
    }
  }
  throw new ExportEncryptionError(
    'invalid_recipient',
    'The recipient must be an age X25519 public key (age1…, as printed by age-keygen).',
  );
}

/**
 * One scrypt derivation at a time per process: each holds 256 MiB, and a burst of passphrase
 * exports must not multiply that (the server's memory budget is a few hundred MiB).
 */
let scryptQueue: Promise<unknown> = Promise.resolve();

function deriveKey(passphrase: string, salt: Uint8Array): Promise<Buffer> {
  const run = () =>
    new Promise<Buffer>((resolve, reject) => {
      scrypt(
        Buffer.from(passphrase, 'utf8'),
        salt,
        32,
        { N: 2 ** SCRYPT_LOG_N, r: SCRYPT_R, p: 1, maxmem: SCRYPT_MAXMEM },
        (error, key) => (error ? reject(error) : resolve(key)),
      );
    });
  const result = scryptQueue.then(run, run);
  scryptQueue = result.catch(() => undefined);
  return result;
}

/**
 * The age scrypt recipient (age v1 spec, "scrypt recipient stanza"), computed with Node's
 * native scrypt. The library's built-in passphrase support uses a pure-JavaScript scrypt that
 * blocks the event loop for about two seconds per export, stalling every other request; Node's
 * runs on the libuv thread pool. The stanza is byte-for-byte the format the library and the
 * `age` CLI read: `-> scrypt <salt> <logN>`, body = ChaCha20-Poly1305 of the file key under
 * scrypt(passphrase, "age-encryption.org/v1/scrypt" || salt), zero nonce.
 */
class NativeScryptRecipient implements Recipient {
  constructor(private readonly passphrase: string) {}

  async wrapFileKey(fileKey: Uint8Array): Promise<Stanza[]> {
    const salt = randomBytes(16);
    const label = Buffer.from('age-encryption.org/v1/scrypt', 'utf8');
    const wrappingKey = await deriveKey(this.passphrase, Buffer.concat([label, salt]));
    const cipher = createCipheriv('chacha20-poly1305', wrappingKey, Buffer.alloc(12), {
      authTagLength: 16,
    });
    const body = Buffer.concat([cipher.update(fileKey), cipher.final(), cipher.getAuthTag()]);
    return [
      new Stanza(
        ['scrypt', salt.toString('base64').replace(/=+$/, ''), String(SCRYPT_LOG_N)],
        body,
      ),
    ];
  }
}
