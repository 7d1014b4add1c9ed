import { type LinkFailureTexts, pageLanguageOf } from '../../http/link-pages.js';

/**
 * The words of the consent-link pages, per language. A page is in the contact's language when
 * it is listed here (by its primary subtag: `de-AT` reads `de`), else in English. Placeholders:
 * `{purpose}`, `{version}`, `{time}`.
 */
export interface ConsentLinkTexts extends LinkFailureTexts {
  confirmTitle: string;
  confirmLead: string;
  confirmButton: string;
  withdrawTitle: string;
  withdrawLead: string;
  withdrawButton: string;
  noticeVersion: string;
  noticeHeading: string;
  /** Under the button: a GET (a mail scanner's) changes nothing. */
  nothingYet: string;
  confirmed: string;
  withdrawn: string;
  recordedAt: string;
}

const en: ConsentLinkTexts = {
  confirmTitle: 'Confirm your consent',
  confirmLead: 'Please confirm your consent to: {purpose}',
  confirmButton: 'Confirm my consent',
  withdrawTitle: 'Withdraw your consent',
  withdrawLead: 'You can withdraw your consent to: {purpose}',
  withdrawButton: 'Withdraw my consent',
  noticeVersion: 'Notice version {version}',
  noticeHeading: 'The text you were shown',
  nothingYet: 'Nothing is recorded until you press the button.',
  confirmed: 'Thank you. Your consent is confirmed.',
  withdrawn: 'Your consent has been withdrawn.',
  recordedAt: 'Recorded on {time}.',
  invalid: 'This link is not valid.',
  unusable: 'This link has already been used, or can no longer be used.',
  expired: 'This link has expired.',
  askSender: 'If you need a new link, please contact the sender of the message.',
};

const de: ConsentLinkTexts = {
  confirmTitle: 'Einwilligung bestätigen',
  confirmLead: 'Bitte bestätigen Sie Ihre Einwilligung für: {purpose}',
  confirmButton: 'Einwilligung bestätigen',
  withdrawTitle: 'Einwilligung widerrufen',
  withdrawLead: 'Hier können Sie Ihre Einwilligung widerrufen für: {purpose}',
  withdrawButton: 'Einwilligung widerrufen',
  noticeVersion: 'Fassung {version} des Hinweistextes',
  noticeHeading: 'Der Text, der Ihnen angezeigt wurde',
  nothingYet: 'Erst wenn Sie die Schaltfläche drücken, wird etwas gespeichert.',
  confirmed: 'Vielen Dank. Ihre Einwilligung ist bestätigt.',
  withdrawn: 'Ihre Einwilligung wurde widerrufen.',
  recordedAt: 'Erfasst am {time}.',
  invalid: 'Dieser Link ist ungültig.',
  unusable: 'Dieser Link wurde bereits verwendet oder kann nicht mehr verwendet werden.',
  expired: 'Dieser Link ist abgelaufen.',
  askSender:
    'Wenn Sie einen neuen Link benötigen, wenden Sie sich bitte an den Absender der Nachricht.',
};

const fr: ConsentLinkTexts = {
  confirmTitle: 'Confirmer votre consentement',
  confirmLead: 'Veuillez confirmer votre consentement pour\u00a0: {purpose}',
  confirmButton: 'Confirmer mon consentement',
  withdrawTitle: 'Retirer votre consentement',
  withdrawLead: 'Vous pouvez retirer votre consentement pour\u00a0: {purpose}',
  withdrawButton: 'Retirer mon consentement',
  noticeVersion: 'Version {version} de l’information',
  noticeHeading: 'Le texte qui vous a été présenté',
  nothingYet: 'Rien n’est enregistré tant que vous n’avez pas appuyé sur le bouton.',
  confirmed: 'Merci. Votre consentement est confirmé.',
  withdrawn: 'Votre consentement a été retiré.',
  recordedAt: 'Enregistré le {time}.',
  invalid: 'Ce lien n’est pas valide.',
  unusable: 'Ce lien a déjà été utilisé, ou ne peut plus l’être.',
  expired: 'Ce lien a expiré.',
  askSender: 'Si vous avez besoin d’un nouveau lien, veuillez contacter l’expéditeur du message.',
};

const sl: ConsentLinkTexts = {
  confirmTitle: 'Potrdite privolitev',
  confirmLead: 'Prosimo, potrdite svojo privolitev za: {purpose}',
  confirmButton: 'Potrdi privolitev',
  withdrawTitle: 'Prekličite privolitev',
  withdrawLead: 'Tukaj lahko prekličete svojo privolitev za: {purpose}',
  withdrawButton: 'Prekliči privolitev',
  noticeVersion: 'Različica obvestila {version}',
  noticeHeading: 'Besedilo, ki vam je bilo prikazano',
  nothingYet: 'Nič ni zabeleženo, dokler ne pritisnete gumba.',
  confirmed: 'Hvala. Vaša privolitev je potrjena.',
  withdrawn: 'Vaša privolitev je preklicana.',
  recordedAt: 'Zabeleženo {time}.',
  invalid: 'Ta povezava ni veljavna.',
  unusable: 'Ta povezava je bila že uporabljena ali je ni več mogoče uporabiti.',
  expired: 'Ta povezava je potekla.',
  askSender: 'Če potrebujete novo povezavo, se obrnite na pošiljatelja sporočila.',
};

export const CONSENT_LINK_TEXTS: Readonly<Record<string, ConsentLinkTexts>> = { en, de, fr, sl };

/** The page language for a contact's language tag: a listed one by primary subtag, else `en`. */
export function pageLanguage(contactLanguage: string | null | undefined): string {
  return pageLanguageOf(contactLanguage, CONSENT_LINK_TEXTS);
}
