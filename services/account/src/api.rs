//! The account service's wire types as the OpenAPI description shows them. The
//! handlers parse bodies field by field (to name the exact field that is wrong), so
//! these types document the contract; the end-to-end tests hold both to it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /account`, explicit method (document 003).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
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
    /// Case-sensitive; 6 to 18 characters of any kind by default (configurable);
    /// common passwords are refused.
    #[schema(min_length = 6, max_length = 18)]
    pub password: String,
    pub recaptcha: Option<Recaptcha>,
    /// Unique case-insensitively; 3 to 64 of letters, digits, `.`, `_`, `-`.
    #[schema(min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub username: Option<String>,
    pub account_type: Option<AccountTypeDoc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recaptcha {
    pub private_key: String,
    pub challenge: String,
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
    /// With `auto_sign_in=true`: when the login session expires.
    pub expiration_time: Option<String>,
    /// With `auto_sign_in=true`: the login session.
    pub session_id: Option<String>,
}

/// Every error of every API.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `InvalidArgumentException`, `IllegalAccessException`,
    /// `ContactAlreadyUsedException`, `UsernameAlreadyUsedException`,
    /// `UnauthorizedException`, `ServiceUnavailableException`, ...
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

#[derive(utoipa::OpenApi)]
#[openapi(
    modifiers(&PartnerSecurity),
    info(
        title = "admit",
        description = "Partner account registration and access platform."
    ),
    paths(
        crate::create_account,
        crate::partner_api::create,
        crate::batch::user_create,
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
        crate::batch::BatchUser,
        crate::batch::BatchResponse,
        crate::batch::RowResult,
        crate::batch::Reason,
        crate::batch::Status,
        crate::batch::Counts,
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
