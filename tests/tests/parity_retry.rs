//! Parity with Traefik 3.7's `retry` middleware: a server that refuses connections costs the
//! client nothing when the router retries, for any method (Traefik retries a request that could
//! not be sent whatever its method), the retry going to the next server.
//! See `berth_tests::parity` for how a case runs.

use berth_tests::parity::{get, request, run, Case};
use berth_tests::Result;

#[tokio::test]
async fn parity_retry_moves_past_a_refusing_server() -> Result<()> {
    let tags = [
        "traefik.enable=true",
        "traefik.http.routers.mw-retry.rule=Host(`retry.mw.test`)",
        "traefik.http.routers.mw-retry.middlewares=mw-retry",
        "traefik.http.middlewares.mw-retry.retry.attempts=2",
        "traefik.http.middlewares.mw-retry.retry.initialInterval=10ms",
    ];
    let mut case = Case::new("retry").service("mw-retry", &tags).dead_instances(1);
    // Two servers, one refusing: whichever the balancer starts with, every request gets through.
    for path in ["/a", "/b", "/c", "/d"] {
        case = case.request(get("retry.mw.test", path).backend("mw-retry").path(path));
    }
    for path in ["/post-a", "/post-b"] {
        case = case.request(
            request("POST", "retry.mw.test", path)
                .backend("mw-retry")
                .path(path),
        );
    }
    run(vec![case]).await
}
