//! Who a request acts as.

use std::sync::Arc;

use super::{ApiKey, User};
use crate::rules::UserContext;

#[derive(Debug, Clone)]
pub enum Principal {
    Anonymous,
    User(Arc<User>),
    /// A device or backend. In rules it is `@user` with the key's id and
    /// roles, and no email, groups or tenant.
    ApiKey(Arc<ApiKey>),
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.roles().iter().any(|r| r == "admin")
    }

    pub fn roles(&self) -> &[String] {
        match self {
            Principal::Anonymous => &[],
            Principal::User(user) => &user.roles,
            Principal::ApiKey(key) => &key.roles,
        }
    }

    /// What `@user` is in rules: `None` is `null`.
    pub fn rule_context(&self) -> Option<UserContext> {
        match self {
            Principal::Anonymous => None,
            Principal::User(user) => Some(user.rule_context()),
            Principal::ApiKey(key) => Some(UserContext {
                id: key.id.clone(),
                email: None,
                roles: key.roles.clone(),
                groups: Vec::new(),
                tenant: None,
            }),
        }
    }

    /// The id recorded as `owner` and as the change's actor.
    pub fn id(&self) -> Option<String> {
        match self {
            Principal::Anonymous => None,
            Principal::User(user) => Some(user.id.clone()),
            Principal::ApiKey(key) => Some(key.id.clone()),
        }
    }

    pub fn user(&self) -> Option<&User> {
        match self {
            Principal::User(user) => Some(user),
            Principal::Anonymous | Principal::ApiKey(_) => None,
        }
    }
}
