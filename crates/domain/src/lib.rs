//! The types and rules every admit service shares.
//!
//! Values are parsed once, at the edge, into the types of this crate ("parse, don't
//! validate"): inside the platform an [`Email`] is always a valid, normalised address.
//! Nothing here knows about HTTP or SQL.

pub mod contact;
pub mod error;
pub mod locale;
pub mod message;
pub mod password;
pub mod secret;
pub mod signup;
pub mod stage;
pub mod username;

pub use contact::{Contact, ContactKind, Email, Phone};
pub use error::FieldError;
pub use locale::Locale;
pub use message::{Envelope, Notification, PartnerBrand};
pub use password::{Password, PasswordPolicy, PasswordProblem};
pub use signup::{AccountType, NewAccount};
pub use stage::Stage;
pub use username::Username;
