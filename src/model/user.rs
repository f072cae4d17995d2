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
    /// Whether the user proved they read mail at `email` (a verification
    /// or password-reset link). A new email is unverified again.
    pub verified: bool,
}

impl User {
    /// A user with an id and an email and nothing else, for tests to
    /// build on with struct update syntax.
    #[cfg(test)]
    pub(crate) fn plain() -> User {
        User {
            id: "u1".into(),
            email: "a@b.c".into(),
            name: String::new(),
            roles: vec![],
            groups: vec![],
            tenant: None,
            disabled: false,
            created: String::new(),
            password_hash: String::new(),
            generation: 0,
            verified: false,
        }
    }

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
            "verified": self.verified,
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

/// An edit of a user, checked beforehand and applied by the writer to the
/// user as stored, so that edits made at the same time all apply: a rename
/// that read the user before a disable cannot write `disabled: false` (or
/// the old token generation) back.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub email: Option<String>,
    pub name: Option<String>,
    pub roles: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    /// `Some(None)` clears the tenant.
    pub tenant: Option<Option<String>>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
    pub verified: Option<bool>,
}

impl UserChanges {
    /// Applies the changes; disabling, a new password or other roles bump
    /// the token generation, which voids every token issued before.
    pub fn apply(self, user: &mut User) {
        let mut revoke = false;
        if let Some(email) = self.email {
            if email != user.email {
                user.verified = false;
            }
            user.email = email;
        }
        if let Some(name) = self.name {
            user.name = name;
        }
        if let Some(roles) = self.roles {
            revoke |= roles != user.roles;
            user.roles = roles;
        }
        if let Some(groups) = self.groups {
            user.groups = groups;
        }
        if let Some(tenant) = self.tenant {
            user.tenant = tenant;
        }
        if let Some(disabled) = self.disabled {
            revoke |= disabled && !user.disabled;
            user.disabled = disabled;
        }
        if let Some(hash) = self.password_hash {
            user.password_hash = hash;
            revoke = true;
        }
        if let Some(verified) = self.verified {
            user.verified = verified;
        }
        if revoke {
            user.generation += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            id: "u1".into(),
            email: "a@b.c".into(),
            name: "A".into(),
            roles: vec!["x".into()],
            groups: vec![],
            tenant: Some("t".into()),
            disabled: false,
            created: String::new(),
            password_hash: "h".into(),
            generation: 3,
            verified: false,
        }
    }

    #[test]
    fn changes_that_void_tokens_bump_the_generation_once() {
        let mut renamed = user();
        UserChanges {
            name: Some("B".into()),
            roles: Some(vec!["x".into()]),
            disabled: Some(false),
            tenant: Some(None),
            ..UserChanges::default()
        }
        .apply(&mut renamed);
        assert_eq!(
            (
                renamed.name.as_str(),
                renamed.tenant.clone(),
                renamed.generation
            ),
            ("B", None, 3)
        );
        let mut voided = user();
        UserChanges {
            roles: Some(vec!["y".into()]),
            disabled: Some(true),
            password_hash: Some("h2".into()),
            ..UserChanges::default()
        }
        .apply(&mut voided);
        assert_eq!((voided.disabled, voided.generation), (true, 4));
    }
}
