//! What can be wrong with one value of a snapshot: the vocabulary that [`crate::validate`] and
//! [`crate::CompiledMatcher::compile`] report in. Where the value sits (route, path inside it) is
//! added by the caller.
//!
//! Not for: locating a problem; see [`crate::SnapshotError`] and [`crate::MatcherError`].

use crate::host::HostError;
use crate::pattern::RegexError;

/// What is wrong with one value. Messages avoid repeating secrets (password hashes are never
/// quoted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A required message or `oneof` is missing.
    #[error("is not set")]
    NotSet,
    /// A `oneof kind` is missing: either the sender left it out or it is a kind newer than this
    /// build of Berth (an unknown field arrives as an empty `kind`).
    #[error("kind is not set (or is one this version of Berth does not know)")]
    KindNotSet,
    /// A value that must be given is empty (a string or a list).
    #[error("is empty")]
    Empty,
    /// A host that breaks the host-name rule.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A host that is valid but not written in canonical form.
    #[error("{value:?} is not in canonical form, write {expected:?}")]
    NotCanonical {
        /// The value as given.
        value: String,
        /// Its canonical form.
        expected: String,
    },
    /// A wildcard suffix that is an IP address.
    #[error("{0:?} is an IP address, not a domain suffix")]
    WildcardIp(String),
    /// A regexp that does not compile.
    #[error(transparent)]
    Regex(#[from] RegexError),
    /// A path that does not start with '/'.
    #[error("{0:?} does not start with '/'")]
    NotAbsolute(String),
    /// A method that is not an HTTP token.
    #[error("{0:?} is not an HTTP method")]
    Method(String),
    /// A method in lower case (methods are compared as sent, and the model writes them upper case).
    #[error("{0:?} is not upper case")]
    MethodCase(String),
    /// Not a valid HTTP header name.
    #[error("{0:?} is not an HTTP header name")]
    HeaderName(String),
    /// Not a valid HTTP header value (control characters).
    #[error("{0:?} is not a valid HTTP header value")]
    HeaderValue(String),
    /// A query matcher's `present` set to false.
    #[error("present must be true (write absence as not(query))")]
    PresentFalse,
    /// Neither an IP address nor a CIDR network.
    #[error("{0:?} is neither an IP address nor a CIDR network")]
    IpRange(String),
    /// A number outside what the setting allows.
    #[error("{value} is out of range ({allowed})")]
    OutOfRange {
        /// The value given.
        value: i128,
        /// What is allowed, in words.
        allowed: &'static str,
    },
    /// A scheme other than http and https.
    #[error("{0:?} is not a scheme Berth knows (http or https)")]
    Scheme(String),
    /// A cluster scheme other than http, https and h2c.
    #[error("{0:?} is not a backend scheme Berth knows (http, https or h2c)")]
    ClusterScheme(String),
    /// A port that is not a number from 1 to 65535.
    #[error("{0:?} is not a port number (1-65535)")]
    Port(String),
    /// A control character (CR, LF, NUL...) in a value that becomes part of a request or header.
    #[error("{0:?} holds a control character")]
    ControlCharacter(String),
    /// A realm that cannot be quoted in `WWW-Authenticate`.
    #[error("{0:?} holds a '\"' or a control character")]
    Realm(String),
    /// A basic-auth line that is not `user:hash`.
    #[error("is not a \"user:hash\" line")]
    UserLine,
    /// A basic-auth user whose hash is in no format Berth checks.
    #[error(
        "the hash of user {user:?} is {reason} (bcrypt $2y$/$2a$/$2b$, Apache MD5 $apr1$ or SHA-1 {{SHA}})"
    )]
    PasswordHash {
        /// The user name.
        user: String,
        /// What is wrong with the hash.
        reason: &'static str,
    },
    /// Not a valid cookie name (an RFC 6265 token).
    #[error("{0:?} is not a valid cookie name")]
    CookieName(String),
    /// A SameSite value other than none, lax, strict or empty.
    #[error("{0:?} is not a SameSite value (none, lax, strict, or empty)")]
    SameSite(String),
    /// An enum value this build does not know.
    #[error("{value} is not a {name} this version of Berth knows")]
    UnknownEnum {
        /// The number sent.
        value: i32,
        /// The enum's name.
        name: &'static str,
    },
    /// An HTTP status code that is not a known one.
    #[error("{0} is not an HTTP status code Berth knows")]
    Status(u32),
    /// Two settings that exclude each other.
    #[error("sets both {0} and {1}, which exclude each other")]
    Exclusive(&'static str, &'static str),
    /// A setting that has no meaning where it is.
    #[error("{0} has no meaning here")]
    Meaningless(&'static str),
    /// A name in `requires` that this build does not know.
    #[error("requires {0:?}, which this version of Berth does not know")]
    UnknownFeature(String),
    /// A feature that is used but not listed in `requires`.
    #[error("uses {0:?} but does not list it in requires")]
    MissingFeature(&'static str),
    /// A name that another route or cluster of the snapshot has too.
    #[error("the name is used more than once")]
    DuplicateName,
    /// A circuit-breaker expression that does not parse or type-check.
    #[error("{expression:?} {error}")]
    CircuitBreakerExpression {
        /// The expression as given.
        expression: String,
        /// What is wrong, and at which column.
        error: crate::circuit_breaker::ExpressionError,
    },
    /// A route whose cluster is not in the snapshot.
    #[error("cluster {0:?} is not in the snapshot")]
    UnknownCluster(String),
}
