//! The deployment stage, which decides how strict the public sign-up is (SPEC.md §3).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The embedded default runs here.
    #[default]
    Development,
    Integration,
    Staging,
    Production,
}

impl Stage {
    /// Staging and production refuse anonymous callers and require a CAPTCHA.
    pub fn is_strict(self) -> bool {
        matches!(self, Stage::Staging | Stage::Production)
    }
}
