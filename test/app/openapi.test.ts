import t from 'tap';
import { parse } from 'yaml';
import { firstDifference } from '../../scripts/lib/diff.js';
import {
  generateOpenApiDocument,
  generateOpenApiYaml,
  offlineDatabase,
  readCommittedOpenApi,
} from '../../scripts/lib/openapi.js';
import { build } from '../helper.js';

t.test('the committed openapi.yaml matches the route schemas', async (t) => {
  const committed = await readCommittedOpenApi();
  t.ok(committed, 'openapi.yaml exists: run npm run openapi');
  const generated = await generateOpenApiYaml();
  const diff = firstDifference(committed ?? '', generated);
  t.equal(
    diff,
    undefined,
    diff
      ? `openapi.yaml is stale: run npm run openapi (line ${diff.line}: ` +
          `committed ${JSON.stringify(diff.expected)}, generated ${JSON.stringify(diff.actual)})`
      : 'openapi.yaml is up to date',
  );
});

t.test('generation is deterministic and independent of the environment', async (t) => {
  const before = await generateOpenApiYaml();
  const saved = { PORT: process.env.PORT, PUBLIC_BASE_URL: process.env.PUBLIC_BASE_URL };
  process.env.PORT = '4567';
  process.env.PUBLIC_BASE_URL = 'https://elsewhere.test';
  t.teardown(() => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });
  t.equal(await generateOpenApiYaml(), before);
  t.notMatch(before, /&a\d|\*a\d/, 'no YAML anchors or aliases');
  t.same(parse(before).servers, [{ url: '/' }]);
});

t.test('GET /openapi.json serves the same document as openapi.yaml', async (t) => {
  // Serving the document runs no query: no need to wait for this file's database.
  const database = offlineDatabase();
  t.teardown(() => database.close());
  const app = await build(t, { database });
  const res = await app.inject({ method: 'GET', url: '/openapi.json' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^application\/json/);
  const expected = JSON.parse(JSON.stringify(await generateOpenApiDocument()));
  t.same(res.json(), expected);
});
