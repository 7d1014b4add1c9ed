import type { DataSubjectRequestType } from '../../db/schema.js';
import { type LinkFailureTexts, pageLanguageOf } from '../../http/link-pages.js';

/**
 * The words of the verification link's pages, per language. A page is in the contact's language
 * when it is listed here (by its primary subtag: `de-AT` reads `de`), else in English; a request
 * matched to no contact reads in English. Placeholders: `{time}`.
 */
export interface VerificationLinkTexts extends LinkFailureTexts {
  title: string;
  lead: string;
  requestLabel: string;
  controllerLabel: string;
  receivedLabel: string;
  /** Each request type in plain words. */
  types: Record<DataSubjectRequestType, string>;
  button: string;
  /** Under the button: a GET (a mail scanner's) changes nothing. */
  nothingYet: string;
  /** Under the button: the link may have reached someone who did not ask. */
  notYours: string;
  confirmed: string;
  confirmedAt: string;
}

const en: VerificationLinkTexts = {
  title: 'Confirm your request',
  lead: 'Please confirm that you made this request.',
  requestLabel: 'Request',
  controllerLabel: 'Made to',
  receivedLabel: 'Received on',
  types: {
    access: 'Access to your personal data',
    portability: 'A copy of your personal data to take elsewhere (data portability)',
    rectification: 'Correction of your personal data',
    erasure: 'Erasure of your personal data',
    restriction: 'Restriction of the processing of your personal data',
    objection: 'Objection to the processing of your personal data',
  },
  button: 'Confirm my request',
  nothingYet: 'Nothing is confirmed until you press the button.',
  notYours:
    'If you did not make this request, do not press the button, and let the organisation know.',
  confirmed: 'Thank you. Your request is confirmed.',
  confirmedAt: 'Confirmed on {time}.',
  invalid: 'This link is not valid.',
  unusable: 'This link has already been used, or can no longer be used.',
  expired: 'This link has expired.',
  askSender: 'If you need a new link, please contact the organisation you made your request to.',
};

const de: VerificationLinkTexts = {
  title: 'Ihre Anfrage bestätigen',
  lead: 'Bitte bestätigen Sie, dass Sie diese Anfrage gestellt haben.',
  requestLabel: 'Anfrage',
  controllerLabel: 'Gestellt an',
  receivedLabel: 'Eingegangen am',
  types: {
    access: 'Auskunft über Ihre personenbezogenen Daten',
    portability: 'Eine Kopie Ihrer personenbezogenen Daten zur Mitnahme (Datenübertragbarkeit)',
    rectification: 'Berichtigung Ihrer personenbezogenen Daten',
    erasure: 'Löschung Ihrer personenbezogenen Daten',
    restriction: 'Einschränkung der Verarbeitung Ihrer personenbezogenen Daten',
    objection: 'Widerspruch gegen die Verarbeitung Ihrer personenbezogenen Daten',
  },
  button: 'Anfrage bestätigen',
  nothingYet: 'Erst wenn Sie die Schaltfläche drücken, wird etwas bestätigt.',
  notYours:
    'Wenn Sie diese Anfrage nicht gestellt haben, drücken Sie die Schaltfläche nicht und ' +
    'informieren Sie die Organisation.',
  confirmed: 'Vielen Dank. Ihre Anfrage ist bestätigt.',
  confirmedAt: 'Bestätigt am {time}.',
  invalid: 'Dieser Link ist ungültig.',
  unusable: 'Dieser Link wurde bereits verwendet oder kann nicht mehr verwendet werden.',
  expired: 'Dieser Link ist abgelaufen.',
  askSender:
    'Wenn Sie einen neuen Link benötigen, wenden Sie sich bitte an die Organisation, an die ' +
    'Sie Ihre Anfrage gerichtet haben.',
};

const fr: VerificationLinkTexts = {
  title: 'Confirmer votre demande',
  lead: 'Veuillez confirmer que vous avez fait cette demande.',
  requestLabel: 'Demande',
  controllerLabel: 'Adressée à',
  receivedLabel: 'Reçue le',
  types: {
    access: 'Accès à vos données personnelles',
    portability: 'Une copie de vos données personnelles à transmettre ailleurs (portabilité)',
    rectification: 'Rectification de vos données personnelles',
    erasure: 'Effacement de vos données personnelles',
    restriction: 'Limitation du traitement de vos données personnelles',
    objection: 'Opposition au traitement de vos données personnelles',
  },
  button: 'Confirmer ma demande',
  nothingYet: 'Rien n’est confirmé tant que vous n’avez pas appuyé sur le bouton.',
  notYours:
    'Si vous n’avez pas fait cette demande, n’appuyez pas sur le bouton et prévenez ' +
    'l’organisation.',
  confirmed: 'Merci. Votre demande est confirmée.',
  confirmedAt: 'Confirmée le {time}.',
  invalid: 'Ce lien n’est pas valide.',
  unusable: 'Ce lien a déjà été utilisé, ou ne peut plus l’être.',
  expired: 'Ce lien a expiré.',
  askSender:
    'Si vous avez besoin d’un nouveau lien, veuillez contacter l’organisation à laquelle vous ' +
    'avez adressé votre demande.',
};

const sl: VerificationLinkTexts = {
  title: 'Potrdite svojo zahtevo',
  lead: 'Prosimo, potrdite, da ste podali to zahtevo.',
  requestLabel: 'Zahteva',
  controllerLabel: 'Naslovljena na',
  receivedLabel: 'Prejeta',
  types: {
    access: 'Dostop do vaših osebnih podatkov',
    portability: 'Kopija vaših osebnih podatkov za prenos drugam (prenosljivost podatkov)',
    rectification: 'Popravek vaših osebnih podatkov',
    erasure: 'Izbris vaših osebnih podatkov',
    restriction: 'Omejitev obdelave vaših osebnih podatkov',
    objection: 'Ugovor obdelavi vaših osebnih podatkov',
  },
  button: 'Potrdi zahtevo',
  nothingYet: 'Nič ni potrjeno, dokler ne pritisnete gumba.',
  notYours: 'Če te zahteve niste podali vi, ne pritisnite gumba in o tem obvestite organizacijo.',
  confirmed: 'Hvala. Vaša zahteva je potrjena.',
  confirmedAt: 'Potrjeno {time}.',
  invalid: 'Ta povezava ni veljavna.',
  unusable: 'Ta povezava je bila že uporabljena ali je ni več mogoče uporabiti.',
  expired: 'Ta povezava je potekla.',
  askSender:
    'Če potrebujete novo povezavo, se obrnite na organizacijo, na katero ste naslovili zahtevo.',
};

export const VERIFICATION_LINK_TEXTS: Readonly<Record<string, VerificationLinkTexts>> = {
  en,
  de,
  fr,
  sl,
};

/** The page language for a contact's language tag: a listed one by primary subtag, else `en`. */
export function verificationPageLanguage(contactLanguage: string | null | undefined): string {
  return pageLanguageOf(contactLanguage, VERIFICATION_LINK_TEXTS);
}
