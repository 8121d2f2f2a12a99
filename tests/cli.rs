//! The built binary, run as a newcomer would: in an empty directory, with no configuration.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sasnp(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sasnp"));
    c.current_dir(dir)
        .env_remove("SASNP_DATABASE_URL")
        .env_remove("SASNP_BIND")
        .env_remove("SASNP_CONFIG")
        .env("RUST_LOG", "warn");
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `sasnp serve` on a free port (stderr to `stderr`) and waits for `/ready`: the running
/// server, its port and the first `/ready` answer.
fn serve(mut cmd: Command, stderr: Stdio) -> (Killed, u16, reqwest::blocking::Response) {
    let port = free_port();
    let child = cmd
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let guard = Killed(child);
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/ready")).send() {
            return (guard, port, r);
        }
        assert!(Instant::now() < deadline, "sasnp did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_in_an_empty_directory_with_no_config() {
    let dir = tempfile::tempdir().unwrap();
    // token create: the token is the last line of stdout
    let out = sasnp(dir.path())
        .args([
            "token",
            "create",
            "--role",
            "admin",
            "--name",
            "first-admin",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("sasnp_") && token.len() > 60, "{stdout}");
    assert!(
        dir.path().join("sasnp.db").exists(),
        "SQLite file created in the working directory"
    );
    // a cpts account needs a known CPTS
    let out = sasnp(dir.path())
        .args(["token", "create", "--role", "cpts", "--name", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cpts"));
    let out = sasnp(dir.path())
        .args([
            "token", "create", "--role", "cpts", "--cpts", "nope", "--name", "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let (_guard, port, ready) = serve(sasnp(dir.path()), Stdio::inherit());
    let client = reqwest::blocking::Client::new();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().unwrap();
    assert_eq!(body["communes"], 1228);
    assert_eq!(body["backend"], "sqlite");
    let res = client
        .get(format!(
            "http://127.0.0.1:{port}/v1/territories/at?lat=47.2184&lon=-1.5536"
        ))
        .send()
        .unwrap();
    let at: serde_json::Value = res.json().unwrap();
    assert_eq!(at["commune"]["insee"], "44109");
    let res = client
        .get(format!("http://127.0.0.1:{port}/v1/accounts"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(res.status(), 200, "the CLI token works against the server");
}

/// The access log: one line per request at the default level, with method, path, status and
/// duration, and never the query string (a search's holds where the patient is).
#[test]
fn one_access_log_line_per_request_without_the_query_string() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut cmd = sasnp(dir.path());
    cmd.env_remove("RUST_LOG");
    let stderr = Stdio::from(std::fs::File::create(&log_path).unwrap());
    let (guard, port, _) = serve(cmd, stderr);
    let client = reqwest::blocking::Client::new();
    let at = client
        .get(format!(
            "http://127.0.0.1:{port}/v1/territories/at?lat=47.2184&lon=-1.5536"
        ))
        .send()
        .unwrap();
    assert_eq!(at.status(), 200);
    let search = client
        .get(format!(
            "http://127.0.0.1:{port}/v1/search?lat=47.2184&lon=-1.5536"
        ))
        .send()
        .unwrap();
    assert_eq!(search.status(), 401);
    drop(guard);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("sasnp::access"))
        .collect();
    let of = |path: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("path={path} ")))
            .count()
    };
    assert_eq!(of("/v1/territories/at"), 1, "{log}");
    assert_eq!(of("/v1/search"), 1, "{log}");
    assert!(lines.iter().all(|l| l.contains("method=GET ")), "{log}");
    assert!(lines.iter().any(|l| l.contains("status=401")), "{log}");
    assert!(
        !log.contains("47.2184"),
        "the patient's position is logged: {log}"
    );
}

#[test]
fn migrate_and_config_mask_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = sasnp(dir.path()).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
    let out = sasnp(dir.path())
        .arg("config")
        .env(
            "SASNP_DATABASE_URL",
            "postgres://sas:hunter2@db.example/sasnp",
        )
        .env("SASNP_METRICS_TOKEN", "s3cret-metrics")
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(
        shown.contains("postgres://sas:********@db.example/sasnp"),
        "{shown}"
    );
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret-metrics"),
        "{shown}"
    );
    // an unknown key in a config file is refused with its name
    std::fs::write(
        dir.path().join("sasnp.toml"),
        "bind = \"127.0.0.1:1\"\nholdttl = 3\n",
    )
    .unwrap();
    let out = sasnp(dir.path()).arg("config").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holdttl"));
}

#[test]
fn feed_generate_then_check_offline() {
    let dir = tempfile::tempdir().unwrap();
    let start = "2026-11-23T08:00:00Z";
    for format in ["csv", "sas-fhir", "smart-sl"] {
        let out = sasnp(dir.path())
            .args([
                "feed", "generate", "--format", format, "--slots", "120", "--places", "12",
                "--seed", "3", "--start", start,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = dir.path().join(format!("feed.{format}"));
        std::fs::write(&file, &out.stdout).unwrap();
        let out = sasnp(dir.path())
            .args(["feed", "check", "--format", format, "--now", start])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["received"], 120, "{format}: {report}");
        assert_eq!(report["accepted"], 120, "{format}: {report}");
    }
    // the same file judged a week later: every slot is past, dropped, not rejected
    let out = sasnp(dir.path())
        .args([
            "feed",
            "check",
            "--format",
            "csv",
            "--now",
            "2026-11-30T08:00:00Z",
        ])
        .arg(dir.path().join("feed.csv"))
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dropped_past"], 120);
    // an unreadable file: non-zero exit, the error named in the JSON report
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"resourceType\": \"Patient\"}").unwrap();
    let out = sasnp(dir.path())
        .args(["feed", "check", "--format", "sas-fhir"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["error"]["code"], "unexpected_document", "{report}");
}
