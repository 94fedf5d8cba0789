//! The article's demo, as data: the tags its containers carry and a helper that starts its
//! backends as local processes registered in Consul the way Registrator would register them.

use anyhow::Result;

use crate::{Backend, Consul};

pub const GO_HOST: &str = "go.traefix.example.localhost";
pub const PYTHON_HOST: &str = "python.traefix.example.localhost";

/// `SERVICE_TAGS` of the article's Go service, as Registrator splits it into Consul tags.
pub const GO_TAGS: [&str; 3] = [
    "traefik.enable=true",
    "traefik.frontend.entryPoints=http",
    "traefik.frontend.rule=Host:go.traefix.example.localhost",
];

/// `SERVICE_TAGS` of the article's Python service.
pub const PYTHON_TAGS: [&str; 3] = [
    "traefik.enable=true",
    "traefik.frontend.entryPoints=http",
    "traefik.frontend.rule=Host:python.traefix.example.localhost",
];

/// The article's backends: three `web_go` instances and one `web_python`, each registered with a
/// passing TTL check (so a test can fail it) under IDs `go-1`..`go-3` and `python-1`.
pub struct Article {
    pub go: Vec<Backend>,
    pub python: Backend,
}

impl Article {
    pub async fn start(consul: &Consul) -> Result<Article> {
        let mut go = Vec::new();
        for i in 1..=3 {
            let name = format!("go-{i}");
            let backend = Backend::start("web_go", &name).await?;
            consul
                .register_instance("web_go", &name, backend.port, &GO_TAGS, true)
                .await?;
            go.push(backend);
        }
        let python = Backend::start("web_python", "python-1").await?;
        consul
            .register_instance("web_python", "python-1", python.port, &PYTHON_TAGS, true)
            .await?;
        Ok(Article { go, python })
    }
}
