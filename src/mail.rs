//! Sending account mail (password reset, email verification) through the
//! SMTP server of `smtp_url`. Each recipient gets at most one mail a
//! minute, so the endpoints that send it cannot be used to flood an inbox.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::mail::Mail;

/// The least time between two mails to one address.
const PER_RECIPIENT: Duration = Duration::from_secs(60);
/// Addresses remembered for the limit above before old ones are dropped.
const REMEMBERED: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("not an address: {0}")]
    Address(String),
    #[error("cannot build the mail: {0}")]
    Build(String),
    #[error("the SMTP server refused or failed: {0}")]
    Send(String),
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Where links lead (`app_url`).
    pub app_url: String,
    last_sent: Mutex<HashMap<String, Instant>>,
}

impl Mailer {
    /// `None` when no `smtp_url` is set. Connects to nothing yet: the
    /// first mail does. Links lead to `app_url`, else to `listening`.
    pub fn from_settings(mail: &Mail, listening: &str) -> anyhow::Result<Option<Mailer>> {
        let Some(url) = &mail.smtp_url else {
            return Ok(None);
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            // lettre's message may quote the URL, password included.
            .map_err(|_| anyhow::anyhow!("smtp_url is not a valid SMTP URL"))?
            .build();
        let from = mail
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("smtp_from {:?}: {e}", mail.from))?;
        Ok(Some(Mailer {
            transport,
            from,
            app_url: mail.app_url.clone().unwrap_or_else(|| listening.to_owned()),
            last_sent: Mutex::new(HashMap::new()),
        }))
    }

    /// Claims the recipient's turn: false if they were sent mail less than
    /// a minute ago.
    pub fn may_send_to(&self, to: &str) -> bool {
        let now = Instant::now();
        let mut last_sent = self.last_sent.lock().unwrap_or_else(|e| e.into_inner());
        if last_sent
            .get(to)
            .is_some_and(|at| now.duration_since(*at) < PER_RECIPIENT)
        {
            return false;
        }
        if last_sent.len() >= REMEMBERED {
            last_sent.retain(|_, at| now.duration_since(*at) < PER_RECIPIENT);
        }
        last_sent.insert(to.to_owned(), now);
        true
    }

    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError::Address(to.to_owned()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Send(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mail_a_minute_per_recipient() {
        let mailer = Mailer::from_settings(
            &Mail {
                smtp_url: Some("smtp://127.0.0.1:1".into()),
                from: "x <x@example.com>".into(),
                app_url: None,
            },
            "http://127.0.0.1:7070",
        )
        .unwrap()
        .unwrap();
        assert!(mailer.may_send_to("a@example.com"));
        assert!(!mailer.may_send_to("a@example.com"));
        assert!(mailer.may_send_to("b@example.com"));
    }
}
