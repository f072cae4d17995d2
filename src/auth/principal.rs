//! Who a request acts as.

use std::sync::Arc;

use crate::model::User;
use crate::rules::UserContext;

#[derive(Debug, Clone)]
pub enum Principal {
    Anonymous,
    User(Arc<User>),
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::User(user) if user.is_admin())
    }

    /// What `@user` is in rules: `None` is `null`.
    pub fn rule_context(&self) -> Option<UserContext> {
        match self {
            Principal::Anonymous => None,
            Principal::User(user) => Some(user.rule_context()),
        }
    }

    /// The id recorded as `owner` and as the change's actor.
    pub fn id(&self) -> Option<String> {
        match self {
            Principal::Anonymous => None,
            Principal::User(user) => Some(user.id.clone()),
        }
    }

    pub fn user(&self) -> Option<&User> {
        match self {
            Principal::Anonymous => None,
            Principal::User(user) => Some(user),
        }
    }
}
