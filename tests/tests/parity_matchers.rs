//! Parity with Traefik 3.7: every matcher of the v3 rule grammar, their combinations, and the
//! v2 grammar on routers with `ruleSyntax=v2`. See `berth_tests::parity` for how a case runs.

use berth_tests::parity::{get, request, run, Case};
use berth_tests::Result;

const ON: &str = "traefik.enable=true";

#[tokio::test]
async fn parity_matchers() -> Result<()> {
    run(vec![
        Case::new("Host: exact, any case, with a port, trailing dot")
            .service("m-host", &[ON, "traefik.http.routers.m-host.rule=Host(`host.m.test`)"])
            .request(get("host.m.test", "/").backend("m-host").path("/"))
            .request(get("HOST.M.Test", "/x?y=1").backend("m-host").path("/x").query(Some("y=1")))
            .request(get("host.m.test:8080", "/").backend("m-host"))
            .request(get("host.m.test.", "/").backend("m-host"))
            .request(get("other.m.test", "/").unrouted())
            .request(get("sub.host.m.test", "/").unrouted()),
        Case::new("HostRegexp")
            .service(
                "m-hostre",
                &[ON, r"traefik.http.routers.m-hostre.rule=HostRegexp(`^[a-z]+\.hre\.test$`)"],
            )
            .request(get("abc.hre.test", "/").backend("m-hostre"))
            .request(get("ABC.hre.test", "/").backend("m-hostre"))
            .request(get("a1.hre.test", "/").unrouted())
            .request(get("hre.test", "/").unrouted()),
        Case::new("Path: exact only")
            .service(
                "m-path",
                &[ON, "traefik.http.routers.m-path.rule=Host(`path.m.test`) && Path(`/exact`)"],
            )
            .request(get("path.m.test", "/exact").backend("m-path").path("/exact"))
            .request(get("path.m.test", "/exact?q=1").backend("m-path").query(Some("q=1")))
            .request(get("path.m.test", "/exact/").unrouted())
            .request(get("path.m.test", "/exactly").unrouted())
            .request(get("path.m.test", "/EXACT").unrouted()),
        Case::new("PathPrefix: a plain string prefix")
            .service(
                "m-prefix",
                &[ON, "traefik.http.routers.m-prefix.rule=Host(`prefix.m.test`) && PathPrefix(`/api`)"],
            )
            .request(get("prefix.m.test", "/api").backend("m-prefix"))
            .request(get("prefix.m.test", "/api/v1/x").backend("m-prefix").path("/api/v1/x"))
            .request(get("prefix.m.test", "/apix").backend("m-prefix"))
            .request(get("prefix.m.test", "/ap").unrouted())
            .request(get("prefix.m.test", "/").unrouted()),
        Case::new("PathRegexp")
            .service(
                "m-pathre",
                &[
                    ON,
                    r"traefik.http.routers.m-pathre.rule=Host(`pathre.m.test`) && PathRegexp(`^/v[0-9]+/items$`)",
                ],
            )
            .request(get("pathre.m.test", "/v2/items").backend("m-pathre"))
            .request(get("pathre.m.test", "/v10/items").backend("m-pathre"))
            .request(get("pathre.m.test", "/vx/items").unrouted())
            .request(get("pathre.m.test", "/v2/items/1").unrouted()),
        Case::new("Method")
            .service(
                "m-method",
                &[ON, "traefik.http.routers.m-method.rule=Host(`method.m.test`) && Method(`POST`)"],
            )
            .request(request("POST", "method.m.test", "/").backend("m-method"))
            .request(get("method.m.test", "/").unrouted())
            .request(request("PUT", "method.m.test", "/").unrouted()),
        Case::new("Header and HeaderRegexp")
            .service(
                "m-header",
                &[ON, "traefik.http.routers.m-header.rule=Host(`header.m.test`) && Header(`X-Env`, `prod`)"],
            )
            .service(
                "m-headerre",
                &[
                    ON,
                    "traefik.http.routers.m-headerre.rule=Host(`headerre.m.test`) && HeaderRegexp(`X-Env`, `^pr[a-z]+$`)",
                ],
            )
            .request(get("header.m.test", "/").header("X-Env", "prod").backend("m-header"))
            .request(get("header.m.test", "/").header("x-env", "prod").backend("m-header"))
            .request(get("header.m.test", "/").header("X-Env", "dev").unrouted())
            .request(get("header.m.test", "/").header("X-Env", "PROD").unrouted())
            .request(get("header.m.test", "/").unrouted())
            .service(
                "m-fwdproto",
                &[
                    ON,
                    "traefik.http.routers.m-fwdproto.rule=Host(`fwdproto.m.test`) && Header(`X-Forwarded-Proto`, `http`)",
                ],
            )
            // The entrypoint sets the forwarded headers before routing: an untrusted client's
            // `https` is replaced, and the rule sees `http`.
            .request(
                get("fwdproto.m.test", "/")
                    .header("X-Forwarded-Proto", "https")
                    .backend("m-fwdproto"),
            )
            .request(get("fwdproto.m.test", "/").backend("m-fwdproto"))
            .request(get("headerre.m.test", "/").header("X-Env", "preview").backend("m-headerre"))
            .request(get("headerre.m.test", "/").header("X-Env", "pr").unrouted())
            .request(get("headerre.m.test", "/").unrouted()),
        Case::new("Query and QueryRegexp")
            .service(
                "m-query",
                &[ON, "traefik.http.routers.m-query.rule=Host(`query.m.test`) && Query(`debug`, `1`)"],
            )
            .service(
                "m-queryflag",
                &[ON, "traefik.http.routers.m-queryflag.rule=Host(`queryflag.m.test`) && Query(`flag`)"],
            )
            .service(
                "m-queryre",
                &[
                    ON,
                    "traefik.http.routers.m-queryre.rule=Host(`queryre.m.test`) && QueryRegexp(`id`, `^[0-9]+$`)",
                ],
            )
            .request(get("query.m.test", "/?debug=1").backend("m-query").query(Some("debug=1")))
            .request(get("query.m.test", "/?a=2&debug=1").backend("m-query"))
            .request(get("query.m.test", "/?debug=2&debug=1").backend("m-query"))
            .request(get("query.m.test", "/?debug=2").unrouted())
            .request(get("query.m.test", "/").unrouted())
            .request(get("queryflag.m.test", "/?flag").backend("m-queryflag"))
            .request(get("queryflag.m.test", "/?flag=").backend("m-queryflag"))
            .request(get("queryflag.m.test", "/?flag=1").unrouted())
            .request(get("queryre.m.test", "/?id=42").backend("m-queryre"))
            .request(get("queryre.m.test", "/?id=4x2").unrouted()),
        Case::new("ClientIP: the peer address, not X-Forwarded-For")
            .service(
                "m-clientip",
                &[ON, "traefik.http.routers.m-clientip.rule=Host(`clientip.m.test`) && ClientIP(`127.0.0.0/8`)"],
            )
            .service(
                "m-clientip-no",
                &[ON, "traefik.http.routers.m-clientip-no.rule=Host(`clientipno.m.test`) && ClientIP(`10.0.0.0/8`)"],
            )
            .request(get("clientip.m.test", "/").backend("m-clientip"))
            .request(get("clientipno.m.test", "/").unrouted())
            .request(get("clientipno.m.test", "/").header("X-Forwarded-For", "10.1.2.3").unrouted()),
        Case::new("&&, ||, ! and parentheses")
            .service(
                "m-combo",
                &[
                    ON,
                    "traefik.http.routers.m-combo.rule=Host(`combo.m.test`) && (Path(`/a`) || PathPrefix(`/b/`)) && !Method(`DELETE`)",
                ],
            )
            .service(
                "m-or-hosts",
                &[ON, "traefik.http.routers.m-or-hosts.rule=Host(`one.m.test`) || Host(`two.m.test`)"],
            )
            .service(
                "m-not",
                &[
                    ON,
                    "traefik.http.routers.m-not.rule=Host(`not.m.test`) && !(PathPrefix(`/private`) || Header(`X-Block`, `1`))",
                ],
            )
            .request(get("combo.m.test", "/a").backend("m-combo"))
            .request(get("combo.m.test", "/b/c").backend("m-combo"))
            .request(request("POST", "combo.m.test", "/a").backend("m-combo"))
            .request(request("DELETE", "combo.m.test", "/a").unrouted())
            .request(get("combo.m.test", "/b").unrouted())
            .request(get("one.m.test", "/").backend("m-or-hosts"))
            .request(get("two.m.test", "/").backend("m-or-hosts"))
            .request(get("three.m.test", "/").unrouted())
            .request(get("not.m.test", "/public").backend("m-not"))
            .request(get("not.m.test", "/private/x").unrouted())
            .request(get("not.m.test", "/public").header("X-Block", "1").unrouted()),
        Case::new("percent-encoded paths: matched decoded, forwarded as sent")
            .service(
                "m-encoded",
                &[ON, "traefik.http.routers.m-encoded.rule=Host(`enc.m.test`) && PathPrefix(`/foo bar`)"],
            )
            .request(get("enc.m.test", "/foo%20bar/x").backend("m-encoded").path("/foo%20bar/x"))
            .request(get("enc.m.test", "/foo+bar").unrouted()),
        Case::new("ruleSyntax=v2 routers")
            .service(
                "m-v2",
                &[
                    ON,
                    "traefik.http.routers.m-v2.rule=Host(`v2a.m.test`, `v2b.m.test`) && PathPrefix(`/p`, `/q`)",
                    "traefik.http.routers.m-v2.ruleSyntax=v2",
                ],
            )
            .service(
                "m-v2re",
                &[
                    ON,
                    "traefik.http.routers.m-v2re.rule=HostRegexp(`{sub:[a-z]+}.v2re.m.test`) && Headers(`X-Env`, `prod`)",
                    "traefik.http.routers.m-v2re.ruleSyntax=v2",
                ],
            )
            .service(
                "m-v2q",
                &[
                    ON,
                    "traefik.http.routers.m-v2q.rule=Host(`v2q.m.test`) && Query(`a=1`, `b=2`) && Method(`GET`, `HEAD`)",
                    "traefik.http.routers.m-v2q.ruleSyntax=v2",
                ],
            )
            .request(get("v2a.m.test", "/p/1").backend("m-v2"))
            .request(get("v2b.m.test", "/q").backend("m-v2"))
            .request(get("v2b.m.test", "/r").unrouted())
            .request(get("x.m.test", "/p").unrouted())
            .request(get("abc.v2re.m.test", "/").header("X-Env", "prod").backend("m-v2re"))
            .request(get("abc.v2re.m.test", "/").unrouted())
            .request(get("a-1.v2re.m.test", "/").header("X-Env", "prod").unrouted())
            .request(get("v2q.m.test", "/?b=2&a=1").backend("m-v2q"))
            .request(request("HEAD", "v2q.m.test", "/?a=1&b=2").status(200))
            .request(get("v2q.m.test", "/?a=1").unrouted())
            .request(get("v2q.m.test", "/?a=1&b=3").unrouted())
            .request(request("POST", "v2q.m.test", "/?a=1&b=2").unrouted()),
    ])
    .await
}
