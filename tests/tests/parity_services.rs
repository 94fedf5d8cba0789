//! Parity with Traefik 3.7: priorities, entrypoints, service options, the default router and
//! service, and malformed tags. See `berth_tests::parity` for how a case runs.
//!
//! Not covered: `loadbalancer.server.scheme=https`, which needs an HTTPS backend whose
//! certificate both proxies trust (Traefik through a servers transport, Berth through its own
//! setting); the echo backend serves plain HTTP only.

use berth_tests::parity::{get, run, Case};
use berth_tests::Result;

const ON: &str = "traefik.enable=true";

#[tokio::test]
async fn parity_priorities_and_entrypoints() -> Result<()> {
    run(vec![
        Case::new("default priority: the longer rule wins")
            .service(
                "pr-short",
                &[ON, "traefik.http.routers.pr-short.rule=Host(`prio.test`)"],
            )
            .service(
                "pr-long",
                &[
                    ON,
                    "traefik.http.routers.pr-long.rule=Host(`prio.test`) && PathPrefix(`/api`)",
                ],
            )
            .service(
                "pr-longer",
                &[
                    ON,
                    "traefik.http.routers.pr-longer.rule=Host(`prio.test`) && PathPrefix(`/api/v2`)",
                ],
            )
            .request(get("prio.test", "/").backend("pr-short"))
            .request(get("prio.test", "/api/x").backend("pr-long"))
            .request(get("prio.test", "/api/v2/x").backend("pr-longer")),
        Case::new("explicit priority beats rule length, on one service or across services")
            .service(
                "pr-explicit",
                &[
                    ON,
                    "traefik.http.routers.pr-explicit.rule=Host(`explicit.test`)",
                    "traefik.http.routers.pr-explicit.priority=1000",
                ],
            )
            .service(
                "pr-specific",
                &[
                    ON,
                    "traefik.http.routers.pr-specific.rule=Host(`explicit.test`) && PathPrefix(`/api`)",
                ],
            )
            .service(
                "pr-low",
                &[
                    ON,
                    "traefik.http.routers.pr-low.rule=Host(`low.test`) && PathPrefix(`/a`)",
                    "traefik.http.routers.pr-low.priority=1",
                ],
            )
            .service(
                "pr-low-catchall",
                &[
                    ON,
                    r"traefik.http.routers.pr-low-catchall.rule=HostRegexp(`^low\.test$`)",
                    "traefik.http.routers.pr-low-catchall.priority=2",
                ],
            )
            .request(get("explicit.test", "/api/x").backend("pr-explicit"))
            .request(get("low.test", "/a").backend("pr-low-catchall")),
        Case::new("entrypoints: a router limited to one is not served on the other")
            .service(
                "ep-secure",
                &[
                    ON,
                    "traefik.http.routers.ep-secure.rule=Host(`ep.test`)",
                    "traefik.http.routers.ep-secure.entrypoints=websecure",
                ],
            )
            .service(
                "ep-both",
                &[
                    ON,
                    "traefik.http.routers.ep-both.rule=Host(`epboth.test`)",
                    "traefik.http.routers.ep-both.entrypoints=web,websecure",
                ],
            )
            .service(
                "ep-default",
                &[ON, "traefik.http.routers.ep-default.rule=Host(`epdefault.test`)"],
            )
            .request(get("ep.test", "/").unrouted())
            .request(get("ep.test", "/").on("websecure").backend("ep-secure"))
            .request(get("epboth.test", "/").backend("ep-both"))
            .request(get("epboth.test", "/").on("websecure").backend("ep-both"))
            .request(get("epdefault.test", "/").backend("ep-default"))
            .request(get("epdefault.test", "/").on("websecure").backend("ep-default")),
    ])
    .await
}

#[tokio::test]
async fn parity_service_options() -> Result<()> {
    run(vec![
        Case::new("the default router and service of an enabled service")
            .service("sv-default", &[ON])
            .service("sv_under_score", &[ON])
            .request(get("sv-default", "/x").backend("sv-default").path("/x"))
            .request(get("sv-under-score", "/").backend("sv_under_score"))
            .request(get("sv_under_score", "/").unrouted()),
        Case::new("Traefik v1 tags: Traefik 3 ignores them and serves the default router")
            .service(
                "sv-v1",
                &[
                    ON,
                    "traefik.frontend.rule=Host:v1.sv.test",
                    "traefik.frontend.entryPoints=web",
                ],
            )
            .request(get("sv-v1", "/").backend("sv-v1").known_difference(
                "Berth reads Traefik v1 tags (the article's dialect), so a service with a v1 \
                 rule gets that rule instead of the default router Traefik 3 gives it",
            ))
            .request(
                get("v1.sv.test", "/").unrouted().known_difference(
                    "Berth routes the v1 rule Host:v1.sv.test, which Traefik 3 does not read",
                ),
            ),
        Case::new("a router without a service uses the service's own; a named one is used")
            .service(
                "sv-implicit",
                &[
                    ON,
                    "traefik.http.routers.sv-implicit-r.rule=Host(`implicit.sv.test`)",
                ],
            )
            .service(
                "sv-named",
                &[
                    ON,
                    "traefik.http.routers.sv-named-r.rule=Host(`named.sv.test`)",
                    "traefik.http.routers.sv-named-r.service=sv-named-s",
                    "traefik.http.services.sv-named-s.loadbalancer.server.port={port}",
                ],
            )
            .request(get("implicit.sv.test", "/").backend("sv-implicit"))
            .request(get("named.sv.test", "/").backend("sv-named")),
        Case::new("loadbalancer.server.port overrides the registered port")
            .service_with(
                "sv-port",
                &[
                    ON,
                    "traefik.http.routers.sv-port.rule=Host(`port.sv.test`)",
                    "traefik.http.services.sv-port.loadbalancer.server.port={port}",
                ],
                1,
                true,
            )
            .request(get("port.sv.test", "/").backend("sv-port")),
        Case::new("passhostheader=false sends the endpoint's address as Host")
            .service(
                "sv-nohost",
                &[
                    ON,
                    "traefik.http.routers.sv-nohost.rule=Host(`nohost.sv.test`)",
                    "traefik.http.services.sv-nohost.loadbalancer.passhostheader=false",
                ],
            )
            .service(
                "sv-host",
                &[ON, "traefik.http.routers.sv-host.rule=Host(`host.sv.test`)"],
            )
            .request(
                get("nohost.sv.test", "/")
                    .backend("sv-nohost")
                    .seen("x-forwarded-host", Some("nohost.sv.test")),
            )
            .request(
                get("host.sv.test", "/")
                    .backend("sv-host")
                    .seen("host", Some("host.sv.test")),
            ),
        Case::new("round robin over two instances")
            .service_with(
                "sv-rr",
                &[ON, "traefik.http.routers.sv-rr.rule=Host(`rr.sv.test`)"],
                2,
                false,
            )
            .request(get("rr.sv.test", "/").backend("sv-rr"))
            .request(get("rr.sv.test", "/").backend("sv-rr").same_instance(false))
            .request(get("rr.sv.test", "/").backend("sv-rr").same_instance(false)),
        Case::new("sticky cookie: named, with attributes, and the default name")
            .service_with(
                "sv-sticky",
                &[
                    ON,
                    "traefik.http.routers.sv-sticky.rule=Host(`sticky.sv.test`)",
                    "traefik.http.services.sv-sticky.loadbalancer.sticky.cookie.name=parity_stick",
                    "traefik.http.services.sv-sticky.loadbalancer.sticky.cookie.secure=true",
                    "traefik.http.services.sv-sticky.loadbalancer.sticky.cookie.httponly=true",
                    "traefik.http.services.sv-sticky.loadbalancer.sticky.cookie.samesite=strict",
                ],
                2,
                false,
            )
            .service_with(
                "sv-sticky-default",
                &[
                    ON,
                    "traefik.http.routers.sv-sticky-default.rule=Host(`stickydefault.sv.test`)",
                    "traefik.http.services.sv-sticky-default.loadbalancer.sticky.cookie=true",
                ],
                2,
                false,
            )
            .request(get("sticky.sv.test", "/").backend("sv-sticky"))
            .request(
                get("sticky.sv.test", "/")
                    .with_cookies()
                    .backend("sv-sticky")
                    .same_instance(true),
            )
            .request(
                get("sticky.sv.test", "/")
                    .with_cookies()
                    .backend("sv-sticky")
                    .same_instance(true),
            )
            .request(
                get("sticky.sv.test", "/")
                    .header("Cookie", "parity_stick=garbage")
                    .backend("sv-sticky"),
            )
            .request(get("stickydefault.sv.test", "/").backend("sv-sticky-default"))
            .request(
                get("stickydefault.sv.test", "/")
                    .with_cookies()
                    .backend("sv-sticky-default")
                    .same_instance(true),
            ),
    ])
    .await
}

#[tokio::test]
async fn parity_bad_tags() -> Result<()> {
    run(vec![
        Case::new("unbalanced parenthesis: that router only")
            .service(
                "bad-paren",
                &[
                    ON,
                    "traefik.http.routers.bad-paren.rule=Host(`paren.bad.test`",
                    "traefik.http.routers.bad-paren-ok.rule=Host(`parenok.bad.test`)",
                ],
            )
            .request(get("paren.bad.test", "/").unrouted())
            .request(get("parenok.bad.test", "/").backend("bad-paren")),
        Case::new("unknown matcher: that router only")
            .service(
                "bad-matcher",
                &[
                    ON,
                    "traefik.http.routers.bad-matcher.rule=Hots(`matcher.bad.test`)",
                    "traefik.http.routers.bad-matcher-ok.rule=Host(`matcherok.bad.test`)",
                ],
            )
            .request(get("matcher.bad.test", "/").unrouted())
            .request(get("matcherok.bad.test", "/").backend("bad-matcher")),
        Case::new("wrong number of matcher arguments: that router only")
            .service(
                "bad-args",
                &[
                    ON,
                    "traefik.http.routers.bad-args.rule=Host(`args.bad.test`) && Header(`X-Only-Name`)",
                    "traefik.http.routers.bad-args-ok.rule=Host(`argsok.bad.test`)",
                ],
            )
            .request(get("args.bad.test", "/").header("X-Only-Name", "x").unrouted())
            .request(get("argsok.bad.test", "/").backend("bad-args")),
        Case::new("bad regexp: that router only")
            .service(
                "bad-regexp",
                &[
                    ON,
                    "traefik.http.routers.bad-regexp.rule=Host(`regexp.bad.test`) && PathRegexp(`^/(unclosed`)",
                    "traefik.http.routers.bad-regexp-ok.rule=Host(`regexpok.bad.test`)",
                ],
            )
            .request(get("regexp.bad.test", "/unclosed").unrouted())
            .request(get("regexpok.bad.test", "/").backend("bad-regexp")),
        Case::new("a v2 rule on a v3 router: that router only")
            .service(
                "bad-syntax",
                &[
                    ON,
                    "traefik.http.routers.bad-syntax.rule=Host(`syntax.bad.test`, `syntax2.bad.test`)",
                    "traefik.http.routers.bad-syntax-ok.rule=Host(`syntaxok.bad.test`)",
                ],
            )
            .request(get("syntax.bad.test", "/").unrouted())
            .request(get("syntaxok.bad.test", "/").backend("bad-syntax")),
        Case::new("a middleware name that resolves nowhere: that router only")
            .service(
                "bad-mwref",
                &[
                    ON,
                    "traefik.http.routers.bad-mwref.rule=Host(`mwref.bad.test`)",
                    "traefik.http.routers.bad-mwref.middlewares=no-such-middleware@consulcatalog",
                    "traefik.http.routers.bad-mwref-ok.rule=Host(`mwrefok.bad.test`)",
                ],
            )
            .request(get("mwref.bad.test", "/").unrouted())
            .request(get("mwrefok.bad.test", "/").backend("bad-mwref")),
        Case::new("a router naming a service that exists nowhere: that router only")
            .service(
                "bad-svcref",
                &[
                    ON,
                    "traefik.http.routers.bad-svcref.rule=Host(`svcref.bad.test`)",
                    "traefik.http.routers.bad-svcref.service=no-such-service",
                    "traefik.http.routers.bad-svcref-ok.rule=Host(`svcrefok.bad.test`)",
                    "traefik.http.routers.bad-svcref-ok.service=bad-svcref",
                ],
            )
            .request(get("svcref.bad.test", "/").unrouted())
            .request(get("svcrefok.bad.test", "/").backend("bad-svcref")),
        Case::new("an unknown middleware kind: Traefik drops the whole service")
            .service(
                "bad-kind",
                &[
                    ON,
                    "traefik.http.routers.bad-kind.rule=Host(`kind.bad.test`)",
                    "traefik.http.routers.bad-kind.middlewares=bad-kind-mw",
                    "traefik.http.middlewares.bad-kind-mw.nosuchkind.option=1",
                    "traefik.http.routers.bad-kind-ok.rule=Host(`kindok.bad.test`)",
                ],
            )
            .traefik_routers(&[])
            .request(get("kind.bad.test", "/").unrouted())
            .request(get("kindok.bad.test", "/").unrouted().known_difference(
                "Traefik drops every router of a service whose tags do not decode; Berth \
                 rejects only the router that uses the bad middleware",
            )),
        Case::new("an out-of-range number: Traefik drops the whole service")
            .service(
                "bad-number",
                &[
                    ON,
                    "traefik.http.routers.bad-number.rule=Host(`number.bad.test`)",
                    "traefik.http.routers.bad-number.priority=not-a-number",
                    "traefik.http.routers.bad-number-ok.rule=Host(`numberok.bad.test`)",
                ],
            )
            .traefik_routers(&[])
            .request(get("number.bad.test", "/").unrouted())
            .request(get("numberok.bad.test", "/").unrouted().known_difference(
                "Traefik drops every router of a service whose tags do not decode; Berth \
                 rejects only the router whose tag is wrong",
            )),
        Case::new("a password hash Traefik cannot check: it refuses everyone")
            .service(
                "bad-hash",
                &[
                    ON,
                    "traefik.http.routers.bad-hash.rule=Host(`hash.bad.test`)",
                    "traefik.http.routers.bad-hash.middlewares=bad-hash-auth",
                    "traefik.http.middlewares.bad-hash-auth.basicauth.users=dave:not-a-hash",
                    "traefik.http.routers.bad-hash-ok.rule=Host(`hashok.bad.test`)",
                ],
            )
            .request(get("hash.bad.test", "/").basic_auth("dave", "not-a-hash").refused(401).known_difference(
                "Traefik keeps a router whose user has an unreadable hash and refuses every \
                 request (401); Berth rejects the router (404): both let no one in",
            ))
            .request(get("hashok.bad.test", "/").backend("bad-hash")),
    ])
    .await
}
