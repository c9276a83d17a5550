//! `wsecho-loadtest steps` (the driver of `loadtest/c1m.sh`) end to end at a
//! small size: the real wsecho server runs in this test process, so
//! `--server-pids` is our own pid (its RSS, its fds, its liveness), and the
//! swarm binary drives its child processes over their stdin as in the C1M run.

use std::process::{Command, Output};
use wsecho::server::{Config, Server};

/// Run `steps` against a server with `cfg`; the exit status and output, and
/// the JSON report.
fn steps(cfg: Config, counts: &str) -> (Output, serde_json::Value) {
    let _ = wsecho::server::raise_fd_limit();
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), cfg).expect("bind");
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run());
    let json = std::env::temp_dir().join(format!("wsecho-steps-{}-{counts}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_wsecho-loadtest"))
        .args(["steps", "--target", &format!("ws://{addr}/echo"), "--steps", counts, "--procs", "3"])
        .args(["--source-ips", "127.0.0.1,127.0.0.2", "--server-pids", &std::process::id().to_string()])
        .args(["--settle", "0.2", "--fd-wait", "10", "--sweep-timeout", "20", "--step-timeout", "20"])
        .arg("--json-file")
        .arg(&json)
        .output()
        .expect("run wsecho-loadtest");
    handle.shutdown();
    let _ = thread.join();
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!("no report ({e}); stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    });
    let _ = std::fs::remove_file(&json);
    (out, serde_json::from_str(&text).expect("JSON report"))
}

#[test]
fn steps_hold_every_connection_echo_on_each_and_give_every_fd_back() {
    let (out, r) = steps(Config::default(), "40,150");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}; stderr:\n{stderr}", out.status);
    assert_eq!(r["ok"], true);
    let s = r["steps"].as_array().unwrap();
    assert_eq!(s.len(), 2);
    for (row, n) in s.iter().zip([40u64, 150]) {
        assert_eq!(row["held"], n, "{row}");
        assert_eq!(row["sweep"]["sent"], n, "{row}");
        assert_eq!(row["sweep"]["echoed"], n, "{row}");
        assert_eq!(row["sweep"]["latency_us"]["count"], n, "{row}");
        assert_eq!(row["errors"].as_object().unwrap().len(), 0, "{row}");
        assert!(row["stopped"].is_null(), "{row}");
        assert!(row["server_rss_kib"].as_u64().unwrap() > 0, "our own RSS was read");
    }
    let td = &r["teardown"];
    assert_eq!(td["fds_back_to_baseline"], true, "{td}");
    assert_eq!(td["dead_servers"].as_array().unwrap().len(), 0);
    assert_eq!(td["failed_children"].as_array().unwrap().len(), 0);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| 150 | 150 |") && table.contains("Result: OK"), "{table}");
}

#[test]
fn a_step_the_server_refuses_is_the_last_one_and_the_run_fails() {
    // The server takes 60 connections and answers 503 to the rest.
    let cfg = Config { max_connections: 60, ..Config::default() };
    let (out, r) = steps(cfg, "40,100,150");
    assert!(!out.status.success());
    assert_eq!(r["ok"], false);
    let s = r["steps"].as_array().unwrap();
    assert_eq!(s.len(), 2, "no step after the one that did not hold");
    assert_eq!(s[0]["held"], 40);
    assert!(s[0]["stopped"].is_null());
    assert_eq!(s[1]["held"], 60, "{}", s[1]);
    assert_eq!(s[1]["errors"]["http_503"], 40, "{}", s[1]);
    assert_eq!(s[1]["sweep"]["echoed"], 60, "the held ones still echo");
    assert!(s[1]["stopped"].as_str().unwrap().contains("held 60 of 100"), "{}", s[1]);
    assert_eq!(r["teardown"]["fds_back_to_baseline"], true);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Result: NOT OK"));
}
