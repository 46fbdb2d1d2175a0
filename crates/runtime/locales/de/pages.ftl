# Die Seiten aller Dienste, auf Deutsch.

## Gemeinsam

email-field = E-Mail-Adresse
password-field = Passwort
new-password-field = Neues Passwort
repeat-password-field = Passwort wiederholen
optional = (optional)
sign-in-link = Anmelden
password-hint = { $min } bis { $max } Zeichen; häufige Passwörter werden abgelehnt.
password-length = Dieses Passwort kann nicht verwendet werden: Ein Passwort hat { $min } bis { $max } Zeichen.
password-control = Dieses Passwort kann nicht verwendet werden: Ein Passwort enthält keine Steuerzeichen.
password-common = Dieses Passwort kann nicht verwendet werden: Es ist zu häufig, wählen Sie ein anderes.
password-mismatch = Die beiden Passwörter stimmen nicht überein.

## Fehlerseiten

error-hint = Sie können diese Seite schließen. Wenn ein Link Sie hierher geführt hat, informieren Sie die Website, die ihn geschickt hat.
error-form-title = Dieses Formular konnte nicht gelesen werden
error-form-message = Gehen Sie zurück, laden Sie die Seite neu und versuchen Sie es noch einmal.
error-csrf-title = Dieses Formular ist abgelaufen
error-csrf-message = Zu Ihrer Sicherheit wurde das Formular nicht angenommen. Gehen Sie zurück, laden Sie die Seite neu und versuchen Sie es noch einmal.
error-unavailable-title = Etwas ist schiefgegangen
error-unavailable-message = Der Dienst ist kurz nicht erreichbar. Versuchen Sie es gleich noch einmal.
error-link-title = Dieser Link funktioniert nicht mehr
error-set-link-message = Links zum Festlegen eines Passworts funktionieren einmal und laufen nach einigen Tagen ab, und eine neuere E-Mail ersetzt eine ältere. Melden Sie sich an oder fordern Sie einen neuen Link an.
error-reset-link-message = Links zum Zurücksetzen eines Passworts funktionieren einmal und laufen nach kurzer Zeit ab, und eine neuere E-Mail ersetzt eine ältere. Fordern Sie auf der Anmeldeseite einen neuen Link an.
error-authorize-title = Dieser Anmeldelink funktioniert nicht
authorize-unreadable = Die Anfrage ist nicht lesbar.
authorize-param-twice = Der Parameter { $param } kommt zweimal vor.
authorize-no-client = Die Anfrage nennt keine Anwendung (client_id fehlt).
authorize-unknown-client = Die Anwendung, die Sie hierher geschickt hat, ist diesem Dienst nicht bekannt.
authorize-redirect-unregistered = Die Rücksprungadresse, die diese Anwendung verlangt, gehört nicht zu den registrierten.
authorize-no-redirect = Die Anfrage sagt nicht, wohin es zurückgehen soll (redirect_uri).
authorize-form-unreadable = Das Formular ist nicht lesbar.
authorize-signed-out = Sie wurden abgemeldet. Gehen Sie zurück zur Anwendung und beginnen Sie von vorn.

## Anmelden

login-title = Anmelden
login-field = E-Mail-Adresse oder Benutzername
login-submit = Anmelden
login-no-account = Noch kein Konto?
login-create = Konto erstellen
login-forgot = Passwort vergessen?
login-missing = Geben Sie Ihre E-Mail-Adresse oder Ihren Benutzernamen und Ihr Passwort ein.
login-wrong = E-Mail-Adresse, Benutzername oder Passwort stimmen nicht.
login-too-many = { $minutes ->
    [one] Zu viele fehlgeschlagene Versuche. Versuchen Sie es in { $minutes } Minute erneut, oder setzen Sie Ihr Passwort zurück.
   *[other] Zu viele fehlgeschlagene Versuche. Versuchen Sie es in { $minutes } Minuten erneut, oder setzen Sie Ihr Passwort zurück.
}

## Konto erstellen

signup-title = Konto erstellen
signup-name-field = Vollständiger Name
signup-submit = Konto erstellen
signup-have-account = Sie haben schon ein Konto?
signup-password-hint = Mindestens { $min } Zeichen; häufige Passwörter werden abgelehnt.
signup-email-invalid = Diese E-Mail-Adresse ist nicht gültig.
signup-email-taken = Für diese E-Mail-Adresse gibt es schon ein Konto. Melden Sie sich stattdessen an.
signup-name-long = Der vollständige Name hat höchstens 1024 Zeichen.

## Startseite

home-title = Ihr Konto
home-signed-in = Sie sind angemeldet.
home-signed-in-as = Sie sind angemeldet als { $name }.
home-sign-out = Abmelden

## Passwort festlegen (Link eines Partners)

set-title = Wählen Sie Ihr Passwort
set-partner = { $partner } hat dieses Konto für Sie angelegt. Wählen Sie ein Passwort, um es abzuschließen.
set-submit = Passwort festlegen und anmelden

## Passwort vergessen

forgot-title = Passwort vergessen?
forgot-intro = Geben Sie die E-Mail-Adresse Ihres Kontos ein. Wir senden dorthin einen Link, mit dem Sie ein neues Passwort wählen.
forgot-submit = Link senden
forgot-back = Zurück zur Anmeldung
forgot-invalid = Geben Sie eine gültige E-Mail-Adresse ein.
forgot-sent-title = Sehen Sie in Ihre E-Mails
forgot-sent-message = Wenn ein Konto diese Adresse verwendet, haben wir ihr einen Link zum Wählen eines neuen Passworts gesendet. Der Link funktioniert einmal, { $minutes } Minuten lang.
forgot-sent-hint = Keine E-Mail? Sehen Sie im Spam-Ordner nach, oder fragen Sie in einigen Minuten erneut.

## Passwort zurücksetzen

reset-title = Wählen Sie ein neues Passwort
reset-intro = Wählen Sie ein neues Passwort für Ihr Konto. Sie werden überall sonst abgemeldet.
reset-submit = Passwort ändern
reset-done-title = Ihr Passwort wurde geändert
reset-done-message = Melden Sie sich mit Ihrem neuen Passwort an. Alle anderen Sitzungen Ihres Kontos wurden beendet.

## Zustimmung

consent-title = { $client } erlauben?
consent-heading = { $client } den Zugriff auf Ihr Konto erlauben?
consent-asking = { $partner } bittet über seine Anwendung { $client } darum:
consent-hint = Sie können dies später widerrufen. Erlauben Sie nur Anwendungen, denen Sie vertrauen.
consent-allow = Erlauben
consent-deny = Ablehnen
scope-openid = Wissen, wer Sie auf dieser Plattform sind
scope-profile = Ihren Namen und Benutzernamen sehen
scope-email = Ihre E-Mail-Adresse sehen
scope-accounts-create = Konten erstellen
scope-offline-access = Zugriff behalten, während Sie nicht da sind
scope-other = „{ $scope }“ verwenden
login-pending = Bestätigen Sie zuerst Ihre Adresse: Folgen Sie dem Link in der E-Mail, die wir Ihnen geschickt haben, oder geben Sie den Code ein, den wir an Ihr Telefon gesendet haben.

## Confirmation pages
# In confirm-phone-intro and confirm-code-format, $max is the number of digits of a
# code; in confirm-code-wrong, $param is the number of attempts left.

confirm-title = Bestätigen Sie Ihre Adresse
confirm-intro-address = Bestätigen Sie, dass { $name } Ihnen gehört, um Ihr Konto fertigzustellen.
confirm-intro = Bestätigen Sie, dass diese Adresse Ihnen gehört, um Ihr Konto fertigzustellen.
confirm-submit = Meine Adresse bestätigen
confirmed-title = Bestätigt
confirmed-phone = Ihre Telefonnummer ist bestätigt
confirmed-address = Ihre Adresse ist bestätigt
confirmed-ready = Ihr Konto ist bereit. Sie können sich jetzt anmelden.
confirm-email-title = Ein neuer Bestätigungslink
confirm-email-intro = Geben Sie die Adresse Ihres Kontos ein, und wir senden ihr einen neuen Link, um sie zu bestätigen. Der neue Link ersetzt die zuvor gesendeten.
confirm-email-submit = Neuen Link senden
confirm-phone-title = Bestätigen Sie Ihre Telefonnummer
confirm-phone-intro = Geben Sie die Telefonnummer Ihres Kontos und den { $max }-stelligen Code ein, den wir per SMS an diese Nummer gesendet haben.
confirm-phone-field = Telefonnummer
confirm-code-field = Code
confirm-phone-submit = Bestätigen
confirm-phone-no-code = Kein Code angekommen, oder ist er abgelaufen?
confirm-phone-new-code = Neuen Code senden
confirm-link-gone-message = Links zum Bestätigen einer Adresse funktionieren einmal und laufen nach einigen Tagen ab. Wenn Ihre Adresse schon bestätigt ist, melden Sie sich an.
confirm-link-sent = Wenn diese Adresse zu einem Konto gehört, das auf seine Bestätigung wartet, ist ein neuer Link unterwegs. Er ersetzt die zuvor gesendeten Links.
confirm-code-sent = Wenn diese Telefonnummer zu einem Konto gehört, das auf seine Bestätigung wartet, ist ein neuer Code unterwegs.
confirm-email-invalid = Diese E-Mail-Adresse ist nicht gültig.
confirm-phone-invalid = Diese Telefonnummer ist nicht gültig: Geben Sie sie im internationalen Format ein, mit +, der Landesvorwahl und der Nummer (zum Beispiel +33612345678).
confirm-code-format = Ein Code besteht aus den { $max } Ziffern der SMS.
confirm-code-wrong = { $param ->
    [one] Dieser Code ist nicht richtig; Sie haben noch { $param } Versuch.
   *[other] Dieser Code ist nicht richtig; Sie haben noch { $param } Versuche.
}
confirm-code-locked-now = Dieser Code ist nicht richtig und jetzt gesperrt: Fordern Sie einen neuen Code an.
confirm-code-locked = Dieser Code wurde zu oft falsch eingegeben und funktioniert nicht mehr: Fordern Sie einen neuen Code an.
confirm-code-gone = Für diese Telefonnummer wartet kein Code: Er wurde verwendet, ersetzt oder ist abgelaufen. Fordern Sie einen neuen Code an.
confirm-code-too-many = { $minutes ->
    [one] Es wurden zu viele Codes angefordert. Versuchen Sie es in { $minutes } Minute erneut.
   *[other] Es wurden zu viele Codes angefordert. Versuchen Sie es in { $minutes } Minuten erneut.
}
confirm-link-too-many = { $minutes ->
    [one] Es wurden zu viele Links angefordert. Versuchen Sie es in { $minutes } Minute erneut.
   *[other] Es wurden zu viele Links angefordert. Versuchen Sie es in { $minutes } Minuten erneut.
}
