//! The route discovery service on the wire, with updates encoded once for every stream.
//!
//! tonic's generated server encodes every `RouteUpdate` on every stream; with a thousand proxies
//! that is a thousand encodings of the same snapshot. This module serves the same gRPC method
//! (`/berth.routes.v1.RouteDiscovery/Stream`, same messages) whose outgoing item is a [`Push`]:
//! the stream's own small header (`version` and `nonce`) followed by a body shared by every
//! stream (see `store::Encoded`). Protobuf fields may come in any order, so a proxy decodes an
//! ordinary `RouteUpdate`. Incoming messages are decoded by prost as usual.
//!
//! The response body is written here, not by tonic's encoder: tonic copies each message into a
//! per-stream buffer that keeps the capacity of the largest message sent, so every stream would
//! hold a copy of the full snapshot for as long as it lives. Here each push goes out as two HTTP/2
//! data chunks, the gRPC frame header with the stream's header, then the shared body itself (a
//! reference, not a copy), and the stream holds nothing once HTTP/2 has sent it. When the
//! connection takes a push from the stream's queue, the push tells its session (see
//! [`Push::on_taken`]): the session's ACK deadline counts from then, not from when it queued it.
//!
//! Not for: what is sent when (see `server`) or how a body is built (see `store`).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use berth_proto::v1::{ProxyMessage, RouteUpdate};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt as _;
use hyper::body::Frame;
use prost::Message as _;
use tokio::sync::mpsc;
use tonic::body::Body as TonicBody;
use tonic::codec::{DecodeBuf, Decoder};
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::{Status, Streaming};

use crate::server::{DiscoveryService, PushStream};

/// The largest message a proxy may send (tonic's default limit).
const MAX_PROXY_MESSAGE: usize = 4 * 1024 * 1024;

/// One update as a stream sends it: its own header, then the shared body.
#[derive(Debug, Clone)]
pub(crate) struct Push {
    header: Bytes,
    body: Bytes,
    /// Told `nonce` when the connection takes the push out of the stream's queue.
    taken: Option<(mpsc::UnboundedSender<u64>, u64)>,
}

impl Push {
    pub(crate) fn new(version: &str, nonce: &str, body: Bytes) -> Push {
        let header = RouteUpdate {
            version: version.to_owned(),
            nonce: nonce.to_owned(),
            body: None,
        }
        .encode_to_vec();
        Push {
            header: Bytes::from(header),
            body,
            taken: None,
        }
    }

    /// Sends `nonce` to `taken` when the connection takes this push from the stream's queue.
    pub(crate) fn on_taken(mut self, taken: mpsc::UnboundedSender<u64>, nonce: u64) -> Push {
        self.taken = Some((taken, nonce));
        self
    }

    /// Bytes on the wire (the message, without gRPC's 5-byte frame header).
    pub(crate) fn len(&self) -> usize {
        self.header.len() + self.body.len()
    }

    /// The push as HTTP/2 data: gRPC's frame header (uncompressed, length) and the stream's own
    /// header in one small chunk, then the shared body, not copied.
    fn frames(self) -> Result<[Frame<Bytes>; 2], Status> {
        if let Some((taken, nonce)) = &self.taken {
            // The session may be gone already; then nobody waits for this.
            let _ = taken.send(*nonce);
        }
        let len = u32::try_from(self.len()).map_err(|_| {
            Status::internal(format!("an update of {} bytes is too large for gRPC", self.len()))
        })?;
        let mut head = BytesMut::with_capacity(5 + self.header.len());
        head.put_u8(0);
        head.put_u32(len);
        head.put_slice(&self.header);
        Ok([Frame::data(head.freeze()), Frame::data(self.body)])
    }
}

/// gRPC trailers carrying `status`.
fn trailers(status: &Status) -> Frame<Bytes> {
    let mut map = http::HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        // Only a message that cannot be a header value fails; say so without it.
        map.clear();
        let _ = Status::new(status.code(), "").add_header(&mut map);
    }
    Frame::trailers(map)
}

/// The response to one stream: its pushes as they come, then the trailers with the status that
/// ended it (OK when the stream ended without one).
fn respond(pushes: PushStream) -> http::Response<TonicBody> {
    let frames = futures::stream::unfold(Some(pushes), |pushes| async move {
        let mut pushes = pushes?;
        let (frames, rest) = match pushes.next().await {
            Some(Ok(push)) => match push.frames() {
                Ok(frames) => (Vec::from(frames), Some(pushes)),
                Err(status) => (vec![trailers(&status)], None),
            },
            Some(Err(status)) => (vec![trailers(&status)], None),
            None => (vec![trailers(&Status::ok(""))], None),
        };
        Some((
            futures::stream::iter(frames.into_iter().map(Ok::<_, Status>)),
            rest,
        ))
    })
    .flatten();
    let mut response = http::Response::new(TonicBody::new(http_body_util::StreamBody::new(frames)));
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
    response
}

/// Proxy messages in, decoded by prost.
#[derive(Debug, Default)]
pub(crate) struct MessageDecoder;

impl Decoder for MessageDecoder {
    type Item = ProxyMessage;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<ProxyMessage>, Status> {
        ProxyMessage::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("a proxy message does not decode: {e}")))
    }
}

/// The route discovery gRPC service, as `tonic::transport::Server::add_service` takes it.
#[derive(Clone)]
pub(crate) struct DiscoveryServer {
    inner: Arc<DiscoveryService>,
}

impl DiscoveryServer {
    pub(crate) fn new(inner: DiscoveryService) -> DiscoveryServer {
        DiscoveryServer {
            inner: Arc::new(inner),
        }
    }
}

impl NamedService for DiscoveryServer {
    const NAME: &'static str = berth_proto::v1::route_discovery_server::SERVICE_NAME;
}

/// The path of the one method.
const STREAM_PATH: &str = "/berth.routes.v1.RouteDiscovery/Stream";

impl<B> Service<http::Request<B>> for DiscoveryServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<TonicBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != STREAM_PATH {
            return Box::pin(async move {
                let mut response = http::Response::new(TonicBody::default());
                let headers = response.headers_mut();
                headers.insert(Status::GRPC_STATUS, (tonic::Code::Unimplemented as i32).into());
                headers.insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
                Ok(response)
            });
        }
        let inner = self.inner.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // Messages are sent and taken uncompressed only (as tonic's server does by default).
            if let Some(encoding) = parts.headers.get("grpc-encoding") {
                if encoding.as_bytes() != b"identity" {
                    let status = Status::unimplemented(format!(
                        "message compression {:?} is not supported: send messages uncompressed",
                        String::from_utf8_lossy(encoding.as_bytes())
                    ));
                    return Ok(status.into_http());
                }
            }
            let incoming = Streaming::new_request(MessageDecoder, body, None, Some(MAX_PROXY_MESSAGE));
            let request = tonic::Request::from_parts(
                MetadataMap::from_headers(parts.headers),
                parts.extensions,
                incoming,
            );
            Ok(match inner.stream(request).await {
                Ok(response) => respond(response.into_inner()),
                Err(status) => status.into_http(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::route_update::Body;
    use berth_proto::v1::{Route, Snapshot};

    #[test]
    fn a_push_decodes_as_an_ordinary_route_update() {
        let body = RouteUpdate {
            version: String::new(),
            nonce: String::new(),
            body: Some(Body::Snapshot(Snapshot {
                routes: vec![Route {
                    name: "web".into(),
                    ..Default::default()
                }],
                clusters: Vec::new(),
            })),
        };
        let push = Push::new("00ff", "7", Bytes::from(body.encode_to_vec()));
        let mut wire = push.header.to_vec();
        wire.extend_from_slice(&push.body);
        assert_eq!(wire.len(), push.len());
        let decoded = RouteUpdate::decode(wire.as_slice()).expect("decodes");
        assert_eq!(decoded.version, "00ff");
        assert_eq!(decoded.nonce, "7");
        assert_eq!(decoded.body, body.body);
    }

    #[test]
    fn a_push_goes_out_as_one_grpc_frame_whose_body_is_shared_not_copied() {
        let body = Bytes::from(vec![7u8; 1000]);
        let push = Push::new("v1", "3", body.clone());
        let len = push.len();
        let [head, shared] = push.frames().expect("small enough");
        let (head, shared) = (head.into_data().expect("data"), shared.into_data().expect("data"));
        assert_eq!(head[0], 0, "not compressed");
        assert_eq!(
            u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize,
            len
        );
        assert_eq!(head.len() - 5 + shared.len(), len);
        assert_eq!(shared.as_ptr(), body.as_ptr(), "the shared body itself");
    }

    #[test]
    fn a_push_says_when_the_connection_takes_it() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let push = Push::new("v1", "3", Bytes::from_static(b"x")).on_taken(tx, 3);
        assert!(rx.try_recv().is_err(), "queued, not taken yet");
        push.frames().expect("small enough");
        assert_eq!(rx.try_recv().ok(), Some(3));
    }
}
