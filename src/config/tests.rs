//! Resolution, typing and the generated reference of the settings.

use super::hosts::url_host;
use super::*;

fn load(env: &[(&str, &str)], flags: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sources = Sources {
        file: None,
        flags: flags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    Config::load_with(&sources, |k| env.get(k).cloned())
}

#[test]
fn defaults_are_valid() {
    let c = load(&[], &[]).unwrap();
    assert_eq!(c.stream_port, 8787);
    assert_eq!(c.metrics_port, 3000);
    assert_eq!(c.max_concurrency, 50);
    assert_eq!(c.max_queue_size, 10_000);
    assert_eq!(c.idempotency_ttl, Duration::from_secs(900));
    assert_eq!(c.retention, Duration::from_secs(7 * 86_400));
    assert_eq!(c.log_format, LogFormat::Text);
}

#[test]
fn flags_beat_env_and_node_env_is_an_alias() {
    let c = load(
        &[("STREAM_PORT", "9000"), ("NODE_ENV", "production")],
        &[("stream_port", "9100")],
    )
    .unwrap();
    assert_eq!(c.stream_port, 9100);
    assert_eq!(c.env, Env::Production);
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn bad_values_name_the_setting() {
    let e = load(&[("STREAM_PORT", "eighty")], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("stream_port") && e.contains("STREAM_PORT") && e.contains("eighty"),
        "{e}"
    );
    let e = load(&[("MAX_CONCURRENCY", "0")], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("MAX_CONCURRENCY"), "{e}");
    let e = load(&[("A2A_RETENTION", "forever")], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("A2A_RETENTION"), "{e}");
}

#[test]
fn egress_networks_keep_their_old_names() {
    let net: ipnet::IpNet = "127.0.0.0/8".parse().unwrap();
    for (env, flags) in [
        (vec![("A2A_EGRESS_ALLOWED_NETWORKS", "127.0.0.0/8")], vec![]),
        (vec![("A2A_PUSH_ALLOWED_NETWORKS", "127.0.0.0/8")], vec![]),
        (vec![], vec![("push_allowed_networks", "127.0.0.0/8")]),
        (vec![], vec![("egress_allowed_networks", "127.0.0.0/8")]),
    ] {
        let c = load(&env, &flags).unwrap();
        assert_eq!(c.egress_allowed_networks, vec![net], "{env:?} {flags:?}");
    }
    let e = load(&[("A2A_PUSH_ALLOWED_NETWORKS", "nope")], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("A2A_EGRESS_ALLOWED_NETWORKS") && e.contains("nope"),
        "{e}"
    );
}

#[test]
fn store_settings() {
    let c = load(&[("A2A_STORE", "sqlite")], &[]).unwrap();
    assert_eq!(c.store, StoreKind::Sqlite);
    assert!(c.auto_migrate);
    assert_eq!(c.postgres.schema, "a2a");
    assert_eq!(c.postgres.port, 5432);
    let e = load(&[("A2A_STORE", "mysql")], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("A2A_STORE") && e.contains("sqlite"), "{e}");
    let e = load(&[("A2A_POSTGRES_SCHEMA", "Robert'); DROP")], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("A2A_POSTGRES_SCHEMA"), "{e}");
    #[cfg(feature = "postgres")]
    {
        let c = load(
            &[
                ("A2A_STORE", "postgres"),
                ("A2A_POSTGRES_URL", "postgres://u:pw@db:5433/hub"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.store, StoreKind::Postgres);
        let e = load(
            &[("A2A_POSTGRES_URL", "postgres://u:secret@db:notaport/x")],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("A2A_POSTGRES_URL") && !e.contains("secret"),
            "{e}"
        );
    }
}

#[test]
fn hosts_and_origins_are_normalised_and_checked() {
    assert_eq!(
        HostName::parse("Hub.Example.com.:8443"),
        Some(HostName {
            name: "hub.example.com".into(),
            port: Some(8443)
        })
    );
    assert_eq!(HostName::parse("::1").map(|h| h.name), Some("::1".into()));
    assert_eq!(HostName::parse("[::1]:80").and_then(|h| h.port), Some(80));
    assert_eq!(HostName::parse("user@host"), None);
    assert_eq!(HostName::parse("a b"), None);
    let any = HostName::parse("hub.example.com").unwrap();
    assert!(any.matches(&HostName::parse("hub.example.com:1234").unwrap()));
    let one = HostName::parse("hub.example.com:8443").unwrap();
    assert!(!one.matches(&HostName::parse("hub.example.com:8444").unwrap()));
    assert_eq!(
        normalize_origin("HTTPS://App.Example.com/").as_deref(),
        Some("https://app.example.com:443")
    );
    assert_eq!(
        normalize_origin("http://[::1]:8787").as_deref(),
        Some("http://[::1]:8787")
    );
    assert_eq!(normalize_origin("null").as_deref(), Some("null"));
    for bad in [
        "*",
        "https://*.example.com",
        "https://a/path",
        "app.example.com",
        "",
    ] {
        assert_eq!(normalize_origin(bad), None, "{bad}");
    }
    let e = load(&[("A2A_ALLOWED_ORIGINS", "https://a.example/x")], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("A2A_ALLOWED_ORIGINS"), "{e}");
    let c = load(&[("A2A_PUBLIC_URL", "https://hub.example.com")], &[]).unwrap();
    assert_eq!(c.allowed_hosts[0].name, "hub.example.com");
}

#[test]
fn production_never_runs_without_authentication() {
    let e = load(&[("A2A_ENV", "production"), ("A2A_AUTH", "off")], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("A2A_AUTH") && e.contains("production"), "{e}");
    assert!(load(&[("A2A_AUTH", "off")], &[]).is_ok());
}

#[test]
fn url_host_parses() {
    assert_eq!(
        url_host("https://hub.example.com:8443/x").as_deref(),
        Some("hub.example.com")
    );
    assert_eq!(url_host("http://[::1]:80").as_deref(), Some("::1"));
}
