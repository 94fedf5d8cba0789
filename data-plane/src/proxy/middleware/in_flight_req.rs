//! `in_flight_req`: at most `amount` requests in flight at once per source.
//!
//! For: Traefik's InFlightReq (oxy's connection limiter): a request over the limit is answered
//! with 429 and body `max connections reached: <amount>`, without `Content-Type`; an admitted one
//! holds a slot until its response has been sent (the slot rides in the response body). Counts
//! are per middleware of a route, per source (see `source`), kept across snapshots while the
//! settings stay the same; a source with nothing in flight takes no memory.
//! Not for: rates over time (see `rate_limit`).

use std::sync::Arc;

use dashmap::DashMap;
use http::request::Parts;
use http::StatusCode;

use super::source::{Source, SourceKey};
use super::{reply, Flow};
use crate::proxy::context::RequestContext;

type Counts = DashMap<SourceKey, i64>;

#[derive(Debug)]
pub(crate) struct InFlightReq {
    amount: i64,
    source: Source,
    counts: Arc<Counts>,
}

/// One admitted request; gives its slot back when dropped.
#[derive(Debug)]
pub(crate) struct InFlightSlot {
    counts: Arc<Counts>,
    key: SourceKey,
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        self.counts.remove_if_mut(&self.key, |_, count| {
            *count -= 1;
            *count <= 0
        });
    }
}

impl InFlightReq {
    pub(crate) fn compile(
        config: &berth_proto::v1::InFlightReq,
        previous: Option<&InFlightReq>,
    ) -> Result<Self, String> {
        let source = Source::compile(config.source.as_ref(), false)?;
        let counts = previous
            .filter(|p| p.source == source)
            .map(|p| p.counts.clone())
            .unwrap_or_default();
        Ok(Self {
            amount: config.amount,
            source,
            counts,
        })
    }

    pub(crate) fn request(&self, ctx: &mut RequestContext, head: &mut Parts) -> Flow {
        let key = self.source.key(ctx, head);
        let admitted = {
            let mut count = self.counts.entry(key.clone()).or_insert(0);
            if *count >= self.amount {
                false
            } else {
                *count += 1;
                true
            }
        };
        if !admitted {
            // A refused first request must not leave a zero count behind.
            self.counts.remove_if(&key, |_, count| *count <= 0);
            return Flow::Answer(reply::bare(
                StatusCode::TOO_MANY_REQUESTS,
                format!("max connections reached: {}", self.amount),
            ));
        }
        ctx.holds.push(InFlightSlot {
            counts: self.counts.clone(),
            key,
        });
        Flow::Next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::{body_text, head};

    fn limiter(amount: i64) -> InFlightReq {
        InFlightReq::compile(&berth_proto::v1::InFlightReq { amount, source: None }, None).expect("compiles")
    }

    fn admit(mw: &InFlightReq, peer: &str) -> Result<Vec<InFlightSlot>, u16> {
        let mut ctx = RequestContext::for_test("GET", "/", "h", peer);
        match mw.request(&mut ctx, &mut head("GET", "/")) {
            Flow::Next => Ok(std::mem::take(&mut ctx.holds)),
            Flow::Answer(r) => Err(r.status().as_u16()),
        }
    }

    #[tokio::test]
    async fn limits_per_source_until_released() {
        let mw = limiter(2);
        let a = admit(&mw, "10.0.0.1:1").expect("first");
        let b = admit(&mw, "10.0.0.1:2").expect("second");
        assert_eq!(admit(&mw, "10.0.0.1:3").err(), Some(429));
        let other = admit(&mw, "10.0.0.2:1").expect("another source");
        drop(a);
        let c = admit(&mw, "10.0.0.1:4").expect("a slot was given back");
        drop((b, c, other));
        assert!(mw.counts.is_empty(), "no memory for idle sources");

        let mut ctx = RequestContext::for_test("GET", "/", "h", "10.0.0.3:1");
        let _held = admit(&mw, "10.0.0.3:1").unwrap();
        let _held2 = admit(&mw, "10.0.0.3:1").unwrap();
        let Flow::Answer(r) = mw.request(&mut ctx, &mut head("GET", "/")) else {
            panic!("refused")
        };
        assert!(r.headers().get("content-type").is_none());
        assert_eq!(body_text(r).await, "max connections reached: 2");
    }

    #[test]
    fn zero_refuses_everything() {
        let mw = limiter(0);
        assert_eq!(admit(&mw, "10.0.0.1:1").err(), Some(429));
        assert!(mw.counts.is_empty());
    }

    #[test]
    fn counts_survive_a_new_table() {
        let first = limiter(1);
        let held = admit(&first, "10.0.0.1:1").unwrap();
        let second = InFlightReq::compile(
            &berth_proto::v1::InFlightReq {
                amount: 1,
                source: None,
            },
            Some(&first),
        )
        .unwrap();
        assert_eq!(admit(&second, "10.0.0.1:2").err(), Some(429));
        drop(held);
        assert!(admit(&second, "10.0.0.1:3").is_ok());
    }
}
