import { DateTime } from 'luxon';
import {
  escapeHtml,
  fill,
  type LinkPageFailure,
  linkFailurePage,
  linkPage,
  postButton,
  timeElement,
} from '../../http/link-pages.js';
import type { VerificationLinkView } from './data-subject-requests.service.js';
import { VERIFICATION_LINK_TEXTS, type VerificationLinkTexts } from './verification-links.texts.js';

/**
 * The HTML pages of the identity-verification link (Art. 12(6)), for the subject who opens it
 * in a browser (layout and policy in http/link-pages.ts). A GET shows which request is being
 * confirmed and a button; only the button's POST verifies. Whoever holds the link sees the
 * page, so it shows only what the subject needs to recognise their request (its type, the
 * controller, the day it was received) and nothing about the subject.
 */

type RequestFacts = NonNullable<VerificationLinkView['request']>;

function textsOf(language: string): VerificationLinkTexts {
  return VERIFICATION_LINK_TEXTS[language] as VerificationLinkTexts;
}

/** The local day of receipt, in the zone the deadline is counted in. */
function receivedDay(facts: RequestFacts, language: string): string {
  const day = new Intl.DateTimeFormat(language, {
    dateStyle: 'long',
    timeZone: facts.timeZone,
  }).format(facts.receivedAt);
  const iso = DateTime.fromJSDate(facts.receivedAt, { zone: facts.timeZone }).toISODate();
  return `<time datetime="${iso}">${escapeHtml(day)}</time>`;
}

/** The page a GET shows for a usable link: which request, and the button that confirms it. */
export function verificationFormPage(language: string, facts: RequestFacts): string {
  const texts = textsOf(language);
  const rows: [string, string][] = [[texts.requestLabel, escapeHtml(texts.types[facts.type])]];
  if (facts.controllerName !== null) {
    rows.push([texts.controllerLabel, escapeHtml(facts.controllerName)]);
  }
  rows.push([texts.receivedLabel, receivedDay(facts, language)]);
  const list = rows.map(([label, value]) => `<dt>${escapeHtml(label)}</dt><dd>${value}</dd>`);
  return linkPage(
    language,
    texts.title,
    [
      `<p>${escapeHtml(texts.lead)}</p>`,
      `<dl>${list.join('')}</dl>`,
      postButton(texts.button),
      `<p class="hint">${escapeHtml(texts.nothingYet)}</p>`,
      `<p class="hint">${escapeHtml(texts.notYours)}</p>`,
    ].join('\n'),
  );
}

/** The page a form POST answers with once the request is verified. */
export function verificationResultPage(language: string, verifiedAt: Date): string {
  const texts = textsOf(language);
  const confirmed = fill(escapeHtml(texts.confirmedAt), {
    time: timeElement(verifiedAt, language),
  });
  return linkPage(language, texts.confirmed, `<p role="status">${confirmed}</p>`);
}

/** The page for a link that cannot act (see http/link-pages.ts). */
export function verificationFailurePage(status: LinkPageFailure, language: string): string {
  return linkFailurePage(status, language, textsOf(language));
}
