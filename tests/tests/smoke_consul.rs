use berth_tests::Consul;

#[tokio::test]
async fn consul_dev_agent_starts_and_registers() -> anyhow::Result<()> {
    let consul = Consul::start().await?;
    consul
        .register_instance("web", "web-1", 1234, &["a"], true)
        .await?;
    let services = consul.get("/v1/catalog/services").await?;
    assert!(services.get("web").is_some(), "{services}");
    Ok(())
}
