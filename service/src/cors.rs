//! Cross-origin requests (`CORS_ALLOWED_ORIGINS`), as the Fetch standard defines them: a browser
//! page on an allowed origin may read the API's answers (and their `x-app-version` header); its
//! preflight `OPTIONS` is answered here. Unset, the service sends no CORS headers at all and
//! `OPTIONS` is a 405 like any other method it does not serve. No credentials: the API has no
//! cookies or authentication to share.

use salvo::http::header::{self, HeaderMap, HeaderValue};

/// The methods the API serves; a preflight for anything else gets these and the browser stops.
pub const METHODS: &str = "GET, HEAD, OPTIONS";
/// How long a browser may cache a preflight answer (seconds).
pub const MAX_AGE: u32 = 600;

/// Which origins may read the API's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// `*`: any origin (answers say `Access-Control-Allow-Origin: *`).
    Any,
    /// Exactly these serialized origins, e.g. `https://app.example.com`.
    Origins(Vec<String>),
}

impl Cors {
    /// Parses `CORS_ALLOWED_ORIGINS`: `*`, or a comma-separated list of origins as browsers send
    /// them (`scheme://host[:port]`, no path, no trailing slash). Errors name the bad entry.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value == "*" {
            return Ok(Self::Any);
        }
        let mut origins = Vec::new();
        for entry in value.split(',').map(str::trim) {
            if entry == "*" {
                return Err("* must be the only entry (it allows every origin)".into());
            }
            if !is_origin(entry) {
                return Err(format!(
                    "{entry:?} is not an origin; write scheme://host[:port] as the browser sends \
                     it, e.g. https://app.example.com (no path, no trailing slash)"
                ));
            }
            origins.push(entry.to_ascii_lowercase());
        }
        Ok(Self::Origins(origins))
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    fn allow_origin(&self, origin: &str) -> Option<HeaderValue> {
        match self {
            Self::Any => Some(HeaderValue::from_static("*")),
            Self::Origins(list) => list
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
                .then(|| HeaderValue::from_str(origin).ok())
                .flatten(),
        }
    }

    /// The headers an actual (non-preflight) answer to `request` carries; none when the request
    /// has no `Origin` or its origin is not allowed.
    pub fn response_headers(&self, request: &HeaderMap, out: &mut HeaderMap) {
        if let Self::Origins(_) = self {
            // The answer differs by Origin: a shared cache must not serve one origin's to another.
            out.append(header::VARY, HeaderValue::from_static("origin"));
        }
        let Some(allow) = origin(request).and_then(|o| self.allow_origin(o)) else {
            return;
        };
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        out.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(crate::VERSION_HEADER),
        );
    }

    /// The answer to a preflight: `Some(headers)` for an allowed origin (status 204), `None` for
    /// an origin that is not allowed (status 403, no CORS headers, so the browser refuses).
    pub fn preflight(&self, request: &HeaderMap) -> Option<HeaderMap> {
        let allow = origin(request).and_then(|o| self.allow_origin(o))?;
        let mut h = HeaderMap::new();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(METHODS),
        );
        // Headers the page asked to send: echoed when they are a well-formed list of names.
        if let Some(asked) = request
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .filter(|v| v.to_str().is_ok_and(is_name_list))
        {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE));
        h.insert(
            header::VARY,
            HeaderValue::from_static(
                "origin, access-control-request-method, access-control-request-headers",
            ),
        );
        Some(h)
    }
}

/// Whether a request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method` (a plain `OPTIONS` is not one).
pub fn is_preflight(method: &salvo::http::Method, request: &HeaderMap) -> bool {
    method == salvo::http::Method::OPTIONS
        && origin(request).is_some()
        && request.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn origin(request: &HeaderMap) -> Option<&str> {
    request.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// `http(s)://host[:port]`: a serialized origin as a browser sends it.
fn is_origin(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0));
    host_ok && port_ok
}

/// `Access-Control-Request-Headers`: a comma-separated list of header names.
fn is_name_list(s: &str) -> bool {
    s.split(',').map(str::trim).all(|n| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_parsed_as_browsers_send_them() {
        assert_eq!(Cors::parse("*"), Ok(Cors::Any));
        assert_eq!(
            Cors::parse("https://a.example.com, http://localhost:3000"),
            Ok(Cors::Origins(vec![
                "https://a.example.com".into(),
                "http://localhost:3000".into()
            ]))
        );
        for bad in [
            "a.example.com",
            "https://a.example.com/",
            "https://a.example.com/app",
            "ftp://a.example.com",
            "https://",
            "https://a.example.com:0",
            "https://a.example.com:99999",
            "https://a.example.com,*",
            "",
        ] {
            assert!(Cors::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_name_lists() {
        assert!(is_name_list("content-type, x-request-id"));
        assert!(!is_name_list("content-type,,x"));
        assert!(!is_name_list("bad header"));
    }
}
