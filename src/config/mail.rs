//! Mail for accounts (password reset, email verification): the SMTP server
//! it goes through, who it is from, and where its links lead.

use super::SettingsError;

/// The mail settings, resolved.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    /// `smtp://` or `smtps://` with credentials (`None`: no mail, and the
    /// endpoints that send it answer that it is not set up).
    pub smtp_url: Option<String>,
    pub from: String,
    /// Where the links in mail lead, without a trailing slash (`None`: the
    /// address the server listens on, known once it is bound).
    pub app_url: Option<String>,
}

/// The mail settings as given, before they are checked.
#[derive(Debug, Default)]
pub struct Given {
    pub smtp_url: Option<String>,
    pub smtp_from: Option<String>,
    pub app_url: Option<String>,
}

impl Mail {
    pub fn resolve(given: Given) -> Result<Mail, SettingsError> {
        // Empty values (unset variables in a unit file) mean unset.
        let given_text = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let smtp_url = given_text(given.smtp_url);
        if let Some(url) = &smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err(SettingsError::Invalid {
                    setting: "smtp_url",
                    value: "(hidden: it may hold a password)".into(),
                    expected: "smtps://user:password@host (TLS) or smtp://user:password@host:587?tls=required",
                });
            }
        }
        let from =
            given_text(given.smtp_from).unwrap_or_else(|| "pulsebase <no-reply@localhost>".into());
        if !from.contains('@') {
            return Err(SettingsError::Invalid {
                setting: "smtp_from",
                value: from,
                expected: "an address like Example App <no-reply@example.com>",
            });
        }
        let app_url = given_text(given.app_url).map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &app_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(SettingsError::Invalid {
                    setting: "app_url",
                    value: url.clone(),
                    expected: "a URL like https://app.example.com",
                });
            }
        }
        Ok(Mail {
            smtp_url,
            from,
            app_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_is_off_until_an_smtp_url_is_given() {
        let mail = Mail::resolve(Given::default()).unwrap();
        assert_eq!((mail.smtp_url, mail.app_url), (None, None));
        let mail = Mail::resolve(Given {
            smtp_url: Some("smtp://localhost:2525".into()),
            app_url: Some("https://app.example/".into()),
            smtp_from: Some("App <a@app.example>".into()),
        })
        .unwrap();
        assert_eq!(mail.smtp_url.as_deref(), Some("smtp://localhost:2525"));
        assert_eq!(mail.app_url.as_deref(), Some("https://app.example"));
    }

    #[test]
    fn bad_mail_settings_stop_the_start_without_showing_secrets() {
        let error = Mail::resolve(Given {
            smtp_url: Some("http://user:secret@host".into()),
            ..Given::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("smtp_url") && !error.contains("secret"),
            "{error}"
        );
        for (given, setting) in [
            (
                Given {
                    smtp_from: Some("nobody".into()),
                    ..Given::default()
                },
                "smtp_from",
            ),
            (
                Given {
                    app_url: Some("app.example".into()),
                    ..Given::default()
                },
                "app_url",
            ),
        ] {
            let error = Mail::resolve(given).unwrap_err().to_string();
            assert!(error.contains(setting), "{error}");
        }
    }
}
