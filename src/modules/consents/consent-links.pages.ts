import {
  escapeHtml,
  linkFailurePage as failurePage,
  fill,
  type LinkPageFailure,
  linkPage,
  postButton,
  timeElement,
} from '../../http/link-pages.js';
import type { ConsentLinkKind } from './consent-links.js';
import { CONSENT_LINK_TEXTS, type ConsentLinkTexts } from './consent-links.texts.js';

/**
 * The HTML pages of the consent links, for a person who opens a link in a browser (layout and
 * policy in http/link-pages.ts). A GET shows what the link is for and a button; only the
 * button's POST acts. The pages name neither the contact nor the account.
 */

/** What a link page shows about the consent (nothing about the person or the sender). */
export interface ConsentLinkPageFacts {
  purposeName: string | null;
  noticeVersion: number | null;
  notice: { text: string; language: string | null } | null;
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
  parts.push(
    postButton(confirm ? texts.confirmButton : texts.withdrawButton),
    `<p class="hint">${escapeHtml(texts.nothingYet)}</p>`,
  );
  return linkPage(language, confirm ? texts.confirmTitle : texts.withdrawTitle, parts.join('\n'));
}

/** The page a form POST answers with once the link has acted. */
export function linkResultPage(kind: ConsentLinkKind, language: string, recordedAt: Date): string {
  const texts = CONSENT_LINK_TEXTS[language] as ConsentLinkTexts;
  const recorded = fill(escapeHtml(texts.recordedAt), { time: timeElement(recordedAt, language) });
  return linkPage(
    language,
    kind === 'confirm' ? texts.confirmed : texts.withdrawn,
    `<p role="status">${recorded}</p>`,
  );
}

/** The page for a link that cannot act (see http/link-pages.ts). */
export function linkFailurePage(status: LinkPageFailure, language: string): string {
  return failurePage(status, language, CONSENT_LINK_TEXTS[language] as ConsentLinkTexts);
}
