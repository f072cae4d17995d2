//! Users as stored. The password hash and token generation never leave the
//! server; `public_json` is the only view the API serves.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub tenant: Option<String>,
    pub disabled: bool,
    pub created: String,
    pub password_hash: String,
    /// Bumped when the user is disabled or their password or roles change;
    /// tokens carry the generation they were issued under.
    pub generation: u64,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }

    pub fn public_json(&self) -> Value {
        json!({
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "roles": self.roles,
            "groups": self.groups,
            "tenant": self.tenant,
            "disabled": self.disabled,
            "created": self.created,
        })
    }

    pub fn rule_context(&self) -> crate::rules::UserContext {
        crate::rules::UserContext {
            id: self.id.clone(),
            email: Some(self.email.clone()),
            roles: self.roles.clone(),
            groups: self.groups.clone(),
            tenant: self.tenant.clone(),
        }
    }
}

/// Emails are compared case-insensitively and stored trimmed and lowercased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Control characters (NUL, ESC, DEL, C1) are refused with the whitespace:
/// an email is shown in the admin UI, logs and mail tools, where they would
/// truncate or rewrite what is displayed.
pub fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}
