//! A wrapper for secret values (tokens, passwords): no `Display`, a redacting `Debug`, no
//! `Serialize`, and registration with the GitHub Actions log masker on creation, together with
//! the encodings a secret is commonly printed in.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A secret string. Read it only with [`Secret::expose`] at the point of use.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value and masks it (and its base64 form) in GitHub Actions logs.
    pub fn new(value: impl Into<String>) -> Secret {
        let value = value.into();
        mask(&value);
        Secret(value)
    }

    /// The secret value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Masks a value and its base64 encoding in GitHub Actions logs. Use it for derived values too,
/// e.g. a `user:password` pair before it is encoded.
pub fn mask(value: &str) {
    if value.is_empty() {
        return;
    }
    crate::ci::add_mask(value);
    crate::ci::add_mask(&STANDARD.encode(value));
}

/// Replaces every occurrence of each secret (and its base64 form) in `text` with `***`.
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if s.is_empty() {
            continue;
        }
        out = out.replace(s.expose(), "***");
        out = out.replace(&STANDARD.encode(s.expose()), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redact_removes_plain_and_base64_forms() {
        let s = Secret::new("tok3n");
        let text = format!("a tok3n b {}", STANDARD.encode("tok3n"));
        assert_eq!(redact(&text, &[&s]), "a *** b ***");
    }
}
