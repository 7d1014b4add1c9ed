import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { PROBLEM_CONTENT_TYPE, ProblemSchema } from './problem.js';

/**
 * What the public link pages have in common (the consent links, the data-subject request
 * verification link): the layout, its Content-Security-Policy, escaping, and the form posts of
 * their buttons. A person opens a link from a message; a GET shows a page with a button, and
 * only the button's POST acts, because mail security scanners follow every link in a message
 * with GET. The pages run no script and load nothing.
 */

const STYLE = `body{margin:0;font:1rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1b1f1d;background:#f6f7f6}
main{max-width:36rem;margin:2rem auto;padding:1.5rem;background:#fff;border:1px solid #d5dad7;border-radius:.5rem}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}
blockquote{margin:0 0 1rem;padding:.75rem 1rem;border-left:4px solid #2f7d5b;background:#f1f5f3;white-space:pre-line}
figcaption{font-weight:600;margin-bottom:.25rem}
figure{margin:0 0 1rem}
dl{margin:0 0 1rem}
dt{font-weight:600}
dd{margin:0 0 .5rem}
button{font:inherit;font-weight:600;padding:.75rem 1.25rem;color:#fff;background:#1f5f45;border:0;border-radius:.375rem;cursor:pointer}
button:hover{background:#174a36}
button:focus-visible{outline:3px solid #f0b429;outline-offset:2px}
.hint{color:#4a524e;font-size:.9rem}`;

/**
 * The pages' Content-Security-Policy: nothing may load or run, the one stylesheet is allowed by
 * its hash, and the form may post to this origin only.
 */
export const LINK_PAGE_CSP = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`,
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export const HTML_CONTENT_TYPE = 'text/html; charset=utf-8';

export const FORM_CONTENT_TYPE = 'application/x-www-form-urlencoded';

/** A link's form carries at most a field or two (RFC 8058's): a few bytes. */
const FORM_BODY_LIMIT_BYTES = 1024;

/** A page for a person in a browser: no script, nothing loaded from elsewhere. */
export const HtmlPageSchema = z.string().meta({
  id: 'HtmlPage',
  description: 'An HTML page for a person in a browser: no script, nothing loaded from elsewhere.',
  example: '<!doctype html>\n<html lang="en">…<h1>Confirm your consent</h1>…</html>\n',
});

export function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

/** A text with its placeholders filled; the values are escaped, the text itself is ours. */
export function fill(text: string, values: Record<string, string>): string {
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => values[name] ?? whole);
}

/**
 * The page language for a person's language tag: one the pages are written in, by its primary
 * subtag (`de-AT` reads `de`), else English.
 */
export function pageLanguageOf(
  tag: string | null | undefined,
  written: Readonly<Record<string, unknown>>,
): string {
  const primary = tag?.split(/[-_]/)[0]?.toLowerCase();
  return primary && Object.hasOwn(written, primary) ? primary : 'en';
}

/** A whole page: its title is also its one heading. */
export function linkPage(language: string, title: string, body: string): string {
  return `<!doctype html>
<html lang="${language}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>${escapeHtml(title)}</h1>
${body}
</main>
</body>
</html>
`;
}

/**
 * The one button of a page. The form has no action: it posts to the URL of the page, whatever
 * prefix a proxy put in front.
 */
export function postButton(label: string): string {
  return `<form method="post"><button type="submit">${escapeHtml(label)}</button></form>`;
}

/** An instant for a person to read (in UTC, which the page says), and for a machine. */
export function timeElement(instant: Date, language: string): string {
  const when = new Intl.DateTimeFormat(language, {
    dateStyle: 'long',
    timeStyle: 'short',
    timeZone: 'UTC',
  }).format(instant);
  return `<time datetime="${instant.toISOString()}">${escapeHtml(`${when} UTC`)}</time>`;
}

/** The statuses a link page can fail with. */
export type LinkPageFailure = 404 | 409 | 410;

export function isLinkPageFailure(status: number): status is LinkPageFailure {
  return status === 404 || status === 409 || status === 410;
}

/** What a failure page says, in one language. */
export interface LinkFailureTexts {
  invalid: string;
  /** Used already, or no longer usable: which one is not said. */
  unusable: string;
  expired: string;
  /** Where a new link comes from. */
  askSender: string;
}

/**
 * The page for a link that cannot act: not valid (404), used or no longer usable (409), expired
 * (410). The same words whatever the reason inside a status, so the page tells nothing about the
 * person's state.
 */
export function linkFailurePage(
  status: LinkPageFailure,
  language: string,
  texts: LinkFailureTexts,
): string {
  const title = status === 404 ? texts.invalid : status === 410 ? texts.expired : texts.unusable;
  return linkPage(language, title, `<p>${escapeHtml(texts.askSender)}</p>`);
}

/** Sends a page with the pages' own policy (the API's one would forbid its stylesheet). */
export function sendPage(reply: FastifyReply, status: number, html: string) {
  return reply
    .code(status)
    .header('content-security-policy', LINK_PAGE_CSP)
    .type(HTML_CONTENT_TYPE)
    .send(html);
}

/** Whether the request is a form post (a page's button, or RFC 8058 one-click), not JSON. */
export function isFormPost(request: FastifyRequest): boolean {
  const type = request.headers['content-type'];
  return typeof type === 'string' && type.split(';')[0]?.trim().toLowerCase() === FORM_CONTENT_TYPE;
}

/**
 * Lets the routes of `app` (a plugin of link routes only) read small forms, and read a POST
 * without a body as the empty one: links were posted without a body before they took one, and
 * still may be.
 */
export function acceptLinkForms(app: FastifyInstance): void {
  app.addContentTypeParser(
    FORM_CONTENT_TYPE,
    { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT_BYTES },
    (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    },
  );
  app.addHook('preValidation', (request, _reply, done) => {
    if (request.body === null || request.body === undefined) request.body = {};
    done();
  });
}

/** An answer that is an HTML page, for the contract. */
export function htmlPage(description: string) {
  return { description, content: { 'text/html': { schema: HtmlPageSchema } } };
}

/** A failure a link's POST answers as problem+json, or as a page to a form post. */
export function problemOrPage(description: string) {
  return {
    description: `${description} A form post gets an HTML page with the same status.`,
    content: {
      [PROBLEM_CONTENT_TYPE]: { schema: ProblemSchema },
      'text/html': { schema: HtmlPageSchema },
    },
  };
}
