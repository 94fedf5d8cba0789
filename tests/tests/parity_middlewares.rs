//! Parity with Traefik 3.7: every middleware Berth implements, alone, chained, and defined on
//! another service's tags. See `berth_tests::parity` for how a case runs.

use berth_tests::parity::{get, request, run, Case};
use berth_tests::Result;

const ON: &str = "traefik.enable=true";

/// htpasswd users in the three hash forms Traefik accepts, with their passwords.
/// apr1 and SHA were made with `openssl passwd -apr1 -salt parity01 apr-secret` and
/// `{SHA}` + base64(sha1("sha-secret")); the bcrypt one is the OpenBSD test vector for "U*U".
const APR1_USER: (&str, &str, &str) = ("alice", "apr-secret", "$apr1$parity01$pyvwEGCTjPgF3iF.69lBz/");
const SHA_USER: (&str, &str, &str) = ("bob", "sha-secret", "{SHA}KkPcK3XYeA35EhWhKYmaCyAgadY=");
const BCRYPT_USER: (&str, &str, &str) = (
    "carol",
    "U*U",
    "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
);

#[tokio::test]
async fn parity_path_middlewares() -> Result<()> {
    run(vec![
        Case::new("stripprefix")
            .service(
                "mw-strip",
                &[
                    ON,
                    "traefik.http.routers.mw-strip.rule=Host(`strip.mw.test`)",
                    "traefik.http.routers.mw-strip.middlewares=mw-strip",
                    "traefik.http.middlewares.mw-strip.stripprefix.prefixes=/api,/v1/",
                ],
            )
            .request(
                get("strip.mw.test", "/api/x?q=1")
                    .backend("mw-strip")
                    .path("/x")
                    .query(Some("q=1"))
                    .seen("x-forwarded-prefix", Some("/api")),
            )
            .request(get("strip.mw.test", "/api").backend("mw-strip").path("/"))
            .request(get("strip.mw.test", "/apix").backend("mw-strip").path("/x"))
            .request(get("strip.mw.test", "/v1/y").backend("mw-strip").path("/y"))
            .request(
                get("strip.mw.test", "/other")
                    .backend("mw-strip")
                    .path("/other")
                    .seen("x-forwarded-prefix", None),
            ),
        Case::new("stripprefixregex")
            .service(
                "mw-stripre",
                &[
                    ON,
                    "traefik.http.routers.mw-stripre.rule=Host(`stripre.mw.test`)",
                    "traefik.http.routers.mw-stripre.middlewares=mw-stripre",
                    "traefik.http.middlewares.mw-stripre.stripprefixregex.regex=/users/[0-9]+",
                ],
            )
            .request(
                get("stripre.mw.test", "/users/42/profile")
                    .backend("mw-stripre")
                    .path("/profile"),
            )
            .request(
                get("stripre.mw.test", "/users/x/profile")
                    .backend("mw-stripre")
                    .path("/users/x/profile"),
            ),
        Case::new("addprefix")
            .service(
                "mw-add",
                &[
                    ON,
                    "traefik.http.routers.mw-add.rule=Host(`add.mw.test`)",
                    "traefik.http.routers.mw-add.middlewares=mw-add",
                    "traefik.http.middlewares.mw-add.addprefix.prefix=/v2",
                ],
            )
            .request(
                get("add.mw.test", "/x?a=b")
                    .backend("mw-add")
                    .path("/v2/x")
                    .query(Some("a=b")),
            )
            .request(get("add.mw.test", "/").backend("mw-add").path("/v2/")),
        Case::new("replacepath")
            .service(
                "mw-replace",
                &[
                    ON,
                    "traefik.http.routers.mw-replace.rule=Host(`replace.mw.test`)",
                    "traefik.http.routers.mw-replace.middlewares=mw-replace",
                    "traefik.http.middlewares.mw-replace.replacepath.path=/fixed",
                ],
            )
            .request(
                get("replace.mw.test", "/any/thing?k=v")
                    .backend("mw-replace")
                    .path("/fixed")
                    .query(Some("k=v"))
                    .seen("x-replaced-path", Some("/any/thing")),
            ),
        Case::new("replacepathregex")
            .service(
                "mw-replacere",
                &[
                    ON,
                    "traefik.http.routers.mw-replacere.rule=Host(`replacere.mw.test`)",
                    "traefik.http.routers.mw-replacere.middlewares=mw-replacere",
                    "traefik.http.middlewares.mw-replacere.replacepathregex.regex=^/old/(.*)",
                    "traefik.http.middlewares.mw-replacere.replacepathregex.replacement=/new/$1",
                ],
            )
            .request(
                get("replacere.mw.test", "/old/a/b")
                    .backend("mw-replacere")
                    .path("/new/a/b")
                    .seen("x-replaced-path", Some("/old/a/b")),
            )
            .request(
                get("replacere.mw.test", "/keep")
                    .backend("mw-replacere")
                    .path("/keep")
                    .seen("x-replaced-path", None),
            ),
        Case::new("middlewares run in the order the router lists them")
            .service(
                "mw-order",
                &[
                    ON,
                    "traefik.http.routers.mw-order.rule=Host(`order.mw.test`)",
                    "traefik.http.routers.mw-order.middlewares=mw-order-strip,mw-order-add",
                    "traefik.http.middlewares.mw-order-strip.stripprefix.prefixes=/api",
                    "traefik.http.middlewares.mw-order-add.addprefix.prefix=/internal",
                ],
            )
            .request(
                get("order.mw.test", "/api/x")
                    .backend("mw-order")
                    .path("/internal/x"),
            ),
    ])
    .await
}

#[tokio::test]
async fn parity_header_and_redirect_middlewares() -> Result<()> {
    run(vec![
        Case::new("headers: custom request and response headers, \"\" removes")
            .service(
                "mw-headers",
                &[
                    ON,
                    "traefik.http.routers.mw-headers.rule=Host(`headers.mw.test`)",
                    "traefik.http.routers.mw-headers.middlewares=mw-headers",
                    "traefik.http.middlewares.mw-headers.headers.customrequestheaders.X-Added=yes",
                    "traefik.http.middlewares.mw-headers.headers.customrequestheaders.X-Remove-Me=",
                    "traefik.http.middlewares.mw-headers.headers.customresponseheaders.X-Resp=r1",
                    "traefik.http.middlewares.mw-headers.headers.customresponseheaders.X-Demo-Service=",
                ],
            )
            .request(
                get("headers.mw.test", "/")
                    .header("X-Remove-Me", "secret")
                    .header("X-Added", "from-client")
                    .backend("mw-headers")
                    .seen("x-added", Some("yes"))
                    .seen("x-remove-me", None)
                    .response("x-resp", Some("r1"))
                    .response("x-demo-service", None),
            ),
        Case::new("forwarded headers from an untrusted client are replaced")
            .service(
                "mw-fwd",
                &[ON, "traefik.http.routers.mw-fwd.rule=Host(`fwd.mw.test`)"],
            )
            .request(
                get("fwd.mw.test", "/")
                    .header("X-Forwarded-For", "203.0.113.9")
                    .header("X-Forwarded-Host", "evil.test")
                    .header("X-Forwarded-Proto", "https")
                    .header("X-Real-Ip", "203.0.113.9")
                    .backend("mw-fwd")
                    .seen("x-forwarded-for", Some("127.0.0.1"))
                    .seen("x-forwarded-host", Some("fwd.mw.test"))
                    .seen("x-forwarded-proto", Some("http"))
                    .seen("x-real-ip", Some("127.0.0.1")),
            )
            .request(
                // A browser's fields, which pass on as sent (Berth keeps them out of its header
                // map on the way), `Connection` excepted.
                get("fwd.mw.test", "/")
                    .header("Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
                    .header("Accept-Language", "en-US,en;q=0.9")
                    .header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
                    .header("X-Multi", "1")
                    .header("Sec-Fetch-Mode", "navigate")
                    .header("x-multi", "2")
                    .header("Connection", "keep-alive")
                    .header("Cookie", "theme=dark; session=abc")
                    .backend("mw-fwd")
                    .seen("user-agent", Some("Mozilla/5.0 (X11; Linux x86_64)"))
                    .seen("x-multi", Some("1, 2"))
                    .seen("sec-fetch-mode", Some("navigate"))
                    .seen("connection", None)
                    .seen("x-forwarded-for", Some("127.0.0.1"))
                    .seen("x-real-ip", Some("127.0.0.1")),
            )
            .request(
                get("fwd.mw.test", "/")
                    .header("Connection", "keep-alive, X-Hop")
                    .header("X-Hop", "1")
                    .header("Te", "trailers")
                    .backend("mw-fwd")
                    .seen("x-hop", None),
            )
            .request(
                // The standard hop-by-hop headers go even when `Connection` names none of them.
                get("fwd.mw.test", "/")
                    .header("Keep-Alive", "timeout=5")
                    .header("Proxy-Authorization", "Basic eA==")
                    .header("Proxy-Connection", "keep-alive")
                    .header("X-Kept", "1")
                    .backend("mw-fwd")
                    .seen("keep-alive", None)
                    .seen("proxy-authorization", None)
                    .seen("proxy-connection", None)
                    .seen("x-kept", Some("1")),
            ),
        Case::new("redirectscheme")
            .service(
                "mw-rs",
                &[
                    ON,
                    "traefik.http.routers.mw-rs.rule=Host(`rs.mw.test`)",
                    "traefik.http.routers.mw-rs.middlewares=mw-rs",
                    "traefik.http.middlewares.mw-rs.redirectscheme.scheme=https",
                    "traefik.http.middlewares.mw-rs.redirectscheme.permanent=true",
                ],
            )
            .service(
                "mw-rsport",
                &[
                    ON,
                    "traefik.http.routers.mw-rsport.rule=Host(`rsport.mw.test`)",
                    "traefik.http.routers.mw-rsport.middlewares=mw-rsport",
                    "traefik.http.middlewares.mw-rsport.redirectscheme.scheme=https",
                    "traefik.http.middlewares.mw-rsport.redirectscheme.port=8443",
                ],
            )
            .request(
                get("rs.mw.test", "/a/b?c=d")
                    .refused(301)
                    .location("https://rs.mw.test/a/b?c=d"),
            )
            .request(
                request("POST", "rs.mw.test", "/form")
                    .refused(308)
                    .location("https://rs.mw.test/form"),
            )
            .request(get("rs.mw.test:8080", "/").status(301))
            .request(
                get("rsport.mw.test", "/x")
                    .refused(302)
                    .location("https://rsport.mw.test:8443/x"),
            )
            .request(request("PUT", "rsport.mw.test", "/x").refused(307)),
        Case::new("redirectregex")
            .service(
                "mw-rr",
                &[
                    ON,
                    "traefik.http.routers.mw-rr.rule=Host(`rr.mw.test`)",
                    "traefik.http.routers.mw-rr.middlewares=mw-rr",
                    r"traefik.http.middlewares.mw-rr.redirectregex.regex=^http://rr\.mw\.test/old/(.*)",
                    "traefik.http.middlewares.mw-rr.redirectregex.replacement=http://new.mw.test/${1}",
                    "traefik.http.middlewares.mw-rr.redirectregex.permanent=true",
                ],
            )
            .request(
                get("rr.mw.test", "/old/x?y=1")
                    .refused(301)
                    .location("http://new.mw.test/x?y=1"),
            )
            .request(get("rr.mw.test", "/new/x").backend("mw-rr").path("/new/x")),
    ])
    .await
}

#[tokio::test]
async fn parity_access_middlewares() -> Result<()> {
    let users = format!(
        "traefik.http.middlewares.mw-auth.basicauth.users={}:{},{}:{},{}:{}",
        APR1_USER.0, APR1_USER.2, SHA_USER.0, SHA_USER.2, BCRYPT_USER.0, BCRYPT_USER.2
    );
    let users_kept = format!(
        "traefik.http.middlewares.mw-authkeep.basicauth.users={}:{}",
        APR1_USER.0, APR1_USER.2
    );
    run(vec![
        Case::new("basicauth: bcrypt, apr1 and SHA users; wrong password; removeheader; realm")
            .service(
                "mw-auth",
                &[
                    ON,
                    "traefik.http.routers.mw-auth.rule=Host(`auth.mw.test`)",
                    "traefik.http.routers.mw-auth.middlewares=mw-auth",
                    &users,
                    "traefik.http.middlewares.mw-auth.basicauth.realm=parity",
                    "traefik.http.middlewares.mw-auth.basicauth.removeheader=true",
                ],
            )
            .service(
                "mw-authkeep",
                &[
                    ON,
                    "traefik.http.routers.mw-authkeep.rule=Host(`authkeep.mw.test`)",
                    "traefik.http.routers.mw-authkeep.middlewares=mw-authkeep",
                    &users_kept,
                ],
            )
            .request(
                get("auth.mw.test", "/")
                    .refused(401)
                    .response("www-authenticate", Some("Basic realm=\"parity\"")),
            )
            .request(
                get("auth.mw.test", "/")
                    .basic_auth(APR1_USER.0, APR1_USER.1)
                    .backend("mw-auth")
                    .seen("authorization", None),
            )
            .request(
                get("auth.mw.test", "/")
                    .basic_auth(SHA_USER.0, SHA_USER.1)
                    .backend("mw-auth"),
            )
            .request(
                get("auth.mw.test", "/")
                    .basic_auth(BCRYPT_USER.0, BCRYPT_USER.1)
                    .backend("mw-auth"),
            )
            .request(
                get("auth.mw.test", "/")
                    .basic_auth(APR1_USER.0, "wrong")
                    .refused(401),
            )
            .request(
                get("auth.mw.test", "/")
                    .basic_auth("mallory", APR1_USER.1)
                    .refused(401),
            )
            .request(
                get("auth.mw.test", "/")
                    .header("Authorization", "Bearer abc")
                    .refused(401),
            )
            .request(
                get("authkeep.mw.test", "/")
                    .refused(401)
                    .response("www-authenticate", Some("Basic realm=\"traefik\"")),
            )
            .request(
                get("authkeep.mw.test", "/")
                    .basic_auth(APR1_USER.0, APR1_USER.1)
                    .backend("mw-authkeep")
                    .seen("authorization", Some("Basic YWxpY2U6YXByLXNlY3JldA==")),
            ),
        Case::new("ratelimit: a burst over the limit is refused with 429")
            .service(
                "mw-rate",
                &[
                    ON,
                    "traefik.http.routers.mw-rate.rule=Host(`rate.mw.test`)",
                    "traefik.http.routers.mw-rate.middlewares=mw-rate",
                    "traefik.http.middlewares.mw-rate.ratelimit.average=1",
                    "traefik.http.middlewares.mw-rate.ratelimit.period=1m",
                    "traefik.http.middlewares.mw-rate.ratelimit.burst=2",
                ],
            )
            .request(get("rate.mw.test", "/").backend("mw-rate"))
            .request(get("rate.mw.test", "/").backend("mw-rate"))
            .request(get("rate.mw.test", "/").refused(429))
            .request(get("rate.mw.test", "/").refused(429)),
        Case::new("inflightreq: a second request while one is in flight is refused")
            .service(
                "mw-inflight",
                &[
                    ON,
                    "traefik.http.routers.mw-inflight.rule=Host(`inflight.mw.test`)",
                    "traefik.http.routers.mw-inflight.middlewares=mw-inflight",
                    "traefik.http.middlewares.mw-inflight.inflightreq.amount=1",
                ],
            )
            .request(get("inflight.mw.test", "/").backend("mw-inflight"))
            .request(get("inflight.mw.test", "/").while_in_flight(1000).refused(429)),
        Case::new("ipallowlist: the peer address decides")
            .service(
                "mw-allow",
                &[
                    ON,
                    "traefik.http.routers.mw-allow.rule=Host(`allow.mw.test`)",
                    "traefik.http.routers.mw-allow.middlewares=mw-allow",
                    "traefik.http.middlewares.mw-allow.ipallowlist.sourcerange=127.0.0.1/32,192.0.2.0/24",
                ],
            )
            .service(
                "mw-deny",
                &[
                    ON,
                    "traefik.http.routers.mw-deny.rule=Host(`deny.mw.test`)",
                    "traefik.http.routers.mw-deny.middlewares=mw-deny",
                    "traefik.http.middlewares.mw-deny.ipallowlist.sourcerange=192.0.2.0/24",
                ],
            )
            .request(get("allow.mw.test", "/").backend("mw-allow"))
            .request(get("deny.mw.test", "/").refused(403))
            .request(
                get("deny.mw.test", "/")
                    .header("X-Forwarded-For", "192.0.2.7")
                    .refused(403),
            ),
    ])
    .await
}

#[tokio::test]
async fn parity_chains_and_shared_middlewares() -> Result<()> {
    let app_users = format!(
        "traefik.http.middlewares.mw-app-auth.basicauth.users={}:{}",
        APR1_USER.0, APR1_USER.2
    );
    run(vec![
        Case::new("chain")
            .service(
                "mw-chain",
                &[
                    ON,
                    "traefik.http.routers.mw-chain.rule=Host(`chain.mw.test`)",
                    "traefik.http.routers.mw-chain.middlewares=mw-chain",
                    "traefik.http.middlewares.mw-chain.chain.middlewares=mw-chain-strip,mw-chain-hdr",
                    "traefik.http.middlewares.mw-chain-strip.stripprefix.prefixes=/c",
                    "traefik.http.middlewares.mw-chain-hdr.headers.customrequestheaders.X-Chained=1",
                ],
            )
            .request(
                get("chain.mw.test", "/c/x")
                    .backend("mw-chain")
                    .path("/x")
                    .seen("x-chained", Some("1")),
            ),
        Case::new("a middleware defined on another service, with and without @consulcatalog")
            .service(
                "mw-lib",
                &[
                    ON,
                    "traefik.http.routers.mw-lib.rule=Host(`lib.mw.test`)",
                    "traefik.http.middlewares.mw-shared-strip.stripprefix.prefixes=/shared",
                    "traefik.http.middlewares.mw-shared-hdr.headers.customrequestheaders.X-Shared=1",
                ],
            )
            .service(
                "mw-user",
                &[
                    ON,
                    "traefik.http.routers.mw-user.rule=Host(`user.mw.test`)",
                    "traefik.http.routers.mw-user.middlewares=mw-shared-strip@consulcatalog,mw-shared-hdr",
                ],
            )
            .request(
                get("user.mw.test", "/shared/x")
                    .backend("mw-user")
                    .path("/x")
                    .seen("x-shared", Some("1")),
            )
            .request(
                get("lib.mw.test", "/shared/x")
                    .backend("mw-lib")
                    .path("/shared/x")
                    .seen("x-shared", None),
            ),
        Case::new("a whole application: https redirect on web, an authenticated stripped API")
            .service(
                "mw-app",
                &[
                    ON,
                    "traefik.http.routers.mw-app-web.rule=Host(`app.mw.test`)",
                    "traefik.http.routers.mw-app-web.entrypoints=web",
                    "traefik.http.routers.mw-app-web.middlewares=mw-app-https",
                    "traefik.http.routers.mw-app.rule=Host(`app.mw.test`)",
                    "traefik.http.routers.mw-app.entrypoints=websecure",
                    "traefik.http.routers.mw-app-api.rule=Host(`app.mw.test`) && PathPrefix(`/api`)",
                    "traefik.http.routers.mw-app-api.entrypoints=websecure",
                    "traefik.http.routers.mw-app-api.middlewares=mw-app-auth,mw-app-strip",
                    "traefik.http.middlewares.mw-app-https.redirectscheme.scheme=https",
                    &app_users,
                    "traefik.http.middlewares.mw-app-strip.stripprefix.prefixes=/api",
                ],
            )
            .request(
                get("app.mw.test", "/api/x")
                    .refused(302)
                    .location("https://app.mw.test/api/x"),
            )
            .request(
                get("app.mw.test", "/page")
                    .on("websecure")
                    .backend("mw-app")
                    .path("/page"),
            )
            .request(get("app.mw.test", "/api/x").on("websecure").refused(401))
            .request(
                get("app.mw.test", "/api/x?y=1")
                    .on("websecure")
                    .basic_auth(APR1_USER.0, APR1_USER.1)
                    .backend("mw-app")
                    .path("/x")
                    .query(Some("y=1")),
            ),
        Case::new("a router naming a middleware that exists nowhere is not served")
            .service(
                "mw-missing",
                &[
                    ON,
                    "traefik.http.routers.mw-missing.rule=Host(`missing.mw.test`)",
                    "traefik.http.routers.mw-missing.middlewares=mw-nowhere",
                    "traefik.http.routers.mw-missing-ok.rule=Host(`missingok.mw.test`)",
                    "traefik.http.routers.mw-missing-ok.service=mw-missing-svc",
                    "traefik.http.services.mw-missing-svc.loadbalancer.server.port={port}",
                ],
            )
            .request(get("missing.mw.test", "/").unrouted())
            .request(get("missingok.mw.test", "/").backend("mw-missing")),
    ])
    .await
}
