//! htpasswd password hashes: checking a password against one line's hash.
//!
//! For: the three hash families Traefik's BasicAuth accepts, chosen by prefix as Traefik's
//! `go-http-auth` does: `{SHA}` (base64 of SHA-1), `$2a$`/`$2b$`/`$2x$`/`$2y$` (bcrypt), and
//! anything else read as MD5-crypt `$<magic>$<salt>$<hash>` (`$apr1$`, Apache's, and `$1$`). A
//! hash that fits none never matches. Comparisons take the same time whatever the input.
//! Not for: parsing `user:hash` lines or HTTP (see `basic_auth`).

use base64::Engine;
use md5::{Digest, Md5};
use sha1::Sha1;

/// One stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha1(String),
    Bcrypt(String),
    Md5Crypt(String),
}

impl Hash {
    pub(crate) fn parse(text: &str) -> Self {
        if let Some(rest) = text.strip_prefix("{SHA}") {
            Self::Sha1(rest.to_owned())
        } else if ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|p| text.starts_with(p))
        {
            Self::Bcrypt(text.to_owned())
        } else {
            Self::Md5Crypt(text.to_owned())
        }
    }

    /// Whether checking is slow enough to keep off the async threads (bcrypt).
    pub(crate) fn is_slow(&self) -> bool {
        matches!(self, Self::Bcrypt(_))
    }

    pub(crate) fn matches(&self, password: &[u8]) -> bool {
        match self {
            Self::Sha1(expected) => {
                let digest = Sha1::digest(password);
                let actual = base64::engine::general_purpose::STANDARD.encode(digest);
                constant_time_eq(actual.as_bytes(), expected.as_bytes())
            }
            Self::Bcrypt(hash) => {
                // `$2x$` is read as `$2y$`, as go-http-auth does (right for 7-bit passwords).
                let normalized = match hash.strip_prefix("$2x$") {
                    Some(rest) => format!("$2y${rest}"),
                    None => hash.clone(),
                };
                bcrypt::verify(password, &normalized).unwrap_or(false)
            }
            Self::Md5Crypt(hash) => {
                let mut parts = hash.splitn(4, '$');
                let (Some(""), Some(magic), Some(salt), Some(_)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return false;
                };
                let computed = md5_crypt(password, salt.as_bytes(), format!("${magic}$").as_bytes());
                constant_time_eq(&computed, hash.as_bytes())
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const CRYPT_ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Poul-Henning Kamp's MD5-crypt, as Apache's `$apr1$` (and `$1$`) use it: returns
/// `<magic><salt>$<22 characters>`.
pub(crate) fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> Vec<u8> {
    let mut alternate = Md5::new();
    alternate.update(password);
    alternate.update(salt);
    alternate.update(password);
    let alternate = alternate.finalize();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(magic);
    ctx.update(salt);
    for i in 0..password.len() {
        ctx.update([alternate[i % 16]]);
    }
    let mut bits = password.len();
    while bits != 0 {
        if bits & 1 == 0 {
            ctx.update([password.first().copied().unwrap_or(0)]);
        } else {
            ctx.update([0u8]);
        }
        bits >>= 1;
    }
    let mut digest = ctx.finalize();

    // A thousand rounds to slow guessing down.
    for round in 0..1000 {
        let mut step = Md5::new();
        if round % 2 == 0 {
            step.update(digest);
        } else {
            step.update(password);
        }
        if round % 3 != 0 {
            step.update(salt);
        }
        if round % 7 != 0 {
            step.update(password);
        }
        if round % 2 == 0 {
            step.update(password);
        } else {
            step.update(digest);
        }
        digest = step.finalize();
    }

    // The digest's bytes in this order, 6 bits per character, least significant first.
    const ORDER: [usize; 16] = [12, 6, 0, 13, 7, 1, 14, 8, 2, 15, 9, 3, 5, 10, 4, 11];
    let mut encoded = Vec::with_capacity(22);
    let (mut value, mut pending) = (0u32, 0u32);
    for index in ORDER {
        value |= u32::from(digest[index]) << pending;
        pending += 8;
        while pending > 6 {
            encoded.push(CRYPT_ALPHABET[(value & 0x3f) as usize]);
            value >>= 6;
            pending -= 6;
        }
    }
    encoded.push(CRYPT_ALPHABET[(value & 0x3f) as usize]);

    let mut out = Vec::with_capacity(magic.len() + salt.len() + 1 + encoded.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(salt);
    out.push(b'$');
    out.extend_from_slice(&encoded);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_crypt_known_vectors() {
        // Published vectors (Apache htpasswd, FreeBSD crypt).
        for (password, hash) in [
            ("apache", "$apr1$J.w5a/..$IW9y6DR0oO/ADuhlMF5/X1"),
            ("pass", "$1$YeNsbWdH$wvOF8JdqsoiLix754LTW90"),
            ("topsecret", "$apr1$JI4wh3am$AmhephVqLTUyAVpFQeHZC0"),
            ("test", "$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"),
        ] {
            let hash_parsed = Hash::parse(hash);
            assert!(hash_parsed.matches(password.as_bytes()), "{password} {hash}");
            assert!(!hash_parsed.matches(b"wrong"), "{hash}");
        }
    }

    #[test]
    fn sha1() {
        // htpasswd -nbs test test
        let hash = Hash::parse("{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=");
        assert!(matches!(hash, Hash::Sha1(_)));
        assert!(hash.matches(b"test"));
        assert!(!hash.matches(b"Test"));
    }

    #[test]
    fn bcrypt_hashes() {
        // htpasswd -nbB test test (cost 5 keeps the test quick).
        let hash = bcrypt::hash_with_result("test", 5).expect("hash");
        for version in [
            bcrypt::Version::TwoA,
            bcrypt::Version::TwoB,
            bcrypt::Version::TwoY,
            bcrypt::Version::TwoX,
        ] {
            let text = hash.format_for_version(version);
            let parsed = Hash::parse(&text);
            assert!(parsed.is_slow(), "{text}");
            assert!(parsed.matches(b"test"), "{text}");
            assert!(!parsed.matches(b"nope"), "{text}");
        }
    }

    #[test]
    fn anything_else_never_matches() {
        for text in ["test", "", "$", "$apr1$", "plain:text"] {
            let parsed = Hash::parse(text);
            assert!(!parsed.matches(b"test"), "{text}");
            assert!(!parsed.matches(text.as_bytes()), "{text}");
        }
    }
}
