//! The access layer: every record operation asks here whether the caller may
//! do it. Admins pass every rule; a missing rule means admins only; a rule
//! that fails to evaluate denies.
//!
//! A write check hands back an [`Allowed`] permit, and the writer's record
//! operations cannot be built without one, so no handler can write a record
//! it forgot to check.

use serde_json::{Map, Value};

use crate::model::Collection;
use crate::model::Principal;
use crate::rules::{EvalContext, Expr};
use crate::visibility::Viewer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    List,
    View,
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn rule(self, collection: &Collection) -> Option<&Expr> {
        let rules = &collection.rules;
        match self {
            Action::List => rules.list.as_ref(),
            Action::View => rules.view.as_ref(),
            Action::Create => rules.create.as_ref(),
            Action::Update => rules.update.as_ref(),
            Action::Delete => rules.delete.as_ref(),
        }
    }
}

/// Proof that the access layer allowed a record write. Only this module
/// makes them: through [`Caller::authorize`], or [`system`] for the server's
/// own writes.
#[derive(Debug)]
pub struct Allowed {
    _private: (),
}

/// A permit for writes the server makes on its own behalf (retention), and
/// for tests of the storage layer.
pub fn system() -> Allowed {
    Allowed { _private: () }
}

/// A caller as rules see them, built once per request. What a caller may
/// *see* is decided by [`crate::visibility`]; this decides what it may *do*.
pub struct Caller<'p> {
    pub principal: &'p Principal,
    pub viewer: Viewer,
    pub now: String,
}

impl<'p> Caller<'p> {
    pub fn new(principal: &'p Principal) -> Caller<'p> {
        Caller {
            principal,
            viewer: Viewer::of(principal),
            now: crate::clock::now_rfc3339(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.viewer.admin
    }

    /// May the caller write (`action`) this record, as stored or as it would
    /// be written?
    fn allows(&self, collection: &Collection, action: Action, record: &Map<String, Value>) -> bool {
        action
            .rule(collection)
            .map_or(self.is_admin(), |rule| self.passes(rule, record))
    }

    /// Does the caller pass this rule on this record? Admins pass every rule.
    pub fn passes(&self, rule: &Expr, record: &Map<String, Value>) -> bool {
        self.is_admin()
            || rule.matches(&EvalContext {
                record,
                user: self.viewer.user.as_ref(),
                now: &self.now,
            })
    }

    /// False when the rule for `action` cannot pass for this caller whatever
    /// the record (missing rule, or e.g. `@user != null` for anonymous).
    pub fn may_ever(&self, collection: &Collection, action: Action) -> bool {
        self.is_admin()
            || action
                .rule(collection)
                .is_some_and(|rule| rule.can_be_true_for(self.viewer.user.as_ref(), &self.now))
    }

    /// Like [`Caller::allows`], for writes: the permit the writer requires.
    pub fn authorize(
        &self,
        collection: &Collection,
        action: Action,
        record: &Map<String, Value>,
    ) -> Option<Allowed> {
        self.allows(collection, action, record)
            .then_some(Allowed { _private: () })
    }
}

/// Proof that the caller is an admin: the admin-only services (users,
/// collections, API keys, settings) take one, and only [`admin`] makes it,
/// so no transport can reach them having forgotten the check.
#[derive(Debug, Clone)]
pub struct AdminPermit {
    principal: Principal,
}

impl AdminPermit {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The admin's id, recorded as the actor of what it changes.
    pub fn id(&self) -> Option<String> {
        self.principal.id()
    }
}

/// Why [`admin`] refused: nobody signed in, or someone who is not an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmin {
    Anonymous,
    NotAdmin,
}

/// Admin status comes from the principal, which the auth layer built from
/// the stored user (or key), never from a token claim.
pub fn admin(principal: Principal) -> Result<AdminPermit, NotAdmin> {
    match principal {
        Principal::Anonymous => Err(NotAdmin::Anonymous),
        p if !p.is_admin() => Err(NotAdmin::NotAdmin),
        principal => Ok(AdminPermit { principal }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::User;

    fn user_with(roles: &[&str]) -> Principal {
        Principal::User(Arc::new(User {
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..User::plain()
        }))
    }

    #[test]
    fn only_an_admin_gets_the_admin_permit() {
        assert_eq!(admin(Principal::Anonymous).err(), Some(NotAdmin::Anonymous));
        assert_eq!(
            admin(user_with(&["editor"])).err(),
            Some(NotAdmin::NotAdmin)
        );
        let permit = admin(user_with(&["editor", "admin"])).expect("an admin");
        assert_eq!(permit.id().as_deref(), Some("u1"));
    }
}
