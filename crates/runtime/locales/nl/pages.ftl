# De pagina's van elke dienst, in het Nederlands.

## Gedeeld

email-field = E-mailadres
password-field = Wachtwoord
new-password-field = Nieuw wachtwoord
repeat-password-field = Herhaal het wachtwoord
optional = (optioneel)
sign-in-link = Inloggen
password-hint = { $min } tot { $max } tekens; veelgebruikte wachtwoorden worden geweigerd.
password-length = Dit wachtwoord kan niet worden gebruikt: een wachtwoord heeft { $min } tot { $max } tekens.
password-control = Dit wachtwoord kan niet worden gebruikt: een wachtwoord bevat geen stuurtekens.
password-common = Dit wachtwoord kan niet worden gebruikt: het is te gangbaar, kies een ander.
password-mismatch = De twee wachtwoorden zijn niet gelijk.

## Foutpagina's

error-hint = Je kunt deze pagina sluiten. Bracht een link je hier, laat het dan weten aan de site die hem stuurde.
error-form-title = Dit formulier kon niet worden gelezen
error-form-message = Ga terug, laad de pagina opnieuw en probeer het nog eens.
error-csrf-title = Dit formulier is verlopen
error-csrf-message = Voor je veiligheid is het formulier niet aangenomen. Ga terug, laad de pagina opnieuw en probeer het nog eens.
error-unavailable-title = Er ging iets mis
error-unavailable-message = De dienst is even niet beschikbaar. Probeer het zo meteen opnieuw.
error-link-title = Deze link werkt niet meer
error-set-link-message = Links om een wachtwoord in te stellen werken één keer en verlopen na een paar dagen, en een nieuwere e-mail vervangt een oudere. Log in, of vraag een nieuwe link aan.
error-reset-link-message = Links om een wachtwoord opnieuw in te stellen werken één keer en verlopen na korte tijd, en een nieuwere e-mail vervangt een oudere. Vraag een nieuwe link aan op de inlogpagina.
error-authorize-title = Deze inloglink werkt niet
authorize-unreadable = Het verzoek is niet leesbaar.
authorize-param-twice = De parameter { $param } komt twee keer voor.
authorize-no-client = Het verzoek noemt geen applicatie (client_id ontbreekt).
authorize-unknown-client = De applicatie die je hierheen stuurde is bij deze dienst niet bekend.
authorize-redirect-unregistered = Het adres waarnaar deze applicatie wil terugkeren is niet een van de geregistreerde.
authorize-no-redirect = Het verzoek zegt niet waarheen terug te keren (redirect_uri).
authorize-form-unreadable = Het formulier is niet leesbaar.
authorize-signed-out = Je bent afgemeld. Ga terug naar de applicatie en begin opnieuw.

## Inloggen

login-title = Inloggen
login-field = E-mailadres of gebruikersnaam
login-submit = Inloggen
login-no-account = Nog geen account?
login-create = Account aanmaken
login-forgot = Wachtwoord vergeten?
login-missing = Vul je e-mailadres of gebruikersnaam en je wachtwoord in.
login-wrong = Het e-mailadres, de gebruikersnaam of het wachtwoord klopt niet.
login-too-many = { $minutes ->
    [one] Te veel mislukte pogingen. Probeer het over { $minutes } minuut opnieuw, of stel je wachtwoord opnieuw in.
   *[other] Te veel mislukte pogingen. Probeer het over { $minutes } minuten opnieuw, of stel je wachtwoord opnieuw in.
}

## Account aanmaken

signup-title = Account aanmaken
signup-name-field = Volledige naam
signup-submit = Account aanmaken
signup-have-account = Heb je al een account?
signup-password-hint = Minstens { $min } tekens; veelgebruikte wachtwoorden worden geweigerd.
signup-email-invalid = Dit e-mailadres is niet geldig.
signup-email-taken = Dit e-mailadres heeft al een account. Log in plaats daarvan in.
signup-name-long = De volledige naam heeft hoogstens 1024 tekens.

## Start

home-title = Je account
home-signed-in = Je bent ingelogd.
home-signed-in-as = Je bent ingelogd als { $name }.
home-sign-out = Uitloggen

## Wachtwoord instellen (link van een partner)

set-title = Kies je wachtwoord
set-partner = { $partner } heeft dit account voor je aangemaakt. Kies een wachtwoord om het af te ronden.
set-submit = Wachtwoord instellen en inloggen

## Wachtwoord vergeten

forgot-title = Wachtwoord vergeten?
forgot-intro = Vul het e-mailadres van je account in. We sturen er een link naartoe om een nieuw wachtwoord te kiezen.
forgot-submit = Stuur de link
forgot-back = Terug naar inloggen
forgot-invalid = Vul een geldig e-mailadres in.
forgot-sent-title = Kijk in je e-mail
forgot-sent-message = Als een account dit adres gebruikt, hebben we er een link naartoe gestuurd om een nieuw wachtwoord te kiezen. De link werkt één keer, { $minutes } minuten lang.
forgot-sent-hint = Geen e-mail? Kijk in je spammap, of vraag het over een paar minuten opnieuw.

## Wachtwoord opnieuw instellen

reset-title = Kies een nieuw wachtwoord
reset-intro = Kies een nieuw wachtwoord voor je account. Je wordt overal elders afgemeld.
reset-submit = Wachtwoord wijzigen
reset-done-title = Je wachtwoord is gewijzigd
reset-done-message = Log in met je nieuwe wachtwoord. Alle andere sessies van je account zijn beëindigd.

## Toestemming

consent-title = { $client } toestaan?
consent-heading = { $client } toegang geven tot je account?
consent-asking = { $partner } vraagt, via zijn applicatie { $client }, om:
consent-hint = Je kunt dit later intrekken. Sta alleen applicaties toe die je vertrouwt.
consent-allow = Toestaan
consent-deny = Weigeren
scope-openid = Weten wie je bent op dit platform
scope-profile = Je naam en gebruikersnaam zien
scope-email = Je e-mailadres zien
scope-accounts-create = Accounts aanmaken
scope-offline-access = Toegang houden terwijl je weg bent
scope-other = „{ $scope }” gebruiken
login-pending = Bevestig eerst je adres: volg de link in de e-mail die we je stuurden, of voer de code in die we naar je telefoon stuurden.

## Confirmation pages
# In confirm-phone-intro and confirm-code-format, $max is the number of digits of a
# code; in confirm-code-wrong, $param is the number of attempts left.

confirm-title = Bevestig je adres
confirm-intro-address = Bevestig dat { $name } van jou is om je account af te ronden.
confirm-intro = Bevestig dat dit adres van jou is om je account af te ronden.
confirm-submit = Mijn adres bevestigen
confirmed-title = Bevestigd
confirmed-phone = Je telefoonnummer is bevestigd
confirmed-address = Je adres is bevestigd
confirmed-ready = Je account is klaar. Je kunt nu inloggen.
confirm-email-title = Een nieuwe bevestigingslink
confirm-email-intro = Vul het adres van je account in en we sturen er een nieuwe link naartoe om het te bevestigen. De nieuwe link vervangt de links die we eerder stuurden.
confirm-email-submit = Nieuwe link sturen
confirm-phone-title = Bevestig je telefoonnummer
confirm-phone-intro = Vul het telefoonnummer van je account in en de code van { $max } cijfers die we er per sms naartoe stuurden.
confirm-phone-field = Telefoonnummer
confirm-code-field = Code
confirm-phone-submit = Bevestigen
confirm-phone-no-code = Geen code gekregen, of is hij verlopen?
confirm-phone-new-code = Nieuwe code sturen
confirm-link-gone-message = Links om een adres te bevestigen werken één keer en verlopen na een paar dagen. Is je adres al bevestigd, log dan in.
confirm-link-sent = Als dit adres bij een account hoort dat op bevestiging wacht, is er een nieuwe link onderweg. Die vervangt de links die we eerder stuurden.
confirm-code-sent = Als dit telefoonnummer bij een account hoort dat op bevestiging wacht, is er een nieuwe code onderweg.
confirm-email-invalid = Dit e-mailadres is niet geldig.
confirm-phone-invalid = Dit telefoonnummer is niet geldig: vul het in internationale vorm in, met +, de landcode en het nummer (bijvoorbeeld +33612345678).
confirm-code-format = Een code bestaat uit de { $max } cijfers van de sms.
confirm-code-wrong = { $param ->
    [one] Deze code klopt niet; je hebt nog { $param } poging.
   *[other] Deze code klopt niet; je hebt nog { $param } pogingen.
}
confirm-code-locked-now = Deze code klopt niet en is nu geblokkeerd: vraag een nieuwe code aan.
confirm-code-locked = Deze code is te vaak verkeerd ingevuld en werkt niet meer: vraag een nieuwe code aan.
confirm-code-gone = Er wacht geen code op dit telefoonnummer: hij is gebruikt, vervangen of verlopen. Vraag een nieuwe code aan.
confirm-code-too-many = { $minutes ->
    [one] Er zijn te veel codes aangevraagd. Probeer het over { $minutes } minuut opnieuw.
   *[other] Er zijn te veel codes aangevraagd. Probeer het over { $minutes } minuten opnieuw.
}
confirm-link-too-many = { $minutes ->
    [one] Er zijn te veel links aangevraagd. Probeer het over { $minutes } minuut opnieuw.
   *[other] Er zijn te veel links aangevraagd. Probeer het over { $minutes } minuten opnieuw.
}
