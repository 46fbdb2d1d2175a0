# Les pages de chaque service, en français.

## Commun

email-field = Adresse e-mail
password-field = Mot de passe
new-password-field = Nouveau mot de passe
repeat-password-field = Répétez le mot de passe
optional = (facultatif)
sign-in-link = Se connecter
password-hint = De { $min } à { $max } caractères ; les mots de passe trop courants sont refusés.
password-length = Ce mot de passe ne peut pas être utilisé : un mot de passe compte de { $min } à { $max } caractères.
password-control = Ce mot de passe ne peut pas être utilisé : un mot de passe ne contient pas de caractères de contrôle.
password-common = Ce mot de passe ne peut pas être utilisé : il est trop courant, choisissez-en un autre.
password-mismatch = Les deux mots de passe ne sont pas identiques.

## Pages d'erreur

error-hint = Vous pouvez fermer cette page. Si un lien vous a mené ici, prévenez le site qui vous l'a envoyé.
error-form-title = Ce formulaire n'a pas pu être lu
error-form-message = Revenez en arrière, rechargez la page et réessayez.
error-csrf-title = Ce formulaire a expiré
error-csrf-message = Pour votre sécurité, le formulaire n'a pas été accepté. Revenez en arrière, rechargez la page et réessayez.
error-unavailable-title = Un problème est survenu
error-unavailable-message = Le service est momentanément indisponible. Réessayez dans un instant.
error-link-title = Ce lien ne fonctionne plus
error-set-link-message = Les liens pour choisir un mot de passe ne fonctionnent qu'une fois et expirent au bout de quelques jours, et un e-mail plus récent remplace le précédent. Connectez-vous ou demandez un nouveau lien.
error-reset-link-message = Les liens de réinitialisation ne fonctionnent qu'une fois et expirent rapidement, et un e-mail plus récent remplace le précédent. Demandez un nouveau lien depuis la page de connexion.
error-authorize-title = Ce lien de connexion ne fonctionne pas
authorize-unreadable = La demande est illisible.
authorize-param-twice = Le paramètre { $param } apparaît deux fois.
authorize-no-client = La demande ne nomme aucune application (client_id manque).
authorize-unknown-client = L'application qui vous a envoyé ici n'est pas connue de ce service.
authorize-redirect-unregistered = L'adresse de retour demandée par cette application ne fait pas partie de celles qu'elle a enregistrées.
authorize-no-redirect = La demande n'indique pas où revenir (redirect_uri).
authorize-form-unreadable = Le formulaire est illisible.
authorize-signed-out = Vous avez été déconnecté. Revenez à l'application et recommencez.

## Connexion

login-title = Se connecter
login-field = Adresse e-mail ou nom d'utilisateur
login-submit = Se connecter
login-no-account = Pas encore de compte ?
login-create = Créer un compte
login-forgot = Mot de passe oublié ?
login-missing = Saisissez votre adresse e-mail ou votre nom d'utilisateur, et votre mot de passe.
login-wrong = L'adresse e-mail, le nom d'utilisateur ou le mot de passe est incorrect.
login-too-many = { $minutes ->
    [one] Trop de tentatives échouées. Réessayez dans { $minutes } minute, ou réinitialisez votre mot de passe.
   *[other] Trop de tentatives échouées. Réessayez dans { $minutes } minutes, ou réinitialisez votre mot de passe.
}

## Créer un compte

signup-title = Créer un compte
signup-name-field = Nom complet
signup-submit = Créer le compte
signup-have-account = Vous avez déjà un compte ?
signup-password-hint = Au moins { $min } caractères ; les mots de passe trop courants sont refusés.
signup-email-invalid = Cette adresse e-mail n'est pas valide.
signup-email-taken = Cette adresse e-mail a déjà un compte. Connectez-vous plutôt.
signup-name-long = Le nom complet compte au plus 1024 caractères.

## Accueil

home-title = Votre compte
home-signed-in = Vous êtes connecté.
home-signed-in-as = Vous êtes connecté en tant que { $name }.
home-sign-out = Se déconnecter

## Choisir un mot de passe (lien d'un partenaire)

set-title = Choisissez votre mot de passe
set-partner = { $partner } a créé ce compte pour vous. Choisissez un mot de passe pour le finaliser.
set-submit = Enregistrer et se connecter

## Mot de passe oublié

forgot-title = Mot de passe oublié ?
forgot-intro = Saisissez l'adresse e-mail de votre compte. Nous y enverrons un lien pour choisir un nouveau mot de passe.
forgot-submit = Envoyer le lien
forgot-back = Retour à la connexion
forgot-invalid = Saisissez une adresse e-mail valide.
forgot-sent-title = Consultez vos e-mails
forgot-sent-message = Si un compte utilise cette adresse, nous lui avons envoyé un lien pour choisir un nouveau mot de passe. Le lien fonctionne une fois, pendant { $minutes } minutes.
forgot-sent-hint = Pas d'e-mail ? Regardez dans vos courriers indésirables, ou refaites la demande dans quelques minutes.

## Réinitialiser le mot de passe

reset-title = Choisissez un nouveau mot de passe
reset-intro = Choisissez un nouveau mot de passe pour votre compte. Vous serez déconnecté partout ailleurs.
reset-submit = Changer le mot de passe
reset-done-title = Votre mot de passe a été changé
reset-done-message = Connectez-vous avec votre nouveau mot de passe. Toutes les autres sessions de votre compte ont été fermées.

## Consentement

consent-title = Autoriser { $client } ?
consent-heading = Autoriser { $client } à accéder à votre compte ?
consent-asking = { $partner } demande, par son application { $client }, à :
consent-hint = Vous pourrez retirer cette autorisation plus tard. N'autorisez que les applications de confiance.
consent-allow = Autoriser
consent-deny = Refuser
scope-openid = Savoir qui vous êtes sur cette plateforme
scope-profile = Voir votre nom et votre nom d'utilisateur
scope-email = Voir votre adresse e-mail
scope-accounts-create = Créer des comptes
scope-offline-access = Garder l'accès en votre absence
scope-other = Utiliser « { $scope } »
login-pending = Confirmez d'abord votre adresse : suivez le lien de l'e-mail que nous vous avons envoyé, ou saisissez le code envoyé sur votre téléphone.

## Confirmation pages
# In confirm-phone-intro and confirm-code-format, $max is the number of digits of a
# code; in confirm-code-wrong, $param is the number of attempts left.

confirm-title = Confirmez votre adresse
confirm-intro-address = Confirmez que { $name } est bien à vous pour finaliser votre compte.
confirm-intro = Confirmez que cette adresse est bien à vous pour finaliser votre compte.
confirm-submit = Confirmer mon adresse
confirmed-title = Confirmé
confirmed-phone = Votre numéro de téléphone est confirmé
confirmed-address = Votre adresse est confirmée
confirmed-ready = Votre compte est prêt. Vous pouvez vous connecter dès maintenant.
confirm-email-title = Un nouveau lien de confirmation
confirm-email-intro = Saisissez l'adresse de votre compte : nous lui enverrons un nouveau lien pour la confirmer. Le nouveau lien remplace ceux envoyés auparavant.
confirm-email-submit = Envoyer un nouveau lien
confirm-phone-title = Confirmez votre numéro de téléphone
confirm-phone-intro = Saisissez le numéro de téléphone de votre compte et le code à { $max } chiffres que nous y avons envoyé par SMS.
confirm-phone-field = Numéro de téléphone
confirm-code-field = Code
confirm-phone-submit = Confirmer
confirm-phone-no-code = Pas de code, ou il a expiré ?
confirm-phone-new-code = Envoyer un nouveau code
confirm-link-gone-message = Les liens de confirmation d'adresse fonctionnent une fois et expirent au bout de quelques jours. Si votre adresse est déjà confirmée, connectez-vous.
confirm-link-sent = Si cette adresse appartient à un compte en attente de confirmation, un nouveau lien est en route. Il remplace les liens envoyés auparavant.
confirm-code-sent = Si ce numéro de téléphone appartient à un compte en attente de confirmation, un nouveau code est en route.
confirm-email-invalid = Cette adresse e-mail n'est pas valide.
confirm-phone-invalid = Ce numéro de téléphone n'est pas valide : saisissez-le au format international, avec +, l'indicatif du pays et le numéro (par exemple +33612345678).
confirm-code-format = Un code se compose des { $max } chiffres du SMS.
confirm-code-wrong = { $param ->
    [one] Ce code n'est pas le bon ; il reste { $param } tentative.
   *[other] Ce code n'est pas le bon ; il reste { $param } tentatives.
}
confirm-code-locked-now = Ce code n'est pas le bon, et il est désormais bloqué : demandez un nouveau code.
confirm-code-locked = Ce code a reçu trop de tentatives erronées et ne fonctionne plus : demandez un nouveau code.
confirm-code-gone = Aucun code n'attend ce numéro de téléphone : il a été utilisé, remplacé ou a expiré. Demandez un nouveau code.
confirm-code-too-many = { $minutes ->
    [one] Trop de codes ont été demandés. Réessayez dans { $minutes } minute.
   *[other] Trop de codes ont été demandés. Réessayez dans { $minutes } minutes.
}
confirm-link-too-many = { $minutes ->
    [one] Trop de liens ont été demandés. Réessayez dans { $minutes } minute.
   *[other] Trop de liens ont été demandés. Réessayez dans { $minutes } minutes.
}
