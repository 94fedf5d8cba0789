//! `ip_allow_list`: serves only clients whose address is in the listed ranges.
//!
//! For: Traefik's IPAllowList: the address is taken by the middleware's IP strategy (the peer, or
//! from `X-Forwarded-For` by depth or by excluded ranges; see `source`); anything else — outside
//! the ranges, no address, not an address — is answered with `reject_status` (403 by default) and
//! its reason phrase as body, without `Content-Type`.
//! Not for: rate or concurrency limits (see `rate_limit`, `in_flight_req`).

use http::request::Parts;
use http::StatusCode;

use super::source::{IpRanges, Source, SourceText};
use super::{reply, Flow};
use crate::proxy::context::RequestContext;

#[derive(Debug)]
pub(crate) struct IpAllowList {
    ranges: IpRanges,
    source: Source,
    reject: StatusCode,
}

impl IpAllowList {
    pub(crate) fn compile(config: &berth_proto::v1::IpAllowList) -> Result<Self, String> {
        if config.ranges.is_empty() {
            return Err("no ranges".into());
        }
        let reject = match config.reject_status {
            0 => StatusCode::FORBIDDEN,
            code => u16::try_from(code)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .filter(|s| !reply::reason(*s).is_empty())
                .ok_or_else(|| format!("invalid HTTP status code {code}"))?,
        };
        Ok(Self {
            ranges: IpRanges::parse(&config.ranges)?,
            source: Source::compile(config.source.as_ref(), true)?,
            reject,
        })
    }

    pub(crate) fn request(&self, ctx: &mut RequestContext, head: &mut Parts) -> Flow {
        let allowed = match self.source.text(ctx, head) {
            SourceText::Ip(ip) => self.ranges.contains(ip),
            SourceText::Str(text) => self.ranges.contains_text(text),
        };
        if allowed {
            Flow::Next
        } else {
            Flow::Answer(reply::status_text(self.reject))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::{body_text, head};
    use berth_proto::v1::SourceCriterion;
    use http::HeaderValue;

    fn list(ranges: &[&str], reject: u32, source: Option<SourceCriterion>) -> IpAllowList {
        IpAllowList::compile(&berth_proto::v1::IpAllowList {
            ranges: ranges.iter().map(|r| r.to_string()).collect(),
            reject_status: reject,
            source,
        })
        .expect("compiles")
    }

    fn check(mw: &IpAllowList, peer: &str, xff: Option<&str>) -> Option<u16> {
        let mut ctx = RequestContext::for_test("GET", "/", "h", peer);
        let mut head = head("GET", "/");
        if let Some(x) = xff {
            head.headers
                .insert("x-forwarded-for", HeaderValue::from_str(x).unwrap());
        }
        match mw.request(&mut ctx, &mut head) {
            Flow::Next => None,
            Flow::Answer(r) => Some(r.status().as_u16()),
        }
    }

    #[test]
    fn by_peer() {
        let mw = list(&["20.20.20.20", "20.20.20.21/32", "10.0.0.0/8"], 0, None);
        assert_eq!(check(&mw, "20.20.20.20:1234", None), None);
        assert_eq!(check(&mw, "10.1.1.1:1", Some("20.20.20.20")), None);
        assert_eq!(check(&mw, "30.30.30.30:1", Some("20.20.20.20")), Some(403));
        assert_eq!(check(&mw, "[::ffff:10.1.1.1]:1", None), None);
    }

    #[test]
    fn by_depth_and_excluded() {
        let depth = SourceCriterion {
            depth: 2,
            ..Default::default()
        };
        let mw = list(&["1.1.1.1"], 0, Some(depth));
        assert_eq!(check(&mw, "9.9.9.9:1", Some("1.1.1.1, 2.2.2.2")), None);
        assert_eq!(check(&mw, "9.9.9.9:1", Some("2.2.2.2, 1.1.1.1")), Some(403));
        assert_eq!(
            check(&mw, "1.1.1.1:1", None),
            Some(403),
            "no X-Forwarded-For, no address"
        );
        let excluded = SourceCriterion {
            excluded: vec!["2.2.2.2".into()],
            ..Default::default()
        };
        let mw = list(&["1.1.1.1"], 0, Some(excluded));
        assert_eq!(check(&mw, "9.9.9.9:1", Some("1.1.1.1, 2.2.2.2")), None);
        assert_eq!(
            check(&mw, "9.9.9.9:1", Some("1.1.1.1, 3.3.3.3, 2.2.2.2")),
            Some(403)
        );
    }

    #[tokio::test]
    async fn reject_status_and_body() {
        let mw = list(&["1.1.1.1"], 404, None);
        let mut ctx = RequestContext::for_test("GET", "/", "h", "2.2.2.2:1");
        let Flow::Answer(r) = mw.request(&mut ctx, &mut head("GET", "/")) else {
            panic!("rejected")
        };
        assert_eq!(r.status(), 404);
        assert!(r.headers().get("content-type").is_none());
        assert_eq!(body_text(r).await, "Not Found");
        let mw = list(&["1.1.1.1"], 0, None);
        let Flow::Answer(r) = mw.request(&mut ctx, &mut head("GET", "/")) else {
            panic!("rejected")
        };
        assert_eq!(body_text(r).await, "Forbidden");
    }

    #[test]
    fn bad_settings() {
        assert!(IpAllowList::compile(&berth_proto::v1::IpAllowList::default()).is_err());
        for status in [99, 599, 70000] {
            assert!(IpAllowList::compile(&berth_proto::v1::IpAllowList {
                ranges: vec!["1.1.1.1".into()],
                reject_status: status,
                source: None,
            })
            .is_err());
        }
    }
}
