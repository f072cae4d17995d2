//! What a topic name refers to, once resolved for a subscriber.

use std::sync::Arc;

use super::{Ops, Subscription};
use crate::model::Collection;
use crate::rules::Expr;
use crate::store::topics::Topic;

/// What a topic name refers to.
#[derive(Clone)]
pub enum Target {
    Collection(Arc<Collection>),
    Record(Arc<Collection>, String),
    Custom(Arc<Topic>),
    /// `_users` and `_connections`: admins only.
    System,
}

impl Target {
    /// The subscription to this target as the hub keeps it.
    pub fn subscription(&self, topic: &str, ops: Ops, filter: Option<Arc<Expr>>) -> Subscription {
        let collection_id = match self {
            Target::Collection(c) | Target::Record(c, _) => Some(c.id),
            Target::Custom(_) | Target::System => None,
        };
        Subscription {
            topic: topic.to_owned(),
            collection_id,
            ops,
            filter,
            aggregate: None,
            presence: matches!(self, Target::Custom(custom) if custom.def.presence),
        }
    }
}
