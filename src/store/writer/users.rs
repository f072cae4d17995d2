//! Users: create, update and delete, with the `_users` change entries
//! that close sessions; the last enabled admin cannot be removed.

use super::{Committed, Entry, WriteError, WriterState};
use crate::model::User;
use crate::store::change::{ChangeKind, USERS_ID};
use crate::store::codec;
use crate::store::{keys, Batch};

impl WriterState {
    pub(super) fn existing_user(&self, id: &str) -> Result<User, WriteError> {
        self.store.get_user(id)?.ok_or(WriteError::UserNotFound)
    }

    /// Whether `user` is the only enabled admin: from the writer's own set
    /// of them, so no change to a user scans every user.
    pub(super) fn is_last_admin(&self, user: &User) -> Result<bool, WriteError> {
        let enabled_admin = user.is_admin() && !user.disabled;
        Ok(enabled_admin && self.admins.len() == 1 && self.admins.contains(&user.id))
    }

    /// Keeps the set of enabled admins in step with a committed change.
    fn track_admin(&mut self, id: &str, now: Option<&User>) {
        match now {
            Some(user) if user.is_admin() && !user.disabled => {
                self.admins.insert(id.to_owned());
            }
            _ => {
                self.admins.remove(id);
            }
        }
    }

    pub(super) fn put_user(
        &mut self,
        old: Option<User>,
        user: User,
    ) -> Result<Committed, WriteError> {
        let data = self.store.data().clone();
        let mut batch = Batch::default();
        let email_changed = old.as_ref().is_none_or(|o| o.email != user.email);
        if email_changed && data.contains_key(keys::email(&user.email))? {
            return Err(WriteError::EmailTaken);
        }
        if let Some(old) = &old {
            let demoted = !user.is_admin() || user.disabled;
            if demoted && self.is_last_admin(old)? {
                return Err(WriteError::LastAdmin);
            }
            if email_changed {
                batch.remove(keys::email(&old.email));
            }
        } else if data.contains_key(keys::user(&user.id))? {
            return Err(WriteError::Conflict(user.id));
        }
        batch.insert(keys::email(&user.email), user.id.as_bytes());
        batch.insert(keys::user(&user.id), codec::encode_user(&user));
        let first_seq = self.next_seq;
        let kind = if old.is_some() {
            ChangeKind::Update
        } else {
            ChangeKind::Create
        };
        let before = old.map(|o| public_bytes(&o));
        let after = Some(public_bytes(&user));
        self.change(
            &mut batch,
            Entry {
                kind,
                collection: (USERS_ID, "_users"),
                record_id: &user.id,
                before,
                after,
                actor: &None,
            },
        );
        self.commit(batch, first_seq)?;
        self.track_admin(&user.id, Some(&user));
        Ok(Committed {
            repeated: false,
            seqs: self.seqs_since(first_seq),
            collection: None,
        })
    }

    pub(super) fn delete_user(&mut self, id: &str) -> Result<Committed, WriteError> {
        let old = self.existing_user(id)?;
        if self.is_last_admin(&old)? {
            return Err(WriteError::LastAdmin);
        }
        let mut batch = Batch::default();
        batch.remove(keys::user(id));
        batch.remove(keys::email(&old.email));
        let first_seq = self.next_seq;
        self.change(
            &mut batch,
            Entry {
                kind: ChangeKind::Delete,
                collection: (USERS_ID, "_users"),
                record_id: id,
                before: Some(public_bytes(&old)),
                after: None,
                actor: &None,
            },
        );
        self.commit(batch, first_seq)?;
        self.track_admin(id, None);
        Ok(Committed {
            repeated: false,
            seqs: self.seqs_since(first_seq),
            collection: None,
        })
    }
}

fn public_bytes(user: &User) -> Vec<u8> {
    serde_json::to_vec(&user.public_json()).unwrap_or_default()
}
