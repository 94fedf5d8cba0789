//! The bounds on what a proxy says about itself in its Hello.
//!
//! Anything that reaches the gRPC port can send a Hello, and its fields end up in the log, the
//! admin API and memory for as long as the stream lives. Each field is bounded here, once; a Hello
//! over a bound is refused with `INVALID_ARGUMENT` naming the field and its limit, never echoing
//! the value (which may be a megabyte).
//!
//! This module does not authenticate a proxy; it only bounds what one may claim.

use berth_proto::v1::Hello;

/// Most bytes of `Hello.node_id`.
pub(crate) const MAX_NODE_ID: usize = 256;
/// Most entries of `Hello.entrypoints`.
pub(crate) const MAX_ENTRYPOINTS: usize = 64;
/// Most bytes of one entry of `Hello.entrypoints`.
pub(crate) const MAX_ENTRYPOINT: usize = 64;
/// Most bytes of `Hello.build`.
pub(crate) const MAX_BUILD: usize = 256;
/// Most bytes of `Hello.version` (versions this control plane makes are far shorter).
pub(crate) const MAX_VERSION: usize = 256;

/// Why a Hello was refused. The messages name the field and the limit, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HelloError {
    #[error("Hello.node_id is empty")]
    NodeIdEmpty,
    #[error("Hello.node_id is {len} bytes; the limit is {MAX_NODE_ID}")]
    NodeIdTooLong { len: usize },
    #[error("Hello.entrypoints has {count} entries; the limit is {MAX_ENTRYPOINTS}")]
    TooManyEntrypoints { count: usize },
    #[error("Hello.entrypoints[{index}] is {len} bytes; the limit is {MAX_ENTRYPOINT}")]
    EntrypointTooLong { index: usize, len: usize },
    #[error("Hello.build is {len} bytes; the limit is {MAX_BUILD}")]
    BuildTooLong { len: usize },
    #[error("Hello.version is {len} bytes; the limit is {MAX_VERSION}")]
    VersionTooLong { len: usize },
}

/// Checks every field of `hello` against its bound.
pub(crate) fn validate(hello: &Hello) -> Result<(), HelloError> {
    if hello.node_id.is_empty() {
        return Err(HelloError::NodeIdEmpty);
    }
    if hello.node_id.len() > MAX_NODE_ID {
        return Err(HelloError::NodeIdTooLong {
            len: hello.node_id.len(),
        });
    }
    if hello.entrypoints.len() > MAX_ENTRYPOINTS {
        return Err(HelloError::TooManyEntrypoints {
            count: hello.entrypoints.len(),
        });
    }
    if let Some((index, entrypoint)) = hello
        .entrypoints
        .iter()
        .enumerate()
        .find(|(_, e)| e.len() > MAX_ENTRYPOINT)
    {
        return Err(HelloError::EntrypointTooLong {
            index,
            len: entrypoint.len(),
        });
    }
    if hello.build.len() > MAX_BUILD {
        return Err(HelloError::BuildTooLong {
            len: hello.build.len(),
        });
    }
    if hello.version.len() > MAX_VERSION {
        return Err(HelloError::VersionTooLong {
            len: hello.version.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            node_id: "proxy-1".into(),
            entrypoints: vec!["http".into(), "https".into()],
            version: String::new(),
            build: "berth-proxy 0.1.0".into(),
        }
    }

    #[test]
    fn an_ordinary_hello_and_one_at_every_limit_pass() {
        assert_eq!(validate(&hello()), Ok(()));
        let at_limits = Hello {
            node_id: "n".repeat(MAX_NODE_ID),
            entrypoints: vec!["e".repeat(MAX_ENTRYPOINT); MAX_ENTRYPOINTS],
            version: "v".repeat(MAX_VERSION),
            build: "b".repeat(MAX_BUILD),
        };
        assert_eq!(validate(&at_limits), Ok(()));
    }

    #[test]
    fn each_field_over_its_limit_is_named_without_its_value() {
        let cases: Vec<(Hello, HelloError, &str)> = vec![
            (
                Hello {
                    node_id: String::new(),
                    ..hello()
                },
                HelloError::NodeIdEmpty,
                "Hello.node_id is empty",
            ),
            (
                Hello {
                    node_id: "x".repeat(1 << 20),
                    ..hello()
                },
                HelloError::NodeIdTooLong { len: 1 << 20 },
                "Hello.node_id is 1048576 bytes; the limit is 256",
            ),
            (
                Hello {
                    entrypoints: vec!["http".into(); 65],
                    ..hello()
                },
                HelloError::TooManyEntrypoints { count: 65 },
                "Hello.entrypoints has 65 entries; the limit is 64",
            ),
            (
                Hello {
                    entrypoints: vec!["http".into(), "x".repeat(65)],
                    ..hello()
                },
                HelloError::EntrypointTooLong { index: 1, len: 65 },
                "Hello.entrypoints[1] is 65 bytes; the limit is 64",
            ),
            (
                Hello {
                    build: "x".repeat(257),
                    ..hello()
                },
                HelloError::BuildTooLong { len: 257 },
                "Hello.build is 257 bytes; the limit is 256",
            ),
            (
                Hello {
                    version: "x".repeat(300),
                    ..hello()
                },
                HelloError::VersionTooLong { len: 300 },
                "Hello.version is 300 bytes; the limit is 256",
            ),
        ];
        for (hello, error, message) in cases {
            assert_eq!(validate(&hello), Err(error.clone()));
            assert_eq!(error.to_string(), message);
            assert!(!message.contains("xx"), "{message}");
        }
    }
}
