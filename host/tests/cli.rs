//! The `wasmplug-host` binary as the README's quickstart runs it: local mode on the
//! example packages, asked over HTTP, stopped with SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

/// Starts `command` (the host binary, possibly behind a shell), and reads its
/// JSON log until a line says where it listens; returns that line's fields too.
fn start(mut command: Command) -> (Child, BufReader<ChildStdout>, String, serde_json::Value) {
    let mut host = command
        .env("WASMPLUG_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the host starts");
    let mut log = BufReader::new(host.stdout.take().expect("stdout"));
    let listen = loop {
        let mut line = String::new();
        assert!(log.read_line(&mut line).expect("a log line") > 0, "the host exited before listening");
        let record: serde_json::Value = serde_json::from_str(&line).expect("JSON logs");
        if let Some(listen) = record["fields"]["listen"].as_str() {
            break (listen.to_owned(), record["fields"].clone());
        }
    };
    (host, log, listen.0, listen.1)
}

#[test]
fn the_quickstart_runs_serves_and_stops_cleanly() {
    let packages = support::example_package("unity-format").parent().expect("packages dir").to_owned();
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmplug-host"));
    command.args(["--listen", "127.0.0.1:0", "--plugins-dir"]).arg(&packages);
    let (mut host, log, listen, fields) = start(command);
    // Optional settings are logged as their values, not as `Some(...)`.
    assert_eq!(fields["plugins_dir"].as_str(), Some(packages.display().to_string().as_str()), "{fields}");

    let formats = formats_once_unity_is_served(&listen);
    for key in ["\"unity\"", "\"npm-wasm\"", "\"npm-registry\"", "\"maven\"", "\"pypi\""] {
        assert!(formats.contains(key), "{key} is served: {formats}");
    }

    let status = Command::new("kill").args(["-TERM", &host.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let exit = host.wait().expect("the host exits");
    assert!(exit.success(), "SIGTERM is a clean shutdown, got {exit}");
    let rest: Vec<String> = log.lines().map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("shutting down")), "the shutdown is logged: {rest:?}");
}

#[test]
fn a_missing_plugin_directory_is_an_error_and_a_package_directory_is_served() {
    let missing = Command::new(env!("CARGO_BIN_EXE_wasmplug-host"))
        .args(["--listen", "127.0.0.1:0", "--plugins-dir", "no-such-plugins"])
        .output()
        .expect("the host runs");
    assert!(!missing.status.success(), "a missing directory must not serve builtins only");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("the plugin directory no-such-plugins does not exist"), "{stderr}");
    assert!(stderr.contains("a relative path is read from"), "{stderr}");

    // Pointed at one package directory, the host serves that package.
    let package = support::example_package("unity-format");
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmplug-host"));
    command.args(["--listen", "127.0.0.1:0", "--plugins-dir"]).arg(&package);
    let (mut host, _log, listen, _) = start(command);
    let formats = formats_once_unity_is_served(&listen);
    assert!(formats.contains("\"unity\""), "the package is served: {formats}");
    host.kill().expect("kill");
    let _ = host.wait();
}

/// `GET /v1/formats` of the host at `listen`, once it lists unity (or after 30 s).
fn formats_once_unity_is_served(listen: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let answer = get(listen, "/v1/formats").await;
            if answer.contains("\"unity\"") || std::time::Instant::now() > deadline {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

async fn get(addr: &str, path: &str) -> String {
    use http_body_util::BodyExt;
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else { return String::new() };
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.expect("handshake");
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let body = response.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// Trust invariant 3: a host out of file descriptors backs off instead of
/// spinning on accept (which filled logs at 80k lines a second and starved
/// /healthz), and serves again once connections close.
#[test]
fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let mut command = Command::new("sh");
    command.args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_wasmplug-host")]).args([
        "--listen",
        "127.0.0.1:0",
        "--builtin",
        "generic",
        "--header-read-timeout-ms",
        "3000",
    ]);
    let (mut host, log, listen, _) = start(command);
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || log.lines().map_while(Result::ok).for_each(|l| lines.lock().expect("lock").push(l)))
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut open = Vec::new();
        for _ in 0..100 {
            open.push(tokio::net::TcpStream::connect(&listen).await.expect("the backlog takes it"));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drop(open);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !get(&listen, "/healthz").await.starts_with("ok") {
            assert!(std::time::Instant::now() < deadline, "the host serves again once connections close");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let status = Command::new("kill").args(["-TERM", &host.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    host.wait().expect("the host exits");
    reader.join().expect("the log reader ends");
    let failures = lines.lock().expect("lock").iter().filter(|l| l.contains("failed to accept")).count();
    assert!((1..=5).contains(&failures), "out of descriptors, then backing off: {failures} log lines");
}
