//! The web files compiled into the binary: the JavaScript client (`sdk/`)
//! and the admin UI (`admin/`). Files come from `web/` through rust-embed,
//! also in debug builds (`debug-embed`), so tests serve exactly what a
//! release binary would. Serving them over HTTP is `http::assets`.

use std::borrow::Cow;

use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Web;

/// One embedded file.
pub struct Asset {
    pub data: Cow<'static, [u8]>,
    /// With a charset for text.
    pub content_type: String,
    /// A strong ETag of the content, quoted.
    pub etag: String,
}

/// The file at `path` below `web/`, if it is embedded.
pub fn get(path: &str) -> Option<Asset> {
    let file = Web::get(path)?;
    Some(Asset {
        etag: format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16])),
        content_type: content_type(path, file.metadata.mimetype()),
        data: file.data,
    })
}

/// Text types say their charset; module scripts must be served as
/// JavaScript or browsers refuse them.
fn content_type(path: &str, mime: &str) -> String {
    // The guess by extension takes `.ts` for an MPEG transport stream; ours
    // are TypeScript declarations, which Deno recognises by this type.
    let mime = if path.ends_with(".ts") {
        "application/typescript"
    } else {
        mime
    };
    if mime.starts_with("text/")
        || mime == "application/typescript"
        || mime == "application/javascript"
        || mime.ends_with("+json")
        || mime == "application/json"
    {
        let mime = if mime == "application/javascript" {
            "text/javascript"
        } else {
            mime
        };
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_embedded() {
        assert!(get("sdk/pulsebase.js").is_some());
        assert!(get("sdk/pulsebase.d.ts").is_some());
        assert!(get("sdk/package.json").is_some());
    }

    #[test]
    fn scripts_are_javascript_with_a_charset() {
        assert_eq!(
            content_type("a.js", "application/javascript"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("a.css", "text/css"), "text/css; charset=utf-8");
        assert_eq!(content_type("a.png", "image/png"), "image/png");
        assert_eq!(
            content_type("sdk/pulsebase.d.ts", "video/mp2t"),
            "application/typescript; charset=utf-8"
        );
    }
}
