# The pages of every service, in English (the fallback of every other language).
# Keys are shared by crates/runtime/locales/{en,fr,de,nl}/pages.ftl; a test checks
# that every language has every key.

## Shared

email-field = Email
password-field = Password
new-password-field = New password
repeat-password-field = Repeat the password
optional = (optional)
sign-in-link = Sign in
password-hint = { $min } to { $max } characters; common passwords are refused.
password-length = This password cannot be used: a password has { $min } to { $max } characters.
password-control = This password cannot be used: a password has no control characters.
password-common = This password cannot be used: it is too common; choose another.
password-mismatch = The two passwords are not the same.

## Error pages

error-hint = You can close this page. If a link brought you here, tell the site that sent you.
error-form-title = This form could not be read
error-form-message = Go back, reload the page and try again.
error-csrf-title = This form has expired
error-csrf-message = For your safety the form was not accepted. Go back, reload the page and try again.
error-unavailable-title = Something went wrong
error-unavailable-message = The service is unavailable for a moment. Try again shortly.
error-link-title = This link no longer works
error-set-link-message = Links to set a password work once and expire after a few days, and a newer email replaces an older one. Sign in, or ask for a new link.
error-reset-link-message = Links to reset a password work once and expire after a short time, and a newer email replaces an older one. Ask for a new link on the sign-in page.
error-authorize-title = This sign-in link does not work
authorize-unreadable = The request is not readable.
authorize-param-twice = The parameter { $param } appears twice.
authorize-no-client = The request names no application (client_id is missing).
authorize-unknown-client = The application that sent you here is not known to this service.
authorize-redirect-unregistered = The address this application asked to return to is not one it registered.
authorize-no-redirect = The request does not say where to return (redirect_uri).
authorize-form-unreadable = The form is not readable.
authorize-signed-out = You were signed out. Go back to the application and start again.

## Sign in

login-title = Sign in
login-field = Email or username
login-submit = Sign in
login-no-account = No account yet?
login-create = Create an account
login-forgot = Forgot your password?
login-missing = Enter your email or username and your password.
login-wrong = The email, username or password is not right.
login-too-many = { $minutes ->
    [one] Too many failed attempts. Try again in { $minutes } minute, or reset your password.
   *[other] Too many failed attempts. Try again in { $minutes } minutes, or reset your password.
}

## Create an account

signup-title = Create an account
signup-name-field = Full name
signup-submit = Create account
signup-have-account = Already have an account?
signup-password-hint = At least { $min } characters; common passwords are refused.
signup-email-invalid = This email address is not valid.
signup-email-taken = This email already has an account. Sign in instead.
signup-name-long = The full name has at most 1024 characters.

## Home

home-title = Your account
home-signed-in = You are signed in.
home-signed-in-as = You are signed in as { $name }.
home-sign-out = Sign out

## Set a password (a partner's link)

set-title = Choose your password
set-partner = { $partner } registered this account for you. Choose a password to finish it.
set-submit = Set password and sign in

## Forgot password

forgot-title = Forgot your password?
forgot-intro = Enter the email address of your account. We will send it a link to choose a new password.
forgot-submit = Send the link
forgot-back = Back to sign in
forgot-invalid = Enter a valid email address.
forgot-sent-title = Check your email
forgot-sent-message = If an account uses this address, we have sent it a link to choose a new password. The link works once, for { $minutes } minutes.
forgot-sent-hint = No email? Look in your spam folder, or ask again in a few minutes.

## Reset password

reset-title = Choose a new password
reset-intro = Choose a new password for your account. You will be signed out everywhere else.
reset-submit = Change password
reset-done-title = Your password was changed
reset-done-message = Sign in with your new password. Every other session of your account was signed out.

## Consent

consent-title = Allow { $client }?
consent-heading = Allow { $client } to access your account?
consent-asking = { $partner } is asking, through its application { $client }, to:
consent-hint = You can withdraw this later. Only allow applications you trust.
consent-allow = Allow
consent-deny = Deny
scope-openid = Know who you are on this platform
scope-profile = See your name and username
scope-email = See your email address
scope-accounts-create = Create accounts
scope-offline-access = Keep access while you are away
scope-other = Use “{ $scope }”
login-pending = Confirm your address first: follow the link in the email we sent you, or enter the code we sent to your phone.

## Confirmation pages
# In confirm-phone-intro and confirm-code-format, $max is the number of digits of a
# code; in confirm-code-wrong, $param is the number of attempts left.

confirm-title = Confirm your address
confirm-intro-address = Confirm that { $name } is yours to finish your account.
confirm-intro = Confirm that this address is yours to finish your account.
confirm-submit = Confirm my address
confirmed-title = Confirmed
confirmed-phone = Your phone number is confirmed
confirmed-address = Your address is confirmed
confirmed-ready = Your account is ready. You can sign in now.
confirm-email-title = A new confirmation link
confirm-email-intro = Enter the address of your account and we will send it a new link to confirm it. The new link replaces the ones sent before.
confirm-email-submit = Send a new link
confirm-phone-title = Confirm your phone number
confirm-phone-intro = Enter the phone number of your account and the { $max }-digit code we sent to it by text message.
confirm-phone-field = Phone number
confirm-code-field = Code
confirm-phone-submit = Confirm
confirm-phone-no-code = No code, or it expired?
confirm-phone-new-code = Send a new code
confirm-link-gone-message = Links to confirm an address work once and expire after a few days. If your address is confirmed already, sign in.
confirm-link-sent = If this address belongs to an account waiting for confirmation, a new link is on its way. It replaces the links sent before.
confirm-code-sent = If this phone number belongs to an account waiting for confirmation, a new code is on its way.
confirm-email-invalid = This email address is not valid.
confirm-phone-invalid = This phone number is not valid: enter it in international form, with +, the country code and the number (such as +33612345678).
confirm-code-format = A code is the { $max } digits of the text message.
confirm-code-wrong = { $param ->
    [one] This code is not right; { $param } attempt left.
   *[other] This code is not right; { $param } attempts left.
}
confirm-code-locked-now = This code is not right, and it is now locked: ask for a new code.
confirm-code-locked = This code had too many wrong attempts and no longer works: ask for a new code.
confirm-code-gone = No code is waiting for this phone number: it was used, replaced or expired; ask for a new code.
confirm-code-too-many = { $minutes ->
    [one] Too many codes were asked for; try again in { $minutes } minute.
   *[other] Too many codes were asked for; try again in { $minutes } minutes.
}
confirm-link-too-many = { $minutes ->
    [one] Too many links were asked for; try again in { $minutes } minute.
   *[other] Too many links were asked for; try again in { $minutes } minutes.
}
