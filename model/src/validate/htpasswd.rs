//! The shape of basic-auth `user:hash` lines: the hash formats the proxy checks passwords
//! against (bcrypt `$2y$`/`$2a$`/`$2b$`, Apache MD5 `$apr1$`, SHA-1 `{SHA}`), recognised by
//! their prefix and checked for length and alphabet. Checking a password is the proxy's job.
//!
//! Traefik takes any line with exactly one ':' and treats an unknown hash as MD5-crypt, which
//! then never matches; Berth rejects such a line instead, so a typo shows up as an error rather
//! than as a route that answers 401 to everyone.

use crate::problem::Problem;

/// The alphabet of crypt(3)-style hashes (bcrypt's and MD5-crypt's base64).
fn is_crypt64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

/// Checks one `user:hash` line.
pub(super) fn check_line(line: &str) -> Result<(), Problem> {
    let mut parts = line.split(':');
    let (Some(user), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Problem::UserLine);
    };
    if user.is_empty() {
        return Err(Problem::UserLine);
    }
    check_hash(hash).map_err(|reason| Problem::PasswordHash {
        user: user.to_string(),
        reason,
    })
}

fn check_hash(hash: &str) -> Result<(), &'static str> {
    if let Some(rest) = ["$2y$", "$2a$", "$2b$"].iter().find_map(|p| hash.strip_prefix(p)) {
        // "NN$" cost, then 22 characters of salt and 31 of hash.
        let (cost, digest) = rest.split_once('$').ok_or("a bcrypt hash without its cost")?;
        let cost: u32 = cost
            .parse()
            .ok()
            .filter(|_| cost.len() == 2)
            .ok_or("a bcrypt hash with a malformed cost")?;
        if !(4..=31).contains(&cost) {
            return Err("a bcrypt hash with a cost outside 4 to 31");
        }
        if digest.len() != 53 || !digest.bytes().all(is_crypt64) {
            return Err("a truncated or malformed bcrypt hash");
        }
        return Ok(());
    }
    if let Some(rest) = hash.strip_prefix("$apr1$") {
        let (salt, digest) = rest
            .split_once('$')
            .ok_or("an Apache MD5 hash without its salt")?;
        if salt.is_empty() || salt.len() > 8 {
            return Err("an Apache MD5 hash with a malformed salt");
        }
        if digest.len() != 22 || !digest.bytes().all(is_crypt64) {
            return Err("a truncated or malformed Apache MD5 hash");
        }
        return Ok(());
    }
    if let Some(digest) = hash.strip_prefix("{SHA}") {
        // Base64 of 20 bytes: 27 characters and one '='.
        let ok = digest.len() == 28
            && digest.ends_with('=')
            && digest[..27]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
        return if ok {
            Ok(())
        } else {
            Err("a truncated or malformed SHA-1 hash")
        };
    }
    Err("in no format Berth checks")
}

#[cfg(test)]
mod tests {
    use super::*;

    // In the shapes htpasswd -B, -m and -s write (the last two are hashes of "test").
    const BCRYPT: &str = "$2y$05$W4zDLYDFcLoP6yqvU0t3v.DDzahEs2Ax7Jk3F5ZQlIBV1gQHkLFZO";
    const APR1: &str = "$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/";
    const SHA: &str = "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=";

    #[test]
    fn recognised_formats() {
        for hash in [BCRYPT, APR1, SHA] {
            assert_eq!(check_line(&format!("test:{hash}")), Ok(()), "{hash}");
        }
        let b = BCRYPT.replacen("$2y$", "$2a$", 1);
        assert_eq!(check_line(&format!("u:{b}")), Ok(()));
        let b = BCRYPT.replacen("$2y$", "$2b$", 1);
        assert_eq!(check_line(&format!("u:{b}")), Ok(()));
    }

    fn reason(line: &str) -> &'static str {
        match check_line(line) {
            Err(Problem::PasswordHash { reason, .. }) => reason,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn malformed_hashes() {
        assert_eq!(reason("u:secret"), "in no format Berth checks");
        assert_eq!(reason("u:"), "in no format Berth checks");
        assert_eq!(reason("u:$1$abc$def"), "in no format Berth checks");
        assert_eq!(
            reason(&format!("u:{}", &BCRYPT[..59])),
            "a truncated or malformed bcrypt hash"
        );
        assert_eq!(
            reason(&format!("u:{}", BCRYPT.replacen("$05$", "$99$", 1))),
            "a bcrypt hash with a cost outside 4 to 31"
        );
        assert_eq!(reason("u:$2y$5$x"), "a bcrypt hash with a malformed cost");
        assert_eq!(reason("u:$2y$"), "a bcrypt hash without its cost");
        assert_eq!(
            reason("u:$apr1$$IgXLP6ewTrSuBkTrqE8wj/"),
            "an Apache MD5 hash with a malformed salt"
        );
        assert_eq!(
            reason("u:$apr1$H6uskkkW$short"),
            "a truncated or malformed Apache MD5 hash"
        );
        assert_eq!(reason("u:$apr1$nosalt"), "an Apache MD5 hash without its salt");
        assert_eq!(reason("u:{SHA}abc="), "a truncated or malformed SHA-1 hash");
    }

    #[test]
    fn lines_must_be_user_colon_hash() {
        assert_eq!(check_line("nocolon"), Err(Problem::UserLine));
        assert_eq!(check_line(&format!(":{SHA}")), Err(Problem::UserLine));
        assert_eq!(check_line(&format!("a:b:{SHA}")), Err(Problem::UserLine));
    }

    #[test]
    fn errors_never_quote_the_hash() {
        let e = check_line("bob:$apr1$H6uskkkW$short").unwrap_err().to_string();
        assert!(e.contains("bob") && !e.contains("H6uskkkW"), "{e}");
    }
}
