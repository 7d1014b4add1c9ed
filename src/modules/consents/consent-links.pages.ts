import { createHash } from 'node:crypto';
import type { ConsentLinkKind } from './consent-links.js';
import { CONSENT_LINK_TEXTS, type ConsentLinkTexts } from './consent-links.texts.js';

/**
 * The HTML pages of the consent links, for a person who opens a link in a browser. A GET shows
 * what the link is for and a button; only the button's POST acts. Mail security scanners follow
 * every link in a message with GET, so a GET that acted would confirm or withdraw for the person
 * before they read it. The pages run no script, load nothing, and name neither the contact nor
 * the account.
 */

const STYLE = `body{margin:0;font:1rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1b1f1d;background:#f6f7f6}
main{max-width:36rem;margin:2rem auto;padding:1.5rem;background:#fff;border:1px solid #d5dad7;border-radius:.5rem}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}
blockquote{margin:0 0 1rem;padding:.75rem 1rem;border-left:4px solid #2f7d5b;background:#f1f5f3;white-space:pre-line}
figcaption{font-weight:600;margin-bottom:.25rem}
figure{margin:0 0 1rem}
button{font:inherit;font-weight:600;padding:.75rem 1.25rem;color:#fff;background:#1f5f45;border:0;border-radius:.375rem;cursor:pointer}
button:hover{background:#174a36}
button:focus-visible{outline:3px solid #f0b429;outline-offset:2px}
.hint{color:#4a524e;font-size:.9rem}`;

/**
 * The pages' Content-Security-Policy: nothing may load or run, the one stylesheet is allowed by
 * its hash, and the form may post to this origin only.
 */
export const CONSENT_PAGE_CSP = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`,
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export const HTML_CONTENT_TYPE = 'text/html; charset=utf-8';

/** What a link page shows about the consent (nothing about the person or the sender). */
export interface ConsentLinkPageFacts {
  purposeName: string | null;
  noticeVersion: number | null;
  notice: { text: string; language: string | null } | null;
}

function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

/** A text with its placeholders filled; the values are escaped, the text itself is ours. */
function fill(text: string, values: Record<string, string>): string {
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => values[name] ?? whole);
}

function page(language: string, title: string, body: string): string {
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

/** The page a GET shows for a usable link: what it is for, and the button that acts. */
export function linkFormPage(
  kind: ConsentLinkKind,
  language: string,
  facts: ConsentLinkPageFacts,
): string {
  const texts = CONSENT_LINK_TEXTS[language] as ConsentLinkTexts;
  const confirm = kind === 'confirm';
  const parts: string[] = [];
  if (facts.purposeName !== null) {
    const lead = fill(escapeHtml(confirm ? texts.confirmLead : texts.withdrawLead), {
      purpose: `<strong>${escapeHtml(facts.purposeName)}</strong>`,
    });
    parts.push(`<p>${lead}</p>`);
  }
  if (facts.noticeVersion !== null) {
    parts.push(
      `<p>${escapeHtml(fill(texts.noticeVersion, { version: String(facts.noticeVersion) }))}</p>`,
    );
  }
  if (facts.notice) {
    const lang = facts.notice.language ? ` lang="${escapeHtml(facts.notice.language)}"` : '';
    parts.push(
      `<figure><figcaption>${escapeHtml(texts.noticeHeading)}</figcaption>` +
        `<blockquote${lang}>${escapeHtml(facts.notice.text)}</blockquote></figure>`,
    );
  }
  // No action: the form posts to the URL of the page, whatever prefix a proxy put in front.
  parts.push(
    `<form method="post"><button type="submit">${escapeHtml(
      confirm ? texts.confirmButton : texts.withdrawButton,
    )}</button></form>`,
    `<p class="hint">${escapeHtml(texts.nothingYet)}</p>`,
  );
  return page(language, confirm ? texts.confirmTitle : texts.withdrawTitle, parts.join('\n'));
}

/** The page a form POST answers with once the link has acted. */
export function linkResultPage(kind: ConsentLinkKind, language: string, recordedAt: Date): string {
  const texts = CONSENT_LINK_TEXTS[language] as ConsentLinkTexts;
  const when = new Intl.DateTimeFormat(language, {
    dateStyle: 'long',
    timeStyle: 'short',
    timeZone: 'UTC',
  }).format(recordedAt);
  const time = `<time datetime="${recordedAt.toISOString()}">${escapeHtml(`${when} UTC`)}</time>`;
  const recorded = fill(escapeHtml(texts.recordedAt), { time });
  return page(
    language,
    kind === 'confirm' ? texts.confirmed : texts.withdrawn,
    `<p role="status">${recorded}</p>`,
  );
}

/** The statuses a link page can fail with, and what each says. */
export type LinkPageFailure = 404 | 409 | 410;

export function isLinkPageFailure(status: number): status is LinkPageFailure {
  return status === 404 || status === 409 || status === 410;
}

/**
 * The page for a link that cannot act: not valid (404), used or no longer usable (409), expired
 * (410). The same words whatever the reason inside a status, so the page tells nothing about the
 * contact's state.
 */
export function linkFailurePage(status: LinkPageFailure, language: string): string {
  const texts = CONSENT_LINK_TEXTS[language] as ConsentLinkTexts;
  const title = status === 404 ? texts.invalid : status === 410 ? texts.expired : texts.unusable;
  return page(language, title, `<p>${escapeHtml(texts.askSender)}</p>`);
}
