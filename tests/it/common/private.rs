//! A private instance of one service (own state dir and ports, through
//! `scripts/services`), so a test can stop and start it without touching others.
use std::{path::PathBuf, process::Command};

pub struct PrivateService {
    pub name: &'static str,
    dir: tempfile::TempDir,
    ports: Vec<(&'static str, u16)>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/services")
}

impl PrivateService {
    /// Starts it; None when services are not available here (and not required).
    pub fn start(name: &'static str) -> Option<PrivateService> {
        super::required_service("PARTWAY_TEST_DATABASE_URL")?;
        let ports = match name {
            "postgres" => vec![("PARTWAY_SERVICES_PG_PORT", free_port())],
            "redis" => vec![("PARTWAY_SERVICES_REDIS_PORT", free_port())],
            "rabbitmq" => vec![
                ("PARTWAY_SERVICES_AMQP_PORT", free_port()),
                ("PARTWAY_SERVICES_AMQP_DIST_PORT", free_port()),
                ("PARTWAY_SERVICES_EPMD_PORT", free_port()),
            ],
            other => panic!("no private {other}"),
        };
        let service = PrivateService {
            name,
            dir: tempfile::Builder::new()
                .prefix("partway-private-")
                .tempdir()
                .unwrap(),
            ports,
        };
        service.run("start");
        Some(service)
    }

    fn run(&self, action: &str) {
        let output = Command::new(script())
            .args([action, self.name])
            .env("PARTWAY_SERVICES_DIR", self.dir.path())
            .envs(self.ports.iter().map(|(k, v)| (*k, v.to_string())))
            .output()
            .expect("run scripts/services");
        assert!(
            output.status.success(),
            "scripts/services {action} {}: {}{}",
            self.name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn stop(&self) {
        self.run("stop");
    }

    pub fn restart(&self) {
        self.run("start");
    }

    /// The URL written to its env file.
    pub fn url(&self) -> String {
        let output = Command::new(script())
            .args(["env"])
            .env("PARTWAY_SERVICES_DIR", self.dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let var = match self.name {
            "postgres" => "PARTWAY_TEST_DATABASE_URL=",
            "redis" => "PARTWAY_TEST_REDIS_URL=",
            _ => "PARTWAY_TEST_AMQP_URL=",
        };
        text.lines()
            .find_map(|l| l.trim_start_matches("export ").strip_prefix(var))
            .map(|v| v.trim_matches('"').trim_matches('\'').to_string())
            .unwrap_or_else(|| panic!("no {var} in {text}"))
    }
}

impl Drop for PrivateService {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", self.name])
            .env("PARTWAY_SERVICES_DIR", self.dir.path())
            .envs(self.ports.iter().map(|(k, v)| (*k, v.to_string())))
            .output();
    }
}
