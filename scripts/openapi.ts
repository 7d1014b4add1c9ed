/**
 * `npm run openapi`        (write): regenerates openapi.yaml from the route schemas.
 * `npm run openapi:check`  (check): exits 1 when the committed openapi.yaml is stale.
 *
 * Needs no database and ignores the local environment (see scripts/lib/openapi.ts).
 */
import { writeFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { firstDifference } from './lib/diff.js';
import { generateOpenApiYaml, OPENAPI_PATH, readCommittedOpenApi } from './lib/openapi.js';

const USAGE = 'usage: node --import tsx scripts/openapi.ts <write|check>';

async function main(mode: string | undefined): Promise<number> {
  const file = relative(process.cwd(), OPENAPI_PATH) || OPENAPI_PATH;
  if (mode !== 'write' && mode !== 'check') {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }

  const generated = await generateOpenApiYaml();
  const committed = await readCommittedOpenApi();

  if (mode === 'write') {
    if (committed === generated) {
      process.stdout.write(`${file} is up to date\n`);
    } else {
      await writeFile(OPENAPI_PATH, generated, 'utf8');
      process.stdout.write(`wrote ${file}\n`);
    }
    return 0;
  }

  if (committed === undefined) {
    process.stderr.write(`${file} is missing: run npm run openapi\n`);
    return 1;
  }
  const diff = firstDifference(committed, generated);
  if (diff) {
    process.stderr.write(
      `openapi.yaml is stale: run npm run openapi\n` +
        `  first difference at line ${diff.line}:\n` +
        `    committed: ${diff.expected ?? '(end of file)'}\n` +
        `    generated: ${diff.actual ?? '(end of file)'}\n`,
    );
    return 1;
  }
  process.stdout.write(`${file} is up to date\n`);
  return 0;
}

main(process.argv[2]).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(
      `openapi: could not generate the document: ${(err as Error).stack ?? String(err)}\n`,
    );
    process.exitCode = 1;
  },
);
