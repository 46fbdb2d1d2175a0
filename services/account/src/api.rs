//! The account service's wire types as the OpenAPI description shows them. The
//! handlers parse bodies field by field (to name the exact field that is wrong), so
//! these types document the contract; the end-to-end tests hold both to it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /account`, explicit method (document 003).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"contacts":[["EMAIL","Doc@Example.com",true]],"full_name":"Doc Test","locale":"eng-US","password":"doctest1","username":"doctest"}))]
pub struct SignupRequest {
    /// `[name, value, is_primary]` tuples; name `EMAIL` (RFC 5322 addr-spec, at most 254
    /// characters, unique case-insensitively) or `PHONE` (E.164, unique). `is_primary`
    /// is optional: the first contact of a type is primary by default, and at most one
    /// per type may be. Optional only when `username` is given.
    #[schema(value_type = Option<Vec<Vec<serde_json::Value>>>, max_items = 20)]
    pub contacts: Option<Vec<Vec<serde_json::Value>>>,
    #[schema(max_length = 200)]
    pub full_name: Option<String>,
    /// ISO 639-3, optionally `-` and ISO 3166-1 alpha-2: `eng`, `eng-US`.
    #[schema(pattern = "^[A-Za-z]{3}(-[A-Za-z]{2})?$")]
    pub locale: Option<String>,
    /// Case-sensitive; 6 to 18 characters by default (configurable), no control
    /// characters; common passwords are refused.
    #[schema(
        min_length = 6,
        max_length = 18,
        pattern = r"^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub password: String,
    pub recaptcha: Option<Recaptcha>,
    /// Unique case-insensitively; 3 to 64 of letters, digits, `.`, `_`, `-`.
    #[schema(min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub username: Option<String>,
    pub account_type: Option<AccountTypeDoc>,
}

/// `POST /account`'s body: the explicit method (contacts and a password) or the
/// implicit one (a social provider's access token). A body with `access_token` or
/// `provider_name` is the implicit method.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SignupBody {
    Explicit(SignupRequest),
    Implicit(SocialSignupRequest),
}

/// `POST /account`, implicit method (document 003): sign-up with a social provider's
/// access token. The platform asks the provider whom the token belongs to (facebook:
/// Graph `/me` with `appsecret_proof`; google and OpenID Connect providers: their
/// userinfo endpoint), requires that user to be `user_id`, and creates an account
/// linked to that identity, without a password. The provider's address is kept, as
/// confirmed, only when the provider says it is verified; an address that belongs to
/// an existing account is refused (409 on `access_token`), never linked to it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"provider_name":"google","access_token":"ya29.a0Af…","user_id":"110169484474386276334","oauth_consumer_key":"1234.apps.googleusercontent.com","locale":"eng-US"}))]
pub struct SocialSignupRequest {
    /// The provider's access token for the user; asked about, never stored. A token
    /// the provider refuses, or a provider that fails or does not answer in time, is
    /// 403 on this field.
    #[schema(max_length = 4096)]
    pub access_token: String,
    /// A provider configured in `account.social.providers` (`facebook`, `google`, or
    /// a named OpenID Connect provider). `foursquare` and `gowalla`, which document
    /// 003 names, no longer exist: 400.
    #[schema(max_length = 64)]
    pub provider_name: String,
    /// The user's identifier at the provider (OIDC `sub`, Facebook `id`): must be the
    /// token's user (else 403 on this field). An identity registers one account
    /// (409 on this field the second time).
    #[schema(max_length = 255)]
    pub user_id: String,
    /// The provider's client id of the calling application. Required, and checked
    /// (403 on this field), when the provider is configured with `client_ids`; the
    /// provider is then also asked (RFC 7662 introspection where configured, Google's
    /// tokeninfo for google) whether the token itself was issued to one of them
    /// (403 on `access_token` if not).
    #[schema(max_length = 512)]
    pub oauth_consumer_key: Option<String>,
    /// Accepted for document 003's integrations; never stored or used.
    #[schema(max_length = 1024)]
    pub oauth_consumer_secret: Option<String>,
    /// ISO 639-3, optionally `-` and ISO 3166-1 alpha-2: `eng`, `eng-US`.
    #[schema(pattern = "^[A-Za-z]{3}(-[A-Za-z]{2})?$")]
    pub locale: Option<String>,
    /// When the access token expires: RFC 3339, `20261203T100000+0000`, or Unix
    /// seconds. A time in the past is refused (400).
    #[schema(value_type = Option<String>)]
    pub expiration_time: Option<serde_json::Value>,
    pub account_type: Option<AccountTypeDoc>,
}

/// Document 003's CAPTCHA object. Required of a public application (`X-Client-Id`) in
/// the staging and production stages, skipped in development and integration. The
/// platform POSTs `response` to the configured siteverify endpoint (reCAPTCHA,
/// hCaptcha or Cloudflare Turnstile) with its own configured secret and the caller's
/// address as `remoteip`; a provider `score` below `account.captcha.min_score` fails.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recaptcha {
    /// Accepted for document 003's shape and not used: the siteverify secret is the
    /// platform's own (`account.captcha.secret`), since a public application cannot
    /// keep one.
    #[schema(max_length = 4096)]
    pub private_key: String,
    /// reCAPTCHA v1's challenge id; accepted and not sent (today's providers issue
    /// a single token).
    #[schema(max_length = 4096)]
    pub challenge: String,
    /// The token the CAPTCHA widget gave the user: siteverify's `response`.
    #[schema(max_length = 4096)]
    pub response: String,
}

/// `test` accounts are deleted with everything attached 24 hours after creation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountTypeDoc {
    Standard,
    Test,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SignupResponse {
    pub account_id: String,
    /// RFC 3339, UTC.
    pub creation_time: String,
    /// With `auto_sign_in=true`: when the login session expires (RFC 3339, UTC).
    pub expiration_time: Option<String>,
    /// With `auto_sign_in=true`: the login session, the same the pages use. The
    /// response also sets it as the `__Host-admit_session` cookie (HttpOnly, Secure,
    /// SameSite=Lax); a native app may send it as that cookie's value, so the
    /// authorize page skips the login.
    pub session_id: Option<String>,
}

/// Every error of every API.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `InvalidArgumentException`, `IllegalAccessException`,
    /// `ContactAlreadyUsedException`, `UsernameAlreadyUsedException`,
    /// `UnauthorizedException`, `ServiceUnavailableException`,
    /// `RateLimitExceededException` and `QuotaExceededException` (429, per-partner
    /// limits, with `Retry-After`), ...
    pub error: String,
    pub message: String,
    /// The field at fault, as a path into the body (`contacts[0][1]`).
    pub field: Option<String>,
}

/// The partner credentials the partner endpoints name.
pub struct PartnerSecurity;

impl utoipa::Modify for PartnerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "client_credentials",
            SecurityScheme::OAuth2(OAuth2::new([Flow::ClientCredentials(
                ClientCredentials::new(
                    "/oauth/token",
                    Scopes::from_iter([("accounts:create", "Create accounts for the partner")]),
                ),
            )])),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A partner API key (`admit api-key create`)"))
                    .build(),
            ),
        );
    }
}

/// Every 503 carries `Retry-After` (the runtime adds it to any 503 a handler gives).
pub struct RetryAfter;

impl utoipa::Modify for RetryAfter {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{Header, RefOr};
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                if let Some(RefOr::T(res)) = op.responses.responses.get_mut("503") {
                    let mut header = Header::new(ObjectBuilder::new().schema_type(Type::Integer));
                    header.description =
                        Some("Seconds to wait before retrying the same request".into());
                    res.headers.insert("Retry-After".into(), RefOr::T(header));
                }
            }
        }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    modifiers(&PartnerSecurity, &RetryAfter),
    info(
        title = "admit",
        description = "Partner account registration and access platform."
    ),
    paths(
        crate::create_account,
        crate::partner_api::create,
        crate::batch::user_create,
        crate::reset::forgot_page,
        crate::reset::forgot,
        crate::password::reset_password_page,
        crate::password::reset_password
,
        crate::confirm::confirm_api,
        crate::confirm::request_code_api,
        crate::confirm::confirm_page,
        crate::confirm::confirm,
        crate::confirm::confirm_phone_page,
        crate::confirm::confirm_phone,
        crate::confirm::request_code_page,
        crate::confirm::email_page,
        crate::confirm::request_link_page
    ),
    components(schemas(
        SignupBody,
        SocialSignupRequest,
        SignupRequest,
        SignupResponse,
        ErrorBody,
        Recaptcha,
        AccountTypeDoc,
        crate::partner_api::PartnerAccountRequest,
        crate::partner_api::PartnerAccountResponse,
        crate::partner_api::PartnerAccount,
        crate::partner_api::AccessCode,
        crate::partner_api::PreferredContact,
        crate::batch::BatchRequest,
        crate::batch::OneUser,
        crate::batch::ManyUsers,
        crate::batch::BatchUser,
        crate::batch::BatchResponse,
        crate::batch::RowResult,
        crate::batch::Reason,
        crate::batch::Status,
        crate::batch::Counts,
        crate::reset::ForgotForm,
        crate::password::PasswordForm
,
        crate::confirm::ConfirmationRequest,
        crate::confirm::ConfirmationResponse,
        crate::confirm::CodeRequest,
        crate::confirm::CodeResponse,
        crate::confirm::ConfirmFormDoc,
        crate::confirm::PhoneFormDoc,
        crate::confirm::CodeFormDoc,
        crate::confirm::EmailFormDoc
    ))
)]
pub struct AccountApi;
