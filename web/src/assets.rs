//! The UI bundle embedded at build time (every file of `web/ui/dist`; see `build.rs`).

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// An embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its path below `web/ui/dist`, e.g. `app.js`.
    pub path: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

/// Every embedded file, sorted by path.
pub fn all() -> impl Iterator<Item = Asset> {
    FILES.iter().map(|&(path, bytes)| Asset { path, bytes, content_type: content_type(path) })
}

/// The file served at URL path `url_path` (`/` is `index.html`).
pub fn get(url_path: &str) -> Option<Asset> {
    let path = match url_path.trim_start_matches('/') {
        "" => "index.html",
        p => p,
    };
    FILES.binary_search_by(|(p, _)| (*p).cmp(path)).ok().map(|i| {
        let (path, bytes) = FILES[i];
        Asset { path, bytes, content_type: content_type(path) }
    })
}

/// The `Content-Type` of a file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_bundle_is_embedded_and_found_by_url_path() {
        for name in ["index.html", "app.js", "app.css"] {
            let a = get(&format!("/{name}")).unwrap_or_else(|| panic!("{name} embedded"));
            let on_disk = std::fs::read(format!("{}/ui/dist/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            assert_eq!(a.bytes, on_disk.as_slice(), "{name}");
        }
        assert_eq!(get("/").unwrap().path, "index.html");
        assert!(get("/nope.js").is_none());
        assert!(get("/../Cargo.toml").is_none());
        assert!(all().map(|a| a.path).collect::<Vec<_>>().is_sorted());
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("app.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("x/icon.SVG"), "image/svg+xml");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }
}
