//! What a viewer sees of a stored record: the one decision every path that
//! shows a record makes through [`sees`] and [`Sighted::as_seen_by`]: REST
//! get and list, WebSocket `get` and `list`, live events, replay and SSE.
//!
//! - The rules (`view`, and `list` too for a collection) are judged on the
//!   stored record, whole, with the viewer's identity as it is now.
//! - A `filter` (and a sort) sees only what the viewer may see: for a
//!   non-admin, protected fields are absent, so they cannot be probed.
//! - A missing rule lets only admins through; a rule that fails to evaluate
//!   denies.
//!
//! Deliberately free of HTTP, storage and sessions, so the store's lister
//! and the realtime hub can both call it.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::model::{Collection, Principal};
use crate::rules::{EvalContext, Expr, UserContext};

/// How far a read reaches, which decides the rules it must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// One record by id (REST and WebSocket `get`, a `c/ID` topic): `view`.
    Record,
    /// A collection (a list, or a subscription to the collection's topic):
    /// `list` and `view`.
    Collection,
}

/// Who is looking, as rules see them. Built from the identity as it is at
/// the moment of the read, never from one captured earlier.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    pub admin: bool,
    /// `None` for an anonymous viewer (`@user` is `null`).
    pub user: Option<UserContext>,
}

impl Viewer {
    /// The principal as read rules see it, as it is now.
    pub fn of(principal: &Principal) -> Viewer {
        Viewer {
            admin: principal.is_admin(),
            user: principal.rule_context(),
        }
    }

    fn context<'a>(&'a self, record: &'a Map<String, Value>, now: &'a str) -> EvalContext<'a> {
        EvalContext {
            record,
            user: self.user.as_ref(),
            now,
        }
    }
}

/// The first of `fields` this viewer may not read: a protected field, for
/// anyone but an admin. An aggregate over such a field (`max(secret)`, a
/// group on it, live or not) would show what [`Sighted::as_seen_by`]
/// hides, so it is refused.
pub fn unreadable<'f>(
    viewer: &Viewer,
    collection: &Collection,
    fields: impl IntoIterator<Item = &'f str>,
) -> Option<&'f str> {
    if viewer.admin {
        return None;
    }
    fields
        .into_iter()
        .find(|field| collection.protected.iter().any(|p| p == field))
}

/// A stored record and what non-admins may see of it, worked out once and
/// shared by every viewer (fan-out judges one record for many subscribers).
/// Borrowed for a read, owned by a change on its way to subscribers.
pub struct Sighted<'r> {
    full: Cow<'r, Map<String, Value>>,
    /// The record without its protected fields, when it has any.
    public: Option<Map<String, Value>>,
}

impl<'r> Sighted<'r> {
    pub fn new(collection: &Collection, full: &'r Map<String, Value>) -> Sighted<'r> {
        Sighted::of(collection, Cow::Borrowed(full))
    }

    pub fn owned(collection: &Collection, full: Map<String, Value>) -> Sighted<'static> {
        Sighted::of(collection, Cow::Owned(full))
    }

    /// A record with nothing to hide (`_users` changes, for admins only).
    pub fn unprotected(full: Map<String, Value>) -> Sighted<'static> {
        Sighted {
            full: Cow::Owned(full),
            public: None,
        }
    }

    fn of<'a>(collection: &Collection, full: Cow<'a, Map<String, Value>>) -> Sighted<'a> {
        let public = collection
            .protected
            .iter()
            .any(|name| full.contains_key(name))
            .then(|| {
                full.iter()
                    .filter(|(name, _)| !collection.protected.contains(*name))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            });
        Sighted { full, public }
    }

    /// The fields this viewer may see: all for admins, no protected ones
    /// for anyone else.
    pub fn as_seen_by(&self, admin: bool) -> &Map<String, Value> {
        match &self.public {
            Some(public) if !admin => public,
            _ => &self.full,
        }
    }

    /// What a viewer may see, taken rather than copied.
    pub fn into_seen_by(self, admin: bool) -> Map<String, Value> {
        match self.public {
            Some(public) if !admin => public,
            _ => self.full.into_owned(),
        }
    }

    pub fn id(&self) -> Option<&str> {
        self.full.get("id").and_then(Value::as_str)
    }
}

/// May `viewer` see this record, reached this way, through `filter`?
pub fn sees(
    viewer: &Viewer,
    collection: &Collection,
    reach: Reach,
    record: &Sighted,
    filter: Option<&Expr>,
    now: &str,
) -> bool {
    passes_rules(viewer, collection, reach, &record.full, now)
        && filter.is_none_or(|filter| {
            filter.matches(&viewer.context(record.as_seen_by(viewer.admin), now))
        })
}

/// What [`sees`] answers for every record of the collection, when neither
/// the rules nor the filter read a record's fields (an admin without a
/// filter, or rules about the viewer alone): judged once, by [`sees`]
/// itself, on an empty record. `None` when each record must be judged.
pub fn sees_every(
    viewer: &Viewer,
    collection: &Collection,
    reach: Reach,
    filter: Option<&Expr>,
    now: &str,
) -> Option<bool> {
    let Some(rules) = rules_for(viewer, collection, reach) else {
        return Some(false);
    };
    let reads_records = rules
        .iter()
        .copied()
        .chain(filter)
        .any(|expr| !expr.fields().is_empty());
    if reads_records {
        return None;
    }
    let nothing = Sighted::unprotected(Map::new());
    Some(sees(viewer, collection, reach, &nothing, filter, now))
}

/// May `viewer` open this one record (its `view` rule, no filter)?
pub fn may_view(viewer: &Viewer, collection: &Collection, record: &Sighted, now: &str) -> bool {
    sees(viewer, collection, Reach::Record, record, None, now)
}

/// The rules alone, on the whole stored record.
fn passes_rules(
    viewer: &Viewer,
    collection: &Collection,
    reach: Reach,
    record: &Map<String, Value>,
    now: &str,
) -> bool {
    if viewer.admin {
        return true;
    }
    let context = viewer.context(record, now);
    let passes = |rule: Option<&Expr>| rule.is_some_and(|rule| rule.matches(&context));
    let rules = &collection.rules;
    match reach {
        Reach::Record => passes(rules.view.as_ref()),
        Reach::Collection => passes(rules.list.as_ref()) && passes(rules.view.as_ref()),
    }
}

/// The rules a viewer's reads of a collection must pass, for planning an
/// index scan; `None` when no record can pass (a missing rule, for a
/// non-admin). Empty for admins.
pub fn rules_for<'c>(
    viewer: &Viewer,
    collection: &'c Collection,
    reach: Reach,
) -> Option<Vec<&'c Expr>> {
    if viewer.admin {
        return Some(Vec::new());
    }
    let rules = &collection.rules;
    let view = rules.view.as_ref()?;
    match reach {
        Reach::Record => Some(vec![view]),
        Reach::Collection => Some(vec![rules.list.as_ref()?, view]),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::CollectionDef;

    fn collection(def: Value) -> Collection {
        let def: CollectionDef = serde_json::from_value(def).unwrap();
        Collection::compile(1, 1, String::new(), String::new(), def).unwrap()
    }

    fn user(id: &str) -> Viewer {
        Viewer {
            admin: false,
            user: Some(UserContext {
                id: id.into(),
                email: None,
                roles: vec![],
                groups: vec![],
                tenant: None,
            }),
        }
    }

    fn record(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    const NOW: &str = "2030-01-01T00:00:00.000Z";

    #[test]
    fn a_filter_cannot_probe_a_protected_field() {
        let c = collection(json!({"name": "c", "protected": ["secret"],
            "rules": {"list": "true", "view": "true"}}));
        let r = record(json!({"id": "a", "secret": "hunter2"}));
        let sighted = Sighted::new(&c, &r);
        let probe = Expr::parse("secret > 'h'").unwrap();
        let absent = Expr::parse("secret = null").unwrap();
        assert!(!sees(
            &user("u"),
            &c,
            Reach::Collection,
            &sighted,
            Some(&probe),
            NOW
        ));
        assert!(sees(
            &user("u"),
            &c,
            Reach::Collection,
            &sighted,
            Some(&absent),
            NOW
        ));
        let admin = Viewer {
            admin: true,
            user: None,
        };
        assert!(sees(
            &admin,
            &c,
            Reach::Collection,
            &sighted,
            Some(&probe),
            NOW
        ));
        assert!(!sighted.as_seen_by(false).contains_key("secret"));
        assert!(sighted.as_seen_by(true).contains_key("secret"));
    }

    #[test]
    fn rules_see_the_whole_record_and_list_narrows_a_collection() {
        let c = collection(json!({"name": "c", "protected": ["owner_note"],
            "rules": {"list": "open = true", "view": "owner_note = @user.id"}}));
        let r = record(json!({"id": "a", "open": false, "owner_note": "u"}));
        let sighted = Sighted::new(&c, &r);
        assert!(sees(&user("u"), &c, Reach::Record, &sighted, None, NOW));
        assert!(!sees(
            &user("u"),
            &c,
            Reach::Collection,
            &sighted,
            None,
            NOW
        ));
        assert!(!sees(&user("v"), &c, Reach::Record, &sighted, None, NOW));
    }

    #[test]
    fn one_answer_for_every_record_only_when_nothing_reads_a_record() {
        let c = collection(json!({"name": "c",
            "rules": {"list": "@user != null", "view": "true"}}));
        let admin = Viewer {
            admin: true,
            user: None,
        };
        let anonymous = Viewer::default();
        let filter = Expr::parse("temp > 5").unwrap();
        let about_the_caller = Expr::parse("@user.id = 'u'").unwrap();
        let every = |viewer: &Viewer, filter: Option<&Expr>| {
            sees_every(viewer, &c, Reach::Collection, filter, NOW)
        };
        assert_eq!(every(&admin, None), Some(true));
        assert_eq!(every(&user("u"), None), Some(true));
        assert_eq!(every(&anonymous, None), Some(false));
        assert_eq!(every(&user("u"), Some(&about_the_caller)), Some(true));
        assert_eq!(every(&user("v"), Some(&about_the_caller)), Some(false));
        assert_eq!(every(&admin, Some(&filter)), None);
        let owned = collection(json!({"name": "c",
            "rules": {"list": "owner = @user.id", "view": "true"}}));
        assert_eq!(
            sees_every(&user("u"), &owned, Reach::Collection, None, NOW),
            None
        );
        let unlisted = collection(json!({"name": "c", "rules": {"view": "true"}}));
        assert_eq!(
            sees_every(&user("u"), &unlisted, Reach::Collection, None, NOW),
            Some(false)
        );
    }

    #[test]
    fn a_missing_rule_lets_only_admins_through() {
        let c = collection(json!({"name": "c", "rules": {"view": "true"}}));
        let r = record(json!({"id": "a"}));
        let sighted = Sighted::new(&c, &r);
        assert!(sees(&user("u"), &c, Reach::Record, &sighted, None, NOW));
        assert!(!sees(
            &user("u"),
            &c,
            Reach::Collection,
            &sighted,
            None,
            NOW
        ));
        let admin = Viewer {
            admin: true,
            user: None,
        };
        assert!(sees(&admin, &c, Reach::Collection, &sighted, None, NOW));
        assert!(rules_for(&user("u"), &c, Reach::Collection).is_none());
    }
}
