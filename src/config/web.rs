//! Settings for browser apps: which origins may call the API (CORS), and a
//! directory of the app's own files served at `/`.

use std::path::PathBuf;

use serde::Deserialize;

use super::SettingsError;

/// Which web origins may call the API from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`*`). Safe by default because credentials travel as
    /// bearer tokens the page holds, never as cookies a browser would add
    /// on its own to another site's request.
    Any,
    /// Only these, each `scheme://host[:port]`; none at all turns CORS off.
    Only(Vec<String>),
}

impl CorsOrigins {
    /// Whether a WebSocket handshake from a page of `origin` (its `Origin`
    /// header) to the server at `host` (its `Host` header) is let in.
    /// Browsers apply no CORS to WebSocket handshakes, so they are held to
    /// the same list here; the server's own pages always may, and clients
    /// that are not browsers send no `Origin`.
    pub fn allow_websocket(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let (Self::Only(allowed), Some(origin)) = (self, origin) else {
            return true;
        };
        let own = host.is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority == host)
        });
        own || allowed.iter().any(|a| a == origin)
    }
}

/// The web settings, resolved.
#[derive(Debug, Clone)]
pub struct Web {
    pub cors_origins: CorsOrigins,
    /// The app's files, served at `/` (`None`: `/` leads to the admin UI).
    pub public: Option<PathBuf>,
    /// Unknown paths get `public`'s `index.html`, for apps that route in
    /// the browser.
    pub public_spa: bool,
}

impl Default for Web {
    fn default() -> Web {
        Web {
            cors_origins: CorsOrigins::Any,
            public: None,
            public_spa: false,
        }
    }
}

/// `cors_origins` in `pulsebase.toml`: a list, or one string like the
/// flag's.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OriginsValue {
    One(String),
    List(Vec<String>),
}

/// The web settings as given, before they are checked.
#[derive(Debug, Default)]
pub struct Given {
    pub cors_origins: Option<OriginsValue>,
    pub public: Option<PathBuf>,
    pub public_spa: Option<bool>,
}

impl Web {
    pub fn resolve(given: Given) -> Result<Web, SettingsError> {
        let cors_origins = match given.cors_origins {
            None => CorsOrigins::Any,
            Some(OriginsValue::One(text)) => {
                origins(text.split(',').map(str::trim).filter(|o| !o.is_empty()))?
            }
            Some(OriginsValue::List(list)) => origins(list.iter().map(|o| o.trim()))?,
        };
        // An empty value (an unset variable in a unit file) means none.
        let public = given.public.filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = &public {
            // Files are looked up per request, so the site may be deployed
            // after the server starts; until then its paths are 404s.
            if !dir.is_dir() {
                tracing::warn!(public = %dir.display(), "public is not a directory (yet): its paths answer 404 until it is");
            }
        }
        let public_spa = given.public_spa.unwrap_or(false);
        if public_spa && public.is_none() {
            return Err(SettingsError::Invalid {
                setting: "public_spa",
                value: "true".into(),
                expected: "`public` set too: the index.html it serves comes from there",
            });
        }
        Ok(Web {
            cors_origins,
            public,
            public_spa,
        })
    }
}

fn origins<'a>(given: impl Iterator<Item = &'a str>) -> Result<CorsOrigins, SettingsError> {
    let mut only = Vec::new();
    for origin in given {
        if origin == "*" {
            return Ok(CorsOrigins::Any);
        }
        if !is_origin(origin) {
            return Err(SettingsError::Invalid {
                setting: "cors_origins",
                value: origin.to_owned(),
                expected: "* or origins like https://app.example.com or http://localhost:5173, comma-separated",
            });
        }
        only.push(origin.to_owned());
    }
    Ok(CorsOrigins::Only(only))
}

/// `scheme://host[:port]` and nothing more: a browser's `Origin` header
/// never carries a path or a trailing slash, so such an entry would never
/// match and is better refused at start.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let host = rest.rsplit_once(':').map_or(rest, |(host, port)| {
        if port.parse::<u16>().is_ok() {
            host
        } else {
            rest
        }
    });
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
        && !host.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(value: OriginsValue) -> Result<CorsOrigins, SettingsError> {
        Web::resolve(Given {
            cors_origins: Some(value),
            ..Given::default()
        })
        .map(|web| web.cors_origins)
    }

    #[test]
    fn origins_are_any_a_list_or_none() {
        assert_eq!(
            Web::resolve(Given::default()).unwrap().cors_origins,
            CorsOrigins::Any
        );
        assert_eq!(
            cors(OriginsValue::One("*".into())).unwrap(),
            CorsOrigins::Any
        );
        assert_eq!(
            cors(OriginsValue::One(
                " https://a.example , http://localhost:5173".into()
            ))
            .unwrap(),
            CorsOrigins::Only(vec![
                "https://a.example".into(),
                "http://localhost:5173".into()
            ])
        );
        assert_eq!(
            cors(OriginsValue::List(vec!["http://[::1]:8080".into()])).unwrap(),
            CorsOrigins::Only(vec!["http://[::1]:8080".into()])
        );
        assert_eq!(
            cors(OriginsValue::One(String::new())).unwrap(),
            CorsOrigins::Only(vec![])
        );
    }

    #[test]
    fn an_origin_with_a_path_or_no_scheme_is_refused() {
        for bad in [
            "https://a.example/",
            "a.example",
            "https://a.example/app",
            "://x",
            "https://",
        ] {
            let error = cors(OriginsValue::One(bad.into())).unwrap_err().to_string();
            assert!(error.contains("cors_origins"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_websocket_from_another_page_needs_its_origin_listed() {
        let only = CorsOrigins::Only(vec!["https://app.example".into()]);
        let host = Some("pb.example:7070");
        assert!(only.allow_websocket(Some("https://app.example"), host));
        assert!(only.allow_websocket(Some("http://pb.example:7070"), host));
        assert!(!only.allow_websocket(Some("https://evil.example"), host));
        assert!(!only.allow_websocket(Some("http://pb.example:7070"), None));
        assert!(only.allow_websocket(None, host));
        assert!(CorsOrigins::Any.allow_websocket(Some("https://evil.example"), host));
    }

    #[test]
    fn public_spa_needs_public() {
        let dir = tempfile::tempdir().unwrap();
        let web = Web::resolve(Given {
            public: Some(dir.path().to_owned()),
            public_spa: Some(true),
            ..Given::default()
        })
        .unwrap();
        assert_eq!(web.public.as_deref(), Some(dir.path()));
        let alone = Web::resolve(Given {
            public_spa: Some(true),
            ..Given::default()
        });
        assert!(alone.unwrap_err().to_string().contains("public_spa"));
    }
}
